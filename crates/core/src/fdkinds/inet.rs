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

use stasis_image::model::{InetObj, Object};
use stasis_sys::sys;

use crate::error::{Error, Result};

const TCP_LISTEN: u8 = 10;

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
        return Err(refuse(format!("with file flags {flags:#o}")));
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
            return Err(refuse("with an established connection (TCP_REPAIR)".into()));
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
        inet: Some(InetObj {
            family,
            sock_type: ty,
            protocol: proto,
            local: if port_of(&local) == 0 && !listening { Vec::new() } else { local },
            peer,
            listening,
            backlog,
            flags: flags & libc::O_NONBLOCK as u32,
            options,
        }),
        ..Default::default()
    })
}

/// Restore side: the recreated socket.
pub fn open(o: &InetObj) -> std::result::Result<OwnedFd, String> {
    let s = sys::socket(o.family, o.sock_type, o.protocol).map_err(|e| format!("socket: {e}"))?;
    for t in o.options.chunks_exact(3) {
        sys::setsockopt_int(s.as_fd(), t[0], t[1], t[2]).map_err(|e| format!("setsockopt({}, {}): {e}", t[0], t[1]))?;
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
    if o.flags & libc::O_NONBLOCK as u32 != 0 {
        sys::fcntl(std::os::fd::AsRawFd::as_raw_fd(&s), libc::F_SETFL, libc::O_NONBLOCK as i64).map_err(|e| format!("O_NONBLOCK: {e}"))?;
    }
    Ok(s)
}
