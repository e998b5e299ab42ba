//! Handlers written in the other accepted ways: qualified attribute paths,
//! fully qualified context types, patterns as parameters, `-> ()`, other
//! attributes kept on handlers, and a tuple struct with a where-free impl.

#![deny(warnings)]

use sansio::testing::TaskHarness;

pub struct Point {
    pub x: i32,
    pub y: i32,
}

#[sansio::task(output = i32)]
pub struct Sum(i32);

#[sansio::task]
impl Sum {
    #[sansio::on_input]
    fn point(&mut self, ctx: &mut sansio::Ctx<Self>, Point { x, y }: Point) -> () {
        self.0 += x + y;
        ctx.emit(self.0);
    }

    /// Doc comments and other attributes stay on the method.
    #[inline]
    #[sansio::on_input]
    fn scalar(&mut self, ctx: &mut sansio::Ctx<Sum>, _: ()) {
        ctx.emit(self.0);
    }

    #[sansio::on_shutdown]
    fn stop(&mut self, ctx: &mut sansio::Ctx<Self>) {
        ctx.finish();
    }
}

fn main() {
    let mut sum = TaskHarness::new(Sum(0));
    sum.input(Point { x: 1, y: 2 }).input(());
    assert_eq!(sum.drain(), [3, 3]);
}
