//! `stasis restore`: image → checks → new process with the original PID → address space,
//! threads, registers and the rest → run.
//!
//! 1. Everything that can be checked without creating a process is checked first: the
//!    manifest's records and every page run's CRC, the files that mappings and fds
//!    need (size, mtime, content hash of mapped executables), that the PID and TIDs are
//!    free, that this kernel's vDSO has the image's layout.
//! 2. The restorer opens all files, pipes (refilled) and shared-memory objects (filled)
//!    itself, then forks the new process with clone3(set_tid = original PID). The child,
//!    a copy of stasis, moves those fds to their original numbers, sets umask, cwd,
//!    root and comm, maps a one-page `syscall` trampoline at a hole that both layouts
//!    leave free, reports its fd numbers and parks in pause().
//! 3. The restorer seizes it and drives it with injected syscalls (stasis_sys::remote):
//!    moves the vDSO to its old address, unmaps everything else, maps the saved VMAs,
//!    fills them with process_vm_writev straight from a mapping of pages.img (two
//!    threads), sets mm fields with PR_SET_MM_MAP, creates the threads with clone3
//!    (set_tid), restores per-thread and per-process state, unmaps the trampoline, sets
//!    registers and detaches.
//!
//! Any failure kills and reaps the new process and names the step.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Instant;

use stasis_image::model::*;
use stasis_image::Manifest;
use stasis_sys::kabi;
use stasis_sys::ptrace::{self, Stop};
use stasis_sys::remote::Remote;
use stasis_sys::sys::{self, child};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::{cpu, files, ipc, ns, procfs};

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub dir: PathBuf,
    /// Restore inside a new PID namespace (with a private mount namespace and its own
    /// /proc) whose init is a stasis process: the tree gets its original pids there even
    /// if they are taken outside.
    pub pid_ns: bool,
    pub detach: bool,
    pub pidfile: Option<PathBuf>,
    /// Restore even if files the process had open (not mapped) changed since the dump,
    /// e.g. a log it kept appending to after a --leave-running dump.
    pub allow_changed_files: bool,
    /// `--inherit-fd FD:RES`: the restorer's fd FD provides external resource RES.
    pub inherit_fds: Vec<String>,
}

const PAGE: u64 = 4096;
/// Trampoline: the `syscall` instruction, then a data area for syscall arguments
/// (auxv, seccomp filters, groups...).
const TRAMP_LEN: u64 = 16 * PAGE;
const DATA: u64 = 64;
const TASK_SIZE: u64 = 0x7fff_ffff_f000;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const CLONE_THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// sizeof(struct robust_list_head): the only length set_robust_list accepts.
const ROBUST_LIST_HEAD_LEN: u64 = 24;

/// The alternate signal stack a thread had, "disabled" included. SS_ONSTACK is a state
/// (the thread was running on it), not a flag one can set; SS_AUTODISARM is kept.
fn altstack(t: &Thread) -> kabi::StackT {
    if t.altstack_flags & libc::SS_DISABLE != 0 || t.altstack_sp == 0 {
        return kabi::StackT { ss_flags: libc::SS_DISABLE, ..Default::default() };
    }
    const SS_AUTODISARM: i32 = 1 << 31;
    kabi::StackT { ss_sp: t.altstack_sp, ss_flags: t.altstack_flags & SS_AUTODISARM, _pad: 0, ss_size: t.altstack_size }
}

fn refuse(why: impl Into<String>) -> Error {
    Error::RestoreRefused(why.into())
}

/// Who holds `id` (a PID or TID), if anyone.
fn holder(id: i32) -> Option<String> {
    let st = procfs::status(id).ok()?;
    let tgid: i32 = procfs::status_field(&st, "Tgid").and_then(|v| v.parse().ok()).unwrap_or(id);
    let name = procfs::status_field(&procfs::status(tgid).unwrap_or_default(), "Name").unwrap_or("?").to_string();
    let state = procfs::status_field(&st, "State").unwrap_or("").to_string();
    Some(if tgid == id {
        format!("process '{name}' (pid {id}, state {state})")
    } else {
        format!("a thread of process '{name}' (pid {tgid})")
    })
}

/// A process's `[vvar]`/`[vvar_vclock]`/`[vdso]` VMAs in the image, lowest first.
fn image_vdso(p: &Process) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = p
        .vmas
        .iter()
        .filter(|v| matches!(VmaKind::try_from(v.kind), Ok(VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock)))
        .map(|v| (v.name.clone(), v.start, v.end))
        .collect();
    v.sort_by_key(|x| x.1);
    v
}

fn vdso_family(maps: &[procfs::MapEntry]) -> Vec<(String, u64, u64)> {
    maps.iter()
        .filter(|m| matches!(m.path.as_str(), "[vvar]" | "[vvar_vclock]" | "[vdso]"))
        .map(|m| (m.path.clone(), m.start, m.end))
        .collect()
}

/// Lowest gap of `len` bytes (plus a page of margin on each side) above 4 GiB that no
/// range in `used` touches.
fn find_hole(used: &mut Vec<(u64, u64)>, len: u64) -> Option<u64> {
    used.sort();
    let mut cur = 0x1_0000_0000u64;
    for &(s, e) in used.iter() {
        if e <= cur {
            continue;
        }
        if s > cur && s - cur >= len + 2 * PAGE {
            return Some(cur + PAGE);
        }
        cur = cur.max(e);
    }
    if TASK_SIZE > cur && TASK_SIZE - cur >= len + 2 * PAGE {
        return Some(cur + PAGE);
    }
    None
}

/// One process of the tree to recreate.
struct ProcPlan {
    pid: i32,
    /// clone3 set_tid: its pid at every PID namespace level, innermost first.
    set_tid: Vec<i32>,
    /// Extra clone3 flags (CLONE_NEWPID for the init of a new PID namespace).
    clone_flags: u64,
    exit_signal: i32,
    /// Unshares a new mount namespace (private propagation) before anything else.
    new_mnt: bool,
    /// Mounts a fresh procfs on /proc (after entering its PID namespace).
    mount_proc: bool,
    /// Mounts a fresh procfs on /proc before unsharing its own mount namespace.
    mount_proc_parent_ns: bool,
    /// Shares its parent's fd table (CLONE_FILES): the parent places the fds.
    shares_files: bool,
    /// Closes the carried fds and re-takes locks: false when a process built after it
    /// shares its fd table (that one does it, last).
    closes_table: bool,
    /// Shares its parent's address space (CLONE_VM): the parent builds the memory.
    shares_vm: bool,
    /// Unmaps the trampoline at the end: false when a process built after it shares its
    /// address space (that one does it, last).
    unmaps_tramp: bool,
    zombie: bool,
    exit_status: i32,
    /// (target fd number, carry slot, cloexec)
    assign: Vec<(i32, usize, bool)>,
    exe_slot: usize,
    /// The image's executable is the same file as ours (dev, inode).
    exe_is_ours: bool,
    umask: u32,
    cwd: CString,
    root: CString,
    comm: CString,
    pgid: i32,
    sid: i32,
    /// Its process group, whose leader had exited: it forks a helper with that pid which
    /// leads the group until every member joined, then is killed and reaped.
    group_helper: i32,
    /// Its session, whose leader had exited (it was re-parented to a subreaper of the
    /// tree): its parent forks a helper with that pid, which calls setsid() and forks
    /// it; the helper is killed once the tree is built, re-parenting it again.
    session_helper: i32,
    /// Indexes of its children in `Plan::procs`.
    children: Vec<usize>,
    /// Forked by its parent before the parent calls setsid(): it stays in the session
    /// the parent was born in (it was forked before its parent led a session of its own).
    before_setsid: bool,
    /// Namespaces it unshares (it is the first of the tree in them).
    ns: ns::NsPlan,
}

/// Everything the new processes need, prepared before the first fork.
struct Plan {
    /// fds in the restorer the new processes take over (index = carry slot).
    carry: Vec<OwnedFd>,
    /// object id → carry slot, for mapped files and shared memory
    map_slot: HashMap<u32, usize>,
    base: i32,
    tramp: u64,
    /// The tree, root first, parents before children (the image's order).
    procs: Vec<ProcPlan>,
    /// Named FIFOs held open by the restorer until every new process has its fds.
    fifo_keep: Vec<OwnedFd>,
    /// The root's session, when its leader had exited (and its pid is free): the
    /// intermediate parent takes that pid, calls setsid() and forks the root.
    session_helper: i32,
}

fn build_plan(m: &Manifest, tramp: u64, inherit: &crate::external::Inherited) -> Result<(Plan, Vec<sys::SharedAnon>)> {
    let pid = m.process.pid;
    let step = |why: String| Error::RestoreStep { pid, step: "preparing files".into(), why };
    let ghosts = files::create_ghosts(m, inherit)?;
    let netns = ns::create_netns(m)?;
    let mut opened = files::open_fd_objects(m, &ghosts, inherit, &netns)?;
    let mut carry: Vec<OwnedFd> = Vec::new();
    let mut slot_of: HashMap<u32, usize> = HashMap::new();
    let mut map_slot = HashMap::new();
    let mut procs = Vec::new();
    // New network namespaces: their fds go to the processes that join them.
    let mut net_slot = HashMap::new();
    for (ino, fd) in netns {
        carry.push(fd);
        net_slot.insert(ino, carry.len() - 1);
    }
    let ours = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/exe").ok().map(|a| (a.dev(), a.ino()))
    };
    let cs = |s: &str| CString::new(s).map_err(|e| step(e.to_string()));
    for (idx, p) in m.processes.iter().enumerate() {
        let mut assign = Vec::new();
        for fd in &p.fds {
            let slot = match slot_of.get(&fd.object_id) {
                Some(s) => *s,
                None => {
                    let f = opened.by_object.remove(&fd.object_id).ok_or_else(|| step(format!("fd {} not opened", fd.fd)))?;
                    carry.push(f);
                    slot_of.insert(fd.object_id, carry.len() - 1);
                    carry.len() - 1
                }
            };
            assign.push((fd.fd, slot, fd.cloexec));
        }
        // Files that mappings need, and the executable.
        let mut exe_slot = 0;
        let mut exe_is_ours = false;
        if !p.zombie {
            let mm = p.mm.clone().unwrap_or_default();
            let mut ids: Vec<u32> = p
                .vmas
                .iter()
                .filter(|v| matches!(VmaKind::try_from(v.kind), Ok(VmaKind::FilePrivate | VmaKind::FileShared)))
                .map(|v| v.object_id)
                .collect();
            ids.push(mm.exe_object);
            ids.sort();
            ids.dedup();
            for id in ids {
                if map_slot.contains_key(&id) {
                    continue;
                }
                let o = m
                    .object(id)
                    .and_then(|o| o.mapped_file.as_ref())
                    .ok_or_else(|| step(format!("mapped-file object {id} missing")))?;
                let f = files::open_mapped(o, &ghosts).map_err(|e| step(format!("opening {} for mapping: {e}", o.path)))?;
                carry.push(f);
                map_slot.insert(id, carry.len() - 1);
            }
            exe_slot = *map_slot.get(&mm.exe_object).ok_or_else(|| step("the executable's object is missing".into()))?;
            exe_is_ours = {
                use std::os::unix::fs::MetadataExt;
                let b = std::fs::metadata(format!("/proc/self/fd/{}", carry[exe_slot].as_raw_fd())).ok();
                matches!((ours, b), (Some(a), Some(b)) if a == (b.dev(), b.ino()))
            };
        }
        let attrs = p.attrs.clone().unwrap_or_default();
        let mut set_tid: Vec<i32> = if p.ns_pids.len() > 1 { p.ns_pids.clone() } else { vec![p.pid] };
        set_tid.reverse();
        let parent = m.processes.iter().find(|q| q.pid == p.ppid && procs.len() > 0);
        let parent_depth = parent.map(|q| q.ns_pids.len().max(1)).unwrap_or(1);
        let new_pidns = set_tid.len() > parent_depth;
        let parent_mnt = parent.map(|q| q.mnt_ns).unwrap_or(0);
        procs.push(ProcPlan {
            pid: p.pid,
            set_tid,
            clone_flags: if new_pidns { libc::CLONE_NEWPID as u64 } else { 0 }
                | if p.shares_files { libc::CLONE_FILES as u64 } else { 0 }
                | if p.shares_fs { libc::CLONE_FS as u64 } else { 0 }
                | if p.shares_vm { libc::CLONE_VM as u64 } else { 0 }
                | if p.shares_vm && p.shares_sighand { libc::CLONE_SIGHAND as u64 } else { 0 },
            shares_files: p.shares_files,
            closes_table: true,
            shares_vm: p.shares_vm && !p.zombie,
            unmaps_tramp: true,
            // the root is re-parented (exit_signal becomes SIGCHLD anyway)
            exit_signal: match p.exit_signal {
                _ if procs.is_empty() => libc::SIGCHLD,
                0 => libc::SIGCHLD,
                -1 => 0,
                s => s,
            },
            new_mnt: !p.zombie && p.mnt_ns != 0 && p.mnt_ns != parent_mnt,
            mount_proc: p.mount_proc,
            mount_proc_parent_ns: p.mount_proc_parent_ns && !p.zombie,
            zombie: p.zombie,
            exit_status: p.exit_status,
            assign,
            exe_slot,
            exe_is_ours,
            umask: attrs.umask,
            cwd: cs(if attrs.cwd.is_empty() { "/" } else { &attrs.cwd })?,
            root: cs(if attrs.root.is_empty() { "/" } else { &attrs.root })?,
            comm: cs(&p.comm)?,
            pgid: attrs.pgid,
            sid: attrs.sid,
            group_helper: 0,
            session_helper: 0,
            children: Vec::new(),
            before_setsid: false,
            ns: ns::plan(m, idx, &net_slot).map_err(step)?,
        });
    }
    for (i, p) in m.processes.iter().enumerate().skip(1) {
        let parent = m.processes.iter().position(|q| q.pid == p.ppid).ok_or_else(|| step(format!("parent {} of pid {} missing", p.ppid, p.pid)))?;
        procs[parent].children.push(i);
        if p.shares_files && !p.zombie {
            // parents come first: the table's last process closes it
            procs[parent].closes_table = false;
        }
        if p.shares_vm && !p.zombie {
            procs[parent].unmaps_tramp = false;
        }
    }
    // Shared anonymous memory: create each object here, fill it, pass its fd.
    let mut shm_keep = Vec::new();
    for o in &m.objects {
        let Some(s) = &o.shmem else { continue };
        let region = sys::SharedAnon::new(s.size.max(PAGE) as usize).map_err(|e| step(format!("creating shared memory of {} bytes: {e}", s.size)))?;
        let path = format!("/proc/self/map_files/{:x}-{:x}", region.addr(), region.addr() + region.len() as u64);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| step(format!("opening {path}: {e}")))?;
        carry.push(OwnedFd::from(f));
        map_slot.insert(o.id, carry.len() - 1);
        shm_keep.push(region);
    }
    let max_target = m.processes.iter().flat_map(|p| p.fds.iter()).map(|f| f.fd).max().unwrap_or(0);
    let max_ours = procfs::fds(sys::getpid()).unwrap_or_default().into_iter().max().unwrap_or(0);
    let base = max_target.max(max_ours).max(carry.len() as i32 + 3) + 1;
    let fifo_keep = std::mem::take(&mut opened.keep);
    let session_helper = dead_leaders(m, &mut procs);
    born_sessions(&mut procs);
    Ok((Plan { carry, map_slot, base, tramp, procs, fifo_keep, session_helper }, shm_keep))
}

/// Sessions and process groups whose leader had exited before the dump: their ids must
/// exist again for the members to be in them. Helper processes take the leaders' pids:
/// returns the root's session to recreate (0: none) and marks, for each such group, the
/// first live member, which creates it (`ProcPlan::group_helper`).
fn dead_leaders(m: &Manifest, procs: &mut [ProcPlan]) -> i32 {
    let in_tree = |id: i32| m.processes.iter().any(|q| q.pid == id);
    // A group or session whose leader is gone can still exist (other members outside
    // the tree keep it, and its id stays allocated): then there is nothing to recreate.
    // Sessions have no direct probe: scan /proc once, and only if some process needs it.
    let sessions = std::cell::OnceCell::<std::collections::HashSet<i32>>::new();
    let session_alive = |s: i32| {
        sessions
            .get_or_init(|| {
                std::fs::read_dir("/proc")
                    .map(|d| {
                        d.flatten()
                            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
                            .filter_map(|p| procfs::stat_fields(p).ok().map(|f| procfs::stat_num(&f, 6) as i32))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .contains(&s)
    };
    let group_alive = |g: i32| !matches!(sys::kill(-g, 0), Err(e) if e.raw_os_error() == Some(libc::ESRCH));
    let our_sid = sys::getsid();
    let mut session = 0;
    let root = &procs[0];
    if root.sid > 0 && root.sid != root.pid && root.sid != our_sid && !in_tree(root.sid) {
        if session_alive(root.sid) {
            warn!(pid = root.pid, sid = root.sid, "its session still exists outside the tree (no joining it): it joins the restorer's session");
        } else {
            match holder(root.sid) {
                None if root.set_tid.len() == 1 => session = root.sid,
                None => warn!(pid = root.pid, sid = root.sid, "session not recreated (root in a new PID namespace)"),
                Some(h) => warn!(
                    pid = root.pid,
                    sid = root.sid,
                    "its session leader's pid is held by {h}; the process joins the restorer's session"
                ),
            }
        }
    }
    for i in 1..procs.len() {
        let (x, s) = (procs[i].pid, procs[i].sid);
        let psid = m.processes.iter().position(|q| q.pid == m.processes[i].ppid).map(|k| procs[k].sid).unwrap_or(0);
        if m.processes[i].zombie || s <= 0 || s == x || s == psid || in_tree(s) || procs[i].set_tid.len() != 1 {
            continue;
        }
        if session_alive(s) {
            warn!(pid = x, sid = s, "its session still exists outside the tree: it stays in its parent's session");
            continue;
        }
        match holder(s) {
            None => procs[i].session_helper = s,
            Some(h) => warn!(pid = x, sid = s, "its session leader's pid is held by {h}; it stays in its parent's session"),
        }
    }
    let mut done: Vec<i32> = Vec::new();
    for (i, p) in m.processes.iter().enumerate() {
        let pp = &procs[i];
        let g = pp.pgid;
        let recreated_session = g == pp.sid && (pp.session_helper == g || i == 0 && session == g);
        if p.zombie || g <= 0 || g == pp.pid || recreated_session || in_tree(g) || done.contains(&g) || pp.set_tid.len() != 1 {
            continue;
        }
        if let Some(h) = holder(g) {
            // a live group of another process: joined if it is in the same session
            debug!(pid = pp.pid, pgid = g, "process group led by {h}");
            continue;
        }
        if group_alive(g) {
            // its leader is gone but members outside the tree keep it: joined as it is
            debug!(pid = pp.pid, pgid = g, "process group without its leader still exists");
            continue;
        }
        done.push(g);
        procs[i].group_helper = g;
    }
    session
}

/// Which children a session leader forks before its own setsid().
///
/// Sessions are only inherited: a process is in session S because whoever forked it was
/// in S then. A child whose session is neither its parent's own nor recreated by a
/// helper was forked before its parent called setsid(), so it is forked again before
/// the parent's setsid(); it then needs the parent to have been born in that session,
/// and so on up the tree (bottom-up: `need` is the session a process must be born in).
fn born_sessions(procs: &mut [ProcPlan]) {
    let mut need: Vec<Option<i32>> = vec![None; procs.len()];
    for i in (0..procs.len()).rev() {
        let p = &procs[i];
        if p.zombie || p.session_helper != 0 || p.sid <= 0 {
            continue;
        }
        if p.sid != p.pid {
            need[i] = Some(p.sid);
            continue;
        }
        let wanted: Vec<i32> = p.children.iter().filter_map(|&c| need[c]).filter(|&x| x != p.pid).collect();
        if let Some(other) = wanted.iter().find(|&&x| x != wanted[0]) {
            warn!(pid = p.pid, "its children were born in sessions {} and {other}: only the first is recreated", wanted[0]);
        }
        need[i] = wanted.first().copied();
    }
    for i in 0..procs.len() {
        if procs[i].sid != procs[i].pid {
            continue;
        }
        // the root is born in the restorer's session
        let born = if i == 0 { need[0].filter(|&x| x == sys::getsid()) } else { need[i] };
        let pid = procs[i].pid;
        for c in procs[i].children.clone() {
            procs[c].before_setsid = need[c].is_some_and(|x| x != pid && Some(x) == born);
        }
    }
}

/// Fills shared-memory objects from pages.img (through the fds the plan holds).
fn fill_shmem(m: &Manifest, plan: &Plan, shards: &[&[u8]]) -> Result<()> {
    for r in &m.index.runs {
        if r.object_id == 0 || m.object(r.object_id).is_some_and(|o| o.sysv_shm.is_some()) {
            continue; // SysV segments are filled by ipc::restore
        }
        let slot = plan.map_slot.get(&r.object_id).copied().ok_or_else(|| Error::RestoreStep {
            pid: m.process.pid,
            step: "filling shared memory".into(),
            why: format!("page run for unknown object {}", r.object_id),
        })?;
        let f = File::from(plan.carry[slot].try_clone().map_err(|e| Error::RestoreStep {
            pid: m.process.pid,
            step: "filling shared memory".into(),
            why: e.to_string(),
        })?);
        let a = r.file_offset as usize;
        let b = a + r.count as usize * PAGE as usize;
        std::os::unix::fs::FileExt::write_all_at(&f, &shards[r.shard as usize][a..b], r.addr).map_err(|e| Error::RestoreStep {
            pid: m.process.pid,
            step: "filling shared memory".into(),
            why: format!("offset {:#x}: {e}", r.addr),
        })?;
    }
    Ok(())
}

/// Runs in the forked child (a copy of this single-threaded restorer): takes over the
/// fds, sets cwd/root/umask/comm, maps the trampoline, reports, parks.
/// Sends one report over the control pipe, framed by its length (reports of several
/// processes may arrive in one read; each is written with a single write(2)).
fn send_report(ctl: RawFd, payload: &[u8]) {
    let mut msg = (payload.len() as u32).to_le_bytes().to_vec();
    msg.extend_from_slice(payload);
    child::write(ctl, &msg);
}

fn child_fail(what: &[u8], pid: i32, ctl: RawFd) -> ! {
    let e = child::errno();
    let mut msg = vec![1u8];
    msg.extend_from_slice(&pid.to_le_bytes());
    msg.extend_from_slice(&e.to_le_bytes());
    msg.extend_from_slice(what);
    send_report(ctl, &msg);
    child::exit(112)
}

/// Runs in the forked root (a copy of this single-threaded restorer): takes over the
/// carried fds above every target fd number, then becomes the tree (`child_proc`).
fn child_main(plan: &Plan, ctl: RawFd, parent: i32) -> ! {
    child::set_pdeathsig_kill();
    let root = plan.procs[0].pid;
    // The init of a new PID namespace sees its parent as pid 0.
    let parent = if plan.procs[0].clone_flags & libc::CLONE_NEWPID as u64 != 0 { 0 } else { parent };
    if sys::getppid() != parent {
        child::exit(111);
    }
    let mut tmp = Vec::with_capacity(plan.carry.len() + 1);
    let ctl2 = child::dup_above(ctl, plan.base);
    if ctl2 < 0 {
        child_fail(b"moving the control pipe", root, ctl);
    }
    for f in &plan.carry {
        let t = child::dup_above(f.as_raw_fd(), plan.base);
        if t < 0 {
            child_fail(b"moving fds above the target's fd numbers", root, ctl2);
        }
        tmp.push(t);
    }
    if plan.base > 0 && child::close_range(0, plan.base as u32 - 1) < 0 {
        child_fail(b"closing the restorer's fds", root, ctl2);
    }
    child_proc(plan, 0, ctl2, &tmp, -1)
}

/// One process of the tree: leads its session again if it did, forks its children
/// (they inherit the carried fds and the session), then places its own fds, sets umask,
/// cwd, root and comm, maps the trampoline, reports its fd numbers and parks.
/// A zombie child exits at once with its saved status.
fn child_proc(plan: &Plan, idx: usize, ctl: RawFd, tmp: &[i32], done: RawFd) -> ! {
    let pp = &plan.procs[idx];
    let proc_flags = (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as u64;
    if pp.mount_proc_parent_ns && child::mount(Some(c"proc"), c"/proc", Some(c"proc"), proc_flags) < 0 {
        child_fail(b"mounting /proc for its PID namespace (in its parent's mount namespace)", pp.pid, ctl);
    }
    if pp.new_mnt {
        if child::unshare(libc::CLONE_NEWNS) < 0 {
            child_fail(b"unshare(CLONE_NEWNS) for its own mount namespace", pp.pid, ctl);
        }
        // Private propagation: nothing mounted here may show up in the host's namespace.
        if child::mount(None, c"/", None, (libc::MS_REC | libc::MS_PRIVATE) as u64) < 0 {
            child_fail(b"making the new mount namespace private", pp.pid, ctl);
        }
    }
    if pp.mount_proc && child::mount(Some(c"proc"), c"/proc", Some(c"proc"), proc_flags) < 0 {
        child_fail(b"mounting /proc for its PID namespace", pp.pid, ctl);
    }
    // before forking: its children inherit the namespaces
    if let Err(what) = ns::child_apply(&pp.ns, tmp) {
        child_fail(what, pp.pid, ctl);
    }
    // Children born before its setsid() stay in the session it was born in.
    for &c in pp.children.iter().filter(|&&c| plan.procs[c].before_setsid) {
        spawn_child(plan, c, ctl, tmp);
    }
    if pp.sid == pp.pid {
        if child::setsid() < 0 {
            child_fail(b"setsid (the process led its session)", pp.pid, ctl);
        }
    } else if pp.pgid == pp.pid && child::setpgid(0, 0) < 0 {
        child_fail(b"setpgid (the process led its process group)", pp.pid, ctl);
    }
    if pp.group_helper != 0 {
        match sys::clone_fork(&[pp.group_helper], 0, libc::SIGCHLD) {
            Ok(0) => {
                child::set_pdeathsig_kill();
                child::park()
            }
            Ok(h) => {
                if child::setpgid(h, h) < 0 || child::setpgid(0, h) < 0 {
                    child_fail(b"joining its process group (recreated: its leader had exited)", pp.pid, ctl);
                }
            }
            Err(_) => child_fail(b"recreating its process group (clone3 with the exited leader's pid)", pp.pid, ctl),
        }
    }
    for &c in pp.children.iter().filter(|&&c| !plan.procs[c].before_setsid) {
        spawn_child(plan, c, ctl, tmp);
    }
    // A table of its own: drop whatever the parent's table held below the carried fds
    // (a sharing ancestor may have placed its fds already); a shared table is filled by
    // the parent.
    let own_table = idx == 0 || !pp.shares_files;
    if idx > 0 && own_table && plan.base > 0 && child::close_range(0, plan.base as u32 - 1) < 0 {
        child_fail(b"closing inherited fds", pp.pid, ctl);
    }
    for &(target, slot, cloexec) in pp.assign.iter().filter(|_| own_table) {
        if child::dup3(tmp[slot], target, if cloexec { libc::O_CLOEXEC } else { 0 }) < 0 {
            child_fail(b"placing an fd at its original number", pp.pid, ctl);
        }
    }
    child::umask(pp.umask);
    if child::chdir(&pp.cwd) < 0 {
        child_fail(b"chdir to the original working directory", pp.pid, ctl);
    }
    if pp.root.as_bytes() != b"/" && child::chroot(&pp.root) < 0 {
        child_fail(b"chroot to the original root", pp.pid, ctl);
    }
    child::set_name(&pp.comm);
    // (a child sharing the address space uses its parent's trampoline)
    if !pp.shares_vm && sys::map_fixed_code(plan.tramp, TRAMP_LEN as usize, &[0x0f, 0x05]).is_err() {
        child_fail(b"mapping the syscall trampoline", pp.pid, ctl);
    }
    let mut msg = vec![0u8];
    msg.extend_from_slice(&pp.pid.to_le_bytes());
    msg.extend_from_slice(&ctl.to_le_bytes());
    for t in tmp {
        msg.extend_from_slice(&t.to_le_bytes());
    }
    send_report(ctl, &msg);
    if done >= 0 {
        // the parent we share an address space with may run on now
        child::write(done, b"p");
    }
    child::park()
}

/// Forks child `c` of the process running this (in the restorer's copy of itself).
fn spawn_child(plan: &Plan, c: usize, ctl: RawFd, tmp: &[i32]) {
    let cp = &plan.procs[c];
    if cp.session_helper != 0 {
        // the helper leads the child's session again and forks it
        match sys::clone_fork(&[cp.session_helper], 0, libc::SIGCHLD) {
            Ok(0) => {
                child::set_pdeathsig_kill();
                if child::setsid() < 0 {
                    child_fail(b"setsid (recreating the session of an exited leader)", cp.pid, ctl);
                }
                match sys::clone_fork(&cp.set_tid, cp.clone_flags, cp.exit_signal) {
                    Ok(0) => {
                        child::set_pdeathsig_kill();
                        child_proc(plan, c, ctl, tmp, -1)
                    }
                    Ok(_) => child::park(),
                    Err(_) => child_fail(b"clone3 with the original pid of a child", cp.pid, ctl),
                }
            }
            Ok(_) => return,
            Err(_) => child_fail(b"recreating its session (clone3 with the exited leader's pid)", cp.pid, ctl),
        }
    }
    if cp.shares_vm {
        // Same address space (and TLS, so the same malloc caches): a stack of its own,
        // and we wait until it parked before running on, so the two never execute
        // our code at the same time. The handshake pipe sits above the target fds.
        let Ok((r0, w0)) = sys::pipe2(libc::O_CLOEXEC) else {
            child_fail(b"creating a pipe for a CLONE_VM child", cp.pid, ctl)
        };
        let (r, w) = (child::dup_above(r0.as_raw_fd(), plan.base), child::dup_above(w0.as_raw_fd(), plan.base));
        drop((r0, w0));
        let run = || {
            child::set_pdeathsig_kill();
            child_proc(plan, c, ctl, tmp, w)
        };
        if r < 0 || w < 0 || sys::clone_vm_with(&cp.set_tid, cp.clone_flags, cp.exit_signal, 1 << 18, &run).is_err() {
            child_fail(b"clone3(CLONE_VM) with the original pid of a child", cp.pid, ctl);
        }
        let mut b = [0u8; 1];
        while child::read(r, &mut b) < 0 && child::errno() == libc::EINTR {}
        child::close(r);
        if !cp.shares_files {
            child::close(w);
        }
        return;
    }
    match sys::clone_fork(&cp.set_tid, cp.clone_flags, cp.exit_signal) {
        Ok(0) => {
            if cp.zombie {
                child::die_with_status(cp.exit_status);
            }
            child::set_pdeathsig_kill();
            child_proc(plan, c, ctl, tmp, -1)
        }
        Ok(_) => {}
        Err(_) => child_fail(b"clone3 with the original pid of a child", cp.pid, ctl),
    }
}

/// The new processes while we build them. Killed and reaped on drop unless released.
struct Child {
    /// The root's pid.
    pid: i32,
    /// Every live process of the tree that was created.
    pids: Vec<i32>,
    /// In --detach mode: write end of the pipe to the intermediate parent, and its pid.
    middle: Option<(OwnedFd, i32)>,
    traced: Vec<i32>,
    released: bool,
}

impl Child {
    fn kill(&mut self) {
        for p in self.pids.iter().rev() {
            let _ = sys::kill(*p, libc::SIGKILL);
        }
        let _ = sys::kill(self.pid, libc::SIGKILL);
        for t in self.traced.iter().rev() {
            loop {
                match ptrace::wait(*t) {
                    Ok(st) if matches!(ptrace::decode(st), Stop::Stopped(..)) => {
                        let _ = ptrace::cont(*t, 0);
                    }
                    _ => break,
                }
            }
        }
        match self.middle.take() {
            Some((w, mpid)) => {
                let _ = sys::write_fd(w.as_fd(), b"k");
                drop(w);
                let _ = sys::waitpid(mpid, 0);
            }
            None => {
                let _ = sys::waitpid(self.pid, libc::__WALL);
            }
        }
        // Descendants re-parented to us (we are a subreaper while restoring).
        let t = Instant::now();
        while t.elapsed() < std::time::Duration::from_secs(5) {
            match sys::try_waitpid(-1, libc::__WALL | libc::WNOHANG) {
                Ok(Some(_)) => continue,
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Err(_) => break, // ECHILD: nobody left
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.released {
            self.kill();
        }
    }
}

/// Semantic checks of a manifest whose checksums are fine: restore must never act on
/// (or panic over) an image that contradicts itself.
fn validate(m: &Manifest) -> Result<()> {
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
fn validate_tree_fields(m: &Manifest, i: usize) -> std::result::Result<(), String> {
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

fn validate_process(m: &Manifest, p: &Process) -> Result<()> {
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

pub fn restore(opts: &RestoreOptions) -> Result<u8> {
    if opts.pid_ns {
        return restore_in_pidns(opts);
    }
    restore_here(opts, None)
}

/// `--pid-ns`: a child in new PID + mount namespaces becomes pid 1 there, mounts its own
/// /proc, and runs the whole restore inside (so every pid of the image is free), then
/// stays as the namespace's init: it reaps orphans and exits with the root's status once
/// no process is left. Reports "O" + root pid (or "E" + the error) over a pipe.
fn restore_in_pidns(opts: &RestoreOptions) -> Result<u8> {
    let m = stasis_image::read_manifest(&opts.dir)?;
    validate(&m)?;
    crate::external::check_restore(&m, &opts.inherit_fds)?;
    let root = m.process.pid;
    drop(m);
    let (r, w) = sys::pipe2(libc::O_CLOEXEC).map_err(|e| step_err(root, "creating control pipe", e))?;
    let init = sys::clone_fork(&[], (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64, libc::SIGCHLD)
        .map_err(|e| step_err(root, "creating the PID namespace (clone3 CLONE_NEWPID|CLONE_NEWNS)", e))?;
    if init == 0 {
        drop(r);
        child::set_pdeathsig_kill();
        let code = pidns_init(opts, &w);
        child::exit(code)
    }
    drop(w);
    let msg = ReportReader::default().next(&r);
    drop(r);
    match msg.first() {
        Some(b'O') => {
            let inner_root = msg.get(1..5).map(|b| i32::from_le_bytes(b.try_into().unwrap())).unwrap_or(root);
            // The root's pid as seen from here: the child of the init whose second
            // NSpid level is the image's pid.
            let host = procfs::read(init, &format!("task/{init}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|x| x.parse::<i32>().ok())
                .find(|c| crate::ns::ns_pids(*c, *c).get(1) == Some(&inner_root));
            info!(pid = root, host_pid = host.unwrap_or(0), init, "restored in a new PID namespace");
            if let Some(pf) = &opts.pidfile {
                if let Err(e) = std::fs::write(pf, format!("{}\n", host.unwrap_or(init))) {
                    warn!("writing pidfile {}: {e}", pf.display());
                }
            }
            if opts.detach {
                return Ok(0);
            }
            let st = sys::waitpid(init, 0).map_err(|e| step_err(root, "waiting for the PID namespace's init", e))?;
            Ok(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) as u8 } else { 128 + libc::WTERMSIG(st) as u8 })
        }
        Some(b'E') => {
            let _ = sys::waitpid(init, 0);
            Err(Error::Relayed(String::from_utf8_lossy(&msg[1..]).to_string()))
        }
        _ => {
            let _ = sys::kill(init, libc::SIGKILL);
            let _ = sys::waitpid(init, 0);
            Err(Error::RestoreStep { pid: root, step: "restoring in a new PID namespace".into(), why: "its init died".into() })
        }
    }
}

/// Pid 1 of the `--pid-ns` namespace: own /proc, restore, then reap until empty.
fn pidns_init(opts: &RestoreOptions, w: &OwnedFd) -> i32 {
    let fail = |why: String| {
        send_report(w.as_raw_fd(), &[b"E".as_slice(), why.as_bytes()].concat());
        1
    };
    if child::mount(None, c"/", None, (libc::MS_REC | libc::MS_PRIVATE) as u64) < 0 {
        return fail(format!("restore refused: making the new mount namespace private: {}", std::io::Error::last_os_error()));
    }
    let fl = (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as u64;
    if child::mount(Some(c"proc"), c"/proc", Some(c"proc"), fl) < 0 {
        return fail(format!("restore refused: mounting /proc in the new PID namespace: {}", std::io::Error::last_os_error()));
    }
    let inner = RestoreOptions { pid_ns: false, detach: false, pidfile: None, ..opts.clone() };
    match restore_here(&inner, Some(w)) {
        Ok(code) => {
            // Orphans of the tree come to us (pid 1): reap until nobody is left.
            while sys::waitpid(-1, libc::__WALL).is_ok() {}
            code as i32
        }
        Err(e) => fail(e.to_string()),
    }
}

fn restore_here(opts: &RestoreOptions, ready: Option<&OwnedFd>) -> Result<u8> {
    let t0 = Instant::now();
    let m = stasis_image::read_manifest(&opts.dir)?;
    validate(&m)?;
    let inherit = crate::external::check_restore(&m, &opts.inherit_fds)?;
    let p = &m.process;
    let pid = p.pid;
    // -- checks that need no process --------------------------------------------------
    let mut maps = Vec::new();
    for (k, sh) in m.end.shards.iter().enumerate() {
        let path = opts.dir.join(stasis_image::pages_file_name(k as u32));
        let f = File::open(&path).map_err(crate::error::path_err(path.display().to_string()))?;
        maps.push(sys::Mapping::map_file(&f, sh.size as usize, false).map_err(crate::error::path_err(path.display().to_string()))?);
    }
    let shards: Vec<&[u8]> = maps.iter().map(|m| m.as_slice()).collect();
    stasis_image::verify_pages(&opts.dir, &m.index, &shards, 2)?;
    // Each mapped file once, however many VMAs and processes map it (hashing the same
    // executable for every VMA of every process of a tree costs seconds).
    let mut checked = std::collections::HashSet::new();
    for q in m.processes.iter().filter(|q| !q.zombie) {
        let mm = q.mm.clone().ok_or_else(|| refuse("image has no memory layout record"))?;
        if checked.insert(mm.exe_object) {
            if let Some(exe) = m.object(mm.exe_object).and_then(|o| o.mapped_file.as_ref()) {
                if let Some(id) = &exe.identity {
                    files::check_identity(&exe.path, id, "executable")?;
                }
            }
        }
        for v in &q.vmas {
            if v.object_id != 0 && checked.insert(v.object_id) {
                if let Some(mf) = m.object(v.object_id).and_then(|o| o.mapped_file.as_ref()) {
                    if let Some(id) = &mf.identity {
                        files::check_identity(&mf.path, id, &format!("file mapped at {:#x}", v.start))?;
                    }
                }
            }
        }
        for fd in &q.fds {
            if let Some(f) = m.object(fd.object_id).and_then(|o| o.file.as_ref()) {
                if f.ghost_id == 0 {
                    if let Some(id) = &f.identity {
                        let r = files::check_identity(&f.path, id, &format!("file of fd {}", fd.fd));
                        match r {
                            Err(Error::RestoreRefused(why)) if opts.allow_changed_files => {
                                warn!("{why} (restoring anyway: --allow-changed-files)")
                            }
                            Err(Error::RestoreRefused(why)) => {
                                return Err(refuse(format!(
                                    "{why}; if that is expected (a log it kept writing), restore with --allow-changed-files"
                                )))
                            }
                            other => other?,
                        }
                    }
                }
            }
        }
    }
    for q in &m.processes {
        let ids: Vec<i32> = if q.zombie { vec![q.pid] } else { q.threads.iter().map(|t| t.tid).collect() };
        for id in ids {
            if let Some(h) = holder(id) {
                let what = if id == q.pid { "pid" } else { "thread id" };
                return Err(refuse(format!("{what} {id} is in use by {h}")));
            }
        }
    }
    let self_maps = procfs::maps_self().map_err(|e| refuse(format!("reading /proc/self/maps: {e}")))?;
    let ours = vdso_family(&self_maps);
    // Each process's own vDSO: a child that exec'd another program has it elsewhere.
    let shape = |v: &[(String, u64, u64)]| -> Vec<(String, u64, i64)> {
        let base = v.first().map(|x| x.1).unwrap_or(0);
        v.iter().map(|(n, s, e)| (n.clone(), e - s, *s as i64 - base as i64)).collect()
    };
    for q in m.processes.iter().filter(|q| !q.zombie && !q.shares_vm) {
        if shape(&ours) != shape(&image_vdso(q)) {
            return Err(refuse(format!(
                "pid {}: the vDSO layout of this kernel differs from the image's (kernel {} at dump time); restore on the same kernel",
                q.pid, p.kernel
            )));
        }
    }
    // -- layout: trampoline + vDSO staging area -------------------------------------------
    let vspan = ours.last().map(|x| x.2).unwrap_or(0) - ours.first().map(|x| x.1).unwrap_or(0);
    let mut used: Vec<(u64, u64)> = self_maps.iter().map(|m| (m.start, m.end)).collect();
    used.extend(m.processes.iter().flat_map(|q| q.vmas.iter().map(|v| (v.start, v.end))));
    let tramp = find_hole(&mut used, TRAMP_LEN + vspan).ok_or_else(|| refuse("no address range free in both layouts"))?;
    let stage = tramp + TRAMP_LEN;
    debug!(tramp = format_args!("{tramp:#x}"), "trampoline");
    // -- open everything -----------------------------------------------------------
    sys::raise_nofile_limit();
    // Orphans of a failed restore come back to us to be reaped.
    let _ = sys::set_child_subreaper();
    let (mut plan, _shm_regions) = build_plan(&m, tramp, &inherit)?;
    fill_shmem(&m, &plan, &shards)?;
    // epoll items, per process (an instance shared by fork is filled once)
    let mut epoll_done = Vec::new();
    let epoll_adds: Vec<Vec<crate::fdkinds::epoll::Add>> =
        m.processes.iter().map(|q| crate::fdkinds::epoll::adds(&m, q, &mut epoll_done)).collect();
    // -- fork ----------------------------------------------------------------------
    let (ctl_r, ctl_w) = sys::pipe2(libc::O_CLOEXEC).map_err(|e| step_err(pid, "creating control pipe", e))?;
    let me = sys::getpid();
    let live: Vec<i32> = m.processes.iter().filter(|q| !q.zombie).map(|q| q.pid).collect();
    // what a failure kills: the processes and the group helpers (children of them)
    let kill_list: Vec<i32> = live
        .iter()
        .copied()
        .chain(plan.procs.iter().flat_map(|p| [p.group_helper, p.session_helper]).filter(|g| *g != 0))
        .collect();
    // The root's own time namespace: ours for children from now on (the root, or the
    // intermediate parent that forks it, is created in it).
    if let Some(off) = ns::root_time_offsets(&m.processes) {
        if child::new_time_ns(&off) < 0 {
            return Err(step_err(pid, "creating the root's time namespace (unshare CLONE_NEWTIME, clock offsets)", std::io::Error::last_os_error()));
        }
    }
    let sh = plan.session_helper;
    let mut ch = if opts.detach || sh != 0 {
        let (mid_r, mid_w) = sys::pipe2(libc::O_CLOEXEC).map_err(|e| step_err(pid, "creating control pipe", e))?;
        let set_tid: &[i32] = if sh != 0 { &[sh] } else { &[] };
        let mpid = sys::clone_fork(set_tid, 0, libc::SIGCHLD).map_err(|e| {
            if sh != 0 {
                step_err(pid, &format!("recreating session {sh} (its leader had exited): clone3 with pid {sh}"), e)
            } else {
                step_err(pid, "fork", e)
            }
        })?;
        if mpid == 0 {
            // intermediate parent: lead the root's session if its leader is gone, create
            // the process, then wait for our orders.
            drop(mid_w);
            let my = sys::getpid();
            if sh != 0 && child::setsid() < 0 {
                child_fail(b"setsid (recreating the session of an exited leader)", pid, ctl_w.as_raw_fd());
            }
            let c = match sys::clone_fork(&plan.procs[0].set_tid, plan.procs[0].clone_flags, libc::SIGCHLD) {
                Ok(0) => child_main(&plan, ctl_w.as_raw_fd(), my),
                Ok(c) => c,
                Err(e) => {
                    let mut msg = vec![2u8];
                    msg.extend_from_slice(&pid.to_le_bytes());
                    msg.extend_from_slice(&e.raw_os_error().unwrap_or(0).to_le_bytes());
                    send_report(ctl_w.as_raw_fd(), &msg);
                    child::exit(1)
                }
            };
            let mut b = [0u8; 1];
            let n = sys::read_fd(mid_r.as_fd(), &mut b).unwrap_or(0);
            if n == 0 || b[0] == b'k' {
                let _ = sys::kill(c, libc::SIGKILL);
                let _ = sys::waitpid(c, libc::__WALL);
            }
            child::exit(0)
        }
        drop(mid_r);
        Child { pid, pids: kill_list.clone(), middle: Some((mid_w, mpid)), traced: Vec::new(), released: false }
    } else {
        match sys::clone_fork(&plan.procs[0].set_tid, plan.procs[0].clone_flags, libc::SIGCHLD) {
            Ok(0) => child_main(&plan, ctl_w.as_raw_fd(), me),
            Ok(c) => Child { pid: c, pids: kill_list.clone(), middle: None, traced: Vec::new(), released: false },
            Err(e) => return Err(pid_taken_or(pid, e)),
        }
    };
    drop(ctl_w);
    // -- wait for every process's report ----------------------------------------------
    let mut tmp_by_pid: HashMap<i32, Vec<i32>> = HashMap::new();
    let mut reader = ReportReader::default();
    while tmp_by_pid.len() < live.len() {
        let buf = reader.next(&ctl_r);
        let n = buf.len();
        if n == 0 {
            if tmp_by_pid.is_empty() && ch.middle.is_some() {
                ch.released = true; // nothing to kill if the root never existed
                if let Some((w, mpid)) = ch.middle.take() {
                    drop(w);
                    let _ = sys::waitpid(mpid, 0);
                }
            }
            return Err(Error::RestoreStep { pid, step: "creating the processes".into(), why: "a new process died during setup".into() });
        }
        if n < 9 {
            return Err(Error::RestoreStep { pid, step: "creating the processes".into(), why: "garbled report from a new process".into() });
        }
        let who = i32::from_le_bytes(buf[1..5].try_into().unwrap());
        match buf[0] {
            0 => {}
            2 => {
                ch.released = true;
                if let Some((w, mpid)) = ch.middle.take() {
                    drop(w);
                    let _ = sys::waitpid(mpid, 0);
                }
                let e = i32::from_le_bytes(buf[5..9].try_into().unwrap());
                return Err(pid_taken_or(who, std::io::Error::from_raw_os_error(e)));
            }
            _ => {
                let e = i32::from_le_bytes(buf[5..9].try_into().unwrap());
                let what = String::from_utf8_lossy(&buf[9..n]).to_string();
                let why = std::io::Error::from_raw_os_error(e).to_string();
                return Err(Error::RestoreStep { pid, step: format!("{what} (pid {who})"), why });
            }
        }
        let words: Vec<i32> = buf[5..n].chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
        if words.len() != plan.carry.len() + 1 {
            return Err(Error::RestoreStep { pid, step: "creating the processes".into(), why: format!("short report from pid {who}") });
        }
        // words[0] is the child's control fd (closed with the other carried fds)
        tmp_by_pid.insert(who, words[1..].to_vec());
    }
    info!(pid, processes = live.len(), ms = t0.elapsed().as_millis() as u64, "processes created");
    // control groups, before any thread exists (threads inherit their creator's)
    crate::cgroup::restore(&m.processes);
    // Every process holds its own FIFO descriptions now: a FIFO must not stay open here
    // (a reader would never see EOF).
    plan.fifo_keep.clear();
    // SysV objects, now that the new IPC namespaces exist (before any shmat)
    let mut sysv = ipc::restore(&m, &shards)?;
    // -- drive them: every process up to its registers, then all registers, then go ----
    // Processes are built concurrently by a few tracer threads (a ptrace tracee belongs
    // to the thread that seized it, so each thread keeps its processes to the end).
    // Processes sharing an fd table stay on one thread, in tree order: the last one
    // closes the carried fds the others still map from.
    let mut units: Vec<Vec<usize>> = Vec::new();
    for (i, q) in m.processes.iter().enumerate() {
        if q.zombie {
            continue;
        }
        let parent = m.processes.iter().position(|x| x.pid == q.ppid);
        // (and processes sharing an address space: they share the trampoline's data area)
        match parent.filter(|_| q.shares_files || q.shares_vm).and_then(|p| units.iter().position(|u| u.contains(&p))) {
            Some(u) => units[u].push(i),
            None => units.push(vec![i]),
        }
    }
    let nworkers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4).min(units.len());
    let mut lists: Vec<Vec<usize>> = vec![Vec::new(); nworkers];
    for (k, u) in units.into_iter().enumerate() {
        lists[k % nworkers].extend(u);
    }
    let chm = std::sync::Mutex::new(ch);
    let failed: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    let sysvm = std::sync::Mutex::new(&mut sysv);
    let barrier = std::sync::Barrier::new(nworkers);
    let fail = |e: Error| {
        failed.lock().unwrap().get_or_insert(e);
    };
    let ok = || failed.lock().unwrap().is_none();
    std::thread::scope(|s| {
        for (w, list) in lists.iter().enumerate() {
            let (chm, barrier, tmp_by_pid) = (&chm, &barrier, &tmp_by_pid);
            let (m, plan, epoll_adds, shards, ours) = (&m, &plan, &epoll_adds, &shards, &ours);
            let (fail, ok, sysvm) = (&fail, &ok, &sysvm);
            s.spawn(move || {
                let mut mine = Vec::new();
                for &i in list {
                    if !ok() {
                        break;
                    }
                    let q = &m.processes[i];
                    let mut b = Builder {
                        m,
                        p: q,
                        pp: &plan.procs[i],
                        is_root: i == 0,
                        epoll: &epoll_adds[i],
                        pid: q.pid,
                        plan,
                        tmp_fds: tmp_by_pid.get(&q.pid).cloned().unwrap_or_default(),
                        shards,
                        tramp,
                        stage,
                        self_vdso: ours,
                        threads: Vec::new(),
                    };
                    match b.run(chm) {
                        Ok(()) => mine.push(b),
                        Err(e) => fail(e),
                    }
                }
                barrier.wait();
                // every segment is attached again: mark the destroyed ones
                if w == 0 && ok() {
                    if let Err(e) = sysvm.lock().unwrap().finish(pid) {
                        fail(e);
                    }
                }
                barrier.wait();
                // Every member joined its group: the helpers that held dead leaders' groups go.
                for b in mine.iter().filter(|_| ok()) {
                    if let Err(e) = b.reap_group_helper() {
                        fail(e);
                    }
                }
                barrier.wait();
                for b in mine.iter().filter(|_| ok()) {
                    if let Err(e) = b.finish() {
                        fail(e);
                    }
                }
                // Leaving this thread detaches what it still traces (PTRACE_O_EXITKILL
                // kills those on failure); on success everything is detached already.
            });
        }
    });
    let mut ch = chm.into_inner().unwrap();
    if let Some(e) = failed.into_inner().unwrap() {
        drop(ch); // kills and reaps
        return Err(e);
    }
    sysv.keep();
    info!(pid, ms = t0.elapsed().as_millis() as u64, "restored");
    if let Some(pf) = &opts.pidfile {
        if let Err(e) = std::fs::write(pf, format!("{pid}\n")) {
            warn!("writing pidfile {}: {e}", pf.display());
        }
    }
    ch.released = true;
    if let Some(w) = ready {
        // --pid-ns init: outlive the outer stasis, then tell it. In the other order the
        // outer one may read the report and exit (--detach) before the death signal is
        // cleared, and the kernel kills this init and with it the whole namespace.
        let _ = sys::clear_pdeathsig();
        send_report(w.as_raw_fd(), &[b"O".as_slice(), &pid.to_le_bytes()].concat());
    }
    if opts.detach {
        return Ok(0);
    }
    drop(plan);
    let st = sys::waitpid(pid, libc::__WALL).map_err(|e| step_err(pid, "waiting for the restored process", e))?;
    Ok(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) as u8 } else { 128 + libc::WTERMSIG(st) as u8 })
}

/// Reads length-framed reports from the control pipe.
#[derive(Default)]
struct ReportReader {
    pending: Vec<u8>,
}

impl ReportReader {
    /// The next report's payload; empty when the pipe is closed (every writer gone).
    fn next(&mut self, r: &OwnedFd) -> Vec<u8> {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            if self.pending.len() >= 4 {
                let len = u32::from_le_bytes(self.pending[..4].try_into().unwrap()) as usize;
                if self.pending.len() >= 4 + len {
                    let msg = self.pending[4..4 + len].to_vec();
                    self.pending.drain(..4 + len);
                    return msg;
                }
            }
            match sys::read_fd(r.as_fd(), &mut chunk) {
                Ok(0) => return Vec::new(),
                Ok(k) => self.pending.extend_from_slice(&chunk[..k]),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(_) => return Vec::new(),
            }
        }
    }
}

fn pid_taken_or(pid: i32, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EEXIST) {
        return refuse(format!(
            "pid {pid} is in use{}",
            holder(pid).map(|h| format!(" by {h}")).unwrap_or_default()
        ));
    }
    step_err(pid, "clone3 with the original pid", e)
}

fn step_err(pid: i32, step: &str, e: std::io::Error) -> Error {
    Error::RestoreStep { pid, step: step.into(), why: e.to_string() }
}

struct Builder<'a> {
    m: &'a Manifest,
    /// The process being built, its plan, whether it is the root.
    p: &'a Process,
    pp: &'a ProcPlan,
    is_root: bool,
    epoll: &'a [crate::fdkinds::epoll::Add],
    pid: i32,
    plan: &'a Plan,
    tmp_fds: Vec<i32>,
    shards: &'a [&'a [u8]],
    tramp: u64,
    stage: u64,
    self_vdso: &'a [(String, u64, u64)],
    /// (tid, remote) for every thread, main first.
    threads: Vec<Remote>,
}

impl Builder<'_> {
    fn err(&self, step: &str, why: impl std::fmt::Display) -> Error {
        Error::RestoreStep { pid: self.pid, step: step.into(), why: why.to_string() }
    }

    /// A pid of the image (dumper's numbering) as this process sees it.
    fn inner(&self, host: i32) -> i32 {
        crate::ns::inner_pid(&self.m.processes, self.p, host)
    }

    fn main(&self) -> &Remote {
        &self.threads[0]
    }

    fn call(&self, step: &str, r: &Remote, nr: i64, args: &[u64]) -> Result<u64> {
        r.call(nr, args).map_err(|e| self.err(step, format!("syscall {nr} in thread {}: {e}", r.tid)))
    }

    fn data(&self, off: u64) -> u64 {
        self.tramp + DATA + off
    }

    fn write_data(&self, step: &str, off: u64, b: &[u8]) -> Result<()> {
        sys::write_mem(self.pid, self.data(off), b).map_err(|e| self.err(step, e))
    }

    fn run(&mut self, ch: &std::sync::Mutex<Child>) -> Result<()> {
        let pid = self.pid;
        ptrace::seize(pid, (libc::PTRACE_O_TRACECLONE | libc::PTRACE_O_EXITKILL) as u32 | ptrace::PTRACE_O_SUSPEND_SECCOMP)
            .map_err(|e| self.err("seizing the new process", e))?;
        ch.lock().unwrap().traced.push(pid);
        ptrace::interrupt(pid).map_err(|e| self.err("seizing the new process", e))?;
        loop {
            let st = ptrace::wait(pid).map_err(|e| self.err("seizing the new process", e))?;
            match ptrace::decode(st) {
                Stop::Stopped(_, ptrace::PTRACE_EVENT_STOP) => break,
                Stop::Stopped(_, _) => ptrace::cont(pid, 0).map_err(|e| self.err("seizing the new process", e))?,
                other => return Err(self.err("seizing the new process", format!("{other:?}"))),
            }
        }
        let regs0 = ptrace::getregs(pid).map_err(|e| self.err("reading registers", e))?;
        self.threads.push(Remote::new(pid, self.tramp, regs0));
        // Block everything first: a child of this process may already have exited
        // (a zombie recreated), and its SIGCHLD must not interrupt our syscalls.
        ptrace::set_sigmask(pid, !0).map_err(|e| self.err("blocking signals", e))?;
        // The child inherited the restorer's rseq registration; its area disappears with
        // the restorer's mappings, so unregister it first (the kernel would SIGSEGV).
        let rs = ptrace::get_rseq(pid).map_err(|e| self.err("reading rseq registration", e))?;
        if rs.addr != 0 {
            self.call("unregistering the restorer's rseq", &self.threads[0], libc::SYS_rseq, &[rs.addr, rs.len as u64, 1, rs.sig as u64])?;
        }

        if !self.pp.shares_vm {
            self.address_space()?;
            self.fill_memory()?;
            self.finish_vmas()?;
            self.mm_fields()?;
        }
        self.create_threads(ch)?;
        self.thread_state()?;
        self.signals()?;
        self.timers()?;
        self.attrs()?;
        // Join the process group it was in, now that every process of the tree exists
        // (leaders did setpgid/setsid while being created).
        let (pg, sid) = self.p.attrs.as_ref().map(|a| (a.pgid, a.sid)).unwrap_or((0, 0));
        if pg > 0 && pg != self.pid && sid != self.pid {
            if let Err(e) = self.main().call(libc::SYS_setpgid, &[0, self.inner(pg) as u64]) {
                debug!(pid = self.pid, pgid = pg, "process group not joined: {e}");
            }
        }
        // close the carried fds (all above the target's highest fd), unless a process
        // built later shares this fd table and still needs them
        if self.pp.closes_table {
            let r = self.main();
            self.call("closing restorer fds", r, libc::SYS_close_range, &[self.plan.base as u64, u32::MAX as u64, 0])?;
            // after that close: closing any fd of a file drops the process's POSIX locks on it
            self.locks()?;
        }
        self.epoll_items()?;
        // --detach: hand the process over to its new parent before setting pdeathsig.
        let middle = if self.is_root { ch.lock().unwrap().middle.take() } else { None };
        if let Some((w, mpid)) = middle {
            for t in &self.threads {
                self.call("clearing parent-death signal", t, libc::SYS_prctl, &[libc::PR_SET_PDEATHSIG as u64, 0])?;
            }
            let _ = sys::write_fd(w.as_fd(), b"d");
            drop(w);
            let _ = sys::waitpid(mpid, 0);
        }
        // Seccomp before credentials (installing a filter without no_new_privs needs
        // CAP_SYS_ADMIN, which the process may have dropped since); our later injected
        // syscalls are not filtered (PTRACE_O_SUSPEND_SECCOMP).
        self.seccomp()?;
        self.pdeath_and_creds()?;
        let attrs = self.p.attrs.clone().unwrap_or_default();
        self.call("dumpable", self.main(), libc::SYS_prctl, &[libc::PR_SET_DUMPABLE as u64, attrs.dumpable as u64])?;
        Ok(())
    }

    /// Kills the helper that held this process's group (see `dead_leaders`), reaps it
    /// from inside, and drops the SIGCHLD it caused unless the image had one pending.
    fn reap_group_helper(&self) -> Result<()> {
        let mut helpers: Vec<i32> = self.pp.children.iter().map(|&c| self.plan.procs[c].session_helper).collect();
        helpers.push(self.pp.group_helper);
        helpers.retain(|h| *h != 0);
        if helpers.is_empty() {
            return Ok(());
        }
        let st = format!("removing helper processes {helpers:?} (they held exited leaders' groups/sessions)");
        for &g in &helpers {
            let _ = sys::kill(g, libc::SIGKILL);
            self.call(&st, self.main(), libc::SYS_wait4, &[g as u64, 0, libc::__WALL as u64, 0])?;
        }
        let chld = libc::SIGCHLD;
        let pending = self.p.shared_pending.iter().chain(self.p.threads.iter().flat_map(|t| t.pending.iter())).any(|s| s.signo == chld);
        if !pending {
            self.write_data(&st, 0, &(1u64 << (chld - 1)).to_le_bytes())?;
            self.write_data(&st, 16, &[0u8; 16])?;
            let _ = self.main().raw(libc::SYS_rt_sigtimedwait, &[self.data(0), 0, self.data(16), 8]);
        }
        Ok(())
    }

    /// Last step, once every process of the tree is built: registers, then go.
    fn finish(&self) -> Result<()> {
        let attrs = self.p.attrs.clone().unwrap_or_default();
        if self.pp.session_helper != 0 {
            // the helper that was its parent is gone now: arm the saved parent-death signal
            for t in &self.p.threads {
                let r = self.remote_of(t.tid);
                let st = format!("thread {} parent-death signal", t.tid);
                self.call(&st, r, libc::SYS_prctl, &[libc::PR_SET_PDEATHSIG as u64, t.pdeathsig as u64])?;
            }
        }
        if self.pp.set_tid.len() == 1 {
            // every process of the tree is built and stopped: its ids are final
            if let Ok(f) = procfs::stat_fields(self.pid) {
                let (pg, sid) = (procfs::stat_num(&f, 5) as i32, procfs::stat_num(&f, 6) as i32);
                if (pg, sid) != (attrs.pgid, attrs.sid) {
                    warn!(pid = self.pid, "restored in process group {pg} and session {sid}; it was in group {} and session {}", attrs.pgid, attrs.sid);
                }
            }
        }
        if self.pp.unmaps_tramp {
            self.call("unmapping the trampoline", self.main(), libc::SYS_munmap, &[self.tramp, TRAMP_LEN])?;
        }
        self.registers()?;
        if attrs.stopped {
            // Queued while every thread is still stopped under ptrace: the first thing
            // each does after we detach is to enter the group stop again.
            sys::kill(self.pid, libc::SIGSTOP).map_err(|e| self.err("stopping the process again (it was stopped)", e))?;
        }
        for t in &self.threads {
            ptrace::detach(t.tid).map_err(|e| self.err("detaching", format!("thread {}: {e}", t.tid)))?;
        }
        Ok(())
    }

    fn address_space(&self) -> Result<()> {
        let r = self.main();
        let st = "moving the vDSO";
        // stage: our (= the child's) vDSO family into the staging area, relative layout kept
        let base = self.self_vdso.first().map(|x| x.1).unwrap_or(0);
        for (_, s, e) in self.self_vdso {
            let to = self.stage + (s - base);
            self.call(st, r, libc::SYS_mremap, &[*s, e - s, e - s, (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64, to])?;
        }
        let st = "unmapping the restorer";
        self.call(st, r, libc::SYS_munmap, &[0, self.tramp])?;
        let hi = self.stage + (self.self_vdso.last().map(|x| x.2).unwrap_or(base) - base);
        self.call(st, r, libc::SYS_munmap, &[hi, TASK_SIZE - hi])?;
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
            let gd = if v.vm_flags.iter().any(|f| f == "gd") { libc::MAP_GROWSDOWN } else { 0 };
            let fixed = libc::MAP_FIXED;
            let step = format!("mapping VMA {:#x}-{:#x} {}", v.start, v.end, v.name);
            let fd_of = |id: u32| -> Result<u64> {
                let slot = self.plan.map_slot.get(&id).ok_or_else(|| self.err(&step, "no file for this mapping"))?;
                Ok(self.tmp_fds[*slot] as u64)
            };
            let args: [u64; 6] = match kind {
                VmaKind::Anon => [v.start, len, prot, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed | gd) as u64, u64::MAX, 0],
                VmaKind::FilePrivate => [v.start, len, prot, (libc::MAP_PRIVATE | fixed | gd) as u64, fd_of(v.object_id)?, v.pgoff],
                VmaKind::FileShared | VmaKind::ShmemAnon => {
                    [v.start, len, prot, (libc::MAP_SHARED | fixed) as u64, fd_of(v.object_id)?, v.pgoff]
                }
                VmaKind::SysvShm => {
                    self.attach_sysv(v, &step)?;
                    continue;
                }
                VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall => continue,
                VmaKind::Unknown => return Err(self.err(&step, "VMA of unknown kind")),
            };
            let got = self.call(&step, r, libc::SYS_mmap, &args)?;
            if got != v.start {
                return Err(self.err(&step, format!("mapped at {got:#x}")));
            }
        }
        Ok(())
    }

    /// A SysV attachment: one shmat of the whole segment at its first VMA (pgoff 0; dump
    /// refuses partly unmapped attachments), then each VMA's own protection.
    fn attach_sysv(&self, v: &Vma, step: &str) -> Result<()> {
        let r = self.main();
        let s = self.m.object(v.object_id).and_then(|o| o.sysv_shm.as_ref()).ok_or_else(|| self.err(step, "no SysV segment object"))?;
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

    fn fill_memory(&self) -> Result<()> {
        let pid = self.pid;
        let runs: Vec<&PageRun> =
            self.m.index.runs.iter().filter(|r| r.object_id == 0 && (r.pid == pid || r.pid == 0)).collect();
        let total: u64 = runs.iter().map(|r| r.count as u64 * PAGE).sum();
        let pb = crate::progress::Progress::new(total, "restoring memory");
        // Batches of up to 1024 iovecs / 64 MiB, split over two threads.
        let mut batches: Vec<&[&PageRun]> = Vec::new();
        let mut i = 0;
        while i < runs.len() {
            let mut j = i;
            let mut bytes = 0u64;
            while j < runs.len() && j - i < 1024 && bytes < (64 << 20) {
                bytes += runs[j].count as u64 * PAGE;
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
                        let local: Vec<(*const u8, usize)> = b
                            .iter()
                            .map(|r| (shards[r.shard as usize][r.file_offset as usize..].as_ptr(), r.count as usize * PAGE as usize))
                            .collect();
                        let remote: Vec<(u64, usize)> = b.iter().map(|r| (r.addr, r.count as usize * PAGE as usize)).collect();
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

    fn finish_vmas(&self) -> Result<()> {
        let r = self.main();
        for v in &self.p.vmas {
            let kind = VmaKind::try_from(v.kind).unwrap_or(VmaKind::Unknown);
            if matches!(kind, VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock | VmaKind::Vsyscall) {
                continue;
            }
            let step = format!("VMA {:#x}-{:#x} {}", v.start, v.end, v.name);
            let len = v.end - v.start;
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
            if v.vm_flags.iter().any(|f| f == "lo") {
                if let Err(e) = r.call(libc::SYS_mlock, &[v.start, len]) {
                    warn!("pid {}: {step}: mlock: {e}", self.pid);
                }
            }
        }
        Ok(())
    }

    fn mm_fields(&self) -> Result<()> {
        let mm = self.p.mm.clone().unwrap_or_default();
        let st = "setting mm fields (PR_SET_MM_MAP)";
        let auxv_off = 256u64;
        let mut b = Vec::new();
        for v in [
            mm.start_code, mm.end_code, mm.start_data, mm.end_data, mm.start_brk, mm.brk, mm.start_stack, mm.arg_start,
            mm.arg_end, mm.env_start, mm.env_end,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.data(auxv_off).to_le_bytes());
        b.extend_from_slice(&((mm.auxv.len() * 8) as u32).to_le_bytes());
        // The kernel refuses to switch exe_file while the old one is still mapped; when the
        // image's executable is the restorer's own binary it is, and it is also already
        // the right file: keep it (-1).
        let exe_fd = if self.pp.exe_is_ours { u32::MAX } else { self.tmp_fds[self.pp.exe_slot] as u32 };
        b.extend_from_slice(&exe_fd.to_le_bytes());
        self.write_data(st, 0, &b)?;
        let aux: Vec<u8> = mm.auxv.iter().flat_map(|w| w.to_le_bytes()).collect();
        if aux.len() as u64 + auxv_off + DATA > TRAMP_LEN {
            return Err(self.err(st, "auxv too large"));
        }
        self.write_data(st, auxv_off, &aux)?;
        self.call(st, self.main(), libc::SYS_prctl, &[PR_SET_MM, PR_SET_MM_MAP, self.data(0), b.len() as u64, 0])?;
        if mm.thp_disabled {
            self.call("THP disable", self.main(), libc::SYS_prctl, &[libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0])?;
        }
        Ok(())
    }

    fn create_threads(&mut self, ch: &std::sync::Mutex<Child>) -> Result<()> {
        let main_regs = ptrace::getregs(self.pid).map_err(|e| self.err("creating threads", e))?;
        let threads: Vec<(i32, Vec<i32>)> = self
            .p
            .threads
            .iter()
            .skip(1)
            .map(|t| {
                let mut v = if t.ns_tids.len() > 1 { t.ns_tids.clone() } else { vec![t.tid] };
                v.reverse(); // innermost first
                (t.tid, v)
            })
            .collect();
        for (tid, set_tid) in threads {
            let st = format!("creating thread {tid}");
            let set_tid_off = 128u64;
            let args = sys::CloneArgs {
                flags: CLONE_THREAD_FLAGS,
                set_tid: self.data(set_tid_off),
                set_tid_size: set_tid.len() as u64,
                ..Default::default()
            };
            self.write_data(&st, 0, args.as_bytes())?;
            let b: Vec<u8> = set_tid.iter().flat_map(|x| x.to_le_bytes()).collect();
            self.write_data(&st, set_tid_off, &b)?;
            let got = self.main().raw(libc::SYS_clone3, &[self.data(0), std::mem::size_of::<sys::CloneArgs>() as u64]);
            let got = got.map_err(|e| self.err(&st, e))?;
            // clone3 returns the tid as the process itself sees it (innermost level)
            if got != set_tid[0] as i64 {
                let why = if got == -(libc::EEXIST as i64) {
                    format!("thread id {tid} is in use{}", holder(tid).map(|h| format!(" by {h}")).unwrap_or_default())
                } else {
                    format!("clone3 returned {got}")
                };
                return Err(self.err(&st, why));
            }
            ch.lock().unwrap().traced.push(tid);
            loop {
                let s = ptrace::wait(tid).map_err(|e| self.err(&st, e))?;
                match ptrace::decode(s) {
                    Stop::Stopped(_, ptrace::PTRACE_EVENT_STOP) | Stop::Stopped(libc::SIGSTOP, _) => break,
                    Stop::Stopped(_, _) => ptrace::cont(tid, 0).map_err(|e| self.err(&st, e))?,
                    other => return Err(self.err(&st, format!("{other:?}"))),
                }
            }
            ptrace::set_sigmask(tid, !0).map_err(|e| self.err(&st, e))?;
            self.threads.push(Remote::new(tid, self.tramp, main_regs));
        }
        Ok(())
    }

    fn remote_of(&self, tid: i32) -> &Remote {
        self.threads.iter().find(|r| r.tid == tid).unwrap_or(&self.threads[0])
    }

    fn thread_state(&self) -> Result<()> {
        for t in &self.p.threads {
            let r = self.remote_of(t.tid);
            let st = format!("thread {} state", t.tid);
            // Every per-thread attribute is set, also to "none": the new thread is a copy
            // of the restorer's, and whatever of its state is not overwritten (its robust
            // list, its alternate signal stack, both pointing into memory that is gone)
            // would survive into the restored process.
            self.call(&format!("{st}: robust list"), r, libc::SYS_set_robust_list, &[t.robust_list, ROBUST_LIST_HEAD_LEN])?;
            if t.rseq_addr != 0 {
                self.call(&format!("{st}: rseq"), r, libc::SYS_rseq, &[t.rseq_addr, t.rseq_len as u64, 0, t.rseq_sig as u64])?;
            }
            self.call(&st, r, libc::SYS_set_tid_address, &[t.clear_child_tid])?;
            // 0 = back to the default slack (the value it was born with)
            self.call(&format!("{st}: timer slack"), r, libc::SYS_prctl, &[libc::PR_SET_TIMERSLACK as u64, t.timerslack_ns, 0, 0, 0])?;
            let ss = altstack(t);
            self.write_data(&st, 0, kabi::as_bytes(&ss))?;
            self.call(&format!("{st}: sigaltstack"), r, libc::SYS_sigaltstack, &[self.data(0), 0])?;
            let tid = t.tid;
            if !t.comm.is_empty() {
                // /proc/PID/task/TID/comm is only writable from inside the thread group.
                let mut name = t.comm.as_bytes().to_vec();
                name.truncate(15);
                name.push(0);
                self.write_data(&st, 0, &name)?;
                self.call(&format!("{st}: comm"), r, libc::SYS_prctl, &[libc::PR_SET_NAME as u64, self.data(0)])?;
            }
            if !t.affinity.is_empty() {
                if let Err(e) = sys::set_affinity(tid, &t.affinity) {
                    warn!("thread {tid}: restoring CPU affinity: {e}");
                }
            }
            if let Err(e) = sys::sched_set(tid, t.sched_policy, t.sched_priority) {
                warn!("thread {tid}: restoring scheduling policy {}: {e}", t.sched_policy);
            }
            if matches!(t.sched_policy, libc::SCHED_OTHER | libc::SCHED_BATCH | libc::SCHED_IDLE) {
                if let Err(e) = sys::set_nice(tid, t.nice) {
                    warn!("thread {tid}: restoring nice {}: {e}", t.nice);
                }
            }
        }
        Ok(())
    }

    fn signals(&self) -> Result<()> {
        let p = self.p;
        let r = self.main();
        // The new process is a fork of stasis and inherited its handlers (Rust installs
        // SIGSEGV/SIGBUS handlers and ignores SIGPIPE): every signal the image does not
        // name goes back to SIG_DFL.
        self.write_data("resetting signal handlers", 0, &[0u8; 32])?;
        for sig in 1..=64u64 {
            if sig == libc::SIGKILL as u64 || sig == libc::SIGSTOP as u64 || p.sigactions.iter().any(|a| a.signo as u64 == sig) {
                continue;
            }
            self.call("resetting signal handlers", r, libc::SYS_rt_sigaction, &[sig, self.data(0), 0, 8])?;
        }
        for a in &p.sigactions {
            let st = format!("restoring the handler of signal {}", a.signo);
            let mut b = Vec::new();
            for w in [a.handler, a.flags, a.restorer, a.mask] {
                b.extend_from_slice(&w.to_le_bytes());
            }
            self.write_data(&st, 0, &b)?;
            self.call(&st, r, libc::SYS_rt_sigaction, &[a.signo as u64, self.data(0), 0, 8])?;
        }
        // Signals that reached the new process while we built it (SIGCHLD from a zombie
        // child recreated by exiting) are not the image's: drain them first.
        let zero = [0u8; 16];
        self.write_data("draining signals", 0, &[0xffu8; 8])?;
        self.write_data("draining signals", 16, &zero)?;
        for _ in 0..256 {
            match r.raw(libc::SYS_rt_sigtimedwait, &[self.data(0), 0, self.data(16), 8]) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
        // Pending signals: all threads block everything until registers are set.
        for s in &p.shared_pending {
            let st = format!("queueing pending signal {}", s.signo);
            self.write_data(&st, 0, &s.raw)?;
            self.call(&st, r, libc::SYS_rt_sigqueueinfo, &[self.inner(self.pid) as u64, s.signo as u64, self.data(0)])?;
        }
        for t in &p.threads {
            // The kernel lets a thread queue a siginfo with si_code >= 0 only to itself.
            let tr = self.remote_of(t.tid);
            for s in &t.pending {
                let st = format!("queueing pending signal {} of thread {}", s.signo, t.tid);
                self.write_data(&st, 0, &s.raw)?;
                let (ip, it) = (self.inner(self.pid) as u64, self.inner(t.tid) as u64);
            self.call(&st, tr, libc::SYS_rt_tgsigqueueinfo, &[ip, it, s.signo as u64, self.data(0)])?;
            }
        }
        Ok(())
    }

    fn timers(&self) -> Result<()> {
        let p = self.p;
        let r = self.main();
        for it in &p.itimers {
            let st = format!("restoring itimer {}", it.which);
            let tv = |us: u64| [(us / 1_000_000).to_le_bytes(), (us % 1_000_000).to_le_bytes()].concat();
            let b = [tv(it.interval_us), tv(it.value_us.max(1))].concat();
            self.write_data(&st, 0, &b)?;
            self.call(&st, r, libc::SYS_setitimer, &[it.which as u64, self.data(0), 0])?;
        }
        if p.posix_timers.is_empty() {
            return Ok(());
        }
        let st = "restoring POSIX timers";
        self.call(st, r, libc::SYS_prctl, &[PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0]).map_err(|e| {
            self.err(st, format!("{e} (needs Linux 6.17+ for PR_TIMER_CREATE_RESTORE_IDS)"))
        })?;
        for t in &p.posix_timers {
            let st = format!("restoring POSIX timer {}", t.id);
            // struct sigevent: sigval (8), signo (4), notify (4), tid (4), pad to 64
            let mut ev = vec![0u8; 64];
            ev[0..8].copy_from_slice(&t.sigval.to_le_bytes());
            ev[8..12].copy_from_slice(&t.signo.to_le_bytes());
            ev[12..16].copy_from_slice(&t.notify.to_le_bytes());
            ev[16..20].copy_from_slice(&self.inner(t.notify_tid).to_le_bytes());
            self.write_data(&st, 0, &ev)?;
            self.write_data(&st, 64, &t.id.to_le_bytes())?;
            self.call(&st, r, libc::SYS_timer_create, &[t.clock as u64, self.data(0), self.data(64)])?;
            let got = i32::from_le_bytes(sys::read_mem(self.pid, self.data(64), 4).map_err(|e| self.err(&st, e))?.try_into().unwrap());
            if got != t.id {
                return Err(self.err(&st, format!("kernel gave timer id {got}")));
            }
            if t.value_ns != 0 || t.interval_ns != 0 {
                let ts = |ns: u64| [(ns / 1_000_000_000).to_le_bytes(), (ns % 1_000_000_000).to_le_bytes()].concat();
                let b = [ts(t.interval_ns), ts(t.value_ns.max(1))].concat();
                self.write_data(&st, 128, &b)?;
                self.call(&st, r, libc::SYS_timer_settime, &[t.id as u64, 0, self.data(128), 0])?;
            }
        }
        self.call(st, r, libc::SYS_prctl, &[PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0])?;
        Ok(())
    }

    fn attrs(&self) -> Result<()> {
        let p = self.p;
        let attrs = p.attrs.clone().unwrap_or_default();
        for t in &self.threads {
            self.call("personality", t, libc::SYS_personality, &[attrs.personality as u64])?;
        }
        if attrs.child_subreaper {
            self.call("child subreaper", self.main(), libc::SYS_prctl, &[libc::PR_SET_CHILD_SUBREAPER as u64, 1])?;
        }
        for rl in &p.rlimits {
            if let Err(e) = sys::prlimit(self.pid, rl.resource, Some((rl.cur, rl.max))) {
                return Err(self.err(
                    "restoring resource limits",
                    format!("resource {}: {}/{}: {e}", rl.resource, rl.cur, rl.max),
                ));
            }
        }
        let cur: i32 = procfs::read(self.pid, "oom_score_adj").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        if cur != attrs.oom_score_adj {
            if let Err(e) = std::fs::write(format!("/proc/{}/oom_score_adj", self.pid), attrs.oom_score_adj.to_string()) {
                warn!("pid {}: restoring oom_score_adj {}: {e}", self.pid, attrs.oom_score_adj);
            }
        }
        Ok(())
    }

    fn seccomp(&self) -> Result<()> {
        const SECCOMP_SET_MODE_STRICT: u64 = 0;
        const SECCOMP_SET_MODE_FILTER: u64 = 1;
        for t in &self.p.threads {
            let r = self.remote_of(t.tid);
            for (i, f) in t.seccomp_filters.iter().enumerate() {
                let st = format!("installing seccomp filter {i} of thread {}", t.tid);
                // struct sock_fprog { u16 len; pad; struct sock_filter *filter; } then the code
                let mut b = vec![0u8; 16];
                b[0..2].copy_from_slice(&((f.len() / 8) as u16).to_le_bytes());
                b[8..16].copy_from_slice(&self.data(16).to_le_bytes());
                b.extend_from_slice(f);
                if b.len() as u64 + DATA > TRAMP_LEN {
                    return Err(self.err(&st, format!("filter of {} instructions does not fit the trampoline page", f.len() / 8)));
                }
                self.write_data(&st, 0, &b)?;
                self.call(&st, r, libc::SYS_seccomp, &[SECCOMP_SET_MODE_FILTER, 0, self.data(0)])?;
            }
            if t.seccomp_mode == 1 {
                let st = format!("seccomp strict mode of thread {}", t.tid);
                self.call(&st, r, libc::SYS_seccomp, &[SECCOMP_SET_MODE_STRICT, 0, 0])?;
            }
        }
        Ok(())
    }

    fn locks(&self) -> Result<()> {
        let r = self.main();
        for l in &self.p.locks {
            let st = format!("re-acquiring the {} lock of fd {}", l.kind, l.fd);
            if l.kind == "flock" {
                let op = if l.write { libc::LOCK_EX } else { libc::LOCK_SH } | libc::LOCK_NB;
                self.call(&st, r, libc::SYS_flock, &[l.fd as u64, op as u64])?;
                continue;
            }
            // struct flock: l_type (i16), l_whence (i16), pad, l_start, l_len, l_pid
            let mut b = vec![0u8; 32];
            let ty = if l.write { libc::F_WRLCK } else { libc::F_RDLCK } as i16;
            b[0..2].copy_from_slice(&ty.to_le_bytes());
            b[2..4].copy_from_slice(&(libc::SEEK_SET as i16).to_le_bytes());
            b[8..16].copy_from_slice(&l.start.to_le_bytes());
            b[16..24].copy_from_slice(&l.len.to_le_bytes());
            self.write_data(&st, 0, &b)?;
            let cmd = if l.kind == "ofd" { libc::F_OFD_SETLK } else { libc::F_SETLK };
            self.call(&st, r, libc::SYS_fcntl, &[l.fd as u64, cmd as u64, self.data(0)])?;
        }
        Ok(())
    }

    fn pdeath_and_creds(&self) -> Result<()> {
        let p = self.p;
        let c = p.creds.clone().unwrap_or_default();
        for t in &p.threads {
            let r = self.remote_of(t.tid);
            let st = format!("thread {} parent-death signal", t.tid);
            // under a session helper, whose death would fire it: set in finish()
            let sig = if self.pp.session_helper != 0 { 0 } else { t.pdeathsig };
            self.call(&st, r, libc::SYS_prctl, &[libc::PR_SET_PDEATHSIG as u64, sig as u64])?;
            if t.no_new_privs {
                self.call("no_new_privs", r, libc::SYS_prctl, &[libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0])?;
            }
        }
        let all_root = c.uids.iter().all(|u| *u == 0) && c.gids.iter().all(|g| *g == 0);
        let full_caps = c.cap_eff == c.cap_prm && c.cap_bnd == c.cap_prm;
        for t in &self.threads {
            let st = format!("credentials of thread {}", t.tid);
            // bounding set
            for cap in 0..64u64 {
                if c.cap_bnd & (1 << cap) == 0 && cap <= 40 {
                    let _ = t.call(libc::SYS_prctl, &[libc::PR_CAPBSET_DROP as u64, cap, 0, 0, 0]);
                }
            }
            // groups
            let g: Vec<u8> = c.groups.iter().flat_map(|x| x.to_le_bytes()).collect();
            if g.len() as u64 + DATA < TRAMP_LEN {
                self.write_data(&st, 0, &g)?;
                self.call(&st, t, libc::SYS_setgroups, &[c.groups.len() as u64, self.data(0)])?;
            }
            if all_root && full_caps && c.securebits == 0 {
                continue;
            }
            const SECBIT_NO_SETUID_FIXUP: u64 = 1 << 2;
            const SECBIT_KEEP_CAPS: u64 = 1 << 4;
            self.call(&st, t, libc::SYS_prctl, &[libc::PR_SET_SECUREBITS as u64, c.securebits as u64 | SECBIT_NO_SETUID_FIXUP | SECBIT_KEEP_CAPS])?;
            if c.gids.len() >= 3 {
                self.call(&st, t, libc::SYS_setresgid, &[c.gids[0] as u64, c.gids[1] as u64, c.gids[2] as u64])?;
            }
            if c.uids.len() >= 3 {
                self.call(&st, t, libc::SYS_setresuid, &[c.uids[0] as u64, c.uids[1] as u64, c.uids[2] as u64])?;
            }
            // capset: keep CAP_SETPCAP (8) effective until securebits are final
            let capset = |eff: u64, prm: u64, inh: u64| -> Result<()> {
                let mut b = Vec::new();
                b.extend_from_slice(&0x2008_0522u32.to_le_bytes());
                b.extend_from_slice(&0u32.to_le_bytes());
                for (e, p, i) in [(eff as u32, prm as u32, inh as u32), ((eff >> 32) as u32, (prm >> 32) as u32, (inh >> 32) as u32)] {
                    b.extend_from_slice(&e.to_le_bytes());
                    b.extend_from_slice(&p.to_le_bytes());
                    b.extend_from_slice(&i.to_le_bytes());
                }
                self.write_data(&st, 0, &b)?;
                self.call(&st, t, libc::SYS_capset, &[self.data(0), self.data(8)]).map(drop)
            };
            const SETPCAP: u64 = 1 << 8;
            let cur_prm = c.cap_prm | SETPCAP;
            capset(c.cap_eff | SETPCAP, cur_prm, c.cap_inh)?;
            self.call(&st, t, libc::SYS_prctl, &[libc::PR_SET_SECUREBITS as u64, c.securebits as u64])?;
            capset(c.cap_eff, c.cap_prm, c.cap_inh)?;
            for cap in 0..64u64 {
                if c.cap_amb & (1 << cap) != 0 {
                    self.call(&st, t, libc::SYS_prctl, &[libc::PR_CAP_AMBIENT as u64, libc::PR_CAP_AMBIENT_RAISE as u64, cap, 0, 0])?;
                }
            }
        }
        Ok(())
    }

    fn registers(&self) -> Result<()> {
        let p = self.p;
        let shared_pending_mask: u64 = p.shared_pending.iter().fold(0, |m, s| m | 1u64 << (s.signo - 1));
        for t in &p.threads {
            let st = format!("registers of thread {}", t.tid);
            let mut regs = ptrace::words_to_regs(&t.regs).ok_or_else(|| self.err(&st, "bad register record"))?;
            let own: u64 = t.pending.iter().fold(0, |m, s| m | 1u64 << (s.signo - 1));
            let deliverable = (own | shared_pending_mask) & !t.sigmask != 0;
            cpu::restore_fixup(&mut regs, deliverable);
            ptrace::setregs(t.tid, &regs).map_err(|e| self.err(&st, e))?;
            ptrace::set_xstate(t.tid, &t.xstate).map_err(|e| self.err(&st, format!("xstate: {e}")))?;
            ptrace::set_sigmask(t.tid, t.sigmask).map_err(|e| self.err(&st, format!("signal mask: {e}")))?;
        }
        Ok(())
    }

    /// epoll items, added from inside the process by its own fd numbers (see
    /// fdkinds/epoll.rs): after the carried fds are closed, every fd is at its number.
    fn epoll_items(&self) -> Result<()> {
        let r = self.main();
        for a in self.epoll {
            let st = format!("adding fd {} to epoll fd {}", a.tfd, a.epfd);
            self.write_data(&st, 0, &a.event)?;
            self.call(&st, r, libc::SYS_epoll_ctl, &[a.epfd as u64, libc::EPOLL_CTL_ADD as u64, a.tfd as u64, self.data(0)])?;
            if let Some(saved) = a.fired_oneshot {
                // deliver it once, which disarms it as it was; not ready: the saved word
                if self.call(&st, r, libc::SYS_epoll_wait, &[a.epfd as u64, self.data(16), 1, 0])? == 0 {
                    self.write_data(&st, 0, &saved)?;
                    self.call(&st, r, libc::SYS_epoll_ctl, &[a.epfd as u64, libc::EPOLL_CTL_MOD as u64, a.tfd as u64, self.data(0)])?;
                }
            }
        }
        Ok(())
    }
}
