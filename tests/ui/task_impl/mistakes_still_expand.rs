use sansio::prelude::*;


use sansio::testing::TaskHarness;

#[sansio::task(output = u32)]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn number(&mut self, ctx: &mut Ctx<Self>, n: u32) {
        ctx.emit(n);
    }

    // The one mistake: the rest of the program still type-checks against the
    // generated `EchoInput` and `Task` impl, so this is the only error.
    #[on_tick(every = "soon")]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        let _ = ctx;
    }
}

fn main() {
    let input: EchoInput = 7u32.into();
    let mut echo = TaskHarness::new(Echo);
    echo.input(input).input(8u32);
    let _: Vec<u32> = echo.drain();
}
