//! The errors of the runtime: building it, spawning tasks, sending to them.

use std::fmt;
use std::io;

use crate::backend::{Backend, Unavailable};

/// A result whose error defaults to [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of building and shutting down a runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A builder setting is out of range.
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    /// The chosen backend's cargo feature is not enabled.
    #[error("the {backend} backend is not compiled in; enable the `{}` cargo feature of sansio", backend.feature())]
    BackendUnavailable {
        /// The backend asked for.
        backend: Backend,
    },
    /// The chosen backend is compiled in, but this kernel cannot run it
    /// (io_uring disabled, forbidden by seccomp, or too old).
    #[error("the {backend} backend cannot run here: {reason}")]
    BackendUnsupported {
        /// The backend asked for.
        backend: Backend,
        /// What is missing, as the kernel said it.
        reason: String,
    },
    /// The operating system refused something the runtime needs (a poller,
    /// a thread).
    #[error("{context}: {source}")]
    Io {
        /// What the runtime was doing.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A worker thread died outside any task handler (a bug in sansio).
    #[error("worker {worker} failed: {message}")]
    WorkerFailed {
        /// The worker's index.
        worker: usize,
        /// The panic message.
        message: String,
    },
    /// A send failed and was turned into an `Error` with `?`; the message
    /// itself is gone (match on [`SendError`] to keep it).
    #[error("{0}")]
    SendFailed(String),
    /// A spawn failed and was turned into an `Error` with `?`; the task
    /// itself is gone (match on [`SpawnError`] to keep it).
    #[error("{0}")]
    SpawnFailed(String),
    /// A call failed and was turned into an `Error` with `?`.
    #[error("call failed: {0}")]
    CallFailed(#[from] RpcError),
}

impl From<Unavailable> for Error {
    fn from(unavailable: Unavailable) -> Self {
        match unavailable {
            Unavailable::NotCompiled(backend) => Error::BackendUnavailable { backend },
            Unavailable::Unsupported { backend, reason } => {
                Error::BackendUnsupported { backend, reason }
            }
        }
    }
}

impl<M> From<SendError<M>> for Error {
    fn from(error: SendError<M>) -> Self {
        Error::SendFailed(error.to_string())
    }
}

impl<T> From<SpawnError<T>> for Error {
    fn from(error: SpawnError<T>) -> Self {
        Error::SpawnFailed(error.to_string())
    }
}

/// Why a message was not sent to a task. The message comes back in the
/// error ([`SendError::into_inner`]): nothing is lost.
#[non_exhaustive]
pub enum SendError<M> {
    /// The worker's inbox is full (see `Builder::queue_capacity`); try again
    /// later, or use `Runtime::send_timeout`.
    Full(M),
    /// The task has ended (finished or panicked), or the id is not one of
    /// this runtime's.
    TaskGone(M),
    /// The worker has stopped.
    Stopped(M),
}

impl<M> SendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(message)
            | SendError::TaskGone(message)
            | SendError::Stopped(message) => message,
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            SendError::Full(_) => "the worker's inbox is full",
            SendError::TaskGone(_) => "the task has ended",
            SendError::Stopped(_) => "the worker has stopped",
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            SendError::Full(_) => "Full",
            SendError::TaskGone(_) => "TaskGone",
            SendError::Stopped(_) => "Stopped",
        };
        write!(f, "SendError::{kind}(..)")
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "message not sent: {}", self.describe())
    }
}

impl<M> std::error::Error for SendError<M> {}

/// Why a task was not spawned. The task comes back in the error
/// ([`SpawnError::into_inner`]).
#[non_exhaustive]
pub enum SpawnError<T> {
    /// The chosen worker's inbox is full.
    Full(T),
    /// `spawn_on` named a worker the runtime does not have.
    NoSuchWorker(T),
    /// The worker already holds the most tasks of this type it can
    /// (1,048,576).
    TooManyTasks(T),
    /// The worker has stopped.
    Stopped(T),
    /// A task spawned another whose type is not one of its worker kind's
    /// task types (`Ctx::spawn`; the controller's spawn checks this at
    /// compile time).
    NotInWorker(T),
}

impl<T> SpawnError<T> {
    /// The task that was not spawned.
    pub fn into_inner(self) -> T {
        match self {
            SpawnError::Full(task)
            | SpawnError::NoSuchWorker(task)
            | SpawnError::TooManyTasks(task)
            | SpawnError::Stopped(task)
            | SpawnError::NotInWorker(task) => task,
        }
    }

    fn describe(&self) -> (&'static str, &'static str) {
        match self {
            SpawnError::Full(_) => ("Full", "the worker's inbox is full"),
            SpawnError::NoSuchWorker(_) => ("NoSuchWorker", "no such worker"),
            SpawnError::TooManyTasks(_) => (
                "TooManyTasks",
                "the worker holds the most tasks of this type it can",
            ),
            SpawnError::Stopped(_) => ("Stopped", "the worker has stopped"),
            SpawnError::NotInWorker(_) => (
                "NotInWorker",
                "the task type is not one of the worker kind's task types",
            ),
        }
    }
}

impl<T> fmt::Debug for SpawnError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpawnError::{}(..)", self.describe().0)
    }
}

impl<T> fmt::Display for SpawnError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task not spawned: {}", self.describe().1)
    }
}

impl<T> std::error::Error for SpawnError<T> {}

/// Why a request got no answer, or a direct message did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// No answer within the timeout.
    #[error("no answer within the timeout")]
    Timeout,
    /// The target task has ended (or the id is not one of this runtime's).
    #[error("the target task has ended")]
    TaskGone,
    /// The target's inbox (or its worker's bus inbox) is full.
    #[error("the target's inbox is full")]
    Full,
    /// The target let the request go without answering (it ended with the
    /// request unanswered, or dropped its `Responder`).
    #[error("the target dropped the request without answering")]
    Dropped,
}
