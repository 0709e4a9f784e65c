//! Process attributes and credentials.

mod common;
use common::*;

/// umask, cwd (with a space), all rlimits, comm, oom_score_adj, pdeathsig,
/// no_new_privs, personality, timerslack, THP-disable, nice + SCHED_BATCH,
/// child-subreaper flag.
#[test]
fn process_attributes() {
    let _t = serial();
    roundtrip("attrs_basic", &[]);
}

/// Supplementary groups, real/effective/saved uids and gids, fsgid,
/// capability sets (effective, permitted, inheritable, ambient, bounding),
/// keepcaps, dumpable 0.
#[test]
fn credentials_and_capabilities() {
    let _t = serial();
    roundtrip("attrs_creds", &[]);
}

/// pid/tid, /proc/self/cmdline, /proc/self/environ, /proc/self/exe, argv
/// and environ in memory, process group and session.
#[test]
fn identity_cmdline_environ_exe() {
    let _t = serial();
    roundtrip("proc_identity", &["an arg with spaces", "", "last"]);
}

/// Two seccomp filters survive (and did not filter stasis's own syscalls in the dump).
#[test]
fn seccomp_filters() {
    let _t = serial();
    roundtrip("seccomp", &[]);
}

/// A restorer without CAP_SETUID/CAP_SETGID (root with them dropped from its bounding
/// set, so the exec'd stasis lacks them) cannot hand out ids it does not hold: the image
/// asks for saved uid 1000 and gids 1001-1003, and the restore is refused before
/// anything is created, naming the pid and the id. With full root it then restores.
#[test]
fn restorer_without_setuid_cannot_grant_other_ids() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("attrs_creds", &[]);
    w.dump();
    let img = w.img.clone();
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set=-setuid,-setgid", "--inh-caps=-all"])
        .arg(env!("CARGO_BIN_EXE_stasis"))
        .args(["restore", "-d", "-D"])
        .arg(&img)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running stasis under setpriv");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restore without CAP_SETUID succeeded:\n{err}");
    assert_eq!(err.lines().count(), 1, "not one line:\n{err}");
    // refused by the check before anything exists, not by a failing setresuid later
    assert!(err.starts_with("stasis: error: restore refused: ") && err.contains(&w.pid.to_string()) && err.contains("uid 1000"), "{err}");
    assert!(!pid_exists(w.pid), "a process exists after a refused restore");
    w.restore();
    w.go_and_pass();
}

/// Registrations no /proc file shows: membarrier's private expedited commands (plain
/// and SYNC_CORE: after restore they do not fail with EPERM, as they did before they
/// were registered again), KSM merging of the whole process (PR_SET_MEMORY_MERGE), and
/// the audit loginuid (4242; the restored process started with the restorer's).
#[test]
fn membarrier_ksm_and_loginuid() {
    let _t = serial();
    roundtrip("prctl_misc", &[]);
}

/// A seccomp filter installed with SECCOMP_FILTER_FLAG_TSYNC on three threads: after
/// restore it acts in every thread (each checks), a new thread inherits it, and a
/// second TSYNC filter can be installed (the threads share the first one again; with
/// a copy per thread the kernel refused it, naming a thread).
#[test]
fn seccomp_tsync_filter_in_every_thread() {
    let _t = serial();
    roundtrip("seccomp_tsync", &[]);
}

/// The root's parent-death signal after `restore -d`: the restorer that exits is not the
/// parent it is armed against (it did fire when the restorer exited); it stays armed and
/// the root's parent is the test again (its nearest subreaper).
#[test]
fn root_parent_death_signal_survives_detached_restore() {
    let _t = serial();
    roundtrip("pdeath_root", &[]);
}
