//! Keyed timers (`ctx.set_timer_for(key, deadline)` with a keyed
//! `#[on_timer]` handler) next to the single timer, and a tick interval set
//! at run time (`ctx.set_tick`): under the harness's virtual time, and on
//! real workers on every backend.

mod util;

use std::time::{Duration, Instant};

use sansio::prelude::*;
use sansio::testing::TaskHarness;
use util::next;

const MS: Duration = Duration::from_millis(1);

/// What a `Timeouts` task saw: which timer fired, and `ctx.now()` then.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Fired {
    Pong,
    Spun(u64),
    Plain(Instant),
    Keyed(u32, Instant),
    Tick(Instant),
}

/// Arms the timer of a key for `after` from now.
pub struct ArmKey(pub u32, pub Duration);
/// Disarms the timer of a key.
pub struct CancelKey(pub u32);
/// Arms the single timer for `after` from now.
pub struct ArmPlain(pub Duration);
/// Re-arm key 0 for the current instant every time it fires, until `Stop`.
pub struct Spin;
/// Stop spinning; report how many times key 0 fired.
pub struct Stop;
/// Answered at once with `Fired::Pong`.
pub struct Ping;

/// One plain timer, timers keyed by `u32`, and a tick whose interval comes
/// from the constructor.
#[sansio::task(output = Fired)]
pub struct Timeouts {
    tick: Option<Duration>,
    spinning: Option<u64>,
}

#[sansio::task]
impl Timeouts {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        if let Some(every) = self.tick {
            ctx.set_tick(every);
        }
    }

    #[on_input]
    fn arm_key(&mut self, ctx: &mut Ctx<Self>, ArmKey(key, after): ArmKey) {
        ctx.set_timer_for(key, ctx.now() + after);
    }

    #[on_input]
    fn cancel_key(&mut self, ctx: &mut Ctx<Self>, CancelKey(key): CancelKey) {
        ctx.cancel_timer_for(&key);
    }

    #[on_input]
    fn arm_plain(&mut self, ctx: &mut Ctx<Self>, ArmPlain(after): ArmPlain) {
        ctx.set_timer(ctx.now() + after);
    }

    #[on_timer]
    fn plain(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(Fired::Plain(ctx.now()));
    }

    #[on_timer]
    fn keyed(&mut self, ctx: &mut Ctx<Self>, key: u32) {
        assert_eq!(ctx.timer_for(&key), None, "a fired keyed timer is disarmed");
        if let Some(spun) = &mut self.spinning {
            *spun += 1;
            ctx.set_timer_for(key, ctx.now());
            return;
        }
        ctx.emit(Fired::Keyed(key, ctx.now()));
    }

    #[on_input]
    fn spin(&mut self, ctx: &mut Ctx<Self>, _: Spin) {
        self.spinning = Some(0);
        ctx.set_timer_for(0, ctx.now());
    }

    #[on_input]
    fn stop(&mut self, ctx: &mut Ctx<Self>, _: Stop) {
        ctx.cancel_timer_for(&0);
        ctx.emit(Fired::Spun(self.spinning.take().unwrap_or(0)));
    }

    #[on_input]
    fn ping(&mut self, ctx: &mut Ctx<Self>, _: Ping) {
        ctx.emit(Fired::Pong);
    }

    // The attribute's interval is the default; the constructor's replaces it.
    #[on_tick(every = "1h")]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(Fired::Tick(ctx.now()));
    }
}

#[sansio::worker(output = Fired)]
pub enum Clocks {
    Timeouts(Timeouts),
}

#[test]
fn keyed_timers_fire_each_at_its_deadline_after_the_plain_timer() {
    let mut harness = TaskHarness::new(Timeouts {
        tick: None,
        spinning: None,
    });
    let start = harness.now();
    harness
        .input(ArmKey(1, 30 * MS))
        .input(ArmKey(2, 10 * MS))
        .input(ArmKey(3, 10 * MS))
        .input(ArmPlain(10 * MS))
        .input(ArmKey(4, 20 * MS))
        // Re-arming a key replaces its deadline; cancelling removes it.
        .input(ArmKey(4, 25 * MS))
        .input(CancelKey(1));
    harness.advance(50 * MS);
    assert_eq!(
        harness.drain(),
        [
            Fired::Plain(start + 10 * MS),
            Fired::Keyed(2, start + 10 * MS),
            Fired::Keyed(3, start + 10 * MS),
            Fired::Keyed(4, start + 25 * MS),
        ]
    );
    assert_eq!(
        harness.next_wakeup(),
        Some(start + Duration::from_secs(3600))
    );
}

#[test]
fn a_tick_interval_from_the_constructor_replaces_the_attributes() {
    let mut harness = TaskHarness::new(Timeouts {
        tick: Some(10 * MS),
        spinning: None,
    });
    let start = harness.now();
    harness.advance(45 * MS);
    let expected: Vec<Fired> = (1..=4).map(|n| Fired::Tick(start + n * 10 * MS)).collect();
    assert_eq!(harness.drain(), expected);
}

all_backend_tests! {
    fn a_thousand_keyed_timers_fire_in_deadline_order_on_a_worker(backend: Backend) {
        let runtime = Runtime::<Clocks>::builder().workers(1).backend(backend).build().unwrap();
        let task = runtime.spawn(Timeouts { tick: None, spinning: None }).unwrap();
        // Deadlines 201..=250 ms away, 20 keys each, set in scrambled order;
        // every other key of the first 10 ms is cancelled. The 200 ms are
        // for the 1,500 messages to arrive before the first deadline, on a
        // loaded machine too (the cancels must come before their timers).
        let keys: Vec<u32> = (0..1000).map(|n| (n * 7919) % 1000).collect();
        for &key in &keys {
            runtime.send(task, ArmKey(key, (201 + key % 50) * MS)).unwrap();
        }
        let cancelled: Vec<u32> = keys.iter().copied().filter(|k| k % 50 < 10 && k % 2 == 0).collect();
        for &key in &cancelled {
            runtime.send(task, CancelKey(key)).unwrap();
        }
        let mut fired = Vec::new();
        while fired.len() < 1000 - cancelled.len() {
            match next(&runtime) {
                Event::Output { output: Fired::Keyed(key, at), .. } => fired.push((key, at)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(fired.windows(2).all(|pair| pair[0].1 <= pair[1].1), "in deadline order");
        let mut keys_fired: Vec<u32> = fired.iter().map(|(key, _)| *key).collect();
        keys_fired.sort_unstable();
        let mut expected: Vec<u32> = (0..1000).filter(|k| !cancelled.contains(k)).collect();
        expected.sort_unstable();
        assert_eq!(keys_fired, expected, "each armed key once, no cancelled one");
        assert!(runtime.next_event(100 * MS).is_none(), "nothing fires twice");
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_tick_interval_set_at_run_time_ticks_on_a_worker(backend: Backend) {
        let runtime = Runtime::<Clocks>::builder().workers(1).backend(backend).build().unwrap();
        runtime.spawn(Timeouts { tick: Some(20 * MS), spinning: None }).unwrap();
        let ticks: Vec<Instant> = (0..5)
            .map(|_| match next(&runtime) {
                Event::Output { output: Fired::Tick(at), .. } => at,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        // On a schedule of 20 ms (the attribute says an hour): a late tick
        // may leave a shorter gap to the next one on the schedule (one 14 ms
        // late on a loaded machine left 9.4 ms), but never two ticks for one
        // point, so ticks two apart are on points 40 ms apart: at least 30 ms
        // even with the first of them 10 ms late. Five within a second even
        // when loaded.
        assert!(ticks.windows(3).all(|three| three[2] - three[0] >= 30 * MS), "{ticks:?}");
        assert!(ticks[4] - ticks[0] < Duration::from_secs(1), "{ticks:?}");
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_timer_re_armed_for_now_does_not_hold_the_worker(backend: Backend) {
        let runtime = Runtime::<Clocks>::builder().workers(1).backend(backend).build().unwrap();
        let task = runtime.spawn(Timeouts { tick: None, spinning: None }).unwrap();
        runtime.send(task, Spin).unwrap();
        // The worker keeps serving its inbox while the timer fires turn
        // after turn.
        for _ in 0..3 {
            runtime.send(task, Ping).unwrap();
            match next(&runtime) {
                Event::Output { output: Fired::Pong, .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        runtime.send(task, Stop).unwrap();
        match next(&runtime) {
            Event::Output { output: Fired::Spun(times), .. } => assert!(times > 0),
            other => panic!("unexpected {other:?}"),
        }
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }
}
