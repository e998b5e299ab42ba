//! UDP through the runtime, on every backend, with real sockets on
//! loopback: bind, echo without copying, fan-out, oversized datagrams, send
//! errors, queue limits, and sockets closed with their task.

mod util;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use sansio::Backend;
use sansio::net::UdpOptions;
use sansio::prelude::*;
use util::next;
use util::udp::{
    Command, Net, NetOutput, UdpOut, UdpTask, any_port, client, recv, require_offload, silent,
};

/// Spawns `task` and returns its id and the address it bound.
fn spawn_bound(runtime: &Runtime<Net>, task: UdpTask) -> (TaskId<UdpTask>, SocketAddr) {
    let id = runtime.spawn(task).unwrap();
    match next(runtime) {
        Event::Output {
            output: NetOutput::Udp(UdpOut::Bound(Ok(addr))),
            ..
        } => (id, addr),
        other => panic!("expected the bind, got {other:?}"),
    }
}

/// The next output of a UDP task.
fn next_out(runtime: &Runtime<Net>) -> UdpOut {
    match next(runtime) {
        Event::Output {
            output: NetOutput::Udp(out),
            ..
        } => out,
        other => panic!("unexpected {other:?}"),
    }
}

fn runtime(backend: Backend) -> Runtime<Net> {
    Runtime::<Net>::builder()
        .workers(2)
        .backend(backend)
        .build()
        .unwrap()
}

all_backend_tests! {
    fn an_echo_task_answers_every_datagram_in_order(backend: Backend) {
        let runtime = runtime(backend);
        let (_, server) = spawn_bound(&runtime, UdpTask::echo(any_port()));
        let client = client();
        for n in 0..200u32 {
            let payload = format!("datagram {n}");
            client.send_to(payload.as_bytes(), server).unwrap();
            let (answer, from) = recv(&client);
            assert_eq!(from, server);
            assert_eq!(answer, payload.as_bytes());
        }
        // A window of 64 in flight: all come back, in order (one socket, one
        // task, one worker).
        for n in 0..64u8 {
            client.send_to(&[n; 1200], server).unwrap();
        }
        for n in 0..64u8 {
            assert_eq!(recv(&client).0, vec![n; 1200]);
        }
        // Counters are published at the end of each loop iteration.
        util::eventually("264 datagrams counted each way", || {
            let stats = runtime.stats();
            let received: u64 = stats.workers.iter().map(|w| w.udp_received).sum();
            let sent: u64 = stats.workers.iter().map(|w| w.udp_sent).sum();
            (received, sent) == (264, 264)
        });
    }

    fn binding_a_taken_address_is_reported(backend: Backend) {
        let runtime = runtime(backend);
        let taken = std::net::UdpSocket::bind(any_port()).unwrap();
        runtime.spawn(UdpTask::echo(taken.local_addr().unwrap())).unwrap();
        match next_out(&runtime) {
            UdpOut::Bound(Err(error)) => assert_eq!(error.kind(), io::ErrorKind::AddrInUse),
            other => panic!("expected a failed bind, got {other:?}"),
        }
    }

    fn reuse_port_lets_two_tasks_share_an_address(backend: Backend) {
        let runtime = runtime(backend);
        let options = UdpOptions::default().reuse_port(true);
        let (_, first) = spawn_bound(&runtime, UdpTask::new(any_port(), options.clone(), true));
        let (_, second) = spawn_bound(&runtime, UdpTask::new(first, options, true));
        assert_eq!(first, second);
        let client = client();
        client.send_to(b"shared", first).unwrap();
        assert_eq!(recv(&client).0, b"shared");
    }

    fn oversized_datagrams_are_counted_and_dropped(backend: Backend) {
        let runtime = runtime(backend);
        let options = UdpOptions::default().max_datagram(100);
        let (_, server) = spawn_bound(&runtime, UdpTask::listener(any_port(), options));
        let client = client();
        client.send_to(&[1; 500], server).unwrap();
        client.send_to(&[2; 100], server).unwrap();
        match next_out(&runtime) {
            UdpOut::Packet { data, .. } => assert_eq!(data, vec![2; 100], "the cut datagram is not delivered"),
            other => panic!("unexpected {other:?}"),
        }
        util::eventually("the oversized datagram is counted", || {
            runtime.stats().workers.iter().map(|w| w.udp_truncated).sum::<u64>() == 1
        });
    }

    fn a_run_to_one_peer_leaves_in_gso_messages_and_arrives_whole(backend: Backend) {
        require_offload();
        let runtime = runtime(backend);
        let (task, _) = spawn_bound(&runtime, UdpTask::listener(any_port(), UdpOptions::default()));
        let client = client();
        let to = client.local_addr().unwrap();
        runtime.send(task, Command::Run { to, count: 100, size: 400 }).unwrap();
        for n in 0..100u8 {
            assert_eq!(recv(&client).0, vec![n; 400], "datagram {n}");
        }
        util::eventually("100 datagrams counted as sent in GSO runs", || {
            let stats = runtime.stats();
            let sent: u64 = stats.workers.iter().map(|w| w.udp_sent).sum();
            let segmented: u64 = stats.workers.iter().map(|w| w.udp_sent_segmented).sum();
            (sent, segmented) == (100, 100)
        });
        // With GSO off, the same run goes datagram by datagram.
        let options = UdpOptions::default().gso(false);
        let (plain, _) = spawn_bound(&runtime, UdpTask::listener(any_port(), options));
        runtime.send(plain, Command::Run { to, count: 100, size: 400 }).unwrap();
        for n in 0..100u8 {
            assert_eq!(recv(&client).0, vec![n; 400], "datagram {n}");
        }
        util::eventually("200 sent, still 100 in GSO runs", || {
            let stats = runtime.stats();
            let sent: u64 = stats.workers.iter().map(|w| w.udp_sent).sum();
            let segmented: u64 = stats.workers.iter().map(|w| w.udp_sent_segmented).sum();
            (sent, segmented) == (200, 100)
        });
    }

    fn gro_splits_coalesced_bursts_into_the_datagrams_sent(backend: Backend) {
        require_offload();
        let runtime = runtime(backend);
        let options = UdpOptions::default().gro(true).max_datagram(1000);
        let (_, receiver) = spawn_bound(&runtime, UdpTask::listener(any_port(), options));
        let (sender, from) =
            spawn_bound(&runtime, UdpTask::listener(any_port(), UdpOptions::default()));
        // A GSO run reaches the GRO socket as one message, and comes out as
        // 50 datagrams; a run of datagrams above max_datagram is counted
        // and dropped, datagram by datagram; then a last small one.
        runtime.send(sender, Command::Run { to: receiver, count: 50, size: 300 }).unwrap();
        runtime.send(sender, Command::Run { to: receiver, count: 3, size: 1500 }).unwrap();
        runtime.send(sender, Command::SendTo(receiver, b"last".to_vec())).unwrap();
        let mut got = Vec::new();
        while got.len() < 51 {
            match next_out(&runtime) {
                UdpOut::Packet { from: sent_from, data } => {
                    assert_eq!(sent_from, from);
                    got.push(data);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let mut expected: Vec<Vec<u8>> = (0..50u8).map(|n| vec![n; 300]).collect();
        expected.push(b"last".to_vec());
        assert_eq!(got, expected);
        util::eventually("coalesced datagrams and the oversized ones counted", || {
            let stats = runtime.stats();
            let coalesced: u64 = stats.workers.iter().map(|w| w.udp_received_coalesced).sum();
            let truncated: u64 = stats.workers.iter().map(|w| w.udp_truncated).sum();
            coalesced >= 2 && truncated == 3
        });
    }

    fn one_payload_fans_out_to_many_peers(backend: Backend) {
        let runtime = runtime(backend);
        let (task, server) = spawn_bound(&runtime, UdpTask::listener(any_port(), UdpOptions::default()));
        let clients: Vec<_> = (0..5).map(|_| client()).collect();
        let addresses = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        runtime.send(task, Command::SendMany(addresses, b"to everyone".to_vec())).unwrap();
        for client in &clients {
            assert_eq!(recv(client), (b"to everyone".to_vec(), server));
        }
    }

    fn failed_sends_come_back_with_their_payload(backend: Backend) {
        let runtime = runtime(backend);
        let (task, _) = spawn_bound(&runtime, UdpTask::listener(any_port(), UdpOptions::default()));
        // An IPv6 destination from an IPv4 socket: the kernel refuses it.
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        runtime.send(task, Command::SendTo(v6, b"refused".to_vec())).unwrap();
        match next_out(&runtime) {
            UdpOut::Error { peer, returned, .. } => {
                assert_eq!(peer, Some(v6));
                assert_eq!(returned.as_deref(), Some(&b"refused"[..]));
            }
            other => panic!("unexpected {other:?}"),
        }
        // A closed socket.
        let client = client();
        runtime.send(task, Command::Close).unwrap();
        runtime.send(task, Command::SendTo(client.local_addr().unwrap(), b"late".to_vec())).unwrap();
        match next_out(&runtime) {
            UdpOut::Error { kind, returned, .. } => {
                assert_eq!(kind, io::ErrorKind::NotConnected);
                assert_eq!(returned.as_deref(), Some(&b"late"[..]));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(silent(&client, Duration::from_millis(50)));
        util::eventually("both failed sends are counted", || {
            runtime.stats().workers.iter().map(|w| w.udp_send_errors).sum::<u64>() == 2
        });
    }

    fn a_send_queue_beyond_its_limit_hands_the_rest_back(backend: Backend) {
        let runtime = runtime(backend);
        let options = UdpOptions::default().send_queue(4);
        let (task, _) = spawn_bound(&runtime, UdpTask::listener(any_port(), options));
        let client = client();
        // Ten sends from one handler: four fit the queue before it is flushed.
        runtime.send(task, Command::Burst(client.local_addr().unwrap(), 10)).unwrap();
        for n in 0..4u8 {
            assert_eq!(recv(&client).0, [n]);
        }
        for n in 4..10u8 {
            match next_out(&runtime) {
                UdpOut::Error { kind, returned, .. } => {
                    assert_eq!(kind, io::ErrorKind::WouldBlock);
                    assert_eq!(returned, Some(vec![n]));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn replies_to_a_peer_that_is_gone_do_not_hurt(backend: Backend) {
        let runtime = runtime(backend);
        let (_, server) = spawn_bound(&runtime, UdpTask::echo(any_port()));
        // The sender closes before the echo comes back: unanswerable.
        for _ in 0..20 {
            let gone = client();
            gone.send_to(b"anyone?", server).unwrap();
        }
        let client = client();
        client.send_to(b"still there?", server).unwrap();
        assert_eq!(recv(&client).0, b"still there?");
        util::eventually("every reply is sent or counted", || {
            let stats = runtime.stats();
            stats.workers.iter().map(|w| w.udp_sent + w.udp_send_errors).sum::<u64>() >= 21
        });
    }

    fn a_task_that_ends_closes_its_socket(backend: Backend) {
        let runtime = runtime(backend);
        let (task, server) = spawn_bound(&runtime, UdpTask::echo(any_port()));
        runtime.send(task, Command::Quit).unwrap();
        assert!(matches!(next(&runtime), Event::Finished { .. }));
        util::eventually("the socket is closed", || {
            runtime.stats().workers.iter().map(|w| w.udp_sockets).sum::<u64>() == 0
        });
        // The port is free again: a socket of ours takes it (and keeps it,
        // so no other test's socket can), gets what is sent there, and
        // nothing answers.
        let rebound = std::net::UdpSocket::bind(server).expect("the port is free again");
        rebound.set_read_timeout(Some(util::PATIENCE)).unwrap();
        let client = client();
        client.send_to(b"hello?", server).unwrap();
        assert_eq!(recv(&rebound).0, b"hello?");
        assert!(silent(&client, Duration::from_millis(50)));
    }
}
