//! A runtime for **sans-I/O tasks**.
//!
//! A task is a plain state machine: it receives an input, changes state, and
//! queues actions. It contains no networking code and reads no clock: every
//! handler gets the worker's current time through [`Ctx::now`], and everything
//! it wants done (an output for the controller, a timer; packets, bus messages
//! and spawns as the runtime grows) goes into its [`Ctx`]. The runtime carries
//! out all the actions one input produced, in order, before it delivers the
//! next input.
//!
//! You write the task; `#[sansio::task]` writes the wiring: the input enum,
//! the [`Task`] implementation that routes each input, tick and timer to its
//! method, and the [`Handles`] bounds that make sending an unhandled type a
//! compile error. `#[sansio::worker]` groups task types into a worker kind,
//! and a [`Runtime`] runs them on event-driven worker threads (see
//! [Workers](#workers)).
//!
//! ```
//! use std::time::Duration;
//! use sansio::prelude::*;
//! use sansio::testing::TaskHarness;
//!
//! /// A request from the controller.
//! pub struct GetStats;
//!
//! #[derive(Debug, PartialEq)]
//! pub enum EchoOut { Echoed(u64), Pong(Vec<u8>) }
//!
//! #[sansio::task(output = EchoOut)]
//! #[derive(Default)]
//! pub struct Echo { echoed: u64, ticks: u64 }
//!
//! #[sansio::task]
//! impl Echo {
//!     #[on_input]
//!     fn ping(&mut self, ctx: &mut Ctx<Self>, payload: Vec<u8>) {
//!         self.echoed += 1;
//!         ctx.emit(EchoOut::Pong(payload));
//!     }
//!
//!     #[on_input]
//!     fn stats(&mut self, ctx: &mut Ctx<Self>, _: GetStats) {
//!         ctx.emit(EchoOut::Echoed(self.echoed));
//!     }
//!
//!     #[on_tick(every = "100ms")]
//!     fn tick(&mut self, _ctx: &mut Ctx<Self>) {
//!         self.ticks += 1;
//!     }
//! }
//!
//! let mut echo = TaskHarness::new(Echo::default());
//! echo.input(b"hi".to_vec()).input(GetStats);
//! assert_eq!(echo.drain(), [EchoOut::Pong(b"hi".to_vec()), EchoOut::Echoed(1)]);
//!
//! echo.advance(Duration::from_secs(1));
//! assert_eq!(echo.task().ticks, 10);
//! ```
//!
//! # The attributes
//!
//! On the struct, `#[sansio::task]` takes `output = Type` (what the task
//! emits with [`Ctx::emit`]; `()` when absent), `channel = Type, event = Type`
//! (its [bus], both or neither) and `crate = path` (where to find this
//! crate, for crates that re-export it); see [`task`] for each. On the
//! inherent `impl` block, it takes `crate = path`, and looks for these on its
//! methods:
//!
//! | attribute | signature | called |
//! |---|---|---|
//! | `#[on_start]` | `fn(&mut self, ctx: &mut Ctx<Self>)` | once, when the task is placed |
//! | `#[on_input]` | `fn(&mut self, ctx: &mut Ctx<Self>, input: T)` | for each `T` sent to the task; one handler per type |
//! | `#[on_request]` | `fn(&mut self, ctx: &mut Ctx<Self>, request: R) -> R::Response`, or with a last parameter `responder: Responder<R>` and no return | for each [`Request`](bus::Request) `R` asked of the task ([`Ctx::request`], [`Runtime::call`]); one handler per type |
//! | `#[on_tick(every = "100ms")]` or `#[on_tick(every_ms = 100)]` | `fn(&mut self, ctx: &mut Ctx<Self>)` | every interval, without drift |
//! | `#[on_timer]` | `fn(&mut self, ctx: &mut Ctx<Self>)` | when the deadline of [`Ctx::set_timer`] passes |
//! | `#[on_timer]` (keyed) | `fn(&mut self, ctx: &mut Ctx<Self>, key: K)` | when the deadline of [`Ctx::set_timer_for`]`(key, ..)` passes, for each key |
//! | `#[on_shutdown]` | `fn(&mut self, ctx: &mut Ctx<Self>)` | once, at graceful shutdown; the default finishes the task |
//!
//! `every` takes an integer or decimal number and a unit: `ns`, `us` (or
//! `µs`), `ms`, `s`, `m` or `h`. The input enum is named `<Task>Input`, with
//! one variant per `#[on_input]` method, named after the method in
//! `UpperCamelCase`.
//!
//! Tasks cannot be generic. The attributes report every mistake of one `impl`
//! block in one compile, at the tokens that are wrong.
//!
//! # Workers
//!
//! Task types that run together form a *worker kind*: `#[sansio::worker]` on
//! an enum with one tuple variant per task type. A [`Runtime`] of that kind
//! starts worker threads, each an event loop sleeping in a [`Backend`]; the
//! controller (your thread) spawns tasks, sends them messages through typed
//! [`TaskId`]s and receives their [`Event`]s.
//!
//! ```
//! use std::time::Duration;
//! use sansio::prelude::*;
//!
//! #[sansio::task(output = u64)]
//! pub struct Doubler;
//!
//! #[sansio::task]
//! impl Doubler {
//!     #[on_input]
//!     fn double(&mut self, ctx: &mut Ctx<Self>, n: u64) {
//!         ctx.emit(n * 2);
//!     }
//! }
//!
//! #[sansio::worker]
//! pub enum Math {
//!     Doubler(Doubler),
//! }
//!
//! # fn main() -> sansio::Result<()> {
//! let runtime = Runtime::<Math>::builder().workers(2).build()?;
//! let doubler: TaskId<Doubler> = runtime.spawn(Doubler).expect("room to spawn");
//! runtime.send(doubler, 21u64).expect("the task is alive");
//! match runtime.next_event(Duration::from_secs(5)) {
//!     Some(Event::Output { task: MathId::Doubler(id), output: MathOutput::Doubler(n) }) => {
//!         assert_eq!((id, n), (doubler, 42));
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! let report = runtime.shutdown(Duration::from_secs(5))?;
//! assert_eq!(report.finished, 1);
//! # Ok(())
//! # }
//! ```
//!
//! The macro generates, next to the enum (here `Math`): `MathId` (one variant
//! per task type, holding its `TaskId`), `MathInput` (a message for any of
//! its tasks, as undelivered messages come back) and `MathOutput` (what its
//! tasks emit, one variant per task type). With
//! `#[sansio::worker(output = AppEvent)]`, every task's output converts into
//! `AppEvent` with `From` instead, and no output enum is generated.
//!
//! The runtime keeps these promises, each tested on every backend:
//!
//! - **Outputs in order.** Everything one input produced is carried out, in
//!   order, before the worker delivers its next input.
//! - **Idle costs nothing.** A worker with no message and no due timer sleeps
//!   in the backend with no timeout; a message wakes it at once. Wakeups are
//!   merged: a burst of messages costs one.
//! - **Ids never misdeliver.** A message for a task that has ended fails with
//!   [`SendError::TaskGone`] or comes back as [`Event::Undelivered`]; it never
//!   reaches a newer task in the same slot.
//! - **A panic stays in its task**: [`Event::Panicked`] reports it, and the
//!   worker and every other task carry on.
//! - **Backpressure is explicit.** Every queue is bounded; a send or spawn
//!   that does not fit fails and hands its message back; every dropped output
//!   is counted in [`Runtime::stats`].
//! - **Nothing is lost at shutdown.** [`Runtime::shutdown`] runs every
//!   `#[on_shutdown]`, collects every event until the tasks finish or the
//!   deadline passes, and joins the worker threads.
//!
//! Tasks reach sockets through their `Ctx` (`udp_bind`, `tcp_listen`,
//! `tun_open`, …) and each other through the [`bus`]: pub/sub channels,
//! broadcast, direct messages ([`Ctx::send_to`]) and request/response
//! (`#[on_request]`, [`Ctx::request`], [`Runtime::call`]).
//!
//! Ticks run on a schedule shared by all tasks of a type on a worker, fixed
//! to the worker's start, so they never drift; the first tick of a new task
//! comes within one interval. A worker that falls behind skips the ticks it
//! missed instead of replaying them. Ticks and timers never fire early; on an
//! idle machine they fire within about a millisecond of their deadline (mio
//! rounds its sleep up to whole milliseconds; polling and io_uring are
//! precise to the microsecond).
//!
//! # Testing
//!
//! [`testing::TaskHarness`] drives one task under virtual time, with no
//! threads and no sockets: the way to unit-test a task.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod buf;
pub mod bus;
mod error;
#[cfg(feature = "fault-injection")]
#[cfg_attr(docsrs, doc(cfg(feature = "fault-injection")))]
pub mod faults;
#[cfg(not(feature = "fault-injection"))]
mod faults;
mod id;
mod log;
#[cfg(feature = "metrics")]
mod metrics;
pub mod net;
mod probe;
mod runtime;
pub mod stats;
mod task;
pub mod testing;
mod timer;
mod worker;

// The README's examples are compiled and run as doc-tests, so they cannot
// drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub use crate::backend::{Backend, Unavailable, UnknownBackend};
pub use crate::buf::{DEFAULT_CAPACITY, HEADROOM, POOL_BYTES, PacketBuf};
pub use crate::error::{Error, Result, RpcError, SendError, SpawnError};
pub use crate::id::TaskId;
pub use crate::runtime::{
    Builder, DEFAULT_QUEUE_CAPACITY, DEFAULT_SHUTDOWN, DEFAULT_SPIN, Runtime, ShutdownReport,
};
pub use crate::task::{
    Action, Answers, BusAction, Ctx, Handles, NetAction, SHUTDOWN_PHASES, SpawnId, Spawned, Task,
};
pub use crate::worker::{Event, Member, Worker};

// The attributes are documented here, where links and doc-tests work; the
// macro crate keeps its own docs out of these pages (see its `lib.rs`).

/// Declares a worker kind: an enum with one tuple variant per
/// `#[sansio::task]` type, each type at most once, as in
/// `#[sansio::worker] pub enum Media { Echo(Echo), Room(Room) }`.
///
/// `#[sansio::worker(output = Type, channel = Type, event = Type, crate = path)]`,
/// every argument optional:
///
/// - `output = Type`: what [`Event::Output`] carries for every task of the
///   worker; each task's output converts into it with `From`. Without it, the
///   macro generates `<Name>Output`, one variant per task type.
/// - `channel = Type, event = Type`: the worker's [bus], both or neither,
///   with the same bounds as on [`task`]. Each task of the worker declares the
///   same two types on its struct, or none (it then has no bus); a task whose
///   bus differs is a compile error at its variant.
/// - `crate = path`: the path to this crate, as on [`task`].
///
/// It also generates `<Name>Id` (a [`TaskId`] of any of its task types) and
/// `<Name>Input` (a message for any of them). See the
/// [crate documentation](crate#workers) for an example.
pub use sansio_macros::worker;

/// Declares a task: on its struct, and on the inherent `impl` block holding
/// its handlers.
///
/// # On the struct
///
/// `#[sansio::task(output = Type, channel = Type, event = Type, crate = path)]`,
/// every argument optional:
///
/// - `output = Type`: what the task emits with [`Ctx::emit`] (its
///   [`Task::Output`], `Send + 'static`); `()` when absent.
/// - `channel = Type, event = Type`: the task's [bus], both or neither.
///   The task names channels by the channel type, which is
///   `Clone + Eq + Hash + Debug + Send + Sync + 'static`, and publishes
///   events of the event type, which is `Clone + Send + 'static` (every
///   subscriber gets a clone). A task with a bus subscribes, publishes and
///   broadcasts ([`Ctx::subscribe`], [`Ctx::publish`], [`Ctx::broadcast`]),
///   and needs an `#[on_input]` handler for
///   [`BusInput<Channel, Event>`](bus::BusInput), through which it receives
///   events; its worker declares the same two types. A task without a bus
///   cannot call those methods (a compile error says so); it may still run
///   in a worker that has one. Direct messages ([`Ctx::send_to`]) and
///   requests need no bus.
/// - `crate = path`: the path to this crate, for crates that re-export it
///   (`crate = ::my_framework::sansio`); generated code names it instead of
///   `::sansio`.
///
/// # On the impl block
///
/// `#[sansio::task]`, or `#[sansio::task(crate = path)]`. Its methods with a
/// handler attribute become the task's handlers: [`on_start`], [`on_input`],
/// [`on_request`], [`on_tick`], [`on_timer`] and [`on_shutdown`] (each page
/// gives the signature); other methods stay ordinary methods. A handler's
/// `#[cfg]` (and the `cfg`s of its `#[cfg_attr]`) apply to everything
/// generated for it; its other attributes stay on the method.
///
/// The macro generates the input enum `<Name>Input` (one variant per
/// `#[on_input]` and `#[on_request]` handler, named after the method in
/// `UpperCamelCase`), a `From` conversion into it from each input type, the
/// [`Handles`] and [`Answers`] bounds, and the [`Task`] implementation that
/// routes each input, tick and timer to its handler. Tasks cannot be
/// generic. See also the [crate documentation](crate#the-attributes).
///
/// ```
/// use sansio::prelude::*;
///
/// #[derive(Debug, Clone, PartialEq, Eq, Hash)]
/// pub struct RoomId(pub u32);
///
/// #[derive(Debug, Clone)]
/// pub enum ChatEvent {
///     Said(String),
/// }
///
/// #[sansio::task(output = String, channel = RoomId, event = ChatEvent)]
/// pub struct Member {
///     room: RoomId,
/// }
///
/// #[sansio::task]
/// impl Member {
///     #[on_start]
///     fn join(&mut self, ctx: &mut Ctx<Self>) {
///         ctx.subscribe(self.room.clone());
///     }
///
///     #[on_input]
///     fn say(&mut self, ctx: &mut Ctx<Self>, text: String) {
///         ctx.publish(self.room.clone(), ChatEvent::Said(text));
///     }
///
///     #[on_input]
///     fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<RoomId, ChatEvent>) {
///         if let BusInput::Event { event: ChatEvent::Said(text), .. } = input {
///             ctx.emit(text);
///         }
///     }
/// }
///
/// #[sansio::worker(channel = RoomId, event = ChatEvent)]
/// pub enum Chat {
///     Member(Member),
/// }
/// # fn main() {}
/// ```
pub use sansio_macros::task;

/// Marks the handler of one input type, inside a `#[sansio::task]` impl
/// block:
///
/// `fn name(&mut self, ctx: &mut Ctx<Self>, input: T)`
///
/// It is called for each `T` delivered to the task: sent by
/// [`Runtime::send`], [`Ctx::send_to`] or a
/// [`TaskHarness`](testing::TaskHarness), or made by the runtime
/// ([`BusInput`](bus::BusInput), [`Reply<R>`](bus::Reply), [`Spawned`], socket events). A task has
/// one handler per input type; sending it a type it has no handler for is a
/// compile error. Used outside a `#[sansio::task]` impl block, the attribute
/// is a compile error.
pub use sansio_macros::on_input;

/// Marks the handler of one request type, inside a `#[sansio::task]` impl
/// block. The type implements [`Request`](bus::Request); a task asks with
/// [`Ctx::request`], the controller with [`Runtime::call`]. Either:
///
/// - `fn name(&mut self, ctx: &mut Ctx<Self>, request: R) -> R::Response`,
///   which answers by returning, or
/// - `fn name(&mut self, ctx: &mut Ctx<Self>, request: R, responder: Responder<R>)`,
///   which keeps the [`Responder`](bus::Responder) and answers later, from any handler, with
///   [`Responder::respond`](bus::Responder::respond).
///
/// A task has one handler per request type. See [`Request`](bus::Request) for an example.
pub use sansio_macros::on_request;

/// Marks the handler called once when the task is placed on a worker, before
/// any input, inside a `#[sansio::task]` impl block:
///
/// `fn name(&mut self, ctx: &mut Ctx<Self>)`
///
/// A task has at most one.
pub use sansio_macros::on_start;

/// Marks the periodic handler, inside a `#[sansio::task]` impl block:
///
/// `#[on_tick(every = "100ms")] fn name(&mut self, ctx: &mut Ctx<Self>)`
///
/// The interval is `every = "…"`, a number (integer or decimal) and a unit
/// (`ns`, `us` or `µs`, `ms`, `s`, `m`, `h`), or `every_ms = 100`; it must be
/// greater than zero. Ticks keep to a schedule and never drift (see
/// [`Task::TICK_INTERVAL`]). The interval is the default: a task may choose
/// its own at run time with [`Ctx::set_tick`] (from a constructor argument,
/// say). A task has at most one.
pub use sansio_macros::on_tick;

/// Marks the handler of the task's timer, or of its keyed timers, inside a
/// `#[sansio::task]` impl block:
///
/// - `fn name(&mut self, ctx: &mut Ctx<Self>)`: called when the deadline
///   set with [`Ctx::set_timer`] has passed (one timer per task, as the
///   `poll_timeout` of quinn-proto and str0m); it may set the timer again.
/// - `fn name(&mut self, ctx: &mut Ctx<Self>, key: K)`: called with the key
///   when the deadline set with [`Ctx::set_timer_for`]`(key, deadline)` has
///   passed. Any number of keys may be armed at once (a timeout per
///   connection or per request); `K` must be `Clone + Eq + Hash + Send +
///   'static`.
///
/// A task has at most one of each form; at one instant the unkeyed timer
/// fires first, then the keyed ones in deadline order.
///
/// ```
/// use std::time::Duration;
/// use sansio::prelude::*;
/// use sansio::testing::TaskHarness;
///
/// #[sansio::task(output = u32)]
/// pub struct Peers;
///
/// #[sansio::task]
/// impl Peers {
///     #[on_input]
///     fn seen(&mut self, ctx: &mut Ctx<Self>, peer: u32) {
///         // Each peer times out 5 s after it was last seen.
///         ctx.set_timer_for(peer, ctx.now() + Duration::from_secs(5));
///     }
///
///     #[on_timer]
///     fn timed_out(&mut self, ctx: &mut Ctx<Self>, peer: u32) {
///         ctx.emit(peer);
///     }
/// }
///
/// let mut peers = TaskHarness::new(Peers);
/// peers.input(1u32);
/// peers.advance(Duration::from_secs(3));
/// peers.input(2u32).input(1u32);
/// peers.advance(Duration::from_secs(5));
/// assert_eq!(peers.drain(), [2, 1]);
/// ```
pub use sansio_macros::on_timer;

/// Marks the handler called once at graceful shutdown
/// ([`Runtime::shutdown`]), inside a `#[sansio::task]` impl block:
///
/// `fn name(&mut self, ctx: &mut Ctx<Self>)`
///
/// The task keeps running until it calls [`Ctx::finish`], from this handler
/// or a later one. Without the attribute, the task finishes at shutdown. A
/// task has at most one.
pub use sansio_macros::on_shutdown;

/// What a task module writes most: `use sansio::prelude::*;`.
///
/// The task's context and ids, the runtime and its events, packet buffers,
/// the bus inputs a task handles and the handler attributes. Socket types
/// are in [`net`], the rest of the bus in [`bus`], statistics in [`stats`],
/// the harness in [`testing`].
pub mod prelude {
    pub use crate::bus::{BusInput, Reply, Request, Responder};
    pub use crate::{
        Ctx, Event, PacketBuf, Runtime, Spawned, TaskId, on_input, on_request, on_shutdown,
        on_start, on_tick, on_timer,
    };
}

/// Support for the code the macros generate. Not public API: it changes
/// without notice, in step with `sansio-macros` (which `sansio` pins exactly).
#[doc(hidden)]
pub mod __private {
    pub use crate::bus::{
        Bus, BusInput, BusOf, BusTypes, Incoming, NoBus, NoBusType, Reply, Request, Unanswerable,
        Unasked, unasked_reply,
    };
    pub use crate::id::RawId;
    pub use crate::net::{Adoption, NetInput};
    pub use crate::probe::{DebugIfDebug, DebugOtherwise, DebugProbe};
    pub use crate::task::{Answers, BusWrap, TaskBusInput, respond};
    pub use crate::task::{NoTimerKey, TaskDecl, TimerKeyOf};
    // Named in the fields of `Action`'s variants, which carry them between
    // a task's `Ctx` and its worker; not for users.
    pub use crate::task::{
        ErasedTarget, MakeRequest, ReplyInput, SpawnDone, SpawnFailure, SpawnOutcome, TcpWrap,
        TunWrap, UdpWrap,
    };
    pub use crate::worker::Group;
    pub use crate::worker::{Groups, Visit, WorkerCx};
    pub use crate::{Ctx, Handles, Member, RpcError, Task, TaskId, Worker};
    pub use core::any::{Any, TypeId};
    pub use core::clone::Clone;
    pub use core::cmp::{Eq, PartialEq};
    pub use core::convert::From;
    pub use core::convert::Into;
    pub use core::fmt;
    pub use core::hash::{Hash, Hasher};
    pub use core::marker::{Copy, Send};
    pub use core::option::Option;
    pub use core::result::Result;
    pub use core::time::Duration;
    pub use core::unreachable;
    pub use std::boxed::Box;
    pub use std::time::Instant;
    pub use std::vec::Vec;
}
