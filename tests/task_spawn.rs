//! Tasks spawning tasks (`ctx.spawn`, `ctx.spawn_on`) and handing a TCP
//! connection over to another task (`ctx.tcp_hand_over`), on every backend.

mod util;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sansio::Backend;
use sansio::net::{
    TcpConnId, TcpEvent, TcpOptions, TcpSocket, UdpBound, UdpError, UdpOptions, UdpPacket,
    UdpSocketId,
};
use sansio::prelude::*;
use util::{PATIENCE, next};

/// What the tasks of these tests report.
#[derive(Debug)]
pub enum Out {
    /// A `Child` started, on this worker, with this id.
    ChildStarted(usize, TaskId<Child>),
    /// A `Parent`'s spawn came back: the child's id, or the error's name
    /// and whether the task came back with it.
    Spawned(Result<TaskId<Child>, String>),
    /// A spawn of a task type the worker does not have came back.
    StrayRefused(String),
    Listening(SocketAddr),
    Accepted(TcpConnId),
    /// A hand-over was refused.
    Refused(TcpConnId, io::ErrorKind),
    /// A `Child` got bytes on a connection handed to it.
    ChildData(TcpConnId, Vec<u8>),
    /// The `Parent` got bytes on a connection.
    ParentData(TcpConnId, Vec<u8>),
    /// The `Parent`'s UDP socket is bound.
    Bound(UdpSocketId, SocketAddr),
    /// The `Parent` got a datagram.
    ParentDatagram(Vec<u8>),
    /// A UDP hand-over was refused.
    UdpRefused(io::ErrorKind),
}

/// A task spawned by a `Parent`: reports where it started; takes over
/// connections and echoes them with a prefix.
#[sansio::task(output = Out)]
pub struct Child {
    label: u32,
}

#[sansio::task]
impl Child {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(Out::ChildStarted(ctx.worker(), ctx.id()));
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        if let TcpEvent::Data { conn, data } = event {
            let mut answer = PacketBuf::copy_from(format!("child {}: ", self.label).as_bytes());
            answer.extend_from_slice(&data);
            ctx.tcp_send(conn, answer);
            ctx.emit(Out::ChildData(conn, data.to_vec()));
        }
    }

    #[on_input]
    fn quit(&mut self, ctx: &mut Ctx<Self>, _: Quit) {
        ctx.finish();
    }

    #[on_input]
    fn bound(&mut self, _: &mut Ctx<Self>, _: UdpBound) {}

    #[on_input]
    fn datagram(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
        let mut answer = PacketBuf::copy_from(format!("child {}: ", self.label).as_bytes());
        answer.extend_from_slice(&packet.data);
        ctx.udp_send(packet.socket, packet.from, answer);
    }

    #[on_input]
    fn udp_error(&mut self, _: &mut Ctx<Self>, _: UdpError) {}
}

/// A task type that is not one of the worker's.
#[sansio::task]
pub struct Stray;

#[sansio::task]
impl Stray {}

/// Ends a `Child`.
pub struct Quit;

/// Commands for a `Parent`.
pub enum Do {
    /// Spawn a child (on this worker, or on the one given).
    Spawn(Option<usize>),
    /// Spawn a task whose type the worker does not have.
    SpawnStray,
    /// Bind a UDP socket.
    Bind,
    /// Answer the next datagram, then hand the socket to this task in the
    /// same handler.
    HandOverOnFirst(TaskId<Child>),
    /// Hold the worker (a test-only stand-in for a busy worker): what
    /// arrives meanwhile is read in one batch afterwards.
    Hold(Duration),
    /// Hand the connection over to this task, after queueing `before`.
    HandOver(TcpConnId, TaskId<Child>, &'static [u8]),
    /// Hand the UDP socket over to this task, after sending `before` to the
    /// address.
    HandOverUdp(UdpSocketId, TaskId<Child>, SocketAddr, &'static [u8]),
}

/// Spawns children and listens for connections, which it hands over when
/// told.
#[sansio::task(output = Out)]
pub struct Parent {
    spawned: u32,
    hand_to: Option<TaskId<Child>>,
}

#[sansio::task]
impl Parent {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.tcp_listen("127.0.0.1:0".parse().unwrap(), TcpOptions::default());
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        ctx.emit(Out::Bound(bound.socket, bound.result.unwrap()));
    }

    #[on_input]
    fn datagram(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
        if let Some(child) = self.hand_to.take() {
            let mut answer = PacketBuf::copy_from(b"parent: ");
            answer.extend_from_slice(&packet.data);
            ctx.udp_send(packet.socket, packet.from, answer);
            ctx.udp_hand_over(packet.socket, child);
            return;
        }
        ctx.emit(Out::ParentDatagram(packet.data.to_vec()));
    }

    #[on_input]
    fn udp_error(&mut self, ctx: &mut Ctx<Self>, error: UdpError) {
        ctx.emit(Out::UdpRefused(error.error.kind()));
    }

    #[on_input]
    fn command(&mut self, ctx: &mut Ctx<Self>, command: Do) {
        match command {
            Do::Spawn(worker) => {
                self.spawned += 1;
                let child = Child {
                    label: self.spawned,
                };
                match worker {
                    Some(worker) => ctx.spawn_on(worker, child),
                    None => ctx.spawn(child),
                };
            }
            Do::SpawnStray => {
                ctx.spawn(Stray);
            }
            Do::HandOver(conn, to, before) => {
                ctx.tcp_send(conn, PacketBuf::copy_from(before));
                ctx.tcp_hand_over(conn, to);
            }
            Do::HandOverUdp(socket, to, peer, before) => {
                ctx.udp_send(socket, peer, PacketBuf::copy_from(before));
                ctx.udp_hand_over(socket, to);
            }
            Do::HandOverOnFirst(child) => self.hand_to = Some(child),
            Do::Hold(time) => std::thread::sleep(time),
            Do::Bind => {
                ctx.udp_bind("127.0.0.1:0".parse().unwrap(), UdpOptions::default());
            }
        }
    }

    #[on_input]
    fn spawned(&mut self, ctx: &mut Ctx<Self>, spawned: Spawned<Child>) {
        let result = spawned.result.map_err(|error| {
            let kind = format!("{error:?}");
            // The task comes back with the error.
            let back = error.into_inner();
            format!("{kind} {}", back.label)
        });
        ctx.emit(Out::Spawned(result));
    }

    #[on_input]
    fn stray(&mut self, ctx: &mut Ctx<Self>, spawned: Spawned<Stray>) {
        let error = spawned.result.err().map(|error| format!("{error:?}"));
        ctx.emit(Out::StrayRefused(error.unwrap_or_default()));
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => ctx.emit(Out::Listening(result.unwrap())),
            TcpEvent::Accepted { conn, .. } => ctx.emit(Out::Accepted(conn)),
            TcpEvent::Data { conn, data } => ctx.emit(Out::ParentData(conn, data.to_vec())),
            TcpEvent::Refused {
                socket: TcpSocket::Conn(conn),
                error,
            } => ctx.emit(Out::Refused(conn, error.kind())),
            _ => {}
        }
    }
}

#[sansio::worker(output = Out)]
pub enum Family {
    Parent(Parent),
    Child(Child),
}

fn out(runtime: &Runtime<Family>) -> Out {
    match next(runtime) {
        Event::Output { output, .. } => output,
        other => panic!("unexpected {other:?}"),
    }
}

/// A parent on worker 0, and the address it listens on.
fn parent(runtime: &Runtime<Family>) -> (TaskId<Parent>, SocketAddr) {
    let parent = runtime
        .spawn_on(
            0,
            Parent {
                spawned: 0,
                hand_to: None,
            },
        )
        .unwrap();
    match out(runtime) {
        Out::Listening(addr) => (parent, addr),
        other => panic!("unexpected {other:?}"),
    }
}

/// Spawns a child through `parent` and returns its id once it started.
fn child(runtime: &Runtime<Family>, parent: TaskId<Parent>, on: Option<usize>) -> TaskId<Child> {
    runtime.send(parent, Do::Spawn(on)).unwrap();
    // The id comes back to the parent; the child starts (on its worker):
    // in either order when the worker differs.
    let (mut spawned, mut started) = (None, None);
    while spawned.is_none() || started.is_none() {
        match out(runtime) {
            Out::Spawned(result) => spawned = Some(result.unwrap()),
            Out::ChildStarted(worker, id) => started = Some((worker, id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    let (spawned, (worker, started)) = (spawned.unwrap(), started.unwrap());
    assert_eq!(spawned, started, "the parent learns the id the child has");
    assert_eq!(worker, spawned.worker());
    spawned
}

fn runtime(backend: Backend) -> Runtime<Family> {
    Runtime::<Family>::builder()
        .workers(2)
        .backend(backend)
        .build()
        .unwrap()
}

fn connect(runtime: &Runtime<Family>, addr: SocketAddr) -> (TcpStream, TcpConnId) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    match out(runtime) {
        Out::Accepted(conn) => (stream, conn),
        other => panic!("unexpected {other:?}"),
    }
}

all_backend_tests! {
    fn a_task_spawns_on_its_own_worker_and_on_another(backend: Backend) {
        let runtime = runtime(backend);
        let (parent, _) = parent(&runtime);
        let here = child(&runtime, parent, None);
        assert_eq!(here.worker(), 0);
        let there = child(&runtime, parent, Some(1));
        assert_eq!(there.worker(), 1);
        // Both are live tasks the controller can reach.
        runtime.send(here, Quit).unwrap();
        runtime.send(there, Quit).unwrap();
        let mut finished = 0;
        util::events_until(&runtime, |event| {
            finished += usize::from(matches!(event, Event::Finished { .. }));
            finished == 2
        });
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_spawn_that_cannot_be_made_hands_the_task_back(backend: Backend) {
        let runtime = runtime(backend);
        let (parent, _) = parent(&runtime);
        runtime.send(parent, Do::Spawn(Some(7))).unwrap();
        match out(&runtime) {
            Out::Spawned(Err(error)) => assert_eq!(error, "SpawnError::NoSuchWorker(..) 1"),
            other => panic!("unexpected {other:?}"),
        }
        runtime.send(parent, Do::SpawnStray).unwrap();
        match out(&runtime) {
            Out::StrayRefused(error) => assert_eq!(error, "SpawnError::NotInWorker(..)"),
            other => panic!("unexpected {other:?}"),
        }
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_connection_handed_over_keeps_its_queue_and_goes_to_its_new_owner(backend: Backend) {
        let runtime = runtime(backend);
        let (parent, addr) = parent(&runtime);
        let (mut stream, conn) = connect(&runtime, addr);
        let child = child(&runtime, parent, None);
        runtime.send(parent, Do::HandOver(conn, child, b"queued by the parent; ")).unwrap();
        stream.write_all(b"hello").unwrap();
        match out(&runtime) {
            Out::ChildData(got, data) => assert_eq!((got, data.as_slice()), (conn, &b"hello"[..])),
            other => panic!("unexpected {other:?}"),
        }
        let expected = b"queued by the parent; child 1: hello";
        let mut got = vec![0; expected.len()];
        stream.read_exact(&mut got).unwrap();
        assert_eq!(got, expected);
        // The connection is the child's now: it closes when the child ends.
        runtime.send(child, Quit).unwrap();
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_hand_over_to_another_worker_or_an_ended_task_is_refused(backend: Backend) {
        let runtime = runtime(backend);
        let (parent, addr) = parent(&runtime);
        let (mut stream, conn) = connect(&runtime, addr);
        let elsewhere = child(&runtime, parent, Some(1));
        runtime.send(parent, Do::HandOver(conn, elsewhere, b"")).unwrap();
        match out(&runtime) {
            Out::Refused(got, io::ErrorKind::InvalidInput) => assert_eq!(got, conn),
            other => panic!("unexpected {other:?}"),
        }
        let ended = child(&runtime, parent, None);
        runtime.send(ended, Quit).unwrap();
        assert!(matches!(next(&runtime), Event::Finished { .. }));
        runtime.send(parent, Do::HandOver(conn, ended, b"")).unwrap();
        match out(&runtime) {
            Out::Refused(got, io::ErrorKind::NotFound) => assert_eq!(got, conn),
            other => panic!("unexpected {other:?}"),
        }
        // Still the parent's.
        stream.write_all(b"mine").unwrap();
        match out(&runtime) {
            Out::ParentData(got, data) => assert_eq!((got, data.as_slice()), (conn, &b"mine"[..])),
            other => panic!("unexpected {other:?}"),
        }
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_udp_socket_handed_over_sends_its_queue_and_delivers_to_its_new_owner(backend: Backend) {
        let runtime = runtime(backend);
        let (parent, _) = parent(&runtime);
        runtime.send(parent, Do::Bind).unwrap();
        let (socket, server) = match out(&runtime) {
            Out::Bound(socket, addr) => (socket, addr),
            other => panic!("unexpected {other:?}"),
        };
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        client.send_to(b"to the parent", server).unwrap();
        match out(&runtime) {
            Out::ParentDatagram(data) => assert_eq!(data, b"to the parent"),
            other => panic!("unexpected {other:?}"),
        }
        // Refused towards another worker: still the parent's.
        let elsewhere = child(&runtime, parent, Some(1));
        let me = client.local_addr().unwrap();
        runtime.send(parent, Do::HandOverUdp(socket, elsewhere, me, b"one")).unwrap();
        match out(&runtime) {
            Out::UdpRefused(io::ErrorKind::InvalidInput) => {}
            other => panic!("unexpected {other:?}"),
        }
        let here = child(&runtime, parent, None);
        runtime.send(parent, Do::HandOverUdp(socket, here, me, b"two")).unwrap();
        let mut buf = [0u8; 64];
        for expected in [&b"one"[..], b"two"] {
            let (len, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..len], from), (expected, server));
        }
        client.send_to(b"to the child", server).unwrap();
        let (len, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"child 2: to the child");
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn a_socket_handed_over_mid_batch_gets_the_rest_of_the_batch(backend: Backend) {
        let runtime = runtime(backend);
        let (parent, _) = parent(&runtime);
        runtime.send(parent, Do::Bind).unwrap();
        let (_, server) = match out(&runtime) {
            Out::Bound(socket, addr) => (socket, addr),
            other => panic!("unexpected {other:?}"),
        };
        let child = child(&runtime, parent, None);
        runtime.send(parent, Do::HandOverOnFirst(child)).unwrap();
        runtime.send(parent, Do::Hold(Duration::from_millis(200))).unwrap();
        // While the worker is held, 20 datagrams queue up: one receive batch.
        std::thread::sleep(Duration::from_millis(50));
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        for n in 0..20u8 {
            client.send_to(&[b'a' + n], server).unwrap();
        }
        let mut buf = [0u8; 64];
        let mut answers = Vec::new();
        for _ in 0..20 {
            let (len, _) = client.recv_from(&mut buf).unwrap();
            answers.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        let mut expected = vec!["parent: a".to_owned()];
        expected.extend((1..20u8).map(|n| format!("child 1: {}", char::from(b'a' + n))));
        assert_eq!(answers, expected);
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn only_the_owner_hands_a_connection_over(backend: Backend) {
        let runtime = runtime(backend);
        let (owner, addr) = parent(&runtime);
        let (other, _) = parent(&runtime);
        let (mut stream, conn) = connect(&runtime, addr);
        let child = child(&runtime, owner, None);
        // Another task on the same worker knows the id, but does not own it.
        runtime.send(other, Do::HandOver(conn, child, b"")).unwrap();
        match out(&runtime) {
            Out::Refused(got, io::ErrorKind::PermissionDenied) => assert_eq!(got, conn),
            other => panic!("unexpected {other:?}"),
        }
        stream.write_all(b"still the owner's").unwrap();
        match out(&runtime) {
            Out::ParentData(got, data) => {
                assert_eq!((got, data.as_slice()), (conn, &b"still the owner's"[..]));
            }
            other => panic!("unexpected {other:?}"),
        }
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }
}
