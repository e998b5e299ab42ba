//! The chat server's line protocol (`src/chat.rs`) under arbitrary client
//! bytes: the first bytes say where reads are cut, the rest is what the
//! client sends. `drive_session` panics if the session breaks a rule
//! (a panic in a handler, an answer that is not whole lines, an unfinished
//! line kept beyond `MAX_LINE`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cuts, input) = data.split_at(data.len().min(8));
    let _ = sansio_suite::chat::drive_session(input, cuts);
});
