//! Namespaces: a tree living in its own PID namespace with its own /proc (the shape of
//! `unshare --fork --pid --mount-proc`), and `restore --pid-ns` of a tree whose pids
//! are taken on the host.

mod common;
use common::*;
use std::time::Duration;

/// Every pid of the workload's tree as the host sees it (root first).
fn host_tree(root: i32) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for t in std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten() {
            let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(c.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
        }
        i += 1;
    }
    out
}

#[test]
fn tree_in_own_pid_and_mount_namespace() {
    own_namespaces(&[]);
}

/// `unshare --fork --pid --mount-proc --uts --ipc`: also a host name and SysV objects
/// of the namespace's own, checked inside after restore; the host's name is untouched.
#[test]
fn tree_in_own_pid_mount_uts_ipc_namespaces() {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    own_namespaces(&["all"]);
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host, "host name changed");
}

fn own_namespaces(args: &[&str]) {
    let _t = serial();
    let mut w = Workload::start("pidns", args);
    if direct() {
        w.go_and_pass();
        return;
    }
    let tree = host_tree(w.pid);
    assert_eq!(tree.len(), 4, "root, init, worker, zombie: {tree:?}\n{}", w.report());
    let init: i32 = w.info("init").parse().unwrap();
    dump_and_reap_tree(&mut w, &tree);
    w.restore();
    for p in &tree {
        assert!(pid_exists(*p), "pid {p} (host view) was not restored\n{}", w.report());
    }
    let nspid = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap_or_default();
    let line = nspid.lines().find(|l| l.starts_with("NSpid:")).unwrap_or("").to_string();
    assert_eq!(line.split_whitespace().skip(1).collect::<Vec<_>>(), vec![init.to_string().as_str(), "1"], "init's NSpid\n{}", w.report());
    // the host's /proc is untouched by the namespace's procfs mount
    let me = std::fs::read_link("/proc/self").unwrap();
    assert_eq!(me.to_string_lossy(), std::process::id().to_string(), "host /proc changed");
    w.go_and_pass();
}

/// The tree's pids are taken on the host: a plain restore is refused naming the holder;
/// `--pid-ns` brings the tree back inside a new PID namespace where every process has
/// its original pid (the workload checks its own pid, parents, group and session).
#[test]
fn restore_in_new_pid_namespace_when_pids_are_taken() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("tree", &["setsid"]);
    let kids: Vec<i32> = ["a", "b", "c"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    dump_and_reap_tree(&mut w, &kids);
    let holder = workload_bin("pidholder");
    let args = vec![w.work.clone().into_os_string(), w.pid.to_string().into()];
    w.spawn_helper(&holder, &args, "pidholder");
    assert!(
        wait_until(Duration::from_secs(10), || w.helper_output("pidholder").contains("READY")),
        "pidholder could not take pid {}: {}",
        w.pid,
        w.helper_output("pidholder")
    );
    let img = w.img.clone();
    let r = w.try_restore_from(&img, &["-d"]);
    assert_clean_error(&r, &[&w.pid.to_string(), "pidholder"], &w.report());
    let pf = w.tmp.path.join("ns.pid");
    let pfs = pf.to_string_lossy().to_string();
    let r = w.try_restore_from(&img, &["-d", "--pid-ns", "--pidfile", &pfs]);
    assert!(r.ok(), "restore --pid-ns failed\n{}", w.report());
    let host: i32 = std::fs::read_to_string(&pf).unwrap_or_default().trim().parse().expect("pidfile");
    assert_ne!(host, w.pid, "the pid is taken on the host; the pidfile must hold the outside pid");
    let st = std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
    let nspid: Vec<String> = st.lines().find(|l| l.starts_with("NSpid:")).unwrap_or("").split_whitespace().skip(1).map(String::from).collect();
    assert_eq!(nspid, vec![host.to_string(), w.pid.to_string()], "root's NSpid\n{}", w.report());
    // the namespace's init (a stasis process) is the root's parent and our child
    let init = stat_of(host).map(|s| s.1).unwrap();
    assert!(wait_until(Duration::from_secs(2), || stat_of(init).is_some_and(|s| s.1 == std::process::id() as i32)));
    // dumping the restored root by its host pid: refused, saying to dump the init (which
    // works), not that it is unsupported
    let again = w.tmp.path.join("img-again");
    let (h, a) = (host.to_string(), again.clone().into_os_string());
    let r = w.stasis(&[std::ffi::OsStr::new("dump"), "-t".as_ref(), h.as_ref(), "-D".as_ref(), a.as_os_str()]);
    assert_clean_error(&r, &[&h, &format!("stasis dump -t {init}")], &w.report());
    assert!(!r.stderr.contains("not supported"), "{}", r.stderr);
    w.go();
    let ex = waitpid_timeout(init, EXIT_TIMEOUT).expect("init exit");
    w.kill_helpers();
    w.assert_pass(ex);
}

/// A process and its child in a network namespace of their own (loopback up, no other
/// interface, no socket at dump time): restored into a new network namespace with `lo`
/// up; the workload checks that and talks TCP over 127.0.0.1 inside it.
#[test]
fn tree_in_own_network_namespace() {
    let _t = serial();
    let mut w = Workload::start("netns", &[]);
    let kid: i32 = w.info("child").parse().unwrap();
    dump_and_restore_tree(&mut w, &[kid]);
    w.go_and_pass();
}

/// A child in a time namespace with clock offsets (its parent unshared it): restored in
/// a new time namespace with the same offsets; the workload compares the clocks.
#[test]
fn child_in_own_time_namespace() {
    let _t = serial();
    let mut w = Workload::start("timens", &[]);
    let kid: i32 = w.info("child").parse().unwrap();
    dump_and_restore_tree(&mut w, &[kid]);
    w.go_and_pass();
}

/// Two nested PID namespaces, each with its own mount namespace and /proc (nested
/// `unshare --fork --pid --mount-proc`): the outer init mounted /proc in its parent's
/// mount namespace before creating its own; after restore each mount namespace's /proc
/// shows the right PID namespace again (checked by the workload at every level).
#[test]
fn nested_pid_namespaces_with_their_own_proc() {
    let _t = serial();
    let mut w = Workload::start("pidns_nested", &[]);
    if direct() {
        w.go_and_pass();
        return;
    }
    let tree = host_tree(w.pid);
    assert_eq!(tree.len(), 4, "root, I1, I2, W: {tree:?}\n{}", w.report());
    dump_and_reap_tree(&mut w, &tree);
    w.restore();
    for p in &tree {
        assert!(pid_exists(*p), "{p} not restored\n{}", w.report());
    }
    w.go_and_pass();
}

/// Sockets inside a network namespace of the tree's own: a TCP listener, an established
/// connection with unread bytes, a bound UDP socket and an abstract unix listener are
/// dumped from inside the namespace and recreated in the new one; the workload and its
/// child use them after restore.
#[test]
fn sockets_in_own_network_namespace() {
    let _t = serial();
    let mut w = Workload::start("netns_sockets", &[]);
    let kid: i32 = w.info("child").parse().unwrap();
    if !direct() {
        dump_and_reap_tree(&mut w, &[kid]);
        // every socket of the root is recorded with its (non-host) namespace
        let img = inspect_json(&mut w);
        let fds = img["processes"][0]["fds"].as_array().cloned().unwrap_or_default();
        let socks: Vec<_> = fds.iter().filter(|f| ["tcp", "udp", "unix-bound"].contains(&f["kind"].as_str().unwrap_or(""))).collect();
        assert_eq!(socks.len(), 5, "listener, 2 connection ends, UDP, unix: {fds:?}\n{}", w.report());
        assert!(socks.iter().all(|f| f["net_ns"].as_u64().unwrap_or(0) != 0), "sockets without their namespace: {socks:?}");
        w.restore();
        assert!(pid_exists(kid), "child not restored\n{}", w.report());
    }
    w.go_and_pass();
}
