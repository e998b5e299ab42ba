//! Ticks and timers on real workers, on every backend.
//!
//! The documented tolerance: a tick or timer never fires before its
//! deadline, and on an idle machine fires within about a millisecond after
//! it (mio rounds its wait up to whole milliseconds). These tests allow
//! [`LATE`], so that they hold on a loaded 2-core CI machine; a runtime that
//! drifted, or polled on a fixed cycle longer than that, would still fail.

mod util;

use std::time::{Duration, Instant};

use sansio::prelude::*;
use util::next;
use util::tasks::{Arm, Echo, EchoOut, Media, MediaId, MediaOutput, Ticker};

/// How late a tick or timer may be in these tests.
const LATE: Duration = Duration::from_millis(20);
/// `Ticker`'s interval: more than twice [`LATE`], so that a tick late by up
/// to `LATE` is never mistaken for a skipped one when ticks are counted.
const EVERY: Duration = Duration::from_millis(50);

all_backend_tests! {
    fn ticks_keep_to_their_schedule_without_drift(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(1).backend(backend).build().unwrap();
        runtime.spawn(Ticker).unwrap();
        let ticks: Vec<Instant> = (0..30)
            .map(|_| match next(&runtime) {
                Event::Output { task: MediaId::Ticker(_), output: MediaOutput::Ticker(at) } => at,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // Count the schedule points from the first tick (a tick the worker
        // was too late for is skipped, not replayed): every tick must sit
        // within LATE of its point. Drift would grow without bound.
        let mut point = 0u32;
        for pair in ticks.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap > Duration::ZERO, "ticks come in order, once each");
            point += ((gap.as_secs_f64() / EVERY.as_secs_f64()).round() as u32).max(1);
            let on_schedule = ticks[0] + EVERY * point;
            let off = if pair[1] > on_schedule { pair[1] - on_schedule } else { on_schedule - pair[1] };
            assert!(off <= LATE, "tick {point} is {off:?} off its schedule");
        }
        // A tick is skipped only when the worker was later than EVERY, which
        // is more than LATE: none may be missing.
        assert_eq!(point, 29, "ticks were skipped: {point} intervals for 30 ticks");
    }

    fn timers_fire_at_their_deadline(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(1).backend(backend).build().unwrap();
        let echo = runtime.spawn(Echo::default()).unwrap();
        for after_ms in [30, 5, 0, 12] {
            let after = Duration::from_millis(after_ms);
            let sent = Instant::now();
            runtime.send(echo, Arm(after)).unwrap();
            match next(&runtime) {
                Event::Output { output: MediaOutput::Echo(EchoOut::Timer { deadline, now }), .. } => {
                    assert!(now >= deadline, "fired {:?} early", deadline - now);
                    assert!(now - deadline <= LATE, "fired {:?} late", now - deadline);
                    assert!(Instant::now() >= sent + after, "reported before the deadline");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn rearming_earlier_and_later_fires_once_at_the_last_deadline(backend: Backend) {
        let runtime = Runtime::<Media>::builder().workers(1).backend(backend).build().unwrap();
        let echo = runtime.spawn(Echo::default()).unwrap();
        // Three re-arms in a row: 200 ms, then 10 ms, then 40 ms. Only the
        // last deadline stands; the heap entries of the others are skipped.
        runtime.send(echo, Arm(Duration::from_millis(200))).unwrap();
        runtime.send(echo, Arm(Duration::from_millis(10))).unwrap();
        let sent = Instant::now();
        runtime.send(echo, Arm(Duration::from_millis(40))).unwrap();
        match next(&runtime) {
            Event::Output { output: MediaOutput::Echo(EchoOut::Timer { deadline, now }), .. } => {
                assert!(now >= deadline);
                assert!(deadline >= sent + Duration::from_millis(39), "an earlier deadline fired");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            runtime.next_event(Duration::from_millis(300)).is_none(),
            "the timer fired twice"
        );
    }
}
