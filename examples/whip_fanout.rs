//! The fan-out cost of the WHIP/WHEP server (`src/whip/`), without a
//! browser: an in-process str0m publisher sends one stream (30 frames/s of
//! `--frame` bytes, 10,400 by default: about 2.5 Mbit/s, plus audio) to 1,
//! 10, 100 and 500 in-process viewers, on 1 and then 2 workers. Each row
//! gives the packets the server forwarded per second and the server's CPU
//! per forwarded packet: the workers' thread CPU time (from
//! `/proc/self/task/*/schedstat`), not the simulated peers'. The viewers
//! count what arrives without decrypting it, so that 500 of them fit on a
//! small machine beside the server.
//!
//! ```text
//! cargo run --release --example whip_fanout
//! cargo run --release --example whip_fanout -- --viewers 1,10,100 --workers 2 --seconds 5
//! ```

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use sansio::Backend;
use sansio_suite::whip::client::{Role, TestPeer};
use sansio_suite::whip::server::{self, Config, Server};
use str0m::format::Codec;

/// The WHIP/WHEP server's fan-out cost.
#[derive(Debug, Parser)]
#[command(about = "The WHIP/WHEP server's CPU per forwarded packet at 1 to 500 viewers")]
struct Args {
    /// Viewer counts, one row each.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,500")]
    viewers: Vec<usize>,
    /// Worker counts, one set of rows each.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<usize>,
    /// Bytes per video frame, 30 frames a second.
    #[arg(long, default_value_t = 10_400)]
    frame: usize,
    /// Seconds measured per row (after a second of warm-up).
    #[arg(long, default_value_t = 3)]
    seconds: u64,
}

/// CPU time the server's worker threads have used.
fn worker_cpu() -> Duration {
    let mut total = Duration::ZERO;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return total;
    };
    for task in tasks.flatten() {
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !name.starts_with("sansio-w") {
            continue;
        }
        let nanos = std::fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        total += Duration::from_nanos(nanos);
    }
    total
}

fn sent(server: &Server) -> u64 {
    server
        .runtime
        .stats()
        .workers
        .iter()
        .map(|w| w.udp_sent)
        .sum()
}

/// One row: the forwarded packets per second, the server's CPU share of
/// one core, µs of CPU per forwarded packet.
fn row(workers: usize, viewers: usize, args: &Args) -> Result<(f64, f64, f64), String> {
    let config = Config {
        http: "127.0.0.1:0".parse().map_err(|_| "address")?,
        udp: "127.0.0.1:0".parse().map_err(|_| "address")?,
        token: None,
        idle: Duration::from_secs(30),
        workers,
    };
    let server = server::start(config, Backend::Mio)?;
    let publisher = TestPeer::join(
        server.http,
        "bench",
        Role::Publisher {
            frame: args.frame,
            codec: Codec::Vp8,
        },
    )?;
    let mut peers = Vec::with_capacity(viewers);
    for _ in 0..viewers {
        peers.push(TestPeer::join(server.http, "bench", Role::Counter)?);
        // The controller's events (sessions starting) need taking.
        while server.runtime.try_next_event().is_some() {}
    }
    let give_up = Instant::now() + Duration::from_secs(120);
    while !publisher.counts.connected.load(Ordering::SeqCst)
        || peers
            .iter()
            .any(|peer| !peer.counts.connected.load(Ordering::SeqCst))
    {
        if Instant::now() > give_up {
            return Err("the peers did not all connect within 120 s".into());
        }
        while server.runtime.try_next_event().is_some() {}
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, sent0, at0) = (worker_cpu(), sent(&server), Instant::now());
    std::thread::sleep(Duration::from_secs(args.seconds));
    let (cpu1, sent1, at1) = (worker_cpu(), sent(&server), Instant::now());
    let elapsed = (at1 - at0).as_secs_f64();
    let packets = (sent1 - sent0) as f64;
    let cpu = (cpu1 - cpu0).as_secs_f64();
    drop(peers);
    drop(publisher);
    let _ = server.runtime.shutdown(Duration::from_secs(5));
    let per_packet = if packets > 0.0 {
        cpu / packets * 1e6
    } else {
        f64::NAN
    };
    Ok((packets / elapsed, cpu / elapsed * 100.0, per_packet))
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Packets per second of one viewer's stream: the frames' packets
    // (about 1,200 bytes each) and 50 audio packets.
    let per_viewer = 30.0 * (args.frame as f64 / 1150.0).ceil() + 50.0;
    println!(
        "one stream of {} bytes × 30 frames/s (~{:.1} Mbit/s, ~{per_viewer:.0} packets/s per viewer)\n",
        args.frame,
        args.frame as f64 * 30.0 * 8.0 / 1e6
    );
    println!(
        "| workers | viewers | forwarded packets/s | server CPU (% of a core) | µs CPU per packet | viewers per core at this rate |"
    );
    println!(
        "| ------- | ------- | ------------------- | ------------------------ | ----------------- | ----------------------------- |"
    );
    for &workers in &args.workers {
        for &viewers in &args.viewers {
            match row(workers, viewers, &args) {
                Ok((rate, cpu, per_packet)) => println!(
                    "| {workers} | {viewers} | {rate:.0} | {cpu:.0} % | {per_packet:.1} | {:.0} |",
                    1e6 / (per_packet * per_viewer)
                ),
                Err(failure) => {
                    eprintln!("whip_fanout: {workers} workers, {viewers} viewers: {failure}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    ExitCode::SUCCESS
}
