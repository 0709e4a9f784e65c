//! Kernel ABI structs (x86_64) that stasis passes to syscalls, in its own process or
//! injected into another one (`remote`): `#[repr(C)]` with every padding byte an explicit
//! field, so their bytes can be copied into a tracee's memory without reading
//! uninitialised padding. No hand-packed byte arrays elsewhere.

/// Plain old data: a `#[repr(C)]` struct without implicit padding, for which every byte
/// pattern is valid.
///
/// # Safety
/// Implementors must be `#[repr(C)]` (or a primitive / array of primitives), contain no
/// implicit padding, no pointers or references Rust would dereference, and accept any
/// bit pattern.
pub unsafe trait Pod: Copy + 'static {}

// SAFETY: primitives and arrays of them have no padding and accept any bit pattern.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for i32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl Pod for i64 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for i16 {}
// SAFETY: as above.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The bytes of a `Pod` value.
pub fn as_bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: T is Pod (no padding), so all size_of::<T>() bytes are initialised; the
    // slice borrows `v` and cannot outlive it.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// The bytes of a slice of `Pod` values.
pub fn slice_bytes<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: as in `as_bytes`, for `v.len()` consecutive values.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// A `Pod` value read from the start of `b` (None if `b` is too short).
pub fn from_bytes<T: Pod>(b: &[u8]) -> Option<T> {
    if b.len() < std::mem::size_of::<T>() {
        return None;
    }
    // SAFETY: `b` holds at least size_of::<T>() bytes; T accepts any bit pattern (Pod);
    // read_unaligned has no alignment requirement.
    Some(unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) })
}

macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: #[repr(C)], every field a Pod primitive, padding spelled out as fields.
        unsafe impl Pod for $t {}
    )*};
}

/// `stack_t` (sigaltstack).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackT {
    pub ss_sp: u64,
    pub ss_flags: i32,
    pub _pad: u32,
    pub ss_size: u64,
}

/// The kernel's `struct sigaction` for `rt_sigaction` (not glibc's): handler, flags,
/// restorer, then a 64-bit mask.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `struct flock` (fcntl F_SETLK / F_OFD_SETLK).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flock {
    pub l_type: i16,
    pub l_whence: i16,
    pub _pad: u32,
    pub l_start: i64,
    pub l_len: i64,
    pub l_pid: i32,
    pub _pad2: u32,
}

/// `struct sock_fprog` (seccomp, SO_ATTACH_FILTER): the filter follows it in memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockFprog {
    pub len: u16,
    pub _pad: [u16; 3],
    pub filter: u64,
}

/// `struct sigevent` (timer_create), 64 bytes; `tid` is `sigev_notify_thread_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sigevent {
    pub value: u64,
    pub signo: i32,
    pub notify: i32,
    pub tid: i32,
    pub _pad: [u32; 11],
}

impl Default for Sigevent {
    fn default() -> Self {
        Sigevent { value: 0, signo: 0, notify: 0, tid: 0, _pad: [0; 11] }
    }
}

/// `struct timeval`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timeval {
    pub sec: i64,
    pub usec: i64,
}

impl Timeval {
    pub fn from_us(us: u64) -> Timeval {
        Timeval { sec: (us / 1_000_000) as i64, usec: (us % 1_000_000) as i64 }
    }
}

/// `struct itimerval` (setitimer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerval {
    pub interval: Timeval,
    pub value: Timeval,
}

/// `struct timespec`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

impl Timespec {
    pub fn from_ns(ns: u64) -> Timespec {
        Timespec { sec: (ns / 1_000_000_000) as i64, nsec: (ns % 1_000_000_000) as i64 }
    }
}

/// `struct itimerspec` (timer_settime, timerfd_settime).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerspec {
    pub interval: Timespec,
    pub value: Timespec,
}

/// capset/capget header and the two 32-bit data words of _LINUX_CAPABILITY_VERSION_3.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapUserHeader {
    pub version: u32,
    pub pid: i32,
}

pub const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapUserData {
    pub effective: u32,
    pub permitted: u32,
    pub inheritable: u32,
}

/// capset's arguments, header and data back to back.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapSet {
    pub header: CapUserHeader,
    pub data: [CapUserData; 2],
}

impl CapSet {
    /// Version 3, pid 0 (the calling thread), 64-bit sets split into the two words.
    pub fn new(eff: u64, prm: u64, inh: u64) -> CapSet {
        let d = |s: u32| CapUserData {
            effective: (eff >> s) as u32,
            permitted: (prm >> s) as u32,
            inheritable: (inh >> s) as u32,
        };
        CapSet { header: CapUserHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 }, data: [d(0), d(32)] }
    }
}

pod!(StackT, KSigaction, Flock, SockFprog, Sigevent, Timeval, Itimerval, Timespec, Itimerspec, CapUserHeader, CapUserData, CapSet);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn sizes_match_the_kernel() {
        assert_eq!(size_of::<StackT>(), 24);
        assert_eq!(size_of::<KSigaction>(), 32);
        assert_eq!(size_of::<Flock>(), 32);
        assert_eq!(size_of::<SockFprog>(), 16);
        assert_eq!(size_of::<Sigevent>(), 64);
        assert_eq!(size_of::<Itimerval>(), 32);
        assert_eq!(size_of::<Itimerspec>(), 32);
        assert_eq!(size_of::<CapSet>(), 32);
        assert_eq!(size_of::<libc::stack_t>(), size_of::<StackT>());
        assert_eq!(size_of::<libc::flock>(), size_of::<Flock>());
        assert_eq!(size_of::<libc::sigevent>(), size_of::<Sigevent>());
    }

    #[test]
    fn roundtrip_bytes() {
        let s = StackT { ss_sp: 0x1000, ss_flags: 2, _pad: 0, ss_size: 8192 };
        let b = as_bytes(&s).to_vec();
        assert_eq!(from_bytes::<StackT>(&b), Some(s));
        assert_eq!(from_bytes::<StackT>(&b[..10]), None);
        let c = CapSet::new(0x1_0000_0003, 0x3, 0);
        assert_eq!(c.data[0].effective, 3);
        assert_eq!(c.data[1].effective, 1);
    }
}
