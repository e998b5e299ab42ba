//! Idle costs nothing: a worker with no ready I/O, no messages and no due
//! timer sleeps without a timeout, and a message wakes it at once; one that
//! has just echoed UDP traffic (io_uring: receives armed in the kernel, and
//! send batches just finished) falls asleep too.

mod util;

use std::time::{Duration, Instant};

use sansio::prelude::*;
use util::tasks::{Echo, Media, Ping};
use util::udp::{Net, NetOutput, UdpOut, UdpTask, any_port, client, recv};
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

    fn a_worker_that_echoed_udp_falls_asleep(backend: Backend) {
        let prefix = format!("udp-{backend}");
        let runtime = Runtime::<Net>::builder()
            .workers(1)
            .backend(backend)
            .thread_name(format!("{prefix}-w"))
            .build()
            .unwrap();
        runtime.spawn(UdpTask::echo(any_port())).unwrap();
        let server = match next(&runtime) {
            Event::Output { output: NetOutput::Udp(UdpOut::Bound(Ok(addr))), .. } => addr,
            other => panic!("unexpected {other:?}"),
        };
        let peer = client();
        for n in 0..50u8 {
            peer.send_to(&[n; 100], server).unwrap();
        }
        for n in 0..50u8 {
            assert_eq!(recv(&peer).0, vec![n; 100]);
        }
        let workers = wait_for_threads(&prefix, 1);
        std::thread::sleep(Duration::from_millis(100));
        let (name, tid) = &workers[0];
        let before = thread_cpu(*tid);
        let loops_before = runtime.stats().workers[0].loop_iterations;
        let sent_before = runtime.stats().workers[0].udp_sent;
        assert_eq!(sent_before, 50, "every echo counted once the worker settled");
        std::thread::sleep(Duration::from_secs(2));
        let used = thread_cpu(*tid) - before;
        assert!(used < Duration::from_millis(20), "{name} used {used:?} of CPU while idle");
        assert_eq!(runtime.stats().workers[0].loop_iterations, loops_before, "it woke up");
        // And a datagram wakes it at once.
        let sent = Instant::now();
        peer.send_to(b"again", server).unwrap();
        assert_eq!(recv(&peer).0, b"again");
        assert!(sent.elapsed() < Duration::from_secs(1));
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
