//! The task of DESIGN.md's "user's view", without its network calls (a
//! `Datagram` input stands in for `UdpPacket`, and the reply is emitted
//! instead of sent): written the way the design shows it, it compiles, and
//! under the harness it dispatches each input to its handler, ticks at its
//! interval, fires its timer at the deadline, emits outputs in order and
//! finishes at shutdown.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sansio::prelude::*;
use sansio::testing::TaskHarness;

pub struct Datagram {
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

pub struct GetStats;

#[derive(Debug, PartialEq)]
pub enum EchoOut {
    Reply(SocketAddr, Vec<u8>),
    Echoed(u64),
    Ticked(Instant),
    Report(Instant, u64),
    Stopped(u64),
}

#[sansio::task(output = EchoOut)]
#[derive(Default)]
pub struct Echo {
    echoed: u64,
}

#[sansio::task]
impl Echo {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.set_timer(ctx.now() + Duration::from_millis(250));
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, p: Datagram) {
        self.echoed += 1;
        ctx.emit(EchoOut::Reply(p.from, p.data));
    }

    #[on_input]
    fn command(&mut self, ctx: &mut Ctx<Self>, _: GetStats) {
        ctx.emit(EchoOut::Echoed(self.echoed));
    }

    #[on_tick(every = "100ms")]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(EchoOut::Ticked(ctx.now()));
    }

    #[on_timer]
    fn report(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(EchoOut::Report(ctx.now(), self.echoed));
    }

    #[on_shutdown]
    fn stop(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(EchoOut::Stopped(self.echoed));
        ctx.finish();
    }
}

#[test]
fn the_design_echo_runs_under_the_harness() {
    let mut echo = TaskHarness::new(Echo::default());
    let start = echo.now();
    let ms = Duration::from_millis;
    let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();

    echo.input(Datagram {
        from: peer,
        data: b"one".to_vec(),
    })
    .input(GetStats)
    .input(Datagram {
        from: peer,
        data: b"two".to_vec(),
    });
    assert_eq!(
        echo.drain(),
        [
            EchoOut::Reply(peer, b"one".to_vec()),
            EchoOut::Echoed(1),
            EchoOut::Reply(peer, b"two".to_vec()),
        ]
    );

    echo.advance(ms(300));
    assert_eq!(
        echo.drain(),
        [
            EchoOut::Ticked(start + ms(100)),
            EchoOut::Ticked(start + ms(200)),
            EchoOut::Report(start + ms(250), 2),
            EchoOut::Ticked(start + ms(300)),
        ]
    );

    echo.shutdown();
    assert!(echo.is_finished());
    assert_eq!(echo.drain(), [EchoOut::Stopped(2)]);
}
