//! Spawning, sending and receiving across workers, on every backend: typed
//! ids, outputs tagged with their task, and the order of outputs.

mod util;

use sansio::prelude::*;
use util::tasks::{Burst, Echo, EchoOut, Media, MediaId, MediaOutput, Ping, Ticker};
use util::{events_until, next};

all_backend_tests! {
    fn spawn_send_and_receive_across_two_workers(backend: Backend) {
        let runtime = Runtime::<Media>::builder()
            .workers(2)
            .backend(backend)
            .build()
            .unwrap();
        assert_eq!(runtime.workers(), 2);
        let on_0 = runtime.spawn_on(0, Echo::default()).unwrap();
        let on_1 = runtime.spawn_on(1, Echo::default()).unwrap();
        assert_eq!((on_0.worker(), on_1.worker()), (0, 1));
        // Load-balanced spawns spread over both workers.
        let balanced: Vec<TaskId<Echo>> =
            (0..4).map(|_| runtime.spawn(Echo::default()).unwrap()).collect();
        let on_worker_0 = balanced.iter().filter(|id| id.worker() == 0).count();
        assert_eq!(on_worker_0, 2, "{balanced:?}");

        let all: Vec<TaskId<Echo>> = [on_0, on_1].into_iter().chain(balanced).collect();
        for (n, id) in all.iter().enumerate() {
            runtime.send(*id, Ping(n as u64)).unwrap();
        }
        let mut answered = Vec::new();
        for _ in 0..all.len() {
            let event = next(&runtime);
            // An event's Debug shows the task's output, not `Output(..)`.
            let shown = format!("{event:?}");
            assert!(shown.contains("MediaOutput::Echo(Pong("), "{shown}");
            match event {
                Event::Output {
                    task: MediaId::Echo(task),
                    output: MediaOutput::Echo(EchoOut::Pong(n)),
                } => answered.push((n, task)),
                other => panic!("unexpected {other:?}"),
            }
        }
        answered.sort_by_key(|(n, _)| *n);
        let expected: Vec<(u64, TaskId<Echo>)> =
            all.iter().enumerate().map(|(n, id)| (n as u64, *id)).collect();
        assert_eq!(answered, expected, "each answer comes from the task it was sent to");
        let stats = runtime.stats();
        assert_eq!(stats.workers[0].tasks, [("Echo", 3), ("Ticker", 0), ("Gate", 0)]);
        assert_eq!(stats.workers[1].total_tasks(), 3);
    }

    fn outputs_of_one_input_come_before_the_next_input(backend: Backend) {
        let runtime = Runtime::<Media>::builder()
            .workers(1)
            .backend(backend)
            .build()
            .unwrap();
        let a = runtime.spawn(Echo::default()).unwrap();
        let b = runtime.spawn(Echo::default()).unwrap();
        let sent = [(a, 1), (b, 2), (a, 3), (b, 4), (a, 5)];
        for (task, tag) in sent {
            runtime.send(task, Burst { tag, count: 3 }).unwrap();
        }
        let mut seen = Vec::new();
        events_until(&runtime, |event| {
            if let Event::Output {
                task: MediaId::Echo(task),
                output: MediaOutput::Echo(EchoOut::Part(tag, part)),
            } = event
            {
                seen.push((*task, *tag, *part));
            }
            seen.len() == 15
        });
        let expected: Vec<(TaskId<Echo>, u64, u32)> = sent
            .iter()
            .flat_map(|&(task, tag)| (0..3).map(move |part| (task, tag, part)))
            .collect();
        assert_eq!(seen, expected);
    }

    fn two_task_types_share_a_worker(backend: Backend) {
        let runtime = Runtime::<Media>::builder()
            .workers(1)
            .backend(backend)
            .build()
            .unwrap();
        let echo = runtime.spawn(Echo::default()).unwrap();
        let ticker = runtime.spawn(Ticker).unwrap();
        runtime.send(echo, Ping(9)).unwrap();
        let mut pong = false;
        let mut ticked = false;
        events_until(&runtime, |event| {
            match event {
                Event::Output { task: MediaId::Echo(id), output: MediaOutput::Echo(EchoOut::Pong(9)) } => {
                    assert_eq!(*id, echo);
                    pong = true;
                }
                Event::Output { task: MediaId::Ticker(id), output: MediaOutput::Ticker(_) } => {
                    assert_eq!(*id, ticker);
                    ticked = true;
                }
                other => panic!("unexpected {other:?}"),
            }
            pong && ticked
        });
        assert_eq!(echo.to_string(), format!("Echo#0.{}.{}", echo.slot(), echo.generation()));
        assert_eq!(MediaId::Ticker(ticker).to_string(), ticker.to_string());
    }

    fn the_input_enum_of_a_task_can_be_sent(backend: Backend) {
        let runtime = Runtime::<Media>::builder()
            .workers(1)
            .backend(backend)
            .build()
            .unwrap();
        let echo = runtime.spawn(Echo::default()).unwrap();
        runtime.send(echo, util::tasks::EchoInput::Ping(Ping(3))).unwrap();
        assert!(matches!(
            next(&runtime),
            Event::Output { output: MediaOutput::Echo(EchoOut::Pong(3)), .. }
        ));
    }
}
