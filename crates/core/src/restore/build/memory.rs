//! The address space: vDSO, VMAs, pages, madvise flags, mm fields.

use stasis_image::model::*;
use stasis_sys::kabi::PrctlMmMap;
use stasis_sys::remote::RemoteCalls;
use stasis_sys::sys;
use tracing::warn;

use crate::error::Result;

use super::super::*;
use super::Builder;

const MLOCK_ONFAULT: u64 = 1;
/// madvise advice, Linux 6.13 (newer than the system headers).
const MADV_GUARD_INSTALL: u64 = 102;
/// mseal(2), Linux 6.10 (newer than the system headers).
const SYS_MSEAL: i64 = 462;

impl Builder<'_> {
    pub(super) fn address_space(&self) -> Result<()> {
        let r = self.main();
        let st = "moving the vDSO";
        // stage: our (= the child's) vDSO family into the staging area, relative layout kept
        let base = self.self_vdso.first().map(|x| x.1).unwrap_or(0);
        for (_, s, e) in self.self_vdso {
            let to = self.stage + (s - base);
            self.call(st, r, libc::SYS_mremap, &[*s, e - s, e - s, (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64, to])?;
        }
        let st = "unmapping the restorer";
        let hi = self.stage + (self.self_vdso.last().map(|x| x.2).unwrap_or(base) - base);
        // kept: the trampoline with the staged vDSO, and the premap area while pieces
        // built there before the fork are still to be moved into place
        let area = self.plan.premap.as_ref().filter(|_| !self.pp.premaps.is_empty()).map(|a| (a.addr(), a.addr() + a.len()));
        let mut keep: Vec<(u64, u64)> = vec![(self.tramp, hi)];
        keep.extend(area);
        keep.sort_unstable();
        let mut at = 0u64;
        for &(s, e) in &keep {
            if s > at {
                self.call(st, r, libc::SYS_munmap, &[at, s - at])?;
            }
            at = at.max(e);
        }
        if at < TASK_SIZE {
            self.call(st, r, libc::SYS_munmap, &[at, TASK_SIZE - at])?;
        }
        let st = "moving the vDSO";
        let img_base = image_vdso(self.p).first().map(|x| x.1).unwrap_or(base);
        for (_, s, e) in self.self_vdso {
            let from = self.stage + (s - base);
            let to = img_base + (s - base);
            self.call(st, r, libc::SYS_mremap, &[from, e - s, e - s, (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64, to])?;
        }
        // map every VMA
        for v in &self.p.vmas {
            let kind = VmaKind::try_from(v.kind).unwrap_or(VmaKind::Unknown);
            let len = v.end - v.start;
            let fill = v.pages_saved > 0 && matches!(kind, VmaKind::Anon | VmaKind::FilePrivate);
            let prot = if fill { (libc::PROT_READ | libc::PROT_WRITE) as u32 | v.prot } else { v.prot } as u64;
            let gd = if v.vm_flags.iter().any(|f| f == "gd") { libc::MAP_GROWSDOWN } else { 0 }
                | if v.vm_flags.iter().any(|f| f == "nr") { libc::MAP_NORESERVE } else { 0 }
                | if v.huge_page_size != 0 { libc::MAP_HUGETLB | sys::huge_size_bits(v.huge_page_size) } else { 0 };
            let fixed = libc::MAP_FIXED;
            let step = format!("mapping VMA {:#x}-{:#x} {}", v.start, v.end, v.name);
            let fd_of = |id: u32| -> Result<u64> {
                let slot = self.plan.rp.map_slot.get(&id).ok_or_else(|| self.err(&step, "no file for this mapping"))?;
                Ok(self.tmp_fds[*slot] as u64)
            };
            let args: [u64; 6] = match kind {
                VmaKind::Anon => [v.start, len, prot, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed | gd) as u64, u64::MAX, 0],
                VmaKind::FilePrivate => [v.start, len, prot, (libc::MAP_PRIVATE | fixed | gd) as u64, fd_of(v.object_id)?, v.pgoff],
                // a packet ring: through the carried socket, whose ring the restorer set
                // up and filled (fdkinds::packet)
                VmaKind::FileShared | VmaKind::ShmemAnon | VmaKind::PacketRing => {
                    [v.start, len, prot, (libc::MAP_SHARED | fixed) as u64, fd_of(v.object_id)?, v.pgoff]
                }
                VmaKind::SysvShm => {
                    self.attach_sysv(v, &step)?;
                    continue;
                }
                // made by io_setup once every other VMA is in place (`aio_contexts`)
                VmaKind::AioRing | VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall => continue,
                VmaKind::Unknown => return Err(self.err(&step, "VMA of unknown kind")),
            };
            let got = self.call(&step, r, libc::SYS_mmap, &args)?;
            if got != v.start {
                return Err(self.err(&step, format!("mapped at {got:#x}")));
            }
        }
        // the pieces built before the fork (shared copy-on-write with the parent and
        // the children) replace their part of the fresh mappings
        if let Some((a, e)) = area {
            for pm in &self.pp.premaps {
                let step = format!("moving private memory built before the fork to {:#x}-{:#x}", pm.start, pm.end);
                let len = pm.end - pm.start;
                let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
                let got = self.call(&step, r, libc::SYS_mremap, &[a + pm.tmp, len, len, flags, pm.start])?;
                if got != pm.start {
                    return Err(self.err(&step, format!("moved to {got:#x}")));
                }
            }
            self.call("unmapping the premap area", r, libc::SYS_munmap, &[a, e - a])?;
        }
        Ok(())
    }

    /// Once every other VMA is mapped (io_setup maps a new ring wherever the kernel
    /// likes, which must not be where a VMA of the image goes): each aio context, its
    /// ring moved to its address (left free by `address_space`). No page run of the
    /// image covers a ring: `fill_memory` leaves it alone.
    pub(super) fn aio_contexts(&self) -> Result<()> {
        for v in self.p.vmas.iter().filter(|v| v.kind == VmaKind::AioRing as i32) {
            let n = v.aio.as_ref().map_or(0, |a| a.events.len());
            let step = format!("recreating the aio context {:#x} ({n} unreaped completions)", v.start);
            crate::aio::restore_ring(self.main(), self.pid, v).map_err(|why| self.err(&step, why))?;
        }
        Ok(())
    }

    /// A SysV attachment: one shmat of the whole segment at its first VMA (pgoff 0; dump
    /// refuses partly unmapped attachments), then each VMA's own protection.
    pub(super) fn attach_sysv(&self, v: &Vma, step: &str) -> Result<()> {
        let r = self.main();
        let s = self.m.object(v.object_id).and_then(|o| o.sysv_shm()).ok_or_else(|| self.err(step, "no SysV segment object"))?;
        let id = s.perm.as_ref().map(|p| p.id).unwrap_or(-1);
        if v.pgoff == 0 {
            let got = self.call(step, r, libc::SYS_shmat, &[id as u64, v.start, v.shm_flags as u64])?;
            if got != v.start {
                return Err(self.err(step, format!("shmat of segment {id} landed at {got:#x}")));
            }
        }
        let rdonly = v.shm_flags & stasis_sys::sysv::SHM_RDONLY != 0;
        let attach_prot = (libc::PROT_READ | if rdonly { 0 } else { libc::PROT_WRITE }) as u32;
        if v.prot != attach_prot {
            self.call(step, r, libc::SYS_mprotect, &[v.start, v.end - v.start, v.prot as u64])?;
        }
        Ok(())
    }

    pub(super) fn fill_memory(&self) -> Result<()> {
        let pid = self.pid;
        // (address, bytes, shard, file offset) of its runs, without the parts built
        // before the fork (`plan::Premap`: already in place)
        let mut built: Vec<(u64, u64)> = self.pp.premaps.iter().map(|p| (p.start, p.end)).collect();
        built.sort_unstable();
        let mut runs: Vec<(u64, u64, u32, u64)> = Vec::new();
        for r in self.m.index.runs.iter().filter(|r| r.object_id == 0 && (r.pid == pid || r.pid == 0)) {
            let (mut a, end) = (r.addr, r.addr + r.count as u64 * PAGE);
            let k = built.partition_point(|b| b.1 <= a);
            for &(s, e) in built[k..].iter().take_while(|b| b.0 < end) {
                if s > a {
                    runs.push((a, s - a, r.shard, r.file_offset + (a - r.addr)));
                }
                a = a.max(e);
            }
            if a < end {
                runs.push((a, end - a, r.shard, r.file_offset + (a - r.addr)));
            }
        }
        let total: u64 = runs.iter().map(|r| r.1).sum();
        let pb = crate::progress::Progress::new(total, "restoring memory");
        // Batches of up to 1024 iovecs / 64 MiB, split over two threads.
        let mut batches: Vec<&[(u64, u64, u32, u64)]> = Vec::new();
        let mut i = 0;
        while i < runs.len() {
            let mut j = i;
            let mut bytes = 0u64;
            while j < runs.len() && j - i < 1024 && bytes < (64 << 20) {
                bytes += runs[j].1;
                j += 1;
            }
            batches.push(&runs[i..j]);
            i = j;
        }
        let shards = self.shards;
        let failed: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        let nthreads = 2usize;
        std::thread::scope(|s| {
            for t in 0..nthreads {
                let batches = &batches;
                let failed = &failed;
                let pb = &pb;
                s.spawn(move || {
                    for b in batches.iter().skip(t).step_by(nthreads) {
                        let local: Vec<(*const u8, usize)> =
                            b.iter().map(|r| (shards[r.2 as usize][r.3 as usize..].as_ptr(), r.1 as usize)).collect();
                        let remote: Vec<(u64, usize)> = b.iter().map(|r| (r.0, r.1 as usize)).collect();
                        let want: usize = remote.iter().map(|x| x.1).sum();
                        match sys::vm_writev(pid, &local, &remote) {
                            Ok(n) if n == want => pb.inc(n as u64),
                            Ok(n) => {
                                *failed.lock().unwrap() = Some(format!("short write at {:#x}: {n} of {want} bytes", remote[0].0));
                                return;
                            }
                            Err(e) => {
                                *failed.lock().unwrap() = Some(format!("process_vm_writev at {:#x}: {e}", remote[0].0));
                                return;
                            }
                        }
                        if failed.lock().unwrap().is_some() {
                            return;
                        }
                    }
                });
            }
        });
        pb.finish();
        if let Some(why) = failed.into_inner().unwrap() {
            return Err(self.err("filling memory", why));
        }
        Ok(())
    }

    pub(super) fn finish_vmas(&self) -> Result<()> {
        let r = self.main();
        for v in &self.p.vmas {
            let kind = VmaKind::try_from(v.kind).unwrap_or(VmaKind::Unknown);
            if matches!(kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall) {
                continue;
            }
            let step = format!("VMA {:#x}-{:#x} {}", v.start, v.end, v.name);
            let len = v.end - v.start;
            // io_setup maps its ring readable and writable
            if kind == VmaKind::AioRing && v.prot != (libc::PROT_READ | libc::PROT_WRITE) as u32 {
                self.call(&step, r, libc::SYS_mprotect, &[v.start, len, v.prot as u64])?;
            }
            let fill = v.pages_saved > 0 && matches!(kind, VmaKind::Anon | VmaKind::FilePrivate);
            if fill && v.prot != (libc::PROT_READ | libc::PROT_WRITE) as u32 | v.prot {
                self.call(&step, r, libc::SYS_mprotect, &[v.start, len, v.prot as u64])?;
            }
            for f in &v.vm_flags {
                let advice = match f.as_str() {
                    "dc" => libc::MADV_DONTFORK,
                    "wf" => libc::MADV_WIPEONFORK,
                    "hg" => libc::MADV_HUGEPAGE,
                    "nh" => libc::MADV_NOHUGEPAGE,
                    "dd" => libc::MADV_DONTDUMP,
                    "mg" => libc::MADV_MERGEABLE,
                    "sr" => libc::MADV_SEQUENTIAL,
                    "rr" => libc::MADV_RANDOM,
                    _ => continue,
                };
                if let Err(e) = r.call(libc::SYS_madvise, &[v.start, len, advice as u64]) {
                    warn!("pid {}: {step}: madvise {f}: {e}", self.pid);
                }
            }
            if v.mempolicy.is_some() {
                let (mode, nodes) = crate::numa::raw_mode(v.mempolicy.as_ref());
                self.on(&step, r, "mbind (its NUMA policy)", |r| r.mbind(v.start, len, mode, nodes))?;
            }
            // guard regions before mlock (the kernel refuses them in locked VMAs)
            for g in v.guards.chunks_exact(2) {
                let st = format!("{step}: guard region of {} pages at page {} (madvise MADV_GUARD_INSTALL)", g[1], g[0]);
                self.call(&st, r, libc::SYS_madvise, &[v.start + g[0] * PAGE, g[1] * PAGE, MADV_GUARD_INSTALL])?;
            }
            if v.vm_flags.iter().any(|f| f == "lo") {
                // locked on fault: only the pages it had are resident (and locked)
                let onfault = v.vm_flags.iter().any(|f| f == "lf");
                let res = if onfault {
                    r.call(libc::SYS_mlock2, &[v.start, len, MLOCK_ONFAULT])
                } else {
                    r.call(libc::SYS_mlock, &[v.start, len])
                };
                if let Err(e) = res {
                    warn!("pid {}: {step}: mlock{}: {e}", self.pid, if onfault { "2(MLOCK_ONFAULT)" } else { "" });
                }
            }
        }
        // Sealed VMAs last: nothing may change them afterwards (mprotect, madvise,
        // munmap and mremap of a sealed VMA fail with EPERM).
        for v in self.p.vmas.iter().filter(|v| v.vm_flags.iter().any(|f| f == "sl")) {
            let step = format!("sealing VMA {:#x}-{:#x} {} (mseal)", v.start, v.end, v.name);
            self.call(&step, r, SYS_MSEAL, &[v.start, v.end - v.start, 0])?;
        }
        Ok(())
    }

    pub(super) fn mm_fields(&self) -> Result<()> {
        let mm = self.p.mm.clone().unwrap_or_default();
        let st = "setting mm fields (PR_SET_MM_MAP)";
        // The kernel refuses to switch exe_file while the old one is still mapped; when the
        // image's executable is the restorer's own binary it is, and it is also already
        // the right file: keep it (-1).
        let exe_fd = match self.pp.exe_slot {
            _ if self.pp.exe_is_ours => u32::MAX,
            Some(slot) => self.tmp_fds[slot] as u32,
            None => return Err(self.err(st, "no executable")),
        };
        let map = PrctlMmMap {
            start_code: mm.start_code,
            end_code: mm.end_code,
            start_data: mm.start_data,
            end_data: mm.end_data,
            start_brk: mm.start_brk,
            brk: mm.brk,
            start_stack: mm.start_stack,
            arg_start: mm.arg_start,
            arg_end: mm.arg_end,
            env_start: mm.env_start,
            env_end: mm.env_end,
            exe_fd,
            ..Default::default()
        };
        // auxv goes into the trampoline's data area after the struct (an error if too large)
        self.on(st, self.main(), "prctl(PR_SET_MM_MAP)", |r| r.prctl_set_mm_map(&map, &mm.auxv))?;
        if mm.thp_disabled {
            self.call("THP disable", self.main(), libc::SYS_prctl, &[libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0])?;
        }
        for (_, reg) in crate::task::MEMBARRIER_REGISTRATIONS {
            if mm.membarrier & reg != 0 {
                self.call(&format!("membarrier registration {reg}"), self.main(), libc::SYS_membarrier, &[reg as u64, 0, 0])?;
            }
        }
        if mm.lock_future != 0 {
            // only mm->def_flags: the mappings locked now were locked one by one already
            self.call("mlockall (MCL_FUTURE)", self.main(), libc::SYS_mlockall, &[mm.lock_future as u64])?;
        }
        for (i, raw) in mm.ldt.iter().enumerate().filter(|(_, d)| **d != 0) {
            let d = crate::ldt::user_desc(i, *raw);
            self.on(st, self.main(), &format!("modify_ldt (entry {i})"), |r| r.modify_ldt_write(&d))?;
        }
        if mm.memory_merge {
            self.call("KSM for the whole process (PR_SET_MEMORY_MERGE)", self.main(), libc::SYS_prctl, &[crate::task::PR_SET_MEMORY_MERGE, 1, 0, 0, 0])?;
        }
        Ok(())
    }

}
