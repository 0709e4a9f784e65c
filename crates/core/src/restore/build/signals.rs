//! Signal handlers, pending signals, itimers and POSIX timers.

use stasis_sys::kabi::{Itimerspec, Itimerval, KSigaction, Sigevent};
use stasis_sys::remote::{Remote, RemoteCalls};

use crate::error::Result;

use super::super::*;
use super::Builder;

impl Builder<'_> {
    /// A typed injected call `f` in thread `r`; its error names the step, the call and
    /// the thread.
    pub(super) fn on<T>(&self, step: &str, r: &Remote, what: &str, f: impl FnOnce(&Remote) -> stasis_sys::Result<T>) -> Result<T> {
        f(r).map_err(|e| self.err(step, format!("{what} in thread {}: {e}", r.tid)))
    }

    pub(super) fn signals(&self) -> Result<()> {
        let p = self.p;
        let r = self.main();
        // The new process is a fork of stasis and inherited its handlers (Rust installs
        // SIGSEGV/SIGBUS handlers and ignores SIGPIPE): every signal the image does not
        // name goes back to SIG_DFL.
        let reset: Vec<i32> = (1..=64)
            .filter(|&sig| sig != libc::SIGKILL && sig != libc::SIGSTOP && !p.sigactions.iter().any(|a| a.signo == sig))
            .collect();
        self.on("resetting signal handlers", r, "rt_sigaction", |r| r.sigaction_set_all(&reset, &KSigaction::default()))?;
        for a in &p.sigactions {
            let st = format!("restoring the handler of signal {}", a.signo);
            let act = KSigaction { handler: a.handler, flags: a.flags, restorer: a.restorer, mask: a.mask };
            self.on(&st, r, "rt_sigaction", |r| r.sigaction_set(a.signo, &act))?;
        }
        // Signals that reached the new process while we built it (SIGCHLD from a zombie
        // child recreated by exiting) are not the image's: drain them first.
        for _ in 0..256 {
            match r.sigtimedwait_poll(!0) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
        // Pending signals: all threads block everything until registers are set.
        for s in p.shared_pending.iter().filter(|s| !self.timers_own(s)) {
            let st = format!("queueing pending signal {}", s.signo);
            let tgid = self.inner(self.pid);
            self.on(&st, r, "rt_sigqueueinfo", |r| r.sigqueueinfo(tgid, s.signo, &s.raw))?;
        }
        for t in &p.threads {
            // The kernel lets a thread queue a siginfo with si_code >= 0 only to itself.
            let tr = self.remote_of(t.tid);
            for s in t.pending.iter().filter(|s| !self.timers_own(s)) {
                let st = format!("queueing pending signal {} of thread {}", s.signo, t.tid);
                let (ip, it) = (self.inner(self.pid), self.inner(t.tid));
                self.on(&st, tr, "rt_tgsigqueueinfo", |r| r.tgsigqueueinfo(ip, it, s.signo, &s.raw))?;
            }
        }
        Ok(())
    }

    /// The periodic POSIX timer whose own signal `s` is (SI_TIMER, its id), if that timer
    /// is re-armed so that the kernel queues it again (`timers`). The kernel re-arms a
    /// periodic timer only once its pending signal is delivered, counting the expiries
    /// missed meanwhile as overruns; a copy queued next to the timer's own would be
    /// delivered twice (a realtime signal) with no overruns.
    fn own_pending_timer(&self, s: &SigInfo) -> Option<&PosixTimer> {
        let code = i32::from_le_bytes(s.raw.get(8..12)?.try_into().ok()?);
        let id = i32::from_le_bytes(s.raw.get(16..20)?.try_into().ok()?);
        if code != libc::SI_TIMER {
            return None;
        }
        // CPU-clock timers (negative clock ids) keep the copy: their "now" is the CPU time
        self.p.posix_timers.iter().find(|t| t.id == id && t.signo == s.signo && t.interval_ns != 0 && t.clock >= 0)
    }

    fn timers_own(&self, s: &SigInfo) -> bool {
        self.own_pending_timer(s).is_some()
    }

    pub(super) fn timers(&self) -> Result<()> {
        let p = self.p;
        let r = self.main();
        for it in &p.itimers {
            let st = format!("restoring itimer {}", it.which);
            let v = Itimerval::from_us(it.interval_us, it.value_us.max(1));
            self.on(&st, r, "setitimer", |r| r.setitimer(it.which, &v))?;
        }
        if p.posix_timers.is_empty() {
            return Ok(());
        }
        let st = "restoring POSIX timers";
        r.prctl(PR_TIMER_CREATE_RESTORE_IDS as i32, 1, 0, 0, 0).map_err(|e| {
            self.err(st, format!("prctl in thread {}: {e} (needs Linux 6.17+ for PR_TIMER_CREATE_RESTORE_IDS)", r.tid))
        })?;
        for t in &p.posix_timers {
            let st = format!("restoring POSIX timer {}", t.id);
            let ev = Sigevent { value: t.sigval, signo: t.signo, notify: t.notify, tid: self.inner(t.notify_tid), ..Default::default() };
            let got = self.on(&st, r, "timer_create", |r| r.timer_create(t.clock, &ev, t.id))?;
            if got != t.id {
                return Err(self.err(&st, format!("kernel gave timer id {got}")));
            }
            let pending = p.shared_pending.iter().chain(p.threads.iter().flat_map(|th| th.pending.iter())).any(|s| self.own_pending_timer(s).is_some_and(|o| o.id == t.id));
            if pending {
                // Its signal was pending: armed on its clock one interval before its next
                // expiry, already past, so it expires at once (its own signal pending
                // again, not re-armed until delivered) and keeps its period's phase;
                // overruns count from the restore.
                let now = self.on(&st, r, "clock_gettime", |r| r.clock_gettime(t.clock))?.to_ns();
                let at = now.saturating_add(t.value_ns).saturating_sub(t.interval_ns).max(1);
                let v = Itimerspec::from_ns(t.interval_ns, at);
                const TIMER_ABSTIME: i32 = 1;
                self.on(&st, r, "timer_settime(TIMER_ABSTIME)", |r| r.timer_settime(t.id, TIMER_ABSTIME, &v))?;
            } else if t.value_ns != 0 || t.interval_ns != 0 {
                let v = Itimerspec::from_ns(t.interval_ns, t.value_ns.max(1));
                self.on(&st, r, "timer_settime", |r| r.timer_settime(t.id, 0, &v))?;
            }
        }
        self.on(st, r, "prctl", |r| r.prctl(PR_TIMER_CREATE_RESTORE_IDS as i32, 0, 0, 0, 0))?;
        Ok(())
    }
}
