use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_tick(every = "1s")]
    fn tick(self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {}
