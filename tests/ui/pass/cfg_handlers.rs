//! `#[cfg]` on handlers: a handler compiled out takes its input variant,
//! dispatch and conversions with it (its input type need not even exist);
//! one compiled in works as usual. Other attributes stay on the method.

#![deny(warnings)]

use std::time::Duration;

use sansio::prelude::*;
use sansio::testing::TaskHarness;

pub struct Question;

impl Request for Question {
    type Response = u64;
}

#[sansio::task(output = u64)]
#[derive(Default)]
pub struct Counter {
    started: bool,
    ticks: u64,
}

#[sansio::task]
impl Counter {
    #[cfg(any())]
    #[on_input]
    fn never(&mut self, ctx: &mut Ctx<Self>, input: does_not_exist::Type) {
        let _ = (ctx, input);
    }

    /// Doc comments and other attributes stay on the method.
    #[cfg(all())]
    #[allow(clippy::needless_pass_by_value)]
    #[cfg_attr(all(), inline)]
    #[track_caller]
    #[on_input]
    fn always(&mut self, ctx: &mut Ctx<Self>, input: u64) {
        ctx.emit(input * 2);
    }

    #[cfg(any())]
    #[on_request]
    fn never_asked(&mut self, _: &mut Ctx<Self>, _: does_not_exist::Request) -> u64 {
        0
    }

    #[must_use]
    #[inline]
    #[on_request]
    fn question(&mut self, _: &mut Ctx<Self>, _: Question) -> u64 {
        42
    }

    #[cfg(all())]
    #[on_start]
    fn start(&mut self, _: &mut Ctx<Self>) {
        self.started = true;
    }

    #[cfg(any())]
    #[on_tick(every = "1ms")]
    fn tick(&mut self, _: &mut Ctx<Self>) {
        self.ticks += 1;
    }

    #[cfg_attr(all(), cfg(any()))]
    #[on_shutdown]
    fn stay(&mut self, _: &mut Ctx<Self>) {}

    #[cfg(any())]
    #[on_timer]
    fn never_keyed(&mut self, _: &mut Ctx<Self>, _key: u32) {
        self.ticks += 100;
    }
}

fn main() {
    let mut counter = TaskHarness::new(Counter::default());
    counter.input(21u64);
    assert_eq!(counter.drain(), [42]);
    assert!(counter.task().started);

    // The tick handler is compiled out: no ticks.
    counter.advance(Duration::from_millis(10));
    assert_eq!(counter.task().ticks, 0);

    // So is the `#[on_shutdown]` that would keep the task: the default finishes it.
    counter.shutdown();
    assert!(counter.is_finished());
}
