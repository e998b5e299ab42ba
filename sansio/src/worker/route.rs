//! Routing a worker's calls to the group of one task type.
//!
//! `#[sansio::worker]` generates one small `Groups` impl: a struct with a
//! [`Group`] per task type, and two entry points that hand one group
//! ([`Groups::with_group`]) or each group ([`Groups::each_group`]) to a
//! [`Visit`]. Everything the worker loop does with its tasks is written here
//! once, as a visitor, generic over the task type: the generated code does
//! not grow with what the runtime can do.

use std::any::Any;
use std::time::Instant;

use super::hub::{Chan, Ev};
use super::{Group, Groups, Member, Worker, WorkerCx};
use crate::bus::BusInput;
use crate::error::RpcError;
use crate::id::{RawId, TaskId};
use crate::net::{Adoption, NetInput};

/// An operation on the group of one task type, whichever it is.
#[doc(hidden)]
pub trait Visit<W: Worker> {
    /// What the operation returns.
    type Output;
    /// Carries the operation out on `group`, the tasks of type `T`.
    fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) -> Self::Output;
}

/// Starts `task` (task type `group`) in `slot`.
pub(crate) fn spawn<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    group: u16,
    task: W,
    slot: u32,
    generation: u32,
) {
    crate::log::event!(
        debug,
        "spawning a {} task in slot {slot}",
        W::TASK_TYPES
            .get(usize::from(group))
            .copied()
            .unwrap_or("?")
    );
    struct Spawn<'a, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        task: Option<W>,
        slot: u32,
        generation: u32,
    }
    impl<W: Worker> Visit<W> for Spawn<'_, W> {
        type Output = bool;
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) -> bool {
            match self.task.take().and_then(T::from_worker) {
                Some(task) => {
                    group.spawn(self.cx, task, self.slot, self.generation);
                    true
                }
                None => false,
            }
        }
    }
    let mut spawn = Spawn {
        cx,
        task: Some(task),
        slot,
        generation,
    };
    // The group comes from the task's own type (`Member::GROUP`,
    // `Worker::group_of`): a mismatch cannot be built. Were it, the slot
    // would go back unused.
    if groups.with_group(group, &mut spawn) != Some(true) {
        spawn.cx.release(group, slot);
    }
}

/// A spawn that never ran (still queued when its worker exited): its id
/// goes to `forced`, its slot back; the task is dropped unstarted.
pub(crate) fn unspawned<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    spawn: (u16, W, u32, u32),
    forced: &mut Vec<W::Id>,
) {
    struct Unspawned<'a, W: Worker> {
        index: u16,
        task: Option<W>,
        slot: u32,
        generation: u32,
        forced: &'a mut Vec<W::Id>,
    }
    impl<W: Worker> Visit<W> for Unspawned<'_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, _: &mut Group<T>) {
            if self.task.take().and_then(T::from_worker).is_some() {
                let id = TaskId::new(self.index, self.slot, self.generation);
                self.forced.push(T::id(id));
            }
        }
    }
    let (group, task, slot, generation) = spawn;
    let mut unspawned = Unspawned {
        index: cx.index,
        task: Some(task),
        slot,
        generation,
        forced,
    };
    groups.with_group(group, &mut unspawned);
    cx.release(group, slot);
}

/// Delivers `input` to the task of type `group` in `slot`, or reports it
/// undelivered.
pub(crate) fn deliver<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    group: u16,
    slot: u32,
    generation: u32,
    input: W::Input,
) {
    struct Deliver<'a, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        input: Option<W::Input>,
        slot: u32,
        generation: u32,
    }
    impl<W: Worker> Visit<W> for Deliver<'_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            let Some(input) = self.input.take() else {
                return;
            };
            match T::from_input(input) {
                Some(input) => {
                    let id = TaskId::new(self.cx.index, self.slot, self.generation);
                    group.deliver(self.cx, id, input);
                }
                // Built from the same task type as the group (`Runtime::send`):
                // unreachable; counted were it not.
                None => self.cx.counters.undelivered += 1,
            }
        }
    }
    let mut deliver = Deliver {
        cx,
        input: Some(input),
        slot,
        generation,
    };
    if groups.with_group(group, &mut deliver).is_none() {
        deliver.cx.counters.undelivered += 1;
    }
}

/// Delivers a network event to the task `owner`.
pub(crate) fn net<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    owner: RawId,
    input: NetInput,
) {
    struct Net<'a, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        owner: RawId,
        input: Option<NetInput>,
    }
    impl<W: Worker> Visit<W> for Net<'_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            if let Some(input) = self.input.take() {
                group.net(self.cx, self.owner.slot, self.owner.generation, input);
            }
        }
    }
    let mut net = Net {
        cx,
        owner,
        input: Some(input),
    };
    if groups.with_group(owner.group, &mut net).is_none() {
        net.cx.counters.net_dropped += 1;
    }
}

/// Delivers a bus event (or a report for a sender) to the task `owner`.
pub(crate) fn bus<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    owner: RawId,
    input: BusInput<Chan<W>, Ev<W>>,
) {
    struct Bus<'a, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        owner: RawId,
        input: Option<BusInput<Chan<W>, Ev<W>>>,
    }
    impl<W: Worker> Visit<W> for Bus<'_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            if let Some(input) = self.input.take() {
                group.bus(self.cx, self.owner.slot, self.owner.generation, input);
            }
        }
    }
    groups.with_group(
        owner.group,
        &mut Bus {
            cx,
            owner,
            input: Some(input),
        },
    );
}

/// Delivers a broadcast to every task with a bus.
pub(crate) fn broadcast<W: Worker>(groups: &mut W::Groups, cx: &mut WorkerCx<W>, event: &Ev<W>) {
    struct Broadcast<'a, 'e, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        event: &'e Ev<W>,
    }
    impl<W: Worker> Visit<W> for Broadcast<'_, '_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            group.broadcast(self.cx, self.event);
        }
    }
    groups.each_group(&mut Broadcast { cx, event });
}

/// Delivers a type-erased message (the task's input) to one task.
pub(crate) fn deliver_erased<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    group: u16,
    slot: u32,
    generation: u32,
    payload: Box<dyn Any + Send>,
) {
    struct Erased<'a, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        slot: u32,
        generation: u32,
        payload: Option<Box<dyn Any + Send>>,
    }
    impl<W: Worker> Visit<W> for Erased<'_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            if let Some(payload) = self.payload.take() {
                group.deliver_erased(self.cx, self.slot, self.generation, payload);
            }
        }
    }
    groups.with_group(
        group,
        &mut Erased {
            cx,
            slot,
            generation,
            payload: Some(payload),
        },
    );
}

/// Delivers the answer to request `id` of the task `owner`; returns whether
/// it was still waiting for one.
pub(crate) fn reply<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    owner: RawId,
    id: u64,
    result: Result<Box<dyn Any + Send>, RpcError>,
) -> bool {
    struct Reply<'a, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        owner: RawId,
        id: u64,
        result: Option<Result<Box<dyn Any + Send>, RpcError>>,
    }
    impl<W: Worker> Visit<W> for Reply<'_, W> {
        type Output = bool;
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) -> bool {
            self.result.take().is_some_and(|result| {
                let (slot, generation) = (self.owner.slot, self.owner.generation);
                group.reply(self.cx, slot, generation, self.id, result)
            })
        }
    }
    let mut reply = Reply {
        cx,
        owner,
        id,
        result: Some(result),
    };
    groups.with_group(owner.group, &mut reply) == Some(true)
}

/// Ticks every task of type `group`.
pub(crate) fn tick<W: Worker>(groups: &mut W::Groups, cx: &mut WorkerCx<W>, group: u16) {
    struct Tick<'a, W: Worker>(&'a mut WorkerCx<W>);
    impl<W: Worker> Visit<W> for Tick<'_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            group.tick(self.0);
        }
    }
    groups.with_group(group, &mut Tick(cx));
}

/// Fires the timer entry of the task of type `group` in `slot`.
pub(crate) fn timer<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    group: u16,
    slot: u32,
    generation: u32,
    deadline: Instant,
) {
    struct Timer<'a, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        slot: u32,
        generation: u32,
        deadline: Instant,
    }
    impl<W: Worker> Visit<W> for Timer<'_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            group.timer(self.cx, self.slot, self.generation, self.deadline);
        }
    }
    groups.with_group(
        group,
        &mut Timer {
            cx,
            slot,
            generation,
            deadline,
        },
    );
}

/// Gives the task `owner` a socket handed over to it.
pub(crate) fn adopt<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    owner: RawId,
    adoption: Adoption,
) {
    struct Adopt<'a, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        owner: RawId,
        adoption: Option<Adoption>,
    }
    impl<W: Worker> Visit<W> for Adopt<'_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            if let Some(adoption) = self.adoption.take() {
                group.adopt(self.cx, self.owner.slot, self.owner.generation, adoption);
            }
        }
    }
    groups.with_group(
        owner.group,
        &mut Adopt {
            cx,
            owner,
            adoption: Some(adoption),
        },
    );
}

/// Asks every task whose shutdown phase has come to shut down.
pub(crate) fn shutdown<W: Worker>(groups: &mut W::Groups, cx: &mut WorkerCx<W>) {
    struct Shutdown<'a, W: Worker>(&'a mut WorkerCx<W>);
    impl<W: Worker> Visit<W> for Shutdown<'_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            group.shutdown(self.0);
        }
    }
    groups.each_group(&mut Shutdown(cx));
}

/// Removes every task, listing them in `forced`.
pub(crate) fn force<W: Worker>(
    groups: &mut W::Groups,
    cx: &mut WorkerCx<W>,
    forced: &mut Vec<W::Id>,
) {
    struct Force<'a, 'f, W: Worker> {
        cx: &'a mut WorkerCx<W>,
        forced: &'f mut Vec<W::Id>,
    }
    impl<W: Worker> Visit<W> for Force<'_, '_, W> {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            group.force(self.cx, self.forced);
        }
    }
    groups.each_group(&mut Force { cx, forced });
}

/// Live tasks in all groups.
pub(crate) fn live<W: Worker>(groups: &mut W::Groups) -> usize {
    struct Live(usize);
    impl<W: Worker> Visit<W> for Live {
        type Output = ();
        fn visit<T: Member<W>>(&mut self, group: &mut Group<T>) {
            self.0 += group.live();
        }
    }
    let mut live = Live(0);
    groups.each_group(&mut live);
    live.0
}
