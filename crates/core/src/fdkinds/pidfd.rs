//! pidfds (pidfd_open, clone3 CLONE_PIDFD, copies taken with pidfd_getfd): the process
//! (or, with PIDFD_THREAD, the thread) it refers to, and O_NONBLOCK / PIDFD_THREAD.
//!
//! Dump: fdinfo's `Pid:` line, numbered in the PID namespace of the /proc stasis reads
//! (the dumper's numbering, as `Process.pid`): -1 once the process has exited and been
//! reaped. A pidfd of a process of the tree (a zombie too) is recorded by pid; of one
//! that was reaped, as such (`pid` 0). A pidfd of a process outside the dumped tree is
//! refused naming it (after restore it would have to refer to that same process, which
//! cannot be checked), and so is a PIDFD_THREAD pidfd of a non-leader thread of another
//! process of the tree (its thread is created while the holder is being built).
//!
//! Restore: a pidfd of the tree is made from inside the holder, once every process of
//! the tree exists (the `LateFds` build step, before epoll items so an epoll may watch
//! it): pidfd_open(its pid as the holder sees it, flags), dup3 to the fd number. A pidfd
//! of a reaped process is made by the restorer from a helper child that exits and is
//! reaped at once: it polls readable (POLLIN | POLLHUP), pidfd_send_signal gives ESRCH
//! and its fdinfo says `Pid: -1`, as the original did; only the helper's former pid
//! differs, which nothing can observe any more.
//!
//! Not kept: a description shared between processes (fork, SCM_RIGHTS) becomes one
//! description per process (dups inside one process share theirs: the later fds are
//! dup3'ed from the first); only O_NONBLOCK of a pidfd can change after pidfd_open, so
//! what is lost is that a change of it in one process shows in the other.

use std::os::fd::OwnedFd;

use stasis_image::model::{Kind, Object, PidfdObj};
use stasis_sys::sys;

use super::FdCtx;
use crate::error::Result;
use crate::procfs;

/// PIDFD_THREAD (= O_EXCL): the pidfd refers to one thread.
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;
/// The flags pidfd_open takes: PIDFD_NONBLOCK and PIDFD_THREAD.
pub const OPEN_FLAGS: u32 = libc::O_NONBLOCK as u32 | PIDFD_THREAD;
/// Every file status flag a pidfd may show.
pub const FLAGS: u32 = OPEN_FLAGS | libc::O_RDWR as u32 | super::KERNEL_O_LARGEFILE;

fn tgid_of(tid: i32) -> Option<i32> {
    let st = procfs::status(tid).ok()?;
    procfs::status_field(&st, "Tgid")?.parse().ok()
}

pub fn dump(c: &FdCtx) -> Result<Object> {
    let nr = c.field(c.fdinfo, "Pid", |v| v.parse::<i32>().ok())?;
    let thread = c.flags & PIDFD_THREAD != 0;
    let what = if thread { "thread" } else { "pid" };
    let pid = match nr {
        -1 => 0,
        0 => return Err(c.unsupported("of a process outside stasis's PID namespace")),
        p => {
            let tgid = if thread { tgid_of(p).unwrap_or(0) } else { p };
            if !c.tree.contains(&tgid) {
                let comm = std::fs::read_to_string(format!("{}/comm", crate::procfs::dir(p))).unwrap_or_default();
                return Err(c.unsupported(format_args!(
                    "of {what} {p} ({}), which is outside the dumped tree (a pidfd must refer to a process restored with it)",
                    comm.trim()
                )));
            }
            if thread && p != tgid && tgid != c.pid {
                return Err(c.unsupported(format_args!(
                    "(PIDFD_THREAD) of thread {p} of another process of the tree ({tgid}): not supported yet"
                )));
            }
            p
        }
    };
    Ok(Object { kind: Some(Kind::Pidfd(PidfdObj { pid, flags: c.flags })), ..Default::default() })
}

/// A pidfd the restorer makes itself (one of a reaped process); None for one the holder
/// makes once the tree exists (`is_late`).
pub fn open(p: &PidfdObj) -> std::result::Result<OwnedFd, String> {
    if p.pid != 0 {
        return Err(format!("a pidfd of pid {} is made inside its process, not by the restorer", p.pid));
    }
    sys::exited_pidfd(p.flags & OPEN_FLAGS).map_err(|e| format!("making a pidfd of an exited process: {e}"))
}

/// Made from inside the holder once every process exists (not carried).
pub fn is_late(p: &PidfdObj) -> bool {
    p.pid != 0
}

/// Restore-side check of the image's record: known flags; the process or thread it names
/// is one of the image (a thread pidfd's thread, a plain one's process).
pub fn check(m: &stasis_image::Manifest, p: &PidfdObj) -> std::result::Result<(), String> {
    if p.flags & !FLAGS != 0 {
        return Err(format!("flags {:#o} beyond O_RDWR|O_NONBLOCK|PIDFD_THREAD", p.flags));
    }
    if p.pid == 0 {
        return Ok(());
    }
    let known = if p.flags & PIDFD_THREAD != 0 {
        m.processes.iter().any(|q| q.pid == p.pid || (!q.zombie && q.threads.iter().any(|t| t.tid == p.pid)))
    } else {
        m.processes.iter().any(|q| q.pid == p.pid)
    };
    if !known {
        return Err(format!("it refers to pid {}, which is not a {} of the image", p.pid, if p.flags & PIDFD_THREAD != 0 { "thread" } else { "process" }));
    }
    Ok(())
}
