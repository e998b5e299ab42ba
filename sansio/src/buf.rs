//! Packet buffers: [`PacketBuf`] keeps headroom in front of its data, so a
//! header can be prepended without copying, and returns its memory to a
//! per-thread pool when dropped, so a worker's steady state allocates nothing
//! per packet.

use std::cell::RefCell;
use std::fmt;
use std::ops::{Deref, DerefMut};

/// Bytes kept free in front of received data, for headers to prepend.
pub const HEADROOM: usize = 64;

/// The data capacity of a buffer from [`PacketBuf::new`]: room for an
/// Ethernet-sized datagram and then some.
pub const DEFAULT_CAPACITY: usize = 2048;

/// Buffers kept per capacity in each thread's pool.
const POOLED_PER_CLASS: usize = 4096;
/// Distinct capacities each thread's pool keeps.
const POOL_CLASSES: usize = 4;
/// The most memory each thread's pool keeps, whatever the capacities (16
/// MiB): a burst of large datagrams (up to 65,507 bytes each) leaves no more
/// than this behind per thread once it has passed; the rest is freed.
pub const POOL_BYTES: usize = 16 << 20;

/// One thread's free buffers, by total capacity, and their bytes.
struct Pool {
    classes: Vec<(usize, Vec<Vec<u8>>)>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            classes: Vec::new(),
            bytes: 0,
        })
    };
}

/// Memory of `total` bytes (zeroed the first time), from this thread's pool
/// when it has some.
fn take(total: usize) -> Vec<u8> {
    let pooled = POOL
        .try_with(|pool| {
            let mut pool = pool.borrow_mut();
            let memory = pool
                .classes
                .iter_mut()
                .find(|(capacity, _)| *capacity == total)
                .and_then(|(_, free)| free.pop())?;
            pool.bytes -= total;
            Some(memory)
        })
        .ok()
        .flatten();
    pooled.unwrap_or_else(|| vec![0; total])
}

/// Gives memory back to this thread's pool (or frees it when the pool is
/// full, or the thread is exiting).
fn give(memory: Vec<u8>) {
    let total = memory.len();
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.bytes + total > POOL_BYTES {
            return;
        }
        let class = match pool
            .classes
            .iter()
            .position(|(capacity, _)| *capacity == total)
        {
            Some(class) => class,
            None if pool.classes.len() < POOL_CLASSES => {
                pool.classes.push((total, Vec::new()));
                pool.classes.len() - 1
            }
            None => return,
        };
        let free = &mut pool.classes[class].1;
        if free.len() < POOLED_PER_CLASS {
            free.push(memory);
            pool.bytes += total;
        }
    });
}

/// The bytes this thread's pool keeps.
#[cfg(test)]
fn pooled_bytes() -> usize {
    POOL.with(|pool| pool.borrow().bytes)
}

/// A packet: bytes with headroom in front and room behind.
///
/// It dereferences to its data (`&[u8]` / `&mut [u8]`). Received packets
/// arrive in one with [`HEADROOM`] bytes free in front; [`PacketBuf::prepend`]
/// uses them. A `PacketBuf` sent back out is sent from the same memory, and
/// dropping it returns the memory to the dropping thread's pool.
pub struct PacketBuf {
    memory: Vec<u8>,
    start: usize,
    end: usize,
}

impl PacketBuf {
    /// An empty buffer with [`HEADROOM`] in front and room for
    /// [`DEFAULT_CAPACITY`] bytes.
    #[must_use]
    pub fn new() -> Self {
        PacketBuf::with_capacity(DEFAULT_CAPACITY)
    }

    /// An empty buffer with [`HEADROOM`] in front and room for `capacity`
    /// bytes.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        PacketBuf {
            memory: take(HEADROOM + capacity),
            start: HEADROOM,
            end: HEADROOM,
        }
    }

    /// A buffer holding a copy of `data`.
    #[must_use]
    pub fn copy_from(data: &[u8]) -> Self {
        let mut buf = PacketBuf::with_capacity(data.len().max(DEFAULT_CAPACITY));
        buf.extend_from_slice(data);
        buf
    }

    /// The data's length.
    #[must_use]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether there is no data.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Free bytes in front of the data.
    #[must_use]
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Free bytes behind the data.
    #[must_use]
    pub fn tailroom(&self) -> usize {
        self.memory.len() - self.end
    }

    /// Grows the data by `n` bytes at the front, from the headroom, and
    /// returns them (zeroed or stale: write them). `None` when the headroom
    /// is shorter than `n`.
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let start = self.start.checked_sub(n)?;
        self.start = start;
        Some(&mut self.memory[start..start + n])
    }

    /// Drops `n` bytes from the front of the data (all of it if shorter),
    /// turning them into headroom.
    pub fn advance(&mut self, n: usize) {
        self.start = self.end.min(self.start + n);
    }

    /// Keeps the first `len` bytes of the data.
    pub fn truncate(&mut self, len: usize) {
        self.end = self.end.min(self.start + len);
    }

    /// Appends `data`, growing the buffer (once, by reallocating) when the
    /// tailroom is too short.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        if self.tailroom() < data.len() {
            let needed = self.end + data.len();
            self.memory.resize(needed.max(self.memory.len() * 2), 0);
        }
        self.memory[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Removes the data, keeping the headroom at [`HEADROOM`] when possible.
    pub fn clear(&mut self) {
        self.start = HEADROOM.min(self.memory.len());
        self.end = self.start;
    }

    /// The whole room behind the headroom, for receiving into: the data is
    /// cleared, and [`PacketBuf::set_len`] says how much was written.
    pub(crate) fn receive_area(&mut self) -> &mut [u8] {
        self.clear();
        &mut self.memory[self.start..]
    }

    /// Sets the data's length after a receive into [`PacketBuf::receive_area`].
    pub(crate) fn set_len(&mut self, len: usize) {
        self.end = (self.start + len).min(self.memory.len());
    }
}

impl Default for PacketBuf {
    fn default() -> Self {
        PacketBuf::new()
    }
}

impl Drop for PacketBuf {
    fn drop(&mut self) {
        give(std::mem::take(&mut self.memory));
    }
}

impl Clone for PacketBuf {
    /// A copy of the data, with the same headroom where possible.
    fn clone(&self) -> Self {
        let mut copy = PacketBuf {
            memory: take(self.memory.len()),
            start: self.start,
            end: self.start,
        };
        copy.extend_from_slice(self);
        copy
    }
}

impl Deref for PacketBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.memory[self.start..self.end]
    }
}

impl DerefMut for PacketBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.memory[self.start..self.end]
    }
}

impl AsRef<[u8]> for PacketBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<&[u8]> for PacketBuf {
    fn from(data: &[u8]) -> Self {
        PacketBuf::copy_from(data)
    }
}

impl PartialEq for PacketBuf {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for PacketBuf {}

impl PartialEq<[u8]> for PacketBuf {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 32;
        write!(f, "PacketBuf({} bytes: ", self.len())?;
        for byte in self.iter().take(SHOWN) {
            write!(f, "{byte:02x}")?;
        }
        if self.len() > SHOWN {
            f.write_str("..")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepends_into_the_headroom_without_moving_the_data() {
        let mut buf = PacketBuf::copy_from(b"payload");
        let data_at = buf.as_ptr();
        buf.prepend(4).unwrap().copy_from_slice(b"hdr:");
        assert_eq!(&*buf, b"hdr:payload");
        assert_eq!(
            buf.as_ptr(),
            data_at.wrapping_sub(4),
            "written in front, not copied"
        );
        assert_eq!(buf.headroom(), HEADROOM - 4);
        assert!(
            buf.prepend(HEADROOM).is_none(),
            "no more headroom than there is"
        );
        buf.advance(4);
        assert_eq!(&*buf, b"payload");
        buf.truncate(3);
        assert_eq!(&*buf, b"pay");
    }

    #[test]
    fn dropped_memory_is_reused_by_the_same_thread() {
        let first = PacketBuf::with_capacity(1000);
        let address = first.memory.as_ptr();
        drop(first);
        let second = PacketBuf::with_capacity(1000);
        assert_eq!(second.memory.as_ptr(), address, "taken back from the pool");
        assert!(second.is_empty());
    }

    #[test]
    fn the_pool_keeps_at_most_its_bound_in_bytes() {
        // 400 of the largest datagrams at once (26 MB), then dropped.
        let bufs: Vec<PacketBuf> = (0..400).map(|_| PacketBuf::with_capacity(65_507)).collect();
        drop(bufs);
        let kept = pooled_bytes();
        assert!(kept <= POOL_BYTES, "{kept} bytes kept");
        assert!(
            kept > POOL_BYTES / 2,
            "the pool still keeps what fits ({kept} bytes)"
        );
        // What it keeps is handed out again.
        let again = PacketBuf::with_capacity(65_507);
        assert!(pooled_bytes() < kept);
        drop(again);
    }

    #[test]
    fn grows_when_appending_past_the_tailroom() {
        let mut buf = PacketBuf::with_capacity(4);
        buf.extend_from_slice(b"0123456789");
        assert_eq!(&*buf, b"0123456789");
        assert_eq!(buf.clone(), buf);
        assert_eq!(
            format!("{buf:?}"),
            "PacketBuf(10 bytes: 30313233343536373839)"
        );
    }
}
