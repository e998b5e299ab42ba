//! The main demo: a sansio UDP echo server on the default (mio) backend and a
//! load generator against it, in one bounded command; prints what the load
//! generator measured and what the workers saw.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! Two loads, 2 s each: 64-byte datagrams with 8 in flight (latency), then
//! 1,200-byte datagrams with 4 sockets × 64 in flight (throughput).

use std::process::ExitCode;
use std::time::Duration;

use sansio::Backend;
use sansio_suite::echo;
use sansio_suite::loadgen::{self, Load};

fn main() -> ExitCode {
    let (runtime, server) =
        match echo::start("127.0.0.1:0".parse().expect("valid"), 1, Backend::Mio) {
            Ok(started) => started,
            Err(message) => {
                eprintln!("demo: {message}");
                return ExitCode::FAILURE;
            }
        };
    println!("sansio demo: UDP echo on {server} (1 worker, mio backend)");
    runtime.stats();
    let loads = [
        ("64 B, 8 in flight", 1, 8, 64),
        ("1200 B, 4 × 64 in flight", 4, 64, 1200),
    ];
    for (name, sockets, window, size) in loads {
        let load = Load {
            server,
            sockets,
            window,
            size,
            duration: Duration::from_secs(2),
            gso: false,
        };
        match loadgen::run(load) {
            Ok(report) => println!("  {name:>24}: {report}"),
            Err(error) => {
                eprintln!("demo: load generator: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}", runtime.stats());
    match runtime.shutdown(Duration::from_secs(2)) {
        Ok(report) => {
            println!(
                "stopped: {} task(s) finished, workers joined",
                report.finished
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}
