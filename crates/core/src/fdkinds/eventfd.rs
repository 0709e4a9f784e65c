//! eventfd: the 64-bit counter (fdinfo `eventfd-count`, hex), EFD_SEMAPHORE
//! (`eventfd-semaphore`) and O_NONBLOCK. Restore: eventfd2 with the flags, then one
//! write(2) of the counter (eventfd2 takes only 32 bits; a write to a fresh counter never
//! blocks). The kernel's `eventfd-id` is not kept: nothing but fdinfo shows it.
//! Processes waiting on the counter are not state: they wait again after restore.

use std::os::fd::{AsFd, OwnedFd};

use stasis_image::model::{EventfdObj, Kind, Object};
use stasis_sys::sys;

use super::{hex, nonblock, FdCtx};
use crate::error::Result;

pub fn dump(c: &FdCtx) -> Result<Object> {
    let count = c.field(c.fdinfo, "eventfd-count", hex)?;
    // Recent kernels print the semaphore flag; without it we cannot tell.
    let semaphore = match super::field(c.fdinfo, "eventfd-semaphore") {
        Some(v) => v == "1",
        None => return Err(c.unsupported("(this kernel's fdinfo does not show whether it is EFD_SEMAPHORE)")),
    };
    Ok(Object { kind: Some(Kind::Eventfd(EventfdObj { count, flags: c.flags, semaphore })), ..Default::default() })
}

pub fn open(e: &EventfdObj) -> std::result::Result<OwnedFd, String> {
    let flags = libc::EFD_CLOEXEC | nonblock(e.flags) | if e.semaphore { libc::EFD_SEMAPHORE } else { 0 };
    let fd = sys::eventfd2(0, flags).map_err(|err| format!("eventfd2: {err}"))?;
    if e.count != 0 {
        sys::write_fd(fd.as_fd(), &e.count.to_ne_bytes()).map_err(|err| format!("setting the eventfd counter to {}: {err}", e.count))?;
    }
    Ok(fd)
}
