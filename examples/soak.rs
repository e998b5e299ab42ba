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
//! `--help` lists the options.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sansio::Backend;
use sansio_suite::{cli, soak};

/// The soak.
#[derive(Debug, Parser)]
#[command(about = "Mixed load on one runtime, failing if memory, descriptors or threads grow")]
struct Args {
    /// How long to run.
    #[arg(long, default_value = "1800", value_parser = cli::seconds)]
    seconds: Duration,
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = cli::at_least_one)]
    workers: usize,
    /// The backend the workers sleep in: mio, polling, busy-poll or io-uring.
    #[arg(long, default_value_t = Backend::Mio)]
    backend: Backend,
}

fn main() -> ExitCode {
    let Args {
        seconds,
        workers,
        backend,
    } = Args::parse();
    cli::init_logging();
    let mut options = soak::Options::of(seconds, backend);
    options.workers = workers;
    println!(
        "soak: {seconds:?} on {workers} workers ({backend:?}), warm-up {:?}, a sample every {:?}",
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
