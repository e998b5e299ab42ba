//! The controller's side: [`Builder`], the [`Runtime`] handle that spawns
//! tasks, sends them messages and receives their events, and the graceful
//! shutdown that joins every worker thread.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError};

use crate::backend::{Backend, Notifier, Poller};
use crate::bus::{Incoming, Request, Responder, Route};
use crate::error::RpcError;
use crate::error::{Error, Result, SendError, SpawnError};
use crate::id::TaskId;
use crate::id::lock;
use crate::stats::{Figures, RuntimeStats, Sampler, WorkerStats};
use crate::task::{Answers, Handles};
use crate::worker::{
    Control, Envelope, Event, Member, Peer, SHUTDOWN_GRACE, Worker, WorkerExit, WorkerLoop,
    WorkerSetup, WorkerShared,
};

/// What a graceful shutdown achieved.
#[non_exhaustive]
pub struct ShutdownReport<W: Worker> {
    /// Tasks that finished on their own after shutdown began.
    pub finished: usize,
    /// Tasks still running at the deadline; they were dropped without
    /// finishing.
    pub forced: Vec<W::Id>,
    /// Every event not taken with `next_event` before the shutdown, and every
    /// event produced during it (the tasks' final outputs among them), in
    /// order.
    pub events: Vec<Event<W>>,
    /// Workers that did not exit by the deadline plus one second (a handler
    /// that never returns); their threads are left detached.
    pub stuck_workers: Vec<usize>,
}

impl<W: Worker> fmt::Debug for ShutdownReport<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownReport")
            .field("finished", &self.finished)
            .field("forced", &self.forced)
            .field("events", &self.events.len())
            .field("stuck_workers", &self.stuck_workers)
            .finish()
    }
}

/// How long a worker that has run out of work watches its inbox before it
/// sleeps, unless `Builder::spin_before_sleep` says otherwise: 2 µs.
///
/// Without it, a worker under a steady stream of messages empties its inbox
/// a moment before the next message lands, sleeps, and is woken again: two
/// system calls per message, and a throughput that flips between two
/// regimes on tiny timing differences (measured in `CHANGELOG.md`). Two
/// microseconds cover a sender's next message; an idle worker still sleeps
/// at once after them.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(2);

/// The deadline `Drop` gives a runtime that was not shut down explicitly:
/// 5 seconds.
pub const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(5);

/// Configures and starts a [`Runtime`].
pub struct Builder<W> {
    workers: Option<usize>,
    thread_name: String,
    backend: Backend,
    pin_cores: bool,
    queue_capacity: usize,
    event_capacity: Option<usize>,
    spin: Duration,
    faults: crate::faults::Setup,
    _worker: PhantomData<fn() -> W>,
}

impl<W> fmt::Debug for Builder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("thread_name", &self.thread_name)
            .field("backend", &self.backend)
            .field("pin_cores", &self.pin_cores)
            .field("queue_capacity", &self.queue_capacity)
            .field("event_capacity", &self.event_capacity)
            .field("spin_before_sleep", &self.spin)
            .field("faults", &self.faults)
            .finish()
    }
}

/// The default capacity of each worker's inbox.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

impl<W: Worker> Builder<W> {
    fn new() -> Self {
        Builder {
            workers: None,
            thread_name: "sansio-w".to_owned(),
            backend: Backend::default(),
            pin_cores: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            event_capacity: None,
            spin: DEFAULT_SPIN,
            faults: Default::default(),
            _worker: PhantomData,
        }
    }

    /// How many worker threads (default: the available cores).
    #[must_use]
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// The prefix of the worker threads' names (default `sansio-w`): worker
    /// `i` is called `<prefix><i>`, as `ps -T`, `top -H` and debuggers show it.
    /// Linux keeps the first 15 bytes.
    #[must_use]
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Which poller the workers sleep in (default: [`Backend::Mio`]).
    #[must_use]
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Pins worker `i` to core `i` (modulo the cores this process may use).
    #[must_use]
    pub fn pin_cores(mut self, pin: bool) -> Self {
        self.pin_cores = pin;
        self
    }

    /// The capacity of each worker's inbox (default
    /// [`DEFAULT_QUEUE_CAPACITY`]). Sends and spawns to a full inbox fail with
    /// `Full` and hand the message back.
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// The capacity of the controller's event queue, shared by all workers
    /// (default: `queue_capacity × workers`). Outputs that find it full are
    /// dropped and counted in the stats (`events_dropped`); lifecycle events
    /// (finished, panicked, undelivered) wait on their worker for room.
    #[must_use]
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = Some(capacity);
        self
    }

    /// How long a worker that has run out of work spins, watching its inbox,
    /// before it sleeps in the backend (default: [`DEFAULT_SPIN`], 2 µs;
    /// zero turns spinning off).
    ///
    /// Spinning buys latency with CPU: a message that arrives during the spin
    /// is taken in about a microsecond instead of after a thread wakeup
    /// (tens of microseconds on a virtual machine), but the spin burns its
    /// core, and under heavy load it can lower throughput, because the
    /// worker takes messages one by one instead of in batches. A worker still
    /// sleeps once the spin has passed, so an idle runtime still costs
    /// nothing. The busy-poll backend ignores it: it never sleeps.
    #[must_use]
    pub fn spin_before_sleep(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Injects faults under the workers' socket calls, as `plan` says: for
    /// tests of what the runtime (and the tasks on it) do on a bad day. See
    /// [`faults`](crate::faults).
    #[cfg(feature = "fault-injection")]
    #[cfg_attr(docsrs, doc(cfg(feature = "fault-injection")))]
    #[must_use]
    pub fn faults(mut self, plan: crate::faults::FaultPlan) -> Self {
        self.faults = Some(plan);
        self
    }

    /// Starts the worker threads.
    pub fn build(self) -> Result<Runtime<W>> {
        let workers = match self.workers {
            Some(workers) => workers,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        if workers == 0 || workers > usize::from(u16::MAX) {
            return Err(Error::Config(format!(
                "workers must be between 1 and {}, not {workers}",
                u16::MAX
            )));
        }
        if self.queue_capacity == 0 {
            return Err(Error::Config(
                "queue_capacity must be at least 1".to_owned(),
            ));
        }
        if self.event_capacity == Some(0) {
            return Err(Error::Config(
                "event_capacity must be at least 1".to_owned(),
            ));
        }
        crate::faults::check(&self.faults).map_err(Error::Config)?;
        if !self.backend.is_available() {
            return Err(Error::BackendUnavailable {
                backend: self.backend,
            });
        }
        let cores = if self.pin_cores {
            match core_affinity::get_core_ids() {
                Some(cores) if !cores.is_empty() => cores,
                _ => {
                    return Err(Error::Config(
                        "pin_cores: the cores this process may use cannot be read".to_owned(),
                    ));
                }
            }
        } else {
            Vec::new()
        };
        let events_capacity = self
            .event_capacity
            .unwrap_or(self.queue_capacity.saturating_mul(workers));
        let (events_tx, events_rx) = crossbeam_channel::bounded(events_capacity);
        let mut runtime = Runtime {
            workers: Vec::with_capacity(workers),
            events: events_rx,
            events_capacity,
            samplers: Mutex::new(Vec::with_capacity(workers)),
            exits: Mutex::new(Vec::new()),
        };
        let prepare: fn(WorkerConfig<W>) -> Result<Prepared<W>> = match self.backend {
            #[cfg(feature = "mio")]
            Backend::Mio => prepare::<W, crate::backend::mio::MioPoller>,
            #[cfg(feature = "mio")]
            Backend::BusyPoll => prepare::<W, crate::backend::busy_poll::BusyPoller>,
            #[cfg(feature = "polling")]
            Backend::Polling => prepare::<W, crate::backend::polling::PollingPoller>,
            #[allow(unreachable_patterns)]
            backend => return Err(Error::BackendUnavailable { backend }),
        };
        let mut prepared = Vec::with_capacity(workers);
        for index in 0..workers {
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            prepared.push(prepare(WorkerConfig {
                name: format!("{}{index}", self.thread_name),
                index,
                capacity: self.queue_capacity,
                events: events_tx.clone(),
                core,
                // Busy-poll spins in its poller, on the sockets too: a spin
                // on the inbox alone before its (zero-timeout) wait would
                // only delay the sockets.
                spin: if self.backend == Backend::BusyPoll {
                    Duration::ZERO
                } else {
                    self.spin
                },
                faults: self.faults.clone(),
            })?);
        }
        // Every worker reaches every other through its bus inbox.
        let peers: Arc<[Peer<W>]> = prepared.iter().map(|worker| worker.peer.clone()).collect();
        for worker in prepared {
            let mut handle = worker.handle;
            // On failure `runtime` is dropped, shutting down the workers
            // already started.
            handle.thread = Some((worker.launch)(Arc::clone(&peers))?);
            runtime.workers.push(handle);
            lock(&runtime.samplers).push(Sampler::new(Instant::now()));
        }
        Ok(runtime)
    }
}

/// What one worker thread is started with.
struct WorkerConfig<W: Worker> {
    name: String,
    index: usize,
    capacity: usize,
    events: Sender<Envelope<W>>,
    core: Option<core_affinity::CoreId>,
    spin: Duration,
    faults: crate::faults::Setup,
}

/// A worker made but not started: its handle, how the others reach it,
/// and how to start its thread once every worker's bus inbox exists.
struct Prepared<W: Worker> {
    handle: WorkerHandle<W>,
    peer: Peer<W>,
    launch: Launch<W>,
}

/// Starts a prepared worker's thread, given every worker's bus inbox.
type Launch<W> = Box<dyn FnOnce(Arc<[Peer<W>]>) -> Result<JoinHandle<()>>>;

/// Makes a worker on the poller `P`: its poller, queues and shared state.
fn prepare<W: Worker, P: Poller>(config: WorkerConfig<W>) -> Result<Prepared<W>> {
    let WorkerConfig {
        name,
        index,
        capacity,
        events,
        core,
        spin,
        faults,
    } = config;
    let io = move |context: &str| {
        let context = format!("worker {index}: {context}");
        move |source| Error::Io { context, source }
    };
    let (poller, waker) = P::new().map_err(io("creating the poller"))?;
    let registry = poller
        .registry()
        .map_err(io("creating the poller's registry"))?;
    let shared = Arc::new(WorkerShared::new(Notifier::new(waker), W::TASK_TYPES.len()));
    let (inbox_tx, inbox_rx) = crossbeam_channel::bounded(capacity);
    let (bus_tx, bus_rx) = crossbeam_channel::bounded(capacity);
    let setup = WorkerSetup {
        index: u16::try_from(index).expect("the builder caps workers at u16::MAX"),
        poller,
        registry,
        inbox: inbox_rx,
        bus_inbox: bus_rx,
        events,
        shared: Arc::clone(&shared),
        capacity,
        spin,
    };
    let launch = move |peers: Arc<[Peer<W>]>| {
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                if let Some(core) = core {
                    // Best effort: an unpinned worker still works.
                    core_affinity::set_for_current(core);
                }
                crate::faults::install(&faults, index);
                WorkerLoop::new(setup, peers).run();
            })
            .map_err(io("spawning the thread"))
    };
    Ok(Prepared {
        peer: Peer {
            bus: bus_tx,
            shared: Arc::clone(&shared),
        },
        handle: WorkerHandle {
            inbox: inbox_tx,
            shared,
            thread: None,
        },
        launch: Box::new(launch),
    })
}

struct WorkerHandle<W: Worker> {
    inbox: Sender<Control<W>>,
    shared: Arc<WorkerShared>,
    thread: Option<JoinHandle<()>>,
}

impl<W: Worker> WorkerHandle<W> {
    /// Counts a send or spawn refused because the inbox was full.
    fn count_rejected(&self) {
        self.shared
            .counters
            .sends_rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The controller's handle on a set of worker threads running tasks of the
/// worker kind `W`.
///
/// All methods take `&self`: a runtime can be shared between threads. Every
/// queue is bounded; a send that cannot be queued fails and hands the message
/// back. Dropping the runtime shuts it down gracefully with
/// [`DEFAULT_SHUTDOWN`], discarding the report.
pub struct Runtime<W: Worker> {
    workers: Vec<WorkerHandle<W>>,
    events: Receiver<Envelope<W>>,
    events_capacity: usize,
    samplers: Mutex<Vec<Sampler>>,
    /// Workers that exited before shutdown (a failure).
    exits: Mutex<Vec<WorkerExit<W>>>,
}

impl<W: Worker> fmt::Debug for Runtime<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("worker", &W::NAME)
            .field("workers", &self.workers.len())
            .field("events_queued", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl<W: Worker> Runtime<W> {
    /// A builder with the defaults: one worker per core, the mio backend, no
    /// pinning, inboxes of [`DEFAULT_QUEUE_CAPACITY`].
    pub fn builder() -> Builder<W> {
        Builder::new()
    }

    /// How many workers the runtime has.
    #[must_use]
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Spawns `task` on the least-loaded worker: the lowest measured
    /// utilization (in steps of 5 %), then the fewest tasks.
    pub fn spawn<T: Member<W>>(&self, task: T) -> Result<TaskId<T>, SpawnError<T>> {
        let worker = self.least_loaded();
        self.spawn_on(worker, task)
    }

    /// Spawns `task` on worker `worker`.
    pub fn spawn_on<T: Member<W>>(
        &self,
        worker: usize,
        task: T,
    ) -> Result<TaskId<T>, SpawnError<T>> {
        let Some(handle) = self.workers.get(worker) else {
            return Err(SpawnError::NoSuchWorker(task));
        };
        let slots = &handle.shared.slots[usize::from(T::GROUP)];
        let Some((slot, generation)) = slots.allocate() else {
            return Err(SpawnError::TooManyTasks(task));
        };
        let control = Control::Spawn {
            group: T::GROUP,
            task: task.into_worker(),
            slot,
            generation,
        };
        let taken_back = |control: Control<W>| match control {
            Control::Spawn { task, .. } => T::from_worker(task),
            Control::Deliver { .. } => None,
        };
        match handle.inbox.try_send(control) {
            Ok(()) => {
                handle.shared.notifier.notify();
                // `worker` indexes `self.workers`, whose length fits a u16.
                Ok(TaskId::new(worker as u16, slot, generation))
            }
            Err(error) => {
                slots.release(slot);
                let (full, control) = match error {
                    TrySendError::Full(control) => (true, control),
                    TrySendError::Disconnected(control) => (false, control),
                };
                let task =
                    taken_back(control).expect("the control message was built from `task` above");
                if full {
                    handle.count_rejected();
                    Err(SpawnError::Full(task))
                } else {
                    Err(SpawnError::Stopped(task))
                }
            }
        }
    }

    /// Sends `message` to the task `id`, without waiting.
    ///
    /// Fails with [`SendError::TaskGone`] when the task has ended (checked
    /// here without a lock; if it ends while the message is queued, an
    /// [`Event::Undelivered`] brings the message back), and with
    /// [`SendError::Full`] when the worker's inbox is full. Sending a type the
    /// task has no `#[on_input]` handler for does not compile.
    pub fn send<T, M>(&self, id: TaskId<T>, message: M) -> Result<(), SendError<M>>
    where
        T: Member<W> + Handles<M>,
    {
        self.send_with(id, message, None)
    }

    /// Like [`Runtime::send`], but waits up to `timeout` for room in a full
    /// inbox.
    pub fn send_timeout<T, M>(
        &self,
        id: TaskId<T>,
        message: M,
        timeout: Duration,
    ) -> Result<(), SendError<M>>
    where
        T: Member<W> + Handles<M>,
    {
        self.send_with(id, message, Some(timeout))
    }

    fn send_with<T, M>(
        &self,
        id: TaskId<T>,
        message: M,
        timeout: Option<Duration>,
    ) -> Result<(), SendError<M>>
    where
        T: Member<W> + Handles<M>,
    {
        self.send_input(id, T::wrap(message), timeout)
            .map_err(|error| {
                let back =
                    |input| T::unwrap(input).expect("the input was built from `message` above");
                match error {
                    SendError::Full(input) => SendError::Full(back(input)),
                    SendError::TaskGone(input) => SendError::TaskGone(back(input)),
                    SendError::Stopped(input) => SendError::Stopped(back(input)),
                }
            })
    }

    /// Sends the task `id` its input, the way `send` and `call` do.
    fn send_input<T: Member<W>>(
        &self,
        id: TaskId<T>,
        input: T::Input,
        timeout: Option<Duration>,
    ) -> Result<(), SendError<T::Input>> {
        let Some(handle) = self.workers.get(id.worker()) else {
            return Err(SendError::TaskGone(input));
        };
        if !handle.shared.slots[usize::from(T::GROUP)].is_live(id.slot(), id.generation()) {
            return Err(SendError::TaskGone(input));
        }
        let control = Control::Deliver {
            group: T::GROUP,
            slot: id.slot(),
            generation: id.generation(),
            input: T::input(input),
        };
        let result =
            match timeout {
                None => handle.inbox.try_send(control),
                Some(timeout) => handle
                    .inbox
                    .send_timeout(control, timeout)
                    .map_err(|error| match error {
                        SendTimeoutError::Timeout(control) => TrySendError::Full(control),
                        SendTimeoutError::Disconnected(control) => {
                            TrySendError::Disconnected(control)
                        }
                    }),
            };
        let (full, control) = match result {
            Ok(()) => {
                handle.shared.notifier.notify();
                return Ok(());
            }
            Err(TrySendError::Full(control)) => (true, control),
            Err(TrySendError::Disconnected(control)) => (false, control),
        };
        let input = match control {
            Control::Deliver { input, .. } => T::from_input(input),
            Control::Spawn { .. } => None,
        }
        .expect("the control message was built from `input` above");
        if full {
            handle.count_rejected();
            Err(SendError::Full(input))
        } else {
            Err(SendError::Stopped(input))
        }
    }

    /// Asks the task `id` with `request` and waits up to `timeout` for the
    /// answer of its `#[on_request]` handler. The calling thread sleeps and
    /// is woken as soon as the answer arrives.
    ///
    /// Fails with `RpcError::TaskGone` when the task has ended, `Full` when
    /// its worker's inbox is full, `Timeout`, or `Dropped` when the task let
    /// the request go unanswered.
    pub fn call<T, R>(
        &self,
        id: TaskId<T>,
        request: R,
        timeout: Duration,
    ) -> Result<R::Response, RpcError>
    where
        T: Member<W> + Answers<R>,
        R: Request,
    {
        let deadline = Instant::now() + timeout;
        let (answer_tx, answer_rx) = crossbeam_channel::bounded(1);
        let input = T::wrap_request(Incoming {
            request,
            responder: Responder::new(Route::controller::<R>(answer_tx)),
        });
        match self.send_input(id, input, Some(timeout)) {
            Ok(()) => {}
            Err(SendError::Full(_)) => return Err(RpcError::Full),
            Err(_) => return Err(RpcError::TaskGone),
        }
        match answer_rx.recv_deadline(deadline) {
            Ok(answer) => answer,
            Err(RecvTimeoutError::Timeout) => Err(RpcError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(RpcError::Dropped),
        }
    }

    /// The next event, waiting up to `timeout` for one. The calling thread
    /// sleeps until an event arrives and is woken at once when it does.
    pub fn next_event(&self, timeout: Duration) -> Option<Event<W>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let envelope = match deadline {
                Some(deadline) => self.events.recv_deadline(deadline).ok()?,
                None => self.events.recv().ok()?,
            };
            self.wake_holders();
            if let Some(event) = self.receive(envelope) {
                return Some(event);
            }
        }
    }

    /// The event an envelope from a worker stands for: the event it
    /// carries, or, for a worker that exited before shutdown with a
    /// failure, [`Event::WorkerFailed`]. The exit is kept for `shutdown`.
    fn receive(&self, envelope: Envelope<W>) -> Option<Event<W>> {
        match envelope {
            Envelope::Event(event) => Some(event),
            Envelope::Exited(exit) => {
                let failed = exit.failure.clone().map(|message| Event::WorkerFailed {
                    worker: exit.worker,
                    message,
                });
                lock(&self.exits).push(exit);
                failed
            }
        }
    }

    /// Wakes the workers that hold events for want of room: there is some
    /// now.
    fn wake_holders(&self) {
        for handle in &self.workers {
            let held = &handle.shared.events_held;
            if held.load(std::sync::atomic::Ordering::SeqCst)
                && held.swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                handle.shared.notifier.notify();
            }
        }
    }

    /// The next event, if one is waiting.
    pub fn try_next_event(&self) -> Option<Event<W>> {
        loop {
            let envelope = self.events.try_recv().ok()?;
            self.wake_holders();
            if let Some(event) = self.receive(envelope) {
                return Some(event);
            }
        }
    }

    /// A snapshot of every worker's statistics. Rates and utilization are
    /// measured over the window since the previous snapshot (at least
    /// 100 ms; a call sooner repeats the last window's figures).
    pub fn stats(&self) -> RuntimeStats {
        let now = Instant::now();
        let mut samplers = lock(&self.samplers);
        let workers = self
            .workers
            .iter()
            .zip(samplers.iter_mut())
            .enumerate()
            .map(|(index, (handle, sampler))| {
                let counters = handle.shared.counters.read();
                let rates = sampler.update(now, counters);
                let figures = Figures {
                    worker: index,
                    tasks: W::TASK_TYPES
                        .iter()
                        .zip(handle.shared.slots.iter())
                        .map(|(name, slots)| (*name, slots.live()))
                        .collect(),
                    inbox_depth: handle.inbox.len(),
                    inbox_capacity: handle.inbox.capacity().unwrap_or(0),
                    sends_rejected: handle
                        .shared
                        .counters
                        .sends_rejected
                        .load(std::sync::atomic::Ordering::Relaxed),
                };
                WorkerStats::new(figures, rates, &counters)
            })
            .collect();
        RuntimeStats {
            workers,
            events_depth: self.events.len(),
            events_capacity: self.events_capacity,
        }
    }

    /// The worker to spawn on: lowest utilization in 5 % steps, then fewest
    /// tasks, then lowest index.
    fn least_loaded(&self) -> usize {
        let now = Instant::now();
        let mut samplers = lock(&self.samplers);
        let mut best: Option<((u32, usize), usize)> = None;
        for (index, (handle, sampler)) in self.workers.iter().zip(samplers.iter_mut()).enumerate() {
            let utilization = sampler
                .update(now, handle.shared.counters.read())
                .utilization;
            let tasks: usize = handle.shared.slots.iter().map(|slots| slots.live()).sum();
            let load = ((utilization * 20.0).round() as u32, tasks);
            if best.is_none_or(|(lowest, _)| load < lowest) {
                best = Some((load, index));
            }
        }
        best.map_or(0, |(_, index)| index)
    }

    /// Shuts down gracefully: every task's `#[on_shutdown]` runs, the workers
    /// keep serving until every task has finished or `deadline` has passed,
    /// then stop; their threads are joined. Events are collected while this
    /// happens, so nothing the tasks emit is lost.
    ///
    /// Fails only if a worker thread died outside the task handlers (a bug in
    /// sansio), with that worker's panic message.
    pub fn shutdown(mut self, deadline: Duration) -> Result<ShutdownReport<W>> {
        self.stop(deadline)
    }

    fn stop(&mut self, deadline: Duration) -> Result<ShutdownReport<W>> {
        let deadline_at = Instant::now() + deadline;
        let workers = std::mem::take(&mut self.workers);
        for worker in &workers {
            // Set at most once, here: `stop` runs once (it empties `workers`).
            let _ = worker.shared.shutdown.set(deadline_at);
            worker.shared.notifier.notify();
        }
        let mut exits = std::mem::take(&mut *lock(&self.exits));
        let mut events = Vec::new();
        let give_up = deadline_at + SHUTDOWN_GRACE * 2;
        while exits.len() < workers.len() {
            match self.events.recv_deadline(give_up) {
                Ok(Envelope::Event(event)) => events.push(event),
                Ok(Envelope::Exited(exit)) => exits.push(exit),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // Anything still queued (events sent just before an exit message).
        while let Ok(envelope) = self.events.try_recv() {
            if let Envelope::Event(event) = envelope {
                events.push(event);
            }
        }
        let mut report = ShutdownReport {
            finished: 0,
            forced: Vec::new(),
            events,
            stuck_workers: Vec::new(),
        };
        let mut failure = None;
        for (index, mut worker) in workers.into_iter().enumerate() {
            match exits.iter_mut().find(|exit| exit.worker == index) {
                Some(exit) => {
                    report.finished += exit.finished;
                    report.forced.append(&mut exit.forced);
                    if let Some(message) = exit.failure.take() {
                        failure.get_or_insert(Error::WorkerFailed {
                            worker: index,
                            message,
                        });
                    }
                    if let Some(thread) = worker.thread.take()
                        && thread.join().is_err()
                    {
                        failure.get_or_insert(Error::WorkerFailed {
                            worker: index,
                            message: "the thread panicked while exiting".to_owned(),
                        });
                    }
                }
                None => report.stuck_workers.push(index),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }
}

impl<W: Worker> Drop for Runtime<W> {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            let _ = self.stop(DEFAULT_SHUTDOWN);
        }
    }
}
