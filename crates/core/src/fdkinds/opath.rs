//! O_PATH fds: a location in the filesystem, not an open file (regular files,
//! directories, devices, FIFOs, sockets, and symbolic links themselves when opened with
//! O_PATH|O_NOFOLLOW). Nothing is read or written through them, so no offset, content
//! or owner belongs to them.
//!
//! Dump: the path (/proc/PID/fd link), the flags (O_PATH, O_NOFOLLOW, O_DIRECTORY...)
//! and the file type and device/inode (stat through the fd: a symlink's own).
//! Restore: open(path, flags) — never creating anything — and the file type must be the
//! same (a path that became another kind of file is refused); the size or mtime of a
//! file may change (nothing of it is read through an O_PATH fd).
//!
//! Not kept: an O_PATH fd of a file deleted since is left to the deleted-file code (a
//! regular file comes back nameless); of a deleted non-regular file: refused.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use stasis_image::model::{FileIdentity, FileObj, Kind, Object};

/// O_PATH as the kernel's fdinfo shows it.
pub const O_PATH: u32 = libc::O_PATH as u32;

/// The flags an O_PATH open keeps (the kernel drops everything else).
const KEPT: u32 = O_PATH | (libc::O_NOFOLLOW | libc::O_DIRECTORY) as u32 | super::KERNEL_O_LARGEFILE;

pub fn is_opath(flags: u32) -> bool {
    flags & O_PATH != 0
}

/// The object of an O_PATH fd of a named file (`md`: stat through the fd).
pub fn dump(link: &str, md: &std::fs::Metadata, flags: u32, ghost_id: u32, deleted: bool) -> Object {
    Object {
        kind: Some(Kind::File(FileObj {
            path: link.trim_end_matches(" (deleted)").to_string(),
            flags: flags & KEPT,
            pos: 0,
            identity: Some(FileIdentity { size: md.size(), mtime_ns: 0, hash: 0, rdev: md.rdev() }),
            deleted,
            mode: md.mode(),
            ghost_id,
            in_proc: false,
        })),
        ..Default::default()
    }
}

/// Checks what an O_PATH open at restore gave: the same kind of file (and device number
/// for devices).
pub fn check_opened(f: &FileObj, fd: &OwnedFd) -> std::result::Result<(), String> {
    let md = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| format!("stat of {}: {e}", f.path))?;
    let ifmt = libc::S_IFMT;
    if md.mode() & ifmt != f.mode & ifmt {
        return Err(format!("{} is another kind of file now (mode {:o}, was {:o})", f.path, md.mode() & ifmt, f.mode & ifmt));
    }
    let dev = md.mode() & ifmt == libc::S_IFCHR || md.mode() & ifmt == libc::S_IFBLK;
    if dev && f.identity.as_ref().is_some_and(|i| i.rdev != md.rdev()) {
        return Err(format!("{} is another device now", f.path));
    }
    Ok(())
}
