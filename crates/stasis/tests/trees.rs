//! Process trees that check themselves after the restore: a shell-style pipeline with
//! bytes in flight in both pipes, a pre-forking server with a shared job queue, a
//! parent reaping zombies with distinct statuses, a shared file offset and shared
//! memory counters (anonymous and POSIX shm), 64 MiB of private memory shared
//! copy-on-write by five processes (stored once), and bash running a loop of
//! `generate | sort | gzip` pipelines compared against an uninterrupted run.

mod common;
use common::*;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// producer | filter | consumer: after the restore the consumer gets every byte, in
/// order, transformed once (its own byte-by-byte check, count and checksum).
#[test]
fn pipeline_with_bytes_in_flight() {
    let _t = serial();
    let mut w = Workload::start("tree_pipeline", &[]);
    let kids = info_pids(&w, &["producer", "filter", "consumer"]);
    assert_eq!(w.info("in_flight"), "28000+12000");
    dump_and_restore_tree(&mut w, &kids);
    if !direct() {
        let img = inspect_json(&mut w);
        let mut b = buffered_bytes(&img, &["pipe-read", "pipe-write"]);
        b.sort();
        assert_eq!(b, vec![12000, 28000], "the image should hold both pipes' bytes\n{}", w.report());
    }
    w.go_and_pass();
    assert_eq!(w.info("consumer_bytes"), (4u64 << 20).to_string(), "{}", w.report());
}

/// A pre-forking server: after the restore every job is answered exactly once by one
/// of the (same) workers.
#[test]
fn preforking_server_processes_every_job_once() {
    let _t = serial();
    let mut w = Workload::start("tree_prefork", &[]);
    let kids = info_pids(&w, &["worker"]);
    assert_eq!(kids.len(), 4);
    dump_and_restore_tree(&mut w, &kids);
    if !direct() {
        let img = inspect_json(&mut w);
        let mut b = buffered_bytes(&img, &["pipe-read", "pipe-write"]);
        b.sort();
        // 20 answers of 16 bytes; 960 jobs of 8 bytes
        assert_eq!(b, vec![320, 7680], "the image should hold queued jobs and answers\n{}", w.report());
    }
    w.go_and_pass();
}

/// Zombies with distinct exit statuses (two killed by signals) are zombies again after
/// the restore, with the same pids, and the parent reaps each with its status.
#[test]
fn parent_reaps_zombies_after_restore() {
    let _t = serial();
    let mut w = Workload::start("tree_zombies", &[]);
    let zombies = info_pids(&w, &["z0", "z1", "z2", "z3", "z4", "z5"]);
    let live = info_pids(&w, &["live"]);
    let all: Vec<i32> = zombies.iter().chain(live.iter()).copied().collect();
    dump_and_restore_tree(&mut w, &all);
    if !direct() {
        for z in &zombies {
            assert_eq!(stat_of(*z).map(|s| s.0), Some('Z'), "pid {z} is not a zombie after the restore\n{}", w.report());
            assert_eq!(stat_of(*z).map(|s| s.1), Some(w.pid), "zombie {z} has the wrong parent\n{}", w.report());
        }
        let img = inspect_json(&mut w);
        let n = img["processes"].as_array().map(|a| a.iter().filter(|p| p["zombie"] == true).count()).unwrap_or(0);
        assert_eq!(n, 6, "the image should record 6 zombies\n{}", w.report());
    }
    w.go_and_pass();
}

/// One open file description shared by two processes (a read in one moves the other's
/// offset), an anonymous shared counter and a POSIX shm counter both keep counting.
#[test]
fn shared_offset_and_shared_memory_counters() {
    let _t = serial();
    let mut w = Workload::start("tree_shared", &[]);
    let kids = info_pids(&w, &["child"]);
    let shm = w.info("shm");
    dump_and_restore_tree(&mut w, &kids);
    w.go_and_pass();
    assert!(!Path::new(&shm).exists(), "the workload did not remove {shm}");
}

/// A parent fills 64 MiB and forks 4 children; each process then rewrites a few pages
/// of its copy (page 3 in every child, each differently, plus pages of its own). The
/// pages still shared copy-on-write are stored once: the image holds about 64 MiB, not
/// 5 × 64 MiB. After the restore every process checks all its 64 MiB.
#[test]
fn cow_shared_private_memory_is_stored_once() {
    let _t = serial();
    let mut w = Workload::start("tree_cow", &[]);
    let kids = info_pids(&w, &["child"]);
    assert_eq!(kids.len(), 4, "{}", w.report());
    dump_and_restore_tree(&mut w, &kids);
    if !direct() {
        let img = inspect_json(&mut w);
        const MIB_PAGES: u64 = 256;
        let restored = img["pages"]["pages"].as_u64().unwrap_or(0);
        let stored = img["pages"]["stored"].as_u64().unwrap_or(u64::MAX);
        let file_bytes: u64 =
            img["sizes"]["pages"].as_array().into_iter().flatten().map(|f| f["bytes"].as_u64().unwrap_or(0)).sum();
        // each process's whole 64 MiB is in the page index...
        assert!(restored >= 5 * 64 * MIB_PAGES, "page index covers {restored} pages, want ≥ 5 × 64 MiB\n{}", w.report());
        // ...but the shared pages are stored once (plus the rewritten pages and each
        // process's own small stack/libc pages)
        assert!(stored < 72 * MIB_PAGES, "{stored} pages stored, want about 64 MiB (not 5 × 64 MiB)\n{}", w.report());
        assert!(
            file_bytes < (72 << 20) + 4 * 4096,
            "pages files hold {file_bytes} bytes, want about 64 MiB (not 5 × 64 MiB)\n{}",
            w.report()
        );
    }
    w.go_and_pass();
}

/// A field of /proc/PID/smaps_rollup (kB).
fn rollup_kb(pid: i32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|v| v.strip_prefix(':')).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()))
        .unwrap_or(0)
}

/// Proportional set size of a process (kB), from /proc/PID/smaps_rollup: pages shared
/// with N processes count 1/N.
fn pss_kb(pid: i32) -> u64 {
    rollup_kb(pid, "Pss")
}

/// (Pss, Rss, Private_Dirty) summed over `pids` (kB).
fn tree_mem_kb(pids: &[i32]) -> (u64, u64, u64) {
    pids.iter().fold((0, 0, 0), |(a, b, c), &p| (a + pss_kb(p), b + rollup_kb(p, "Rss"), c + rollup_kb(p, "Private_Dirty")))
}

/// Private pages still shared copy-on-write between a parent and its four children stay
/// shared after the restore: the tree's summed Pss (64 MiB shared by five processes counts
/// once) is within 15% of what it was before the dump (restored as five private copies
/// it would be five times as large), Private_Dirty stays small, and a dump of the
/// restored tree stores no more pages than the first. Copy-on-write still works: every
/// process checks all of its 64 MiB, each child then rewrites a shared page and the
/// parent checks that none of that reached it.
#[test]
fn cow_pages_stay_shared_after_restore() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("tree_cow", &[]);
    let kids = info_pids(&w, &["child"]);
    let all: Vec<i32> = std::iter::once(w.pid).chain(kids.iter().copied()).collect();
    let before = tree_mem_kb(&all);
    dump_and_restore_tree(&mut w, &kids);
    let after = tree_mem_kb(&all);
    eprintln!("tree_cow (Pss, Rss, Private_Dirty) kB: before the dump {before:?}, after the restore {after:?}");
    assert!(
        after.0 * 100 <= before.0 * 115,
        "summed Pss {} kB after the restore vs {} kB before: the copy-on-write pages are no longer shared\n{}",
        after.0,
        before.0,
        w.report()
    );
    assert!(after.2 < 8 * 1024, "Private_Dirty {} kB after the restore: the 64 MiB were copied per process\n{}", after.2, w.report());
    let stored = |img: &serde_json::Value| img["pages"]["stored"].as_u64().unwrap_or(u64::MAX);
    let first = stored(&inspect_json(&mut w));
    // a dump of the restored tree is not larger than the first one
    let img2 = w.tmp.path.join("img2");
    let pid = w.pid.to_string();
    let r = w.stasis(&[OsStr::new("dump"), OsStr::new("-t"), OsStr::new(&pid), OsStr::new("-D"), img2.as_os_str(), OsStr::new("--leave-running")]);
    assert!(r.ok(), "dump --leave-running of the restored tree failed\n{}", w.report());
    let r = w.stasis(&[OsStr::new("inspect"), img2.as_os_str(), OsStr::new("--json")]);
    let second = stored(&serde_json::from_str(&r.stdout).unwrap_or_default());
    assert!(second <= first + 64, "the restored tree's image stores {second} pages, the original's {first}\n{}", w.report());
    w.go_and_pass();
}

/// A --leave-running dump must not un-share the tree's copy-on-write pages (reading them
/// with a pinning interface would give a process a private copy of each page it read):
/// the root's proportional set size stays about the same across the dump (un-shared, its
/// 64 MiB would count whole instead of a fifth), and the tree then finishes its own
/// checks.
#[test]
fn leave_running_dump_keeps_cow_pages_shared() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("tree_cow", &[]);
    let before = pss_kb(w.pid);
    w.dump_leave_running();
    let after = pss_kb(w.pid);
    assert!(
        after < before + 8 * 1024,
        "the root's Pss grew from {before} kB to {after} kB across a --leave-running dump (COW pages un-shared)\n{}",
        w.report()
    );
    w.go_and_pass();
}

/// The bash script: rounds of `generate | sort | gzip -n > f; md5sum f >> sums.txt`.
const BASH_PIPELINES: &str = r#"
set -e
n=${ROUNDS:-60}
echo READY
for r in $(seq 1 $n); do
  for i in $(seq 1 4000); do echo "$(( (i * 7919 + r * 104729) % 100003 )) line $i of round $r"; done \
    | sort -n | gzip -n -1 > round.gz
  echo "$r $(md5sum < round.gz | cut -d' ' -f1) $(gzip -dc round.gz | wc -l)" >> sums.txt
done
echo PASS
"#;

fn lines_of(p: &Path) -> Vec<String> {
    fs::read_to_string(p).unwrap_or_default().lines().map(str::to_string).collect()
}

/// Debian's bash running a loop of `bash-generator | sort | gzip` pipelines is dumped
/// mid-loop (a pipeline of four processes plus zombies, bytes in pipes), restored, and
/// writes exactly what an uninterrupted run writes.
#[test]
fn bash_pipeline_loop_matches_an_uninterrupted_run() {
    let _t = serial();
    for tool in ["/bin/bash", "/usr/bin/sort", "/bin/gzip", "/usr/bin/md5sum"] {
        assert!(Path::new(tool).exists(), "{tool} is not installed");
    }
    let args = [OsString::from("-c"), OsString::from(BASH_PIPELINES)];
    // the reference: an uninterrupted run
    let mut r = Workload::new("bash-pipes-ref");
    r.spawn(Path::new("/bin/bash"), &args);
    let st = r.wait_exit(Duration::from_secs(120));
    r.assert_pass(st);
    let want = lines_of(&r.work.join("sums.txt"));
    assert_eq!(want.len(), 60, "{}", r.report());

    let mut w = Workload::new("bash-pipes");
    w.spawn(Path::new("/bin/bash"), &args);
    w.wait_ready();
    let sums = w.work.join("sums.txt");
    assert!(wait_until(Duration::from_secs(60), || lines_of(&sums).len() >= 8), "{}", w.report());
    // dump while a pipeline runs: the root has children that are not zombies
    assert!(
        wait_until(Duration::from_secs(10), || {
            let kids = fs::read_to_string(format!("/proc/{}/task/{}/children", w.pid, w.pid)).unwrap_or_default();
            kids.split_whitespace().filter_map(|k| k.parse::<i32>().ok()).filter(|k| stat_of(*k).is_some_and(|s| s.0 != 'Z')).count() >= 2
        }),
        "no pipeline running\n{}",
        w.report()
    );
    let before = lines_of(&sums).len();
    let tree: Vec<i32> = {
        let mut all = Vec::new();
        let mut todo = vec![w.pid];
        while let Some(p) = todo.pop() {
            let kids = fs::read_to_string(format!("/proc/{p}/task/{p}/children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse::<i32>().ok()) {
                all.push(k);
                todo.push(k);
            }
        }
        all
    };
    dump_and_restore_tree(&mut w, &[]);
    if !direct() {
        let img = inspect_json(&mut w);
        let n = img["processes"].as_array().map(|a| a.len()).unwrap_or(0);
        assert!(n >= 3, "the image should hold a pipeline (processes: {n}; tree seen before: {tree:?})\n{}", w.report());
        assert!(lines_of(&sums).len() < 60, "the loop had finished before the dump\n{}", w.report());
    }
    let st = w.wait_exit(Duration::from_secs(120));
    w.assert_pass(st);
    let got = lines_of(&sums);
    assert!(got.len() > before, "{}", w.report());
    assert_eq!(got, want, "sums.txt differs from the uninterrupted run's\n{}", w.report());
}

/// Bytes in the image's pages files.
fn pages_file_bytes(img: &serde_json::Value) -> u64 {
    img["sizes"]["pages"].as_array().into_iter().flatten().map(|f| f["bytes"].as_u64().unwrap_or(0)).sum()
}

/// A 64 MiB MAP_SHARED|MAP_ANONYMOUS region mapped by 4 processes is one object: the
/// image holds its pages once (~64 MiB, not 4 × 64 MiB), and after the restore the four
/// still share it (each sees the others' markers written before the dump and after the
/// restore, and a counter all four bump).
#[test]
fn shared_anonymous_memory_of_four_processes_is_stored_once() {
    let _t = serial();
    let mut w = Workload::start("mem_shared_tree", &[]);
    let kids = info_pids(&w, &["child"]);
    assert_eq!(kids.len(), 3, "{}", w.report());
    dump_and_restore_tree(&mut w, &kids);
    if !direct() {
        let img = inspect_json(&mut w);
        let stored = img["pages"]["stored"].as_u64().unwrap_or(u64::MAX);
        let bytes = pages_file_bytes(&img);
        // 64 MiB of the region plus each process's few private pages
        assert!(stored < 70 * 256, "{stored} pages stored, want about 64 MiB (16384 pages), not 4 × 64 MiB\n{}", w.report());
        assert!(bytes < 70 << 20, "pages files hold {bytes} bytes, want about 64 MiB, not 4 × 64 MiB\n{}", w.report());
        assert!(stored >= 64 * 256, "{stored} pages stored: the region's 64 MiB are missing\n{}", w.report());
    }
    w.go_and_pass();
}

/// A foreground `stasis restore` (it waits for the tree) holds nothing of the image
/// while it waits: the restored tree's shared anonymous memory can be dumped again
/// (stasis used to keep its own mapping of it, and the dump refused it as memory shared
/// with a process outside the tree); the tree then finishes its checks.
#[test]
fn foreground_restore_lets_the_restored_tree_be_dumped_again() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("mem_shared_tree", &[]);
    let kids = info_pids(&w, &["child"]);
    dump_and_reap_tree(&mut w, &kids);
    let all: Vec<i32> = std::iter::once(w.pid).chain(kids.iter().copied()).collect();
    let exe = workload_bin("mem_shared_tree");
    let (dir, work) = (w.tmp.path.clone(), w.work.clone());
    let again = std::thread::spawn(move || {
        // restored: every process runs the workload again and nobody traces it
        let done = || {
            all.iter().all(|&p| {
                fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe)
                    && tasks_of(p).iter().all(|(_, st, tr)| *tr == 0 && *st != 't')
            })
        };
        let ok = wait_until(Duration::from_secs(30), done);
        let img2 = dir.join("img2");
        let pid = all[0].to_string();
        let r = ok.then(|| stasis(&dir, &["dump", "-t", &pid, "-D", img2.to_str().unwrap(), "--leave-running"]));
        fs::write(work.join("go"), b"").unwrap();
        r
    });
    let st = w.restore_foreground(Duration::from_secs(30));
    let r = again.join().unwrap();
    let r = r.unwrap_or_else(|| panic!("the tree was not restored\n{}", w.report()));
    assert!(r.ok(), "dumping the tree while a foreground restore waits for it failed\n{r}\n{}", w.report());
    w.assert_pass(st);
}
