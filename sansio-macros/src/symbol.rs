//! The names of the attributes and arguments the macros understand.

/// `#[on_start]`: called once when the task is placed on a worker.
pub(crate) const ON_START: &str = "on_start";
/// `#[on_input]`: the handler of one input type.
pub(crate) const ON_INPUT: &str = "on_input";
/// `#[on_tick(every = "..")]`: the periodic handler.
pub(crate) const ON_TICK: &str = "on_tick";
/// `#[on_timer]`: the handler of the task's timer.
pub(crate) const ON_TIMER: &str = "on_timer";
/// `#[on_shutdown]`: called once at graceful shutdown.
pub(crate) const ON_SHUTDOWN: &str = "on_shutdown";

/// `output = Type` on a task struct.
pub(crate) const OUTPUT: &str = "output";
/// `crate = path` on a task struct or impl.
pub(crate) const CRATE: &str = "crate";
/// `channel = Type`: the bus channel type, on a task struct or a worker.
pub(crate) const CHANNEL: &str = "channel";
/// `event = Type`: the bus event type, on a task struct or a worker.
pub(crate) const EVENT: &str = "event";
/// `#[on_request]`: the handler of one request type.
pub(crate) const ON_REQUEST: &str = "on_request";
/// `every = "100ms"` on `#[on_tick]`.
pub(crate) const EVERY: &str = "every";
/// `every_ms = 100` on `#[on_tick]`.
pub(crate) const EVERY_MS: &str = "every_ms";
