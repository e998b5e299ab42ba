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
//! compile error.
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
//! emits with [`Ctx::emit`]; `()` when absent) and `crate = path` (where to
//! find this crate, for crates that re-export it). On the inherent `impl`
//! block, it takes `crate = path`, and looks for these on its methods:
//!
//! | attribute | signature | called |
//! |---|---|---|
//! | `#[on_start]` | `fn(&mut self, ctx: &mut Ctx<Self>)` | once, when the task is placed |
//! | `#[on_input]` | `fn(&mut self, ctx: &mut Ctx<Self>, input: T)` | for each `T` sent to the task; one handler per type |
//! | `#[on_tick(every = "100ms")]` or `#[on_tick(every_ms = 100)]` | `fn(&mut self, ctx: &mut Ctx<Self>)` | every interval, without drift |
//! | `#[on_timer]` | `fn(&mut self, ctx: &mut Ctx<Self>)` | when the deadline of [`Ctx::set_timer`] passes |
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
mod ctx;
mod error;
mod group;
mod id;
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

pub use crate::backend::Backend;
pub use crate::ctx::{Action, Ctx};
pub use crate::error::{Error, Result, SendError, SpawnError};
pub use crate::id::TaskId;
pub use crate::runtime::{
    Builder, DEFAULT_QUEUE_CAPACITY, DEFAULT_SHUTDOWN, Event, Runtime, ShutdownReport,
};
pub use crate::task::{Handles, Task};
pub use crate::worker::{Member, Worker};

/// Declares a worker kind: `#[sansio::worker] enum Media { Echo(Echo), Room(Room) }`,
/// one tuple variant per `#[sansio::task]` type. See the
/// [crate documentation](crate#workers).
pub use sansio_macros::worker;

/// Declares a task: on its struct (`#[sansio::task(output = Out)]`) and on
/// the inherent `impl` block holding its handlers (`#[sansio::task]`).
///
/// See the [crate documentation](crate#the-attributes) for the arguments and
/// the handler attributes.
pub use sansio_macros::task;

/// Marks the handler of one input type inside a `#[sansio::task]` impl.
///
/// `fn name(&mut self, ctx: &mut Ctx<Self>, input: T)`: called for each `T`
/// sent to the task. Used anywhere else, it is a compile error.
pub use sansio_macros::on_input;

/// Marks the handler called once when the task starts, inside a
/// `#[sansio::task]` impl: `fn name(&mut self, ctx: &mut Ctx<Self>)`.
pub use sansio_macros::on_start;

/// Marks the periodic handler inside a `#[sansio::task]` impl:
/// `#[on_tick(every = "100ms")] fn name(&mut self, ctx: &mut Ctx<Self>)`
/// (or `every_ms = 100`).
pub use sansio_macros::on_tick;

/// Marks the handler of the task's timer (see [`Ctx::set_timer`]) inside a
/// `#[sansio::task]` impl: `fn name(&mut self, ctx: &mut Ctx<Self>)`.
pub use sansio_macros::on_timer;

/// Marks the handler called once at graceful shutdown inside a
/// `#[sansio::task]` impl: `fn name(&mut self, ctx: &mut Ctx<Self>)`. Without
/// one, the task finishes at shutdown.
pub use sansio_macros::on_shutdown;

/// Everything a task module needs: `use sansio::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Action, Backend, Ctx, Event, Handles, Member, Runtime, Task, TaskId, Worker, on_input,
        on_shutdown, on_start, on_tick, on_timer,
    };
}

/// Support for the code the macros generate. Not public API: it changes
/// without notice, in step with `sansio-macros` (which `sansio` pins exactly).
#[doc(hidden)]
pub mod __private {
    pub use crate::group::Group;
    pub use crate::task::TaskDecl;
    pub use crate::worker::{Groups, MergeInto, WorkerCx};
    pub use crate::{Ctx, Handles, Member, Task, TaskId, Worker};
    pub use core::clone::Clone;
    pub use core::cmp::{Eq, PartialEq};
    pub use core::convert::From;
    pub use core::fmt;
    pub use core::hash::{Hash, Hasher};
    pub use core::marker::Copy;
    pub use core::option::Option;
    pub use core::time::Duration;
    pub use core::unreachable;
    pub use std::time::Instant;
    pub use std::vec::Vec;
}
