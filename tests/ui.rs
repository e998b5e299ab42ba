//! Compile-time checks of the macros (trybuild): each file under
//! `tests/ui/<category>/` is one mistake, with the exact error in its
//! `.stderr`; `tests/ui/pass/` must compile and run.
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test --test ui`
//! and read the diff of every `.stderr` before committing. The toolchain is
//! pinned in `rust-toolchain.toml` so that they hold.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    for category in [
        "handler_signature",
        "task_impl",
        "task_struct",
        "on_tick",
        "send",
        "misplaced",
        "worker",
        "bus",
        "timer",
    ] {
        t.compile_fail(format!("tests/ui/{category}/*.rs"));
    }
}
