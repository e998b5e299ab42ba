use sansio::prelude::*;

pub struct GetStats;

impl Request for GetStats {
    type Response = u64;
}

#[sansio::task]
pub struct Counter;

#[sansio::task]
impl Counter {
    #[on_request]
    fn stats(&mut self, _: &mut Ctx<Self>, _: GetStats) -> u64 {
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
        ctx.send_to(self.counter, GetStats);
    }
}

fn main() {}
