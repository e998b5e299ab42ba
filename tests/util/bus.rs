//! Tasks on a bus: viewers that subscribe to rooms and answer requests, a
//! publisher that publishes, broadcasts, sends and asks; their worker kind.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Barrier};
use std::time::Duration;

use sansio::RpcError;
use sansio::prelude::*;

/// A bus channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Room(pub u32);

/// A bus event.
#[derive(Debug, Clone, PartialEq)]
pub enum Media {
    Frame { publisher: u32, seq: u64 },
    Hello(u32),
}

/// A direct message for a viewer.
#[derive(Debug)]
pub struct Direct(pub u64);

/// Asks a viewer how many events it has received.
#[derive(Debug)]
pub struct GetCount;

impl Request for GetCount {
    type Response = u64;
}

/// Asks a viewer to answer later: when it next gets `AnswerNow`, or never.
#[derive(Debug)]
pub struct Later;

impl Request for Later {
    type Response = &'static str;
}

/// Makes a viewer answer its pending `Later` request, or let it go.
#[derive(Debug)]
pub enum Pending {
    AnswerNow,
    DropIt,
}

/// Commands for a viewer.
#[derive(Debug)]
pub enum ViewerCommand {
    Subscribe(Room),
    Unsubscribe(Room),
    Quit,
    /// Holds the viewer's worker inside this handler: the viewer meets the
    /// barrier once on arrival (the test then knows the worker is held) and
    /// once more to be let go.
    Hold(Arc<Barrier>),
}

/// What the tasks report.
#[derive(Debug, PartialEq)]
pub enum BusOut {
    Subscribed(u32),
    /// A viewer's subscription is in effect on every worker.
    InEffect(u32, Room),
    Got {
        viewer: u32,
        channel: Option<Room>,
        event: Media,
    },
    /// A viewer saw a publisher's frames out of order.
    OutOfOrder {
        viewer: u32,
        publisher: u32,
    },
    Direct {
        viewer: u32,
        value: u64,
    },
    Overflow {
        workers: usize,
    },
    SendFailed(RpcError),
    Count(Result<u64, RpcError>),
    Later(Result<&'static str, RpcError>),
}

#[sansio::task(output = BusOut, channel = Room, event = Media)]
#[derive(Debug, Default)]
pub struct Viewer {
    pub id: u32,
    pub rooms: Vec<Room>,
    /// Report every event received (off for large fan-outs).
    pub report: bool,
    /// Report when each subscription is in effect everywhere.
    pub confirm: bool,
    received: u64,
    last_seq: std::collections::HashMap<u32, u64>,
    later: Option<Responder<Later>>,
}

impl Viewer {
    pub fn new(id: u32, rooms: Vec<Room>, report: bool) -> Self {
        Viewer {
            id,
            rooms,
            report,
            ..Viewer::default()
        }
    }
}

#[sansio::task]
impl Viewer {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        for room in self.rooms.clone() {
            ctx.subscribe(room);
        }
        ctx.emit(BusOut::Subscribed(self.id));
    }

    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Room, Media>) {
        if let BusInput::Subscribed { channel } = &input
            && self.confirm
        {
            ctx.emit(BusOut::InEffect(self.id, channel.clone()));
        }
        let BusInput::Event { channel, event } = input else {
            return;
        };
        self.received += 1;
        if let Media::Frame { publisher, seq } = event {
            let last = self.last_seq.insert(publisher, seq);
            if last.is_some_and(|last| seq <= last) {
                ctx.emit(BusOut::OutOfOrder {
                    viewer: self.id,
                    publisher,
                });
            }
        }
        if self.report {
            ctx.emit(BusOut::Got {
                viewer: self.id,
                channel,
                event,
            });
        }
    }

    #[on_input]
    fn command(&mut self, ctx: &mut Ctx<Self>, command: ViewerCommand) {
        match command {
            ViewerCommand::Subscribe(room) => ctx.subscribe(room),
            ViewerCommand::Unsubscribe(room) => ctx.unsubscribe(room),
            ViewerCommand::Quit => ctx.finish(),
            ViewerCommand::Hold(barrier) => {
                barrier.wait();
                barrier.wait();
            }
        }
    }

    #[on_input]
    fn direct(&mut self, ctx: &mut Ctx<Self>, Direct(value): Direct) {
        ctx.emit(BusOut::Direct {
            viewer: self.id,
            value,
        });
    }

    #[on_request]
    fn count(&mut self, _ctx: &mut Ctx<Self>, _: GetCount) -> u64 {
        self.received
    }

    #[on_request]
    fn later(&mut self, _ctx: &mut Ctx<Self>, _: Later, responder: Responder<Later>) {
        self.later = Some(responder);
    }

    #[on_input]
    fn pending(&mut self, ctx: &mut Ctx<Self>, pending: Pending) {
        match (pending, self.later.take()) {
            (Pending::AnswerNow, Some(responder)) => responder.respond(ctx, "answered later"),
            (Pending::DropIt, responder) => drop(responder),
            (_, None) => {}
        }
    }
}

/// Commands for a publisher.
#[derive(Debug)]
pub enum PublisherCommand {
    /// Publish `count` frames on the room, numbered from where it left off.
    Publish(Room, u64),
    Broadcast(Media),
    Direct(TaskId<Viewer>, u64),
    Ask(TaskId<Viewer>, Duration),
    AskLater(TaskId<Viewer>, Duration),
}

#[sansio::task(output = BusOut, channel = Room, event = Media)]
#[derive(Debug, Default)]
pub struct Publisher {
    pub id: u32,
    pub next_seq: u64,
}

#[sansio::task]
impl Publisher {
    #[on_input]
    fn command(&mut self, ctx: &mut Ctx<Self>, command: PublisherCommand) {
        match command {
            PublisherCommand::Publish(room, count) => {
                for _ in 0..count {
                    let event = Media::Frame {
                        publisher: self.id,
                        seq: self.next_seq,
                    };
                    self.next_seq += 1;
                    ctx.publish(room.clone(), event);
                }
            }
            PublisherCommand::Broadcast(event) => ctx.broadcast(event),
            PublisherCommand::Direct(viewer, value) => ctx.send_to(viewer, Direct(value)),
            PublisherCommand::Ask(viewer, timeout) => {
                ctx.request(viewer, GetCount, timeout);
            }
            PublisherCommand::AskLater(viewer, timeout) => {
                ctx.request(viewer, Later, timeout);
            }
        }
    }

    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Room, Media>) {
        match input {
            BusInput::Overflow { workers, .. } => ctx.emit(BusOut::Overflow { workers }),
            BusInput::SendFailed { error } => ctx.emit(BusOut::SendFailed(error)),
            BusInput::Event { channel, event } => ctx.emit(BusOut::Got {
                viewer: u32::MAX,
                channel,
                event,
            }),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[on_input]
    fn count(&mut self, ctx: &mut Ctx<Self>, reply: Reply<GetCount>) {
        ctx.emit(BusOut::Count(reply.result));
    }

    #[on_input]
    fn later(&mut self, ctx: &mut Ctx<Self>, reply: Reply<Later>) {
        ctx.emit(BusOut::Later(reply.result));
    }
}

/// A task without a bus, in the same worker: it must not mind.
#[sansio::task(output = BusOut)]
#[derive(Debug, Default)]
pub struct Bystander;

#[sansio::task]
impl Bystander {}

#[sansio::worker(channel = Room, event = Media)]
pub enum Hub {
    Viewer(Viewer),
    Publisher(Publisher),
    Bystander(Bystander),
}
