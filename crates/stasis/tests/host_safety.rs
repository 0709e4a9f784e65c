//! An image is untrusted input and restore runs as root: restore must not create,
//! clobber or unlink host files the image's processes did not own.

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Deleted-while-open files come back without ever taking a name on the host: a file
/// the host put at the old name meanwhile is untouched (content and inode), the
/// workload reads its own content, mode and offset; a deleted file whose directory is
/// gone too is recreated (in stasis's private directory, mode 0700).
#[test]
fn deleted_files_never_touch_the_old_path() {
    let _t = serial();
    skip_if_direct!();
    let run_dir = Path::new("/run/stasis");
    let run_dir_existed = run_dir.exists();
    let mut w = Workload::start("ghost_host", &[]);
    w.dump();
    let old = w.work.join("ghost.txt");
    assert!(!old.exists(), "the workload unlinked {}\n{}", old.display(), w.report());
    let host = b"the host's own file, not the image's\n";
    write_file(&old, host);
    let ino = std::fs::metadata(&old).unwrap().ino();
    w.restore();
    w.go_and_pass();
    assert_eq!(std::fs::read(&old).unwrap(), host, "restore changed {}\n{}", old.display(), w.report());
    let md = std::fs::metadata(&old).unwrap();
    assert_eq!((md.ino(), md.nlink()), (ino, 1), "{} was replaced or linked again\n{}", old.display(), w.report());
    assert!(!w.work.join("gone").exists(), "restore recreated the removed directory\n{}", w.report());
    let names: Vec<_> = std::fs::read_dir(&w.work).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|n| n == "ghost.txt" || n == "go"), "new names in the work dir: {names:?}\n{}", w.report());
    if let Ok(md) = std::fs::symlink_metadata("/run") {
        if md.is_dir() {
            let pd = std::fs::symlink_metadata(run_dir).expect("the private directory /run/stasis");
            assert!(pd.is_dir() && pd.mode() & 0o7777 == 0o700 && pd.uid() == 0, "/run/stasis: {pd:?}");
            assert_eq!(std::fs::read_dir(run_dir).unwrap().count(), 0, "names left in /run/stasis");
        }
    }
    if !run_dir_existed {
        let _ = std::fs::remove_dir(run_dir);
    }
}

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
    assert_clean_error(&r, &[&format!("listening on {p} with 1 connections waiting to be accepted whose clients are outside"), "--skip-in-flight"], &w.report());
    assert!(!r.stderr.contains('\0'), "NUL byte in the error\n{r}");
}

/// A named FIFO's path that is a symbolic link at restore (here to a FIFO of the host's
/// that the image's processes never had open) is not followed: restore refuses, naming
/// the path, and writes nothing into the host's FIFO. With the FIFO back, restore works.
#[test]
fn named_fifo_path_turned_symlink_is_not_followed() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("fifo", &[]);
    let kids = info_pids(&w, &["a", "b"]);
    dump_and_reap_tree(&mut w, &kids);
    let fifo2 = w.work.join("fifo2");
    let host = w.tmp.path.join("host.fifo");
    let mkfifo = |p: &Path| assert!(std::process::Command::new("mkfifo").arg(p).status().unwrap().success(), "mkfifo {}", p.display());
    mkfifo(&host);
    std::fs::remove_file(&fifo2).unwrap();
    std::os::unix::fs::symlink(&host, &fifo2).unwrap();
    let r = w.try_restore(&["-d"]);
    assert_clean_error(&r, &["restore refused", fifo2.to_str().unwrap(), "symbolic link"], &w.report());
    assert!(!pid_exists(w.pid), "the root exists after a refused restore");
    for k in &kids {
        assert!(!pid_exists(*k), "{k} exists after a refused restore");
    }
    // Nothing was left in the host's FIFO: hold it open and look.
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(&host).unwrap();
    let mut b = [0u8; 1];
    let got = std::io::Read::read(&mut &f, &mut b);
    assert!(matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "the host's FIFO got bytes: {got:?}");
    drop(f);
    std::fs::remove_file(&fifo2).unwrap();
    mkfifo(&fifo2);
    w.restore();
    w.go_and_pass();
}
