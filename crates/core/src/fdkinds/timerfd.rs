//! timerfd: clock, settime flags (TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET), interval,
//! next expiry, unread expirations ("ticks") and O_NONBLOCK.
//!
//! Dump: a periodic timer whose expiry nobody has read yet is not re-armed by the kernel
//! until a read or timerfd_gettime; timerfd_gettime on a dup of the fd re-arms it and adds
//! the overruns to its ticks without consuming anything (a later read returns the same
//! total). Ticks, remaining time and interval are then taken from one fdinfo snapshot,
//! which the kernel prints under the timer's lock; if the timer fired again between the
//! two, both are taken again.
//!
//! Restore: timerfd_create + timerfd_settime. A relative timer continues with the time
//! that remained at dump (the time between dump and restore does not count, as for
//! sleeps and POSIX timers); an absolute one (TFD_TIMER_ABSTIME) keeps its deadline on
//! its clock, so it may fire at once, with the overruns counted by the kernel. Unread
//! expirations are put back with ioctl(TFD_IOC_SET_TICKS), after timerfd_settime (which
//! clears them), adding any expiry that happened in between: the first read after restore
//! returns them, and poll/epoll see the timer readable.
//!
//! Not kept: the "canceled" state of a TFD_TIMER_CANCEL_ON_SET timer whose clock was set
//! and which nobody read yet (the restored one waits for the next change).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use stasis_image::model::{Kind, Object, TimerfdObj};
use stasis_sys::sys;

use super::{nonblock, FdCtx};
use crate::error::{Ctx, Result};

const TFD_TIMER_ABSTIME: u32 = 1;

/// "(sec, nsec)" → ns.
fn timespec(v: &str) -> Option<u64> {
    let (s, n) = v.trim().strip_prefix('(')?.strip_suffix(')')?.split_once(',')?;
    Some(s.trim().parse::<u64>().ok()? * 1_000_000_000 + n.trim().parse::<u64>().ok()?)
}

fn dec(v: &str) -> Option<u64> {
    v.parse().ok()
}

/// The clock clock_gettime can read for a timerfd clock (alarm clocks tick like their
/// base clocks).
fn readable_clock(clockid: i32) -> i32 {
    match clockid {
        libc::CLOCK_REALTIME_ALARM => libc::CLOCK_REALTIME,
        libc::CLOCK_BOOTTIME_ALARM => libc::CLOCK_BOOTTIME,
        c => c,
    }
}

pub fn dump(c: &FdCtx) -> Result<Object> {
    let clockid = c.field(c.fdinfo, "clockid", |v| v.parse::<i32>().ok())?;
    let settime_flags = c.field(c.fdinfo, "settime flags", |v| u32::from_str_radix(v, 8).ok())?;
    let dup = c.dup()?;
    let abs = settime_flags & TFD_TIMER_ABSTIME != 0;
    let mut snap = (0, 0, 0, 0);
    let mut settled = false;
    for _ in 0..16 {
        let (_, armed) = sys::timerfd_gettime(dup.as_fd()).ctx(c.pid, || format!("timerfd_gettime of fd {}", c.fd))?;
        let info = c.reread()?;
        let ticks = c.field(&info, "ticks", dec)?;
        let value = c.field(&info, "it_value", timespec)?;
        let interval = c.field(&info, "it_interval", timespec)?;
        let now = if abs {
            sys::clock_gettime(readable_clock(clockid)).ctx(c.pid, || format!("clock_gettime({clockid}) for fd {}", c.fd))?
        } else {
            0
        };
        // armed == 0: disarmed, or a one-shot timer that has expired.
        snap = (ticks, if armed == 0 { 0 } else { value }, interval, now);
        // value == 0 while armed: it expired again after timerfd_gettime re-armed it.
        if armed == 0 || value != 0 {
            settled = true;
            break;
        }
    }
    let (ticks, mut value, interval, now) = snap;
    if !settled {
        // A periodic timer that kept expiring faster than we could look: its next expiry
        // is at most one interval away.
        value = interval.max(1);
    }
    let value_ns = if value != 0 && abs { now + value } else { value };
    Ok(Object {
        kind: Some(Kind::Timerfd(TimerfdObj { clockid, flags: c.flags, interval_ns: interval, value_ns, ticks, settime_flags })),
        ..Default::default()
    })
}

pub fn open(t: &TimerfdObj) -> std::result::Result<OwnedFd, String> {
    let fd = sys::timerfd_create(t.clockid, libc::TFD_CLOEXEC | nonblock(t.flags))
        .map_err(|e| format!("timerfd_create(clock {}): {e}", t.clockid))?;
    if t.value_ns != 0 || t.interval_ns != 0 {
        sys::timerfd_settime(fd.as_fd(), t.settime_flags as i32, t.interval_ns, t.value_ns).map_err(|e| {
            format!("timerfd_settime(flags {:#o}, value {} ns, interval {} ns): {e}", t.settime_flags, t.value_ns, t.interval_ns)
        })?;
    }
    if t.ticks != 0 {
        // timerfd_settime cleared the count; keep an expiry that happened since.
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap_or_default();
        let since = super::field(&info, "ticks").and_then(dec).unwrap_or(0);
        sys::timerfd_set_ticks(fd.as_fd(), t.ticks + since)
            .map_err(|e| format!("restoring {} unread expirations (TFD_IOC_SET_TICKS): {e}", t.ticks))?;
    }
    Ok(fd)
}
