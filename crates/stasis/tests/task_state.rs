//! State the kernel keeps per thread, not per process, restored in the thread that had
//! it: credentials, an unshared cwd/umask, scheduling (SCHED_DEADLINE, reset-on-fork),
//! rdtsc/cpuid faulting and the machine-check kill policy; per-process state only the
//! process sees (coredump_filter, autogroup nice); resource limits below what the
//! process uses; a process whose main thread has exited while other threads run.

mod common;
use common::*;

/// Killing dump, restore, the workload checks from inside.
fn killing(name: &str, args: &[&str]) {
    roundtrip(name, args);
}

/// --leave-running: the original still passes its checks after the dump (nothing was
/// changed in it), then the image restores into a copy that passes them too.
fn leave_running(name: &str, args: &[&str]) {
    let mut w = Workload::start(name, args);
    if w.leave_running_then_restore() {
        w.go_and_pass();
    }
}

/// A thread with its own uids/gids/groups (raw setresuid: only that thread changes) and
/// one with its own capabilities, bounding set, cwd and umask (unshare(CLONE_FS)); the
/// main thread keeps root, its cwd and umask.
#[test]
fn thread_credentials_and_fs() {
    let _t = serial();
    killing("thread_creds", &[]);
}

#[test]
fn thread_credentials_and_fs_leave_running() {
    let _t = serial();
    leave_running("thread_creds", &[]);
}

/// A thread with its own fd table (unshare(CLONE_FILES)) is refused in one line naming
/// it, and the process runs on untouched.
#[test]
fn thread_own_fd_table_is_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("thread_creds", &["files"]);
    let tid = tasks_of(w.pid).iter().map(|t| t.0).filter(|&t| t != w.pid).max().unwrap();
    let r = w.try_dump(&[]);
    let rep = w.report();
    assert_clean_error(&r, &[&w.pid.to_string(), &format!("thread {tid}"), "own fd table"], &rep);
    w.assert_running_untouched();
    w.go_and_pass();
}

/// A child whose main thread exited while another thread runs (state Z, but not a
/// zombie) is not taken for a zombie: it comes back with its live thread (same pid and
/// tid, checked inside it) and its main thread a zombie again, and exits as it meant to.
#[test]
fn zombie_leader_with_live_threads_is_no_zombie() {
    let _t = serial();
    let mut w = Workload::start("zombie_leader", &[]);
    let kid: i32 = w.info("child").parse().unwrap();
    dump_and_restore_tree(&mut w, &[kid]);
    w.go_and_pass();
}

/// SCHED_BATCH with reset-on-fork and nice 7, a SCHED_DEADLINE thread, a thread whose
/// rdtsc and cpuid fault and whose machine-check policy is "early", coredump_filter and
/// the autogroup's nice value.
#[test]
fn scheduling_and_thread_flags() {
    let _t = serial();
    killing("sched_prctl", &[]);
}

#[test]
fn scheduling_and_thread_flags_leave_running() {
    let _t = serial();
    leave_running("sched_prctl", &[]);
}

/// RLIMIT_DATA and RLIMIT_AS below what the process uses: the dump still maps its
/// scratch area (shared, so not data; the address-space limit lifted while the process
/// is frozen and put back), the original keeps both, the restored process has them and
/// its heap.
#[test]
fn rlimits_below_usage() {
    let _t = serial();
    killing("rlimit_below", &[]);
}

#[test]
fn rlimits_below_usage_leave_running() {
    let _t = serial();
    leave_running("rlimit_below", &[]);
}

/// Starts leader_exit with `args` and waits until its main thread is a zombie (the
/// workload says READY only then).
fn leader_exited(args: &[&str]) -> Workload {
    let w = Workload::start("leader_exit", args);
    assert_eq!(stat_of(w.pid).map(|s| s.0), Some('Z'), "main thread did not exit\n{}", w.report());
    w
}

/// A process whose main thread exited with SYS_exit(42) while three threads run (it
/// shows state Z but lives): dumped through a live thread and restored with the main
/// thread recreated and exiting again. The workload checks from inside its pid, tids,
/// memory, a signal sent to each thread and one sent to the process, that the main
/// thread is a zombie with exit code 42; its last thread ends with SYS_exit(9) and its
/// parent's wait gets 9 (exit_group in the restore's place would end the process before
/// the checks, a main thread left alive would fail them and keep the process alive).
#[test]
fn exited_main_thread() {
    let _t = serial();
    let mut w = leader_exited(&[]);
    w.dump();
    if !direct() {
        // the image: the three live threads (no record for the main one), its status
        let img = inspect_json(&mut w);
        let p = &img["processes"][0];
        let tids: Vec<String> = p["threads"].as_array().unwrap().iter().map(|t| t["tid"].to_string()).collect();
        assert_eq!(tids.join(" "), w.info("tids"), "threads in the image\n{}", w.report());
        assert_eq!((p["leader_exited"].as_bool(), p["leader_exit_status"].as_i64()), (Some(true), Some(42 << 8)), "{p}");
    }
    w.restore();
    go_and_pass_code(&mut w, 9);
}

/// The same with --leave-running: the original (untouched, its main thread still a
/// zombie) passes and ends with the main thread's status; then so does the restored
/// copy. Its main thread exited through glibc's pthread_exit (status 0).
#[test]
fn exited_main_thread_leave_running() {
    let _t = serial();
    let mut w = leader_exited(&["pthread"]);
    let untouched = |w: &Workload| {
        assert_eq!(stat_of(w.pid).map(|s| s.0), Some('Z'), "main thread of the original is no longer a zombie\n{}", w.report());
        assert_eq!(tasks_of(w.pid).len(), 4, "the original lost threads\n{}", w.report());
    };
    if w.leave_running_then_restore_with(9, untouched) {
        go_and_pass_code(&mut w, 9);
    }
}

/// go, wait, PASS with exit status `code`.
fn go_and_pass_code(w: &mut Workload, code: i32) {
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    w.assert_pass_code(st, code);
}

/// Stopped (SIGSTOP) as well: it comes back stopped, its main thread a zombie again and
/// the three others in the group stop, untraced; continued, it passes its checks.
#[test]
fn exited_main_thread_stopped() {
    let _t = serial();
    skip_if_direct!();
    let mut w = leader_exited(&[]);
    let pid = w.pid;
    // SAFETY: kill(2) on the workload we started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let states = |n: usize| move || tasks_of(pid).iter().map(|t| t.1).collect::<String>() == "Z".to_string() + &"T".repeat(n);
    assert!(wait_until(std::time::Duration::from_secs(5), states(3)), "not stopped: {:?}\n{}", tasks_of(pid), w.report());
    w.checkpoint_restore();
    assert!(
        wait_until(std::time::Duration::from_secs(5), states(3)) && tasks_of(pid).iter().all(|t| t.2 == 0),
        "restored: {:?} (tid, state, tracer)\n{}",
        tasks_of(pid),
        w.report()
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    go_and_pass_code(&mut w, 9);
}

/// A process whose main thread exited, with a child process (re-parented to a live
/// thread by the kernel): the tree is restored, the child's parent is the process again,
/// thread 0 reaps it and sees its status.
#[test]
fn exited_main_thread_with_child() {
    let _t = serial();
    let mut w = leader_exited(&["child"]);
    let child: i32 = w.info("child").parse().unwrap();
    dump_and_restore_tree(&mut w, &[child]);
    go_and_pass_code(&mut w, 9);
}
