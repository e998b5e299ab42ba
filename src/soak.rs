//! The soak: mixed load on one runtime for a long time — task churn (from
//! the controller and from a task), TCP connect/echo/close, UDP floods, bus
//! fan-out and RPC — sampling the process's memory, descriptors, threads and
//! the runtime's counters as it goes, and failing on a leak.
//!
//! The load runs in rounds of about a second, each the same work, so the
//! process should reach a steady state once warmed up: a resident set that
//! grows more than [`RSS_GROWTH`] over its largest size during the warm-up,
//! descriptors or threads left over once the load has stopped, a panic, or
//! an echo that came back wrong fails the soak. `examples/soak.rs` runs it
//! (30 minutes by `scripts/soak`), `tests/soak.rs` its one-minute form.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use sansio::Backend;
use sansio::net::{TcpConnId, TcpEvent, TcpOptions, UdpBound, UdpError, UdpOptions, UdpPacket};
use sansio::prelude::*;

/// How much the resident set may grow over its warm-up peak: 10 %.
pub const RSS_GROWTH: f64 = 0.10;

/// How a soak runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the load runs.
    pub duration: Duration,
    /// How long before the resident set is taken as warmed up: the largest
    /// sample until then is the baseline.
    pub warm_up: Duration,
    /// How often a sample is taken and reported.
    pub every: Duration,
    /// Worker threads.
    pub workers: usize,
    /// The backend the workers sleep in.
    pub backend: Backend,
}

impl Options {
    /// A soak of `duration`, warmed up after a third of it (at least one
    /// sample in), sampled every 10 s (or a sixth of it, if shorter), on two
    /// workers.
    pub fn of(duration: Duration, backend: Backend) -> Self {
        let every = (duration / 6).min(Duration::from_secs(10));
        Options {
            duration,
            warm_up: (duration / 3).max(every),
            every,
            workers: 2,
            backend,
        }
    }
}

/// What one sample saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Since the soak started.
    pub at: Duration,
    /// Resident set, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Open descriptors.
    pub fds: usize,
    /// Threads of the process.
    pub threads: usize,
    /// Load rounds run so far.
    pub rounds: u64,
    /// The runtime's counters, summed over workers.
    pub tasks: usize,
    /// Tasks that finished.
    pub finished: u64,
    /// TCP connections accepted.
    pub tcp_accepted: u64,
    /// UDP datagrams received.
    pub udp_received: u64,
    /// UDP datagrams the kernel dropped, counted.
    pub udp_kernel_drops: u64,
    /// Bus deliveries.
    pub bus_delivered: u64,
    /// RPC calls answered.
    pub rpc_answered: u64,
    /// Panics.
    pub panics: u64,
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6.0}s rss={} KiB fds={} threads={} rounds={} tasks={} finished={} \
             tcp_accepted={} udp_received={} udp_kernel_drops={} bus_delivered={} rpc={} panics={}",
            self.at.as_secs_f64(),
            self.rss_kib,
            self.fds,
            self.threads,
            self.rounds,
            self.tasks,
            self.finished,
            self.tcp_accepted,
            self.udp_received,
            self.udp_kernel_drops,
            self.bus_delivered,
            self.rpc_answered,
            self.panics
        )
    }
}

/// A bus event: a shared kilobyte.
#[derive(Debug, Clone)]
pub struct Blob(pub Arc<[u8]>);

/// A task that ends as soon as it starts: the churn.
#[sansio::task]
#[derive(Debug, Default)]
pub struct Ephemeral;

#[sansio::task]
impl Ephemeral {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.finish();
    }
}

/// Makes the spawner spawn this many ephemeral tasks.
#[derive(Debug)]
pub struct Churn(pub u32);

/// Spawns ephemeral tasks on every worker, from inside the runtime.
#[sansio::task]
#[derive(Debug, Default)]
pub struct Spawner {
    failed: u64,
}

#[sansio::task]
impl Spawner {
    #[on_input]
    fn churn(&mut self, ctx: &mut Ctx<Self>, Churn(count): Churn) {
        for n in 0..count {
            ctx.spawn_on(n as usize % 2, Ephemeral);
        }
    }

    #[on_input]
    fn spawned(&mut self, _: &mut Ctx<Self>, spawned: Spawned<Ephemeral>) {
        if spawned.result.is_err() {
            self.failed += 1;
        }
    }
}

/// What the soak's servers report.
#[derive(Debug)]
pub enum Up {
    /// The TCP echo listens here.
    Tcp(SocketAddr),
    /// The UDP echo is bound here.
    Udp(SocketAddr),
}

/// Echoes TCP connections, with backpressure; closes when the peer has.
#[sansio::task(output = Up)]
#[derive(Debug, Default)]
pub struct TcpEcho {
    refused: std::collections::HashMap<TcpConnId, Vec<PacketBuf>>,
    closing: std::collections::HashSet<TcpConnId>,
}

#[sansio::task]
impl TcpEcho {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.tcp_listen(
            "127.0.0.1:0".parse().expect("an address"),
            TcpOptions::default(),
        );
    }

    #[on_input]
    fn tcp(&mut self, ctx: &mut Ctx<Self>, event: TcpEvent) {
        match event {
            TcpEvent::Listening {
                result: Ok(addr), ..
            } => ctx.emit(Up::Tcp(addr)),
            TcpEvent::Data { conn, data } => ctx.tcp_send(conn, data),
            TcpEvent::SendFailed { conn, data, .. } => {
                self.refused.entry(conn).or_default().push(data);
            }
            TcpEvent::Writable { conn } => {
                for data in self.refused.remove(&conn).unwrap_or_default() {
                    ctx.tcp_send(conn, data);
                }
                if self.closing.remove(&conn) {
                    ctx.tcp_close(conn);
                }
            }
            TcpEvent::PeerClosed { conn } => {
                if self.refused.contains_key(&conn) {
                    self.closing.insert(conn);
                } else {
                    ctx.tcp_close(conn);
                }
            }
            TcpEvent::Closed { conn, .. } => {
                self.refused.remove(&conn);
                self.closing.remove(&conn);
            }
            _ => {}
        }
    }
}

/// Echoes UDP datagrams.
#[sansio::task(output = Up)]
#[derive(Debug, Default)]
pub struct UdpEcho;

#[sansio::task]
impl UdpEcho {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.udp_bind(
            "127.0.0.1:0".parse().expect("an address"),
            UdpOptions::default(),
        );
    }

    #[on_input]
    fn bound(&mut self, ctx: &mut Ctx<Self>, bound: UdpBound) {
        if let Ok(addr) = bound.result {
            ctx.emit(Up::Udp(addr));
        }
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: UdpPacket) {
        ctx.udp_send(packet.socket, packet.from, packet.data);
    }

    #[on_input]
    fn error(&mut self, _: &mut Ctx<Self>, _: UdpError) {}
}

/// Makes the publisher publish this many events.
#[derive(Debug)]
pub struct Publish(pub u32);

/// Publishes kilobytes on channel 0.
#[sansio::task(channel = u8, event = Blob)]
#[derive(Debug)]
pub struct Publisher {
    blob: Blob,
}

#[sansio::task]
impl Publisher {
    #[on_input]
    fn publish(&mut self, ctx: &mut Ctx<Self>, Publish(count): Publish) {
        for _ in 0..count {
            ctx.publish(0, self.blob.clone());
        }
    }

    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, _: BusInput<u8, Blob>) {}
}

/// Asks a subscriber how many events it has had.
#[derive(Debug)]
pub struct Count;

impl Request for Count {
    type Response = u64;
}

/// Subscribes to channel 0 and counts; answers [`Count`].
#[sansio::task(channel = u8, event = Blob)]
#[derive(Debug, Default)]
pub struct Subscriber {
    events: u64,
}

#[sansio::task]
impl Subscriber {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.subscribe(0);
    }

    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, input: BusInput<u8, Blob>) {
        if let BusInput::Event { .. } = input {
            self.events += 1;
        }
    }

    #[on_request]
    fn count(&mut self, _: &mut Ctx<Self>, _: Count) -> u64 {
        self.events
    }
}

/// The soak's worker kind.
#[sansio::worker(channel = u8, event = Blob)]
#[derive(Debug)]
pub enum Soak {
    /// Churn.
    Ephemeral(Ephemeral),
    /// Churn from a task.
    Spawner(Spawner),
    /// TCP.
    TcpEcho(TcpEcho),
    /// UDP.
    UdpEcho(UdpEcho),
    /// Bus fan-out.
    Publisher(Publisher),
    /// Bus fan-out and RPC.
    Subscriber(Subscriber),
}

/// One round's load.
const CHURN_FROM_CONTROLLER: u32 = 200;
const CHURN_FROM_TASK: u32 = 500;
const TCP_CLIENTS: usize = 16;
const TCP_BYTES: usize = 32 << 10;
const UDP_DATAGRAMS: u32 = 4000;
const PUBLISHES: u32 = 1000;
const RPC_CALLS: u32 = 50;

/// A field of `/proc/self/status`, as a number (`VmRSS` in KiB, `Threads`).
fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|value| value.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// What the soak found wrong, or the last sample when nothing was.
pub type Outcome = Result<Sample, String>;

/// The running load: the runtime, its servers and tallies.
struct Load {
    runtime: Runtime<Soak>,
    tcp: SocketAddr,
    udp: SocketAddr,
    spawner: TaskId<Spawner>,
    publisher: TaskId<Publisher>,
    subscribers: Vec<TaskId<Subscriber>>,
    udp_client: UdpSocket,
    /// Datagrams the client sent.
    udp_sent: u64,
    finished: u64,
    panics: u64,
    rpc_answered: u64,
    rounds: u64,
    wrong: Vec<String>,
}

impl Load {
    fn start(options: &Options) -> Result<Load, String> {
        let runtime = Runtime::<Soak>::builder()
            .workers(options.workers)
            .backend(options.backend)
            .build()
            .map_err(|error| format!("starting the runtime: {error}"))?;
        runtime
            .spawn(TcpEcho::default())
            .map_err(|e| e.to_string())?;
        runtime.spawn(UdpEcho).map_err(|e| e.to_string())?;
        let (mut tcp, mut udp) = (None, None);
        let give_up = Instant::now() + Duration::from_secs(10);
        let (tcp, udp) = loop {
            if let (Some(tcp), Some(udp)) = (tcp, udp) {
                break (tcp, udp);
            }
            let left = give_up.saturating_duration_since(Instant::now());
            match runtime.next_event(left) {
                Some(Event::Output {
                    output: SoakOutput::TcpEcho(Up::Tcp(addr)),
                    ..
                }) => tcp = Some(addr),
                Some(Event::Output {
                    output: SoakOutput::UdpEcho(Up::Udp(addr)),
                    ..
                }) => udp = Some(addr),
                Some(_) => {}
                None => return Err("the echo servers did not start within 10 s".into()),
            }
        };
        let spawner = runtime
            .spawn(Spawner::default())
            .map_err(|e| e.to_string())?;
        let blob = Blob((0..1024).map(|n| n as u8).collect());
        let publisher = runtime
            .spawn(Publisher { blob })
            .map_err(|e| e.to_string())?;
        let subscribers = (0..options.workers)
            .map(|worker| runtime.spawn_on(worker, Subscriber::default()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        let udp_client = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        udp_client
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        Ok(Load {
            runtime,
            tcp,
            udp,
            spawner,
            publisher,
            subscribers,
            udp_client,
            udp_sent: 0,
            finished: 0,
            panics: 0,
            rpc_answered: 0,
            rounds: 0,
            wrong: Vec::new(),
        })
    }

    /// Takes the events waiting for the controller.
    fn drain_events(&mut self) {
        while let Some(event) = self.runtime.try_next_event() {
            match event {
                Event::Finished { .. } => self.finished += 1,
                Event::Panicked { task, message, .. } => {
                    self.panics += 1;
                    self.wrong.push(format!("{task:?} panicked: {message}"));
                }
                _ => {}
            }
        }
    }

    /// One round of every kind of load.
    fn round(&mut self) {
        self.rounds += 1;
        // Churn: from the controller, and from a task.
        for n in 0..CHURN_FROM_CONTROLLER {
            let _ = self
                .runtime
                .spawn_on(n as usize % self.runtime.workers(), Ephemeral);
        }
        let _ = self.runtime.send(self.spawner, Churn(CHURN_FROM_TASK));
        // TCP: clients connect, echo, close.
        let tcp = self.tcp;
        let clients: Vec<_> = (0..TCP_CLIENTS)
            .map(|n| thread::spawn(move || echo_once(tcp, n)))
            .collect();
        // UDP: a flood, and its echoes read back.
        let payload = [7u8; 256];
        for n in 0..UDP_DATAGRAMS {
            if self.udp_client.send_to(&payload, self.udp).is_ok() {
                self.udp_sent += 1;
            }
            if n % 64 == 63 {
                self.drain_udp();
            }
        }
        // The bus: a fan-out to a subscriber per worker.
        let _ = self.runtime.send(self.publisher, Publish(PUBLISHES));
        self.drain_events();
        // RPC.
        for n in 0..RPC_CALLS {
            let subscriber = self.subscribers[n as usize % self.subscribers.len()];
            match self
                .runtime
                .call(subscriber, Count, Duration::from_secs(10))
            {
                Ok(_) => self.rpc_answered += 1,
                Err(error) => self.wrong.push(format!("RPC failed: {error}")),
            }
        }
        for client in clients {
            match client.join() {
                Ok(Ok(())) => {}
                Ok(Err(message)) => self.wrong.push(message),
                Err(_) => self.wrong.push("a TCP client panicked".into()),
            }
        }
        self.drain_udp();
        self.drain_events();
    }

    fn drain_udp(&self) {
        let mut buf = [0u8; 2048];
        while self.udp_client.recv(&mut buf).is_ok() {}
    }

    fn sample(&self, at: Duration) -> Sample {
        let stats = self.runtime.stats();
        let sum = |field: fn(&sansio::stats::WorkerStats) -> u64| -> u64 {
            stats.workers.iter().map(field).sum()
        };
        Sample {
            at,
            rss_kib: status("VmRSS"),
            fds: open_fds(),
            threads: status("Threads") as usize,
            rounds: self.rounds,
            tasks: stats
                .workers
                .iter()
                .flat_map(|worker| worker.tasks.iter().map(|(_, count)| count))
                .sum(),
            finished: self.finished,
            tcp_accepted: sum(|w| w.tcp_accepted),
            udp_received: sum(|w| w.udp_received),
            udp_kernel_drops: sum(|w| w.udp_kernel_drops),
            bus_delivered: sum(|w| w.bus_delivered),
            rpc_answered: self.rpc_answered,
            panics: sum(|w| w.panics) + self.panics,
        }
    }
}

/// One TCP client: connect, send [`TCP_BYTES`], read them back, close.
fn echo_once(addr: SocketAddr, n: usize) -> Result<(), String> {
    let fail = |what: &str, error: std::io::Error| format!("TCP client {n}: {what}: {error}");
    let mut stream = TcpStream::connect(addr).map_err(|e| fail("connect", e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| fail("timeout", e))?;
    let sent: Vec<u8> = (0..TCP_BYTES).map(|i| (i * 7 + n) as u8).collect();
    stream.write_all(&sent).map_err(|e| fail("write", e))?;
    stream
        .shutdown(std::net::Shutdown::Write)
        .map_err(|e| fail("shutdown", e))?;
    let mut got = Vec::with_capacity(TCP_BYTES);
    stream.read_to_end(&mut got).map_err(|e| fail("read", e))?;
    if got != sent {
        return Err(format!(
            "TCP client {n}: {} bytes came back, not the {} sent",
            got.len(),
            sent.len()
        ));
    }
    Ok(())
}

/// Runs the soak, handing each sample to `report` as it is taken; fails on
/// a leak (see the module), a panic or a wrong echo.
pub fn run(options: &Options, mut report: impl FnMut(&Sample)) -> Outcome {
    let started = Instant::now();
    let mut load = Load::start(options)?;
    let mut next_sample = options.every;
    let mut baseline_rss = 0u64;
    let mut last = load.sample(Duration::ZERO);
    report(&last);
    // Descriptors and threads between rounds, once warmed up.
    let mut steady: Option<(usize, usize)> = None;
    while started.elapsed() < options.duration {
        let round_started = Instant::now();
        load.round();
        if !load.wrong.is_empty() {
            return Err(load.wrong.join("; "));
        }
        if started.elapsed() >= next_sample {
            next_sample += options.every;
            last = load.sample(started.elapsed());
            report(&last);
            // The baseline is the largest sample of the warm-up; a warm-up
            // shorter than a round (a run of a few seconds) saw none, and
            // the first sample after it is the baseline.
            if last.at <= options.warm_up || baseline_rss == 0 {
                baseline_rss = baseline_rss.max(last.rss_kib);
            } else {
                steady.get_or_insert((last.fds, last.threads));
                let limit = baseline_rss as f64 * (1.0 + RSS_GROWTH);
                if last.rss_kib as f64 > limit {
                    return Err(format!(
                        "the resident set grew from {baseline_rss} KiB (warmed up) to {} KiB, \
                         over {:.0} %",
                        last.rss_kib,
                        RSS_GROWTH * 100.0
                    ));
                }
            }
        }
        // Rounds of about a second: the load is the same in every period.
        thread::sleep(Duration::from_secs(1).saturating_sub(round_started.elapsed()));
    }
    // Once the load has stopped, the descriptors and threads of the steady
    // state are all that is left (connections finish closing first).
    let (fds, threads) = steady.unwrap_or((last.fds, last.threads));
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        load.drain_events();
        thread::sleep(Duration::from_millis(50));
        load.drain_udp();
        last = load.sample(started.elapsed());
        let udp_counted = last.udp_received + last.udp_kernel_drops == load.udp_sent;
        if (last.fds <= fds && last.threads <= threads && udp_counted) || Instant::now() > settle {
            break;
        }
    }
    report(&last);
    if last.fds > fds {
        return Err(format!(
            "{} descriptors are open after the load, {fds} were in the steady state",
            last.fds
        ));
    }
    if last.threads > threads {
        return Err(format!(
            "{} threads run after the load, {threads} did in the steady state",
            last.threads
        ));
    }
    if last.udp_received + last.udp_kernel_drops != load.udp_sent {
        return Err(format!(
            "{} datagrams sent, {} received and {} counted as dropped",
            load.udp_sent, last.udp_received, last.udp_kernel_drops
        ));
    }
    if last.panics > 0 {
        return Err(format!("{} panics", last.panics));
    }
    if last.tcp_accepted < load.rounds * TCP_CLIENTS as u64 {
        return Err(format!(
            "{} TCP connections accepted in {} rounds of {TCP_CLIENTS}",
            last.tcp_accepted, load.rounds
        ));
    }
    load.runtime
        .shutdown(Duration::from_secs(5))
        .map_err(|error| format!("shutting down: {error}"))?;
    Ok(last)
}
