use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: &[u8]) {
        let _ = (ctx, packet);
    }
}

fn main() {}
