//! A TCP chat server with one task per connection: rooms on the bus, idle
//! timeouts, and a `STATS` command answered by RPC (the tasks are in
//! `src/chat.rs`, which lists the protocol).
//!
//! ```text
//! cargo run --example tcp_chat -- --addr 127.0.0.1:7000 --workers 2 --seconds 60
//! nc 127.0.0.1 7000      # then: NICK ann / JOIN lobby / MSG hello / STATS / QUIT
//! ```
//!
//! Options: `--addr A` (default 127.0.0.1:7000), `--workers N` (default 2),
//! `--idle-secs S` (default 60), `--seconds S` (default 60; the server stops
//! by itself), `--backend mio|polling|busy-poll|io-uring` (default mio).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sansio::Backend;
use sansio_suite::{chat, cli};

fn main() -> ExitCode {
    let mut addr = "127.0.0.1:7000".to_owned();
    let (mut workers, mut idle, mut seconds, mut backend) =
        (2usize, 60.0f64, 60.0f64, Backend::Mio);
    let flags = [
        "--addr",
        "--workers",
        "--idle-secs",
        "--seconds",
        "--backend",
    ];
    let parsed = cli::parse(std::env::args().skip(1), &flags, |flag, value| match flag {
        "--addr" => cli::store(&mut addr, value),
        "--workers" => cli::store(&mut workers, value),
        "--idle-secs" => cli::store(&mut idle, value),
        "--seconds" => cli::store(&mut seconds, value),
        "--backend" => cli::store(&mut backend, value),
        _ => None,
    });
    if let Err(message) = parsed {
        eprintln!("tcp_chat: {message}");
        return ExitCode::FAILURE;
    }
    let Ok(addr) = addr.parse() else {
        eprintln!("--addr: `{addr}` is not a socket address");
        return ExitCode::FAILURE;
    };
    let in_range = |s: f64| s > 0.0 && s <= 86_400.0;
    if workers == 0 || !in_range(seconds) || !in_range(idle) {
        eprintln!("--workers must be at least 1, --seconds and --idle-secs between 0 and 86400");
        return ExitCode::FAILURE;
    }
    let idle = Duration::from_secs_f64(idle);
    let (runtime, bound) = match chat::start(addr, workers, idle, backend) {
        Ok(server) => (server.runtime, server.addr),
        Err(message) => {
            eprintln!("tcp_chat: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "tcp_chat: listening on {bound} with {workers} worker(s), {backend} backend, for {seconds} s"
    );
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < end {
        let wait = Duration::from_secs(5).min(end.saturating_duration_since(Instant::now()));
        if let Some(event) = runtime.next_event(wait) {
            println!("{event:?}");
        }
    }
    println!("{}", runtime.stats());
    match runtime.shutdown(Duration::from_secs(2)) {
        Ok(report) => {
            println!("stopped: {} task(s) finished", report.finished);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tcp_chat: {error}");
            ExitCode::FAILURE
        }
    }
}
