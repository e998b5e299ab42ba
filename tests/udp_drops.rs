//! The datagrams the kernel drops for a full receive buffer are counted
//! (`udp_kernel_drops`, from `SO_RXQ_OVFL`), on every backend: a worker held
//! busy while a client floods its small-buffered socket loses datagrams, and
//! what it received plus what the kernel says it dropped is what was sent.
//! And on io_uring, a worker whose receive buffers all fill up loses
//! nothing to it: the datagrams wait in the socket
//! (`udp_recv_buffers_exhausted`).

mod util;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use sansio::Backend;
use sansio::net::{UdpBound, UdpError, UdpOptions, UdpPacket};
use sansio::prelude::*;

#[derive(Debug)]
pub enum Heard {
    Bound(SocketAddr),
}

/// Holds the worker for a while (a test-only stand-in for a busy worker).
pub struct Hold(pub Duration);

/// Binds a socket (by default with a small receive buffer) and counts what
/// arrives.
#[sansio::task(output = Heard)]
pub struct Sink {
    options: UdpOptions,
}

impl Default for Sink {
    fn default() -> Self {
        Sink {
            options: UdpOptions::default().recv_buffer(4096),
        }
    }
}

#[sansio::task]
impl Sink {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.udp_bind("127.0.0.1:0".parse().unwrap(), self.options.clone());
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
        let sink = runtime.spawn(Sink::default()).unwrap();
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

/// io_uring: the worker's receive buffers for the socket's size (32 of
/// them for the largest datagrams, 64 KiB) all fill up at once after it
/// was held; the receive waits for them to come back, and every datagram
/// arrives.
#[test]
fn an_io_uring_worker_out_of_receive_buffers_loses_nothing() {
    let backend = Backend::IoUring;
    if let Err(reason) = backend.check() {
        panic!("{reason}: this test needs io_uring (Linux 6.0 or later, not disabled)");
    }
    let runtime = Runtime::<Drops>::builder()
        .workers(1)
        .backend(backend)
        .build()
        .unwrap();
    let options = UdpOptions::default()
        .max_datagram(256 << 10)
        .recv_buffer(1 << 20);
    let sink = runtime.spawn(Sink { options }).unwrap();
    let server = match util::next(&runtime) {
        Event::Output {
            output: Heard::Bound(addr),
            ..
        } => addr,
        other => panic!("unexpected {other:?}"),
    };
    runtime
        .send(sink, Hold(Duration::from_millis(300)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 200;
    for n in 0..sent {
        client.send_to(&[n as u8; 64], server).unwrap();
    }
    util::eventually("every datagram received or counted as dropped", || {
        let worker = &runtime.stats().workers[0];
        worker.udp_received + worker.udp_kernel_drops == sent
    });
    let worker = &runtime.stats().workers[0];
    assert!(
        worker.udp_recv_buffers_exhausted > 0,
        "the buffers never ran out: the test proves nothing ({worker:?})"
    );
    // The socket's own buffer holds what the ring could not take.
    assert_eq!(worker.udp_kernel_drops, 0, "{worker:?}");
    assert_eq!(worker.udp_received, sent);
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}
