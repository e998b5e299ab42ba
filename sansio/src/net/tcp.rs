//! The worker's TCP listeners and connections.
//!
//! Reading: a readable connection is read in chunks into pooled buffers,
//! each delivered as `TcpEvent::Data`, until it would block (or a fair share
//! of reads, then again next turn); end of stream is `PeerClosed`. Where the
//! backend reads connections itself (io_uring: a multishot `recv` into its
//! buffer rings, `Registry::receive_stream`), the chunks it read are taken
//! from it instead, copied into pooled buffers, with the same events.
//!
//! Writing, with backpressure: `tcp_send` queues a buffer on its connection;
//! queues are flushed after each batch of inputs. What the kernel will not
//! take yet stays queued, and the connection waits for writability. A queue
//! is bounded in bytes (`TcpOptions::send_limit`): a send beyond it comes back
//! as `SendFailed` with its data, and so does every later send until the
//! queue has drained, when `Writable` says so — so what a task re-sends
//! after `Writable` goes out in order. Where the backend reads a
//! connection, it sends its queue too (`Registry::send_messages`): a batch
//! of queued buffers at a time, each sent whole (`MSG_WAITALL`), still
//! counted against the limit until the kernel is done with them; a batch
//! still in the kernel at a flush is a write that would block.
//!
//! Closing is graceful: `tcp_close` and `tcp_shutdown_write` take effect once
//! the queue is empty and no refused send is outstanding. A connection that
//! had refusals first says `Writable`, and what its task re-sends then is
//! sent before the close.
//!
//! Over 500 lines on purpose: this is one connection's whole state machine
//! (connect, accept with back-off, read, queued writes, shutdown, graceful
//! close with its deadline, abort). Its flags (`close`, `rejecting`,
//! `write_shut`, `read_closed`, …) are read together on every path; split
//! over files, they would sit away from the code that sets them.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::sys::{QueuedBatch, Sends, requeue};
use super::table::Table;
use super::{NetInput, Source, TcpConnId, TcpEvent, TcpListenerId, TcpOptions};
use crate::backend::{Interest, Registry, watch_writable};
use crate::buf::PacketBuf;
use crate::faults::{self, Call};
use crate::id::RawId;
use crate::stats::Counters;

/// Accepts per listener per turn, and reads per connection per turn, before
/// others get theirs.
const PER_TURN: usize = 16;

/// The largest chunk a backend that reads connections itself is asked for
/// (its buffers are that large; `TcpOptions::read_chunk` above it is read
/// in chunks of this size).
const BACKEND_CHUNK_MAX: usize = 64 << 10;

/// Takes a connection the backend accepted on `listener` (see
/// `Registry::accept_connections`), with its peer's address, as `accept`
/// would give it: `WouldBlock` when none is waiting.
fn take_accepted(
    registry: &mut dyn Registry,
    listener: &TcpListener,
) -> io::Result<(TcpStream, SocketAddr)> {
    let mut connection = None;
    registry.take_accepted(listener.as_raw_fd(), 1, &mut |fd| connection = Some(fd))?;
    let stream = TcpStream::from(connection.ok_or(io::ErrorKind::WouldBlock)?);
    // A peer gone before it was asked about: as an accept of a connection
    // aborted on the way, the next one may be fine.
    let peer = stream
        .peer_addr()
        .map_err(|_| io::Error::from_raw_os_error(libc::ECONNABORTED))?;
    Ok((stream, peer))
}

/// Starts the reads of a connection, by the backend where it reads
/// connections itself (returns `true`), or else registers it for
/// readability (`interest`, which must include it).
fn watch_reads(
    registry: &mut dyn Registry,
    stream: &TcpStream,
    token: usize,
    options: &TcpOptions,
    interest: Interest,
) -> io::Result<bool> {
    let fd = stream.as_raw_fd();
    let chunk = options.read_chunk.min(BACKEND_CHUNK_MAX);
    if registry.receive_stream(fd, token, chunk)? {
        return Ok(true);
    }
    registry.register(fd, token, interest)?;
    Ok(false)
}

struct Listener {
    id: TcpListenerId,
    owner: RawId,
    listener: TcpListener,
    options: TcpOptions,
    /// The back-off after accepts failed for want of resources (zero when
    /// the last accept worked).
    backoff: Duration,
    /// Connections it accepted that are still open.
    open: usize,
    /// The backend accepts its connections (`Registry::accept_connections`):
    /// they are taken, not accepted.
    backend_accepts: bool,
}

/// The first wait before accepting again after `EMFILE` and its kind; it
/// doubles with each failure in a row, up to [`MAX_ACCEPT_BACKOFF`].
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Sets the socket buffer sizes the options ask for.
fn set_buffers(socket: &Socket, options: &TcpOptions) -> io::Result<()> {
    super::set_buffer_sizes(socket, options.send_buffer, options.recv_buffer)
}

/// Whether a failed accept was about that one connection (it was aborted,
/// or the network failed under it): the next one may be fine, so accepting
/// goes on (accept(2) says to treat these like `EAGAIN` and retry).
fn lost_connection(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EPROTO
                | libc::EPERM
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::ENONET
                | libc::EHOSTUNREACH
                | libc::ENETDOWN
                | libc::ENETUNREACH
        )
    )
}

struct Conn {
    id: TcpConnId,
    owner: RawId,
    stream: TcpStream,
    options: TcpOptions,
    /// Waiting for a non-blocking connect to complete.
    connecting: bool,
    queue: VecDeque<PacketBuf>,
    queued_bytes: usize,
    /// Registered for writability (the kernel would not take more).
    blocked: bool,
    /// Refusing sends since one went over the limit, until the queue drains.
    rejecting: bool,
    /// Say `Writable` when the queue drains.
    notify_writable: bool,
    /// Listed in `TcpSockets::dirty`.
    dirty: bool,
    /// Shut down writing once the queue is flushed.
    shutdown_write: bool,
    /// Writing has been shut down.
    write_shut: bool,
    /// Close once the queue is flushed.
    close: bool,
    /// When a graceful close gives up and resets the connection.
    close_by: Option<Instant>,
    /// The listener that accepted it (index and id), for its count.
    listener: Option<(usize, TcpListenerId)>,
    /// The peer has closed its side: no more reading.
    read_closed: bool,
    /// The backend reads it (`Registry::receive_stream`): its chunks are
    /// taken, not read, and its queue is sent by the backend too.
    backend_reads: bool,
    /// Buffers of the queue handed to the backend to send, not yet settled
    /// (they are out of `queue`, still in `queued_bytes`).
    in_flight: usize,
    /// A batch was still in the kernel at a flush.
    waiting: bool,
    /// The backend makes its connect (`Registry::connect_stream`): not
    /// registered until it has ended.
    backend_connects: bool,
}

/// The most buffers of a connection's queue handed to the backend at once.
const BATCH_MAX: usize = 64;

/// How a connection's queued buffers are sent by the backend: each whole
/// (`MSG_WAITALL`: the kernel goes on until every byte went, so a linked
/// message never starts before the one ahead of it ended).
const STREAM_SENDS: Sends = Sends::Messages((libc::MSG_WAITALL | libc::MSG_NOSIGNAL) as u32);

/// A network event for a task.
type Outbox = VecDeque<(RawId, NetInput)>;

fn event(owner: RawId, event: TcpEvent) -> (RawId, NetInput) {
    (owner, NetInput::Tcp(event))
}

/// The TCP sockets of one worker.
#[derive(Default)]
pub(crate) struct TcpSockets {
    listeners: Table<TcpListenerId, Listener>,
    conns: Table<TcpConnId, Conn>,
    dirty: Vec<usize>,
    /// Sources left with work when their turn ended: served again next turn.
    pub(crate) unserved: Vec<Source>,
    /// Accepted connections get their numbers from here.
    accepted: u32,
    /// Connections closing gracefully: their deadline, index and id.
    closing: Vec<(Instant, usize, TcpConnId)>,
    /// Listeners to accept on again after a back-off: when, index and id.
    accept_retries: Vec<(Instant, usize, TcpListenerId)>,
    /// Each message's result of a batch the backend sent.
    results: Vec<i32>,
    /// The worker these sockets belong to, for accepted connections' ids.
    worker: u16,
}

impl TcpSockets {
    pub(crate) fn new(worker: u16) -> Self {
        TcpSockets {
            worker,
            ..TcpSockets::default()
        }
    }

    pub(crate) fn listen(
        &mut self,
        id: TcpListenerId,
        owner: RawId,
        addr: SocketAddr,
        options: &TcpOptions,
        registry: &mut dyn Registry,
    ) -> io::Result<SocketAddr> {
        options.check_listener()?;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_reuse_address(options.reuse_address)?;
        if options.reuse_port {
            socket.set_reuse_port(true)?;
        }
        // Set on the listener, they are its accepted connections' too.
        set_buffers(&socket, options)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(options.backlog).unwrap_or(i32::MAX))?;
        let listener: TcpListener = socket.into();
        let local = listener.local_addr()?;
        let index = self.listeners.vacant();
        let (fd, token) = (listener.as_raw_fd(), Source::TcpListener(index).token());
        let backend_accepts = registry.accept_connections(fd, token)?;
        if !backend_accepts {
            registry.register(fd, token, Interest::READ)?;
        }
        let entry = Listener {
            id,
            owner,
            listener,
            options: options.clone(),
            backoff: Duration::ZERO,
            open: 0,
            backend_accepts,
        };
        self.listeners.insert(id, entry);
        Ok(local)
    }

    /// Starts a non-blocking connect; `Connected` follows.
    pub(crate) fn connect(
        &mut self,
        id: TcpConnId,
        owner: RawId,
        addr: SocketAddr,
        options: &TcpOptions,
        registry: &mut dyn Registry,
        out: &mut Outbox,
    ) {
        let index = self.conns.vacant();
        let token = Source::TcpConn(index).token();
        let started = (|| {
            options.check_connection()?;
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_nonblocking(true)?;
            set_buffers(&socket, options)?;
            // The backend connects it where it can; else a non-blocking
            // connect, finished when the socket turns writable.
            if registry.connect_stream(socket.as_raw_fd(), token, addr)? {
                return Ok((TcpStream::from(socket), true));
            }
            match socket.connect(&addr.into()) {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
                Err(error) => return Err(error),
            }
            Ok((TcpStream::from(socket), false))
        })();
        let (stream, backend_connects) = match started {
            Ok(started) => started,
            Err(error) => {
                out.push_back(event(
                    owner,
                    TcpEvent::Connected {
                        conn: id,
                        result: Err(error),
                    },
                ));
                return;
            }
        };
        if backend_connects {
            let mut conn = Conn::new(id, owner, stream, options.clone(), true);
            conn.backend_connects = true;
            self.conns.insert(id, conn);
            return;
        }
        if let Err(error) = registry.register(stream.as_raw_fd(), token, Interest::WRITE) {
            out.push_back(event(
                owner,
                TcpEvent::Connected {
                    conn: id,
                    result: Err(error),
                },
            ));
            return;
        }
        self.conns
            .insert(id, Conn::new(id, owner, stream, options.clone(), true));
    }

    /// Accepts what `index` has waiting; returns whether it may have more.
    pub(crate) fn accept(
        &mut self,
        index: usize,
        registry: &mut dyn Registry,
        out: &mut Outbox,
        counters: &mut Counters,
    ) -> bool {
        for _ in 0..PER_TURN {
            let Some(listener) = self.listeners.get(index) else {
                return false;
            };
            let accepted = match faults::error(Call::Accept) {
                Some(injected) => Err(injected),
                None if listener.backend_accepts => take_accepted(registry, &listener.listener),
                None => listener.listener.accept(),
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if !lost_connection(&error) => {
                    // Out of descriptors, buffers or memory (or anything
                    // else that may pass): connections still wait in the
                    // backlog, and no new readiness will say so. Try again
                    // after a back-off, telling the owner at the first
                    // failure of a run.
                    let (owner, id, first) =
                        (listener.owner, listener.id, listener.backoff.is_zero());
                    self.retry_accept(index, counters);
                    if first {
                        crate::log::event!(
                            warn,
                            "listener {id}: accept failed ({error}); connections wait in the backlog, trying again after a back-off"
                        );
                        counters.tcp_errors += 1;
                        let failed = TcpEvent::AcceptFailed {
                            listener: id,
                            error,
                        };
                        out.push_back(event(owner, failed));
                    }
                    return false;
                }
                Err(error) => {
                    // A connection that failed before it was accepted: tell
                    // the owner, and go on with the next one.
                    counters.tcp_errors += 1;
                    out.push_back(event(
                        listener.owner,
                        TcpEvent::AcceptFailed {
                            listener: listener.id,
                            error,
                        },
                    ));
                    continue;
                }
            };
            if let Some(listener) = self.listeners.get_mut(index)
                && !listener.backoff.is_zero()
            {
                crate::log::event!(info, "listener {}: accepting again", listener.id);
                listener.backoff = Duration::ZERO;
            }
            let Some(listener) = self.listeners.get(index) else {
                return false;
            };
            if listener
                .options
                .max_connections
                .is_some_and(|max| listener.open >= max)
            {
                // Over the listener's limit: closed at once, so a flood
                // cannot take every descriptor (a reset, nothing queued).
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                counters.tcp_over_limit += 1;
                continue;
            }
            let (owner, listener_id, options) =
                (listener.owner, listener.id, listener.options.clone());
            let conn = self.next_accepted_id(owner);
            let setup = stream
                .set_nonblocking(true)
                .and_then(|()| stream.set_nodelay(options.nodelay));
            let slot = self.conns.vacant();
            let registered = setup.and_then(|()| {
                let token = Source::TcpConn(slot).token();
                watch_reads(registry, &stream, token, &options, Interest::READ)
            });
            let backend_reads = match registered {
                Ok(backend_reads) => backend_reads,
                Err(error) => {
                    counters.tcp_errors += 1;
                    out.push_back(event(
                        owner,
                        TcpEvent::AcceptFailed {
                            listener: listener_id,
                            error,
                        },
                    ));
                    continue;
                }
            };
            counters.tcp_accepted += 1;
            let mut accepted = Conn::new(conn, owner, stream, options, false);
            accepted.listener = Some((index, listener_id));
            accepted.backend_reads = backend_reads;
            if let Some(listener) = self.listeners.get_mut(index) {
                listener.open += 1;
            }
            self.conns.insert(conn, accepted);
            out.push_back(event(
                owner,
                TcpEvent::Accepted {
                    listener: listener_id,
                    conn,
                    peer,
                },
            ));
        }
        true
    }

    /// A connection is ready: finishes a connect, reads, or marks it for
    /// flushing. Returns whether it may have more to read.
    pub(crate) fn ready(
        &mut self,
        index: usize,
        readable: bool,
        writable: bool,
        registry: &mut dyn Registry,
        out: &mut Outbox,
        counters: &mut Counters,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(index) else {
            return false;
        };
        if conn.connecting {
            if !writable && !readable {
                return false;
            }
            let outcome = if conn.backend_connects {
                match registry.take_connected(conn.stream.as_raw_fd()) {
                    None => return false,
                    Some(result) => result.and_then(|()| conn.stream.peer_addr()),
                }
            } else {
                match conn.stream.take_error() {
                    Ok(Some(error)) | Err(error) => Err(error),
                    Ok(None) => conn.stream.peer_addr(),
                }
            };
            conn.connecting = false;
            let outcome = outcome.and_then(|peer| {
                conn.stream.set_nodelay(conn.options.nodelay)?;
                let token = Source::TcpConn(index).token();
                let chunk = conn.options.read_chunk.min(BACKEND_CHUNK_MAX);
                let fd = conn.stream.as_raw_fd();
                if conn.backend_connects {
                    // Not registered: its reads start (or readiness does).
                    conn.backend_reads =
                        watch_reads(registry, &conn.stream, token, &conn.options, Interest::READ)?;
                    return Ok(peer);
                }
                conn.backend_reads = registry.receive_stream(fd, token, chunk)?;
                let interest = if conn.queue.is_empty() {
                    Interest::READ
                } else {
                    Interest::READ_WRITE
                };
                registry.reregister(fd, token, interest)?;
                conn.blocked = !conn.queue.is_empty();
                Ok(peer)
            });
            let (id, owner) = (conn.id, conn.owner);
            match outcome {
                Ok(peer) => {
                    out.push_back(event(
                        owner,
                        TcpEvent::Connected {
                            conn: id,
                            result: Ok(peer),
                        },
                    ));
                    self.mark_dirty(index);
                }
                Err(error) => {
                    counters.tcp_errors += 1;
                    self.remove(index, registry);
                    out.push_back(event(
                        owner,
                        TcpEvent::Connected {
                            conn: id,
                            result: Err(error),
                        },
                    ));
                    return false;
                }
            }
            return false;
        }
        if writable {
            self.mark_dirty(index);
        }
        if readable {
            self.read(index, registry, out, counters)
        } else {
            false
        }
    }

    /// Reads what connection `index` has; returns whether it may have more.
    fn read(
        &mut self,
        index: usize,
        registry: &mut dyn Registry,
        out: &mut Outbox,
        counters: &mut Counters,
    ) -> bool {
        if self.conns.get(index).is_some_and(|conn| conn.backend_reads) {
            return self.take_chunks(index, registry, out, counters);
        }
        for _ in 0..PER_TURN {
            let Some(conn) = self.conns.get_mut(index) else {
                return false;
            };
            if conn.read_closed {
                return false;
            }
            let mut buf = PacketBuf::with_capacity(conn.options.read_chunk);
            let area = buf.receive_area();
            let read = match faults::error(Call::TcpRead) {
                Some(injected) => Err(injected),
                None => conn.stream.read(area),
            };
            match read {
                Ok(0) => {
                    conn.read_closed = true;
                    out.push_back(event(conn.owner, TcpEvent::PeerClosed { conn: conn.id }));
                    return false;
                }
                Ok(read) => {
                    buf.set_len(read);
                    counters.tcp_bytes_read += read as u64;
                    out.push_back(event(
                        conn.owner,
                        TcpEvent::Data {
                            conn: conn.id,
                            data: buf,
                        },
                    ));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    self.fail(index, error, registry, out, counters);
                    return false;
                }
            }
        }
        true
    }

    /// Takes what the backend read from connection `index` (a fair share of
    /// chunks), as [`TcpSockets::read`] reads it; returns whether more is
    /// waiting.
    fn take_chunks(
        &mut self,
        index: usize,
        registry: &mut dyn Registry,
        out: &mut Outbox,
        counters: &mut Counters,
    ) -> bool {
        let Some(conn) = self.conns.get_mut(index) else {
            return false;
        };
        if conn.read_closed {
            return false;
        }
        // The faults a read can be given, as on the readiness path: an
        // interrupted read is simply done again.
        if let Some(injected) = faults::error(Call::TcpRead)
            && injected.kind() != io::ErrorKind::Interrupted
        {
            self.fail(index, injected, registry, out, counters);
            return false;
        }
        let (owner, id, chunk) = (conn.owner, conn.id, conn.options.read_chunk);
        let mut read = 0;
        let taken = registry.take_stream(conn.stream.as_raw_fd(), PER_TURN, &mut |bytes| {
            let mut data = PacketBuf::with_capacity(chunk);
            data.extend_from_slice(bytes);
            read += bytes.len() as u64;
            out.push_back(event(owner, TcpEvent::Data { conn: id, data }));
        });
        counters.tcp_bytes_read += read;
        match taken {
            Ok(taken) => {
                counters.tcp_recv_buffers_exhausted += u64::from(taken.buffers_ran_out);
                if taken.ended {
                    conn.read_closed = true;
                    out.push_back(event(owner, TcpEvent::PeerClosed { conn: id }));
                    return false;
                }
                taken.more
            }
            Err(error) => {
                self.fail(index, error, registry, out, counters);
                false
            }
        }
    }

    /// Queues `data` on `conn`, or hands it back.
    pub(crate) fn send(
        &mut self,
        conn: TcpConnId,
        data: PacketBuf,
        from: RawId,
        out: &mut Outbox,
        counters: &mut Counters,
    ) {
        let Some((index, entry)) = self.conns.find_mut(&conn) else {
            counters.tcp_send_rejected += 1;
            let error = io::Error::new(io::ErrorKind::NotConnected, format!("{conn} is not open"));
            out.push_back(event(from, TcpEvent::SendFailed { conn, data, error }));
            return;
        };
        let over = entry.queued_bytes.saturating_add(data.len()) > entry.options.send_limit;
        if entry.write_shut || entry.rejecting || over {
            counters.tcp_send_rejected += 1;
            let error = if entry.write_shut {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    format!("{conn} is shut down for writing"),
                )
            } else {
                entry.rejecting = true;
                entry.notify_writable = true;
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "the send queue of {conn} is full ({} bytes)",
                        entry.options.send_limit
                    ),
                )
            };
            out.push_back(event(from, TcpEvent::SendFailed { conn, data, error }));
            return;
        }
        entry.queued_bytes += data.len();
        entry.queue.push_back(data);
        self.mark_dirty(index);
    }

    /// Shuts down writing once the queue is flushed.
    pub(crate) fn shutdown_write(&mut self, conn: TcpConnId) {
        if let Some((index, entry)) = self.conns.find_mut(&conn) {
            entry.shutdown_write = true;
            self.mark_dirty(index);
        }
    }

    /// Closes `conn` once its queue is flushed, or resets it if that has
    /// not happened by `now + close_timeout`.
    pub(crate) fn close(&mut self, conn: TcpConnId, now: Instant) {
        if let Some((index, entry)) = self.conns.find_mut(&conn) {
            entry.close = true;
            if entry.close_by.is_none() {
                let deadline = now + entry.options.close_timeout;
                entry.close_by = Some(deadline);
                self.closing.push((deadline, index, conn));
            }
            self.mark_dirty(index);
        }
    }

    /// Resets `conn` at once, dropping what it had queued; counted.
    pub(crate) fn abort(
        &mut self,
        conn: TcpConnId,
        registry: &mut dyn Registry,
        counters: &mut Counters,
    ) {
        if let Some((index, entry)) = self.conns.find_mut(&conn) {
            // A zero linger makes the close a reset: the queue is gone and
            // the peer learns so at once.
            let _ = socket2::SockRef::from(&entry.stream).set_linger(Some(Duration::ZERO));
            counters.tcp_closes_aborted += 1;
            self.remove(index, registry);
        }
    }

    /// Schedules listener `index` to accept again after its back-off, which
    /// grows with each failure in a row; counted.
    fn retry_accept(&mut self, index: usize, counters: &mut Counters) {
        let Some(listener) = self.listeners.get_mut(index) else {
            return;
        };
        listener.backoff = (listener.backoff * 2).clamp(ACCEPT_BACKOFF, MAX_ACCEPT_BACKOFF);
        counters.tcp_accept_retries += 1;
        let id = listener.id;
        crate::log::event!(
            debug,
            "listener {id}: accepting again in {:?}",
            listener.backoff
        );
        self.accept_retries
            .push((Instant::now() + listener.backoff, index, id));
    }

    /// Accepts again on the listeners whose back-off has passed.
    pub(crate) fn retry_accepts(
        &mut self,
        now: Instant,
        registry: &mut dyn Registry,
        out: &mut Outbox,
        counters: &mut Counters,
    ) {
        let mut due = Vec::new();
        self.accept_retries.retain(|&(at, index, id)| {
            if at <= now {
                due.push((index, id));
            }
            at > now
        });
        for (index, id) in due {
            let open = self
                .listeners
                .get(index)
                .is_some_and(|listener| listener.id == id);
            if open && self.accept(index, registry, out, counters) {
                self.unserved.push(Source::TcpListener(index));
            }
        }
    }

    /// Resets the connections whose graceful close has run out of time.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        registry: &mut dyn Registry,
        counters: &mut Counters,
    ) {
        let mut expired = Vec::new();
        self.closing.retain(|&(deadline, index, conn)| {
            let open = self.conns.get(index).is_some_and(|entry| entry.id == conn);
            if open && deadline <= now {
                expired.push(conn);
            }
            open && deadline > now
        });
        for conn in expired {
            self.abort(conn, registry, counters);
        }
    }

    /// The earliest graceful-close deadline or accept retry, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let closes = self.closing.iter().map(|(deadline, _, _)| *deadline);
        let retries = self.accept_retries.iter().map(|(at, _, _)| *at);
        closes.chain(retries).min()
    }

    /// Whether closes are still sending what was queued.
    pub(crate) fn lingering(&self) -> bool {
        self.closing
            .iter()
            .any(|&(_, index, conn)| self.conns.get(index).is_some_and(|entry| entry.id == conn))
    }

    /// The id for the next accepted connection: numbers count accepted
    /// connections and wrap after 2³¹, skipping any still open, so that an
    /// id never names two connections at once.
    fn next_accepted_id(&mut self, owner: RawId) -> TcpConnId {
        loop {
            self.accepted = self.accepted.wrapping_add(1) & !(1 << 31);
            let conn = TcpConnId::accepted(self.worker, owner, self.accepted);
            if !self.conns.contains(&conn) {
                return conn;
            }
        }
    }

    /// Gives `conn` from its owner `from` to `owner`: its events go there
    /// from now on. Only its owner can give it away.
    pub(crate) fn set_owner(
        &mut self,
        conn: TcpConnId,
        from: RawId,
        owner: RawId,
    ) -> io::Result<()> {
        let entry = self
            .conns
            .find_mut(&conn)
            .map(|(_, entry)| entry)
            .filter(|entry| !entry.close);
        let Some(entry) = entry else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("{conn} is not open"),
            ));
        };
        if entry.owner != from {
            return Err(super::udp::not_the_owner(&conn));
        }
        entry.owner = owner;
        Ok(())
    }

    /// Closes a listener.
    pub(crate) fn close_listener(&mut self, listener: TcpListenerId, registry: &mut dyn Registry) {
        if let Some(index) = self.listeners.forget(&listener)
            && let Some(entry) = self.listeners.take(index)
        {
            let _ = registry.deregister(entry.listener.as_raw_fd());
        }
    }

    fn mark_dirty(&mut self, index: usize) {
        if let Some(conn) = self.conns.get_mut(index)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(index);
        }
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Writes what the dirty connections have queued (or hands it to the
    /// backend to send), then carries out the shutdowns and closes that
    /// were waiting for it.
    pub(crate) fn flush(
        &mut self,
        registry: &mut dyn Registry,
        out: &mut Outbox,
        counters: &mut Counters,
    ) {
        let dirty = std::mem::take(&mut self.dirty);
        for &index in &dirty {
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            conn.dirty = false;
            if conn.connecting {
                continue;
            }
            let token = Source::TcpConn(index).token();
            let written = if conn.backend_reads {
                conn.send_by_backend(registry, token, counters, &mut self.results)
            } else {
                conn.write(registry, token, counters)
            };
            if let Err(error) = written {
                self.fail(index, error, registry, out, counters);
                continue;
            }
            let Some(conn) = self.conns.get_mut(index) else {
                continue;
            };
            let (id, owner) = (conn.id, conn.owner);
            if !conn.queue.is_empty() || conn.in_flight > 0 {
                continue;
            }
            if conn.notify_writable {
                // Drained: say so, and consider a pending close only after the
                // task has had its turn to re-send (the next flush).
                conn.notify_writable = false;
                conn.rejecting = false;
                out.push_back(event(owner, TcpEvent::Writable { conn: id }));
                if conn.close || conn.shutdown_write {
                    conn.dirty = true;
                    self.dirty.push(index);
                }
                continue;
            }
            if conn.close {
                self.remove(index, registry);
                continue;
            }
            if conn.shutdown_write && !conn.write_shut {
                conn.write_shut = true;
                // Shutting down a connection the peer already reset fails:
                // it is closed either way, which the next read reports.
                let _ = conn.stream.shutdown(Shutdown::Write);
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// A connection failed: it is removed, its task told (`Closed` with the
    /// error), and the error counted.
    fn fail(
        &mut self,
        index: usize,
        error: io::Error,
        registry: &mut dyn Registry,
        out: &mut Outbox,
        counters: &mut Counters,
    ) {
        let Some(conn) = self.conns.get(index) else {
            return;
        };
        let (conn, owner) = (conn.id, conn.owner);
        counters.tcp_errors += 1;
        self.remove(index, registry);
        out.push_back(event(
            owner,
            TcpEvent::Closed {
                conn,
                error: Some(error),
            },
        ));
    }

    fn remove(&mut self, index: usize, registry: &mut dyn Registry) {
        if let Some(conn) = self.conns.take(index) {
            // Closing the descriptor removes it from epoll regardless.
            let _ = registry.deregister(conn.stream.as_raw_fd());
            self.conns.forget(&conn.id);
            if let Some((listener, id)) = conn.listener
                && let Some(listener) = self.listeners.get_mut(listener)
                && listener.id == id
            {
                listener.open -= 1;
            }
        }
    }

    /// Open connections and listeners.
    pub(crate) fn len(&self) -> usize {
        self.conns.open() + self.listeners.open()
    }
}

impl Conn {
    /// Writes what is queued until the kernel takes no more, watching for
    /// writability then (and saying `Writable` once drained after that).
    fn write(
        &mut self,
        registry: &mut dyn Registry,
        token: usize,
        counters: &mut Counters,
    ) -> io::Result<()> {
        let mut blocked = false;
        while let Some(front) = self.queue.front_mut() {
            let written = match faults::send_error(Call::TcpWrite, self.blocked) {
                Some(injected) => Err(injected),
                None => {
                    let len = faults::shorten(Call::TcpWrite, front.len());
                    self.stream.write(&front[..len])
                }
            };
            match written {
                Ok(written) if written == front.len() => {
                    counters.tcp_bytes_written += written as u64;
                    self.queued_bytes -= written;
                    self.queue.pop_front();
                }
                Ok(written) => {
                    counters.tcp_bytes_written += written as u64;
                    self.queued_bytes -= written;
                    front.advance(written);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    blocked = true;
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        self.watch(registry, token, blocked)
    }

    /// Watches for writability (`blocked`) or stops; a connection that
    /// starts waiting says `Writable` once its queue has drained.
    fn watch(
        &mut self,
        registry: &mut dyn Registry,
        token: usize,
        blocked: bool,
    ) -> io::Result<()> {
        let was_blocked = self.blocked;
        watch_writable(
            registry,
            self.stream.as_raw_fd(),
            token,
            blocked,
            &mut self.blocked,
        )?;
        if blocked && !was_blocked {
            self.notify_writable = true;
        }
        Ok(())
    }

    /// Sends the queue through the backend (a connection it reads, see
    /// `Registry::send_messages`): settles the batch in flight once the
    /// kernel is done with it (what it sent counted and dequeued, the rest
    /// queued again in front, an error returned), then hands over the next.
    /// A batch still in the kernel at a flush means the kernel would not
    /// take more: like a write that would block, the connection says
    /// `Writable` once drained. Where the backend will not take a batch now,
    /// the connection waits for writability and tries again.
    fn send_by_backend(
        &mut self,
        registry: &mut dyn Registry,
        token: usize,
        counters: &mut Counters,
        results: &mut Vec<i32>,
    ) -> io::Result<()> {
        let fd = self.stream.as_raw_fd();
        if self.in_flight > 0 {
            let Some(batch) = registry.take_sent(fd, results) else {
                if !self.waiting {
                    self.waiting = true;
                    self.notify_writable = true;
                }
                return Ok(());
            };
            self.waiting = false;
            self.in_flight = 0;
            let batch = batch
                .into_any()
                .downcast::<QueuedBatch>()
                .map_err(|_| io::Error::other("a TCP send batch came back as something else"))?;
            let mut failed = None;
            let mut unsent = Vec::new();
            for (mut buf, (&result, &len)) in
                batch.bufs.into_iter().zip(results.iter().zip(&batch.lens))
            {
                match usize::try_from(result) {
                    Ok(sent) => {
                        let sent = sent.min(len);
                        counters.tcp_bytes_written += sent as u64;
                        self.queued_bytes -= sent;
                        if sent < buf.len() {
                            buf.advance(sent);
                            unsent.push(buf);
                        }
                    }
                    // Cancelled behind a message that failed, or interrupted:
                    // not sent, sent again (in the batch handed over next).
                    Err(_) if result == -libc::ECANCELED || result == -libc::EINTR => {
                        unsent.push(buf);
                    }
                    Err(_) => {
                        failed.get_or_insert(io::Error::from_raw_os_error(-result));
                        unsent.push(buf);
                    }
                }
            }
            requeue(&mut self.queue, unsent);
            if let Some(error) = failed {
                return Err(error);
            }
        }
        if self.queue.is_empty() {
            return self.watch(registry, token, false);
        }
        loop {
            match faults::send_error(Call::TcpWrite, self.blocked) {
                Some(injected) if injected.kind() == io::ErrorKind::Interrupted => {}
                Some(injected) if injected.kind() == io::ErrorKind::WouldBlock => {
                    return self.watch(registry, token, true);
                }
                Some(injected) => return Err(injected),
                None => break,
            }
        }
        let batch = QueuedBatch::new(&mut self.queue, BATCH_MAX, STREAM_SENDS, |len| {
            faults::shorten(Call::TcpWrite, len)
        });
        match batch.hand_over(registry, fd, &mut self.queue) {
            Some(count) => {
                self.in_flight = count;
                self.watch(registry, token, false)
            }
            // Not now (the backend's queue is full): back in front, tried
            // again when the socket says writable.
            None => self.watch(registry, token, true),
        }
    }

    fn new(
        id: TcpConnId,
        owner: RawId,
        stream: TcpStream,
        options: TcpOptions,
        connecting: bool,
    ) -> Self {
        Conn {
            id,
            owner,
            stream,
            options,
            connecting,
            queue: VecDeque::new(),
            queued_bytes: 0,
            blocked: false,
            rejecting: false,
            notify_writable: false,
            dirty: false,
            shutdown_write: false,
            write_shut: false,
            close: false,
            close_by: None,
            listener: None,
            read_closed: false,
            backend_reads: false,
            in_flight: 0,
            waiting: false,
            backend_connects: false,
        }
    }
}
