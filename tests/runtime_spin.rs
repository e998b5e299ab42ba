//! The spin before sleeping (`Builder::spin_before_sleep`) is for a stream of
//! controller messages: a worker spins after a turn that took one, so that
//! the next message finds it awake, and goes straight to the poller after a
//! turn of socket I/O alone, since the spin watches the inbox only and would
//! hold a datagram back for its whole length. A long spin (50 ms) makes
//! either mistake plain to see. Busy-poll never sleeps, so never spins.

mod util;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use sansio::prelude::*;
use util::tasks::{Echo, Media, Ping};
use util::udp::{Net, NetOutput, UdpOut, UdpTask, any_port};
use util::{PATIENCE, next};

const SPIN: Duration = Duration::from_millis(50);
const ROUND_TRIPS: u8 = 40;

backend_tests! {
    fn datagrams_are_not_held_back_by_the_spin(backend: Backend) {
        let runtime = Runtime::<Net>::builder()
            .workers(1)
            .backend(backend)
            .spin_before_sleep(SPIN)
            .build()
            .unwrap();
        runtime.spawn(UdpTask::echo(any_port())).unwrap();
        let addr = match next(&runtime) {
            Event::Output {
                output: NetOutput::Udp(UdpOut::Bound(Ok(addr))),
                ..
            } => addr,
            other => panic!("expected the echo's address, got {other:?}"),
        };
        let client = UdpSocket::bind(any_port()).unwrap();
        client.set_read_timeout(Some(PATIENCE)).unwrap();
        let started = Instant::now();
        for n in 0..ROUND_TRIPS {
            client.send_to(&[n], addr).unwrap();
            let mut buf = [0u8; 8];
            let got = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..got], &[n]);
        }
        // A spin after every turn would hold each datagram for up to 50 ms:
        // 40 one at a time would take about 2 s.
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "{ROUND_TRIPS} echoes one at a time took {took:?}: the spin held datagrams back"
        );
        runtime.shutdown(PATIENCE).unwrap();
    }

    fn a_stream_of_messages_finds_the_worker_awake(backend: Backend) {
        let runtime = Runtime::<Media>::builder()
            .workers(1)
            .backend(backend)
            .spin_before_sleep(SPIN)
            .build()
            .unwrap();
        let echo: TaskId<Echo> = runtime.spawn(Echo::default()).unwrap();
        runtime.send(echo, Ping(0)).unwrap();
        next(&runtime);
        let wakeups = || runtime.stats().workers[0].wakeups;
        let before = wakeups();
        for n in 1..=u64::from(ROUND_TRIPS) {
            runtime.send(echo, Ping(n)).unwrap();
            next(&runtime);
        }
        // Each next message comes within microseconds, well inside the spin:
        // the worker should not have slept (without the spin: one wakeup
        // per message).
        let woken = wakeups() - before;
        assert!(
            woken < u64::from(ROUND_TRIPS) / 2,
            "{woken} wakeups for {ROUND_TRIPS} messages one at a time: the worker slept between them"
        );
        runtime.shutdown(PATIENCE).unwrap();
    }
}
