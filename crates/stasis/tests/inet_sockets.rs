//! IP sockets (workloads/inet.c): options read back identically after restore, IPv6 and
//! v4-mapped addresses, ICMP ping / raw / UDP-Lite sockets, a connection shut down for
//! reading, a connection in SYN_SENT, listeners with connections waiting
//! (`dump --skip-in-flight`), `restore --tcp-close`, urgent data, and TCP states refused
//! by name.
//! Every check runs inside the workload; ports are the kernel's choice (bind to port 0),
//! so tests never collide with each other or with the host.

mod common;
use common::*;

/// Runs `inet MODE`, dumps (kill mode), restores, checks.
fn inet_roundtrip(mode: &str) {
    let _t = serial();
    roundtrip("inet", &[mode]);
}

/// IPv4 TCP listener, established connection (both ends) and UDP sockets with some 30
/// options set (keepalive and its TCP knobs, SO_LINGER, locked and inherited buffer
/// sizes and their lock bits, priority, mark, SO_BINDTODEVICE, timestamps, TOS, TTL,
/// freebind, transparent, multicast TTL/loop/interface, PMTU discovery, congestion
/// control, user timeout, MSS, window clamp, defer-accept, fast open, a classic BPF
/// filter locked with SO_LOCK_FILTER): every option reads back the same bytes, the
/// filter still filters and is still locked, queued bytes are read, all sockets work.
#[test]
fn ipv4_socket_options_read_back_identically() {
    inet_roundtrip("opts");
}

/// The same workload dumped with --leave-running: the live process finds every option,
/// queued byte and socket exactly as before (its checks run after the dump).
#[test]
fn leave_running_leaves_ipv4_sockets_untouched() {
    let _t = serial();
    skip_if_direct!();
    leave_running_then_pass(&["opts"], || {});
}

/// Starts `inet ARGS... result`, dumps it with --leave-running, lets it run its checks
/// (the verdict goes to WORKDIR/result), returns the workload once it exited with PASS.
fn leave_running_then_pass(args: &[&str], after_go: impl FnOnce()) -> Workload {
    let mut a = args.to_vec();
    a.push("result");
    let mut w = Workload::start("inet", &a);
    w.dump_leave_running();
    w.go();
    after_go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = std::fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.contains("PASS") && !res.contains("FAIL"), "original after the dump: {st:?} {res}\n{}", w.report());
    w
}

/// IPv6: a V6ONLY listener with traffic class and hop limit, an established connection
/// over ::1 (its client end was bound by connect: IPV6_V6ONLY stays off), and a
/// dual-stack UDP socket connected to a v4-mapped address (reaches an IPv4 socket).
#[test]
fn ipv6_and_v4_mapped_sockets() {
    inet_roundtrip("v6");
}

/// Sets net.ipv4.ping_group_range (host-wide) for the test, puts it back on drop.
struct PingGroups(String);

impl PingGroups {
    const PATH: &'static str = "/proc/sys/net/ipv4/ping_group_range";
    fn allow_root() -> PingGroups {
        let old = std::fs::read_to_string(Self::PATH).expect("ping_group_range");
        std::fs::write(Self::PATH, "0 0").expect("setting ping_group_range");
        PingGroups(old.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

impl Drop for PingGroups {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

/// ICMP ping sockets (IPv4 bound to echo id 4242, IPv6 connected to ::1), raw sockets
/// (ICMP with ICMP_FILTER, IPPROTO_RAW, UDP with IP_HDRINCL, ICMPv6 with ICMP6_FILTER),
/// UDP-Lite with checksum coverage: options read back, pings are answered, the raw ICMP
/// socket sees the replies, UDP-Lite datagrams arrive.
#[test]
fn ping_raw_and_udplite_sockets() {
    let _t = serial();
    let _g = PingGroups::allow_root();
    roundtrip("inet", &["kinds"]);
}

/// An established connection shut down for reading (SHUT_RD, an ESTABLISHED state with
/// RCV_SHUTDOWN): the bytes queued before are read, then end of file; writing works.
#[test]
fn connection_shut_down_for_reading() {
    inet_roundtrip("shutrd");
}

/// A listener whose accept queue is full (backlog 0) with a connection of ours, and a
/// socket stuck in SYN_SENT towards it: the waiting connection waits again after restore
/// (--skip-in-flight changes nothing for it: its client is ours and sent nothing), the
/// connecting socket connects again; the workload accepts the queued one, then the
/// connect completes once its SYN is sent again, and data flows.
#[test]
fn skip_in_flight_and_syn_sent() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("inet", &["synsent"]);
    w.dump_with(&["--skip-in-flight"]);
    w.restore();
    w.go_and_pass();
}

/// Connections waiting in accept queues whose clients are ours (workloads/inet.c
/// `acceptq`): an IPv4 listener with three (one from a forked child, one shut down for
/// writing), an IPv6 one with two. After a killing dump and restore each listener
/// accepts them in their order, each with its client's port, data flows both ways, the
/// clients kept their ports and options, nothing more waits.
#[test]
fn waiting_connections_of_the_tree_come_back_in_order() {
    let _t = serial();
    skip_if_direct!();
    roundtrip("inet", &["acceptq"]);
}

/// The same with --leave-running: the dump accepts nothing (the live original accepts
/// all five in order and passes its checks), then the image restores into a copy that
/// passes them too.
#[test]
fn leave_running_keeps_waiting_connections_and_restores_them() {
    let _t = serial();
    skip_if_direct!();
    leave_running_then_restore("inet", &["acceptq", "result"], &[]);
}

/// A waiting connection whose client already sent bytes (they sit in the server's end,
/// which only an accept reaches), and one whose client is outside the tree (this test):
/// each dump is refused in one line naming pid, fd, the addresses and --skip-in-flight,
/// and the process is left untouched; --skip-in-flight leaves them out and the dump
/// succeeds.
#[test]
fn waiting_connections_with_bytes_or_from_outside_are_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("inet", &["acceptq", "bytes"]);
    let (fd, pid) = (w.info("listener_fd"), w.pid.to_string());
    let lport = w.info("lport4");
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&pid, &format!("fd {fd} "), &format!("127.0.0.1:{lport}"), "holds 5 bytes", "--skip-in-flight"], &w.report());
    w.assert_running_untouched();
    assert!(!w.img.join("manifest.img").exists(), "a refused dump left an image\n{}", w.report());
    drop(w);
    let mut w = Workload::start("inet", &["acceptq"]);
    let (fd, pid) = (w.info("listener_fd"), w.pid.to_string());
    let lport: u16 = w.info("lport4").parse().unwrap();
    let outside = std::net::TcpStream::connect(("127.0.0.1", lport)).expect("connect from outside");
    let mine = outside.local_addr().unwrap().to_string();
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&pid, &format!("fd {fd} "), &mine, "not a socket of the dumped tree", "--skip-in-flight"], &w.report());
    w.assert_running_untouched();
    let r = w.try_dump(&["--leave-running", "--skip-in-flight"]);
    assert!(r.ok(), "dump --leave-running --skip-in-flight failed\n{}", w.report());
    w.assert_running_untouched();
}

/// --leave-running with --skip-in-flight: the live process keeps its queued connection
/// and its SYN_SENT socket untouched (it accepts the queued one, then the other
/// connects once its SYN is sent again).
#[test]
fn skip_in_flight_leave_running_keeps_the_queue() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("inet", &["synsent", "result"]);
    let r = w.try_dump(&["--leave-running", "--skip-in-flight"]);
    assert!(r.ok(), "dump --leave-running --skip-in-flight failed\n{}", w.report());
    w.assert_running_untouched();
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = std::fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.contains("PASS") && !res.contains("FAIL"), "original after the dump: {st:?} {res}\n{}", w.report());
}

/// restore --tcp-close: both ends of an established connection come back closed
/// (read returns 0, write EPIPE, POLLHUP, getpeername ENOTCONN), the client end on its
/// old port, options kept — and so after a second dump and restore of the restored
/// process.
#[test]
fn tcp_close_restores_connections_closed() {
    let _t = serial();
    skip_if_direct!(); // the checks describe the closed connection
    let mut w = Workload::start("inet", &["closed"]);
    w.dump();
    let img = w.img.clone();
    w.restore_from_with(&img, &["--tcp-close"]);
    // and once more, dumped as restored (a second generation kept them closed only
    // since their shutdown bits are saved: recv gave ENOTCONN; found by a helper)
    std::fs::remove_dir_all(&img).unwrap();
    w.dump_restored_again();
    w.go_and_pass();
}

/// A connection in CLOSE_WAIT to a peer outside the tree (this test): the peer's FIN
/// is not in the receive queue TCP_REPAIR restores, so restore sends it again as a
/// packet from the peer (raw socket) once repair mode is off. Inside: CLOSE_WAIT,
/// POLLRDHUP, the unread bytes then end of file, writing works; outside: the peer reads
/// what was written after restore, then end of file (sequence numbers right both ways).
#[test]
fn close_wait_connection_to_a_peer_outside() {
    close_wait_to_peer_outside("closewait");
}

/// A loopback connection closed both ways whose fds the program keeps (state CLOSE):
/// both come back reading end of file, POLLHUP|POLLRDHUP, EPIPE, no peer; both modes.
/// (They came back as fresh sockets — recv ENOTCONN — and one whose TCP_MAXSEG read
/// back the old connection's 32768 could not be restored at all: setsockopt EINVAL.
/// Found by a helper.)
#[test]
fn closed_connections_keep_their_end_of_file() {
    let _t = serial();
    roundtrip_both_modes("inet", &["finished"]);
}

/// The same once the program has read the bytes and the end of file (a server that
/// keeps the fd after recv returned 0: the dump took the read FIN for a byte still
/// queued and refused "4294967295 unread bytes"; found by a helper with a JVM and a
/// python threaded server).
#[test]
fn close_wait_with_the_end_of_file_read() {
    close_wait_to_peer_outside("closewait_eof");
}

/// After a --leave-running dump whose peer then closed and whose original was killed,
/// the restore warns that the connection's peer on this host is gone (it would
/// retransmit until it times out) and names --tcp-close (found by a helper: a Go
/// server's 8 keep-alive connections came back silently, retransmitting for minutes).
#[test]
fn restore_warns_of_connections_whose_peer_is_gone() {
    let _t = serial();
    skip_if_direct!();
    let (mut w, s, port) = with_closing_peer("closewait");
    w.dump_leave_running();
    drop(s);
    w.kill_original();
    w.restore_with(&["--allow-changed-files"]);
    let said = w.runs.last().cloned().unwrap_or_default();
    assert!(
        said.contains("have their peer on this host gone") && said.contains(&format!("-> 127.0.0.1:{port}")) && said.contains("--tcp-close"),
        "no warning naming the connection whose peer is gone:\n{said}"
    );
    w.kill_restored();
}

/// Workload `inet MODE PORT` connected to a peer of this test on 127.0.0.1:PORT that
/// sent "bye" and closed its side: the workload, the peer's socket, PORT.
fn with_closing_peer(mode: &str) -> (Workload, std::net::TcpStream, u16) {
    use std::io::Write;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = l.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.write_all(b"bye").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s
    });
    let w = Workload::start("inet", &[mode, &port.to_string()]);
    (w, peer.join().unwrap(), port)
}

fn close_wait_to_peer_outside(mode: &str) {
    use std::io::Read;
    let _t = serial();
    let (mut w, mut s, _) = with_closing_peer(mode);
    w.checkpoint_restore();
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    w.assert_pass(st);
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    assert!(r.is_ok() && got == b"reply", "the peer read {r:?} {:?} (want \"reply\" then end of file)\n{}", String::from_utf8_lossy(&got), w.report());
}

/// Both ends of a half-closed connection in the process: FIN_WAIT2 and CLOSE_WAIT come
/// back as such, bytes and ends of file are read, and the close completes (CLOSE).
#[test]
fn half_closed_connection_with_both_ends_inside() {
    inet_roundtrip("halfpair");
}

/// Both FINs exchanged, ours not yet acknowledged (in a network namespace of the tree's
/// own where an nftables rule drops the acknowledgment): LAST_ACK comes back as LAST_ACK
/// — the peer's FIN again, then our own — so the peer reads the unacknowledged bytes and
/// end of file, and the connection closes without a TIME_WAIT holding its port; CLOSING
/// (simultaneous close) comes back CLOSING and both ends read each other's bytes and end
/// of file. Values are checked inside the workload (inet.c lastack, closing).
#[test]
fn last_ack_and_closing_connections() {
    // without a checkpoint the namespace keeps its dropping rule: nothing could complete
    skip_if_direct!();
    inet_roundtrip("lastack");
    inet_roundtrip("closing");
}

/// sock tcphalf: a CLOSE_WAIT connection whose peer is an orphan (closed by the
/// process, FIN_WAIT2 in the kernel) comes back in CLOSE_WAIT too.
#[test]
fn close_wait_with_an_orphan_peer() {
    let _t = serial();
    roundtrip("sock", &["tcphalf"]);
}

/// Multicast memberships (read back per socket with MCAST_MSFILTER): a plain IPv4 join,
/// a source-specific one (include mode, 2 sources), one with a blocked source, an IPv6
/// join; every filter reads back the same, a datagram to the group arrives, a socket
/// that joined nothing is in no group.
#[test]
fn multicast_memberships() {
    inet_roundtrip("mcast");
}

/// Workload `inet MODE result`: its dump is refused in one line naming the pid, the fd
/// and `needles`; the process is left untouched, and afterwards passes its own checks.
fn refused_then_untouched(mode: &str, needles: &[&str]) {
    let _t = serial();
    let mut w = Workload::start("inet", &[mode, "result"]);
    if !direct() {
        let fd = w.info("fd");
        let r = w.try_dump(&[]);
        let pid = w.pid.to_string();
        let fd_ = format!("fd {fd} ");
        let all: Vec<&str> = [pid.as_str(), fd_.as_str()].into_iter().chain(needles.iter().copied()).collect();
        assert_clean_error(&r, &all, &w.report());
        w.assert_running_untouched();
    }
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = std::fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.contains("PASS") && !res.contains("FAIL"), "after the refused dump: {st:?} {res}\n{}", w.report());
}

/// Urgent data (inet.c urgent): four connections whose peer sent "ab", OOB "c", "de" —
/// nothing read, read up to the mark, SO_OOBINLINE, the urgent byte read already — one
/// over ::1 with 100000 bytes after the urgent one, one in CLOSE_WAIT after it. The
/// bytes before the mark come back with TCP_REPAIR, the rest as a segment from the peer
/// with the urgent pointer: after restore each shows the same POLLPRI, SIOCATMARK,
/// recv(MSG_OOB) and normal bytes, and data flows both ways after. That segment is sent
/// before the processes run (through the network lock), before the socket has its
/// owner again: the connection with F_SETOWN gets no second SIGURG.
#[test]
fn urgent_data_comes_back() {
    let _t = serial();
    let w = roundtrip("inet", &["urgent"]);
    let out = w.output();
    assert!(out.contains("NOTE sigurg=1"), "SIGURG count after restore (1 before the dump, none again)\n{}", w.report());
}

/// The same dumped with --leave-running: the dump only peeks (the urgent byte with
/// MSG_OOB|MSG_PEEK), so the live process reads everything as before, with no second
/// SIGURG.
#[test]
fn leave_running_keeps_urgent_data() {
    let _t = serial();
    skip_if_direct!();
    let w = leave_running_then_pass(&["urgent"], || {});
    let res = std::fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(res.contains("NOTE sigurg=1"), "SIGURG count of the original: {res}\n{}", w.report());
}

/// A connection shut down for writing (FIN_WAIT2) to a peer outside the tree (this
/// test): restored with its FIN after the send queue (one sequence number); the peer's
/// bytes queued before the dump and written after restore are read, then its end of
/// file; the connection ends CLOSE, so the peer acknowledged our FIN (sequence numbers
/// right), and the peer reads nothing but end of file from us.
#[test]
fn fin_wait2_connection_to_a_peer_outside() {
    use std::io::{Read, Write};
    let _t = serial();
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = l.local_addr().unwrap().port().to_string();
    let mut w = Workload::start("inet", &["finwait", &port]);
    let (mut s, _) = l.accept().expect("accept");
    s.write_all(b"from-peer").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    w.checkpoint_restore();
    w.go();
    s.write_all(b"more").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let st = w.wait_exit(EXIT_TIMEOUT);
    w.assert_pass(st);
    s.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
    let mut rest = Vec::new();
    let r = s.read_to_end(&mut rest);
    assert!(r.is_ok() && rest.is_empty(), "the peer read {r:?} {rest:?} instead of end of file\n{}", w.report());
}

/// The TIME_WAIT sockets of 127.0.0.1:`port` (/proc/net/tcp: state 06), as "local
/// peer" hex pairs.
fn time_waits(port: u16) -> Vec<String> {
    let t = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    t.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[3] == "06" && f[1].ends_with(&format!(":{port:04X}"))).then(|| format!("{} {}", f[1], f[2]))
        })
        .collect()
}

/// `ss -K`: destroys the TIME_WAIT sockets of local port `port`.
fn kill_time_waits(port: u16) {
    let _ = std::process::Command::new("ss").args(["-K", "-tan", "state", "time-wait", "sport", "=", &format!(":{port}")]).output();
}

/// A listener without SO_REUSEADDR whose port still has a connection in TIME_WAIT (the
/// process closed it first): the dump saw it (an `ending` connection, by both ends and
/// socket cookie), so restore removes it with SOCK_DESTROY and binds: the listener
/// reads back the same and accepts, and no TIME_WAIT is left on the port.
#[test]
fn listener_over_its_own_time_wait() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("inet", &["timewait"]);
    let port: u16 = w.info("port").parse().unwrap();
    assert_eq!(time_waits(port).len(), 1, "the workload left no TIME_WAIT\n{}", w.report());
    w.checkpoint_restore();
    assert!(time_waits(port).is_empty(), "TIME_WAIT left after restore: {:?}\n{}", time_waits(port), w.report());
    w.go_and_pass();
}

/// The same port with a TIME_WAIT the dump did not see (the image's own removed, and
/// another made by this test after a dump without network lock): restore leaves it alone and refuses in one
/// line that names the port and TIME_WAIT, and leaves no process behind.
#[test]
fn listener_over_a_foreign_time_wait_is_refused_clearly() {
    use std::io::Read;
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("inet", &["timewait"]);
    let port: u16 = w.info("port").parse().unwrap();
    // (no lock: it would hold back the SYNs of the test's own connection to the port)
    w.dump_with(&["--network-lock", "skip"]);
    kill_time_waits(port);
    assert!(time_waits(port).is_empty(), "ss -K left the TIME_WAIT\n{}", w.report());
    // ours: the accepted end closes first, the TIME_WAIT is on the listener's port
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).expect("binding the freed port");
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    drop(l.accept().unwrap().0);
    let _ = c.read(&mut [0u8; 1]);
    drop(c);
    drop(l);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let ours = time_waits(port);
    assert_eq!(ours.len(), 1, "no TIME_WAIT of the test's own\n{}", w.report());
    let r = w.try_restore(&["-d"]);
    let left = time_waits(port);
    kill_time_waits(port);
    assert_clean_error(&r, &["TIME_WAIT", &format!("binding 127.0.0.1:{port}"), "Address already in use"], &w.report());
    assert_eq!(left, ours, "restore removed a TIME_WAIT it had not seen\n{}", w.report());
    assert!(!pid_exists(w.pid), "a refused restore left pid {}\n{}", w.pid, w.report());
}

/// A listener with a TCP_MD5SIG key: refused (keys are not saved; a restored socket
/// without them would drop every signed segment), process untouched and still working.
#[test]
fn tcp_md5_keys_are_refused() {
    refused_then_untouched("md5", &["TCP_MD5SIG"]);
}

/// A thread blocked in connect() (SYN_SENT, its SYN dropped by a full accept queue;
/// dumped with --skip-in-flight): the connect is made again at restore, the thread's
/// restarted connect() waits for it and returns 0, connected to the listener.
#[test]
fn blocking_connect_in_progress() {
    let _t = serial();
    skip_if_direct!(); // (direct: fine too, but the point is the restarted syscall)
    let mut w = Workload::start("inet", &["synblock"]);
    let tid: i32 = w.info("connect_tid").parse().unwrap();
    w.wait_in_syscall(tid, &[42]); // connect
    w.dump_with(&["--skip-in-flight"]);
    w.restore();
    w.go_and_pass();
}

/// UDP sockets with datagrams queued (on 127.0.0.1: four from two senders, one empty;
/// on ::1: one): each is read after restore, in order, with its sender's address and
/// port (sent again from the sender's address through a raw socket); then nothing more.
#[test]
fn udp_queued_datagrams() {
    inet_roundtrip("udpq");
}

/// UDP sockets bound to the wildcard address with datagrams queued (the dump reads
/// each one's destination with IP_PKTINFO / IPV6_RECVPKTINFO, put back after): each
/// arrives after restore with its sender and the destination it had (127.0.0.1 or
/// 127.0.0.2, read by the program through its own IP_PKTINFO); a socket without
/// IP_PKTINFO still has it off; an IPv6 one gets its datagram.
#[test]
fn udp_queue_on_wildcard_address() {
    inet_roundtrip("udpwild");
}

/// --leave-running leaves the wildcard sockets' queues and IP_PKTINFO settings as they
/// were.
#[test]
fn leave_running_keeps_wildcard_udp_queues() {
    let _t = serial();
    skip_if_direct!();
    leave_running_then_pass(&["udpwild"], || {});
}

/// --leave-running with datagrams queued: the live process reads every one of them,
/// in order, afterwards (the dump only peeked).
#[test]
fn leave_running_keeps_udp_queues() {
    let _t = serial();
    skip_if_direct!();
    leave_running_then_pass(&["udpq"], || {});
}

/// --leave-running on connections in FIN_WAIT2 and CLOSE_WAIT with a peer outside:
/// repair mode on and off again leaves them working (data, end of file, final ACKs).
#[test]
fn leave_running_keeps_half_closed_connections() {
    use std::io::{Read, Write};
    let _t = serial();
    skip_if_direct!();
    // FIN_WAIT2
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = l.local_addr().unwrap().port().to_string();
    let peer = std::thread::spawn(move || l.accept().expect("accept").0);
    let mut w = Workload::start("inet", &["finwait", &port, "result"]);
    let mut s = peer.join().unwrap();
    s.write_all(b"from-peer").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    w.dump_leave_running();
    w.go();
    s.write_all(b"more").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = std::fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.contains("PASS") && !res.contains("FAIL"), "FIN_WAIT2 original: {st:?} {res}\n{}", w.report());
    drop(w);
    // CLOSE_WAIT
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = l.local_addr().unwrap().port().to_string();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = l.accept().expect("accept");
        s.write_all(b"bye").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s
    });
    let mut w = Workload::start("inet", &["closewait", &port, "result"]);
    let mut s = peer.join().unwrap();
    w.dump_leave_running();
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = std::fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.contains("PASS") && !res.contains("FAIL"), "CLOSE_WAIT original: {st:?} {res}\n{}", w.report());
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let r = s.read_to_end(&mut got);
    assert!(r.is_ok() && got == b"reply", "the peer read {r:?} {:?}\n{}", String::from_utf8_lossy(&got), w.report());
}

/// Socket options beyond `ipv4_socket_options_read_back_identically`'s (workloads/
/// sockopts_more.c: busy polling, incoming CPU, receive mark, pacing rate, SO_TXTIME,
/// IP_UNICAST_IF, IP_OPTIONS, IPv6 ancillary switches, hop count, address preferences,
/// TCP_SAVE_SYN, TCP_INQ, TCP_RTO_MIN_US, TCP_DELACK_MAX_US) on UDP, IPv6 UDP and a TCP
/// listener: each reads back the same bytes after a killing dump, and in the copy
/// restored after a --leave-running dump (whose original checks them first).
#[test]
fn more_socket_options_read_back_identically() {
    let _t = serial();
    roundtrip_both_modes("sockopts_more", &[]);
}
