//! TUN through the runtime, on every backend: a task answers the ICMP echo
//! requests that arrive on its TUN device, and the system `ping`, run in a
//! network namespace this test creates around the device, gets 5 replies of
//! 5. Skipped, saying why, only when `/dev/net/tun` is missing.

mod util;

use std::process::Command;

use sansio::prelude::*;
use util::{PATIENCE, next};

/// Answers ICMP echo requests on its device; counts what it ignores.
#[sansio::task(output = PingOut)]
pub struct Responder {
    name: String,
    tun: Option<TunId>,
    ignored: u64,
    /// Finish in the same handler that queues the first echo reply.
    finish_after_reply: bool,
}

#[derive(Debug)]
pub enum PingOut {
    Opened(std::io::Result<String>),
    Error(std::io::ErrorKind),
    /// A packet that was not an echo request (IPv6 chatter, garbage).
    Ignored(u64),
}

#[sansio::task]
impl Responder {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        self.tun = Some(ctx.tun_open(&self.name, TunOptions::default()));
    }

    #[on_input]
    fn opened(&mut self, ctx: &mut Ctx<Self>, opened: TunOpened) {
        ctx.emit(PingOut::Opened(opened.result));
    }

    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, mut packet: TunPacket) {
        if echo_reply_in_place(&mut packet.data) {
            ctx.tun_send(packet.tun, packet.data);
            if self.finish_after_reply {
                ctx.finish();
            }
        } else {
            self.ignored += 1;
            ctx.emit(PingOut::Ignored(self.ignored));
        }
    }

    #[on_input]
    fn error(&mut self, ctx: &mut Ctx<Self>, error: TunError) {
        ctx.emit(PingOut::Error(error.error.kind()));
    }

    #[on_input]
    fn garbage(&mut self, ctx: &mut Ctx<Self>, bytes: Vec<u8>) {
        if let Some(tun) = self.tun {
            ctx.tun_send(tun, PacketBuf::copy_from(&bytes));
        }
    }
}

#[sansio::worker]
pub enum TunTest {
    Responder(Responder),
}

/// The Internet checksum of `bytes`.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Turns an IPv4 ICMP echo request into its reply, in the same buffer;
/// `false` (buffer untouched) for anything else, malformed or not.
fn echo_reply_in_place(packet: &mut [u8]) -> bool {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return false;
    }
    let header = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if header < 20 || total < header + 8 || total > packet.len() || packet[9] != 1 {
        return false;
    }
    let (ip, icmp) = packet[..total].split_at_mut(header);
    if icmp[0] != 8 || icmp[1] != 0 {
        return false;
    }
    // Swap the addresses, fresh TTL, new header checksum.
    let source: [u8; 4] = ip[12..16].try_into().expect("4 bytes");
    ip.copy_within(16..20, 12);
    ip[16..20].copy_from_slice(&source);
    ip[8] = 64;
    ip[10..12].fill(0);
    let sum = checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    // Echo reply, same identifier, sequence and payload.
    icmp[0] = 0;
    icmp[2..4].fill(0);
    let sum = checksum(icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    true
}

/// Runs `ip` (or another program) and insists it succeeds.
fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program} could not start: {error}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        text,
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

/// A network namespace, deleted on drop (even when the test fails).
struct Namespace(String);

impl Namespace {
    fn new(name: String) -> Self {
        // A leftover from an interrupted run would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh("ip", &["netns", "add", &name]);
        Namespace(name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Moves the device into the namespace and gives it an address there: the
/// ping and its packets stay inside the namespace and the device.
fn move_into(device: &str, ns: &str) {
    sh("ip", &["link", "set", "dev", device, "netns", ns]);
    sh(
        "ip",
        &["-n", ns, "addr", "add", "10.213.0.1/24", "dev", device],
    );
    sh("ip", &["-n", ns, "link", "set", "dev", device, "up"]);
    sh("ip", &["-n", ns, "link", "set", "dev", "lo", "up"]);
}

all_backend_tests! {
    fn ping_gets_five_replies_from_a_task_on_a_tun_device(backend: Backend) {
        if !std::path::Path::new("/dev/net/tun").exists() {
            eprintln!("skipped: /dev/net/tun is missing on this machine");
            return;
        }
        let tag = format!("{}{}", std::process::id() % 100_000, &backend.to_string()[..1]);
        let namespace = Namespace::new(format!("sansio-tun-{tag}"));
        let runtime = Runtime::<TunTest>::builder().workers(1).backend(backend).build().unwrap();
        let task = runtime
            .spawn(Responder {
                name: format!("sntun{tag}"),
                tun: None,
                ignored: 0,
                finish_after_reply: false,
            })
            .unwrap();
        let device = match next(&runtime) {
            Event::Output { output: TunTestOutput::Responder(PingOut::Opened(Ok(name))), .. } => name,
            other => panic!("the device did not open: {other:?}"),
        };
        let ns = namespace.0.as_str();
        move_into(&device, ns);

        // Garbage written to the device: refused or dropped, never a panic.
        runtime.send(task, vec![0xde, 0xad, 0xbe]).unwrap();

        let wait = PATIENCE.as_secs().to_string();
        let report = sh(
            "ip",
            &["netns", "exec", ns, "ping", "-c", "5", "-i", "0.2", "-W", &wait, "10.213.0.2"],
        );
        assert!(report.contains("5 packets transmitted, 5 received"), "{report}");

        util::eventually("the packets are counted", || {
            let stats = runtime.stats();
            let worker = &stats.workers[0];
            worker.tun_devices == 1 && worker.tun_received >= 5 && worker.tun_sent >= 5
        });
        let report = runtime.shutdown(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(report.finished, 1);
        drop(namespace);
    }

    fn a_reply_queued_by_a_finishing_task_is_written(backend: Backend) {
        assert!(
            std::path::Path::new("/dev/net/tun").exists(),
            "/dev/net/tun is missing: load the tun module (modprobe tun)"
        );
        let tag = format!("{}{}f", std::process::id() % 100_000, &backend.to_string()[..1]);
        let namespace = Namespace::new(format!("sansio-tun-{tag}"));
        let runtime = Runtime::<TunTest>::builder().workers(1).backend(backend).build().unwrap();
        runtime
            .spawn(Responder {
                name: format!("sntun{tag}"),
                tun: None,
                ignored: 0,
                finish_after_reply: true,
            })
            .unwrap();
        let device = match next(&runtime) {
            Event::Output { output: TunTestOutput::Responder(PingOut::Opened(Ok(name))), .. } => name,
            other => panic!("the device did not open: {other:?}"),
        };
        move_into(&device, &namespace.0);
        let wait = PATIENCE.as_secs().to_string();
        let report = sh(
            "ip",
            &["netns", "exec", &namespace.0, "ping", "-c", "1", "-W", &wait, "10.213.0.2"],
        );
        assert!(report.contains("1 packets transmitted, 1 received"), "{report}");
        util::events_until(&runtime, |event| matches!(event, Event::Finished { .. }));
        util::eventually("the device is closed once its reply is written", || {
            let worker = &runtime.stats().workers[0];
            worker.tun_devices == 0 && worker.tun_sent == 1
        });
        runtime.shutdown(std::time::Duration::from_secs(5)).unwrap();
    }
}
