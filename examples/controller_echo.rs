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
//! Options: `--inflight N` (default 400), `--workers N` (default 1),
//! `--tasks N` echo tasks (default: one per worker), `--seconds S` (default
//! 5), `--backend mio|polling|busy-poll|io-uring` (default mio), `--spin-us N` (workers spin
//! this many microseconds before sleeping; default: the library's,
//! `sansio::DEFAULT_SPIN`, 2 µs), `--quiet` (no per-second stats), `--bare`
//! (the baseline instead: the same round trips over a bare crossbeam channel
//! to a thread woken by a mio waker; `cargo bench --bench controller_echo`
//! runs both side by side). The run is bounded by `--seconds`.

use std::process::ExitCode;
use std::time::Duration;

use sansio::Backend;
use sansio_suite::controller_echo::{self, Config};

struct Options {
    config: Config,
    quiet: bool,
    bare: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut config = Config::new(400, Duration::from_secs(5));
    config.backend = Backend::Mio;
    let mut tasks = None;
    let (mut quiet, mut bare) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<usize>()
                .map_err(|_| format!("{flag}: `{text}` is not a whole number"))
        };
        match flag.as_str() {
            "--inflight" => config.inflight = number(value()?)?,
            "--workers" => config.workers = number(value()?)?,
            "--tasks" => tasks = Some(number(value()?)?),
            "--seconds" => {
                let text = value()?;
                let seconds: f64 = text
                    .parse()
                    .map_err(|_| format!("--seconds: `{text}` is not a number"))?;
                if !(seconds > 0.0 && seconds <= 3600.0) {
                    return Err("--seconds must be between 0 and 3600".to_owned());
                }
                config.duration = Duration::from_secs_f64(seconds);
            }
            "--backend" => {
                config.backend = value()?
                    .parse()
                    .map_err(|error| format!("--backend: {error}"))?;
            }
            "--spin-us" => config.spin = Duration::from_micros(number(value()?)? as u64),
            "--quiet" => quiet = true,
            "--bare" => bare = true,
            "--help" | "-h" => {
                return Err(
                    "usage: controller_echo [--inflight N] [--workers N] [--tasks N] \
                            [--seconds S] [--backend mio|polling|busy-poll|io-uring] [--spin-us N] [--quiet] [--bare]"
                        .to_owned(),
                );
            }
            other => return Err(format!("unknown option `{other}`; try --help")),
        }
    }
    config.tasks = tasks.unwrap_or(config.workers);
    if config.inflight == 0 || config.workers == 0 || config.tasks == 0 {
        return Err("--inflight, --workers and --tasks must be at least 1".to_owned());
    }
    Ok(Options {
        config,
        quiet,
        bare,
    })
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("controller_echo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    let config = &options.config;
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
