//! Memory: VMAs and their pages. Dump side: classify VMAs from smaps, find the pages
//! that exist (pagemap, SEEK_DATA for shared memory), stream them to pages.img.
//! The restore side (mapping and filling) lives in restore.rs.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;

use stasis_image::model::*;
use stasis_image::{page_size, PAGES_HEADER_LEN};
use stasis_sys::sys;
use tracing::debug;

use crate::error::{path_err, Ctx, Error, Result};
use crate::files;
use crate::objects::ObjectTable;
use crate::procfs::{self, MapEntry};

const PAGE: u64 = 4096;
const PM_PRESENT: u64 = 1 << 63;
const PM_SWAP: u64 = 1 << 62;
const PM_FILE: u64 = 1 << 61;
const PFN_MASK: u64 = (1 << 55) - 1;
/// Largest run with one checksum (1 MiB), so runs can later be served on demand.
const MAX_RUN_PAGES: u64 = 256;
/// Buffer handed from the reader thread to the writer thread.
const CHUNK: usize = 32 << 20;

/// smaps VmFlags that restore reproduces with mmap/madvise.
pub const KEPT_FLAGS: &[&str] = &["gd", "dc", "wf", "hg", "nh", "dd", "mg", "lo", "sr", "rr"];

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
    pub object_id: u32,
    /// Address (object 0) or byte offset in the object.
    pub addr: u64,
    pub count: u64,
    src: JobSrc,
}

#[derive(Debug, Clone)]
enum JobSrc {
    Proc(Src),
    /// Index into the list of shared-memory files.
    Shm(usize),
}

pub struct MemCollect {
    pub vmas: Vec<Vma>,
    pub jobs: Vec<Job>,
    pub shm_files: Vec<File>,
    pub vdso: Option<(u64, u64)>,
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

fn classify(pid: i32, m: &MapEntry) -> Result<VmaKind> {
    let p = m.path.as_str();
    Ok(match p {
        "[vdso]" => VmaKind::Vdso,
        "[vvar]" => VmaKind::Vvar,
        "[vvar_vclock]" => VmaKind::VvarVclock,
        "[vsyscall]" => VmaKind::Vsyscall,
        _ if m.inode == 0 && !m.shared => VmaKind::Anon,
        _ if m.shared && (p == "/dev/zero (deleted)" || p.starts_with("[anon_shmem:")) => VmaKind::ShmemAnon,
        _ if p.starts_with("/SYSV") => {
            return Err(Error::Unsupported { pid, what: format!("VMA {:#x}-{:#x} is SysV shared memory", m.start, m.end) })
        }
        _ if p.starts_with("/memfd:") => {
            return Err(Error::Unsupported { pid, what: format!("VMA {:#x}-{:#x} maps memfd {p}", m.start, m.end) })
        }
        _ if p.ends_with(" (deleted)") => {
            return Err(Error::Unsupported { pid, what: format!("VMA {:#x}-{:#x} maps deleted file {p}", m.start, m.end) })
        }
        _ if p.starts_with('/') => {
            if m.shared {
                VmaKind::FileShared
            } else {
                VmaKind::FilePrivate
            }
        }
        _ if m.inode == 0 && m.shared => {
            return Err(Error::Unsupported { pid, what: format!("VMA {:#x}-{:#x} {p} (shared special mapping)", m.start, m.end) })
        }
        _ => return Err(Error::Unsupported { pid, what: format!("VMA {:#x}-{:#x} of kind {p:?}", m.start, m.end) }),
    })
}

/// Splits [addr, addr+count pages) into runs of at most MAX_RUN_PAGES.
fn push_runs(jobs: &mut Vec<Job>, object_id: u32, addr: u64, count: u64, src: JobSrc) {
    let mut a = addr;
    let mut left = count;
    while left > 0 {
        let n = left.min(MAX_RUN_PAGES);
        jobs.push(Job { object_id, addr: a, count: n, src: src.clone() });
        a += n * PAGE;
        left -= n;
    }
}

/// Reads VMAs and decides which pages to save.
pub fn collect(pid: i32, objs: &mut ObjectTable) -> Result<MemCollect> {
    let maps = procfs::smaps(pid).ctx(pid, || "reading /proc/PID/smaps".into())?;
    let pagemap = File::open(format!("/proc/{pid}/pagemap")).ctx(pid, || "opening /proc/PID/pagemap".into())?;
    let zpfn = zero_pfn();
    let mut out = MemCollect { vmas: Vec::new(), jobs: Vec::new(), shm_files: Vec::new(), vdso: None };
    let mut shm_seen: Vec<(u64, u32)> = Vec::new();
    for m in &maps {
        let kind = classify(pid, m)?;
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
        };
        let map_file = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
        match kind {
            VmaKind::Vdso => out.vdso = Some((m.start, m.end)),
            VmaKind::FileShared | VmaKind::FilePrivate => {
                let writable = m.shared && m.prot & libc::PROT_WRITE as u32 != 0;
                vma.object_id = files::mapped_file(pid, objs, &map_file, &m.path, writable, true)?;
            }
            VmaKind::ShmemAnon => {
                if let Some((_, id)) = shm_seen.iter().find(|(ino, _)| *ino == m.inode) {
                    vma.object_id = *id;
                } else {
                    let f = File::open(&map_file).ctx(pid, || format!("opening {map_file}"))?;
                    let size = f.metadata().ctx(pid, || format!("stat {map_file}"))?.len();
                    let ino = m.inode;
                    let id = objs.intern(format!("shmem:{ino}"), |_| Object {
                        shmem: Some(ShmemObj { ino, size }),
                        ..Default::default()
                    });
                    shm_seen.push((ino, id));
                    vma.object_id = id;
                    // Allocated extents of the object (SEEK_DATA/SEEK_HOLE).
                    let idx = out.shm_files.len();
                    let mut off = 0u64;
                    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
                    while off < size {
                        let Ok(d) = sys::lseek(fd, off as i64, libc::SEEK_DATA) else { break };
                        let h = sys::lseek(fd, d, libc::SEEK_HOLE).unwrap_or(size as i64) as u64;
                        let (d, h) = (d as u64 / PAGE * PAGE, h.min(size).div_ceil(PAGE) * PAGE);
                        if h > d {
                            push_runs(&mut out.jobs, id, d, (h - d) / PAGE, JobSrc::Shm(idx));
                        }
                        off = h.max(d + PAGE);
                    }
                    out.shm_files.push(f);
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
            for i in 0..=n {
                let keep = if i < n {
                    let e = u64::from_le_bytes(ents[(i * 8) as usize..(i * 8 + 8) as usize].try_into().unwrap());
                    (e & PM_SWAP != 0) || (e & PM_PRESENT != 0 && e & PM_FILE == 0 && (e & PFN_MASK) != zpfn)
                } else {
                    false
                };
                match (keep, run_start) {
                    (true, None) => run_start = Some(i),
                    (false, Some(s)) => {
                        push_runs(&mut out.jobs, 0, m.start + s * PAGE, i - s, JobSrc::Proc(src));
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
    // pages_saved for shared memory VMAs: count the object's pages inside the VMA window.
    for v in out.vmas.iter_mut().filter(|v| v.kind == VmaKind::ShmemAnon as i32) {
        let (lo, hi) = (v.pgoff, v.pgoff + (v.end - v.start));
        v.pages_saved = out
            .jobs
            .iter()
            .filter(|j| j.object_id == v.object_id)
            .map(|j| {
                let (a, b) = (j.addr.max(lo), (j.addr + j.count * PAGE).min(hi));
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

/// Statistics of the page copy.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageStats {
    pub pages: u64,
    pub bytes: u64,
}

/// Streams every job's pages into `dir/pages.img` (reader thread: process_vm_readv and
/// CRC; writer thread: sequential writes) and returns the page index.
pub fn write_pages(
    pid: i32,
    dir: &Path,
    col: &MemCollect,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(PageIndex, PageStats, u64, u32)> {
    let path = dir.join(stasis_image::PAGES);
    let mut file = File::create(&path).map_err(path_err(path.display().to_string()))?;
    let total_pages: u64 = col.jobs.iter().map(|j| j.count).sum();
    let header = stasis_image::pages_header(total_pages);
    let header_crc = crc32c::crc32c(&header);
    file.write_all(&header).map_err(path_err(path.display().to_string()))?;
    let mem = File::open(format!("/proc/{pid}/mem")).ctx(pid, || "opening /proc/PID/mem".into())?;

    let (to_writer, from_reader) = mpsc::sync_channel::<(sys::AnonBuf, usize)>(1);
    let (to_reader, free_bufs) = mpsc::channel::<sys::AnonBuf>();
    for _ in 0..3 {
        to_reader.send(sys::AnonBuf::new(CHUNK).ctx(pid, || "allocating copy buffer".into())?).unwrap();
    }
    let mut runs = Vec::with_capacity(col.jobs.len());
    let wpath = path.display().to_string();
    let result: Result<()> = std::thread::scope(|s| {
        let writer = s.spawn(move || -> Result<()> {
            let mut done = 0u64;
            for (buf, used) in from_reader {
                file.write_all(&buf.as_slice()[..used]).map_err(path_err(wpath.clone()))?;
                done += used as u64;
                progress(done);
                if to_reader.send(buf).is_err() {
                    break;
                }
            }
            file.flush().map_err(path_err(wpath.clone()))?;
            Ok(())
        });
        let mut off = PAGES_HEADER_LEN;
        let mut read_err = None;
        let mut i = 0;
        'outer: while i < col.jobs.len() {
            let Ok(mut buf) = free_bufs.recv() else { break };
            let base = buf.as_mut_ptr();
            let mut used = 0usize;
            let mut local: Vec<(*mut u8, usize)> = Vec::new();
            let mut remote: Vec<(u64, usize)> = Vec::new();
            let first = i;
            while i < col.jobs.len() {
                let j = &col.jobs[i];
                let len = (j.count * PAGE) as usize;
                if used + len > CHUNK {
                    break;
                }
                let dst = base.wrapping_add(used);
                match j.src {
                    JobSrc::Proc(Src::Vm) => {
                        local.push((dst, len));
                        remote.push((j.addr, len));
                    }
                    JobSrc::Proc(Src::Mem) => {
                        let sl = &mut buf_slice(&mut buf)[used..used + len];
                        if let Err(e) = mem.read_exact_at(sl, j.addr) {
                            read_err = Some(Error::Sys { pid, what: format!("reading non-readable memory at {:#x}", j.addr), err: e });
                            break 'outer;
                        }
                    }
                    JobSrc::Shm(k) => {
                        let sl = &mut buf_slice(&mut buf)[used..used + len];
                        if let Err(e) = read_full_at(&col.shm_files[k], sl, j.addr) {
                            read_err = Some(Error::Sys { pid, what: format!("reading shared memory object at offset {:#x}", j.addr), err: e });
                            break 'outer;
                        }
                    }
                }
                used += len;
                i += 1;
            }
            // process_vm_readv in batches of at most 1024 iovecs.
            for (l, r) in local.chunks_mut(1024).zip(remote.chunks(1024)) {
                let want: usize = r.iter().map(|x| x.1).sum();
                match sys::vm_readv(pid, l, r) {
                    Ok(n) if n == want => {}
                    Ok(n) => {
                        read_err = Some(Error::Refused { pid, why: format!("short process_vm_readv at {:#x}: {n} of {want} bytes", r[0].0) });
                        break 'outer;
                    }
                    Err(e) => {
                        read_err = Some(Error::Sys { pid, what: format!("process_vm_readv at {:#x}", r[0].0), err: e });
                        break 'outer;
                    }
                }
            }
            let data = buf.as_slice();
            let mut boff = 0usize;
            for j in &col.jobs[first..i] {
                let len = (j.count * PAGE) as usize;
                runs.push(PageRun {
                    object_id: j.object_id,
                    addr: j.addr,
                    count: j.count as u32,
                    file_offset: off,
                    crc: crc32c::crc32c(&data[boff..boff + len]),
                });
                off += len as u64;
                boff += len;
            }
            if to_writer.send((buf, used)).is_err() {
                break;
            }
        }
        drop(to_writer);
        let w = writer.join().expect("page writer thread panicked");
        if let Some(e) = read_err {
            return Err(e);
        }
        w
    });
    result?;
    let size = PAGES_HEADER_LEN + total_pages * page_size();
    let stats = PageStats { pages: total_pages, bytes: total_pages * PAGE };
    Ok((PageIndex { runs }, stats, size, header_crc))
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

