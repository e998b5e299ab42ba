//! Backends: the readiness pollers a worker sleeps in.
//!
//! # The contract
//!
//! Each backend is one file providing a type that implements [`Poller`],
//! with these obligations (in the manner of mio's `sys/mod.rs`):
//!
//! - **Construction** (`new(options)`) returns the poller and a [`Waker`]
//!   for it. The worker owns the poller; the waker is shared with every
//!   thread that queues work for the worker. `registry()` gives the
//!   [`Registry`] through which the worker's network layer registers its
//!   sockets. [`PollerOptions`] carry what the builder was told about the
//!   backend beyond its name (today: io_uring's `SQPOLL`); they are passed
//!   to every backend, so that the worker makes its poller the same way
//!   whatever the backend, and the builder refuses an option for a backend
//!   that does not have it, so each backend reads only its own.
//! - **`register(fd, token, interest)`** starts watching a file descriptor
//!   for readability and/or writability, reporting it under `token`.
//!   Readiness is **edge-triggered**: an event means "became ready", so the
//!   owner must read or write until `WouldBlock` before waiting again.
//!   `reregister` changes the interest; `deregister` stops watching, and must
//!   be called before the descriptor is closed. The token `usize::MAX` is
//!   reserved.
//! - **`wait(deadline, ready)`** blocks until a registered source is ready,
//!   the waker is woken, or `deadline` passes (`None`: no deadline, sleep
//!   until something happens — an idle worker uses no CPU). It appends one
//!   [`Readiness`] per ready source to `ready` (never the waker's own event)
//!   and returns `Ok` on a signal interruption. It may return early, with
//!   nothing ready; it must not return later than the deadline rounded up to
//!   the backend's timer granularity (1 ms for mio, which uses the
//!   millisecond timeout of `epoll_wait`; microseconds for polling, which
//!   uses a `timerfd`).
//! - **Completion receives (optional).** A backend that receives datagrams
//!   itself (io_uring) says so when asked by `receive_datagrams(fd, token,
//!   size)`: from then on it reports `token` readable whenever datagrams
//!   came in (or the receive failed), and `take_datagrams` hands them out,
//!   a batch at a time, with the kernel's raw sender address and control
//!   messages. A backend that does not (the default) returns `false`, and
//!   the owner registers the socket for readability and reads it itself.
//!   A completion backend must never lose a datagram for want of buffers:
//!   the receive waits (the kernel keeps the datagrams in the socket) and
//!   starts again when buffers come back, and says how often in
//!   [`Taken::buffers_ran_out`]. Such a backend also sends for the socket:
//!   `send_messages` takes a batch of prepared messages ([`Outgoing`]),
//!   owns it until the kernel is done with every message, reports the
//!   token writable then (a backend may report it with the next other
//!   event unless `take_sent` was asked for it meanwhile), and `take_sent`
//!   hands it back with each message's result. Connected streams (TCP)
//!   may be read the same way (`receive_stream`, `take_stream`): chunks in
//!   the stream's order, the peer's end of stream after the last of them.
//! - **`Waker::wake`** makes the current or the next `wait` return. It is
//!   called from any thread; the runtime merges repeated wakeups itself
//!   ([`Notifier`]), so the backend sees at most one per sleep.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::{Duration, Instant};

#[cfg(feature = "mio")]
pub(crate) mod busy_poll;
#[cfg(feature = "mio")]
pub(crate) mod mio;
#[cfg(feature = "polling")]
pub(crate) mod polling;
#[cfg(feature = "io-uring")]
pub(crate) mod uring;

/// Which poller the workers sleep in.
///
/// There are four. `Mio` and `Polling` sleep in edge-triggered epoll on
/// Linux when there is nothing to do, and differ in timer precision (mio
/// waits in whole milliseconds, polling to the microsecond through a
/// `timerfd`, at the price of two more system calls per sleep) and in their
/// portability beyond Linux. `IoUring` sleeps in `io_uring_enter`, with
/// microsecond timers and no extra system call for them. `BusyPoll` never
/// sleeps. Every backend runs the same tasks with the same behaviour; only
/// latency and CPU use differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// [mio](https://docs.rs/mio): the default (cargo feature `mio`, on by
    /// default).
    Mio,
    /// [polling](https://docs.rs/polling) (cargo feature `polling`).
    Polling,
    /// Busy polling: the worker never sleeps, it polls its sources and its
    /// inbox without blocking, over and over (cargo feature `mio`). The
    /// lowest latency for the price of a full core per worker, busy or idle;
    /// it yields to the scheduler now and then, so a shared machine stays
    /// usable.
    BusyPoll,
    /// io_uring (cargo feature `io-uring`, Linux 5.13 or later): the worker
    /// sleeps in `io_uring_enter`, on a ring of its own. UDP sockets are
    /// received and sent by the ring itself (a multishot `recvmsg` into a
    /// ring of buffers, Linux 6.0, and linked `sendmsg`s with GSO runs; no
    /// `recvmmsg` or `sendmmsg` calls), TCP connections are read and
    /// written by it (a multishot `recv` each, into the same buffers, and
    /// linked `sendmsg`s of the queued bytes), listeners accepted on by a
    /// multishot `accept`, connects made by it, TUN/TAP devices read
    /// (a multishot `read`, Linux 6.7) and written by it. Where the kernel
    /// has no io_uring, or forbids it, [`Backend::check`] says what is
    /// missing and `Builder::build` fails with it; what a kernel has not
    /// (multishot receives before 6.0, reads before 6.7) is watched with
    /// multishot polls and done by the same system calls as on the other
    /// backends. `Builder::io_uring_sqpoll` (with the feature)
    /// adds a polling kernel thread per ring.
    IoUring,
}

impl Backend {
    /// Every backend, in the order the default is chosen from.
    const ALL: [Backend; 4] = [
        Backend::Mio,
        Backend::Polling,
        Backend::BusyPoll,
        Backend::IoUring,
    ];

    /// Every backend that can run here, default first.
    #[must_use]
    pub fn available() -> Vec<Backend> {
        Backend::ALL
            .into_iter()
            .filter(|backend| backend.is_available())
            .collect()
    }

    /// Whether this backend can run here: compiled in (its cargo feature
    /// is enabled) and, for io_uring, supported by the kernel.
    #[must_use]
    pub fn is_available(self) -> bool {
        self.check().is_ok()
    }

    /// Whether this backend can run here, and if not, why: not compiled in
    /// ([`Unavailable::NotCompiled`]), or refused by the kernel
    /// ([`Unavailable::Unsupported`], naming what is missing: io_uring
    /// disabled by `kernel.io_uring_disabled` or a seccomp filter, a kernel
    /// too old for an opcode or feature). The kernel is asked once per
    /// process. `Builder::build` fails with the same reason.
    pub fn check(self) -> Result<(), Unavailable> {
        if !self.is_compiled() {
            return Err(Unavailable::NotCompiled(self));
        }
        #[cfg(feature = "io-uring")]
        if self == Backend::IoUring {
            uring::probe().map_err(|reason| Unavailable::Unsupported {
                backend: self,
                reason,
            })?;
        }
        Ok(())
    }

    /// Whether this backend's cargo feature is enabled.
    fn is_compiled(self) -> bool {
        match self {
            Backend::Mio | Backend::BusyPoll => cfg!(feature = "mio"),
            Backend::Polling => cfg!(feature = "polling"),
            Backend::IoUring => cfg!(feature = "io-uring"),
        }
    }

    /// The cargo feature that compiles this backend in.
    #[must_use]
    pub fn feature(self) -> &'static str {
        match self {
            Backend::Mio | Backend::BusyPoll => "mio",
            Backend::Polling => "polling",
            Backend::IoUring => "io-uring",
        }
    }

    /// The backend's name, as `FromStr` reads it: `mio`, `polling`,
    /// `busy-poll` or `io-uring`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Backend::Mio => "mio",
            Backend::Polling => "polling",
            Backend::BusyPoll => "busy-poll",
            Backend::IoUring => "io-uring",
        }
    }

    /// Whether an idle worker on this backend sleeps (uses no CPU).
    #[must_use]
    pub fn sleeps_when_idle(self) -> bool {
        !matches!(self, Backend::BusyPoll)
    }
}

impl Default for Backend {
    /// mio when compiled in, else the first backend compiled in (without
    /// asking the kernel: `Builder::build` says what it lacks).
    fn default() -> Self {
        Backend::ALL
            .into_iter()
            .find(|backend| backend.is_compiled())
            .unwrap_or(Backend::Mio)
    }
}

/// Why a [`Backend`] cannot run here ([`Backend::check`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The backend's cargo feature is not enabled.
    #[error("the {0} backend is not compiled in; enable the `{feature}` cargo feature of sansio", feature = .0.feature())]
    NotCompiled(Backend),
    /// The kernel cannot run the backend: what it lacks, as it said it.
    #[error("the {backend} backend cannot run here: {reason}")]
    Unsupported {
        /// The backend asked for.
        backend: Backend,
        /// What is missing.
        reason: String,
    },
}

/// A backend name that is not one of [`Backend`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{0}`; expected mio, polling, busy-poll or io-uring")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for Backend {
    type Err = UnknownBackend;

    /// `mio`, `polling`, `busy-poll` or `io-uring`, as [`Backend`]'s
    /// `Display` writes them.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "mio" => Ok(Backend::Mio),
            "polling" => Ok(Backend::Polling),
            "busy-poll" => Ok(Backend::BusyPoll),
            "io-uring" => Ok(Backend::IoUring),
            other => Err(UnknownBackend(other.to_owned())),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What to watch a source for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interest {
    pub(crate) readable: bool,
    pub(crate) writable: bool,
}

impl Interest {
    /// Readability only.
    pub(crate) const READ: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// Writability only.
    pub(crate) const WRITE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Both.
    pub(crate) const READ_WRITE: Interest = Interest {
        readable: true,
        writable: true,
    };
}

/// Starts or stops watching a readable source for writability, as its send
/// queue blocks or drains; `watching` tracks the registration. Does nothing
/// when it already matches `wanted`.
pub(crate) fn watch_writable(
    registry: &mut dyn Registry,
    fd: RawFd,
    token: usize,
    wanted: bool,
    watching: &mut bool,
) -> io::Result<()> {
    if wanted != *watching {
        let interest = if wanted {
            Interest::READ_WRITE
        } else {
            Interest::READ
        };
        registry.reregister(fd, token, interest)?;
        *watching = wanted;
    }
    Ok(())
}

/// A source that became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Readiness {
    pub(crate) token: usize,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// Error or hang-up: the owner should read to learn which.
    pub(crate) closed: bool,
}

/// The token the backends keep for their waker.
pub(crate) const WAKER_TOKEN: usize = usize::MAX;

/// How a worker's poller is made: what `Builder` was told beyond the
/// choice of backend. Every backend is made with it; an option only one
/// backend has is refused by `Builder::build` for the others, so a backend
/// may ignore the options that are not its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PollerOptions {
    /// io_uring: a kernel thread polls the submission queue, for this long
    /// after its last submission before it sleeps (`IORING_SETUP_SQPOLL`).
    pub(crate) sqpoll: Option<Duration>,
}

/// A readiness poller; see the module documentation for the contract.
pub(crate) trait Poller: Send + Sized + 'static {
    /// Wakes this poller from another thread.
    type Waker: Waker;

    /// A poller and its waker, made as `options` say.
    fn new(options: &PollerOptions) -> io::Result<(Self, Self::Waker)>;

    /// A handle to register sources with this poller, usable while the
    /// poller waits on the same thread (between waits).
    fn registry(&self) -> io::Result<Box<dyn Registry>>;

    /// Waits for readiness, a wakeup or the deadline.
    fn wait(&mut self, deadline: Option<Instant>, ready: &mut Vec<Readiness>) -> io::Result<()>;
}

/// Registers sources with a [`Poller`].
pub(crate) trait Registry: Send + 'static {
    /// Starts watching `fd`.
    fn register(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()>;

    /// Changes what `fd` is watched for.
    fn reregister(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()>;

    /// Stops watching `fd`.
    fn deregister(&mut self, fd: RawFd) -> io::Result<()>;

    /// Asks the backend to receive the datagrams of the UDP socket `fd`
    /// itself (a completion backend: io_uring's multishot `recvmsg`), each
    /// into a buffer with room for `size` payload bytes, instead of
    /// reporting readability for the owner to read. Returns `false` when
    /// the backend does not (the readiness backends, and io_uring on a
    /// kernel without multishot receives): the owner then registers `fd`
    /// for readability and reads it. Returns `true` when it does: `fd` is
    /// then registered (its token reported readable whenever datagrams have
    /// come in, or the receive failed), and [`Registry::take_datagrams`]
    /// hands them out; `reregister` with writability adds a watch for
    /// room to send, and `deregister` ends both.
    fn receive_datagrams(&mut self, fd: RawFd, token: usize, size: usize) -> io::Result<bool> {
        let _ = (fd, token, size);
        Ok(false)
    }

    /// Hands up to `max` of the datagrams the backend received for `fd`
    /// (see [`Registry::receive_datagrams`]) to `each`, oldest first, and
    /// says whether more are waiting. A receive that failed is reported
    /// once, as the error, after the datagrams that came before it; the
    /// backend receives again by itself. A take of none (`max` 0) hands
    /// out and reports nothing, but lets a receive that ended start again.
    fn take_datagrams(
        &mut self,
        fd: RawFd,
        max: usize,
        each: &mut dyn FnMut(Datagram<'_>),
    ) -> io::Result<Taken> {
        let _ = (fd, max, each);
        Ok(Taken::default())
    }

    /// Asks the backend to connect the stream socket `fd` (non-blocking,
    /// not connected yet) to `addr` itself (io_uring's `connect`): `token`
    /// is reported writable once the connect has ended, and
    /// [`Registry::take_connected`] says how. Returns `false` when the
    /// backend does not; the owner then connects and registers `fd` for
    /// writability, as on readiness.
    fn connect_stream(&mut self, fd: RawFd, token: usize, addr: SocketAddr) -> io::Result<bool> {
        let _ = (fd, token, addr);
        Ok(false)
    }

    /// How the connect the backend made for `fd` ended (see
    /// [`Registry::connect_stream`]), once it has: `None` while it goes on.
    /// From then on `fd` is the owner's again: not registered.
    fn take_connected(&mut self, fd: RawFd) -> Option<io::Result<()>> {
        let _ = fd;
        None
    }

    /// Asks the backend to accept the connections of the listening socket
    /// `fd` itself (io_uring's multishot `accept`) instead of reporting
    /// readability: `token` is reported readable whenever connections came
    /// (or the accept failed), and [`Registry::take_accepted`] hands them
    /// out. Returns `false` when the backend does not; the owner then
    /// registers `fd` for readability and accepts on it.
    fn accept_connections(&mut self, fd: RawFd, token: usize) -> io::Result<bool> {
        let _ = (fd, token);
        Ok(false)
    }

    /// Hands up to `max` of the connections the backend accepted on `fd`
    /// (see [`Registry::accept_connections`]) to `each`, oldest first, each
    /// a non-blocking, close-on-exec descriptor. An accept that failed
    /// (out of descriptors, say) is reported once, as the error, by the
    /// first take that finds no connection before it, and the backend
    /// accepts again only from the next take on, which the owner makes
    /// after its back-off.
    fn take_accepted(
        &mut self,
        fd: RawFd,
        max: usize,
        each: &mut dyn FnMut(OwnedFd),
    ) -> io::Result<Taken> {
        let _ = (fd, max, each);
        Ok(Taken::default())
    }

    /// As [`Registry::receive_datagrams`], for the connected stream socket
    /// `fd` (a TCP connection): the backend reads it itself (io_uring's
    /// multishot `recv`), in chunks of at most `chunk` bytes, and
    /// [`Registry::take_stream`] hands them out. May be asked of a socket
    /// already registered (a connect that just completed): its poll then
    /// keeps watching writability alone, if it did. Returns `false` when
    /// the backend does not; the owner then reads `fd` on readiness.
    fn receive_stream(&mut self, fd: RawFd, token: usize, chunk: usize) -> io::Result<bool> {
        let _ = (fd, token, chunk);
        Ok(false)
    }

    /// As [`Registry::receive_stream`], for a TUN/TAP device `fd`: the
    /// backend reads it itself (io_uring's multishot `read`, Linux 6.7), a
    /// packet per read into a buffer of `size` bytes, and
    /// [`Registry::take_stream`] hands the packets out, one per chunk. A
    /// failed read is reported once and ends the reads (a device that fails
    /// a read is gone or broken). Returns `false` when the backend does
    /// not; the owner then reads on readiness.
    fn receive_packets(&mut self, fd: RawFd, token: usize, size: usize) -> io::Result<bool> {
        let _ = (fd, token, size);
        Ok(false)
    }

    /// Hands up to `max` of the chunks the backend read from `fd` (see
    /// [`Registry::receive_stream`]) to `each`, in the order of the stream
    /// (chunks may be a little longer than the `chunk` asked for),
    /// and says whether more are waiting and whether the peer closed its
    /// side ([`Taken::ended`], once every chunk before it was handed out).
    /// A read that failed is reported once, as the error, after the chunks
    /// that came before it; the backend does not read that stream again.
    fn take_stream(
        &mut self,
        fd: RawFd,
        max: usize,
        each: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Taken> {
        let _ = (fd, max, each);
        Ok(Taken::default())
    }

    /// Sends `outgoing`'s messages on `fd`, in order, through the backend:
    /// a backend that receives `fd`'s datagrams itself (see
    /// [`Registry::receive_datagrams`]) also sends them. It keeps
    /// `outgoing`, and so the memory its headers point into, until every
    /// message is sent or has failed, then reports `fd`'s token writable;
    /// [`Registry::take_sent`] hands it back with each message's result.
    /// One batch per socket at a time. `Err` gives `outgoing` back unsent
    /// (a backend that does not send, or cannot now): the owner sends it
    /// with its own calls.
    fn send_messages(
        &mut self,
        fd: RawFd,
        outgoing: Box<dyn Outgoing>,
    ) -> Result<(), Box<dyn Outgoing>> {
        let _ = fd;
        Err(outgoing)
    }

    /// The batch handed to [`Registry::send_messages`] for `fd`, once
    /// every message of it is done, with each message's result in
    /// `results` (bytes sent, or a negated `errno`; `-ECANCELED` for a
    /// message not tried because one before it failed); `None` while any
    /// is in flight, or when none was handed over.
    fn take_sent(&mut self, fd: RawFd, results: &mut Vec<i32>) -> Option<Box<dyn Outgoing>> {
        let _ = (fd, results);
        None
    }
}

/// Messages a completion backend sends for the network layer (see
/// [`Registry::send_messages`]): the headers, and everything they point
/// into, which stays in place as long as the value lives.
pub(crate) trait Outgoing: Send + 'static {
    /// The messages, in order.
    #[cfg_attr(not(feature = "io-uring"), allow(dead_code))]
    fn headers(&mut self) -> &mut [libc::mmsghdr];

    /// The flags each message is sent with (`MSG_*`): none for datagrams.
    #[cfg_attr(not(feature = "io-uring"), allow(dead_code))]
    fn flags(&self) -> u32 {
        0
    }

    /// Each message is written (`writev` of its `iovec`s: a device, not a
    /// socket), not sent.
    #[cfg_attr(not(feature = "io-uring"), allow(dead_code))]
    fn writes(&self) -> bool {
        false
    }

    /// The value as what its owner made it, to look into once it is back.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// A datagram a completion backend received, as the kernel wrote it: the
/// sender's socket address, the control messages and the payload, each
/// as raw bytes for the network layer to read.
#[derive(Debug)]
pub(crate) struct Datagram<'a> {
    /// The sender's address (a `sockaddr_in` or `sockaddr_in6`).
    pub(crate) name: &'a [u8],
    /// The control messages (`cmsghdr`s).
    pub(crate) control: &'a [u8],
    pub(crate) payload: &'a [u8],
    /// The kernel cut the payload to fit the buffer (`MSG_TRUNC`).
    pub(crate) truncated: bool,
}

/// What [`Registry::take_datagrams`] left.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// More datagrams are waiting for the next take.
    pub(crate) more: bool,
    /// Times since the last take that the socket's receive found every
    /// receive buffer in use (`ENOBUFS`), and waited for buffers to come
    /// back; its datagrams waited in the socket meanwhile.
    pub(crate) buffers_ran_out: u32,
    /// Streams only: the peer closed its side, and everything it sent
    /// before has been handed out (reported by every take from then on).
    pub(crate) ended: bool,
}

/// Makes a [`Poller`]'s current or next `wait` return.
pub(crate) trait Waker: Send + Sync + 'static {
    fn wake(&self) -> io::Result<()>;
}

fn check(token: usize, interest: Interest) -> io::Result<()> {
    if token == WAKER_TOKEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "token usize::MAX is reserved for the waker",
        ));
    }
    if !interest.readable && !interest.writable {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an interest must include readable or writable",
        ));
    }
    Ok(())
}

/// Wakes a worker only when it sleeps, so a burst of messages costs one
/// wakeup, not one each.
///
/// The worker calls [`Notifier::prepare_to_sleep`], then checks its queues
/// once more, and only then waits; a sender queues its message first and then
/// calls [`Notifier::notify`]. Both sides order their two steps with a
/// sequentially consistent fence, so either the worker sees the message in its
/// last check, or the sender sees the worker asleep and wakes it.
pub(crate) struct Notifier {
    sleeping: AtomicBool,
    waker: Box<dyn Waker>,
}

impl Notifier {
    pub(crate) fn new(waker: impl Waker) -> Self {
        Notifier {
            sleeping: AtomicBool::new(false),
            waker: Box::new(waker),
        }
    }

    /// Wakes the worker if it sleeps or is about to.
    pub(crate) fn notify(&self) {
        fence(Ordering::SeqCst);
        // A plain load first: a sender to an awake worker (the common case
        // under load) then leaves the flag's cache line shared instead of
        // taking it from the worker with a swap for every message. The
        // fences order this load against the worker's store (and the
        // message against its re-check), so the load is enough to decide.
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::SeqCst) {
            // A failed wake (the eventfd counter cannot overflow in practice)
            // leaves the worker to its next deadline; there is no one to tell.
            let _ = self.waker.wake();
        }
    }

    /// Announces that the worker will sleep; it must re-check its queues
    /// after this and before waiting.
    pub(crate) fn prepare_to_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Announces that the worker is awake (the wait returned, or it decided
    /// not to sleep after all); returns whether another thread woke it since
    /// it announced its sleep. Counted here, by the worker, so that senders
    /// pay nothing for it; a wake that comes in the instant between this
    /// load and the store goes uncounted.
    pub(crate) fn awake(&self) -> bool {
        let woken = !self.sleeping.load(Ordering::Relaxed);
        self.sleeping.store(false, Ordering::Relaxed);
        woken
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("sleeping", &self.sleeping.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The conformance suite every backend passes: readiness of a real socket,
/// deregistration, the waker, deadlines and bad arguments.
#[cfg(test)]
mod conformance {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const READ: Interest = Interest {
        readable: true,
        writable: false,
    };

    fn socket_pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// Waits until `token` is reported, for at most 5 s.
    fn wait_for<P: Poller>(poller: &mut P, token: usize) -> Readiness {
        let give_up = Instant::now() + Duration::from_secs(5);
        let mut ready = Vec::new();
        while Instant::now() < give_up {
            ready.clear();
            poller.wait(Some(give_up), &mut ready).unwrap();
            if let Some(event) = ready.iter().find(|event| event.token == token) {
                return *event;
            }
        }
        panic!("token {token} never became ready");
    }

    pub(super) fn reports_a_readable_socket<P: Poller>(options: PollerOptions) {
        let (mut poller, _waker) = P::new(&options).unwrap();
        let mut registry = poller.registry().unwrap();
        let (receiver, sender) = socket_pair();
        registry.register(receiver.as_raw_fd(), 7, READ).unwrap();
        sender
            .send_to(b"x", receiver.local_addr().unwrap())
            .unwrap();
        let event = wait_for(&mut poller, 7);
        assert!(event.readable);
        let mut buf = [0; 8];
        assert_eq!(receiver.recv(&mut buf).unwrap(), 1);
    }

    pub(super) fn is_edge_triggered_and_deregisters<P: Poller>(options: PollerOptions) {
        let (mut poller, _waker) = P::new(&options).unwrap();
        let mut registry = poller.registry().unwrap();
        let (receiver, sender) = socket_pair();
        let fd = receiver.as_raw_fd();
        registry.register(fd, 1, READ).unwrap();
        sender
            .send_to(b"x", receiver.local_addr().unwrap())
            .unwrap();
        wait_for(&mut poller, 1);
        // Not drained, but already reported: edge-triggered, no new event.
        let mut ready = Vec::new();
        poller
            .wait(Some(Instant::now() + Duration::from_millis(30)), &mut ready)
            .unwrap();
        assert!(ready.is_empty(), "{ready:?}");
        registry.deregister(fd).unwrap();
        sender
            .send_to(b"y", receiver.local_addr().unwrap())
            .unwrap();
        poller
            .wait(Some(Instant::now() + Duration::from_millis(30)), &mut ready)
            .unwrap();
        assert!(ready.is_empty(), "deregistered, yet reported: {ready:?}");
        // Re-registering delivers the pending data's readiness again.
        registry.register(fd, 2, READ).unwrap();
        assert!(wait_for(&mut poller, 2).readable);
    }

    pub(super) fn reregister_changes_the_interest<P: Poller>(options: PollerOptions) {
        let (mut poller, _waker) = P::new(&options).unwrap();
        let mut registry = poller.registry().unwrap();
        let (socket, _) = socket_pair();
        let fd = socket.as_raw_fd();
        registry.register(fd, 3, READ).unwrap();
        let write = Interest {
            readable: false,
            writable: true,
        };
        registry.reregister(fd, 4, write).unwrap();
        assert!(wait_for(&mut poller, 4).writable);
        registry.deregister(fd).unwrap();
    }

    pub(super) fn the_waker_ends_a_wait_without_deadline<P: Poller>(options: PollerOptions) {
        let (mut poller, waker) = P::new(&options).unwrap();
        let waker = Arc::new(waker);
        let remote = Arc::clone(&waker);
        let start = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            remote.wake().unwrap();
        });
        let mut ready = Vec::new();
        poller.wait(None, &mut ready).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(15));
        assert!(ready.is_empty(), "the waker is not a source: {ready:?}");
        thread.join().unwrap();
        // A wake before the wait makes the next wait return at once.
        waker.wake().unwrap();
        let start = Instant::now();
        poller.wait(None, &mut ready).unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    pub(super) fn a_deadline_ends_the_wait<P: Poller>(options: PollerOptions) {
        let (mut poller, _waker) = P::new(&options).unwrap();
        let mut ready = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(20);
        poller.wait(Some(deadline), &mut ready).unwrap();
        // Early returns are allowed; loop until the deadline to check the
        // wait ends near it rather than hanging.
        while Instant::now() < deadline {
            poller.wait(Some(deadline), &mut ready).unwrap();
        }
        assert!(Instant::now() < deadline + Duration::from_secs(1));
        let past = Instant::now() - Duration::from_millis(5);
        poller.wait(Some(past), &mut ready).unwrap();
    }

    /// A source deregistered right after a change of interest that made it
    /// ready at once (a writable socket asked for writability), with no wait
    /// between, and then closed, is closed for the peer at once: the
    /// backend holds no reference to it (io_uring: a removal that met the
    /// poll while its completion was under way left it armed, holding the
    /// socket open, so no FIN went out).
    pub(super) fn a_source_deregistered_mid_event_is_released<P: Poller>(options: PollerOptions) {
        use std::io::Read;
        use std::net::{TcpListener, TcpStream};
        let (mut poller, _waker) = P::new(&options).unwrap();
        let mut registry = poller.registry().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        for round in 0..20 {
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            let fd = server.as_raw_fd();
            registry.register(fd, 1, READ).unwrap();
            let mut ready = Vec::new();
            poller
                .wait(Some(Instant::now() + Duration::from_millis(1)), &mut ready)
                .unwrap();
            registry.reregister(fd, 1, Interest::READ_WRITE).unwrap();
            registry.deregister(fd).unwrap();
            drop(server);
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut buf = [0; 8];
            match client.read(&mut buf) {
                Ok(0) => {}
                other => panic!("round {round}: the closed socket stayed open: {other:?}"),
            }
        }
    }

    pub(super) fn rejects_the_reserved_token_and_empty_interest<P: Poller>(options: PollerOptions) {
        let (poller, _waker) = P::new(&options).unwrap();
        let mut registry = poller.registry().unwrap();
        let (socket, _) = socket_pair();
        let fd = socket.as_raw_fd();
        let error = registry.register(fd, WAKER_TOKEN, READ).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        let none = Interest {
            readable: false,
            writable: false,
        };
        let error = registry.register(fd, 1, none).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    macro_rules! suite {
        ($backend:ident, $poller:ty) => {
            suite!($backend, $poller, super::PollerOptions::default());
        };
        ($backend:ident, $poller:ty, $options:expr) => {
            mod $backend {
                #[test]
                fn reports_a_readable_socket() {
                    super::reports_a_readable_socket::<$poller>($options);
                }
                #[test]
                fn is_edge_triggered_and_deregisters() {
                    super::is_edge_triggered_and_deregisters::<$poller>($options);
                }
                #[test]
                fn reregister_changes_the_interest() {
                    super::reregister_changes_the_interest::<$poller>($options);
                }
                #[test]
                fn the_waker_ends_a_wait_without_deadline() {
                    super::the_waker_ends_a_wait_without_deadline::<$poller>($options);
                }
                #[test]
                fn a_deadline_ends_the_wait() {
                    super::a_deadline_ends_the_wait::<$poller>($options);
                }
                #[test]
                fn a_source_deregistered_mid_event_is_released() {
                    super::a_source_deregistered_mid_event_is_released::<$poller>($options);
                }
                #[test]
                fn rejects_the_reserved_token_and_empty_interest() {
                    super::rejects_the_reserved_token_and_empty_interest::<$poller>($options);
                }
            }
        };
    }

    #[cfg(feature = "mio")]
    suite!(mio, crate::backend::mio::MioPoller);
    #[cfg(feature = "polling")]
    suite!(polling, crate::backend::polling::PollingPoller);
    #[cfg(feature = "mio")]
    suite!(busy_poll, crate::backend::busy_poll::BusyPoller);
    #[cfg(feature = "io-uring")]
    suite!(io_uring, crate::backend::uring::UringPoller);
    #[cfg(feature = "io-uring")]
    suite!(
        io_uring_sqpoll,
        crate::backend::uring::UringPoller,
        super::PollerOptions {
            sqpoll: Some(std::time::Duration::from_millis(5)),
        }
    );
}
