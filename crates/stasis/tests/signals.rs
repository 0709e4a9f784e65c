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

/// A process stopped by SIGSTOP at dump time is still stopped after the
/// restore (all threads), does not run until SIGCONT, then continues and
/// passes its checks.
#[test]
fn stopped_process_stays_stopped() {
    let _t = serial();
    let mut w = Workload::start("threads", &[]);
    w.wait_all_sleeping();
    // SAFETY: w.pid is our live, unreaped child.
    unsafe { libc::kill(w.pid, libc::SIGSTOP) };
    let pid = w.pid;
    let stopped = || {
        let t = tasks_of(pid);
        !t.is_empty() && t.iter().all(|t| t.1 == 'T')
    };
    assert!(wait_until(std::time::Duration::from_secs(5), stopped), "SIGSTOP did not stop it: {:?}", tasks_of(pid));
    w.checkpoint_restore();
    assert!(
        wait_until(std::time::Duration::from_secs(2), stopped),
        "restored process is not stopped: {:?}\n{}",
        tasks_of(pid),
        w.report()
    );
    w.go();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!w.output().contains("PASS"), "the stopped process ran before SIGCONT\n{}", w.report());
    assert!(stopped(), "the restored process left the stopped state by itself: {:?}", tasks_of(pid));
    // SAFETY: our child (original or restored), not yet reaped.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let st = w.wait_exit(EXIT_TIMEOUT);
    w.assert_pass(st);
}

/// Per-thread state is exactly what was dumped, "none" included, and nothing of the
/// restorer's survives: a main thread without an alternate stack (its handler has
/// SA_ONSTACK) and without a robust list, threads with their own alternate stacks (one
/// SS_AUTODISARM), timer slack, personality; SIGUSR1 then runs on each thread on the
/// right stack. Restored with the restorer's leaked alternate stack, the main thread
/// died of SIGSEGV at its first signal.
#[test]
fn thread_state_has_nothing_of_the_restorer() {
    let _t = serial();
    roundtrip("thread_state", &[]);
}

/// real_signals.py started and READY.
fn python_signals(label: &str) -> Workload {
    let mut w = Workload::new(label);
    let script = std::path::Path::new(WORKLOADS).join("real_signals.py");
    w.spawn(&python3(), &[script.into_os_string(), w.work.clone().into_os_string()]);
    w.wait_ready();
    w
}

/// CPython (which installs every handler with SA_ONSTACK) with SIGUSR1/SIGUSR2 handlers
/// and a repeating ITIMER_REAL: after restore it signals itself, and every handler runs
/// the right number of times (it used to die of SIGSEGV at the first signal).
#[test]
fn python_signal_handlers_after_restore() {
    let _t = serial();
    let mut w = python_signals("py-signals");
    w.dump();
    w.restore();
    w.go_and_pass();
}

/// The same program dumped with --leave-running, the original killed, then restored.
#[test]
fn python_signal_handlers_after_leave_running_dump() {
    let _t = serial();
    skip_if_direct!();
    let mut w = python_signals("py-signals-lr");
    w.dump_leave_running();
    w.kill_original();
    w.restore();
    w.go_and_pass();
}

/// POSIX timers aimed at one thread (SIGEV_THREAD_ID), glibc's SIGEV_THREAD timers
/// (its helper thread waits for an internal signal aimed at it) and timers on the
/// BOOTTIME, MONOTONIC, REALTIME, process- and thread-CPU clocks: /proc/self/timers is
/// unchanged after restore (notify kind and target tid, signal, value, clock), the
/// pending timer signal is the target thread's alone, the thread keeps receiving it
/// with its value and timer id, and the SIGEV_THREAD callback keeps running with its
/// argument.
#[test]
fn thread_targeted_and_sigev_thread_timers() {
    let _t = serial();
    roundtrip("timers_thread", &[]);
}
