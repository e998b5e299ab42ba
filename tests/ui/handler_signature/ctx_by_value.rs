use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_shutdown]
    fn stop(&mut self, ctx: Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {}
