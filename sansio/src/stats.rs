//! Live worker statistics: counters the worker keeps locally and publishes
//! once per loop iteration, and the snapshots `Runtime::stats` builds from
//! them, with rates and utilization measured over a recent window.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Declares the worker's counters once, each with its documentation: the
/// plain [`Counters`] the worker updates, [`SharedCounters`], their published
/// atomic copy, and the public [`WorkerStats`] that shows them next to the
/// figures that are not counters (`worker`, `tasks`, rates, the inbox).
/// `busy_nanos` is the one counter not shown as is: it becomes
/// `utilization`.
macro_rules! counters {
    (
        snapshot { $($(#[$sdoc:meta])* $sname:ident: $stype:ty,)* }
        shown { $($(#[doc = $doc:literal])* $name:ident,)* }
    ) => {
        /// Counters a worker updates as it works (plain integers: only the
        /// worker writes them), published to [`SharedCounters`] at the end of
        /// each loop iteration.
        #[derive(Debug, Default, Clone, Copy)]
        pub(crate) struct Counters {
            /// Time spent working, not sleeping in the backend.
            pub(crate) busy_nanos: u64,
            $($(#[doc = $doc])* pub(crate) $name: u64,)*
        }

        /// Each counter's field name and documentation (for the metrics'
        /// descriptions), in declaration order.
        #[cfg(feature = "metrics")]
        pub(crate) const COUNTER_DOCS: &[(&str, &str)] = &[$((stringify!($name), concat!($($doc),*)),)*];

        /// The published copy of a worker's [`Counters`], read by the
        /// controller.
        #[derive(Debug, Default)]
        pub(crate) struct SharedCounters {
            busy_nanos: AtomicU64,
            $($name: AtomicU64,)*
            /// Written by the controller: sends and spawns refused with
            /// `Full`.
            pub(crate) sends_rejected: AtomicU64,
        }

        impl SharedCounters {
            pub(crate) fn publish(&self, counters: &Counters) {
                self.busy_nanos.store(counters.busy_nanos, Ordering::Relaxed);
                $(self.$name.store(counters.$name, Ordering::Relaxed);)*
            }

            pub(crate) fn read(&self) -> Counters {
                Counters {
                    busy_nanos: self.busy_nanos.load(Ordering::Relaxed),
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }

        /// A snapshot of one worker. The worker publishes its counters at the end of
        /// each loop iteration, so while it works they may lag by one batch.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub struct WorkerStats {
            $($(#[$sdoc])* pub $sname: $stype,)*
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl WorkerStats {
            /// Every counter of the snapshot (the `u64` fields from
            /// `loop_iterations` on) by its field name, in declaration order:
            /// for exporting them all without naming each.
            #[must_use]
            pub fn counters(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }

            /// The snapshot of `counters` (read once), with the
            /// figures that are not counters.
            pub(crate) fn new(figures: Figures, rates: Rates, counters: &Counters) -> Self {
                let Figures {
                    worker,
                    tasks,
                    inbox_depth,
                    inbox_capacity,
                    sends_rejected,
                } = figures;
                WorkerStats {
                    worker,
                    tasks,
                    utilization: rates.utilization,
                    inputs_per_sec: rates.inputs_per_sec,
                    outputs_per_sec: rates.outputs_per_sec,
                    inbox_depth,
                    inbox_capacity,
                    sends_rejected,
                    $($name: counters.$name,)*
                }
            }
        }
    };
}

/// What a worker snapshot shows besides its counters and rates.
#[derive(Debug)]
pub(crate) struct Figures {
    pub(crate) worker: usize,
    pub(crate) tasks: Vec<(&'static str, usize)>,
    pub(crate) inbox_depth: usize,
    pub(crate) inbox_capacity: usize,
    pub(crate) sends_rejected: u64,
}

counters! {
    snapshot {
        /// The worker's index.
        worker: usize,
        /// Live tasks per task type (including spawns still queued), in the
        /// order of the worker enum's variants.
        tasks: Vec<(&'static str, usize)>,
        /// Time spent working (not sleeping in the backend) divided by wall
        /// time, over the last window of at least 100 ms, from 0 to 1.
        utilization: f64,
        /// Inputs per second over the last window.
        inputs_per_sec: f64,
        /// Outputs per second over the last window.
        outputs_per_sec: f64,
        /// Messages waiting in the worker's inbox.
        inbox_depth: usize,
        /// The inbox's capacity.
        inbox_capacity: usize,
        /// Sends and spawns refused because the inbox was full.
        sends_rejected: u64,
    }
    shown {
        /// Times the worker woke and worked through its queues.
        loop_iterations,
        /// Times another thread woke this worker from its sleep (to deliver
        /// a message, a bus delivery, shutdown). Senders wake a worker only
        /// once it has announced it is about to sleep, so a burst of
        /// messages costs one wakeup, not one per message.
        wakeups,
        /// Inputs delivered to tasks, in total.
        inputs,
        /// Outputs tasks emitted, in total.
        outputs,
        /// Outputs dropped because the controller's event queue was full.
        events_dropped,
        /// Messages that reached the worker after their task had ended.
        undelivered,
        /// Panics caught: in a handler, or in carrying out what it queued (each
        /// ended its task), or in the application's code run by the bus's
        /// fan-out (an event's `Clone`; the event was dropped).
        panics,
        /// Entries in the worker's timer heap (ticks and task timers; some may be
        /// stale re-arms that will be skipped).
        timers_pending,
        /// Open UDP sockets.
        udp_sockets,
        /// Datagrams received and delivered to tasks.
        udp_received,
        /// Of `udp_received`, datagrams that arrived coalesced with others from
        /// the same sender and were split again (see `UdpOptions::gro`).
        udp_received_coalesced,
        /// Datagrams sent.
        udp_sent,
        /// Of `udp_sent`, datagrams sent in GSO runs (several datagrams to one
        /// peer in one message the kernel segments; see `UdpOptions::gso`).
        udp_sent_segmented,
        /// Sockets that stopped using GSO because the kernel or the device
        /// refused a GSO run; they send one datagram per message since.
        udp_gso_disabled,
        /// Datagrams dropped because they were larger than the socket's
        /// `max_datagram` (or malformed).
        udp_truncated,
        /// Sends refused (by the kernel, a full send queue, a closed socket);
        /// each came back to its task as an `UdpError`.
        udp_send_errors,
        /// Errors reading a socket, each reported to its task.
        udp_recv_errors,
        /// Datagrams the kernel dropped because a UDP socket's receive buffer
        /// was full: the count comes with each datagram received
        /// (`SO_RXQ_OVFL`), and is read again 100 ms after a socket received
        /// (`SO_MEMINFO`), for the drops after the last datagram to arrive. The
        /// first number to look at when a server loses packets.
        udp_kernel_drops,
        /// io_uring only: times a UDP socket's multishot receive found every
        /// receive buffer of its worker in use (`ENOBUFS`) and waited for one
        /// to be taken; its datagrams waited in the socket's receive buffer
        /// meanwhile (where, if it fills, `udp_kernel_drops` counts the loss).
        udp_recv_buffers_exhausted,
        /// Network events for tasks that had already ended, dropped.
        net_dropped,
        /// Open TCP listeners and connections.
        tcp_sockets,
        /// TCP connections accepted.
        tcp_accepted,
        /// Bytes read from TCP connections.
        tcp_bytes_read,
        /// Bytes written to TCP connections.
        tcp_bytes_written,
        /// TCP sends refused and handed back (over the send limit, or on a
        /// closing or closed connection).
        tcp_send_rejected,
        /// TCP errors: resets, failed connects and accepts.
        tcp_errors,
        /// TCP closes that reset the connection: `tcp_abort`, or a graceful
        /// close that did not finish within `TcpOptions::close_timeout`.
        tcp_closes_aborted,
        /// io_uring only: times a connection's multishot receive found every
        /// receive buffer of its worker in use (`ENOBUFS`) and waited for one
        /// to be taken; its bytes waited in the socket meanwhile (and TCP's
        /// flow control held the peer back if it filled).
        tcp_recv_buffers_exhausted,
        /// Accepts that failed for want of descriptors or memory and were
        /// tried again after a back-off (10 ms, doubling up to 100 ms).
        tcp_accept_retries,
        /// Connections over a listener's `max_connections`, accepted and reset
        /// at once.
        tcp_over_limit,
        /// Open TUN/TAP devices.
        tun_devices,
        /// Packets read from TUN/TAP devices.
        tun_received,
        /// Packets written to TUN/TAP devices.
        tun_sent,
        /// Device packets larger than `max_packet`, dropped.
        tun_truncated,
        /// Device writes refused, each handed back to its task.
        tun_send_errors,
        /// Errors reading a device, each reported to its task.
        tun_recv_errors,
        /// Events published and broadcast by the worker's tasks.
        bus_published,
        /// Bus events delivered to the worker's tasks.
        bus_delivered,
        /// Published events a worker missed because its bus inbox was full,
        /// each reported to the publisher (`BusInput::Overflow`).
        bus_overflow,
        /// Direct messages and requests not delivered (target gone, inbox full),
        /// each reported to the sender; and answers that found their asker
        /// gone or past its timeout.
        bus_undelivered,
        /// Requests of the worker's tasks that timed out.
        rpc_timeouts,
        /// Bus channels with subscribers on this worker.
        bus_channels,
        /// (Channel, other worker) pairs this worker knows have subscribers:
        /// where its publishes go. A subscription made elsewhere counts here
        /// once this worker has heard of it.
        bus_remote_interest,
    }
}

/// The shortest window rates and utilization are measured over.
pub(crate) const WINDOW: Duration = Duration::from_millis(100);

/// Turns successive counter readings of one worker into rates over windows
/// of at least [`WINDOW`].
#[derive(Debug)]
pub(crate) struct Sampler {
    at: Instant,
    counters: Counters,
    rates: Rates,
}

/// Rates over the last completed window.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Rates {
    pub(crate) utilization: f64,
    pub(crate) inputs_per_sec: f64,
    pub(crate) outputs_per_sec: f64,
}

impl Sampler {
    pub(crate) fn new(at: Instant) -> Self {
        Sampler {
            at,
            counters: Counters::default(),
            rates: Rates::default(),
        }
    }

    /// Folds in a reading taken at `now`, closing the window if it is long
    /// enough, and returns the rates of the last closed window.
    pub(crate) fn update(&mut self, now: Instant, counters: Counters) -> Rates {
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed >= WINDOW {
            let seconds = elapsed.as_secs_f64();
            let delta = |now: u64, then: u64| now.saturating_sub(then) as f64;
            self.rates = Rates {
                utilization: (delta(counters.busy_nanos, self.counters.busy_nanos)
                    / elapsed.as_nanos() as f64)
                    .clamp(0.0, 1.0),
                inputs_per_sec: delta(counters.inputs, self.counters.inputs) / seconds,
                outputs_per_sec: delta(counters.outputs, self.counters.outputs) / seconds,
            };
            self.at = now;
            self.counters = counters;
        }
        self.rates
    }
}

impl WorkerStats {
    /// Live tasks of every type.
    #[must_use]
    pub fn total_tasks(&self) -> usize {
        self.tasks.iter().map(|(_, count)| count).sum()
    }
}

/// A snapshot of every worker, from `Runtime::stats`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RuntimeStats {
    /// One entry per worker.
    pub workers: Vec<WorkerStats>,
    /// Events waiting for the controller.
    pub events_depth: usize,
    /// The event queue's capacity.
    pub events_capacity: usize,
}

impl fmt::Display for RuntimeStats {
    /// One line per worker, for logs and examples.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for worker in &self.workers {
            let tasks: Vec<String> = worker
                .tasks
                .iter()
                .map(|(name, count)| format!("{name}={count}"))
                .collect();
            writeln!(
                f,
                "worker {}: util {:5.1}% | in {:>10.0}/s out {:>10.0}/s | loops {} wakes {} | inbox {}/{} | tasks [{}] | timers {} | rejected {} dropped {} undelivered {} panics {} | udp sockets {} rx {} (gro {}) tx {} (gso {}) truncated {} errors {} | tcp sockets {} in {} B out {} B errors {} | bus channels {} published {} delivered {} overflow {} undelivered {} rpc timeouts {}",
                worker.worker,
                worker.utilization * 100.0,
                worker.inputs_per_sec,
                worker.outputs_per_sec,
                worker.loop_iterations,
                worker.wakeups,
                worker.inbox_depth,
                worker.inbox_capacity,
                tasks.join(" "),
                worker.timers_pending,
                worker.sends_rejected,
                worker.events_dropped,
                worker.undelivered,
                worker.panics,
                worker.udp_sockets,
                worker.udp_received,
                worker.udp_received_coalesced,
                worker.udp_sent,
                worker.udp_sent_segmented,
                worker.udp_truncated,
                worker.udp_send_errors + worker.udp_recv_errors,
                worker.tcp_sockets,
                worker.tcp_bytes_read,
                worker.tcp_bytes_written,
                worker.tcp_errors,
                worker.bus_channels,
                worker.bus_published,
                worker.bus_delivered,
                worker.bus_overflow,
                worker.bus_undelivered,
                worker.rpc_timeouts,
            )?;
        }
        write!(
            f,
            "events queued: {}/{}",
            self.events_depth, self.events_capacity
        )
    }
}
