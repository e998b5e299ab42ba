//! Batched datagram system calls: `recvmmsg` and `sendmmsg`, one call for up
//! to [`BATCH`] datagrams. The only unsafe code of the UDP path lives here.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::ptr;

use socket2::{SockAddr, SockAddrStorage};

use crate::buf::PacketBuf;

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;

/// What one received datagram was.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) from: Option<SocketAddr>,
    /// The kernel cut the datagram to fit the buffer (`MSG_TRUNC`).
    pub(crate) truncated: bool,
}

/// Scratch space for [`BATCH`]-datagram system calls, reused across calls.
pub(crate) struct Batch {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    /// Where the kernel writes the senders of received datagrams.
    sources: Vec<libc::sockaddr_storage>,
    /// Destinations of datagrams to send.
    destinations: Vec<SockAddr>,
}

// SAFETY: the raw pointers inside `headers` and `iovecs` are only set and
// used within one call of `recv`/`send`, which borrow everything they point
// into; between calls they dangle unused.
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
        Batch {
            headers: vec![header; BATCH],
            iovecs: vec![iovec; BATCH],
            sources: vec![storage; BATCH],
            destinations: (0..BATCH).map(|_| empty_address()).collect(),
        }
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
        let count = bufs.len().min(BATCH);
        for (index, buf) in bufs.iter_mut().take(count).enumerate() {
            let area = buf.receive_area();
            self.iovecs[index] = libc::iovec {
                iov_base: area.as_mut_ptr().cast(),
                iov_len: area.len(),
            };
            let header = &mut self.headers[index];
            // SAFETY: see `new`; every field is set below or left zero.
            header.msg_hdr = unsafe { MaybeUninit::zeroed().assume_init() };
            header.msg_hdr.msg_name = (&raw mut self.sources[index]).cast();
            header.msg_hdr.msg_namelen =
                mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            header.msg_hdr.msg_iov = &mut self.iovecs[index];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_len = 0;
        }
        // SAFETY: `headers[..count]` point into `iovecs`, `sources` and the
        // buffers' receive areas, all alive and exclusively borrowed for this
        // call; each iovec's length is its area's length.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        received.clear();
        for (index, (header, buf)) in self
            .headers
            .iter()
            .zip(bufs.iter_mut())
            .take(got)
            .enumerate()
        {
            buf.set_len(header.msg_len as usize);
            let namelen = header.msg_hdr.msg_namelen;
            let mut storage = SockAddrStorage::zeroed();
            // SAFETY: `SockAddrStorage` is a transparent `sockaddr_storage`,
            // and the kernel wrote a socket address of `namelen` bytes into
            // `sources[index]`.
            let from = unsafe {
                *storage.view_as::<libc::sockaddr_storage>() = self.sources[index];
                SockAddr::new(storage, namelen)
            }
            .as_socket();
            received.push(Received {
                from,
                truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            });
        }
        Ok(got)
    }

    /// Sends up to [`BATCH`] datagrams (`(destination, payload)`) on the
    /// non-blocking socket `fd`. Returns how many the kernel took, from the
    /// first; an error is the first datagram's (the rest were not tried).
    pub(crate) fn send<'a>(
        &mut self,
        fd: RawFd,
        datagrams: impl Iterator<Item = (&'a SocketAddr, &'a [u8])>,
    ) -> io::Result<usize> {
        let mut count = 0;
        for (index, (to, payload)) in datagrams.take(BATCH).enumerate() {
            self.destinations[index] = SockAddr::from(*to);
            self.iovecs[index] = libc::iovec {
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: payload.len(),
            };
            let header = &mut self.headers[index];
            // SAFETY: see `new`.
            header.msg_hdr = unsafe { MaybeUninit::zeroed().assume_init() };
            // The kernel only reads the destination.
            header.msg_hdr.msg_name = self.destinations[index].as_ptr().cast_mut().cast();
            header.msg_hdr.msg_namelen = self.destinations[index].len();
            header.msg_hdr.msg_iov = &mut self.iovecs[index];
            header.msg_hdr.msg_iovlen = 1;
            header.msg_len = 0;
            count = index + 1;
        }
        if count == 0 {
            return Ok(0);
        }
        // SAFETY: `headers[..count]` point into `destinations`, `iovecs` and the
        // payloads, which outlive this call; the kernel only reads payloads.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                self.headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
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

    #[test]
    fn sends_and_receives_batches() {
        let (a, b) = pair();
        let mut batch = Batch::new();
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|n| vec![n; usize::from(n) + 1]).collect();
        let mut sent = 0;
        while sent < payloads.len() {
            sent += batch
                .send(
                    a.as_raw_fd(),
                    payloads[sent..].iter().map(|p| (&to, p.as_slice())),
                )
                .unwrap();
        }
        assert_eq!(sent, 40);
        b.set_nonblocking(true).unwrap();
        let mut bufs: Vec<PacketBuf> = (0..BATCH).map(|_| PacketBuf::new()).collect();
        let mut received = Vec::new();
        let mut got = Vec::new();
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < 40 && std::time::Instant::now() < give_up {
            match batch.recv(b.as_raw_fd(), &mut bufs, &mut received) {
                Ok(n) => {
                    for (buf, meta) in bufs.iter().zip(&received).take(n) {
                        assert_eq!(meta.from, Some(a.local_addr().unwrap()));
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
        assert_eq!(got, payloads);
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
}
