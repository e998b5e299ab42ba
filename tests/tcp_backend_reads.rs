//! TCP connections read by the backend (io_uring: a multishot `recv` per
//! connection into the worker's buffer rings): when every buffer is full
//! because the worker is busy, the receives wait (the bytes stay in the
//! sockets, TCP's flow control holds the peers back), they are counted, and
//! every byte of every stream arrives, in order, before its end.

mod util;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sansio::Backend;
use sansio::net::{TcpConnId, TcpEvent, TcpOptions};
use sansio::prelude::*;

/// Holds the worker for a while (a stand-in for a busy worker).
#[derive(Debug)]
pub struct Hold(pub Duration);

#[derive(Debug)]
pub enum Heard {
    Listening(SocketAddr),
    /// A stream ended: its bytes, and whether each was the pattern's.
    Ended {
        bytes: usize,
        intact: bool,
    },
}

/// The byte at `offset` of every stream the test sends.
fn pattern(offset: usize) -> u8 {
    (offset % 253) as u8
}

#[sansio::task(output = Heard)]
pub struct Sink {
    /// Per connection: bytes so far, and whether all matched.
    streams: HashMap<TcpConnId, (usize, bool)>,
}

#[sansio::task]
impl Sink {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.tcp_listen("127.0.0.1:0".parse().unwrap(), TcpOptions::default());
    }

    #[on_input]
    fn hold(&mut self, _: &mut Ctx<Self>, Hold(time): Hold) {
        std::thread::sleep(time);
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => ctx.emit(Heard::Listening(result.unwrap())),
            TcpEvent::Accepted { conn, .. } => {
                self.streams.insert(conn, (0, true));
            }
            TcpEvent::Data { conn, data } => {
                let (bytes, intact) = self.streams.entry(conn).or_insert((0, true));
                for (at, byte) in data.iter().enumerate() {
                    *intact &= *byte == pattern(*bytes + at);
                }
                *bytes += data.len();
            }
            TcpEvent::PeerClosed { conn } => {
                let (bytes, intact) = self.streams.remove(&conn).unwrap_or((0, false));
                ctx.emit(Heard::Ended { bytes, intact });
                ctx.tcp_close(conn);
            }
            TcpEvent::Closed { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[sansio::worker]
pub enum Sinks {
    Sink(Sink),
}

#[test]
fn an_io_uring_worker_out_of_receive_buffers_loses_no_byte() {
    let backend = Backend::IoUring;
    if let Err(reason) = backend.check() {
        panic!("{reason}: this test needs io_uring (Linux 6.0 or later, not disabled)");
    }
    let runtime = Runtime::<Sinks>::builder()
        .workers(1)
        .backend(backend)
        .build()
        .unwrap();
    let sink = runtime.spawn(Sink::default_streams()).unwrap();
    let addr = match util::next(&runtime) {
        Event::Output {
            output: SinksOutput::Sink(Heard::Listening(addr)),
            ..
        } => addr,
        other => panic!("unexpected {other:?}"),
    };
    // Connected first, so that the connections' receives are armed.
    let streams: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    runtime
        .send(sink, Hold(Duration::from_millis(500)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // 8 × 1 MiB while the worker is held: far more than the buffers of
    // 16 KiB chunks hold (2 MiB), so they run out.
    let size = 1 << 20;
    let body: Vec<u8> = (0..size).map(pattern).collect();
    let writers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let body = body.clone();
            std::thread::spawn(move || {
                stream.write_all(&body).unwrap();
                stream.shutdown(std::net::Shutdown::Write).unwrap();
                stream
            })
        })
        .collect();
    let mut ended = Vec::new();
    while ended.len() < 8 {
        match util::next(&runtime) {
            Event::Output {
                output: SinksOutput::Sink(Heard::Ended { bytes, intact }),
                ..
            } => ended.push((bytes, intact)),
            other => panic!("unexpected {other:?}"),
        }
    }
    for writer in writers {
        drop(writer.join().unwrap());
    }
    assert_eq!(ended, vec![(size, true); 8], "every byte, in order");
    let worker = &runtime.stats().workers[0];
    assert!(
        worker.tcp_recv_buffers_exhausted > 0,
        "the buffers never ran out: the test proves nothing ({worker:?})"
    );
    assert_eq!(worker.tcp_bytes_read, 8 * size as u64);
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}

impl Sink {
    fn default_streams() -> Self {
        Sink {
            streams: HashMap::new(),
        }
    }
}
