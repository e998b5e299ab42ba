use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn packet(&mut self, packet: Vec<u8>, ctx: &mut Ctx<Self>) {
        let _ = (ctx, packet);
    }
}

fn main() {}
