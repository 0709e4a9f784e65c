//! fanotify groups: init flags, event-fd flags and marks, from the fdinfo lines
//! `fanotify flags:HEX event-flags:HEX` and one per mark:
//! `fanotify ino:HEX sdev:HEX mflags:HEX mask:HEX ignored_mask:HEX fhandle-bytes:.. fhandle-type:.. f_handle:HEX`
//! (an inode), `fanotify mnt_id:HEX mflags:.. mask:.. ignored_mask:..` (a mount),
//! `fanotify sdev:HEX mflags:.. mask:.. ignored_mask:..` (a filesystem).
//!
//! Dump: an inode mark's path is found through its file handle, as for inotify
//! (open_by_handle_at on a mount of its device, checked to lead to the inode); a mount
//! mark's through /proc/self/mountinfo (the process shares stasis's mount namespace);
//! a filesystem mark's as a mount point of its device. A mark whose inode has no path
//! (deleted) is refused naming it.
//!
//! Restore: fanotify_init(flags, event_f_flags) in the restorer, then fanotify_mark for
//! each mark: FAN_MARK_ADD of its mask (FAN_MARK_EVICTABLE kept), and of its ignored
//! mask with FAN_MARK_IGNORED_MASK (or FAN_MARK_IGNORE) and FAN_MARK_IGNORED_SURV_MODIFY
//! as it was; an inode path must still lead to the same inode.
//!
//! Not kept: events queued and not read yet (reading them would take them from the
//! process), and permission events a process waits on an answer for.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use stasis_image::model::{FanotifyMark, FanotifyObj, Kind, Object};
use stasis_sys::sys;

use super::inotify::{bytes_of_hex, kv, mounts_of, path_of, unescape};
use super::{hex, FdCtx};
use crate::error::Result;

pub const MARK_INODE: u32 = 0;
pub const MARK_MOUNT: u32 = 1;
pub const MARK_FILESYSTEM: u32 = 2;

const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_DONT_FOLLOW: u32 = 0x4;
const FAN_MARK_MOUNT: u32 = 0x10;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;
const FAN_MARK_FILESYSTEM: u32 = 0x100;
const FAN_MARK_EVICTABLE: u32 = 0x200;
const FAN_MARK_IGNORE: u32 = 0x400;
/// The mark flags fdinfo shows.
pub const MFLAGS: u32 = FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE | FAN_MARK_IGNORE;
const FAN_CLOEXEC: u32 = 0x1;
const FAN_NONBLOCK: u32 = 0x2;
/// fanotify_init flags of this kernel's uapi (class bits, FAN_UNLIMITED_*,
/// FAN_ENABLE_AUDIT, FAN_REPORT_* up to FAN_REPORT_MNT 0x4000).
pub const INIT_FLAGS: u32 = 0x7fff;

/// The mount point of mount `id` in our mountinfo.
fn mount_point(id: u64) -> Option<String> {
    let want = id.to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[0] == want).then(|| unescape(f[4]))
        })
}

pub fn dump(c: &FdCtx) -> Result<Object> {
    let head = c.fdinfo.lines().find(|l| l.starts_with("fanotify flags:")).ok_or_else(|| c.unsupported("without a readable 'fanotify flags:' line"))?;
    let init_flags = kv(head, "flags").and_then(hex).ok_or_else(|| c.unsupported("with unreadable flags"))? as u32;
    let event_flags = kv(head, "event-flags").and_then(hex).ok_or_else(|| c.unsupported("with unreadable event-flags"))? as u32;
    let mut marks = Vec::new();
    for l in c.fdinfo.lines().filter(|l| l.starts_with("fanotify ") && !l.starts_with("fanotify flags:")) {
        let bad = || c.unsupported(format_args!("with an fdinfo line stasis cannot read: {l:?}"));
        let mflags = kv(l, "mflags").and_then(hex).ok_or_else(bad)? as u32;
        let mask = kv(l, "mask").and_then(hex).ok_or_else(bad)?;
        let ignored_mask = kv(l, "ignored_mask").and_then(hex).ok_or_else(bad)?;
        let mark = |kind, path, dev, ino| FanotifyMark { kind, path, dev, ino, mflags, mask, ignored_mask };
        if let Some(ino) = kv(l, "ino").and_then(hex) {
            let sdev = kv(l, "sdev").and_then(hex).ok_or_else(bad)?;
            let (Some(htype), Some(handle)) = (kv(l, "fhandle-type").and_then(hex), kv(l, "f_handle").and_then(bytes_of_hex)) else {
                return Err(c.unsupported(format_args!("marking inode {ino} on a filesystem without file handles")));
            };
            let (path, dev) = path_of(sdev, ino, htype as i32, &handle)
                .map_err(|why| c.unsupported(format_args!("marking inode {ino} whose path cannot be found: {why}")))?;
            marks.push(mark(MARK_INODE, path, dev, ino));
        } else if let Some(id) = kv(l, "mnt_id").and_then(hex) {
            let path = mount_point(id).ok_or_else(|| c.unsupported(format_args!("marking mount {id}, which is not in stasis's mount namespace")))?;
            marks.push(mark(MARK_MOUNT, path, 0, 0));
        } else if let Some(sdev) = kv(l, "sdev").and_then(hex) {
            let (major, minor) = ((sdev >> 20) as u32, (sdev & 0xfffff) as u32);
            let path = mounts_of(major, minor)
                .into_iter()
                .next()
                .ok_or_else(|| c.unsupported(format_args!("marking filesystem {major}:{minor}, which is not mounted where stasis can see it")))?;
            marks.push(mark(MARK_FILESYSTEM, path, libc::makedev(major, minor), 0));
        } else {
            return Err(bad());
        }
    }
    Ok(Object { kind: Some(Kind::Fanotify(FanotifyObj { init_flags, event_flags, flags: c.flags, marks })), ..Default::default() })
}

pub fn open(f: &FanotifyObj) -> std::result::Result<OwnedFd, String> {
    let init = (f.init_flags & !(FAN_CLOEXEC | FAN_NONBLOCK)) | FAN_CLOEXEC | FAN_NONBLOCK * (super::nonblock(f.flags) != 0) as u32;
    let fd = sys::fanotify_init(init, f.event_flags).map_err(|e| format!("fanotify_init({init:#x}, {:#x}): {e}", f.event_flags))?;
    for m in &f.marks {
        let md = std::fs::symlink_metadata(&m.path).map_err(|e| format!("marked path {}: {e}", m.path))?;
        let (what, ty) = match m.kind {
            MARK_INODE => ("inode", 0),
            MARK_MOUNT => ("mount", FAN_MARK_MOUNT),
            _ => ("filesystem", FAN_MARK_FILESYSTEM),
        };
        if (m.kind == MARK_INODE && (md.dev() != m.dev || md.ino() != m.ino)) || (m.kind == MARK_FILESYSTEM && md.dev() != m.dev) {
            return Err(format!("marked {what} {} is another {} now", m.path, if m.kind == MARK_INODE { "file" } else { "filesystem" }));
        }
        let path = CString::new(m.path.clone()).map_err(|e| e.to_string())?;
        let base = FAN_MARK_ADD | FAN_MARK_DONT_FOLLOW | ty | (m.mflags & FAN_MARK_EVICTABLE);
        let add = |flags: u32, mask: u64| {
            sys::fanotify_mark(fd.as_fd(), flags, mask, &path).map_err(|e| format!("fanotify_mark({what} {}, {flags:#x}, {mask:#x}): {e}", m.path))
        };
        if m.mask != 0 {
            add(base, m.mask)?;
        }
        if m.ignored_mask != 0 {
            let ign = if m.mflags & FAN_MARK_IGNORE != 0 { FAN_MARK_IGNORE } else { FAN_MARK_IGNORED_MASK };
            add(base | ign | (m.mflags & FAN_MARK_IGNORED_SURV_MODIFY), m.ignored_mask)?;
        }
    }
    let _ = fd.as_raw_fd();
    Ok(fd)
}

/// Restore-side check of the image's record.
pub fn check(f: &FanotifyObj) -> std::result::Result<(), String> {
    const MAX_MARKS: usize = 1 << 16;
    if f.marks.len() > MAX_MARKS {
        return Err(format!("{} marks (at most {MAX_MARKS})", f.marks.len()));
    }
    if f.init_flags & !INIT_FLAGS != 0 {
        return Err(format!("fanotify_init flags {:#x}", f.init_flags));
    }
    for m in &f.marks {
        if m.kind > MARK_FILESYSTEM || m.mflags & !MFLAGS != 0 || m.mask > u32::MAX as u64 || m.ignored_mask > u32::MAX as u64 {
            return Err(format!("mark of {:?}: kind {}, flags {:#x}, masks {:#x}/{:#x}", m.path.chars().take(64).collect::<String>(), m.kind, m.mflags, m.mask, m.ignored_mask));
        }
    }
    Ok(())
}
