use std::rc::Rc;

use sansio::prelude::*;

#[sansio::task]
pub struct Echo {
    shared: Rc<Vec<u8>>,
}

#[sansio::task]
impl Echo {
    #[on_input]
    fn packet(&mut self, ctx: &mut Ctx<Self>, packet: Vec<u8>) {
        let _ = (ctx, packet, &self.shared);
    }
}

#[sansio::worker]
pub enum Media {
    Echo(Echo),
}

fn main() {}
