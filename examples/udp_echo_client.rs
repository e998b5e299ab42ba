//! A UDP echo load generator: `--sockets` client sockets, each keeping
//! `--window` datagrams of `--size` bytes in flight to `--server`, for
//! `--seconds`; prints packets/s, Mbit/s and the round-trip percentiles.
//! Exits with 1 when no echo came back at all.
//!
//! ```text
//! cargo run --release --example udp_echo_client -- --server 127.0.0.1:10001 --sockets 4 --window 64 --size 1200 --seconds 5
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sansio_suite::cli;
use sansio_suite::loadgen::{self, Load};

/// A UDP echo load generator.
#[derive(Debug, Parser)]
#[command(about = "A UDP echo load generator: packets/s and round-trip percentiles")]
struct Args {
    /// The echo server.
    #[arg(long, default_value = "127.0.0.1:10001")]
    server: SocketAddr,
    /// Client sockets, each on a thread of its own.
    #[arg(long, default_value_t = 1, value_parser = cli::at_least_one)]
    sockets: usize,
    /// Datagrams in flight per socket.
    #[arg(long, default_value_t = 8, value_parser = cli::at_least_one)]
    window: usize,
    /// Datagram size in bytes (16 to 65507).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(16..=65507))]
    size: u16,
    /// How long to measure, after a 300 ms warm-up.
    #[arg(long, default_value = "5", value_parser = cli::seconds)]
    seconds: Duration,
    /// Send each batch as GSO messages (bursts a GRO server receives whole).
    #[arg(long)]
    gso: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let load = Load {
        server: args.server,
        sockets: args.sockets,
        window: args.window,
        size: usize::from(args.size),
        duration: args.seconds,
        gso: args.gso,
    };
    println!(
        "udp_echo_client: {} socket(s) × {} in flight × {} B to {} for {:?}{}",
        load.sockets,
        load.window,
        load.size,
        load.server,
        load.duration,
        if load.gso { ", GSO" } else { "" }
    );
    match loadgen::run(load) {
        Ok(report) if report.packets == 0 => {
            println!("{report}");
            eprintln!(
                "udp_echo_client: no echo came back from {} ({} datagrams lost): is a server running there?",
                load.server, report.lost
            );
            ExitCode::FAILURE
        }
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("udp_echo_client: {error}");
            ExitCode::FAILURE
        }
    }
}
