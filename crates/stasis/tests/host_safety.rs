//! An image is untrusted input and restore runs as root: restore must not create,
//! clobber or unlink host files the image's processes did not own.

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};

/// A unix listener bound to a path: after the dump (which kills it) another process
/// listens at that path. Restore must refuse, naming the path and the live socket, and
/// leave that process's socket working; once that socket is gone (its file stale),
/// restore replaces the stale file and the workload's listener accepts again.
#[test]
fn bound_unix_socket_never_takes_a_live_path() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("sock", &["unixbound"]);
    w.dump();
    let path = w.work.join("listener.sock");
    std::fs::remove_file(&path).expect("remove the dumped process's socket file");
    let other = UnixListener::bind(&path).expect("bind the other listener");
    let pidfile = w.tmp.path.join("refused.pid");
    let r = w.try_restore(&["-d", "--pidfile", pidfile.to_str().unwrap()]);
    assert!(!pid_exists(w.pid), "pid {} exists after a refused restore\n{}", w.pid, w.report());
    let p = path.to_str().unwrap();
    assert_clean_error(&r, &["restore refused", &format!("bound to {p}: "), "live socket"], &w.report());
    assert!(!r.stderr.contains('\0'), "NUL byte in the error\n{r}");
    let mut c = UnixStream::connect(&path).expect("connect to the other listener after the refused restore");
    use std::io::{Read, Write};
    c.write_all(b"ok").unwrap();
    drop(c);
    // The first connection accepted is stasis's probe (closed at once, no bytes).
    let mut got = Vec::new();
    for _ in 0..2 {
        let (mut s, _) = other.accept().expect("the other listener accepts");
        got.clear();
        s.read_to_end(&mut got).unwrap();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got, b"ok", "the other listener's connection");
    drop(other); // its socket file stays: stale now
    assert!(std::fs::symlink_metadata(&path).is_ok(), "the stale socket file should still be there");
    w.restore();
    w.go_and_pass();
}

/// A refused dump names a unix socket's path as written, without the NUL byte the
/// kernel reports after it.
#[test]
fn unix_socket_path_in_a_refusal_has_no_nul() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("sock", &["unixbound"]);
    let path = w.work.join("listener.sock");
    let _pending = UnixStream::connect(&path).expect("connect to the workload's listener");
    let r = w.dump_or_refusal().expect("a dump with a connection waiting to be accepted must be refused");
    let p = path.to_str().unwrap();
    assert_clean_error(&r, &[&format!("bound to {p} with 1 connections waiting")], &w.report());
    assert!(!r.stderr.contains('\0'), "NUL byte in the error\n{r}");
}
