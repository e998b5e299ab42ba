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
    pub(crate) route: Route,
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

/// Sends `result` along `route`.
pub(crate) fn deliver(route: Route, result: ErasedAnswer) {
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
