//! TCP connections read and written by the backend (io_uring: a multishot
//! `recv` per connection into the worker's buffer rings, and the queue sent
//! as linked `sendmsg`s): when every buffer is full because the worker is
//! busy, the receives wait (the bytes stay in the sockets, TCP's flow
//! control holds the peers back), they are counted, and every byte of every
//! stream arrives, in order, before its end; the worker then makes no
//! `read` or `write` call of its own.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sansio::Backend;
use sansio::net::{TcpConnId, TcpEvent, TcpOptions};
use sansio::prelude::*;
use util::tcp::{Mode, TcpOut, TcpServer, TcpWorker, TcpWorkerOutput};

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
    let _alone = alone();
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
    // The worker publishes its counters once per turn.
    util::eventually("every byte counted as read", || {
        runtime.stats().workers[0].tcp_bytes_read == 8 * size as u64
    });
    let worker = &runtime.stats().workers[0];
    assert!(
        worker.tcp_recv_buffers_exhausted > 0,
        "the buffers never ran out: the test proves nothing ({worker:?})"
    );
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}

impl Sink {
    fn default_streams() -> Self {
        Sink {
            streams: HashMap::new(),
        }
    }
}

/// The tests of this file count the process's io_uring submissions: one
/// at a time, so that no other test's ring is among them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Entries the kernel has taken from the submission queues of the
/// process's io_uring instances (`SqHead` of each ring's `fdinfo`).
fn ring_submissions() -> u64 {
    let mut taken = 0;
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd") {
        let Ok(entry) = entry else { continue };
        let is_ring = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy() == "anon_inode:[io_uring]");
        if !is_ring {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        taken += info
            .lines()
            .find_map(|line| line.strip_prefix("SqHead:"))
            .and_then(|head| head.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    taken
}

/// Echoes 1 MiB over one connection of an io_uring worker; returns the
/// submissions its ring took meanwhile.
fn submissions_to_echo_a_mebibyte() -> u64 {
    let runtime = Runtime::<TcpWorker>::builder()
        .workers(1)
        .backend(Backend::IoUring)
        .build()
        .unwrap();
    runtime
        .spawn(TcpServer::new(
            "127.0.0.1:0".parse().unwrap(),
            TcpOptions::default(),
            Mode::Echo,
        ))
        .unwrap();
    let addr = loop {
        match util::next(&runtime) {
            Event::Output {
                output: TcpWorkerOutput::Server(TcpOut::Listening(Ok(addr))),
                ..
            } => break addr,
            Event::Output { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(util::PATIENCE)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let before = ring_submissions();
    let sent: Vec<u8> = (0..1usize << 20).map(pattern).collect();
    let reader = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut back = Vec::new();
            stream.read_to_end(&mut back).unwrap();
            back
        })
    };
    stream.write_all(&sent).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let back = reader.join().unwrap();
    assert!(
        back == sent,
        "{} bytes came back of {}, or changed",
        back.len(),
        sent.len()
    );
    let taken = ring_submissions() - before;
    runtime.shutdown(Duration::from_secs(5)).unwrap();
    taken
}

#[test]
fn an_io_uring_worker_sends_a_connections_bytes_through_its_ring() {
    let _alone = alone();
    // The echo sends the mebibyte back in the chunks it came in (16 KiB at
    // most: 64 or more), each a `sendmsg` of the ring; on readiness the
    // ring would take a few polls only.
    let taken = submissions_to_echo_a_mebibyte();
    assert!(
        taken >= 64,
        "the ring took {taken} submissions for the echo"
    );
}

/// Connections waiting in the accept queue of the listener on `port`
/// (`/proc/net/tcp`: a listening socket's `rx_queue`).
fn waiting_to_be_accepted(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    table
        .lines()
        .skip(1)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let listening = fields.get(3) == Some(&"0A");
            if !listening || u16::from_str_radix(local_port, 16).ok()? != port {
                return None;
            }
            let (_, rx_queue) = fields.get(4)?.split_once(':')?;
            usize::from_str_radix(rx_queue, 16).ok()
        })
        .expect("the listener in /proc/net/tcp")
}

/// Connects 10 clients while the worker is held in a handler; returns how
/// many of them still wait in the listener's accept queue meanwhile.
fn waiting_while_the_worker_is_busy(builder: sansio::Builder<Sinks>) -> usize {
    let runtime = builder.workers(1).build().unwrap();
    let sink = runtime.spawn(Sink::default_streams()).unwrap();
    let addr = match util::next(&runtime) {
        Event::Output {
            output: SinksOutput::Sink(Heard::Listening(addr)),
            ..
        } => addr,
        other => panic!("unexpected {other:?}"),
    };
    runtime
        .send(sink, Hold(Duration::from_millis(400)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let clients: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let waiting = waiting_to_be_accepted(addr.port());
    drop(clients);
    runtime.shutdown(Duration::from_secs(5)).unwrap();
    waiting
}

#[test]
fn an_io_uring_worker_with_a_polling_thread_accepts_while_it_is_busy() {
    let _alone = alone();
    let builder = || Runtime::<Sinks>::builder();
    // On readiness, connections wait in the kernel's accept queue until
    // the worker calls `accept`; on a ring whose completion work waits for
    // the worker (`DEFER_TASKRUN`) too...
    assert_eq!(
        waiting_while_the_worker_is_busy(builder().backend(Backend::Mio)),
        10
    );
    assert_eq!(
        waiting_while_the_worker_is_busy(builder().backend(Backend::IoUring)),
        10
    );
    // ...but the ring's multishot accept runs in its polling thread when
    // it has one: the connections are accepted while the worker is busy.
    let sqpoll = builder()
        .backend(Backend::IoUring)
        .io_uring_sqpoll(Duration::from_millis(100));
    assert_eq!(waiting_while_the_worker_is_busy(sqpoll), 0);
}
