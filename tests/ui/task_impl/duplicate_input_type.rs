use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: Vec<u8>) {
        let _ = (ctx, packet);
    }

    #[on_input]
    fn bytes(&mut self, ctx: &mut Ctx<Self>, bytes: Vec<u8>) {
        let _ = (ctx, bytes);
    }
}

fn main() {}
