use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_start]
    fn start(ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {}
