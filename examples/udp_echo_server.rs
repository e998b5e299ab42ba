//! A UDP echo server: one echo task per worker, all on one port with
//! `SO_REUSEPORT`, printing the workers' stats once a second.
//!
//! ```text
//! cargo run --release --example udp_echo_server -- --addr 127.0.0.1:10001 --workers 2 --seconds 30
//! ```
//!
//! Options: `--addr A` (default 127.0.0.1:10001), `--workers N` (default 1),
//! `--seconds S` (default 30; the server stops by itself), `--backend
//! mio|polling` (default mio). Pair it with `udp_echo_client`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sansio::Backend;
use sansio_suite::{cli, echo};

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:10001".to_owned();
    let (mut workers, mut seconds, mut backend) = (1usize, 30.0f64, Backend::Mio);
    let flags = ["--addr", "--workers", "--seconds", "--backend"];
    let parsed = cli::parse(std::env::args().skip(1), &flags, |flag, value| match flag {
        "--addr" => cli::store(&mut addr, value),
        "--workers" => cli::store(&mut workers, value),
        "--seconds" => cli::store(&mut seconds, value),
        "--backend" => cli::store(&mut backend, value),
        _ => None,
    });
    if let Err(message) = parsed {
        eprintln!("udp_echo_server: {message}");
        return ExitCode::FAILURE;
    }
    let Ok(addr) = addr.parse() else {
        eprintln!("--addr: `{addr}` is not a socket address");
        return ExitCode::FAILURE;
    };
    if workers == 0 || !(seconds > 0.0 && seconds <= 86_400.0) {
        eprintln!("--workers must be at least 1 and --seconds between 0 and 86400");
        return ExitCode::FAILURE;
    }
    let (runtime, bound) = match echo::start(addr, workers, backend) {
        Ok(started) => started,
        Err(message) => {
            eprintln!("udp_echo_server: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "udp_echo_server: echoing on {bound} with {workers} worker(s), {backend} backend, for {seconds} s"
    );
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    runtime.stats();
    while Instant::now() < end {
        // Drain events (send failures) while waiting out the second.
        let second = Instant::now() + Duration::from_secs(1);
        while let Some(event) =
            runtime.next_event(second.min(end).saturating_duration_since(Instant::now()))
        {
            println!("{event:?}");
        }
        println!("{}", runtime.stats());
    }
    match runtime.shutdown(Duration::from_secs(2)) {
        Ok(report) => {
            println!("stopped: {} echo task(s) finished", report.finished);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("udp_echo_server: {error}");
            ExitCode::FAILURE
        }
    }
}
