//! The I/O driver: how a worker's network I/O is done, and the contract
//! between the worker loop and the code that touches sockets.
//!
//! # The contract
//!
//! The worker loop knows tasks, not sockets. Everything that makes a system
//! call on a socket or a device lives behind [`Net`] (this module and its
//! siblings `udp`, `tcp`, `tun`, `sys`) and the [`Poller`] of `backend`;
//! the worker holds them and talks to them in task terms only:
//!
//! - **Sockets and send queues are the driver's.** A task's actions
//!   (`Ctx::udp_bind`, `udp_send`, `tcp_listen`, `tcp_send`, `tun_open`, …)
//!   reach [`Net`] as calls that open, queue or close; nothing is written to
//!   the kernel there. [`Net::flush`] hands what is queued to the kernel, in
//!   batches, when the worker settles (after each input, or each received
//!   batch, has been delivered). A send the kernel refuses comes back as an
//!   event for its task (a `UdpError`, `TcpEvent::SendFailed`, …), never as
//!   an error of the worker.
//! - **Waiting is the poller's.** `Poller::wait(deadline, ready)` sleeps
//!   until a source is ready, a waker fires, or the deadline (the earliest
//!   of [`Net::next_deadline`] and the worker's own) passes, and reports
//!   readiness as opaque tokens. An error other than `EINTR` ends the worker,
//!   reported (`Event::WorkerFailed`).
//! - **Events come back in task terms, one unit at a time.** The worker
//!   hands the readiness to [`Net::begin_io`], then calls [`Net::next_io`]
//!   until it says the turn is over. Each call does one unit of I/O — one
//!   receive batch of a socket, one device read, one serving of a TCP
//!   listener or connection — and leaves its events in a batch (received
//!   datagrams, each in a [`PacketBuf`](crate::buf::PacketBuf) with its
//!   owner) and in [`Net::local`] (everything else: a connection accepted,
//!   bytes read, a send finished or refused, a peer gone). The worker
//!   delivers them to their tasks and settles before asking for the next
//!   unit, so what one batch makes the tasks send leaves before the next is
//!   read, and memory held is one batch's.
//! - **Fairness and leftovers are the driver's.** A socket is read for at
//!   most a fair share of batches per turn; one that may have more is kept
//!   for the next turn, and [`Net::has_leftover`] tells the worker not to
//!   sleep. Timed work of the driver itself (closes that give up, accepts
//!   tried again after `EMFILE`) runs in [`Net::expire`] at
//!   [`Net::next_deadline`].
//!
//! The worker never names a kind of socket, and never calls `recvmmsg`,
//! `sendmmsg`, `accept`, `read` or `write`.
//!
//! # The backends on it
//!
//! - **Readiness (mio, polling, busy-poll).** `wait` reports which sources
//!   became ready (edge-triggered); `next_io` reads each until `EAGAIN`, a
//!   short batch or its fair share, with `recvmmsg` (GRO optional), `read`
//!   and `accept`; `flush` writes with `sendmmsg` (GSO optional) and
//!   `write`, and waits for writability when the kernel is full. Busy-poll
//!   is the same with a zero timeout.
//! - **Completion (io_uring).** The backend owns a ring per worker, and
//!   for UDP sockets, buffer rings the kernel receives into: when a socket
//!   is bound, [`Registry::receive_datagrams`](crate::backend::Registry)
//!   asks the backend to receive it itself (a multishot `recvmsg`), and
//!   from then on to send for it too; the readiness backends decline, and
//!   the socket is registered for readability as before. That, and the
//!   three calls below, are the change the contract took for completion
//!   I/O, made for every backend (default methods that decline): the
//!   worker is unchanged. `wait` (one `io_uring_enter`) hands the queued
//!   entries to the kernel, runs the completions and waits; a completed
//!   receive reports its socket readable, and `next_io` *takes* a batch of
//!   datagrams from the backend (`Registry::take_datagrams`) instead of
//!   calling `recvmmsg`, each copied from the kernel's buffer into a
//!   [`PacketBuf`](crate::buf::PacketBuf), the buffer going back to the
//!   ring at once (a copy of the payload, which costs less than tracking
//!   buffers lent to tasks across threads). `flush` hands a socket's queue
//!   over a batch at a time (`Registry::send_messages`: the same messages,
//!   GSO runs included, as `sendmmsg` would get, as linked `sendmsg`s that
//!   go to the kernel with the next wait); the batch, payloads included,
//!   is the backend's until the kernel is done with it, and comes back
//!   with each message's result (`Registry::take_sent`) to be counted, or
//!   queued again, or refused to the task, as a `sendmmsg` result would
//!   be. Fairness is as on the readiness path. TCP connections are read
//!   the same way (`Registry::receive_stream` when a connection is
//!   accepted or its connect completes: a multishot `recv` into the ring's
//!   buffers; `Registry::take_stream` hands the chunks out in order, then
//!   the peer's end of stream), and their queues sent by
//!   `Registry::send_messages` too (a message per queued buffer, sent whole
//!   with `MSG_WAITALL`, so that linked messages keep the stream's order),
//!   and listeners accepted on by the backend (`Registry::accept_connections`,
//!   `take_accepted`: a multishot `accept`, whose error is reported alone
//!   and which starts again only at the take after the back-off), and
//!   connects made by it (`Registry::connect_stream`, `take_connected`).
//!   TUN/TAP devices too: read by a multishot `read` (`receive_packets`,
//!   a packet per chunk of `take_stream`) and written as `writev`s of the
//!   queued packets (`send_messages` with `Outgoing::writes`).
//! - **Frames (AF_XDP).** The driver owns a UMEM and its fill, completion,
//!   RX and TX rings, bound to one queue of a device. `wait` polls the RX
//!   ring (or sleeps in `poll` on the socket when the ring is empty and
//!   `need_wakeup` is set); `next_io` takes a batch of RX descriptors,
//!   parses Ethernet/IP/UDP in place, and hands each datagram to the task
//!   owning its destination port as a `PacketBuf` over the UMEM frame,
//!   whose frame returns to the fill ring when dropped; `flush` writes
//!   frames into TX descriptors (building the headers) and kicks the
//!   device. Sockets are then table entries (a port and an owner), not
//!   kernel descriptors.
//!
//! In each, the worker's side is the same three calls and the same events.

use std::collections::VecDeque;

use super::{Net, NetInput, Source};
use crate::backend::Readiness;
use crate::id::RawId;
use crate::stats::Counters;

/// Receive batches read from one UDP socket per turn before the others get
/// theirs.
const READS_PER_TURN: usize = 8;

/// One unit of a turn's I/O.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// Read a UDP socket, up to `reads` more batches this turn.
    Udp { index: usize, reads: usize },
    /// Read a TUN/TAP device.
    Tun(usize),
    /// Serve a TCP listener or connection.
    Tcp {
        source: Source,
        readable: bool,
        writable: bool,
    },
}

/// The I/O of the turn under way: what the last wait reported, then what
/// earlier turns left.
#[derive(Debug, Default)]
pub(crate) struct Turn {
    work: VecDeque<Work>,
    /// What was left from earlier turns has been queued already.
    leftovers_queued: bool,
}

impl Net {
    /// Starts a turn of I/O with what the wait reported ready (`ready` is
    /// emptied): sockets that can take sends again are marked for the next
    /// flush, and readable ones are queued for [`Net::next_io`].
    pub(crate) fn begin_io(&mut self, ready: &mut Vec<Readiness>) {
        self.turn.leftovers_queued = false;
        for readiness in ready.drain(..) {
            // A hang-up or an error reads as readable: the read reports it.
            let readable = readiness.readable || readiness.closed;
            match Source::from_token(readiness.token) {
                Some(Source::Udp(index)) => {
                    if readiness.writable {
                        self.udp.writable(index);
                    }
                    if readable {
                        self.turn.work.push_back(Work::Udp {
                            index,
                            reads: READS_PER_TURN,
                        });
                    }
                }
                Some(Source::Tun(index)) => {
                    if readiness.writable {
                        self.tun.writable(index);
                    }
                    if readable {
                        self.turn.work.push_back(Work::Tun(index));
                    }
                }
                Some(source) => self.turn.work.push_back(Work::Tcp {
                    source,
                    readable,
                    writable: readiness.writable,
                }),
                None => {}
            }
        }
    }

    /// Does the next unit of this turn's I/O, leaving received datagrams and
    /// packets in `batch` and every other event in [`Net::local`]; returns
    /// `false`, with nothing done, once the turn is over. Sockets left
    /// readable by earlier turns get their turn after the ready ones.
    pub(crate) fn next_io(
        &mut self,
        batch: &mut Vec<(RawId, NetInput)>,
        counters: &mut Counters,
    ) -> bool {
        let work = match self.turn.work.pop_front() {
            Some(work) => work,
            None if !self.turn.leftovers_queued => {
                self.turn.leftovers_queued = true;
                self.queue_leftovers();
                match self.turn.work.pop_front() {
                    Some(work) => work,
                    None => return false,
                }
            }
            None => return false,
        };
        match work {
            Work::Udp { index, reads } => {
                match self
                    .udp
                    .receive(index, self.registry.as_mut(), batch, counters)
                {
                    Ok(true) if reads > 1 => self.turn.work.push_front(Work::Udp {
                        index,
                        reads: reads - 1,
                    }),
                    Ok(true) => self.udp.unread.push(index),
                    Ok(false) => {}
                    Err((owner, error)) => self.local.push_back((owner, NetInput::UdpError(error))),
                }
            }
            Work::Tun(index) => {
                if self
                    .tun
                    .receive(index, self.registry.as_mut(), batch, counters)
                {
                    self.tun.unread.push(index);
                }
            }
            Work::Tcp {
                source,
                readable,
                writable,
            } => {
                if self.tcp_ready(source, readable, writable, counters) {
                    self.tcp.unserved.push(source);
                }
            }
        }
        true
    }

    /// Queues what earlier turns left: sockets read for their whole share,
    /// devices and connections that may have more.
    fn queue_leftovers(&mut self) {
        let work = &mut self.turn.work;
        work.extend(self.udp.unread.drain(..).map(|index| Work::Udp {
            index,
            reads: READS_PER_TURN,
        }));
        work.extend(self.tun.unread.drain(..).map(Work::Tun));
        work.extend(self.tcp.unserved.drain(..).map(|source| Work::Tcp {
            source,
            readable: true,
            writable: false,
        }));
    }

    /// Whether a socket may still have input for the next turn: the worker
    /// then looks again at once instead of sleeping.
    pub(crate) fn has_leftover(&self) -> bool {
        !self.udp.unread.is_empty() || !self.tun.unread.is_empty() || !self.tcp.unserved.is_empty()
    }
}
