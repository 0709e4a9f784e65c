//! Datagrams queued on a UDP or UDP-Lite socket. Dump: each one, with its sender, read without
//! consuming it (MSG_PEEK stepping through the queue with SO_PEEK_OFF, put back after).
//! Restore: each one sent again to the restored socket as a packet from its sender
//! (a raw IPPROTO_RAW socket of the socket's network namespace may name any source),
//! before the filter and the other late options, then counted on arrival.
//!
//! A socket bound to the wildcard address may have received each datagram on any local
//! address: the dump reads each one's destination too (IP_PKTINFO / IPV6_RECVPKTINFO
//! turned on for the peeks and put back: the kernel fills it from the IP header still
//! held with the datagram), and restore sends it to that address, after checking that
//! it is still a local address (a restore must not put packets on a network); datagrams
//! sent to a multicast or broadcast address are not saved (refused). Senders must be of
//! the socket's own family (not v4-mapped). What a datagram carried besides its sender,
//! destination and bytes (TTL, TOS, timestamps) is the re-sent packet's.

use std::os::fd::{AsFd, BorrowedFd};

use stasis_image::model::{Datagram, InetObj};
use stasis_sys::sys;

/// Datagrams saved per socket, and the largest one (UDP over IPv4).
pub const MAX_DATAGRAMS: usize = 4096;
pub const MAX_LEN: usize = 65507;

fn addr_bytes(family: i32, a: &[u8]) -> Option<&[u8]> {
    match family {
        libc::AF_INET if a.len() >= 8 => Some(&a[4..8]),
        libc::AF_INET6 if a.len() >= 24 => Some(&a[8..24]),
        _ => None,
    }
}

/// Whether `local` is the wildcard address (0.0.0.0 or ::).
fn wildcard(family: i32, local: &[u8]) -> bool {
    addr_bytes(family, local).is_some_and(|l| l.iter().all(|b| *b == 0))
}

/// Whether a datagram's destination (4 or 16 bytes) is one address of this host that
/// restore may send to: not unspecified, multicast or (IPv4) broadcast.
fn unicast(family: i32, to: &[u8]) -> bool {
    match (family, to.len()) {
        (libc::AF_INET, 4) => {
            let a = std::net::Ipv4Addr::new(to[0], to[1], to[2], to[3]);
            !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast()
        }
        (libc::AF_INET6, 16) => {
            let a = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(to).unwrap_or_default());
            !a.is_unspecified() && !a.is_multicast() && a.to_ipv4_mapped().is_none()
        }
        _ => false,
    }
}

/// Why the queued datagrams of a socket with local address `local` cannot be saved.
fn unsaveable(family: i32, local: &[u8]) -> Option<String> {
    addr_bytes(family, local)?;
    if super::rawpkt::mapped(local) {
        return Some("bound to a v4-mapped address".into());
    }
    None
}

/// The option that makes recvmsg tell a datagram's destination address.
fn pktinfo_opt(family: i32) -> (i32, i32) {
    match family {
        libc::AF_INET6 => (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
        _ => (libc::IPPROTO_IP, libc::IP_PKTINFO),
    }
}

/// Steps through the queue with MSG_PEEK: (sender, bytes) of each datagram, and with
/// `dest` its destination address (the pktinfo option on for the peeks, put back after).
fn peek_all(fd: BorrowedFd<'_>, family: i32, max: usize, dest: bool) -> std::io::Result<Vec<Datagram>> {
    let old = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let (level, name) = pktinfo_opt(family);
    let old_info = if dest {
        let v = sys::getsockopt_int(fd, level, name)?;
        sys::setsockopt_int(fd, level, name, 1)?;
        Some(v)
    } else {
        None
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let r = loop {
        if out.len() > max {
            break Ok(());
        }
        match sys::recv_with_dest(fd, &mut buf, libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
            Ok((n, from, to)) => out.push(Datagram { from, data: buf[..n.min(buf.len())].to_vec(), to: to.filter(|_| dest).unwrap_or_default() }),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    if let Some(v) = old_info {
        sys::setsockopt_int(fd, level, name, v)?;
    }
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    r.map(|_| out)
}

/// Dump: the queued datagrams, or Err(why not).
pub fn dump(fd: BorrowedFd<'_>, family: i32, local: &[u8]) -> Result<Vec<Datagram>, String> {
    if let Some(why) = unsaveable(family, local) {
        return Err(why);
    }
    let wild = wildcard(family, local);
    let q = peek_all(fd, family, MAX_DATAGRAMS, wild).map_err(|e| format!("reading the queued datagrams: {e}"))?;
    if q.len() > MAX_DATAGRAMS {
        return Err(format!("more than {MAX_DATAGRAMS} datagrams queued"));
    }
    for d in &q {
        if d.data.len() > MAX_LEN || super::rawpkt::mapped(&d.from) || addr_bytes(family, &d.from).is_none() {
            return Err(format!("a datagram of {} bytes from {} (not saved)", d.data.len(), super::fmt_addr(&d.from)));
        }
        if wild && !unicast(family, &d.to) {
            let to = match d.to.len() {
                4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(&d.to[..]).unwrap_or_default()).to_string(),
                16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(&d.to[..]).unwrap_or_default()).to_string(),
                _ => "an unknown address".into(),
            };
            return Err(format!("a datagram from {} sent to {to} (only datagrams sent to one address of this host are saved)", super::fmt_addr(&d.from)));
        }
    }
    tracing::debug!(count = q.len(), "queued datagrams saved");
    Ok(q)
}

/// Validation of a socket's saved datagrams.
pub fn check(o: &InetObj) -> Result<(), String> {
    if o.queued.is_empty() {
        return Ok(());
    }
    if !matches!(o.protocol, libc::IPPROTO_UDP | libc::IPPROTO_UDPLITE) || o.sock_type != libc::SOCK_DGRAM {
        return Err("queued datagrams on a socket that is not UDP or UDP-Lite".into());
    }
    if let Some(why) = unsaveable(o.family, &o.local) {
        return Err(format!("queued datagrams on a socket {why}"));
    }
    if o.local.is_empty() || o.queued.len() > MAX_DATAGRAMS {
        return Err(format!("{} queued datagrams (up to {MAX_DATAGRAMS}, on a bound socket)", o.queued.len()));
    }
    let want = if o.family == libc::AF_INET { 16 } else { 28 };
    let wild = wildcard(o.family, &o.local);
    for d in &o.queued {
        if d.data.len() > MAX_LEN || d.from.len() != want || d.from[0..2] != (o.family as u16).to_ne_bytes() || super::rawpkt::mapped(&d.from) {
            return Err(format!("a queued datagram of {} bytes from a {}-byte address", d.data.len(), d.from.len()));
        }
        if (wild && !unicast(o.family, &d.to)) || (!wild && !d.to.is_empty()) {
            return Err(format!("a queued datagram's destination of {} bytes (one unicast address, only on a wildcard-bound socket)", d.to.len()));
        }
    }
    Ok(())
}

/// The address datagram `d` goes to: its saved destination on a wildcard-bound socket,
/// else the socket's own (sockaddr of the socket's family, port 0).
fn dest_of(family: i32, local: &[u8], d: &Datagram) -> Vec<u8> {
    let mut to = local.to_vec();
    to[2..4].fill(0);
    match family {
        libc::AF_INET if d.to.len() == 4 => to[4..8].copy_from_slice(&d.to),
        libc::AF_INET6 if d.to.len() == 16 => to[8..24].copy_from_slice(&d.to),
        _ => {}
    }
    to
}

/// The IP packet carrying datagram `d` of protocol `proto` (UDP, or UDP-Lite: its
/// checksum covers the whole datagram, coverage field 0) from its sender to `local` (or
/// its saved destination).
fn packet(family: i32, proto: i32, local: &[u8], d: &Datagram) -> Vec<u8> {
    let dst_addr = dest_of(family, local, d);
    let (src, dst) = (addr_bytes(family, &d.from).unwrap_or(&[]), addr_bytes(family, &dst_addr).unwrap_or(&[]));
    let len = (8 + d.data.len()) as u16;
    let mut udp = Vec::with_capacity(len as usize);
    udp.extend_from_slice(&d.from[2..4]);
    udp.extend_from_slice(&local[2..4]);
    let len_or_coverage = if proto == libc::IPPROTO_UDPLITE { 0 } else { len };
    udp.extend_from_slice(&len_or_coverage.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&d.data);
    super::rawpkt::ip_packet(family == libc::AF_INET, proto as u8, src, dst, udp, 6)
}

/// Restore: sends the datagrams of `o` to the restored socket `s` (bound, connected,
/// no filter yet) and waits until all are queued.
pub fn restore(s: BorrowedFd<'_>, o: &InetObj) -> Result<(), String> {
    if o.queued.is_empty() {
        return Ok(());
    }
    let raw = sys::socket(o.family, libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(|e| format!("raw socket for the queued datagrams: {e}"))?;
    for d in &o.queued {
        let to = dest_of(o.family, &o.local, d);
        if !d.to.is_empty() {
            // Only to an address of this host: a socket can bind to it (no
            // IP_FREEBIND). Anything else would leave on a network.
            let probe = sys::socket(o.family, libc::SOCK_DGRAM, libc::IPPROTO_UDP).map_err(|e| format!("socket: {e}"))?;
            sys::sock_addr_op(probe.as_fd(), &to, false)
                .map_err(|e| format!("a queued datagram was sent to {}, which is not an address of this host now: {e}", super::fmt_addr(&to)))?;
        }
        sys::sendto(raw.as_fd(), &packet(o.family, o.protocol, &o.local, d), &to).map_err(|e| format!("sending a queued datagram again: {e}"))?;
    }
    let mut got = 0;
    for _ in 0..200 {
        got = peek_all(s, o.family, MAX_DATAGRAMS, false).map_err(|e| format!("counting the datagrams sent again: {e}"))?.len();
        if got >= o.queued.len() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(format!("{got} of the {} queued datagrams arrived again", o.queued.len()))
}
