//! Namespaces of the dumped tree: which kinds stasis can carry, and what restore must
//! create.
//!
//! PID namespaces: every process records its pid at each level from the dumper's down
//! (`NSpid`). A process one level below its parent is the init of a new PID namespace;
//! restore creates it with clone3(CLONE_NEWPID, set_tid = {1, ..., outer pid}). Every
//! other process gets its pids at all levels back with set_tid.
//!
//! Mount namespaces are carried only when they differ from the dumper's by their /proc
//! (the `unshare --fork --pid --mount-proc` shape): restore unshares a new mount
//! namespace with private propagation and the init of the PID namespace that /proc
//! showed mounts a fresh procfs there. Anything else is refused, naming the mount.
//!
//! Network namespaces holding only `lo` (their sockets dumped from inside them), time
//! namespaces (clock offsets) and cgroup namespaces whose first process is at their root
//! are carried; user namespaces, and network namespaces with other interfaces, are
//! refused with the kind named.
//!
//! UTS and IPC namespaces (the IPC objects themselves are in ipc.rs):
//!
//! Dump: each process records which UTS/IPC namespace it is in, as the id of an object
//! describing that namespace (interned by the inode of /proc/PID/ns/KIND), or 0 when it
//! is stasis's own. A UTS namespace's names are read by a helper thread that setns()'s
//! into it (setns of UTS and IPC namespaces is per thread).
//!
//! Restore: the first process of the tree in a namespace (the root, or a child whose
//! parent is in another one) unshares it in `restore::spawn::child_proc` (`child_apply`)
//! before forking its
//! children, so they inherit it, and sets the host and domain names. A process that is
//! back in stasis's namespace under a parent in another one, or that shares a namespace
//! with a process that is not its parent, is refused (`check_tree`).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use stasis_image::model::*;
use stasis_sys::sysv;

use crate::error::{Ctx, Error, Result};
use crate::objects::ObjectTable;
use crate::procfs;

/// Inode of /proc/PID/ns/KIND (`pid` None: stasis itself).
pub fn ns_ino(pid: Option<i32>, kind: &str) -> std::io::Result<u64> {
    let p = match pid {
        Some(p) => format!("{}/ns/{kind}", crate::procfs::dir(p)),
        None => format!("/proc/self/ns/{kind}"),
    };
    let l = procfs::readlink(&p)?;
    l.rsplit_once('[')
        .and_then(|(_, r)| r.trim_end_matches(']').parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("{p}: unexpected link {l}")))
}

/// Runs `f` in a helper thread that first joins the `kind` namespace of `pid` (CLONE_NEW*
/// in `nstype`); `pid` None runs it in stasis's own namespace.
pub fn in_ns<T: Send>(pid: Option<i32>, kind: &str, nstype: i32, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let who = pid.unwrap_or(0);
    let fd = match pid {
        Some(p) => Some(File::open(format!("{}/ns/{kind}", crate::procfs::dir(p))).ctx(p, || format!("opening /proc/PID/ns/{kind}"))?),
        None => None,
    };
    in_ns_opt(who, fd.as_ref().map(|f| f.as_fd()), kind, nstype, f)
}

/// `in_ns_fd` when there is a namespace to join, else `f` right here.
pub fn in_ns_opt<T: Send>(who: i32, fd: Option<BorrowedFd<'_>>, kind: &str, nstype: i32, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    match fd {
        Some(fd) => in_ns_fd(who, fd, kind, nstype, f),
        None => f(),
    }
}

/// One new network namespace per namespace of the image (by its dump-time inode), held
/// by an fd: made by a helper thread that unshares it and brings `lo` up if it was.
/// Sockets are created in it, and the first process of the tree in it joins it.
pub fn create_netns(m: &stasis_image::Manifest) -> Result<HashMap<u64, OwnedFd>> {
    let mut out = HashMap::new();
    for p in m.processes.iter().filter(|p| !p.zombie && p.net_ns != 0) {
        if out.contains_key(&p.net_ns) {
            continue;
        }
        let (pid, lo_up) = (p.pid, p.lo_up);
        let fd = std::thread::scope(|s| {
            s.spawn(|| -> Result<OwnedFd> {
                if sysv::child::unshare(libc::CLONE_NEWNET) < 0 {
                    return Err(std::io::Error::last_os_error()).ctx(pid, || "creating its network namespace (unshare CLONE_NEWNET)".into());
                }
                if lo_up && stasis_sys::sys::child::loopback_up() < 0 {
                    return Err(std::io::Error::last_os_error()).ctx(pid, || "bringing up lo in its new network namespace".into());
                }
                File::open("/proc/thread-self/ns/net").map(OwnedFd::from).ctx(pid, || "opening its new network namespace".into())
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Refused { pid, why: "network namespace helper thread panicked".into() }))
        })?;
        out.insert(p.net_ns, fd);
    }
    Ok(out)
}

/// Runs `f` on a helper thread that joined the namespace `fd` (of process `who`).
pub fn in_ns_fd<T: Send>(who: i32, fd: BorrowedFd<'_>, kind: &str, nstype: i32, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            sysv::setns(fd, nstype).ctx(who, || format!("joining its {kind} namespace (setns)"))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(Error::Refused { pid: who, why: format!("helper thread in its {kind} namespace panicked") }))
    })
}

/// The UTS and IPC namespace objects of `pid` (0 = stasis's own), created on first sight.
pub fn dump_ns(pid: i32, objs: &mut ObjectTable) -> Result<(u32, u32)> {
    let ino = |kind: &str, p: Option<i32>| ns_ino(p, kind).ctx(pid, || format!("reading /proc/PID/ns/{kind}"));
    let mut uts = 0;
    let u = ino("uts", Some(pid))?;
    if u != ino("uts", None)? {
        let key = format!("utsns:{u}");
        uts = match objs.find(&key) {
            Some(id) => id,
            None => {
                let (hostname, domainname) =
                    in_ns(Some(pid), "uts", libc::CLONE_NEWUTS, || sysv::uname().ctx(pid, || "uname in its UTS namespace".into()))?;
                tracing::debug!(pid, hostname = %String::from_utf8_lossy(&hostname), "own UTS namespace");
                objs.intern(key, |_| Object { kind: Some(Kind::UtsNs(UtsNsObj { ino: u, hostname, domainname })), ..Default::default() })
            }
        };
    }
    let mut ipc = 0;
    let i = ino("ipc", Some(pid))?;
    if i != ino("ipc", None)? {
        ipc = objs.intern(format!("ipcns:{i}"), |_| Object { kind: Some(Kind::IpcNs(IpcNsObj { ino: i, sysctls: Vec::new() })), ..Default::default() });
    }
    Ok((uts, ipc))
}

/// The tree's namespaces must be restorable by unsharing along the tree: a namespace
/// other than stasis's is entered by exactly one process (the root or a child whose
/// parent is elsewhere) and everyone in it descends from that process. Returns
/// (pid, why) for the first process that breaks this.
pub fn check_tree(procs: &[Process]) -> Option<(i32, String)> {
    let kinds: [(&str, fn(&Process) -> u64); 4] =
        [("UTS", |p| p.uts_ns as u64), ("IPC", |p| p.ipc_ns as u64), ("network", |p| p.net_ns), ("cgroup", |p| p.cgroup_ns)];
    for (kind, get) in kinds {
        let mut opened: Vec<(u64, i32)> = Vec::new();
        for (i, p) in procs.iter().enumerate() {
            if p.zombie {
                continue;
            }
            let parent_ns = if i == 0 { 0 } else { procs.iter().find(|q| q.pid == p.ppid).map(get).unwrap_or(0) };
            let ns = get(p);
            if ns == parent_ns {
                continue;
            }
            if ns == 0 {
                return Some((
                    p.pid,
                    format!("it is back in stasis's own {kind} namespace while its parent {} is in another one (setns out of a namespace)", p.ppid),
                ));
            }
            if let Some((_, first)) = opened.iter().find(|(n, _)| *n == ns) {
                return Some((
                    p.pid,
                    format!("it shares the {kind} namespace of pid {first} but its parent {} is in another one (setns into a sibling's namespace)", p.ppid),
                ));
            }
            opened.push((ns, p.pid));
        }
    }
    None
}

/// What a new process does about namespaces before forking its children.
#[derive(Default, Clone, Debug)]
pub struct NsPlan {
    /// CLONE_NEWUTS / CLONE_NEWIPC / CLONE_NEWNET to unshare (0: stay in the parent's).
    pub unshare: i32,
    /// Joins this network namespace (carry slot of its fd, created by `create_netns`).
    pub net_slot: Option<usize>,
    /// Unshare a time namespace for its children with these offsets (monotonic s, ns,
    /// boottime s, ns) before forking them.
    pub time_children: Option<[i64; 4]>,
    /// Before unsharing a cgroup namespace: move itself into its cgroups (write "0" to
    /// these `cgroup.procs` files), which become the namespace's root. Filled by the
    /// restorer when it prepares (not part of the pure plan: it creates cgroups).
    pub cgroup_procs: Vec<std::ffi::CString>,
    pub hostname: Vec<u8>,
    pub domainname: Vec<u8>,
}

/// The plan of process `idx` of the image (its parent is already in the parent's
/// namespaces; the root's "parent" is the restorer).
/// `net_slot`: carry slot of each new network namespace's fd, by its dump-time inode.
pub fn plan(m: &stasis_image::Manifest, idx: usize, net_slot: &HashMap<u64, usize>) -> std::result::Result<NsPlan, String> {
    let p = &m.processes[idx];
    let parent = if idx == 0 { None } else { m.processes.iter().find(|q| q.pid == p.ppid) };
    let mut out = NsPlan::default();
    if p.zombie {
        return Ok(out);
    }
    if p.cgroup_ns != 0 && parent.map(|q| q.cgroup_ns) != Some(p.cgroup_ns) {
        out.unshare |= libc::CLONE_NEWCGROUP;
        // (its cgroups' files are resolved, and missing cgroups created, by prepare)
    }
    if p.uts_ns != 0 && parent.map(|q| q.uts_ns) != Some(p.uts_ns) {
        out.unshare |= libc::CLONE_NEWUTS;
        if let Some(u) = m.object(p.uts_ns).and_then(|o| o.uts_ns()) {
            out.hostname = u.hostname.clone();
            out.domainname = u.domainname.clone();
        }
    }
    if p.ipc_ns != 0 && parent.map(|q| q.ipc_ns) != Some(p.ipc_ns) {
        out.unshare |= libc::CLONE_NEWIPC;
    }
    if p.time_children_ns != p.time_ns && p.time_offsets.len() == 4 {
        let o = &p.time_offsets;
        out.time_children = Some([o[0], o[1], o[2], o[3]]);
    }
    if p.net_ns != 0 && parent.map(|q| q.net_ns) != Some(p.net_ns) {
        out.net_slot = Some(*net_slot.get(&p.net_ns).ok_or("its network namespace was not created")?);
    }
    Ok(out)
}

/// In the forked child (no allocation): unshare and name the new UTS namespace.
/// Returns the failed step.
pub fn child_apply(p: &NsPlan, tmp: &[i32]) -> std::result::Result<(), &'static [u8]> {
    if let Some(slot) = p.net_slot {
        if tmp.get(slot).is_none_or(|&fd| sysv::child::setns(fd, libc::CLONE_NEWNET) < 0) {
            return Err(b"joining its new network namespace (setns)");
        }
    }
    if let Some(off) = &p.time_children {
        if stasis_sys::sys::child::new_time_ns(off) < 0 {
            return Err(b"unsharing a time namespace for its children (clock offsets)");
        }
    }
    if p.unshare == 0 {
        return Ok(());
    }
    for f in &p.cgroup_procs {
        if stasis_sys::sys::child::write_file(f, b"0") < 0 {
            return Err(b"moving itself into its cgroups (the root of its cgroup namespace)");
        }
    }
    if sysv::child::unshare(p.unshare) < 0 {
        return Err(b"unshare of its UTS/IPC/network namespace");
    }
    if p.unshare & libc::CLONE_NEWUTS != 0 {
        if sysv::child::sethostname(&p.hostname) < 0 {
            return Err(b"sethostname in its new UTS namespace");
        }
        if sysv::child::setdomainname(&p.domainname) < 0 {
            return Err(b"setdomainname in its new UTS namespace");
        }
    }
    Ok(())
}



/// Kinds dump refuses when a process is in another namespace of that kind than stasis.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("user", "user namespaces"),
];

/// The inode of a namespace link (`/proc/PID/ns/KIND` → `kind:[INODE]`).
pub fn ns_inode(pid: i32, kind: &str) -> Option<u64> {
    ns_ino(Some(pid), kind).ok()
}

pub fn self_ns(kind: &str) -> Option<u64> {
    ns_ino(None, kind).ok()
}

/// A network namespace of the process's own (not stasis's): its inode and whether its
/// loopback is up. Only namespaces with nothing but `lo` are carried; their sockets are
/// dumped from inside them (`files::socket_netns`) and recreated in them.
pub fn dump_net(pid: i32) -> Result<(u64, bool)> {
    let Some(ino) = ns_inode(pid, "net") else { return Ok((0, false)) };
    if Some(ino) == self_ns("net") {
        return Ok((0, false));
    }
    let dev = procfs::read(pid, "net/dev").unwrap_or_default();
    let ifaces: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    if let Some(other) = ifaces.iter().find(|i| **i != "lo") {
        return Err(Error::Unsupported {
            pid,
            what: format!("its network namespace (net:[{ino}]) has the interface {other}; network namespaces with more than the loopback interface"),
        });
    }
    let flags = in_ns(Some(pid), "net", libc::CLONE_NEWNET, || {
        stasis_sys::sys::if_flags("lo").ctx(pid, || "reading the loopback flags in its network namespace".into())
    })?;
    Ok((ino, flags & libc::IFF_UP as i16 != 0))
}

/// Time namespaces: the process's own and its children's (`time_for_children`, which
/// `unshare(CLONE_NEWTIME)` changes), 0 = stasis's, and the children's clock offsets.
pub fn dump_time(pid: i32) -> Result<(u64, u64, Vec<i64>)> {
    let ours = self_ns("time");
    let own = ns_inode(pid, "time").filter(|i| Some(*i) != ours).unwrap_or(0);
    let children = ns_inode(pid, "time_for_children").filter(|i| Some(*i) != ours).unwrap_or(0);
    if own == 0 && children == 0 {
        return Ok((0, 0, Vec::new()));
    }
    let t = procfs::read(pid, "timens_offsets").ctx(pid, || "reading /proc/PID/timens_offsets".into())?;
    let mut off = vec![0i64; 4];
    for l in t.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        let k = match f.first().copied() {
            Some("monotonic") => 0,
            Some("boottime") => 2,
            _ => continue,
        };
        off[k] = f.get(1).and_then(|x| x.parse().ok()).unwrap_or(0);
        off[k + 1] = f.get(2).and_then(|x| x.parse().ok()).unwrap_or(0);
    }
    Ok((own, children, off))
}

/// The offsets restore must give the root's own time namespace, if it is not stasis's:
/// those of a process of the tree that creates its children in that namespace.
pub fn root_time_offsets(procs: &[Process]) -> Option<[i64; 4]> {
    let ns = procs.first()?.time_ns;
    if ns == 0 {
        return None;
    }
    let q = procs.iter().find(|q| !q.zombie && q.time_children_ns == ns && q.time_offsets.len() == 4)?;
    Some([q.time_offsets[0], q.time_offsets[1], q.time_offsets[2], q.time_offsets[3]])
}

/// Time namespaces restore can recreate: a child is in its parent's
/// `time_for_children`; a process switching its children to another namespace than its
/// own switches to a new one (not back to stasis's); the root's own namespace has known
/// offsets.
pub fn check_time(procs: &[Process]) -> Result<()> {
    for (i, p) in procs.iter().enumerate().filter(|(_, p)| !p.zombie) {
        if i > 0 {
            if let Some(parent) = procs.iter().find(|q| q.pid == p.ppid) {
                if p.time_ns != parent.time_children_ns {
                    return Err(Error::Unsupported {
                        pid: p.pid,
                        what: "its time namespace is not the one its parent creates children in (forked before the parent unshared one, or setns); not supported yet".into(),
                    });
                }
            }
        }
        if p.time_children_ns != p.time_ns && p.time_children_ns == 0 {
            return Err(Error::Unsupported { pid: p.pid, what: "it creates children back in stasis's time namespace (setns); not supported yet".into() });
        }
    }
    if procs.first().is_some_and(|r| r.time_ns != 0) && root_time_offsets(procs).is_none() {
        let pid = procs[0].pid;
        return Err(Error::Unsupported { pid, what: "its time namespace's clock offsets cannot be read (no process of the tree creates children in it)".into() });
    }
    Ok(())
}

/// A cgroup namespace of the process's own (0 = stasis's). Its root must be the
/// process's cgroups as they are now in every hierarchy (seen from inside it: "/"),
/// which holds for the process that unshared it unless it moved since; restore moves the
/// first process of the tree in it into its cgroups and unshares there.
pub fn dump_cgroup_ns(procs: &[Process], pid: i32, ppid: i32) -> Result<u64> {
    let Some(ino) = ns_inode(pid, "cgroup") else { return Ok(0) };
    if Some(ino) == self_ns("cgroup") {
        return Ok(0);
    }
    // the first process of the tree in it (tree order): its parent is elsewhere
    let parent_ns = procs.iter().find(|q| q.pid == ppid).map(|q| q.cgroup_ns);
    if parent_ns == Some(ino) {
        return Ok(ino);
    }
    let inside = in_ns(Some(pid), "cgroup", libc::CLONE_NEWCGROUP, || {
        procfs::read(pid, "cgroup").ctx(pid, || "reading /proc/PID/cgroup inside its cgroup namespace".into())
    })?;
    if let Some(l) = inside.lines().find(|l| !l.ends_with(":/")) {
        return Err(Error::Unsupported {
            pid,
            what: format!(
                "it is not at the root of its cgroup namespace (cgroup:[{ino}]) any more ({l} seen from inside); a cgroup namespace whose creator moved since"
            ),
        });
    }
    Ok(ino)
}

/// Refuses a live process that lives in a namespace kind stasis cannot recreate.
pub fn check_kinds(pid: i32) -> Result<()> {
    for (kind, why) in UNSUPPORTED {
        let theirs = ns_inode(pid, kind);
        if theirs.is_some() && theirs != self_ns(kind) {
            return Err(Error::Unsupported {
                pid,
                what: format!("it lives in another {kind} namespace than stasis ({kind}:[{}]); {why}", theirs.unwrap_or(0)),
            });
        }
    }
    Ok(())
}

/// `NSpid` (or `NStgid`-equivalent for a thread): pids from the dumper's level down.
pub fn ns_pids(pid: i32, tid: i32) -> Vec<i32> {
    // (the task's own: /proc/PID/status may be read through another thread, procfs::via)
    let t = procfs::read(pid, &format!("task/{tid}/status")).unwrap_or_default();
    t.lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|v| v.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![tid])
}

/// One line of mountinfo reduced to what identifies the mount for the comparison.
fn mounts(pid: i32) -> Vec<(String, String, String, String)> {
    let t = procfs::read(pid, "mountinfo").unwrap_or_default();
    t.lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(" - ")?;
            let f: Vec<&str> = a.split(' ').collect();
            let g: Vec<&str> = b.split(' ').collect();
            // (mount point, dev, root within the fs, fs type)
            Some((f.get(4)?.to_string(), f.get(2)?.to_string(), f.get(3)?.to_string(), g.first()?.to_string()))
        })
        .collect()
}

fn under_proc(mp: &str) -> bool {
    mp == "/proc" || mp.starts_with("/proc/")
}

/// Fills the namespace fields of every process (tree order, root first) and checks that
/// restore can recreate the shape: PID namespaces only below their init, mount
/// namespaces differing from ours by /proc only.
pub fn collect(procs: &mut [Process]) -> Result<()> {
    let self_pidns = self_ns("pid");
    let self_mnt = self_ns("mnt");
    // pid levels
    let levels: HashMap<i32, usize> = procs.iter().map(|p| (p.pid, p.ns_pids.len().max(1))).collect();
    let pidns: HashMap<i32, Option<u64>> = procs.iter().map(|p| (p.pid, ns_inode(p.pid, "pid"))).collect();
    for (i, p) in procs.iter().enumerate() {
        let lv = levels[&p.pid];
        let inner = *p.ns_pids.last().unwrap_or(&p.pid);
        let parent_lv = if i == 0 { 1 } else { levels.get(&p.ppid).copied().unwrap_or(1) };
        if lv == parent_lv {
            if i > 0 && !p.zombie && pidns[&p.pid].is_some() && pidns[&p.pid] != pidns.get(&p.ppid).copied().flatten() {
                return Err(Error::Unsupported {
                    pid: p.pid,
                    what: "it is in another PID namespace than its parent at the same depth (setns); not supported yet".into(),
                });
            }
            continue;
        }
        if lv == parent_lv + 1 && inner == 1 {
            continue; // init of a new PID namespace
        }
        if i == 0 {
            // supported from the init: a refusal that says how, not "not supported"
            let init = pidns[&p.pid].and_then(|ns| find_init(ns));
            let how = match init {
                Some(h) => format!("dump the namespace's init instead: stasis dump -t {h} (its whole tree is dumped)"),
                None => "dump the namespace's init instead (its whole tree is dumped)".into(),
            };
            return Err(Error::Refused { pid: p.pid, why: format!("it is pid {inner} inside its own PID namespace, whose init is not part of the dump; {how}") });
        }
        let why = format!("it is pid {inner} in a PID namespace {} levels below its parent's; not supported yet", lv as i64 - parent_lv as i64);
        return Err(Error::Unsupported { pid: p.pid, what: why });
    }
    // A live process that unshared a PID namespace for children it has not forked yet.
    let tree_ns: HashSet<u64> = pidns.values().flatten().copied().collect();
    for p in procs.iter().filter(|p| !p.zombie) {
        if let Some(pfc) = ns_inode(p.pid, "pid_for_children") {
            if Some(pfc) != pidns[&p.pid] && !tree_ns.contains(&pfc) && Some(pfc) != self_pidns {
                return Err(Error::Unsupported {
                    pid: p.pid,
                    what: format!("it unshared a PID namespace (pid:[{pfc}]) but has no process in it yet; not supported"),
                });
            }
        }
    }
    // mount namespaces
    let ours = mounts(stasis_sys::sys::getpid());
    let ours_set: HashSet<_> = ours.iter().filter(|m| !under_proc(&m.0)).cloned().collect();
    let our_proc = ours.iter().rev().find(|m| m.0 == "/proc").map(|m| m.1.clone());
    let mut checked: HashMap<u64, Option<u64>> = HashMap::new(); // mnt ns → pid ns its /proc shows
    for i in 0..procs.len() {
        if procs[i].zombie {
            continue;
        }
        let pid = procs[i].pid;
        let Some(mnt) = ns_inode(pid, "mnt") else { continue };
        if Some(mnt) == self_mnt {
            continue;
        }
        procs[i].mnt_ns = mnt;
        if checked.contains_key(&mnt) {
            continue;
        }
        let theirs = mounts(pid);
        let theirs_set: HashSet<_> = theirs.iter().filter(|m| !under_proc(&m.0)).cloned().collect();
        if let Some(d) = theirs_set.symmetric_difference(&ours_set).next() {
            let side = if theirs_set.contains(d) { "has" } else { "lacks" };
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "its mount namespace (mnt:[{mnt}]) {side} the {} mount at {} (dev {}); mount namespaces that differ beyond /proc are not supported yet",
                    d.3, d.0, d.1
                ),
            });
        }
        let their_proc = theirs.iter().rev().find(|m| m.0 == "/proc").map(|m| m.1.clone());
        let shows = if their_proc.is_some() && their_proc != our_proc {
            // Which PID namespace that procfs shows: its pid 1's.
            let l = procfs::readlink(&format!("{}/root/proc/1/ns/pid", crate::procfs::dir(pid))).ok();
            let ns = l.and_then(|l| l.rsplit_once('[').and_then(|x| x.1.trim_end_matches(']').parse().ok()));
            if ns.is_none() {
                return Err(Error::Unsupported { pid, what: "its /proc is a procfs of a PID namespace stasis cannot identify".into() });
            }
            ns
        } else {
            None
        };
        checked.insert(mnt, shows);
    }
    for (mnt, shows) in checked {
        let Some(ns) = shows else { continue };
        let init_of_ns = |p: &Process| !p.zombie && pidns[&p.pid] == Some(ns) && p.ns_pids.last().copied() == Some(1);
        let mounter = procs.iter().position(|p| init_of_ns(p) && p.mnt_ns == mnt);
        // or the init was born in that mount namespace, mounted /proc there and then
        // created a mount namespace of its own (nested `unshare --pid --mount-proc`)
        let born_there =
            procs.iter().position(|p| init_of_ns(p) && procs.iter().any(|q| q.pid == p.ppid && q.mnt_ns == mnt && !q.zombie));
        match (mounter, born_there) {
            (Some(k), _) => procs[k].mount_proc = true,
            (None, Some(k)) => procs[k].mount_proc_parent_ns = true,
            (None, None) if Some(ns) == self_pidns => {
                // A fresh procfs of our own PID namespace: the first process in it mounts.
                if let Some(k) = procs.iter().position(|p| p.mnt_ns == mnt) {
                    procs[k].mount_proc = true;
                }
            }
            (None, None) => {
                let pid = procs.iter().find(|p| p.mnt_ns == mnt).map(|p| p.pid).unwrap_or(0);
                return Err(Error::Unsupported {
                    pid,
                    what: format!("its /proc shows PID namespace pid:[{ns}], whose init is not part of the dump"),
                });
            }
        }
    }
    Ok(())
}

/// Host pid of the init (pid 1) of PID namespace `ns`, if visible.
fn find_init(ns: u64) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if ns_inode(pid, "pid") == Some(ns) && ns_pids(pid, pid).last() == Some(&1) {
            return Some(pid);
        }
    }
    None
}

/// Translates a pid of the dumper's level into the pid seen inside the namespace of
/// process `p` (for syscalls injected into it). Unknown pids are returned unchanged.
pub fn inner_pid(procs: &[Process], p: &Process, host: i32) -> i32 {
    let depth = p.ns_pids.len().max(1);
    if depth == 1 {
        return host;
    }
    for q in procs {
        if q.pid == host {
            return q.ns_pids.get(depth - 1).copied().unwrap_or(host);
        }
        for t in &q.threads {
            if t.tid == host {
                return t.ns_tids.get(depth - 1).copied().unwrap_or(host);
            }
        }
    }
    host
}

/// Runs `f` in a helper thread with a mount namespace of its own (private propagation)
/// whose root and working directory are an empty tmpfs; each directory of `dirs`
/// (absolute, or relative to that working directory) is made in it first. Files `f`
/// creates — a unix socket's file when it binds to a path — exist only there and vanish
/// with the thread, while the names the kernel keeps (getsockname, a sender's address)
/// are the paths as given: nothing on the host is created or changed, whatever the
/// path (a relative one, or one whose top directory does not exist). Nested calls work:
/// the tmpfs goes over /proc, which is made in the outer tmpfs when missing.
pub fn with_private_dirs<T: Send>(dirs: &[std::path::PathBuf], f: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
    use std::ffi::CString;
    std::thread::scope(|s| {
        s.spawn(|| -> std::io::Result<T> {
            let last = || std::io::Error::last_os_error();
            if stasis_sys::sys::child::unshare(libc::CLONE_FS | libc::CLONE_NEWNS) < 0 {
                return Err(last());
            }
            let root = CString::new("/").unwrap();
            if stasis_sys::sys::child::mount(None, &root, None, libc::MS_REC | libc::MS_PRIVATE) < 0 {
                return Err(last());
            }
            // any directory that exists would do: /proc does (inside an outer private
            // root it is made, in that tmpfs)
            std::fs::create_dir_all("/proc")?;
            let at = CString::new("/proc").unwrap();
            let tmpfs = CString::new("tmpfs").unwrap();
            if stasis_sys::sys::child::mount(Some(&tmpfs), &at, Some(&tmpfs), libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) < 0 {
                return Err(last());
            }
            // into the tmpfs (the lookup of /proc crosses the new mount), which becomes
            // this thread's root
            let dot = CString::new(".").unwrap();
            if stasis_sys::sys::child::chdir(&at) < 0 || stasis_sys::sys::child::chroot(&dot) < 0 {
                return Err(last());
            }
            for d in dirs {
                std::fs::create_dir_all(d)?;
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("private mount helper thread panicked")))
    })
}
