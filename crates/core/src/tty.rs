//! Terminals: pseudo-terminal pairs of the tree, the controlling terminal of each session
//! and its foreground process group, and the terminal outside the tree of a shell job.
//!
//! Dump: every fd on a tty device comes here (`dump_fd`): the pty master (/dev/ptmx,
//! `tty-index` of its fdinfo), a slave (/dev/pts/N) or /dev/tty (the process's controlling
//! terminal). One `TtyObj` per terminal, one `TtyFdObj` per open description. Once the
//! whole tree is collected (`finish`), a pty whose master the tree holds gets its state
//! read through our pidfd_getfd copies: termios (TCGETS2), window size, packet mode, slave
//! lock, exclusive mode, and both queues. The queues cannot be peeked: they are read and
//! put back at once with TIOCSTI (synchronous, through the line discipline, with a termios
//! that only keeps ICANON so nothing is echoed, translated or signalled); the slave's is
//! read with ICANON off so a partial line comes too. A terminal whose master is outside
//! the tree is refused, unless it is the controlling terminal of the root's session
//! (outside the tree) and `--shell-job` was given: then it is recorded as external.
//! Other tty devices (consoles, virtual consoles, serial lines) are refused.
//!
//! Restore: a new pair from /dev/ptmx (a new index: the old one may be taken, and the
//! host's devpts is shared), unlocked, its state set back (queues with TIOCSTI), each
//! description a new open of the slave (TIOCGPTPEER; /dev/tty descriptions too), then
//! packet mode, exclusive mode and the lock. A session leader takes its controlling
//! terminal with TIOCSCTTY right after setsid() (spawn.rs), and sets the foreground group
//! (TIOCSPGRP, injected) once every group exists. An external terminal is the restorer's
//! stdin terminal (`restore --shell-job`): the tree joins the restorer's session, and the
//! restorer makes the saved foreground group the terminal's.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use stasis_image::model::*;
use stasis_sys::sys;
use tracing::{debug, warn};

use crate::error::{Ctx, Error, Result};
use crate::objects::ObjectTable;
use crate::procfs;

/// `TtyFdObj.side`.
pub const MASTER: u32 = 1;
pub const SLAVE: u32 = 2;
pub const CURRENT: u32 = 3;
/// A terminal device that is no pty (console, virtual console, serial line).
pub const DEVICE: u32 = 4;

/// Largest queue saved (the line discipline holds 4 KiB).
pub const MAX_QUEUE: usize = 64 << 10;
/// What a line discipline's buffer holds (N_TTY_BUF_SIZE - 1).
pub const LDISC_MAX: usize = 4095;
/// NCCS of struct termios2.
pub const NCCS: usize = 19;

/// A terminal seen in the tree.
struct Seen {
    tty_id: u32,
    index: i32,
    rdev: u64,
    path: String,
    master: Option<(i32, i32)>,
    slave: Option<(i32, i32)>,
}

/// The terminals of the tree being dumped.
#[derive(Default)]
pub struct TtyState {
    seen: Vec<Seen>,
}

impl TtyState {
    /// The /dev/pts paths of the ptys whose master the tree holds.
    pub fn master_paths(&self) -> std::collections::HashSet<String> {
        self.seen.iter().filter(|s| s.master.is_some()).map(|s| s.path.clone()).collect()
    }
}

fn is_pts_major(major: u32) -> bool {
    (136..=143).contains(&major)
}

/// Whether a character device is a terminal of any kind.
pub fn is_tty(rdev: u64) -> bool {
    matches!(libc::major(rdev), 4 | 5 | 136..=143)
}

/// The slave of pty index `index` in the host's devpts: its path and device number.
fn pts(index: i32) -> Option<(String, u64)> {
    let path = format!("/dev/pts/{index}");
    let md = std::fs::metadata(&path).ok()?;
    Some((path, md.rdev()))
}

/// A /proc/PID/stat tty_nr (the kernel's encoding) as a dev_t.
fn tty_nr_dev(nr: u64) -> u64 {
    let nr = nr as u32;
    let major = (nr >> 8) & 0xfff;
    let minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
    libc::makedev(major, minor)
}

/// Dump side: an fd on a tty device → its `TtyFdObj` (and the `TtyObj` of the terminal).
#[allow(clippy::too_many_arguments)]
pub fn dump_fd(pid: i32, fd: i32, link: &str, md: &std::fs::Metadata, flags: u32, fdinfo: &str, objs: &mut ObjectTable, st: &mut TtyState) -> Result<u32> {
    let rdev = md.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let unsupported = |why: String| Error::Unsupported { pid, what: format!("fd {fd} is {why}") };
    let (side, index, path, srdev) = if major == 5 && minor == 2 {
        let index: i32 = crate::fdkinds::field(fdinfo, "tty-index")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| unsupported(format!("a pty master ({link}) without a tty-index in its fdinfo")))?;
        let (path, srdev) = pts(index).ok_or_else(|| unsupported(format!("a pty master ({link}) of index {index}, which /dev/pts does not show (a devpts instance of its own: not supported)")))?;
        (MASTER, index, path, srdev)
    } else if is_pts_major(major) {
        let index = link.strip_prefix("/dev/pts/").and_then(|n| n.parse::<i32>().ok());
        match index.and_then(|i| pts(i).map(|p| (i, p))) {
            Some((i, (path, r))) if r == rdev => (SLAVE, i, path, r),
            _ => return Err(unsupported(format!("a pty slave {link} ({major}:{minor}) of a devpts instance other than /dev/pts: not supported"))),
        }
    } else if major == 5 && minor == 0 {
        // /dev/tty: the controlling terminal of the process (the one it opened it with)
        let sf = procfs::stat_fields(pid).ctx(pid, || "reading /proc/PID/stat".into())?;
        let ctty = tty_nr_dev(procfs::stat_num(&sf, 7));
        let found = (libc::major(ctty) == 136).then(|| libc::minor(ctty) as i32).and_then(|i| pts(i).filter(|p| p.1 == ctty).map(|p| (i, p)));
        match found {
            Some((i, (path, r))) => (CURRENT, i, path, r),
            None => {
                return Err(unsupported(format!(
                    "/dev/tty, and the process's controlling terminal ({}:{}) is not a pseudo-terminal of /dev/pts: not supported",
                    libc::major(ctty),
                    libc::minor(ctty)
                )))
            }
        }
    } else if let Some(path) = device_path(rdev) {
        return dump_device(pid, fd, &path, rdev, flags, objs);
    } else {
        return Err(unsupported(format!(
            "terminal device {link} ({major}:{minor}): only pseudo-terminals, the console, virtual consoles and serial lines are supported"
        )));
    };
    // O_LARGEFILE is implied (every open of ours sets it)
    let flags = flags & !crate::fdkinds::KERNEL_O_LARGEFILE;
    if let Some(why) = crate::fdkinds::unkept_flags(flags) {
        return Err(unsupported(format!("terminal {link} {why}")));
    }
    let tty_id = objs.intern(format!("tty:{index}"), |_| Object {
        kind: Some(Kind::Tty(TtyObj { index, path: path.clone(), ..Default::default() })),
        ..Default::default()
    });
    let pos = match st.seen.iter().position(|s| s.tty_id == tty_id) {
        Some(p) => p,
        None => {
            st.seen.push(Seen { tty_id, index, rdev: srdev, path, master: None, slave: None });
            st.seen.len() - 1
        }
    };
    let s = &mut st.seen[pos];
    if side == MASTER {
        s.master.get_or_insert((pid, fd));
    } else {
        s.slave.get_or_insert((pid, fd));
    }
    Ok(objs.intern(format!("tty-fd:{pid}:{fd}"), |_| Object {
        kind: Some(Kind::TtyFd(TtyFdObj { tty_id, side, flags })),
        ..Default::default()
    }))
}

/// The path of terminal device `rdev` when it is one restore opens again by path:
/// /dev/console (5:1), a virtual console /dev/ttyN (4:0-63), a serial line /dev/ttySN
/// (4:64-255).
/// The pty slave fds of `pid` that fdinfo shows close-on-exec but are not: a slave
/// opened with TIOCGPTPEER and O_CLOEXEC (systemd's `pty_open_peer`, an earlier restore)
/// keeps O_CLOEXEC in its file flags, which fdinfo reports whatever the fd flag is
/// now (a dup2 onto 0-2 included). Asked from inside (F_GETFD) for those only.
pub fn slaves_not_cloexec(pid: i32, par: &crate::parasite::Parasite) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for fd in procfs::fds(pid).ctx(pid, || "listing /proc/PID/fd".into())? {
        let Ok(link) = procfs::readlink(&format!("{}/fd/{fd}", procfs::dir(pid))) else { continue };
        if !link.starts_with("/dev/pts/") || procfs::fdinfo(pid, fd).is_ok_and(|i| i.flags & libc::O_CLOEXEC as u32 == 0) {
            continue;
        }
        if par.call(pid, libc::SYS_fcntl, &[fd as u64, libc::F_GETFD as u64])? & libc::FD_CLOEXEC as u64 == 0 {
            out.push(fd);
        }
    }
    Ok(out)
}

pub fn device_path(rdev: u64) -> Option<String> {
    match (libc::major(rdev), libc::minor(rdev)) {
        (5, 1) => Some("/dev/console".into()),
        (4, n @ 0..=63) => Some(format!("/dev/tty{n}")),
        (4, n @ 64..=255) => Some(format!("/dev/ttyS{}", n - 64)),
        _ => None,
    }
}

/// An fd of a terminal device (`device_path`): its path, device number and termios
/// (read through a new open of /proc/PID/fd/N, non-blocking: a serial line without
/// carrier never waits), one object per device; the description keeps its flags.
fn dump_device(pid: i32, fd: i32, path: &str, rdev: u64, flags: u32, objs: &mut ObjectTable) -> Result<u32> {
    let flags = flags & !crate::fdkinds::KERNEL_O_LARGEFILE;
    if let Some(why) = crate::fdkinds::unkept_flags(flags) {
        return Err(Error::Unsupported { pid, what: format!("fd {fd} is terminal {path} {why}") });
    }
    let via = CString::new(format!("{}/fd/{fd}", crate::procfs::dir(pid))).unwrap();
    let f = sys::open(&via, libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC, 0).ctx(pid, || format!("opening terminal {path} (fd {fd}) to read its settings"))?;
    let t = sys::tcgets2(f.as_fd()).ctx(pid, || format!("TCGETS2 of terminal {path} (fd {fd})"))?;
    let tty_id = objs.intern(format!("tty-dev:{rdev}"), |_| Object {
        kind: Some(Kind::Tty(TtyObj {
            index: -1,
            device: true,
            rdev,
            path: path.to_string(),
            ..with_termios(&t)
        })),
        ..Default::default()
    });
    Ok(objs.intern(format!("tty-fd:{pid}:{fd}"), |_| Object {
        kind: Some(Kind::TtyFd(TtyFdObj { tty_id, side: DEVICE, flags })),
        ..Default::default()
    }))
}

/// Restore side: a new open description of terminal device `t` (by its path, checked to
/// be the same device) for description `d`. Its settings are the host's: compared with
/// the saved ones, a difference is a warning, nothing is changed.
pub fn open_device(t: &TtyObj, d: &TtyFdObj) -> std::result::Result<OwnedFd, String> {
    if device_path(t.rdev).as_deref() != Some(t.path.as_str()) {
        return Err(format!("{} is not the path of terminal device {}:{}", t.path, libc::major(t.rdev), libc::minor(t.rdev)));
    }
    let c = CString::new(t.path.clone()).map_err(|e| e.to_string())?;
    let acc = d.flags as i32 & libc::O_ACCMODE;
    let f = sys::open(&c, acc | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC, 0).map_err(|e| format!("opening {}: {e}", t.path))?;
    let md = std::fs::metadata(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f))).map_err(|e| format!("stat of {}: {e}", t.path))?;
    if !md.file_type().is_char_device() || md.rdev() != t.rdev {
        return Err(format!("{} is no longer terminal device {}:{}", t.path, libc::major(t.rdev), libc::minor(t.rdev)));
    }
    if crate::fdkinds::nonblock(d.flags) == 0 {
        sys::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_SETFL, 0).map_err(|e| format!("flags of {}: {e}", t.path))?;
    }
    let now = sys::tcgets2(f.as_fd()).map_err(|e| format!("TCGETS2 of {}: {e}", t.path))?;
    let saved = termios_of(t);
    if (now.c_iflag, now.c_oflag, now.c_cflag, now.c_lflag, now.c_cc, now.c_ispeed, now.c_ospeed)
        != (saved.c_iflag, saved.c_oflag, saved.c_cflag, saved.c_lflag, saved.c_cc, saved.c_ispeed, saved.c_ospeed)
    {
        warn!(path = t.path, "the terminal's settings (termios) differ from those at dump time; they are the host's and are left as they are");
    }
    Ok(f)
}

/// A pty whose master the tree holds and whose slave a process outside the tree holds
/// too (one that left the tree, e.g. a daemon started from a tmux pane that kept its
/// stdio): the restored pair is a new terminal, that process keeps the old one (hung up
/// once the dump kills the tree). A warning names it; the dump goes on (as killing the
/// tree would leave it too).
/// (`external::scan` finds them, `master_paths` says which.)
pub fn warn_outside_slaves(held: &HashMap<String, Vec<String>>) {
    for (link, who) in held {
        for w in who {
            warn!(
                "{link}, a terminal whose master the dumped tree holds, is also held by {w} outside the tree: \
                 the restored tree gets a new terminal, that process keeps the old one (hung up once the tree is gone)"
            );
        }
    }
}

/// Session and controlling terminal of a live process.
struct CttyOf {
    pid: i32,
    sid: i32,
    ctty: u64,
    tpgid: i32,
}

/// Once every process is collected: the state of every pty of the tree, the controlling
/// terminal of each session (`Process.ctty` of its leader) and its foreground group; a
/// terminal outside the tree is refused, or recorded as external with `shell_job`.
pub fn finish(procs: &mut [Process], objs: &mut ObjectTable, st: &TtyState, shell_job: bool) -> Result<()> {
    let mut cttys = Vec::new();
    for p in procs.iter().filter(|p| !p.zombie) {
        let sf = procfs::stat_fields(p.pid).ctx(p.pid, || "reading /proc/PID/stat".into())?;
        let nr = procfs::stat_num(&sf, 7);
        if nr == 0 {
            continue;
        }
        let tpgid = sf.get(8 - 3).and_then(|v| v.parse::<i32>().ok()).unwrap_or(-1);
        let a = p.attrs.clone().unwrap_or_default();
        cttys.push(CttyOf { pid: p.pid, sid: a.sid, ctty: tty_nr_dev(nr), tpgid });
    }
    let root_sid = procs.first().and_then(|p| p.attrs.as_ref()).map(|a| a.sid).unwrap_or(0);
    let groups: Vec<i32> = procs.iter().filter_map(|p| p.attrs.as_ref().map(|a| a.pgid)).collect();
    let in_tree_group = |g: i32| groups.contains(&g);
    let mut external: Option<u32> = None;
    for c in &cttys {
        let inside = st.seen.iter().find(|s| s.rdev == c.ctty && s.master.is_some());
        if inside.is_some() {
            continue;
        }
        let name = tty_name(c.ctty);
        let leader_inside = procs.iter().any(|p| p.pid == c.sid);
        if !shell_job {
            // refused below if an fd of the tree refers to it; the session link alone
            // is not kept (the tree joins the restorer's session, as any whose
            // session is outside it)
            if !st.seen.iter().any(|s| s.rdev == c.ctty) {
                warn!(pid = c.pid, "its controlling terminal {name} is outside the dumped tree and no fd of the tree refers to it: it is not kept (--shell-job would give it the restorer's)");
            }
            continue;
        }
        if c.sid != root_sid || leader_inside {
            return Err(Error::Unsupported {
                pid: c.pid,
                what: format!(
                    "its controlling terminal {name} is outside the dumped tree and belongs to session {}, not to the session \
                     outside the tree that --shell-job hands over (the root's)",
                    c.sid
                ),
            });
        }
        let fg = if in_tree_group(c.tpgid) { c.tpgid } else { 0 };
        let id = objs.intern(format!("tty-ext:{}", c.ctty), |_| Object {
            kind: Some(Kind::Tty(TtyObj { index: -1, external: true, path: name.clone(), session: c.sid, fg_pgrp: fg, ..Default::default() })),
            ..Default::default()
        });
        external = Some(id);
    }
    for s in &st.seen {
        if s.master.is_some() {
            continue;
        }
        let (pid, fd) = s.slave.expect("a terminal is seen through a master or a slave fd");
        let ours = cttys.iter().any(|c| c.ctty == s.rdev);
        match external.filter(|_| ours) {
            Some(ext) => {
                // the fds of the outside terminal refer to the external object
                let ext_path = s.path.clone();
                for o in objs.objects.iter_mut() {
                    if let Some(Kind::TtyFd(f)) = o.kind.as_mut() {
                        if f.tty_id == s.tty_id {
                            f.tty_id = ext;
                        }
                    }
                }
                if let Some(Kind::Tty(t)) = objs.get_mut(s.tty_id).and_then(|o| o.kind.as_mut()) {
                    // no fd refers to it any more: an empty leftover, marked external too
                    t.external = true;
                    t.path = ext_path;
                }
            }
            None => {
                let what = format!("fd {fd} is {}, a terminal whose master is outside the dumped tree", s.path);
                if ours && !shell_job {
                    // supported, with the option: no "not supported yet"
                    return Err(Error::Refused {
                        pid,
                        why: format!("{what} (the controlling terminal of the shell the tree was started from?): dump it with --shell-job (and restore with --shell-job)"),
                    });
                }
                return Err(Error::Unsupported { pid, what });
            }
        }
    }
    for s in st.seen.iter().filter(|s| s.master.is_some()) {
        let mut t = dump_pty(s)?;
        let sessions: Vec<&CttyOf> = cttys.iter().filter(|c| c.ctty == s.rdev).collect();
        if let Some(c) = sessions.first() {
            let Some(leader) = procs.iter().position(|p| p.pid == c.sid && !p.zombie) else {
                return Err(Error::Unsupported {
                    pid: c.pid,
                    what: format!("{} is the controlling terminal of session {}, whose leader is not in the dumped tree (exited?): not supported", s.path, c.sid),
                });
            };
            t.session = c.sid;
            t.fg_pgrp = if in_tree_group(c.tpgid) { c.tpgid } else { 0 };
            if t.fg_pgrp == 0 && c.tpgid > 0 {
                warn!(pid = c.pid, "the foreground group {} of {} is not in the dumped tree; restored without one", c.tpgid, s.path);
            }
            // a description of the slave for TIOCSCTTY: one of the tree's, or a new one
            let slave_desc = objs
                .objects
                .iter()
                .find(|o| o.tty_fd().is_some_and(|f| f.tty_id == s.tty_id && f.side != MASTER))
                .map(|o| o.id);
            let desc = match slave_desc {
                Some(id) => id,
                None => objs.intern(format!("tty-ctty:{}", s.index), |_| Object {
                    kind: Some(Kind::TtyFd(TtyFdObj { tty_id: s.tty_id, side: SLAVE, flags: libc::O_RDWR as u32 })),
                    ..Default::default()
                }),
            };
            procs[leader].ctty = desc;
        }
        let o = objs.get_mut(s.tty_id).and_then(|o| o.tty_mut()).expect("interned as a TtyObj");
        t.index = o.index;
        t.path = o.path.clone();
        *o = t;
    }
    Ok(())
}

/// A terminal's name for messages: /dev/pts/N, or major:minor.
fn tty_name(dev: u64) -> String {
    if libc::major(dev) == 136 {
        return format!("/dev/pts/{}", libc::minor(dev));
    }
    format!("terminal {}:{}", libc::major(dev), libc::minor(dev))
}

/// Reads the state of the pty `s` through copies of the tree's fds (the tree is frozen).
fn dump_pty(s: &Seen) -> Result<TtyObj> {
    let (mpid, mfd) = s.master.expect("dump_pty is called for a pty with its master in the tree");
    let pidfd = crate::procfs::pidfd(mpid).ctx(mpid, || "pidfd_open".into())?;
    let m = sys::pidfd_getfd(pidfd.as_fd(), mfd).ctx(mpid, || format!("pidfd_getfd of pty master fd {mfd}"))?;
    let what = format!("pty master fd {mfd} ({})", s.path);
    let t = sys::tcgets2(m.as_fd()).ctx(mpid, || format!("TCGETS2 of {what}"))?;
    if t.c_line != 0 {
        return Err(Error::Unsupported { pid: mpid, what: format!("fd {mfd} is the master of {} with line discipline {} (only N_TTY is supported)", s.path, t.c_line) });
    }
    let w = sys::get_winsize(m.as_fd()).ctx(mpid, || format!("TIOCGWINSZ of {what}"))?;
    let packet = sys::ioctl_get_int(m.as_fd(), libc::TIOCGPKT).ctx(mpid, || format!("TIOCGPKT of {what}"))? != 0;
    let locked = sys::ioctl_get_int(m.as_fd(), libc::TIOCGPTLCK).ctx(mpid, || format!("TIOCGPTLCK of {what}"))? != 0;
    let slave = match s.slave {
        Some((spid, sfd)) => {
            let pfd = crate::procfs::pidfd(spid).ctx(spid, || "pidfd_open".into())?;
            Some((spid, sys::pidfd_getfd(pfd.as_fd(), sfd).ctx(spid, || format!("pidfd_getfd of pty slave fd {sfd}"))?))
        }
        None => None,
    };
    let exclusive = match &slave {
        Some((spid, sd)) => sys::ioctl_get_int(sd.as_fd(), libc::TIOCGEXCL).ctx(*spid, || format!("TIOCGEXCL of {}", s.path))? != 0,
        None => false,
    };
    let master_data = drain_master(m.as_fd(), packet).ctx(mpid, || format!("reading the queue of {what}"))?;
    // put back at once: the tree (or a failed dump) runs on with it
    for &b in &master_data {
        sys::tiocsti(m.as_fd(), b).ctx(mpid, || format!("putting back the queue of {what} (TIOCSTI)"))?;
    }
    let slave_data = match &slave {
        Some((spid, sd)) => {
            let d = drain_slave(m.as_fd(), sd.as_fd(), &t).ctx(*spid, || format!("reading the input queue of {}", s.path))?;
            inject(m.as_fd(), sd.as_fd(), &d, &t).ctx(*spid, || format!("putting back the input queue of {} (TIOCSTI)", s.path))?;
            d
        }
        None => Vec::new(),
    };
    // what one line discipline holds (N_TTY_BUF_SIZE - 1): more was a writer blocked
    // on a full terminal, which a new pair cannot take back in (put back above as far
    // as it goes, for a tree that runs on)
    for (n, what) in [(master_data.len(), "output the master had not read"), (slave_data.len(), "input the slave had not read")] {
        if n > LDISC_MAX {
            return Err(Error::Unsupported { pid: mpid, what: format!("fd {mfd} is the master of {}, with {n} bytes of {what} (more than the {LDISC_MAX} a terminal holds): not supported", s.path) });
        }
    }
    debug!(path = s.path, master = master_data.len(), slave = slave_data.len(), packet, locked, exclusive, "pty");
    Ok(TtyObj {
        index: s.index,
        rows: w.ws_row as u32,
        cols: w.ws_col as u32,
        xpixel: w.ws_xpixel as u32,
        ypixel: w.ws_ypixel as u32,
        packet,
        locked,
        exclusive,
        master_data,
        slave_data,
        path: s.path.clone(),
        ..with_termios(&t)
    })
}

/// Reads what the master has to read (the slave side's output). In packet mode each
/// read starts with a status byte: TIOCPKT_DATA (0) before data is dropped; a pending
/// status alone (flow control, flush) is consumed and not kept.
fn drain_master(m: BorrowedFd<'_>, packet: bool) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4097];
    loop {
        let n = sys::ioctl_get_int(m, libc::FIONREAD)? as usize;
        if n == 0 {
            return Ok(out);
        }
        let want = (n + usize::from(packet)).min(buf.len());
        let r = sys::read_fd(m, &mut buf[..want])?;
        if r == 0 {
            return Ok(out);
        }
        let data = if packet { &buf[1..r] } else { &buf[..r] };
        if packet && buf[0] != 0 {
            debug!(status = buf[0], "pty packet-mode status byte not kept");
        }
        out.extend_from_slice(data);
        if out.len() > MAX_QUEUE {
            return Err(std::io::Error::other(format!("more than {MAX_QUEUE} bytes queued")));
        }
    }
}

/// Reads the slave's input queue, a partial line of canonical mode included: ICANON is
/// off while reading (VMIN 0: never blocks), `t` is set back after.
fn drain_slave(m: BorrowedFd<'_>, s: BorrowedFd<'_>, t: &sys::Termios2) -> std::io::Result<Vec<u8>> {
    let mut raw = *t;
    raw.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ECHONL);
    raw.c_cc[libc::VMIN] = 0;
    raw.c_cc[libc::VTIME] = 0;
    sys::tcsets2(m, &raw)?;
    let mut out = Vec::new();
    let r = (|| {
        let n = sys::ioctl_get_int(s, libc::FIONREAD)? as usize;
        if n > MAX_QUEUE {
            return Err(std::io::Error::other(format!("{n} bytes queued (more than {MAX_QUEUE})")));
        }
        out.resize(n, 0);
        let mut got = 0;
        while got < n {
            let k = sys::read_fd(s, &mut out[got..])?;
            if k == 0 {
                break;
            }
            got += k;
        }
        out.truncate(got);
        Ok(())
    })();
    sys::tcsets2(m, t)?;
    r.map(|_| out)
}

/// Puts `data` into the slave's input queue as it was: through its line discipline
/// (TIOCSTI, synchronous) under a termios that keeps only ICANON (so lines are delimited
/// as before and a partial line stays partial) with erase, kill and EOF disabled, no
/// echo, no signals, no input translation (flow control as it was); then sets `t`.
pub fn inject(m: BorrowedFd<'_>, s: BorrowedFd<'_>, data: &[u8], t: &sys::Termios2) -> std::io::Result<()> {
    if data.is_empty() {
        return sys::tcsets2(m, t);
    }
    let mut q = *t;
    // IXON and the start/stop characters stay as they are: a change of the flow-control
    // state would be reported to a packet-mode master (TIOCPKT_DOSTOP/NOSTOP)
    q.c_iflag &= libc::IUTF8 | libc::IXON | libc::IXOFF | libc::IXANY;
    q.c_lflag &= libc::ICANON;
    for c in [libc::VERASE, libc::VKILL, libc::VEOF] {
        q.c_cc[c] = 0; // _POSIX_VDISABLE
    }
    sys::tcsets2(m, &q)?;
    let r = data.iter().try_for_each(|&b| sys::tiocsti(s, b));
    sys::tcsets2(m, t)?;
    r
}

// ---------------------------------------------------------------- restore side

/// The termios of a saved terminal.
/// A terminal record holding termios `t` (the rest default): the inverse of `termios_of`.
fn with_termios(t: &sys::Termios2) -> TtyObj {
    TtyObj {
        iflag: t.c_iflag,
        oflag: t.c_oflag,
        cflag: t.c_cflag,
        lflag: t.c_lflag,
        line: t.c_line as u32,
        cc: t.c_cc.to_vec(),
        ispeed: t.c_ispeed,
        ospeed: t.c_ospeed,
        ..Default::default()
    }
}

fn termios_of(t: &TtyObj) -> sys::Termios2 {
    let mut cc = [0u8; NCCS];
    for (d, s) in cc.iter_mut().zip(&t.cc) {
        *d = *s;
    }
    sys::Termios2 {
        c_iflag: t.iflag,
        c_oflag: t.oflag,
        c_cflag: t.cflag,
        c_lflag: t.lflag,
        c_line: t.line as u8,
        c_cc: cc,
        c_ispeed: t.ispeed,
        c_ospeed: t.ospeed,
    }
}

/// A new pty pair with the state of `t`, and a new open description for each of `descs`
/// (object id, description) of it. Err: what failed.
pub fn open_pty(t: &TtyObj, descs: &[(u32, &TtyFdObj)]) -> std::result::Result<HashMap<u32, OwnedFd>, String> {
    let ptmx = CString::new("/dev/ptmx").unwrap();
    let m = sys::open(&ptmx, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC, 0).map_err(|e| format!("opening /dev/ptmx: {e}"))?;
    sys::ioctl_set_int(m.as_fd(), libc::TIOCSPTLCK, 0).map_err(|e| format!("unlocking the new pty (TIOCSPTLCK): {e}"))?;
    let ctl = sys::pty_peer(m.as_fd(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC).map_err(|e| format!("opening the new pty's slave (TIOCGPTPEER): {e}"))?;
    let w = sys::Winsize { ws_row: t.rows as u16, ws_col: t.cols as u16, ws_xpixel: t.xpixel as u16, ws_ypixel: t.ypixel as u16 };
    sys::set_winsize(m.as_fd(), &w).map_err(|e| format!("TIOCSWINSZ: {e}"))?;
    let tio = termios_of(t);
    inject(m.as_fd(), ctl.as_fd(), &t.slave_data, &tio).map_err(|e| format!("termios and input queue (TCSETS2, TIOCSTI): {e}"))?;
    for &b in &t.master_data {
        sys::tiocsti(m.as_fd(), b).map_err(|e| format!("refilling the master's queue (TIOCSTI): {e}"))?;
    }
    let mut out = HashMap::new();
    let mut master = Some(m.try_clone().map_err(|e| format!("dup: {e}"))?);
    for (id, d) in descs {
        let acc = d.flags as i32 & libc::O_ACCMODE;
        let f = if d.side == MASTER {
            master.take().ok_or_else(|| "two open descriptions of one pty master".to_string())?
        } else {
            sys::pty_peer(m.as_fd(), acc | libc::O_NOCTTY | libc::O_CLOEXEC).map_err(|e| format!("opening the new pty's slave (TIOCGPTPEER): {e}"))?
        };
        crate::fdkinds::apply_nonblock(&f, d.flags)?;
        out.insert(*id, f);
    }
    if t.packet {
        sys::ioctl_set_int(m.as_fd(), libc::TIOCPKT, 1).map_err(|e| format!("packet mode (TIOCPKT): {e}"))?;
    }
    if t.exclusive {
        sys::set_exclusive(ctl.as_fd(), true).map_err(|e| format!("exclusive mode (TIOCEXCL): {e}"))?;
    }
    if t.locked {
        sys::ioctl_set_int(m.as_fd(), libc::TIOCSPTLCK, 1).map_err(|e| format!("locking the slave (TIOCSPTLCK): {e}"))?;
    }
    let n = sys::ioctl_get_int(m.as_fd(), libc::TIOCGPTN).unwrap_or(-1);
    debug!(old = t.path, new = format!("/dev/pts/{n}"), "pty recreated");
    Ok(out)
}

/// `restore --shell-job`: the restorer's terminal (its stdin), which must be its
/// controlling terminal. Its device number.
pub fn shell_terminal() -> std::result::Result<u64, String> {
    let md = std::fs::metadata("/proc/self/fd/0").map_err(|e| format!("stdin: {e}"))?;
    if !md.file_type().is_char_device() || !is_tty(md.rdev()) {
        return Err("stdin is not a terminal".into());
    }
    let sf = procfs::stat_fields(sys::getpid()).map_err(|e| format!("/proc/self/stat: {e}"))?;
    let ctty = tty_nr_dev(procfs::stat_num(&sf, 7));
    if ctty != md.rdev() {
        return Err("stdin is a terminal, but not the controlling terminal of stasis's session".into());
    }
    Ok(md.rdev())
}


/// A new open description of the restorer's terminal (stdin), for a description of the
/// shell job's outside terminal.
pub fn open_shell_terminal(d: &TtyFdObj) -> std::result::Result<OwnedFd, String> {
    let c = CString::new("/proc/self/fd/0").unwrap();
    let acc = d.flags as i32 & libc::O_ACCMODE;
    let f = sys::open(&c, acc | libc::O_NOCTTY | libc::O_CLOEXEC, 0).map_err(|e| format!("reopening the restorer's terminal (stdin): {e}"))?;
    crate::fdkinds::apply_nonblock(&f, d.flags)?;
    Ok(f)
}

/// `restore --shell-job`, once every process exists: the saved foreground group gets
/// the restorer's terminal (stdin; SIGTTOU blocked, stasis may be in the background),
/// before any restored process runs (one reading it in the background would be
/// stopped). Dropped without `keep`: the terminal goes back to the group it had.
/// Waits for the restored root `pid` of a shell job that runs in the foreground
/// (`restore --shell-job` without --detach): stasis is the shell's job, the restored
/// tree its foreground group. When the restored process stops (^Z), stasis stops too
/// (SIGSTOP), so the shell sees its job stopped and takes its terminal back; when the
/// shell continues it (`fg`), the tree's group gets the terminal again and SIGCONT.
/// Returns the wait status of its end.
pub fn wait_foreground_job(pid: i32, m: &stasis_image::Manifest) -> std::io::Result<i32> {
    let fg = m.objects.iter().filter_map(|o| o.tty()).find(|t| t.external && t.fg_pgrp > 0).map(|t| t.fg_pgrp);
    loop {
        let st = sys::waitpid(pid, libc::__WALL | libc::WUNTRACED)?;
        if !libc::WIFSTOPPED(st) {
            return Ok(st);
        }
        debug!(pid, signal = libc::WSTOPSIG(st), "the restored job stopped: stopping with it");
        sys::kill(sys::getpid(), libc::SIGSTOP)?;
        // continued by the shell (fg or bg)
        if let Some(g) = fg {
            if sys::ioctl_get_int(std::io::stdin().as_fd(), libc::TIOCGPGRP).ok() == Some(sys::getpgrp()) {
                // in the foreground (fg): the job's group takes the terminal back
                let _ = sys::tcsetpgrp_quiet(std::io::stdin().as_fd(), g);
            }
            let _ = sys::kill(-g, libc::SIGCONT);
        } else {
            let _ = sys::kill(pid, libc::SIGCONT);
        }
    }
}

pub struct Foreground {
    old: Option<i32>,
}

impl Foreground {
    pub fn set(m: &stasis_image::Manifest) -> Foreground {
        let stdin = std::io::stdin();
        let mut old = None;
        for t in m.objects.iter().filter_map(|o| o.tty()).filter(|t| t.external && t.fg_pgrp > 0) {
            old = sys::ioctl_get_int(stdin.as_fd(), libc::TIOCGPGRP).ok();
            match sys::tcsetpgrp_quiet(stdin.as_fd(), t.fg_pgrp) {
                Ok(()) => debug!(pgrp = t.fg_pgrp, "foreground group of the restorer's terminal"),
                Err(e) => warn!("making process group {} the foreground group of the restorer's terminal: {e}", t.fg_pgrp),
            }
        }
        Foreground { old }
    }

    pub fn keep(mut self) {
        self.old = None;
    }
}

impl Drop for Foreground {
    fn drop(&mut self) {
        if let Some(g) = self.old {
            let _ = sys::tcsetpgrp_quiet(std::io::stdin().as_fd(), g);
        }
    }
}
