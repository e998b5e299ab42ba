//! The per-worker context the task groups work through ([`WorkerCx`]), and
//! the way out to the controller ([`EventSink`]).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};

use super::hub::{BusEnvelope, BusHub};
use super::{Envelope, Event, Worker, WorkerShared};
use crate::id::RawId;
use crate::net::{Adoption, Net};
use crate::stats::Counters;
use crate::task::{SpawnFailure, SpawnOutcome};
use crate::timer::Timers;

/// The worker's state that task groups work through: the clock, the timers,
/// the way out to the controller, the counters.
#[doc(hidden)]
pub struct WorkerCx<W: Worker> {
    pub(crate) now: Instant,
    pub(crate) index: u16,
    pub(crate) shared: Arc<WorkerShared>,
    pub(crate) timers: Timers,
    pub(crate) sink: EventSink<W>,
    pub(crate) counters: Counters,
    pub(crate) net: Net,
    pub(crate) bus: BusHub<W>,
    /// Tasks spawned by tasks on this worker, placed once the spawning
    /// handler has returned.
    pub(crate) spawns: VecDeque<(u16, W, u32, u32)>,
    /// Sockets handed over to tasks, given to them before any of their
    /// events is delivered.
    pub(crate) adoptions: VecDeque<(RawId, Adoption)>,
    /// Set once shutdown has begun; tasks finishing then are counted.
    pub(crate) shutting_down: bool,
    /// The shutdown phase under way: tasks of this phase and earlier ones
    /// have been asked to shut down.
    pub(crate) shutdown_phase: u8,
    /// The sender of the direct message being delivered, told if the
    /// target is gone.
    pub(crate) delivering_from: Option<super::hub::Sender>,
    pub(crate) finished_during_shutdown: usize,
}

impl<W: Worker> WorkerCx<W> {
    pub(crate) fn output(&mut self, task: W::Id, output: W::Output) {
        self.counters.outputs += 1;
        self.sink.send(
            Envelope::Event(Event::Output { task, output }),
            false,
            &mut self.counters,
        );
    }

    pub(crate) fn finished(&mut self, task: W::Id) {
        crate::log::event!(debug, "task {task} finished");
        if self.shutting_down {
            self.finished_during_shutdown += 1;
        }
        self.sink.send(
            Envelope::Event(Event::Finished { task }),
            true,
            &mut self.counters,
        );
    }

    pub(crate) fn panicked(&mut self, task: W::Id, message: String) {
        self.counters.panics += 1;
        crate::log::event!(error, "task {task} panicked and was ended: {message}");
        self.sink.send(
            Envelope::Event(Event::Panicked { task, message }),
            true,
            &mut self.counters,
        );
    }

    /// Reports a message whose task has ended.
    pub(crate) fn undelivered(&mut self, task: W::Id, input: W::Input) {
        self.counters.undelivered += 1;
        self.sink.send(
            Envelope::Event(Event::Undelivered { task, input }),
            true,
            &mut self.counters,
        );
    }

    /// Spawns a task a task asked for (type-erased) on worker `worker`:
    /// allocates its slot, queues it (here, or in that worker's bus inbox)
    /// and returns its (worker, slot, generation).
    pub(crate) fn spawn_erased(
        &mut self,
        worker: usize,
        task_type: std::any::TypeId,
        task: Box<dyn std::any::Any + Send>,
    ) -> SpawnOutcome {
        let Some(group) = W::group_of(task_type) else {
            return Err((SpawnFailure::NotInWorker, task));
        };
        let Some(peer) = self.bus.peers.get(worker) else {
            return Err((SpawnFailure::NoSuchWorker, task));
        };
        let slots = &peer.shared.slots[usize::from(group)];
        let Some((slot, generation)) = slots.allocate() else {
            return Err((SpawnFailure::TooManyTasks, task));
        };
        let task = match W::from_erased(group, task) {
            Ok(task) => task,
            Err(task) => {
                slots.release(slot);
                return Err((SpawnFailure::NotInWorker, task));
            }
        };
        // `worker` indexes the peers, whose number fits a u16.
        let worker = worker as u16;
        if worker == self.index {
            self.spawns.push_back((group, task, slot, generation));
            return Ok((worker, slot, generation));
        }
        let spawn = BusEnvelope::Spawn {
            group,
            task: Box::new(task),
            slot,
            generation,
        };
        match peer.send(spawn) {
            Ok(()) => Ok((worker, slot, generation)),
            Err(envelope) => {
                slots.release(slot);
                self.counters.bus_undelivered += 1;
                let task = match envelope {
                    BusEnvelope::Spawn { task, .. } => (*task).into_erased(),
                    // `send` hands back what it was given.
                    _ => unreachable!("a refused send hands back its envelope"),
                };
                Err((SpawnFailure::Full, task))
            }
        }
    }

    /// A task of `phase` started (`1`) or ended (`-1`) here, or moved.
    pub(crate) fn count_phase(&self, phase: u8, started: bool) {
        let live = &self.shared.phases[usize::from(phase)];
        if started {
            live.fetch_add(1, Ordering::AcqRel);
        } else if live.fetch_sub(1, Ordering::AcqRel) == 1 && self.shutting_down {
            // The last of its phase here: the workers waiting for it to end
            // everywhere look again.
            for peer in self.bus.peers.iter() {
                peer.shared.notifier.notify();
            }
        }
    }

    /// Whether every task of phases up to `phase` has ended on every worker.
    pub(super) fn phases_over(&self, phase: u8) -> bool {
        self.bus.peers.iter().all(|peer| {
            peer.shared.phases[..=usize::from(phase)]
                .iter()
                .all(|live| live.load(Ordering::Acquire) == 0)
        })
    }

    pub(crate) fn release(&self, group: u16, slot: u32) {
        self.shared.slots[usize::from(group)].release(slot);
    }
}

impl<W: Worker> fmt::Debug for WorkerCx<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerCx")
            .field("worker", &self.index)
            .field("now", &self.now)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// The way from a worker to the controller's bounded event queue.
///
/// Outputs that find the queue full are dropped and counted: a worker never
/// blocks on a slow controller. Lifecycle events (finished, panicked,
/// undelivered) wait in a local queue of the same capacity and go out, in
/// order, ahead of anything newer; only past that are they dropped (counted).
/// Once shutdown begins the controller drains the queue continuously, and
/// every event waits for room up to the shutdown deadline.
pub(crate) struct EventSink<W: Worker> {
    pub(super) tx: Sender<Envelope<W>>,
    pending: VecDeque<Envelope<W>>,
    capacity: usize,
    /// During shutdown: wait for room until then instead of dropping.
    patient_until: Option<Instant>,
}

impl<W: Worker> EventSink<W> {
    pub(crate) fn new(tx: Sender<Envelope<W>>, capacity: usize) -> Self {
        EventSink {
            tx,
            pending: VecDeque::new(),
            capacity,
            patient_until: None,
        }
    }

    pub(super) fn send(&mut self, envelope: Envelope<W>, lifecycle: bool, counters: &mut Counters) {
        self.flush(counters);
        if !self.pending.is_empty() {
            self.hold(envelope, lifecycle, counters);
            return;
        }
        match self.patient_until {
            Some(until) => match self.tx.send_deadline(envelope, until) {
                Ok(()) => {}
                Err(SendTimeoutError::Timeout(_) | SendTimeoutError::Disconnected(_)) => {
                    counters.events_dropped += 1;
                }
            },
            None => match self.tx.try_send(envelope) {
                Ok(()) => {}
                Err(TrySendError::Full(envelope)) => self.hold(envelope, lifecycle, counters),
                Err(TrySendError::Disconnected(_)) => counters.events_dropped += 1,
            },
        }
    }

    /// Keeps a lifecycle event for later, or drops an output.
    fn hold(&mut self, envelope: Envelope<W>, lifecycle: bool, counters: &mut Counters) {
        if lifecycle && self.pending.len() < self.capacity {
            self.pending.push_back(envelope);
        } else {
            counters.events_dropped += 1;
        }
    }

    /// Sends held events while there is room.
    pub(crate) fn flush(&mut self, counters: &mut Counters) {
        while let Some(envelope) = self.pending.pop_front() {
            let result = match self.patient_until {
                Some(until) => {
                    self.tx
                        .send_deadline(envelope, until)
                        .map_err(|error| match error {
                            SendTimeoutError::Timeout(envelope) => TrySendError::Full(envelope),
                            SendTimeoutError::Disconnected(envelope) => {
                                TrySendError::Disconnected(envelope)
                            }
                        })
                }
                None => self.tx.try_send(envelope),
            };
            match result {
                Ok(()) => {}
                Err(TrySendError::Full(envelope)) if self.patient_until.is_none() => {
                    self.pending.push_front(envelope);
                    return;
                }
                Err(_) => counters.events_dropped += 1,
            }
        }
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether the event queue has room (the controller took some).
    pub(crate) fn has_room(&self) -> bool {
        self.tx
            .capacity()
            .is_none_or(|capacity| self.tx.len() < capacity)
    }

    pub(super) fn be_patient_until(&mut self, until: Instant) {
        self.patient_until = Some(until);
    }
}
