//! A UDP echo server: one echo task per worker, printing the workers' stats
//! once a second, for a bounded time.
//!
//! ```text
//! cargo run --release --example udp_echo_server -- --addr 127.0.0.1:10001 --workers 2 --reuse-port --seconds 30
//! ```
//!
//! Each worker binds its own socket to `--addr`; more than one worker needs
//! `--reuse-port` (`SO_REUSEPORT`, the kernel spreads the clients over the
//! sockets), which also lets the server share the port with any other
//! program that set it — so it is never on by itself: without it, an
//! address in use is an error. Pair it with `udp_echo_client`; `--help`
//! lists the options.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use sansio::Backend;
use sansio_suite::{cli, echo};

/// A sansio UDP echo server.
#[derive(Debug, Parser)]
#[command(about = "A UDP echo server on sansio: one echo task per worker")]
struct Args {
    /// The address to echo on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:10001")]
    addr: SocketAddr,
    /// Worker threads, one echo socket each (more than one needs --reuse-port).
    #[arg(long, default_value_t = 1, value_parser = cli::at_least_one)]
    workers: usize,
    /// Bind with SO_REUSEPORT: the workers share the port (and so may any
    /// other program that sets it on the same port).
    #[arg(long)]
    reuse_port: bool,
    /// Stop after this many seconds.
    #[arg(long, default_value = "30", value_parser = cli::seconds)]
    seconds: Duration,
    /// The backend the workers sleep in: mio, polling, busy-poll or io-uring.
    #[arg(long, default_value_t = Backend::Mio)]
    backend: Backend,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    if args.workers > 1 && !args.reuse_port {
        eprintln!(
            "udp_echo_server: {} workers bind {} sockets to one port: add --reuse-port",
            args.workers, args.workers
        );
        return ExitCode::from(2);
    }
    let options = echo::options().reuse_port(args.reuse_port);
    let (runtime, bound) = match echo::start_with(args.addr, args.workers, args.backend, options) {
        Ok(started) => started,
        Err(message) => {
            eprintln!("udp_echo_server: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "udp_echo_server: echoing on {bound} with {} worker(s), {} backend, for {:?}",
        args.workers, args.backend, args.seconds
    );
    let end = Instant::now() + args.seconds;
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
