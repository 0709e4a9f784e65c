//! Signal state: dispositions, masks, pending signals, timers.

mod common;
use common::*;

/// Every signal's kernel sigaction (handler, flags, restorer, mask), the
/// mask, sigaltstack; raising each signal runs the right handler with the
/// right mask / stack / siginfo; SA_RESETHAND and SIG_IGN still work; a SIGTRAP
/// handler survives (the injected syscalls single-stepped: the trap the kernel forced,
/// with every signal blocked, reset it to SIG_DFL — found by a helper with python: the
/// live original of a --leave-running dump lost it too). Both modes.
#[test]
fn handlers_masks_and_altstack() {
    let _t = serial();
    roundtrip_both_modes("sig_handlers", &[]);
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

/// Children stopped by SIGTSTP (three threads), SIGTTIN, SIGSTOP (three threads) and
/// SIGTTOU: after the restore each is stopped again (every thread) by its own signal:
/// its parent's waitid(WSTOPPED) reports the stops it had not collected yet with their signals (a
/// stop it had collected before the dump is reported again, with its signal: known
/// gap), and SIGCONT continues each (WCONTINUED) to its own exit status. Before the
/// stop signal was kept, every child came back stopped by SIGSTOP. After SIGCONT every
/// thread of the multi-threaded ones runs on with its thread-local value.
#[test]
fn stopped_children_keep_stop_signal_and_wait_state() {
    let _t = serial();
    let mut w = Workload::start("stopped_tree", &[]);
    let kids = info_pids(&w, &["s1", "s2", "s3", "s4"]);
    dump_and_restore_tree(&mut w, &kids);
    w.go_and_pass();
}

/// The same tree dumped with --leave-running: the dump asks the parent which stops it
/// has not collected (waitid with WNOWAIT, from inside) without taking any, so the live
/// parent still gets exactly the reports it had pending, and no SIGCHLD.
#[test]
fn leave_running_leaves_stop_reports_pending() {
    let _t = serial();
    let mut w = Workload::start("stopped_tree", &[]);
    w.dump_leave_running();
    w.go_and_pass();
}

/// The parent's view of a stopped child: waitid(WSTOPPED | WNOWAIT) → the signal.
fn stop_report(pid: i32) -> Option<i32> {
    // SAFETY: a zeroed siginfo_t is valid; waitid writes at most one.
    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: plain waitid on our own child, into our siginfo_t.
    let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut si, libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT) };
    // SAFETY: waitid filled si (si_pid 0 when nothing is to report).
    let (spid, status) = unsafe { (si.si_pid(), si.si_status()) };
    (r == 0 && spid == pid && si.si_code == libc::CLD_STOPPED).then_some(status)
}

/// A real `sleep 3` (its own process group, so SIGTSTP is not dropped) stopped by
/// SIGTSTP, as a shell's ^Z does: a --leave-running dump leaves it stopped, untraced,
/// with its stop report intact; restored, it is stopped by SIGTSTP again (its parent's
/// waitid(WSTOPPED) says so), stays stopped, and SIGCONT lets it finish its sleep and
/// exit 0.
#[test]
fn real_sleep_stopped_by_sigtstp() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("sleep-tstp");
    let code = "import os; os.setpgid(0, 0); os.execvp('sleep', ['sleep', '3'])";
    w.spawn(&python3(), &["-c".into(), code.into()]);
    let pid = w.pid;
    assert!(wait_until(std::time::Duration::from_secs(10), || comm_of(pid) == "sleep"), "sleep did not start\n{}", w.report());
    // SAFETY: our live, unreaped child.
    unsafe { libc::kill(pid, libc::SIGTSTP) };
    let stopped = || {
        let t = tasks_of(pid);
        !t.is_empty() && t.iter().all(|t| t.1 == 'T' && t.2 == 0)
    };
    assert!(wait_until(std::time::Duration::from_secs(5), stopped), "SIGTSTP did not stop sleep: {:?}", tasks_of(pid));
    assert_eq!(stop_report(pid), Some(libc::SIGTSTP));
    let r = w.try_dump(&["--leave-running"]);
    assert!(r.ok(), "dump --leave-running failed\n{}", w.report());
    assert!(stopped(), "after a --leave-running dump the stopped sleep is not stopped (or still traced): {:?}", tasks_of(pid));
    assert_eq!(stop_report(pid), Some(libc::SIGTSTP), "the stop report changed\n{}", w.report());
    w.kill_original();
    w.restore();
    assert!(wait_until(std::time::Duration::from_secs(2), stopped), "restored sleep is not stopped: {:?}\n{}", tasks_of(pid), w.report());
    assert_eq!(stop_report(pid), Some(libc::SIGTSTP), "restored sleep's stop signal\n{}", w.report());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(stopped(), "restored sleep left the stopped state by itself: {:?}", tasks_of(pid));
    // SAFETY: our child (restored), not yet reaped.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let st = w.wait_exit(std::time::Duration::from_secs(10));
    assert_eq!(st, Exit::Code(0), "sleep after SIGCONT\n{}", w.report());
}

/// The same timers through a --leave-running dump: the live process is unharmed (its
/// timers still aim at the same thread, its pending timer signal is still that
/// thread's, the SIGEV_THREAD callback still runs, no thread was left with the trap flag
/// the dump's single-stepping uses) and passes every check.
#[test]
fn thread_targeted_timers_after_leave_running_dump() {
    let _t = serial();
    let mut w = Workload::start("timers_thread", &[]);
    w.dump_leave_running();
    w.go_and_pass();
}

/// Dumps `w` (killing, or --leave-running) and sends `sig` to it as soon as stasis
/// traces it (the dump has begun); the signal must have been sent.
fn dump_signalled_while_traced(w: &mut Workload, sig: i32, leave_running: bool) {
    let pid = w.pid;
    let h = std::thread::spawn(move || {
        wait_until(std::time::Duration::from_secs(20), || tasks_of(pid).iter().any(|t| t.2 > 0))
            // SAFETY: kill of the test's own unreaped child (traced, not yet killed).
            && unsafe { libc::kill(pid, sig) } == 0
    });
    if leave_running {
        let r = w.try_dump(&["--leave-running"]);
        assert!(r.ok(), "dump --leave-running failed\n{}", w.report());
    } else {
        w.dump();
    }
    assert!(h.join().unwrap(), "signal {sig} could not be sent during the dump\n{}", w.report());
}

/// A process stopped (SIGSTOP) while the dump runs (64 MiB of memory: the dump takes
/// a while): the stop is not lost. After a killing dump the restored process is
/// stopped and does not run until SIGCONT; after a --leave-running dump the live one is
/// stopped, untraced; both then pass every memory check.
#[test]
fn stopped_while_being_dumped() {
    let _t = serial();
    skip_if_direct!();
    for leave_running in [false, true] {
        let mut w = Workload::start("mem_anon", &[]);
        let pid = w.pid;
        let stopped = move || {
            let t = tasks_of(pid);
            !t.is_empty() && t.iter().all(|t| t.1 == 'T' && t.2 == 0)
        };
        dump_signalled_while_traced(&mut w, libc::SIGSTOP, leave_running);
        if !leave_running {
            w.restore();
        }
        assert!(
            wait_until(std::time::Duration::from_secs(2), stopped),
            "leave_running={leave_running}: not stopped after the dump/restore: {:?}\n{}",
            tasks_of(pid),
            w.report()
        );
        w.go();
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!w.output().contains("PASS"), "it ran while stopped\n{}", w.report());
        // SAFETY: our child (original or restored), not yet reaped.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        let st = w.wait_exit(EXIT_TIMEOUT);
        w.assert_pass(st);
    }
}

/// A process stopped by SIGSTOP and continued by SIGCONT while the dump runs (64 MiB of
/// memory: the dump takes a while): the SIGCONT is not lost. After a --leave-running
/// dump the live process runs (no thread stopped or traced) and its parent's
/// waitid(WCONTINUED) reports it continued; after a killing dump the restored process
/// runs, not stopped. Both then pass every memory check.
#[test]
fn continued_while_being_dumped() {
    let _t = serial();
    skip_if_direct!();
    for leave_running in [true, false] {
        let mut w = Workload::start("mem_anon", &[]);
        let pid = w.pid;
        // SAFETY: our live, unreaped child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let stopped = || tasks_of(pid).iter().all(|t| t.1 == 'T');
        assert!(wait_until(std::time::Duration::from_secs(5), stopped), "SIGSTOP did not stop it: {:?}", tasks_of(pid));
        dump_signalled_while_traced(&mut w, libc::SIGCONT, leave_running);
        if leave_running {
            // SAFETY: a zeroed siginfo_t is valid; waitid writes at most one.
            let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: plain waitid on our own child, into our siginfo_t.
            let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut si, libc::WCONTINUED | libc::WNOHANG) };
            assert!(r == 0 && si.si_code == libc::CLD_CONTINUED, "the parent's waitid(WCONTINUED) = {r}, code {}\n{}", si.si_code, w.report());
        } else {
            w.restore();
        }
        let running = || {
            let t = tasks_of(pid);
            !t.is_empty() && t.iter().all(|t| t.1 != 'T' && t.1 != 't' && t.2 == 0)
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            wait_until(std::time::Duration::from_secs(2), running),
            "leave_running={leave_running}: stopped after the dump/restore though continued during the dump: {:?}\n{}",
            tasks_of(pid),
            w.report()
        );
        w.go_and_pass();
    }
}
