//! Sockets and devices for tasks: UDP, TCP and TUN/TAP.
//!
//! A task asks through its [`Ctx`](crate::Ctx) (`udp_bind`, `udp_send`,
//! `tcp_listen`, `tun_open`, …); the worker owns the sockets, registers them
//! with its backend, and delivers what happens to them (a bound socket, a
//! datagram, a connection, an error) back to the task as ordinary inputs:
//! [`UdpBound`], [`UdpPacket`], [`UdpError`], [`TcpEvent`], [`TunOpened`],
//! [`TunPacket`], [`TunError`].
//!
//! Which inputs a task must handle is checked at compile time: `udp_bind` is
//! only available to a task with `#[on_input]` handlers for [`UdpBound`],
//! [`UdpPacket`] and [`UdpError`]; `tcp_listen` and `tcp_connect` to one
//! with a handler for [`TcpEvent`]; `tun_open` to one with handlers for the
//! three TUN inputs.
//!
//! ```
//! use std::net::SocketAddr;
//! use sansio::net::{UdpBound, UdpError, UdpOptions, UdpPacket};
//! use sansio::prelude::*;
//!
//! /// Echoes every datagram back to its sender.
//! #[sansio::task]
//! pub struct Echo {
//!     addr: SocketAddr,
//! }
//!
//! #[sansio::task]
//! impl Echo {
//!     #[on_start]
//!     fn start(&mut self, ctx: &mut Ctx<Self>) {
//!         ctx.udp_bind(self.addr, UdpOptions::default());
//!     }
//!
//!     #[on_input]
//!     fn bound(&mut self, _ctx: &mut Ctx<Self>, _bound: UdpBound) {}
//!
//!     #[on_input]
//!     fn packet(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
//!         ctx.udp_send(packet.socket, packet.from, packet.data);
//!     }
//!
//!     #[on_input]
//!     fn error(&mut self, _ctx: &mut Ctx<Self>, _error: UdpError) {}
//! }
//! # fn main() {}
//! ```
//!
//! Layout: the public types are in `ids.rs` (socket ids), `options.rs` and
//! `events.rs`; the worker's side is `sockets.rs` (its tables and
//! registry), `driver.rs` (the I/O driver contract, in prose at its top),
//! `udp.rs`, `tcp.rs` and `tun.rs` (one table per kind), `sys.rs` (the raw
//! batched system calls) and `ifconfig.rs` (device set-up).

use std::fmt;
use std::io;

mod driver;
mod events;
mod ids;
mod ifconfig;
mod options;
mod sockets;
pub(crate) mod sys;
mod table;
pub(crate) mod tcp;
pub(crate) mod tun;
pub(crate) mod udp;

pub(crate) use events::Owned;
#[doc(hidden)]
pub use events::{Adoption, NetInput};
pub use events::{
    TcpEvent, TcpSocket, TunError, TunOpened, TunPacket, UdpBound, UdpError, UdpPacket,
};
pub(crate) use ids::Source;
pub use ids::{TcpConnId, TcpListenerId, TunId, UdpSocketId};
pub(crate) use options::set_buffer_sizes;
pub use options::{DEFAULT_CLOSE_TIMEOUT, TcpOptions, TunMode, TunOptions, UdpOptions};
pub(crate) use sockets::Net;

/// The error for a socket id used on a worker that does not own it.
fn foreign(id: &dyn fmt::Display, owner: usize, here: u16) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{id} belongs to worker {owner}, and this task runs on worker {here}: \
             a socket can only be used on the worker that owns it"
        ),
    )
}
