//! Every way to write a tick interval.

use std::time::Duration;

use sansio::Task;
use sansio::prelude::*;

macro_rules! ticking {
    ($name:ident, $($every:tt)*) => {
        #[sansio::task]
        pub struct $name;

        #[sansio::task]
        impl $name {
            #[on_tick($($every)*)]
            fn tick(&mut self, _: &mut Ctx<Self>) {}
        }
    };
}

ticking!(Nanos, every = "750ns");
ticking!(Micros, every = "250us");
ticking!(MicroSign, every = "250µs");
ticking!(Millis, every = "100ms");
ticking!(Spaced, every = "100 ms");
ticking!(Seconds, every = "2s");
ticking!(Fraction, every = "1.5s");
ticking!(Minutes, every = "1m");
ticking!(Hours, every = "1h");
ticking!(WholeMillis, every_ms = 20);

fn main() {
    assert_eq!(Nanos::TICK_INTERVAL, Some(Duration::from_nanos(750)));
    assert_eq!(Micros::TICK_INTERVAL, Some(Duration::from_micros(250)));
    assert_eq!(MicroSign::TICK_INTERVAL, Some(Duration::from_micros(250)));
    assert_eq!(Millis::TICK_INTERVAL, Some(Duration::from_millis(100)));
    assert_eq!(Spaced::TICK_INTERVAL, Some(Duration::from_millis(100)));
    assert_eq!(Seconds::TICK_INTERVAL, Some(Duration::from_secs(2)));
    assert_eq!(Fraction::TICK_INTERVAL, Some(Duration::from_millis(1500)));
    assert_eq!(Minutes::TICK_INTERVAL, Some(Duration::from_secs(60)));
    assert_eq!(Hours::TICK_INTERVAL, Some(Duration::from_secs(3600)));
    assert_eq!(WholeMillis::TICK_INTERVAL, Some(Duration::from_millis(20)));
}
