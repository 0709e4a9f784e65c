//! Multi-threaded processes: TIDs, per-thread state, blocked threads.

mod common;
use common::*;

fn tids(w: &Workload) -> Vec<i32> {
    let mut v: Vec<i32> = w.infos("tid").iter().map(|s| s.parse().unwrap()).collect();
    v.push(w.pid);
    v.sort();
    v
}

/// 4 threads blocked in futex / nanosleep / pipe read / cond wait, with
/// names, masks, TLS, stack patterns, one pinned to a CPU.  Everything is
/// checked by the threads themselves; the harness also checks that the
/// restored process has exactly the original TIDs.
#[test]
fn four_threads_blocked_differently() {
    let _t = serial();
    let mut w = Workload::start("threads", &[]);
    w.wait_all_sleeping();
    let before = tids(&w);
    assert_eq!(before.len(), 5, "{}", w.report());
    // no semaphore set anywhere: the empty undo list glibc's threads share (CLONE_SYSVSEM)
    // is no SEM_UNDO state worth a warning
    let no_sems = std::fs::read_to_string("/proc/sysvipc/sem").is_ok_and(|t| t.lines().count() <= 1);
    w.checkpoint_restore();
    let after: Vec<i32> = tasks_of(w.pid).iter().map(|t| t.0).collect();
    assert_eq!(after, before, "restored TIDs differ from the original ones\n{}", w.report());
    if no_sems {
        assert!(!w.report().contains("SEM_UNDO"), "a threaded process without semaphores was warned of SEM_UNDO\n{}", w.report());
    }
    w.go_and_pass();
}

/// 64 tasks (4 busy-blocked + 59 idle futex waiters + main).
#[test]
fn many_threads() {
    let _t = serial();
    let mut w = Workload::start("threads", &["59"]);
    w.wait_all_sleeping();
    let before = tids(&w);
    assert_eq!(before.len(), 64, "{}", w.report());
    w.checkpoint_restore();
    let after: Vec<i32> = tasks_of(w.pid).iter().map(|t| t.0).collect();
    assert_eq!(after, before, "restored TIDs differ\n{}", w.report());
    w.go_and_pass();
}

/// A restored process is itself dumpable and restorable (no restorer
/// leftovers: extra VMAs, fds, signal state, threads).
#[test]
fn dump_restored_process_again() {
    let _t = serial();
    let mut w = Workload::start("threads", &[]);
    w.wait_all_sleeping();
    w.checkpoint_restore();
    if !direct() {
        w.wait_all_sleeping();
        // second generation into a fresh image dir
        let img2 = w.tmp.path.join("img2");
        std::fs::create_dir(&img2).unwrap();
        let pid = w.pid.to_string();
        let r = w.stasis(&[
            std::ffi::OsStr::new("dump"),
            std::ffi::OsStr::new("-t"),
            std::ffi::OsStr::new(&pid),
            std::ffi::OsStr::new("-D"),
            img2.as_os_str(),
        ]);
        assert!(r.ok(), "second dump (of the restored process) failed\n{}", w.report());
        let st = waitpid_timeout(w.pid, std::time::Duration::from_secs(10));
        assert!(
            matches!(st, Ok(Exit::Signal(9))),
            "restored process should have been SIGKILLed by the second dump\n{}",
            w.report()
        );
        w.forget_restored();
        w.restore_from(&img2);
    }
    w.go_and_pass();
}

/// set_robust_list and clear_child_tid per thread: after restore a thread
/// exits holding a robust mutex -> the next locker gets EOWNERDEAD (not a
/// hang), and pthread_join works.
#[test]
fn robust_mutex_and_join() {
    let _t = serial();
    let mut w = Workload::start("robust", &[]);
    w.wait_all_sleeping();
    w.checkpoint_restore();
    w.go_and_pass();
}
