use sansio::prelude::*;

#[sansio::task]
pub struct Session;

#[sansio::task]
impl Session {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        // No keyed `#[on_timer]` handler takes a `u32`.
        ctx.set_timer_for(7u32, ctx.now());
    }

    #[on_timer]
    fn timer(&mut self, _: &mut Ctx<Self>) {}
}

fn main() {}
