//! The task contract: the [`Task`] trait, the [`Handles`] bound that types
//! what may be sent to a task, and the [`TaskDecl`] half written by
//! `#[sansio::task]` on the struct.

use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use crate::bus::{BusInput, BusTypes};
use crate::id::TaskId;

mod action;
mod ctx;
mod erased;
mod glue;
mod queue;

pub use action::{Action, BusAction, NetAction};
pub use ctx::{Ctx, SHUTDOWN_PHASES};
pub use erased::{
    ErasedTarget, MakeRequest, ReplyInput, SpawnDone, SpawnFailure, SpawnId, SpawnOutcome, Spawned,
};
pub(crate) use glue::Wraps;
pub use glue::{Answers, BusWrap, TaskBusInput, TcpWrap, TunWrap, UdpWrap, respond};

/// A sans-I/O task: a plain state machine driven by a sansio worker.
///
/// A task never touches a socket, a thread or a clock. The runtime calls one
/// of these hooks at a time, with a [`Ctx`] whose [`Ctx::now`] is the worker's
/// current [`Instant`](std::time::Instant); the hook changes the task's state
/// and queues *actions* on the `Ctx` (an output for the controller, a timer,
/// packets, bus messages, spawns). The runtime carries
/// out every action a hook queued, in the order they were queued, before it
/// delivers the next input of that worker.
///
/// You normally do not implement this trait by hand: `#[sansio::task]` on the
/// struct and on its inherent `impl` block writes it, routing each input,
/// tick and timer to the method that carries the matching attribute. It is
/// public so that code generic over tasks (a runtime, a test harness) can name
/// it, and so that a hand-written task remains possible.
///
/// # Contract
///
/// - **Inputs** arrive through [`Task::on_input`] as [`Task::Input`], an enum
///   with one variant per `#[on_input]` handler.
/// - **Ticks**: when [`Task::TICK_INTERVAL`] is `Some(every)`, the runtime
///   calls [`Task::on_tick`] every `every`, on a schedule fixed to an origin
///   (`origin + k × every`), so ticks never drift. A runtime worker ticks all
///   tasks of one type together, on a schedule fixed to the worker's start:
///   a new task's first tick comes within one interval, and a worker that
///   falls behind skips missed ticks rather than replaying them. The
///   [`TaskHarness`](crate::testing::TaskHarness) ticks from the task's start
///   and fires every tick of an `advance`, each at its own instant.
/// - **Timer**: one unkeyed timer per task. [`Ctx::set_timer`] arms it
///   (replacing any earlier deadline), [`Ctx::cancel_timer`] disarms it;
///   when the deadline passes, the runtime disarms it and calls
///   [`Task::on_timer`], which may arm it again. A deadline already in the
///   past fires at the next opportunity, with `ctx.now()` at or after the
///   deadline: time never goes backwards.
/// - **Keyed timers**: any number, one per key ([`Ctx::set_timer_for`],
///   [`Ctx::cancel_timer_for`]); each fires [`Task::on_keyed_timer`] with its
///   key. At one instant the unkeyed timer fires first, then the keyed ones
///   in deadline order (the order they were set, for equal deadlines).
/// - **Tick interval at run time**: [`Ctx::set_tick`] replaces the interval
///   of `#[on_tick(every = ..)]` for one task.
/// - **Finish**: after a hook calls [`Ctx::finish`], the actions it queued are
///   still carried out, then the task is removed and gets no more inputs,
///   ticks or timers.
/// - **Shutdown**: [`Task::on_shutdown`] is called once when the runtime shuts
///   down. The task may keep running (flushing, saying goodbye) until it calls
///   [`Ctx::finish`]. The default finishes at once.
///
/// The trait does not require `Send`, so a task that is only driven by
/// [`TaskHarness`](crate::testing::TaskHarness) may hold anything; the
/// runtime requires `Send` where it moves a task to a worker thread, and says
/// so there, once. Inputs and outputs cross threads, so they must be `Send`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a sansio task",
    label = "not a sansio task",
    note = "put `#[sansio::task]` on the struct `{Self}` and on an inherent `impl {Self}` block holding its handlers"
)]
pub trait Task: Sized + 'static {
    /// Everything that can be delivered to the task; generated as
    /// `<Name>Input`, one variant per `#[on_input]` handler.
    type Input: Send + 'static;

    /// What the task emits to the controller with [`Ctx::emit`]; set with
    /// `#[sansio::task(output = Type)]` on the struct, `()` by default.
    type Output: Send + 'static;

    /// The task type's name, for events, stats and error messages.
    const NAME: &'static str;

    /// The interval of [`Task::on_tick`], from `#[on_tick(every = "…")]`;
    /// `None` when the task has no tick handler.
    const TICK_INTERVAL: Option<Duration> = None;

    /// The task's bus types, from `channel = .., event = ..` on its struct
    /// (`NoBus` when it declares none).
    #[doc(hidden)]
    type Bus: BusTypes;

    /// The key of the task's keyed timers: the type of the key parameter of
    /// its keyed `#[on_timer]` handler (`fn t(&mut self, ctx, key: K)`), or
    /// [`NoTimerKey`] when it has none. `#[sansio::task]` sets it.
    type TimerKey: Clone + Eq + Hash + Send + 'static;

    /// A bus delivery as the task's input (`None` for a task without a bus).
    #[doc(hidden)]
    fn bus_input(
        input: BusInput<<Self::Bus as BusTypes>::Channel, <Self::Bus as BusTypes>::Event>,
    ) -> Option<Self::Input> {
        let _ = input;
        None
    }

    /// Called once, when the task is placed on a worker, before any input.
    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }

    /// Called for each input sent to the task.
    fn on_input(&mut self, ctx: &mut Ctx<Self>, input: Self::Input);

    /// Called every [`Task::TICK_INTERVAL`], when that is `Some`.
    fn on_tick(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }

    /// Called when the deadline set with [`Ctx::set_timer`] has passed.
    fn on_timer(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }

    /// Called when the deadline set with [`Ctx::set_timer_for`] for `key`
    /// has passed.
    fn on_keyed_timer(&mut self, ctx: &mut Ctx<Self>, key: Self::TimerKey) {
        let _ = (ctx, key);
    }

    /// Called once when the runtime shuts down. The default calls
    /// [`Ctx::finish`]; a task that needs to flush state first finishes
    /// later, from any hook.
    fn on_shutdown(&mut self, ctx: &mut Ctx<Self>) {
        ctx.finish();
    }
}

/// `Self` has an `#[on_input]` handler for messages of type `M`.
///
/// This is the bound on everything that delivers a message to a task
/// ([`TaskHarness::input`](crate::testing::TaskHarness::input), and the
/// runtime's `send`), so sending a type the task does not handle is a compile
/// error that names the task and the type. `#[sansio::task]` implements it for
/// every handled type and for the task's own input enum.
#[diagnostic::on_unimplemented(
    message = "task `{Self}` has no #[on_input] handler for `{M}`",
    label = "`{Self}` cannot receive `{M}`",
    note = "add a method `#[on_input] fn name(&mut self, ctx: &mut Ctx<Self>, input: {M})` to the `#[sansio::task]` impl of `{Self}`",
    note = "a request type, answered with `#[on_request]`, is not sent but asked: use `runtime.call(..)` or `ctx.request(..)`"
)]
pub trait Handles<M>: Task {
    /// Wraps `message` in the task's input enum.
    #[doc(hidden)]
    fn wrap(message: M) -> Self::Input;

    /// Takes a message of type `M` back out of the input enum (`None` for
    /// another variant); how a message the runtime could not queue is handed
    /// back to its sender.
    #[doc(hidden)]
    fn unwrap(input: Self::Input) -> Option<M>;

    /// A message of type `M` in the input enum, by reference (`None` for
    /// another variant): how the test harness reads what a task sent.
    #[doc(hidden)]
    fn unwrap_ref(input: &Self::Input) -> Option<&M> {
        let _ = input;
        None
    }
}

/// `Self` is the key type of the keyed `#[on_timer]` handler of the task
/// `T`: the bound on [`Ctx::set_timer_for`] and the other keyed-timer
/// methods. `#[sansio::task]` implements it.
#[diagnostic::on_unimplemented(
    message = "task `{T}` has no keyed #[on_timer] handler for keys of type `{Self}`",
    label = "`{T}` has no timers keyed by `{Self}`",
    note = "add a method `#[on_timer] fn name(&mut self, ctx: &mut Ctx<Self>, key: {Self})` to the `#[sansio::task]` impl of `{T}`"
)]
pub trait TimerKeyOf<T: Task> {
    /// The key as the task's timer key (the same type: `#[sansio::task]`
    /// implements this only for `T::TimerKey`).
    #[doc(hidden)]
    fn into_timer_key(self) -> T::TimerKey;
}

/// The [`Task::TimerKey`] of a task without a keyed `#[on_timer]` handler:
/// there is no value of it, so such a task cannot arm a keyed timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoTimerKey {}

/// The half of a task written by `#[sansio::task]` on the struct: what the
/// task emits and what it is called.
///
/// The macro on the `impl` block reads these to write [`Task`]; a struct
/// without the attribute therefore fails to compile with a message that says
/// so.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is missing `#[sansio::task]` on its definition",
    label = "the `impl` block is a task, but the type is not declared as one",
    note = "put `#[sansio::task]` (or `#[sansio::task(output = YourOutput)]`) on `struct {Self}`"
)]
pub trait TaskDecl {
    /// What the task emits to the controller.
    type Output: Send + 'static;
    /// The struct's name.
    const NAME: &'static str;
    /// The task's bus types.
    type Bus: BusTypes;
}

impl<T: Task> fmt::Debug for TaskId<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `Echo#0.3.1`: task type, worker, slot, generation.
impl<T: Task> fmt::Display for TaskId<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}#{}.{}.{}",
            T::NAME,
            self.worker(),
            self.slot(),
            self.generation()
        )
    }
}
