//! signalfd: the signal mask (fdinfo `sigmask`, hex, bit n-1 = signal n) and O_NONBLOCK.
//! The signals it reads are the reading thread's pending ones, restored with the
//! process's pending signals; the fd itself holds nothing else. Restore: signalfd4(-1).

use std::os::fd::OwnedFd;

use stasis_image::model::{Kind, Object, SignalfdObj};
use stasis_sys::sys;

use super::{hex, nonblock, FdCtx};
use crate::error::Result;

pub fn dump(c: &FdCtx) -> Result<Object> {
    let mask = c.field(c.fdinfo, "sigmask", hex)?;
    Ok(Object { kind: Some(Kind::Signalfd(SignalfdObj { mask, flags: c.flags })), ..Default::default() })
}

pub fn open(s: &SignalfdObj) -> std::result::Result<OwnedFd, String> {
    sys::signalfd4(s.mask, libc::SFD_CLOEXEC | nonblock(s.flags)).map_err(|e| format!("signalfd4 (mask {:#x}): {e}", s.mask))
}
