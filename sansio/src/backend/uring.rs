//! The io_uring backend: the worker sleeps in `io_uring_enter`, and every
//! registered source is watched by a multishot `POLL_ADD` on the worker's
//! own ring (edge-triggered, as io_uring polls are unless asked to be
//! level-triggered: a completion per wakeup of the source, as epoll's
//! `EPOLLET`). The deadline is the wait's own timeout (`IORING_ENTER_EXT_ARG`,
//! precise to the microsecond), and the waker an `eventfd` the ring polls
//! like any source.
//!
//! This is the readiness half of the backend: the sockets are still read
//! and written by the driver's system calls (`recvmmsg`, `sendmmsg`, …), so
//! the whole conformance suite runs on io_uring unchanged. Registrations and
//! their changes are queued on the ring and go to the kernel with the next
//! wait, in the same `io_uring_enter`; only a deregistration is handed over
//! at once, since the descriptor is closed right after it.
//!
//! A ring serves the thread that submits to it: the kernel completes a
//! request in that thread's context (task work). So a worker's ring is made
//! disabled (`IORING_SETUP_R_DISABLED`) where the runtime is built, and
//! enabled, and first used, by the worker's own thread; where the kernel has
//! them (Linux 6.1), `SINGLE_ISSUER` and `DEFER_TASKRUN` then let it run
//! completion work only when it waits, never interrupting its other calls.
//!
//! Needs Linux 5.13 (multishot polls); [`probe`] says what is missing on a
//! kernel without it, or where io_uring is disabled or forbidden.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};
use rustc_hash::FxBuildHasher;

use super::{Interest, Poller, Readiness, Registry, Waker, check};

/// Submission queue entries: registrations and their changes queued between
/// two waits (the queue is handed to the kernel early when it fills).
const ENTRIES: u32 = 256;

/// Completion queue entries: readiness of this many sources in one wait
/// before the kernel keeps the rest for the next (it drops none).
const CQ_ENTRIES: u32 = 4096;

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
        let ring = Ring {
            ring,
            enabled: false,
            sources: HashMap::default(),
            generation: 0,
            waker: Arc::clone(&waker),
            ended: Vec::new(),
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
    /// it has, without waiting.
    fn submit_now(&mut self) -> io::Result<()> {
        let queued = u32::try_from(self.ring.submission().len()).unwrap_or(u32::MAX);
        // SAFETY: no argument is passed (a null pointer of size 0).
        unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
        }?;
        Ok(())
    }

    /// Queues `entry`, handing the queue to the kernel first if it is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: the entries queued here (polls of descriptors, and
            // their cancellation) point to no memory of ours.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.submit_now()?;
        }
    }

    fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
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
    /// only end the wait.
    fn reap(&mut self, ready: &mut Vec<Readiness>) -> io::Result<()> {
        let start = ready.len();
        let mut waker_ended = false;
        for completion in self.ring.completion() {
            let data = completion.user_data();
            let more = cqueue::more(completion.flags());
            match data {
                WAKER => {
                    waker_ended |= !more;
                    continue;
                }
                REMOVAL => continue,
                _ => {}
            }
            let fd = RawFd::try_from(data & u64::from(u32::MAX)).unwrap_or(RawFd::MAX);
            let generation = (data >> 32) as u32;
            let Some(armed) = self.sources.get(&fd).filter(|a| a.generation == generation) else {
                continue; // A poll since removed or replaced.
            };
            if !more {
                self.ended.push(fd);
            }
            match u32::try_from(completion.result()) {
                Ok(events) => ready.push(readiness(armed.token, events)),
                // Cancelled: the kernel ended the poll (armed again below).
                Err(_) if completion.result() == -libc::ECANCELED => {}
                // The poll failed: the owner's next read says why.
                Err(_) => ready.push(Readiness {
                    token: armed.token,
                    readable: true,
                    writable: true,
                    closed: true,
                }),
            }
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
        Ok(())
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

/// An error saying that io_uring cannot serve here, and why.
fn unsupported(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_string())
}

/// How rings are made on this kernel, as the probe found.
#[derive(Debug, Clone, Copy)]
struct Setup {
    /// `SINGLE_ISSUER` and `DEFER_TASKRUN` (Linux 6.1).
    deferred: bool,
}

/// Makes a disabled ring (see the module's notes).
fn build_ring(setup: Setup) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(CQ_ENTRIES).setup_r_disabled();
    if setup.deferred {
        builder.setup_single_issuer().setup_defer_taskrun();
    }
    builder
        .build(ENTRIES)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ENOSYS) => {
                unsupported("this kernel has no io_uring (io_uring_setup: ENOSYS)")
            }
            Some(libc::EPERM) => {
                let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                    .map(|value| format!("kernel.io_uring_disabled = {}", value.trim()))
                    .unwrap_or_else(|_| "kernel.io_uring_disabled unreadable".to_owned());
                unsupported(format!(
                    "io_uring_setup was refused (EPERM): io_uring is disabled ({disabled}) \
                 or a seccomp filter forbids it"
                ))
            }
            _ => io::Error::new(error.kind(), format!("io_uring_setup failed: {error}")),
        })
}

/// Whether this kernel can run the io_uring backend, and if not, what is
/// missing; found out once per process, on a thread of its own (the test
/// ring's completion work, and its teardown's, would otherwise interrupt
/// the caller's next blocking call).
pub(crate) fn probe() -> Result<(), String> {
    probed().map(drop)
}

fn probed() -> Result<Setup, String> {
    static PROBED: OnceLock<Result<Setup, String>> = OnceLock::new();
    PROBED
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("sansio-io-uring-probe".to_owned())
                .spawn(|| test_ring().map_err(|error| error.to_string()))
                .map_err(|error| format!("the io_uring probe's thread did not start: {error}"))?
                .join()
                .unwrap_or_else(|_| Err("the io_uring probe panicked".to_owned()))
        })
        .clone()
}

/// Makes a ring as the workers will, and sees it serve a multishot poll.
fn test_ring() -> io::Result<Setup> {
    let mut setup = Setup { deferred: true };
    let ring = match build_ring(setup) {
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            setup.deferred = false;
            build_ring(setup)?
        }
        result => result?,
    };
    if !ring.params().is_feature_ext_arg() {
        return Err(unsupported(
            "io_uring lacks IORING_FEAT_EXT_ARG (a wait with a timeout): Linux 5.11 or later is needed",
        ));
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|error| unsupported(format!("io_uring cannot say its opcodes: {error}")))?;
    for (code, name) in [
        (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(unsupported(format!("io_uring lacks the opcode {name}")));
        }
    }
    let (mut ring, waker) = Ring::new(ring)?;
    ring.enable()?;
    // The waker's poll must be multishot (Linux 5.13): wake once and see
    // that it stays armed.
    waker.wake()?;
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let timeout = types::Timespec::from(give_up.saturating_duration_since(Instant::now()));
        match ring
            .ring
            .submitter()
            .submit_with_args(1, &types::SubmitArgs::new().timespec(&timeout))
        {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if error.raw_os_error() == Some(libc::ETIME) => {
                return Err(unsupported("io_uring never reported a poll of an eventfd"));
            }
            Err(error) => return Err(error),
        }
        if let Some(completion) = ring.ring.completion().next() {
            if completion.user_data() != WAKER || completion.result() < 0 {
                return Err(unsupported(format!(
                    "io_uring polls fail here ({})",
                    io::Error::from_raw_os_error(-completion.result())
                )));
            }
            if !cqueue::more(completion.flags()) {
                return Err(unsupported(
                    "io_uring lacks multishot polls (IORING_POLL_ADD_MULTI): Linux 5.13 or later is needed",
                ));
            }
            return Ok(setup);
        }
    }
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

    fn new() -> io::Result<(Self, UringWaker)> {
        let setup = probed().map_err(unsupported)?;
        let (ring, waker) = Ring::new(build_ring(setup)?)?;
        let poller = UringPoller {
            ring: Arc::new(Mutex::new(ring)),
        };
        Ok((poller, waker))
    }

    fn registry(&self) -> io::Result<Box<dyn Registry>> {
        Ok(Box::new(UringRegistry(Arc::clone(&self.ring))))
    }

    fn wait(&mut self, deadline: Option<Instant>, ready: &mut Vec<Readiness>) -> io::Result<()> {
        let mut ring = lock(&self.ring);
        let ring = &mut *ring;
        ring.enable()?;
        let pending = !ring.ring.completion().is_empty();
        let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let waited = match left {
            // Completions are waiting, or the deadline has passed: hand the
            // queued registrations over without waiting.
            _ if pending => ring.submit_now().map(|()| 0),
            Some(left) if left.is_zero() => ring.submit_now().map(|()| 0),
            Some(left) => {
                let timeout = types::Timespec::from(left);
                ring.ring
                    .submitter()
                    .submit_with_args(1, &types::SubmitArgs::new().timespec(&timeout))
            }
            None => ring.ring.submit_and_wait(1),
        };
        match waited {
            Ok(_) => {}
            // The deadline, or a signal: a wakeup like any other.
            Err(error)
                if error.raw_os_error() == Some(libc::ETIME)
                    || error.kind() == io::ErrorKind::Interrupted => {}
            // The completion queue overflowed: reap it, and the kernel
            // passes on what it kept at the next wait.
            Err(error) if error.raw_os_error() == Some(libc::EBUSY) => {}
            Err(error) => return Err(error),
        }
        ring.reap(ready)
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
        let old = ring.sources.remove(&fd).ok_or_else(|| not_registered(fd))?;
        ring.disarm(fd, old.generation)?;
        // Handed over, and the cancelled poll completed, now, while `fd` is
        // still open: a poll holds its file open (a closed TCP connection
        // would send no FIN), and one queued but not submitted would reach
        // whatever the number names after the close.
        ring.submit_now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bits: libc::c_short) -> u32 {
        u32::from(bits.cast_unsigned())
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

    #[test]
    fn user_data_never_names_the_waker_or_a_cancellation() {
        for (fd, generation) in [(0, 0), (RawFd::MAX, u32::MAX), (7, u32::MAX)] {
            let data = user_data(fd, generation);
            assert!(data != WAKER && data != REMOVAL);
            assert_eq!(data >> 32, u64::from(generation));
            assert_eq!(RawFd::try_from(data & u64::from(u32::MAX)), Ok(fd));
        }
    }
}
