//! Nothing is lost at shutdown: every task's `on_shutdown` runs, final
//! outputs are delivered, stragglers are forced at the deadline, and every
//! worker thread is joined.

mod util;

use std::time::{Duration, Instant};

use sansio::Worker;
use sansio::prelude::*;
use util::tasks::{Echo, EchoOut, Media, MediaId, MediaOutput, Ping, Ticker};
use util::{assert_threads_gone, wait_for_threads};

fn count<W: Worker>(events: &[Event<W>], wanted: impl Fn(&Event<W>) -> bool) -> usize {
    events.iter().filter(|event| wanted(event)).count()
}

all_backend_tests! {
    fn shutdown_runs_every_on_shutdown_and_delivers_the_final_outputs(backend: Backend) {
        let prefix = format!("down-{backend}");
        let runtime = Runtime::<Media>::builder()
            .workers(2)
            .backend(backend)
            .thread_name(format!("{prefix}-w"))
            .build()
            .unwrap();
        let quick: Vec<TaskId<Echo>> = (0..3).map(|_| runtime.spawn(Echo::default()).unwrap()).collect();
        let lingering: Vec<TaskId<Echo>> = (0..3)
            .map(|_| runtime.spawn(Echo::lingering(Duration::from_millis(50))).unwrap())
            .collect();
        runtime.spawn(Ticker).unwrap();
        // Not read before shutdown: it must be in the report.
        runtime.send(quick[0], Ping(42)).unwrap();
        assert_eq!(wait_for_threads(&prefix, 2).len(), 2);

        let started = Instant::now();
        let report = runtime.shutdown(Duration::from_secs(5)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "lingering tasks finish after ~50 ms");
        assert_eq!(report.finished, 7);
        assert!(report.forced.is_empty(), "{:?}", report.forced);
        assert!(report.stuck_workers.is_empty());
        let events = &report.events;
        assert_eq!(
            count(events, |e| matches!(e, Event::Output { output: MediaOutput::Echo(EchoOut::Pong(42)), .. })),
            1
        );
        assert_eq!(
            count(events, |e| matches!(e, Event::Output { output: MediaOutput::Echo(EchoOut::ShuttingDown), .. })),
            6
        );
        assert_eq!(
            count(events, |e| matches!(e, Event::Output { output: MediaOutput::Echo(EchoOut::Bye), .. })),
            3,
            "the lingering tasks' last words"
        );
        assert_eq!(count(events, |e| matches!(e, Event::Finished { .. })), 7);
        // Each lingering task's goodbye comes before its Finished event.
        for id in lingering {
            let position = |wanted: &dyn Fn(&Event<Media>) -> bool| events.iter().position(wanted);
            let bye = position(&|e| matches!(e, Event::Output { task: MediaId::Echo(t), output: MediaOutput::Echo(EchoOut::Bye) } if *t == id));
            let finished = position(&|e| matches!(e, Event::Finished { task: MediaId::Echo(t) } if *t == id));
            assert!(bye.unwrap() < finished.unwrap());
        }
        // Every worker thread was joined.
        assert_threads_gone(&prefix);
    }

    fn tasks_that_never_finish_are_forced_at_the_deadline(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(1).backend(backend).build().unwrap();
        let stubborn = runtime
            .spawn(Echo::stubborn())
            .unwrap();
        runtime.spawn(Echo::default()).unwrap();
        let started = Instant::now();
        let report = runtime.shutdown(Duration::from_millis(150)).unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(150), "stopped before the deadline: {took:?}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert_eq!(report.forced, [MediaId::Echo(stubborn)]);
        assert_eq!(report.finished, 1);
        assert_eq!(
            count(&report.events, |e| matches!(e, Event::Output { output: MediaOutput::Echo(EchoOut::ShuttingDown), .. })),
            2,
            "on_shutdown ran for both"
        );
    }

    fn dropping_the_runtime_shuts_it_down(backend: Backend) {
        let prefix = format!("drop-{backend}");
        let runtime = Runtime::<Media>::builder()
            .workers(2)
            .backend(backend)
            .thread_name(format!("{prefix}-w"))
            .build()
            .unwrap();
        runtime.spawn(Echo::default()).unwrap();
        runtime.spawn(Ticker).unwrap();
        assert_eq!(wait_for_threads(&prefix, 2).len(), 2);
        drop(runtime);
        assert_threads_gone(&prefix);
    }

    fn an_empty_runtime_shuts_down_at_once(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(2).backend(backend).build().unwrap();
        let started = Instant::now();
        let report = runtime.shutdown(Duration::from_secs(30)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(report.finished, 0);
        assert!(report.events.is_empty());
    }
}
