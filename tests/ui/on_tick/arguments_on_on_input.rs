use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input(priority = 1)]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: Vec<u8>) {
        let _ = (ctx, packet);
    }
}

fn main() {}
