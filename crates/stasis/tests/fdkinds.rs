//! fd kinds that are not open files: O_PATH fds, pidfds, namespace fds, file leases;
//! and the clear refusals of io_uring, userfaultfd, a mangled aio ring, a pidfd of a process outside the
//! tree and a namespace fd of a namespace nobody of the tree is in.

mod common;
use common::*;

/// O_PATH fds of a regular file (and a dup sharing its description), of a directory and
/// of a symlink itself (O_PATH|O_NOFOLLOW): O_PATH kept, fstat says symlink, same inodes,
/// readlinkat(fd, "") gives the target, openat through the directory fd and a reopen
/// through /proc/self/fd read the content, FD_CLOEXEC per fd.
#[test]
fn opath_fds() {
    let _t = serial();
    roundtrip("fdkinds", &["opath"]);
}

/// Same, with a --leave-running dump first: the live process is unharmed and its checks
/// pass; then the image restores.
#[test]
fn opath_fds_leave_running() {
    let _t = serial();
    let mut w = Workload::start("fdkinds", &["opath"]);
    w.dump_leave_running();
    w.assert_running_untouched();
    w.go_and_pass();
}

/// pidfds: of a running child (watched by an epoll, and a pidfd_getfd copy), of ourselves
/// with PIDFD_THREAD|PIDFD_NONBLOCK (not cloexec), of a zombie child, of a reaped helper:
/// fdinfo Pid, flags, readability; pidfd_send_signal + epoll + waitid(P_PIDFD) on the
/// restored child; waitid(P_PIDFD) gives the zombie's exit status 7; ESRCH for the
/// reaped one.
#[test]
fn pidfds() {
    let _t = serial();
    let mut w = Workload::start("fdkinds", &["pidfd"]);
    let kid: i32 = w.info("kid").parse().unwrap();
    dump_and_restore_tree(&mut w, &[kid]);
    w.go_and_pass();
}

/// The same pidfds after a --leave-running dump: the live tree is unharmed.
#[test]
fn pidfds_leave_running() {
    let _t = serial();
    let mut w = Workload::start("fdkinds", &["pidfd"]);
    w.dump_leave_running();
    w.assert_running_untouched();
    w.go_and_pass();
}

/// Namespace fds of our own namespaces (net, uts, ipc, mnt, pid, cgroup: same inodes
/// as /proc/self/ns/*, NS_GET_NSTYPE, FD_CLOEXEC) and of a child's own UTS namespace:
/// after restore it is the restored child's namespace, and setns() with it gives
/// hostname "fdk-child".
#[test]
fn namespace_fds() {
    let _t = serial();
    let mut w = Workload::start("fdkinds", &["nsfd"]);
    let kid: i32 = w.info("kid").parse().unwrap();
    dump_and_restore_tree(&mut w, &[kid]);
    w.go_and_pass();
}

/// File leases: a read lease with F_SETSIG SIGRTMIN+2 and a write lease are held again
/// (F_GETLEASE, F_GETSIG), and an open for writing breaks the read lease: the signal
/// arrives with si_fd = the fd, and the opener proceeds after F_UNLCK.
#[test]
fn file_leases() {
    let _t = serial();
    roundtrip("fdkinds", &["lease"]);
}

/// The leases, namespace fds and fanotify marks after a --leave-running dump: the live
/// process still holds its leases (a lease break still signals it), its namespace fds
/// and marks, and passes the same checks.
#[test]
fn leases_nsfds_fanotify_leave_running() {
    let _t = serial();
    for mode in ["lease", "nsfd", "fanotify"] {
        let mut w = Workload::start("fdkinds", &[mode]);
        w.dump_leave_running();
        w.assert_running_untouched();
        w.go_and_pass();
    }
}

/// fanotify: a group's flags and its inode (file, directory with FAN_EVENT_ON_CHILD,
/// an ignored mask surviving modification), mount and filesystem marks read back the
/// same in fdinfo, and a write after restore is reported with an event fd of the file.
#[test]
fn fanotify_marks() {
    let _t = serial();
    roundtrip("fdkinds", &["fanotify"]);
}

/// A real program: CPython's asyncio with PidfdChildWatcher waits for a `sleep` child
/// through a pidfd in its epoll; after restore a SIGTERM sent through a second pidfd
/// ends the child and the loop sees it exit (returncode -15).
#[test]
fn python_asyncio_pidfd_child_watcher() {
    let _t = serial();
    let mut w = Workload::new("py-pidfd");
    let script = std::path::Path::new(WORKLOADS).join("real_pidfd_watcher.py");
    w.spawn(&python3(), &[script.into_os_string(), w.work.clone().into_os_string()]);
    w.wait_ready();
    let kid: i32 = w.info("kid").parse().unwrap();
    dump_and_restore_tree(&mut w, &[kid]);
    w.go_and_pass();
}

/// POSIX message queues (workloads/mqueue.c: a named queue with messages of two
/// priorities and a second, write-only non-blocking description; an unlinked queue with
/// a message). Killing dump: the queue is still there (the dump put every message back)
/// and is opened as it is; then the same once the queue is gone (a reboot, another
/// host): made again from the image — attributes, mode, messages in order; and after a
/// --leave-running dump (the original read and removed it): made again too.
#[test]
fn posix_message_queues() {
    let _t = serial();
    skip_if_direct!();
    for gone in [false, true] {
        let mut w = Workload::start("mqueue", &[]);
        let q = MqName(w.info("name"));
        w.dump();
        let img = inspect_json(&mut w);
        let held: Vec<u64> = img["processes"][0]["fds"].as_array().unwrap().iter().filter(|f| f["kind"] == "mqueue").map(|f| f["queued_messages"].as_u64().unwrap()).collect();
        assert_eq!(held.len(), 3, "the image's queue descriptions: {held:?}");
        assert!(held.contains(&3) && held.contains(&1), "messages in the image: {held:?}");
        if gone {
            drop(MqName(q.0.clone()));
        }
        w.restore();
        w.go_and_pass();
    }
    let mut w = Workload::start("mqueue", &[]);
    let _q = MqName(w.info("name"));
    assert!(w.leave_running_then_restore());
    w.go_and_pass();
}

/// A refusal at dump: one line naming the pid, the fd and `needles`; the process runs
/// on untouched and passes its checks.
fn refused(mode: &str, needles: &[&str]) {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("fdkinds", &[mode]);
    let pid = w.pid.to_string();
    let fd = format!("fd {}", w.info("fd"));
    let r = w.try_dump(&[]);
    let mut n = vec![pid.as_str(), fd.as_str()];
    n.extend_from_slice(needles);
    assert_clean_error(&r, &n, &w.report());
    w.assert_running_untouched();
    w.go_and_pass();
}

#[test]
fn dump_refuses_io_uring() {
    refused("iouring", &["io_uring"]);
}

/// An inotify watch on a file removed while an fd keeps it: refused naming the path.
#[test]
fn dump_refuses_inotify_watch_of_removed_file() {
    refused("inotify_removed", &["inotify", "gone was removed"]);
}

/// An aio context (io_setup) whose ring header the program overwrote: refused naming
/// the context id (aio contexts themselves are saved: tests/aio.rs).
#[test]
fn dump_refuses_aio_ring_with_foreign_header() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("fdkinds", &["aio"]);
    let pid = w.pid.to_string();
    let ring = format!("aio context 0x{}", w.info("ring"));
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&pid, &ring, "overwrote"], &w.report());
    w.assert_running_untouched();
    w.go_and_pass();
}

#[test]
fn dump_refuses_userfaultfd() {
    refused("uffd", &["userfaultfd"]);
}

#[test]
fn dump_refuses_pidfd_of_outside_process() {
    refused("pidfd_outside", &["pidfd", "outside the dumped tree"]);
}

#[test]
fn dump_refuses_namespace_fd_of_foreign_namespace() {
    refused("nsfd_foreign", &["namespace", "uts:["]);
}
