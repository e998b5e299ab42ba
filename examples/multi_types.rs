//! Two task types in one worker kind: chat `Room`s that members join, post
//! to and leave, and a `Clock` that ticks. Both are spawned on the same
//! workers, messaged through their typed ids, and shut down gracefully.
//!
//! ```text
//! cargo run --example multi_types
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use sansio::prelude::*;

/// A member joins a room.
pub struct Join(pub String);
/// A member leaves a room.
pub struct Leave(pub String);
/// A member posts to a room.
pub struct Post {
    pub from: String,
    pub text: String,
}

/// What a room reports.
#[derive(Debug)]
pub enum RoomEvent {
    Joined {
        name: String,
        members: usize,
    },
    Left {
        name: String,
        members: usize,
    },
    Message {
        from: String,
        text: String,
        delivered_to: usize,
    },
    Rejected {
        from: String,
        reason: &'static str,
    },
    Closed {
        members: usize,
        messages: u64,
    },
}

#[sansio::task(output = RoomEvent)]
#[derive(Default)]
pub struct Room {
    members: BTreeSet<String>,
    messages: u64,
}

#[sansio::task]
impl Room {
    #[on_input]
    fn join(&mut self, ctx: &mut Ctx<Self>, Join(name): Join) {
        self.members.insert(name.clone());
        ctx.emit(RoomEvent::Joined {
            name,
            members: self.members.len(),
        });
    }

    #[on_input]
    fn leave(&mut self, ctx: &mut Ctx<Self>, Leave(name): Leave) {
        self.members.remove(&name);
        ctx.emit(RoomEvent::Left {
            name,
            members: self.members.len(),
        });
    }

    #[on_input]
    fn post(&mut self, ctx: &mut Ctx<Self>, post: Post) {
        if !self.members.contains(&post.from) {
            ctx.emit(RoomEvent::Rejected {
                from: post.from,
                reason: "not a member",
            });
            return;
        }
        self.messages += 1;
        ctx.emit(RoomEvent::Message {
            delivered_to: self.members.len() - 1,
            from: post.from,
            text: post.text,
        });
    }

    #[on_shutdown]
    fn close(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(RoomEvent::Closed {
            members: self.members.len(),
            messages: self.messages,
        });
        ctx.finish();
    }
}

/// Ticks every 50 ms and reports every fourth tick.
#[sansio::task(output = u64)]
#[derive(Default)]
pub struct Clock {
    ticks: u64,
}

#[sansio::task]
impl Clock {
    #[on_tick(every = "50ms")]
    fn tick(&mut self, ctx: &mut Ctx<Self>) {
        self.ticks += 1;
        if self.ticks.is_multiple_of(4) {
            ctx.emit(self.ticks);
        }
    }
}

#[sansio::worker]
pub enum Chat {
    Room(Room),
    Clock(Clock),
}

fn print(event: Event<Chat>) {
    match event {
        Event::Output {
            task,
            output: ChatOutput::Room(event),
        } => println!("  {task}: {event:?}"),
        Event::Output {
            task,
            output: ChatOutput::Clock(ticks),
        } => println!("  {task}: {ticks} ticks"),
        Event::Finished { task } => println!("  {task}: finished"),
        Event::Panicked { task, message } => println!("  {task}: panicked: {message}"),
        Event::Undelivered { task, input } => println!("  {task}: undelivered {input:?}"),
        other => println!("  {other:?}"),
    }
}

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    about = "Two task types in one worker kind: chat rooms and a clock (about half a second)"
)]
struct Args {
    /// Worker threads.
    #[arg(long, default_value_t = 2, value_parser = sansio_suite::cli::at_least_one)]
    workers: usize,
    /// The backend the workers sleep in: mio, polling, busy-poll or io-uring.
    #[arg(long, default_value_t = sansio::Backend::Mio)]
    backend: sansio::Backend,
}

fn main() -> sansio::Result<()> {
    let args = <Args as clap::Parser>::parse();
    sansio_suite::cli::init_logging();
    let runtime = Runtime::<Chat>::builder()
        .workers(args.workers)
        .backend(args.backend)
        .build()?;
    let lobby = runtime.spawn(Room::default()).expect("spawn the lobby");
    let kitchen = runtime.spawn(Room::default()).expect("spawn the kitchen");
    let clock = runtime.spawn(Clock::default()).expect("spawn the clock");
    println!("rooms {lobby} and {kitchen}, clock {clock}");

    let send = |room: TaskId<Room>, message: RoomInput| {
        runtime
            .send(room, message)
            .expect("the room is alive and has room");
    };
    send(lobby, Join("ada".into()).into());
    send(lobby, Join("grace".into()).into());
    send(kitchen, Join("linus".into()).into());
    send(
        lobby,
        Post {
            from: "ada".into(),
            text: "hello".into(),
        }
        .into(),
    );
    send(
        kitchen,
        Post {
            from: "ada".into(),
            text: "is anyone here?".into(),
        }
        .into(),
    );
    send(lobby, Leave("grace".into()).into());
    // `runtime.send(clock, Join(..))` would not compile: `Clock` has no
    // handler for `Join`.

    // Collect for a moment: the rooms answer at once, the clock every 200 ms.
    let until = std::time::Instant::now() + Duration::from_millis(450);
    while let Some(event) =
        runtime.next_event(until.saturating_duration_since(std::time::Instant::now()))
    {
        print(event);
    }
    println!("{}", runtime.stats());

    let report = runtime.shutdown(Duration::from_secs(2))?;
    println!(
        "shutdown: {} finished, {} forced, {} stuck workers",
        report.finished,
        report.forced.len(),
        report.stuck_workers.len()
    );
    for event in report.events {
        print(event);
    }
    Ok(())
}
