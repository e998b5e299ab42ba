use sansio::prelude::*;

#[sansio::task(output = u32)]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn number(&mut self, ctx: &mut Ctx<Self>, n: u32) {
        ctx.emit(n);
    }
}

#[sansio::worker]
pub enum Media {
    Echo { task: Echo },
}

fn main() {}
