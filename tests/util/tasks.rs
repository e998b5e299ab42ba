//! The tasks and the worker kind the runtime tests drive.

#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

use sansio::prelude::*;

use super::PATIENCE;

/// Answered with `EchoOut::Pong` of the same number.
#[derive(Debug)]
pub struct Ping(pub u64);
/// Answered with `count` outputs `Part(tag, 0..count)`.
#[derive(Debug)]
pub struct Burst {
    pub tag: u64,
    pub count: u32,
}
/// Makes the task say `Bye` and finish.
#[derive(Debug)]
pub struct Quit;
/// Makes the handler emit `Part(0, 0)`, then panic with this message.
#[derive(Debug)]
pub struct Boom(pub String);
/// Arms the timer this far ahead.
#[derive(Debug)]
pub struct Arm(pub Duration);

/// What `Echo` does at shutdown.
#[derive(Debug, Clone, Copy, Default)]
pub enum AtShutdown {
    /// Say `ShuttingDown` and finish.
    #[default]
    Finish,
    /// Say `ShuttingDown`, then finish this much later, from its timer.
    Linger(Duration),
    /// Say `ShuttingDown` and never finish.
    Never,
}

#[derive(Debug, PartialEq)]
pub enum EchoOut {
    Started,
    Pong(u64),
    Part(u64, u32),
    Timer { deadline: Instant, now: Instant },
    ShuttingDown,
    Bye,
}

#[sansio::task(output = EchoOut)]
#[derive(Debug, Default)]
pub struct Echo {
    pub at_shutdown: AtShutdown,
    pub announce_start: bool,
    shutting_down: bool,
    deadline: Option<Instant>,
}

impl Echo {
    /// An echo that emits `Started` when it starts.
    pub fn announcing() -> Self {
        Echo {
            announce_start: true,
            ..Echo::default()
        }
    }

    /// An echo that never finishes at shutdown.
    pub fn stubborn() -> Self {
        Echo {
            at_shutdown: AtShutdown::Never,
            ..Echo::default()
        }
    }

    pub fn lingering(linger: Duration) -> Self {
        Echo {
            at_shutdown: AtShutdown::Linger(linger),
            ..Echo::default()
        }
    }
}

#[sansio::task]
impl Echo {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        if self.announce_start {
            ctx.emit(EchoOut::Started);
        }
    }

    #[on_input]
    fn ping(&mut self, ctx: &mut Ctx<Self>, Ping(n): Ping) {
        ctx.emit(EchoOut::Pong(n));
    }

    #[on_input]
    fn burst(&mut self, ctx: &mut Ctx<Self>, burst: Burst) {
        for part in 0..burst.count {
            ctx.emit(EchoOut::Part(burst.tag, part));
        }
    }

    #[on_input]
    fn quit(&mut self, ctx: &mut Ctx<Self>, _: Quit) {
        ctx.emit(EchoOut::Bye);
        ctx.finish();
    }

    #[on_input]
    fn boom(&mut self, ctx: &mut Ctx<Self>, Boom(message): Boom) {
        ctx.emit(EchoOut::Part(0, 0));
        panic!("{message}");
    }

    #[on_input]
    fn arm(&mut self, ctx: &mut Ctx<Self>, Arm(after): Arm) {
        let deadline = ctx.now() + after;
        self.deadline = Some(deadline);
        ctx.set_timer(deadline);
    }

    #[on_timer]
    fn timer(&mut self, ctx: &mut Ctx<Self>) {
        if self.shutting_down {
            ctx.emit(EchoOut::Bye);
            ctx.finish();
            return;
        }
        let deadline = self.deadline.take().expect("armed by `arm`");
        ctx.emit(EchoOut::Timer {
            deadline,
            now: ctx.now(),
        });
    }

    #[on_shutdown]
    fn shutdown(&mut self, ctx: &mut Ctx<Self>) {
        self.shutting_down = true;
        ctx.emit(EchoOut::ShuttingDown);
        match self.at_shutdown {
            AtShutdown::Finish => ctx.finish(),
            AtShutdown::Linger(after) => ctx.set_timer(ctx.now() + after),
            AtShutdown::Never => {}
        }
    }
}

/// Ticks every 50 ms, reporting `ctx.now()` each time.
#[sansio::task(output = Instant)]
#[derive(Debug, Default)]
pub struct Ticker;

#[sansio::task]
impl Ticker {
    #[on_tick(every = "50ms")]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(ctx.now());
    }
}

/// Holds its worker: the handler blocks until the sender side is dropped or
/// sends, or [`PATIENCE`] passes. This is how the tests make a worker busy on
/// purpose, to fill its inbox or to queue messages behind a known point.
#[derive(Debug)]
pub struct Hold(pub mpsc::Receiver<()>);

#[sansio::task(output = &'static str)]
#[derive(Debug, Default)]
pub struct Gate;

#[sansio::task]
impl Gate {
    #[on_input]
    fn hold(&mut self, ctx: &mut Ctx<Self>, Hold(release): Hold) {
        let _ = release.recv_timeout(PATIENCE);
        ctx.emit("released");
    }
}

/// Holds worker `worker` of `runtime` until the returned sender is used or
/// dropped; waits until the gate is actually holding.
pub fn hold_worker(runtime: &Runtime<Media>, worker: usize) -> mpsc::Sender<()> {
    let gate = runtime.spawn_on(worker, Gate).expect("spawn the gate");
    let (release, hold) = mpsc::channel();
    runtime.send(gate, Hold(hold)).expect("send the hold");
    // The gate is holding once the worker has taken the message: its inbox
    // is empty again.
    let give_up = Instant::now() + PATIENCE;
    while runtime.stats().workers[worker].inbox_depth > 0 {
        assert!(Instant::now() < give_up, "the gate never started holding");
        std::thread::sleep(Duration::from_millis(1));
    }
    release
}

#[sansio::worker]
pub enum Media {
    Echo(Echo),
    Ticker(Ticker),
    Gate(Gate),
}
