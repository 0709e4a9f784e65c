//! Datagrams queued on a UDP socket. Dump: each one, with its sender, read without
//! consuming it (MSG_PEEK stepping through the queue with SO_PEEK_OFF, put back after).
//! Restore: each one sent again to the restored socket as a packet from its sender
//! (a raw IPPROTO_RAW socket of the socket's network namespace may name any source),
//! before the filter and the other late options, then counted on arrival.
//!
//! Only for sockets bound to one address (the datagrams' destination is then known;
//! one bound to the wildcard address could have received them on any of its
//! addresses, which its IP_PKTINFO would tell the program) and senders of the socket's
//! own family (not v4-mapped). What a datagram carried besides its sender and bytes
//! (TTL, TOS, timestamps) is the re-sent packet's.

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

/// Why the queued datagrams of a socket with local address `local` cannot be saved.
fn unsaveable(family: i32, local: &[u8]) -> Option<String> {
    let l = addr_bytes(family, local)?;
    if l.iter().all(|b| *b == 0) {
        return Some("bound to the wildcard address (the datagrams' destination addresses are not known)".into());
    }
    if super::rawpkt::mapped(local) {
        return Some("bound to a v4-mapped address".into());
    }
    None
}

/// Steps through the queue with MSG_PEEK: (sender, bytes) of each datagram.
fn peek_all(fd: BorrowedFd<'_>, max: usize) -> std::io::Result<Vec<Datagram>> {
    let old = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let r = loop {
        if out.len() > max {
            break Ok(());
        }
        match sys::recvfrom(fd, &mut buf, libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
            Ok((n, from)) => out.push(Datagram { from, data: buf[..n.min(buf.len())].to_vec() }),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    r.map(|_| out)
}

/// Dump: the queued datagrams, or Err(why not).
pub fn dump(fd: BorrowedFd<'_>, family: i32, local: &[u8]) -> Result<Vec<Datagram>, String> {
    if let Some(why) = unsaveable(family, local) {
        return Err(why);
    }
    let q = peek_all(fd, MAX_DATAGRAMS).map_err(|e| format!("reading the queued datagrams: {e}"))?;
    if q.len() > MAX_DATAGRAMS {
        return Err(format!("more than {MAX_DATAGRAMS} datagrams queued"));
    }
    for d in &q {
        if d.data.len() > MAX_LEN || super::rawpkt::mapped(&d.from) || addr_bytes(family, &d.from).is_none() {
            return Err(format!("a datagram of {} bytes from {} (not saved)", d.data.len(), super::fmt_addr(&d.from)));
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
    if o.protocol != libc::IPPROTO_UDP || o.sock_type != libc::SOCK_DGRAM {
        return Err("queued datagrams on a socket that is not UDP".into());
    }
    if let Some(why) = unsaveable(o.family, &o.local) {
        return Err(format!("queued datagrams on a socket {why}"));
    }
    if o.local.is_empty() || o.queued.len() > MAX_DATAGRAMS {
        return Err(format!("{} queued datagrams (up to {MAX_DATAGRAMS}, on a bound socket)", o.queued.len()));
    }
    let want = if o.family == libc::AF_INET { 16 } else { 28 };
    for d in &o.queued {
        if d.data.len() > MAX_LEN || d.from.len() != want || d.from[0..2] != (o.family as u16).to_ne_bytes() || super::rawpkt::mapped(&d.from) {
            return Err(format!("a queued datagram of {} bytes from a {}-byte address", d.data.len(), d.from.len()));
        }
    }
    Ok(())
}

/// The IP packet carrying datagram `d` from its sender to `local`.
fn packet(family: i32, local: &[u8], d: &Datagram) -> Vec<u8> {
    let (src, dst) = (addr_bytes(family, &d.from).unwrap_or(&[]), addr_bytes(family, local).unwrap_or(&[]));
    let len = (8 + d.data.len()) as u16;
    let mut udp = Vec::with_capacity(len as usize);
    udp.extend_from_slice(&d.from[2..4]);
    udp.extend_from_slice(&local[2..4]);
    udp.extend_from_slice(&len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&d.data);
    super::rawpkt::ip_packet(family == libc::AF_INET, libc::IPPROTO_UDP as u8, src, dst, udp, 6)
}

/// Restore: sends the datagrams of `o` to the restored socket `s` (bound, connected,
/// no filter yet) and waits until all are queued.
pub fn restore(s: BorrowedFd<'_>, o: &InetObj) -> Result<(), String> {
    if o.queued.is_empty() {
        return Ok(());
    }
    let raw = sys::socket(o.family, libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(|e| format!("raw socket for the queued datagrams: {e}"))?;
    let mut to = o.local.clone();
    to[2..4].fill(0);
    for d in &o.queued {
        sys::sendto(raw.as_fd(), &packet(o.family, &o.local, d), &to).map_err(|e| format!("sending a queued datagram again: {e}"))?;
    }
    let mut got = 0;
    for _ in 0..200 {
        got = peek_all(s, MAX_DATAGRAMS).map_err(|e| format!("counting the datagrams sent again: {e}"))?.len();
        if got >= o.queued.len() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(format!("{got} of the {} queued datagrams arrived again", o.queued.len()))
}
