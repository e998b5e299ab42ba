//! The io_uring backend's TCP accepts and connects.
//!
//! Accepts: a multishot `accept` per listener,
//! the connections it accepted kept (as descriptors the backend owns) until
//! the listener's owner takes them. An error ends the multishot accept; it
//! is reported once, and the accept is armed again only at the take after
//! that, which the owner makes once its back-off has passed (out of
//! descriptors, say): an accept that failed at once again would otherwise
//! wake the worker for nothing, over and over.
//!
//! Connects: a `connect` of the ring per connecting socket, its address
//! kept until the kernel is done with it (a connect given up on keeps it
//! until its completion comes), its result kept until the owner takes it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, types};

use super::{
    ACCEPT, CONNECT, REMOVAL, Receiving, Ring, fd_and_generation, not_registered, user_data,
};
use crate::backend::{Readiness, Taken};

/// A socket the ring connects.
pub(super) struct Connecting {
    pub(super) token: usize,
    pub(super) generation: u32,
    /// The address, read by the kernel until the connect completes.
    pub(super) addr: Box<socket2::SockAddr>,
    /// How the connect ended (0 or an error number), once it has.
    pub(super) result: Option<i32>,
}

/// A connect's `user_data`: its descriptor and generation, with the
/// [`CONNECT`] bits.
pub(super) fn connect_data(fd: RawFd, generation: u32) -> u64 {
    user_data(fd, generation) | CONNECT
}

/// A listener whose connections the ring accepts itself.
pub(super) struct Accept {
    pub(super) token: usize,
    pub(super) generation: u32,
    /// The multishot accept is in the kernel.
    pub(super) armed: bool,
    /// Connections accepted and not taken yet, oldest first.
    pub(super) accepted: VecDeque<OwnedFd>,
    /// The error that ended the last accept, to report once.
    pub(super) error: Option<i32>,
    /// An error was reported: not armed again until the next take.
    pub(super) held: bool,
}

/// A multishot accept's `user_data`: its descriptor and generation, with
/// the [`ACCEPT`] bit.
pub(super) fn accept_data(fd: RawFd, generation: u32) -> u64 {
    user_data(fd, generation) | ACCEPT
}

impl Receiving<'_> {
    /// Takes one completion of a multishot accept: a connection, kept for
    /// the listener's owner, or the accept's end. Returns whether it was
    /// reported (a connection of a listener since closed is closed here).
    pub(super) fn accepted(
        &mut self,
        completion: &cqueue::Entry,
        ready: &mut Vec<Readiness>,
    ) -> bool {
        let tagged = completion.user_data();
        let data = tagged & !ACCEPT;
        let (fd, generation) = fd_and_generation(data);
        let result = completion.result();
        if !cqueue::more(completion.flags()) {
            self.closing_accepts.remove(&tagged);
        }
        // SAFETY: a non-negative result of an accept is a descriptor the
        // kernel just installed for us, owned by nothing else.
        let connection = (result >= 0).then(|| unsafe { OwnedFd::from_raw_fd(result) });
        let Some(accept) = self
            .accepts
            .get_mut(&fd)
            .filter(|accept| accept.generation == generation)
        else {
            // An accept of a listener since closed: its connection goes
            // (dropped, so closed, as the listener's backlog would be).
            return false;
        };
        match connection {
            Some(connection) => accept.accepted.push_back(connection),
            // Cancelled (by the kernel, or a deregistration): armed again at
            // the next take.
            None if result == -libc::ECANCELED => {}
            None => accept.error = Some(-result),
        }
        if !cqueue::more(completion.flags()) {
            accept.armed = false;
        }
        ready.push(Readiness {
            token: accept.token,
            readable: true,
            writable: false,
            closed: false,
        });
        true
    }
}

impl Receiving<'_> {
    /// Takes the completion of a connect: kept for the owner, who is told
    /// the socket is writable (as a connect on readiness says it). A
    /// connect given up on frees its address now.
    pub(super) fn connected(
        &mut self,
        completion: &cqueue::Entry,
        ready: &mut Vec<Readiness>,
    ) -> bool {
        let data = completion.user_data();
        if self.abandoned.remove(&data).is_some() {
            return false;
        }
        let data = data & !CONNECT;
        let (fd, generation) = fd_and_generation(data);
        let Some(connecting) = self
            .connects
            .get_mut(&fd)
            .filter(|connecting| connecting.generation == generation)
        else {
            return false;
        };
        connecting.result = Some(-completion.result());
        ready.push(Readiness {
            token: connecting.token,
            readable: false,
            writable: true,
            closed: false,
        });
        true
    }
}

impl Ring {
    /// Refuses a descriptor the ring cannot take on: a negative one
    /// (`EBADF`), or one it already watches, receives for, accepts on or
    /// connects (`EEXIST`).
    fn fresh(&self, fd: RawFd) -> io::Result<()> {
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if self.sources.contains_key(&fd)
            || self.receives.contains_key(&fd)
            || self.accepts.contains_key(&fd)
            || self.connects.contains_key(&fd)
        {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(())
    }

    /// Starts connecting `fd` to `addr` (see `Registry::connect_stream`).
    pub(super) fn start_connect(
        &mut self,
        fd: RawFd,
        token: usize,
        addr: SocketAddr,
    ) -> io::Result<bool> {
        if !self.receives_supported {
            return Ok(false);
        }
        self.fresh(fd)?;
        let addr = Box::new(socket2::SockAddr::from(addr));
        let generation = self.next_generation();
        let entry = opcode::Connect::new(types::Fd(fd), addr.as_ptr().cast(), addr.len())
            .build()
            .user_data(connect_data(fd, generation));
        // The entry points to the address: boxed, and kept in `connects`
        // (or, given up on, in `abandoned`) until the connect's completion.
        self.push(&entry)?;
        self.connects.insert(
            fd,
            Connecting {
                token,
                generation,
                addr,
                result: None,
            },
        );
        Ok(true)
    }

    /// How the connect of `fd` ended, once it has (see
    /// `Registry::take_connected`); `None` while it goes on.
    pub(super) fn take_connected(&mut self, fd: RawFd) -> Option<io::Result<()>> {
        let result = self.connects.get(&fd)?.result?;
        self.connects.remove(&fd);
        Some(match result {
            0 => Ok(()),
            code => Err(io::Error::from_raw_os_error(code)),
        })
    }

    /// Gives up the connect of `fd`, if it goes on: cancelled, its address
    /// kept until its completion. Returns whether `fd` was being connected.
    pub(super) fn end_connect(&mut self, fd: RawFd) -> io::Result<bool> {
        let Some(connecting) = self.connects.remove(&fd) else {
            return Ok(false);
        };
        if connecting.result.is_none() {
            let data = connect_data(fd, connecting.generation);
            self.abandoned.insert(data, connecting.addr);
            let entry = opcode::AsyncCancel::new(data).build().user_data(REMOVAL);
            self.push(&entry)?;
        }
        Ok(true)
    }

    /// Queues the multishot accept of `fd` (which must be in `accepts`).
    fn arm_accept(&mut self, fd: RawFd) -> io::Result<()> {
        let generation = self.next_generation();
        if !self.accepts.contains_key(&fd) {
            return Ok(());
        }
        let entry = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(accept_data(fd, generation));
        self.push(&entry)?;
        if let Some(accept) = self.accepts.get_mut(&fd) {
            accept.generation = generation;
            accept.armed = true;
        }
        Ok(())
    }

    /// Starts accepting the connections of the listening socket `fd` (see
    /// `Registry::accept_connections`).
    pub(super) fn start_accept(&mut self, fd: RawFd, token: usize) -> io::Result<bool> {
        if !self.receives_supported {
            return Ok(false);
        }
        self.fresh(fd)?;
        self.accepts.insert(
            fd,
            Accept {
                token,
                generation: 0,
                armed: false,
                accepted: VecDeque::new(),
                error: None,
                held: false,
            },
        );
        if let Err(error) = self.arm_accept(fd) {
            self.accepts.remove(&fd);
            return Err(error);
        }
        Ok(true)
    }

    /// Hands out up to `max` of the connections accepted on `fd` (see
    /// `Registry::take_accepted`), or, by a take that finds none, the error
    /// that ended the accept, once; arms the accept again if it ended,
    /// unless it just reported an error.
    pub(super) fn take_accepted(
        &mut self,
        fd: RawFd,
        max: usize,
        each: &mut dyn FnMut(OwnedFd),
    ) -> io::Result<Taken> {
        let accept = self
            .accepts
            .get_mut(&fd)
            .ok_or_else(|| not_registered(fd))?;
        accept.held = false;
        let mut given = 0;
        while given < max {
            let Some(connection) = accept.accepted.pop_front() else {
                break;
            };
            each(connection);
            given += 1;
        }
        let more = !accept.accepted.is_empty();
        // The error comes in a take of its own: one that handed out
        // connections returns them, not an error its caller would return
        // with them still in hand.
        let error = if more || given > 0 || max == 0 {
            None
        } else {
            accept.error.take()
        };
        accept.held = error.is_some();
        // Not while an error waits to be reported either: its take comes
        // next, and the owner backs off after it.
        if !accept.armed && !accept.held && accept.error.is_none() {
            self.arm_accept(fd)?;
        }
        match error {
            Some(code) => Err(io::Error::from_raw_os_error(code)),
            None => Ok(Taken {
                more,
                ..Taken::default()
            }),
        }
    }

    /// Stops accepting on `fd`: the accept is cancelled (what it still
    /// accepts is closed as it comes) and the connections not taken are
    /// closed. Returns whether `fd` was accepted on.
    pub(super) fn end_accept(&mut self, fd: RawFd) -> io::Result<bool> {
        let Some(accept) = self.accepts.remove(&fd) else {
            return Ok(false);
        };
        if accept.armed {
            let data = accept_data(fd, accept.generation);
            // Until its last completion, what it accepts is closed as it
            // comes; the ring's drop waits for that.
            self.closing_accepts.insert(data);
            let entry = opcode::AsyncCancel::new(data).build().user_data(REMOVAL);
            self.push(&entry)?;
        }
        Ok(true)
    }
}
