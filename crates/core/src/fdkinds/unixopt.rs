//! Unix socket state beside the socket's connections and queues (unix.rs): its
//! SOL_SOCKET options, through the option table IP sockets use (inet/options.rs):
//! read, compared with a new unix socket of the same type, set back in two phases —
//! `Early` once the socket exists, `Late` once its queue is in (a filter attached
//! before would filter the requeued messages; a locked filter cannot be attached again).

use std::os::fd::BorrowedFd;

use stasis_image::model::{SockOpt, UnixObj};
use stasis_sys::sys;

use super::inet::options::{self, SockKind, When};

/// The option table's view of a unix socket of type `ty`.
pub fn kind(ty: i32) -> SockKind {
    SockKind { family: libc::AF_UNIX, ty, protocol: 0, connected: false }
}

/// Dump: the table options of `s` (type `ty`) that differ from a new socket's.
pub fn dump(s: BorrowedFd<'_>, ty: i32) -> std::io::Result<Vec<SockOpt>> {
    let fresh = sys::socket(libc::AF_UNIX, ty, 0)?;
    Ok(options::dump(s, std::os::fd::AsFd::as_fd(&fresh), &kind(ty)))
}

/// Restore: the saved options of phase `when`.
pub fn apply(s: BorrowedFd<'_>, u: &UnixObj, when: When) -> Result<(), String> {
    options::apply(s, &u.sockopts, &kind(u.sock_type), when)
}

/// Validation: options of the table for a unix socket, values of the table's sizes.
pub fn check(u: &UnixObj) -> Result<(), String> {
    options::check_all(&u.sockopts, &kind(u.sock_type))
}
