//! Netlink and packet sockets (`workloads/netsock.py`, in a network namespace of the
//! workload's own with only `lo`): every value is read back inside the restored
//! process, and the sockets are used (an RTM_GETLINK request answered, an RTM_NEWLINK
//! event received, a packet filtered and received, a netlink unicast between two user
//! sockets, memberships dropped as many times as they were added).

mod common;
use common::*;
use std::ffi::OsString;

fn spawn(w: &mut Workload, mode: &str, extra: &[&str]) {
    let script = std::path::Path::new(WORKLOADS).join("netsock.py");
    let mut args: Vec<OsString> = vec![script.into_os_string(), w.work.clone().into_os_string(), mode.into()];
    args.extend(extra.iter().map(OsString::from));
    w.spawn(&python3(), &args);
    w.wait_ready();
}

/// The image holds every socket as its own kind, recorded with the workload's namespace.
fn check_image(w: &mut Workload) {
    let img = inspect_json(w);
    let fds = img["processes"][0]["fds"].as_array().cloned().unwrap_or_default();
    let of = |k: &str| fds.iter().filter(|f| f["kind"] == k).cloned().collect::<Vec<_>>();
    let (nl, pk) = (of("netlink"), of("packet"));
    assert_eq!((nl.len(), pk.len()), (6, 3), "netlink and packet sockets in the image: {fds:?}\n{}", w.report());
    assert!(nl.iter().chain(&pk).all(|f| f["net_ns"].as_u64().unwrap_or(0) != 0), "sockets without their namespace: {fds:?}");
    let route = nl.iter().find(|f| f["protocol"] == "NETLINK_ROUTE").expect("no NETLINK_ROUTE socket");
    assert_eq!(route["portid"].as_u64(), Some(w.pid as u64), "the route socket's port id: {route}");
    assert_eq!(route["groups"], serde_json::json!([1, 33]), "the route socket's groups: {route}");
    let raw = pk.iter().find(|f| f["ifname"] == "lo").expect("no packet socket bound to lo");
    assert_eq!(raw["fanout"].as_u64(), Some(1234), "fanout group: {raw}");
}

/// Kill mode: dump, restore, the workload checks everything from inside.
#[test]
fn netlink_and_packet_sockets_come_back() {
    let _t = serial();
    let mut w = Workload::new("netsock");
    spawn(&mut w, "all", &[]);
    if !direct() {
        w.dump();
        check_image(&mut w);
        w.restore();
    }
    w.go_and_pass();
    // the packet queued at dump time is not restored (direct: it is simply read)
    assert_eq!(queued_seen(&w), if direct() { "1" } else { "0" }, "{}", w.report());
}

/// Whether the workload read the packet that was queued on its raw socket at dump time.
fn queued_seen(w: &Workload) -> String {
    std::fs::read_to_string(w.work.join("queued_seen")).unwrap_or_default()
}

/// Lets the workload go and waits for its verdict in WORKDIR/result: exit 0 and PASS.
fn go_and_pass_result(w: &mut Workload, who: &str) {
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = std::fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.trim() == "PASS", "{who}: {st:?} result {res:?}\n{}", w.report());
}

/// After a --leave-running original finished: clears its verdict and go file and
/// restores the image into a new process (waiting for go).
fn restore_again(w: &mut Workload) {
    std::fs::remove_file(w.work.join("result")).unwrap();
    std::fs::remove_file(w.work.join("go")).unwrap();
    w.restore();
}

/// --leave-running: the original runs on with every socket as it was (it passes the same
/// checks and still reads the packet queued at dump time), then the image restores into
/// a second process that passes them too (without that packet: queued packets are dropped).
#[test]
fn leave_running_then_restore() {
    let _t = serial();
    let mut w = Workload::new("netsock-leave");
    spawn(&mut w, "all", &["result"]);
    w.dump_leave_running();
    go_and_pass_result(&mut w, "original after dump --leave-running");
    assert_eq!(queued_seen(&w), "1", "the dump took the packet queued on the raw socket away from the original\n{}", w.report());
    if direct() {
        return;
    }
    check_image(&mut w);
    restore_again(&mut w);
    go_and_pass_result(&mut w, "restored copy");
    assert_eq!(queued_seen(&w), "0", "a queued packet came back with the restore\n{}", w.report());
}

fn refused(mode: &str, fd_key: &str, needles: &[&str]) {
    refused_in(spawn, mode, fd_key, needles)
}

fn refused_in(spawn: fn(&mut Workload, &str, &[&str]), mode: &str, fd_key: &str, needles: &[&str]) {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new(&format!("netsock-{mode}"));
    spawn(&mut w, mode, &[]);
    let fd = w.info(fd_key);
    let pid = w.pid.to_string();
    let r = w.try_dump(&[]);
    let mut all = vec![pid.as_str()];
    let fd_s = format!("fd {fd}");
    all.push(&fd_s);
    all.extend_from_slice(needles);
    assert_clean_error(&r, &all, &w.report());
    w.assert_running_untouched();
    // the reply is still queued, the ring still set up: checked by the workload
    w.go_and_pass();
}

/// A reply queued on a netlink socket cannot be queued again: one line, process untouched
/// (it reads the reply afterwards).
#[test]
fn queued_netlink_reply_is_refused() {
    refused("nlqueue", "route_fd", &["netlink socket (NETLINK_ROUTE)", "queued", "a reply of the kernel (message type 16, sequence 7)", "cannot be read without consuming it"]);
}

/// A multicast notification queued on a netlink socket: refused too (its queue cannot
/// be read without consuming it), naming the group; the process reads it afterwards.
#[test]
fn queued_netlink_notification_is_refused() {
    refused("nlevent", "route_fd", &["netlink socket (NETLINK_ROUTE)", "a notification of the kernel to multicast group 1 (message type 16)"]);
}

/// ICMP messages queued on a ping socket or a raw socket: refused (their queue cannot be
/// read without consuming it), naming the first message; the process reads both after.
#[test]
fn queued_ping_replies_are_refused() {
    refused("pingq", "queue_fd", &["ping (ICMP datagram) socket", "the first is 14 bytes from 127.0.0.1", "MSG_PEEK shows only its first"]);
}

#[test]
fn queued_raw_icmp_is_refused() {
    refused("rawq", "queue_fd", &["raw socket", "the first is 34 bytes from 127.0.0.1", "MSG_PEEK shows only its first"]);
}

/// mmap'ed transmit rings are not supported: one line, the ring is still there after.
#[test]
fn packet_tx_ring_is_refused() {
    refused("ring", "raw_fd", &["packet socket", "PACKET_TX_RING"]);
}

fn spawn_ring(w: &mut Workload, mode: &str, extra: &[&str]) {
    let script = std::path::Path::new(WORKLOADS).join("pktring.py");
    let mut args: Vec<OsString> = vec![script.into_os_string(), w.work.clone().into_os_string(), mode.into()];
    args.extend(extra.iter().map(OsString::from));
    w.spawn(&python3(), &args);
    w.wait_ready();
}

/// The image holds the ring: 16 frames, the kernel's next frame 2, the six frames the
/// program had not consumed (12..15, 0, 1), and the VMA mapping it.
fn check_ring_image(w: &mut Workload) {
    let img = inspect_json(w);
    let fds = img["processes"][0]["fds"].as_array().cloned().unwrap_or_default();
    let ring = fds.iter().find_map(|f| f.get("rx_ring").cloned()).unwrap_or_else(|| panic!("no packet socket with a ring: {fds:?}"));
    assert_eq!(ring, serde_json::json!({"frame_nr": 16, "head": 2, "frames": [0, 1, 12, 13, 14, 15]}), "{}", w.report());
    let vmas = img["processes"][0]["vmas"].as_array().cloned().unwrap_or_default();
    let addr: u64 = w.info("ring_addr").parse().unwrap();
    assert!(
        vmas.iter().any(|v| v["kind"] == "packet-ring" && v["start"] == format!("{addr:#x}") && v["size"] == 16384),
        "no packet-ring VMA at {addr:#x}: {vmas:?}"
    );
}

/// Kill mode, TPACKET_V2 and V1: after the restore the program reads the six frames it
/// had not consumed (contents and lengths) where it left them, then new packets arrive
/// in the frames it expects next (the kernel's ring position was moved to frame 2).
fn ring_comes_back(mode: &str) {
    let _t = serial();
    let mut w = Workload::new(&format!("pktring-{mode}"));
    spawn_ring(&mut w, mode, &[]);
    if !direct() {
        w.dump();
        check_ring_image(&mut w);
        w.restore();
    }
    w.go_and_pass();
    // the frames restore sent to move the ring are not counted (PACKET_STATISTICS)
    assert_eq!(ring_stats(&w), if direct() { "21 0" } else { "3 0" }, "{}", w.report());
}

/// PACKET_STATISTICS as the workload read it at its end: "packets drops".
fn ring_stats(w: &Workload) -> String {
    std::fs::read_to_string(w.work.join("ring_stats")).unwrap_or_default()
}

#[test]
fn packet_rx_ring_v2_comes_back() {
    ring_comes_back("v2");
}

#[test]
fn packet_rx_ring_v1_comes_back() {
    ring_comes_back("v1");
}

/// --leave-running: the original reads its frames and new ones through the ring as if
/// nothing happened (the dump's own mapping of the ring is gone), then the restored copy
/// does the same.
#[test]
fn packet_rx_ring_leave_running_then_restore() {
    let _t = serial();
    let mut w = Workload::new("pktring-leave");
    spawn_ring(&mut w, "v2", &["result"]);
    w.dump_leave_running();
    go_and_pass_result(&mut w, "original after dump --leave-running");
    assert_eq!(ring_stats(&w), "21 0", "the original's statistics\n{}", w.report());
    if direct() {
        return;
    }
    check_ring_image(&mut w);
    restore_again(&mut w);
    go_and_pass_result(&mut w, "restored copy");
    assert_eq!(ring_stats(&w), "3 0", "the restored copy's statistics\n{}", w.report());
}

/// A TPACKET_V3 ring (block-based: the kernel's current block is not readable): one
/// line naming the fd, the ring is still there after.
#[test]
fn packet_v3_ring_is_refused() {
    refused_in(spawn_ring, "v3", "ring_fd", &["packet socket", "TPACKET_V3 receive ring"]);
}

/// A ring of the host's namespace whose next frame is 1: the dump takes it, the restore
/// refuses (moving the ring there would send frames over the host's lo), naming the
/// fd and why, and leaves no process behind.
#[test]
fn packet_ring_host_namespace_moved_is_refused_at_restore() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("pktring-hostused");
    spawn_ring(&mut w, "hostns-used", &[]);
    let fd = w.info("ring_fd");
    w.dump();
    let r = w.try_restore(&["-d"]);
    assert_clean_error(&r, &[&format!("fd {fd}"), "packet socket", "next frame is 1", "host's"], &w.report());
    assert!(!pid_exists(w.pid), "a refused restore left pid {}\n{}", w.pid, w.report());
}

/// A ring in the host's network namespace that never received (next frame 0) comes
/// back without any frame sent.
#[test]
fn packet_rx_ring_host_namespace() {
    let _t = serial();
    let mut w = Workload::new("pktring-host");
    spawn_ring(&mut w, "hostns", &[]);
    if !direct() {
        w.dump();
        w.restore();
    }
    w.go_and_pass();
}

/// A fanout group steered by a BPF program (PACKET_FANOUT_CBPF): refused, the socket
/// stays in its group.
#[test]
fn bpf_fanout_is_refused() {
    refused("cbpf", "raw_fd", &["packet socket", "fanout group 99 of mode 6"]);
}

/// Netlink sockets of the host's namespace (`Object.net_ns` 0): the route socket comes
/// back with the pid as its port id and answers a request; a usersock pair talks again.
/// While a socket of the test holds the bound usersock port id, restore fails naming it
/// (and leaves no process behind); once it is closed, restore succeeds.
#[test]
fn host_namespace_port_id_taken_then_free() {
    let _t = serial();
    let mut w = Workload::new("netsock-host");
    spawn(&mut w, "host", &[]);
    let portid: u32 = w.info("user_portid").parse().unwrap();
    if !direct() {
        w.dump();
        let img = inspect_json(&mut w);
        let fds = img["processes"][0]["fds"].as_array().cloned().unwrap_or_default();
        let nl: Vec<_> = fds.iter().filter(|f| f["kind"] == "netlink").collect();
        assert!(nl.len() == 3 && nl.iter().all(|f| f["net_ns"] == 0), "netlink sockets of the host's namespace: {fds:?}");
        let squatter = usersock_bound_to(portid);
        let r = w.try_restore(&["-d"]);
        assert_clean_error(&r, &[&w.pid.to_string(), &format!("port id {portid}"), "taken"], &w.report());
        assert!(!pid_exists(w.pid), "a refused restore left pid {}\n{}", w.pid, w.report());
        drop(squatter);
        w.restore();
    }
    w.go_and_pass();
}

/// A NETLINK_USERSOCK socket of ours bound to `portid`.
fn usersock_bound_to(portid: u32) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the fd is new and ours.
    let s = unsafe { OwnedFd::from_raw_fd(libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 2)) };
    // SAFETY: sockaddr_nl is plain integers; all zeroes is a valid value.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as u16;
    a.nl_pid = portid;
    // SAFETY: a is a valid sockaddr_nl of the size given.
    let r = unsafe { libc::bind(s.as_raw_fd(), (&a as *const libc::sockaddr_nl).cast(), std::mem::size_of_val(&a) as u32) };
    assert_eq!(r, 0, "binding our usersock socket to port id {portid}: {}", std::io::Error::last_os_error());
    s
}
