//! The busy-poll backend: never sleeps. Its wait asks the kernel for
//! readiness without blocking (`epoll_wait` with a zero timeout, through
//! mio), again and again, until a source is ready, the waker is set or the
//! deadline passes; the waker is a flag, so waking costs no system call.
//!
//! The lowest latency there is, for the price of a full core per worker,
//! busy or idle. It yields to the scheduler every [`YIELD_EVERY`] polls, so
//! that a machine shared with other threads stays usable.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::mio::MioRegistry;
use super::{Poller, PollerOptions, Readiness, Registry, Waker};

/// Polls between yields to the scheduler.
const YIELD_EVERY: u32 = 64;

/// Events taken from the kernel per poll.
const EVENTS: usize = 1024;

pub(crate) struct BusyPoller {
    poll: Poll,
    events: Events,
    woken: Arc<AtomicBool>,
}

/// Sets the flag the spinning wait watches.
pub(crate) struct BusyWaker(Arc<AtomicBool>);

impl Waker for BusyWaker {
    fn wake(&self) -> io::Result<()> {
        self.0.store(true, Ordering::Release);
        Ok(())
    }
}

impl Poller for BusyPoller {
    type Waker = BusyWaker;

    fn new(_: &PollerOptions) -> io::Result<(Self, BusyWaker)> {
        let woken = Arc::new(AtomicBool::new(false));
        let poller = BusyPoller {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS),
            woken: Arc::clone(&woken),
        };
        Ok((poller, BusyWaker(woken)))
    }

    fn registry(&self) -> io::Result<Box<dyn Registry>> {
        Ok(Box::new(MioRegistry::new(
            self.poll.registry().try_clone()?,
        )))
    }

    fn wait(&mut self, deadline: Option<Instant>, ready: &mut Vec<Readiness>) -> io::Result<()> {
        let mut polls = 0u32;
        loop {
            match self.poll.poll(&mut self.events, Some(Duration::ZERO)) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                result => result?,
            }
            ready.extend(self.events.iter().map(super::mio::readiness));
            if !ready.is_empty()
                || self.woken.swap(false, Ordering::AcqRel)
                || deadline.is_some_and(|deadline| Instant::now() >= deadline)
            {
                return Ok(());
            }
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(YIELD_EVERY) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}
