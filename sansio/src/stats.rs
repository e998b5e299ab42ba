//! Live worker statistics: counters the worker keeps locally and publishes
//! once per loop iteration, and the snapshots `Runtime::stats` builds from
//! them, with rates and utilization measured over a recent window.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Declares the worker's counters once: the plain [`Counters`] the worker
/// updates, and [`SharedCounters`], their published atomic copy.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Counters a worker updates as it works (plain integers: only the
        /// worker writes them), published to [`SharedCounters`] at the end of
        /// each loop iteration.
        #[derive(Debug, Default, Clone, Copy)]
        pub(crate) struct Counters {
            $($(#[$doc])* pub(crate) $name: u64,)*
        }

        /// The published copy of a worker's [`Counters`], read by the
        /// controller.
        #[derive(Debug, Default)]
        pub(crate) struct SharedCounters {
            $($name: AtomicU64,)*
            /// Written by the controller: sends and spawns refused with
            /// `Full`.
            pub(crate) sends_rejected: AtomicU64,
        }

        impl SharedCounters {
            pub(crate) fn publish(&self, counters: &Counters) {
                $(self.$name.store(counters.$name, Ordering::Relaxed);)*
            }

            pub(crate) fn read(&self) -> Counters {
                Counters {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    loop_iterations,
    inputs,
    outputs,
    busy_nanos,
    events_dropped,
    undelivered,
    panics,
    timers,
    /// Datagrams delivered to tasks.
    udp_received,
    /// Datagrams the kernel took.
    udp_sent,
    /// Of `udp_sent`, datagrams sent in GSO runs.
    udp_sent_segmented,
    /// Sockets that stopped using GSO after the kernel refused a run.
    udp_gso_disabled,
    /// Of `udp_received`, datagrams that arrived coalesced (GRO).
    udp_received_coalesced,
    /// Datagrams cut by the kernel (larger than `max_datagram`) or without
    /// a sender address, dropped.
    udp_truncated,
    /// Sends refused: by the kernel, by a full send queue, or on a closed
    /// socket.
    udp_send_errors,
    /// Errors reading a socket.
    udp_recv_errors,
    /// Datagrams the kernel dropped because a socket's receive buffer was
    /// full (`SO_RXQ_OVFL`, and `SO_MEMINFO` 100 ms after a receive).
    udp_kernel_drops,
    /// Open UDP sockets.
    udp_sockets,
    /// Network events for tasks that had ended, dropped.
    net_dropped,
    /// Open TCP listeners and connections.
    tcp_sockets,
    /// Connections accepted.
    tcp_accepted,
    /// Bytes read from connections.
    tcp_bytes_read,
    /// Bytes written to connections.
    tcp_bytes_written,
    /// Sends refused (over the send limit, or on a closing or closed
    /// connection), each handed back to its task.
    tcp_send_rejected,
    /// Connection errors: resets, failed connects, failed accepts.
    tcp_errors,
    /// Closes that could not finish sending within the close timeout (or
    /// were asked to abort) and reset the connection instead.
    tcp_closes_aborted,
    /// Accepts that failed for want of descriptors or memory (`EMFILE`,
    /// `ENFILE`, `ENOBUFS`, `ENOMEM`, or another error that may pass) and
    /// were tried again after a back-off.
    tcp_accept_retries,
    /// Connections over a listener's `max_connections`, reset at once.
    tcp_over_limit,
    /// Open TUN/TAP devices.
    tun_devices,
    /// Packets read from devices.
    tun_received,
    /// Packets written to devices.
    tun_sent,
    /// Packets larger than `max_packet`, dropped.
    tun_truncated,
    /// Writes refused, each handed back.
    tun_send_errors,
    /// Errors reading a device.
    tun_recv_errors,
    /// Events published (and broadcast) by this worker's tasks.
    bus_published,
    /// Bus events delivered to this worker's tasks.
    bus_delivered,
    /// Worker deliveries of published events missed because a worker's bus
    /// inbox was full; each reported to its publisher.
    bus_overflow,
    /// Direct messages and requests that could not be delivered (target gone,
    /// inbox full); each reported to its sender.
    bus_undelivered,
    /// Requests of this worker's tasks that timed out.
    rpc_timeouts,
    /// Channels with subscribers on this worker.
    bus_channels,
    /// (Channel, other worker) pairs this worker knows have subscribers.
    bus_remote_interest,
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

/// A snapshot of one worker. The worker publishes its counters at the end of
/// each loop iteration, so while it works they may lag by one batch.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The worker's index.
    pub worker: usize,
    /// Live tasks per task type (including spawns still queued), in the
    /// order of the worker enum's variants.
    pub tasks: Vec<(&'static str, usize)>,
    /// Time spent working (not sleeping in the backend) divided by wall time,
    /// over the last window of at least 100 ms, from 0 to 1.
    pub utilization: f64,
    /// Times the worker woke and worked through its queues.
    pub loop_iterations: u64,
    /// Inputs delivered to tasks, in total.
    pub inputs: u64,
    /// Outputs tasks emitted, in total.
    pub outputs: u64,
    /// Inputs per second over the last window.
    pub inputs_per_sec: f64,
    /// Outputs per second over the last window.
    pub outputs_per_sec: f64,
    /// Messages waiting in the worker's inbox.
    pub inbox_depth: usize,
    /// The inbox's capacity.
    pub inbox_capacity: usize,
    /// Sends and spawns refused because the inbox was full.
    pub sends_rejected: u64,
    /// Outputs dropped because the controller's event queue was full.
    pub events_dropped: u64,
    /// Messages that reached the worker after their task had ended.
    pub undelivered: u64,
    /// Panics caught: in a handler, or in carrying out what it queued (each
    /// ended its task), or in the application's code run by the bus's
    /// fan-out (an event's `Clone`; the event was dropped).
    pub panics: u64,
    /// Entries in the worker's timer heap (ticks and task timers; some may be
    /// stale re-arms that will be skipped).
    pub timers_pending: u64,
    /// Open UDP sockets.
    pub udp_sockets: u64,
    /// Datagrams received and delivered to tasks.
    pub udp_received: u64,
    /// Of `udp_received`, datagrams that arrived coalesced with others from
    /// the same sender and were split again (see `UdpOptions::gro`).
    pub udp_received_coalesced: u64,
    /// Datagrams sent.
    pub udp_sent: u64,
    /// Of `udp_sent`, datagrams sent in GSO runs (several datagrams to one
    /// peer in one message the kernel segments; see `UdpOptions::gso`).
    pub udp_sent_segmented: u64,
    /// Sockets that stopped using GSO because the kernel or the device
    /// refused a GSO run; they send one datagram per message since.
    pub udp_gso_disabled: u64,
    /// Datagrams dropped because they were larger than the socket's
    /// `max_datagram` (or malformed).
    pub udp_truncated: u64,
    /// Sends refused (by the kernel, a full send queue, a closed socket);
    /// each came back to its task as an `UdpError`.
    pub udp_send_errors: u64,
    /// Errors reading a socket, each reported to its task.
    pub udp_recv_errors: u64,
    /// Datagrams the kernel dropped because a UDP socket's receive buffer
    /// was full: the count comes with each datagram received
    /// (`SO_RXQ_OVFL`), and is read again 100 ms after a socket received
    /// (`SO_MEMINFO`), for the drops after the last datagram to arrive. The
    /// first number to look at when a server loses packets.
    pub udp_kernel_drops: u64,
    /// Network events for tasks that had already ended, dropped.
    pub net_dropped: u64,
    /// Open TCP listeners and connections.
    pub tcp_sockets: u64,
    /// TCP connections accepted.
    pub tcp_accepted: u64,
    /// Bytes read from TCP connections.
    pub tcp_bytes_read: u64,
    /// Bytes written to TCP connections.
    pub tcp_bytes_written: u64,
    /// TCP sends refused and handed back (over the send limit, or on a
    /// closing or closed connection).
    pub tcp_send_rejected: u64,
    /// TCP errors: resets, failed connects and accepts.
    pub tcp_errors: u64,
    /// TCP closes that reset the connection: `tcp_abort`, or a graceful
    /// close that did not finish within `TcpOptions::close_timeout`.
    pub tcp_closes_aborted: u64,
    /// Accepts that failed for want of descriptors or memory and were
    /// tried again after a back-off (10 ms, doubling up to 100 ms).
    pub tcp_accept_retries: u64,
    /// Connections over a listener's `max_connections`, accepted and reset
    /// at once.
    pub tcp_over_limit: u64,
    /// Open TUN/TAP devices.
    pub tun_devices: u64,
    /// Packets read from TUN/TAP devices.
    pub tun_received: u64,
    /// Packets written to TUN/TAP devices.
    pub tun_sent: u64,
    /// Device packets larger than `max_packet`, dropped.
    pub tun_truncated: u64,
    /// Device writes refused, each handed back to its task.
    pub tun_send_errors: u64,
    /// Errors reading a device, each reported to its task.
    pub tun_recv_errors: u64,
    /// Events published and broadcast by the worker's tasks.
    pub bus_published: u64,
    /// Bus events delivered to the worker's tasks.
    pub bus_delivered: u64,
    /// Published events a worker missed because its bus inbox was full,
    /// each reported to the publisher (`BusInput::Overflow`).
    pub bus_overflow: u64,
    /// Direct messages and requests not delivered (target gone, inbox full),
    /// each reported to the sender; and answers that found their asker
    /// gone or past its timeout.
    pub bus_undelivered: u64,
    /// Requests of the worker's tasks that timed out.
    pub rpc_timeouts: u64,
    /// Bus channels with subscribers on this worker.
    pub bus_channels: u64,
    /// (Channel, other worker) pairs this worker knows have subscribers:
    /// where its publishes go. A subscription made elsewhere counts here
    /// once this worker has heard of it.
    pub bus_remote_interest: u64,
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
                "worker {}: util {:5.1}% | in {:>10.0}/s out {:>10.0}/s | loops {} | inbox {}/{} | tasks [{}] | timers {} | rejected {} dropped {} undelivered {} panics {} | udp sockets {} rx {} (gro {}) tx {} (gso {}) truncated {} errors {} | tcp sockets {} in {} B out {} B errors {} | bus channels {} published {} delivered {} overflow {} undelivered {} rpc timeouts {}",
                worker.worker,
                worker.utilization * 100.0,
                worker.inputs_per_sec,
                worker.outputs_per_sec,
                worker.loop_iterations,
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
