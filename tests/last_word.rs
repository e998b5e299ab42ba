//! What a task sends just before it closes a socket or finishes still goes
//! out, on every backend: the answer queued in the same handler that calls
//! `ctx.finish()` or `ctx.udp_close()`, a burst larger than one system
//! call's batch, and a quarter of a megabyte on a TCP connection whose task
//! finishes at once. (TUN: `tests/net_tun.rs`.)

mod util;

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use sansio::Backend;
use sansio::net::{TcpEvent, TcpOptions, UdpBound, UdpError, UdpOptions, UdpPacket};
use sansio::prelude::*;
use util::{PATIENCE, next};

/// What a `LastWord` task does once it has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// `ctx.finish()` in the same handler.
    Finish,
    /// `ctx.udp_close(socket)` in the same handler (the task stays).
    Close,
}

/// Answers the first datagram it gets with `answers` datagrams, then
/// finishes or closes its socket, in the same handler.
#[sansio::task(output = SocketAddr)]
pub struct LastWord {
    then: Then,
    answers: u16,
}

#[sansio::task]
impl LastWord {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.udp_bind("127.0.0.1:0".parse().unwrap(), UdpOptions::default());
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        ctx.emit(bound.result.unwrap());
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
        for n in 0..self.answers {
            let mut answer = PacketBuf::copy_from(&packet.data);
            answer.extend_from_slice(&n.to_be_bytes());
            ctx.udp_send(packet.socket, packet.from, answer);
        }
        match self.then {
            Then::Finish => ctx.finish(),
            Then::Close => ctx.udp_close(packet.socket),
        }
    }

    #[on_input]
    fn error(&mut self, _: &mut Ctx<Self>, error: UdpError) {
        panic!("{error:?}");
    }
}

/// Listens; sends `bytes` bytes on the first connection it accepts and
/// finishes in the same handler.
#[sansio::task(output = SocketAddr)]
pub struct Farewell {
    bytes: usize,
    /// How it ends: `finish()` (a graceful close, within this timeout), or
    /// `tcp_abort` first.
    close_timeout: Duration,
    abort: bool,
}

impl Farewell {
    fn new(bytes: usize) -> Self {
        Farewell {
            bytes,
            close_timeout: Duration::from_secs(5),
            abort: false,
        }
    }
}

#[sansio::task]
impl Farewell {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let options = TcpOptions::default()
            .close_timeout(self.close_timeout)
            .send_limit(16 << 20);
        ctx.tcp_listen("127.0.0.1:0".parse().unwrap(), options);
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => ctx.emit(result.unwrap()),
            TcpEvent::Accepted { conn, .. } => {
                let pattern: Vec<u8> = (0..self.bytes).map(|n| (n % 251) as u8).collect();
                for chunk in pattern.chunks(16 << 10) {
                    ctx.tcp_send(conn, PacketBuf::copy_from(chunk));
                }
                if self.abort {
                    ctx.tcp_abort(conn);
                }
                ctx.finish();
            }
            _ => {}
        }
    }
}

#[sansio::worker(output = SocketAddr)]
pub enum Last {
    LastWord(LastWord),
    Farewell(Farewell),
}

fn runtime(backend: Backend) -> Runtime<Last> {
    Runtime::<Last>::builder()
        .workers(2)
        .backend(backend)
        .build()
        .unwrap()
}

/// The address a task just bound or listens on.
fn address(runtime: &Runtime<Last>) -> SocketAddr {
    match next(runtime) {
        Event::Output { output, .. } => output,
        other => panic!("expected the address, got {other:?}"),
    }
}

/// Spawns `tasks` tasks, pokes each once, and counts the answers that
/// arrive (the client's receive buffer must hold them all: it reads only
/// after the last poke).
fn answers(backend: Backend, then: Then, tasks: usize, answers: u16) {
    let runtime = runtime(backend);
    let servers: Vec<SocketAddr> = (0..tasks)
        .map(|_| {
            runtime.spawn(LastWord { then, answers }).unwrap();
            address(&runtime)
        })
        .collect();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    // Room for every answer before the client reads any.
    for (n, server) in servers.iter().enumerate() {
        client.send_to(&[n as u8], server).unwrap();
    }
    let mut got = vec![0u16; servers.len()];
    let mut buf = [0u8; 16];
    for _ in 0..servers.len() * usize::from(answers) {
        let (len, from) = client
            .recv_from(&mut buf)
            .unwrap_or_else(|error| panic!("{then:?}: answers missing ({got:?}): {error}"));
        let server = servers.iter().position(|s| *s == from).unwrap();
        assert_eq!(len, 3);
        assert_eq!(buf[0], server as u8);
        // In order, per server.
        assert_eq!(u16::from_be_bytes([buf[1], buf[2]]), got[server]);
        got[server] += 1;
    }
    assert!(got.iter().all(|&n| n == answers), "{got:?}");
    if then == Then::Finish {
        util::eventually("every task finished and its socket closed", || {
            runtime
                .stats()
                .workers
                .iter()
                .map(|w| w.udp_sockets)
                .sum::<u64>()
                == 0
        });
    }
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}

all_backend_tests! {
    fn an_answer_queued_with_finish_arrives(backend: Backend) {
        answers(backend, Then::Finish, 20, 1);
    }

    fn an_answer_queued_with_udp_close_arrives(backend: Backend) {
        answers(backend, Then::Close, 20, 1);
    }

    fn a_burst_queued_with_finish_arrives_whole_and_in_order(backend: Backend) {
        // Several sendmmsg batches after the task is gone.
        answers(backend, Then::Finish, 1, 150);
    }

    fn bytes_queued_before_a_task_finishes_reach_the_peer(backend: Backend) {
        let runtime = runtime(backend);
        let bytes = 256 << 10;
        runtime.spawn(Farewell::new(bytes)).unwrap();
        let server = address(&runtime);
        let mut stream = TcpStream::connect(server).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut received = Vec::new();
        stream.read_to_end(&mut received).unwrap();
        assert_eq!(received.len(), bytes);
        assert!(received.iter().enumerate().all(|(n, &byte)| byte == (n % 251) as u8));
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_close_the_peer_never_reads_gives_up_at_its_timeout(backend: Backend) {
        let runtime = runtime(backend);
        let farewell = Farewell {
            close_timeout: Duration::from_millis(200),
            ..Farewell::new(12 << 20)
        };
        runtime.spawn(farewell).unwrap();
        let server = address(&runtime);
        // A client with a small receive window that never reads: 12 MiB
        // cannot all leave the server.
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&server.into()).unwrap();
        util::eventually("the close gives up and resets", || {
            let stats = runtime.stats();
            stats.workers.iter().map(|w| w.tcp_closes_aborted).sum::<u64>() == 1
                && stats.workers.iter().map(|w| w.tcp_sockets).sum::<u64>() == 0
        });
        // The server is gone: the client's next read ends in a reset.
        let mut stream = TcpStream::from(socket);
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut sink = Vec::new();
        assert!(stream.read_to_end(&mut sink).is_err(), "a reset, not an orderly end");
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn tcp_abort_resets_at_once(backend: Backend) {
        let runtime = runtime(backend);
        runtime.spawn(Farewell { abort: true, ..Farewell::new(1 << 20) }).unwrap();
        let server = address(&runtime);
        let mut stream = TcpStream::connect(server).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut sink = Vec::new();
        let error = stream.read_to_end(&mut sink).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
        assert!(sink.len() < 1 << 20, "what was queued is dropped");
        util::eventually("the abort is counted", || {
            runtime.stats().workers.iter().map(|w| w.tcp_closes_aborted).sum::<u64>() == 1
        });
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_shutdown_waits_for_what_closing_sockets_still_send(backend: Backend) {
        let runtime = runtime(backend);
        runtime.spawn(Farewell::new(8 << 20)).unwrap();
        let server = address(&runtime);
        let mut stream = TcpStream::connect(server).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        // The task has finished; its connection is still sending 8 MiB when
        // the runtime shuts down. The reader is slow to start.
        std::thread::sleep(Duration::from_millis(50));
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            let mut received = Vec::new();
            stream.read_to_end(&mut received).map(|_| received.len())
        });
        runtime.shutdown(Duration::from_secs(5)).unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), 8 << 20);
    }
}
