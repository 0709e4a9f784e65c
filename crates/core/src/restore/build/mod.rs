//! Building one process with injected syscalls, step by step.

mod memory;
mod process;
mod signals;
mod threads;

use std::os::fd::AsFd;

use stasis_image::model::*;
use stasis_image::Manifest;
use stasis_sys::ptrace::{self, Stop};
use stasis_sys::remote::{Remote, RemoteCalls, Scratch};
use stasis_sys::sys;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::procfs;

use super::plan::{ProcPlan, Step};
use super::prepare::Plan;
use super::spawn::Child;
use super::*;

pub(super) struct Builder<'a> {
    pub(super) m: &'a Manifest,
    /// The process being built and its plan.
    pub(super) p: &'a Process,
    pub(super) pp: &'a ProcPlan,
    pub(super) epoll: &'a [crate::fdkinds::epoll::Add],
    pub(super) pid: i32,
    pub(super) plan: &'a Plan,
    pub(super) tmp_fds: Vec<i32>,
    pub(super) shards: &'a [&'a [u8]],
    pub(super) tramp: u64,
    pub(super) stage: u64,
    pub(super) self_vdso: &'a [(String, u64, u64)],
    /// (tid, remote) for every thread, main first (while it lives: a main thread that
    /// had exited leaves at `Step::ExitLeader`).
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

    /// The trampoline's data area, for typed injected calls (bounded: never past it).
    pub(super) fn scratch(&self) -> Scratch {
        Scratch { pid: self.pid, addr: self.tramp + DATA, len: TRAMP_LEN - DATA }
    }

    /// Carries out the plan's build steps for this process, in order.
    pub(super) fn run(&mut self, ch: &std::sync::Mutex<Child>) -> Result<()> {
        let steps: Vec<Step> = self.pp.steps.iter().copied().filter(|s| *s != Step::ReapHelpers).collect();
        for step in steps {
            self.step(step, ch)?;
        }
        Ok(())
    }

    /// Once every process is built: kills the helpers that held exited leaders' groups
    /// and sessions (see `plan::dead_leaders`).
    pub(super) fn reap_helpers(&mut self, ch: &std::sync::Mutex<Child>) -> Result<()> {
        if self.pp.steps.contains(&Step::ReapHelpers) {
            self.step(Step::ReapHelpers, ch)?;
        }
        Ok(())
    }

    /// Last, once every process of the tree is built and every helper gone: registers,
    /// then go.
    /// Whether the process comes back stopped.
    pub(super) fn stopped(&self) -> bool {
        self.p.attrs.as_ref().is_some_and(|a| a.stopped)
    }

    /// Its stopped children are stopped again now (detached first), which reports each
    /// stop to it once more and raises SIGCHLD — both had happened before the dump. Taken
    /// from inside while every signal is still blocked (before `Registers`): a
    /// waitid(WSTOPPED|WNOHANG) for each child whose stop it had collected already (wait
    /// with WUNTRACED; `stops_unreported`), and the SIGCHLD unless the image has one
    /// pending.
    pub(super) fn take_collected_stops(&self) -> Result<()> {
        let Some(a) = self.p.attrs.as_ref() else { return Ok(()) };
        let kids: Vec<i32> = self
            .m
            .processes
            .iter()
            .filter(|q| q.ppid == self.pid && !q.zombie && q.attrs.as_ref().is_some_and(|c| c.stopped))
            .map(|q| q.pid)
            .collect();
        if kids.is_empty() {
            return Ok(());
        }
        let st = "taking again the stop reports it had collected";
        let r = self.main();
        for &c in &kids {
            // its group stop is over once it shows T (bounded: it was detached stopped)
            if !procfs::wait_task_state(c, c, 'T', std::time::Duration::from_secs(2)) {
                warn!(pid = self.pid, child = c, "its stopped child did not stop again within 2 s: its stop may be reported again");
            }
            if a.stop_reports_known && !a.stops_unreported.contains(&c) {
                self.on(st, r, "waitid", |r| r.child_stop_pending(c, true))?;
            }
        }
        let sigchld_saved = self.p.shared_pending.iter().chain(self.p.threads.iter().flat_map(|t| t.pending.iter())).any(|s| s.signo == libc::SIGCHLD);
        if !sigchld_saved {
            self.on(st, r, "rt_sigtimedwait(SIGCHLD)", |r| r.take_pending_signal(libc::SIGCHLD))?;
        }
        Ok(())
    }

    /// Once every process is built: `ProcPlan::exit_steps`.
    pub(super) fn exit_leader_again(&mut self, ch: &std::sync::Mutex<Child>) -> Result<()> {
        for step in self.pp.exit_steps() {
            self.step(step, ch)?;
        }
        Ok(())
    }

    pub(super) fn finish(&mut self, ch: &std::sync::Mutex<Child>) -> Result<()> {
        for step in self.pp.finish_steps() {
            self.step(step, ch)?;
        }
        Ok(())
    }

    fn step(&mut self, step: Step, ch: &std::sync::Mutex<Child>) -> Result<()> {
        match step {
            Step::Seize => self.seize(ch),
            Step::AddressSpace => self.address_space(),
            Step::AioContexts => self.aio_contexts(),
            Step::FillMemory => self.fill_memory(),
            Step::FinishVmas => self.finish_vmas(),
            Step::MmFields => self.mm_fields(),
            Step::CreateThreads => self.create_threads(ch),
            Step::ThreadState => self.thread_state(),
            Step::Signals => self.signals(),
            Step::Timers => self.timers(),
            Step::Attrs => self.attrs(),
            Step::JoinGroup => {
                // Every process of the tree exists (leaders did setpgid/setsid while
                // being created).
                if let Err(e) = self.main().call(libc::SYS_setpgid, &[0, self.inner(self.pp.pgid) as u64]) {
                    debug!(pid = self.pid, pgid = self.pp.pgid, "process group not joined: {e}");
                }
                Ok(())
            }
            Step::Foreground => {
                // every group of the tree exists; signals are blocked, so no SIGTTOU
                let (Some(slot), Some(fg)) = (self.pp.ctty_slot, self.pp.foreground) else { return Ok(()) };
                let fd = *self.tmp_fds.get(slot).ok_or_else(|| self.err("foreground group", format!("no carried fd for slot {slot}")))?;
                let st = format!("making process group {fg} the foreground group of its terminal (TIOCSPGRP)");
                self.on(&st, self.main(), "ioctl(TIOCSPGRP)", |r| r.ioctl_set_int(fd, libc::TIOCSPGRP, self.inner(fg)))
            }
            Step::CloseCarried => {
                // all above the target's highest fd
                let r = self.main();
                self.call("closing restorer fds", r, libc::SYS_close_range, &[self.plan.base as u64, u32::MAX as u64, 0]).map(drop)
            }
            // after that close: closing any fd of a file drops the process's POSIX locks on it
            Step::Locks => self.locks(),
            Step::LateFds => self.late_fds(),
            Step::EpollItems => self.epoll_items(),
            Step::HandOver => self.hand_over(ch),
            // Seccomp before credentials (installing a filter without no_new_privs needs
            // CAP_SYS_ADMIN, which the process may have dropped since); our later
            // injected syscalls are not filtered (PTRACE_O_SUSPEND_SECCOMP).
            Step::Seccomp => self.seccomp(),
            Step::Creds => self.pdeath_and_creds(),
            Step::Dumpable => {
                let d = self.p.attrs.as_ref().map(|a| a.dumpable).unwrap_or(0);
                self.call("dumpable", self.main(), libc::SYS_prctl, &[libc::PR_SET_DUMPABLE as u64, d as u64]).map(drop)
            }
            Step::ReapHelpers => self.reap_group_helper(),
            Step::ArmPdeathsig => {
                // the helper that was its parent is gone now: arm the saved parent-death signal
                for t in &self.p.threads {
                    let r = self.remote_of(t.tid);
                    let st = format!("thread {} parent-death signal", t.tid);
                    self.call(&st, r, libc::SYS_prctl, &[libc::PR_SET_PDEATHSIG as u64, t.pdeathsig as u64])?;
                }
                Ok(())
            }
            Step::ProcFiles => self.proc_files(),
            Step::FileOwners => self.file_owners(),
            Step::CheckIds => {
                // every process of the tree is built and stopped: its ids are final
                if let Ok(f) = procfs::stat_fields(self.pid) {
                    let (pg, sid) = (procfs::stat_num(&f, 5) as i32, procfs::stat_num(&f, 6) as i32);
                    // a shell job's session is the restorer's now (crate::tty)
                    let shell_job = self.m.objects.iter().any(|o| o.tty().is_some_and(|t| t.external && t.session == self.pp.sid));
                    if (pg, sid) != (self.pp.pgid, self.pp.sid) && !(shell_job && pg == self.pp.pgid) {
                        warn!(pid = self.pid, "restored in process group {pg} and session {sid}; it was in group {} and session {}", self.pp.pgid, self.pp.sid);
                    }
                }
                Ok(())
            }
            Step::UnmapTrampoline => self.call("unmapping the trampoline", self.main(), libc::SYS_munmap, &[self.tramp, TRAMP_LEN]).map(drop),
            Step::Registers => self.registers(),
            Step::StopAgain => {
                if let Some(a) = self.p.attrs.as_ref().filter(|a| a.stopped) {
                    // Queued while every thread is still stopped under ptrace: the first
                    // thing each does after we detach is to enter the group stop again,
                    // with the signal that stopped it (its parent's wait reports that).
                    // The kernel drops SIGTSTP/SIGTTIN/SIGTTOU sent to an orphaned
                    // process group: such a process gets SIGSTOP.
                    let mut sig = if a.stop_signal == 0 { libc::SIGSTOP } else { a.stop_signal };
                    if sig != libc::SIGSTOP && procfs::pgrp_orphaned(self.pid) {
                        warn!(pid = self.pid, "stopped by signal {sig}, but its process group is orphaned now: stopped by SIGSTOP instead");
                        sig = libc::SIGSTOP;
                    }
                    debug!(pid = self.pid, sig, "stopping again");
                    sys::kill(self.pid, sig).map_err(|e| self.err("stopping the process again (it was stopped)", e))?;
                }
                Ok(())
            }
            Step::ExitLeader => self.exit_leader(),
            Step::Detach => {
                for t in &self.threads {
                    ptrace::detach(t.tid).map_err(|e| self.err("detaching", format!("thread {}: {e}", t.tid)))?;
                }
                // a SIGSTOP sent to it while we built it was held back: deliver it now
                if self.threads.iter().any(|t| t.stop_held()) {
                    sys::kill(self.pid, libc::SIGSTOP).map_err(|e| self.err("stopping it (SIGSTOP arrived while it was built)", e))?;
                }
                Ok(())
            }
        }
    }

    fn seize(&mut self, ch: &std::sync::Mutex<Child>) -> Result<()> {
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
        self.threads.push(Remote::new(pid, self.tramp, regs0).with_scratch(self.scratch()));
        // Block everything first: a child of this process may already have exited
        // (a zombie recreated), and its SIGCHLD must not interrupt our syscalls.
        ptrace::set_sigmask(pid, !0).map_err(|e| self.err("blocking signals", e))?;
        // The child inherited the restorer's rseq registration; its area disappears with
        // the restorer's mappings, so unregister it first (the kernel would SIGSEGV).
        let rs = ptrace::get_rseq(pid).map_err(|e| self.err("reading rseq registration", e))?;
        if rs.addr != 0 {
            self.call("unregistering the restorer's rseq", &self.threads[0], libc::SYS_rseq, &[rs.addr, rs.len as u64, 1, rs.sig as u64])?;
        }
        Ok(())
    }

    /// --detach (or a recreated session): hand the root over to its intermediate parent
    /// before the parent-death signal is set.
    fn hand_over(&self, ch: &std::sync::Mutex<Child>) -> Result<()> {
        let middle = ch.lock().unwrap().middle.take();
        if let Some((w, mpid)) = middle {
            for t in &self.threads {
                self.call("clearing parent-death signal", t, libc::SYS_prctl, &[libc::PR_SET_PDEATHSIG as u64, 0])?;
            }
            // --detach: the root goes to our nearest subreaper ancestor (or init), the
            // parent it keeps after we exit, not to us (a subreaper, for orphans of a
            // failed restore): its parent-death signal, armed after this, would fire
            // when we exit. A session helper's root stays ours (we wait for it).
            let detach = self.plan.rp.detach;
            if detach {
                sys::subreaper(false).map_err(|e| self.err("handing the root over (PR_SET_CHILD_SUBREAPER 0)", e))?;
            }
            let _ = sys::write_fd(w.as_fd(), b"d");
            drop(w);
            let _ = sys::waitpid(mpid, 0);
            if detach {
                let _ = sys::set_child_subreaper();
            }
        }
        Ok(())
    }

    /// Kills the helpers this process is the parent of (its group's, its children's
    /// sessions'), reaps them from inside, and drops the SIGCHLD they caused unless the
    /// image had one pending.
    fn reap_group_helper(&self) -> Result<()> {
        let helpers = &self.pp.helpers;
        let st = format!("removing helper processes {helpers:?} (they held exited leaders' groups/sessions)");
        for &g in helpers {
            let _ = sys::kill(g, libc::SIGKILL);
            self.call(&st, self.main(), libc::SYS_wait4, &[g as u64, 0, libc::__WALL as u64, 0])?;
        }
        let chld = libc::SIGCHLD;
        let pending = self.p.shared_pending.iter().chain(self.p.threads.iter().flat_map(|t| t.pending.iter())).any(|s| s.signo == chld);
        if !pending {
            let _ = self.main().sigtimedwait_poll(1u64 << (chld - 1));
        }
        Ok(())
    }

    /// pidfds and namespace fds of the tree (`plan::LateFd`): made here, moved to their
    /// numbers with dup3 (the kernel's lowest free fd may be another one's number: it
    /// is moved away before that one is made).
    fn late_fds(&self) -> Result<()> {
        use super::plan::LateWhat;
        let r = self.main();
        let mut done: std::collections::HashMap<u32, i32> = std::collections::HashMap::new();
        for l in &self.pp.late_fds {
            let cloexec = if l.cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            if let Some(&first) = done.get(&l.object_id) {
                // the same description (dup, pidfd_getfd of our own)
                let st = format!("making fd {} a dup of fd {first}", l.fd);
                self.call(&st, r, libc::SYS_dup3, &[first as u64, l.fd as u64, cloexec])?;
                continue;
            }
            done.insert(l.object_id, l.fd);
            let (st, made) = match l.what {
                LateWhat::Pidfd { pid, flags } => {
                    let st = format!("making fd {}, a pidfd of pid {pid}", l.fd);
                    let fd = self.call(&st, r, libc::SYS_pidfd_open, &[pid as u64, flags as u64])?;
                    (st, fd)
                }
                LateWhat::Ns { member, ioctl } => {
                    let st = format!("making fd {}, a namespace fd of pid {member} (PIDFD_GET ioctl {ioctl:#x})", l.fd);
                    let pfd = self.call(&st, r, libc::SYS_pidfd_open, &[member as u64, 0])?;
                    let ns = self.call(&st, r, libc::SYS_ioctl, &[pfd, ioctl, 0]);
                    self.call(&st, r, libc::SYS_close, &[pfd])?;
                    (st, ns?)
                }
            };
            if made as i32 != l.fd {
                self.call(&st, r, libc::SYS_dup3, &[made, l.fd as u64, cloexec])?;
                self.call(&st, r, libc::SYS_close, &[made])?;
            } else {
                self.call(&st, r, libc::SYS_fcntl, &[made, libc::F_SETFD as u64, if l.cloexec { libc::FD_CLOEXEC as u64 } else { 0 }])?;
            }
        }
        Ok(())
    }

    pub(super) fn remote_of(&self, tid: i32) -> &Remote {
        self.threads.iter().find(|r| r.tid == tid).unwrap_or(&self.threads[0])
    }

}
