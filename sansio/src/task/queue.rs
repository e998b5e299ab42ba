//! The queue of a task's [`Action`]s, with its outputs kept apart.
//!
//! `Action` is as large as its largest variant (a datagram to send: socket,
//! address and buffer), so a queue of `Action`s spends that much memory on
//! every output too, and moving it is most of what an input costs when the
//! output is small (a `u64` in a 96-byte slot, written and read back). The
//! outputs — what most handlers queue — therefore wait in a queue of their
//! own type, the other actions in theirs, and a list of runs (so many
//! outputs, then so many other actions, …) keeps the one order in which the
//! handler queued them all: [`Actions::pop`] gives them back in that order.

use std::collections::VecDeque;

use super::{Action, Task};

/// A task's queued actions, oldest first; see the module documentation.
pub(crate) struct Actions<T: Task> {
    outputs: VecDeque<T::Output>,
    others: VecDeque<Action<T>>,
    /// Runs of consecutive outputs or other actions, oldest first; never
    /// an empty run, and never two runs of the same kind side by side.
    runs: VecDeque<Run>,
}

/// So many consecutive actions of one kind.
#[derive(Debug, Clone, Copy)]
struct Run {
    outputs: bool,
    len: usize,
}

impl<T: Task> Actions<T> {
    pub(crate) fn new() -> Self {
        Actions {
            outputs: VecDeque::new(),
            others: VecDeque::new(),
            runs: VecDeque::new(),
        }
    }

    /// Queues an output.
    #[inline]
    pub(crate) fn push_output(&mut self, output: T::Output) {
        self.outputs.push_back(output);
        self.extend_run(true);
    }

    /// Queues `action` (an [`Action::Emit`] goes with the outputs).
    pub(crate) fn push(&mut self, action: Action<T>) {
        match action {
            Action::Emit(output) => self.push_output(output),
            other => {
                self.others.push_back(other);
                self.extend_run(false);
            }
        }
    }

    #[inline]
    fn extend_run(&mut self, outputs: bool) {
        match self.runs.back_mut() {
            Some(run) if run.outputs == outputs => run.len += 1,
            _ => self.runs.push_back(Run { outputs, len: 1 }),
        }
    }

    /// Takes the oldest action.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<Action<T>> {
        let run = self.runs.front_mut()?;
        let outputs = run.outputs;
        run.len -= 1;
        if run.len == 0 {
            self.runs.pop_front();
        }
        // The runs count exactly what the two queues hold, so the queue a
        // run names is never empty here (an empty one would end the queue
        // early, not panic). Order is tested through the harness
        // (`tests/task_harness.rs`), which gives back every action.
        if outputs {
            self.outputs.pop_front().map(Action::Emit)
        } else {
            self.others.pop_front()
        }
    }

    /// Takes every output, oldest first, and drops the other actions.
    pub(crate) fn drain_outputs(&mut self) -> Vec<T::Output> {
        self.runs.clear();
        self.others.clear();
        // A whole `VecDeque` becomes a `Vec` without moving each element.
        Vec::from(std::mem::take(&mut self.outputs))
    }

    /// Takes the actions `wanted` picks, in order, leaving the others queued
    /// in theirs.
    pub(crate) fn take(&mut self, mut wanted: impl FnMut(&Action<T>) -> bool) -> Vec<Action<T>> {
        let mut taken = Vec::new();
        let mut kept = Actions::new();
        while let Some(action) = self.pop() {
            if wanted(&action) {
                taken.push(action);
            } else {
                kept.push(action);
            }
        }
        *self = kept;
        taken
    }

    /// How many actions are queued.
    pub(crate) fn len(&self) -> usize {
        self.outputs.len() + self.others.len()
    }
}
