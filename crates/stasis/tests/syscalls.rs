//! Syscalls interrupted by the checkpoint resume as if nothing happened.

mod common;
use common::*;
use std::time::Duration;

const SYS_READ: i64 = 0;
const SYS_POLL: i64 = 7;
const SYS_SELECT: i64 = 23;
const SYS_NANOSLEEP: i64 = 35;
const SYS_RT_SIGSUSPEND: i64 = 130;
const SYS_CLOCK_NANOSLEEP: i64 = 230;
const SYS_EPOLL_WAIT: i64 = 232;
const SYS_PSELECT6: i64 = 270;
const SYS_EPOLL_PWAIT: i64 = 281;
const SYS_EPOLL_PWAIT2: i64 = 441;

const SLEEP_SECS: u64 = 6;
const DUMP_AFTER: Duration = Duration::from_secs(2);

/// A 6 s sleep, dumped 2 s in: it returns 0 (no EINTR), not before 6 s of
/// CLOCK_MONOTONIC have passed since it started (checked by the workload),
/// and ends well before a full 6 s after the restore (it did not start
/// over; remaining ~4 s, bound 5 s).
fn sleep_case(mode: &str) {
    let _t = serial();
    let secs = SLEEP_SECS.to_string();
    let mut w = Workload::start("sleep", &[mode, &secs]);
    let pid = w.pid;
    w.wait_in_syscall(pid, &[SYS_NANOSLEEP, SYS_CLOCK_NANOSLEEP]);
    std::thread::sleep(DUMP_AFTER);
    w.checkpoint_restore();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let after_restore = w.restored_at.map(|t| t.elapsed());
    w.assert_pass(st);
    if let Some(d) = after_restore {
        assert!(
            d < Duration::from_millis(SLEEP_SECS * 1000 - 1000),
            "sleep ended {d:.2?} after the restore; about {}s were left, so it restarted from scratch\n{}",
            SLEEP_SECS - DUMP_AFTER.as_secs(),
            w.report()
        );
    }
}

#[test]
fn nanosleep_resumes_with_remaining_time() {
    sleep_case("nanosleep");
}

/// syscall(SYS_nanosleep): the kernel's restart_syscall path.
#[test]
fn raw_nanosleep_resumes_with_remaining_time() {
    sleep_case("raw");
}

/// clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME).
#[test]
fn clock_nanosleep_abstime_resumes() {
    sleep_case("abs");
}

/// read() blocked on an empty pipe; a helper thread writes after go.
#[test]
fn read_blocked_on_pipe() {
    let _t = serial();
    roundtrip_in_syscall("blocking", &["read"], &[SYS_READ]);
}

/// poll(-1) on a pipe.
#[test]
fn poll_without_timeout() {
    let _t = serial();
    roundtrip_in_syscall("blocking", &["poll"], &[SYS_POLL]);
}

/// select(NULL timeout) on a pipe (glibc uses pselect6).
#[test]
fn select_without_timeout() {
    let _t = serial();
    roundtrip_in_syscall("blocking", &["select"], &[SYS_SELECT, SYS_PSELECT6]);
}

/// epoll_wait(-1) on an epoll fd watching a pipe (event data 0xfeed) and an
/// eventfd (edge-triggered): it returns the pipe's event after restore, the
/// items are the same, and the eventfd's is delivered later.
#[test]
fn epoll_wait_without_timeout() {
    let _t = serial();
    roundtrip_in_syscall("blocking", &["epoll"], &[SYS_EPOLL_WAIT, SYS_EPOLL_PWAIT, SYS_EPOLL_PWAIT2]);
}

/// rt_sigsuspend with an empty temporary mask: the signal sent after go
/// interrupts it (EINTR, handler runs once) and afterwards the mask is the
/// pre-sigsuspend one again (the kernel's saved_sigmask must be honoured).
#[test]
fn sigsuspend_then_signal() {
    let _t = serial();
    roundtrip_in_syscall("blocking", &["sigsuspend"], &[SYS_RT_SIGSUSPEND]);
}

/// `dump --leave-running` of a thread blocked in read/poll/epoll_wait/sigsuspend: the
/// original carries on as if it had only been paused (no EINTR surfaces — epoll_wait
/// would return EINTR after a ptrace stop if stasis did not re-execute it) and passes.
#[test]
fn leave_running_blocked_syscalls_see_no_eintr() {
    let _t = serial();
    skip_if_direct!();
    for (mode, nrs) in [
        ("read", &[SYS_READ][..]),
        ("poll", &[SYS_POLL][..]),
        ("epoll", &[SYS_EPOLL_WAIT, SYS_EPOLL_PWAIT, SYS_EPOLL_PWAIT2][..]),
        ("sigsuspend", &[SYS_RT_SIGSUSPEND][..]),
    ] {
        let mut w = Workload::start("blocking", &[mode]);
        let pid = w.pid;
        w.wait_in_syscall(pid, nrs);
        w.dump_leave_running();
        w.go();
        let st = w.wait_exit(EXIT_TIMEOUT);
        w.assert_pass(st);
    }
}
