//! Side-by-side UDP echo: the same load generator against, one after
//! another, a sansio echo on one worker (mio with GSO, the default; mio with
//! GSO off; mio with GRO on; busy-poll; io_uring; io_uring with an `SQPOLL`
//! thread), a tokio `current_thread` echo, a raw mio loop (`recv_from`/`send_to`
//! per datagram) and a plain blocking `recvmmsg`/`sendmmsg` loop; prints a table of
//! packets/s and round-trip percentiles, and sansio's ratios to the others.
//!
//! ```text
//! cargo bench --bench udp_echo                 # 3 rounds, 2 s per run
//! SANSIO_BENCH_ROUNDS=5 SANSIO_BENCH_SECONDS=3 cargo bench --bench udp_echo
//! SANSIO_BENCH_ONLY="GRO on) / 64 B; raw recvmmsg/sendmmsg / 64 B" cargo bench --bench udp_echo
//! SANSIO_BENCH_CHART=docs/udp_echo.svg cargo bench --bench udp_echo   # the chart
//! ```
//!
//! `SANSIO_BENCH_CHART=FILE` runs the in-flight sweep instead: 1,200-byte
//! datagrams with 1, 8, 32 (4 sockets × 8) and 256 (4 × 64) in flight, on
//! sansio's mio, busy-poll and io_uring backends, tokio, the raw mio loop and
//! the raw `recvmmsg` loop; prints its table and draws packets/s and the
//! p50/p99 round trip by in-flight count to the SVG file `FILE`, with the
//! machine and date. A bad value of any `SANSIO_BENCH_*` variable is an
//! error. On a terminal, stderr shows the runs done and the time left.
//!
//! `SANSIO_BENCH_ONLY` runs only the (server, load) pairs whose name,
//! `server / load` as in the table, contains one of its parts, separated by
//! semicolons (the names contain commas), or ends with a part that ends
//! with `$` (`in flight$`: the saturating load without its client-GSO
//! variant); ratios whose figures were not measured are left out.
//!
//! `SANSIO_BENCH_PIN=1` runs each server's threads on the last CPU the
//! process may use and the load generator's on the others, so that the two
//! do not trade places from one run to the next (which spreads the heavy
//! rows' figures by ±30 % on a 2-CPU machine); the figures are then those of
//! a server with one CPU to itself. Both sides of a comparison must be run
//! the same way.
//!
//! Three loads: 1,200-byte datagrams with a saturating window (4 sockets ×
//! 64 in flight); the same with clients that send each batch as GSO
//! messages (what GRO is for); and 64-byte datagrams with 8 in flight
//! (latency at light load). A round runs every server under every load, one
//! server at a time; rounds repeat that, so that a slow spell of the machine
//! hits every server alike. The table gives each figure's median over the
//! rounds, and the ratios are given per round. Every server and every run is
//! bounded in time and stops by itself.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sansio::Backend;
use sansio::net::UdpOptions;
use sansio_suite::bench::{Progress, median, rounds_and_seconds, setting};
use sansio_suite::loadgen::{self, Load, Report};
use sansio_suite::{chart, echo};

/// A server under test, running on its own thread until stopped.
struct Server {
    name: &'static str,
    addr: SocketAddr,
    stop: Box<dyn FnOnce()>,
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid")
}

/// A std socket on loopback with large buffers, as every server gets.
fn bound_socket() -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    socket.set_recv_buffer_size(4 << 20)?;
    socket.set_send_buffer_size(4 << 20)?;
    socket.bind(&loopback().into())?;
    Ok(socket.into())
}

fn sansio(name: &'static str, backend: Backend, options: UdpOptions) -> Server {
    let (runtime, addr) =
        echo::start_with(loopback(), 1, backend, options).expect("start the sansio echo");
    Server {
        name,
        addr,
        stop: Box::new(move || {
            runtime.shutdown(Duration::from_secs(2)).expect("shut down");
        }),
    }
}

fn sansio_server() -> Server {
    sansio(SANSIO, Backend::Mio, echo::options())
}

fn sansio_no_gso_server() -> Server {
    sansio(SANSIO_NO_GSO, Backend::Mio, echo::options().gso(false))
}

fn sansio_gro_server() -> Server {
    sansio(SANSIO_GRO, Backend::Mio, echo::options().gro(true))
}

fn sansio_busy_server() -> Server {
    sansio(SANSIO_BUSY, Backend::BusyPoll, echo::options())
}

fn sansio_uring_server() -> Server {
    sansio(SANSIO_URING, Backend::IoUring, echo::options())
}

/// io_uring with a polling kernel thread (it polls for 10 ms after the
/// last submission, longer than any gap between a load's batches).
fn sansio_sqpoll_server() -> Server {
    let builder = sansio::Runtime::<echo::EchoWorker>::builder()
        .workers(1)
        .backend(Backend::IoUring)
        .io_uring_sqpoll(Duration::from_millis(10));
    let (runtime, addr) = echo::start_built(builder, 1, loopback(), echo::options())
        .expect("start the sansio echo with SQPOLL");
    Server {
        name: SANSIO_SQPOLL,
        addr,
        stop: Box::new(move || {
            runtime.shutdown(Duration::from_secs(2)).expect("shut down");
        }),
    }
}

/// Runs `serve` on a thread with a stop flag; `serve` must check the flag at
/// least every 100 ms.
fn threaded(
    name: &'static str,
    serve: impl FnOnce(UdpSocket, Arc<AtomicBool>) + Send + 'static,
) -> Server {
    let socket = bound_socket().expect("bind");
    let addr = socket.local_addr().expect("local address");
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread: JoinHandle<()> = thread::spawn(move || serve(socket, flag));
    Server {
        name,
        addr,
        stop: Box::new(move || {
            stop.store(true, Ordering::Relaxed);
            thread.join().expect("the server thread");
        }),
    }
}

fn tokio_server() -> Server {
    threaded(TOKIO, |socket, stop| {
        socket.set_nonblocking(true).expect("nonblocking");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(async move {
            let socket = tokio::net::UdpSocket::from_std(socket).expect("register");
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let received =
                    tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf))
                        .await;
                if let Ok(Ok((len, from))) = received {
                    let _ = socket.send_to(&buf[..len], from).await;
                }
            }
        });
    })
}

/// The reference: a blocking `recvmmsg` of up to 32 datagrams, then one
/// `sendmmsg` sending them all back.
fn raw_server() -> Server {
    threaded(RAW, |socket, stop| {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        const BATCH: usize = 32;
        let fd = socket.as_raw_fd();
        let mut bufs = vec![[0u8; 2048]; BATCH];
        // SAFETY: zeroed C structs are valid initial values.
        let mut names: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
        let mut iovecs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|buf| libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            })
            .collect();
        // SAFETY: as above.
        let mut headers: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
        while !stop.load(Ordering::Relaxed) {
            for i in 0..BATCH {
                headers[i].msg_hdr.msg_name = (&raw mut names[i]).cast();
                headers[i].msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as u32;
                iovecs[i].iov_len = 2048;
                headers[i].msg_hdr.msg_iov = &mut iovecs[i];
                headers[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: every header points into live, exclusively owned buffers.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    headers.as_mut_ptr(),
                    BATCH as u32,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if got <= 0 {
                continue; // The 100 ms timeout: check the stop flag.
            }
            for header in headers.iter_mut().take(got as usize) {
                // Send back as much as arrived, to where it came from.
                // SAFETY: msg_iov points at this header's iovec.
                unsafe { (*header.msg_hdr.msg_iov).iov_len = header.msg_len as usize };
            }
            let mut sent = 0;
            while sent < got as usize {
                // SAFETY: as above; the kernel only reads.
                let n = unsafe {
                    libc::sendmmsg(
                        fd,
                        headers[sent..].as_mut_ptr(),
                        (got as usize - sent) as u32,
                        0,
                    )
                };
                if n <= 0 {
                    break;
                }
                sent += n as usize;
            }
        }
    })
}

/// A raw mio loop: woken by epoll, one `recv_from` and one `send_to` per
/// datagram until the socket would block (what a hand-written mio server
/// does before it batches).
fn raw_mio_server() -> Server {
    threaded(RAW_MIO, |socket, stop| {
        socket.set_nonblocking(true).expect("nonblocking");
        let mut socket = mio::net::UdpSocket::from_std(socket);
        let mut poll = mio::Poll::new().expect("a mio poll");
        poll.registry()
            .register(&mut socket, mio::Token(0), mio::Interest::READABLE)
            .expect("register");
        let mut events = mio::Events::with_capacity(8);
        let mut buf = vec![0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if poll
                .poll(&mut events, Some(Duration::from_millis(100)))
                .is_err()
            {
                continue;
            }
            // Edge-triggered: drain the socket before waiting again.
            while let Ok((len, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..len], from);
            }
        }
    })
}

const SANSIO: &str = "sansio (1 worker, mio)";
const SANSIO_NO_GSO: &str = "sansio (1 worker, mio, GSO off)";
const SANSIO_GRO: &str = "sansio (1 worker, mio, GRO on)";
const SANSIO_BUSY: &str = "sansio (1 worker, busy-poll)";
const SANSIO_URING: &str = "sansio (1 worker, io-uring)";
const SANSIO_SQPOLL: &str = "sansio (1 worker, io-uring, SQPOLL)";
const TOKIO: &str = "tokio current_thread";
const RAW: &str = "raw recvmmsg/sendmmsg";
const RAW_MIO: &str = "raw mio recv_from/send_to";

/// A load: its name, client sockets, window per socket, datagram size,
/// and whether the clients send with GSO.
type LoadSpec = (&'static str, usize, usize, usize, bool);

/// One round's measurements: (server, load, report).
type Round = Vec<(&'static str, &'static str, Report)>;

fn measure(server: &Server, load: LoadSpec, duration: Duration) -> Report {
    let (_, sockets, window, size, gso) = load;
    loadgen::run(Load {
        server: server.addr,
        sockets,
        window,
        size,
        duration,
        gso,
    })
    .expect("the load generator")
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is an empty set; the kernel writes at most
    // its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `set` was filled in by the kernel above.
    Ok((0..libc::CPU_SETSIZE as usize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Runs the calling thread, and every thread it starts from now on, on
/// `cpus` only.
fn pin_to(cpus: &[usize]) {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `cpu` came from `allowed_cpus`, below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) } != 0 {
        panic!(
            "SANSIO_BENCH_PIN: sched_setaffinity failed: {}",
            io::Error::last_os_error()
        );
    }
}

/// With `SANSIO_BENCH_PIN=1`: (the server's CPUs, the load generator's).
fn placement() -> Option<(Vec<usize>, Vec<usize>)> {
    if setting("SANSIO_BENCH_PIN", 0u8, 0..=1, "0 or 1") == 0 {
        return None;
    }
    let mut cpus = allowed_cpus().expect("SANSIO_BENCH_PIN: sched_getaffinity");
    let Some(server) = cpus.pop().filter(|_| !cpus.is_empty()) else {
        panic!("SANSIO_BENCH_PIN needs at least 2 CPUs, this process may use {cpus:?}");
    };
    Some((vec![server], cpus))
}

fn micros(report: &Report, quantile: f64) -> f64 {
    report
        .histogram
        .quantile(quantile)
        .map_or(f64::NAN, |rtt| rtt.as_secs_f64() * 1e6)
}

/// A server to start, by name.
type Start = (&'static str, fn() -> Server);

/// Every server of the default run, in the table's order.
const SERVERS: [Start; 9] = [
    (SANSIO, sansio_server),
    (SANSIO_NO_GSO, sansio_no_gso_server),
    (SANSIO_GRO, sansio_gro_server),
    (SANSIO_BUSY, sansio_busy_server),
    (SANSIO_URING, sansio_uring_server),
    (SANSIO_SQPOLL, sansio_sqpoll_server),
    (TOKIO, tokio_server),
    (RAW_MIO, raw_mio_server),
    (RAW, raw_server),
];

/// The servers of the chart.
const CHART_SERVERS: [Start; 6] = [
    (SANSIO, sansio_server),
    (SANSIO_BUSY, sansio_busy_server),
    (SANSIO_URING, sansio_uring_server),
    (TOKIO, tokio_server),
    (RAW_MIO, raw_mio_server),
    (RAW, raw_server),
];

/// The loads of the chart: 1,200 B at growing in-flight counts.
const SWEEP: [LoadSpec; 4] = [
    ("1200 B, 1 in flight", 1, 1, 1200, false),
    ("1200 B, 8 in flight", 1, 8, 1200, false),
    ("1200 B, 4 sockets × 8 in flight", 4, 8, 1200, false),
    (HEAVY, 4, 64, 1200, false),
];

fn main() {
    let (rounds, seconds) = rounds_and_seconds(3);
    let chart_file = std::env::var("SANSIO_BENCH_CHART").ok();
    let duration = Duration::from_secs_f64(seconds);
    let default_loads = [
        (HEAVY, 4, 64, 1200, false),
        (HEAVY_GSO, 4, 64, 1200, true),
        (LIGHT, 1, 8, 64, false),
    ];
    let (servers, loads): (&[Start], &[LoadSpec]) = match chart_file {
        Some(_) => (&CHART_SERVERS, &SWEEP),
        None => (&SERVERS, &default_loads),
    };
    let only: Vec<String> = std::env::var("SANSIO_BENCH_ONLY")
        .map(|only| {
            only.split(';')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let wanted = |server: &str, load: &str| {
        let name = format!("{server} / {load}");
        only.is_empty()
            || only.iter().any(|part| match part.strip_suffix('$') {
                Some(end) => name.ends_with(end),
                None => name.contains(part.as_str()),
            })
    };
    let placement = placement();
    if let Some((server, clients)) = &placement {
        println!("pinned: servers on CPU {server:?}, the load generator on {clients:?}");
    }
    let per_round = servers
        .iter()
        .map(|(name, _)| loads.iter().filter(|load| wanted(name, load.0)).count())
        .sum::<usize>();
    if per_round == 0 {
        eprintln!("SANSIO_BENCH_ONLY={only:?} matches no server and load");
        std::process::exit(2);
    }
    let mut progress = Progress::new(per_round * rounds);
    let mut runs: Vec<Round> = Vec::new();
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        let mut row = Vec::new();
        for &(name, start) in servers {
            if !loads.iter().any(|load| wanted(name, load.0)) {
                continue;
            }
            if let Some((server, _)) = &placement {
                pin_to(server); // inherited by the threads the server starts
            }
            let server = start();
            if let Some((_, clients)) = &placement {
                pin_to(clients); // and by the load generator's
            }
            for &load in loads {
                if !wanted(server.name, load.0) {
                    continue;
                }
                let report = measure(&server, load, duration);
                progress.report(&format!("  {:<31} {:<42} {report}", server.name, load.0));
                row.push((server.name, load.0, report));
            }
            (server.stop)();
        }
        runs.push(row);
    }
    let find = |round: &Round, server: &str, load: &str| -> Option<Report> {
        round
            .iter()
            .find(|(s, l, _)| *s == server && *l == load)
            .map(|(_, _, report)| report.clone())
    };
    // Each figure's median over the rounds: (server, load) → figures.
    let medians = |server: &str, load: &str| -> Option<[f64; 4]> {
        let reports: Vec<Report> = runs
            .iter()
            .filter_map(|round| find(round, server, load))
            .collect();
        if reports.is_empty() {
            return None;
        }
        let of = |figure: &dyn Fn(&Report) -> f64| median(reports.iter().map(figure).collect());
        Some([
            of(&Report::packets_per_sec),
            of(&Report::mbit_per_sec),
            of(&|report| micros(report, 0.5)),
            of(&|report| micros(report, 0.99)),
        ])
    };
    println!();
    println!("Medians over {rounds} round(s) of {seconds} s per run:");
    println!();
    println!("| server | load | packets/s | Mbit/s | p50 | p99 |");
    println!("| ------ | ---- | --------- | ------ | --- | --- |");
    for &(server, _) in servers {
        for (load, ..) in loads {
            if let Some([packets, mbit, p50, p99]) = medians(server, load) {
                println!(
                    "| {server} | {load} | {packets:.0} | {mbit:.1} | {p50:.0} µs | {p99:.0} µs |"
                );
            }
        }
    }
    if let Some(file) = chart_file {
        let contenders: Vec<chart::Contender> = servers
            .iter()
            .map(|&(server, _)| chart::Contender {
                name: server.to_owned(),
                points: loads
                    .iter()
                    .filter_map(|load| {
                        let [packets, _, p50, p99] = medians(server, load.0)?;
                        Some(((load.1 * load.2) as f64, [packets, p50, p99]))
                    })
                    .collect(),
            })
            .collect();
        let subtitle = format!(
            "1,200-byte datagrams, one server thread; medians of {rounds} round(s) of {seconds} s; {}; {}{}",
            chart::machine(),
            chart::today(),
            if placement.is_some() { "; pinned" } else { "" }
        );
        chart::draw_or_exit(
            &file,
            "UDP echo: sansio's backends, tokio, raw mio and raw recvmmsg, by datagrams in flight",
            &subtitle,
            "datagrams in flight",
            ("echoes per second (median)", "packets/s"),
            &contenders,
        );
    }
    let ratios = |name: String, figure: &dyn Fn(&Round) -> Option<f64>| {
        let Some(each) = runs.iter().map(figure).collect::<Option<Vec<f64>>>() else {
            return;
        };
        let listed: Vec<String> = each.iter().map(|ratio| format!("{ratio:.2}")).collect();
        println!(
            "{name}: median {:.2}× (rounds: {})",
            median(each.clone()),
            listed.join(", ")
        );
    };
    let pps = |round: &Round, server: &str, load: &str| {
        find(round, server, load).map(|report| report.packets_per_sec())
    };
    println!();
    ratios(format!("sansio / raw packets/s at {HEAVY}"), &|round| {
        Some(pps(round, SANSIO, HEAVY)? / pps(round, RAW, HEAVY)?)
    });
    ratios(format!("sansio / tokio packets/s at {HEAVY}"), &|round| {
        Some(pps(round, SANSIO, HEAVY)? / pps(round, TOKIO, HEAVY)?)
    });
    ratios(
        format!("sansio GSO on / off packets/s at {HEAVY}"),
        &|round| Some(pps(round, SANSIO, HEAVY)? / pps(round, SANSIO_NO_GSO, HEAVY)?),
    );
    ratios(
        format!("sansio GRO on / off packets/s at {HEAVY_GSO}"),
        &|round| Some(pps(round, SANSIO_GRO, HEAVY_GSO)? / pps(round, SANSIO, HEAVY_GSO)?),
    );
    ratios(
        format!("sansio GRO on / off packets/s at {HEAVY}"),
        &|round| Some(pps(round, SANSIO_GRO, HEAVY)? / pps(round, SANSIO, HEAVY)?),
    );
    let p50 = |round: &Round, server: &str| Some(micros(&find(round, server, LIGHT)?, 0.5));
    ratios(format!("sansio / raw p50 at {LIGHT}"), &|round| {
        Some(p50(round, SANSIO)? / p50(round, RAW)?)
    });
    ratios(format!("sansio / tokio p50 at {LIGHT}"), &|round| {
        Some(p50(round, SANSIO)? / p50(round, TOKIO)?)
    });
    ratios(
        format!("sansio io-uring / mio packets/s at {HEAVY}"),
        &|round| Some(pps(round, SANSIO_URING, HEAVY)? / pps(round, SANSIO, HEAVY)?),
    );
    ratios(format!("sansio io-uring / raw p50 at {LIGHT}"), &|round| {
        Some(p50(round, SANSIO_URING)? / p50(round, RAW)?)
    });
    ratios(
        format!("sansio io-uring with / without SQPOLL packets/s at {HEAVY}"),
        &|round| Some(pps(round, SANSIO_SQPOLL, HEAVY)? / pps(round, SANSIO_URING, HEAVY)?),
    );
    ratios(
        format!("sansio io-uring with / without SQPOLL p50 at {LIGHT}"),
        &|round| Some(p50(round, SANSIO_SQPOLL)? / p50(round, SANSIO_URING)?),
    );
}

const HEAVY: &str = "1200 B, 4 sockets × 64 in flight";
const HEAVY_GSO: &str = "1200 B, 4 sockets × 64 in flight, client GSO";
const LIGHT: &str = "64 B, 8 in flight";
