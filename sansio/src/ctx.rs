//! The task's window on the runtime: [`Ctx`] gives the current time and
//! queues the [`Action`]s a handler produces.

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use crate::Task;

/// Something a task asked the runtime to do, queued on its [`Ctx`].
///
/// The runtime takes actions out in the order they were queued and carries
/// each one out before the task's worker delivers its next input. New kinds
/// of action (packets, bus messages, spawns) are added as the runtime grows,
/// so the enum is `#[non_exhaustive]`.
#[non_exhaustive]
pub enum Action<T: Task> {
    /// An output for the controller, queued with [`Ctx::emit`].
    Emit(T::Output),
}

impl<T: Task> fmt::Debug for Action<T>
where
    T::Output: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Emit(output) => f.debug_tuple("Emit").field(output).finish(),
        }
    }
}

impl<T: Task> PartialEq for Action<T>
where
    T::Output: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Action::Emit(a), Action::Emit(b)) => a == b,
        }
    }
}

/// The context a task's handlers receive: the current time, the task's timer,
/// and the queue of actions for the runtime.
///
/// A handler does no I/O and reads no clock; it reads [`Ctx::now`] and queues
/// actions, which the runtime carries out in order once the handler returns.
/// Each task has its own `Ctx` for its whole life, so the timer and the
/// finished flag persist between calls.
pub struct Ctx<T: Task> {
    now: Instant,
    actions: VecDeque<Action<T>>,
    timer: Option<Instant>,
    finished: bool,
}

impl<T: Task> Ctx<T> {
    /// A context whose clock reads `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Ctx {
            now,
            actions: VecDeque::new(),
            timer: None,
            finished: false,
        }
    }

    /// The worker's current time: the instant at which the input, tick or
    /// timer being handled is delivered. It never goes backwards.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Queues `output` for the controller (`Runtime::next_event` delivers it,
    /// tagged with this task's id).
    pub fn emit(&mut self, output: T::Output) {
        self.actions.push_back(Action::Emit(output));
    }

    /// Arms the task's timer for `deadline`, replacing any earlier deadline.
    ///
    /// When it passes, the runtime disarms the timer and calls the task's
    /// `#[on_timer]` handler. A deadline in the past fires at the next
    /// opportunity. There is one timer per task, in the manner of
    /// `poll_timeout()` in quinn-proto and str0m: re-arm it with the earliest
    /// deadline the task cares about.
    pub fn set_timer(&mut self, deadline: Instant) {
        self.timer = Some(deadline);
    }

    /// Disarms the task's timer; a no-op when it is not armed.
    pub fn cancel_timer(&mut self) {
        self.timer = None;
    }

    /// The deadline the timer is armed for, if any.
    #[must_use]
    pub fn timer(&self) -> Option<Instant> {
        self.timer
    }

    /// Marks the task as finished: the actions queued so far are still
    /// carried out, then the task is removed and receives nothing more.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Whether [`Ctx::finish`] has been called.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Moves the clock to `now`; the runtime never moves it backwards.
    pub(crate) fn set_now(&mut self, now: Instant) {
        debug_assert!(now >= self.now, "time went backwards");
        self.now = now;
    }

    /// Takes the oldest queued action.
    pub(crate) fn next_action(&mut self) -> Option<Action<T>> {
        self.actions.pop_front()
    }

    /// Disarms the timer if it is due at `now`, returning whether it was.
    pub(crate) fn take_due_timer(&mut self, now: Instant) -> bool {
        match self.timer {
            Some(deadline) if deadline <= now => {
                self.timer = None;
                true
            }
            _ => false,
        }
    }
}

impl<T: Task> fmt::Debug for Ctx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("task", &T::NAME)
            .field("now", &self.now)
            .field("queued_actions", &self.actions.len())
            .field("timer", &self.timer)
            .field("finished", &self.finished)
            .finish()
    }
}
