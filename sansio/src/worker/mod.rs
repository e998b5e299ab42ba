//! The worker: the traits `#[sansio::worker]` implements ([`Worker`],
//! [`Member`], and the hidden `Groups`), the per-worker context the task
//! groups work through, and the event loop of a worker thread.
//!
//! One loop iteration: take up to a batch of control messages (spawns and
//! inputs), then the due ticks and timers, then I/O readiness; every input
//! goes to one task, and that task's actions are carried out before the next
//! input. Then sleep in the backend until the earliest deadline, or without
//! a deadline when there is none: an idle worker makes no system calls.

use std::fmt;
use std::hash::Hash;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::Instant;

use crate::backend::Notifier;
use crate::bus::{BusInput, BusTypes};
use crate::id::{Slots, TaskId};
use crate::stats::SharedCounters;
use crate::task::{SHUTDOWN_PHASES, Task};

mod cx;
mod event_loop;
mod group;
mod hub;
mod route;

pub use cx::WorkerCx;
pub(crate) use event_loop::{SHUTDOWN_GRACE, WorkerLoop, WorkerSetup};
pub use group::Group;
pub(crate) use hub::{Chan, Ev, Peer};
pub use route::Visit;

/// A kind of worker: the set of task types that run together on one worker
/// thread. Implemented by `#[sansio::worker]` on an enum with one variant per
/// task type (`enum Media { Echo(Echo), Room(Room) }`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a sansio worker",
    note = "declare it with `#[sansio::worker] enum {Self} {{ TaskA(TaskA), TaskB(TaskB) }}`"
)]
pub trait Worker: Sized + Send + 'static {
    /// The id of any task of this worker: one variant per task type, holding
    /// its [`TaskId`] (generated as `<Worker>Id`).
    type Id: Copy + Eq + Hash + fmt::Debug + fmt::Display + Send + Sync + 'static;
    /// A message for any task of this worker (generated as `<Worker>Input`,
    /// one variant per task type holding that task's input enum); events
    /// give back undelivered messages in this form.
    type Input: Send + 'static;
    /// What tasks of this worker emit: the generated `<Worker>Output`, one
    /// variant per task type, or the type set with `output = Type`.
    type Output: Send + 'static;
    /// The worker's bus types, from `channel = .., event = ..`.
    #[doc(hidden)]
    type Bus: BusTypes;
    /// The task groups of one worker thread.
    #[doc(hidden)]
    type Groups: Groups<Self>;

    /// The worker enum's name.
    const NAME: &'static str;
    /// The names of its task types, in variant order.
    const TASK_TYPES: &'static [&'static str];

    /// The index of the task type with this `TypeId`, if it is one of this
    /// worker's.
    #[doc(hidden)]
    fn group_of(task_type: std::any::TypeId) -> Option<u16>;

    /// A type-erased task of group `group` as the worker enum, or the box
    /// back when it holds another type.
    #[doc(hidden)]
    fn from_erased(
        group: u16,
        task: Box<dyn std::any::Any + Send>,
    ) -> Result<Self, Box<dyn std::any::Any + Send>>;

    /// The task inside, type-erased.
    #[doc(hidden)]
    fn into_erased(self) -> Box<dyn std::any::Any + Send>;
}

/// `Self` is one of the task types of the worker `W`; implemented by
/// `#[sansio::worker]` for each variant's task type.
#[diagnostic::on_unimplemented(
    message = "task `{Self}` is not one of the task types of worker `{W}`",
    label = "not a task type of `{W}`",
    note = "add a variant `{Self}({Self})` to the `#[sansio::worker]` enum `{W}`"
)]
pub trait Member<W: Worker>: Task + Send {
    /// The index of this task type among the worker's variants.
    #[doc(hidden)]
    const GROUP: u16;
    /// The task as the worker enum.
    #[doc(hidden)]
    fn into_worker(self) -> W;
    /// The task back out of the worker enum (`None` for another variant).
    #[doc(hidden)]
    fn from_worker(worker: W) -> Option<Self>;
    /// A typed id as the worker's id.
    #[doc(hidden)]
    fn id(id: TaskId<Self>) -> W::Id;
    /// The task's input as the worker's input.
    #[doc(hidden)]
    fn input(input: Self::Input) -> W::Input;
    /// The task's input back out of the worker's input.
    #[doc(hidden)]
    fn from_input(input: W::Input) -> Option<Self::Input>;
    /// The task's output as the worker's output.
    #[doc(hidden)]
    fn output(output: Self::Output) -> W::Output;
    /// A worker-level bus delivery as the task's input, if it takes it.
    #[doc(hidden)]
    fn bus_accept(input: BusInput<Chan<W>, Ev<W>>) -> Option<Self::Input>;
    /// The task's bus channel as the worker's.
    #[doc(hidden)]
    fn lift_channel(channel: <Self::Bus as BusTypes>::Channel) -> Chan<W>;
    /// The task's bus event as the worker's.
    #[doc(hidden)]
    fn lift_event(event: <Self::Bus as BusTypes>::Event) -> Ev<W>;
}

/// The task groups of one worker thread, one [`Group`] per task type;
/// `#[sansio::worker]` writes the impl, which only hands the group of a task
/// type (or each group) to a [`Visit`]. What the worker does with a group is
/// written once, in `route.rs`.
#[doc(hidden)]
pub trait Groups<W: Worker>: Send + 'static {
    /// Empty groups.
    fn new() -> Self;
    /// Carries `visit` out on the group of task type `group`; `None` when
    /// the worker has no such type.
    fn with_group<V: Visit<W>>(&mut self, group: u16, visit: &mut V) -> Option<V::Output>;
    /// Carries `visit` out on every group, in the order of the variants.
    fn each_group<V: Visit<W>>(&mut self, visit: &mut V);
}

/// A message from the controller to a worker.
pub(crate) enum Control<W: Worker> {
    Spawn {
        group: u16,
        task: W,
        slot: u32,
        generation: u32,
    },
    Deliver {
        group: u16,
        slot: u32,
        generation: u32,
        input: W::Input,
    },
}

/// What travels from the workers to the controller.
pub(crate) enum Envelope<W: Worker> {
    Event(Event<W>),
    Exited(WorkerExit<W>),
}

/// A worker's last word.
pub(crate) struct WorkerExit<W: Worker> {
    pub(crate) worker: usize,
    /// Tasks that finished after shutdown began.
    pub(crate) finished: usize,
    /// Tasks still running at the deadline, dropped.
    pub(crate) forced: Vec<W::Id>,
    /// Set when the loop itself panicked (a bug in sansio).
    pub(crate) failure: Option<String>,
}

/// What a worker shares with the controller.
pub(crate) struct WorkerShared {
    pub(crate) notifier: Notifier,
    /// One per task type.
    pub(crate) slots: Box<[Slots]>,
    pub(crate) counters: SharedCounters,
    /// Set once, to the shutdown deadline.
    pub(crate) shutdown: OnceLock<Instant>,
    /// The worker holds events for a full event queue: the controller
    /// wakes it when it takes one.
    pub(crate) events_held: AtomicBool,
    /// Live tasks per shutdown phase, for every worker to tell when a phase
    /// has ended everywhere.
    pub(crate) phases: [AtomicUsize; SHUTDOWN_PHASES as usize],
}

impl WorkerShared {
    pub(crate) fn new(notifier: Notifier, groups: usize) -> Self {
        WorkerShared {
            notifier,
            slots: (0..groups).map(|_| Slots::new()).collect(),
            counters: SharedCounters::default(),
            shutdown: OnceLock::new(),
            phases: std::array::from_fn(|_| AtomicUsize::new(0)),
            events_held: AtomicBool::new(false),
        }
    }
}

/// What happened on the workers, as `Runtime::next_event` reports it.
#[non_exhaustive]
pub enum Event<W: Worker> {
    /// A task emitted an output (`ctx.emit`).
    Output {
        /// The task that emitted it.
        task: W::Id,
        /// The output.
        output: W::Output,
    },
    /// A task called `ctx.finish()` and has been removed; its outputs were
    /// all reported before this.
    Finished {
        /// The task.
        task: W::Id,
    },
    /// A handler of the task panicked: the task has been removed (its
    /// outputs queued before the panic were reported first); the worker and
    /// every other task carry on.
    Panicked {
        /// The task.
        task: W::Id,
        /// The panic message.
        message: String,
    },
    /// A message reached the worker after its task had ended; here it is
    /// back.
    Undelivered {
        /// The task it was for.
        task: W::Id,
        /// The message.
        input: W::Input,
    },
    /// A worker stopped before shutdown: its poller failed (an error other
    /// than `EINTR` from the wait), or the loop itself panicked (a bug in
    /// sansio). Its tasks were dropped; messages to them fail. Shutdown
    /// reports it again, as [`Error::WorkerFailed`](crate::error::Error::WorkerFailed).
    WorkerFailed {
        /// The worker's index.
        worker: usize,
        /// What went wrong.
        message: String,
    },
}

impl<W: Worker> fmt::Debug for Event<W>
where
    W::Output: fmt::Debug,
    W::Input: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Output { task, output } => f
                .debug_struct("Output")
                .field("task", task)
                .field("output", output)
                .finish(),
            Event::Finished { task } => f.debug_struct("Finished").field("task", task).finish(),
            Event::Panicked { task, message } => f
                .debug_struct("Panicked")
                .field("task", task)
                .field("message", message)
                .finish(),
            Event::Undelivered { task, input } => f
                .debug_struct("Undelivered")
                .field("task", task)
                .field("input", input)
                .finish(),
            Event::WorkerFailed { worker, message } => f
                .debug_struct("WorkerFailed")
                .field("worker", worker)
                .field("message", message)
                .finish(),
        }
    }
}

/// The message of a panic payload (`&str` or `String`, as `panic!` makes).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
