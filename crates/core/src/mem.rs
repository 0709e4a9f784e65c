//! Memory: VMAs and their pages. Dump side: classify VMAs from smaps, find the pages
//! that exist (pagemap, SEEK_DATA for shared memory), stream them to pages.img.
//! The restore side (mapping and filling) lives in restore.rs.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use stasis_image::model::*;
use stasis_image::{Manifest, PAGES_HEADER_LEN};
use stasis_sys::sys;
use stasis_sys::sysv::SHM_RDONLY;
use tracing::debug;

use crate::error::{path_err, Ctx, Error, Result};
use crate::external::{self, SharedMem};
use crate::files;
use crate::objects::ObjectTable;
use crate::procfs::{self, MapEntry};

use crate::PAGE;
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;
/// The page is mapped by this process only (no other page table maps it).
const PM_EXCLUSIVE: u64 = 1 << 56;
/// A guard region page (madvise MADV_GUARD_INSTALL, Linux 6.13): faults on access;
/// the kernel reports it with PM_SWAP too (a PTE marker), but it has no content.
const PM_GUARD: u64 = 1 << 58;
const PFN_MASK: u64 = (1 << 55) - 1;
/// Largest run with one checksum (1 MiB), so runs can later be served on demand.
const MAX_RUN_PAGES: u64 = 256;
/// Buffer handed from the reader thread to the writer thread.
const CHUNK: usize = 2 << 20;

/// smaps VmFlags that restore reproduces with mmap/madvise.
/// `nr`: MAP_NORESERVE; `lf`: locked on fault (mlock2 MLOCK_ONFAULT, mlockall
/// MCL_ONFAULT); `sl`: sealed (mseal).
pub const KEPT_FLAGS: &[&str] = &["gd", "dc", "wf", "hg", "nh", "dd", "mg", "lo", "lf", "sr", "rr", "nr", "sl"];

/// mlockall(2) flags that stay in the address space (mm->def_flags) and lock every
/// later mapping: MCL_FUTURE, alone or with MCL_ONFAULT.
pub const LOCK_FUTURE_FLAGS: [u32; 2] = [libc::MCL_FUTURE as u32, (libc::MCL_FUTURE | libc::MCL_ONFAULT) as u32];

/// The mlockall(MCL_FUTURE[|MCL_ONFAULT]) of the process, as MCL_* bits (0: none).
/// Nothing shows mm->def_flags, but every new mapping takes them: the scratch mapping
/// the dump made in the process at `scratch` is locked ("lo"), on fault too ("lf"),
/// exactly when they are set.
pub fn lock_future(pid: i32, scratch: u64) -> Result<u32> {
    let maps = procfs::smaps(pid).ctx(pid, || "reading /proc/PID/smaps".into())?;
    let m = maps
        .iter()
        .find(|m| m.start == scratch)
        .ok_or_else(|| Error::Refused { pid, why: format!("the dump's scratch mapping at {scratch:#x} is not in /proc/PID/smaps") })?;
    Ok(match (m.has_flag("lo"), m.has_flag("lf")) {
        (false, _) => 0,
        (true, false) => LOCK_FUTURE_FLAGS[0],
        (true, true) => LOCK_FUTURE_FLAGS[1],
    })
}

/// Where the pages of a VMA come from during the dump.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Src {
    /// process_vm_readv (readable VMAs)
    Vm,
    /// /proc/PID/mem (forced read of non-readable VMAs)
    Mem,
}

/// A run of pages to copy into pages.img.
#[derive(Debug, Clone)]
pub struct Job {
    /// Process whose memory (or shared-memory object) this is.
    pub pid: i32,
    pub object_id: u32,
    /// Address (object 0) or byte offset in the object.
    pub addr: u64,
    pub count: u64,
    src: JobSrc,
    /// Private memory: for each page, its PFN if the page is present, anonymous and
    /// not exclusively mapped (it may be shared copy-on-write with another process of
    /// the tree), else 0. None when no page of the run qualifies.
    pfns: Option<Vec<u64>>,
    /// Some page of the run may be shared copy-on-write (read it without pinning).
    cow: bool,
}

impl Job {
    /// Whether the run's pages are copied into the pages files (else it reuses the
    /// bytes of an earlier run: see `share_cow`).
    pub fn stored(&self) -> bool {
        !matches!(self.src, JobSrc::Same { .. })
    }
}

#[derive(Debug, Clone)]
enum JobSrc {
    Proc(Src),
    /// Index into the list of shared-memory files.
    Shm(usize),
    /// Index into the list of SysV segments attached in our address space.
    Sysv(usize),
    /// The same physical pages as pages `page..page + count` of stored job `job` (of
    /// another process, shared copy-on-write): nothing is copied, the run points at
    /// that job's bytes.
    Same { job: usize, page: u64 },
}

pub struct MemCollect {
    pub vmas: Vec<Vma>,
    pub jobs: Vec<Job>,
    pub shm_files: Vec<File>,
    pub sysv: Vec<stasis_sys::sysv::ShmAttach>,
    /// Shared-memory objects mapped shared (not marked external), for the check against
    /// processes outside the tree.
    pub shared: Vec<SharedMem>,
}

impl MemCollect {
    /// Nothing to save (a process whose memory is its parent's, CLONE_VM).
    pub fn empty() -> MemCollect {
        MemCollect { vmas: Vec::new(), jobs: Vec::new(), shm_files: Vec::new(), sysv: Vec::new(), shared: Vec::new() }
    }
}

/// Adds the contents of SysV segments (attached by ipc::dump) to the page copy: runs of
/// existing pages under the segment's object id, by offset.
pub fn add_sysv(col: &mut MemCollect, contents: Vec<crate::ipc::ShmContent>) {
    for c in contents {
        let idx = col.sysv.len();
        let mut run: Option<usize> = None;
        for i in 0..=c.pages.len() {
            let keep = c.pages.get(i).copied().unwrap_or(false);
            match (keep, run) {
                (true, None) => run = Some(i),
                (false, Some(s)) => {
                    push_runs(&mut col.jobs, 0, c.object_id, s as u64 * PAGE, (i - s) as u64, JobSrc::Sysv(idx));
                    run = None;
                }
                _ => {}
            }
        }
        col.sysv.push(c.attach);
    }
}

/// Adds the content of nameless regular files (deleted files, memfds; `files::ghost`) to
/// the page copy: runs of their allocated extents (SEEK_DATA/SEEK_HOLE, rounded out to
/// pages) under the file's object id, by offset. Holes are not stored.
pub fn add_ghost_files(col: &mut MemCollect, files: Vec<(u32, File, u64)>) {
    for (id, f, size) in files {
        let idx = col.shm_files.len();
        for (d, h) in data_extents(&f, size) {
            push_runs(&mut col.jobs, 0, id, d, (h - d) / PAGE, JobSrc::Shm(idx));
        }
        col.shm_files.push(f);
    }
}

fn zero_pfn() -> u64 {
    let buf = sys::AnonBuf::new(PAGE as usize).ok();
    let Some(buf) = buf else { return u64::MAX };
    // Read (not write) the page: the kernel maps the shared zero page.
    let addr = buf.as_slice().as_ptr() as u64;
    let _ = std::hint::black_box(buf.as_slice()[0]);
    let Ok(f) = File::open("/proc/self/pagemap") else { return u64::MAX };
    let mut b = [0u8; 8];
    if f.read_exact_at(&mut b, addr / PAGE * 8).is_err() {
        return u64::MAX;
    }
    let e = u64::from_le_bytes(b);
    if e & PM_PRESENT != 0 {
        e & PFN_MASK
    } else {
        u64::MAX
    }
}

/// How /proc shows memory of memfd_secret (a VMA or an fd).
pub const SECRETMEM: &str = "/secretmem (deleted)";

fn classify(pid: i32, m: &MapEntry) -> Result<VmaKind> {
    let p = m.path.as_str();
    Ok(match p {
        "[vdso]" => VmaKind::Vdso,
        "[vvar]" => VmaKind::Vvar,
        "[vvar_vclock]" => VmaKind::VvarVclock,
        "[vsyscall]" => VmaKind::Vsyscall,
        _ if m.inode == 0 && !m.shared => VmaKind::Anon,
        // MAP_ANONYMOUS|MAP_HUGETLB: a nameless file of the kernel's internal hugetlbfs
        _ if m.has_flag("ht") && p == "/anon_hugepage (deleted)" => {
            if m.shared {
                VmaKind::ShmemAnon
            } else {
                VmaKind::Anon
            }
        }
        _ if m.shared && (p == "/dev/zero (deleted)" || p.starts_with("[anon_shmem:")) => VmaKind::ShmemAnon,
        _ if m.shared && p.starts_with("/SYSV") => VmaKind::SysvShm,
        // the ring of an aio context (io_setup): the context id is its address
        _ if m.shared && (p == "/[aio]" || p == "/[aio] (deleted)") => VmaKind::AioRing,
        // memfd_secret: its pages are out of the kernel's direct map, no other process
        // (nor /proc/PID/mem) can read them
        _ if p == SECRETMEM => {
            return Err(Error::Unsupported {
                pid,
                what: format!("VMA {:#x}-{:#x} is secret memory (memfd_secret), which only the process itself can read", m.start, m.end),
            })
        }
        _ if p.starts_with('/') => {
            if m.shared {
                VmaKind::FileShared
            } else {
                VmaKind::FilePrivate
            }
        }
        // a packet socket's ring (the only socket with an mmap); its object is found
        // once the fds are dumped (`link_rings`)
        _ if m.shared && p.starts_with("socket:[") => VmaKind::PacketRing,
        _ if m.inode == 0 && m.shared => {
            return Err(Error::Unsupported { pid, what: format!("VMA {:#x}-{:#x} {p} (shared special mapping)", m.start, m.end) })
        }
        // (its fd may be closed: the mapping keeps the instance)
        "anon_inode:[io_uring]" => {
            return Err(Error::Unsupported {
                pid,
                what: format!("VMA {:#x}-{:#x} is the ring of an io_uring instance (io_uring, which many programs can be configured not to use)", m.start, m.end),
            })
        }
        _ => return Err(Error::Unsupported { pid, what: format!("VMA {:#x}-{:#x} of kind {p:?}", m.start, m.end) }),
    })
}

/// A mapping of a device (its file is a character or block device, or the VMA is device
/// memory: VM_IO / VM_PFNMAP) is refused, naming the device; /dev/zero mapped private is
/// ordinary anonymous memory (mapped shared it is shared memory, classified before).
fn device_mapping(pid: i32, m: &MapEntry, map_file: &str) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let ft = std::fs::metadata(map_file).map(|md| md.file_type()).ok();
    let what = match ft {
        _ if m.has_flag("io") || m.has_flag("pf") => "device memory (VM_IO/VM_PFNMAP)",
        Some(t) if t.is_char_device() && m.path == "/dev/zero" && !m.shared => return Ok(()),
        Some(t) if t.is_char_device() => "a character device",
        Some(t) if t.is_block_device() => "a block device",
        _ => return Ok(()),
    };
    Err(Error::Unsupported {
        pid,
        what: format!("VMA {:#x}-{:#x} maps the device {} ({what}): device mappings are not supported", m.start, m.end, m.path),
    })
}

/// The extents of a shared-memory object or nameless file of `size` bytes whose pages
/// are stored, page-aligned [start, end) byte offsets: the allocated extents
/// (SEEK_DATA/SEEK_HOLE); for a hugetlbfs file (no SEEK_DATA: all data) its pages that
/// are not all zeros (`nonzero`: reading a hole of hugetlbfs gives zeros without
/// allocating a huge page, and restore leaves such pages out so they are not allocated).
pub fn data_extents(f: &File, size: u64) -> Vec<(u64, u64)> {
    if matches!(sys::hugetlb_page_size(std::os::fd::AsFd::as_fd(f)), Ok(Some(_))) {
        return nonzero(f, &[(0, size.div_ceil(PAGE) * PAGE)]);
    }
    let mut out = Vec::new();
    let mut off = 0u64;
    let fd = std::os::fd::AsRawFd::as_raw_fd(f);
    while off < size {
        let Ok(d) = sys::lseek(fd, off as i64, libc::SEEK_DATA) else { break };
        let h = sys::lseek(fd, d, libc::SEEK_HOLE).unwrap_or(size as i64) as u64;
        let (d, h) = (d as u64 / PAGE * PAGE, h.min(size).div_ceil(PAGE) * PAGE);
        if h > d {
            out.push((d, h));
        }
        off = h.max(d + PAGE);
    }
    out
}

/// The parts of `ranges` (page-aligned [start, end) offsets of `f`: a file, or
/// /proc/PID/mem by address) whose pages are not all zeros, page-aligned and merged.
/// Unreadable parts are kept (the page copy reports the error).
fn nonzero(f: &File, ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for &(s, e) in ranges {
        let mut at = s;
        while at < e {
            let n = (e - at).min(buf.len() as u64) as usize;
            let ok = read_full_at(f, &mut buf[..n], at).is_ok();
            for (k, page) in buf[..n].chunks(PAGE as usize).enumerate() {
                if ok && page.iter().all(|&b| b == 0) {
                    continue;
                }
                let a = at + k as u64 * PAGE;
                match out.last_mut() {
                    Some(l) if l.1 == a => l.1 = a + PAGE,
                    _ => out.push((a, a + PAGE)),
                }
            }
            at += n as u64;
        }
    }
    out
}

/// Splits [addr, addr+count pages) into runs of at most MAX_RUN_PAGES.
fn push_runs(jobs: &mut Vec<Job>, pid: i32, object_id: u32, addr: u64, count: u64, src: JobSrc) {
    let mut a = addr;
    let mut left = count;
    while left > 0 {
        let n = left.min(MAX_RUN_PAGES);
        jobs.push(Job { pid, object_id, addr: a, count: n, src: src.clone(), pfns: None, cow: false });
        a += n * PAGE;
        left -= n;
    }
}

/// Reads VMAs and decides which pages to save.
/// `ipc_ns`: the process's IPC namespace object (0 = ours), for SysV attachments.
pub fn collect(pid: i32, objs: &mut ObjectTable, ipc_ns: u32) -> Result<MemCollect> {
    let maps = procfs::smaps(pid).ctx(pid, || "reading /proc/PID/smaps".into())?;
    let pagemap = File::open(format!("{}/pagemap", crate::procfs::dir(pid))).ctx(pid, || "opening /proc/PID/pagemap".into())?;
    let zpfn = zero_pfn();
    let mut out = MemCollect { vmas: Vec::new(), jobs: Vec::new(), shm_files: Vec::new(), sysv: Vec::new(), shared: Vec::new() };
    // shared-memory objects of this process: inode, object id, allocated extents
    let mut shm_seen: Vec<(u64, u32, Vec<(u64, u64)>)> = Vec::new();
    let mut tmpfs = None;
    let mut huge_mem: Option<File> = None;
    for m in &maps {
        let mut kind = classify(pid, m)?;
        let what = || format!("VMA {:#x}-{:#x}", m.start, m.end);
        let dev = (m.dev_major, m.dev_minor);
        let map_file = format!("{}/map_files/{:x}-{:x}", crate::procfs::dir(pid), m.start, m.end);
        // A file whose mapped name was removed while another name of it in the same
        // directory remains (glibc's sem_open: made under a temporary name, linked to
        // sem.NAME, the temporary name removed): the file of that name.
        let renamed = match kind {
            VmaKind::FileShared | VmaKind::FilePrivate if m.path.ends_with(" (deleted)") && !m.path.starts_with("/memfd:") => {
                std::fs::metadata(&map_file).ok().filter(|md| md.is_file() && std::os::unix::fs::MetadataExt::nlink(md) > 0).and_then(|md| {
                    files::other_link(pid, m.path.trim_end_matches(" (deleted)"), &md)
                })
            }
            _ => None,
        };
        let path = renamed.as_deref().unwrap_or(&m.path);
        // Shared memory an outside process may share: anonymous, nameless (memfd,
        // deleted file) or a tmpfs file, mapped shared.
        let nameless = renamed.is_none() && (m.path.starts_with("/memfd:") || m.path.ends_with(" (deleted)"));
        let shm_like = m.shared
            && match kind {
                VmaKind::ShmemAnon => true,
                VmaKind::FileShared => {
                    nameless || tmpfs.get_or_insert_with(|| external::tmpfs_devs(pid)).contains(&dev)
                }
                _ => false,
            };
        // Marked external: mapped from the inherited fd at restore like a nameless file.
        let marked = shm_like && objs.external.contains(&external::shm_name(m.inode));
        if marked {
            kind = VmaKind::FileShared;
        } else if shm_like && !out.shared.iter().any(|s| s.dev == dev && s.ino == m.inode) {
            out.shared.push(SharedMem { pid, what: what(), dev, ino: m.inode, name: m.path.clone() });
        }
        let mut vma = Vma {
            start: m.start,
            end: m.end,
            prot: m.prot,
            shared: m.shared,
            pgoff: m.pgoff,
            kind: kind as i32,
            object_id: 0,
            name: m.path.clone(),
            vm_flags: m.vm_flags.iter().filter(|f| KEPT_FLAGS.contains(&f.as_str())).cloned().collect(),
            pages_saved: 0,
            shm_flags: 0,
            guards: Vec::new(),
            aio: None,
            huge_page_size: if m.has_flag("ht") { m.page_size } else { 0 },
            mempolicy: None,
        };
        if m.has_flag("ht") && !(m.page_size > PAGE && m.page_size.is_power_of_two() && m.start.is_multiple_of(m.page_size) && m.end.is_multiple_of(m.page_size)) {
            return Err(Error::Unsupported {
                pid,
                what: format!("VMA {:#x}-{:#x} {} is hugetlb memory of an unexpected page size ({} bytes)", m.start, m.end, m.path, m.page_size),
            });
        }
        if matches!(kind, VmaKind::FileShared | VmaKind::FilePrivate) && !nameless {
            device_mapping(pid, m, &map_file)?;
        }
        match kind {
            VmaKind::FileShared | VmaKind::FilePrivate => {
                let writable = m.shared && m.prot & libc::PROT_WRITE as u32 != 0;
                if nameless || marked {
                    let gid = files::ghost(pid, objs, &map_file, &m.path, &what())?;
                    vma.object_id = files::mapped_ghost(objs, gid, &m.path, writable);
                } else {
                    vma.object_id = files::mapped_file(pid, objs, &map_file, path, writable, true)?;
                    if shm_like {
                        crate::shmfile::save(pid, objs, vma.object_id, &map_file, path)?;
                    }
                }
            }
            VmaKind::SysvShm => {
                // the inode of a SysV mapping is the segment id
                vma.object_id = crate::ipc::shm_ref(objs, ipc_ns, m.inode as i32);
                if !m.has_flag("mw") {
                    vma.shm_flags = SHM_RDONLY;
                }
            }
            VmaKind::AioRing => vma.aio = Some(crate::aio::dump_ring(pid, m.start, m.end)?),
            VmaKind::ShmemAnon => {
                if let Some((_, id, _)) = shm_seen.iter().find(|(ino, _, _)| *ino == m.inode) {
                    vma.object_id = *id;
                } else {
                    let f = File::open(&map_file).ctx(pid, || format!("opening {map_file}"))?;
                    let size = f.metadata().ctx(pid, || format!("stat {map_file}"))?.len();
                    let ino = m.inode;
                    let key = format!("shmem:{ino}");
                    // The pages of one object are stored once for the whole tree, by
                    // the first process that maps it (each further process only refers
                    // to the object).
                    let first = objs.find(&key).is_none();
                    let huge_page_size = vma.huge_page_size;
                    let id = objs.intern(key, |_| Object { kind: Some(Kind::Shmem(ShmemObj { ino, size, huge_page_size })), ..Default::default() });
                    vma.object_id = id;
                    let extents = data_extents(&f, size);
                    if first {
                        let idx = out.shm_files.len();
                        for &(d, h) in &extents {
                            push_runs(&mut out.jobs, pid, id, d, (h - d) / PAGE, JobSrc::Shm(idx));
                        }
                        out.shm_files.push(f);
                    }
                    shm_seen.push((ino, id, extents));
                }
            }
            _ => {}
        }
        if matches!(kind, VmaKind::Anon | VmaKind::FilePrivate) && !m.has_flag("io") && !m.has_flag("pf") {
            let n = m.len() / PAGE;
            let mut ents = vec![0u8; (n * 8) as usize];
            pagemap
                .read_exact_at(&mut ents, m.start / PAGE * 8)
                .ctx(pid, || format!("reading pagemap of VMA {:#x}-{:#x}", m.start, m.end))?;
            let src = if m.prot & libc::PROT_READ as u32 != 0 { Src::Vm } else { Src::Mem };
            let mut run_start = None;
            let mut saved = 0;
            // PFN of each page that may be shared copy-on-write (see Job::pfns)
            let mut pfns = vec![0u64; n as usize];
            for i in 0..=n {
                let keep = if i < n {
                    let e = u64::from_le_bytes(ents[(i * 8) as usize..(i * 8 + 8) as usize].try_into().unwrap());
                    if e & PM_GUARD != 0 {
                        match vma.guards.len() {
                            l if l >= 2 && vma.guards[l - 2] + vma.guards[l - 1] == i => vma.guards[l - 1] += 1,
                            _ => vma.guards.extend([i, 1]),
                        }
                    }
                    let e = if e & PM_GUARD != 0 { 0 } else { e };
                    let anon = e & PM_PRESENT != 0 && e & PM_SWAP == 0 && e & PM_FILE == 0;
                    // (hugetlb pages are stored per process: restore never shares them)
                    if anon && e & PM_EXCLUSIVE == 0 && vma.huge_page_size == 0 {
                        // 0 when PFNs are hidden from us (no CAP_SYS_ADMIN): never shared
                        pfns[i as usize] = e & PFN_MASK;
                    }
                    (e & PM_SWAP != 0) || (anon && (e & PFN_MASK) != zpfn)
                } else {
                    false
                };
                match (keep, run_start) {
                    (true, None) => run_start = Some(i),
                    (false, Some(s)) if vma.huge_page_size != 0 => {
                        // hugetlb: a present huge page is 512 or more present entries,
                        // mostly zeros when the program wrote little of it
                        if huge_mem.is_none() {
                            huge_mem = Some(File::open(format!("{}/mem", crate::procfs::dir(pid))).ctx(pid, || "opening /proc/PID/mem".into())?);
                        }
                        let first = out.jobs.len();
                        for (a, b) in nonzero(huge_mem.as_ref().unwrap(), &[(m.start + s * PAGE, m.start + i * PAGE)]) {
                            push_runs(&mut out.jobs, pid, 0, a, (b - a) / PAGE, JobSrc::Proc(src));
                            saved += (b - a) / PAGE;
                        }
                        // read through /proc/PID/mem, never pinned: pinning a huge page
                        // still shared copy-on-write since a fork would un-share it (a
                        // new huge page from the pool, or a failed read if it is empty)
                        for j in &mut out.jobs[first..] {
                            j.cow = true;
                        }
                        run_start = None;
                    }
                    (false, Some(s)) => {
                        let first = out.jobs.len();
                        push_runs(&mut out.jobs, pid, 0, m.start + s * PAGE, i - s, JobSrc::Proc(src));
                        for j in &mut out.jobs[first..] {
                            let k = ((j.addr - m.start) / PAGE) as usize;
                            let p = &pfns[k..k + j.count as usize];
                            if p.iter().any(|&x| x != 0) {
                                j.pfns = Some(p.to_vec());
                                j.cow = true;
                            }
                        }
                        saved += i - s;
                        run_start = None;
                    }
                    _ => {}
                }
            }
            vma.pages_saved = saved;
        }
        out.vmas.push(vma);
    }
    // pages_saved for shared memory VMAs: the object's allocated pages inside the VMA's
    // window (stored once per object, whichever process stores them).
    for v in out.vmas.iter_mut().filter(|v| v.kind == VmaKind::ShmemAnon as i32) {
        let (lo, hi) = (v.pgoff, v.pgoff + (v.end - v.start));
        let ext = shm_seen.iter().find(|s| s.1 == v.object_id).map(|s| s.2.as_slice()).unwrap_or(&[]);
        v.pages_saved = ext
            .iter()
            .map(|&(d, h)| {
                let (a, b) = (d.max(lo), h.min(hi));
                if b > a {
                    (b - a) / PAGE
                } else {
                    0
                }
            })
            .sum();
    }
    debug!(pid, vmas = out.vmas.len(), runs = out.jobs.len(), "memory collected");
    Ok(out)
}

/// Each VMA mapping a packet socket's ring (kind PacketRing, named `socket:[INO]`) gets
/// the socket's object: an fd of the same process must hold the socket, whose receive
/// ring the VMA maps whole (packet_mmap maps every ring at once, from offset 0; a part
/// left by munmap or mremap is refused).
pub fn link_rings(pid: i32, vmas: &mut [Vma], fds: &[Fd], objs: &ObjectTable) -> Result<()> {
    for v in vmas.iter_mut().filter(|v| v.kind == VmaKind::PacketRing as i32) {
        let what = format!("VMA {:#x}-{:#x} maps {}", v.start, v.end, v.name);
        let held = fds.iter().find(|f| procfs::readlink(&format!("{}/fd/{}", crate::procfs::dir(pid), f.fd)).is_ok_and(|l| l == v.name));
        let Some(fd) = held else {
            return Err(Error::Unsupported { pid, what: format!("{what}, a socket no fd of the process holds") });
        };
        let ring = objs.get(fd.object_id).and_then(|o| o.packet()).and_then(|p| p.rx_ring.as_ref());
        let Some(r) = ring else {
            return Err(Error::Unsupported { pid, what: format!("{what} (fd {}), a socket without a packet receive ring", fd.fd) });
        };
        let size = u64::from(r.block_size) * u64::from(r.block_nr);
        if v.pgoff != 0 || v.end - v.start != size {
            return Err(Error::Unsupported {
                pid,
                what: format!("{what} (fd {}) at offset {:#x}: only part of the packet socket's {size}-byte receive ring (a ring is mapped whole)", fd.fd, v.pgoff),
            });
        }
        v.object_id = fd.object_id;
    }
    Ok(())
}

/// Huge pages the restore of `m` takes from the host's pools, per huge page size:
/// (size in bytes, pages), ascending sizes. A private hugetlb mapping reserves its whole
/// length when mapped (only the pages it stores with MAP_NORESERVE, at most one huge
/// page each); shared memory, a memfd and a SysV segment their whole size, once. A
/// SysV segment for which `sysv_exists` holds is attached as it is (nothing new).
pub fn huge_pages_needed(m: &Manifest, sysv_exists: impl Fn(&SysvShmObj) -> bool) -> Vec<(u64, u64)> {
    let mut need: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
    for v in m.processes.iter().flat_map(|p| &p.vmas).filter(|v| v.huge_page_size != 0 && !v.shared) {
        let h = v.huge_page_size;
        let whole = (v.end - v.start) / h;
        let n = if v.vm_flags.iter().any(|f| f == "nr") { whole.min(v.pages_saved) } else { whole };
        *need.entry(h).or_default() += n;
    }
    for o in &m.objects {
        let (size, h) = if let Some(s) = o.shmem() {
            (s.size, s.huge_page_size)
        } else if let Some(g) = o.ghost() {
            (g.size, g.huge_page_size)
        } else if let Some(s) = o.sysv_shm().filter(|s| !sysv_exists(s)) {
            (s.size, s.huge_page_size)
        } else {
            continue;
        };
        if h != 0 {
            *need.entry(h).or_default() += size.div_ceil(h);
        }
    }
    need.into_iter().filter(|x| x.1 > 0).collect()
}

/// Refuses a restore the host's huge page pools cannot hold (before anything is
/// created): for each size the image needs, the free pages not reserved by others plus
/// the surplus pages the pool may still grow by (nr_overcommit_hugepages).
pub fn check_huge_pool(m: &Manifest) -> Result<()> {
    let in_our_ns = |s: &SysvShmObj| s.ipc_ns == 0 && s.perm.as_ref().is_some_and(|p| stasis_sys::sysv::shm_stat(p.id).is_ok());
    for (h, n) in huge_pages_needed(m, in_our_ns) {
        let kb = h / 1024;
        let dir = format!("/sys/kernel/mm/hugepages/hugepages-{kb}kB");
        let num = |f: &str| -> Option<u64> { std::fs::read_to_string(format!("{dir}/{f}")).ok()?.trim().parse().ok() };
        let Some(free) = num("free_hugepages") else {
            return Err(Error::RestoreRefused(format!("the image needs {n} huge pages of {kb} kB; this host has no huge pages of that size ({dir})")));
        };
        let avail = free.saturating_sub(num("resv_hugepages").unwrap_or(0))
            + num("nr_overcommit_hugepages").unwrap_or(0).saturating_sub(num("surplus_hugepages").unwrap_or(0));
        if avail < n {
            return Err(Error::RestoreRefused(format!(
                "the image needs {n} huge pages of {kb} kB, the host has {avail} available: raise {dir}/nr_hugepages (by {})",
                n - avail
            )));
        }
    }
    Ok(())
}

/// Puts the collections of several processes together (one page copy for the tree).
pub fn merge(cols: Vec<MemCollect>) -> MemCollect {
    let mut out = MemCollect { vmas: Vec::new(), jobs: Vec::new(), shm_files: Vec::new(), sysv: Vec::new(), shared: Vec::new() };
    for c in cols {
        let (base, sbase) = (out.shm_files.len(), out.sysv.len());
        out.jobs.extend(c.jobs.into_iter().map(|mut j| {
            match j.src {
                JobSrc::Shm(k) => j.src = JobSrc::Shm(k + base),
                JobSrc::Sysv(k) => j.src = JobSrc::Sysv(k + sbase),
                JobSrc::Proc(_) | JobSrc::Same { .. } => {}
            }
            j
        }));
        out.shm_files.extend(c.shm_files);
        out.sysv.extend(c.sysv);
    }
    out
}

/// Private pages that processes of the tree still share copy-on-write since a fork
/// are the same physical page: the same PFN in /proc/PID/pagemap, not exclusively
/// mapped. The tree is frozen, so such pages have one content. The first process's
/// run stores them; the runs of later processes (in job order: parents before their
/// children) become `Same` references to those pages and copy nothing. Runs are split
/// where a page switches between stored and shared, or where the shared pages stop
/// being consecutive pages of one stored run. Returns the number of pages shared.
/// Uses only the pagemap entries already read by `collect`; call after `merge`,
/// before `write_pages`.
pub fn share_cow(col: &mut MemCollect) -> u64 {
    let jobs = std::mem::take(&mut col.jobs);
    let mut out: Vec<Job> = Vec::with_capacity(jobs.len());
    // PFN -> (process, index in `out` of the stored job, page in that job)
    let mut seen: HashMap<u64, (i32, usize, u64)> = HashMap::new();
    let mut shared = 0u64;
    for mut j in jobs {
        let Some(pfns) = j.pfns.take() else {
            out.push(j);
            continue;
        };
        let n = pfns.len();
        // where each page's bytes already are, if in another process's stored run
        let src: Vec<Option<(usize, u64)>> = pfns
            .iter()
            .map(|&p| if p == 0 { None } else { seen.get(&p).filter(|s| s.0 != j.pid).map(|s| (s.1, s.2)) })
            .collect();
        let mut i = 0;
        while i < n {
            let start = i;
            let addr = j.addr + start as u64 * PAGE;
            match src[i] {
                None => {
                    while i < n && src[i].is_none() {
                        i += 1;
                    }
                    let idx = out.len();
                    for (k, &p) in pfns[start..i].iter().enumerate() {
                        if p != 0 {
                            seen.entry(p).or_insert((j.pid, idx, k as u64));
                        }
                    }
                    let cow = pfns[start..i].iter().any(|&p| p != 0);
                    out.push(Job { addr, count: (i - start) as u64, pfns: None, cow, ..j.clone() });
                }
                Some((sj, sp)) => {
                    i += 1;
                    while i < n && src[i] == Some((sj, sp + (i - start) as u64)) {
                        i += 1;
                    }
                    shared += (i - start) as u64;
                    out.push(Job { addr, count: (i - start) as u64, src: JobSrc::Same { job: sj, page: sp }, pfns: None, ..j.clone() });
                }
            }
        }
    }
    col.jobs = out;
    debug!(shared, "pages shared copy-on-write stored once");
    shared
}

/// Statistics of the page copy.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageStats {
    /// Pages stored in the pages files (and their bytes).
    pub pages: u64,
    pub bytes: u64,
    /// Pages restored from another run's bytes (shared copy-on-write at dump).
    pub shared: u64,
}

/// Number of pages files written in parallel. On this kind of machine page-cache writes
/// scale with writers on separate files (one file serialises on its inode lock).
fn shard_count(total_bytes: u64) -> u32 {
    if total_bytes < (256 << 20) {
        return 1;
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4) as u32
}

/// Result of the page copy: the index, statistics and the pages files written.
pub struct PagesOut {
    pub index: PageIndex,
    pub stats: PageStats,
    pub shards: Vec<stasis_image::Shard>,
}

/// Streams every job's pages into the pages files. The jobs are cut into chunks of at
/// most 32 MiB; one worker per pages file claims chunks in turn, reads them
/// (process_vm_readv, /proc/PID/mem or pread) into its own buffer, computes each run's
/// CRC32C and appends the chunk to its file. Reading and writing thus overlap across
/// workers, and page-cache writes run in parallel on separate files.
/// A `Same` job (see `share_cow`) copies nothing: its run gets the file range of the
/// pages it shares and the CRC32C of those bytes, computed by the worker that stores
/// them while they are in its buffer.
pub fn write_pages(dir: &Path, col: &MemCollect, compress: bool, progress: &(dyn Fn(u64) + Sync)) -> Result<PagesOut> {
    let pid = col.jobs.first().map(|j| j.pid).unwrap_or(0);
    let stored = |j: &Job| if j.stored() { j.count } else { 0 };
    let total_pages: u64 = col.jobs.iter().map(stored).sum();
    let shared_pages: u64 = col.jobs.iter().map(|j| j.count).sum::<u64>() - total_pages;
    let nshards = shard_count(total_pages * PAGE);
    // stored job -> the distinct (page, count) ranges that Same jobs take from it
    let mut wanted: HashMap<usize, Vec<(u64, u64)>> = HashMap::new();
    for j in &col.jobs {
        if let JobSrc::Same { job, page } = j.src {
            let v = wanted.entry(job).or_default();
            if !v.contains(&(page, j.count)) {
                v.push((page, j.count));
            }
        }
    }
    // chunk boundaries over the job list
    let mut chunks: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < col.jobs.len() {
        let start = i;
        let mut used = 0u64;
        while i < col.jobs.len() && used + stored(&col.jobs[i]) * PAGE <= CHUNK as u64 {
            used += stored(&col.jobs[i]) * PAGE;
            i += 1;
        }
        chunks.push((start, i));
    }
    let mut files = Vec::new();
    let mut shards = Vec::new();
    for k in 0..nshards {
        let path = dir.join(stasis_image::pages_file_name(k));
        let mut f = File::create(&path).map_err(path_err(path.display().to_string()))?;
        let header = stasis_image::pages_header(total_pages, k, nshards);
        f.write_all(&header).map_err(path_err(path.display().to_string()))?;
        shards.push(stasis_image::Shard { size: PAGES_HEADER_LEN, header_crc: crc32c::crc32c(&header), stored_size: 0 });
        files.push((f, path.display().to_string()));
    }
    let mut mems: HashMap<i32, File> = HashMap::new();
    for j in col.jobs.iter().filter(|j| matches!(j.src, JobSrc::Proc(_))) {
        if !mems.contains_key(&j.pid) {
            let f = File::open(format!("{}/mem", crate::procfs::dir(j.pid))).ctx(j.pid, || "opening /proc/PID/mem".into())?;
            mems.insert(j.pid, f);
        }
    }
    let mem = &mems;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::atomic::AtomicU64::new(0);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let mut runs: Vec<PageRun> = vec![PageRun::default(); col.jobs.len()];
    // CRC32C of (stored job, first page, pages) ranges that Same jobs point at
    type Crcs = Vec<((usize, u64, u64), u32)>;
    // per worker: its runs by job index, those CRCs, the size of its pages file's
    // content and of the file itself
    type WorkerOut = (Vec<(usize, PageRun)>, Crcs, u64, u64);
    let results: Vec<Result<WorkerOut>> = std::thread::scope(|s| {
        let mut workers = Vec::new();
        for (k, (f, wpath)) in files.drain(..).enumerate() {
            let (chunks, next, done, failed, mem, wanted) = (&chunks, &next, &done, &failed, &mem, &wanted);
            workers.push(s.spawn(move || -> Result<WorkerOut> {
                let r = (|| {
                    let mut f = f;
                    let mut buf = sys::AnonBuf::new(CHUNK).ctx(pid, || "allocating copy buffer".into())?;
                    let mut off = PAGES_HEADER_LEN;
                    // the file's size when compressed (else the content's: `off`)
                    let mut stored = PAGES_HEADER_LEN;
                    let mut scratch = Vec::new();
                    let mut out = Vec::new();
                    let mut crcs: Crcs = Vec::new();
                    let (mut t_read, mut t_write) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
                    loop {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(first, last)) = chunks.get(c) else { break };
                        let t0 = std::time::Instant::now();
                        let used = read_chunk(col, &col.jobs[first..last], &mut buf, mem)?;
                        let data = &buf.as_slice()[..used];
                        let mut boff = 0usize;
                        for (n, j) in col.jobs[first..last].iter().enumerate() {
                            if !j.stored() {
                                continue;
                            }
                            let len = (j.count * PAGE) as usize;
                            for &(page, count) in wanted.get(&(first + n)).into_iter().flatten() {
                                let a = boff + (page * PAGE) as usize;
                                crcs.push(((first + n, page, count), crc32c::crc32c(&data[a..a + (count * PAGE) as usize])));
                            }
                            out.push((
                                first + n,
                                PageRun {
                                    object_id: j.object_id,
                                    addr: j.addr,
                                    count: j.count as u32,
                                    file_offset: off + boff as u64,
                                    crc: crc32c::crc32c(&data[boff..boff + len]),
                                    shard: k as u32,
                                    pid: j.pid,
                                },
                            ));
                            boff += len;
                        }
                        let t1 = std::time::Instant::now();
                        if compress {
                            stored += stasis_image::compress::write_block(&mut f, data, &mut scratch).map_err(path_err(wpath.clone()))?;
                        } else {
                            f.write_all(data).map_err(path_err(wpath.clone()))?;
                        }
                        t_read += t1 - t0;
                        t_write += t1.elapsed();
                        off += used as u64;
                        progress(done.fetch_add(used as u64, std::sync::atomic::Ordering::Relaxed) + used as u64);
                    }
                    debug!(file = wpath, read_ms = t_read.as_millis() as u64, write_ms = t_write.as_millis() as u64, "pages file written");
                    Ok((out, crcs, off, stored))
                })();
                if r.is_err() {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                r
            }));
        }
        workers.into_iter().map(|w| w.join().expect("page worker panicked")).collect()
    });
    let mut crcs: HashMap<(usize, u64, u64), u32> = HashMap::new();
    for (k, r) in results.into_iter().enumerate() {
        let (out, c, size, stored) = r?;
        shards[k].size = size;
        shards[k].stored_size = if compress { stored } else { 0 };
        for (idx, run) in out {
            runs[idx] = run;
        }
        crcs.extend(c);
    }
    for (idx, j) in col.jobs.iter().enumerate() {
        if let JobSrc::Same { job, page } = j.src {
            let src = &runs[job];
            runs[idx] = PageRun {
                object_id: j.object_id,
                addr: j.addr,
                count: j.count as u32,
                file_offset: src.file_offset + page * PAGE,
                crc: crcs[&(job, page, j.count)],
                shard: src.shard,
                pid: j.pid,
            };
        }
    }
    let stats = PageStats { pages: total_pages, bytes: total_pages * PAGE, shared: shared_pages };
    Ok(PagesOut { index: PageIndex { runs }, stats, shards })
}

/// Reads the pages of `jobs` back to back into `buf`; returns the bytes used.
fn read_chunk(col: &MemCollect, jobs: &[Job], buf: &mut sys::AnonBuf, mems: &HashMap<i32, File>) -> Result<usize> {
    let mut used = 0usize;
    // process_vm_readv batches: one process, at most 1024 iovecs each; local ranges as
    // (offset in buf, length), increasing and disjoint
    let mut batches: Vec<(i32, Vec<(usize, usize)>, Vec<(u64, usize)>)> = Vec::new();
    for j in jobs {
        let len = (j.count * PAGE) as usize;
        let pid = j.pid;
        match j.src {
            // Pages that may be shared copy-on-write with another process: read through
            // /proc/PID/mem, whose GUP does not pin; process_vm_readv pins, and pinning a
            // shared anonymous page un-shares it (a copy per page, and after a
            // --leave-running dump the process keeps the copy).
            JobSrc::Proc(Src::Vm) if j.cow => {
                let sl = &mut buf_slice(buf)[used..used + len];
                let mem = mems.get(&pid).ok_or_else(|| Error::Refused { pid, why: "no /proc/PID/mem".into() })?;
                mem.read_exact_at(sl, j.addr).ctx(pid, || format!("reading memory at {:#x} through /proc/PID/mem", j.addr))?;
            }
            JobSrc::Proc(Src::Vm) => {
                if batches.last().is_none_or(|b| b.0 != pid || b.1.len() >= 1024) {
                    batches.push((pid, Vec::new(), Vec::new()));
                }
                let b = batches.last_mut().unwrap();
                b.1.push((used, len));
                b.2.push((j.addr, len));
            }
            JobSrc::Proc(Src::Mem) => {
                let sl = &mut buf_slice(buf)[used..used + len];
                let mem = mems.get(&pid).ok_or_else(|| Error::Refused { pid, why: "no /proc/PID/mem".into() })?;
                mem.read_exact_at(sl, j.addr).ctx(pid, || format!("reading non-readable memory at {:#x}", j.addr))?;
            }
            JobSrc::Shm(k) => {
                let sl = &mut buf_slice(buf)[used..used + len];
                read_full_at(&col.shm_files[k], sl, j.addr)
                    .ctx(pid, || format!("reading shared memory object at offset {:#x}", j.addr))?;
            }
            JobSrc::Same { .. } => continue,
            JobSrc::Sysv(k) => {
                let sl = &mut buf_slice(buf)[used..used + len];
                let src = col.sysv[k].as_slice().get(j.addr as usize..j.addr as usize + len).ok_or_else(|| Error::Refused {
                    pid,
                    why: format!("SysV segment page run at offset {:#x} lies outside the segment", j.addr),
                })?;
                sl.copy_from_slice(src);
            }
        }
        used += len;
    }
    for (pid, l, r) in batches {
        let want: usize = r.iter().map(|x| x.1).sum();
        let mut rest: &mut [u8] = buf_slice(buf);
        let mut pos = 0usize;
        let mut locals: Vec<&mut [u8]> = Vec::with_capacity(l.len());
        for (off, len) in l {
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(off - pos);
            let (mine, tail) = tail.split_at_mut(len);
            locals.push(mine);
            rest = tail;
            pos = off + len;
        }
        let n = sys::vm_readv_into(crate::procfs::via(pid), &mut locals, &r).ctx(pid, || format!("process_vm_readv at {:#x}", r[0].0))?;
        if n != want {
            return Err(Error::Refused { pid, why: format!("short process_vm_readv at {:#x}: {n} of {want} bytes", r[0].0) });
        }
    }
    Ok(used)
}

fn buf_slice(b: &mut sys::AnonBuf) -> &mut [u8] {
    b.as_mut_slice()
}

fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    // Holes inside SEEK_DATA extents read as zeros; short reads past EOF are zero-filled.
    let mut done = 0;
    while done < buf.len() {
        let n = f.read_at(&mut buf[done..], off + done as u64)?;
        if n == 0 {
            buf[done..].fill(0);
            break;
        }
        done += n;
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;

    fn job(pid: i32, addr: u64, pfns: &[u64]) -> Job {
        let pfns = pfns.iter().any(|&p| p != 0).then(|| pfns.to_vec());
        let cow = pfns.is_some();
        Job { pid, object_id: 0, addr, count: pfns.as_ref().map_or(4, |p| p.len() as u64), src: JobSrc::Proc(Src::Vm), pfns, cow }
    }

    fn col(jobs: Vec<Job>) -> MemCollect {
        MemCollect { vmas: Vec::new(), jobs, shm_files: Vec::new(), sysv: Vec::new(), shared: Vec::new() }
    }

    /// (pid, addr, count, None if stored / Some((job, page)) if shared)
    type Shape = Vec<(i32, u64, u64, Option<(usize, u64)>)>;
    fn shape(c: &MemCollect) -> Shape {
        c.jobs
            .iter()
            .map(|j| {
                let s = match j.src {
                    JobSrc::Same { job, page } => Some((job, page)),
                    _ => None,
                };
                (j.pid, j.addr, j.count, s)
            })
            .collect()
    }

    #[test]
    fn anonymous_hugetlb_is_anonymous_memory() {
        let e = |shared: bool, path: &str, flags: &[&str]| MapEntry {
            start: 0x20_0000,
            end: 0x40_0000,
            prot: 3,
            shared,
            pgoff: 0,
            dev_major: 0,
            dev_minor: 0x11,
            inode: 7,
            path: path.into(),
            vm_flags: flags.iter().map(|f| f.to_string()).collect(),
            page_size: 2 << 20,
        };
        let anon = "/anon_hugepage (deleted)";
        assert_eq!(classify(1, &e(false, anon, &["rd", "ht"])).unwrap(), VmaKind::Anon);
        assert_eq!(classify(1, &e(true, anon, &["rd", "sh", "ht"])).unwrap(), VmaKind::ShmemAnon);
        // a memfd in huge pages is a nameless file; the name alone (no ht) is a file too
        assert_eq!(classify(1, &e(true, "/memfd:huge (deleted)", &["ht"])).unwrap(), VmaKind::FileShared);
        assert_eq!(classify(1, &e(false, anon, &["rd"])).unwrap(), VmaKind::FilePrivate);
    }

    #[test]
    fn huge_pages_needed_per_size() {
        const H: u64 = 2 << 20;
        const G: u64 = 1 << 30;
        let vma = |start: u64, pages: u64, h: u64, shared: bool, nr: bool, saved: u64| Vma {
            start,
            end: start + pages * h,
            huge_page_size: h,
            shared,
            vm_flags: if nr { vec!["nr".into()] } else { Vec::new() },
            pages_saved: saved,
            ..Default::default()
        };
        let p = |vmas: Vec<Vma>| Process { vmas, ..Default::default() };
        let obj = |kind: Kind| Object { kind: Some(kind), ..Default::default() };
        let m = Manifest {
            processes: vec![
                // 4 reserved + 1 GiB page; a NORESERVE mapping of 100 pages with 3 stored
                p(vec![vma(0, 4, H, false, false, 1), vma(G, 1, G, false, false, 2), vma(4 * G, 100, H, false, true, 3)]),
                // a second process: its own private copy; shared VMAs count by object
                p(vec![vma(0, 4, H, false, false, 0), vma(8 * G, 2, H, true, false, 0), Vma { start: 9 * G, end: 9 * G + PAGE, ..Default::default() }]),
            ],
            objects: vec![
                obj(Kind::Shmem(ShmemObj { ino: 1, size: 2 * H, huge_page_size: H })),
                obj(Kind::Ghost(GhostObj { size: 3 * H, huge_page_size: H, ..Default::default() })),
                obj(Kind::SysvShm(SysvShmObj { size: H + 1, huge_page_size: H, ..Default::default() })),
                obj(Kind::SysvShm(SysvShmObj { size: H, huge_page_size: H, locked: true, ..Default::default() })),
                obj(Kind::Shmem(ShmemObj { ino: 2, size: PAGE, huge_page_size: 0 })),
            ],
            ..Default::default()
        };
        // the locked segment stands for one that still exists: attached as it is
        let exists = |s: &SysvShmObj| s.locked;
        assert_eq!(huge_pages_needed(&m, exists), vec![(H, 4 + 3 + 4 + 2 + 3 + 2), (G, 1)]);
        assert_eq!(huge_pages_needed(&Manifest::default(), exists), vec![]);
    }

    #[test]
    fn cow_pages_of_later_processes_reference_the_first_copy() {
        let a = 0x1000_0000;
        let mut c = col(vec![
            // parent: 6 pages, page 2 exclusive (0)
            job(10, a, &[101, 102, 0, 104, 105, 106]),
            // child: same PFNs except page 1 (its own copy) and page 2
            job(11, a, &[101, 201, 0, 104, 105, 106]),
            // another child: pages 3..6 only, with a different start address
            job(12, a + 3 * PAGE, &[104, 105, 106]),
            // a PFN repeated inside the parent itself is not shared with itself
            job(10, a + 0x100000, &[101, 301]),
        ]);
        let shared = share_cow(&mut c);
        assert_eq!(
            shape(&c),
            vec![
                (10, a, 6, None),
                (11, a, 1, Some((0, 0))),
                (11, a + PAGE, 2, None),
                (11, a + 3 * PAGE, 3, Some((0, 3))),
                (12, a + 3 * PAGE, 3, Some((0, 3))),
                (10, a + 0x100000, 2, None),
            ]
        );
        assert_eq!(shared, 7);
    }

    #[test]
    fn shared_runs_stop_where_source_pages_stop_being_consecutive() {
        let a = 0x2000_0000;
        let mut c = col(vec![job(1, a, &[7, 8]), job(1, a + 0x10000, &[9]), job(2, a, &[7, 9, 8]), job(3, a, &[0, 0, 0, 0])]);
        assert_eq!(share_cow(&mut c), 3);
        assert_eq!(
            shape(&c),
            vec![
                (1, a, 2, None),
                (1, a + 0x10000, 1, None),
                (2, a, 1, Some((0, 0))),
                (2, a + PAGE, 1, Some((1, 0))),
                (2, a + 2 * PAGE, 1, Some((0, 1))),
                (3, a, 4, None),
            ]
        );
    }
}
