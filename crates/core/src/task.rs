//! Per-thread and per-process task state: threads, signals, timers, credentials,
//! attributes. Dump side; the restore side is in restore.rs, step by step.

use stasis_image::model::*;
use stasis_sys::remote::RemoteCalls;
use stasis_sys::{kabi, ptrace, sys};

use crate::error::{Ctx, Error, Result};
use crate::freeze::Frozen;
use crate::parasite::Parasite;
use crate::procfs;

pub const NSIG: i32 = 64;

fn hex_field(st: &[(String, String)], k: &str) -> u64 {
    procfs::status_field(st, k).and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(0)
}

fn id_list(st: &[(String, String)], k: &str) -> Vec<u32> {
    procfs::status_field(st, k).unwrap_or("").split_whitespace().filter_map(|x| x.parse().ok()).collect()
}

fn siginfo_list(v: Vec<[u8; 128]>) -> Vec<SigInfo> {
    v.into_iter().map(|raw| SigInfo { signo: i32::from_le_bytes(raw[0..4].try_into().unwrap()), raw: raw.to_vec() }).collect()
}

/// Threads: registers from the freeze, the rest from ptrace, procfs and the parasite.
/// `process` is the process's credentials (its main thread's): a thread whose own differ
/// keeps them in `Thread::creds`.
pub fn dump_threads(fz: &Frozen, par: &Parasite, process: &Creds) -> Result<Vec<Thread>> {
    let pid = fz.pid;
    let mut out = Vec::new();
    for t in &fz.threads {
        let tid = t.tid;
        let creds = if tid == pid { None } else { Some(dump_creds(pid, par, tid)?).filter(|c| c != process) };
        let own_fs = own_fs(pid, tid)?;
        let sa = sys::sched_getattr(tid).ctx(pid, || format!("sched_getattr({tid})"))?;
        let tsc = par.with(tid, "PR_GET_TSC", |r| r.prctl_get_int(libc::PR_GET_TSC)).unwrap_or(libc::PR_TSC_ENABLE);
        let mce_kill = par.raw(tid, libc::SYS_prctl, &[libc::PR_MCE_KILL_GET as u64, 0, 0, 0, 0])?;
        // 1: cpuid runs, 0: it faults; an error (no CPUID faulting in this CPU): it runs
        let cpuid = par.raw(tid, libc::SYS_arch_prctl, &[ARCH_GET_CPUID, 0])?;
        let xstate = ptrace::get_xstate(tid).ctx(pid, || format!("reading xstate of thread {tid}"))?;
        let (robust_list, robust_list_len) =
            sys::get_robust_list(tid).ctx(pid, || format!("get_robust_list of thread {tid}"))?;
        let rseq = ptrace::get_rseq(tid).ctx(pid, || format!("PTRACE_GET_RSEQ_CONFIGURATION of thread {tid}"))?;
        let clear_child_tid = par.with(tid, "PR_GET_TID_ADDRESS", |r| r.prctl_get_tid_address())?;
        let mempolicy = crate::numa::dump_thread(par, tid)?;
        let ss = par.with(tid, "sigaltstack", |r| r.sigaltstack_get())?;
        let pdeathsig = par.with(tid, "PR_GET_PDEATHSIG", |r| r.prctl_get_int(libc::PR_GET_PDEATHSIG))?;
        let nnp = par.with(tid, "PR_GET_NO_NEW_PRIVS", |r| r.prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0))?;
        let timerslack_ns = par.with(tid, "PR_GET_TIMERSLACK", |r| r.prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0))?;
        let (sched_policy, sched_priority) = sys::sched_get(tid).ctx(pid, || format!("sched_getscheduler({tid})"))?;
        let nice = sys::get_nice(tid).ctx(pid, || format!("getpriority({tid})"))?;
        let ioprio = sys::ioprio_get(tid).ctx(pid, || format!("ioprio_get({tid})"))?;
        let affinity = sys::get_affinity(tid).ctx(pid, || format!("sched_getaffinity({tid})"))?;
        let pending = thread_pending(pid, t)?;
        let comm = procfs::read(pid, &format!("task/{tid}/comm")).unwrap_or_default().trim_end().to_string();
        let tst = procfs::read(pid, &format!("task/{tid}/status")).unwrap_or_default();
        let seccomp_mode: i32 = tst
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or(0);
        let seccomp_filters = if seccomp_mode == 2 {
            ptrace::seccomp_filters(tid).ctx(pid, || format!("PTRACE_SECCOMP_GET_FILTER of thread {tid}"))?
        } else {
            Vec::new()
        };
        out.push(Thread {
            tid,
            comm,
            regs: ptrace::regs_to_words(&t.regs),
            xstate,
            sigmask: t.sigmask,
            robust_list,
            robust_list_len,
            clear_child_tid,
            rseq_addr: rseq.addr,
            rseq_len: rseq.len,
            rseq_sig: rseq.sig,
            altstack_sp: ss.ss_sp,
            altstack_flags: ss.ss_flags,
            altstack_size: ss.ss_size,
            sched_policy,
            sched_priority,
            nice,
            ioprio,
            affinity,
            pending,
            pdeathsig,
            no_new_privs: nnp == 1,
            in_syscall: t.regs.orig_rax as i64,
            timerslack_ns,
            seccomp_mode,
            seccomp_filters,
            ns_tids: crate::ns::ns_pids(pid, tid),
            creds,
            own_fs,
            sched_flags: sa.sched_flags & SCHED_FLAGS_KEPT,
            sched_runtime: sa.sched_runtime,
            sched_deadline: sa.sched_deadline,
            sched_period: sa.sched_period,
            tsc_sigsegv: tsc == libc::PR_TSC_SIGSEGV,
            mce_kill: (0..=2).contains(&mce_kill).then_some(mce_kill as i32),
            cpuid_faulting: cpuid == 0,
            mempolicy,
        });
    }
    Ok(out)
}

/// All signal handlers (kernel struct sigaction: handler, flags, restorer, mask).
pub fn dump_sigactions(fz: &Frozen, par: &Parasite) -> Result<Vec<SigAction>> {
    let mut out = Vec::new();
    for sig in 1..=NSIG {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let a = par.with(fz.pid, &format!("rt_sigaction({sig})"), |r| r.sigaction_get(sig))?;
        if a.handler == 0 && a.flags == 0 && a.mask == 0 {
            continue; // SIG_DFL with nothing else: the default after restore too
        }
        out.push(SigAction { signo: sig, handler: a.handler, flags: a.flags, restorer: a.restorer, mask: a.mask });
    }
    Ok(out)
}

pub fn dump_itimers(fz: &Frozen, par: &Parasite) -> Result<Vec<ITimer>> {
    let mut out = Vec::new();
    for which in 0..3 {
        let v = par.with(fz.pid, &format!("getitimer({which})"), |r| r.getitimer(which))?;
        let (interval_us, value_us) = (v.interval.to_us(), v.value.to_us());
        if interval_us != 0 || value_us != 0 {
            out.push(ITimer { which, interval_us, value_us });
        }
    }
    Ok(out)
}

pub fn dump_posix_timers(fz: &Frozen, par: &Parasite) -> Result<Vec<PosixTimer>> {
    let mut out = Vec::new();
    // /proc lists the newest timer first: the image keeps creation order, so the restored
    // process lists them as the original did
    let mut timers = procfs::timers(fz.pid).ctx(fz.pid, || "reading /proc/PID/timers".into())?;
    timers.reverse();
    for t in timers {
        let v = par.with(fz.pid, &format!("timer_gettime({})", t.id), |r| r.timer_gettime(t.id))?;
        // /proc shows "KIND/pid.N" or "KIND/tid.N" (SIGEV_THREAD_ID: the signal goes to
        // thread N, as glibc's SIGEV_THREAD timers aim at their helper thread)
        let kind = match t.notify.as_str() {
            "signal" => libc::SIGEV_SIGNAL,
            "thread" => libc::SIGEV_THREAD,
            "none" => libc::SIGEV_NONE,
            other => {
                return Err(Error::Unsupported { pid: fz.pid, what: format!("POSIX timer {} with notify '{other}'", t.id) })
            }
        };
        let notify = if t.to_thread { kind | libc::SIGEV_THREAD_ID } else { kind };
        let overrun = par.raw(fz.pid, libc::SYS_timer_getoverrun, &[t.id as u64])?.max(0) as i32;
        out.push(PosixTimer {
            id: t.id,
            clock: t.clock,
            signo: t.signo,
            notify,
            notify_tid: t.notify_tid,
            sigval: t.sigval,
            interval_ns: v.interval.to_ns(),
            value_ns: v.value.to_ns(),
            overrun,
        });
    }
    Ok(out)
}

/// arch_prctl(ARCH_GET_CPUID) / (ARCH_SET_CPUID, on): whether cpuid runs or faults.
pub const ARCH_GET_CPUID: u64 = 0x1011;
pub const ARCH_SET_CPUID: u64 = 0x1012;

/// sched_getattr flags a restore sets again (the utilization clamp flags need values
/// the image does not keep).
pub const SCHED_FLAGS_KEPT: u64 = kabi::SCHED_FLAG_RESET_ON_FORK | kabi::SCHED_FLAG_RECLAIM | kabi::SCHED_FLAG_DL_OVERRUN;

/// A thread's own cwd and umask when it unshared them (unshare(CLONE_FS)): kcmp tells
/// whether its fs struct is the main thread's. A thread with its own fd table
/// (unshare(CLONE_FILES)) or its own root directory is refused.
fn own_fs(pid: i32, tid: i32) -> Result<Option<ThreadFs>> {
    const KCMP_FILES: i32 = 2;
    const KCMP_FS: i32 = 3;
    if tid == pid {
        return Ok(None);
    }
    let differs = |ty: i32| sys::kcmp(procfs::via(pid), tid, ty, 0, 0).map(|r| r != 0).ctx(pid, || format!("kcmp of thread {tid}"));
    if differs(KCMP_FILES)? {
        return Err(Error::Unsupported { pid, what: format!("thread {tid} has its own fd table (unshare(CLONE_FILES))") });
    }
    if !differs(KCMP_FS)? {
        return Ok(None);
    }
    let link = |what: &str| procfs::readlink(&format!("{}/task/{tid}/{what}", crate::procfs::dir(pid))).ctx(pid, || format!("reading the {what} of thread {tid}"));
    let (cwd, root) = (link("cwd")?, link("root")?);
    if root != link_root(pid)? {
        return Err(Error::Unsupported { pid, what: format!("thread {tid} has its own root directory {root} (unshare(CLONE_FS) and chroot)") });
    }
    if cwd.ends_with(" (deleted)") {
        return Err(Error::Unsupported { pid, what: format!("thread {tid} has its own working directory {cwd}, which was removed") });
    }
    let st = procfs::task_status(pid, tid).ctx(pid, || format!("reading the status of thread {tid}"))?;
    let umask = procfs::status_field(&st, "Umask").and_then(|v| u32::from_str_radix(v, 8).ok()).unwrap_or(0o022);
    Ok(Some(ThreadFs { cwd, umask }))
}

fn link_root(pid: i32) -> Result<String> {
    procfs::readlink(&format!("{}/root", crate::procfs::dir(pid))).ctx(pid, || "reading root".into())
}

/// The credentials of thread `tid` (per thread in the kernel), from its status and, from
/// inside it, its securebits.
pub fn dump_creds(pid: i32, par: &Parasite, tid: i32) -> Result<Creds> {
    let st = procfs::task_status(pid, tid).ctx(pid, || format!("reading the status of thread {tid}"))?;
    let securebits = par.with(tid, "PR_GET_SECUREBITS", |r| r.prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0))? as u32;
    Ok(Creds {
        uids: id_list(&st, "Uid"),
        gids: id_list(&st, "Gid"),
        groups: id_list(&st, "Groups"),
        cap_inh: hex_field(&st, "CapInh"),
        cap_prm: hex_field(&st, "CapPrm"),
        cap_eff: hex_field(&st, "CapEff"),
        cap_bnd: hex_field(&st, "CapBnd"),
        cap_amb: hex_field(&st, "CapAmb"),
        securebits,
    })
}

pub fn dump_attrs(fz: &Frozen, par: &Parasite) -> Result<ProcAttrs> {
    let pid = fz.pid;
    let st = procfs::status(pid).ctx(pid, || "reading /proc/PID/status".into())?;
    let umask = procfs::status_field(&st, "Umask").and_then(|v| u32::from_str_radix(v, 8).ok()).unwrap_or(0o022);
    let cwd = procfs::readlink(&format!("{}/cwd", crate::procfs::dir(pid))).ctx(pid, || "reading cwd".into())?;
    let root = link_root(pid)?;
    // a removed working or root directory is recreated (dump.rs: files::ghost,
    // cwd_ghost, root_ghost)
    let personality = u32::from_str_radix(procfs::read(pid, "personality").unwrap_or_default().trim(), 16).unwrap_or(0);
    let oom_score_adj = procfs::read(pid, "oom_score_adj").unwrap_or_default().trim().parse().unwrap_or(0);
    let dumpable = par.with(pid, "PR_GET_DUMPABLE", |r| r.prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0))? as i32;
    let child_subreaper = par.with(pid, "PR_GET_CHILD_SUBREAPER", |r| r.prctl_get_int(libc::PR_GET_CHILD_SUBREAPER))? != 0;
    let sf = procfs::stat_fields(pid).ctx(pid, || "reading /proc/PID/stat".into())?;
    let (pgid, sid) = (procfs::stat_num(&sf, 5) as i32, procfs::stat_num(&sf, 6) as i32);
    let loginuid = procfs::read(pid, "loginuid").ok().and_then(|v| v.trim().parse::<u32>().ok());
    // memory-deny-write-execute (Linux 6.3+; EINVAL before: off)
    const PR_GET_MDWE: i32 = 66;
    let mdwe = par.with(pid, "PR_GET_MDWE", |r| r.prctl(PR_GET_MDWE, 0, 0, 0, 0)).unwrap_or(0) as u32;
    let coredump_filter = procfs::read(pid, "coredump_filter").ok().and_then(|v| u32::from_str_radix(v.trim(), 16).ok());
    let autogroup_nice = procfs::read(pid, "autogroup").ok().and_then(|v| autogroup(&v).map(|a| a.1));
    // children whose stop this process has not collected yet (WNOWAIT: nothing taken)
    let mut stops_unreported = Vec::new();
    for c in children_of(pid) {
        if par.with(pid, "waitid(WSTOPPED|WNOHANG|WNOWAIT)", |r| r.child_stop_pending(c, false))? {
            stops_unreported.push(c);
        }
    }
    Ok(ProcAttrs {
        umask,
        cwd,
        root,
        personality,
        oom_score_adj,
        dumpable,
        child_subreaper,
        stopped: false,
        pgid,
        sid,
        mdwe,
        cwd_ghost: 0,
        root_ghost: 0,
        stop_signal: 0,
        loginuid,
        coredump_filter,
        autogroup_nice,
        stops_unreported,
        stop_reports_known: true,
    })
}

/// Children of `pid` (of all its threads).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for tid in procfs::tids(pid).unwrap_or_default() {
        let c = procfs::read(pid, &format!("task/{tid}/children")).unwrap_or_default();
        out.extend(c.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
    }
    out.sort();
    out.dedup();
    out
}

/// /proc/PID/autogroup ("/autogroup-ID nice N"): the group's id and nice value.
pub fn autogroup(text: &str) -> Option<(u64, i32)> {
    let (name, nice) = text.trim().split_once(" nice ")?;
    Some((name.strip_prefix("/autogroup-")?.parse().ok()?, nice.trim().parse().ok()?))
}

/// Resource limits, read from inside (prlimit on another process with other
/// credentials needs CAP_SYS_RESOURCE).
pub fn dump_rlimits(fz: &Frozen, par: &Parasite) -> Result<Vec<Rlimit>> {
    let mut out = Vec::new();
    for res in 0..16 {
        let l = par.with(fz.pid, &format!("prlimit64({res})"), |r| r.getrlimit(res))?;
        out.push(Rlimit { resource: res, cur: l.cur, max: l.max });
    }
    Ok(out)
}

pub const PR_SET_MEMORY_MERGE: u64 = 67;
pub const PR_GET_MEMORY_MERGE: u64 = 68;

/// membarrier(2) commands that need a registration of the address space, and the
/// registration each needs (include/uapi/linux/membarrier.h).
pub const MEMBARRIER_REGISTRATIONS: [(u64, u32); 3] = [
    (8, 16),   // PRIVATE_EXPEDITED ← REGISTER_PRIVATE_EXPEDITED
    (32, 64),  // PRIVATE_EXPEDITED_SYNC_CORE ← REGISTER_PRIVATE_EXPEDITED_SYNC_CORE
    (128, 256), // PRIVATE_EXPEDITED_RSEQ ← REGISTER_PRIVATE_EXPEDITED_RSEQ
];

/// The membarrier registrations of the process's address space. The kernel shows
/// them nowhere; each command is tried from inside: EPERM means not registered. The
/// barrier itself only interrupts threads of this process that are running, and every
/// one is frozen.
pub fn membarrier_registrations(par: &Parasite, pid: i32) -> Result<u32> {
    let mut regs = 0;
    for (cmd, reg) in MEMBARRIER_REGISTRATIONS {
        let r = par.raw(pid, libc::SYS_membarrier, &[cmd, 0, 0])?;
        if r == 0 {
            regs |= reg;
        } else if r != -(libc::EPERM as i64) && r != -(libc::EINVAL as i64) {
            return Err(Error::Sys { pid, what: format!("membarrier({cmd}) injected"), err: std::io::Error::from_raw_os_error(-r as i32) });
        }
    }
    Ok(regs)
}

const KEYCTL_GET_KEYRING_ID: u64 = 0;
const KEY_SPEC_THREAD_KEYRING: i64 = -1;
const KEY_SPEC_PROCESS_KEYRING: i64 = -2;

/// Refuses a process that has a process keyring or a thread with a thread keyring
/// (keyctl, add_key to KEY_SPEC_PROCESS/THREAD_KEYRING): restore cannot make them
/// (their keys may not even be readable), and a restored process without them would
/// silently miss its keys. Asked from inside: keyctl(KEYCTL_GET_KEYRING_ID, spec,
/// create = 0) gives ENOKEY when there is none. Session and user keyrings are not the
/// process's own (shared with its session / uid) and are left as they are.
pub fn check_keyrings(fz: &Frozen, par: &Parasite) -> Result<()> {
    let pid = fz.pid;
    let mut asks = vec![(pid, KEY_SPEC_PROCESS_KEYRING, "it has a process keyring".to_string())];
    asks.extend(fz.threads.iter().map(|t| (t.tid, KEY_SPEC_THREAD_KEYRING, format!("its thread {} has a thread keyring", t.tid))));
    for (tid, spec, what) in asks {
        let r = par.raw(tid, libc::SYS_keyctl, &[KEYCTL_GET_KEYRING_ID, spec as u64, 0])?;
        if r >= 0 {
            return Err(Error::Unsupported { pid, what: format!("{what} (key {r}, made by keyctl/add_key); process and thread keyrings") });
        }
        // ENOKEY: none; EOPNOTSUPP/ENOSYS: a kernel without keys
        if ![libc::ENOKEY, libc::EOPNOTSUPP, libc::ENOSYS].contains(&(-r as i32)) {
            return Err(Error::Sys { pid, what: format!("keyctl(KEYCTL_GET_KEYRING_ID, {spec}) injected into thread {tid}"), err: std::io::Error::from_raw_os_error(-r as i32) });
        }
    }
    Ok(())
}

/// A thread's pending signals: the one we caught in delivery while freezing first, then
/// its queue.
pub fn thread_pending(pid: i32, t: &crate::freeze::FrozenThread) -> Result<Vec<SigInfo>> {
    let tid = t.tid;
    let mut pending = siginfo_list(ptrace::peek_siginfo(tid, false).ctx(pid, || format!("PTRACE_PEEKSIGINFO of thread {tid}"))?);
    if let Some((sig, info)) = t.delivering {
        pending.insert(0, SigInfo { signo: sig, raw: info.to_vec() });
    }
    Ok(pending)
}

/// Reads every pending signal of a collected process again, last thing before the
/// image is written: a signal sent while the dump ran (a SIGSTOP, a SIGTERM, a timer's)
/// waits in the frozen process's queues, and a killing dump would lose it.
///
/// A pending SIGSTOP (or one held back while syscalls ran inside) makes the process
/// stopped in the image instead: nothing blocks it, so it is what the process does
/// first when it runs again, and restore's own injected syscalls must not meet it.
/// A pending SIGCONT (sent while the dump ran: a traced process queues it) ends a stop
/// instead: it came after every stop signal (each of the two discards the other when
/// sent), so the process is not stopped in the image and the SIGCONT stays pending (a
/// handler of it runs after restore).
pub fn refresh_pending(fz: &Frozen, p: &mut Process) -> Result<()> {
    p.shared_pending = shared_pending(fz.pid)?;
    for t in &fz.threads {
        if let Some(th) = p.threads.iter_mut().find(|th| th.tid == t.tid) {
            th.pending = thread_pending(fz.pid, t)?;
        }
    }
    let is_stop = |s: &SigInfo| s.signo == libc::SIGSTOP;
    let mut stop = fz.stop_held.load(std::sync::atomic::Ordering::Relaxed) || p.shared_pending.iter().any(is_stop);
    p.shared_pending.retain(|s| !is_stop(s));
    for th in &mut p.threads {
        stop |= th.pending.iter().any(is_stop);
        th.pending.retain(|s| !is_stop(s));
    }
    let cont = p.shared_pending.iter().chain(p.threads.iter().flat_map(|t| &t.pending)).any(|s| s.signo == libc::SIGCONT);
    if cont {
        // (a held-back SIGSTOP came before it: a --leave-running dump must not stop the
        // process again)
        fz.stop_held.store(false, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(a) = p.attrs.as_mut().filter(|a| cont && a.stopped) {
        tracing::debug!(pid = p.pid, "SIGCONT sent during the dump: not stopped in the image");
        a.stopped = false;
        a.stop_signal = 0;
    } else if let Some(a) = p.attrs.as_mut().filter(|a| stop && !a.stopped && !cont) {
        tracing::debug!(pid = p.pid, "SIGSTOP sent during the dump: stopped in the image");
        a.stopped = true;
        a.stop_signal = libc::SIGSTOP;
    }
    Ok(())
}

pub fn shared_pending(pid: i32) -> Result<Vec<SigInfo>> {
    Ok(siginfo_list(ptrace::peek_siginfo(procfs::via(pid), true).ctx(pid, || "PTRACE_PEEKSIGINFO (shared)".into())?))
}
