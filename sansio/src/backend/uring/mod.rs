//! The io_uring backend: the worker sleeps in `io_uring_enter`, and every
//! registered source is watched by a multishot `POLL_ADD` on the worker's
//! own ring (edge-triggered, as io_uring polls are unless asked to be
//! level-triggered: a completion per wakeup of the source, as epoll's
//! `EPOLLET`). The deadline is the wait's own timeout (`IORING_ENTER_EXT_ARG`,
//! precise to the microsecond), and the waker an `eventfd` the ring polls
//! like any source.
//!
//! UDP sockets are received by the ring itself: a multishot `recvmsg` per
//! socket, into a ring of buffers the kernel picks from (`buffers.rs`; one
//! group per payload size, shared by the worker's sockets of that size).
//! Each completion is kept (buffer id and length) and the socket reported
//! readable; the network layer then takes the datagrams
//! (`Registry::take_datagrams`), copying each out, and the buffer goes back
//! to the ring at once. A receive that finds no buffer (`ENOBUFS`) ends;
//! it is armed again, counted, once buffers are back, and the datagrams
//! wait in the socket meanwhile: none is lost to it. Their sends go
//! through the ring too: the driver hands over a batch of prepared messages
//! (GSO runs as on `sendmmsg`), queued as linked `sendmsg`s (a failed one
//! cancels those after it, which the driver queues again: order holds);
//! the batch, payloads included, is kept until each message has completed,
//! then handed back with the results. Those sends complete within the very
//! `io_uring_enter` that starts the worker's wait, so a finished batch ends
//! the wait only if the driver asked for it (it had more to send) or with
//! the next other event, within a millisecond: not a turn of the loop per
//! batch just to count it. TCP connections are received the same way, by
//! a multishot `recv` each into the same buffer rings (`receive.rs`: a
//! completion of no bytes is the peer's end of stream, an error ends the
//! reads), their chunks taken in order, and sent the same way (the driver
//! hands over queued buffers as messages sent with `MSG_WAITALL`); listeners
//! are accepted on by a multishot `accept` each, and sockets connected by a
//! `connect` of the ring (`connections.rs`). TUN/TAP devices are read by a
//! multishot `read` (Linux 6.7; a packet per read) and written by linked
//! `writev`s. What the kernel lacks (multishot receives before 6.0, reads
//! before 6.7) is done on readiness by the driver's system calls, as on the
//! other backends, so the whole conformance suite runs on io_uring. Registrations and their changes are queued
//! on the ring and go to the kernel with the next wait, in the same
//! `io_uring_enter`; only a deregistration is handed over at once, since
//! the descriptor is closed right after it.
//!
//! A ring serves the thread that submits to it: the kernel completes a
//! request in that thread's context (task work). So a worker's ring is made
//! disabled (`IORING_SETUP_R_DISABLED`) where the runtime is built, and
//! enabled, and first used, by the worker's own thread; where the kernel has
//! them (Linux 6.1), `SINGLE_ISSUER` and `DEFER_TASKRUN` then let it run
//! completion work only when it waits, never interrupting its other calls
//! (`COOP_TASKRUN` on 5.19 and 6.0; measured, see [`TaskRun`]).
//!
//! `SQPOLL` is an option (`Builder::io_uring_sqpoll`), off by default: a
//! kernel thread per ring polls the submission queue, so that sends and
//! registrations start without a system call, and completion work runs in
//! it (no `DEFER_TASKRUN`, which the kernel refuses with `SQPOLL`). It
//! takes a core of its own while traffic flows, to save `io_uring_enter`s
//! of which a worker still makes one per wait; handing entries over
//! (`Ring::submit_now`) wakes the thread when it sleeps and waits until it
//! took them, so that a descriptor is closed only after its polls and
//! receives were issued.
//!
//! Needs Linux 5.13 (multishot polls); [`probe`] says what is missing on a
//! kernel without it, or where io_uring is disabled or forbidden. Receives
//! by the ring need Linux 6.0; the probe tries one, and without them UDP
//! sockets are read on readiness.
//!
//! Over 500 lines: about 850 of code, the rest unit tests. The ring's
//! state, its polls, the poller and the registry all work on it, so they
//! stay together; the receives (`receive.rs`), the sends (`send.rs`), the
//! accepts (`connections.rs`, with connects), the buffer rings (`buffers.rs`) and the ring's
//! setup and probe (`setup.rs`) have files of their own.

mod buffers;
mod connections;
mod receive;
mod send;
mod setup;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use rustc_hash::FxBuildHasher;

use super::{
    Datagram, Interest, Outgoing, Poller, PollerOptions, Readiness, Registry, Taken, Waker, check,
};
use buffers::Group;
use connections::{Accept, Connecting};
use receive::{Kind, Receive};
use send::Sending;
pub(crate) use setup::probe;
use setup::{build_ring, build_sqpoll_ring, probed, unsupported};

/// Submission queue entries: registrations and their changes queued between
/// two waits (the queue is handed to the kernel early when it fills).
const ENTRIES: u32 = 256;

/// Completion queue entries: readiness of this many sources in one wait
/// before the kernel keeps the rest for the next (it drops none).
const CQ_ENTRIES: u32 = 4096;

/// How long [`Ring::hand_over`] waits for the `SQPOLL` thread to take the
/// queued entries before it calls it an error.
const HAND_OVER_WITHIN: Duration = Duration::from_secs(5);

/// The `user_data` of the waker's poll.
const WAKER: u64 = u64::MAX;

/// The `user_data` of cancellations, whose completions say nothing.
const REMOVAL: u64 = u64::MAX - 1;

/// `IORING_ENTER_GETEVENTS` (the kernel's ABI): an `io_uring_enter` that
/// also runs the ring's completion work, which `DEFER_TASKRUN` keeps for it.
const ENTER_GETEVENTS: u32 = 1;

/// What a descriptor is watched for, and the generation of the poll that
/// watches it: completions of an earlier poll of the same descriptor (one
/// removed, or replaced by a change of interest) are told apart by it.
#[derive(Debug, Clone, Copy)]
struct Armed {
    token: usize,
    interest: Interest,
    generation: u32,
}

/// A poll's `user_data`: its descriptor and generation. Descriptors are not
/// negative, so it is never [`WAKER`] or [`REMOVAL`].
fn user_data(fd: RawFd, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(fd.unsigned_abs())
}

/// The descriptor and generation of a [`user_data`] (its tag bits, if
/// any, taken off first); `RawFd::MAX`, which no descriptor is, if the
/// descriptor bits do not fit one.
fn fd_and_generation(data: u64) -> (RawFd, u32) {
    let fd = RawFd::try_from(data & u64::from(u32::MAX)).unwrap_or(RawFd::MAX);
    (fd, (data >> 32) as u32)
}

/// The bit that tells a multishot receive's `user_data` from a poll's.
const RECEIVE: u64 = 1 << 31;

/// A multishot receive's `user_data`: its descriptor (below 2^31), the
/// [`RECEIVE`] bit and its generation. Never [`WAKER`] or [`REMOVAL`]:
/// their descriptor bits would be 2^31 - 1 or 2^31 - 2, which no
/// descriptor reaches (the kernel's `nr_open` stops 64 below 2^31).
fn receive_data(fd: RawFd, generation: u32) -> u64 {
    user_data(fd, generation) | RECEIVE
}

/// The bit that tells a send's `user_data`: generations stay below 2^30
/// ([`Ring::next_generation`]), so polls' and receives' never have it.
const SEND: u64 = 1 << 63;

/// The bit that tells a multishot accept's `user_data` from a poll's or a
/// receive's (whose generations stay below 2^30); a send's may have it
/// too, so [`SEND`] is looked at first.
const ACCEPT: u64 = 1 << 62;

/// The bits that tell a connect's `user_data`: [`ACCEPT`] and [`RECEIVE`]
/// together, which neither an accept's nor a receive's has; looked at
/// before either.
const CONNECT: u64 = ACCEPT | RECEIVE;

/// The `user_data` of message `index` of the batch of generation
/// `generation` (24 bits of it) sent on `fd` (one batch per socket at a
/// time): a completion of an earlier batch on a descriptor since closed
/// and reused is told apart by the generation. Never [`WAKER`] or
/// [`REMOVAL`]: their descriptor bits would be 2^31 - 1, which no
/// descriptor reaches.
fn send_data(fd: RawFd, generation: u32, index: usize) -> u64 {
    SEND | (u64::from(generation & 0x00ff_ffff) << 39)
        | (u64::from(fd.unsigned_abs()) << 8)
        | (index as u64 & 0xff)
}

/// The poll events asked for an interest. Errors and hang-ups are always
/// reported.
fn poll_events(interest: Interest) -> u32 {
    let mut events = 0;
    if interest.readable {
        events |= libc::POLLIN | libc::POLLRDHUP;
    }
    if interest.writable {
        events |= libc::POLLOUT;
    }
    u32::from(events.cast_unsigned())
}

/// A poll completion's events as the contract's readiness: a hang-up or an
/// error reads as both readable and writable, for the owner's next call to
/// report it.
fn readiness(token: usize, events: u32) -> Readiness {
    let has = |bits: libc::c_short| events & u32::from(bits.cast_unsigned()) != 0;
    let hung_up = has(libc::POLLHUP);
    let error = has(libc::POLLERR);
    Readiness {
        token,
        readable: has(libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP) || hung_up,
        writable: has(libc::POLLOUT) || hung_up || error,
        closed: error || hung_up || has(libc::POLLRDHUP),
    }
}

/// A worker's ring and what it watches; shared by the poller and its
/// registry, both used by the worker's thread only.
struct Ring {
    ring: IoUring,
    /// The ring was enabled by the thread that uses it, and the waker's poll
    /// queued.
    enabled: bool,
    sources: HashMap<RawFd, Armed, FxBuildHasher>,
    generation: u32,
    waker: Arc<OwnedFd>,
    /// Descriptors whose multishot poll ended (the kernel may end one, on an
    /// overflowing completion queue for one): armed again after a reap.
    ended: Vec<RawFd>,
    /// Multishot receives are made here (the kernel has them).
    receives_supported: bool,
    /// Multishot reads too (Linux 6.7): devices are read by the ring.
    reads_supported: bool,
    /// UDP sockets the ring receives for.
    receives: HashMap<RawFd, Receive, FxBuildHasher>,
    /// Receive buffers, one group per payload size asked for. Declared
    /// after `ring`, so that the ring is closed first when both drop.
    groups: Vec<Group>,
    /// Receives of sockets since deregistered that have yet to post their
    /// last completion (a cancelled one still does), with their buffer
    /// group: the buffers they fill go straight back.
    retired: HashMap<u64, usize, FxBuildHasher>,
    /// Sockets whose receive ended for want of buffers and waits for one
    /// to come back to its group.
    starved: Vec<RawFd>,
    /// The batches being sent, by socket.
    sendings: HashMap<RawFd, Sending, FxBuildHasher>,
    /// Listeners the ring accepts for.
    accepts: HashMap<RawFd, Accept, FxBuildHasher>,
    /// Sockets the ring connects.
    connects: HashMap<RawFd, Connecting, FxBuildHasher>,
    /// Accepts of listeners since closed, by `user_data`, until their last
    /// completion (what they accept meanwhile is closed).
    closing_accepts: std::collections::HashSet<u64, FxBuildHasher>,
    /// The addresses of connects given up on, by `user_data`, until their
    /// completions come.
    abandoned: HashMap<u64, Box<socket2::SockAddr>, FxBuildHasher>,
    /// Readiness reaped outside a wait (while a deregistration waited for
    /// its sends), for the next wait to report.
    deferred: Vec<Readiness>,
    /// A kernel thread takes the queued entries (`SQPOLL`): handing them
    /// over means waking it if it sleeps, and waiting until it took them.
    sqpoll: bool,
}

impl Ring {
    /// A ring (not yet enabled) and the waker of its poller.
    fn new(ring: IoUring) -> io::Result<(Ring, UringWaker)> {
        // SAFETY: `eventfd` returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let waker = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let sqpoll = ring.params().is_setup_sqpoll();
        let ring = Ring {
            sqpoll,
            ring,
            enabled: false,
            sources: HashMap::default(),
            generation: 0,
            waker: Arc::clone(&waker),
            ended: Vec::new(),
            receives_supported: false,
            reads_supported: false,
            receives: HashMap::default(),
            groups: Vec::new(),
            retired: HashMap::default(),
            starved: Vec::new(),
            sendings: HashMap::default(),
            accepts: HashMap::default(),
            connects: HashMap::default(),
            closing_accepts: std::collections::HashSet::default(),
            abandoned: HashMap::default(),
            deferred: Vec::new(),
        };
        Ok((ring, UringWaker(waker)))
    }

    /// Enables the ring for the calling thread (the worker's), on its first
    /// use, and queues the waker's poll.
    fn enable(&mut self) -> io::Result<()> {
        if !self.enabled {
            self.ring.submitter().register_enable_rings()?;
            self.enabled = true;
            self.arm_waker()?;
        }
        Ok(())
    }

    /// Hands the queued entries to the kernel and runs the completion work
    /// it has, without waiting. With `SQPOLL`, returns once the kernel's
    /// polling thread has taken every entry (a poll or a receive then
    /// holds its file: the descriptor may be closed).
    fn submit_now(&mut self) -> io::Result<()> {
        if self.sqpoll {
            return self.hand_over();
        }
        let queued = u32::try_from(self.ring.submission().len()).unwrap_or(u32::MAX);
        // SAFETY: no argument is passed (a null pointer of size 0).
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
        }?;
        Ok(())
    }

    /// `SQPOLL`: wakes the polling thread if it sleeps, and waits until it
    /// has taken every queued entry (it takes them within microseconds once
    /// awake; [`HAND_OVER_WITHIN`] bounds the wait).
    fn hand_over(&mut self) -> io::Result<()> {
        let give_up = Instant::now() + HAND_OVER_WITHIN;
        loop {
            self.ring.submit()?;
            if self.ring.submission().is_empty() {
                return Ok(());
            }
            if Instant::now() > give_up {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "io_uring's SQPOLL thread took no queued entry for {HAND_OVER_WITHIN:?}"
                    ),
                ));
            }
            std::thread::yield_now();
        }
    }

    /// Queues `entry`, handing the queue to the kernel first if it is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the entries queued here point to no memory of ours
            // (polls, receives into registered buffer rings, accepts,
            // cancellations), or to memory kept until their completion (a
            // connect's address, in `connects` or `abandoned`).
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.submit_now()?;
        }
    }

    /// The next generation, below 2^30 so that no poll's or receive's
    /// `user_data` has the [`SEND`] or the [`ACCEPT`] bit.
    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1) & (u32::MAX >> 2);
        self.generation
    }

    /// Queues a multishot poll of `fd` for `armed`.
    fn arm(&mut self, fd: RawFd, armed: Armed) -> io::Result<()> {
        let entry = opcode::PollAdd::new(types::Fd(fd), poll_events(armed.interest))
            .multi(true)
            .build()
            .user_data(user_data(fd, armed.generation));
        self.push(&entry)
    }

    /// Queues the cancellation of the poll of `fd` of `generation`. A
    /// cancellation, not a `POLL_REMOVE`: a removal that meets the poll while
    /// its completion is under way fails (`EALREADY`) and leaves it armed,
    /// holding its file open after the descriptor is closed.
    fn disarm(&mut self, fd: RawFd, generation: u32) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(user_data(fd, generation))
            .build()
            .user_data(REMOVAL);
        self.push(&entry)
    }

    /// Queues the waker's poll.
    fn arm_waker(&mut self) -> io::Result<()> {
        let entry = opcode::PollAdd::new(
            types::Fd(self.waker.as_raw_fd()),
            u32::from(libc::POLLIN.cast_unsigned()),
        )
        .multi(true)
        .build()
        .user_data(WAKER);
        self.push(&entry)
    }

    /// Takes every completion: one [`Readiness`] per source that became
    /// ready (several completions of one source merged), appended to
    /// `ready`; polls that ended are armed again. The waker's completions
    /// only end the wait. Returns whether anything calls for the worker
    /// now: all but a finished batch of sends nobody asked for yet (see
    /// [`UringPoller::wait`]).
    fn reap(&mut self, ready: &mut Vec<Readiness>) -> io::Result<bool> {
        let start = ready.len();
        let mut prompt = !self.deferred.is_empty();
        ready.append(&mut self.deferred);
        let mut waker_ended = false;
        let mut receiving = Receiving {
            receives: &mut self.receives,
            groups: &mut self.groups,
            retired: &mut self.retired,
            sendings: &mut self.sendings,
            accepts: &mut self.accepts,
            connects: &mut self.connects,
            abandoned: &mut self.abandoned,
            closing_accepts: &mut self.closing_accepts,
        };
        for completion in self.ring.completion() {
            let data = completion.user_data();
            let more = cqueue::more(completion.flags());
            match data {
                WAKER => {
                    waker_ended |= !more;
                    prompt = true;
                    continue;
                }
                REMOVAL => continue,
                _ if data & SEND != 0 => {
                    prompt |= receiving.sent(&completion, ready);
                    continue;
                }
                _ if data & CONNECT == CONNECT => {
                    prompt |= receiving.connected(&completion, ready);
                    continue;
                }
                _ if data & ACCEPT != 0 => {
                    prompt |= receiving.accepted(&completion, ready);
                    continue;
                }
                _ if data & RECEIVE != 0 => {
                    prompt |= receiving.completed(&completion, ready);
                    continue;
                }
                _ => {}
            }
            let (fd, generation) = fd_and_generation(data);
            let Some(armed) = self.sources.get(&fd).filter(|a| a.generation == generation) else {
                continue; // A poll since removed or replaced.
            };
            if !more {
                self.ended.push(fd);
            }
            match u32::try_from(completion.result()) {
                Ok(events) => ready.push(readiness(armed.token, events)),
                // Cancelled: the kernel ended the poll (armed again below).
                Err(_) if completion.result() == -libc::ECANCELED => continue,
                // The poll failed: the owner's next read says why.
                Err(_) => ready.push(Readiness {
                    token: armed.token,
                    readable: true,
                    writable: true,
                    closed: true,
                }),
            }
            prompt = true;
        }
        if waker_ended {
            self.arm_waker()?;
        }
        for index in 0..self.ended.len() {
            let fd = self.ended[index];
            if let Some(armed) = self.sources.get(&fd).copied() {
                let armed = Armed {
                    generation: self.next_generation(),
                    ..armed
                };
                self.sources.insert(fd, armed);
                self.arm(fd, armed)?;
            }
        }
        self.ended.clear();
        merge(ready, start);
        Ok(prompt)
    }
}

/// The receiving state of a [`Ring`], borrowed apart from its queues while
/// they are read.
struct Receiving<'a> {
    receives: &'a mut HashMap<RawFd, Receive, FxBuildHasher>,
    groups: &'a mut Vec<Group>,
    retired: &'a mut HashMap<u64, usize, FxBuildHasher>,
    sendings: &'a mut HashMap<RawFd, Sending, FxBuildHasher>,
    accepts: &'a mut HashMap<RawFd, Accept, FxBuildHasher>,
    connects: &'a mut HashMap<RawFd, Connecting, FxBuildHasher>,
    abandoned: &'a mut HashMap<u64, Box<socket2::SockAddr>, FxBuildHasher>,
    closing_accepts: &'a mut std::collections::HashSet<u64, FxBuildHasher>,
}

impl Ring {
    /// Ends what the ring does for `fd` itself (its sends, receive, accept
    /// or connect; its poll is the caller's), every step whatever the
    /// others did; returns the first error, or whether `fd` had any.
    fn end_requests(&mut self, fd: RawFd) -> io::Result<bool> {
        let sent = self.end_sends(fd);
        let received = self.end_receive(fd);
        let accepted = self.end_accept(fd);
        let connecting = self.end_connect(fd);
        sent?;
        Ok(received? | accepted? | connecting?)
    }

    /// Cancels every receive and waits (a second at most) for their last
    /// completions, so that the kernel writes into no buffer after the
    /// ring is gone; returns whether it could make sure.
    fn quiesce(&mut self) -> bool {
        let fds: Vec<RawFd> = (self.sendings.keys())
            .chain(self.receives.keys())
            .chain(self.connects.keys())
            .chain(self.accepts.keys())
            .copied()
            .collect();
        for fd in fds {
            if self.end_requests(fd).is_err() {
                return false;
            }
        }
        let give_up = Instant::now() + Duration::from_secs(1);
        let mut ready = Vec::new();
        while !self.retired.is_empty()
            || !self.abandoned.is_empty()
            || !self.closing_accepts.is_empty()
        {
            if Instant::now() >= give_up
                || self.enter(Some(give_up)).is_err()
                || self.reap(&mut ready).is_err()
            {
                return false;
            }
            ready.clear();
        }
        true
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.groups.is_empty()
            && self.sendings.is_empty()
            && self.connects.is_empty()
            && self.abandoned.is_empty()
            && self.accepts.is_empty()
            && self.closing_accepts.is_empty()
        {
            return;
        }
        // A ring used by another thread than the worker's (it cannot be
        // entered from here) or a receive that would not end: the buffers
        // are left allocated rather than risk the kernel writing into
        // freed memory.
        if !(self.enabled && self.quiesce()) {
            for group in self.groups.drain(..) {
                std::mem::forget(group);
            }
            for (_, sending) in self.sendings.drain() {
                std::mem::forget(sending.outgoing);
            }
            for (_, connecting) in self.connects.drain() {
                std::mem::forget(connecting.addr);
            }
            for (_, addr) in self.abandoned.drain() {
                std::mem::forget(addr);
            }
        }
    }
}

/// Merges the readiness appended to `ready` from `start` on so that each
/// token appears once.
fn merge(ready: &mut Vec<Readiness>, start: usize) {
    if ready.len() - start < 2 {
        return;
    }
    ready[start..].sort_unstable_by_key(|readiness| readiness.token);
    let mut end = start;
    for index in start..ready.len() {
        let next = ready[index];
        if end > start && ready[end - 1].token == next.token {
            let kept = &mut ready[end - 1];
            kept.readable |= next.readable;
            kept.writable |= next.writable;
            kept.closed |= next.closed;
        } else {
            ready[end] = next;
            end += 1;
        }
    }
    ready.truncate(end);
}

fn lock(ring: &Mutex<Ring>) -> MutexGuard<'_, Ring> {
    // A panic while the ring was held left it as consistent as any call
    // does: the ring itself is the kernel's.
    ring.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct UringPoller {
    ring: Arc<Mutex<Ring>>,
}

/// Wakes a [`UringPoller`]: a write to the `eventfd` its ring polls.
pub(crate) struct UringWaker(Arc<OwnedFd>);

impl Waker for UringWaker {
    fn wake(&self) -> io::Result<()> {
        let fd = self.0.as_raw_fd();
        let one = 1u64.to_ne_bytes();
        loop {
            // SAFETY: `one` is 8 readable bytes; `fd` is the eventfd this
            // waker owns a share of.
            let written = unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
            if written == 8 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => {}
                // The counter is full (after 2^64 - 2 wakes): empty it; the
                // poll has long fired.
                io::ErrorKind::WouldBlock => {
                    let mut count = [0u8; 8];
                    // SAFETY: `count` is 8 writable bytes.
                    unsafe { libc::read(fd, count.as_mut_ptr().cast(), count.len()) };
                }
                _ => return Err(error),
            }
        }
    }
}

impl Poller for UringPoller {
    type Waker = UringWaker;

    fn new(options: &PollerOptions) -> io::Result<(Self, UringWaker)> {
        let setup = probed().map_err(unsupported)?;
        let ring = match options.sqpoll {
            Some(idle) => build_sqpoll_ring(idle)?,
            None => build_ring(setup)?,
        };
        let (mut ring, waker) = Ring::new(ring)?;
        ring.receives_supported = setup.receives;
        ring.reads_supported = setup.reads;
        let poller = UringPoller {
            ring: Arc::new(Mutex::new(ring)),
        };
        Ok((poller, waker))
    }

    fn registry(&self) -> io::Result<Box<dyn Registry>> {
        Ok(Box::new(UringRegistry(Arc::clone(&self.ring))))
    }

    /// Waits as the contract says, with one liberty: a batch of sends
    /// that finished while nobody waited for it (the owner had nothing
    /// more to send) ends the wait only with the next other event, or
    /// after [`SETTLE_WITHIN`]. The sends a worker hands over complete in
    /// the very `io_uring_enter` that starts its wait; ending the wait for
    /// them would cost a turn of the loop per batch, only to count them.
    fn wait(&mut self, deadline: Option<Instant>, ready: &mut Vec<Readiness>) -> io::Result<()> {
        let mut ring = lock(&self.ring);
        let ring = &mut *ring;
        ring.enable()?;
        let mut settle_by: Option<Instant> = None;
        loop {
            let start = ready.len();
            let until = match (deadline, settle_by) {
                (Some(deadline), Some(settle)) => Some(deadline.min(settle)),
                (deadline, settle) => deadline.or(settle),
            };
            ring.enter(until)?;
            let prompt = ring.reap(ready)?;
            let now = Instant::now();
            if prompt || ready.len() == start || until.is_some_and(|until| now >= until) {
                return Ok(());
            }
            // Only finished sends: wait on, a little.
            settle_by.get_or_insert(now + SETTLE_WITHIN);
        }
    }
}

/// How long a finished batch of sends nobody waits for may go unreported
/// while the worker sleeps (its datagrams are counted then).
const SETTLE_WITHIN: Duration = Duration::from_millis(1);

impl Ring {
    /// One `io_uring_enter`: hands the queued entries over and waits for a
    /// completion until `deadline` (`None`: no deadline); does not wait when
    /// completions are already there or the deadline has passed.
    fn enter(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let pending = !self.ring.completion().is_empty();
        let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let waited = match left {
            // Completions are waiting, or the deadline has passed: hand the
            // queued registrations over without waiting (with `SQPOLL`,
            // waking the polling thread if it sleeps, not waiting for it).
            _ if pending || left.is_some_and(|left| left.is_zero()) => {
                if self.sqpoll {
                    self.ring.submit().map(|_| 0)
                } else {
                    self.submit_now().map(|()| 0)
                }
            }
            Some(left) => {
                let timeout = types::Timespec::from(left);
                self.ring
                    .submitter()
                    .submit_with_args(1, &types::SubmitArgs::new().timespec(&timeout))
            }
            None => self.ring.submit_and_wait(1),
        };
        match waited {
            Ok(_) => Ok(()),
            // The deadline, or a signal: a wakeup like any other.
            Err(error)
                if error.raw_os_error() == Some(libc::ETIME)
                    || error.kind() == io::ErrorKind::Interrupted =>
            {
                Ok(())
            }
            // The completion queue overflowed: reap it, and the kernel
            // passes on what it kept at the next wait.
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Registers sources with a [`UringPoller`].
pub(crate) struct UringRegistry(Arc<Mutex<Ring>>);

fn not_registered(fd: RawFd) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("descriptor {fd} is not registered"),
    )
}

impl Registry for UringRegistry {
    fn register(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        check(token, interest)?;
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let mut ring = lock(&self.0);
        ring.enable()?;
        if ring.sources.contains_key(&fd) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let armed = Armed {
            token,
            interest,
            generation: ring.next_generation(),
        };
        ring.sources.insert(fd, armed);
        ring.arm(fd, armed)
    }

    fn reregister(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        check(token, interest)?;
        let mut ring = lock(&self.0);
        ring.enable()?;
        if let Some(receive) = ring.receives.get_mut(&fd) {
            // The receive is the readability: a poll watches writability
            // alone, while it is asked for.
            receive.token = token;
            let watched = ring.sources.get(&fd).copied();
            return match (watched, interest.writable) {
                (Some(old), false) => {
                    ring.sources.remove(&fd);
                    ring.disarm(fd, old.generation)
                }
                (Some(old), true) => {
                    let armed = Armed {
                        token,
                        interest: Interest::WRITE,
                        generation: ring.next_generation(),
                    };
                    ring.sources.insert(fd, armed);
                    ring.disarm(fd, old.generation)?;
                    ring.arm(fd, armed)
                }
                (None, true) => {
                    let armed = Armed {
                        token,
                        interest: Interest::WRITE,
                        generation: ring.next_generation(),
                    };
                    ring.sources.insert(fd, armed);
                    ring.arm(fd, armed)
                }
                (None, false) => Ok(()),
            };
        }
        let old = *ring.sources.get(&fd).ok_or_else(|| not_registered(fd))?;
        let armed = Armed {
            token,
            interest,
            generation: ring.next_generation(),
        };
        ring.sources.insert(fd, armed);
        ring.disarm(fd, old.generation)?;
        ring.arm(fd, armed)
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        let mut ring = lock(&self.0);
        ring.enable()?;
        // Every step, whatever the others did (a later socket may get the
        // number), then the first error.
        let ended = ring.end_requests(fd);
        let polled = match ring.sources.remove(&fd) {
            Some(old) => ring.disarm(fd, old.generation).map(|()| true),
            None => Ok(false),
        };
        let known = matches!(ended, Ok(true)) || matches!(polled, Ok(true));
        ended?;
        if !polled? && !known {
            return Err(not_registered(fd));
        }
        // Handed over, and the cancelled poll completed, now, while `fd` is
        // still open: a poll holds its file open (a closed TCP connection
        // would send no FIN), and one queued but not submitted would reach
        // whatever the number names after the close.
        ring.submit_now()
    }

    fn receive_datagrams(&mut self, fd: RawFd, token: usize, size: usize) -> io::Result<bool> {
        check(token, Interest::READ)?;
        let mut ring = lock(&self.0);
        ring.enable()?;
        ring.start_receive(fd, token, size, Kind::Datagrams)
    }

    fn take_datagrams(
        &mut self,
        fd: RawFd,
        max: usize,
        each: &mut dyn FnMut(Datagram<'_>),
    ) -> io::Result<Taken> {
        lock(&self.0).take(fd, max, each)
    }

    fn receive_stream(&mut self, fd: RawFd, token: usize, chunk: usize) -> io::Result<bool> {
        check(token, Interest::READ)?;
        let mut ring = lock(&self.0);
        ring.enable()?;
        ring.start_receive(fd, token, chunk, Kind::Stream)
    }

    fn receive_packets(&mut self, fd: RawFd, token: usize, size: usize) -> io::Result<bool> {
        check(token, Interest::READ)?;
        let mut ring = lock(&self.0);
        ring.enable()?;
        ring.start_receive(fd, token, size, Kind::Packets)
    }

    fn take_stream(
        &mut self,
        fd: RawFd,
        max: usize,
        each: &mut dyn FnMut(&[u8]),
    ) -> io::Result<Taken> {
        lock(&self.0).take(fd, max, &mut |chunk| each(chunk.payload))
    }

    fn connect_stream(&mut self, fd: RawFd, token: usize, addr: SocketAddr) -> io::Result<bool> {
        check(token, Interest::WRITE)?;
        let mut ring = lock(&self.0);
        ring.enable()?;
        ring.start_connect(fd, token, addr)
    }

    fn take_connected(&mut self, fd: RawFd) -> Option<io::Result<()>> {
        lock(&self.0).take_connected(fd)
    }

    fn accept_connections(&mut self, fd: RawFd, token: usize) -> io::Result<bool> {
        check(token, Interest::READ)?;
        let mut ring = lock(&self.0);
        ring.enable()?;
        ring.start_accept(fd, token)
    }

    fn take_accepted(
        &mut self,
        fd: RawFd,
        max: usize,
        each: &mut dyn FnMut(OwnedFd),
    ) -> io::Result<Taken> {
        lock(&self.0).take_accepted(fd, max, each)
    }

    fn send_messages(
        &mut self,
        fd: RawFd,
        outgoing: Box<dyn Outgoing>,
    ) -> Result<(), Box<dyn Outgoing>> {
        lock(&self.0).send(fd, outgoing)
    }

    fn take_sent(&mut self, fd: RawFd, results: &mut Vec<i32>) -> Option<Box<dyn Outgoing>> {
        lock(&self.0).take_sent(fd, results)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    use super::*;

    fn events(bits: libc::c_short) -> u32 {
        u32::from(bits.cast_unsigned())
    }

    /// An enabled ring that receives, as a worker's, on this thread.
    fn receiving_ring() -> Ring {
        let setup = probed().unwrap();
        assert!(
            setup.receives,
            "this kernel has io_uring but no multishot recvmsg into buffer rings (Linux 6.0)"
        );
        let (mut ring, _waker) = Ring::new(build_ring(setup).unwrap()).unwrap();
        ring.receives_supported = true;
        ring.reads_supported = setup.reads;
        ring.enable().unwrap();
        ring
    }

    /// Enters the ring (20 ms at most) and reaps, again and again, until
    /// `done` — given the ring and every readiness reaped so far — says so,
    /// or 5 s passed; whether `done` said so.
    fn turn_until(ring: &mut Ring, mut done: impl FnMut(&mut Ring, &[Readiness]) -> bool) -> bool {
        let mut ready = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(5);
        while Instant::now() < give_up {
            ring.enter(Some(Instant::now() + Duration::from_millis(20)))
                .unwrap();
            ring.reap(&mut ready).unwrap();
            if done(ring, &ready) {
                return true;
            }
        }
        false
    }

    /// Waits (5 s at most) and reaps until `fd`'s receive has handed out
    /// `want` payloads in all, taking them as they come; returns them.
    fn take_all(ring: &mut Ring, fd: RawFd, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        turn_until(ring, |ring, _| {
            ring.take(fd, usize::MAX, &mut |datagram| {
                assert!(!datagram.truncated);
                got.push(datagram.payload.to_vec());
            })
            .unwrap();
            got.len() >= want
        });
        got
    }

    /// A socket whose datagrams `ring` receives, under `token`, into
    /// buffers so large that their group has the fewest there are; with
    /// that number of buffers. The receive is handed to the kernel.
    fn received_socket(ring: &mut Ring, token: usize) -> (UdpSocket, RawFd, usize) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let fd = socket.as_raw_fd();
        assert!(
            ring.start_receive(fd, token, 1 << 20, Kind::Datagrams)
                .unwrap()
        );
        let count = ring.groups[0].free;
        ring.submit_now().unwrap();
        (socket, fd, count)
    }

    #[test]
    fn a_receive_that_runs_out_of_buffers_waits_for_them_and_loses_nothing() {
        let mut ring = receiving_ring();
        let (socket, fd, count) = received_socket(&mut ring, 5);
        assert_eq!(count, usize::from(buffers::MIN_BUFFERS));
        // Three times as many datagrams as buffers, all before the first
        // reap: the receive fills every buffer and ends (`ENOBUFS`); the
        // rest wait in the socket.
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sent: Vec<Vec<u8>> = (0..3 * count as u32)
            .map(|n| n.to_be_bytes().to_vec())
            .collect();
        for payload in &sent {
            sender
                .send_to(payload, socket.local_addr().unwrap())
                .unwrap();
        }
        let mut ready = Vec::new();
        ring.submit_now().unwrap();
        ring.reap(&mut ready).unwrap();
        assert_eq!(ring.groups[0].free, 0, "every buffer holds a datagram");
        let first = ring.take(fd, usize::MAX, &mut |_| {}).unwrap();
        assert!(first.buffers_ran_out >= 1, "{first:?}");
        assert_eq!(ring.groups[0].free, count);
        let got = take_all(&mut ring, fd, 2 * count);
        assert_eq!(got, sent[count..], "the rest, in order");
        assert!(ring.quiesce());
    }

    #[test]
    fn a_receive_starved_by_another_sockets_buffers_starts_when_they_come_back() {
        let mut ring = receiving_ring();
        let sockets: Vec<UdpSocket> = (0..2)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let (hog, starved) = (sockets[0].as_raw_fd(), sockets[1].as_raw_fd());
        // One group for both: the same size.
        assert!(
            ring.start_receive(hog, 1, 1 << 20, Kind::Datagrams)
                .unwrap()
        );
        assert!(
            ring.start_receive(starved, 2, 1 << 20, Kind::Datagrams)
                .unwrap()
        );
        assert_eq!(ring.groups.len(), 1);
        let count = ring.groups[0].free;
        ring.submit_now().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // The hog's datagrams take every buffer, and are not taken.
        for _ in 0..count + 4 {
            sender
                .send_to(b"hog", sockets[0].local_addr().unwrap())
                .unwrap();
        }
        let mut ready = Vec::new();
        while ring.groups[0].free > 0 {
            ring.submit_now().unwrap();
            ring.reap(&mut ready).unwrap();
        }
        // The other socket's receive finds no buffer, ends, and cannot be
        // armed again yet.
        sender
            .send_to(b"late", sockets[1].local_addr().unwrap())
            .unwrap();
        let give_up = Instant::now() + Duration::from_secs(5);
        while !ring.starved.contains(&starved) && Instant::now() < give_up {
            ring.submit_now().unwrap();
            ring.reap(&mut ready).unwrap();
            ring.take(starved, usize::MAX, &mut |_| panic!("no buffer to be in"))
                .unwrap();
        }
        assert!(ring.starved.contains(&starved), "never starved");
        // The hog's datagrams are taken: their buffers come back, and the
        // starved receive starts and gets its datagram.
        let mut hogged = 0;
        ring.take(hog, usize::MAX, &mut |_| hogged += 1).unwrap();
        assert_eq!(hogged, count);
        assert!(ring.starved.is_empty());
        assert_eq!(take_all(&mut ring, starved, 1), vec![b"late".to_vec()]);
        assert!(ring.quiesce());
    }

    #[test]
    fn a_socket_deregistered_with_datagrams_waiting_gives_every_buffer_back() {
        let mut ring = receiving_ring();
        let (socket, fd, count) = received_socket(&mut ring, 5);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..4 {
            sender
                .send_to(b"kept", socket.local_addr().unwrap())
                .unwrap();
        }
        let mut ready = Vec::new();
        while ring.groups[0].free > count - 4 {
            ring.submit_now().unwrap();
            ring.reap(&mut ready).unwrap();
        }
        assert_eq!(ready.first().map(|ready| ready.token), Some(5));
        // Ended with four datagrams not taken, and the receive still armed.
        assert!(ring.end_receive(fd).unwrap());
        assert_eq!(ring.groups[0].free, count);
        assert!(!ring.retired.is_empty());
        // Its last completion comes in and is let go.
        assert!(ring.quiesce());
        assert!(ring.retired.is_empty());
        // Datagrams for it now reach no one, and fill no buffer.
        sender
            .send_to(b"late", socket.local_addr().unwrap())
            .unwrap();
        ring.submit_now().unwrap();
        ready.clear();
        ring.reap(&mut ready).unwrap();
        assert!(ready.is_empty(), "{ready:?}");
        assert_eq!(ring.groups[0].free, count);
        let error = ring.take(fd, 1, &mut |_| {}).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_datagram_larger_than_its_buffer_is_marked_cut() {
        let mut ring = receiving_ring();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let fd = socket.as_raw_fd();
        assert!(ring.start_receive(fd, 1, 100, Kind::Datagrams).unwrap());
        ring.submit_now().unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Buffers have room for more than asked (rounded up), not for this.
        sender
            .send_to(&[7; 1000], socket.local_addr().unwrap())
            .unwrap();
        sender
            .send_to(&[8; 100], socket.local_addr().unwrap())
            .unwrap();
        let mut seen = Vec::new();
        let mut ready = Vec::new();
        let give_up = Instant::now() + Duration::from_secs(5);
        while seen.len() < 2 && Instant::now() < give_up {
            ring.submit_now().unwrap();
            ring.reap(&mut ready).unwrap();
            ring.take(fd, usize::MAX, &mut |datagram| {
                let from = datagram.name.len();
                seen.push((datagram.truncated, datagram.payload.len(), from));
            })
            .unwrap();
        }
        let name = std::mem::size_of::<libc::sockaddr_in>();
        assert!(
            matches!(seen[0], (true, len, n) if len < 1000 && n == name),
            "{seen:?}"
        );
        assert_eq!(seen[1], (false, 100, name));
        assert!(ring.quiesce());
    }

    #[test]
    fn poll_events_read_as_the_contracts_readiness() {
        let readable = readiness(3, events(libc::POLLIN));
        assert!(readable.readable && !readable.writable && !readable.closed);
        let writable = readiness(3, events(libc::POLLOUT));
        assert!(!writable.readable && writable.writable && !writable.closed);
        // A peer's half close: readable (the read says end of stream), closed.
        let half = readiness(3, events(libc::POLLIN | libc::POLLRDHUP));
        assert!(half.readable && half.closed && !half.writable);
        // A hang-up or an error: both ways, for the owner's next call to say.
        let hung_up = readiness(3, events(libc::POLLHUP));
        assert!(hung_up.readable && hung_up.writable && hung_up.closed);
        let error = readiness(3, events(libc::POLLERR));
        assert!(error.writable && error.closed);
    }

    #[test]
    fn several_completions_of_a_source_make_one_readiness() {
        let at = |token, readable, writable| Readiness {
            token,
            readable,
            writable,
            closed: false,
        };
        // What was there before the wait is left alone.
        let mut ready = vec![at(9, true, false)];
        ready.extend([
            at(2, true, false),
            at(1, false, true),
            at(2, false, true),
            at(1, true, false),
            at(2, true, false),
        ]);
        merge(&mut ready, 1);
        assert_eq!(
            ready,
            vec![at(9, true, false), at(1, true, true), at(2, true, true)]
        );
    }

    /// A connected pair of TCP sockets; the server side's bytes are read
    /// by `ring` in chunks of `chunk`, reported under token 9.
    fn received_stream(ring: &mut Ring, chunk: usize) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        assert!(
            ring.start_receive(server.as_raw_fd(), 9, chunk, Kind::Stream)
                .unwrap()
        );
        ring.submit_now().unwrap();
        (client, server)
    }

    /// Takes chunks of the stream `fd` until it ended or failed (or 5 s
    /// passed): the bytes, and the error if it failed.
    fn take_stream(ring: &mut Ring, fd: RawFd) -> (Vec<u8>, Option<io::Error>) {
        let mut got = Vec::new();
        let mut failed = None;
        let ended = turn_until(ring, |ring, _| {
            let taken = ring.take(fd, 4, &mut |chunk| {
                assert!(chunk.name.is_empty() && !chunk.truncated);
                got.extend_from_slice(chunk.payload);
            });
            match taken {
                Ok(taken) => taken.ended,
                Err(error) => {
                    failed = Some(error);
                    true
                }
            }
        });
        if ended {
            return (got, failed);
        }
        panic!(
            "the stream neither ended nor failed; got {} bytes",
            got.len()
        );
    }

    #[test]
    fn a_stream_is_handed_out_in_order_then_its_end() {
        let mut ring = receiving_ring();
        let (mut client, server) = received_stream(&mut ring, 1000);
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
        client.write_all(&sent).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let (got, error) = take_stream(&mut ring, server.as_raw_fd());
        assert!(error.is_none(), "{error:?}");
        assert!(
            got == sent,
            "{} bytes of {}, or out of order",
            got.len(),
            sent.len()
        );
        // Ended for good: not armed again, and every take says so.
        assert!(!ring.receives[&server.as_raw_fd()].armed);
        let again = ring.take(server.as_raw_fd(), 4, &mut |_| panic!("nothing more"));
        assert!(again.unwrap().ended);
        assert!(ring.end_receive(server.as_raw_fd()).unwrap());
        assert!(ring.quiesce());
    }

    #[test]
    fn a_reset_stream_hands_out_its_bytes_then_the_error_once() {
        let mut ring = receiving_ring();
        let (mut client, server) = received_stream(&mut ring, 1000);
        client.write_all(b"before the reset").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // A zero linger: the close is a reset.
        socket2::SockRef::from(&client)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(client);
        let (got, error) = take_stream(&mut ring, server.as_raw_fd());
        assert_eq!(got, b"before the reset");
        let error = error.expect("the reset, reported");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        // Not read again after a failure.
        let receive = &ring.receives[&server.as_raw_fd()];
        assert!(receive.failed && !receive.armed);
        let again = ring.take(server.as_raw_fd(), 4, &mut |_| panic!("nothing more"));
        assert!(!again.unwrap().ended, "a reset is not an end of stream");
        assert!(ring.end_receive(server.as_raw_fd()).unwrap());
        assert!(ring.quiesce());
    }

    /// A listener whose connections `ring` accepts, under token 3.
    fn accepting_listener(ring: &mut Ring) -> (TcpListener, RawFd) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let fd = listener.as_raw_fd();
        assert!(ring.start_accept(fd, 3).unwrap());
        ring.submit_now().unwrap();
        (listener, fd)
    }

    #[test]
    fn an_accept_hands_out_connections_then_its_error_once_and_waits_for_a_take() {
        let mut ring = receiving_ring();
        let (listener, fd) = accepting_listener(&mut ring);
        let clients: Vec<TcpStream> = (0..3)
            .map(|_| TcpStream::connect(listener.local_addr().unwrap()).unwrap())
            .collect();
        let mut got = Vec::new();
        turn_until(&mut ring, |ring, _| {
            ring.take_accepted(fd, 8, &mut |connection| got.push(connection))
                .unwrap();
            got.len() >= 3
        });
        let mut peers: Vec<_> = got
            .into_iter()
            .map(|connection| TcpStream::from(connection).peer_addr().unwrap())
            .collect();
        let mut wanted: Vec<_> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        peers.sort();
        wanted.sort();
        assert_eq!(peers, wanted);
        // A listener shut down for reading is no longer one: its accept
        // fails (EINVAL) and ends.
        // SAFETY: `fd` is the listener's, open.
        assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_RD) }, 0);
        turn_until(&mut ring, |ring, _| !ring.accepts[&fd].armed);
        let error = ring
            .take_accepted(fd, 8, &mut |_| panic!("no connection"))
            .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{error}");
        // Not armed again by the take that reported it (the owner backs
        // off first), but by the next one.
        assert!(ring.accepts[&fd].held && !ring.accepts[&fd].armed);
        ring.take_accepted(fd, 8, &mut |_| panic!("no connection"))
            .unwrap();
        assert!(ring.accepts[&fd].armed && !ring.accepts[&fd].held);
        assert!(ring.end_accept(fd).unwrap());
        assert!(ring.quiesce());
    }

    /// Enters and reaps until the connect of `fd` has ended (or 5 s).
    fn connected(ring: &mut Ring, fd: RawFd) -> Option<io::Result<()>> {
        let mut result = None;
        turn_until(ring, |ring, ready| {
            result = ring.take_connected(fd);
            if result.is_some() {
                assert!(ready.iter().any(|event| event.token == 4 && event.writable));
            }
            result.is_some()
        });
        result
    }

    fn stream_socket() -> socket2::Socket {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_nonblocking(true).unwrap();
        socket
    }

    #[test]
    fn a_connect_says_how_it_ended_and_one_given_up_on_keeps_its_address_till_its_end() {
        let mut ring = receiving_ring();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let socket = stream_socket();
        assert!(ring.start_connect(socket.as_raw_fd(), 4, open).unwrap());
        assert!(
            ring.take_connected(socket.as_raw_fd()).is_none(),
            "not ended yet"
        );
        connected(&mut ring, socket.as_raw_fd())
            .expect("the connect ended")
            .unwrap();
        assert_eq!(socket.peer_addr().unwrap().as_socket(), Some(open));
        assert!(ring.connects.is_empty(), "taken: the socket is the owner's");
        // A port nobody listens on.
        let closed = {
            let gone = TcpListener::bind("127.0.0.1:0").unwrap();
            gone.local_addr().unwrap()
        };
        let refused = stream_socket();
        assert!(ring.start_connect(refused.as_raw_fd(), 4, closed).unwrap());
        let error = connected(&mut ring, refused.as_raw_fd())
            .expect("the connect ended")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{error}");
        // Given up on at once: its address stays until its completion.
        let abandoned = stream_socket();
        assert!(ring.start_connect(abandoned.as_raw_fd(), 4, open).unwrap());
        assert!(ring.end_connect(abandoned.as_raw_fd()).unwrap());
        assert_eq!(ring.abandoned.len(), 1);
        assert!(ring.quiesce(), "the connect's completion came");
        assert!(ring.abandoned.is_empty() && ring.connects.is_empty());
    }

    #[test]
    fn a_device_is_read_a_packet_per_read_until_it_is_gone() {
        let mut ring = receiving_ring();
        assert!(
            ring.reads_supported,
            "this kernel has no multishot read (IORING_OP_READ_MULTISHOT, Linux 6.7)"
        );
        // A pipe stands in for a device: each read takes what one write put.
        let mut ends = [0; 2];
        // SAFETY: `ends` has room for the two descriptors.
        assert_eq!(
            unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_NONBLOCK) },
            0
        );
        // SAFETY: both were just opened, owned by nothing else.
        let (read, write) =
            unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        let fd = read.as_raw_fd();
        assert!(ring.start_receive(fd, 6, 100, Kind::Packets).unwrap());
        ring.submit_now().unwrap();
        for packet in [&b"first"[..], b"second", b"third"] {
            let mut writer = std::fs::File::from(write.try_clone().unwrap());
            writer.write_all(packet).unwrap();
            let mut got = Vec::new();
            turn_until(&mut ring, |ring, _| {
                ring.take(fd, 8, &mut |chunk| got.push(chunk.payload.to_vec()))
                    .unwrap();
                !got.is_empty()
            });
            assert_eq!(got, vec![packet.to_vec()]);
        }
        // The writing end closed: a read of nothing, the end.
        drop(write);
        let ended = turn_until(&mut ring, |ring, _| {
            ring.take(fd, 8, &mut |_| panic!("nothing more"))
                .unwrap()
                .ended
        });
        assert!(ended);
        assert!(ring.end_receive(fd).unwrap());
        assert!(ring.quiesce());
    }

    #[test]
    fn connections_accepted_for_a_listener_being_closed_are_closed_too() {
        let mut ring = receiving_ring();
        let (listener, fd) = accepting_listener(&mut ring);
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        // The ring accepts it; nobody reaps or takes it.
        ring.enter(Some(Instant::now() + Duration::from_millis(100)))
            .unwrap();
        assert!(ring.end_accept(fd).unwrap());
        assert_eq!(ring.closing_accepts.len(), 1);
        assert!(
            ring.quiesce(),
            "the cancelled accept's last completion came"
        );
        assert!(ring.closing_accepts.is_empty());
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut client, &mut byte) {
            Ok(0) => {}
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => {}
            other => panic!("the accepted connection was left open: {other:?}"),
        }
    }

    #[test]
    fn sqpoll_idle_is_whole_milliseconds_and_never_zero() {
        use super::setup::sqpoll_idle_millis;
        assert_eq!(sqpoll_idle_millis(Duration::ZERO), 1);
        assert_eq!(sqpoll_idle_millis(Duration::from_micros(1)), 1);
        assert_eq!(sqpoll_idle_millis(Duration::from_micros(1500)), 2);
        assert_eq!(sqpoll_idle_millis(Duration::from_millis(5)), 5);
        assert_eq!(sqpoll_idle_millis(Duration::MAX), u32::MAX);
    }

    #[test]
    fn an_sqpoll_ring_hands_entries_over_before_submit_now_returns() {
        let options = PollerOptions {
            sqpoll: Some(Duration::from_millis(1)),
        };
        let (poller, _waker) = UringPoller::new(&options).unwrap();
        let mut ring = lock(&poller.ring);
        ring.enable().unwrap();
        assert!(ring.sqpoll);
        let sockets: Vec<UdpSocket> = (0..8)
            .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for round in 0..20 {
            // Let the polling thread fall asleep now and then: the hand-over
            // must wake it.
            if round % 5 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            for (token, socket) in sockets.iter().enumerate() {
                let armed = Armed {
                    token,
                    interest: Interest::READ,
                    generation: ring.next_generation(),
                };
                ring.sources.insert(socket.as_raw_fd(), armed);
                ring.arm(socket.as_raw_fd(), armed).unwrap();
            }
            ring.submit_now().unwrap();
            assert!(ring.ring.submission().is_empty(), "round {round}");
            for socket in &sockets {
                let old = ring.sources.remove(&socket.as_raw_fd()).unwrap();
                ring.disarm(socket.as_raw_fd(), old.generation).unwrap();
            }
            ring.submit_now().unwrap();
            assert!(ring.ring.submission().is_empty(), "round {round}");
        }
    }

    #[test]
    fn user_data_never_names_the_waker_or_a_cancellation() {
        for (fd, generation) in [(0, 0), (RawFd::MAX, u32::MAX), (7, u32::MAX)] {
            let data = user_data(fd, generation);
            assert!(data != WAKER && data != REMOVAL);
            assert_eq!(data >> 32, u64::from(generation));
            assert_eq!(RawFd::try_from(data & u64::from(u32::MAX)), Ok(fd));
        }
        // The highest descriptor the kernel can hand out (`nr_open` is at
        // most 2^31 - 64), as a receive and as a poll.
        for (fd, generation) in [(0, 0), (i32::MAX - 63, u32::MAX), (7, u32::MAX)] {
            for index in [0, 31, 255] {
                let send = send_data(fd, generation, index);
                assert!(send != WAKER && send != REMOVAL && send & SEND != 0);
                assert_eq!(RawFd::try_from((send >> 8) & (RECEIVE - 1)), Ok(fd));
                assert_eq!(
                    (send >> 39) & 0x00ff_ffff,
                    u64::from(generation & 0x00ff_ffff)
                );
            }
            let receive = receive_data(fd, generation);
            assert!(receive != WAKER && receive != REMOVAL);
            assert!(receive & RECEIVE != 0 && user_data(fd, generation) & RECEIVE == 0);
            assert_eq!(RawFd::try_from(receive & (RECEIVE - 1)), Ok(fd));
        }
        // Generations as the ring makes them (below 2^30): a poll's and a
        // receive's never look like an accept's or a connect's, nor those
        // like each other, and each is read back.
        for (fd, generation) in [(0, 0), (i32::MAX - 63, (1 << 30) - 1), (7, 12345)] {
            let poll = user_data(fd, generation);
            let receive = receive_data(fd, generation);
            let accept = connections::accept_data(fd, generation);
            let connect = connections::connect_data(fd, generation);
            for data in [poll, receive, accept, connect] {
                assert!(data != WAKER && data != REMOVAL && data & SEND == 0);
            }
            assert!(poll & ACCEPT == 0 && receive & ACCEPT == 0);
            assert!(accept & CONNECT != CONNECT && connect & CONNECT == CONNECT);
            assert_eq!((accept & !ACCEPT) >> 32, u64::from(generation));
            assert_eq!(
                RawFd::try_from((connect & !CONNECT) & u64::from(u32::MAX)),
                Ok(fd)
            );
        }
    }
}
