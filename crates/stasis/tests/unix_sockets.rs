//! Unix sockets in every state, and signal-driven I/O (O_ASYNC, F_SETOWN_EX, F_SETSIG)
//! on any fd. Every check runs inside the restored workload.

mod common;
use common::*;

/// O_ASYNC with an owner that is the process, a thread, or the process group, with and
/// without F_SETSIG, on socket pairs and a pipe: read back with F_GETOWN_EX / F_GETSIG /
/// F_GETFL after restore, and each fd made readable raises its signal on the right
/// thread with the right si_fd; an fd with an owner but no O_ASYNC stays silent.
#[test]
fn signal_driven_io_owner_and_signal() {
    let _t = serial();
    roundtrip("fown", &[]);
}

/// The same after a --leave-running dump: the live process keeps its flags, owners and
/// signals (it is then killed, and the image restored and checked).
#[test]
fn signal_driven_io_after_leave_running_dump() {
    let _t = serial();
    skip_if_direct!();
    restore_after_leave_running("fown", &[]);
}

/// A --leave-running dump of workload NAME (its original untouched), the original
/// killed, the image restored and checked.
fn restore_after_leave_running(name: &str, args: &[&str]) {
    let mut w = Workload::start(name, args);
    w.dump_leave_running();
    w.kill_original();
    w.restore();
    w.go_and_pass();
}

/// A pipe whose read end has O_ASYNC and an owner (F_SETOWN): flag and owner come back
/// and a write raises SIGIO.
#[test]
fn pipe_with_o_async() {
    let _t = serial();
    roundtrip("pipe_async", &[]);
}

/// Starts workloads/SCRIPT as `python3 SCRIPT WORKDIR ARGS...` and waits for READY.
fn python_workload(label: &str, script: &str, args: &[std::ffi::OsString]) -> Workload {
    let mut w = Workload::new(label);
    let mut a = vec![std::path::Path::new(WORKLOADS).join(script).into_os_string(), w.work.clone().into_os_string()];
    a.extend_from_slice(args);
    w.spawn(&python3(), &a);
    w.wait_ready();
    w
}

/// A killing dump and restore, or a --leave-running dump, the original killed, and
/// a restore of the image.
fn dump_restore(w: &mut Workload, leave_running: bool) {
    if leave_running {
        w.dump_leave_running();
        w.kill_original();
        w.restore();
    } else {
        w.checkpoint_restore();
    }
}

fn unix_states(label: &str, leave_running: bool) {
    let _t = serial();
    // a datagram socket outside the tree (syslog's /dev/log): the workload connects to it
    let dir = TempDir::new(&format!("{label}-log"));
    let log_path = dir.path.join("log.sock");
    let log = std::os::unix::net::UnixDatagram::bind(&log_path).expect("bind the test's log socket");
    log.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut w = python_workload(label, "unix_states.py", &[log_path.into_os_string()]);
    dump_restore(&mut w, leave_running);
    w.go_and_pass();
    let mut buf = [0u8; 64];
    for want in [&b"before"[..], b"after"] {
        let n = log.recv(&mut buf).unwrap_or_else(|e| panic!("the log socket got no {:?}: {e}\n{}", String::from_utf8_lossy(want), w.report()));
        assert_eq!(&buf[..n], want, "log socket\n{}", w.report());
    }
}

/// Unix sockets in every state (idle, bound with datagrams queued from several senders,
/// connected one way, peer closed, accepted, seqpacket records, options, connected to a
/// datagram socket outside the tree): values read back inside the restored process, and
/// the outside socket receives what the restored process sends.
#[test]
fn unix_sockets_in_every_state() {
    unix_states("unix-states", false);
}

/// The same after a --leave-running dump: the live process is checked by the dump
/// itself leaving its queues unread (it is killed and the image restored).
#[test]
fn unix_sockets_in_every_state_after_leave_running_dump() {
    skip_if_direct!();
    unix_states("unix-states-lr", true);
}

fn dgram_queue(mode: &str) {
    let _t = serial();
    let mut w = python_workload("dgram-queue", "dgram_queue.py", &[mode.into()]);
    w.checkpoint_restore();
    w.go_and_pass();
}

/// Two empty datagrams queued on a datagram pair: both come back (the socket table
/// gives the first datagram's length, 0 here).
#[test]
fn empty_queued_datagrams() {
    dgram_queue("zero");
}

/// Three 6-byte datagrams queued: three datagrams come back, not one of 18 bytes.
#[test]
fn queued_datagrams_keep_their_boundaries() {
    dgram_queue("bytes");
}

/// Messages queued with their senders' credentials (SCM_CREDENTIALS) on a datagram
/// pair, a stream pair (one read per writer) and a named datagram socket: after restore
/// each is read with its sender's pid, uid and gid (explicit ones too); a sender that was
/// gone before the dump still reads as a pid that is not the tree's, with its uid and
/// gid; a pair without SO_PASSCRED carries none. The queues are sent once the processes
/// exist, so their pids can be named (workloads/creds.py).
#[test]
fn queued_messages_keep_their_senders_credentials() {
    let _t = serial();
    for leave in [false, true] {
        let w = python_workload("unix-creds", "creds.py", &[]);
        // the live tree reads them after a --leave-running dump too
        check_parent_and_child(w, leave);
    }
}

/// A workload and its child (INFO child=PID), dumped and restored as a tree, or (`leave`)
/// dumped with --leave-running, then checked.
fn check_parent_and_child(mut w: Workload, leave: bool) {
    let child: i32 = w.info("child").parse().unwrap();
    if leave {
        w.dump_leave_running();
    } else {
        dump_and_restore_tree(&mut w, &[child]);
    }
    w.go_and_pass();
}

/// Listening sockets whose files a root server gave to uid 1000 (mode 0660 in a
/// directory of that user; 0604 in root's directory, where that user could not create
/// it): after restore each file has its owner and mode again and a uid-1000 client
/// connects (made with the owner's filesystem ids and a matching umask; in root's
/// directory made as the restorer and then given that owner through an O_PATH fd).
#[test]
fn listener_socket_files_keep_owner_and_mode() {
    let _t = serial();
    let mut w = python_workload("unix-sockfile", "sockfile.py", &[]);
    w.checkpoint_restore();
    w.go_and_pass();
}

fn unix_listen(label: &str, args: &[&str]) -> Workload {
    python_workload(label, "unix_listen.py", &args.iter().map(std::ffi::OsString::from).collect::<Vec<_>>())
}

/// Listeners with connections of the tree waiting to be accepted: they wait again after
/// restore, in the same order, and the listener takes new clients.
#[test]
fn unix_listener_with_waiting_connections() {
    let _t = serial();
    let mut w = unix_listen("unix-listen", &[]);
    w.checkpoint_restore();
    w.go_and_pass();
}

/// A connection from outside the tree waiting on the listener: refused naming
/// --skip-in-flight (process untouched); with it the dump goes through, the outside
/// client is reset when the process dies, and the tree's own waiting connections come
/// back.
#[test]
fn unix_listener_with_outside_connection_needs_skip_in_flight() {
    let _t = serial();
    skip_if_direct!();
    let mut w = unix_listen("unix-listen-out", &[]);
    let mut outside = std::os::unix::net::UnixStream::connect(w.work.join("l.sock")).expect("connect from the test");
    let r = w.try_dump(&[]);
    let pid = w.pid.to_string();
    assert_clean_error(&r, &[&pid, "l.sock", "1 connections waiting to be accepted whose clients are outside", "--skip-in-flight"], &w.report());
    w.assert_running_untouched();
    let r = w.try_dump(&["--skip-in-flight"]);
    assert!(r.ok(), "dump --skip-in-flight failed\n{}", w.report());
    w.kill_original(); // reaps it (the dump killed it)
    outside.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 8];
    let got = std::io::Read::read(&mut outside, &mut b);
    assert!(matches!(got, Ok(0)) || got.is_err(), "the outside client was not reset: {got:?}");
    w.restore();
    w.go_and_pass();
}

/// A client of the tree waiting on the listener with bytes already sent (they sit in
/// the server's end, which has no fd before it is accepted): refused naming the pid, the
/// fd, the listener and --skip-in-flight, killing or not, the process untouched; with
/// --skip-in-flight the connection is dropped: after restore the client reads EOF and
/// gets EPIPE, and the listener holds only the other waiting connections, in order.
#[test]
fn unix_client_waiting_with_bytes_sent_needs_skip_in_flight() {
    let _t = serial();
    skip_if_direct!();
    let mut w = unix_listen("unix-listen-early", &["early"]);
    let pid = w.pid.to_string();
    for extra in [&[][..], &["--leave-running"]] {
        let r = w.try_dump(extra);
        assert_clean_error(&r, &[&pid, "fd ", "l.sock", "bytes already sent", "--skip-in-flight"], &w.report());
        w.assert_running_untouched();
    }
    w.dump_with(&["--skip-in-flight"]);
    w.restore();
    w.go_and_pass();
}

fn scm_rights(label: &str, leave_running: bool, fork: bool) {
    let _t = serial();
    let args: &[std::ffi::OsString] = if fork { &["fork".into()] } else { &[] };
    let mut w = python_workload(label, "scm_rights.py", args);
    if leave_running {
        // the live process first: its queues and fds in flight are untouched
        w.dump_leave_running();
        w.go_and_pass();
        // then the image (its stdout grew meanwhile)
        std::fs::remove_file(w.work.join("go")).unwrap();
        w.restore_with(&["--allow-changed-files"]);
    } else {
        w.checkpoint_restore();
    }
    w.go_and_pass();
}

/// File descriptors in flight (SCM_RIGHTS) on a stream and a datagram socket: a pipe
/// end, a file description also held by the process, a socket, a memfd — each comes
/// back as the same object, with the same message boundaries.
#[test]
fn file_descriptors_in_flight() {
    scm_rights("scm-rights", false, false);
}

/// The same with a child holding every socket and fd as well: the carriers of fds in
/// flight are found in the second process again (same descriptions) and their queue
/// still names the objects (it once came back naming object 0: an image that could
/// not be restored, after a killing dump).
#[test]
fn file_descriptors_in_flight_held_by_two_processes() {
    scm_rights("scm-rights-fork", false, true);
}

/// A --leave-running dump leaves the queues and the fds in flight to the live process
/// (it passes the same checks), and its image restores them again.
#[test]
fn file_descriptors_in_flight_after_leave_running_dump() {
    skip_if_direct!();
    scm_rights("scm-rights-lr", true, false);
}

fn unix_senders(label: &str, leave_running: bool) {
    let _t = serial();
    let mut w = python_workload(label, "unix_senders.py", &[]);
    dump_restore(&mut w, leave_running);
    // the socket bound to a relative path is bound privately, never relative to the
    // restorer's working directory
    let stray = std::env::current_dir().unwrap().join("rel.sock");
    let made = stray.symlink_metadata().is_ok();
    let _ = std::fs::remove_file(&stray);
    assert!(!made, "restore made {} on the host\n{}", stray.display(), w.report());
    w.go_and_pass();
}

/// Queued datagrams read back with recvfrom show the address each sender had: a path
/// (alive, or closed with its file and directory gone), a relative path, an abstract
/// name held by a socket of the tree, an autobind name, none; with credentials too; an
/// unnamed datagram pair stays unnamed, a pair of named sockets connected to each other
/// and a pair end bound later keep their names. Sockets whose files were unlinked (no
/// file comes back at their paths): a connection accepted from such a listener, a
/// client waiting on one, a datagram client connected to one, receivers with a pipe in
/// flight and with credentials. Datagram sockets connected to a peer that closed since:
/// queue, getpeername, then one ECONNREFUSED (workloads/unix_senders.py).
#[test]
fn queued_datagrams_keep_their_senders_addresses() {
    unix_senders("unix-senders", false);
}

/// The same after a --leave-running dump (the original is then killed).
#[test]
fn queued_datagrams_keep_their_senders_addresses_after_leave_running_dump() {
    skip_if_direct!();
    unix_senders("unix-senders-lr", true);
}

/// SOL_SOCKET options of unix sockets (timeouts, SO_RCVLOWAT, priority, mark, linger,
/// SO_PASSPIDFD, SO_PASSRIGHTS, buffer locks, a locked classic BPF filter) on a stream
/// pair, a datagram pair carrying an fd in flight, a listener, its client and the
/// accepted end: read back identically after restore from inside the workload; the
/// datagram queued before the filter is still there, new ones are dropped
/// (workloads/unix_opts.c). Killing dump, and --leave-running (the original killed,
/// the image restored and checked).
#[test]
fn unix_socket_options() {
    let _t = serial();
    roundtrip("unix_opts", &[]);
    skip_if_direct!();
    restore_after_leave_running("unix_opts", &[]);
}

/// Out-of-band bytes pending on unix stream pairs (workloads/unix_oob.c): in the middle
/// of the queue, next to read (at the mark), with SO_OOBINLINE, and superseded by a
/// second one. After restore reads stop at the mark, SIOCATMARK, recv(MSG_OOB) and the
/// in-line case read as before. Killing dump; --leave-running (the live original reads
/// them right, so the dump consumed nothing); and the image of that dump restored.
#[test]
fn unix_out_of_band_bytes() {
    let _t = serial();
    roundtrip("unix_oob", &[]);
    skip_if_direct!();
    let mut w = Workload::start("unix_oob", &[]);
    w.dump_leave_running();
    w.go_and_pass();
    restore_after_leave_running("unix_oob", &[]);
}

/// An out-of-band byte in a queue whose pieces carry their writers' credentials (the
/// reader has SO_PASSCRED): refused in one line naming the pid and fd; the process runs
/// on untouched and still reads it right (nothing consumed).
#[test]
fn unix_out_of_band_byte_with_credentials_is_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("unix_oob", &["creds"]);
    let r = w.try_dump(&[]);
    let pid = w.pid.to_string();
    assert_clean_error(&r, &[&pid, "out-of-band byte", "credentials"], &w.report());
    w.assert_running_untouched();
    w.go_and_pass();
}

/// SO_PEERCRED of connections and pairs made by tasks of different users
/// (workloads/unix_peercred.c): an accepted connection from a uid-1000 child and the
/// child's end (root's), the reverse through an abstract name, the child's own
/// socketpair, a new client of the restored listener — pid (the process that
/// connected, listened or made the pair), uid and gid read back from inside both
/// processes after restore, and from the live tree after a --leave-running dump.
#[test]
fn unix_peer_credentials() {
    let _t = serial();
    for leave in [false, true] {
        check_parent_and_child(Workload::start("unix_peercred", &[]), leave);
    }
}

/// Unix sockets bound to relative paths (workloads/unix_relative.c: a listener with an
/// accepted connection, a datagram socket with a datagram queued by name, a listener in
/// a subdirectory): their files come back in the directory they were bound in, with
/// owner and mode; getsockname shows the relative names; new clients and datagrams
/// reach them by those names. Killing dump; then --leave-running (the original passes,
/// exits, leaves stale files; the copy restored after it binds there again).
/// Unix sockets whose files were renamed after bind within their directory (a JVM's
/// attach listener: .java_pidN.tmp -> .java_pidN; workloads/unix_renamed.c): a listener
/// with an accepted and a waiting connection, a datagram socket with a datagram queued.
/// The files come back at their new names (owner, mode; nothing at the old ones),
/// getsockname shows the bind's names, clients reach them by the new names. Both modes
/// (the copy restored after the original removes the stale files it left). Before: the
/// files were taken for unlinked and the sockets came back without any (new clients:
/// ECONNREFUSED / ENOENT).
#[test]
fn renamed_socket_files_come_back_at_their_new_names() {
    let _t = serial();
    roundtrip_both_modes("unix_renamed", &[]);
}

#[test]
fn relative_path_sockets_keep_their_files() {
    let _t = serial();
    roundtrip_both_modes("unix_relative", &[]);
}
