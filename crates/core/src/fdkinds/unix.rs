//! Unix sockets: pairs with both ends in the tree — socketpair(2), as used by asyncio's
//! self-pipe, subprocess plumbing and event loops — and bound listeners or idle bound
//! datagram sockets.
//!
//! Dump: NETLINK_SOCK_DIAG tells each socket's peer, name, shutdown state and queue
//! length; the bytes queued on a stream end are peeked (MSG_PEEK with SO_PEEK_OFF, so the
//! process still reads them); whether datagrams are queued is asked of the socket (a
//! non-waiting peek: the table's length is the first datagram's, 0 for an empty one).
//! Refused: bound sockets that are connected, listeners with connections waiting,
//! sockets connected to a socket outside the tree, unconnected unbound sockets, queued
//! datagrams, queued ancillary data (passed fds, credentials), file flags other than
//! O_NONBLOCK.
//! Restore: socketpair(2) when the first end is opened; each end's queue is written
//! into its peer so it lands where it was; shutdown state applied per end. A bound
//! socket is bound again to its name (`open_bound`), never taking a path from a live
//! socket.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use stasis_image::model::{Kind, Object, UnixObj};
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

/// A unix socket address (the bytes after `sun_family`) as people write it: a path
/// without the NUL that sock_diag and getsockname report after it, an abstract name as
/// `@name` (bytes that are not printable as `\xNN`), an autobind name (abstract, five hex
/// digits) as `@00012 (autobind)`, no address as `(unnamed)`. Every message and
/// `inspect` show unix addresses through this.
pub fn addr_display(name: &[u8]) -> String {
    match name.split_first() {
        None => "(unnamed)".into(),
        Some((0, abs)) => {
            let mut out = String::from("@");
            for &b in abs {
                if b.is_ascii_graphic() || b == b' ' {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
            if abs.len() == 5 && abs.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
                out.push_str(" (autobind)");
            }
            out
        }
        Some(_) => {
            let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            String::from_utf8_lossy(&name[..end]).into_owned()
        }
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
        return Err(refuse(format!("{tn} socket with file flags {} (only O_NONBLOCK is kept)", super::open_flags(flags))));
    }
    if !d.name.is_empty() {
        let name = addr_display(&d.name);
        let listening = d.state == TCP_LISTEN && ty != libc::SOCK_DGRAM;
        let idle_dgram = ty == libc::SOCK_DGRAM && d.peer == 0;
        if !listening && !idle_dgram {
            return Err(refuse(format!("{tn} socket bound to {name} and connected")));
        }
        if listening && d.rqueue > 0 {
            return Err(refuse(format!("{tn} socket bound to {name} with {} connections waiting to be accepted", d.rqueue)));
        }
        if !listening && has_queued_messages(pid, fd, dup)? {
            return Err(refuse(format!("{tn} socket bound to {name} with queued datagrams")));
        }
        let mut saved = d.name.clone();
        if saved[0] != 0 {
            while saved.last() == Some(&0) {
                saved.pop(); // a path: the kernel reports it with its terminating NUL
            }
        }
        return Ok(Object {
            kind: Some(Kind::Unix(UnixObj {
                ino: ino as u32,
                sock_type: ty,
                flags: flags & libc::O_NONBLOCK as u32,
                name: saved,
                listening,
                backlog: d.wqueue,
                ..Default::default()
            })),
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
    } else if has_queued_messages(pid, fd, dup)? {
        let what = if ty == libc::SOCK_SEQPACKET { "records" } else { "datagrams" };
        return Err(refuse(format!("{tn} socket with queued {what}")));
    } else {
        Vec::new()
    };
    Ok(Object {
        kind: Some(Kind::Unix(UnixObj {
            ino: ino as u32,
            peer_ino: d.peer,
            sock_type: ty,
            flags: flags & libc::O_NONBLOCK as u32,
            queue,
            shutdown: d.shutdown as u32,
            ..Default::default()
        })),
        ..Default::default()
    })
}

/// After all fds: every pair's peer must be one of the process's own sockets.
pub fn check_peers(pid: i32, objects: &[Object], fds: &[stasis_image::model::Fd]) -> Result<()> {
    let inos: Vec<u32> = objects.iter().filter_map(|o| o.unix().map(|u| u.ino)).collect();
    for f in fds {
        let Some(u) = objects.iter().find(|o| o.id == f.object_id).and_then(|o| o.unix()) else { continue };
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

/// Restore side: the socket of fd `fd` (of `pid`). Creates the pair (and keeps the peer
/// in `made`) when the first end is opened; a bound socket is `open_bound`.
pub fn open_end(pid: i32, fd: i32, objects: &[Object], u: &UnixObj, made: &mut HashMap<u32, OwnedFd>) -> Result<OwnedFd> {
    let step = |why: String| Error::RestoreStep { pid, step: "opening files".into(), why: format!("fd {fd}: {why}") };
    if u.peer_ino == 0 {
        return open_bound(pid, fd, u);
    }
    let sock = if let Some(s) = made.remove(&u.ino) {
        s
    } else {
        let peer = objects
            .iter()
            .filter_map(|o| o.unix())
            .find(|p| p.ino == u.peer_ino)
            .ok_or_else(|| step(format!("the peer (socket {}) of unix socket {} is missing from the image", u.peer_ino, u.ino)))?;
        let pair = |why: String| step(format!("unix socket pair: {why}"));
        let (a, b) = sys::socketpair(u.sock_type).map_err(|e| pair(format!("socketpair: {e}")))?;
        // a = this end, b = the peer: bytes queued for reading on a were sent by b.
        requeue(&b, &u.queue).map_err(|e| pair(format!("requeueing {} bytes: {e}", u.queue.len())))?;
        requeue(&a, &peer.queue).map_err(|e| pair(format!("requeueing {} bytes: {e}", peer.queue.len())))?;
        apply_shutdown(&a, u.shutdown).map_err(|e| pair(format!("shutdown: {e}")))?;
        apply_shutdown(&b, peer.shutdown).map_err(|e| pair(format!("shutdown: {e}")))?;
        super::apply_nonblock(&b, peer.flags).map_err(pair)?;
        made.insert(peer.ino, b);
        a
    };
    super::apply_nonblock(&sock, u.flags).map_err(|why| step(format!("unix socket pair: {why}")))?;
    Ok(sock)
}

/// A bound socket: a listener (or an idle datagram socket) at its saved name.
///
/// A socket bound to a path needs its socket file, which bind(2) creates as root at the
/// path the image names (owner root, mode from the umask). bind never replaces
/// anything: it fails when any file is at the path. What may be there is sorted out
/// first by `clear_socket_path`: nothing but the stale socket file the dumped process
/// left behind is removed.
fn open_bound(pid: i32, fd: i32, u: &UnixObj) -> Result<OwnedFd> {
    let name = addr_display(&u.name);
    let step = |why: String| Error::RestoreStep {
        pid,
        step: "opening files".into(),
        why: format!("fd {fd}: unix {} socket bound to {name}: {why}", type_name(u.sock_type)),
    };
    let s = sys::socket(libc::AF_UNIX, u.sock_type, 0).map_err(|e| step(format!("socket: {e}")))?;
    let mut addr = vec![0u8; 2];
    addr[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    if u.name.first().is_some_and(|c| *c != 0) {
        let end = u.name.iter().position(|b| *b == 0).unwrap_or(u.name.len());
        let path = std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&u.name[..end]));
        clear_socket_path(path).map_err(|why| {
            Error::RestoreRefused(format!("fd {fd} of pid {pid} is a unix {} socket bound to {name}: {why}", type_name(u.sock_type)))
        })?;
        addr.extend_from_slice(&u.name[..end]);
        addr.push(0);
    } else {
        addr.extend_from_slice(&u.name);
    }
    sys::sock_addr_op(s.as_fd(), &addr, false).map_err(|e| step(format!("bind: {e}")))?;
    if u.listening {
        sys::listen(s.as_fd(), u.backlog as i32).map_err(|e| step(format!("listen: {e}")))?;
    }
    super::apply_nonblock(&s, u.flags).map_err(step)?;
    Ok(s)
}

/// Makes `path` free for a bind, or says why it is not. Nothing there: free. A socket
/// file nobody serves (connect is refused: the dumped process, now gone, left it): it is
/// removed. A socket file a live socket serves (a connect succeeds, would block on a
/// full backlog, or finds a socket of another type), anything that is not a socket file,
/// or a path that cannot be checked: left alone, and the reason is returned.
/// Known gap: a stream socket that is bound but does not listen also refuses connects,
/// so it looks stale.
fn clear_socket_path(path: &std::path::Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot check what is at that path: {e}")),
    };
    if !md.file_type().is_socket() {
        return Err("a file that is not a socket is at that path now; it is left alone".into());
    }
    let probe = sys::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0)
        .map_err(|e| format!("socket to check the socket file there: {e}"))?;
    let mut addr = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    addr.extend_from_slice(path.as_os_str().as_encoded_bytes());
    addr.push(0);
    match sys::sock_addr_op(probe.as_fd(), &addr, true) {
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {}
        Ok(()) => return Err("a live socket serves that path now (a connect to it succeeded); it is left alone".into()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINPROGRESS | libc::EPROTOTYPE)) => {
            return Err(format!("a live socket serves that path now (a connect to it: {e}); it is left alone"))
        }
        Err(e) => return Err(format!("cannot tell whether a live socket serves the socket file there (connect: {e}); it is left alone")),
    }
    // Stale. Remove it only if it still is the file just checked.
    match std::fs::symlink_metadata(path) {
        Ok(now) if now.dev() == md.dev() && now.ino() == md.ino() => {
            std::fs::remove_file(path).map_err(|e| format!("removing the stale socket file there: {e}"))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => Err("the socket file there was replaced while it was checked; it is left alone".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::addr_display;

    #[test]
    fn unix_addresses_as_people_write_them() {
        assert_eq!(addr_display(b"/run/x.sock\0"), "/run/x.sock");
        assert_eq!(addr_display(b"/run/x.sock"), "/run/x.sock");
        assert_eq!(addr_display(b"\0my-name"), "@my-name");
        assert_eq!(addr_display(b"\0a\0b\n"), "@a\\x00b\\x0a");
        assert_eq!(addr_display(b"\x0000a1f"), "@00a1f (autobind)");
        assert_eq!(addr_display(b""), "(unnamed)");
    }
}

/// Is anything queued for reading on a datagram or seqpacket socket? The kernel's socket
/// table gives the length of the first datagram only (0 for an empty one, which would be
/// lost), so ask the socket itself: a peek that does not wait (nothing is consumed).
fn has_queued_messages(pid: i32, fd: i32, dup: &OwnedFd) -> Result<bool> {
    let mut b = [0u8; 1];
    match sys::recv(dup.as_fd(), &mut b, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(false),
        Err(err) => Err(Error::Sys { pid, what: format!("peeking the queue of fd {fd}"), err }),
    }
}
