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
            continue;
        }
        nthreads = nthreads.saturating_add(p.threads.len());
        if nthreads > MAX_TREE_THREADS {
            return Err(bad(format!("more than {MAX_TREE_THREADS} threads in the tree")));
        }
        for t in &p.threads {
            if !ids.insert(t.tid) {
                return Err(bad(format!("pid {}: thread id {} appears twice in the tree", p.pid, t.tid)));
            }
        }
        check_process(&objects, p, h)?;
    }
    check_objects(&objects, &m.objects).map_err(&bad)?;
    check_runs(m, &objects, &by_pid).map_err(&bad)?;
    if let Some((pid, why)) = ns::check_tree(&m.processes) {
        return Err(refuse(format!("pid {pid}: {why}")));
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

/// The credentials record: present, well-formed, within this kernel and within the restorer.
fn check_creds(p: &Process, h: &Host) -> Result<()> {
    let bad = |why: String| refuse(format!("the image is inconsistent: pid {}: {why}", p.pid));
    let c = p.creds.as_ref().ok_or_else(|| bad("no credentials record".into()))?;
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
        return Err(refuse(format!("pid {} asks for {why}", p.pid)));
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

fn check_siginfo(s: &SigInfo) -> bool {
    (1..=64).contains(&s.signo) && s.raw.len() == 128
}

fn check_process(objects: &HashMap<u32, &Object>, p: &Process, h: &Host) -> Result<()> {
    let bad = |why: String| refuse(format!("the image is inconsistent: pid {}: {why}", p.pid));
    let object = |id: u32| objects.get(&id).copied();
    check_str(&p.comm, MAX_COMM).map_err(|why| bad(format!("name: {why}")))?;
    match p.threads.first() {
        Some(t) if t.tid == p.pid => {}
        _ => return Err(bad("the first thread is not the main thread".into())),
    }
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
        if !matches!(l.kind.as_str(), "flock" | "posix" | "ofd") || !fds.contains(&l.fd) || l.start > i64::MAX as u64 || l.len > i64::MAX as u64 {
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
        if v.pgoff % PAGE != 0 && needs_file {
            return Err(bad(format!("VMA {:#x}-{:#x}: file offset {:#x} is not page-aligned", v.start, v.end, v.pgoff)));
        }
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
fn check_objects(table: &HashMap<u32, &Object>, objects: &[Object]) -> std::result::Result<(), String> {
    for o in objects {
        let id = o.id;
        if let Some(f) = o.mapped_file() {
            if f.ghost_id == 0 { check_path(&f.path) } else { check_str(&f.path, PATH_MAX) }
                .map_err(|why| format!("mapped file (object {id}): {why}"))?;
            if f.ghost_id != 0 && table.get(&f.ghost_id).and_then(|g| g.ghost()).is_none() {
                return Err(format!("mapped file (object {id}) refers to missing deleted-file object {}", f.ghost_id));
            }
        }
        if let Some(f) = o.file() {
            if f.ghost_id == 0 { check_path(&f.path) } else { check_str(&f.path, PATH_MAX) }
                .map_err(|why| format!("file (object {id}): {why}"))?;
        }
        if let Some(g) = o.ghost() {
            let named = g.memfd_name.is_empty() && g.external.is_empty();
            if named { check_path(&g.path) } else { check_str(&g.path, PATH_MAX) }
                .map_err(|why| format!("deleted file (object {id}): {why}"))?;
            check_str(&g.memfd_name, MAX_MEMFD_NAME).map_err(|why| format!("memfd name (object {id}): {why}"))?;
        }
        if let Some(f) = o.fifo() {
            check_path(&f.path).map_err(|why| format!("named FIFO (object {id}): {why}"))?;
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
            if u.name.len() > 108 {
                return Err(format!("unix socket (object {id}): name of {} bytes", u.name.len()));
            }
        }
        if let Some(s) = o.shmem() {
            if s.size == 0 || s.size > TASK_SIZE {
                return Err(format!("shared memory (object {id}) of {} bytes (1 to {TASK_SIZE:#x})", s.size));
            }
        }
        if let Some(s) = o.sysv_shm() {
            if s.size == 0 || s.size > TASK_SIZE {
                return Err(format!("SysV segment (object {id}) of {} bytes (1 to {TASK_SIZE:#x})", s.size));
            }
        }
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
                _ => return Err(format!("{}: the object is not shared memory or a SysV segment", what())),
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
                Object { id: 2, kind: Some(Kind::Shmem(ShmemObj { ino: 5, size: 2 * PAGE })), ..Default::default() },
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

    #[test]
    fn process_strings() {
        refused(&edit(|m| m.processes[0].attrs.as_mut().unwrap().cwd = "tmp".into()), &root(), "working directory");
        refused(&edit(|m| m.processes[0].attrs.as_mut().unwrap().root = "/a\0b".into()), &root(), "root directory");
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
    fn counts_and_numbers_bounded() {
        refused(&edit(|m| m.processes[0].rlimits = vec![Rlimit { resource: 16, cur: 1, max: 1 }]), &root(), "resource limit 16");
        refused(&edit(|m| m.processes[0].rlimits = vec![Rlimit { resource: 7, cur: 2, max: 1 }]), &root(), "resource limit 7");
        refused(&edit(|m| m.processes[0].fds = vec![Fd { fd: 1 << 20, object_id: 1, cloexec: false }]), &root(), "nr_open");
        refused(&edit(|m| m.processes[0].fds = vec![Fd { fd: 3, object_id: 1, cloexec: false }; 2]), &root(), "fd 3 appears twice");
        refused(&edit(|m| m.processes[0].mm.as_mut().unwrap().auxv = vec![0; 4096]), &root(), "auxv");
        refused(&edit(|m| m.processes[0].threads[0].seccomp_filters = vec![vec![0; 12]]), &root(), "seccomp");
        refused(&edit(|m| {
            m.processes[0].threads[0].seccomp_mode = 2;
            m.processes[0].threads[0].seccomp_filters = vec![vec![0; 8 * 4096]; 9];
        }), &root(), "seccomp filters");
        refused(&edit(|m| m.processes[0].threads[0].pending = vec![SigInfo { signo: 10, raw: vec![0; 128] }; MAX_PENDING + 1]), &root(), "pending");
        refused(&edit(|m| m.processes[0].posix_timers = vec![PosixTimer { id: 1, ..Default::default() }; 2]), &root(), "POSIX timer 1");
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
