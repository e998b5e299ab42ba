//! The cross-task bus, on every backend: pub/sub across workers, broadcast,
//! direct messages, request/response from tasks and from the controller,
//! per-publisher order, and overflow reported and counted.

mod util;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use sansio::prelude::*;
use sansio::{Backend, RpcError};
use util::bus::{
    BusOut, Bystander, GetCount, Hub, HubOutput, Later, Media, Pending, Publisher,
    PublisherCommand, Room, Viewer, ViewerCommand,
};
use util::{eventually, next};

fn hub(backend: Backend, queue_capacity: usize) -> Runtime<Hub> {
    Runtime::<Hub>::builder()
        .workers(2)
        .backend(backend)
        .queue_capacity(queue_capacity)
        .event_capacity(1 << 16)
        .build()
        .unwrap()
}

/// The next output, which must be a `BusOut`.
fn next_out(runtime: &Runtime<Hub>) -> BusOut {
    match next(runtime) {
        Event::Output {
            output: HubOutput::Viewer(out) | HubOutput::Publisher(out),
            ..
        } => out,
        other => panic!("unexpected {other:?}"),
    }
}

/// Spawns viewers of `rooms`, alternating workers, and waits until each has
/// subscribed and every worker knows of the others' subscribers.
fn viewers(
    runtime: &Runtime<Hub>,
    count: u32,
    rooms: &[Room],
    report: bool,
) -> Vec<TaskId<Viewer>> {
    let ids: Vec<TaskId<Viewer>> = (0..count)
        .map(|id| {
            let viewer = Viewer::new(id, rooms.to_vec(), report);
            runtime.spawn_on(id as usize % 2, viewer).unwrap()
        })
        .collect();
    for _ in 0..count {
        assert!(matches!(next_out(runtime), BusOut::Subscribed(_)));
    }
    let expected = if count >= 2 { rooms.len() as u64 } else { 0 };
    eventually("both workers know of each other's subscribers", || {
        runtime
            .stats()
            .workers
            .iter()
            .all(|worker| worker.bus_remote_interest == expected)
    });
    ids
}

all_backend_tests! {
    fn subscribed_says_when_a_subscription_is_in_effect_on_every_worker(backend: Backend) {
        let runtime = hub(backend, 4096);
        let publisher = runtime.spawn_on(0, Publisher { id: 7, ..Publisher::default() }).unwrap();
        for (id, room) in [(1, Room(10)), (2, Room(20)), (3, Room(30))] {
            let mut viewer = Viewer::new(id, vec![room.clone()], true);
            viewer.confirm = true;
            runtime.spawn_on(1, viewer).unwrap();
            assert_eq!(next_out(&runtime), BusOut::Subscribed(id));
            assert_eq!(next_out(&runtime), BusOut::InEffect(id, room.clone()));
            // No waiting on the stats: once in effect, the first publish
            // from the other worker reaches the viewer.
            runtime.send(publisher, PublisherCommand::Publish(room.clone(), 1)).unwrap();
            match next_out(&runtime) {
                BusOut::Got { viewer, channel, .. } => assert_eq!((viewer, channel), (id, Some(room))),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn a_thousand_subscribers_across_two_workers_get_each_event(backend: Backend) {
        let runtime = hub(backend, 4096);
        viewers(&runtime, 1000, &[Room(1)], true);
        let publisher = runtime.spawn_on(0, Publisher { id: 7, ..Publisher::default() }).unwrap();
        runtime.send(publisher, PublisherCommand::Publish(Room(1), 1)).unwrap();
        let mut got = vec![false; 1000];
        for _ in 0..1000 {
            match next_out(&runtime) {
                BusOut::Got { viewer, channel, event } => {
                    assert_eq!(channel, Some(Room(1)));
                    assert_eq!(event, Media::Frame { publisher: 7, seq: 0 });
                    assert!(!std::mem::replace(&mut got[viewer as usize], true), "twice to {viewer}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        eventually("the deliveries are counted", || {
            runtime.stats().workers.iter().map(|w| w.bus_delivered).sum::<u64>() == 1000
        });
    }

    fn unsubscribing_stops_delivery(backend: Backend) {
        let runtime = hub(backend, 4096);
        let ids = viewers(&runtime, 4, &[Room(1)], true);
        // Viewers 1 and 3 (on worker 1) leave: worker 0 stops sending there.
        for id in [ids[1], ids[3]] {
            runtime.send(id, ViewerCommand::Unsubscribe(Room(1))).unwrap();
        }
        eventually("worker 0 hears worker 1 has no subscribers left", || {
            runtime.stats().workers[0].bus_remote_interest == 0
        });
        let publisher = runtime.spawn_on(0, Publisher::default()).unwrap();
        runtime.send(publisher, PublisherCommand::Publish(Room(1), 1)).unwrap();
        let mut viewers = vec![];
        for _ in 0..2 {
            match next_out(&runtime) {
                BusOut::Got { viewer, .. } => viewers.push(viewer),
                other => panic!("unexpected {other:?}"),
            }
        }
        viewers.sort();
        assert_eq!(viewers, [0, 2]);
        assert!(runtime.next_event(Duration::from_millis(100)).is_none());
    }

    fn broadcast_reaches_every_task_with_a_bus(backend: Backend) {
        let runtime = hub(backend, 4096);
        viewers(&runtime, 6, &[], true);
        runtime.spawn_on(1, Bystander).unwrap();
        let publisher = runtime.spawn_on(0, Publisher::default()).unwrap();
        runtime.send(publisher, PublisherCommand::Broadcast(Media::Hello(3))).unwrap();
        let mut reached = vec![];
        for _ in 0..7 {
            match next_out(&runtime) {
                BusOut::Got { viewer, channel: None, event: Media::Hello(3) } => reached.push(viewer),
                other => panic!("unexpected {other:?}"),
            }
        }
        reached.sort();
        assert_eq!(reached, [0, 1, 2, 3, 4, 5, u32::MAX], "every viewer and the publisher itself");
        assert!(runtime.next_event(Duration::from_millis(100)).is_none(), "the bystander takes none");
    }

    fn a_direct_message_crosses_workers(backend: Backend) {
        let runtime = hub(backend, 4096);
        let ids = viewers(&runtime, 2, &[], false);
        let publisher = runtime.spawn_on(0, Publisher::default()).unwrap();
        runtime.send(publisher, PublisherCommand::Direct(ids[1], 42)).unwrap();
        assert_eq!(next_out(&runtime), BusOut::Direct { viewer: 1, value: 42 });
        // To a viewer that has ended: the sender is told.
        runtime.send(ids[1], ViewerCommand::Quit).unwrap();
        assert!(matches!(next(&runtime), Event::Finished { .. }));
        runtime.send(publisher, PublisherCommand::Direct(ids[1], 43)).unwrap();
        assert_eq!(next_out(&runtime), BusOut::SendFailed(RpcError::TaskGone));
    }

    fn a_task_asks_and_gets_answers_timeouts_and_task_gone(backend: Backend) {
        let runtime = hub(backend, 4096);
        let ids = viewers(&runtime, 2, &[Room(5)], false);
        let publisher = runtime.spawn_on(0, Publisher::default()).unwrap();
        runtime.send(publisher, PublisherCommand::Publish(Room(5), 3)).unwrap();
        eventually("the frames are delivered", || {
            runtime.stats().workers.iter().map(|w| w.bus_delivered).sum::<u64>() == 6
        });
        // Success, across workers.
        runtime.send(publisher, PublisherCommand::Ask(ids[1], Duration::from_secs(10))).unwrap();
        assert_eq!(next_out(&runtime), BusOut::Count(Ok(3)));
        // An answer that comes later, through a kept responder.
        runtime.send(publisher, PublisherCommand::AskLater(ids[1], Duration::from_secs(10))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        runtime.send(ids[1], Pending::AnswerNow).unwrap();
        assert_eq!(next_out(&runtime), BusOut::Later(Ok("answered later")));
        // No answer: the timeout.
        runtime.send(publisher, PublisherCommand::AskLater(ids[0], Duration::from_millis(50))).unwrap();
        assert_eq!(next_out(&runtime), BusOut::Later(Err(RpcError::Timeout)));
        // Answered after the timeout: not delivered, counted.
        let undelivered = || -> u64 { runtime.stats().workers.iter().map(|w| w.bus_undelivered).sum() };
        let before = undelivered();
        runtime.send(ids[0], Pending::AnswerNow).unwrap();
        eventually("the late answer is counted", || undelivered() == before + 1);
        // A responder let go: the asker hears at once.
        runtime.send(publisher, PublisherCommand::AskLater(ids[1], Duration::from_secs(10))).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        runtime.send(ids[1], Pending::DropIt).unwrap();
        assert_eq!(next_out(&runtime), BusOut::Later(Err(RpcError::Dropped)));
        // The target has ended.
        runtime.send(ids[1], ViewerCommand::Quit).unwrap();
        assert!(matches!(next(&runtime), Event::Finished { .. }));
        runtime.send(publisher, PublisherCommand::Ask(ids[1], Duration::from_secs(10))).unwrap();
        assert_eq!(next_out(&runtime), BusOut::Count(Err(RpcError::TaskGone)));
        eventually("the timeout is counted", || {
            runtime.stats().workers[0].rpc_timeouts == 1
        });
    }

    fn the_controller_calls_tasks(backend: Backend) {
        let runtime = hub(backend, 4096);
        let ids = viewers(&runtime, 2, &[], false);
        assert_eq!(runtime.call(ids[1], GetCount, Duration::from_secs(10)), Ok(0));
        assert_eq!(runtime.call(ids[0], Later, Duration::from_millis(50)), Err(RpcError::Timeout));
        // Answered later: the call blocks until the responder answers.
        let answer = std::thread::scope(|scope| {
            let call = scope.spawn(|| runtime.call(ids[1], Later, Duration::from_secs(10)));
            std::thread::sleep(Duration::from_millis(50));
            runtime.send(ids[1], Pending::AnswerNow).unwrap();
            call.join().unwrap()
        });
        assert_eq!(answer, Ok("answered later"));
        runtime.send(ids[1], ViewerCommand::Quit).unwrap();
        assert!(matches!(next(&runtime), Event::Finished { .. }));
        assert_eq!(runtime.call(ids[1], GetCount, Duration::from_secs(10)), Err(RpcError::TaskGone));
    }

    fn each_subscriber_gets_a_publishers_events_in_order(backend: Backend) {
        let runtime = hub(backend, 4096);
        viewers(&runtime, 10, &[Room(2)], false);
        let publishers: Vec<TaskId<Publisher>> = (0..2)
            .map(|id| runtime.spawn_on(id as usize, Publisher { id, ..Publisher::default() }).unwrap())
            .collect();
        for _ in 0..10 {
            for publisher in &publishers {
                runtime.send(*publisher, PublisherCommand::Publish(Room(2), 50)).unwrap();
            }
        }
        eventually("every frame is delivered", || {
            runtime.stats().workers.iter().map(|w| w.bus_delivered).sum::<u64>() == 10 * 2 * 500
        });
        // A viewer that saw a frame out of order would have said so.
        assert!(runtime.try_next_event().is_none());
    }

    fn a_full_bus_inbox_is_reported_to_the_publisher_and_counted(backend: Backend) {
        // Tiny bus inboxes, and a burst toward a worker that is held inside
        // a handler, so that it cannot drain its inbox however fast it spins.
        let runtime = hub(backend, 8);
        let ids = viewers(&runtime, 2, &[Room(9)], false);
        let publisher = runtime.spawn_on(0, Publisher::default()).unwrap();
        let hold = Arc::new(Barrier::new(2));
        runtime.send(ids[1], ViewerCommand::Hold(hold.clone())).unwrap();
        hold.wait();
        runtime.send(publisher, PublisherCommand::Publish(Room(9), 200)).unwrap();
        // Worker 1 is let go once the publisher has reported (or after a
        // long wait), before anything here can panic and leave it held.
        let first = runtime.next_event(Duration::from_secs(10));
        hold.wait();
        let mut overflowed = 0;
        let events = first.into_iter().chain(std::iter::from_fn(|| {
            runtime.next_event(Duration::from_millis(300))
        }));
        for event in events {
            match event {
                Event::Output { output: HubOutput::Publisher(BusOut::Overflow { workers }), .. } => {
                    overflowed += workers as u64;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(overflowed > 0, "8 places cannot take 200 events at once");
        eventually("every event was delivered or reported", || {
            let stats = runtime.stats();
            let delivered: u64 = stats.workers.iter().map(|w| w.bus_delivered).sum();
            let counted: u64 = stats.workers.iter().map(|w| w.bus_overflow).sum();
            // 200 to the viewer on the publisher's worker, 200 toward the
            // other: delivered there or overflowed.
            counted == overflowed && delivered + overflowed == 400
        });
    }
}
