//! Real servers nobody here wrote (Debian's redis-server) with clients outside the
//! dumped tree holding TCP connections across dumps.

mod common;
use common::*;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
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
