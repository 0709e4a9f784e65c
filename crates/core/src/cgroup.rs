//! Control groups: every process goes back into the cgroups it was in, and cgroups that
//! are missing at restore come back with the controller settings, mode and owners they
//! had.
//!
//! Dump: the lines of /proc/PID/cgroup (`ID:CONTROLLERS:PATH`, one per hierarchy; `0::PATH`
//! for cgroup v2) of every process, and (`dump_dirs`, root process only) one
//! `CgroupDir` per cgroup the tree lives in and per ancestor of one (below the hierarchy's
//! root): its directory's mode/uid/gid, the owners of the files a delegation hands over,
//! and the content of every file of `KNOWN` (the only files restore ever writes) that
//! exists there.
//!
//! Restore (`restore --cgroups MODE`, `Mode`), in two parts:
//! - `prepare`, after the image is validated and before anything else is created (files
//!   opened inside cgroupfs need their cgroup; a strict restore must refuse before any
//!   process exists): every cgroup of the image is looked up; an existing one is used as
//!   it is (never written: it belongs to the host), its settings compared with the
//!   image's (a difference is a warning, or with `strict` refuses the restore); a missing
//!   one is created (parents first) and given the image's settings in table order, then
//!   its files' and directory's owners and mode. `Prepared` removes the cgroups it
//!   created (children first) unless the restore succeeded.
//! - `Prepared::join`, once every process exists and before any is built (threads
//!   created later inherit it): for each hierarchy mounted here whose path differs from
//!   the restorer's own, the pid is written to the cgroup's `cgroup.procs`; a failure is
//!   an error naming pid and cgroup.
//!
//! A hierarchy the image has and this machine does not mount is a warning (`create`) or
//! refuses the restore (`strict`, `join`).

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stasis_image::model::{CgroupDir, CgroupFileOwner, CgroupSetting, Process};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::procfs;

/// `restore --cgroups`: what restore does with the image's cgroups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Existing cgroups are joined as they are (a saved setting that differs is a
    /// warning); missing ones are created with their saved settings, mode and owners.
    #[default]
    Create,
    /// As `Create`, but an existing cgroup whose settings differ from the image's, or a
    /// hierarchy not mounted here, refuses the restore before anything is created.
    Strict,
    /// Only existing cgroups are joined; a missing one refuses the restore (nothing is
    /// created), e.g. when a container manager made them beforehand.
    Join,
    /// Cgroups are left alone: the processes stay in the restorer's cgroups.
    Ignore,
}

/// How a known file is read, compared and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// One line, written back as read.
    Plain,
    /// Several lines (one per device, e.g. io.max), written one line per write(2).
    Lines,
    /// cgroup.subtree_control: controller names, written as `+name ...`.
    SubtreeControl,
    /// cgroup.type: only "threaded" is ever written (the others follow from it).
    Type,
    /// v1 memory.oom_control: saved as its `oom_kill_disable` value, written as such.
    OomControl,
    /// v1 devices.list: written as "a" to devices.deny, then each line to devices.allow.
    Devices,
}

/// The controller files stasis saves and restores, in the order restore writes them.
/// `ctl`: "" = a cgroup v2 file; "*" = every v1 hierarchy; else a v1 hierarchy whose
/// controllers include `ctl`. A `*` in a file name stands for a page size (hugetlb).
/// Nothing outside this table is ever written by restore.
pub const KNOWN: &[(&str, &str, How)] = &[
    // cgroup v2: the type first (a threaded child), then which controllers the children
    // get, then limits
    ("", "cgroup.type", How::Type),
    ("", "cgroup.subtree_control", How::SubtreeControl),
    ("", "cgroup.max.descendants", How::Plain),
    ("", "cgroup.max.depth", How::Plain),
    ("", "cpuset.cpus", How::Plain),
    ("", "cpuset.mems", How::Plain),
    ("", "cpu.weight", How::Plain),
    ("", "cpu.max", How::Plain),
    ("", "cpu.max.burst", How::Plain),
    ("", "cpu.idle", How::Plain),
    ("", "cpu.uclamp.min", How::Plain),
    ("", "cpu.uclamp.max", How::Plain),
    ("", "memory.min", How::Plain),
    ("", "memory.low", How::Plain),
    ("", "memory.high", How::Plain),
    ("", "memory.max", How::Plain),
    ("", "memory.swap.high", How::Plain),
    ("", "memory.swap.max", How::Plain),
    ("", "memory.zswap.max", How::Plain),
    ("", "memory.oom.group", How::Plain),
    ("", "io.weight", How::Lines),
    ("", "io.max", How::Lines),
    ("", "pids.max", How::Plain),
    ("", "hugetlb.*.rsvd.max", How::Plain),
    ("", "hugetlb.*.max", How::Plain),
    // cgroup v1
    ("*", "cgroup.clone_children", How::Plain),
    ("*", "notify_on_release", How::Plain),
    ("cpuset", "cpuset.cpus", How::Plain),
    ("cpuset", "cpuset.mems", How::Plain),
    ("cpuset", "cpuset.cpu_exclusive", How::Plain),
    ("cpuset", "cpuset.mem_exclusive", How::Plain),
    ("cpuset", "cpuset.mem_hardwall", How::Plain),
    ("cpuset", "cpuset.memory_migrate", How::Plain),
    ("cpuset", "cpuset.memory_spread_page", How::Plain),
    ("cpuset", "cpuset.memory_spread_slab", How::Plain),
    ("cpuset", "cpuset.sched_load_balance", How::Plain),
    ("cpuset", "cpuset.sched_relax_domain_level", How::Plain),
    ("cpu", "cpu.shares", How::Plain),
    ("cpu", "cpu.cfs_period_us", How::Plain),
    ("cpu", "cpu.cfs_quota_us", How::Plain),
    ("cpu", "cpu.cfs_burst_us", How::Plain),
    ("cpu", "cpu.rt_period_us", How::Plain),
    ("cpu", "cpu.rt_runtime_us", How::Plain),
    ("cpu", "cpu.idle", How::Plain),
    ("memory", "memory.limit_in_bytes", How::Plain),
    ("memory", "memory.memsw.limit_in_bytes", How::Plain),
    ("memory", "memory.soft_limit_in_bytes", How::Plain),
    ("memory", "memory.kmem.tcp.limit_in_bytes", How::Plain),
    ("memory", "memory.swappiness", How::Plain),
    ("memory", "memory.oom_control", How::OomControl),
    ("pids", "pids.max", How::Plain),
    ("blkio", "blkio.weight", How::Plain),
    ("blkio", "blkio.throttle.read_bps_device", How::Lines),
    ("blkio", "blkio.throttle.write_bps_device", How::Lines),
    ("blkio", "blkio.throttle.read_iops_device", How::Lines),
    ("blkio", "blkio.throttle.write_iops_device", How::Lines),
    ("devices", "devices.list", How::Devices),
    ("net_cls", "net_cls.classid", How::Plain),
    ("net_prio", "net_prio.ifpriomap", How::Lines),
    ("hugetlb", "hugetlb.*.limit_in_bytes", How::Plain),
];

/// The files a delegation hands over (chown'ed to the delegatee): their owner and mode
/// are saved and given back to a cgroup restore creates (so are those of any other file
/// of the cgroup that is not root's).
pub const DELEGATED: &[&str] = &["cgroup.procs", "cgroup.threads", "cgroup.subtree_control", "tasks"];

/// At most this many file owners per cgroup.
pub const MAX_FILE_OWNERS: usize = 128;

/// A file name inside a cgroup directory: one component, printable ASCII.
pub fn plain_file_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 255 && n != "." && n != ".." && n.bytes().all(|c| (0x21..0x7f).contains(&c) && c != b'/')
}

/// At most this many bytes per saved setting, and lines in a multi-line one.
pub const MAX_VALUE: usize = 4096;
pub const MAX_LINES: usize = 64;

/// Does `name` match table pattern `pat` (a `*` matches one non-empty run of
/// letters and digits)?
fn matches(pat: &str, name: &str) -> bool {
    match pat.split_once('*') {
        None => pat == name,
        Some((a, b)) => name.len() > a.len() + b.len() && name.starts_with(a) && name.ends_with(b) && {
            let mid = &name[a.len()..name.len() - b.len()];
            mid.bytes().all(|c| c.is_ascii_alphanumeric())
        },
    }
}

fn applies(ctl: &str, key: &str) -> bool {
    match ctl {
        "" => key.is_empty(),
        "*" => !key.is_empty(),
        c => key.split(',').any(|k| k == c),
    }
}

/// The table entry (its position, which is the write order) of file `name` in a cgroup
/// of the hierarchy with controllers key `key` ("" = v2), if restore may write it.
pub fn known(key: &str, name: &str) -> Option<(usize, How)> {
    KNOWN.iter().position(|(c, p, _)| applies(c, key) && matches(p, name)).map(|i| (i, KNOWN[i].2))
}

/// A setting's value is something the file can take: bounded, printable ASCII, one
/// line unless the file takes several (each non-empty), and the special files' forms.
pub fn check_value(how: How, v: &str) -> std::result::Result<(), String> {
    if v.len() > MAX_VALUE {
        return Err(format!("{} bytes (at most {MAX_VALUE})", v.len()));
    }
    if !v.bytes().all(|c| c == b'\n' || (0x20..0x7f).contains(&c)) {
        return Err("a byte that is not printable ASCII".into());
    }
    let multi = matches!(how, How::Lines | How::Devices);
    if v.contains('\n') && !multi {
        return Err("several lines in a one-line file".into());
    }
    if multi && !v.is_empty() && (v.split('\n').count() > MAX_LINES || v.split('\n').any(str::is_empty)) {
        return Err(format!("more than {MAX_LINES} lines, or an empty line"));
    }
    match how {
        How::SubtreeControl if !v.split(' ').filter(|t| !t.is_empty()).all(|t| t.bytes().all(|c| c.is_ascii_lowercase() || c == b'_')) => {
            Err("not a list of controller names".into())
        }
        How::Type if !["domain", "threaded", "domain threaded", "domain invalid"].contains(&v) => Err("not a cgroup type".into()),
        How::OomControl if v != "0" && v != "1" => Err("not 0 or 1".into()),
        _ => Ok(()),
    }
}

/// /proc/PID/cgroup lines of `pid` (empty if unreadable, e.g. a zombie).
pub fn dump(pid: i32) -> Vec<String> {
    procfs::read(pid, "cgroup").unwrap_or_default().lines().map(str::to_string).collect()
}

/// Every thread of `pid` must be in its process's cgroups (v1 moves single threads
/// through `tasks`, v2 threaded cgroups through `cgroup.threads`): restore puts whole
/// processes back, so a thread elsewhere is refused naming it.
pub fn check_threads(pid: i32, lines: &[String], tids: &[i32]) -> Result<()> {
    for &tid in tids.iter().filter(|&&t| t != pid) {
        let Ok(t) = std::fs::read_to_string(format!("{}/task/{tid}/cgroup", crate::procfs::dir(pid))) else { continue };
        if let Some(l) = t.lines().find(|l| !lines.iter().any(|m| m == l)) {
            let (key, _) = parse(l).unwrap_or_default();
            let proc_line = lines.iter().find(|m| parse(m).is_some_and(|(k, _)| k == key)).map(String::as_str).unwrap_or("none");
            return Err(Error::Unsupported {
                pid,
                what: format!("thread {tid} is in cgroup {l}, its process in {proc_line}: threads in cgroups of their own are not supported"),
            });
        }
    }
    Ok(())
}

/// (controllers key, path) of a /proc/PID/cgroup line; the key is "" for cgroup v2.
pub fn parse(line: &str) -> Option<(String, String)> {
    let mut it = line.splitn(3, ':');
    let _id = it.next()?;
    let ctl = it.next()?;
    let path = it.next()?;
    Some((key_of(ctl), path.to_string()))
}

/// Mount point of each hierarchy in our mount namespace, by controllers key.
fn mounts() -> Vec<(String, PathBuf)> {
    let t = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for l in t.lines() {
        let Some((a, b)) = l.split_once(" - ") else { continue };
        let f: Vec<&str> = a.split(' ').collect();
        let g: Vec<&str> = b.split(' ').collect();
        let (Some(mp), Some(fstype), Some(opts)) = (f.get(4), g.first(), g.get(2)) else { continue };
        if f.get(3) != Some(&"/") {
            continue; // a bind mount of a sub-cgroup: not the hierarchy's root
        }
        match *fstype {
            "cgroup2" => out.push((String::new(), PathBuf::from(mp))),
            "cgroup" => {
                // the controllers (and name=) among the super options, in /proc/PID/cgroup order
                const FLAGS: &[&str] = &["rw", "ro", "clone_children", "noprefix", "xattr", "cpuset_v2_mode", "favordynmods"];
                let mut keys: Vec<&str> =
                    opts.split(',').filter(|o| !FLAGS.contains(o) && !o.contains('=') || o.starts_with("name=")).collect();
                keys.sort();
                out.push((keys.join(","), PathBuf::from(mp)));
            }
            _ => {}
        }
    }
    out
}

/// A path inside a cgroup hierarchy mounted here (a file opened inside cgroupfs: its
/// identity is not checked at restore, a cgroup recreated there is a new inode).
pub fn in_cgroupfs(path: &str) -> bool {
    static MOUNTS: std::sync::OnceLock<Vec<(String, PathBuf)>> = std::sync::OnceLock::new();
    MOUNTS.get_or_init(mounts).iter().any(|(_, mp)| Path::new(path).strip_prefix(mp).is_ok_and(|r| !r.as_os_str().is_empty()))
}

/// A /proc/PID/cgroup path that can only name a cgroup below its hierarchy's root:
/// absolute, without NUL, and without empty, `.` or `..` components ("/" itself is fine).
pub fn plain_path(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rel| {
        !path.contains('\0') && (rel.is_empty() || rel.split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
    })
}

/// The directory of cgroup `path` under hierarchy mount point `mp`, or None if the path
/// is not a `plain_path` (it could lead elsewhere). validate refuses such images already;
/// this is defence in depth.
pub fn dir_under(mp: &Path, path: &str) -> Option<PathBuf> {
    plain_path(path).then(|| mp.join(&path[1..]))
}

/// The sorted controllers key of a /proc/PID/cgroup middle field.
pub fn key_of(ctl: &str) -> String {
    let mut k: Vec<&str> = ctl.split(',').filter(|x| !x.is_empty()).collect();
    k.sort();
    k.join(",")
}

/// The cgroups below the root along `path` ("/a/b" → "/a", "/a/b"), shallowest first.
pub fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        cur.push('/');
        cur.push_str(c);
        out.push(cur.clone());
    }
    out
}

/// The value of a known file as saved (trailing newline dropped; memory.oom_control as
/// its oom_kill_disable value); None if it cannot be read here.
fn read_setting(dir: &Path, file: &str, how: How) -> Option<String> {
    let t = std::fs::read_to_string(dir.join(file)).ok()?;
    let t = t.trim_end_matches('\n');
    Some(match how {
        How::OomControl => t.lines().find_map(|l| l.strip_prefix("oom_kill_disable "))?.trim().to_string(),
        How::Lines | How::Devices => t.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n"),
        _ => t.to_string(),
    })
}

/// Every known file of cgroup directory `dir` (hierarchy `key`), in table order.
fn read_settings(dir: &Path, key: &str) -> Vec<CgroupSetting> {
    let mut names: Vec<String> = Vec::new();
    for (_, pat, _) in KNOWN.iter().filter(|(c, _, _)| applies(c, key)) {
        if pat.contains('*') {
            let mut found: Vec<String> = std::fs::read_dir(dir)
                .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            found.retain(|n| matches(pat, n) && known(key, n).is_some_and(|(i, _)| KNOWN[i].1 == *pat));
            found.sort();
            names.extend(found);
        } else {
            names.push(pat.to_string());
        }
    }
    let mut out = Vec::new();
    for n in names {
        let Some((_, how)) = known(key, &n) else { continue };
        if let Some(v) = read_setting(dir, &n, how) {
            if check_value(how, &v).is_ok() {
                out.push(CgroupSetting { file: n, value: v });
            } else {
                debug!("cgroup {}: {n} = {v:?} is not saved (not a value restore would write)", dir.display());
            }
        }
    }
    out
}

/// At most this many cgroups below the tree's own are saved (see `dump_dirs`).
pub const MAX_DESCENDANTS: usize = 256;

/// What `dump_dirs` saves of cgroup `path` of hierarchy `key` (directory `dir`); None
/// if it cannot be read.
fn saved_dir(dir: &Path, key: &str, path: String) -> Option<CgroupDir> {
    let md = std::fs::metadata(dir).ok()?;
    // the delegated files, and every file someone other than root owns (a cgroup made
    // by a delegatee: all its files are the delegatee's)
    let mut files: Vec<(String, std::fs::Metadata)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| Some((e.file_name().to_string_lossy().into_owned(), e.metadata().ok()?)))
                .filter(|(n, m)| !m.is_dir() && (DELEGATED.contains(&n.as_str()) || m.uid() != 0 || m.gid() != 0))
                .collect()
        })
        .unwrap_or_default();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.truncate(MAX_FILE_OWNERS);
    let file_owners =
        files.into_iter().map(|(f, m)| CgroupFileOwner { file: f, mode: m.mode() & 0o777, uid: m.uid(), gid: m.gid() }).collect();
    Some(CgroupDir {
        controllers: key.to_string(),
        path,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        settings: read_settings(dir, key),
        file_owners,
    })
}

/// The cgroups below `path` (directory `dir`), parents first, at most `room` of them.
fn descendants(dir: &Path, path: &str, room: &mut usize, out: &mut Vec<(PathBuf, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut subs: Vec<String> =
        rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    subs.sort();
    for name in subs {
        let p = format!("{path}/{name}");
        if *room == 0 || !plain_path(&p) {
            return;
        }
        *room -= 1;
        let d = dir.join(&name);
        out.push((d.clone(), p.clone()));
        descendants(&d, &p, room, out);
    }
}

/// The cgroups the tree lives in, their ancestors, and the cgroups below them (a
/// delegated subtree the program made, empty ones too; not below a cgroup that holds
/// the dumper itself, whose other cgroups are not the tree's), each once, parents
/// first, with their owners and settings (see the module doc). Hierarchies not mounted
/// here, and cgroups that cannot be read, are left out (restore then creates them
/// without settings, as for images without this record).
pub fn dump_dirs(procs: &[Process]) -> Vec<CgroupDir> {
    let mounts = mounts();
    let ours: Vec<(String, String)> = dump(stasis_sys::sys::getpid()).iter().filter_map(|l| parse(l)).collect();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut out = Vec::new();
    let mut room = MAX_DESCENDANTS;
    for q in procs.iter().filter(|q| !q.zombie) {
        for l in &q.cgroups {
            let Some((key, path)) = parse(l) else { continue };
            let Some((_, mp)) = mounts.iter().find(|(k, _)| *k == key) else { continue };
            let mut dirs: Vec<(PathBuf, String)> = ancestors(&path).into_iter().filter_map(|p| Some((dir_under(mp, &p)?, p))).collect();
            let holds_us = ours.iter().any(|(k, o)| *k == key && (*o == path || o.starts_with(&format!("{path}/"))));
            if path != "/" && !holds_us {
                if let Some(d) = dir_under(mp, &path) {
                    descendants(&d, &path, &mut room, &mut dirs);
                }
            }
            for (dir, p) in dirs {
                if !seen.insert((key.clone(), p.clone())) {
                    continue;
                }
                match saved_dir(&dir, &key, p) {
                    Some(c) => out.push(c),
                    None => debug!(pid = q.pid, "cgroup {}: unreadable, not saved", dir.display()),
                }
            }
        }
    }
    out
}

/// Writes a saved setting into a cgroup restore created (see `How`).
fn write_setting(dir: &Path, s: &CgroupSetting, how: How) -> std::io::Result<()> {
    let put = |file: &str, v: &str| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).open(dir.join(file))?;
        let n = f.write(v.as_bytes())?;
        if n != v.len() {
            return Err(std::io::Error::other(format!("short write ({n} of {} bytes)", v.len())));
        }
        Ok(())
    };
    match how {
        How::Plain | How::OomControl => put(&s.file, &s.value),
        How::Lines => s.value.lines().try_for_each(|l| put(&s.file, l)),
        How::SubtreeControl => {
            let v: Vec<String> = s.value.split(' ').filter(|t| !t.is_empty()).map(|t| format!("+{t}")).collect();
            if v.is_empty() {
                Ok(())
            } else {
                put(&s.file, &v.join(" "))
            }
        }
        How::Type => {
            if s.value == "threaded" {
                put(&s.file, "threaded")
            } else {
                Ok(())
            }
        }
        How::Devices => {
            put("devices.deny", "a")?;
            s.value.lines().try_for_each(|l| put("devices.allow", l))
        }
    }
}

/// What `prepare` did: the cgroups it created (removed again on drop unless `keep`), and
/// where each hierarchy is mounted.
pub struct Prepared {
    mode: Mode,
    mounts: Vec<(String, PathBuf)>,
    created: Vec<PathBuf>,
    kept: bool,
}

impl Prepared {
    /// The restore succeeded: the cgroups it created stay.
    pub fn keep(&mut self) {
        self.kept = true;
    }

    fn dir(&self, pid: i32, line: &str) -> std::result::Result<Option<PathBuf>, String> {
        let Some((key, path)) = parse(line) else { return Ok(None) };
        let Some((_, mp)) = self.mounts.iter().find(|(k, _)| *k == key) else { return Ok(None) };
        dir_under(mp, &path).map(Some).ok_or_else(|| format!("pid {pid}: cgroup {line}: the path leads outside {}", mp.display()))
    }

    /// The `cgroup.procs` files of the cgroups in `lines` (one per hierarchy mounted
    /// here): for a process that moves itself there before unsharing a cgroup namespace
    /// rooted at them. `prepare` made them exist; with `--cgroups ignore`, none (the
    /// namespace is rooted at the restorer's cgroups).
    pub fn procs_files(&self, pid: i32, lines: &[String]) -> std::result::Result<Vec<std::ffi::CString>, String> {
        if self.mode == Mode::Ignore {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for l in lines {
            let Some(dir) = self.dir(pid, l)? else {
                return Err(format!("pid {pid}: cgroup {l}: that hierarchy is not mounted here (its cgroup namespace needs it)"));
            };
            let f = dir.join("cgroup.procs");
            out.push(std::ffi::CString::new(f.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    /// Moves every live process into the cgroups it was in (see the module doc). Our own
    /// cgroups are read once.
    pub fn join(&self, procs: &[Process]) -> Result<()> {
        if self.mode == Mode::Ignore {
            return Ok(());
        }
        let ours: Vec<(String, String)> = dump(stasis_sys::sys::getpid()).iter().filter_map(|l| parse(l)).collect();
        for q in procs.iter().filter(|q| !q.zombie) {
            let pid = q.pid;
            for l in &q.cgroups {
                let Some((key, path)) = parse(l) else { continue };
                if ours.iter().any(|(k, p)| *k == key && *p == path) {
                    continue; // already there (inherited from us)
                }
                let Some(dir) = self.dir(pid, l).map_err(Error::RestoreRefused)? else { continue }; // warned by prepare
                if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
                    return Err(Error::RestoreStep { pid, step: "joining its cgroups".into(), why: format!("cgroup {l}: writing its pid to {}/cgroup.procs: {e}", dir.display()) });
                }
            }
        }
        Ok(())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // children first; a cgroup whose last process was just reaped may still be busy
        // for a moment
        let deadline = Instant::now() + Duration::from_secs(3);
        for d in self.created.iter().rev() {
            loop {
                match std::fs::remove_dir(d) {
                    Ok(()) => {
                        debug!("removed cgroup {}", d.display());
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => {
                        warn!("removing cgroup {} that the failed restore created: {e}", d.display());
                        break;
                    }
                }
            }
        }
    }
}

/// One cgroup restore needs: the first process in it (for messages), its line, and
/// what the image saved about it.
struct Need<'a> {
    pid: i32,
    key: String,
    path: String,
    dir: PathBuf,
    saved: Option<&'a CgroupDir>,
}

/// The image's settings of `c` that differ from what the existing cgroup `dir` holds
/// ("FILE is V here, W in the image").
fn differences(dir: &Path, c: &CgroupDir) -> Vec<String> {
    let mut out = Vec::new();
    for s in &c.settings {
        let Some((_, how)) = known(&c.controllers, &s.file) else { continue };
        match read_setting(dir, &s.file, how) {
            Some(v) if v == s.value => {}
            Some(v) => out.push(format!("{} is {v:?} here, {:?} in the image", s.file, s.value)),
            None => out.push(format!("{} is missing here ({:?} in the image)", s.file, s.value)),
        }
    }
    out
}

/// Looks up, compares and creates the image's cgroups (see the module doc). Nothing is
/// created before every check passed; on error the cgroups created so far are removed.
pub fn prepare(m: &stasis_image::Manifest, mode: Mode) -> Result<Prepared> {
    let mut prep = Prepared { mode, mounts: Vec::new(), created: Vec::new(), kept: false };
    if mode == Mode::Ignore {
        return Ok(prep);
    }
    prep.mounts = mounts();
    let saved: &[CgroupDir] = &m.process.cgroup_dirs;
    let mut needs: Vec<Need> = Vec::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut unmounted: HashSet<String> = HashSet::new();
    let mut unmounted_warnings = Vec::new();
    for q in m.processes.iter().filter(|q| !q.zombie) {
        for l in &q.cgroups {
            let Some((key, path)) = parse(l) else { continue };
            let Some((_, mp)) = prep.mounts.iter().find(|(k, _)| *k == key) else {
                if unmounted.insert(key.clone()) {
                    let why = format!("pid {}: cgroup {l}: that hierarchy is not mounted here", q.pid);
                    if mode == Mode::Create {
                        unmounted_warnings.push(format!("{why}; the process stays in the restorer's cgroup there"));
                    } else {
                        return Err(Error::RestoreRefused(why));
                    }
                }
                continue;
            };
            for p in ancestors(&path) {
                if !seen.insert((key.clone(), p.clone())) {
                    continue;
                }
                let dir = dir_under(mp, &p).ok_or_else(|| Error::RestoreRefused(format!("pid {}: cgroup {l}: the path leads outside {}", q.pid, mp.display())))?;
                let s = saved.iter().find(|c| c.controllers == key && c.path == p);
                needs.push(Need { pid: q.pid, key: key.clone(), path: p, dir, saved: s });
            }
        }
    }
    // cgroups saved below the processes' own (a subtree the program made)
    for c in saved {
        if seen.contains(&(c.controllers.clone(), c.path.clone())) {
            continue;
        }
        let Some((_, mp)) = prep.mounts.iter().find(|(k, _)| *k == c.controllers) else { continue };
        let Some(dir) = dir_under(mp, &c.path) else {
            return Err(Error::RestoreRefused(format!("cgroup {}:{}: the path leads outside {}", c.controllers, c.path, mp.display())));
        };
        let pid = m.processes.iter().find(|q| q.cgroups.iter().any(|l| parse(l).is_some_and(|(k, p)| k == c.controllers && c.path.starts_with(&format!("{p}/"))))).map_or(m.process.pid, |q| q.pid);
        seen.insert((c.controllers.clone(), c.path.clone()));
        needs.push(Need { pid, key: c.controllers.clone(), path: c.path.clone(), dir, saved: Some(c) });
    }
    // checks first: nothing is created unless every cgroup can be had (and a refusal
    // is the only line: warnings come once every check passed)
    let mut warnings = Vec::new();
    for n in &needs {
        match std::fs::symlink_metadata(&n.dir) {
            Ok(md) if md.is_dir() => {
                let diff = n.saved.map(|c| differences(&n.dir, c)).unwrap_or_default();
                if !diff.is_empty() {
                    let why = format!("pid {}: cgroup {}:{} exists with other settings: {}", n.pid, n.key, n.path, diff.join(", "));
                    if mode == Mode::Strict {
                        return Err(Error::RestoreRefused(format!("{why} (--cgroups strict)")));
                    }
                    warnings.push(why);
                }
            }
            Ok(_) => return Err(Error::RestoreRefused(format!("pid {}: cgroup {}:{}: {} is not a directory", n.pid, n.key, n.path, n.dir.display()))),
            Err(_) if mode == Mode::Join => {
                return Err(Error::RestoreRefused(format!(
                    "pid {}: cgroup {}:{} does not exist ({}) and --cgroups join creates none",
                    n.pid,
                    n.key,
                    n.path,
                    n.dir.display()
                )))
            }
            Err(_) => {}
        }
    }
    for w in unmounted_warnings {
        warn!("{w}");
    }
    for w in warnings {
        warn!("{w}; used as it is");
    }
    for n in &needs {
        if n.dir.exists() {
            continue;
        }
        let err = |why: String| Error::RestoreStep { pid: n.pid, step: "creating its cgroups".into(), why: format!("cgroup {}:{}: {why}", n.key, n.path) };
        std::fs::create_dir(&n.dir).map_err(|e| err(format!("creating {}: {e}", n.dir.display())))?;
        prep.created.push(n.dir.clone());
        let Some(c) = n.saved else {
            info!(pid = n.pid, "created cgroup {} (the image has no settings for it)", n.dir.display());
            continue;
        };
        for s in &c.settings {
            let Some((_, how)) = known(&c.controllers, &s.file) else { continue }; // validate refused it
            if read_setting(&n.dir, &s.file, how).as_deref() == Some(s.value.as_str()) {
                continue; // already so
            }
            write_setting(&n.dir, s, how).map_err(|e| err(format!("setting {} to {:?}: {e}", s.file, s.value)))?;
        }
        for o in &c.file_owners {
            let f = n.dir.join(&o.file);
            if !f.exists() {
                debug!(pid = n.pid, "cgroup {}: no {} here to give to {}:{}", n.dir.display(), o.file, o.uid, o.gid);
                continue;
            }
            std::os::unix::fs::chown(&f, Some(o.uid), Some(o.gid)).map_err(|e| err(format!("giving {} to {}:{}: {e}", o.file, o.uid, o.gid)))?;
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(o.mode)).map_err(|e| err(format!("mode {:o} of {}: {e}", o.mode, o.file)))?;
        }
        std::os::unix::fs::chown(&n.dir, Some(c.uid), Some(c.gid)).map_err(|e| err(format!("giving the directory to {}:{}: {e}", c.uid, c.gid)))?;
        std::fs::set_permissions(&n.dir, std::fs::Permissions::from_mode(c.mode)).map_err(|e| err(format!("directory mode {:o}: {e}", c.mode)))?;
        info!(pid = n.pid, settings = c.settings.len(), "created cgroup {}", n.dir.display());
    }
    Ok(prep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_dirs_stay_under_the_mount_point() {
        let mp = Path::new("/sys/fs/cgroup");
        assert_eq!(dir_under(mp, "/"), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(dir_under(mp, "/a/b.scope"), Some(PathBuf::from("/sys/fs/cgroup/a/b.scope")));
        for bad in ["/../../tmp/x", "/a/../../..", "/a/./b", "/a//b", "a", "", "/a/\0", "/a/"] {
            assert_eq!(dir_under(mp, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn known_files_by_hierarchy() {
        assert_eq!(known("", "pids.max").map(|k| k.1), Some(How::Plain));
        assert_eq!(known("pids", "pids.max").map(|k| k.1), Some(How::Plain));
        assert_eq!(known("cpu,cpuacct", "cpu.shares").map(|k| k.1), Some(How::Plain));
        assert_eq!(known("", "hugetlb.2MB.max").map(|k| k.1), Some(How::Plain));
        assert!(known("", "hugetlb.2MB.rsvd.max").is_some());
        assert_eq!(known("", "io.max").map(|k| k.1), Some(How::Lines));
        // not in the table, or not of that hierarchy
        for (k, f) in [("", "cgroup.procs"), ("", "release_agent"), ("cpu", "release_agent"), ("pids", "cpu.shares"), ("", "cpu.shares"), ("memory", "memory.max"), ("", "hugetlb..max"), ("", "hugetlb.a/b.max"), ("", "../pids.max")] {
            assert!(known(k, f).is_none(), "{k}:{f}");
        }
        // parents' subtree_control comes before the limits, period before quota
        assert!(known("", "cgroup.subtree_control").unwrap().0 < known("", "pids.max").unwrap().0);
        assert!(known("cpu", "cpu.cfs_period_us").unwrap().0 < known("cpu", "cpu.cfs_quota_us").unwrap().0);
        assert!(known("cpuset", "cpuset.cpus").unwrap().0 < known("cpuset", "cpuset.cpu_exclusive").unwrap().0);
    }

    #[test]
    fn values() {
        assert!(check_value(How::Plain, "max").is_ok());
        assert!(check_value(How::Plain, "50000 100000").is_ok());
        assert!(check_value(How::Lines, "8:0 rbps=max wbps=1048576\n8:16 rbps=1 wbps=max").is_ok());
        assert!(check_value(How::Lines, "").is_ok());
        assert!(check_value(How::Plain, "1\n2").is_err());
        assert!(check_value(How::Lines, "a\n\nb").is_err());
        assert!(check_value(How::Plain, "a\0").is_err());
        assert!(check_value(How::Plain, &"9".repeat(MAX_VALUE + 1)).is_err());
        assert!(check_value(How::Lines, &vec!["1:1 2"; MAX_LINES + 1].join("\n")).is_err());
        assert!(check_value(How::SubtreeControl, "cpu memory pids").is_ok());
        assert!(check_value(How::SubtreeControl, "-cpu").is_err());
        assert!(check_value(How::Type, "threaded").is_ok());
        assert!(check_value(How::Type, "x").is_err());
        assert!(check_value(How::OomControl, "1").is_ok());
        assert!(check_value(How::OomControl, "oom_kill_disable 1").is_err());
    }

    #[test]
    fn ancestors_along_a_path() {
        assert_eq!(ancestors("/"), Vec::<String>::new());
        assert_eq!(ancestors("/a/b"), vec!["/a".to_string(), "/a/b".to_string()]);
    }
}
