//! Signal state: dispositions, masks, pending signals, timers.

mod common;
use common::*;

/// Every signal's kernel sigaction (handler, flags, restorer, mask), the
/// mask, sigaltstack; raising each signal runs the right handler with the
/// right mask / stack / siginfo; SA_RESETHAND and SIG_IGN still work.
#[test]
fn handlers_masks_and_altstack() {
    let _t = serial();
    roundtrip("sig_handlers", &[]);
}

/// Blocked pending signals survive with their siginfo: two queued
/// SIGRTMIN+3 (sigqueue values 42, 43) delivered in order to their handler,
/// SIGUSR1 from kill(), a main-thread-private rt_tgsigqueueinfo signal
/// (value 7) and a thread-private tgkill SIGUSR2 that only that thread gets.
#[test]
fn pending_signals_delivered_with_siginfo() {
    let _t = serial();
    roundtrip("sig_pending", &[]);
}

/// ITIMER_REAL (3 s, fires once after restore), ITIMER_VIRTUAL and
/// ITIMER_PROF (values and exact intervals).
#[test]
fn interval_timers() {
    let _t = serial();
    let mut w = Workload::start("itimers", &[]);
    w.checkpoint_restore();
    w.go_and_pass();
}

/// POSIX timers keep their ids, clocks, signals, values and intervals.
/// Needs timer_create() support in the engine.
#[test]
fn posix_timers() {
    let _t = serial();
    roundtrip("posix_timer", &[]);
}
