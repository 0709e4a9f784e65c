//! Semantic checks of an image, before anything is created.

use stasis_image::model::*;
use stasis_image::Manifest;

use crate::error::Result;
use crate::ns;

use super::*;

/// Semantic checks of a manifest whose checksums are fine: restore must never act on
/// (or panic over) an image that contradicts itself.
pub(super) fn validate(m: &Manifest) -> Result<()> {
    let bad = |why: String| refuse(format!("the image is inconsistent: {why}"));
    if m.processes.first().map(|p| p.pid) != Some(m.process.pid) || m.process.zombie {
        return Err(bad("the first process record is not a live root".into()));
    }
    for (i, p) in m.processes.iter().enumerate() {
        if p.pid <= 0 || m.processes[..i].iter().any(|q| q.pid == p.pid) {
            return Err(bad(format!("pid {} (duplicate or invalid)", p.pid)));
        }
        if i > 0 && !m.processes[..i].iter().any(|q| q.pid == p.ppid && !q.zombie) {
            return Err(bad(format!("pid {} comes before its parent {}", p.pid, p.ppid)));
        }
        validate_tree_fields(m, i).map_err(|why| bad(format!("pid {}: {why}", p.pid)))?;
        if p.zombie {
            continue;
        }
        validate_process(m, p)?;
    }
    if let Some((pid, why)) = ns::check_tree(&m.processes) {
        return Err(refuse(format!("pid {pid}: {why}")));
    }
    Ok(())
}

/// The tree-shape fields of process `i`: pid levels, sharing flags, exit signal.
pub(super) fn validate_tree_fields(m: &Manifest, i: usize) -> std::result::Result<(), String> {
    let p = &m.processes[i];
    let depth = p.ns_pids.len().max(1);
    if !p.ns_pids.is_empty() && (p.ns_pids[0] != p.pid || p.ns_pids.len() > 32 || p.ns_pids.iter().any(|x| *x <= 0)) {
        return Err(format!("PID-namespace pids {:?}", p.ns_pids));
    }
    let parent_depth = if i == 0 { 1 } else { m.processes.iter().find(|q| q.pid == p.ppid).map(|q| q.ns_pids.len().max(1)).unwrap_or(1) };
    if depth != parent_depth && !(depth == parent_depth + 1 && p.ns_pids.last() == Some(&1)) {
        return Err(format!("{depth} PID-namespace levels under a parent with {parent_depth}"));
    }
    if p.threads.iter().any(|t| !t.ns_tids.is_empty() && (t.ns_tids.len() != depth || t.ns_tids[0] != t.tid)) {
        return Err("thread pids do not match the process's PID-namespace levels".into());
    }
    if i == 0 && (p.shares_files || p.shares_fs || p.shares_vm || p.shares_sighand) {
        return Err("the root shares state with a parent that is not in the image".into());
    }
    if p.shares_sighand && !p.shares_vm {
        return Err("shares signal handlers without sharing the address space".into());
    }
    if p.shares_vm && !p.vmas.is_empty() {
        return Err("shares its parent's address space but has VMAs of its own".into());
    }
    if !(-1..=64).contains(&p.exit_signal) {
        return Err(format!("exit signal {}", p.exit_signal));
    }
    // /proc is only ever mounted in mount namespaces the restore creates
    if p.mount_proc && p.mnt_ns == 0 {
        return Err("mounts /proc in the restorer's mount namespace".into());
    }
    let parent_mnt = if i == 0 { 0 } else { m.processes.iter().find(|q| q.pid == p.ppid).map(|q| q.mnt_ns).unwrap_or(0) };
    if p.mount_proc_parent_ns && (parent_mnt == 0 || depth != parent_depth + 1) {
        return Err("mounts /proc in its parent's mount namespace, which is not a new one".into());
    }
    Ok(())
}

pub(super) fn validate_process(m: &Manifest, p: &Process) -> Result<()> {
    let bad = |why: String| refuse(format!("the image is inconsistent: pid {}: {why}", p.pid));
    match p.threads.first() {
        Some(t) if t.tid == p.pid => {}
        _ => return Err(bad("the first thread is not the main thread".into())),
    }
    for t in &p.threads {
        if t.tid <= 0 || t.regs.len() != stasis_sys::ptrace::NREGS || t.xstate.is_empty() {
            return Err(bad(format!("thread {} has no usable register record", t.tid)));
        }
        if t.pending.iter().any(|s| !(1..=64).contains(&s.signo) || s.raw.len() != 128) {
            return Err(bad(format!("thread {} has a malformed pending signal", t.tid)));
        }
    }
    if p.shared_pending.iter().any(|s| !(1..=64).contains(&s.signo) || s.raw.len() != 128)
        || p.sigactions.iter().any(|a| !(1..=64).contains(&a.signo))
    {
        return Err(bad("a signal number outside 1..64".into()));
    }
    let mm = p.mm.as_ref().ok_or_else(|| bad("no memory layout record".into()))?;
    if m.object(mm.exe_object).and_then(|o| o.mapped_file.as_ref()).is_none() {
        return Err(bad("no executable object".into()));
    }
    for fd in &p.fds {
        if fd.fd < 0 || m.object(fd.object_id).is_none() {
            return Err(bad(format!("fd {} refers to missing object {}", fd.fd, fd.object_id)));
        }
    }
    let mut prev_end = 0;
    for v in &p.vmas {
        if v.start >= v.end || v.start % PAGE != 0 || v.end % PAGE != 0 || v.start < prev_end || v.end > TASK_SIZE.max(0xffff_ffff_ff60_1000) {
            return Err(bad(format!("VMA {:#x}-{:#x} is malformed or overlaps", v.start, v.end)));
        }
        prev_end = v.end;
        let needs_obj = matches!(VmaKind::try_from(v.kind), Ok(VmaKind::FilePrivate | VmaKind::FileShared | VmaKind::ShmemAnon));
        if needs_obj && m.object(v.object_id).is_none() {
            return Err(bad(format!("VMA {:#x}-{:#x} refers to missing object {}", v.start, v.end, v.object_id)));
        }
        if v.kind == VmaKind::SysvShm as i32 && m.object(v.object_id).and_then(|o| o.sysv_shm.as_ref()).is_none() {
            return Err(bad(format!("VMA {:#x}-{:#x} refers to missing SysV segment object {}", v.start, v.end, v.object_id)));
        }
    }
    if (p.uts_ns != 0 && m.object(p.uts_ns).and_then(|o| o.uts_ns.as_ref()).is_none())
        || (p.ipc_ns != 0 && m.object(p.ipc_ns).and_then(|o| o.ipc_ns.as_ref()).is_none())
    {
        return Err(bad("refers to a missing namespace object".into()));
    }
    Ok(())
}
