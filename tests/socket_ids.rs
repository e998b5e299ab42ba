//! Socket ids are unique in the runtime, on every backend: the sockets of
//! same-type tasks on different workers never compare equal, hash alike or
//! print the same, and an id used on a worker that does not own it is
//! refused with an error input and never acted on.

mod util;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use sansio::Backend;
use sansio::net::{
    TcpConnId, TcpEvent, TcpListenerId, TcpOptions, TcpSocket, UdpBound, UdpError, UdpOptions,
    UdpPacket, UdpSocketId,
};
use sansio::prelude::*;
use util::PATIENCE;

/// What a `Sockets` task reports.
#[derive(Debug)]
pub enum Report {
    Udp(UdpSocketId, SocketAddr),
    Listening(TcpListenerId, SocketAddr),
    Accepted(TcpConnId),
    Data(TcpConnId, Vec<u8>),
    /// A UDP send or close came back.
    UdpRefused(io::ErrorKind, Option<Vec<u8>>),
    /// A TCP send came back.
    TcpSendFailed(io::ErrorKind, Vec<u8>),
    /// A TCP close (or another call) was refused.
    TcpRefused(TcpSocket, io::ErrorKind),
}

/// What the test asks a `Sockets` task to do with ids it got from elsewhere
/// (here: from the other worker's task).
#[derive(Debug)]
pub enum Use {
    UdpSend(UdpSocketId, SocketAddr),
    UdpClose(UdpSocketId),
    TcpSend(TcpConnId),
    TcpClose(TcpConnId),
    TcpCloseListener(TcpListenerId),
}

/// Binds a UDP socket and a TCP listener at start and reports every id.
#[sansio::task(output = Report)]
#[derive(Default)]
pub struct Sockets;

#[sansio::task]
impl Sockets {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        ctx.udp_bind(any, UdpOptions::default());
        ctx.tcp_listen(any, TcpOptions::default());
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        ctx.emit(Report::Udp(bound.socket, bound.result.unwrap()));
    }

    #[on_input]
    fn packet(&mut self, _: &mut Ctx<Self>, _: UdpPacket) {}

    #[on_input]
    fn udp_error(&mut self, ctx: &mut Ctx<Self>, error: UdpError) {
        let data = error.data.map(|data| data.to_vec());
        ctx.emit(Report::UdpRefused(error.error.kind(), data));
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { listener, result } => {
                ctx.emit(Report::Listening(listener, result.unwrap()));
            }
            TcpEvent::Accepted { conn, .. } => ctx.emit(Report::Accepted(conn)),
            TcpEvent::Data { conn, data } => {
                ctx.tcp_send(conn, PacketBuf::copy_from(&data));
                ctx.emit(Report::Data(conn, data.to_vec()));
            }
            TcpEvent::SendFailed { data, error, .. } => {
                ctx.emit(Report::TcpSendFailed(error.kind(), data.to_vec()));
            }
            TcpEvent::Refused { socket, error } => {
                ctx.emit(Report::TcpRefused(socket, error.kind()));
            }
            _ => {}
        }
    }

    #[on_input]
    fn use_ids(&mut self, ctx: &mut Ctx<Self>, command: Use) {
        match command {
            Use::UdpSend(socket, to) => ctx.udp_send(socket, to, PacketBuf::copy_from(b"stray")),
            Use::UdpClose(socket) => ctx.udp_close(socket),
            Use::TcpSend(conn) => ctx.tcp_send(conn, PacketBuf::copy_from(b"stray")),
            Use::TcpClose(conn) => ctx.tcp_close(conn),
            Use::TcpCloseListener(listener) => ctx.tcp_close_listener(listener),
        }
    }
}

#[sansio::worker]
pub enum Ids {
    Sockets(Sockets),
}

/// One `Sockets` task's ids.
struct Made {
    task: TaskId<Sockets>,
    udp: (UdpSocketId, SocketAddr),
    listener: (TcpListenerId, SocketAddr),
}

/// The next output of `task` (the tests wait for each step, so no other
/// task has anything to say meanwhile).
fn report_of(runtime: &Runtime<Ids>, task: TaskId<Sockets>) -> Report {
    match util::next(runtime) {
        Event::Output {
            task: IdsId::Sockets(from),
            output: IdsOutput::Sockets(report),
        } if from == task => report,
        other => panic!("expected an output of {task}, got {other:?}"),
    }
}

/// A `Sockets` task on `worker`, once both its sockets are open.
fn spawn_on(runtime: &Runtime<Ids>, worker: usize) -> Made {
    let task = runtime.spawn_on(worker, Sockets).unwrap();
    let (mut udp, mut listener) = (None, None);
    while udp.is_none() || listener.is_none() {
        match report_of(runtime, task) {
            Report::Udp(id, addr) => udp = Some((id, addr)),
            Report::Listening(id, addr) => listener = Some((id, addr)),
            other => panic!("unexpected {other:?}"),
        }
    }
    Made {
        task,
        udp: udp.unwrap(),
        listener: listener.unwrap(),
    }
}

fn runtime(backend: Backend) -> Runtime<Ids> {
    Runtime::<Ids>::builder()
        .workers(2)
        .backend(backend)
        .build()
        .unwrap()
}

/// Nothing arrives on `socket` for a while.
fn assert_silent(socket: &UdpSocket) {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0; 64];
    match socket.recv(&mut buf) {
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) => {}
        other => panic!("a refused send went out: {other:?}"),
    }
}

/// Connects to `addr` and returns the stream with the id of the connection
/// the task accepted.
fn connect(runtime: &Runtime<Ids>, made: &Made) -> (TcpStream, TcpConnId) {
    let stream = TcpStream::connect(made.listener.1).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    match report_of(runtime, made.task) {
        Report::Accepted(conn) => (stream, conn),
        other => panic!("expected the accept, got {other:?}"),
    }
}

all_backend_tests! {
    fn the_same_socket_of_tasks_on_two_workers_has_two_ids(backend: Backend) {
        let runtime = runtime(backend);
        let (a, b) = (spawn_on(&runtime, 0), spawn_on(&runtime, 1));
        // Same task type, same slot, same generation, same socket number: only
        // the worker differs.
        assert_eq!((a.task.slot(), a.task.generation()), (b.task.slot(), b.task.generation()));
        assert_ne!(a.udp.0, b.udp.0);
        assert_ne!(a.listener.0, b.listener.0);
        assert_ne!(a.udp.0.to_string(), b.udp.0.to_string());
        assert_eq!((a.udp.0.worker(), b.udp.0.worker()), (0, 1));
        assert_eq!(HashSet::from([a.udp.0, b.udp.0]).len(), 2, "ids hash apart");

        let (_stream_a, conn_a) = connect(&runtime, &a);
        let (_stream_b, conn_b) = connect(&runtime, &b);
        assert_ne!(conn_a, conn_b);
        assert_eq!(HashSet::from([conn_a, conn_b]).len(), 2);
        let (text_a, text_b) = (conn_a.to_string(), conn_b.to_string());
        assert_ne!(text_a, text_b);
        assert_eq!(text_a, "tcp#0:0.0.1/a1");
        assert_eq!(text_b, "tcp#1:0.0.1/a1");
        assert!(!format!("{conn_a:?}").contains("2147483649"), "{conn_a:?}");
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn an_id_of_another_worker_is_refused_and_never_acted_on(backend: Backend) {
        let runtime = runtime(backend);
        let (a, b) = (spawn_on(&runtime, 0), spawn_on(&runtime, 1));
        let (mut stream, conn_a) = connect(&runtime, &a);

        // A UDP send through worker 0's socket from worker 1: refused with
        // its payload back, and nothing goes out.
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        runtime.send(b.task, Use::UdpSend(a.udp.0, peer.local_addr().unwrap())).unwrap();
        match report_of(&runtime, b.task) {
            Report::UdpRefused(io::ErrorKind::InvalidInput, Some(data)) => assert_eq!(data, b"stray"),
            other => panic!("expected the refusal, got {other:?}"),
        }
        assert_silent(&peer);

        // Closing it from there is refused too; the socket stays open on
        // worker 0, which still sends through it.
        runtime.send(b.task, Use::UdpClose(a.udp.0)).unwrap();
        match report_of(&runtime, b.task) {
            Report::UdpRefused(io::ErrorKind::InvalidInput, None) => {}
            other => panic!("expected the refusal, got {other:?}"),
        }
        runtime.send(a.task, Use::UdpSend(a.udp.0, peer.local_addr().unwrap())).unwrap();
        peer.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0; 64];
        let (len, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..len], from), (&b"stray"[..], a.udp.1));

        // TCP: a send, a close and a listener close with worker 0's ids, from
        // worker 1, each refused.
        runtime.send(b.task, Use::TcpSend(conn_a)).unwrap();
        match report_of(&runtime, b.task) {
            Report::TcpSendFailed(io::ErrorKind::InvalidInput, data) => assert_eq!(data, b"stray"),
            other => panic!("expected the refusal, got {other:?}"),
        }
        runtime.send(b.task, Use::TcpClose(conn_a)).unwrap();
        match report_of(&runtime, b.task) {
            Report::TcpRefused(TcpSocket::Conn(conn), io::ErrorKind::InvalidInput) => {
                assert_eq!(conn, conn_a);
            }
            other => panic!("expected the refusal, got {other:?}"),
        }
        runtime.send(b.task, Use::TcpCloseListener(a.listener.0)).unwrap();
        match report_of(&runtime, b.task) {
            Report::TcpRefused(TcpSocket::Listener(listener), io::ErrorKind::InvalidInput) => {
                assert_eq!(listener, a.listener.0);
            }
            other => panic!("expected the refusal, got {other:?}"),
        }

        // The connection and the listener on worker 0 are untouched: the
        // connection echoes, and the listener still accepts.
        stream.write_all(b"still here").unwrap();
        match report_of(&runtime, a.task) {
            Report::Data(conn, data) => assert_eq!((conn, data.as_slice()), (conn_a, &b"still here"[..])),
            other => panic!("expected the data, got {other:?}"),
        }
        let mut echoed = [0; 10];
        stream.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"still here");
        let (_second, conn) = connect(&runtime, &a);
        assert_eq!(conn.worker(), 0);
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }
}
