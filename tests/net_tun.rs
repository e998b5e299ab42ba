//! TUN through the runtime, on every backend: a task answers the ICMP echo
//! requests that arrive on its TUN device, and the system `ping`, run in a
//! network namespace this test creates around the device, gets 5 replies of
//! 5. Skipped, saying why, only when `/dev/net/tun` is missing.
//!
//! Devices configured through `TunOptions` (address, MTU, up) are opened by a
//! runtime whose workers run inside a namespace the test creates: nothing is
//! configured, and no packet sent, in the machine's own network.

mod util;

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

use sansio::Backend;
use sansio::net::{TunError, TunId, TunOpened, TunOptions, TunPacket};
use sansio::prelude::*;
use util::{PATIENCE, next};

/// Answers ICMP echo requests on its device; counts what it ignores.
#[sansio::task(output = PingOut)]
pub struct Responder {
    name: String,
    options: TunOptions,
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
        self.tun = Some(ctx.tun_open(&self.name, self.options.clone()));
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

impl Responder {
    fn new(name: String, options: TunOptions) -> Self {
        Responder {
            name,
            options,
            tun: None,
            ignored: 0,
            finish_after_reply: false,
        }
    }
}

/// Makes this thread enter the network namespace `ns` is a file of.
fn enter(ns: &File) -> io::Result<()> {
    // SAFETY: `ns` is an open namespace file, and `setns` with
    // `CLONE_NEWNET` changes only the calling thread's network namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Takes the thread back to the namespace it came from, even when the test
/// fails on the way.
struct Home(File);

impl Drop for Home {
    fn drop(&mut self) {
        if let Err(error) = enter(&self.0) {
            // Not a panic: this may run while unwinding.
            eprintln!("could not go back to the test's network namespace: {error}");
        }
    }
}

/// Builds a runtime whose workers live in namespace `ns`: a thread starts in
/// the namespace of the thread that creates it, so this thread steps into
/// `ns` while the runtime starts its workers, and back out. The devices the
/// workers open, and the interfaces they configure, are then `ns`'s.
fn runtime_in(ns: &Namespace, backend: Backend) -> Runtime<TunTest> {
    let here = File::open("/proc/thread-self/ns/net").expect("this thread's network namespace");
    let there = File::open(format!("/run/netns/{}", ns.0)).expect("the test's namespace");
    enter(&there).expect("entering the test's namespace");
    let _home = Home(here);
    Runtime::<TunTest>::builder()
        .workers(1)
        .backend(backend)
        .build()
        .unwrap()
}

/// The name of the device the next event says was opened.
fn opened(runtime: &Runtime<TunTest>) -> io::Result<String> {
    match next(runtime) {
        Event::Output {
            output: TunTestOutput::Responder(PingOut::Opened(result)),
            ..
        } => result,
        other => panic!("expected a device's outcome: {other:?}"),
    }
}

/// The flags `ip link show` prints for `device` in `ns` (`UP`, `NOARP`…), and
/// its whole line.
fn link_flags(ns: &str, device: &str) -> (Vec<String>, String) {
    let link = sh("ip", &["-n", ns, "-o", "link", "show", "dev", device]);
    let flags = link
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(flags, _)| flags.split(',').map(str::to_owned).collect())
        .unwrap_or_else(|| panic!("no flags in {link:?}"));
    (flags, link)
}

/// Whether `device` exists in `ns`.
fn exists(ns: &str, device: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", device])
        .output()
        .expect("ip could not start")
        .status
        .success()
}

all_backend_tests! {
    fn ping_gets_five_replies_from_a_task_on_a_tun_device(backend: Backend) {
        assert!(
            std::path::Path::new("/dev/net/tun").exists(),
            "/dev/net/tun is missing: load the tun module (modprobe tun)"
        );
        let tag = format!("{}{}", std::process::id() % 100_000, &backend.to_string()[..1]);
        let namespace = Namespace::new(format!("sansio-tun-{tag}"));
        let runtime = Runtime::<TunTest>::builder().workers(1).backend(backend).build().unwrap();
        let task = runtime
            .spawn(Responder {
                name: format!("sntun{tag}"),
                options: TunOptions::default(),
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
                options: TunOptions::default(),
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

    fn options_configure_the_device_and_ping_gets_answered(backend: Backend) {
        let tag = format!("{}{}o", std::process::id() % 100_000, &backend.to_string()[..1]);
        let namespace = Namespace::new(format!("sansio-tun-{tag}"));
        let ns = namespace.0.as_str();
        let runtime = runtime_in(&namespace, backend);
        let options = TunOptions::default().address(Ipv4Addr::new(10, 213, 1, 1), 24).mtu(1400);
        runtime.spawn(Responder::new(format!("sntun{tag}"), options)).unwrap();
        let device = opened(&runtime).expect("the device opens, configured");

        let address = sh("ip", &["-n", ns, "-o", "-4", "addr", "show", "dev", &device]);
        assert!(address.contains(" inet 10.213.1.1/24 "), "{address}");
        let (flags, link) = link_flags(ns, &device);
        assert!(flags.iter().any(|flag| flag == "UP"), "not up: {link}");
        assert!(link.contains(" mtu 1400 "), "{link}");
        // The kernel made the subnet's route, with the prefix asked for.
        let routes = sh("ip", &["-n", ns, "-4", "route", "show", "dev", &device]);
        assert!(routes.contains("10.213.1.0/24"), "{routes}");

        let wait = PATIENCE.as_secs().to_string();
        let report = sh(
            "ip",
            &["netns", "exec", ns, "ping", "-c", "3", "-i", "0.2", "-W", &wait, "10.213.1.2"],
        );
        assert!(report.contains("3 packets transmitted, 3 received"), "{report}");
        runtime.shutdown(std::time::Duration::from_secs(5)).unwrap();
    }

    fn options_out_of_range_are_refused_and_open_nothing(backend: Backend) {
        let tag = format!("{}{}r", std::process::id() % 100_000, &backend.to_string()[..1]);
        let namespace = Namespace::new(format!("sansio-tun-{tag}"));
        let runtime = runtime_in(&namespace, backend);
        let ip = Ipv4Addr::new(10, 213, 3, 1);
        let cases = [
            (TunOptions::default().address(ip, 33), "prefix length 33"),
            (TunOptions::default().mtu(0), "MTU 0"),
            (TunOptions::default().mtu(65_536), "MTU 65536"),
            (TunOptions::default().mtu(1500).max_packet(1500), "max_packet"),
            (TunOptions::default().send_queue(0), "send_queue"),
        ];
        for (options, _) in &cases {
            runtime.spawn(Responder::new(format!("sntun{tag}"), options.clone())).unwrap();
        }
        // One worker: the outcomes come in the order the tasks were spawned.
        for (options, expected) in cases {
            let error = opened(&runtime).expect_err("refused");
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{options:?}: {error}");
            assert!(error.to_string().contains(expected), "{options:?}: {error}");
        }
        assert!(!exists(&namespace.0, &format!("sntun{tag}")));
        assert_eq!(runtime.stats().workers[0].tun_devices, 0);
        runtime.shutdown(std::time::Duration::from_secs(5)).unwrap();
    }

    fn a_step_the_kernel_refuses_fails_the_open_and_closes_the_device(backend: Backend) {
        let tag = format!("{}{}k", std::process::id() % 100_000, &backend.to_string()[..1]);
        let namespace = Namespace::new(format!("sansio-tun-{tag}"));
        let runtime = runtime_in(&namespace, backend);
        let name = format!("sntun{tag}");
        // In range for the options, below the minimum the kernel allows (68).
        let options = TunOptions::default().address(Ipv4Addr::new(10, 213, 4, 1), 24).mtu(60);
        runtime.spawn(Responder::new(name.clone(), options)).unwrap();
        let error = opened(&runtime).expect_err("the kernel refuses an MTU of 60");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        assert!(error.to_string().contains(&format!("{name}: setting the MTU 60 failed")), "{error}");
        assert!(!exists(&namespace.0, &name), "the device was left behind");
        util::eventually("no device is counted", || runtime.stats().workers[0].tun_devices == 0);
        runtime.shutdown(std::time::Duration::from_secs(5)).unwrap();
    }

    fn a_device_is_up_only_when_asked_or_addressed(backend: Backend) {
        let tag = format!("{}{}d", std::process::id() % 100_000, &backend.to_string()[..1]);
        let namespace = Namespace::new(format!("sansio-tun-{tag}"));
        let ns = namespace.0.as_str();
        let runtime = runtime_in(&namespace, backend);
        let down = TunOptions::default().address(Ipv4Addr::new(10, 213, 5, 1), 30).up(false);
        runtime.spawn(Responder::new(format!("sntun{tag}a"), down)).unwrap();
        runtime.spawn(Responder::new(format!("sntun{tag}m"), TunOptions::default().mtu(1280))).unwrap();
        runtime.spawn(Responder::new(format!("sntun{tag}u"), TunOptions::default().up(true))).unwrap();
        let addressed = opened(&runtime).unwrap();
        let mtu_only = opened(&runtime).unwrap();
        let up_only = opened(&runtime).unwrap();

        let address = sh("ip", &["-n", ns, "-o", "-4", "addr", "show", "dev", &addressed]);
        assert!(address.contains(" inet 10.213.5.1/30 "), "{address}");
        let (flags, link) = link_flags(ns, &addressed);
        assert!(!flags.iter().any(|flag| flag == "UP"), "up though asked not to be: {link}");
        let (flags, link) = link_flags(ns, &mtu_only);
        assert!(!flags.iter().any(|flag| flag == "UP"), "up though not asked: {link}");
        assert!(link.contains(" mtu 1280 "), "{link}");
        let (flags, link) = link_flags(ns, &up_only);
        assert!(flags.iter().any(|flag| flag == "UP"), "not up: {link}");
        runtime.shutdown(std::time::Duration::from_secs(5)).unwrap();
    }
}
