//! Dump refusals: exit 1, one `stasis: error: ` line naming the pid, the
//! fd and the kind, and the process keeps running untouched (it later
//! completes its own checks and PASSes).

mod common;
use common::*;

/// A process already under ptrace (PTRACE_SEIZE by a helper) cannot be
/// frozen by stasis; it must say so and leave the process alone.
#[test]
fn dump_refuses_traced_process() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("basic", &[]);
    let tracer = workload_bin("tracer");
    let args = vec![w.work.clone().into_os_string(), w.pid.to_string().into()];
    let tpid = w.spawn_helper(&tracer, &args, "tracer");
    assert!(
        wait_until(std::time::Duration::from_secs(10), || w.helper_output("tracer").contains("READY")),
        "tracer did not attach: {}\n{}",
        w.helper_output("tracer"),
        w.report()
    );
    assert!(tasks_of(w.pid).iter().all(|t| t.2 == tpid), "workload is not traced by {tpid}: {:?}", tasks_of(w.pid));
    let pid = w.pid.to_string();
    let r = w.try_dump(&[]);
    let rep = w.report();
    assert_clean_error(&r, &[&pid, "trace"], &rep);
    // still traced by our tracer only, still running
    assert!(
        tasks_of(w.pid).iter().all(|t| t.2 == tpid && t.1 != 'T' && t.1 != 't'),
        "refused dump disturbed the traced process: {:?}\n{}",
        tasks_of(w.pid),
        w.report()
    );
    w.kill_helpers();
    w.assert_running_untouched();
    w.go_and_pass();
}

/// A pid that does not exist: clean error naming it, no panic.
#[test]
fn dump_nonexistent_pid() {
    let _t = serial();
    skip_if_direct!();
    let tmp = TempDir::new("nopid");
    let max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let pid = (300..max).rev().find(|p| !pid_exists(*p)).expect("a free pid");
    let img = tmp.path.join("img");
    let r = stasis(&tmp.path, &["dump", "-t", &pid.to_string(), "-D", img.to_str().unwrap()]);
    assert_clean_error(&r, &[&pid.to_string()], &"(nonexistent pid)");
    assert!(!pid_exists(pid));
    let r = stasis(&tmp.path, &["dump", "-t", "0", "-D", img.to_str().unwrap()]);
    assert_clean_error(&r, &[], &"(pid 0)");
}

/// Dumping into a directory that already holds an image is refused, the
/// process is untouched and the first image is still good.
#[test]
fn dump_refuses_dir_with_an_image() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("basic", &["result"]);
    w.dump_leave_running();
    let manifest = std::fs::read(w.img.join("manifest.img")).expect("manifest.img after dump");
    let r = w.try_dump(&[]);
    let rep = w.report();
    assert_clean_error(&r, &[], &rep);
    w.assert_running_untouched();
    assert_eq!(
        std::fs::read(w.img.join("manifest.img")).unwrap_or_default(),
        manifest,
        "the refused dump modified the existing image\n{}",
        w.report()
    );
    // the original finishes normally (verdict goes to WORKDIR/result so
    // stdout stays as it was at dump time)...
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = std::fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.contains("PASS"), "original after refused dump: {st:?} {res}\n{}", w.report());
    std::fs::remove_file(w.work.join("result")).unwrap();
    // ...and the first image still restores
    w.restore();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = std::fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.contains("PASS"), "restored: {st:?} result {res:?}\n{}", w.report());
}

/// For state the engine may not support yet: either the full cycle works
/// (restore, then the workload PASSes), or dump refuses with a clean
/// one-line error mentioning `needles` (plus the pid) and the process runs
/// on untouched and PASSes by itself.  Never anything in between.
/// With `with_fd`, the error must also name the workload's `INFO fd=N`.
fn supported_or_refused(name: &str, args: &[&str], in_syscall: &[i64], needles: &[&str], with_fd: bool) {
    let _t = serial();
    let mut w = Workload::start(name, args);
    if !in_syscall.is_empty() {
        let pid = w.pid;
        w.wait_in_syscall(pid, in_syscall);
    }
    let pid = w.pid.to_string();
    let fd = if with_fd { format!("fd {}", w.info("fd")) } else { String::new() };
    match w.dump_or_refusal() {
        None => w.restore(),
        Some(r) => {
            let mut n: Vec<&str> = vec![&pid];
            if with_fd {
                n.push(&fd);
            }
            n.extend_from_slice(needles);
            let rep = w.report();
            assert_clean_error(&r, &n, &rep);
            w.assert_running_untouched();
            eprintln!("note: {name} {args:?}: refused: {}", r.stderr.trim());
        }
    }
    w.go_and_pass();
}

/// epoll fd (and a task blocked in epoll_wait): supported or cleanly refused.
#[test]
fn epoll_supported_or_refused_cleanly() {
    supported_or_refused("blocking", &["epoll"], &[232, 281, 441], &["epoll"], false);
}

/// Mappings of a deleted file: supported or cleanly refused.
#[test]
fn deleted_file_mapping_supported_or_refused_cleanly() {
    supported_or_refused("files_unlinked", &["map"], &[], &["deleted"], false);
}

/// eventfd (counter 7): supported or cleanly refused.
#[test]
fn eventfd_supported_or_refused_cleanly() {
    supported_or_refused("fds_misc", &["eventfd"], &[], &[], true);
}

/// signalfd for a pending SIGUSR1: supported or cleanly refused.
#[test]
fn signalfd_supported_or_refused_cleanly() {
    supported_or_refused("fds_misc", &["signalfd"], &[], &[], true);
}

/// Armed periodic timerfd: supported or cleanly refused.
#[test]
fn timerfd_supported_or_refused_cleanly() {
    supported_or_refused("fds_misc", &["timerfd"], &[], &[], true);
}

/// inotify watch on WORKDIR (must report the creation of `go`).
#[test]
fn inotify_supported_or_refused_cleanly() {
    supported_or_refused("fds_misc", &["inotify"], &[], &[], true);
}

/// memfd with seals and a shared mapping of it (a refusal may name the
/// fd or the mapping, but must say memfd).
#[test]
fn memfd_supported_or_refused_cleanly() {
    supported_or_refused("fds_misc", &["memfd"], &[], &["memfd"], false);
}

/// flock(LOCK_EX) held on a file: after restore another open file
/// description must still be locked out (a silently dropped lock fails).
#[test]
fn flock_supported_or_refused_cleanly() {
    supported_or_refused("fds_misc", &["flock"], &[], &[], false);
}

/// POSIX record lock (F_SETLK) held on a byte range: after restore
/// F_OFD_GETLK from another description must see it, owned by our pid.
#[test]
fn posix_lock_supported_or_refused_cleanly() {
    supported_or_refused("fds_misc", &["posixlock"], &[], &[], false);
}

/// A named FIFO opened O_RDWR with queued data.
#[test]
fn fifo_supported_or_refused_cleanly() {
    supported_or_refused("fds_misc", &["fifo"], &[], &[], true);
}

/// A POSIX message queue with a notification registered (mq_notify: the kernel gives
/// it no way back) is refused naming the queue and the registering pid; the process
/// runs on and its queues (messages, priorities) are as they were.
#[test]
fn dump_refuses_posix_message_queue_notification() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("mqueue", &["notify"]);
    let _q = MqName(w.info("name"));
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&w.pid.to_string(), "POSIX message queue", "mq_notify", &format!("pid {}", w.pid)], &w.report());
    w.assert_running_untouched();
    w.go_and_pass();
}

/// A process keyring, or a thread keyring of one thread, cannot be made again by restore
/// (they were silently dropped: the restored process no longer found its keys): refused
/// naming the keyring (and the thread); the process keeps its key.
#[test]
fn dump_refuses_process_and_thread_keyrings() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("keyring", &["process"]);
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&w.pid.to_string(), "process keyring"], &w.report());
    w.assert_running_untouched();
    w.go_and_pass();
    let mut w = Workload::start("keyring", &["thread"]);
    let tid = w.info("tid");
    let r = w.try_dump(&["--leave-running"]);
    assert_clean_error(&r, &[&w.pid.to_string(), &format!("thread {tid}"), "thread keyring"], &w.report());
    w.assert_running_untouched();
    w.go_and_pass();
}

/// Secret memory (memfd_secret) cannot be read from outside the process: refused by
/// kind (it was once refused as a file "still linked elsewhere"); the process keeps it.
#[test]
fn dump_refuses_secret_memory() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("secretmem", &[]);
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&w.pid.to_string(), "memfd_secret"], &w.report());
    w.assert_running_untouched();
    w.go_and_pass();
}

/// O_ASYNC whose signals go to a process outside the dumped tree (here the test
/// itself) is refused naming the fd and the owner; the process runs on untouched.
#[test]
fn dump_refuses_o_async_owner_outside_the_tree() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("pipe_async", &["outside"]);
    let fd = w.info("fd");
    let pid = w.pid.to_string();
    let r = w.try_dump(&[]);
    let me = std::process::id().to_string();
    assert_clean_error(&r, &[&pid, &format!("fd {fd}"), "O_ASYNC", &format!("process {me}"), "outside the dumped tree"], &w.report());
    w.assert_running_untouched();
    w.go_and_pass();
}

/// An eBPF program attached as a socket's filter (SO_ATTACH_BPF) cannot be read back
/// (SO_GET_FILTER says EACCES): refused by name on a UDP socket and on a unix datagram
/// socket (it was silently dropped: the restored socket took every packet); the process
/// keeps its filter.
#[test]
fn dump_refuses_ebpf_socket_filters() {
    let _t = serial();
    skip_if_direct!();
    for kind in ["udp", "unix"] {
        let mut w = Workload::start("ebpf_filter", &[kind]);
        let r = w.try_dump(&["--leave-running"]);
        assert_clean_error(&r, &[&w.pid.to_string(), "eBPF", "SO_ATTACH_BPF"], &w.report());
        w.assert_running_untouched();
        w.go_and_pass();
    }
}
