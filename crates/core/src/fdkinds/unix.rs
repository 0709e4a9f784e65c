//! Unix socket pairs with both ends in the process — socketpair(2), as used by asyncio's
//! self-pipe, subprocess plumbing kept inside one process, and event loops.
//!
//! Dump: NETLINK_SOCK_DIAG tells each socket's peer, name, shutdown state and queue
//! length; the bytes queued on a stream end are peeked (MSG_PEEK with SO_PEEK_OFF, so the
//! process still reads them). Refused: bound (named) sockets, sockets connected to a
//! socket outside the process, unconnected sockets, queued datagrams, queued ancillary
//! data (passed fds, credentials), file flags other than O_NONBLOCK.
//! Restore: socketpair(2) when the first end is opened; each end's queue is written
//! into its peer so it lands where it was; shutdown state applied per end.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use stasis_image::model::{Object, UnixObj};
use stasis_sys::sys::{self, UnixDiag};

use crate::error::{Error, Result};

const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;

pub fn type_name(t: i32) -> &'static str {
    match t {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "datagram",
        libc::SOCK_SEQPACKET => "seqpacket",
        _ => "",
    }
}

/// The host's unix sockets by inode (one netlink dump per process dump).
pub struct Table(HashMap<u32, UnixDiag>);

impl Table {
    pub fn load(pid: i32) -> Result<Table> {
        let v = sys::unix_diag().map_err(|err| Error::Sys { pid, what: "NETLINK_SOCK_DIAG dump of unix sockets".into(), err })?;
        Ok(Table(v.into_iter().map(|d| (d.ino, d)).collect()))
    }
}

/// Dump side of one unix socket fd (`dup` is our copy of it).
pub fn dump(pid: i32, fd: i32, ino: u64, flags: u32, dup: &OwnedFd, table: &Table) -> Result<Object> {
    let refuse = |what: String| Error::Unsupported { pid, what: format!("fd {fd} is a unix {what}") };
    let d = table.0.get(&(ino as u32)).ok_or_else(|| refuse("socket the kernel's socket table does not list".into()))?;
    let ty = d.typ as i32;
    let tn = type_name(ty);
    if flags & !((libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_LARGEFILE) as u32) != 0 {
        return Err(refuse(format!("{tn} socket with file flags {flags:#o}")));
    }
    if !d.name.is_empty() {
        let name = if d.name[0] == 0 {
            format!("@{}", String::from_utf8_lossy(&d.name[1..]))
        } else {
            String::from_utf8_lossy(&d.name).into_owned()
        };
        let listening = d.state == TCP_LISTEN && ty != libc::SOCK_DGRAM;
        let idle_dgram = ty == libc::SOCK_DGRAM && d.peer == 0;
        if !listening && !idle_dgram {
            return Err(refuse(format!("{tn} socket bound to {name} and connected")));
        }
        if d.rqueue > 0 {
            let what = if listening { "connections waiting to be accepted" } else { "queued datagrams" };
            return Err(refuse(format!("{tn} socket bound to {name} with {} {what}", d.rqueue)));
        }
        let mut saved = d.name.clone();
        if saved[0] != 0 {
            while saved.last() == Some(&0) {
                saved.pop(); // a path: the kernel reports it with its terminating NUL
            }
        }
        return Ok(Object {
            unix: Some(UnixObj {
                ino: ino as u32,
                sock_type: ty,
                flags: flags & libc::O_NONBLOCK as u32,
                name: saved,
                listening,
                backlog: d.wqueue,
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    if d.peer == 0 || d.state != TCP_ESTABLISHED && ty != libc::SOCK_DGRAM {
        return Err(refuse(format!("{tn} socket that is not connected")));
    }
    let queue = if ty == libc::SOCK_STREAM {
        match sys::peek_stream_queue(dup.as_fd()) {
            Ok(q) => q,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                return Err(refuse(format!("{tn} socket with file descriptors or credentials queued on it")))
            }
            Err(err) => return Err(Error::Sys { pid, what: format!("peeking the queue of fd {fd}"), err }),
        }
    } else if d.rqueue > 0 {
        return Err(refuse(format!("{tn} socket with {} queued datagrams", d.rqueue)));
    } else {
        Vec::new()
    };
    Ok(Object {
        unix: Some(UnixObj {
            ino: ino as u32,
            peer_ino: d.peer,
            sock_type: ty,
            flags: flags & libc::O_NONBLOCK as u32,
            queue,
            shutdown: d.shutdown as u32,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// After all fds: every pair's peer must be one of the process's own sockets.
pub fn check_peers(pid: i32, objects: &[Object], fds: &[stasis_image::model::Fd]) -> Result<()> {
    let inos: Vec<u32> = objects.iter().filter_map(|o| o.unix.as_ref().map(|u| u.ino)).collect();
    for f in fds {
        let Some(u) = objects.iter().find(|o| o.id == f.object_id).and_then(|o| o.unix.as_ref()) else { continue };
        if u.peer_ino != 0 && !inos.contains(&u.peer_ino) {
            return Err(Error::Unsupported {
                pid,
                what: format!("fd {} is a unix {} socket connected to a socket outside the process", f.fd, type_name(u.sock_type)),
            });
        }
    }
    Ok(())
}

fn apply_shutdown(fd: &OwnedFd, bits: u32) -> std::io::Result<()> {
    let how = match bits & 3 {
        0 => return Ok(()),
        1 => libc::SHUT_RD,
        2 => libc::SHUT_WR,
        _ => libc::SHUT_RDWR,
    };
    sys::shutdown(fd.as_fd(), how)
}

fn requeue(into_peer: &OwnedFd, data: &[u8]) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let _ = sys::setsockopt_int(into_peer.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, (data.len() * 2).min(i32::MAX as usize) as i32);
    let mut off = 0;
    while off < data.len() {
        off += sys::write_fd(into_peer.as_fd(), &data[off..])?;
    }
    Ok(())
}

/// Restore side: this end's socket. Creates the pair (and keeps the peer in `made`)
/// when the first end is opened.
pub fn open_end(objects: &[Object], u: &UnixObj, made: &mut HashMap<u32, OwnedFd>) -> std::result::Result<OwnedFd, String> {
    if u.peer_ino == 0 {
        return open_bound(u);
    }
    let sock = if let Some(s) = made.remove(&u.ino) {
        s
    } else {
        let peer = objects
            .iter()
            .filter_map(|o| o.unix.as_ref())
            .find(|p| p.ino == u.peer_ino)
            .ok_or_else(|| format!("the peer (socket {}) of unix socket {} is missing from the image", u.peer_ino, u.ino))?;
        let (a, b) = sys::socketpair(u.sock_type).map_err(|e| format!("socketpair: {e}"))?;
        // a = this end, b = the peer: bytes queued for reading on a were sent by b.
        requeue(&b, &u.queue).map_err(|e| format!("requeueing {} bytes: {e}", u.queue.len()))?;
        requeue(&a, &peer.queue).map_err(|e| format!("requeueing {} bytes: {e}", peer.queue.len()))?;
        apply_shutdown(&a, u.shutdown).map_err(|e| format!("shutdown: {e}"))?;
        apply_shutdown(&b, peer.shutdown).map_err(|e| format!("shutdown: {e}"))?;
        super::apply_nonblock(&b, peer.flags)?;
        made.insert(peer.ino, b);
        a
    };
    super::apply_nonblock(&sock, u.flags)?;
    Ok(sock)
}

/// A bound socket: a listener (or an idle datagram socket) at its saved name. A socket
/// file left at the path by the dumped process (it is gone) is removed first.
fn open_bound(u: &UnixObj) -> std::result::Result<OwnedFd, String> {
    let s = sys::socket(libc::AF_UNIX, u.sock_type, 0).map_err(|e| format!("socket: {e}"))?;
    if u.name.first().is_some_and(|c| *c != 0) {
        let path = std::path::PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&u.name));
        if let Ok(md) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if md.file_type().is_socket() {
                std::fs::remove_file(&path).map_err(|e| format!("removing the stale socket file {}: {e}", path.display()))?;
            }
        }
    }
    let mut addr = vec![0u8; 2];
    addr[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    addr.extend_from_slice(&u.name);
    if u.name.first().is_some_and(|c| *c != 0) {
        addr.push(0);
    }
    sys::sock_addr_op(s.as_fd(), &addr, false).map_err(|e| format!("bind to {}: {e}", String::from_utf8_lossy(&u.name)))?;
    if u.listening {
        sys::listen(s.as_fd(), u.backlog as i32).map_err(|e| format!("listen: {e}"))?;
    }
    super::apply_nonblock(&s, u.flags)?;
    Ok(s)
}
