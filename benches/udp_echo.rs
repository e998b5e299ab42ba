//! Side-by-side UDP echo: the same load generator against, one after
//! another, a sansio echo on one worker (mio with GSO, the default; mio with
//! GSO off; mio with GRO on; busy-poll; io_uring; io_uring with an `SQPOLL`
//! thread), a tokio `current_thread` echo, and a plain blocking `recvmmsg`/`sendmmsg` loop; prints a table of packets/s
//! and round-trip percentiles, and sansio's ratios to the others.
//!
//! ```text
//! cargo bench --bench udp_echo                 # 3 rounds, 2 s per run
//! SANSIO_BENCH_ROUNDS=5 SANSIO_BENCH_SECONDS=3 cargo bench --bench udp_echo
//! SANSIO_BENCH_ONLY="GRO on) / 64 B; raw recvmmsg/sendmmsg / 64 B" cargo bench --bench udp_echo
//! ```
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
use sansio_suite::bench::{env, median};
use sansio_suite::echo;
use sansio_suite::loadgen::{self, Load, Report};

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

const SANSIO: &str = "sansio (1 worker, mio)";
const SANSIO_NO_GSO: &str = "sansio (1 worker, mio, GSO off)";
const SANSIO_GRO: &str = "sansio (1 worker, mio, GRO on)";
const SANSIO_BUSY: &str = "sansio (1 worker, busy-poll)";
const SANSIO_URING: &str = "sansio (1 worker, io-uring)";
const SANSIO_SQPOLL: &str = "sansio (1 worker, io-uring, SQPOLL)";
const TOKIO: &str = "tokio current_thread";
const RAW: &str = "raw recvmmsg/sendmmsg";

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
    if env("SANSIO_BENCH_PIN", 0u8) == 0 {
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

fn main() {
    let rounds: usize = env("SANSIO_BENCH_ROUNDS", 3usize).clamp(1, 50);
    let seconds: f64 = env("SANSIO_BENCH_SECONDS", 2.0f64).clamp(0.1, 60.0);
    let duration = Duration::from_secs_f64(seconds);
    let loads: [LoadSpec; 3] = [
        (HEAVY, 4, 64, 1200, false),
        (HEAVY_GSO, 4, 64, 1200, true),
        (LIGHT, 1, 8, 64, false),
    ];
    let servers: [fn() -> Server; 8] = [
        sansio_server,
        sansio_no_gso_server,
        sansio_gro_server,
        sansio_busy_server,
        sansio_uring_server,
        sansio_sqpoll_server,
        tokio_server,
        raw_server,
    ];
    let names = [
        SANSIO,
        SANSIO_NO_GSO,
        SANSIO_GRO,
        SANSIO_BUSY,
        SANSIO_URING,
        SANSIO_SQPOLL,
        TOKIO,
        RAW,
    ];
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
    let mut runs: Vec<Round> = Vec::new();
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        let mut row = Vec::new();
        for (start, name) in servers.into_iter().zip(names) {
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
            for load in loads {
                if !wanted(server.name, load.0) {
                    continue;
                }
                let report = measure(&server, load, duration);
                println!("  {:<31} {:<42} {report}", server.name, load.0);
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
    println!();
    println!("Medians over {rounds} round(s) of {seconds} s per run:");
    println!();
    println!("| server | load | packets/s | Mbit/s | p50 | p99 |");
    println!("| ------ | ---- | --------- | ------ | --- | --- |");
    for server in names {
        for (load, ..) in loads {
            let reports: Vec<Report> = runs
                .iter()
                .filter_map(|round| find(round, server, load))
                .collect();
            if reports.is_empty() {
                continue;
            }
            let of = |figure: fn(&Report) -> f64| median(reports.iter().map(figure).collect());
            println!(
                "| {server} | {load} | {:.0} | {:.1} | {:.0} µs | {:.0} µs |",
                of(Report::packets_per_sec),
                of(Report::mbit_per_sec),
                of(|report| micros(report, 0.5)),
                of(|report| micros(report, 0.99)),
            );
        }
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
