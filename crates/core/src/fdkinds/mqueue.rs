//! POSIX message queues (mq_open): the description's flags, the queue's name (or that
//! it was unlinked), attributes, owner and mode, and its messages.
//!
//! Dump: through a copy of the fd (pidfd_getfd). Reading the fd gives the queue's
//! notification state (`QSIZE:… NOTIFY:… SIGNO:… NOTIFY_PID:…`): a registration
//! (mq_notify) is refused, the kernel gives none back. The kernel has no way to peek at a
//! message, so every message is received (never waiting: an absolute timeout already
//! past) and sent back at once in the same order, which leaves the queue as it was —
//! highest priority first, oldest first within one priority, is the order both ways.
//! A full queue is refused: a sender waiting on it (outside the tree: the tree's own
//! are frozen out of their waits) would slip its message in as soon as one is taken.
//! Only queues of the restorer's IPC namespace are dumped (a process in an IPC namespace
//! of its own is refused: its queues are not reachable by name from here).
//!
//! Restore: a queue whose name still exists is opened as it is now (like a file: its
//! content is the queue's; after a killing dump on the same host it is the dumped one).
//! A missing one is made (O_CREAT|O_EXCL, the image's attributes, owner and mode) and
//! its messages are sent in; `Created` removes it again if the restore fails. An
//! unlinked one is made under a name of this restore's own, unlinked at once, and
//! filled.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Mutex;

use stasis_image::model::{Kind, MqueueMsg, MqueueObj, Object};
use stasis_sys::sys;

use crate::error::{Ctx, Error, Result};

/// Kernel bounds (ipc/mqueue.c): HARD_MSGMAX, HARD_MSGSIZEMAX, MQ_PRIO_MAX, NAME_MAX.
pub const MAX_MSGS: i64 = 65536;
pub const MAX_MSGSIZE: i64 = 16 << 20;
pub const PRIO_MAX: u32 = 32768;
pub const NAME_MAX: usize = 255;

/// Dump side: fd `fd` of `pid`, a POSIX message queue (`link`: "/NAME", " (deleted)"
/// if unlinked), its status flags `flags`.
pub fn dump(pid: i32, fd: i32, link: &str, pidfd: BorrowedFd<'_>, flags: u32) -> Result<Object> {
    let refuse = |why: String| Error::Unsupported { pid, what: format!("fd {fd} is the POSIX message queue {link}: {why}") };
    let same_ns = crate::procfs::readlink(&format!("{}/ns/ipc", crate::procfs::dir(pid))).ok() == crate::procfs::readlink("/proc/self/ns/ipc").ok();
    if !same_ns {
        return Err(refuse("the process is in an IPC namespace other than stasis's, whose queues are not reachable from here".into()));
    }
    let (name, unlinked) = match link.strip_suffix(" (deleted)") {
        Some(n) => (n, true),
        None => (link, false),
    };
    let name = name.strip_prefix('/').filter(|n| !n.is_empty() && !n.contains('/')).ok_or_else(|| refuse("a name that is not /NAME".into()))?;
    // a description of our own, read-write (the process's may be write- or read-only)
    let dup = std::fs::File::from(own_description(fd, pidfd).ctx(pid, || format!("opening the message queue of fd {fd} again"))?);
    let mut info = [0u8; 256];
    let n = dup.read_at(&mut info, 0).ctx(pid, || format!("reading the state of the message queue of fd {fd}"))?;
    let info = String::from_utf8_lossy(&info[..n]);
    let notify_pid = info.split_whitespace().find_map(|w| w.strip_prefix("NOTIFY_PID:")).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    if notify_pid != 0 {
        return Err(refuse(format!("pid {notify_pid} registered for its notification (mq_notify), which the kernel does not show back")));
    }
    let attr = sys::mq_getattr(dup.as_fd()).ctx(pid, || format!("mq_getattr of fd {fd}"))?;
    if attr.mq_curmsgs >= attr.mq_maxmsg {
        return Err(refuse(format!(
            "it is full ({} messages): reading it would let a waiting sender's message in (not supported yet)",
            attr.mq_curmsgs
        )));
    }
    let messages = read_and_put_back(dup.as_fd(), attr.mq_msgsize, attr.mq_curmsgs).ctx(pid, || format!("the messages of the queue of fd {fd}"))?;
    let md = dup.metadata().ctx(pid, || format!("stat of the queue of fd {fd}"))?;
    Ok(Object {
        kind: Some(Kind::Mqueue(MqueueObj {
            name: name.to_string(),
            unlinked,
            flags: flags & (libc::O_ACCMODE | libc::O_NONBLOCK) as u32,
            maxmsg: attr.mq_maxmsg,
            msgsize: attr.mq_msgsize,
            mode: md.mode() & 0o777,
            uid: md.uid(),
            gid: md.gid(),
            messages,
        })),
        ..Default::default()
    })
}

/// A read-write description of the queue of fd `fd` of a process (opened again through a
/// copy of the fd: the inode, not a name).
fn own_description(fd: i32, pidfd: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    let copy = sys::pidfd_getfd(pidfd, fd)?;
    reopen(&copy, libc::O_RDWR)
}

/// A new description of the queue of `fd` with `flags` (access mode, O_NONBLOCK),
/// opened through /proc/self/fd: the same queue, named or not.
fn reopen(fd: &OwnedFd, flags: i32) -> std::io::Result<OwnedFd> {
    let via = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL");
    sys::open(&via, flags | libc::O_CLOEXEC, 0)
}

/// Receives the `count` messages of the queue and sends them back in the same order.
/// Whatever fails, every message received is sent back (a send that fails does not
/// stop the others), then the first error is returned.
fn read_and_put_back(fd: BorrowedFd<'_>, msgsize: i64, count: i64) -> std::io::Result<Vec<MqueueMsg>> {
    let mut buf = vec![0u8; usize::try_from(msgsize).map_err(std::io::Error::other)?];
    let mut out = Vec::new();
    let mut first = None;
    for _ in 0..count {
        match sys::mq_receive_now(fd, &mut buf) {
            Ok((n, priority)) => out.push(MqueueMsg { priority, data: buf[..n].to_vec() }),
            // fewer than counted (another receiver outside the tree): what there was
            Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => break,
            Err(e) => {
                first = Some(e);
                break;
            }
        }
    }
    for m in &out {
        if let Err(e) = sys::mq_send_now(fd, &m.data, m.priority) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(out), Err)
}

/// Names of the queues this restore made (removed again if it fails: `Created`).
static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Removes the queues this restore made when dropped, unless kept.
pub struct Created(bool);

impl Default for Created {
    fn default() -> Created {
        Created::new()
    }
}

impl Created {
    pub fn new() -> Created {
        MADE.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Created(false)
    }

    pub fn keep(mut self) {
        self.0 = true;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        let made = std::mem::take(&mut *MADE.lock().unwrap_or_else(|e| e.into_inner()));
        if self.0 {
            return;
        }
        for n in made {
            if let Err(e) = sys::mq_unlink(&n) {
                tracing::warn!("removing the POSIX message queue /{n} after the failed restore: {e}");
            }
        }
    }
}

/// Restore side: a description of the queue of `q`.
pub fn open(q: &MqueueObj) -> std::result::Result<OwnedFd, String> {
    let fl = (q.flags & (libc::O_ACCMODE | libc::O_NONBLOCK) as u32) as i32 | libc::O_CLOEXEC;
    if !q.unlinked {
        match sys::mq_open(&q.name, fl, 0, None) {
            Ok(fd) => {
                let now = sys::mq_getattr(fd.as_fd()).map_err(|e| format!("mq_getattr of /{}: {e}", q.name))?;
                if now.mq_curmsgs != q.messages.len() as i64 {
                    tracing::warn!(
                        "POSIX message queue /{} exists and holds {} messages, the image {}: it is used as it is",
                        q.name,
                        now.mq_curmsgs,
                        q.messages.len()
                    );
                }
                return Ok(fd);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(format!("mq_open /{}: {e}", q.name)),
        }
    }
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = if q.unlinked { format!("stasis-{}-{}", sys::getpid(), SEQ.fetch_add(1, Ordering::Relaxed)) } else { q.name.clone() };
    let attr = sys::mq_attr(q.maxmsg, q.msgsize);
    // the restorer's fd is read-write (it sends the messages); the process's flags are
    // its own description's: a second open of the same queue
    let fd = sys::mq_open(&name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC, 0o600, Some(&attr))
        .map_err(|e| format!("mq_open /{name} (O_CREAT, {} messages of {} bytes): {e}", q.maxmsg, q.msgsize))?;
    if q.unlinked {
        sys::mq_unlink(&name).map_err(|e| format!("mq_unlink /{name}: {e}"))?;
    } else {
        MADE.lock().unwrap_or_else(|e| e.into_inner()).push(name.clone());
    }
    let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::os::unix::fs::chown(&via, Some(q.uid), Some(q.gid)).map_err(|e| format!("owner {}:{} of /{name}: {e}", q.uid, q.gid))?;
    std::fs::set_permissions(&via, std::os::unix::fs::PermissionsExt::from_mode(q.mode & 0o777)).map_err(|e| format!("mode {:o} of /{name}: {e}", q.mode))?;
    for (i, m) in q.messages.iter().enumerate() {
        sys::mq_send_now(fd.as_fd(), &m.data, m.priority).map_err(|e| format!("message {i} into /{name}: {e}"))?;
    }
    // the process's own description (its access mode and O_NONBLOCK) of the same queue
    reopen(&fd, fl).map_err(|e| format!("opening /{name} again: {e}"))
}

/// Validation of an image's queue: a name, attributes and messages within the kernel's
/// bounds.
pub fn check(q: &MqueueObj) -> std::result::Result<(), String> {
    if q.name.is_empty() || q.name.len() > NAME_MAX || q.name.contains(['/', '\0']) || q.name == "." || q.name == ".." {
        return Err(format!("POSIX message queue name {:?}", q.name));
    }
    if !(1..=MAX_MSGS).contains(&q.maxmsg) || !(1..=MAX_MSGSIZE).contains(&q.msgsize) {
        return Err(format!("POSIX message queue of {} messages of {} bytes", q.maxmsg, q.msgsize));
    }
    if q.messages.len() as i64 > q.maxmsg || q.messages.iter().any(|m| m.data.len() as i64 > q.msgsize || m.priority >= PRIO_MAX) {
        return Err(format!("POSIX message queue /{}: more messages than it holds, one too long or of a priority over {PRIO_MAX}", q.name));
    }
    if q.mode > 0o777 || q.flags & !((libc::O_ACCMODE | libc::O_NONBLOCK) as u32) != 0 || q.flags & libc::O_ACCMODE as u32 == 3 {
        return Err(format!("POSIX message queue /{}: mode {:o} or flags {:#o}", q.name, q.mode, q.flags));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue made by a restore is removed again when the restore fails (its guard
    /// dropped unkept), an existing one is only opened, a kept one stays.
    #[test]
    fn made_queues_are_removed_unless_kept() {
        let name = format!("stasis-unit-{}", std::process::id());
        let _ = sys::mq_unlink(&name);
        let q = MqueueObj {
            name: name.clone(),
            flags: libc::O_RDWR as u32,
            maxmsg: 4,
            msgsize: 16,
            mode: 0o640,
            messages: vec![MqueueMsg { priority: 3, data: b"m".to_vec() }],
            ..Default::default()
        };
        let guard = Created::new();
        let fd = open(&q).expect("made");
        assert_eq!(sys::mq_getattr(fd.as_fd()).unwrap().mq_curmsgs, 1);
        drop(fd);
        drop(guard);
        assert!(sys::mq_open(&name, libc::O_RDONLY, 0, None).is_err(), "a failed restore left /{name}");
        let guard = Created::new();
        drop(open(&q).expect("made"));
        guard.keep();
        let kept = sys::mq_open(&name, libc::O_RDONLY, 0, None).expect("kept");
        // exists now: opened as it is, and not removed by a failing restore
        let guard = Created::new();
        drop(open(&q).expect("opened"));
        drop(guard);
        assert!(sys::mq_open(&name, libc::O_RDONLY, 0, None).is_ok(), "an existing queue was removed");
        drop(kept);
        sys::mq_unlink(&name).unwrap();
    }

    #[test]
    fn queue_records_are_bounded() {
        let ok = MqueueObj { name: "q".into(), maxmsg: 10, msgsize: 64, mode: 0o640, flags: libc::O_RDWR as u32, ..Default::default() };
        check(&ok).expect("a queue");
        let msg = |n: usize, priority| MqueueMsg { priority, data: vec![0; n] };
        let bad = [
            MqueueObj { name: "".into(), ..ok.clone() },
            MqueueObj { name: "a/b".into(), ..ok.clone() },
            MqueueObj { name: "..".into(), ..ok.clone() },
            MqueueObj { maxmsg: 0, ..ok.clone() },
            MqueueObj { maxmsg: MAX_MSGS + 1, ..ok.clone() },
            MqueueObj { msgsize: MAX_MSGSIZE + 1, ..ok.clone() },
            MqueueObj { messages: vec![msg(65, 0)], ..ok.clone() },
            MqueueObj { messages: vec![msg(1, PRIO_MAX)], ..ok.clone() },
            MqueueObj { messages: (0..11).map(|_| msg(1, 0)).collect(), ..ok.clone() },
            MqueueObj { mode: 0o4777, ..ok.clone() },
            MqueueObj { flags: libc::O_CREAT as u32, ..ok.clone() },
        ];
        for b in bad {
            assert!(check(&b).is_err(), "{b:?}");
        }
    }
}
