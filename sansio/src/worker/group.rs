//! The tasks of one type on one worker: a slab indexed by slot, each entry
//! with its generation, its task, its `Ctx` and its armed timer deadline.
//!
//! Every hook call goes through [`Group::run`], which is where the sans-I/O
//! contract is kept: the clock is set, the handler runs inside
//! `catch_unwind` (a panic ends that task only), and every action it queued
//! is carried out, in order, before `run` returns and the worker moves on to
//! its next input.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use std::any::{Any, TypeId};
use std::collections::HashMap;

use super::hub::{Chan, Ev};
use super::{Member, Worker, WorkerCx, panic_message};
use crate::bus::{BusInput, NoBus};
use crate::error::RpcError;
use crate::id::RawId;
use crate::id::TaskId;
use crate::net::{Adoption, NetInput, Owned, TcpEvent};
use crate::task::Task;
use crate::task::{Action, Ctx, ReplyInput, TcpWrap, UdpWrap, Wraps};
use crate::timer::Due;

mod actions;

/// The tasks of type `T` on one worker.
#[doc(hidden)]
pub struct Group<T: Task> {
    entries: Vec<Option<Entry<T>>>,
    live: usize,
}

struct Entry<T: Task> {
    generation: u32,
    task: T,
    ctx: Ctx<T>,
    /// The deadline this task has an entry for in the worker's timer heap.
    /// Re-arming later leaves that entry, which re-arms itself when it comes
    /// due; re-arming earlier adds a new entry.
    armed: Option<Instant>,
    /// How this task's network events become its input, per kind of socket
    /// it has opened.
    wraps: Wraps<T>,
    /// The sockets the task owns, closed when it ends.
    owned: Vec<Owned>,
    /// Requests the task made that await their answer.
    pending: HashMap<u64, ReplyInput<T>>,
    /// The shutdown phase the task is counted in.
    phase: u8,
    /// `on_shutdown` has been called.
    asked_to_shut_down: bool,
}

impl<T: Task> Entry<T> {
    /// Gives the task's earliest deadline (timer, keyed timers, run-time
    /// tick) an entry in the worker's heap, unless one as early is there.
    fn arm<W: Worker>(&mut self, cx: &mut WorkerCx<W>, slot: u32)
    where
        T: Member<W>,
    {
        if let Some(at) = self.ctx.next_deadline()
            && self.armed.is_none_or(|armed| at < armed)
        {
            self.armed = Some(at);
            let due = Due::Task {
                group: T::GROUP,
                slot,
                generation: self.generation,
            };
            cx.timers.push(at, due);
        }
    }

    /// Keeps the list of owned sockets up to date with what the worker says
    /// about them: accepted connections join it, failed ones leave it.
    fn track(&mut self, input: &NetInput) {
        match input {
            NetInput::Tcp(TcpEvent::Accepted { conn, .. }) => {
                self.owned.push(Owned::TcpConn(*conn))
            }
            NetInput::Tcp(
                TcpEvent::Closed { conn, .. }
                | TcpEvent::Connected {
                    conn,
                    result: Err(_),
                },
            ) => self.owned.retain(|owned| *owned != Owned::TcpConn(*conn)),
            _ => {}
        }
    }
}

/// The raw id of the task of type `T` in `slot`.
fn owner<W: Worker, T: Member<W>>(slot: u32, generation: u32) -> RawId {
    RawId {
        group: T::GROUP,
        slot,
        generation,
    }
}

impl<T: Task> Default for Group<T> {
    fn default() -> Self {
        Group {
            entries: Vec::new(),
            live: 0,
        }
    }
}

impl<T: Task> Group<T> {
    /// An empty group.
    pub fn new() -> Self {
        Group::default()
    }

    /// Live tasks.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// The task in `slot`, if it is still the one of `generation`.
    fn entry(&mut self, slot: u32, generation: u32) -> Option<&mut Entry<T>> {
        self.entries
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|entry| entry.generation == generation)
    }

    /// Places `task` in `slot` (handed out by the controller) and starts it.
    pub(crate) fn spawn<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        task: T,
        slot: u32,
        generation: u32,
    ) where
        T: Member<W>,
    {
        let index = slot as usize;
        if self.entries.len() <= index {
            self.entries.resize_with(index + 1, || None);
        }
        self.entries[index] = Some(Entry {
            generation,
            task,
            ctx: Ctx::new(cx.now, cx.index, owner::<W, T>(slot, generation)),
            armed: None,
            wraps: Wraps::default(),
            owned: Vec::new(),
            pending: HashMap::new(),
            phase: 0,
            asked_to_shut_down: false,
        });
        self.live += 1;
        cx.count_phase(0, true);
        if let Some(every) = T::TICK_INTERVAL {
            cx.timers.schedule_tick(T::GROUP, every, cx.now);
        }
        self.run(cx, slot, |task, ctx| task.on_start(ctx));
        if cx.shutting_down {
            self.ask_to_shut_down(cx, slot);
        }
    }

    /// Delivers `input` to the task `id`, or reports it undelivered when that
    /// task has ended (even if its slot holds a newer task).
    pub(crate) fn deliver<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        id: TaskId<T>,
        input: T::Input,
    ) where
        T: Member<W>,
    {
        if self.entry(id.slot(), id.generation()).is_none() {
            cx.undelivered(T::id(id), T::input(input));
            return;
        }
        cx.counters.inputs += 1;
        self.run(cx, id.slot(), |task, ctx| task.on_input(ctx, input));
    }

    /// Delivers a network event to the task in `slot`, as its input; drops
    /// and counts it when that task has ended.
    pub(crate) fn net<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        slot: u32,
        generation: u32,
        input: NetInput,
    ) where
        T: Member<W>,
    {
        let Some(entry) = self.entry(slot, generation) else {
            cx.counters.net_dropped += 1;
            return;
        };
        entry.track(&input);
        match entry.wraps.input(input) {
            Ok(input) => {
                cx.counters.inputs += 1;
                self.run(cx, slot, |task, ctx| task.on_input(ctx, input));
            }
            // Only a task that bound a socket gets its events: unreachable in
            // practice, counted all the same.
            Err(_) => cx.counters.net_dropped += 1,
        }
    }

    /// Delivers a bus event to the task in `slot`, when it takes bus events.
    pub(crate) fn bus<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        slot: u32,
        generation: u32,
        input: BusInput<Chan<W>, Ev<W>>,
    ) where
        T: Member<W>,
    {
        let live = self.entry(slot, generation).is_some();
        if let (true, Some(input)) = (live, T::bus_accept(input)) {
            cx.counters.inputs += 1;
            self.run(cx, slot, |task, ctx| task.on_input(ctx, input));
        }
    }

    /// Delivers a broadcast to every live task of the group that takes bus
    /// events.
    pub(crate) fn broadcast<W: Worker>(&mut self, cx: &mut WorkerCx<W>, event: &Ev<W>)
    where
        T: Member<W>,
    {
        if TypeId::of::<T::Bus>() == TypeId::of::<NoBus>() {
            return;
        }
        for slot in 0..self.entries.len() {
            if self.entries[slot].is_none() {
                continue;
            }
            let input = BusInput::Event {
                channel: None,
                event: event.clone(),
            };
            if let Some(input) = T::bus_accept(input) {
                cx.counters.inputs += 1;
                cx.counters.bus_delivered += 1;
                self.run(cx, slot as u32, |task, ctx| task.on_input(ctx, input));
            }
        }
    }

    /// Delivers a type-erased input (from `send_to` or `request`) to the
    /// task in `slot`. Dropped, and counted, when that task has ended (a
    /// request's responder then answers `Dropped`).
    pub(crate) fn deliver_erased<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        slot: u32,
        generation: u32,
        payload: Box<dyn Any + Send>,
    ) where
        T: Member<W>,
    {
        let live = self.entry(slot, generation).is_some();
        let from = cx.delivering_from.take();
        match payload.downcast::<T::Input>() {
            Ok(input) if live => {
                cx.counters.inputs += 1;
                self.run(cx, slot, |task, ctx| task.on_input(ctx, *input));
            }
            // Gone, or (unreachable: messages are built for their type) of
            // another type: the sender of a direct message hears of it.
            _ => {
                cx.counters.bus_undelivered += 1;
                if let Some(sender) = from {
                    cx.bus.send_failed(sender);
                }
            }
        }
    }

    /// Delivers the answer to request `id` of the task in `slot`, if it is
    /// still waiting; returns whether it was.
    pub(crate) fn reply<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        slot: u32,
        generation: u32,
        id: u64,
        result: Result<Box<dyn Any + Send>, RpcError>,
    ) -> bool
    where
        T: Member<W>,
    {
        let Some(entry) = self.entry(slot, generation) else {
            return false;
        };
        let Some(reply) = entry.pending.remove(&id) else {
            return false;
        };
        let input = reply(id, result);
        cx.counters.inputs += 1;
        self.run(cx, slot, |task, ctx| task.on_input(ctx, input));
        true
    }

    /// Ticks every live task, then schedules the group's next tick.
    pub(crate) fn tick<W: Worker>(&mut self, cx: &mut WorkerCx<W>)
    where
        T: Member<W>,
    {
        for slot in 0..self.entries.len() {
            // A task with an interval of its own ticks from its timers.
            if let Some(entry) = &self.entries[slot]
                && !entry.ctx.ticks_itself()
            {
                self.run(cx, slot as u32, |task, ctx| task.on_tick(ctx));
            }
        }
        if let Some(every) = T::TICK_INTERVAL
            && self.live > 0
        {
            cx.timers.schedule_tick(T::GROUP, every, cx.now);
        }
    }

    /// A timer entry for `slot` came due. It fires what of the task's timer,
    /// keyed timers and run-time tick is due (each in a call of its own: the
    /// timer, then the keyed ones in deadline order, then the tick), then
    /// arms an entry for the next deadline. An entry that no longer stands
    /// for the task's earliest deadline (the task ended, or re-armed
    /// earlier) is a no-op.
    pub(crate) fn timer<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        slot: u32,
        generation: u32,
        deadline: Instant,
    ) where
        T: Member<W>,
    {
        let Some(entry) = self.entry(slot, generation) else {
            return;
        };
        if entry.armed != Some(deadline) {
            return;
        }
        entry.armed = None;
        let now = cx.now;
        if entry.ctx.take_due_timer(now) {
            self.run(cx, slot, |task, ctx| task.on_timer(ctx));
        }
        // The keys due now, taken at once: a key re-armed for `now` by its
        // handler gets a heap entry past the worker's horizon for this turn,
        // so it fires on the next turn, not in a loop here.
        let due = match self.entry(slot, generation) {
            Some(entry) => entry.ctx.take_due_keyed(now),
            None => return,
        };
        for key in due {
            if self.entry(slot, generation).is_none() {
                return;
            }
            self.run(cx, slot, move |task, ctx| task.on_keyed_timer(ctx, key));
        }
        if self
            .entry(slot, generation)
            .is_some_and(|entry| entry.ctx.take_due_tick(now))
        {
            self.run(cx, slot, |task, ctx| task.on_tick(ctx));
        }
        if let Some(entry) = self.entry(slot, generation) {
            entry.arm(cx, slot);
        }
    }

    /// Gives the task in `slot` a socket handed over to it. If it has ended
    /// meanwhile, the socket is closed (gracefully: what is queued goes).
    pub(crate) fn adopt<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        slot: u32,
        generation: u32,
        adoption: Adoption,
    ) where
        T: Member<W>,
    {
        let Adoption { socket, wrap } = adoption;
        let Some(entry) = self.entry(slot, generation) else {
            cx.net.close_owned(socket, cx.now, &mut cx.counters);
            return;
        };
        match wrap.downcast::<TcpWrap<T>>() {
            Ok(wrap) => entry.wraps.tcp = Some(*wrap),
            Err(wrap) => {
                if let Ok(wrap) = wrap.downcast::<UdpWrap<T>>() {
                    entry.wraps.udp = Some(*wrap);
                }
            }
        }
        entry.owned.push(socket);
    }

    /// Calls `on_shutdown` on every live task of the shutdown phases under
    /// way that has not been asked yet.
    pub(crate) fn shutdown<W: Worker>(&mut self, cx: &mut WorkerCx<W>)
    where
        T: Member<W>,
    {
        for slot in 0..self.entries.len() {
            self.ask_to_shut_down(cx, slot as u32);
        }
    }

    /// Calls `on_shutdown` on the task in `slot` if its phase has come and
    /// it has not been asked yet.
    fn ask_to_shut_down<W: Worker>(&mut self, cx: &mut WorkerCx<W>, slot: u32)
    where
        T: Member<W>,
    {
        if let Some(Some(entry)) = self.entries.get_mut(slot as usize)
            && !entry.asked_to_shut_down
            && entry.phase <= cx.shutdown_phase
        {
            entry.asked_to_shut_down = true;
            self.run(cx, slot, |task, ctx| task.on_shutdown(ctx));
        }
    }

    /// Removes every live task without calling it, listing it in `forced`.
    pub(crate) fn force<W: Worker>(&mut self, cx: &mut WorkerCx<W>, forced: &mut Vec<W::Id>)
    where
        T: Member<W>,
    {
        for slot in 0..self.entries.len() {
            if let Some(entry) = &self.entries[slot] {
                forced.push(T::id(TaskId::new(cx.index, slot as u32, entry.generation)));
                self.remove(cx, slot as u32);
            }
        }
    }

    /// Runs one hook of the task in `slot` and carries out what it queued.
    fn run<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        slot: u32,
        hook: impl FnOnce(&mut T, &mut Ctx<T>),
    ) where
        T: Member<W>,
    {
        let Some(Some(entry)) = self.entries.get_mut(slot as usize) else {
            return;
        };
        entry.ctx.set_now(cx.now);
        let outcome =
            panic::catch_unwind(AssertUnwindSafe(|| hook(&mut entry.task, &mut entry.ctx)));
        let id = T::id(TaskId::new(cx.index, slot, entry.generation));
        let owner = owner::<W, T>(slot, entry.generation);
        let phase = entry.ctx.shutdown_phase();
        if phase != entry.phase {
            cx.count_phase(phase, true);
            cx.count_phase(entry.phase, false);
            entry.phase = phase;
        }
        // What the task queued before a panic was queued by a correct task
        // state: carry it out too. Carrying out runs the task's types' code
        // as well (an event's `Clone` at a publish, a channel's `Hash`): a
        // panic there ends the task like a panic in its handler.
        let carried = panic::catch_unwind(AssertUnwindSafe(|| {
            while let Some(action) = entry.ctx.next_action() {
                entry.carry_out(cx, id, owner, action);
            }
        }));
        let outcome = match (outcome, carried) {
            (Ok(()), Err(payload)) => {
                // What is left was queued after the action that panicked.
                let rest: Vec<Action<T>> = std::iter::from_fn(|| entry.ctx.next_action()).collect();
                let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(rest)));
                Err(payload)
            }
            (Err(payload), Err(second)) => {
                let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(second)));
                Err(payload)
            }
            (outcome, Ok(())) => outcome,
        };
        match outcome {
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                // Dropping the payload runs foreign code too.
                let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
                self.remove(cx, slot);
                cx.panicked(id, message);
            }
            Ok(()) if entry.ctx.is_finished() => {
                self.remove(cx, slot);
                cx.finished(id);
            }
            Ok(()) => entry.arm(cx, slot),
        }
    }

    /// Drops the task in `slot` and frees the slot for the controller.
    fn remove<W: Worker>(&mut self, cx: &mut WorkerCx<W>, slot: u32)
    where
        T: Member<W>,
    {
        if let Some(entry) = self.entries[slot as usize].take() {
            self.live -= 1;
            cx.count_phase(entry.phase, false);
            for &socket in &entry.owned {
                cx.net.close_owned(socket, cx.now, &mut cx.counters);
            }
            // Unsubscribing hashes and compares the task's channels with
            // the application's code, which may panic (the task may have
            // ended for just that): the worker carries on, counting it; a
            // subscription left behind is harmless, as what reaches an
            // ended task is dropped.
            let owner = owner::<W, T>(slot, entry.generation);
            let bus = &mut cx.bus;
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| bus.forget(owner))) {
                cx.counters.panics += 1;
                crate::log::event!(
                    error,
                    "a panic unsubscribing an ended task from the bus (in the application's Hash or Eq): {}",
                    panic_message(payload.as_ref())
                );
                let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
            }
            // The task's own Drop may panic; that must not take the worker.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(entry)));
            cx.release(T::GROUP, slot);
        }
    }
}

impl<T: Task> fmt::Debug for Group<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("task", &T::NAME)
            .field("live", &self.live)
            .finish_non_exhaustive()
    }
}
