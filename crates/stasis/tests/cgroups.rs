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

/// Cgroups a test made (parents first) and removes at the end, children first, whatever
/// happened (a cgroup whose last process was just killed may be busy for a moment).
struct Made(Vec<std::path::PathBuf>);

impl Made {
    fn mkdir(&mut self, d: &str) {
        std::fs::create_dir(d).unwrap_or_else(|e| panic!("creating cgroup {d}: {e}"));
        self.0.push(d.into());
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        // a process a failed test left in them (only the test's own are there)
        for d in &self.0 {
            for p in std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines().filter_map(|l| l.parse::<i32>().ok()) {
                eprintln!("killing pid {p} left in cgroup {}", d.display());
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        reap_strays(true);
        // cgroups a workload made below them
        for d in self.0.iter().rev() {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) && !self.0.contains(&e.path()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        for d in self.0.iter().rev() {
            let ok = wait_until(std::time::Duration::from_secs(3), || !d.exists() || std::fs::remove_dir(d).is_ok());
            if !ok {
                eprintln!("could not remove cgroup {}", d.display());
            }
        }
    }
}

/// Removes cgroup `d` (if still there) and every cgroup below it, children first.
fn rm_tree(d: &std::path::Path) {
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            rm_tree(&e.path());
        }
    }
    if d.exists() {
        std::fs::remove_dir(d).unwrap_or_else(|e| panic!("removing cgroup {}: {e}", d.display()));
    }
}

/// Our own cgroup in the hierarchy whose /proc/self/cgroup controllers field is `ctl`.
fn own_cgroup(ctl: &str) -> String {
    let t = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    t.lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            (f.nth(1) == Some(ctl)).then(|| f.next()).flatten()
        })
        .map(|p| p.trim_end_matches('/').to_string())
        .unwrap_or_default()
}

fn put(dir: &str, file: &str, v: &str) {
    std::fs::write(format!("{dir}/{file}"), v).unwrap_or_else(|e| panic!("writing {v} to {dir}/{file}: {e}"));
}

fn get(dir: &str, file: &str) -> String {
    std::fs::read_to_string(format!("{dir}/{file}")).unwrap_or_else(|e| panic!("reading {dir}/{file}: {e}")).trim_end().to_string()
}

/// The cgroups of workload cgroup_limits (see its header): pids, pids/child, memory,
/// cpu, cpuset, v2, v2/child — each below the test's own cgroup of its hierarchy.
struct Limits {
    made: Made,
    dirs: [String; 7],
}

const PIDS: usize = 0;
const PIDS_CHILD: usize = 1;
const MEMORY: usize = 2;
const CPU: usize = 3;
const CPUSET: usize = 4;
const V2: usize = 5;
const V2_CHILD: usize = 6;

fn limits_available() -> bool {
    let ok = ["pids", "memory", "cpu", "cpuset"].iter().all(|h| std::path::Path::new(&format!("/sys/fs/cgroup/{h}/tasks")).exists())
        && std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists();
    if !ok {
        eprintln!("skipped: needs the v1 pids, memory, cpu and cpuset hierarchies and cgroup2 at /sys/fs/cgroup/unified");
    }
    ok
}

/// Makes and configures the cgroups (the settings the workload's header lists, and
/// memory/cpu limits checked from outside).
fn make_limits(tag: &str) -> Limits {
    let name = format!("stasis-test-{tag}-{}", std::process::id());
    let at = |h: &str, ctl: &str, sub: &str| format!("/sys/fs/cgroup/{h}{}/{name}{sub}", own_cgroup(ctl));
    let dirs = [
        at("pids", "pids", ""),
        at("pids", "pids", "/child"),
        at("memory", "memory", ""),
        at("cpu", "cpu", ""),
        at("cpuset", "cpuset", ""),
        at("unified", "", ""),
        at("unified", "", "/child"),
    ];
    let mut made = Made(Vec::new());
    for d in &dirs {
        made.mkdir(d);
    }
    put(&dirs[PIDS], "pids.max", "8");
    put(&dirs[PIDS_CHILD], "pids.max", "2");
    put(&dirs[MEMORY], "memory.limit_in_bytes", "67108864");
    put(&dirs[MEMORY], "memory.soft_limit_in_bytes", "33554432");
    put(&dirs[CPU], "cpu.shares", "512");
    put(&dirs[CPU], "cpu.cfs_period_us", "200000");
    put(&dirs[CPU], "cpu.cfs_quota_us", "50000");
    put(&dirs[CPUSET], "cpuset.cpus", "0");
    put(&dirs[CPUSET], "cpuset.mems", "0");
    put(&dirs[V2], "cgroup.max.descendants", "3");
    // delegated to uid 1000
    for f in ["", "/cgroup.procs"] {
        std::os::unix::fs::chown(format!("{}{f}", dirs[V2_CHILD]), Some(1000), Some(1000)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dirs[V2_CHILD], std::fs::Permissions::from_mode(0o750)).unwrap();
    Limits { made, dirs }
}

/// Every setting make_limits made, read from the kernel's files (the pids.max of
/// `dirs[PIDS]` is `pids_max`).
fn check_limits(l: &Limits, pids_max: &str, w: &Workload) {
    use std::os::unix::fs::MetadataExt;
    let d = &l.dirs;
    let want = [
        (PIDS, "pids.max", pids_max),
        (PIDS_CHILD, "pids.max", "2"),
        (MEMORY, "memory.limit_in_bytes", "67108864"),
        (MEMORY, "memory.soft_limit_in_bytes", "33554432"),
        (CPU, "cpu.shares", "512"),
        (CPU, "cpu.cfs_period_us", "200000"),
        (CPU, "cpu.cfs_quota_us", "50000"),
        (CPUSET, "cpuset.cpus", "0"),
        (CPUSET, "cpuset.mems", "0"),
        (V2, "cgroup.max.descendants", "3"),
    ];
    for (i, f, v) in want {
        assert_eq!(get(&d[i], f), v, "{}/{f} after restore\n{}", d[i], w.report());
    }
    let md = std::fs::metadata(&d[V2_CHILD]).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1000, 1000, 0o750), "owner and mode of {}", d[V2_CHILD]);
    let md = std::fs::metadata(format!("{}/cgroup.procs", d[V2_CHILD])).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000), "owner of {}/cgroup.procs", d[V2_CHILD]);
    // the empty cgroup the workload made as uid 1000 (in the test's Made: removed at the end)
    let kept = format!("{}/kept", d[V2_CHILD]);
    let md = std::fs::metadata(&kept).unwrap_or_else(|e| panic!("{kept}: {e}\n{}", w.report()));
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1000, 1000, 0o750), "owner and mode of {kept}");
    let md = std::fs::metadata(format!("{kept}/cgroup.max.depth")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000), "owner of {kept}/cgroup.max.depth");
    assert_eq!(get(&kept, "cgroup.max.depth"), "1");
}

/// Which processes are in each cgroup (from its cgroup.procs).
fn members(l: &Limits, i: usize) -> Vec<i32> {
    get(&l.dirs[i], "cgroup.procs").lines().filter_map(|x| x.parse().ok()).collect()
}

fn start_limits(l: &Limits) -> (Workload, i32) {
    let args: Vec<&str> = l.dirs.iter().map(String::as_str).collect();
    let w = Workload::start("cgroup_limits", &args);
    let kid: i32 = w.info("child").parse().unwrap();
    (w, kid)
}

/// Cgroups with limits (v1 pids, memory, cpu, cpuset; v2 max.descendants and a cgroup
/// delegated to uid 1000), removed after the dump: restore creates them again with the
/// same settings, mode and owners (read from the kernel's files), puts each process
/// back, and the workload sees the limits enforced (fork beyond pids.max fails, the
/// cpuset confines its affinity, its delegated cgroup is its own and max.descendants
/// holds) and its open pids.max fd reads the new file.
#[test]
fn settings_come_back_with_the_cgroups() {
    let _t = serial();
    if !limits_available() {
        return;
    }
    let l = make_limits("lim");
    let (mut w, kid) = start_limits(&l);
    if !direct() {
        dump_and_reap_tree(&mut w, &[kid]);
        // the image says so too (inspect --json)
        let j = inspect_json(&mut w);
        let rel = l.dirs[PIDS].trim_start_matches("/sys/fs/cgroup/pids");
        let saved = j["cgroups"]["saved"].as_array().unwrap().iter().find(|c| c["controllers"] == "pids" && c["path"] == rel).cloned();
        assert!(saved.is_some_and(|c| c["settings"].as_array().unwrap().iter().any(|s| s["file"] == "pids.max" && s["value"] == "8")), "inspect: {}", j["cgroups"]);
        for d in l.made.0.iter().rev() {
            rm_tree(d);
        }
        w.restore();
        check_limits(&l, "8", &w);
        for i in [PIDS, V2] {
            assert_eq!(members(&l, i), vec![w.pid], "members of {}\n{}", l.dirs[i], w.report());
        }
        for i in [MEMORY, CPU, CPUSET] {
            assert_eq!(members(&l, i), vec![w.pid, kid], "members of {}\n{}", l.dirs[i], w.report());
        }
        for i in [PIDS_CHILD, V2_CHILD] {
            assert_eq!(members(&l, i), vec![kid], "members of {}\n{}", l.dirs[i], w.report());
        }
    }
    w.go_and_pass();
}

/// Cgroups that exist at restore are used as they are: `--cgroups strict` refuses one
/// whose setting changed (one line naming the file, nothing left behind), `--cgroups
/// join` refuses a missing one (and creates nothing), the default warns, keeps the
/// existing setting and creates only the missing cgroup (with its settings).
#[test]
fn existing_cgroups_are_used_as_they_are() {
    let _t = serial();
    if !limits_available() || direct() {
        return;
    }
    let l = make_limits("ex");
    let (mut w, kid) = start_limits(&l);
    dump_and_reap_tree(&mut w, &[kid]);
    put(&l.dirs[PIDS], "pids.max", "7");
    let r = w.try_restore(&["--cgroups", "strict"]);
    assert_clean_error(&r, &["pids.max is \"7\" here, \"8\" in the image", "--cgroups strict"], &w.report());
    assert!(!pid_exists(w.pid), "a refused restore left pid {}", w.pid);
    std::fs::remove_dir(&l.dirs[PIDS_CHILD]).unwrap();
    let r = w.try_restore(&["--cgroups", "join"]);
    assert_clean_error(&r, &[&format!("cgroup pids:{}", l.dirs[PIDS_CHILD].trim_start_matches("/sys/fs/cgroup/pids")), "does not exist"], &w.report());
    assert!(!std::path::Path::new(&l.dirs[PIDS_CHILD]).exists(), "--cgroups join created a cgroup");
    w.restore();
    assert!(w.report().contains("exists with other settings: pids.max is \"7\" here, \"8\" in the image; used as it is"), "no warning\n{}", w.report());
    check_limits(&l, "7", &w);
    assert_eq!(members(&l, PIDS_CHILD), vec![kid]);
    put(&l.dirs[PIDS], "pids.max", "8"); // what the workload expects to read
    w.go_and_pass();
}

/// A restore that fails after creating cgroups removes them (and no process is left):
/// the cpuset cgroup exists again but without CPUs (used as it is, with a warning), so
/// the root cannot join it.
#[test]
fn failed_restore_removes_the_cgroups_it_created() {
    let _t = serial();
    if !limits_available() || direct() {
        return;
    }
    let l = make_limits("fail");
    let (mut w, kid) = start_limits(&l);
    dump_and_reap_tree(&mut w, &[kid]);
    for d in l.made.0.iter().rev() {
        rm_tree(d);
    }
    std::fs::create_dir(&l.dirs[CPUSET]).unwrap();
    let r = w.try_restore(&[]);
    // the error line, after the warning that explains it
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(r.status == Exit::Code(1) && lines.len() == 2, "expected a warning and an error\n{r}");
    assert!(lines[0].contains("WARN") && lines[0].contains("cpuset.cpus is \"\" here, \"0\" in the image") && lines[0].ends_with("used as it is"), "{r}");
    for n in [&format!("stasis: error: restore of pid {}", w.pid), "joining its cgroups", "cgroup.procs", "No space left on device"] {
        assert!(lines[1].contains(n), "the error should name {n:?}\n{r}");
    }
    assert!(!pid_exists(w.pid) && !pid_exists(kid), "a failed restore left processes");
    for (i, d) in l.dirs.iter().enumerate() {
        assert_eq!(std::path::Path::new(d).exists(), i == CPUSET, "{d} after the failed restore\n{r}");
    }
}

/// A thread alone in another cgroup than its process (v1 `tasks`): the dump is refused
/// with one line naming pid, thread and cgroup, and the process runs on untouched.
#[test]
fn thread_in_a_cgroup_of_its_own_is_refused() {
    let _t = serial();
    if !std::path::Path::new("/sys/fs/cgroup/pids/tasks").exists() || direct() {
        return;
    }
    let mut made = Made(Vec::new());
    let d = format!("/sys/fs/cgroup/pids{}/stasis-test-thr-{}", own_cgroup("pids"), std::process::id());
    made.mkdir(&d);
    let mut w = Workload::start("cgroup_thread", &[&d]);
    let tid = tasks_of(w.pid).iter().map(|t| t.0).find(|&t| t != w.pid).expect("the thread");
    let r = w.try_dump(&[]);
    let rel = d.trim_start_matches("/sys/fs/cgroup/pids");
    assert_clean_error(&r, &[&format!("pid {}: thread {tid} is in cgroup ", w.pid), &format!(":pids:{rel}"), "not supported"], &w.report());
    w.assert_running_untouched();
    drop(w);
    drop(made);
}

/// `--cgroups ignore`: the processes stay in the restorer's cgroups (read from
/// /proc/PID/cgroup) and no cgroup is created.
#[test]
fn ignore_leaves_the_processes_in_the_restorers_cgroups() {
    let _t = serial();
    if !std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() || !std::path::Path::new("/sys/fs/cgroup/pids/tasks").exists() || direct() {
        return;
    }
    let name = format!("stasis-test-ign-{}", std::process::id());
    let dirs = Cgroups([format!("{name}/child"), name.clone()].map(|d| format!("/sys/fs/cgroup/unified/{d}").into()).into_iter().chain([format!("/sys/fs/cgroup/pids/{name}").into()]).collect());
    let mut w = Workload::start("cgroups", &[&name]);
    let kid: i32 = w.info("child").parse().unwrap();
    dump_and_reap_tree(&mut w, &[kid]);
    for d in &dirs.0 {
        std::fs::remove_dir(d).unwrap();
    }
    w.restore_with(&["--cgroups", "ignore"]);
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    for p in [w.pid, kid] {
        assert_eq!(std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap(), ours, "cgroups of pid {p}\n{}", w.report());
    }
    for d in &dirs.0 {
        assert!(!d.exists(), "{} was created", d.display());
    }
}

/// A process in a v2 threaded cgroup (all its threads): restore creates the parent and
/// the threaded child again (cgroup.type read from the kernel: "domain threaded" and
/// "threaded") and puts the process back in it.
#[test]
fn threaded_cgroup_comes_back_threaded() {
    let _t = serial();
    if !std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() || direct() {
        return;
    }
    let top = format!("/sys/fs/cgroup/unified{}/stasis-test-thr2-{}", own_cgroup(""), std::process::id());
    let t = format!("{top}/t");
    let mut made = Made(Vec::new());
    made.mkdir(&top);
    made.mkdir(&t);
    put(&t, "cgroup.type", "threaded");
    let mut w = Workload::start("basic", &[]);
    put(&t, "cgroup.procs", &w.pid.to_string());
    let line = format!("0::{}\n", t.trim_start_matches("/sys/fs/cgroup/unified"));
    assert!(std::fs::read_to_string(format!("/proc/{}/cgroup", w.pid)).unwrap().contains(&line));
    w.dump();
    for d in made.0.iter().rev() {
        std::fs::remove_dir(d).unwrap();
    }
    w.restore();
    assert!(std::fs::read_to_string(format!("/proc/{}/cgroup", w.pid)).unwrap().contains(&line), "not back in {t}\n{}", w.report());
    assert_eq!((get(&top, "cgroup.type"), get(&t, "cgroup.type")), ("domain threaded".to_string(), "threaded".to_string()));
    w.go_and_pass();
}

/// The v1 files restore writes in their own ways come back with the cgroups (read from
/// the kernel's files): devices.list (a device allow-list: "a" denied, then each line
/// allowed), memory.oom_control (oom_kill_disable), blkio throttle limits (one line per
/// device).
#[test]
fn v1_device_lists_oom_control_and_throttles_come_back() {
    let _t = serial();
    if !["devices", "memory", "blkio"].iter().all(|h| std::path::Path::new(&format!("/sys/fs/cgroup/{h}/tasks")).exists()) || direct() {
        eprintln!("skipped: needs the v1 devices, memory and blkio hierarchies");
        return;
    }
    // a whole disk for the throttles
    let parts = std::fs::read_to_string("/proc/partitions").unwrap();
    let disk = parts.lines().skip(2).filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() == 4 && f[1] == "0").then(|| format!("{}:{}", f[0], f[1]))
    }).next();
    let name = format!("stasis-test-v1-{}", std::process::id());
    let [dev, mem, blk] = [("devices", "devices"), ("memory", "memory"), ("blkio", "blkio")].map(|(h, c)| format!("/sys/fs/cgroup/{h}{}/{name}", own_cgroup(c)));
    let mut made = Made(Vec::new());
    for d in [&dev, &mem, &blk] {
        made.mkdir(d);
    }
    put(&dev, "devices.deny", "a");
    put(&dev, "devices.allow", "c 1:3 rwm");
    put(&dev, "devices.allow", "c 1:5 r");
    put(&mem, "memory.oom_control", "1");
    if let Some(d) = &disk {
        put(&blk, "blkio.throttle.read_bps_device", &format!("{d} 1048576"));
        put(&blk, "blkio.throttle.write_iops_device", &format!("{d} 100"));
    }
    let want = |w: &Workload| {
        assert_eq!(get(&dev, "devices.list"), "c 1:3 rwm\nc 1:5 r", "{dev}/devices.list\n{}", w.report());
        assert!(get(&mem, "memory.oom_control").starts_with("oom_kill_disable 1\n"), "{mem}/memory.oom_control\n{}", w.report());
        if let Some(d) = &disk {
            assert_eq!(get(&blk, "blkio.throttle.read_bps_device"), format!("{d} 1048576"));
            assert_eq!(get(&blk, "blkio.throttle.write_iops_device"), format!("{d} 100"));
            assert_eq!(get(&blk, "blkio.throttle.write_bps_device"), "");
        }
    };
    let mut w = Workload::start("basic", &[]);
    for d in [&dev, &mem, &blk] {
        put(d, "cgroup.procs", &w.pid.to_string());
    }
    want(&w);
    w.dump();
    for d in made.0.iter().rev() {
        std::fs::remove_dir(d).unwrap();
    }
    w.restore();
    want(&w);
    for d in [&dev, &mem, &blk] {
        assert_eq!(get(d, "cgroup.procs"), w.pid.to_string(), "members of {d}");
    }
    w.go_and_pass();
}
