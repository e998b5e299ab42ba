//! The cost of the code `#[sansio::task]` generates: routing an input to its
//! handler and draining the output, and firing ticks and timers, measured
//! through `TaskHarness` (no threads, no I/O), so the figures are the floor
//! under every runtime path.
//!
//! ```text
//! cargo bench --bench task_dispatch
//! ```
//!
//! Two builds side by side (before and after a change), in alternating
//! rounds: build each with `cargo bench --bench task_dispatch --no-run`,
//! copy the executable it names away, then
//! `scripts/compare-criterion BEFORE_BIN AFTER_BIN dispatch/ 9 2`. Each
//! figure is one iteration: 1,000 inputs and their drain.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sansio::prelude::*;
use sansio::testing::TaskHarness;

pub struct Small(u64);
pub struct Large(Box<[u8; 1200]>);
pub struct Datagram(PacketBuf);
pub struct Query;

#[sansio::task(output = u64)]
#[derive(Default)]
pub struct Bench {
    sum: u64,
    ticks: u64,
}

#[sansio::task]
impl Bench {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.set_timer(ctx.now() + Duration::from_micros(300));
    }

    #[on_input]
    fn small(&mut self, ctx: &mut Ctx<Self>, input: Small) {
        self.sum = self.sum.wrapping_add(input.0);
        ctx.emit(self.sum);
    }

    #[on_input]
    fn large(&mut self, ctx: &mut Ctx<Self>, input: Large) {
        self.sum = self.sum.wrapping_add(u64::from(input.0[0]));
        ctx.emit(self.sum);
    }

    #[on_input]
    fn datagram(&mut self, ctx: &mut Ctx<Self>, Datagram(data): Datagram) {
        self.sum = self.sum.wrapping_add(data.len() as u64);
        ctx.emit(self.sum);
    }

    #[on_input]
    fn query(&mut self, ctx: &mut Ctx<Self>, _: Query) {
        ctx.emit(self.ticks);
    }

    #[on_tick(every = "1ms")]
    fn tick(&mut self, _ctx: &mut Ctx<Self>) {
        self.ticks += 1;
    }

    #[on_timer]
    fn timer(&mut self, ctx: &mut Ctx<Self>) {
        ctx.set_timer(ctx.now() + Duration::from_micros(300));
    }
}

/// Inputs delivered and drained in batches of this many.
const BATCH: u64 = 1_000;

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("small input + drain", |b| {
        let mut harness = TaskHarness::new(Bench::default());
        b.iter(|| {
            for n in 0..BATCH {
                harness.input(Small(black_box(n)));
            }
            black_box(harness.drain());
        });
    });
    group.bench_function("1200 B boxed input + drain", |b| {
        let mut harness = TaskHarness::new(Bench::default());
        b.iter_batched(
            || {
                (0..BATCH)
                    .map(|_| Large(Box::new([7; 1200])))
                    .collect::<Vec<_>>()
            },
            |inputs| {
                for input in inputs {
                    harness.input(input);
                }
                black_box(harness.drain());
            },
            BatchSize::SmallInput,
        );
    });
    // An input that carries a packet buffer, as a datagram does: the cost
    // of a pooled buffer coming in and going back, not only of small inputs.
    group.bench_function("64 B PacketBuf input + drain", |b| {
        let mut harness = TaskHarness::new(Bench::default());
        b.iter_batched(
            || {
                (0..BATCH)
                    .map(|_| Datagram(PacketBuf::copy_from(&[7; 64])))
                    .collect::<Vec<_>>()
            },
            |inputs| {
                for input in inputs {
                    harness.input(input);
                }
                black_box(harness.drain());
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn time(c: &mut Criterion) {
    let mut group = c.benchmark_group("virtual time");
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function("1 s advance: 1000 ticks + 3333 timer firings", |b| {
        let mut harness = TaskHarness::new(Bench::default());
        b.iter(|| {
            harness.advance(Duration::from_millis(BATCH));
        });
    });
    group.bench_function("1 ms steps: 1 tick + timer re-armed every 300us", |b| {
        let mut harness = TaskHarness::new(Bench::default());
        b.iter(|| {
            for _ in 0..BATCH {
                harness.advance(Duration::from_millis(1));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, dispatch, time);
criterion_main!(benches);
