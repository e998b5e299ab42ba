use sansio::prelude::*;

#[sansio::task]
pub struct Session;

#[sansio::task]
impl Session {
    #[on_timer]
    fn plain(&mut self, _: &mut Ctx<Self>) {}

    #[on_timer]
    fn by_peer(&mut self, _: &mut Ctx<Self>, _peer: u32) {}

    #[on_timer]
    fn by_name(&mut self, _: &mut Ctx<Self>, _name: String) {}
}

fn main() {}
