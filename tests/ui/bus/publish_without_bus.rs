use sansio::prelude::*;

#[sansio::task]
pub struct Chat;

#[sansio::task]
impl Chat {
    #[on_input]
    fn said(&mut self, ctx: &mut Ctx<Self>, text: String) {
        ctx.publish(1u32, text);
    }
}

fn main() {}
