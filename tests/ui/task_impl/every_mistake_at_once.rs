use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn packet(&self, ctx: &mut Ctx<Self>, packet: Vec<u8>) {
        let _ = (ctx, packet);
    }

    #[on_input]
    fn again(&mut self, ctx: &mut Ctx<Self>, packet: Vec<u8>) {
        let _ = (ctx, packet);
    }

    #[on_tick(every = "0ms")]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }

    #[on_timer(now)]
    fn timer(&mut self) {}
}

fn main() {}
