//! The event loop of one worker thread ([`WorkerLoop`]).
//!
//! About 600 lines: `WorkerLoop::serve` and each of its phases, in the
//! order they run, so that the loop reads top to bottom in one file.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::cx::{EventSink, WorkerCx};
use super::hub::{BusEnvelope, BusHub, Peer};
use super::route;
use super::{Control, Envelope, Groups, Worker, WorkerExit, WorkerShared, panic_message};
use crate::backend::{Poller, Readiness, Registry};
use crate::bus::BusInput;
use crate::error::RpcError;
use crate::faults::{self, Call};
use crate::id::RawId;
use crate::net::{Net, NetInput};
use crate::stats::Counters;
use crate::task::SHUTDOWN_PHASES;
use crate::timer::{Due, Timers};

/// Control messages taken per loop iteration before timers and I/O get
/// their turn.
const BATCH: usize = 1024;

/// Deliveries whose queue memory a worker keeps between bursts.
const LOCAL_KEPT: usize = 1024;

/// How long after the shutdown deadline a worker still waits for room in the
/// event queue for its last events.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How soon a worker with held lifecycle events looks at the queue again.
const RETRY_HELD: Duration = Duration::from_millis(1);

/// One worker thread's loop.
pub(crate) struct WorkerLoop<W: Worker, P: Poller> {
    poller: P,
    inbox: Receiver<Control<W>>,
    bus_inbox: Receiver<BusEnvelope<W>>,
    groups: W::Groups,
    cx: WorkerCx<W>,
    ready: Vec<Readiness>,
    /// How long to spin for new messages before sleeping.
    spin: Duration,
    /// Set once shutdown has begun: when it gives up on tasks.
    shutdown_deadline: Option<Instant>,
    /// Says, at most once a second, what was dropped.
    #[cfg(feature = "tracing")]
    drops: crate::log::DropReport,
}

/// Everything a worker loop is made of, but the other workers' inboxes.
pub(crate) struct WorkerSetup<W: Worker, P: Poller> {
    pub(crate) index: u16,
    pub(crate) poller: P,
    pub(crate) registry: Box<dyn Registry>,
    pub(crate) inbox: Receiver<Control<W>>,
    pub(crate) bus_inbox: Receiver<BusEnvelope<W>>,
    pub(crate) events: Sender<Envelope<W>>,
    pub(crate) shared: Arc<WorkerShared>,
    pub(crate) capacity: usize,
    pub(crate) spin: Duration,
}

impl<W: Worker, P: Poller> WorkerLoop<W, P> {
    /// The loop of one worker, given every worker's bus inbox (its own
    /// included) as `peers`.
    pub(crate) fn new(setup: WorkerSetup<W, P>, peers: Arc<[Peer<W>]>) -> Self {
        let now = Instant::now();
        WorkerLoop {
            poller: setup.poller,
            inbox: setup.inbox,
            bus_inbox: setup.bus_inbox,
            groups: W::Groups::new(),
            cx: WorkerCx {
                now,
                index: setup.index,
                shared: setup.shared,
                timers: Timers::new(now, W::TASK_TYPES.len()),
                sink: EventSink::new(setup.events, setup.capacity),
                counters: Counters::default(),
                net: Net::new(setup.registry, setup.index),
                bus: BusHub::new(setup.index, peers),
                spawns: VecDeque::new(),
                adoptions: VecDeque::new(),
                shutting_down: false,
                shutdown_phase: 0,
                delivering_from: None,
                finished_during_shutdown: 0,
            },
            ready: Vec::new(),
            spin: setup.spin,
            shutdown_deadline: None,
            #[cfg(feature = "tracing")]
            drops: crate::log::DropReport::new(now),
        }
    }

    /// Runs until shutdown, then reports to the controller. A panic outside
    /// the task handlers (which are isolated one by one), or an error of the
    /// poller, is reported as the worker's failure.
    pub(crate) fn run(mut self) {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| self.serve()));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(format!("the worker's poller failed: {error}")),
            Err(payload) => Some(panic_message(payload.as_ref())),
        };
        if let Some(failure) = &failure {
            crate::log::event!(error, "the worker failed: {failure}");
        }
        let mut forced = Vec::new();
        // Tasks' Drop runs here; after a failure the groups may be half-way
        // through an update. Neither may keep the exit message from going out.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            route::force(&mut self.groups, &mut self.cx, &mut forced);
            // Spawns still queued (shutdown ended at its deadline before
            // they were taken) never ran: forced too, not dropped unsaid.
            while let Ok(control) = self.inbox.try_recv() {
                if let Control::Spawn {
                    group,
                    task,
                    slot,
                    generation,
                } = control
                {
                    let spawn = (group, task, slot, generation);
                    route::unspawned(&mut self.groups, &mut self.cx, spawn, &mut forced);
                }
            }
        }));
        let until = self
            .cx
            .shared
            .shutdown
            .get()
            .copied()
            .unwrap_or_else(Instant::now)
            + SHUTDOWN_GRACE;
        self.cx.sink.be_patient_until(until);
        self.cx.sink.flush(&mut self.cx.counters);
        self.cx.shared.counters.publish(&self.cx.counters);
        let exit = WorkerExit {
            worker: usize::from(self.cx.index),
            finished: self.cx.finished_during_shutdown,
            forced,
            failure,
        };
        // If the controller is gone there is no one left to tell.
        let _ = self.cx.sink.tx.send_deadline(Envelope::Exited(exit), until);
    }

    /// The loop proper, one turn per iteration, each turn the same phases in
    /// the same order; returns once shutdown is complete, or with the
    /// poller's error (the worker then ends, and the runtime reports it).
    /// Never inlined: it runs once per worker, and the instruction-count
    /// guard (`scripts/instructions worker`) counts what runs inside it.
    #[inline(never)]
    fn serve(&mut self) -> io::Result<()> {
        loop {
            let woke = self.begin_turn();
            let (taken, inbox_empty) = self.take_control();
            let bus_empty = self.take_bus();
            self.follow_shutdown();
            self.fire_timers();
            self.drive_io();
            if self.shutdown_complete() {
                self.account_busy(woke);
                return Ok(());
            }
            if !inbox_empty || !bus_empty || self.cx.net.has_leftover() {
                // More is waiting: no sleep.
                self.account_busy(woke);
                continue;
            }
            self.sleep(woke, taken > 0)?;
        }
    }

    /// Starts a turn: the clock is read once for all its inputs.
    fn begin_turn(&mut self) -> Instant {
        let woke = Instant::now();
        self.cx.now = woke;
        self.cx.counters.loop_iterations += 1;
        woke
    }

    /// Takes up to a batch of control messages (spawns, inputs from the
    /// controller), delivering what each produced before the next; returns
    /// how many it took and whether the inbox is empty.
    fn take_control(&mut self) -> (usize, bool) {
        let mut inbox_empty = false;
        let mut taken = 0;
        for _ in 0..BATCH {
            match self.inbox.try_recv() {
                Ok(control) => {
                    taken += 1;
                    self.handle(control);
                    self.deliver_local();
                }
                Err(TryRecvError::Empty) => {
                    inbox_empty = true;
                    break;
                }
                Err(TryRecvError::Disconnected) => {
                    // The controller is gone without a shutdown: stop now.
                    let _ = self.cx.shared.shutdown.set(self.cx.now);
                    inbox_empty = true;
                    break;
                }
            }
        }
        self.settle();
        (taken, inbox_empty)
    }

    /// Takes up to a batch of what other workers sent on the bus, and sends
    /// again the bus updates that found a full inbox; returns whether the
    /// bus inbox is empty.
    fn take_bus(&mut self) -> bool {
        for _ in 0..BATCH {
            let Ok(envelope) = self.bus_inbox.try_recv() else {
                break;
            };
            self.contain(|worker| worker.handle_bus(envelope));
            self.deliver_local();
        }
        let bus_empty = self.bus_inbox.is_empty();
        self.cx.bus.retry();
        self.settle();
        bus_empty
    }

    /// Begins shutdown once the controller asked for it, then moves it on
    /// phase by phase.
    fn follow_shutdown(&mut self) {
        if self.shutdown_deadline.is_none()
            && let Some(&deadline) = self.cx.shared.shutdown.get()
        {
            self.shutdown_deadline = Some(deadline);
            self.cx.shutting_down = true;
            crate::log::event!(
                debug,
                "shutting down: asking the tasks to finish within {:?}",
                deadline.saturating_duration_since(self.cx.now)
            );
            self.cx.sink.be_patient_until(deadline + SHUTDOWN_GRACE);
            route::shutdown(&mut self.groups, &mut self.cx);
            // Phases may have ended here before this worker counted as
            // shutting down (and so told nobody): the others look again.
            for peer in self.cx.bus.peers.iter() {
                peer.shared.notifier.notify();
            }
        }
        if self.shutdown_deadline.is_some() {
            self.next_shutdown_phase();
        }
    }

    /// Fires the ticks, timers and request timeouts that are due.
    fn fire_timers(&mut self) {
        // What the handlers arm for now fires next turn, after the inbox
        // and I/O have had theirs: a timer re-armed for the current
        // instant cannot hold the worker here.
        let horizon = self.cx.timers.horizon();
        while let Some((deadline, due)) = self.cx.timers.pop_due(self.cx.now, horizon) {
            match due {
                Due::Tick { group } => route::tick(&mut self.groups, &mut self.cx, group),
                Due::Task {
                    group,
                    slot,
                    generation,
                } => route::timer(
                    &mut self.groups,
                    &mut self.cx,
                    group,
                    slot,
                    generation,
                    deadline,
                ),
                Due::Reply { owner, id } => {
                    let waiting = route::reply(
                        &mut self.groups,
                        &mut self.cx,
                        owner,
                        id,
                        Err(RpcError::Timeout),
                    );
                    if waiting {
                        self.cx.counters.rpc_timeouts += 1;
                    }
                }
            }
        }
        self.settle();
        self.cx.counters.timers_pending = self.cx.timers.len() as u64;
    }

    /// Drives the I/O: what the last wait reported ready and what earlier
    /// turns left, one unit at a time (see the driver's contract in
    /// `net::driver`), delivering each unit's events and settling before
    /// the next; then the driver's own timed work.
    fn drive_io(&mut self) {
        self.cx.net.begin_io(&mut self.ready);
        let mut batch = std::mem::take(&mut self.cx.net.inbound);
        while self.cx.net.next_io(&mut batch, &mut self.cx.counters) {
            self.deliver_received(&mut batch);
            self.settle();
        }
        self.cx.net.inbound = batch;
        self.settle();
        self.cx.sink.flush(&mut self.cx.counters);
        // Closes that give up, accepts tried again after a back-off, drop
        // counts to read: due by the turn's clock (one that falls due during
        // the turn ends the next wait at once), so that a turn with a
        // deadline pending reads no clock of its own.
        let now = self.cx.now;
        if self.cx.net.next_deadline().is_some_and(|due| due <= now) {
            self.cx.net.expire(now, &mut self.cx.counters);
            self.settle();
        }
    }

    /// Delivers a received batch to the sockets' owners.
    fn deliver_received(&mut self, batch: &mut Vec<(RawId, NetInput)>) {
        self.cx.net.delivering_batch = true;
        for (owner, input) in batch.drain(..) {
            // A socket handed over by a task while this batch is delivered:
            // the rest of the batch goes to its new owner.
            let owner = self.cx.net.owner_now(owner, &input);
            route::net(&mut self.groups, &mut self.cx, owner, input);
            // A new owner adopts the socket before the rest is delivered.
            self.place();
        }
        self.cx.net.handed_over.clear();
        self.cx.net.delivering_batch = false;
    }

    /// Whether shutdown is complete: every task has ended and what they sent
    /// on closed sockets has gone, or the deadline has come. Tasks count
    /// from their slots, which spawns still queued for this worker hold
    /// too: a spawn that came after this turn's look at the inbox is run
    /// (and asked to shut down) next turn, not dropped with the inbox.
    fn shutdown_complete(&mut self) -> bool {
        self.shutdown_deadline.is_some_and(|deadline| {
            let queued_or_live: usize = self.cx.shared.slots.iter().map(|slots| slots.live()).sum();
            (route::live::<W>(&mut self.groups) == 0
                && queued_or_live == 0
                && !self.cx.net.lingering())
                || Instant::now() >= deadline
        })
    }

    /// Sleeps until the next deadline (a timer, the driver's own, shutdown,
    /// bus updates to send again) or until work arrives; spins first when
    /// asked to and the turn took a control message (`took_control`). Fails
    /// only when the poller does.
    ///
    /// The spin watches the inbox only (a wait in the poller is what sees
    /// sockets), so it is for a stream of messages from the controller: a
    /// turn that only did I/O goes to the poller at once, where a datagram
    /// arriving is seen without delay (spinning after every turn cost 0.89×
    /// of the UDP echo's packets/s at 64 B × 8 in flight).
    fn sleep(&mut self, woke: Instant, took_control: bool) -> io::Result<()> {
        // A report that is due goes out now, not after one more wake-up.
        #[cfg(feature = "tracing")]
        self.drops.tick(woke, &self.cx.counters);
        let retry = self.cx.bus.has_retry().then(|| Instant::now() + RETRY_HELD);
        let deadline = [
            self.cx.timers.next_deadline(),
            self.cx.net.next_deadline(),
            self.shutdown_deadline,
            retry,
            self.drops_due(),
        ]
        .into_iter()
        .flatten()
        .min();
        // Events held for a full event queue: the controller wakes this
        // worker when it takes one (no polling for room).
        let holding = self.cx.sink.has_pending();
        if holding {
            self.cx.shared.events_held.store(true, Ordering::SeqCst);
        }
        if took_control && self.spin > Duration::ZERO && self.spin_for_work(deadline) {
            self.account_busy(woke);
            return Ok(());
        }
        self.cx.shared.notifier.prepare_to_sleep();
        let work_arrived = !self.inbox.is_empty()
            || !self.bus_inbox.is_empty()
            || (self.shutdown_deadline.is_none() && self.cx.shared.shutdown.get().is_some())
            || (self.shutdown_deadline.is_some() && self.shutdown_phase_over())
            || (holding && self.cx.sink.has_room());
        self.account_busy(woke);
        let waited = if work_arrived {
            Ok(())
        } else {
            match faults::error(Call::Wait) {
                Some(error) => Err(error),
                None => self.poller.wait(deadline, &mut self.ready),
            }
        };
        if self.cx.shared.notifier.awake() {
            self.cx.counters.wakeups += 1;
        }
        match waited {
            // A signal: a wakeup like any other.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(()),
            waited => waited,
        }
    }

    /// Whether the shutdown phase under way has ended everywhere, so the
    /// next may begin: checked after announcing sleep, as the inboxes are,
    /// since the worker whose last task of a phase ends wakes only sleepers.
    fn shutdown_phase_over(&self) -> bool {
        self.cx.shutdown_phase + 1 < SHUTDOWN_PHASES && self.cx.phases_over(self.cx.shutdown_phase)
    }

    /// Moves shutdown on to the next phase (asking its tasks to shut down)
    /// once every task of the phases so far has ended on every worker.
    fn next_shutdown_phase(&mut self) {
        while self.shutdown_phase_over() {
            // What the tasks of the phase that ended sent on their way out
            // was queued before they were counted out: deliver it before the
            // next phase's tasks are asked to end.
            for _ in 0..self.bus_inbox.len() {
                let Ok(envelope) = self.bus_inbox.try_recv() else {
                    break;
                };
                self.contain(|worker| worker.handle_bus(envelope));
                self.settle();
            }
            self.cx.shutdown_phase += 1;
            route::shutdown(&mut self.groups, &mut self.cx);
        }
    }

    /// Delivers the events the worker produced for its tasks and hands queued
    /// datagrams to the kernel, until neither has anything left.
    fn settle(&mut self) {
        loop {
            self.deliver_local();
            if self.cx.net.has_dirty() {
                self.cx.net.flush(&mut self.cx.counters);
            }
            if self.cx.net.local.is_empty() && self.cx.bus.local.is_empty() {
                return;
            }
        }
    }

    /// Delivers what the last input produced for this worker's tasks (bus
    /// deliveries, events the worker made), without flushing sends: what a
    /// batch of inputs holds in memory is then what one input produces, not
    /// a whole batch's (a thousand publishes per input, each coming back as
    /// an overflow, over a batch of 1,024 inputs). Sends still leave in
    /// batches, at `settle`.
    fn deliver_local(&mut self) {
        while !self.cx.net.local.is_empty()
            || !self.cx.bus.local.is_empty()
            || !self.cx.spawns.is_empty()
            || !self.cx.adoptions.is_empty()
        {
            self.place();
            while let Some((owner, input)) = self.cx.net.local.pop_front() {
                route::net(&mut self.groups, &mut self.cx, owner, input);
                self.place();
            }
            while let Some(envelope) = self.cx.bus.local.pop_front() {
                self.contain(|worker| worker.handle_bus(envelope));
                self.place();
            }
        }
        // A burst's queue memory goes back once it has passed.
        if self.cx.bus.local.capacity() > LOCAL_KEPT {
            self.cx.bus.local.shrink_to(LOCAL_KEPT);
        }
    }

    /// Starts the tasks that tasks spawned on this worker, then gives the
    /// sockets handed over to their new owners: before anything else is
    /// delivered, so that a new owner is ready for the socket's events.
    fn place(&mut self) {
        while let Some((group, task, slot, generation)) = self.cx.spawns.pop_front() {
            route::spawn(
                &mut self.groups,
                &mut self.cx,
                group,
                task,
                slot,
                generation,
            );
        }
        while let Some((owner, adoption)) = self.cx.adoptions.pop_front() {
            route::adopt(&mut self.groups, &mut self.cx, owner, adoption);
        }
    }

    /// Runs `f`, which delivers bus traffic: the fan-out clones events and
    /// hashes channels with the application's code, which may panic outside
    /// any task's handler. Such a panic drops what was being delivered and
    /// is counted; the worker carries on.
    fn contain(&mut self, f: impl FnOnce(&mut Self)) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(self))) {
            self.cx.counters.panics += 1;
            crate::log::event!(
                error,
                "a panic delivering bus traffic (in the application's Clone or Hash) dropped it: {}",
                panic_message(payload.as_ref())
            );
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        }
    }

    /// Delivers a direct message or request to one task; `from`, the sender
    /// of a direct message, is told if the task is gone.
    fn deliver_erased(
        &mut self,
        group: u16,
        slot: u32,
        generation: u32,
        payload: Box<dyn std::any::Any + Send>,
        from: Option<super::hub::Sender>,
    ) {
        self.cx.delivering_from = from;
        route::deliver_erased(
            &mut self.groups,
            &mut self.cx,
            group,
            slot,
            generation,
            payload,
        );
        self.cx.delivering_from = None;
    }

    /// Handles what another worker (or an answering task) sent this one.
    fn handle_bus(&mut self, envelope: BusEnvelope<W>) {
        let cx = &mut self.cx;
        match envelope {
            BusEnvelope::Publish { channel, event } => {
                for subscriber in cx.bus.subscribers(&channel) {
                    cx.counters.bus_delivered += 1;
                    let input = BusInput::Event {
                        channel: Some(channel.clone()),
                        event: event.clone(),
                    };
                    route::bus(&mut self.groups, cx, subscriber, input);
                }
            }
            BusEnvelope::Broadcast { event } => route::broadcast(&mut self.groups, cx, &event),
            BusEnvelope::Interest {
                channel,
                worker,
                interested,
                seq,
            } => cx.bus.heard_interest(channel, worker, interested, seq),
            BusEnvelope::Heard { channel, seq } => cx.bus.heard(channel, seq),
            BusEnvelope::Deliver {
                group,
                slot,
                generation,
                payload,
                from,
            } => self.deliver_erased(group, slot, generation, payload, from),
            BusEnvelope::Reply { owner, id, result } => {
                // An answer for a task that has ended, or that came after
                // its request timed out: counted, not delivered.
                if !route::reply(&mut self.groups, cx, owner, id, result) {
                    cx.counters.bus_undelivered += 1;
                }
            }
            BusEnvelope::ToTask { owner, input } => {
                // Overflow and failure reports go back to a sender: they are
                // not deliveries of events.
                if matches!(input, BusInput::Event { .. }) {
                    cx.counters.bus_delivered += 1;
                }
                route::bus(&mut self.groups, cx, owner, input);
            }
            BusEnvelope::Spawn {
                group,
                task,
                slot,
                generation,
            } => route::spawn(&mut self.groups, cx, group, *task, slot, generation),
        }
    }

    /// Spins up to `self.spin` (or until `deadline`) for a control message,
    /// returning whether one came. Checks the inbox only every few dozen
    /// spin hints, to leave its cache line to the senders.
    fn spin_for_work(&self, deadline: Option<Instant>) -> bool {
        let mut until = Instant::now() + self.spin;
        if let Some(deadline) = deadline {
            until = until.min(deadline);
        }
        while self.inbox.is_empty() {
            if Instant::now() >= until || self.cx.shared.shutdown.get().is_some() {
                return false;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
        true
    }

    /// When to wake to report drops (with the feature `tracing`).
    fn drops_due(&self) -> Option<Instant> {
        #[cfg(feature = "tracing")]
        return self.drops.due(&self.cx.counters);
        #[cfg(not(feature = "tracing"))]
        None
    }

    fn account_busy(&mut self, woke: Instant) {
        (
            self.cx.counters.bus_channels,
            self.cx.counters.bus_remote_interest,
        ) = self.cx.bus.sizes();
        let busy = Instant::now().saturating_duration_since(woke);
        self.cx.counters.busy_nanos += u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX);
        self.cx.shared.counters.publish(&self.cx.counters);
        #[cfg(feature = "tracing")]
        self.drops.tick(woke, &self.cx.counters);
    }

    fn handle(&mut self, control: Control<W>) {
        match control {
            Control::Spawn {
                group,
                task,
                slot,
                generation,
            } => route::spawn(
                &mut self.groups,
                &mut self.cx,
                group,
                task,
                slot,
                generation,
            ),
            Control::Deliver {
                group,
                slot,
                generation,
                input,
            } => route::deliver(
                &mut self.groups,
                &mut self.cx,
                group,
                slot,
                generation,
                input,
            ),
        }
    }
}
