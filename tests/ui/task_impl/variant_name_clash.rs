use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn get_stats(&mut self, ctx: &mut Ctx<Self>, input: u8) {
        let _ = (ctx, input);
    }

    #[on_input]
    fn get__stats(&mut self, ctx: &mut Ctx<Self>, input: u16) {
        let _ = (ctx, input);
    }
}

fn main() {}
