#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Room(pub u32);

#[derive(Debug, Clone)]
pub struct Frame;

#[sansio::task(channel = Room, event = Frame)]
pub struct Viewer;

#[sansio::task]
impl Viewer {}

fn main() {}
