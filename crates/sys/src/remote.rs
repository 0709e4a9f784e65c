//! Remote control of a ptrace-stopped thread: run one syscall in its context.
//!
//! The thread's registers are replaced by a syscall frame whose instruction pointer is a
//! `syscall` instruction (0f 05) in its address space; PTRACE_SINGLESTEP executes exactly
//! that instruction and traps right after it, so nothing after the instruction is fetched
//! (the page holding it may even be unmapped by the syscall itself). The caller saves and
//! puts back the thread's real registers.

use crate::ptrace::{self, Regs, Stop};
use crate::{Error, Result};

pub struct Remote {
    pub tid: i32,
    /// Address of a `0f 05` instruction in the tracee.
    pub insn: u64,
    base: Regs,
}

impl Remote {
    /// `base` supplies segment registers and flags for the injected frames (use the
    /// thread's own registers).
    pub fn new(tid: i32, insn: u64, base: Regs) -> Remote {
        Remote { tid, insn, base }
    }

    pub fn set_insn(&mut self, insn: u64) {
        self.insn = insn;
    }

    /// Runs syscall `nr` with `args` in the tracee; returns the raw result (negative
    /// errno on failure, as the kernel returns it).
    pub fn raw(&self, nr: i64, args: &[u64]) -> Result<i64> {
        let mut r = self.base;
        r.rip = self.insn;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX; // not in a syscall: no restart fix-up on resume
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        r.rdi = a(0);
        r.rsi = a(1);
        r.rdx = a(2);
        r.r10 = a(3);
        r.r8 = a(4);
        r.r9 = a(5);
        r.eflags &= !0x100; // TF is set by single-stepping itself
        ptrace::setregs(self.tid, &r)?;
        ptrace::singlestep(self.tid)?;
        loop {
            let st = ptrace::wait(self.tid)?;
            match ptrace::decode(st) {
                Stop::Stopped(libc::SIGTRAP, 0) => break,
                // clone/fork events and interrupts during the syscall: keep stepping.
                Stop::Stopped(libc::SIGTRAP, _) | Stop::Stopped(_, ptrace::PTRACE_EVENT_STOP) => {
                    ptrace::singlestep(self.tid)?;
                }
                Stop::Stopped(sig, ev) => {
                    let rip = ptrace::getregs(self.tid).map(|r| r.rip).unwrap_or(0);
                    let (addr, code) = ptrace::getsiginfo(self.tid).map(|b| (u64::from_le_bytes(b[16..24].try_into().unwrap()), i32::from_le_bytes(b[8..12].try_into().unwrap()))).unwrap_or((0, 0));
                    return Err(Error::other(format!(
                        "tid {}: unexpected stop (signal {sig}, event {ev}, rip {rip:#x}, fault address {addr:#x}, si_code {code}) while running syscall {nr} at {:#x}",
                        self.tid, self.insn
                    )))
                }
                Stop::Exited(c) => {
                    return Err(Error::other(format!("tid {} exited ({c}) during syscall {nr}", self.tid)))
                }
                Stop::Killed(s) => {
                    return Err(Error::other(format!("tid {} killed by signal {s} during syscall {nr}", self.tid)))
                }
            }
        }
        let after = ptrace::getregs(self.tid)?;
        if after.rip != self.insn + 2 {
            return Err(Error::other(format!(
                "tid {}: injected syscall {nr} ended at rip {:#x}, expected {:#x}",
                self.tid,
                after.rip,
                self.insn + 2
            )));
        }
        Ok(after.rax as i64)
    }

    /// Like `raw`, but a negative result becomes an io::Error with that errno.
    pub fn call(&self, nr: i64, args: &[u64]) -> Result<u64> {
        let r = self.raw(nr, args)?;
        if (-4095..0).contains(&r) {
            Err(Error::from_raw_os_error(-r as i32))
        } else {
            Ok(r as u64)
        }
    }
}
