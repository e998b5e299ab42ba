//! `TaskHarness` covers the whole task: requests answered by `#[on_request]`
//! (at once or later), ids made without a runtime, typed access to what a
//! task sends to other tasks, and what it sends on its sockets.

use std::net::SocketAddr;
use std::time::Duration;

use sansio::net::{TcpConnId, TcpEvent, UdpSocketId};
use sansio::prelude::*;
use sansio::testing::{self, TaskHarness};
use sansio::{Action, NetAction};

/// Store a value.
#[derive(Debug, PartialEq)]
pub struct Put(pub u32);

/// Ask for the total.
#[derive(Debug, PartialEq)]
pub struct GetTotal;

impl Request for GetTotal {
    type Response = u64;
}

/// Ask for the next value put (answered later).
#[derive(Debug)]
pub struct NextPut;

impl Request for NextPut {
    type Response = u32;
}

/// A store that answers `GetTotal` at once and `NextPut` when a value comes.
#[sansio::task]
#[derive(Default)]
pub struct Store {
    total: u64,
    waiting: Vec<Responder<NextPut>>,
}

#[sansio::task]
impl Store {
    #[on_input]
    fn put(&mut self, ctx: &mut Ctx<Self>, Put(value): Put) {
        self.total += u64::from(value);
        for responder in self.waiting.drain(..) {
            responder.respond(ctx, value);
        }
    }

    #[on_request]
    fn total(&mut self, _: &mut Ctx<Self>, _: GetTotal) -> u64 {
        self.total
    }

    #[on_request]
    fn next_put(&mut self, _: &mut Ctx<Self>, _: NextPut, responder: Responder<NextPut>) {
        self.waiting.push(responder);
    }
}

/// Tells a client what to do.
pub enum Go {
    /// Forward this value to the store.
    Forward(u32),
    /// Ask the store for its total.
    AskTotal,
    /// Echo these bytes on a connection and a UDP socket.
    Echo(TcpConnId, UdpSocketId, Vec<u8>),
}

/// Talks to a store and to peers.
#[sansio::task]
pub struct Client {
    store: TaskId<Store>,
    peers: Vec<SocketAddr>,
}

#[sansio::task]
impl Client {
    #[on_input]
    fn go(&mut self, ctx: &mut Ctx<Self>, go: Go) {
        match go {
            Go::Forward(value) => ctx.send_to(self.store, Put(value)),
            Go::AskTotal => {
                ctx.request(self.store, GetTotal, Duration::from_secs(1));
            }
            Go::Echo(conn, socket, bytes) => {
                ctx.tcp_send(conn, PacketBuf::copy_from(&bytes[..2]));
                ctx.emit(());
                ctx.tcp_send(conn, PacketBuf::copy_from(&bytes[2..]));
                ctx.udp_send_many(socket, &self.peers, PacketBuf::copy_from(&bytes));
            }
        }
    }

    #[on_input]
    fn total(&mut self, _: &mut Ctx<Self>, _: Reply<GetTotal>) {}

    #[on_input]
    fn tcp(&mut self, _: &mut Ctx<Self>, _: TcpEvent) {}
}

#[test]
fn a_request_is_answered_through_the_harness() {
    let mut store = TaskHarness::new(Store::default());
    assert_eq!(store.request(GetTotal), 0);
    store.input(Put(3)).input(Put(4));
    assert_eq!(store.request(GetTotal), 7);
}

#[test]
fn a_request_answered_later_is_read_when_it_is() {
    let mut store = TaskHarness::new(Store::default());
    let asked = store.ask(NextPut);
    assert_eq!(asked.answer(), None, "held until a value comes");
    store.input(Put(9));
    assert_eq!(asked.answer(), Some(Ok(9)));
}

#[test]
#[should_panic(expected = "keeps the request to answer later")]
fn request_says_when_the_task_answers_later() {
    let mut store = TaskHarness::new(Store::default());
    store.request(NextPut);
}

#[test]
fn ids_made_for_tests_name_tasks_and_sockets() {
    let store = testing::task_id::<Store>(1, 4, 2);
    assert_eq!(
        (store.worker(), store.slot(), store.generation()),
        (1, 4, 2)
    );
    assert_eq!(store.to_string(), "Store#1.4.2");
    assert_eq!(testing::tcp_conn_id(1, 7).worker(), 1);
    assert_ne!(testing::tcp_conn_id(0, 7), testing::tcp_conn_id(1, 7));
    assert_ne!(testing::udp_socket_id(0, 1), testing::udp_socket_id(0, 2));
    assert_eq!(testing::tun_id(3, 1).worker(), 3);
    assert_eq!(
        testing::tcp_listener_id(0, 1).to_string(),
        "tcp-listener#0:0.0.0/1"
    );
    let harness = TaskHarness::new(Store::default());
    assert_eq!(harness.id(), testing::task_id::<Store>(0, 0, 0));
}

#[test]
fn messages_and_requests_to_other_tasks_are_typed() {
    let store = testing::task_id::<Store>(1, 4, 2);
    let mut client = TaskHarness::new(Client {
        store,
        peers: Vec::new(),
    });
    client
        .input(Go::Forward(5))
        .input(Go::AskTotal)
        .input(Go::Forward(6));
    // Each direct message, with its target, as the type that was sent.
    assert_eq!(
        client.drain_sent::<Store, Put>(),
        [(store, Put(5)), (store, Put(6))]
    );
    // The request stays queued, readable as its own type.
    let actions = client.drain_actions();
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].request::<GetTotal>(), Some(&GetTotal));
    assert_eq!(actions[0].requested_of::<Store>(), Some(store));
    assert!(actions[0].request::<NextPut>().is_none());
    // Or taken with its id, to answer it.
    client.input(Go::AskTotal);
    let asked = client.drain_requests::<Store, GetTotal>();
    assert_eq!(asked.len(), 1);
    assert_eq!((asked[0].0, &asked[0].2), (store, &GetTotal));
    client.input(Reply::<GetTotal> {
        id: asked[0].1,
        result: Ok(11),
    });
    assert!(client.drain_actions().is_empty());
}

#[test]
fn what_a_task_sends_on_its_sockets_is_read_back() {
    let peers: Vec<SocketAddr> = vec![
        "127.0.0.1:9001".parse().unwrap(),
        "127.0.0.1:9002".parse().unwrap(),
    ];
    let store = testing::task_id::<Store>(0, 0, 1);
    let mut client = TaskHarness::new(Client {
        store,
        peers: peers.clone(),
    });
    let (conn, socket) = (testing::tcp_conn_id(0, 1), testing::udp_socket_id(0, 1));
    client.input(Go::Echo(conn, socket, b"hello".to_vec()));
    assert_eq!(client.drain_tcp_sent(conn), b"hello");
    assert!(client.drain_tcp_sent(testing::tcp_conn_id(0, 2)).is_empty());
    let datagrams: Vec<(UdpSocketId, SocketAddr, Vec<u8>)> = client
        .drain_udp_sent()
        .into_iter()
        .map(|(socket, to, data)| (socket, to, data.to_vec()))
        .collect();
    assert_eq!(
        datagrams,
        [
            (socket, peers[0], b"hello".to_vec()),
            (socket, peers[1], b"hello".to_vec())
        ]
    );
    // The emit in between is still there.
    assert_eq!(client.drain(), [()]);
}

/// What each action is, to compare orders.
fn kind(action: &Action<Client>) -> &'static str {
    match action {
        Action::Emit(()) => "emit",
        Action::Net(NetAction::TcpSend { .. }) => "tcp send",
        Action::Net(NetAction::UdpSendMany { .. }) => "udp send many",
        _ => "other",
    }
}

#[test]
fn actions_come_back_in_the_order_they_were_queued() {
    let mut client = TaskHarness::new(Client {
        store: testing::task_id::<Store>(0, 0, 1),
        peers: vec!["127.0.0.1:9001".parse().unwrap()],
    });
    let (conn, socket) = (testing::tcp_conn_id(0, 1), testing::udp_socket_id(0, 1));
    let echo = ["tcp send", "emit", "tcp send", "udp send many"];
    client.input(Go::Echo(conn, socket, b"hello".to_vec()));
    client.input(Go::Echo(conn, socket, b"again".to_vec()));
    let order: Vec<&str> = client.drain_actions().iter().map(kind).collect();
    assert_eq!(order, [echo, echo].concat());

    // Taking some out leaves the others in their order.
    client.input(Go::Echo(conn, socket, b"hello".to_vec()));
    client.input(Go::Echo(conn, socket, b"again".to_vec()));
    assert_eq!(client.drain_tcp_sent(conn), b"helloagain");
    let order: Vec<&str> = client.drain_actions().iter().map(kind).collect();
    assert_eq!(order, ["emit", "udp send many", "emit", "udp send many"]);
    assert!(client.drain_actions().is_empty());
}
