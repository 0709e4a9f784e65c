//! Namespaces a dumped tree may have of its own: UTS and IPC (the IPC objects themselves
//! are in ipc.rs). Every other namespace must still be stasis's (dump.rs refuses).
//!
//! Dump: each process records which UTS/IPC namespace it is in, as the id of an object
//! describing that namespace (interned by the inode of /proc/PID/ns/KIND), or 0 when it
//! is stasis's own. A UTS namespace's names are read by a helper thread that setns()'s
//! into it (setns of UTS and IPC namespaces is per thread).
//!
//! Restore: the first process of the tree in a namespace (the root, or a child whose
//! parent is in another one) unshares it in `restore::child_proc` before forking its
//! children, so they inherit it, and sets the host and domain names. A process that is
//! back in stasis's namespace under a parent in another one, or that shares a namespace
//! with a process that is not its parent, is refused (`check_tree`).

use std::fs::File;
use std::os::fd::AsFd;

use stasis_image::model::*;
use stasis_sys::sysv;

use crate::error::{Ctx, Error, Result};
use crate::objects::ObjectTable;
use crate::procfs;

/// Inode of /proc/PID/ns/KIND (`pid` None: stasis itself).
pub fn ns_ino(pid: Option<i32>, kind: &str) -> std::io::Result<u64> {
    let p = match pid {
        Some(p) => format!("/proc/{p}/ns/{kind}"),
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
        Some(p) => Some(File::open(format!("/proc/{p}/ns/{kind}")).ctx(p, || format!("opening /proc/PID/ns/{kind}"))?),
        None => None,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(fd) = &fd {
                sysv::setns(fd.as_fd(), nstype).ctx(who, || format!("joining its {kind} namespace (setns)"))?;
            }
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
                objs.intern(key, |_| Object { uts_ns: Some(UtsNsObj { ino: u, hostname, domainname }), ..Default::default() })
            }
        };
    }
    let mut ipc = 0;
    let i = ino("ipc", Some(pid))?;
    if i != ino("ipc", None)? {
        ipc = objs.intern(format!("ipcns:{i}"), |_| Object { ipc_ns: Some(IpcNsObj { ino: i, sysctls: Vec::new() }), ..Default::default() });
    }
    Ok((uts, ipc))
}

/// The tree's namespaces must be restorable by unsharing along the tree: a namespace
/// other than stasis's is entered by exactly one process (the root or a child whose
/// parent is elsewhere) and everyone in it descends from that process. Returns
/// (pid, why) for the first process that breaks this.
pub fn check_tree(procs: &[Process]) -> Option<(i32, String)> {
    for (kind, get) in [("UTS", (|p: &Process| p.uts_ns) as fn(&Process) -> u32), ("IPC", |p: &Process| p.ipc_ns)] {
        let mut opened: Vec<(u32, i32)> = Vec::new();
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
#[derive(Default, Clone)]
pub struct NsPlan {
    /// CLONE_NEWUTS / CLONE_NEWIPC to unshare (0: stay in the parent's).
    pub unshare: i32,
    pub hostname: Vec<u8>,
    pub domainname: Vec<u8>,
}

/// The plan of process `idx` of the image (its parent is already in the parent's
/// namespaces; the root's "parent" is the restorer).
pub fn plan(m: &stasis_image::Manifest, idx: usize) -> NsPlan {
    let p = &m.processes[idx];
    let parent = if idx == 0 { None } else { m.processes.iter().find(|q| q.pid == p.ppid) };
    let mut out = NsPlan::default();
    if p.zombie {
        return out;
    }
    if p.uts_ns != 0 && parent.map(|q| q.uts_ns) != Some(p.uts_ns) {
        out.unshare |= libc::CLONE_NEWUTS;
        if let Some(u) = m.object(p.uts_ns).and_then(|o| o.uts_ns.as_ref()) {
            out.hostname = u.hostname.clone();
            out.domainname = u.domainname.clone();
        }
    }
    if p.ipc_ns != 0 && parent.map(|q| q.ipc_ns) != Some(p.ipc_ns) {
        out.unshare |= libc::CLONE_NEWIPC;
    }
    out
}

/// In the forked child (no allocation): unshare and name the new UTS namespace.
/// Returns the failed step.
pub fn child_apply(p: &NsPlan) -> std::result::Result<(), &'static [u8]> {
    if p.unshare == 0 {
        return Ok(());
    }
    if sysv::child::unshare(p.unshare) < 0 {
        return Err(b"unshare of its UTS/IPC namespace");
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
