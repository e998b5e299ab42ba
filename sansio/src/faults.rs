//! Fault injection under the socket calls, for tests (feature
//! `fault-injection`).
//!
//! A [`FaultPlan`] given to [`Builder::faults`](crate::Builder::faults)
//! makes the runtime's workers see, at the rates it sets, the failures a
//! real network and kernel produce on a bad day: `EINTR`, `EAGAIN` on a
//! send, `ENOBUFS`, `ECONNRESET`, `EMFILE` at accept, writes that take only
//! part of the bytes, `sendmmsg` calls that send only part of the batch, and
//! `EIO` on a segmented (GSO) send. The runtime must then still deliver every
//! TCP byte in order (or close the connection with the error), count every
//! UDP datagram it could not send or the kernel dropped, and give no task a
//! wrong input; the conformance tests check exactly that, on every backend.
//!
//! Each fault is injected where the kernel can report it while the socket
//! stays usable, so that a correct runtime recovers:
//!
//! | [`Fault`] | error | calls |
//! |---|---|---|
//! | [`Interrupted`](Fault::Interrupted) | `EINTR` | all |
//! | [`WouldBlock`](Fault::WouldBlock) | `EAGAIN` | [`TcpWrite`](Call::TcpWrite), [`UdpSend`](Call::UdpSend) |
//! | [`NoBuffers`](Fault::NoBuffers) | `ENOBUFS` | [`Accept`](Call::Accept), [`UdpSend`](Call::UdpSend), [`UdpRecv`](Call::UdpRecv) |
//! | [`ConnectionReset`](Fault::ConnectionReset) | `ECONNRESET` | [`TcpRead`](Call::TcpRead), [`TcpWrite`](Call::TcpWrite) |
//! | [`TooManyFiles`](Fault::TooManyFiles) | `EMFILE` | [`Accept`](Call::Accept) |
//! | [`ShortWrite`](Fault::ShortWrite) | a write of fewer bytes than asked | [`TcpWrite`](Call::TcpWrite) |
//! | [`PartialBatch`](Fault::PartialBatch) | a `sendmmsg` of fewer messages than asked | [`UdpSend`](Call::UdpSend) |
//! | [`GsoUnsupported`](Fault::GsoUnsupported) | `EIO` on a message of several segments | [`UdpSend`](Call::UdpSend) |
//! | [`OutOfMemory`](Fault::OutOfMemory) | `ENOMEM` | [`Wait`](Call::Wait) |
//!
//! `EAGAIN` is not injected on reads and accepts: with data waiting, Linux
//! never says it, and an edge-triggered poller (as every backend here is)
//! would then wait for the next arrival — a lie no runtime can recover from.
//! For the same reason it is injected on a send only while the runtime is
//! not yet waiting for the socket to become writable: a real `EAGAIN`
//! promises a writability edge when space frees up, an injected one cannot;
//! injected when the runtime starts to wait, it stands for space that freed
//! up at once.
//!
//! One fault is not for recovery but for reporting: `ENOMEM` in the
//! worker's wait ([`Call::Wait`]) ends the worker, which the runtime must
//! report (`Event::WorkerFailed`, then `Error::WorkerFailed` from shutdown)
//! rather than ignore or spin on.
//!
//! The plan is per runtime (each worker thread draws from its own generator,
//! seeded from the plan's seed and the worker's index), so tests in one
//! process do not disturb each other; [`Injected`] counts what was injected,
//! so a test can show its faults happened.
//!
//! ```
//! # #[cfg(feature = "fault-injection")] {
//! use sansio::faults::{Call, Fault, FaultPlan};
//!
//! let plan = FaultPlan::new(7)
//!     .inject(Call::TcpWrite, Fault::ShortWrite, 0.3)
//!     .inject(Call::Accept, Fault::TooManyFiles, 0.1);
//! let injected = plan.injected();
//! // Runtime::<MyWorker>::builder().faults(plan).build()?; … then:
//! assert_eq!(injected.count(Call::Accept, Fault::TooManyFiles), 0);
//! # }
//! ```

// Without the feature only the hooks are used, and they inject nothing.
#![cfg_attr(not(feature = "fault-injection"), allow(dead_code, unreachable_pub))]

use std::io;

/// A socket call the runtime makes, where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// `accept` on a TCP listener.
    Accept,
    /// `read` on a TCP connection.
    TcpRead,
    /// `write` on a TCP connection.
    TcpWrite,
    /// `recvmmsg` on a UDP socket.
    UdpRecv,
    /// `sendmmsg` on a UDP socket.
    UdpSend,
    /// The worker's wait in its poller (`epoll_wait`, or the backend's).
    Wait,
}

/// A fault to inject; see the [module](self) for which calls each applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// `EINTR`: a signal interrupted the call before it did anything.
    Interrupted,
    /// `EAGAIN`: the socket's send buffer is full.
    WouldBlock,
    /// `ENOBUFS`: the kernel is out of buffer space.
    NoBuffers,
    /// `ECONNRESET`: the peer reset the connection.
    ConnectionReset,
    /// `EMFILE`: the process is out of file descriptors.
    TooManyFiles,
    /// The write takes only part of the bytes (at least one).
    ShortWrite,
    /// The `sendmmsg` sends only the first part of the batch (at least one
    /// message).
    PartialBatch,
    /// `EIO` on a message of several segments: the device cannot segment
    /// (no checksum offload). Messages of one datagram go through.
    GsoUnsupported,
    /// `ENOMEM`: the kernel cannot allocate what the wait needs. Not
    /// recoverable by the runtime: the worker ends, reported as failed.
    OutOfMemory,
}

const CALLS: usize = 6;
const FAULTS: usize = 9;

impl Fault {
    const ALL: [Fault; FAULTS] = [
        Fault::Interrupted,
        Fault::WouldBlock,
        Fault::NoBuffers,
        Fault::ConnectionReset,
        Fault::TooManyFiles,
        Fault::ShortWrite,
        Fault::PartialBatch,
        Fault::GsoUnsupported,
        Fault::OutOfMemory,
    ];
}

impl Call {
    const ALL: [Call; CALLS] = [
        Call::Accept,
        Call::TcpRead,
        Call::TcpWrite,
        Call::UdpRecv,
        Call::UdpSend,
        Call::Wait,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl Fault {
    fn index(self) -> usize {
        self as usize
    }

    /// Whether the fault can be injected on `call`.
    pub fn applies_to(self, call: Call) -> bool {
        match self {
            Fault::Interrupted => true,
            Fault::WouldBlock => matches!(call, Call::TcpWrite | Call::UdpSend),
            Fault::NoBuffers => matches!(call, Call::Accept | Call::UdpSend | Call::UdpRecv),
            Fault::ConnectionReset => matches!(call, Call::TcpRead | Call::TcpWrite),
            Fault::TooManyFiles => call == Call::Accept,
            Fault::ShortWrite => call == Call::TcpWrite,
            Fault::PartialBatch | Fault::GsoUnsupported => call == Call::UdpSend,
            Fault::OutOfMemory => call == Call::Wait,
        }
    }

    /// The error the call returns, for the faults that are errors.
    fn error(self) -> Option<io::Error> {
        let errno = match self {
            Fault::Interrupted => libc::EINTR,
            Fault::WouldBlock => libc::EAGAIN,
            Fault::NoBuffers => libc::ENOBUFS,
            Fault::ConnectionReset => libc::ECONNRESET,
            Fault::TooManyFiles => libc::EMFILE,
            Fault::GsoUnsupported => libc::EIO,
            Fault::OutOfMemory => libc::ENOMEM,
            Fault::ShortWrite | Fault::PartialBatch => return None,
        };
        Some(io::Error::from_raw_os_error(errno))
    }
}

#[cfg(feature = "fault-injection")]
pub use plan::{FaultPlan, Injected};

#[cfg(feature = "fault-injection")]
mod plan {
    use std::cell::RefCell;
    use std::fmt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::{CALLS, Call, FAULTS, Fault};

    /// What to inject, on which calls, how often: given to
    /// [`Builder::faults`](crate::Builder::faults).
    #[derive(Clone)]
    pub struct FaultPlan {
        seed: u64,
        /// Per call, its faults and their rates in parts per million.
        rules: [Vec<(Fault, u32)>; CALLS],
        /// Rules that cannot be: refused by `check`.
        invalid: Vec<String>,
        injected: Injected,
    }

    impl fmt::Debug for FaultPlan {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let rules: Vec<_> = Call::ALL
                .iter()
                .flat_map(|&call| {
                    self.rules[call.index()]
                        .iter()
                        .map(move |&(fault, ppm)| (call, fault, f64::from(ppm) / 1e6))
                })
                .collect();
            f.debug_struct("FaultPlan")
                .field("seed", &self.seed)
                .field("rules", &rules)
                .finish()
        }
    }

    impl FaultPlan {
        /// A plan that injects nothing yet; `seed` makes its draws
        /// repeatable (per worker, for the same sequence of calls).
        pub fn new(seed: u64) -> Self {
            FaultPlan {
                seed,
                rules: Default::default(),
                invalid: Vec::new(),
                injected: Injected::default(),
            }
        }

        /// Injects `fault` on a `rate` (0 to 1) of the `call`s. Each of a
        /// call's faults is drawn in the order given; the first drawn is
        /// injected. A fault that does not apply to the call (see
        /// [`Fault::applies_to`]) or a rate outside 0..=1 makes
        /// [`Builder::build`](crate::Builder::build) fail with
        /// [`Error::Config`](crate::Error::Config).
        #[must_use]
        pub fn inject(mut self, call: Call, fault: Fault, rate: f64) -> Self {
            if !fault.applies_to(call) {
                self.invalid
                    .push(format!("{fault:?} cannot be injected on {call:?}"));
            } else if !(0.0..=1.0).contains(&rate) {
                self.invalid.push(format!(
                    "the rate of {fault:?} on {call:?} is {rate}, not in 0..=1"
                ));
            } else {
                // The rate is in 0..=1: parts per million fit a u32.
                let ppm = (rate * 1e6).round() as u32;
                self.rules[call.index()].push((fault, ppm));
            }
            self
        }

        /// The counts of what this plan injected, across all workers.
        pub fn injected(&self) -> Injected {
            self.injected.clone()
        }

        pub(crate) fn check(&self) -> Result<(), String> {
            match self.invalid.first() {
                Some(reason) => Err(format!("fault plan: {reason}")),
                None => Ok(()),
            }
        }
    }

    /// Counts of the faults a [`FaultPlan`] injected, shared with the
    /// runtime's workers: read them while it runs or after.
    #[derive(Clone)]
    pub struct Injected(Arc<[AtomicU64; CALLS * FAULTS]>);

    impl Default for Injected {
        fn default() -> Self {
            Injected(Arc::new(std::array::from_fn(|_| AtomicU64::new(0))))
        }
    }

    impl Injected {
        /// How many times `fault` was injected on `call`.
        pub fn count(&self, call: Call, fault: Fault) -> u64 {
            self.0[call.index() * FAULTS + fault.index()].load(Ordering::Relaxed)
        }

        /// How many faults were injected in all.
        pub fn total(&self) -> u64 {
            self.0
                .iter()
                .map(|count| count.load(Ordering::Relaxed))
                .sum()
        }

        fn add(&self, call: Call, fault: Fault) {
            self.0[call.index() * FAULTS + fault.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    impl fmt::Debug for Injected {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut map = f.debug_map();
            for call in Call::ALL {
                for fault in Fault::ALL {
                    let count = self.count(call, fault);
                    if count > 0 {
                        map.entry(&format_args!("{call:?}/{fault:?}"), &count);
                    }
                }
            }
            map.finish()
        }
    }

    /// A worker thread's plan and generator.
    struct Active {
        rules: [Vec<(Fault, u32)>; CALLS],
        injected: Injected,
        state: u64,
    }

    impl Active {
        /// xorshift64*: plenty for drawing faults.
        fn draw(&mut self) -> u32 {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32 % 1_000_000
        }

        /// The fault drawn for this `call`, among those `allowed`.
        fn pick(&mut self, call: Call, allowed: impl Fn(Fault) -> bool) -> Option<Fault> {
            for index in 0..self.rules[call.index()].len() {
                let (fault, ppm) = self.rules[call.index()][index];
                if allowed(fault) && self.draw() < ppm {
                    self.injected.add(call, fault);
                    return Some(fault);
                }
            }
            None
        }
    }

    thread_local! {
        static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
    }

    /// Whether any runtime of this process was given a plan: until one is,
    /// a socket call costs one relaxed load more, not a thread-local lookup
    /// (the benchmarks are built with the feature, as the tests are).
    static ANY: AtomicBool = AtomicBool::new(false);

    /// Makes this (worker) thread inject what `plan` says.
    pub(crate) fn install(plan: &Option<FaultPlan>, worker: usize) {
        let Some(plan) = plan else {
            return;
        };
        // Never zero (xorshift's fixed point), different per worker.
        let state = (plan.seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
        let active = Active {
            rules: plan.rules.clone(),
            injected: plan.injected.clone(),
            state,
        };
        ACTIVE.with(|slot| *slot.borrow_mut() = Some(active));
        ANY.store(true, Ordering::Relaxed);
    }

    /// A number in 0..1_000_000 from this thread's generator.
    pub(super) fn draw() -> u32 {
        ACTIVE.with(|slot| slot.borrow_mut().as_mut().map_or(0, Active::draw))
    }

    pub(super) fn pick(call: Call, allowed: impl Fn(Fault) -> bool) -> Option<Fault> {
        if !ANY.load(Ordering::Relaxed) {
            return None;
        }
        ACTIVE.with(|slot| slot.borrow_mut().as_mut()?.pick(call, allowed))
    }
}

/// What a worker is given to install: the plan, with the feature on.
#[cfg(feature = "fault-injection")]
pub(crate) type Setup = Option<FaultPlan>;
/// Without the feature: nothing to install.
#[cfg(not(feature = "fault-injection"))]
#[derive(Debug, Clone, Default)]
pub(crate) struct Setup;

#[cfg(feature = "fault-injection")]
pub(crate) use plan::install;

#[cfg(feature = "fault-injection")]
pub(crate) fn check(setup: &Setup) -> Result<(), String> {
    setup.as_ref().map_or(Ok(()), FaultPlan::check)
}

#[cfg(not(feature = "fault-injection"))]
pub(crate) fn install(_: &Setup, _: usize) {}

#[cfg(not(feature = "fault-injection"))]
pub(crate) fn check(_: &Setup) -> Result<(), String> {
    Ok(())
}

/// The error to fail `call` with instead of making it, if one is drawn.
#[inline]
pub(crate) fn error(call: Call) -> Option<io::Error> {
    send_error(call, true)
}

/// The error to fail a send (`call`) with instead of making it, if one is
/// drawn; `EAGAIN` only when the runtime is not `waiting` for writability
/// already (see the module's notes).
#[inline]
pub(crate) fn send_error(call: Call, waiting: bool) -> Option<io::Error> {
    #[cfg(feature = "fault-injection")]
    {
        plan::pick(call, |fault| {
            fault.error().is_some()
                && fault != Fault::GsoUnsupported
                && !(waiting && fault == Fault::WouldBlock)
        })
        .and_then(Fault::error)
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = (call, waiting);
        None
    }
}

/// The error to fail a `sendmmsg` whose first message has several segments
/// with, if one is drawn.
#[inline]
pub(crate) fn gso_error() -> Option<io::Error> {
    #[cfg(feature = "fault-injection")]
    {
        plan::pick(Call::UdpSend, |fault| fault == Fault::GsoUnsupported).and_then(Fault::error)
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        None
    }
}

/// How much of `len` (bytes of a TCP write, messages of a `sendmmsg`) the
/// call is to be given: all of it, or (a short write, a partial batch) a
/// part, at least one.
#[inline]
pub(crate) fn shorten(call: Call, len: usize) -> usize {
    #[cfg(feature = "fault-injection")]
    {
        if len < 2 {
            return len;
        }
        let short = plan::pick(call, |fault| {
            matches!(fault, Fault::ShortWrite | Fault::PartialBatch)
        });
        match short {
            // Somewhere in 1..len, drawn too.
            Some(_) => 1 + plan::draw() as usize % (len - 1),
            None => len,
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = call;
        len
    }
}
