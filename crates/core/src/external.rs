//! Resources shared with processes outside the dumped tree.
//!
//! Dump side: `scan` makes one pass over /proc (only when the tree has pipes, FIFOs,
//! shared memory or unix sockets connected outside) and finds, for each pipe, FIFO,
//! shared-memory inode and outside socket peer of the tree, a process outside the tree
//! that holds it (an fd, or for memory also a mapping). A pipe
//! used only as fd 0, 1 or 2 is accepted as it always was (a shell or harness reading
//! the output); anything else is refused unless the user named it with
//! `dump --external RES`. Restore side: `--inherit-fd FD:RES` says which fd of the
//! restorer provides an external resource; `check_restore` validates them all before
//! any process is created.
//!
//! Resource names: `pipe:[INODE]` (or `pipe:INODE`) for a pipe, `shm:[INODE]` (or
//! `shm:INODE`) for shared memory: MAP_SHARED anonymous memory, a memfd, a deleted file
//! or a tmpfs (/dev/shm) file mapped shared. INODE is what /proc/PID/fd links and the
//! inode column of /proc/PID/maps show; refusals print the exact name to use.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use stasis_image::Manifest;
use stasis_sys::sys;

use crate::error::{Error, Result};
use crate::procfs;

pub fn pipe_name(ino: u64) -> String {
    format!("pipe:[{ino}]")
}

pub fn shm_name(ino: u64) -> String {
    format!("shm:[{ino}]")
}

/// Parses a resource name as the user may spell it; returns its canonical form.
pub fn parse_resource(s: &str) -> std::result::Result<String, String> {
    let bad = || format!("'{s}' is not a resource name: expected pipe:[INODE], shm:[INODE] or unix:[INODE] (brackets optional)");
    let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
    let num = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(rest);
    let ino: u64 = num.parse().map_err(|_| bad())?;
    match kind {
        "pipe" => Ok(pipe_name(ino)),
        "shm" => Ok(shm_name(ino)),
        "unix" => Ok(format!("unix:[{ino}]")),
        _ => Err(bad()),
    }
}

/// The `--external` names of a dump, canonical.
pub fn parse_external(pid: i32, raw: &[String]) -> Result<BTreeSet<String>> {
    raw.iter()
        .map(|r| parse_resource(r).map_err(|why| Error::Refused { pid, why: format!("--external {r}: {why}") }))
        .collect()
}

/// A shared-memory object the tree maps MAP_SHARED, which an outside process could
/// share: the first mapping that was seen.
#[derive(Debug, Clone)]
pub struct SharedMem {
    pub pid: i32,
    /// "VMA 0x...-0x..."
    pub what: String,
    pub dev: (u32, u32),
    pub ino: u64,
    /// maps name ("/memfd:x (deleted)", "/dev/zero (deleted)", "/dev/shm/y").
    pub name: String,
}

/// Who outside the tree holds the resources asked about: "pid N (comm)".
#[derive(Default)]
pub struct Holders {
    pub pipes: HashMap<u64, String>,
    pub shm: HashMap<(u32, u32, u64), String>,
    /// Named FIFOs (st_dev, st_ino) held open by an outside process.
    pub fifos: HashMap<(u64, u64), String>,
    /// Sockets (inode) an outside process has an fd on: peers of the tree's unix sockets.
    pub sockets: HashMap<u32, String>,
    /// Pty slaves (their /dev/pts path) whose master the tree holds: every outside
    /// process with an fd on one.
    pub ttys: HashMap<String, Vec<String>>,
}

fn who(pid: i32) -> String {
    format!("pid {pid} ({})", procfs::read(pid, "comm").unwrap_or_default().trim())
}

/// "pid N (comm)" of a process of the tree.
pub fn who_in_tree(pid: i32) -> (i32, String) {
    (pid, procfs::read(pid, "comm").unwrap_or_default().trim().to_string())
}

fn dev_of(md: &std::fs::Metadata) -> (u32, u32) {
    (libc::major(md.dev()), libc::minor(md.dev()))
}

/// One pass over /proc: outside holders of the pipes `pipes` (fds), of the named FIFOs
/// `fifos`, of the sockets `sockets` (fds: peers of the tree's unix sockets) and of the
/// shared memory objects `shm` (fds or mappings). Processes of `tree` and stasis are skipped.
pub fn scan(tree: &[i32], pipes: &HashSet<u64>, shm: &[SharedMem], fifos: &HashSet<(u64, u64)>, sockets: &HashSet<u32>, ttys: &HashSet<String>) -> Holders {
    let mut out = Holders::default();
    if pipes.is_empty() && shm.is_empty() && fifos.is_empty() && sockets.is_empty() && ttys.is_empty() {
        return out;
    }
    let keys: HashSet<(u32, u32, u64)> = shm.iter().map(|s| (s.dev.0, s.dev.1, s.ino)).collect();
    let names: HashSet<&str> = shm.iter().map(|s| s.name.as_str()).collect();
    let me = sys::getpid();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(other) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if other == me || tree.contains(&other) {
            continue;
        }
        if let Ok(fds) = std::fs::read_dir(format!("{}/fd", crate::procfs::dir(other))) {
            for f in fds.flatten() {
                let Ok(link) = std::fs::read_link(f.path()) else { continue };
                let link = link.to_string_lossy();
                if let Some(ino) = link.strip_prefix("pipe:[").and_then(|r| r.strip_suffix(']')).and_then(|n| n.parse().ok()) {
                    if pipes.contains(&ino) && !out.pipes.contains_key(&ino) {
                        out.pipes.insert(ino, who(other));
                    }
                    continue;
                }
                if let Some(ino) = link.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')).and_then(|n| n.parse().ok()) {
                    if sockets.contains(&ino) {
                        out.sockets.entry(ino).or_insert_with(|| who(other));
                    }
                    continue;
                }
                if ttys.contains(link.as_ref()) {
                    let held = out.ttys.entry(link.to_string()).or_default();
                    let w = who(other);
                    if !held.contains(&w) {
                        held.push(w);
                    }
                    continue;
                }
                if !fifos.is_empty() && link.starts_with('/') {
                    if let Ok(md) = std::fs::metadata(f.path()) {
                        use std::os::unix::fs::FileTypeExt;
                        let k = (md.dev(), md.ino());
                        if md.file_type().is_fifo() && fifos.contains(&k) {
                            out.fifos.entry(k).or_insert_with(|| who(other));
                            continue;
                        }
                    }
                }
                if !keys.is_empty()
                    && (link.starts_with("/memfd:") || link.ends_with(" (deleted)") || names.contains(link.as_ref()))
                {
                    if let Ok(md) = std::fs::metadata(f.path()) {
                        let k = (dev_of(&md).0, dev_of(&md).1, md.ino());
                        if keys.contains(&k) {
                            out.shm.entry(k).or_insert_with(|| who(other));
                        }
                    }
                }
            }
        }
        if keys.is_empty() {
            continue;
        }
        let Ok(maps) = procfs::read(other, "maps") else { continue };
        for l in maps.lines() {
            let mut it = l.split_whitespace();
            let (Some(dev), Some(ino)) = (it.nth(3), it.next()) else { continue };
            let Ok(ino) = ino.parse::<u64>() else { continue };
            if ino == 0 {
                continue;
            }
            let Some((a, b)) = dev.split_once(':') else { continue };
            let (Ok(a), Ok(b)) = (u32::from_str_radix(a, 16), u32::from_str_radix(b, 16)) else { continue };
            if keys.contains(&(a, b, ino)) {
                out.shm.entry((a, b, ino)).or_insert_with(|| who(other));
            }
        }
    }
    out
}

/// Refuses the first shared-memory object of the tree that an outside process shares
/// (objects marked external never get here).
pub fn check_shm(holders: &Holders, shm: &[SharedMem]) -> Result<()> {
    for s in shm {
        if let Some(other) = holders.shm.get(&(s.dev.0, s.dev.1, s.ino)) {
            let (pid, comm) = who_in_tree(s.pid);
            let name = shm_name(s.ino);
            return Err(Error::Shared {
                pid,
                comm,
                why: format!(
                    "{} maps {name} ({}), which {other} outside the dumped tree also holds; to dump it anyway mark it \
                     with `--external {name}` and hand it over at restore with `--inherit-fd FD:{name}`",
                    s.what, s.name
                ),
            });
        }
    }
    Ok(())
}

/// Device numbers of the tmpfs mounts `pid` sees (its /dev/shm among them).
pub fn tmpfs_devs(pid: i32) -> HashSet<(u32, u32)> {
    let text = procfs::read(pid, "mountinfo").unwrap_or_default();
    let mut out = HashSet::new();
    for l in text.lines() {
        let Some((left, right)) = l.split_once(" - ") else { continue };
        if right.split_whitespace().next() != Some("tmpfs") {
            continue;
        }
        if let Some((a, b)) = left.split_whitespace().nth(2).and_then(|d| d.split_once(':')) {
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                out.insert((a, b));
            }
        }
    }
    out
}

// ---------------------------------------------------------------- restore side

/// The restorer's fds named by `--inherit-fd FD:RES`, checked.
#[derive(Default, Debug)]
pub struct Inherited {
    by_res: HashMap<String, i32>,
}

impl Inherited {
    pub fn fd(&self, res: &str) -> Option<i32> {
        self.by_res.get(res).copied()
    }

    /// A close-on-exec duplicate of the fd providing `res`.
    pub fn dup(&self, res: &str) -> std::io::Result<OwnedFd> {
        let fd = self.fd(res).ok_or_else(|| std::io::Error::other(format!("no --inherit-fd for {res}")))?;
        sys::dup_raw(fd)
    }
}

/// External resources of an image: canonical name → (pid using it, description).
fn externals(m: &Manifest) -> Vec<(String, i32, String)> {
    let mut out = Vec::new();
    for o in &m.objects {
        let (name, desc) = if let Some(p) = o.pipe().filter(|p| !p.external.is_empty()) {
            (pipe_name(p.ino), p.external.clone())
        } else if let Some(g) = o.ghost().filter(|g| !g.external.is_empty()) {
            (g.external.clone(), g.path.clone())
        } else if let Some(u) = o.unix().filter(|u| !u.external.is_empty()) {
            (crate::fdkinds::unix::external_name(u.ino), format!("a unix {} socket {}", crate::fdkinds::unix::type_name(u.sock_type), u.external))
        } else {
            continue;
        };
        // the first process that uses it (fd or mapping)
        let users = |id: u32| {
            m.objects.iter().filter_map(move |u| {
                let hit = u.id == id
                    || u.pipe_end().is_some_and(|e| e.pipe_id == id)
                    || u.file().is_some_and(|f| f.ghost_id == id)
                    || u.mapped_file().is_some_and(|f| f.ghost_id == id);
                hit.then_some(u.id)
            })
        };
        let ids: HashSet<u32> = users(o.id).collect();
        let pid = m
            .processes
            .iter()
            .find(|p| p.fds.iter().any(|f| ids.contains(&f.object_id)) || p.vmas.iter().any(|v| ids.contains(&v.object_id)))
            .map(|p| p.pid)
            .unwrap_or(m.process.pid);
        out.push((name, pid, desc));
    }
    out
}

/// Parses and checks every `--inherit-fd FD:RES` against the image, and that every
/// external shared-memory object has one. Runs before any process is created.
pub fn check_restore(m: &Manifest, raw: &[String]) -> Result<Inherited> {
    let refuse = |why: String| Error::RestoreRefused(why);
    let ext = externals(m);
    let mut out = Inherited::default();
    for r in raw {
        let arg = format!("--inherit-fd {r}");
        let (fd, res) = r.split_once(':').ok_or_else(|| refuse(format!("{arg}: expected FD:RES, e.g. 5:pipe:[12345]")))?;
        let fd: i32 = fd.parse().ok().filter(|f| *f >= 0).ok_or_else(|| refuse(format!("{arg}: '{fd}' is not an fd number")))?;
        let res = parse_resource(res).map_err(|why| refuse(format!("{arg}: {why}")))?;
        let Some((_, _, desc)) = ext.iter().find(|(n, _, _)| *n == res) else {
            let names: Vec<&str> = ext.iter().map(|(n, _, _)| n.as_str()).collect();
            return Err(refuse(format!(
                "{arg}: the image has no external resource {res} (it has: {})",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            )));
        };
        if out.by_res.contains_key(&res) {
            return Err(refuse(format!("{arg}: {res} is named by two --inherit-fd options")));
        }
        let md = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .map_err(|_| refuse(format!("{arg}: this restorer has no fd {fd}")))?;
        let acc = sys::fcntl(fd, libc::F_GETFL, 0).map(|f| f as i32 & libc::O_ACCMODE).unwrap_or(-1);
        if res.starts_with("pipe:") {
            if !md.file_type().is_fifo() {
                return Err(refuse(format!("{arg}: fd {fd} is not a pipe ({res} was {desc})")));
            }
        } else if res.starts_with("unix:") {
            let want = m.objects.iter().filter_map(|o| o.unix()).find(|u| crate::fdkinds::unix::external_name(u.ino) == res).map(|u| u.sock_type);
            let f = sys::dup_raw(fd).map_err(|e| refuse(format!("{arg}: fd {fd}: {e}")))?;
            let dom = sys::getsockopt_int(std::os::fd::AsFd::as_fd(&f), libc::SOL_SOCKET, libc::SO_DOMAIN).ok();
            let ty = sys::getsockopt_int(std::os::fd::AsFd::as_fd(&f), libc::SOL_SOCKET, libc::SO_TYPE).ok();
            if !md.file_type().is_socket() || dom != Some(libc::AF_UNIX) || ty != want {
                return Err(refuse(format!("{arg}: fd {fd} is not a unix socket of the type {res} had ({desc})")));
            }
        } else {
            let size = m.objects.iter().filter_map(|o| o.ghost()).find(|g| g.external == res).map(|g| g.size).unwrap_or(0);
            if !md.is_file() || acc != libc::O_RDWR {
                return Err(refuse(format!(
                    "{arg}: fd {fd} must be a memfd or a regular file opened read-write (O_RDWR) to be mapped shared"
                )));
            }
            if md.len() < size {
                return Err(refuse(format!(
                    "{arg}: fd {fd} has {} bytes but {res} had {size} at dump time (the mapping would fault)",
                    md.len()
                )));
            }
        }
        out.by_res.insert(res, fd);
    }
    for (name, pid, desc) in &ext {
        if name.starts_with("unix:") && out.fd(name).is_none() {
            return Err(refuse(format!(
                "pid {pid}: {name} ({desc}) was marked external at dump; hand a connected unix socket over with \
                 `--inherit-fd FD:{name}`"
            )));
        }
        if name.starts_with("shm:") && out.fd(name).is_none() {
            return Err(refuse(format!(
                "pid {pid}: shared memory {name} ({desc}) was marked external at dump; hand it over with \
                 `--inherit-fd FD:{name}` (FD a memfd or a file opened O_RDWR that holds it)"
            )));
        }
    }
    Ok(out)
}

/// Warns about `--external` names that matched nothing in the tree (a typo, or a
/// resource the process no longer has).
pub fn warn_unused(objs: &crate::objects::ObjectTable) {
    for name in &objs.external {
        let found = objs.objects.iter().any(|o| {
            o.pipe().is_some_and(|p| pipe_name(p.ino) == *name)
                || o.ghost().is_some_and(|g| g.external == *name)
                || o.unix().is_some_and(|u| !u.external.is_empty() && crate::fdkinds::unix::external_name(u.ino) == *name)
        });
        if !found {
            tracing::warn!("--external {name}: the dumped tree has no such pipe, shared memory or unix socket connected outside; ignored");
        }
    }
}
