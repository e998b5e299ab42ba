//! Invariants ARCHITECTURE.md states, checked here on every backend they
//! claim (the others are checked next to their feature): a panic in a task's
//! `Drop` ends only that task; spawning follows the workers' measured
//! utilization, not only their task counts; a burst of messages to a
//! sleeping worker costs it one wakeup, not one per message.

mod util;

use std::time::{Duration, Instant};

use sansio::prelude::*;
use util::tasks::{Echo, EchoOut, Ping};
use util::{PATIENCE, next};

/// Makes a `Grenade` finish.
#[derive(Debug)]
pub struct Pull;

/// A task whose `Drop` panics.
#[sansio::task(output = ())]
#[derive(Debug)]
pub struct Grenade;

#[sansio::task]
impl Grenade {
    #[on_input]
    fn pull(&mut self, ctx: &mut Ctx<Self>, _: Pull) {
        ctx.finish();
    }
}

impl Drop for Grenade {
    fn drop(&mut self) {
        panic!("a task's Drop panicked");
    }
}

/// Keeps its worker busy for the time it is given.
#[derive(Debug)]
pub struct Burn(pub Duration);

#[sansio::task(output = ())]
#[derive(Debug)]
pub struct Burner;

#[sansio::task]
impl Burner {
    #[on_input]
    fn burn(&mut self, ctx: &mut Ctx<Self>, Burn(time): Burn) {
        let until = Instant::now() + time;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        ctx.emit(());
    }
}

#[sansio::worker]
pub enum Armory {
    Grenade(Grenade),
    Burner(Burner),
    Echo(Echo),
}

fn pong(runtime: &Runtime<Armory>) -> u64 {
    match next(runtime) {
        Event::Output {
            output: ArmoryOutput::Echo(EchoOut::Pong(n)),
            ..
        } => n,
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// On every backend.
mod contained {
    use super::*;

    all_backend_tests! {
    fn a_panic_in_a_tasks_drop_ends_only_that_task(backend: Backend) {
        let runtime = Runtime::<Armory>::builder().workers(1).backend(backend).build().unwrap();
        let echo = runtime.spawn(Echo::default()).unwrap();
        for round in 0..3 {
            let grenade = runtime.spawn(Grenade).unwrap();
            runtime.send(grenade, Pull).unwrap();
            match next(&runtime) {
                Event::Finished { task: ArmoryId::Grenade(id) } => assert_eq!(id, grenade),
                other => panic!("expected the grenade to finish, got {other:?}"),
            }
            // The worker and its other task carry on.
            runtime.send(echo, Ping(round)).unwrap();
            assert_eq!(pong(&runtime), round);
        }
        // Dropped at shutdown too: the worker still ends cleanly.
        runtime.spawn(Grenade).unwrap();
        let report = runtime.shutdown(PATIENCE).expect("a clean shutdown");
        assert!(report.stuck_workers.is_empty());
    }
    }
}

/// On the backends that sleep: busy-poll spins by design (its purpose), so
/// it is never woken, and its spinning workers would share the test
/// machine's cores with the load the placement test makes.
mod sleeping {
    use super::*;

    backend_tests! {
        fn spawning_follows_measured_utilization_not_only_task_counts(backend: Backend) {
            let runtime = Runtime::<Armory>::builder().workers(2).backend(backend).build().unwrap();
            // Worker 1 has more tasks, all idle; worker 0 has one, kept busy.
            for _ in 0..4 {
                runtime.spawn_on(1, Echo::default()).unwrap();
            }
            let burner = runtime.spawn_on(0, Burner).unwrap();
            runtime.stats(); // opens a measuring window
            let until = Instant::now() + Duration::from_millis(300);
            while Instant::now() < until {
                runtime.send(burner, Burn(Duration::from_millis(10))).unwrap();
                next(&runtime);
            }
            // By task count worker 0 would be chosen; by utilization, worker 1.
            for _ in 0..3 {
                let echo = runtime.spawn(Echo::default()).unwrap();
                assert_eq!(echo.worker(), 1, "spawned on the busy worker: {}", runtime.stats());
            }
            // Both idle again: the fewest tasks decide.
            std::thread::sleep(Duration::from_millis(150));
            runtime.stats();
            std::thread::sleep(Duration::from_millis(150));
            let echo = runtime.spawn(Echo::default()).unwrap();
            assert_eq!(echo.worker(), 0, "with equal load, the worker with fewer tasks");
        }

        fn a_burst_of_messages_costs_a_sleeping_worker_one_wakeup(backend: Backend) {
            let runtime = Runtime::<Armory>::builder().workers(1).backend(backend).build().unwrap();
            let echo = runtime.spawn(Echo::default()).unwrap();
            runtime.send(echo, Ping(0)).unwrap();
            pong(&runtime);
            // Bursts of 1,000 messages, each sent while the worker sleeps: the
            // first message wakes it, the rest find it awake. A wakeup per
            // message would make this 1,000 per burst; a worker that empties
            // its inbox mid-burst (the sender was descheduled) sleeps and is
            // woken again, so a loaded machine may add a few.
            const BURSTS: u64 = 5;
            const MESSAGES: u64 = 1000;
            // The worker counts a wakeup and publishes the count before it
            // sleeps again: each figure is read once it sleeps (50 ms on).
            let asleep = || {
                std::thread::sleep(Duration::from_millis(50));
                runtime.stats().workers[0].wakeups
            };
            let mut wakeups = Vec::new();
            let mut before = asleep();
            for burst in 0..BURSTS {
                for n in 0..MESSAGES {
                    runtime.send_timeout(echo, Ping(burst * MESSAGES + n), PATIENCE).unwrap();
                }
                for n in 0..MESSAGES {
                    assert_eq!(pong(&runtime), burst * MESSAGES + n);
                }
                let after = asleep();
                wakeups.push(after - before);
                before = after;
            }
        wakeups.sort_unstable();
            assert!(wakeups[0] >= 1, "a sleeping worker must be woken: {wakeups:?}");
            assert_eq!(wakeups[0], 1, "no burst cost exactly one wakeup: {wakeups:?}");
            assert!(
                wakeups[BURSTS as usize / 2] <= 10,
                "bursts of {MESSAGES} messages cost {wakeups:?} wakeups"
            );
        }
    }
}
