//! The io_uring backend's receives: a multishot `recvmsg` per UDP socket,
//! or a multishot `recv` per TCP connection, into the buffer rings of
//! `buffers.rs`, or a multishot `read` per TUN/TAP device (a packet per
//! read); the datagrams (or chunks, or packets) kept until the
//! socket's owner takes them, and a receive that runs out of buffers
//! waiting for them (see the module's notes in `mod.rs`).

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use io_uring::types::RecvMsgOut;
use io_uring::{cqueue, opcode, types};

use super::buffers::Group;
use super::{
    Armed, RECEIVE, REMOVAL, Receiving, Ring, fd_and_generation, not_registered, receive_data,
};
use crate::backend::{Datagram, Interest, Readiness, Taken};

/// What a receive reads, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// UDP datagrams, by `recvmsg` (with the sender and control messages).
    Datagrams,
    /// A connected stream, by `recv`, in chunks of the group's payload
    /// size; no bytes is its end, an error ends it for good.
    Stream,
    /// A device's packets, by `read`, one per read (no bytes: the device
    /// is gone; an error ends the reads too).
    Packets,
}

/// A socket or device the ring receives for itself: a multishot `recvmsg`,
/// `recv` or `read` into the buffers of `group`, what it completed and
/// what went wrong, until the owner takes them.
pub(super) struct Receive {
    pub(super) token: usize,
    pub(super) kind: Kind,
    /// Streams: the peer closed its side (a completion of 0 bytes); not
    /// armed again.
    pub(super) ended: bool,
    /// Streams and devices: a read failed (the error is reported once);
    /// not armed again.
    pub(super) failed: bool,
    /// Index into `Ring::groups`.
    pub(super) group: usize,
    pub(super) generation: u32,
    /// The multishot receive is in the kernel (it has not posted its last
    /// completion).
    pub(super) armed: bool,
    /// Buffers holding datagrams, with the bytes the kernel wrote in each.
    pub(super) filled: VecDeque<(u16, usize)>,
    /// The error that ended the last receive, to report once.
    pub(super) error: Option<i32>,
    /// Receives ended for want of buffers since the last take.
    pub(super) ran_out: u32,
}

impl Receiving<'_> {
    /// Takes one completion of a multishot receive: a datagram in a
    /// buffer, kept for the socket's owner to take, or the receive's end.
    /// The socket is reported readable either way, so that its owner takes
    /// what came and the receive is armed again.
    pub(super) fn completed(
        &mut self,
        completion: &cqueue::Entry,
        ready: &mut Vec<Readiness>,
    ) -> bool {
        let data = completion.user_data();
        let (fd, generation) = fd_and_generation(data & !RECEIVE);
        let more = cqueue::more(completion.flags());
        let buffer = cqueue::buffer_select(completion.flags());
        let result = completion.result();
        let live = self
            .receives
            .get_mut(&fd)
            .filter(|receive| receive.generation == generation);
        let Some(receive) = live else {
            // A receive of a socket since deregistered: what it filled
            // goes back to its group.
            if let (Some(bid), Some(&group)) = (buffer, self.retired.get(&data))
                && let Some(group) = self.groups.get_mut(group)
                && group.owns(bid)
            {
                group.free -= 1;
                group.give_back(bid);
            }
            if !more {
                self.retired.remove(&data);
            }
            return false;
        };
        match (buffer, usize::try_from(result)) {
            (Some(bid), Ok(len)) => {
                self.groups[receive.group].free -= 1;
                receive.filled.push_back((bid, len));
            }
            (None, Ok(0)) if receive.kind != Kind::Datagrams => receive.ended = true,
            (_, Ok(_)) => {}
            (_, Err(_)) if result == -libc::ENOBUFS => receive.ran_out += 1,
            // Cancelled by the kernel (or by us): armed again at the take.
            (_, Err(_)) if result == -libc::ECANCELED => {}
            (_, Err(_)) => {
                receive.error = Some(-result);
                // A stream's bytes after a failure would not follow the
                // ones before; a device that fails a read is gone or broken
                // (reading it again would fail at once, over and over).
                receive.failed = receive.kind != Kind::Datagrams;
            }
        }
        if !more {
            receive.armed = false;
        }
        ready.push(Readiness {
            token: receive.token,
            readable: true,
            writable: false,
            closed: false,
        });
        true
    }
}

impl Ring {
    /// Queues the multishot receive of `fd` (which must be in `receives`),
    /// or, when its group has no free buffer, leaves it starved until one
    /// comes back.
    pub(super) fn arm_receive(&mut self, fd: RawFd) -> io::Result<()> {
        let generation = self.next_generation();
        let Some(receive) = self.receives.get_mut(&fd) else {
            return Ok(());
        };
        if receive.ended || receive.failed {
            return Ok(());
        }
        let group = &self.groups[receive.group];
        if group.free == 0 {
            if !self.starved.contains(&fd) {
                self.starved.push(fd);
            }
            return Ok(());
        }
        // Multishot `recv` and `read` take no length (before Linux 6.17 a
        // `recv`'s is refused, EINVAL): each reads what a buffer holds, a
        // little more than the payload asked for.
        let entry = match receive.kind {
            Kind::Datagrams => {
                opcode::RecvMsgMulti::new(types::Fd(fd), &raw const *group.msghdr, group.id).build()
            }
            Kind::Stream => opcode::RecvMulti::new(types::Fd(fd), group.id).build(),
            Kind::Packets => opcode::ReadMulti::new(types::Fd(fd), 0, group.id).build(),
        };
        let entry = entry.user_data(receive_data(fd, generation));
        // Armed once queued: a receive that failed to queue is armed again
        // at the next take.
        self.push(&entry)?;
        if let Some(receive) = self.receives.get_mut(&fd) {
            receive.generation = generation;
            receive.armed = true;
        }
        Ok(())
    }

    /// Arms the starved receives whose groups have buffers again.
    pub(super) fn feed_starved(&mut self) -> io::Result<()> {
        let mut index = 0;
        while index < self.starved.len() {
            let fd = self.starved[index];
            let has_buffers = self
                .receives
                .get(&fd)
                .is_some_and(|receive| self.groups[receive.group].free > 0);
            if has_buffers || !self.receives.contains_key(&fd) {
                self.starved.swap_remove(index);
                if has_buffers {
                    self.arm_receive(fd)?;
                }
            } else {
                index += 1;
            }
        }
        Ok(())
    }

    /// The index of the buffer group for payloads of `size` bytes, made
    /// and registered on first use.
    pub(super) fn group(&mut self, size: usize) -> io::Result<usize> {
        if let Some(index) = self.groups.iter().position(|group| group.payload == size) {
            return Ok(index);
        }
        let id = u16::try_from(self.groups.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::OutOfMemory, "too many receive buffer sizes")
        })?;
        self.groups.push(Group::new(&self.ring, id, size)?);
        Ok(self.groups.len() - 1)
    }

    /// Stops receiving for `fd`: its receive is cancelled (its last
    /// completions give their buffers back as they come) and the datagrams
    /// it had not handed out are dropped, their buffers given back.
    pub(super) fn end_receive(&mut self, fd: RawFd) -> io::Result<bool> {
        let Some(receive) = self.receives.remove(&fd) else {
            return Ok(false);
        };
        let group = &mut self.groups[receive.group];
        for (bid, _) in receive.filled {
            group.give_back(bid);
        }
        self.starved.retain(|&starved| starved != fd);
        if receive.armed {
            let data = receive_data(fd, receive.generation);
            self.retired.insert(data, receive.group);
            let entry = opcode::AsyncCancel::new(data).build().user_data(REMOVAL);
            self.push(&entry)?;
        }
        self.feed_starved()?;
        Ok(true)
    }
}

impl Ring {
    /// Starts receiving the datagrams of `fd` (see
    /// [`Registry::receive_datagrams`]), or the chunks of the connected
    /// stream `fd` (see [`Registry::receive_stream`]: a stream
    /// already watched by a poll keeps it for writability alone).
    pub(super) fn start_receive(
        &mut self,
        fd: RawFd,
        token: usize,
        size: usize,
        kind: Kind,
    ) -> io::Result<bool> {
        if !self.receives_supported || (kind == Kind::Packets && !self.reads_supported) {
            return Ok(false);
        }
        let stream = kind != Kind::Datagrams;
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if self.receives.contains_key(&fd) || (!stream && self.sources.contains_key(&fd)) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let group = self.group(size)?;
        if let Some(old) = self.sources.remove(&fd) {
            // The receive is the readability now.
            self.disarm(fd, old.generation)?;
            if old.interest.writable {
                let armed = Armed {
                    token,
                    interest: Interest::WRITE,
                    generation: self.next_generation(),
                };
                self.sources.insert(fd, armed);
                self.arm(fd, armed)?;
            }
        }
        let receive = Receive {
            token,
            kind,
            ended: false,
            failed: false,
            group,
            generation: 0,
            armed: false,
            filled: VecDeque::new(),
            error: None,
            ran_out: 0,
        };
        self.receives.insert(fd, receive);
        if let Err(error) = self.arm_receive(fd) {
            self.receives.remove(&fd);
            self.starved.retain(|&starved| starved != fd);
            return Err(error);
        }
        Ok(true)
    }

    /// Hands out what the receive of `fd` got (see
    /// [`Registry::take_datagrams`]), and arms it again if it ended.
    pub(super) fn take(
        &mut self,
        fd: RawFd,
        max: usize,
        each: &mut dyn FnMut(Datagram<'_>),
    ) -> io::Result<Taken> {
        let receive = self
            .receives
            .get_mut(&fd)
            .ok_or_else(|| not_registered(fd))?;
        let group = &mut self.groups[receive.group];
        let mut given = 0;
        while given < max {
            let Some((bid, len)) = receive.filled.pop_front() else {
                break;
            };
            if receive.kind != Kind::Datagrams {
                // Not a datagram: the chunk is the payload, as it came.
                each(Datagram {
                    name: &[],
                    control: &[],
                    payload: group.filled(bid, len).unwrap_or_default(),
                    truncated: false,
                });
                group.give_back(bid);
                given += 1;
                continue;
            }
            match group
                .filled(bid, len)
                .map(|bytes| RecvMsgOut::parse(bytes, &group.msghdr))
            {
                Some(Ok(out)) => each(Datagram {
                    name: out.name_data(),
                    control: out.control_data(),
                    payload: out.payload_data(),
                    truncated: out.is_payload_truncated(),
                }),
                // Shorter than the header the kernel writes first: not a
                // datagram that can be told, counted as a cut one.
                _ => each(Datagram {
                    name: &[],
                    control: &[],
                    payload: &[],
                    truncated: true,
                }),
            }
            group.give_back(bid);
            given += 1;
        }
        let more = !receive.filled.is_empty();
        // An error is said after the datagrams before it, and not by a take
        // of none (which only arms the receive again); the count of
        // receives that ran out of buffers waits for a take that succeeds.
        let error = if more || max == 0 {
            None
        } else {
            receive.error.take()
        };
        let taken = Taken {
            more,
            buffers_ran_out: if error.is_none() && max > 0 {
                std::mem::take(&mut receive.ran_out)
            } else {
                0
            },
            ended: receive.ended && !more,
        };
        let rearm = !receive.armed;
        if given > 0 {
            self.feed_starved()?;
        }
        if rearm && !self.starved.contains(&fd) {
            self.arm_receive(fd)?;
        }
        match error {
            Some(code) => Err(io::Error::from_raw_os_error(code)),
            None => Ok(taken),
        }
    }
}
