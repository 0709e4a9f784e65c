//! TCP repair mode on sockets stasis does not own: entering it changes more than
//! `TCP_REPAIR` itself. The kernel's `TCP_REPAIR` handler sets `sk_reuse` to
//! "force reuse" on entry and to "no reuse" on exit, whatever `SO_REUSEADDR` was: a
//! server's accepted connection (which inherits `SO_REUSEADDR` from its listener) came
//! out of a `--leave-running` dump without it, and once the server closed it the
//! connection's FIN_WAIT2/TIME_WAIT remainder blocked every new bind of the port
//! ("Address already in use" for a minute, a restart or restore of the server failing).
//!
//! So every socket the dump puts in repair mode is entered through [`Repair::enter`],
//! which first takes a snapshot of the socket options repair mode may touch, and left
//! through [`Repair::leave`] ([`release`], when the process runs on), which leaves repair
//! mode and then puts back every option that differs from the snapshot (and says which
//! one it could not). The restore side (fdkinds::inet::tcp::finish_restore) sets the
//! image's SO_REUSEADDR again after leaving repair mode.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use stasis_sys::sys;

pub const TCP_REPAIR: i32 = 19;
/// Leave repair mode without sending a window probe (the connection never moved).
pub const TCP_REPAIR_OFF_NO_WP: i32 = -1;

/// Options read before repair mode and put back after it when they changed: flags and
/// values a setsockopt stores as given (buffer sizes are left out: the kernel doubles
/// what is set, and autotuning moves them).
const GUARDED: &[(i32, i32)] = &[
    (libc::SOL_SOCKET, libc::SO_REUSEADDR),
    (libc::SOL_SOCKET, libc::SO_REUSEPORT),
    (libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    (libc::SOL_SOCKET, libc::SO_OOBINLINE),
    (libc::SOL_SOCKET, libc::SO_PRIORITY),
    (libc::SOL_SOCKET, libc::SO_MARK),
    (libc::IPPROTO_TCP, libc::TCP_NODELAY),
    (libc::IPPROTO_TCP, libc::TCP_CORK),
    (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
];

fn snapshot(fd: BorrowedFd<'_>) -> Vec<(i32, i32, i32)> {
    GUARDED.iter().filter_map(|&(l, o)| sys::getsockopt_int(fd, l, o).ok().map(|v| (l, o, v))).collect()
}

/// A socket in repair mode, with the options it had before.
pub struct Repair {
    sock: OwnedFd,
    before: Vec<(i32, i32, i32)>,
}

impl Repair {
    /// Snapshot the options, then enter repair mode (on a copy of `fd`).
    pub fn enter(fd: BorrowedFd<'_>) -> std::io::Result<Repair> {
        let before = snapshot(fd);
        let sock = fd.try_clone_to_owned()?;
        sys::setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR, 1)?;
        Ok(Repair { sock, before })
    }

    /// Leave repair mode (`probe`: with a window probe, for a restored connection whose
    /// peer may have waited) and put back every option that changed. Errors name the
    /// option that could not be put back.
    pub fn leave(self, probe: bool) -> std::io::Result<()> {
        let fd = self.sock.as_fd();
        sys::setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR, if probe { 0 } else { TCP_REPAIR_OFF_NO_WP })?;
        for &(level, opt, was) in &self.before {
            let now = sys::getsockopt_int(fd, level, opt).ok();
            if now == Some(was) {
                continue;
            }
            tracing::debug!(level, opt, was, ?now, "putting back a socket option changed by TCP repair mode");
            let back = sys::setsockopt_int(fd, level, opt, was).and_then(|_| sys::getsockopt_int(fd, level, opt));
            match back {
                Ok(v) if v == was => {}
                Ok(v) => return Err(std::io::Error::other(format!("socket option ({level}, {opt}) is {v}, was {was}"))),
                Err(e) => return Err(std::io::Error::other(format!("putting back socket option ({level}, {opt}) = {was}: {e}"))),
            }
        }
        Ok(())
    }
}

/// The dump's copies of the connections put in repair mode. Repair mode stays on while
/// the process is frozen; [`release`] leaves it if the process runs on, or drops the
/// copies after it was killed (a socket closed in repair mode goes away silently: no
/// FIN, no RST to the peer).
static REPAIRED: Mutex<Vec<Repair>> = Mutex::new(Vec::new());

/// Dump side: put a live connection in repair mode until the end of the dump.
pub fn enter_for_dump(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let r = Repair::enter(fd)?;
    REPAIRED.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    Ok(())
}

/// End of a dump: `resume` = the process runs on (`--leave-running` or a failed dump):
/// every socket leaves repair mode with its options as they were; otherwise (the tree
/// was killed) the copies are closed in repair mode.
pub fn release(resume: bool) {
    let socks = std::mem::take(&mut *REPAIRED.lock().unwrap_or_else(|e| e.into_inner()));
    if resume {
        for s in socks {
            if let Err(e) = s.leave(false) {
                tracing::warn!("a TCP connection of the dumped tree after repair mode: {e}");
            }
        }
    }
}
