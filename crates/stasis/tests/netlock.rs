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
    if direct() {
        return; // only meaningful with a dump
    }
    let _n = NoTablesLeft;
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
    assert!(stasis_tables().is_empty(), "a --leave-running dump left its network lock: {:?}", stasis_tables());
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

/// Names of the nftables tables stasis made (`inet stasis-...`) that exist now.
fn stasis_tables() -> Vec<String> {
    let out = std::process::Command::new("nft").args(["list", "tables"]).output().expect("run nft (apt-get install nftables)");
    assert!(out.status.success(), "nft list tables: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(" stasis-")).map(str::to_string).collect()
}

/// Removes the tables a failed test left (by exact name), so one failure does not
/// drop the packets of the next test.
struct NoTablesLeft;

impl Drop for NoTablesLeft {
    fn drop(&mut self) {
        for l in stasis_tables() {
            if let Some(name) = l.strip_prefix("table inet ") {
                let _ = std::process::Command::new("nft").args(["delete", "table", "inet", name]).status();
            }
        }
    }
}

/// The streaming server of tcp_stream.py with its client (outside the tree) running:
/// (workload, the client's helper label).
fn streaming_pair(name: &str, mode: &str) -> (Workload, &'static str) {
    let mut w = Workload::new(name);
    let script = Path::new(WORKLOADS).join("tcp_stream.py");
    let mut args = vec![script.into_os_string(), w.work.clone().into_os_string()];
    if !mode.is_empty() {
        args.push(OsString::from(mode));
    }
    w.spawn(&python3(), &args);
    let port = port_of(&w);
    let client = Path::new(WORKLOADS).join("tcp_stream_client.py");
    w.spawn_helper(&python3(), &[client.into_os_string(), OsString::from(port.to_string())], "client");
    w.wait_ready();
    // let both streams get going
    assert!(
        wait_until(Duration::from_secs(10), || last_progress(&w).is_some_and(|(s, r)| s > 20_000 && r > 20_000)),
        "the streams did not start\n{}\n--- client:\n{}",
        w.report(),
        w.helper_output("client")
    );
    (w, "client")
}

/// The client's last PROGRESS (sent, received).
fn last_progress(w: &Workload) -> Option<(u64, u64)> {
    let out = w.helper_output("client");
    let l = out.lines().rev().find(|l| l.starts_with("PROGRESS "))?;
    let num = |k: &str| l.split_whitespace().find_map(|f| f.strip_prefix(k)?.parse().ok());
    Some((num("sent=")?, num("recv=")?))
}

/// The client's DONE line: (sent, received), or its ERR line.
fn client_result(w: &Workload) -> std::result::Result<(u64, u64), String> {
    let out = w.helper_output("client");
    if let Some(e) = out.lines().find(|l| l.starts_with("ERR")) {
        return Err(e.to_string());
    }
    let l = out.lines().find(|l| l.starts_with("DONE ")).ok_or_else(|| "no DONE line".to_string())?;
    let num = |k: &str| l.split_whitespace().find_map(|f| f.strip_prefix(k)?.parse::<u64>().ok());
    Ok((num("sent=").unwrap_or(0), num("recv=").unwrap_or(0)))
}

/// Kill-dump a server streaming both ways with a client outside the tree, wait 2 s,
/// restore: with the network lock the client never sees a reset, the streams resume
/// (both sides received more after the restore), and when both sides end the stream
/// each received exactly the bytes the other sent, every byte in place (pattern
/// checked on both sides). The lock exists between dump and restore, and is gone after.
#[test]
fn lock_holds_connections_between_dump_and_restore() {
    let _t = serial();
    if direct() {
        return; // only meaningful with a dump
    }
    let _n = NoTablesLeft;
    assert!(stasis_tables().is_empty(), "stasis tables before the test: {:?}", stasis_tables());
    let (mut w, _) = streaming_pair("netlock-stream", "");
    w.dump();
    let locked = stasis_tables();
    assert_eq!(locked.len(), 1, "one lock table after the dump: {locked:?}\n{}", w.report());
    assert!(locked[0].starts_with(&format!("table inet stasis-{}-", w.pid)), "{locked:?}");
    std::thread::sleep(Duration::from_secs(2));
    let at_restore = last_progress(&w).unwrap();
    assert!(client_result(&w).is_err_and(|e| e == "no DONE line"), "client during the pause: {:?}", client_result(&w));
    w.restore();
    assert!(stasis_tables().is_empty(), "the lock is still there after the restore: {:?}\n{}", stasis_tables(), w.report());
    let moved = wait_until(Duration::from_secs(15), || last_progress(&w).is_some_and(|(s, r)| s > at_restore.0 + 20_000 && r > at_restore.1 + 20_000));
    assert!(
        moved,
        "the streams did not resume after the restore (client at restore {at_restore:?}, now {:?})\n{}\n--- client:\n{}",
        last_progress(&w),
        w.report(),
        w.helper_output("client")
    );
    w.go();
    let st = w.wait_exit(Duration::from_secs(30));
    w.assert_pass(st);
    assert!(wait_until(Duration::from_secs(10), || client_result(&w) != Err("no DONE line".into())));
    let (c_sent, c_recv) = client_result(&w).unwrap_or_else(|e| panic!("client: {e}\n{}", w.report()));
    let s_sent: u64 = w.info("sent").parse().unwrap();
    let s_recv: u64 = w.info("recv").parse().unwrap();
    assert_eq!((s_recv, c_recv), (c_sent, s_sent), "bytes received (server, client) vs sent by the other\n{}", w.report());
    eprintln!("server sent {s_sent} received {s_recv}; client sent {c_sent} received {c_recv}; at restore the client had sent {} received {}", at_restore.0, at_restore.1);
}

/// A restore that fails (a file the server holds open changed) leaves the lock as it
/// was: the client still waits, undisturbed; the retried restore (allowed to accept the
/// change) then removes it and the streams carry on without a byte lost.
#[test]
fn failed_restore_keeps_the_lock() {
    let _t = serial();
    if direct() {
        return; // only meaningful with a dump
    }
    let _n = NoTablesLeft;
    let (mut w, _) = streaming_pair("netlock-retry", "");
    w.dump();
    let locked = stasis_tables();
    assert_eq!(locked.len(), 1, "{}", w.report());
    std::fs::write(w.work.join("held.txt"), b"changed after the dump").unwrap();
    let r = w.try_restore(&[]);
    assert!(!r.ok(), "restore should refuse the changed file\n{}", w.report());
    assert!(!pid_exists(w.pid), "a failed restore left pid {}", w.pid);
    assert_eq!(stasis_tables(), locked, "a failed restore changed the lock\n{}", w.report());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(client_result(&w), Err("no DONE line".into()), "the client noticed the failed restore");
    let at_restore = last_progress(&w).unwrap();
    let img = w.img.clone();
    let pf = w.tmp.path.join("restored.pid");
    let r = w.try_restore_from(&img, &["--allow-changed-files", "-d", "--pidfile", pf.to_str().unwrap()]);
    assert!(r.ok(), "{}", w.report());
    assert!(wait_until(Duration::from_secs(2), || pid_exists(w.pid)));
    assert!(stasis_tables().is_empty(), "{:?}", stasis_tables());
    let moved = wait_until(Duration::from_secs(15), || last_progress(&w).is_some_and(|(s, r)| s > at_restore.0 + 20_000 && r > at_restore.1 + 20_000));
    assert!(moved, "the streams did not resume\n{}\n--- client:\n{}", w.report(), w.helper_output("client"));
    w.go();
    // the restored server is our child (subreaper): wait for it by pid
    let st = waitpid_timeout(w.pid, Duration::from_secs(30)).expect("the restored server did not exit");
    w.assert_pass(st);
    assert!(wait_until(Duration::from_secs(10), || client_result(&w) != Err("no DONE line".into())));
    let (c_sent, c_recv) = client_result(&w).unwrap_or_else(|e| panic!("client: {e}\n{}", w.report()));
    assert_eq!((w.info("recv").parse::<u64>().unwrap(), c_recv), (c_sent, w.info("sent").parse::<u64>().unwrap()));
}

/// The same without the lock (`--network-lock skip`): the client's packets reach a port
/// with no socket during the pause and it gets a reset. This is what the lock prevents.
#[test]
fn without_the_lock_the_peer_sees_a_reset() {
    let _t = serial();
    if direct() {
        return; // only meaningful with a dump
    }
    let _n = NoTablesLeft;
    let (mut w, _) = streaming_pair("netlock-skip", "");
    let r = w.try_dump(&["--network-lock", "skip"]);
    assert!(r.ok(), "{}", w.report());
    assert!(stasis_tables().is_empty(), "--network-lock skip made a table: {:?}", stasis_tables());
    let reset = wait_until(Duration::from_secs(5), || client_result(&w).is_err_and(|e| e.starts_with("ERR")));
    let res = client_result(&w);
    assert!(reset, "the client noticed nothing without the lock: {res:?}\n{}", w.helper_output("client"));
    let e = res.unwrap_err();
    assert!(e.contains("ConnectionReset") || e.contains("Errno 104"), "the client's error: {e}");
    eprintln!("without the lock, the client: {e}");
}

/// A dump refused after the lock was taken (a POSIX message queue with a notification
/// registered, found while
/// collecting fds) removes its table; the process runs on and its connection works (the server
/// and the client still exchange every byte).
#[test]
fn failed_dump_removes_its_lock() {
    let _t = serial();
    if direct() {
        return; // only meaningful with a dump
    }
    let _n = NoTablesLeft;
    let (mut w, _) = streaming_pair("netlock-failed", "async");
    let r = w.try_dump(&[]);
    assert!(!r.ok(), "the dump of a process with a POSIX message queue should be refused\n{}", w.report());
    assert!(r.stderr.contains("POSIX message queue"), "refusal: {}", r.stderr);
    assert!(stasis_tables().is_empty(), "a failed dump left its lock: {:?}", stasis_tables());
    w.assert_running_untouched();
    let before = last_progress(&w).unwrap();
    assert!(wait_until(Duration::from_secs(10), || last_progress(&w).is_some_and(|(s, r)| s > before.0 + 20_000 && r > before.1 + 20_000)));
    w.go();
    let st = w.wait_exit(Duration::from_secs(30));
    w.assert_pass(st);
    assert!(wait_until(Duration::from_secs(10), || client_result(&w) != Err("no DONE line".into())));
    let (c_sent, c_recv) = client_result(&w).unwrap_or_else(|e| panic!("client: {e}\n{}", w.report()));
    assert_eq!((w.info("recv").parse::<u64>().unwrap(), c_recv), (c_sent, w.info("sent").parse::<u64>().unwrap()));
}

/// `stasis network-unlock DIR` removes the lock of an image that will not be restored
/// (and says so when there is none left); restore --network-lock skip leaves a lock.
#[test]
fn network_unlock_removes_an_images_lock() {
    let _t = serial();
    if direct() {
        return; // only meaningful with a dump
    }
    let _n = NoTablesLeft;
    let (mut w, _) = streaming_pair("netlock-unlock", "");
    w.dump();
    let tables = stasis_tables();
    assert_eq!(tables.len(), 1, "{}", w.report());
    let img = w.img.clone();
    let r = w.stasis(&[std::ffi::OsStr::new("inspect"), img.as_os_str()]);
    let table = tables[0].trim_start_matches("table ");
    assert!(r.ok() && r.stdout.contains(&format!("network lock: nftables table {table},")), "inspect: {}", r.stdout);
    let r = w.stasis(&[std::ffi::OsStr::new("network-unlock"), img.as_os_str()]);
    assert!(r.ok() && r.stdout.contains("removed network lock"), "{}", w.report());
    assert!(stasis_tables().is_empty(), "{:?}", stasis_tables());
    // (-D DIR, as dump and restore take it, works too)
    let r = w.stasis(&[std::ffi::OsStr::new("network-unlock"), std::ffi::OsStr::new("-D"), img.as_os_str()]);
    assert!(r.ok() && r.stdout.contains("already removed"), "{}", w.report());
    // the client's packets now meet no socket
    assert!(wait_until(Duration::from_secs(5), || client_result(&w).is_err_and(|e| e.starts_with("ERR"))));
}

/// Without `nft` a dump that needs the lock is refused in one line naming the way out
/// (install nftables or --network-lock skip), and the process runs on untouched.
#[test]
fn missing_nft_is_one_clear_error() {
    let _t = serial();
    if direct() {
        return; // only meaningful with a dump
    }
    let _n = NoTablesLeft;
    let (mut w, _) = streaming_pair("netlock-no-nft", "");
    let out = std::process::Command::new(STASIS)
        .env("PATH", "/nonexistent")
        .args(["dump", "-t", &w.pid.to_string(), "-D"])
        .arg(&w.img)
        .output()
        .expect("run stasis");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("stasis: error: pid ") && err.contains("nftables") && err.contains("--network-lock skip"), "{err}");
    w.assert_running_untouched();
    let before = last_progress(&w).unwrap();
    assert!(wait_until(Duration::from_secs(10), || last_progress(&w).is_some_and(|(s, r)| s > before.0 + 10_000 && r > before.1 + 10_000)));
    eprintln!("{err}");
}

/// A client that connects while the server is away (between a killing dump and its
/// restore) is held back — its SYNs are dropped, so it retries — instead of refused,
/// and is served by the restored listener on the same connection attempt.
#[test]
fn new_clients_wait_for_the_restored_listener() {
    let _t = serial();
    if direct() {
        return; // only meaningful with a dump
    }
    let _n = NoTablesLeft;
    let mut w = Workload::new("netlock-listen");
    let script = Path::new(WORKLOADS).join("listen_echo.py");
    w.spawn(&python3(), &[script.into_os_string(), w.work.clone().into_os_string()]);
    w.wait_ready();
    let port: u16 = w.info("port").parse().unwrap();
    w.dump();
    let tables = stasis_tables();
    assert_eq!(tables.len(), 1, "a killing dump of a listener locks it: {tables:?}");
    let client = std::thread::spawn(move || -> std::io::Result<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(15))?;
        s.set_read_timeout(Some(Duration::from_secs(15)))?;
        std::io::Write::write_all(&mut s, b"hello\n")?;
        let mut b = [0u8; 16];
        let n = std::io::Read::read(&mut s, &mut b)?;
        Ok(String::from_utf8_lossy(&b[..n]).into_owned())
    });
    // the client's first SYN is dropped while the server is away
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!client.is_finished(), "the client gave up (connection refused?) while the server was away");
    w.restore();
    assert!(stasis_tables().is_empty(), "the restore left its lock: {:?}", stasis_tables());
    w.go();
    let got = client.join().unwrap();
    assert_eq!(got.as_ref().map(|s| s.as_str()).ok(), Some("hello\n"), "the held-back client: {got:?}\n{}", w.report());
    let st = w.wait_exit(EXIT_TIMEOUT);
    w.assert_pass(st);
}
