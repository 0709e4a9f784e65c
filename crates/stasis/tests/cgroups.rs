//! Control groups: processes go back into the cgroups they were in (v2 and v1), which
//! are created again if they were removed; cgroup namespaces keep their root.

mod common;
use common::*;

struct Cgroups(Vec<std::path::PathBuf>);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn processes_return_to_their_cgroups() {
    let _t = serial();
    if !std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() || !std::path::Path::new("/sys/fs/cgroup/pids/tasks").exists() {
        eprintln!("skipped: needs cgroup2 at /sys/fs/cgroup/unified and the v1 pids hierarchy");
        return;
    }
    let name = format!("stasis-test-{}", std::process::id());
    let dirs = [format!("{name}/child"), name.clone()].map(|d| format!("/sys/fs/cgroup/unified/{d}"));
    run_in_cgroups("cgroups", &name, &[&dirs[0], &dirs[1], &format!("/sys/fs/cgroup/pids/{name}")]);
}

/// Runs workload `prog` (args WORKDIR NAME; prints INFO child=PID), dumps the tree,
/// removes the (then empty) cgroups `dirs`, restores, and expects PASS; the cgroups are
/// removed again at the end, whatever happens.
fn run_in_cgroups(prog: &str, name: &str, dirs: &[&str]) {
    let dirs = Cgroups(dirs.iter().map(|d| d.into()).collect());
    let mut w = Workload::start(prog, &[name]);
    let kid: i32 = w.info("child").parse().unwrap();
    if !direct() {
        dump_and_reap_tree(&mut w, &[kid]);
        for d in &dirs.0 {
            std::fs::remove_dir(d).unwrap_or_else(|e| panic!("removing {} after the dump: {e}", d.display()));
        }
        w.restore();
    }
    w.go_and_pass();
    drop(dirs);
}

/// A cgroup namespace rooted at the cgroup its creator joined, with a child in a
/// sub-cgroup: restored with the same root (the workload compares /proc/self/cgroup as
/// seen from inside); the cgroups are removed between dump and restore.
#[test]
fn cgroup_namespace() {
    let _t = serial();
    if !std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        eprintln!("skipped: needs cgroup2 at /sys/fs/cgroup/unified");
        return;
    }
    let name = format!("stasis-test-ns-{}", std::process::id());
    let dirs = [format!("{name}/child"), name.clone()].map(|d| format!("/sys/fs/cgroup/unified/{d}"));
    run_in_cgroups("cgroupns", &name, &[&dirs[0], &dirs[1]]);
}
