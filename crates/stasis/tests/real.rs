//! Real programs nobody here wrote: Debian's python3 and xz.

mod common;
use common::*;
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::time::Duration;

fn lines_of(p: &Path) -> Vec<String> {
    fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect()
}

/// A CPython loop with a hash chain: after the restore the counter in
/// progress.txt continues from where the dump stopped it (no restart, no
/// rewind), and the script's own end-of-run verification passes.
#[test]
fn python_counter_continues() {
    let _t = serial();
    let mut w = Workload::new("py-counter");
    let script = Path::new(WORKLOADS).join("real_counter.py");
    w.spawn(&python3(), &[script.into_os_string(), w.work.clone().into_os_string()]);
    w.wait_ready();
    let progress = w.work.join("progress.txt");
    assert!(wait_until(Duration::from_secs(20), || lines_of(&progress).len() >= 100), "{}", w.report());
    w.dump();
    let at_dump = lines_of(&progress).len();
    w.restore();
    let ok = wait_until(Duration::from_secs(20), || lines_of(&progress).len() >= at_dump + 50);
    assert!(ok, "progress did not continue after restore (stuck at {at_dump} lines)\n{}", w.report());
    let lines = lines_of(&progress);
    if !direct() {
        let next = lines[at_dump].split(' ').next().unwrap_or("");
        assert_eq!(
            next,
            (at_dump + 1).to_string(),
            "line after the dump point should continue the count (restart or rewind?)\n{}",
            w.report()
        );
    }
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{} ", i + 1)), "progress.txt line {} is {l:?}\n{}", i + 1, w.report());
    }
    w.go_and_pass();
}

/// CPython with 4 worker threads: same TIDs after restore, every worker's
/// hash chain and counter continue, the script's verification passes.
#[test]
fn python_threads_continue() {
    let _t = serial();
    let mut w = Workload::new("py-threads");
    let script = Path::new(WORKLOADS).join("real_threads.py");
    w.spawn(&python3(), &[script.into_os_string(), w.work.clone().into_os_string()]);
    w.wait_ready();
    assert_eq!(w.info("threads"), "5", "{}", w.report());
    let progress = w.work.join("progress.txt");
    assert!(wait_until(Duration::from_secs(20), || lines_of(&progress).len() >= 200), "{}", w.report());
    let tids_before: Vec<i32> = tasks_of(w.pid).iter().map(|t| t.0).collect();
    assert_eq!(tids_before.len(), 5, "{}", w.report());
    w.dump();
    let at_dump = lines_of(&progress).len();
    w.restore();
    if !direct() {
        let tids_after: Vec<i32> = tasks_of(w.pid).iter().map(|t| t.0).collect();
        assert_eq!(tids_after, tids_before, "TIDs changed\n{}", w.report());
    }
    let ok = wait_until(Duration::from_secs(20), || lines_of(&progress).len() >= at_dump + 100);
    assert!(ok, "workers did not continue after restore (stuck at {at_dump} lines)\n{}", w.report());
    w.go_and_pass();
}

/// Deterministic, moderately compressible text.
fn gen_text(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545F4914F6CDD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words: Vec<Vec<u8>> = (0..4000)
        .map(|_| {
            let n = 2 + (next() % 8) as usize;
            (0..n).map(|_| b'a' + (next() % 26) as u8).collect()
        })
        .collect();
    let mut out = Vec::with_capacity(len + 64);
    while out.len() < len {
        for i in 0..12 {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(&words[(next() % 4000) as usize]);
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

/// `xz -T2 -4` (multi-threaded, ~6 s here) compressing 24 MiB, dumped mid-run: after
/// restore it completes, exits 0, and its output decompresses to exactly
/// the input.
#[test]
fn xz_multithreaded_compression() {
    let _t = serial();
    let xz = Path::new("/usr/bin/xz");
    assert!(xz.exists(), "xz not installed (apt-get install xz-utils)");
    let mut w = Workload::new("xz");
    let input = w.work.join("input.txt");
    let data = gen_text(24 << 20);
    write_file(&input, &data);
    let out = w.work.join("out.xz");
    let args: Vec<OsString> =
        ["-T2", "-4", "--block-size=1MiB", "-c"].iter().map(OsString::from).chain([input.clone().into()]).collect();
    w.spawn_with_stdout(xz, &args, Some(&out));
    let ok = wait_until(Duration::from_secs(20), || file_len(&out) > 0 && w.thread_count() >= 3);
    assert!(ok, "xz did not get going with worker threads ({} tasks)\n{}", w.thread_count(), w.report());
    std::thread::sleep(Duration::from_millis(500));
    assert!(w.original_running(), "xz finished before the dump; input too small for this machine\n{}", w.report());
    let size_at_dump = file_len(&out);
    w.dump();
    w.restore();
    let st = w.wait_exit(Duration::from_secs(180));
    assert_eq!(st, Exit::Code(0), "xz exit status\n{}", w.report());
    assert!(file_len(&out) > size_at_dump, "no output after the restore\n{}", w.report());
    let dec = std::process::Command::new(xz)
        .arg("-dc")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run xz -dc");
    assert!(
        dec.status.success(),
        "xz -dc of the output failed: {}\n{}",
        String::from_utf8_lossy(&dec.stderr),
        w.report()
    );
    assert!(dec.stdout == data, "decompressed output ({} bytes) differs from the input ({} bytes)\n{}", dec.stdout.len(), data.len(), w.report());
}

/// CPython asyncio (epoll + a unix socketpair self-pipe, woken from a thread): the
/// sequence carries on across the checkpoint without a gap or a repeat.
#[test]
fn python_asyncio_continues() {
    let _t = serial();
    let mut w = Workload::new("py-asyncio");
    let script = Path::new(WORKLOADS).join("real_asyncio.py");
    w.spawn(&python3(), &[script.into_os_string(), w.work.clone().into_os_string()]);
    w.wait_ready();
    let progress = w.work.join("progress.txt");
    assert!(wait_until(Duration::from_secs(20), || lines_of(&progress).len() >= 50), "{}", w.report());
    w.dump();
    let at_dump = lines_of(&progress).len();
    w.restore();
    let ok = wait_until(Duration::from_secs(20), || lines_of(&progress).len() >= at_dump + 20);
    assert!(ok, "asyncio loop did not continue after restore (stuck at {at_dump} lines)\n{}", w.report());
    w.go_and_pass();
}

/// Debian's bash running a loop that forks `sleep` each round (a process tree whose
/// parent is blocked in wait4 on a child): after the restore the count continues from
/// where the dump stopped it, with no gap and no repeat.
#[test]
fn bash_loop_with_children_continues() {
    let _t = serial();
    let mut w = Workload::new("bash-loop");
    let script = "echo READY; i=0; while [ ! -e go ]; do i=$((i+1)); echo $i >> count.txt; sleep 0.05; done; \
                  n=0; ok=1; while read -r l; do n=$((n+1)); [ \"$l\" = \"$n\" ] || ok=0; done < count.txt; \
                  if [ $ok = 1 ]; then echo PASS; else echo 'FAIL: count.txt is not 1..n'; fi";
    w.spawn(Path::new("/bin/bash"), &[OsString::from("-c"), OsString::from(script)]);
    w.wait_ready();
    let count = w.work.join("count.txt");
    assert!(wait_until(Duration::from_secs(20), || lines_of(&count).len() >= 10), "{}", w.report());
    w.dump();
    // the sleep child killed with its parent was re-parented to us: reap it
    assert!(wait_until(Duration::from_secs(10), || reap_strays(false).is_empty() && stray_children().is_empty()));
    let at_dump = lines_of(&count).len();
    w.restore();
    let ok = wait_until(Duration::from_secs(20), || lines_of(&count).len() >= at_dump + 10);
    assert!(ok, "bash did not continue after restore (stuck at {at_dump} lines)\n{}", w.report());
    w.go_and_pass();
}
