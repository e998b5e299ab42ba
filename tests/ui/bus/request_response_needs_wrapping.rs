use sansio::prelude::*;

pub struct GetCount;

impl Request for GetCount {
    type Response = Option<u64>;
}

#[sansio::task]
pub struct Counter;

#[sansio::task]
impl Counter {
    #[on_request]
    fn get(&mut self, _: &mut Ctx<Self>, _: GetCount) -> u64 {
        7
    }
}

fn main() {}
