//! The worker: the traits `#[sansio::worker]` implements ([`Worker`],
//! [`Member`], and the hidden `Groups`), the per-worker context the task
//! groups work through, and the event loop of a worker thread.
//!
//! One loop iteration: take up to a batch of control messages (spawns and
//! inputs), then the due ticks and timers, then I/O readiness; every input
//! goes to one task, and that task's actions are carried out before the next
//! input. Then sleep in the backend until the earliest deadline, or without
//! a deadline when there is none: an idle worker makes no system calls.

use std::collections::VecDeque;
use std::fmt;
use std::hash::Hash;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TryRecvError, TrySendError};

use crate::backend::{Notifier, Poller, Readiness};
use crate::bus::{BusEnvelope, BusHub, BusInput, BusTypes, Chan, Delivery, Ev, Peer};
use crate::ctx::SHUTDOWN_PHASES;
use crate::error::RpcError;
use crate::id::TaskId;
use crate::id::{RawId, Slots};
use crate::net::{Adoption, Net, NetInput, Source};
use crate::runtime::Event;
use crate::stats::{Counters, SharedCounters};
use crate::task::Task;
use crate::timer::{Due, Timers};

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

/// The task groups of one worker thread, one [`Group`](crate::group::Group)
/// per task type; `#[sansio::worker]` writes the impl, which only routes each
/// call to the right group.
#[doc(hidden)]
pub trait Groups<W: Worker>: Send + 'static {
    /// Empty groups.
    fn new() -> Self;
    /// Places `task` in `slot` and starts it.
    fn spawn(&mut self, cx: &mut WorkerCx<W>, task: W, slot: u32, generation: u32);
    /// Delivers `input` to the task `id`.
    fn deliver(&mut self, cx: &mut WorkerCx<W>, id: W::Id, input: W::Input);
    /// Ticks every task of `group`.
    fn tick(&mut self, cx: &mut WorkerCx<W>, group: u16);
    /// Delivers a network event to the task `owner`.
    fn net(&mut self, cx: &mut WorkerCx<W>, owner: RawId, input: NetInput);
    /// Delivers a bus event to the task `owner`.
    fn bus(&mut self, cx: &mut WorkerCx<W>, owner: RawId, input: BusInput<Chan<W>, Ev<W>>);
    /// Delivers a broadcast to every task with a bus.
    fn broadcast(&mut self, cx: &mut WorkerCx<W>, event: &Ev<W>);
    /// Delivers a type-erased message (the task's input) to one task.
    fn deliver_erased(
        &mut self,
        cx: &mut WorkerCx<W>,
        group: u16,
        slot: u32,
        generation: u32,
        payload: Box<dyn std::any::Any + Send>,
    );
    /// Delivers the answer to request `id` of the task `owner`; returns
    /// whether it was still waiting for one.
    fn reply(
        &mut self,
        cx: &mut WorkerCx<W>,
        owner: RawId,
        id: u64,
        result: Result<Box<dyn std::any::Any + Send>, RpcError>,
    ) -> bool;
    /// Fires a task's timer entry.
    fn timer(
        &mut self,
        cx: &mut WorkerCx<W>,
        group: u16,
        slot: u32,
        generation: u32,
        deadline: Instant,
    );
    /// Gives the task `owner` a socket handed over to it.
    fn adopt(&mut self, cx: &mut WorkerCx<W>, owner: RawId, adoption: Adoption);
    /// Calls every task's `on_shutdown`.
    fn shutdown(&mut self, cx: &mut WorkerCx<W>);
    /// Removes every task, listing them in `forced`.
    fn force(&mut self, cx: &mut WorkerCx<W>, forced: &mut Vec<W::Id>);
    /// Live tasks in all groups.
    fn live(&self) -> usize;
}

/// A message from the controller to a worker.
pub(crate) enum Control<W: Worker> {
    Spawn { task: W, slot: u32, generation: u32 },
    Deliver { id: W::Id, input: W::Input },
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
    pub(crate) events_held: std::sync::atomic::AtomicBool,
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
            events_held: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// The worker's state that task groups work through: the clock, the timers,
/// the way out to the controller, the counters.
#[doc(hidden)]
pub struct WorkerCx<W: Worker> {
    pub(crate) now: Instant,
    pub(crate) index: u16,
    pub(crate) shared: Arc<WorkerShared>,
    pub(crate) timers: Timers,
    pub(crate) sink: EventSink<W>,
    pub(crate) counters: Counters,
    pub(crate) net: Net,
    pub(crate) bus: BusHub<W>,
    /// Tasks spawned by tasks on this worker, placed once the spawning
    /// handler has returned.
    pub(crate) spawns: VecDeque<(W, u32, u32)>,
    /// Sockets handed over to tasks, given to them before any of their
    /// events is delivered.
    pub(crate) adoptions: VecDeque<(RawId, Adoption)>,
    /// Set once shutdown has begun; tasks finishing then are counted.
    pub(crate) shutting_down: bool,
    /// The shutdown phase under way: tasks of this phase and earlier ones
    /// have been asked to shut down.
    pub(crate) shutdown_phase: u8,
    /// The sender of the direct message being delivered, told if the
    /// target is gone.
    pub(crate) delivering_from: Option<crate::bus::Sender>,
    pub(crate) finished_during_shutdown: usize,
}

impl<W: Worker> WorkerCx<W> {
    pub(crate) fn output(&mut self, task: W::Id, output: W::Output) {
        self.counters.outputs += 1;
        self.sink.send(
            Envelope::Event(Event::Output { task, output }),
            false,
            &mut self.counters,
        );
    }

    pub(crate) fn finished(&mut self, task: W::Id) {
        if self.shutting_down {
            self.finished_during_shutdown += 1;
        }
        self.sink.send(
            Envelope::Event(Event::Finished { task }),
            true,
            &mut self.counters,
        );
    }

    pub(crate) fn panicked(&mut self, task: W::Id, message: String) {
        self.counters.panics += 1;
        self.sink.send(
            Envelope::Event(Event::Panicked { task, message }),
            true,
            &mut self.counters,
        );
    }

    /// Reports a message whose task has ended.
    pub fn undelivered(&mut self, task: W::Id, input: W::Input) {
        self.counters.undelivered += 1;
        self.sink.send(
            Envelope::Event(Event::Undelivered { task, input }),
            true,
            &mut self.counters,
        );
    }

    /// Counts a network event for a task type the worker does not have
    /// (unreachable in practice: owners come from the worker's own tasks).
    pub fn net_undeliverable(&mut self, input: NetInput) {
        let _ = input;
        self.counters.net_dropped += 1;
    }

    /// Spawns a task a task asked for (type-erased) on worker `worker`:
    /// allocates its slot, queues it (here, or in that worker's bus inbox)
    /// and returns its (worker, slot, generation).
    pub(crate) fn spawn_erased(
        &mut self,
        worker: usize,
        task_type: std::any::TypeId,
        task: Box<dyn std::any::Any + Send>,
    ) -> crate::ctx::SpawnOutcome {
        use crate::ctx::SpawnFailure;
        let Some(group) = W::group_of(task_type) else {
            return Err((SpawnFailure::NotInWorker, task));
        };
        let Some(peer) = self.bus.peers.get(worker) else {
            return Err((SpawnFailure::NoSuchWorker, task));
        };
        let slots = &peer.shared.slots[usize::from(group)];
        let Some((slot, generation)) = slots.allocate() else {
            return Err((SpawnFailure::TooManyTasks, task));
        };
        let task = match W::from_erased(group, task) {
            Ok(task) => task,
            Err(task) => {
                slots.release(slot);
                return Err((SpawnFailure::NotInWorker, task));
            }
        };
        // `worker` indexes the peers, whose number fits a u16.
        let worker = worker as u16;
        if worker == self.index {
            self.spawns.push_back((task, slot, generation));
            return Ok((worker, slot, generation));
        }
        let spawn = BusEnvelope::Spawn {
            task,
            slot,
            generation,
        };
        match peer.send(spawn) {
            Ok(()) => Ok((worker, slot, generation)),
            Err(envelope) => {
                slots.release(slot);
                self.counters.bus_undelivered += 1;
                let task = match envelope {
                    BusEnvelope::Spawn { task, .. } => task.into_erased(),
                    // `send` hands back what it was given.
                    _ => unreachable!("a refused send hands back its envelope"),
                };
                Err((SpawnFailure::Full, task))
            }
        }
    }

    /// A task of `phase` started (`1`) or ended (`-1`) here, or moved.
    pub(crate) fn count_phase(&self, phase: u8, started: bool) {
        let live = &self.shared.phases[usize::from(phase)];
        if started {
            live.fetch_add(1, Ordering::AcqRel);
        } else if live.fetch_sub(1, Ordering::AcqRel) == 1 && self.shutting_down {
            // The last of its phase here: the workers waiting for it to end
            // everywhere look again.
            for peer in self.bus.peers.iter() {
                peer.shared.notifier.notify();
            }
        }
    }

    /// Whether every task of phases up to `phase` has ended on every worker.
    fn phases_over(&self, phase: u8) -> bool {
        self.bus.peers.iter().all(|peer| {
            peer.shared.phases[..=usize::from(phase)]
                .iter()
                .all(|live| live.load(Ordering::Acquire) == 0)
        })
    }

    pub(crate) fn release(&self, group: u16, slot: u32) {
        self.shared.slots[usize::from(group)].release(slot);
    }
}

impl<W: Worker> fmt::Debug for WorkerCx<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerCx")
            .field("worker", &self.index)
            .field("now", &self.now)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// The way from a worker to the controller's bounded event queue.
///
/// Outputs that find the queue full are dropped and counted: a worker never
/// blocks on a slow controller. Lifecycle events (finished, panicked,
/// undelivered) wait in a local queue of the same capacity and go out, in
/// order, ahead of anything newer; only past that are they dropped (counted).
/// Once shutdown begins the controller drains the queue continuously, and
/// every event waits for room up to the shutdown deadline.
pub(crate) struct EventSink<W: Worker> {
    tx: Sender<Envelope<W>>,
    pending: VecDeque<Envelope<W>>,
    capacity: usize,
    /// During shutdown: wait for room until then instead of dropping.
    patient_until: Option<Instant>,
}

impl<W: Worker> EventSink<W> {
    pub(crate) fn new(tx: Sender<Envelope<W>>, capacity: usize) -> Self {
        EventSink {
            tx,
            pending: VecDeque::new(),
            capacity,
            patient_until: None,
        }
    }

    fn send(&mut self, envelope: Envelope<W>, lifecycle: bool, counters: &mut Counters) {
        self.flush(counters);
        if !self.pending.is_empty() {
            self.hold(envelope, lifecycle, counters);
            return;
        }
        match self.patient_until {
            Some(until) => match self.tx.send_deadline(envelope, until) {
                Ok(()) => {}
                Err(SendTimeoutError::Timeout(_) | SendTimeoutError::Disconnected(_)) => {
                    counters.events_dropped += 1;
                }
            },
            None => match self.tx.try_send(envelope) {
                Ok(()) => {}
                Err(TrySendError::Full(envelope)) => self.hold(envelope, lifecycle, counters),
                Err(TrySendError::Disconnected(_)) => counters.events_dropped += 1,
            },
        }
    }

    /// Keeps a lifecycle event for later, or drops an output.
    fn hold(&mut self, envelope: Envelope<W>, lifecycle: bool, counters: &mut Counters) {
        if lifecycle && self.pending.len() < self.capacity {
            self.pending.push_back(envelope);
        } else {
            counters.events_dropped += 1;
        }
    }

    /// Sends held events while there is room.
    pub(crate) fn flush(&mut self, counters: &mut Counters) {
        while let Some(envelope) = self.pending.pop_front() {
            let result = match self.patient_until {
                Some(until) => {
                    self.tx
                        .send_deadline(envelope, until)
                        .map_err(|error| match error {
                            SendTimeoutError::Timeout(envelope) => TrySendError::Full(envelope),
                            SendTimeoutError::Disconnected(envelope) => {
                                TrySendError::Disconnected(envelope)
                            }
                        })
                }
                None => self.tx.try_send(envelope),
            };
            match result {
                Ok(()) => {}
                Err(TrySendError::Full(envelope)) if self.patient_until.is_none() => {
                    self.pending.push_front(envelope);
                    return;
                }
                Err(_) => counters.events_dropped += 1,
            }
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the event queue has room (the controller took some).
    pub(crate) fn has_room(&self) -> bool {
        self.tx
            .capacity()
            .is_none_or(|capacity| self.tx.len() < capacity)
    }

    fn be_patient_until(&mut self, until: Instant) {
        self.patient_until = Some(until);
    }
}

/// Control messages taken per loop iteration before timers and I/O get
/// their turn.
const BATCH: usize = 1024;

/// Deliveries whose queue memory a worker keeps between bursts.
const LOCAL_KEPT: usize = 1024;

/// Receive batches read from one socket per turn before the others get
/// theirs.
const READS_PER_TURN: usize = 8;

/// How long after the shutdown deadline a worker still waits for room in the
/// event queue for its last events.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How soon a worker with held lifecycle events looks at the queue again.
const RETRY_HELD: Duration = Duration::from_millis(1);

/// One worker thread's loop.
pub(crate) struct WorkerLoop<W: Worker, P: Poller> {
    poller: P,
    inbox: Receiver<Control<W>>,
    bus_inbox: Receiver<BusEnvelope<W>>,
    groups: W::Groups,
    cx: WorkerCx<W>,
    ready: Vec<Readiness>,
    /// How long to spin for new messages before sleeping.
    spin: Duration,
}

/// Everything a worker loop is made of, but the other workers' inboxes.
pub(crate) struct WorkerSetup<W: Worker, P: Poller> {
    pub(crate) index: u16,
    pub(crate) poller: P,
    pub(crate) registry: Box<dyn crate::backend::Registry>,
    pub(crate) inbox: Receiver<Control<W>>,
    pub(crate) bus_inbox: Receiver<BusEnvelope<W>>,
    pub(crate) events: Sender<Envelope<W>>,
    pub(crate) shared: Arc<WorkerShared>,
    pub(crate) capacity: usize,
    pub(crate) spin: Duration,
}

impl<W: Worker, P: Poller> WorkerLoop<W, P> {
    /// The loop of one worker, given every worker's bus inbox (its own
    /// included) as `peers`.
    pub(crate) fn new(setup: WorkerSetup<W, P>, peers: Arc<[Peer<W>]>) -> Self {
        let now = Instant::now();
        WorkerLoop {
            poller: setup.poller,
            inbox: setup.inbox,
            bus_inbox: setup.bus_inbox,
            groups: W::Groups::new(),
            cx: WorkerCx {
                now,
                index: setup.index,
                shared: setup.shared,
                timers: Timers::new(now, W::TASK_TYPES.len()),
                sink: EventSink::new(setup.events, setup.capacity),
                counters: Counters::default(),
                net: Net::new(setup.registry, setup.index),
                bus: BusHub::new(setup.index, peers),
                spawns: VecDeque::new(),
                adoptions: VecDeque::new(),
                shutting_down: false,
                shutdown_phase: 0,
                delivering_from: None,
                finished_during_shutdown: 0,
            },
            ready: Vec::new(),
            spin: setup.spin,
        }
    }

    /// Runs until shutdown, then reports to the controller. A panic outside
    /// the task handlers (which are isolated one by one) is reported as the
    /// worker's failure.
    pub(crate) fn run(mut self) {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.serve()));
        let failure = outcome.err().map(|payload| panic_message(payload.as_ref()));
        let mut forced = Vec::new();
        // Tasks' Drop runs here; after a failure the groups may be half-way
        // through an update. Neither may keep the exit message from going out.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            self.groups.force(&mut self.cx, &mut forced);
        }));
        let until = self
            .cx
            .shared
            .shutdown
            .get()
            .copied()
            .unwrap_or_else(Instant::now)
            + SHUTDOWN_GRACE;
        self.cx.sink.be_patient_until(until);
        self.cx.sink.flush(&mut self.cx.counters);
        self.cx.shared.counters.publish(&self.cx.counters);
        let exit = WorkerExit {
            worker: usize::from(self.cx.index),
            finished: self.cx.finished_during_shutdown,
            forced,
            failure,
        };
        // If the controller is gone there is no one left to tell.
        let _ = self.cx.sink.tx.send_deadline(Envelope::Exited(exit), until);
    }

    /// The loop proper; returns once shutdown is complete.
    fn serve(&mut self) {
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            let woke = Instant::now();
            self.cx.now = woke;
            self.cx.counters.loop_iterations += 1;

            let mut inbox_empty = false;
            for _ in 0..BATCH {
                match self.inbox.try_recv() {
                    Ok(control) => {
                        self.handle(control);
                        self.deliver_local();
                    }
                    Err(TryRecvError::Empty) => {
                        inbox_empty = true;
                        break;
                    }
                    Err(TryRecvError::Disconnected) => {
                        // The controller is gone without a shutdown: stop now.
                        let _ = self.cx.shared.shutdown.set(woke);
                        inbox_empty = true;
                        break;
                    }
                }
            }

            self.settle();

            for _ in 0..BATCH {
                match self.bus_inbox.try_recv() {
                    Ok(envelope) => {
                        self.contain(|worker| worker.handle_bus(envelope));
                        self.deliver_local();
                    }
                    Err(_) => {
                        break;
                    }
                }
            }
            let bus_empty = self.bus_inbox.is_empty();
            self.cx.bus.retry();
            self.settle();

            if shutdown_deadline.is_none()
                && let Some(&deadline) = self.cx.shared.shutdown.get()
            {
                shutdown_deadline = Some(deadline);
                self.cx.shutting_down = true;
                self.cx.sink.be_patient_until(deadline + SHUTDOWN_GRACE);
                self.groups.shutdown(&mut self.cx);
                // Phases may have ended here before this worker counted as
                // shutting down (and so told nobody): the others look again.
                for peer in self.cx.bus.peers.iter() {
                    peer.shared.notifier.notify();
                }
            }
            if shutdown_deadline.is_some() {
                self.next_shutdown_phase();
            }

            // What the handlers arm for now fires next turn, after the inbox
            // and I/O have had theirs: a timer re-armed for the current
            // instant cannot hold the worker here.
            let horizon = self.cx.timers.horizon();
            while let Some((deadline, due)) = self.cx.timers.pop_due(self.cx.now, horizon) {
                match due {
                    Due::Tick { group } => self.groups.tick(&mut self.cx, group),
                    Due::Task {
                        group,
                        slot,
                        generation,
                    } => self
                        .groups
                        .timer(&mut self.cx, group, slot, generation, deadline),
                    Due::Reply { owner, id } => {
                        let waiting =
                            self.groups
                                .reply(&mut self.cx, owner, id, Err(RpcError::Timeout));
                        if waiting {
                            self.cx.counters.rpc_timeouts += 1;
                        }
                    }
                }
            }
            self.settle();

            self.settle();

            self.serve_io();
            self.cx.sink.flush(&mut self.cx.counters);

            if self.cx.net.next_deadline().is_some() {
                // Closes that give up, accepts tried again after a back-off.
                self.cx.net.expire(Instant::now(), &mut self.cx.counters);
                self.settle();
            }
            // Done once every task has ended and what they sent on closed
            // sockets has gone (or the deadline has come).
            if let Some(deadline) = shutdown_deadline
                && ((self.groups.live() == 0 && !self.cx.net.lingering())
                    || Instant::now() >= deadline)
            {
                self.account_busy(woke);
                return;
            }
            self.cx.counters.timers = self.cx.timers.len() as u64;

            if !inbox_empty
                || !bus_empty
                || !self.cx.net.udp.unread.is_empty()
                || !self.cx.net.tcp.unserved.is_empty()
                || !self.cx.net.tun.unread.is_empty()
            {
                self.account_busy(woke);
                continue;
            }
            // The earliest of: a timer, a close that gives up or an accept
            // to retry, the shutdown deadline, bus updates to send again.
            let retry = self.cx.bus.has_retry().then(|| Instant::now() + RETRY_HELD);
            let deadline = [
                self.cx.timers.next_deadline(),
                self.cx.net.next_deadline(),
                shutdown_deadline,
                retry,
            ]
            .into_iter()
            .flatten()
            .min();
            // Events held for a full event queue: the controller wakes this
            // worker when it takes one (no polling for room).
            let holding = self.cx.sink.has_pending();
            if holding {
                self.cx.shared.events_held.store(true, Ordering::SeqCst);
            }
            if self.spin > Duration::ZERO && self.spin_for_work(deadline) {
                self.account_busy(woke);
                continue;
            }
            self.cx.shared.notifier.prepare_to_sleep();
            let work_arrived = !self.inbox.is_empty()
                || !self.bus_inbox.is_empty()
                || (shutdown_deadline.is_none() && self.cx.shared.shutdown.get().is_some())
                || (shutdown_deadline.is_some() && self.shutdown_phase_over())
                || (holding && self.cx.sink.has_room());
            self.account_busy(woke);
            if !work_arrived && let Err(error) = self.poller.wait(deadline, &mut self.ready) {
                // The poller failed (out of memory, a closed descriptor): do
                // not spin on it; retry shortly.
                let _ = error;
                std::thread::sleep(RETRY_HELD);
            }
            self.cx.shared.notifier.awake();
        }
    }

    /// Whether the shutdown phase under way has ended everywhere, so the
    /// next may begin: checked after announcing sleep, as the inboxes are,
    /// since the worker whose last task of a phase ends wakes only sleepers.
    fn shutdown_phase_over(&self) -> bool {
        self.cx.shutdown_phase + 1 < SHUTDOWN_PHASES && self.cx.phases_over(self.cx.shutdown_phase)
    }

    /// Moves shutdown on to the next phase (asking its tasks to shut down)
    /// once every task of the phases so far has ended on every worker.
    fn next_shutdown_phase(&mut self) {
        while self.shutdown_phase_over() {
            // What the tasks of the phase that ended sent on their way out
            // was queued before they were counted out: deliver it before the
            // next phase's tasks are asked to end.
            for _ in 0..self.bus_inbox.len() {
                let Ok(envelope) = self.bus_inbox.try_recv() else {
                    break;
                };
                self.contain(|worker| worker.handle_bus(envelope));
                self.settle();
            }
            self.cx.shutdown_phase += 1;
            self.groups.shutdown(&mut self.cx);
        }
    }

    /// Serves the sources the last wait reported ready, and those left
    /// readable last turn.
    fn serve_io(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        for readiness in ready.drain(..) {
            match Source::from_token(readiness.token) {
                Some(Source::Udp(index)) => {
                    if readiness.writable {
                        self.cx.net.udp.writable(index);
                    }
                    if readiness.readable || readiness.closed {
                        self.read_udp(index);
                    }
                }
                Some(Source::Tun(index)) => {
                    if readiness.writable {
                        self.cx.net.tun.writable(index);
                    }
                    if readiness.readable || readiness.closed {
                        self.read_tun(index);
                    }
                }
                Some(source) => {
                    // A hang-up or error reads as readable: the read reports it.
                    let readable = readiness.readable || readiness.closed;
                    self.serve_tcp(source, readable, readiness.writable);
                }
                None => {}
            }
        }
        self.ready = ready;
        let unread = std::mem::take(&mut self.cx.net.udp.unread);
        for index in unread {
            self.read_udp(index);
        }
        let unread = std::mem::take(&mut self.cx.net.tun.unread);
        for index in unread {
            self.read_tun(index);
        }
        let unserved = std::mem::take(&mut self.cx.net.tcp.unserved);
        for source in unserved {
            self.serve_tcp(source, true, false);
        }
        self.settle();
    }

    /// Reads a TUN/TAP device for its turn, delivering each packet; one that
    /// still has packets is read again next turn.
    fn read_tun(&mut self, index: usize) {
        let more = self.receive(|net, packets, counters| net.tun.receive(index, packets, counters));
        if more {
            self.cx.net.tun.unread.push(index);
        }
        self.settle();
    }

    /// Runs `receive`, which reads network events into a batch, and
    /// delivers the batch to the tasks; returns what `receive` returned.
    fn receive<R>(
        &mut self,
        receive: impl FnOnce(&mut Net, &mut Vec<(RawId, NetInput)>, &mut Counters) -> R,
    ) -> R {
        let mut batch = std::mem::take(&mut self.cx.net.inbound);
        let result = receive(&mut self.cx.net, &mut batch, &mut self.cx.counters);
        self.cx.net.delivering_batch = true;
        for (owner, input) in batch.drain(..) {
            // A socket handed over by a task while this batch is delivered:
            // the rest of the batch goes to its new owner.
            let owner = self.cx.net.owner_now(owner, &input);
            self.groups.net(&mut self.cx, owner, input);
            // A new owner adopts the socket before the rest is delivered.
            self.place();
        }
        self.cx.net.handed_over.clear();
        self.cx.net.delivering_batch = false;
        self.cx.net.inbound = batch;
        result
    }

    /// Serves a TCP listener or connection, delivering what it produced;
    /// one that still has work is served again next turn.
    fn serve_tcp(&mut self, source: Source, readable: bool, writable: bool) {
        let more = self
            .cx
            .net
            .tcp_ready(source, readable, writable, &mut self.cx.counters);
        if more {
            self.cx.net.tcp.unserved.push(source);
        }
        self.settle();
    }

    /// Reads socket `index` until it would block, or for a fair share of
    /// batches (then it is read again next turn), delivering each batch
    /// before reading the next and flushing what the tasks sent in reply.
    fn read_udp(&mut self, index: usize) {
        for _ in 0..READS_PER_TURN {
            let result =
                self.receive(|net, packets, counters| net.udp.receive(index, packets, counters));
            match result {
                Ok(true) => self.settle(),
                Ok(false) => {
                    self.settle();
                    return;
                }
                Err((owner, error)) => {
                    self.cx
                        .net
                        .local
                        .push_back((owner, NetInput::UdpError(error)));
                    self.settle();
                    return;
                }
            }
        }
        self.cx.net.udp.unread.push(index);
    }

    /// Delivers the events the worker produced for its tasks and hands queued
    /// datagrams to the kernel, until neither has anything left.
    fn settle(&mut self) {
        loop {
            self.deliver_local();
            if self.cx.net.has_dirty() {
                self.cx.net.flush(&mut self.cx.counters);
            }
            if self.cx.net.local.is_empty() && self.cx.bus.local.is_empty() {
                return;
            }
        }
    }

    /// Delivers what the last input produced for this worker's tasks (bus
    /// deliveries, events the worker made), without flushing sends: what a
    /// batch of inputs holds in memory is then what one input produces, not
    /// a whole batch's (a thousand publishes per input, each coming back as
    /// an overflow, over a batch of 1,024 inputs). Sends still leave in
    /// batches, at `settle`.
    fn deliver_local(&mut self) {
        while !self.cx.net.local.is_empty()
            || !self.cx.bus.local.is_empty()
            || !self.cx.spawns.is_empty()
            || !self.cx.adoptions.is_empty()
        {
            self.place();
            while let Some((owner, input)) = self.cx.net.local.pop_front() {
                self.groups.net(&mut self.cx, owner, input);
                self.place();
            }
            while let Some(delivery) = self.cx.bus.local.pop_front() {
                self.contain(|worker| worker.deliver(delivery));
                self.place();
            }
        }
        // A burst's queue memory goes back once it has passed.
        if self.cx.bus.local.capacity() > LOCAL_KEPT {
            self.cx.bus.local.shrink_to(LOCAL_KEPT);
        }
    }

    /// Starts the tasks that tasks spawned on this worker, then gives the
    /// sockets handed over to their new owners: before anything else is
    /// delivered, so that a new owner is ready for the socket's events.
    fn place(&mut self) {
        while let Some((task, slot, generation)) = self.cx.spawns.pop_front() {
            self.groups.spawn(&mut self.cx, task, slot, generation);
        }
        while let Some((owner, adoption)) = self.cx.adoptions.pop_front() {
            self.groups.adopt(&mut self.cx, owner, adoption);
        }
    }

    /// Runs `f`, which delivers bus traffic: the fan-out clones events and
    /// hashes channels with the application's code, which may panic outside
    /// any task's handler. Such a panic drops what was being delivered and
    /// is counted; the worker carries on.
    fn contain(&mut self, f: impl FnOnce(&mut Self)) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
            self.cx.counters.panics += 1;
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        }
    }

    /// Delivers what the bus produced for this worker's tasks.
    fn deliver(&mut self, delivery: Delivery<W>) {
        let cx = &mut self.cx;
        match delivery {
            Delivery::ToTask(owner, input) => {
                // Overflow and failure reports go back to a sender: they are
                // not deliveries of events.
                if matches!(input, BusInput::Event { .. }) {
                    cx.counters.bus_delivered += 1;
                }
                self.groups.bus(cx, owner, input);
            }
            Delivery::ToAll(event) => self.groups.broadcast(cx, &event),
            Delivery::Erased {
                group,
                slot,
                generation,
                payload,
                from,
            } => self.deliver_erased(group, slot, generation, payload, from),
            Delivery::Reply { owner, id, result } => {
                // An answer for a task that has ended, or that came after
                // its request timed out: counted, not delivered.
                if !self.groups.reply(cx, owner, id, result) {
                    cx.counters.bus_undelivered += 1;
                }
            }
        }
    }

    /// Delivers a direct message or request to one task; `from`, the sender
    /// of a direct message, is told if the task is gone.
    fn deliver_erased(
        &mut self,
        group: u16,
        slot: u32,
        generation: u32,
        payload: Box<dyn std::any::Any + Send>,
        from: Option<crate::bus::Sender>,
    ) {
        self.cx.delivering_from = from;
        self.groups
            .deliver_erased(&mut self.cx, group, slot, generation, payload);
        self.cx.delivering_from = None;
    }

    /// Handles what another worker (or an answering task) sent this one.
    fn handle_bus(&mut self, envelope: BusEnvelope<W>) {
        let cx = &mut self.cx;
        match envelope {
            BusEnvelope::Publish { channel, event } => {
                for subscriber in cx.bus.subscribers(&channel) {
                    cx.counters.bus_delivered += 1;
                    let input = BusInput::Event {
                        channel: Some(channel.clone()),
                        event: event.clone(),
                    };
                    self.groups.bus(cx, subscriber, input);
                }
            }
            BusEnvelope::Broadcast { event } => self.groups.broadcast(cx, &event),
            BusEnvelope::Interest {
                channel,
                worker,
                interested,
                seq,
            } => cx.bus.heard_interest(channel, worker, interested, seq),
            BusEnvelope::Heard { channel, seq } => cx.bus.heard(channel, seq),
            BusEnvelope::Deliver {
                group,
                slot,
                generation,
                payload,
                from,
            } => self.deliver_erased(group, slot, generation, payload, from),
            BusEnvelope::Reply { owner, id, result } => {
                // An answer for a task that has ended, or that came after
                // its request timed out: counted, not delivered.
                if !self.groups.reply(cx, owner, id, result) {
                    cx.counters.bus_undelivered += 1;
                }
            }
            BusEnvelope::SendFailed { owner, error } => {
                self.groups.bus(cx, owner, BusInput::SendFailed { error });
            }
            BusEnvelope::Spawn {
                task,
                slot,
                generation,
            } => self.groups.spawn(cx, task, slot, generation),
        }
    }

    /// Spins up to `self.spin` (or until `deadline`) for a control message,
    /// returning whether one came. Checks the inbox only every few dozen
    /// spin hints, to leave its cache line to the senders.
    fn spin_for_work(&self, deadline: Option<Instant>) -> bool {
        let mut until = Instant::now() + self.spin;
        if let Some(deadline) = deadline {
            until = until.min(deadline);
        }
        while self.inbox.is_empty() {
            if Instant::now() >= until || self.cx.shared.shutdown.get().is_some() {
                return false;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        true
    }

    fn account_busy(&mut self, woke: Instant) {
        (
            self.cx.counters.bus_channels,
            self.cx.counters.bus_remote_interest,
        ) = self.cx.bus.sizes();
        let busy = Instant::now().saturating_duration_since(woke);
        self.cx.counters.busy_nanos += u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        self.cx.shared.counters.publish(&self.cx.counters);
    }

    fn handle(&mut self, control: Control<W>) {
        match control {
            Control::Spawn {
                task,
                slot,
                generation,
            } => self.groups.spawn(&mut self.cx, task, slot, generation),
            Control::Deliver { id, input } => self.groups.deliver(&mut self.cx, id, input),
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
