//! A listener at the process's descriptor limit keeps accepting, on every
//! backend: a server in a child process limited to 64 descriptors gets 200
//! connections at once and holds each one it accepts until its client
//! closes. It accepts until `EMFILE`; the clients it greeted close; and,
//! with no new connection arriving to wake it, it tries again after a
//! back-off until every connection waiting in the backlog is greeted.

mod util;

use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sansio::Backend;
use sansio::net::{TcpEvent, TcpOptions};
use sansio::prelude::*;
use util::PATIENCE;

/// Set in the child process: it runs the server on this backend.
const CHILD: &str = "SANSIO_TEST_EMFILE_SERVER";
/// The child's descriptor limit.
const FD_LIMIT: u64 = 64;
/// Connections, well above what the limit lets the server hold at once.
const CLIENTS: usize = 200;

#[derive(Debug)]
pub enum ServerOut {
    Listening(SocketAddr),
    /// Every client has been served.
    Done,
}

/// Greets each connection it accepts, and closes it once its client has.
#[sansio::task(output = ServerOut)]
#[derive(Default)]
pub struct Server {
    served: usize,
}

#[sansio::task]
impl Server {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let options = TcpOptions::default().backlog(1024);
        ctx.tcp_listen("127.0.0.1:0".parse().unwrap(), options);
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => ctx.emit(ServerOut::Listening(result.unwrap())),
            TcpEvent::Accepted { conn, .. } => {
                ctx.tcp_send(conn, PacketBuf::copy_from(b"hello\n"));
                self.served += 1;
                if self.served == CLIENTS {
                    ctx.emit(ServerOut::Done);
                }
            }
            TcpEvent::PeerClosed { conn } | TcpEvent::Closed { conn, .. } => ctx.tcp_close(conn),
            _ => {}
        }
    }
}

/// Greets what it accepts, keeping at most `max` connections.
#[sansio::task(output = ServerOut)]
pub struct Limited {
    max: usize,
}

#[sansio::task]
impl Limited {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        let options = TcpOptions::default().max_connections(self.max);
        ctx.tcp_listen("127.0.0.1:0".parse().unwrap(), options);
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening { result, .. } => ctx.emit(ServerOut::Listening(result.unwrap())),
            TcpEvent::Accepted { conn, .. } => ctx.tcp_send(conn, PacketBuf::copy_from(b"hello\n")),
            TcpEvent::PeerClosed { conn } | TcpEvent::Closed { conn, .. } => ctx.tcp_close(conn),
            _ => {}
        }
    }
}

#[sansio::worker(output = ServerOut)]
pub enum Accepting {
    Server(Server),
    Limited(Limited),
}

/// Connects to `server` and returns the stream with whether it was greeted
/// (or closed at once).
fn greeted(server: SocketAddr) -> (TcpStream, bool) {
    let mut stream = TcpStream::connect(server).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut hello = [0u8; 6];
    let greeted = match stream.read(&mut hello) {
        Ok(6) => true,
        Ok(0) | Err(_) => false,
        Ok(n) => panic!("a short greeting ({n} bytes)"),
    };
    (stream, greeted)
}

/// The child: limits its descriptors, serves, prints what the parent needs.
fn serve_in_child(backend: Backend) -> ! {
    let limit = libc::rlimit {
        rlim_cur: FD_LIMIT,
        rlim_max: FD_LIMIT,
    };
    // SAFETY: `limit` is a valid rlimit for reads.
    let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) };
    assert_eq!(set, 0, "setrlimit: {}", std::io::Error::last_os_error());
    let runtime = Runtime::<Accepting>::builder()
        .workers(1)
        .backend(backend)
        .build()
        .unwrap();
    runtime.spawn(Server::default()).unwrap();
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut done = false;
    while let Some(event) = runtime.next_event(give_up.saturating_duration_since(Instant::now())) {
        match event {
            Event::Output {
                output: ServerOut::Listening(addr),
                ..
            } => println!("listening {addr}"),
            Event::Output {
                output: ServerOut::Done,
                ..
            } => {
                done = true;
                break;
            }
            _ => {}
        }
    }
    let retries = runtime.stats().workers[0].tcp_accept_retries;
    println!("accept retries {retries}");
    let _ = std::io::stdout().flush();
    let _ = runtime.shutdown(Duration::from_secs(2));
    std::process::exit(if done { 0 } else { 1 });
}

/// The child, killed if the test fails before it has ended.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

all_backend_tests! {
    fn a_listener_at_its_descriptor_limit_serves_the_whole_backlog(backend: Backend) {
        if let Ok(backend) = std::env::var(CHILD) {
            serve_in_child(backend.parse().unwrap());
        }
        let module = match backend {
            Backend::Mio => "mio",
            Backend::Polling => "polling",
            Backend::IoUring => "io_uring",
            _ => "busy_poll",
        };
        let test = format!("{module}::a_listener_at_its_descriptor_limit_serves_the_whole_backlog");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test.as_str(), "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD, backend.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let child = KillOnDrop(child);
        let server: SocketAddr = loop {
            let line = lines.next().expect("the server says where it listens").unwrap();
            // The test runner may print its own words first on the line.
            if let Some((_, addr)) = line.split_once("listening ") {
                break addr.trim().parse().unwrap();
            }
        };
        // All at once, far more than the server can hold: the rest wait in
        // the backlog.
        let mut clients: Vec<Option<TcpStream>> = (0..CLIENTS)
            .map(|_| {
                let client = TcpStream::connect(server).unwrap();
                client.set_nonblocking(true).unwrap();
                Some(client)
            })
            .collect();
        // Nobody connects after this. Each client that is greeted closes,
        // which frees a descriptor; the others must be accepted from the
        // backlog all the same.
        let give_up = Instant::now() + PATIENCE;
        let mut greeted = 0;
        while greeted < CLIENTS {
            assert!(Instant::now() < give_up, "{greeted} of {CLIENTS} clients were greeted");
            for slot in &mut clients {
                let Some(client) = slot else { continue };
                let mut hello = [0u8; 6];
                match client.read(&mut hello) {
                    Ok(6) => {
                        assert_eq!(&hello, b"hello\n");
                        greeted += 1;
                        *slot = None;
                    }
                    Ok(n) => panic!("a short greeting ({n} bytes)"),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(error) => panic!("{error}"),
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let retries: u64 = lines
            .map_while(Result::ok)
            .find_map(|line| {
                let (_, retries) = line.split_once("accept retries ")?;
                retries.trim().parse().ok()
            })
            .expect("the server reports its retries");
        assert!(retries > 0, "the limit was never reached: the test proves nothing");
        let mut child = child;
        assert!(child.0.wait().unwrap().success());
    }

    fn connections_over_a_listeners_limit_are_closed_at_once(backend: Backend) {
        let runtime = Runtime::<Accepting>::builder().workers(1).backend(backend).build().unwrap();
        runtime.spawn(Limited { max: 5 }).unwrap();
        let server = match util::next(&runtime) {
            Event::Output { output: ServerOut::Listening(addr), .. } => addr,
            other => panic!("unexpected {other:?}"),
        };
        let mut kept: Vec<TcpStream> = Vec::new();
        for n in 0..10 {
            let (stream, greeted) = greeted(server);
            assert_eq!(greeted, n < 5, "connection {n}");
            if greeted {
                kept.push(stream);
            }
        }
        util::eventually("the five over the limit are counted", || {
            runtime.stats().workers[0].tcp_over_limit == 5
        });
        // One closes: there is room for one more.
        drop(kept.pop());
        let mut room = false;
        let give_up = Instant::now() + PATIENCE;
        while !room && Instant::now() < give_up {
            let (stream, greeted) = greeted(server);
            if greeted {
                kept.push(stream);
                room = true;
            }
        }
        assert!(room, "a closed connection leaves room for another");
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }
}
