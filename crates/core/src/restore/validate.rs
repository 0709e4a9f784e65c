//! Semantic checks of an image, before anything is created.
//!
//! An image is untrusted input and restore runs as root: every cross-reference and every
//! count, size or string that restore acts on is checked here, against the image itself
//! and against the restorer (`Host`: its credentials and this kernel's limits, read once).
//! Nothing here may panic, loop or allocate beyond the manifest's own size.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use stasis_image::model::*;
use stasis_image::Manifest;

use crate::error::Result;
use crate::ns;

use super::*;

/// Processes in one image (ns::check_tree and the plan look parents up linearly).
pub(super) const MAX_PROCESSES: usize = 16384;
/// Threads of one process, and of the whole tree.
pub(super) const MAX_THREADS: usize = 65536;
pub(super) const MAX_TREE_THREADS: usize = 1 << 20;
/// Kernel's NGROUPS_MAX.
pub(super) const NGROUPS_MAX: usize = 65536;
/// Supplementary groups that fit the trampoline's data area (setgroups reads them there).
pub(super) const MAX_GROUPS: usize = {
    let fit = ((TRAMP_LEN - DATA) / 4) as usize;
    if fit < NGROUPS_MAX {
        fit
    } else {
        NGROUPS_MAX
    }
};
pub(super) const PATH_MAX: usize = 4096;
/// Kernel's BPF_MAXINSNS, and MAX_INSNS_PER_PATH over all filters of a thread (each
/// filter counting 4 more).
const BPF_MAXINSNS: usize = 4096;
const MAX_INSNS_PER_PATH: usize = (1 << 18) / 8;
/// auxv words: the kernel's saved_auxv holds far fewer.
const MAX_AUXV_WORDS: usize = 512;
/// Pending signals per thread or process (each one is a queued siginfo).
const MAX_PENDING: usize = 65536;
const MAX_POSIX_TIMERS: usize = 65536;
const MAX_LOCKS: usize = 1 << 20;
const MAX_CGROUP_LINES: usize = 64;
/// Saved cgroups (each cgroup of the tree and its ancestors), settings and file owners
/// per cgroup.
const MAX_CGROUP_DIRS: usize = 4096;
const MAX_CGROUP_SETTINGS: usize = 128;
/// RLIM_NLIMITS.
const RLIM_NLIMITS: i32 = 16;
/// Bytes of a CPU affinity mask (NR_CPUS at most 8192).
const MAX_AFFINITY: usize = 1024;
const MAX_XSTATE: usize = 1 << 16;
/// Thread and process names (TASK_COMM_LEN is 16; /proc escapes some bytes).
const MAX_COMM: usize = 64;
const MAX_MEMFD_NAME: usize = 249;
const MAX_SIGACTIONS: usize = 64;

/// The restorer and this kernel, as validate compares an image with them: credentials
/// from /proc/self/status, the last capability, the fd and mapping limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// real, effective, saved, filesystem
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
    pub groups: Vec<u32>,
    pub cap_eff: u64,
    pub cap_prm: u64,
    pub cap_inh: u64,
    pub cap_bnd: u64,
    pub cap_amb: u64,
    /// /proc/sys/kernel/cap_last_cap
    pub cap_last_cap: u32,
    /// /proc/sys/fs/nr_open: fd numbers are below it.
    pub nr_open: u64,
    /// /proc/sys/vm/max_map_count
    pub max_map_count: u64,
}

impl Host {
    /// Every capability of this kernel.
    pub fn all_caps(&self) -> u64 {
        if self.cap_last_cap >= 63 {
            u64::MAX
        } else {
            (1u64 << (self.cap_last_cap + 1)) - 1
        }
    }

    /// uid 0 (all four) with every capability effective, permitted and in the bounding set.
    pub fn privileged(&self) -> bool {
        let all = self.all_caps();
        !self.uids.is_empty()
            && self.uids.iter().all(|u| *u == 0)
            && self.cap_eff & all == all
            && self.cap_prm & all == all
            && self.cap_bnd & all == all
    }

    /// A fully privileged root on a kernel whose last capability is `last` (for checks that must not
    /// depend on who runs them: fuzzing, `inspect --plan`, tests).
    pub fn root(last: u32) -> Host {
        let mut h = Host {
            uids: vec![0; 4],
            gids: vec![0; 4],
            groups: Vec::new(),
            cap_eff: 0,
            cap_prm: 0,
            cap_inh: 0,
            cap_bnd: 0,
            cap_amb: 0,
            cap_last_cap: last,
            nr_open: 1 << 20,
            max_map_count: 65530,
        };
        let all = h.all_caps();
        (h.cap_eff, h.cap_prm, h.cap_bnd) = (all, all, all);
        h
    }

    /// Parses /proc/self/status and the three sysctls' contents.
    pub fn parse(status: &str, cap_last_cap: &str, nr_open: &str, max_map_count: &str) -> std::result::Result<Host, String> {
        let field = |k: &str| -> Option<&str> {
            status.lines().find_map(|l| l.split_once(':').filter(|(a, _)| *a == k).map(|(_, v)| v.trim()))
        };
        let ids = |k: &str| -> std::result::Result<Vec<u32>, String> {
            let v = field(k).ok_or_else(|| format!("no {k} line in /proc/self/status"))?;
            v.split_whitespace().map(|x| x.parse().map_err(|_| format!("{k}: {v:?} in /proc/self/status"))).collect()
        };
        let hex = |k: &str| -> std::result::Result<u64, String> {
            let v = field(k).ok_or_else(|| format!("no {k} line in /proc/self/status"))?;
            u64::from_str_radix(v, 16).map_err(|_| format!("{k}: {v:?} in /proc/self/status"))
        };
        let last: u32 = cap_last_cap.trim().parse().map_err(|_| format!("/proc/sys/kernel/cap_last_cap: {cap_last_cap:?}"))?;
        if last > 63 {
            return Err(format!("/proc/sys/kernel/cap_last_cap is {last}"));
        }
        let (uids, gids) = (ids("Uid")?, ids("Gid")?);
        if uids.len() != 4 || gids.len() != 4 {
            return Err("Uid/Gid lines of /proc/self/status without 4 ids".into());
        }
        Ok(Host {
            uids,
            gids,
            groups: ids("Groups")?,
            cap_eff: hex("CapEff")?,
            cap_prm: hex("CapPrm")?,
            cap_inh: hex("CapInh")?,
            cap_bnd: hex("CapBnd")?,
            cap_amb: hex("CapAmb")?,
            cap_last_cap: last,
            nr_open: nr_open.trim().parse().unwrap_or(1 << 20),
            max_map_count: max_map_count.trim().parse().unwrap_or(65530),
        })
    }

    fn read() -> std::result::Result<Host, String> {
        let rd = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("reading {p}: {e}"));
        Host::parse(&rd("/proc/self/status")?, &rd("/proc/sys/kernel/cap_last_cap")?, &rd("/proc/sys/fs/nr_open").unwrap_or_default(), &rd("/proc/sys/vm/max_map_count").unwrap_or_default())
    }
}

static HOST: OnceLock<std::result::Result<Host, String>> = OnceLock::new();

/// The restorer's `Host`, read on first use (validate, before anything is created).
pub(super) fn host() -> Result<&'static Host> {
    HOST.get_or_init(Host::read).as_ref().map_err(|why| refuse(format!("reading the restorer's credentials and limits: {why}")))
}

/// Semantic checks of a manifest whose checksums are fine: restore must never act on
/// (or panic over) an image that contradicts itself, or that asks for more than the
/// restorer has.
pub fn validate(m: &Manifest) -> Result<()> {
    validate_with(m, host()?)
}

/// `validate` against a given restorer.
pub fn validate_with(m: &Manifest, h: &Host) -> Result<()> {
    let bad = |why: String| refuse(format!("the image is inconsistent: {why}"));
    if m.processes.len() > MAX_PROCESSES {
        return Err(bad(format!("{} processes (at most {MAX_PROCESSES})", m.processes.len())));
    }
    if m.processes.first() != Some(&m.process) || m.process.zombie {
        return Err(bad("the first process record is not a live root".into()));
    }
    let objects = object_table(m).map_err(&bad)?;
    check_stop_reports(m).map_err(&bad)?;
    let mut by_pid: HashMap<i32, usize> = HashMap::with_capacity(m.processes.len());
    // every pid and tid of the tree, once
    let mut ids: HashSet<i32> = HashSet::new();
    let mut nthreads = 0usize;
    for (i, p) in m.processes.iter().enumerate() {
        if p.pid <= 0 || by_pid.contains_key(&p.pid) {
            return Err(bad(format!("pid {} (duplicate or invalid)", p.pid)));
        }
        let parent = by_pid.get(&p.ppid).and_then(|&k| m.processes.get(k));
        if i > 0 && !parent.is_some_and(|q| !q.zombie) {
            return Err(bad(format!("pid {} comes before its parent {}", p.pid, p.ppid)));
        }
        by_pid.insert(p.pid, i);
        tree_fields(p, i, if i == 0 { None } else { parent }).map_err(|why| bad(format!("pid {}: {why}", p.pid)))?;
        if p.zombie {
            if !ids.insert(p.pid) {
                return Err(bad(format!("pid {} is also a thread of another process", p.pid)));
            }
            check_str(&p.comm, MAX_COMM).map_err(|why| bad(format!("pid {}: name: {why}", p.pid)))?;
            if p.leader_exited || p.leader_exit_status != 0 {
                return Err(bad(format!("pid {} is a zombie, yet has a main thread that exited before the others", p.pid)));
            }
            continue;
        }
        nthreads = nthreads.saturating_add(p.threads.len());
        if nthreads > MAX_TREE_THREADS {
            return Err(bad(format!("more than {MAX_TREE_THREADS} threads in the tree")));
        }
        // an exited main thread is recreated (and exits again) with the pid
        if p.leader_exited && !ids.insert(p.pid) {
            return Err(bad(format!("pid {} is also a thread of another process", p.pid)));
        }
        for t in &p.threads {
            if !ids.insert(t.tid) {
                return Err(bad(format!("pid {}: thread id {} appears twice in the tree", p.pid, t.tid)));
            }
        }
        check_process(&objects, p, h)?;
    }
    check_objects(m, &objects, &m.objects).map_err(&bad)?;
    let pids: HashSet<i32> = m.processes.iter().map(|p| p.pid).collect();
    for o in &m.objects {
        if let Some(u) = o.unix() {
            check_msg_creds(&pids, u).map_err(|why| bad(format!("unix socket (object {}): {why}", o.id)))?;
        }
        if let Some(f) = o.file().filter(|f| f.in_proc) {
            check_proc_file(o.id, f, &by_pid, &m.processes).map_err(|why| bad(format!("file {} (object {}): {why}", f.path, o.id)))?;
        }
        if let Some(own) = &o.owner {
            crate::fown::validate(m, own).map_err(|why| bad(format!("signal-driven I/O of object {}: {why}", o.id)))?;
        }
    }
    check_late_fds(m).map_err(&bad)?;
    check_runs(m, &objects, &by_pid).map_err(&bad)?;
    check_net_lock(m).map_err(&bad)?;
    check_ttys(m, &objects).map_err(&bad)?;
    check_cgroup_dirs(m).map_err(&bad)?;
    if let Some((pid, why)) = ns::check_tree(&m.processes) {
        return Err(refuse(format!("pid {pid}: {why}")));
    }
    Ok(())
}

/// The network lock record (root process only): a table name the dump of this root
/// would have made, in namespaces the image knows (0 = the dumper's), each once, and
/// the format feature that makes older readers refuse the image.
/// A process's children with a stop not reported to it yet: children of it in the image,
/// each once.
fn check_stop_reports(m: &Manifest) -> std::result::Result<(), String> {
    let parent_of: HashMap<i32, i32> = m.processes.iter().map(|q| (q.pid, q.ppid)).collect();
    for p in &m.processes {
        let Some(a) = p.attrs.as_ref() else { continue };
        let mut seen = HashSet::new();
        if let Some(c) = a.stops_unreported.iter().find(|c| parent_of.get(c) != Some(&p.pid) || !seen.insert(**c)) {
            return Err(format!("pid {}: stop report of {c}, which is not a child of it (or named twice)", p.pid));
        }
    }
    Ok(())
}

fn check_net_lock(m: &Manifest) -> std::result::Result<(), String> {
    if m.processes.iter().skip(1).any(|p| !p.net_lock.is_empty() || !p.net_lock_ns.is_empty()) {
        return Err("a network lock recorded on a process other than the root".into());
    }
    let root = &m.process;
    if root.net_lock.is_empty() {
        return if root.net_lock_ns.is_empty() { Ok(()) } else { Err("network lock namespaces without a lock".into()) };
    }
    crate::netlock::check_table_name(root.pid, &root.net_lock)?;
    if !m.required_features.iter().any(|f| f == stasis_image::FEATURE_NETWORK_LOCK) {
        return Err("a network lock in an image that does not require the network-lock feature".into());
    }
    let known: HashSet<u64> = m.processes.iter().map(|p| p.net_ns).chain([0]).collect();
    let mut seen = HashSet::new();
    for ns in &root.net_lock_ns {
        if !known.contains(ns) || !seen.insert(*ns) {
            return Err(format!("network lock in network namespace {ns} (unknown or listed twice)"));
        }
    }
    if seen.is_empty() {
        return Err("a network lock in no network namespace".into());
    }
    Ok(())
}

/// Terminals (crate::tty): each terminal's values within what the kernel takes; a
/// description names a terminal of the image (an outside one never as its master, a
/// pty at most once as master); a process's controlling terminal is a slave
/// description of a pty of the image, taken by a live session leader of the session
/// the terminal records, one session per terminal; a foreground group is a group of
/// the image in that session.
fn check_ttys(m: &Manifest, objects: &HashMap<u32, &Object>) -> std::result::Result<(), String> {
    use crate::tty::{DEVICE, LDISC_MAX, MASTER, NCCS};
    let mut masters: HashSet<u32> = HashSet::new();
    for o in &m.objects {
        let id = o.id;
        if let Some(t) = o.tty() {
            check_str(&t.path, PATH_MAX).map_err(|why| format!("terminal (object {id}): path: {why}"))?;
            if t.cc.len() > NCCS || t.line != 0 || t.master_data.len() > LDISC_MAX || t.slave_data.len() > LDISC_MAX {
                return Err(format!(
                    "terminal (object {id}): {} control characters (at most {NCCS}), line discipline {} (only 0), or queues of {} and {} bytes (at most {LDISC_MAX})",
                    t.cc.len(),
                    t.line,
                    t.master_data.len(),
                    t.slave_data.len()
                ));
            }
            if t.device
                && (crate::tty::device_path(t.rdev).as_deref() != Some(t.path.as_str())
                    || t.external
                    || t.session != 0
                    || t.fg_pgrp != 0
                    || !t.master_data.is_empty()
                    || !t.slave_data.is_empty())
            {
                return Err(format!("terminal device (object {id}): {} as device {:#x}, with a session, queues or outside", t.path, t.rdev));
            }
            if [t.rows, t.cols, t.xpixel, t.ypixel].iter().any(|v| *v > u16::MAX as u32) {
                return Err(format!("terminal (object {id}): window size {}x{} ({}x{} px) out of range", t.rows, t.cols, t.xpixel, t.ypixel));
            }
            if t.session < 0 || t.fg_pgrp < 0 || (t.fg_pgrp > 0 && t.session == 0) {
                return Err(format!("terminal (object {id}): session {} with foreground group {}", t.session, t.fg_pgrp));
            }
            if t.fg_pgrp > 0 {
                let in_session = |p: &&Process| p.attrs.as_ref().is_some_and(|a| a.pgid == t.fg_pgrp && (t.external || a.sid == t.session));
                if !m.processes.iter().any(|p| in_session(&p)) {
                    return Err(format!("terminal (object {id}): foreground group {} is no process group of the image in its session", t.fg_pgrp));
                }
            }
        }
        if let Some(d) = o.tty_fd() {
            let t = objects.get(&d.tty_id).and_then(|o| o.tty()).ok_or_else(|| format!("terminal description (object {id}) refers to missing terminal {}", d.tty_id))?;
            if (d.side == DEVICE) != t.device {
                return Err(format!("terminal description (object {id}): side {} of {}", d.side, if t.device { "a terminal device" } else { "a pty" }));
            }
            if !(MASTER..=DEVICE).contains(&d.side) || (d.side == MASTER && t.external) {
                return Err(format!("terminal description (object {id}): side {} of {}", d.side, if t.external { "an outside terminal" } else { "a pty" }));
            }
            if d.side == MASTER && !masters.insert(d.tty_id) {
                return Err(format!("terminal {}: two open descriptions of its master", d.tty_id));
            }
            if crate::fdkinds::unkept_flags(d.flags).is_some() || d.flags & libc::O_ACCMODE as u32 > 2 {
                return Err(format!("terminal description (object {id}): file flags {}", crate::fdkinds::open_flags(d.flags)));
            }
        }
    }
    let mut taken: HashSet<u32> = HashSet::new();
    for p in m.processes.iter().filter(|p| p.ctty != 0) {
        let d = objects.get(&p.ctty).and_then(|o| o.tty_fd()).filter(|d| d.side != MASTER && d.side != DEVICE);
        let t = d.and_then(|d| objects.get(&d.tty_id)).and_then(|o| o.tty()).filter(|t| !t.external && !t.device);
        let (Some(d), Some(t)) = (d, t) else {
            return Err(format!("pid {}: controlling terminal object {} is not a slave description of a pty of the image", p.pid, p.ctty));
        };
        let leads = p.attrs.as_ref().is_some_and(|a| a.sid == p.pid);
        if p.zombie || !leads || t.session != p.pid || !taken.insert(d.tty_id) {
            return Err(format!("pid {}: takes terminal {} as controlling terminal but is not the live leader of its session {} (or a second one)", p.pid, d.tty_id, t.session));
        }
    }
    Ok(())
}

/// The saved cgroups (root process only): each a cgroup (below its hierarchy's root)
/// that a process of the image lives in or below, once, parents first; only files of
/// the table restore knows, once each, with values those files take; owners that are
/// root or an id some process of the image has (restore gives a cgroup it creates to no
/// one else).
fn check_cgroup_dirs(m: &Manifest) -> std::result::Result<(), String> {
    use crate::cgroup;
    if m.processes.iter().skip(1).any(|p| !p.cgroup_dirs.is_empty()) {
        return Err("saved cgroups on a process other than the root".into());
    }
    let dirs = &m.process.cgroup_dirs;
    if dirs.len() > MAX_CGROUP_DIRS {
        return Err(format!("{} saved cgroups (at most {MAX_CGROUP_DIRS})", dirs.len()));
    }
    if dirs.is_empty() {
        return Ok(());
    }
    // (key, path) of every cgroup a live process is in, and every ancestor of one; and
    // (key, path + "/") of each such cgroup but a root, below which cgroups may be saved
    let mut allowed: HashSet<(String, String)> = HashSet::new();
    let mut below: Vec<(String, String)> = Vec::new();
    let mut uids: HashSet<u32> = HashSet::from([0]);
    let mut gids: HashSet<u32> = HashSet::from([0]);
    for p in m.processes.iter().filter(|p| !p.zombie) {
        for l in &p.cgroups {
            if let Some((key, path)) = cgroup::parse(l) {
                if path != "/" {
                    below.push((key.clone(), format!("{path}/")));
                }
                for a in cgroup::ancestors(&path) {
                    allowed.insert((key.clone(), a));
                }
            }
        }
        if let Some(c) = &p.creds {
            uids.extend(c.uids.iter().copied());
            gids.extend(c.gids.iter().chain(&c.groups).copied());
        }
    }
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut descendants = 0usize;
    for d in dirs {
        let what = format!("saved cgroup {}:{}", d.controllers, d.path);
        check_str(&d.controllers, 256).map_err(|why| format!("{what}: {why}"))?;
        check_str(&d.path, PATH_MAX).map_err(|why| format!("{what}: {why}"))?;
        let under = below.iter().any(|(k, p)| *k == d.controllers && d.path.starts_with(p.as_str()));
        if d.path == "/" || !cgroup::plain_path(&d.path) || !(under || allowed.contains(&(d.controllers.clone(), d.path.clone()))) {
            return Err(format!("{what}: not a cgroup below the root that a process of the image is in, under or above"));
        }
        if under {
            descendants += 1;
            if descendants > cgroup::MAX_DESCENDANTS {
                return Err(format!("{what}: more than {} cgroups below the processes' own", cgroup::MAX_DESCENDANTS));
            }
        }
        if !seen.insert((&d.controllers, &d.path)) {
            return Err(format!("{what}: saved twice"));
        }
        if let Some((parent, _)) = d.path.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
            // a parent saved later would be created after its child
            if let Some(i) = dirs.iter().position(|e| e.controllers == d.controllers && e.path == parent) {
                if !seen.contains(&(dirs[i].controllers.as_str(), dirs[i].path.as_str())) {
                    return Err(format!("{what}: saved before its parent"));
                }
            }
        }
        if d.mode > 0o7777 || !uids.contains(&d.uid) || !gids.contains(&d.gid) {
            return Err(format!("{what}: mode {:o}, owner {}:{} (an owner must be root or a uid/gid of the image's processes)", d.mode, d.uid, d.gid));
        }
        if d.settings.len() > MAX_CGROUP_SETTINGS || d.file_owners.len() > cgroup::MAX_FILE_OWNERS {
            return Err(format!("{what}: {} settings, {} file owners", d.settings.len(), d.file_owners.len()));
        }
        let mut files: HashSet<&str> = HashSet::new();
        for s in &d.settings {
            let Some((_, how)) = cgroup::known(&d.controllers, &s.file) else {
                return Err(format!("{what}: {:?} is not a controller file restore writes in that hierarchy", s.file));
            };
            if !files.insert(&s.file) {
                return Err(format!("{what}: {} saved twice", s.file));
            }
            cgroup::check_value(how, &s.value).map_err(|why| format!("{what}: {}: {why}", s.file))?;
        }
        let mut owned: HashSet<&str> = HashSet::new();
        for o in &d.file_owners {
            if !cgroup::plain_file_name(&o.file) || !owned.insert(&o.file) {
                return Err(format!("{what}: owner of {:?} (not a file name, or twice)", o.file));
            }
            if o.mode > 0o777 || !uids.contains(&o.uid) || !gids.contains(&o.gid) {
                return Err(format!("{what}: {}: mode {:o}, owner {}:{} (an owner must be root or a uid/gid of the image's processes)", o.file, o.mode, o.uid, o.gid));
            }
        }
    }
    Ok(())
}

/// Objects by id; ids are unique.
fn object_table(m: &Manifest) -> std::result::Result<HashMap<u32, &Object>, String> {
    let mut t = HashMap::with_capacity(m.objects.len());
    for o in &m.objects {
        if o.id == 0 || t.insert(o.id, o).is_some() {
            return Err(format!("object id {} (zero or duplicate)", o.id));
        }
    }
    Ok(t)
}

/// A string restore turns into a C string: no NUL, at most `max` bytes.
fn check_str(s: &str, max: usize) -> std::result::Result<(), String> {
    if s.len() > max {
        return Err(format!("{} bytes (at most {max})", s.len()));
    }
    if s.contains('\0') {
        return Err(format!("{:?} contains a NUL byte", s));
    }
    Ok(())
}

/// A path restore opens, creates or changes into: absolute, no NUL, at most PATH_MAX.
fn check_path(s: &str) -> std::result::Result<(), String> {
    check_str(s, PATH_MAX - 1)?;
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not an absolute path"));
    }
    Ok(())
}

/// A /proc/PID/cgroup line, `ID:CONTROLLERS:PATH`: ID a number, CONTROLLERS without '/',
/// PATH absolute without empty, `.` or `..` components (it is joined with a hierarchy's
/// mount point and created).
pub fn check_cgroup_line(l: &str) -> std::result::Result<(), String> {
    check_str(l, PATH_MAX).map_err(|why| format!("cgroup line: {why}"))?;
    let mut it = l.splitn(3, ':');
    let (Some(id), Some(ctl), Some(path)) = (it.next(), it.next(), it.next()) else {
        return Err(format!("cgroup line {l:?} is not ID:CONTROLLERS:PATH"));
    };
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || ctl.contains('/') {
        return Err(format!("cgroup line {l:?} is not ID:CONTROLLERS:PATH"));
    }
    if !path.starts_with('/') {
        return Err(format!("cgroup {l:?}: the path is not absolute"));
    }
    if !crate::cgroup::plain_path(path) {
        return Err(format!("cgroup {l:?}: the path has an empty, '.' or '..' component"));
    }
    Ok(())
}

/// Capability numbers set in `bits`, for messages.
fn cap_list(bits: u64) -> String {
    (0..64).filter(|c| bits & (1u64 << c) != 0).map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

/// What a process's credentials ask for that the restorer does not hold (None: nothing).
/// A restorer that is uid 0 with every capability holds everything; any other gives only
/// ids it has (uids among its uids, gids and groups among its gids and groups, unless it
/// has CAP_SETUID / CAP_SETGID in its permitted set, with which it may take any) and
/// capabilities it has (effective, permitted and ambient within its permitted set,
/// inheritable within its inheritable and permitted sets, bounding within its bounding set).
pub fn creds_beyond_restorer(c: &Creds, h: &Host) -> Option<String> {
    if h.privileged() {
        return None;
    }
    // CAP_SETUID (CAP_SETGID) in the permitted set: the restorer may take any uid (gid)
    const CAP_SETGID: u64 = 1 << 6;
    const CAP_SETUID: u64 = 1 << 7;
    let any_uid = h.cap_prm & CAP_SETUID != 0;
    let any_gid = h.cap_prm & CAP_SETGID != 0;
    if let Some(u) = c.uids.iter().find(|u| !any_uid && !h.uids.contains(u)) {
        return Some(format!("uid {u}, which the restorer (uids {:?}, no CAP_SETUID) does not have", h.uids));
    }
    let has_gid = |g: &u32| any_gid || h.gids.contains(g) || h.groups.contains(g);
    if let Some(g) = c.gids.iter().find(|g| !has_gid(g)) {
        return Some(format!("gid {g}, which the restorer (gids {:?}, groups {:?}) does not have", h.gids, h.groups));
    }
    if let Some(g) = c.groups.iter().find(|g| !has_gid(g)) {
        return Some(format!("supplementary group {g}, which the restorer (gids {:?}, groups {:?}) does not have", h.gids, h.groups));
    }
    for (set, want, have) in [
        ("effective", c.cap_eff, h.cap_prm),
        ("permitted", c.cap_prm, h.cap_prm),
        ("inheritable", c.cap_inh, h.cap_inh | h.cap_prm),
        ("ambient", c.cap_amb, h.cap_prm),
        ("bounding", c.cap_bnd, h.cap_bnd),
    ] {
        if want & !have != 0 {
            return Some(format!("capabilities {} in its {set} set, which the restorer does not have", cap_list(want & !have)));
        }
    }
    None
}

/// A thread's scheduling flags and SCHED_DEADLINE parameters, as the kernel's own
/// checks want them (runtime at least 1024 ns, runtime <= deadline <= period, none
/// above 2^63): an image may not make the restore fail half-way on them.
fn check_sched(t: &Thread) -> std::result::Result<(), String> {
    if t.sched_flags & !crate::task::SCHED_FLAGS_KEPT != 0 {
        return Err(format!("scheduling flags {:#x}", t.sched_flags));
    }
    if t.sched_policy & !0x4000_0000 != stasis_sys::kabi::SCHED_DEADLINE {
        return Ok(());
    }
    let period = if t.sched_period == 0 { t.sched_deadline } else { t.sched_period };
    if t.sched_runtime < 1024 || t.sched_runtime > t.sched_deadline || t.sched_deadline > period || period >= 1 << 63 {
        return Err(format!(
            "SCHED_DEADLINE runtime {} ns, deadline {} ns, period {} ns (1024 <= runtime <= deadline <= period < 2^63)",
            t.sched_runtime, t.sched_deadline, t.sched_period
        ));
    }
    Ok(())
}

/// The credentials record: present, well-formed, within this kernel and within the restorer.
fn check_creds(p: &Process, h: &Host) -> Result<()> {
    let c = p.creds.as_ref().ok_or_else(|| refuse(format!("the image is inconsistent: pid {}: no credentials record", p.pid)))?;
    check_creds_of(&format!("pid {}", p.pid), c, h)?;
    for t in p.threads.iter().filter(|t| t.creds.is_some()) {
        check_creds_of(&format!("pid {} thread {}", p.pid, t.tid), t.creds.as_ref().unwrap_or(c), h)?;
    }
    Ok(())
}

/// One credentials record (a process's or a thread's own), `who` naming its holder.
fn check_creds_of(who: &str, c: &Creds, h: &Host) -> Result<()> {
    let bad = |why: String| refuse(format!("the image is inconsistent: {who}: {why}"));
    if !(3..=4).contains(&c.uids.len()) || !(3..=4).contains(&c.gids.len()) {
        return Err(bad(format!("credentials with {} uids and {} gids (3 or 4 each)", c.uids.len(), c.gids.len())));
    }
    if c.groups.len() > MAX_GROUPS {
        return Err(bad(format!(
            "{} supplementary groups (at most {MAX_GROUPS}: NGROUPS_MAX is {NGROUPS_MAX}, and they must fit the restore's data area)",
            c.groups.len()
        )));
    }
    let all = h.all_caps();
    for (set, v) in [("effective", c.cap_eff), ("permitted", c.cap_prm), ("inheritable", c.cap_inh), ("bounding", c.cap_bnd), ("ambient", c.cap_amb)] {
        if v & !all != 0 {
            return Err(bad(format!(
                "capabilities {} in its {set} set are beyond this kernel's last capability ({})",
                cap_list(v & !all),
                h.cap_last_cap
            )));
        }
    }
    if c.cap_eff & !c.cap_prm != 0 || c.cap_amb & !(c.cap_prm & c.cap_inh) != 0 {
        return Err(bad("effective or ambient capabilities outside its permitted (and inheritable) set".into()));
    }
    if c.securebits > 0xff {
        return Err(bad(format!("securebits {:#x}", c.securebits)));
    }
    if let Some(why) = creds_beyond_restorer(c, h) {
        return Err(refuse(format!("{who} asks for {why}")));
    }
    Ok(())
}

/// The tree-shape fields of a process: pid levels, sharing flags, exit signal.
fn tree_fields(p: &Process, i: usize, parent: Option<&Process>) -> std::result::Result<(), String> {
    let depth = p.ns_pids.len().max(1);
    if !p.ns_pids.is_empty() && (p.ns_pids[0] != p.pid || p.ns_pids.len() > 32 || p.ns_pids.iter().any(|x| *x <= 0)) {
        return Err(format!("PID-namespace pids {:?}", p.ns_pids));
    }
    let parent_depth = parent.map(|q| q.ns_pids.len().max(1)).unwrap_or(1);
    if depth != parent_depth && !(depth == parent_depth + 1 && p.ns_pids.last() == Some(&1)) {
        return Err(format!("{depth} PID-namespace levels under a parent with {parent_depth}"));
    }
    if p.threads.iter().any(|t| !t.ns_tids.is_empty() && (t.ns_tids.len() != depth || t.ns_tids[0] != t.tid || t.ns_tids.iter().any(|x| *x <= 0))) {
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
    let parent_mnt = parent.map(|q| q.mnt_ns).unwrap_or(0);
    if p.mount_proc_parent_ns && (parent_mnt == 0 || depth != parent_depth + 1) {
        return Err("mounts /proc in its parent's mount namespace, which is not a new one".into());
    }
    if p.time_offsets.len() > 4 {
        return Err(format!("{} time-namespace offsets", p.time_offsets.len()));
    }
    Ok(())
}


/// A POSIX timer's notification: SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD, optionally
/// aimed at one thread (SIGEV_THREAD_ID), which must be a thread of the same process
/// (the kernel takes only those); a process-wide one names the process itself.
fn check_timer_notify(p: &Process, t: &PosixTimer) -> std::result::Result<(), String> {
    let kind = t.notify & !libc::SIGEV_THREAD_ID;
    if ![libc::SIGEV_SIGNAL, libc::SIGEV_NONE, libc::SIGEV_THREAD].contains(&kind) {
        return Err(format!("notification {}", t.notify));
    }
    if kind != libc::SIGEV_NONE && !(1..=64).contains(&t.signo) {
        return Err(format!("signal {}", t.signo));
    }
    if t.notify & libc::SIGEV_THREAD_ID != 0 {
        if !p.threads.iter().any(|th| th.tid == t.notify_tid) {
            return Err(format!("aimed at thread {}, which is not a thread of the process", t.notify_tid));
        }
    } else if t.notify_tid != p.pid && t.notify_tid != 0 {
        return Err(format!("signals process {}, not its own", t.notify_tid));
    }
    Ok(())
}

fn check_siginfo(s: &SigInfo) -> bool {
    (1..=64).contains(&s.signo) && s.raw.len() == 128
}

/// The main thread comes first; or it had exited (`leader_exited`): then at least one
/// other thread lives, none has the pid, and its exit status is one SYS_exit gives.
fn check_leader(p: &Process) -> std::result::Result<(), String> {
    if !p.leader_exited {
        if p.leader_exit_status != 0 {
            return Err(format!("an exit status ({:#x}) for its main thread, which has not exited", p.leader_exit_status));
        }
        return match p.threads.first() {
            Some(t) if t.tid == p.pid => Ok(()),
            _ => Err("the first thread is not the main thread".into()),
        };
    }
    if p.threads.is_empty() {
        return Err("its main thread has exited and it has no other thread".into());
    }
    if p.threads.iter().any(|t| t.tid == p.pid) {
        return Err("its main thread has exited, yet a thread has its id".into());
    }
    if p.leader_exit_status & !0xff00 != 0 {
        return Err(format!("main thread's exit status {:#x} is not one SYS_exit gives (code << 8)", p.leader_exit_status));
    }
    Ok(())
}

fn check_process(objects: &HashMap<u32, &Object>, p: &Process, h: &Host) -> Result<()> {
    let bad = |why: String| refuse(format!("the image is inconsistent: pid {}: {why}", p.pid));
    let object = |id: u32| objects.get(&id).copied();
    check_str(&p.comm, MAX_COMM).map_err(|why| bad(format!("name: {why}")))?;
    check_leader(p).map_err(bad)?;
    if p.threads.len() > MAX_THREADS {
        return Err(bad(format!("{} threads (at most {MAX_THREADS})", p.threads.len())));
    }
    for t in &p.threads {
        if t.tid <= 0 || t.regs.len() != stasis_sys::ptrace::NREGS || t.xstate.is_empty() || t.xstate.len() > MAX_XSTATE {
            return Err(bad(format!("thread {} has no usable register record", t.tid)));
        }
        if t.pending.len() > MAX_PENDING || t.pending.iter().any(|s| !check_siginfo(s)) {
            return Err(bad(format!("thread {} has a malformed pending signal, or more than {MAX_PENDING}", t.tid)));
        }
        check_str(&t.comm, MAX_COMM).map_err(|why| bad(format!("thread {} name: {why}", t.tid)))?;
        if let Some(why) = t.mempolicy.as_ref().and_then(crate::numa::invalid) {
            return Err(bad(format!("thread {}: {why}", t.tid)));
        }
        if t.affinity.len() > MAX_AFFINITY {
            return Err(bad(format!("thread {}: CPU affinity mask of {} bytes (at most {MAX_AFFINITY})", t.tid, t.affinity.len())));
        }
        if !(0..=2).contains(&t.seccomp_mode) || (t.seccomp_mode != 2 && !t.seccomp_filters.is_empty()) {
            return Err(bad(format!("thread {}: seccomp mode {} with {} filters", t.tid, t.seccomp_mode, t.seccomp_filters.len())));
        }
        let mut insns = 0usize;
        for f in &t.seccomp_filters {
            if f.is_empty() || f.len() % 8 != 0 || f.len() / 8 > BPF_MAXINSNS {
                return Err(bad(format!("thread {}: seccomp filter of {} bytes (1 to {BPF_MAXINSNS} 8-byte instructions)", t.tid, f.len())));
            }
            insns = insns.saturating_add(f.len() / 8 + 4);
        }
        if insns > MAX_INSNS_PER_PATH {
            return Err(bad(format!("thread {}: seccomp filters of {insns} instructions in all (at most {MAX_INSNS_PER_PATH})", t.tid)));
        }
        if let Some(fs) = &t.own_fs {
            check_path(&fs.cwd).map_err(|why| bad(format!("thread {}: its own working directory: {why}", t.tid)))?;
            if fs.umask > 0o777 {
                return Err(bad(format!("thread {}: umask {:o}", t.tid, fs.umask)));
            }
        }
        check_sched(t).map_err(|why| bad(format!("thread {}: {why}", t.tid)))?;
        if t.mce_kill.is_some_and(|v| !(0..=2).contains(&v)) {
            return Err(bad(format!("thread {}: machine-check kill policy {:?} (0 late, 1 early, 2 default)", t.tid, t.mce_kill)));
        }
    }
    if let Some(n) = p.attrs.as_ref().and_then(|a| a.autogroup_nice).filter(|n| !(-20..=19).contains(n)) {
        return Err(bad(format!("autogroup nice {n} (-20 to 19)")));
    }
    if p.shared_pending.len() > MAX_PENDING
        || p.shared_pending.iter().any(|s| !check_siginfo(s))
        || p.sigactions.len() > MAX_SIGACTIONS
        || p.sigactions.iter().any(|a| !(1..=64).contains(&a.signo))
    {
        return Err(bad("a signal number outside 1..64, or too many pending signals".into()));
    }
    let mut seen = 0u64;
    for a in &p.sigactions {
        let bit = 1u64 << (a.signo - 1);
        if seen & bit != 0 {
            return Err(bad(format!("two handlers for signal {}", a.signo)));
        }
        seen |= bit;
    }
    if p.itimers.len() > 3 || p.itimers.iter().enumerate().any(|(i, t)| !(0..=2).contains(&t.which) || p.itimers[..i].iter().any(|u| u.which == t.which)) {
        return Err(bad("itimers other than one each of ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF".into()));
    }
    if p.posix_timers.len() > MAX_POSIX_TIMERS {
        return Err(bad(format!("{} POSIX timers (at most {MAX_POSIX_TIMERS})", p.posix_timers.len())));
    }
    let mut timer_ids = HashSet::new();
    for t in &p.posix_timers {
        if t.id < 0 || !timer_ids.insert(t.id) || !(0..=64).contains(&t.signo) {
            return Err(bad(format!("POSIX timer {} (duplicate or invalid id, or signal {})", t.id, t.signo)));
        }
        check_timer_notify(p, t).map_err(|why| bad(format!("POSIX timer {}: {why}", t.id)))?;
    }
    if p.rlimits.len() > RLIM_NLIMITS as usize {
        return Err(bad(format!("{} resource limits", p.rlimits.len())));
    }
    let mut rl_seen = 0u32;
    for rl in &p.rlimits {
        if !(0..RLIM_NLIMITS).contains(&rl.resource) || rl_seen & (1 << rl.resource) != 0 || rl.cur > rl.max {
            return Err(bad(format!("resource limit {} ({}/{}): unknown resource, twice, or soft above hard", rl.resource, rl.cur, rl.max)));
        }
        rl_seen |= 1 << rl.resource;
    }
    let mm = p.mm.as_ref().ok_or_else(|| bad("no memory layout record".into()))?;
    if object(mm.exe_object).and_then(|o| o.mapped_file()).is_none() {
        return Err(bad("no executable object".into()));
    }
    if mm.auxv.len() > MAX_AUXV_WORDS || mm.auxv.len() % 2 != 0 {
        return Err(bad(format!("auxv of {} words (an even number, at most {MAX_AUXV_WORDS})", mm.auxv.len())));
    }
    let known = crate::task::MEMBARRIER_REGISTRATIONS.iter().fold(0, |a, (_, r)| a | r);
    if mm.membarrier & !known != 0 {
        return Err(bad(format!("membarrier registrations {:#x} (known: {known:#x})", mm.membarrier)));
    }
    if mm.lock_future != 0 && !crate::mem::LOCK_FUTURE_FLAGS.contains(&mm.lock_future) {
        return Err(bad(format!("mlockall flags {:#x} (MCL_FUTURE, alone or with MCL_ONFAULT)", mm.lock_future)));
    }
    if mm.ldt.len() > crate::ldt::MAX_ENTRIES {
        return Err(bad(format!("an LDT of {} entries (at most {})", mm.ldt.len(), crate::ldt::MAX_ENTRIES)));
    }
    if let Some((i, why)) = mm.ldt.iter().enumerate().find_map(|(i, d)| crate::ldt::invalid(*d).map(|w| (i, w))) {
        return Err(bad(format!("LDT entry {i} is {why}")));
    }
    if p.fds.len() as u64 > h.nr_open {
        return Err(bad(format!("{} fds (fs.nr_open is {})", p.fds.len(), h.nr_open)));
    }
    let mut fds = HashSet::with_capacity(p.fds.len());
    for fd in &p.fds {
        if fd.fd < 0 || fd.fd as u64 >= h.nr_open || object(fd.object_id).is_none() {
            return Err(bad(format!("fd {} refers to missing object {} (or is not below fs.nr_open {})", fd.fd, fd.object_id, h.nr_open)));
        }
        if !fds.insert(fd.fd) {
            return Err(bad(format!("fd {} appears twice", fd.fd)));
        }
    }
    if p.locks.len() > MAX_LOCKS {
        return Err(bad(format!("{} file locks", p.locks.len())));
    }
    for l in &p.locks {
        let lease_range = l.kind != "lease" || (l.start == 0 && l.len == 0);
        if !matches!(l.kind.as_str(), "flock" | "posix" | "ofd" | "lease") || !fds.contains(&l.fd) || l.start > i64::MAX as u64 || l.len > i64::MAX as u64 || !lease_range {
            return Err(bad(format!("file lock {:?} on fd {} (unknown kind, fd not in the image, or range)", l.kind, l.fd)));
        }
    }
    if p.vmas.len() as u64 > h.max_map_count {
        return Err(bad(format!("{} VMAs (vm.max_map_count is {})", p.vmas.len(), h.max_map_count)));
    }
    let mut prev_end = 0;
    for v in &p.vmas {
        if v.start >= v.end || v.start % PAGE != 0 || v.end % PAGE != 0 || v.start < prev_end || v.end > TASK_SIZE.max(0xffff_ffff_ff60_1000) {
            return Err(bad(format!("VMA {:#x}-{:#x} is malformed or overlaps", v.start, v.end)));
        }
        prev_end = v.end;
        if let Some(why) = v.mempolicy.as_ref().and_then(crate::numa::invalid) {
            return Err(bad(format!("VMA {:#x}-{:#x}: {why}", v.start, v.end)));
        }
        let kind = VmaKind::try_from(v.kind);
        let needs_file = matches!(kind, Ok(VmaKind::FilePrivate | VmaKind::FileShared));
        if needs_file && object(v.object_id).and_then(|o| o.mapped_file()).is_none() {
            return Err(bad(format!("VMA {:#x}-{:#x} refers to missing mapped-file object {}", v.start, v.end, v.object_id)));
        }
        if kind == Ok(VmaKind::ShmemAnon) && object(v.object_id).and_then(|o| o.shmem()).is_none() {
            return Err(bad(format!("VMA {:#x}-{:#x} refers to missing shared-memory object {}", v.start, v.end, v.object_id)));
        }
        if kind == Ok(VmaKind::SysvShm) && object(v.object_id).and_then(|o| o.sysv_shm()).is_none() {
            return Err(bad(format!("VMA {:#x}-{:#x} refers to missing SysV segment object {}", v.start, v.end, v.object_id)));
        }
        if (kind == Ok(VmaKind::AioRing)) != v.aio.is_some() {
            return Err(bad(format!("VMA {:#x}-{:#x}: aio ring state on a VMA that is no aio ring, or none on one", v.start, v.end)));
        }
        if kind == Ok(VmaKind::AioRing) {
            crate::aio::check(v).map_err(|why| bad(format!("VMA {:#x}-{:#x}: the aio ring {why}", v.start, v.end)))?;
        }
        if kind == Ok(VmaKind::PacketRing) {
            let ring = object(v.object_id).and_then(|o| o.packet()).and_then(|k| k.rx_ring.as_ref());
            let size = ring.map(|r| u64::from(r.block_size) * u64::from(r.block_nr));
            if size != Some(v.end - v.start) || v.pgoff != 0 || !v.shared || !p.fds.iter().any(|f| f.object_id == v.object_id) {
                return Err(bad(format!(
                    "VMA {:#x}-{:#x} maps no whole receive ring of a packet socket the process holds (object {})",
                    v.start, v.end, v.object_id
                )));
            }
        }
        if v.pgoff % PAGE != 0 && needs_file {
            return Err(bad(format!("VMA {:#x}-{:#x}: file offset {:#x} is not page-aligned", v.start, v.end, v.pgoff)));
        }
        check_guards(v).map_err(|why| bad(format!("VMA {:#x}-{:#x}: guard regions {why}", v.start, v.end)))?;
        check_huge_vma(v, object).map_err(|why| bad(format!("VMA {:#x}-{:#x}: hugetlb {why}", v.start, v.end)))?;
    }
    if (p.uts_ns != 0 && object(p.uts_ns).and_then(|o| o.uts_ns()).is_none())
        || (p.ipc_ns != 0 && object(p.ipc_ns).and_then(|o| o.ipc_ns()).is_none())
    {
        return Err(bad("refers to a missing namespace object".into()));
    }
    if let Some(a) = &p.attrs {
        for (what, s) in [("working directory", &a.cwd), ("root directory", &a.root)] {
            if !s.is_empty() {
                check_path(s).map_err(|why| bad(format!("{what}: {why}")))?;
            }
        }
        if a.root_ghost != 0
            && !object(a.root_ghost).and_then(|o| o.ghost()).is_some_and(|g| g.mode & libc::S_IFMT == libc::S_IFDIR && g.external.is_empty())
        {
            return Err(bad(format!("its removed root directory (object {}) is no recreated directory", a.root_ghost)));
        }
        if a.cwd_ghost != 0
            && !object(a.cwd_ghost).and_then(|o| o.ghost()).is_some_and(|g| g.mode & libc::S_IFMT == libc::S_IFDIR && g.external.is_empty())
        {
            return Err(bad(format!("its removed working directory (object {}) is no recreated directory", a.cwd_ghost)));
        }
        let stops = [0, libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU];
        if !stops.contains(&a.stop_signal) || (a.stop_signal != 0 && !a.stopped) {
            return Err(bad(format!("stop signal {} (a stop signal, and only for a stopped process)", a.stop_signal)));
        }
        // loginuid: any u32 is one the kernel may take (u32::MAX = unset); it is written
        // from inside the process to its own /proc/self/loginuid, and the kernel decides
        // (setting a set one needs CAP_AUDIT_CONTROL): nothing of the host's changes.
    }
    if p.cgroups.len() > MAX_CGROUP_LINES {
        return Err(bad(format!("{} cgroup lines (at most {MAX_CGROUP_LINES})", p.cgroups.len())));
    }
    for l in &p.cgroups {
        check_cgroup_line(l).map_err(|why| refuse(format!("pid {}: {why}", p.pid)))?;
    }
    check_creds(p, h)
}

/// Strings and sizes of the shared objects.
/// pidfds and namespace fds made inside their holder (`fdkinds::is_late`) name a
/// process the holder can see: one at least as deep in PID namespaces (the holder calls
/// pidfd_open with the pid its namespace gives it).
fn check_late_fds(m: &Manifest) -> std::result::Result<(), String> {
    let depth = |id: i32| {
        m.processes.iter().find_map(|q| {
            if q.pid == id {
                return Some(q.ns_pids.len().max(1));
            }
            q.threads.iter().find(|t| t.tid == id).map(|t| t.ns_tids.len().max(1))
        })
    };
    for p in m.processes.iter().filter(|p| !p.zombie) {
        for fd in &p.fds {
            let target = match m.object(fd.object_id).map(|o| &o.kind) {
                Some(Some(Kind::Pidfd(f))) if f.pid != 0 => f.pid,
                Some(Some(Kind::NsFd(n))) if n.member != 0 => n.member,
                _ => continue,
            };
            let held = p.ns_pids.len().max(1);
            if depth(target).is_none_or(|d| d < held) {
                return Err(format!("pid {}: fd {} refers to pid {target}, which is not in its PID namespace", p.pid, fd.fd));
            }
        }
    }
    Ok(())
}

fn check_objects(m: &Manifest, table: &HashMap<u32, &Object>, objects: &[Object]) -> std::result::Result<(), String> {
    // unix socket inode → its peer's inode
    let unix_peers: HashMap<u32, (u32, u32)> =
        objects.iter().filter_map(|o| o.unix()).map(|u| (u.ino, (u.peer_ino, u.connecting_to))).collect();
    for o in objects {
        let id = o.id;
        if let Some(f) = o.mapped_file() {
            if f.ghost_id == 0 { check_path(&f.path) } else { check_str(&f.path, PATH_MAX) }
                .map_err(|why| format!("mapped file (object {id}): {why}"))?;
            if f.ghost_id != 0 && table.get(&f.ghost_id).and_then(|g| g.ghost()).is_none() {
                return Err(format!("mapped file (object {id}) refers to missing deleted-file object {}", f.ghost_id));
            }
            crate::shmfile::check(f).and_then(|_| f.saved.as_ref().map_or(Ok(()), check_ghost)).map_err(|why| format!("mapped file (object {id}): {why}"))?;
        }
        if let Some(f) = o.file() {
            if f.ghost_id == 0 { check_path(&f.path) } else { check_str(&f.path, PATH_MAX) }
                .map_err(|why| format!("file (object {id}): {why}"))?;
        }
        if let Some(q) = o.mqueue() {
            crate::fdkinds::mqueue::check(q).map_err(|why| format!("object {id}: {why}"))?;
        }
        if let Some(g) = o.ghost() {
            let named = g.memfd_name.is_empty() && g.external.is_empty();
            if named { check_path(&g.path) } else { check_str(&g.path, PATH_MAX) }
                .map_err(|why| format!("deleted file (object {id}): {why}"))?;
            check_str(&g.memfd_name, MAX_MEMFD_NAME).map_err(|why| format!("memfd name (object {id}): {why}"))?;
            check_ghost(g).map_err(|why| format!("deleted file {} (object {id}): {why}", g.path))?;
        }
        if let Some(p) = o.pipe() {
            let in_packets: u64 = p.packets.iter().map(|&k| u64::from(k)).sum();
            if p.packets.contains(&0) || in_packets > p.data.len() as u64 {
                return Err(format!("pipe (object {id}): packets of {in_packets} bytes in {} buffered", p.data.len()));
            }
        }
        if let Some(f) = o.fifo() {
            check_path(&f.path).map_err(|why| format!("named FIFO (object {id}): {why}"))?;
            if f.deleted && !f.external.is_empty() {
                return Err(format!("named FIFO (object {id}): removed and held outside the tree at once"));
            }
        }
        if let Some(e) = o.epoll() {
            // fd numbers of the process that adds the items (it fails cleanly on one it
            // does not have): never negative, and an item's stand-in is another number
            if let Some(it) = e.items.iter().find(|it| it.tfd < 0 || it.via.is_some_and(|v| v < 0 || v == it.tfd)) {
                return Err(format!("epoll (object {id}): item of fd {} through fd {:?}", it.tfd, it.via));
            }
        }
        if let Some(i) = o.inotify() {
            for w in &i.watches {
                check_path(&w.path).map_err(|why| format!("inotify watch {} (object {id}): {why}", w.wd))?;
            }
        }
        if let Some(i) = o.inet() {
            crate::fdkinds::inet::check(i).map_err(|why| format!("{} (object {id}): {why}", crate::fdkinds::inet::describe(i)))?;
        }
        if let Some(u) = o.unix() {
            check_unix(&unix_peers, u).map_err(|why| format!("unix socket (object {id}): {why}"))?;
            check_in_flight(table, u).map_err(|why| format!("unix socket (object {id}): {why}"))?;
            crate::fdkinds::unixopt::check(u).map_err(|why| format!("unix socket (object {id}): options: {why}"))?;
        }
        if let Some(n) = o.netlink() {
            check_netlink(n).map_err(|why| format!("netlink socket (object {id}): {why}"))?;
        }
        if let Some(p) = o.packet() {
            check_packet(p).map_err(|why| format!("packet socket (object {id}): {why}"))?;
        }
        if let Some(p) = o.pidfd() {
            crate::fdkinds::pidfd::check(m, p).map_err(|why| format!("pidfd (object {id}): {why}"))?;
        }
        if let Some(f) = o.fanotify() {
            for mk in &f.marks {
                check_path(&mk.path).map_err(|why| format!("fanotify mark (object {id}): {why}"))?;
            }
            crate::fdkinds::fanotify::check(f).map_err(|why| format!("fanotify group (object {id}): {why}"))?;
        }
        if let Some(n) = o.ns_fd() {
            crate::fdkinds::nsfd::check(m, n).map_err(|why| format!("namespace fd (object {id}): {why}"))?;
        }
        if let Some(s) = o.shmem() {
            if s.size == 0 || s.size > TASK_SIZE {
                return Err(format!("shared memory (object {id}) of {} bytes (1 to {TASK_SIZE:#x})", s.size));
            }
            check_huge(s.size, s.huge_page_size).map_err(|why| format!("shared memory (object {id}): {why}"))?;
        }
        if let Some(s) = o.sysv_shm() {
            // (a SysV segment's size is the one asked for; the kernel rounds it up to
            // huge pages itself)
            check_huge(0, s.huge_page_size).map_err(|why| format!("SysV segment (object {id}): {why}"))?;
            if s.size == 0 || s.size > TASK_SIZE {
                return Err(format!("SysV segment (object {id}) of {} bytes (1 to {TASK_SIZE:#x})", s.size));
            }
        }
    }
    // (each socket checked alone above)
    crate::fdkinds::inet::waiting::check_refs(objects)?;
    Ok(())
}

/// Credentials of a unix socket's queued messages: a process of the image (or 0, one
/// outside the tree); a stream's ranges in order inside its queue.
fn check_msg_creds(pids: &HashSet<i32>, u: &stasis_image::model::UnixObj) -> std::result::Result<(), String> {
    let mut pos = 0u64;
    for r in &u.cred_ranges {
        if u.sock_type != libc::SOCK_STREAM || r.start < pos || r.end <= r.start || r.end > u.queue.len() as u64 || r.creds.is_none() {
            return Err(format!("credentials of bytes {}..{} out of order, empty or outside its {}-byte stream queue", r.start, r.end, u.queue.len()));
        }
        pos = r.end;
    }
    let creds = u.cred_ranges.iter().filter_map(|r| r.creds.as_ref()).chain(u.messages.iter().filter_map(|m| m.creds.as_ref()));
    for c in creds {
        if c.pid != 0 && !pids.contains(&c.pid) {
            return Err(format!("a queued message's credentials name pid {}, not a process of the image", c.pid));
        }
    }
    if let Some(c) = u.peer_cred.as_ref().filter(|c| c.pid != 0 && !pids.contains(&c.pid)) {
        return Err(format!("its peer credentials name pid {}, not a process of the image", c.pid));
    }
    Ok(())
}

/// File descriptors in flight in a unix socket's queue: pieces in order inside the
/// queue, at most SCM_MAX_FD (253) per message, each an open-file object of the image.
fn check_in_flight(table: &HashMap<u32, &Object>, u: &stasis_image::model::UnixObj) -> std::result::Result<(), String> {
    const SCM_MAX_FD: usize = 253;
    let mut pos = 0u64;
    for f in &u.in_flight {
        if f.start < pos || f.end < f.start || f.end > u.queue.len() as u64 || f.objects.is_empty() {
            return Err(format!("in-flight piece {}..{} out of order or outside its {}-byte queue", f.start, f.end, u.queue.len()));
        }
        pos = f.end;
    }
    let lists = u.in_flight.iter().map(|f| &f.objects).chain(u.messages.iter().map(|m| &m.objects));
    for ids in lists {
        if ids.len() > SCM_MAX_FD {
            return Err(format!("{} file descriptors in flight in one message (at most {SCM_MAX_FD})", ids.len()));
        }
        for id in ids {
            match table.get(id).and_then(|o| o.kind.as_ref()) {
                None => return Err(format!("a file descriptor in flight refers to missing object {id}")),
                Some(stasis_image::not_fd_kinds!()) => return Err(format!("a file descriptor in flight refers to object {id}, which is not an open file")),
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Bounds of what a unix socket record makes restore do (sizes of names, queues and
/// buffers; messages only where they can be sent back in).
fn check_unix(peers: &HashMap<u32, (u32, u32)>, u: &stasis_image::model::UnixObj) -> std::result::Result<(), String> {
    const MAX_QUEUE: usize = 64 << 20;
    if ![libc::SOCK_STREAM, libc::SOCK_DGRAM, libc::SOCK_SEQPACKET].contains(&u.sock_type) {
        return Err(format!("socket type {}", u.sock_type));
    }
    if u.name.len() > 108 || u.peer_name.len() > 108 {
        return Err(format!("name of {} bytes or peer name of {} (at most 108)", u.name.len(), u.peer_name.len()));
    }
    check_str(&u.external, 4096).map_err(|why| format!("external description: {why}"))?;
    if !u.bound_in.is_empty() {
        check_path(&u.bound_in).map_err(|why| format!("directory of its relative name: {why}"))?;
        if !u.bound_in.starts_with('/') || !u.name.first().is_some_and(|c| *c != 0 && *c != b'/') || u.name_unlinked || u.file.is_none() {
            return Err(format!("directory {:?} for a name that is not a relative path of a socket file", u.bound_in));
        }
    }
    if !u.renamed_to.is_empty() {
        // a file renamed within the directory of an absolute name it still has
        check_path(&u.renamed_to).map_err(|why| format!("renamed socket file: {why}"))?;
        let name = std::str::from_utf8(&u.name).ok().filter(|n| n.starts_with('/'));
        let to = std::path::Path::new(&u.renamed_to);
        let same_dir = name.is_some_and(|n| {
            let n = std::path::Path::new(n);
            n.parent().is_some() && n.parent() == to.parent() && n.file_name().is_some() && to.file_name().is_some() && n != to
        });
        if !u.renamed_to.starts_with('/') || !same_dir || u.name_unlinked || u.file.is_none() || !u.bound_in.is_empty() {
            return Err(format!("socket file renamed to {:?}, which is not another name in the directory of its path", u.renamed_to));
        }
    }
    if let Some(f) = &u.file {
        let relative = !u.bound_in.is_empty();
        if f.mode > 0o777 || (u.name.first() != Some(&b'/') && !relative) || u.name_unlinked {
            return Err(format!("socket file of mode {:o} for a socket not bound to a path it still has", f.mode));
        }
    }
    if u.queue.len() > MAX_QUEUE {
        return Err(format!("{} bytes queued (at most {MAX_QUEUE})", u.queue.len()));
    }
    if u.messages.len() > 1 << 20 || u.messages.iter().map(|m| m.data.len()).sum::<usize>() > MAX_QUEUE {
        return Err(format!("{} queued messages over {MAX_QUEUE} bytes or more than 2^20", u.messages.len()));
    }
    if u.messages.iter().any(|m| m.sender.len() > 108) {
        return Err("a queued message's sender name is over 108 bytes".into());
    }
    if u.rcvbuf > i32::MAX as u32 || u.sndbuf > i32::MAX as u32 || u.peek_off.is_some_and(|p| p < 0) || u.backlog > 1 << 20 {
        return Err(format!("options out of range (rcvbuf {}, sndbuf {}, peek offset {:?}, backlog {})", u.rcvbuf, u.sndbuf, u.peek_off, u.backlog));
    }
    if u.listening && u.sock_type == libc::SOCK_DGRAM {
        return Err("a listening datagram socket".into());
    }
    let paired = u.peer_ino != 0 && peers.get(&u.peer_ino).map(|p| p.0) == Some(u.ino);
    // waiting connections: at most what the backlog held, each a socket of the image
    // waiting on this listener (restore connects them without blocking)
    if !u.waiting.is_empty() && (!u.listening || u.waiting.len() as u64 > u.backlog as u64 + 1) {
        return Err(format!("{} connections waiting on a listener with backlog {}", u.waiting.len(), u.backlog));
    }
    if let Some(w) = u.waiting.iter().find(|w| peers.get(w).map(|p| p.1) != Some(u.ino)) {
        return Err(format!("waiting connection {w} is not a socket of the image waiting on it"));
    }
    if u.connecting_to != 0 && (u.peer_name.is_empty() || u.peer_ino != 0 || u.listening || u.peer_gone) {
        return Err("a connection waiting to be accepted without the listener's name, or also connected (or closed)".into());
    }
    if !u.messages.is_empty() && !paired && !u.peer_gone && (u.name.is_empty() || u.sock_type != libc::SOCK_DGRAM) {
        return Err("queued messages on a socket they cannot be sent back to (no pair, no name)".into());
    }
    Ok(())
}

/// A socket's saved file status flags (O_NONBLOCK only) and SOL_SOCKET state: buffer
/// sizes within the kernel's int, at most BPF_MAXINSNS filter instructions, options only
/// from sockopt::OPTIONS, each once, flags 0 or 1, other values not negative.
fn check_sock_common(flags: u32, c: Option<&SockCommon>) -> std::result::Result<(), String> {
    if flags & !(libc::O_NONBLOCK as u32) != 0 {
        return Err(format!("file flags {flags:#o} (only O_NONBLOCK is restored)"));
    }
    let Some(c) = c else { return Ok(()) };
    if c.rcvbuf > i32::MAX as u32 || c.sndbuf > i32::MAX as u32 {
        return Err(format!("buffer sizes {}/{}", c.rcvbuf, c.sndbuf));
    }
    if c.filter.len() > BPF_MAXINSNS {
        return Err(format!("a filter of {} instructions (at most {BPF_MAXINSNS})", c.filter.len()));
    }
    if c.filter.iter().any(|i| i.code > 0xffff || i.jt > 0xff || i.jf > 0xff) {
        return Err("a filter instruction out of range".into());
    }
    let opts = crate::fdkinds::sockopt::OPTIONS;
    if c.options.len() % 2 != 0 || c.options.len() > 2 * opts.len() {
        return Err(format!("{} option values (pairs, at most {})", c.options.len(), opts.len()));
    }
    let mut seen = Vec::new();
    for p in c.options.chunks_exact(2) {
        let (opt, v) = (p[0], p[1]);
        let Some((_, name, flag)) = opts.iter().find(|(o, ..)| *o == opt) else {
            return Err(format!("socket option {opt}, not one restore sets"));
        };
        if seen.contains(&opt) || v < 0 || (*flag && v > 1) {
            return Err(format!("{name} = {v}"));
        }
        seen.push(opt);
    }
    Ok(())
}

/// An interface name as SIOCGIFINDEX takes it.
fn check_ifname(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.bytes().any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace()) {
        return Err(format!("interface name {name:?}"));
    }
    Ok(())
}

/// Netlink sockets: a known protocol, RAW or DGRAM, a bounded ascending list of groups.
fn check_netlink(n: &NetlinkObj) -> std::result::Result<(), String> {
    use crate::fdkinds::netlink::{MAX_GROUP, MAX_GROUPS, PROTOCOLS};
    if !PROTOCOLS.iter().any(|(p, _)| *p == n.protocol) {
        return Err(format!("unknown netlink protocol {}", n.protocol));
    }
    if n.sock_type != libc::SOCK_RAW && n.sock_type != libc::SOCK_DGRAM {
        return Err(format!("socket type {} (SOCK_RAW or SOCK_DGRAM)", n.sock_type));
    }
    if n.groups.len() > MAX_GROUPS {
        return Err(format!("{} multicast groups (at most {MAX_GROUPS})", n.groups.len()));
    }
    if n.groups.iter().any(|g| *g == 0 || *g > MAX_GROUP) || n.groups.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("multicast groups {:?} (1 to {MAX_GROUP}, ascending)", &n.groups[..n.groups.len().min(8)]));
    }
    check_sock_common(n.flags, n.sock.as_ref())
}

/// Packet sockets: type, protocols, interface names, options within what the kernel
/// takes, bounded memberships, a fanout mode without a program, at most BPF_MAXINSNS
/// filter instructions.
fn check_packet(p: &PacketObj) -> std::result::Result<(), String> {
    use crate::fdkinds::packet::{FANOUT_FLAGS, FANOUT_MODES, MAX_MCLIST, MAX_MC_COUNT, MAX_MR_TYPE, TIMESTAMP_MASK};
    if p.sock_type != libc::SOCK_RAW && p.sock_type != libc::SOCK_DGRAM {
        return Err(format!("socket type {} (SOCK_RAW or SOCK_DGRAM)", p.sock_type));
    }
    if p.protocol > 0xffff {
        return Err(format!("protocol {:#x}", p.protocol));
    }
    if p.ifindex < 0 || (p.ifindex == 0) != p.ifname.is_empty() {
        return Err(format!("interface index {} named {:?}", p.ifindex, p.ifname));
    }
    if p.ifindex != 0 {
        check_ifname(&p.ifname)?;
    }
    if p.version > 2 {
        return Err(format!("PACKET_VERSION {}", p.version));
    }
    if p.reserve > i32::MAX as u32 {
        return Err(format!("PACKET_RESERVE {}", p.reserve));
    }
    if p.timestamp & !TIMESTAMP_MASK != 0 {
        return Err(format!("PACKET_TIMESTAMP {:#x}", p.timestamp));
    }
    if ![0, 10, 12].contains(&p.vnet_hdr_sz) || (p.vnet_hdr_sz != 0 && p.sock_type != libc::SOCK_RAW) {
        return Err(format!("PACKET_VNET_HDR_SZ {}", p.vnet_hdr_sz));
    }
    if let Some(f) = &p.fanout {
        if f.id > 0xffff || f.mode > FANOUT_MODES || f.flags & !FANOUT_FLAGS != 0 {
            return Err(format!("fanout group {} mode {} flags {:#x}", f.id, f.mode, f.flags));
        }
    }
    if p.mclist.len() > MAX_MCLIST {
        return Err(format!("{} memberships (at most {MAX_MCLIST})", p.mclist.len()));
    }
    if let Some(r) = &p.rx_ring {
        check_ring(p.version, r).map_err(|why| format!("receive ring: {why}"))?;
    }
    for m in &p.mclist {
        check_ifname(&m.ifname)?;
        if m.ifindex <= 0 || m.mr_type > MAX_MR_TYPE || m.addr.len() > 8 || m.count == 0 || m.count > MAX_MC_COUNT {
            return Err(format!("membership type {} on interface {} ({} address bytes, added {} times)", m.mr_type, m.ifindex, m.addr.len(), m.count));
        }
    }
    check_sock_common(p.flags, p.sock.as_ref())
}

/// A packet socket's receive ring: TPACKET_V1 or V2, a request the kernel takes within
/// our size bound, its head a frame of it, the saved frames in order, each inside a
/// frame and at least a header long, at most MAX_RING_SAVED bytes in all.
fn check_ring(version: u32, r: &PacketRing) -> std::result::Result<(), String> {
    use crate::fdkinds::packet::MAX_RING_SAVED;
    if version > 1 {
        return Err(format!("PACKET_VERSION {version} (rings of TPACKET_V1 and V2 only)"));
    }
    crate::fdkinds::packet::check_ring(r)?;
    if r.head >= r.frame_nr {
        return Err(format!("next frame {} of {}", r.head, r.frame_nr));
    }
    let (mut next, mut total) = (0u32, 0u64);
    for f in &r.frames {
        let len = f.data.len() as u64;
        if f.index < next || f.index >= r.frame_nr || len < stasis_sys::sys::netsock::TPACKET_HDR_LEN as u64 || len > u64::from(r.frame_size) {
            return Err(format!("frame {} of {} bytes (frames in order, {} of at most {} bytes)", f.index, len, r.frame_nr, r.frame_size));
        }
        next = f.index + 1;
        total += len;
    }
    if total > MAX_RING_SAVED {
        return Err(format!("{total} bytes of frames (at most {MAX_RING_SAVED})"));
    }
    Ok(())
}

/// A file the restored process opens itself under /proc (`FileObj.in_proc`): a path
/// `/proc/PID/...` of a live process of the image without `.`/`..` or empty components,
/// not a nameless inode, and held only by processes of the root PID namespace.
fn check_proc_file(id: u32, f: &FileObj, by_pid: &HashMap<i32, usize>, procs: &[Process]) -> std::result::Result<(), String> {
    let rest = f.path.strip_prefix("/proc/").ok_or("a /proc file outside /proc")?;
    let (pid, tail) = rest.split_once('/').ok_or("no file under /proc/PID")?;
    let pid: i32 = pid.parse().map_err(|_| "not under /proc/PID".to_string())?;
    if tail.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err("an empty, '.' or '..' component".into());
    }
    if !by_pid.get(&pid).and_then(|&k| procs.get(k)).is_some_and(|p| !p.zombie) {
        return Err(format!("process {pid} is not a live process of the image"));
    }
    if f.ghost_id != 0 || f.deleted {
        return Err("a /proc file that is also a nameless inode".into());
    }
    if procs.iter().any(|p| p.ns_pids.len() > 1 && p.fds.iter().any(|d| d.object_id == id)) {
        return Err("held by a process in a PID namespace of the tree's own".into());
    }
    Ok(())
}

/// Largest size of a recreated nameless file (the largest ext4 file; a sparse one costs
/// only its stored extents).
pub(super) const MAX_GHOST_SIZE: u64 = 16 << 40;

/// A nameless inode: its kind (S_IFMT of `mode`) is a regular file (content inline or
/// in page runs of at most `size` bytes), a directory or a memory character device
/// (null, zero, full, random, urandom: nothing else is ever mknod'ed); memfds and
/// external ones are regular files; only regular files have content.
fn check_ghost(g: &GhostObj) -> std::result::Result<(), String> {
    let fmt = g.mode & libc::S_IFMT;
    match fmt {
        0 | libc::S_IFREG => {}
        libc::S_IFDIR | libc::S_IFCHR => {
            if !g.memfd_name.is_empty() || !g.external.is_empty() || g.paged || !g.content.is_empty() || g.size != 0 {
                return Err("a directory or device node with content, a memfd name or an external name".into());
            }
            if fmt == libc::S_IFCHR && !crate::files::ghost_device_ok(g.rdev) {
                return Err(format!(
                    "device {}:{} is not one of the memory devices null, zero, full, random, urandom",
                    libc::major(g.rdev),
                    libc::minor(g.rdev)
                ));
            }
        }
        _ => return Err(format!("mode {:o} is not a regular file, directory or character device", g.mode)),
    }
    if fmt != libc::S_IFCHR && g.rdev != 0 {
        return Err(format!("a device number ({:#x}) on a file that is no device", g.rdev));
    }
    if g.paged && !g.content.is_empty() {
        return Err("content both inline and in page runs".into());
    }
    if g.size > MAX_GHOST_SIZE {
        return Err(format!("size {} bytes (at most {MAX_GHOST_SIZE})", g.size));
    }
    if g.huge_page_size != 0 && (fmt != libc::S_IFREG || !g.external.is_empty() || !g.paged) {
        return Err("huge pages on something other than a regular file with its content in page runs".into());
    }
    check_huge(g.size, g.huge_page_size)
}

/// Largest huge page size an image may name (x86-64 has 2 MiB and 1 GiB; other
/// architectures up to 16 GiB).
const MAX_HUGE_PAGE: u64 = 16 << 30;

/// A huge page size (0: none) is a power of two above the base page and `size` (0:
/// unchecked) a multiple of it.
fn check_huge(size: u64, h: u64) -> std::result::Result<(), String> {
    if h != 0 && (!h.is_power_of_two() || h <= PAGE || h > MAX_HUGE_PAGE || !size.is_multiple_of(h)) {
        return Err(format!("huge page size {h} (a power of two from 8 KiB to 16 GiB dividing the size {size})"));
    }
    Ok(())
}

/// A hugetlb VMA: a valid size its bounds are multiples of; its object (shared memory,
/// SysV segment, recreated memfd) has the same huge page size, and a VMA of ordinary
/// pages maps no hugetlb object. A named file's pages are the file's (any size).
fn check_huge_vma<'a>(v: &Vma, object: impl Fn(u32) -> Option<&'a Object>) -> std::result::Result<(), String> {
    let h = v.huge_page_size;
    check_huge(0, h)?;
    if !v.start.is_multiple_of(h.max(1)) || !v.end.is_multiple_of(h.max(1)) {
        return Err(format!("page size {h}: the bounds are not multiples of it"));
    }
    let o = object(v.object_id);
    let theirs = match VmaKind::try_from(v.kind) {
        Ok(VmaKind::Anon) => h,
        Ok(VmaKind::ShmemAnon) => o.and_then(|o| o.shmem()).map_or(h, |s| s.huge_page_size),
        Ok(VmaKind::SysvShm) => o.and_then(|o| o.sysv_shm()).map_or(h, |s| s.huge_page_size),
        Ok(VmaKind::FilePrivate | VmaKind::FileShared) => match o.and_then(|o| o.mapped_file()).filter(|f| f.ghost_id != 0) {
            Some(f) => object(f.ghost_id).and_then(|g| g.ghost()).map_or(h, |g| g.huge_page_size),
            None => h,
        },
        _ if h == 0 => 0,
        _ => return Err(format!("page size {h} on a special mapping")),
    };
    if theirs != h {
        return Err(format!("page size {h}, but its object {} has huge pages of {theirs}", v.object_id));
    }
    Ok(())
}

/// Guard regions (`Vma.guards`): only in anonymous or private file VMAs, (first page,
/// count) pairs with count > 0, ascending and disjoint, inside the VMA.
fn check_guards(v: &Vma) -> std::result::Result<(), String> {
    if v.guards.is_empty() {
        return Ok(());
    }
    if !matches!(VmaKind::try_from(v.kind), Ok(VmaKind::Anon | VmaKind::FilePrivate)) {
        return Err("in a VMA that is not anonymous or a private file mapping".into());
    }
    if v.guards.len() % 2 != 0 {
        return Err("are not (first page, count) pairs".into());
    }
    let pages = (v.end - v.start) / PAGE;
    let mut next = 0u64;
    for g in v.guards.chunks_exact(2) {
        let end = g[0].checked_add(g[1]).filter(|&e| g[1] > 0 && g[0] >= next && e <= pages);
        let Some(end) = end else {
            return Err(format!("({}, {}) empty, out of order or past the VMA's {pages} pages", g[0], g[1]));
        };
        next = end;
    }
    Ok(())
}

/// Every page run goes where restore may write it: into a shared-memory object or SysV
/// segment (within its size), or into one anonymous or private-file VMA of a live
/// process of the image. Nothing else: a run "of" a mapped file would be written into
/// that file on disk.
fn check_runs(m: &Manifest, objects: &HashMap<u32, &Object>, by_pid: &HashMap<i32, usize>) -> std::result::Result<(), String> {
    let single = m.processes.len() == 1;
    for (i, r) in m.index.runs.iter().enumerate() {
        let what = || format!("page run {i} (pid {}, object {}, offset/address {:#x}, {} pages)", r.pid, r.object_id, r.addr, r.count);
        let len = u64::from(r.count).checked_mul(PAGE).filter(|l| *l > 0).ok_or_else(|| format!("{}: no pages", what()))?;
        let end = r.addr.checked_add(len).ok_or_else(|| format!("{}: its range wraps", what()))?;
        if r.addr % PAGE != 0 {
            return Err(format!("{}: not page-aligned", what()));
        }
        if r.object_id != 0 {
            let o = objects.get(&r.object_id).ok_or_else(|| format!("{}: no such object", what()))?;
            let size = match &o.kind {
                Some(Kind::Shmem(s)) => s.size,
                Some(Kind::SysvShm(s)) => s.size,
                Some(Kind::Ghost(g)) if g.paged && g.external.is_empty() => g.size,
                // written only into the file restore creates (shmfile), never an existing one
                Some(Kind::MappedFile(MappedFileObj { saved: Some(g), .. })) => g.size,
                _ => return Err(format!("{}: the object is not shared memory, a SysV segment, a paged nameless file or a saved POSIX shared memory object", what())),
            };
            // sizes are at most TASK_SIZE (check_objects): no overflow
            if end > size.div_ceil(PAGE) * PAGE {
                return Err(format!("{}: past the end of the object ({size} bytes)", what()));
            }
            continue;
        }
        let p = match r.pid {
            0 if single => m.processes.first(),
            0 => None,
            pid => by_pid.get(&pid).and_then(|&k| m.processes.get(k)),
        }
        .filter(|p| !p.zombie)
        .ok_or_else(|| format!("{}: not a live process of the image", what()))?;
        // VMAs are sorted and disjoint (check_process): the last one starting at or below addr
        let k = p.vmas.partition_point(|v| v.start <= r.addr);
        let v = k.checked_sub(1).and_then(|k| p.vmas.get(k)).filter(|v| end <= v.end);
        let Some(v) = v else {
            return Err(format!("{}: not inside one VMA of pid {}", what(), p.pid));
        };
        if !matches!(VmaKind::try_from(v.kind), Ok(VmaKind::Anon | VmaKind::FilePrivate)) {
            return Err(format!("{}: inside VMA {:#x}-{:#x}, which is not anonymous or a private file mapping", what(), v.start, v.end));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(tid: i32) -> Thread {
        Thread { tid, regs: vec![0; stasis_sys::ptrace::NREGS], xstate: vec![0; 576], ..Default::default() }
    }

    fn creds() -> Creds {
        Creds { uids: vec![1000; 4], gids: vec![1000; 4], groups: vec![1000, 27], ..Default::default() }
    }

    fn process(pid: i32, ppid: i32) -> Process {
        Process {
            pid,
            ppid,
            comm: "w".into(),
            threads: vec![thread(pid)],
            mm: Some(MmInfo { exe_object: 1, auxv: vec![0, 0], ..Default::default() }),
            vmas: vec![
                Vma { start: 0x40_0000, end: 0x40_4000, kind: VmaKind::FilePrivate as i32, object_id: 1, ..Default::default() },
                Vma { start: 0x60_0000, end: 0x61_0000, kind: VmaKind::Anon as i32, pages_saved: 2, ..Default::default() },
                Vma { start: 0x70_0000, end: 0x70_2000, kind: VmaKind::ShmemAnon as i32, object_id: 2, shared: true, ..Default::default() },
            ],
            creds: Some(creds()),
            attrs: Some(ProcAttrs { cwd: "/tmp".into(), root: "/".into(), ..Default::default() }),
            cgroups: vec!["0::/user.slice/a.scope".into()],
            ..Default::default()
        }
    }

    fn manifest() -> Manifest {
        let p = process(100, 1);
        Manifest {
            process: p.clone(),
            processes: vec![p],
            objects: vec![
                Object { id: 1, kind: Some(Kind::MappedFile(MappedFileObj { path: "/bin/w".into(), ..Default::default() })), ..Default::default() },
                Object { id: 2, kind: Some(Kind::Shmem(ShmemObj { ino: 5, size: 2 * PAGE, ..Default::default() })), ..Default::default() },
                Object { id: 3, kind: Some(Kind::SysvShm(SysvShmObj { size: 100, ..Default::default() })), ..Default::default() },
            ],
            index: PageIndex {
                runs: vec![
                    PageRun { pid: 100, addr: 0x60_1000, count: 2, ..Default::default() },
                    PageRun { object_id: 2, addr: PAGE, count: 1, ..Default::default() },
                    PageRun { object_id: 3, addr: 0, count: 1, ..Default::default() },
                ],
            },
            ..Default::default()
        }
    }

    fn root() -> Host {
        Host::root(40)
    }

    fn user() -> Host {
        Host { uids: vec![1000; 4], gids: vec![1000; 4], groups: vec![1000, 27], ..Host::root(40) }
            .with_caps(0, 0, 0, (1u64 << 41) - 1)
    }

    impl Host {
        fn with_caps(mut self, eff: u64, prm: u64, inh: u64, bnd: u64) -> Host {
            (self.cap_eff, self.cap_prm, self.cap_inh, self.cap_bnd) = (eff, prm, inh, bnd);
            self
        }
    }

    fn refused(m: &Manifest, h: &Host, needle: &str) {
        match validate_with(m, h) {
            Ok(()) => panic!("accepted; expected a refusal naming {needle:?}"),
            Err(e) => {
                let s = e.to_string();
                assert!(s.contains(needle), "refusal {s:?} does not name {needle:?}");
                assert!(!s.contains('\n'), "refusal of more than one line: {s:?}");
            }
        }
    }

    fn edit(f: impl FnOnce(&mut Manifest)) -> Manifest {
        let mut m = manifest();
        f(&mut m);
        if let Some(p) = m.processes.first() {
            m.process = p.clone();
        }
        m
    }

    fn with_unix(socks: Vec<UnixObj>) -> Manifest {
        edit(|m| {
            for (i, u) in socks.into_iter().enumerate() {
                let id = 10 + i as u32;
                m.objects.push(Object { id, kind: Some(Kind::Unix(u)), ..Default::default() });
                m.processes[0].fds.push(Fd { fd: 3 + i as i32, object_id: id, cloexec: false });
            }
        })
    }

    /// An exited main thread: other threads live, none with the pid, a SYS_exit status;
    /// none for a process whose main thread lives, nor for a zombie.
    #[test]
    fn exited_main_thread_is_checked() {
        let exited = |f: fn(&mut Process)| {
            edit(|m| {
                let p = &mut m.processes[0];
                p.leader_exited = true;
                p.leader_exit_status = 42 << 8;
                p.threads = vec![thread(101), thread(102)];
                f(p);
            })
        };
        validate_with(&exited(|_| {}), &root()).expect("two live threads, the main one exited");
        refused(&exited(|p| p.threads.clear()), &root(), "no other thread");
        refused(&exited(|p| p.threads.push(thread(100))), &root(), "thread id 100 appears twice");
        refused(&exited(|p| p.leader_exit_status = 0x7f), &root(), "exit status 0x7f");
        refused(&exited(|p| p.leader_exit_status = 0x1_0000), &root(), "exit status 0x10000");
        refused(&edit(|m| m.processes[0].leader_exit_status = 1 << 8), &root(), "which has not exited");
        // its pid is one of the tree's ids: no other process's thread may have it
        let m = exited(|p| p.threads = vec![thread(101)]);
        let mut c = process(200, 100);
        c.threads.push(thread(100));
        let mut m2 = m.clone();
        m2.processes.push(c);
        refused(&m2, &root(), "pid 200: thread id 100 appears twice");
        let mut z = process(300, 100);
        (z.zombie, z.leader_exited, z.threads) = (true, true, Vec::new());
        let mut m3 = m;
        m3.processes.push(z);
        refused(&m3, &root(), "is a zombie, yet");
    }

    /// epoll items: fd numbers never negative; an item of a closed number names another fd.
    #[test]
    fn epoll_items_name_fd_numbers() {
        use stasis_image::model::{EpollItem, EpollObj};
        let with = |tfd: i32, via: Option<i32>| {
            edit(|m| {
                let items = vec![EpollItem { tfd, events: 1, data: 7, via }];
                m.objects.push(Object { id: 10, kind: Some(Kind::Epoll(EpollObj { flags: 0, items })), ..Default::default() });
                m.processes[0].fds.push(Fd { fd: 3, object_id: 10, cloexec: false });
            })
        };
        assert!(validate_with(&with(5, None), &root()).is_ok());
        assert!(validate_with(&with(5, Some(6)), &root()).is_ok());
        for (tfd, via) in [(-1, None), (5, Some(-2)), (5, Some(5))] {
            refused(&with(tfd, via), &root(), "epoll (object 10)");
        }
    }

    /// A TCP connection's urgent byte: inside the saved receive queue, an offset and
    /// "read" only with an urgent byte, "read" not with SO_OOBINLINE.
    #[test]
    fn tcp_urgent_byte_is_inside_the_receive_queue() {
        let with = |urgent: bool, at: u32, read: bool, inline: bool| {
            let sa = |port: u16| {
                let mut a = (libc::AF_INET as u16).to_ne_bytes().to_vec();
                a.extend_from_slice(&port.to_be_bytes());
                a.extend_from_slice(&[127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
                a
            };
            let tcp = TcpConn { recv_queue: b"abcde".to_vec(), urgent, urgent_at: at, urgent_read: read, ..Default::default() };
            let sockopts = if inline { vec![SockOpt { level: libc::SOL_SOCKET, name: libc::SO_OOBINLINE, value: 1i32.to_le_bytes().to_vec() }] } else { vec![] };
            let i = InetObj { family: libc::AF_INET, sock_type: libc::SOCK_STREAM, protocol: libc::IPPROTO_TCP, local: sa(5000), peer: sa(6000), tcp: Some(tcp), sockopts, ..Default::default() };
            edit(move |m| {
                m.objects.push(Object { id: 9, kind: Some(Kind::Inet(i)), ..Default::default() });
                m.processes[0].fds.push(Fd { fd: 5, object_id: 9, cloexec: false });
            })
        };
        validate_with(&with(true, 4, false, false), &root()).expect("the last byte urgent");
        validate_with(&with(true, 0, true, false), &root()).expect("the first byte urgent, read");
        validate_with(&with(true, 2, false, true), &root()).expect("inline");
        refused(&with(true, 5, false, false), &root(), "urgent byte at offset 5");
        refused(&with(false, 3, false, false), &root(), "urgent byte at offset 3");
        refused(&with(false, 0, true, false), &root(), "urgent byte at offset 0");
        refused(&with(true, 1, true, true), &root(), "SO_OOBINLINE");
    }

    /// sockaddr_in of 127.0.0.IP:PORT.
    fn sa(ip: u8, port: u16) -> Vec<u8> {
        let mut a = (libc::AF_INET as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&port.to_be_bytes());
        a.extend_from_slice(&[127, 0, 0, ip, 0, 0, 0, 0, 0, 0, 0, 0]);
        a
    }

    /// A listener's `ending` connections (TIME_WAITs a restore may remove): only a
    /// listener's, on its port and address.
    #[test]
    fn tcp_ending_connections_are_on_the_listeners_port() {
        let with = |listening: bool, local: Vec<u8>| {
            let ending = vec![TcpEnding { local, peer: sa(1, 7000), cookie: 77 }];
            let i = InetObj { family: libc::AF_INET, sock_type: libc::SOCK_STREAM, protocol: libc::IPPROTO_TCP, local: sa(1, 5000), listening, ending, ..Default::default() };
            edit(move |m| {
                m.objects.push(Object { id: 9, kind: Some(Kind::Inet(i)), ..Default::default() });
                m.processes[0].fds.push(Fd { fd: 5, object_id: 9, cloexec: false });
            })
        };
        validate_with(&with(true, sa(1, 5000)), &root()).expect("a TIME_WAIT of the listener's port");
        refused(&with(false, sa(1, 5000)), &root(), "only of a listener");
        refused(&with(true, sa(1, 5001)), &root(), "127.0.0.1:5001 -> 127.0.0.1:7000");
        refused(&with(true, sa(2, 5000)), &root(), "the listener's family, port and address");
    }

    /// Connections waiting in a listener's accept queue (`waiting`, `accept_on`): each
    /// names a client object of the listener's network namespace that names it back,
    /// once, bound to the address the listener saw, connected to the listener; no more
    /// than its backlog + 1.
    #[test]
    fn waiting_connections_name_clients_that_wait_on_the_listener() {
        let tcp = |local: Vec<u8>| InetObj { family: libc::AF_INET, sock_type: libc::SOCK_STREAM, protocol: libc::IPPROTO_TCP, local, ..Default::default() };
        let with = |f: &dyn Fn(&mut InetObj, &mut InetObj, &mut Object)| {
            let mut l = InetObj { listening: true, backlog: 4, waiting: vec![TcpWaiting { client: sa(1, 40000), object: 10 }], ..tcp(sa(1, 5000)) };
            let mut c = InetObj { peer: sa(1, 5000), accept_on: 9, shutdown: 2, ..tcp(sa(1, 40000)) };
            let mut co = Object { id: 10, ..Default::default() };
            f(&mut l, &mut c, &mut co);
            co.kind = Some(Kind::Inet(c));
            edit(move |m| {
                m.objects.push(Object { id: 9, kind: Some(Kind::Inet(l)), ..Default::default() });
                m.objects.push(co);
                m.processes[0].fds.push(Fd { fd: 5, object_id: 9, cloexec: false });
                m.processes[0].fds.push(Fd { fd: 6, object_id: 10, cloexec: false });
            })
        };
        validate_with(&with(&|_, _, _| {}), &root()).expect("a client waiting on its listener");
        let names = "not a client of this listener's that waits on it";
        refused(&with(&|l, _, _| l.waiting[0].object = 11), &root(), names);
        refused(&with(&|l, _, _| l.waiting[0].object = 9), &root(), names);
        refused(&with(&|l, _, _| l.waiting[0].client = sa(1, 40001)), &root(), names);
        refused(&with(&|_, c, _| c.peer = sa(1, 5001)), &root(), names);
        refused(&with(&|_, c, _| c.peer = sa(2, 5000)), &root(), names);
        refused(&with(&|_, _, co| co.net_ns = 4242), &root(), names);
        refused(&with(&|l, _, _| l.waiting.push(l.waiting[0].clone())), &root(), names);
        refused(&with(&|l, _, _| l.waiting = vec![TcpWaiting { client: sa(1, 40000), object: 10 }; 7]), &root(), "at most backlog + 1");
        refused(&with(&|l, _, _| l.listening = false), &root(), "does not listen");
        refused(&with(&|l, _, _| l.waiting.clear()), &root(), "a listener that does not list it");
        refused(&with(&|_, c, _| c.accept_on = 10), &root(), names);
        refused(&with(&|_, c, _| c.tcp = Some(Default::default())), &root(), "without TCP_REPAIR state");
        refused(&with(&|_, c, _| c.local = Vec::new()), &root(), "a bound, connected TCP socket");
        refused(&with(&|_, c, _| c.local = sa(1, 0)), &root(), names);
        refused(&with(&|_, c, _| c.shutdown = 4), &root(), "shutdown bits");
    }

    /// /proc files the restored process opens itself: /proc/PID/... of a live process of
    /// the image, plain components, not nameless.
    #[test]
    fn proc_files_name_a_live_process_of_the_image() {
        let with = |path: &str, ghost: bool| {
            let f = FileObj { path: path.into(), in_proc: true, deleted: ghost, flags: 0, ..Default::default() };
            edit(move |m| {
                m.objects.push(Object { id: 9, kind: Some(Kind::File(f)), ..Default::default() });
                m.processes[0].fds.push(Fd { fd: 5, object_id: 9, cloexec: false });
            })
        };
        validate_with(&with("/proc/100/status", false), &root()).expect("its own status");
        validate_with(&with("/proc/100/task/100/stat", false), &root()).expect("a thread's stat");
        refused(&with("/proc/101/status", false), &root(), "not a live process of the image");
        refused(&with("/proc/self/status", false), &root(), "not under /proc/PID");
        refused(&with("/proc/100/../1/environ", false), &root(), "'..' component");
        refused(&with("/proc/100//status", false), &root(), "empty");
        refused(&with("/etc/shadow", false), &root(), "outside /proc");
        refused(&with("/proc/100", false), &root(), "no file under /proc/PID");
        refused(&with("/proc/100/status", true), &root(), "nameless");
        let mut m = with("/proc/100/status", false);
        m.processes[0].ns_pids = vec![100, 1];
        m.process = m.processes[0].clone();
        match validate_with(&m, &root()) {
            Err(e) => assert!(!e.to_string().contains('\n')),
            Ok(()) => panic!("a /proc file held inside a PID namespace of the tree's own was accepted"),
        }
    }

    /// Nameless inodes: kind by mode, only memory devices, content in one place, page runs
    /// within the size, a working directory that is a recreated directory.
    #[test]
    fn ghosts_are_bounded() {
        let ghost = |g: GhostObj| {
            edit(move |m| {
                m.objects.push(Object { id: 9, kind: Some(Kind::Ghost(g)), ..Default::default() });
                m.index.runs.push(PageRun { object_id: 9, addr: 2 * PAGE, count: 1, ..Default::default() });
            })
        };
        let reg = GhostObj { path: "/tmp/a".into(), mode: libc::S_IFREG | 0o640, paged: true, size: 3 * PAGE, ..Default::default() };
        validate_with(&ghost(reg.clone()), &root()).expect("a paged deleted file");
        refused(&ghost(GhostObj { size: 2 * PAGE, ..reg.clone() }), &root(), "past the end of the object");
        refused(&ghost(GhostObj { paged: false, ..reg.clone() }), &root(), "paged nameless file");
        refused(&ghost(GhostObj { external: "shm:[5]".into(), ..reg.clone() }), &root(), "paged nameless file");
        refused(&ghost(GhostObj { content: vec![1], ..reg.clone() }), &root(), "inline and in page runs");
        refused(&ghost(GhostObj { size: MAX_GHOST_SIZE + 1, ..reg.clone() }), &root(), "at most");
        refused(&ghost(GhostObj { rdev: libc::makedev(1, 3), ..reg.clone() }), &root(), "no device");
        let node = |mode: u32, rdev: u64| {
            edit(move |m| {
                let g = GhostObj { path: "/tmp/d".into(), mode, rdev, ..Default::default() };
                m.objects.push(Object { id: 9, kind: Some(Kind::Ghost(g)), ..Default::default() });
            })
        };
        for minor in [3, 5, 7, 8, 9] {
            validate_with(&node(libc::S_IFCHR | 0o600, libc::makedev(1, minor)), &root()).expect("a memory device");
        }
        validate_with(&node(libc::S_IFDIR | 0o700, 0), &root()).expect("a directory");
        refused(&node(libc::S_IFCHR | 0o600, libc::makedev(1, 1)), &root(), "not one of the memory devices");
        refused(&node(libc::S_IFCHR | 0o600, libc::makedev(1, 2)), &root(), "not one of the memory devices");
        refused(&node(libc::S_IFCHR | 0o600, libc::makedev(8, 0)), &root(), "not one of the memory devices");
        refused(&node(libc::S_IFBLK | 0o600, libc::makedev(1, 3)), &root(), "not a regular file, directory or character device");
        refused(&node(libc::S_IFIFO | 0o600, 0), &root(), "not a regular file, directory or character device");
        refused(&node(libc::S_IFLNK | 0o777, 0), &root(), "not a regular file, directory or character device");
        refused(
            &edit(|m| {
                let g = GhostObj { path: "/tmp/d".into(), mode: libc::S_IFDIR | 0o700, paged: true, ..Default::default() };
                m.objects.push(Object { id: 9, kind: Some(Kind::Ghost(g)), ..Default::default() });
            }),
            &root(),
            "a directory or device node with content",
        );
        // the working directory: a recreated directory object, nothing else
        let cwd = |obj: GhostObj, id: u32| {
            edit(move |m| {
                m.objects.push(Object { id: 9, kind: Some(Kind::Ghost(obj)), ..Default::default() });
                m.processes[0].attrs.as_mut().unwrap().cwd_ghost = id;
            })
        };
        let dir = GhostObj { path: "/tmp/d".into(), mode: libc::S_IFDIR | 0o700, ..Default::default() };
        validate_with(&cwd(dir.clone(), 9), &root()).expect("a removed working directory");
        refused(&cwd(dir.clone(), 8), &root(), "no recreated directory");
        refused(&cwd(dir, 2), &root(), "no recreated directory");
        refused(&cwd(GhostObj { path: "/tmp/a".into(), mode: libc::S_IFREG | 0o600, ..Default::default() }, 9), &root(), "no recreated directory");
        // a removed FIFO is never also one held outside the tree
        let fifo = |deleted: bool, external: &str| {
            let f = FifoObj { path: "/tmp/f".into(), deleted, external: external.into(), ..Default::default() };
            edit(move |m| m.objects.push(Object { id: 9, kind: Some(Kind::Fifo(f)), ..Default::default() }))
        };
        validate_with(&fifo(true, ""), &root()).expect("a removed FIFO");
        refused(&fifo(true, "open in pid 5"), &root(), "removed and held outside");
    }

    #[test]
    fn pipe_packets_lie_inside_the_data() {
        let pipe = |data: &[u8], packets: Vec<u32>| {
            let p = PipeObj { data: data.to_vec(), packets, ..Default::default() };
            edit(move |m| m.objects.push(Object { id: 9, kind: Some(Kind::Pipe(p)), ..Default::default() }))
        };
        validate_with(&pipe(b"aaabbc", vec![3, 2]), &root()).expect("two packets and a plain byte");
        validate_with(&pipe(b"aaabb", vec![3, 2]), &root()).expect("packets only");
        refused(&pipe(b"aaab", vec![3, 2]), &root(), "packets of 5 bytes in 4 buffered");
        refused(&pipe(b"aaab", vec![0, 2]), &root(), "packets of 2 bytes");
        refused(&pipe(b"a", vec![u32::MAX, u32::MAX]), &root(), "packets of 8589934590 bytes");
    }

    #[test]
    fn socket_files_only_for_paths() {
        use stasis_image::model::SockFile;
        let sock = |name: &[u8], mode, unlinked| UnixObj {
            ino: 1,
            sock_type: libc::SOCK_STREAM,
            name: name.to_vec(),
            listening: true,
            name_unlinked: unlinked,
            file: Some(SockFile { uid: 70, gid: 70, mode }),
            ..Default::default()
        };
        assert!(validate_with(&with_unix(vec![sock(b"/run/pg/.s.PGSQL.5432", 0o777, false)]), &root()).is_ok());
        refused(&with_unix(vec![sock(b"/run/x.sock", 0o4777, false)]), &root(), "socket file of mode");
        refused(&with_unix(vec![sock(b"\0abstract", 0o600, false)]), &root(), "socket file of mode");
        refused(&with_unix(vec![sock(b"/run/x.sock", 0o600, true)]), &root(), "socket file of mode");
        refused(&with_unix(vec![sock(b"x.sock", 0o600, false)]), &root(), "socket file of mode");
        // a relative name with the directory it was bound in
        let rel = |name: &[u8], dir: &str| UnixObj { bound_in: dir.into(), ..sock(name, 0o600, false) };
        assert!(validate_with(&with_unix(vec![rel(b"x.sock", "/srv/app")]), &root()).is_ok());
        refused(&with_unix(vec![rel(b"/run/x.sock", "/srv/app")]), &root(), "not a relative path");
        refused(&with_unix(vec![rel(b"\0abstract", "/srv/app")]), &root(), "not a relative path");
        refused(&with_unix(vec![rel(b"x.sock", "srv/app")]), &root(), "directory of its relative name");
        refused(&with_unix(vec![UnixObj { file: None, ..rel(b"x.sock", "/srv") }]), &root(), "not a relative path");
        // a file renamed in the directory of its absolute name
        let ren = |name: &[u8], to: &str| UnixObj { renamed_to: to.into(), ..sock(name, 0o600, false) };
        assert!(validate_with(&with_unix(vec![ren(b"/tmp/.java_pid7.tmp", "/tmp/.java_pid7")]), &root()).is_ok());
        for (name, to) in [(&b"/tmp/a.tmp"[..], "/etc/a"), (b"/tmp/a.tmp", "/tmp/x/a"), (b"/tmp/a", "/tmp/a"), (b"a.tmp", "/tmp/a"), (b"\0abs", "/tmp/a"), (b"/tmp/a.tmp", "tmp/a"), (b"/tmp/a.tmp", "/tmp/../etc/a")] {
            refused(&with_unix(vec![ren(name, to)]), &root(), "renamed");
        }
        refused(&with_unix(vec![UnixObj { file: None, ..ren(b"/tmp/a.tmp", "/tmp/a") }]), &root(), "renamed");
    }

    #[test]
    fn queued_message_credentials_name_the_image() {
        use stasis_image::model::{CredRange, MsgCreds, UnixMsg};
        let me = manifest().processes[0].pid;
        let creds = |pid| Some(MsgCreds { pid, uid: 1000, gid: 1000 });
        let dgram = |pid| UnixObj {
            ino: 1,
            sock_type: libc::SOCK_DGRAM,
            name: b"/tmp/c.sock".to_vec(),
            messages: vec![UnixMsg { data: b"x".to_vec(), creds: creds(pid), ..Default::default() }],
            ..Default::default()
        };
        assert!(validate_with(&with_unix(vec![dgram(me)]), &root()).is_ok());
        assert!(validate_with(&with_unix(vec![dgram(0)]), &root()).is_ok());
        refused(&with_unix(vec![dgram(me + 7)]), &root(), "not a process of the image");
        let peer_cred = |pid| UnixObj { peer_cred: creds(pid), ..dgram(me) };
        assert!(validate_with(&with_unix(vec![peer_cred(me)]), &root()).is_ok());
        refused(&with_unix(vec![peer_cred(me + 7)]), &root(), "peer credentials name pid");
        let stream = |ranges: Vec<(u64, u64)>| UnixObj {
            ino: 1,
            peer_ino: 2,
            sock_type: libc::SOCK_STREAM,
            queue: b"abcdef".to_vec(),
            cred_ranges: ranges.into_iter().map(|(start, end)| CredRange { start, end, creds: creds(me) }).collect(),
            ..Default::default()
        };
        let peer = UnixObj { ino: 2, peer_ino: 1, sock_type: libc::SOCK_STREAM, ..Default::default() };
        assert!(validate_with(&with_unix(vec![stream(vec![(0, 2), (2, 6)]), peer.clone()]), &root()).is_ok());
        for bad in [vec![(0, 7)], vec![(2, 4), (0, 2)], vec![(3, 3)]] {
            refused(&with_unix(vec![stream(bad), peer.clone()]), &root(), "credentials of bytes");
        }
    }

    #[test]
    fn unix_socket_options_are_those_of_the_table() {
        use stasis_image::model::SockOpt;
        let opt = |level, name, value: &[u8]| SockOpt { level, name, value: value.to_vec() };
        let sock = |opts| UnixObj { ino: 1, sock_type: libc::SOCK_STREAM, sockopts: opts, ..Default::default() };
        let timeo = opt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &[0; 16]);
        let lowat = opt(libc::SOL_SOCKET, libc::SO_RCVLOWAT, &3i32.to_le_bytes());
        validate_with(&with_unix(vec![sock(vec![timeo.clone(), lowat.clone()])]), &root()).unwrap();
        // a value of the wrong size, an option twice, one of IP sockets, one the unix
        // record keeps in its own fields, one not in the table
        refused(&with_unix(vec![sock(vec![opt(libc::SOL_SOCKET, libc::SO_RCVTIMEO, &[0; 8])])]), &root(), "value of 8 bytes");
        refused(&with_unix(vec![sock(vec![lowat.clone(), lowat])]), &root(), "saved twice");
        refused(&with_unix(vec![sock(vec![opt(libc::SOL_IP, libc::IP_TTL, &[1, 0, 0, 0])])]), &root(), "not an option stasis restores");
        refused(&with_unix(vec![sock(vec![opt(libc::SOL_SOCKET, libc::SO_RCVBUF, &[0, 1, 0, 0])])]), &root(), "not an option stasis restores");
        refused(&with_unix(vec![sock(vec![opt(libc::SOL_SOCKET, 999, &[0; 4])])]), &root(), "not an option stasis restores");
        refused(&with_unix(vec![sock(vec![timeo; 200])]), &root(), "socket options");
        // an out-of-band byte: inside the queue of a stream socket without fds or creds
        let peer = UnixObj { ino: 2, peer_ino: 1, sock_type: libc::SOCK_STREAM, ..Default::default() };
        let oob = |at, ty| UnixObj { peer_ino: 2, sock_type: ty, queue: b"ab!cd".to_vec(), oob_at: Some(at), ..sock(vec![]) };
        validate_with(&with_unix(vec![oob(2, libc::SOCK_STREAM), peer.clone()]), &root()).unwrap();
        refused(&with_unix(vec![oob(5, libc::SOCK_STREAM), peer.clone()]), &root(), "out-of-band byte at 5");
        refused(&with_unix(vec![oob(0, libc::SOCK_SEQPACKET), UnixObj { sock_type: libc::SOCK_SEQPACKET, ..peer.clone() }]), &root(), "out-of-band");
        let creds = stasis_image::model::CredRange { start: 0, end: 5, creds: None };
        refused(&with_unix(vec![UnixObj { cred_ranges: vec![creds], ..oob(1, libc::SOCK_STREAM) }, peer]), &root(), "out-of-band");
    }

    #[test]
    fn unix_socket_records_are_bounded() {
        let dgram = |ino, name: &[u8]| UnixObj { ino, sock_type: libc::SOCK_DGRAM, name: name.to_vec(), ..Default::default() };
        let msg = |n: usize| UnixMsg { data: vec![0; n], ..Default::default() };
        // a named datagram socket with messages, a pair with messages: fine
        let named = UnixObj { messages: vec![msg(3), msg(0)], ..dgram(1, b"/tmp/x.sock") };
        let a = UnixObj { peer_ino: 3, messages: vec![msg(1)], ..dgram(2, b"") };
        let b = UnixObj { peer_ino: 2, ..dgram(3, b"") };
        validate_with(&with_unix(vec![named.clone(), a.clone(), b.clone()]), &root()).unwrap();
        // messages nowhere to send back to: unnamed and unpaired, or a one-way peer
        refused(&with_unix(vec![UnixObj { messages: vec![msg(1)], ..dgram(1, b"") }]), &root(), "cannot be sent back");
        refused(&with_unix(vec![a.clone(), UnixObj { peer_ino: 0, ..b.clone() }]), &root(), "cannot be sent back");
        // sizes
        refused(&with_unix(vec![UnixObj { messages: vec![msg(65 << 20)], ..named.clone() }]), &root(), "queued messages");
        refused(&with_unix(vec![dgram(1, &[b'/'; 109])]), &root(), "at most 108");
        refused(&with_unix(vec![UnixObj { peer_name: vec![b'a'; 200], ..dgram(1, b"") }]), &root(), "at most 108");
        refused(&with_unix(vec![UnixObj { sock_type: 99, ..dgram(1, b"") }]), &root(), "socket type 99");
        refused(&with_unix(vec![UnixObj { peek_off: Some(-5), ..dgram(1, b"") }]), &root(), "options out of range");
        refused(&with_unix(vec![UnixObj { listening: true, ..dgram(1, b"/tmp/l") }]), &root(), "listening datagram");
        // waiting connections: each a socket of the image waiting on it, within the backlog
        let stream = |ino| UnixObj { ino, sock_type: libc::SOCK_STREAM, ..Default::default() };
        let l = UnixObj { listening: true, backlog: 1, name: b"/tmp/l".to_vec(), waiting: vec![5, 6], ..stream(4) };
        let c = |ino| UnixObj { connecting_to: 4, peer_name: b"/tmp/l".to_vec(), ..stream(ino) };
        validate_with(&with_unix(vec![l.clone(), c(5), c(6)]), &root()).unwrap();
        refused(&with_unix(vec![UnixObj { waiting: vec![5, 6, 7], ..l.clone() }, c(5), c(6), c(7)]), &root(), "backlog 1");
        refused(&with_unix(vec![UnixObj { waiting: vec![5, 9], ..l.clone() }, c(5)]), &root(), "waiting connection 9");
        refused(&with_unix(vec![UnixObj { connecting_to: 4, ..stream(5) }]), &root(), "without the listener's name");
        // the dump's mark of a waiting connection with bytes sent never reaches an image
        refused(&with_unix(vec![l.clone(), UnixObj { peer_gone: true, ..c(5) }, c(6)]), &root(), "also connected (or closed)");
    }

    #[test]
    fn file_owners_name_the_image() {
        let owned = |own: FileOwner| {
            edit(|m| {
                m.objects.push(Object { id: 10, kind: Some(Kind::Eventfd(EventfdObj::default())), owner: Some(own), ..Default::default() });
                m.processes[0].fds.push(Fd { fd: 3, object_id: 10, cloexec: false });
            })
        };
        validate_with(&owned(FileOwner { kind: 1, pid: 100, signal: 36, o_async: true }), &root()).unwrap();
        validate_with(&owned(FileOwner { kind: 0, pid: 100, signal: 0, o_async: true }), &root()).unwrap();
        refused(&owned(FileOwner { kind: 1, pid: 4242, signal: 0, o_async: true }), &root(), "process 4242");
        refused(&owned(FileOwner { kind: 0, pid: 4242, signal: 0, o_async: true }), &root(), "thread 4242");
        refused(&owned(FileOwner { kind: 2, pid: 4242, signal: 0, o_async: true }), &root(), "process group 4242");
        refused(&owned(FileOwner { kind: 7, pid: 100, signal: 0, o_async: true }), &root(), "owner kind 7");
        refused(&owned(FileOwner { kind: 1, pid: 100, signal: 9, o_async: true }), &root(), "signal 9");
        refused(&owned(FileOwner { kind: 1, pid: 100, signal: 65, o_async: true }), &root(), "signal 65");
    }

    fn with_fd_object(kind: Kind) -> Manifest {
        edit(|m| {
            m.objects.push(Object { id: 10, kind: Some(kind), ..Default::default() });
            m.processes[0].fds.push(Fd { fd: 3, object_id: 10, cloexec: false });
        })
    }

    /// A pidfd names a process (or, PIDFD_THREAD, a thread) of the image, or none (a
    /// reaped one); only the flags a pidfd can have.
    #[test]
    fn pidfds_name_the_image() {
        let pidfd = |pid: i32, flags: u32| with_fd_object(Kind::Pidfd(PidfdObj { pid, flags }));
        let thread = crate::fdkinds::pidfd::PIDFD_THREAD;
        validate_with(&pidfd(100, 2), &root()).unwrap();
        validate_with(&pidfd(0, 2 | libc::O_NONBLOCK as u32), &root()).unwrap();
        validate_with(&pidfd(100, 2 | thread), &root()).unwrap();
        refused(&pidfd(4242, 2), &root(), "pid 4242");
        refused(&pidfd(4242, 2 | thread), &root(), "not a thread");
        refused(&pidfd(-1, 2), &root(), "pid -1");
        refused(&pidfd(100, 2 | libc::O_APPEND as u32), &root(), "flags");
        // a zombie is a process a pidfd may name (not a thread: it has none)
        let mut m = pidfd(101, 2);
        let mut z = process(101, 100);
        z.zombie = true;
        z.threads.clear();
        m.processes.push(z);
        validate_with(&m, &root()).unwrap();
        // a holder in a PID namespace of its own cannot name its parent
        let mut m = pidfd(100, 2);
        let mut c = process(102, 100);
        c.ns_pids = vec![102, 1];
        c.threads[0].ns_tids = vec![102, 1];
        c.fds.push(Fd { fd: 3, object_id: 10, cloexec: false });
        m.processes.push(c);
        refused(&m, &root(), "not in its PID namespace");
    }

    /// A namespace fd is of a known type, stasis's own or a live process's of the image.
    #[test]
    fn namespace_fds_name_the_image() {
        let ns = |ty: &str, member: i32, for_children: bool| {
            with_fd_object(Kind::NsFd(NsFdObj { ns_type: ty.into(), ino: 4026531840, member, for_children }))
        };
        validate_with(&ns("net", 0, false), &root()).unwrap();
        validate_with(&ns("uts", 100, false), &root()).unwrap();
        validate_with(&ns("pid", 100, true), &root()).unwrap();
        refused(&ns("user", 0, false), &root(), "namespace type \"user\"");
        refused(&ns("../../etc/x", 0, false), &root(), "namespace type");
        refused(&ns("net", 4242, false), &root(), "pid 4242");
        refused(&ns("net", 100, true), &root(), "for-children net");
        refused(&ns("pid", 0, true), &root(), "for-children pid");
    }

    /// fanotify: known init and mark flags, 32-bit masks, absolute paths, bounded marks.
    #[test]
    fn fanotify_records_bounded() {
        let fan = |init_flags: u32, m: FanotifyMark| with_fd_object(Kind::Fanotify(FanotifyObj { init_flags, event_flags: 0, flags: 2, marks: vec![m] }));
        let mark = FanotifyMark { kind: 0, path: "/tmp/f".into(), dev: 1, ino: 2, mflags: 0x40, mask: 0x2, ignored_mask: 0x20 };
        validate_with(&fan(3, mark.clone()), &root()).unwrap();
        validate_with(&fan(0x200, FanotifyMark { kind: 2, ..mark.clone() }), &root()).unwrap();
        refused(&fan(0x8000_0000, mark.clone()), &root(), "fanotify_init flags");
        refused(&fan(3, FanotifyMark { kind: 3, ..mark.clone() }), &root(), "kind 3");
        refused(&fan(3, FanotifyMark { mflags: 0x1, ..mark.clone() }), &root(), "flags 0x1");
        refused(&fan(3, FanotifyMark { mask: 1 << 40, ..mark.clone() }), &root(), "masks");
        refused(&fan(3, FanotifyMark { path: "rel/x".into(), ..mark.clone() }), &root(), "fanotify mark");
        refused(&fan(3, FanotifyMark { path: "/a\0b".into(), ..mark }), &root(), "fanotify mark");
        let many = with_fd_object(Kind::Fanotify(FanotifyObj { marks: vec![FanotifyMark { path: "/x".into(), ..Default::default() }; (1 << 16) + 1], ..Default::default() }));
        refused(&many, &root(), "marks (at most");
    }

    /// A lease is a whole-file lock on an fd of the process.
    #[test]
    fn leases_are_whole_file_locks_of_an_fd() {
        let lease = |fd: i32, start: u64, len: u64| {
            edit(|m| {
                m.objects.push(Object { id: 10, kind: Some(Kind::File(FileObj { path: "/tmp/x".into(), ..Default::default() })), ..Default::default() });
                m.processes[0].fds.push(Fd { fd: 3, object_id: 10, cloexec: false });
                m.processes[0].locks = vec![FileLock { kind: "lease".into(), fd, write: true, start, len }];
            })
        };
        validate_with(&lease(3, 0, 0), &root()).unwrap();
        refused(&lease(4, 0, 0), &root(), "file lock");
        refused(&lease(3, 1, 0), &root(), "file lock");
        refused(&lease(3, 0, 5), &root(), "file lock");
    }

    #[test]
    fn a_sound_manifest_passes() {
        validate_with(&manifest(), &root()).unwrap();
        validate_with(&manifest(), &user()).unwrap();
    }

    #[test]
    fn runs_only_into_shared_memory_or_private_memory() {
        // a run "of" the mapped file: restore would write it into the file on disk
        refused(&edit(|m| m.index.runs[1].object_id = 1), &root(), "not shared memory");
        refused(&edit(|m| m.index.runs[1].object_id = 77), &root(), "no such object");
        // past the object's end, or wrapping
        refused(&edit(|m| m.index.runs[1].addr = 2 * PAGE), &root(), "past the end");
        refused(&edit(|m| m.index.runs[1].addr = u64::MAX & !(PAGE - 1)), &root(), "wraps");
        refused(&edit(|m| m.index.runs[2].count = 2), &root(), "past the end");
        // private memory: a live process, inside one VMA that gets pages
        refused(&edit(|m| m.index.runs[0].pid = 4242), &root(), "not a live process");
        refused(&edit(|m| m.index.runs[0].addr = 0x60_f000), &root(), "not inside one VMA");
        refused(&edit(|m| m.index.runs[0].addr = 0x50_0000), &root(), "not inside one VMA");
        validate_with(&edit(|m| m.index.runs[0].addr = 0x40_0000), &root()).unwrap(); // private file: pages
        refused(&edit(|m| m.index.runs[0].addr = 0x70_0000), &root(), "not anonymous");
        refused(&edit(|m| m.index.runs[0].count = 0), &root(), "no pages");
        refused(&edit(|m| m.index.runs[0].addr = 0x60_0800), &root(), "page-aligned");
        // pid 0: only in a one-process image
        validate_with(&edit(|m| m.index.runs[0].pid = 0), &root()).unwrap();
        let two = edit(|m| {
            m.index.runs[0].pid = 0;
            m.processes.push(process(101, 100));
        });
        refused(&two, &root(), "not a live process");
    }

    /// The network lock names the one nftables table restore may delete: only a name
    /// the dump of this root makes, on the root, in known namespaces, with the feature.
    #[test]
    fn network_lock_record() {
        let locked = |table: &str, ns: Vec<u64>| {
            edit(|m| {
                m.processes[0].net_lock = table.into();
                m.processes[0].net_lock_ns = ns;
                m.required_features = vec![stasis_image::FEATURE_NETWORK_LOCK.into()];
            })
        };
        validate_with(&locked("stasis-100-5f3a9c", vec![0]), &root()).unwrap();
        for bad in ["filter", "stasis-101-5f3a9c", "stasis-100-", "stasis-100-5F3A", "stasis-100-5f;flush ruleset", "stasis-100-12345678901234567"] {
            refused(&locked(bad, vec![0]), &root(), "network lock table");
        }
        refused(&locked("stasis-100-ab", vec![]), &root(), "no network namespace");
        refused(&locked("stasis-100-ab", vec![0, 0]), &root(), "listed twice");
        refused(&locked("stasis-100-ab", vec![4026531840]), &root(), "unknown");
        refused(&edit(|m| m.processes[0].net_lock = "stasis-100-ab".into()), &root(), "network-lock feature");
        refused(&edit(|m| m.processes[0].net_lock_ns = vec![0]), &root(), "without a lock");
        let child = edit(|m| {
            let mut c = process(101, 100);
            c.net_lock = "stasis-100-ab".into();
            m.processes.push(c);
        });
        refused(&child, &root(), "other than the root");
    }

    /// An aio context's ring (`Vma.aio`): the ring state only on an aio ring VMA and
    /// always there; size bounded and consistent with its slots, head/tail inside them,
    /// as many events as they leave unreaped, a plain shared mapping, page-aligned and
    /// clear of the other VMAs.
    #[test]
    fn aio_rings_are_consistent() {
        let ring = |start: u64, pages: u64, head: u32, tail: u32, events: usize| Vma {
            start,
            end: start + pages * PAGE,
            prot: (libc::PROT_READ | libc::PROT_WRITE) as u32,
            shared: true,
            kind: VmaKind::AioRing as i32,
            name: "/[aio] (deleted)".into(),
            aio: Some(AioRing { nr: (pages * 128 - 1) as u32, head, tail, events: vec![AioEvent::default(); events] }),
            ..Default::default()
        };
        let with = |v: Vma| edit(|m| m.processes[0].vmas.push(v));
        // a wrapped ring: head 120, tail 3 of 127 slots, 10 unreaped
        validate_with(&with(ring(0x80_0000, 1, 120, 3, 10)), &root()).unwrap();
        validate_with(&with(ring(0x80_0000, 4, 2, 7, 5)), &root()).unwrap();
        refused(&with(ring(0x80_0000, 1, 120, 3, 9)), &root(), "leave 10 unreaped");
        refused(&with(ring(0x80_0000, 1, 127, 3, 3)), &root(), "not below its 127 slots");
        refused(&with(ring(0x80_0000, 1, 0, 200, 200)), &root(), "not below");
        let mut v = ring(0x80_0000, 2, 0, 0, 0);
        v.aio.as_mut().unwrap().nr = 127;
        refused(&with(v), &root(), "says 127 slots, but a ring of 8192 bytes has 255");
        let big = crate::aio::MAX_RING_PAGES + 1;
        let mut v = ring(0x8000_0000, 1, 0, 0, 0);
        v.end = v.start + big * PAGE;
        refused(&with(v), &root(), &format!("of {big} pages"));
        // the ring's address: page-aligned, not on another VMA
        let mut v = ring(0x80_0000, 1, 0, 0, 0);
        (v.start, v.end) = (0x80_0800, 0x80_1800);
        refused(&with(v), &root(), "malformed or overlaps");
        refused(&edit(|m| m.processes[0].vmas.insert(2, ring(0x60_f000, 1, 0, 0, 0))), &root(), "malformed or overlaps");
        // the kind and the state go together
        let mut v = ring(0x80_0000, 1, 0, 0, 0);
        v.aio = None;
        refused(&with(v), &root(), "no aio ring, or none on one");
        refused(&edit(|m| m.processes[0].vmas[1].aio = Some(AioRing::default())), &root(), "no aio ring, or none on one");
        // a plain shared mapping of its own
        for f in [|v: &mut Vma| v.shared = false, |v: &mut Vma| v.object_id = 2, |v: &mut Vma| v.pages_saved = 1, |v: &mut Vma| v.pgoff = PAGE] {
            let mut v = ring(0x80_0000, 1, 0, 0, 0);
            f(&mut v);
            refused(&with(v), &root(), "no plain shared mapping");
        }
        let mut v = ring(0x80_0000, 1, 0, 0, 0);
        v.prot = 0x10;
        refused(&with(v), &root(), "protection bits 0x10");
    }

    #[test]
    fn hugetlb_page_sizes_match_bounds_and_objects() {
        const H: u64 = 2 << 20;
        // shared hugetlb memory: VMA and object with the same size, aligned
        let huge_shm = |m: &mut Manifest| {
            let v = &mut m.processes[0].vmas[2];
            (v.start, v.end, v.huge_page_size) = (4 * H, 5 * H, H);
            *m.objects[1].shmem_mut().unwrap() = ShmemObj { ino: 5, size: H, huge_page_size: H };
        };
        validate_with(&edit(huge_shm), &root()).unwrap();
        refused(&edit(|m| m.processes[0].vmas[1].huge_page_size = H), &root(), "not multiples");
        refused(&edit(|m| m.processes[0].vmas[1].huge_page_size = 3 << 20), &root(), "huge page size");
        refused(&edit(|m| m.processes[0].vmas[1].huge_page_size = 1 << 40), &root(), "huge page size");
        refused(&edit(|m| m.processes[0].vmas[1].huge_page_size = PAGE), &root(), "huge page size");
        // the VMA and its object disagree (either way)
        refused(&edit(|m| { huge_shm(m); m.processes[0].vmas[2].huge_page_size = 0 }), &root(), "has huge pages of");
        refused(&edit(|m| { huge_shm(m); m.objects[1].shmem_mut().unwrap().huge_page_size = 0 }), &root(), "has huge pages of");
        // (no VMA maps it: the object's own check)
        refused(&edit(|m| { m.processes[0].vmas.pop(); m.objects[1].shmem_mut().unwrap().huge_page_size = H }), &root(), "shared memory (object 2)");
        refused(&edit(|m| m.objects[2].sysv_shm_mut().unwrap().huge_page_size = 12345), &root(), "SysV segment (object 3)");
        refused(
            &edit(|m| m.processes[0].vmas.push(Vma { start: 2 << 30, end: (2 << 30) + H, kind: VmaKind::Vdso as i32, huge_page_size: H, ..Default::default() })),
            &root(),
            "special mapping",
        );
        let dir = |h: u64| Object { id: 4, kind: Some(Kind::Ghost(GhostObj { path: "/d".into(), mode: libc::S_IFDIR | 0o755, huge_page_size: h, ..Default::default() })), ..Default::default() };
        validate_with(&edit(|m| m.objects.push(dir(0))), &root()).unwrap();
        refused(&edit(|m| m.objects.push(dir(H))), &root(), "huge pages on something other");
    }

    #[test]
    fn removed_root_directory_is_a_recreated_directory() {
        let dir = Object { id: 4, kind: Some(Kind::Ghost(GhostObj { path: "/jail".into(), mode: libc::S_IFDIR | 0o755, ..Default::default() })), ..Default::default() };
        let with_root = |id: u32| {
            let dir = dir.clone();
            edit(move |m| {
                m.objects.push(dir);
                m.processes[0].attrs.as_mut().unwrap().root_ghost = id;
            })
        };
        validate_with(&with_root(4), &root()).unwrap();
        refused(&with_root(1), &root(), "removed root directory (object 1)");
        refused(&with_root(99), &root(), "removed root directory (object 99)");
    }

    #[test]
    fn guard_regions_inside_their_vma() {
        // VMA 1 is anonymous, 0x60_0000-0x61_0000 (16 pages)
        validate_with(&edit(|m| m.processes[0].vmas[1].guards = vec![0, 1, 4, 2, 15, 1]), &root()).unwrap();
        refused(&edit(|m| m.processes[0].vmas[1].guards = vec![15, 2]), &root(), "past the VMA");
        refused(&edit(|m| m.processes[0].vmas[1].guards = vec![3, 0]), &root(), "empty");
        refused(&edit(|m| m.processes[0].vmas[1].guards = vec![4, 2, 5, 1]), &root(), "out of order");
        refused(&edit(|m| m.processes[0].vmas[1].guards = vec![u64::MAX, 2]), &root(), "past the VMA");
        refused(&edit(|m| m.processes[0].vmas[1].guards = vec![1]), &root(), "pairs");
        refused(&edit(|m| m.processes[0].vmas[2].guards = vec![0, 1]), &root(), "not anonymous");
    }

    #[test]
    fn object_sizes_and_paths() {
        refused(&edit(|m| m.objects[1].shmem_mut().unwrap().size = 0), &root(), "shared memory (object 2)");
        refused(&edit(|m| m.objects[1].shmem_mut().unwrap().size = u64::MAX), &root(), "shared memory (object 2)");
        refused(&edit(|m| m.objects[2].sysv_shm_mut().unwrap().size = 1 << 60), &root(), "SysV segment");
        refused(&edit(|m| m.objects[0].mapped_file_mut().unwrap().path = "bin/w".into()), &root(), "not an absolute path");
        refused(&edit(|m| m.objects[0].mapped_file_mut().unwrap().path = "/bin/\0w".into()), &root(), "NUL");
        refused(&edit(|m| m.objects[0].mapped_file_mut().unwrap().path = format!("/{}", "a".repeat(5000))), &root(), "bytes");
        refused(&edit(|m| m.objects[2].id = 1), &root(), "duplicate");
        refused(&edit(|m| m.processes[0].vmas[2].object_id = 1), &root(), "shared-memory object");
    }

    /// A manifest with one sound netlink and one sound packet socket (objects 4, 5), edited.
    /// The root leads its session, whose terminal is a pty of the image (master and
    /// slave descriptions), foreground group its own; `f` edits it.
    fn with_tty(f: impl FnOnce(&mut Manifest)) -> Manifest {
        edit(|m| {
            let t = TtyObj { index: 3, path: "/dev/pts/3".into(), cc: vec![3; 19], rows: 24, cols: 80, session: 100, fg_pgrp: 100, slave_data: b"ab".to_vec(), ..Default::default() };
            m.objects.push(Object { id: 10, kind: Some(Kind::Tty(t)), ..Default::default() });
            let side = |side, id| Object { id, kind: Some(Kind::TtyFd(TtyFdObj { tty_id: 10, side, flags: 2 })), ..Default::default() };
            m.objects.push(side(crate::tty::MASTER, 11));
            m.objects.push(side(crate::tty::SLAVE, 12));
            let a = m.processes[0].attrs.as_mut().unwrap();
            (a.sid, a.pgid) = (100, 100);
            m.processes[0].ctty = 12;
            f(m);
            m.process = m.processes[0].clone();
        })
    }

    #[test]
    fn terminals_checked() {
        validate_with(&with_tty(|_| {}), &root()).unwrap();
        fn tty(m: &mut Manifest) -> &mut TtyObj {
            m.objects.iter_mut().find_map(|o| o.tty_mut()).unwrap()
        }
        fn desc(m: &mut Manifest, id: u32) -> &mut TtyFdObj {
            m.objects.iter_mut().find(|o| o.id == id).and_then(|o| o.tty_fd_mut()).unwrap()
        }
        refused(&with_tty(|m| tty(m).cc = vec![0; 20]), &root(), "20 control characters");
        refused(&with_tty(|m| tty(m).line = 2), &root(), "line discipline 2");
        refused(&with_tty(|m| tty(m).slave_data = vec![0; 4096]), &root(), "queues of 0 and 4096 bytes");
        refused(&with_tty(|m| tty(m).rows = 1 << 16), &root(), "window size");
        refused(&with_tty(|m| tty(m).path = "a\0b".into()), &root(), "terminal (object 10): path");
        refused(&with_tty(|m| tty(m).fg_pgrp = 4242), &root(), "foreground group 4242");
        refused(&with_tty(|m| tty(m).session = -1), &root(), "session -1");
        refused(&with_tty(|m| desc(m, 12).tty_id = 99), &root(), "missing terminal 99");
        refused(&with_tty(|m| desc(m, 12).side = 4), &root(), "side 4");
        refused(&with_tty(|m| desc(m, 12).side = crate::tty::MASTER), &root(), "two open descriptions of its master");
        refused(&with_tty(|m| desc(m, 12).flags = libc::O_APPEND as u32), &root(), "O_APPEND");
        // an outside terminal is never held as a master
        refused(&with_tty(|m| { tty(m).external = true; m.processes[0].ctty = 0 }), &root(), "side 1 of an outside terminal");
        // the controlling terminal: a slave of a pty, taken by its session's leader
        refused(&with_tty(|m| m.processes[0].ctty = 11), &root(), "not a slave description");
        refused(&with_tty(|m| m.processes[0].ctty = 1), &root(), "not a slave description");
        refused(&with_tty(|m| (tty(m).session, tty(m).fg_pgrp) = (7, 0)), &root(), "not the live leader of its session 7");
        refused(&with_tty(|m| { m.processes[0].attrs.as_mut().unwrap().sid = 5; (tty(m).session, tty(m).fg_pgrp) = (5, 0) }), &root(), "not the live leader");
    }

    #[test]
    fn terminal_devices_checked() {
        let with_dev = |path: &str, rdev: u64, f: &dyn Fn(&mut Manifest)| {
            edit(|m| {
                let t = TtyObj { index: -1, device: true, rdev, path: path.into(), ..Default::default() };
                m.objects.push(Object { id: 20, kind: Some(Kind::Tty(t)), ..Default::default() });
                m.objects.push(Object { id: 21, kind: Some(Kind::TtyFd(TtyFdObj { tty_id: 20, side: crate::tty::DEVICE, flags: 2 })), ..Default::default() });
                m.processes[0].fds.push(Fd { fd: 5, object_id: 21, cloexec: false });
                f(m);
                m.process = m.processes[0].clone();
            })
        };
        validate_with(&with_dev("/dev/console", libc::makedev(5, 1), &|_| {}), &root()).unwrap();
        validate_with(&with_dev("/dev/ttyS1", libc::makedev(4, 65), &|_| {}), &root()).unwrap();
        // a path that is not that device's, a device that is not a terminal of that kind
        refused(&with_dev("/etc/passwd", libc::makedev(5, 1), &|_| {}), &root(), "terminal device (object 20)");
        refused(&with_dev("/dev/tty1", libc::makedev(4, 2), &|_| {}), &root(), "terminal device (object 20)");
        refused(&with_dev("/dev/sda", libc::makedev(8, 0), &|_| {}), &root(), "terminal device (object 20)");
        // a device is never a controlling terminal restore takes, nor a pty side
        refused(&with_dev("/dev/console", libc::makedev(5, 1), &|m| m.processes[0].ctty = 21), &root(), "not a slave description");
        refused(
            &with_dev("/dev/console", libc::makedev(5, 1), &|m| m.objects.iter_mut().for_each(|o| if let Some(d) = o.tty_fd_mut() { d.side = crate::tty::SLAVE })),
            &root(),
            "of a terminal device",
        );
    }

    fn with_sockets(f: impl FnOnce(&mut NetlinkObj, &mut PacketObj)) -> Manifest {
        let sock = SockCommon {
            rcvbuf: 1 << 17,
            filter: vec![ClassicBpfInsn { code: 6, jt: 0, jf: 0, k: 0xffff }],
            options: vec![libc::SO_PASSCRED, 1, libc::SO_MARK, 7],
            ..Default::default()
        };
        let mut n = NetlinkObj { protocol: 0, sock_type: libc::SOCK_RAW, portid: 100, groups: vec![1, 33], sock: Some(sock.clone()), ..Default::default() };
        let mut p = PacketObj {
            sock_type: libc::SOCK_RAW,
            protocol: 0x0300,
            ifindex: 1,
            ifname: "lo".into(),
            vnet_hdr_sz: 12,
            fanout: Some(PacketFanout { id: 1234, mode: 1, flags: 0x80 }),
            mclist: vec![PacketMclist { ifindex: 1, ifname: "lo".into(), mr_type: 1, count: 2, addr: vec![] }],
            sock: Some(sock),
            ..Default::default()
        };
        f(&mut n, &mut p);
        edit(|m| {
            m.objects.push(Object { id: 4, kind: Some(Kind::Netlink(n)), ..Default::default() });
            m.objects.push(Object { id: 5, kind: Some(Kind::Packet(p)), ..Default::default() });
        })
    }

    fn sk<T: HasSock>(o: &mut T) -> &mut SockCommon {
        o.sock_mut()
    }

    trait HasSock {
        fn sock_mut(&mut self) -> &mut SockCommon;
    }

    impl HasSock for NetlinkObj {
        fn sock_mut(&mut self) -> &mut SockCommon {
            self.sock.get_or_insert_with(Default::default)
        }
    }

    impl HasSock for PacketObj {
        fn sock_mut(&mut self) -> &mut SockCommon {
            self.sock.get_or_insert_with(Default::default)
        }
    }

    #[test]
    fn netlink_and_packet_values_bounded() {
        validate_with(&with_sockets(|_, _| {}), &root()).unwrap();
        let nl = "netlink socket (object 4)";
        let pk = "packet socket (object 5)";
        refused(&with_sockets(|n, _| n.protocol = 3), &root(), "unknown netlink protocol 3");
        refused(&with_sockets(|n, _| n.protocol = -1), &root(), nl);
        refused(&with_sockets(|n, _| n.sock_type = libc::SOCK_STREAM), &root(), nl);
        refused(&with_sockets(|n, _| n.groups = vec![0]), &root(), nl);
        refused(&with_sockets(|n, _| n.groups = vec![33, 1]), &root(), nl);
        refused(&with_sockets(|n, _| n.groups = vec![1, 1]), &root(), nl);
        refused(&with_sockets(|n, _| n.groups = vec![1 << 20]), &root(), nl);
        refused(&with_sockets(|n, _| n.groups = (1..=2000).collect()), &root(), "2000 multicast groups");
        refused(&with_sockets(|n, _| n.flags = libc::O_ASYNC as u32), &root(), nl);
        refused(&with_sockets(|n, _| sk(n).rcvbuf = u32::MAX), &root(), nl);
        refused(&with_sockets(|n, _| sk(n).options.push(libc::SO_DEBUG)), &root(), nl);
        refused(&with_sockets(|n, _| sk(n).options.extend([libc::SO_DEBUG, 1])), &root(), "socket option 1,");
        refused(&with_sockets(|n, _| sk(n).options.extend([libc::SO_PASSCRED, 1])), &root(), "SO_PASSCRED = 1");
        refused(&with_sockets(|n, _| sk(n).options[1] = 2), &root(), "SO_PASSCRED = 2");
        refused(&with_sockets(|n, _| sk(n).options[3] = -1), &root(), "SO_MARK = -1");
        refused(&with_sockets(|n, _| sk(n).filter = vec![ClassicBpfInsn::default(); 4097]), &root(), "4097 instructions");
        refused(&with_sockets(|_, p| p.sock_type = 10), &root(), pk);
        refused(&with_sockets(|_, p| p.protocol = 0x10000), &root(), pk);
        refused(&with_sockets(|_, p| p.ifname = String::new()), &root(), pk);
        refused(&with_sockets(|_, p| p.ifname = "a/b".into()), &root(), "interface name");
        refused(&with_sockets(|_, p| p.ifname = "x".repeat(16)), &root(), "interface name");
        refused(&with_sockets(|_, p| p.ifindex = -1), &root(), pk);
        refused(&with_sockets(|_, p| p.version = 3), &root(), "PACKET_VERSION 3");
        refused(&with_sockets(|_, p| p.reserve = u32::MAX), &root(), "PACKET_RESERVE");
        refused(&with_sockets(|_, p| p.timestamp = 1 << 31), &root(), "PACKET_TIMESTAMP");
        refused(&with_sockets(|_, p| p.vnet_hdr_sz = 11), &root(), "PACKET_VNET_HDR_SZ 11");
        refused(&with_sockets(|_, p| p.sock_type = libc::SOCK_DGRAM), &root(), "PACKET_VNET_HDR_SZ 12");
        refused(&with_sockets(|_, p| p.fanout.as_mut().unwrap().mode = 6), &root(), "fanout group 1234 mode 6");
        refused(&with_sockets(|_, p| p.fanout.as_mut().unwrap().flags = 0x20), &root(), "fanout");
        refused(&with_sockets(|_, p| p.fanout.as_mut().unwrap().id = 1 << 16), &root(), "fanout");
        refused(&with_sockets(|_, p| p.mclist[0].count = 0), &root(), "membership");
        refused(&with_sockets(|_, p| p.mclist[0].count = 1 << 20), &root(), "membership");
        refused(&with_sockets(|_, p| p.mclist[0].addr = vec![0; 9]), &root(), "membership");
        refused(&with_sockets(|_, p| p.mclist[0].mr_type = 4), &root(), "membership");
        refused(&with_sockets(|_, p| p.mclist = vec![p.mclist[0].clone(); 257]), &root(), "257 memberships");
        refused(&with_sockets(|_, p| sk(p).filter = vec![ClassicBpfInsn::default(); 4097]), &root(), "4097 instructions");
        refused(&with_sockets(|_, p| sk(p).filter[0].jt = 256), &root(), "filter instruction");
        refused(&with_sockets(|_, p| sk(p).filter[0].code = 1 << 16), &root(), "filter instruction");
    }

    /// The packet socket (object 5) with a sound TPACKET_V2 receive ring of 16 frames of
    /// 1024 bytes, held as fd 7 and mapped at 0x7f00_0000_0000; `f` edits ring and VMA.
    fn with_ring(f: impl FnOnce(&mut PacketRing, &mut Vma)) -> Manifest {
        let frame = |index| PacketFrame { index, data: vec![1; 64] };
        let mut r = PacketRing { block_size: 4096, block_nr: 4, frame_size: 1024, frame_nr: 16, head: 2, frames: vec![frame(0), frame(1), frame(15)] };
        let mut v = Vma { start: 0x7f00_0000_0000, end: 0x7f00_0000_4000, shared: true, kind: VmaKind::PacketRing as i32, object_id: 5, ..Default::default() };
        f(&mut r, &mut v);
        let mut m = with_sockets(|_, p| {
            p.version = 1;
            p.rx_ring = Some(r);
        });
        m.processes[0].fds.push(Fd { fd: 7, object_id: 5, cloexec: false });
        m.processes[0].vmas.push(v);
        m.processes[0].vmas.sort_by_key(|v| v.start);
        m.process = m.processes[0].clone();
        m
    }

    #[test]
    fn packet_rings_bounded() {
        validate_with(&with_ring(|_, _| {}), &root()).unwrap();
        // (a ring without a mapping: the ring's own check answers)
        let bad_ring = |f: &dyn Fn(&mut PacketRing), why: &str| {
            let mut m = with_ring(|r, _| f(r));
            m.processes[0].vmas.retain(|v| v.kind != VmaKind::PacketRing as i32);
            m.process = m.processes[0].clone();
            refused(&m, &root(), why)
        };
        bad_ring(&|r| r.block_size = 1000, "receive ring: 4 blocks of 1000 bytes");
        bad_ring(&|r| r.frame_size = 24, "receive ring");
        bad_ring(&|r| r.frame_size = 1000, "receive ring");
        bad_ring(&|r| r.frame_size = 8192, "receive ring");
        bad_ring(&|r| r.frame_nr = 17, "receive ring");
        bad_ring(&|r| (r.block_size, r.block_nr, r.frame_nr) = (1 << 22, 1 << 9, 1 << 21), "receive ring");
        bad_ring(&|r| (r.block_size, r.frame_size, r.block_nr, r.frame_nr) = (1 << 12, 32, 1 << 14, 1 << 21), "receive ring");
        bad_ring(&|r| r.head = 16, "next frame 16 of 16");
        bad_ring(&|r| r.frames.swap(0, 2), "frames in order");
        bad_ring(&|r| r.frames[1].index = 0, "frames in order");
        bad_ring(&|r| r.frames[2].index = 16, "frame 16");
        bad_ring(&|r| r.frames[0].data = vec![0; 31], "frame 0 of 31 bytes");
        bad_ring(&|r| r.frames[0].data = vec![0; 1025], "frame 0 of 1025 bytes");
        let edited = |g: &dyn Fn(&mut Manifest)| {
            let mut m = with_ring(|_, _| {});
            g(&mut m);
            m.process = m.processes[0].clone();
            m
        };
        let v3 = edited(&|m| m.objects.iter_mut().filter_map(|o| o.packet_mut()).for_each(|p| p.version = 2));
        refused(&v3, &root(), "PACKET_VERSION 2 (rings of TPACKET_V1 and V2 only)");
        // the VMA: the whole ring of a packet socket the process holds, shared, offset 0
        let bad_vma = |f: &dyn Fn(&mut Vma)| refused(&with_ring(|_, v| f(v)), &root(), "maps no whole receive ring");
        bad_vma(&|v| v.end = 0x7f00_0000_3000);
        bad_vma(&|v| v.pgoff = 0x1000);
        bad_vma(&|v| v.shared = false);
        bad_vma(&|v| v.object_id = 4);
        bad_vma(&|v| v.object_id = 99);
        refused(&edited(&|m| m.processes[0].fds.retain(|f| f.fd != 7)), &root(), "maps no whole receive ring");
    }

    #[test]
    fn process_strings() {
        refused(&edit(|m| m.processes[0].attrs.as_mut().unwrap().cwd = "tmp".into()), &root(), "working directory");
        refused(&edit(|m| m.processes[0].attrs.as_mut().unwrap().root = "/a\0b".into()), &root(), "root directory");
    }

    #[test]
    fn stop_signal_is_a_stop_signal_of_a_stopped_process() {
        let stop = |stopped, sig| edit(|m| {
            let a = m.processes[0].attrs.as_mut().unwrap();
            (a.stopped, a.stop_signal) = (stopped, sig);
        });
        for sig in [0, libc::SIGSTOP, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
            validate_with(&stop(true, sig), &root()).unwrap();
        }
        refused(&stop(true, libc::SIGKILL), &root(), "stop signal 9");
        refused(&stop(true, -1), &root(), "stop signal -1");
        refused(&stop(false, libc::SIGTSTP), &root(), "stop signal 20");
        // stop reports name children of the process, once each
        let me = manifest().processes[0].pid;
        let reports = |pids: Vec<i32>| edit(move |m| m.processes[0].attrs.as_mut().unwrap().stops_unreported = pids);
        validate_with(&reports(vec![]), &root()).unwrap();
        refused(&reports(vec![me]), &root(), &format!("stop report of {me}, which is not a child"));
        refused(&reports(vec![4242]), &root(), "stop report of 4242");
        for l in [None, Some(0), Some(4242), Some(u32::MAX)] {
            validate_with(&edit(|m| m.processes[0].attrs.as_mut().unwrap().loginuid = l), &root()).unwrap();
        }
        refused(&edit(|m| m.processes[0].comm = "a\0b".into()), &root(), "name");
        refused(&edit(|m| m.processes[0].threads[0].comm = "x".repeat(100)), &root(), "thread 100 name");
    }

    #[test]
    fn cgroup_lines() {
        for ok in ["0::/", "0::/a/b.c", "4:cpu,cpuacct:/x", "1:name=systemd:/user.slice", "0::/a (deleted)"] {
            check_cgroup_line(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["0::/../x", "0::/a/../../x", "0::/a/./b", "0::/a//b", "0::/a/", "0::x", "0::", "0:/x", "x::/a", ":cpu:/a", "0:a/b:/x", "0::/a\0b", ""] {
            assert!(check_cgroup_line(bad).is_err(), "{bad:?} accepted");
        }
        refused(&edit(|m| m.processes[0].cgroups[0] = "0::/../../../tmp/x".into()), &root(), "pid 100: cgroup \"0::/../../../tmp/x\"");
    }

    fn with_cgroups(f: impl FnOnce(&mut Vec<CgroupDir>)) -> Manifest {
        edit(|m| {
            m.processes[0].cgroups = vec!["0::/a/b".into(), "3:cpu,cpuacct:/c".into()];
            let mut d = vec![
                CgroupDir {
                    path: "/a".into(),
                    mode: 0o755,
                    settings: vec![CgroupSetting { file: "cgroup.subtree_control".into(), value: "pids memory".into() }],
                    ..Default::default()
                },
                CgroupDir {
                    path: "/a/b".into(),
                    mode: 0o755,
                    uid: 1000,
                    gid: 27,
                    settings: vec![
                        CgroupSetting { file: "pids.max".into(), value: "12".into() },
                        CgroupSetting { file: "io.max".into(), value: "8:0 rbps=1 wbps=max\n8:16 rbps=max wbps=2".into() },
                        CgroupSetting { file: "hugetlb.2MB.max".into(), value: "max".into() },
                    ],
                    file_owners: vec![CgroupFileOwner { file: "cgroup.procs".into(), mode: 0o644, uid: 1000, gid: 1000 }],
                    ..Default::default()
                },
                CgroupDir {
                    controllers: "cpu,cpuacct".into(),
                    path: "/c".into(),
                    mode: 0o755,
                    settings: vec![CgroupSetting { file: "cpu.cfs_quota_us".into(), value: "50000".into() }],
                    ..Default::default()
                },
            ];
            f(&mut d);
            m.processes[0].cgroup_dirs = d;
        })
    }

    #[test]
    fn saved_cgroups() {
        validate_with(&with_cgroups(|_| {}), &root()).unwrap();
        let c = "the image is inconsistent: saved cgroup";
        // only cgroups the processes are in or under, never the root, never elsewhere
        refused(&with_cgroups(|d| d[0].path = "/x".into()), &root(), "saved cgroup :/x: not a cgroup below the root");
        // below a process's own cgroup: yes (a subtree it made), bounded; below a
        // hierarchy's root it lives in: no
        validate_with(&with_cgroups(|d| d.push(CgroupDir { path: "/a/b/sub".into(), ..d[1].clone() })), &root()).unwrap();
        refused(&with_cgroups(|d| d.push(CgroupDir { path: "/a/bc".into(), ..d[1].clone() })), &root(), "saved cgroup :/a/bc: not a cgroup");
        refused(
            &with_cgroups(|d| {
                let s = d[1].clone();
                d.extend((0..=crate::cgroup::MAX_DESCENDANTS).map(|i| CgroupDir { path: format!("/a/b/s{i}"), ..s.clone() }))
            }),
            &root(),
            "more than 256 cgroups below",
        );
        refused(
            &edit(|m| {
                m.processes[0].cgroups = vec!["0::/".into()];
                m.processes[0].cgroup_dirs = vec![CgroupDir { path: "/anywhere".into(), ..Default::default() }];
            }),
            &root(),
            "saved cgroup :/anywhere: not a cgroup",
        );
        refused(&with_cgroups(|d| d[0].path = "/".into()), &root(), c);
        refused(&with_cgroups(|d| d[0].path = "/a/../x".into()), &root(), c);
        refused(&with_cgroups(|d| d[2].controllers = "memory".into()), &root(), "saved cgroup memory:/c");
        refused(&with_cgroups(|d| d.swap(0, 1)), &root(), "saved before its parent");
        refused(&with_cgroups(|d| {
            let c = d[2].clone();
            d.push(c)
        }), &root(), "saved twice");
        refused(&with_cgroups(|d| {
            let c = d[2].clone();
            d.extend(std::iter::repeat_n(c, MAX_CGROUP_DIRS))
        }), &root(), "saved cgroups (at most");
        // only known files of that hierarchy, with values they take
        refused(&with_cgroups(|d| d[1].settings[0].file = "release_agent".into()), &root(), "\"release_agent\" is not a controller file");
        refused(&with_cgroups(|d| d[1].settings[0].file = "cgroup.procs".into()), &root(), "not a controller file");
        refused(&with_cgroups(|d| d[2].settings[0].file = "cpu.max".into()), &root(), "not a controller file");
        refused(&with_cgroups(|d| d[1].settings[0].file = "../../../etc/passwd".into()), &root(), "not a controller file");
        refused(&with_cgroups(|d| d[1].settings[0].value = "12\n13".into()), &root(), "pids.max: several lines");
        refused(&with_cgroups(|d| d[1].settings[1].value = "8:0 rbps=1\n\n8:1 rbps=2".into()), &root(), "io.max: more than");
        refused(&with_cgroups(|d| d[1].settings[0].value = "9".repeat(5000)), &root(), "pids.max: 5000 bytes");
        refused(&with_cgroups(|d| d[0].settings[0].value = "+pids".into()), &root(), "not a list of controller names");
        refused(&with_cgroups(|d| {
            let s = d[1].settings[0].clone();
            d[1].settings.push(s)
        }), &root(), "pids.max saved twice");
        // owners: root or ids of the image's processes
        refused(&with_cgroups(|d| d[1].uid = 4242), &root(), "owner 4242:27");
        refused(&with_cgroups(|d| d[1].mode = 0o100755), &root(), "mode 100755");
        refused(&with_cgroups(|d| d[1].file_owners[0].gid = 4242), &root(), "cgroup.procs: mode 644, owner 1000:4242");
        refused(&with_cgroups(|d| d[1].file_owners[0].file = "../../etc/passwd".into()), &root(), "not a file name");
        refused(&with_cgroups(|d| d[1].file_owners[0].file = "..".into()), &root(), "not a file name");
        refused(
            &with_cgroups(|d| {
                let o = d[1].file_owners[0].clone();
                d[1].file_owners.push(o)
            }),
            &root(),
            "or twice",
        );
        refused(
            &edit(|m| {
                m.processes.push(process(101, 100));
                m.processes[1].cgroup_dirs = vec![CgroupDir::default()];
            }),
            &root(),
            "other than the root",
        );
    }

    #[test]
    fn groups_bounded_by_ngroups_and_the_data_area() {
        assert!(MAX_GROUPS <= NGROUPS_MAX && MAX_GROUPS as u64 * 4 + DATA <= TRAMP_LEN);
        validate_with(&edit(|m| m.processes[0].creds.as_mut().unwrap().groups = vec![1000; MAX_GROUPS]), &root()).unwrap();
        refused(&edit(|m| m.processes[0].creds.as_mut().unwrap().groups = vec![0; MAX_GROUPS + 1]), &root(), "supplementary groups");
        refused(&edit(|m| m.processes[0].creds.as_mut().unwrap().groups = vec![0; NGROUPS_MAX + 1]), &root(), "supplementary groups");
    }

    #[test]
    fn credentials_are_required_and_bounded() {
        refused(&edit(|m| m.processes[0].creds = None), &root(), "no credentials");
        refused(&edit(|m| m.processes[0].creds.as_mut().unwrap().uids.truncate(2)), &root(), "uids");
        refused(&edit(|m| m.processes[0].creds.as_mut().unwrap().cap_bnd = 1 << 41), &root(), "beyond this kernel's last capability (40)");
        refused(&edit(|m| m.processes[0].creds.as_mut().unwrap().cap_amb = 1 << 63), &root(), "beyond");
        validate_with(&edit(|m| m.processes[0].creds.as_mut().unwrap().cap_bnd = (1 << 41) - 1), &root()).unwrap();
    }

    #[test]
    fn thread_credentials_bounded_and_within_the_restorer() {
        let with = |f: fn(&mut Creds)| {
            edit(move |m| {
                let mut c = m.processes[0].creds.clone().unwrap();
                f(&mut c);
                m.processes[0].threads.push(Thread { creds: Some(c), ..thread(101) });
            })
        };
        validate_with(&with(|c| c.uids = vec![2000; 4]), &root()).unwrap();
        refused(&with(|c| c.uids.truncate(2)), &root(), "thread 101: credentials with 2 uids");
        refused(&with(|c| c.cap_eff = 1 << 45), &root(), "thread 101: capabilities 45 in its effective set are beyond");
        refused(&with(|c| c.groups = vec![7; MAX_GROUPS + 1]), &root(), "thread 101");
        refused(&with(|c| c.uids = vec![2000; 4]), &user(), "thread 101 asks for uid 2000");
    }

    #[test]
    fn thread_fs_sched_and_flags_bounded() {
        let with = |f: fn(&mut Thread)| {
            edit(move |m| {
                let mut t = thread(101);
                f(&mut t);
                m.processes[0].threads.push(t);
            })
        };
        validate_with(&with(|t| t.own_fs = Some(ThreadFs { cwd: "/tmp".into(), umask: 0o77 })), &root()).unwrap();
        refused(&with(|t| t.own_fs = Some(ThreadFs { cwd: "tmp".into(), umask: 0 })), &root(), "thread 101: its own working directory");
        refused(&with(|t| t.own_fs = Some(ThreadFs { cwd: "/tmp".into(), umask: 0o1777 })), &root(), "thread 101: umask");
        validate_with(&with(|t| t.mempolicy = Some(MemPolicy { mode: 2, flags: 1 << 15, nodes: vec![1] })), &root()).unwrap();
        refused(&with(|t| t.mempolicy = Some(MemPolicy { mode: 9, flags: 0, nodes: vec![1] })), &root(), "thread 101: NUMA policy mode 9");
        refused(&with(|t| t.mempolicy = Some(MemPolicy { mode: 3, flags: 0, nodes: vec![1; 17] })), &root(), "thread 101: a NUMA node mask of 17 words");
        refused(&edit(|m| m.processes[0].vmas[0].mempolicy = Some(MemPolicy { mode: 2, flags: 3 << 14, nodes: vec![1] })), &root(), "NUMA policy flags 0xc000");
        fn dl(t: &mut Thread) {
            t.sched_policy = 6;
            (t.sched_runtime, t.sched_deadline, t.sched_period) = (2_000_000, 50_000_000, 100_000_000);
        }
        validate_with(&with(dl), &root()).unwrap();
        refused(&with(|t| { dl(t); t.sched_runtime = 60_000_000 }), &root(), "thread 101: SCHED_DEADLINE runtime 60000000");
        refused(&with(|t| { dl(t); t.sched_runtime = 1000 }), &root(), "SCHED_DEADLINE");
        refused(&with(|t| { dl(t); t.sched_period = 1 << 63 }), &root(), "SCHED_DEADLINE");
        refused(&with(|t| t.sched_flags = 0x20), &root(), "thread 101: scheduling flags 0x20");
        validate_with(&with(|t| t.sched_flags = 1), &root()).unwrap();
        refused(&with(|t| t.mce_kill = Some(3)), &root(), "machine-check kill policy");
        validate_with(&with(|t| t.mce_kill = Some(1)), &root()).unwrap();
        refused(&edit(|m| m.processes[0].attrs.as_mut().unwrap().autogroup_nice = Some(20)), &root(), "autogroup nice 20");
    }

    #[test]
    fn counts_and_numbers_bounded() {
        refused(&edit(|m| m.processes[0].rlimits = vec![Rlimit { resource: 16, cur: 1, max: 1 }]), &root(), "resource limit 16");
        refused(&edit(|m| m.processes[0].rlimits = vec![Rlimit { resource: 7, cur: 2, max: 1 }]), &root(), "resource limit 7");
        refused(&edit(|m| m.processes[0].fds = vec![Fd { fd: 1 << 20, object_id: 1, cloexec: false }]), &root(), "nr_open");
        refused(&edit(|m| m.processes[0].fds = vec![Fd { fd: 3, object_id: 1, cloexec: false }; 2]), &root(), "fd 3 appears twice");
        refused(&edit(|m| m.processes[0].mm.as_mut().unwrap().auxv = vec![0; 4096]), &root(), "auxv");
        validate_with(&edit(|m| m.processes[0].mm.as_mut().unwrap().membarrier = 16 | 64 | 256), &root()).unwrap();
        refused(&edit(|m| m.processes[0].mm.as_mut().unwrap().membarrier = 16 | 1), &root(), "membarrier registrations 0x11");
        validate_with(&edit(|m| m.processes[0].mm.as_mut().unwrap().lock_future = 6), &root()).unwrap();
        refused(&edit(|m| m.processes[0].mm.as_mut().unwrap().lock_future = 1), &root(), "mlockall flags 0x1");
        refused(&edit(|m| m.processes[0].mm.as_mut().unwrap().lock_future = 4), &root(), "mlockall flags 0x4");
        validate_with(&edit(|m| m.processes[0].mm.as_mut().unwrap().ldt = vec![0, 0x12df_f334_5678_ffff]), &root()).unwrap();
        refused(&edit(|m| m.processes[0].mm.as_mut().unwrap().ldt = vec![0; 8193]), &root(), "an LDT of 8193 entries");
        refused(&edit(|m| m.processes[0].mm.as_mut().unwrap().ldt = vec![0, 0x12df_e334_5678_ffff]), &root(), "LDT entry 1 is a system descriptor");
        refused(&edit(|m| m.processes[0].mm.as_mut().unwrap().ldt = vec![0x12df_d334_5678_ffff]), &root(), "LDT entry 0 is not of privilege level 3");
        refused(&edit(|m| m.processes[0].threads[0].seccomp_filters = vec![vec![0; 12]]), &root(), "seccomp");
        refused(&edit(|m| {
            m.processes[0].threads[0].seccomp_mode = 2;
            m.processes[0].threads[0].seccomp_filters = vec![vec![0; 8 * 4096]; 9];
        }), &root(), "seccomp filters");
        refused(&edit(|m| m.processes[0].threads[0].pending = vec![SigInfo { signo: 10, raw: vec![0; 128] }; MAX_PENDING + 1]), &root(), "pending");
        refused(&edit(|m| m.processes[0].posix_timers = vec![PosixTimer { id: 1, ..Default::default() }; 2]), &root(), "POSIX timer 1");
        let timer = |notify, notify_tid| PosixTimer { id: 3, signo: 34, notify, notify_tid, ..Default::default() };
        validate_with(&edit(|m| m.processes[0].posix_timers = vec![timer(libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID, 100)]), &root()).unwrap();
        validate_with(&edit(|m| m.processes[0].posix_timers = vec![timer(libc::SIGEV_THREAD, 100)]), &root()).unwrap();
        refused(&edit(|m| m.processes[0].posix_timers = vec![timer(libc::SIGEV_SIGNAL | libc::SIGEV_THREAD_ID, 1)]), &root(), "POSIX timer 3: aimed at thread 1");
        refused(&edit(|m| m.processes[0].posix_timers = vec![timer(libc::SIGEV_SIGNAL, 1)]), &root(), "POSIX timer 3: signals process 1");
        refused(&edit(|m| m.processes[0].posix_timers = vec![timer(8, 100)]), &root(), "POSIX timer 3: notification 8");
        refused(&edit(|m| m.processes[0].posix_timers = vec![PosixTimer { signo: 0, ..timer(libc::SIGEV_SIGNAL, 100) }]), &root(), "POSIX timer 3: signal 0");
        refused(&edit(|m| m.processes[0].vmas.push(Vma { start: 0x80_0000, end: 0x80_1000, kind: 1, ..Default::default() })), &Host { max_map_count: 3, ..root() }, "max_map_count");
        refused(&edit(|m| m.processes[0].threads.push(thread(100))), &root(), "thread id 100 appears twice");
        refused(&edit(|m| m.processes[0].threads[0].affinity = vec![0xff; 4096]), &root(), "affinity");
        refused(&edit(|m| m.processes[0].sigactions = vec![SigAction { signo: 2, ..Default::default() }; 2]), &root(), "two handlers");
        refused(&edit(|m| m.processes[0].locks = vec![FileLock { kind: "flock".into(), fd: 9, ..Default::default() }]), &root(), "file lock");
    }

    #[test]
    fn restorer_gives_nothing_it_does_not_hold() {
        let c = creds();
        let u = user();
        assert_eq!(creds_beyond_restorer(&c, &u), None);
        // a fully privileged root holds everything
        let mut rootc = c.clone();
        rootc.uids = vec![0; 4];
        rootc.gids = vec![0; 4];
        rootc.groups.clear();
        rootc.cap_prm = (1 << 41) - 1;
        rootc.cap_eff = rootc.cap_prm;
        assert_eq!(creds_beyond_restorer(&rootc, &root()), None);
        // ... but root without every capability does not
        let partial = root().with_caps(1, 1, 0, (1 << 41) - 1);
        assert!(creds_beyond_restorer(&rootc, &partial).unwrap().contains("capabilities"));
        let cases: [(&str, Box<dyn Fn(&mut Creds)>); 8] = [
            ("uid 0", Box::new(|c| c.uids[2] = 0)),
            ("gid 0", Box::new(|c| c.gids[1] = 0)),
            ("supplementary group 4", Box::new(|c| c.groups.push(4))),
            ("capabilities 21 in its effective set", Box::new(|c| c.cap_eff = 1 << 21)),
            ("capabilities 0,12 in its permitted set", Box::new(|c| c.cap_prm = 1 | 1 << 12)),
            ("inheritable", Box::new(|c| c.cap_inh = 1 << 5)),
            ("ambient", Box::new(|c| c.cap_amb = 1 << 7)),
            ("capabilities 3 in its bounding set", Box::new(|c| c.cap_bnd = 1 << 3)),
        ];
        let limited = u.clone().with_caps(0, 0, 0, !(1 << 3) & ((1 << 41) - 1));
        for (needle, f) in cases {
            let mut c2 = c.clone();
            f(&mut c2);
            let why = creds_beyond_restorer(&c2, &limited).unwrap_or_else(|| panic!("{needle}: accepted"));
            assert!(why.contains(needle), "{why:?} does not name {needle:?}");
        }
        // a restorer's group counts as held; so do permitted capabilities it may raise
        let mut c3 = c.clone();
        c3.gids = vec![27; 4];
        c3.cap_prm = 1 << 19;
        c3.cap_eff = 1 << 19;
        assert_eq!(creds_beyond_restorer(&c3, &u.clone().with_caps(0, 1 << 19, 0, (1 << 41) - 1)), None);
        // CAP_SETUID / CAP_SETGID: any id, still no capability it lacks
        let setid = u.clone().with_caps(0, 1 << 6 | 1 << 7, 0, (1 << 41) - 1);
        let mut c4 = c.clone();
        (c4.uids, c4.gids, c4.groups) = (vec![0; 4], vec![0; 4], vec![5, 100]);
        assert_eq!(creds_beyond_restorer(&c4, &setid), None);
        c4.cap_prm = 1 << 21;
        assert!(creds_beyond_restorer(&c4, &setid).unwrap().contains("capabilities 21 in its permitted set"));
        assert!(creds_beyond_restorer(&c4, &u).unwrap().contains("uid 0"));
        // root without CAP_SYS_RESOURCE (24): a process like attrs_creds restores, one
        // asking for CAP_SYS_RESOURCE does not
        let all: u64 = (1 << 41) - 1;
        let no24 = root().with_caps(all & !(1 << 24), all & !(1 << 24), 0, all & !(1 << 24));
        let like = Creds {
            uids: vec![0, 0, 1000, 0],
            gids: vec![1001, 1002, 1003, 1002],
            groups: vec![5, 100, 1000],
            cap_prm: all & !(1 << 24) & !(1 << 22) & !(1 << 25),
            cap_eff: all & !(1 << 24) & !(1 << 22) & !(1 << 25),
            cap_inh: 1 | 1 << 13,
            cap_amb: 1 << 13,
            cap_bnd: all & !(1 << 24) & !(1 << 22),
            securebits: 0,
        };
        assert_eq!(creds_beyond_restorer(&like, &no24), None);
        let mut more = like.clone();
        more.cap_bnd |= 1 << 24;
        assert!(creds_beyond_restorer(&more, &no24).unwrap().contains("capabilities 24 in its bounding set"));
        // through validate: one line naming the pid and what it asks for
        let m = edit(|m| m.processes[0].creds.as_mut().unwrap().uids = vec![0; 4]);
        refused(&m, &u, "pid 100 asks for uid 0");
    }

    #[test]
    fn host_parse() {
        let st = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t100 27 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        let h = Host::parse(st, "40\n", "1048576\n", "65530\n").unwrap();
        assert_eq!((h.uids[0], h.gids[3], h.groups.clone(), h.cap_bnd, h.all_caps()), (1000, 100, vec![100, 27], (1 << 41) - 1, (1 << 41) - 1));
        assert!(!h.privileged());
        assert!(Host::parse(st, "x", "", "").is_err());
        assert!(Host::parse("Uid:\t0\n", "40", "", "").is_err());
        assert!(Host::root(40).privileged() && Host::root(63).all_caps() == u64::MAX);
    }

    /// No input makes validate panic: mutate every field of a sound manifest in turn.
    #[test]
    fn no_panic_on_odd_values() {
        let odd_i32 = [i32::MIN, -1, 0, 1, 64, 65, i32::MAX];
        let odd_u64 = [0, 1, PAGE - 1, TASK_SIZE, u64::MAX];
        for &x in &odd_i32 {
            for f in [
                |m: &mut Manifest, x: i32| m.processes[0].pid = x,
                |m: &mut Manifest, x: i32| m.processes[0].exit_signal = x,
                |m: &mut Manifest, x: i32| m.processes[0].threads[0].tid = x,
                |m: &mut Manifest, x: i32| m.processes[0].threads[0].seccomp_mode = x,
                |m: &mut Manifest, x: i32| m.index.runs[0].pid = x,
                |m: &mut Manifest, x: i32| m.processes[0].rlimits = vec![Rlimit { resource: x, cur: 0, max: 0 }],
                |m: &mut Manifest, x: i32| m.processes[0].sigactions = vec![SigAction { signo: x, ..Default::default() }],
                |m: &mut Manifest, x: i32| m.processes[0].ns_pids = vec![m.processes[0].pid, x],
            ] {
                let _ = validate_with(&edit(|m| f(m, x)), &root());
            }
        }
        for &x in &odd_u64 {
            for f in [
                |m: &mut Manifest, x: u64| m.index.runs[0].addr = x,
                |m: &mut Manifest, x: u64| m.index.runs[1].addr = x,
                |m: &mut Manifest, x: u64| m.index.runs[2].addr = x,
                |m: &mut Manifest, x: u64| m.objects[1].shmem_mut().unwrap().size = x,
                |m: &mut Manifest, x: u64| m.processes[0].vmas[1].end = x,
                |m: &mut Manifest, x: u64| m.processes[0].vmas[0].start = x,
                |m: &mut Manifest, x: u64| m.processes[0].creds.as_mut().unwrap().cap_bnd = x,
            ] {
                let _ = validate_with(&edit(|m| f(m, x)), &root());
                let _ = validate_with(&edit(|m| f(m, x)), &Host::root(63));
            }
        }
        let _ = validate_with(&Manifest::default(), &root());
        let _ = validate_with(&edit(|m| m.processes.clear()), &root());
        let _ = validate_with(&edit(|m| m.processes[0].threads.clear()), &root());
        let _ = validate_with(&edit(|m| m.processes[0].vmas.clear()), &root());
    }
}
