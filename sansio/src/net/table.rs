//! One worker's sockets of one kind: [`Table`], shared by the UDP sockets,
//! the TCP listeners and connections and the TUN devices.
//!
//! An entry sits in a slot whose index is also its backend token's index
//! (see [`Source`](super::Source)), so a readiness event finds its socket
//! without a lookup; freed slots are reused. A task names a socket by its id,
//! which the table maps to the slot until the socket is *forgotten*; its slot
//! is freed when it is *taken*. A UDP socket or device that closes with
//! datagrams still queued is forgotten at once (the task cannot use it again)
//! and taken once its queue is sent; a closing TCP connection keeps its id
//! until it goes, so that what its task re-sends after `Writable` still
//! reaches it before the close.

use std::collections::HashMap;
use std::hash::Hash;

use rustc_hash::FxBuildHasher;

/// Entries in reusable slots, found by slot index (events) or by id (tasks).
#[derive(Debug)]
pub(crate) struct Table<Id, E> {
    slots: Vec<Option<E>>,
    free: Vec<usize>,
    /// Found on every send: hashed with Fx, not SipHash, since the ids are
    /// the runtime's own (a worker, a task's slot, a counter), which no peer
    /// chooses, so there is no flooding to resist.
    ids: HashMap<Id, usize, FxBuildHasher>,
}

impl<Id, E> Default for Table<Id, E> {
    fn default() -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::default(),
        }
    }
}

impl<Id: Copy + Eq + Hash, E> Table<Id, E> {
    /// The slot the next [`Table::insert`] fills: a socket is registered
    /// with the backend under it before it is inserted.
    pub(crate) fn vacant(&self) -> usize {
        self.free.last().copied().unwrap_or(self.slots.len())
    }

    /// Puts `entry` in the vacant slot, found by `id`; returns the slot.
    pub(crate) fn insert(&mut self, id: Id, entry: E) -> usize {
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some(entry);
                index
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.ids.insert(id, index);
        index
    }

    /// Whether `id` names an open entry.
    pub(crate) fn contains(&self, id: &Id) -> bool {
        self.ids.contains_key(id)
    }

    /// The open entry `id` and its slot.
    pub(crate) fn find_mut(&mut self, id: &Id) -> Option<(usize, &mut E)> {
        let index = *self.ids.get(id)?;
        Some((index, self.slots[index].as_mut()?))
    }

    /// Stops `id` from finding its entry (which stays in its slot, for
    /// events, until [`Table::take`]); returns the slot.
    pub(crate) fn forget(&mut self, id: &Id) -> Option<usize> {
        self.ids.remove(id)
    }

    /// Takes the entry out of slot `index` and frees the slot. Its id must
    /// have been forgotten, or be forgotten by the caller.
    pub(crate) fn take(&mut self, index: usize) -> Option<E> {
        let entry = self.slots.get_mut(index)?.take()?;
        self.free.push(index);
        Some(entry)
    }

    /// The entry in slot `index`, open or closing.
    pub(crate) fn get(&self, index: usize) -> Option<&E> {
        self.slots.get(index)?.as_ref()
    }

    /// The entry in slot `index`, open or closing.
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut E> {
        self.slots.get_mut(index)?.as_mut()
    }

    /// How many entries an id finds: closing UDP sockets and devices are not
    /// counted, a closing TCP connection is until it goes.
    pub(crate) fn open(&self) -> usize {
        self.ids.len()
    }

    /// Every entry, open or closing, with its slot.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &E)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| Some((index, slot.as_ref()?)))
    }

    /// Every entry, open or closing, with its slot.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut E)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(index, slot)| Some((index, slot.as_mut()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_and_ids_find_only_open_entries() {
        let mut table: Table<u32, &str> = Table::default();
        assert_eq!(table.vacant(), 0);
        assert_eq!(table.insert(7, "a"), 0);
        assert_eq!(table.vacant(), 1);
        assert_eq!(table.insert(8, "b"), 1);
        assert_eq!(table.open(), 2);

        // A graceful close: forgotten at once, taken once drained.
        assert_eq!(table.forget(&7), Some(0));
        assert!(!table.contains(&7));
        assert_eq!(table.get(0), Some(&"a"));
        assert_eq!(table.open(), 1);
        assert_eq!(table.vacant(), 2);
        assert_eq!(table.take(0), Some("a"));
        assert_eq!(table.take(0), None);

        // The freed slot is the next one filled.
        assert_eq!(table.vacant(), 0);
        assert_eq!(table.insert(9, "c"), 0);
        assert_eq!(
            table.find_mut(&9).map(|(index, entry)| (index, *entry)),
            Some((0, "c"))
        );
        assert!(table.contains(&8));
        let all: Vec<_> = table.iter().map(|(index, entry)| (index, *entry)).collect();
        assert_eq!(all, [(0, "c"), (1, "b")]);
        assert_eq!(table.get(5), None);
    }
}
