//! Threads: creation with their tids, per-thread state, registers.

use stasis_image::model::*;
use stasis_sys::kabi;
use stasis_sys::ptrace::{self, Stop};
use stasis_sys::remote::{Remote, RemoteCalls};
use stasis_sys::sys;
use tracing::warn;

use crate::error::Result;
use crate::cpu;

use super::super::*;
use super::super::spawn::Child;
use super::Builder;

/// How long the recreated main thread of a process whose main thread had exited may take
/// to exit again.
const LEADER_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// sizeof(struct robust_list_head): the only length set_robust_list accepts.
pub(super) const ROBUST_LIST_HEAD_LEN: u64 = 24;

/// The alternate signal stack a thread had, "disabled" included. SS_ONSTACK is a state
/// (the thread was running on it), not a flag one can set; SS_AUTODISARM is kept.
pub(super) fn altstack(t: &Thread) -> kabi::StackT {
    if t.altstack_flags & libc::SS_DISABLE != 0 || t.altstack_sp == 0 {
        return kabi::StackT { ss_flags: libc::SS_DISABLE, ..Default::default() };
    }
    const SS_AUTODISARM: i32 = 1 << 31;
    kabi::StackT { ss_sp: t.altstack_sp, ss_flags: t.altstack_flags & SS_AUTODISARM, _pad: 0, ss_size: t.altstack_size }
}

impl Builder<'_> {
    pub(super) fn create_threads(&mut self, ch: &std::sync::Mutex<Child>) -> Result<()> {
        let main_regs = ptrace::getregs(self.pid).map_err(|e| self.err("creating threads", e))?;
        let threads: Vec<(i32, Vec<i32>)> = self
            .p
            .threads
            .iter()
            // the main thread is the process itself (unless it had exited: then every
            // thread of the image is a new one)
            .skip(usize::from(!self.p.leader_exited))
            .map(|t| {
                let mut v = if t.ns_tids.len() > 1 { t.ns_tids.clone() } else { vec![t.tid] };
                v.reverse(); // innermost first
                (t.tid, v)
            })
            .collect();
        for (tid, set_tid) in threads {
            let st = format!("creating thread {tid}");
            let args = kabi::CloneArgs { flags: CLONE_THREAD_FLAGS, ..Default::default() };
            let got = self.main().clone3(&args, &set_tid).map_err(|e| self.err(&st, e))?;
            // clone3 returns the tid as the process itself sees it (innermost level)
            if got != set_tid[0] as i64 {
                let why = if got == -(libc::EEXIST as i64) {
                    format!("thread id {tid} is in use{}", holder(tid).map(|h| format!(" by {h}")).unwrap_or_default())
                } else {
                    format!("clone3 returned {got}")
                };
                return Err(self.err(&st, why));
            }
            ch.lock().unwrap().traced.push(tid);
            loop {
                let s = ptrace::wait(tid).map_err(|e| self.err(&st, e))?;
                match ptrace::decode(s) {
                    Stop::Stopped(_, ptrace::PTRACE_EVENT_STOP) | Stop::Stopped(libc::SIGSTOP, _) => break,
                    Stop::Stopped(_, _) => ptrace::cont(tid, 0).map_err(|e| self.err(&st, e))?,
                    other => return Err(self.err(&st, format!("{other:?}"))),
                }
            }
            ptrace::set_sigmask(tid, !0).map_err(|e| self.err(&st, e))?;
            self.threads.push(Remote::new(tid, self.tramp, main_regs).with_scratch(self.scratch()));
        }
        Ok(())
    }

    pub(super) fn thread_state(&self) -> Result<()> {
        if self.p.leader_exited {
            // The main thread only lives until `exit_leader`: nothing of the restorer's
            // copy may act at its exit (a robust list, a tid address to clear: both
            // point into memory that is the restored process's now).
            let r = self.main();
            self.call("main thread (exits again): robust list", r, libc::SYS_set_robust_list, &[0, ROBUST_LIST_HEAD_LEN])?;
            self.call("main thread (exits again): tid address", r, libc::SYS_set_tid_address, &[0])?;
        }
        for t in &self.p.threads {
            let r = self.remote_of(t.tid);
            let st = format!("thread {} state", t.tid);
            // Every per-thread attribute is set, also to "none": the new thread is a copy
            // of the restorer's, and whatever of its state is not overwritten (its robust
            // list, its alternate signal stack, both pointing into memory that is gone)
            // would survive into the restored process.
            self.call(&format!("{st}: robust list"), r, libc::SYS_set_robust_list, &[t.robust_list, ROBUST_LIST_HEAD_LEN])?;
            if t.rseq_addr != 0 {
                self.call(&format!("{st}: rseq"), r, libc::SYS_rseq, &[t.rseq_addr, t.rseq_len as u64, 0, t.rseq_sig as u64])?;
            }
            self.call(&st, r, libc::SYS_set_tid_address, &[t.clear_child_tid])?;
            // 0 = back to the default slack (the value it was born with)
            self.on(&format!("{st}: timer slack"), r, "prctl", |r| r.prctl(libc::PR_SET_TIMERSLACK, t.timerslack_ns, 0, 0, 0))?;
            let ss = altstack(t);
            self.on(&format!("{st}: sigaltstack"), r, "sigaltstack", |r| r.sigaltstack_set(&ss))?;
            let tid = t.tid;
            if !t.comm.is_empty() {
                // /proc/PID/task/TID/comm is only writable from inside the thread group.
                self.on(&format!("{st}: comm"), r, "PR_SET_NAME", |r| r.prctl_set_name(t.comm.as_bytes()))?;
            }
            if !t.affinity.is_empty() {
                if let Err(e) = sys::set_affinity(tid, &t.affinity) {
                    warn!("thread {tid}: restoring CPU affinity: {e}");
                }
            }
            self.scheduling(t)?;
            if let Some(fs) = &t.own_fs {
                self.own_fs(&st, r, fs)?;
            }
            self.task_flags(&st, r, t)?;
            // always, MPOL_DEFAULT too: the new thread has the restorer's policy (a
            // kernel without NUMA has none to set)
            let (mode, nodes) = crate::numa::raw_mode(t.mempolicy.as_ref());
            match r.set_mempolicy(mode, nodes) {
                Err(e) if t.mempolicy.is_none() && crate::numa::unsupported(&e) => {}
                res => res.map_err(|e| self.err(&st, format!("set_mempolicy (its NUMA policy): {e}")))?,
            }
            // Always, "none" (0) too: otherwise the thread keeps the restorer's (e.g. a
            // restore run under `ionice -c3` would leave every restored thread idle-class).
            sys::ioprio_set(tid, t.ioprio).map_err(|e| self.err(&st, format!("ioprio_set({:#x}): {e}", t.ioprio)))?;
        }
        Ok(())
    }

    /// Nice value, then policy, its flags (SCHED_RESET_ON_FORK) and its parameters in one
    /// sched_setattr. Nice is kept by every policy (a real-time thread going back to
    /// SCHED_OTHER gets it again). A SCHED_DEADLINE reservation the kernel refuses (its
    /// admission control: not enough bandwidth left) fails the restore: the thread
    /// would otherwise run without the guarantee it had.
    fn scheduling(&self, t: &Thread) -> Result<()> {
        let tid = t.tid;
        if let Err(e) = sys::set_nice(tid, t.nice) {
            warn!("thread {tid}: restoring nice {}: {e}", t.nice);
        }
        const RESET_ON_FORK: i32 = 0x4000_0000; // as sched_getscheduler reports it
        let policy = t.sched_policy & !RESET_ON_FORK;
        let rof = if t.sched_policy & RESET_ON_FORK != 0 { kabi::SCHED_FLAG_RESET_ON_FORK } else { 0 };
        let attr = kabi::SchedAttr {
            sched_policy: policy as u32,
            sched_flags: (t.sched_flags & crate::task::SCHED_FLAGS_KEPT) | rof,
            sched_nice: t.nice,
            sched_priority: t.sched_priority as u32,
            sched_runtime: t.sched_runtime,
            sched_deadline: t.sched_deadline,
            sched_period: t.sched_period,
            ..Default::default()
        };
        match sys::sched_setattr(tid, &attr) {
            Ok(()) => Ok(()),
            Err(e) if policy == kabi::SCHED_DEADLINE => Err(self.err(
                &format!("thread {tid} state"),
                format!(
                    "the kernel refuses its SCHED_DEADLINE reservation (runtime {} ns, deadline {} ns, period {} ns): {e}",
                    t.sched_runtime, t.sched_deadline, t.sched_period
                ),
            )),
            Err(e) => {
                warn!("thread {tid}: restoring scheduling policy {policy} (flags {:#x}): {e}", attr.sched_flags);
                Ok(())
            }
        }
    }

    /// A thread that had unshared its cwd and umask from the rest of the process
    /// (unshare(CLONE_FS)) does so again, then takes its own.
    fn own_fs(&self, st: &str, r: &Remote, fs: &ThreadFs) -> Result<()> {
        let st = format!("{st}: its own working directory {} (unshare(CLONE_FS))", fs.cwd);
        self.call(&st, r, libc::SYS_unshare, &[libc::CLONE_FS as u64])?;
        let mut path = fs.cwd.as_bytes().to_vec();
        path.push(0);
        let addr = self.scratch().write(0, &path).map_err(|e| self.err(&st, format!("path into the scratch area: {e}")))?;
        self.call(&st, r, libc::SYS_chdir, &[addr])?;
        self.call(&st, r, libc::SYS_umask, &[fs.umask as u64]).map(drop)
    }

    /// Per-thread flags only the thread itself can set: rdtsc faulting (PR_SET_TSC),
    /// machine-check kill policy (PR_MCE_KILL), cpuid faulting (ARCH_SET_CPUID). Each is
    /// set also to its default: the thread is a copy of the restorer's.
    fn task_flags(&self, st: &str, r: &Remote, t: &Thread) -> Result<()> {
        let tsc = if t.tsc_sigsegv { libc::PR_TSC_SIGSEGV } else { libc::PR_TSC_ENABLE };
        self.call(&format!("{st}: PR_SET_TSC"), r, libc::SYS_prctl, &[libc::PR_SET_TSC as u64, tsc as u64, 0, 0, 0])?;
        let mce = match t.mce_kill {
            Some(v @ (libc::PR_MCE_KILL_LATE | libc::PR_MCE_KILL_EARLY)) => [libc::PR_MCE_KILL_SET as u64, v as u64],
            _ => [libc::PR_MCE_KILL_CLEAR as u64, 0],
        };
        self.call(&format!("{st}: PR_MCE_KILL"), r, libc::SYS_prctl, &[libc::PR_MCE_KILL as u64, mce[0], mce[1], 0, 0])?;
        if t.cpuid_faulting {
            self.call(&format!("{st}: ARCH_SET_CPUID 0 (cpuid faults)"), r, libc::SYS_arch_prctl, &[crate::task::ARCH_SET_CPUID, 0])?;
        }
        Ok(())
    }

    /// A process whose main thread had exited: once the process is built, that thread,
    /// stopped with every signal blocked, runs SYS_exit (the thread's exit, never
    /// exit_group) with its saved code from a `syscall` instruction of the process's
    /// vDSO, and is detached; once it is a zombie again (bounded wait) it leaves
    /// `threads`, and the rest (finish steps) goes through a live thread, whose registers
    /// are set last as ever. A signal sent to the process reaches a live thread.
    pub(super) fn exit_leader(&mut self) -> Result<()> {
        let st = "making the main thread exit again (it had exited before the dump)";
        // where the built process has it (its own, or its parent's for a CLONE_VM child)
        let maps = crate::procfs::read(self.pid, "maps").map_err(|e| self.err(st, format!("reading /proc/PID/maps: {e}")))?;
        let vdso = crate::procfs::parse_maps(&maps).into_iter().find(|m| m.path == "[vdso]").ok_or_else(|| self.err(st, "the process has no [vdso] to run SYS_exit from"))?;
        let code = sys::read_mem(self.pid, vdso.start, vdso.len() as usize).map_err(|e| self.err(st, format!("reading its [vdso]: {e}")))?;
        let at = code.windows(2).position(|w| w == [0x0f, 0x05]).ok_or_else(|| self.err(st, "no syscall instruction in its [vdso]"))?;
        let leader = self.main();
        let mut regs = ptrace::getregs(leader.tid).map_err(|e| self.err(st, e))?;
        regs.rip = vdso.start + at as u64;
        regs.rax = libc::SYS_exit as u64;
        regs.orig_rax = u64::MAX; // not in a syscall: nothing to restart
        regs.rdi = ((self.p.leader_exit_status >> 8) & 0xff) as u64;
        ptrace::setregs(leader.tid, &regs).map_err(|e| self.err(st, e))?;
        ptrace::set_sigmask(leader.tid, !0).map_err(|e| self.err(st, e))?;
        ptrace::detach(leader.tid).map_err(|e| self.err(st, e))?;
        if !crate::procfs::wait_task_state(self.pid, self.pid, 'Z', LEADER_EXIT_WAIT) {
            return Err(self.err(st, format!("it did not exit within {} s", LEADER_EXIT_WAIT.as_secs())));
        }
        self.threads.retain(|t| t.tid != self.pid);
        Ok(())
    }

    pub(super) fn registers(&self) -> Result<()> {
        let p = self.p;
        let shared_pending_mask: u64 = p.shared_pending.iter().fold(0, |m, s| m | 1u64 << (s.signo - 1));
        for t in &p.threads {
            let st = format!("registers of thread {}", t.tid);
            let mut regs = ptrace::words_to_regs(&t.regs).ok_or_else(|| self.err(&st, "bad register record"))?;
            let own: u64 = t.pending.iter().fold(0, |m, s| m | 1u64 << (s.signo - 1));
            let deliverable = (own | shared_pending_mask) & !t.sigmask != 0;
            cpu::restore_fixup(&mut regs, deliverable);
            ptrace::setregs(t.tid, &regs).map_err(|e| self.err(&st, e))?;
            ptrace::set_xstate(t.tid, &t.xstate).map_err(|e| self.err(&st, format!("xstate: {e}")))?;
            ptrace::set_sigmask(t.tid, t.sigmask).map_err(|e| self.err(&st, format!("signal mask: {e}")))?;
        }
        Ok(())
    }

}
