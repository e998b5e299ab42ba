//! The bus between workers: each worker's [`BusHub`] keeps who subscribes
//! to what (here and, by announcement, on the other workers) and fans
//! events out. [`BusEnvelope`] is what it carries, both between workers'
//! bus inboxes and to this worker's own tasks (its `local` queue). The
//! task-facing types are in [`crate::bus`].

use std::any::Any;
use std::collections::HashMap;

use super::{Worker, WorkerShared};
use crate::bus::{BusInput, BusTypes, ReplySink};
use crate::error::RpcError;
use crate::id::RawId;
use crate::task::ErasedTarget;

/// The channel type of worker `W`'s bus.
pub(crate) type Chan<W> = <<W as Worker>::Bus as BusTypes>::Channel;
/// The event type of worker `W`'s bus.
pub(crate) type Ev<W> = <<W as Worker>::Bus as BusTypes>::Event;

/// What the bus carries: between workers (through their bus inboxes), and
/// from a handler to this worker's own tasks (`BusHub::local`, delivered once
/// the handler has returned). One type for both, handled by one function
/// (`WorkerLoop::handle_bus`).
pub(crate) enum BusEnvelope<W: Worker> {
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
    /// A bus input for one task: an event for a subscriber, or a report
    /// for a sender (its message found the target gone, a worker missed its
    /// publish, its subscription is in effect).
    ToTask {
        owner: RawId,
        input: BusInput<Chan<W>, Ev<W>>,
    },
    /// The answer to request `id` of the task `owner`.
    Reply {
        owner: RawId,
        id: u64,
        result: Result<Box<dyn Any + Send>, RpcError>,
    },
    /// A task a task on another worker spawned here, in the slot allocated
    /// for it.
    /// (Boxed: the worker enum holds any of its tasks inline, and would
    /// make every envelope that large.)
    Spawn {
        group: u16,
        task: Box<W>,
        slot: u32,
        generation: u32,
    },
}

/// The task that sent a direct message: told if its target is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sender {
    pub(crate) worker: u16,
    pub(crate) owner: RawId,
}

/// One worker as the others see it: its bus inbox and what it shares.
pub(crate) struct Peer<W: Worker> {
    pub(crate) bus: crossbeam_channel::Sender<BusEnvelope<W>>,
    pub(crate) shared: std::sync::Arc<WorkerShared>,
}

impl<W: Worker> Clone for Peer<W> {
    fn clone(&self) -> Self {
        Peer {
            bus: self.bus.clone(),
            shared: std::sync::Arc::clone(&self.shared),
        }
    }
}

impl<W: Worker> Peer<W> {
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
pub(crate) struct WorkerSink<W: Worker> {
    pub(crate) peer: Peer<W>,
}

impl<W: Worker> ReplySink for WorkerSink<W> {
    fn reply(&self, owner: RawId, id: u64, result: Result<Box<dyn Any + Send>, RpcError>) {
        // A full inbox drops the answer; the asker's timeout reports it.
        let _ = self.peer.send(BusEnvelope::Reply { owner, id, result });
    }
}

/// One worker's side of the bus: its subscribers, which other workers want
/// which channel, and what the bus produced for its tasks.
pub(crate) struct BusHub<W: Worker> {
    pub(crate) me: u16,
    pub(crate) peers: std::sync::Arc<[Peer<W>]>,
    pub(crate) sink: std::sync::Arc<dyn ReplySink>,
    /// Local subscribers per channel.
    subscribers: HashMap<Chan<W>, Vec<RawId>>,
    /// Channels per local subscriber, to unsubscribe a task that ends.
    subscriptions: HashMap<RawId, Vec<Chan<W>>>,
    /// Other workers with subscribers, per channel.
    interest: HashMap<Chan<W>, Vec<u16>>,
    /// The (channel, worker) pairs in `interest`, counted as they change (the
    /// stats read it every loop iteration).
    remote_interest: usize,
    /// Deliveries for this worker's tasks, in order.
    pub(crate) local: std::collections::VecDeque<BusEnvelope<W>>,
    /// Interest updates that found a peer's inbox full, retried each turn.
    retry: std::collections::VecDeque<(u16, BusEnvelope<W>)>,
    /// Per channel with local subscribers: the last announcement of
    /// interest, how many workers have yet to hear of it, and the tasks to
    /// tell (`BusInput::Subscribed`) once all have.
    announced: HashMap<Chan<W>, Announced>,
    /// Announcements made so far, for their sequence numbers.
    announcements: u64,
}

/// An announcement of interest in a channel, waiting to be heard by every
/// other worker.
struct Announced {
    seq: u64,
    unheard: usize,
    waiting: Vec<RawId>,
}

impl<W: Worker> BusHub<W> {
    pub(crate) fn new(me: u16, peers: std::sync::Arc<[Peer<W>]>) -> Self {
        let sink = std::sync::Arc::new(WorkerSink {
            peer: peers[usize::from(me)].clone(),
        });
        BusHub {
            me,
            peers,
            sink,
            subscribers: HashMap::new(),
            subscriptions: HashMap::new(),
            interest: HashMap::new(),
            remote_interest: 0,
            local: std::collections::VecDeque::new(),
            retry: std::collections::VecDeque::new(),
            announced: HashMap::new(),
            announcements: 0,
        }
    }

    /// Channels with local subscribers, and known (channel, worker)
    /// interests elsewhere.
    pub(crate) fn sizes(&self) -> (u64, u64) {
        (self.subscribers.len() as u64, self.remote_interest as u64)
    }

    /// The local subscribers of `channel`.
    pub(crate) fn subscribers(&self, channel: &Chan<W>) -> Vec<RawId> {
        self.subscribers.get(channel).cloned().unwrap_or_default()
    }

    /// Subscribes `owner`; it hears `Subscribed` once every other worker
    /// knows this one wants `channel`.
    pub(crate) fn subscribe(&mut self, owner: RawId, channel: Chan<W>) {
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
            _ => self.local.push_back(BusEnvelope::ToTask {
                owner,
                input: BusInput::Subscribed { channel },
            }),
        }
    }

    pub(crate) fn unsubscribe(&mut self, owner: RawId, channel: &Chan<W>) {
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
    pub(crate) fn forget(&mut self, owner: RawId) {
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
                self.local.push_back(BusEnvelope::ToTask { owner, input });
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
            BusEnvelope::ToTask {
                owner: *subscriber,
                input,
            }
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
        self.local.push_back(BusEnvelope::Broadcast { event });
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
    pub(crate) fn check(&self, to: &ErasedTarget) -> Result<u16, RpcError> {
        let gone = RpcError::TaskGone;
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
        to: &ErasedTarget,
        group: u16,
        payload: Box<dyn Any + Send>,
        from: Option<RawId>,
    ) -> Result<(), RpcError> {
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
        if to.worker == self.me {
            self.local.push_back(deliver);
            return Ok(());
        }
        // The payload may hold a Responder: dropping it answers `Dropped`
        // to an asker that already hears `Full` from here, which it ignores.
        self.peers[usize::from(to.worker)]
            .send(deliver)
            .map_err(|_| RpcError::Full)
    }

    /// Tells `sender` that its direct message found its target gone.
    pub(crate) fn send_failed(&mut self, sender: Sender) {
        let error = RpcError::TaskGone;
        let failed = BusEnvelope::ToTask {
            owner: sender.owner,
            input: BusInput::SendFailed { error },
        };
        if sender.worker == self.me {
            self.local.push_back(failed);
        } else {
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
