//! A TCP chat server, one task per connection: the tasks behind
//! `examples/tcp_chat.rs` and its test.
//!
//! - A [`Lobby`] per worker listens on the shared port (`SO_REUSEPORT`: the
//!   kernel spreads connections over the workers). For each connection it
//!   accepts it spawns a [`Session`] on its own worker (`ctx.spawn`) and
//!   hands the connection over to it (`ctx.tcp_hand_over`).
//! - A [`Session`] speaks a line protocol with its client, joins rooms on
//!   the bus (a room is a channel; a message reaches every member, on any
//!   worker), closes itself after an idle timeout (its own timer), and asks
//!   the [`Stats`] task for the server's figures by RPC.
//! - [`Stats`] counts sessions and messages, told by the sessions with
//!   direct messages (`ctx.send_to`), and answers `GetStats`.
//!
//! The protocol, one command per line (`\n`, at most [`MAX_LINE`] bytes):
//!
//! | client sends | server answers |
//! | --- | --- |
//! | (connects) | `welcome <session id>` |
//! | `NICK name` | `ok nick name` |
//! | `JOIN room` | `joined room`, once the membership is in effect on every worker |
//! | `MSG text` | every member of the room, the sender included, gets `[room] nick: text` |
//! | `STATS` | `stats sessions=<open sessions> messages=<messages so far>` |
//! | `QUIT` | `bye`, then the server closes the connection |
//! | (nothing for the idle timeout) | `idle timeout`, then the server closes the connection |

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sansio::net::{TcpConnId, TcpEvent, TcpOptions, TcpSocket};
use sansio::prelude::*;
use sansio::{Backend, SpawnId};

/// The longest line a client may send; a longer one is refused and dropped.
pub const MAX_LINE: usize = 4096;

/// How long a session waits for the `Stats` task's answer.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// A chat room: a bus channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Room(pub String);

/// What travels on a room's channel.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// A member said something.
    Said {
        /// The member's nick.
        from: String,
        /// What they said.
        text: String,
    },
}

/// What the chat tasks report to the controller.
#[derive(Debug)]
pub enum ChatOut {
    /// A lobby's listener is up (its address), or could not start.
    Listening(Result<SocketAddr, String>),
}

/// What sessions tell the `Stats` task.
#[derive(Debug)]
pub enum Activity {
    /// A session started.
    Opened,
    /// A session ended.
    Closed,
    /// A message was sent to a room.
    Said,
}

/// The request a session (or the controller) makes of the `Stats` task.
#[derive(Debug)]
pub struct GetStats;

/// The server's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChatStats {
    /// Sessions open now.
    pub sessions: u64,
    /// Messages sent to rooms so far.
    pub messages: u64,
}

impl Request for GetStats {
    type Response = ChatStats;
}

/// Counts sessions and messages; answers `GetStats`.
#[sansio::task(output = ChatOut)]
#[derive(Debug, Default)]
pub struct Stats {
    figures: ChatStats,
}

#[sansio::task]
impl Stats {
    /// Shut down after the sessions: it still counts their goodbyes.
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.set_shutdown_phase(1);
    }

    #[on_input]
    fn activity(&mut self, _: &mut Ctx<Self>, activity: Activity) {
        let figures = &mut self.figures;
        match activity {
            Activity::Opened => figures.sessions += 1,
            Activity::Closed => figures.sessions = figures.sessions.saturating_sub(1),
            Activity::Said => figures.messages += 1,
        }
    }

    #[on_request]
    fn stats(&mut self, _: &mut Ctx<Self>, _: GetStats) -> ChatStats {
        self.figures
    }
}

/// Listens on the chat port and gives each connection a session of its own.
#[sansio::task(output = ChatOut)]
#[derive(Debug)]
pub struct Lobby {
    addr: SocketAddr,
    stats: TaskId<Stats>,
    idle: Duration,
    /// Connections whose session is being spawned.
    spawning: HashMap<SpawnId, TcpConnId>,
}

impl Lobby {
    /// A lobby listening on `addr` (with `SO_REUSEPORT`, so that one lobby
    /// per worker can share it), whose sessions close after `idle` without
    /// a line and report to `stats`.
    pub fn new(addr: SocketAddr, stats: TaskId<Stats>, idle: Duration) -> Self {
        Lobby {
            addr,
            stats,
            idle,
            spawning: HashMap::new(),
        }
    }
}

#[sansio::task]
impl Lobby {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.tcp_listen(self.addr, TcpOptions::default().reuse_port(true));
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => {
                ctx.emit(ChatOut::Listening(
                    result.map_err(|error| error.to_string()),
                ));
            }
            TcpEvent::Accepted { conn, peer, .. } => {
                let session = Session::new(conn, peer, self.stats, self.idle);
                let spawn = ctx.spawn(session);
                self.spawning.insert(spawn, conn);
            }
            TcpEvent::Refused {
                socket: TcpSocket::Conn(conn),
                ..
            } => ctx.tcp_close(conn),
            // Out of descriptors, a connection aborted before it was
            // accepted: the listener carries on.
            _ => {}
        }
    }

    #[on_input]
    fn spawned(&mut self, ctx: &mut Ctx<Self>, spawned: Spawned<Session>) {
        let Some(conn) = self.spawning.remove(&spawned.id) else {
            return;
        };
        match spawned.result {
            Ok(session) => ctx.tcp_hand_over(conn, session),
            Err(error) => {
                let line = format!("error {error}\n");
                ctx.tcp_send(conn, PacketBuf::copy_from(line.as_bytes()));
                ctx.tcp_close(conn);
            }
        }
    }
}

/// One client's connection: its line protocol, its room, its idle timer.
#[sansio::task(output = ChatOut, channel = Room, event = ChatEvent)]
pub struct Session {
    conn: TcpConnId,
    nick: String,
    room: Option<Room>,
    stats: TaskId<Stats>,
    idle: Duration,
    last_line: Option<Instant>,
    /// Bytes of a line not yet complete.
    partial: Vec<u8>,
    /// The line being received is too long: dropped up to its end.
    discarding: bool,
    /// Requests for the figures, still unanswered.
    asking: usize,
    /// `QUIT` came while figures were still asked for: end once answered.
    quitting: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("conn", &self.conn)
            .field("nick", &self.nick)
            .field("room", &self.room)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session of `conn`, from `peer`.
    pub fn new(conn: TcpConnId, peer: SocketAddr, stats: TaskId<Stats>, idle: Duration) -> Self {
        Session {
            conn,
            nick: peer.to_string(),
            room: None,
            stats,
            idle,
            last_line: None,
            partial: Vec::new(),
            discarding: false,
            asking: 0,
            quitting: false,
        }
    }

    fn send(&self, ctx: &mut Ctx<Self>, line: &str) {
        let mut buf = PacketBuf::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.extend_from_slice(b"\n");
        ctx.tcp_send(self.conn, buf);
    }

    /// Ends the session: the connection closes once what was queued on it
    /// has been sent.
    fn end(&mut self, ctx: &mut Ctx<Self>, last: &str) {
        if !ctx.is_finished() {
            self.send(ctx, last);
            ctx.send_to(self.stats, Activity::Closed);
            ctx.finish();
        }
    }

    fn command(&mut self, ctx: &mut Ctx<Self>, line: &str) {
        let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match verb {
            "NICK" if !rest.is_empty() => {
                self.nick = rest.to_owned();
                self.send(ctx, &format!("ok nick {rest}"));
            }
            "JOIN" if !rest.is_empty() => {
                if let Some(room) = self.room.take() {
                    ctx.unsubscribe(room);
                }
                let room = Room(rest.to_owned());
                self.room = Some(room.clone());
                ctx.subscribe(room);
            }
            "MSG" => match &self.room {
                Some(room) => {
                    let said = ChatEvent::Said {
                        from: self.nick.clone(),
                        text: rest.to_owned(),
                    };
                    ctx.publish(room.clone(), said);
                    ctx.send_to(self.stats, Activity::Said);
                }
                None => self.send(ctx, "error not in a room (JOIN one first)"),
            },
            "STATS" => {
                self.asking += 1;
                ctx.request(self.stats, GetStats, STATS_TIMEOUT);
            }
            // The answers asked for before come first.
            "QUIT" if self.asking > 0 => self.quitting = true,
            "QUIT" => self.end(ctx, "bye"),
            _ => self.send(ctx, "error unknown command"),
        }
    }
}

#[sansio::task]
impl Session {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        self.send(ctx, &format!("welcome {}", ctx.id()));
        ctx.send_to(self.stats, Activity::Opened);
        self.last_line = Some(ctx.now());
        ctx.set_timer(ctx.now() + self.idle);
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Data { data, .. } => {
                self.last_line = Some(ctx.now());
                self.partial.extend_from_slice(&data);
                while let Some(end) = self.partial.iter().position(|&byte| byte == b'\n') {
                    let line: Vec<u8> = self.partial.drain(..=end).collect();
                    if std::mem::take(&mut self.discarding) {
                        // The end of a line already refused.
                        continue;
                    }
                    if line.len() > MAX_LINE + 1 {
                        self.send(ctx, "error line too long");
                        continue;
                    }
                    let line = String::from_utf8_lossy(&line);
                    self.command(ctx, line.trim_end_matches(['\r', '\n']));
                    if ctx.is_finished() {
                        return;
                    }
                }
                if self.partial.len() > MAX_LINE {
                    // Bounded memory: the rest of this line is dropped as it
                    // comes.
                    self.partial.clear();
                    if !self.discarding {
                        self.discarding = true;
                        self.send(ctx, "error line too long");
                    }
                }
            }
            TcpEvent::PeerClosed { .. } | TcpEvent::Closed { .. } if !ctx.is_finished() => {
                ctx.send_to(self.stats, Activity::Closed);
                ctx.finish();
            }
            _ => {}
        }
    }

    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Room, ChatEvent>) {
        match input {
            BusInput::Event {
                channel: Some(room),
                event: ChatEvent::Said { from, text },
            } => self.send(ctx, &format!("[{}] {from}: {text}", room.0)),
            BusInput::Subscribed { channel } if Some(&channel) == self.room.as_ref() => {
                self.send(ctx, &format!("joined {}", channel.0));
            }
            BusInput::Overflow { .. } => self.send(ctx, "error the server is busy"),
            _ => {}
        }
    }

    #[on_input]
    fn stats(&mut self, ctx: &mut Ctx<Self>, reply: Reply<GetStats>) {
        self.asking = self.asking.saturating_sub(1);
        match reply.result {
            Ok(stats) => self.send(
                ctx,
                &format!(
                    "stats sessions={} messages={}",
                    stats.sessions, stats.messages
                ),
            ),
            Err(error) => self.send(ctx, &format!("error stats: {error}")),
        }
        if self.quitting && self.asking == 0 {
            self.end(ctx, "bye");
        }
    }

    #[on_timer]
    fn idle(&mut self, ctx: &mut Ctx<Self>) {
        let last = self.last_line.unwrap_or(ctx.now());
        if ctx.now() >= last + self.idle {
            self.end(ctx, "idle timeout");
        } else {
            ctx.set_timer(last + self.idle);
        }
    }

    #[on_shutdown]
    fn shutdown(&mut self, ctx: &mut Ctx<Self>) {
        self.end(ctx, "server shutting down");
    }
}

/// The chat server's worker kind.
#[sansio::worker(output = ChatOut, channel = Room, event = ChatEvent)]
#[derive(Debug)]
pub enum Chat {
    /// Listeners.
    Lobby(Lobby),
    /// Connections.
    Session(Session),
    /// The figures.
    Stats(Stats),
}

/// Drives one `Session` under the test harness with `input` as the bytes
/// its client sends, cut into reads at the zero bytes of `cuts` (so the
/// same lines arrive in different pieces), and returns everything the
/// session sent back. For the fuzz target (`fuzz/`) and the tests: whatever
/// the bytes, the session must not panic, must answer in whole lines, and
/// must keep no more than [`MAX_LINE`] bytes of an unfinished line.
///
/// # Panics
///
/// When the session breaks one of those rules.
#[must_use]
pub fn drive_session(input: &[u8], cuts: &[u8]) -> Vec<u8> {
    use sansio::testing::{self, TaskHarness};
    let conn = testing::tcp_conn_id(0, 1);
    let stats = testing::task_id::<Stats>(0, 0, 1);
    let peer = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut session = TaskHarness::new(Session::new(conn, peer, stats, Duration::from_secs(60)));
    let mut rest = input;
    let mut cuts = cuts.iter().cycle();
    while !rest.is_empty() && !session.is_finished() {
        // Reads of 1 to 256 bytes.
        let len = (usize::from(*cuts.next().unwrap_or(&0)) + 1).min(rest.len());
        let (read, after) = rest.split_at(len);
        rest = after;
        let data = PacketBuf::copy_from(read);
        session.input(TcpEvent::Data { conn, data });
        assert!(
            session.task().partial.len() <= MAX_LINE,
            "an unfinished line of {} bytes is kept",
            session.task().partial.len()
        );
        // Answers to STATS would come from the Stats task: answer here.
        for (_, id, GetStats) in session.drain_requests::<Stats, GetStats>() {
            if !session.is_finished() {
                let result = Ok(ChatStats::default());
                session.input(Reply::<GetStats> { id, result });
            }
        }
    }
    let sent = session.drain_tcp_sent(conn);
    assert!(
        sent.is_empty() || sent.ends_with(b"\n"),
        "answers are whole lines"
    );
    sent
}

/// A running chat server.
#[derive(Debug)]
pub struct Server {
    /// The runtime.
    pub runtime: Runtime<Chat>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The `Stats` task, for `Runtime::call(stats, GetStats, ..)`.
    pub stats: TaskId<Stats>,
}

/// Starts a chat server on `addr` with `workers` workers: the `Stats` task
/// on worker 0, a lobby on every worker. Returns the runtime, the address
/// it listens on (the port the system chose, for port 0) and the `Stats`
/// task's id.
///
/// # Errors
///
/// When the runtime cannot be built or the port cannot be listened on.
pub fn start(
    addr: SocketAddr,
    workers: usize,
    idle: Duration,
    backend: Backend,
) -> Result<Server, String> {
    let runtime = Runtime::<Chat>::builder()
        .workers(workers)
        .backend(backend)
        .build()
        .map_err(|error| error.to_string())?;
    let stats = runtime
        .spawn_on(0, Stats::default())
        .map_err(|error| error.to_string())?;
    let mut bound = addr;
    for worker in 0..workers {
        runtime
            .spawn_on(worker, Lobby::new(bound, stats, idle))
            .map_err(|error| error.to_string())?;
        // The first lobby's port (chosen by the system for port 0) is the
        // one the others share.
        bound = listening(&runtime)?;
    }
    Ok(Server {
        runtime,
        addr: bound,
        stats,
    })
}

/// The address the lobby just spawned listens on.
fn listening(runtime: &Runtime<Chat>) -> Result<SocketAddr, String> {
    let give_up = Instant::now() + Duration::from_secs(10);
    while let Some(event) = runtime.next_event(give_up.saturating_duration_since(Instant::now())) {
        if let Event::Output {
            output: ChatOut::Listening(result),
            ..
        } = event
        {
            return result;
        }
    }
    Err("no lobby started listening within 10 s".to_owned())
}
