//! Memory state after restore, checked from inside each workload.
//! See tests/common/mod.rs for the protocol and tests/workloads/*.c for
//! exactly what each workload checks.

mod common;
use common::*;

/// malloc'ed chunks (brk and mmap-backed), holes, an sbrk region, sbrk(0)
/// unchanged, [heap] label kept, allocator usable afterwards.
#[test]
fn heap_brk_and_allocator() {
    let _t = serial();
    roundtrip("mem_heap", &[]);
}

/// 64 MiB private anon pattern, shared anon (rw-s), read-only anon, a
/// fixed-address mapping, a region with an munmap'ed hole.
#[test]
fn anonymous_mappings() {
    let _t = serial();
    roundtrip("mem_anon", &[]);
}

/// PROT_NONE guard pages stay PROT_NONE (maps + they still fault), a 1 GiB
/// PROT_NONE reservation with a committed window, and /proc/self/maps is
/// the same as before the dump.
#[test]
fn guard_pages_and_address_space_layout() {
    let _t = serial();
    roundtrip("mem_layout", &[]);
}

/// Never-written pages are not materialised by the restore (mincore), the
/// written ones are resident with their content, MADV_DONTNEED'ed pages
/// read as zero.
#[test]
fn untouched_pages_stay_non_resident() {
    let _t = serial();
    roundtrip("mem_sparse", &[]);
}

/// VmFlags dc, wf, hg, nh, dd, sr, rr, lo survive; contents too.
#[test]
fn madvise_and_mlock_flags() {
    let _t = serial();
    roundtrip("mem_madvise", &[]);
}

/// mlockall(MCL_FUTURE): a mapping made after restore is locked too (mm->def_flags,
/// seen by the dump on its scratch mapping), with MCL_ONFAULT as well; in both modes.
#[test]
fn mlockall_future_locks_later_mappings() {
    let _t = serial();
    roundtrip("mem_lock_future", &[]);
    roundtrip("mem_lock_future", &["onfault"]);
    leave_running_then_restore("mem_lock_future", &["onfault", "result"], &[]);
}

/// NUMA policies: per thread (set_mempolicy, one with MPOL_F_STATIC_NODES, one left at
/// MPOL_DEFAULT) and per VMA (mbind of the middle of a mapping); in both modes.
#[test]
fn numa_policies_of_threads_and_vmas() {
    let _t = serial();
    roundtrip("numa_policy", &[]);
    leave_running_then_restore("numa_policy", &["result"], &[]);
}

/// MAP_PRIVATE file mapping with COW-modified pages, a read-only mapping at
/// a file offset, a MAP_SHARED file mapping still shared both ways; the
/// fds were closed after mmap.
#[test]
fn file_mappings_private_and_shared() {
    let _t = serial();
    roundtrip("mem_file", &[]);
}

/// vDSO at the same address (glibc caches pointers into it), clocks work,
/// auxv (in memory and /proc/self/auxv) unchanged.
#[test]
fn vdso_clocks_and_auxv() {
    let _t = serial();
    roundtrip("vdso", &[]);
}

/// Heap, static data and a stack array of a minimal program (also the
/// simplest smoke test of the whole cycle).
#[test]
fn basic_heap_static_stack() {
    let _t = serial();
    roundtrip("basic", &[]);
}

/// 3000 small separate mappings (private rw, read-only, shared) with
/// individual patterns: no fixed-size limits, all addresses, perms and
/// contents kept.
#[test]
fn many_small_mappings() {
    let _t = serial();
    roundtrip("mem_many", &[]);
}

/// Every VMA's smaps VmFlags are the same after the restore (the workload records all
/// of them before the dump and compares, VMA by VMA): MAP_GROWSDOWN (and it still grows),
/// MAP_NORESERVE, mlock, mlock2(MLOCK_ONFAULT) (untouched pages stay non-resident),
/// mseal (mprotect still refused), MAP_32BIT (still below 2 GiB), a read-only shared
/// file mapping (no VM_MAYWRITE: mprotect to writable refused); contents too.
#[test]
fn every_vma_keeps_its_vmflags() {
    let _t = serial();
    roundtrip("mem_vmflags", &[]);
}

/// A file mapping longer than its file (private with a copy-on-write page, and shared):
/// after the restore the pages inside the file read as before, the tail of the last one
/// as zeros, and the pages past the end still raise SIGBUS.
#[test]
fn mapping_past_the_end_of_its_file_still_faults() {
    let _t = serial();
    roundtrip("mem_special", &["pasteof"]);
}

/// /dev/zero mapped shared is shared anonymous memory: after the restore the parent and
/// the child forked after the mapping still share it (a write of the child's after the
/// restore reaches the parent); /dev/zero mapped private stays private per process.
#[test]
fn dev_zero_shared_mapping_stays_shared() {
    let _t = serial();
    let mut w = Workload::start("mem_special", &["devzero"]);
    let kids = info_pids(&w, &["child"]);
    dump_and_restore_tree(&mut w, &kids);
    w.go_and_pass();
}

/// A packet socket's mmap'ed ring mapped only in part and a mapping of a device are
/// refused at dump time with one line naming the pid, the mapping and what it is; the
/// process runs on untouched.
#[test]
fn packet_ring_and_device_mappings_are_refused() {
    let _t = serial();
    skip_if_direct!();
    for (mode, needles) in [("pktring", &["packet socket", "only part", "receive ring"][..]), ("device", &["/dev/loop0", "device"][..])] {
        let mut w = Workload::start("mem_special", &[mode]);
        let addr = w.info(if mode == "pktring" { "ring" } else { "map" });
        let r = w.try_dump(&[]);
        let pid = w.pid.to_string();
        let mut n = vec![pid.as_str(), addr.trim_start_matches("0x")];
        n.extend_from_slice(needles);
        assert_clean_error(&r, &n, &w.report());
        w.assert_running_untouched();
        assert!(!w.img.join("manifest.img").exists(), "a refused dump left an image\n{}", w.report());
        w.go_and_pass();
    }
}

/// Guard regions (madvise MADV_GUARD_INSTALL) inside an anonymous mapping: the dump
/// skips them (it failed on a short process_vm_readv before), the restore installs them
/// again: touching one still raises SIGSEGV, the pages around them keep their data.
#[test]
fn guard_regions_still_fault() {
    let _t = serial();
    roundtrip("mem_special", &["guard"]);
}

/// The workload, its shared memory object and its child; its named semaphore is in
/// `path.1` (removed, if still there, with it).
fn posix_shm_workload() -> (Workload, ShmObjects, i32) {
    let w = Workload::start("posix_shm", &[]);
    let path = ShmObjects(w.info("path").into(), w.info("sem").into());
    let kid: i32 = w.info("kid").parse().unwrap();
    assert!(path.0.exists(), "{} was not made\n{}", path.0.display(), w.report());
    (w, path, kid)
}

/// posix_shm's object and semaphore files, removed (if still there) when dropped.
struct ShmObjects(std::path::PathBuf, std::path::PathBuf);

impl Drop for ShmObjects {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(&self.1);
    }
}

/// A POSIX shared memory object (/dev/shm, mapped shared by a process and its child,
/// with a hole) whose file is gone at restore — a reboot, another host — is made again
/// from the image: content, hole, mode, the same object at the path and in both
/// mappings (checked by the workload). (A failed restore removes it again:
/// stasis-core's shmfile unit test.) Mutation: without the saved content the restore is
/// refused ("missing").
#[test]
fn posix_shm_object_comes_back_where_its_file_is_gone() {
    let _t = serial();
    skip_if_direct!();
    let (mut w, path, kid) = posix_shm_workload();
    dump_and_reap_tree(&mut w, &[kid]);
    // its two written pages are stored, the hole is not
    let img = inspect_json(&mut w);
    let stored: Vec<_> = img["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["vmas"].as_array().into_iter().flatten())
        .filter(|v| v["name"] == *path.0.to_string_lossy())
        .map(|v| v["object_content_bytes"].clone())
        .collect();
    assert!(stored.len() == 2 && stored.iter().all(|b| *b == 2 * 4096), "stored content of {} in its VMAs: {stored:?}", path.0.display());
    std::fs::remove_file(&path.0).unwrap();
    // the named semaphore's file too (mapped under the temporary name glibc removed)
    std::fs::remove_file(&path.1).unwrap();
    w.restore();
    assert!(path.0.exists(), "{} was not made again\n{}", path.0.display(), w.report());
    assert!(path.1.exists(), "{} was not made again\n{}", path.1.display(), w.report());
    let md = std::fs::metadata(&path.0).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777, 0o640);
    w.go_and_pass();
    assert!(!path.0.exists(), "the restored workload did not unlink {}", path.0.display());
}

/// After a --leave-running dump the original writes its POSIX shared memory object
/// ("LIVE") and is killed: the restore refuses the changed object (with the output file
/// the original kept writing, in the same line) and says how to get the image's
/// content back (remove the file) or map it as it is now; once removed, the
/// restored copy sees the object as it was at the dump. Mutation: without the saved
/// content the workload reads "LIVE" (or the restore is refused as missing).
#[test]
fn posix_shm_object_after_leave_running_comes_back_as_dumped() {
    let _t = serial();
    skip_if_direct!();
    let (mut w, path, kid) = posix_shm_workload();
    w.dump_leave_running();
    std::fs::File::create(w.work.join("poke")).unwrap();
    w.wait_for_line("POKED", std::time::Duration::from_secs(10));
    w.kill_original();
    reap_dumped(&w, &[kid]);
    let r = w.try_restore(&["-d"]);
    // one refusal names both files that changed: the object and the output the
    // original kept writing (POKED)
    assert_clean_error(&r, &["2 files stop the restore", &*path.0.to_string_lossy(), "remove the file", "stdout.txt", "--allow-changed-files"], &w.report());
    assert!(!pid_exists(w.pid) && !pid_exists(kid), "a refused restore left a process");
    std::fs::remove_file(&path.0).unwrap();
    // (the original's output grew after the dump: POKED)
    w.restore_with(&["--allow-changed-files"]);
    w.go_and_pass();
}

/// (bytes of the pages files, bytes of their content) of the workload's image, and
/// whether inspect calls it compressed.
fn pages_sizes(w: &mut Workload) -> (u64, u64, bool) {
    let j = inspect_json(w);
    let files = j["sizes"]["pages"].as_array().unwrap();
    let sum = |k: &str| files.iter().map(|f| f[k].as_u64().unwrap()).sum::<u64>();
    (sum("bytes"), sum("content_bytes"), j["sizes"]["compressed"] == true)
}

/// `dump --compress`: the pages files are LZ4 blocks, and the restore brings every page
/// back: mem_anon checks all of its 64 MiB of patterned memory (which does not compress:
/// stored as it is, 8 bytes per 2 MiB block more), posix_shm its object's content (a
/// run of an object rather than of a process), a python interpreter (its heap and
/// libraries' data compress to less than two thirds) its counter. A compressed image
/// with a byte changed in a block is refused before any process exists; the intact one
/// still restores.
#[test]
fn compressed_images() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("mem_anon", &[]);
    assert!(w.dump_or_refusal_with(&["--compress"]).is_none(), "dump --compress failed\n{}", w.report());
    let (stored, content, compressed) = pages_sizes(&mut w);
    assert!(compressed && content > 64 << 20 && stored <= content + content / (2 << 20) * 8 + 64, "pages files of {stored} bytes for {content} bytes of content");
    let damaged = w.tmp.path.join("img-damaged");
    copy_dir(&w.img, &damaged);
    let p = damaged.join("pages.img");
    let mut b = std::fs::read(&p).unwrap();
    let at = 4096 + 8 + 100;
    b[at] ^= 0x55;
    std::fs::write(&p, &b).unwrap();
    let r = w.try_restore_from(&damaged, &["-d"]);
    assert_clean_error(&r, &["pages"], &w.report());
    assert!(!pid_exists(w.pid), "a refused restore left pid {}", w.pid);
    w.restore();
    w.go_and_pass();

    let (mut w, path, kid) = posix_shm_workload();
    assert!(w.dump_or_refusal_with(&["--compress"]).is_none(), "dump --compress failed\n{}", w.report());
    reap_dumped(&w, &[kid]);
    std::fs::remove_file(&path.0).unwrap();
    w.restore();
    w.go_and_pass();

    let mut w = Workload::new("py-compressed");
    let script = std::path::Path::new(WORKLOADS).join("real_counter.py");
    w.spawn(&python3(), &[script.into_os_string(), w.work.clone().into_os_string()]);
    w.wait_ready();
    let progress = w.work.join("progress.txt");
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default().lines().count();
    assert!(wait_until(std::time::Duration::from_secs(20), || lines(&progress) >= 20), "{}", w.report());
    assert!(w.dump_or_refusal_with(&["--compress"]).is_none(), "dump --compress failed\n{}", w.report());
    let at_dump = lines(&progress);
    let (stored, content, _) = pages_sizes(&mut w);
    assert!(stored * 3 < content * 2, "python's pages: {stored} bytes stored for {content}");
    w.restore();
    assert!(wait_until(std::time::Duration::from_secs(20), || lines(&progress) >= at_dump + 10), "no progress after restore\n{}", w.report());
    let text = std::fs::read_to_string(&progress).unwrap();
    let next = text.lines().nth(at_dump).and_then(|l| l.split(' ').next()).unwrap_or("");
    assert_eq!(next, (at_dump + 1).to_string(), "the counter after restore continues from the dump\n{}", w.report());
    w.kill_restored();
}
