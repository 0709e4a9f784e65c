//! Restore refusals: exit 1 quickly with one `stasis: error: ` line, and
//! no process (with the image's pid or any other) left behind.  Where the
//! refusal was about a damaged copy, the pristine image still restores.

mod common;
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const QUICK: Duration = Duration::from_secs(5);

/// A dumped `basic` workload (the original is reaped).
fn dumped(name: &str, args: &[&str]) -> Workload {
    let mut w = Workload::start(name, args);
    w.dump();
    w
}

fn damaged_copy(w: &Workload, label: &str) -> PathBuf {
    let d = w.tmp.path.join(format!("img-{label}"));
    let _ = fs::remove_dir_all(&d);
    copy_dir(&w.img, &d);
    d
}

/// Restore from `img` must be refused; nothing may be left running.
/// `go` is created first: if the engine wrongly restores, the workload
/// finishes at once (and a foreground stasis returns) instead of hanging.
fn assert_refused(w: &mut Workload, img: &Path, detach: bool, needles: &[&str], what: &str) {
    w.go();
    let pf = w.tmp.path.join("refused.pid");
    let pfs = pf.to_string_lossy().to_string();
    let extra: Vec<&str> = if detach { vec!["-d", "--pidfile", &pfs] } else { vec![] };
    let r = w.try_restore_timeout(img, &extra, Duration::from_secs(30));
    let ctx = format!("[{what}]\n{}", w.report());
    let out = w.output();
    let after_ready = out.split_once("READY\n").map(|x| x.1).unwrap_or("");
    assert!(
        after_ready.is_empty() && !pid_exists(w.pid),
        "restore was NOT refused: a restored workload ran (or runs) despite the damage\n{ctx}"
    );
    assert_clean_error(&r, needles, &ctx);
    assert!(r.elapsed < QUICK, "refusal took {:.2?} [{what}]", r.elapsed);
    std::thread::sleep(Duration::from_millis(50));
    let strays = reap_strays(false);
    assert!(strays.is_empty(), "a refused restore left processes behind: {strays:?} [{what}]\n{}", w.report());
    assert!(!pid_exists(w.pid), "pid {} exists after a refused restore [{what}]", w.pid);
}

fn offsets(len: u64, n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).map(|i| i * len / n).collect();
    v.extend([1, len / 2, len.saturating_sub(2), len - 1]);
    v.sort();
    v.dedup();
    v.retain(|o| *o < len);
    v
}

fn finish_with_pristine(mut w: Workload) {
    w.restore();
    w.go_and_pass();
}

#[test]
fn truncated_pages_img() {
    let _t = serial();
    skip_if_direct!();
    let mut w = dumped("basic", &[]);
    let len = file_len(&w.img.join("pages.img"));
    assert!(len > 4096, "pages.img is only {len} bytes");
    for (i, to) in [len / 2, len - 1, 4096, 0].into_iter().enumerate() {
        let d = damaged_copy(&w, "trunc");
        fs::OpenOptions::new().write(true).open(d.join("pages.img")).unwrap().set_len(to).unwrap();
        assert_refused(&mut w, &d, i % 2 == 0, &[], &format!("pages.img truncated to {to} of {len}"));
    }
    finish_with_pristine(w);
}

#[test]
fn flipped_byte_in_pages_img() {
    let _t = serial();
    skip_if_direct!();
    let mut w = dumped("basic", &[]);
    let len = file_len(&w.img.join("pages.img"));
    for (i, off) in offsets(len, 8).into_iter().enumerate() {
        let d = damaged_copy(&w, "flip-pages");
        flip_byte(&d.join("pages.img"), off);
        assert_refused(&mut w, &d, i % 2 == 0, &[], &format!("pages.img byte {off} of {len} flipped"));
    }
    finish_with_pristine(w);
}

#[test]
fn flipped_byte_in_manifest_img() {
    let _t = serial();
    skip_if_direct!();
    let mut w = dumped("basic", &[]);
    let len = file_len(&w.img.join("manifest.img"));
    for (i, off) in offsets(len, 24).into_iter().enumerate() {
        let d = damaged_copy(&w, "flip-manifest");
        flip_byte(&d.join("manifest.img"), off);
        assert_refused(&mut w, &d, i % 2 == 1, &[], &format!("manifest.img byte {off} of {len} flipped"));
    }
    finish_with_pristine(w);
}

#[test]
fn truncated_or_missing_manifest_img() {
    let _t = serial();
    skip_if_direct!();
    let mut w = dumped("basic", &[]);
    let len = file_len(&w.img.join("manifest.img"));
    for to in [len - 1, len / 2, 16.min(len - 1), 0] {
        let d = damaged_copy(&w, "trunc-manifest");
        fs::OpenOptions::new().write(true).open(d.join("manifest.img")).unwrap().set_len(to).unwrap();
        assert_refused(&mut w, &d, true, &[], &format!("manifest.img truncated to {to} of {len}"));
    }
    let d = damaged_copy(&w, "no-manifest");
    fs::remove_file(d.join("manifest.img")).unwrap();
    assert_refused(&mut w, &d, true, &[], "manifest.img missing");
    let d = damaged_copy(&w, "no-pages");
    fs::remove_file(d.join("pages.img")).unwrap();
    assert_refused(&mut w, &d, false, &[], "pages.img missing");
    let d = damaged_copy(&w, "extra-bytes");
    let mut f = fs::OpenOptions::new().append(true).open(d.join("pages.img")).unwrap();
    std::io::Write::write_all(&mut f, &[0u8; 4096]).unwrap();
    drop(f);
    assert_refused(&mut w, &d, true, &[], "pages.img with 4096 extra bytes");
    finish_with_pristine(w);
}

#[test]
fn missing_image_dir() {
    let _t = serial();
    skip_if_direct!();
    let tmp = TempDir::new("noimg");
    let r = stasis(&tmp.path, &["restore", "-D", tmp.path.join("nope").to_str().unwrap(), "-d"]);
    assert_clean_error(&r, &["nope"], &"(missing image dir)");
    let r = stasis(&tmp.path, &["restore", "-D", tmp.path.to_str().unwrap()]);
    assert_clean_error(&r, &[], &"(empty image dir)");
    assert!(reap_strays(false).is_empty());
}

/// Set a file's mtime (and atime) back.
fn set_times(path: &Path, mtime: std::time::SystemTime) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(mtime).set_accessed(mtime)).unwrap();
}

/// A privately mapped data file grew after the dump.
#[test]
fn mapped_file_grew_after_dump() {
    let _t = serial();
    skip_if_direct!();
    let mut w = dumped("mem_file", &[]);
    let data = w.work.join("data.bin");
    let mut f = fs::OpenOptions::new().append(true).open(&data).unwrap();
    std::io::Write::write_all(&mut f, b"grown").unwrap();
    drop(f);
    let img = w.img.clone();
    assert_refused(&mut w, &img, true, &["data.bin"], "mapped file grew");
}

/// Same size, same mtime, one byte different: only a content hash (or the
/// ctime) can tell.
#[test]
fn mapped_file_content_changed_same_size_and_mtime() {
    let _t = serial();
    skip_if_direct!();
    let mut w = dumped("mem_file", &[]);
    let data = w.work.join("data.bin");
    let mtime = fs::metadata(&data).unwrap().modified().unwrap();
    flip_byte(&data, 5 * 4096 + 100); // a page the process never modified
    set_times(&data, mtime);
    let img = w.img.clone();
    assert_refused(&mut w, &img, false, &["data.bin"], "mapped file content changed");
}

/// A file the process has open (not mapped) changed size after the dump.
#[test]
fn opened_file_changed_after_dump() {
    let _t = serial();
    skip_if_direct!();
    let mut w = dumped("files_regular", &[]);
    let data = w.work.join("data.txt");
    fs::OpenOptions::new().write(true).open(&data).unwrap().set_len(100).unwrap();
    let img = w.img.clone();
    assert_refused(&mut w, &img, true, &["data.txt"], "opened file truncated");
}

/// A file the process has open was removed after the dump: refused before anything
/// is made, even with --allow-changed-files (which cannot help: the fd is opened again
/// by its path), in one line that does not claim to restore anyway.
#[test]
fn opened_file_removed_after_dump_even_with_allow_changed() {
    let _t = serial();
    skip_if_direct!();
    let mut w = dumped("files_regular", &[]);
    fs::remove_file(w.work.join("data.txt")).unwrap();
    w.go();
    let r = w.try_restore(&["-d", "--allow-changed-files"]);
    assert_clean_error(&r, &["data.txt", "no longer exists", "put the file back"], &w.report());
    assert!(!r.stderr.contains("restoring anyway"), "a warning promised a restore that cannot happen: {}", r.stderr);
    assert!(!pid_exists(w.pid), "a refused restore left pid {}", w.pid);
}

/// The pid is held by the still-running original (dump --leave-running):
/// refused, naming the holder; the original is unaffected and completes.
#[test]
fn pid_taken_by_running_original() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("basic", &[]);
    w.dump_leave_running();
    let pid = w.pid.to_string();
    let comm = w.info("comm");
    let img = w.img.clone();
    let r = w.try_restore_timeout(&img, &["-d"], Duration::from_secs(30));
    let rep = w.report();
    assert_clean_error(&r, &[&pid, &comm], &rep);
    assert!(r.elapsed < QUICK, "refusal took {:.2?}", r.elapsed);
    assert!(reap_strays(false).is_empty(), "refused restore left processes behind");
    w.assert_running_untouched();
    w.go_and_pass();
}

/// A thread's TID is held by another process ("pidholder", created with
/// clone3 set_tid): refused, naming the TID and the holder; nothing with
/// the image's pid is left; after the holder goes the image restores.
#[test]
fn tid_taken_by_another_process() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("threads", &[]);
    w.wait_all_sleeping();
    let tid: i32 = w.infos("tid")[2].parse().unwrap();
    w.dump();
    let holder = workload_bin("pidholder");
    let args = vec![w.work.clone().into_os_string(), tid.to_string().into()];
    w.spawn_helper(&holder, &args, "pidholder");
    assert!(
        wait_until(Duration::from_secs(10), || w.helper_output("pidholder").contains("READY")),
        "pidholder could not take tid {tid}: {}",
        w.helper_output("pidholder")
    );
    assert_eq!(comm_of(tid), "pidholder");
    let pf = w.tmp.path.join("refused.pid").to_string_lossy().to_string();
    w.go();
    let img = w.img.clone();
    let r = w.try_restore_timeout(&img, &["-d", "--pidfile", &pf], Duration::from_secs(30));
    let rep = w.report();
    assert_clean_error(&r, &[&tid.to_string(), "pidholder"], &rep);
    assert!(!pid_exists(w.pid), "the main pid {} exists after a refused restore", w.pid);
    assert_eq!(comm_of(tid), "pidholder", "the holder of {tid} was disturbed");
    let strays = reap_strays(false);
    assert!(strays.is_empty(), "refused restore left processes behind: {strays:?}");
    // SAFETY: tid is the pidholder child of our helper, not yet reaped.
    unsafe { libc::kill(tid, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || !pid_exists(tid)), "holder {tid} did not go away");
    w.kill_helpers();
    w.restore();
    w.go_and_pass();
}

/// A manifest with valid checksums that contradicts itself (no threads; a VMA that
/// overlaps the previous one; an fd pointing at a missing object; impossible PID-namespace
/// levels, sharing flags, exit signal, /proc mounted outside a new mount namespace) is refused before any process is created, with
/// one error line.
#[test]
fn self_contradicting_manifest_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = dumped("basic", &[]);
    let img = w.img.clone();
    let orig = stasis_image::read_manifest(&img).expect("reading the image");
    let rewrite = |p: &stasis_image::Process| {
        let mut wr = stasis_image::ManifestWriter::new();
        wr.record(stasis_image::rec::PROCESS, p);
        for o in &orig.objects {
            wr.record(stasis_image::rec::OBJECT, o);
        }
        wr.record(stasis_image::rec::PAGE_INDEX, &orig.index);
        wr.finish(&img, &orig.end.shards).expect("writing the manifest");
    };
    let mut no_threads = orig.process.clone();
    no_threads.threads.clear();
    let mut overlap = orig.process.clone();
    overlap.vmas[1].start = overlap.vmas[0].start;
    let mut bad_fd = orig.process.clone();
    bad_fd.fds[0].object_id = 9999;
    let mut deep = orig.process.clone();
    deep.ns_pids = vec![deep.pid, 7, 1]; // two PID-namespace levels below stasis at once
    let mut shares = orig.process.clone();
    shares.shares_vm = true; // the root cannot share its parent's address space
    let mut exit_sig = orig.process.clone();
    exit_sig.exit_signal = 99;
    // /proc over the restorer's own /proc (the host's): never
    let mut host_proc = orig.process.clone();
    host_proc.mount_proc = true;
    let mut parent_proc = orig.process.clone();
    parent_proc.mount_proc_parent_ns = true;
    for (what, p) in [
        ("no threads", no_threads),
        ("overlapping VMAs", overlap),
        ("fd to a missing object", bad_fd),
        ("PID-namespace levels", deep),
        ("root sharing with its parent", shares),
        ("exit signal", exit_sig),
        ("/proc mounted in the restorer's mount namespace", host_proc),
        ("/proc mounted in the parent's mount namespace", parent_proc),
    ] {
        rewrite(&p);
        let r = w.try_restore_timeout(&img, &["-d"], Duration::from_secs(30));
        let rep = w.report();
        assert_clean_error(&r, &["inconsistent"], &format!("{what}\n{rep}"));
        assert!(r.elapsed < QUICK, "{what}: refusal took {:.2?}", r.elapsed);
        assert!(!pid_exists(w.pid), "{what}: refused restore left pid {}", w.pid);
    }
    rewrite(&orig.process);
    w.restore();
    w.go_and_pass();
}
