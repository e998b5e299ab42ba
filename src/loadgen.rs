//! A UDP echo load generator: `sockets` client sockets, each keeping
//! `window` datagrams of `size` bytes in flight to one server, for a bounded
//! time; it measures packets per second and each datagram's round trip.
//!
//! Each datagram carries its send time and a sequence number in its first 16
//! bytes; a reply that comes back is timed and answered with the next
//! datagram. A window that stalls for [`STALL`] is counted as lost and sent
//! again, so a lossy server slows the run down but cannot hang it.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// How long a socket waits for any reply before it counts its window lost.
pub const STALL: Duration = Duration::from_millis(200);

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// The echo server.
    pub server: SocketAddr,
    /// Client sockets, each on its own thread.
    pub sockets: usize,
    /// Datagrams in flight per socket.
    pub window: usize,
    /// Datagram size in bytes (at least 16).
    pub size: usize,
    /// How long to measure, after a short warm-up.
    pub duration: Duration,
}

/// Round trips in 1 µs buckets up to 100 ms, and a count above.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    above: u64,
    count: u64,
}

const MAX_MICROS: usize = 100_000;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; MAX_MICROS],
            above: 0,
            count: 0,
        }
    }
}

impl Histogram {
    /// Records one round trip.
    pub fn record(&mut self, rtt: Duration) {
        self.count += 1;
        match self.buckets.get_mut(rtt.as_micros() as usize) {
            Some(bucket) => *bucket += 1,
            None => self.above += 1,
        }
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
        self.above += other.above;
        self.count += other.count;
    }

    /// Round trips recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `quantile` (0 to 1) round trip, to the microsecond above; `None`
    /// without samples, or when it is beyond 100 ms.
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (micros, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Duration::from_micros(micros as u64 + 1));
            }
        }
        None
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Round trips completed in the measured time.
    pub packets: u64,
    /// Datagrams counted lost (windows that stalled).
    pub lost: u64,
    /// The measured time.
    pub elapsed: Duration,
    /// Datagram size.
    pub size: usize,
    /// Round trips.
    pub histogram: Histogram,
}

impl Report {
    /// Round trips per second.
    pub fn packets_per_sec(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64()
    }

    /// Payload megabits per second, one way.
    pub fn mbit_per_sec(&self) -> f64 {
        self.packets_per_sec() * self.size as f64 * 8.0 / 1e6
    }

    /// A latency quantile, formatted.
    pub fn quantile(&self, quantile: f64) -> String {
        match self.histogram.quantile(quantile) {
            Some(rtt) => format!("{} µs", rtt.as_micros()),
            None => "n/a".to_owned(),
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} packets/s, {:.1} Mbit/s, round trip p50 {}, p99 {}, p99.9 {} ({} lost)",
            self.packets_per_sec(),
            self.mbit_per_sec(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.quantile(0.999),
            self.lost
        )
    }
}

/// Warm-up before measuring.
const WARM_UP: Duration = Duration::from_millis(300);

/// Runs `load` and reports what it measured. Bounded: returns after
/// `load.duration` plus the warm-up and at most one [`STALL`].
pub fn run(load: Load) -> io::Result<Report> {
    if load.size < 16 || load.window == 0 || load.sockets == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "size must be at least 16 bytes, window and sockets at least 1",
        ));
    }
    let epoch = Instant::now();
    let start = epoch + WARM_UP;
    let end = start + load.duration;
    let threads: Vec<_> = (0..load.sockets)
        .map(|_| {
            let socket = UdpSocket::bind(match load.server {
                SocketAddr::V4(_) => "127.0.0.1:0",
                SocketAddr::V6(_) => "[::1]:0",
            })?;
            socket.connect(load.server)?;
            socket.set_read_timeout(Some(STALL))?;
            Ok(thread::spawn(move || {
                client(socket, load, epoch, start, end)
            }))
        })
        .collect::<io::Result<_>>()?;
    let mut report = Report {
        packets: 0,
        lost: 0,
        elapsed: load.duration,
        size: load.size,
        histogram: Histogram::default(),
    };
    for thread in threads {
        let (packets, lost, histogram) = thread
            .join()
            .map_err(|_| io::Error::other("a client thread panicked"))??;
        report.packets += packets;
        report.lost += lost;
        report.histogram.merge(&histogram);
    }
    Ok(report)
}

/// One client socket's loop.
fn client(
    socket: UdpSocket,
    load: Load,
    epoch: Instant,
    start: Instant,
    end: Instant,
) -> io::Result<(u64, u64, Histogram)> {
    let mut out = vec![0u8; load.size];
    let mut buf = vec![0u8; load.size.max(2048)];
    let mut histogram = Histogram::default();
    let (mut packets, mut lost, mut sequence) = (0u64, 0u64, 0u64);
    let mut send = |socket: &UdpSocket, sequence: &mut u64| -> io::Result<()> {
        let sent = epoch.elapsed().as_nanos() as u64;
        out[..8].copy_from_slice(&sent.to_le_bytes());
        out[8..16].copy_from_slice(&sequence.to_le_bytes());
        *sequence += 1;
        socket.send(&out).map(drop)
    };
    for _ in 0..load.window {
        send(&socket, &mut sequence)?;
    }
    let mut outstanding = load.window;
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok((packets, lost, histogram));
        }
        match socket.recv(&mut buf) {
            Ok(len) if len >= 16 => {
                let sent = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                let received = Instant::now();
                if received >= start && received < end {
                    packets += 1;
                    let rtt =
                        (received.duration_since(epoch).as_nanos() as u64).saturating_sub(sent);
                    histogram.record(Duration::from_nanos(rtt));
                }
                outstanding -= 1;
                send(&socket, &mut sequence)?;
                outstanding += 1;
            }
            Ok(_) => {} // Not one of ours: ignore.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // The whole window stalled: count it lost and refill it.
                lost += outstanding as u64;
                for _ in 0..load.window {
                    send(&socket, &mut sequence)?;
                }
                outstanding = load.window;
            }
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                // No server (yet): wait and retry, within the bounded run.
                thread::sleep(Duration::from_millis(10));
                lost += outstanding as u64;
                for _ in 0..load.window {
                    send(&socket, &mut sequence)?;
                }
                outstanding = load.window;
            }
            Err(error) => return Err(error),
        }
    }
}
