//! Support code shared by the workspace's examples and benchmarks: the UDP
//! echo task and worker they run, and the load generator that measures them.
//! Not published.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod bench;
pub mod chart;
pub mod chat;
pub mod cli;
pub mod controller_echo;
pub mod echo;
pub mod loadgen;
pub mod soak;
pub mod whip;
