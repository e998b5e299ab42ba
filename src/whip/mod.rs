//! A WHIP/WHEP media server on sansio: HTTP signalling over the runtime's
//! TCP ([RFC 9725] for publishing, the WHEP draft for playing), media over
//! one UDP port, each peer connection a task wrapping a `str0m::Rtc`, and a
//! stream's media fanned out to its viewers, on any worker, over the bus.
//! `examples/whip_whep.rs` runs it.
//!
//! [RFC 9725]: https://www.rfc-editor.org/rfc/rfc9725

pub mod client;
pub mod http;
pub mod pages;
pub mod server;
