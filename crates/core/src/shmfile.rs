//! POSIX shared memory objects: the files `shm_open` makes directly in /dev/shm (a
//! tmpfs), mapped shared by the tree (PostgreSQL's dynamic shared memory, a JVM or
//! browser's shared buffers). Their content is memory, like a SysV segment's: it is
//! gone after a reboot and missing on another host, and after a `--leave-running` dump
//! the original keeps writing it. So the dump saves it (page runs under the mapped-file
//! object's id by file offset, holes left out; size, mode, owner and times in
//! `MappedFileObj.saved`). Restore maps the file at its path when it is still the
//! dumped one (unchanged), and when it is missing creates it there first, with the
//! image's content: as a nameless O_TMPFILE file in /dev/shm that gets its name only
//! once it is complete, by a link that fails if anything has that name meanwhile. An
//! existing file is never written (a changed one is refused, the refusal saying how
//! to have the image's content back); a failed restore removes the files it created.
//!
//! Only an object that no process outside the tree maps or holds open is dumped at all
//! (mem.rs refuses the others, or takes them as external).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use stasis_image::model::*;
use stasis_image::Manifest;
use stasis_sys::sys;
use tracing::{info, warn};

use crate::error::{Ctx, Error, Result};
use crate::files;
use crate::objects::ObjectTable;

/// Where POSIX shared memory objects live.
const DIR: &str = "/dev/shm";

/// The name of the POSIX shared memory object at `path`: `/dev/shm/NAME`, NAME one
/// path component (at most 255 bytes, not `.` or `..`).
pub fn name_of(path: &str) -> Option<&str> {
    let n = path.strip_prefix(DIR)?.strip_prefix('/')?;
    (!n.is_empty() && n.len() <= 255 && !n.contains(['/', '\0']) && n != "." && n != "..").then_some(n)
}

/// Dump: when mapped-file object `id` (at `path`, reachable through `via`, a
/// map_files link of a shared mapping) is a POSIX shared memory object, records its
/// size, mode, owner and times and queues its content for the pages files. Once per
/// object. Anything else (another directory, not a regular file on a tmpfs) is left
/// as it was: a file whose content lives in the file.
pub fn save(pid: i32, objs: &mut ObjectTable, id: u32, via: &str, path: &str) -> Result<()> {
    let Some(mf) = objs.get_mut(id).and_then(|o| o.mapped_file_mut()) else { return Ok(()) };
    if mf.saved.is_some() || mf.ghost_id != 0 || name_of(path).is_none() {
        return Ok(());
    }
    let f = files::open_noatime(via).ctx(pid, || format!("opening shared memory object {path} through {via}"))?;
    let md = f.metadata().ctx(pid, || format!("stat of shared memory object {path}"))?;
    let proc_path = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("no NUL");
    if !md.is_file() || sys::statfs_type(&proc_path).ok() != Some(sys::TMPFS_MAGIC) {
        return Ok(());
    }
    mf.saved = Some(GhostObj {
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        atime_ns: files::ns_of(md.atime(), md.atime_nsec()),
        mtime_ns: files::ns_of(md.mtime(), md.mtime_nsec()),
        size: md.len(),
        paged: true,
        ..Default::default()
    });
    objs.ghost_files.push((id, f, md.len()));
    Ok(())
}

/// Validation of `MappedFileObj.saved`: a regular file's metadata with its content in
/// page runs, of a path that names a POSIX shared memory object, nothing else (its
/// size is bounded as a nameless file's, by validate).
pub fn check(f: &MappedFileObj) -> std::result::Result<(), String> {
    let Some(g) = &f.saved else { return Ok(()) };
    if f.ghost_id != 0 || name_of(&f.path).is_none() {
        return Err(format!("saved content for {}, which is not a POSIX shared memory object (/dev/shm/NAME)", f.path));
    }
    let plain = g.path.is_empty() && g.memfd_name.is_empty() && g.external.is_empty() && g.content.is_empty();
    if !plain || !g.paged || g.seals != 0 || g.huge_page_size != 0 || g.rdev != 0 || g.mode & libc::S_IFMT != libc::S_IFREG {
        return Err("saved content that is not a plain regular file's, in page runs".into());
    }
    Ok(())
}

/// The file of a saved object is missing here (so restore makes it).
pub fn missing(f: &MappedFileObj) -> bool {
    f.saved.is_some() && std::fs::symlink_metadata(&f.path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

/// The POSIX shared memory objects a restore created: removed again when dropped,
/// unless kept (the restore succeeded).
#[derive(Default)]
pub struct Created {
    dir: Option<OwnedFd>,
    made: Vec<(CString, u64)>,
}

impl Created {
    pub fn keep(mut self) {
        self.made.clear();
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        let Some(dir) = &self.dir else { return };
        for (name, ino) in &self.made {
            // only the file this restore linked there (the name may have been reused)
            let at = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), name.to_string_lossy());
            if std::fs::symlink_metadata(&at).is_ok_and(|m| m.ino() == *ino) {
                if let Err(e) = sys::unlink_at(dir.as_fd(), name, 0) {
                    warn!("removing {DIR}/{} after the failed restore: {e}", name.to_string_lossy());
                }
            }
        }
    }
}

/// Restore: creates each saved POSIX shared memory object whose file is missing, with
/// the image's content, owner, mode and times (never over a file: a name taken in the
/// meantime fails the restore). Files that exist are left alone (`check_files` made
/// sure they are unchanged, or that --allow-changed-files was given).
pub fn recreate(m: &Manifest, shards: &[&[u8]]) -> Result<Created> {
    let pid = m.process.pid;
    let step = |why: String| Error::RestoreStep { pid, step: "recreating POSIX shared memory objects".into(), why };
    let mut out = Created::default();
    for o in &m.objects {
        let Some(mf) = o.mapped_file().filter(|f| missing(f)) else { continue };
        let (Some(g), Some(name)) = (&mf.saved, name_of(&mf.path)) else { continue };
        if out.dir.is_none() {
            let c = CString::new(DIR).expect("no NUL");
            let d = sys::open(&c, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0).map_err(|e| step(format!("opening {DIR}: {e}")))?;
            let ty = sys::statfs_type(&CString::new(format!("/proc/self/fd/{}", d.as_raw_fd())).expect("no NUL"));
            if ty.ok() != Some(sys::TMPFS_MAGIC) {
                return Err(step(format!("{DIR} is not a tmpfs here: {} is not created", mf.path)));
            }
            out.dir = Some(d);
        }
        let dir = out.dir.as_ref().expect("opened above").as_fd();
        let what = |why: String| step(format!("{}: {why}", mf.path));
        let fd = sys::open_at(dir, c".", libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600).map_err(|e| what(format!("O_TMPFILE in {DIR}: {e}")))?;
        let file = File::from(fd);
        let runs: Vec<&PageRun> = m.index.runs.iter().filter(|r| r.object_id == o.id).collect();
        files::fill_ghost(&file, g, &runs, shards).map_err(what)?;
        files::set_meta(&file, g, true).map_err(what)?;
        let ino = file.metadata().map_err(|e| what(format!("fstat: {e}")))?.ino();
        let cname = CString::new(name).map_err(|e| what(e.to_string()))?;
        sys::link_fd_at(file.as_fd(), dir, &cname).map_err(|e| what(format!("giving it its name: {e} (a file of that name appeared meanwhile?)")))?;
        info!(path = %mf.path, bytes = g.size, "recreated POSIX shared memory object from the image");
        out.made.push((cname, ino));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_posix_shm_objects() {
        assert_eq!(name_of("/dev/shm/PostgreSQL.1234"), Some("PostgreSQL.1234"));
        for p in ["/dev/shm", "/dev/shm/", "/dev/shm/..", "/dev/shm/.", "/dev/shm/a/b", "/dev/shmx/a", "/tmp/a", "/dev/shm//a"] {
            assert_eq!(name_of(p), None, "{p}");
        }
        assert_eq!(name_of(&format!("/dev/shm/{}", "x".repeat(256))), None);
    }

    /// recreate makes a missing object from its page runs (hole, size, mode), never
    /// over an existing file, and removes it again unless kept. (Needs root: writes
    /// /dev/shm/stasis-unit-PID.)
    #[test]
    fn recreated_objects_are_removed_unless_kept() {
        use std::os::unix::fs::PermissionsExt;
        let path = format!("/dev/shm/stasis-unit-{}", std::process::id());
        let _ = std::fs::remove_file(&path);
        let g = GhostObj { mode: libc::S_IFREG | 0o640, paged: true, size: 3 * 4096, uid: 0, gid: 0, mtime_ns: 1_000_000_000, atime_ns: 1, ..Default::default() };
        let mut m = Manifest::default();
        m.objects.push(Object { id: 7, kind: Some(Kind::MappedFile(MappedFileObj { path: path.clone(), saved: Some(g), ..Default::default() })), ..Default::default() });
        m.reindex_objects().unwrap();
        m.index.runs.push(PageRun { object_id: 7, addr: 2 * 4096, count: 1, file_offset: 0, ..Default::default() });
        let page = [b'x'; 4096];
        let shards: Vec<&[u8]> = vec![&page];
        let made = recreate(&m, &shards).expect("recreate");
        let md = std::fs::metadata(&path).expect("made");
        assert_eq!((md.len(), md.permissions().mode() & 0o7777, md.mtime()), (3 * 4096, 0o640, 1));
        let content = std::fs::read(&path).unwrap();
        assert!(content[..8192].iter().all(|&b| b == 0) && content[8192..].iter().all(|&b| b == b'x'));
        // it exists now: a second restore leaves it alone (and does not take it over)
        let again = recreate(&m, &shards).expect("recreate over an existing file");
        drop(again);
        assert!(std::path::Path::new(&path).exists(), "an existing file was removed");
        drop(made);
        assert!(!std::path::Path::new(&path).exists(), "a failed restore left {path}");
        let made = recreate(&m, &shards).expect("recreate");
        made.keep();
        assert!(std::path::Path::new(&path).exists(), "a kept object was removed");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn saved_content_is_checked() {
        let g = GhostObj { mode: libc::S_IFREG | 0o600, paged: true, size: 8192, ..Default::default() };
        let ok = MappedFileObj { path: "/dev/shm/x".into(), saved: Some(g.clone()), ..Default::default() };
        check(&ok).expect("a saved object");
        let bad = [
            MappedFileObj { path: "/etc/passwd".into(), ..ok.clone() },
            MappedFileObj { path: "/dev/shm/../etc/passwd".into(), ..ok.clone() },
            MappedFileObj { ghost_id: 3, ..ok.clone() },
            MappedFileObj { saved: Some(GhostObj { paged: false, ..g.clone() }), ..ok.clone() },
            MappedFileObj { saved: Some(GhostObj { mode: libc::S_IFCHR | 0o600, ..g.clone() }), ..ok.clone() },
            MappedFileObj { saved: Some(GhostObj { memfd_name: "m".into(), ..g.clone() }), ..ok.clone() },
        ];
        for b in bad {
            assert!(check(&b).is_err(), "{b:?}");
        }
    }
}
