use sansio::prelude::*;

#[sansio::task]
pub struct Echo;

impl Echo {
    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: Vec<u8>) {
        let _ = (ctx, packet);
    }
}

#[sansio::worker]
pub enum Media {
    Echo(Echo),
}

fn main() {}
