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
