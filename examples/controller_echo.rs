//! Controller ↔ task round trips: the controller keeps `--inflight` messages
//! in flight to echo tasks and reports messages per second and the round-trip
//! latency percentiles, with the workers' stats once a second.
//!
//! ```text
//! cargo run --release --example controller_echo -- --inflight 400 --workers 1 --seconds 5
//! cargo run --release --example controller_echo -- --inflight 1
//! cargo run --release --example controller_echo -- --inflight 400 --bare
//! ```
//!
//! `--help` lists the options. `--bare` runs the baseline instead: the same
//! round trips over a bare crossbeam channel to a thread woken by a mio
//! waker; `cargo bench --bench controller_echo` runs both side by side. The
//! run is bounded by `--seconds`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sansio::Backend;
use sansio_suite::cli;
use sansio_suite::controller_echo::{self, Config};

/// Controller ↔ task round trips.
#[derive(Debug, Parser)]
#[command(about = "Controller-to-task round trips: messages/s and round-trip percentiles")]
struct Options {
    /// Messages kept in flight.
    #[arg(long, default_value_t = 400, value_parser = cli::at_least_one)]
    inflight: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 1, value_parser = cli::at_least_one)]
    workers: usize,
    /// Echo tasks, spread over the workers (default: one per worker).
    #[arg(long, value_parser = cli::at_least_one)]
    tasks: Option<usize>,
    /// How long to keep messages in flight.
    #[arg(long, default_value = "5", value_parser = cli::seconds)]
    seconds: Duration,
    /// The backend the workers sleep in: mio, polling, busy-poll or io-uring.
    #[arg(long, default_value_t = Backend::Mio)]
    backend: Backend,
    /// Microseconds workers spin before sleeping [default: sansio::DEFAULT_SPIN, 2 µs].
    #[arg(long)]
    spin_us: Option<u64>,
    /// No per-second stats.
    #[arg(long)]
    quiet: bool,
    /// The baseline instead: the same round trips over a bare crossbeam
    /// channel to a thread woken by a mio waker.
    #[arg(long)]
    bare: bool,
}

impl Options {
    fn config(&self) -> Config {
        let mut config = Config::new(self.inflight, self.seconds);
        config.workers = self.workers;
        config.tasks = self.tasks.unwrap_or(self.workers);
        config.backend = self.backend;
        if let Some(spin) = self.spin_us {
            config.spin = Duration::from_micros(spin);
        }
        config
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    cli::init_logging();
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("controller_echo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    let config = &options.config();
    let seconds = config.duration.as_secs_f64();
    if options.bare {
        println!(
            "controller_echo: {} in flight over a bare crossbeam channel and mio waker, {seconds} s",
            config.inflight
        );
        println!(
            "{}",
            controller_echo::run_bare(config.inflight, config.duration)?
        );
        return Ok(());
    }
    println!(
        "controller_echo: {} in flight over {} echo task(s) on {} worker(s), {} backend, {seconds} s",
        config.inflight, config.tasks, config.workers, config.backend,
    );
    let run = controller_echo::run_sansio(config, |runtime| {
        if !options.quiet {
            println!("{}", runtime.stats());
        }
    })?;
    println!("{}", run.outcome);
    println!(
        "shut down: {} tasks finished, {} forced, {} events drained",
        run.finished, run.forced, run.drained
    );
    Ok(())
}
