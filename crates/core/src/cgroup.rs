//! Control-group membership: every process goes back into the cgroups it was in.
//!
//! Dump: the lines of /proc/PID/cgroup (`ID:CONTROLLERS:PATH`, one per hierarchy; `0::PATH`
//! for cgroup v2). Restore, once every process exists and before any is built (threads
//! created later inherit it): for each hierarchy mounted here whose path differs from
//! the restorer's own, the cgroup directory is created if missing and the pid written to
//! its `cgroup.procs`. What cannot be done (hierarchy not mounted here, a v2 cgroup whose
//! controllers forbid member processes) is a warning naming pid and cgroup: the process
//! runs, in the restorer's cgroup for that hierarchy.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::procfs;

/// /proc/PID/cgroup lines of `pid` (empty if unreadable, e.g. a zombie).
pub fn dump(pid: i32) -> Vec<String> {
    procfs::read(pid, "cgroup").unwrap_or_default().lines().map(str::to_string).collect()
}

/// (controllers key, path) of a /proc/PID/cgroup line; the key is "" for cgroup v2.
fn parse(line: &str) -> Option<(String, String)> {
    let mut it = line.splitn(3, ':');
    let _id = it.next()?;
    let ctl = it.next()?;
    let path = it.next()?;
    Some((ctl.to_string(), path.to_string()))
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

fn key_of(ctl: &str) -> String {
    let mut k: Vec<&str> = ctl.split(',').filter(|x| !x.is_empty()).collect();
    k.sort();
    k.join(",")
}

/// The `cgroup.procs` files of the cgroups in `lines` (one per hierarchy mounted here),
/// creating missing cgroups: for a process that moves itself there before unsharing a
/// cgroup namespace rooted at them.
pub fn procs_files(pid: i32, lines: &[String]) -> std::result::Result<Vec<std::ffi::CString>, String> {
    let mounts = mounts();
    let mut out = Vec::new();
    for l in lines {
        let Some((ctl, path)) = parse(l) else { continue };
        let Some((_, mp)) = mounts.iter().find(|(k, _)| *k == key_of(&ctl)) else {
            return Err(format!("pid {pid}: cgroup {l}: that hierarchy is not mounted here (its cgroup namespace needs it)"));
        };
        let dir = dir_under(mp, &path).ok_or_else(|| format!("pid {pid}: cgroup {l}: the path leads outside {}", mp.display()))?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("pid {pid}: creating cgroup {}: {e}", dir.display()))?;
        let f = dir.join("cgroup.procs");
        out.push(std::ffi::CString::new(f.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

/// Moves every live process into the cgroups it was in (see the module doc). Our own
/// cgroups are read once; the mount table only if some process is elsewhere.
pub fn restore(procs: &[stasis_image::model::Process]) {
    let ours: Vec<(String, String)> = dump(stasis_sys::sys::getpid()).iter().filter_map(|l| parse(l)).map(|(c, p)| (key_of(&c), p)).collect();
    let mut mounts: Option<Vec<(String, PathBuf)>> = None;
    for q in procs.iter().filter(|q| !q.zombie) {
        let pid = q.pid;
        for l in &q.cgroups {
            let Some((ctl, path)) = parse(l) else { continue };
            let key = key_of(&ctl);
            if ours.iter().any(|(k, p)| *k == key && *p == path) {
                continue; // already there (inherited from us)
            }
            let Some((_, mp)) = mounts.get_or_insert_with(self::mounts).iter().find(|(k, _)| *k == key) else {
                warn!(pid, "cgroup {l}: that hierarchy is not mounted here; the process stays in the restorer's cgroup");
                continue;
            };
            let Some(dir) = dir_under(mp, &path) else {
                warn!(pid, "cgroup {l}: the path leads outside {}; the process stays in the restorer's cgroup", mp.display());
                continue;
            };
            if !dir.exists() {
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    warn!(pid, "cgroup {l}: creating {}: {e}", dir.display());
                    continue;
                }
                debug!(pid, "created cgroup {}", dir.display());
            }
            if let Err(e) = std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
                warn!(pid, "cgroup {l}: moving the process into {}: {e}", dir.display());
            }
        }
    }
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
}
