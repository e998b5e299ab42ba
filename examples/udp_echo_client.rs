//! A UDP echo load generator: `--sockets` client sockets, each keeping
//! `--window` datagrams of `--size` bytes in flight to `--server`, for
//! `--seconds`; prints packets/s, Mbit/s and the round-trip percentiles.
//! `--gso true` sends each batch as GSO messages (bursts a GRO server
//! receives whole).
//!
//! ```text
//! cargo run --release --example udp_echo_client -- --server 127.0.0.1:10001 --sockets 4 --window 64 --size 1200 --seconds 5
//! ```

use std::process::ExitCode;
use std::time::Duration;

use sansio_suite::loadgen::{self, Load};

fn main() -> ExitCode {
    let mut load = Load {
        server: "127.0.0.1:10001".parse().expect("a valid default"),
        sockets: 1,
        window: 8,
        size: 64,
        duration: Duration::from_secs(5),
        gso: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            eprintln!("{flag} needs a value");
            return ExitCode::FAILURE;
        };
        let ok = match flag.as_str() {
            "--server" => value.parse().map(|server| load.server = server).is_ok(),
            "--sockets" => value.parse().map(|n| load.sockets = n).is_ok(),
            "--window" => value.parse().map(|n| load.window = n).is_ok(),
            "--size" => value.parse().map(|n| load.size = n).is_ok(),
            "--gso" => value.parse().map(|on| load.gso = on).is_ok(),
            "--seconds" => value
                .parse::<f64>()
                .ok()
                .filter(|seconds| *seconds > 0.0 && *seconds <= 3600.0)
                .map(|seconds| load.duration = Duration::from_secs_f64(seconds))
                .is_some(),
            _ => {
                eprintln!(
                    "unknown option {flag}; options: --server --sockets --window --size --seconds --gso"
                );
                return ExitCode::FAILURE;
            }
        };
        if !ok {
            eprintln!("{flag}: `{value}` is not valid");
            return ExitCode::FAILURE;
        }
    }
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
