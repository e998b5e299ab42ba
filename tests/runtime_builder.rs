//! `Runtime::builder()`: defaults, thread names, core pinning and settings
//! out of range.

mod util;

use sansio::Error;
use sansio::prelude::*;
use util::tasks::Media;
use util::wait_for_threads;

/// The CPUs a thread may run on, as `/proc` lists them (`0`, `0-1`, ...).
fn cpus_allowed(tid: u64) -> String {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in status")
        .trim()
        .to_owned()
}

backend_tests! {
    fn workers_default_to_the_available_cores_and_carry_their_names(backend: Backend) {
        let prefix = format!("name-{backend}");
        let runtime = Runtime::<Media>::builder()
            .backend(backend)
            .thread_name(format!("{prefix}-"))
            .build()
            .unwrap();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(runtime.workers(), cores);
        let mut names: Vec<String> = wait_for_threads(&prefix, cores)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.sort();
        let expected: Vec<String> = (0..cores).map(|i| format!("{prefix}-{i}")).collect();
        assert_eq!(names, expected);
    }

    fn pinned_workers_run_on_one_core_each(backend: Backend) {
        let prefix = format!("pin-{backend}");
        let Some(cores) = core_ids() else {
            eprintln!("skipped: this process may use only one core");
            return;
        };
        let runtime = Runtime::<Media>::builder()
            .workers(2)
            .backend(backend)
            .pin_cores(true)
            .thread_name(format!("{prefix}-"))
            .build()
            .unwrap();
        // A thread pins itself as it starts: wait for both to have done so.
        let give_up = std::time::Instant::now() + util::PATIENCE;
        loop {
            let mut pinned: Vec<(String, String)> = wait_for_threads(&prefix, 2)
                .into_iter()
                .map(|(name, tid)| (name, cpus_allowed(tid)))
                .collect();
            pinned.sort();
            let expected = vec![
                (format!("{prefix}-0"), cores[0].clone()),
                (format!("{prefix}-1"), cores[1].clone()),
            ];
            if pinned == expected {
                break;
            }
            assert!(std::time::Instant::now() < give_up, "{pinned:?} != {expected:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        drop(runtime);
    }
}

/// The first two CPUs this process may use, when it may use two or more.
fn core_ids() -> Option<Vec<String>> {
    let list = std::fs::read_to_string("/proc/self/status").ok()?;
    let allowed = list
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?
        .trim()
        .to_owned();
    let mut cpus = Vec::new();
    for part in allowed.split(',') {
        match part.split_once('-') {
            Some((low, high)) => {
                cpus.extend(low.parse::<usize>().ok()?..=high.parse::<usize>().ok()?)
            }
            None => cpus.push(part.parse::<usize>().ok()?),
        }
    }
    (cpus.len() >= 2).then(|| cpus[..2].iter().map(usize::to_string).collect())
}

#[test]
fn the_builder_rejects_settings_out_of_range() {
    let config = |result: sansio::Result<Runtime<Media>>| match result {
        Err(Error::Config(message)) => message,
        other => panic!("expected a configuration error, got {other:?}"),
    };
    assert!(config(Runtime::<Media>::builder().workers(0).build()).contains("workers"));
    assert!(config(Runtime::<Media>::builder().workers(70_000).build()).contains("workers"));
    assert!(
        config(
            Runtime::<Media>::builder()
                .workers(1)
                .queue_capacity(0)
                .build()
        )
        .contains("queue_capacity")
    );
    assert!(
        config(
            Runtime::<Media>::builder()
                .workers(1)
                .event_capacity(0)
                .build()
        )
        .contains("event_capacity")
    );
}
