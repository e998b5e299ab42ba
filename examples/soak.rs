//! The soak: mixed load on one runtime — task churn, TCP connect/echo/close,
//! UDP floods, bus fan-out, RPC — printing the resident set, descriptors,
//! threads and counters every 10 s, and failing (exit status 1) if the
//! resident set grows more than 10 % after the warm-up, or descriptors or
//! threads are left over (the load is in `src/soak.rs`).
//!
//! ```text
//! scripts/soak                                              # 30 minutes, release build
//! cargo run --release --example soak -- --seconds 60       # one minute
//! ```
//!
//! Options: `--seconds S` (default 1800), `--workers N` (default 2),
//! `--backend mio|polling|busy-poll|io-uring` (default mio).

use std::process::ExitCode;
use std::time::Duration;

use sansio::Backend;
use sansio_suite::{cli, soak};

fn main() -> ExitCode {
    let (mut seconds, mut workers, mut backend) = (1800u64, 2usize, Backend::Mio);
    let flags = ["--seconds", "--workers", "--backend"];
    let parsed = cli::parse(std::env::args().skip(1), &flags, |flag, value| match flag {
        "--seconds" => cli::store(&mut seconds, value),
        "--workers" => cli::store(&mut workers, value),
        "--backend" => cli::store(&mut backend, value),
        _ => None,
    });
    if let Err(message) = parsed {
        eprintln!("soak: {message}");
        return ExitCode::FAILURE;
    }
    if seconds == 0 || workers == 0 {
        eprintln!("soak: --seconds and --workers must be at least 1");
        return ExitCode::FAILURE;
    }
    let mut options = soak::Options::of(Duration::from_secs(seconds), backend);
    options.workers = workers;
    println!(
        "soak: {seconds} s on {workers} workers ({backend:?}), warm-up {:?}, a sample every {:?}",
        options.warm_up, options.every
    );
    match soak::run(&options, |sample| println!("{sample}")) {
        Ok(last) => {
            println!("soak: passed after {} rounds", last.rounds);
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("soak: FAILED: {failure}");
            ExitCode::FAILURE
        }
    }
}
