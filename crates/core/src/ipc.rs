//! SysV IPC objects: shared memory segments, message queues, semaphore sets.
//!
//! Dump: a helper thread joins the IPC namespace of a process (setns is per thread), so
//! /proc/sysvipc/* and the *ctl calls see that namespace. In a namespace of the tree's
//! own, every object is saved (ids, keys, owners, modes; segment contents as page runs;
//! every message with its type, read in order with MSG_COPY so nothing is consumed;
//! semaphore values), plus the namespace's limits. In stasis's own namespace only the
//! segments the tree has attached are saved: queues and semaphores there outlive the
//! process and are left alone. Segment contents are read through an attachment in our
//! own address space (mincore tells which pages exist, so none is faulted in).
//!
//! Restore: after every process exists (the namespace's first process has unshared
//! it), a helper thread joins the new namespace, restores its limits and recreates each
//! object with its id (writing /proc/sys/kernel/{shm,msg,sem}_next_id before each
//! *get), owner, mode, contents, messages and values. In stasis's namespace a segment
//! that still exists with the same id, key and size is attached as it is (it is shared
//! with the outside world); a missing one is recreated with its id and filled. The
//! processes then attach segments with injected shmat() (restore.rs). Segments marked
//! destroyed get IPC_RMID once every attachment is back (`Restored::finish`).
//! SEM_UNDO adjustments are not saved: the kernel has no call that reads them. A process
//! that has an undo list (kcmp KCMP_SYSVSEM against kthreadd, which has none, tells) in a
//! namespace with semaphore sets gets a warning: after restore its exit no longer undoes
//! what it did with SEM_UNDO.

use std::collections::HashMap;

use stasis_image::model::*;
use stasis_image::Manifest;
use stasis_sys::sys;
use stasis_sys::sysv::{self, ShmAttach};
use tracing::{debug, info};

use crate::error::{Ctx, Error, Result};
use crate::ns::in_ns;
use crate::objects::ObjectTable;

use crate::PAGE;
/// Limits of an IPC namespace restore carries over (/proc/sys/kernel/NAME).
const SYSCTLS: &[&str] = &["msgmax", "msgmnb", "msgmni", "sem", "shmall", "shmmax", "shmmni", "shm_rmid_forced"];

/// The object of the segment a VMA attaches (`shmid`: the inode in /proc/PID/maps);
/// the rest of it is filled by `dump`.
pub fn shm_ref(objs: &mut ObjectTable, ipc_ns: u32, shmid: i32) -> u32 {
    objs.intern(format!("sysvshm:{ipc_ns}:{shmid}"), |_| Object {
        kind: Some(Kind::SysvShm(SysvShmObj { ipc_ns, perm: Some(SysvPerm { id: shmid, ..Default::default() }), ..Default::default() })),
        ..Default::default()
    })
}

fn perm(id: i32, p: &sysv::Perm) -> SysvPerm {
    SysvPerm { id, key: p.key, uid: p.uid, gid: p.gid, cuid: p.cuid, cgid: p.cgid, mode: p.mode & 0o777 }
}

/// Ids listed in /proc/sysvipc/KIND (the calling thread's namespace).
fn ids(pid: i32, kind: &str) -> Result<Vec<i32>> {
    let t = std::fs::read_to_string(format!("/proc/sysvipc/{kind}")).ctx(pid, || format!("reading /proc/sysvipc/{kind}"))?;
    Ok(t.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)?.parse().ok()).collect())
}

/// One segment's contents to copy: an attachment in our address space and which of
/// its pages exist.
pub struct ShmContent {
    pub object_id: u32,
    pub attach: ShmAttach,
    pub pages: Vec<bool>,
}

fn dump_shm(pid: i32, id: i32, o: &mut SysvShmObj) -> Result<ShmAttach> {
    let st = sysv::shm_stat(id).ctx(pid, || format!("SysV shared memory segment {id}: IPC_STAT"))?;
    o.perm = Some(perm(id, &st.perm));
    o.size = st.size;
    o.destroyed = st.perm.mode & sysv::SHM_DEST != 0;
    o.locked = st.perm.mode & sysv::SHM_LOCKED != 0;
    let len = st.size.div_ceil(PAGE) * PAGE;
    ShmAttach::new(id, len as usize, true).ctx(pid, || format!("SysV shared memory segment {id}: attaching it to read it"))
}

/// The hugetlbfs file behind our attachment of a SHM_HUGETLB segment and its huge page
/// size; None for an ordinary segment.
fn huge_file(a: &ShmAttach) -> std::io::Result<Option<(std::fs::File, u64)>> {
    let Some(m) = crate::procfs::maps_self()?.into_iter().find(|m| m.start == a.addr()) else { return Ok(None) };
    let f = std::fs::File::open(format!("/proc/self/map_files/{:x}-{:x}", m.start, m.end))?;
    let h = sys::hugetlb_page_size(std::os::fd::AsFd::as_fd(&f))?;
    Ok(h.map(|h| (f, h)))
}

/// Fills the SysV objects of every IPC namespace of the tree (see the module doc).
/// `procs` are the dumped processes with their `ipc_ns` and VMAs.
pub fn dump(procs: &[Process], objs: &mut ObjectTable) -> Result<Vec<ShmContent>> {
    let mut out = Vec::new();
    // IPC namespaces (object ids, 0 = ours) with semaphore sets: only there can an undo
    // list hold adjustments
    let mut sem_nss: Vec<u32> = Vec::new();
    let mut nss: Vec<(u32, i32)> = Vec::new();
    for p in procs.iter().filter(|p| !p.zombie) {
        if !nss.iter().any(|(n, _)| *n == p.ipc_ns) {
            nss.push((p.ipc_ns, p.pid));
        }
    }
    for (ns, pid) in nss {
        let r = in_ns(if ns == 0 { None } else { Some(pid) }, "ipc", libc::CLONE_NEWIPC, || -> Result<Vec<ShmContent>> {
            let mut contents = Vec::new();
            if !ids(pid, "sem")?.is_empty() {
                sem_nss.push(ns);
            }
            if ns != 0 {
                let mut sysctls = Vec::new();
                for name in SYSCTLS {
                    if let Ok(v) = std::fs::read_to_string(format!("/proc/sys/kernel/{name}")) {
                        sysctls.push(Sysctl { name: name.to_string(), value: v.trim().to_string() });
                    }
                }
                if let Some(n) = objs.get_mut(ns).and_then(|o| o.ipc_ns_mut()) {
                    n.sysctls = sysctls;
                }
                for id in ids(pid, "shm")? {
                    shm_ref(objs, ns, id);
                }
                for id in ids(pid, "msg")? {
                    let st = sysv::msg_stat(id).ctx(pid, || format!("SysV message queue {id}: IPC_STAT"))?;
                    let mut messages = Vec::new();
                    for i in 0..st.qnum {
                        let (mtype, data) = sysv::msg_copy(id, i, st.cbytes.max(1) as usize)
                            .ctx(pid, || format!("SysV message queue {id}: reading message {i} with MSG_COPY (needs CONFIG_CHECKPOINT_RESTORE)"))?;
                        messages.push(SysvMsg { mtype, data });
                    }
                    objs.intern(format!("sysvmsg:{ns}:{id}"), |_| Object {
                        kind: Some(Kind::SysvMsg(SysvMsgObj { ipc_ns: ns, perm: Some(perm(id, &st.perm)), qbytes: st.qbytes, messages })),
                        ..Default::default()
                    });
                }
                for id in ids(pid, "sem")? {
                    let st = sysv::sem_stat(id).ctx(pid, || format!("SysV semaphore set {id}: IPC_STAT"))?;
                    let values = sysv::sem_getall(id, st.nsems as usize).ctx(pid, || format!("SysV semaphore set {id}: GETALL"))?;
                    objs.intern(format!("sysvsem:{ns}:{id}"), |_| Object {
                        kind: Some(Kind::SysvSem(SysvSemObj {
                            ipc_ns: ns,
                            perm: Some(perm(id, &st.perm)),
                            values: values.into_iter().map(u32::from).collect(),
                        })),
                        ..Default::default()
                    });
                }
            }
            for o in objs.objects.iter_mut() {
                let oid = o.id;
                let Some(s) = o.sysv_shm_mut().filter(|s| s.ipc_ns == ns) else { continue };
                let id = s.perm.as_ref().map(|p| p.id).unwrap_or(-1);
                let attach = dump_shm(pid, id, s)?;
                let pages = match huge_file(&attach).ctx(pid, || format!("SysV shared memory segment {id}: its hugetlbfs file"))? {
                    // SHM_HUGETLB: mincore of our fresh attachment sees no page tables;
                    // the pages that are not zeros are read from the file instead
                    Some((f, h)) => {
                        s.huge_page_size = h;
                        let mut pages = vec![false; attach.as_slice().len().div_ceil(PAGE as usize)];
                        for (a, b) in crate::mem::data_extents(&f, attach.as_slice().len() as u64) {
                            pages[(a / PAGE) as usize..(b / PAGE) as usize].fill(true);
                        }
                        pages
                    }
                    None => attach.resident().ctx(pid, || format!("SysV shared memory segment {id}: mincore"))?,
                };
                contents.push(ShmContent { object_id: oid, attach, pages });
            }
            Ok(contents)
        })?;
        out.extend(r);
    }
    warn_sem_undo(procs, &sem_nss);
    check_attachments(procs, objs)?;
    Ok(out)
}

/// Restore attaches a whole segment with one shmat; an attachment some of which was
/// unmapped cannot be rebuilt that way.
fn check_attachments(procs: &[Process], objs: &ObjectTable) -> Result<()> {
    for p in procs {
        let mut i = 0;
        let v = &p.vmas;
        while i < v.len() {
            if v[i].kind != VmaKind::SysvShm as i32 {
                i += 1;
                continue;
            }
            let base = v[i].start - v[i].pgoff;
            let mut end = v[i].end;
            let mut j = i + 1;
            while j < v.len() && v[j].kind == v[i].kind && v[j].object_id == v[i].object_id && v[j].start == end && v[j].start - v[j].pgoff == base {
                end = v[j].end;
                j += 1;
            }
            let o = objs.get(v[i].object_id).and_then(|o| o.sysv_shm());
            let size = o.map(|s| s.size.div_ceil(PAGE) * PAGE).unwrap_or(0);
            if v[i].pgoff != 0 || end - base != size {
                let id = o.and_then(|s| s.perm.as_ref()).map(|p| p.id).unwrap_or(-1);
                return Err(Error::Unsupported {
                    pid: p.pid,
                    what: format!("VMA {:#x}-{:#x} attaches only part of SysV shared memory segment {id} (partly unmapped)", v[i].start, end),
                });
            }
            i = j;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// restore

/// What restore created, for the last steps (segments to mark destroyed once attached)
/// and for cleanup: segments created in stasis's own namespace are removed again if the
/// restore fails.
#[derive(Default)]
pub struct Restored {
    host_created: Vec<i32>,
    /// (pid whose namespace, or None for ours; segment id) to IPC_RMID once attached.
    destroy: Vec<(Option<i32>, i32)>,
    /// (pid, value) of namespaces whose shm_rmid_forced is set last.
    rmid_forced: Vec<(i32, String)>,
    done: bool,
}

impl Restored {
    /// Once every process has attached its segments: IPC_RMID the segments that were
    /// marked destroyed, set shm_rmid_forced.
    pub fn finish(&mut self, root: i32) -> Result<()> {
        for (pid, id) in std::mem::take(&mut self.destroy) {
            in_ns(pid, "ipc", libc::CLONE_NEWIPC, || {
                sysv::shm_rmid(id).map_err(|e| step(root, format!("marking SysV segment {id} destroyed again (IPC_RMID): {e}")))
            })?;
        }
        for (pid, v) in std::mem::take(&mut self.rmid_forced) {
            in_ns(Some(pid), "ipc", libc::CLONE_NEWIPC, || {
                std::fs::write("/proc/sys/kernel/shm_rmid_forced", &v)
                    .map_err(|e| step(root, format!("kernel.shm_rmid_forced = {v} in the new IPC namespace: {e}")))
            })?;
        }
        Ok(())
    }

    /// The restore succeeded: segments created in stasis's namespace stay.
    pub fn keep(mut self) {
        self.done = true;
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        if !self.done {
            for id in &self.host_created {
                let _ = sysv::shm_rmid(*id);
            }
        }
    }
}

fn step(pid: i32, why: String) -> Error {
    Error::RestoreStep { pid, step: "recreating SysV IPC objects".into(), why }
}

fn set_next_id(root: i32, kind: &str, id: i32) -> Result<()> {
    std::fs::write(format!("/proc/sys/kernel/{kind}_next_id"), id.to_string())
        .map_err(|e| step(root, format!("writing /proc/sys/kernel/{kind}_next_id = {id} (needs CONFIG_CHECKPOINT_RESTORE): {e}")))
}

fn check_id(root: i32, what: &str, want: i32, got: i32, rm: impl Fn(i32)) -> Result<()> {
    if got != want {
        rm(got);
        return Err(step(root, format!("{what} {want} was created with id {got} (someone else created an object at the same time?)")));
    }
    Ok(())
}

/// Creates segment `o`, fills it from the image's page runs; returns its id.
fn create_shm(m: &Manifest, shards: &[&[u8]], root: i32, oid: u32, o: &SysvShmObj) -> Result<i32> {
    let p = o.perm.unwrap_or_default();
    set_next_id(root, "shm", p.id)?;
    let what = "SysV shared memory segment";
    let huge = if o.huge_page_size != 0 { libc::SHM_HUGETLB | sys::huge_size_bits(o.huge_page_size) } else { 0 };
    let id = sysv::shm_get(p.key, o.size, libc::IPC_CREAT | libc::IPC_EXCL | huge | (p.mode & 0o777) as i32)
        .map_err(|e| step(root, format!("{what} {} (key {:#x}, {} bytes): shmget: {e}", p.id, p.key, o.size)))?;
    check_id(root, what, p.id, id, |i| drop(sysv::shm_rmid(i)))?;
    let r = (|| {
        sysv::shm_set(id, p.uid, p.gid, p.mode).map_err(|e| step(root, format!("{what} {id}: owner {}:{} mode {:o}: {e}", p.uid, p.gid, p.mode)))?;
        let len = (o.size.div_ceil(PAGE) * PAGE) as usize;
        let mut a = ShmAttach::new(id, len, false).map_err(|e| step(root, format!("{what} {id}: attaching it to fill it: {e}")))?;
        let mem = a.as_mut_slice();
        for r in m.index.runs.iter().filter(|r| r.object_id == oid) {
            let (src_off, n) = (r.file_offset as usize, r.count as usize * PAGE as usize);
            let dst = r.addr as usize;
            let src = shards.get(r.shard as usize).and_then(|s| s.get(src_off..src_off + n));
            match (src, mem.get_mut(dst..dst + n)) {
                (Some(s), Some(d)) => d.copy_from_slice(s),
                _ => return Err(step(root, format!("{what} {id}: page run at offset {:#x} lies outside the segment or the pages file", r.addr))),
            }
        }
        if o.locked {
            sysv::shm_lock(id).map_err(|e| step(root, format!("{what} {id}: SHM_LOCK: {e}")))?;
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = sysv::shm_rmid(id);
    }
    r.map(|_| id)
}

/// Recreates the SysV objects of the image (see the module doc). Every process of the
/// tree exists and sits in its namespaces.
pub fn restore(m: &Manifest, shards: &[&[u8]]) -> Result<Restored> {
    let root = m.process.pid;
    let mut out = Restored::default();
    // stasis's own namespace: segments the tree attached
    for o in &m.objects {
        let Some(s) = o.sysv_shm().filter(|s| s.ipc_ns == 0) else { continue };
        let p = s.perm.unwrap_or_default();
        match sysv::shm_stat(p.id) {
            Ok(st) if st.perm.key == p.key && st.size == s.size => {
                info!(shmid = p.id, "SysV segment still exists: attaching it as it is");
                continue;
            }
            Ok(st) => {
                return Err(Error::RestoreRefused(format!(
                    "SysV shared memory segment {} is now another segment (key {:#x}, {} bytes; the image's has key {:#x}, {} bytes)",
                    p.id, st.perm.key, st.size, p.key, s.size
                )))
            }
            Err(_) => {}
        }
        if p.key != 0 {
            if let Ok(other) = sysv::shm_get(p.key, 0, 0) {
                return Err(Error::RestoreRefused(format!(
                    "SysV shared memory key {:#x} now belongs to segment {other}, not {}; remove it (ipcrm -m {other}) to restore",
                    p.key, p.id
                )));
            }
        }
        let id = in_ns(None, "ipc", libc::CLONE_NEWIPC, || create_shm(m, shards, root, o.id, s))?;
        info!(shmid = id, "SysV segment was gone: recreated with its contents");
        out.host_created.push(id);
        if s.destroyed {
            out.destroy.push((None, id));
        }
    }
    // namespaces of the tree's own: everything
    for o in &m.objects {
        let Some(n) = o.ipc_ns() else { continue };
        let Some(pid) = m.processes.iter().find(|p| !p.zombie && p.ipc_ns == o.id).map(|p| p.pid) else { continue };
        let nsid = o.id;
        in_ns(Some(pid), "ipc", libc::CLONE_NEWIPC, || -> Result<()> {
            let sysctl = |name: &str, v: &str| {
                std::fs::write(format!("/proc/sys/kernel/{name}"), v)
                    .map_err(|e| step(root, format!("kernel.{name} = {v} in the new IPC namespace: {e}")))
            };
            let vals: HashMap<&str, &str> = n.sysctls.iter().map(|s| (s.name.as_str(), s.value.as_str())).collect();
            for (k, v) in &vals {
                if *k != "shm_rmid_forced" && SYSCTLS.contains(k) {
                    sysctl(k, v)?;
                }
            }
            for so in &m.objects {
                let Some(s) = so.sysv_shm().filter(|s| s.ipc_ns == nsid) else { continue };
                let id = create_shm(m, shards, root, so.id, s)?;
                if s.destroyed {
                    out.destroy.push((Some(pid), id));
                }
            }
            // msg_qbytes above kernel.msgmnb needs CAP_SYS_RESOURCE: raise msgmnb meanwhile
            let msgmnb: u64 = vals.get("msgmnb").and_then(|v| v.parse().ok()).unwrap_or(16384);
            let need = m.objects.iter().filter_map(|o| o.sysv_msg()).filter(|q| q.ipc_ns == nsid).map(|q| q.qbytes).max().unwrap_or(0);
            if need > msgmnb {
                sysctl("msgmnb", &need.to_string())?;
            }
            for qo in &m.objects {
                let Some(q) = qo.sysv_msg().filter(|q| q.ipc_ns == nsid) else { continue };
                let p = q.perm.unwrap_or_default();
                let what = "SysV message queue";
                set_next_id(root, "msg", p.id)?;
                let id = sysv::msg_get(p.key, libc::IPC_CREAT | libc::IPC_EXCL | (p.mode & 0o777) as i32)
                    .map_err(|e| step(root, format!("{what} {} (key {:#x}): msgget: {e}", p.id, p.key)))?;
                check_id(root, what, p.id, id, |i| drop(sysv::msg_rmid(i)))?;
                sysv::msg_set(id, p.uid, p.gid, p.mode, q.qbytes)
                    .map_err(|e| step(root, format!("{what} {id}: owner {}:{} mode {:o} qbytes {}: {e}", p.uid, p.gid, p.mode, q.qbytes)))?;
                for (i, msg) in q.messages.iter().enumerate() {
                    sysv::msg_send(id, msg.mtype, &msg.data)
                        .map_err(|e| step(root, format!("{what} {id}: message {i} (type {}, {} bytes): {e}", msg.mtype, msg.data.len())))?;
                }
            }
            if need > msgmnb {
                sysctl("msgmnb", &msgmnb.to_string())?;
            }
            for so in &m.objects {
                let Some(s) = so.sysv_sem().filter(|s| s.ipc_ns == nsid) else { continue };
                let p = s.perm.unwrap_or_default();
                let what = "SysV semaphore set";
                set_next_id(root, "sem", p.id)?;
                let id = sysv::sem_get(p.key, s.values.len() as i32, libc::IPC_CREAT | libc::IPC_EXCL | (p.mode & 0o777) as i32)
                    .map_err(|e| step(root, format!("{what} {} (key {:#x}, {} semaphores): semget: {e}", p.id, p.key, s.values.len())))?;
                check_id(root, what, p.id, id, |i| drop(sysv::sem_rmid(i)))?;
                let vals: Vec<u16> = s.values.iter().map(|v| *v as u16).collect();
                sysv::sem_setall(id, &vals).map_err(|e| step(root, format!("{what} {id}: SETALL: {e}")))?;
                sysv::sem_set(id, p.uid, p.gid, p.mode).map_err(|e| step(root, format!("{what} {id}: owner {}:{} mode {:o}: {e}", p.uid, p.gid, p.mode)))?;
            }
            debug!(pid, "IPC namespace recreated");
            Ok(())
        })?;
        if let Some(v) = n.sysctls.iter().find(|s| s.name == "shm_rmid_forced" && s.value != "0") {
            out.rmid_forced.push((pid, v.value.clone()));
        }
    }
    Ok(out)
}

/// Warns for each process with a SEM_UNDO list in an IPC namespace that has semaphore
/// sets (`sem_nss`): its adjustments cannot be read, so none is restored. (Every
/// multi-threaded process has a list: glibc's pthread_create clones with CLONE_SYSVSEM,
/// which makes an empty one; entries of a removed set go with it, so without sets the
/// list holds nothing.)
fn warn_sem_undo(procs: &[Process], sem_nss: &[u32]) {
    // A task known to have no list to compare with: kthreadd (kernel threads never get
    // one; stasis itself has one as soon as it runs a thread). Not visible (a PID
    // namespace of our own): nothing is said.
    const KTHREADD: i32 = 2;
    if crate::procfs::read(KTHREADD, "comm").map(|c| c.trim() == "kthreadd").ok() != Some(true) {
        return;
    }
    for p in procs.iter().filter(|p| !p.zombie && sem_nss.contains(&p.ipc_ns)) {
        if stasis_sys::sys::kcmp(crate::procfs::via(p.pid), KTHREADD, stasis_sys::sys::KCMP_SYSVSEM, 0, 0).is_ok_and(|r| r != 0) {
            tracing::warn!(
                pid = p.pid,
                "it has SEM_UNDO state (semop with SEM_UNDO): the kernel cannot tell the adjustments, so after restore its exit does not undo them"
            );
        }
    }
}
