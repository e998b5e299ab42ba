//! Controller ↔ task round trips: the `controller_echo` example's echo task
//! and the loop that keeps messages in flight to it, and the baseline its
//! benchmark runs beside it — the same round trip over a bare crossbeam
//! channel to a thread that sleeps in mio and is woken by a `mio::Waker`.
//!
//! Both keep `inflight` stamped messages going: each answer is recorded and
//! answered with a new message at once, for a bounded time.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use sansio::Backend;
use sansio::prelude::*;

/// A message stamped with the instant the controller sent it.
#[derive(Debug)]
pub struct Stamp(pub Instant);

/// Answers every stamp with the instant it carries.
#[sansio::task(output = Instant)]
#[derive(Debug)]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn stamp(&mut self, ctx: &mut Ctx<Self>, Stamp(sent): Stamp) {
        ctx.emit(sent);
    }
}

/// The worker kind of the echo.
#[sansio::worker]
#[derive(Debug)]
pub enum EchoWorker {
    /// The echo task.
    Echo(Echo),
}

/// Round trips in 100 ns buckets up to 10 ms, and a count above.
#[derive(Debug, Clone)]
pub struct Latencies {
    buckets: Vec<u64>,
    above: u64,
    max: Duration,
    count: u64,
}

const BUCKET_NANOS: u64 = 100;
const BUCKETS: usize = 100_000;

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            buckets: vec![0; BUCKETS],
            above: 0,
            max: Duration::ZERO,
            count: 0,
        }
    }
}

impl Latencies {
    /// Records one round trip.
    pub fn record(&mut self, rtt: Duration) {
        self.count += 1;
        self.max = self.max.max(rtt);
        let bucket = rtt.as_nanos() / u128::from(BUCKET_NANOS);
        match usize::try_from(bucket)
            .ok()
            .and_then(|bucket| self.buckets.get_mut(bucket))
        {
            Some(slot) => *slot += 1,
            None => self.above += 1,
        }
    }

    /// Round trips recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Round trips over 10 ms.
    pub fn above(&self) -> u64 {
        self.above
    }

    /// The longest round trip.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The `quantile` (0 to 1) round trip, to its bucket's upper edge;
    /// `None` without samples or beyond 10 ms.
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_nanos((bucket as u64 + 1) * BUCKET_NANOS));
            }
        }
        None
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The round trips' times.
    pub latencies: Latencies,
    /// How long the run kept messages in flight.
    pub elapsed: Duration,
}

impl Outcome {
    /// Round trips per second.
    pub fn per_sec(&self) -> f64 {
        self.latencies.count() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `quantile` round trip in microseconds (NaN beyond 10 ms).
    pub fn micros(&self, quantile: f64) -> f64 {
        self.latencies
            .quantile(quantile)
            .map_or(f64::NAN, |rtt| rtt.as_secs_f64() * 1e6)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quantile = |q| match self.latencies.quantile(q) {
            Some(rtt) => format!("{:.1} µs", rtt.as_secs_f64() * 1e6),
            None => format!("> 10 ms (max {:?})", self.latencies.max()),
        };
        write!(
            f,
            "{:.0} messages/s ({} round trips in {:.2} s); round trip p50 {}, p99 {}, p99.9 {}, max {:.1} µs",
            self.per_sec(),
            self.latencies.count(),
            self.elapsed.as_secs_f64(),
            quantile(0.50),
            quantile(0.99),
            quantile(0.999),
            self.latencies.max().as_secs_f64() * 1e6,
        )?;
        if self.latencies.above() > 0 {
            write!(
                f,
                "; {} round trips took over 10 ms",
                self.latencies.above()
            )?;
        }
        Ok(())
    }
}

/// How a sansio run is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Messages kept in flight.
    pub inflight: usize,
    /// Worker threads.
    pub workers: usize,
    /// Echo tasks, spread over the workers.
    pub tasks: usize,
    /// How long to keep messages in flight.
    pub duration: Duration,
    /// The workers' poller.
    pub backend: Backend,
    /// How long workers spin before sleeping.
    pub spin: Duration,
}

impl Config {
    /// `inflight` messages to one echo task on one worker of the default
    /// backend, for `duration`.
    pub fn new(inflight: usize, duration: Duration) -> Self {
        Config {
            inflight,
            workers: 1,
            tasks: 1,
            duration,
            backend: Backend::default(),
            spin: sansio::DEFAULT_SPIN,
        }
    }
}

/// How a sansio run ended: its measurements and the shutdown's report.
#[derive(Debug)]
pub struct SansioRun {
    /// The round trips.
    pub outcome: Outcome,
    /// Tasks that finished at shutdown.
    pub finished: usize,
    /// Tasks forced to end at shutdown.
    pub forced: usize,
    /// Events drained at shutdown.
    pub drained: usize,
}

/// Keeps `config.inflight` messages going between the controller and the
/// echo tasks for `config.duration`; `every_second` is called once a second
/// with the runtime (the example prints its stats there).
pub fn run_sansio(
    config: &Config,
    mut every_second: impl FnMut(&Runtime<EchoWorker>),
) -> Result<SansioRun, String> {
    if config.inflight == 0 || config.workers == 0 || config.tasks == 0 {
        return Err("in flight, workers and tasks must be at least 1".to_owned());
    }
    let runtime = Runtime::<EchoWorker>::builder()
        .workers(config.workers)
        .backend(config.backend)
        .queue_capacity(config.inflight.max(1024))
        .spin_before_sleep(config.spin)
        .build()
        .map_err(|error| error.to_string())?;
    let tasks: Vec<TaskId<Echo>> = (0..config.tasks)
        .map(|_| runtime.spawn(Echo))
        .collect::<Result<_, _>>()
        .map_err(|error| error.to_string())?;
    let send = |task: TaskId<Echo>| {
        runtime
            .send_timeout(task, Stamp(Instant::now()), Duration::from_secs(1))
            .map_err(|error| error.to_string())
    };
    for n in 0..config.inflight {
        send(tasks[n % tasks.len()])?;
    }
    let started = Instant::now();
    let end = started + config.duration;
    let mut latencies = Latencies::default();
    let mut next_report = started + Duration::from_secs(1);
    runtime.stats(); // Opens the first stats window.
    loop {
        // One read of the clock per round trip for the run's own
        // bookkeeping, as in the baseline.
        let now = Instant::now();
        if now >= end {
            break;
        }
        if now >= next_report {
            next_report += Duration::from_secs(1);
            every_second(&runtime);
        }
        let Some(event) = runtime.next_event(Duration::from_secs(1)) else {
            return Err("no answer for a second: the echo stalled".to_owned());
        };
        match event {
            Event::Output {
                task: EchoWorkerId::Echo(task),
                output: EchoWorkerOutput::Echo(sent),
            } => {
                latencies.record(sent.elapsed());
                send(task)?;
            }
            Event::Panicked { task, message } => {
                return Err(format!("{task} panicked: {message}"));
            }
            _ => {}
        }
    }
    let outcome = Outcome {
        latencies,
        elapsed: started.elapsed(),
    };
    let report = runtime
        .shutdown(Duration::from_secs(2))
        .map_err(|error| error.to_string())?;
    Ok(SansioRun {
        outcome,
        finished: report.finished,
        forced: report.forced.len(),
        drained: report.events.len(),
    })
}

/// The baseline: `inflight` stamps go over a bounded crossbeam channel to a
/// thread that takes all it finds, answers each over a second channel, and
/// sleeps in `mio::Poll` when its channel is empty; the controller fires a
/// `mio::Waker` only when its send found the channel empty (it is the only
/// sender, so a message sent behind another is taken by the same drain).
/// No runtime, tasks, stats or timers: what a hand-written echo costs.
pub fn run_bare(inflight: usize, duration: Duration) -> Result<Outcome, String> {
    const WAKE: mio::Token = mio::Token(0);
    if inflight == 0 {
        return Err("in flight must be at least 1".to_owned());
    }
    let failed = |what: &'static str| move |error: std::io::Error| format!("{what}: {error}");
    let capacity = inflight.max(1024);
    let (to_echo, inbox) = crossbeam_channel::bounded::<Instant>(capacity);
    let (answer, answers) = crossbeam_channel::bounded::<Instant>(capacity);
    let mut poll = mio::Poll::new().map_err(failed("mio::Poll"))?;
    let waker = mio::Waker::new(poll.registry(), WAKE).map_err(failed("mio::Waker"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let echo = thread::Builder::new()
        .name("bare-echo".to_owned())
        .spawn(move || -> std::io::Result<()> {
            let mut events = mio::Events::with_capacity(8);
            while !stopped.load(Ordering::Relaxed) {
                while let Ok(stamp) = inbox.try_recv() {
                    if answer.send(stamp).is_err() {
                        return Ok(());
                    }
                }
                // The timeout only bounds how long a stop takes to be seen.
                match poll.poll(&mut events, Some(Duration::from_millis(100))) {
                    Err(error) if error.kind() != std::io::ErrorKind::Interrupted => {
                        return Err(error);
                    }
                    _ => {}
                }
            }
            Ok(())
        })
        .map_err(failed("spawn the echo thread"))?;
    // Like the runtime, it waits (and reads the clock for a deadline) only
    // when the channel is full, or empty on the way back.
    let send = |stamp: Instant| -> Result<(), String> {
        if let Err(TrySendError::Full(stamp)) = to_echo.try_send(stamp) {
            to_echo
                .send_timeout(stamp, Duration::from_secs(1))
                .map_err(|_| "the bare echo's channel stayed full for a second".to_owned())?;
        }
        if to_echo.len() == 1 {
            waker.wake().map_err(failed("wake the echo"))?;
        }
        Ok(())
    };
    let run = || -> Result<Outcome, String> {
        for _ in 0..inflight {
            send(Instant::now())?;
        }
        let started = Instant::now();
        let end = started + duration;
        let mut latencies = Latencies::default();
        while Instant::now() < end {
            let sent = match answers.try_recv() {
                Ok(sent) => sent,
                Err(_) => answers
                    .recv_timeout(Duration::from_secs(1))
                    .map_err(|_| "no answer for a second: the bare echo stalled".to_owned())?,
            };
            latencies.record(sent.elapsed());
            send(Instant::now())?;
        }
        Ok(Outcome {
            latencies,
            elapsed: started.elapsed(),
        })
    };
    let outcome = run();
    stop.store(true, Ordering::Relaxed);
    let woken = waker.wake().map_err(failed("wake the echo to stop"));
    drop(answers);
    let joined = match echo.join() {
        Ok(result) => result.map_err(failed("the echo thread's poll")),
        Err(_) => Err("the echo thread panicked".to_owned()),
    };
    let outcome = outcome?;
    woken?;
    joined?;
    Ok(outcome)
}
