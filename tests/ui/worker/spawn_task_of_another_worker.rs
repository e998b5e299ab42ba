use sansio::prelude::*;

#[sansio::task(output = u32)]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn number(&mut self, ctx: &mut Ctx<Self>, n: u32) {
        ctx.emit(n);
    }
}

#[sansio::task]
pub struct Stranger;

#[sansio::task]
impl Stranger {}

#[sansio::worker]
pub enum Media {
    Echo(Echo),
}

fn main() {
    let runtime = Runtime::<Media>::builder().build().unwrap();
    let _ = runtime.spawn(Stranger);
}
