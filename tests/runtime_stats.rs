//! Live worker stats: exact counters, rates and utilization measured over a
//! window, queue depths and pending timers.

mod util;

use std::time::{Duration, Instant};

use sansio::prelude::*;
use util::tasks::{Echo, EchoOut, Media, MediaOutput, Ping, Ticker};

backend_tests! {
    fn stats_count_work_and_measure_utilization(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(2).backend(backend).build().unwrap();
        let echo = runtime.spawn_on(1, Echo::default()).unwrap();
        runtime.spawn_on(0, Ticker).unwrap();
        runtime.stats(); // opens the window

        // Keep the echo worker busy for ~300 ms: 64 pings always in flight.
        for n in 0..64 {
            runtime.send(echo, Ping(n)).unwrap();
        }
        let mut answered = 0u64;
        let busy_until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < busy_until {
            match runtime.next_event(util::PATIENCE) {
                Some(Event::Output { output: MediaOutput::Echo(EchoOut::Pong(n)), .. }) => {
                    answered += 1;
                    runtime.send_timeout(echo, Ping(n), util::PATIENCE).unwrap();
                }
                Some(Event::Output { output: MediaOutput::Ticker(_), .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        let busy = runtime.stats();
        let worker = &busy.workers[1];
        // Counters are published once per loop iteration: mid-burst they may
        // lag by a batch. Exact counts are checked below, once quiet.
        assert!(worker.inputs > 0 && worker.outputs > 0);
        assert!(worker.inputs_per_sec > 0.0 && worker.outputs_per_sec > 0.0);
        assert!(
            worker.utilization > 0.0 && worker.utilization <= 1.0,
            "utilization {}",
            worker.utilization
        );
        assert!(worker.loop_iterations > 0);
        assert_eq!(worker.tasks, [("Echo", 1), ("Ticker", 0), ("Gate", 0)]);
        assert_eq!(busy.workers[0].tasks, [("Echo", 0), ("Ticker", 1), ("Gate", 0)]);
        assert_eq!(busy.workers[0].timers_pending, 1, "one tick entry for the ticker group");
        assert_eq!(worker.inbox_capacity, sansio::DEFAULT_QUEUE_CAPACITY);

        // Drain what is in flight, then let the echo worker idle: its
        // measured utilization falls to about nothing, and it did no more
        // work than it was given.
        let give_up = Instant::now() + util::PATIENCE;
        while runtime.stats().workers[1].inputs < answered + 64 {
            assert!(Instant::now() < give_up);
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(250));
        runtime.stats();
        std::thread::sleep(Duration::from_millis(250));
        let idle = runtime.stats();
        assert!(idle.workers[1].utilization < 0.05, "idle utilization {}", idle.workers[1].utilization);
        assert_eq!(idle.workers[1].inputs_per_sec, 0.0);
        assert_eq!(idle.workers[1].inputs, answered + 64);
        assert_eq!(idle.workers[1].outputs, answered + 64);
        let text = idle.to_string();
        assert!(text.contains("worker 1:") && text.contains("Echo=1"), "{text}");
    }
}
