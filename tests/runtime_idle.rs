//! Idle costs nothing: a worker with no ready I/O, no messages and no due
//! timer sleeps without a timeout, and a message wakes it at once.

mod util;

use std::time::{Duration, Instant};

use sansio::prelude::*;
use util::tasks::{Echo, Media, Ping};
use util::{next, thread_cpu, wait_for_threads};

/// Builds the runtime, keeps it busy for a moment, lets it go idle, and
/// checks that its worker threads then use (almost) no CPU and never wake.
fn idle_costs_nothing(runtime: Runtime<Media>, prefix: &str) {
    // Tasks without ticks or timers: nothing to wake for.
    let echoes: Vec<TaskId<Echo>> = (0..10)
        .map(|_| runtime.spawn(Echo::default()).unwrap())
        .collect();
    for echo in &echoes {
        runtime.send(*echo, Ping(1)).unwrap();
    }
    for _ in &echoes {
        next(&runtime);
    }
    let workers = wait_for_threads(prefix, 2);
    assert_eq!(workers.len(), 2, "{workers:?}");
    std::thread::sleep(Duration::from_millis(100));
    let before: Vec<Duration> = workers.iter().map(|(_, tid)| thread_cpu(*tid)).collect();
    let loops_before: u64 = runtime
        .stats()
        .workers
        .iter()
        .map(|w| w.loop_iterations)
        .sum();
    std::thread::sleep(Duration::from_secs(2));
    for ((name, tid), before) in workers.iter().zip(before) {
        let used = thread_cpu(*tid) - before;
        assert!(
            used < Duration::from_millis(20),
            "{name} used {used:?} of CPU while idle"
        );
    }
    let loops_after: u64 = runtime
        .stats()
        .workers
        .iter()
        .map(|w| w.loop_iterations)
        .sum();
    assert_eq!(loops_after, loops_before, "an idle worker woke up");

    // A message wakes an idle worker at once.
    let sent = Instant::now();
    runtime.send(echoes[0], Ping(2)).unwrap();
    next(&runtime);
    assert!(sent.elapsed() < Duration::from_secs(1));
}

backend_tests! {
    fn an_idle_runtime_uses_no_cpu(backend: Backend) {
        let prefix = format!("idle-{backend}");
        let runtime = Runtime::<Media>::builder()
            .workers(2)
            .backend(backend)
            .thread_name(format!("{prefix}-w"))
            .build()
            .unwrap();
        idle_costs_nothing(runtime, &prefix);
    }

    fn spinning_workers_still_fall_asleep(backend: Backend) {
        let prefix = format!("spin-{backend}");
        let runtime = Runtime::<Media>::builder()
            .workers(2)
            .backend(backend)
            .thread_name(format!("{prefix}-w"))
            .spin_before_sleep(Duration::from_millis(5))
            .build()
            .unwrap();
        idle_costs_nothing(runtime, &prefix);
    }
}
