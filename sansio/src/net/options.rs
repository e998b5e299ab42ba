//! How to set up sockets and devices: [`UdpOptions`], [`TcpOptions`],
//! [`TunOptions`], each a builder with documented defaults.

use std::io;
use std::net::Ipv4Addr;

#[cfg(doc)]
use super::{TcpEvent, TunError, TunOpened, UdpError, UdpPacket};

/// The default [`TcpOptions::close_timeout`].
pub const DEFAULT_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How to set up a UDP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpOptions {
    /// `SO_REUSEPORT`: let several sockets (one per worker, say) bind the
    /// same address; the kernel spreads incoming datagrams over them.
    pub reuse_port: bool,
    /// `SO_REUSEADDR`.
    pub reuse_address: bool,
    /// The largest datagram delivered whole (default 2,048 bytes). A larger
    /// one is cut by the kernel: it is counted (`udp_truncated`) and
    /// dropped, never delivered as if complete.
    pub max_datagram: usize,
    /// `SO_RCVBUF`, when set.
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF`, when set.
    pub send_buffer: Option<usize>,
    /// Datagrams queued for sending on this socket while the kernel is not
    /// taking them (default 4,096); a send beyond comes back as an
    /// [`UdpError`].
    pub send_queue: usize,
    /// UDP generic segmentation offload (default on, where the kernel has
    /// it): queued datagrams to one peer of one size (the last may be
    /// shorter) leave as one message the kernel cuts into datagrams, one
    /// trip through the network stack for up to 64 of them. Receivers see
    /// ordinary datagrams. If the kernel or the device refuses a GSO send
    /// (no checksum offload, a segment above the path MTU), the socket falls
    /// back to one datagram per message by itself (counted in
    /// `udp_gso_disabled`).
    pub gso: bool,
    /// UDP generic receive offload (default off): the kernel may hand over
    /// several datagrams from one sender as one message, which the worker
    /// splits into one `UdpPacket` per datagram again, copying each into a
    /// buffer of its own. It pays when peers send bursts with GSO (or a
    /// network card coalesces a fast flow): one trip through the stack per
    /// burst instead of per datagram. For traffic that does not coalesce it
    /// costs a copy per datagram and fewer datagrams per system call. Where
    /// the kernel lacks it (before Linux 5.0) the socket receives as usual.
    pub gro: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            reuse_port: false,
            reuse_address: false,
            max_datagram: crate::buf::DEFAULT_CAPACITY,
            recv_buffer: None,
            send_buffer: None,
            send_queue: 4096,
            gso: true,
            gro: false,
        }
    }
}

impl UdpOptions {
    /// Sets [`UdpOptions::reuse_port`].
    #[must_use]
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.reuse_port = reuse;
        self
    }

    /// Sets [`UdpOptions::reuse_address`].
    #[must_use]
    pub fn reuse_address(mut self, reuse: bool) -> Self {
        self.reuse_address = reuse;
        self
    }

    /// Sets [`UdpOptions::max_datagram`].
    #[must_use]
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        self.max_datagram = bytes;
        self
    }

    /// Sets [`UdpOptions::recv_buffer`].
    #[must_use]
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = Some(bytes);
        self
    }

    /// Sets [`UdpOptions::send_buffer`].
    #[must_use]
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = Some(bytes);
        self
    }

    /// Sets [`UdpOptions::gso`].
    #[must_use]
    pub fn gso(mut self, gso: bool) -> Self {
        self.gso = gso;
        self
    }

    /// Sets [`UdpOptions::gro`].
    #[must_use]
    pub fn gro(mut self, gro: bool) -> Self {
        self.gro = gro;
        self
    }

    /// Sets [`UdpOptions::send_queue`].
    #[must_use]
    pub fn send_queue(mut self, datagrams: usize) -> Self {
        self.send_queue = datagrams;
        self
    }
}

/// How to set up TCP listeners and connections.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpOptions {
    /// `TCP_NODELAY` on connections (default on: a task's sends are already
    /// batched per input).
    pub nodelay: bool,
    /// The most bytes queued for sending on one connection while the kernel
    /// is not taking them (default 1 MiB). A send beyond it comes back as
    /// [`TcpEvent::SendFailed`], and so does every later send until
    /// [`TcpEvent::Writable`].
    pub send_limit: usize,
    /// The size of the buffers connections are read into (default 16 KiB).
    /// On io_uring, where the worker's ring reads connections into buffers
    /// of its own, a chunk is at most 64 KiB whatever this says.
    pub read_chunk: usize,
    /// `SO_REUSEADDR` on listeners (default on, so a restarted server can
    /// bind at once).
    pub reuse_address: bool,
    /// `SO_REUSEPORT` on listeners.
    pub reuse_port: bool,
    /// The listen backlog (default 1,024): connections the kernel completes
    /// and holds until the worker accepts them. At least 1: a listener asked
    /// for with 0 is refused (`TcpEvent::Listening` with an error of kind
    /// `InvalidInput`); values above `i32::MAX` count as `i32::MAX`.
    pub backlog: u32,
    /// How long a graceful close (`tcp_close`, or the task owning the
    /// connection ending) may wait for the queued bytes to be sent before
    /// the connection is reset instead (default 5 s): a peer that stops
    /// reading cannot hold a descriptor and its queue for ever. Counted in
    /// `tcp_closes_aborted`.
    pub close_timeout: std::time::Duration,
    /// `SO_SNDBUF` of connections (a listener's accepted connections take
    /// it from the listener), when set: how much the kernel holds for a
    /// peer before the send queue fills.
    pub send_buffer: Option<usize>,
    /// `SO_RCVBUF` of connections, when set.
    pub recv_buffer: Option<usize>,
    /// The most connections a listener keeps open at once (unlimited when
    /// `None`): one more is accepted and reset at once, counted in
    /// `tcp_over_limit`, so that a flood cannot use up every descriptor.
    pub max_connections: Option<usize>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            nodelay: true,
            send_limit: 1 << 20,
            read_chunk: 16 << 10,
            reuse_address: true,
            reuse_port: false,
            backlog: 1024,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            send_buffer: None,
            recv_buffer: None,
            max_connections: None,
        }
    }
}

impl TcpOptions {
    /// Sets [`TcpOptions::send_limit`].
    #[must_use]
    pub fn send_limit(mut self, bytes: usize) -> Self {
        self.send_limit = bytes;
        self
    }

    /// Sets [`TcpOptions::read_chunk`].
    #[must_use]
    pub fn read_chunk(mut self, bytes: usize) -> Self {
        self.read_chunk = bytes;
        self
    }

    /// Sets [`TcpOptions::nodelay`].
    #[must_use]
    pub fn nodelay(mut self, nodelay: bool) -> Self {
        self.nodelay = nodelay;
        self
    }

    /// Sets [`TcpOptions::reuse_port`].
    #[must_use]
    pub fn reuse_port(mut self, reuse: bool) -> Self {
        self.reuse_port = reuse;
        self
    }

    /// Sets [`TcpOptions::reuse_address`].
    #[must_use]
    pub fn reuse_address(mut self, reuse: bool) -> Self {
        self.reuse_address = reuse;
        self
    }

    /// Sets [`TcpOptions::backlog`].
    #[must_use]
    pub fn backlog(mut self, connections: u32) -> Self {
        self.backlog = connections;
        self
    }

    /// Sets [`TcpOptions::send_buffer`].
    #[must_use]
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = Some(bytes);
        self
    }

    /// Sets [`TcpOptions::recv_buffer`].
    #[must_use]
    pub fn recv_buffer(mut self, bytes: usize) -> Self {
        self.recv_buffer = Some(bytes);
        self
    }

    /// Sets [`TcpOptions::max_connections`].
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// Sets [`TcpOptions::close_timeout`].
    #[must_use]
    pub fn close_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Refuses options a listener cannot be started with (kind
    /// `InvalidInput`), before any socket is made: those of its connections
    /// too.
    pub(crate) fn check_listener(&self) -> io::Result<()> {
        if self.backlog == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TcpOptions::backlog must be at least 1",
            ));
        }
        self.check_connection()
    }

    /// Refuses options a connection cannot work with (kind
    /// `InvalidInput`): a read into no room would look like the peer closing,
    /// and a send limit of nothing would refuse every send.
    pub(crate) fn check_connection(&self) -> io::Result<()> {
        for (value, name) in [
            (self.read_chunk, "TcpOptions::read_chunk"),
            (self.send_limit, "TcpOptions::send_limit"),
        ] {
            if value == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name} must be at least 1"),
                ));
            }
        }
        Ok(())
    }
}

/// Sets `SO_SNDBUF` and `SO_RCVBUF` of `socket` to the sizes asked for, if
/// any (UDP sockets, TCP listeners and connections).
pub(crate) fn set_buffer_sizes(
    socket: &socket2::Socket,
    send: Option<usize>,
    recv: Option<usize>,
) -> io::Result<()> {
    if let Some(bytes) = send {
        socket.set_send_buffer_size(bytes)?;
    }
    if let Some(bytes) = recv {
        socket.set_recv_buffer_size(bytes)?;
    }
    Ok(())
}
/// Whether a device carries IP packets (TUN) or Ethernet frames (TAP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TunMode {
    /// IP packets, without any header in front.
    #[default]
    Tun,
    /// Ethernet frames.
    Tap,
}

/// How to open a TUN/TAP device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunOptions {
    /// TUN or TAP.
    pub mode: TunMode,
    /// The largest packet delivered whole (default 2,048 bytes; set it above
    /// the device's MTU). A larger one is counted and dropped.
    pub max_packet: usize,
    /// Packets queued for writing while the device will not take more
    /// (default 1,024, at least 1); a send beyond comes back as a
    /// [`TunError`].
    pub send_queue: usize,
    /// The device's IPv4 address and prefix length (`10.0.0.1/24` is
    /// `(Ipv4Addr::new(10, 0, 0, 1), 24)`), set when the device opens; the
    /// kernel adds the route to the subnet once the device is up. Default
    /// none: no address is set. IPv6 addresses are not set here (configure
    /// them from outside after [`TunOpened`]); the prefix length is at most
    /// 32.
    pub address: Option<(Ipv4Addr, u8)>,
    /// The device's MTU, set when the device opens (default none: the
    /// kernel's, 1,500). From 1 to 65,535; the kernel refuses values below
    /// the device's minimum (68). [`TunOptions::max_packet`] must be above
    /// it (above it plus 18 bytes of Ethernet and VLAN header for TAP), so
    /// that the largest packet arrives whole.
    pub mtu: Option<u32>,
    /// Whether the device is brought up (`IFF_UP`) when it opens. Default
    /// none: up if [`TunOptions::address`] is set, else left as the kernel
    /// made it (a new device is down). `Some(false)` takes it down even with
    /// an address.
    pub up: Option<bool>,
}

impl Default for TunOptions {
    fn default() -> Self {
        TunOptions {
            mode: TunMode::Tun,
            max_packet: crate::buf::DEFAULT_CAPACITY,
            send_queue: 1024,
            address: None,
            mtu: None,
            up: None,
        }
    }
}

impl TunOptions {
    /// Sets [`TunOptions::mode`].
    #[must_use]
    pub fn mode(mut self, mode: TunMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`TunOptions::max_packet`].
    #[must_use]
    pub fn max_packet(mut self, bytes: usize) -> Self {
        self.max_packet = bytes;
        self
    }

    /// Sets [`TunOptions::send_queue`].
    #[must_use]
    pub fn send_queue(mut self, packets: usize) -> Self {
        self.send_queue = packets;
        self
    }

    /// Sets [`TunOptions::address`]: the device's IPv4 address and the
    /// length of its subnet's prefix (`24` for `255.255.255.0`).
    #[must_use]
    pub fn address(mut self, address: Ipv4Addr, prefix_len: u8) -> Self {
        self.address = Some((address, prefix_len));
        self
    }

    /// Sets [`TunOptions::mtu`].
    #[must_use]
    pub fn mtu(mut self, bytes: u32) -> Self {
        self.mtu = Some(bytes);
        self
    }

    /// Sets [`TunOptions::up`]: bring the device up (`true`) or leave it
    /// down (`false`) when it opens.
    #[must_use]
    pub fn up(mut self, up: bool) -> Self {
        self.up = Some(up);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_public_option_has_a_setter() {
        let udp = UdpOptions::default()
            .reuse_port(true)
            .reuse_address(true)
            .max_datagram(9000)
            .recv_buffer(1 << 20)
            .send_buffer(1 << 21)
            .send_queue(7)
            .gso(false)
            .gro(true);
        let expected = UdpOptions {
            reuse_port: true,
            reuse_address: true,
            max_datagram: 9000,
            recv_buffer: Some(1 << 20),
            send_buffer: Some(1 << 21),
            send_queue: 7,
            gso: false,
            gro: true,
        };
        assert_eq!(udp, expected);

        let tcp = TcpOptions::default()
            .nodelay(false)
            .send_limit(5)
            .read_chunk(6)
            .reuse_address(false)
            .reuse_port(true)
            .backlog(8)
            .close_timeout(std::time::Duration::from_secs(5))
            .send_buffer(1 << 16)
            .recv_buffer(1 << 17)
            .max_connections(9);
        let expected = TcpOptions {
            nodelay: false,
            send_limit: 5,
            read_chunk: 6,
            reuse_address: false,
            reuse_port: true,
            backlog: 8,
            close_timeout: std::time::Duration::from_secs(5),
            send_buffer: Some(1 << 16),
            recv_buffer: Some(1 << 17),
            max_connections: Some(9),
        };
        assert_eq!(tcp, expected);

        let tun = TunOptions::default()
            .mode(TunMode::Tap)
            .max_packet(9100)
            .send_queue(3)
            .address(Ipv4Addr::new(10, 213, 1, 1), 24)
            .mtu(9000)
            .up(false);
        let expected = TunOptions {
            mode: TunMode::Tap,
            max_packet: 9100,
            send_queue: 3,
            address: Some((Ipv4Addr::new(10, 213, 1, 1), 24)),
            mtu: Some(9000),
            up: Some(false),
        };
        assert_eq!(tun, expected);
    }

    #[test]
    fn a_listener_needs_a_backlog() {
        assert!(TcpOptions::default().check_listener().is_ok());
        let error = TcpOptions::default()
            .backlog(0)
            .check_listener()
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("backlog"), "{error}");
    }

    #[test]
    fn a_connection_needs_room_to_read_and_to_send() {
        assert!(TcpOptions::default().check_connection().is_ok());
        for (options, name) in [
            (TcpOptions::default().read_chunk(0), "read_chunk"),
            (TcpOptions::default().send_limit(0), "send_limit"),
        ] {
            for check in [options.check_connection(), options.check_listener()] {
                let error = check.unwrap_err();
                assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
                assert!(error.to_string().contains(name), "{error}");
            }
        }
    }
}
