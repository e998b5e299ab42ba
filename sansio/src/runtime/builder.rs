//! [`Builder`]: how a [`Runtime`] is configured, and how its workers are
//! made and their threads started.

use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::{Runtime, WorkerHandle};
use crate::backend::{Backend, Notifier, Poller, PollerOptions};
use crate::error::{Error, Result};
use crate::id::lock;
use crate::stats::Sampler;
use crate::worker::{Envelope, Peer, Worker, WorkerLoop, WorkerSetup, WorkerShared};

/// How long a worker that has run out of work watches its inbox before it
/// sleeps, after a turn that took a message from the controller, unless
/// `Builder::spin_before_sleep` says otherwise: 2 µs.
///
/// Without it, a worker under a steady stream of messages empties its inbox
/// a moment before the next message lands, sleeps, and is woken again: two
/// system calls per message, and a throughput that flips between two
/// regimes on tiny timing differences (measured in `CHANGELOG.md`). Two
/// microseconds cover a sender's next message; an idle worker still sleeps
/// at once after them.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(2);

/// Configures and starts a [`Runtime`].
pub struct Builder<W> {
    workers: Option<usize>,
    thread_name: String,
    backend: Backend,
    pin_cores: bool,
    queue_capacity: usize,
    event_capacity: Option<usize>,
    spin: Duration,
    poller: PollerOptions,
    faults: crate::faults::Setup,
    /// How often to publish the statistics as metrics, if at all.
    #[cfg(feature = "metrics")]
    metrics: Option<Duration>,
    _worker: PhantomData<fn() -> W>,
}

impl<W> fmt::Debug for Builder<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("Builder");
        f.field("workers", &self.workers)
            .field("thread_name", &self.thread_name)
            .field("backend", &self.backend)
            .field("pin_cores", &self.pin_cores)
            .field("queue_capacity", &self.queue_capacity)
            .field("event_capacity", &self.event_capacity)
            .field("spin_before_sleep", &self.spin)
            .field("io_uring_sqpoll", &self.poller.sqpoll)
            .field("faults", &self.faults);
        #[cfg(feature = "metrics")]
        f.field("publish_metrics", &self.metrics);
        f.finish()
    }
}

/// The default capacity of each worker's inbox.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

impl<W: Worker> Builder<W> {
    pub(super) fn new() -> Self {
        Builder {
            workers: None,
            thread_name: "sansio-w".to_owned(),
            backend: Backend::default(),
            pin_cores: false,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            event_capacity: None,
            spin: DEFAULT_SPIN,
            poller: PollerOptions::default(),
            faults: Default::default(),
            #[cfg(feature = "metrics")]
            metrics: None,
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
    /// zero turns spinning off). It spins only after a turn that took a
    /// message from the controller (a spawn or an input): the spin watches
    /// the inbox alone, and a turn of socket I/O goes straight to the
    /// poller's wait, which sees a datagram at once.
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

    /// io_uring only: each worker's ring gets a kernel thread that polls
    /// its submission queue (`IORING_SETUP_SQPOLL`), so that the sends and
    /// registrations a worker queues start without a system call, and keeps
    /// polling for `idle` after the last of them before it sleeps (rounded
    /// up to whole milliseconds, the kernel's unit; at least 1 ms).
    ///
    /// A trade of a core for latency, like [`Backend::BusyPoll`]: while
    /// traffic flows, each worker's polling thread keeps a core busy
    /// besides the worker's own, which on a machine with as many workers as
    /// cores takes CPU from the workers themselves (measured in the README,
    /// "io_uring against mio"). Once traffic stops, the polling thread
    /// sleeps after `idle` and an idle runtime again uses no CPU. The kernel
    /// runs completion work in the polling thread then, so the ring is made
    /// without `DEFER_TASKRUN`. Off by default.
    ///
    /// [`Builder::build`] fails with [`Error::Config`] when the backend is
    /// not [`Backend::IoUring`], and with an [`Error::Io`] naming `SQPOLL`
    /// when the kernel refuses it (before Linux 5.11 it needs
    /// `CAP_SYS_ADMIN`).
    #[cfg(feature = "io-uring")]
    #[cfg_attr(docsrs, doc(cfg(feature = "io-uring")))]
    #[must_use]
    pub fn io_uring_sqpoll(mut self, idle: Duration) -> Self {
        self.poller.sqpoll = Some(idle);
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

    /// Publishes the runtime's statistics through the [`metrics`] facade
    /// every `every` (and once more when shutdown has finished), from a
    /// thread of its own (`sansio-metrics`): to whatever recorder the
    /// application installed (a Prometheus exporter, StatsD, …), described
    /// at each publication. Off by default.
    ///
    /// The names follow Prometheus' conventions. Each counter of
    /// [`WorkerStats::counters`](crate::stats::WorkerStats::counters) is a
    /// counter `sansio_worker_<name>_total` (the unit last:
    /// `sansio_worker_tcp_read_bytes_total`, `…_tcp_written_bytes_total`),
    /// but for the levels, which are gauges `sansio_worker_<name>`
    /// (`timers_pending`, `udp_sockets`, `tcp_sockets`, `tun_devices`,
    /// `bus_channels`, `bus_remote_interest`); then the gauges
    /// `sansio_worker_utilization_ratio`, `sansio_worker_inbox_depth`,
    /// `sansio_worker_inbox_capacity`, `sansio_worker_tasks` (label `task`),
    /// the counter `sansio_worker_sends_rejected_total`, and per runtime the
    /// gauges `sansio_events_depth` and `sansio_events_capacity`. Every one
    /// is labelled `runtime` (the [`thread_name`](Self::thread_name) prefix:
    /// give two runtimes of one worker type different prefixes) and `kind`
    /// (the worker type's name), a worker's also `worker` (its index).
    ///
    /// [`Builder::build`] fails with [`Error::Config`] if `every` is zero.
    ///
    /// [`metrics`]: https://docs.rs/metrics
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[must_use]
    pub fn publish_metrics(mut self, every: Duration) -> Self {
        self.metrics = Some(every);
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
        #[cfg(feature = "metrics")]
        if self.metrics == Some(Duration::ZERO) {
            return Err(Error::Config(
                "publish_metrics needs an interval above zero".to_owned(),
            ));
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
        if self.poller.sqpoll.is_some() && self.backend != Backend::IoUring {
            return Err(Error::Config(format!(
                "io_uring_sqpoll is an option of Backend::IoUring, not of Backend::{:?}",
                self.backend
            )));
        }
        self.backend.check()?;
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
            #[cfg(feature = "metrics")]
            metrics: None,
        };
        let prepare: fn(WorkerConfig<W>) -> Result<Prepared<W>> = match self.backend {
            #[cfg(feature = "mio")]
            Backend::Mio => prepare::<W, crate::backend::mio::MioPoller>,
            #[cfg(feature = "mio")]
            Backend::BusyPoll => prepare::<W, crate::backend::busy_poll::BusyPoller>,
            #[cfg(feature = "polling")]
            Backend::Polling => prepare::<W, crate::backend::polling::PollingPoller>,
            #[cfg(feature = "io-uring")]
            Backend::IoUring => prepare::<W, crate::backend::uring::UringPoller>,
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
                poller: self.poller,
                faults: self.faults.clone(),
                backend: self.backend,
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
        #[cfg(feature = "metrics")]
        if let Some(every) = self.metrics {
            runtime.publish_metrics(every, self.thread_name.clone())?;
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
    poller: PollerOptions,
    faults: crate::faults::Setup,
    /// For the log line saying the worker started.
    backend: Backend,
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
        poller,
        faults,
        backend,
    } = config;
    let io = move |context: &str| {
        let context = format!("worker {index}: {context}");
        move |source| Error::Io { context, source }
    };
    let (poller, waker) = P::new(&poller).map_err(io("creating the poller"))?;
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
                #[cfg(feature = "tracing")]
                let _span = tracing::info_span!(target: "sansio", "sansio_worker", worker = index, kind = W::NAME)
                    .entered();
                crate::log::event!(
                    info,
                    "worker {index} started ({backend} backend{})",
                    if core.is_some() { ", pinned" } else { "" }
                );
                WorkerLoop::new(setup, peers).run();
                crate::log::event!(info, "worker {index} stopped");
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
