use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_timer]
    fn timer(&mut self, ctx: &mut Ctx<Self>, extra: u8, more: u16) {
        let _ = (ctx, extra, more);
    }
}

fn main() {}
