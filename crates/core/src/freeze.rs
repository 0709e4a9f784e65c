//! Freezing: PTRACE_SEIZE + PTRACE_INTERRUPT every thread until no new thread appears,
//! and putting everything back (registers, signal masks) when we let go.

use stasis_sys::ptrace::{self, Regs, Stop};
use tracing::{debug, warn};

use crate::cpu;
use crate::error::{Ctx, Error, Result};
use crate::procfs;

#[derive(Debug, Clone)]
pub struct FrozenThread {
    pub tid: i32,
    /// Registers at the moment of the freeze.
    pub regs: Regs,
    pub sigmask: u64,
    /// A signal that was being delivered when we stopped the thread (dequeued by the
    /// kernel): re-delivered on resume, saved as pending in a dump.
    pub delivering: Option<(i32, [u8; 128])>,
    /// The signal of the group stop the thread was in when seized (SIGSTOP, SIGTSTP,
    /// SIGTTIN, SIGTTOU: a seized tracee in group stop reports PTRACE_EVENT_STOP with it;
    /// our own interrupt reports SIGTRAP), 0 if it was not stopped.
    pub group_stop: i32,
}

pub struct Frozen {
    pub pid: i32,
    /// The live threads, the main one first (unless it has exited).
    pub threads: Vec<FrozenThread>,
    /// The main thread has exited (pthread_exit, SYS_exit) while the others run on: a
    /// zombie leader, not in `threads`, whose process-wide state is read through
    /// `threads[0]` (`procfs::via`).
    pub leader_exited: bool,
    released: bool,
    /// A SIGSTOP sent while we worked inside the process was held back (or found pending
    /// at the end): the process is stopped again when we let it run on.
    pub stop_held: std::sync::atomic::AtomicBool,
}

const MAX_ROUNDS: usize = 50;

fn seize_one(pid: i32, tid: i32) -> Result<Option<FrozenThread>> {
    // Suspend seccomp: our injected syscalls must not be filtered (or kill the process).
    match ptrace::seize(tid, ptrace::PTRACE_O_SUSPEND_SECCOMP) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None), // exited meanwhile
        // a thread whose exit has begun (or that is gone) counts as exited
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && procfs::task_exit_state(pid, tid).is_none_or(|(_, x)| x) => {
            return Ok(None)
        }
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let tracer = procfs::status(tid)
                .ok()
                .and_then(|s| procfs::status_field(&s, "TracerPid").and_then(|v| v.parse::<i32>().ok()))
                .unwrap_or(0);
            let why = if tracer != 0 {
                format!("thread {tid} is already traced by pid {tracer}; only one tracer is possible")
            } else {
                format!("cannot ptrace thread {tid} (EPERM)")
            };
            return Err(Error::Refused { pid, why });
        }
        Err(e) => return Err(e).ctx(pid, || format!("PTRACE_SEIZE of thread {tid}")),
    }
    ptrace::interrupt(tid).ctx(pid, || format!("PTRACE_INTERRUPT of thread {tid}"))?;
    let mut delivering = None;
    let mut group_stop = 0;
    loop {
        let st = wait_stop(pid, tid)?;
        match ptrace::decode(st) {
            Stop::Stopped(sig, ptrace::PTRACE_EVENT_STOP) => {
                if [libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&sig) {
                    group_stop = sig;
                }
                break;
            }
            Stop::Stopped(sig, 0) => {
                // signal-delivery-stop: remember the signal; the interrupt stop follows.
                let info = ptrace::getsiginfo(tid).unwrap_or([0; 128]);
                debug!(tid, sig, "signal in delivery while freezing");
                delivering = Some((sig, info));
                ptrace::cont(tid, 0).ctx(pid, || format!("continuing thread {tid} to its interrupt stop"))?;
                // the signal is suppressed; re-sent on resume.
            }
            Stop::Stopped(_, _) => {
                ptrace::cont(tid, 0).ctx(pid, || format!("continuing thread {tid}"))?;
            }
            Stop::Exited(_) | Stop::Killed(_) => return Ok(None),
        }
    }
    let regs = ptrace::getregs(tid).ctx(pid, || format!("PTRACE_GETREGS of thread {tid}"))?;
    let sigmask = ptrace::get_sigmask(tid).ctx(pid, || format!("PTRACE_GETSIGMASK of thread {tid}"))?;
    if group_stop != 0 {
        debug!(tid, sig = group_stop, "in a group stop when seized");
    }
    Ok(Some(FrozenThread { tid, regs, sigmask, delivering, group_stop }))
}

/// How long a thread may take to reach its interrupt stop. A thread in an
/// uninterruptible wait the kernel does not break for ptrace (a vfork parent waiting for
/// its child, a task stuck in D state on a dead NFS server) never stops.
const STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn wait_stop(pid: i32, tid: i32) -> Result<i32> {
    let t0 = std::time::Instant::now();
    loop {
        match stasis_sys::sys::try_waitpid(tid, libc::__WALL) {
            Ok(Some((_, st))) => return Ok(st),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e).ctx(pid, || format!("waiting for thread {tid} to stop")),
        }
        if t0.elapsed() > STOP_TIMEOUT {
            if let Some(c) = crate::dump::vfork_child(tid) {
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "thread {tid} entered vfork while being frozen and its child {c} did not exec or exit within {} s; a vfork in progress",
                        STOP_TIMEOUT.as_secs()
                    ),
                });
            }
            let state = procfs::status(tid).ok().and_then(|s| procfs::status_field(&s, "State").map(str::to_string)).unwrap_or_default();
            let wchan = procfs::read(tid, "wchan").unwrap_or_default();
            return Err(Error::Refused {
                pid,
                why: format!(
                    "thread {tid} did not stop within {} s (state {state}{}); it is in a wait that ptrace cannot interrupt",
                    STOP_TIMEOUT.as_secs(),
                    if wchan.is_empty() || wchan == "0" { String::new() } else { format!(", waiting in {wchan}") }
                ),
            });
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

impl Frozen {
    /// Stops every thread of `pid`. On error, whatever was seized is released.
    pub fn seize(pid: i32) -> Result<Frozen> {
        let mut fz = Frozen { pid, threads: Vec::new(), leader_exited: false, released: false, stop_held: Default::default() };
        // tasks found exited (a zombie main thread stays listed)
        let mut exited: Vec<i32> = Vec::new();
        for _ in 0..MAX_ROUNDS {
            let tids = procfs::tids(pid).ctx(pid, || "listing /proc/PID/task".into())?;
            let new: Vec<i32> = tids.into_iter().filter(|t| !fz.threads.iter().any(|x| x.tid == *t) && !exited.contains(t)).collect();
            if new.is_empty() {
                // Threads that exited while we worked are dropped.
                fz.threads.retain(|t| std::path::Path::new(&format!("{}/task/{}", crate::procfs::dir(pid), t.tid)).exists());
                fz.threads.sort_by_key(|t| if t.tid == pid { 0 } else { t.tid });
                if fz.threads.first().map(|t| t.tid) != Some(pid) {
                    // an exited main thread stays a zombie while any other thread lives
                    if fz.threads.is_empty() {
                        return Err(Error::Refused { pid, why: "main thread has exited and no other thread runs".into() });
                    }
                    if let Some((s, _)) = procfs::task_exit_state(pid, pid).filter(|(s, _)| *s != 'Z') {
                        return Err(Error::Refused { pid, why: format!("main thread is exiting (state {s}); dump again once it has") });
                    }
                    fz.leader_exited = true;
                }
                return Ok(fz);
            }
            for tid in new {
                match seize_one(pid, tid)? {
                    Some(t) => fz.threads.push(t),
                    None => exited.push(tid),
                }
            }
        }
        Err(Error::Refused { pid, why: format!("threads keep appearing after {MAX_ROUNDS} freeze rounds") })
    }

    /// The main thread, or the first live one if it has exited.
    pub fn main(&self) -> &FrozenThread {
        &self.threads[0]
    }

    /// Puts registers and signal masks back and detaches: the process runs on as if it
    /// had only been paused. Threads blocked in a syscall that reported a spurious EINTR
    /// because of our stop re-execute it.
    pub fn resume(mut self) -> Result<()> {
        self.released = true;
        let mut first_err = None;
        for t in &self.threads {
            let mut regs = t.regs;
            cpu::fix_spurious_eintr(self.pid, t.tid, t.sigmask, &mut regs);
            let r = ptrace::setregs(t.tid, &regs)
                .and_then(|_| ptrace::set_sigmask(t.tid, t.sigmask))
                .and_then(|_| match t.delivering {
                    Some((sig, _)) => ptrace::detach_with_signal(t.tid, sig),
                    None => ptrace::detach(t.tid),
                });
            if let Err(e) = r {
                warn!(tid = t.tid, "resuming thread: {e}");
                first_err.get_or_insert(Error::Sys { pid: self.pid, what: format!("resuming thread {}", t.tid), err: e });
            }
        }
        if self.stop_held.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = stasis_sys::sys::kill(self.pid, libc::SIGSTOP);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Kills the process (after a successful dump without --leave-running). SIGKILL
    /// takes effect before any thread runs again; we do not wait for the kernel to tear
    /// down its memory (that can take a while for a large process). When stasis exits,
    /// the kernel releases the dead tracees and the parent reaps the process as usual.
    pub fn kill(mut self) {
        self.released = true;
        let _ = stasis_sys::sys::kill(self.pid, libc::SIGKILL);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.released {
            let fz = Frozen {
                pid: self.pid,
                threads: std::mem::take(&mut self.threads),
                leader_exited: self.leader_exited,
                released: false,
                stop_held: std::sync::atomic::AtomicBool::new(self.stop_held.load(std::sync::atomic::Ordering::Relaxed)),
            };
            self.released = true;
            let _ = fz.resume();
        }
    }
}
