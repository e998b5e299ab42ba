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
impl Namer {
    #[on_input]
    fn name(&mut self, ctx: &mut Ctx<Self>, n: u32) {
        ctx.emit(format!("#{n}"));
    }
}

/// One output type for the whole worker, from each task's own.
#[derive(Debug, PartialEq)]
pub enum AppEvent {
    Number(u32),
    Name(String),
}

impl From<u32> for AppEvent {
    fn from(n: u32) -> Self {
        AppEvent::Number(n)
    }
}

impl From<String> for AppEvent {
    fn from(name: String) -> Self {
        AppEvent::Name(name)
    }
}

#[sansio::worker(output = AppEvent)]
pub enum Media {
    Echo(Echo),
    Namer(Namer),
}

fn main() {
    let runtime = Runtime::<Media>::builder().workers(1).build().unwrap();
    let echo = runtime.spawn(Echo).unwrap();
    let namer = runtime.spawn(Namer).unwrap();
    runtime.send(echo, 7u32).unwrap();
    runtime.send(namer, 8u32).unwrap();
    let mut outputs = Vec::new();
    while outputs.len() < 2 {
        match runtime.next_event(std::time::Duration::from_secs(10)) {
            Some(Event::Output { task, output }) => outputs.push((task, output)),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        outputs,
        [
            (MediaId::Echo(echo), AppEvent::Number(7)),
            (MediaId::Namer(namer), AppEvent::Name("#8".to_owned())),
        ]
    );
    let report = runtime.shutdown(std::time::Duration::from_secs(5)).unwrap();
    assert_eq!(report.finished, 2);
}
