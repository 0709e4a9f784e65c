//! POSIX message queues (mq_overview(7)): open, attributes, and sending and receiving
//! without ever blocking (an absolute timeout already past: ETIMEDOUT at once instead of
//! a wait, whatever the description's O_NONBLOCK).

use super::*;

/// `struct mq_attr`.
pub type MqAttr = libc::mq_attr;

/// Attributes for mq_open(O_CREAT): at most `maxmsg` messages of `msgsize` bytes.
pub fn mq_attr(maxmsg: i64, msgsize: i64) -> MqAttr {
    // SAFETY: mq_attr is plain integers: all-zero is a valid value.
    let mut a: MqAttr = unsafe { std::mem::zeroed() };
    a.mq_maxmsg = maxmsg;
    a.mq_msgsize = msgsize;
    a
}

/// The epoch: a timeout that has always passed.
const PAST: libc::timespec = libc::timespec { tv_sec: 0, tv_nsec: 0 };

/// mq_open(`name`, `flags`, `mode`, `attr`): `name` without its leading '/'.
pub fn mq_open(name: &str, flags: i32, mode: u32, attr: Option<&MqAttr>) -> Result<OwnedFd> {
    let n = std::ffi::CString::new(name).map_err(Error::other)?;
    let a = attr.map_or(std::ptr::null(), |a| a as *const MqAttr);
    // SAFETY: n is NUL-terminated; a is null or points to an mq_attr the kernel only reads.
    let fd = c(unsafe { libc::syscall(libc::SYS_mq_open, n.as_ptr(), flags, mode as libc::mode_t, a) })?;
    // SAFETY: new fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// mq_unlink(`name`) (without its leading '/').
pub fn mq_unlink(name: &str) -> Result<()> {
    let n = std::ffi::CString::new(name).map_err(Error::other)?;
    // SAFETY: n is NUL-terminated.
    c(unsafe { libc::syscall(libc::SYS_mq_unlink, n.as_ptr()) })?;
    Ok(())
}

/// The queue's attributes (mq_getsetattr without setting): the description's flags,
/// maxmsg, msgsize, curmsgs.
pub fn mq_getattr(fd: BorrowedFd<'_>) -> Result<MqAttr> {
    // SAFETY: mq_attr is plain integers: all-zero is a valid value.
    let mut a: MqAttr = unsafe { std::mem::zeroed() };
    // SAFETY: the kernel writes one mq_attr to the pointer; no new attributes given.
    c(unsafe { libc::syscall(libc::SYS_mq_getsetattr, fd.as_raw_fd(), std::ptr::null::<MqAttr>(), &mut a as *mut MqAttr) })?;
    Ok(a)
}

/// Sends one message of priority `prio`, never waiting (a full queue: ETIMEDOUT).
pub fn mq_send_now(fd: BorrowedFd<'_>, data: &[u8], prio: u32) -> Result<()> {
    // SAFETY: data is readable for its length; the timeout is a valid timespec.
    c(unsafe { libc::syscall(libc::SYS_mq_timedsend, fd.as_raw_fd(), data.as_ptr(), data.len(), prio, &PAST as *const libc::timespec) })?;
    Ok(())
}

/// Receives the first message into `buf` (at least msgsize bytes), never waiting (an
/// empty queue: ETIMEDOUT): its length and priority.
pub fn mq_receive_now(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, u32)> {
    let mut prio: libc::c_uint = 0;
    // SAFETY: buf is writable for its length; prio and the timeout are valid pointers.
    let n = c(unsafe {
        libc::syscall(libc::SYS_mq_timedreceive, fd.as_raw_fd(), buf.as_mut_ptr(), buf.len(), &mut prio as *mut libc::c_uint, &PAST as *const libc::timespec)
    })?;
    Ok((n as usize, prio))
}
