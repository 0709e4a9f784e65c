//! CPU state: registers and the kernel's syscall-restart rules.
//!
//! A thread stopped inside a blocking syscall shows orig_rax = syscall number and rax = a
//! -ERESTART* code. -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND are left as they are: the
//! kernel itself rewinds the instruction pointer when the thread resumes (we resume it
//! from a signal-delivery stop, where that logic runs). -ERESTART_RESTARTBLOCK relies on
//! kernel-side state (current->restart_block) that a restored process does not have, so we
//! rewrite it into a re-execution of the original syscall; for relative sleeps we point the
//! request at the remaining time the kernel wrote into the caller's `rem` argument.

use stasis_sys::ptrace::Regs;

use crate::procfs;

pub const ERESTARTSYS: i64 = -512;
pub const ERESTARTNOINTR: i64 = -513;
pub const ERESTARTNOHAND: i64 = -514;
pub const ERESTART_RESTARTBLOCK: i64 = -516;
const EINTR: i64 = -4;
const SYS_NANOSLEEP: u64 = 35;
const SYS_CLOCK_NANOSLEEP: u64 = 230;
const TIMER_ABSTIME: u64 = 1;

/// Syscalls that fail with EINTR when their thread is merely stopped (by ptrace or a
/// stop signal) and resumed, although no handler ran: see signal(7).
const EINTR_ON_STOP: &[u64] = &[
    232, // epoll_wait
    281, // epoll_pwait
    441, // epoll_pwait2
    128, // rt_sigtimedwait
    64,  // semop
    220, // semtimedop
    208, // io_getevents
    70,  // msgrcv
];

fn in_syscall(r: &Regs) -> bool {
    (r.orig_rax as i64) >= 0
}

fn rewind(r: &mut Regs) {
    r.rip -= 2;
    r.rax = r.orig_rax;
    r.orig_rax = u64::MAX;
}

/// Pending signals that are not blocked by `mask` for thread `tid` of `pid`.
fn deliverable_pending(pid: i32, tid: i32, mask: u64) -> bool {
    let Ok(text) = procfs::read(pid, &format!("task/{tid}/status")) else {
        return true; // cannot tell: leave the EINTR alone
    };
    let hex = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix(':')))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (hex("SigPnd") | hex("ShdPnd")) & !mask != 0
}

/// rax = -EINTR from a syscall in EINTR_ON_STOP, with no signal that could have caused
/// it: re-execute the syscall instead of reporting an interruption that only we caused.
pub fn fix_spurious_eintr(pid: i32, tid: i32, mask: u64, r: &mut Regs) {
    if in_syscall(r)
        && r.rax as i64 == EINTR
        && EINTR_ON_STOP.contains(&r.orig_rax)
        && !deliverable_pending(pid, tid, mask)
    {
        rewind(r);
    }
}

/// Registers to give a restored thread: turns -ERESTART_RESTARTBLOCK into a re-executed
/// syscall (see the module comment). `had_deliverable_signal` tells whether a signal that
/// was pending and unblocked will be delivered first.
pub fn restore_fixup(r: &mut Regs, had_deliverable_signal: bool) {
    if !in_syscall(r) {
        return;
    }
    let rax = r.rax as i64;
    if rax == ERESTART_RESTARTBLOCK {
        match r.orig_rax {
            SYS_NANOSLEEP if r.rsi != 0 => r.rdi = r.rsi,
            SYS_CLOCK_NANOSLEEP if r.rsi & TIMER_ABSTIME == 0 && r.r10 != 0 => r.rdx = r.r10,
            _ => {}
        }
        rewind(r);
    } else if rax == EINTR && EINTR_ON_STOP.contains(&r.orig_rax) && !had_deliverable_signal {
        rewind(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> Regs {
        stasis_sys::ptrace::words_to_regs(&vec![0u64; stasis_sys::ptrace::NREGS]).unwrap()
    }

    #[test]
    fn nanosleep_restarts_with_remaining_time() {
        let mut r = regs();
        r.orig_rax = SYS_NANOSLEEP;
        r.rax = ERESTART_RESTARTBLOCK as u64;
        r.rip = 0x1002;
        r.rdi = 0x100; // req
        r.rsi = 0x200; // rem
        restore_fixup(&mut r, false);
        assert_eq!(r.rip, 0x1000);
        assert_eq!(r.rax, SYS_NANOSLEEP);
        assert_eq!(r.rdi, 0x200);
        assert_eq!(r.orig_rax, u64::MAX);
    }

    #[test]
    fn abs_clock_nanosleep_keeps_request() {
        let mut r = regs();
        r.orig_rax = SYS_CLOCK_NANOSLEEP;
        r.rax = ERESTART_RESTARTBLOCK as u64;
        r.rip = 0x2002;
        r.rsi = TIMER_ABSTIME;
        r.rdx = 0x100;
        r.r10 = 0x200;
        restore_fixup(&mut r, false);
        assert_eq!(r.rdx, 0x100);
        assert_eq!(r.rip, 0x2000);
    }

    #[test]
    fn erestartsys_left_to_kernel() {
        let mut r = regs();
        r.orig_rax = 0; // read
        r.rax = ERESTARTSYS as u64;
        r.rip = 0x3002;
        restore_fixup(&mut r, false);
        assert_eq!(r.rip, 0x3002);
        assert_eq!(r.orig_rax, 0);
    }

    #[test]
    fn epoll_eintr_reexecuted_unless_signal() {
        let mut r = regs();
        r.orig_rax = 232;
        r.rax = EINTR as u64;
        r.rip = 0x4002;
        let mut r2 = r;
        restore_fixup(&mut r, false);
        assert_eq!(r.rip, 0x4000);
        restore_fixup(&mut r2, true);
        assert_eq!(r2.rip, 0x4002);
    }
}
