//! The server's tasks, on one worker kind ([`Whip`]):
//!
//! - [`Signalling`] (worker 0): the HTTP listener and its connections,
//!   WHIP/WHEP routing, and the directory of streams and sessions. An offer
//!   is answered at once (str0m accepts it here); the peer connection then
//!   moves to a [`Peer`] task on the next worker in turn.
//! - [`Router`] (one per worker): a media UDP socket, all bound to one
//!   address with `SO_REUSEPORT`. A packet goes to the peer whose ICE
//!   username it names (STUN), then to the peer of its source address, on
//!   whatever worker; what a peer sends leaves through its own worker's.
//! - [`Peer`]: one `str0m::Rtc`, publisher or viewer. Its timer follows the
//!   `Rtc`'s timeout; a publisher's media goes out on the bus
//!   (`Topic::Media`), and keyframe requests come back (`Topic::Control`).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sansio::net::{
    TcpConnId, TcpEvent, TcpOptions, UdpBound, UdpError, UdpOptions, UdpPacket, UdpSocketId,
};
use sansio::prelude::*;
use sansio::{Backend, SpawnId};
use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event as RtcEvent, IceConnectionState, Input, Output, Rtc};

use super::http::{Request, RequestReader, Response};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where signalling listens.
    pub http: SocketAddr,
    /// The media UDP socket (and the host candidate).
    pub udp: SocketAddr,
    /// A bearer token every request but `OPTIONS` must carry, if set.
    pub token: Option<String>,
    /// How long an HTTP connection may sit without a whole request.
    pub idle: Duration,
    /// Worker threads; peers are spread over them.
    pub workers: usize,
}

/// A bus channel: a stream's media (its viewers subscribe), or its
/// publisher's control (keyframe requests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Media of the stream.
    Media(Arc<str>),
    /// Requests for the stream's publisher.
    Control(Arc<str>),
}

/// What travels on the bus.
#[derive(Clone)]
pub enum Signal {
    /// A frame (or audio packet) of the stream.
    Media(Arc<MediaData>),
    /// A viewer wants a keyframe.
    KeyframeWanted,
    /// The publisher has gone: the stream has ended.
    Ended,
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::Media(data) => write!(f, "Media({} bytes)", data.data.len()),
            Signal::KeyframeWanted => f.write_str("KeyframeWanted"),
            Signal::Ended => f.write_str("Ended"),
        }
    }
}

/// What the server's tasks report to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Up {
    /// Signalling listens here.
    Http(SocketAddr),
    /// The media socket is bound here.
    Udp(SocketAddr),
    /// A session started.
    SessionStarted {
        /// Its id (in its URL).
        session: u64,
        /// A publisher (WHIP) or a viewer (WHEP).
        publisher: bool,
    },
    /// A session ended.
    SessionEnded {
        /// Its id.
        session: u64,
    },
    /// Something that could not start.
    Failed(String),
}

// ----------------------------------------------------------------------
// Signalling.

/// A session's place in the directory.
#[derive(Debug)]
struct Session {
    stream: Arc<str>,
    publisher: bool,
    /// The peer task, once spawned.
    peer: Option<TaskId<Peer>>,
    /// Ended (DELETE) before its task was spawned: end it when it is.
    hang_up: bool,
    /// The client's ICE ufrag, from its offer: a PATCH naming another is
    /// an ICE restart.
    remote_ufrag: Option<String>,
    /// Trickled candidates that came before its task was spawned.
    trickled: Vec<Candidate>,
}

/// Candidates trickled to a peer (`PATCH` of its session).
#[derive(Debug)]
pub struct Trickle(pub Vec<Candidate>);

/// What a trickle fragment (`application/trickle-ice-sdpfrag`, RFC 8840)
/// asks for.
#[derive(Debug, PartialEq)]
pub enum Fragment {
    /// Candidates for the connection as it is.
    Candidates(Vec<Candidate>),
    /// An ICE restart: new credentials (with this ufrag).
    Restart(String),
}

/// Reads a trickle fragment; `remote_ufrag` is the client's current ICE
/// ufrag. The error is for a `422`.
///
/// # Errors
///
/// A line that is not SDP, or a candidate that does not parse.
pub fn parse_fragment(body: &str, remote_ufrag: Option<&str>) -> Result<Fragment, String> {
    let mut candidates = Vec::new();
    for line in body.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let Some((kind, value)) = line.split_once('=') else {
            return Err(format!("not an SDP line: {line:.60}"));
        };
        if kind.len() != 1 || !kind.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(format!("not an SDP line: {line:.60}"));
        }
        if let Some(ufrag) = value.strip_prefix("ice-ufrag:") {
            if remote_ufrag.is_some_and(|current| current != ufrag) {
                return Ok(Fragment::Restart(ufrag.to_owned()));
            }
        } else if let Some(candidate) = value.strip_prefix("candidate:") {
            let candidate =
                Candidate::from_sdp_string(&format!("candidate:{candidate}")).map_err(|error| {
                    format!("a candidate that does not parse ({error}): {line:.80}")
                })?;
            candidates.push(candidate);
        }
    }
    Ok(Fragment::Candidates(candidates))
}

/// An HTTP connection.
#[derive(Debug, Default)]
struct HttpConn {
    reader: RequestReader,
    /// Response bytes the send limit handed back, to send on `Writable`.
    refused: Vec<PacketBuf>,
    /// The last response said `Connection: close`: writing is shut down,
    /// and what still arrives is read and dropped until the client closes
    /// (or the idle time passes). Closing with unread bytes would reset the
    /// connection and could destroy the response before it is read.
    closing: bool,
}

/// Peer tasks tell signalling when they end.
#[derive(Debug)]
pub struct PeerGone {
    /// The session.
    pub session: u64,
}

/// The signalling server and the directory of streams and sessions.
#[sansio::task(output = Up)]
#[derive(Debug)]
pub struct Signalling {
    config: Config,
    /// The media socket's address: every peer's host candidate.
    media: SocketAddr,
    /// The media sockets' owners, one per worker (by worker index).
    routers: Arc<[TaskId<Router>]>,
    conns: HashMap<TcpConnId, HttpConn>,
    /// Stream → its publisher's session.
    streams: HashMap<Arc<str>, u64>,
    sessions: HashMap<u64, Session>,
    spawning: HashMap<SpawnId, u64>,
    /// Session ids are drawn from this (randomly keyed) hasher over a
    /// counter: a session URL is not guessable from another, so one client
    /// cannot end another's session without the token.
    ids: std::collections::hash_map::RandomState,
    next_session: u64,
    next_worker: usize,
}

impl Signalling {
    /// Signalling for `config`, its peers reaching each other through the
    /// media socket at `media`, which `routers` (one per worker, by worker
    /// index) each have bound.
    pub fn new(config: Config, media: SocketAddr, routers: Vec<TaskId<Router>>) -> Self {
        Signalling {
            config,
            media,
            routers: routers.into(),
            conns: HashMap::new(),
            streams: HashMap::new(),
            sessions: HashMap::new(),
            spawning: HashMap::new(),
            ids: std::collections::hash_map::RandomState::new(),
            next_session: 1,
            next_worker: 0,
        }
    }

    fn send(&mut self, ctx: &mut Ctx<Self>, conn: TcpConnId, response: &Response) {
        ctx.tcp_send(conn, PacketBuf::copy_from(&response.to_bytes()));
        if response.close
            && let Some(state) = self.conns.get_mut(&conn)
        {
            state.closing = true;
            ctx.tcp_shutdown_write(conn);
            ctx.set_timer_for(conn, ctx.now() + self.config.idle);
        }
    }

    /// Answers every whole request `conn` has sent.
    fn serve(&mut self, ctx: &mut Ctx<Self>, conn: TcpConnId) {
        loop {
            let Some(state) = self.conns.get_mut(&conn) else {
                return;
            };
            if state.closing {
                return;
            }
            match state.reader.next_request() {
                Ok(None) => return,
                Ok(Some(request)) => {
                    let close = request.wants_close();
                    let mut response = self.respond(ctx, &request);
                    tracing::debug!(
                        %conn,
                        method = %request.method,
                        path = %request.path,
                        status = response.status,
                        "request"
                    );
                    if close {
                        response = response.closing();
                    }
                    // A new request gets the whole idle time again.
                    ctx.set_timer_for(conn, ctx.now() + self.config.idle);
                    self.send(ctx, conn, &response);
                }
                Err(bad) => {
                    tracing::debug!(%conn, status = bad.status, reason = %bad.reason, "bad request");
                    let response = Response::text(bad.status, bad.reason).closing();
                    self.send(ctx, conn, &response);
                    return;
                }
            }
        }
    }

    /// The response to one request.
    fn respond(&mut self, ctx: &mut Ctx<Self>, request: &Request) -> Response {
        let segments: Vec<&str> = request.path.split('/').skip(1).collect();
        let method = request.method.as_str();
        if method == "OPTIONS" {
            // A CORS preflight carries no credentials.
            return match segments.as_slice() {
                ["whip" | "whep", _] => {
                    Response::status(204).header("Accept-Post", "application/sdp")
                }
                ["session", _] => {
                    Response::status(204).header("Accept-Patch", "application/trickle-ice-sdpfrag")
                }
                _ => Response::status(204),
            };
        }
        if let Some(token) = &self.config.token {
            let expected = format!("Bearer {token}");
            if request.header("authorization") != Some(expected.as_str()) {
                return Response::text(401, "a bearer token is required")
                    .header("WWW-Authenticate", "Bearer");
            }
        }
        match (method, segments.as_slice()) {
            ("GET", ["whip.html"]) => Response::status(200).with_body(
                "text/html; charset=utf-8",
                super::pages::WHIP.as_bytes().to_vec(),
            ),
            ("GET", ["whep.html"]) => Response::status(200).with_body(
                "text/html; charset=utf-8",
                super::pages::WHEP.as_bytes().to_vec(),
            ),
            ("POST", ["whip", stream]) => self.offer(ctx, request, stream, true),
            ("POST", ["whep", stream]) => self.offer(ctx, request, stream, false),
            (_, ["whip" | "whep", _]) => {
                Response::text(405, "POST an SDP offer here").header("Allow", "POST, OPTIONS")
            }
            ("DELETE", ["session", id]) => self.delete(ctx, id),
            ("PATCH", ["session", id]) => self.patch(ctx, request, id),
            (_, ["session", _]) => {
                Response::text(405, "DELETE a session").header("Allow", "DELETE, PATCH, OPTIONS")
            }
            _ => Response::text(404, "not found"),
        }
    }

    fn session(&self, id: &str) -> Option<u64> {
        let id = id.parse().ok()?;
        self.sessions.contains_key(&id).then_some(id)
    }

    /// `POST /whip/{stream}` (publish) or `POST /whep/{stream}` (play).
    fn offer(
        &mut self,
        ctx: &mut Ctx<Self>,
        request: &Request,
        stream: &str,
        publish: bool,
    ) -> Response {
        let content_type = request.header("content-type").unwrap_or_default();
        if !content_type
            .split(';')
            .next()
            .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/sdp"))
        {
            return Response::text(415, "the offer must be application/sdp")
                .header("Accept-Post", "application/sdp");
        }
        if stream.is_empty()
            || stream.len() > 64
            || !stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Response::text(400, "a stream name is 1 to 64 letters, digits, '-' or '_'");
        }
        let live = self.streams.get(stream).copied();
        match (publish, live) {
            (true, Some(_)) => return Response::text(409, "the stream already has a publisher"),
            (false, None) => return Response::text(404, "no such stream (nobody publishes it)"),
            _ => {}
        }
        let Ok(sdp) = std::str::from_utf8(&request.body) else {
            return Response::text(400, "the offer is not UTF-8");
        };
        let offer = match SdpOffer::from_sdp_string(sdp) {
            Ok(offer) => offer,
            Err(error) => return Response::text(400, format!("malformed SDP offer: {error}")),
        };
        if offer.media_lines.is_empty() {
            return Response::text(400, "the offer has no media");
        }
        let mut rtc = Rtc::builder().build(ctx.now());
        match Candidate::host(self.media, "udp") {
            Ok(candidate) => {
                rtc.add_local_candidate(candidate);
            }
            Err(error) => return Response::text(500, format!("no host candidate: {error}")),
        }
        let answer = match rtc.sdp_api().accept_offer(offer) {
            Ok(answer) => answer,
            Err(error) => {
                return Response::text(400, format!("the offer cannot be answered: {error}"));
            }
        };
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let remote_ufrag = sdp
            .lines()
            .find_map(|line| line.trim().strip_prefix("a=ice-ufrag:"))
            .map(str::to_owned);
        let session = loop {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = self.ids.build_hasher();
            hasher.write_u64(self.next_session);
            self.next_session += 1;
            let id = hasher.finish();
            if id != 0 && !self.sessions.contains_key(&id) {
                break id;
            }
        };
        let stream: Arc<str> = Arc::from(stream);
        let worker = self.next_worker % self.config.workers.max(1);
        self.next_worker += 1;
        let Some(&router) = self.routers.get(worker).or(self.routers.first()) else {
            return Response::text(503, "no media socket");
        };
        let peer = Peer {
            rtc: Box::new(rtc),
            session,
            stream: Arc::clone(&stream),
            publisher: publish,
            ufrag,
            router,
            routers: Arc::clone(&self.routers),
            signalling: ctx.id(),
            media: Vec::new(),
            last_keyframe_request: None,
            ended: false,
        };
        let spawn = ctx.spawn_on(worker, peer);
        self.spawning.insert(spawn, session);
        tracing::info!(session, stream = %stream, publish, "session started");
        if publish {
            self.streams.insert(Arc::clone(&stream), session);
        }
        self.sessions.insert(
            session,
            Session {
                stream,
                publisher: publish,
                peer: None,
                hang_up: false,
                remote_ufrag,
                trickled: Vec::new(),
            },
        );
        ctx.emit(Up::SessionStarted {
            session,
            publisher: publish,
        });
        let etag = format!("\"{session}-1\"");
        Response::status(201)
            .header("Location", format!("/session/{session}"))
            .header("ETag", etag)
            .header("Accept-Patch", "application/trickle-ice-sdpfrag")
            .with_body("application/sdp", answer.to_sdp_string().into_bytes())
    }

    /// `PATCH /session/{id}` with a trickle fragment: candidates go to the
    /// peer (`204`); an ICE restart is answered `405` (str0m cannot restart
    /// a connection's ICE here; RFC 9725 allows it); a stale `If-Match` is
    /// `412`, a malformed fragment `422`.
    fn patch(&mut self, ctx: &mut Ctx<Self>, request: &Request, id: &str) -> Response {
        let Some(id) = self.session(id) else {
            return Response::text(404, "no such session");
        };
        let content_type = request.header("content-type").unwrap_or_default();
        if !content_type.split(';').next().is_some_and(|kind| {
            kind.trim()
                .eq_ignore_ascii_case("application/trickle-ice-sdpfrag")
        }) {
            return Response::text(415, "a PATCH carries application/trickle-ice-sdpfrag")
                .header("Accept-Patch", "application/trickle-ice-sdpfrag");
        }
        let etag = format!("\"{id}-1\"");
        if let Some(wanted) = request.header("if-match")
            && wanted != "*"
            && wanted != etag
        {
            return Response::text(412, format!("the session's ETag is {etag}"));
        }
        let Ok(body) = std::str::from_utf8(&request.body) else {
            return Response::text(422, "the fragment is not UTF-8");
        };
        let Some(session) = self.sessions.get_mut(&id) else {
            return Response::text(404, "no such session");
        };
        match parse_fragment(body, session.remote_ufrag.as_deref()) {
            Err(reason) => Response::text(422, reason),
            Ok(Fragment::Restart(_)) => {
                Response::text(405, "ICE restarts are not supported: start a new session")
                    .header("Allow", "DELETE, PATCH, OPTIONS")
            }
            Ok(Fragment::Candidates(candidates)) => {
                match session.peer {
                    Some(peer) => ctx.send_to(peer, Trickle(candidates)),
                    None => session.trickled.extend(candidates),
                }
                Response::status(204)
            }
        }
    }

    /// `DELETE /session/{id}`: the session ends.
    fn delete(&mut self, ctx: &mut Ctx<Self>, id: &str) -> Response {
        let Some(id) = self.session(id) else {
            return Response::text(404, "no such session");
        };
        if let Some(session) = self.sessions.get_mut(&id) {
            match session.peer {
                Some(peer) => ctx.send_to(peer, HangUp),
                None => session.hang_up = true,
            }
        }
        self.forget(ctx, id);
        Response::status(200)
    }

    /// Takes a session out of the directory.
    fn forget(&mut self, ctx: &mut Ctx<Self>, session: u64) {
        if let Some(gone) = self.sessions.remove(&session) {
            if gone.publisher && self.streams.get(&gone.stream) == Some(&session) {
                self.streams.remove(&gone.stream);
            }
            tracing::info!(session, stream = %gone.stream, "session ended");
            ctx.emit(Up::SessionEnded { session });
        }
    }
}

#[sansio::task]
impl Signalling {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        // A small send limit: a client that does not read cannot make the
        // server hold much; a connection limit: a flood of connections
        // cannot take every descriptor (idle ones go after the idle time).
        let options = TcpOptions::default()
            .send_limit(256 << 10)
            .max_connections(4096);
        ctx.tcp_listen(self.config.http, options);
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => match result {
                Ok(addr) => ctx.emit(Up::Http(addr)),
                Err(error) => {
                    ctx.emit(Up::Failed(format!(
                        "listening on {}: {error}",
                        self.config.http
                    )));
                    ctx.finish();
                }
            },
            TcpEvent::Accepted { conn, .. } => {
                self.conns.insert(conn, HttpConn::default());
                ctx.set_timer_for(conn, ctx.now() + self.config.idle);
            }
            TcpEvent::Data { conn, data } => {
                if let Some(state) = self.conns.get_mut(&conn)
                    && !state.closing
                {
                    state.reader.push(&data);
                    self.serve(ctx, conn);
                }
            }
            TcpEvent::SendFailed { conn, data, .. } => {
                if let Some(state) = self.conns.get_mut(&conn) {
                    state.refused.push(data);
                }
            }
            TcpEvent::Writable { conn } => {
                if let Some(state) = self.conns.get_mut(&conn) {
                    for data in std::mem::take(&mut state.refused) {
                        ctx.tcp_send(conn, data);
                    }
                }
            }
            TcpEvent::PeerClosed { conn } => {
                ctx.tcp_close(conn);
                self.conns.remove(&conn);
                ctx.cancel_timer_for(&conn);
            }
            TcpEvent::Closed { conn, .. } => {
                self.conns.remove(&conn);
                ctx.cancel_timer_for(&conn);
            }
            _ => {}
        }
    }

    /// A connection that has not sent a whole request in time is closed.
    #[on_timer]
    fn idle(&mut self, ctx: &mut Ctx<Self>, conn: TcpConnId) {
        match self.conns.get(&conn).map(|state| state.closing) {
            Some(false) => {
                let response = Response::text(408, "no whole request in time").closing();
                self.send(ctx, conn, &response);
            }
            Some(true) => {
                // The client never closed its side.
                self.conns.remove(&conn);
                ctx.tcp_close(conn);
            }
            None => {}
        }
    }

    #[on_input]
    fn spawned(&mut self, ctx: &mut Ctx<Self>, spawned: Spawned<Peer>) {
        let Some(session) = self.spawning.remove(&spawned.id) else {
            return;
        };
        match spawned.result {
            Ok(peer) => {
                let hang_up = self.sessions.get_mut(&session).map(|entry| {
                    entry.peer = Some(peer);
                    if !entry.trickled.is_empty() {
                        ctx.send_to(peer, Trickle(std::mem::take(&mut entry.trickled)));
                    }
                    entry.hang_up
                });
                if hang_up != Some(false) {
                    // Deleted before it started, or gone from the directory.
                    ctx.send_to(peer, HangUp);
                }
            }
            Err(error) => {
                ctx.emit(Up::Failed(format!("session {session}: {error}")));
                self.forget(ctx, session);
            }
        }
    }

    #[on_input]
    fn peer_gone(&mut self, ctx: &mut Ctx<Self>, PeerGone { session }: PeerGone) {
        self.forget(ctx, session);
    }
}

// ----------------------------------------------------------------------
// The media socket.

/// A packet for a peer, from the media socket.
#[derive(Debug)]
pub struct Incoming {
    /// The sender.
    pub source: SocketAddr,
    /// The media socket's address.
    pub destination: SocketAddr,
    /// The datagram.
    pub data: Vec<u8>,
}

/// A packet a peer sends through the media socket.
#[derive(Debug)]
pub struct Outgoing {
    /// The destination.
    pub to: SocketAddr,
    /// The datagram.
    pub data: Vec<u8>,
}

/// A peer tells the router its ICE username fragment (STUN requests to it
/// name it), or that it has gone.
#[derive(Debug)]
pub enum Route {
    /// Packets naming `ufrag` go to `peer`.
    Add {
        /// The server side's ICE ufrag of the peer connection.
        ufrag: String,
        /// The peer task.
        peer: TaskId<Peer>,
    },
    /// `peer` has gone: forget its routes.
    Remove {
        /// The peer task.
        peer: TaskId<Peer>,
    },
}

/// Owns one worker's media UDP socket (all bound to one address with
/// `SO_REUSEPORT`: the kernel spreads the clients over them); takes what
/// the peers of its worker send, and hands what arrives to the peer it is
/// for, on whatever worker.
#[sansio::task(output = Up)]
#[derive(Debug)]
pub struct Router {
    addr: SocketAddr,
    reuse_port: bool,
    socket: Option<UdpSocketId>,
    local: Option<SocketAddr>,
    by_ufrag: HashMap<String, TaskId<Peer>>,
    by_source: HashMap<SocketAddr, TaskId<Peer>>,
    /// Datagrams that matched no peer.
    unrouted: u64,
}

impl Router {
    /// A router for a socket bound at `addr`, shared with the other
    /// workers' routers (`SO_REUSEPORT`) when `reuse_port`.
    pub fn new(addr: SocketAddr, reuse_port: bool) -> Self {
        Router {
            addr,
            reuse_port,
            socket: None,
            local: None,
            by_ufrag: HashMap::new(),
            by_source: HashMap::new(),
            unrouted: 0,
        }
    }
}

/// The server ufrag a STUN binding request names (`USERNAME` is
/// `<server ufrag>:<client ufrag>`), if `packet` is one.
pub fn stun_ufrag(packet: &[u8]) -> Option<&str> {
    const COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    if packet.len() < 20 || packet[0] & 0xC0 != 0 || packet[4..8] != COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    let attributes = packet.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= attributes.len() {
        let kind = u16::from_be_bytes([attributes[at], attributes[at + 1]]);
        let len = usize::from(u16::from_be_bytes([attributes[at + 2], attributes[at + 3]]));
        let value = attributes.get(at + 4..at + 4 + len)?;
        if kind == 0x0006 {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[sansio::task]
impl Router {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let options = UdpOptions::default()
            .recv_buffer(4 << 20)
            .send_buffer(4 << 20)
            .reuse_port(self.reuse_port);
        self.socket = Some(ctx.udp_bind(self.addr, options));
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        match bound.result {
            Ok(addr) => {
                self.local = Some(addr);
                ctx.emit(Up::Udp(addr));
            }
            Err(error) => {
                ctx.emit(Up::Failed(format!("binding {}: {error}", self.addr)));
                ctx.finish();
            }
        }
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
        let Some(destination) = self.local else {
            return;
        };
        let peer = match stun_ufrag(&packet.data).and_then(|ufrag| self.by_ufrag.get(ufrag)) {
            Some(&peer) => {
                self.by_source.insert(packet.from, peer);
                Some(peer)
            }
            None => self.by_source.get(&packet.from).copied(),
        };
        match peer {
            Some(peer) => ctx.send_to(
                peer,
                Incoming {
                    source: packet.from,
                    destination,
                    data: packet.data.to_vec(),
                },
            ),
            None => self.unrouted += 1,
        }
    }

    #[on_input]
    fn error(&mut self, _: &mut Ctx<Self>, _: UdpError) {}

    #[on_input]
    fn outgoing(&mut self, ctx: &mut Ctx<Self>, Outgoing { to, data }: Outgoing) {
        if let Some(socket) = self.socket {
            ctx.udp_send(socket, to, PacketBuf::copy_from(&data));
        }
    }

    #[on_input]
    fn route(&mut self, _: &mut Ctx<Self>, route: Route) {
        match route {
            Route::Add { ufrag, peer } => {
                self.by_ufrag.insert(ufrag, peer);
            }
            Route::Remove { peer } => {
                self.by_ufrag.retain(|_, routed| *routed != peer);
                self.by_source.retain(|_, routed| *routed != peer);
            }
        }
    }
}

// ----------------------------------------------------------------------
// Peer connections.

/// Ends a peer connection (its session was deleted).
#[derive(Debug)]
pub struct HangUp;

/// One peer connection: a publisher (WHIP) or a viewer (WHEP).
#[sansio::task(channel = Topic, event = Signal)]
pub struct Peer {
    /// Boxed: an `Rtc` is some 10 KiB, and tasks move as they are spawned.
    rtc: Box<Rtc>,
    session: u64,
    stream: Arc<str>,
    publisher: bool,
    ufrag: String,
    /// The router of its own worker: what it sends goes out there.
    router: TaskId<Router>,
    /// Every worker's router: each may receive its packets.
    routers: Arc<[TaskId<Router>]>,
    signalling: TaskId<Signalling>,
    /// Its media, as the `Rtc` added them: a publisher asks for keyframes
    /// on its video, a viewer writes each frame to the media of its kind.
    media: Vec<(Mid, MediaKind)>,
    last_keyframe_request: Option<Instant>,
    ended: bool,
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("session", &self.session)
            .field("stream", &self.stream)
            .field("publisher", &self.publisher)
            .field("media", &self.media)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Keyframe requests to a publisher at most this often.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

impl Peer {
    /// Polls the `Rtc` until it says when to come back.
    fn drive(&mut self, ctx: &mut Ctx<Self>) {
        loop {
            if self.ended {
                return;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(deadline)) => {
                    ctx.set_timer(deadline);
                    break;
                }
                Ok(Output::Transmit(transmit)) => ctx.send_to(
                    self.router,
                    Outgoing {
                        to: transmit.destination,
                        data: Vec::from(transmit.contents),
                    },
                ),
                Ok(Output::Event(event)) => self.on_event(ctx, event),
                Err(_) => {
                    self.end(ctx);
                    return;
                }
            }
        }
        if !self.rtc.is_alive() {
            self.end(ctx);
        }
    }

    fn on_event(&mut self, ctx: &mut Ctx<Self>, event: RtcEvent) {
        match &event {
            RtcEvent::IceConnectionStateChange(state) => {
                tracing::debug!(session = self.session, ?state, "ICE state");
            }
            RtcEvent::Connected => tracing::debug!(session = self.session, "connected"),
            RtcEvent::MediaAdded(added) => {
                tracing::debug!(session = self.session, mid = %added.mid, kind = ?added.kind, "media added");
            }
            _ => {}
        }
        match event {
            RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.rtc.disconnect();
            }
            RtcEvent::Connected if !self.publisher => {
                ctx.publish(
                    Topic::Control(Arc::clone(&self.stream)),
                    Signal::KeyframeWanted,
                );
            }
            RtcEvent::MediaAdded(added) => self.media.push((added.mid, added.kind)),
            RtcEvent::MediaData(data) if self.publisher => {
                ctx.publish(
                    Topic::Media(Arc::clone(&self.stream)),
                    Signal::Media(Arc::new(data)),
                );
            }
            RtcEvent::KeyframeRequest(_) if !self.publisher => {
                ctx.publish(
                    Topic::Control(Arc::clone(&self.stream)),
                    Signal::KeyframeWanted,
                );
            }
            _ => {}
        }
    }

    /// Writes a publisher's frame to this viewer's matching media.
    fn forward(&mut self, data: &MediaData) {
        let kind = if data.params.spec().codec.is_audio() {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        for &(mid, _) in self.media.iter().filter(|(_, of)| *of == kind) {
            let Some(writer) = self.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(data.params) else {
                continue;
            };
            let _ = writer.write(pt, data.network_time, data.time, Arc::clone(&data.data));
            return;
        }
    }

    fn request_keyframe(&mut self, now: Instant) {
        if self
            .last_keyframe_request
            .is_some_and(|last| now.duration_since(last) < KEYFRAME_INTERVAL)
        {
            return;
        }
        self.last_keyframe_request = Some(now);
        let video = self
            .media
            .iter()
            .filter(|(_, kind)| *kind == MediaKind::Video);
        for &(mid, _) in video {
            if let Some(mut writer) = self.rtc.writer(mid) {
                let _ = writer.request_keyframe(None, KeyframeRequestKind::Pli);
            }
        }
    }

    /// The connection is over: tell whoever needs to know, and finish.
    fn end(&mut self, ctx: &mut Ctx<Self>) {
        if self.ended {
            return;
        }
        self.ended = true;
        if self.publisher {
            ctx.publish(Topic::Media(Arc::clone(&self.stream)), Signal::Ended);
        }
        for &router in self.routers.iter() {
            ctx.send_to(router, Route::Remove { peer: ctx.id() });
        }
        ctx.send_to(
            self.signalling,
            PeerGone {
                session: self.session,
            },
        );
        ctx.finish();
    }
}

#[sansio::task]
impl Peer {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        for &router in self.routers.iter() {
            ctx.send_to(
                router,
                Route::Add {
                    ufrag: self.ufrag.clone(),
                    peer: ctx.id(),
                },
            );
        }
        let topic = if self.publisher {
            Topic::Control(Arc::clone(&self.stream))
        } else {
            Topic::Media(Arc::clone(&self.stream))
        };
        ctx.subscribe(topic);
        self.drive(ctx);
    }

    #[on_input]
    fn incoming(&mut self, ctx: &mut Ctx<Self>, incoming: Incoming) {
        let Ok(receive) = Receive::new(
            Protocol::Udp,
            incoming.source,
            incoming.destination,
            &incoming.data,
        ) else {
            return;
        };
        if self
            .rtc
            .handle_input(Input::Receive(ctx.now(), receive))
            .is_err()
        {
            self.end(ctx);
            return;
        }
        self.drive(ctx);
    }

    #[on_timer]
    fn timeout(&mut self, ctx: &mut Ctx<Self>) {
        if self.rtc.handle_input(Input::Timeout(ctx.now())).is_err() {
            self.end(ctx);
            return;
        }
        self.drive(ctx);
    }

    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Topic, Signal>) {
        let BusInput::Event { event, .. } = input else {
            return;
        };
        match event {
            Signal::Media(data) if !self.publisher => self.forward(&data),
            Signal::KeyframeWanted if self.publisher => self.request_keyframe(ctx.now()),
            Signal::Ended if !self.publisher => {
                self.rtc.disconnect();
            }
            _ => return,
        }
        self.drive(ctx);
    }

    #[on_input]
    fn trickle(&mut self, ctx: &mut Ctx<Self>, Trickle(candidates): Trickle) {
        for candidate in candidates {
            self.rtc.add_remote_candidate(candidate);
        }
        self.drive(ctx);
    }

    #[on_input]
    fn hang_up(&mut self, ctx: &mut Ctx<Self>, _: HangUp) {
        self.rtc.disconnect();
        self.drive(ctx);
        self.end(ctx);
    }
}

/// The server's worker kind.
#[sansio::worker(channel = Topic, event = Signal)]
#[derive(Debug)]
pub enum Whip {
    /// HTTP signalling.
    Signalling(Signalling),
    /// The media socket.
    Router(Router),
    /// A peer connection.
    Peer(Peer),
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The runtime.
    pub runtime: Runtime<Whip>,
    /// Where signalling listens.
    pub http: SocketAddr,
    /// The media socket.
    pub udp: SocketAddr,
}

/// Starts the server: a media socket on every worker (worker 0's first,
/// then the others on the address it got), then signalling on worker 0.
///
/// # Errors
///
/// What could not start (the runtime, a socket, the listener).
pub fn start(config: Config, backend: Backend) -> Result<Server, String> {
    let runtime = Runtime::<Whip>::builder()
        .workers(config.workers)
        .backend(backend)
        .build()
        .map_err(|error| format!("starting the runtime: {error}"))?;
    let shared = config.workers > 1;
    let mut routers = Vec::with_capacity(config.workers);
    let mut udp = config.udp;
    for worker in 0..config.workers {
        let router = runtime
            .spawn_on(worker, Router::new(udp, shared))
            .map_err(|error| error.to_string())?;
        routers.push(router);
        udp = match up(&runtime)? {
            Up::Udp(addr) => addr,
            other => return Err(format!("expected a media socket, got {other:?}")),
        };
    }
    runtime
        .spawn_on(0, Signalling::new(config, udp, routers))
        .map_err(|error| error.to_string())?;
    let http = match up(&runtime)? {
        Up::Http(addr) => addr,
        other => return Err(format!("expected the listener, got {other:?}")),
    };
    Ok(Server { runtime, http, udp })
}

/// The next report of the servers' start, or why it failed.
fn up(runtime: &Runtime<Whip>) -> Result<Up, String> {
    match runtime.next_event(Duration::from_secs(10)) {
        Some(Event::Output {
            output: WhipOutput::Router(Up::Failed(why)) | WhipOutput::Signalling(Up::Failed(why)),
            ..
        }) => Err(why),
        Some(Event::Output {
            output: WhipOutput::Router(up) | WhipOutput::Signalling(up),
            ..
        }) => Ok(up),
        other => Err(format!("the server did not start: {other:?}")),
    }
}

/// Drives signalling (under the harness, virtual time) with `input` as one
/// connection's bytes, read in pieces of 1 to 256 bytes as `cuts` says;
/// returns what it sent back. The fuzz target `whip_http` and the tests
/// run it: it checks that every response is a whole HTTP/1.1 response with
/// its CORS headers, whatever the bytes were, and that bad input gets a 4xx
/// or 5xx after which nothing more is read.
///
/// # Panics
///
/// When signalling breaks one of those rules.
#[must_use]
pub fn drive_signalling(input: &[u8], cuts: &[u8]) -> Vec<u8> {
    use sansio::testing::{self, TaskHarness};
    let config = Config {
        http: SocketAddr::from(([127, 0, 0, 1], 8080)),
        udp: SocketAddr::from(([127, 0, 0, 1], 8090)),
        token: None,
        idle: Duration::from_secs(10),
        workers: 2,
    };
    let router = testing::task_id::<Router>(0, 0, 1);
    let conn = testing::tcp_conn_id(0, 1);
    let listener = testing::tcp_listener_id(0, 1);
    let peer = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut signalling = TaskHarness::new(Signalling::new(
        config.clone(),
        config.udp,
        vec![router, testing::task_id::<Router>(1, 0, 1)],
    ));
    signalling.input(TcpEvent::Accepted {
        listener,
        conn,
        peer,
    });
    let mut rest = input;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() {
        let len = (usize::from(*cuts.next().unwrap_or(&0)) + 1).min(rest.len());
        let (read, after) = rest.split_at(len);
        rest = after;
        signalling.input(TcpEvent::Data {
            conn,
            data: PacketBuf::copy_from(read),
        });
        let held = signalling
            .task()
            .conns
            .get(&conn)
            .map_or(0, |state| state.reader.pending());
        assert!(
            held <= super::http::MAX_HEAD + super::http::MAX_BODY + 256,
            "{held} bytes of an unfinished request are kept"
        );
    }
    let sent = signalling.drain_tcp_sent(conn);
    let mut at = &sent[..];
    while !at.is_empty() {
        let reply =
            super::client::parse_reply(at).unwrap_or_else(|e| panic!("a broken response ({e})"));
        assert!(
            reply.header("access-control-allow-origin") == Some("*"),
            "a response without CORS headers"
        );
        let length: usize = reply
            .header("content-length")
            .and_then(|len| len.parse().ok())
            .expect("every response has a Content-Length");
        let head = at.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
        at = &at[(head + length).min(at.len())..];
        if reply.status >= 400 && reply.header("connection") == Some("close") {
            assert!(
                at.is_empty(),
                "a response after one that closed the connection"
            );
        }
    }
    sent
}
