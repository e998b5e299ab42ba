use std::time::Duration;

use sansio::prelude::*;

pub struct GetCount;

impl Request for GetCount {
    type Response = u64;
}

#[sansio::task]
pub struct Counter;

#[sansio::task]
impl Counter {
    #[on_request]
    fn count(&mut self, _: &mut Ctx<Self>, _: GetCount) -> u64 {
        7
    }
}

#[sansio::task]
pub struct Asker {
    counter: TaskId<Counter>,
}

#[sansio::task]
impl Asker {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.request(self.counter, GetCount, Duration::from_secs(1));
    }
}

fn main() {}
