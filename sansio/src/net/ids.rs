//! Socket ids (what tasks hold) and backend tokens (what the poller
//! reports): which worker, task and socket each names.

use std::fmt;

use crate::id::RawId;

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
            pub(super) worker: u16,
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

socket_id!(
    /// A TUN/TAP device of a task, from `Ctx::tun_open`.
    TunId,
    "tun"
);

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
