use sansio::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Room(pub u32);

#[derive(Debug)]
pub struct Frame;

#[sansio::task(channel = Room, event = Frame)]
pub struct Viewer;

#[sansio::task]
impl Viewer {
    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Room, Frame>) {
        let _ = (ctx, input);
    }
}

fn main() {}
