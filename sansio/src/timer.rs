//! One timer structure per worker: a binary heap of deadlines, O(log n) per
//! deadline armed or fired.
//!
//! Two kinds of entry share it. A *tick* entry stands for every task of one
//! type: all tasks with the same interval are ticked in one batch, on a
//! schedule fixed to the worker's start (`epoch + k × every`), so ticks do not
//! drift; a worker that falls behind skips the ticks it missed rather than
//! replaying them in a burst. A *task* entry is one task's timer; entries are
//! never removed early, only re-checked when they come due (see
//! `Group::timer`), so re-arming a timer costs nothing unless the deadline
//! moves earlier.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What a heap entry fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Due {
    /// Tick every task of the group.
    Tick { group: u16 },
    /// The timer of one task.
    Task {
        group: u16,
        slot: u32,
        generation: u32,
    },
    /// The timeout of request `id` of the task `owner`.
    Reply { owner: crate::id::RawId, id: u64 },
}

/// The worker's deadlines.
#[derive(Debug)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Due)>>,
    /// Breaks ties between equal deadlines: first armed, first fired.
    sequence: u64,
    /// The origin of every tick schedule.
    epoch: Instant,
    /// Whether a tick entry is in the heap, per group.
    tick_armed: Vec<bool>,
}

impl Timers {
    pub(crate) fn new(epoch: Instant, groups: usize) -> Self {
        Timers {
            heap: BinaryHeap::new(),
            sequence: 0,
            epoch,
            tick_armed: vec![false; groups],
        }
    }

    /// Arms `due` for `deadline`.
    pub(crate) fn push(&mut self, deadline: Instant, due: Due) {
        self.sequence += 1;
        self.heap.push(Reverse((deadline, self.sequence, due)));
    }

    /// Schedules the next tick of `group` after `now` on its fixed schedule,
    /// unless one is already scheduled.
    pub(crate) fn schedule_tick(&mut self, group: u16, every: Duration, now: Instant) {
        let armed = &mut self.tick_armed[usize::from(group)];
        if *armed {
            return;
        }
        *armed = true;
        let since = now.saturating_duration_since(self.epoch).as_nanos();
        let every_nanos = every.as_nanos().max(1);
        let next = (since / every_nanos + 1) * every_nanos;
        // Past ~584 years the schedule saturates; such a tick never comes.
        let next = u64::try_from(next).unwrap_or(u64::MAX);
        let deadline = self
            .epoch
            .checked_add(Duration::from_nanos(next))
            .unwrap_or(now + every);
        self.push(deadline, Due::Tick { group });
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((deadline, _, _))| *deadline)
    }

    /// Takes the earliest entry if it is due at `now`.
    /// The number of the last entry pushed: [`Timers::pop_due`] takes only
    /// entries up to a horizon read before firing, so that what a firing
    /// handler arms for the current instant waits for the worker's next turn
    /// instead of firing again in the same loop.
    pub(crate) fn horizon(&self) -> u64 {
        self.sequence
    }

    /// The earliest entry due at `now`, if it was pushed by `horizon`.
    pub(crate) fn pop_due(&mut self, now: Instant, horizon: u64) -> Option<(Instant, Due)> {
        let Reverse((deadline, sequence, _)) = self.heap.peek()?;
        if *deadline > now || *sequence > horizon {
            return None;
        }
        let Reverse((deadline, _, due)) = self.heap.pop()?;
        if let Due::Tick { group } = due {
            self.tick_armed[usize::from(group)] = false;
        }
        Some((deadline, due))
    }

    /// Entries in the heap, including ones that will turn out stale.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn entries_come_out_in_deadline_order_then_arming_order() {
        let epoch = Instant::now();
        let mut timers = Timers::new(epoch, 1);
        let task = |slot| Due::Task {
            group: 0,
            slot,
            generation: 1,
        };
        timers.push(epoch + 5 * MS, task(1));
        timers.push(epoch + 2 * MS, task(2));
        timers.push(epoch + 5 * MS, task(3));
        assert_eq!(timers.pop_due(epoch + MS, u64::MAX), None);
        let fired: Vec<Due> = std::iter::from_fn(|| timers.pop_due(epoch + 10 * MS, u64::MAX))
            .map(|(_, due)| due)
            .collect();
        assert_eq!(fired, [task(2), task(1), task(3)]);
    }

    #[test]
    fn ticks_stay_on_the_schedule_and_skip_missed_ones() {
        let epoch = Instant::now();
        let mut timers = Timers::new(epoch, 2);
        timers.schedule_tick(1, 10 * MS, epoch + 3 * MS);
        timers.schedule_tick(1, 10 * MS, epoch + 3 * MS);
        assert_eq!(timers.len(), 1, "one tick entry per group");
        assert_eq!(timers.next_deadline(), Some(epoch + 10 * MS));
        // The worker wakes late, at 37 ms: the next tick is at 40, not 20.
        let (_, due) = timers.pop_due(epoch + 37 * MS, u64::MAX).unwrap();
        assert_eq!(due, Due::Tick { group: 1 });
        timers.schedule_tick(1, 10 * MS, epoch + 37 * MS);
        assert_eq!(timers.next_deadline(), Some(epoch + 40 * MS));
    }
}
