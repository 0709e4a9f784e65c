//! SysV IPC and the UTS/IPC namespaces: a process in an IPC namespace of its own (every
//! object recreated with its id), one in a UTS namespace of its own (names restored, the
//! host's untouched), SysV segments of the host's namespace shared by a parent and child
//! (attached as they are if they outlived the dump, recreated if they did not).
//! Every check of the restored state runs inside the workloads (tests/workloads/ipc_*.c,
//! uts_ns.c).

mod common;
use common::*;

/// Removes the host-namespace segment with `key`, if any.
fn remove_key(key: i32) {
    // SAFETY: plain SysV calls with no buffers.
    unsafe {
        let id = libc::shmget(key, 0, 0);
        if id >= 0 {
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// Removes the segment at the end of the test whatever happened.
struct KeyGuard(i32);

impl Drop for KeyGuard {
    fn drop(&mut self) {
        remove_key(self.0);
    }
}

fn ns_link(pid: &str, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Shared memory (attached rw, read-only, destroyed while attached, not attached), two
/// message queues, a semaphore set and the namespace's limits: ids, keys, modes, owners,
/// contents, message order and types, values; a child in the same namespace.
#[test]
fn own_ipc_namespace_objects() {
    let _t = serial();
    let mut w = Workload::start("ipc_ns", &[]);
    let kid: i32 = w.info("child").parse().unwrap();
    let pid = w.pid.to_string();
    let before = ns_link(&pid, "ipc");
    assert_ne!(before, ns_link("self", "ipc"), "the workload did not unshare its IPC namespace\n{}", w.report());
    w.dump();
    if !direct() {
        let r = stasis(&w.img, &["inspect", w.img.to_str().unwrap()]);
        let out = &r.stdout;
        // the undo list is named (its adjustments cannot be read), the child has none
        let rep = w.report();
        let warned = |p: &str| rep.lines().any(|l| l.contains("SEM_UNDO") && l.contains(&format!("pid={p}")));
        assert!(warned(&pid) && !warned(&kid.to_string()), "dump warns of the SEM_UNDO list of {pid} only:\n{rep}");
        for k in ["sysv-shm", "sysv-msg", "sysv-sem", "ipc-ns", "0x57a50011"] {
            assert!(out.contains(k), "inspect does not show {k}:\n{out}");
        }
        reap_dumped(&w, &[kid]);
    }
    w.restore();
    if !direct() {
        assert_eq!(ns_link(&pid, "ipc"), ns_link(&kid.to_string(), "ipc"), "parent and child in different IPC namespaces");
        assert_ne!(ns_link(&pid, "ipc"), ns_link("self", "ipc"), "restored into the host's IPC namespace");
        // nothing leaked into the host's namespace
        // SAFETY: lookups only.
        let leaked = unsafe { libc::shmget(0x57a50001, 0, 0) >= 0 || libc::msgget(0x57a50011, 0) >= 0 };
        assert!(!leaked, "objects of the image appeared in the host's IPC namespace");
    }
    w.go_and_pass();
}

/// Host name and domain name of a UTS namespace of the tree's own (parent + child in
/// it); the host's names are untouched.
#[test]
fn own_uts_namespace() {
    let _t = serial();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let dom = std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap();
    let mut w = Workload::start("uts_ns", &[]);
    let kid: i32 = w.info("child").parse().unwrap();
    w.dump();
    if !direct() {
        reap_dumped(&w, &[kid]);
    }
    w.restore();
    if !direct() {
        let pid = w.pid.to_string();
        assert_ne!(ns_link(&pid, "uts"), ns_link("self", "uts"), "restored into the host's UTS namespace");
        assert_eq!(ns_link(&pid, "uts"), ns_link(&kid.to_string(), "uts"), "parent and child in different UTS namespaces");
    }
    w.go_and_pass();
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(), host, "the host's hostname changed");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/domainname").unwrap(), dom, "the host's domainname changed");
}

fn host_segment(mode: &str) {
    let _t = serial();
    skip_if_direct!();
    let key = 0x5d00_0000 | (std::process::id() as i32 & 0xffff);
    remove_key(key);
    let _g = KeyGuard(key);
    let ks = format!("{key:#x}");
    let mut w = Workload::start("ipc_host", &[&ks, mode]);
    let kid: i32 = w.info("child").parse().unwrap();
    let shmid: i32 = w.info("shmid").parse().unwrap();
    w.dump();
    reap_dumped(&w, &[kid]);
    // SAFETY: SysV calls on the segment the workload created; the attachment is ours
    // and detached before the block ends.
    unsafe {
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        assert_eq!(libc::shmctl(shmid, libc::IPC_STAT, &mut ds), 0, "the segment did not outlive the dump");
        assert_eq!(ds.shm_nattch, 0, "someone is still attached after the dump");
        if mode == "kept" {
            let p = libc::shmat(shmid, std::ptr::null(), 0) as *mut u64;
            assert_ne!(p as isize, -1);
            *p.add(512) = 0xfeed_face_cafe_f00d;
            libc::shmdt(p as *const libc::c_void);
        } else {
            assert_eq!(libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()), 0);
            assert!(libc::shmctl(shmid, libc::IPC_STAT, &mut ds) < 0, "segment {shmid} still exists");
        }
    }
    w.restore();
    assert!(pid_exists(kid), "child {kid} was not restored\n{}", w.report());
    w.go_and_pass();
}

/// The segment was removed after the dump and its key now names another segment:
/// restore refuses before creating any process, naming the key and the other segment;
/// once that one is gone, the restore recreates the original.
#[test]
fn host_segment_key_taken_is_refused() {
    let _t = serial();
    skip_if_direct!();
    let key = 0x5e00_0000 | (std::process::id() as i32 & 0xffff);
    remove_key(key);
    let _g = KeyGuard(key);
    let ks = format!("{key:#x}");
    let mut w = Workload::start("ipc_host", &[&ks, "gone"]);
    let kid: i32 = w.info("child").parse().unwrap();
    let shmid: i32 = w.info("shmid").parse().unwrap();
    w.dump();
    reap_dumped(&w, &[kid]);
    // SAFETY: SysV calls without buffers on the workload's segment and our own.
    let other = unsafe {
        assert_eq!(libc::shmctl(shmid, libc::IPC_RMID, std::ptr::null_mut()), 0);
        libc::shmget(key, 4096, libc::IPC_CREAT | libc::IPC_EXCL | 0o600)
    };
    assert!(other >= 0, "creating the other segment: {}", std::io::Error::last_os_error());
    let img = w.img.clone();
    let r = w.try_restore_from(&img, &["-d"]);
    let rep = w.report();
    assert_clean_error(&r, &[&format!("{key:#x}"), &other.to_string(), "ipcrm"], &rep);
    assert!(!pid_exists(w.pid) && !pid_exists(kid), "processes exist after a refused restore\n{rep}");
    remove_key(key);
    w.restore();
    w.go_and_pass();
}

/// The segment outlived the dump: attached as it is (a write made after the dump is seen).
#[test]
fn host_segment_still_there() {
    host_segment("kept");
}

/// The segment was removed after the dump: recreated with its id, key, size and the
/// contents it had at dump time.
#[test]
fn host_segment_recreated() {
    host_segment("gone");
}

/// A child that went back (setns) to stasis's UTS namespace under a parent in its own:
/// unsharing along the tree cannot rebuild that, so the dump refuses, naming the child
/// and the namespace, and both keep running.
#[test]
fn child_back_in_host_uts_namespace_is_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("uts_back", &[]);
    let kid = w.info("child");
    let r = w.try_dump(&[]);
    let rep = w.report();
    assert_clean_error(&r, &[&kid, "UTS namespace"], &rep);
    w.assert_running_untouched();
    w.go_and_pass();
}
