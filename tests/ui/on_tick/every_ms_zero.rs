use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_tick(every_ms = 0)]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {}
