//! Generated code reaches sansio only through `__private` (an invariant in
//! `ARCHITECTURE.md`): this crate depends on sansio under another name,
//! `engine`, and gives the macros (`crate = crate::shim`) a module that holds
//! `__private` and nothing else. A generated path to anything but
//! `__private`, or to `::sansio`, fails to compile here; the test suite
//! builds and runs this crate (`cargo test --workspace`).
//!
//! The tasks use every kind of handler and the bus, so that every part of
//! the expansions is built.

use std::time::Duration;

use engine::prelude::*;

/// The only way in the macros are given.
mod shim {
    pub use ::engine::__private;
}

/// A bus channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Room(pub u32);

/// A bus event.
#[derive(Debug, Clone)]
pub struct Frame(pub u64);

/// Asks a `Doubler` how many numbers it doubled.
#[derive(Debug)]
pub struct Count;

impl Request for Count {
    type Response = u64;
}

/// Doubles numbers, publishes each result, and uses every kind of handler.
#[engine::task(crate = crate::shim, output = u64, channel = Room, event = Frame)]
#[derive(Debug, Default)]
pub struct Doubler {
    doubled: u64,
    ticks: u64,
}

#[engine::task(crate = crate::shim)]
impl Doubler {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.subscribe(Room(1));
    }

    #[on_input]
    fn double(&mut self, ctx: &mut Ctx<Self>, n: u64) {
        self.doubled += 1;
        ctx.emit(n * 2);
        ctx.publish(Room(1), Frame(n * 2));
    }

    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, input: BusInput<Room, Frame>) {
        let _ = input;
    }

    #[on_input]
    fn later(&mut self, ctx: &mut Ctx<Self>, after: Duration) {
        ctx.set_timer(ctx.now() + after);
        ctx.set_timer_for(7u8, ctx.now() + after);
    }

    #[on_request]
    fn count(&mut self, _: &mut Ctx<Self>, _: Count) -> u64 {
        self.doubled
    }

    #[on_tick(every = "5ms")]
    fn tick(&mut self, _: &mut Ctx<Self>) {
        self.ticks += 1;
    }

    #[on_timer]
    fn timer(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(0);
    }

    #[on_timer]
    fn keyed(&mut self, ctx: &mut Ctx<Self>, key: u8) {
        ctx.emit(u64::from(key));
    }

    #[on_shutdown]
    fn shutdown(&mut self, ctx: &mut Ctx<Self>) {
        ctx.finish();
    }
}

/// A task without a bus or handlers, on the same worker.
#[engine::task(crate = crate::shim)]
#[derive(Debug)]
pub struct Quiet;

#[engine::task(crate = crate::shim)]
impl Quiet {}

/// The worker kind.
#[engine::worker(crate = crate::shim, channel = Room, event = Frame)]
pub enum Shop {
    /// Doubles.
    Doubler(Doubler),
    /// Does nothing.
    Quiet(Quiet),
}

#[cfg(test)]
mod tests {
    use engine::testing::TaskHarness;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(10);

    #[test]
    fn a_task_built_through_private_only_runs_under_the_harness() {
        let mut doubler = TaskHarness::new(Doubler::default());
        doubler.input(21u64);
        assert_eq!(doubler.drain(), [42]);
        assert_eq!(doubler.request(Count), 1);
    }

    #[test]
    fn a_worker_built_through_private_only_runs() {
        let runtime = Runtime::<Shop>::builder().workers(1).build().unwrap();
        let doubler = runtime.spawn(Doubler::default()).unwrap();
        runtime.spawn(Quiet).unwrap();
        runtime.send(doubler, 21u64).unwrap();
        match runtime.next_event(PATIENCE) {
            Some(Event::Output {
                output: ShopOutput::Doubler(42),
                ..
            }) => {}
            other => panic!("expected 42, got {other:?}"),
        }
        runtime.send(doubler, Duration::from_millis(1)).unwrap();
        let mut fired = Vec::new();
        while fired.len() < 2 {
            match runtime.next_event(PATIENCE) {
                Some(Event::Output {
                    output: ShopOutput::Doubler(n),
                    ..
                }) => fired.push(n),
                other => panic!("expected the timers, got {other:?}"),
            }
        }
        fired.sort_unstable();
        assert_eq!(fired, [0, 7]);
        assert_eq!(runtime.call(doubler, Count, PATIENCE), Ok(1));
        runtime.shutdown(PATIENCE).unwrap();
    }
}
