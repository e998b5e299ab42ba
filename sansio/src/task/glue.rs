//! How the network and the bus reach a task: the per-task adapters that
//! turn a [`NetInput`] or a [`BusInput`] into the task's own input enum, and
//! the request/response glue that needs a task type. They live here, above
//! `net` and `bus`, so that those modules know nothing of tasks.

use std::any::Any;
use std::fmt;

use super::{Ctx, Handles, Task};
use crate::bus::{
    Bus, BusInput, BusTypes, Incoming, NoBus, NoBusType, Request, Responder, Responds, Route,
};
use crate::net::{
    NetInput, TcpEvent, TunError, TunOpened, TunPacket, UdpBound, UdpError, UdpPacket,
};

/// How the worker turns network events into a task's input: captured by
/// `Ctx::udp_bind`, where the task's handlers are known.
pub struct UdpWrap<T: Task> {
    pub(crate) bound: fn(UdpBound) -> T::Input,
    pub(crate) packet: fn(UdpPacket) -> T::Input,
    pub(crate) error: fn(UdpError) -> T::Input,
}

impl<T: Task> UdpWrap<T> {
    pub(crate) fn new() -> Self
    where
        T: Handles<UdpBound> + Handles<UdpPacket> + Handles<UdpError>,
    {
        UdpWrap {
            bound: <T as Handles<UdpBound>>::wrap,
            packet: <T as Handles<UdpPacket>>::wrap,
            error: <T as Handles<UdpError>>::wrap,
        }
    }
}

impl<T: Task> Clone for UdpWrap<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Task> Copy for UdpWrap<T> {}

impl<T: Task> fmt::Debug for UdpWrap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UdpWrap<{}>", T::NAME)
    }
}

/// How the worker turns TCP events into a task's input: captured by
/// `Ctx::tcp_listen` and `Ctx::tcp_connect`.
pub struct TcpWrap<T: Task> {
    pub(crate) event: fn(TcpEvent) -> T::Input,
}

impl<T: Task> TcpWrap<T> {
    pub(crate) fn new() -> Self
    where
        T: Handles<TcpEvent>,
    {
        TcpWrap {
            event: <T as Handles<TcpEvent>>::wrap,
        }
    }
}

impl<T: Task> Clone for TcpWrap<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Task> Copy for TcpWrap<T> {}

impl<T: Task> fmt::Debug for TcpWrap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TcpWrap<{}>", T::NAME)
    }
}

/// How the worker turns device events into a task's input: captured by
/// `Ctx::tun_open`.
pub struct TunWrap<T: Task> {
    pub(crate) opened: fn(TunOpened) -> T::Input,
    pub(crate) packet: fn(TunPacket) -> T::Input,
    pub(crate) error: fn(TunError) -> T::Input,
}

impl<T: Task> TunWrap<T> {
    pub(crate) fn new() -> Self
    where
        T: Handles<TunOpened> + Handles<TunPacket> + Handles<TunError>,
    {
        TunWrap {
            opened: <T as Handles<TunOpened>>::wrap,
            packet: <T as Handles<TunPacket>>::wrap,
            error: <T as Handles<TunError>>::wrap,
        }
    }
}

impl<T: Task> Clone for TunWrap<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Task> Copy for TunWrap<T> {}

impl<T: Task> fmt::Debug for TunWrap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TunWrap<{}>", T::NAME)
    }
}

/// How a task's network events become its input, per kind of socket: set
/// when the task first opens one of that kind.
pub(crate) struct Wraps<T: Task> {
    pub(crate) udp: Option<UdpWrap<T>>,
    pub(crate) tcp: Option<TcpWrap<T>>,
    pub(crate) tun: Option<TunWrap<T>>,
}

impl<T: Task> Default for Wraps<T> {
    fn default() -> Self {
        Wraps {
            udp: None,
            tcp: None,
            tun: None,
        }
    }
}

impl<T: Task> Wraps<T> {
    /// The task's input for `input`, or `input` back when the task has no
    /// handlers for its kind of socket.
    pub(crate) fn input(&self, input: NetInput) -> Result<T::Input, NetInput> {
        match (input, self) {
            (
                NetInput::UdpBound(bound),
                Wraps {
                    udp: Some(wrap), ..
                },
            ) => Ok((wrap.bound)(bound)),
            (
                NetInput::UdpPacket(packet),
                Wraps {
                    udp: Some(wrap), ..
                },
            ) => Ok((wrap.packet)(packet)),
            (
                NetInput::UdpError(error),
                Wraps {
                    udp: Some(wrap), ..
                },
            ) => Ok((wrap.error)(error)),
            (
                NetInput::Tcp(event),
                Wraps {
                    tcp: Some(wrap), ..
                },
            ) => Ok((wrap.event)(event)),
            (
                NetInput::TunOpened(opened),
                Wraps {
                    tun: Some(wrap), ..
                },
            ) => Ok((wrap.opened)(opened)),
            (
                NetInput::TunPacket(packet),
                Wraps {
                    tun: Some(wrap), ..
                },
            ) => Ok((wrap.packet)(packet)),
            (
                NetInput::TunError(error),
                Wraps {
                    tun: Some(wrap), ..
                },
            ) => Ok((wrap.error)(error)),
            (input, _) => Err(input),
        }
    }
}

/// What the bus delivers to the task `T`, in `T`'s bus types.
#[doc(hidden)]
pub type TaskBusInput<T> =
    BusInput<<<T as Task>::Bus as BusTypes>::Channel, <<T as Task>::Bus as BusTypes>::Event>;

/// Turns a bus delivery into the task `T`'s input: never for a task without
/// a bus; through its `BusInput` handler for a task with one.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "task `{T}` declares a bus but has no #[on_input] handler for its bus events",
    label = "`{T}` cannot take these bus events",
    note = "add `#[on_input] fn bus(&mut self, ctx: &mut Ctx<Self>, input: BusInput<Channel, Event>)` with the `channel` and `event` types of `{T}`'s `#[sansio::task(..)]`"
)]
pub trait BusWrap<T: Task>: BusTypes {
    /// The input, when the task takes bus events.
    fn wrap(input: BusInput<Self::Channel, Self::Event>) -> Option<T::Input>;
}

impl<T: Task> BusWrap<T> for NoBus {
    fn wrap(_: BusInput<NoBusType, NoBusType>) -> Option<T::Input> {
        None
    }
}

impl<T, C, E> BusWrap<T> for Bus<C, E>
where
    Bus<C, E>: BusTypes<Channel = C, Event = E>,
    T: Handles<BusInput<C, E>>,
{
    fn wrap(input: BusInput<C, E>) -> Option<T::Input> {
        Some(T::wrap(input))
    }
}

/// `Self` has an `#[on_request]` handler for requests of type `R`.
#[diagnostic::on_unimplemented(
    message = "task `{Self}` has no #[on_request] handler for `{R}`",
    label = "`{Self}` cannot answer `{R}`",
    note = "add `#[on_request] fn name(&mut self, ctx: &mut Ctx<Self>, request: {R}) -> <{R} as Request>::Response` to the `#[sansio::task]` impl of `{Self}`"
)]
pub trait Answers<R>: Task {
    /// Wraps a request in the task's input enum.
    #[doc(hidden)]
    fn wrap_request(incoming: Incoming<R>) -> Self::Input;
}

/// Sends `answer`, an `#[on_request]` handler's return value, as the
/// response to `R` (checked by [`Responds`]).
#[doc(hidden)]
pub fn respond<T, R, A>(ctx: &mut Ctx<T>, responder: Responder<R>, answer: A)
where
    T: Task,
    R: Request,
    A: Responds<R, R::Response>,
{
    responder.respond(ctx, answer.into_response());
}

impl<R: Request> Responder<R> {
    /// Answers: the response goes back once the current handler returns, in
    /// order with the task's other actions.
    pub fn respond<T: Task>(mut self, ctx: &mut Ctx<T>, response: R::Response) {
        let route = std::mem::replace(&mut self.route, Route::Done);
        let response: Box<dyn Any + Send> = Box::new(response);
        ctx.reply(Box::new(move || crate::bus::deliver(route, Ok(response))));
    }
}
