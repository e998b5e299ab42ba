//! Batched datagram system calls: `recvmmsg` and `sendmmsg`, one call for up
//! to [`BATCH`] messages, with UDP GSO on send where the kernel has it. The
//! only unsafe code of the UDP path lives here.
//!
//! Over 500 lines on purpose: all the unsafe code of the UDP path is in this
//! one file (about 700 lines of code, the rest its unit tests), so that it is
//! reviewed in one place.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr;

use socket2::{SockAddr, SockAddrStorage};

use crate::buf::PacketBuf;
use crate::faults::{self, Call};

/// Messages per system call.
pub(crate) const BATCH: usize = 32;

/// Datagrams in one GSO message at most (the kernel's `UDP_MAX_SEGMENTS`
/// has been 64 since GSO came, and larger on recent kernels).
pub(crate) const MAX_SEGMENTS: usize = 64;

/// Payload bytes of one GSO message at most: it must fit one UDP datagram's
/// length field, with room for headers.
const MAX_GSO_BYTES: usize = 65_000;

/// Datagrams per `sendmmsg` at most (each is one iovec).
pub(crate) const IOVECS: usize = 256;

/// `CMSG_SPACE(size_of::<u16>())`: a control message carrying a segment size.
// SAFETY: `CMSG_SPACE` only computes a length.
const SEGMENT_SPACE: usize = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as usize;
const _: () = assert!(SEGMENT_SPACE <= mem::size_of::<Control>());
// A received GRO segment size (an int) fits too; GRO receives use the first
// headers of a batch.
// SAFETY: as above.
const _: () = assert!(
    unsafe { libc::CMSG_SPACE(mem::size_of::<libc::c_int>() as u32) } as usize
        <= mem::size_of::<Control>()
);
const _: () = assert!(GRO_MESSAGES <= BATCH);
// Both a GRO segment size and a kernel drop count fit at once.
// SAFETY: as above.
const _: () = assert!(
    2 * unsafe { libc::CMSG_SPACE(mem::size_of::<u32>() as u32) } as usize
        <= mem::size_of::<Control>()
);

/// Room for one control message, aligned as `cmsghdr` needs.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Control([u8; 64]);

/// What one received datagram was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) from: Option<SocketAddr>,
    /// The kernel cut the datagram to fit the buffer (`MSG_TRUNC`).
    pub(crate) truncated: bool,
    /// The socket's count of datagrams the kernel dropped for a full
    /// receive buffer, as of this one (`SO_RXQ_OVFL`), when it says.
    pub(crate) drops: Option<u32>,
}

/// Messages per receive with `UDP_GRO` on.
pub(crate) const GRO_MESSAGES: usize = 8;

/// Bytes of each receive buffer with `UDP_GRO` on: room for the largest
/// coalesced message.
pub(crate) const GRO_BUFFER: usize = 65_536;

/// What one message received with `UDP_GRO` on holds: `len` bytes, one
/// datagram per `segment` bytes (the last may be shorter).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Coalesced {
    pub(crate) from: Option<SocketAddr>,
    pub(crate) len: usize,
    pub(crate) segment: usize,
    /// The kernel cut the message to fit the buffer (`MSG_TRUNC`).
    pub(crate) truncated: bool,
    /// The socket's count of kernel drops as of this message, if said.
    pub(crate) drops: Option<u32>,
}

impl Coalesced {
    /// A message of `len` bytes from `from`, as its control messages
    /// describe it: without a segment size, one datagram.
    pub(crate) fn new(
        from: Option<SocketAddr>,
        len: usize,
        truncated: bool,
        control: ControlMessages,
    ) -> Coalesced {
        let segment = control
            .segment
            .and_then(|size| usize::try_from(size).ok())
            .filter(|&size| size > 0)
            .unwrap_or(len);
        Coalesced {
            from,
            len,
            segment,
            truncated,
            drops: control.drops,
        }
    }
}

/// Scratch space for [`BATCH`]-datagram system calls, reused across calls.
pub(crate) struct Batch {
    /// Headers of sends, written whole by each send.
    send: SendHeaders,
    /// Headers of receives, kept from one receive to the next: each points
    /// at its own entry of `recv_iovecs`, `sources` and `controls` from
    /// `new` on, so a receive only writes what changed since the last (the
    /// entries the kernel wrote, and areas that moved) instead of all
    /// [`BATCH`] headers, when a light load brings a datagram or two.
    recv_headers: Vec<libc::mmsghdr>,
    recv_iovecs: Vec<libc::iovec>,
    /// Leading receive headers the kernel may have written in the last
    /// receive, which must be reset before the next.
    recv_written: usize,
    /// Where the kernel writes the senders of received datagrams.
    sources: Vec<libc::sockaddr_storage>,
    /// Each received message's control data: a GRO segment size, a drop
    /// count.
    controls: Vec<Control>,
}

/// The headers of up to [`BATCH`] messages to send, and the destinations,
/// iovecs and control data they point to (the payloads are the caller's):
/// for one `sendmmsg`, or for the `sendmsg`s of a completion backend, which
/// keeps them, with the payloads, until the kernel has sent them.
pub(crate) struct SendHeaders {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    destinations: Vec<SockAddr>,
    /// Datagrams in each message.
    segments: [usize; BATCH],
    /// A GSO segment size, for each message that is a run.
    controls: Vec<Control>,
    /// Messages prepared.
    messages: usize,
}

// SAFETY: the raw pointers inside `headers` and `iovecs` point into the
// heap storage of `iovecs`, `destinations` and `controls` (never resized
// after `new`), which move with the value, and into payloads whose owner
// keeps them alive and in place as long as the headers are used (see
// `prepare`).
unsafe impl Send for SendHeaders {}

impl SendHeaders {
    pub(crate) fn new() -> Self {
        // SAFETY: `mmsghdr` is a plain C struct for which all zeroes (null
        // pointers, zero lengths) is a valid value.
        let header: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        let iovec = libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        };
        SendHeaders {
            headers: vec![header; BATCH],
            iovecs: vec![iovec; IOVECS],
            destinations: (0..BATCH).map(|_| empty_address()).collect(),
            segments: [0; BATCH],
            controls: vec![Control([0; 64]); BATCH],
            messages: 0,
        }
    }

    /// The messages prepared, ready to send; their pointers stay valid as
    /// long as `self` and the payloads given to `prepare` do.
    #[cfg_attr(not(feature = "io-uring"), allow(dead_code))]
    pub(crate) fn headers(&mut self) -> &mut [libc::mmsghdr] {
        &mut self.headers[..self.messages]
    }

    /// Datagrams in each message prepared.
    pub(crate) fn segments(&self) -> &[usize] {
        &self.segments[..self.messages]
    }

    /// Keeps the first `messages` messages only.
    pub(crate) fn truncate(&mut self, messages: usize) {
        self.messages = self.messages.min(messages);
    }

    /// Prepares messages for datagrams (`(destination, payload)`, in
    /// order): up to [`BATCH`] messages. With `gso`, a run of datagrams to
    /// one destination, all of one size but the last (which may be
    /// shorter), is one message the kernel cuts into datagrams
    /// (`UDP_SEGMENT`), up to [`MAX_SEGMENTS`] of them. Returns how many
    /// datagrams the messages hold, from the first. The payloads must stay
    /// where they are while the headers are used.
    pub(crate) fn prepare<'a>(
        &mut self,
        datagrams: impl Iterator<Item = (&'a SocketAddr, &'a [u8])>,
        gso: bool,
    ) -> usize {
        let mut datagrams = datagrams.peekable();
        let mut messages = 0;
        let mut used = 0; // iovecs
        while messages < BATCH && used < IOVECS {
            let Some((to, payload)) = datagrams.next() else {
                break;
            };
            let first = used;
            self.iovecs[used] = iovec(payload);
            used += 1;
            let segment = payload.len();
            let mut total = segment;
            if gso && segment > 0 {
                // Extend the run while the next datagram can join it.
                while used - first < MAX_SEGMENTS && used < IOVECS {
                    let Some(&(next_to, next)) = datagrams.peek() else {
                        break;
                    };
                    if next_to != to
                        || next.is_empty()
                        || next.len() > segment
                        || total + next.len() > MAX_GSO_BYTES
                    {
                        break;
                    }
                    datagrams.next();
                    self.iovecs[used] = iovec(next);
                    used += 1;
                    total += next.len();
                    if next.len() < segment {
                        break; // Only the last segment may be shorter.
                    }
                }
            }
            let segments = used - first;
            self.segments[messages] = segments;
            self.destinations[messages] = SockAddr::from(*to);
            let header = &mut self.headers[messages];
            // SAFETY: see `new`.
            header.msg_hdr = unsafe { MaybeUninit::zeroed().assume_init() };
            // The kernel only reads the destination.
            header.msg_hdr.msg_name = self.destinations[messages].as_ptr().cast_mut().cast();
            header.msg_hdr.msg_namelen = self.destinations[messages].len();
            header.msg_hdr.msg_iov = &mut self.iovecs[first];
            header.msg_hdr.msg_iovlen = segments as _;
            header.msg_len = 0;
            if segments > 1 {
                let control = &mut self.controls[messages];
                header.msg_hdr.msg_control = control.0.as_mut_ptr().cast();
                header.msg_hdr.msg_controllen = SEGMENT_SPACE as _;
                // SAFETY: `control` is a zeroed, aligned buffer of at least
                // `CMSG_SPACE(size_of::<u16>())` bytes, and `msg_control`
                // and `msg_controllen` describe it, so the first header fits.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(&header.msg_hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                    ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment as u16);
                }
            }
            messages += 1;
        }
        self.messages = messages;
        used
    }
}

// SAFETY: the raw pointers of `send` to payloads and those inside
// `recv_iovecs` are only set and used within one call of `recv`/`send`,
// which borrow everything they point into; between calls they dangle
// unused (see `SendHeaders` for the rest of its pointers). Those of
// `recv_headers` point into the heap storage of `recv_iovecs`, `sources` and
// `controls`, which the `Batch` owns and never resizes, so they move with it
// between threads and stay valid.
unsafe impl Send for Batch {}

fn empty_address() -> SockAddr {
    // SAFETY: an all-zero `sockaddr_storage` is a valid (unspecified) address
    // of length 0, which the kernel overwrites on receive.
    unsafe { SockAddr::new(mem::zeroed(), 0) }
}

impl Batch {
    pub(crate) fn new() -> Self {
        // SAFETY: `mmsghdr` and `iovec` are plain C structs for which all
        // zeroes (null pointers, zero lengths) is a valid value.
        let header: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        let iovec = libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        };
        // SAFETY: all zeroes is a valid `sockaddr_storage` (family unspecified).
        let storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let mut batch = Batch {
            send: SendHeaders::new(),
            recv_headers: vec![header; BATCH],
            recv_iovecs: vec![iovec; BATCH],
            // Every header is written by the first receive.
            recv_written: BATCH,
            sources: vec![storage; BATCH],
            controls: vec![Control([0; 64]); BATCH],
        };
        for (index, header) in batch.recv_headers.iter_mut().enumerate() {
            header.msg_hdr.msg_name = (&raw mut batch.sources[index]).cast();
            header.msg_hdr.msg_iov = &raw mut batch.recv_iovecs[index];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_hdr.msg_control = batch.controls[index].0.as_mut_ptr().cast();
        }
        batch
    }

    /// Receives up to `bufs.len()` (at most [`BATCH`]) datagrams from the
    /// non-blocking socket `fd` into `bufs`, describing each in `received`.
    /// Returns how many arrived; `WouldBlock` when none was waiting.
    pub(crate) fn recv(
        &mut self,
        fd: RawFd,
        bufs: &mut [PacketBuf],
        received: &mut Vec<Received>,
    ) -> io::Result<usize> {
        let areas = bufs.iter_mut().take(BATCH).map(PacketBuf::receive_area);
        let got = self.receive(fd, areas)?;
        received.clear();
        for (index, (header, buf)) in self
            .recv_headers
            .iter()
            .zip(bufs.iter_mut())
            .take(got)
            .enumerate()
        {
            buf.set_len(header.msg_len as usize);
            received.push(Received {
                from: self.source(index, header.msg_hdr.msg_namelen),
                truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                drops: control_messages(&header.msg_hdr).drops,
            });
        }
        Ok(got)
    }

    /// Receives up to [`GRO_MESSAGES`] messages from the non-blocking socket
    /// `fd`, which has `UDP_GRO` on, into `bufs` (each [`GRO_BUFFER`]
    /// bytes): a message may be several datagrams from one sender that the
    /// kernel coalesced, all of `segment` bytes but the last. Returns how
    /// many messages arrived; `WouldBlock` when none was waiting.
    pub(crate) fn recv_coalesced(
        &mut self,
        fd: RawFd,
        bufs: &mut [Box<[u8]>],
        received: &mut Vec<Coalesced>,
    ) -> io::Result<usize> {
        let areas = bufs.iter_mut().take(GRO_MESSAGES).map(|buf| &mut buf[..]);
        let got = self.receive(fd, areas)?;
        received.clear();
        for index in 0..got {
            let header = &self.recv_headers[index];
            let len = header.msg_len as usize;
            received.push(Coalesced::new(
                self.source(index, header.msg_hdr.msg_namelen),
                len,
                header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                control_messages(&header.msg_hdr),
            ));
        }
        Ok(got)
    }

    /// One `recvmmsg` into `areas` (at most [`BATCH`]), each message with
    /// room for its sender and for control messages. Returns how many
    /// messages arrived.
    fn receive<'a>(
        &mut self,
        fd: RawFd,
        areas: impl Iterator<Item = &'a mut [u8]>,
    ) -> io::Result<usize> {
        if let Some(injected) = faults::error(Call::UdpRecv) {
            return Err(injected);
        }
        let written = self.recv_written;
        let mut count = 0;
        for (index, area) in areas.take(BATCH).enumerate() {
            count = index + 1;
            let iovec = &mut self.recv_iovecs[index];
            let base = area.as_mut_ptr().cast::<libc::c_void>();
            // The kernel writes a header only for a message it fills: one
            // it did not, for the same area as before, is ready as it is.
            if index >= written && iovec.iov_base == base && iovec.iov_len == area.len() {
                continue;
            }
            *iovec = libc::iovec {
                iov_base: base,
                iov_len: area.len(),
            };
            let header = &mut self.recv_headers[index];
            // `msg_name`, `msg_iov`, `msg_iovlen` and `msg_control` stay as
            // `new` set them.
            header.msg_hdr.msg_namelen =
                mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_controllen = mem::size_of::<Control>() as _;
            header.msg_hdr.msg_flags = 0;
            header.msg_len = 0;
        }
        // SAFETY: `recv_headers[..count]` point into `recv_iovecs`,
        // `sources` and `controls` (see `new`) and, through the iovecs, into
        // the areas, which the caller borrows exclusively for this call (the
        // areas' lifetime outlives it); each iovec's length is its area's
        // length.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.recv_headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if got < 0 {
            // What a failed call wrote is unknown: every header is reset.
            self.recv_written = BATCH;
            return Err(io::Error::last_os_error());
        }
        self.recv_written = got as usize;
        Ok(got as usize)
    }

    /// The sender the kernel wrote for received message `index`.
    fn source(&self, index: usize, namelen: libc::socklen_t) -> Option<SocketAddr> {
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: `SockAddrStorage` is a transparent `sockaddr_storage`, and
        // the kernel wrote a socket address of `namelen` bytes into
        // `sources[index]`.
        unsafe {
            *storage.view_as::<libc::sockaddr_storage>() = self.sources[index];
            SockAddr::new(storage, namelen)
        }
        .as_socket()
    }

    /// Sends datagrams (`(destination, payload)`, in order) on the
    /// non-blocking socket `fd`: up to [`BATCH`] messages in one `sendmmsg`.
    ///
    /// With `gso`, runs to one destination go as one message each (see
    /// [`SendHeaders::prepare`]): one trip through the stack for up to
    /// [`MAX_SEGMENTS`] datagrams.
    ///
    /// `waiting`: the socket is already watched for writability (for fault
    /// injection only).
    ///
    /// Returns how many datagrams the kernel took, from the first, and how
    /// many of those went in GSO runs. On an error nothing was sent; it is
    /// the first message's, and says whether that message was a GSO run.
    pub(crate) fn send<'a>(
        &mut self,
        fd: RawFd,
        datagrams: impl Iterator<Item = (&'a SocketAddr, &'a [u8])>,
        gso: bool,
        waiting: bool,
    ) -> Result<Sent, SendFailed> {
        self.send.prepare(datagrams, gso);
        let messages = self.send.messages;
        if messages == 0 {
            return Ok(Sent::default());
        }
        let first = self.send.segments[0];
        let injected = faults::send_error(Call::UdpSend, waiting)
            .or_else(|| (first > 1).then(faults::gso_error).flatten());
        if let Some(error) = injected {
            return Err(SendFailed {
                error,
                datagrams: first,
            });
        }
        let messages = faults::shorten(Call::UdpSend, messages);
        // SAFETY: `headers[..messages]` point into `destinations`, `iovecs`,
        // `controls` and the payloads, which outlive this call; the kernel
        // only reads them.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                self.send.headers.as_mut_ptr(),
                messages as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(SendFailed {
                error: io::Error::last_os_error(),
                datagrams: first,
            });
        }
        let segments = &self.send.segments[..sent as usize];
        Ok(Sent {
            datagrams: segments.iter().sum(),
            segmented: segments.iter().filter(|&&n| n > 1).sum(),
        })
    }
}

/// What one `sendmmsg` sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Datagrams the kernel took.
    pub(crate) datagrams: usize,
    /// Of those, datagrams that went in GSO runs.
    pub(crate) segmented: usize,
}

/// A `sendmmsg` that sent nothing: the error is its first message's.
#[derive(Debug)]
pub(crate) struct SendFailed {
    pub(crate) error: io::Error,
    /// Datagrams in the first message: more than one for a GSO run, whose
    /// error may be GSO's (see [`gso_unsupported`]).
    pub(crate) datagrams: usize,
}

/// Whether a failed GSO send says the path cannot segment at all — `EIO`
/// (a device without checksum offload) or `EINVAL` (segmentation refused,
/// as with checksums off) — rather than something that may pass
/// (`ENOBUFS`, `EAGAIN`, `EINTR`, …) or that the datagrams would meet one by
/// one too.
pub(crate) fn gso_unsupported(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EIO | libc::EINVAL))
}

fn iovec(payload: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    }
}

/// What the control messages of one received message said.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ControlMessages {
    /// `UDP_GRO`: the size of the coalesced segments.
    pub(crate) segment: Option<libc::c_int>,
    /// `SO_RXQ_OVFL`: the socket's kernel drop count.
    pub(crate) drops: Option<u32>,
}

/// The sender of a datagram a completion backend received, from the socket
/// address bytes the kernel wrote (`None` if they are not an IPv4 or IPv6
/// address).
pub(crate) fn sender(name: &[u8]) -> Option<SocketAddr> {
    let len = name.len().min(mem::size_of::<libc::sockaddr_storage>());
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: `SockAddrStorage` is a transparent `sockaddr_storage`, into
    // which at most its size is copied; the length given is the bytes
    // copied, and `as_socket` reads only families it knows, checking the
    // length of each.
    unsafe {
        ptr::copy_nonoverlapping(
            name.as_ptr(),
            ptr::from_mut(storage.view_as::<libc::sockaddr_storage>()).cast::<u8>(),
            len,
        );
        SockAddr::new(storage, len as libc::socklen_t)
    }
    .as_socket()
}

/// The control messages a completion backend received with a datagram, as
/// the kernel wrote them (the first 64 bytes: a GRO segment size and a drop
/// count fit).
pub(crate) fn control_said(control: &[u8]) -> ControlMessages {
    if control.is_empty() {
        return ControlMessages::default();
    }
    // Copied where `cmsghdr`'s alignment holds, wherever the bytes were.
    let mut aligned = Control([0; 64]);
    let len = control.len().min(aligned.0.len());
    aligned.0[..len].copy_from_slice(&control[..len]);
    // SAFETY: all-zero is a valid `msghdr`.
    let mut header: libc::msghdr = unsafe { mem::zeroed() };
    header.msg_control = aligned.0.as_mut_ptr().cast();
    header.msg_controllen = len as _;
    control_messages(&header)
}

/// Reads the control messages the kernel wrote for `header`.
fn control_messages(header: &libc::msghdr) -> ControlMessages {
    let mut found = ControlMessages::default();
    if header.msg_control.is_null() {
        return found;
    }
    // SAFETY: `msg_control`/`msg_controllen` describe control messages the
    // kernel wrote (into a header's `Control` buffer, or a completion
    // backend's buffer), which the CMSG macros walk without leaving that
    // length; each datum is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(header);
        while !cmsg.is_null() {
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::SOL_UDP, libc::UDP_GRO) => {
                    found.segment = Some(ptr::read_unaligned(
                        libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
                    ));
                }
                (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => {
                    found.drops = Some(ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<u32>()));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(header, cmsg);
        }
    }
    found
}

/// Turns on the boolean socket option `level`/`name` for `fd`.
fn turn_on(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is valid for reads of the size given.
    let result = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const on).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to report, with received datagrams, how many it dropped
/// for a full receive buffer (`SO_RXQ_OVFL`). Best effort: without it the
/// count stays unknown.
pub(crate) fn report_drops(fd: RawFd) {
    let _ = turn_on(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL);
}

/// `SO_MEMINFO` (Linux 4.12), as `asm-generic/socket.h` numbers it: every
/// architecture but MIPS and SPARC, which number it otherwise and go
/// without.
const SO_MEMINFO: Option<libc::c_int> = if cfg!(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6",
    target_arch = "sparc",
    target_arch = "sparc64"
)) {
    None
} else {
    Some(55)
};

/// The socket's count of datagrams the kernel dropped (the same count
/// `SO_RXQ_OVFL` reports with each datagram), read now (`SO_MEMINFO`):
/// for drops after the last datagram that arrived. `None` where the kernel
/// cannot say.
pub(crate) fn kernel_drops(fd: RawFd) -> Option<u32> {
    let option = SO_MEMINFO?;
    let mut info = [0u32; 9];
    let mut len = mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes of the sizes given; the
    // kernel writes at most `len` bytes.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let drops = libc::SK_MEMINFO_DROPS as usize;
    (result == 0 && len as usize >= (drops + 1) * mem::size_of::<u32>()).then(|| info[drops])
}

/// Turns on `UDP_GRO` for `fd`: the kernel may then deliver several
/// datagrams from one sender as one message (Linux 5.0).
pub(crate) fn enable_gro(fd: RawFd) -> io::Result<()> {
    turn_on(fd, libc::SOL_UDP, libc::UDP_GRO)
}

/// Whether the kernel can segment UDP sends (`UDP_SEGMENT`, Linux 4.18).
pub(crate) fn gso_supported(fd: RawFd) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes given.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    result == 0
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (a, b)
    }

    /// Sends every payload to `to`, batch after batch; returns the totals.
    fn send_all(
        batch: &mut Batch,
        from: &UdpSocket,
        to: SocketAddr,
        payloads: &[Vec<u8>],
        gso: bool,
    ) -> Sent {
        let mut total = Sent::default();
        while total.datagrams < payloads.len() {
            let sent = batch
                .send(
                    from.as_raw_fd(),
                    payloads[total.datagrams..]
                        .iter()
                        .map(|p| (&to, p.as_slice())),
                    gso,
                    false,
                )
                .map_err(|failed| failed.error)
                .unwrap();
            total.datagrams += sent.datagrams;
            total.segmented += sent.segmented;
        }
        total
    }

    /// Receives `count` datagrams on `socket`, each checked to come from
    /// `sender` whole.
    fn recv_all(
        batch: &mut Batch,
        socket: &UdpSocket,
        sender: SocketAddr,
        count: usize,
    ) -> Vec<Vec<u8>> {
        socket.set_nonblocking(true).unwrap();
        let mut bufs: Vec<PacketBuf> = (0..BATCH).map(|_| PacketBuf::new()).collect();
        let mut received = Vec::new();
        let mut got = Vec::new();
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < count && std::time::Instant::now() < give_up {
            match batch.recv(socket.as_raw_fd(), &mut bufs, &mut received) {
                Ok(n) => {
                    for (buf, meta) in bufs.iter().zip(&received).take(n) {
                        assert_eq!(meta.from, Some(sender));
                        assert!(!meta.truncated);
                        got.push(buf.to_vec());
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::yield_now();
                }
                Err(error) => panic!("{error}"),
            }
        }
        got
    }

    #[test]
    fn sends_and_receives_batches() {
        let (a, b) = pair();
        let mut batch = Batch::new();
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|n| vec![n; usize::from(n) + 1]).collect();
        let sent = send_all(&mut batch, &a, b.local_addr().unwrap(), &payloads, false);
        assert_eq!(
            sent,
            Sent {
                datagrams: 40,
                segmented: 0
            }
        );
        let got = recv_all(&mut batch, &b, a.local_addr().unwrap(), 40);
        assert_eq!(got, payloads);
    }

    #[test]
    fn gso_runs_arrive_as_the_datagrams_that_were_queued() {
        let (a, b) = pair();
        assert!(
            gso_supported(a.as_raw_fd()),
            "this kernel has no UDP_SEGMENT (GSO): run the tests on Linux 4.18 or later"
        );
        let mut batch = Batch::new();
        // A run longer than one GSO message, a shorter datagram ending a
        // run, a larger one starting the next, an empty one (never part of
        // a run), and sizes that change every datagram.
        let mut payloads: Vec<Vec<u8>> = (0..150u32).map(|n| vec![n as u8; 100]).collect();
        payloads.push(vec![1; 60]);
        payloads.extend((0..3).map(|n| vec![n; 100]));
        payloads.push(vec![2; 200]);
        payloads.push(Vec::new());
        payloads.extend((0..10u8).map(|n| vec![n; 10 + usize::from(n)]));
        let sent = send_all(&mut batch, &a, b.local_addr().unwrap(), &payloads, true);
        assert_eq!(sent.datagrams, payloads.len());
        // 150 + 1 in runs of at most 64, then 3 (the 200-byte one is alone).
        assert_eq!(sent.segmented, 154, "{sent:?}");
        let got = recv_all(&mut batch, &b, a.local_addr().unwrap(), payloads.len());
        assert_eq!(got.len(), payloads.len());
        assert_eq!(got, payloads);
    }

    #[test]
    fn gso_runs_never_mix_destinations() {
        let (a, b) = pair();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(
            gso_supported(a.as_raw_fd()),
            "this kernel has no UDP_SEGMENT (GSO): run the tests on Linux 4.18 or later"
        );
        let (to_b, to_c) = (b.local_addr().unwrap(), c.local_addr().unwrap());
        // Runs of 5 to each peer in turn, all 300 bytes.
        let queue: Vec<(SocketAddr, Vec<u8>)> = (0..60u8)
            .map(|n| (if (n / 5) % 2 == 0 { to_b } else { to_c }, vec![n; 300]))
            .collect();
        let mut batch = Batch::new();
        let mut sent = 0;
        while sent < queue.len() {
            sent += batch
                .send(
                    a.as_raw_fd(),
                    queue[sent..].iter().map(|(to, p)| (to, p.as_slice())),
                    true,
                    false,
                )
                .map_err(|failed| failed.error)
                .unwrap()
                .datagrams;
        }
        let expect = |peer| -> Vec<Vec<u8>> {
            queue
                .iter()
                .filter(|(to, _)| *to == peer)
                .map(|(_, p)| p.clone())
                .collect()
        };
        let from = a.local_addr().unwrap();
        assert_eq!(recv_all(&mut batch, &b, from, 30), expect(to_b));
        assert_eq!(recv_all(&mut batch, &c, from, 30), expect(to_c));
    }

    #[test]
    fn gro_delivers_a_gso_run_as_one_message_that_splits_back() {
        let (a, b) = pair();
        assert!(
            gso_supported(a.as_raw_fd()) && enable_gro(b.as_raw_fd()).is_ok(),
            "this kernel has no UDP_SEGMENT or UDP_GRO: run the tests on Linux 5.0 or later"
        );
        let mut payloads: Vec<Vec<u8>> = (0..20u8).map(|n| vec![n; 300]).collect();
        payloads.push(vec![99; 100]);
        payloads.push(vec![7; 50]); // Alone: shorter than the run's last.
        let mut batch = Batch::new();
        let sent = send_all(&mut batch, &a, b.local_addr().unwrap(), &payloads, true);
        assert_eq!(sent.segmented, 21);
        b.set_nonblocking(true).unwrap();
        let mut bufs: Vec<Box<[u8]>> = (0..GRO_MESSAGES)
            .map(|_| vec![0; GRO_BUFFER].into_boxed_slice())
            .collect();
        let mut received = Vec::new();
        let (mut got, mut coalesced) = (Vec::new(), 0);
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < payloads.len() && std::time::Instant::now() < give_up {
            match batch.recv_coalesced(b.as_raw_fd(), &mut bufs, &mut received) {
                Ok(n) => {
                    for (buf, message) in bufs.iter().zip(&received).take(n) {
                        assert_eq!(message.from, Some(a.local_addr().unwrap()));
                        assert!(!message.truncated);
                        if message.len > message.segment {
                            coalesced += 1;
                        }
                        got.extend(
                            buf[..message.len]
                                .chunks(message.segment)
                                .map(<[u8]>::to_vec),
                        );
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::yield_now();
                }
                Err(error) => panic!("{error}"),
            }
        }
        assert_eq!(got, payloads);
        assert!(coalesced >= 1, "the run arrived datagram by datagram");
    }

    #[test]
    fn flags_a_datagram_larger_than_its_buffer() {
        let (a, b) = pair();
        a.send_to(&[7; 100], b.local_addr().unwrap()).unwrap();
        b.set_nonblocking(false).unwrap();
        let mut batch = Batch::new();
        let mut bufs = vec![PacketBuf::with_capacity(10)];
        let mut received = Vec::new();
        // Blocking socket, MSG_DONTWAIT: wait until the datagram is there.
        let mut peek = [0u8; 1];
        b.peek(&mut peek).unwrap();
        assert_eq!(
            batch.recv(b.as_raw_fd(), &mut bufs, &mut received).unwrap(),
            1
        );
        assert!(received[0].truncated);
        assert_eq!(bufs[0].len(), 10);
    }

    /// Receives on blocking `socket` until `count` datagrams came, into the
    /// same `bufs` each time (as GRO receives do); returns each datagram's
    /// sender, bytes and whether it was cut.
    fn recv_kept(
        batch: &mut Batch,
        socket: &UdpSocket,
        bufs: &mut [PacketBuf],
        count: usize,
    ) -> Vec<(Option<SocketAddr>, Vec<u8>, bool)> {
        let mut received = Vec::new();
        let mut got = Vec::new();
        let mut peek = [0u8; 1];
        while got.len() < count {
            // Blocking socket, MSG_DONTWAIT: wait until a datagram is there.
            socket.peek(&mut peek).unwrap();
            let n = batch.recv(socket.as_raw_fd(), bufs, &mut received).unwrap();
            for (buf, meta) in bufs.iter().zip(&received).take(n) {
                got.push((meta.from, buf.to_vec(), meta.truncated));
            }
        }
        got
    }

    #[test]
    fn kept_receive_headers_describe_each_receive_alone() {
        // The receive headers are kept between receives and only those the
        // kernel wrote (or whose buffer moved) are reset: what one receive
        // said (a sender's address length, a cut datagram) must not carry
        // over into the next, on another socket of another family too.
        let mut batch = Batch::new();
        let mut bufs: Vec<PacketBuf> = (0..BATCH).map(|_| PacketBuf::with_capacity(200)).collect();
        let (v4_sender, v4) = pair();
        let v6 =
            UdpSocket::bind("[::1]:0").expect("an IPv6 loopback address (::1): enable IPv6 on lo");
        v6.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let v6_sender = UdpSocket::bind("[::1]:0").unwrap();

        v4_sender
            .send_to(&[1; 5], v4.local_addr().unwrap())
            .unwrap();
        assert_eq!(
            recv_kept(&mut batch, &v4, &mut bufs, 1),
            [(Some(v4_sender.local_addr().unwrap()), vec![1; 5], false)]
        );
        // The first header now says a 16-byte IPv4 address came.
        for len in [100, 1, 50] {
            v6_sender
                .send_to(&vec![2; len], v6.local_addr().unwrap())
                .unwrap();
        }
        let from = Some(v6_sender.local_addr().unwrap());
        assert_eq!(
            recv_kept(&mut batch, &v6, &mut bufs, 3),
            [
                (from, vec![2; 100], false),
                (from, vec![2; 1], false),
                (from, vec![2; 50], false)
            ]
        );
        // A cut datagram, then a whole one into the same buffer.
        v4_sender
            .send_to(&[3; 300], v4.local_addr().unwrap())
            .unwrap();
        let got = recv_kept(&mut batch, &v4, &mut bufs, 1);
        assert_eq!((got[0].1.len(), got[0].2), (200, true));
        v4_sender
            .send_to(&[4; 100], v4.local_addr().unwrap())
            .unwrap();
        assert_eq!(
            recv_kept(&mut batch, &v4, &mut bufs, 1),
            [(Some(v4_sender.local_addr().unwrap()), vec![4; 100], false)]
        );
    }
}

/// How the backend is to send a [`QueuedBatch`]'s buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sends {
    /// As `sendmsg`s with these flags (a socket).
    Messages(u32),
    /// As `writev`s (a device).
    Writes,
}

/// Buffers of a queue handed to the backend to send
/// (`Registry::send_messages`), a message each, in order, kept with the
/// buffers until the kernel is done with them.
pub(crate) struct QueuedBatch {
    headers: Vec<libc::mmsghdr>,
    /// One per message, pointed to by its header (kept, never read here).
    _iovecs: Vec<libc::iovec>,
    pub(crate) bufs: Vec<PacketBuf>,
    /// The bytes of each buffer sent (all of it, unless a fault shortened
    /// the last).
    pub(crate) lens: Vec<usize>,
    sends: Sends,
}

// SAFETY: the headers point into `_iovecs`, and those into `bufs`: memory
// the batch owns and moves with it (heap allocations that stay in place).
unsafe impl Send for QueuedBatch {}

impl QueuedBatch {
    /// Takes up to `max` buffers from the front of `queue`; `shorten` may
    /// cut one (the last taken), as a fault would cut a write.
    pub(crate) fn new(
        queue: &mut std::collections::VecDeque<PacketBuf>,
        max: usize,
        sends: Sends,
        mut shorten: impl FnMut(usize) -> usize,
    ) -> Self {
        let mut bufs = Vec::new();
        let mut lens = Vec::new();
        while bufs.len() < max {
            let Some(buf) = queue.pop_front() else {
                break;
            };
            let len = shorten(buf.len());
            let cut = len < buf.len();
            bufs.push(buf);
            lens.push(len);
            if cut {
                break;
            }
        }
        let mut iovecs: Vec<libc::iovec> = bufs
            .iter()
            .zip(&lens)
            .map(|(buf, &len)| libc::iovec {
                iov_base: buf.as_ptr().cast_mut().cast(),
                iov_len: len,
            })
            .collect();
        let headers = iovecs
            .iter_mut()
            .map(|iovec| {
                // SAFETY: all-zero is a valid `mmsghdr` (no name, no control).
                let mut header: libc::mmsghdr = unsafe { mem::zeroed() };
                header.msg_hdr.msg_iov = iovec;
                header.msg_hdr.msg_iovlen = 1;
                header
            })
            .collect();
        QueuedBatch {
            headers,
            _iovecs: iovecs,
            bufs,
            lens,
            sends,
        }
    }
}

/// Puts `bufs` back at the front of `queue`, in their order.
pub(crate) fn requeue(queue: &mut std::collections::VecDeque<PacketBuf>, bufs: Vec<PacketBuf>) {
    for buf in bufs.into_iter().rev() {
        queue.push_front(buf);
    }
}

impl QueuedBatch {
    /// Hands the batch to the backend to send on `fd`
    /// (`Registry::send_messages`); returns how many buffers went, or
    /// `None` when the backend will not take it now, its buffers then back
    /// at the front of `queue`, in order.
    pub(crate) fn hand_over(
        self,
        registry: &mut dyn crate::backend::Registry,
        fd: RawFd,
        queue: &mut std::collections::VecDeque<PacketBuf>,
    ) -> Option<usize> {
        let count = self.bufs.len();
        match registry.send_messages(fd, Box::new(self)) {
            Ok(()) => Some(count),
            Err(batch) => {
                if let Ok(batch) = batch.into_any().downcast::<QueuedBatch>() {
                    requeue(queue, batch.bufs);
                }
                None
            }
        }
    }
}

impl crate::backend::Outgoing for QueuedBatch {
    fn headers(&mut self) -> &mut [libc::mmsghdr] {
        &mut self.headers
    }

    fn flags(&self) -> u32 {
        match self.sends {
            Sends::Messages(flags) => flags,
            Sends::Writes => 0,
        }
    }

    fn writes(&self) -> bool {
        self.sends == Sends::Writes
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}
