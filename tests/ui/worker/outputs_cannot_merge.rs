use sansio::prelude::*;

#[sansio::task(output = u32)]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    fn number(&mut self, ctx: &mut Ctx<Self>, n: u32) {
        ctx.emit(n);
    }
}

#[sansio::task(output = String)]
pub struct Namer;

#[sansio::task]
impl Namer {}

pub enum AppEvent {
    Number(u32),
}

impl From<u32> for AppEvent {
    fn from(n: u32) -> Self {
        AppEvent::Number(n)
    }
}

#[sansio::worker(output = AppEvent)]
pub enum Media {
    Echo(Echo),
    Namer(Namer),
}

fn main() {}
