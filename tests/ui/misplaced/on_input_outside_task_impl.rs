use sansio::prelude::*;


pub struct Echo;

impl Echo {
    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Echo>, packet: Vec<u8>) {
        let _ = (ctx, packet);
    }
}

fn main() {}
