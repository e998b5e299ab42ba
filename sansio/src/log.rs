//! What the runtime says while it runs, through `tracing` (feature
//! `tracing`, on by default).
//!
//! Each worker thread runs inside a `sansio_worker` span (fields `worker`,
//! the index, and `kind`, the worker type's name). Events, by level:
//!
//! - `error`: a task panicked (with the panic message), a worker failed.
//! - `warn`: a listener's accept failed for want of descriptors or memory
//!   (the first failure of a run; the retries are `debug`), a UDP socket
//!   turned GSO off after the kernel refused a run.
//! - `info`: worker started and stopped, shutdown begun and done, a listener
//!   accepting again after failures.
//! - `debug`: task spawned and finished, GRO not available on a socket,
//!   accept retries, and — at most once a second per worker — what was
//!   dropped or refused since the last report (events over a full controller
//!   queue, bus overflow, truncated datagrams, kernel drops, …).
//!
//! Without the feature the macros below expand to nothing that runs: their
//! arguments are type-checked inside `if false`, never evaluated.

/// Emits a `tracing` event at `$level` (one of `error`, `warn`, `info`,
/// `debug`, `trace`), with the target `sansio`; nothing without the feature.
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::$level!(target: "sansio", $($arg)+);
        }
        #[cfg(not(feature = "tracing"))]
        {
            if false {
                let _ = ::std::format_args!($($arg)+);
            }
        }
    }};
}
pub(crate) use event;

#[cfg(feature = "tracing")]
pub(crate) use drops::DropReport;

/// The rate-limited report of drops (only with the feature: without it
/// there is nothing to report to).
#[cfg(feature = "tracing")]
mod drops {
    use std::time::{Duration, Instant};

    use crate::stats::Counters;

    /// How often a worker reports its drops, at most.
    const DROP_REPORT_EVERY: Duration = Duration::from_secs(1);

    /// Rate-limits the `debug` report of what a worker dropped: compares the
    /// drop counters with their values at the last report, once a second.
    #[derive(Debug)]
    pub(crate) struct DropReport {
        next: Instant,
        last: [u64; DROPS],
        /// The sum of `last`.
        last_total: u64,
    }

    /// How many counters [`drops`] reads.
    const DROPS: usize = 13;

    /// The counters that count something dropped, refused or lost, by name.
    fn drops(counters: &Counters) -> [(&'static str, u64); DROPS] {
        [
            ("events_dropped", counters.events_dropped),
            ("undelivered", counters.undelivered),
            ("net_dropped", counters.net_dropped),
            ("udp_truncated", counters.udp_truncated),
            ("udp_send_errors", counters.udp_send_errors),
            ("udp_kernel_drops", counters.udp_kernel_drops),
            ("tcp_send_rejected", counters.tcp_send_rejected),
            ("tcp_over_limit", counters.tcp_over_limit),
            ("tun_truncated", counters.tun_truncated),
            ("tun_send_errors", counters.tun_send_errors),
            ("bus_overflow", counters.bus_overflow),
            ("bus_undelivered", counters.bus_undelivered),
            ("rpc_timeouts", counters.rpc_timeouts),
        ]
    }

    /// The sum of the counters [`drops`] names (wrapping: only its changes
    /// matter).
    fn total(counters: &Counters) -> u64 {
        [
            counters.events_dropped,
            counters.undelivered,
            counters.net_dropped,
            counters.udp_truncated,
            counters.udp_send_errors,
            counters.udp_kernel_drops,
            counters.tcp_send_rejected,
            counters.tcp_over_limit,
            counters.tun_truncated,
            counters.tun_send_errors,
            counters.bus_overflow,
            counters.bus_undelivered,
            counters.rpc_timeouts,
        ]
        .iter()
        .fold(0u64, |sum, value| sum.wrapping_add(*value))
    }

    impl DropReport {
        pub(crate) fn new(now: Instant) -> Self {
            DropReport {
                next: now + DROP_REPORT_EVERY,
                last: [0; DROPS],
                last_total: 0,
            }
        }

        /// When the worker should wake to report, if something was dropped
        /// since the last report: a worker that falls asleep right after a drop
        /// still says so within a second (and an idle one sleeps on after).
        pub(crate) fn due(&self, counters: &Counters) -> Option<Instant> {
            // Counters only grow: their sum moved if and only if one of them
            // did. Summed field by field (no names): it runs before each sleep.
            (total(counters) != self.last_total).then_some(self.next)
        }

        /// Reports what grew since the last report, if a second has passed.
        #[inline]
        pub(crate) fn tick(&mut self, now: Instant, counters: &Counters) {
            if now >= self.next {
                self.report(now, counters);
            }
        }

        #[cold]
        fn report(&mut self, now: Instant, counters: &Counters) {
            self.next = now + DROP_REPORT_EVERY;
            let mut grown = String::new();
            for ((name, value), last) in drops(counters).into_iter().zip(self.last.iter_mut()) {
                if value > *last {
                    use std::fmt::Write as _;
                    let _ = write!(grown, " {name} +{}", value - *last);
                    *last = value;
                }
            }
            self.last_total = total(counters);
            if !grown.is_empty() {
                event!(debug, "dropped or refused in the last second:{grown}");
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::indexing_slicing)]
        use super::*;

        #[test]
        fn drops_are_reported_once_a_second_with_what_grew() {
            let start = Instant::now();
            let mut report = DropReport::new(start);
            let mut counters = Counters {
                events_dropped: 5,
                ..Counters::default()
            };
            assert_eq!(report.due(&counters), Some(start + DROP_REPORT_EVERY));
            report.tick(start, &counters);
            assert_eq!(report.last[0], 0, "not before a second has passed");
            report.tick(start + DROP_REPORT_EVERY, &counters);
            assert_eq!(report.last[0], 5);
            counters.bus_overflow = 2;
            report.tick(
                start + DROP_REPORT_EVERY + Duration::from_millis(10),
                &counters,
            );
            assert_eq!(report.last[10], 0, "held until the next second");
            assert_eq!(report.due(&counters), Some(start + DROP_REPORT_EVERY * 2));
            report.tick(start + DROP_REPORT_EVERY * 2, &counters);
            assert_eq!((report.last[0], report.last[10]), (5, 2));
            assert_eq!(report.due(&counters), None, "nothing new: no wake-up");
            let named: u64 = drops(&counters).iter().map(|(_, value)| value).sum();
            assert_eq!(total(&counters), named, "the sum covers the named counters");
        }
    }
}
