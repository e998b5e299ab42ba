//! A TCP chat server with one task per connection: rooms on the bus, idle
//! timeouts, and a `STATS` command answered by RPC (the tasks are in
//! `src/chat.rs`, which lists the protocol).
//!
//! ```text
//! cargo run --example tcp_chat -- --addr 127.0.0.1:7000 --workers 2 --seconds 60
//! nc 127.0.0.1 7000      # then: NICK ann / JOIN lobby / MSG hello / STATS / QUIT
//! ```
//!
//! `--help` lists the options; the server stops by itself after `--seconds`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use sansio::Backend;
use sansio_suite::{chat, cli};

/// The chat server.
#[derive(Debug, Parser)]
#[command(about = "A TCP chat server on sansio, one task per connection")]
struct Args {
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:7000")]
    addr: SocketAddr,
    /// Worker threads; connections are spread over them.
    #[arg(long, default_value_t = 2, value_parser = cli::at_least_one)]
    workers: usize,
    /// Close a connection silent for this long.
    #[arg(long, default_value = "60", value_parser = cli::seconds)]
    idle_secs: Duration,
    /// Stop after this many seconds.
    #[arg(long, default_value = "60", value_parser = cli::seconds)]
    seconds: Duration,
    /// The backend the workers sleep in: mio, polling, busy-poll or io-uring.
    #[arg(long, default_value_t = Backend::Mio)]
    backend: Backend,
}

fn main() -> ExitCode {
    let Args {
        addr,
        workers,
        idle_secs: idle,
        seconds,
        backend,
    } = Args::parse();
    cli::init_logging();
    let (runtime, bound) = match chat::start(addr, workers, idle, backend) {
        Ok(server) => (server.runtime, server.addr),
        Err(message) => {
            eprintln!("tcp_chat: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "tcp_chat: listening on {bound} with {workers} worker(s), {backend} backend, for {seconds:?}"
    );
    let end = Instant::now() + seconds;
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
