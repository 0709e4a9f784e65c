//! Per-process attributes, seccomp, locks, credentials, epoll items.

use stasis_sys::kabi;
use stasis_sys::remote::{Remote, RemoteCalls};
use stasis_sys::sys;
use tracing::warn;

use crate::error::Result;
use crate::procfs;

use super::super::*;
use super::Builder;

impl Builder<'_> {
    pub(super) fn attrs(&self) -> Result<()> {
        let p = self.p;
        let attrs = p.attrs.clone().unwrap_or_default();
        for t in &self.threads {
            self.call("personality", t, libc::SYS_personality, &[attrs.personality as u64])?;
        }
        if attrs.child_subreaper {
            self.call("child subreaper", self.main(), libc::SYS_prctl, &[libc::PR_SET_CHILD_SUBREAPER as u64, 1])?;
        }
        if attrs.mdwe != 0 {
            // after every mapping exists (it refuses W+X and exec gain from now on); the
            // restorer never sets it, so "off" needs nothing
            const PR_SET_MDWE: u64 = 65;
            self.call("memory-deny-write-execute (PR_SET_MDWE)", self.main(), libc::SYS_prctl, &[PR_SET_MDWE, attrs.mdwe as u64, 0, 0, 0])?;
        }
        for rl in &p.rlimits {
            if let Err(e) = sys::prlimit(self.pid, rl.resource, Some((rl.cur, rl.max))) {
                return Err(self.err(
                    "restoring resource limits",
                    format!("resource {}: {}/{}: {e}", rl.resource, rl.cur, rl.max),
                ));
            }
        }
        if let Some(luid) = attrs.loginuid {
            // from inside: the kernel takes /proc/PID/loginuid writes only from PID itself
            let cur = procfs::read(self.pid, "loginuid").ok().and_then(|v| v.trim().parse::<u32>().ok());
            if cur.is_some_and(|c| c != luid) {
                let r = self.main().write_file("/proc/self/loginuid", luid.to_string().as_bytes());
                if let Err(e) = r {
                    warn!("pid {}: restoring the audit loginuid {luid} (it has {cur:?}): {e}", self.pid);
                }
            }
        }
        let cur: i32 = procfs::read(self.pid, "oom_score_adj").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        if cur != attrs.oom_score_adj {
            if let Err(e) = std::fs::write(format!("/proc/{}/oom_score_adj", self.pid), attrs.oom_score_adj.to_string()) {
                warn!("pid {}: restoring oom_score_adj {}: {e}", self.pid, attrs.oom_score_adj);
            }
        }
        if let Some(f) = attrs.coredump_filter {
            let path = format!("/proc/{}/coredump_filter", self.pid);
            std::fs::write(&path, format!("{f:#x}")).map_err(|e| self.err("restoring the core dump filter", format!("{path} ← {f:#x}: {e}")))?;
        }
        if let Some(nice) = attrs.autogroup_nice {
            self.autogroup_nice(nice)?;
        }
        Ok(())
    }

    /// The nice value of its autogroup (one per session): set only when the restored
    /// process has a group of its own, never the restorer's (which is its caller's
    /// session's: a shell job restored into the restorer's session leaves it as it is).
    fn autogroup_nice(&self, nice: i32) -> Result<()> {
        let path = format!("/proc/{}/autogroup", self.pid);
        let cur = std::fs::read_to_string(&path).ok().and_then(|t| crate::task::autogroup(&t));
        let mine = std::fs::read_to_string("/proc/self/autogroup").ok().and_then(|t| crate::task::autogroup(&t));
        // A restorer in the boot session's default group reads an empty file (None):
        // any group the restored process has is then its own.
        match (cur, mine) {
            (Some((_, n)), _) if n == nice => Ok(()),
            (Some((g, _)), m) if m.is_none_or(|(m, _)| m != g) => {
                std::fs::write(&path, nice.to_string()).map_err(|e| self.err("restoring the autogroup's nice value", format!("{path} ← {nice}: {e}")))
            }
            _ => {
                warn!(pid = self.pid, "its autogroup (nice {nice}) is the restorer's: its nice value is left as it is");
                Ok(())
            }
        }
    }

    pub(super) fn seccomp(&self) -> Result<()> {
        const SECCOMP_SET_MODE_STRICT: u64 = 0;
        const SECCOMP_FILTER_FLAG_TSYNC: u32 = 1;
        // Threads with the same filters (installed with SECCOMP_FILTER_FLAG_TSYNC, or
        // inherited from the thread that created them) share them again: installed once
        // in the main thread and synchronised to the others, so a later TSYNC install
        // by the process still finds every thread on its filter tree. Threads with
        // different filters each get their own copies.
        let threads = &self.p.threads;
        let shared = threads.len() > 1
            && !threads[0].seccomp_filters.is_empty()
            && threads.iter().all(|t| t.seccomp_filters == threads[0].seccomp_filters);
        for (n, t) in threads.iter().enumerate() {
            let r = self.remote_of(t.tid);
            if shared && n > 0 {
                break;
            }
            let flags = if shared { SECCOMP_FILTER_FLAG_TSYNC } else { 0 };
            for (i, f) in t.seccomp_filters.iter().enumerate() {
                let st = format!("installing seccomp filter {i} of thread {}{}", t.tid, if shared { " (for every thread)" } else { "" });
                let got = self.on(&st, r, "seccomp(SECCOMP_SET_MODE_FILTER)", |r| r.seccomp_filter(flags, f))?;
                if got != 0 {
                    return Err(self.err(&st, format!("thread {got} could not take the filter (SECCOMP_FILTER_FLAG_TSYNC)")));
                }
            }
        }
        for t in threads {
            let r = self.remote_of(t.tid);
            if t.seccomp_mode == 1 {
                let st = format!("seccomp strict mode of thread {}", t.tid);
                self.call(&st, r, libc::SYS_seccomp, &[SECCOMP_SET_MODE_STRICT, 0, 0])?;
            }
        }
        Ok(())
    }

    pub(super) fn locks(&self) -> Result<()> {
        let r = self.main();
        for l in &self.p.locks {
            let st = format!("re-acquiring the {} lock of fd {}", l.kind, l.fd);
            if l.kind == "lease" {
                // from inside: the kernel makes the caller the description's owner (the
                // FileOwners finish step then sets the one the image recorded)
                let ty = if l.write { libc::F_WRLCK } else { libc::F_RDLCK };
                self.call(&st, r, libc::SYS_fcntl, &[l.fd as u64, libc::F_SETLEASE as u64, ty as u64])?;
                continue;
            }
            if l.kind == "flock" {
                let op = if l.write { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
                self.call(&st, r, libc::SYS_flock, &[l.fd as u64, op as u64])?;
                continue;
            }
            let lock = kabi::Flock {
                l_type: if l.write { libc::F_WRLCK } else { libc::F_RDLCK } as i16,
                l_whence: libc::SEEK_SET as i16,
                l_start: l.start as i64,
                l_len: l.len as i64,
                ..Default::default()
            };
            let cmd = if l.kind == "ofd" { libc::F_OFD_SETLK } else { libc::F_SETLK };
            self.on(&st, r, "fcntl", |r| r.fcntl_lock(l.fd, cmd, &lock))?;
        }
        Ok(())
    }

    pub(super) fn pdeath_and_creds(&self) -> Result<()> {
        let p = self.p;
        let c = p.creds.clone().unwrap_or_default();
        for t in &p.threads {
            let r = self.remote_of(t.tid);
            let st = format!("thread {} parent-death signal", t.tid);
            // a death that is not its parent's would fire it: armed in finish()
            let sig = if self.pp.late_pdeathsig { 0 } else { t.pdeathsig };
            self.call(&st, r, libc::SYS_prctl, &[libc::PR_SET_PDEATHSIG as u64, sig as u64])?;
            if t.no_new_privs {
                self.call("no_new_privs", r, libc::SYS_prctl, &[libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0])?;
            }
        }
        // The restorer's credentials and this kernel's last capability, read by validate
        // before anything was created; every new process started with them.
        let h = super::super::validate::host()?;
        // Credentials are per thread: each thread gets its own when the image has them
        // (`Thread::creds`), else the process's. Set last in each thread (after
        // everything that needs the restorer's privileges).
        for t in &self.threads {
            let own = p.threads.iter().find(|th| th.tid == t.tid).and_then(|th| th.creds.as_ref());
            self.thread_creds(t, own.unwrap_or(&c), h)?;
        }
        Ok(())
    }

    fn thread_creds(&self, t: &Remote, c: &Creds, h: &super::super::validate::Host) -> Result<()> {
        let all = h.all_caps();
        let (Some(uids), Some(gids)) = (c.uids.get(..3), c.gids.get(..3)) else {
            return Err(self.err("restoring credentials", format!("{} uids and {} gids in the image", c.uids.len(), c.gids.len())));
        };
        if c.groups.len() > super::super::validate::MAX_GROUPS || c.groups.len() as u64 * 4 + DATA > TRAMP_LEN {
            return Err(self.err("restoring credentials", format!("{} supplementary groups do not fit the trampoline's data area", c.groups.len())));
        }
        // Nothing to change only if the image asks for exactly what the process has now.
        let all_root = uids.iter().all(|u| *u == 0) && gids.iter().all(|g| *g == 0) && h.privileged();
        let same_caps = c.cap_eff & all == h.cap_eff & all
            && c.cap_prm & all == h.cap_prm & all
            && c.cap_inh & all == h.cap_inh & all
            && c.cap_amb & all == h.cap_amb & all;
        let st = format!("credentials of thread {}", t.tid);
        // bounding set: drop every capability of this kernel that the image's lacks
        // (and the process still has: it started with the restorer's)
        for cap in 0..=u64::from(h.cap_last_cap) {
            let bit = 1u64 << cap;
            if h.cap_bnd & bit != 0 && c.cap_bnd & bit == 0 {
                self.call(&format!("{st}: dropping capability {cap} from the bounding set"), t, libc::SYS_prctl, &[libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0])?;
            }
        }
        // groups
        self.on(&st, t, "setgroups", |r| r.setgroups(&c.groups))?;
        if all_root && same_caps && c.securebits == 0 {
            return Ok(());
        }
        const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
        const SECBIT_KEEP_CAPS: u64 = 1 << 4;
        self.call(&st, t, libc::SYS_prctl, &[libc::PR_SET_SECUREBITS as u64, c.securebits as u64 | SECBIT_NO_SETUID_FIXUP | SECBIT_KEEP_CAPS])?;
        self.call(&format!("{st}: setresgid"), t, libc::SYS_setresgid, &[gids[0] as u64, gids[1] as u64, gids[2] as u64])?;
        self.call(&format!("{st}: setresuid"), t, libc::SYS_setresuid, &[uids[0] as u64, uids[1] as u64, uids[2] as u64])?;
        // capset: keep CAP_SETPCAP (8) effective until securebits are final
        let capset = |eff: u64, prm: u64, inh: u64| -> Result<()> { self.on(&st, t, "capset", |r| r.capset(&kabi::CapSet::new(eff, prm, inh))) };
        const SETPCAP: u64 = 1 << 8;
        let cur_prm = c.cap_prm | SETPCAP;
        capset(c.cap_eff | SETPCAP, cur_prm, c.cap_inh)?;
        self.call(&st, t, libc::SYS_prctl, &[libc::PR_SET_SECUREBITS as u64, c.securebits as u64])?;
        capset(c.cap_eff, c.cap_prm, c.cap_inh)?;
        for cap in 0..=u64::from(h.cap_last_cap) {
            if c.cap_amb & (1 << cap) != 0 {
                self.call(&st, t, libc::SYS_prctl, &[libc::PR_CAP_AMBIENT as u64, libc::PR_CAP_AMBIENT_RAISE as u64, cap, 0, 0])?;
            }
        }
        Ok(())
    }

    /// epoll items, added from inside the process by its own fd numbers (see
    /// fdkinds/epoll.rs): after the carried fds are closed, every fd is at its number.
    pub(super) fn epoll_items(&self) -> Result<()> {
        let r = self.main();
        for a in self.epoll {
            let st = format!("adding fd {} to epoll fd {}", a.tfd, a.epfd);
            let ev: kabi::EpollEvent = kabi::from_bytes(&a.event).ok_or_else(|| self.err(&st, "malformed event"))?;
            // the item's file under its old number for the moment: what the number holds
            // now (if anything) is put aside and back, with its FD_CLOEXEC
            let mut aside = None;
            if let Some(via) = a.via {
                let (tfd, via) = (a.tfd as u64, via as u64);
                let fd_flags = r.raw(libc::SYS_fcntl, &[tfd, libc::F_GETFD as u64]).map_err(|e| self.err(&st, e.to_string()))?;
                if fd_flags >= 0 {
                    let copy = self.call(&st, r, libc::SYS_fcntl, &[tfd, libc::F_DUPFD_CLOEXEC as u64, 0])?;
                    let cloexec = if fd_flags & libc::FD_CLOEXEC as i64 != 0 { libc::O_CLOEXEC as u64 } else { 0 };
                    aside = Some((copy, cloexec));
                }
                self.call(&st, r, libc::SYS_dup2, &[via, tfd])?;
            }
            self.on(&st, r, "epoll_ctl(ADD)", |r| r.epoll_ctl(a.epfd, libc::EPOLL_CTL_ADD, a.tfd, &ev))?;
            if let Some(saved) = a.fired_oneshot {
                // deliver it once, which disarms it as it was; not ready: the saved word
                if self.on(&st, r, "epoll_wait", |r| r.epoll_wait(a.epfd, 1, 0))?.is_empty() {
                    let saved: kabi::EpollEvent = kabi::from_bytes(&saved).ok_or_else(|| self.err(&st, "malformed event"))?;
                    self.on(&st, r, "epoll_ctl(MOD)", |r| r.epoll_ctl(a.epfd, libc::EPOLL_CTL_MOD, a.tfd, &saved))?;
                }
            }
            if a.via.is_some() {
                match aside {
                    Some((copy, cloexec)) => {
                        self.call(&st, r, libc::SYS_dup3, &[copy, a.tfd as u64, cloexec])?;
                        self.call(&st, r, libc::SYS_close, &[copy])?;
                    }
                    None => drop(self.call(&st, r, libc::SYS_close, &[a.tfd as u64])?),
                }
            }
        }
        Ok(())
    }

    /// Its /proc/PID files (of processes of the tree, which all exist now with their
    /// pids): opened from inside it (its own /proc, its own credentials) with the image's
    /// flags (never creating or truncating), moved to the fd number, at the offset; other
    /// fds of the same description are dups of it.
    pub(super) fn proc_files(&self) -> Result<()> {
        let r = self.main();
        let mut first: Vec<(u32, i32)> = Vec::new();
        for &(fd, id, cloexec) in &self.pp.proc_files {
            let st = format!("reopening the /proc file of fd {fd}");
            let cl = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            if let Some(&(_, src)) = first.iter().find(|(o, _)| *o == id) {
                self.call(&st, r, libc::SYS_dup3, &[src as u64, fd as u64, cl])?;
                continue;
            }
            let f = self.m.object(id).and_then(|o| o.file()).ok_or_else(|| self.err(&st, "no such file object"))?;
            let mut path = f.path.as_bytes().to_vec();
            path.push(0);
            let addr = self.scratch().write(0, &path).map_err(|e| self.err(&st, format!("path into the scratch area: {e}")))?;
            let never = libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | libc::O_TMPFILE | libc::O_CLOEXEC;
            let fl = (f.flags as i32 & !never) | libc::O_NOCTTY | libc::O_CLOEXEC;
            let n = self
                .call(&format!("{st} ({})", f.path), r, libc::SYS_openat, &[libc::AT_FDCWD as u64, addr, fl as u64, 0])?;
            if n as i32 != fd {
                self.call(&st, r, libc::SYS_dup3, &[n, fd as u64, cl])?;
                self.call(&st, r, libc::SYS_close, &[n])?;
            } else if !cloexec {
                self.call(&st, r, libc::SYS_fcntl, &[fd as u64, libc::F_SETFD as u64, 0])?;
            }
            if f.pos != 0 {
                self.call(&st, r, libc::SYS_lseek, &[fd as u64, f.pos, libc::SEEK_SET as u64])?;
            }
            first.push((id, fd));
        }
        Ok(())
    }

    /// Signal-driven I/O of the descriptions this process sets (crate::fown).
    pub(super) fn file_owners(&self) -> Result<()> {
        let r = self.main();
        for &fd in &self.pp.owner_fds {
            let Some(o) = self.p.fds.iter().find(|f| f.fd == fd).and_then(|f| self.m.object(f.object_id)).and_then(|o| o.owner.as_ref())
            else {
                continue;
            };
            let st = format!("signal-driven I/O of fd {fd}");
            if o.signal != 0 {
                self.call(&st, r, libc::SYS_fcntl, &[fd as u64, kabi::F_SETSIG as u64, o.signal as u64])?;
            }
            if o.pid != 0 {
                let own = crate::fown::owner_ex(o, |pid| self.inner(pid));
                self.on(&st, r, "fcntl(F_SETOWN_EX)", |r| r.fcntl_setown_ex(fd, &own))?;
            }
            if o.o_async {
                let fl = self.call(&st, r, libc::SYS_fcntl, &[fd as u64, libc::F_GETFL as u64])?;
                self.call(&st, r, libc::SYS_fcntl, &[fd as u64, libc::F_SETFL as u64, fl | libc::O_ASYNC as u64])?;
            }
        }
        Ok(())
    }
}
