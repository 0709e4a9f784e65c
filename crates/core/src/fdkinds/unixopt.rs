//! Unix socket state beside the socket's connections and queues (unix.rs): its
//! SOL_SOCKET options, through the option table IP sockets use (inet/options.rs):
//! read, compared with a new unix socket of the same type, set back in two phases —
//! `Early` once the socket exists, `Late` once its queue is in (a filter attached
//! before would filter the requeued messages; a locked filter cannot be attached again);
//! and a stream socket's pending out-of-band byte (MSG_OOB): found without consuming it
//! (`find_oob`), sent again with MSG_OOB at its place in the queue; and its peer
//! credentials (SO_PEERCRED: pid, uid, gid), which the kernel records of whoever makes
//! the pair, the connection or the listener: those calls are made again as the process
//! they name (`listen`, `connect`, `socketpair`).

use std::os::fd::{BorrowedFd, OwnedFd};

use stasis_image::model::{MsgCreds, SockOpt, UnixObj};
use stasis_sys::sys;

use super::inet::options::{self, SockKind, When};

/// The option table's view of a unix socket of type `ty`.
pub fn kind(ty: i32) -> SockKind {
    SockKind { family: libc::AF_UNIX, ty, protocol: 0, connected: false }
}

/// Dump: the table options of `s` (type `ty`) that differ from a new socket's.
pub fn dump(s: BorrowedFd<'_>, ty: i32) -> Result<Vec<SockOpt>, super::sockopt::DumpErr> {
    use super::sockopt::DumpErr;
    let fresh = sys::socket(libc::AF_UNIX, ty, 0).map_err(|e| DumpErr::Sys("a new socket to compare options with".into(), e))?;
    options::dump(s, std::os::fd::AsFd::as_fd(&fresh), &kind(ty)).map_err(DumpErr::Refuse)
}

/// Restore: the saved options of phase `when`.
pub fn apply(s: BorrowedFd<'_>, u: &UnixObj, when: When) -> Result<(), String> {
    options::apply(s, &u.sockopts, &kind(u.sock_type), when)
}

/// Validation: options of the table for a unix socket, values of the table's sizes; an
/// out-of-band byte only inside the queue of a stream socket whose queue is written
/// by `requeue` (no fds, no credentials).
pub fn check(u: &UnixObj) -> Result<(), String> {
    options::check_all(&u.sockopts, &kind(u.sock_type))?;
    if let Some(p) = u.oob_at {
        if u.sock_type != libc::SOCK_STREAM || p >= u.queue.len() as u64 || !u.in_flight.is_empty() || !u.cred_ranges.is_empty() {
            return Err(format!("out-of-band byte at {p} of a queue of {} bytes (stream, without fds or credentials)", u.queue.len()));
        }
    }
    Ok(())
}

/// SO_OOBINLINE off while a stream queue is peeked (put back on drop): a pending
/// out-of-band byte then reads as such (recv MSG_OOB), and the peeks treat it the same
/// way whatever the program chose.
pub struct OobInlineOff<'a> {
    fd: BorrowedFd<'a>,
    inline: bool,
}

impl<'a> OobInlineOff<'a> {
    pub fn new(fd: BorrowedFd<'a>) -> std::io::Result<OobInlineOff<'a>> {
        let inline = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_OOBINLINE)? != 0;
        if inline {
            sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_OOBINLINE, 0)?;
        }
        Ok(OobInlineOff { fd, inline })
    }
}

impl Drop for OobInlineOff<'_> {
    fn drop(&mut self) {
        if self.inline {
            let _ = sys::setsockopt_int(self.fd, libc::SOL_SOCKET, libc::SO_OOBINLINE, 1);
        }
    }
}

/// Where each peek of the stream queue of `s` starts (SO_PEEK_OFF stepping from 0, put
/// back as it was): a peek stops before the out-of-band byte, so that byte starts one
/// (unless it is the next to read: peeks skip it then).
fn peek_starts(s: BorrowedFd<'_>, total: usize) -> std::io::Result<Vec<usize>> {
    let old = sys::getsockopt_int(s, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    sys::setsockopt_int(s, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut buf = vec![0u8; total + 1];
    let mut starts = Vec::new();
    let mut at = 0;
    let r = loop {
        if at >= total {
            break Ok(());
        }
        match sys::recv(s, &mut buf, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                starts.push(at);
                at += n;
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    sys::setsockopt_int(s, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    r.map(|_| starts)
}

/// Dump, after the stream queue of `u` was peeked (with `OobInlineOff`): the pending
/// out-of-band byte, if any — put in `u.queue` at its place when the peeks skipped it
/// (it was the next to read), and that place returned. Nothing is consumed (MSG_PEEK).
/// Err(Refuse) when its place cannot be told for sure, or with fds or credentials in the
/// queue (their pieces are not sent with it).
pub fn find_oob(s: BorrowedFd<'_>, u: &mut UnixObj) -> Result<Option<u64>, super::sockopt::DumpErr> {
    use super::sockopt::DumpErr;
    let mut c = [0u8; 1];
    match sys::recv(s, &mut c, libc::MSG_OOB | libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(1) => {}
        Ok(_) => return Ok(None),
        // none pending; a kernel without MSG_OOB on unix sockets
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EAGAIN | libc::EOPNOTSUPP)) => return Ok(None),
        Err(e) => return Err(DumpErr::Sys("recv(MSG_OOB | MSG_PEEK)".into(), e)),
    }
    let refuse = |why: &str| DumpErr::Refuse(format!("stream socket with an out-of-band byte (MSG_OOB) pending {why}"));
    if !u.in_flight.is_empty() || !u.cred_ranges.is_empty() {
        return Err(refuse("in a queue that also carries file descriptors or credentials (not requeued together)"));
    }
    let inq = sys::inq(s).map_err(|e| DumpErr::Sys("SIOCINQ".into(), e))?.max(0) as usize;
    let at_mark = sys::atmark(s).map_err(|e| DumpErr::Sys("SIOCATMARK".into(), e))?;
    if at_mark && u.queue.len() + 1 == inq {
        // the next byte to read: the peeks skipped it
        u.queue.insert(0, c[0]);
        return Ok(Some(0));
    }
    if u.queue.len() != inq {
        return Err(refuse(&format!("in a queue of {inq} bytes of which {} could be peeked", u.queue.len())));
    }
    let starts = peek_starts(s, u.queue.len()).map_err(|e| DumpErr::Sys("peeking the queue for its out-of-band byte".into(), e))?;
    let places: Vec<usize> = starts.into_iter().filter(|p| (*p > 0 || at_mark) && u.queue.get(*p) == Some(&c[0])).collect();
    match places[..] {
        [p] => Ok(Some(p as u64)),
        _ => Err(refuse(&format!("whose place in the queue cannot be told ({} places fit)", places.len()))),
    }
}

/// Restore: the out-of-band byte `b`, sent on `s` with MSG_OOB.
pub fn send_oob(s: BorrowedFd<'_>, b: u8) -> std::io::Result<()> {
    match sys::send(s, &[b], libc::MSG_OOB)? {
        1 => Ok(()),
        _ => Err(std::io::Error::other("the out-of-band byte was not sent")),
    }
}

/// Restore: `call` made as the process `creds` name, so that the peer credentials the
/// kernel records (SO_PEERCRED) are theirs: by a stand-in process with their pid
/// (`sys::as_peer`: it exits before the tree is forked, and the pid keeps its number in
/// the socket), or — when no process can have that pid now (the restorer's own, a
/// deeper PID namespace) or none is named — by a thread of the restorer with their uid
/// and gid (the pid is then the restorer's).
fn by_peer<T: Send>(
    creds: Option<&MsgCreds>,
    stand_in: impl FnOnce(sys::Creds) -> std::io::Result<std::io::Result<T>>,
    here: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    if let Some(c) = creds.filter(|c| c.pid != 0) {
        match stand_in(sys::Creds { pid: c.pid, uid: c.uid, gid: c.gid }) {
            Ok(r) => return r,
            Err(e) => tracing::debug!("no stand-in process with pid {}: {e}; the restorer makes the call", c.pid),
        }
    }
    match creds {
        Some(c) if (c.uid, c.gid) != (sys::geteuid(), sys::getegid()) => sys::with_thread_eids(c.uid, c.gid, here),
        _ => here(),
    }
}

/// Restore: listen(2) on `s` as `creds` (what clients connecting later get as this
/// listener's peer credentials).
pub fn listen(s: BorrowedFd<'_>, backlog: i32, creds: Option<&MsgCreds>) -> std::io::Result<()> {
    by_peer(creds, |c| sys::as_peer(c, sys::PeerCall::Listen(s, backlog)), || sys::listen(s, backlog))
}

/// Restore: connect(2) of `s` to the raw sockaddr `addr` as `creds` (what the accepted
/// end gets as its peer credentials).
pub fn connect(s: BorrowedFd<'_>, addr: &[u8], creds: Option<&MsgCreds>) -> std::io::Result<()> {
    by_peer(creds, |c| sys::as_peer(c, sys::PeerCall::Connect(s, addr)), || sys::sock_addr_op(s, addr, true))
}

/// Restore: a socketpair of type `ty` made as `creds` (both ends' peer credentials).
pub fn socketpair(ty: i32, creds: Option<&MsgCreds>) -> std::io::Result<(OwnedFd, OwnedFd)> {
    by_peer(creds, |c| sys::socketpair_as(ty, c), || sys::socketpair(ty))
}
