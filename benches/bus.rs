//! The cross-task bus under load, on a real 2-worker runtime:
//!
//! - publish fan-out: one publisher on worker 0, 1, 8 or 1,000 subscribers
//!   spread over both workers; the time from a batch of publishes until every
//!   subscriber has every event (per event published);
//! - RPC round trip: `Runtime::call` from the controller to a task on another
//!   thread, and a task asking a task on the other worker (`Ctx::request`,
//!   answered by `#[on_request]`), per round trip.
//!
//! ```text
//! cargo bench --bench bus
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sansio::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Room;

#[derive(Debug, Clone)]
pub struct Frame(pub u64);

pub struct Ping;

impl Request for Ping {
    type Response = u64;
}

/// Counts the events it receives into a shared counter.
#[sansio::task(channel = Room, event = Frame)]
pub struct Subscriber {
    seen: Arc<AtomicU64>,
}

#[sansio::task]
impl Subscriber {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.subscribe(Room);
    }

    #[on_input]
    fn bus(&mut self, _ctx: &mut Ctx<Self>, input: BusInput<Room, Frame>) {
        if let BusInput::Event { .. } = input {
            self.seen.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[on_request]
    fn ping(&mut self, _ctx: &mut Ctx<Self>, _: Ping) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }
}

/// Publishes on command; asks a subscriber `n` times in a row on command.
#[sansio::task(output = u64, channel = Room, event = Frame)]
#[derive(Default)]
pub struct Driver {
    target: Option<TaskId<Subscriber>>,
    remaining: u64,
}

/// Publish this many frames.
pub struct Publish(pub u64);
/// Ask the subscriber this many times, one after the other.
pub struct Ask(pub TaskId<Subscriber>, pub u64);

#[sansio::task]
impl Driver {
    #[on_input]
    fn publish(&mut self, ctx: &mut Ctx<Self>, Publish(count): Publish) {
        for n in 0..count {
            ctx.publish(Room, Frame(n));
        }
    }

    #[on_input]
    fn ask(&mut self, ctx: &mut Ctx<Self>, Ask(target, count): Ask) {
        self.target = Some(target);
        self.remaining = count;
        ctx.request(target, Ping, Duration::from_secs(5));
    }

    #[on_input]
    fn answered(&mut self, ctx: &mut Ctx<Self>, reply: Reply<Ping>) {
        let seen = reply.result.expect("the subscriber answers");
        self.remaining -= 1;
        match (self.remaining, self.target) {
            (0, _) | (_, None) => ctx.emit(seen),
            (_, Some(target)) => {
                ctx.request(target, Ping, Duration::from_secs(5));
            }
        }
    }

    #[on_input]
    fn bus(&mut self, _ctx: &mut Ctx<Self>, input: BusInput<Room, Frame>) {
        if let BusInput::Overflow { .. } = input {
            panic!("the bench's bus inboxes are sized not to overflow");
        }
    }
}

#[sansio::worker(channel = Room, event = Frame)]
pub enum Bench {
    Subscriber(Subscriber),
    Driver(Driver),
}

fn runtime() -> Runtime<Bench> {
    Runtime::<Bench>::builder()
        .workers(2)
        .queue_capacity(1 << 16)
        .build()
        .expect("a runtime")
}

/// Subscribers over both workers, once every worker knows of them.
fn subscribers(
    runtime: &Runtime<Bench>,
    count: usize,
    seen: &Arc<AtomicU64>,
) -> Vec<TaskId<Subscriber>> {
    let ids: Vec<TaskId<Subscriber>> = (0..count)
        .map(|n| {
            let subscriber = Subscriber {
                seen: Arc::clone(seen),
            };
            runtime.spawn_on(n % 2, subscriber).expect("spawn")
        })
        .collect();
    // Each worker with subscribers is known to the other one.
    let want = count.min(2) as u64;
    let give_up = Instant::now() + Duration::from_secs(10);
    while runtime
        .stats()
        .workers
        .iter()
        .map(|worker| worker.bus_remote_interest)
        .sum::<u64>()
        != want
    {
        assert!(
            Instant::now() < give_up,
            "the subscriptions never propagated"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    ids
}

/// Waits until `counter` reaches `target`.
fn wait_for(counter: &AtomicU64, target: u64) {
    let give_up = Instant::now() + Duration::from_secs(30);
    while counter.load(Ordering::Relaxed) < target {
        assert!(Instant::now() < give_up, "events went missing");
        std::thread::yield_now();
    }
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish fan-out over 2 workers");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for subscribers_count in [1usize, 8, 1000] {
        let runtime = runtime();
        let seen = Arc::new(AtomicU64::new(0));
        subscribers(&runtime, subscribers_count, &seen);
        let driver = runtime.spawn_on(0, Driver::default()).expect("spawn");
        // Events per batch: enough to amortize the wait, few enough for the
        // inboxes at 1,000 subscribers.
        let batch = if subscribers_count >= 1000 { 10 } else { 200 };
        group.throughput(Throughput::Elements(batch));
        group.bench_function(format!("{subscribers_count} subscribers"), |b| {
            b.iter_custom(|iterations| {
                let start = Instant::now();
                for _ in 0..iterations {
                    let target = seen.load(Ordering::Relaxed) + batch * subscribers_count as u64;
                    runtime
                        .send_timeout(driver, Publish(batch), Duration::from_secs(5))
                        .expect("send");
                    wait_for(&seen, target);
                }
                start.elapsed()
            });
        });
        runtime.shutdown(Duration::from_secs(5)).expect("shut down");
    }
    group.finish();
}

fn rpc(c: &mut Criterion) {
    let mut group = c.benchmark_group("rpc round trip");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    let runtime = runtime();
    let seen = Arc::new(AtomicU64::new(0));
    let ids = subscribers(&runtime, 2, &seen);
    let driver = runtime.spawn_on(0, Driver::default()).expect("spawn");
    group.throughput(Throughput::Elements(1));
    group.bench_function("Runtime::call, controller to a task", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .call(ids[1], Ping, Duration::from_secs(5))
                    .expect("answer"),
            )
        });
    });
    const ROUNDS: u64 = 1000;
    group.throughput(Throughput::Elements(ROUNDS));
    group.bench_function("Ctx::request, task to a task on the other worker", |b| {
        b.iter(|| {
            runtime.send(driver, Ask(ids[1], ROUNDS)).expect("send");
            match runtime.next_event(Duration::from_secs(30)) {
                Some(Event::Output { .. }) => {}
                other => panic!("unexpected {other:?}"),
            }
        });
    });
    group.finish();
    runtime.shutdown(Duration::from_secs(5)).expect("shut down");
}

criterion_group!(benches, fan_out, rpc);
criterion_main!(benches);
