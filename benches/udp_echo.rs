//! Side-by-side UDP echo: the same load generator against, one after
//! another, a sansio echo on one worker, a tokio `current_thread` echo, and a
//! plain blocking `recvmmsg`/`sendmmsg` loop; prints a table of packets/s
//! and round-trip percentiles, and sansio's ratios to the others.
//!
//! ```text
//! cargo bench --bench udp_echo                 # 3 s per run
//! SANSIO_BENCH_SECONDS=10 cargo bench --bench udp_echo
//! ```
//!
//! Two loads: 1,200-byte datagrams with a saturating window (4 sockets × 64
//! in flight), and 64-byte datagrams with 8 in flight (latency at light
//! load). Every server and every run is bounded in time and stops by itself.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use sansio::Backend;
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

fn sansio(name: &'static str, backend: Backend) -> Server {
    let (runtime, addr) = echo::start(loopback(), 1, backend).expect("start the sansio echo");
    Server {
        name,
        addr,
        stop: Box::new(move || {
            runtime.shutdown(Duration::from_secs(2)).expect("shut down");
        }),
    }
}

fn sansio_server() -> Server {
    sansio(SANSIO, Backend::Mio)
}

fn sansio_busy_server() -> Server {
    sansio("sansio (1 worker, busy-poll)", Backend::BusyPoll)
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
const TOKIO: &str = "tokio current_thread";
const RAW: &str = "raw recvmmsg/sendmmsg";

fn measure(
    server: &Server,
    sockets: usize,
    window: usize,
    size: usize,
    duration: Duration,
) -> Report {
    loadgen::run(Load {
        server: server.addr,
        sockets,
        window,
        size,
        duration,
    })
    .expect("the load generator")
}

fn main() {
    let seconds: f64 = std::env::var("SANSIO_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let duration = Duration::from_secs_f64(seconds);
    let loads: [(&str, usize, usize, usize); 2] = [
        ("1200 B, 4 sockets × 64 in flight", 4, 64, 1200),
        ("64 B, 8 in flight", 1, 8, 64),
    ];
    let starts: [fn() -> Server; 4] = [sansio_server, sansio_busy_server, tokio_server, raw_server];
    let mut rows = Vec::new();
    for start in starts {
        let server = start();
        for (load, sockets, window, size) in loads {
            let report = measure(&server, sockets, window, size, duration);
            println!("{:<24} {load:<34} {report}", server.name);
            rows.push((server.name, load, report));
        }
        (server.stop)();
    }
    println!();
    println!("| server | load | packets/s | Mbit/s | p50 | p99 |");
    println!("| ------ | ---- | --------- | ------ | --- | --- |");
    for (server, load, report) in &rows {
        println!(
            "| {server} | {load} | {:.0} | {:.1} | {} | {} |",
            report.packets_per_sec(),
            report.mbit_per_sec(),
            report.quantile(0.5),
            report.quantile(0.99)
        );
    }
    let find = |server: &str, load: &str| {
        rows.iter()
            .find(|(s, l, _)| *s == server && *l == load)
            .map(|(_, _, report)| report)
            .expect("measured")
    };
    let (heavy, light) = (loads[0].0, loads[1].0);
    let p50 = |report: &Report| {
        report
            .histogram
            .quantile(0.5)
            .map_or(f64::NAN, |d| d.as_secs_f64())
    };
    println!();
    println!(
        "sansio / raw packets/s at {heavy}: {:.2}×",
        find(SANSIO, heavy).packets_per_sec() / find(RAW, heavy).packets_per_sec()
    );
    println!(
        "sansio / tokio packets/s at {heavy}: {:.2}×",
        find(SANSIO, heavy).packets_per_sec() / find(TOKIO, heavy).packets_per_sec()
    );
    println!(
        "sansio / raw p50 at {light}: {:.2}×",
        p50(find(SANSIO, light)) / p50(find(RAW, light))
    );
}
