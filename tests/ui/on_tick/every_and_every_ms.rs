use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_tick(every = "1s", every_ms = 1000)]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {}
