//! `crate = path`: the generated code finds sansio through a re-export.

mod reexport {
    pub use ::sansio as inner;
}

use crate::reexport::inner::testing::TaskHarness;

#[sansio::task(crate = crate::reexport::inner, output = String)]
pub struct Greeter;

#[sansio::task(crate = crate::reexport::inner)]
impl Greeter {
    #[on_input]
    fn greet(&mut self, ctx: &mut reexport::inner::Ctx<Self>, name: &'static str) {
        ctx.emit(format!("hello, {name}"));
    }
}

fn main() {
    let mut greeter = TaskHarness::new(Greeter);
    greeter.input("sansio");
    assert_eq!(greeter.drain(), ["hello, sansio"]);
}
