//! A worker holding lifecycle events for a full event queue sleeps until the
//! controller takes one, on the backends that sleep: it does not wake every
//! millisecond to retry, and nothing it held is lost.

mod util;

use std::time::Duration;

use sansio::Backend;
use sansio::prelude::*;

/// Finishes as soon as it starts: one `Finished` event each.
#[sansio::task]
pub struct Brief;

#[sansio::task]
impl Brief {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.finish();
    }
}

#[sansio::worker]
pub enum Held {
    Brief(Brief),
}

/// A one-worker runtime whose event queue holds 4, after 20 tasks that end
/// at once: 16 `Finished` events wait on the worker.
fn holding(backend: Backend) -> Runtime<Held> {
    let runtime = Runtime::<Held>::builder()
        .workers(1)
        .backend(backend)
        .event_capacity(4)
        .build()
        .unwrap();
    for _ in 0..20 {
        runtime.spawn(Brief).unwrap();
    }
    util::eventually("every task has run", || {
        runtime.stats().workers[0]
            .tasks
            .iter()
            .map(|(_, n)| n)
            .sum::<usize>()
            == 0
    });
    runtime
}

/// Takes events until all 20 `Finished` have come.
fn all_finished(runtime: &Runtime<Held>) {
    let mut finished = 0;
    util::events_until(runtime, |event| {
        finished += usize::from(matches!(event, Event::Finished { .. }));
        finished == 20
    });
}

backend_tests! {
    fn held_events_wait_without_polling_and_all_arrive(backend: Backend) {
        let runtime = holding(backend);
        let before = runtime.stats().workers[0].loop_iterations;
        std::thread::sleep(Duration::from_millis(300));
        let woke = runtime.stats().workers[0].loop_iterations - before;
        assert!(woke < 30, "the worker woke {woke} times in 300 ms while the queue was full");
        // Taking events makes room: every held one arrives.
        all_finished(&runtime);
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }
}

/// A busy-poll worker spins by design (that is what it is for), so it is
/// not asked to sleep; what it held still all arrives.
#[test]
fn a_busy_poll_worker_delivers_every_held_event() {
    let runtime = holding(Backend::BusyPoll);
    std::thread::sleep(Duration::from_millis(50));
    all_finished(&runtime);
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}
