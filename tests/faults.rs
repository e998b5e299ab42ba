//! The conformance suite under injected faults (`sansio::faults`), on every
//! backend: `EINTR`, `EAGAIN`, `ENOBUFS`, `ECONNRESET` and `EMFILE` from the
//! socket calls, short writes and partial `sendmmsg` batches.
//!
//! - TCP: real clients send known bytes to an echo task; every byte comes
//!   back, in order — or, on a connection the injected `ECONNRESET` broke, a
//!   prefix does and the task hears `Closed` with the error.
//! - The bus: the echo task publishes a record of every chunk it reads to an
//!   auditor on the other worker, which checks each connection's chunks are
//!   contiguous and complete: nothing lost, reordered or misdelivered.
//! - UDP: every datagram a client sends is received or counted as dropped
//!   by the kernel; every echo is sent or handed back to its task, counted.
//! - GSO stays on after transient send errors, and goes off when the device
//!   says it cannot segment (`EIO`).
//! - An interrupted wait is a wakeup; a failed one (`ENOMEM`) ends the
//!   worker, reported as an event and by shutdown.
//!
//! A task that sees an input it should not (an unknown connection, a
//! malformed datagram, a record out of place) counts it, and the tests
//! assert there were none.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use sansio::Backend;
use sansio::faults::{Call, Fault, FaultPlan, Injected};
use sansio::net::{
    TcpConnId, TcpEvent, TcpOptions, UdpBound, UdpError, UdpOptions, UdpPacket, UdpSocketId,
};
use sansio::prelude::*;
use util::{PATIENCE, eventually, next};

/// The seed of every plan: the draws repeat for the same call sequence.
const SEED: u64 = 0x5EED_FA17;

// ----------------------------------------------------------------------
// TCP echo, audited over the bus.

/// The audit channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Audit;

/// What the echo task tells the auditor, per connection, in order.
#[derive(Debug, Clone)]
pub enum Record {
    /// `len` bytes read at `offset`, their sum.
    Read {
        conn: TcpConnId,
        offset: u64,
        len: usize,
        sum: u64,
    },
    /// The connection ended after `total` bytes: cleanly, or with an error.
    Ended {
        conn: TcpConnId,
        total: u64,
        failed: bool,
    },
}

#[derive(Debug)]
pub enum Out {
    Listening(SocketAddr),
    AuditInEffect,
}

/// Per connection: where reading is, and what waits to be echoed.
#[derive(Default)]
struct Echoing {
    read: u64,
    /// Echoes the send limit refused, in order: sent again on `Writable`.
    refused: Vec<PacketBuf>,
    peer_closed: bool,
    /// The task asked to close it: it is flushing (and may still hand back
    /// a refused echo, say `Writable`, or fail).
    closing: bool,
}

/// Echoes what each connection sends, with backpressure; closes when the
/// peer has; records every read on the bus.
#[sansio::task(output = Out, channel = Audit, event = Record)]
#[derive(Default)]
pub struct Echo {
    conns: HashMap<TcpConnId, Echoing>,
    /// Connections that failed: a send made before may still come back
    /// refused (its refusal is delivered after the events already read).
    failed_conns: std::collections::HashSet<TcpConnId>,
    /// Inputs it should never have seen.
    wrong: Vec<String>,
    /// Records the bus could not take.
    overflows: u64,
    /// Connections that ended with an error.
    failed: u64,
}

/// Asks a task for the inputs it should not have seen (and the echo task
/// for its failed connections and bus overflows).
#[derive(Debug)]
pub struct Verdict;

impl Request for Verdict {
    type Response = (Vec<String>, u64, u64);
}

impl Echo {
    /// The connection `conn`, which must be known.
    fn conn(&mut self, conn: TcpConnId, what: &str) -> Option<&mut Echoing> {
        if !self.conns.contains_key(&conn) {
            self.wrong.push(format!("{what} for unknown {conn}"));
        }
        self.conns.get_mut(&conn)
    }

    /// Closes `conn` once its echo is all queued: the close waits for the
    /// queue to drain.
    fn close(ctx: &mut Ctx<Self>, conn: TcpConnId, state: &mut Echoing) {
        state.closing = true;
        ctx.tcp_close(conn);
        let record = Record::Ended {
            conn,
            total: state.read,
            failed: false,
        };
        ctx.publish(Audit, record);
    }
}

#[sansio::task]
impl Echo {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        // A small send limit, so the echo runs into backpressure.
        let options = TcpOptions::default().send_limit(32 << 10);
        ctx.tcp_listen("127.0.0.1:0".parse().unwrap(), options);
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => match result {
                Ok(addr) => ctx.emit(Out::Listening(addr)),
                Err(error) => self.wrong.push(format!("listen failed: {error}")),
            },
            TcpEvent::Accepted { conn, .. } => {
                if self.conns.insert(conn, Echoing::default()).is_some() {
                    self.wrong.push(format!("{conn} accepted twice"));
                }
            }
            // Injected EMFILE/ENOBUFS: the listener retries by itself.
            TcpEvent::AcceptFailed { .. } => {}
            TcpEvent::Data { conn, data } => {
                let Some(state) = self.conn(conn, "data") else {
                    return;
                };
                if state.peer_closed {
                    self.wrong.push(format!("data on {conn} after PeerClosed"));
                    return;
                }
                let record = Record::Read {
                    conn,
                    offset: state.read,
                    len: data.len(),
                    sum: data.iter().map(|&b| u64::from(b)).sum(),
                };
                state.read += data.len() as u64;
                ctx.publish(Audit, record);
                ctx.tcp_send(conn, data);
            }
            TcpEvent::SendFailed { conn, data, error } => {
                if self.failed_conns.contains(&conn) {
                    return;
                }
                let Some(state) = self.conn(conn, "a refused send") else {
                    return;
                };
                if error.kind() == std::io::ErrorKind::WouldBlock {
                    state.refused.push(data);
                } else {
                    self.wrong.push(format!("send on {conn} failed: {error}"));
                }
            }
            TcpEvent::Writable { conn } => {
                let Some(state) = self.conn(conn, "Writable") else {
                    return;
                };
                for data in std::mem::take(&mut state.refused) {
                    ctx.tcp_send(conn, data);
                }
                if state.peer_closed && !state.closing {
                    Echo::close(ctx, conn, state);
                }
            }
            TcpEvent::PeerClosed { conn } => {
                let Some(state) = self.conn(conn, "PeerClosed") else {
                    return;
                };
                state.peer_closed = true;
                // What was refused goes out first, on `Writable` (a refusal
                // may still be on its way: the close waits for it then).
                if state.refused.is_empty() {
                    Echo::close(ctx, conn, state);
                }
            }
            TcpEvent::Closed { conn, error } => {
                if error.is_none() {
                    self.wrong.push(format!("{conn} closed without an error"));
                }
                // Only an injected reset breaks a connection here, possibly
                // one the task was closing.
                self.failed += 1;
                let Some(state) = self.conn(conn, "Closed") else {
                    return;
                };
                if !state.closing {
                    let record = Record::Ended {
                        conn,
                        total: state.read,
                        failed: true,
                    };
                    ctx.publish(Audit, record);
                }
                self.conns.remove(&conn);
                self.failed_conns.insert(conn);
            }
            other => self.wrong.push(format!("unexpected {other:?}")),
        }
    }

    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, input: BusInput<Audit, Record>) {
        match input {
            BusInput::Overflow { .. } => self.overflows += 1,
            other => self.wrong.push(format!("unexpected bus input {other:?}")),
        }
    }

    #[on_request]
    fn verdict(&mut self, _: &mut Ctx<Self>, _: Verdict) -> (Vec<String>, u64, u64) {
        (self.wrong.clone(), self.failed, self.overflows)
    }
}

/// What the auditor found for one connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audited {
    pub read: u64,
    pub sum: u64,
    pub ended: Option<bool>,
}

/// Asks the auditor what it found.
#[derive(Debug)]
pub struct Findings;

impl Request for Findings {
    type Response = HashMap<TcpConnId, Audited>;
}

/// Checks the echo task's records: per connection, reads contiguous from
/// offset 0, then one end with their total.
#[sansio::task(output = Out, channel = Audit, event = Record)]
#[derive(Default)]
pub struct Auditor {
    conns: HashMap<TcpConnId, Audited>,
    wrong: Vec<String>,
}

#[sansio::task]
impl Auditor {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.subscribe(Audit);
    }

    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Audit, Record>) {
        let record = match input {
            BusInput::Subscribed { .. } => return ctx.emit(Out::AuditInEffect),
            BusInput::Event {
                channel: Some(Audit),
                event,
            } => event,
            other => return self.wrong.push(format!("unexpected bus input {other:?}")),
        };
        match record {
            Record::Read {
                conn,
                offset,
                len,
                sum,
            } => {
                let audited = self.conns.entry(conn).or_default();
                if audited.ended.is_some() || offset != audited.read {
                    self.wrong
                        .push(format!("{conn}: read at {offset} after {audited:?}"));
                }
                audited.read += len as u64;
                audited.sum += sum;
            }
            Record::Ended {
                conn,
                total,
                failed,
            } => {
                let audited = self.conns.entry(conn).or_default();
                if audited.ended.is_some() || total != audited.read {
                    self.wrong
                        .push(format!("{conn}: ended at {total} after {audited:?}"));
                }
                audited.ended = Some(failed);
            }
        }
    }

    #[on_request]
    fn findings(&mut self, _: &mut Ctx<Self>, _: Findings) -> HashMap<TcpConnId, Audited> {
        self.conns.clone()
    }

    #[on_request]
    fn verdict(&mut self, _: &mut Ctx<Self>, _: Verdict) -> (Vec<String>, u64, u64) {
        (self.wrong.clone(), 0, 0)
    }
}

#[sansio::worker(channel = Audit, event = Record)]
pub enum EchoWorker {
    Echo(Echo),
    Auditor(Auditor),
}

/// Bytes client `n` sends: a pseudo-random stream, different per client.
fn stream_of(n: u64, len: usize) -> Vec<u8> {
    let mut state = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// What one client sent and got back, and how its connection ended.
struct Exchange {
    sent: Vec<u8>,
    got: Vec<u8>,
    /// Reading ended with an error (a reset) rather than end of stream.
    reset: bool,
}

/// Connects, sends `bytes` in pieces of varying size while reading the echo
/// on another thread, shuts down writing, and reads until the end.
fn exchange(addr: SocketAddr, n: u64, bytes: usize) -> Exchange {
    let sent = stream_of(n, bytes);
    let stream = TcpStream::connect(addr).expect("connect to the echo task");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let to_send = sent.clone();
    let writing = thread::spawn(move || {
        let mut offset = 0;
        let mut piece = 1 + (n as usize * 797) % 7000;
        while offset < to_send.len() {
            let end = (offset + piece).min(to_send.len());
            // A reset connection refuses the rest: the reader sees it.
            if writer.write_all(&to_send[offset..end]).is_err() {
                return;
            }
            offset = end;
            piece = 1 + (piece * 31 + 17) % 9000;
        }
        let _ = writer.shutdown(Shutdown::Write);
    });
    let mut reader = stream;
    let mut got = Vec::with_capacity(bytes);
    let mut chunk = vec![0; 64 << 10];
    let reset = loop {
        match reader.read(&mut chunk) {
            Ok(0) => break false,
            Ok(read) => got.extend_from_slice(&chunk[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                panic!(
                    "client {n}: no echo within {PATIENCE:?} after {} bytes",
                    got.len()
                )
            }
            Err(_) => break true,
        }
    };
    writing.join().unwrap();
    Exchange { sent, got, reset }
}

const CLIENTS: u64 = 24;
const BYTES: usize = 192 << 10;

/// Runs the audited echo under `plan` with [`CLIENTS`] clients at once;
/// returns each client's exchange, the echo task's count of failed
/// connections, and the auditor's findings.
fn audited_echo(
    backend: Backend,
    plan: FaultPlan,
) -> (Vec<Exchange>, u64, HashMap<TcpConnId, Audited>) {
    let runtime = Runtime::<EchoWorker>::builder()
        .workers(2)
        .backend(backend)
        .faults(plan)
        .build()
        .unwrap();
    let auditor = runtime.spawn_on(1, Auditor::default()).unwrap();
    match next(&runtime) {
        Event::Output {
            output: EchoWorkerOutput::Auditor(Out::AuditInEffect),
            ..
        } => {}
        other => panic!("expected the audit subscription, got {other:?}"),
    }
    let echo = runtime.spawn_on(0, Echo::default()).unwrap();
    let addr = match next(&runtime) {
        Event::Output {
            output: EchoWorkerOutput::Echo(Out::Listening(addr)),
            ..
        } => addr,
        other => panic!("expected the echo to listen, got {other:?}"),
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| thread::spawn(move || exchange(addr, n, BYTES)))
        .collect();
    let exchanges: Vec<Exchange> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    // Every connection's end reaches the auditor.
    let mut findings = HashMap::new();
    eventually("every connection's end is audited", || {
        findings = runtime.call(auditor, Findings, PATIENCE).unwrap();
        findings.len() == CLIENTS as usize && findings.values().all(|a| a.ended.is_some())
    });
    let (wrong, failed, overflows) = runtime.call(echo, Verdict, PATIENCE).unwrap();
    assert!(
        wrong.is_empty(),
        "the echo task saw wrong inputs: {wrong:#?}"
    );
    assert_eq!(overflows, 0, "the audit overflowed the bus");
    let (wrong, ..) = runtime.call(auditor, Verdict, PATIENCE).unwrap();
    assert!(
        wrong.is_empty(),
        "the auditor saw wrong records: {wrong:#?}"
    );
    (exchanges, failed, findings)
}

/// Asserts every fault of `plan` that is listed was injected at least once.
fn assert_injected(injected: &Injected, expected: &[(Call, Fault)]) {
    for &(call, fault) in expected {
        assert!(
            injected.count(call, fault) > 0,
            "{fault:?} was never injected on {call:?}: the test tested nothing ({injected:?})"
        );
    }
}

/// The faults a healthy connection can meet and must survive.
const SURVIVABLE: [(Call, Fault, f64); 7] = [
    (Call::Accept, Fault::Interrupted, 0.2),
    (Call::Accept, Fault::TooManyFiles, 0.2),
    (Call::Accept, Fault::NoBuffers, 0.2),
    (Call::TcpRead, Fault::Interrupted, 0.2),
    (Call::TcpWrite, Fault::Interrupted, 0.1),
    (Call::TcpWrite, Fault::WouldBlock, 0.2),
    (Call::TcpWrite, Fault::ShortWrite, 0.3),
];

fn plan_of(faults: &[(Call, Fault, f64)]) -> FaultPlan {
    faults
        .iter()
        .fold(FaultPlan::new(SEED), |plan, &(call, fault, rate)| {
            plan.inject(call, fault, rate)
        })
}

// ----------------------------------------------------------------------
// UDP echo, every datagram accounted for.

/// A datagram of the UDP test: its number, then bytes derived from it.
const DATAGRAM: usize = 200;

fn datagram(seq: u32) -> Vec<u8> {
    let mut bytes = seq.to_be_bytes().to_vec();
    bytes.extend((0..DATAGRAM - 4).map(|i| (seq as usize * 7 + i) as u8));
    bytes
}

fn is_datagram(bytes: &[u8]) -> bool {
    bytes.len() == DATAGRAM && {
        let seq = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        bytes == datagram(seq).as_slice()
    }
}

/// What the UDP echo counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Well-formed datagrams received (and echoed).
    pub received: u64,
    /// Echoes handed back by a failed send.
    pub returned: u64,
    /// Receive errors reported (no data).
    pub recv_errors: u64,
    /// Inputs it should not have seen.
    pub wrong: u64,
}

#[derive(Debug)]
pub struct GetTally;

impl Request for GetTally {
    type Response = Tally;
}

/// Makes the UDP task send `count` datagrams of [`DATAGRAM`] bytes to an
/// address, all at once (so they leave in GSO runs).
#[derive(Debug)]
pub struct Blast(pub SocketAddr, pub u32);

#[sansio::task(output = SocketAddr)]
#[derive(Default)]
pub struct UdpEcho {
    socket: Option<UdpSocketId>,
    tally: Tally,
}

#[sansio::task]
impl UdpEcho {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let options = UdpOptions::default().recv_buffer(4 << 20);
        self.socket = Some(ctx.udp_bind("127.0.0.1:0".parse().unwrap(), options));
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        match bound.result {
            Ok(addr) => ctx.emit(addr),
            Err(_) => self.tally.wrong += 1,
        }
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
        if Some(packet.socket) != self.socket || !is_datagram(&packet.data) {
            self.tally.wrong += 1;
            return;
        }
        self.tally.received += 1;
        ctx.udp_send(packet.socket, packet.from, packet.data);
    }

    #[on_input]
    fn error(&mut self, _: &mut Ctx<Self>, error: UdpError) {
        if Some(error.socket) != self.socket {
            self.tally.wrong += 1;
            return;
        }
        match error.data {
            Some(data) if is_datagram(&data) => self.tally.returned += 1,
            Some(_) => self.tally.wrong += 1,
            None => self.tally.recv_errors += 1,
        }
    }

    #[on_input]
    fn blast(&mut self, ctx: &mut Ctx<Self>, Blast(to, count): Blast) {
        let Some(socket) = self.socket else { return };
        for seq in 0..count {
            ctx.udp_send(socket, to, PacketBuf::copy_from(&datagram(seq)));
        }
    }

    #[on_request]
    fn tally(&mut self, _: &mut Ctx<Self>, _: GetTally) -> Tally {
        self.tally
    }
}

#[sansio::worker]
pub enum UdpWorker {
    UdpEcho(UdpEcho),
}

fn udp_runtime(
    backend: Backend,
    plan: FaultPlan,
) -> (Runtime<UdpWorker>, TaskId<UdpEcho>, SocketAddr) {
    let runtime = Runtime::<UdpWorker>::builder()
        .workers(1)
        .backend(backend)
        .faults(plan)
        .build()
        .unwrap();
    let echo = runtime.spawn(UdpEcho::default()).unwrap();
    let addr = match next(&runtime) {
        Event::Output {
            output: UdpWorkerOutput::UdpEcho(addr),
            ..
        } => addr,
        other => panic!("expected the socket's address, got {other:?}"),
    };
    (runtime, echo, addr)
}

/// A client socket with room for every echo.
fn client() -> UdpSocket {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    socket.set_recv_buffer_size(16 << 20).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let socket: UdpSocket = socket.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    socket
}

/// Reads what `socket` has until nothing came for a while; returns the
/// sequence numbers of the well-formed datagrams and the count of others.
fn drain(socket: &UdpSocket, quiet: Duration) -> (Vec<u32>, u64) {
    let (mut seqs, mut malformed) = (Vec::new(), 0);
    let mut buf = [0u8; 2048];
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        if let Ok(len) = socket.recv(&mut buf) {
            last = Instant::now();
            if is_datagram(&buf[..len]) {
                seqs.push(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
            } else {
                malformed += 1;
            }
        }
    }
    (seqs, malformed)
}

fn totals(runtime: &Runtime<UdpWorker>) -> sansio::stats::WorkerStats {
    runtime.stats().workers[0].clone()
}

const UDP_SENT: u32 = 4000;

all_backend_tests! {
    fn tcp_bytes_arrive_whole_and_in_order_under_faults(backend: Backend) {
        let plan = plan_of(&SURVIVABLE);
        let injected = plan.injected();
        let (exchanges, failed, findings) = audited_echo(backend, plan);
        for (n, exchange) in exchanges.iter().enumerate() {
            assert!(!exchange.reset, "client {n}: its connection was reset");
            assert_eq!(exchange.got.len(), exchange.sent.len(), "client {n}: bytes lost");
            assert!(exchange.got == exchange.sent, "client {n}: bytes changed or reordered");
        }
        assert_eq!(failed, 0);
        let sums: u64 = exchanges.iter().map(|e| e.sent.iter().map(|&b| u64::from(b)).sum::<u64>()).sum();
        assert_eq!(findings.values().map(|a| a.sum).sum::<u64>(), sums, "the audit's sums");
        assert!(findings.values().all(|a| a.read == BYTES as u64 && a.ended == Some(false)), "{findings:?}");
        assert_injected(&injected, &SURVIVABLE.map(|(call, fault, _)| (call, fault)));
    }

    fn a_reset_connection_keeps_what_it_echoed_in_order(backend: Backend) {
        let mut faults = SURVIVABLE.to_vec();
        faults.push((Call::TcpRead, Fault::ConnectionReset, 0.01));
        faults.push((Call::TcpWrite, Fault::ConnectionReset, 0.01));
        let plan = plan_of(&faults);
        let injected = plan.injected();
        let (exchanges, failed, findings) = audited_echo(backend, plan);
        let mut short = 0;
        for (n, exchange) in exchanges.iter().enumerate() {
            assert!(
                exchange.sent.starts_with(&exchange.got),
                "client {n}: what came back ({} bytes) is not the start of what was sent",
                exchange.got.len()
            );
            if exchange.got.len() < exchange.sent.len() {
                short += 1;
            } else {
                assert!(!exchange.reset, "client {n}: reset after its whole echo");
            }
        }
        let resets = injected.count(Call::TcpRead, Fault::ConnectionReset)
            + injected.count(Call::TcpWrite, Fault::ConnectionReset);
        assert!(resets > 0, "no reset was injected: the test tested nothing");
        // Every injected reset broke one connection, which its task heard of
        // (and a broken connection's echo is cut short).
        assert_eq!(failed, resets);
        assert!(short <= failed, "{short} echoes were cut short, {failed} connections failed");
        let audited_failed = findings.values().filter(|a| a.ended == Some(true)).count() as u64;
        assert!(audited_failed <= failed, "{audited_failed} audited as failed, {failed} failed");
        // A connection that ended cleanly echoed everything.
        for audited in findings.values().filter(|a| a.ended == Some(false)) {
            assert_eq!(audited.read, BYTES as u64, "{audited:?}");
        }
    }

    fn udp_datagrams_are_echoed_or_counted_under_faults(backend: Backend) {
        let faults = [
            (Call::UdpRecv, Fault::Interrupted, 0.1),
            (Call::UdpRecv, Fault::NoBuffers, 0.05),
            (Call::UdpSend, Fault::Interrupted, 0.1),
            (Call::UdpSend, Fault::WouldBlock, 0.1),
            (Call::UdpSend, Fault::NoBuffers, 0.05),
            (Call::UdpSend, Fault::PartialBatch, 0.2),
        ];
        let plan = plan_of(&faults);
        let injected = plan.injected();
        let (runtime, echo, addr) = udp_runtime(backend, plan);
        // Two clients taking turns, so the echoes' destinations alternate
        // and a `sendmmsg` carries several messages (to cut short).
        let clients = [client(), client()];
        let receiving: Vec<_> = clients
            .iter()
            .map(|client| {
                let client = client.try_clone().unwrap();
                thread::spawn(move || drain(&client, Duration::from_secs(2)))
            })
            .collect();
        // Bursts of 50, paced, so the kernel rarely needs to drop (and what
        // it drops is counted).
        for burst in 0..UDP_SENT / 50 {
            for seq in burst * 50..(burst + 1) * 50 {
                clients[seq as usize % 2].send_to(&datagram(seq), addr).unwrap();
            }
            thread::sleep(Duration::from_millis(1));
        }
        let (mut seqs, mut malformed) = (Vec::new(), 0);
        for receiver in receiving {
            let (got, bad) = receiver.join().unwrap();
            seqs.extend(got);
            malformed += bad;
        }
        assert_eq!(malformed, 0, "malformed echoes");
        let mut unique = seqs.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seqs.len(), "an echo came twice");
        let tally = runtime.call(echo, GetTally, PATIENCE).unwrap();
        let mut stats = totals(&runtime);
        eventually("the worker's stats to show the last sends", || {
            stats = totals(&runtime);
            stats.udp_sent + stats.udp_send_errors >= tally.received
        });
        assert_eq!(tally.wrong, 0, "the task saw wrong inputs: {tally:?}");
        // Every datagram sent was received, or dropped by the kernel and
        // counted.
        assert_eq!(stats.udp_received, tally.received, "{stats:?}");
        assert_eq!(
            stats.udp_received + stats.udp_kernel_drops,
            u64::from(UDP_SENT),
            "sent {UDP_SENT}, received {}, counted as dropped {}",
            stats.udp_received,
            stats.udp_kernel_drops
        );
        // Every echo went out, or came back to the task, counted.
        assert_eq!(tally.returned, stats.udp_send_errors, "{tally:?} {stats:?}");
        assert_eq!(stats.udp_sent + stats.udp_send_errors, tally.received, "{stats:?}");
        assert_eq!(seqs.len() as u64, stats.udp_sent, "echoes that arrived");
        assert_eq!(tally.recv_errors, stats.udp_recv_errors, "{tally:?} {stats:?}");
        // ENOBUFS on a GSO run is not "GSO unsupported".
        assert_eq!(stats.udp_gso_disabled, 0, "{stats:?}");
        assert_injected(&injected, &faults.map(|(call, fault, _)| (call, fault)));
    }

    fn a_failed_receive_is_tried_again_without_a_new_arrival(backend: Backend) {
        // One burst: after a receive fails, what waits behind it is read
        // without another datagram arriving to wake the worker.
        let plan = FaultPlan::new(SEED).inject(Call::UdpRecv, Fault::NoBuffers, 0.3);
        let injected = plan.injected();
        let (runtime, _echo, addr) = udp_runtime(backend, plan);
        let client = client();
        for seq in 0..2000 {
            client.send_to(&datagram(seq), addr).unwrap();
        }
        let mut stats = totals(&runtime);
        eventually("every datagram received or counted as dropped", || {
            stats = totals(&runtime);
            stats.udp_received + stats.udp_kernel_drops == 2000
        });
        assert!(injected.count(Call::UdpRecv, Fault::NoBuffers) > 0);
        assert_eq!(stats.udp_recv_errors, injected.count(Call::UdpRecv, Fault::NoBuffers));
    }

    fn gso_stays_on_after_transient_errors_and_goes_off_when_unsupported(backend: Backend) {
        // ENOBUFS on a third of the sends, segmented or not: the runs that
        // failed come back, and GSO stays on.
        let plan = FaultPlan::new(SEED).inject(Call::UdpSend, Fault::NoBuffers, 0.3);
        let injected = plan.injected();
        let (runtime, echo, _) = udp_runtime(backend, plan);
        let peer = client();
        let to = peer.local_addr().unwrap();
        for _ in 0..20 {
            runtime.send(echo, Blast(to, 40)).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
        let (seqs, malformed) = drain(&peer, Duration::from_millis(500));
        let tally = runtime.call(echo, GetTally, PATIENCE).unwrap();
        let stats = totals(&runtime);
        assert!(injected.count(Call::UdpSend, Fault::NoBuffers) > 0);
        assert_eq!(malformed, 0);
        assert_eq!(stats.udp_gso_disabled, 0, "a transient error turned GSO off: {stats:?}");
        assert!(stats.udp_sent_segmented > 0, "nothing went out segmented: {stats:?}");
        assert_eq!(stats.udp_sent + stats.udp_send_errors, 800, "{stats:?}");
        assert_eq!(tally.returned, stats.udp_send_errors);
        assert_eq!(seqs.len() as u64, stats.udp_sent);
        drop(runtime);

        // EIO on a segmented send: the device cannot segment. GSO goes off
        // for the socket, and the same datagrams go out one by one.
        let plan = FaultPlan::new(SEED).inject(Call::UdpSend, Fault::GsoUnsupported, 1.0);
        let (runtime, echo, _) = udp_runtime(backend, plan);
        for _ in 0..5 {
            runtime.send(echo, Blast(to, 40)).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
        let (seqs, _) = drain(&peer, Duration::from_millis(500));
        let stats = totals(&runtime);
        assert_eq!(stats.udp_gso_disabled, 1, "{stats:?}");
        assert_eq!((stats.udp_sent, stats.udp_sent_segmented, stats.udp_send_errors), (200, 0, 0));
        assert_eq!(seqs.len(), 200);
    }

    fn an_interrupted_wait_is_a_wakeup_and_a_failed_one_ends_the_worker(backend: Backend) {
        // EINTR on half the waits: a wakeup like any other, nothing lost.
        let plan = FaultPlan::new(SEED).inject(Call::Wait, Fault::Interrupted, 0.5);
        let injected = plan.injected();
        let (runtime, _echo, addr) = udp_runtime(backend, plan);
        let client = client();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut echo = [0; 2048];
        for seq in 0..20 {
            client.send_to(&datagram(seq), addr).unwrap();
            let len = client.recv(&mut echo).expect("the echo, after interrupted waits");
            assert_eq!(&echo[..len], &datagram(seq)[..]);
        }
        assert!(injected.count(Call::Wait, Fault::Interrupted) > 0, "no wait was interrupted");
        runtime.shutdown(PATIENCE).unwrap();

        // ENOMEM from every wait: each worker ends at its first sleep, and
        // says so at once, then again at shutdown.
        let plan = FaultPlan::new(SEED).inject(Call::Wait, Fault::OutOfMemory, 1.0);
        let runtime = Runtime::<UdpWorker>::builder()
            .workers(2)
            .backend(backend)
            .faults(plan)
            .build()
            .unwrap();
        let mut failed = Vec::new();
        while failed.len() < 2 {
            match next(&runtime) {
                Event::WorkerFailed { worker, message } => {
                    assert!(
                        message.contains("poller failed") && message.contains("os error 12"),
                        "{message}"
                    );
                    failed.push(worker);
                }
                other => panic!("expected the workers' failures, got {other:?}"),
            }
        }
        failed.sort_unstable();
        assert_eq!(failed, [0, 1]);
        match runtime.shutdown(PATIENCE) {
            Err(sansio::Error::WorkerFailed { message, .. }) => {
                assert!(message.contains("poller failed"), "{message}");
            }
            other => panic!("shutdown should report the failed workers: {other:?}"),
        }
    }

    fn a_plan_that_cannot_be_is_refused(backend: Backend) {
        let plan = FaultPlan::new(1).inject(Call::TcpRead, Fault::WouldBlock, 0.1);
        let error = Runtime::<UdpWorker>::builder().backend(backend).faults(plan).build().unwrap_err();
        assert!(error.to_string().contains("WouldBlock cannot be injected on TcpRead"), "{error}");
        let plan = FaultPlan::new(1).inject(Call::UdpSend, Fault::NoBuffers, 1.5);
        let error = Runtime::<UdpWorker>::builder().backend(backend).faults(plan).build().unwrap_err();
        assert!(error.to_string().contains("not in 0..=1"), "{error}");
    }
}
