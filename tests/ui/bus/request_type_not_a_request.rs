use sansio::prelude::*;

pub struct GetCount;

#[sansio::task]
pub struct Counter;

#[sansio::task]
impl Counter {
    #[on_request]
    fn count(&mut self, _: &mut Ctx<Self>, _: GetCount) -> u64 {
        7
    }
}

fn main() {}
