//! Side-by-side controller ↔ task round trips: sansio's controller echo (one
//! worker, the default backend; with its default 2 µs spin before sleeping
//! and with none; and on io_uring) and a bare echo (a bounded crossbeam channel
//! to a thread sleeping in mio, woken by a `mio::Waker` only when its channel
//! was empty, answering over a second channel) at 400 messages in flight
//! (throughput) and at 1 (latency); prints every run, a table of medians and
//! sansio's ratios to the bare echo, round by round.
//!
//! ```text
//! cargo bench --bench controller_echo                 # 5 rounds, 2 s per run
//! SANSIO_BENCH_ROUNDS=9 SANSIO_BENCH_SECONDS=3 cargo bench --bench controller_echo
//! SANSIO_BENCH_CHART=docs/controller_echo.svg cargo bench --bench controller_echo
//! ```
//!
//! `SANSIO_BENCH_CHART=FILE` measures at 1, 8, 64 and 400 in flight and
//! draws messages/s and the p50/p99 round trip by in-flight count to the
//! SVG file `FILE`, with the machine and date. A bad value of any
//! `SANSIO_BENCH_*` variable is an error. On a terminal, stderr shows the
//! runs done and the time left.
//!
//! Within a round each load runs the echoes back to back, the order
//! rotating from round to round, so that a slow spell of the machine hits
//! both alike. Every run is bounded in time and stops by itself.

use std::time::Duration;

use sansio::Backend;
use sansio_suite::bench::{Progress, median, rounds_and_seconds};
use sansio_suite::chart;
use sansio_suite::controller_echo::{self, Config, Outcome};

const SANSIO: &str = "sansio (1 worker, default backend)";
const SANSIO_NO_SPIN: &str = "sansio, spin_before_sleep(0)";
const SANSIO_URING: &str = "sansio (1 worker, io-uring)";
const BARE: &str = "bare crossbeam + mio waker";
const ECHOES: [&str; 4] = [SANSIO, SANSIO_NO_SPIN, SANSIO_URING, BARE];
const LOADS: [usize; 2] = [400, 1];
/// The in-flight counts of the chart.
const CHART_LOADS: [usize; 4] = [1, 8, 64, 400];

fn measure(echo: &str, inflight: usize, duration: Duration) -> Outcome {
    let mut config = Config::new(inflight, duration);
    let outcome = match echo {
        SANSIO => controller_echo::run_sansio(&config, |_| {}).map(|run| run.outcome),
        SANSIO_NO_SPIN => {
            config.spin = Duration::ZERO;
            controller_echo::run_sansio(&config, |_| {}).map(|run| run.outcome)
        }
        SANSIO_URING => {
            config.backend = Backend::IoUring;
            controller_echo::run_sansio(&config, |_| {}).map(|run| run.outcome)
        }
        _ => controller_echo::run_bare(inflight, duration),
    };
    outcome.unwrap_or_else(|message| panic!("{echo}, {inflight} in flight: {message}"))
}

fn main() {
    let (rounds, seconds) = rounds_and_seconds(5);
    let chart_file = std::env::var("SANSIO_BENCH_CHART").ok();
    let loads: &[usize] = if chart_file.is_some() {
        &CHART_LOADS
    } else {
        &LOADS
    };
    let duration = Duration::from_secs_f64(seconds);
    let mut progress = Progress::new(rounds * loads.len() * ECHOES.len());
    // runs[round][(echo, inflight)]
    let mut runs: Vec<Vec<(&str, usize, Outcome)>> = Vec::new();
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        let mut order = ECHOES;
        order.rotate_left(round % ECHOES.len());
        let mut row = Vec::new();
        for &inflight in loads {
            for echo in order {
                let outcome = measure(echo, inflight, duration);
                progress.report(&format!("  {echo:<35} {inflight:>3} in flight  {outcome}"));
                row.push((echo, inflight, outcome));
            }
        }
        runs.push(row);
    }
    let find = |round: &[(&str, usize, Outcome)], echo: &str, inflight: usize| -> Outcome {
        round
            .iter()
            .find(|(e, i, _)| *e == echo && *i == inflight)
            .map(|(_, _, outcome)| outcome.clone())
            .expect("measured")
    };
    println!();
    println!("Medians over {rounds} round(s) of {seconds} s per run:");
    println!();
    println!("| echo | in flight | messages/s | p50 | p99 |");
    println!("| ---- | --------- | ---------- | --- | --- |");
    let medians = |echo: &str, inflight: usize| -> [f64; 3] {
        let outcomes: Vec<Outcome> = runs
            .iter()
            .map(|round| find(round, echo, inflight))
            .collect();
        let of = |figure: &dyn Fn(&Outcome) -> f64| median(outcomes.iter().map(figure).collect());
        [
            of(&Outcome::per_sec),
            of(&|outcome| outcome.micros(0.5)),
            of(&|outcome| outcome.micros(0.99)),
        ]
    };
    for &inflight in loads {
        for echo in ECHOES {
            let [per_sec, p50, p99] = medians(echo, inflight);
            println!("| {echo} | {inflight} | {per_sec:.0} | {p50:.1} µs | {p99:.1} µs |");
        }
    }
    if let Some(file) = chart_file {
        let contenders: Vec<chart::Contender> = ECHOES
            .iter()
            .map(|&echo| chart::Contender {
                name: echo.to_owned(),
                points: loads
                    .iter()
                    .map(|&inflight| (inflight as f64, medians(echo, inflight)))
                    .collect(),
            })
            .collect();
        let subtitle = format!(
            "medians of {rounds} round(s) of {seconds} s; {}; {}",
            chart::machine(),
            chart::today()
        );
        chart::draw_or_exit(
            &file,
            "Controller to task and back: sansio against a bare channel and mio waker",
            &subtitle,
            "messages in flight",
            ("round trips per second (median)", "messages/s"),
            &contenders,
        );
    }
    println!();
    let ratios = |echo: &str, name: &str, inflight: usize, figure: &dyn Fn(&Outcome) -> f64| {
        let each: Vec<f64> = runs
            .iter()
            .map(|round| {
                figure(&find(round, echo, inflight)) / figure(&find(round, BARE, inflight))
            })
            .collect();
        let listed: Vec<String> = each.iter().map(|ratio| format!("{ratio:.2}")).collect();
        println!(
            "{echo} / bare {name} at {inflight} in flight: median {:.2}× (rounds: {})",
            median(each.clone()),
            listed.join(", ")
        );
    };
    for echo in [SANSIO, SANSIO_NO_SPIN, SANSIO_URING] {
        ratios(echo, "messages/s", 400, &Outcome::per_sec);
        ratios(echo, "p50", 1, &|outcome| outcome.micros(0.5));
    }
}
