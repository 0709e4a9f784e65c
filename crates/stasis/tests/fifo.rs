//! Named FIFOs (mkfifo paths): shared by several processes and descriptions, with
//! bytes buffered at dump time; refused cleanly when the path is gone at restore.

mod common;
use common::*;
use std::fs;
use std::time::Duration;

/// Named FIFOs: descriptions in three processes (a reader, two writers, a dup), and one
/// O_RDWR|O_NONBLOCK description alone with its FIFO; buffered records of both writers
/// survive, each exactly once, in order.
#[test]
fn named_fifos_across_processes() {
    let _t = serial();
    let mut w = Workload::start("fifo", &[]);
    let kids = info_pids(&w, &["a", "b"]);
    dump_and_restore_tree(&mut w, &kids);
    if !direct() {
        let img = inspect_json(&mut w);
        let mut b = buffered_bytes(&img, &["fifo"]);
        b.sort();
        // fifo2: 100 bytes; fifo: (300 + 200 - 60) records of 16 bytes
        assert_eq!(b, vec![100, 7040], "the image should hold both FIFOs' bytes\n{}", w.report());
    }
    w.go_and_pass();
}

/// A named FIFO whose path is gone at restore time: refused, naming the path.
#[test]
fn named_fifo_missing_at_restore_is_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("fifo", &[]);
    let kids = info_pids(&w, &["a", "b"]);
    dump_and_reap_tree(&mut w, &kids);
    let fifo2 = w.work.join("fifo2");
    fs::remove_file(&fifo2).unwrap();
    let img = w.img.clone();
    let r = w.try_restore_from(&img, &["-d"]);
    let rep = w.report();
    assert_clean_error(&r, &["fifo2", "fifo"], &rep);
    assert!(!pid_exists(w.pid), "the root exists after a refused restore");
    for k in &kids {
        assert!(!pid_exists(*k), "{k} exists after a refused restore");
    }
    // put it back (a FIFO again): the restore goes through
    let c = std::ffi::CString::new(fifo2.to_str().unwrap()).unwrap();
    // SAFETY: plain mkfifo on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    w.restore();
    w.go_and_pass();
}


/// A helper process outside the tree opens the workload's fifo2 O_RDWR (as its fd 3),
/// runs the shell commands `then`, and stays.
fn hold_fifo2(w: &mut Workload, then: &str) {
    let fifo2 = w.work.join("fifo2");
    let script = format!("exec 3<>'{}'; {then} echo held; exec sleep 60", fifo2.display());
    w.spawn_helper(std::path::Path::new("/bin/bash"), &["-c".into(), script.into()], "holder");
    assert!(wait_until(Duration::from_secs(10), || w.helper_output("holder").contains("held")), "helper did not open fifo2");
}

/// A FIFO also held open by a process outside the tree: its bytes are left in the
/// kernel with that process (not saved), and the restored descriptions attach to the
/// same FIFO again, so the 100 bytes are read exactly once.
#[test]
fn named_fifo_also_open_outside_the_tree() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("fifo", &[]);
    let kids = info_pids(&w, &["a", "b"]);
    hold_fifo2(&mut w, "");
    dump_and_restore_tree(&mut w, &kids);
    let img = inspect_json(&mut w);
    let f2: Vec<serde_json::Value> = img["processes"][0]["fds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["path"].as_str().is_some_and(|p| p.ends_with("/fifo2")))
        .cloned()
        .collect();
    assert_eq!(f2.len(), 1, "{}", w.report());
    assert_eq!(f2[0]["buffered_bytes"], 0, "bytes of a FIFO open elsewhere must not be saved\n{}", w.report());
    assert!(f2[0]["external"].as_str().unwrap_or("").contains("sleep"), "{f2:?}\n{}", w.report());
    w.go_and_pass();
}

/// Bytes appeared in a FIFO between dump and restore (another process wrote into it
/// and still holds it): refused, rather than mixing them with the image's.
#[test]
fn named_fifo_with_foreign_bytes_at_restore_is_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("fifo", &[]);
    let kids = info_pids(&w, &["a", "b"]);
    dump_and_reap_tree(&mut w, &kids);
    hold_fifo2(&mut w, "printf xyz >&3;");
    let img = w.img.clone();
    let r = w.try_restore_from(&img, &["-d"]);
    let rep = w.report();
    assert_clean_error(&r, &["fifo2", "3 bytes"], &rep);
    assert!(!pid_exists(w.pid), "the root exists after a refused restore");
    w.kill_helpers();
    w.restore();
    w.go_and_pass();
}
