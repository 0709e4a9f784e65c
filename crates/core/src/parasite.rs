//! Dump-side remote session: runs syscalls inside the frozen process to read state that
//! procfs and ptrace do not expose (brk, sigactions, altstacks, tid address, itimers...).
//!
//! The vDSO always holds a `syscall` instruction (its fallbacks): every injected syscall is
//! run through it with PTRACE_SYSCALL (stopped at its entry and exit, nothing after it
//! runs; no signal is sent, so the process's SIGTRAP disposition is left alone). One mmap gets a private read-write scratch area for arguments and results —
//! never executable: a process with memory-deny-write-execute (PR_SET_MDWE, systemd's
//! MemoryDenyWriteExecute=) refuses writable+executable mappings, and we need none. All
//! signals are blocked in every thread while we work (the original masks are put back by
//! `Frozen::resume`). `stop` unmaps the scratch area.
//!
//! Each thread is a `Remote` with the shared data area as its scratch, so the typed
//! calls of `stasis_sys::remote::RemoteCalls` (the same ones restore uses) work on it.

use stasis_sys::ptrace;
use stasis_sys::remote::{Remote, Scratch};
use stasis_sys::sys;

use crate::error::{Ctx, Error, Result};
use crate::freeze::Frozen;

/// The scratch area: arguments and results of injected syscalls.
pub const SCRATCH_LEN: u64 = 2 * 4096;

pub struct Parasite {
    pub pid: i32,
    pub scratch: u64,
    remotes: Vec<Remote>,
}

fn find_syscall_insn(pid: i32, start: u64, end: u64) -> Result<u64> {
    let bytes = sys::read_mem(crate::procfs::via(pid), start, (end - start) as usize).ctx(pid, || "reading [vdso]".into())?;
    bytes
        .windows(2)
        .position(|w| w == [0x0f, 0x05])
        .map(|p| start + p as u64)
        .ok_or_else(|| Error::Refused { pid, why: "no syscall instruction found in [vdso]".into() })
}

/// Runs `f` with resource limit `res` of the (frozen) process lifted, then puts the
/// limit back as it was: RLIMIT_AS set below what the process maps already leaves no
/// room for the scratch area. The soft limit is raised to the hard one first; only if
/// that is not enough, both to unlimited (which needs CAP_SYS_RESOURCE). The process is
/// frozen meanwhile: it cannot use the room itself. Limits are checked only when memory
/// is mapped: the limit is put back at once, and the scratch area stays until `stop`.
fn with_limit_lifted<T>(pid: i32, res: i32, name: &str, f: impl Fn() -> stasis_sys::Result<T>) -> stasis_sys::Result<T> {
    let old = sys::prlimit(pid, res, None)?;
    let enomem = |r: &stasis_sys::Result<T>| matches!(r, Err(e) if e.raw_os_error() == Some(libc::ENOMEM));
    let mut r = Err(std::io::Error::from_raw_os_error(libc::ENOMEM));
    for lift in [(old.1, old.1), (u64::MAX, u64::MAX)] {
        if lift.0 <= old.0 || !enomem(&r) {
            continue;
        }
        if let Err(e) = sys::prlimit(pid, res, Some(lift)) {
            let why = format!("its {name} ({}/{}) is below what it maps already, and lifting it for the dump's scratch area failed: {e}", old.0, old.1);
            r = Err(std::io::Error::new(e.kind(), why));
            break;
        }
        r = f();
        sys::prlimit(pid, res, Some(old))?;
    }
    r
}

impl Parasite {
    pub fn start(fz: &Frozen, vdso: (u64, u64)) -> Result<Parasite> {
        let pid = fz.pid;
        for t in &fz.threads {
            ptrace::set_sigmask(t.tid, !0u64).ctx(pid, || format!("blocking signals of thread {}", t.tid))?;
        }
        let insn = find_syscall_insn(pid, vdso.0, vdso.1)?;
        // the first live thread: the main one, unless it has exited
        let boot = Remote::new(fz.main().tid, insn, fz.main().regs);
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
        // Shared anonymous memory does not count against RLIMIT_DATA (the kernel counts
        // private writable mappings only), which a process may have set below what it
        // uses already.
        let flags = (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64;
        let map = || boot.call(libc::SYS_mmap, &[0, SCRATCH_LEN, prot, flags, u64::MAX, 0]);
        let scratch = match map() {
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => with_limit_lifted(pid, libc::RLIMIT_AS as i32, "RLIMIT_AS", map),
            r => r,
        }
        .ctx(pid, || "mapping a scratch page in the process".into())?;
        if boot.stop_held() {
            fz.stop_held.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // read and written through a live thread (a zombie leader has no memory)
        let data = Scratch { pid: crate::procfs::via(pid), addr: scratch, len: SCRATCH_LEN };
        let p = Parasite {
            pid,
            scratch,
            remotes: fz.threads.iter().map(|t| Remote::new(t.tid, insn, t.regs).with_scratch(data)).collect(),
        };
        Ok(p)
    }

    /// A SIGSTOP arrived while syscalls ran and was held back (`Remote::stop_held`).
    pub fn stop_held(&self) -> bool {
        self.remotes.iter().any(|r| r.stop_held())
    }

    /// Thread `tid` (the first live thread, the main one unless it has exited, if there
    /// is no such thread: `pid` for process-wide calls), for typed calls.
    pub fn thread(&self, tid: i32) -> &Remote {
        self.remotes.iter().find(|r| r.tid == tid).unwrap_or(&self.remotes[0])
    }

    /// Runs a syscall in thread `tid`; negative results become errors.
    pub fn call(&self, tid: i32, nr: i64, args: &[u64]) -> Result<u64> {
        self.thread(tid).call(nr, args).ctx(self.pid, || format!("syscall {nr} injected into thread {tid}"))
    }

    pub fn raw(&self, tid: i32, nr: i64, args: &[u64]) -> Result<i64> {
        self.thread(tid).raw(nr, args).ctx(self.pid, || format!("syscall {nr} injected into thread {tid}"))
    }

    /// A typed call in thread `tid`, its error labelled with `what`.
    pub fn with<T>(&self, tid: i32, what: &str, f: impl FnOnce(&Remote) -> stasis_sys::Result<T>) -> Result<T> {
        f(self.thread(tid)).ctx(self.pid, || format!("{what} injected into thread {tid}"))
    }

    /// Unmaps the scratch area. Returns whether a SIGSTOP was held back meanwhile
    /// (`stop_held`, this last call included).
    pub fn stop(self) -> Result<bool> {
        self.remotes[0]
            .call(libc::SYS_munmap, &[self.scratch, SCRATCH_LEN])
            .ctx(self.pid, || "unmapping the scratch page".into())?;
        Ok(self.stop_held())
    }
}
