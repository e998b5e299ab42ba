use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

pub struct Wrapper<T>(T);

#[sansio::task]
impl<T> Wrapper<T> {
    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: Vec<u8>) {
        let _ = (ctx, packet);
    }
}

fn main() {}
