//! Signal handlers, pending signals, itimers and POSIX timers.

use stasis_sys::sys;

use crate::error::Result;

use super::super::*;
use super::Builder;

impl Builder<'_> {
    pub(super) fn signals(&self) -> Result<()> {
        let p = self.p;
        let r = self.main();
        // The new process is a fork of stasis and inherited its handlers (Rust installs
        // SIGSEGV/SIGBUS handlers and ignores SIGPIPE): every signal the image does not
        // name goes back to SIG_DFL.
        self.write_data("resetting signal handlers", 0, &[0u8; 32])?;
        for sig in 1..=64u64 {
            if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 || p.sigactions.iter().any(|a| a.signo as u64 == sig) {
                continue;
            }
            self.call("resetting signal handlers", r, libc::SYS_rt_sigaction, &[sig, self.data(0), 0, 8])?;
        }
        for a in &p.sigactions {
            let st = format!("restoring the handler of signal {}", a.signo);
            let mut b = Vec::new();
            for w in [a.handler, a.flags, a.restorer, a.mask] {
                b.extend_from_slice(&w.to_le_bytes());
            }
            self.write_data(&st, 0, &b)?;
            self.call(&st, r, libc::SYS_rt_sigaction, &[a.signo as u64, self.data(0), 0, 8])?;
        }
        // Signals that reached the new process while we built it (SIGCHLD from a zombie
        // child recreated by exiting) are not the image's: drain them first.
        let zero = [0u8; 16];
        self.write_data("draining signals", 0, &[0xffu8; 8])?;
        self.write_data("draining signals", 16, &zero)?;
        for _ in 0..256 {
            match r.raw(libc::SYS_rt_sigtimedwait, &[self.data(0), 0, self.data(16), 8]) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
        // Pending signals: all threads block everything until registers are set.
        for s in &p.shared_pending {
            let st = format!("queueing pending signal {}", s.signo);
            self.write_data(&st, 0, &s.raw)?;
            self.call(&st, r, libc::SYS_rt_sigqueueinfo, &[self.inner(self.pid) as u64, s.signo as u64, self.data(0)])?;
        }
        for t in &p.threads {
            // The kernel lets a thread queue a siginfo with si_code >= 0 only to itself.
            let tr = self.remote_of(t.tid);
            for s in &t.pending {
                let st = format!("queueing pending signal {} of thread {}", s.signo, t.tid);
                self.write_data(&st, 0, &s.raw)?;
                let (ip, it) = (self.inner(self.pid) as u64, self.inner(t.tid) as u64);
            self.call(&st, tr, libc::SYS_rt_tgsigqueueinfo, &[ip, it, s.signo as u64, self.data(0)])?;
            }
        }
        Ok(())
    }

    pub(super) fn timers(&self) -> Result<()> {
        let p = self.p;
        let r = self.main();
        for it in &p.itimers {
            let st = format!("restoring itimer {}", it.which);
            let tv = |us: u64| [(us / 1_000_000).to_le_bytes(), (us % 1_000_000).to_le_bytes()].concat();
            let b = [tv(it.interval_us), tv(it.value_us.max(1))].concat();
            self.write_data(&st, 0, &b)?;
            self.call(&st, r, libc::SYS_setitimer, &[it.which as u64, self.data(0), 0])?;
        }
        if p.posix_timers.is_empty() {
            return Ok(());
        }
        let st = "restoring POSIX timers";
        self.call(st, r, libc::SYS_prctl, &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0]).map_err(|e| {
            self.err(st, format!("{e} (needs Linux 6.17+ for PR_TIMER_CREATE_RESTORE_IDS)"))
        })?;
        for t in &p.posix_timers {
            let st = format!("restoring POSIX timer {}", t.id);
            // struct sigevent: sigval (8), signo (4), notify (4), tid (4), pad to 64
            let mut ev = vec![0u8; 64];
            ev[0..8].copy_from_slice(&t.sigval.to_le_bytes());
            ev[8..12].copy_from_slice(&t.signo.to_le_bytes());
            ev[12..16].copy_from_slice(&t.notify.to_le_bytes());
            ev[16..20].copy_from_slice(&self.inner(t.notify_tid).to_le_bytes());
            self.write_data(&st, 0, &ev)?;
            self.write_data(&st, 64, &t.id.to_le_bytes())?;
            self.call(&st, r, libc::SYS_timer_create, &[t.clock as u64, self.data(0), self.data(64)])?;
            let got = i32::from_le_bytes(sys::read_mem(self.pid, self.data(64), 4).map_err(|e| self.err(&st, e))?.try_into().unwrap());
            if got != t.id {
                return Err(self.err(&st, format!("kernel gave timer id {got}")));
            }
            if t.value_ns != 0 || t.interval_ns != 0 {
                let ts = |ns: u64| [(ns / 1_000_000_000).to_le_bytes(), (ns % 1_000_000_000).to_le_bytes()].concat();
                let b = [ts(t.interval_ns), ts(t.value_ns.max(1))].concat();
                self.write_data(&st, 128, &b)?;
                self.call(&st, r, libc::SYS_timer_settime, &[t.id as u64, 0, self.data(128), 0])?;
            }
        }
        self.call(st, r, libc::SYS_prctl, &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0])?;
        Ok(())
    }

}
