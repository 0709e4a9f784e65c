//! The restore plan: what each process of the tree is, forks, places, shares and unshares.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use stasis_image::model::*;
use stasis_image::Manifest;
use stasis_sys::sys;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::{files, ns, procfs};

use super::*;

/// One process of the tree to recreate.
pub(super) struct ProcPlan {
    pub(super) pid: i32,
    /// clone3 set_tid: its pid at every PID namespace level, innermost first.
    pub(super) set_tid: Vec<i32>,
    /// Extra clone3 flags (CLONE_NEWPID for the init of a new PID namespace).
    pub(super) clone_flags: u64,
    pub(super) exit_signal: i32,
    /// Unshares a new mount namespace (private propagation) before anything else.
    pub(super) new_mnt: bool,
    /// Mounts a fresh procfs on /proc (after entering its PID namespace).
    pub(super) mount_proc: bool,
    /// Mounts a fresh procfs on /proc before unsharing its own mount namespace.
    pub(super) mount_proc_parent_ns: bool,
    /// Shares its parent's fd table (CLONE_FILES): the parent places the fds.
    pub(super) shares_files: bool,
    /// Closes the carried fds and re-takes locks: false when a process built after it
    /// shares its fd table (that one does it, last).
    pub(super) closes_table: bool,
    /// Shares its parent's address space (CLONE_VM): the parent builds the memory.
    pub(super) shares_vm: bool,
    /// Unmaps the trampoline at the end: false when a process built after it shares its
    /// address space (that one does it, last).
    pub(super) unmaps_tramp: bool,
    pub(super) zombie: bool,
    pub(super) exit_status: i32,
    /// (target fd number, carry slot, cloexec)
    pub(super) assign: Vec<(i32, usize, bool)>,
    pub(super) exe_slot: usize,
    /// The image's executable is the same file as ours (dev, inode).
    pub(super) exe_is_ours: bool,
    pub(super) umask: u32,
    pub(super) cwd: CString,
    pub(super) root: CString,
    pub(super) comm: CString,
    pub(super) pgid: i32,
    pub(super) sid: i32,
    /// Its process group, whose leader had exited: it forks a helper with that pid which
    /// leads the group until every member joined, then is killed and reaped.
    pub(super) group_helper: i32,
    /// Its session, whose leader had exited (it was re-parented to a subreaper of the
    /// tree): its parent forks a helper with that pid, which calls setsid() and forks
    /// it; the helper is killed once the tree is built, re-parenting it again.
    pub(super) session_helper: i32,
    /// Indexes of its children in `Plan::procs`.
    pub(super) children: Vec<usize>,
    /// Forked by its parent before the parent calls setsid(): it stays in the session
    /// the parent was born in (it was forked before its parent led a session of its own).
    pub(super) before_setsid: bool,
    /// Namespaces it unshares (it is the first of the tree in them).
    pub(super) ns: ns::NsPlan,
}

/// Everything the new processes need, prepared before the first fork.
pub(super) struct Plan {
    /// fds in the restorer the new processes take over (index = carry slot).
    pub(super) carry: Vec<OwnedFd>,
    /// object id → carry slot, for mapped files and shared memory
    pub(super) map_slot: HashMap<u32, usize>,
    pub(super) base: i32,
    pub(super) tramp: u64,
    /// The tree, root first, parents before children (the image's order).
    pub(super) procs: Vec<ProcPlan>,
    /// Named FIFOs held open by the restorer until every new process has its fds.
    pub(super) fifo_keep: Vec<OwnedFd>,
    /// The root's session, when its leader had exited (and its pid is free): the
    /// intermediate parent takes that pid, calls setsid() and forks the root.
    pub(super) session_helper: i32,
}

pub(super) fn build_plan(m: &Manifest, tramp: u64, inherit: &crate::external::Inherited) -> Result<(Plan, Vec<sys::SharedAnon>)> {
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
pub(super) fn dead_leaders(m: &Manifest, procs: &mut [ProcPlan]) -> i32 {
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
pub(super) fn born_sessions(procs: &mut [ProcPlan]) {
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
