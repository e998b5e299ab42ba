use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_tick(every = "1s")]
    #[on_timer]
    fn wake(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {}
