use sansio::prelude::*;


#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn anything<T: Send + 'static>(&mut self, ctx: &mut Ctx<Self>, input: T) {
        let _ = (ctx, input);
    }
}

fn main() {}
