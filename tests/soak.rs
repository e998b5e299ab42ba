//! The soak's one-minute form (the 30-minute one is `scripts/soak`): a
//! minute of mixed load — task churn, TCP, UDP floods, bus fan-out, RPC —
//! on one runtime, failing if the resident set grows more than 10 % after
//! the warm-up, or descriptors or threads are left over. Its own binary, so
//! the process measured holds only the soak.

use std::time::Duration;

use sansio::Backend;
use sansio_suite::soak;

#[test]
fn a_minute_of_mixed_load_leaks_nothing() {
    let options = soak::Options::of(Duration::from_secs(60), Backend::Mio);
    let outcome = soak::run(&options, |sample| eprintln!("{sample}"));
    let last = outcome.unwrap_or_else(|failure| panic!("the soak failed: {failure}"));
    // Every kind of load ran.
    assert!(last.rounds >= 20, "{last}");
    assert!(
        last.finished > 0 && last.tcp_accepted > 0 && last.udp_received > 0,
        "{last}"
    );
    assert!(last.bus_delivered > 0 && last.rpc_answered > 0, "{last}");
}
