//! The WHIP/WHEP server's signalling (`src/whip/`) under arbitrary client
//! bytes: the HTTP request reader, the routing, and for a POST the SDP
//! offer path (str0m parses it and answers). The first bytes say where
//! reads are cut, the rest is what the client sends. `drive_signalling`
//! panics if signalling breaks a rule (a panic anywhere, a response that is
//! not whole HTTP with CORS headers, a request kept beyond its limits).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cuts, input) = data.split_at(data.len().min(8));
    let _ = sansio_suite::whip::server::drive_signalling(input, cuts);
});
