//! Unit-testing tasks: [`TaskHarness`] drives one task under virtual time,
//! with no threads, no sockets and no real clock.
//!
//! The harness plays the runtime's part for a single task: it starts the
//! task, delivers inputs, fires its ticks and timer as virtual time advances
//! (each at its own instant, in order), and collects what the task emits.
//! Virtual time starts at the real [`Instant`] the harness was created and
//! moves only when the test moves it, in the manner of quinn-proto's test
//! pairs, which jump the clock to the next wakeup.
//!
//! About 530 lines, most of them documentation and examples of one public
//! type ([`TaskHarness`]) and its id constructors.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::buf::PacketBuf;
use crate::bus::{Incoming, Request, RequestId, Responder, Route};
use crate::error::RpcError;
use crate::id::RawId;
use crate::id::TaskId;
use crate::net::{TcpConnId, TcpListenerId, TunId, UdpSocketId};
use crate::task::{Action, Answers, BusAction, Ctx, Handles, NetAction, Task};

/// A task id for tests, without a runtime: the task of type `T` in `slot`
/// of worker `worker`, of `generation`. Equal to the id a runtime would give
/// that task, so it can stand for another task in a harness test (the target
/// of a `ctx.send_to`, a request) or key a map.
#[must_use]
pub fn task_id<T>(worker: usize, slot: u32, generation: u32) -> TaskId<T> {
    TaskId::new(worker_index(worker), slot, generation)
}

/// A UDP socket id for tests: the `number`-th socket of a task on `worker`.
#[must_use]
pub fn udp_socket_id(worker: usize, number: u32) -> UdpSocketId {
    UdpSocketId::new(worker_index(worker), RawId::default(), number)
}

/// A TCP listener id for tests: the `number`-th socket of a task on
/// `worker`.
#[must_use]
pub fn tcp_listener_id(worker: usize, number: u32) -> TcpListenerId {
    TcpListenerId::new(worker_index(worker), RawId::default(), number)
}

/// A TCP connection id for tests: the `number`-th connection accepted on
/// `worker` (as in `TcpEvent::Accepted`).
#[must_use]
pub fn tcp_conn_id(worker: usize, number: u32) -> TcpConnId {
    TcpConnId::accepted(worker_index(worker), RawId::default(), number)
}

/// A TUN/TAP device id for tests: the `number`-th socket of a task on
/// `worker`.
#[must_use]
pub fn tun_id(worker: usize, number: u32) -> TunId {
    TunId::new(worker_index(worker), RawId::default(), number)
}

/// Worker indexes fit a `u16` (a runtime has at most 65,536 workers).
fn worker_index(worker: usize) -> u16 {
    u16::try_from(worker).unwrap_or(u16::MAX)
}

/// A request made with [`TaskHarness::ask`]: its answer, once the task has
/// given it.
pub struct Asked<R: Request> {
    answer: crossbeam_channel::Receiver<Result<R::Response, RpcError>>,
}

impl<R: Request> Asked<R> {
    /// The answer, if the task has given it (or `Err(RpcError::Dropped)` if
    /// it let the request go); `None` while it holds the responder. The
    /// answer is taken: a second call returns `None`.
    #[must_use]
    pub fn answer(&self) -> Option<Result<R::Response, RpcError>> {
        self.answer.try_recv().ok()
    }
}

impl<R: Request> fmt::Debug for Asked<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asked")
            .field("answered", &!self.answer.is_empty())
            .finish()
    }
}

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
        harness.send_answers();
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
        self.send_answers();
        Ok(())
    }

    /// Asks the task with `request`, which its `#[on_request]` handler
    /// answers, and returns the answer.
    ///
    /// # Panics
    ///
    /// If the task has finished, or did not answer within the call (it
    /// keeps the [`Responder`] to answer later: use [`TaskHarness::ask`]), or
    /// let the request go unanswered.
    #[track_caller]
    pub fn request<R>(&mut self, request: R) -> R::Response
    where
        R: Request,
        T: Answers<R>,
    {
        let asked = self.ask(request);
        match asked.answer() {
            Some(Ok(answer)) => answer,
            Some(Err(error)) => panic!("task `{}` did not answer: {error}", T::NAME),
            None => panic!(
                "task `{}` keeps the request to answer later; use `TaskHarness::ask`",
                T::NAME
            ),
        }
    }

    /// Asks the task with `request` and returns a handle on the answer, for
    /// a task that answers later (through a kept [`Responder`]).
    ///
    /// # Panics
    ///
    /// If the task has finished.
    #[track_caller]
    pub fn ask<R>(&mut self, request: R) -> Asked<R>
    where
        R: Request,
        T: Answers<R>,
    {
        assert!(
            !self.ctx.is_finished(),
            "task `{}` has finished; the request was not delivered",
            T::NAME
        );
        let (tx, answer) = crossbeam_channel::bounded(1);
        let incoming = Incoming {
            request,
            responder: Responder::new(Route::controller::<R>(tx)),
        };
        self.task.on_input(&mut self.ctx, T::wrap_request(incoming));
        self.send_answers();
        Asked { answer }
    }

    /// The task's own id (worker 0, slot 0, generation 0 under the harness),
    /// as `ctx.id()` returns it.
    #[must_use]
    pub fn id(&self) -> TaskId<T> {
        self.ctx.id()
    }

    /// Takes the direct messages of type `M` the task sent to tasks of type
    /// `U` (`ctx.send_to`), oldest first, with their targets; other actions
    /// stay queued.
    pub fn drain_sent<U, M>(&mut self) -> Vec<(TaskId<U>, M)>
    where
        U: Handles<M>,
    {
        self.ctx
            .take_actions(|action| action.sent::<U, M>().is_some())
            .into_iter()
            .filter_map(|action| action.into_sent::<U, M>().ok())
            .collect()
    }

    /// Takes the requests of type `R` the task made of tasks of type `U`
    /// (`ctx.request`), oldest first, with their targets and ids (answer one
    /// by delivering `Reply { id, result }`); other actions stay queued.
    pub fn drain_requests<U, R>(&mut self) -> Vec<(TaskId<U>, RequestId, R)>
    where
        U: Task,
        R: Request,
    {
        self.ctx
            .take_actions(|action| {
                action.request::<R>().is_some() && action.requested_of::<U>().is_some()
            })
            .into_iter()
            .filter_map(|action| {
                let target = action.requested_of::<U>()?;
                let Action::Bus(BusAction::Request { id, request, .. }) = action else {
                    return None;
                };
                let request = request.downcast::<R>().ok()?;
                Some((target, RequestId(id), *request))
            })
            .collect()
    }

    /// Takes the datagrams the task sent (`udp_send`, and one per
    /// destination of `udp_send_many`), oldest first; other actions stay
    /// queued.
    pub fn drain_udp_sent(&mut self) -> Vec<(UdpSocketId, SocketAddr, PacketBuf)> {
        let sends = self.ctx.take_actions(|action| {
            matches!(
                action,
                Action::Net(NetAction::UdpSend { .. } | NetAction::UdpSendMany { .. })
            )
        });
        let mut datagrams = Vec::new();
        for action in sends {
            match action {
                Action::Net(NetAction::UdpSend { socket, to, data }) => {
                    datagrams.push((socket, to, data))
                }
                Action::Net(NetAction::UdpSendMany { socket, to, data }) => {
                    datagrams.extend(to.iter().map(|to| (socket, *to, data.clone())));
                }
                _ => {}
            }
        }
        datagrams
    }

    /// Takes the bytes the task sent on `conn` (`tcp_send`), concatenated in
    /// order; other actions stay queued.
    pub fn drain_tcp_sent(&mut self, conn: TcpConnId) -> Vec<u8> {
        self.ctx
            .take_actions(
                |action| matches!(action, Action::Net(NetAction::TcpSend { conn: on, .. }) if *on == conn),
            )
            .into_iter()
            .flat_map(|action| match action {
                Action::Net(NetAction::TcpSend { data, .. }) => data.to_vec(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Carries out the answers the task gave (`Responder::respond`, or an
    /// `#[on_request]` handler's return value), as a worker would after the
    /// handler: they go to whoever asked through [`TaskHarness::ask`].
    #[inline(always)]
    fn send_answers(&mut self) {
        if self.ctx.has_replies() {
            self.send_queued_answers();
        }
    }

    #[cold]
    fn send_queued_answers(&mut self) {
        for action in self.ctx.take_replies() {
            if let Action::Reply(send) = action {
                send();
            }
        }
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
        match (self.ctx.next_deadline(), tick) {
            (Some(deadline), Some(tick)) => Some(deadline.min(tick)),
            (deadline, tick) => deadline.or(tick),
        }
    }

    /// Calls the task's `#[on_shutdown]` handler, as the runtime does at a
    /// graceful shutdown. Only the first call has an effect. The task keeps
    /// receiving ticks and timers until it calls [`Ctx::finish`].
    pub fn shutdown(&mut self) -> &mut Self {
        if !self.shut_down && !self.ctx.is_finished() {
            self.shut_down = true;
            self.task.on_shutdown(&mut self.ctx);
            self.send_answers();
        }
        self
    }

    /// Takes what the task emitted for the controller, oldest first.
    ///
    /// Other actions queued in between (sockets bound, datagrams sent, …)
    /// are discarded; use [`TaskHarness::drain_actions`] to see every action.
    pub fn drain(&mut self) -> Vec<T::Output> {
        self.ctx.drain_outputs()
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
        self.fire_hooks(at);
        self.send_answers();
    }

    fn fire_hooks(&mut self, at: Instant) {
        self.ctx.set_now(at.max(self.ctx.now()));
        let now = self.ctx.now();
        if self.ctx.take_due_timer(now) {
            self.task.on_timer(&mut self.ctx);
        }
        if self.ctx.keyed_timers() > 0 {
            for key in self.ctx.take_due_keyed(now) {
                if self.ctx.is_finished() {
                    return;
                }
                self.task.on_keyed_timer(&mut self.ctx, key);
            }
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
