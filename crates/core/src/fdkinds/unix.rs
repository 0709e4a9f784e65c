//! Unix sockets (stream, datagram, seqpacket) in every state a program leaves them:
//! unbound, bound (path, abstract, autobind), listening, connected inside the tree
//! (socketpair(2) or accepted), connected to a socket outside the tree, or left by a peer
//! that closed (a datagram socket too: the kernel keeps the closed peer, which
//! getpeername names, until the next send fails with ECONNREFUSED); with their queues
//! and options.
//!
//! Dump: NETLINK_SOCK_DIAG tells each socket's peer, name, state, shutdown and queue
//! length. Stream bytes are peeked (MSG_PEEK with SO_PEEK_OFF, so the process still
//! reads them); datagrams and seqpacket records likewise, one by one with their sender's
//! address (`sys::peek_datagrams`). SO_PASSCRED is on and SO_PASSSEC off during the
//! peeks (and set back), so the only ancillary data that shows is credentials
//! (SCM_CREDENTIALS: per message, per writer's run of stream bytes) and file descriptors
//! in flight (SCM_RIGHTS): the peek installs copies of them in our fd table; files.rs dumps those
//! as fds of ours (kcmp ties them to the tree's own descriptions) and `name_in_flight`
//! puts their object ids in the record. Restore opens them with the rest and
//! `requeue_deferred` sends the queues that carry them once every object is open. Options: SO_PASSCRED, SO_PASSSEC, SO_PEEK_OFF,
//! SO_RCVBUF, SO_SNDBUF here; the others of the shared option table in unixopt.rs. `check_peers` (once every fd of the tree is known) sorts peers:
//! inside the tree; outside it — a datagram socket keeps the peer's name and connects
//! to it again at restore (syslog's /dev/log), a stream/seqpacket one is refused naming
//! the process holding the peer unless marked `--external unix:[INODE]`.
//! Refused: connections from outside the tree waiting to be accepted, and connections
//! of the tree waiting with bytes already sent (those bytes sit in the server's end,
//! which has no fd before the accept; accepting it through a pidfd_getfd copy of the
//! listener would take it out of the live queue for good) — unless --skip-in-flight,
//! which drops them (a client of the tree comes back as one whose peer closed); a
//! datagram socket connected to an unnamed socket outside the tree. (A cycle of three
//! or more one-way connected datagram sockets cannot exist: connect(2) refuses to
//! connect to a socket connected to another, EPERM.)
//!
//! Restore (`open_end`): a pair whose ends are connected to each other is made with
//! socketpair(2) when its first end is opened (each end's queue written into the other
//! so it lands where it was; shutdown bits per end); any other socket is made alone
//! (`make_alone`): socket, options, bind to its name (never taking a path from a live
//! socket), its queued messages sent to it by name, listen, then connect to its peer by
//! name — a peer of the tree is made first if needed (kept in `made` until its own fd is
//! opened). A socket whose peer had closed is one end of a new pair whose other end is
//! closed. An accepted connection is accepted again from a throwaway listener of the same
//! name (`named_pair`; paths inside a private mount namespace over a tmpfs, so nothing is
//! made on the host; pairs with abstract names first, before a listener of the tree takes
//! the name); a path whose file was unlinked or replaced, or a relative path, is bound
//! the same private way (`private_path`), and the sockets that connect to it later go
//! through an O_PATH fd of its socket file (`Made::address`). Queued datagrams are sent
//! so that recvfrom shows their sender's name (`Senders`): from the socket of the tree
//! bound to it (the receiver's queue then waits until every socket is open,
//! `requeue_deferred`), else from a new socket bound to it (a path inside a private
//! root); a datagram pair gets its ends' names after socketpair. Known loss: an
//! abstract sender name taken meanwhile by a process outside the tree (unnamed, with a
//! warning). Queues carrying credentials wait until every process exists
//! (`requeue_late`): SCM_CREDENTIALS may only name a pid that exists.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};

use stasis_image::model::{CredRange, InFlight, MsgCreds, SockFile, Object, UnixMsg, UnixObj};
use stasis_sys::sys::{self, UnixDiag};

use crate::error::{Error, Result};

// unix_diag reports the TCP state numbers
use super::inet::tcp::{ESTABLISHED as TCP_ESTABLISHED, LISTEN as TCP_LISTEN};

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

/// Largest datagram saved, and most bytes of datagrams per socket (a unix datagram can
/// be as large as the sender's send buffer).
const MAX_DGRAM: usize = 4 << 20;
const MAX_DGRAM_QUEUE: usize = 64 << 20;

/// SO_PASSCRED on and SO_PASSSEC off while peeking, so the only ancillary data that shows
/// is credentials and fds in flight (a stream read with SO_PASSCRED never joins two
/// writers' bytes); both put back as they were on drop.
struct PeekCreds<'a> {
    fd: std::os::fd::BorrowedFd<'a>,
    passcred: bool,
    passsec: bool,
}

impl<'a> PeekCreds<'a> {
    fn new(fd: std::os::fd::BorrowedFd<'a>, passcred: bool, passsec: bool) -> std::io::Result<PeekCreds<'a>> {
        let guard = PeekCreds { fd, passcred, passsec };
        if !passcred {
            sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PASSCRED, 1)?;
        }
        if passsec {
            sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PASSSEC, 0)?;
        }
        Ok(guard)
    }
}

impl Drop for PeekCreds<'_> {
    fn drop(&mut self) {
        if !self.passcred {
            let _ = sys::setsockopt_int(self.fd, libc::SOL_SOCKET, libc::SO_PASSCRED, 0);
        }
        if self.passsec {
            let _ = sys::setsockopt_int(self.fd, libc::SOL_SOCKET, libc::SO_PASSSEC, 1);
        }
    }
}

/// Credentials as the image keeps them: none when the sender attached none (pid 0).
fn saved_creds(c: Option<sys::Creds>) -> Option<MsgCreds> {
    c.filter(|c| c.pid != 0).map(|c| MsgCreds { pid: c.pid, uid: c.uid, gid: c.gid })
}

/// Once the tree is known: credentials naming a process outside it keep only uid and
/// gid (pid 0: restore cannot name that process).
pub fn creds_of_tree(objects: &mut [Object], tree: &[i32]) {
    for u in objects.iter_mut().filter_map(|o| o.unix_mut()) {
        let creds = u
            .cred_ranges
            .iter_mut()
            .filter_map(|r| r.creds.as_mut())
            .chain(u.messages.iter_mut().filter_map(|m| m.creds.as_mut()))
            .chain(u.peer_cred.as_mut());
        for c in creds {
            if !tree.contains(&c.pid) {
                c.pid = 0;
            }
        }
    }
}

/// A name as sock_diag reports it, as the image keeps it: a path without its NUL.
fn saved_name(name: &[u8]) -> Vec<u8> {
    let mut saved = name.to_vec();
    if saved.first().is_some_and(|c| *c != 0) {
        while saved.last() == Some(&0) {
            saved.pop();
        }
    }
    saved
}

/// The resource name of a unix socket for `--external` / `--inherit-fd`.
pub fn external_name(ino: u32) -> String {
    format!("unix:[{ino}]")
}

/// Dump side of one unix socket fd (`dup` is our copy of it).
/// File descriptors in flight in its queue (SCM_RIGHTS) are received into our fd table
/// (a peek installs copies) and pushed to `in_flight`; the record names them by those
/// fd numbers until the caller has dumped them and calls `name_in_flight`.
pub fn dump(pid: i32, fd: i32, ino: u64, flags: u32, dup: &OwnedFd, table: &Table, in_flight: &mut Vec<OwnedFd>) -> Result<Object> {
    let refuse = |what: String| Error::Unsupported { pid, what: format!("fd {fd} is a unix {what}") };
    let sys_err = |what: &str, err: std::io::Error| Error::Sys { pid, what: format!("{what} of fd {fd}"), err };
    let d = table.0.get(&(ino as u32)).ok_or_else(|| refuse("socket the kernel's socket table does not list".into()))?;
    let ty = d.typ as i32;
    let tn = type_name(ty);
    if let Some(why) = super::unkept_flags(flags) {
        return Err(refuse(format!("{tn} socket {why}")));
    }
    let s = dup.as_fd();
    let geti = |opt| sys::getsockopt_int(s, libc::SOL_SOCKET, opt);
    let mut u = UnixObj {
        ino: ino as u32,
        sock_type: ty,
        flags: flags & libc::O_NONBLOCK as u32,
        name: saved_name(&d.name),
        shutdown: d.shutdown as u32,
        passcred: geti(libc::SO_PASSCRED).map_err(|e| sys_err("SO_PASSCRED", e))? != 0,
        passsec: geti(libc::SO_PASSSEC).map_err(|e| sys_err("SO_PASSSEC", e))? != 0,
        peek_off: Some(geti(libc::SO_PEEK_OFF).map_err(|e| sys_err("SO_PEEK_OFF", e))?).filter(|v| *v >= 0),
        rcvbuf: geti(libc::SO_RCVBUF).map_err(|e| sys_err("SO_RCVBUF", e))? as u32,
        sndbuf: geti(libc::SO_SNDBUF).map_err(|e| sys_err("SO_SNDBUF", e))? as u32,
        sockopts: super::unixopt::dump(s, ty).map_err(|e| match e {
            super::sockopt::DumpErr::Refuse(why) => refuse(format!("{tn} socket {why}")),
            super::sockopt::DumpErr::Sys(what, e) => sys_err(&what, e),
        })?,
        ..Default::default()
    };
    if let (Some((vino, vdev)), true) = (d.vfs, is_path(&u.name)) {
        // the file bind made: still at the path, or unlinked / replaced since; a
        // relative name is looked for in the working directory
        let at = std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&u.name));
        let relative = u.name[0] != b'/';
        let dir = crate::procfs::dir(pid);
        let here = if relative { format!("{dir}/cwd/{}", at.display()) } else { format!("{dir}/root{}", at.display()) };
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::symlink_metadata(here).ok().filter(|md| {
            md.ino() == vino as u64 && libc::major(md.dev()) == vdev >> 20 && libc::minor(md.dev()) == vdev & 0xfffff
        });
        if relative && md.is_some() {
            u.bound_in = crate::procfs::readlink(&format!("{dir}/cwd")).unwrap_or_default();
        }
        // not there: renamed within its directory since?
        let renamed = if md.is_none() && !relative { renamed_in_dir(&dir, at, vino as u64, vdev) } else { None };
        let md = md.or_else(|| renamed.as_ref().map(|r| r.1.clone()));
        if let Some((to, _)) = renamed {
            u.renamed_to = to;
        }
        u.name_unlinked = md.is_none() && !relative;
        u.file = md.filter(|_| !relative || u.bound_in.starts_with('/')).map(|md| SockFile { uid: md.uid(), gid: md.gid(), mode: md.mode() & 0o777 });
    }
    if d.state == TCP_LISTEN && ty != libc::SOCK_DGRAM {
        // the connections waiting are sorted out by check_peers (ours or outside)
        u.listening = true;
        u.backlog = d.wqueue;
        u.waiting = d.icons.clone();
        // a listener's peer credentials are its own (who called listen()): what the
        // clients that connect get
        u.peer_cred = saved_creds(Some(sys::peer_cred(s).map_err(|e| sys_err("SO_PEERCRED", e))?));
        return Ok(u.into());
    }
    u.peer_ino = d.peer;
    if d.peer != 0 {
        u.peer_name = table.0.get(&d.peer).map(|p| saved_name(&p.name)).unwrap_or_default();
    } else if ty != libc::SOCK_DGRAM && d.state == TCP_ESTABLISHED {
        // The kernel names no peer: it closed (and shut this end down both ways), or the
        // connection waits in a listener's accept queue (its socket has no inode yet).
        if let Some(l) = table.0.values().find(|l| l.state == TCP_LISTEN && l.icons.contains(&u.ino)) {
            u.connecting_to = l.ino;
            u.peer_name = saved_name(&l.name);
            // Bytes already sent sit in the server's end, which has no descriptor until
            // accepted (and accepting cannot be undone): marked so for check_peers,
            // which refuses it or, with --skip-in-flight, drops the connection.
            u.peer_gone = d.wqueue > 0;
        } else if d.shutdown & 3 == 3 {
            u.peer_gone = true;
        } else {
            return Err(refuse(format!("{tn} socket connected to a socket the kernel does not name")));
        }
    } else if ty == libc::SOCK_DGRAM && d.state == TCP_ESTABLISHED {
        // Established and no peer named: a socket others connected to (getpeername:
        // ENOTCONN), or one connected to a socket that closed since — the kernel keeps
        // that one (getpeername shows its name) until the next send, which fails with
        // ECONNREFUSED.
        let peer = sys::sock_name(s, true).map_err(|e| sys_err("getpeername", e))?;
        if !peer.is_empty() {
            u.peer_gone = true;
            u.peer_name = saved_name(peer.get(2..).unwrap_or_default());
        }
    }
    if u.peer_ino != 0 || u.peer_gone {
        u.peer_cred = saved_creds(Some(sys::peer_cred(s).map_err(|e| sys_err("SO_PEERCRED", e))?));
    }
    let _creds = PeekCreds::new(s, u.passcred, u.passsec).map_err(|e| sys_err("turning SO_PASSCRED on to peek", e))?;
    if ty != libc::SOCK_DGRAM && d.state != TCP_ESTABLISHED {
        // never connected: nothing can be queued (and recvmsg says EINVAL)
    } else if ty == libc::SOCK_STREAM {
        let _inline_off = super::unixopt::OobInlineOff::new(s).map_err(|e| sys_err("turning SO_OOBINLINE off to peek", e))?;
        let chunks = match sys::peek_stream_chunks(s) {
            Ok(c) => c,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                return Err(refuse(format!("{tn} socket with ancillary data other than file descriptors queued")))
            }
            Err(e) => return Err(sys_err("peeking the queue", e)),
        };
        for c in chunks {
            let start = u.queue.len() as u64;
            u.queue.extend_from_slice(&c.data);
            if let Some(creds) = saved_creds(c.creds) {
                match u.cred_ranges.last_mut() {
                    Some(r) if r.end == start && r.creds == Some(creds) => r.end = u.queue.len() as u64,
                    _ => u.cred_ranges.push(CredRange { start, end: u.queue.len() as u64, creds: Some(creds) }),
                }
            }
            if !c.fds.is_empty() {
                let objects = c.fds.iter().map(|f| std::os::fd::AsRawFd::as_raw_fd(f) as u32).collect();
                u.in_flight.push(InFlight { start, end: u.queue.len() as u64, objects });
                in_flight.extend(c.fds);
            }
        }
        u.oob_at = super::unixopt::find_oob(s, &mut u).map_err(|e| match e {
            super::sockopt::DumpErr::Refuse(why) => refuse(why),
            super::sockopt::DumpErr::Sys(what, err) => sys_err(&what, err),
        })?;
    } else {
        let msgs = match sys::peek_datagrams(s, MAX_DGRAM, MAX_DGRAM_QUEUE) {
            Ok(q) => q,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                return Err(refuse(format!("{tn} socket with ancillary data other than file descriptors queued")))
            }
            Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                return Err(refuse(format!(
                    "{tn} socket with more queued than stasis saves (a message over {MAX_DGRAM} bytes or over {MAX_DGRAM_QUEUE} in all)"
                )))
            }
            Err(e) => return Err(sys_err("peeking the queued messages", e)),
        };
        for m in msgs {
            // placeholders: our fd numbers, replaced by object ids once they are dumped
            let objects = m.fds.iter().map(|f| std::os::fd::AsRawFd::as_raw_fd(f) as u32).collect();
            u.messages.push(UnixMsg { data: m.data, sender: saved_name(m.sender.get(2..).unwrap_or_default()), objects, creds: saved_creds(m.creds) });
            in_flight.extend(m.fds);
        }
    }
    Ok(u.into())
}

/// Replaces the placeholder fd numbers `dump` left in `u` by object ids (`ids`: our fd
/// number → object id).
pub fn name_in_flight(u: &mut UnixObj, ids: &HashMap<i32, u32>) {
    let name = |v: &mut Vec<u32>| v.iter_mut().for_each(|x| *x = ids.get(&(*x as i32)).copied().unwrap_or(0));
    u.in_flight.iter_mut().for_each(|f| name(&mut f.objects));
    u.messages.iter_mut().for_each(|m| name(&mut m.objects));
}

/// Does restoring `u` send file descriptors (so its queue is filled once every object is
/// open: `requeue_in_flight`)?
pub fn carries_fds(u: &UnixObj) -> bool {
    !u.in_flight.is_empty() || u.messages.iter().any(|m| !m.objects.is_empty())
}

/// Whether some of `u`'s queue carries its sender's credentials (SCM_CREDENTIALS).
pub fn carries_creds(u: &UnixObj) -> bool {
    !u.cred_ranges.is_empty() || u.messages.iter().any(|m| m.creds.is_some())
}

/// Whether `u`'s queue is sent later than the socket is made (`requeue_deferred`, or
/// `requeue_late` for credentials, which name processes that do not exist yet).
fn queue_waits(u: &UnixObj) -> bool {
    carries_fds(u) || carries_creds(u)
}

/// The peers outside the tree (no socket of `objects`) of its stream and seqpacket
/// sockets: `external::scan` names the processes holding them, for `check_peers`.
pub fn outside_peers(objects: &[Object]) -> std::collections::HashSet<u32> {
    let inos: std::collections::HashSet<u32> = objects.iter().filter_map(|o| o.unix().map(|u| u.ino)).collect();
    objects
        .iter()
        .filter_map(|o| o.unix())
        .filter(|u| u.peer_ino != 0 && !inos.contains(&u.peer_ino) && u.sock_type != libc::SOCK_DGRAM)
        .map(|u| u.peer_ino)
        .collect()
}

/// After all fds of the tree: each socket's peer is one of the tree's, or outside it —
/// a datagram socket then reconnects to the peer's name; a stream or seqpacket one is
/// refused, naming the process that holds the peer, unless marked external (`external`:
/// the `--external` names), in which case it is recorded so.
pub fn check_peers(
    holders: &HashMap<u32, String>,
    objects: &mut [Object],
    fds: &[(i32, i32, u32)],
    external: &std::collections::BTreeSet<String>,
    skip_in_flight: bool,
) -> Result<()> {
    let inos: std::collections::HashSet<u32> = objects.iter().filter_map(|o| o.unix().map(|u| u.ino)).collect();
    // connections of the tree waiting to be accepted with bytes already sent (`dump`)
    let mut dropped = std::collections::HashSet::new();
    for o in objects.iter_mut() {
        let id = o.id;
        let Some(u) = o.unix_mut().filter(|u| u.connecting_to != 0 && u.peer_gone) else { continue };
        let (pid, fd) = fds.iter().find(|(_, _, oid)| *oid == id).map(|(p, f, _)| (*p, *f)).unwrap_or((0, -1));
        let what = format!(
            "fd {fd} is a unix {} socket whose connection to {} waits to be accepted with bytes already sent",
            type_name(u.sock_type),
            addr_display(&u.peer_name)
        );
        if !skip_in_flight {
            return Err(Error::Refused {
                pid,
                why: format!(
                    "{what}: they sit in the server's end of the connection, which no process holds until the listener \
                     accepts it, so they cannot be read without accepting it (which cannot be undone); dump again once \
                     the server has accepted it, or use `--skip-in-flight` to drop that connection (after restore the \
                     client finds it closed by the server: EOF, then EPIPE)"
                ),
            });
        }
        tracing::warn!(pid, fd, "{what}: dropped (--skip-in-flight): after restore the client finds it closed by the server");
        dropped.insert(u.ino);
        u.connecting_to = 0;
        u.shutdown = 3; // as the kernel leaves a socket whose peer closed
    }
    for u in objects.iter_mut().filter_map(|o| o.unix_mut()) {
        u.waiting.retain(|c| !dropped.contains(c));
    }
    // listeners: connections from outside the tree waiting to be accepted
    for o in objects.iter_mut() {
        let id = o.id;
        let Some(u) = o.unix_mut().filter(|u| u.listening && !u.waiting.is_empty()) else { continue };
        let outside = u.waiting.iter().filter(|c| !inos.contains(c)).count();
        if outside == 0 {
            continue;
        }
        let (pid, fd) = fds.iter().find(|(_, _, oid)| *oid == id).map(|(p, f, _)| (*p, *f)).unwrap_or((0, -1));
        let what = format!("fd {fd} is a unix {} socket listening on {}", type_name(u.sock_type), addr_display(&u.name));
        if !skip_in_flight {
            return Err(Error::Refused {
                pid,
                why: format!(
                    "{what} with {outside} connections waiting to be accepted whose clients are outside the dumped tree \
                     or closed already; `--skip-in-flight` dumps it without them (a killing dump resets them, so their \
                     clients retry)"
                ),
            });
        }
        tracing::warn!(pid, fd, "{what}: {outside} connections waiting to be accepted from clients outside the tree (or closed) are not saved (--skip-in-flight)");
        u.waiting.retain(|c| inos.contains(c));
    }
    // stream connections to outside processes, not marked: all named in one refusal
    let mut unmarked: Vec<(i32, i32, String, String)> = Vec::new();
    for o in objects.iter_mut() {
        let id = o.id;
        let Some(u) = o.unix_mut() else { continue };
        if u.peer_ino == 0 || inos.contains(&u.peer_ino) {
            continue;
        }
        let (pid, fd) = fds.iter().find(|(_, _, oid)| *oid == id).map(|(p, f, _)| (*p, *f)).unwrap_or((0, -1));
        let tn = type_name(u.sock_type);
        if u.sock_type == libc::SOCK_DGRAM {
            if u.peer_name.is_empty() {
                return Err(Error::Unsupported {
                    pid,
                    what: format!("fd {fd} is a unix datagram socket connected to an unnamed socket outside the dumped tree"),
                });
            }
            continue;
        }
        let res = external_name(u.ino);
        let who = holders.get(&u.peer_ino).cloned().unwrap_or_else(|| "no process (in flight or held by the kernel)".into());
        if external.contains(&res) {
            u.external = format!("connected to socket {} of {who}", u.peer_ino);
            continue;
        }
        unmarked.push((pid, fd, format!("a unix {tn} socket ({res}) connected to socket {} of {who}", u.peer_ino), res));
    }
    let Some((pid, fd, what, res)) = unmarked.first() else { return Ok(()) };
    let (pid, comm) = crate::external::who_in_tree(*pid);
    let why = if unmarked.len() == 1 {
        format!(
            "fd {fd} is {what}, outside the dumped tree; to dump it anyway mark it with `--external {res}` and hand a \
             connected socket over at restore with `--inherit-fd FD:{res}`"
        )
    } else {
        let rest: Vec<String> = unmarked[1..].iter().map(|(p, f, w, r)| format!("pid {p} fd {f} ({r}): {w}")).collect();
        let marks: Vec<String> = unmarked.iter().map(|(.., r)| format!("--external {r}")).collect();
        format!(
            "fd {fd} is {what}, outside the dumped tree, and so are {} more: {}; to dump them anyway mark each \
             (`{}`) and hand connected sockets over at restore with `--inherit-fd FD:unix:[INODE]`",
            rest.len(),
            rest.join("; "),
            marks.join(" ")
        )
    };
    Err(Error::Shared { pid, comm, why })
}

/// Writes a stream queue into the peer; the byte at `oob_at` with MSG_OOB.
fn requeue(into_peer: &OwnedFd, data: &[u8], oob_at: Option<u64>) -> std::io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let _ = sys::setsockopt_int(into_peer.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, (data.len() * 2).min(i32::MAX as usize) as i32);
    let write_all = |data: &[u8]| sys::write_all(into_peer.as_fd(), data);
    match oob_at.map(|p| p as usize).filter(|p| *p < data.len()) {
        Some(p) => {
            write_all(&data[..p])?;
            super::unixopt::send_oob(into_peer.as_fd(), data[p])?;
            write_all(&data[p + 1..])
        }
        None => write_all(data),
    }
}

/// Most directory entries looked at for a renamed socket file.
const RENAME_SCAN: usize = 100_000;

/// The socket file (inode `ino`, device `vdev` as unix_diag gives it) of a socket bound
/// to absolute path `at` that is no longer there, found under another name in the same
/// directory (seen from `dir`, the process's /proc directory, through its root): that
/// path and the file's metadata. None if it is not there (unlinked), or the directory
/// is too large to look through.
fn renamed_in_dir(dir: &str, at: &std::path::Path, ino: u64, vdev: u32) -> Option<(String, std::fs::Metadata)> {
    use std::os::unix::fs::{DirEntryExt, FileTypeExt, MetadataExt};
    let parent = at.parent()?;
    let seen = format!("{dir}/root{}", parent.display());
    for e in std::fs::read_dir(&seen).ok()?.take(RENAME_SCAN) {
        let e = e.ok()?;
        if e.ino() != ino {
            continue;
        }
        let md = std::fs::symlink_metadata(e.path()).ok()?;
        if md.file_type().is_socket() && md.ino() == ino && libc::major(md.dev()) == vdev >> 20 && libc::minor(md.dev()) == vdev & 0xfffff {
            let name = e.file_name();
            return Some((parent.join(name).to_str()?.to_string(), md));
        }
    }
    None
}

/// Whether a unix address is a path (absolute or relative), not abstract or empty.
fn is_path(name: &[u8]) -> bool {
    name.first().is_some_and(|c| *c != 0)
}

/// Whether `u` is bound to a path that must get no file on the host: its file was
/// unlinked or replaced (dump), or the path is relative and its file was not in the
/// working directory at dump (bound relative to a directory restore cannot tell, so it
/// is never looked up from the restorer's). Bound in a private root
/// (`ns::with_private_dirs`): the name only.
fn private_path(u: &UnixObj) -> bool {
    is_path(&u.name) && (u.name_unlinked || (u.name[0] != b'/' && u.bound_in.is_empty()))
}

/// The socket file of a path-bound socket as the restorer reaches it: its name, or for
/// a relative name the directory it was bound in joined with it.
fn file_path(u: &UnixObj) -> std::path::PathBuf {
    let name = std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&u.name));
    std::path::Path::new(&u.bound_in).join(name)
}

/// Where the socket file of a path-bound socket is once restored: `file_path`, or the
/// name it was renamed to.
fn final_path(u: &UnixObj) -> std::path::PathBuf {
    if u.renamed_to.is_empty() { file_path(u) } else { std::path::PathBuf::from(&u.renamed_to) }
}

/// A socket of the tree that can send a queued message as its sender into a
/// receiver: its fd, inode and saved SO_SNDBUF.
type RealSender<'f> = (std::os::fd::BorrowedFd<'f>, u32, u32);

/// The socket of the tree (of `objects`) that can send into the unconnected receiver
/// `to` (in network namespace `net_ns`) as sender `name`: of the same type, bound to
/// that name (an abstract one in the same network namespace), not listening, not shut
/// down for sending, not handed over at restore.
fn real_sender<'o>(objects: &'o [Object], net_ns: u64, to: &UnixObj, name: &[u8]) -> Option<(&'o Object, &'o UnixObj)> {
    // (images of older dumps keep a path sender's NUL)
    let name = saved_name(name);
    if name.is_empty() {
        return None;
    }
    objects.iter().filter_map(|o| Some((o, o.unix()?))).find(|(o, x)| {
        x.name == name
            && x.sock_type == to.sock_type
            && !x.listening
            && x.shutdown & 2 == 0
            && x.external.is_empty()
            && (is_path(&name) || o.net_ns == net_ns)
    })
}

/// The sockets that send queued messages into one receiver so that recvfrom there
/// shows each message's sender (the kernel reads the sending socket's address when the
/// message is read): a socket of the tree bound to that name (`real`, with sendto —
/// the message is then charged to it as it was), else a new socket bound to it — an
/// abstract name in the current network namespace when it is free, a path in a
/// private root (`ns::with_private_dirs`: no file on the host, whatever the path) —
/// else an unnamed one (a warning names the sender). Every message goes with sendto
/// to the receiver's address.
struct Senders<'a, 'f> {
    ty: i32,
    real: &'a dyn Fn(&[u8]) -> Option<RealSender<'f>>,
    made: HashMap<Vec<u8>, OwnedFd>,
    used: Vec<RealSender<'f>>,
}

impl<'a, 'f> Senders<'a, 'f> {
    fn new(ty: i32, real: &'a dyn Fn(&[u8]) -> Option<RealSender<'f>>) -> Senders<'a, 'f> {
        Senders { ty, real, made: HashMap::new(), used: Vec::new() }
    }

    fn get(&mut self, name: &[u8]) -> std::io::Result<std::os::fd::BorrowedFd<'_>> {
        let big = i32::MAX / 2;
        if let Some((fd, ino, sndbuf)) = (self.real)(name) {
            if !self.used.iter().any(|(_, i, _)| *i == ino) {
                // its saved buffer comes back with `reset`
                sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, big)?;
                self.used.push((fd, ino, sndbuf));
            }
            return Ok(fd);
        }
        if !self.made.contains_key(name) {
            let s = sys::socket(libc::AF_UNIX, self.ty, 0)?;
            let _ = sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, big);
            let addr = sockaddr(name);
            let bound = if name.is_empty() {
                Ok(())
            } else if is_path(name) {
                let fd = s.as_fd();
                crate::ns::with_private_dirs(&parents(&[name]), move || sys::sock_addr_op(fd, &addr, false))
            } else {
                sys::sock_addr_op(s.as_fd(), &addr, false)
            };
            if let Err(e) = bound {
                tracing::warn!("a queued message's sender {} cannot be named again ({e}): its messages come back from an unnamed socket", addr_display(name));
            }
            self.made.insert(name.to_vec(), s);
        }
        Ok(self.made[name].as_fd())
    }

    /// The sockets of the tree that sent get their saved options back.
    fn reset(&self) -> std::io::Result<()> {
        let saved = self.used.iter().filter(|(_, _, b)| *b > 0);
        saved.into_iter().try_for_each(|(fd, _, b)| sys::setsockopt_int(*fd, libc::SOL_SOCKET, libc::SO_SNDBUF, (b / 2) as i32))
    }
}

/// Sends each message, in order, to `to` (a raw sockaddr) from a socket of its
/// sender's name (`Senders`, no socket of the tree).
fn requeue_messages(ty: i32, to: &[u8], msgs: &[UnixMsg]) -> std::io::Result<()> {
    let mut senders = Senders::new(ty, &|_| None);
    for m in msgs {
        sys::sendmsg_fds(senders.get(&m.sender)?, &m.data, &[], to)?;
    }
    Ok(())
}

/// Sends each message, in order, from `from` to its connected peer (one end of a pair).
fn requeue_to_peer(from: &OwnedFd, msgs: &[UnixMsg]) -> std::io::Result<()> {
    if msgs.is_empty() {
        return Ok(());
    }
    let biggest = msgs.iter().map(|m| m.data.len()).max().unwrap_or(0);
    let _ = sys::setsockopt_int(from.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, (biggest * 2 + 4096).min(i32::MAX as usize) as i32);
    for m in msgs {
        sys::sendmsg_fds(from.as_fd(), &m.data, &[], &[])?;
    }
    Ok(())
}

/// Options of a restored socket (before bind: SO_PASSCRED on an unbound socket would
/// autobind it on connect, as it did originally).
fn apply_options(s: impl AsFd, u: &UnixObj) -> std::io::Result<()> {
    let f = s.as_fd();
    let sol = libc::SOL_SOCKET;
    if u.rcvbuf > 0 {
        sys::setsockopt_int(f, sol, libc::SO_RCVBUF, (u.rcvbuf / 2) as i32)?;
    }
    if u.sndbuf > 0 {
        sys::setsockopt_int(f, sol, libc::SO_SNDBUF, (u.sndbuf / 2) as i32)?;
    }
    if u.passcred {
        sys::setsockopt_int(f, sol, libc::SO_PASSCRED, 1)?;
    }
    if u.passsec {
        sys::setsockopt_int(f, sol, libc::SO_PASSSEC, 1)?;
    }
    super::unixopt::apply(f, u, super::inet::options::When::Early).map_err(std::io::Error::other)
}

/// Last touches once the queues are in (`queued`; else the options that wait for the
/// queue are set by `requeue_set`): the table's late options, SO_PEEK_OFF, O_NONBLOCK.
fn finish(s: &OwnedFd, u: &UnixObj, queued: bool) -> std::result::Result<(), String> {
    if queued {
        super::unixopt::apply(s.as_fd(), u, super::inet::options::When::Late)?;
    }
    if let Some(off) = u.peek_off {
        sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_PEEK_OFF, off).map_err(|e| format!("SO_PEEK_OFF: {e}"))?;
    }
    super::apply_nonblock(s, u.flags)
}

/// sockaddr_un bytes for a saved name (a path gets its NUL back).
fn sockaddr(name: &[u8]) -> Vec<u8> {
    let mut addr = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
    addr.extend_from_slice(name);
    if name.first().is_some_and(|c| *c != 0) {
        addr.push(0);
    }
    addr
}

/// Sockets of the restore so far, by inode: made before their own fd was opened (the
/// other end of a pair, a peer made so that a socket could connect to it) and waiting
/// for it, or done.
#[derive(Default)]
pub struct Made {
    pending: HashMap<u32, OwnedFd>,
    done: std::collections::HashSet<u32>,
    /// Sockets whose queue (and shutdown) waits for `requeue_deferred`: fds travel in it
    /// or in its peer's, and their objects may not be open yet.
    deferred: std::collections::HashSet<u32>,
    /// The sending end kept for a deferred socket whose peer had closed.
    senders: HashMap<u32, OwnedFd>,
    /// O_PATH descriptors of the socket files of sockets bound in a private root
    /// (`private_path`): their names cannot be reached from here, these can
    /// (`address`).
    reach: HashMap<u32, OwnedFd>,
}

/// `Made::address` from its `reach` (or `Late`'s copy of it).
fn reach_address(reach: &HashMap<u32, OwnedFd>, ino: u32, name: &[u8]) -> Vec<u8> {
    match reach.get(&ino) {
        Some(f) => sockaddr(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(f)).as_bytes()),
        None => sockaddr(name),
    }
}

/// Sockets whose queues carry credentials, sent once every process of the tree exists
/// (`requeue_late`): copies of the fds that takes (the sockets, their peers, the
/// objects in flight), the sending ends kept for sockets whose peer had closed, and the
/// network namespaces they live in (filled by files.rs).
#[derive(Default)]
pub struct Late {
    inos: std::collections::HashSet<u32>,
    fds: HashMap<u32, OwnedFd>,
    senders: HashMap<u32, OwnedFd>,
    reach: HashMap<u32, OwnedFd>,
    pub netns: HashMap<u64, OwnedFd>,
}

impl Late {
    /// The network namespaces (ns inodes, 0 = ours) of its sockets.
    pub fn namespaces(&self, objects: &[Object]) -> Vec<u64> {
        objects.iter().filter(|o| o.unix().is_some_and(|u| self.inos.contains(&u.ino))).map(|o| o.net_ns).collect()
    }
}

impl Made {
    /// The address to connect to socket `ino` of the tree bound to `name`: its name, or
    /// for one bound in a private root the /proc/self/fd link of its socket file
    /// (the connected socket's getpeername still shows `name`).
    fn address(&self, ino: u32, name: &[u8]) -> Vec<u8> {
        reach_address(&self.reach, ino, name)
    }

    fn insert(&mut self, ino: u32, s: OwnedFd) {
        self.pending.insert(ino, s);
    }

    fn take(&mut self, ino: u32) -> Option<OwnedFd> {
        self.done.insert(ino);
        self.pending.remove(&ino)
    }

    fn exists(&self, ino: u32) -> bool {
        self.pending.contains_key(&ino) || self.done.contains(&ino)
    }
}

/// Restore side: the socket of fd `fd` (of `pid`).
pub fn open_end(pid: i32, fd: i32, objects: &[Object], u: &UnixObj, made: &mut Made, inherit: &crate::external::Inherited) -> Result<OwnedFd> {
    let step = |why: String| Error::RestoreStep { pid, step: "opening files".into(), why: format!("fd {fd}: unix {} socket: {why}", type_name(u.sock_type)) };
    if !u.external.is_empty() {
        let res = external_name(u.ino);
        let s = inherit.dup(&res).map_err(|e| Error::RestoreRefused(format!("pid {pid} fd {fd}: {res} ({}): {e}", u.external)))?;
        super::apply_nonblock(&s, u.flags).map_err(step)?;
        return Ok(s);
    }
    if let Some(s) = made.take(u.ino) {
        finish(&s, u, !made.deferred.contains(&u.ino)).map_err(step)?;
        return Ok(s);
    }
    let peer = objects.iter().filter_map(|o| o.unix()).find(|p| u.peer_ino != 0 && p.ino == u.peer_ino);
    let s = match peer {
        Some(p) if p.peer_ino == u.ino => {
            let a = open_pair(u, p, made).map_err(|e| step(format!("socket pair: {e}")))?;
            if u.sock_type == libc::SOCK_DGRAM {
                // names a datagram pair's ends had (bound after the pair was made, or
                // two named sockets connected to each other): what recvfrom and
                // getpeername show
                bind_own_name(pid, &format!("fd {fd}"), &a, u)?;
                if let Some(b) = made.pending.get(&p.ino) {
                    bind_own_name(pid, &format!("the peer of fd {fd}"), b, p)?;
                }
            }
            a
        }
        _ if u.peer_gone => {
            let (a, b) = super::unixopt::socketpair(u.sock_type, u.peer_cred.as_ref()).map_err(|e| step(format!("socketpair: {e}")))?;
            apply_options(&a, u).map_err(|e| step(format!("options: {e}")))?;
            if u.sock_type == libc::SOCK_DGRAM {
                // its own name, and the closed peer's as getpeername and recvfrom show
                // it (bound privately: the closed socket's file is not the tree's)
                bind_own_name(pid, &format!("fd {fd}"), &a, u)?;
                let gone = UnixObj { name: u.peer_name.clone(), name_unlinked: true, sock_type: u.sock_type, ..Default::default() };
                if let Err(e) = bind_own_name(pid, &format!("the closed peer of fd {fd}"), &b, &gone) {
                    tracing::warn!(pid, fd, "the closed peer's name {} is not kept: {e}", addr_display(&u.peer_name));
                }
            }
            if queue_waits(u) {
                made.deferred.insert(u.ino);
                made.senders.insert(u.ino, b); // closed once the queue is in
            } else {
                requeue(&b, &u.queue, u.oob_at).map_err(|e| step(format!("requeueing {} bytes: {e}", u.queue.len())))?;
                requeue_to_peer(&b, &u.messages).map_err(|e| step(format!("requeueing messages: {e}")))?;
                drop(b); // the peer had closed
            }
            a
        }
        _ => make_alone(pid, fd, objects, u, made, &mut Vec::new())?,
    };
    made.done.insert(u.ino);
    finish(&s, u, !made.deferred.contains(&u.ino)).map_err(step)?;
    Ok(s)
}

/// The parent directory of each path name among `names` (relative ones relative).
fn parents(names: &[&[u8]]) -> Vec<std::path::PathBuf> {
    names
        .iter()
        .filter(|n| is_path(n))
        .filter_map(|n| std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(n)).parent().map(|p| p.to_path_buf()))
        .filter(|p| !p.as_os_str().is_empty())
        .collect()
}

/// A connected stream/seqpacket pair whose accepted end has a name (the listener's):
/// made by accepting from a throwaway listener bound to that name — privately for a
/// path (no host file), in the current namespace for an abstract name — so both
/// getsockname of the accepted end and getpeername of the other show it. The client
/// end is bound to its own name first if it had one. Returns (accepted, client).
fn named_pair(ty: i32, accepted: &[u8], client: &[u8], creds: [Option<&MsgCreds>; 2]) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let make = || -> std::io::Result<(OwnedFd, OwnedFd)> {
        let l = sys::socket(libc::AF_UNIX, ty, 0)?;
        sys::sock_addr_op(l.as_fd(), &sockaddr(accepted), false)?;
        // the client's peer credentials are the listener's, the accepted end's the client's
        super::unixopt::listen(l.as_fd(), 1, creds[1])?;
        let c = sys::socket(libc::AF_UNIX, ty, 0)?;
        if !client.is_empty() {
            sys::sock_addr_op(c.as_fd(), &sockaddr(client), false)?;
        }
        super::unixopt::connect(c.as_fd(), &sockaddr(accepted), creds[0])?;
        Ok((sys::accept(l.as_fd())?, c))
    };
    if is_path(accepted) || is_path(client) {
        crate::ns::with_private_dirs(&parents(&[accepted, client]), make)
    } else {
        make()
    }
}

/// Before any socket is opened: the connected pairs whose accepted end has an abstract
/// name are made first (`open_pair`), while that name is still free — a listener of the
/// tree bound to it later would otherwise keep the throwaway listener of `named_pair`
/// from binding. Returns the objects (ids) to make this way.
pub fn abstract_pairs(objects: &[Object]) -> Vec<u32> {
    let unix: HashMap<u32, &UnixObj> = objects.iter().filter_map(|o| o.unix()).map(|u| (u.ino, u)).collect();
    objects
        .iter()
        .filter(|o| {
            o.unix().is_some_and(|u| {
                u.sock_type != libc::SOCK_DGRAM
                    && u.name.first() == Some(&0)
                    && unix.get(&u.peer_ino).is_some_and(|p| p.peer_ino == u.ino)
            })
        })
        .map(|o| o.id)
        .collect()
}

/// Makes the pair of `u` (one of `abstract_pairs`) now; both ends wait in `made`.
pub fn premake_pair(pid: i32, objects: &[Object], u: &UnixObj, made: &mut Made) -> Result<()> {
    if made.exists(u.ino) {
        return Ok(());
    }
    let Some(p) = objects.iter().filter_map(|o| o.unix()).find(|p| p.ino == u.peer_ino) else { return Ok(()) };
    let a = open_pair(u, p, made).map_err(|e| Error::RestoreStep {
        pid,
        step: "opening files".into(),
        why: format!("unix {} socket pair {}: {e}", type_name(u.sock_type), addr_display(&u.name)),
    })?;
    made.insert(u.ino, a);
    Ok(())
}

/// Two sockets connected to each other: socketpair (or `named_pair` when one end is an
/// accepted connection with a name), queues, shutdown; the peer is kept in `made` for
/// its own fd.
fn open_pair(u: &UnixObj, peer: &UnixObj, made: &mut Made) -> std::io::Result<OwnedFd> {
    let named = |x: &UnixObj, y: &UnixObj| {
        // x accepted (has the listener's name), y the client (its own name, if any)
        if u.sock_type == libc::SOCK_DGRAM || x.name.is_empty() {
            return None;
        }
        named_pair(u.sock_type, &x.name, &y.name, [x.peer_cred.as_ref(), y.peer_cred.as_ref()])
            .inspect_err(|e| tracing::debug!("unix pair {}/{} through a named listener: {e}; socketpair instead", x.ino, y.ino))
            .ok()
    };
    // the accepted end is the one with a name (both named: the client bound itself too;
    // the server end cannot be told apart then, take u)
    let pair = if !u.name.is_empty() { named(u, peer) } else { named(peer, u).map(|(acc, cli)| (cli, acc)) };
    let (a, b) = match pair {
        Some(p) => p,
        None => super::unixopt::socketpair(u.sock_type, u.peer_cred.as_ref())?,
    };
    apply_options(&a, u)?;
    apply_options(&b, peer)?;
    if queue_waits(u) || queue_waits(peer) {
        // filled by requeue_deferred once every object is open
        made.deferred.extend([u.ino, peer.ino]);
        made.insert(peer.ino, b);
        return Ok(a);
    }
    // a = this end, b = the peer: what is queued for reading on a was sent by b
    requeue(&b, &u.queue, u.oob_at)?;
    requeue(&a, &peer.queue, peer.oob_at)?;
    requeue_to_peer(&b, &u.messages)?;
    requeue_to_peer(&a, &peer.messages)?;
    // the requeues raised the senders' buffers: set them back
    apply_options(&a, u)?;
    apply_options(&b, peer)?;
    super::apply_shutdown(&a, u.shutdown)?;
    super::apply_shutdown(&b, peer.shutdown)?;
    made.insert(peer.ino, b);
    Ok(a)
}

/// A socket that is not one end of a pair: made alone, bound, filled, listening or
/// connected by name. `making`: inodes being made up the call chain (a peer that is
/// one of them is bound already).
fn make_alone(pid: i32, fd: i32, objects: &[Object], u: &UnixObj, made: &mut Made, making: &mut Vec<u32>) -> Result<OwnedFd> {
    let name = addr_display(&u.name);
    let tn = type_name(u.sock_type);
    let step = |why: String| Error::RestoreStep { pid, step: "opening files".into(), why: format!("fd {fd}: unix {tn} socket {name}: {why}") };
    let find = |ino: u32| objects.iter().filter_map(|o| o.unix()).find(|p| p.ino == ino);
    if u.connecting_to != 0 && !making.contains(&u.connecting_to) {
        // waiting in the accept queue of a listener of the tree: the listener, once made,
        // connects its waiting sockets in their order, this one among them
        if let Some(l) = find(u.connecting_to).filter(|l| !made.exists(l.ino)) {
            making.push(l.ino);
            let ls = make_alone(pid, fd, objects, l, made, making);
            making.pop();
            made.insert(l.ino, ls?);
            if let Some(s) = made.pending.remove(&u.ino) {
                return Ok(s);
            }
        }
    }
    // A peer of the tree it connects to (a datagram client → its server) is made first,
    // so that it exists to connect to. (Chains end: two sockets connected to each other
    // are a pair, and a cycle of three or more one-way connections cannot exist — the
    // kernel refuses to connect to a socket connected to another.)
    if !u.listening && u.connecting_to == 0 && u.peer_ino != 0 {
        if let Some(p) = find(u.peer_ino).filter(|p| !made.exists(p.ino) && !making.contains(&p.ino)) {
            making.push(u.ino);
            let ps = make_alone(pid, fd, objects, p, made, making);
            making.pop();
            made.insert(p.ino, ps?);
        }
    }
    let s = sys::socket(libc::AF_UNIX, u.sock_type, 0).map_err(|e| step(format!("socket: {e}")))?;
    apply_options(&s, u).map_err(|e| step(format!("options: {e}")))?;
    if u.sock_type == libc::SOCK_SEQPACKET && !u.messages.is_empty() {
        return Err(step("seqpacket records queued on a socket that is not one end of a pair".into()));
    }
    let net_ns = objects.iter().find(|o| o.unix().is_some_and(|x| x.ino == u.ino)).map_or(0, |o| o.net_ns);
    if queue_waits(u) || (u.peer_ino == 0 && u.messages.iter().any(|m| real_sender(objects, net_ns, u, &m.sender).is_some())) {
        // fds in flight (once every object is open), credentials (once every process
        // exists), or messages that sockets of the tree sent (from those, whose names
        // may be taken already, once every socket is open): later, to its name or, when
        // bound privately, through its socket file (`Made::address`)
        made.deferred.insert(u.ino);
    }
    // the messages, sent to its name (validate: a socket with messages and no pair has
    // one), now unless they carry fds
    let msgs: &[UnixMsg] = if made.deferred.contains(&u.ino) { &[] } else { &u.messages };
    if private_path(u) {
        // its file was gone at dump time (or the path is relative): the name only, no
        // file on the host; the messages go in while the name can be reached (in that
        // private root)
        let fd_ = s.as_fd();
        let name_ = u.name.clone();
        let ty = u.sock_type;
        let reach = crate::ns::with_private_dirs(&parents(&[&u.name]), move || {
            sys::sock_addr_op(fd_, &sockaddr(&name_), false)?;
            requeue_messages(ty, &sockaddr(&name_), msgs)?;
            // its file, for the sockets of the tree that connect to it
            socket_file(std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&name_)))
        })
        .map_err(|e| step(format!("bind and requeue (without a file on the host): {e}")))?;
        made.reach.insert(u.ino, reach);
    } else {
        bind_own_name(pid, &format!("fd {fd}"), &s, u)?;
        if !u.bound_in.is_empty() || !u.renamed_to.is_empty() {
            // a relative name means nothing from here, a renamed file is elsewhere: the
            // sockets of the tree that connect to it, and its messages, reach it
            // through its file
            let f = socket_file(&final_path(u)).map_err(|e| step(format!("its socket file {}: {e}", final_path(u).display())))?;
            made.reach.insert(u.ino, f);
        }
        let to = made.address(u.ino, &u.name);
        requeue_messages(u.sock_type, &to, msgs).map_err(|e| step(format!("requeueing {} messages: {e}", msgs.len())))?;
    }
    if u.listening {
        super::unixopt::listen(s.as_fd(), u.backlog as i32, u.peer_cred.as_ref()).map_err(|e| step(format!("listen: {e}")))?;
        // its waiting connections from the tree, in their order
        for &w in &u.waiting {
            let Some(c) = find(w).filter(|_| !made.exists(w)) else { continue };
            making.push(u.ino);
            let cs = make_alone(pid, fd, objects, c, made, making);
            making.pop();
            made.insert(w, cs?);
        }
    } else if u.connecting_to != 0 {
        // never blocks: the listener's queue had room for it (validate: waiting <= backlog + 1)
        sys::fcntl(std::os::fd::AsRawFd::as_raw_fd(&s), libc::F_SETFL, libc::O_NONBLOCK as i64).map_err(|e| step(format!("O_NONBLOCK: {e}")))?;
        sys::sock_addr_op(s.as_fd(), &made.address(u.connecting_to, &u.peer_name), true)
            .map_err(|e| step(format!("connecting to {} again: {e}", addr_display(&u.peer_name))))?;
        sys::fcntl(std::os::fd::AsRawFd::as_raw_fd(&s), libc::F_SETFL, 0).map_err(|e| step(format!("O_NONBLOCK: {e}")))?;
    } else if u.peer_ino != 0 {
        // a peer of the tree was made above (or is bound up the call chain)
        let target = find(u.peer_ino).map(|p| p.name.clone()).unwrap_or_else(|| u.peer_name.clone());
        if target.is_empty() {
            return Err(step(format!("its peer (socket {}) has no name to connect to", u.peer_ino)));
        }
        sys::sock_addr_op(s.as_fd(), &made.address(u.peer_ino, &target), true)
            .map_err(|e| step(format!("connecting to {}: {e}", addr_display(&target))))?;
    }
    if !made.deferred.contains(&u.ino) {
        super::apply_shutdown(&s, u.shutdown).map_err(|e| step(format!("shutdown: {e}")))?;
    }
    Ok(s)
}

/// Objects sent in flight by the sockets of `objects` (SCM_RIGHTS), in order, each once.
pub fn in_flight_objects(objects: &[Object]) -> Vec<u32> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for u in objects.iter().filter_map(|o| o.unix()) {
        let ids = u.in_flight.iter().flat_map(|f| f.objects.iter()).chain(u.messages.iter().flat_map(|m| m.objects.iter()));
        for &id in ids {
            if seen.insert(id) {
                out.push(id);
            }
        }
    }
    out
}

/// Runs a closure in an object's network namespace (files.rs in_socket_ns).
pub type RunInNs<'a> = dyn Fn(&Object, &mut (dyn FnMut() -> Result<()> + Send)) -> Result<()> + 'a;

/// Once every object is open (`by_object`: object id → fd): the queues that wait for
/// fds in flight, sent with them (SCM_RIGHTS) from the socket's peer, its kept sending
/// end (peer closed) or an unnamed socket to its name; then the shutdowns held back.
/// Queues carrying credentials (theirs or their pair's) wait longer: returned as `Late`
/// with copies of what `requeue_late` needs. `run_in_ns` runs a closure in an object's
/// network namespace.
pub fn requeue_deferred(
    pid: i32,
    objects: &[Object],
    by_object: &HashMap<u32, OwnedFd>,
    made: &mut Made,
    run_in_ns: &RunInNs,
) -> Result<Late> {
    let mut late = Late::default();
    if made.deferred.is_empty() {
        return Ok(late);
    }
    let unix: HashMap<u32, &UnixObj> = objects.iter().filter_map(|o| o.unix()).map(|u| (u.ino, u)).collect();
    let group_creds = |ino: &u32| {
        let u = unix.get(ino);
        u.is_some_and(|u| carries_creds(u) || (made.deferred.contains(&u.peer_ino) && unix.get(&u.peer_ino).is_some_and(|p| carries_creds(p))))
    };
    late.inos = made.deferred.iter().filter(|i| group_creds(i)).copied().collect();
    let now: std::collections::HashSet<u32> = made.deferred.difference(&late.inos).copied().collect();
    let fd_of = |id: u32| by_object.get(&id).map(|f| f.as_fd());
    requeue_set(pid, objects, &fd_of, &now, &mut made.senders, &made.reach, run_in_ns)?;
    // what requeue_late will need, copied (the originals move into the processes)
    let step = |why: String| Error::RestoreStep { pid, step: "opening files".into(), why };
    let id_of: HashMap<u32, u32> = objects.iter().filter_map(|o| o.unix().map(|u| (u.ino, o.id))).collect();
    for o in objects {
        let Some(u) = o.unix().filter(|u| late.inos.contains(&u.ino)) else { continue };
        let ids = std::iter::once(o.id)
            .chain(id_of.get(&u.peer_ino).copied().filter(|_| u.peer_ino != 0))
            .chain(u.in_flight.iter().flat_map(|f| f.objects.iter().copied()))
            .chain(u.messages.iter().flat_map(|m| m.objects.iter().copied()))
            .chain(u.messages.iter().filter_map(|m| real_sender(objects, o.net_ns, u, &m.sender).map(|(x, _)| x.id)));
        for id in ids {
            if let (false, Some(f)) = (late.fds.contains_key(&id), by_object.get(&id)) {
                late.fds.insert(id, f.try_clone().map_err(|e| step(format!("keeping object {id} for a queue with credentials: {e}")))?);
            }
        }
        if let Some(b) = made.senders.remove(&u.ino) {
            late.senders.insert(u.ino, b);
        }
        if let Some(f) = made.reach.remove(&u.ino) {
            late.reach.insert(u.ino, f);
        }
    }
    made.deferred.clear();
    Ok(late)
}

/// Once every process of the tree exists (stopped, before any runs): the queues whose
/// messages carry credentials, each sent with its sender's pid, uid and gid (a sender
/// outside the tree, or one that does not exist: the restorer's pid with the saved uid
/// and gid); then their shutdowns.
pub fn requeue_late(pid: i32, objects: &[Object], late: &mut Late, run_in_ns: &RunInNs) -> Result<()> {
    if late.inos.is_empty() {
        return Ok(());
    }
    let fds = std::mem::take(&mut late.fds);
    let fd_of = |id: u32| fds.get(&id).map(|f| f.as_fd());
    let inos = std::mem::take(&mut late.inos);
    requeue_set(pid, objects, &fd_of, &inos, &mut late.senders, &late.reach, run_in_ns)
}

/// Sends SCM_CREDENTIALS `c` (the restorer's pid for a sender outside the tree or one
/// that is gone) with `data` and `fds`; returns the bytes sent.
fn send_with(from: std::os::fd::BorrowedFd, data: &[u8], fds: &[std::os::fd::BorrowedFd], c: Option<&MsgCreds>, to: &[u8]) -> std::io::Result<usize> {
    let Some(c) = c else { return sys::sendmsg_fds(from, data, fds, to) };
    let me = sys::getpid();
    let creds = |pid: i32| Some(sys::Creds { pid, uid: c.uid, gid: c.gid });
    match sys::sendmsg_creds(from, data, fds, creds(if c.pid == 0 { me } else { c.pid }), to) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) && c.pid != 0 => {
            tracing::warn!(sender = c.pid, "a queued message's sender does not exist at restore: it carries the restorer's pid");
            sys::sendmsg_creds(from, data, fds, creds(me), to)
        }
        r => r,
    }
}

/// The queues of sockets `inos` (fds of objects by `fd_of`), sent from the socket's
/// peer, its kept sending end (`senders`, peer closed) or an unnamed socket to its name,
/// with their fds in flight and credentials; then their options and shutdowns.
fn requeue_set<'f>(
    pid: i32,
    objects: &[Object],
    fd_of: &(dyn Fn(u32) -> Option<std::os::fd::BorrowedFd<'f>> + Sync),
    inos: &std::collections::HashSet<u32>,
    senders: &mut HashMap<u32, OwnedFd>,
    reach: &HashMap<u32, OwnedFd>,
    run_in_ns: &RunInNs,
) -> Result<()> {
    if inos.is_empty() {
        return Ok(());
    }
    let id_of: HashMap<u32, u32> = objects.iter().filter_map(|o| o.unix().map(|u| (u.ino, o.id))).collect();
    let step = |why: String| Error::RestoreStep { pid, step: "opening files".into(), why };
    let fd_of = |id: u32| fd_of(id).ok_or_else(|| step(format!("object {id} (in flight or a socket end) was not opened")));
    let deferred: Vec<&Object> = objects.iter().filter(|o| o.unix().is_some_and(|u| inos.contains(&u.ino))).collect();
    for o in &deferred {
        let Some(u) = o.unix() else { continue };
        let what = |e: std::io::Error| step(format!("unix {} socket (inode {}): requeueing with file descriptors or credentials: {e}", type_name(u.sock_type), u.ino));
        let sender_kept = senders.remove(&u.ino);
        let peer_id = id_of.get(&u.peer_ino).copied().filter(|_| u.peer_ino != 0);
        let mut send = || -> Result<()> {
            let temp;
            let (from, to): (std::os::fd::BorrowedFd, Vec<u8>) = if let Some(b) = &sender_kept {
                (b.as_fd(), Vec::new())
            } else if let Some(pid_) = peer_id {
                (fd_of(pid_)?, Vec::new())
            } else {
                temp = sys::socket(libc::AF_UNIX, u.sock_type, 0).map_err(what)?;
                (temp.as_fd(), reach_address(reach, u.ino, &u.name))
            };
            let _ = sys::setsockopt_int(from, libc::SOL_SOCKET, libc::SO_SNDBUF, i32::MAX / 2);
            let fds = |ids: &[u32]| -> Result<Vec<std::os::fd::BorrowedFd>> { ids.iter().map(|&i| fd_of(i)).collect() };
            let send_all = |data: &[u8], fds: &[std::os::fd::BorrowedFd], creds: Option<&MsgCreds>| -> Result<()> {
                // the fds go with the first piece
                let mut off = send_with(from, data, fds, creds, &to).map_err(what)?;
                while off < data.len() {
                    off += send_with(from, &data[off..], &[], creds, &to).map_err(what)?;
                }
                Ok(())
            };
            // the stream queue in pieces: cut where fds travel and where the writer
            // (credentials) changes
            let mut cuts: Vec<usize> = vec![0, u.queue.len()];
            cuts.extend(u.in_flight.iter().flat_map(|f| [f.start as usize, f.end as usize]));
            cuts.extend(u.cred_ranges.iter().flat_map(|r| [r.start as usize, r.end as usize]));
            cuts.sort_unstable();
            cuts.dedup();
            for w in cuts.windows(2) {
                let (a, b) = (w[0], w[1]);
                let f = u.in_flight.iter().find(|f| f.start as usize == a && f.end as usize == b);
                let c = u.cred_ranges.iter().find(|r| r.start as usize <= a && b <= r.end as usize).and_then(|r| r.creds.as_ref());
                send_all(&u.queue[a..b], &fds(f.map(|f| &f.objects[..]).unwrap_or(&[]))?, c)?;
            }
            if sender_kept.is_some() || peer_id.is_some() {
                for m in &u.messages {
                    send_with(from, &m.data, &fds(&m.objects)?, m.creds.as_ref(), &to).map_err(what)?;
                }
                return Ok(());
            }
            // to its name, each from a socket of its sender's name
            let real = |name: &[u8]| {
                let (x, xu) = real_sender(objects, o.net_ns, u, name)?;
                Some((fd_of(x.id).ok()?, xu.ino, xu.sndbuf))
            };
            let mut senders = Senders::new(u.sock_type, &real);
            for m in &u.messages {
                send_with(senders.get(&m.sender).map_err(what)?, &m.data, &fds(&m.objects)?, m.creds.as_ref(), &to).map_err(what)?;
            }
            senders.reset().map_err(what)
        };
        run_in_ns(o, &mut send)?;
    }
    for o in &deferred {
        let Some(u) = o.unix() else { continue };
        let s = fd_of(o.id)?;
        // the sender's buffer was raised: the saved options again
        apply_options(s, u).map_err(|e| step(format!("unix socket (inode {}): options: {e}", u.ino)))?;
        super::unixopt::apply(s, u, super::inet::options::When::Late).map_err(|e| step(format!("unix socket (inode {}): options: {e}", u.ino)))?;
        super::apply_shutdown(s, u.shutdown).map_err(|e| step(format!("unix socket (inode {}): shutdown: {e}", u.ino)))?;
    }
    Ok(())
}

/// Binds `s` to `u`'s name, if it has one: an abstract name; a path privately (no
/// file on the host: `private_path`); a path it still owns with its file
/// (`bind_path`).
fn bind_own_name(pid: i32, who: &str, s: &OwnedFd, u: &UnixObj) -> Result<()> {
    let step = |e: std::io::Error| Error::RestoreStep {
        pid,
        step: "opening files".into(),
        why: format!("{who}: unix {} socket: bind to {}: {e}", type_name(u.sock_type), addr_display(&u.name)),
    };
    let addr = sockaddr(&u.name);
    if u.name.is_empty() {
        Ok(())
    } else if private_path(u) {
        let fd = s.as_fd();
        crate::ns::with_private_dirs(&parents(&[&u.name]), move || sys::sock_addr_op(fd, &addr, false)).map_err(step)
    } else if is_path(&u.name) {
        bind_path(pid, who, s, u)
    } else {
        sys::sock_addr_op(s.as_fd(), &addr, false).map_err(step)
    }
}

/// Binds `s` to its path: the stale socket file the dumped process left there is removed
/// (`clear_socket_path`); the new file is made with the saved permission bits (bind in a
/// helper thread with its own umask) and then given the saved owner through an O_PATH
/// descriptor of it — so a server running as another user, and clients of other users,
/// find their socket file as it was (made as the restorer it would be root's, with the
/// restorer's umask).
fn bind_path(pid: i32, who: &str, s: &OwnedFd, u: &UnixObj) -> Result<()> {
    let name = addr_display(&u.name);
    let tn = type_name(u.sock_type);
    let refused = |why: String| Error::RestoreRefused(format!("{who} of pid {pid} is a unix {tn} socket bound to {name}: {why}"));
    let step = |why: String| Error::RestoreStep { pid, step: "opening files".into(), why: format!("{who}: unix {tn} socket {name}: {why}") };
    let path = file_path(u);
    let path = path.as_path();
    let addr = sockaddr(&u.name);
    // Err(Ok(e)): bind failed with e; Err(Err(why)): refused before binding
    let to = final_path(u);
    let bind = || -> std::result::Result<(), std::result::Result<std::io::Error, String>> {
        clear_socket_path(path).map_err(Err)?;
        if to.as_path() != path {
            clear_socket_path(&to).map_err(|why| Err(format!("(renamed to {} since the bind) {why}", to.display())))?;
        }
        sys::sock_addr_op(s.as_fd(), &addr, false).map_err(Ok)?;
        if to.as_path() != path {
            // the file bind just made gets the name it had at the dump (never over one)
            sys::rename_noreplace(path, &to).map_err(Ok)?;
        }
        Ok(())
    };
    // a relative name is bound from the directory it was bound in (validate: absolute)
    let dir = std::ffi::CString::new(u.bound_in.as_bytes()).map_err(|_| step("directory name holds a NUL byte".into()))?;
    let said = |r: std::result::Result<std::io::Error, String>| match r {
        Ok(e) => step(format!("bind: {e}")),
        Err(why) => refused(why),
    };
    let Some(f) = &u.file else {
        return bind().map_err(said);
    };
    std::thread::scope(|sc| {
        sc.spawn(|| {
            if sys::child::unshare(libc::CLONE_FS) < 0 || (!u.bound_in.is_empty() && sys::child::chdir(&dir) < 0) {
                return Err(Ok(std::io::Error::last_os_error()));
            }
            sys::child::umask(!f.mode & 0o777);
            bind()
        })
        .join()
        .unwrap_or_else(|_| Err(Err("socket file helper thread panicked".into())))
    })
    .map_err(said)?;
    give_socket_file(&to, f).map_err(|e| step(format!("giving the socket file owner {}:{} and mode {:o}: {e}", f.uid, f.gid, f.mode)))
}

/// Owner and permission bits of the socket file at `path`, set through an O_PATH
/// descriptor opened without following a symbolic link (and checked to be a socket).
fn give_socket_file(path: &std::path::Path, f: &SockFile) -> std::io::Result<()> {
    let file = socket_file(path)?;
    // through the descriptor's /proc link: the inode just checked
    let via = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
    std::os::unix::fs::chown(&via, Some(f.uid), Some(f.gid))?;
    std::fs::set_permissions(via, std::os::unix::fs::PermissionsExt::from_mode(f.mode & 0o777))
}

/// An O_PATH descriptor of the socket file at `path`, opened without following a
/// symbolic link and checked to be a socket.
fn socket_file(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path)?;
    if !file.metadata()?.file_type().is_socket() {
        return Err(std::io::Error::other("not a socket file"));
    }
    Ok(OwnedFd::from(file))
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
