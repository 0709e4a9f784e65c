//! `stasis inspect`: the text output is for people (no NUL bytes, no JSON or Debug
//! values, flags, signals and protections by name) and shows every process of a tree
//! in a section of its own; the JSON carries the same per process.

mod common;
use common::*;

/// `stasis inspect IMG` (text) of the workload's image; must succeed.
fn inspect_text(w: &mut Workload) -> String {
    let img = w.img.clone();
    let r = w.stasis(&[std::ffi::OsStr::new("inspect"), img.as_os_str()]);
    assert!(r.ok(), "inspect failed\n{}", w.report());
    r.stdout
}

/// What every text output must satisfy.
fn assert_readable(out: &str) {
    assert!(!out.contains('\0'), "inspect output has a NUL byte:\n{out}");
    for leak in ["Array [", "Object {", "Number(", "String(", "{\"", "0o"] {
        assert!(!out.contains(leak), "inspect output shows a raw value ({leak:?}):\n{out}");
    }
    assert!(!out.contains("sigmask 0x"), "signal masks must be shown by name:\n{out}");
}

/// The lines of the section of process `pid` (from its heading to the next heading).
fn section(out: &str, pid: i32) -> Vec<&str> {
    let head = format!("process {pid} '");
    let mut lines = out.lines().skip_while(|l| !l.starts_with(&head));
    let first = lines.next();
    assert!(first.is_some(), "no section for process {pid}:\n{out}");
    first.into_iter().chain(lines.take_while(|l| l.starts_with(' '))).collect()
}

/// A tree (root, a live child sharing pipes, a zombie, a group leader): each process has
/// its own section with its threads, memory and fds; pipe flags by name.
#[test]
fn tree_sections_per_process() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("tree", &[]);
    let kids: Vec<i32> = ["a", "b", "c"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    w.dump_leave_running();
    let out = inspect_text(&mut w);
    assert_readable(&out);
    for pid in [w.pid, kids[0], kids[2]] {
        let s = section(&out, pid).join("\n");
        for k in ["threads: 1", "memory: ", "fds: ", "credentials: ", "signals: ", &format!("tid {pid:>7}")] {
            assert!(s.contains(k), "section of {pid} lacks {k:?}:\n{s}\n\nwhole output:\n{out}");
        }
        assert!(s.contains("rw-p") && s.contains("r-xp"), "VMA protections should read like maps (rw-p, r-xp):\n{s}");
    }
    let root = section(&out, w.pid).join("\n");
    assert!(root.contains("(root)"), "root section not marked as the root:\n{root}");
    assert!(root.contains("rw-s"), "the tree's MAP_SHARED page should show as rw-s:\n{root}");
    assert!(root.contains("pipe-write") && root.contains("O_WRONLY"), "the root's pipe end by name and flags:\n{root}");
    let a = section(&out, kids[0]).join("\n");
    assert!(a.contains(&format!("child of {}", w.pid)), "child A's parent:\n{a}");
    assert!(a.contains("pipe-read") && a.contains("O_RDONLY"), "child A's pipe end by name and flags:\n{a}");
    let b = section(&out, kids[1]).join("\n");
    assert!(b.contains("zombie, exited 7"), "the zombie's wait status in words:\n{b}");

    let j = inspect_json(&mut w);
    let procs = j["processes"].as_array().cloned().unwrap_or_default();
    assert_eq!(procs.len(), 4, "processes in the JSON\n{}", w.report());
    for p in procs.iter().filter(|p| p["zombie"] == false) {
        assert_eq!(p["threads"].as_array().map(|t| t.len()), Some(1), "threads of {}: {}", p["pid"], p["threads"]);
        assert!(p["vmas"].as_array().is_some_and(|v| !v.is_empty()), "no VMAs for {} in the JSON", p["pid"]);
        for f in p["fds"].as_array().into_iter().flatten() {
            if f.get("flags").is_some() {
                assert!(f["flags_names"].as_str().is_some_and(|s| s.starts_with("O_")), "fd without flags_names: {f}");
            }
        }
    }
    w.go_and_pass();
}

/// A bound unix socket: its path without the NUL sock_diag reports after it; socket
/// flags by name.
#[test]
fn unix_socket_name_and_flags() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("sock", &["unixbound"]);
    w.dump_leave_running();
    let out = inspect_text(&mut w);
    assert_readable(&out);
    let path = w.work.join("listener.sock");
    let line = out
        .lines()
        .find(|l| l.contains("unix stream"))
        .unwrap_or_else(|| panic!("no unix socket in the inspect output:\n{out}"));
    assert!(line.contains(&format!("{} O_NONBLOCK, listening", path.display())), "unix socket line: {line}");
    assert!(line.contains("listening (backlog"), "unix socket line: {line}");
    let j = inspect_json(&mut w);
    let fd = j["fds"].as_array().into_iter().flatten().find(|f| f["kind"] == "unix-bound").cloned().unwrap_or_default();
    assert_eq!(fd["name"].as_str(), Some(path.to_str().unwrap()), "unix name in the JSON: {fd}");
    w.go_and_pass();
}

/// Pending signals, masks and handlers by name, per process and per thread.
#[test]
fn pending_signals_by_name() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("sig_pending", &[]);
    let t: i32 = w.info("thread_tid").parse().unwrap();
    w.dump_leave_running();
    let out = inspect_text(&mut w);
    assert_readable(&out);
    let sig = out.lines().find(|l| l.trim_start().starts_with("signals:")).unwrap_or_default();
    let caught = sig.split("caught ").nth(1).unwrap_or_default().split(';').next().unwrap_or_default();
    assert!(caught.split(", ").any(|s| s == "SIGRTMIN+3"), "handler by name: {sig}");
    let pending = sig.split("pending ").nth(1).unwrap_or_default();
    let mut got: Vec<&str> = pending.split(", ").collect();
    got.sort();
    assert_eq!(got, ["SIGRTMIN+3", "SIGRTMIN+3", "SIGUSR1"], "process-wide pending signals: {sig}");
    let main = out.lines().find(|l| l.contains(&format!("tid {:>7}", w.pid))).unwrap_or_default();
    assert!(main.contains("blocked SIGUSR1, SIGUSR2, SIGRTMIN+3, SIGRTMIN+4"), "main thread mask: {main}");
    assert!(main.contains("pending SIGRTMIN+4"), "main thread's own pending signal: {main}");
    let thr = out.lines().find(|l| l.contains(&format!("tid {t:>7}"))).unwrap_or_default();
    assert!(thr.contains("pending SIGUSR2"), "thread's own pending signal: {thr}");
    let j = inspect_json(&mut w);
    assert_eq!(j["processes"][0]["signals"]["pending"].as_array().map(|a| a.len()), Some(3), "{}", j["processes"][0]["signals"]);
    w.go_and_pass();
}
