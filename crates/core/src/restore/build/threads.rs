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
            .skip(1)
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
            if let Err(e) = sys::sched_set(tid, t.sched_policy, t.sched_priority) {
                warn!("thread {tid}: restoring scheduling policy {}: {e}", t.sched_policy);
            }
            if matches!(t.sched_policy, libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE) {
                if let Err(e) = sys::set_nice(tid, t.nice) {
                    warn!("thread {tid}: restoring nice {}: {e}", t.nice);
                }
            }
            // Always, "none" (0) too: otherwise the thread keeps the restorer's (e.g. a
            // restore run under `ionice -c3` would leave every restored thread idle-class).
            sys::ioprio_set(tid, t.ioprio).map_err(|e| self.err(&st, format!("ioprio_set({:#x}): {e}", t.ioprio)))?;
        }
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
