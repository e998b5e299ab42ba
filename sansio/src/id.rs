//! Task identity: the typed [`TaskId`], and the per-worker slot tables that
//! hand out (slot, generation) pairs and tell the controller, without a lock,
//! whether an id still names a live task.

use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The id of a task of type `T` on a runtime: its worker, its slot in that
/// worker's group of `T` tasks, and the slot's generation.
///
/// A slot is reused once its task has ended, with the next generation, so an
/// old id never names the new task: a message sent with it is reported as
/// undeliverable instead (`SendError::TaskGone`, or `Event::Undelivered`).
/// Generations are 32-bit: an id could only be confused with another after
/// four billion tasks in the same slot.
pub struct TaskId<T> {
    worker: u16,
    slot: u32,
    generation: u32,
    _task: PhantomData<fn() -> T>,
}

impl<T> TaskId<T> {
    pub(crate) fn new(worker: u16, slot: u32, generation: u32) -> Self {
        TaskId {
            worker,
            slot,
            generation,
            _task: PhantomData,
        }
    }

    /// The index of the worker the task runs on.
    #[must_use]
    pub fn worker(&self) -> usize {
        usize::from(self.worker)
    }

    /// The task's slot in its worker's group of `T` tasks.
    #[must_use]
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// How many tasks have held this slot before, plus one.
    #[must_use]
    pub fn generation(&self) -> u32 {
        self.generation
    }
}

impl<T> Clone for TaskId<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for TaskId<T> {}

impl<T> PartialEq for TaskId<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.worker, self.slot, self.generation) == (other.worker, other.slot, other.generation)
    }
}

impl<T> Eq for TaskId<T> {}

impl<T> Hash for TaskId<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.worker, self.slot, self.generation).hash(state);
    }
}

impl<T> PartialOrd for TaskId<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for TaskId<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.worker, self.slot, self.generation).cmp(&(other.worker, other.slot, other.generation))
    }
}

/// A task's identity without its type: the index of its type in the worker,
/// its slot and generation. Names the owner of a socket.
#[doc(hidden)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default)]
pub struct RawId {
    /// The index of the task's type among the worker's variants.
    pub group: u16,
    /// The task's slot.
    pub slot: u32,
    /// The slot's generation.
    pub generation: u32,
}

/// Slots per chunk of a [`Slots`] table.
const CHUNK: usize = 4096;
/// Chunks per table: the most tasks of one type one worker can hold is
/// `CHUNK * CHUNKS` (1,048,576).
const CHUNKS: usize = 256;
/// The most tasks of one type on one worker.
pub(crate) const MAX_SLOTS: usize = CHUNK * CHUNKS;

/// The slots of one task type on one worker, shared by the controller (which
/// allocates them at spawn and checks ids at send) and the worker (which
/// releases them when a task ends).
///
/// Each slot's state is one atomic word, `generation << 1 | live`, in chunks
/// allocated on first use, so checking an id is two atomic loads and never
/// blocks. Allocation and release take a mutex; they happen once per task.
pub(crate) struct Slots {
    chunks: Box<[OnceLock<Box<[AtomicU64]>>]>,
    free: Mutex<FreeList>,
}

#[derive(Default)]
struct FreeList {
    /// Released slots, reused last-released first.
    released: Vec<u32>,
    /// The lowest slot never handed out.
    next: u32,
    /// Slots handed out and not released.
    live: usize,
}

impl Slots {
    pub(crate) fn new() -> Self {
        Slots {
            chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
            free: Mutex::new(FreeList::default()),
        }
    }

    fn cell(&self, slot: u32) -> Option<&AtomicU64> {
        let slot = slot as usize;
        self.chunks.get(slot / CHUNK)?.get()?.get(slot % CHUNK)
    }

    /// Hands out a free slot with its next generation, or `None` when all
    /// [`MAX_SLOTS`] are live.
    pub(crate) fn allocate(&self) -> Option<(u32, u32)> {
        let mut free = lock(&self.free);
        let slot = match free.released.pop() {
            Some(slot) => slot,
            None if (free.next as usize) < MAX_SLOTS => {
                free.next += 1;
                free.next - 1
            }
            None => return None,
        };
        free.live += 1;
        let chunk = self.chunks[slot as usize / CHUNK]
            .get_or_init(|| (0..CHUNK).map(|_| AtomicU64::new(0)).collect());
        let cell = &chunk[slot as usize % CHUNK];
        let generation = ((cell.load(Ordering::Relaxed) >> 1) as u32).wrapping_add(1);
        cell.store(u64::from(generation) << 1 | 1, Ordering::Release);
        Some((slot, generation))
    }

    /// Marks `slot` free: ids with its current generation stop being live.
    pub(crate) fn release(&self, slot: u32) {
        if let Some(cell) = self.cell(slot) {
            cell.fetch_and(!1, Ordering::Release);
        }
        let mut free = lock(&self.free);
        free.released.push(slot);
        free.live -= 1;
    }

    /// Whether `slot` holds the task of `generation` (spawned, not ended).
    pub(crate) fn is_live(&self, slot: u32, generation: u32) -> bool {
        self.cell(slot)
            .is_some_and(|cell| cell.load(Ordering::Acquire) == (u64::from(generation) << 1 | 1))
    }

    /// How many tasks are live (including spawns still queued).
    pub(crate) fn live(&self) -> usize {
        lock(&self.free).live
    }
}

/// Locks `mutex`, ignoring poisoning: the data behind these locks is a plain
/// free list, valid whatever panicked while it was held.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_slots_come_back_with_the_next_generation() {
        let slots = Slots::new();
        let (a, gen_a) = slots.allocate().unwrap();
        let (b, _) = slots.allocate().unwrap();
        assert_ne!(a, b);
        assert!(slots.is_live(a, gen_a));
        assert_eq!(slots.live(), 2);
        slots.release(a);
        assert!(!slots.is_live(a, gen_a), "a released id is gone");
        let (again, gen_again) = slots.allocate().unwrap();
        assert_eq!(again, a, "the slot is reused");
        assert_eq!(gen_again, gen_a + 1);
        assert!(
            !slots.is_live(a, gen_a),
            "the old id does not name the new task"
        );
        assert!(slots.is_live(a, gen_again));
    }

    #[test]
    fn ids_of_slots_never_allocated_are_not_live() {
        let slots = Slots::new();
        assert!(!slots.is_live(0, 1));
        assert!(!slots.is_live(u32::MAX, 1));
    }
}
