//! The new processes, in the restorer's copies of itself: fork the tree with the original
//! pids, take over the carried fds, report, park.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

use stasis_sys::ptrace::{self, Stop};
use stasis_sys::sys::{self, child};

use crate::ns;

use super::prepare::Plan;
use super::*;


/// Runs in the forked child (a copy of this single-threaded restorer): takes over the
/// fds, sets cwd/root/umask/comm, maps the trampoline, reports, parks.
/// Sends one report over the control pipe, framed by its length (reports of several
/// processes may arrive in one read; each is written with a single write(2)).
pub(super) fn send_report(ctl: RawFd, payload: &[u8]) {
    let mut msg = (payload.len() as u32).to_le_bytes().to_vec();
    msg.extend_from_slice(payload);
    child::write(ctl, &msg);
}

pub(super) fn child_fail(what: &[u8], pid: i32, ctl: RawFd) -> ! {
    child_fail_errno(what, pid, ctl, child::errno())
}

pub(super) fn child_fail_errno(what: &[u8], pid: i32, ctl: RawFd, e: i32) -> ! {
    let mut msg = vec![1u8];
    msg.extend_from_slice(&pid.to_le_bytes());
    msg.extend_from_slice(&e.to_le_bytes());
    msg.extend_from_slice(what);
    send_report(ctl, &msg);
    child::exit(112)
}

/// Runs in the forked root (a copy of this single-threaded restorer): takes over the
/// carried fds above every target fd number, then becomes the tree (`child_proc`).
pub(super) fn child_main(plan: &Plan, shards: &[&[u8]], ctl: RawFd, parent: i32) -> ! {
    child::set_pdeathsig_kill();
    let root = plan.rp.procs[0].pid;
    // The init of a new PID namespace sees its parent as pid 0.
    let parent = if plan.rp.procs[0].clone_flags & libc::CLONE_NEWPID as u64 != 0 { 0 } else { parent };
    if sys::getppid() != parent {
        child::exit(111);
    }
    let mut tmp = Vec::with_capacity(plan.carry.len() + 1);
    let ctl2 = child::dup_above(ctl, plan.base);
    if ctl2 < 0 {
        child_fail(b"moving the control pipe", root, ctl);
    }
    for f in &plan.carry {
        let t = child::dup_above(f.as_raw_fd(), plan.base);
        if t < 0 {
            child_fail(b"moving fds above the target's fd numbers", root, ctl2);
        }
        tmp.push(t);
    }
    if plan.base > 0 && child::close_range(0, plan.base as u32 - 1) < 0 {
        child_fail(b"closing the restorer's fds", root, ctl2);
    }
    child_proc(plan, shards, 0, ctl2, &tmp, -1)
}

/// One process of the tree: leads its session again if it did, forks its children
/// (they inherit the carried fds and the session), then places its own fds, sets umask,
/// cwd, root and comm, maps the trampoline, reports its fd numbers and parks.
/// A zombie child exits at once with its saved status, in its own session or group
/// when it led them (or in the saved group, if that exists by then).
pub(super) fn child_proc(plan: &Plan, shards: &[&[u8]], idx: usize, ctl: RawFd, tmp: &[i32], done: RawFd) -> ! {
    let pp = &plan.rp.procs[idx];
    let proc_flags = (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as u64;
    if pp.mount_proc_parent_ns && child::mount(Some(c"proc"), c"/proc", Some(c"proc"), proc_flags) < 0 {
        child_fail(b"mounting /proc for its PID namespace (in its parent's mount namespace)", pp.pid, ctl);
    }
    if pp.new_mnt {
        if child::unshare(libc::CLONE_NEWNS) < 0 {
            child_fail(b"unshare(CLONE_NEWNS) for its own mount namespace", pp.pid, ctl);
        }
        // Private propagation: nothing mounted here may show up in the host's namespace.
        if child::mount(None, c"/", None, (libc::MS_REC | libc::MS_PRIVATE) as u64) < 0 {
            child_fail(b"making the new mount namespace private", pp.pid, ctl);
        }
    }
    if pp.mount_proc && child::mount(Some(c"proc"), c"/proc", Some(c"proc"), proc_flags) < 0 {
        child_fail(b"mounting /proc for its PID namespace", pp.pid, ctl);
    }
    // before forking: its children inherit the namespaces
    if let Err(what) = ns::child_apply(&pp.ns, tmp) {
        child_fail(what, pp.pid, ctl);
    }
    // Its private memory that its children shared copy-on-write: built now, so they
    // inherit it by the fork.
    if let Err((what, e)) = build_premaps(plan, shards, pp, tmp) {
        child_fail_errno(what, pp.pid, ctl, e);
    }
    // Children born before its setsid() stay in the session it was born in.
    for &c in pp.children.iter().filter(|&&c| plan.rp.procs[c].before_setsid) {
        spawn_child(plan, shards, c, ctl, tmp);
    }
    if pp.sid == pp.pid {
        if child::setsid() < 0 {
            child_fail(b"setsid (the process led its session)", pp.pid, ctl);
        }
        // its terminal, before any member of the session exists (crate::tty)
        if let Some(slot) = pp.ctty_slot {
            if child::set_ctty(tmp[slot]) < 0 {
                child_fail(b"taking its controlling terminal again (TIOCSCTTY)", pp.pid, ctl);
            }
        }
    } else if pp.pgid == pp.pid && child::setpgid(0, 0) < 0 {
        child_fail(b"setpgid (the process led its process group)", pp.pid, ctl);
    }
    if pp.group_helper != 0 {
        match sys::clone_fork(&[pp.group_helper], 0, libc::SIGCHLD) {
            Ok(0) => {
                child::set_pdeathsig_kill();
                child::park()
            }
            Ok(h) => {
                if child::setpgid(h, h) < 0 || child::setpgid(0, h) < 0 {
                    child_fail(b"joining its process group (recreated: its leader had exited)", pp.pid, ctl);
                }
            }
            Err(_) => child_fail(b"recreating its process group (clone3 with the exited leader's pid)", pp.pid, ctl),
        }
    }
    for &c in pp.children.iter().filter(|&&c| !plan.rp.procs[c].before_setsid) {
        spawn_child(plan, shards, c, ctl, tmp);
    }
    // A table of its own: drop whatever the parent's table held below the carried fds
    // (a sharing ancestor may have placed its fds already); a shared table is filled by
    // the parent.
    let own_table = idx == 0 || !pp.shares_files;
    if idx > 0 && own_table && plan.base > 0 && child::close_range(0, plan.base as u32 - 1) < 0 {
        child_fail(b"closing inherited fds", pp.pid, ctl);
    }
    for a in pp.assign.iter().filter(|_| own_table) {
        if child::dup3(tmp[a.slot], a.fd, if a.cloexec { libc::O_CLOEXEC } else { 0 }) < 0 {
            child_fail(b"placing an fd at its original number", pp.pid, ctl);
        }
    }
    child::umask(pp.umask);
    if let Some(slot) = pp.cwd_slot {
        if child::fchdir(tmp[slot]) < 0 {
            child_fail(b"fchdir to the recreated (removed) working directory", pp.pid, ctl);
        }
    } else if child::chdir(&pp.cwd) < 0 {
        child_fail(b"chdir to the original working directory", pp.pid, ctl);
    }
    if let Some(slot) = pp.root_slot {
        // a removed root: chroot(".") from inside the recreated (removed) directory,
        // then back to the working directory just set
        let cwd = child::open_cwd();
        if cwd < 0 || child::fchdir(tmp[slot]) < 0 || child::chroot(c".") < 0 || child::fchdir(cwd) < 0 {
            child_fail(b"chroot into the recreated (removed) root directory", pp.pid, ctl);
        }
        child::close(cwd);
    } else if pp.root.as_bytes() != b"/" && child::chroot(&pp.root) < 0 {
        child_fail(b"chroot to the original root", pp.pid, ctl);
    }
    child::set_name(&pp.comm);
    // (a child sharing the address space uses its parent's trampoline)
    if !pp.shares_vm && sys::map_fixed_code(plan.tramp, TRAMP_LEN as usize, &[0x0f, 0x05]).is_err() {
        child_fail(b"mapping the syscall trampoline", pp.pid, ctl);
    }
    let mut msg = vec![0u8];
    msg.extend_from_slice(&pp.pid.to_le_bytes());
    msg.extend_from_slice(&ctl.to_le_bytes());
    for t in tmp {
        msg.extend_from_slice(&t.to_le_bytes());
    }
    send_report(ctl, &msg);
    if done >= 0 {
        // the parent we share an address space with may run on now
        child::write(done, b"p");
    }
    child::park()
}

/// Builds the process's premap pieces (`plan::Premap`) in the premap area: maps the
/// fresh ones, discards the parent's pages it did not have in inherited ones, writes its
/// own pages. Runs in the new process (a copy of the restorer) before it forks.
fn build_premaps(plan: &Plan, shards: &[&[u8]], pp: &super::plan::ProcPlan, tmp: &[i32]) -> std::result::Result<(), (&'static [u8], i32)> {
    if pp.premaps.is_empty() {
        return Ok(());
    }
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let Some(area) = plan.premap.as_ref() else { return Err((b"building memory before forking: no premap area", libc::EINVAL)) };
    for pm in &pp.premaps {
        let len = pm.end - pm.start;
        if !pm.inherited {
            let fd = match pm.slot {
                Some(k) => *tmp.get(k).ok_or((b"building memory before forking: no such carried file".as_slice(), libc::EBADF))?,
                None => -1,
            };
            area.map_private(pm.tmp, len, fd, pm.file_off, pm.growsdown)
                .map_err(|e| (b"mapping private memory before forking".as_slice(), errno(e)))?;
        }
        for &(off, n) in &pm.discard {
            area.discard(pm.tmp + off, n).map_err(|e| (b"discarding the parent's pages before forking".as_slice(), errno(e)))?;
        }
        let mut pieces: Vec<(u64, &[u8])> = Vec::with_capacity(pm.copy.len());
        for c in &pm.copy {
            let bytes = shards
                .get(c.shard as usize)
                .and_then(|s| s.get(c.file_offset as usize..(c.file_offset as usize).checked_add(c.len as usize)?))
                .ok_or((b"filling private memory before forking: page run outside its pages file".as_slice(), libc::EINVAL))?;
            pieces.push((pm.tmp + c.off, bytes));
        }
        area.write(&pieces).map_err(|e| (b"filling private memory before forking".as_slice(), errno(e)))?;
    }
    Ok(())
}

/// Forks child `c` of the process running this (in the restorer's copy of itself).
pub(super) fn spawn_child(plan: &Plan, shards: &[&[u8]], c: usize, ctl: RawFd, tmp: &[i32]) {
    let cp = &plan.rp.procs[c];
    if cp.session_helper != 0 {
        // the helper leads the child's session again and forks it
        match sys::clone_fork(&[cp.session_helper], 0, libc::SIGCHLD) {
            Ok(0) => {
                child::set_pdeathsig_kill();
                if child::setsid() < 0 {
                    child_fail(b"setsid (recreating the session of an exited leader)", cp.pid, ctl);
                }
                match sys::clone_fork(&cp.set_tid, cp.clone_flags, cp.exit_signal) {
                    Ok(0) => {
                        child::set_pdeathsig_kill();
                        child_proc(plan, shards, c, ctl, tmp, -1)
                    }
                    Ok(_) => child::park(),
                    Err(_) => child_fail(b"clone3 with the original pid of a child", cp.pid, ctl),
                }
            }
            Ok(_) => return,
            Err(_) => child_fail(b"recreating its session (clone3 with the exited leader's pid)", cp.pid, ctl),
        }
    }
    if cp.shares_vm {
        // Same address space (and TLS, so the same malloc caches): a stack of its own,
        // and we wait until it parked before running on, so the two never execute
        // our code at the same time. The handshake pipe sits above the target fds.
        let Ok((r0, w0)) = sys::pipe2(libc::O_CLOEXEC) else {
            child_fail(b"creating a pipe for a CLONE_VM child", cp.pid, ctl)
        };
        let (r, w) = (child::dup_above(r0.as_raw_fd(), plan.base), child::dup_above(w0.as_raw_fd(), plan.base));
        drop((r0, w0));
        let run = || {
            child::set_pdeathsig_kill();
            child_proc(plan, shards, c, ctl, tmp, w)
        };
        if r < 0 || w < 0 || sys::clone_vm_with(&cp.set_tid, cp.clone_flags, cp.exit_signal, 1 << 18, &run).is_err() {
            child_fail(b"clone3(CLONE_VM) with the original pid of a child", cp.pid, ctl);
        }
        let mut b = [0u8; 1];
        while child::read(r, &mut b) < 0 && child::errno() == libc::EINTR {}
        child::close(r);
        if !cp.shares_files {
            child::close(w);
        }
        return;
    }
    match sys::clone_fork(&cp.set_tid, cp.clone_flags, cp.exit_signal) {
        Ok(0) => {
            if cp.zombie {
                // A zombie keeps its session and group: it leads them again, or joins a
                // group that exists by now (a zombie leader forked before it keeps its
                // group alive); otherwise it stays in its parent's.
                if cp.sid == cp.pid {
                    child::setsid();
                } else if cp.pgid == cp.pid {
                    child::setpgid(0, 0);
                } else if cp.pgid > 0 && cp.set_tid.len() == 1 {
                    // (the image's numbering is the process's own only at one level)
                    child::setpgid(0, cp.pgid);
                }
                child::die_with_status(cp.exit_status);
            }
            child::set_pdeathsig_kill();
            child_proc(plan, shards, c, ctl, tmp, -1)
        }
        Ok(_) if cp.zombie && cp.pgid == cp.pid && cp.sid != cp.pid && cp.set_tid.len() == 1 => {
            // the group exists before the next child (which may join it) is forked,
            // however soon the zombie-to-be runs
            child::setpgid(cp.pid, cp.pid);
        }
        Ok(_) => {}
        Err(_) => child_fail(b"clone3 with the original pid of a child", cp.pid, ctl),
    }
}

/// The new processes while we build them. Killed and reaped on drop unless released.
pub(super) struct Child {
    /// The root's pid.
    pub(super) pid: i32,
    /// Every live process of the tree that was created.
    pub(super) pids: Vec<i32>,
    /// In --detach mode: write end of the pipe to the intermediate parent, and its pid.
    pub(super) middle: Option<(OwnedFd, i32)>,
    pub(super) traced: Vec<i32>,
    pub(super) released: bool,
}

impl Child {
    fn kill(&mut self) {
        for p in self.pids.iter().rev() {
            let _ = sys::kill(*p, libc::SIGKILL);
        }
        let _ = sys::kill(self.pid, libc::SIGKILL);
        for t in self.traced.iter().rev() {
            loop {
                match ptrace::wait(*t) {
                    Ok(st) if matches!(ptrace::decode(st), Stop::Stopped(..)) => {
                        let _ = ptrace::cont(*t, 0);
                    }
                    _ => break,
                }
            }
        }
        match self.middle.take() {
            Some((w, mpid)) => {
                let _ = sys::write_fd(w.as_fd(), b"k");
                drop(w);
                let _ = sys::waitpid(mpid, 0);
            }
            None => {
                let _ = sys::waitpid(self.pid, libc::__WALL);
            }
        }
        // Descendants re-parented to us (we are a subreaper while restoring).
        let t = Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(5) {
            match sys::try_waitpid(-1, libc::__WALL | libc::WNOHANG) {
                Ok(Some(_)) => continue,
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(_) => break, // ECHILD: nobody left
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.released {
            self.kill();
        }
    }
}
