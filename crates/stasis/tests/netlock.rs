//! TCP connections across a dump: a `--leave-running` dump leaves every socket of the
//! live program exactly as it was, and the network lock (nftables) holds the dumped
//! connections' traffic back between a killing dump and the restore.

mod common;
use common::*;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

/// The sockets of this host's network namespace on `port`, as /proc/net/tcp{,6} show
/// them: (local, remote, state, tx_queue:rx_queue), sorted.
fn tcp_table(port: u16) -> Vec<String> {
    let hex = format!(":{port:04X}");
    let mut v = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for l in std::fs::read_to_string(f).unwrap_or_default().lines().skip(1) {
            let c: Vec<&str> = l.split_whitespace().collect();
            if c.len() > 4 && (c[1].ends_with(&hex) || c[2].ends_with(&hex)) {
                v.push(format!("{} {} st={} q={}", c[1], c[2], c[3], c[4]));
            }
        }
    }
    v.sort();
    v
}

fn port_of(w: &Workload) -> u16 {
    assert!(wait_until(Duration::from_secs(20), || !w.infos("port").is_empty()), "no INFO port=\n{}", w.report());
    w.info("port").parse().expect("port number")
}

fn read_exact_timeout(s: &mut TcpStream, n: usize) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).unwrap_or_else(|e| panic!("reading {n} bytes from the server: {e}"));
    b
}

/// A server (listener with SO_REUSEADDR, one accepted connection from the test holding
/// 5 unread bytes, options set on it) dumped with `--leave-running`: from inside, both
/// sockets' options (SO_REUSEADDR among them: TCP repair mode used to clear it), TCP
/// states, queue lengths and addresses are what they were; the host's socket table for
/// the port is the same (nothing added, nothing left in another state); the connection
/// works both ways; and once the server has exited, with the client still holding its
/// end (the server's side in FIN_WAIT2), the port can be bound again at once.
#[test]
fn leave_running_leaves_sockets_as_they_were() {
    let _t = serial();
    let mut w = Workload::new("tcp-live");
    let script = Path::new(WORKLOADS).join("tcp_live.py");
    w.spawn(&python3(), &[script.into_os_string(), w.work.clone().into_os_string()]);
    let port = port_of(&w);
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("connect to the workload");
    client.write_all(b"hello").unwrap();
    w.wait_ready();
    let before = tcp_table(port);
    assert_eq!(before.len(), 3, "listener + both ends of the connection: {before:?}");
    w.dump_leave_running();
    assert_eq!(tcp_table(port), before, "the port's sockets changed across the --leave-running dump\n{}", w.report());
    w.go();
    assert_eq!(read_exact_timeout(&mut client, 5), b"world", "{}", w.report());
    client.write_all(b"ping").unwrap();
    assert_eq!(read_exact_timeout(&mut client, 4), b"pong", "{}", w.report());
    let st = w.wait_exit(EXIT_TIMEOUT);
    w.assert_pass(st);
    // The server is gone, its side of the connection waits in FIN_WAIT2 for our FIN:
    // a new server (SO_REUSEADDR, as std sets it) must get the port at once.
    let fin_wait = tcp_table(port);
    let rebind = TcpListener::bind(("127.0.0.1", port));
    assert!(
        rebind.is_ok(),
        "binding port {port} again right after the server exited: {:?} (sockets: {fin_wait:?})\n{}",
        rebind.err(),
        w.report()
    );
    drop(client);
}
