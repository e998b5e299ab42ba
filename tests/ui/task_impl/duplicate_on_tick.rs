use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_tick(every = "10ms")]
    fn fast(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }

    #[on_tick(every = "1s")]
    fn slow(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {}
