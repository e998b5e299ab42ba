//! Every queue is bounded: a full inbox refuses sends and spawns with the
//! message handed back, outputs beyond the event queue are dropped and
//! counted, and nothing is lost silently.

mod util;

use std::time::{Duration, Instant};

use sansio::prelude::*;
use sansio::{SendError, SpawnError};
use util::tasks::{Burst, Echo, EchoOut, Media, MediaOutput, Ping, hold_worker};
use util::{events_until, next};

all_backend_tests! {
    fn a_full_inbox_refuses_sends_and_spawns(backend: Backend) {
        let runtime = Runtime::<Media>::builder()
            .workers(1)
            .backend(backend)
            .queue_capacity(4)
            .event_capacity(64)
            .build()
            .unwrap();
        let echo = runtime.spawn(Echo::default()).unwrap();
        let release = hold_worker(&runtime, 0);
        for n in 0..4 {
            runtime.send(echo, Ping(n)).unwrap();
        }
        match runtime.send(echo, Ping(4)) {
            Err(SendError::Full(Ping(4))) => {}
            other => panic!("expected Full, got {other:?}"),
        }
        let started = Instant::now();
        match runtime.send_timeout(echo, Ping(5), Duration::from_millis(50)) {
            Err(SendError::Full(Ping(5))) => assert!(started.elapsed() >= Duration::from_millis(45)),
            other => panic!("expected Full after the timeout, got {other:?}"),
        }
        match runtime.spawn(Echo::announcing()) {
            Err(SpawnError::Full(task)) => assert!(task.announce_start, "the task comes back"),
            other => panic!("expected Full, got {other:?}"),
        }
        let stats = runtime.stats();
        assert_eq!(stats.workers[0].inbox_depth, 4);
        assert_eq!(stats.workers[0].sends_rejected, 3);
        assert_eq!(stats.workers[0].tasks[0], ("Echo", 1), "the refused spawn holds no slot");

        // Released, the worker answers everything that was queued, in order,
        // and room frees up for a send that waits.
        drop(release);
        runtime.send_timeout(echo, Ping(6), Duration::from_secs(5)).unwrap();
        let mut pongs = Vec::new();
        events_until(&runtime, |event| {
            if let Event::Output { output: MediaOutput::Echo(EchoOut::Pong(n)), .. } = event {
                pongs.push(*n);
            }
            pongs.len() == 5
        });
        assert_eq!(pongs, [0, 1, 2, 3, 6]);
    }

    fn outputs_beyond_the_event_queue_are_dropped_and_counted(backend: Backend) {
        let runtime = Runtime::<Media>::builder()
            .workers(1)
            .backend(backend)
            .event_capacity(8)
            .build()
            .unwrap();
        let echo = runtime.spawn(Echo::default()).unwrap();
        // One input, 100 outputs, nobody reading: 8 fit the event queue.
        runtime.send(echo, Burst { tag: 1, count: 100 }).unwrap();
        let give_up = Instant::now() + util::PATIENCE;
        while runtime.stats().workers[0].outputs < 100 {
            assert!(Instant::now() < give_up, "the burst never ran");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut received = Vec::new();
        while let Some(event) = runtime.try_next_event() {
            if let Event::Output { output: MediaOutput::Echo(EchoOut::Part(1, part)), .. } = event {
                received.push(part);
            }
        }
        let dropped = runtime.stats().workers[0].events_dropped;
        assert_eq!(received, (0..8).collect::<Vec<u32>>(), "the first outputs, in order");
        assert_eq!(received.len() as u64 + dropped, 100, "every output delivered or counted");
        // The worker is unharmed.
        runtime.send(echo, Ping(1)).unwrap();
        assert!(matches!(next(&runtime), Event::Output { output: MediaOutput::Echo(EchoOut::Pong(1)), .. }));
    }
}
