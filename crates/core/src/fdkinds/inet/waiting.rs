//! TCP connections waiting in a listener's accept queue whose client end is a socket of
//! the tree (a program that connects to itself, a forked child connecting to its
//! parent's listener before the parent accepts).
//!
//! The server end of such a connection is a socket no process holds yet: inet_diag
//! lists it as a connection of the listener's port and address without an inode
//! (ESTABLISHED, or CLOSE_WAIT once the client shut down for writing). Accepting it
//! cannot be undone, so the dump only looks: it refuses (unless `--skip-in-flight`,
//! which leaves the connection out) a server end that holds bytes the client sent
//! (they could only be read after an accept), and a client outside the tree (a forged
//! handshake cannot choose the server's initial sequence number, so that client could
//! not be answered). The kernel shows no accept-queue order: the connections are put
//! in the order of their age (inet_diag's tcpi_last_data_sent: milliseconds since the
//! server end was made, in scheduler ticks), then of their client's port (the kernel's
//! ephemeral ports for one destination go up).
//!
//! Restore makes the listener, then each client in that order: bound to its old address
//! and port (in repair mode, which forces the reuse of the address, then out of it),
//! connected to the listener for real — the kernel's handshake puts the connection in
//! the accept queue, behind the ones before — and shut down for writing again if it had
//! been. The image's network lock lets these packets through: the dump does not lock
//! these connections (`netlock`), and the client's SYN carries the mark that passes the
//! lock's rule for new connections to the listener (`netlock::FROM_PEER_MARK`).

use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};

use stasis_image::model::{InetObj, Object, TcpWaiting};
use stasis_sys::sys;

use super::{fmt_addr, port_of, sockaddr, tcp};
use crate::error::{Error, Result};

/// The most connections of one listener's accept queue saved.
pub const MAX_WAITING: usize = 4096;

/// The address and port of sockaddr `a`, an IPv4-mapped IPv6 address as IPv4 (a
/// dual-stack listener sees an IPv4 client so).
pub fn endpoint(a: &[u8]) -> Option<(IpAddr, u16)> {
    if a.len() >= 24 {
        let ip: [u8; 16] = a[8..24].try_into().ok()?;
        return Some((std::net::Ipv6Addr::from(ip).to_canonical(), port_of(a)));
    }
    if a.len() >= 8 {
        return Some((IpAddr::from(<[u8; 4]>::try_from(&a[4..8]).ok()?), port_of(a)));
    }
    None
}

/// Whether a client connected to `peer` reached listener address `listener` (its IP,
/// or any IP if the listener is bound to the wildcard address; the same port).
fn reaches(peer: &[u8], listener: &[u8]) -> bool {
    match (endpoint(peer), endpoint(listener)) {
        (Some((ip, port)), Some((lip, lport))) => port == lport && (lip.is_unspecified() || ip == lip),
        _ => false,
    }
}

/// Dump side, for a listener on `local` of `family` with `queued` connections waiting
/// (its inet_diag rqueue), `diag` its family's sockets: those connections, oldest
/// first, or why they cannot be saved. `skip`: `--skip-in-flight` leaves out a
/// connection whose server end holds bytes (with a warning) instead of refusing.
pub fn dump(diag: &[sys::InetDiag], family: i32, local: &[u8], queued: u32, skip: bool) -> std::result::Result<Vec<TcpWaiting>, String> {
    let mut conns: Vec<&sys::InetDiag> = diag
        .iter()
        .filter(|d| d.ino == 0 && matches!(d.state, tcp::ESTABLISHED | tcp::CLOSE_WAIT))
        .filter(|d| reaches(&sockaddr(family, d.sport, &d.src), local))
        .collect();
    if conns.len() != queued as usize {
        return Err(format!(
            "listening on {} with {queued} connections waiting to be accepted, but {} sockets without a descriptor on its \
             address (another listener shares the port, or a client connected while they were listed): which wait on \
             this one cannot be told; dump again, or with --skip-in-flight \
             to save the listener with an empty queue",
            fmt_addr(local),
            conns.len()
        ));
    }
    if conns.len() > MAX_WAITING {
        return Err(format!("listening on {} with {} connections waiting to be accepted (at most {MAX_WAITING} are saved)", fmt_addr(local), conns.len()));
    }
    // oldest first; in one tick, by the client's port
    conns.sort_by_key(|d| (std::cmp::Reverse(d.last_data_sent), d.dport));
    let mut out = Vec::new();
    for d in conns {
        let client = sockaddr(family, d.dport, &d.dst);
        // (a FIN received counts one in inet_diag's count, no byte)
        let bytes = d.rqueue.saturating_sub(u32::from(d.state == tcp::CLOSE_WAIT));
        if bytes > 0 {
            let why = format!(
                "listening on {} with a connection from {} waiting to be accepted that holds {bytes} bytes the client sent \
                 (they sit in the server's end, which no process holds before the accept, and a dump cannot accept and \
                 undo it)",
                fmt_addr(local),
                fmt_addr(&client)
            );
            if !skip {
                return Err(format!("{why}; dump again once the server accepted it, or with --skip-in-flight to leave that connection out"));
            }
            tracing::warn!("{why}: left out (--skip-in-flight)");
            continue;
        }
        out.push(TcpWaiting { client, object: 0 });
    }
    Ok(out)
}

/// Dump side, once every fd of the tree is known: each listener's waiting connections
/// get their client socket of the tree, which is saved as waiting on it (its TCP_REPAIR
/// state dropped: restore connects it again). A connection whose client is outside the
/// tree, or whose client's bytes the server end has not acknowledged yet, is refused,
/// or left out with `skip` (`--skip-in-flight`; a client of the tree then stays a
/// connection of its own, whose peer is gone after restore). `fds`: (pid, fd, object
/// id) of every fd, for messages.
pub fn match_clients(objects: &mut [Object], fds: &[(i32, i32, u32)], skip: bool) -> Result<()> {
    let listeners: Vec<usize> = (0..objects.len()).filter(|&i| objects[i].inet().is_some_and(|l| !l.waiting.is_empty())).collect();
    for li in listeners {
        let (lid, lns) = (objects[li].id, objects[li].net_ns);
        let (pid, fd) = fds.iter().find(|(_, _, oid)| *oid == lid).map_or((0, -1), |(p, f, _)| (*p, *f));
        let l = objects[li].inet().cloned().unwrap_or_default();
        let mut kept = Vec::new();
        for w in &l.waiting {
            let client = objects.iter().position(|o| {
                o.net_ns == lns
                    && o.inet().is_some_and(|c| {
                        c.tcp.is_some() && c.accept_on == 0 && endpoint(&c.local) == endpoint(&w.client) && reaches(&c.peer, &l.local)
                    })
            });
            let what = format!("fd {fd} is a TCP socket listening on {} with a connection from {} waiting to be accepted", fmt_addr(&l.local), fmt_addr(&w.client));
            let why = match client.and_then(|ci| objects[ci].inet()) {
                None => Some(format!(
                    "{what} whose client is not a socket of the dumped tree: such a connection cannot be made again (a handshake \
                     forged for it cannot give the server's end the sequence numbers the client knows)"
                )),
                Some(c) => {
                    let t = c.tcp.as_ref().expect("matched with tcp");
                    if !t.send_queue.is_empty() || !t.recv_queue.is_empty() || t.urgent || c.tcp_state != 0 {
                        Some(format!(
                            "{what} whose client has {} bytes the server's end has not acknowledged{}",
                            t.send_queue.len(),
                            if c.tcp_state != 0 { format!(" (client in TCP state {})", tcp::state_name(c.tcp_state as u8)) } else { String::new() }
                        ))
                    } else {
                        None
                    }
                }
            };
            if let Some(why) = why {
                if !skip {
                    return Err(Error::Refused {
                        pid,
                        why: format!("{why}; `--skip-in-flight` saves the listener without it (a killing dump resets it, so its client sees a reset)"),
                    });
                }
                tracing::warn!(pid, fd, "{why}: not saved (--skip-in-flight)");
                continue;
            }
            let ci = client.expect("a client");
            let cid = objects[ci].id;
            if let Some(c) = objects[ci].inet_mut() {
                c.tcp = None;
                c.accept_on = lid;
            }
            kept.push(TcpWaiting { client: w.client.clone(), object: cid });
        }
        if let Some(l) = objects[li].inet_mut() {
            l.waiting = kept;
        }
    }
    Ok(())
}

/// Validation, across objects: a listener's waiting clients are TCP client objects of
/// its network namespace that name it back (`accept_on`), each once, bound to the
/// address the listener saw, connected to the listener's address; at most backlog + 1
/// (what its queue takes: restore's connects would wait otherwise); and every
/// `accept_on` is answered by its listener.
pub fn check_refs(objects: &[Object]) -> std::result::Result<(), String> {
    let by_id: std::collections::HashMap<u32, &Object> = objects.iter().map(|o| (o.id, o)).collect();
    let find = |id: u32| by_id.get(&id).copied();
    for o in objects {
        let Some(i) = o.inet() else { continue };
        if !i.waiting.is_empty() {
            if !i.listening {
                return Err(format!("object {}: {} waiting connections of a socket that does not listen", o.id, i.waiting.len()));
            }
            if i.waiting.len() > MAX_WAITING || i.waiting.len() > i.backlog as usize + 1 {
                return Err(format!("object {}: {} waiting connections of a socket that listens with backlog {} (at most backlog + 1)", o.id, i.waiting.len(), i.backlog));
            }
            let mut seen = std::collections::HashSet::new();
            for w in &i.waiting {
                let c = find(w.object).filter(|c| c.net_ns == o.net_ns && seen.insert(w.object)).and_then(|c| c.inet());
                let ok = c.is_some_and(|c| {
                    c.accept_on == o.id
                        && !c.listening
                        && c.tcp.is_none()
                        && c.tcp_state == 0
                        && port_of(&c.local) != 0
                        && endpoint(&c.local) == endpoint(&w.client)
                        && reaches(&c.peer, &i.local)
                });
                if !ok {
                    return Err(format!("object {}: waiting connection {} names object {}, not a client of this listener's that waits on it", o.id, fmt_addr(&w.client), w.object));
                }
            }
        }
        if i.accept_on != 0 {
            let named = find(i.accept_on).and_then(|l| l.inet()).is_some_and(|l| l.waiting.iter().any(|w| w.object == o.id));
            if !named || i.accept_on == o.id {
                return Err(format!("object {}: waits on object {}, a listener that does not list it", o.id, i.accept_on));
            }
        }
    }
    Ok(())
}

/// Restore side: whether image `m` has clients waiting in a listener's accept queue.
pub fn any(m: &stasis_image::Manifest) -> bool {
    m.objects.iter().any(|o| o.inet().is_some_and(|i| i.accept_on != 0))
}

/// Restore side, in the listener's network namespace: listener `lid` of `objects`,
/// listening, with its waiting clients connected to it again in their order; every
/// socket made, by object id.
pub fn open_queue(objects: &[Object], lid: u32) -> std::result::Result<Vec<(u32, OwnedFd)>, String> {
    let find = |id: u32| objects.iter().find(|o| o.id == id).and_then(|o| o.inet());
    let l = find(lid).ok_or_else(|| format!("no listener object {lid}"))?;
    let mut out = vec![(lid, super::open(l, false)?)];
    for w in &l.waiting {
        let c = find(w.object).ok_or_else(|| format!("no client object {}", w.object))?;
        let s = connect_client(c).map_err(|e| format!("the connection from {} waiting to be accepted on {}: {e}", fmt_addr(&c.local), fmt_addr(&l.local)))?;
        out.push((w.object, s));
    }
    Ok(out)
}

/// How long a restored client's connect may take (the listener is on this host: a
/// handshake that does not complete at once was dropped).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

fn timeval(d: std::time::Duration) -> Vec<u8> {
    let mut v = (d.as_secs() as i64).to_ne_bytes().to_vec();
    v.extend_from_slice(&i64::from(d.subsec_micros()).to_ne_bytes());
    v
}

/// A waiting client: bound to its old address and port, connected to its listener
/// (which listens by now), shut down as it was, with its options.
fn connect_client(o: &InetObj) -> std::io::Result<OwnedFd> {
    use super::options::When;
    let k = super::sock_kind(o);
    let opts = super::saved_options(o);
    let s = sys::socket(o.family, o.sock_type, o.protocol)?;
    let fd = s.as_fd();
    super::options::apply(fd, &opts, &k, When::Early).map_err(std::io::Error::other)?;
    // repair mode forces the reuse of the address (a remainder of the original
    // connection may still hold the port); leaving it clears SO_REUSEADDR: set again
    sys::setsockopt_int(fd, libc::IPPROTO_TCP, crate::tcp_repair::TCP_REPAIR, 1)?;
    let bound = sys::sock_addr_op(fd, &super::bind_addr(fd, o), false);
    sys::setsockopt_int(fd, libc::IPPROTO_TCP, crate::tcp_repair::TCP_REPAIR, crate::tcp_repair::TCP_REPAIR_OFF_NO_WP)?;
    bound.map_err(|e| std::io::Error::other(format!("binding {}: {e}", fmt_addr(&o.local))))?;
    if let Some(r) = opts.iter().find(|s| s.level == libc::SOL_SOCKET && s.name == libc::SO_REUSEADDR) {
        sys::setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &r.value)?;
    }
    // the handshake, marked so that the image's network lock lets it through, and
    // bounded in time (a blocking connect gives up at SO_SNDTIMEO); both options as
    // they were afterwards
    let mark = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK)?;
    let sndtimeo = sys::getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, 16)?;
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK, crate::netlock::FROM_PEER_MARK as i32)?;
    sys::setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &timeval(CONNECT_TIMEOUT))?;
    let connected = sys::sock_addr_op(fd, &o.peer, true).and_then(|()| super::check_local(fd, o));
    let shut = crate::fdkinds::apply_shutdown(fd, o.shutdown);
    sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK, mark)?;
    sys::setsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &sndtimeo)?;
    connected.map_err(|e| match e.raw_os_error() {
        Some(libc::EINPROGRESS) => std::io::Error::other(format!("connecting to {}: no answer within {CONNECT_TIMEOUT:?} (dropped by a firewall or the network lock?)", fmt_addr(&o.peer))),
        _ => std::io::Error::other(format!("connecting to {}: {e}", fmt_addr(&o.peer))),
    })?;
    shut.map_err(|e| std::io::Error::other(format!("shutdown: {e}")))?;
    super::options::apply(fd, &opts, &k, When::Late).map_err(std::io::Error::other)?;
    crate::fdkinds::apply_nonblock(&s, o.flags).map_err(std::io::Error::other)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(ip: [u8; 4], port: u16) -> Vec<u8> {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&ip);
        sockaddr(libc::AF_INET, port, &a)
    }

    fn embryo(state: u8, cport: u16, age: u32, rqueue: u32) -> sys::InetDiag {
        let mut lo = [0u8; 16];
        lo[..4].copy_from_slice(&[127, 0, 0, 1]);
        sys::InetDiag { state, ino: 0, sport: 5000, src: lo, dport: cport, dst: lo, last_data_sent: age, rqueue, ..Default::default() }
    }

    #[test]
    fn waiting_connections_oldest_first_bytes_refused() {
        let l = v4([127, 0, 0, 1], 5000);
        let mut other = embryo(tcp::ESTABLISHED, 9, 0, 0);
        other.ino = 77; // held by a process: not waiting
        let diag = [embryo(tcp::ESTABLISHED, 40002, 8, 0), embryo(tcp::CLOSE_WAIT, 40010, 20, 1), embryo(tcp::ESTABLISHED, 40001, 8, 0), other];
        let ports = |w: Vec<TcpWaiting>| w.iter().map(|w| port_of(&w.client)).collect::<Vec<_>>();
        assert_eq!(ports(dump(&diag, libc::AF_INET, &l, 3, false).unwrap()), [40010, 40001, 40002]);
        // wildcard listener: the same
        assert_eq!(ports(dump(&diag, libc::AF_INET, &v4([0; 4], 5000), 3, false).unwrap()), [40010, 40001, 40002]);
        // another address or port
        assert!(dump(&diag, libc::AF_INET, &v4([127, 0, 0, 2], 5000), 3, false).is_err());
        // a count that does not match (another listener shares the port)
        assert!(dump(&diag, libc::AF_INET, &l, 2, false).is_err());
        // bytes in a server end: refused, or left out with --skip-in-flight
        let bytes = [embryo(tcp::ESTABLISHED, 40001, 8, 0), embryo(tcp::CLOSE_WAIT, 40002, 8, 3)];
        assert!(dump(&bytes, libc::AF_INET, &l, 2, false).unwrap_err().contains("2 bytes"));
        assert_eq!(ports(dump(&bytes, libc::AF_INET, &l, 2, true).unwrap()), [40001]);
    }

    #[test]
    fn clients_of_the_tree_are_matched_and_saved_waiting() {
        use stasis_image::model::{Kind, TcpConn};
        let tcp_obj = |id: u32, i: InetObj| Object { id, kind: Some(Kind::Inet(i)), ..Default::default() };
        let base = InetObj { family: libc::AF_INET, sock_type: libc::SOCK_STREAM, protocol: libc::IPPROTO_TCP, ..Default::default() };
        let objects = |unacked: &[u8]| {
            let w = vec![TcpWaiting { client: v4([127, 0, 0, 1], 40001), object: 0 }, TcpWaiting { client: v4([127, 0, 0, 1], 40000), object: 0 }];
            let l = InetObj { local: v4([0; 4], 5000), listening: true, backlog: 8, waiting: w, ..base.clone() };
            let conn = TcpConn { send_queue: unacked.to_vec(), ..Default::default() };
            let c = InetObj { local: v4([127, 0, 0, 1], 40001), peer: v4([127, 0, 0, 1], 5000), tcp: Some(conn), shutdown: 2, ..base.clone() };
            // a connection of the tree to another port: not a client of the listener
            let other = InetObj { local: v4([127, 0, 0, 1], 40000), peer: v4([127, 0, 0, 1], 6000), tcp: Some(TcpConn::default()), ..base.clone() };
            vec![tcp_obj(1, l), tcp_obj(2, c), tcp_obj(3, other)]
        };
        let fds = [(100, 4, 1), (100, 5, 2), (100, 6, 3)];
        // 40000's client is not ours: refused, naming the listener's fd
        let e = match_clients(&mut objects(b""), &fds, false).unwrap_err().to_string();
        assert!(e.contains("fd 4 ") && e.contains("127.0.0.1:40000") && e.contains("not a socket of the dumped tree"), "{e}");
        // --skip-in-flight: left out; ours saved waiting on the listener
        let mut o = objects(b"");
        match_clients(&mut o, &fds, true).unwrap();
        let l = o[0].inet().unwrap();
        assert_eq!(l.waiting.len(), 1);
        assert_eq!((port_of(&l.waiting[0].client), l.waiting[0].object), (40001, 2));
        let c = o[1].inet().unwrap();
        assert!(c.tcp.is_none() && c.accept_on == 1 && c.shutdown == 2);
        assert!(o[2].inet().unwrap().tcp.is_some() && o[2].inet().unwrap().accept_on == 0);
        assert_eq!(check_refs(&o), Ok(()));
        // a client whose bytes the server end has not acknowledged: refused, or left
        // out (it stays a connection of its own)
        let e = match_clients(&mut objects(b"abc"), &fds, false).unwrap_err().to_string();
        assert!(e.contains("fd 4 ") && e.contains("has 3 bytes the server's end has not acknowledged"), "{e}");
        let mut o = objects(b"abc");
        match_clients(&mut o, &fds, true).unwrap();
        assert!(o[0].inet().unwrap().waiting.is_empty());
        assert!(o[1].inet().unwrap().tcp.is_some() && o[1].inet().unwrap().accept_on == 0);
    }

    #[test]
    fn mapped_clients_reach_dual_stack_listeners() {
        let mut m = [0u8; 16];
        m[10..12].copy_from_slice(&[0xff, 0xff]);
        m[12..].copy_from_slice(&[127, 0, 0, 1]);
        let mapped = sockaddr(libc::AF_INET6, 7000, &m);
        assert_eq!(endpoint(&mapped), endpoint(&v4([127, 0, 0, 1], 7000)));
        assert!(reaches(&v4([127, 0, 0, 1], 5000), &sockaddr(libc::AF_INET6, 5000, &[0; 16])));
        assert!(!reaches(&v4([127, 0, 0, 1], 5001), &sockaddr(libc::AF_INET6, 5000, &[0; 16])));
    }
}
