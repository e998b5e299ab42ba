use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn clone_of_me(&mut self, ctx: &mut Ctx<Self>, other: Box<Self>) {
        let _ = (ctx, other);
    }
}

fn main() {}
