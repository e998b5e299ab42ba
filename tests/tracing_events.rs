//! What the runtime logs through `tracing` (feature `tracing`, on by
//! default): the lines a server's operator sees with a subscriber installed —
//! workers starting and stopping inside their span, a task's panic with its
//! message, a listener out of descriptors and accepting again, GSO turned
//! off, the drops report, shutdown. Captured by a `tracing-subscriber` fmt
//! layer writing into memory, as an application's would write to stderr.

mod util;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sansio::faults::{Call, Fault, FaultPlan};
use sansio::net::{TcpEvent, TcpOptions, UdpOptions};
use sansio::prelude::*;
use sansio::{Backend, Runtime};
use tracing_subscriber::fmt::MakeWriter;

use util::PATIENCE;
use util::tasks::{Boom, Echo, Media};
use util::udp::{Command, Net, NetOutput, UdpOut, UdpTask};

/// Everything every test's runtimes logged, as formatted lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// The log of this process, installed once (every level of `sansio`).
fn captured() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .with_env_filter("sansio=debug")
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        log
    })
}

/// Waits until a line containing every one of `parts` is logged; returns it.
fn line_with(parts: &[&str]) -> String {
    let log = captured();
    let give_up = Instant::now() + PATIENCE;
    loop {
        let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
        if let Some(line) = text
            .lines()
            .find(|line| parts.iter().all(|part| line.contains(part)))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < give_up,
            "no line with {parts:?} was logged; the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn workers_start_and_stop_in_their_span_and_a_panic_is_an_error_with_its_message() {
    captured();
    let runtime = Runtime::<Media>::builder()
        .workers(1)
        .thread_name("traced-media-")
        .build()
        .unwrap();
    let echo = runtime.spawn(Echo::default()).unwrap();
    runtime
        .send(echo, Boom("the tracing test's panic".into()))
        .unwrap();
    util::events_until(&runtime, |event| matches!(event, Event::Panicked { .. }));
    // Other tests' runtimes log too: their workers are of other kinds.
    let started = line_with(&["worker 0 started (mio backend)", "kind=\"Media\""]);
    assert!(started.contains("INFO"), "{started}");
    assert!(started.contains("sansio_worker{worker=0"), "{started}");
    let panicked = line_with(&["panicked and was ended: the tracing test's panic"]);
    assert!(panicked.contains("ERROR"), "{panicked}");
    assert!(panicked.contains("sansio_worker{worker=0"), "{panicked}");
    line_with(&["spawning a Echo task", "DEBUG"]);
    runtime.shutdown(Duration::from_secs(2)).unwrap();
    line_with(&["shutting down 1 worker(s) of Media"]);
    line_with(&["shut down Media: 0 task(s) finished"]);
    line_with(&["worker 0 stopped", "kind=\"Media\""]);
}

/// Listens, reporting the address; takes accept failures (injected) quietly.
#[sansio::task(output = SocketAddr)]
struct Listener;

#[sansio::task]
impl Listener {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.tcp_listen("127.0.0.1:0".parse().unwrap(), TcpOptions::default());
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        if let TcpEvent::Listening {
            result: Ok(addr), ..
        } = event
        {
            ctx.emit(addr);
        }
    }
}

#[sansio::worker]
enum Listening {
    Listener(Listener),
}

#[test]
fn an_accept_out_of_descriptors_is_a_warning_then_accepting_again_is_said() {
    captured();
    // EMFILE on half the accepts: with 20 connections, some fail (the
    // listener backs off and tries again) and every one is accepted.
    let plan = FaultPlan::new(11).inject(Call::Accept, Fault::TooManyFiles, 0.5);
    let injected = plan.injected();
    let runtime = Runtime::<Listening>::builder()
        .workers(1)
        .faults(plan)
        .build()
        .unwrap();
    runtime.spawn(Listener).unwrap();
    let mut addr = None;
    util::events_until(&runtime, |event| {
        if let Event::Output {
            output: ListeningOutput::Listener(listening),
            ..
        } = event
        {
            addr = Some(*listening);
        }
        addr.is_some()
    });
    let addr = addr.expect("the listener reported its address");
    let clients: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let give_up = Instant::now() + PATIENCE;
    while runtime.stats().workers[0].tcp_accepted < 20 {
        assert!(Instant::now() < give_up, "{:?}", runtime.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(injected.count(Call::Accept, Fault::TooManyFiles) > 0);
    let warning = line_with(&["accept failed", "backlog"]);
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("Too many open files"), "{warning}");
    line_with(&["accepting again in", "DEBUG"]);
    line_with(&["accepting again", "INFO"]);
    drop(clients);
    runtime.shutdown(Duration::from_secs(2)).unwrap();
}

#[test]
fn gso_turned_off_is_a_warning_and_drops_are_reported_once_a_second() {
    captured();
    let peer = util::udp::client();
    let to = peer.local_addr().unwrap();
    let plan = FaultPlan::new(3).inject(Call::UdpSend, Fault::GsoUnsupported, 1.0);
    let runtime = Runtime::<Net>::builder()
        .workers(1)
        .backend(Backend::Mio)
        .faults(plan)
        .build()
        .unwrap();
    let options = UdpOptions::default().gso(true).max_datagram(100);
    let task = runtime
        .spawn(UdpTask::listener(util::udp::any_port(), options))
        .unwrap();
    let mut bound = None;
    util::events_until(&runtime, |event| {
        if let Event::Output {
            output: NetOutput::Udp(UdpOut::Bound(result)),
            ..
        } = event
        {
            bound = Some(*result.as_ref().unwrap());
        }
        bound.is_some()
    });
    runtime
        .send(
            task,
            Command::Run {
                to,
                count: 8,
                size: 100,
            },
        )
        .unwrap();
    let warning = line_with(&["the kernel refused a GSO run"]);
    assert!(warning.contains("WARN"), "{warning}");
    // Datagrams over the socket's 100 bytes are dropped: reported within
    // about a second, once, with their count.
    for _ in 0..3 {
        peer.send_to(&[7; 300], bound.unwrap()).unwrap();
    }
    // The three may arrive in one turn or several, so in one report or
    // more: their counts add up to three.
    let give_up = Instant::now() + PATIENCE;
    loop {
        let text = String::from_utf8_lossy(&captured().0.lock().unwrap()).into_owned();
        let reported: u64 = text
            .lines()
            .filter(|line| line.contains("dropped or refused in the last second"))
            .inspect(|line| assert!(line.contains("DEBUG"), "{line}"))
            .filter_map(|line| line.split("udp_truncated +").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .sum();
        if reported == 3 {
            break;
        }
        assert!(reported < 3, "more drops reported than made:\n{text}");
        assert!(
            Instant::now() < give_up,
            "{reported} of 3 drops reported:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    runtime.shutdown(Duration::from_secs(2)).unwrap();
}
