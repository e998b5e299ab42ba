//! The mio backend: epoll (kqueue elsewhere) through mio, edge-triggered; the
//! waker is mio's eventfd `Waker`.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Events, Poll, Token};

use super::{Interest, Poller, PollerOptions, Readiness, Registry, WAKER_TOKEN, Waker, check};

/// Events taken from the kernel per wait.
const EVENTS: usize = 1024;

pub(crate) struct MioPoller {
    poll: Poll,
    events: Events,
}

impl Waker for mio::Waker {
    fn wake(&self) -> io::Result<()> {
        mio::Waker::wake(self)
    }
}

fn interest(interest: Interest) -> mio::Interest {
    match (interest.readable, interest.writable) {
        (true, true) => mio::Interest::READABLE | mio::Interest::WRITABLE,
        (false, true) => mio::Interest::WRITABLE,
        _ => mio::Interest::READABLE,
    }
}

impl Poller for MioPoller {
    type Waker = mio::Waker;

    fn new(_: &PollerOptions) -> io::Result<(Self, mio::Waker)> {
        let poll = Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), Token(WAKER_TOKEN))?;
        let poller = MioPoller {
            poll,
            events: Events::with_capacity(EVENTS),
        };
        Ok((poller, waker))
    }

    fn registry(&self) -> io::Result<Box<dyn Registry>> {
        Ok(Box::new(MioRegistry::new(
            self.poll.registry().try_clone()?,
        )))
    }

    fn wait(&mut self, deadline: Option<Instant>, ready: &mut Vec<Readiness>) -> io::Result<()> {
        let timeout = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        match self.poll.poll(&mut self.events, timeout) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => return Ok(()),
            result => result?,
        }
        ready.extend(
            self.events
                .iter()
                .filter(|event| event.token() != Token(WAKER_TOKEN))
                .map(readiness),
        );
        Ok(())
    }
}

/// A mio event as the backend contract's readiness.
pub(crate) fn readiness(event: &mio::event::Event) -> Readiness {
    Readiness {
        token: event.token().0,
        readable: event.is_readable() || event.is_read_closed(),
        writable: event.is_writable() || event.is_write_closed(),
        closed: event.is_error() || event.is_read_closed() || event.is_write_closed(),
    }
}

/// Registers sources with a mio `Poll` (of [`MioPoller`] or the busy-poll
/// backend).
pub(crate) struct MioRegistry(mio::Registry);

impl MioRegistry {
    pub(crate) fn new(registry: mio::Registry) -> Self {
        MioRegistry(registry)
    }
}

impl Registry for MioRegistry {
    fn register(&mut self, fd: RawFd, token: usize, wanted: Interest) -> io::Result<()> {
        check(token, wanted)?;
        self.0
            .register(&mut SourceFd(&fd), Token(token), interest(wanted))
    }

    fn reregister(&mut self, fd: RawFd, token: usize, wanted: Interest) -> io::Result<()> {
        check(token, wanted)?;
        self.0
            .reregister(&mut SourceFd(&fd), Token(token), interest(wanted))
    }

    fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.0.deregister(&mut SourceFd(&fd))
    }
}
