//! The main demo: an echo task, written as a plain state machine, driven
//! under virtual time by `TaskHarness` and narrated step by step.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! The task answers pings, reports its counters on request, ticks every
//! 100 ms, notices when it has been idle for 250 ms (a timer it re-arms on
//! every ping) and says goodbye at shutdown. Nothing here touches a socket or
//! a clock: the harness plays the runtime, so the whole run takes
//! microseconds of real time and prints the same timeline every time.

use std::time::Duration;

use sansio::prelude::*;
use sansio::testing::TaskHarness;

/// A ping from a peer.
#[derive(Debug)]
pub struct Ping {
    /// Sequence number, echoed back.
    pub seq: u64,
    /// Payload, echoed back.
    pub payload: Vec<u8>,
}

/// A request for the echo's counters.
#[derive(Debug)]
pub struct GetStats;

/// What the echo task reports to its controller.
#[derive(Debug)]
pub enum EchoOut {
    /// The answer to a [`Ping`].
    Pong { seq: u64, payload: Vec<u8> },
    /// The answer to [`GetStats`].
    Stats { echoed: u64, ticks: u64 },
    /// No ping for [`IDLE_AFTER`].
    Idle { since_last_ping: Duration },
    /// Emitted at shutdown, just before the task finishes.
    Bye { echoed: u64 },
}

/// How long without a ping before the task reports itself idle.
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
            payload: ping.payload,
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
        ctx.emit(EchoOut::Idle {
            since_last_ping: IDLE_AFTER,
        });
    }

    #[on_shutdown]
    fn stop(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(EchoOut::Bye {
            echoed: self.echoed,
        });
        ctx.finish();
    }
}

/// Prints what the task emitted since the last call, stamped with virtual time.
fn show(echo: &mut TaskHarness<Echo>) {
    let at = echo.elapsed().as_secs_f64() * 1e3;
    for output in echo.drain() {
        match output {
            EchoOut::Pong { seq, payload } => println!(
                "  [{at:6.1} ms] <- Pong #{seq} {:?}",
                String::from_utf8_lossy(&payload)
            ),
            other => println!("  [{at:6.1} ms] <- {other:?}"),
        }
    }
}

/// Runs virtual time forward by `by`, one wakeup at a time, so that every
/// tick and timer is shown at the instant it fired.
fn run_for(echo: &mut TaskHarness<Echo>, by: Duration) {
    let until = echo.now() + by;
    while echo.next_wakeup().is_some_and(|at| at <= until) {
        let ticks = echo.task().ticks;
        echo.advance_to_next();
        if echo.task().ticks > ticks {
            let at = echo.elapsed().as_secs_f64() * 1e3;
            println!("  [{at:6.1} ms]    tick #{}", echo.task().ticks);
        }
        show(echo);
    }
    echo.advance(until - echo.now());
}

/// Sends one ping and shows the answer.
fn ping(echo: &mut TaskHarness<Echo>, seq: u64) {
    let at = echo.elapsed().as_secs_f64() * 1e3;
    println!("  [{at:6.1} ms] -> Ping #{seq}");
    echo.input(Ping {
        seq,
        payload: format!("hello {seq}").into_bytes(),
    });
    show(echo);
}

fn main() {
    println!("sansio demo: an echo task under virtual time (no sockets, no threads)");
    let mut echo = TaskHarness::new(Echo::default());
    println!("  [   0.0 ms]    started; idle timer armed for {IDLE_AFTER:?}, ticks every 100ms");

    for seq in 1..=3 {
        ping(&mut echo, seq);
    }
    run_for(&mut echo, Duration::from_millis(180));
    println!("  [ 180.0 ms] -> GetStats");
    echo.input(GetStats);
    show(&mut echo);

    // 250 ms after the last ping (at 0 ms), the idle timer has fired.
    run_for(&mut echo, Duration::from_millis(200));
    ping(&mut echo, 4);
    run_for(&mut echo, Duration::from_millis(300));

    println!("  [ 680.0 ms] -> GetStats, then shutdown");
    echo.input(GetStats).shutdown();
    show(&mut echo);
    println!(
        "  finished: {} after {:?} of virtual time",
        echo.is_finished(),
        echo.elapsed()
    );
}
