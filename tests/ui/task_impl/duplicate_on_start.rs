use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }

    #[on_start]
    fn also_start(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {}
