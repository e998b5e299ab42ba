//! The type-erased pieces that actions carry between a task and a worker,
//! possibly another worker: spawns ([`SpawnId`], [`Spawned`]), requests and
//! their answers, and their targets ([`ErasedTarget`]).

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::Arc;

#[cfg(doc)]
use super::Ctx;
use super::{Answers, Handles, Task};
use crate::bus::{Incoming, Reply, ReplySink, Request, RequestId, Responder, Route};
use crate::error::{RpcError, SpawnError};
use crate::id::{RawId, TaskId};

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
pub(super) fn spawned_input<T: Handles<Spawned<U>>, U: Task>(
    id: SpawnId,
    outcome: SpawnOutcome,
) -> T::Input {
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
pub(super) fn make_request<U: Answers<R>, R: Request>(
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
    pub(crate) fn typed<U: Task>(&self) -> Option<TaskId<U>> {
        (self.task_type == TypeId::of::<U>())
            .then(|| TaskId::new(self.worker, self.slot, self.generation))
    }

    pub(crate) fn of<U: Task>(task: TaskId<U>) -> Self {
        ErasedTarget {
            worker: task.worker() as u16,
            task_type: TypeId::of::<U>(),
            slot: task.slot(),
            generation: task.generation(),
        }
    }
}

/// The asking task's input for an answer to its request of type `R`.
pub(super) fn reply_input<T: Handles<Reply<R>>, R: Request>(
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
