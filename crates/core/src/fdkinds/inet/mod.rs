//! IPv4 and IPv6 sockets that can be recreated from their addresses, options and TCP
//! state: TCP listeners (with the connections of the tree's clients waiting in their
//! accept queue, `waiting.rs`; others only with `--skip-in-flight`), idle
//! TCP sockets, TCP connections being established (SYN_SENT: restore connects again),
//! established TCP connections (TCP_REPAIR, `tcp.rs`; one shut down for reading stays
//! so), UDP and UDP-Lite sockets, ICMP "ping" sockets and raw sockets, bound and/or
//! connected, with nothing queued. Socket options come from ONE table (`options.rs`).
//!
//! Connections shut down for writing (FIN_WAIT1, FIN_WAIT2: our FIN sent) are restored
//! with their FIN: it takes one sequence number after the send queue, so the send queue
//! is restored from one number earlier and shutdown(SHUT_WR) in repair mode queues the
//! FIN as already sent (the retransmission timer sends it again until the peer acks it,
//! as it would have). A connection that received the peer's FIN (CLOSE_WAIT) is restored
//! without it (TCP_REPAIR can only queue bytes), then the FIN is sent to it again as a
//! packet from the peer on a raw socket (`tcp::from_peer`) once repair mode is off.
//! Both FINs, ours not acknowledged: CLOSING (ours was first) is restored as FIN_WAIT1
//! and gets the peer's FIN the same way; LAST_ACK (the peer's was first) is restored as
//! CLOSE_WAIT, gets the peer's FIN, then shuts down for writing, which sends ours (in
//! the other order it would become CLOSING and end in a TIME_WAIT holding the port).
//! Urgent data in a receive queue: the bytes before the urgent byte are queued with
//! TCP_REPAIR, the rest come as segments from the peer with the urgent pointer (`tcp.rs`).
//! UDP sockets bound to one address keep their queued datagrams (`udpq.rs`).
//! Refused: SYN_RECV, datagrams queued on other datagram sockets (a wildcard-bound UDP socket: their
//! destination address is unknown), listeners with connections waiting that hold
//! bytes or whose client is outside the tree (unless `--skip-in-flight`).
//!
//! Restore creates the socket, sets the "early" options (SO_REUSEADDR, IPV6_V6ONLY,
//! SO_BINDTODEVICE...), binds the saved address in the restorer (the original process is
//! gone, so the port is free again), listens with the saved backlog or connects, and
//! sets the "late" options (buffer sizes, filters, corking). `restore --tcp-close`
//! brings connections back closed (see `closed`).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use stasis_image::model::{InetObj, Kind, Object, SockOpt};
use stasis_sys::sys;

use crate::error::{Error, Result};

pub mod mcast;
pub mod options;
mod rawpkt;
pub mod tcp;
pub mod udpq;
pub mod waiting;

pub use tcp::{finish_restore, send_from_peer};

use options::{SockKind, When};

/// The (type, protocol) pairs handled, for `family`.
pub fn supported(family: i32, ty: i32, proto: i32) -> bool {
    let v4 = family == libc::AF_INET;
    if !(v4 || family == libc::AF_INET6) {
        return false;
    }
    match ty {
        libc::SOCK_STREAM => proto == libc::IPPROTO_TCP,
        libc::SOCK_DGRAM => {
            proto == libc::IPPROTO_UDP
                || proto == libc::IPPROTO_UDPLITE
                || (v4 && proto == libc::IPPROTO_ICMP)
                || (!v4 && proto == libc::IPPROTO_ICMPV6)
        }
        libc::SOCK_RAW => (0..=255).contains(&proto),
        _ => false,
    }
}

/// What kind of socket `o` is, for the option table.
pub fn sock_kind(o: &InetObj) -> SockKind {
    SockKind {
        family: o.family,
        ty: o.sock_type,
        protocol: o.protocol,
        connected: o.tcp.is_some() || (!o.peer.is_empty() && o.tcp_state != u32::from(tcp::SYN_SENT)),
    }
}

/// The options to restore: `sockopts`, or the retired int triples of an old image.
pub fn saved_options(o: &InetObj) -> Vec<SockOpt> {
    if o.sockopts.is_empty() {
        options::from_triples(&o.options)
    } else {
        o.sockopts.clone()
    }
}

pub(crate) fn port_of(addr: &[u8]) -> u16 {
    if addr.len() >= 4 {
        u16::from_be_bytes([addr[2], addr[3]])
    } else {
        0
    }
}

/// The address of a sockaddr as inet_diag gives it (16 bytes; IPv4: the first 4), and
/// whether it is a loopback address (127/8, ::1, ::ffff:127/104).
fn diag_addr(a: &[u8]) -> Option<([u8; 16], bool)> {
    let mut out = [0u8; 16];
    if a.len() >= 8 && a[0..2] == (libc::AF_INET as u16).to_ne_bytes() {
        out[..4].copy_from_slice(&a[4..8]);
        return Some((out, a[4] == 127));
    }
    if a.len() >= 24 {
        out.copy_from_slice(&a[8..24]);
        let ip = std::net::Ipv6Addr::from(out);
        return Some((out, ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v| v.is_loopback())));
    }
    None
}

/// Restore (before anything is made): the image's TCP connections whose peer is on this
/// host — a loopback address — and not in the image, while no socket of that peer is
/// there any more but a TIME_WAIT or a closed one (after a --leave-running dump the
/// original's end was closed when it was killed, and its peers closed theirs): one
/// warning names them. Restored, they would retransmit until they time out.
pub fn warn_gone_peers(m: &stasis_image::Manifest) {
    let conns: Vec<&InetObj> = m.objects.iter().filter(|o| o.net_ns == 0).filter_map(|o| o.inet()).filter(|i| i.tcp.is_some()).collect();
    let ours: std::collections::HashSet<&[u8]> = conns.iter().map(|i| i.local.as_slice()).collect();
    let mut tables: std::collections::HashMap<i32, Vec<sys::InetDiag>> = std::collections::HashMap::new();
    let mut gone = Vec::new();
    for c in conns.iter().filter(|c| !ours.contains(c.peer.as_slice())) {
        let (Some((peer, true)), Some((local, _))) = (diag_addr(&c.peer), diag_addr(&c.local)) else { continue };
        let table = tables.entry(c.family).or_insert_with(|| sys::inet_diag(c.family, libc::IPPROTO_TCP as u8).unwrap_or_default());
        let alive = table.iter().any(|d| {
            d.src == peer && d.sport == port_of(&c.peer) && d.dst == local && d.dport == port_of(&c.local) && !matches!(d.state, tcp::TIME_WAIT | tcp::CLOSE)
        });
        if !alive {
            gone.push(format!("{} -> {}", fmt_addr(&c.local), fmt_addr(&c.peer)));
        }
    }
    if !gone.is_empty() {
        tracing::warn!(
            "{} restored connection(s) have their peer on this host gone (closed, or in TIME_WAIT): {}; they will retransmit until they time out (restore with --tcp-close to have them closed)",
            gone.len(),
            gone.join(", ")
        );
    }
}

/// A raw sockaddr_in / sockaddr_in6 as "1.2.3.4:80" / "[::1]:80" ("-" if empty).
pub fn fmt_addr(a: &[u8]) -> String {
    if a.len() >= 8 && a[0..2] == (libc::AF_INET as u16).to_ne_bytes() {
        return format!("{}:{}", std::net::Ipv4Addr::new(a[4], a[5], a[6], a[7]), port_of(a));
    }
    if a.len() >= 24 {
        let ip: [u8; 16] = a[8..24].try_into().unwrap();
        return format!("[{}]:{}", std::net::Ipv6Addr::from(ip), port_of(a));
    }
    "-".into()
}

/// The sockaddr of an address and port as inet_diag reports them.
fn sockaddr(family: i32, port: u16, addr: &[u8; 16]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&(family as u16).to_ne_bytes());
    a.extend_from_slice(&port.to_be_bytes());
    if family == libc::AF_INET {
        a.extend_from_slice(&addr[..4]);
        a.resize(16, 0);
    } else {
        a.extend_from_slice(&[0; 4]); // flowinfo
        a.extend_from_slice(addr);
        a.extend_from_slice(&[0; 4]); // scope id
    }
    a
}

/// A sockaddr that names something to bind to: a port, or (raw sockets, which have no
/// ports of their own: getsockname shows the protocol) an address.
fn bound(a: &[u8], raw: bool) -> bool {
    if a.len() < 8 {
        return false;
    }
    let addr = if a.len() >= 24 { &a[8..24] } else { &a[4..8] };
    (!raw && port_of(a) != 0) || addr.iter().any(|b| *b != 0)
}

/// The address to bind a connected socket to before connecting it again. Binding an
/// IPv6 socket to a specific address that is not v4-mapped sets IPV6_V6ONLY, which
/// connect's automatic bind does not: a socket that has such a local address with
/// IPV6_V6ONLY off was bound by connect, and is bound to the wildcard address with its
/// port (connect then picks the same source address, `check_local`).
fn bind_addr(fd: std::os::fd::BorrowedFd<'_>, o: &InetObj) -> Vec<u8> {
    let l = &o.local;
    if o.family != libc::AF_INET6 || l.len() < 24 || !bound(l, false) {
        return l.clone();
    }
    let addr = &l[8..24];
    let mapped = addr[..10].iter().all(|b| *b == 0) && addr[10] == 0xff && addr[11] == 0xff;
    let any = addr.iter().all(|b| *b == 0);
    if mapped || any || sys::getsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY).unwrap_or(1) != 0 {
        return l.clone();
    }
    let mut w = l.clone();
    w[8..24].fill(0);
    w[24..].fill(0); // scope id
    w
}

/// After a connect that picked the source address itself: it must be the saved one.
fn check_local(fd: std::os::fd::BorrowedFd<'_>, o: &InetObj) -> std::io::Result<()> {
    let now = sys::sock_name(fd, false)?;
    if now.len() >= 24 && o.local.len() >= 24 && now[2..24] != o.local[2..24] {
        return Err(std::io::Error::other(format!("the source address is {}, not {}", fmt_addr(&now), fmt_addr(&o.local))));
    }
    Ok(())
}

/// Datagrams waiting to be read on a non-TCP socket: a 1-byte MSG_PEEK from the start
/// of the queue (a program's SO_PEEK_OFF is set to 0 for it and put back; FIONREAD would
/// miss a first datagram of 0 bytes, and ping sockets have no FIONREAD).
/// Why the queue of a ping or raw socket is not saved, naming its first datagram: their
/// recvmsg ignores the peek offset (SO_PEEK_OFF: EOPNOTSUPP) and MSG_PEEK shows only the
/// first datagram, so the others cannot be read without consuming them (which a dump
/// that fails or leaves the process running must not do).
fn unreadable_queue(fd: std::os::fd::BorrowedFd<'_>, raw: bool) -> String {
    // (a whole buffer: MSG_TRUNC does not give a ping socket's full length)
    let mut b = vec![0u8; 1 << 16];
    let first = match sys::recv_with_dest(fd, &mut b, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok((n, from, _)) => format!("the first is {n} bytes from {}", fmt_addr(&from)),
        Err(e) => format!("the first could not be peeked at: {e}"),
    };
    let kind = if raw { "raw" } else { "ping (ICMP datagram)" };
    format!(
        "({first}): a {kind} socket's queue is not saved: MSG_PEEK shows only its first datagram and SO_PEEK_OFF is not supported, \
         so the others cannot be read without consuming them"
    )
}

fn has_queued(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<bool> {
    let off = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF).ok().filter(|o| *o > 0);
    if off.is_some() {
        sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    }
    let mut b = [0u8; 1];
    let r = match sys::recv(fd, &mut b, libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(false),
        Err(e) => Err(e),
    };
    if let Some(o) = off {
        sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, o)?;
    }
    r
}

/// Dump side. `what` is the socket's description ("a TCP socket") for refusals;
/// `skip_in_flight`: a listener with connections waiting is saved with an empty queue.
pub fn dump(pid: i32, fd: i32, ino: u64, flags: u32, dup: &OwnedFd, what: &str, skip_in_flight: bool) -> Result<Object> {
    let refuse = |why: String| Error::Unsupported { pid, what: format!("fd {fd} is {what} {why}") };
    let sys_err = |op: &str, err: std::io::Error| Error::Sys { pid, what: format!("{op} of fd {fd}"), err };
    let geti = |level, opt| sys::getsockopt_int(dup.as_fd(), level, opt);
    let family = geti(libc::SOL_SOCKET, libc::SO_DOMAIN).map_err(|e| sys_err("SO_DOMAIN", e))?;
    let ty = geti(libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| sys_err("SO_TYPE", e))?;
    let proto = geti(libc::SOL_SOCKET, libc::SO_PROTOCOL).map_err(|e| sys_err("SO_PROTOCOL", e))?;
    if !supported(family, ty, proto) {
        return Err(refuse(format!(
            "(type {ty}, protocol {proto}: TCP, UDP, UDP-Lite, ICMP ping and raw IP sockets are handled)"
        )));
    }
    if let Some(why) = super::unkept_flags(flags) {
        return Err(refuse(why));
    }
    let local = sys::sock_name(dup.as_fd(), false).map_err(|e| sys_err("getsockname", e))?;
    let peer = sys::sock_name(dup.as_fd(), true).map_err(|e| sys_err("getpeername", e))?;
    let mut o = InetObj {
        family,
        sock_type: ty,
        protocol: proto,
        flags: flags & libc::O_NONBLOCK as u32,
        ..Default::default()
    };
    let raw = ty == libc::SOCK_RAW;
    // Options are read before TCP_REPAIR (repair mode changes SO_REUSEADDR).
    let options_of = |o: &InetObj| -> Result<Vec<SockOpt>> {
        let fresh = sys::socket(family, ty, proto)
            .or_else(|_| sys::socket(family, libc::SOCK_DGRAM, 0))
            .map_err(|e| sys_err("a new socket to compare options with", e))?;
        options::dump(dup.as_fd(), fresh.as_fd(), &sock_kind(o)).map_err(refuse)
    };
    let mut keep_local = bound(&local, raw);
    if proto == libc::IPPROTO_TCP && !raw {
        let diag = sys::inet_diag(family, libc::IPPROTO_TCP as u8).map_err(|e| sys_err("NETLINK_SOCK_DIAG (tcp)", e))?;
        let d = diag.iter().find(|d| u64::from(d.ino) == ino);
        let state = d.map(|d| d.state).unwrap_or(tcp::CLOSE);
        let ends = |remote: &str| format!("{} -> {remote}", fmt_addr(&local));
        if let Some(d) = d.filter(|d| d.md5 || d.ulp) {
            let what = if d.md5 { "TCP_MD5SIG keys" } else { "an upper layer protocol (TCP_ULP, e.g. kernel TLS)" };
            return Err(refuse(format!("({}) with {what}, which are not saved", fmt_addr(&local))));
        }
        if geti(libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(0) == 1 {
            let d = d.ok_or_else(|| refuse("(a listener the kernel's socket table does not list)".into()))?;
            if d.state != tcp::LISTEN {
                return Err(refuse(format!("in TCP state {} on {}", tcp::state_name(d.state), fmt_addr(&local))));
            }
            if d.rqueue > 0 {
                // (their clients are found among the tree's sockets later: waiting::match_clients)
                match waiting::dump(&diag, family, &local, d.rqueue, skip_in_flight) {
                    Ok(w) => o.waiting = w,
                    Err(why) if !skip_in_flight => return Err(refuse(why)),
                    Err(why) => tracing::warn!(pid, fd, queued = d.rqueue, "{why}: --skip-in-flight: saved with an empty queue"),
                }
            }
            o.listening = true;
            o.backlog = d.wqueue;
            keep_local = true;
            // (with SO_REUSEPORT, others' connections may share the port)
            if geti(libc::SOL_SOCKET, libc::SO_REUSEPORT).unwrap_or(1) == 0 {
                o.ending = endings(&diag, family, &local);
            }
        } else {
            match (state, d) {
                (tcp::ESTABLISHED | tcp::FIN_WAIT1 | tcp::FIN_WAIT2 | tcp::CLOSE_WAIT | tcp::LAST_ACK | tcp::CLOSING, _)
                    if !peer.is_empty() =>
                {
                    // sk_shutdown: 1 = shut down for reading, 2 = for writing (our FIN
                    // is sent: FIN_WAIT1 until the peer acknowledges it, then FIN_WAIT2;
                    // LAST_ACK and CLOSING: both FINs, ours not acknowledged).
                    let shut = d.map(|d| d.shutdown).unwrap_or(0) & 3;
                    let fin_sent = matches!(state, tcp::FIN_WAIT1 | tcp::FIN_WAIT2 | tcp::LAST_ACK | tcp::CLOSING);
                    if fin_sent && shut & 2 == 0 {
                        return Err(refuse(format!("in TCP state {} ({}) without SEND_SHUTDOWN", tcp::state_name(state), ends(&fmt_addr(&peer)))));
                    }
                    o.peer = peer;
                    o.sockopts = options_of(&o)?;
                    let unread = || -> std::io::Result<u32> {
                        let all = sys::inet_diag(family, libc::IPPROTO_TCP as u8)?;
                        all.iter().find(|d| u64::from(d.ino) == ino).map(|d| d.rqueue).ok_or_else(|| std::io::Error::other("the socket left the kernel's table"))
                    };
                    let fin_received = matches!(state, tcp::CLOSE_WAIT | tcp::LAST_ACK | tcp::CLOSING);
                    let c = tcp::dump(dup, &unread, shut & 2 != 0, fin_received).map_err(|e| match e.kind() {
                        std::io::ErrorKind::InvalidData => refuse(format!("({}) with {e}", ends(&fmt_addr(&o.peer)))),
                        _ => sys_err("TCP_REPAIR", e),
                    })?;
                    o.tcp = Some(c);
                    o.shutdown = u32::from(shut);
                    if fin_received {
                        // (RCV_SHUTDOWN comes with the FIN)
                        o.tcp_state = u32::from(state);
                        o.shutdown &= !1;
                    }
                    keep_local = true;
                }
                (tcp::SYN_SENT, Some(d)) => {
                    o.tcp_state = u32::from(tcp::SYN_SENT);
                    o.peer = sockaddr(family, d.dport, &d.dst);
                }
                (tcp::CLOSE, d) => {
                    // closed after a connection (or a reset): shut down both ways, which
                    // recv (end of file) and poll (POLLHUP|POLLRDHUP) show; the kernel's
                    // table does not list it once unbound, poll tells RCV_SHUTDOWN
                    let rdhup = sys::poll_revents(dup.as_fd(), libc::POLLRDHUP).map_err(|e| sys_err("poll", e))? & libc::POLLRDHUP != 0;
                    o.shutdown = match d {
                        Some(d) => u32::from(d.shutdown & 3),
                        None if rdhup => 3,
                        None => 0,
                    };
                }
                (s, _) => {
                    let remote = d.map(|d| fmt_addr(&sockaddr(family, d.dport, &d.dst))).unwrap_or_else(|| fmt_addr(&peer));
                    return Err(refuse(format!(
                        "in TCP state {} ({}): only LISTEN, SYN_SENT, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, \
                         LAST_ACK, CLOSING and unconnected TCP sockets are saved",
                        tcp::state_name(s),
                        ends(&remote)
                    )));
                }
            }
        }
    } else {
        if has_queued(dup.as_fd()).map_err(|e| sys_err("FIONREAD", e))? {
            let why = if (proto == libc::IPPROTO_UDP || proto == libc::IPPROTO_UDPLITE) && !raw {
                match udpq::dump(dup.as_fd(), family, &local) {
                    Ok(q) => {
                        o.queued = q;
                        None
                    }
                    Err(why) => Some(why),
                }
            } else {
                Some(unreadable_queue(dup.as_fd(), raw))
            };
            if let Some(why) = why {
                return Err(refuse(format!("({} -> {}) with datagrams queued for reading: {why}", fmt_addr(&local), fmt_addr(&peer))));
            }
        }
        o.peer = peer;
        o.mcast = mcast::dump(dup.as_fd(), family).map_err(|why| refuse(format!("({}): {why}", fmt_addr(&local))))?;
    }
    if keep_local {
        o.local = local;
    }
    if o.tcp.is_none() {
        o.sockopts = options_of(&o)?;
    }
    Ok(Object { kind: Some(Kind::Inet(o)), ..Default::default() })
}

/// The most connections of a listener's port saved as `ending`.
pub const MAX_ENDING: usize = 4096;

/// The IP address bytes of sockaddr `a` (16 of a sockaddr_in6, 4 of a sockaddr_in,
/// none of anything shorter).
fn ip_of(a: &[u8]) -> &[u8] {
    match a.len() {
        n if n >= 24 => &a[8..24],
        n if n >= 8 => &a[4..8],
        _ => &[],
    }
}

/// Dump side, for a listener bound to `local` (without SO_REUSEPORT, so every other
/// socket of its port came from it): the connections of its port that the program
/// closed and that are not over — TIME_WAIT, or FIN_WAIT1, FIN_WAIT2, CLOSING, LAST_ACK
/// without an fd (inode 0) — on its address (any, if it listens on the wildcard), with
/// their cookies. Once the tree is killed they are the image's own; a restore may
/// remove those still in TIME_WAIT (`bind_again`).
fn endings(diag: &[sys::InetDiag], family: i32, local: &[u8]) -> Vec<stasis_image::model::TcpEnding> {
    let (port, ip) = (port_of(local), ip_of(local));
    let wild = ip.iter().all(|b| *b == 0);
    diag.iter()
        .filter(|d| d.ino == 0 && d.sport == port && (wild || d.src[..ip.len()] == *ip))
        .filter(|d| matches!(d.state, tcp::TIME_WAIT | tcp::FIN_WAIT1 | tcp::FIN_WAIT2 | tcp::CLOSING | tcp::LAST_ACK))
        .take(MAX_ENDING)
        .map(|d| stasis_image::model::TcpEnding { local: sockaddr(family, d.sport, &d.src), peer: sockaddr(family, d.dport, &d.dst), cookie: d.cookie })
        .collect()
}

/// Whether TCP socket `d` of `family`, as inet_diag lists it, is one of listener `o`'s
/// `ending`: same family, both ends and cookie (unique for the boot).
fn is_ending(o: &InetObj, family: i32, d: &sys::InetDiag) -> bool {
    family == o.family
        && o.ending.iter().any(|e| e.cookie == d.cookie && e.local == sockaddr(family, d.sport, &d.src) && e.peer == sockaddr(family, d.dport, &d.dst))
}

/// bind(2) of a recreated socket. A TCP port may still have connections of the original
/// process in TIME_WAIT (it closed them first); unless those had SO_REUSEADDR the kernel
/// refuses the bind (and a listen: forcing the bind in repair mode does not carry over
/// to listen) until they expire (60 s). Those the dump saw on a listener's port
/// (`ending`: the program's own, its tree killed since) are removed with SOCK_DESTROY,
/// in this network namespace only, only if nothing but TIME_WAITs holds the port, and
/// only if they are still the same sockets (both ends and cookie); then the bind is
/// tried again. Any other TIME_WAIT (another
/// program's, or one made after the dump) is left alone: the error then says so.
fn bind_again(s: &OwnedFd, o: &InetObj, addr: &[u8]) -> std::io::Result<()> {
    let r = sys::sock_addr_op(s.as_fd(), addr, false);
    let tcp = o.protocol == libc::IPPROTO_TCP && o.sock_type == libc::SOCK_STREAM;
    let Err(e) = r else { return Ok(()) };
    if !tcp || e.raw_os_error() != Some(libc::EADDRINUSE) {
        return Err(e);
    }
    let port = port_of(addr);
    let mut on_port = Vec::new();
    for fam in [libc::AF_INET, libc::AF_INET6] {
        on_port.extend(sys::inet_diag(fam, libc::IPPROTO_TCP as u8).unwrap_or_default().into_iter().filter(|d| d.sport == port).map(|d| (fam, d)));
    }
    // only when nothing but TIME_WAITs holds the port (not while the original, say,
    // still listens on it)
    let only_time_wait = on_port.iter().all(|(_, d)| d.state == tcp::TIME_WAIT);
    let mut states = Vec::new();
    let mut removed = 0;
    for (fam, d) in on_port {
        if only_time_wait && is_ending(o, fam, &d) {
            match sys::netsock::tcp_destroy(fam, &d) {
                Ok(()) => {
                    removed += 1;
                    continue;
                }
                Err(e) => tracing::debug!("SOCK_DESTROY of the TIME_WAIT {} -> {}: {e}", fmt_addr(&sockaddr(fam, d.sport, &d.src)), fmt_addr(&sockaddr(fam, d.dport, &d.dst))),
            }
        }
        states.push(d.state);
    }
    if removed > 0 {
        tracing::info!(removed, "port {port}: removed the original's connections in TIME_WAIT that the dump had seen");
        if sys::sock_addr_op(s.as_fd(), addr, false).is_ok() {
            return Ok(());
        }
    }
    if !states.is_empty() && states.iter().all(|s| *s == tcp::TIME_WAIT) {
        return Err(std::io::Error::other(format!(
            "{e}: {} earlier connections of port {port} are in TIME_WAIT (they expire within 60 s)",
            states.len()
        )));
    }
    Err(e)
}

/// `restore --tcp-close`: the connection comes back closed, like one the peer closed
/// while the process was away: bound to its old local address if that is free (else
/// unbound), never connected, shut down both ways. read returns 0 (end of file), write
/// fails with EPIPE (and SIGPIPE), poll reports POLLHUP, getpeername ENOTCONN.
fn closed(s: &OwnedFd, o: &InetObj) {
    if bound(&o.local, false) {
        if let Err(e) = bind_again(s, o, &o.local) {
            tracing::info!("--tcp-close: {} stays unbound: {e}", fmt_addr(&o.local));
        }
    }
    // An unconnected TCP socket answers ENOTCONN but takes the shutdown bits.
    let _ = sys::shutdown(s.as_fd(), libc::SHUT_RDWR);
}

/// Restore side: the recreated socket. `tcp_close`: connections (established or being
/// established) come back closed.
pub fn open(o: &InetObj, tcp_close: bool) -> std::result::Result<OwnedFd, String> {
    let k = sock_kind(o);
    let opts = saved_options(o);
    let s = sys::socket(o.family, o.sock_type, o.protocol).map_err(|e| format!("socket: {e}"))?;
    options::apply(s.as_fd(), &opts, &k, When::Early)?;
    let late = |s: &OwnedFd| options::apply(s.as_fd(), &opts, &k, When::Late);
    let connection = o.tcp.is_some() || o.tcp_state == u32::from(tcp::SYN_SENT) || o.accept_on != 0;
    if connection && tcp_close {
        closed(&s, o);
        late(&s)?;
        super::apply_nonblock(&s, o.flags)?;
        return Ok(s);
    }
    if let Some(c) = &o.tcp {
        tcp::restore(&s, o, c).map_err(|e| format!("TCP_REPAIR of the connection {} -> {}: {e}", fmt_addr(&o.local), fmt_addr(&o.peer)))?;
        late(&s)?;
        super::apply_nonblock(&s, o.flags)?;
        let reuse = opts.iter().find(|s| s.level == libc::SOL_SOCKET && s.name == libc::SO_REUSEADDR).map(|s| s.value.clone());
        let state = o.tcp_state as u8;
        // made here: in the socket's network namespace
        let from_peer = tcp::from_peer(o, c, state).map_err(|e| e.to_string())?;
        tcp::enable_later(tcp::ToEnable { sock: s.try_clone().map_err(|e| e.to_string())?, shutdown: o.shutdown, reuse, from_peer });
        return Ok(s);
    }
    // a TCP socket closed after a connection: its port was given back when it closed
    // (getsockname still shows it), so it comes back on it only if that is free (a
    // TIME_WAIT of that very connection may hold it), as with --tcp-close
    let finished = o.shutdown != 0 && o.tcp.is_none() && o.accept_on == 0 && !o.listening;
    if !o.local.is_empty() {
        let local = if o.peer.is_empty() { o.local.clone() } else { bind_addr(s.as_fd(), o) };
        match bind_again(&s, o, &local) {
            Err(e) if finished => tracing::info!("a closed connection's socket stays unbound: {} is taken: {e}", fmt_addr(&o.local)),
            r => r.map_err(|e| format!("binding {} again: {e}", fmt_addr(&o.local)))?,
        }
    }
    if o.listening {
        sys::listen(s.as_fd(), o.backlog as i32).map_err(|e| format!("listen: {e}"))?;
    } else if o.tcp_state == u32::from(tcp::SYN_SENT) {
        // Connect again without waiting: the handshake goes on while the process runs,
        // which sees the connect complete (or fail) as it would have.
        sys::fcntl(s.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK as i64).map_err(|e| format!("O_NONBLOCK: {e}"))?;
        match sys::sock_addr_op(s.as_fd(), &o.peer, true) {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Ok(()) => {}
            Err(e) => return Err(format!("connecting to {} again: {e}", fmt_addr(&o.peer))),
        }
        sys::fcntl(s.as_raw_fd(), libc::F_SETFL, i64::from(o.flags & libc::O_NONBLOCK as u32)).map_err(|e| format!("F_SETFL: {e}"))?;
    } else if !o.peer.is_empty() {
        sys::sock_addr_op(s.as_fd(), &o.peer, true).map_err(|e| format!("connect to {}: {e}", fmt_addr(&o.peer)))?;
        check_local(s.as_fd(), o).map_err(|e| format!("connect to {}: {e}", fmt_addr(&o.peer)))?;
    }
    if finished {
        // an unconnected socket answers ENOTCONN but takes the shutdown bits (recv: end
        // of file)
        let _ = super::apply_shutdown(&s, o.shutdown);
    }
    mcast::restore(s.as_fd(), o.family, &o.mcast)?;
    udpq::restore(s.as_fd(), o)?;
    late(&s)?;
    super::apply_nonblock(&s, o.flags)?;
    Ok(s)
}

/// Validation of an image's socket (restore runs as root: nothing but the kinds,
/// addresses and options this module creates).
pub fn check(o: &InetObj) -> std::result::Result<(), String> {
    if !supported(o.family, o.sock_type, o.protocol) {
        return Err(format!("family {}, type {}, protocol {}: not a socket kind stasis restores", o.family, o.sock_type, o.protocol));
    }
    let want_len = if o.family == libc::AF_INET { 16 } else { 28 };
    for (name, a) in [("local", &o.local), ("peer", &o.peer)] {
        if !a.is_empty() && (a.len() != want_len || a[0..2] != (o.family as u16).to_ne_bytes()) {
            return Err(format!("{name} address of {} bytes not of family {}", a.len(), o.family));
        }
    }
    let tcp = o.protocol == libc::IPPROTO_TCP && o.sock_type == libc::SOCK_STREAM;
    if o.flags & !(libc::O_NONBLOCK as u32) != 0 {
        return Err(format!("file flags {:#x} (only O_NONBLOCK)", o.flags));
    }
    if o.listening && (!tcp || o.backlog > 1 << 20 || o.tcp.is_some() || !o.peer.is_empty()) {
        return Err("a listener that is not an unconnected TCP socket with a backlog up to 2^20".into());
    }
    if !matches!(o.tcp_state, 0 | 2 | 8 | 9 | 11)
        || (o.tcp_state == 2 && (!tcp || o.peer.is_empty() || o.tcp.is_some()))
        || (o.tcp_state == 8 && (o.tcp.is_none() || o.shutdown != 0))
        || (matches!(o.tcp_state, 9 | 11) && (o.tcp.is_none() || o.shutdown != 2))
    {
        return Err(format!(
            "TCP state {} (only SYN_SENT with a peer address, CLOSE_WAIT of a connection not shut down, or LAST_ACK and \
             CLOSING of one shut down for writing, are saved as a state)",
            o.tcp_state
        ));
    }
    // (an unconnected TCP socket closed after a connection keeps its shutdown bits)
    let closed_tcp = tcp && o.tcp.is_none() && o.tcp_state == 0 && !o.listening && o.peer.is_empty();
    if o.shutdown & !3 != 0 || (o.shutdown != 0 && o.tcp.is_none() && o.accept_on == 0 && !closed_tcp) {
        return Err(format!("shutdown bits {:#x} (only 1 and 2, of a connection or a closed TCP socket)", o.shutdown));
    }
    if o.accept_on != 0 && (!tcp || o.listening || o.tcp.is_some() || o.tcp_state != 0 || o.peer.is_empty() || !bound(&o.local, false)) {
        return Err("a client waiting to be accepted that is not a bound, connected TCP socket without TCP_REPAIR state".into());
    }
    if !o.waiting.is_empty() && !o.listening {
        return Err(format!("{} waiting connections of a socket that does not listen", o.waiting.len()));
    }
    if let Some(c) = &o.tcp {
        use tcp::MAX_QUEUE;
        if !tcp || o.local.is_empty() || o.peer.is_empty() {
            return Err("a TCP connection without both addresses".into());
        }
        if c.send_queue.len() > MAX_QUEUE || c.recv_queue.len() > MAX_QUEUE || !matches!(c.window.len(), 0 | 5) {
            return Err("TCP connection queues over 1 GiB or a window of the wrong size".into());
        }
        if c.snd_wscale > 14 || c.rcv_wscale > 14 || c.mss > 65535 || c.options & !7 != 0 {
            return Err("TCP connection options out of range".into());
        }
        if (c.urgent && c.urgent_at as usize >= c.recv_queue.len()) || (!c.urgent && (c.urgent_at != 0 || c.urgent_read)) {
            return Err(format!("an urgent byte at offset {} of a receive queue of {} bytes", c.urgent_at, c.recv_queue.len()));
        }
        let inline = saved_options(o).iter().any(|s| s.level == libc::SOL_SOCKET && s.name == libc::SO_OOBINLINE && s.value.iter().any(|b| *b != 0));
        if c.urgent_read && inline {
            return Err("an urgent byte read with MSG_OOB on a socket with SO_OOBINLINE".into());
        }
    }
    if !o.options.len().is_multiple_of(3) || (!o.sockopts.is_empty() && !o.options.is_empty()) {
        return Err("malformed retired option triples".into());
    }
    if o.ending.len() > MAX_ENDING || (!o.ending.is_empty() && !o.listening) {
        return Err(format!("{} ending connections (at most {MAX_ENDING}, only of a listener)", o.ending.len()));
    }
    let wild = ip_of(&o.local).iter().all(|b| *b == 0);
    for e in &o.ending {
        let fam = (o.family as u16).to_ne_bytes();
        let ok = [&e.local, &e.peer].iter().all(|a| a.len() == want_len && a[0..2] == fam)
            && port_of(&e.local) == port_of(&o.local)
            && (wild || ip_of(&e.local) == ip_of(&o.local));
        if !ok {
            return Err(format!("an ending connection {} -> {} not of the listener's family, port and address", fmt_addr(&e.local), fmt_addr(&e.peer)));
        }
    }
    if tcp && !o.mcast.is_empty() {
        return Err("multicast memberships of a TCP socket".into());
    }
    mcast::check(&o.mcast, o.family)?;
    udpq::check(o)?;
    let k = sock_kind(o);
    let opts = saved_options(o);
    options::check_all(&opts, &k)
}

/// "TCP socket", "UDP (IPv6) socket", "raw IP socket (protocol 1)"... for messages.
pub fn describe(o: &InetObj) -> String {
    let v = if o.family == libc::AF_INET6 { " (IPv6)" } else { "" };
    match (o.sock_type, o.protocol) {
        (libc::SOCK_RAW, p) => format!("raw IP{v} socket (protocol {p})"),
        (_, libc::IPPROTO_TCP) => format!("TCP{v} socket"),
        (_, libc::IPPROTO_UDP) => format!("UDP{v} socket"),
        (_, libc::IPPROTO_UDPLITE) => format!("UDP-Lite{v} socket"),
        (_, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) => format!("ICMP{v} ping socket"),
        (t, p) => format!("IP{v} socket (type {t}, protocol {p})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(port: u16) -> Vec<u8> {
        sockaddr(libc::AF_INET, port, &[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    fn udp() -> InetObj {
        InetObj { family: libc::AF_INET, sock_type: libc::SOCK_DGRAM, protocol: libc::IPPROTO_UDP, local: v4(5000), ..Default::default() }
    }

    fn opt(level: i32, name: i32, value: &[u8]) -> SockOpt {
        SockOpt { level, name, value: value.to_vec() }
    }

    #[test]
    fn check_accepts_table_options_of_the_right_size() {
        let mut o = udp();
        o.sockopts = vec![
            opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32.to_le_bytes()),
            opt(libc::SOL_SOCKET, libc::SO_BINDTODEVICE, b"lo"),
            opt(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &[6, 0, 0, 0, 0xff, 0xff, 0, 0]),
            opt(libc::IPPROTO_IP, libc::IP_MULTICAST_TTL, &7i32.to_le_bytes()),
        ];
        assert_eq!(check(&o), Ok(()));
        // the retired triples of old images
        let mut old = udp();
        old.options = vec![libc::SOL_SOCKET, libc::SO_REUSEADDR, 1, libc::SOL_SOCKET, libc::SO_BROADCAST, 0];
        assert_eq!(check(&old), Ok(()));
    }

    #[test]
    fn queued_datagram_destinations_only_on_wildcard_sockets_and_unicast() {
        use stasis_image::model::Datagram;
        let with = |local: Vec<u8>, to: &[u8]| {
            let mut o = udp();
            o.local = local;
            o.queued = vec![Datagram { from: v4(7000), data: b"x".to_vec(), to: to.to_vec() }];
            check(&o)
        };
        let wild = sockaddr(libc::AF_INET, 5000, &[0; 16]);
        assert_eq!(with(wild.clone(), &[127, 0, 0, 2]), Ok(()));
        assert_eq!(with(v4(5000), &[]), Ok(()));
        for to in [&[][..], &[0, 0, 0, 0], &[224, 0, 0, 1], &[255, 255, 255, 255], &[127, 0, 0]] {
            with(wild.clone(), to).expect_err("a wildcard socket's datagram without one unicast destination");
        }
        with(v4(5000), &[127, 0, 0, 1]).expect_err("a destination on a socket bound to one address");
    }

    #[test]
    fn check_refuses_what_restore_would_not_create() {
        let bad = |f: &dyn Fn(&mut InetObj)| {
            let mut o = udp();
            f(&mut o);
            check(&o).expect_err("accepted")
        };
        // an option outside the table, or not for this socket
        bad(&|o| o.sockopts = vec![opt(libc::SOL_SOCKET, 1 /* SO_DEBUG */, &1i32.to_le_bytes())]);
        bad(&|o| o.sockopts = vec![opt(libc::IPPROTO_TCP, libc::TCP_NODELAY, &1i32.to_le_bytes())]);
        // sizes
        bad(&|o| o.sockopts = vec![opt(libc::SOL_SOCKET, libc::SO_REUSEADDR, &[1])]);
        bad(&|o| o.sockopts = vec![opt(libc::SOL_SOCKET, libc::SO_BINDTODEVICE, &[b'x'; 16])]);
        bad(&|o| o.sockopts = vec![opt(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &[0; 12])]);
        bad(&|o| o.sockopts = vec![opt(libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &vec![0; 8 * 4097])]);
        // twice
        bad(&|o| o.sockopts = vec![opt(libc::SOL_SOCKET, libc::SO_MARK, &[0; 4]), opt(libc::SOL_SOCKET, libc::SO_MARK, &[0; 4])]);
        bad(&|o| o.options = vec![1, 2]);
        // kinds, addresses, states
        bad(&|o| o.sock_type = libc::SOCK_SEQPACKET);
        bad(&|o| o.family = libc::AF_UNIX);
        bad(&|o| o.local = vec![2, 0, 1]);
        bad(&|o| o.peer = sockaddr(libc::AF_INET6, 1, &[0; 16]));
        bad(&|o| o.listening = true);
        bad(&|o| o.tcp_state = 2);
        bad(&|o| o.tcp_state = 8);
        bad(&|o| o.tcp_state = 9);
        bad(&|o| o.tcp_state = 10);
        bad(&|o| o.tcp_state = 11);
        bad(&|o| {
            // LAST_ACK of a connection not shut down for writing (only) by its owner
            (o.sock_type, o.protocol) = (libc::SOCK_STREAM, libc::IPPROTO_TCP);
            o.tcp_state = 9;
            o.tcp = Some(Default::default());
            o.peer = o.local.clone();
            o.shutdown = 3;
        });
        bad(&|o| o.shutdown = 1);
        bad(&|o| o.shutdown = 4);
        bad(&|o| o.flags = libc::O_ASYNC as u32);
        bad(&|o| o.tcp = Some(Default::default()));
        // queued datagrams: sender of another family, on a wildcard-bound socket
        let dg = |from: Vec<u8>| stasis_image::model::Datagram { from, data: b"x".to_vec(), ..Default::default() };
        bad(&|o| o.queued = vec![dg(sockaddr(libc::AF_INET6, 1, &[0; 16]))]);
        bad(&|o| {
            o.local = sockaddr(libc::AF_INET, 5000, &[0; 16]);
            o.queued = vec![dg(v4(7))];
        });
        let mut q = udp();
        q.queued = vec![dg(v4(7)), dg(v4(8))];
        assert_eq!(check(&q), Ok(()));
        // multicast: a unicast group, a source of the wrong size, include with no source
        let g = |group: &[u8], include: bool, sources: Vec<Vec<u8>>| stasis_image::model::McastGroup { ifindex: 1, group: group.to_vec(), include, sources };
        bad(&|o| o.mcast = vec![g(&[10, 0, 0, 1], false, vec![])]);
        bad(&|o| o.mcast = vec![g(&[239, 0, 0, 1], false, vec![vec![1; 16]])]);
        bad(&|o| o.mcast = vec![g(&[239, 0, 0, 1], true, vec![])]);
        let mut ok = udp();
        ok.mcast = vec![g(&[239, 0, 0, 1], true, vec![vec![127, 0, 0, 2]])];
        assert_eq!(check(&ok), Ok(()));
    }

    #[test]
    fn urgent_byte_inside_the_receive_queue() {
        let conn = |urgent: bool, at: u32, read: bool| {
            let mut o = udp();
            (o.sock_type, o.protocol, o.peer) = (libc::SOCK_STREAM, libc::IPPROTO_TCP, v4(6000));
            let c = stasis_image::model::TcpConn { recv_queue: b"abcde".to_vec(), urgent, urgent_at: at, urgent_read: read, ..Default::default() };
            o.tcp = Some(c);
            o
        };
        assert_eq!(check(&conn(true, 2, false)), Ok(()));
        assert_eq!(check(&conn(true, 0, true)), Ok(()));
        assert_eq!(check(&conn(true, 4, false)), Ok(()));
        check(&conn(true, 5, false)).expect_err("an urgent byte past the queue");
        check(&conn(true, u32::MAX, false)).expect_err("an urgent byte past the queue");
        check(&conn(false, 2, false)).expect_err("an offset without an urgent byte");
        check(&conn(false, 0, true)).expect_err("read without an urgent byte");
        let mut inline = conn(true, 2, true);
        inline.sockopts = vec![opt(libc::SOL_SOCKET, libc::SO_OOBINLINE, &1i32.to_le_bytes())];
        check(&inline).expect_err("read with MSG_OOB on an SO_OOBINLINE socket");
        inline.tcp.as_mut().unwrap().urgent_read = false;
        assert_eq!(check(&inline), Ok(()));
    }

    fn diag(state: u8, ino: u32, sport: u16, src: [u8; 4], cookie: u64) -> sys::InetDiag {
        let mut s16 = [0u8; 16];
        s16[..4].copy_from_slice(&src);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[127, 0, 0, 1]);
        sys::InetDiag { state, ino, sport, src: s16, dport: 7000, dst, cookie, ..Default::default() }
    }

    #[test]
    fn endings_are_the_listeners_closed_connections() {
        let lo = [127, 0, 0, 1];
        let all = [
            diag(tcp::TIME_WAIT, 0, 5000, lo, 1),
            diag(tcp::FIN_WAIT2, 0, 5000, lo, 2),
            diag(tcp::ESTABLISHED, 9, 5000, lo, 3),   // held by an fd
            diag(tcp::TIME_WAIT, 0, 5001, lo, 4),     // another port
            diag(tcp::TIME_WAIT, 0, 5000, [127, 0, 0, 2], 5), // another address
        ];
        let cookies = |local: Vec<u8>| endings(&all, libc::AF_INET, &local).iter().map(|e| e.cookie).collect::<Vec<_>>();
        assert_eq!(cookies(v4(5000)), [1, 2]);
        assert_eq!(cookies(sockaddr(libc::AF_INET, 5000, &[0; 16])), [1, 2, 5]);
        let mut l = udp();
        (l.sock_type, l.protocol, l.listening) = (libc::SOCK_STREAM, libc::IPPROTO_TCP, true);
        l.ending = endings(&all, libc::AF_INET, &v4(5000));
        assert_eq!(check(&l), Ok(()));
        assert!(is_ending(&l, libc::AF_INET, &all[0]));
        assert!(!is_ending(&l, libc::AF_INET6, &all[0]), "another family");
        assert!(!is_ending(&l, libc::AF_INET, &diag(tcp::TIME_WAIT, 0, 5000, lo, 9)), "another cookie");
        let mut moved = all[0].clone();
        moved.dport = 7001;
        assert!(!is_ending(&l, libc::AF_INET, &moved), "another peer");
        // validation: only a listener's, on its port and address, bounded
        let bad = |f: &dyn Fn(&mut InetObj)| {
            let mut o = l.clone();
            f(&mut o);
            check(&o).expect_err("accepted")
        };
        bad(&|o| o.listening = false);
        bad(&|o| o.ending[0].local = v4(5001));
        bad(&|o| o.ending[0].local = sockaddr(libc::AF_INET, 5000, &[127, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        bad(&|o| o.ending[0].peer = vec![2, 0]);
        bad(&|o| o.ending[0].peer = sockaddr(libc::AF_INET6, 1, &[0; 16]));
        bad(&|o| o.ending = vec![o.ending[0].clone(); MAX_ENDING + 1]);
        bad(&|o| o.local = Vec::new());
        assert_eq!(ip_of(&[2, 0, 1]), b"");
    }

    #[test]
    fn addresses_print() {
        assert_eq!(fmt_addr(&v4(80)), "127.0.0.1:80");
        let mut a6 = [0u8; 16];
        a6[15] = 1;
        assert_eq!(fmt_addr(&sockaddr(libc::AF_INET6, 443, &a6)), "[::1]:443");
        assert_eq!(tcp::state_name(8), "CLOSE_WAIT");
    }
}
