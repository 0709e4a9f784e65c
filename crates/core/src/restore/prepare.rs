//! Carrying out the plan's first part in the restorer: recreate nameless inodes and
//! network namespaces, open every carried object in carry-slot order, create and fill
//! shared memory, resolve cgroups, pick the fd base above which the children carry.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use stasis_image::Manifest;
use stasis_sys::sys;

use crate::error::{Error, Result};
use crate::{files, ns, procfs};

use super::plan::{Carry, RestorePlan};
use super::PAGE;

/// The plan with everything the restorer opened for it, ready to fork.
pub(super) struct Plan {
    pub(super) rp: RestorePlan,
    /// fds in the restorer the new processes take over (index = carry slot).
    pub(super) carry: Vec<OwnedFd>,
    /// The children move carried fds to this number and above (above every fd any
    /// process needs and every fd of ours).
    pub(super) base: i32,
    pub(super) tramp: u64,
    /// Named FIFOs held open by the restorer until every new process has its fds.
    pub(super) fifo_keep: Vec<OwnedFd>,
    /// Unix socket queues sent once every process exists (they carry credentials).
    pub(super) late: crate::fdkinds::unix::Late,
    /// Memfds whose last seals (`files::late_seals`) wait until every process mapped
    /// them: (fd, seals, name).
    pub(super) late_seals: Vec<(OwnedFd, u32, String)>,
    /// The premap area (`plan::Premap`), reserved before the fork.
    pub(super) premap: Option<sys::Reservation>,
}

pub(super) fn prepare(
    m: &Manifest,
    mut rp: RestorePlan,
    tramp: u64,
    inherit: &crate::external::Inherited,
    tcp_close: bool,
    cgroups: &crate::cgroup::Prepared,
    shards: &[&[u8]],
) -> Result<(Plan, Vec<sys::SharedAnon>)> {
    let pid = rp.root;
    let step = |why: String| Error::RestoreStep { pid, step: "preparing files".into(), why };
    let ghosts = files::create_ghosts(m, inherit, shards)?;
    let mut late_seals = Vec::new();
    for o in &m.objects {
        let Some(g) = o.ghost().filter(|g| files::late_seals(g) != 0) else { continue };
        let fd = ghosts.get(&o.id).ok_or_else(|| step(format!("memfd {} was not made", g.memfd_name)))?;
        let fd = fd.try_clone().map_err(|e| step(format!("keeping memfd {} for its seals: {e}", g.memfd_name)))?;
        late_seals.push((fd, files::late_seals(g), g.memfd_name.clone()));
    }
    let mut netns = ns::create_netns(m)?;
    let mut opened = files::open_fd_objects(m, &ghosts, inherit, &netns, tcp_close)?;
    let mut carry: Vec<OwnedFd> = Vec::with_capacity(rp.carry.len());
    let mut shm_keep = Vec::new();
    for c in &rp.carry {
        let fd = match c {
            Carry::NetNs(ino) => netns.remove(ino).ok_or_else(|| step(format!("network namespace net:[{ino}] was not created")))?,
            Carry::Fd(id) => opened.by_object.remove(id).ok_or_else(|| step(format!("object {id} was not opened")))?,
            Carry::Mapped(id) => {
                let o = m.object(*id).and_then(|o| o.mapped_file()).ok_or_else(|| step(format!("mapped-file object {id} missing")))?;
                files::open_mapped(o, &ghosts).map_err(|e| step(format!("opening {} for mapping: {e}", o.path)))?
            }
            Carry::GhostDir(id) => files::reopen_ghost(&ghosts, *id, (libc::O_RDONLY | libc::O_DIRECTORY) as u32)
                .map_err(|e| step(format!("opening removed working or root directory (object {id}): {e}")))?,
            Carry::Shmem(id) => {
                let s = m.object(*id).and_then(|o| o.shmem()).ok_or_else(|| step(format!("shared-memory object {id} missing")))?;
                // hugetlb: a MAP_HUGETLB region of the same page size (its file is an
                // "anon_hugepage" of the kernel's hugetlbfs, as the original's)
                let huge = if s.huge_page_size != 0 { libc::MAP_HUGETLB | sys::huge_size_bits(s.huge_page_size) } else { 0 };
                let region = sys::SharedAnon::with_flags(s.size.max(PAGE) as usize, huge)
                    .map_err(|e| step(format!("creating shared memory of {} bytes{}: {e}", s.size, huge_note(s.huge_page_size))))?;
                let path = format!("/proc/self/map_files/{:x}-{:x}", region.addr(), region.addr() + region.len() as u64);
                let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(|e| step(format!("opening {path}: {e}")))?;
                shm_keep.push(region);
                OwnedFd::from(f)
            }
        };
        carry.push(fd);
    }
    let ours = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/exe").ok().map(|a| (a.dev(), a.ino()))
    };
    for (i, pp) in rp.procs.iter_mut().enumerate() {
        if let Some(slot) = pp.exe_slot {
            use std::os::unix::fs::MetadataExt;
            let b = std::fs::metadata(format!("/proc/self/fd/{}", carry[slot].as_raw_fd())).ok();
            pp.exe_is_ours = matches!((ours, b), (Some(a), Some(b)) if a == (b.dev(), b.ino()));
        }
        if pp.ns.unshare & libc::CLONE_NEWCGROUP != 0 {
            pp.ns.cgroup_procs = cgroups.procs_files(pp.pid, &m.processes[i].cgroups).map_err(step)?;
        }
    }
    let max_ours = procfs::fds(sys::getpid()).unwrap_or_default().into_iter().max().unwrap_or(0);
    let base = rp.max_fd.max(max_ours).max(carry.len() as i32 + 3) + 1;
    let fifo_keep = std::mem::take(&mut opened.keep);
    let late = std::mem::take(&mut opened.late);
    Ok((Plan { rp, carry, base, tramp, fifo_keep, late, late_seals, premap: None }, shm_keep))
}

/// Fills shared-memory objects from the pages files (through the fds the plan holds).
/// Only runs of shared-memory objects are written (validate guarantees nothing else has
/// object runs; SysV segments are filled by ipc::restore).
pub(super) fn fill_shmem(m: &Manifest, plan: &Plan, shards: &[&[u8]]) -> Result<()> {
    let pid = plan.rp.root;
    let step = |why: String| Error::RestoreStep { pid, step: "filling shared memory".into(), why };
    let mut writers: std::collections::HashMap<u32, files::FileWriter> = std::collections::HashMap::new();
    for r in &m.index.runs {
        if r.object_id == 0 {
            continue;
        }
        let Some(o) = m.object(r.object_id) else {
            return Err(step(format!("page run for unknown object {}", r.object_id)));
        };
        if o.sysv_shm().is_some() || o.ghost().is_some() || o.mapped_file().is_some_and(|f| f.saved.is_some()) {
            continue; // filled by ipc::restore, files::create_ghosts, shmfile::recreate
        }
        if o.shmem().is_none() {
            return Err(step(format!("page run for object {}, which is not shared memory", r.object_id)));
        }
        let slot = plan.rp.map_slot.get(&r.object_id).copied().ok_or_else(|| step(format!("shared-memory object {} was not created", r.object_id)))?;
        let a = r.file_offset as usize;
        let bytes = shards
            .get(r.shard as usize)
            .and_then(|s| s.get(a..a.checked_add((r.count as usize).checked_mul(PAGE as usize)?)?))
            .ok_or_else(|| step(format!("page run at {:#x} lies outside its pages file", r.addr)))?;
        let size = o.shmem().map(|s| s.size).unwrap_or(0);
        let mut w = writers.remove(&r.object_id).map(Ok).unwrap_or_else(|| files::FileWriter::new(plan.carry[slot].as_fd(), size))
            .map_err(|e| step(format!("shared-memory object {}: {e}", r.object_id)))?;
        w.write_at(bytes, r.addr).map_err(|e| step(format!("offset {:#x}: {e}", r.addr)))?;
        writers.insert(r.object_id, w);
    }
    Ok(())
}

/// " in huge pages of N kB" for an error message (nothing for ordinary pages).
pub(crate) fn huge_note(huge_page_size: u64) -> String {
    if huge_page_size == 0 {
        String::new()
    } else {
        format!(" in huge pages of {} kB", huge_page_size / 1024)
    }
}
