//! A worker holding lifecycle events for a full event queue sleeps until the
//! controller takes one, on the backends that sleep: it does not wake every
//! millisecond to retry, and nothing it held is lost.

mod util;

use std::time::Duration;

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

backend_tests! {
    fn held_events_wait_without_polling_and_all_arrive(backend: Backend) {
        let runtime = Runtime::<Held>::builder()
            .workers(1)
            .backend(backend)
            .event_capacity(4)
            .build()
            .unwrap();
        for _ in 0..20 {
            runtime.spawn(Brief).unwrap();
        }
        // 4 events fill the queue; the other 16 are held by the worker.
        util::eventually("every task has run", || {
            runtime.stats().workers[0].tasks.iter().map(|(_, n)| n).sum::<usize>() == 0
        });
        let before = runtime.stats().workers[0].loop_iterations;
        std::thread::sleep(Duration::from_millis(300));
        let woke = runtime.stats().workers[0].loop_iterations - before;
        assert!(woke < 30, "the worker woke {woke} times in 300 ms while the queue was full");
        // Taking events makes room: every held one arrives.
        let mut finished = 0;
        util::events_until(&runtime, |event| {
            finished += usize::from(matches!(event, Event::Finished { .. }));
            finished == 20
        });
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }
}

/// A busy-poll worker spins by design (that is what it is for), so it is
/// not asked to sleep; what it held still all arrives.
#[test]
fn a_busy_poll_worker_delivers_every_held_event() {
    let runtime = Runtime::<Held>::builder()
        .workers(1)
        .backend(Backend::BusyPoll)
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
    std::thread::sleep(Duration::from_millis(50));
    let mut finished = 0;
    util::events_until(&runtime, |event| {
        finished += usize::from(matches!(event, Event::Finished { .. }));
        finished == 20
    });
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}
