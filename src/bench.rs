//! Helpers the side-by-side benchmarks share: their settings from the
//! environment, the median they report, and their progress on a terminal.

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// The environment variable `name` parsed, `default` when it is unset.
///
/// # Errors
///
/// A message naming the variable when it is set but does not parse, or is
/// outside `valid` (described by `expected`, e.g. "1 to 50").
pub fn try_setting<T: std::str::FromStr + PartialOrd>(
    name: &str,
    default: T,
    valid: std::ops::RangeInclusive<T>,
    expected: &str,
) -> Result<T, String> {
    let text = std::env::var(name).ok();
    parse_setting(name, text.as_deref(), default, valid, expected)
}

/// [`try_setting`] of the text `text` of `name`, if set.
fn parse_setting<T: std::str::FromStr + PartialOrd>(
    name: &str,
    text: Option<&str>,
    default: T,
    valid: std::ops::RangeInclusive<T>,
    expected: &str,
) -> Result<T, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    match text.trim().parse::<T>() {
        Ok(value) if valid.contains(&value) => Ok(value),
        _ => Err(format!("{name}={text:?} is not valid: expected {expected}")),
    }
}

/// [`try_setting`] for a benchmark's `main`: a bad value ends the process
/// with its message (status 2) instead of running with a default the user
/// did not ask for.
pub fn setting<T: std::str::FromStr + PartialOrd>(
    name: &str,
    default: T,
    valid: std::ops::RangeInclusive<T>,
    expected: &str,
) -> T {
    try_setting(name, default, valid, expected).unwrap_or_else(|message| {
        eprintln!("{message}");
        std::process::exit(2)
    })
}

/// The two settings every side-by-side bench takes: `SANSIO_BENCH_ROUNDS`
/// (1 to 50, `default_rounds` when unset) and `SANSIO_BENCH_SECONDS` (0.1 to
/// 60 seconds per run, 2 when unset); a bad value ends the process, as
/// [`setting`] does.
pub fn rounds_and_seconds(default_rounds: usize) -> (usize, f64) {
    let rounds = setting(
        "SANSIO_BENCH_ROUNDS",
        default_rounds,
        1..=50,
        "a whole number from 1 to 50",
    );
    let seconds = setting(
        "SANSIO_BENCH_SECONDS",
        2.0,
        0.1..=60.0,
        "seconds from 0.1 to 60",
    );
    (rounds, seconds)
}

/// The median of `values` (the mean of the middle two for an even count;
/// NaN for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Progress of a long run on stderr, when stderr is a terminal: runs done,
/// and the time left estimated from the time they took.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    total: usize,
    done: usize,
    shown: bool,
}

impl Progress {
    /// A run of `total` steps.
    #[must_use]
    pub fn new(total: usize) -> Self {
        Progress {
            started: Instant::now(),
            total,
            done: 0,
            shown: std::io::stderr().is_terminal(),
        }
    }

    /// Prints a step's result on stdout and counts the step done; on a
    /// terminal, the progress line is cleared first and drawn again after,
    /// so that the results read as if it were not there.
    pub fn report(&mut self, result: &str) {
        if self.shown {
            // Carriage return, then erase to the end of the line.
            eprint!("\r\x1b[K");
            let _ = std::io::stderr().flush();
        }
        println!("{result}");
        self.done += 1;
        if self.shown {
            if self.done >= self.total {
                eprintln!("{}", self.line());
            } else {
                eprint!("{}", self.line());
                let _ = std::io::stderr().flush();
            }
        }
    }

    /// "12/40 runs, about 56 s left".
    #[must_use]
    pub fn line(&self) -> String {
        let left = self.total.saturating_sub(self.done);
        let per = self.started.elapsed() / u32::try_from(self.done.max(1)).unwrap_or(u32::MAX);
        let eta = per * u32::try_from(left).unwrap_or(u32::MAX);
        format!(
            "{}/{} runs, about {} s left",
            self.done,
            self.total,
            eta.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn settings_are_checked_not_defaulted() {
        let read =
            |text, valid| parse_setting("SANSIO_BENCH_ROUNDS", text, 3usize, valid, "1 to 50");
        assert_eq!(read(Some("7"), 1..=50), Ok(7));
        assert_eq!(read(Some(" 7\n"), 1..=50), Ok(7));
        assert_eq!(read(None, 1..=50), Ok(3));
        assert_eq!(
            read(Some("seven"), 1..=50),
            Err("SANSIO_BENCH_ROUNDS=\"seven\" is not valid: expected 1 to 50".into())
        );
        assert!(read(Some("7"), 1..=5).is_err());
        assert!(read(Some("0"), 1..=50).is_err());
        let seconds = parse_setting("SANSIO_BENCH_SECONDS", Some("0.05"), 2.0f64, 0.1..=60.0, "");
        assert!(seconds.is_err());
        let seconds = parse_setting("SANSIO_BENCH_SECONDS", Some("NaN"), 2.0f64, 0.1..=60.0, "");
        assert!(seconds.is_err());
        assert!(try_setting("SANSIO_BENCH_NEVER_SET_ANYWHERE", 1u8, 0..=1, "0 or 1") == Ok(1));
    }

    #[test]
    fn progress_estimates_the_time_left_from_the_steps_done() {
        let mut progress = Progress::new(4);
        progress.shown = false;
        assert!(progress.line().starts_with("0/4 runs"));
        progress.started = Instant::now() - Duration::from_secs(10);
        progress.report("a result");
        progress.report("another");
        assert_eq!(progress.line(), "2/4 runs, about 10 s left");
    }
}
