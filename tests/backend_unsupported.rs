//! A backend the kernel refuses: io_uring under a seccomp filter that makes
//! `io_uring_setup` fail, as container runtimes' default profiles do. The
//! runtime must say what is missing (`Backend::check`, `Backend::available`,
//! `Builder::build`), never panic. Each case runs in a child process of this
//! test binary, which installs the filter on itself first (a filter cannot
//! be removed, and the kernel's answer is remembered per process).

mod util;

use std::process::Command;

use sansio::prelude::*;
use sansio::{Backend, Error, Unavailable};
use util::tasks::Media;

/// Set in the child: the errno its filter answers `io_uring_setup` with.
const CHILD: &str = "SANSIO_TEST_SECCOMP_ERRNO";

/// Makes every later `io_uring_setup` of this process fail with `errno`.
fn forbid_io_uring(errno: u32) {
    // A classic BPF program over `struct seccomp_data`, whose first field
    // is the system call's number: that one gets `errno`, every other call
    // is allowed.
    let nr = u32::try_from(libc::SYS_io_uring_setup).expect("a small number");
    let filter = [
        bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        bpf(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, nr),
        bpf(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | errno,
        ),
        bpf(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls; `program` and `filter` outlive them (the
    // kernel copies the program).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const program,
            ),
            0,
            "seccomp filters (CONFIG_SECCOMP_FILTER) are needed: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// In the child: forbids io_uring, then checks what each entry point says.
fn refused(errno: u32, says: &str) {
    forbid_io_uring(errno);
    let reason = match Backend::IoUring.check() {
        Err(Unavailable::Unsupported {
            backend: Backend::IoUring,
            reason,
        }) => reason,
        other => panic!("expected io_uring to be unsupported, got {other:?}"),
    };
    assert!(reason.contains(says), "{reason}");
    assert!(!Backend::IoUring.is_available());
    assert!(!Backend::available().contains(&Backend::IoUring));
    assert!(Backend::available().contains(&Backend::Mio));
    match Runtime::<Media>::builder()
        .workers(1)
        .backend(Backend::IoUring)
        .build()
    {
        Err(error @ Error::BackendUnsupported { .. }) => {
            let message = error.to_string();
            assert!(
                message.starts_with("the io-uring backend cannot run here: ")
                    && message.contains(says),
                "{message}"
            );
        }
        Err(other) => panic!("expected BackendUnsupported, got {other}"),
        Ok(_) => panic!("a runtime on io_uring was built where io_uring is forbidden"),
    }
    // The other backends are untouched.
    let runtime = Runtime::<Media>::builder()
        .workers(1)
        .backend(Backend::Mio)
        .build()
        .unwrap();
    runtime.shutdown(std::time::Duration::from_secs(5)).unwrap();
}

/// Runs `test` of this binary in a child whose filter answers `errno`; in
/// that child, checks that each entry point's reason says `says`.
fn refused_in_child(test: &str, errno: i32, says: &str) {
    if let Ok(errno) = std::env::var(CHILD) {
        refused(errno.parse().unwrap(), says);
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, errno.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 passed"),
        "the child ran no test: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn io_uring_forbidden_by_seccomp_is_named_not_a_panic() {
    refused_in_child(
        "io_uring_forbidden_by_seccomp_is_named_not_a_panic",
        libc::EPERM,
        "seccomp",
    );
}

#[test]
fn io_uring_missing_from_the_kernel_is_named_not_a_panic() {
    refused_in_child(
        "io_uring_missing_from_the_kernel_is_named_not_a_panic",
        libc::ENOSYS,
        "no io_uring",
    );
}

#[test]
fn every_backend_reads_back_from_its_name() {
    for backend in [
        Backend::Mio,
        Backend::Polling,
        Backend::BusyPoll,
        Backend::IoUring,
    ] {
        assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
        assert_eq!(backend.to_string(), backend.name());
    }
    let unknown = "uring".parse::<Backend>().unwrap_err();
    assert!(unknown.to_string().contains("io-uring"), "{unknown}");
    // This machine has io_uring: the suite runs on it.
    assert_eq!(Backend::IoUring.check().map_err(|e| e.to_string()), Ok(()));
    assert!(Backend::available().contains(&Backend::IoUring));
}
