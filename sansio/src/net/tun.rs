//! The worker's TUN/TAP devices (through the `tun-tap` crate): packets read
//! one per `read` into pooled buffers (or, where the backend reads devices
//! itself, io_uring's multishot `read`, taken from it and copied into pooled
//! buffers), packets written one per `write`, with a bounded queue while the
//! device will not take more.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;

use tun_tap::Iface;

use super::ifconfig::{self, MAX_NAME};
use super::sys::{QueuedBatch, Sends, requeue};
use super::table::Table;
use super::{NetInput, Source, TunError, TunId, TunMode, TunOptions, TunPacket};
use crate::backend::{Interest, Registry, watch_writable};
use crate::buf::PacketBuf;
use crate::id::RawId;
use crate::stats::Counters;

/// Packets read from one device per turn before others get theirs.
const PER_TURN: usize = 64;

/// Bytes a TAP frame carries beyond the MTU: an Ethernet header and a VLAN
/// tag.
const TAP_HEADER: usize = 18;

struct Device {
    id: TunId,
    owner: RawId,
    iface: Iface,
    options: TunOptions,
    queue: VecDeque<PacketBuf>,
    blocked: bool,
    dirty: bool,
    /// Closed with packets still queued: no longer read or open for sends,
    /// removed once the queue is written.
    closing: bool,
    /// The backend reads it (`Registry::receive_packets`): its packets are
    /// taken, not read, and its queue is written by the backend too.
    backend_reads: bool,
    /// Packets of the queue handed to the backend to write, not settled
    /// yet (out of `queue`).
    in_flight: usize,
}

/// The most queued packets handed to the backend at once.
const BATCH_MAX: usize = 64;

type Outbox = VecDeque<(RawId, NetInput)>;

/// Writes `device`'s queue through the backend (a device it reads, see
/// `Registry::send_messages`): settles the batch in flight once the kernel
/// is done with it (written packets counted; a packet the device refused
/// handed back, as on the readiness path; those cancelled behind it queued
/// again in front), then hands over the next. Returns whether the device
/// must wait for writability (the backend would not take a batch now).
fn write_by_backend(
    device: &mut Device,
    registry: &mut dyn Registry,
    results: &mut Vec<i32>,
    out: &mut Outbox,
    counters: &mut Counters,
) -> bool {
    let fd = device.iface.as_raw_fd();
    if device.in_flight > 0 {
        let Some(batch) = registry.take_sent(fd, results) else {
            return false;
        };
        device.in_flight = 0;
        let Ok(batch) = batch.into_any().downcast::<QueuedBatch>() else {
            return false;
        };
        let mut again = Vec::new();
        for (data, &result) in batch.bufs.into_iter().zip(results.iter()) {
            if result >= 0 {
                counters.tun_sent += 1;
            } else if [libc::ECANCELED, libc::EINTR, libc::EAGAIN].contains(&-result) {
                // Cancelled behind a refused packet, or not taken this
                // time: written again, in order, with the next batch.
                again.push(data);
            } else {
                counters.tun_send_errors += 1;
                out.push_back((
                    device.owner,
                    NetInput::TunError(TunError {
                        tun: device.id,
                        error: io::Error::from_raw_os_error(-result),
                        data: Some(data),
                    }),
                ));
            }
        }
        requeue(&mut device.queue, again);
    }
    if device.queue.is_empty() {
        return false;
    }
    let batch = QueuedBatch::new(&mut device.queue, BATCH_MAX, Sends::Writes, |len| len);
    match batch.hand_over(registry, fd, &mut device.queue) {
        Some(count) => {
            device.in_flight = count;
            false
        }
        None => true,
    }
}

/// Takes the packets the backend read from `device` (a fair share), as
/// `TunSockets::receive` reads them; returns whether more are waiting.
fn take_packets(
    device: &Device,
    registry: &mut dyn Registry,
    packets: &mut Vec<(RawId, NetInput)>,
    counters: &mut Counters,
) -> bool {
    let (owner, tun, max) = (device.owner, device.id, device.options.max_packet);
    let taken = registry.take_stream(device.iface.as_raw_fd(), PER_TURN, &mut |packet| {
        if packet.len() > max {
            counters.tun_truncated += 1;
            return;
        }
        let mut data = PacketBuf::with_capacity(max);
        data.extend_from_slice(packet);
        counters.tun_received += 1;
        packets.push((owner, NetInput::TunPacket(TunPacket { tun, data })));
    });
    match taken {
        Ok(taken) => taken.more,
        Err(error) => {
            counters.tun_recv_errors += 1;
            packets.push((
                owner,
                NetInput::TunError(TunError {
                    tun,
                    error,
                    data: None,
                }),
            ));
            false
        }
    }
}

/// Refuses a name or options the device could not be opened or configured
/// with, each with its own message (kind `InvalidInput`).
fn check(name: &str, options: &TunOptions) -> io::Result<()> {
    let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    // Empty is allowed here: the kernel then picks the name.
    if name.len() > MAX_NAME || name.contains('\0') {
        return invalid(format!(
            "`{name}` is not a valid interface name (at most {MAX_NAME} bytes, no NUL)"
        ));
    }
    if options.max_packet == 0 {
        return invalid("TunOptions::max_packet must be at least 1".to_owned());
    }
    if options.send_queue == 0 {
        return invalid("TunOptions::send_queue must be at least 1".to_owned());
    }
    if let Some((address, prefix_len)) = options.address {
        ifconfig::netmask(prefix_len).map_err(|error| {
            io::Error::new(error.kind(), format!("{address}/{prefix_len}: {error}"))
        })?;
    }
    if let Some(mtu) = options.mtu {
        if mtu == 0 || mtu > u32::from(u16::MAX) {
            return invalid(format!("the MTU {mtu} is out of range (1 to 65,535)"));
        }
        // A packet that fills its buffer counts as cut and is dropped: the
        // largest one must leave room.
        let header = match options.mode {
            TunMode::Tun => 0,
            TunMode::Tap => TAP_HEADER,
        };
        let largest = mtu as usize + header;
        if options.max_packet <= largest {
            return invalid(format!(
                "TunOptions::max_packet ({} bytes) must be above the largest packet the MTU \
                 {mtu} allows ({largest} bytes): raise it, or the device's largest packets \
                 would be dropped",
                options.max_packet
            ));
        }
    }
    Ok(())
}

/// The TUN/TAP devices of one worker.
#[derive(Default)]
pub(crate) struct TunDevices {
    devices: Table<TunId, Device>,
    dirty: Vec<usize>,
    /// Devices left readable when their turn ended.
    pub(crate) unread: Vec<usize>,
    /// Each packet's result of a batch the backend wrote.
    results: Vec<i32>,
}

impl TunDevices {
    /// Opens a device and configures it as `options` ask (address, MTU, up);
    /// returns its name (the kernel's, when `name` has a `%d` pattern or is
    /// empty). Options out of range are refused before anything is opened;
    /// a device that cannot be configured is closed again (dropping `iface`
    /// does it) before it is registered.
    pub(crate) fn open(
        &mut self,
        id: TunId,
        owner: RawId,
        name: &str,
        options: &TunOptions,
        registry: &mut dyn Registry,
    ) -> io::Result<String> {
        check(name, options)?;
        let mode = match options.mode {
            TunMode::Tun => tun_tap::Mode::Tun,
            TunMode::Tap => tun_tap::Mode::Tap,
        };
        let iface = Iface::without_packet_info(name, mode)?;
        iface.set_non_blocking()?;
        let opened = iface.name().to_owned();
        ifconfig::configure(&opened, options)?;
        let index = self.devices.vacant();
        let (fd, token) = (iface.as_raw_fd(), Source::Tun(index).token());
        // One byte more than the largest packet: a read that fills it was
        // cut, as on the readiness path.
        let backend_reads = registry.receive_packets(fd, token, options.max_packet + 1)?;
        if !backend_reads {
            registry.register(fd, token, Interest::READ)?;
        }
        let device = Device {
            id,
            owner,
            iface,
            options: options.clone(),
            queue: VecDeque::new(),
            blocked: false,
            dirty: false,
            closing: false,
            backend_reads,
            in_flight: 0,
        };
        self.devices.insert(id, device);
        Ok(opened)
    }

    /// Closes a device (it disappears from the system: devices are not
    /// persistent) once the packets it has queued are written; it stops
    /// being read and taking packets at once. Unknown ids are ignored.
    pub(crate) fn close(&mut self, id: TunId, registry: &mut dyn Registry) {
        let Some(index) = self.devices.forget(&id) else {
            return;
        };
        match self.devices.get_mut(index) {
            Some(device) if !device.queue.is_empty() || device.in_flight > 0 => {
                device.closing = true;
                if !device.dirty && !device.blocked {
                    device.dirty = true;
                    self.dirty.push(index);
                }
            }
            _ => self.remove(index, registry),
        }
    }

    fn remove(&mut self, index: usize, registry: &mut dyn Registry) {
        if let Some(device) = self.devices.take(index) {
            let _ = registry.deregister(device.iface.as_raw_fd());
        }
    }

    /// Queues a packet; a refusal comes back to `from`.
    pub(crate) fn send(
        &mut self,
        from: RawId,
        tun: TunId,
        data: PacketBuf,
        out: &mut Outbox,
        counters: &mut Counters,
    ) {
        let found = self.devices.find_mut(&tun);
        let refuse =
            |error: io::Error, data: PacketBuf, out: &mut Outbox, counters: &mut Counters| {
                counters.tun_send_errors += 1;
                out.push_back((
                    from,
                    NetInput::TunError(TunError {
                        tun,
                        error,
                        data: Some(data),
                    }),
                ));
            };
        let Some((index, device)) = found else {
            let error = io::Error::new(io::ErrorKind::NotConnected, format!("{tun} is not open"));
            refuse(error, data, out, counters);
            return;
        };
        if device.queue.len() + device.in_flight >= device.options.send_queue {
            let error = io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "the send queue of {tun} is full ({} packets)",
                    device.options.send_queue
                ),
            );
            refuse(error, data, out, counters);
            return;
        }
        device.queue.push_back(data);
        if !device.dirty {
            device.dirty = true;
            self.dirty.push(index);
        }
    }

    /// The device became writable.
    pub(crate) fn writable(&mut self, index: usize) {
        if let Some(device) = self.devices.get_mut(index)
            && !device.dirty
        {
            device.dirty = true;
            self.dirty.push(index);
        }
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Writes queued packets until each queue is empty or would block.
    pub(crate) fn flush(
        &mut self,
        registry: &mut dyn Registry,
        out: &mut Outbox,
        counters: &mut Counters,
    ) {
        for index in std::mem::take(&mut self.dirty) {
            let Some(device) = self.devices.get_mut(index) else {
                continue;
            };
            device.dirty = false;
            let mut blocked = false;
            if device.backend_reads {
                blocked = write_by_backend(device, registry, &mut self.results, out, counters);
            }
            while !device.backend_reads
                && let Some(packet) = device.queue.front()
            {
                match device.iface.send(packet) {
                    Ok(_) => {
                        counters.tun_sent += 1;
                        device.queue.pop_front();
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => {
                        // A malformed packet (EINVAL), a device that went down:
                        // hand this packet back and go on.
                        counters.tun_send_errors += 1;
                        let data = device.queue.pop_front();
                        out.push_back((
                            device.owner,
                            NetInput::TunError(TunError {
                                tun: device.id,
                                error,
                                data,
                            }),
                        ));
                    }
                }
            }
            if device.closing && device.queue.is_empty() && device.in_flight == 0 {
                self.remove(index, registry);
                continue;
            }
            let (fd, token) = (device.iface.as_raw_fd(), Source::Tun(index).token());
            if let Err(error) = watch_writable(registry, fd, token, blocked, &mut device.blocked) {
                out.push_back((
                    device.owner,
                    NetInput::TunError(TunError {
                        tun: device.id,
                        error,
                        data: None,
                    }),
                ));
                if device.closing {
                    // It can never drain: what is left is dropped, counted.
                    counters.tun_send_errors += device.queue.len() as u64;
                    self.remove(index, registry);
                }
            }
        }
    }

    /// Reads packets from device `index` into `packets`; returns whether it
    /// may have more. A packet that fills the whole buffer may have been cut:
    /// it is counted and dropped.
    pub(crate) fn receive(
        &mut self,
        index: usize,
        registry: &mut dyn Registry,
        packets: &mut Vec<(RawId, NetInput)>,
        counters: &mut Counters,
    ) -> bool {
        let Some(device) = self.devices.get(index) else {
            return false;
        };
        if device.closing {
            // A closing device only writes what it has left.
            return false;
        }
        if device.backend_reads {
            return take_packets(device, registry, packets, counters);
        }
        for _ in 0..PER_TURN {
            let mut buf = PacketBuf::with_capacity(device.options.max_packet);
            let area = buf.receive_area();
            let capacity = area.len();
            match device.iface.recv(area) {
                Ok(len) if len >= capacity => counters.tun_truncated += 1,
                Ok(len) => {
                    buf.set_len(len);
                    counters.tun_received += 1;
                    packets.push((
                        device.owner,
                        NetInput::TunPacket(TunPacket {
                            tun: device.id,
                            data: buf,
                        }),
                    ));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    counters.tun_recv_errors += 1;
                    packets.push((
                        device.owner,
                        NetInput::TunError(TunError {
                            tun: device.id,
                            error,
                            data: None,
                        }),
                    ));
                    return false;
                }
            }
        }
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.devices.open()
    }

    /// Whether closed devices still have packets to write.
    pub(crate) fn lingering(&self) -> bool {
        self.devices.iter().any(|(_, device)| device.closing)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn refused(name: &str, options: &TunOptions) -> String {
        let error = check(name, options).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{error}");
        error.to_string()
    }

    #[test]
    fn options_out_of_range_are_refused_before_opening() {
        let ok = TunOptions::default();
        assert!(check("", &ok).is_ok());
        assert!(check("tun%d", &ok).is_ok());
        let ip = Ipv4Addr::new(10, 213, 1, 1);
        assert!(check("t", &ok.clone().address(ip, 32).mtu(1400).up(true)).is_ok());

        assert!(refused(&"x".repeat(16), &ok).contains("interface name"));
        assert!(refused("a\0b", &ok).contains("interface name"));
        assert!(refused("t", &ok.clone().max_packet(0)).contains("max_packet"));
        assert!(refused("t", &ok.clone().send_queue(0)).contains("send_queue"));
        let message = refused("t", &ok.clone().address(ip, 33));
        assert!(message.contains("10.213.1.1/33"), "{message}");
        assert!(refused("t", &ok.clone().mtu(0)).contains("MTU 0"));
        assert!(refused("t", &ok.clone().mtu(65_536)).contains("MTU 65536"));
    }

    #[test]
    fn the_mtu_must_fit_max_packet() {
        let tun = TunOptions::default().max_packet(1500);
        assert!(check("t", &tun.clone().mtu(1499)).is_ok());
        assert!(refused("t", &tun.clone().mtu(1500)).contains("max_packet"));
        // A TAP frame carries its Ethernet header (and maybe a VLAN tag) too.
        let tap = tun.mode(TunMode::Tap);
        assert!(check("t", &tap.clone().mtu(1481)).is_ok());
        assert!(refused("t", &tap.mtu(1482)).contains("1500 bytes"));
    }
}
