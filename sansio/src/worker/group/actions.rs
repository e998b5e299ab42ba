//! How a worker carries out the actions a task queued ([`Entry::carry_out`]):
//! outputs, socket and device calls, bus calls, spawns and answers.

use std::any::Any;
use std::io;
use std::sync::Arc;

use super::Entry;
use crate::bus::BusInput;
use crate::id::RawId;
use crate::net::udp::Payload;
use crate::net::{Adoption, Owned};
use crate::task::{Action, BusAction, ErasedTarget, NetAction, Task};
use crate::timer::Due;
use crate::worker::hub::{BusEnvelope, Chan, Ev};
use crate::worker::{Member, Worker, WorkerCx};

impl<T: Task> Entry<T> {
    /// Carries out one action the task queued.
    pub(super) fn carry_out<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        id: W::Id,
        owner: RawId,
        action: Action<T>,
    ) where
        T: Member<W>,
    {
        match action {
            Action::Emit(output) => cx.output(id, T::output(output)),
            Action::Net(action) => self.carry_out_net(cx, owner, action),
            Action::Bus(action) => self.carry_out_bus(cx, owner, action),
            Action::Reply(send) => send(),
            Action::Spawn {
                id,
                worker,
                task_type,
                task,
                done,
            } => {
                let worker = worker.unwrap_or(usize::from(cx.index));
                let outcome = cx.spawn_erased(worker, task_type, task);
                let input: Box<dyn Any + Send> = Box::new(done(id, outcome));
                cx.bus.local.push_back(BusEnvelope::Deliver {
                    group: owner.group,
                    slot: owner.slot,
                    generation: owner.generation,
                    payload: input,
                    from: None,
                });
            }
        }
    }

    /// Carries out a socket or device call.
    fn carry_out_net<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        owner: RawId,
        action: NetAction<T>,
    ) {
        let counters = &mut cx.counters;
        match action {
            NetAction::UdpBind {
                socket,
                addr,
                options,
                wrap,
            } => {
                self.wraps.udp = Some(wrap);
                self.owned.push(Owned::Udp(socket));
                cx.net.udp_bind(socket, owner, addr, &options, counters);
            }
            NetAction::UdpSend { socket, to, data } => {
                cx.net
                    .udp_send(owner, socket, to, Payload::Owned(data), counters);
            }
            NetAction::UdpSendMany { socket, to, data } => {
                let shared = Arc::new(data);
                for to in to.iter().copied() {
                    let payload = Payload::Shared(Arc::clone(&shared));
                    cx.net.udp_send(owner, socket, to, payload, counters);
                }
            }
            NetAction::UdpClose { socket } => self.close(cx, owner, Owned::Udp(socket)),
            NetAction::UdpHandOver { socket, to, wrap } => {
                self.hand_over(cx, owner, Owned::Udp(socket), &to, wrap);
            }
            NetAction::TcpListen {
                listener,
                addr,
                options,
                wrap,
            } => {
                self.wraps.tcp = Some(wrap);
                self.owned.push(Owned::TcpListener(listener));
                cx.net.tcp_listen(listener, owner, addr, &options, counters);
            }
            NetAction::TcpConnect {
                conn,
                addr,
                options,
                wrap,
            } => {
                self.wraps.tcp = Some(wrap);
                self.owned.push(Owned::TcpConn(conn));
                cx.net.tcp_connect(conn, owner, addr, &options, counters);
            }
            NetAction::TcpSend { conn, data } => cx.net.tcp_send(owner, conn, data, counters),
            NetAction::TcpShutdownWrite { conn } => {
                cx.net.tcp_shutdown_write(owner, conn, counters);
            }
            NetAction::TcpClose { conn } => self.close(cx, owner, Owned::TcpConn(conn)),
            NetAction::TcpAbort { conn } => {
                if cx.net.owns(owner, Owned::TcpConn(conn), counters) {
                    self.owned.retain(|owned| *owned != Owned::TcpConn(conn));
                    cx.net.tcp_abort(conn, counters);
                }
            }
            NetAction::TcpCloseListener { listener } => {
                self.close(cx, owner, Owned::TcpListener(listener));
            }
            NetAction::TcpHandOver { conn, to, wrap } => {
                self.hand_over(cx, owner, Owned::TcpConn(conn), &to, wrap);
            }
            NetAction::TunOpen {
                tun,
                name,
                options,
                wrap,
            } => {
                self.wraps.tun = Some(wrap);
                self.owned.push(Owned::Tun(tun));
                cx.net.tun_open(tun, owner, &name, &options, counters);
            }
            NetAction::TunSend { tun, data } => cx.net.tun_send(owner, tun, data, counters),
            NetAction::TunClose { tun } => self.close(cx, owner, Owned::Tun(tun)),
        }
    }

    /// Carries out a bus call.
    fn carry_out_bus<W: Worker>(&mut self, cx: &mut WorkerCx<W>, owner: RawId, action: BusAction<T>)
    where
        T: Member<W>,
    {
        match action {
            BusAction::Subscribe(channel) => cx.bus.subscribe(owner, T::lift_channel(channel)),
            BusAction::Unsubscribe(channel) => cx.bus.unsubscribe(owner, &T::lift_channel(channel)),
            BusAction::Publish { channel, event } => {
                let (channel, event) = (T::lift_channel(channel), T::lift_event(event));
                cx.counters.bus_published += 1;
                let missed = cx.bus.publish(channel.clone(), event.clone());
                overflow(cx, owner, Some(channel), event, missed);
            }
            BusAction::Broadcast(event) => {
                let event = T::lift_event(event);
                cx.counters.bus_published += 1;
                let missed = cx.bus.broadcast(event.clone());
                overflow(cx, owner, None, event, missed);
            }
            BusAction::SendTo { to, payload } => {
                let sent = cx
                    .bus
                    .check(&to)
                    .and_then(|group| cx.bus.deliver(&to, group, payload, Some(owner)));
                if let Err(error) = sent {
                    cx.counters.bus_undelivered += 1;
                    let input = BusInput::SendFailed { error };
                    cx.bus.local.push_back(BusEnvelope::ToTask { owner, input });
                }
            }
            BusAction::Request {
                to,
                id,
                timeout,
                request,
                make,
                reply,
            } => {
                self.pending.insert(id, reply);
                cx.timers.push(cx.now + timeout, Due::Reply { owner, id });
                let sink = Arc::clone(&cx.bus.sink);
                let sent = cx.bus.check(&to).and_then(|group| {
                    let payload = make(request, sink, owner, id);
                    cx.bus.deliver(&to, group, payload, None)
                });
                if let Err(error) = sent {
                    cx.counters.bus_undelivered += 1;
                    cx.bus.local.push_back(BusEnvelope::Reply {
                        owner,
                        id,
                        result: Err(error),
                    });
                }
            }
        }
    }

    /// Hands `socket` over to the task `to` on this worker, which adopts it
    /// before anything else is delivered; refused (the socket stays this
    /// task's) when it is not this worker's, not open, or `to` is elsewhere or
    /// gone.
    fn hand_over<W: Worker>(
        &mut self,
        cx: &mut WorkerCx<W>,
        owner: RawId,
        socket: Owned,
        to: &ErasedTarget,
        wrap: Box<dyn Any + Send>,
    ) {
        if !cx.net.owns(owner, socket, &mut cx.counters) {
            return;
        }
        let handed = hand_over_target(cx, to).and_then(|target| {
            cx.net.hand_over(socket, owner, target)?;
            Ok(target)
        });
        match handed {
            Ok(target) => {
                self.owned.retain(|owned| *owned != socket);
                cx.adoptions.push_back((target, Adoption { socket, wrap }));
            }
            Err(error) => cx.net.refuse(owner, socket, error, &mut cx.counters),
        }
    }

    /// Closes a socket at the task's request (what it queued still goes
    /// out first), unless it belongs to another worker.
    fn close<W: Worker>(&mut self, cx: &mut WorkerCx<W>, owner: RawId, socket: Owned) {
        if cx.net.owns(owner, socket, &mut cx.counters) {
            self.owned.retain(|owned| *owned != socket);
            cx.net.close_owned(socket, cx.now, &mut cx.counters);
        }
    }
}

/// The task a socket is handed over to, once checked that it is alive and
/// on this worker.
fn hand_over_target<W: Worker>(cx: &WorkerCx<W>, to: &ErasedTarget) -> io::Result<RawId> {
    if to.worker != cx.index {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the task runs on worker {}, not on worker {}: a socket can only be handed to a \
                 task on its own worker",
                to.worker, cx.index
            ),
        ));
    }
    let gone = || io::Error::new(io::ErrorKind::NotFound, "the task has ended");
    let group = W::group_of(to.task_type).ok_or_else(gone)?;
    if !cx.shared.slots[usize::from(group)].is_live(to.slot, to.generation) {
        return Err(gone());
    }
    Ok(RawId {
        group,
        slot: to.slot,
        generation: to.generation,
    })
}

/// Hands a publish or broadcast that `missed` workers missed back to its
/// publisher, counted.
fn overflow<W: Worker>(
    cx: &mut WorkerCx<W>,
    publisher: RawId,
    channel: Option<Chan<W>>,
    event: Ev<W>,
    missed: usize,
) {
    if missed > 0 {
        cx.counters.bus_overflow += missed as u64;
        let input = BusInput::Overflow {
            channel,
            event,
            workers: missed,
        };
        cx.bus.local.push_back(BusEnvelope::ToTask {
            owner: publisher,
            input,
        });
    }
}
