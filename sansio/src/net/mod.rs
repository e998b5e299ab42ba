//! Network I/O for tasks. A task asks through its [`Ctx`](crate::Ctx)
//! (`udp_bind`, `udp_send`, …); the worker owns the sockets, registers them
//! with its backend, and delivers what happens to them (a bound socket, a
//! datagram, an error) back to the task as ordinary inputs.
//!
//! Which inputs a task must handle is checked at compile time: `udp_bind`
//! is only available to a task with `#[on_input]` handlers for [`UdpBound`],
//! [`UdpPacket`] and [`UdpError`].

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use crate::buf::PacketBuf;
use crate::id::RawId;

mod driver;
mod ifconfig;
pub(crate) mod sys;
pub(crate) mod tcp;
pub(crate) mod tun;
pub(crate) mod udp;

/// The default [`TcpOptions::close_timeout`].
pub const DEFAULT_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The bit of a socket id's number that marks an accepted connection (whose
/// number counts the worker's accepted connections, not the task's sockets).
const ACCEPTED: u32 = 1 << 31;

/// Declares a socket id type: the worker it lives on, the task that made it
/// and a number, unique among that task's sockets (or, for accepted
/// connections, among the worker's accepted connections).
macro_rules! socket_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        ///
        /// An id is unique in the whole runtime: ids made on different
        /// workers never compare equal, hash alike or print the same, so
        /// they can key a map shared by tasks of several workers or travel
        /// in bus messages. A socket can only be used on the worker that
        /// owns it (`worker()`); a call with an id of another worker is
        /// refused with an error input and never acted on.
        // Flat, 16 bytes: the worker sits in what would be the owner's
        // padding, and an accepted connection's flag in the number's top
        // bit, so that `Action` stays small enough to move inline.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            worker: u16,
            group: u16,
            slot: u32,
            generation: u32,
            number: u32,
        }

        impl $name {
            pub(crate) fn new(worker: u16, owner: RawId, number: u32) -> Self {
                $name {
                    worker,
                    group: owner.group,
                    slot: owner.slot,
                    generation: owner.generation,
                    number: number & !ACCEPTED,
                }
            }

            #[allow(dead_code, reason = "only connections are accepted")]
            pub(crate) fn accepted(worker: u16, owner: RawId, number: u32) -> Self {
                $name {
                    number: number | ACCEPTED,
                    ..$name::new(worker, owner, number)
                }
            }

            /// The index of the worker that owns the socket: the only one
            /// on which it can be used.
            #[must_use]
            pub fn worker(&self) -> usize {
                usize::from(self.worker)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        /// `<kind>#<worker>:<type>.<slot>.<generation>/<n>`: the n-th
        /// socket made by its task on that worker; an accepted connection
        /// prints `/a<n>`, the n-th connection its worker accepted.
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    concat!($prefix, "#{}:{}.{}.{}/{}{}"),
                    self.worker,
                    self.group,
                    self.slot,
                    self.generation,
                    if self.number & ACCEPTED != 0 { "a" } else { "" },
                    self.number & !ACCEPTED
                )
            }
        }
    };
}

socket_id!(
    /// A UDP socket of a task, from `Ctx::udp_bind`.
    ///
    /// An id names one socket at a time; any task on the owning worker may
    /// send through a socket, and what it receives goes to the task that
    /// bound it (or was handed it).
    UdpSocketId,
    "udp"
);

socket_id!(
    /// A TCP listener of a task, from `Ctx::tcp_listen`.
    TcpListenerId,
    "tcp-listener"
);

socket_id!(
    /// A TCP connection of a task: from `Ctx::tcp_connect`, or accepted by
    /// one of its listeners (`TcpEvent::Accepted`).
    TcpConnId,
    "tcp"
);

/// How to set up a UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpOptions {
    /// `SO_REUSEPORT`: let several sockets (one per worker, say) bind the
    /// same address; the kernel spreads incoming datagrams over them.
    pub reuse_port: bool,
    /// `SO_REUSEADDR`.
    pub reuse_address: bool,
    /// The largest datagram delivered whole (default 2,048 bytes). A larger
    /// one is cut by the kernel: it is counted (`udp_truncated`) and
    /// dropped, never delivered as if complete.
    pub max_datagram: usize,
    /// `SO_RCVBUF`, when set.
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF`, when set.
    pub send_buffer: Option<usize>,
    /// Datagrams queued for sending on this socket while the kernel is not
    /// taking them (default 4,096); a send beyond comes back as an
    /// [`UdpError`].
    pub send_queue: usize,
    /// UDP generic segmentation offload (default on, where the kernel has
    /// it): queued datagrams to one peer of one size (the last may be
    /// shorter) leave as one message the kernel cuts into datagrams, one
    /// trip through the network stack for up to 64 of them. Receivers see
    /// ordinary datagrams. If the kernel or the device refuses a GSO send
    /// (no checksum offload, a segment above the path MTU), the socket falls
    /// back to one datagram per message by itself (counted in
    /// `udp_gso_disabled`).
    pub gso: bool,
    /// UDP generic receive offload (default off): the kernel may hand over
    /// several datagrams from one sender as one message, which the worker
    /// splits into one `UdpPacket` per datagram again, copying each into a
    /// buffer of its own. It pays when peers send bursts with GSO (or a
    /// network card coalesces a fast flow): one trip through the stack per
    /// burst instead of per datagram. For traffic that does not coalesce it
    /// costs a copy per datagram and fewer datagrams per system call. Where
    /// the kernel lacks it (before Linux 5.0) the socket receives as usual.
    pub gro: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            reuse_port: false,
            reuse_address: false,
            max_datagram: crate::buf::DEFAULT_CAPACITY,
            recv_buffer: None,
            send_buffer: None,
            send_queue: 4096,
            gso: true,
            gro: false,
        }
    }
}

impl UdpOptions {
    /// Sets [`UdpOptions::reuse_port`].
    #[must_use]
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.reuse_port = reuse;
        self
    }

    /// Sets [`UdpOptions::reuse_address`].
    #[must_use]
    pub fn reuse_address(mut self, reuse: bool) -> Self {
        self.reuse_address = reuse;
        self
    }

    /// Sets [`UdpOptions::max_datagram`].
    #[must_use]
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        self.max_datagram = bytes;
        self
    }

    /// Sets [`UdpOptions::recv_buffer`].
    #[must_use]
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = Some(bytes);
        self
    }

    /// Sets [`UdpOptions::send_buffer`].
    #[must_use]
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = Some(bytes);
        self
    }

    /// Sets [`UdpOptions::gso`].
    #[must_use]
    pub fn gso(mut self, gso: bool) -> Self {
        self.gso = gso;
        self
    }

    /// Sets [`UdpOptions::gro`].
    #[must_use]
    pub fn gro(mut self, gro: bool) -> Self {
        self.gro = gro;
        self
    }

    /// Sets [`UdpOptions::send_queue`].
    #[must_use]
    pub fn send_queue(mut self, datagrams: usize) -> Self {
        self.send_queue = datagrams;
        self
    }
}

/// The outcome of `Ctx::udp_bind`, delivered to the task that asked.
#[derive(Debug)]
pub struct UdpBound {
    /// The socket `udp_bind` returned.
    pub socket: UdpSocketId,
    /// The local address it is bound to (with the port the system chose for
    /// port 0), or why it could not be bound.
    pub result: io::Result<SocketAddr>,
}

/// A datagram received on a task's socket.
#[derive(Debug)]
pub struct UdpPacket {
    /// The socket it arrived on.
    pub socket: UdpSocketId,
    /// Its sender.
    pub from: SocketAddr,
    /// Its payload, with headroom in front; send it back out as it is to
    /// echo without copying.
    pub data: PacketBuf,
}

/// Something went wrong on a task's socket: a send the kernel refused (the
/// payload comes back), a send queue full, a socket that is closed, or a
/// receive error. Counted in the worker's stats too.
#[derive(Debug)]
pub struct UdpError {
    /// The socket.
    pub socket: UdpSocketId,
    /// The destination of the failed send, if it was a send.
    pub peer: Option<SocketAddr>,
    /// What happened.
    pub error: io::Error,
    /// The payload that was not sent, if it was a send.
    pub data: Option<PacketBuf>,
}

/// How to set up TCP listeners and connections.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpOptions {
    /// `TCP_NODELAY` on connections (default on: a task's sends are already
    /// batched per input).
    pub nodelay: bool,
    /// The most bytes queued for sending on one connection while the kernel
    /// is not taking them (default 1 MiB). A send beyond it comes back as
    /// [`TcpEvent::SendFailed`], and so does every later send until
    /// [`TcpEvent::Writable`].
    pub send_limit: usize,
    /// The size of the buffers connections are read into (default 16 KiB).
    pub read_chunk: usize,
    /// `SO_REUSEADDR` on listeners (default on, so a restarted server can
    /// bind at once).
    pub reuse_address: bool,
    /// `SO_REUSEPORT` on listeners.
    pub reuse_port: bool,
    /// The listen backlog (default 1,024): connections the kernel completes
    /// and holds until the worker accepts them. At least 1: a listener asked
    /// for with 0 is refused (`TcpEvent::Listening` with an error of kind
    /// `InvalidInput`); values above `i32::MAX` count as `i32::MAX`.
    pub backlog: u32,
    /// How long a graceful close (`tcp_close`, or the task owning the
    /// connection ending) may wait for the queued bytes to be sent before
    /// the connection is reset instead (default 5 s): a peer that stops
    /// reading cannot hold a descriptor and its queue for ever. Counted in
    /// `tcp_closes_aborted`.
    pub close_timeout: std::time::Duration,
    /// `SO_SNDBUF` of connections (a listener's accepted connections take
    /// it from the listener), when set: how much the kernel holds for a
    /// peer before the send queue fills.
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF` of connections, when set.
    pub recv_buffer: Option<usize>,
    /// The most connections a listener keeps open at once (unlimited when
    /// `None`): one more is accepted and reset at once, counted in
    /// `tcp_over_limit`, so that a flood cannot use up every descriptor.
    pub max_connections: Option<usize>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            nodelay: true,
            send_limit: 1 << 20,
            read_chunk: 16 << 10,
            reuse_address: true,
            reuse_port: false,
            backlog: 1024,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            send_buffer: None,
            recv_buffer: None,
            max_connections: None,
        }
    }
}

impl TcpOptions {
    /// Sets [`TcpOptions::send_limit`].
    #[must_use]
    pub fn send_limit(mut self, bytes: usize) -> Self {
        self.send_limit = bytes;
        self
    }

    /// Sets [`TcpOptions::read_chunk`].
    #[must_use]
    pub fn read_chunk(mut self, bytes: usize) -> Self {
        self.read_chunk = bytes;
        self
    }

    /// Sets [`TcpOptions::nodelay`].
    #[must_use]
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Sets [`TcpOptions::reuse_port`].
    #[must_use]
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.reuse_port = reuse;
        self
    }

    /// Sets [`TcpOptions::reuse_address`].
    #[must_use]
    pub fn reuse_address(mut self, reuse: bool) -> Self {
        self.reuse_address = reuse;
        self
    }

    /// Sets [`TcpOptions::backlog`].
    #[must_use]
    pub fn backlog(mut self, connections: u32) -> Self {
        self.backlog = connections;
        self
    }

    /// Sets [`TcpOptions::send_buffer`].
    #[must_use]
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = Some(bytes);
        self
    }

    /// Sets [`TcpOptions::recv_buffer`].
    #[must_use]
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = Some(bytes);
        self
    }

    /// Sets [`TcpOptions::max_connections`].
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// Sets [`TcpOptions::close_timeout`].
    #[must_use]
    pub fn close_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Refuses options a listener cannot be started with (kind
    /// `InvalidInput`), before any socket is made: those of its connections
    /// too.
    pub(crate) fn check_listener(&self) -> io::Result<()> {
        if self.backlog == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TcpOptions::backlog must be at least 1",
            ));
        }
        self.check_connection()
    }

    /// Refuses options a connection cannot work with (kind
    /// `InvalidInput`): a read into no room would look like the peer closing,
    /// and a send limit of nothing would refuse every send.
    pub(crate) fn check_connection(&self) -> io::Result<()> {
        for (value, name) in [
            (self.read_chunk, "TcpOptions::read_chunk"),
            (self.send_limit, "TcpOptions::send_limit"),
        ] {
            if value == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name} must be at least 1"),
                ));
            }
        }
        Ok(())
    }
}

/// What happens on a task's TCP listeners and connections; one input type,
/// so one `#[on_input]` handler serves them all.
#[derive(Debug)]
#[non_exhaustive]
pub enum TcpEvent {
    /// The outcome of `Ctx::tcp_listen`: the local address, or why not.
    Listening {
        /// The listener.
        listener: TcpListenerId,
        /// The local address (with the port the system chose for port 0).
        result: io::Result<SocketAddr>,
    },
    /// A listener accepted a connection, now the task's.
    Accepted {
        /// The listener.
        listener: TcpListenerId,
        /// The new connection.
        conn: TcpConnId,
        /// The peer.
        peer: SocketAddr,
    },
    /// Accepting failed; the listener carries on. A connection aborted
    /// before it was accepted is reported and the next one accepted. Out of
    /// descriptors, buffers or memory (`EMFILE`, `ENFILE`, `ENOBUFS`,
    /// `ENOMEM`), the listener tries again after a back-off (10 ms, doubling
    /// up to 100 ms) until it works, so connections waiting in the backlog
    /// are served once descriptors are free, without a new arrival; only
    /// the first failure of such a run is reported, every retry is counted
    /// (`tcp_accept_retries`).
    AcceptFailed {
        /// The listener.
        listener: TcpListenerId,
        /// What happened.
        error: io::Error,
    },
    /// The outcome of `Ctx::tcp_connect`: the peer address, or why not (the
    /// connection is then gone).
    Connected {
        /// The connection.
        conn: TcpConnId,
        /// The peer, or the error.
        result: io::Result<SocketAddr>,
    },
    /// Bytes arrived.
    Data {
        /// The connection.
        conn: TcpConnId,
        /// The bytes, in a pooled buffer.
        data: PacketBuf,
    },
    /// The peer closed its side: nothing more will arrive. The connection
    /// stays open for sending until the task closes it.
    PeerClosed {
        /// The connection.
        conn: TcpConnId,
    },
    /// The connection's send queue has drained after the kernel or the send
    /// limit held it back: sending may resume.
    Writable {
        /// The connection.
        conn: TcpConnId,
    },
    /// A send was not queued (over the send limit, the connection closing or
    /// gone): here is its data back.
    SendFailed {
        /// The connection.
        conn: TcpConnId,
        /// The data that was not sent.
        data: PacketBuf,
        /// Why.
        error: io::Error,
    },
    /// The connection failed (reset, timed out) and is gone.
    Closed {
        /// The connection.
        conn: TcpConnId,
        /// What happened.
        error: Option<io::Error>,
    },
    /// A call on a connection or listener (`tcp_close`,
    /// `tcp_shutdown_write`, `tcp_close_listener`, a hand-over) was refused
    /// and nothing was done: the id belongs to another worker, or names a
    /// socket that is not open.
    Refused {
        /// The connection or listener named.
        socket: TcpSocket,
        /// Why.
        error: io::Error,
    },
}

/// A TCP listener or connection, as named in [`TcpEvent::Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpSocket {
    /// A listener.
    Listener(TcpListenerId),
    /// A connection.
    Conn(TcpConnId),
}

impl fmt::Display for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpSocket::Listener(listener) => fmt::Display::fmt(listener, f),
            TcpSocket::Conn(conn) => fmt::Display::fmt(conn, f),
        }
    }
}

/// Sets `SO_SNDBUF` and `SO_RCVBUF` of `socket` to the sizes asked for, if
/// any (UDP sockets, TCP listeners and connections).
fn set_buffer_sizes(
    socket: &socket2::Socket,
    send: Option<usize>,
    recv: Option<usize>,
) -> io::Result<()> {
    if let Some(bytes) = send {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = recv {
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(())
}

/// The error for a socket id used on a worker that does not own it.
fn foreign(id: &dyn fmt::Display, owner: usize, here: u16) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{id} belongs to worker {owner}, and this task runs on worker {here}: \
             a socket can only be used on the worker that owns it"
        ),
    )
}

socket_id!(
    /// A TUN/TAP device of a task, from `Ctx::tun_open`.
    TunId,
    "tun"
);

/// Whether a device carries IP packets (TUN) or Ethernet frames (TAP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunMode {
    /// IP packets, without any header in front.
    #[default]
    Tun,
    /// Ethernet frames.
    Tap,
}

/// How to open a TUN/TAP device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunOptions {
    /// TUN or TAP.
    pub mode: TunMode,
    /// The largest packet delivered whole (default 2,048 bytes; set it above
    /// the device's MTU). A larger one is counted and dropped.
    pub max_packet: usize,
    /// Packets queued for writing while the device will not take more
    /// (default 1,024, at least 1); a send beyond comes back as a
    /// [`TunError`].
    pub send_queue: usize,
    /// The device's IPv4 address and prefix length (`10.0.0.1/24` is
    /// `(Ipv4Addr::new(10, 0, 0, 1), 24)`), set when the device opens; the
    /// kernel adds the route to the subnet once the device is up. Default
    /// none: no address is set. IPv6 addresses are not set here (configure
    /// them from outside after [`TunOpened`]); the prefix length is at most
    /// 32.
    pub address: Option<(Ipv4Addr, u8)>,
    /// The device's MTU, set when the device opens (default none: the
    /// kernel's, 1,500). From 1 to 65,535; the kernel refuses values below
    /// the device's minimum (68). [`TunOptions::max_packet`] must be above
    /// it (above it plus 18 bytes of Ethernet and VLAN header for TAP), so
    /// that the largest packet arrives whole.
    pub mtu: Option<u32>,
    /// Whether the device is brought up (`IFF_UP`) when it opens. Default
    /// none: up if [`TunOptions::address`] is set, else left as the kernel
    /// made it (a new device is down). `Some(false)` takes it down even with
    /// an address.
    pub up: Option<bool>,
}

impl Default for TunOptions {
    fn default() -> Self {
        TunOptions {
            mode: TunMode::Tun,
            max_packet: crate::buf::DEFAULT_CAPACITY,
            send_queue: 1024,
            address: None,
            mtu: None,
            up: None,
        }
    }
}

impl TunOptions {
    /// Sets [`TunOptions::mode`].
    #[must_use]
    pub fn mode(mut self, mode: TunMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`TunOptions::max_packet`].
    #[must_use]
    pub fn max_packet(mut self, bytes: usize) -> Self {
        self.max_packet = bytes;
        self
    }

    /// Sets [`TunOptions::send_queue`].
    #[must_use]
    pub fn send_queue(mut self, packets: usize) -> Self {
        self.send_queue = packets;
        self
    }

    /// Sets [`TunOptions::address`]: the device's IPv4 address and the
    /// length of its subnet's prefix (`24` for `255.255.255.0`).
    #[must_use]
    pub fn address(mut self, address: Ipv4Addr, prefix_len: u8) -> Self {
        self.address = Some((address, prefix_len));
        self
    }

    /// Sets [`TunOptions::mtu`].
    #[must_use]
    pub fn mtu(mut self, bytes: u32) -> Self {
        self.mtu = Some(bytes);
        self
    }

    /// Sets [`TunOptions::up`]: bring the device up (`true`) or leave it
    /// down (`false`) when it opens.
    #[must_use]
    pub fn up(mut self, up: bool) -> Self {
        self.up = Some(up);
        self
    }
}

/// The outcome of `Ctx::tun_open`, delivered to the task that asked.
#[derive(Debug)]
pub struct TunOpened {
    /// The device `tun_open` returned.
    pub tun: TunId,
    /// The interface's name (the kernel picks one for a `%d` pattern), or
    /// why it could not be opened (`/dev/net/tun` missing, no permission,
    /// options out of range: kind `InvalidInput`) or configured as
    /// [`TunOptions`] asked (the error names the step that failed, and the
    /// device is closed again).
    pub result: io::Result<String>,
}

/// A packet read from a task's device.
#[derive(Debug)]
pub struct TunPacket {
    /// The device.
    pub tun: TunId,
    /// The packet (an IP packet for TUN, a frame for TAP).
    pub data: PacketBuf,
}

/// Something went wrong on a task's device: a packet the device refused (it
/// comes back), a full send queue, a closed device, or a read error.
#[derive(Debug)]
pub struct TunError {
    /// The device.
    pub tun: TunId,
    /// What happened.
    pub error: io::Error,
    /// The packet that was not written, if it was a write.
    pub data: Option<PacketBuf>,
}

/// A socket a task owns, closed by the worker when the task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owned {
    Udp(UdpSocketId),
    TcpListener(TcpListenerId),
    TcpConn(TcpConnId),
    Tun(TunId),
}

/// A socket handed over to a task on its worker: how its events become that
/// task's input (a `TcpWrap` of its type), placed by the task's group.
#[doc(hidden)]
pub struct Adoption {
    pub(crate) socket: Owned,
    pub(crate) wrap: Box<dyn std::any::Any + Send>,
}

impl fmt::Debug for Adoption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adoption")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// A network event for a task, before it is turned into the task's input.
#[doc(hidden)]
#[derive(Debug)]
pub enum NetInput {
    #[allow(missing_docs)]
    UdpBound(UdpBound),
    #[allow(missing_docs)]
    UdpPacket(UdpPacket),
    #[allow(missing_docs)]
    UdpError(UdpError),
    #[allow(missing_docs)]
    Tcp(TcpEvent),
    #[allow(missing_docs)]
    TunOpened(TunOpened),
    #[allow(missing_docs)]
    TunPacket(TunPacket),
    #[allow(missing_docs)]
    TunError(TunError),
}

/// What a backend token stands for: the kind of source in its low bits, its
/// index above them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Udp(usize),
    TcpListener(usize),
    TcpConn(usize),
    Tun(usize),
}

/// Bits of a token that say the kind of source.
const KIND_BITS: u32 = 2;
const KIND_UDP: usize = 0;
const KIND_TCP_LISTENER: usize = 1;
const KIND_TCP_CONN: usize = 2;
const KIND_TUN: usize = 3;

impl Source {
    pub(crate) fn token(self) -> usize {
        match self {
            Source::Udp(index) => index << KIND_BITS | KIND_UDP,
            Source::TcpListener(index) => index << KIND_BITS | KIND_TCP_LISTENER,
            Source::TcpConn(index) => index << KIND_BITS | KIND_TCP_CONN,
            Source::Tun(index) => index << KIND_BITS | KIND_TUN,
        }
    }

    pub(crate) fn from_token(token: usize) -> Option<Source> {
        let index = token >> KIND_BITS;
        match token & ((1 << KIND_BITS) - 1) {
            KIND_UDP => Some(Source::Udp(index)),
            KIND_TCP_LISTENER => Some(Source::TcpListener(index)),
            KIND_TCP_CONN => Some(Source::TcpConn(index)),
            KIND_TUN => Some(Source::Tun(index)),
            _ => None,
        }
    }
}

/// The network state of one worker: its sockets, the registry that watches
/// them, and the events the worker itself produced for its tasks.
pub(crate) struct Net {
    registry: Box<dyn crate::backend::Registry>,
    /// The worker this is, to refuse socket ids of other workers.
    worker: u16,
    pub(crate) udp: udp::UdpSockets,
    pub(crate) tcp: tcp::TcpSockets,
    pub(crate) tun: tun::TunDevices,
    /// Events for tasks that the worker produced (a bind's outcome, a send's
    /// failure), delivered in order before the worker moves on.
    pub(crate) local: std::collections::VecDeque<(RawId, NetInput)>,
    /// Scratch space for received datagrams, kept between batches.
    pub(crate) inbound: Vec<(RawId, NetInput)>,
    /// UDP sockets handed over (socket, from, to) while a received batch is
    /// delivered: the rest of the batch is re-owned as it goes.
    pub(crate) handed_over: Vec<(UdpSocketId, RawId, RawId)>,
    /// A received batch is being delivered (hand-overs then re-own the rest).
    pub(crate) delivering_batch: bool,
    /// The I/O of the turn under way.
    turn: driver::Turn,
}

impl Net {
    pub(crate) fn new(registry: Box<dyn crate::backend::Registry>, worker: u16) -> Self {
        Net {
            registry,
            worker,
            udp: udp::UdpSockets::new(),
            tcp: tcp::TcpSockets::new(worker),
            tun: tun::TunDevices::default(),
            local: std::collections::VecDeque::new(),
            inbound: Vec::new(),
            handed_over: Vec::new(),
            delivering_batch: false,
            turn: driver::Turn::default(),
        }
    }

    /// Binds a socket and queues the outcome for its task.
    pub(crate) fn udp_bind(
        &mut self,
        socket: UdpSocketId,
        owner: RawId,
        addr: SocketAddr,
        options: &UdpOptions,
        counters: &mut crate::stats::Counters,
    ) {
        let result = self.udp.bind(
            socket,
            owner,
            addr,
            options,
            self.registry.as_mut(),
            |index| Source::Udp(index).token(),
        );
        counters.udp_sockets = self.udp.len() as u64;
        self.local
            .push_back((owner, NetInput::UdpBound(UdpBound { socket, result })));
    }

    /// Queues a datagram; a failure comes back to `from`.
    pub(crate) fn udp_send(
        &mut self,
        from: RawId,
        socket: UdpSocketId,
        to: SocketAddr,
        payload: udp::Payload,
        counters: &mut crate::stats::Counters,
    ) {
        if socket.worker != self.worker {
            counters.udp_send_errors += 1;
            let error = foreign(&socket, socket.worker(), self.worker);
            let data = Some(payload.into_buf());
            let refused = UdpError {
                socket,
                peer: Some(to),
                error,
                data,
            };
            self.local.push_back((from, NetInput::UdpError(refused)));
            return;
        }
        self.udp
            .send(from, socket, to, payload, &mut self.local, counters);
    }

    /// Starts a listener and queues the outcome for its task.
    pub(crate) fn tcp_listen(
        &mut self,
        listener: TcpListenerId,
        owner: RawId,
        addr: SocketAddr,
        options: &TcpOptions,
        counters: &mut crate::stats::Counters,
    ) {
        let result = self
            .tcp
            .listen(listener, owner, addr, options, self.registry.as_mut());
        counters.tcp_sockets = self.tcp.len() as u64;
        self.local.push_back((
            owner,
            NetInput::Tcp(TcpEvent::Listening { listener, result }),
        ));
    }

    /// Starts a connection; `Connected` follows.
    pub(crate) fn tcp_connect(
        &mut self,
        conn: TcpConnId,
        owner: RawId,
        addr: SocketAddr,
        options: &TcpOptions,
        counters: &mut crate::stats::Counters,
    ) {
        self.tcp.connect(
            conn,
            owner,
            addr,
            options,
            self.registry.as_mut(),
            &mut self.local,
        );
        counters.tcp_sockets = self.tcp.len() as u64;
    }

    /// Queues bytes on a connection; a refusal comes back to `from`.
    pub(crate) fn tcp_send(
        &mut self,
        from: RawId,
        conn: TcpConnId,
        data: PacketBuf,
        counters: &mut crate::stats::Counters,
    ) {
        if conn.worker != self.worker {
            counters.tcp_send_rejected += 1;
            let error = foreign(&conn, conn.worker(), self.worker);
            let failed = TcpEvent::SendFailed { conn, data, error };
            self.local.push_back((from, NetInput::Tcp(failed)));
            return;
        }
        self.tcp.send(conn, data, from, &mut self.local, counters);
    }

    /// Whether `socket` (named by the task `from` in a close, a shutdown or
    /// a hand-over) belongs to this worker; if not, the task is told, with
    /// the input of the socket's kind, and nothing is done.
    pub(crate) fn owns(
        &mut self,
        from: RawId,
        socket: Owned,
        counters: &mut crate::stats::Counters,
    ) -> bool {
        let (worker, name): (u16, &dyn fmt::Display) = match &socket {
            Owned::Udp(id) => (id.worker, id),
            Owned::TcpListener(id) => (id.worker, id),
            Owned::TcpConn(id) => (id.worker, id),
            Owned::Tun(id) => (id.worker, id),
        };
        if worker == self.worker {
            return true;
        }
        let error = foreign(name, usize::from(worker), self.worker);
        self.refuse(from, socket, error, counters);
        false
    }

    /// Tells the task `from` that its call on `socket` was refused, with the
    /// error input of the socket's kind, counted.
    pub(crate) fn refuse(
        &mut self,
        from: RawId,
        socket: Owned,
        error: io::Error,
        counters: &mut crate::stats::Counters,
    ) {
        let input = match socket {
            Owned::Udp(socket) => {
                counters.udp_send_errors += 1;
                NetInput::UdpError(UdpError {
                    socket,
                    peer: None,
                    error,
                    data: None,
                })
            }
            Owned::TcpListener(listener) => {
                counters.tcp_errors += 1;
                let socket = TcpSocket::Listener(listener);
                NetInput::Tcp(TcpEvent::Refused { socket, error })
            }
            Owned::TcpConn(conn) => {
                counters.tcp_errors += 1;
                let socket = TcpSocket::Conn(conn);
                NetInput::Tcp(TcpEvent::Refused { socket, error })
            }
            Owned::Tun(tun) => {
                counters.tun_send_errors += 1;
                NetInput::TunError(TunError {
                    tun,
                    error,
                    data: None,
                })
            }
        };
        self.local.push_back((from, input));
    }

    /// Hands `socket` (a UDP socket or a connection) from `from` to `to`.
    pub(crate) fn hand_over(&mut self, socket: Owned, from: RawId, to: RawId) -> io::Result<()> {
        match socket {
            Owned::Udp(socket) => self.udp_hand_over(socket, from, to),
            Owned::TcpConn(conn) => self.tcp_hand_over(conn, from, to),
            Owned::TcpListener(_) | Owned::Tun(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "only UDP sockets and TCP connections can be handed over",
            )),
        }
    }

    /// Hands connection `conn` from `from` to `to`: the connection's events
    /// go to `to` from now on, those already waiting included. Returns why
    /// not when the connection is not open here.
    pub(crate) fn tcp_hand_over(
        &mut self,
        conn: TcpConnId,
        from: RawId,
        to: RawId,
    ) -> Result<(), io::Error> {
        self.tcp.set_owner(conn, from, to)?;
        for (owner, input) in &mut self.local {
            if *owner == from
                && let NetInput::Tcp(
                    TcpEvent::Data { conn: of, .. }
                    | TcpEvent::PeerClosed { conn: of }
                    | TcpEvent::Writable { conn: of }
                    | TcpEvent::Closed { conn: of, .. },
                ) = input
                && *of == conn
            {
                *owner = to;
            }
        }
        Ok(())
    }

    /// Hands UDP socket `socket` from `from` to `to`: its events go to `to`
    /// from now on, those already waiting included (in the worker's queue,
    /// and in the receive batch being delivered).
    pub(crate) fn udp_hand_over(
        &mut self,
        socket: UdpSocketId,
        from: RawId,
        to: RawId,
    ) -> Result<(), io::Error> {
        self.udp.set_owner(socket, from, to)?;
        let reown = |owner: &mut RawId, input: &NetInput| {
            if *owner == from
                && let NetInput::UdpPacket(UdpPacket { socket: of, .. })
                | NetInput::UdpError(UdpError { socket: of, .. }) = input
                && *of == socket
            {
                *owner = to;
            }
        };
        for (owner, input) in &mut self.local {
            reown(owner, input);
        }
        if self.delivering_batch {
            self.handed_over.push((socket, from, to));
        }
        Ok(())
    }

    /// The owner of a received event now: `owner`, unless its socket was
    /// handed over since the event was read.
    pub(crate) fn owner_now(&self, owner: RawId, input: &NetInput) -> RawId {
        if self.handed_over.is_empty() {
            return owner;
        }
        let (NetInput::UdpPacket(UdpPacket { socket, .. })
        | NetInput::UdpError(UdpError { socket, .. })) = input
        else {
            return owner;
        };
        // In the order they were made, so that a socket handed on again
        // goes to its last owner.
        let mut owner = owner;
        for (handed, from, to) in &self.handed_over {
            if handed == socket && *from == owner {
                owner = *to;
            }
        }
        owner
    }

    /// Closes a socket a task owned (the task ended or asked). What was
    /// queued on it is sent first: a UDP socket or a device stops receiving
    /// at once and goes when its queue is empty; a connection closes
    /// gracefully, once its queued bytes are written; a listener stops at
    /// once.
    pub(crate) fn close_owned(
        &mut self,
        owned: Owned,
        now: std::time::Instant,
        counters: &mut crate::stats::Counters,
    ) {
        match owned {
            Owned::Udp(socket) => self.udp.close(socket, self.registry.as_mut()),
            Owned::TcpListener(listener) => {
                self.tcp.close_listener(listener, self.registry.as_mut())
            }
            Owned::TcpConn(conn) => self.tcp.close(conn, now),
            Owned::Tun(tun) => self.tun.close(tun, self.registry.as_mut()),
        }
        counters.udp_sockets = self.udp.len() as u64;
        counters.tcp_sockets = self.tcp.len() as u64;
        counters.tun_devices = self.tun.len() as u64;
    }

    /// Resets a connection at once (`tcp_abort`).
    pub(crate) fn tcp_abort(&mut self, conn: TcpConnId, counters: &mut crate::stats::Counters) {
        self.tcp.abort(conn, self.registry.as_mut(), counters);
        counters.tcp_sockets = self.tcp.len() as u64;
    }

    /// Resets the connections whose graceful close has run out of time, and
    /// accepts again on listeners whose back-off has passed.
    pub(crate) fn expire(
        &mut self,
        now: std::time::Instant,
        counters: &mut crate::stats::Counters,
    ) {
        self.tcp.expire(now, self.registry.as_mut(), counters);
        self.tcp
            .retry_accepts(now, self.registry.as_mut(), &mut self.local, counters);
        self.udp.refresh_drops(now, counters);
        counters.tcp_sockets = self.tcp.len() as u64;
    }

    /// The earliest deadline the network state has (a graceful close that
    /// will give up, an accept to try again, UDP drop counts to read).
    pub(crate) fn next_deadline(&self) -> Option<std::time::Instant> {
        [self.tcp.next_deadline(), self.udp.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether closed sockets are still sending what was queued on them: a
    /// worker shutting down waits for them (within its deadline).
    pub(crate) fn lingering(&self) -> bool {
        self.tcp.lingering() || self.udp.lingering() || self.tun.lingering()
    }

    /// Opens a device and queues the outcome for its task.
    pub(crate) fn tun_open(
        &mut self,
        tun: TunId,
        owner: RawId,
        name: &str,
        options: &TunOptions,
        counters: &mut crate::stats::Counters,
    ) {
        let result = self
            .tun
            .open(tun, owner, name, options, self.registry.as_mut());
        counters.tun_devices = self.tun.len() as u64;
        self.local
            .push_back((owner, NetInput::TunOpened(TunOpened { tun, result })));
    }

    /// Queues a packet for a device; a refusal comes back to `from`.
    pub(crate) fn tun_send(
        &mut self,
        from: RawId,
        tun: TunId,
        data: PacketBuf,
        counters: &mut crate::stats::Counters,
    ) {
        if tun.worker != self.worker {
            counters.tun_send_errors += 1;
            let error = foreign(&tun, tun.worker(), self.worker);
            let refused = TunError {
                tun,
                error,
                data: Some(data),
            };
            self.local.push_back((from, NetInput::TunError(refused)));
            return;
        }
        self.tun.send(from, tun, data, &mut self.local, counters);
    }

    /// Serves a ready TCP source; returns whether it may have more to do.
    pub(crate) fn tcp_ready(
        &mut self,
        source: Source,
        readable: bool,
        writable: bool,
        counters: &mut crate::stats::Counters,
    ) -> bool {
        let more = match source {
            Source::TcpListener(index) => {
                self.tcp
                    .accept(index, self.registry.as_mut(), &mut self.local, counters)
            }
            Source::TcpConn(index) => self.tcp.ready(
                index,
                readable,
                writable,
                self.registry.as_mut(),
                &mut self.local,
                counters,
            ),
            Source::Udp(_) | Source::Tun(_) => false,
        };
        counters.tcp_sockets = self.tcp.len() as u64;
        more
    }

    /// Closes the sending side of `conn` once what is queued has gone, if
    /// `owner` owns it.
    pub(crate) fn tcp_shutdown_write(
        &mut self,
        owner: RawId,
        conn: TcpConnId,
        counters: &mut crate::stats::Counters,
    ) {
        if self.owns(owner, Owned::TcpConn(conn), counters) {
            self.tcp.shutdown_write(conn);
        }
    }

    /// Whether sends are waiting to be handed to the kernel.
    pub(crate) fn has_dirty(&self) -> bool {
        self.udp.has_dirty() || self.tcp.has_dirty() || self.tun.has_dirty()
    }

    /// Hands queued datagrams and bytes to the kernel.
    pub(crate) fn flush(&mut self, counters: &mut crate::stats::Counters) {
        self.udp.flush(
            self.registry.as_mut(),
            |index| Source::Udp(index).token(),
            &mut self.local,
            counters,
        );
        self.tcp
            .flush(self.registry.as_mut(), &mut self.local, counters);
        self.tun
            .flush(self.registry.as_mut(), &mut self.local, counters);
        counters.tcp_sockets = self.tcp.len() as u64;
    }
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("udp_sockets", &self.udp.len())
            .field("local", &self.local.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_option_has_a_setter() {
        let udp = UdpOptions::default()
            .reuse_port(true)
            .reuse_address(true)
            .max_datagram(9000)
            .recv_buffer(1 << 20)
            .send_buffer(1 << 21)
            .send_queue(7)
            .gso(false)
            .gro(true);
        let expected = UdpOptions {
            reuse_port: true,
            reuse_address: true,
            max_datagram: 9000,
            recv_buffer: Some(1 << 20),
            send_buffer: Some(1 << 21),
            send_queue: 7,
            gso: false,
            gro: true,
        };
        assert_eq!(udp, expected);

        let tcp = TcpOptions::default()
            .nodelay(false)
            .send_limit(5)
            .read_chunk(6)
            .reuse_address(false)
            .reuse_port(true)
            .backlog(8)
            .close_timeout(std::time::Duration::from_secs(5))
            .send_buffer(1 << 16)
            .recv_buffer(1 << 17)
            .max_connections(9);
        let expected = TcpOptions {
            nodelay: false,
            send_limit: 5,
            read_chunk: 6,
            reuse_address: false,
            reuse_port: true,
            backlog: 8,
            close_timeout: std::time::Duration::from_secs(5),
            send_buffer: Some(1 << 16),
            recv_buffer: Some(1 << 17),
            max_connections: Some(9),
        };
        assert_eq!(tcp, expected);

        let tun = TunOptions::default()
            .mode(TunMode::Tap)
            .max_packet(9100)
            .send_queue(3)
            .address(Ipv4Addr::new(10, 213, 1, 1), 24)
            .mtu(9000)
            .up(false);
        let expected = TunOptions {
            mode: TunMode::Tap,
            max_packet: 9100,
            send_queue: 3,
            address: Some((Ipv4Addr::new(10, 213, 1, 1), 24)),
            mtu: Some(9000),
            up: Some(false),
        };
        assert_eq!(tun, expected);
    }

    #[test]
    fn a_listener_needs_a_backlog() {
        assert!(TcpOptions::default().check_listener().is_ok());
        let error = TcpOptions::default()
            .backlog(0)
            .check_listener()
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("backlog"), "{error}");
    }

    #[test]
    fn a_connection_needs_room_to_read_and_to_send() {
        assert!(TcpOptions::default().check_connection().is_ok());
        for (options, name) in [
            (TcpOptions::default().read_chunk(0), "read_chunk"),
            (TcpOptions::default().send_limit(0), "send_limit"),
        ] {
            for check in [options.check_connection(), options.check_listener()] {
                let error = check.unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
                assert!(error.to_string().contains(name), "{error}");
            }
        }
    }
}
