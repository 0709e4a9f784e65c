//! TCP and UDP sockets that can be recreated from their addresses and options: TCP
//! listeners with an empty accept queue (a server waiting for clients), bound or unbound
//! TCP sockets that are neither listening nor connected, and UDP sockets (bound and/or
//! connected) with nothing queued. Established TCP connections (they need TCP_REPAIR),
//! listeners with connections waiting and UDP sockets with queued datagrams are refused.
//!
//! Restore binds the saved address in the restorer (the original process is gone, so a
//! listener's port is free again), sets the saved options first (SO_REUSEADDR,
//! IPV6_V6ONLY... before bind), listens with the saved backlog or connects.

use std::os::fd::{AsFd, OwnedFd};

use std::sync::Mutex;

use stasis_image::model::{InetObj, Kind, Object, TcpConn};
use stasis_sys::sys;

use crate::error::{Error, Result};
use crate::tcp_repair::Repair;

const TCP_LISTEN: u8 = 10;
const TCP_ESTABLISHED: u8 = 1;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
fn tcp_dump(dup: &OwnedFd) -> std::io::Result<TcpConn> {
    let fd = dup.as_fd();
    crate::tcp_repair::enter_for_dump(fd)?;
    let mut c = TcpConn::default();
    for (q, len) in [(TCP_RECV_QUEUE, sys::inq(fd)?), (TCP_SEND_QUEUE, sys::outq(fd)?)] {
        sys::setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, q)?;
        let seq = sys::getsockopt_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ)? as u32;
        let mut data = vec![0u8; len.max(0) as usize];
        if !data.is_empty() {
            let n = sys::recv(fd, &mut data, libc::MSG_PEEK | libc::MSG_DONTWAIT)?;
            data.truncate(n);
        }
        // The kernel reports rcv_nxt / write_seq, the sequence number after the queued
        // bytes; restore queues them again, which advances it: save the start.
        let start = seq.wrapping_sub(data.len() as u32);
        if q == TCP_RECV_QUEUE {
            (c.recv_seq, c.recv_queue) = (start, data);
        } else {
            (c.send_seq, c.send_queue) = (start, data);
        }
    }
    let info = sys::getsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 104)?;
    c.options = info.get(5).copied().unwrap_or(0) as u32;
    let ws = info.get(6).copied().unwrap_or(0);
    (c.snd_wscale, c.rcv_wscale) = ((ws & 0xf) as u32, (ws >> 4) as u32);
    c.mss = sys::getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG)? as u32;
    c.timestamp = sys::getsockopt_int(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP)? as u32;
    let w = sys::getsockopt_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, 20)?;
    c.window = w.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
    tracing::debug!(send_seq = c.send_seq, recv_seq = c.recv_seq, sendq = c.send_queue.len(), recvq = c.recv_queue.len(), mss = c.mss, options = c.options, "TCP connection saved");
    Ok(c)
}

fn tcp_restore(s: &OwnedFd, o: &InetObj, c: &TcpConn) -> std::io::Result<Repair> {
    let fd = s.as_fd();
    let tcp = libc::IPPROTO_TCP;
    let repair = Repair::enter(fd)?;
    for (q, seq) in [(TCP_SEND_QUEUE, c.send_seq), (TCP_RECV_QUEUE, c.recv_seq)] {
        sys::setsockopt_int(fd, tcp, TCP_REPAIR_QUEUE, q)?;
        sys::setsockopt_int(fd, tcp, TCP_QUEUE_SEQ, seq as i32)?;
    }
    sys::sock_addr_op(fd, &o.local, false)?; // repair mode forces address reuse
    sys::sock_addr_op(fd, &o.peer, true)?; // no handshake in repair mode
    let mut opts: Vec<u8> = Vec::new();
    let mut opt = |code: u32, val: u32| {
        opts.extend_from_slice(&code.to_le_bytes());
        opts.extend_from_slice(&val.to_le_bytes());
    };
    opt(2, c.mss); // TCPOPT_MAXSEG
    if c.options & 4 != 0 {
        opt(3, c.snd_wscale | (c.rcv_wscale << 16)); // TCPOPT_WINDOW
    }
    if c.options & 2 != 0 {
        opt(4, 0); // TCPOPT_SACK_PERM
    }
    if c.options & 1 != 0 {
        opt(8, 0); // TCPOPT_TIMESTAMP
    }
    sys::setsockopt_bytes(fd, tcp, TCP_REPAIR_OPTIONS, &opts)?;
    if c.options & 1 != 0 {
        sys::setsockopt_int(fd, tcp, TCP_TIMESTAMP, c.timestamp as i32)?;
    }
    for (q, data) in [(TCP_RECV_QUEUE, &c.recv_queue), (TCP_SEND_QUEUE, &c.send_queue)] {
        sys::setsockopt_int(fd, tcp, TCP_REPAIR_QUEUE, q)?;
        let mut off = 0;
        while off < data.len() {
            off += sys::send(fd, &data[off..], 0)?;
        }
    }
    if c.window.len() == 5 {
        let w: Vec<u8> = c.window.iter().flat_map(|v| v.to_le_bytes()).collect();
        sys::setsockopt_bytes(fd, tcp, TCP_REPAIR_WINDOW, &w)?;
    }
    Ok(repair)
}

/// Sockets restored in repair mode, switched to normal operation once every socket of
/// the image exists (so no probe reaches a peer that is not back yet).
static TO_ENABLE: Mutex<Vec<Repair>> = Mutex::new(Vec::new());

/// Restore side, after every socket was created: leave repair mode.
pub fn finish_restore() -> std::io::Result<()> {
    for s in std::mem::take(&mut *TO_ENABLE.lock().unwrap_or_else(|e| e.into_inner())) {
        s.leave(true)?;
    }
    Ok(())
}

/// Options saved and restored (level, option), in the order they are set.
fn options_for(family: i32, proto: i32) -> Vec<(i32, i32)> {
    let mut v = vec![
        (libc::SOL_SOCKET, libc::SO_REUSEADDR),
        (libc::SOL_SOCKET, libc::SO_REUSEPORT),
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
        (libc::SOL_SOCKET, libc::SO_BROADCAST),
        (libc::SOL_SOCKET, libc::SO_PRIORITY),
        (libc::SOL_SOCKET, libc::SO_OOBINLINE),
    ];
    if family == libc::AF_INET6 {
        v.push((libc::IPPROTO_IPV6, libc::IPV6_V6ONLY));
    }
    if proto == libc::IPPROTO_TCP {
        v.push((libc::IPPROTO_TCP, libc::TCP_NODELAY));
    }
    v
}

fn port_of(addr: &[u8]) -> u16 {
    if addr.len() >= 4 {
        u16::from_be_bytes([addr[2], addr[3]])
    } else {
        0
    }
}

/// Dump side. `what` is the socket's description ("a TCP socket") for refusals.
pub fn dump(pid: i32, fd: i32, ino: u64, flags: u32, dup: &OwnedFd, what: &str) -> Result<Object> {
    let refuse = |why: String| Error::Unsupported { pid, what: format!("fd {fd} is {what} {why}") };
    let sys_err = |op: &str, err: std::io::Error| Error::Sys { pid, what: format!("{op} of fd {fd}"), err };
    let geti = |level, opt| sys::getsockopt_int(dup.as_fd(), level, opt);
    let family = geti(libc::SOL_SOCKET, libc::SO_DOMAIN).map_err(|e| sys_err("SO_DOMAIN", e))?;
    let ty = geti(libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| sys_err("SO_TYPE", e))?;
    let proto = geti(libc::SOL_SOCKET, libc::SO_PROTOCOL).map_err(|e| sys_err("SO_PROTOCOL", e))?;
    if !(proto == libc::IPPROTO_TCP && ty == libc::SOCK_STREAM || proto == libc::IPPROTO_UDP && ty == libc::SOCK_DGRAM) {
        return Err(refuse("(only TCP and UDP sockets are handled)".into()));
    }
    if flags & !((libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_LARGEFILE) as u32) != 0 {
        return Err(refuse(format!("with file flags {} (only O_NONBLOCK is kept)", super::open_flags(flags))));
    }
    let local = sys::sock_name(dup.as_fd(), false).map_err(|e| sys_err("getsockname", e))?;
    let peer = sys::sock_name(dup.as_fd(), true).map_err(|e| sys_err("getpeername", e))?;
    let mut listening = false;
    let mut backlog = 0;
    if proto == libc::IPPROTO_TCP {
        let diag = sys::inet_diag(family, libc::IPPROTO_TCP as u8).map_err(|e| sys_err("NETLINK_SOCK_DIAG (tcp)", e))?;
        let d = diag.iter().find(|d| d.ino as u64 == ino);
        if geti(libc::SOL_SOCKET, libc::SO_ACCEPTCONN).unwrap_or(0) == 1 {
            let d = d.ok_or_else(|| refuse("(a listener the kernel's socket table does not list)".into()))?;
            if d.state != TCP_LISTEN {
                return Err(refuse("in an unexpected state".into()));
            }
            if d.rqueue > 0 {
                return Err(refuse(format!("listening with {} connections waiting to be accepted", d.rqueue)));
            }
            listening = true;
            backlog = d.wqueue;
        } else if !peer.is_empty() {
            let state = d.map(|d| d.state).unwrap_or(0);
            if state != TCP_ESTABLISHED {
                return Err(refuse(format!("in TCP state {state} (only established connections are saved)")));
            }
            // Options first: in repair mode SO_REUSEADDR reads as the kernel's "force".
            let mut options = Vec::new();
            for (level, opt) in options_for(family, proto) {
                if let Ok(v) = geti(level, opt) {
                    options.extend_from_slice(&[level, opt, v]);
                }
            }
            let c = tcp_dump(dup).map_err(|e| sys_err("TCP_REPAIR", e))?;
            return Ok(Object {
                kind: Some(Kind::Inet(InetObj {
                    family,
                    sock_type: ty,
                    protocol: proto,
                    local,
                    peer,
                    flags: flags & libc::O_NONBLOCK as u32,
                    options,
                    tcp: Some(c),
                    ..Default::default()
                })),
                ..Default::default()
            });
        }
    } else {
        let queued = sys::inq(dup.as_fd()).map_err(|e| sys_err("FIONREAD", e))?;
        if queued > 0 {
            return Err(refuse(format!("with {queued} bytes of datagrams queued")));
        }
    }
    let mut options = Vec::new();
    for (level, opt) in options_for(family, proto) {
        if let Ok(v) = geti(level, opt) {
            options.extend_from_slice(&[level, opt, v]);
        }
    }
    Ok(Object {
        kind: Some(Kind::Inet(InetObj {
            family,
            sock_type: ty,
            protocol: proto,
            local: if port_of(&local) == 0 && !listening { Vec::new() } else { local },
            peer,
            listening,
            backlog,
            flags: flags & libc::O_NONBLOCK as u32,
            options,
            tcp: None,
        })),
        ..Default::default()
    })
}

/// Restore side: the recreated socket.
pub fn open(o: &InetObj) -> std::result::Result<OwnedFd, String> {
    let s = sys::socket(o.family, o.sock_type, o.protocol).map_err(|e| format!("socket: {e}"))?;
    for t in o.options.chunks_exact(3) {
        sys::setsockopt_int(s.as_fd(), t[0], t[1], t[2]).map_err(|e| format!("setsockopt({}, {}): {e}", t[0], t[1]))?;
    }
    if let Some(c) = &o.tcp {
        let repair =
            tcp_restore(&s, o, c).map_err(|e| format!("TCP_REPAIR of the connection to port {}: {e}", port_of(&o.peer)))?;
        super::apply_nonblock(&s, o.flags)?;
        TO_ENABLE.lock().unwrap_or_else(|e| e.into_inner()).push(repair);
        return Ok(s);
    }
    if !o.local.is_empty() {
        sys::sock_addr_op(s.as_fd(), &o.local, false)
            .map_err(|e| format!("binding port {} again: {e}", port_of(&o.local)))?;
    }
    if o.listening {
        sys::listen(s.as_fd(), o.backlog as i32).map_err(|e| format!("listen: {e}"))?;
    } else if !o.peer.is_empty() {
        sys::sock_addr_op(s.as_fd(), &o.peer, true).map_err(|e| format!("connect: {e}"))?;
    }
    super::apply_nonblock(&s, o.flags)?;
    Ok(s)
}
