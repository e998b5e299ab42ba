//! The workloads of the instruction-count guard (`scripts/instructions`).
//! Valgrind's callgrind counts the instructions of one function in each,
//! which is deterministic where time is not, so a 2-core CI machine can tell
//! a regression from a slow spell:
//!
//! - `dispatch`: routing small inputs and `PacketBuf` inputs to their
//!   handlers and draining the outputs, through the harness; counted in
//!   `sansio_instructions_measured`.
//! - `worker`: a real runtime, one worker on the default backend that sleeps
//!   whenever it has nothing to do (no spin), answering 1,000 datagrams and
//!   1,000 controller messages sent one at a time, so that each is one
//!   wakeup and one turn of the worker loop; counted in the worker's loop
//!   (`WorkerLoop::serve`), so the controller's and the client's side are
//!   not. The turns taken are printed, so a count can be read per turn.

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use sansio::net::{UdpBound, UdpError, UdpOptions, UdpPacket};
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

/// Echoes datagrams and controller messages.
#[sansio::task(output = Answer)]
pub struct Echo;

/// A controller message, echoed as [`Answer::Pong`].
pub struct Ping(u64);

/// What the echo tells the controller.
#[derive(Debug)]
pub enum Answer {
    /// Its socket's address.
    Bound(std::io::Result<SocketAddr>),
    /// A ping's number.
    Pong(u64),
    /// A send failed.
    Failed(std::io::Error),
}

#[sansio::task]
impl Echo {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        ctx.udp_bind(loopback, UdpOptions::default());
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        ctx.emit(Answer::Bound(bound.result));
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
        ctx.udp_send(packet.socket, packet.from, packet.data);
    }

    #[on_input]
    fn failed(&mut self, ctx: &mut Ctx<Self>, error: UdpError) {
        ctx.emit(Answer::Failed(error.error));
    }

    #[on_input]
    fn ping(&mut self, ctx: &mut Ctx<Self>, Ping(n): Ping) {
        ctx.emit(Answer::Pong(n));
    }
}

#[sansio::worker]
pub enum Guard {
    Echo(Echo),
}

/// Round trips of each kind in the `worker` workload.
const ROUND_TRIPS: u64 = 1_000;

/// The `worker` workload; returns the worker's loop iterations.
fn worker() -> Result<u64, String> {
    let failed = |what: &'static str| move |error: std::io::Error| format!("{what}: {error}");
    let runtime = Runtime::<Guard>::builder()
        .workers(1)
        .spin_before_sleep(Duration::ZERO)
        .build()
        .map_err(|error| error.to_string())?;
    let echo = runtime.spawn(Echo).map_err(|error| error.to_string())?;
    // Under valgrind everything is ~50x slower: the waits are generous.
    let wait = Duration::from_secs(30);
    let next = || match runtime.next_event(wait) {
        Some(Event::Output {
            output: GuardOutput::Echo(answer),
            ..
        }) => Ok(answer),
        other => Err(format!("expected an answer, got {other:?}")),
    };
    let addr = match next()? {
        Answer::Bound(result) => result.map_err(failed("bind"))?,
        other => return Err(format!("expected the bound address, got {other:?}")),
    };
    let client = UdpSocket::bind("127.0.0.1:0").map_err(failed("bind the client"))?;
    client
        .set_read_timeout(Some(wait))
        .map_err(failed("set a timeout"))?;
    let mut buf = [0u8; 64];
    for n in 0..ROUND_TRIPS {
        client
            .send_to(&n.to_le_bytes(), addr)
            .map_err(failed("send"))?;
        let got = client.recv(&mut buf).map_err(failed("receive"))?;
        if buf[..got] != n.to_le_bytes() {
            return Err(format!("datagram {n} came back as {:?}", &buf[..got]));
        }
        runtime
            .send(echo, Ping(n))
            .map_err(|error| error.to_string())?;
        match next()? {
            Answer::Pong(m) if m == n => {}
            other => return Err(format!("expected pong {n}, got {other:?}")),
        }
    }
    let iterations = runtime.stats().workers[0].loop_iterations;
    runtime
        .shutdown(Duration::from_secs(30))
        .map_err(|error| error.to_string())?;
    Ok(iterations)
}

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("dispatch") => {
            let mut harness = TaskHarness::new(Sum::default());
            // Once outside the count, so that the queues and the buffer pool
            // have grown to their size: the count is the steady state.
            workload(&mut harness);
            println!("{}", sansio_instructions_measured(&mut harness));
            ExitCode::SUCCESS
        }
        Some("worker") => match worker() {
            Ok(iterations) => {
                println!("worker loop iterations: {iterations}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("instructions worker: {message}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: instructions dispatch|worker");
            ExitCode::FAILURE
        }
    }
}
