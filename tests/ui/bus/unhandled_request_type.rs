use sansio::prelude::*;

pub struct GetCount;

impl Request for GetCount {
    type Response = u64;
}

pub struct GetName;

impl Request for GetName {
    type Response = String;
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

#[sansio::worker]
pub enum Hub {
    Counter(Counter),
}

fn main() {
    let runtime = Runtime::<Hub>::builder().build().unwrap();
    let counter = runtime.spawn(Counter).unwrap();
    let _ = runtime.call(counter, GetName, std::time::Duration::from_secs(1));
}
