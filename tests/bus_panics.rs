//! A panic in the application's code that the bus runs outside a handler —
//! an event's `Clone` or `Drop`, a channel's `Hash` or `Eq` — is contained,
//! on every backend: on the publishing (or subscribing) side it ends that
//! task (reported with the message); on a worker fanning out an event from
//! elsewhere, or undoing an ended task's subscriptions, it is counted and
//! what was being done is dropped. Every worker and every other task
//! carries on.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use sansio::Backend;
use sansio::prelude::*;
use util::next;

/// An event whose clones come from a shared budget; a clone past it panics.
#[derive(Debug)]
pub struct Bomb {
    clones_left: Arc<AtomicIsize>,
}

impl Clone for Bomb {
    fn clone(&self) -> Self {
        assert!(
            self.clones_left.fetch_sub(1, Ordering::SeqCst) > 0,
            "a Clone that panics"
        );
        Bomb {
            clones_left: Arc::clone(&self.clones_left),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Said {
    InEffect(usize),
    Pong(usize, u64),
}

pub struct Ping;

/// Subscribes to channel 1; counts what it receives.
#[sansio::task(output = Said, channel = u8, event = Bomb)]
pub struct Sub {
    worker: usize,
    received: u64,
}

#[sansio::task]
impl Sub {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.subscribe(1);
    }

    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<u8, Bomb>) {
        match input {
            BusInput::Subscribed { .. } => ctx.emit(Said::InEffect(self.worker)),
            BusInput::Event { .. } => self.received += 1,
            _ => {}
        }
    }

    #[on_input]
    fn ping(&mut self, ctx: &mut Ctx<Self>, _: Ping) {
        ctx.emit(Said::Pong(self.worker, self.received));
    }
}

/// Publishes the bomb it is given.
#[sansio::task(output = Said, channel = u8, event = Bomb)]
pub struct Pub;

#[sansio::task]
impl Pub {
    #[on_input]
    fn fire(&mut self, ctx: &mut Ctx<Self>, bomb: Bomb) {
        ctx.publish(1, bomb);
    }

    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, _: BusInput<u8, Bomb>) {}
}

#[sansio::worker(output = Said, channel = u8, event = Bomb)]
pub enum Field {
    Sub(Sub),
    Pub(Pub),
}

fn runtime(backend: Backend) -> Runtime<Field> {
    Runtime::<Field>::builder()
        .workers(2)
        .backend(backend)
        .build()
        .unwrap()
}

/// Subscribers on the given workers, once their subscriptions are in
/// effect everywhere.
fn subs(runtime: &Runtime<Field>, workers: &[usize]) -> Vec<TaskId<Sub>> {
    let ids = workers
        .iter()
        .map(|&worker| {
            runtime
                .spawn_on(
                    worker,
                    Sub {
                        worker,
                        received: 0,
                    },
                )
                .unwrap()
        })
        .collect();
    for _ in workers {
        assert!(matches!(
            next(runtime),
            Event::Output {
                output: Said::InEffect(_),
                ..
            }
        ));
    }
    ids
}

/// Every subscriber still answers, with how many events it received.
fn pongs(runtime: &Runtime<Field>, subs: &[TaskId<Sub>]) -> Vec<u64> {
    subs.iter()
        .map(|sub| {
            runtime.send(*sub, Ping).unwrap();
            match next(runtime) {
                Event::Output {
                    output: Said::Pong(_, received),
                    ..
                } => received,
                other => panic!("unexpected {other:?}"),
            }
        })
        .collect()
}

all_backend_tests! {
    fn a_panicking_clone_at_a_publish_ends_the_publisher_only(backend: Backend) {
        let runtime = runtime(backend);
        let subs = subs(&runtime, &[0, 1]);
        let publisher = runtime.spawn_on(0, Pub).unwrap();
        runtime.send(publisher, Bomb { clones_left: Arc::new(AtomicIsize::new(0)) }).unwrap();
        match next(&runtime) {
            Event::Panicked { task: FieldId::Pub(task), message } => {
                assert_eq!(task, publisher);
                assert!(message.contains("a Clone that panics"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(pongs(&runtime, &subs), [0, 0]);
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_panicking_clone_in_another_workers_fan_out_is_contained(backend: Backend) {
        let runtime = runtime(backend);
        // Two subscribers on worker 1, none on the publisher's worker 0.
        let subs = subs(&runtime, &[1, 1]);
        let publisher = runtime.spawn_on(0, Pub).unwrap();
        // The publisher's side clones twice (the event it keeps to report
        // an overflow, the one for worker 1); worker 1's fan-out's first
        // clone panics.
        runtime.send(publisher, Bomb { clones_left: Arc::new(AtomicIsize::new(2)) }).unwrap();
        util::eventually("the panic on worker 1 is counted", || {
            runtime.stats().workers[1].panics == 1
        });
        assert_eq!(pongs(&runtime, &subs), [0, 0]);
        // The publisher is unharmed and publishes again.
        runtime.send(publisher, Bomb { clones_left: Arc::new(AtomicIsize::new(10)) }).unwrap();
        util::eventually("the next event arrives", || pongs(&runtime, &subs) == [1, 1]);
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }
}

// ----------------------------------------------------------------------
// A channel whose `Hash` or `Eq` panics, an event whose `Drop` panics.

/// A channel: `Hash` panics for 13, `Eq` for 14 compared with 14 (a
/// lookup of another channel may compare it with 14 when their hashes meet
/// in the table, which must not panic: that made the test depend on the
/// table's random hash seed).
#[derive(Debug, Clone, Copy)]
pub struct Ch(pub u8);

impl std::hash::Hash for Ch {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        assert!(self.0 != 13, "a Hash that panics");
        self.0.hash(state);
    }
}

impl PartialEq for Ch {
    fn eq(&self, other: &Self) -> bool {
        assert!(!(self.0 == 14 && other.0 == 14), "an Eq that panics");
        self.0 == other.0
    }
}

impl Eq for Ch {}

/// An event whose first drop panics when armed (once: a second panic while
/// unwinding would abort the process, whatever the runtime did).
#[derive(Debug, Clone)]
pub struct Dud {
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Dud {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.armed.swap(false, Ordering::SeqCst) {
            panic!("a Drop that panics");
        }
    }
}

/// Commands for [`Listener`].
#[derive(Debug)]
pub enum Do {
    Subscribe(u8),
    Publish(u8, bool),
    Ping,
}

/// Subscribes and publishes as told; counts what it receives.
#[sansio::task(output = Said, channel = Ch, event = Dud)]
pub struct Listener {
    worker: usize,
    received: u64,
}

#[sansio::task]
impl Listener {
    #[on_input]
    fn command(&mut self, ctx: &mut Ctx<Self>, command: Do) {
        match command {
            Do::Subscribe(channel) => ctx.subscribe(Ch(channel)),
            Do::Publish(channel, armed) => {
                let armed = Arc::new(std::sync::atomic::AtomicBool::new(armed));
                ctx.publish(Ch(channel), Dud { armed });
            }
            Do::Ping => ctx.emit(Said::Pong(self.worker, self.received)),
        }
    }

    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Ch, Dud>) {
        match input {
            BusInput::Subscribed { .. } => ctx.emit(Said::InEffect(self.worker)),
            BusInput::Event { .. } => self.received += 1,
            _ => {}
        }
    }
}

#[sansio::worker(output = Said, channel = Ch, event = Dud)]
pub enum Field2 {
    Listener(Listener),
}

fn listeners(backend: Backend) -> (Runtime<Field2>, Vec<TaskId<Listener>>) {
    let runtime = Runtime::<Field2>::builder()
        .workers(2)
        .backend(backend)
        .build()
        .unwrap();
    let ids = [0, 1]
        .map(|worker| {
            runtime
                .spawn_on(
                    worker,
                    Listener {
                        worker,
                        received: 0,
                    },
                )
                .unwrap()
        })
        .to_vec();
    (runtime, ids)
}

/// How many events each listener has received; all must answer.
fn counts(runtime: &Runtime<Field2>, ids: &[TaskId<Listener>]) -> Vec<u64> {
    ids.iter()
        .map(|id| {
            runtime.send(*id, Do::Ping).unwrap();
            loop {
                match next(runtime) {
                    Event::Output {
                        output: Said::Pong(_, received),
                        ..
                    } => break received,
                    Event::Output {
                        output: Said::InEffect(_),
                        ..
                    } => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .collect()
}

/// Both workers still carry events: a subscription to channel 1 on each,
/// and a publish from listener 0 that both receive.
fn still_carries(runtime: &Runtime<Field2>, ids: &[TaskId<Listener>]) {
    for &id in ids {
        runtime.send(id, Do::Subscribe(1)).unwrap();
    }
    let mut in_effect = 0;
    util::events_until(runtime, |event| {
        in_effect += usize::from(matches!(
            event,
            Event::Output {
                output: Said::InEffect(_),
                ..
            }
        ));
        in_effect == ids.len()
    });
    let before = counts(runtime, ids);
    runtime.send(ids[0], Do::Publish(1, false)).unwrap();
    util::eventually("the event reaches both workers", || {
        counts(runtime, ids)
            .iter()
            .zip(&before)
            .all(|(now, was)| *now == was + 1)
    });
}

/// The tests for `Ch` and `Dud`, in their own module (one backend set per
/// module).
mod hash_eq_drop {
    use super::*;

    all_backend_tests! {
        fn a_channel_whose_hash_panics_ends_the_task_that_used_it(backend: Backend) {
            let (runtime, ids) = listeners(backend);
            runtime.send(ids[1], Do::Subscribe(13)).unwrap();
            match next(&runtime) {
                Event::Panicked { task: Field2Id::Listener(task), message } => {
                    assert_eq!(task, ids[1]);
                    assert!(message.contains("a Hash that panics"), "{message}");
                }
                other => panic!("unexpected {other:?}"),
            }
            // Both workers carry on: the listener on worker 0, and a new
            // one on worker 1.
            let fresh = runtime.spawn_on(1, Listener { worker: 1, received: 0 }).unwrap();
            still_carries(&runtime, &[ids[0], fresh]);
        }

        fn a_channel_whose_eq_panics_ends_the_task_that_used_it(backend: Backend) {
            let (runtime, ids) = listeners(backend);
            // Subscribing to 14 inserts it, then looks it up (comparing):
            // the subscriber ends; undoing its subscription as it goes, and
            // the other worker's acknowledgement, compare again, on the
            // worker, which counts each and carries on.
            runtime.send(ids[1], Do::Subscribe(14)).unwrap();
            match next(&runtime) {
                Event::Panicked { task: Field2Id::Listener(task), message } => {
                    assert_eq!(task, ids[1]);
                    assert!(message.contains("an Eq that panics"), "{message}");
                }
                other => panic!("unexpected {other:?}"),
            }
            util::eventually("the panics after the task's are counted on worker 1", || {
                runtime.stats().workers[1].panics >= 2
            });
            // Whatever task ran it ended; the workers carry on with new ones.
            let survivors: Vec<_> = [0, 1]
                .map(|worker| runtime.spawn_on(worker, Listener { worker, received: 0 }).unwrap())
                .to_vec();
            still_carries(&runtime, &survivors);
        }

        fn an_event_whose_drop_panics_is_contained(backend: Backend) {
            let (runtime, ids) = listeners(backend);
            still_carries(&runtime, &ids);
            // An armed event: its first drop panics, wherever that is.
            runtime.send(ids[0], Do::Publish(1, true)).unwrap();
            util::eventually("the panic is reported or counted", || {
                let counted: u64 = runtime.stats().workers.iter().map(|w| w.panics).sum();
                counted > 0
                    || matches!(runtime.try_next_event(), Some(Event::Panicked { .. }))
            });
            let survivors: Vec<_> = [0, 1]
                .map(|worker| runtime.spawn_on(worker, Listener { worker, received: 0 }).unwrap())
                .to_vec();
            still_carries(&runtime, &survivors);
        }
    }
}
