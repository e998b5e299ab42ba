//! A UDP task the network tests drive, and its worker kind.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use sansio::net::{UdpBound, UdpError, UdpOptions, UdpPacket, UdpSocketId};
use sansio::prelude::*;

use super::PATIENCE;

/// What `UdpTask` reports.
#[derive(Debug)]
pub enum UdpOut {
    Bound(io::Result<SocketAddr>),
    Packet {
        from: SocketAddr,
        data: Vec<u8>,
    },
    Error {
        kind: io::ErrorKind,
        peer: Option<SocketAddr>,
        returned: Option<Vec<u8>>,
    },
}

/// Commands for `UdpTask`.
#[derive(Debug)]
pub enum Command {
    /// Send these bytes to this address.
    SendTo(SocketAddr, Vec<u8>),
    /// Send these bytes to all of these addresses, as one shared payload.
    SendMany(Vec<SocketAddr>, Vec<u8>),
    /// Send `count` datagrams of one byte each to the address, in one go.
    Burst(SocketAddr, u8),
    /// Send `count` datagrams of `size` bytes to the address, in one go:
    /// datagram `n` is filled with the byte `n`.
    Run {
        to: SocketAddr,
        count: u8,
        size: usize,
    },
    /// Close the socket (and keep running).
    Close,
    /// Finish the task.
    Quit,
}

/// Binds one socket at start; echoes what it receives (or reports it), and
/// reports every outcome and error.
#[sansio::task(output = UdpOut)]
pub struct UdpTask {
    addr: SocketAddr,
    options: UdpOptions,
    echo: bool,
    socket: Option<UdpSocketId>,
}

impl UdpTask {
    /// An echo on `addr`.
    pub fn echo(addr: SocketAddr) -> Self {
        UdpTask::new(addr, UdpOptions::default(), true)
    }

    /// A task that reports what it receives instead of echoing.
    pub fn listener(addr: SocketAddr, options: UdpOptions) -> Self {
        UdpTask::new(addr, options, false)
    }

    pub fn new(addr: SocketAddr, options: UdpOptions, echo: bool) -> Self {
        UdpTask {
            addr,
            options,
            echo,
            socket: None,
        }
    }
}

#[sansio::task]
impl UdpTask {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        self.socket = Some(ctx.udp_bind(self.addr, self.options.clone()));
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        assert_eq!(Some(bound.socket), self.socket);
        ctx.emit(UdpOut::Bound(bound.result));
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
        if self.echo {
            // The received buffer goes straight back out.
            ctx.udp_send(packet.socket, packet.from, packet.data);
        } else {
            ctx.emit(UdpOut::Packet {
                from: packet.from,
                data: packet.data.to_vec(),
            });
        }
    }

    #[on_input]
    fn error(&mut self, ctx: &mut Ctx<Self>, error: UdpError) {
        ctx.emit(UdpOut::Error {
            kind: error.error.kind(),
            peer: error.peer,
            returned: error.data.map(|data| data.to_vec()),
        });
    }

    #[on_input]
    fn command(&mut self, ctx: &mut Ctx<Self>, command: Command) {
        let Some(socket) = self.socket else { return };
        match command {
            Command::SendTo(to, data) => ctx.udp_send(socket, to, PacketBuf::copy_from(&data)),
            Command::SendMany(to, data) => {
                ctx.udp_send_many(socket, &to, PacketBuf::copy_from(&data))
            }
            Command::Burst(to, count) => {
                for n in 0..count {
                    ctx.udp_send(socket, to, PacketBuf::copy_from(&[n]));
                }
            }
            Command::Run { to, count, size } => {
                for n in 0..count {
                    ctx.udp_send(socket, to, PacketBuf::copy_from(&vec![n; size]));
                }
            }
            Command::Close => ctx.udp_close(socket),
            Command::Quit => ctx.finish(),
        }
    }
}

#[sansio::worker]
pub enum Net {
    Udp(UdpTask),
}

/// A local address with a port the system picks.
pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A client socket on loopback with a receive timeout.
pub fn client() -> UdpSocket {
    let socket = UdpSocket::bind(any_port()).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// Receives one datagram on `socket`.
pub fn recv(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 65536];
    let (len, from) = socket
        .recv_from(&mut buf)
        .expect("a datagram within the timeout");
    (buf[..len].to_vec(), from)
}

/// Whether `socket` receives nothing within `wait`.
pub fn silent(socket: &UdpSocket, wait: Duration) -> bool {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 2048];
    let silent = socket.recv_from(&mut buf).is_err();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    silent
}

/// Insists that this kernel has UDP GSO (`UDP_SEGMENT`) and GRO
/// (`UDP_GRO`): the offload tests need them (Linux 5.0 or later), and a test
/// that cannot run fails, saying why, instead of passing.
pub fn require_offload() {
    use std::os::fd::AsRawFd;
    let socket = UdpSocket::bind(any_port()).unwrap();
    let fd = socket.as_raw_fd();
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of their sizes.
    let gso = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&raw mut value).cast(),
            &mut len,
        )
    } == 0;
    let on: libc::c_int = 1;
    // SAFETY: `on` is valid for reads of its size.
    let gro = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&raw const on).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    assert!(
        gso && gro,
        "this kernel lacks UDP GSO or GRO (gso {gso}, gro {gro}): run the tests on Linux 5.0 or later"
    );
}
