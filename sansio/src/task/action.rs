//! What a task asks of the runtime: the [`Action`]s its [`Ctx`](super::Ctx)
//! queues, grouped as its methods are ([`NetAction`], [`BusAction`]).

use std::any::{Any, TypeId};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

#[cfg(doc)]
use super::Ctx;
use super::erased::{ErasedTarget, MakeRequest, ReplyInput, SpawnDone, SpawnId};
use super::{Handles, Task, TcpWrap, TunWrap, UdpWrap};
use crate::buf::PacketBuf;
use crate::bus::{BusTypes, Request};
use crate::id::TaskId;
use crate::net::{
    TcpConnId, TcpListenerId, TcpOptions, TunId, TunOptions, UdpOptions, UdpSocketId,
};

/// Something a task asked the runtime to do, queued on its [`Ctx`].
///
/// The runtime takes actions out in the order they were queued and carries
/// each one out before the task's worker delivers its next input. They are
/// grouped as the [`Ctx`] methods that make them: an output, a socket or
/// device call ([`NetAction`]), a bus call ([`BusAction`]), a spawn, an
/// answer. A [`TaskHarness`](crate::testing::TaskHarness) hands them out
/// with `drain_actions`; its `drain_*` methods pick the common ones.
#[non_exhaustive]
pub enum Action<T: Task> {
    /// An output for the controller, queued with [`Ctx::emit`].
    Emit(T::Output),
    /// A call on a socket or device: `udp_*`, `tcp_*`, `tun_*`.
    Net(NetAction<T>),
    /// A call on the bus: subscriptions, publishing, direct messages and
    /// requests.
    Bus(BusAction<T>),
    /// Spawn a task ([`Ctx::spawn`], [`Ctx::spawn_on`]).
    Spawn {
        /// The ticket `spawn` returned.
        id: SpawnId,
        /// The worker to spawn on; `None` for this task's own.
        worker: Option<usize>,
        /// The new task's type.
        task_type: TypeId,
        /// The task, type-erased for the trip.
        task: Box<dyn Any + Send>,
        /// Turns the outcome into this task's `Spawned` input.
        done: SpawnDone<T>,
    },
    /// Send an answer ([`Responder::respond`](crate::bus::Responder::respond)).
    Reply(Box<dyn FnOnce() + Send>),
}

/// A call on a socket or device ([`Action::Net`]), one variant per [`Ctx`]
/// method.
#[non_exhaustive]
pub enum NetAction<T: Task> {
    /// Bind a UDP socket ([`Ctx::udp_bind`]).
    UdpBind {
        /// The id `udp_bind` returned.
        socket: UdpSocketId,
        /// The local address to bind.
        addr: SocketAddr,
        /// How to set the socket up (boxed: a bind is rare, and the
        /// options would make every action larger).
        options: Box<UdpOptions>,
        /// How the worker turns this socket's events into the task's input.
        wrap: UdpWrap<T>,
    },
    /// Send one datagram ([`Ctx::udp_send`]).
    UdpSend {
        /// The socket to send from.
        socket: UdpSocketId,
        /// The destination.
        to: SocketAddr,
        /// The payload.
        data: PacketBuf,
    },
    /// Send one payload to many peers ([`Ctx::udp_send_many`]).
    UdpSendMany {
        /// The socket to send from.
        socket: UdpSocketId,
        /// The destinations.
        to: Box<[SocketAddr]>,
        /// The payload, shared by every datagram.
        data: PacketBuf,
    },
    /// Close a UDP socket ([`Ctx::udp_close`]).
    UdpClose {
        /// The socket.
        socket: UdpSocketId,
    },
    /// Hand a UDP socket over to another task ([`Ctx::udp_hand_over`]).
    UdpHandOver {
        /// The socket.
        socket: UdpSocketId,
        /// The task that takes it over.
        to: ErasedTarget,
        /// How the worker turns UDP events into that task's input (a
        /// `UdpWrap` of its type).
        wrap: Box<dyn Any + Send>,
    },
    /// Listen for TCP connections ([`Ctx::tcp_listen`]).
    TcpListen {
        /// The id `tcp_listen` returned.
        listener: TcpListenerId,
        /// The local address.
        addr: SocketAddr,
        /// How to set up the listener and its connections (boxed, as for
        /// [`NetAction::UdpBind`]).
        options: Box<TcpOptions>,
        /// How the worker turns TCP events into the task's input.
        wrap: TcpWrap<T>,
    },
    /// Connect to a TCP peer ([`Ctx::tcp_connect`]).
    TcpConnect {
        /// The id `tcp_connect` returned.
        conn: TcpConnId,
        /// The peer.
        addr: SocketAddr,
        /// How to set up the connection (boxed, as for
        /// [`NetAction::UdpBind`]).
        options: Box<TcpOptions>,
        /// How the worker turns TCP events into the task's input.
        wrap: TcpWrap<T>,
    },
    /// Send bytes on a connection ([`Ctx::tcp_send`]).
    TcpSend {
        /// The connection.
        conn: TcpConnId,
        /// The bytes.
        data: PacketBuf,
    },
    /// Shut down writing once queued bytes are sent ([`Ctx::tcp_shutdown_write`]).
    TcpShutdownWrite {
        /// The connection.
        conn: TcpConnId,
    },
    /// Close a connection once queued bytes are sent ([`Ctx::tcp_close`]).
    TcpClose {
        /// The connection.
        conn: TcpConnId,
    },
    /// Reset a connection at once ([`Ctx::tcp_abort`]).
    TcpAbort {
        /// The connection.
        conn: TcpConnId,
    },
    /// Stop listening ([`Ctx::tcp_close_listener`]).
    TcpCloseListener {
        /// The listener.
        listener: TcpListenerId,
    },
    /// Hand a connection over to another task ([`Ctx::tcp_hand_over`]).
    TcpHandOver {
        /// The connection.
        conn: TcpConnId,
        /// The task that takes it over.
        to: ErasedTarget,
        /// How the worker turns TCP events into that task's input
        /// (a `TcpWrap` of its type).
        wrap: Box<dyn Any + Send>,
    },
    /// Open a TUN/TAP device ([`Ctx::tun_open`]).
    TunOpen {
        /// The id `tun_open` returned.
        tun: TunId,
        /// The interface name asked for.
        name: String,
        /// How to open it (boxed, as for [`NetAction::UdpBind`]).
        options: Box<TunOptions>,
        /// How the worker turns device events into the task's input.
        wrap: TunWrap<T>,
    },
    /// Write a packet to a device ([`Ctx::tun_send`]).
    TunSend {
        /// The device.
        tun: TunId,
        /// The packet.
        data: PacketBuf,
    },
    /// Close a device ([`Ctx::tun_close`]).
    TunClose {
        /// The device.
        tun: TunId,
    },
}

/// A call on the bus ([`Action::Bus`]), one variant per [`Ctx`] method.
#[non_exhaustive]
pub enum BusAction<T: Task> {
    /// Subscribe to a bus channel ([`Ctx::subscribe`]).
    Subscribe(<T::Bus as BusTypes>::Channel),
    /// Unsubscribe from a bus channel ([`Ctx::unsubscribe`]).
    Unsubscribe(<T::Bus as BusTypes>::Channel),
    /// Publish on a bus channel ([`Ctx::publish`]).
    Publish {
        /// The channel.
        channel: <T::Bus as BusTypes>::Channel,
        /// The event.
        event: <T::Bus as BusTypes>::Event,
    },
    /// Broadcast to every task with a bus ([`Ctx::broadcast`]).
    Broadcast(<T::Bus as BusTypes>::Event),
    /// Send a message to another task ([`Ctx::send_to`]).
    SendTo {
        /// The target.
        to: ErasedTarget,
        /// The target's input, type-erased for the trip.
        payload: Box<dyn Any + Send>,
    },
    /// Ask another task ([`Ctx::request`]).
    Request {
        /// The target.
        to: ErasedTarget,
        /// The request's id.
        id: u64,
        /// How long to wait for the answer.
        timeout: Duration,
        /// The request (an `R`), type-erased for the trip; see
        /// [`Action::request`].
        request: Box<dyn Any + Send>,
        /// Builds the target's input from the request, given where its
        /// answer goes.
        make: MakeRequest,
        /// Turns the answer into this task's input.
        reply: ReplyInput<T>,
    },
}

impl<T: Task> Action<T> {
    /// For a direct message ([`Ctx::send_to`]) to a task of type `U`: the
    /// target. `None` for any other action or target type.
    #[must_use]
    pub fn sent_to<U: Task>(&self) -> Option<TaskId<U>> {
        match self {
            Action::Bus(BusAction::SendTo { to, .. }) => to.typed(),
            _ => None,
        }
    }

    /// For a direct message ([`Ctx::send_to`]) of type `M` to a task of type
    /// `U`: the target and the message. `None` for anything else. (The
    /// payload travels as `U`'s input enum, type-erased; this looks `M` up
    /// in it.)
    #[must_use]
    pub fn sent<U, M>(&self) -> Option<(TaskId<U>, &M)>
    where
        U: Handles<M>,
    {
        let Action::Bus(BusAction::SendTo { to, payload }) = self else {
            return None;
        };
        let input = payload.downcast_ref::<U::Input>()?;
        Some((to.typed::<U>()?, U::unwrap_ref(input)?))
    }

    /// Like [`Action::sent`], taking the message out.
    ///
    /// # Errors
    ///
    /// The action itself, when it is not such a message.
    #[allow(
        clippy::result_large_err,
        reason = "the action comes back as it was, as `Box::downcast` does"
    )]
    pub fn into_sent<U, M>(self) -> Result<(TaskId<U>, M), Self>
    where
        U: Handles<M>,
    {
        if self.sent::<U, M>().is_none() {
            return Err(self);
        }
        let Action::Bus(BusAction::SendTo { to, payload }) = self else {
            return Err(self);
        };
        match payload.downcast::<U::Input>() {
            Ok(input) => match (to.typed::<U>(), U::unwrap(*input)) {
                (Some(target), Some(message)) => Ok((target, message)),
                // `sent` checked both just above.
                _ => unreachable!("checked by `Action::sent`"),
            },
            Err(payload) => Err(Action::Bus(BusAction::SendTo { to, payload })),
        }
    }

    /// For a request ([`Ctx::request`]) of type `R`: the request (its
    /// target: [`Action::requested_of`]).
    #[must_use]
    pub fn request<R: Request>(&self) -> Option<&R> {
        match self {
            Action::Bus(BusAction::Request { request, .. }) => request.downcast_ref::<R>(),
            _ => None,
        }
    }

    /// For a request ([`Ctx::request`]) to a task of type `U`: the target.
    #[must_use]
    pub fn requested_of<U: Task>(&self) -> Option<TaskId<U>> {
        match self {
            Action::Bus(BusAction::Request { to, .. }) => to.typed(),
            _ => None,
        }
    }
}

impl<T: Task> fmt::Debug for Action<T>
where
    T::Output: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Emit(output) => f.debug_tuple("Emit").field(output).finish(),
            Action::Net(action) => f.debug_tuple("Net").field(action).finish(),
            Action::Bus(action) => f.debug_tuple("Bus").field(action).finish(),
            Action::Spawn { id, worker, .. } => f
                .debug_struct("Spawn")
                .field("id", id)
                .field("worker", worker)
                .finish_non_exhaustive(),
            Action::Reply(_) => f.write_str("Reply(..)"),
        }
    }
}

impl<T: Task> fmt::Debug for NetAction<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetAction::UdpBind {
                socket,
                addr,
                options,
                ..
            } => f
                .debug_struct("UdpBind")
                .field("socket", socket)
                .field("addr", addr)
                .field("options", options)
                .finish_non_exhaustive(),
            NetAction::UdpSend { socket, to, data } => f
                .debug_struct("UdpSend")
                .field("socket", socket)
                .field("to", to)
                .field("data", data)
                .finish(),
            NetAction::UdpSendMany { socket, to, data } => f
                .debug_struct("UdpSendMany")
                .field("socket", socket)
                .field("to", to)
                .field("data", data)
                .finish(),
            NetAction::UdpClose { socket } => {
                f.debug_struct("UdpClose").field("socket", socket).finish()
            }
            NetAction::UdpHandOver { socket, to, .. } => f
                .debug_struct("UdpHandOver")
                .field("socket", socket)
                .field("to", to)
                .finish_non_exhaustive(),
            NetAction::TcpListen {
                listener,
                addr,
                options,
                ..
            } => f
                .debug_struct("TcpListen")
                .field("listener", listener)
                .field("addr", addr)
                .field("options", options)
                .finish_non_exhaustive(),
            NetAction::TcpConnect {
                conn,
                addr,
                options,
                ..
            } => f
                .debug_struct("TcpConnect")
                .field("conn", conn)
                .field("addr", addr)
                .field("options", options)
                .finish_non_exhaustive(),
            NetAction::TcpSend { conn, data } => f
                .debug_struct("TcpSend")
                .field("conn", conn)
                .field("data", data)
                .finish(),
            NetAction::TcpShutdownWrite { conn } => f
                .debug_struct("TcpShutdownWrite")
                .field("conn", conn)
                .finish(),
            NetAction::TcpClose { conn } => f.debug_struct("TcpClose").field("conn", conn).finish(),
            NetAction::TcpAbort { conn } => f.debug_struct("TcpAbort").field("conn", conn).finish(),
            NetAction::TcpCloseListener { listener } => f
                .debug_struct("TcpCloseListener")
                .field("listener", listener)
                .finish(),
            NetAction::TcpHandOver { conn, to, .. } => f
                .debug_struct("TcpHandOver")
                .field("conn", conn)
                .field("to", to)
                .finish_non_exhaustive(),
            NetAction::TunOpen {
                tun, name, options, ..
            } => f
                .debug_struct("TunOpen")
                .field("tun", tun)
                .field("name", name)
                .field("options", options)
                .finish_non_exhaustive(),
            NetAction::TunSend { tun, data } => f
                .debug_struct("TunSend")
                .field("tun", tun)
                .field("data", data)
                .finish(),
            NetAction::TunClose { tun } => f.debug_struct("TunClose").field("tun", tun).finish(),
        }
    }
}

impl<T: Task> fmt::Debug for BusAction<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusAction::Subscribe(channel) => f.debug_tuple("Subscribe").field(channel).finish(),
            BusAction::Unsubscribe(channel) => f.debug_tuple("Unsubscribe").field(channel).finish(),
            BusAction::Publish { channel, .. } => f
                .debug_struct("Publish")
                .field("channel", channel)
                .finish_non_exhaustive(),
            BusAction::Broadcast(_) => f.write_str("Broadcast(..)"),
            BusAction::SendTo { to, .. } => f
                .debug_struct("SendTo")
                .field("to", to)
                .finish_non_exhaustive(),
            BusAction::Request {
                to, id, timeout, ..
            } => f
                .debug_struct("Request")
                .field("to", to)
                .field("id", id)
                .field("timeout", timeout)
                .finish_non_exhaustive(),
        }
    }
}
