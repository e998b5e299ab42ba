//! What the examples share on the command line: log output through
//! `tracing-subscriber` (`RUST_LOG`), and value parsers for `clap`.

use std::net::SocketAddr;
use std::time::Duration;

/// Writes the runtime's log lines (and the example's) to stderr, filtered
/// by `RUST_LOG` (e.g. `RUST_LOG=sansio=debug`); warnings and errors when
/// it is not set.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Only fails if a subscriber is already installed: keep that one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The longest run any example accepts: a day.
const LONGEST: f64 = 86_400.0;

/// Parses a duration in seconds (`0.5`, `30`): above zero, at most a day.
///
/// # Errors
///
/// A message saying what is wrong with `text`.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if seconds > 0.0 && seconds <= LONGEST {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(format!("must be above 0 and at most {LONGEST} seconds"))
    }
}

/// Parses a count of at least one (workers, sockets, …).
///
/// # Errors
///
/// A message saying what is wrong with `text`.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(count) => Ok(count),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// The local address a client socket binds to reach `target`: loopback
/// for a loopback target, the unspecified address of the target's family
/// otherwise (port 0 either way).
#[must_use]
pub fn local_for(target: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match (target.ip(), target.ip().is_loopback()) {
        (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_mistakes_named() {
        assert_eq!(seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(
            seconds("soon"),
            Err("`soon` is not a number of seconds".into())
        );
        assert!(seconds("0").is_err() && seconds("-1").is_err() && seconds("1e9").is_err());
        assert!(seconds("NaN").is_err() && seconds("inf").is_err());
        assert_eq!(at_least_one("3"), Ok(3));
        assert_eq!(at_least_one("0"), Err("must be at least 1".into()));
        assert!(at_least_one("many").is_err());
    }

    #[test]
    fn a_client_binds_where_it_can_reach_its_target() {
        let at = |text: &str| local_for(text.parse().unwrap()).to_string();
        assert_eq!(at("127.0.0.1:9"), "127.0.0.1:0");
        assert_eq!(at("[::1]:9"), "[::1]:0");
        assert_eq!(at("192.0.2.1:9"), "0.0.0.0:0");
        assert_eq!(at("[2001:db8::1]:9"), "[::]:0");
    }
}
