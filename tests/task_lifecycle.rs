//! A task's life under `TaskHarness`: started before any input, finished on
//! its own word, shut down gracefully, and never fed after it finished.

use std::time::Duration;

use sansio::prelude::*;
use sansio::testing::TaskHarness;

#[derive(Debug, PartialEq)]
pub enum Life {
    Started,
    Got(u32),
    Tick,
    Flushed(u32),
    ShuttingDown,
    Done,
}

/// Finishes the task from an input handler.
pub struct Quit;

#[sansio::task(output = Life)]
#[derive(Default)]
pub struct Lifecycle {
    pending: u32,
    shutdowns: u32,
}

#[sansio::task]
impl Lifecycle {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(Life::Started);
    }

    #[on_input]
    fn got(&mut self, ctx: &mut Ctx<Self>, n: u32) {
        self.pending += n;
        ctx.emit(Life::Got(n));
    }

    #[on_input]
    fn quit(&mut self, ctx: &mut Ctx<Self>, _: Quit) {
        ctx.emit(Life::Done);
        ctx.finish();
        // Queued after finish(): still delivered, as part of this input.
        ctx.emit(Life::Flushed(self.pending));
    }

    #[on_tick(every = "1s")]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(Life::Tick);
    }

    #[on_timer]
    fn flush(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(Life::Flushed(self.pending));
        ctx.finish();
    }

    /// Graceful: say so, then finish 50 ms later, after a last flush.
    #[on_shutdown]
    fn shutdown(&mut self, ctx: &mut Ctx<Self>) {
        self.shutdowns += 1;
        ctx.emit(Life::ShuttingDown);
        ctx.set_timer(ctx.now() + Duration::from_millis(50));
    }
}

#[test]
fn on_start_runs_before_any_input() {
    let mut task = TaskHarness::new(Lifecycle::default());
    task.input(5u32);
    assert_eq!(task.drain(), [Life::Started, Life::Got(5)]);
}

#[test]
fn a_finished_task_gets_nothing_more_but_its_last_outputs_are_kept() {
    let mut task = TaskHarness::new(Lifecycle::default());
    task.input(2u32).input(Quit);
    assert!(task.is_finished());
    assert_eq!(task.next_wakeup(), None, "no ticks after finish");
    task.advance(Duration::from_secs(10));
    assert_eq!(
        task.drain(),
        [Life::Started, Life::Got(2), Life::Done, Life::Flushed(2)]
    );
}

#[test]
fn try_input_hands_the_input_back_after_finish() {
    let mut task = TaskHarness::new(Lifecycle::default());
    assert!(task.try_input(1u32).is_ok());
    task.input(Quit);
    let rejected = task.try_input(42u32).unwrap_err();
    assert_eq!(rejected.input, 42);
    assert_eq!(rejected.task, "Lifecycle");
    assert_eq!(
        rejected.to_string(),
        "task `Lifecycle` has finished; the input was not delivered"
    );
    assert_eq!(task.task().pending, 1, "the rejected input was not handled");
}

#[test]
#[should_panic(expected = "task `Lifecycle` has finished; the input was not delivered")]
fn input_after_finish_fails_the_test() {
    let mut task = TaskHarness::new(Lifecycle::default());
    task.input(Quit).input(1u32);
}

#[test]
fn shutdown_is_graceful_and_happens_once() {
    let mut task = TaskHarness::new(Lifecycle::default());
    task.input(3u32).shutdown().shutdown();
    assert!(!task.is_finished(), "the task finishes in its own time");
    // Still alive after shutdown: inputs and ticks keep coming until it
    // finishes.
    task.input(4u32);
    task.advance(Duration::from_millis(49));
    assert!(!task.is_finished());
    task.advance(Duration::from_millis(1));
    assert!(task.is_finished());
    assert_eq!(task.task().shutdowns, 1);
    assert_eq!(
        task.drain(),
        [
            Life::Started,
            Life::Got(3),
            Life::ShuttingDown,
            Life::Got(4),
            Life::Flushed(7)
        ]
    );
}

#[test]
fn shutdown_of_a_finished_task_does_nothing() {
    let mut task = TaskHarness::new(Lifecycle::default());
    task.input(Quit).shutdown();
    assert_eq!(task.task().shutdowns, 0);
}

/// Without `#[on_shutdown]`, the task finishes at shutdown.
#[sansio::task(output = u8)]
pub struct NoShutdownHandler;

#[sansio::task]
impl NoShutdownHandler {
    #[on_input]
    fn byte(&mut self, ctx: &mut Ctx<Self>, byte: u8) {
        ctx.emit(byte);
    }
}

#[test]
fn without_a_shutdown_handler_the_task_finishes_at_shutdown() {
    let mut task = TaskHarness::new(NoShutdownHandler);
    task.input(1u8).shutdown();
    assert!(task.is_finished());
    assert_eq!(task.drain(), [1]);
}

#[test]
fn the_harness_gives_access_to_the_task() {
    let mut task = TaskHarness::new(Lifecycle::default());
    task.task_mut().pending = 10;
    task.input(Quit);
    assert_eq!(task.drain().last(), Some(&Life::Flushed(10)));
}
