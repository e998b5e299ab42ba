//! Controller ↔ task round trips: the controller keeps `--inflight` messages
//! in flight to echo tasks and reports messages per second and the round-trip
//! latency percentiles, with the workers' stats once a second.
//!
//! ```text
//! cargo run --release --example controller_echo -- --inflight 400 --workers 1 --seconds 5
//! cargo run --release --example controller_echo -- --inflight 1
//! ```
//!
//! Options: `--inflight N` (default 400), `--workers N` (default 1),
//! `--tasks N` echo tasks (default: one per worker), `--seconds S` (default
//! 5), `--backend mio|polling` (default mio), `--spin-us N` (workers spin
//! this many microseconds before sleeping; default: the library's,
//! `sansio::DEFAULT_SPIN`, 2 µs), `--quiet` (no
//! per-second stats).
//! The run is bounded by `--seconds`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sansio::Backend;
use sansio::prelude::*;

/// A message stamped with the instant the controller sent it.
pub struct Stamp(pub Instant);

#[sansio::task(output = Instant)]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn stamp(&mut self, ctx: &mut Ctx<Self>, Stamp(sent): Stamp) {
        ctx.emit(sent);
    }
}

#[sansio::worker]
pub enum Bench {
    Echo(Echo),
}

struct Options {
    inflight: usize,
    workers: usize,
    tasks: Option<usize>,
    seconds: f64,
    backend: Backend,
    spin: Duration,
    quiet: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        inflight: 400,
        workers: 1,
        tasks: None,
        seconds: 5.0,
        backend: Backend::Mio,
        spin: sansio::DEFAULT_SPIN,
        quiet: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<usize>()
                .map_err(|_| format!("{flag}: `{text}` is not a whole number"))
        };
        match flag.as_str() {
            "--inflight" => options.inflight = number(value()?)?,
            "--workers" => options.workers = number(value()?)?,
            "--tasks" => options.tasks = Some(number(value()?)?),
            "--seconds" => {
                let text = value()?;
                options.seconds = text
                    .parse()
                    .map_err(|_| format!("--seconds: `{text}` is not a number"))?;
            }
            "--backend" => {
                options.backend = value()?
                    .parse()
                    .map_err(|error| format!("--backend: {error}"))?;
            }
            "--spin-us" => options.spin = Duration::from_micros(number(value()?)? as u64),
            "--quiet" => options.quiet = true,
            "--help" | "-h" => {
                return Err(
                    "usage: controller_echo [--inflight N] [--workers N] [--tasks N] \
                            [--seconds S] [--backend mio|polling] [--spin-us N] [--quiet]"
                        .to_owned(),
                );
            }
            other => return Err(format!("unknown option `{other}`; try --help")),
        }
    }
    if options.inflight == 0 || options.workers == 0 || options.tasks == Some(0) {
        return Err("--inflight, --workers and --tasks must be at least 1".to_owned());
    }
    if !(options.seconds > 0.0 && options.seconds <= 3600.0) {
        return Err("--seconds must be between 0 and 3600".to_owned());
    }
    Ok(options)
}

/// Round-trip times in 100 ns buckets up to 10 ms, and a count above.
struct Histogram {
    buckets: Vec<u64>,
    above: u64,
    max: Duration,
    count: u64,
}

const BUCKET_NANOS: u64 = 100;
const BUCKETS: usize = 100_000;

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: vec![0; BUCKETS],
            above: 0,
            max: Duration::ZERO,
            count: 0,
        }
    }

    fn record(&mut self, rtt: Duration) {
        self.count += 1;
        self.max = self.max.max(rtt);
        let bucket = (rtt.as_nanos() / u128::from(BUCKET_NANOS)) as usize;
        match self.buckets.get_mut(bucket) {
            Some(slot) => *slot += 1,
            None => self.above += 1,
        }
    }

    /// The `quantile` (0..1) round trip, to the bucket's upper edge.
    fn quantile(&self, quantile: f64) -> String {
        let rank = ((self.count as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let nanos = (bucket as u64 + 1) * BUCKET_NANOS;
                return format!("{:.1} µs", nanos as f64 / 1e3);
            }
        }
        format!("> 10 ms (max {:?})", self.max)
    }
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
    let runtime = Runtime::<Bench>::builder()
        .workers(options.workers)
        .backend(options.backend)
        .queue_capacity(options.inflight.max(1024))
        .spin_before_sleep(options.spin)
        .build()
        .map_err(|error| error.to_string())?;
    let tasks: Vec<TaskId<Echo>> = (0..options.tasks.unwrap_or(options.workers))
        .map(|_| runtime.spawn(Echo))
        .collect::<Result<_, _>>()
        .map_err(|error| error.to_string())?;
    println!(
        "controller_echo: {} in flight over {} echo task(s) on {} worker(s), {} backend, {} s",
        options.inflight,
        tasks.len(),
        options.workers,
        options.backend,
        options.seconds
    );

    let send = |task: TaskId<Echo>| {
        runtime
            .send_timeout(task, Stamp(Instant::now()), Duration::from_secs(1))
            .map_err(|error| error.to_string())
    };
    for n in 0..options.inflight {
        send(tasks[n % tasks.len()])?;
    }
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(options.seconds);
    let mut histogram = Histogram::new();
    let mut next_report = started + Duration::from_secs(1);
    runtime.stats(); // Opens the first stats window.
    while Instant::now() < end {
        let Some(event) = runtime.next_event(Duration::from_secs(1)) else {
            return Err("no answer for a second: the echo stalled".to_owned());
        };
        match event {
            Event::Output {
                task: BenchId::Echo(task),
                output: BenchOutput::Echo(sent),
            } => {
                histogram.record(sent.elapsed());
                send(task)?;
            }
            Event::Panicked { task, message } => {
                return Err(format!("{task} panicked: {message}"));
            }
            _ => {}
        }
        if !options.quiet && Instant::now() >= next_report {
            next_report += Duration::from_secs(1);
            println!("{}", runtime.stats());
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{:.0} messages/s ({} round trips in {:.2} s); round trip p50 {}, p99 {}, p99.9 {}, max {:.1} µs",
        histogram.count as f64 / elapsed.as_secs_f64(),
        histogram.count,
        elapsed.as_secs_f64(),
        histogram.quantile(0.50),
        histogram.quantile(0.99),
        histogram.quantile(0.999),
        histogram.max.as_secs_f64() * 1e6,
    );
    if histogram.above > 0 {
        println!("{} round trips took over 10 ms", histogram.above);
    }
    let report = runtime
        .shutdown(Duration::from_secs(2))
        .map_err(|error| error.to_string())?;
    println!(
        "shut down: {} tasks finished, {} forced, {} events drained",
        report.finished,
        report.forced.len(),
        report.events.len()
    );
    Ok(())
}
