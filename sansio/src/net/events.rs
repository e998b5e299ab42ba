//! What the runtime delivers to a task about its sockets and devices: each
//! an ordinary input, handled with `#[on_input]`.

use std::fmt;
use std::io;
use std::net::SocketAddr;

#[cfg(doc)]
use super::TunOptions;
use super::{TcpConnId, TcpListenerId, TunId, UdpSocketId};
use crate::buf::PacketBuf;

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
