//! Configuring an interface the way `ifconfig` does: `ioctl`s carrying an
//! `ifreq` (the interface's name and one value) on an `AF_INET` datagram
//! socket. The worker sets the IPv4 address, netmask, MTU and up flag of the
//! TUN/TAP devices it opens through them. The only unsafe code of the TUN
//! path lives here.

use std::fmt;
use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

use super::TunOptions;

/// The longest interface name Linux accepts: `IFNAMSIZ` bytes, the last one
/// the terminating NUL.
pub(crate) const MAX_NAME: usize = libc::IFNAMSIZ - 1;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The netmask of a prefix length: `24` is `255.255.255.0`.
pub(crate) fn netmask(prefix_len: u8) -> io::Result<Ipv4Addr> {
    if prefix_len > 32 {
        return Err(invalid(format!(
            "the prefix length {prefix_len} is above 32, the length of an IPv4 address"
        )));
    }
    // Shifting a u32 by 32 overflows: the empty prefix is its own case.
    let bits = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    Ok(Ipv4Addr::from(bits))
}

/// An `ifreq` naming interface `name`, its value all zeroes.
fn request(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() > MAX_NAME || name.contains('\0') {
        return Err(invalid(format!(
            "`{name}` is not a valid interface name (1 to {MAX_NAME} bytes, no NUL)"
        )));
    }
    // SAFETY: `ifreq` is a C struct of a byte array and a union of integers,
    // socket addresses, byte arrays and a pointer; all zeroes is a valid
    // value of each (the pointer is null, and never used here).
    let mut req: libc::ifreq = unsafe { mem::zeroed() };
    // At most MAX_NAME bytes: the zeroed last byte stays the terminating NUL.
    for (slot, &byte) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *slot = byte as libc::c_char;
    }
    Ok(req)
}

/// `addr` as the `sockaddr` of an `AF_INET` address with port 0. A
/// `sockaddr_in` has the same layout: family, then port and address in
/// network order in the first 6 bytes of `sa_data`, then zeroes. Built
/// field by field, so no cast between the two structs is needed.
fn sockaddr(addr: Ipv4Addr) -> libc::sockaddr {
    let mut data = [0 as libc::c_char; 14];
    for (slot, byte) in data[2..6].iter_mut().zip(addr.octets()) {
        *slot = byte as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data: data,
    }
}

/// Sets on interface `name` what `options` asks for, in this order: the
/// address, its netmask (without it the kernel would keep the one it
/// guessed from the address's class), the MTU, and last the up flag, so
/// that the subnet's route appears with the right prefix. Nothing to set,
/// nothing done. The error names the step that failed.
pub(crate) fn configure(name: &str, options: &TunOptions) -> io::Result<()> {
    // No explicit choice: an address is set to be used, so up with it.
    let up = options.up.or(options.address.map(|_| true));
    if options.address.is_none() && options.mtu.is_none() && up.is_none() {
        return Ok(());
    }
    let interface = Interface::new(name)?;
    if let Some((address, prefix_len)) = options.address {
        let mask = netmask(prefix_len)?;
        interface.set_addr(libc::SIOCSIFADDR, address, "setting the address")?;
        interface.set_addr(libc::SIOCSIFNETMASK, mask, "setting the netmask")?;
    }
    if let Some(mtu) = options.mtu {
        interface.set_mtu(mtu)?;
    }
    if let Some(up) = up {
        interface.set_up(up)?;
    }
    Ok(())
}

/// An interface being configured: its name and the socket its requests go
/// through.
struct Interface<'a> {
    name: &'a str,
    socket: Socket,
}

impl<'a> Interface<'a> {
    fn new(name: &'a str) -> io::Result<Self> {
        request(name)?;
        // Any AF_INET socket will do: the requests name the interface.
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, None)
            .map_err(|error| failed(name, "creating the AF_INET socket for its ioctls", error))?;
        Ok(Interface { name, socket })
    }

    fn set_addr(&self, op: libc::c_ulong, addr: Ipv4Addr, step: &str) -> io::Result<()> {
        let mut req = request(self.name)?;
        // SIOCSIFADDR and SIOCSIFNETMASK both read the union as an address.
        req.ifr_ifru.ifru_addr = sockaddr(addr);
        self.ioctl(op, &mut req)
            .map_err(|error| failed(self.name, format_args!("{step} {addr}"), error))
    }

    fn set_mtu(&self, mtu: u32) -> io::Result<()> {
        let mut req = request(self.name)?;
        req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu)
            .map_err(|_| invalid(format!("the MTU {mtu} does not fit a C int")))?;
        self.ioctl(libc::SIOCSIFMTU, &mut req)
            .map_err(|error| failed(self.name, format_args!("setting the MTU {mtu}"), error))
    }

    /// Sets or clears `IFF_UP`, keeping the other flags: they are read
    /// first, since `SIOCSIFFLAGS` replaces them all. `IFF_RUNNING` is asked
    /// for with `IFF_UP` as is customary; the kernel decides it.
    fn set_up(&self, up: bool) -> io::Result<()> {
        let mut req = request(self.name)?;
        self.ioctl(libc::SIOCGIFFLAGS, &mut req)
            .map_err(|error| failed(self.name, "reading the flags", error))?;
        // SAFETY: every byte of `req` is initialized (zeroed by `request`,
        // then written by the kernel), and any bits are a valid `c_short`.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        // The flags the kernel reports all fit the 16 bits of `ifru_flags`.
        let (up_flag, running) = (
            libc::IFF_UP as libc::c_short,
            libc::IFF_RUNNING as libc::c_short,
        );
        let wanted = if up {
            flags | up_flag | running
        } else {
            flags & !up_flag
        };
        if wanted == flags {
            return Ok(());
        }
        req.ifr_ifru.ifru_flags = wanted;
        let step = if up {
            "bringing it up"
        } else {
            "taking it down"
        };
        self.ioctl(libc::SIOCSIFFLAGS, &mut req)
            .map_err(|error| failed(self.name, step, error))
    }

    /// One `ioctl` on the socket with `req`.
    fn ioctl(&self, op: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
        // SAFETY: the socket is open (owned by `self`), `req` is a valid
        // `ifreq` naming a NUL-terminated interface, borrowed for the whole
        // call, and each request used here reads and writes nothing but that
        // `ifreq`. (`Ioctl` is the request's type in this libc: `c_ulong` on
        // glibc, `c_int` on musl; the SIOC* numbers fit both.)
        let result =
            unsafe { libc::ioctl(self.socket.as_raw_fd(), op as libc::Ioctl, &raw mut *req) };
        if result < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

/// The error of a step of configuring interface `name`: the system's kind,
/// with what was being done in the message.
fn failed(name: &str, step: impl fmt::Display, error: io::Error) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("configuring {name}: {step} failed: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(req: &libc::ifreq) -> Vec<u8> {
        req.ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect()
    }

    #[test]
    fn a_request_carries_the_name_nul_terminated() {
        let req = request("sntun0").unwrap();
        assert_eq!(name_of(&req), b"sntun0");
        let longest = "a".repeat(MAX_NAME);
        let req = request(&longest).unwrap();
        assert_eq!(name_of(&req), longest.as_bytes());
        assert_eq!(req.ifr_name[MAX_NAME], 0);
    }

    #[test]
    fn names_the_kernel_would_not_take_are_refused() {
        for name in [String::new(), "a".repeat(MAX_NAME + 1), "tun\0x".to_owned()] {
            let error = request(&name).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{name:?}");
            assert!(error.to_string().contains("interface name"), "{error}");
        }
        // Refused before any socket is made.
        let error = Interface::new(&"b".repeat(16)).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn prefix_lengths_become_netmasks() {
        assert_eq!(netmask(0).unwrap(), Ipv4Addr::new(0, 0, 0, 0));
        assert_eq!(netmask(1).unwrap(), Ipv4Addr::new(128, 0, 0, 0));
        assert_eq!(netmask(24).unwrap(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(netmask(30).unwrap(), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(netmask(32).unwrap(), Ipv4Addr::new(255, 255, 255, 255));
        let error = netmask(33).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(error.to_string().contains("33"), "{error}");
    }

    #[test]
    fn an_address_is_laid_out_as_a_sockaddr_in() {
        let addr = sockaddr(Ipv4Addr::new(10, 213, 1, 254));
        assert_eq!(i32::from(addr.sa_family), libc::AF_INET);
        let bytes: Vec<u8> = addr.sa_data.iter().map(|&c| c as u8).collect();
        // Port 0, the address in network order, then zeroes.
        assert_eq!(bytes, [0, 0, 10, 213, 1, 254, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn nothing_asked_nothing_done() {
        // No socket, no ioctl: works for any name, without privileges.
        configure("no-such-device", &TunOptions::default()).unwrap();
    }
}
