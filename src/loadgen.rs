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
use std::os::fd::AsRawFd;
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
    /// Send each batch as GSO messages (`UDP_SEGMENT`): the kernel carries
    /// a burst to the server as one unit, which a server with GRO on
    /// receives as one message. Off, every datagram travels alone.
    pub gso: bool,
}

/// Round trips, in microseconds (each rounded up to the next whole one),
/// kept by `hdrhistogram` to three significant digits from 1 µs to a
/// minute (longer ones count as a minute).
#[derive(Debug, Clone)]
pub struct Histogram(hdrhistogram::Histogram<u64>);

/// The longest round trip told apart from longer ones, in microseconds.
const HIGHEST_MICROS: u64 = 60_000_000;

impl Default for Histogram {
    fn default() -> Self {
        // 1 µs to a minute at 3 significant digits are valid bounds.
        let histogram = hdrhistogram::Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
            .expect("valid histogram bounds");
        Histogram(histogram)
    }
}

impl Histogram {
    /// Records one round trip.
    pub fn record(&mut self, rtt: Duration) {
        let micros = u64::try_from(rtt.as_nanos().div_ceil(1000)).unwrap_or(u64::MAX);
        self.0.saturating_record(micros.max(1));
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Histogram) {
        // Same bounds on both sides: the add cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Round trips recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The `quantile` (0 to 1) round trip, to the microsecond (exact below
    /// 2 ms, within 0.1 % above); `None` without samples.
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        Some(Duration::from_micros(self.0.value_at_quantile(quantile)))
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

/// The largest datagram (over IPv4).
const MAX_SIZE: usize = 65_507;

/// Warm-up before measuring.
const WARM_UP: Duration = Duration::from_millis(300);

/// Runs `load` and reports what it measured. Bounded: returns after
/// `load.duration` plus the warm-up and at most one [`STALL`].
pub fn run(load: Load) -> io::Result<Report> {
    if !(16..=MAX_SIZE).contains(&load.size) || load.window == 0 || load.sockets == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("size must be 16 to {MAX_SIZE} bytes, window and sockets at least 1"),
        ));
    }
    let epoch = Instant::now();
    let start = epoch + WARM_UP;
    let end = start + load.duration;
    let threads: Vec<_> = (0..load.sockets)
        .map(|_| {
            let socket = UdpSocket::bind(crate::cli::local_for(load.server))?;
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

/// Datagrams per system call of a client.
const BATCH: usize = 64;

/// One client socket's loop: receives whatever replies are waiting (at least
/// one, up to [`BATCH`]) in one `recvmmsg`, times them, and sends as many new
/// datagrams in one `sendmmsg`, so that the generator spends a system call
/// per batch rather than per datagram and can outrun the servers it measures.
fn client(
    socket: UdpSocket,
    load: Load,
    epoch: Instant,
    start: Instant,
    end: Instant,
) -> io::Result<(u64, u64, Histogram)> {
    let mut batch = mmsg::Batch::new(load.size, load.size.max(2048));
    let mut histogram = Histogram::default();
    let (mut packets, mut lost, mut sequence) = (0u64, 0u64, 0u64);
    let fd = socket.as_raw_fd();
    let mut send = |batch: &mut mmsg::Batch, count: usize| -> io::Result<()> {
        let mut left = count;
        while left > 0 {
            let stamp = epoch.elapsed().as_nanos() as u64;
            let now = left.min(BATCH);
            for out in batch.outgoing(now) {
                out[..8].copy_from_slice(&stamp.to_le_bytes());
                out[8..16].copy_from_slice(&sequence.to_le_bytes());
                sequence += 1;
            }
            left -= batch.send(fd, now, load.gso)?;
        }
        Ok(())
    };
    send(&mut batch, load.window)?;
    let mut outstanding = load.window;
    loop {
        if Instant::now() >= end {
            return Ok((packets, lost, histogram));
        }
        match batch.recv(fd, load.window.min(BATCH)) {
            Ok(got) => {
                let received = Instant::now();
                let now = received.duration_since(epoch).as_nanos() as u64;
                let mut answered = 0;
                for reply in batch.received(got) {
                    if reply.len() < 16 {
                        continue; // Not one of ours: ignore.
                    }
                    answered += 1;
                    if received >= start && received < end {
                        let sent = u64::from_le_bytes(reply[..8].try_into().expect("8 bytes"));
                        packets += 1;
                        histogram.record(Duration::from_nanos(now.saturating_sub(sent)));
                    }
                }
                outstanding -= answered.min(outstanding);
                send(&mut batch, load.window - outstanding)?;
                outstanding = load.window;
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // The whole window stalled: count it lost and refill it.
                lost += outstanding as u64;
                send(&mut batch, load.window)?;
                outstanding = load.window;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                // No server (yet): wait and retry, within the bounded run.
                thread::sleep(Duration::from_millis(10));
                lost += outstanding as u64;
                send(&mut batch, load.window)?;
                outstanding = load.window;
            }
            Err(error) => return Err(error),
        }
    }
}

/// `recvmmsg`/`sendmmsg` on a connected socket, with buffers of their own.
mod mmsg {
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::RawFd;
    use std::ptr;

    use super::BATCH;

    /// Payload bytes per GSO message at most.
    const MAX_GSO_BYTES: usize = 65_000;

    /// `CMSG_SPACE(2)`: a control message carrying a segment size.
    // SAFETY: `CMSG_SPACE` only computes a length.
    const CONTROL: usize = unsafe { libc::CMSG_SPACE(2) } as usize;

    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct Control([u8; CONTROL]);

    pub(super) struct Batch {
        outgoing: Vec<Vec<u8>>,
        incoming: Vec<Vec<u8>>,
        iovecs: Vec<libc::iovec>,
        headers: Vec<libc::mmsghdr>,
        controls: Vec<Control>,
    }

    impl Batch {
        /// Buffers for datagrams of `size` bytes out and up to `capacity` in.
        pub(super) fn new(size: usize, capacity: usize) -> Self {
            // SAFETY: all zeroes (null pointers, zero lengths) is a valid
            // `mmsghdr`.
            let header: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
            let iovec = libc::iovec {
                iov_base: ptr::null_mut(),
                iov_len: 0,
            };
            Batch {
                outgoing: vec![vec![0; size]; BATCH],
                incoming: vec![vec![0; capacity]; BATCH],
                iovecs: vec![iovec; BATCH],
                headers: vec![header; BATCH],
                controls: vec![Control([0; CONTROL]); BATCH],
            }
        }

        /// The first `count` (at most [`BATCH`]) outgoing datagrams, to fill.
        pub(super) fn outgoing(&mut self, count: usize) -> impl Iterator<Item = &mut Vec<u8>> {
            self.outgoing.iter_mut().take(count)
        }

        /// The first `count` received datagrams.
        pub(super) fn received(&self, count: usize) -> impl Iterator<Item = &[u8]> {
            self.headers
                .iter()
                .zip(&self.incoming)
                .take(count)
                .map(|(header, buf)| &buf[..(header.msg_len as usize).min(buf.len())])
        }

        fn point(&mut self, count: usize, incoming: bool) {
            let bufs = if incoming {
                &mut self.incoming
            } else {
                &mut self.outgoing
            };
            for (index, buf) in bufs.iter_mut().take(count).enumerate() {
                self.iovecs[index] = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                let header = &mut self.headers[index];
                // SAFETY: all zeroes is a valid `msghdr`; the fields that
                // matter are set next.
                header.msg_hdr = unsafe { MaybeUninit::zeroed().assume_init() };
                header.msg_hdr.msg_iov = &mut self.iovecs[index];
                header.msg_hdr.msg_iovlen = 1;
                header.msg_len = 0;
            }
        }

        /// Sends the first `count` outgoing datagrams, with `gso` as few
        /// messages the kernel segments; returns how many datagrams the
        /// kernel took (at least one, or an error).
        pub(super) fn send(&mut self, fd: RawFd, count: usize, gso: bool) -> io::Result<usize> {
            let count = count.min(BATCH);
            let size = self.outgoing[0].len();
            self.point(count, false);
            // With GSO, message `m` carries datagrams `m * per..` of one size.
            let per = if gso {
                (MAX_GSO_BYTES / size.max(1)).clamp(1, BATCH)
            } else {
                1
            };
            let messages = count.div_ceil(per);
            for message in 0..messages {
                let first = message * per;
                let segments = per.min(count - first);
                let header = &mut self.headers[message];
                header.msg_hdr.msg_iov = &mut self.iovecs[first];
                header.msg_hdr.msg_iovlen = segments as _;
                header.msg_hdr.msg_control = std::ptr::null_mut();
                header.msg_hdr.msg_controllen = 0;
                if segments > 1 {
                    let control = &mut self.controls[message];
                    header.msg_hdr.msg_control = control.0.as_mut_ptr().cast();
                    header.msg_hdr.msg_controllen = CONTROL as _;
                    // SAFETY: `control` is an aligned buffer of `CONTROL`
                    // bytes, room for one header and a u16.
                    unsafe {
                        let cmsg = libc::CMSG_FIRSTHDR(&header.msg_hdr);
                        (*cmsg).cmsg_level = libc::SOL_UDP;
                        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
                        ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size as u16);
                    }
                }
            }
            loop {
                // SAFETY: the first `messages` headers point at live iovecs,
                // control buffers and buffers owned by `self`; the kernel
                // only reads them.
                let sent =
                    unsafe { libc::sendmmsg(fd, self.headers.as_mut_ptr(), messages as u32, 0) };
                match sent {
                    n if n > 0 => return Ok((n as usize * per).min(count)),
                    0 => return Err(io::Error::other("sendmmsg sent nothing")),
                    _ => {
                        let error = io::Error::last_os_error();
                        if error.kind() != io::ErrorKind::Interrupted {
                            return Err(error);
                        }
                    }
                }
            }
        }

        /// Waits for at least one datagram (up to the socket's read timeout)
        /// and receives up to `count` that are waiting.
        pub(super) fn recv(&mut self, fd: RawFd, count: usize) -> io::Result<usize> {
            let count = count.clamp(1, BATCH);
            self.point(count, true);
            // SAFETY: the first `count` headers point at live iovecs and
            // buffers owned exclusively by `self`, each iovec as long as its
            // buffer.
            let got = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    count as u32,
                    libc::MSG_WAITFORONE,
                    ptr::null_mut(),
                )
            };
            if got < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(got as usize)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut histogram = Histogram::default();
        assert_eq!(histogram.quantile(0.5), None);
        // 1 µs to 1 ms, one each; and 1,000 at 2 ms on another histogram.
        for micros in 1..=1000 {
            histogram.record(Duration::from_micros(micros));
        }
        let at =
            |histogram: &Histogram, quantile| histogram.quantile(quantile).unwrap().as_micros();
        assert_eq!(histogram.count(), 1000);
        assert_eq!(at(&histogram, 0.5), 500);
        assert_eq!(at(&histogram, 0.99), 990);
        assert_eq!(at(&histogram, 0.999), 999);
        assert_eq!(at(&histogram, 1.0), 1000);
        let mut slow = Histogram::default();
        for _ in 0..1000 {
            slow.record(Duration::from_millis(2));
        }
        histogram.merge(&slow);
        assert_eq!(histogram.count(), 2000);
        assert_eq!(at(&histogram, 0.5), 1000);
        // Above 2 ms the value is kept to 3 significant digits.
        let p99 = at(&histogram, 0.99);
        assert!((1999..=2001).contains(&p99), "{p99}");
    }

    #[test]
    fn round_trips_round_up_to_the_microsecond_and_a_minute_caps_them() {
        let mut histogram = Histogram::default();
        histogram.record(Duration::from_nanos(1));
        histogram.record(Duration::from_nanos(1_001));
        histogram.record(Duration::from_secs(3600));
        let at = |quantile| histogram.quantile(quantile).unwrap().as_micros();
        assert_eq!((at(0.0), at(0.5)), (1, 2));
        let top = at(1.0);
        assert!((59_900_000..=60_100_000).contains(&top), "{top}");
        let report = Report {
            packets: 3,
            lost: 0,
            elapsed: Duration::from_secs(1),
            size: 64,
            histogram: histogram.clone(),
        };
        assert_eq!(report.quantile(0.5), "2 µs");
        assert!(
            report
                .to_string()
                .starts_with("3 packets/s, 0.0 Mbit/s, round trip p50 2 µs")
        );
    }
}
