//! The workload of the instruction-count guard (`scripts/instructions`):
//! routing small inputs and `PacketBuf` inputs to their handlers and draining
//! the outputs, through the harness. Valgrind's callgrind counts the
//! instructions of `measured` alone, which is deterministic where time is
//! not, so a 2-core CI machine can tell a regression from a slow spell.

use std::hint::black_box;

use sansio::prelude::*;
use sansio::testing::TaskHarness;

/// A small input.
pub struct Small(u64);
/// An input that carries a packet buffer, as a datagram does.
pub struct Datagram(PacketBuf);

/// Sums what it gets and emits the sum.
#[sansio::task(output = u64)]
#[derive(Default)]
pub struct Sum {
    sum: u64,
}

#[sansio::task]
impl Sum {
    #[on_input]
    fn small(&mut self, ctx: &mut Ctx<Self>, Small(n): Small) {
        self.sum = self.sum.wrapping_add(n);
        ctx.emit(self.sum);
    }

    #[on_input]
    fn datagram(&mut self, ctx: &mut Ctx<Self>, Datagram(data): Datagram) {
        self.sum = self.sum.wrapping_add(data.len() as u64);
        ctx.emit(self.sum);
    }
}

/// Inputs per round, and rounds.
const BATCH: u64 = 1_000;
const ROUNDS: u64 = 10;

/// The counted call: the workload once more, after a first run warmed up.
#[inline(never)]
#[unsafe(no_mangle)]
pub extern "Rust" fn sansio_instructions_measured(harness: &mut TaskHarness<Sum>) -> u64 {
    workload(harness)
}

/// `ROUNDS` batches of small inputs and of datagrams.
#[inline(never)]
fn workload(harness: &mut TaskHarness<Sum>) -> u64 {
    let mut last = 0;
    for _ in 0..ROUNDS {
        for n in 0..BATCH {
            harness.input(Small(black_box(n)));
        }
        last ^= black_box(harness.drain()).last().copied().unwrap_or(0);
        for _ in 0..BATCH {
            harness.input(Datagram(PacketBuf::copy_from(black_box(&[7; 64]))));
        }
        last ^= black_box(harness.drain()).last().copied().unwrap_or(0);
    }
    last
}

fn main() {
    let mut harness = TaskHarness::new(Sum::default());
    // Once outside the count, so that the queues and the buffer pool have
    // grown to their size: the count is the steady state.
    workload(&mut harness);
    println!("{}", sansio_instructions_measured(&mut harness));
}
