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

#[sansio::worker]
pub enum Hub {
    Counter(Counter),
}

fn main() {
    let runtime = Runtime::<Hub>::builder().build().unwrap();
    let counter = runtime.spawn(Counter).unwrap();
    let _ = runtime.send(counter, GetStats);
}
