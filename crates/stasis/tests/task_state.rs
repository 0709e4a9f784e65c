//! State the kernel keeps per thread, not per process, restored in the thread that had
//! it: credentials, an unshared cwd/umask, scheduling (SCHED_DEADLINE, reset-on-fork),
//! rdtsc/cpuid faulting and the machine-check kill policy; per-process state only the
//! process sees (coredump_filter, autogroup nice); resource limits below what the
//! process uses.

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

/// A process whose main thread called pthread_exit while three threads run shows as a
/// zombie but is not one: the dump refuses in one line saying what it is (not "is a
/// zombie"), and the process runs on untouched.
#[test]
fn exited_main_thread_is_refused_as_such() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("leader_exit", &[]);
    assert!(wait_until(std::time::Duration::from_secs(5), || stat_of(w.pid).is_some_and(|(s, _)| s == 'Z')), "main thread did not exit\n{}", w.report());
    let r = w.try_dump(&[]);
    let rep = w.report();
    assert_clean_error(&r, &[&w.pid.to_string(), "main thread has exited (pthread_exit) while 3 threads run", "not supported"], &rep);
    assert!(!r.stderr.contains("is a zombie"), "{r}");
    w.go_and_pass();
}
