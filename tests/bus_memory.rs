//! What one batch of inputs holds in memory is bounded by what one input
//! produces: 200 inputs that each publish 1,000 events of 1 KiB to a slow
//! subscriber on another worker (its bus inbox full, every event coming
//! back to the publisher as an overflow) raise the process's peak memory by
//! tens of megabytes at most, not by the 200 MB the whole batch would hold.
//! One test in its own binary: it reads the process's peak RSS.

mod util;

use std::time::Duration;

use sansio::Backend;
use sansio::prelude::*;

/// An event of 1 KiB.
#[derive(Debug, Clone)]
pub struct Kib(pub Vec<u8>);

/// Publish 1,000 events.
pub struct Burst;

#[sansio::task(channel = u8, event = Kib)]
#[derive(Default)]
pub struct Publisher {
    overflows: u64,
}

#[sansio::task]
impl Publisher {
    #[on_input]
    fn burst(&mut self, ctx: &mut Ctx<Self>, _: Burst) {
        for _ in 0..1000 {
            ctx.publish(1, Kib(vec![7; 1024]));
        }
    }

    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, input: BusInput<u8, Kib>) {
        if let BusInput::Overflow { .. } = input {
            self.overflows += 1;
        }
    }
}

/// Takes its time over each event.
#[sansio::task(channel = u8, event = Kib)]
pub struct Slow;

#[sansio::task]
impl Slow {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.subscribe(1);
    }

    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, input: BusInput<u8, Kib>) {
        if let BusInput::Event { .. } = input {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
}

#[sansio::worker(channel = u8, event = Kib)]
pub enum Fanout {
    Publisher(Publisher),
    Slow(Slow),
}

/// The process's peak resident memory, in bytes (`VmHWM`).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib * 1024
}

/// Resets the process's peak resident memory to its current size (Linux
/// 4.0 and later), so each backend's run is measured on its own.
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5")
        .expect("writing 5 to /proc/self/clear_refs resets VmHWM (Linux 4.0 or later)");
}

/// One test for every backend, run one after the other: the peak is
/// the process's, so runs side by side would measure each other.
#[test]
fn a_batch_of_bursting_inputs_holds_one_inputs_worth() {
    for backend in [
        Backend::Mio,
        Backend::Polling,
        Backend::BusyPoll,
        Backend::IoUring,
    ] {
        reset_peak_rss();
        one_batch_holds_one_inputs_worth(backend);
    }
}

fn one_batch_holds_one_inputs_worth(backend: Backend) {
    let runtime = Runtime::<Fanout>::builder()
        .workers(2)
        .backend(backend)
        .queue_capacity(1024)
        .build()
        .unwrap();
    runtime.spawn_on(1, Slow).unwrap();
    util::eventually("worker 0 knows of the subscriber", || {
        runtime.stats().workers[0].bus_remote_interest == 1
    });
    let publisher = runtime.spawn_on(0, Publisher::default()).unwrap();
    let before = peak_rss();
    // 200 inputs queued together: the worker takes them in one batch.
    for _ in 0..200 {
        runtime.send(publisher, Burst).unwrap();
    }
    util::eventually("every burst is published", || {
        runtime.stats().workers[0].bus_published >= 200_000
    });
    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew <= 50 << 20,
        "{backend:?}: peak memory grew by {} MB over one batch",
        grew >> 20
    );
    let overflow = runtime.stats().workers[0].bus_overflow;
    assert!(
        overflow > 100_000,
        "{backend:?}: the subscriber kept up ({overflow} overflows): the test proves nothing"
    );
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}
