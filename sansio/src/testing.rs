//! Unit-testing tasks: [`TaskHarness`] drives one task under virtual time,
//! with no threads, no sockets and no real clock.
//!
//! The harness plays the runtime's part for a single task: it starts the
//! task, delivers inputs, fires its ticks and timer as virtual time advances
//! (each at its own instant, in order), and collects what the task emits.
//! Virtual time starts at the real [`Instant`] the harness was created and
//! moves only when the test moves it, in the manner of quinn-proto's test
//! pairs, which jump the clock to the next wakeup.

use std::fmt;
use std::time::{Duration, Instant};

use crate::id::RawId;
use crate::{Action, Ctx, Handles, Task};

/// How many times in a row a timer may fire without the clock moving before
/// the harness calls it a spin.
const SPIN_LIMIT: u32 = 10_000;

/// Drives one task with virtual time: inputs in, ticks and timers fired as the
/// clock advances, outputs out.
///
/// ```
/// use std::time::Duration;
/// use sansio::prelude::*;
/// use sansio::testing::TaskHarness;
///
/// #[derive(Debug, PartialEq)]
/// pub enum CounterOut { Total(u64), Idle }
///
/// #[sansio::task(output = CounterOut)]
/// #[derive(Default)]
/// pub struct Counter { total: u64 }
///
/// #[sansio::task]
/// impl Counter {
///     #[on_input]
///     fn add(&mut self, ctx: &mut Ctx<Self>, n: u64) {
///         self.total += n;
///         ctx.emit(CounterOut::Total(self.total));
///         // Report idleness one second after the last input.
///         ctx.set_timer(ctx.now() + Duration::from_secs(1));
///     }
///
///     #[on_timer]
///     fn idle(&mut self, ctx: &mut Ctx<Self>) {
///         ctx.emit(CounterOut::Idle);
///     }
/// }
///
/// let mut harness = TaskHarness::new(Counter::default());
/// harness.input(2u64).input(3u64);
/// assert_eq!(harness.drain(), [CounterOut::Total(2), CounterOut::Total(5)]);
///
/// harness.advance(Duration::from_millis(999));
/// assert!(harness.drain().is_empty());
/// harness.advance(Duration::from_millis(1));
/// assert_eq!(harness.drain(), [CounterOut::Idle]);
/// ```
pub struct TaskHarness<T: Task> {
    task: T,
    ctx: Ctx<T>,
    epoch: Instant,
    next_tick: Option<Instant>,
    shut_down: bool,
}

/// An input the harness did not deliver because the task had finished; the
/// input is handed back.
#[derive(Debug, thiserror::Error)]
#[error("task `{task}` has finished; the input was not delivered")]
pub struct Rejected<M> {
    /// The task type's name.
    pub task: &'static str,
    /// The input that was not delivered.
    pub input: M,
}

impl<T: Task> TaskHarness<T> {
    /// Starts `task` at virtual time zero (the real [`Instant::now`] of this
    /// call): its `#[on_start]` handler runs, and its first tick is scheduled
    /// one interval later.
    pub fn new(task: T) -> Self {
        let epoch = Instant::now();
        let mut harness = TaskHarness {
            task,
            ctx: Ctx::new(epoch, 0, RawId::default()),
            epoch,
            next_tick: T::TICK_INTERVAL.map(|every| epoch + every),
            shut_down: false,
        };
        harness.task.on_start(&mut harness.ctx);
        harness
    }

    /// Delivers `input` to its `#[on_input]` handler at the current virtual
    /// time. Returns the harness, so calls chain.
    ///
    /// # Panics
    ///
    /// If the task has finished: a finished task receives nothing, and a test
    /// that sends to one has a bug. Use [`TaskHarness::try_input`] to get the
    /// input back instead.
    #[track_caller]
    pub fn input<M>(&mut self, input: M) -> &mut Self
    where
        T: Handles<M>,
    {
        if let Err(rejected) = self.try_input(input) {
            panic!("{rejected}");
        }
        self
    }

    /// Delivers `input` unless the task has finished, in which case the input
    /// comes back in the error.
    pub fn try_input<M>(&mut self, input: M) -> Result<(), Rejected<M>>
    where
        T: Handles<M>,
    {
        if self.ctx.is_finished() {
            return Err(Rejected {
                task: T::NAME,
                input,
            });
        }
        self.task.on_input(&mut self.ctx, T::wrap(input));
        Ok(())
    }

    /// Moves virtual time forward by `by`, firing every tick and timer that
    /// falls due on the way, each with `ctx.now()` at its own deadline. At one
    /// instant, the timer fires before the tick. Stops early if the task
    /// finishes; the clock still ends at `now + by`.
    ///
    /// # Panics
    ///
    /// If the task keeps re-arming its timer for an instant that has already
    /// come, so that time could never advance (a bug that would make a worker
    /// spin).
    pub fn advance(&mut self, by: Duration) -> &mut Self {
        let target = self.ctx.now() + by;
        let mut fired_at_once = 0u32;
        while let Some(at) = self.next_wakeup().filter(|&at| at <= target) {
            fired_at_once = if at <= self.ctx.now() {
                fired_at_once + 1
            } else {
                0
            };
            assert!(
                fired_at_once < SPIN_LIMIT,
                "task `{}` re-armed its timer for the current instant {SPIN_LIMIT} times in a row; \
                 on a worker this would spin forever",
                T::NAME,
            );
            self.fire(at);
        }
        self.ctx.set_now(target);
        self
    }

    /// Jumps virtual time to the next tick or timer deadline and fires it.
    /// Returns the instant it fired at, or `None` (and leaves the clock alone)
    /// when nothing is scheduled.
    pub fn advance_to_next(&mut self) -> Option<Instant> {
        let at = self.next_wakeup()?;
        self.fire(at);
        Some(self.ctx.now())
    }

    /// The next instant a tick or the timer is due, or `None` when nothing is
    /// scheduled (or the task has finished). May be in the past, for a timer
    /// armed with a past deadline.
    #[must_use]
    pub fn next_wakeup(&self) -> Option<Instant> {
        if self.ctx.is_finished() {
            return None;
        }
        // A tick interval set at run time replaces the attribute's.
        let tick = self.next_tick.filter(|_| !self.ctx.ticks_itself());
        [self.ctx.next_deadline(), tick].into_iter().flatten().min()
    }

    /// Calls the task's `#[on_shutdown]` handler, as the runtime does at a
    /// graceful shutdown. Only the first call has an effect. The task keeps
    /// receiving ticks and timers until it calls [`Ctx::finish`].
    pub fn shutdown(&mut self) -> &mut Self {
        if !self.shut_down && !self.ctx.is_finished() {
            self.shut_down = true;
            self.task.on_shutdown(&mut self.ctx);
        }
        self
    }

    /// Takes what the task emitted for the controller, oldest first.
    ///
    /// Other actions queued in between (sockets bound, datagrams sent, …)
    /// are discarded; use [`TaskHarness::drain_actions`] to see every action.
    pub fn drain(&mut self) -> Vec<T::Output> {
        self.drain_actions()
            .into_iter()
            .filter_map(|action| match action {
                Action::Emit(output) => Some(output),
                _ => None,
            })
            .collect()
    }

    /// Takes every action the task queued, oldest first.
    pub fn drain_actions(&mut self) -> Vec<Action<T>> {
        std::iter::from_fn(|| self.ctx.next_action()).collect()
    }

    /// Whether the task has called [`Ctx::finish`].
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.ctx.is_finished()
    }

    /// The current virtual time.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.ctx.now()
    }

    /// Virtual time elapsed since the harness started the task.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.ctx.now() - self.epoch
    }

    /// The deadline the task's timer is armed for, if any.
    #[must_use]
    pub fn timer(&self) -> Option<Instant> {
        self.ctx.timer()
    }

    /// The task, to inspect its state.
    #[must_use]
    pub fn task(&self) -> &T {
        &self.task
    }

    /// The task, to change its state directly.
    pub fn task_mut(&mut self) -> &mut T {
        &mut self.task
    }

    /// Fires what is due at `at` (the timer first, then the keyed timers in
    /// deadline order, then the tick), moving the clock there unless it is
    /// already later.
    fn fire(&mut self, at: Instant) {
        self.ctx.set_now(at.max(self.ctx.now()));
        let now = self.ctx.now();
        if self.ctx.take_due_timer(now) {
            self.task.on_timer(&mut self.ctx);
        }
        for key in self.ctx.take_due_keyed(now) {
            if self.ctx.is_finished() {
                return;
            }
            self.task.on_keyed_timer(&mut self.ctx, key);
        }
        if self.ctx.ticks_itself() {
            if self.ctx.take_due_tick(now) && !self.ctx.is_finished() {
                self.task.on_tick(&mut self.ctx);
            }
            return;
        }
        if let (Some(tick), Some(every)) = (self.next_tick, T::TICK_INTERVAL)
            && tick <= now
            && !self.ctx.is_finished()
        {
            // From the fixed schedule, not from `now`: no drift.
            self.next_tick = Some(tick + every);
            self.task.on_tick(&mut self.ctx);
        }
    }
}

impl<T: Task + fmt::Debug> fmt::Debug for TaskHarness<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHarness")
            .field("task", &self.task)
            .field("ctx", &self.ctx)
            .field("elapsed", &self.elapsed())
            .field("next_tick", &self.next_tick)
            .field("shut_down", &self.shut_down)
            .finish()
    }
}
