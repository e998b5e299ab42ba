//! The one-task-per-connection chat server of `examples/tcp_chat.rs`
//! (`src/chat.rs`), driven by real TCP clients across 2 workers on every
//! backend: every message reaches exactly its room's members, sessions
//! time out when idle, `STATS` is answered by RPC, and no session is left
//! behind.

mod util;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sansio::Backend;
use sansio::prelude::*;
use sansio_suite::chat::{self, Chat, ChatStats, GetStats, Stats};
use util::PATIENCE;

/// A chat client on a real socket.
struct Client {
    lines: BufReader<TcpStream>,
    stream: TcpStream,
    /// The worker its session runs on, from the welcome line.
    worker: usize,
}

impl Client {
    fn connect(server: SocketAddr) -> Client {
        let stream = TcpStream::connect(server).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut client = Client {
            lines: BufReader::new(stream.try_clone().unwrap()),
            stream,
            worker: usize::MAX,
        };
        let welcome = client.line();
        // `welcome Session#<worker>.<slot>.<generation>`
        let id = welcome
            .strip_prefix("welcome Session#")
            .unwrap_or_else(|| panic!("{welcome}"));
        client.worker = id.split('.').next().unwrap().parse().unwrap();
        client
    }

    fn say(&mut self, line: &str) {
        self.stream
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    /// The next line from the server (without its newline).
    fn line(&mut self) -> String {
        let mut line = String::new();
        let read = self.lines.read_line(&mut line).unwrap();
        assert!(read > 0, "the server closed the connection");
        line.trim_end().to_owned()
    }

    /// Says `line` and returns the answer.
    fn ask(&mut self, line: &str) -> String {
        self.say(line);
        self.line()
    }

    /// Whether the server has closed the connection (after what it sent).
    fn closed(&mut self) -> bool {
        let mut rest = String::new();
        self.lines.read_line(&mut rest).unwrap() == 0
    }
}

/// Clients until at least `per_worker` have their session on each of the 2
/// workers (the kernel spreads connections over the workers' listeners);
/// the extra ones quit.
fn clients_on_both_workers(server: SocketAddr, per_worker: usize) -> Vec<Client> {
    let mut kept: Vec<Client> = Vec::new();
    for _ in 0..200 {
        let mut client = Client::connect(server);
        if kept.iter().filter(|c| c.worker == client.worker).count() < per_worker {
            kept.push(client);
        } else {
            assert_eq!(client.ask("QUIT"), "bye");
        }
        if kept.len() == 2 * per_worker {
            return kept;
        }
    }
    panic!("200 connections did not reach both workers");
}

/// The chat server's figures, asked by the controller.
fn stats(runtime: &Runtime<Chat>, stats: TaskId<Stats>) -> ChatStats {
    runtime.call(stats, GetStats, PATIENCE).unwrap()
}

fn start(backend: Backend, idle: Duration) -> (Runtime<Chat>, SocketAddr, TaskId<Stats>) {
    let server = chat::start("127.0.0.1:0".parse().unwrap(), 2, idle, backend).unwrap();
    (server.runtime, server.addr, server.stats)
}

/// A session answers whatever bytes arrive, in whatever pieces, in whole
/// lines, without panicking or keeping more than a line (the fuzz target in
/// `fuzz/` searches further).
#[test]
fn a_session_takes_any_bytes_in_any_pieces() {
    let said = chat::drive_session(
        b"NICK ann\nJOIN r\nMSG hi\nSTATS\nQUIT\nMSG late\n",
        &[0, 3, 1],
    );
    let said = String::from_utf8(said).unwrap();
    assert!(
        said.starts_with("welcome Session#0.0.0\nok nick ann\n"),
        "{said}"
    );
    assert!(
        said.ends_with("stats sessions=0 messages=0\nbye\n"),
        "{said}"
    );
    // Pseudo-random soup: commands, garbage, invalid UTF-8, long lines.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let words: [&[u8]; 9] = [
        b"NICK ",
        b"JOIN ",
        b"MSG ",
        b"STATS",
        b"QUIT",
        b"\n",
        b"\r\n",
        &[0xff, 0xfe],
        &[b'x'; 700],
    ];
    for _ in 0..500 {
        let mut input = Vec::new();
        for _ in 0..next() % 40 {
            input.extend_from_slice(words[(next() % words.len() as u64) as usize]);
        }
        let cuts: Vec<u8> = (0..8).map(|_| next() as u8).collect();
        let said = chat::drive_session(&input, &cuts);
        assert!(said.starts_with(b"welcome "));
    }
}

all_backend_tests! {
    fn every_message_reaches_exactly_its_rooms_members(backend: Backend) {
        let (runtime, server, stats_id) = start(backend, Duration::from_secs(60));
        let mut clients = clients_on_both_workers(server, 3);
        // Rooms across the workers: `a` gets two clients of worker 0 and one
        // of worker 1, `b` the others.
        clients.sort_by_key(|client| client.worker);
        let rooms = ["a", "a", "b", "a", "b", "b"];
        for (n, client) in clients.iter_mut().enumerate() {
            assert_eq!(client.ask(&format!("NICK c{n}")), format!("ok nick c{n}"));
            assert_eq!(client.ask(&format!("JOIN {}", rooms[n])), format!("joined {}", rooms[n]));
        }
        for (n, client) in clients.iter_mut().enumerate() {
            client.say(&format!("MSG hello from c{n}"));
        }
        for (n, client) in clients.iter_mut().enumerate() {
            let expected: BTreeSet<String> = (0..6)
                .filter(|m| rooms[*m] == rooms[n])
                .map(|m| format!("[{}] c{m}: hello from c{m}", rooms[n]))
                .collect();
            let got: BTreeSet<String> = (0..expected.len()).map(|_| client.line()).collect();
            assert_eq!(got, expected, "client c{n} in room {}", rooms[n]);
        }
        // Nothing else arrived: the next line each gets is its STATS answer.
        for client in &mut clients {
            assert_eq!(client.ask("STATS"), "stats sessions=6 messages=6");
        }
        assert_eq!(stats(&runtime, stats_id), ChatStats { sessions: 6, messages: 6 });

        for client in &mut clients {
            assert_eq!(client.ask("QUIT"), "bye");
            assert!(client.closed(), "the connection closes after bye");
        }
        util::eventually("every session has ended", || {
            stats(&runtime, stats_id).sessions == 0
        });
        // Left: the two lobbies and the stats task; no session, no socket
        // but the listeners.
        util::eventually("nothing is left behind", || {
            let stats = runtime.stats();
            let sessions: usize = stats
                .workers
                .iter()
                .flat_map(|w| &w.tasks)
                .filter(|(name, _)| *name == "Session")
                .map(|(_, live)| live)
                .sum();
            sessions == 0 && stats.workers.iter().map(|w| w.tcp_sockets).sum::<u64>() == 2
        });
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn an_idle_session_is_closed_and_a_busy_one_is_not(backend: Backend) {
        let idle = Duration::from_millis(300);
        let (runtime, server, stats_id) = start(backend, idle);
        let mut quiet = Client::connect(server);
        let mut busy = Client::connect(server);
        busy.say("JOIN r");
        assert_eq!(busy.line(), "joined r");
        // Lines at less than the idle timeout keep the busy one open.
        for n in 0..6 {
            std::thread::sleep(idle / 3);
            busy.say(&format!("MSG {n}"));
            assert!(busy.line().ends_with(&format!(": {n}")));
        }
        assert_eq!(quiet.line(), "idle timeout");
        assert!(quiet.closed());
        assert_eq!(busy.ask("STATS"), "stats sessions=1 messages=6");
        assert_eq!(busy.line(), "idle timeout");
        assert!(busy.closed());
        util::eventually("both sessions ended", || stats(&runtime, stats_id).sessions == 0);
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn bad_input_gets_an_error_and_the_session_goes_on(backend: Backend) {
        let (runtime, server, _) = start(backend, Duration::from_secs(60));
        let mut client = Client::connect(server);
        assert_eq!(client.ask("DANCE"), "error unknown command");
        assert_eq!(client.ask("MSG nobody hears"), "error not in a room (JOIN one first)");
        client.say(&"x".repeat(chat::MAX_LINE + 100));
        assert_eq!(client.line(), "error line too long");
        assert_eq!(client.ask("NICK ok"), "ok nick ok");
        runtime.shutdown(Duration::from_secs(5)).unwrap();
        assert_eq!(client.line(), "server shutting down");
    }
}
