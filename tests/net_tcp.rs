//! TCP through the runtime, on every backend, against real clients: `nc`
//! for an echo, `curl` for HTTP (and a 10 MB download it reads slowly), a
//! slow Rust reader, and connections the task makes itself.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use sansio::Backend;
use sansio::net::TcpOptions;
use sansio::prelude::*;
use util::next;
use util::tcp::{Dial, Mode, Quit, TcpOut, TcpServer, TcpWorker, TcpWorkerOutput, pattern};

fn runtime(backend: Backend) -> Runtime<TcpWorker> {
    Runtime::<TcpWorker>::builder()
        .workers(2)
        .backend(backend)
        .build()
        .unwrap()
}

fn next_out(runtime: &Runtime<TcpWorker>) -> TcpOut {
    match next(runtime) {
        Event::Output {
            output: TcpWorkerOutput::Server(out),
            ..
        } => out,
        other => panic!("unexpected {other:?}"),
    }
}

/// Spawns a server and returns its address.
fn serve(runtime: &Runtime<TcpWorker>, options: TcpOptions, mode: Mode) -> SocketAddr {
    runtime
        .spawn(TcpServer::new(
            "127.0.0.1:0".parse().unwrap(),
            options,
            mode,
        ))
        .unwrap();
    match next_out(runtime) {
        TcpOut::Listening(Ok(addr)) => addr,
        other => panic!("expected to listen, got {other:?}"),
    }
}

/// The expected 10 MB body.
fn body(len: usize) -> Vec<u8> {
    (0..len).map(pattern).collect()
}

/// Runs a command line with a time limit, returning its stdout.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|error| panic!("{program} could not start ({error}); .ci/run installs it"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {:?}",
        output.status
    );
    output.stdout
}

const TEN_MB: usize = 10 << 20;

all_backend_tests! {
    fn nc_gets_its_lines_echoed(backend: Backend) {
        let runtime = runtime(backend);
        let addr = serve(&runtime, TcpOptions::default(), Mode::Echo);
        let port = addr.port().to_string();
        let input: Vec<u8> = (0..2000).flat_map(|n| format!("line {n}\n").into_bytes()).collect();
        // -N: shut down the socket after the end of stdin; -w: time limit.
        let echoed = run("nc", &["-N", "-w", "10", "127.0.0.1", &port], &input);
        assert_eq!(echoed, input);
    }

    fn curl_gets_an_http_response_and_an_error_status(backend: Backend) {
        let runtime = runtime(backend);
        let addr = serve(&runtime, TcpOptions::default(), Mode::Http { body_len: 1000 });
        let url = format!("http://{addr}/");
        let got = run("curl", &["-sS", "--max-time", "10", &url], b"");
        assert_eq!(got, body(1000));
        let status = run(
            "curl",
            &["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", &url],
            b"",
        );
        assert_eq!(status, b"405");
    }

    fn ten_megabytes_reach_a_slow_curl_intact(backend: Backend) {
        let runtime = runtime(backend);
        // A small send limit, so the transfer runs on backpressure.
        let options = TcpOptions::default().send_limit(256 << 10);
        let addr = serve(&runtime, options, Mode::Http { body_len: TEN_MB });
        let url = format!("http://{addr}/");
        // --limit-rate makes curl a slow reader: about a second for 10 MB.
        let got = run("curl", &["-sS", "--max-time", "60", "--limit-rate", "12M", &url], b"");
        assert_eq!(got.len(), TEN_MB);
        assert!(got == body(TEN_MB), "the body arrived changed");
        let rejected: u64 = runtime.stats().workers.iter().map(|w| w.tcp_send_rejected).sum();
        assert!(rejected > 0, "the send limit was never reached: no backpressure was tested");
    }

    fn ten_megabytes_reach_a_slow_rust_reader_intact(backend: Backend) {
        let runtime = runtime(backend);
        let options = TcpOptions::default().send_limit(128 << 10);
        let addr = serve(&runtime, options, Mode::Http { body_len: TEN_MB });
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(util::PATIENCE)).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let mut response = Vec::with_capacity(TEN_MB + 256);
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            let read = stream.read(&mut chunk).unwrap();
            if read == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..read]);
            // Slower than the server can write: the kernel buffers fill and
            // the server's queue waits for writability.
            std::thread::sleep(Duration::from_micros(500));
        }
        let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(response.len() - head_end, TEN_MB);
        assert!(response[head_end..] == body(TEN_MB)[..], "the body arrived changed");
    }

    fn a_task_connects_out_and_talks(backend: Backend) {
        let runtime = runtime(backend);
        // The task's own connection: connect to a std listener that answers.
        let peer = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer_addr = peer.local_addr().unwrap();
        let answering = std::thread::spawn(move || {
            let (mut stream, _) = peer.accept().unwrap();
            stream.write_all(b"hello from the peer").unwrap();
        });
        let task = runtime
            .spawn(TcpServer::new("127.0.0.1:0".parse().unwrap(), TcpOptions::default(), Mode::Echo))
            .unwrap();
        assert!(matches!(next_out(&runtime), TcpOut::Listening(Ok(_))));
        runtime.send(task, Dial(peer_addr)).unwrap();
        match next_out(&runtime) {
            TcpOut::Connected(Ok(addr)) => assert_eq!(addr, peer_addr),
            other => panic!("unexpected {other:?}"),
        }
        let mut received = Vec::new();
        loop {
            match next_out(&runtime) {
                TcpOut::Received(data) => received.extend(data),
                TcpOut::PeerClosed(_) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, b"hello from the peer");
        answering.join().unwrap();
    }

    fn connecting_to_a_closed_port_is_reported(backend: Backend) {
        let runtime = runtime(backend);
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let task = runtime
            .spawn(TcpServer::new("127.0.0.1:0".parse().unwrap(), TcpOptions::default(), Mode::Echo))
            .unwrap();
        assert!(matches!(next_out(&runtime), TcpOut::Listening(Ok(_))));
        runtime.send(task, Dial(closed)).unwrap();
        match next_out(&runtime) {
            TcpOut::Connected(Err(error)) => {
                assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn a_task_that_ends_closes_its_connections(backend: Backend) {
        let runtime = runtime(backend);
        let task = runtime
            .spawn(TcpServer::new("127.0.0.1:0".parse().unwrap(), TcpOptions::default(), Mode::Echo))
            .unwrap();
        let addr = match next_out(&runtime) {
            TcpOut::Listening(Ok(addr)) => addr,
            other => panic!("unexpected {other:?}"),
        };
        let mut client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(util::PATIENCE)).unwrap();
        assert!(matches!(next_out(&runtime), TcpOut::Accepted(_)));
        client.write_all(b"ping").unwrap();
        let mut echoed = [0u8; 4];
        client.read_exact(&mut echoed).unwrap();
        assert_eq!(&echoed, b"ping");
        runtime.send(task, Quit).unwrap();
        let mut rest = Vec::new();
        let read = client.read_to_end(&mut rest);
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "the connection closed with its task: {read:?}"
        );
        util::eventually("the sockets are closed", || {
            runtime.stats().workers.iter().map(|w| w.tcp_sockets).sum::<u64>() == 0
        });
        assert!(TcpStream::connect(addr).is_err(), "the listener closed with its task");
    }
}
