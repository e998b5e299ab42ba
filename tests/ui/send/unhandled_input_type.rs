use sansio::prelude::*;


use sansio::testing::TaskHarness;

pub struct GetStats;
pub struct Reset;

#[sansio::task(output = u64)]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn stats(&mut self, ctx: &mut Ctx<Self>, _: GetStats) {
        ctx.emit(0);
    }
}

fn main() {
    let mut echo = TaskHarness::new(Echo);
    echo.input(Reset);
}
