//! File descriptors: regular files, devices, deleted files, pipes, stdout.

mod common;
use common::*;

/// fd numbers (gap, fd 1000), access modes, O_APPEND, O_NONBLOCK,
/// FD_CLOEXEC per fd, offsets, shared vs separate file descriptions,
/// /dev/null, /dev/zero, /dev/urandom, a directory fd, stdin /dev/null and
/// stdout's offset.
#[test]
fn fd_table_offsets_flags_sharing() {
    let _t = serial();
    let w = roundtrip("files_regular", &[]);
    let log = std::fs::read_to_string(w.work.join("log.txt")).unwrap_or_default();
    assert_eq!(log, "first\nsecond\n", "log.txt after the run\n{}", w.report());
}

/// A file unlinked while open (two descriptions on it): content, offsets,
/// nlink 0 and the shared inode come back.
#[test]
fn unlinked_open_file() {
    let _t = serial();
    let w = roundtrip("files_unlinked", &[]);
    assert!(!w.work.join("ghost.bin").exists(), "restore must not leave the deleted file linked\n{}", w.report());
}

/// Shared and private mappings of a file that was deleted (fd closed).
// The engine refuses this cleanly for now ("VMA ... maps deleted file ...:
// not supported yet"); remove the ignore once it supports it.
#[test]
fn unlinked_file_mappings() {
    let _t = serial();
    let w = roundtrip("files_unlinked", &["map"]);
    assert!(!w.work.join("ghost-map.bin").exists(), "restore must not leave the deleted file linked\n{}", w.report());
}

/// A pipe with both ends here and 3000 unread bytes (in order, complete,
/// capacity and flags kept).
#[test]
fn pipe_with_unread_data() {
    let _t = serial();
    roundtrip("files_pipe", &[]);
}

/// Plus a pipe whose write end was closed everywhere: its read end holds 5
/// bytes, then EOF.  (A dump that cannot tell "closed" from "held by
/// another process" refuses this one.)
#[test]
fn pipe_whose_writer_is_gone() {
    let _t = serial();
    roundtrip("files_pipe", &["eof"]);
}

/// stdout is a regular file: what the workload printed before the dump is
/// still there and new output is appended after it (also asserted for
/// every workload by assert_pass: READY exactly once, no NUL bytes).
#[test]
fn stdout_offset_kept() {
    let _t = serial();
    let w = roundtrip("basic", &[]);
    let out = w.output();
    let ready = out.find("READY\n").expect("READY");
    let pass = out.find("PASS\n").expect("PASS");
    assert!(ready < pass, "PASS must come after READY\n{}", w.report());
    assert!(out.starts_with("INFO comm="), "the beginning of stdout was overwritten\n{}", w.report());
}

/// eventfd: counter 7 (and one above 32 bits), O_NONBLOCK and FD_CLOEXEC
/// per fd, a dup sharing the counter, an EFD_SEMAPHORE one reading 1 at a
/// time, an empty blocking one.
#[test]
fn eventfd_counter_flags_and_dup() {
    let _t = serial();
    roundtrip("fds_misc", &["eventfd"]);
}

/// signalfd: the mask (fdinfo), flags, and the pending signals read through
/// it in order with their siginfo (SI_TKILL, SI_QUEUE values); a second
/// signalfd reads only its own signal; a signal sent after restore.
#[test]
fn signalfd_mask_and_pending_signals() {
    let _t = serial();
    roundtrip("fds_misc", &["signalfd"]);
}

/// timerfd: remaining time of relative timers (time between dump and
/// restore does not count), the deadline of an absolute CLOCK_REALTIME one
/// with its settime flags, unread expirations (one-shot and periodic),
/// clocks, a disarmed one with an interval, flags.
#[test]
fn timerfd_remaining_time_and_ticks() {
    let _t = serial();
    roundtrip("fds_misc", &["timerfd"]);
}

/// epoll: items (tfd, events, data) identical in fdinfo: level and edge
/// triggered, a fired EPOLLONESHOT, EPOLLEXCLUSIVE, a dup of a registered
/// fd, a nested epoll; epoll_wait delivers the expected data words, and
/// EPOLL_CTL_MOD/DEL work by the process's fd numbers.
#[test]
fn epoll_items_and_delivered_data() {
    let _t = serial();
    roundtrip("fds_misc", &["epoll"]);
}

/// epoll items registered under fd numbers that were closed afterwards while dups keep
/// their files (one number reused by another file): both still delivered, fdinfo names
/// the old numbers, the reused number still holds its file with FD_CLOEXEC and the other
/// is closed again (was refused). Killing and --leave-running dumps.
#[test]
fn epoll_items_of_closed_fd_numbers() {
    let _t = serial();
    roundtrip("fds_misc", &["epoll_closed"]);
}

#[test]
fn epoll_items_of_closed_fd_numbers_leave_running() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("fds_misc", &["epoll_closed"]);
    w.dump_leave_running();
    w.kill_original();
    w.restore();
    w.go_and_pass();
}

/// inotify: watches (same watch descriptors, masks with IN_ONESHOT and
/// IN_EXCL_UNLINK) report events after restore; flags.
#[test]
fn inotify_watches_and_descriptors() {
    let _t = serial();
    roundtrip("fds_misc", &["inotify"]);
}

/// An O_DIRECT fd keeps its flag and offset, and direct reads still work.
#[test]
fn o_direct_fd() {
    let _t = serial();
    roundtrip("odirect", &[]);
}

/// A unix socketpair with both ends in the process and 5 unread bytes: the bytes are
/// still there to read after restore.
#[test]
fn unix_socketpair_with_queued_bytes() {
    let _t = serial();
    roundtrip("sock", &["unix"]);
}

/// Stream, datagram and seqpacket socket pairs: queues both ways, O_NONBLOCK, a
/// shut-down end, and new traffic after restore.
#[test]
fn unix_socketpairs_of_every_type() {
    let _t = serial();
    roundtrip("socketpair", &[]);
}

/// Sockets recreated from their addresses: a TCP listener (accepts a new client after
/// restore, same port, options and flags), a bound UDP socket (receives a datagram sent
/// to itself), a unix listener bound to a path (accepts a new client), and an
/// established TCP connection with unread bytes both ways (TCP_REPAIR, no handshake).
#[test]
fn listening_and_bound_sockets() {
    for mode in ["tcp", "udp", "unixbound", "tcpconn"] {
        let _t = serial();
        roundtrip("sock", &[mode]);
    }
}

/// Pipes in packet mode (O_DIRECT; workloads/pipe_packets.c): buffered packets come
/// back one per read (a short read still drops the rest of a packet), plain bytes
/// after them in one read, the ends keep O_DIRECT and new writes are packets; a plain
/// pipe stays plain. Killing dump; and the copy restored after a --leave-running dump
/// whose original read them first (tee copies, nothing consumed).
#[test]
fn packet_mode_pipes_keep_their_packets() {
    let _t = serial();
    roundtrip("pipe_packets", &[]);
    let mut w = Workload::start("pipe_packets", &[]);
    if w.leave_running_then_restore() {
        w.go_and_pass();
    }
}
