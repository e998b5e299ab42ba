//! Helpers shared by the runtime tests.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different part.

use std::time::{Duration, Instant};

use sansio::Worker;
use sansio::prelude::*;

pub mod bus;
pub mod tasks;
pub mod tcp;
pub mod udp;

/// Generates one `#[test]` per available backend for each function, in a
/// module per backend: `backend_tests! { fn name(backend: Backend) { .. } }`.
#[macro_export]
macro_rules! backend_tests {
    ($(fn $name:ident($backend:ident: Backend) $body:block)*) => {
        $(fn $name($backend: sansio::Backend) $body)*

        mod mio {
            $(#[test]
            fn $name() {
                super::$name(sansio::Backend::Mio);
            })*
        }

        mod polling {
            $(#[test]
            fn $name() {
                super::$name(sansio::Backend::Polling);
            })*
        }

        mod io_uring {
            $(#[test]
            fn $name() {
                super::$name(sansio::Backend::IoUring);
            })*
        }
    };
}

/// Like `backend_tests!`, plus the busy-poll backend: for everything that
/// does not depend on an idle worker sleeping (the I/O conformance suite).
#[macro_export]
macro_rules! all_backend_tests {
    ($(fn $name:ident($backend:ident: Backend) $body:block)*) => {
        $crate::backend_tests! {
            $(fn $name($backend: Backend) $body)*
        }

        mod busy_poll {
            $(#[test]
            fn $name() {
                super::$name(sansio::Backend::BusyPoll);
            })*
        }
    };
}

/// How long tests wait for something that should happen at once: generous,
/// so a loaded 2-core CI machine does not fail them, and bounded, so a
/// broken runtime fails instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Events until `done` says stop (given each event), or [`PATIENCE`] passes.
pub fn events_until<W: Worker>(
    runtime: &Runtime<W>,
    mut done: impl FnMut(&Event<W>) -> bool,
) -> Vec<Event<W>> {
    let give_up = Instant::now() + PATIENCE;
    let mut events = Vec::new();
    while let Some(event) = runtime.next_event(give_up.saturating_duration_since(Instant::now())) {
        let stop = done(&event);
        events.push(event);
        if stop {
            return events;
        }
    }
    panic!(
        "gave up after {PATIENCE:?} waiting for an event; got {} events",
        events.len()
    );
}

/// The next event, which must come within [`PATIENCE`].
pub fn next<W: Worker>(runtime: &Runtime<W>) -> Event<W> {
    runtime
        .next_event(PATIENCE)
        .unwrap_or_else(|| panic!("no event within {PATIENCE:?}"))
}

/// Waits until `condition` holds, for at most [`PATIENCE`]: for what the
/// workers publish once per loop iteration, like their stats.
pub fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let give_up = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < give_up, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The names of this process's live threads whose name starts with `prefix`.
pub fn threads_named(prefix: &str) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let entry = entry.expect("a task entry");
        let comm = entry.path().join("comm");
        let Ok(name) = std::fs::read_to_string(&comm) else {
            continue;
        };
        let name = name.trim().to_owned();
        if name.starts_with(prefix) {
            let tid = entry.file_name().to_string_lossy().parse().unwrap_or(0);
            found.push((name, tid));
        }
    }
    found
}

/// Waits until no thread named with `prefix` is left, and fails if one
/// still is after [`PATIENCE`]. A joined thread has stopped running, but the
/// kernel may list it in `/proc/self/task` for a moment after `join`
/// returns, on a loaded machine; a thread that was never stopped stays.
pub fn assert_threads_gone(prefix: &str) {
    let give_up = Instant::now() + PATIENCE;
    loop {
        let threads = threads_named(prefix);
        if threads.is_empty() {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "threads left after shutdown: {threads:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The threads named with `prefix`, once there are `count` of them: a new
/// thread names itself as it starts, so it may take a moment to show.
pub fn wait_for_threads(prefix: &str, count: usize) -> Vec<(String, u64)> {
    let give_up = Instant::now() + PATIENCE;
    loop {
        let threads = threads_named(prefix);
        if threads.len() == count || Instant::now() > give_up {
            return threads;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// CPU time a thread of this process has used, from
/// `/proc/self/task/<tid>/schedstat` (nanoseconds on the CPU).
pub fn thread_cpu(tid: u64) -> Duration {
    let schedstat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .expect("schedstat of a live thread");
    let nanos: u64 = schedstat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .expect("schedstat starts with the time on CPU");
    Duration::from_nanos(nanos)
}
