//! How an io_uring worker's ring is made, and the probe that finds out
//! once per process what this kernel can do.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, types};

use super::{CQ_ENTRIES, ENTRIES, Ring, WAKER};
use crate::backend::Waker;

/// An error saying that io_uring cannot serve here, and why.
pub(super) fn unsupported(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_string())
}

/// When the kernel runs a ring's completion work (the part of completing
/// a request that runs in the submitting thread's context).
///
/// Chosen by measurement (`scripts/compare-builds`, 2026-12-01, 2-core AMD
/// EPYC VM, 8 rounds, the tokio rows as the A/A control at 1.03–1.13):
/// `Cooperative` against `Deferred` 1.05 [0.95–1.20] packets/s pooled over
/// the UDP echo loads, no difference; `Plain` against `Deferred` 0.83
/// [0.75–0.98] at 64 B × 8 in flight, a loss (the worker is interrupted for
/// completion work between its own calls). So `Deferred` where the kernel
/// has it, `Cooperative` where it has only that, `Plain` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TaskRun {
    /// `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1): only when the worker
    /// waits.
    Deferred,
    /// `COOP_TASKRUN | TASKRUN_FLAG` (Linux 5.19): at the worker's next
    /// system call, without interrupting it.
    Cooperative,
    /// As soon as it comes, interrupting the worker.
    Plain,
}

/// How rings are made on this kernel, as the probe found.
#[derive(Debug, Clone, Copy)]
pub(super) struct Setup {
    pub(super) task_run: TaskRun,
    /// Multishot `recvmsg` into provided buffer rings (Linux 6.0): UDP
    /// sockets are received by the ring; without it, read on readiness.
    pub(super) receives: bool,
    /// Multishot `read` (Linux 6.7): TUN/TAP devices are read by the ring;
    /// without it, on readiness.
    pub(super) reads: bool,
}

/// Makes a disabled ring (see the module's notes).
pub(super) fn build_ring(setup: Setup) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder.setup_cqsize(CQ_ENTRIES).setup_r_disabled();
    match setup.task_run {
        TaskRun::Deferred => {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
        TaskRun::Cooperative => {
            builder.setup_coop_taskrun().setup_taskrun_flag();
        }
        TaskRun::Plain => {}
    }
    builder
        .build(ENTRIES)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ENOSYS) => {
                unsupported("this kernel has no io_uring (io_uring_setup: ENOSYS)")
            }
            Some(libc::EPERM) => {
                let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
                    .map(|value| format!("kernel.io_uring_disabled = {}", value.trim()))
                    .unwrap_or_else(|_| "kernel.io_uring_disabled unreadable".to_owned());
                unsupported(format!(
                    "io_uring_setup was refused (EPERM): io_uring is disabled ({disabled}) \
                 or a seccomp filter forbids it"
                ))
            }
            _ => io::Error::new(error.kind(), format!("io_uring_setup failed: {error}")),
        })
}

/// Makes a disabled ring whose submission queue a kernel thread polls
/// (`IORING_SETUP_SQPOLL`), for `idle` (rounded up to milliseconds, at
/// least one) after the last entry before it sleeps.
pub(super) fn build_sqpoll_ring(idle: Duration) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_cqsize(CQ_ENTRIES)
        .setup_r_disabled()
        .setup_sqpoll(sqpoll_idle_millis(idle))
        .build(ENTRIES)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::EPERM) => unsupported(
                "io_uring_setup with SQPOLL was refused (EPERM): before Linux 5.11 a polling \
                 thread needs CAP_SYS_ADMIN, or a seccomp filter forbids io_uring",
            ),
            _ => io::Error::new(
                error.kind(),
                format!("io_uring_setup with SQPOLL failed: {error}"),
            ),
        })
}

/// The kernel's `sq_thread_idle`: milliseconds, rounded up, at least one
/// (zero would mean the kernel's default of a second).
pub(super) fn sqpoll_idle_millis(idle: Duration) -> u32 {
    u32::try_from(idle.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// Whether this kernel can run the io_uring backend, and if not, what is
/// missing; found out once per process, on a thread of its own (the test
/// ring's completion work, and its teardown's, would otherwise interrupt
/// the caller's next blocking call).
pub(crate) fn probe() -> Result<(), String> {
    probed().map(drop)
}

pub(super) fn probed() -> Result<Setup, String> {
    static PROBED: OnceLock<Result<Setup, String>> = OnceLock::new();
    PROBED
        .get_or_init(|| {
            std::thread::Builder::new()
                .name("sansio-io-uring-probe".to_owned())
                .spawn(|| test_ring().map_err(|error| error.to_string()))
                .map_err(|error| format!("the io_uring probe's thread did not start: {error}"))?
                .join()
                .unwrap_or_else(|_| Err("the io_uring probe panicked".to_owned()))
        })
        .clone()
}

/// Makes a ring as the workers will, and sees it serve a multishot poll.
pub(super) fn test_ring() -> io::Result<Setup> {
    let mut setup = Setup {
        task_run: TaskRun::Deferred,
        receives: false,
        reads: false,
    };
    // An older kernel refuses flags it does not know (EINVAL): the next
    // best, down to none.
    let ring = loop {
        match build_ring(setup) {
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                setup.task_run = match setup.task_run {
                    TaskRun::Deferred => TaskRun::Cooperative,
                    TaskRun::Cooperative => TaskRun::Plain,
                    TaskRun::Plain => return Err(error),
                };
            }
            result => break result?,
        }
    };
    if !ring.params().is_feature_ext_arg() {
        return Err(unsupported(
            "io_uring lacks IORING_FEAT_EXT_ARG (a wait with a timeout): Linux 5.11 or later is needed",
        ));
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|error| unsupported(format!("io_uring cannot say its opcodes: {error}")))?;
    for (code, name) in [
        (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD"),
        (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
    ] {
        if !probe.is_supported(code) {
            return Err(unsupported(format!("io_uring lacks the opcode {name}")));
        }
    }
    let (mut ring, waker) = Ring::new(ring)?;
    ring.enable()?;
    // The waker's poll must be multishot (Linux 5.13): wake once and see
    // that it stays armed.
    waker.wake()?;
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let timeout = types::Timespec::from(give_up.saturating_duration_since(Instant::now()));
        match ring
            .ring
            .submitter()
            .submit_with_args(1, &types::SubmitArgs::new().timespec(&timeout))
        {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if error.raw_os_error() == Some(libc::ETIME) => {
                return Err(unsupported("io_uring never reported a poll of an eventfd"));
            }
            Err(error) => return Err(error),
        }
        if let Some(completion) = ring.ring.completion().next() {
            if completion.user_data() != WAKER || completion.result() < 0 {
                return Err(unsupported(format!(
                    "io_uring polls fail here ({})",
                    io::Error::from_raw_os_error(-completion.result())
                )));
            }
            if !cqueue::more(completion.flags()) {
                return Err(unsupported(
                    "io_uring lacks multishot polls (IORING_POLL_ADD_MULTI): Linux 5.13 or later is needed",
                ));
            }
            break;
        }
    }
    setup.receives = receives_work(&mut ring);
    setup.reads = setup.receives && probe.is_supported(opcode::ReadMulti::CODE);
    Ok(setup)
}

/// Whether multishot `recvmsg` into a provided buffer ring works on this
/// kernel (Linux 6.0): a datagram sent to a socket of the probe's ring
/// comes back through it. Where it does not, sockets are read on
/// readiness, as on the other backends.
fn receives_work(ring: &mut Ring) -> bool {
    let Ok(socket) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let fd = socket.as_raw_fd();
    ring.receives_supported = true;
    let started = socket.set_nonblocking(true).is_ok()
        && ring
            .start_receive(fd, 1, 64, super::Kind::Datagrams)
            .is_ok()
        && ring.submit_now().is_ok()
        && socket
            .local_addr()
            .and_then(|local| socket.send_to(b"probe", local))
            .is_ok();
    let mut got = false;
    let give_up = Instant::now() + Duration::from_secs(2);
    let mut ready = Vec::new();
    while started && !got && Instant::now() < give_up {
        let waited = ring.enter(Some(Instant::now() + Duration::from_millis(50)));
        if waited.is_err() || ring.reap(&mut ready).is_err() {
            break;
        }
        let taken = ring.take(fd, 1, &mut |datagram| got = datagram.payload == b"probe");
        if taken.is_err() {
            break;
        }
    }
    let ended = ring.end_receive(fd).is_ok() && ring.quiesce();
    got && ended
}
