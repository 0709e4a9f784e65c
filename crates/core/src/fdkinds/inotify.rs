//! inotify: the instance's flags and its watches, one per fdinfo line
//! `inotify wd:HEX ino:HEX sdev:HEX mask:HEX ignored_mask:0 fhandle-bytes:.. fhandle-type:.. f_handle:HEX`.
//!
//! Dump: the watched inode's path is found through its file handle
//! (open_by_handle_at on a mount of its device, then /proc/self/fd) and checked against
//! the inode number and device; a watch whose inode has no path (deleted, or outside
//! every mount we can see) is refused.
//!
//! Restore: inotify_init1, then inotify_add_watch(path, mask | IN_DONT_FOLLOW) in the
//! restorer, in watch-descriptor order. The kernel hands out descriptors cyclically
//! upwards, so a descriptor above the next free one is reached by adding and removing
//! stand-in watches on the same path; the IN_IGNORED events those removals queue are
//! drained before the process gets the fd. Restore refuses when a path now leads to
//! another inode.
//!
//! Not kept: events queued and not read yet at dump (reading them would take them from
//! the process). A watch on a path that was replaced by another file is refused. A
//! watch on a removed file or directory: the kernel drops it with the last link
//! (IN_DELETE_SELF, IN_IGNORED) unless something keeps the inode (an open fd, a cwd);
//! then it stays and is refused by name ("... was removed"): no path can reach the
//! inode to watch it again (the fanotify marks the same).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

use stasis_image::model::{InotifyObj, InotifyWatch, Kind, Object};
use stasis_sys::sys;

use super::{hex, FdCtx};
use crate::error::Result;

/// Highest watch descriptor restore is willing to walk up to.
const MAX_WD: i32 = 1 << 20;

/// The value of `key:` in one `inotify ...` line.
pub(super) fn kv<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|t| t.strip_prefix(key)?.strip_prefix(':'))
}

/// Undoes the octal escapes of /proc/PID/mountinfo ("\040" for a space).
pub(super) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points of the device (major, minor), from our mountinfo (the process shares our
/// mount namespace: dump checks that first).
pub(super) fn mounts_of(major: u32, minor: u32) -> Vec<String> {
    let want = format!("{major}:{minor}");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 4 && f[2] == want).then(|| unescape(f[4]))
        })
        .collect()
}

pub(super) fn bytes_of_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

/// Path of the inode behind a file handle, checked to lead to (dev, ino).
pub(super) fn path_of(sdev: u64, ino: u64, htype: i32, handle: &[u8]) -> std::result::Result<(String, u64), String> {
    // the kernel's internal dev_t: 12 bits of major above 20 bits of minor
    let (major, minor) = ((sdev >> 20) as u32, (sdev & 0xfffff) as u32);
    let mounts = mounts_of(major, minor);
    if mounts.is_empty() {
        return Err(format!("device {major}:{minor} is not mounted where stasis can see it"));
    }
    let mut last = String::new();
    for mp in mounts {
        let Ok(c) = CString::new(mp.clone()) else { continue };
        // open_by_handle_at does not take an O_PATH fd; directories only (opening a
        // bind-mounted device could do something).
        let mfd = match sys::open(&c, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0) {
            Ok(f) => f,
            Err(e) => {
                last = format!("opening mount point {mp}: {e}");
                continue;
            }
        };
        let f = match sys::open_by_handle_at(mfd.as_fd(), htype, handle, libc::O_PATH | libc::O_CLOEXEC) {
            Ok(f) => f,
            Err(e) => {
                last = format!("open_by_handle_at on {mp}: {e}");
                continue;
            }
        };
        let Ok(p) = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())) else { continue };
        let p = p.to_string_lossy().into_owned();
        if let Some(gone) = p.strip_suffix(" (deleted)") {
            // removed while something (an open fd) keeps the inode, and with it the mark
            return Err(format!("{gone} was removed (the inode lives on, unreachable by any path)"));
        }
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.ino() == ino && libc::major(md.dev()) == major && libc::minor(md.dev()) == minor => return Ok((p, md.dev())),
            _ => last = format!("{p} (through {mp}) does not lead to the watched inode"),
        }
    }
    Err(last)
}

pub fn dump(c: &FdCtx) -> Result<Object> {
    let mut watches = Vec::new();
    for l in c.fdinfo.lines().filter(|l| l.starts_with("inotify ")) {
        let bad = || c.unsupported(format_args!("with an fdinfo line stasis cannot read: {l:?}"));
        let wd = kv(l, "wd").and_then(hex).ok_or_else(bad)? as i32;
        let ino = kv(l, "ino").and_then(hex).ok_or_else(bad)?;
        let sdev = kv(l, "sdev").and_then(hex).ok_or_else(bad)?;
        let mask = kv(l, "mask").and_then(hex).ok_or_else(bad)? as u32;
        let (Some(htype), Some(handle)) = (kv(l, "fhandle-type").and_then(hex), kv(l, "f_handle").and_then(bytes_of_hex)) else {
            return Err(c.unsupported(format_args!("watching inode {ino} on a filesystem without file handles (watch {wd})")));
        };
        let (path, dev) = path_of(sdev, ino, htype as i32, &handle)
            .map_err(|why| c.unsupported(format_args!("watching inode {ino} (watch {wd}) whose path cannot be found: {why}")))?;
        watches.push(InotifyWatch { wd, mask, path, dev, ino });
    }
    Ok(Object { kind: Some(Kind::Inotify(InotifyObj { flags: c.flags, watches })), ..Default::default() })
}

pub fn open(i: &InotifyObj) -> std::result::Result<OwnedFd, String> {
    let fd = sys::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK).map_err(|e| format!("inotify_init1: {e}"))?;
    let mut ws: Vec<&InotifyWatch> = i.watches.iter().collect();
    ws.sort_by_key(|w| w.wd);
    let mut stand_ins = false;
    for w in ws {
        match std::fs::symlink_metadata(&w.path) {
            Ok(md) if md.dev() == w.dev && md.ino() == w.ino => {}
            Ok(_) => return Err(format!("watched path {} is another file now", w.path)),
            Err(e) => return Err(format!("watched path {}: {e}", w.path)),
        }
        let path = CString::new(w.path.clone()).map_err(|e| e.to_string())?;
        loop {
            let wd = sys::inotify_add_watch(fd.as_fd(), &path, w.mask | libc::IN_DONT_FOLLOW)
                .map_err(|e| format!("inotify_add_watch({}, {:#x}): {e}", w.path, w.mask))?;
            if wd == w.wd {
                break;
            }
            if wd > w.wd || wd >= MAX_WD {
                return Err(format!("watch descriptor {} of {} cannot be had again (got {wd})", w.wd, w.path));
            }
            sys::inotify_rm_watch(fd.as_fd(), wd).map_err(|e| format!("inotify_rm_watch({wd}): {e}"))?;
            stand_ins = true;
        }
    }
    if stand_ins {
        let mut buf = vec![0u8; 64 << 10];
        while matches!(sys::read_fd(fd.as_fd(), &mut buf), Ok(n) if n > 0) {}
    }
    if super::nonblock(i.flags) == 0 {
        sys::fcntl(fd.as_raw_fd(), libc::F_SETFL, 0).map_err(|e| format!("clearing O_NONBLOCK: {e}"))?;
    }
    Ok(fd)
}
