use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_tick]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {}
