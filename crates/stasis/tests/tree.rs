//! Process trees: a parent with children sharing pipes, shared memory and a file
//! description, a zombie child, a child leading its own process group.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn process_tree_with_pipes_shared_memory_and_zombie() {
    let _t = serial();
    let mut w = Workload::start("tree", &[]);
    let kids: Vec<i32> = ["a", "b", "c"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    dump_and_restore_tree(&mut w, &kids);
    w.go_and_pass();
}

/// A child's pid is held by another process: the restore is refused before anything is
/// created, naming the pid and its holder; once the holder is gone the tree restores.
#[test]
fn tree_child_pid_taken_is_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("tree", &[]);
    let kids: Vec<i32> = ["a", "b", "c"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    dump_and_reap_tree(&mut w, &kids);
    let taken = kids[2];
    let holder = workload_bin("pidholder");
    let args = vec![w.work.clone().into_os_string(), taken.to_string().into()];
    w.spawn_helper(&holder, &args, "pidholder");
    assert!(
        wait_until(Duration::from_secs(10), || w.helper_output("pidholder").contains("READY")),
        "pidholder could not take pid {taken}: {}",
        w.helper_output("pidholder")
    );
    let img = w.img.clone();
    let r = w.try_restore_timeout(&img, &["-d"], Duration::from_secs(30));
    let rep = w.report();
    assert_clean_error(&r, &[&taken.to_string(), "pidholder"], &rep);
    assert!(!pid_exists(w.pid), "the root {} exists after a refused restore", w.pid);
    for k in &kids[..2] {
        assert!(!pid_exists(*k), "child {k} exists after a refused restore");
    }
    // SAFETY: the pidholder child of our helper, not yet reaped by it.
    unsafe { libc::kill(taken, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || !pid_exists(taken)), "holder {taken} did not go away");
    w.kill_helpers();
    w.restore();
    w.go_and_pass();
}

/// Foreground restore of a tree: stasis waits for the root and returns its status.
#[test]
fn tree_foreground_restore() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("tree", &[]);
    let kids: Vec<i32> = ["a", "b", "c"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    dump_and_reap_tree(&mut w, &kids);
    w.go();
    let st = w.restore_foreground(Duration::from_secs(30));
    w.assert_pass(st);
}

/// clone() children sharing the parent's fd table (CLONE_FILES) and cwd/umask
/// (CLONE_FS), a plain child with its own table, and a child whose exit signal is
/// SIGUSR1: the workload checks each sharing (and non-sharing) after restore.
#[test]
fn clone_files_fs_and_exit_signal() {
    let _t = serial();
    let mut w = Workload::start("clone_share", &[]);
    let kids: Vec<i32> = ["a", "b", "c"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    dump_and_restore_tree(&mut w, &kids);
    w.go_and_pass();
}

/// A vfork parent (waiting uninterruptibly for its child, so ptrace cannot stop it) is
/// refused at once with both pids named; both keep running and finish.
#[test]
fn vfork_in_progress_is_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("share_vm", &["vfork"]);
    let kid = w.info("child");
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&w.pid.to_string(), &kid, "vfork"], &w.report());
    assert!(r.elapsed < Duration::from_secs(5), "refusal took {:?}", r.elapsed);
    assert!(pid_exists(kid.parse().unwrap()), "child gone after a refused dump");
    w.go_and_pass();
}

/// A vfork whose child execs after 500 ms: the dump (started right after READY, during
/// the vfork) waits for it instead of refusing, and takes the parent with the exec'd
/// child; after restore the parent reaps the child's exit status 7.
#[test]
fn vfork_ending_soon_is_waited_for() {
    let _t = serial();
    let mut w = Workload::start("share_vm", &["vfork_exec"]);
    if direct() {
        w.go_and_pass();
        return;
    }
    w.dump();
    let img = inspect_json(&mut w);
    let procs = img["processes"].as_array().cloned().unwrap_or_default();
    assert_eq!(procs.len(), 2, "the image should hold the parent and its exec'd child\n{}", w.report());
    let kid = procs[1]["pid"].as_i64().unwrap() as i32;
    reap_dumped(&w, &[kid]);
    w.restore();
    assert!(pid_exists(kid), "the exec'd child was not restored\n{}", w.report());
    w.go_and_pass();
}

/// A clone(CLONE_VM | CLONE_SIGHAND) child: restored in its parent's address space with
/// the same handler table; the workload checks writes and a handler across the two.
#[test]
fn clone_vm_sighand_child() {
    let _t = serial();
    let mut w = Workload::start("share_vm", &["vm"]);
    let kid: i32 = w.info("child").parse().unwrap();
    dump_and_restore_tree(&mut w, &[kid]);
    w.go_and_pass();
}

/// A daemon-style child (its session leader exited, it was re-parented to the root, a
/// child subreaper) and a process group whose leader exited: sessions and groups come
/// back with the exited leaders' ids, through helper processes nobody sees.
#[test]
fn sessions_and_groups_of_exited_leaders() {
    let _t = serial();
    let mut w = Workload::start("sessions", &[]);
    let kids: Vec<i32> = ["d2", "g2"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    let leaders: Vec<i32> = ["d1", "g1"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    dump_and_restore_tree(&mut w, &kids);
    for l in leaders.iter().filter(|_| !direct()) {
        assert!(!pid_exists(*l), "helper {l} is still there after the restore\n{}", w.report());
    }
    w.go_and_pass();
}

/// Sessions and groups a "fork, then setsid" replay gets wrong: children forked before
/// their parent's setsid (one and two levels deep), a child joining a group of another
/// branch, re-parented orphans of a live and of a dead session leader. Every process
/// compares its pid, ppid, sid and pgid with what it recorded before the dump.
#[test]
fn session_topology() {
    let _t = serial();
    let mut w = Workload::start("session_topology", &[]);
    let kids: Vec<i32> =
        ["A", "A1", "A2", "B", "B1", "C", "C1", "C2", "D", "D1", "E1", "F1"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    dump_and_restore_tree(&mut w, &kids);
    w.go_and_pass();
}

/// A child that exec'd a program has its vDSO where that exec put it, not where its
/// parent has it: each process gets its own back (with the root's, the child died of
/// SIGSEGV at its first clock_gettime after restore).
#[test]
fn exec_child_keeps_its_own_vdso() {
    let _t = serial();
    let mut w = Workload::start("exec_vdso", &[]);
    let child: i32 = w.info("child").parse().unwrap();
    assert!(wait_until(Duration::from_secs(10), || !w.infos("child_vdso").is_empty()), "{}", w.report());
    assert_ne!(w.info("child_vdso"), w.info("parent_vdso"), "the child's vDSO must differ for this test to mean anything");
    dump_and_restore_tree(&mut w, &[child]);
    w.go_and_pass();
}

/// A shell loop that forks and execs all the time is dumped twenty times in a row with
/// --leave-running, never refused (a child caught exiting or exec'ing is waited out: it
/// becomes a zombie recorded as one, or the exec ends), then dumped for real and
/// restored: the loop's counter continues (READY once) and it ends with PASS.
#[test]
fn shell_loop_dumped_twenty_times() {
    let _t = serial();
    let mut w = Workload::new("sh-loop");
    let script = "cd \"$1\"; echo READY; i=0; while [ ! -e go ]; do i=$((i+1)); /bin/true; done; [ $i -gt 20 ] && echo PASS; echo \"INFO i=$i\"";
    w.spawn(std::path::Path::new("/bin/sh"), &["-c".into(), script.into(), "sh".into(), w.work.clone().into_os_string()]);
    w.wait_ready();
    if !direct() {
        for k in 0..20 {
            let _ = std::fs::remove_dir_all(&w.img);
            let r = w.try_dump(&["--leave-running"]);
            assert!(r.ok(), "dump {k} of 20 failed\n{}", w.report());
        }
        let _ = std::fs::remove_dir_all(&w.img);
        w.dump();
        let settled = wait_until(Duration::from_secs(10), || {
            reap_strays(false);
            my_children().is_empty()
        });
        assert!(settled, "the dumped tree's processes are still there\n{}", w.report());
        w.restore();
    }
    w.go_and_pass();
}

/// Zombies keep their process group and session (one leading its own group, one its
/// own session, one in the group of another zombie) and an orphan re-parented to the
/// subreaper of the tree keeps that parent, group and session: the parent checks the
/// zombies' ids in /proc and reaps each with its status, the orphan checks getppid().
#[test]
fn zombie_ids_and_reparented_orphan() {
    let _t = serial();
    let mut w = Workload::start("tree_ids", &[]);
    let kids = info_pids(&w, &["z1", "z2", "z3", "o"]);
    dump_and_restore_tree(&mut w, &kids);
    w.go_and_pass();
}
