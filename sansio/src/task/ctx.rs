//! The task's window on the runtime: [`Ctx`] gives the current time and
//! queues the [`Action`]s a handler produces.
//!
//! About 740 lines on purpose: every method of `Ctx` is in this one inherent
//! `impl`. An inherent `impl` in another module is named by its module path in
//! compiler errors (`sansio::task::ctx::net::<impl Ctx<T>>::udp_bind` rather
//! than `Ctx::<T>::udp_bind`), and those errors are what a task author reads
//! when a handler is missing.

use std::any::TypeId;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::erased::{make_request, reply_input, spawned_input};
use super::queue::Actions;
use super::{
    Action, Answers, BusAction, ErasedTarget, Handles, NetAction, SpawnId, Spawned, Task, TcpWrap,
    TimerKeyOf, TunWrap, UdpWrap,
};
use crate::buf::PacketBuf;
use crate::bus::{Reply, Request, RequestId, TaskBus};
#[cfg(doc)]
use crate::error::SpawnError;
use crate::id::{RawId, TaskId};
use crate::net::{
    TcpConnId, TcpEvent, TcpListenerId, TcpOptions, TunError, TunId, TunOpened, TunOptions,
    TunPacket, UdpBound, UdpError, UdpOptions, UdpPacket, UdpSocketId,
};

/// The context a task's handlers receive: the current time, the task's timer,
/// and the queue of actions for the runtime.
///
/// A handler does no I/O and reads no clock; it reads [`Ctx::now`] and queues
/// actions, which the runtime carries out in order once the handler returns.
/// Each task has its own `Ctx` for its whole life, so the timer and the
/// finished flag persist between calls.
pub struct Ctx<T: Task> {
    now: Instant,
    actions: Actions<T>,
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
            actions: Actions::new(),
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
        self.actions.push_output(output);
    }

    /// Queues a socket or device call.
    fn net(&mut self, action: NetAction<T>) {
        self.actions.push(Action::Net(action));
    }

    /// Queues a bus call.
    fn bus(&mut self, action: BusAction<T>) {
        self.actions.push(Action::Bus(action));
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
        self.net(NetAction::UdpBind {
            socket,
            addr,
            options: Box::new(options),
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
        self.net(NetAction::UdpSend { socket, to, data });
    }

    /// Sends one payload to every address of `to` (the fan-out of a media
    /// server): the payload is shared, not copied per peer.
    pub fn udp_send_many(&mut self, socket: UdpSocketId, to: &[SocketAddr], data: PacketBuf) {
        self.net(NetAction::UdpSendMany {
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
            self.net(NetAction::UdpClose { socket });
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
        self.net(NetAction::TcpListen {
            listener,
            addr,
            options: Box::new(options),
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
        self.net(NetAction::TcpConnect {
            conn,
            addr,
            options: Box::new(options),
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
        self.net(NetAction::TcpSend { conn, data });
    }

    /// Shuts down the sending side of `conn` once what is queued has been
    /// sent: the peer reads to the end. Receiving goes on.
    pub fn tcp_shutdown_write(&mut self, conn: TcpConnId) {
        self.net(NetAction::TcpShutdownWrite { conn });
    }

    /// Closes `conn` once what is queued has been sent, or resets it if
    /// that has not happened within `TcpOptions::close_timeout` (a peer that
    /// stopped reading).
    pub fn tcp_close(&mut self, conn: TcpConnId) {
        self.net(NetAction::TcpClose { conn });
    }

    /// Resets `conn` at once: what is queued is dropped, the peer sees a
    /// reset. Counted in `tcp_closes_aborted`.
    pub fn tcp_abort(&mut self, conn: TcpConnId) {
        self.net(NetAction::TcpAbort { conn });
    }

    /// Stops listening; connections already accepted stay open.
    pub fn tcp_close_listener(&mut self, listener: TcpListenerId) {
        self.net(NetAction::TcpCloseListener { listener });
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
        self.net(NetAction::TunOpen {
            tun,
            name: name.to_owned(),
            options: Box::new(options),
            wrap: TunWrap::new(),
        });
        tun
    }

    /// Writes a packet to a device (an IP packet for TUN, a frame for TAP).
    pub fn tun_send(&mut self, tun: TunId, data: PacketBuf) {
        self.net(NetAction::TunSend { tun, data });
    }

    /// Closes a device; it disappears from the system once the packets
    /// queued on it before are written (it stops being read at once).
    pub fn tun_close(&mut self, tun: TunId) {
        self.net(NetAction::TunClose { tun });
    }

    /// Subscribes the task to a bus channel: events published on it arrive
    /// as [`BusInput::Event`](crate::bus::BusInput::Event). Subscribing twice is the same as once.
    ///
    /// The task must declare a bus (`channel = …, event = …` on its
    /// `#[sansio::task(…)]`), as for the other bus methods below; without
    /// one, calling them is a compile error that says so.
    pub fn subscribe(&mut self, channel: <T::Bus as TaskBus<T>>::TaskChannel)
    where
        T::Bus: TaskBus<T>,
    {
        let channel = <T::Bus as TaskBus<T>>::channel(channel);
        self.bus(BusAction::Subscribe(channel));
    }

    /// Unsubscribes the task from a bus channel.
    pub fn unsubscribe(&mut self, channel: <T::Bus as TaskBus<T>>::TaskChannel)
    where
        T::Bus: TaskBus<T>,
    {
        let channel = <T::Bus as TaskBus<T>>::channel(channel);
        self.bus(BusAction::Unsubscribe(channel));
    }

    /// Publishes `event` on `channel`, to every task that subscribes to it,
    /// on every worker. Subscribers receive one publisher's events in order.
    ///
    /// The publisher receives its own event too when it subscribes to the
    /// channel (it is one of the subscribers). A subscription is in effect
    /// on the subscriber's own worker at once and on the others once they
    /// have heard of it: [`BusInput::Subscribed`](crate::bus::BusInput::Subscribed)
    /// says when.
    pub fn publish(
        &mut self,
        channel: <T::Bus as TaskBus<T>>::TaskChannel,
        event: <T::Bus as TaskBus<T>>::TaskEvent,
    ) where
        T::Bus: TaskBus<T>,
    {
        let channel = <T::Bus as TaskBus<T>>::channel(channel);
        let event = <T::Bus as TaskBus<T>>::event(event);
        self.bus(BusAction::Publish { channel, event });
    }

    /// Sends `event` to every task with a bus, on every worker (this one
    /// included), as `BusInput::Event` with no channel.
    pub fn broadcast(&mut self, event: <T::Bus as TaskBus<T>>::TaskEvent)
    where
        T::Bus: TaskBus<T>,
    {
        let event = <T::Bus as TaskBus<T>>::event(event);
        self.bus(BusAction::Broadcast(event));
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
        self.bus(BusAction::SendTo {
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
        self.bus(BusAction::Request {
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
        self.actions.push(Action::Spawn {
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
        self.net(NetAction::TcpHandOver {
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
        self.net(NetAction::UdpHandOver {
            socket,
            to: ErasedTarget::of(to),
            wrap: Box::new(UdpWrap::<U>::new()),
        });
    }

    /// Queues an answer's delivery, carried out after the handler.
    pub(crate) fn reply(&mut self, send: Box<dyn FnOnce() + Send>) {
        self.replies_queued += 1;
        self.actions.push(Action::Reply(send));
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
    #[inline]
    pub(crate) fn next_action(&mut self) -> Option<Action<T>> {
        self.actions.pop()
    }

    /// Takes every queued output, oldest first, dropping the other actions.
    pub(crate) fn drain_outputs(&mut self) -> Vec<T::Output> {
        self.actions.drain_outputs()
    }

    /// Takes the queued actions `wanted` picks, in order, leaving the others
    /// queued in theirs.
    pub(crate) fn take_actions(
        &mut self,
        wanted: impl FnMut(&Action<T>) -> bool,
    ) -> Vec<Action<T>> {
        self.actions.take(wanted)
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
