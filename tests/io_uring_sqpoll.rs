//! io_uring with a submission-polling kernel thread
//! (`Builder::io_uring_sqpoll`): the thread is really there while the
//! runtime runs, UDP and TCP work through it, it and the worker fall asleep
//! once traffic stops, and the option is refused for another backend.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use sansio::Backend;
use sansio::net::TcpOptions;
use sansio::prelude::*;
use util::tcp::{Mode, TcpOut, TcpServer, TcpWorker, TcpWorkerOutput};
use util::udp::{Net, NetOutput, UdpOut, UdpTask, any_port, client, recv};
use util::{PATIENCE, eventually, next, thread_cpu, threads_named, wait_for_threads};

/// How long the polling thread polls after its last entry in these tests.
const IDLE: Duration = Duration::from_millis(5);

/// These tests count and time the process's polling threads: one at a
/// time, so that another test's rings are not among them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The kernel names a ring's polling thread `iou-sqp-<pid>`.
fn polling_threads() -> Vec<(String, u64)> {
    threads_named("iou-sqp-")
}

fn udp_runtime(prefix: &str) -> Runtime<Net> {
    Runtime::<Net>::builder()
        .workers(1)
        .backend(Backend::IoUring)
        .io_uring_sqpoll(IDLE)
        .thread_name(format!("{prefix}-w"))
        .build()
        .expect("an io_uring runtime with SQPOLL (Linux 5.11 or later)")
}

fn bound(runtime: &Runtime<Net>) -> SocketAddr {
    runtime.spawn(UdpTask::echo(any_port())).unwrap();
    match next(runtime) {
        Event::Output {
            output: NetOutput::Udp(UdpOut::Bound(Ok(addr))),
            ..
        } => addr,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn each_worker_gets_a_polling_thread_that_goes_with_the_runtime() {
    let _alone = alone();
    let before = polling_threads().len();
    let runtime = Runtime::<Net>::builder()
        .workers(2)
        .backend(Backend::IoUring)
        .io_uring_sqpoll(IDLE)
        .thread_name("sqp-count-w")
        .build()
        .unwrap();
    let give_up = Instant::now() + PATIENCE;
    while polling_threads().len() < before + 2 && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        polling_threads().len(),
        before + 2,
        "one SQPOLL thread per worker's ring: {:?}",
        polling_threads()
    );
    runtime.shutdown(Duration::from_secs(5)).unwrap();
    let give_up = Instant::now() + PATIENCE;
    while polling_threads().len() > before && Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        polling_threads().len(),
        before,
        "the rings' threads end with them"
    );
}

#[test]
fn udp_echoes_every_datagram_one_at_a_time_and_in_bursts() {
    let _alone = alone();
    let runtime = udp_runtime("sqp-udp");
    let server = bound(&runtime);
    let peer = client();
    // One at a time: each send is queued while the polling thread may be
    // asleep (the idle time passes between some of them).
    for n in 0..20u8 {
        peer.send_to(&[n; 64], server).unwrap();
        assert_eq!(recv(&peer).0, vec![n; 64]);
        if n % 5 == 0 {
            std::thread::sleep(IDLE * 3);
        }
    }
    // Bursts: batches of sends in flight at once.
    for burst in 0..40u8 {
        for n in 0..50u8 {
            peer.send_to(&[burst, n], server).unwrap();
        }
        // In order: a batch's linked sends must reach the kernel whole.
        let got: Vec<Vec<u8>> = (0..50).map(|_| recv(&peer).0).collect();
        let want: Vec<Vec<u8>> = (0..50u8).map(|n| vec![burst, n]).collect();
        assert_eq!(got, want, "burst {burst}");
    }
    eventually("every datagram counted as received", || {
        runtime.stats().workers[0].udp_received == 20 + 40 * 50
    });
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn tcp_echoes_and_closes_through_the_polling_thread() {
    let _alone = alone();
    let runtime = Runtime::<TcpWorker>::builder()
        .workers(1)
        .backend(Backend::IoUring)
        .io_uring_sqpoll(IDLE)
        .build()
        .unwrap();
    runtime
        .spawn(TcpServer::new(
            any_port(),
            TcpOptions::default(),
            Mode::Echo,
        ))
        .unwrap();
    let addr = loop {
        match next(&runtime) {
            Event::Output {
                output: TcpWorkerOutput::Server(TcpOut::Listening(Ok(addr))),
                ..
            } => break addr,
            Event::Output { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    for round in 0..3u8 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8 ^ round).collect();
        stream.write_all(&sent).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        // The server closes once the peer has: the read ends.
        stream.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), sent.len(), "round {round}");
        assert!(back == sent, "round {round}: the echo differs");
        // Let the polling thread fall asleep between connections.
        std::thread::sleep(IDLE * 3);
    }
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_worker_and_its_polling_thread_fall_asleep_when_traffic_stops() {
    let _alone = alone();
    let prefix = "sqp-idle";
    let before: Vec<(String, u64)> = polling_threads();
    let runtime = udp_runtime(prefix);
    let server = bound(&runtime);
    let peer = client();
    for n in 0..50u8 {
        peer.send_to(&[n; 100], server).unwrap();
    }
    for n in 0..50u8 {
        assert_eq!(recv(&peer).0, vec![n; 100]);
    }
    let worker = wait_for_threads(prefix, 1).remove(0);
    let ours: Vec<(String, u64)> = polling_threads()
        .into_iter()
        .filter(|thread| !before.contains(thread))
        .collect();
    assert_eq!(ours.len(), 1, "the ring's polling thread: {ours:?}");
    // Past the polling thread's idle time, and the 1 ms a finished send
    // may wait to be reported.
    std::thread::sleep(Duration::from_millis(100));
    let threads = [worker, ours[0].clone()];
    let used_before: Vec<Duration> = threads.iter().map(|(_, tid)| thread_cpu(*tid)).collect();
    let loops_before = runtime.stats().workers[0].loop_iterations;
    std::thread::sleep(Duration::from_secs(1));
    for ((name, tid), before) in threads.iter().zip(used_before) {
        let used = thread_cpu(*tid) - before;
        assert!(
            used < Duration::from_millis(20),
            "{name} used {used:?} of CPU while idle"
        );
    }
    assert_eq!(
        runtime.stats().workers[0].loop_iterations,
        loops_before,
        "the worker woke up"
    );
    // A datagram wakes both at once.
    let sent = Instant::now();
    peer.send_to(b"again", server).unwrap();
    assert_eq!(recv(&peer).0, b"again");
    assert!(sent.elapsed() < Duration::from_secs(1));
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn sqpoll_is_refused_for_another_backend() {
    for backend in [Backend::Mio, Backend::Polling, Backend::BusyPoll] {
        let error = Runtime::<Net>::builder()
            .workers(1)
            .backend(backend)
            .io_uring_sqpoll(IDLE)
            .build()
            .err()
            .unwrap_or_else(|| panic!("{backend:?} took io_uring_sqpoll"));
        let message = error.to_string();
        assert!(
            matches!(error, sansio::Error::Config(_))
                && message.contains("io_uring_sqpoll")
                && message.contains(&format!("{backend:?}")),
            "{message}"
        );
    }
}
