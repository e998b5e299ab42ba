//! Panics stay in their task, and ids never misdeliver, on every backend.

mod util;

use sansio::prelude::*;
use sansio::{SendError, SpawnError};
use util::tasks::{
    Boom, Echo, EchoInput, EchoOut, Media, MediaId, MediaInput, MediaOutput, Ping, Quit,
    hold_worker,
};
use util::{events_until, next};

/// The shape DESIGN.md shows: `?` on spawn and send in a function returning
/// `sansio::Result`, the failure readable as an `Error`.
fn spawn_and_send_with_question_marks(
    runtime: &Runtime<Media>,
    id: TaskId<Echo>,
) -> sansio::Result<()> {
    let fresh = runtime.spawn(Echo::default())?;
    runtime.send(fresh, Ping(1))?;
    runtime.send(id, Ping(2))?;
    Ok(())
}

all_backend_tests! {
    fn send_and_spawn_errors_work_with_the_question_mark(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(1).backend(backend).build().unwrap();
        let gone = runtime.spawn(Echo::default()).unwrap();
        runtime.send(gone, Quit).unwrap();
        util::events_until(&runtime, |event| matches!(event, Event::Finished { .. }));
        let error = spawn_and_send_with_question_marks(&runtime, gone).unwrap_err();
        assert!(matches!(error, sansio::Error::SendFailed(_)), "{error:?}");
        assert_eq!(error.to_string(), "message not sent: the task has ended");
    }

    fn a_panicking_task_is_reported_and_the_others_keep_answering(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(1).backend(backend).build().unwrap();
        let doomed = runtime.spawn(Echo::default()).unwrap();
        let healthy = runtime.spawn(Echo::default()).unwrap();
        runtime.send(doomed, Boom("handler exploded".to_owned())).unwrap();
        runtime.send(healthy, Ping(1)).unwrap();
        // The output queued before the panic, then the panic, then the other
        // task's answer: in order, from one worker.
        assert!(matches!(
            next(&runtime),
            Event::Output { task: MediaId::Echo(id), output: MediaOutput::Echo(EchoOut::Part(0, 0)) } if id == doomed
        ));
        match next(&runtime) {
            Event::Panicked { task: MediaId::Echo(id), message } => {
                assert_eq!(id, doomed);
                assert_eq!(message, "handler exploded");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            next(&runtime),
            Event::Output { task: MediaId::Echo(id), output: MediaOutput::Echo(EchoOut::Pong(1)) } if id == healthy
        ));
        // The worker carries on: new tasks and old ones answer.
        let newcomer = runtime.spawn(Echo::default()).unwrap();
        runtime.send(newcomer, Ping(2)).unwrap();
        runtime.send(healthy, Ping(3)).unwrap();
        let answers = events_until(&runtime, |event| {
            matches!(event, Event::Output { output: MediaOutput::Echo(EchoOut::Pong(3)), .. })
        });
        assert_eq!(answers.len(), 2);
        assert!(matches!(runtime.send(doomed, Ping(4)), Err(SendError::TaskGone(Ping(4)))));
        assert_eq!(runtime.stats().workers[0].tasks[0], ("Echo", 2));
        util::eventually("the panic is counted", || runtime.stats().workers[0].panics == 1);
    }

    fn an_old_id_never_reaches_the_task_in_its_reused_slot(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(1).backend(backend).build().unwrap();
        let old = runtime.spawn(Echo::default()).unwrap();
        runtime.send(old, Quit).unwrap();
        events_until(&runtime, |event| matches!(event, Event::Finished { .. }));
        let new = runtime.spawn(Echo::default()).unwrap();
        assert_eq!((new.worker(), new.slot()), (old.worker(), old.slot()), "the slot is reused");
        assert_eq!(new.generation(), old.generation() + 1);
        assert_ne!(new, old);
        match runtime.send(old, Ping(1)) {
            Err(SendError::TaskGone(Ping(1))) => {}
            other => panic!("expected TaskGone, got {other:?}"),
        }
        runtime.send(new, Ping(2)).unwrap();
        assert!(matches!(
            next(&runtime),
            Event::Output { task: MediaId::Echo(id), output: MediaOutput::Echo(EchoOut::Pong(2)) } if id == new
        ));
        assert!(runtime.next_event(std::time::Duration::from_millis(50)).is_none());
    }

    fn a_message_queued_before_its_task_ended_comes_back_undelivered(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(1).backend(backend).build().unwrap();
        let echo = runtime.spawn(Echo::default()).unwrap();
        // Hold the worker so both messages are queued while the task lives.
        let release = hold_worker(&runtime, 0);
        runtime.send(echo, Quit).unwrap();
        runtime.send(echo, Ping(7)).unwrap();
        drop(release);
        let events = events_until(&runtime, |event| matches!(event, Event::Undelivered { .. }));
        let Some(Event::Undelivered { task, input }) = events.last() else { unreachable!() };
        assert_eq!(*task, MediaId::Echo(echo));
        assert!(matches!(input, MediaInput::Echo(EchoInput::Ping(Ping(7)))), "{input:?}");
        assert!(events.iter().any(|event| matches!(event, Event::Finished { task } if *task == MediaId::Echo(echo))));
        util::eventually("the undelivered message is counted", || {
            runtime.stats().workers[0].undelivered == 1
        });
    }

    fn spawning_on_a_missing_worker_hands_the_task_back(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(1).backend(backend).build().unwrap();
        match runtime.spawn_on(5, Echo::announcing()) {
            Err(SpawnError::NoSuchWorker(task)) => assert!(task.announce_start),
            other => panic!("expected NoSuchWorker, got {other:?}"),
        }
    }
}
