//! The pages the server serves: publish the camera (`/whip.html`), play a
//! stream (`/whep.html`). Plain HTML and JavaScript, no build step. Both
//! take `?stream=NAME` (default `demo`), `&server=URL` (default: the page's
//! own origin) and `&token=T`.

/// `/whip.html`: publishes the camera and microphone.
pub const WHIP: &str = include_str!("whip.html");

/// `/whep.html`: plays a stream.
pub const WHEP: &str = include_str!("whep.html");
