//! The controller's side: [`Builder`], the [`Runtime`] handle that spawns
//! tasks, sends them messages and receives their events, and the graceful
//! shutdown that joins every worker thread.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TryRecvError, TrySendError,
};

use crate::bus::{Incoming, Request, Responder, Route};
use crate::error::RpcError;
use crate::error::{Error, Result, SendError, SpawnError};
use crate::id::TaskId;
use crate::id::lock;
use crate::stats::{Figures, RuntimeStats, Sampler, WorkerStats};
use crate::task::{Answers, Handles};
use crate::worker::{
    Control, Envelope, Event, Member, SHUTDOWN_GRACE, Worker, WorkerExit, WorkerShared,
};

/// What a graceful shutdown achieved.
#[non_exhaustive]
pub struct ShutdownReport<W: Worker> {
    /// Tasks that finished on their own after shutdown began.
    pub finished: usize,
    /// Tasks still running at the deadline, and spawns still queued for a
    /// worker then (never started); they were dropped without finishing.
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

/// The deadline `Drop` gives a runtime that was not shut down explicitly:
/// 5 seconds.
pub const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(5);

mod builder;

pub use builder::{Builder, DEFAULT_QUEUE_CAPACITY, DEFAULT_SPIN};

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

/// A snapshot of every worker of `workers` (each its shared state and
/// inbox), with the rates of its sampler's window, and of the event queue.
fn runtime_stats<'a, W: Worker>(
    workers: impl Iterator<Item = (&'a WorkerShared, &'a Sender<Control<W>>)>,
    samplers: &mut [Sampler],
    events: &Receiver<Envelope<W>>,
    events_capacity: usize,
) -> RuntimeStats {
    let now = Instant::now();
    let workers = workers
        .zip(samplers.iter_mut())
        .enumerate()
        .map(|(index, ((shared, inbox), sampler))| worker_stats(index, shared, inbox, sampler, now))
        .collect();
    RuntimeStats {
        workers,
        events_depth: events.len(),
        events_capacity,
    }
}

/// A snapshot of worker `index`: its published counters, the rates of
/// `sampler`'s window, its live tasks and inbox.
fn worker_stats<W: Worker>(
    index: usize,
    shared: &WorkerShared,
    inbox: &Sender<Control<W>>,
    sampler: &mut Sampler,
    now: Instant,
) -> WorkerStats {
    let counters = shared.counters.read();
    let rates = sampler.update(now, counters);
    let figures = Figures {
        worker: index,
        tasks: W::TASK_TYPES
            .iter()
            .zip(shared.slots.iter())
            .map(|(name, slots)| (*name, slots.live()))
            .collect(),
        inbox_depth: inbox.len(),
        inbox_capacity: inbox.capacity().unwrap_or(0),
        sends_rejected: shared
            .counters
            .sends_rejected
            .load(std::sync::atomic::Ordering::Relaxed),
    };
    WorkerStats::new(figures, rates, &counters)
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
    /// The thread publishing the statistics as metrics, if asked for.
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Publisher>,
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
        // Waiting needs a deadline, and so a read of the clock: only when
        // the inbox is full.
        let result = match (handle.inbox.try_send(control), timeout) {
            (Err(TrySendError::Full(control)), Some(timeout)) => handle
                .inbox
                .send_timeout(control, timeout)
                .map_err(|error| match error {
                    SendTimeoutError::Timeout(control) => TrySendError::Full(control),
                    SendTimeoutError::Disconnected(control) => TrySendError::Disconnected(control),
                }),
            (result, _) => result,
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
        // The deadline (a read of the clock) only once there is nothing to
        // take: under load an event is usually waiting.
        let mut deadline = None;
        loop {
            let envelope = match self.events.try_recv() {
                Ok(envelope) => envelope,
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => {
                    match *deadline.get_or_insert_with(|| Instant::now().checked_add(timeout)) {
                        Some(deadline) => self.events.recv_deadline(deadline).ok()?,
                        None => self.events.recv().ok()?,
                    }
                }
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
        let workers = self
            .workers
            .iter()
            .map(|handle| (&*handle.shared, &handle.inbox));
        let mut samplers = lock(&self.samplers);
        runtime_stats(workers, &mut samplers, &self.events, self.events_capacity)
    }

    /// Starts publishing the statistics through the `metrics` facade every
    /// `every`, on a thread of its own with samplers of its own (so
    /// `stats()` keeps its windows), labelled `runtime` (the thread-name
    /// prefix).
    #[cfg(feature = "metrics")]
    pub(crate) fn publish_metrics(&mut self, every: Duration, runtime: String) -> Result<()> {
        let sources: Vec<(Arc<WorkerShared>, Sender<Control<W>>)> = self
            .workers
            .iter()
            .map(|handle| (Arc::clone(&handle.shared), handle.inbox.clone()))
            .collect();
        let events = self.events.clone();
        let events_capacity = self.events_capacity;
        let start = Instant::now();
        let mut samplers: Vec<Sampler> = sources.iter().map(|_| Sampler::new(start)).collect();
        let snapshot = move || {
            let workers = sources.iter().map(|(shared, inbox)| (&**shared, inbox));
            runtime_stats(workers, &mut samplers, &events, events_capacity)
        };
        let publisher = crate::metrics::Publisher::start(W::NAME, runtime, every, snapshot)
            .map_err(|source| Error::Io {
                context: "spawning the metrics thread".to_owned(),
                source,
            })?;
        self.metrics = Some(publisher);
        Ok(())
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
        crate::log::event!(
            info,
            "shutting down {} worker(s) of {}, deadline {deadline:?}",
            workers.len(),
            W::NAME
        );
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
        // The publisher's last publication has what the shutdown counted;
        // workers stop on the shutdown flag, so its senders of their
        // inboxes kept none of them.
        #[cfg(feature = "metrics")]
        if let Some(mut publisher) = self.metrics.take() {
            publisher.stop();
        }
        crate::log::event!(
            info,
            "shut down {}: {} task(s) finished, {} forced at the deadline, {} worker(s) stuck",
            W::NAME,
            report.finished,
            report.forced.len(),
            report.stuck_workers.len()
        );
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
