//! `Action` moves by value through every handler's queue: its size is part
//! of the per-input cost, so it must not grow unnoticed. 152 bytes is its
//! size since socket ids carry their worker (16 bytes each); grouping the
//! variants into `NetAction` and `BusAction` kept it there.

use sansio::Action;
use sansio::prelude::*;

#[sansio::task(output = u64)]
pub struct Small;

#[sansio::task]
impl Small {
    #[on_input]
    fn input(&mut self, ctx: &mut Ctx<Self>, n: u64) {
        ctx.emit(n);
    }
}

#[test]
fn an_action_of_a_task_with_a_small_output_is_at_most_152_bytes() {
    let size = size_of::<Action<Small>>();
    println!("size_of::<Action<Small>>() = {size}");
    assert!(size <= 152, "Action<Small> is {size} bytes");
}
