//! Namespace fds (open("/proc/PID/ns/TYPE"), PIDFD_GET_*_NAMESPACE): which namespace,
//! by whom it is held at restore.
//!
//! Dump: the link reads `TYPE:[INODE]`. A namespace of stasis itself (the host's, when
//! stasis runs there) is recorded as such (`member` 0); one a process of the tree is in
//! (its own, or its `pid_for_children` / `time_for_children`) is recorded by that
//! process. Anything else (a namespace no process of the tree is in, a user namespace
//! not stasis's) is refused naming the fd and the namespace: restore only ever creates
//! the tree's namespaces, never joins one of the host's by an image's say-so.
//!
//! Restore: stasis's own: the restorer opens its own `/proc/self/ns/TYPE` (carried like
//! any fd). The tree's: from inside the holder once every process exists (the
//! `LateFds` build step, while it still has the restorer's credentials):
//! pidfd_open(member) + ioctl(PIDFD_GET_<TYPE>_NAMESPACE) gives the namespace the member
//! was restored in, dup3 to the fd number.
//!
//! Not kept: a description shared between processes becomes one per process.

use std::ffi::CString;
use std::os::fd::OwnedFd;

use stasis_image::model::{Kind, NsFdObj, Object};
use stasis_sys::sys;

use super::FdCtx;
use crate::error::Result;

/// PIDFS_IOCTL_MAGIC 0xFF: _IO(0xFF, nr).
const fn pidfd_get(nr: u64) -> u64 {
    (0xFF << 8) | nr
}

/// (type as the link names it, its /proc/PID/ns entry for children, PIDFD_GET_*
/// ioctl of its own, of its for-children one).
const TYPES: &[(&str, Option<&str>, u64, u64)] = &[
    ("cgroup", None, pidfd_get(1), 0),
    ("ipc", None, pidfd_get(2), 0),
    ("mnt", None, pidfd_get(3), 0),
    ("net", None, pidfd_get(4), 0),
    ("pid", Some("pid_for_children"), pidfd_get(5), pidfd_get(6)),
    ("time", Some("time_for_children"), pidfd_get(7), pidfd_get(8)),
    ("uts", None, pidfd_get(10), 0),
];

/// `TYPE:[INODE]` of a namespace fd's link (user namespaces included, to refuse them).
pub fn parse_link(link: &str) -> Option<(&str, u64)> {
    let (ty, rest) = link.split_once(':')?;
    let ino = rest.strip_prefix('[')?.strip_suffix(']')?.parse().ok()?;
    (TYPES.iter().any(|t| t.0 == ty) || ty == "user").then_some((ty, ino))
}

pub fn dump(c: &FdCtx) -> Result<Object> {
    let Some((ty, ino)) = parse_link(c.link) else {
        return Err(c.unsupported(format_args!("with a link stasis cannot read ({})", c.link)));
    };
    let ns = |member: i32, for_children: bool| Object {
        kind: Some(Kind::NsFd(NsFdObj { ns_type: ty.into(), ino, member, for_children })),
        ..Default::default()
    };
    if crate::ns::self_ns(ty) == Some(ino) {
        return Ok(ns(0, false));
    }
    let children = TYPES.iter().find(|t| t.0 == ty).and_then(|t| t.1);
    for &p in c.tree {
        if crate::ns::ns_inode(p, ty) == Some(ino) {
            return Ok(ns(p, false));
        }
        if children.is_some_and(|ch| crate::ns::ns_inode(p, ch) == Some(ino)) {
            return Ok(ns(p, true));
        }
    }
    Err(c.unsupported(format_args!(
        "of {ty}:[{ino}], which neither stasis nor any process of the dumped tree is in (not supported: restore never joins a namespace of the host)"
    )))
}

/// Made from inside the holder once every process exists (not carried).
pub fn is_late(n: &NsFdObj) -> bool {
    n.member != 0
}

/// The PIDFD_GET_*_NAMESPACE ioctl that gives the namespace `n` names of its member.
pub fn ioctl_of(n: &NsFdObj) -> Option<u64> {
    let t = TYPES.iter().find(|t| t.0 == n.ns_type)?;
    Some(if n.for_children { t.3 } else { t.2 })
}

/// stasis's own namespace of the type (member 0), opened by the restorer.
pub fn open(n: &NsFdObj) -> std::result::Result<OwnedFd, String> {
    if n.member != 0 {
        return Err(format!("the {} namespace of pid {} is taken inside the holder, not by the restorer", n.ns_type, n.member));
    }
    if !TYPES.iter().any(|t| t.0 == n.ns_type) {
        return Err(format!("unknown namespace type {:?}", n.ns_type));
    }
    let path = format!("/proc/self/ns/{}", n.ns_type);
    let c = CString::new(path.clone()).map_err(|e| e.to_string())?;
    sys::open(&c, libc::O_RDONLY | libc::O_CLOEXEC, 0).map_err(|e| format!("opening {path}: {e}"))
}

/// Restore-side check: a known type; a member that is a live process of the image;
/// for_children only for pid and time namespaces.
pub fn check(m: &stasis_image::Manifest, n: &NsFdObj) -> std::result::Result<(), String> {
    let Some(t) = TYPES.iter().find(|t| t.0 == n.ns_type) else {
        return Err(format!("namespace type {:?} is not one stasis restores fds of", n.ns_type.chars().take(16).collect::<String>()));
    };
    if n.for_children && (t.1.is_none() || n.member == 0) {
        return Err(format!("a for-children {} namespace", n.ns_type));
    }
    if n.member != 0 && !m.processes.iter().any(|p| p.pid == n.member && !p.zombie) {
        return Err(format!("its member, pid {}, is not a live process of the image", n.member));
    }
    Ok(())
}
