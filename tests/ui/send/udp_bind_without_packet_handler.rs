//! Binding a UDP socket requires handlers for what it delivers: a task that
//! would never see its datagrams does not compile.

use sansio::prelude::*;
use sansio::net::{UdpBound, UdpOptions};

#[sansio::task]
pub struct Listener;

#[sansio::task]
impl Listener {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.udp_bind("127.0.0.1:0".parse().unwrap(), UdpOptions::default());
    }

    #[on_input]
    fn bound(&mut self, _: &mut Ctx<Self>, _: UdpBound) {}
}

fn main() {}
