//! A panic in the application's code that the bus runs outside a handler —
//! an event's `Clone` during fan-out — is contained, on every backend: on the
//! publishing side it ends the publishing task (reported with the message);
//! on a worker fanning out an event from elsewhere, the event is dropped and
//! counted. Every worker and every other task carries on.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

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
