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
