//! Signal-driven I/O on any open file description: O_ASYNC, its owner (F_SETOWN /
//! F_SETOWN_EX: a thread, a process or a process group) and its signal (F_SETSIG). nginx's
//! master and workers talk over socketpairs with O_ASYNC; servers set an owner on
//! sockets to get SIGURG. The owner is kept by the open file description, so it is saved
//! once per object (`Object.owner`), whatever its kind.
//!
//! Dump: F_GETOWN_EX and F_GETSIG on our copy of the fd (pidfd_getfd shares the
//! description); the owner must be a thread, process or process group of the tree. One
//! outside it is refused when O_ASYNC is set (its signals would go elsewhere after
//! restore), and dropped with a warning otherwise (nothing is signalled without O_ASYNC
//! but SIGURG).
//! Restore: a finish step (`Step::FileOwners`, every process and thread exists then)
//! in the first restored process that holds the description, from inside it so the
//! owner is numbered in its PID namespace and its credentials are the ones the kernel
//! checks when it signals: F_SETSIG, F_SETOWN_EX, then O_ASYNC with F_SETFL.

use std::os::fd::{AsFd, BorrowedFd};

use stasis_image::model::{FileOwner, Process};
use stasis_image::Manifest;
use stasis_sys::kabi::FOwnerEx;
use stasis_sys::sys;

use crate::error::{Ctx, Error, Result};
use crate::procfs;

pub const F_OWNER_TID: i32 = 0;
pub const F_OWNER_PID: i32 = 1;
pub const F_OWNER_PGRP: i32 = 2;

fn kind_name(kind: i32) -> &'static str {
    match kind {
        F_OWNER_TID => "thread",
        F_OWNER_PGRP => "process group",
        _ => "process",
    }
}

/// Is host pid `who` (a thread, process or group as `kind` says) part of `tree`?
fn in_tree(tree: &[i32], kind: i32, who: i32) -> bool {
    match kind {
        F_OWNER_PID => tree.contains(&who),
        F_OWNER_TID => procfs::status(who)
            .ok()
            .and_then(|st| procfs::status_field(&st, "Tgid").and_then(|v| v.parse::<i32>().ok()))
            .is_some_and(|tgid| tree.contains(&tgid)),
        _ => tree.iter().any(|&p| procfs::stat_fields(p).is_ok_and(|f| procfs::stat_num(&f, 5) as i32 == who)),
    }
}

/// Dump side: the owner record of fd `fd` of `pid` (`dup` is our copy of it), or None
/// when nothing is set. `o_async`: the fd's file status flags have O_ASYNC.
pub fn dump(pid: i32, fd: i32, dup: BorrowedFd, o_async: bool, tree: &[i32]) -> Result<Option<FileOwner>> {
    let own = sys::getown_ex(dup).ctx(pid, || format!("F_GETOWN_EX of fd {fd}"))?;
    let signal = sys::fcntl(std::os::fd::AsRawFd::as_raw_fd(&dup), stasis_sys::kabi::F_GETSIG, 0).ctx(pid, || format!("F_GETSIG of fd {fd}"))? as i32;
    let mut owner = FileOwner { kind: own.kind, pid: own.pid, signal, o_async };
    if own.pid != 0 && !in_tree(tree, own.kind, own.pid) {
        let whom = format!("{} {}", kind_name(own.kind), own.pid);
        if o_async {
            return Err(Error::Unsupported {
                pid,
                what: format!("fd {fd} has O_ASYNC with its signals going to {whom}, which is outside the dumped tree"),
            });
        }
        tracing::warn!(pid, fd, "the owner of fd {fd} ({whom}, F_SETOWN) is outside the dumped tree: not kept (O_ASYNC is off)");
        owner.pid = 0;
        owner.kind = F_OWNER_PID;
    }
    Ok((owner.pid != 0 || owner.signal != 0 || owner.o_async).then_some(owner))
}

/// Dump side for an fd with O_ASYNC that is not a socket (a socket's own copy serves
/// `dump`): a copy of it is taken to ask. A file lease sets O_ASYNC itself (the kernel
/// adds the description to the lease's fasync list), so a leased file's owner and
/// F_SETSIG signal, with which a lease break is signalled, come through here too.
pub fn dump_fd(pid: i32, fd: i32, pidfd: BorrowedFd, tree: &[i32]) -> Result<Option<FileOwner>> {
    let dup = sys::pidfd_getfd(pidfd, fd).ctx(pid, || format!("pidfd_getfd of fd {fd}"))?;
    dump(pid, fd, dup.as_fd(), true, tree)
}

/// Restore-side check of an owner record against the image (untrusted): a known owner
/// kind, a real signal number, and an owner that is a thread, process or group of the
/// image.
pub fn validate(m: &Manifest, o: &FileOwner) -> std::result::Result<(), String> {
    if !(F_OWNER_TID..=F_OWNER_PGRP).contains(&o.kind) {
        return Err(format!("owner kind {} is not F_OWNER_TID, F_OWNER_PID or F_OWNER_PGRP", o.kind));
    }
    if !(0..=64).contains(&o.signal) || o.signal == libc::SIGKILL || o.signal == libc::SIGSTOP {
        return Err(format!("F_SETSIG signal {} is not a signal that can be delivered", o.signal));
    }
    if o.pid == 0 {
        return Ok(());
    }
    let live = || m.processes.iter().filter(|p| !p.zombie);
    let known = match o.kind {
        F_OWNER_PID => live().any(|p| p.pid == o.pid),
        F_OWNER_TID => live().any(|p| p.threads.iter().any(|t| t.tid == o.pid)),
        _ => m.processes.iter().any(|p| p.attrs.as_ref().is_some_and(|a| a.pgid == o.pid)),
    };
    if !known {
        return Err(format!("its owner, {} {}, is not one of the image's", kind_name(o.kind), o.pid));
    }
    Ok(())
}

/// Restore side: the fds of `p` whose description has an owner record and that no
/// process before it in `done` set (a description shared by fork is set once).
pub fn fds_to_set(m: &Manifest, p: &Process, done: &mut std::collections::HashSet<u32>) -> Vec<i32> {
    p.fds
        .iter()
        .filter(|f| m.object(f.object_id).is_some_and(|o| o.owner.is_some()) && done.insert(f.object_id))
        .map(|f| f.fd)
        .collect()
}

/// The owner as the restored process names it (`inner` maps an image pid into its PID
/// namespace).
pub fn owner_ex(o: &FileOwner, inner: impl Fn(i32) -> i32) -> FOwnerEx {
    FOwnerEx { kind: o.kind, pid: if o.pid == 0 { 0 } else { inner(o.pid) } }
}
