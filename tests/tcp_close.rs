//! Graceful TCP closes are bounded, on every backend: fifty connections to
//! peers that never read, closed at once, each give up at
//! `TcpOptions::close_timeout`, reset, free their descriptor and are
//! counted (`tcp_closes_aborted`).

mod util;

use std::net::SocketAddr;
use std::time::Duration;

use sansio::net::{TcpConnId, TcpEvent, TcpOptions};
use sansio::prelude::*;

/// Accepts `peers` connections, queues `bytes` on each, then closes them all
/// gracefully at once.
#[sansio::task(output = SocketAddr)]
pub struct Flood {
    peers: usize,
    bytes: usize,
    accepted: Vec<TcpConnId>,
}

#[sansio::task]
impl Flood {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let options = TcpOptions::default()
            .close_timeout(Duration::from_millis(300))
            .send_limit(16 << 20)
            .send_buffer(16 << 10);
        ctx.tcp_listen("127.0.0.1:0".parse().unwrap(), options);
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => ctx.emit(result.unwrap()),
            TcpEvent::Accepted { conn, .. } => {
                for _ in 0..self.bytes / (64 << 10) {
                    ctx.tcp_send(conn, PacketBuf::copy_from(&[7; 64 << 10]));
                }
                self.accepted.push(conn);
                if self.accepted.len() == self.peers {
                    for conn in self.accepted.drain(..) {
                        ctx.tcp_close(conn);
                    }
                }
            }
            _ => {}
        }
    }
}

#[sansio::worker(output = SocketAddr)]
pub enum Floods {
    Flood(Flood),
}

all_backend_tests! {
    fn fifty_closes_to_peers_with_full_windows_give_up_in_time(backend: Backend) {
        let runtime = Runtime::<Floods>::builder().workers(1).backend(backend).build().unwrap();
        runtime.spawn(Flood { peers: 50, bytes: 1 << 20, accepted: Vec::new() }).unwrap();
        let server = match util::next(&runtime) {
            Event::Output { output, .. } => output,
            other => panic!("unexpected {other:?}"),
        };
        // Fifty peers that never read, with small receive windows.
        let peers: Vec<socket2::Socket> = (0..50)
            .map(|_| {
                let socket =
                    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
                socket.set_recv_buffer_size(4096).unwrap();
                socket.connect(&server.into()).unwrap();
                socket
            })
            .collect();
        let started = std::time::Instant::now();
        util::eventually("every close gives up and frees its descriptor", || {
            let worker = &runtime.stats().workers[0];
            (worker.tcp_closes_aborted, worker.tcp_sockets) == (50, 1)
        });
        // 300 ms of timeout, with room for a loaded machine.
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        drop(peers);
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }
}
