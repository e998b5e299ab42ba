//! The polling backend: smol-rs/polling, in edge-triggered mode; its deadline
//! goes through a `timerfd`, so timers are precise to the microsecond. Its
//! `notify` is the waker (polling merges repeated notifications itself).

use std::io;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use polling::{Event, Events, PollMode};

use super::{Interest, Poller, PollerOptions, Readiness, Registry, Waker, check};

pub(crate) struct PollingPoller {
    poller: Arc<polling::Poller>,
    events: Events,
}

pub(crate) struct PollingWaker(Arc<polling::Poller>);

impl Waker for PollingWaker {
    fn wake(&self) -> io::Result<()> {
        self.0.notify()
    }
}

fn event(token: usize, interest: Interest) -> Event {
    Event::new(token, interest.readable, interest.writable).with_interrupt()
}

/// The descriptor as polling's source type. Registration's contract (the
/// caller deregisters before closing) keeps it valid while it is used.
fn borrowed(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: `fd` is open for as long as it is registered, by the contract of
    // `Poller::register`/`deregister`; polling only uses it during the call.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

impl Poller for PollingPoller {
    type Waker = PollingWaker;

    fn new(_: &PollerOptions) -> io::Result<(Self, PollingWaker)> {
        let poller = Arc::new(polling::Poller::new()?);
        let waker = PollingWaker(Arc::clone(&poller));
        Ok((
            PollingPoller {
                poller,
                events: Events::new(),
            },
            waker,
        ))
    }

    fn registry(&self) -> io::Result<Box<dyn Registry>> {
        Ok(Box::new(PollingRegistry(Arc::clone(&self.poller))))
    }

    fn wait(&mut self, deadline: Option<Instant>, ready: &mut Vec<Readiness>) -> io::Result<()> {
        // Cleared on every call: polling appends, and a buffer left full would
        // turn every later wait into a spin.
        self.events.clear();
        let result = match deadline {
            Some(deadline) => self.poller.wait_deadline(&mut self.events, deadline),
            None => self.poller.wait(&mut self.events, None),
        };
        match result {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(()),
            result => result?,
        };
        ready.extend(self.events.iter().map(|event| Readiness {
            token: event.key,
            readable: event.readable,
            writable: event.writable,
            closed: event.is_interrupt() || event.is_err().unwrap_or(false),
        }));
        Ok(())
    }
}

/// Registers sources with a [`PollingPoller`].
pub(crate) struct PollingRegistry(Arc<polling::Poller>);

impl Registry for PollingRegistry {
    fn register(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        check(token, interest)?;
        // SAFETY: the caller deregisters `fd` before closing it (the contract
        // of `Registry::register`).
        unsafe {
            self.0
                .add_with_mode(fd, event(token, interest), PollMode::Edge)
        }
    }

    fn reregister(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        check(token, interest)?;
        self.0
            .modify_with_mode(borrowed(fd), event(token, interest), PollMode::Edge)
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.0.delete(borrowed(fd))
    }
}
