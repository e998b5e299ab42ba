//! A tour of the controller side: echo tasks, written as plain state machines, running on
//! two worker threads of the default (mio) backend, narrated as they work.
//!
//! ```text
//! cargo run --example controller_tour
//! ```
//!
//! Each echo task answers pings, reports its counters on request, ticks every
//! 100 ms, notices when it has been idle for 250 ms (a timer it re-arms on
//! every ping) and says goodbye at graceful shutdown. The run takes about a
//! second and stops by itself.

use std::time::{Duration, Instant};

use sansio::prelude::*;

/// A ping from a peer.
#[derive(Debug)]
pub struct Ping {
    /// Sequence number, echoed back.
    pub seq: u64,
    /// When the controller sent it.
    pub sent: Instant,
}

/// A request for the echo's counters.
#[derive(Debug)]
pub struct GetStats;

/// What an echo task reports to the controller.
#[derive(Debug)]
pub enum EchoOut {
    /// The answer to a [`Ping`].
    Pong { seq: u64, sent: Instant },
    /// The answer to [`GetStats`].
    Stats { echoed: u64, ticks: u64 },
    /// No ping for [`IDLE_AFTER`].
    Idle,
    /// Emitted at shutdown, just before the task finishes.
    Bye { echoed: u64 },
}

/// How long without a ping before a task reports itself idle.
const IDLE_AFTER: Duration = Duration::from_millis(250);

#[sansio::task(output = EchoOut)]
#[derive(Debug, Default)]
pub struct Echo {
    echoed: u64,
    ticks: u64,
}

#[sansio::task]
impl Echo {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.set_timer(ctx.now() + IDLE_AFTER);
    }

    #[on_input]
    fn ping(&mut self, ctx: &mut Ctx<Self>, ping: Ping) {
        self.echoed += 1;
        ctx.emit(EchoOut::Pong {
            seq: ping.seq,
            sent: ping.sent,
        });
        // Re-arming replaces the previous deadline: one timer per task.
        ctx.set_timer(ctx.now() + IDLE_AFTER);
    }

    #[on_input]
    fn stats(&mut self, ctx: &mut Ctx<Self>, _: GetStats) {
        ctx.emit(EchoOut::Stats {
            echoed: self.echoed,
            ticks: self.ticks,
        });
    }

    #[on_tick(every = "100ms")]
    fn tick(&mut self, _ctx: &mut Ctx<Self>) {
        self.ticks += 1;
    }

    #[on_timer]
    fn idle(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(EchoOut::Idle);
    }

    #[on_shutdown]
    fn stop(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(EchoOut::Bye {
            echoed: self.echoed,
        });
        ctx.finish();
    }
}

#[sansio::worker]
pub enum Demo {
    Echo(Echo),
}

/// Prints one event, stamped with the time since `start`.
fn show(start: Instant, event: Event<Demo>) {
    let at = start.elapsed().as_secs_f64() * 1e3;
    match event {
        Event::Output {
            task,
            output: DemoOutput::Echo(EchoOut::Pong { seq, sent }),
        } => println!(
            "  [{at:6.1} ms] {task} <- Pong #{seq} (round trip {:.1} µs)",
            sent.elapsed().as_secs_f64() * 1e6
        ),
        Event::Output {
            task,
            output: DemoOutput::Echo(output),
        } => println!("  [{at:6.1} ms] {task} <- {output:?}"),
        other => println!("  [{at:6.1} ms] {other:?}"),
    }
}

/// Prints every event that arrives within `window`.
fn show_for(runtime: &Runtime<Demo>, start: Instant, window: Duration) {
    let until = Instant::now() + window;
    while let Some(event) = runtime.next_event(until.saturating_duration_since(Instant::now())) {
        show(start, event);
    }
}

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    about = "A tour of the controller side: echo tasks narrated as they work (about a second)"
)]
struct Args {
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = sansio_suite::cli::at_least_one)]
    workers: usize,
    /// The backend the workers sleep in: mio, polling, busy-poll or io-uring.
    #[arg(long, default_value_t = sansio::Backend::Mio)]
    backend: sansio::Backend,
}

fn main() -> sansio::Result<()> {
    let args = <Args as clap::Parser>::parse();
    sansio_suite::cli::init_logging();
    let runtime = Runtime::<Demo>::builder()
        .workers(args.workers)
        .backend(args.backend)
        .build()?;
    let start = Instant::now();
    println!(
        "sansio tour: echo tasks on {} worker(s), {} backend",
        args.workers, args.backend
    );
    let echoes: Vec<TaskId<Echo>> = (0..2)
        .map(|_| {
            runtime
                .spawn(Echo::default())
                .expect("a fresh runtime has room")
        })
        .collect();
    println!("  spawned {} and {}", echoes[0], echoes[1]);

    for seq in 1..=3 {
        let echo = echoes[seq as usize % 2];
        println!(
            "  [{:6.1} ms] {echo} -> Ping #{seq}",
            start.elapsed().as_secs_f64() * 1e3
        );
        runtime
            .send(
                echo,
                Ping {
                    seq,
                    sent: Instant::now(),
                },
            )
            .expect("the echo is alive and its inbox has room");
    }
    show_for(&runtime, start, Duration::from_millis(180));

    println!("  asking for counters (ticks every 100 ms)");
    for echo in &echoes {
        runtime.send(*echo, GetStats).expect("alive");
    }
    // The idle timers fire 250 ms after each task's last ping.
    show_for(&runtime, start, Duration::from_millis(400));

    println!("{}", runtime.stats());
    println!("  shutting down gracefully");
    let report = runtime.shutdown(Duration::from_secs(2))?;
    for event in report.events {
        show(start, event);
    }
    println!(
        "  done: {} tasks finished, {} forced, workers joined",
        report.finished,
        report.forced.len()
    );
    Ok(())
}
