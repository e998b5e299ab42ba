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
use std::net::SocketAddr;

use crate::buf::PacketBuf;
use crate::id::RawId;
use crate::{Handles, Task};

pub(crate) mod sys;
pub(crate) mod udp;

/// A UDP socket of a task, from `Ctx::udp_bind`.
///
/// Ids are unique on their worker and never reused; any task on the same
/// worker may send through a socket, and what it receives goes to the task
/// that bound it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpSocketId {
    owner: RawId,
    number: u32,
}

impl UdpSocketId {
    pub(crate) fn new(owner: RawId, number: u32) -> Self {
        UdpSocketId { owner, number }
    }
}

impl fmt::Debug for UdpSocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `udp#<type>.<slot>.<generation>/<n>`: the n-th socket its task bound.
impl fmt::Display for UdpSocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "udp#{}.{}.{}/{}",
            self.owner.group, self.owner.slot, self.owner.generation, self.number
        )
    }
}

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

/// How the worker turns network events into a task's input: captured by
/// `Ctx::udp_bind`, where the task's handlers are known.
pub struct UdpWrap<T: Task> {
    pub(crate) bound: fn(UdpBound) -> T::Input,
    pub(crate) packet: fn(UdpPacket) -> T::Input,
    pub(crate) error: fn(UdpError) -> T::Input,
}

impl<T: Task> UdpWrap<T> {
    pub(crate) fn new() -> Self
    where
        T: Handles<UdpBound> + Handles<UdpPacket> + Handles<UdpError>,
    {
        UdpWrap {
            bound: <T as Handles<UdpBound>>::wrap,
            packet: <T as Handles<UdpPacket>>::wrap,
            error: <T as Handles<UdpError>>::wrap,
        }
    }
}

impl<T: Task> Clone for UdpWrap<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Task> Copy for UdpWrap<T> {}

impl<T: Task> fmt::Debug for UdpWrap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UdpWrap<{}>", T::NAME)
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
}

impl NetInput {
    /// The task's input for this event, if the task has the handlers.
    pub(crate) fn into_input<T: Task>(
        self,
        udp: Option<&UdpWrap<T>>,
    ) -> Result<T::Input, NetInput> {
        match (self, udp) {
            (NetInput::UdpBound(bound), Some(wrap)) => Ok((wrap.bound)(bound)),
            (NetInput::UdpPacket(packet), Some(wrap)) => Ok((wrap.packet)(packet)),
            (NetInput::UdpError(error), Some(wrap)) => Ok((wrap.error)(error)),
            (input, None) => Err(input),
        }
    }
}

/// What a backend token stands for: the kind of source in its low bits, its
/// index above them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Udp(usize),
}

/// Bits of a token that say the kind of source.
const KIND_BITS: u32 = 2;
const KIND_UDP: usize = 0;

impl Source {
    pub(crate) fn token(self) -> usize {
        match self {
            Source::Udp(index) => index << KIND_BITS | KIND_UDP,
        }
    }

    pub(crate) fn from_token(token: usize) -> Option<Source> {
        let index = token >> KIND_BITS;
        match token & ((1 << KIND_BITS) - 1) {
            KIND_UDP => Some(Source::Udp(index)),
            _ => None,
        }
    }
}

/// The network state of one worker: its sockets, the registry that watches
/// them, and the events the worker itself produced for its tasks.
pub(crate) struct Net {
    registry: Box<dyn crate::backend::Registry>,
    pub(crate) udp: udp::UdpSockets,
    /// Events for tasks that the worker produced (a bind's outcome, a send's
    /// failure), delivered in order before the worker moves on.
    pub(crate) local: std::collections::VecDeque<(RawId, NetInput)>,
    /// Scratch space for received datagrams, kept between batches.
    pub(crate) inbound: Vec<(RawId, NetInput)>,
}

impl Net {
    pub(crate) fn new(registry: Box<dyn crate::backend::Registry>) -> Self {
        Net {
            registry,
            udp: udp::UdpSockets::new(),
            local: std::collections::VecDeque::new(),
            inbound: Vec::new(),
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
        self.udp
            .send(from, socket, to, payload, &mut self.local, counters);
    }

    /// Closes a socket.
    pub(crate) fn udp_close(&mut self, socket: UdpSocketId, counters: &mut crate::stats::Counters) {
        self.udp.close(socket, self.registry.as_mut());
        counters.udp_sockets = self.udp.len() as u64;
    }

    /// Hands queued datagrams to the kernel.
    pub(crate) fn flush(&mut self, counters: &mut crate::stats::Counters) {
        self.udp.flush(
            self.registry.as_mut(),
            |index| Source::Udp(index).token(),
            &mut self.local,
            counters,
        );
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
