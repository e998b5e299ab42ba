//! The io_uring backend's sends: a batch of messages the network layer
//! prepared (datagrams, or a TCP connection's queued buffers), queued as
//! linked `sendmsg`s and kept, payloads and all, until every message has
//! completed (see the module's notes in `mod.rs`).

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::{RECEIVE, REMOVAL, Receiving, Ring, send_data};
use crate::backend::{Outgoing, Readiness};

/// A batch of messages in the kernel's hands, and what each came to.
pub(super) struct Sending {
    pub(super) outgoing: Box<dyn Outgoing>,
    pub(super) results: Vec<i32>,
    /// Messages not completed yet.
    pub(super) pending: usize,
    /// The owner asked for the batch while it was in flight (it has more
    /// to send): its end is reported at once, not with the next event.
    pub(super) wanted: bool,
    /// Its generation, in its messages' `user_data` (24 bits).
    pub(super) generation: u32,
}

/// A result not in yet.
const PENDING: i32 = i32::MIN;

impl Receiving<'_> {
    /// Takes the completion of one message sent; once the batch is all
    /// done, its socket is reported writable, for its owner to take it
    /// back. Returns whether the owner is waiting for it (it asked while
    /// the batch was in flight).
    pub(super) fn sent(&mut self, completion: &cqueue::Entry, ready: &mut Vec<Readiness>) -> bool {
        let data = completion.user_data();
        let fd = RawFd::try_from((data >> 8) & (RECEIVE - 1)).unwrap_or(RawFd::MAX);
        let index = (data & 0xff) as usize;
        let generation = ((data >> 39) & 0x00ff_ffff) as u32;
        let Some(sending) = self
            .sendings
            .get_mut(&fd)
            .filter(|sending| sending.generation & 0x00ff_ffff == generation)
        else {
            // A message of a batch given up on (see `end_sends`).
            return false;
        };
        let Some(result) = sending.results.get_mut(index).filter(|r| **r == PENDING) else {
            return false;
        };
        *result = completion.result();
        sending.pending -= 1;
        if sending.pending == 0
            && let Some(receive) = self.receives.get(&fd)
        {
            ready.push(Readiness {
                token: receive.token,
                readable: false,
                writable: true,
                closed: false,
            });
            return sending.wanted;
        }
        false
    }
}

impl Ring {
    /// Queues `outgoing`'s messages on `fd` as linked `sendmsg`s (see
    /// [`Registry::send_messages`]).
    pub(super) fn send(
        &mut self,
        fd: RawFd,
        mut outgoing: Box<dyn Outgoing>,
    ) -> Result<(), Box<dyn Outgoing>> {
        let count = outgoing.headers().len();
        if count == 0
            || count > 256
            || !self.receives.contains_key(&fd)
            || self.sendings.contains_key(&fd)
        {
            return Err(outgoing);
        }
        // The chain goes into the queue whole: a chain cut by a submission
        // in its middle would not be one.
        let room = |ring: &mut IoUring| {
            let queue = ring.submission();
            queue.capacity() - queue.len()
        };
        if room(&mut self.ring) < count
            && (self.submit_now().is_err() || room(&mut self.ring) < count)
        {
            return Err(outgoing);
        }
        let generation = self.next_generation();
        let flags = outgoing.flags();
        // One borrow of the queue for the whole chain: its tail is published
        // once, after the last entry, so that a kernel thread taking entries
        // as they come (`SQPOLL`) never sees a chain cut short (it would
        // start the rest as a chain of its own, out of order).
        let mut queue = self.ring.submission();
        let writes = outgoing.writes();
        for (index, header) in outgoing.headers().iter_mut().enumerate() {
            let entry = if writes {
                let iovecs = u32::try_from(header.msg_hdr.msg_iovlen).unwrap_or(u32::MAX);
                opcode::Writev::new(types::Fd(fd), header.msg_hdr.msg_iov, iovecs).build()
            } else {
                opcode::SendMsg::new(types::Fd(fd), &raw const header.msg_hdr)
                    .flags(flags)
                    .build()
            };
            let mut entry = entry.user_data(send_data(fd, generation, index));
            if index + 1 < count {
                entry = entry.flags(squeue::Flags::IO_LINK);
            }
            // SAFETY: the header, and what it points into, is `outgoing`'s,
            // kept in `sendings` (and in place: it is boxed) until the
            // message's completion, or until the ring is gone.
            let pushed = unsafe { queue.push(&entry) };
            debug_assert!(pushed.is_ok(), "room was made for the chain");
        }
        drop(queue);
        self.sendings.insert(
            fd,
            Sending {
                outgoing,
                results: vec![PENDING; count],
                pending: count,
                wanted: false,
                generation,
            },
        );
        Ok(())
    }

    /// The batch sent on `fd`, once all done (see [`Registry::take_sent`]).
    pub(super) fn take_sent(
        &mut self,
        fd: RawFd,
        results: &mut Vec<i32>,
    ) -> Option<Box<dyn Outgoing>> {
        let sending = self.sendings.get_mut(&fd)?;
        if sending.pending > 0 {
            sending.wanted = true;
            return None;
        }
        let sending = self.sendings.remove(&fd)?;
        results.clear();
        results.extend_from_slice(&sending.results);
        Some(sending.outgoing)
    }

    /// Ends what `fd` is sending, before it is closed: the messages not
    /// sent yet are cancelled, and their completions waited for (a second
    /// at most), so that the kernel reads nothing of the batch once it is
    /// dropped; what the wait reaps for other sources is kept for the next
    /// wait. A batch whose end cannot be made sure of is leaked.
    pub(super) fn end_sends(&mut self, fd: RawFd) -> io::Result<()> {
        if !self.sendings.contains_key(&fd) {
            return Ok(());
        }
        let give_up = Instant::now() + Duration::from_secs(1);
        let mut ready = std::mem::take(&mut self.deferred);
        let ended = self.wait_sends(fd, give_up, &mut ready);
        // What was reaped for other sources is reported by the next wait,
        // whatever happened here.
        self.deferred = ready;
        if let Some(sending) = self.sendings.remove(&fd)
            && sending.pending > 0
        {
            // Still in the kernel after all: its completions will find no
            // batch of their generation, and the memory stays.
            std::mem::forget(sending.outgoing);
        }
        ended
    }

    /// Cancels what is left of `fd`'s batch and reaps, again and again (a
    /// linked message not started yet may escape a cancellation), until
    /// every message has completed or `give_up` comes.
    pub(super) fn wait_sends(
        &mut self,
        fd: RawFd,
        give_up: Instant,
        ready: &mut Vec<Readiness>,
    ) -> io::Result<()> {
        loop {
            let Some(sending) = self.sendings.get(&fd).filter(|sending| sending.pending > 0) else {
                return Ok(());
            };
            if Instant::now() >= give_up {
                return Ok(());
            }
            let generation = sending.generation;
            let pending: Vec<usize> = (0..sending.results.len())
                .filter(|&index| sending.results[index] == PENDING)
                .collect();
            for index in pending {
                let entry = opcode::AsyncCancel::new(send_data(fd, generation, index))
                    .build()
                    .user_data(REMOVAL);
                self.push(&entry)?;
            }
            self.enter(Some(Instant::now() + Duration::from_millis(10)))?;
            self.reap(ready)?;
        }
    }
}
