//! The UDP echo: a task that binds one socket and sends every datagram back
//! to its sender in the same buffer, and the worker kind that runs it.

use std::net::SocketAddr;

use sansio::net::{UdpBound, UdpError, UdpOptions, UdpPacket};
use sansio::prelude::*;
use sansio::{Backend, Builder};

/// What an echo task reports.
#[derive(Debug)]
pub enum EchoEvent {
    /// The socket is bound to this address, or could not be.
    Bound(std::io::Result<SocketAddr>),
    /// A send failed (counted in the stats too).
    SendFailed(std::io::Error),
}

/// Echoes every datagram on its socket back to its sender, without copying.
#[sansio::task(output = EchoEvent)]
#[derive(Debug)]
pub struct UdpEcho {
    addr: SocketAddr,
    options: UdpOptions,
}

impl UdpEcho {
    /// An echo bound to `addr` with `options` (use
    /// `UdpOptions::default().reuse_port(true)` for one echo per worker on a
    /// shared port).
    pub fn new(addr: SocketAddr, options: UdpOptions) -> Self {
        UdpEcho { addr, options }
    }
}

#[sansio::task]
impl UdpEcho {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.udp_bind(self.addr, self.options.clone());
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        ctx.emit(EchoEvent::Bound(bound.result));
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
        ctx.udp_send(packet.socket, packet.from, packet.data);
    }

    #[on_input]
    fn failed(&mut self, ctx: &mut Ctx<Self>, error: UdpError) {
        ctx.emit(EchoEvent::SendFailed(error.error));
    }
}

/// The worker kind of the echo.
#[sansio::worker]
#[derive(Debug)]
pub enum EchoWorker {
    /// The echo task.
    Echo(UdpEcho),
}

/// The echo's socket options: `SO_REUSEPORT`, 4 MiB kernel buffers, and
/// the defaults otherwise (GSO on where the kernel has it).
pub fn options() -> UdpOptions {
    UdpOptions::default()
        .reuse_port(true)
        .recv_buffer(4 << 20)
        .send_buffer(4 << 20)
}

/// Starts an echo runtime: `workers` workers, one echo each, all bound to
/// `addr` with [`options`]; returns the runtime and the bound address.
pub fn start(
    addr: SocketAddr,
    workers: usize,
    backend: Backend,
) -> Result<(Runtime<EchoWorker>, SocketAddr), String> {
    start_with(addr, workers, backend, options())
}

/// [`start`] with these socket `options` (`reuse_port` is needed for more
/// than one worker).
pub fn start_with(
    addr: SocketAddr,
    workers: usize,
    backend: Backend,
    options: UdpOptions,
) -> Result<(Runtime<EchoWorker>, SocketAddr), String> {
    let builder = Runtime::<EchoWorker>::builder()
        .workers(workers)
        .backend(backend);
    start_built(builder, workers, addr, options)
}

/// [`start_with`] on a runtime `builder` configured by the caller (for
/// `workers` workers), e.g. with `io_uring_sqpoll`.
pub fn start_built(
    builder: Builder<EchoWorker>,
    workers: usize,
    addr: SocketAddr,
    options: UdpOptions,
) -> Result<(Runtime<EchoWorker>, SocketAddr), String> {
    let runtime = builder
        .thread_name("echo-w")
        .build()
        .map_err(|error| error.to_string())?;
    let mut bound = addr;
    for worker in 0..workers {
        runtime
            .spawn_on(worker, UdpEcho::new(bound, options.clone()))
            .map_err(|error| error.to_string())?;
        match runtime.next_event(std::time::Duration::from_secs(5)) {
            Some(Event::Output {
                output: EchoWorkerOutput::Echo(EchoEvent::Bound(Ok(local))),
                ..
            }) => bound = local,
            Some(Event::Output {
                output: EchoWorkerOutput::Echo(EchoEvent::Bound(Err(error))),
                ..
            }) => return Err(format!("bind {bound}: {error}")),
            other => return Err(format!("no bind result: {other:?}")),
        }
    }
    Ok((runtime, bound))
}
