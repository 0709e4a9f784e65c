//! Building one process with injected syscalls, step by step.

mod memory;
mod process;
mod signals;
mod threads;

use std::os::fd::AsFd;

use stasis_image::model::*;
use stasis_image::Manifest;
use stasis_sys::ptrace::{self, Stop};
use stasis_sys::remote::Remote;
use stasis_sys::sys;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::procfs;

use super::plan::{Plan, ProcPlan};
use super::spawn::Child;
use super::*;

pub(super) struct Builder<'a> {
    pub(super) m: &'a Manifest,
    /// The process being built, its plan, whether it is the root.
    pub(super) p: &'a Process,
    pub(super) pp: &'a ProcPlan,
    pub(super) is_root: bool,
    pub(super) epoll: &'a [crate::fdkinds::epoll::Add],
    pub(super) pid: i32,
    pub(super) plan: &'a Plan,
    pub(super) tmp_fds: Vec<i32>,
    pub(super) shards: &'a [&'a [u8]],
    pub(super) tramp: u64,
    pub(super) stage: u64,
    pub(super) self_vdso: &'a [(String, u64, u64)],
    /// (tid, remote) for every thread, main first.
    pub(super) threads: Vec<Remote>,
}

impl Builder<'_> {
    pub(super) fn err(&self, step: &str, why: impl std::fmt::Display) -> Error {
        Error::RestoreStep { pid: self.pid, step: step.into(), why: why.to_string() }
    }

    /// A pid of the image (dumper's numbering) as this process sees it.
    pub(super) fn inner(&self, host: i32) -> i32 {
        crate::ns::inner_pid(&self.m.processes, self.p, host)
    }

    pub(super) fn main(&self) -> &Remote {
        &self.threads[0]
    }

    pub(super) fn call(&self, step: &str, r: &Remote, nr: i64, args: &[u64]) -> Result<u64> {
        r.call(nr, args).map_err(|e| self.err(step, format!("syscall {nr} in thread {}: {e}", r.tid)))
    }

    pub(super) fn data(&self, off: u64) -> u64 {
        self.tramp + DATA + off
    }

    pub(super) fn write_data(&self, step: &str, off: u64, b: &[u8]) -> Result<()> {
        sys::write_mem(self.pid, self.data(off), b).map_err(|e| self.err(step, e))
    }

    pub(super) fn run(&mut self, ch: &std::sync::Mutex<Child>) -> Result<()> {
        let pid = self.pid;
        ptrace::seize(pid, (libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_EXITKILL) as u32 | ptrace::PTRACE_O_SUSPEND_SECCOMP)
            .map_err(|e| self.err("seizing the new process", e))?;
        ch.lock().unwrap().traced.push(pid);
        ptrace::interrupt(pid).map_err(|e| self.err("seizing the new process", e))?;
        loop {
            let st = ptrace::wait(pid).map_err(|e| self.err("seizing the new process", e))?;
            match ptrace::decode(st) {
                Stop::Stopped(_, ptrace::PTRACE_EVENT_STOP) => break,
                Stop::Stopped(_, _) => ptrace::cont(pid, 0).map_err(|e| self.err("seizing the new process", e))?,
                other => return Err(self.err("seizing the new process", format!("{other:?}"))),
            }
        }
        let regs0 = ptrace::getregs(pid).map_err(|e| self.err("reading registers", e))?;
        self.threads.push(Remote::new(pid, self.tramp, regs0));
        // Block everything first: a child of this process may already have exited
        // (a zombie recreated), and its SIGCHLD must not interrupt our syscalls.
        ptrace::set_sigmask(pid, !0).map_err(|e| self.err("blocking signals", e))?;
        // The child inherited the restorer's rseq registration; its area disappears with
        // the restorer's mappings, so unregister it first (the kernel would SIGSEGV).
        let rs = ptrace::get_rseq(pid).map_err(|e| self.err("reading rseq registration", e))?;
        if rs.addr != 0 {
            self.call("unregistering the restorer's rseq", &self.threads[0], libc::SYS_rseq, &[rs.addr, rs.len as u64, 1, rs.sig as u64])?;
        }

        if !self.pp.shares_vm {
            self.address_space()?;
            self.fill_memory()?;
            self.finish_vmas()?;
            self.mm_fields()?;
        }
        self.create_threads(ch)?;
        self.thread_state()?;
        self.signals()?;
        self.timers()?;
        self.attrs()?;
        // Join the process group it was in, now that every process of the tree exists
        // (leaders did setpgid/setsid while being created).
        let (pg, sid) = self.p.attrs.as_ref().map(|a| (a.pgid, a.sid)).unwrap_or((0, 0));
        if pg > 0 && pg != self.pid && sid != self.pid {
            if let Err(e) = self.main().call(libc::SYS_setpgid, &[0, self.inner(pg) as u64]) {
                debug!(pid = self.pid, pgid = pg, "process group not joined: {e}");
            }
        }
        // close the carried fds (all above the target's highest fd), unless a process
        // built later shares this fd table and still needs them
        if self.pp.closes_table {
            let r = self.main();
            self.call("closing restorer fds", r, libc::SYS_close_range, &[self.plan.base as u64, u32::MAX as u64, 0])?;
            // after that close: closing any fd of a file drops the process's POSIX locks on it
            self.locks()?;
        }
        self.epoll_items()?;
        // --detach: hand the process over to its new parent before setting pdeathsig.
        let middle = if self.is_root { ch.lock().unwrap().middle.take() } else { None };
        if let Some((w, mpid)) = middle {
            for t in &self.threads {
                self.call("clearing parent-death signal", t, libc::SYS_prctl, &[libc::PR_SET_PDEATHSIG as u64, 0])?;
            }
            let _ = sys::write_fd(w.as_fd(), b"d");
            drop(w);
            let _ = sys::waitpid(mpid, 0);
        }
        // Seccomp before credentials (installing a filter without no_new_privs needs
        // CAP_SYS_ADMIN, which the process may have dropped since); our later injected
        // syscalls are not filtered (PTRACE_O_SUSPEND_SECCOMP).
        self.seccomp()?;
        self.pdeath_and_creds()?;
        let attrs = self.p.attrs.clone().unwrap_or_default();
        self.call("dumpable", self.main(), libc::SYS_prctl, &[libc::PR_SET_DUMPABLE as u64, attrs.dumpable as u64])?;
        Ok(())
    }

    /// Kills the helper that held this process's group (see `dead_leaders`), reaps it
    /// from inside, and drops the SIGCHLD it caused unless the image had one pending.
    pub(super) fn reap_group_helper(&self) -> Result<()> {
        let mut helpers: Vec<i32> = self.pp.children.iter().map(|&c| self.plan.procs[c].session_helper).collect();
        helpers.push(self.pp.group_helper);
        helpers.retain(|h| *h != 0);
        if helpers.is_empty() {
            return Ok(());
        }
        let st = format!("removing helper processes {helpers:?} (they held exited leaders' groups/sessions)");
        for &g in &helpers {
            let _ = sys::kill(g, libc::SIGKILL);
            self.call(&st, self.main(), libc::SYS_wait4, &[g as u64, 0, libc::__WALL as u64, 0])?;
        }
        let chld = libc::SIGCHLD;
        let pending = self.p.shared_pending.iter().chain(self.p.threads.iter().flat_map(|t| t.pending.iter())).any(|s| s.signo == chld);
        if !pending {
            self.write_data(&st, 0, &(1u64 << (chld - 1)).to_le_bytes())?;
            self.write_data(&st, 16, &[0u8; 16])?;
            let _ = self.main().raw(libc::SYS_rt_sigtimedwait, &[self.data(0), 0, self.data(16), 8]);
        }
        Ok(())
    }

    /// Last step, once every process of the tree is built: registers, then go.
    pub(super) fn finish(&self) -> Result<()> {
        let attrs = self.p.attrs.clone().unwrap_or_default();
        if self.pp.session_helper != 0 {
            // the helper that was its parent is gone now: arm the saved parent-death signal
            for t in &self.p.threads {
                let r = self.remote_of(t.tid);
                let st = format!("thread {} parent-death signal", t.tid);
                self.call(&st, r, libc::SYS_prctl, &[libc::PR_SET_PDEATHSIG as u64, t.pdeathsig as u64])?;
            }
        }
        if self.pp.set_tid.len() == 1 {
            // every process of the tree is built and stopped: its ids are final
            if let Ok(f) = procfs::stat_fields(self.pid) {
                let (pg, sid) = (procfs::stat_num(&f, 5) as i32, procfs::stat_num(&f, 6) as i32);
                if (pg, sid) != (attrs.pgid, attrs.sid) {
                    warn!(pid = self.pid, "restored in process group {pg} and session {sid}; it was in group {} and session {}", attrs.pgid, attrs.sid);
                }
            }
        }
        if self.pp.unmaps_tramp {
            self.call("unmapping the trampoline", self.main(), libc::SYS_munmap, &[self.tramp, TRAMP_LEN])?;
        }
        self.registers()?;
        if attrs.stopped {
            // Queued while every thread is still stopped under ptrace: the first thing
            // each does after we detach is to enter the group stop again.
            sys::kill(self.pid, libc::SIGSTOP).map_err(|e| self.err("stopping the process again (it was stopped)", e))?;
        }
        for t in &self.threads {
            ptrace::detach(t.tid).map_err(|e| self.err("detaching", format!("thread {}: {e}", t.tid)))?;
        }
        Ok(())
    }

    pub(super) fn remote_of(&self, tid: i32) -> &Remote {
        self.threads.iter().find(|r| r.tid == tid).unwrap_or(&self.threads[0])
    }

}
