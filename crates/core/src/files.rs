//! File descriptors and the files behind them. One function per fd kind on the dump side
//! (`dump_fd` dispatches), and `open_object` on the restore side.
//!
//! Kinds: path-named files (regular, directory, memory character devices such as
//! /dev/null), files deleted while open and memfds (content saved), pipes with both ends
//! in the process (buffered bytes saved with tee(2), which does not consume them); named
//! FIFOs (one object per inode with its bytes, one per open description, reopened by
//! path);
//! eventfd, timerfd, signalfd, epoll, inotify, fanotify, pidfds and namespace fds
//! through `fdkinds` (one module each); O_PATH fds (`fdkinds::opath`); file leases with
//! the other locks (`parse_locks`); terminals through `crate::tty`. Everything else
//! (io_uring, userfaultfd, perf, BPF...) is refused with the fd number and its kind.

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use stasis_image::model::*;
use stasis_image::model::PageRun;
use stasis_sys::sys;

use crate::error::{Ctx, Error, Result};
use crate::external;
use crate::fdkinds;
use crate::objects::ObjectTable;
use crate::procfs;

const O_CLOEXEC: u32 = libc::O_CLOEXEC as u32;

fn identity(md: &std::fs::Metadata, hash: u64) -> FileIdentity {
    FileIdentity {
        size: md.size(),
        mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        hash,
        rdev: md.rdev(),
    }
}

pub fn hash_file(path: &str) -> std::io::Result<u64> {
    let mut f = File::open(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.digest())
}

/// The character devices a device node removed while open may be recreated as (mknod at
/// restore): the memory devices null, zero, full, random, urandom (major 1). Anything
/// else (/dev/mem, /dev/kmem, /dev/port, disks) could give the restored process more
/// than the image's own files.
pub fn ghost_device_ok(rdev: u64) -> bool {
    libc::major(rdev) == 1 && matches!(libc::minor(rdev), 3 | 5 | 7 | 8 | 9)
}

pub(crate) fn ns_of(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// The mapped-file object of ghost `gid` (a nameless file that VMAs map or that is a
/// process's executable, `path` as /proc shows it): one per ghost, writable if any
/// mapping of it is shared and writable.
pub fn mapped_ghost(objs: &mut ObjectTable, gid: u32, path: &str, writable: bool) -> u32 {
    let id = objs.intern(format!("mapped-ghost:{gid}"), |_| Object {
        kind: Some(Kind::MappedFile(MappedFileObj { path: path.to_string(), identity: None, writable, ghost_id: gid, saved: None })),
        ..Default::default()
    });
    if let Some(mf) = objs.get_mut(id).and_then(|o| o.mapped_file_mut()) {
        mf.writable |= writable;
    }
    id
}

/// Registers the nameless inode behind `via` (a /proc/PID/fd/N or map_files link): a
/// deleted regular file or a memfd (its allocated extents are copied into the pages
/// files by `mem::add_ghost_files`: holes stay holes, any size), a directory removed
/// while open, or a memory device node removed while open; with owner, mode and times.
/// One object per inode. A file removed from one directory that still has other links
/// is refused (its other names are not known: restoring a copy would split it).
pub fn ghost(pid: i32, objs: &mut ObjectTable, via: &str, link: &str, what: &str) -> Result<u32> {
    let md = std::fs::metadata(via).ctx(pid, || format!("stat of {what} ({link})"))?;
    let ft = md.file_type();
    let path = link.trim_end_matches(" (deleted)").to_string();
    let is_memfd = link.starts_with("/memfd:");
    if !is_memfd && md.nlink() > 0 && !ft.is_dir() {
        return Err(Error::Unsupported {
            pid,
            what: format!("{what} is {path}, removed from that directory but still linked elsewhere ({} links): its other names are unknown", md.nlink()),
        });
    }
    if ft.is_char_device() && !ghost_device_ok(md.rdev()) {
        return Err(Error::Unsupported {
            pid,
            what: format!("{what} is removed device node {path} ({}:{}); only memory devices (null, zero, full, random, urandom) are recreated", libc::major(md.rdev()), libc::minor(md.rdev())),
        });
    }
    if !(ft.is_file() || ft.is_dir() || ft.is_char_device()) {
        return Err(Error::Unsupported { pid, what: format!("{what} is a deleted file of an unsupported type ({link})") });
    }
    let key = format!("ghost:{}:{}", md.dev(), md.ino());
    let memfd_name = link.strip_prefix("/memfd:").map(|n| n.trim_end_matches(" (deleted)").to_string()).unwrap_or_default();
    let ext = external::shm_name(md.ino());
    let base = GhostObj {
        path,
        memfd_name,
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        atime_ns: ns_of(md.atime(), md.atime_nsec()),
        mtime_ns: ns_of(md.mtime(), md.mtime_nsec()),
        rdev: if ft.is_char_device() { md.rdev() } else { 0 },
        ..Default::default()
    };
    if ft.is_file() && objs.external.contains(&ext) {
        // Marked external: no content; restore takes it from an inherited fd.
        return Ok(objs.intern(key, |_| Object {
            kind: Some(Kind::Ghost(GhostObj { external: ext, size: md.len(), ..base })),
            ..Default::default()
        }));
    }
    if let Some(id) = objs.find(&key) {
        return Ok(id);
    }
    let mut g = base;
    if ft.is_file() {
        let f = open_noatime(via).ctx(pid, || format!("opening {what} ({link}) through {via}"))?;
        if is_memfd {
            g.seals = sys::fcntl(f.as_raw_fd(), libc::F_GET_SEALS, 0).unwrap_or(0) as u32;
        }
        // a memfd (MFD_HUGETLB) or deleted file on hugetlbfs: its huge page size
        g.huge_page_size = sys::hugetlb_page_size(f.as_fd()).ctx(pid, || format!("statfs of {what} ({link})"))?.unwrap_or(0);
        g.size = md.len();
        g.paged = true;
        let id = objs.intern(key, |_| Object { kind: Some(Kind::Ghost(g)), ..Default::default() });
        objs.ghost_files.push((id, f, md.len()));
        return Ok(id);
    }
    Ok(objs.intern(key, |_| Object { kind: Some(Kind::Ghost(g)), ..Default::default() }))
}

/// A read-only description of our own of the file at `via`, with O_NOATIME where the
/// kernel allows it (reading the content leaves its times alone).
pub(crate) fn open_noatime(via: &str) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME).open(via).or_else(|_| File::open(via))
}

/// Mapped files up to this size get a content hash (larger ones: size and mtime only).
const MAX_HASHED: u64 = 1 << 30;

/// Registers the file behind a mapping (or /proc/PID/exe), keyed by device and inode.
/// `hash`: record a content hash, so restore notices a change that kept size and mtime.
pub fn mapped_file(pid: i32, objs: &mut ObjectTable, via: &str, path: &str, writable: bool, hash: bool) -> Result<u32> {
    let md = std::fs::metadata(via).ctx(pid, || format!("stat {via} ({path})"))?;
    let key = format!("mapped:{}:{}", md.dev(), md.ino());
    let id = objs.intern(key, |_| Object {
        kind: Some(Kind::MappedFile(MappedFileObj { path: path.to_string(), identity: Some(identity(&md, 0)), writable, ghost_id: 0, saved: None })),
        ..Default::default()
    });
    let o = objs.get_mut(id).unwrap().mapped_file_mut().unwrap();
    o.writable |= writable;
    if hash && md.is_file() && md.len() <= MAX_HASHED && o.identity.as_ref().is_some_and(|i| i.hash == 0) {
        let h = hash_file(via).ctx(pid, || format!("hashing mapped executable {path}"))?;
        o.identity.as_mut().unwrap().hash = h;
    }
    Ok(id)
}

fn anon_kind(link: &str) -> Option<&str> {
    let k = link.strip_prefix("anon_inode:")?;
    Some(match k.trim_matches(|c| c == '[' || c == ']') {
        "eventpoll" => "an epoll instance",
        "eventfd" => "an eventfd",
        "signalfd" => "a signalfd",
        "timerfd" => "a timerfd",
        "inotify" => "an inotify instance",
        "fanotify" => "a fanotify instance",
        "io_uring" => "an io_uring instance",
        "pidfd" => "a pidfd",
        "userfaultfd" => "a userfaultfd",
        "perf_event" => "a perf event",
        "bpf-map" | "bpf-prog" | "bpf_link" => "a BPF object",
        _ => "an anonymous-inode file",
    })
}

/// The network namespace of socket `dup` (fd `fd` of `pid`): (0, None) for ours, else its
/// inode and an fd of it. A socket of a namespace no process of the tree is in (passed
/// over from elsewhere) is refused: restore only creates the tree's namespaces.
fn socket_netns(pid: i32, fd: i32, dup: &OwnedFd) -> Result<(u64, Option<OwnedFd>)> {
    let nsf = sys::sock_netns(dup.as_fd()).ctx(pid, || format!("finding the network namespace of socket fd {fd} (SIOCGSKNS)"))?;
    let ino = std::fs::metadata(format!("/proc/self/fd/{}", nsf.as_raw_fd())).map(|m| m.ino()).ctx(pid, || format!("network namespace of fd {fd}"))?;
    if Some(ino) == crate::ns::self_ns("net") {
        return Ok((0, None));
    }
    let theirs = crate::ns::ns_inode(pid, "net");
    if theirs != Some(ino) {
        return Err(Error::Unsupported {
            pid,
            what: format!("fd {fd} is {} of network namespace net:[{ino}], which is neither the process's nor stasis's", socket_kind(dup)),
        });
    }
    Ok((ino, Some(nsf)))
}

fn socket_kind(f: &OwnedFd) -> String {
    let dom = sys::getsockopt_int(f.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(-1);
    let ty = sys::getsockopt_int(f.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE).unwrap_or(-1);
    let proto = sys::getsockopt_int(f.as_fd(), libc::SOL_SOCKET, libc::SO_PROTOCOL).unwrap_or(-1);
    let t = match ty {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "datagram",
        libc::SOCK_SEQPACKET => "seqpacket",
        libc::SOCK_RAW => "raw",
        _ => "",
    };
    match dom {
        libc::AF_INET | libc::AF_INET6 => {
            let v = if dom == libc::AF_INET6 { " (IPv6)" } else { "" };
            match proto {
                libc::IPPROTO_TCP => format!("a TCP{v} socket"),
                libc::IPPROTO_UDP => format!("a UDP{v} socket"),
                _ => format!("an IP{v} {t} socket"),
            }
        }
        libc::AF_UNIX => format!("a unix {t} socket"),
        libc::AF_NETLINK => "a netlink socket".into(),
        libc::AF_PACKET => "a packet socket".into(),
        _ => format!("a socket (family {dom})"),
    }
}

/// A named FIFO seen in the tree, and one (pid, fd) through which to reach it.
struct FifoSeen {
    fifo_id: u32,
    dev: u64,
    ino: u64,
    path: String,
    via: (i32, i32),
}

struct PipeSeen {
    ino: u64,
    pipe_id: u32,
    /// (pid, fd) of an fd of each end in the dumped tree.
    read_fd: Option<(i32, i32)>,
    write_fd: Option<(i32, i32)>,
}

/// What the fd collection of a whole tree shares across its processes: open file
/// descriptions (to find ones shared by fork or dup, with kcmp), pipes (whose ends may
/// be in different processes), the host's unix sockets.
#[derive(Default)]
pub struct FdState {
    /// (dev, ino) -> [(pid, fd, object id)]
    descs: HashMap<(u64, u64), Vec<(i32, i32, u32)>>,
    pipes: Vec<PipeSeen>,
    fifos: Vec<FifoSeen>,
    /// The unix socket table of each network namespace (0 = ours), loaded on first need.
    unix_tables: HashMap<u64, fdkinds::unix::Table>,
    /// Every process of the tree.
    pub tree: Vec<i32>,
    /// `dump --skip-in-flight`: connections waiting to be accepted (TCP: any; unix: from
    /// outside the tree) are not saved; the listener is.
    pub skip_in_flight: bool,
    /// File descriptors in flight in unix socket queues (SCM_RIGHTS), received into our
    /// table by the peeks and not dumped yet.
    in_flight_new: Vec<OwnedFd>,
    /// Those already dumped: kept open until the dump ends (their numbers name them, and
    /// kcmp compares later fds of the tree with them).
    in_flight_held: Vec<OwnedFd>,
    /// Our fd number of each in-flight description → its object id.
    in_flight_ids: HashMap<i32, u32>,
    /// Unix socket objects with fds in flight (their placeholders get named at the end).
    carriers: Vec<u32>,
    /// Every fd of the tree: (pid, fd, object id).
    users: Vec<(i32, i32, u32)>,
    /// Shared-memory objects the tree maps shared (not marked external), to look for
    /// outside holders.
    pub shared: Vec<external::SharedMem>,
    /// Terminals (crate::tty), finished once the whole tree is known.
    pub ttys: crate::tty::TtyState,
    /// (pid, fd) that fdinfo shows close-on-exec but are not (`tty::slaves_not_cloexec`).
    pub not_cloexec: std::collections::HashSet<(i32, i32)>,
}

impl FdState {
    pub fn new(tree: Vec<i32>) -> FdState {
        FdState { tree, ..Default::default() }
    }
}

/// Parses the `lock:` lines of an fdinfo file:
/// `lock:\t1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF`.
fn parse_locks(pid: i32, fd: i32, fdinfo: &str) -> Result<Vec<(String, FileLock)>> {
    let mut out = Vec::new();
    for l in fdinfo.lines() {
        let Some(rest) = l.strip_prefix("lock:") else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // [id:, kind, ADVISORY, READ|WRITE, pid, dev:ino, start, end]
        let (kind, mode, rw, inode, start, end) = match f.as_slice() {
            [_, "->", ..] => continue, // a waiter, not a holder
            [_, kind, mode, rw, _pid, inode, start, end, ..] => (*kind, *mode, *rw, *inode, *start, *end),
            _ => continue,
        };
        if kind == "LEASE" {
            // `lock: 1: LEASE  ACTIVE    READ 27411 fe:00:10118435 0 EOF`: a lease being
            // broken (BREAKING, or a BREAKER waiting) is a conversation with another
            // process that restore cannot take up again
            if mode != "ACTIVE" {
                return Err(Error::Unsupported { pid, what: format!("fd {fd} holds a file lease that is {} ({rw})", mode.to_lowercase()) });
            }
            out.push((format!("lease:{inode}:{fd}"), FileLock { kind: "lease".into(), fd, write: rw == "WRITE", start: 0, len: 0 }));
            continue;
        }
        let kind = match kind {
            "FLOCK" => "flock",
            "POSIX" => "posix",
            "OFDLCK" => "ofd",
            other => {
                return Err(Error::Unsupported { pid, what: format!("fd {fd} holds a {other} lock ({mode} {rw})") })
            }
        };
        if mode != "ADVISORY" {
            return Err(Error::Unsupported { pid, what: format!("fd {fd} holds a {mode} {kind} lock") });
        }
        let start: u64 = start.parse().unwrap_or(0);
        let len = if end == "EOF" { 0 } else { end.parse::<u64>().unwrap_or(start).saturating_sub(start) + 1 };
        let key = format!("{kind}:{inode}:{start}:{len}");
        out.push((key, FileLock { kind: kind.into(), fd, write: rw == "WRITE", start, len }));
    }
    Ok(out)
}

/// Collects every fd of `pid` into fd entries and objects, and the file locks held.
/// Call `finish_fds` once every process of the tree was collected.
pub fn dump_fds(pid: i32, objs: &mut ObjectTable, st: &mut FdState) -> Result<(Vec<Fd>, Vec<FileLock>)> {
    let fds = procfs::fds(pid).ctx(pid, || "listing /proc/PID/fd".into())?;
    let r = dump_fd_list(pid, &fds, objs, st)?;
    dump_in_flight(pid, objs, st)?;
    Ok(r)
}

/// The descriptions in flight (SCM_RIGHTS) that the unix socket peeks received into our
/// fd table: dumped as fds of ours (kcmp finds the ones a process of the tree holds too),
/// round after round (a socket in flight may carry more), then named in their carriers.
fn dump_in_flight(pid: i32, objs: &mut ObjectTable, st: &mut FdState) -> Result<()> {
    const MAX_ROUNDS: usize = 8;
    let me = sys::getpid();
    for _ in 0..MAX_ROUNDS {
        let new = std::mem::take(&mut st.in_flight_new);
        if new.is_empty() {
            // once each: a named carrier holds object ids, no longer fd numbers
            for id in std::mem::take(&mut st.carriers) {
                if let Some(u) = objs.get_mut(id).and_then(|o| o.unix_mut()) {
                    fdkinds::unix::name_in_flight(u, &st.in_flight_ids);
                }
            }
            return Ok(());
        }
        let nums: Vec<i32> = new.iter().map(|f| f.as_raw_fd()).collect();
        st.in_flight_held.extend(new);
        let (entries, _locks) = dump_fd_list(me, &nums, objs, st)?;
        st.in_flight_ids.extend(entries.iter().map(|e| (e.fd, e.object_id)));
    }
    Err(Error::Unsupported { pid, what: format!("file descriptors in flight nested more than {MAX_ROUNDS} sockets deep") })
}

/// Collects the fds `fds` of `pid` (or, for `pid` = ours, descriptions received in
/// flight) into fd entries and objects, and the file locks held.
fn dump_fd_list(pid: i32, fds: &[i32], objs: &mut ObjectTable, st: &mut FdState) -> Result<(Vec<Fd>, Vec<FileLock>)> {
    let mut locks: Vec<(String, FileLock)> = Vec::new();
    let pidfd = crate::procfs::pidfd(pid).ctx(pid, || "pidfd_open".into())?;
    let mut out = Vec::new();
    let descs = &mut st.descs;
    let pipes = &mut st.pipes;
    let fifos = &mut st.fifos;
    let unix_tables = &mut st.unix_tables;
    for &fd in fds {
        let link = match procfs::readlink(&format!("{}/fd/{fd}", crate::procfs::dir(pid))) {
            Ok(l) => l,
            Err(_) => continue, // closed meanwhile (cannot happen while frozen)
        };
        let info = procfs::fdinfo(pid, fd).ctx(pid, || format!("reading fdinfo of fd {fd}"))?;
        let raw = procfs::read(pid, &format!("fdinfo/{fd}")).unwrap_or_default();
        for (key, l) in parse_locks(pid, fd, &raw)? {
            // a POSIX lock shows on every fd of its file; a flock on every dup
            if !locks.iter().any(|(k, _)| *k == key) {
                locks.push((key, l));
            }
        }
        let cloexec = info.flags & O_CLOEXEC != 0 && !st.not_cloexec.contains(&(pid, fd));
        // O_ASYNC belongs to the description's owner record (crate::fown), whatever the
        // kind: the kinds see the other flags.
        let o_async = info.flags & libc::O_ASYNC as u32 != 0;
        let flags = info.flags & !(O_CLOEXEC | libc::O_ASYNC as u32);
        if fdkinds::opath::is_opath(flags) {
            let id = opath_fd(pid, fd, &link, flags, objs, descs)?;
            out.push(Fd { fd, object_id: id, cloexec });
            continue;
        }
        let fdkind = fdkinds::kind_of(&link);
        if let Some(kind) = anon_kind(&link).filter(|_| fdkind.is_none()) {
            return Err(Error::Unsupported { pid, what: format!("fd {fd} is {kind}") });
        }
        let md = std::fs::metadata(format!("{}/fd/{fd}", crate::procfs::dir(pid))).ctx(pid, || format!("stat of fd {fd} ({link})"))?;
        let ft = md.file_type();
        let key = (md.dev(), md.ino());
        // Same open file description as an fd seen before?
        if let Some(list) = descs.get(&key) {
            if let Some((_, _, id)) = list.iter().find(|(opid, other, _)| {
                sys::kcmp(crate::procfs::via(pid), crate::procfs::via(*opid), sys::KCMP_FILE, fd as u64, *other as u64).map(|r| r == 0).unwrap_or(false)
            }) {
                out.push(Fd { fd, object_id: *id, cloexec });
                continue;
            }
        }
        // our copy of a socket: its owner, then its kind's dump, read through it
        let sock_dup = match ft.is_socket() {
            true => Some(sys::pidfd_getfd(pidfd.as_fd(), fd).ctx(pid, || format!("pidfd_getfd of fd {fd}"))?),
            false => None,
        };
        // (F_SETLEASE sets O_ASYNC on the description itself: a leased file's owner and
        // F_SETSIG signal, which a lease break is sent with, are kept this way too)
        let owner = match &sock_dup {
            Some(dup) => crate::fown::dump(pid, fd, dup.as_fd(), o_async, &st.tree)?,
            None if o_async => crate::fown::dump_fd(pid, fd, pidfd.as_fd(), &st.tree)?,
            None => None,
        };
        let id = if let Some(kind) = fdkind {
            let ctx = fdkinds::FdCtx { pid, fd, kind, pidfd: pidfd.as_fd(), fdinfo: &raw, flags, link: &link, tree: &st.tree };
            let o = fdkinds::dump(&ctx)?;
            objs.intern(format!("anon-fd:{pid}:{fd}"), |_| o)
        } else if let Some(dup) = sock_dup {
            let dom = sys::getsockopt_int(dup.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(-1);
            // The socket's network namespace: the kernel's socket tables (sock_diag) are
            // read from inside it.
            let (net_ns, ns_fd) = socket_netns(pid, fd, &dup)?;
            if dom == libc::AF_INET || dom == libc::AF_INET6 {
                let what = socket_kind(&dup);
                let ino = md.ino();
                let skip = st.skip_in_flight;
                let dump = || fdkinds::inet::dump(pid, fd, ino, flags, &dup, &what, skip);
                let mut o = crate::ns::in_ns_opt(pid, ns_fd.as_ref().map(|f| f.as_fd()), "net", libc::CLONE_NEWNET, dump)?;
                o.net_ns = net_ns;
                o.owner = owner;
                let id = objs.intern(format!("inet-fd:{pid}:{fd}"), |_| o);
                descs.entry(key).or_default().push((pid, fd, id));
                out.push(Fd { fd, object_id: id, cloexec });
                continue;
            }
            if dom == libc::AF_NETLINK || dom == libc::AF_PACKET {
                let ino = md.ino();
                let dump = || match dom {
                    libc::AF_NETLINK => fdkinds::netlink::dump(pid, fd, ino, flags, &dup),
                    _ => fdkinds::packet::dump(pid, fd, ino, flags, &dup),
                };
                let mut o = crate::ns::in_ns_opt(pid, ns_fd.as_ref().map(|f| f.as_fd()), "net", libc::CLONE_NEWNET, dump)?;
                o.net_ns = net_ns;
                let id = objs.intern(format!("sock-fd:{pid}:{fd}"), |_| o);
                descs.entry(key).or_default().push((pid, fd, id));
                out.push(Fd { fd, object_id: id, cloexec });
                continue;
            }
            if dom != libc::AF_UNIX {
                return Err(Error::Unsupported { pid, what: format!("fd {fd} is {}", socket_kind(&dup)) });
            }
            if !unix_tables.contains_key(&net_ns) {
                let load = || fdkinds::unix::Table::load(pid);
                let t = crate::ns::in_ns_opt(pid, ns_fd.as_ref().map(|f| f.as_fd()), "net", libc::CLONE_NEWNET, load)?;
                unix_tables.insert(net_ns, t);
            }
            let table = &unix_tables[&net_ns];
            let mut got = Vec::new();
            let mut o = fdkinds::unix::dump(pid, fd, md.ino(), flags, &dup, table, &mut got)?;
            o.net_ns = net_ns;
            let id = objs.intern(format!("unix-fd:{pid}:{fd}"), |_| o);
            if !got.is_empty() {
                st.carriers.push(id);
                st.in_flight_new.extend(got);
            }
            id
        } else if ft.is_fifo() && !link.starts_with("pipe:") {
            fifo_fd(pid, fd, &link, &md, flags, objs, fifos)?
        } else if ft.is_fifo() {
            let ino = md.ino();
            // O_DIRECT (packet mode) is kept, with the packets buffered (peek_pipe);
            // O_LARGEFILE marks a description opened through /proc/PID/fd/N: kept
            if let Some(why) = fdkinds::unkept_flags(flags & !(libc::O_DIRECT as u32)) {
                return Err(Error::Unsupported { pid, what: format!("fd {fd} is {link} {why}") });
            }
            let write_end = flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
            let pos = pipes.iter().position(|p| p.ino == ino).unwrap_or_else(|| {
                let pipe_id = objs.intern(format!("pipe:{ino}"), |_| Object {
                    kind: Some(Kind::Pipe(PipeObj { ino, ..Default::default() })),
                    ..Default::default()
                });
                pipes.push(PipeSeen { ino, pipe_id, read_fd: None, write_fd: None });
                pipes.len() - 1
            });
            let p = &mut pipes[pos];
            if write_end {
                p.write_fd.get_or_insert((pid, fd));
            } else {
                p.read_fd.get_or_insert((pid, fd));
            }
            let pipe_id = p.pipe_id;
            objs.intern(format!("pipe-end:{pid}:{fd}"), |_| Object {
                kind: Some(Kind::PipeEnd(PipeEndObj { pipe_id, write_end, flags })),
                ..Default::default()
            })
        } else if ft.is_char_device() && crate::tty::is_tty(md.rdev()) {
            crate::tty::dump_fd(pid, fd, &link, &md, flags, &raw, objs, &mut st.ttys)?
        } else if ft.is_file() || ft.is_dir() || ft.is_char_device() {
            if ft.is_char_device() {
                let rdev = md.rdev();
                if libc::major(rdev) != 1 {
                    return Err(Error::Unsupported {
                        pid,
                        what: format!("fd {fd} is character device {}:{} ({link})", libc::major(rdev), libc::minor(rdev)),
                    });
                }
            }
            if link == crate::mem::SECRETMEM {
                return Err(Error::Unsupported { pid, what: format!("fd {fd} is secret memory (memfd_secret), which only the process itself can read") });
            }
            if ft.is_file() && is_mqueue(pid, fd) {
                let mut o = fdkinds::mqueue::dump(pid, fd, &link, pidfd.as_fd(), flags)?;
                o.owner = owner;
                let id = objs.intern(format!("mqueue-fd:{pid}:{fd}"), |_| o);
                descs.entry(key).or_default().push((pid, fd, id));
                out.push(Fd { fd, object_id: id, cloexec });
                continue;
            }
            let is_memfd = link.starts_with("/memfd:");
            // removed while open: the kernel appends " (deleted)" (a name that really
            // ends so is the same inode)
            let mut deleted = !is_memfd
                && link.ends_with(" (deleted)")
                && !std::fs::symlink_metadata(&link).is_ok_and(|l| (l.dev(), l.ino()) == (md.dev(), md.ino()));
            // removed from its directory but linked elsewhere: another name of it in the
            // same directory is reopened (by that path); else ghost() refuses
            let mut link = link.clone();
            if deleted && md.nlink() > 0 && ft.is_file() {
                if let Some(other) = other_link(pid, link.trim_end_matches(" (deleted)"), &md) {
                    tracing::info!(pid, fd, "{link}: reopened through its other name {other}");
                    link = other;
                    deleted = false;
                }
            }
            let in_proc = match proc_pid_file(&link) {
                Some(p) if !st.tree.iter().any(|t| t.to_string() == p) => {
                    return Err(Error::Unsupported {
                        pid,
                        what: format!("fd {fd} is {link}, a /proc file of process {p}, which is not in the dumped tree"),
                    });
                }
                Some(p) if crate::ns::ns_pids(pid, pid).len() > 1 => {
                    return Err(Error::Unsupported {
                        pid,
                        what: format!("fd {fd} is {link}, a /proc file of process {p}, held by a process in a PID namespace of the tree's own (not supported yet)"),
                    });
                }
                Some(_) if ft.is_file() => true,
                Some(p) => {
                    return Err(Error::Unsupported {
                        pid,
                        what: format!("fd {fd} is {link}, a /proc directory or device of process {p} (only regular /proc files are reopened)"),
                    });
                }
                None => false,
            };
            let ghost_id = if is_memfd || deleted {
                ghost(pid, objs, &format!("{}/fd/{fd}", crate::procfs::dir(pid)), &link, &format!("fd {fd}"))?
            } else if !link.starts_with('/') {
                return Err(Error::Unsupported { pid, what: format!("fd {fd} ({link}) has no path") });
            } else {
                0
            };
            objs.intern(format!("file-fd:{pid}:{fd}"), |_| Object {
                kind: Some(Kind::File(FileObj {
                    path: link.trim_end_matches(" (deleted)").to_string(),
                    flags,
                    pos: info.pos,
                    identity: Some(identity(&md, 0)),
                    deleted,
                    mode: md.mode(),
                    ghost_id,
                    in_proc,
                })),
                ..Default::default()
            })
        } else {
            return Err(Error::Unsupported { pid, what: format!("fd {fd} ({link}) is of an unknown kind") });
        };
        if let Some(o) = objs.get_mut(id).filter(|_| owner.is_some()) {
            o.owner = owner;
        }
        descs.entry(key).or_default().push((pid, fd, id));
        out.push(Fd { fd, object_id: id, cloexec });
    }
    st.users.extend(out.iter().map(|f| (pid, f.fd, f.object_id)));
    Ok((out, locks.into_iter().map(|(_, l)| l).collect()))
}

/// Is fd `fd` of `pid` a POSIX message queue? Its link reads like a path ("/name"),
/// which is not the queue's name in the host's tree.
fn is_mqueue(pid: i32, fd: i32) -> bool {
    let path = CString::new(format!("{}/fd/{fd}", crate::procfs::dir(pid))).unwrap_or_default();
    sys::statfs_type(&path).ok() == Some(sys::MQUEUE_MAGIC)
}

/// Another name of the inode `md` (a regular file whose name `path` was removed while
/// it has other links) in the directory `path` was in, looked up through the process's
/// root; None if there is none there.
pub(crate) fn other_link(pid: i32, path: &str, md: &std::fs::Metadata) -> Option<String> {
    let dir = std::path::Path::new(path).parent()?;
    let seen = format!("{}/root{}", crate::procfs::dir(pid), dir.display());
    for e in std::fs::read_dir(&seen).ok()?.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.file_type().is_file() && (m.dev(), m.ino()) == (md.dev(), md.ino()) {
            let name = e.file_name();
            return Some(dir.join(name).to_str()?.to_string());
        }
    }
    None
}

/// The pid of a `/proc/PID/...` path (a per-process procfs file), if it is one.
fn proc_pid_file(link: &str) -> Option<&str> {
    let rest = link.strip_prefix("/proc/")?;
    let p = rest.split('/').next()?;
    (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then_some(p)
}

/// An O_PATH fd (`fdkinds::opath`): a path and its file type; a description seen
/// before (dup, fork) is shared again. An O_PATH fd of a deleted regular file is of its
/// nameless inode (content saved); of another deleted file: refused.
fn opath_fd(
    pid: i32,
    fd: i32,
    link: &str,
    flags: u32,
    objs: &mut ObjectTable,
    descs: &mut HashMap<(u64, u64), Vec<(i32, i32, u32)>>,
) -> Result<u32> {
    let via = format!("{}/fd/{fd}", crate::procfs::dir(pid));
    let md = std::fs::metadata(&via).ctx(pid, || format!("stat of O_PATH fd {fd} ({link})"))?;
    let key = (md.dev(), md.ino());
    if let Some(list) = descs.get(&key) {
        if let Some((_, _, id)) = list.iter().find(|(opid, other, _)| {
            sys::kcmp(crate::procfs::via(pid), crate::procfs::via(*opid), sys::KCMP_FILE, fd as u64, *other as u64).map(|r| r == 0).unwrap_or(false)
        }) {
            return Ok(*id);
        }
    }
    let deleted = link.ends_with(" (deleted)") && md.nlink() == 0;
    let ghost_id = if link.starts_with("/memfd:") || deleted {
        if !md.is_file() {
            return Err(Error::Unsupported { pid, what: format!("fd {fd} is an O_PATH fd of a deleted non-regular file ({link})") });
        }
        ghost(pid, objs, &via, link, &format!("fd {fd}"))?
    } else if !link.starts_with('/') {
        return Err(Error::Unsupported { pid, what: format!("fd {fd} is an O_PATH fd of {link}, which has no path") });
    } else {
        0
    };
    let o = fdkinds::opath::dump(link, &md, flags, ghost_id, deleted);
    let id = objs.intern(format!("opath-fd:{pid}:{fd}"), |_| o);
    descs.entry(key).or_default().push((pid, fd, id));
    Ok(id)
}

/// A new open description of a named FIFO: the FIFO object (one per inode, its bytes are
/// read in `finish_fds`) and the description's object (access mode and flags).
fn fifo_fd(
    pid: i32,
    fd: i32,
    link: &str,
    md: &std::fs::Metadata,
    flags: u32,
    objs: &mut ObjectTable,
    fifos: &mut Vec<FifoSeen>,
) -> Result<u32> {
    if !link.starts_with('/') {
        return Err(Error::Unsupported { pid, what: format!("fd {fd} is a named FIFO without a path ({link})") });
    }
    let deleted = link.ends_with(" (deleted)") && md.nlink() == 0;
    if link.ends_with(" (deleted)") && !deleted
        && !std::fs::symlink_metadata(link).is_ok_and(|l| (l.dev(), l.ino()) == (md.dev(), md.ino()))
    {
        return Err(Error::Unsupported {
            pid,
            what: format!("fd {fd} is named FIFO {link}, removed from that directory but still linked elsewhere ({} links): its other names are unknown", md.nlink()),
        });
    }
    let path = if deleted { link.trim_end_matches(" (deleted)") } else { link }.to_string();
    let (dev, ino) = (md.dev(), md.ino());
    let fifo_id = objs.intern(format!("fifo:{dev}:{ino}"), |_| Object {
        kind: Some(Kind::Fifo(FifoObj {
            path: path.clone(),
            dev,
            ino,
            deleted,
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            ..Default::default()
        })),
        ..Default::default()
    });
    if !fifos.iter().any(|f| f.fifo_id == fifo_id) {
        fifos.push(FifoSeen { fifo_id, dev, ino, path, via: (pid, fd) });
    }
    Ok(objs.intern(format!("fifo-fd:{pid}:{fd}"), |_| Object {
        kind: Some(Kind::FifoFd(FifoFdObj { fifo_id, flags })),
        ..Default::default()
    }))
}

/// What `peek_pipe` finds in a pipe: capacity, buffered bytes, and the lengths of the
/// leading pieces that are packets (`PipeObj.packets`).
struct Peeked {
    cap: u32,
    data: Vec<u8>,
    packets: Vec<u32>,
}

/// Capacity of the pipe behind `f` (which must be readable) and the bytes buffered in
/// it, copied with tee(2): nothing is consumed. The copy keeps which buffers are packets
/// (packet mode, O_DIRECT): a read of it stops after each; a byte of ours written after
/// the copy joins the last read unless the copy ends with a packet.
fn peek_pipe(pid: i32, what: &str, f: &OwnedFd) -> Result<Peeked> {
    let cap = sys::fcntl(f.as_raw_fd(), libc::F_GETPIPE_SZ, 0).ctx(pid, || format!("F_GETPIPE_SZ of {what}"))?;
    let (tr, tw) = sys::pipe2(libc::O_CLOEXEC | libc::O_NONBLOCK).ctx(pid, || "creating a pipe".into())?;
    // room for the copy and our byte after it
    if sys::fcntl(tw.as_raw_fd(), libc::F_SETPIPE_SZ, cap + crate::PAGE as i64).is_err() {
        let _ = sys::fcntl(tw.as_raw_fd(), libc::F_SETPIPE_SZ, cap);
    }
    let n = match sys::tee(f.as_fd(), tw.as_fd(), cap as usize, libc::SPLICE_F_NONBLOCK) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => 0,
        Err(e) => return Err(e).ctx(pid, || format!("tee from {what}")),
    };
    if n > 0 {
        // no room for it (a full pipe at the largest size allowed): see below
        let _ = sys::write_fd(tw.as_fd(), b"$");
    }
    let mut data = vec![0u8; n + 1];
    let mut reads = Vec::new();
    let mut got = 0;
    while got < data.len() {
        let k = match sys::read_fd(tr.as_fd(), &mut data[got..]) {
            Ok(k) => k,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => 0,
            Err(e) => return Err(e).ctx(pid, || format!("reading copy of {what}")),
        };
        if k == 0 {
            break;
        }
        reads.push(k as u32);
        got += k;
    }
    data.truncate(got.min(n));
    // Every read but the last stopped after a packet. The last one is our byte alone
    // (the copy ended with a packet), or the plain bytes at the end with our byte
    // joined, or — unmarked, no room for it — the end of the copy, taken as plain.
    let mut packets = reads;
    packets.pop();
    Ok(Peeked { cap: cap as u32, data, packets })
}

/// Restore: the bytes buffered in a pipe, written to its write end `w`: its packets one
/// write each with O_DIRECT on (packet mode is the writer's), then the plain rest.
fn refill_pipe(w: &OwnedFd, p: &PipeObj) -> std::io::Result<()> {
    let mut off = 0;
    if !p.packets.is_empty() {
        sys::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_DIRECT as i64)?;
        for &k in &p.packets {
            let piece = p.data.get(off..off + k as usize).ok_or_else(|| std::io::Error::other("packets beyond the data"))?;
            sys::write_all(w.as_fd(), piece)?;
            off += k as usize;
        }
        sys::fcntl(w.as_raw_fd(), libc::F_SETFL, 0)?;
    }
    sys::write_all(w.as_fd(), &p.data[off..])
}

/// After every process of the tree: resources shared with processes outside the tree
/// are found in one pass over /proc (`external::scan`) and refused unless they are
/// stdio pipes or marked external; pipes (both ends inside the tree, or closed) get
/// their buffered bytes, copied without consuming them; unix socket pairs must have
/// both ends inside the tree.
pub fn finish_fds(st: &mut FdState, objs: &mut ObjectTable) -> Result<()> {
    let inos = st.pipes.iter().map(|p| p.ino).collect();
    let fifo_keys = st.fifos.iter().map(|f| (f.dev, f.ino)).collect();
    let peers = fdkinds::unix::outside_peers(&objs.objects);
    let holders = external::scan(&st.tree, &inos, &st.shared, &fifo_keys, &peers, &st.ttys.master_paths());
    crate::tty::warn_outside_slaves(&holders.ttys);
    external::check_shm(&holders, &st.shared)?;
    for p in &st.pipes {
        let name = external::pipe_name(p.ino);
        let marked = objs.external.contains(&name);
        let outside = holders.pipes.get(&p.ino);
        // fds of the tree on this pipe
        let users: Vec<(i32, i32)> = st
            .users
            .iter()
            .filter(|(_, _, id)| objs.get(*id).and_then(|o| o.pipe_end()).is_some_and(|e| e.pipe_id == p.pipe_id))
            .map(|(pid, fd, _)| (*pid, *fd))
            .collect();
        let (pid, fd) = users.iter().copied().find(|u| u.1 > 2).or(p.read_fd.or(p.write_fd)).unwrap();
        if p.read_fd.is_some() && p.write_fd.is_some() {
            if let Some(other) = outside {
                let (pid, comm) = external::who_in_tree(pid);
                return Err(Error::Shared {
                    pid,
                    comm,
                    why: format!(
                        "fd {fd} is {name}, whose two ends are in the dumped tree while {other} outside it holds it \
                         too; such a pipe cannot be reconnected (not supported yet)"
                    ),
                });
            }
            if marked {
                tracing::warn!("--external {name}: both ends of it are in the dumped tree; it is dumped as usual");
            }
        } else if outside.is_some() || marked {
            let other = outside.cloned().unwrap_or_else(|| "nobody (marked external)".into());
            if !marked && fd > 2 {
                // Only stdio is handed over implicitly; anything else must be named.
                let (pid, comm) = external::who_in_tree(pid);
                return Err(Error::Shared {
                    pid,
                    comm,
                    why: format!(
                        "fd {fd} is {name}, which {other} outside the dumped tree holds too; to dump it anyway mark \
                         it with `--external {name}` and reconnect it at restore with `--inherit-fd FD:{name}`"
                    ),
                });
            }
            // The other end belongs to another process (a shell pipeline, a test
            // harness capturing output). It cannot be part of the image; restore
            // connects this fd to the restorer's fd named by --inherit-fd, or to the
            // same fd of `stasis restore`, which must be a pipe too (as a shell job gets
            // its terminal back).
            tracing::info!(pid, fd, "{name} is shared with {other}; restore will inherit it");
            let o = objs.get_mut(p.pipe_id).unwrap().pipe_mut().unwrap();
            o.external = format!("{name} shared with {other}");
            continue;
        }
        if p.read_fd.is_none() || p.write_fd.is_none() {
            // Nobody holds the other end: it was closed. Restore recreates the pipe
            // and closes that end again.
            let o = objs.get_mut(p.pipe_id).unwrap().pipe_mut().unwrap();
            o.read_closed = p.read_fd.is_none();
            o.write_closed = p.write_fd.is_none();
        }
        let Some((pid, rfd)) = p.read_fd else { continue }; // unread bytes nobody can ever read
        let pidfd = crate::procfs::pidfd(pid).ctx(pid, || "pidfd_open".into())?;
        let ours = sys::pidfd_getfd(pidfd.as_fd(), rfd).ctx(pid, || format!("pidfd_getfd of pipe fd {rfd}"))?;
        let got = peek_pipe(pid, &format!("pipe fd {rfd}"), &ours)?;
        let o = objs.get_mut(p.pipe_id).unwrap().pipe_mut().unwrap();
        (o.capacity, o.data, o.packets) = (got.cap, got.data, got.packets);
    }
    for f in &st.fifos {
        let (pid, fd) = f.via;
        if let Some(other) = holders.fifos.get(&(f.dev, f.ino)) {
            // Its bytes stay in the kernel as long as that process keeps the FIFO open,
            // and restore attaches to the same pipe by opening the path again.
            tracing::info!(pid, fd, "named FIFO {} is also open in {other}; its bytes are left to it", f.path);
            let o = objs.get_mut(f.fifo_id).unwrap().fifo_mut().unwrap();
            o.external = format!("open in {other}");
            continue;
        }
        // A description of our own, readable whatever the tree's descriptions are;
        // O_RDWR never blocks on a FIFO.
        let via = format!("{}/fd/{fd}", crate::procfs::dir(pid));
        let c = CString::new(via.clone()).map_err(|e| Error::Unsupported { pid, what: e.to_string() })?;
        let ours = sys::open(&c, libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY, 0)
            .ctx(pid, || format!("opening named FIFO {} (fd {fd}) through {via}", f.path))?;
        let got = peek_pipe(pid, &format!("named FIFO {} (fd {fd})", f.path), &ours)?;
        if !got.packets.is_empty() {
            return Err(Error::Unsupported { pid, what: format!("fd {fd} is named FIFO {} holding packets (written with O_DIRECT)", f.path) });
        }
        let o = objs.get_mut(f.fifo_id).unwrap().fifo_mut().unwrap();
        (o.capacity, o.data) = (got.cap, got.data);
    }
    fdkinds::unix::check_peers(&holders.sockets, &mut objs.objects, &st.users, &objs.external, st.skip_in_flight)?;
    fdkinds::inet::waiting::match_clients(&mut objs.objects, &st.users, st.skip_in_flight)?;
    fdkinds::unix::creds_of_tree(&mut objs.objects, &st.tree);
    Ok(())
}

// ---------------------------------------------------------------- restore side

/// Checks that a file still is what the image saw.
pub fn check_identity(path: &str, want: &FileIdentity, what: &str) -> Result<()> {
    let md = std::fs::metadata(path)
        .map_err(|e| Error::RestoreRefused(format!("{what} {path} is missing or unreadable: {e}")))?;
    let now = identity(&md, 0);
    if md.file_type().is_char_device() || md.file_type().is_dir() {
        if md.file_type().is_char_device() && now.rdev != want.rdev {
            return Err(Error::RestoreRefused(format!("{what} {path} is now a different device")));
        }
        return Ok(());
    }
    if now.size != want.size {
        return Err(Error::RestoreRefused(format!(
            "{what} {path} changed since the dump: size {} bytes, was {}",
            now.size, want.size
        )));
    }
    if now.mtime_ns != want.mtime_ns {
        return Err(Error::RestoreRefused(format!("{what} {path} changed since the dump: modification time differs")));
    }
    if want.hash != 0 {
        let h = hash_file(path).map_err(|e| Error::RestoreRefused(format!("{what} {path}: cannot hash: {e}")))?;
        if h != want.hash {
            return Err(Error::RestoreRefused(format!("{what} {path} changed since the dump: content hash differs")));
        }
    }
    Ok(())
}

/// Opens an existing file with the access mode and status flags of the image: never
/// creates (O_CREAT, O_TMPFILE), truncates or excludes, whatever the image says.
fn open_path(path: &str, flags: u32, mode: u32) -> std::io::Result<OwnedFd> {
    let c = CString::new(path).map_err(std::io::Error::other)?;
    let tmpfile = libc::O_TMPFILE & !libc::O_DIRECTORY;
    let mut never = libc::O_CREAT | libc::O_TRUNC | libc::O_EXCL | tmpfile;
    if flags as i32 & tmpfile != 0 {
        // made with O_TMPFILE (whose flags include O_DIRECTORY): a regular file
        never |= libc::O_DIRECTORY;
    }
    let fl = (flags as i32 & !never) | libc::O_CLOEXEC | libc::O_NOCTTY;
    sys::open(&c, fl, mode)
}

fn type_name(t: u32) -> &'static str {
    match t {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symbolic link",
        _ => "a file of another type",
    }
}

/// Some(why) when the file at `path` (followed) is of another type than the image's
/// `mode` (S_IFMT; 0 = not recorded) says.
pub fn other_type(path: &str, mode: u32) -> Option<String> {
    let want = mode & libc::S_IFMT;
    let now = std::fs::metadata(path).ok()?.mode() & libc::S_IFMT;
    (want != 0 && now != want).then(|| format!("{path} is {} now; it was {} at dump time", type_name(now), type_name(want)))
}

/// Opens the file at `path` the image names for an fd: non-blocking first (a FIFO or
/// device put there since the dump never makes the open wait), then the opened inode
/// must be of the image's type (`mode`'s S_IFMT; 0 = not recorded) — the path may now
/// name something else, whatever checks ran before — and O_NONBLOCK is put back as the
/// image has it. Err(Ok(why)): the path names another kind of file now.
fn open_named(path: &str, flags: u32, mode: u32) -> std::result::Result<OwnedFd, std::result::Result<String, std::io::Error>> {
    let f = open_path(path, flags | libc::O_NONBLOCK as u32, 0).map_err(Err)?;
    let want = mode & libc::S_IFMT;
    let now = File::from(f.try_clone().map_err(Err)?).metadata().map_err(Err)?.mode() & libc::S_IFMT;
    if want != 0 && now != want {
        return Err(Ok(format!("{path} is {} now; it was {} at dump time", type_name(now), type_name(want))));
    }
    // (an O_PATH fd has no status flags to set: F_SETFL is EBADF there)
    if flags & libc::O_NONBLOCK as u32 == 0 && !fdkinds::opath::is_opath(flags) {
        let cur = sys::fcntl(f.as_raw_fd(), libc::F_GETFL, 0).map_err(Err)?;
        sys::fcntl(f.as_raw_fd(), libc::F_SETFL, cur & !(libc::O_NONBLOCK as i64)).map_err(Err)?;
    }
    Ok(f)
}

/// Opened restore-side objects: fds in the restorer that the new process inherits.
#[derive(Default)]
pub struct Opened {
    pub by_object: HashMap<u32, OwnedFd>,
    /// O_RDWR descriptions of named FIFOs that keep them open (and their refilled
    /// bytes alive) until every new process holds its own descriptions.
    pub keep: Vec<OwnedFd>,
    /// Unix socket queues that carry credentials, sent once the processes exist
    /// (`requeue_late`).
    pub late: fdkinds::unix::Late,
}

/// The seals of memfd `g` added only once every process has mapped it: F_SEAL_FUTURE_WRITE
/// refuses new writable shared mappings, but ones made before it write on (the program
/// may hold one), and F_SEAL_SEAL would refuse adding it later. `create_ghosts` adds the
/// others at once.
pub fn late_seals(g: &GhostObj) -> u32 {
    const F_SEAL_SEAL: u32 = 1;
    const F_SEAL_FUTURE_WRITE: u32 = 0x10;
    if g.memfd_name.is_empty() || g.seals & F_SEAL_FUTURE_WRITE == 0 {
        0
    } else {
        g.seals & (F_SEAL_FUTURE_WRITE | F_SEAL_SEAL)
    }
}

/// Recreates every nameless inode with its content, owner, mode and times: a memfd
/// with its name and seals; a deleted regular file with `ghost_file` (O_TMPFILE: it
/// never has a name on the host); a directory or memory device removed while open made
/// in stasis's private directory and removed there at once (`private_node`). Contents
/// come from the page runs under the object's id (holes stay holes; older images: inline).
/// An external one is the fd handed over with `--inherit-fd`. Returns object id → an
/// fd of it (O_RDWR for files).
pub fn create_ghosts(m: &stasis_image::Manifest, inherit: &external::Inherited, shards: &[&[u8]]) -> Result<HashMap<u32, OwnedFd>> {
    let pid = m.process.pid;
    let step = |why: String| Error::RestoreStep { pid, step: "recreating deleted files and memfds".into(), why };
    let mut runs: HashMap<u32, Vec<&PageRun>> = HashMap::new();
    for r in m.index.runs.iter().filter(|r| r.object_id != 0) {
        if m.object(r.object_id).and_then(|o| o.ghost()).is_some() {
            runs.entry(r.object_id).or_default().push(r);
        }
    }
    let mut out = HashMap::new();
    for o in &m.objects {
        let Some(g) = o.ghost() else { continue };
        let what = if g.memfd_name.is_empty() { format!("deleted file {}", g.path) } else { format!("memfd {}", g.memfd_name) };
        let fmt = g.mode & libc::S_IFMT;
        let fd = if !g.external.is_empty() {
            inherit.dup(&g.external).map_err(|e| Error::RestoreRefused(format!("external {} ({}): {e}", g.external, g.path)))?
        } else if fmt == libc::S_IFDIR || fmt == libc::S_IFCHR {
            let f = File::from(private_node(g).map_err(|why| step(format!("{what}: {why}")))?);
            set_meta(&f, g, false).map_err(|why| step(format!("{what}: {why}")))?;
            OwnedFd::from(f)
        } else {
            let mut sealing = false;
            let file = if !g.memfd_name.is_empty() {
                const F_SEAL_SEAL: u32 = 1;
                sealing = g.seals != F_SEAL_SEAL;
                let flags = if sealing { libc::MFD_ALLOW_SEALING } else { 0 }
                    | if g.huge_page_size != 0 { libc::MFD_HUGETLB | sys::huge_size_bits(g.huge_page_size) as u32 } else { 0 };
                File::from(sys::memfd_create(&g.memfd_name, flags).map_err(|e| step(format!("memfd_create {}: {e}", g.memfd_name)))?)
            } else {
                File::from(ghost_file(&g.path).map_err(|why| step(format!("{what}: {why}")))?)
            };
            fill_ghost(&file, g, runs.get(&o.id).map(Vec::as_slice).unwrap_or_default(), shards)
                .map_err(|why| step(format!("{what}: {why}")))?;
            set_meta(&file, g, true).map_err(|why| step(format!("{what}: {why}")))?;
            let now = g.seals & !late_seals(g);
            if sealing && now != 0 {
                sys::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, now as i64)
                    .map_err(|e| step(format!("sealing memfd {} ({:#x}): {e}", g.memfd_name, g.seals)))?;
            }
            OwnedFd::from(file)
        };
        out.insert(o.id, fd);
    }
    Ok(out)
}

/// Writes a nameless file's content: its size, then each stored extent (never past the
/// size: the last page of a run may reach beyond it); older images carry it inline.
pub(crate) fn fill_ghost(file: &File, g: &GhostObj, runs: &[&PageRun], shards: &[&[u8]]) -> std::result::Result<(), String> {
    use std::os::unix::fs::FileExt;
    if !g.paged {
        return file.write_all_at(&g.content, 0).map_err(|e| format!("writing its {} bytes: {e}", g.content.len()));
    }
    file.set_len(g.size).map_err(|e| format!("setting its size to {}: {e}", g.size))?;
    let mut w = FileWriter::new(file.as_fd(), g.size).map_err(|e| format!("opening it for writing: {e}"))?;
    for r in runs {
        let a = r.file_offset as usize;
        let bytes = shards
            .get(r.shard as usize)
            .and_then(|s| s.get(a..a.checked_add((r.count as usize).checked_mul(PAGE as usize)?)?))
            .ok_or_else(|| format!("page run at offset {:#x} lies outside its pages file", r.addr))?;
        let keep = g.size.saturating_sub(r.addr).min(bytes.len() as u64) as usize;
        w.write_at(&bytes[..keep], r.addr).map_err(|e| format!("writing at offset {:#x}: {e}", r.addr))?;
    }
    Ok(())
}

/// Writes into a recreated file or shared-memory object: with pwrite, or through a
/// shared mapping of its first `size` bytes when it is on hugetlbfs (which has no
/// write(2)).
pub enum FileWriter {
    Plain(File),
    Mapped(sys::FileMapMut),
}

impl FileWriter {
    pub fn new(fd: std::os::fd::BorrowedFd<'_>, size: u64) -> std::io::Result<FileWriter> {
        if sys::hugetlb_page_size(fd)?.is_some() {
            let len = usize::try_from(size).map_err(std::io::Error::other)?;
            return Ok(FileWriter::Mapped(sys::FileMapMut::new(fd, len)?));
        }
        Ok(FileWriter::Plain(File::from(fd.try_clone_to_owned()?)))
    }

    pub fn write_at(&mut self, bytes: &[u8], off: u64) -> std::io::Result<()> {
        match self {
            FileWriter::Plain(f) => std::os::unix::fs::FileExt::write_all_at(f, bytes, off),
            FileWriter::Mapped(m) => {
                let dst = usize::try_from(off)
                    .ok()
                    .and_then(|o| m.as_mut_slice().get_mut(o..o.checked_add(bytes.len())?))
                    .ok_or_else(|| std::io::Error::other(format!("{} bytes at offset {off:#x} lie beyond the end", bytes.len())))?;
                dst.copy_from_slice(bytes);
                Ok(())
            }
        }
    }
}

use crate::PAGE;

/// Owner, permission bits and times of a recreated inode (in that order: chown clears
/// set-id bits, and every write is done). Older images (no times recorded) get only the
/// permission bits (`chmod`: regular files).
pub(crate) fn set_meta(f: &File, g: &GhostObj, chmod: bool) -> std::result::Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let new_image = g.mtime_ns != 0 || g.atime_ns != 0;
    if new_image {
        let md = f.metadata().map_err(|e| format!("fstat: {e}"))?;
        if (md.uid(), md.gid()) != (g.uid, g.gid) {
            std::os::unix::fs::fchown(f, Some(g.uid), Some(g.gid)).map_err(|e| format!("fchown {}:{}: {e}", g.uid, g.gid))?;
        }
    }
    if chmod || new_image {
        f.set_permissions(std::fs::Permissions::from_mode(g.mode & 0o7777)).map_err(|e| format!("fchmod {:o}: {e}", g.mode & 0o7777))?;
    }
    if new_image {
        let t = |ns: i64| {
            let d = std::time::Duration::from_nanos(ns.unsigned_abs());
            if ns >= 0 { std::time::UNIX_EPOCH.checked_add(d) } else { std::time::UNIX_EPOCH.checked_sub(d) }
        };
        let (Some(a), Some(m)) = (t(g.atime_ns), t(g.mtime_ns)) else { return Err("times out of range".into()) };
        f.set_times(std::fs::FileTimes::new().set_accessed(a).set_modified(m)).map_err(|e| format!("futimens: {e}"))?;
    }
    Ok(())
}

/// A directory or memory device node removed while open, made again without any name on
/// the host outside stasis's private directory: created there (mkdirat / mknodat, under a
/// name of this restore's own), opened without following links, removed at once.
fn private_node(g: &GhostObj) -> std::result::Result<OwnedFd, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = private_dir()?;
    let dc = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let d = sys::open(&dc, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0)
        .map_err(|e| format!("opening {}: {e}", dir.display()))?;
    let name = CString::new(format!("ghost-{}-{}", sys::getpid(), SEQ.fetch_add(1, Ordering::Relaxed))).unwrap();
    let shown = format!("{}/{}", dir.display(), name.to_string_lossy());
    let fmt = g.mode & libc::S_IFMT;
    let (made, flags, rmflag) = if fmt == libc::S_IFDIR {
        (sys::mkdir_at(d.as_fd(), &name, 0o700), libc::O_RDONLY | libc::O_DIRECTORY, libc::AT_REMOVEDIR)
    } else {
        if !ghost_device_ok(g.rdev) {
            return Err(format!("device {}:{} is not a memory device", libc::major(g.rdev), libc::minor(g.rdev)));
        }
        (sys::mknod_at(d.as_fd(), &name, libc::S_IFCHR | 0o600, g.rdev), libc::O_RDWR, 0)
    };
    made.map_err(|e| format!("creating {shown}: {e}"))?;
    let f = sys::open_at(d.as_fd(), &name, flags | libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_CLOEXEC, 0);
    let rm = sys::unlink_at(d.as_fd(), &name, rmflag);
    let f = f.map_err(|e| format!("opening {shown}: {e}"))?;
    rm.map_err(|e| format!("removing {shown}: {e}"))?;
    Ok(f)
}

/// A new nameless regular file standing for deleted file `path`: O_TMPFILE in the
/// directory `path` was in, on the filesystem it was on; if that directory is gone or
/// cannot hold O_TMPFILE files, in stasis's private directory (`private_dir`). The image
/// names the path, and restore runs as root: no name is ever created, so no file on the
/// host can be clobbered or raced for, its content is never readable under a name, and
/// an existing file at `path` is irrelevant. /proc/PID/fd shows it as
/// `DIR/#INODE (deleted)`.
fn ghost_file(path: &str) -> std::result::Result<OwnedFd, String> {
    let tmpfile = |dir: &std::path::Path| -> std::io::Result<OwnedFd> {
        let c = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
        sys::open(&c, libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600)
    };
    let old_dir = std::path::Path::new(path).parent().filter(|d| d.is_absolute());
    match old_dir.map(tmpfile) {
        Some(Ok(fd)) => Ok(fd),
        first => {
            let private = private_dir().map_err(|why| match &first {
                Some(Err(e)) => format!("O_TMPFILE in {}: {e}; {why}", old_dir.unwrap().display()),
                _ => why,
            })?;
            tmpfile(&private).map_err(|e| format!("O_TMPFILE in {}: {e}", private.display()))
        }
    }
}

/// A new nameless FIFO (the dumped one's path was removed while open): made in stasis's
/// private directory, opened O_RDWR (never blocks), removed at once; owner and mode set.
fn private_fifo(f: &FifoObj) -> std::result::Result<OwnedFd, String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = private_dir()?;
    let dc = CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let d = sys::open(&dc, libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0)
        .map_err(|e| format!("opening {}: {e}", dir.display()))?;
    let name = CString::new(format!("fifo-{}-{}", sys::getpid(), SEQ.fetch_add(1, Ordering::Relaxed))).unwrap();
    sys::mknod_at(d.as_fd(), &name, libc::S_IFIFO | 0o600, 0).map_err(|e| format!("mkfifo in {}: {e}", dir.display()))?;
    let h = sys::open_at(d.as_fd(), &name, libc::O_RDWR | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0);
    let rm = sys::unlink_at(d.as_fd(), &name, 0);
    let h = File::from(h.map_err(|e| format!("opening the new FIFO: {e}"))?);
    rm.map_err(|e| format!("removing the new FIFO's name: {e}"))?;
    let md = h.metadata().map_err(|e| format!("fstat: {e}"))?;
    if (md.uid(), md.gid()) != (f.uid, f.gid) {
        std::os::unix::fs::fchown(&h, Some(f.uid), Some(f.gid)).map_err(|e| format!("fchown {}:{}: {e}", f.uid, f.gid))?;
    }
    use std::os::unix::fs::PermissionsExt;
    h.set_permissions(std::fs::Permissions::from_mode(f.mode & 0o7777)).map_err(|e| format!("fchmod {:o}: {e}", f.mode & 0o7777))?;
    Ok(OwnedFd::from(h))
}

/// A directory only stasis's user can enter, for nameless (O_TMPFILE) files whose own
/// directory is gone: `/run/stasis` (or `/tmp/stasis-UID` without /run), created mode
/// 0700. An existing one must be a real directory of ours with no group or other
/// access, or it is refused: someone else may have made it.
fn private_dir() -> std::result::Result<std::path::PathBuf, String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).map_err(|e| format!("stat /proc/self: {e}"))?;
    let dir = if std::path::Path::new("/run").is_dir() {
        std::path::PathBuf::from("/run/stasis")
    } else {
        std::path::PathBuf::from(format!("/tmp/stasis-{uid}"))
    };
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("creating private directory {}: {e}", dir.display())),
    }
    let md = std::fs::symlink_metadata(&dir).map_err(|e| format!("stat {}: {e}", dir.display()))?;
    if !md.is_dir() || md.uid() != uid || md.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is not a private directory of stasis (a {}, owner {}, mode {:o}; want a directory of uid {uid}, mode 0700)",
            dir.display(),
            if md.is_dir() { "directory" } else if md.file_type().is_symlink() { "symlink" } else { "non-directory" },
            md.uid(),
            md.permissions().mode() & 0o7777
        ));
    }
    Ok(dir)
}

/// Opens a new description of a recreated nameless inode.
pub fn reopen_ghost(ghosts: &HashMap<u32, OwnedFd>, id: u32, flags: u32) -> std::io::Result<OwnedFd> {
    let g = ghosts.get(&id).ok_or_else(|| std::io::Error::other(format!("object {id} was not recreated")))?;
    // O_NOFOLLOW (an open-time flag fdinfo still shows) would refuse the /proc link
    open_path(&format!("/proc/self/fd/{}", g.as_raw_fd()), flags & !(libc::O_NOFOLLOW as u32), 0)
}

/// Runs `f` in the network namespace `ns` was at dump time (its new incarnation in
/// `netns`; 0 = ours): sockets are created where they lived.
fn in_socket_ns<T: Send>(pid: i32, ns: u64, netns: &HashMap<u64, OwnedFd>, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let nsf = match ns {
        0 => None,
        _ => Some(netns.get(&ns).ok_or_else(|| Error::RestoreStep {
            pid,
            step: "opening files".into(),
            why: format!("a socket of network namespace net:[{ns}], which no process of the image is in"),
        })?),
    };
    crate::ns::in_ns_opt(pid, nsf.map(|f| f.as_fd()), "net", libc::CLONE_NEWNET, f)
}

/// Opens (or creates) every object the process's fds refer to, with offsets and flags
/// set, in the restorer. Pipes get their buffered bytes back.
pub fn open_fd_objects(
    m: &stasis_image::Manifest,
    ghosts: &HashMap<u32, OwnedFd>,
    inherit: &external::Inherited,
    netns: &HashMap<u64, OwnedFd>,
    tcp_close: bool,
) -> Result<Opened> {
    let mut opened = Opened::default();
    let mut pipes: HashMap<u32, (Option<OwnedFd>, Option<OwnedFd>)> = HashMap::new();
    let mut unix_made = fdkinds::unix::Made::default();
    let mut inet_made: HashMap<u32, OwnedFd> = HashMap::new();
    let mut fifo_held: HashMap<u32, usize> = HashMap::new();
    let mut memfds_used = std::collections::HashSet::new();
    let mut pipe_again: HashMap<u32, (Option<OwnedFd>, Option<OwnedFd>)> = HashMap::new();
    let pid = m.process.pid;
    let step = |why: String| Error::RestoreStep { pid, step: "opening files".into(), why };
    for id in fdkinds::unix::abstract_pairs(&m.objects) {
        let Some((o, u)) = m.object(id).and_then(|o| Some((o, o.unix()?))) else { continue };
        let made = &mut unix_made;
        in_socket_ns(pid, o.net_ns, netns, || fdkinds::unix::premake_pair(pid, &m.objects, u, made))?;
    }
    // every fd of the tree, then the descriptions only in flight in unix socket queues
    // (SCM_RIGHTS): opened here, sent by requeue_deferred, closed here afterwards
    let in_flight: Vec<Fd> =
        fdkinds::unix::in_flight_objects(&m.objects).into_iter().map(|object_id| Fd { fd: -1, object_id, cloexec: true }).collect();
    // and the descriptions through which session leaders take their terminal (crate::tty)
    let cttys: Vec<(i32, Fd)> = m.processes.iter().filter(|p| p.ctty != 0).map(|p| (p.pid, Fd { fd: -1, object_id: p.ctty, cloexec: true })).collect();
    let all = m
        .processes
        .iter()
        .flat_map(|p| p.fds.iter().map(move |f| (p.pid, f)))
        .chain(in_flight.iter().map(|f| (pid, f)))
        .chain(cttys.iter().map(|(p, f)| (*p, f)));
    for (owner, fd) in all {
        if opened.by_object.contains_key(&fd.object_id) {
            continue;
        }
        let o = m.object(fd.object_id).ok_or_else(|| step(format!("fd {} refers to missing object {}", fd.fd, fd.object_id)))?;
        if o.file().is_some_and(|f| f.in_proc) {
            continue; // opened by the restored process itself (Step::ProcFiles)
        }
        if fdkinds::is_late(o) {
            continue; // made inside its process once the tree exists (Step::LateFds)
        }
        match &o.kind {
            Some(Kind::File(f)) => {
                let memfd = m.object(f.ghost_id).and_then(|o| o.ghost()).is_some_and(|g| !g.memfd_name.is_empty() && g.external.is_empty());
                let owned = if memfd && f.flags & libc::O_ACCMODE as u32 == libc::O_RDWR as u32 && memfds_used.insert(f.ghost_id) {
                    // The memfd_create description itself (shared, not reopened): an open
                    // through /proc counts as a writer, and exec of the memfd would then
                    // fail with ETXTBSY, as it does for the original only in that case.
                    let g = ghosts.get(&f.ghost_id).ok_or_else(|| step(format!("memfd object {} was not recreated", f.ghost_id)))?;
                    let d = g.try_clone().map_err(|e| step(format!("dup of memfd {} for fd {}: {e}", f.path, fd.fd)))?;
                    let settable = (libc::O_APPEND | libc::O_NONBLOCK | libc::O_NOATIME | libc::O_DIRECT) as u32;
                    sys::fcntl(d.as_raw_fd(), libc::F_SETFL, (f.flags & settable) as i64)
                        .map_err(|e| step(format!("flags of memfd {} for fd {}: {e}", f.path, fd.fd)))?;
                    d
                } else if f.ghost_id != 0 {
                    reopen_ghost(ghosts, f.ghost_id, f.flags)
                        .map_err(|e| step(format!("reopening {} for fd {}: {e}", f.path, fd.fd)))?
                } else {
                    open_named(&f.path, f.flags, f.mode).map_err(|e| match e {
                        Ok(why) => Error::RestoreRefused(format!("fd {} of pid {owner}: {why}", fd.fd)),
                        Err(e) => step(format!("opening {} for fd {}: {e}", f.path, fd.fd)),
                    })?
                };
                if fdkinds::opath::is_opath(f.flags) {
                    fdkinds::opath::check_opened(f, &owned).map_err(|why| Error::RestoreRefused(format!("fd {} (O_PATH): {why}", fd.fd)))?;
                }
                if f.pos != 0 {
                    sys::lseek(owned.as_raw_fd(), f.pos as i64, libc::SEEK_SET)
                        .map_err(|e| step(format!("seeking {} to {} for fd {}: {e}", f.path, f.pos, fd.fd)))?;
                }
                opened.by_object.insert(fd.object_id, owned);
            }
            Some(Kind::PipeEnd(end)) => {
                let ends = match pipes.get_mut(&end.pipe_id) {
                    Some(e) => e,
                    None => {
                        let p = m
                            .object(end.pipe_id)
                            .and_then(|o| o.pipe())
                            .ok_or_else(|| step(format!("fd {} refers to a missing pipe", fd.fd)))?;
                        if !p.external.is_empty() {
                            let src = inherit.fd(&external::pipe_name(p.ino));
                            let owned = inherit_pipe(fd.fd, src, end.write_end, &p.external)?;
                            opened.by_object.insert(fd.object_id, owned);
                            continue;
                        }
                        let (r, w) = sys::pipe2(libc::O_CLOEXEC).map_err(|e| step(format!("pipe2: {e}")))?;
                        if p.capacity > 0 {
                            let _ = sys::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, p.capacity as i64);
                        }
                        refill_pipe(&w, p).map_err(|e| step(format!("refilling pipe of fd {}: {e}", fd.fd)))?;
                        let r = if p.read_closed { None } else { Some(r) };
                        let w = if p.write_closed { None } else { Some(w) };
                        // a copy of each end, for more descriptions of it (below)
                        let again = (
                            r.as_ref().and_then(|f| f.try_clone().ok()),
                            w.as_ref().and_then(|f| f.try_clone().ok()),
                        );
                        pipe_again.insert(end.pipe_id, again);
                        pipes.insert(end.pipe_id, (r, w));
                        pipes.get_mut(&end.pipe_id).unwrap()
                    }
                };
                // The first description of each end is pipe2's; a later one (opened
                // through /proc/PID/fd/N: a description of its own, with its own flags)
                // is a new open of /proc/self/fd of that end (non-blocking: a FIFO open
                // never waits for the other side).
                let taken = if end.write_end { ends.1.take() } else { ends.0.take() };
                let owned = match taken {
                    Some(f) => f,
                    None => {
                        let again = pipe_again.get(&end.pipe_id).and_then(|(r, w)| if end.write_end { w.as_ref() } else { r.as_ref() });
                        let src = again.ok_or_else(|| step(format!("fd {}: a second open description of a closed pipe end", fd.fd)))?;
                        let acc = if end.write_end { libc::O_WRONLY } else { libc::O_RDONLY };
                        open_path(&format!("/proc/self/fd/{}", src.as_raw_fd()), (acc | libc::O_NONBLOCK) as u32, 0)
                            .map_err(|e| step(format!("fd {}: opening another description of a pipe end: {e}", fd.fd)))?
                    }
                };
                sys::fcntl(owned.as_raw_fd(), libc::F_SETFL, (end.flags & (libc::O_NONBLOCK | libc::O_DIRECT) as u32) as i64)
                    .map_err(|e| step(format!("fd {}: flags of a pipe end: {e}", fd.fd)))?;
                opened.by_object.insert(fd.object_id, owned);
            }
            Some(Kind::FifoFd(ff)) => {
                let fifo = m
                    .object(ff.fifo_id)
                    .and_then(|o| o.fifo())
                    .ok_or_else(|| step(format!("fd {} refers to a missing named FIFO", fd.fd)))?;
                if !fifo_held.contains_key(&ff.fifo_id) {
                    let holder = open_fifo(owner, fifo, fd.fd)?;
                    opened.keep.push(holder);
                    fifo_held.insert(ff.fifo_id, opened.keep.len() - 1);
                }
                // With our O_RDWR description open, no access mode blocks or fails with ENXIO.
                // Opened through it, not by path again: the same FIFO open_fifo checked.
                let acc = ff.flags & libc::O_ACCMODE as u32;
                let via = format!("/proc/self/fd/{}", opened.keep[fifo_held[&ff.fifo_id]].as_raw_fd());
                let f = open_path(&via, acc | libc::O_NONBLOCK as u32, 0)
                    .map_err(|e| step(format!("opening named FIFO {} for fd {}: {e}", fifo.path, fd.fd)))?;
                sys::fcntl(f.as_raw_fd(), libc::F_SETFL, (ff.flags & !(libc::O_ACCMODE as u32)) as i64)
                    .map_err(|e| step(format!("setting flags {} of named FIFO {} (fd {}): {e}", fdkinds::open_flags(ff.flags), fifo.path, fd.fd)))?;
                opened.by_object.insert(fd.object_id, f);
            }
            Some(Kind::Inet(i)) if !tcp_close && (i.accept_on != 0 || !i.waiting.is_empty()) => {
                // a listener and the clients of the tree waiting in its accept queue,
                // made together (fdkinds::inet::waiting)
                if !inet_made.contains_key(&fd.object_id) {
                    let lid = if i.accept_on != 0 { i.accept_on } else { fd.object_id };
                    let open = || Ok(fdkinds::inet::waiting::open_queue(&m.objects, lid));
                    let made = in_socket_ns(pid, o.net_ns, netns, open)?.map_err(|e| step(format!("fd {}: {}: {e}", fd.fd, fdkinds::inet::describe(i))))?;
                    inet_made.extend(made);
                }
                let s = inet_made.remove(&fd.object_id).ok_or_else(|| step(format!("fd {}: TCP socket object {} was not made with its listener", fd.fd, fd.object_id)))?;
                opened.by_object.insert(fd.object_id, s);
            }
            Some(Kind::Inet(i)) => {
                let open = || Ok(fdkinds::inet::open(i, tcp_close));
                let s = in_socket_ns(pid, o.net_ns, netns, open)?.map_err(|e| step(format!("fd {}: {}: {e}", fd.fd, fdkinds::inet::describe(i))))?;
                opened.by_object.insert(fd.object_id, s);
            }
            Some(Kind::Netlink(n)) => {
                let open = || Ok(fdkinds::netlink::open(n));
                let s = in_socket_ns(pid, o.net_ns, netns, open)?
                    .map_err(|e| step(format!("fd {}: netlink socket ({}): {e}", fd.fd, fdkinds::netlink::protocol_name(n.protocol))))?;
                opened.by_object.insert(fd.object_id, s);
            }
            Some(Kind::Packet(p)) => {
                let open = || Ok(fdkinds::packet::open(p, o.net_ns != 0));
                let s = in_socket_ns(pid, o.net_ns, netns, open)?.map_err(|e| step(format!("fd {}: packet socket: {e}", fd.fd)))?;
                opened.by_object.insert(fd.object_id, s);
            }
            Some(Kind::Unix(u)) => {
                let made = &mut unix_made;
                let open = || fdkinds::unix::open_end(owner, fd.fd, &m.objects, u, made, inherit);
                let s = in_socket_ns(pid, o.net_ns, netns, open)?;
                opened.by_object.insert(fd.object_id, s);
            }
            Some(Kind::TtyFd(d)) => {
                let t = m.object(d.tty_id).and_then(|o| o.tty()).ok_or_else(|| step(format!("fd {}: a terminal without its terminal object", fd.fd)))?;
                if t.device {
                    let f = crate::tty::open_device(t, d).map_err(|e| step(format!("fd {}: {e}", fd.fd)))?;
                    opened.by_object.insert(fd.object_id, f);
                    continue;
                }
                if t.external {
                    let f = crate::tty::open_shell_terminal(d).map_err(|e| step(format!("fd {} (was {}): {e}", fd.fd, t.path)))?;
                    opened.by_object.insert(fd.object_id, f);
                    continue;
                }
                // the pair and every description of it at once
                let descs: Vec<(u32, &TtyFdObj)> =
                    m.objects.iter().filter_map(|o| Some((o.id, o.tty_fd()?))).filter(|(_, x)| x.tty_id == d.tty_id).collect();
                let made = crate::tty::open_pty(t, &descs).map_err(|e| step(format!("fd {}: pty (was {}): {e}", fd.fd, t.path)))?;
                opened.by_object.extend(made);
            }
            Some(Kind::Eventfd(_) | Kind::Timerfd(_) | Kind::Signalfd(_) | Kind::Epoll(_) | Kind::Inotify(_) | Kind::Pidfd(_) | Kind::NsFd(_) | Kind::Fanotify(_) | Kind::Mqueue(_)) => {
                let r = fdkinds::open(o).ok_or_else(|| step(format!("fd {}: object {} is not an fd kind of fdkinds", fd.fd, fd.object_id)))?;
                opened.by_object.insert(fd.object_id, r.map_err(|e| step(format!("fd {}: {e}", fd.fd)))?);
            }
            Some(stasis_image::not_fd_kinds!()) => {
                return Err(step(format!("fd {}: object {} is a {} object, not an open file", fd.fd, fd.object_id, o.kind_name())));
            }
            None => {
                return Err(step(format!("fd {}: object {} has no kind this stasis knows", fd.fd, fd.object_id)));
            }
        }
    }
    // packet sockets are bound last: none receives while the others are set up (a
    // ring's head is moved with frames over lo, see fdkinds::packet)
    let mut packets: Vec<(u32, &Object, &stasis_image::model::PacketObj)> =
        opened.by_object.keys().filter_map(|id| m.object(*id).and_then(|o| Some((*id, o, o.packet()?)))).collect();
    packets.sort_by_key(|x| x.0);
    for (id, o, p) in packets {
        let s = &opened.by_object[&id];
        in_socket_ns(pid, o.net_ns, netns, || Ok(fdkinds::packet::start(p, s)))?
            .map_err(|e| step(format!("packet socket (object {id}): {e}")))?;
    }
    let run_in_ns = |o: &Object, f: &mut (dyn FnMut() -> Result<()> + Send)| in_socket_ns(pid, o.net_ns, netns, f);
    opened.late = fdkinds::unix::requeue_deferred(pid, &m.objects, &opened.by_object, &mut unix_made, &run_in_ns)?;
    for ns in opened.late.namespaces(&m.objects) {
        if let (false, Some(f)) = (opened.late.netns.contains_key(&ns), netns.get(&ns)) {
            let f = f.try_clone().map_err(|e| step(format!("keeping network namespace net:[{ns}]: {e}")))?;
            opened.late.netns.insert(ns, f);
        }
    }
    fdkinds::inet::finish_restore().map_err(|e| step(format!("leaving TCP repair mode: {e}")))?;
    Ok(opened)
}

/// Once every process exists: the unix socket queues that carry credentials
/// (`fdkinds::unix::requeue_late`), in their network namespaces.
pub fn requeue_late(m: &stasis_image::Manifest, late: &mut fdkinds::unix::Late) -> Result<()> {
    let pid = m.process.pid;
    let netns = std::mem::take(&mut late.netns);
    let run_in_ns = |o: &Object, f: &mut (dyn FnMut() -> Result<()> + Send)| in_socket_ns(pid, o.net_ns, &netns, f);
    fdkinds::unix::requeue_late(pid, &m.objects, late, &run_in_ns)
}

/// Opens named FIFO `f` O_RDWR (which never blocks) and puts back the bytes that were
/// buffered in it. Nothing is created at the path, a symbolic link there is not
/// followed (the dump recorded the FIFO's real path; a link could lead to a FIFO of
/// someone else's), and what was opened must be a FIFO (a file swapped in meanwhile
/// never gets the bytes). Refuses when the FIFO already holds bytes although nobody
/// outside the tree had it open at dump time.
fn open_fifo(pid: i32, f: &FifoObj, fd: i32) -> Result<OwnedFd> {
    use std::os::unix::fs::FileTypeExt;
    let what = format!("named FIFO {} (fd {fd} of pid {pid})", f.path);
    if f.deleted {
        let h = private_fifo(f).map_err(|why| Error::RestoreStep { pid, step: format!("recreating removed {what}"), why })?;
        return refill_fifo(pid, &what, f, h);
    }
    let symlink = || Error::RestoreRefused(format!("{what}: the path is a symbolic link now (not followed)"));
    match std::fs::symlink_metadata(&f.path) {
        Ok(md) if md.file_type().is_fifo() => {}
        Ok(md) if md.file_type().is_symlink() => return Err(symlink()),
        Ok(_) => return Err(Error::RestoreRefused(format!("{what}: the path is no longer a FIFO"))),
        Err(e) => return Err(Error::RestoreRefused(format!("{what} is missing: {e}; recreate it with mkfifo"))),
    }
    let h = open_path(&f.path, (libc::O_RDWR | libc::O_NONBLOCK | libc::O_NOFOLLOW) as u32, 0)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => symlink(),
            _ => Error::RestoreRefused(format!("{what}: cannot open it: {e}")),
        })?;
    if !File::from(h.try_clone().map_err(|e| Error::RestoreRefused(format!("{what}: dup: {e}")))?)
        .metadata()
        .is_ok_and(|md| md.file_type().is_fifo())
    {
        return Err(Error::RestoreRefused(format!("{what}: the path is no longer a FIFO")));
    }
    if !f.external.is_empty() {
        return Ok(h); // its bytes were left with the outside process
    }
    let now = sys::inq(h.as_fd()).unwrap_or(0);
    if now > 0 {
        return Err(Error::RestoreRefused(format!(
            "{what} already holds {now} bytes (another process has it open); the image's {} bytes would be mixed with them",
            f.data.len()
        )));
    }
    refill_fifo(pid, &what, f, h)
}

/// Puts the image's bytes back into FIFO `h` (an O_RDWR description).
fn refill_fifo(pid: i32, what: &str, f: &FifoObj, h: OwnedFd) -> Result<OwnedFd> {
    let step = |why: String| Error::RestoreStep { pid, step: format!("refilling {what}"), why };
    if f.capacity > 0 {
        let _ = sys::fcntl(h.as_raw_fd(), libc::F_SETPIPE_SZ, f.capacity as i64);
    }
    let mut off = 0;
    while off < f.data.len() {
        off += sys::write_fd(h.as_fd(), &f.data[off..]).map_err(|e| step(format!("at byte {off} of {}: {e}", f.data.len())))?;
    }
    Ok(h)
}

/// An fd that was one end of a pipe to another process: take the restorer's fd `src`
/// (`--inherit-fd`), or else the same fd of this restorer; it must be a pipe end of the
/// same direction.
fn inherit_pipe(fd: i32, src: Option<i32>, write_end: bool, what: &str) -> Result<OwnedFd> {
    let refuse = |why: &str| {
        Error::RestoreRefused(match src {
            Some(s) => format!("fd {fd} was a pipe to another process ({what}); fd {s} given by --inherit-fd: {why}"),
            None => format!(
                "fd {fd} was a pipe to another process ({what}); {why}: run `stasis restore` with fd {fd} connected \
                 to a pipe to hand one over, or name another fd with --inherit-fd FD:{}",
                what.split(' ').next().unwrap_or("pipe:[INODE]")
            ),
        })
    };
    let fd = src.unwrap_or(fd);
    let md = std::fs::metadata(format!("/proc/self/fd/{fd}")).map_err(|_| refuse("this restorer has no such fd"))?;
    if !md.file_type().is_fifo() {
        return Err(refuse("this restorer's fd is not a pipe"));
    }
    let fl = sys::fcntl(fd, libc::F_GETFL, 0).map_err(|_| refuse("cannot read its flags"))? as i32 & libc::O_ACCMODE;
    let ok = if write_end { fl != libc::O_RDONLY } else { fl != libc::O_WRONLY };
    if !ok {
        return Err(refuse("this restorer's fd is the other end"));
    }
    sys::dup_raw(fd).map_err(|e| refuse(&format!("dup: {e}")))
}

/// Opens a mapped file for mmap in the new process.
pub fn open_mapped(o: &MappedFileObj, ghosts: &HashMap<u32, OwnedFd>) -> std::io::Result<OwnedFd> {
    let fl = if o.writable { libc::O_RDWR } else { libc::O_RDONLY };
    if o.ghost_id != 0 {
        return reopen_ghost(ghosts, o.ghost_id, fl as u32);
    }
    open_path(&o.path, fl as u32, 0)
}

