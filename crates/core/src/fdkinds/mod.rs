//! Anonymous-inode and other special fd kinds: eventfd, timerfd, signalfd, epoll,
//! inotify, fanotify, pidfd, namespace fds (and `opath` for O_PATH fds, which files.rs
//! calls itself). One module per
//! kind, each with its dump side (`dump`: the fd's fdinfo, and a dup of it taken with
//! pidfd_getfd where reading state needs one, → an `Object`) and its restore side
//! (`open`: the `Object` → a new fd in the restorer, which the new process takes over at
//! the original number). `files.rs` dispatches here with `kind_of` / `dump` / `open`.
//!
//! epoll items are the exception: the kernel keys them by (file, fd number), so they are
//! added from inside the restored process once its fds have their final numbers
//! (`epoll::adds`, injected by the `EpollItems` step of `restore/build`). pidfds and
//! namespace fds of the tree are too (`is_late`; the `LateFds` step): the process or
//! namespace they refer to exists only once the tree does.
//!
//! Adding a kind: a module with `dump` and `open`, a member of `Object`'s `kind` oneof
//! in proto/stasis.proto (new tag; `stasis_image::model` accessors in its
//! `object_kinds!`), a line in `kind_of`, `dump`, `open` and `describe` (the compiler
//! points at every exhaustive `match` on the object kind).

use std::os::fd::{BorrowedFd, OwnedFd};

use stasis_image::model::{Kind as ObjKind, Object};
use stasis_sys::sys;

use crate::error::{Ctx, Error, Result};

pub mod epoll;
pub mod eventfd;
pub mod fanotify;
pub mod inotify;
pub mod mqueue;
pub mod signalfd;
pub mod inet;
pub mod netlink;
pub mod nsfd;
pub mod opath;
pub mod packet;
pub mod pidfd;
pub mod sockopt;
pub mod timerfd;
pub mod unix;
pub mod unixopt;

/// shutdown(2) by sk_shutdown bits (1: receive side, 2: send side; 0: nothing).
pub(crate) fn apply_shutdown(fd: impl std::os::fd::AsFd, bits: u32) -> std::io::Result<()> {
    let how = match bits & 3 {
        0 => return Ok(()),
        1 => libc::SHUT_RD,
        2 => libc::SHUT_WR,
        _ => libc::SHUT_RDWR,
    };
    sys::shutdown(fd.as_fd(), how)
}

/// The kinds handled here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Eventfd,
    Timerfd,
    Signalfd,
    Epoll,
    Inotify,
    Pidfd,
    NsFd,
    Fanotify,
}

impl Kind {
    /// "an eventfd", for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Eventfd => "an eventfd",
            Kind::Timerfd => "a timerfd",
            Kind::Signalfd => "a signalfd",
            Kind::Epoll => "an epoll instance",
            Kind::Inotify => "an inotify instance",
            Kind::Pidfd => "a pidfd",
            Kind::NsFd => "a namespace fd",
            Kind::Fanotify => "a fanotify group",
        }
    }
}

/// The kind of an fd from its /proc/PID/fd link, if it is one handled here.
pub fn kind_of(link: &str) -> Option<Kind> {
    Some(match link {
        "anon_inode:[eventfd]" => Kind::Eventfd,
        "anon_inode:[timerfd]" => Kind::Timerfd,
        "anon_inode:[signalfd]" => Kind::Signalfd,
        "anon_inode:[eventpoll]" => Kind::Epoll,
        "anon_inode:inotify" => Kind::Inotify,
        "anon_inode:[pidfd]" => Kind::Pidfd,
        "anon_inode:[fanotify]" => Kind::Fanotify,
        l if nsfd::parse_link(l).is_some() => Kind::NsFd,
        _ => return None,
    })
}

/// One fd of the frozen process, as a kind's dump side sees it.
pub struct FdCtx<'a> {
    pub pid: i32,
    pub fd: i32,
    pub kind: Kind,
    /// pidfd of the process, for `dup`.
    pub pidfd: BorrowedFd<'a>,
    /// /proc/PID/fdinfo/FD.
    pub fdinfo: &'a str,
    /// File status flags from fdinfo, O_CLOEXEC removed (FD_CLOEXEC is the fd's, saved in
    /// `Fd`).
    pub flags: u32,
    /// The /proc/PID/fd link.
    pub link: &'a str,
    /// Every process of the dumped tree.
    pub tree: &'a [i32],
}

impl FdCtx<'_> {
    /// A refusal naming the pid, the fd and its kind.
    pub fn unsupported(&self, why: impl std::fmt::Display) -> Error {
        Error::Unsupported { pid: self.pid, what: format!("fd {} is {} {why}", self.fd, self.kind.name()) }
    }

    /// A copy of the fd in our fd table (same open file description).
    pub fn dup(&self) -> Result<OwnedFd> {
        sys::pidfd_getfd(self.pidfd, self.fd).ctx(self.pid, || format!("pidfd_getfd of fd {}", self.fd))
    }

    /// Reads the fdinfo again (state that changed since `fdinfo` was read).
    pub fn reread(&self) -> Result<String> {
        crate::procfs::read(self.pid, &format!("fdinfo/{}", self.fd)).ctx(self.pid, || format!("reading fdinfo of fd {}", self.fd))
    }

    /// The value of the `key:` line of the fdinfo, parsed with `parse`; an error naming
    /// the fd if the line is missing or does not parse.
    pub fn field<T>(&self, info: &str, key: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T> {
        field(info, key).and_then(parse).ok_or_else(|| Error::Sys {
            pid: self.pid,
            what: format!("fdinfo of fd {} ({})", self.fd, self.kind.name()),
            err: std::io::Error::other(format!("no readable '{key}:' line")),
        })
    }
}

/// The trimmed value of the first `key:` line of an fdinfo text.
pub fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

pub fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim(), 16).ok()
}

/// O_LARGEFILE as the kernel shows it in fdinfo on x86_64 (libc names it 0 there: every
/// open of a 64-bit process sets it, so restore gets it back by itself).
pub const KERNEL_O_LARGEFILE: u32 = 0o100000;

/// File status flags a kind's restore reproduces: the access mode and O_NONBLOCK
/// (O_LARGEFILE is implied on x86_64). O_ASYNC never reaches a kind (crate::fown keeps
/// it with the owner); anything else (O_DIRECT...) is refused.
const KEPT_FLAGS: u32 = (libc::O_ACCMODE | libc::O_NONBLOCK) as u32 | KERNEL_O_LARGEFILE;

/// The refusal text for file status `flags` that hold a flag restore does not
/// reproduce (anything but the access mode and O_NONBLOCK), None when there is none:
/// "with file flags O_RDWR|O_DIRECT (only O_NONBLOCK is kept)".
pub fn unkept_flags(flags: u32) -> Option<String> {
    (flags & !KEPT_FLAGS != 0).then(|| format!("with file flags {} (only O_NONBLOCK is kept)", open_flags(flags)))
}

/// O_NONBLOCK if the saved flags have it (EFD_NONBLOCK, TFD_NONBLOCK, SFD_NONBLOCK and
/// IN_NONBLOCK all equal O_NONBLOCK).
pub fn nonblock(flags: u32) -> i32 {
    flags as i32 & libc::O_NONBLOCK
}

/// Restore side: sets O_NONBLOCK on `fd` if the saved file status `flags` have it.
pub fn apply_nonblock(fd: &OwnedFd, flags: u32) -> std::result::Result<(), String> {
    if nonblock(flags) != 0 {
        sys::fcntl(std::os::fd::AsRawFd::as_raw_fd(fd), libc::F_SETFL, libc::O_NONBLOCK as i64)
            .map_err(|e| format!("setting O_NONBLOCK: {e}"))?;
    }
    Ok(())
}

/// File status flags by name, as in C: the access mode (`O_RDONLY`, `O_WRONLY`,
/// `O_RDWR`), then each set flag (`O_APPEND`, `O_NONBLOCK`, `O_ASYNC`, `O_DIRECT`,
/// `O_CLOEXEC`...), joined by `|`; bits without a name as a hex remainder (`0x4000000`).
/// E.g. 0o24002 → `O_RDWR|O_NONBLOCK|O_ASYNC`.
pub fn open_flags(flags: u32) -> String {
    // Multi-bit flags first, so they are named whole.
    const NAMES: &[(i32, &str)] = &[
        (libc::O_TMPFILE, "O_TMPFILE"),
        (libc::O_SYNC, "O_SYNC"),
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_NOCTTY, "O_NOCTTY"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_ASYNC, "O_ASYNC"),
        (libc::O_DIRECT, "O_DIRECT"),
        (KERNEL_O_LARGEFILE as i32, "O_LARGEFILE"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_NOATIME, "O_NOATIME"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_PATH, "O_PATH"),
    ];
    let mut parts = vec![match flags & libc::O_ACCMODE as u32 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    }
    .to_string()];
    let mut rest = flags & !(libc::O_ACCMODE as u32);
    for &(bits, name) in NAMES {
        let bits = bits as u32;
        if bits != 0 && rest & bits == bits {
            parts.push(name.into());
            rest &= !bits;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// Dump side: the object for an fd of kind `ctx.kind`.
pub fn dump(ctx: &FdCtx) -> Result<Object> {
    // PIDFD_THREAD is O_EXCL, which pidfd_open sets again
    let own = match ctx.kind {
        Kind::Pidfd => pidfd::PIDFD_THREAD,
        _ => 0,
    };
    if let Some(why) = unkept_flags(ctx.flags & !own) {
        return Err(ctx.unsupported(why));
    }
    match ctx.kind {
        Kind::Eventfd => eventfd::dump(ctx),
        Kind::Timerfd => timerfd::dump(ctx),
        Kind::Signalfd => signalfd::dump(ctx),
        Kind::Epoll => epoll::dump(ctx),
        Kind::Inotify => inotify::dump(ctx),
        Kind::Pidfd => pidfd::dump(ctx),
        Kind::NsFd => nsfd::dump(ctx),
        Kind::Fanotify => fanotify::dump(ctx),
    }
}

/// Is `o` an fd object the holder makes from inside itself once every process of the
/// tree exists (a pidfd or namespace fd of the tree), rather than one the restorer opens
/// and the new process carries?
pub fn is_late(o: &Object) -> bool {
    match &o.kind {
        Some(ObjKind::Pidfd(p)) => pidfd::is_late(p),
        Some(ObjKind::NsFd(n)) => nsfd::is_late(n),
        _ => false,
    }
}

/// Restore side: a new fd for `o` in the restorer if `o` is of a kind handled here
/// (None otherwise). The error says what failed; the caller adds the fd number.
pub fn open(o: &Object) -> Option<std::result::Result<OwnedFd, String>> {
    Some(match &o.kind {
        Some(ObjKind::Eventfd(e)) => eventfd::open(e),
        Some(ObjKind::Timerfd(t)) => timerfd::open(t),
        Some(ObjKind::Signalfd(s)) => signalfd::open(s),
        Some(ObjKind::Epoll(e)) => epoll::open(e),
        Some(ObjKind::Inotify(i)) => inotify::open(i),
        Some(ObjKind::Pidfd(p)) => pidfd::open(p),
        Some(ObjKind::NsFd(n)) => nsfd::open(n),
        Some(ObjKind::Fanotify(f)) => fanotify::open(f),
        Some(ObjKind::Mqueue(q)) => mqueue::open(q),
        Some(ObjKind::File(_) | ObjKind::PipeEnd(_) | ObjKind::Unix(_) | ObjKind::Inet(_) | ObjKind::Netlink(_) | ObjKind::Packet(_) | ObjKind::FifoFd(_) | ObjKind::TtyFd(_) | stasis_image::not_fd_kinds!())
        | None => return None,
    })
}

/// For `stasis inspect`: the kind of `o` and a one-line summary, if it is one of ours.
pub fn describe(o: &Object) -> Option<(&'static str, String)> {
    Some(match &o.kind {
        Some(ObjKind::Eventfd(e)) => ("eventfd", format!("count {}{}", e.count, if e.semaphore { ", semaphore" } else { "" })),
        Some(ObjKind::Timerfd(t)) => {
            ("timerfd", format!("clock {}, value {} ns, interval {} ns, {} unread ticks", t.clockid, t.value_ns, t.interval_ns, t.ticks))
        }
        Some(ObjKind::Signalfd(s)) => ("signalfd", format!("mask {:#x}", s.mask)),
        Some(ObjKind::Epoll(e)) => ("epoll", format!("{} items", e.items.len())),
        Some(ObjKind::Inotify(i)) => ("inotify", format!("{} watches", i.watches.len())),
        Some(ObjKind::Pidfd(p)) => (
            "pidfd",
            match p.pid {
                0 => "of a process that had exited".to_string(),
                n => format!("of {} {n}{}", if p.flags & pidfd::PIDFD_THREAD != 0 { "thread" } else { "pid" }, if nonblock(p.flags) != 0 { ", nonblocking" } else { "" }),
            },
        ),
        Some(ObjKind::Fanotify(f)) => ("fanotify", format!("{} marks", f.marks.len())),
        Some(ObjKind::Mqueue(q)) => (
            "mqueue",
            format!("/{}{}, {} of {} messages of {} bytes", q.name, if q.unlinked { " (unlinked)" } else { "" }, q.messages.len(), q.maxmsg, q.msgsize),
        ),
        Some(ObjKind::NsFd(n)) => (
            "namespace",
            match n.member {
                0 => format!("{}:[{}], stasis's own", n.ns_type, n.ino),
                m => format!("{}:[{}], of pid {m}{}", n.ns_type, n.ino, if n.for_children { " (for children)" } else { "" }),
            },
        ),
        Some(ObjKind::File(_) | ObjKind::PipeEnd(_) | ObjKind::Unix(_) | ObjKind::Inet(_) | ObjKind::Netlink(_) | ObjKind::Packet(_) | ObjKind::FifoFd(_) | ObjKind::TtyFd(_) | stasis_image::not_fd_kinds!())
        | None => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::open_flags;

    #[test]
    fn open_flags_by_name() {
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(open_flags(0o24002), "O_RDWR|O_NONBLOCK|O_ASYNC");
        let all = libc::O_WRONLY | libc::O_APPEND | libc::O_ASYNC | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_CLOEXEC;
        assert_eq!(open_flags(all as u32), "O_WRONLY|O_APPEND|O_NONBLOCK|O_ASYNC|O_DIRECT|O_CLOEXEC");
        assert_eq!(open_flags((libc::O_SYNC | libc::O_RDWR) as u32), "O_RDWR|O_SYNC");
        assert_eq!(open_flags(libc::O_DSYNC as u32), "O_RDONLY|O_DSYNC");
        assert_eq!(open_flags((libc::O_TMPFILE | libc::O_RDWR) as u32), "O_RDWR|O_TMPFILE");
        assert_eq!(open_flags(libc::O_DIRECTORY as u32 | 0x4000_0000), "O_RDONLY|O_DIRECTORY|0x40000000");
        assert_eq!(open_flags(3), "O_ACCMODE");
        assert_eq!(open_flags(0o100002), "O_RDWR|O_LARGEFILE");
    }
}
