//! Terminals: pty pairs inside the tree (termios, window size, packet mode, lock and
//! exclusive mode, data queued both ways, controlling terminal and foreground group of a
//! session, /dev/tty), and shell jobs (`--shell-job`).

mod common;
use common::*;

/// A pty pair of the tree with its state and both queues: everything is checked from
/// inside the restored processes (see workloads/tty_pty.c), after a killing dump.
#[test]
fn pty_pair_state_queues_and_session() {
    let _t = serial();
    let mut w = Workload::start("tty_pty", &[]);
    let kids = info_pids(&w, &["c", "g"]);
    dump_and_restore_tree(&mut w, &kids);
    if !direct() {
        let img = inspect_json(&mut w);
        let s = img.to_string();
        assert!(s.contains("\"master_queued\":6") && s.contains("\"slave_queued\":16"), "queues in the image\n{s}");
    }
    w.go_and_pass();
}

/// --leave-running: the queues are read and put back, the live tree goes on and passes
/// the same checks; then the image restores and passes them too.
#[test]
fn pty_pair_leave_running_then_restore() {
    let _t = serial();
    let mut w = Workload::start("tty_pty", &[]);
    let kids = info_pids(&w, &["c", "g"]);
    w.dump_leave_running();
    w.go_and_pass();
    if direct() {
        return;
    }
    reap_dumped(&w, &kids);
    std::fs::remove_file(w.work.join("go")).unwrap();
    // stdout grew by the original's PASS: the restored copy writes it again at its offset
    w.restore_with(&["--allow-changed-files"]);
    for k in &kids {
        assert!(pid_exists(*k), "process {k} of the tree was not restored\n{}", w.report());
    }
    w.go_and_pass();
}
