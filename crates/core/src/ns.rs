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
//! Network, user, cgroup and time namespaces are refused with the kind named.

use std::collections::{HashMap, HashSet};

use stasis_image::model::Process;

use crate::error::{Error, Result};
use crate::procfs;

/// Kinds dump refuses when a process is in another namespace of that kind than stasis.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("net", "network namespaces are not supported yet"),
    ("user", "user namespaces are not supported yet"),
    ("cgroup", "cgroup namespaces are not supported yet"),
    ("time", "time namespaces are not supported yet"),
    ("uts", "UTS namespaces are not supported yet"),
    ("ipc", "IPC namespaces are not supported yet"),
];

/// The inode of a namespace link (`/proc/PID/ns/KIND` → `kind:[INODE]`).
pub fn ns_inode(pid: i32, kind: &str) -> Option<u64> {
    let l = procfs::readlink(&format!("/proc/{pid}/ns/{kind}")).ok()?;
    l.rsplit_once('[')?.1.trim_end_matches(']').parse().ok()
}

fn self_ns(kind: &str) -> Option<u64> {
    ns_inode(stasis_sys::sys::getpid(), kind)
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
    let path = if pid == tid { "status".to_string() } else { format!("task/{tid}/status") };
    let t = procfs::read(pid, &path).unwrap_or_default();
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
        let why = if i == 0 {
            let init = pidns[&p.pid].and_then(|ns| find_init(ns)).map(|h| format!(" (host pid {h})")).unwrap_or_default();
            format!(
                "it is pid {inner} inside its own PID namespace, whose init{init} is not part of the dump; dump from the namespace's init"
            )
        } else {
            format!("it is pid {inner} in a PID namespace {} levels below its parent's; not supported yet", lv as i64 - parent_lv as i64)
        };
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
            let l = procfs::readlink(&format!("/proc/{pid}/root/proc/1/ns/pid")).ok();
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
        let mounter = procs.iter().position(|p| {
            !p.zombie && p.mnt_ns == mnt && pidns[&p.pid] == Some(ns) && p.ns_pids.last().copied() == Some(1)
        });
        match mounter {
            Some(k) => procs[k].mount_proc = true,
            None if Some(ns) == self_pidns => {
                // A fresh procfs of our own PID namespace: the first process in it mounts.
                if let Some(k) = procs.iter().position(|p| p.mnt_ns == mnt) {
                    procs[k].mount_proc = true;
                }
            }
            None => {
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
