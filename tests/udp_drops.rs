//! The datagrams the kernel drops for a full receive buffer are counted
//! (`udp_kernel_drops`, from `SO_RXQ_OVFL`), on every backend: a worker held
//! busy while a client floods its small-buffered socket loses datagrams, and
//! what it received plus what the kernel says it dropped is what was sent.

mod util;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use sansio::net::{UdpBound, UdpError, UdpOptions, UdpPacket};
use sansio::prelude::*;

#[derive(Debug)]
pub enum Heard {
    Bound(SocketAddr),
}

/// Holds the worker for a while (a test-only stand-in for a busy worker).
pub struct Hold(pub Duration);

/// Binds a socket with a small receive buffer and counts what arrives.
#[sansio::task(output = Heard)]
#[derive(Default)]
pub struct Sink;

#[sansio::task]
impl Sink {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let options = UdpOptions::default().recv_buffer(4096);
        ctx.udp_bind("127.0.0.1:0".parse().unwrap(), options);
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        ctx.emit(Heard::Bound(bound.result.unwrap()));
    }

    #[on_input]
    fn packet(&mut self, _: &mut Ctx<Self>, _: UdpPacket) {}

    #[on_input]
    fn error(&mut self, _: &mut Ctx<Self>, _: UdpError) {}

    #[on_input]
    fn hold(&mut self, _: &mut Ctx<Self>, Hold(time): Hold) {
        std::thread::sleep(time);
    }
}

#[sansio::worker(output = Heard)]
pub enum Drops {
    Sink(Sink),
}

all_backend_tests! {
    fn datagrams_the_kernel_drops_are_counted(backend: Backend) {
        let runtime = Runtime::<Drops>::builder().workers(1).backend(backend).build().unwrap();
        let sink = runtime.spawn(Sink).unwrap();
        let server = match util::next(&runtime) {
            Event::Output { output: Heard::Bound(addr), .. } => addr,
            other => panic!("unexpected {other:?}"),
        };
        runtime.send(sink, Hold(Duration::from_millis(300))).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent = 500;
        for n in 0..sent {
            client.send_to(&[n as u8; 200], server).unwrap();
        }
        // Every drop is counted, those after the last datagram to arrive
        // too (the count that comes with each datagram misses them): no
        // datagram arrives after the flood to bring it.
        util::eventually("every datagram received or counted as dropped", || {
            let worker = &runtime.stats().workers[0];
            worker.udp_received + worker.udp_kernel_drops == sent
        });
        let worker = &runtime.stats().workers[0];
        assert!(worker.udp_kernel_drops > 0, "nothing was dropped: the test proves nothing");
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }
}
