use sansio::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Room(pub u32);

#[derive(Debug, Clone)]
pub struct Frame;
use std::time::Duration;

pub struct GetCount;

impl Request for GetCount {
    type Response = u64;
}

#[sansio::task(output = u64, channel = Room, event = Frame)]
#[derive(Default)]
pub struct Viewer {
    frames: u64,
}

#[sansio::task]
impl Viewer {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.subscribe(Room(1));
    }

    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Room, Frame>) {
        if let BusInput::Event { .. } = input {
            self.frames += 1;
            ctx.emit(self.frames);
        }
    }

    #[on_input]
    fn publish(&mut self, ctx: &mut Ctx<Self>, room: Room) {
        ctx.publish(room, Frame);
    }

    #[on_request]
    fn count(&mut self, _: &mut Ctx<Self>, _: GetCount) -> u64 {
        self.frames
    }
}

/// A task without a bus can share a worker that has one.
#[sansio::task]
pub struct Quiet;

#[sansio::task]
impl Quiet {}

#[sansio::worker(channel = Room, event = Frame)]
pub enum Hub {
    Viewer(Viewer),
    Quiet(Quiet),
}

fn main() {
    let runtime = Runtime::<Hub>::builder().workers(1).build().unwrap();
    let viewer = runtime.spawn(Viewer::default()).unwrap();
    runtime.spawn(Quiet).unwrap();
    runtime.send(viewer, Room(1)).unwrap();
    match runtime.next_event(Duration::from_secs(10)) {
        Some(Event::Output { output: HubOutput::Viewer(1), .. }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(runtime.call(viewer, GetCount, Duration::from_secs(10)), Ok(1));
    runtime.shutdown(Duration::from_secs(5)).unwrap();
}
