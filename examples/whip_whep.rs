//! A WHIP/WHEP media server on sansio: publish with OBS (WHIP output) or
//! the `/whip.html` page, play with `/whep.html` or any WHEP player. The
//! server is in `src/whip/` (`sansio_suite::whip`).
//!
//! ```text
//! cargo run --release --example whip_whep
//! cargo run --release --example whip_whep -- --help
//! RUST_LOG=debug cargo run --release --example whip_whep   # each session's state changes
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use sansio::Backend;
use sansio_suite::whip::server::{self, Config};

/// A WHIP/WHEP media server on sansio.
#[derive(Debug, Parser)]
#[command(version, about = "A WHIP/WHEP media server on sansio")]
struct Args {
    /// Where HTTP signalling (and the two pages) listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// The media UDP socket; its address is every session's ICE host
    /// candidate, so it must be reachable by the clients.
    #[arg(long, default_value = "127.0.0.1:8090")]
    udp: SocketAddr,
    /// Worker threads; peer connections are spread over them.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Require `Authorization: Bearer TOKEN` on every request (OBS's
    /// "Bearer Token" field). Without it the server is open to anyone who
    /// reaches it.
    #[arg(long)]
    token: Option<String>,
    /// The backend the workers sleep in: mio, polling, busy-poll or io-uring.
    #[arg(long, default_value = "mio")]
    backend: Backend,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    seconds: Option<u64>,
    /// Close an HTTP connection that has not sent a whole request in this
    /// many seconds.
    #[arg(long, default_value_t = 10)]
    idle_secs: u64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if args.workers == 0 || args.idle_secs == 0 {
        eprintln!("whip_whep: --workers and --idle-secs must be at least 1");
        return ExitCode::FAILURE;
    }
    let config = Config {
        http: args.http,
        udp: args.udp,
        token: args.token.clone(),
        idle: Duration::from_secs(args.idle_secs),
        workers: args.workers,
    };
    let server = match server::start(config, args.backend) {
        Ok(server) => server,
        Err(message) => {
            eprintln!("whip_whep: {message}");
            return ExitCode::FAILURE;
        }
    };
    println!("publish: http://{}/whip.html?stream=demo", server.http);
    println!("play:    http://{}/whep.html?stream=demo", server.http);
    println!("WHIP endpoint for OBS: http://{}/whip/demo", server.http);
    if args.token.is_none() {
        println!("no --token: anyone who reaches the server can publish and play");
    }
    let until = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    loop {
        let wait = until.map_or(Duration::from_secs(1), |until| {
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1))
        });
        // Sessions starting and ending are logged by the server; the
        // events only need taking.
        while let Some(event) = server.runtime.next_event(wait) {
            if let sansio::Event::Panicked { task, message } = event {
                tracing::error!(?task, %message, "a task panicked");
            }
        }
        if until.is_some_and(|until| Instant::now() >= until) {
            break;
        }
    }
    let _ = server.runtime.shutdown(Duration::from_secs(5));
    ExitCode::SUCCESS
}
