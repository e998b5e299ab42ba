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
    fn count(&mut self, ctx: &mut Ctx<Self>, _: GetCount) {
        let _ = ctx;
    }
}

fn main() {}
