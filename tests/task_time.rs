//! Ticks and timers under `TaskHarness`'s virtual time: ticks at their
//! interval without drift, the timer at its deadline, each hook at its own
//! instant and in order.

use std::time::{Duration, Instant};

use sansio::Task;
use sansio::prelude::*;
use sansio::testing::TaskHarness;

const MS: Duration = Duration::from_millis(1);

/// What a clock task saw: which hook ran, and `ctx.now()` when it did.
#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Seen {
    Tick(Instant),
    Timer(Instant),
}

/// Arms the timer for `after` from now.
pub struct ArmIn(pub Duration);
/// Arms the timer for an absolute deadline.
pub struct ArmAt(pub Instant);
/// Disarms the timer.
pub struct Cancel;

#[sansio::task(output = Seen)]
#[derive(Default)]
pub struct Clock {
    /// When set, `on_timer` re-arms the timer this long after it fired.
    every: Option<Duration>,
}

#[sansio::task]
impl Clock {
    #[on_input]
    fn arm_in(&mut self, ctx: &mut Ctx<Self>, ArmIn(after): ArmIn) {
        ctx.set_timer(ctx.now() + after);
    }

    #[on_input]
    fn arm_at(&mut self, ctx: &mut Ctx<Self>, ArmAt(deadline): ArmAt) {
        ctx.set_timer(deadline);
    }

    #[on_input]
    fn cancel(&mut self, ctx: &mut Ctx<Self>, _: Cancel) {
        ctx.cancel_timer();
    }

    #[on_tick(every = "10ms")]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(Seen::Tick(ctx.now()));
    }

    #[on_timer]
    fn timer(&mut self, ctx: &mut Ctx<Self>) {
        assert_eq!(ctx.timer(), None, "a fired timer is disarmed");
        ctx.emit(Seen::Timer(ctx.now()));
        if let Some(every) = self.every {
            ctx.set_timer(ctx.now() + every);
        }
    }
}

/// The instant the harness started the task.
fn epoch<T: Task>(harness: &TaskHarness<T>) -> Instant {
    harness.now() - harness.elapsed()
}

fn ticks(seen: &[Seen]) -> Vec<Instant> {
    seen.iter()
        .filter_map(|seen| match *seen {
            Seen::Tick(at) => Some(at),
            Seen::Timer(_) => None,
        })
        .collect()
}

#[test]
fn ticks_fire_at_every_interval_from_the_start() {
    let mut clock = TaskHarness::new(Clock::default());
    let start = epoch(&clock);
    clock.advance(9 * MS);
    assert!(
        clock.drain().is_empty(),
        "no tick before the first interval"
    );
    clock.advance(MS);
    assert_eq!(clock.drain(), [Seen::Tick(start + 10 * MS)]);
}

#[test]
fn ticks_do_not_drift_whatever_the_steps() {
    let mut clock = TaskHarness::new(Clock::default());
    let start = epoch(&clock);
    // 7 ms and 3 ms steps never land on a tick the same way twice; a tick
    // scheduled from "when the previous one ran" would drift.
    let mut seen = Vec::new();
    for step in [7, 3].iter().cycle().take(200) {
        clock.advance(*step * MS);
        seen.extend(clock.drain());
    }
    assert_eq!(clock.elapsed(), 1000 * MS);
    let expected: Vec<Instant> = (1..=100).map(|k| start + k * 10 * MS).collect();
    assert_eq!(ticks(&seen), expected);
}

#[test]
fn one_long_advance_fires_each_tick_at_its_own_instant() {
    let mut clock = TaskHarness::new(Clock::default());
    let start = epoch(&clock);
    clock.advance(Duration::from_secs(1) + 5 * MS);
    let expected: Vec<Instant> = (1..=100).map(|k| start + k * 10 * MS).collect();
    assert_eq!(ticks(&clock.drain()), expected);
    assert_eq!(
        clock.now(),
        start + 1005 * MS,
        "the clock ends at the target"
    );
}

#[test]
fn the_timer_fires_at_its_deadline() {
    let mut clock = TaskHarness::new(Clock::default());
    let start = epoch(&clock);
    clock.input(ArmIn(Duration::from_micros(4_500)));
    assert_eq!(clock.timer(), Some(start + Duration::from_micros(4_500)));
    clock.advance(4 * MS);
    assert!(clock.drain().is_empty());
    clock.advance(MS);
    assert_eq!(
        clock.drain(),
        [Seen::Timer(start + Duration::from_micros(4_500))]
    );
    assert_eq!(clock.timer(), None);
    clock.advance(3 * MS);
    assert!(clock.drain().is_empty(), "a timer fires once");
}

#[test]
fn setting_the_timer_again_replaces_the_deadline() {
    let mut clock = TaskHarness::new(Clock::default());
    let start = epoch(&clock);
    clock.input(ArmIn(3 * MS)).input(ArmIn(6 * MS));
    clock.advance(9 * MS);
    assert_eq!(clock.drain(), [Seen::Timer(start + 6 * MS)]);
}

#[test]
fn a_cancelled_timer_does_not_fire() {
    let mut clock = TaskHarness::new(Clock::default());
    clock.input(ArmIn(5 * MS)).input(Cancel);
    assert_eq!(clock.timer(), None);
    assert_eq!(clock.next_wakeup(), Some(epoch(&clock) + 10 * MS));
    clock.advance(9 * MS);
    assert!(clock.drain().is_empty());
}

#[test]
fn a_timer_rearmed_in_its_handler_fires_at_each_deadline() {
    let mut clock = TaskHarness::new(Clock {
        every: Some(Duration::from_micros(2_500)),
    });
    let start = epoch(&clock);
    clock.input(ArmIn(Duration::from_micros(2_500)));
    clock.advance(9 * MS);
    let fired: Vec<Seen> = clock.drain();
    let expected: Vec<Seen> = (1..=3)
        .map(|k| Seen::Timer(start + k * Duration::from_micros(2_500)))
        .collect();
    assert_eq!(fired, expected);
}

#[test]
fn timers_and_ticks_interleave_in_time_order() {
    let mut clock = TaskHarness::new(Clock::default());
    let start = epoch(&clock);
    clock.input(ArmIn(15 * MS));
    clock.advance(25 * MS);
    assert_eq!(
        clock.drain(),
        [
            Seen::Tick(start + 10 * MS),
            Seen::Timer(start + 15 * MS),
            Seen::Tick(start + 20 * MS),
        ]
    );
}

#[test]
fn at_one_instant_the_timer_fires_before_the_tick() {
    let mut clock = TaskHarness::new(Clock::default());
    let start = epoch(&clock);
    clock.input(ArmIn(10 * MS));
    clock.advance(10 * MS);
    assert_eq!(
        clock.drain(),
        [Seen::Timer(start + 10 * MS), Seen::Tick(start + 10 * MS)]
    );
}

#[test]
fn a_past_deadline_fires_now_and_time_never_goes_back() {
    let mut clock = TaskHarness::new(Clock::default());
    let start = epoch(&clock);
    clock.advance(5 * MS);
    clock.input(ArmAt(start + 2 * MS));
    assert_eq!(clock.next_wakeup(), Some(start + 2 * MS));
    clock.advance(Duration::ZERO);
    assert_eq!(clock.drain(), [Seen::Timer(start + 5 * MS)]);
    assert_eq!(clock.now(), start + 5 * MS);
}

#[test]
fn advance_to_next_jumps_to_each_wakeup() {
    let mut clock = TaskHarness::new(Clock::default());
    let start = epoch(&clock);
    clock.input(ArmIn(4 * MS));
    assert_eq!(clock.advance_to_next(), Some(start + 4 * MS));
    assert_eq!(clock.drain(), [Seen::Timer(start + 4 * MS)]);
    assert_eq!(clock.advance_to_next(), Some(start + 10 * MS));
    assert_eq!(clock.drain(), [Seen::Tick(start + 10 * MS)]);
    assert_eq!(clock.next_wakeup(), Some(start + 20 * MS));
}

#[test]
fn advance_to_next_without_anything_scheduled_leaves_the_clock() {
    #[sansio::task]
    struct Quiet;
    #[sansio::task]
    impl Quiet {}

    let mut quiet = TaskHarness::new(Quiet);
    let before = quiet.now();
    assert_eq!(quiet.advance_to_next(), None);
    assert_eq!(quiet.now(), before);
}

/// A task that re-arms its timer for the instant it is already at: on a
/// worker it would spin, so the harness stops the test instead of hanging.
#[sansio::task]
pub struct Spinner;

#[sansio::task]
impl Spinner {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.set_timer(ctx.now());
    }

    #[on_timer]
    fn again(&mut self, ctx: &mut Ctx<Self>) {
        ctx.set_timer(ctx.now());
    }
}

#[test]
#[should_panic(expected = "task `Spinner` re-armed its timer for the current instant")]
fn a_timer_that_never_lets_time_advance_is_reported() {
    TaskHarness::new(Spinner).advance(MS);
}
