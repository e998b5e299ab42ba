//! `Action` moves by value through the queue of every task that sends on a
//! socket or the bus: its size is part of the per-input cost, so it must not
//! grow unnoticed. 96 bytes is its largest common variant, a datagram to
//! send (socket id 16, address 32, buffer 40); the options of the rare
//! calls that open a socket are boxed so as not to make it larger. (A
//! task's outputs wait in a queue of their own type: see `task/queue.rs`.)

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
fn an_action_of_a_task_with_a_small_output_is_at_most_96_bytes() {
    let size = size_of::<Action<Small>>();
    println!("size_of::<Action<Small>>() = {size}");
    assert!(size <= 96, "Action<Small> is {size} bytes");
}
