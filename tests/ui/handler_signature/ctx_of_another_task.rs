use sansio::prelude::*;


#[sansio::task]
pub struct Other;

#[sansio::task]
impl Other {}

#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Other>, packet: Vec<u8>) {
        let _ = (ctx, packet);
    }
}

fn main() {}
