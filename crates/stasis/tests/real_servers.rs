//! Real servers nobody here wrote (Debian's redis-server, nginx and PostgreSQL) with
//! clients outside the dumped tree (the test itself) holding TCP and unix-socket
//! connections across dumps; every check is on values the servers return.

mod common;
use common::*;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const REDIS: &str = "/usr/bin/redis-server";

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// A RESP connection to redis.
struct Redis {
    r: BufReader<TcpStream>,
}

impl Redis {
    fn connect(port: u16) -> std::io::Result<Redis> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Redis { r: BufReader::new(s) })
    }

    /// One command, its reply: `+OK`, `:1`, `-ERR ...`, the bulk string's text, or `(nil)`.
    fn cmd(&mut self, args: &[&str]) -> String {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req += &format!("${}\r\n{a}\r\n", a.len());
        }
        self.r.get_mut().write_all(req.as_bytes()).unwrap_or_else(|e| panic!("redis {args:?}: {e}"));
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap_or_else(|e| panic!("redis {args:?}: reading the reply: {e}"));
        let line = line.trim_end().to_string();
        match line.strip_prefix('$').map(|n| n.parse::<i64>()) {
            Some(Ok(-1)) => "(nil)".into(),
            Some(Ok(n)) => {
                let mut b = vec![0u8; n as usize + 2];
                self.r.read_exact(&mut b).unwrap_or_else(|e| panic!("redis {args:?}: reading the bulk reply: {e}"));
                String::from_utf8_lossy(&b[..n as usize]).into_owned()
            }
            _ => line,
        }
    }
}

/// redis-server on a free port of 127.0.0.1, nothing saved to disk; waits until it
/// answers PING.
fn start_redis(w: &mut Workload, port: u16) {
    assert!(Path::new(REDIS).exists(), "redis-server not installed (apt-get install redis-server)");
    let args: Vec<OsString> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dir",
    ]
    .iter()
    .map(OsString::from)
    .chain([w.work.clone().into_os_string()])
    .collect();
    w.spawn(Path::new(REDIS), &args);
    let up = wait_until(Duration::from_secs(20), || Redis::connect(port).is_ok_and(|mut r| r.cmd(&["PING"]) == "+PONG"));
    assert!(up, "redis did not answer on port {port}\n{}", w.report());
}

/// A client (the test) holds one connection to redis across a `--leave-running` dump,
/// then a killing dump (network lock), a 2 s pause and a restore: on the same
/// connection it reads back every key written before either dump, and writes after the
/// restore work; a new client connects too. Then the restored redis is killed with the
/// client still connected and a new redis gets the port at once (the restored
/// connection carries SO_REUSEADDR as the original did).
#[test]
fn redis_client_keeps_its_connection_across_dump_and_restore() {
    let _t = serial();
    if direct() {
        return; // only meaningful with a dump
    }
    let mut w = Workload::new("redis");
    let port = free_port();
    start_redis(&mut w, port);
    let mut c = Redis::connect(port).unwrap();
    for i in 0..50 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), &format!("before-{i}")]), "+OK");
    }
    w.dump_leave_running();
    assert_eq!(c.cmd(&["GET", "k7"]), "before-7", "the connection after the --leave-running dump\n{}", w.report());
    for i in 50..60 {
        assert_eq!(c.cmd(&["SET", &format!("k{i}"), &format!("between-{i}")]), "+OK");
    }
    std::fs::remove_dir_all(&w.img).unwrap();
    std::fs::create_dir(&w.img).unwrap();
    w.dump();
    std::thread::sleep(Duration::from_secs(2));
    w.restore();
    for i in 0..60 {
        let want = if i < 50 { format!("before-{i}") } else { format!("between-{i}") };
        assert_eq!(c.cmd(&["GET", &format!("k{i}")]), want, "key k{i} on the client's connection after the restore\n{}", w.report());
    }
    assert_eq!(c.cmd(&["SET", "after", "restore"]), "+OK");
    assert_eq!(c.cmd(&["INCR", "counter"]), ":1");
    let mut c2 = Redis::connect(port).unwrap_or_else(|e| panic!("a new client: {e}\n{}", w.report()));
    assert_eq!(c2.cmd(&["GET", "after"]), "restore");
    assert_eq!(c2.cmd(&["INCR", "counter"]), ":2");
    assert_eq!(c.cmd(&["GET", "counter"]), "2");
    drop(c2);
    // Kill the restored server while `c` is still connected (its side of the connection
    // lingers in FIN_WAIT2): a new server must get the port at once.
    w.kill_restored();
    let mut w2 = Workload::new("redis-again");
    start_redis(&mut w2, port);
    assert!(!w2.output().contains("Address already in use"), "{}", w2.report());
    drop(c);
}

/// After a `--leave-running` dump of redis with a client connected, the live redis is
/// killed (the client still connected): a new redis binds the port at once (before the
/// fix the dumped connection had lost SO_REUSEADDR, and its FIN_WAIT2 remainder made
/// the bind fail with "Address already in use" for a minute).
#[test]
fn redis_restarts_at_once_after_a_leave_running_dump() {
    let _t = serial();
    if direct() {
        return; // only meaningful with a dump
    }
    let mut w = Workload::new("redis-live");
    let port = free_port();
    start_redis(&mut w, port);
    let mut c = Redis::connect(port).unwrap();
    assert_eq!(c.cmd(&["SET", "k", "v"]), "+OK");
    w.dump_leave_running();
    assert_eq!(c.cmd(&["GET", "k"]), "v");
    w.kill_original();
    let mut w2 = Workload::new("redis-restart");
    start_redis(&mut w2, port);
    assert!(!w2.output().contains("Address already in use"), "{}", w2.report());
    drop(c);
}

/// A --leave-running dump of redis while a client (the test) has not read 32 MB of
/// replies, then the original is killed: its connection to that client lives on,
/// closing with megabytes unsent. The restore is refused with one line naming the
/// connection and --tcp-close; with --tcp-close redis comes back with its data and its
/// blocked connection closed (the client reads the end of the stream after what the
/// original had sent).
#[test]
fn redis_leave_running_restore_meets_the_originals_lingering_connection() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("redis-linger");
    let port = free_port();
    start_redis(&mut w, port);
    let mut c = Redis::connect(port).unwrap();
    let big = "x".repeat(8 << 20);
    assert_eq!(c.cmd(&["SET", "big", &big]), "+OK");
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let slow_port = slow.local_addr().unwrap().port();
    slow.write_all("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(4).as_bytes()).unwrap();
    let queued = wait_until(Duration::from_secs(10), || tcp_send_side(port, slow_port).0 >= 1 << 20);
    assert!(queued, "redis has not queued the replies\n{}", w.report());
    w.dump_leave_running();
    w.kill_original();
    assert!(tcp_send_side(port, slow_port).0 > 0, "the original's connection should linger with bytes unsent");
    let r = w.try_restore(&["-d", "--allow-changed-files"]);
    assert_clean_error(&r, &[&format!("127.0.0.1:{port} -> 127.0.0.1:"), "still exists", "--tcp-close"], &w.report());
    drop(c);
    w.restore_with(&["--allow-changed-files", "--tcp-close"]);
    let mut n = Redis::connect(port).unwrap_or_else(|e| panic!("a new client: {e}\n{}", w.report()));
    assert_eq!(n.cmd(&["STRLEN", "big"]), ":8388608", "the data after the restore\n{}", w.report());
    drop(n);
    drop(slow);
    w.kill_restored();
}

// ---------------------------------------------------------------------------
// nginx: master + 2 workers
// ---------------------------------------------------------------------------

const NGINX: &str = "/usr/sbin/nginx";

/// A keep-alive HTTP/1.1 connection.
struct Http {
    r: BufReader<TcpStream>,
}

impl Http {
    fn connect(port: u16) -> std::io::Result<Http> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Http { r: BufReader::new(s) })
    }

    fn local_port(&self) -> u16 {
        self.r.get_ref().local_addr().unwrap().port()
    }

    /// GET /path on this connection: the body of a 200 reply (with Content-Length), or
    /// what went wrong.
    fn get(&mut self, path: &str) -> Result<Vec<u8>, String> {
        let req = format!("GET /{path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.r.get_mut().write_all(req.as_bytes()).map_err(|e| format!("sending the request: {e}"))?;
        let mut status = String::new();
        self.r.read_line(&mut status).map_err(|e| format!("reading the status line: {e}"))?;
        if !status.starts_with("HTTP/1.1 200 ") {
            return Err(format!("status line {status:?}"));
        }
        let mut len = None;
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).map_err(|e| format!("reading a header: {e}"))?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let len = len.ok_or("no Content-Length")?;
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).map_err(|e| format!("reading {len} bytes of body: {e}"))?;
        Ok(body)
    }
}

/// Direct children of `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| stat_of(*p).is_some_and(|(_, pp)| pp == pid))
        .collect();
    v.sort();
    v
}

fn cmdline_of(pid: i32) -> String {
    String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).replace('\0', " ").trim().to_string()
}

/// The worker processes of nginx master `master` (children whose title says so).
fn nginx_workers(master: i32) -> Vec<i32> {
    children_of(master).into_iter().filter(|p| cmdline_of(*p).contains("worker process")).collect()
}

/// ~200 KB of deterministic, non-repeating bytes.
fn known_content() -> Vec<u8> {
    pseudo_random(200_003, 0x1234_5678)
}

/// `len` deterministic bytes from `seed` (a linear congruential generator's high bytes).
fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// nginx (master + 2 workers, in the foreground) serving `work/www/file.bin` on a free
/// port of 127.0.0.1, everything it writes (logs, pid, temp dirs) under the test's temp
/// dir; waits until both workers exist and the file is served. Returns (port, content).
fn start_nginx(w: &mut Workload) -> (u16, Vec<u8>) {
    assert!(Path::new(NGINX).exists(), "nginx not installed (.ci/run installs it: apt-get install nginx)");
    let port = free_port();
    let t = w.tmp.path.clone();
    let www = w.work.join("www");
    fs::create_dir(&www).unwrap();
    let content = known_content();
    write_file(&www.join("file.bin"), &content);
    let conf = format!(
        "daemon off;\nmaster_process on;\nworker_processes 2;\nuser root;\n\
         pid {t}/nginx.pid;\nerror_log {t}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {t}/access.log;\n  keepalive_timeout 600s;\n  keepalive_requests 100000;\n\
         \x20 client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n\
         \x20 uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
         \x20 server {{ listen 127.0.0.1:{port}; root {www}; }}\n}}\n",
        t = t.display(),
        www = www.display()
    );
    let conf_path = t.join("nginx.conf");
    write_file(&conf_path, conf.as_bytes());
    let args: Vec<OsString> = vec![
        "-p".into(),
        t.clone().into_os_string(),
        "-e".into(),
        t.join("error.log").into_os_string(),
        "-c".into(),
        conf_path.into_os_string(),
    ];
    w.spawn(Path::new(NGINX), &args);
    let master = w.pid;
    let up = wait_until(Duration::from_secs(20), || {
        nginx_workers(master).len() == 2 && Http::connect(port).is_ok_and(|mut c| c.get("file.bin").is_ok_and(|b| b == content))
    });
    assert!(up, "nginx did not serve the file on port {port}: workers {:?}\n{}", nginx_workers(master), nginx_report(w));
    (port, content)
}

fn nginx_report(w: &Workload) -> String {
    format!("{}--- error.log:\n{}", w.report(), fs::read_to_string(w.tmp.path.join("error.log")).unwrap_or_default())
}

/// Kill a restored nginx tree (master and workers) and reap all of it.
fn kill_nginx_tree(w: &mut Workload) {
    let workers = children_of(w.pid);
    w.kill_restored();
    w.kill_original();
    reap_dumped(w, &workers);
}

/// nginx in its default architecture (a master, 2 workers, socketpair channels between
/// them with O_ASYNC) with the test as a keep-alive client: the file fetched before a
/// killing dump (network lock on) is fetched again byte for byte on the SAME connection
/// after the restore, and on a new one; then `kill -HUP` to the restored master starts
/// new workers (other pids, the old ones exit) that serve the file too.
#[test]
fn nginx_keepalive_client_across_dump_restore_and_reload() {
    let _t = serial();
    skip_if_direct!();
    let started = std::time::Instant::now();
    let mut w = Workload::new("nginx");
    let (port, content) = start_nginx(&mut w);
    let master = w.pid;
    let workers = nginx_workers(master);
    let mut c = Http::connect(port).unwrap();
    let lport = c.local_port();
    assert!(c.get("file.bin").unwrap() == content, "the file before the dump");
    // nginx logs a request after sending its reply: the fd tables are compared once
    // both requests so far (start_nginx's and this one) are in the access log
    let log = w.tmp.path.join("access.log");
    let logged = wait_until(Duration::from_secs(5), || fs::read_to_string(&log).unwrap_or_default().lines().count() >= 2);
    assert!(logged, "the access log lacks the requests\n{}", nginx_report(&w));
    let tables: Vec<(i32, _)> = [master].iter().chain(&workers).map(|p| (*p, fd_table(*p))).collect();
    dump_and_reap_tree(&mut w, &workers);
    eprintln!("nginx: image {} bytes, {} processes", dir_size(&w.img), 1 + workers.len());
    w.restore();
    for p in &workers {
        assert!(pid_exists(*p), "worker {p} not restored\n{}", nginx_report(&w));
    }
    assert_eq!(nginx_workers(master), workers, "the restored master's workers\n{}", nginx_report(&w));
    for (p, before) in &tables {
        let d = fd_diff(before, &fd_table(*p));
        assert!(d.is_empty(), "pid {p}: fds differ after the restore:\n  {}\n{}", d.join("\n  "), nginx_report(&w));
    }
    assert_eq!(c.local_port(), lport);
    let body = c.get("file.bin").unwrap_or_else(|e| panic!("GET on the kept connection after the restore: {e}\n{}", nginx_report(&w)));
    assert!(body == content, "the body on the kept connection differs ({} bytes)\n{}", body.len(), nginx_report(&w));
    let body = c.get("file.bin").unwrap_or_else(|e| panic!("a second GET on the kept connection: {e}\n{}", nginx_report(&w)));
    assert!(body == content, "the second body on the kept connection differs");
    let mut c2 = Http::connect(port).unwrap_or_else(|e| panic!("a new connection after the restore: {e}\n{}", nginx_report(&w)));
    assert!(c2.get("file.bin").unwrap() == content, "the body on a new connection after the restore");
    drop(c2);

    // Reload: the master tells the old workers to quit over their channels and starts
    // new ones.
    // SAFETY: `master` is our (restored) child, not reaped.
    assert_eq!(unsafe { libc::kill(master, libc::SIGHUP) }, 0);
    let reloaded = wait_until(Duration::from_secs(20), || {
        let now = nginx_workers(master);
        now.len() == 2 && now.iter().all(|p| !workers.contains(p)) && workers.iter().all(|p| !pid_exists(*p))
    });
    assert!(
        reloaded,
        "after SIGHUP: workers {:?} (before {workers:?}, old ones alive: {:?})\n{}",
        nginx_workers(master),
        workers.iter().filter(|p| pid_exists(**p)).collect::<Vec<_>>(),
        nginx_report(&w)
    );
    let mut c3 = Http::connect(port).unwrap_or_else(|e| panic!("a new connection after the reload: {e}\n{}", nginx_report(&w)));
    for _ in 0..4 {
        let body = c3.get("file.bin").unwrap_or_else(|e| panic!("GET after the reload: {e}\n{}", nginx_report(&w)));
        assert!(body == content, "the body after the reload differs");
    }
    drop(c3);
    drop(c);
    kill_nginx_tree(&mut w);
    eprintln!("nginx: test took {:.1?}", started.elapsed());
}

/// Bytes in the send queue of the TCP connection 127.0.0.1:`local` -> 127.0.0.1:`remote`
/// (tx_queue of /proc/net/tcp), and its send buffer size (`tb` of `ss -m`).
fn tcp_send_side(local: u16, remote: u16) -> (u64, u64) {
    let t = fs::read_to_string("/proc/net/tcp").unwrap();
    let (l, r) = (format!("0100007F:{local:04X}"), format!("0100007F:{remote:04X}"));
    let q = t
        .lines()
        .map(|x| x.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 4 && f[1] == l && f[2] == r)
        .and_then(|f| u64::from_str_radix(f[4].split(':').next()?, 16).ok())
        .unwrap_or(0);
    let ss = Command::new("ss").args(["-tmnH", "src", &format!("127.0.0.1:{local}"), "dst", &format!("127.0.0.1:{remote}")]).output().unwrap();
    let ss = String::from_utf8_lossy(&ss.stdout);
    let tb = ss.split([',', '(']).find_map(|x| x.strip_prefix("tb")?.parse().ok()).unwrap_or(0);
    (q, tb)
}

/// A download in progress: the test fetches a 24 MB file from nginx and stops reading
/// after 1 MB, so the worker's connection holds megabytes in its send queue (far more
/// than a new socket's send buffer: the original's had grown by autotuning) when nginx
/// is dumped (killing, network lock on). The restore puts that queue back and the
/// client reads the rest of the body on the same connection, byte for byte; the
/// connection's send buffer size is the original's. (The restore used to block for
/// ever writing the queue into the new socket's small buffer.)
#[test]
fn nginx_download_in_progress_continues_after_restore() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("nginx-download");
    let (port, _) = start_nginx(&mut w);
    let big = pseudo_random(24 << 20, 0x9e37_79b9);
    write_file(&w.work.join("www/big.bin"), &big);
    let workers = nginx_workers(w.pid);
    let mut c = Http::connect(port).unwrap();
    let lport = c.local_port();
    c.r.get_mut().write_all(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        c.r.read_line(&mut head).unwrap();
    }
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let mut body = vec![0u8; 1 << 20];
    c.r.read_exact(&mut body).unwrap();
    // until the queue is full: over 1 MB and the same for 300 ms
    let mut last = (0, 0, std::time::Instant::now());
    let filled = wait_until(Duration::from_secs(10), || {
        let (q, tb) = tcp_send_side(port, lport);
        if (q, tb) != (last.0, last.1) {
            last = (q, tb, std::time::Instant::now());
        }
        q >= 1 << 20 && last.2.elapsed() >= Duration::from_millis(300)
    });
    let (queued, tb) = tcp_send_side(port, lport);
    eprintln!("nginx-download: {queued} bytes queued, send buffer {tb}");
    assert!(filled, "nginx's send queue to the client holds only {queued} bytes\n{}", nginx_report(&w));
    dump_and_reap_tree(&mut w, &workers);
    // nginx may still have written between the measurement and the freeze (the client's
    // receive side can free room by collapsing its queue): the image says what the
    // connection held at the dump, and that is never less than measured before it.
    let img = inspect_json(&mut w);
    let saved = img["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["fds"].as_array().into_iter().flatten())
        .find(|f| f["kind"] == "tcp" && f["local_port"] == port && f["peer_port"] == lport)
        .and_then(|f| f["queued_bytes"].as_u64())
        .unwrap_or_else(|| panic!("no connection {port} -> {lport} in the image: {img}"));
    assert!(saved >= queued, "the image holds {saved} bytes of the connection's queue, {queued} were measured before the dump");
    w.restore();
    // The restored nginx goes on writing as soon as the queue leaves it room (a queue
    // written in repair mode takes less memory than sendfile's), so the queue may be
    // longer than the image's by then, never shorter; the body check below finds any
    // byte lost or repeated.
    let (q, b) = tcp_send_side(port, lport);
    assert!(q >= saved && b == tb, "send queue and buffer of the restored connection: ({q}, {b}), image {saved} bytes, buffer {tb} before");
    let mut buf = vec![0u8; 1 << 16];
    while body.len() < big.len() {
        match c.r.read(&mut buf[..(big.len() - body.len()).min(1 << 16)]) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let first_diff = body.iter().zip(&big).position(|(a, b)| a != b);
    assert!(
        body.len() == big.len() && first_diff.is_none(),
        "the body read across the dump: {} of {} bytes, first difference at {first_diff:?}\n{}",
        body.len(),
        big.len(),
        nginx_report(&w)
    );
    drop(c);
    kill_nginx_tree(&mut w);
}

/// `dump --leave-running` of nginx while the test holds a keep-alive connection: the
/// live nginx keeps serving on it; the client then closes it, the live tree is killed
/// and restored from the image (`--allow-changed-files`: the access log grew since),
/// with both workers under the master again, and a new connection is served the file.
#[test]
fn nginx_leave_running_dump_then_restore_after_kill() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("nginx-live");
    let (port, content) = start_nginx(&mut w);
    let master = w.pid;
    let workers = nginx_workers(master);
    let mut c = Http::connect(port).unwrap();
    assert!(c.get("file.bin").unwrap() == content);
    w.dump_leave_running();
    assert_eq!(nginx_workers(master), workers, "workers after the --leave-running dump");
    let tables: Vec<(i32, _)> = [master].iter().chain(&workers).map(|p| (*p, fd_table(*p))).collect();
    for _ in 0..3 {
        let body = c.get("file.bin").unwrap_or_else(|e| panic!("GET on the kept connection after --leave-running: {e}\n{}", nginx_report(&w)));
        assert!(body == content, "the body after the --leave-running dump differs");
    }
    let mut c2 = Http::connect(port).unwrap();
    assert!(c2.get("file.bin").unwrap() == content, "a new connection to the live nginx");
    drop(c2);
    // The client ends its connection before the live tree is killed: a killed worker's
    // end of a connection the client still held would linger (FIN_WAIT2, then
    // TIME_WAIT) with the very addresses the image's connection has, and the restore
    // could not re-create it (TCP_REPAIR connect: EADDRNOTAVAIL).
    c.r.get_ref().shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    c.r.read_to_end(&mut rest).unwrap_or_else(|e| panic!("waiting for nginx to close the kept connection: {e}"));
    assert!(rest.is_empty(), "unexpected bytes after the last reply: {}", rest.len());
    drop(c);
    // Kill the live tree: the master first (its workers are re-parented to us), then
    // the workers.
    w.kill_original();
    reap_dumped(&w, &workers);
    w.restore_with(&["--allow-changed-files"]);
    assert_eq!(nginx_workers(master), workers, "the restored master's workers\n{}", nginx_report(&w));
    // As they were at the dump (the image's connection to the client included).
    for (p, before) in &tables {
        let d = fd_diff(before, &fd_table(*p));
        assert!(d.is_empty(), "pid {p}: fds differ after the restore:\n  {}\n{}", d.join("\n  "), nginx_report(&w));
    }
    let mut c3 = Http::connect(port).unwrap_or_else(|e| panic!("a new connection after the restore: {e}\n{}", nginx_report(&w)));
    for _ in 0..3 {
        let body = c3.get("file.bin").unwrap_or_else(|e| panic!("GET after the restore: {e}\n{}", nginx_report(&w)));
        assert!(body == content, "the body after the restore differs");
    }
    drop(c3);
    kill_nginx_tree(&mut w);
}

/// Total size of the files in an image dir.
fn dir_size(p: &Path) -> u64 {
    fs::read_dir(p).unwrap().flatten().map(|e| e.metadata().map(|m| if m.is_dir() { dir_size(&e.path()) } else { m.len() }).unwrap_or(0)).sum()
}

// ---------------------------------------------------------------------------
// PostgreSQL: a client on its unix socket outside the dumped tree
// ---------------------------------------------------------------------------

/// A PostgreSQL frontend/backend protocol (v3) session, just what the tests need:
/// startup with trust authentication and simple Query messages.
struct Pg<S: Read + Write> {
    s: S,
}

impl<S: Read + Write> Pg<S> {
    /// Startup as USER on database `postgres`; Ok once the server is ready for queries.
    fn startup(s: S, user: &str) -> Result<Pg<S>, String> {
        let mut body = Vec::new();
        body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
        for kv in ["user", user, "database", "postgres"] {
            body.extend_from_slice(kv.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        let mut pg = Pg { s };
        pg.s.write_all(&msg).map_err(|e| format!("sending the startup message: {e}"))?;
        loop {
            let (t, b) = pg.read_msg()?;
            match t {
                b'R' if b.get(..4) != Some(&[0, 0, 0, 0][..]) => return Err(format!("authentication request {b:?}: expected trust")),
                b'E' => return Err(format!("startup refused: {}", error_text(&b))),
                b'Z' => return Ok(pg),
                _ => {}
            }
        }
    }

    fn read_msg(&mut self) -> Result<(u8, Vec<u8>), String> {
        let mut h = [0u8; 5];
        self.s.read_exact(&mut h).map_err(|e| format!("reading a message header: {e}"))?;
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        if !(4..=1 << 20).contains(&len) {
            return Err(format!("message {:?} of length {len}", h[0] as char));
        }
        let mut b = vec![0u8; len - 4];
        self.s.read_exact(&mut b).map_err(|e| format!("reading a {:?} message: {e}", h[0] as char))?;
        Ok((h[0], b))
    }

    /// A simple Query: the rows of its (last) result, every value as text (NULL as
    /// "NULL"), or the server's error.
    fn query(&mut self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.s.write_all(&msg).map_err(|e| format!("sending {sql:?}: {e}"))?;
        let mut rows = Vec::new();
        let mut err = None;
        loop {
            let (t, b) = self.read_msg().map_err(|e| format!("{sql:?}: {e}"))?;
            match t {
                b'T' => rows.clear(),
                b'D' => rows.push(data_row(&b)),
                b'E' => err = Some(error_text(&b)),
                b'Z' => return err.map_or(Ok(rows), |e| Err(format!("{sql:?}: {e}"))),
                _ => {}
            }
        }
    }

    /// A query returning one value.
    fn value(&mut self, sql: &str) -> String {
        let rows = self.query(sql).unwrap_or_else(|e| panic!("{e}"));
        assert!(rows.len() == 1 && rows[0].len() == 1, "{sql:?} returned {rows:?}");
        rows[0][0].clone()
    }
}

fn data_row(b: &[u8]) -> Vec<String> {
    let n = u16::from_be_bytes([b[0], b[1]]) as usize;
    let mut at = 2;
    (0..n)
        .map(|_| {
            let len = i32::from_be_bytes(b[at..at + 4].try_into().unwrap());
            at += 4;
            if len < 0 {
                return "NULL".to_string();
            }
            let v = String::from_utf8_lossy(&b[at..at + len as usize]).into_owned();
            at += len as usize;
            v
        })
        .collect()
}

/// The severity, code and message fields of an ErrorResponse.
fn error_text(b: &[u8]) -> String {
    b.split(|c| *c == 0)
        .filter(|f| matches!(f.first(), Some(b'S' | b'C' | b'M')))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The directory holding `postgres` and `initdb`: Debian's /usr/lib/postgresql/VERSION/bin
/// (highest version), else `pg_config --bindir`, else /usr/local/bin.
fn pg_bindir() -> Option<PathBuf> {
    let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    debian.sort();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    debian
        .into_iter()
        .rev()
        .map(|(_, p)| p)
        .chain(from_pg_config)
        .chain([PathBuf::from("/usr/local/bin")])
        .find(|d| d.join("postgres").exists() && d.join("initdb").exists())
}

/// The unprivileged user postgres runs as (initdb and postgres refuse root): Debian's
/// `postgres` user (the postgresql package creates it), else `nobody`. (uid, gid).
fn pg_user() -> (u32, u32) {
    for name in ["postgres", "nobody"] {
        let id = |flag: &str| {
            Command::new("id")
                .args([flag, name])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u32>().ok())
        };
        if let (Some(u), Some(g)) = (id("-u"), id("-g")) {
            return (u, g);
        }
    }
    panic!("neither a postgres nor a nobody user");
}

/// `setpriv` arguments that run a program as (uid, gid) with no supplementary groups;
/// setpriv execs the program, so the process keeps its pid.
fn as_user(uid: u32, gid: u32) -> Vec<OsString> {
    ["--reuid", &uid.to_string(), "--regid", &gid.to_string(), "--clear-groups", "--"].iter().map(OsString::from).collect()
}

/// Removes, on drop, the System V shared memory segment(s) a postmaster (pid `.0`)
/// created, once nothing is attached, and its POSIX shared memory files (`.1`): a
/// postmaster killed rather than shut down leaves them behind.
struct PgShm(i32, Vec<PathBuf>);

impl PgShm {
    /// Note the /dev/shm files the processes of postmaster `pm`'s tree have mapped.
    fn track(&mut self, pm: i32) {
        self.0 = pm;
        let maps: String = [pm].into_iter().chain(children_of(pm)).map(|p| fs::read_to_string(format!("/proc/{p}/maps")).unwrap_or_default()).collect();
        for l in maps.lines() {
            if let Some(at) = l.find("/dev/shm/") {
                let p = PathBuf::from(l[at..].trim_end_matches(" (deleted)"));
                if !self.1.contains(&p) {
                    self.1.push(p);
                }
            }
        }
    }
}

impl Drop for PgShm {
    fn drop(&mut self) {
        for p in &self.1 {
            let _ = fs::remove_file(p);
        }
        let Ok(t) = fs::read_to_string("/proc/sysvipc/shm") else { return };
        for l in t.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 6 && f[4].parse() == Ok(self.0) && f[6] == "0" {
                if let Ok(id) = f[1].parse::<i32>() {
                    // SAFETY: IPC_RMID takes no buffer.
                    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
                }
            }
        }
    }
}

/// Client backends of postmaster `pm` (their titles start with the user name).
fn pg_backends(pm: i32) -> Vec<i32> {
    children_of(pm).into_iter().filter(|p| cmdline_of(*p).starts_with("postgres: postgres postgres")).collect()
}

/// PostgreSQL (initdb'ed into the test's temp dir, run as an unprivileged user) with the
/// test as a client on its unix socket, outside the dumped tree. A TCP client creates a
/// table, inserts 1000 rows and keeps its session, with a transaction open (5 rows
/// inserted, not committed), across the dump; the unix-socket session also makes a
/// TEMP table (backend memory only). `stasis dump` refuses with one line naming `--external unix:[INODE]`
/// (INODE is that backend's socket); the dump with it goes through; the restore hands
/// the backend one end of the test's socketpair (`--inherit-fd 7:unix:[INODE]`), and
/// through the other end the same, already authenticated session (same backend pid)
/// counts the rows, reads its TEMP table and inserts more; the kept TCP session (same
/// backend, its connection restored with the network lock on) sees its own uncommitted
/// rows and those, and commits; a new TCP client and a new unix-socket client see every
/// row and insert too. A fast shutdown (SIGINT) of the
/// restored postmaster then ends it with status 0.
#[test]
fn postgres_unix_socket_client_outside_the_tree() {
    let _t = serial();
    skip_if_direct!();
    let started = std::time::Instant::now();
    let bin = pg_bindir().expect("no PostgreSQL server binaries (postgres, initdb) found: .ci/run installs the postgresql package");
    let (uid, gid) = pg_user();
    let mut shm = PgShm(0, Vec::new());
    let mut w = Workload::new("postgres");
    // The user must reach its dirs inside the (0700) temp dir.
    fs::set_permissions(&w.tmp.path, std::os::unix::fs::PermissionsExt::from_mode(0o711)).unwrap();
    let data = w.work.join("pgdata");
    let sock = w.work.join("sock");
    for d in [&data, &sock] {
        fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
    }
    let log = w.tmp.path.join("initdb.log");
    let st = Command::new("setpriv")
        .args(as_user(uid, gid))
        .arg(bin.join("initdb"))
        .args(["-D".as_ref(), data.as_os_str()])
        .args(["--auth=trust", "-U", "postgres", "--no-sync", "--no-locale", "-E", "UTF8"])
        .current_dir(&w.work)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(fs::File::create(&log).unwrap().try_clone().unwrap())
        .status()
        .expect("run initdb");
    assert!(st.success(), "initdb failed: {}", fs::read_to_string(&log).unwrap_or_default());

    let port = free_port();
    let mut args = as_user(uid, gid);
    args.push(bin.join("postgres").into_os_string());
    args.extend(["-D".into(), data.clone().into_os_string(), "-k".into(), sock.clone().into_os_string()]);
    for a in [
        "-p",
        &port.to_string(),
        "-c",
        "listen_addresses=127.0.0.1",
        // The default made explicit: dynamic shared memory in /dev/shm (shm_open).
        "-c",
        "dynamic_shared_memory_type=posix",
        "-c",
        "shared_buffers=16MB",
        "-c",
        "max_connections=10",
        "-c",
        "fsync=off",
    ] {
        args.push(a.into());
    }
    w.spawn(Path::new("/usr/bin/setpriv"), &args);
    let pm = w.pid;
    let tcp = || -> Result<Pg<TcpStream>, String> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Pg::startup(s, "postgres")
    };
    let sock_path = sock.join(format!(".s.PGSQL.{port}"));
    let unix = || -> Result<Pg<UnixStream>, String> {
        let s = UnixStream::connect(&sock_path).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Pg::startup(s, "postgres")
    };
    let up = wait_until(Duration::from_secs(30), || tcp().is_ok_and(|mut c| c.query("select 1").is_ok()));
    assert!(up, "postgres did not answer on port {port}\n{}", w.report());
    shm.track(pm);
    assert!(!shm.1.is_empty(), "postmaster {pm} maps nothing in /dev/shm (dynamic_shared_memory_type=posix)");

    // (a) a TCP client makes the table, and keeps its session (with a transaction
    // open: 5 rows nobody else sees yet) across the dump.
    let mut k = tcp().unwrap();
    let k_backend = k.value("select pg_backend_pid()");
    k.query("create table t (i int primary key, s text)").unwrap();
    k.query("insert into t select g, 'row ' || g from generate_series(1, 1000) g").unwrap();
    k.query("begin").unwrap();
    k.query("insert into t select g, 'open ' || g from generate_series(2001, 2005) g").unwrap();
    assert_eq!(k.value("select count(*) from t"), "1005");
    // (b) the client on the unix socket, with session state of its own.
    let mut u = unix().unwrap_or_else(|e| panic!("unix socket client: {e}\n{}", w.report()));
    let backend = u.value("select pg_backend_pid()");
    u.query("create temp table tt as select 42 as v, 'kept' as s").unwrap();
    u.query("set application_name = 'stasis-kept'").unwrap();
    assert_eq!(u.value("select count(*) from t"), "1000");
    // Only these two backends are left (the ones of the start-up probes exit).
    let mut want = vec![backend.parse::<i32>().unwrap(), k_backend.parse::<i32>().unwrap()];
    want.sort();
    let settled = wait_until(Duration::from_secs(20), || pg_backends(pm) == want);
    assert!(settled, "client backends {:?}, want {want:?}\n{}", pg_backends(pm), w.report());
    let tree: Vec<i32> = children_of(pm);

    // (c) refused, naming the external socket.
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&format!("pid {backend}"), "--external unix:["], &w.report());
    let line = r.stderr.trim();
    let at = line.find("--external unix:[").unwrap() + "--external unix:[".len();
    let ino: u64 = line[at..].split(']').next().unwrap().parse().unwrap_or_else(|e| panic!("inode in {line:?}: {e}"));
    let link = format!("socket:[{ino}]");
    let has = fs::read_dir(format!("/proc/{backend}/fd"))
        .unwrap()
        .flatten()
        .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == link));
    assert!(has, "backend {backend} has no fd on {link}: {line}");
    w.assert_running_untouched();
    assert_eq!(u.value("select v from tt"), "42", "the session after the refused dump");

    // (d) the dump with --external.
    let res = format!("unix:[{ino}]");
    let tables: Vec<(i32, _)> = [pm].iter().chain(&tree).map(|p| (*p, fd_table(*p))).collect();
    let owner = |p: &Path| fs::symlink_metadata(p).map(|m| (m.uid(), m.gid(), m.mode() & 0o7777)).ok();
    let sock_file = owner(&sock_path);
    assert_eq!(sock_file.map(|f| (f.0, f.1)), Some((uid, gid)), "postgres's socket file before the dump");
    shm.track(pm);
    w.dump_with(&["--external", &res]);
    reap_dumped(&w, &tree);
    eprintln!("postgres: image {} bytes, {} processes", dir_size(&w.img), 1 + tree.len());

    // (e) restore with the test's socketpair in place of the client's socket.
    let (ours, given) = UnixStream::pair().unwrap();
    use std::os::fd::AsRawFd;
    let arg = format!("7:{res}");
    w.restore_from_with_fds(&w.img.clone(), &["--inherit-fd", &arg], &[(7, given.as_raw_fd())]);
    drop(given);
    drop(u); // the old connection: the restored backend no longer has it
    for p in &tree {
        assert!(pid_exists(*p), "process {p} ({}) not restored\n{}", cmdline_of(*p), w.report());
    }
    for (p, before) in &tables {
        let d = fd_diff(before, &fd_table(*p));
        assert!(d.is_empty(), "pid {p} ({}): fds differ after the restore:\n  {}\n{}", cmdline_of(*p), d.join("\n  "), w.report());
    }
    ours.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = Pg { s: ours };
    assert_eq!(r.value("select pg_backend_pid()"), backend, "the restored session's backend");
    assert_eq!(r.value("select count(*) from t"), "1000", "rows seen by the restored session");
    assert_eq!(r.value("select v || ' ' || s from tt"), "42 kept", "the session's TEMP table");
    assert_eq!(r.value("show application_name"), "stasis-kept");
    r.query("insert into t select g, 'after ' || g from generate_series(1001, 1010) g").unwrap();
    assert_eq!(r.value("select count(*) from t"), "1010");
    // The TCP session kept across the dump, inside its open transaction.
    let kv = k.query("select pg_backend_pid(), count(*) from t").unwrap_or_else(|e| panic!("the kept TCP session: {e}\n{}", w.report()));
    assert_eq!(kv, [[k_backend.clone(), "1015".to_string()]], "the kept TCP session's backend and rows");
    k.query("commit").unwrap();

    // (f) new clients.
    let mut c = tcp().unwrap_or_else(|e| panic!("a TCP client after the restore: {e}\n{}", w.report()));
    assert_eq!(c.value("select count(*) from t"), "1015");
    assert_eq!(c.value("select s from t where i = 1005"), "after 1005");
    assert_eq!(c.value("select s from t where i = 2003"), "open 2003");
    c.query("insert into t select g, 'new ' || g from generate_series(1011, 1015) g").unwrap();
    // its socket file is postgres's again, with its mode (clients of other users)
    assert_eq!(owner(&sock_path), sock_file, "postgres's socket file after the restore (uid, gid, mode)");
    let mut u2 = unix().unwrap_or_else(|e| panic!("a unix-socket client after the restore: {e}\n{}", w.report()));
    assert_eq!(u2.value("select count(*) from t"), "1020");
    let sum: i64 = (1..=1015).chain(2001..=2005).sum();
    assert_eq!(r.value("select sum(i) from t"), sum.to_string());
    assert_eq!(k.value("select sum(i) from t"), sum.to_string());
    assert!(u2.query("select v from tt").is_err(), "another session must not see the TEMP table");
    drop((c, u2));

    // A fast shutdown of the restored postmaster: it ends every backend, writes a
    // shutdown checkpoint and exits 0.
    // SAFETY: pm is our (restored) child, not reaped.
    assert_eq!(unsafe { libc::kill(pm, libc::SIGINT) }, 0);
    let st = w.wait_exit(Duration::from_secs(60));
    assert_eq!(st, Exit::Code(0), "the restored postmaster's fast shutdown\n{}", w.report());
    let mut buf = [0u8; 1];
    let n = r.s.read(&mut buf);
    assert!(matches!(n, Ok(0) | Err(_)) || buf[0] == b'E', "the restored session after the shutdown: {n:?}");
    eprintln!("postgres: test took {:.1?}", started.elapsed());
}

/// What a process's fds are, comparable across a dump and restore: for each fd its
/// target (inode numbers of sockets, pipes and the like dropped), position and flags
/// from fdinfo, and for an epoll fd the registered fds, events and data.
fn fd_table(pid: i32) -> std::collections::BTreeMap<i32, String> {
    let mut m = std::collections::BTreeMap::new();
    for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let target = fs::read_link(e.path()).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default();
        let target = match target.split_once(":[") {
            Some((kind, _)) => kind.to_string(),
            None => target,
        };
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        let mut v = vec![target];
        // The kernel lists an epoll set's fds in no meaningful order: sorted here.
        let mut tfds = Vec::new();
        for l in info.lines() {
            if l.starts_with("pos:") || l.starts_with("flags:") {
                v.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
            } else if l.starts_with("tfd:") {
                tfds.push(l.split(" pos:").next().unwrap_or(l).split_whitespace().collect::<Vec<_>>().join(" "));
            }
        }
        tfds.sort();
        v.extend(tfds);
        m.insert(fd, v.join(" | "));
    }
    m
}

/// Differences between two fd tables, one line each.
fn fd_diff(before: &std::collections::BTreeMap<i32, String>, after: &std::collections::BTreeMap<i32, String>) -> Vec<String> {
    let fds: std::collections::BTreeSet<i32> = before.keys().chain(after.keys()).copied().collect();
    fds.into_iter()
        .filter(|fd| before.get(fd) != after.get(fd))
        .map(|fd| format!("fd {fd}: {:?} -> {:?}", before.get(&fd), after.get(&fd)))
        .collect()
}
