use sansio::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Room(pub u32);

#[derive(Debug, Clone)]
pub struct Frame;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic(pub String);

#[sansio::task(channel = Topic, event = Frame)]
pub struct Viewer;

#[sansio::task]
impl Viewer {
    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Topic, Frame>) {
        let _ = (ctx, input);
    }
}

#[sansio::worker(channel = Room, event = Frame)]
pub enum Hub {
    Viewer(Viewer),
}

fn main() {}
