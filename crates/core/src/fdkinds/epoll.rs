//! epoll: the instance's flags and its interest list, one item per fdinfo line
//! `tfd: N events: HEX data: HEX pos:.. ino:.. sdev:..`.
//!
//! The kernel keys an item by (file, fd number), and the process will later
//! EPOLL_CTL_MOD/DEL it by its own fd numbers, so restore creates an empty instance in
//! the restorer (`open`) and the restored process itself adds every item with
//! epoll_ctl(EPOLL_CTL_ADD, tfd, {events, data}) once its fds have their final numbers
//! (`adds`, run by `restore.rs`). Nested epoll instances and items of any fd kind come
//! back that way.
//!
//! The events word is kept verbatim, with EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE and
//! EPOLLWAKEUP. A fired EPOLLONESHOT item holds only those flag bits, which
//! EPOLL_CTL_ADD cannot give (it always adds EPOLLERR|EPOLLHUP): such an item is added
//! first in its instance asking for every event, and if its target is ready (queued at
//! once) one epoll_wait(1 event, timeout 0) delivers it, which leaves exactly the flag
//! bits; if the target is not ready, EPOLL_CTL_MOD sets the saved word, and the item
//! would still report an error or hang-up once.
//! An edge-triggered item whose target is ready is reported once more after restore (ADD
//! queues a ready target), which an edge-triggered reader handles like any spurious
//! wake-up.
//! The ready list itself is not state: it follows from the targets.
//!
//! An item whose fd number is no longer open on the same file (the fd was closed, or its
//! number reused, while a dup kept the file registered) is saved with `via`, another fd
//! of the process on that file (kcmp KCMP_EPOLL_TFD against each fd): the restored
//! process puts it at the old number for the EPOLL_CTL_ADD (the kernel keys the item by
//! file and number), then puts back what was there or closes the number again.
//! Refused: such an item whose file no fd of the process holds (only another process,
//! a mapping or a socket queue keeps it).

use std::os::fd::OwnedFd;

use stasis_image::model::{EpollItem, EpollObj, Kind, Object};
use stasis_image::Manifest;
use stasis_sys::sys;

use super::{hex, FdCtx};
use crate::error::{Ctx, Result};

/// Parses one `tfd:` line of an epoll fdinfo.
fn item(line: &str) -> Option<EpollItem> {
    let t: Vec<&str> = line.split_whitespace().collect();
    match t.as_slice() {
        ["tfd:", tfd, "events:", events, "data:", data, ..] => {
            Some(EpollItem { tfd: tfd.parse().ok()?, events: hex(events)? as u32, data: hex(data)?, via: None })
        }
        _ => None,
    }
}

pub fn dump(c: &FdCtx) -> Result<Object> {
    let mut items: Vec<EpollItem> = Vec::new();
    for l in c.fdinfo.lines().filter(|l| l.starts_with("tfd:")) {
        let it = item(l).ok_or_else(|| c.unsupported(format_args!("with an fdinfo line stasis cannot read: {l:?}")))?;
        // Items with the same fd number are told apart by their rank (fdinfo and kcmp
        // walk the interest list in the same order).
        let toff = items.iter().filter(|o| o.tfd == it.tfd).count() as u32;
        let same = |fd: i32| match sys::kcmp_epoll_tfd(crate::procfs::via(c.pid), fd, c.fd, it.tfd, toff) {
            Ok(same) => Ok(same),
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => Ok(false),
            Err(e) => Err(e).ctx(c.pid, || format!("kcmp(KCMP_EPOLL_TFD) for item fd {} of epoll fd {}", it.tfd, c.fd)),
        };
        let mut it = it;
        if !same(it.tfd)? {
            let fds = crate::procfs::fds(c.pid).ctx(c.pid, || "listing /proc/PID/fd".into())?;
            let mut via = None;
            for fd in fds.into_iter().filter(|fd| *fd != it.tfd) {
                if same(fd)? {
                    via = Some(fd);
                    break;
                }
            }
            if via.is_none() {
                return Err(c.unsupported(format_args!(
                    "watching a file registered as fd {}, which is closed or now another file, and no other fd of the process holds that file",
                    it.tfd
                )));
            }
            it.via = via;
        }
        items.push(it);
    }
    Ok(Object { kind: Some(Kind::Epoll(EpollObj { flags: c.flags, items })), ..Default::default() })
}

pub fn open(e: &EpollObj) -> std::result::Result<OwnedFd, String> {
    let fd = sys::epoll_create1(libc::EPOLL_CLOEXEC).map_err(|err| format!("epoll_create1: {err}"))?;
    super::apply_nonblock(&fd, e.flags)?;
    Ok(fd)
}

/// One epoll_ctl(EPOLL_CTL_ADD) for the restored process to run.
pub struct Add {
    pub epfd: i32,
    pub tfd: i32,
    /// struct epoll_event as the kernel takes it on x86_64 (packed: u32 events, u64 data).
    pub event: [u8; 12],
    /// A fired EPOLLONESHOT item: `event` asks for every event; run
    /// epoll_wait(epfd, 1 event, timeout 0) after the ADD, and if it returns 0,
    /// EPOLL_CTL_MOD with this saved event.
    pub fired_oneshot: Option<[u8; 12]>,
    /// `tfd` is closed or another file in the process: this fd of it is the item's file,
    /// put at `tfd` for the ADD (EpollItem.via).
    pub via: Option<i32>,
}

const PRIVATE_BITS: u32 = (libc::EPOLLWAKEUP | libc::EPOLLONESHOT | libc::EPOLLET | libc::EPOLLEXCLUSIVE) as u32;
const POLL_BITS: u32 = (libc::EPOLLIN
    | libc::EPOLLPRI
    | libc::EPOLLOUT
    | libc::EPOLLERR
    | libc::EPOLLHUP
    | libc::EPOLLRDNORM
    | libc::EPOLLRDBAND
    | libc::EPOLLWRNORM
    | libc::EPOLLWRBAND
    | libc::EPOLLMSG
    | libc::EPOLLRDHUP) as u32;

fn event(events: u32, data: u64) -> [u8; 12] {
    let mut e = [0u8; 12];
    e[..4].copy_from_slice(&events.to_le_bytes());
    e[4..].copy_from_slice(&data.to_le_bytes());
    e
}

/// The items of every epoll instance of the image, to add by the process's own fd
/// numbers (any fd of the instance will do: they share it); per instance, fired
/// one-shot items first, so that nothing else is queued when one is delivered.
/// `done`: instances already handled by another process of the tree (a forked epoll
/// instance is one object; its items are added once).
pub fn adds(m: &Manifest, p: &stasis_image::model::Process, done: &mut Vec<u32>) -> Vec<Add> {
    let mut out = Vec::new();
    for fd in &p.fds {
        let Some(e) = m.object(fd.object_id).and_then(|o| o.epoll()) else { continue };
        if done.contains(&fd.object_id) {
            continue;
        }
        done.push(fd.object_id);
        let fired = |it: &EpollItem| it.events & libc::EPOLLONESHOT as u32 != 0 && it.events & !PRIVATE_BITS == 0;
        for it in e.items.iter().filter(|it| fired(it)) {
            let saved = event(it.events, it.data);
            out.push(Add { epfd: fd.fd, tfd: it.tfd, event: event(it.events | POLL_BITS, it.data), fired_oneshot: Some(saved), via: it.via });
        }
        for it in e.items.iter().filter(|it| !fired(it)) {
            out.push(Add { epfd: fd.fd, tfd: it.tfd, event: event(it.events, it.data), fired_oneshot: None, via: it.via });
        }
    }
    out
}
