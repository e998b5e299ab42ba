//! The network state of one worker ([`Net`]): its UDP, TCP and TUN tables,
//! the registry that watches them, and the events it produced for tasks.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use super::{
    NetInput, Owned, Source, TcpConnId, TcpEvent, TcpListenerId, TcpOptions, TcpSocket, TunError,
    TunId, TunOpened, TunOptions, UdpBound, UdpError, UdpOptions, UdpPacket, UdpSocketId, driver,
    foreign, tcp, tun, udp,
};
use crate::buf::PacketBuf;
use crate::id::RawId;

/// The network state of one worker: its sockets, the registry that watches
/// them, and the events the worker itself produced for its tasks.
pub(crate) struct Net {
    pub(super) registry: Box<dyn crate::backend::Registry>,
    /// The worker this is, to refuse socket ids of other workers.
    pub(super) worker: u16,
    pub(crate) udp: udp::UdpSockets,
    pub(crate) tcp: tcp::TcpSockets,
    pub(crate) tun: tun::TunDevices,
    /// Events for tasks that the worker produced (a bind's outcome, a send's
    /// failure), delivered in order before the worker moves on.
    pub(crate) local: std::collections::VecDeque<(RawId, NetInput)>,
    /// Scratch space for received datagrams, kept between batches.
    pub(crate) inbound: Vec<(RawId, NetInput)>,
    /// UDP sockets handed over (socket, from, to) while a received batch is
    /// delivered: the rest of the batch is re-owned as it goes.
    pub(crate) handed_over: Vec<(UdpSocketId, RawId, RawId)>,
    /// A received batch is being delivered (hand-overs then re-own the rest).
    pub(crate) delivering_batch: bool,
    /// The I/O of the turn under way.
    pub(super) turn: driver::Turn,
}

impl Net {
    pub(crate) fn new(registry: Box<dyn crate::backend::Registry>, worker: u16) -> Self {
        Net {
            registry,
            worker,
            udp: udp::UdpSockets::new(),
            tcp: tcp::TcpSockets::new(worker),
            tun: tun::TunDevices::default(),
            local: std::collections::VecDeque::new(),
            inbound: Vec::new(),
            handed_over: Vec::new(),
            delivering_batch: false,
            turn: driver::Turn::default(),
        }
    }

    /// Binds a socket and queues the outcome for its task.
    pub(crate) fn udp_bind(
        &mut self,
        socket: UdpSocketId,
        owner: RawId,
        addr: SocketAddr,
        options: &UdpOptions,
        counters: &mut crate::stats::Counters,
    ) {
        let result = self.udp.bind(
            socket,
            owner,
            addr,
            options,
            self.registry.as_mut(),
            |index| Source::Udp(index).token(),
        );
        counters.udp_sockets = self.udp.len() as u64;
        self.local
            .push_back((owner, NetInput::UdpBound(UdpBound { socket, result })));
    }

    /// Queues a datagram; a failure comes back to `from`.
    pub(crate) fn udp_send(
        &mut self,
        from: RawId,
        socket: UdpSocketId,
        to: SocketAddr,
        payload: udp::Payload,
        counters: &mut crate::stats::Counters,
    ) {
        if socket.worker != self.worker {
            counters.udp_send_errors += 1;
            let error = foreign(&socket, socket.worker(), self.worker);
            let data = Some(payload.into_buf());
            let refused = UdpError {
                socket,
                peer: Some(to),
                error,
                data,
            };
            self.local.push_back((from, NetInput::UdpError(refused)));
            return;
        }
        self.udp
            .send(from, socket, to, payload, &mut self.local, counters);
    }

    /// Starts a listener and queues the outcome for its task.
    pub(crate) fn tcp_listen(
        &mut self,
        listener: TcpListenerId,
        owner: RawId,
        addr: SocketAddr,
        options: &TcpOptions,
        counters: &mut crate::stats::Counters,
    ) {
        let result = self
            .tcp
            .listen(listener, owner, addr, options, self.registry.as_mut());
        counters.tcp_sockets = self.tcp.len() as u64;
        self.local.push_back((
            owner,
            NetInput::Tcp(TcpEvent::Listening { listener, result }),
        ));
    }

    /// Starts a connection; `Connected` follows.
    pub(crate) fn tcp_connect(
        &mut self,
        conn: TcpConnId,
        owner: RawId,
        addr: SocketAddr,
        options: &TcpOptions,
        counters: &mut crate::stats::Counters,
    ) {
        self.tcp.connect(
            conn,
            owner,
            addr,
            options,
            self.registry.as_mut(),
            &mut self.local,
        );
        counters.tcp_sockets = self.tcp.len() as u64;
    }

    /// Queues bytes on a connection; a refusal comes back to `from`.
    pub(crate) fn tcp_send(
        &mut self,
        from: RawId,
        conn: TcpConnId,
        data: PacketBuf,
        counters: &mut crate::stats::Counters,
    ) {
        if conn.worker != self.worker {
            counters.tcp_send_rejected += 1;
            let error = foreign(&conn, conn.worker(), self.worker);
            let failed = TcpEvent::SendFailed { conn, data, error };
            self.local.push_back((from, NetInput::Tcp(failed)));
            return;
        }
        self.tcp.send(conn, data, from, &mut self.local, counters);
    }

    /// Whether `socket` (named by the task `from` in a close, a shutdown or
    /// a hand-over) belongs to this worker; if not, the task is told, with
    /// the input of the socket's kind, and nothing is done.
    pub(crate) fn owns(
        &mut self,
        from: RawId,
        socket: Owned,
        counters: &mut crate::stats::Counters,
    ) -> bool {
        let (worker, name): (u16, &dyn fmt::Display) = match &socket {
            Owned::Udp(id) => (id.worker, id),
            Owned::TcpListener(id) => (id.worker, id),
            Owned::TcpConn(id) => (id.worker, id),
            Owned::Tun(id) => (id.worker, id),
        };
        if worker == self.worker {
            return true;
        }
        let error = foreign(name, usize::from(worker), self.worker);
        self.refuse(from, socket, error, counters);
        false
    }

    /// Tells the task `from` that its call on `socket` was refused, with the
    /// error input of the socket's kind, counted.
    pub(crate) fn refuse(
        &mut self,
        from: RawId,
        socket: Owned,
        error: io::Error,
        counters: &mut crate::stats::Counters,
    ) {
        let input = match socket {
            Owned::Udp(socket) => {
                counters.udp_send_errors += 1;
                NetInput::UdpError(UdpError {
                    socket,
                    peer: None,
                    error,
                    data: None,
                })
            }
            Owned::TcpListener(listener) => {
                counters.tcp_errors += 1;
                let socket = TcpSocket::Listener(listener);
                NetInput::Tcp(TcpEvent::Refused { socket, error })
            }
            Owned::TcpConn(conn) => {
                counters.tcp_errors += 1;
                let socket = TcpSocket::Conn(conn);
                NetInput::Tcp(TcpEvent::Refused { socket, error })
            }
            Owned::Tun(tun) => {
                counters.tun_send_errors += 1;
                NetInput::TunError(TunError {
                    tun,
                    error,
                    data: None,
                })
            }
        };
        self.local.push_back((from, input));
    }

    /// Hands `socket` (a UDP socket or a connection) from `from` to `to`.
    pub(crate) fn hand_over(&mut self, socket: Owned, from: RawId, to: RawId) -> io::Result<()> {
        match socket {
            Owned::Udp(socket) => self.udp_hand_over(socket, from, to),
            Owned::TcpConn(conn) => self.tcp_hand_over(conn, from, to),
            Owned::TcpListener(_) | Owned::Tun(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "only UDP sockets and TCP connections can be handed over",
            )),
        }
    }

    /// Hands connection `conn` from `from` to `to`: the connection's events
    /// go to `to` from now on, those already waiting included. Returns why
    /// not when the connection is not open here.
    pub(crate) fn tcp_hand_over(
        &mut self,
        conn: TcpConnId,
        from: RawId,
        to: RawId,
    ) -> Result<(), io::Error> {
        self.tcp.set_owner(conn, from, to)?;
        for (owner, input) in &mut self.local {
            if *owner == from
                && let NetInput::Tcp(
                    TcpEvent::Data { conn: of, .. }
                    | TcpEvent::PeerClosed { conn: of }
                    | TcpEvent::Writable { conn: of }
                    | TcpEvent::Closed { conn: of, .. },
                ) = input
                && *of == conn
            {
                *owner = to;
            }
        }
        Ok(())
    }

    /// Hands UDP socket `socket` from `from` to `to`: its events go to `to`
    /// from now on, those already waiting included (in the worker's queue,
    /// and in the receive batch being delivered).
    pub(crate) fn udp_hand_over(
        &mut self,
        socket: UdpSocketId,
        from: RawId,
        to: RawId,
    ) -> Result<(), io::Error> {
        self.udp.set_owner(socket, from, to)?;
        let reown = |owner: &mut RawId, input: &NetInput| {
            if *owner == from
                && let NetInput::UdpPacket(UdpPacket { socket: of, .. })
                | NetInput::UdpError(UdpError { socket: of, .. }) = input
                && *of == socket
            {
                *owner = to;
            }
        };
        for (owner, input) in &mut self.local {
            reown(owner, input);
        }
        if self.delivering_batch {
            self.handed_over.push((socket, from, to));
        }
        Ok(())
    }

    /// The owner of a received event now: `owner`, unless its socket was
    /// handed over since the event was read.
    pub(crate) fn owner_now(&self, owner: RawId, input: &NetInput) -> RawId {
        if self.handed_over.is_empty() {
            return owner;
        }
        let (NetInput::UdpPacket(UdpPacket { socket, .. })
        | NetInput::UdpError(UdpError { socket, .. })) = input
        else {
            return owner;
        };
        // In the order they were made, so that a socket handed on again
        // goes to its last owner.
        let mut owner = owner;
        for (handed, from, to) in &self.handed_over {
            if handed == socket && *from == owner {
                owner = *to;
            }
        }
        owner
    }

    /// Closes a socket a task owned (the task ended or asked). What was
    /// queued on it is sent first: a UDP socket or a device stops receiving
    /// at once and goes when its queue is empty; a connection closes
    /// gracefully, once its queued bytes are written; a listener stops at
    /// once.
    pub(crate) fn close_owned(
        &mut self,
        owned: Owned,
        now: std::time::Instant,
        counters: &mut crate::stats::Counters,
    ) {
        match owned {
            Owned::Udp(socket) => self.udp.close(socket, self.registry.as_mut()),
            Owned::TcpListener(listener) => {
                self.tcp.close_listener(listener, self.registry.as_mut())
            }
            Owned::TcpConn(conn) => self.tcp.close(conn, now),
            Owned::Tun(tun) => self.tun.close(tun, self.registry.as_mut()),
        }
        counters.udp_sockets = self.udp.len() as u64;
        counters.tcp_sockets = self.tcp.len() as u64;
        counters.tun_devices = self.tun.len() as u64;
    }

    /// Resets a connection at once (`tcp_abort`).
    pub(crate) fn tcp_abort(&mut self, conn: TcpConnId, counters: &mut crate::stats::Counters) {
        self.tcp.abort(conn, self.registry.as_mut(), counters);
        counters.tcp_sockets = self.tcp.len() as u64;
    }

    /// Resets the connections whose graceful close has run out of time, and
    /// accepts again on listeners whose back-off has passed.
    pub(crate) fn expire(
        &mut self,
        now: std::time::Instant,
        counters: &mut crate::stats::Counters,
    ) {
        self.tcp.expire(now, self.registry.as_mut(), counters);
        self.tcp
            .retry_accepts(now, self.registry.as_mut(), &mut self.local, counters);
        self.udp.refresh_drops(now, counters);
        counters.tcp_sockets = self.tcp.len() as u64;
    }

    /// The earliest deadline the network state has (a graceful close that
    /// will give up, an accept to try again, UDP drop counts to read).
    pub(crate) fn next_deadline(&self) -> Option<std::time::Instant> {
        [self.tcp.next_deadline(), self.udp.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether closed sockets are still sending what was queued on them: a
    /// worker shutting down waits for them (within its deadline).
    pub(crate) fn lingering(&self) -> bool {
        self.tcp.lingering() || self.udp.lingering() || self.tun.lingering()
    }

    /// Opens a device and queues the outcome for its task.
    pub(crate) fn tun_open(
        &mut self,
        tun: TunId,
        owner: RawId,
        name: &str,
        options: &TunOptions,
        counters: &mut crate::stats::Counters,
    ) {
        let result = self
            .tun
            .open(tun, owner, name, options, self.registry.as_mut());
        counters.tun_devices = self.tun.len() as u64;
        self.local
            .push_back((owner, NetInput::TunOpened(TunOpened { tun, result })));
    }

    /// Queues a packet for a device; a refusal comes back to `from`.
    pub(crate) fn tun_send(
        &mut self,
        from: RawId,
        tun: TunId,
        data: PacketBuf,
        counters: &mut crate::stats::Counters,
    ) {
        if tun.worker != self.worker {
            counters.tun_send_errors += 1;
            let error = foreign(&tun, tun.worker(), self.worker);
            let refused = TunError {
                tun,
                error,
                data: Some(data),
            };
            self.local.push_back((from, NetInput::TunError(refused)));
            return;
        }
        self.tun.send(from, tun, data, &mut self.local, counters);
    }

    /// Serves a ready TCP source; returns whether it may have more to do.
    pub(crate) fn tcp_ready(
        &mut self,
        source: Source,
        readable: bool,
        writable: bool,
        counters: &mut crate::stats::Counters,
    ) -> bool {
        let more = match source {
            Source::TcpListener(index) => {
                self.tcp
                    .accept(index, self.registry.as_mut(), &mut self.local, counters)
            }
            Source::TcpConn(index) => self.tcp.ready(
                index,
                readable,
                writable,
                self.registry.as_mut(),
                &mut self.local,
                counters,
            ),
            Source::Udp(_) | Source::Tun(_) => false,
        };
        counters.tcp_sockets = self.tcp.len() as u64;
        more
    }

    /// Closes the sending side of `conn` once what is queued has gone, if
    /// `owner` owns it.
    pub(crate) fn tcp_shutdown_write(
        &mut self,
        owner: RawId,
        conn: TcpConnId,
        counters: &mut crate::stats::Counters,
    ) {
        if self.owns(owner, Owned::TcpConn(conn), counters) {
            self.tcp.shutdown_write(conn);
        }
    }

    /// Whether sends are waiting to be handed to the kernel.
    pub(crate) fn has_dirty(&self) -> bool {
        self.udp.has_dirty() || self.tcp.has_dirty() || self.tun.has_dirty()
    }

    /// Hands queued datagrams and bytes to the kernel.
    pub(crate) fn flush(&mut self, counters: &mut crate::stats::Counters) {
        self.udp.flush(
            self.registry.as_mut(),
            |index| Source::Udp(index).token(),
            &mut self.local,
            counters,
        );
        self.tcp
            .flush(self.registry.as_mut(), &mut self.local, counters);
        self.tun
            .flush(self.registry.as_mut(), &mut self.local, counters);
        counters.tcp_sockets = self.tcp.len() as u64;
    }
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("udp_sockets", &self.udp.len())
            .field("local", &self.local.len())
            .finish_non_exhaustive()
    }
}
