//! A TCP server task the network tests drive, in three modes, and its
//! worker kind.

#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;

use sansio::net::{TcpConnId, TcpEvent, TcpOptions};
use sansio::prelude::*;

/// What the server does with each connection.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Send back what arrives; close when the peer has.
    Echo,
    /// Answer one HTTP/1.1 request: `GET /` with a body of `body_len` bytes
    /// of a known pattern, anything else with an error status; then close.
    Http { body_len: usize },
}

/// What `TcpServer` reports.
#[derive(Debug)]
pub enum TcpOut {
    Listening(io::Result<SocketAddr>),
    Accepted(TcpConnId),
    Connected(io::Result<SocketAddr>),
    Received(Vec<u8>),
    PeerClosed(TcpConnId),
    Closed(Option<io::ErrorKind>),
    /// Every byte of an HTTP response was queued.
    Responded {
        status: u16,
        rejected_sends: u64,
    },
}

/// Makes `TcpServer` connect to this address; what the peer sends is
/// reported as `Received`.
#[derive(Debug)]
pub struct Dial(pub SocketAddr);

/// Makes `TcpServer` finish.
#[derive(Debug)]
pub struct Quit;

/// A byte of the known pattern at `offset`.
pub fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// Per-connection state of an HTTP response being sent.
#[derive(Default)]
struct Response {
    request: Vec<u8>,
    /// Bytes to send, oldest first: the response, then what came back
    /// refused (in order) to send again on `Writable`.
    pending: VecDeque<PacketBuf>,
    responded: bool,
}

#[sansio::task(output = TcpOut)]
pub struct TcpServer {
    addr: SocketAddr,
    options: TcpOptions,
    mode: Mode,
    responses: HashMap<TcpConnId, Response>,
    rejected_sends: u64,
    dialed: Vec<TcpConnId>,
}

impl TcpServer {
    pub fn new(addr: SocketAddr, options: TcpOptions, mode: Mode) -> Self {
        TcpServer {
            addr,
            options,
            mode,
            responses: HashMap::new(),
            rejected_sends: 0,
            dialed: Vec::new(),
        }
    }

    fn respond(&mut self, ctx: &mut Ctx<Self>, conn: TcpConnId, body_len: usize) {
        let Some(response) = self.responses.get_mut(&conn) else {
            return;
        };
        if response.responded || !response.request.windows(4).any(|w| w == b"\r\n\r\n") {
            return;
        }
        response.responded = true;
        let (status, body_len) = if response.request.starts_with(b"GET / ") {
            (200, body_len)
        } else {
            (405, 0)
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n",
            if status == 200 {
                "OK"
            } else {
                "Method Not Allowed"
            }
        );
        response
            .pending
            .push_back(PacketBuf::copy_from(head.as_bytes()));
        for start in (0..body_len).step_by(64 << 10) {
            let chunk: Vec<u8> = (start..(start + (64 << 10)).min(body_len))
                .map(pattern)
                .collect();
            response.pending.push_back(PacketBuf::copy_from(&chunk));
        }
        ctx.emit(TcpOut::Responded {
            status,
            rejected_sends: self.rejected_sends,
        });
        self.pump(ctx, conn);
    }

    /// Sends everything pending and asks for a graceful close: what the
    /// send limit refuses comes back (`SendFailed`), is sent again on
    /// `Writable`, and the close waits for it.
    fn pump(&mut self, ctx: &mut Ctx<Self>, conn: TcpConnId) {
        let Some(response) = self.responses.get_mut(&conn) else {
            return;
        };
        while let Some(chunk) = response.pending.pop_front() {
            ctx.tcp_send(conn, chunk);
        }
        ctx.tcp_close(conn);
    }
}

#[sansio::task]
impl TcpServer {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.tcp_listen(self.addr, self.options.clone());
    }

    #[on_input]
    fn dial(&mut self, ctx: &mut Ctx<Self>, Dial(addr): Dial) {
        let conn = ctx.tcp_connect(addr, self.options.clone());
        self.dialed.push(conn);
    }

    #[on_input]
    fn quit(&mut self, ctx: &mut Ctx<Self>, _: Quit) {
        ctx.finish();
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => ctx.emit(TcpOut::Listening(result)),
            TcpEvent::Accepted { conn, .. } => {
                self.responses.insert(conn, Response::default());
                ctx.emit(TcpOut::Accepted(conn));
            }
            TcpEvent::Connected { result, .. } => ctx.emit(TcpOut::Connected(result)),
            TcpEvent::Data { conn, data } if self.dialed.contains(&conn) => {
                ctx.emit(TcpOut::Received(data.to_vec()));
            }
            TcpEvent::Data { conn, data } => match self.mode {
                Mode::Echo => ctx.tcp_send(conn, data),
                Mode::Http { body_len } => {
                    if let Some(response) = self.responses.get_mut(&conn) {
                        response.request.extend_from_slice(&data);
                    }
                    self.respond(ctx, conn, body_len);
                }
            },
            TcpEvent::PeerClosed { conn } => {
                ctx.emit(TcpOut::PeerClosed(conn));
                if let Mode::Echo = self.mode {
                    ctx.tcp_close(conn);
                }
            }
            TcpEvent::SendFailed { conn, data, error } => {
                assert_eq!(error.kind(), io::ErrorKind::WouldBlock, "{error}");
                self.rejected_sends += 1;
                // Refusals arrive in the order the sends were made.
                if let Some(response) = self.responses.get_mut(&conn) {
                    response.pending.push_back(data);
                }
            }
            TcpEvent::Writable { conn } => self.pump(ctx, conn),
            TcpEvent::Closed { error, .. } => ctx.emit(TcpOut::Closed(error.map(|e| e.kind()))),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[sansio::worker]
pub enum TcpWorker {
    Server(TcpServer),
}
