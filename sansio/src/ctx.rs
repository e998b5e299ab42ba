//! The task's window on the runtime: [`Ctx`] gives the current time and
//! queues the [`Action`]s a handler produces.

use std::any::{Any, TypeId};
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::buf::PacketBuf;
use crate::bus::{
    Answers, BusTypes, Incoming, Reply, ReplySink, Request, RequestId, Responder, Route,
};
use crate::error::{RpcError, SpawnError};
use crate::id::RawId;
use crate::id::TaskId;
use crate::net::{
    TcpConnId, TcpEvent, TcpListenerId, TcpOptions, TcpWrap, TunError, TunId, TunOpened,
    TunOptions, TunPacket, TunWrap, UdpBound, UdpError, UdpOptions, UdpPacket, UdpSocketId,
    UdpWrap,
};
use crate::task::TimerKeyOf;
use crate::task::{Handles, Task};

/// Something a task asked the runtime to do, queued on its [`Ctx`].
///
/// The runtime takes actions out in the order they were queued and carries
/// each one out before the task's worker delivers its next input. New kinds
/// of action (packets, bus messages, spawns) are added as the runtime grows,
/// so the enum is `#[non_exhaustive]`.
#[non_exhaustive]
pub enum Action<T: Task> {
    /// An output for the controller, queued with [`Ctx::emit`].
    Emit(T::Output),
    /// Bind a UDP socket ([`Ctx::udp_bind`]).
    UdpBind {
        /// The id `udp_bind` returned.
        socket: UdpSocketId,
        /// The local address to bind.
        addr: SocketAddr,
        /// How to set the socket up.
        options: UdpOptions,
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
    /// Listen for TCP connections ([`Ctx::tcp_listen`]).
    TcpListen {
        /// The id `tcp_listen` returned.
        listener: TcpListenerId,
        /// The local address.
        addr: SocketAddr,
        /// How to set up the listener and its connections.
        options: TcpOptions,
        /// How the worker turns TCP events into the task's input.
        wrap: TcpWrap<T>,
    },
    /// Connect to a TCP peer ([`Ctx::tcp_connect`]).
    TcpConnect {
        /// The id `tcp_connect` returned.
        conn: TcpConnId,
        /// The peer.
        addr: SocketAddr,
        /// How to set up the connection.
        options: TcpOptions,
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
    /// Open a TUN/TAP device ([`Ctx::tun_open`]).
    TunOpen {
        /// The id `tun_open` returned.
        tun: TunId,
        /// The interface name asked for.
        name: String,
        /// How to open it.
        options: TunOptions,
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
    /// Send an answer ([`Responder::respond`](crate::Responder::respond)).
    Reply(Box<dyn FnOnce() + Send>),
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
}

impl<T: Task> Action<T> {
    /// For a direct message ([`Ctx::send_to`]) to a task of type `U`: the
    /// target. `None` for any other action or target type.
    #[must_use]
    pub fn sent_to<U: Task>(&self) -> Option<TaskId<U>> {
        match self {
            Action::SendTo { to, .. } => to.typed(),
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
        let Action::SendTo { to, payload } = self else {
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
        let Action::SendTo { to, payload } = self else {
            return Err(self);
        };
        match payload.downcast::<U::Input>() {
            Ok(input) => match (to.typed::<U>(), U::unwrap(*input)) {
                (Some(target), Some(message)) => Ok((target, message)),
                // `sent` checked both just above.
                _ => unreachable!("checked by `Action::sent`"),
            },
            Err(payload) => Err(Action::SendTo { to, payload }),
        }
    }

    /// For a request ([`Ctx::request`]) of type `R`: the request (its
    /// target: [`Action::requested_of`]).
    #[must_use]
    pub fn request<R: Request>(&self) -> Option<&R> {
        match self {
            Action::Request { request, .. } => request.downcast_ref::<R>(),
            _ => None,
        }
    }

    /// For a request ([`Ctx::request`]) to a task of type `U`: the target.
    #[must_use]
    pub fn requested_of<U: Task>(&self) -> Option<TaskId<U>> {
        match self {
            Action::Request { to, .. } => to.typed(),
            _ => None,
        }
    }
}

/// Turns the outcome of a spawn into the spawning task's input.
#[doc(hidden)]
pub type SpawnDone<T> = fn(SpawnId, SpawnOutcome) -> <T as Task>::Input;

/// The outcome of a spawn, type-erased: the new task's (worker, slot,
/// generation), or why not with the task handed back.
#[doc(hidden)]
pub type SpawnOutcome = Result<(u16, u32, u32), (SpawnFailure, Box<dyn Any + Send>)>;

/// Why a spawn from a task failed, before the task is typed again.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnFailure {
    Full,
    NoSuchWorker,
    TooManyTasks,
    Stopped,
    NotInWorker,
}

/// The ticket of a spawn from a task ([`Ctx::spawn`]): the [`Spawned`]
/// input with the outcome carries the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpawnId(pub(crate) u64);

/// The outcome of [`Ctx::spawn`] or [`Ctx::spawn_on`], delivered to the
/// task that spawned: the new task's id, or why it was not spawned with the
/// task handed back.
pub struct Spawned<U> {
    /// The ticket the spawn returned.
    pub id: SpawnId,
    /// The new task's id, or the error (holding the task).
    pub result: Result<TaskId<U>, SpawnError<U>>,
}

impl<U: Task> fmt::Debug for Spawned<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawned")
            .field("id", &self.id)
            .field("result", &self.result)
            .finish()
    }
}

/// The spawning task's input for the outcome of spawning a `U`.
fn spawned_input<T: Handles<Spawned<U>>, U: Task>(id: SpawnId, outcome: SpawnOutcome) -> T::Input {
    let result = match outcome {
        Ok((worker, slot, generation)) => Ok(TaskId::new(worker, slot, generation)),
        Err((failure, task)) => match task.downcast::<U>() {
            Ok(task) => Err(match failure {
                SpawnFailure::Full => SpawnError::Full(*task),
                SpawnFailure::NoSuchWorker => SpawnError::NoSuchWorker(*task),
                SpawnFailure::TooManyTasks => SpawnError::TooManyTasks(*task),
                SpawnFailure::Stopped => SpawnError::Stopped(*task),
                SpawnFailure::NotInWorker => SpawnError::NotInWorker(*task),
            }),
            // The worker hands back the box it was given: unreachable.
            Err(_) => unreachable!("a spawn hands back the task it was given"),
        },
    };
    T::wrap(Spawned { id, result })
}

/// Builds a request's input for its target from the request, given where
/// the answer goes (the sink, the asking task and the request's number).
#[doc(hidden)]
pub type MakeRequest =
    fn(Box<dyn Any + Send>, Arc<dyn ReplySink>, RawId, u64) -> Box<dyn Any + Send>;

/// The input of a `U` for the request `R` in `request`, answered along
/// `sink` to the task `owner`.
fn make_request<U: Answers<R>, R: Request>(
    request: Box<dyn Any + Send>,
    sink: Arc<dyn ReplySink>,
    owner: RawId,
    id: u64,
) -> Box<dyn Any + Send> {
    let route = Route::Task { sink, owner, id };
    let responder = Responder::new(route);
    match request.downcast::<R>() {
        Ok(request) => Box::new(U::wrap_request(Incoming {
            request: *request,
            responder,
        })),
        // `Ctx::request` boxes an `R` for this function: unreachable. Were
        // it not, the responder's drop answers `Dropped`.
        Err(request) => request,
    }
}

/// Turns an answer (type-erased) into the asking task's input.
#[doc(hidden)]
pub type ReplyInput<T> = fn(u64, Result<Box<dyn Any + Send>, RpcError>) -> <T as Task>::Input;

/// A task named by its type's `TypeId` instead of its type, for messages
/// between tasks of possibly different workers.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErasedTarget {
    pub(crate) worker: u16,
    pub(crate) task_type: TypeId,
    pub(crate) slot: u32,
    pub(crate) generation: u32,
}

impl ErasedTarget {
    /// The target as a typed id, when it is a `U`.
    fn typed<U: Task>(&self) -> Option<TaskId<U>> {
        (self.task_type == TypeId::of::<U>())
            .then(|| TaskId::new(self.worker, self.slot, self.generation))
    }

    fn of<U: Task>(task: TaskId<U>) -> Self {
        ErasedTarget {
            worker: task.worker() as u16,
            task_type: TypeId::of::<U>(),
            slot: task.slot(),
            generation: task.generation(),
        }
    }
}

/// The asking task's input for an answer to its request of type `R`.
fn reply_input<T: Handles<Reply<R>>, R: Request>(
    id: u64,
    result: Result<Box<dyn Any + Send>, RpcError>,
) -> T::Input {
    let result = result.and_then(|answer| {
        answer
            .downcast::<R::Response>()
            .map(|answer| *answer)
            // Only a target answering `R` builds this answer: unreachable.
            .map_err(|_| RpcError::Dropped)
    });
    T::wrap(Reply {
        id: RequestId(id),
        result,
    })
}

impl<T: Task> fmt::Debug for Action<T>
where
    T::Output: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Emit(output) => f.debug_tuple("Emit").field(output).finish(),
            Action::UdpBind {
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
            Action::UdpSend { socket, to, data } => f
                .debug_struct("UdpSend")
                .field("socket", socket)
                .field("to", to)
                .field("data", data)
                .finish(),
            Action::UdpSendMany { socket, to, data } => f
                .debug_struct("UdpSendMany")
                .field("socket", socket)
                .field("to", to)
                .field("data", data)
                .finish(),
            Action::UdpClose { socket } => {
                f.debug_struct("UdpClose").field("socket", socket).finish()
            }
            Action::TcpListen {
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
            Action::TcpConnect {
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
            Action::TcpSend { conn, data } => f
                .debug_struct("TcpSend")
                .field("conn", conn)
                .field("data", data)
                .finish(),
            Action::TcpShutdownWrite { conn } => f
                .debug_struct("TcpShutdownWrite")
                .field("conn", conn)
                .finish(),
            Action::TcpClose { conn } => f.debug_struct("TcpClose").field("conn", conn).finish(),
            Action::TcpAbort { conn } => f.debug_struct("TcpAbort").field("conn", conn).finish(),
            Action::TcpCloseListener { listener } => f
                .debug_struct("TcpCloseListener")
                .field("listener", listener)
                .finish(),
            Action::TunOpen {
                tun, name, options, ..
            } => f
                .debug_struct("TunOpen")
                .field("tun", tun)
                .field("name", name)
                .field("options", options)
                .finish_non_exhaustive(),
            Action::TunSend { tun, data } => f
                .debug_struct("TunSend")
                .field("tun", tun)
                .field("data", data)
                .finish(),
            Action::TunClose { tun } => f.debug_struct("TunClose").field("tun", tun).finish(),
            Action::Subscribe(channel) => f.debug_tuple("Subscribe").field(channel).finish(),
            Action::Unsubscribe(channel) => f.debug_tuple("Unsubscribe").field(channel).finish(),
            Action::Publish { channel, .. } => f
                .debug_struct("Publish")
                .field("channel", channel)
                .finish_non_exhaustive(),
            Action::Broadcast(_) => f.write_str("Broadcast(..)"),
            Action::SendTo { to, .. } => f
                .debug_struct("SendTo")
                .field("to", to)
                .finish_non_exhaustive(),
            Action::Request {
                to, id, timeout, ..
            } => f
                .debug_struct("Request")
                .field("to", to)
                .field("id", id)
                .field("timeout", timeout)
                .finish_non_exhaustive(),
            Action::Reply(_) => f.write_str("Reply(..)"),
            Action::Spawn { id, worker, .. } => f
                .debug_struct("Spawn")
                .field("id", id)
                .field("worker", worker)
                .finish_non_exhaustive(),
            Action::UdpHandOver { socket, to, .. } => f
                .debug_struct("UdpHandOver")
                .field("socket", socket)
                .field("to", to)
                .finish_non_exhaustive(),
            Action::TcpHandOver { conn, to, .. } => f
                .debug_struct("TcpHandOver")
                .field("conn", conn)
                .field("to", to)
                .finish_non_exhaustive(),
        }
    }
}

/// The context a task's handlers receive: the current time, the task's timer,
/// and the queue of actions for the runtime.
///
/// A handler does no I/O and reads no clock; it reads [`Ctx::now`] and queues
/// actions, which the runtime carries out in order once the handler returns.
/// Each task has its own `Ctx` for its whole life, so the timer and the
/// finished flag persist between calls.
pub struct Ctx<T: Task> {
    now: Instant,
    actions: VecDeque<Action<T>>,
    timer: Option<Instant>,
    /// Keyed timers: the deadline (and the order it was set in) per key,
    /// and the keys by deadline.
    keyed: HashMap<T::TimerKey, (Instant, u64)>,
    keyed_order: BTreeMap<(Instant, u64), T::TimerKey>,
    keyed_set: u64,
    /// The tick interval set at run time, and the next tick.
    tick: Option<(Duration, Instant)>,
    finished: bool,
    /// The worker the task runs on.
    worker: u16,
    /// The task this context belongs to, for the ids of its sockets.
    owner: RawId,
    /// Sockets made so far, for the next socket id.
    sockets_made: u32,
    /// Requests made so far, for the next request id.
    requests_made: u64,
    /// Spawns made so far, for the next spawn ticket.
    spawns_made: u64,
    /// When the task is asked to shut down: phase by phase.
    shutdown_phase: u8,
    /// Answers queued (`Action::Reply`) since the harness last took them.
    replies_queued: usize,
}

/// The number of shutdown phases: [`Ctx::set_shutdown_phase`] takes 0 to
/// `SHUTDOWN_PHASES - 1`.
pub const SHUTDOWN_PHASES: u8 = 8;

impl<T: Task> Ctx<T> {
    /// A context whose clock reads `now`, for the task `owner` on `worker`.
    pub(crate) fn new(now: Instant, worker: u16, owner: RawId) -> Self {
        Ctx {
            now,
            actions: VecDeque::new(),
            timer: None,
            keyed: HashMap::new(),
            keyed_order: BTreeMap::new(),
            keyed_set: 0,
            tick: None,
            finished: false,
            worker,
            owner,
            sockets_made: 0,
            requests_made: 0,
            spawns_made: 0,
            shutdown_phase: 0,
            replies_queued: 0,
        }
    }

    /// The worker's current time: the instant at which the input, tick or
    /// timer being handled is delivered. It never goes backwards.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// This task's own id, to tell other tasks how to reach it (in a bus
    /// message, a request, a spawned task's constructor).
    #[must_use]
    pub fn id(&self) -> TaskId<T> {
        TaskId::new(self.worker, self.owner.slot, self.owner.generation)
    }

    /// The index of the worker this task runs on.
    #[must_use]
    pub fn worker(&self) -> usize {
        usize::from(self.worker)
    }

    /// Queues `output` for the controller (`Runtime::next_event` delivers it,
    /// tagged with this task's id).
    pub fn emit(&mut self, output: T::Output) {
        self.actions.push_back(Action::Emit(output));
    }

    /// Arms the task's timer for `deadline`, replacing any earlier deadline.
    ///
    /// When it passes, the runtime disarms the timer and calls the task's
    /// `#[on_timer]` handler. A deadline in the past fires at the next
    /// opportunity. There is one timer per task, in the manner of
    /// `poll_timeout()` in quinn-proto and str0m: re-arm it with the earliest
    /// deadline the task cares about.
    pub fn set_timer(&mut self, deadline: Instant) {
        self.timer = Some(deadline);
    }

    /// Disarms the task's timer; a no-op when it is not armed.
    pub fn cancel_timer(&mut self) {
        self.timer = None;
    }

    /// The deadline the timer is armed for, if any.
    #[must_use]
    pub fn timer(&self) -> Option<Instant> {
        self.timer
    }

    /// Arms the timer of `key` for `deadline`, replacing that key's earlier
    /// deadline; other keys' timers are untouched. When it passes, the
    /// runtime disarms it and calls the task's keyed `#[on_timer]` handler
    /// (`fn t(&mut self, ctx: &mut Ctx<Self>, key: K)`) with the key.
    ///
    /// Any number of keys may be armed at once (a timeout per connection,
    /// per request, per peer), each stored until it fires or is cancelled.
    /// Only a task with a keyed `#[on_timer]` handler for `K` can call this:
    /// the compiler checks it.
    pub fn set_timer_for<K>(&mut self, key: K, deadline: Instant)
    where
        K: TimerKeyOf<T>,
    {
        let key = key.into_timer_key();
        self.keyed_set += 1;
        let order = (deadline, self.keyed_set);
        if let Some(earlier) = self.keyed.insert(key.clone(), order) {
            self.keyed_order.remove(&earlier);
        }
        self.keyed_order.insert(order, key);
    }

    /// Disarms the timer of `key`; returns whether it was armed.
    pub fn cancel_timer_for<K>(&mut self, key: &K) -> bool
    where
        K: TimerKeyOf<T> + Eq + Hash,
        T::TimerKey: Borrow<K>,
    {
        match self.keyed.remove(key) {
            Some(order) => {
                self.keyed_order.remove(&order);
                true
            }
            None => false,
        }
    }

    /// The deadline the timer of `key` is armed for, if it is.
    #[must_use]
    pub fn timer_for<K>(&self, key: &K) -> Option<Instant>
    where
        K: TimerKeyOf<T> + Eq + Hash,
        T::TimerKey: Borrow<K>,
    {
        self.keyed.get(key).map(|(deadline, _)| *deadline)
    }

    /// How many keyed timers are armed.
    #[must_use]
    pub fn keyed_timers(&self) -> usize {
        self.keyed.len()
    }

    /// Ticks this task every `every` from now on (the first tick one
    /// interval from now), instead of at the interval of its
    /// `#[on_tick(every = ..)]`, which is then only the default: an interval
    /// chosen at run time, from a constructor argument or a configuration.
    /// Calling it again restarts the schedule with the new interval. Ticks
    /// never drift (`start + k × every`) and missed ticks are skipped, as
    /// with the attribute's interval. An interval under one microsecond is
    /// raised to one.
    pub fn set_tick(&mut self, every: Duration) {
        let every = every.max(Duration::from_micros(1));
        self.tick = Some((every, self.now + every));
    }

    /// The tick interval set with [`Ctx::set_tick`], if any.
    #[must_use]
    pub fn tick_interval(&self) -> Option<Duration> {
        self.tick.map(|(every, _)| every)
    }

    /// Marks the task as finished: the actions queued so far are still
    /// carried out, then the task is removed and receives nothing more.
    ///
    /// What it sent is not lost with it: datagrams and device packets queued
    /// on its sockets are still sent before those close (they stop receiving
    /// at once), and its TCP connections close gracefully, once their queued
    /// bytes are written.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Sets when this task is asked to shut down (its `#[on_shutdown]`
    /// handler), so that tasks others depend on end last. At a graceful
    /// shutdown the runtime asks the tasks of phase 0 (the default) on every
    /// worker first; once every one of them has finished, those of phase 1;
    /// and so on. A registry, a store or a stats task that the others report
    /// to on their way out takes a later phase than theirs, and still
    /// receives their final messages. Phases above `SHUTDOWN_PHASES - 1`
    /// (7) count as 7. The shutdown deadline bounds all phases together.
    pub fn set_shutdown_phase(&mut self, phase: u8) {
        self.shutdown_phase = phase.min(SHUTDOWN_PHASES - 1);
    }

    /// The task's shutdown phase ([`Ctx::set_shutdown_phase`]; 0 by
    /// default).
    #[must_use]
    pub fn shutdown_phase(&self) -> u8 {
        self.shutdown_phase
    }

    /// Whether [`Ctx::finish`] has been called.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Binds a UDP socket to `addr` (port 0: the system picks one) and
    /// returns its id at once.
    ///
    /// The outcome arrives as an input, [`UdpBound`] (with the local
    /// address, or the error); then every datagram the socket receives
    /// arrives as a [`UdpPacket`], and send failures as [`UdpError`]s. A task
    /// must handle all three to call this: the compiler checks it. The worker
    /// closes the task's sockets when the task ends.
    pub fn udp_bind(&mut self, addr: SocketAddr, options: UdpOptions) -> UdpSocketId
    where
        T: Handles<UdpBound> + Handles<UdpPacket> + Handles<UdpError>,
    {
        let socket = UdpSocketId::new(self.worker, self.owner, self.next_socket_number());
        self.actions.push_back(Action::UdpBind {
            socket,
            addr,
            options,
            wrap: UdpWrap::new(),
        });
        socket
    }

    /// Sends `data` to `to` from `socket` (any socket of a task on this
    /// worker). The buffer is sent as it is: a received [`UdpPacket`]'s data
    /// can go straight back out, without a copy.
    ///
    /// Sends are queued in order and handed to the kernel in batches; a send
    /// that fails comes back as an [`UdpError`] with its payload.
    pub fn udp_send(&mut self, socket: UdpSocketId, to: SocketAddr, data: PacketBuf) {
        self.actions.push_back(Action::UdpSend { socket, to, data });
    }

    /// Sends one payload to every address of `to` (the fan-out of a media
    /// server): the payload is shared, not copied per peer.
    pub fn udp_send_many(&mut self, socket: UdpSocketId, to: &[SocketAddr], data: PacketBuf) {
        self.actions.push_back(Action::UdpSendMany {
            socket,
            to: to.into(),
            data,
        });
    }

    /// Closes a UDP socket of this task. Datagrams queued on it before (in
    /// this handler too) are still sent; it stops receiving and taking sends
    /// at once, and goes away once its queue is empty. Accepts an `Option`
    /// (as in `ctx.udp_close(self.socket.take())`) and ignores `None`.
    pub fn udp_close(&mut self, socket: impl Into<Option<UdpSocketId>>) {
        if let Some(socket) = socket.into() {
            self.actions.push_back(Action::UdpClose { socket });
        }
    }

    /// Listens for TCP connections on `addr` and returns the listener's id
    /// at once.
    ///
    /// Everything that happens on the listener and on the connections it
    /// accepts arrives as one input type, [`TcpEvent`]: first `Listening`
    /// (the address, or the error), then `Accepted` for each connection, then
    /// `Data`, `PeerClosed`, `Writable`, `SendFailed` and `Closed` for each.
    /// The task must handle `TcpEvent`: the compiler checks it. The worker
    /// closes the task's listeners and connections when the task ends.
    pub fn tcp_listen(&mut self, addr: SocketAddr, options: TcpOptions) -> TcpListenerId
    where
        T: Handles<TcpEvent>,
    {
        let listener = TcpListenerId::new(self.worker, self.owner, self.next_socket_number());
        self.actions.push_back(Action::TcpListen {
            listener,
            addr,
            options,
            wrap: TcpWrap::new(),
        });
        listener
    }

    /// Connects to `addr` and returns the connection's id at once; the
    /// outcome arrives as [`TcpEvent::Connected`]. Bytes sent before it are
    /// queued and go out once connected.
    pub fn tcp_connect(&mut self, addr: SocketAddr, options: TcpOptions) -> TcpConnId
    where
        T: Handles<TcpEvent>,
    {
        let conn = TcpConnId::new(self.worker, self.owner, self.next_socket_number());
        self.actions.push_back(Action::TcpConnect {
            conn,
            addr,
            options,
            wrap: TcpWrap::new(),
        });
        conn
    }

    /// Sends `data` on `conn`, in order after what was sent before.
    ///
    /// What the kernel cannot take yet is queued on the connection, up to
    /// its send limit (`TcpOptions::send_limit`); beyond, the data comes back
    /// as [`TcpEvent::SendFailed`], and so does every later send until
    /// [`TcpEvent::Writable`] says the queue has drained.
    pub fn tcp_send(&mut self, conn: TcpConnId, data: PacketBuf) {
        self.actions.push_back(Action::TcpSend { conn, data });
    }

    /// Shuts down the sending side of `conn` once what is queued has been
    /// sent: the peer reads to the end. Receiving goes on.
    pub fn tcp_shutdown_write(&mut self, conn: TcpConnId) {
        self.actions.push_back(Action::TcpShutdownWrite { conn });
    }

    /// Closes `conn` once what is queued has been sent, or resets it if
    /// that has not happened within `TcpOptions::close_timeout` (a peer that
    /// stopped reading).
    pub fn tcp_close(&mut self, conn: TcpConnId) {
        self.actions.push_back(Action::TcpClose { conn });
    }

    /// Resets `conn` at once: what is queued is dropped, the peer sees a
    /// reset. Counted in `tcp_closes_aborted`.
    pub fn tcp_abort(&mut self, conn: TcpConnId) {
        self.actions.push_back(Action::TcpAbort { conn });
    }

    /// Stops listening; connections already accepted stay open.
    pub fn tcp_close_listener(&mut self, listener: TcpListenerId) {
        self.actions
            .push_back(Action::TcpCloseListener { listener });
    }

    /// Opens a TUN or TAP device named `name` (a pattern such as
    /// `"sansio%d"` lets the kernel number it; empty picks a default) and
    /// returns its id at once.
    ///
    /// The outcome arrives as [`TunOpened`] (with the interface's name), each
    /// packet read as a [`TunPacket`], and failures as [`TunError`]s; the
    /// task must handle all three. The device exists while it is open. Its
    /// IPv4 address, MTU and up state can be set by `options`
    /// ([`TunOptions::address`], [`TunOptions::mtu`], [`TunOptions::up`])
    /// before `TunOpened` arrives; anything else (IPv6 addresses, routes) is
    /// configured from outside, after `TunOpened`. Opening needs
    /// `CAP_NET_ADMIN` and `/dev/net/tun`.
    pub fn tun_open(&mut self, name: &str, options: TunOptions) -> TunId
    where
        T: Handles<TunOpened> + Handles<TunPacket> + Handles<TunError>,
    {
        let tun = TunId::new(self.worker, self.owner, self.next_socket_number());
        self.actions.push_back(Action::TunOpen {
            tun,
            name: name.to_owned(),
            options,
            wrap: TunWrap::new(),
        });
        tun
    }

    /// Writes a packet to a device (an IP packet for TUN, a frame for TAP).
    pub fn tun_send(&mut self, tun: TunId, data: PacketBuf) {
        self.actions.push_back(Action::TunSend { tun, data });
    }

    /// Closes a device; it disappears from the system once the packets
    /// queued on it before are written (it stops being read at once).
    pub fn tun_close(&mut self, tun: TunId) {
        self.actions.push_back(Action::TunClose { tun });
    }

    /// Subscribes the task to a bus channel: events published on it arrive
    /// as [`BusInput::Event`](crate::BusInput::Event). Subscribing twice is the same as once.
    ///
    /// The task must declare a bus (`channel = …, event = …` on its
    /// `#[sansio::task(…)]`), as for the other bus methods below; without
    /// one, calling them is a compile error that says so.
    pub fn subscribe(&mut self, channel: <T::Bus as crate::bus::TaskBus<T>>::TaskChannel)
    where
        T::Bus: crate::bus::TaskBus<T>,
    {
        let channel = <T::Bus as crate::bus::TaskBus<T>>::channel(channel);
        self.actions.push_back(Action::Subscribe(channel));
    }

    /// Unsubscribes the task from a bus channel.
    pub fn unsubscribe(&mut self, channel: <T::Bus as crate::bus::TaskBus<T>>::TaskChannel)
    where
        T::Bus: crate::bus::TaskBus<T>,
    {
        let channel = <T::Bus as crate::bus::TaskBus<T>>::channel(channel);
        self.actions.push_back(Action::Unsubscribe(channel));
    }

    /// Publishes `event` on `channel`, to every task that subscribes to it,
    /// on every worker. Subscribers receive one publisher's events in order.
    ///
    /// The publisher receives its own event too when it subscribes to the
    /// channel (it is one of the subscribers). A subscription is in effect
    /// on the subscriber's own worker at once and on the others once they
    /// have heard of it: [`BusInput::Subscribed`](crate::BusInput::Subscribed)
    /// says when.
    pub fn publish(
        &mut self,
        channel: <T::Bus as crate::bus::TaskBus<T>>::TaskChannel,
        event: <T::Bus as crate::bus::TaskBus<T>>::TaskEvent,
    ) where
        T::Bus: crate::bus::TaskBus<T>,
    {
        let channel = <T::Bus as crate::bus::TaskBus<T>>::channel(channel);
        let event = <T::Bus as crate::bus::TaskBus<T>>::event(event);
        self.actions.push_back(Action::Publish { channel, event });
    }

    /// Sends `event` to every task with a bus, on every worker (this one
    /// included), as `BusInput::Event` with no channel.
    pub fn broadcast(&mut self, event: <T::Bus as crate::bus::TaskBus<T>>::TaskEvent)
    where
        T::Bus: crate::bus::TaskBus<T>,
    {
        let event = <T::Bus as crate::bus::TaskBus<T>>::event(event);
        self.actions.push_back(Action::Broadcast(event));
    }

    /// Sends `message` to the task `to`, on any worker, typed like
    /// `Runtime::send`: `to` must handle it. It arrives as an ordinary
    /// input. If it cannot be delivered (the target has ended, by the time
    /// it is sent or by the time it arrives, or its worker's bus inbox is
    /// full), this task gets `BusInput::SendFailed` (a task with a bus).
    ///
    /// Order: the direct messages and requests ([`Ctx::request`]) one task
    /// sends to one target arrive in the order they were sent, whichever
    /// the mix (they travel the same way: the target worker's bus inbox, or
    /// its local queue when it is this worker).
    pub fn send_to<U, M>(&mut self, to: TaskId<U>, message: M)
    where
        U: Handles<M>,
    {
        self.actions.push_back(Action::SendTo {
            to: ErasedTarget::of(to),
            payload: Box::new(U::wrap(message)),
        });
    }

    /// Asks the task `to` (any worker) with `request`, which it answers with
    /// an `#[on_request]` handler; the answer arrives as an input,
    /// [`Reply<R>`](Reply), with the returned id: the response, or
    /// `RpcError::Timeout` after `timeout`, `TaskGone` when `to` has ended,
    /// `Full` when its worker's bus inbox is, `Dropped` when it let the
    /// request go unanswered.
    pub fn request<U, R>(&mut self, to: TaskId<U>, request: R, timeout: Duration) -> RequestId
    where
        U: Answers<R>,
        R: Request,
        T: Handles<Reply<R>>,
    {
        self.requests_made += 1;
        let id = self.requests_made;
        self.actions.push_back(Action::Request {
            to: ErasedTarget::of(to),
            id,
            timeout,
            request: Box::new(request),
            make: make_request::<U, R>,
            reply: reply_input::<T, R>,
        });
        RequestId(id)
    }

    /// Spawns `task` on this task's own worker (where it can take over this
    /// task's connections, [`Ctx::tcp_hand_over`]) and returns a ticket at
    /// once. The new task starts after this handler returns; its id arrives
    /// as a [`Spawned<U>`](Spawned) input with the same ticket, or the
    /// [`SpawnError`] with the task handed back. `U` must be one of the task
    /// types of this task's worker kind (else
    /// [`SpawnError::NotInWorker`]).
    pub fn spawn<U>(&mut self, task: U) -> SpawnId
    where
        U: Task + Send,
        T: Handles<Spawned<U>>,
    {
        self.spawn_at(None, task)
    }

    /// Spawns `task` on worker `worker`, as [`Ctx::spawn`] does on this
    /// task's own ([`SpawnError::NoSuchWorker`] when there is no such
    /// worker, [`SpawnError::Full`] when its bus inbox is full).
    pub fn spawn_on<U>(&mut self, worker: usize, task: U) -> SpawnId
    where
        U: Task + Send,
        T: Handles<Spawned<U>>,
    {
        self.spawn_at(Some(worker), task)
    }

    fn spawn_at<U>(&mut self, worker: Option<usize>, task: U) -> SpawnId
    where
        U: Task + Send,
        T: Handles<Spawned<U>>,
    {
        self.spawns_made += 1;
        let id = SpawnId(self.spawns_made);
        self.actions.push_back(Action::Spawn {
            id,
            worker,
            task_type: TypeId::of::<U>(),
            task: Box::new(task),
            done: spawned_input::<T, U>,
        });
        id
    }

    /// Hands the connection `conn` over to the task `to`, which must run on
    /// this worker (spawn it with [`Ctx::spawn`]): from then on every
    /// [`TcpEvent`] of the connection goes to `to`, including those already
    /// waiting to be delivered, and the connection closes when `to` ends.
    /// What was queued for sending stays queued, in order. A hand-over that
    /// cannot be made comes back as [`TcpEvent::Refused`] and the connection
    /// stays where it was: it is another worker's (`InvalidInput`), not open
    /// (`NotConnected`) or not this task's (`PermissionDenied`), or `to` runs
    /// elsewhere (`InvalidInput`) or has ended (`NotFound`).
    pub fn tcp_hand_over<U>(&mut self, conn: TcpConnId, to: TaskId<U>)
    where
        U: Handles<TcpEvent>,
    {
        self.actions.push_back(Action::TcpHandOver {
            conn,
            to: ErasedTarget::of(to),
            wrap: Box::new(TcpWrap::<U>::new()),
        });
    }

    /// Hands the UDP socket `socket` over to the task `to`, which must run
    /// on this worker: from then on the datagrams it receives (those already
    /// waiting to be delivered included) and its errors go to `to`, and it
    /// closes when `to` ends. Queued datagrams stay queued, in order. A
    /// hand-over that cannot be made comes back as a [`UdpError`] and the
    /// socket stays where it was: the socket is another worker's
    /// (`InvalidInput`), not open (`NotConnected`) or not this task's
    /// (`PermissionDenied`), or `to` runs elsewhere (`InvalidInput`) or has
    /// ended (`NotFound`).
    pub fn udp_hand_over<U>(&mut self, socket: UdpSocketId, to: TaskId<U>)
    where
        U: Handles<UdpBound> + Handles<UdpPacket> + Handles<UdpError>,
    {
        self.actions.push_back(Action::UdpHandOver {
            socket,
            to: ErasedTarget::of(to),
            wrap: Box::new(UdpWrap::<U>::new()),
        });
    }

    /// Queues an answer's delivery, carried out after the handler.
    pub(crate) fn reply(&mut self, send: Box<dyn FnOnce() + Send>) {
        self.replies_queued += 1;
        self.actions.push_back(Action::Reply(send));
    }

    /// Takes the queued answers (for the harness, which carries them out
    /// after each hook); cheap when there are none.
    #[inline]
    pub(crate) fn has_replies(&self) -> bool {
        self.replies_queued > 0
    }

    pub(crate) fn take_replies(&mut self) -> Vec<Action<T>> {
        if self.replies_queued == 0 {
            return Vec::new();
        }
        self.replies_queued = 0;
        self.take_actions(|action| matches!(action, Action::Reply(_)))
    }

    /// The number for this task's next socket id (below 2³¹: the top bit
    /// marks accepted connections).
    fn next_socket_number(&mut self) -> u32 {
        self.sockets_made = self.sockets_made.wrapping_add(1) & !(1 << 31);
        self.sockets_made
    }

    /// Moves the clock to `now`; the runtime never moves it backwards.
    pub(crate) fn set_now(&mut self, now: Instant) {
        debug_assert!(now >= self.now, "time went backwards");
        self.now = now;
    }

    /// Takes the oldest queued action.
    pub(crate) fn next_action(&mut self) -> Option<Action<T>> {
        self.actions.pop_front()
    }

    /// Takes the queued actions `wanted` picks, in order, leaving the others
    /// queued in theirs.
    pub(crate) fn take_actions(
        &mut self,
        mut wanted: impl FnMut(&Action<T>) -> bool,
    ) -> Vec<Action<T>> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.actions.len());
        for action in self.actions.drain(..) {
            if wanted(&action) {
                taken.push(action);
            } else {
                kept.push_back(action);
            }
        }
        self.actions = kept;
        taken
    }

    /// The earliest of the timer, the keyed timers and the run-time tick.
    #[inline]
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        // The common case, a task with at most its one timer, first.
        if self.keyed_order.is_empty() && self.tick.is_none() {
            return self.timer;
        }
        let keyed = self
            .keyed_order
            .keys()
            .next()
            .map(|(deadline, _)| *deadline);
        let tick = self.tick.map(|(_, next)| next);
        [self.timer, keyed, tick].into_iter().flatten().min()
    }

    /// Disarms the keyed timers due at `now` and returns their keys, in
    /// deadline order.
    #[inline]
    pub(crate) fn take_due_keyed(&mut self, now: Instant) -> Vec<T::TimerKey> {
        let mut due = Vec::new();
        if self.keyed_order.is_empty() {
            return due;
        }
        while let Some(entry) = self.keyed_order.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.keyed.remove(&key);
            due.push(key);
        }
        due
    }

    /// Whether the run-time tick is due at `now`; if so, schedules the next
    /// one (skipping those missed).
    pub(crate) fn take_due_tick(&mut self, now: Instant) -> bool {
        match &mut self.tick {
            Some((every, next)) if *next <= now => {
                // The first point of the schedule after `now`, in one step
                // however many were missed.
                let missed = now.duration_since(*next).as_nanos() / every.as_nanos().max(1);
                let steps = u32::try_from(missed + 1).unwrap_or(u32::MAX);
                *next = every
                    .checked_mul(steps)
                    .and_then(|ahead| next.checked_add(ahead))
                    .unwrap_or(now + *every);
                true
            }
            _ => false,
        }
    }

    /// Whether the tick interval was set at run time (the worker's shared
    /// tick of the task type then skips this task).
    pub(crate) fn ticks_itself(&self) -> bool {
        self.tick.is_some()
    }

    /// Disarms the timer if it is due at `now`, returning whether it was.
    pub(crate) fn take_due_timer(&mut self, now: Instant) -> bool {
        match self.timer {
            Some(deadline) if deadline <= now => {
                self.timer = None;
                true
            }
            _ => false,
        }
    }
}

impl<T: Task> fmt::Debug for Ctx<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ctx")
            .field("task", &T::NAME)
            .field("now", &self.now)
            .field("queued_actions", &self.actions.len())
            .field("timer", &self.timer)
            .field("keyed_timers", &self.keyed.len())
            .field("tick", &self.tick)
            .field("finished", &self.finished)
            .finish()
    }
}
