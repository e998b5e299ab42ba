//! Shutdown in phases, on every backend: a registry that the other tasks
//! report to on their way out takes a later phase (`ctx.set_shutdown_phase`)
//! and still receives every final message; a direct message to a task that
//! has already finished comes back to its sender instead of vanishing; a
//! spawn still queued for a worker when its shutdown begins is run (and
//! shut down), not lost.

mod util;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use sansio::prelude::*;
use sansio::{Backend, RpcError, ShutdownReport};
use util::next;

/// A member says goodbye.
pub struct Bye;
/// Ends the registry at once.
pub struct Quit;
/// Makes a member send the registry `Quit` and then `Bye`, in one go: the
/// goodbye arrives after the registry has ended.
pub struct TooLate;

/// What the tasks report.
#[derive(Debug, PartialEq)]
pub enum Said {
    /// The registry, as it ends: how many goodbyes it got.
    Goodbyes(usize),
    /// A member's goodbye could not be delivered.
    Unheard(RpcError),
}

/// Counts goodbyes; ends in the phase given.
#[sansio::task(output = Said, channel = u8, event = u8)]
pub struct Registry {
    phase: u8,
    goodbyes: usize,
}

#[sansio::task]
impl Registry {
    #[on_start]
    fn start(&mut self, ctx: &mut Ctx<Self>) {
        ctx.set_shutdown_phase(self.phase);
    }

    #[on_input]
    fn bye(&mut self, _: &mut Ctx<Self>, _: Bye) {
        self.goodbyes += 1;
    }

    #[on_input]
    fn quit(&mut self, ctx: &mut Ctx<Self>, _: Quit) {
        ctx.finish();
    }

    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, _: BusInput<u8, u8>) {}

    #[on_shutdown]
    fn stop(&mut self, ctx: &mut Ctx<Self>) {
        ctx.emit(Said::Goodbyes(self.goodbyes));
        ctx.finish();
    }
}

/// Says goodbye to the registry when asked to shut down, and ends a
/// moment later (on its timer): its goodbye is not the last thing it does.
#[sansio::task(output = Said, channel = u8, event = u8)]
pub struct Member {
    registry: TaskId<Registry>,
}

#[sansio::task]
impl Member {
    #[on_input]
    fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<u8, u8>) {
        if let BusInput::SendFailed { error } = input {
            ctx.emit(Said::Unheard(error));
        }
    }

    #[on_input]
    fn too_late(&mut self, ctx: &mut Ctx<Self>, _: TooLate) {
        ctx.send_to(self.registry, Quit);
        ctx.send_to(self.registry, Bye);
    }

    #[on_shutdown]
    fn stop(&mut self, ctx: &mut Ctx<Self>) {
        ctx.send_to(self.registry, Bye);
        ctx.set_timer(ctx.now() + Duration::from_millis(20));
    }

    #[on_timer]
    fn done(&mut self, ctx: &mut Ctx<Self>) {
        ctx.finish();
    }
}

/// Holds a worker: meets the barrier once on arrival and once more to be
/// let go.
pub struct Held(pub Arc<Barrier>);
/// Asks a relay to send `Held` to a gate, over the bus.
pub struct Relay(pub TaskId<Gate>, pub Arc<Barrier>);

/// Ends when held, and holds its worker inside that handler (which runs
/// after the worker has looked at its control inbox in that turn).
#[sansio::task(output = Said, channel = u8, event = u8)]
pub struct Gate;

#[sansio::task]
impl Gate {
    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, _: BusInput<u8, u8>) {}

    #[on_input]
    fn held(&mut self, ctx: &mut Ctx<Self>, Held(barrier): Held) {
        ctx.finish();
        barrier.wait();
        barrier.wait();
    }
}

/// Sends `Held` to a gate when asked.
#[sansio::task(output = Said, channel = u8, event = u8)]
pub struct Relayer;

#[sansio::task]
impl Relayer {
    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, _: BusInput<u8, u8>) {}

    #[on_input]
    fn relay(&mut self, ctx: &mut Ctx<Self>, Relay(gate, barrier): Relay) {
        ctx.send_to(gate, Held(barrier));
    }
}

/// Does nothing; ends when asked to shut down.
#[sansio::task(output = Said, channel = u8, event = u8)]
pub struct Quiet;

#[sansio::task]
impl Quiet {
    #[on_input]
    fn bus(&mut self, _: &mut Ctx<Self>, _: BusInput<u8, u8>) {}

    #[on_shutdown]
    fn stop(&mut self, ctx: &mut Ctx<Self>) {
        ctx.finish();
    }
}

#[sansio::worker(output = Said, channel = u8, event = u8)]
pub enum Town {
    Registry(Registry),
    Member(Member),
    Gate(Gate),
    Relayer(Relayer),
    Quiet(Quiet),
}

/// Holds worker 0 inside a gate's handler, past its control inbox for the
/// turn, with the gate ended (worker 0 has no task); spawns `count` quiet
/// tasks on it meanwhile; shuts the runtime down with `deadline`, letting
/// worker 0 go on `after` the shutdown was asked for. Returns the spawns
/// and the report.
fn shutdown_with_spawns_queued(
    runtime: Runtime<Town>,
    count: usize,
    deadline: Duration,
    after: Duration,
) -> (Vec<TaskId<Quiet>>, ShutdownReport<Town>) {
    let gate = runtime.spawn_on(0, Gate).unwrap();
    let relayer = runtime.spawn_on(1, Relayer).unwrap();
    let hold = Arc::new(Barrier::new(2));
    runtime.send(relayer, Relay(gate, hold.clone())).unwrap();
    hold.wait();
    let queued = (0..count)
        .map(|_| runtime.spawn_on(0, Quiet).unwrap())
        .collect();
    let report = std::thread::scope(|scope| {
        let shutdown = scope.spawn(|| runtime.shutdown(deadline));
        std::thread::sleep(after);
        hold.wait();
        shutdown.join().unwrap().unwrap()
    });
    (queued, report)
}

fn runtime(backend: Backend) -> Runtime<Town> {
    Runtime::<Town>::builder()
        .workers(2)
        .backend(backend)
        .build()
        .unwrap()
}

backend_tests! {
    fn a_registry_in_a_later_phase_hears_every_goodbye(backend: Backend) {
        let runtime = runtime(backend);
        let registry = runtime.spawn_on(0, Registry { phase: 1, goodbyes: 0 }).unwrap();
        for n in 0..10 {
            runtime.spawn_on(n % 2, Member { registry }).unwrap();
        }
        util::eventually("every member is running", || {
            runtime.stats().workers.iter().flat_map(|w| &w.tasks).map(|(_, n)| n).sum::<usize>() == 11
        });
        let report = runtime.shutdown(Duration::from_secs(5)).unwrap();
        assert_eq!(report.finished, 11);
        let said: Vec<Said> = report
            .events
            .into_iter()
            .filter_map(|event| match event {
                Event::Output { output, .. } => Some(output),
                _ => None,
            })
            .collect();
        assert_eq!(said, [Said::Goodbyes(10)]);
    }

    fn a_message_that_finds_its_target_gone_comes_back_to_its_sender(backend: Backend) {
        let runtime = runtime(backend);
        // On the registry's worker, and on the other.
        for worker in [0, 1] {
            let registry = runtime.spawn_on(0, Registry { phase: 0, goodbyes: 0 }).unwrap();
            let member = runtime.spawn_on(worker, Member { registry }).unwrap();
            runtime.send(member, TooLate).unwrap();
            // Both were live when sent: the registry ends on the first, the
            // second comes back.
            let mut finished = false;
            loop {
                match next(&runtime) {
                    Event::Finished { task: TownId::Registry(id) } => {
                        assert_eq!(id, registry);
                        finished = true;
                    }
                    Event::Output { task: TownId::Member(id), output } => {
                        assert_eq!((id, output), (member, Said::Unheard(RpcError::TaskGone)));
                        break;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(finished, "the registry had ended");
        }
        runtime.shutdown(Duration::from_secs(5)).unwrap();
    }

    fn spawns_queued_when_shutdown_begins_are_run_not_lost(backend: Backend) {
        // Shutdown has been asked for when worker 0 goes on.
        let (_, report) = shutdown_with_spawns_queued(
            runtime(backend),
            5,
            Duration::from_secs(5),
            Duration::from_millis(100),
        );
        // The five spawns ran and were shut down, and so was the relayer.
        assert_eq!((report.finished, report.forced.len()), (6, 0));
    }

    fn spawns_still_queued_at_the_deadline_are_reported_forced(backend: Backend) {
        // Worker 0 goes on only after the deadline.
        let (queued, report) = shutdown_with_spawns_queued(
            runtime(backend),
            3,
            Duration::from_millis(100),
            Duration::from_millis(300),
        );
        let mut forced: Vec<TownId> = report.forced.clone();
        forced.sort_by_key(|id| format!("{id:?}"));
        let mut expected: Vec<TownId> = queued.into_iter().map(TownId::Quiet).collect();
        expected.sort_by_key(|id| format!("{id:?}"));
        assert_eq!(forced, expected, "the spawns that never ran, by id");
    }
}
