//! Provided buffer rings: the buffers an io_uring multishot `recvmsg`
//! writes datagrams into, picked by the kernel as each datagram comes in.
//!
//! A [`Group`] is one ring of `count` buffers of `size` bytes, registered
//! with the worker's io_uring under a group id. The kernel takes buffers
//! from the ring's head; the worker gives each back, once it has copied the
//! datagram out, by writing its address at the tail and moving the tail
//! (a release store the kernel reads with an acquire). The only unsafe code
//! of the receive path is here.

use std::alloc::{self, Layout};
use std::io;
use std::mem;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// Bytes the kernel writes before the payload in each buffer: the
/// `io_uring_recvmsg_out` header, the sender's address (room for any
/// socket address) and the control messages.
pub(super) const NAME_LEN: usize = mem::size_of::<libc::sockaddr_storage>();
/// Room for control messages: a GRO segment size and a drop count.
pub(super) const CONTROL_LEN: usize = 64;
/// The `io_uring_recvmsg_out` header (four `u32`s) comes first.
const OVERHEAD: usize = 16 + NAME_LEN + CONTROL_LEN;

/// What a group's buffers hold at most, across all its buffers: the count
/// is the largest power of two (between [`MIN_BUFFERS`] and
/// [`MAX_BUFFERS`]) that fits.
const GROUP_BYTES: usize = 4 << 20;
pub(super) const MIN_BUFFERS: u16 = 16;
const MAX_BUFFERS: u16 = 1024;

/// A registered ring of receive buffers.
pub(super) struct Group {
    pub(super) id: u16,
    /// The payload room of each buffer, as asked.
    pub(super) payload: usize,
    /// Bytes per buffer (payload plus what the kernel writes before it,
    /// rounded up to a cache line).
    size: usize,
    count: u16,
    /// The ring the kernel takes buffers from: `count` entries, page
    /// aligned; its tail is the `resv` field of the first entry.
    entries: NonNull<BufRingEntry>,
    /// `count` buffers of `size` bytes.
    memory: NonNull<u8>,
    /// The next tail to publish.
    tail: u16,
    /// Buffers in the ring (not holding a datagram the worker has yet to
    /// take).
    pub(super) free: usize,
    /// The header the receives of this group are made with: only its
    /// name and control lengths are read, by the kernel and by the parser.
    pub(super) msghdr: Box<libc::msghdr>,
}

// SAFETY: the group's memory is owned by it alone (and lent to the kernel
// ring, which is used by one thread at a time under the ring's mutex); the
// raw pointers move with it.
unsafe impl Send for Group {}

fn entries_layout(count: u16) -> Layout {
    // A page-aligned area: the kernel maps the ring by pages. The size is
    // at least one page and a power of two times 16 bytes, so it is valid.
    let size = (usize::from(count) * mem::size_of::<BufRingEntry>()).max(4096);
    Layout::from_size_align(size, 4096).unwrap_or_else(|_| unreachable!("a page-aligned size"))
}

fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "receive buffers too large")
}

fn memory_layout(size: usize, count: u16) -> io::Result<Layout> {
    let bytes = size.checked_mul(usize::from(count)).ok_or_else(too_large)?;
    Layout::from_size_align(bytes, 64).map_err(|_| too_large())
}

impl Group {
    /// Buffers for payloads of up to `payload` bytes, registered with
    /// `ring` as group `id`.
    pub(super) fn new(ring: &IoUring, id: u16, payload: usize) -> io::Result<Group> {
        let size = payload
            .checked_add(OVERHEAD)
            .and_then(|size| size.checked_next_multiple_of(64))
            .filter(|&size| u32::try_from(size).is_ok())
            .ok_or_else(too_large)?;
        let fit = (GROUP_BYTES / size).clamp(usize::from(MIN_BUFFERS), usize::from(MAX_BUFFERS));
        // The largest power of two not above `fit` (at least 16).
        let count = 1u16 << (usize::BITS - 1 - fit.leading_zeros());
        let entries_layout = entries_layout(count);
        let memory_layout = memory_layout(size, count)?;
        // SAFETY: both layouts have a non-zero size. The buffers are
        // zeroed too, so that the padding the kernel leaves unwritten in
        // each (after a short sender address) reads as bytes.
        let (entries, memory) = unsafe {
            (
                alloc::alloc_zeroed(entries_layout),
                alloc::alloc_zeroed(memory_layout),
            )
        };
        let (Some(entries), Some(memory)) = (NonNull::new(entries), NonNull::new(memory)) else {
            // SAFETY: each pointer, when not null, came from `alloc` with
            // its layout.
            unsafe {
                if !entries.is_null() {
                    alloc::dealloc(entries, entries_layout);
                }
                if !memory.is_null() {
                    alloc::dealloc(memory, memory_layout);
                }
            }
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        // SAFETY: all-zero is a valid `msghdr`.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { mem::zeroed() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        msghdr.msg_controllen = CONTROL_LEN as _;
        let mut group = Group {
            id,
            payload,
            size,
            count,
            entries: entries.cast(),
            memory,
            tail: 0,
            free: 0,
            msghdr,
        };
        // SAFETY: the entries are `count` zeroed entries, page aligned, and
        // live (with the buffers) until `Drop`, which the ring's owner runs
        // only after unregistering the group or tearing the ring down.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                group.entries.as_ptr() as u64,
                count,
                id,
                0,
            )
        }?;
        for bid in 0..count {
            group.give_back(bid);
        }
        Ok(group)
    }

    /// Hands buffer `bid` (back) to the kernel.
    pub(super) fn give_back(&mut self, bid: u16) {
        debug_assert!(bid < self.count && self.free < usize::from(self.count));
        let mask = self.count - 1;
        // SAFETY: `tail & mask` is below `count`, the ring's length; the
        // entry's slot is the worker's to write (the kernel has consumed
        // every entry before the tail it was last given, and at most
        // `count` buffers are ever out, so the slot is not in use), and the
        // buffer's address lies inside `memory`.
        unsafe {
            let entry = &mut *self.entries.as_ptr().add(usize::from(self.tail & mask));
            entry.set_addr(self.memory.as_ptr().add(usize::from(bid) * self.size) as u64);
            entry.set_len(self.size as u32);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail is the `resv` field of the ring's first entry, a
        // `u16` in memory the group owns, read by the kernel concurrently:
        // hence an atomic store, releasing the entry written above.
        unsafe {
            let tail = BufRingEntry::tail(self.entries.as_ptr()).cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
        self.free += 1;
    }

    /// The bytes the kernel wrote into buffer `bid` (`len` of them), for
    /// as long as the buffer is not given back.
    pub(super) fn filled(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= self.count || len > self.size {
            return None;
        }
        // SAFETY: buffer `bid` lies inside `memory` and holds `len <= size`
        // bytes the kernel wrote before it posted the completion that named
        // it; it is not in the ring (not given back) until the caller's
        // borrow of `self` ends.
        Some(unsafe {
            std::slice::from_raw_parts(self.memory.as_ptr().add(usize::from(bid) * self.size), len)
        })
    }

    /// Whether a buffer id can be one of this group's.
    pub(super) fn owns(&self, bid: u16) -> bool {
        bid < self.count
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: both areas came from `alloc` with these layouts; the
        // ring's owner drops a group only once the kernel cannot use it.
        unsafe {
            alloc::dealloc(self.entries.as_ptr().cast(), entries_layout(self.count));
            if let Ok(layout) = memory_layout(self.size, self.count) {
                alloc::dealloc(self.memory.as_ptr(), layout);
            }
        }
    }
}
