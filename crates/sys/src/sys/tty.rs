//! Terminals: termios, window size, pty pairs and the ioctls that read and set their
//! state (tty_ioctl(4)).

use super::*;

/// `struct termios2` (TCGETS2 / TCSETS2): flags, line discipline, control characters
/// and the speeds as numbers.
pub type Termios2 = libc::termios2;
/// `struct winsize` (TIOCGWINSZ / TIOCSWINSZ).
pub type Winsize = libc::winsize;

/// TCGETS2: the terminal's termios (on a pty master: its slave's).
pub fn tcgets2(fd: BorrowedFd<'_>) -> Result<Termios2> {
    // SAFETY: termios2 is plain integers and bytes: all-zero is a valid value.
    let mut t: Termios2 = unsafe { std::mem::zeroed() };
    // SAFETY: TCGETS2 writes one struct termios2 to the pointer.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCGETS2, &mut t as *mut Termios2) } as libc::c_long)?;
    Ok(t)
}

/// TCSETS2: sets the termios at once (TCSANOW).
pub fn tcsets2(fd: BorrowedFd<'_>, t: &Termios2) -> Result<()> {
    // SAFETY: TCSETS2 reads one struct termios2 from the pointer.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TCSETS2, t as *const Termios2) } as libc::c_long).map(drop)
}

pub fn get_winsize(fd: BorrowedFd<'_>) -> Result<Winsize> {
    let mut w = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one struct winsize to the pointer.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut w as *mut Winsize) } as libc::c_long)?;
    Ok(w)
}

pub fn set_winsize(fd: BorrowedFd<'_>, w: &Winsize) -> Result<()> {
    // SAFETY: TIOCSWINSZ reads one struct winsize from the pointer.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, w as *const Winsize) } as libc::c_long).map(drop)
}

/// An ioctl that writes one int (TIOCGPKT, TIOCGPTLCK, TIOCGEXCL, TIOCGPGRP, TIOCGSID,
/// TIOCGPTN, FIONREAD, TIOCOUTQ...).
pub fn ioctl_get_int(fd: BorrowedFd<'_>, req: libc::Ioctl) -> Result<i32> {
    let mut v: i32 = 0;
    // SAFETY: the requests callers pass write one int to the pointer.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut i32) } as libc::c_long)?;
    Ok(v)
}

/// An ioctl that reads one int through a pointer (TIOCPKT, TIOCSPTLCK, TIOCSPGRP).
pub fn ioctl_set_int(fd: BorrowedFd<'_>, req: libc::Ioctl, v: i32) -> Result<()> {
    // SAFETY: the requests callers pass read one int from the pointer.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), req, &v as *const i32) } as libc::c_long).map(drop)
}

/// TIOCEXCL (`on`) or TIOCNXCL: exclusive mode (further opens fail with EBUSY).
pub fn set_exclusive(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    let req = if on { libc::TIOCEXCL } else { libc::TIOCNXCL };
    // SAFETY: TIOCEXCL / TIOCNXCL take no argument.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), req) } as libc::c_long).map(drop)
}

/// TIOCGPTPEER: a new open description of the slave of pty master `master` (`flags`:
/// access mode, O_NOCTTY, O_NONBLOCK, O_CLOEXEC). O_CLOEXEC is not passed to the ioctl,
/// which would keep it in the description's file flags for good (fdinfo then shows it
/// whatever F_SETFD says later, and a dump of a process that inherited the fd takes it
/// for close-on-exec): the fd flag is set with F_SETFD instead.
pub fn pty_peer(master: BorrowedFd<'_>, flags: i32) -> Result<OwnedFd> {
    // SAFETY: TIOCGPTPEER takes its flags by value and returns a new fd.
    let fd = c(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, (flags & !libc::O_CLOEXEC) as libc::c_ulong) } as libc::c_long).map(owned)?;
    if flags & libc::O_CLOEXEC != 0 {
        // SAFETY: F_SETFD takes an integer; fd is ours.
        c(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } as libc::c_long)?;
    }
    Ok(fd)
}

/// TIOCSTI: `b` enters the terminal's input as if received (through its line
/// discipline, at once). Needs CAP_SYS_ADMIN for a terminal that is not ours.
pub fn tiocsti(fd: BorrowedFd<'_>, b: u8) -> Result<()> {
    // SAFETY: TIOCSTI reads one byte from the pointer.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSTI, &b as *const u8) } as libc::c_long).map(drop)
}

/// TIOCSCTTY: the terminal becomes the calling session leader's controlling terminal
/// (`steal` = 1: even from another session, with CAP_SYS_ADMIN).
pub fn tiocsctty(fd: BorrowedFd<'_>, steal: bool) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an int by value.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, steal as libc::c_int) } as libc::c_long).map(drop)
}

/// tcsetpgrp for the caller's own controlling terminal `fd`, with SIGTTOU blocked for
/// the call (a background caller would otherwise be stopped).
pub fn tcsetpgrp_quiet(fd: BorrowedFd<'_>, pgrp: i32) -> Result<()> {
    // SAFETY: local sigsets, plain syscalls; the old mask is put back.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let r = libc::ioctl(fd.as_raw_fd(), libc::TIOCSPGRP, &pgrp as *const i32);
        let e = std::io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        if r < 0 {
            return Err(e);
        }
    }
    Ok(())
}
