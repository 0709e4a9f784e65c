//! hugetlb memory: private and shared MAP_HUGETLB mappings, a SHM_HUGETLB SysV segment
//! and an MFD_HUGETLB memfd, held by a parent and a child (mem_hugetlb.c checks the
//! contents, each region's KernelPageSize, that never-touched huge pages are still
//! absent, and that the shared objects are still shared). The huge page pools start
//! empty on the test machine: each test reserves what it needs and puts the old size
//! back when it ends, even on failure (`Pool`).

mod common;
use common::*;

use std::path::PathBuf;

/// A huge page pool of one size resized for a test; the old size is written back on
/// drop.
struct Pool {
    path: PathBuf,
    old: String,
}

impl Pool {
    /// Sets the pool of `kb` kB pages to `n` pages; None (and nothing changed) when the
    /// kernel cannot give that many (memory too fragmented for 1 GiB pages).
    fn reserve(kb: u64, n: u64) -> Option<Pool> {
        let path = PathBuf::from(format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB/nr_hugepages"));
        let old = std::fs::read_to_string(&path).ok()?.trim().to_string();
        let p = Pool { path, old };
        p.set(n);
        (p.get() >= n).then_some(p)
    }
    fn set(&self, n: u64) {
        let _ = std::fs::write(&self.path, n.to_string());
    }
    fn get(&self) -> u64 {
        Pool::read(&self.path)
    }
    /// Its free pages (free_hugepages).
    fn free(&self) -> u64 {
        Pool::read(&self.path.with_file_name("free_hugepages"))
    }
    fn read(path: &std::path::Path) -> u64 {
        std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.old);
    }
}

/// 2 MiB pages: the parent's private mapping reserves 4, the child's (mapped again at
/// restore) 4 more, shared 2, SysV 1, memfd 2; room to spare.
const POOL_2M: u64 = 24;

fn pool_2m() -> Pool {
    Pool::reserve(2048, POOL_2M).expect("cannot reserve 2 MiB huge pages")
}

/// Killing dump of mem_hugetlb's parent and child (both reaped).
fn dump_tree(w: &mut Workload) {
    let kid: i32 = w.info("child").parse().unwrap();
    dump_and_reap_tree(w, &[kid]);
}

/// Starts mem_hugetlb with `args`, dumps the tree (killing), checks that the image
/// stores less than 9 MiB of pages (the written 4 KiB pages only: about 2 MiB per
/// private copy, 2 MiB shared, 64 KiB SysV, 8 KiB memfd, 8 KiB of a 1 GiB page; not
/// the never-touched or zero parts of the huge pages), restores it and lets both
/// processes check their values.
fn roundtrip_hugetlb(args: &[&str]) {
    let mut w = Workload::start("mem_hugetlb", args);
    if !direct() {
        dump_tree(&mut w);
        let b = pages_bytes(&w);
        assert!(b < 9 << 20, "the image stores {b} bytes of pages (zero or untouched huge pages stored?)\n{}", w.report());
        w.restore();
    }
    w.go_and_pass();
}

/// Every kind, killing dump: values checked inside both processes; only the written
/// 4 KiB pages are stored.
#[test]
fn hugetlb_private_shared_sysv_memfd() {
    let _t = serial();
    let _pool = pool_2m();
    roundtrip_hugetlb(&[]);
}

/// --leave-running: the dumped tree keeps its huge pages and passes its own checks;
/// the dump took no huge page from the pool (it faulted in none of the never-touched
/// ones, and reading the child's private pages, still shared copy-on-write with the
/// parent, did not un-share them).
#[test]
fn hugetlb_leave_running() {
    let _t = serial();
    let pool = pool_2m();
    let mut w = Workload::start("mem_hugetlb", &[]);
    let free = pool.free();
    w.dump_leave_running();
    assert_eq!(pool.free(), free, "free 2 MiB huge pages before and after the dump\n{}", w.report());
    w.go_and_pass();
}

/// A 1 GiB page (private) next to the 2 MiB ones: mapped again with MAP_HUGE_1GB, and
/// only its two written 4 KiB pages stored. Skipped when the host cannot give a 1 GiB
/// page.
#[test]
fn hugetlb_one_gib_page() {
    let _t = serial();
    let _pool = pool_2m();
    let Some(_big) = Pool::reserve(1 << 20, 1) else {
        eprintln!("no 1 GiB huge page available: skipped");
        return;
    };
    roundtrip_hugetlb(&["1g"]);
}

/// A pool too small at restore: refused before anything is created, one line naming
/// how many pages of which size; with the pool back, the same image restores.
#[test]
fn hugetlb_pool_too_small_then_restored() {
    let _t = serial();
    skip_if_direct!();
    let pool = pool_2m();
    let mut w = Workload::start("mem_hugetlb", &[]);
    dump_tree(&mut w);
    pool.set(3);
    let r = w.try_restore(&[]);
    let rep = w.report();
    assert_clean_error(&r, &["huge pages of 2048 kB", "nr_hugepages"], &rep);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let strays = reap_strays(false);
    assert!(strays.is_empty(), "a refused restore left processes behind: {strays:?}\n{rep}");
    assert!(!pid_exists(w.pid), "pid {} exists after a refused restore\n{rep}", w.pid);
    pool.set(POOL_2M);
    w.restore();
    w.go_and_pass();
}
