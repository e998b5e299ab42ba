//! The runtime's statistics through the `metrics` facade (feature
//! `metrics`, [`Builder::publish_metrics`](crate::Builder::publish_metrics)).
//!
//! A thread of its own reads a [`RuntimeStats`] snapshot every interval and
//! hands each figure to the installed recorder: a worker's counters as
//! counters (`absolute`: the worker's own total, so nothing is counted twice
//! however often it is published), its other figures as gauges. Names follow
//! Prometheus' conventions: `sansio_` prefix, snake case, base units, `_total`
//! on counters, `_ratio` on a ratio; every series is labelled `runtime` (the
//! thread-name prefix) and `kind` (the worker type), a worker's `worker` too.

use std::io;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::stats::{COUNTER_DOCS, RuntimeStats};

/// The counters that are levels, not running totals: published as gauges.
const GAUGES: [&str; 6] = [
    "timers_pending",
    "udp_sockets",
    "tcp_sockets",
    "tun_devices",
    "bus_channels",
    "bus_remote_interest",
];

/// The metric name of the counter field `field`, and whether it is a gauge.
fn metric_name(field: &str) -> (String, bool) {
    let base = match field {
        // Units last, as Prometheus names them.
        "tcp_bytes_read" => "tcp_read_bytes",
        "tcp_bytes_written" => "tcp_written_bytes",
        other => other,
    };
    if GAUGES.contains(&field) {
        (format!("sansio_worker_{base}"), true)
    } else {
        (format!("sansio_worker_{base}_total"), false)
    }
}

/// The thread publishing a runtime's statistics.
#[derive(Debug)]
pub(crate) struct Publisher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Publishes `snapshot()` now and every `every` until stopped; `kind`
    /// labels every metric (the worker type's name).
    pub(crate) fn start(
        kind: &'static str,
        runtime: String,
        every: Duration,
        mut snapshot: impl FnMut() -> RuntimeStats + Send + 'static,
    ) -> io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sansio-metrics".to_owned())
            .spawn(move || {
                loop {
                    // Described each time: a recorder installed after the
                    // runtime was built gets the descriptions too.
                    describe();
                    publish(&runtime, kind, &snapshot());
                    match stopped.recv_timeout(every) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        // Stopped (or the runtime is gone): a last one.
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                            publish(&runtime, kind, &snapshot());
                            return;
                        }
                    }
                }
            })?;
        Ok(Publisher {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Publishes a last time and ends the thread.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // A panic in the recorder ended only the publishing.
            let _ = thread.join();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Describes every metric to the recorder (its help text and unit).
fn describe() {
    use metrics::Unit;
    for (field, doc) in COUNTER_DOCS {
        let (name, gauge) = metric_name(field);
        let unit = if field.contains("bytes") {
            Unit::Bytes
        } else {
            Unit::Count
        };
        let doc = doc.trim();
        if gauge {
            metrics::describe_gauge!(name, unit, doc);
        } else {
            metrics::describe_counter!(name, unit, doc);
        }
    }
    metrics::describe_gauge!(
        "sansio_worker_utilization_ratio",
        "Time the worker spent working, not sleeping, over the last window (0 to 1)"
    );
    metrics::describe_gauge!(
        "sansio_worker_tasks",
        Unit::Count,
        "Live tasks of the worker, by task type (label `task`)"
    );
    metrics::describe_gauge!(
        "sansio_worker_inbox_depth",
        Unit::Count,
        "Messages waiting in the worker's inbox"
    );
    metrics::describe_gauge!(
        "sansio_worker_inbox_capacity",
        Unit::Count,
        "The capacity of the worker's inbox"
    );
    metrics::describe_counter!(
        "sansio_worker_sends_rejected_total",
        Unit::Count,
        "Sends and spawns refused because the worker's inbox was full"
    );
    metrics::describe_gauge!(
        "sansio_events_depth",
        Unit::Count,
        "Events waiting in the controller's queue"
    );
    metrics::describe_gauge!(
        "sansio_events_capacity",
        Unit::Count,
        "The capacity of the controller's event queue"
    );
}

/// Hands every figure of `stats` to the recorder.
fn publish(runtime: &str, kind: &'static str, stats: &RuntimeStats) {
    for worker in &stats.workers {
        let labels = [
            ("runtime", runtime.to_owned()),
            ("kind", kind.to_owned()),
            ("worker", worker.worker.to_string()),
        ];
        for (field, value) in worker.counters() {
            let (name, gauge) = metric_name(field);
            if gauge {
                metrics::gauge!(name, &labels).set(value as f64);
            } else {
                metrics::counter!(name, &labels).absolute(value);
            }
        }
        metrics::gauge!("sansio_worker_utilization_ratio", &labels).set(worker.utilization);
        metrics::gauge!("sansio_worker_inbox_depth", &labels).set(worker.inbox_depth as f64);
        metrics::gauge!("sansio_worker_inbox_capacity", &labels).set(worker.inbox_capacity as f64);
        metrics::counter!("sansio_worker_sends_rejected_total", &labels)
            .absolute(worker.sends_rejected);
        for (task, live) in &worker.tasks {
            let labels = [
                ("runtime", runtime.to_owned()),
                ("kind", kind.to_owned()),
                ("worker", worker.worker.to_string()),
                ("task", (*task).to_owned()),
            ];
            metrics::gauge!("sansio_worker_tasks", &labels).set(*live as f64);
        }
    }
    let labels = [("runtime", runtime.to_owned()), ("kind", kind.to_owned())];
    metrics::gauge!("sansio_events_depth", &labels).set(stats.events_depth as f64);
    metrics::gauge!("sansio_events_capacity", &labels).set(stats.events_capacity as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus' metric name syntax: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    fn valid(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    #[test]
    fn every_counter_has_a_valid_distinct_name_with_the_conventional_suffix() {
        let mut names = std::collections::HashSet::new();
        for (field, doc) in COUNTER_DOCS {
            let (name, gauge) = metric_name(field);
            assert!(valid(&name), "{name}");
            assert!(name.starts_with("sansio_worker_"), "{name}");
            assert_eq!(name.ends_with("_total"), !gauge, "{name}");
            assert!(!doc.trim().is_empty(), "{field} has no description");
            assert!(names.insert(name.clone()), "{name} twice");
        }
        for gauge in GAUGES {
            assert!(
                COUNTER_DOCS.iter().any(|(field, _)| *field == gauge),
                "{gauge}"
            );
        }
        assert_eq!(
            metric_name("tcp_bytes_read").0,
            "sansio_worker_tcp_read_bytes_total"
        );
        assert_eq!(
            metric_name("udp_received").0,
            "sansio_worker_udp_received_total"
        );
        assert_eq!(
            metric_name("udp_sockets"),
            ("sansio_worker_udp_sockets".to_owned(), true)
        );
    }
}
