//! The worker's UDP sockets: binding, batched receive into pooled buffers,
//! and per-socket send queues flushed with `sendmmsg`.
//!
//! Sends are queued in order and flushed at the end of each batch of inputs,
//! before the worker sleeps; a socket the kernel will not take more from
//! (`WouldBlock`) keeps its queue and waits for writability, nothing is
//! dropped. A queue is bounded (`UdpOptions::send_queue`); a send beyond it,
//! a send the kernel refuses, and a send on a closed socket come back to the
//! task as [`UdpError`]s with their payload.
//!
//! Over 500 lines: about 940 of code, the rest unit tests. The send queue
//! (by `sendmmsg`, or through a completion backend), the GSO fall-back,
//! batched receives (read, or taken from the backend) and GRO splitting
//! all work on one socket entry's fields, so they stay together.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::sys::{
    self, BATCH, Batch, Coalesced, GRO_BUFFER, GRO_MESSAGES, IOVECS, Received, SendFailed,
    SendHeaders,
};
use super::table::Table;
use super::{NetInput, UdpError, UdpOptions, UdpPacket, UdpSocketId};
use crate::backend::{self, Datagram, Interest, Registry, watch_writable};
use crate::buf::PacketBuf;
use crate::faults::{self, Call};
use crate::id::RawId;
use crate::stats::Counters;

/// A payload waiting to be sent: owned, or shared by a fan-out.
pub(crate) enum Payload {
    Owned(PacketBuf),
    Shared(Arc<PacketBuf>),
}

impl Payload {
    fn bytes(&self) -> &[u8] {
        match self {
            Payload::Owned(buf) => buf,
            Payload::Shared(buf) => buf,
        }
    }

    /// The payload as a buffer of its own, to hand back to a task.
    pub(crate) fn into_buf(self) -> PacketBuf {
        match self {
            Payload::Owned(buf) => buf,
            Payload::Shared(shared) => {
                Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone())
            }
        }
    }
}

/// Hands a received datagram to the task that owns its socket.
fn deliver(
    entry: &Entry,
    from: SocketAddr,
    data: PacketBuf,
    packets: &mut Vec<(RawId, NetInput)>,
    counters: &mut Counters,
) {
    counters.udp_received += 1;
    packets.push((
        entry.owner,
        NetInput::UdpPacket(UdpPacket {
            socket: entry.id,
            from,
            data,
        }),
    ));
}

/// Delivers the datagrams of one message received with GRO on, each copied
/// into a buffer of its own; those above `max_datagram` are counted as
/// truncated and dropped, as they would have been without GRO.
fn split(
    entry: &Entry,
    data: &[u8],
    message: &Coalesced,
    packets: &mut Vec<(RawId, NetInput)>,
    counters: &mut Counters,
) {
    let Some(from) = message.from.filter(|_| !message.truncated) else {
        counters.udp_truncated += 1;
        return;
    };
    if data.is_empty() {
        deliver(
            entry,
            from,
            PacketBuf::with_capacity(entry.max_datagram),
            packets,
            counters,
        );
        return;
    }
    let segments = data.chunks(message.segment);
    if data.len() > message.segment {
        counters.udp_received_coalesced += segments.len() as u64;
    }
    for segment in segments {
        if segment.len() > entry.max_datagram {
            counters.udp_truncated += 1;
            continue;
        }
        let mut buf = PacketBuf::with_capacity(entry.max_datagram);
        buf.extend_from_slice(segment);
        deliver(entry, from, buf, packets, counters);
    }
}

/// Takes up to a batch of the datagrams the backend received for `entry`
/// (see `Registry::receive_datagrams`), each copied into a buffer of its
/// own (split, with GRO on) and delivered; the highest kernel drop count
/// they carried goes to `said`. Returns whether more are waiting.
fn take(
    entry: &Entry,
    registry: &mut dyn Registry,
    said: &mut Option<u32>,
    packets: &mut Vec<(RawId, NetInput)>,
    counters: &mut Counters,
) -> io::Result<bool> {
    let fd = entry.socket.as_raw_fd();
    if let Some(injected) = faults::error(Call::UdpRecv) {
        // As a failed `recvmmsg`: nothing taken; but a receive that ended
        // starts again, so that no number of failures in a row leaves the
        // socket deaf (the backend reports it again when datagrams come).
        let _ = registry.take_datagrams(fd, 0, &mut |_| {});
        return Err(injected);
    }
    let mut each = |datagram: Datagram<'_>| {
        let control = sys::control_said(datagram.control);
        if let Some(drops) = control.drops {
            *said = Some(said.map_or(drops, |said| said.max(drops)));
        }
        let from = sys::sender(datagram.name);
        if entry.gro {
            let message = Coalesced::new(from, datagram.payload.len(), datagram.truncated, control);
            split(entry, datagram.payload, &message, packets, counters);
            return;
        }
        match from {
            _ if datagram.truncated => counters.udp_truncated += 1,
            Some(from) => {
                let mut buf = PacketBuf::with_capacity(entry.max_datagram);
                buf.extend_from_slice(datagram.payload);
                deliver(entry, from, buf, packets, counters);
            }
            // As on the readiness path: no sender, counted as malformed.
            None => counters.udp_truncated += 1,
        }
    };
    let taken = registry.take_datagrams(fd, BATCH, &mut each)?;
    counters.udp_recv_buffers_exhausted += u64::from(taken.buffers_ran_out);
    Ok(taken.more)
}

/// Datagrams handed to the backend to send, with the headers of their
/// messages: the backend keeps the whole batch, payloads included, until
/// the kernel has sent each message (see `Registry::send_messages`).
pub(crate) struct SendBatch {
    headers: SendHeaders,
    datagrams: Vec<(SocketAddr, Payload)>,
}

impl backend::Outgoing for SendBatch {
    fn headers(&mut self) -> &mut [libc::mmsghdr] {
        self.headers.headers()
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// What became of a socket's sends through the backend.
enum Through {
    /// A batch is with the backend.
    InFlight,
    /// Nothing is in flight: the queue is empty, or `blocked` on a full
    /// socket.
    Settled { blocked: bool },
    /// The backend does not send (now): the caller sends the queue itself.
    Declined,
}

/// Puts datagrams taken out of `entry`'s queue back at its front, in their
/// order.
fn unsend(entry: &mut Entry, datagrams: impl DoubleEndedIterator<Item = (SocketAddr, Payload)>) {
    for datagram in datagrams.rev() {
        entry.queue.push_front(datagram);
    }
}

/// Sends `entry`'s queue through the backend, a batch at a time: takes
/// back the batch in flight once it is done and settles each message, then
/// hands the next batch over. Faults are injected as on `sendmmsg`, before
/// the batch goes.
#[expect(clippy::vec_box, reason = "the backend takes and gives back boxes")]
fn send_through(
    entry: &mut Entry,
    registry: &mut dyn Registry,
    batches: &mut Vec<Box<SendBatch>>,
    results: &mut Vec<i32>,
    errors: &mut VecDeque<(RawId, NetInput)>,
    counters: &mut Counters,
) -> Through {
    let fd = entry.socket.as_raw_fd();
    let mut blocked = false;
    loop {
        if entry.in_flight > 0 {
            let Some(done) = registry.take_sent(fd, results) else {
                return Through::InFlight;
            };
            entry.in_flight = 0;
            if let Ok(mut done) = done.into_any().downcast::<SendBatch>() {
                blocked |= settle(entry, &mut done, results, errors, counters);
                batches.push(done);
            }
            continue;
        }
        if blocked || entry.queue.is_empty() {
            return Through::Settled { blocked };
        }
        let mut batch = batches.pop().unwrap_or_else(|| {
            Box::new(SendBatch {
                headers: SendHeaders::new(),
                datagrams: Vec::with_capacity(IOVECS),
            })
        });
        let take = entry.queue.len().min(IOVECS);
        batch.datagrams.extend(entry.queue.drain(..take));
        let payloads = batch
            .datagrams
            .iter()
            .map(|(to, payload)| (to, payload.bytes()));
        let used = batch.headers.prepare(payloads, entry.gso);
        unsend(entry, batch.datagrams.drain(used..));
        let first = batch.headers.segments()[0];
        let injected = faults::send_error(Call::UdpSend, entry.blocked)
            .or_else(|| (first > 1).then(faults::gso_error).flatten());
        if let Some(error) = injected {
            // As if the kernel had refused the first message: the rest of
            // the chain is then cancelled.
            results.clear();
            results.push(-error.raw_os_error().unwrap_or(libc::EIO));
            blocked |= settle(entry, &mut batch, results, errors, counters);
            batches.push(batch);
            continue;
        }
        let messages = batch.headers.segments().len();
        let keep = faults::shorten(Call::UdpSend, messages);
        if keep < messages {
            let kept: usize = batch.headers.segments()[..keep].iter().sum();
            batch.headers.truncate(keep);
            unsend(entry, batch.datagrams.drain(kept..));
        }
        let count = batch.datagrams.len();
        match registry.send_messages(fd, batch) {
            Ok(()) => {
                entry.in_flight = count;
                return Through::InFlight;
            }
            Err(batch) => {
                if let Ok(mut batch) = batch.into_any().downcast::<SendBatch>() {
                    unsend(entry, batch.datagrams.drain(..));
                    batches.push(batch);
                }
                return Through::Declined;
            }
        }
    }
}

/// Settles a batch the backend is done with, message by message, by
/// `results` (bytes, or a negated `errno`; a message without one was not
/// tried): sent ones are counted; those the kernel would take later
/// (`EAGAIN`, which also returns `true`: wait for writability), or did not
/// try (`EINTR`, `ECANCELED` after a failed one), or refused as a GSO run
/// it cannot segment (GSO then goes off for the socket) go back to the
/// front of the queue, in order; the others come back to the task with
/// their error, counted.
fn settle(
    entry: &mut Entry,
    batch: &mut SendBatch,
    results: &[i32],
    errors: &mut VecDeque<(RawId, NetInput)>,
    counters: &mut Counters,
) -> bool {
    let mut blocked = false;
    let mut again = Vec::new();
    let mut datagrams = batch.datagrams.drain(..);
    for (message, &segments) in batch.headers.segments().iter().enumerate() {
        let result = results.get(message).copied().unwrap_or(-libc::ECANCELED);
        let run = datagrams.by_ref().take(segments);
        if result >= 0 {
            counters.udp_sent += segments as u64;
            if segments > 1 {
                counters.udp_sent_segmented += segments as u64;
            }
            run.for_each(drop);
            continue;
        }
        let error = io::Error::from_raw_os_error(-result);
        match -result {
            libc::EAGAIN => {
                blocked = true;
                again.extend(run);
            }
            libc::EINTR | libc::ECANCELED => again.extend(run),
            _ if segments > 1 && sys::gso_unsupported(&error) => {
                gso_off(entry, counters);
                again.extend(run);
            }
            _ => refuse_all(entry.owner, entry.id, run, &error, errors, counters),
        }
    }
    // None is left, as each message's datagrams were taken; to be sure.
    again.extend(datagrams);
    unsend(entry, again.into_iter());
    blocked
}

/// The error for a hand-over by a task that does not own the socket.
pub(crate) fn not_the_owner(socket: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("{socket} belongs to another task: only its owner can hand it over"),
    )
}

/// Hands a send that was not queued back to its sender, counted.
fn refuse(
    from: RawId,
    socket: UdpSocketId,
    to: SocketAddr,
    payload: Payload,
    error: io::Error,
    errors: &mut VecDeque<(RawId, NetInput)>,
    counters: &mut Counters,
) {
    counters.udp_send_errors += 1;
    errors.push_back((
        from,
        NetInput::UdpError(UdpError {
            socket,
            peer: Some(to),
            error,
            data: Some(payload.into_buf()),
        }),
    ));
}

/// Hands each of `datagrams`, sent on `socket` and refused with `error`,
/// back to the socket's owner, counted.
fn refuse_all(
    owner: RawId,
    socket: UdpSocketId,
    datagrams: impl Iterator<Item = (SocketAddr, Payload)>,
    error: &io::Error,
    errors: &mut VecDeque<(RawId, NetInput)>,
    counters: &mut Counters,
) {
    for (to, payload) in datagrams {
        refuse(
            owner,
            socket,
            to,
            payload,
            copy_error(error),
            errors,
            counters,
        );
    }
}

/// The kernel or the device cannot segment a GSO run on `entry`'s socket:
/// one datagram per message from now on, counted once.
fn gso_off(entry: &mut Entry, counters: &mut Counters) {
    if entry.gso {
        entry.gso = false;
        counters.udp_gso_disabled += 1;
        crate::log::event!(
            warn,
            "UDP socket {}: the kernel refused a GSO run; sending one datagram per message from now on",
            entry.id
        );
    }
}

struct Entry {
    id: UdpSocketId,
    owner: RawId,
    socket: UdpSocket,
    max_datagram: usize,
    queue_limit: usize,
    queue: VecDeque<(SocketAddr, Payload)>,
    /// Send runs to one peer as GSO messages: asked for, the kernel has it,
    /// and no GSO send has failed on this socket yet.
    gso: bool,
    /// `UDP_GRO` is on: receive coalesced messages and split them.
    gro: bool,
    /// The backend receives this socket's datagrams itself (io_uring's
    /// multishot receive); they are taken from it, not read, and sends go
    /// through it too.
    completion: bool,
    /// Datagrams handed to the backend to send (a batch out of `queue`),
    /// not yet known to be sent.
    in_flight: usize,
    /// Listed in `UdpSockets::dirty`.
    dirty: bool,
    /// Registered for writability, waiting for room to send.
    blocked: bool,
    /// Closed by its task (or the task ended) with datagrams still queued:
    /// no longer read or open for sends, removed once the queue is sent.
    closing: bool,
    /// The kernel's count of datagrams it dropped for this socket's full
    /// receive buffer, as last reported (`SO_RXQ_OVFL`).
    kernel_drops: u32,
    /// Received since the drop count was last read with `SO_MEMINFO`.
    drops_unread: bool,
    /// Receives that failed in a row: the socket is read again next turn
    /// (datagrams may wait behind the error, and an edge-triggered poller
    /// will not say so again) up to [`FAILED_READS`] times.
    failed_reads: u8,
}

/// Failed receives in a row after which a socket waits for its next
/// readiness instead of being read again next turn: an error that does not
/// pass must not keep the worker busy.
const FAILED_READS: u8 = 16;

/// A copy of `error` for each datagram of a failed message.
fn copy_error(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

/// The UDP sockets of one worker.
pub(crate) struct UdpSockets {
    entries: Table<UdpSocketId, Entry>,
    batch: Batch,
    received: Vec<Received>,
    /// Receive buffers for sockets with GRO on, allocated for the first.
    gro_bufs: Vec<Box<[u8]>>,
    /// Receive buffers for the others, [`BATCH`] of `recv_size` bytes: kept
    /// from one receive to the next, so that a receive replaces only the
    /// buffers that were filled (and handed to tasks), not all `BATCH`.
    /// At light load a batch holds a few datagrams, and taking and
    /// returning 32 buffers from the pool per wakeup was a cost of its own.
    recv_bufs: Vec<PacketBuf>,
    /// The capacity of the buffers in `recv_bufs`.
    recv_size: usize,
    coalesced: Vec<Coalesced>,
    /// Sockets with queued sends, flushed by `flush`.
    dirty: Vec<usize>,
    /// Sockets left readable when the worker stopped reading them to be
    /// fair to others; read again next turn.
    pub(crate) unread: Vec<usize>,
    /// When to read the kernel's drop count of the sockets that received
    /// since it was last read ([`DROPS_REFRESH`] after the first of them).
    drops_check: Option<Instant>,
    /// Batches for sends through the backend, back from it and kept for
    /// the next (boxed, as the backend takes them: no allocation per batch).
    #[expect(clippy::vec_box, reason = "the backend takes and gives back boxes")]
    send_batches: Vec<Box<SendBatch>>,
    /// Each message's result, as the backend hands a batch back.
    sent_results: Vec<i32>,
}

/// How long after a receive the kernel's drop count is read again: the
/// count that comes with each datagram (`SO_RXQ_OVFL`) misses the drops
/// after the last one to arrive, at the end of every flood.
const DROPS_REFRESH: Duration = Duration::from_millis(100);

/// Adds what the kernel's drop count `now` grew by since `last` (it only
/// grows, and wraps): a count read from a datagram queued before the last
/// refresh may be older than `last`, and adds nothing.
fn add_drops(last: &mut u32, now: u32, counters: &mut Counters) {
    let grew = now.wrapping_sub(*last);
    if grew < u32::MAX / 2 {
        counters.udp_kernel_drops += u64::from(grew);
        *last = now;
    }
}

impl UdpSockets {
    pub(crate) fn new() -> Self {
        UdpSockets {
            entries: Table::default(),
            batch: Batch::new(),
            received: Vec::with_capacity(BATCH),
            gro_bufs: Vec::new(),
            recv_bufs: Vec::with_capacity(BATCH),
            recv_size: 0,
            coalesced: Vec::with_capacity(GRO_MESSAGES),
            dirty: Vec::new(),
            unread: Vec::new(),
            drops_check: None,
            send_batches: Vec::new(),
            sent_results: Vec::new(),
        }
    }

    /// Binds a socket for `owner`, registering it under the token
    /// `token(index)`.
    pub(crate) fn bind(
        &mut self,
        id: UdpSocketId,
        owner: RawId,
        addr: SocketAddr,
        options: &UdpOptions,
        registry: &mut dyn Registry,
        token: impl Fn(usize) -> usize,
    ) -> io::Result<SocketAddr> {
        if self.entries.contains(&id) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{id} is already bound"),
            ));
        }
        if options.max_datagram == 0 || options.send_queue == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_datagram and send_queue must be at least 1",
            ));
        }
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_nonblocking(true)?;
        if options.reuse_address {
            socket.set_reuse_address(true)?;
        }
        if options.reuse_port {
            socket.set_reuse_port(true)?;
        }
        super::set_buffer_sizes(&socket, options.send_buffer, options.recv_buffer)?;
        socket.bind(&addr.into())?;
        let socket: UdpSocket = socket.into();
        let local = socket.local_addr()?;
        let gso = options.gso && sys::gso_supported(socket.as_raw_fd());
        if options.gso && !gso {
            crate::log::event!(
                debug,
                "UDP socket on {local}: GSO not available; sending one datagram per message"
            );
        }
        sys::report_drops(socket.as_raw_fd());
        // Without kernel support, receive datagram by datagram as usual.
        let gro = options.gro
            && match sys::enable_gro(socket.as_raw_fd()) {
                Ok(()) => true,
                Err(error) => {
                    crate::log::event!(
                        debug,
                        "UDP socket on {local}: GRO not available ({error}); receiving datagram by datagram"
                    );
                    false
                }
            };
        let index = self.entries.vacant();
        // No datagram is larger than 64 KiB: room for more would be unused.
        let payload = if gro {
            GRO_BUFFER
        } else {
            options.max_datagram.min(GRO_BUFFER)
        };
        let fd = socket.as_raw_fd();
        let completion = registry.receive_datagrams(fd, token(index), payload)?;
        if !completion {
            registry.register(fd, token(index), Interest::READ)?;
            if gro && self.gro_bufs.is_empty() {
                self.gro_bufs = (0..GRO_MESSAGES)
                    .map(|_| vec![0; GRO_BUFFER].into_boxed_slice())
                    .collect();
            }
        }
        let entry = Entry {
            id,
            owner,
            socket,
            max_datagram: options.max_datagram,
            queue_limit: options.send_queue,
            queue: VecDeque::new(),
            gso,
            gro,
            completion,
            in_flight: 0,
            dirty: false,
            blocked: false,
            closing: false,
            kernel_drops: 0,
            drops_unread: false,
            failed_reads: 0,
        };
        self.entries.insert(id, entry);
        Ok(local)
    }

    /// Queues `payload` for `to` on `socket`. On failure the error, for the
    /// sender (`from`), carries the payload back.
    pub(crate) fn send(
        &mut self,
        from: RawId,
        socket: UdpSocketId,
        to: SocketAddr,
        payload: Payload,
        errors: &mut VecDeque<(RawId, NetInput)>,
        counters: &mut Counters,
    ) {
        let Some((index, entry)) = self.entries.find_mut(&socket) else {
            let error =
                io::Error::new(io::ErrorKind::NotConnected, format!("{socket} is not open"));
            refuse(from, socket, to, payload, error, errors, counters);
            return;
        };
        if entry.queue.len() + entry.in_flight >= entry.queue_limit {
            let error = io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the send queue of {socket} is full ({} datagrams)",
                    entry.queue_limit
                ),
            );
            refuse(from, socket, to, payload, error, errors, counters);
            return;
        }
        entry.queue.push_back((to, payload));
        if !entry.dirty {
            entry.dirty = true;
            self.dirty.push(index);
        }
    }

    /// Closes `socket` (its task asked, or ended). What it had queued is
    /// still sent first: the socket stops receiving and taking sends at
    /// once, and goes away when its queue is empty (a datagram the kernel
    /// refuses then comes back to the task that bound it, if it is still
    /// there). Unknown ids are ignored: closing is idempotent.
    pub(crate) fn close(&mut self, socket: UdpSocketId, registry: &mut dyn Registry) {
        let Some(index) = self.entries.forget(&socket) else {
            return;
        };
        match self.entries.get_mut(index) {
            Some(entry) if !entry.queue.is_empty() || entry.in_flight > 0 => {
                entry.closing = true;
                if !entry.dirty && !entry.blocked {
                    entry.dirty = true;
                    self.dirty.push(index);
                }
            }
            _ => self.remove(index, registry),
        }
    }

    /// Gives `socket` from its owner `from` to `owner`: what it receives
    /// goes there from now on. Only its owner can give it away.
    pub(crate) fn set_owner(
        &mut self,
        socket: UdpSocketId,
        from: RawId,
        owner: RawId,
    ) -> io::Result<()> {
        let Some((_, entry)) = self.entries.find_mut(&socket) else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("{socket} is not open"),
            ));
        };
        if entry.owner != from {
            return Err(not_the_owner(&socket));
        }
        entry.owner = owner;
        Ok(())
    }

    fn remove(&mut self, index: usize, registry: &mut dyn Registry) {
        if let Some(entry) = self.entries.take(index) {
            // Deregistering a socket about to be closed cannot meaningfully
            // fail; closing it removes it from epoll regardless.
            let _ = registry.deregister(entry.socket.as_raw_fd());
        }
    }

    /// A socket became writable: flush its queue at the next `flush`.
    pub(crate) fn writable(&mut self, index: usize) {
        if let Some(entry) = self.entries.get_mut(index)
            && !entry.dirty
            && (!entry.queue.is_empty() || entry.in_flight > 0)
        {
            entry.dirty = true;
            self.dirty.push(index);
        }
    }

    /// Whether sends are queued and not blocked.
    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Sends what the dirty sockets have queued, a batch per system call,
    /// until each is empty or the kernel would block.
    pub(crate) fn flush(
        &mut self,
        registry: &mut dyn Registry,
        token: impl Fn(usize) -> usize,
        errors: &mut VecDeque<(RawId, NetInput)>,
        counters: &mut Counters,
    ) {
        let dirty = std::mem::take(&mut self.dirty);
        for &index in &dirty {
            let Some(entry) = self.entries.get_mut(index) else {
                continue;
            };
            entry.dirty = false;
            let fd = entry.socket.as_raw_fd();
            let mut blocked = false;
            let mut handed_over = false;
            if entry.completion {
                let batches = &mut self.send_batches;
                match send_through(
                    entry,
                    registry,
                    batches,
                    &mut self.sent_results,
                    errors,
                    counters,
                ) {
                    // The batch's completion makes the socket dirty again.
                    Through::InFlight => continue,
                    Through::Settled { blocked: now } => {
                        blocked = now;
                        handed_over = true;
                    }
                    Through::Declined => {}
                }
            }
            while !handed_over && !entry.queue.is_empty() {
                let datagrams = entry
                    .queue
                    .iter()
                    .map(|(to, payload)| (to, payload.bytes()));
                match self.batch.send(fd, datagrams, entry.gso, entry.blocked) {
                    Ok(sent) => {
                        counters.udp_sent += sent.datagrams as u64;
                        counters.udp_sent_segmented += sent.segmented as u64;
                        entry.queue.drain(..sent.datagrams);
                    }
                    Err(SendFailed { error, .. }) if error.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(SendFailed { error, .. }) if error.kind() == io::ErrorKind::Interrupted => {
                    }
                    Err(SendFailed { error, datagrams })
                        if datagrams > 1 && sys::gso_unsupported(&error) =>
                    {
                        // The kernel or the device cannot segment (no
                        // checksum offload, checksums off): send one
                        // datagram per message on this socket from now on;
                        // the run goes again that way.
                        gso_off(entry, counters);
                    }
                    Err(SendFailed { error, datagrams }) => {
                        // The first message failed (refused, too big, no
                        // buffer space…): its datagrams go back, each with
                        // the error, and the rest go on. GSO stays on: the
                        // error was not about segmenting.
                        let (owner, id) = (entry.owner, entry.id);
                        let run = entry.queue.drain(..datagrams.min(entry.queue.len()));
                        refuse_all(owner, id, run, &error, errors, counters);
                    }
                }
            }
            if entry.closing && entry.queue.is_empty() && entry.in_flight == 0 {
                self.remove(index, registry);
                continue;
            }
            if let Err(error) =
                watch_writable(registry, fd, token(index), blocked, &mut entry.blocked)
            {
                counters.udp_send_errors += 1;
                errors.push_back((
                    entry.owner,
                    NetInput::UdpError(UdpError {
                        socket: entry.id,
                        peer: None,
                        error,
                        data: None,
                    }),
                ));
                if entry.closing {
                    // It can never drain: what is left is dropped, counted.
                    counters.udp_send_errors += entry.queue.len() as u64;
                    self.remove(index, registry);
                }
            }
        }
        // Keep the vector's memory for the next turn.
        let mut dirty = dirty;
        dirty.clear();
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// Reads one batch from socket `index` into `packets` (for their owner).
    /// Returns whether the socket may have more: a full batch was read.
    /// Truncated datagrams are counted and dropped.
    pub(crate) fn receive(
        &mut self,
        index: usize,
        registry: &mut dyn Registry,
        packets: &mut Vec<(RawId, NetInput)>,
        counters: &mut Counters,
    ) -> Result<bool, (RawId, UdpError)> {
        let Some(entry) = self.entries.get(index) else {
            return Ok(false);
        };
        if entry.closing {
            // A closing socket only sends what it has left. What the
            // backend receives for it meanwhile is dropped, as the kernel
            // drops what a closed socket had: it must not hold buffers the
            // worker's other sockets receive into.
            if entry.completion {
                let fd = entry.socket.as_raw_fd();
                return Ok(registry
                    .take_datagrams(fd, BATCH, &mut |_| {})
                    .is_ok_and(|taken| taken.more));
            }
            return Ok(false);
        }
        let fd = entry.socket.as_raw_fd();
        let mut said = None;
        let read = if entry.completion {
            take(entry, registry, &mut said, packets, counters)
        } else if entry.gro {
            self.batch
                .recv_coalesced(fd, &mut self.gro_bufs, &mut self.coalesced)
                .map(|got| {
                    for (buf, message) in self.gro_bufs.iter().zip(&self.coalesced).take(got) {
                        split(entry, &buf[..message.len], message, packets, counters);
                    }
                    got == GRO_MESSAGES
                })
        } else {
            if self.recv_size != entry.max_datagram {
                self.recv_bufs.clear();
                self.recv_size = entry.max_datagram;
            }
            let size = self.recv_size;
            let missing = BATCH - self.recv_bufs.len();
            self.recv_bufs
                .extend((0..missing).map(|_| PacketBuf::with_capacity(size)));
            let bufs = &mut self.recv_bufs;
            self.batch.recv(fd, bufs, &mut self.received).map(|got| {
                // Each filled buffer is replaced where it stands, so that
                // those not filled keep their places, and their receive
                // headers stay ready for the next receive.
                for (slot, meta) in bufs[..got].iter_mut().zip(&self.received) {
                    let buf = std::mem::replace(slot, PacketBuf::with_capacity(size));
                    match meta.from {
                        _ if meta.truncated => counters.udp_truncated += 1,
                        Some(from) => deliver(entry, from, buf, packets, counters),
                        // A datagram without a sender address cannot be
                        // answered or attributed: count it as malformed.
                        None => counters.udp_truncated += 1,
                    }
                }
                got == BATCH
            })
        };
        // The kernel's drop count, as the newest datagram of the batch said
        // it: what it grew by since the last one is counted.
        // (Taken datagrams said it as they were delivered.)
        if !entry.completion {
            said = if entry.gro {
                self.coalesced
                    .iter()
                    .filter_map(|message| message.drops)
                    .max()
            } else {
                self.received.iter().filter_map(|meta| meta.drops).max()
            };
        }
        let (owner, id) = (entry.owner, entry.id);
        let Some(entry) = self.entries.get_mut(index) else {
            return Ok(false);
        };
        if read.is_ok() {
            if let Some(drops) = said {
                add_drops(&mut entry.kernel_drops, drops, counters);
            }
            if !entry.drops_unread {
                entry.drops_unread = true;
                self.drops_check
                    .get_or_insert_with(|| Instant::now() + DROPS_REFRESH);
            }
        }
        match read {
            Ok(more) => {
                entry.failed_reads = 0;
                Ok(more)
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                entry.failed_reads = 0;
                Ok(false)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(error) => {
                counters.udp_recv_errors += 1;
                entry.failed_reads = entry.failed_reads.saturating_add(1);
                if entry.failed_reads <= FAILED_READS {
                    self.unread.push(index);
                }
                Err((
                    owner,
                    UdpError {
                        socket: id,
                        peer: None,
                        error,
                        data: None,
                    },
                ))
            }
        }
    }

    /// Open sockets.
    pub(crate) fn len(&self) -> usize {
        self.entries.open()
    }

    /// When the kernel's drop counts are due to be read.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.drops_check
    }

    /// Reads the kernel's drop count of each socket that received since it
    /// was last read, once [`DROPS_REFRESH`] has passed.
    pub(crate) fn refresh_drops(&mut self, now: Instant, counters: &mut Counters) {
        if self.drops_check.is_none_or(|due| due > now) {
            return;
        }
        self.drops_check = None;
        for (_, entry) in self.entries.iter_mut() {
            if std::mem::take(&mut entry.drops_unread)
                && let Some(drops) = sys::kernel_drops(entry.socket.as_raw_fd())
            {
                add_drops(&mut entry.kernel_drops, drops, counters);
            }
        }
    }

    /// Whether closed sockets still have datagrams to send.
    pub(crate) fn lingering(&self) -> bool {
        self.entries.iter().any(|(_, entry)| entry.closing)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::backend::Poller;
    use crate::backend::mio::MioPoller;

    const OWNER: RawId = RawId {
        group: 0,
        slot: 0,
        generation: 0,
    };

    /// A worker's UDP sockets with one socket bound on loopback, and a peer.
    fn bound(options: &UdpOptions) -> (UdpSockets, Box<dyn Registry>, UdpSocketId, UdpSocket) {
        let (poller, _waker) = MioPoller::new(&crate::backend::PollerOptions::default()).unwrap();
        let mut registry = poller.registry().unwrap();
        let mut sockets = UdpSockets::new();
        let id = UdpSocketId::new(0, OWNER, 0);
        let addr = "127.0.0.1:0".parse().unwrap();
        sockets
            .bind(id, OWNER, addr, options, registry.as_mut(), |i| i)
            .unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (sockets, registry, id, peer)
    }

    /// Queues `count` datagrams of 100 bytes to `peer`, flushes, and checks
    /// they all arrive, in order, one by one.
    fn send_run(
        sockets: &mut UdpSockets,
        registry: &mut dyn Registry,
        id: UdpSocketId,
        peer: &UdpSocket,
        count: u8,
    ) -> Counters {
        let mut counters = Counters::default();
        let mut errors = VecDeque::new();
        let to = peer.local_addr().unwrap();
        for n in 0..count {
            let payload = Payload::Owned(PacketBuf::copy_from(&[n; 100]));
            sockets.send(OWNER, id, to, payload, &mut errors, &mut counters);
        }
        let give_up = Instant::now() + Duration::from_secs(5);
        while sockets.has_dirty() && Instant::now() < give_up {
            sockets.flush(registry, |i| i, &mut errors, &mut counters);
        }
        assert!(errors.is_empty(), "{errors:?}");
        let mut buf = [0u8; 2048];
        for n in 0..count {
            let len = peer.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], &[n; 100]);
        }
        counters
    }

    /// Turns UDP checksums off for `socket` (`SO_NO_CHECK`): the kernel
    /// then refuses GSO sends (`EINVAL`) but still takes plain ones.
    fn checksums_off(socket: &UdpSocket) {
        let on: libc::c_int = 1;
        // SAFETY: `on` is valid for reads of the size given.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&raw const on).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0, "{}", io::Error::last_os_error());
    }

    /// Receives what one socket has now; returns the payloads.
    fn receive_all(
        sockets: &mut UdpSockets,
        registry: &mut dyn Registry,
        index: usize,
        counters: &mut Counters,
    ) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(5);
        while packets.is_empty() && Instant::now() < give_up {
            sockets
                .receive(index, registry, &mut packets, counters)
                .unwrap();
        }
        packets
            .into_iter()
            .map(|(_, input)| match input {
                NetInput::UdpPacket(packet) => packet.data.to_vec(),
                other => panic!("expected a datagram, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn kept_receive_buffers_fit_each_sockets_largest_datagram() {
        // The receive buffers are kept from one receive to the next: a
        // socket with larger datagrams after one with small ones must not
        // find them truncated, and buffers left over from a batch must not
        // show old bytes.
        let (mut sockets, mut registry, _, peer) = bound(&UdpOptions::default().max_datagram(100));
        let large = UdpSocketId::new(0, OWNER, 1);
        let loopback = "127.0.0.1:0".parse().unwrap();
        let large_addr = sockets
            .bind(
                large,
                OWNER,
                loopback,
                &UdpOptions::default().max_datagram(3000),
                registry.as_mut(),
                |i| i,
            )
            .unwrap();
        let small_addr = sockets.entries.get(0).unwrap().socket.local_addr().unwrap();
        let large_index = 1;
        let mut counters = Counters::default();

        peer.send_to(&[1; 3000], large_addr).unwrap();
        assert_eq!(
            receive_all(&mut sockets, registry.as_mut(), large_index, &mut counters),
            vec![vec![1; 3000]]
        );
        // More than a batch: every kept buffer is replaced by a small one.
        let count = BATCH as u8 + 8;
        for n in 0..count {
            peer.send_to(&[n; 50], small_addr).unwrap();
        }
        let mut got = Vec::new();
        while got.len() < usize::from(count) {
            got.extend(receive_all(
                &mut sockets,
                registry.as_mut(),
                0,
                &mut counters,
            ));
        }
        assert_eq!(got, (0..count).map(|n| vec![n; 50]).collect::<Vec<_>>());
        peer.send_to(&[9; 7], small_addr).unwrap();
        assert_eq!(
            receive_all(&mut sockets, registry.as_mut(), 0, &mut counters),
            vec![vec![9; 7]]
        );
        peer.send_to(&[2; 3000], large_addr).unwrap();
        assert_eq!(
            receive_all(&mut sockets, registry.as_mut(), large_index, &mut counters),
            vec![vec![2; 3000]]
        );
        assert_eq!(counters.udp_truncated, 0);
        assert_eq!(counters.udp_received, u64::from(count) + 3);
    }

    #[test]
    fn a_run_goes_out_in_gso_messages() {
        let (mut sockets, mut registry, id, peer) = bound(&UdpOptions::default());
        let gso = sockets.entries.get(0).unwrap().gso;
        let counters = send_run(&mut sockets, registry.as_mut(), id, &peer, 10);
        assert_eq!(counters.udp_sent, 10);
        assert_eq!(counters.udp_sent_segmented, if gso { 10 } else { 0 });
        assert_eq!(counters.udp_gso_disabled, 0);
    }

    #[test]
    fn a_refused_gso_run_goes_again_datagram_by_datagram() {
        let (mut sockets, mut registry, id, peer) = bound(&UdpOptions::default());
        let entry = sockets.entries.get(0).unwrap();
        assert!(
            entry.gso,
            "this kernel has no UDP_SEGMENT (GSO): run the tests on Linux 4.18 or later"
        );
        checksums_off(&entry.socket);
        let counters = send_run(&mut sockets, registry.as_mut(), id, &peer, 10);
        assert_eq!(counters.udp_gso_disabled, 1);
        assert_eq!((counters.udp_sent, counters.udp_sent_segmented), (10, 0));
        assert_eq!(counters.udp_send_errors, 0);
        assert!(!sockets.entries.get(0).unwrap().gso);
    }

    #[test]
    fn gso_off_sends_one_datagram_per_message() {
        let (mut sockets, mut registry, id, peer) = bound(&UdpOptions::default().gso(false));
        let counters = send_run(&mut sockets, registry.as_mut(), id, &peer, 10);
        assert_eq!((counters.udp_sent, counters.udp_sent_segmented), (10, 0));
    }

    /// Sends through an io_uring worker's ring: its sockets' sends are
    /// batches of linked `sendmsg`s, settled when the ring says they are
    /// done.
    #[cfg(feature = "io-uring")]
    mod through_the_ring {
        use super::*;
        use crate::backend::uring::UringPoller;

        fn bound(options: &UdpOptions) -> (UdpSockets, Box<dyn Registry>, UringPoller, UdpSocket) {
            let (poller, _waker) =
                UringPoller::new(&crate::backend::PollerOptions::default()).unwrap();
            let mut registry = poller.registry().unwrap();
            let mut sockets = UdpSockets::new();
            let id = UdpSocketId::new(0, OWNER, 0);
            let addr = "127.0.0.1:0".parse().unwrap();
            sockets
                .bind(id, OWNER, addr, options, registry.as_mut(), |i| i)
                .unwrap();
            assert!(
                sockets.entries.get(0).unwrap().completion,
                "io_uring here cannot receive into buffer rings (Linux 6.0 is needed)"
            );
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            (sockets, registry, poller, peer)
        }

        /// Flushes and waits for the ring (5 s at most) until socket 0 has
        /// nothing queued or in flight.
        fn drive(
            sockets: &mut UdpSockets,
            registry: &mut dyn Registry,
            poller: &mut UringPoller,
            errors: &mut VecDeque<(RawId, NetInput)>,
            counters: &mut Counters,
        ) {
            let give_up = Instant::now() + Duration::from_secs(5);
            let mut ready = Vec::new();
            let busy = |sockets: &UdpSockets| {
                let entry = sockets.entries.get(0).unwrap();
                !entry.queue.is_empty() || entry.in_flight > 0
            };
            while busy(sockets) && Instant::now() < give_up {
                sockets.flush(registry, |i| i, errors, counters);
                ready.clear();
                poller
                    .wait(Some(Instant::now() + Duration::from_millis(10)), &mut ready)
                    .unwrap();
                for readiness in ready.iter().filter(|readiness| readiness.writable) {
                    sockets.writable(readiness.token);
                }
            }
            assert!(!busy(sockets), "the sends never finished");
        }

        /// Queues `count` datagrams of `size` bytes (the n-th filled with
        /// n) to `peer`, flushes and waits for the ring until none is
        /// queued or in flight, and checks they arrive in order.
        fn send_all(
            sockets: &mut UdpSockets,
            registry: &mut dyn Registry,
            poller: &mut UringPoller,
            peer: &UdpSocket,
            count: u8,
            size: usize,
        ) -> Counters {
            let mut counters = Counters::default();
            let mut errors = VecDeque::new();
            let id = UdpSocketId::new(0, OWNER, 0);
            let to = peer.local_addr().unwrap();
            for n in 0..count {
                let payload = Payload::Owned(PacketBuf::copy_from(&vec![n; size]));
                sockets.send(OWNER, id, to, payload, &mut errors, &mut counters);
            }
            drive(sockets, registry, poller, &mut errors, &mut counters);
            assert!(errors.is_empty(), "{errors:?}");
            let mut buf = vec![0u8; size + 1];
            for n in 0..count {
                let len = peer.recv(&mut buf).unwrap();
                assert_eq!(&buf[..len], &vec![n; size][..], "datagram {n}");
            }
            counters
        }

        #[test]
        fn a_run_goes_out_in_gso_messages() {
            let (mut sockets, mut registry, mut poller, peer) = bound(&UdpOptions::default());
            assert!(
                sockets.entries.get(0).unwrap().gso,
                "this kernel has no UDP_SEGMENT"
            );
            let counters = send_all(&mut sockets, registry.as_mut(), &mut poller, &peer, 10, 100);
            assert_eq!((counters.udp_sent, counters.udp_sent_segmented), (10, 10));
            assert_eq!(counters.udp_gso_disabled, 0);
        }

        #[test]
        fn a_refused_gso_run_goes_again_datagram_by_datagram() {
            let (mut sockets, mut registry, mut poller, peer) = bound(&UdpOptions::default());
            checksums_off(&sockets.entries.get(0).unwrap().socket);
            let counters = send_all(&mut sockets, registry.as_mut(), &mut poller, &peer, 10, 100);
            assert_eq!(counters.udp_gso_disabled, 1);
            assert_eq!((counters.udp_sent, counters.udp_sent_segmented), (10, 0));
            assert_eq!(counters.udp_send_errors, 0);
        }

        #[test]
        fn more_than_a_batch_to_a_small_send_buffer_arrives_whole_and_in_order() {
            // One datagram per message, 70 messages: three batches, each
            // in flight alone, through a send buffer of a few datagrams
            // (and few enough for the peer's receive buffer to hold).
            let options = UdpOptions::default().gso(false).send_buffer(4096);
            let (mut sockets, mut registry, mut poller, peer) = bound(&options);
            let counters = send_all(&mut sockets, registry.as_mut(), &mut poller, &peer, 70, 500);
            assert_eq!((counters.udp_sent, counters.udp_send_errors), (70, 0));
        }

        #[test]
        fn a_refused_datagram_comes_back_and_the_rest_go() {
            let (mut sockets, mut registry, mut poller, peer) =
                bound(&UdpOptions::default().gso(false).max_datagram(70_000));
            let mut counters = Counters::default();
            let mut errors = VecDeque::new();
            let id = UdpSocketId::new(0, OWNER, 0);
            let to = peer.local_addr().unwrap();
            // Too large for UDP (EMSGSIZE), between two that go.
            for size in [10, 66_000, 20] {
                let payload = Payload::Owned(PacketBuf::copy_from(&vec![1; size]));
                sockets.send(OWNER, id, to, payload, &mut errors, &mut counters);
            }
            drive(
                &mut sockets,
                registry.as_mut(),
                &mut poller,
                &mut errors,
                &mut counters,
            );
            assert_eq!((counters.udp_sent, counters.udp_send_errors), (2, 1));
            match errors.pop_front() {
                Some((_, NetInput::UdpError(error))) => {
                    assert_eq!(error.error.raw_os_error(), Some(libc::EMSGSIZE));
                    assert_eq!(error.data.map(|data| data.len()), Some(66_000));
                }
                other => panic!("expected the refused datagram back, got {other:?}"),
            }
            let mut buf = [0u8; 64];
            assert_eq!(peer.recv(&mut buf).unwrap(), 10);
            assert_eq!(peer.recv(&mut buf).unwrap(), 20);
        }
    }
}
