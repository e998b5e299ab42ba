//! The cross-task bus: pub/sub channels, broadcast, direct messages between
//! tasks and request/response, across workers.
//!
//! A worker kind declares its bus types once —
//! `#[sansio::worker(channel = RoomId, event = MediaEvent)]` — and every task
//! of it that uses the bus declares the same on its struct —
//! `#[sansio::task(channel = RoomId, event = MediaEvent)]`; the compiler
//! checks they agree. Such a task gets bus events through an `#[on_input]`
//! handler for [`BusInput<RoomId, MediaEvent>`](BusInput).
//!
//! Delivery: a publish reaches the subscribers on the publisher's own worker
//! directly, and each other worker that has subscribers once, through that
//! worker's bounded bus inbox, to be fanned out there. Every worker keeps its
//! own copy of which workers want which channel (updated by messages when
//! that changes), so publishing takes no lock. Messages from one task on one
//! channel arrive in order at every subscriber. A subscription is seen at once
//! on its own worker, and by the others as soon as they hear of it.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::time::Duration;

use crate::ctx::Ctx;

/// The type of a bus channel or event for a task without a bus: it has no
/// values, so such a task can neither publish nor receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NoBusType {}

/// A task's or worker's bus types.
#[doc(hidden)]
pub trait BusTypes: Send + 'static {
    /// Channels are named by this.
    type Channel: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static;
    /// What is published.
    type Event: Clone + Send + 'static;
}

/// No bus: the default for tasks and workers that declare none.
#[doc(hidden)]
#[derive(Debug)]
pub struct NoBus;

impl BusTypes for NoBus {
    type Channel = NoBusType;
    type Event = NoBusType;
}

/// A bus with channels named by `C` carrying events `E`.
#[doc(hidden)]
pub struct Bus<C, E>(PhantomData<fn() -> (C, E)>);

impl<C, E> fmt::Debug for Bus<C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bus")
    }
}

impl<C, E> BusTypes for Bus<C, E>
where
    C: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    E: Clone + Send + 'static,
{
    type Channel = C;
    type Event = E;
}

/// What the bus delivers to the task `T`, in `T`'s bus types.
#[doc(hidden)]
pub type TaskBusInput<T> = BusInput<
    <<T as crate::task::Task>::Bus as BusTypes>::Channel,
    <<T as crate::task::Task>::Bus as BusTypes>::Event,
>;

/// Turns a bus delivery into the task `T`'s input: never for a task without
/// a bus; through its `BusInput` handler for a task with one.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "task `{T}` declares a bus but has no #[on_input] handler for its bus events",
    label = "`{T}` cannot take these bus events",
    note = "add `#[on_input] fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Channel, Event>)` with the `channel` and `event` types of `{T}`'s `#[sansio::task(..)]`"
)]
pub trait BusWrap<T: crate::task::Task>: BusTypes {
    /// The input, when the task takes bus events.
    fn wrap(input: BusInput<Self::Channel, Self::Event>) -> Option<T::Input>;
}

impl<T: crate::task::Task> BusWrap<T> for NoBus {
    fn wrap(_: BusInput<NoBusType, NoBusType>) -> Option<T::Input> {
        None
    }
}

impl<T, C, E> BusWrap<T> for Bus<C, E>
where
    Bus<C, E>: BusTypes<Channel = C, Event = E>,
    T: crate::task::Handles<BusInput<C, E>>,
{
    fn wrap(input: BusInput<C, E>) -> Option<T::Input> {
        Some(T::wrap(input))
    }
}

/// The bus `Self` of a task `T` that declared one: the types
/// `Ctx::subscribe`, `unsubscribe`, `publish` and `broadcast` take. `NoBus`
/// does not implement it, so calling one of those on a task without a bus is
/// one error that says how to declare a bus (rather than a type mismatch
/// with [`NoBusType`]).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "task `{T}` has no bus: it cannot subscribe, publish or broadcast",
    label = "`{T}` declares no bus",
    note = "add `channel = …, event = …` to `#[sansio::task(…)]` on `struct {T}` (the same types as its `#[sansio::worker(…)]`)"
)]
pub trait TaskBus<T>: BusTypes {
    /// The channel type the task names channels by.
    type TaskChannel;
    /// The event type the task publishes.
    type TaskEvent;
    /// A channel as the bus's (the identity: the two are the same type, which
    /// generic code cannot see through the projection).
    fn channel(channel: Self::TaskChannel) -> Self::Channel;
    /// An event as the bus's (the identity).
    fn event(event: Self::TaskEvent) -> Self::Event;
}

impl<T, C, E> TaskBus<T> for Bus<C, E>
where
    Bus<C, E>: BusTypes<Channel = C, Event = E>,
{
    type TaskChannel = C;
    type TaskEvent = E;

    fn channel(channel: C) -> C {
        channel
    }

    fn event(event: E) -> E {
        event
    }
}

/// A task's bus types `Self` fit the worker's `B`: the same types, or none.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "a task's bus types `{Self}` differ from its worker's `{B}`",
    label = "the bus types of this task do not match its worker's",
    note = "declare the same `channel = ..` and `event = ..` on the task's `#[sansio::task]` and on the `#[sansio::worker]`, or none on the task"
)]
pub trait BusOf<B: BusTypes>: BusTypes {
    /// A worker-level event as the task's, when the task takes bus events.
    fn accept(
        input: BusInput<B::Channel, B::Event>,
    ) -> Option<BusInput<Self::Channel, Self::Event>>;
    /// A task-level channel as the worker's.
    fn lift_channel(channel: Self::Channel) -> B::Channel;
    /// A task-level event as the worker's.
    fn lift_event(event: Self::Event) -> B::Event;
}

impl<B: BusTypes> BusOf<B> for NoBus {
    fn accept(_: BusInput<B::Channel, B::Event>) -> Option<BusInput<NoBusType, NoBusType>> {
        None
    }

    fn lift_channel(channel: NoBusType) -> B::Channel {
        match channel {}
    }

    fn lift_event(event: NoBusType) -> B::Event {
        match event {}
    }
}

impl<C, E> BusOf<Bus<C, E>> for Bus<C, E>
where
    Bus<C, E>: BusTypes<Channel = C, Event = E>,
{
    fn accept(input: BusInput<C, E>) -> Option<BusInput<C, E>> {
        Some(input)
    }

    fn lift_channel(channel: C) -> C {
        channel
    }

    fn lift_event(event: E) -> E {
        event
    }
}

/// What the bus delivers to a task (through an `#[on_input]` handler for
/// this type).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BusInput<C, E> {
    /// An event published on a channel the task subscribes to
    /// (`Some(channel)`), or broadcast to every task with a bus (`None`).
    Event {
        /// The channel it was published on; `None` for a broadcast.
        channel: Option<C>,
        /// The event.
        event: E,
    },
    /// This task's publish (or broadcast) did not reach `workers` workers:
    /// their bus inboxes were full. The event is handed back; it was
    /// counted in the stats.
    Overflow {
        /// The channel; `None` for a broadcast.
        channel: Option<C>,
        /// The event.
        event: E,
        /// How many workers missed it.
        workers: usize,
    },
    /// A direct message this task sent (`Ctx::send_to`) could not be
    /// delivered: the target had already ended (when it was sent, or by the
    /// time it arrived), or its worker's bus inbox was full. Counted in the
    /// stats (`bus_undelivered`); the message is dropped (its type is the
    /// target's). Only a task with a bus hears this.
    SendFailed {
        /// Why.
        error: crate::error::RpcError,
    },
    /// The task's subscription to `channel` (`Ctx::subscribe`) is in effect
    /// on every worker: every event published on it from now on, on any
    /// worker, reaches the task. (On its own worker a subscription takes
    /// effect at once; the other workers learn of it through their bus
    /// inboxes.) Sent once per `subscribe` call.
    Subscribed {
        /// The channel.
        channel: C,
    },
}

/// A request type: what a task answers with `#[on_request]`, and the type of
/// its answer.
///
/// ```
/// use std::time::Duration;
/// use sansio::prelude::*;
///
/// pub struct GetInfo;
/// pub struct Info { pub members: usize }
///
/// impl Request for GetInfo {
///     type Response = Info;
/// }
///
/// #[sansio::task]
/// pub struct Room { members: usize }
///
/// #[sansio::task]
/// impl Room {
///     #[on_request]
///     fn info(&mut self, _: &mut Ctx<Self>, _: GetInfo) -> Info {
///         Info { members: self.members }
///     }
/// }
///
/// #[sansio::worker]
/// pub enum Chat { Room(Room) }
///
/// # fn main() -> sansio::Result<()> {
/// let runtime = Runtime::<Chat>::builder().workers(1).build()?;
/// let room = runtime.spawn(Room { members: 3 }).expect("room to spawn");
/// let info = runtime.call(room, GetInfo, Duration::from_secs(5)).expect("an answer");
/// assert_eq!(info.members, 3);
/// runtime.shutdown(Duration::from_secs(5))?;
/// # Ok(())
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a request type",
    label = "`#[on_request]` handlers take a request type",
    note = "a request type names its answer: `impl Request for {Self} {{ type Response = …; }}`"
)]
pub trait Request: Send + 'static {
    /// The answer's type.
    type Response: Send + 'static;
}

/// `Self` has an `#[on_request]` handler for requests of type `R`.
#[diagnostic::on_unimplemented(
    message = "task `{Self}` has no #[on_request] handler for `{R}`",
    label = "`{Self}` cannot answer `{R}`",
    note = "add `#[on_request] fn name(&mut self, ctx: &mut Ctx<Self>, request: {R}) -> <{R} as Request>::Response` to the `#[sansio::task]` impl of `{Self}`"
)]
pub trait Answers<R>: crate::task::Task {
    /// Wraps a request in the task's input enum.
    #[doc(hidden)]
    fn wrap_request(incoming: Incoming<R>) -> Self::Input;
}

/// A request no task answers (it has no values). Every task "answers" it,
/// so that the compiler never guesses which request a call means from a
/// task's one `#[on_request]`: asking for an unanswered type says so.
#[doc(hidden)]
#[derive(Debug)]
pub enum Unanswerable {}

impl Request for Unanswerable {
    type Response = Unanswerable;
}

/// A second request type that no task answers (see [`Unanswerable`]).
///
/// `#[sansio::task]` lets every task "handle" `Reply<Unanswerable>` and
/// `Reply<Unasked>`, hidden from diagnostics: with two such impls the
/// compiler cannot guess the request type of a `Ctx::request` from the
/// task's reply handlers, so a missing handler is reported as
/// `Reply<TheRequest>` rather than `Reply<_>`.
#[doc(hidden)]
#[derive(Debug)]
pub enum Unasked {}

impl Request for Unasked {
    type Response = Unasked;
}

/// The input a `Reply<Unanswerable>` or `Reply<Unasked>` stands for: none.
/// No request of those types can be made (they have no values), so the
/// runtime never delivers such a reply; only a hand-made `Reply` of a hidden
/// type could reach this.
#[doc(hidden)]
pub fn unasked_reply<R: Request, I>(reply: Reply<R>) -> I {
    let _ = reply;
    unreachable!("a reply to a request type that has no values")
}

/// `Self`, returned by an `#[on_request]` handler for `R`, is `T`, the
/// request's response type (`<R as Request>::Response`): the bound that
/// checks a handler's return type, with a message that names both.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "the `#[on_request]` handler for `{R}` returns `{Self}`, but `{R}::Response` is `{T}`",
    label = "expected `{T}`, the `Response` of `impl Request for {R}`",
    note = "an `#[on_request]` handler returns `<{R} as Request>::Response`"
)]
pub trait Responds<R, T> {
    /// The handler's return value as the response: the identity.
    fn into_response(self) -> T;
}

impl<R, T> Responds<R, T> for T {
    fn into_response(self) -> T {
        self
    }
}

/// Sends `answer`, an `#[on_request]` handler's return value, as the
/// response to `R` (checked by [`Responds`]).
#[doc(hidden)]
pub fn respond<T, R, A>(ctx: &mut Ctx<T>, responder: Responder<R>, answer: A)
where
    T: crate::task::Task,
    R: Request,
    A: Responds<R, R::Response>,
{
    responder.respond(ctx, answer.into_response());
}

/// A request as the answering task receives it: the request, and the
/// [`Responder`] that carries the answer back. The `#[on_request]` handlers
/// take it apart for you.
#[derive(Debug)]
pub struct Incoming<R> {
    /// The request.
    pub request: R,
    /// Where the answer goes.
    pub responder: Responder<R>,
}

/// The id of a request a task made with `Ctx::request`, repeated in its
/// [`Reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(crate) u64);

/// The answer to a task's request (through an `#[on_input]` handler for
/// `Reply<R>`): the response, or why there is none.
#[derive(Debug)]
pub struct Reply<R: Request> {
    /// The id `Ctx::request` returned.
    pub id: RequestId,
    /// The response, or `Timeout`, `TaskGone`, `Full`, `Dropped`.
    pub result: Result<R::Response, crate::error::RpcError>,
}

/// Sends a task's answer back to whoever asked: to the asking task's worker,
/// or to the controller blocked in `Runtime::call`.
#[doc(hidden)]
pub trait ReplySink: Send + Sync + 'static {
    /// Delivers `result` for request `id` of the task `owner`.
    fn reply(
        &self,
        owner: crate::id::RawId,
        id: u64,
        result: Result<Box<dyn Any + Send>, crate::error::RpcError>,
    );
}

/// An answer (the response, boxed) or why there is none.
type ErasedAnswer = Result<Box<dyn Any + Send>, crate::error::RpcError>;

/// Where an answer goes, type-erased: the answer travels as `Box<dyn Any>`
/// and is typed again by whoever asked. (No `Request` bound here, so that a
/// type that is not one is reported once, where it is answered, and not at
/// every type that carries a responder.)
pub(crate) enum Route {
    /// To a task, through its worker.
    Task {
        sink: std::sync::Arc<dyn ReplySink>,
        owner: crate::id::RawId,
        id: u64,
    },
    /// To the controller blocked in `Runtime::call` (or a test harness):
    /// types the answer and hands it over.
    Controller(Box<dyn FnOnce(ErasedAnswer) + Send>),
    /// Answered already.
    Done,
}

impl Route {
    /// To whoever waits on `answer` for a response to `R`.
    pub(crate) fn controller<R: Request>(
        answer: crossbeam_channel::Sender<Result<R::Response, crate::error::RpcError>>,
    ) -> Self {
        Route::Controller(Box::new(move |result| {
            let result = result.and_then(|response| {
                response
                    .downcast::<R::Response>()
                    .map(|response| *response)
                    // Only a responder of `R` answers here: unreachable.
                    .map_err(|_| crate::error::RpcError::Dropped)
            });
            // The caller may have given up (timed out): nobody is listening.
            let _ = answer.try_send(result);
        }))
    }
}

/// Carries the answer to one request back to whoever asked.
///
/// An `#[on_request]` handler that returns its answer uses one without your
/// seeing it. A handler that takes a `Responder<R>` as its last parameter
/// keeps it and answers later, from any handler, with
/// [`Responder::respond`]. Dropped unanswered (the task ended, or let it
/// go), it tells the asker: `RpcError::Dropped`.
pub struct Responder<R> {
    route: Route,
    _request: std::marker::PhantomData<fn(R)>,
}

impl<R> Responder<R> {
    pub(crate) fn new(route: Route) -> Self {
        Responder {
            route,
            _request: std::marker::PhantomData,
        }
    }
}

impl<R: Request> Responder<R> {
    /// Answers: the response goes back once the current handler returns, in
    /// order with the task's other actions.
    pub fn respond<T: crate::task::Task>(mut self, ctx: &mut Ctx<T>, response: R::Response) {
        let route = std::mem::replace(&mut self.route, Route::Done);
        let response: Box<dyn Any + Send> = Box::new(response);
        ctx.reply(Box::new(move || deliver(route, Ok(response))));
    }
}

/// Sends `result` along `route`.
fn deliver(route: Route, result: ErasedAnswer) {
    match route {
        Route::Task { sink, owner, id } => sink.reply(owner, id, result),
        Route::Controller(answer) => answer(result),
        Route::Done => {}
    }
}

impl<R> Drop for Responder<R> {
    fn drop(&mut self) {
        let route = std::mem::replace(&mut self.route, Route::Done);
        deliver(route, Err(crate::error::RpcError::Dropped));
    }
}

impl<R> fmt::Debug for Responder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = match &self.route {
            Route::Task { .. } => "task",
            Route::Controller(_) => "controller",
            Route::Done => "answered",
        };
        f.debug_struct("Responder").field("to", &to).finish()
    }
}

/// A sensible time for a request to wait for its answer: 5 seconds. (`Ctx::request`
/// and `Runtime::call` take the timeout explicitly; pass this when in doubt.)
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel type of worker `W`'s bus.
pub(crate) type Chan<W> = <<W as crate::worker::Worker>::Bus as BusTypes>::Channel;
/// The event type of worker `W`'s bus.
pub(crate) type Ev<W> = <<W as crate::worker::Worker>::Bus as BusTypes>::Event;

/// What travels between workers on the bus.
pub(crate) enum BusEnvelope<W: crate::worker::Worker> {
    /// An event for this worker's subscribers of `channel`.
    Publish { channel: Chan<W>, event: Ev<W> },
    /// An event for every task with a bus on this worker.
    Broadcast { event: Ev<W> },
    /// Worker `worker` now has (or no longer has) subscribers of `channel`;
    /// answered with `Heard` quoting `seq`.
    Interest {
        channel: Chan<W>,
        worker: u16,
        interested: bool,
        seq: u64,
    },
    /// The worker has heard of this one's interest `seq` in `channel`.
    Heard { channel: Chan<W>, seq: u64 },
    /// A direct message or request for one task, type-erased; `from`, the
    /// sender of a direct message, hears if it finds the task gone.
    Deliver {
        group: u16,
        slot: u32,
        generation: u32,
        payload: Box<dyn Any + Send>,
        from: Option<Sender>,
    },
    /// A direct message the task `owner` of this worker sent found its
    /// target gone.
    SendFailed {
        owner: crate::id::RawId,
        error: crate::error::RpcError,
    },
    /// The answer to request `id` of the task `owner`.
    Reply {
        owner: crate::id::RawId,
        id: u64,
        result: Result<Box<dyn Any + Send>, crate::error::RpcError>,
    },
    /// A task a task on another worker spawned here, in the slot allocated
    /// for it.
    Spawn { task: W, slot: u32, generation: u32 },
}

/// Something for this worker's tasks that the bus produced while a handler
/// ran, delivered once it has returned.
pub(crate) enum Delivery<W: crate::worker::Worker> {
    ToTask(crate::id::RawId, BusInput<Chan<W>, Ev<W>>),
    ToAll(Ev<W>),
    Erased {
        group: u16,
        slot: u32,
        generation: u32,
        payload: Box<dyn Any + Send>,
        from: Option<Sender>,
    },
    Reply {
        owner: crate::id::RawId,
        id: u64,
        result: Result<Box<dyn Any + Send>, crate::error::RpcError>,
    },
}

/// The task that sent a direct message: told if its target is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sender {
    pub(crate) worker: u16,
    pub(crate) owner: crate::id::RawId,
}

/// One worker as the others see it: its bus inbox and what it shares.
pub(crate) struct Peer<W: crate::worker::Worker> {
    pub(crate) bus: crossbeam_channel::Sender<BusEnvelope<W>>,
    pub(crate) shared: std::sync::Arc<crate::worker::WorkerShared>,
}

impl<W: crate::worker::Worker> Clone for Peer<W> {
    fn clone(&self) -> Self {
        Peer {
            bus: self.bus.clone(),
            shared: std::sync::Arc::clone(&self.shared),
        }
    }
}

impl<W: crate::worker::Worker> Peer<W> {
    /// Queues `envelope` for this worker and wakes it; hands it back when
    /// the inbox is full (or the worker has stopped).
    pub(crate) fn send(&self, envelope: BusEnvelope<W>) -> Result<(), BusEnvelope<W>> {
        match self.bus.try_send(envelope) {
            Ok(()) => {
                self.shared.notifier.notify();
                Ok(())
            }
            Err(error) => Err(error.into_inner()),
        }
    }
}

/// A worker's way for answers to reach it: through its own bus inbox.
pub(crate) struct WorkerSink<W: crate::worker::Worker> {
    pub(crate) peer: Peer<W>,
}

impl<W: crate::worker::Worker> ReplySink for WorkerSink<W> {
    fn reply(
        &self,
        owner: crate::id::RawId,
        id: u64,
        result: Result<Box<dyn Any + Send>, crate::error::RpcError>,
    ) {
        // A full inbox drops the answer; the asker's timeout reports it.
        let _ = self.peer.send(BusEnvelope::Reply { owner, id, result });
    }
}

/// One worker's side of the bus: its subscribers, which other workers want
/// which channel, and what the bus produced for its tasks.
pub(crate) struct BusHub<W: crate::worker::Worker> {
    pub(crate) me: u16,
    pub(crate) peers: std::sync::Arc<[Peer<W>]>,
    pub(crate) sink: std::sync::Arc<dyn ReplySink>,
    /// Local subscribers per channel.
    subscribers: std::collections::HashMap<Chan<W>, Vec<crate::id::RawId>>,
    /// Channels per local subscriber, to unsubscribe a task that ends.
    subscriptions: std::collections::HashMap<crate::id::RawId, Vec<Chan<W>>>,
    /// Other workers with subscribers, per channel.
    interest: std::collections::HashMap<Chan<W>, Vec<u16>>,
    /// The (channel, worker) pairs in `interest`, counted as they change (the
    /// stats read it every loop iteration).
    remote_interest: usize,
    /// Deliveries for this worker's tasks, in order.
    pub(crate) local: std::collections::VecDeque<Delivery<W>>,
    /// Interest updates that found a peer's inbox full, retried each turn.
    retry: std::collections::VecDeque<(u16, BusEnvelope<W>)>,
    /// Per channel with local subscribers: the last announcement of
    /// interest, how many workers have yet to hear of it, and the tasks to
    /// tell (`BusInput::Subscribed`) once all have.
    announced: std::collections::HashMap<Chan<W>, Announced>,
    /// Announcements made so far, for their sequence numbers.
    announcements: u64,
}

/// An announcement of interest in a channel, waiting to be heard by every
/// other worker.
struct Announced {
    seq: u64,
    unheard: usize,
    waiting: Vec<crate::id::RawId>,
}

impl<W: crate::worker::Worker> BusHub<W> {
    pub(crate) fn new(me: u16, peers: std::sync::Arc<[Peer<W>]>) -> Self {
        let sink = std::sync::Arc::new(WorkerSink {
            peer: peers[usize::from(me)].clone(),
        });
        BusHub {
            me,
            peers,
            sink,
            subscribers: std::collections::HashMap::new(),
            subscriptions: std::collections::HashMap::new(),
            interest: std::collections::HashMap::new(),
            remote_interest: 0,
            local: std::collections::VecDeque::new(),
            retry: std::collections::VecDeque::new(),
            announced: std::collections::HashMap::new(),
            announcements: 0,
        }
    }

    /// Channels with local subscribers, and known (channel, worker)
    /// interests elsewhere.
    pub(crate) fn sizes(&self) -> (u64, u64) {
        (self.subscribers.len() as u64, self.remote_interest as u64)
    }

    /// The local subscribers of `channel`.
    pub(crate) fn subscribers(&self, channel: &Chan<W>) -> Vec<crate::id::RawId> {
        self.subscribers.get(channel).cloned().unwrap_or_default()
    }

    /// Subscribes `owner`; it hears `Subscribed` once every other worker
    /// knows this one wants `channel`.
    pub(crate) fn subscribe(&mut self, owner: crate::id::RawId, channel: Chan<W>) {
        let subscribers = self.subscribers.entry(channel.clone()).or_default();
        if !subscribers.contains(&owner) {
            subscribers.push(owner);
            let first = subscribers.len() == 1;
            self.subscriptions
                .entry(owner)
                .or_default()
                .push(channel.clone());
            if first {
                self.announce(channel.clone(), true);
            }
        }
        match self.announced.get_mut(&channel) {
            Some(announced) if announced.unheard > 0 => announced.waiting.push(owner),
            _ => self
                .local
                .push_back(Delivery::ToTask(owner, BusInput::Subscribed { channel })),
        }
    }

    pub(crate) fn unsubscribe(&mut self, owner: crate::id::RawId, channel: &Chan<W>) {
        let Some(subscribers) = self.subscribers.get_mut(channel) else {
            return;
        };
        let before = subscribers.len();
        subscribers.retain(|subscriber| *subscriber != owner);
        if subscribers.len() == before {
            return;
        }
        if let Some(channels) = self.subscriptions.get_mut(&owner) {
            channels.retain(|subscribed| subscribed != channel);
        }
        if let Some(announced) = self.announced.get_mut(channel) {
            announced.waiting.retain(|waiting| *waiting != owner);
        }
        if subscribers.is_empty() {
            self.subscribers.remove(channel);
            self.announce(channel.clone(), false);
        }
    }

    /// Unsubscribes a task that ended from everything.
    pub(crate) fn forget(&mut self, owner: crate::id::RawId) {
        for channel in self.subscriptions.remove(&owner).unwrap_or_default() {
            self.unsubscribe(owner, &channel);
        }
    }

    /// Tells the other workers whether this one has subscribers of `channel`.
    fn announce(&mut self, channel: Chan<W>, interested: bool) {
        self.announcements += 1;
        let seq = self.announcements;
        let others = self.peers.len().saturating_sub(1);
        if interested {
            self.announced.insert(
                channel.clone(),
                Announced {
                    seq,
                    unheard: others,
                    waiting: Vec::new(),
                },
            );
        } else {
            self.announced.remove(&channel);
        }
        for worker in 0..self.peers.len() as u16 {
            if worker != self.me {
                let update = BusEnvelope::Interest {
                    channel: channel.clone(),
                    worker: self.me,
                    interested,
                    seq,
                };
                self.send_or_retry(worker, update);
            }
        }
    }

    /// Sends `envelope` to `worker`, or keeps it to retry next turn.
    /// Keeps the order per peer: behind anything still waiting for it.
    fn send_or_retry(&mut self, worker: u16, envelope: BusEnvelope<W>) {
        if self.retry.iter().any(|(waiting, _)| *waiting == worker) {
            self.retry.push_back((worker, envelope));
            return;
        }
        if let Err(envelope) = self.peers[usize::from(worker)].send(envelope) {
            self.retry.push_back((worker, envelope));
        }
    }

    /// Whether updates wait for room in a peer's inbox.
    pub(crate) fn has_retry(&self) -> bool {
        !self.retry.is_empty()
    }

    /// Worker `worker` announced its interest in `channel` (number `seq`):
    /// noted, and acknowledged.
    pub(crate) fn heard_interest(
        &mut self,
        channel: Chan<W>,
        worker: u16,
        interested: bool,
        seq: u64,
    ) {
        self.note_interest(channel.clone(), worker, interested);
        if interested {
            self.send_or_retry(worker, BusEnvelope::Heard { channel, seq });
        }
    }

    /// Another worker heard announcement `seq`: once all have, the
    /// subscribers waiting for it are told.
    pub(crate) fn heard(&mut self, channel: Chan<W>, seq: u64) {
        let Some(announced) = self.announced.get_mut(&channel) else {
            return;
        };
        if announced.seq != seq || announced.unheard == 0 {
            return;
        }
        announced.unheard -= 1;
        if announced.unheard == 0 {
            for owner in std::mem::take(&mut announced.waiting) {
                let input = BusInput::Subscribed {
                    channel: channel.clone(),
                };
                self.local.push_back(Delivery::ToTask(owner, input));
            }
        }
    }

    /// Another worker's subscribers of `channel` came or went.
    fn note_interest(&mut self, channel: Chan<W>, worker: u16, interested: bool) {
        let workers = self.interest.entry(channel.clone()).or_default();
        let before = workers.len();
        workers.retain(|known| *known != worker);
        if interested {
            workers.push(worker);
        }
        self.remote_interest = self.remote_interest + workers.len() - before;
        if workers.is_empty() {
            self.interest.remove(&channel);
        }
    }

    /// Publishes: local subscribers get it once the handler returns, each
    /// interested worker once through its inbox. Returns how many workers
    /// missed it (full inboxes).
    pub(crate) fn publish(&mut self, channel: Chan<W>, event: Ev<W>) -> usize {
        let subscribers = self
            .subscribers
            .get(&channel)
            .map_or(&[][..], Vec::as_slice);
        self.local.extend(subscribers.iter().map(|subscriber| {
            let input = BusInput::Event {
                channel: Some(channel.clone()),
                event: event.clone(),
            };
            Delivery::ToTask(*subscriber, input)
        }));
        let workers = self.interest.get(&channel).map_or(&[][..], Vec::as_slice);
        self.send_to_workers(workers.iter().copied(), || BusEnvelope::Publish {
            channel: channel.clone(),
            event: event.clone(),
        })
    }

    /// Broadcasts to every worker, this one included. Returns how many
    /// workers missed it.
    pub(crate) fn broadcast(&mut self, event: Ev<W>) -> usize {
        let others = (0..self.peers.len() as u16).filter(|worker| *worker != self.me);
        let missed = self.send_to_workers(others, || BusEnvelope::Broadcast {
            event: event.clone(),
        });
        self.local.push_back(Delivery::ToAll(event));
        missed
    }

    /// Sends an envelope made by `make` to each of `workers`; returns how
    /// many had a full inbox.
    fn send_to_workers(
        &self,
        workers: impl IntoIterator<Item = u16>,
        make: impl Fn() -> BusEnvelope<W>,
    ) -> usize {
        workers
            .into_iter()
            .filter(|worker| self.peers[usize::from(*worker)].send(make()).is_err())
            .count()
    }

    /// Where a message for `to` goes: its group index, once checked that the
    /// task is one of this worker kind's and alive.
    pub(crate) fn check(
        &self,
        to: &crate::ctx::ErasedTarget,
    ) -> Result<u16, crate::error::RpcError> {
        let gone = crate::error::RpcError::TaskGone;
        let group = W::group_of(to.task_type).ok_or(gone)?;
        let peer = self.peers.get(usize::from(to.worker)).ok_or(gone)?;
        if peer.shared.slots[usize::from(group)].is_live(to.slot, to.generation) {
            Ok(group)
        } else {
            Err(gone)
        }
    }

    /// Sends a type-erased message to a task (checked by `check`).
    pub(crate) fn deliver(
        &mut self,
        to: &crate::ctx::ErasedTarget,
        group: u16,
        payload: Box<dyn Any + Send>,
        from: Option<crate::id::RawId>,
    ) -> Result<(), crate::error::RpcError> {
        if to.worker == self.me {
            self.local.push_back(Delivery::Erased {
                group,
                slot: to.slot,
                generation: to.generation,
                payload,
                from: from.map(|owner| Sender {
                    worker: self.me,
                    owner,
                }),
            });
            return Ok(());
        }
        let deliver = BusEnvelope::Deliver {
            group,
            slot: to.slot,
            generation: to.generation,
            payload,
            from: from.map(|owner| Sender {
                worker: self.me,
                owner,
            }),
        };
        // The payload may hold a Responder: dropping it answers `Dropped`
        // to an asker that already hears `Full` from here, which it ignores.
        self.peers[usize::from(to.worker)]
            .send(deliver)
            .map_err(|_| crate::error::RpcError::Full)
    }

    /// Tells `sender` that its direct message found its target gone.
    pub(crate) fn send_failed(&mut self, sender: Sender) {
        let error = crate::error::RpcError::TaskGone;
        if sender.worker == self.me {
            let input = BusInput::SendFailed { error };
            self.local.push_back(Delivery::ToTask(sender.owner, input));
        } else {
            let failed = BusEnvelope::SendFailed {
                owner: sender.owner,
                error,
            };
            // A full inbox: the failure is counted, not reported.
            let _ = self.peers[usize::from(sender.worker)].send(failed);
        }
    }

    /// Sends interest updates that found an inbox full before.
    /// In order per peer: once one finds a peer's inbox full again, the
    /// later ones for that peer wait too (an interest update must not
    /// overtake an earlier one).
    pub(crate) fn retry(&mut self) {
        let mut full: Vec<u16> = Vec::new();
        for _ in 0..self.retry.len() {
            let Some((worker, update)) = self.retry.pop_front() else {
                break;
            };
            if full.contains(&worker) {
                self.retry.push_back((worker, update));
                continue;
            }
            if let Err(update) = self.peers[usize::from(worker)].send(update) {
                full.push(worker);
                self.retry.push_back((worker, update));
            }
        }
    }
}
