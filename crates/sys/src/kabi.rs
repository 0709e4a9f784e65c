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

/// fcntl commands libc does not name (include/uapi/asm-generic/fcntl.h).
pub const F_SETSIG: i32 = 10;
pub const F_GETSIG: i32 = 11;
pub const F_SETOWN_EX: i32 = 15;
pub const F_GETOWN_EX: i32 = 16;

/// `struct f_owner_ex` (fcntl F_GETOWN_EX / F_SETOWN_EX): who gets SIGIO/SIGURG for an
/// open file description. `kind` is F_OWNER_TID (0), F_OWNER_PID (1) or F_OWNER_PGRP (2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FOwnerEx {
    pub kind: i32,
    pub pid: i32,
}

/// `struct user_desc` (modify_ldt, set_thread_area). `flags` holds the C bitfields from
/// bit 0 up: seg_32bit, contents (2 bits), read_exec_only, limit_in_pages,
/// seg_not_present, useable, lm.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserDesc {
    pub entry_number: u32,
    pub base_addr: u32,
    pub limit: u32,
    pub flags: u32,
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
    /// Microseconds (wrapping, as the image has always stored them).
    pub fn to_us(&self) -> u64 {
        (self.sec as u64).wrapping_mul(1_000_000).wrapping_add(self.usec as u64)
    }
}

/// `struct itimerval` (setitimer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerval {
    pub interval: Timeval,
    pub value: Timeval,
}

impl Itimerval {
    pub fn from_us(interval_us: u64, value_us: u64) -> Itimerval {
        Itimerval { interval: Timeval::from_us(interval_us), value: Timeval::from_us(value_us) }
    }
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
    /// Nanoseconds (wrapping, as the image has always stored them).
    pub fn to_ns(&self) -> u64 {
        (self.sec as u64).wrapping_mul(1_000_000_000).wrapping_add(self.nsec as u64)
    }
}

/// `struct itimerspec` (timer_settime, timerfd_settime).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Itimerspec {
    pub interval: Timespec,
    pub value: Timespec,
}

impl Itimerspec {
    pub fn from_ns(interval_ns: u64, value_ns: u64) -> Itimerspec {
        Itimerspec { interval: Timespec::from_ns(interval_ns), value: Timespec::from_ns(value_ns) }
    }
}

/// `struct rlimit64` (prlimit64).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rlimit64 {
    pub cur: u64,
    pub max: u64,
}

/// `struct prctl_mm_map` (prctl(PR_SET_MM, PR_SET_MM_MAP)); `auxv` points at `auxv_size`
/// bytes of auxiliary vector; `exe_fd` u32::MAX (-1) keeps /proc/PID/exe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrctlMmMap {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub auxv: u64,
    pub auxv_size: u32,
    pub exe_fd: u32,
}

/// clone3's `struct clone_args` (v2, with set_tid and cgroup).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

impl CloneArgs {
    pub fn as_bytes(&self) -> &[u8] {
        as_bytes(self)
    }
}

/// `struct ptrace_rseq_configuration` (PTRACE_GET_RSEQ_CONFIGURATION).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RseqConfiguration {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// `struct ptrace_peeksiginfo_args` (PTRACE_PEEKSIGINFO).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeekSiginfoArgs {
    pub off: u64,
    pub flags: u32,
    pub nr: i32,
}

/// `struct epoll_event` as x86_64 lays it out: packed, 12 bytes (events, then data at
/// offset 4), kept as three words so it has no padding and no unaligned field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EpollEvent {
    pub words: [u32; 3],
}

impl EpollEvent {
    pub fn new(events: u32, data: u64) -> EpollEvent {
        EpollEvent { words: [events, data as u32, (data >> 32) as u32] }
    }
    pub fn events(&self) -> u32 {
        self.words[0]
    }
    pub fn data(&self) -> u64 {
        self.words[1] as u64 | (self.words[2] as u64) << 32
    }
}

/// A raw 128-byte `siginfo_t` (rt_sigqueueinfo, PTRACE_PEEKSIGINFO).
pub type Siginfo = [u8; 128];

/// The largest classic-BPF program the kernel accepts (BPF_MAXINSNS instructions of
/// 8 bytes): a seccomp filter is never longer.
pub const BPF_MAXINSNS: usize = 4096;

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

/// The header of an aio context's ring (struct aio_ring, fs/aio.c), at the start of
/// its first page; `IoEvent` slots follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AioRingHeader {
    /// The context's index in the process's context table (the kernel reads it back).
    pub id: u32,
    /// Event slots.
    pub nr: u32,
    /// Next slot to reap (userspace may advance it).
    pub head: u32,
    /// Next slot the kernel fills.
    pub tail: u32,
    pub magic: u32,
    pub compat_features: u32,
    pub incompat_features: u32,
    pub header_length: u32,
}

/// AIO_RING_MAGIC.
pub const AIO_RING_MAGIC: u32 = 0xa10a_10a1;

/// struct io_event: one completion.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoEvent {
    pub data: u64,
    pub obj: u64,
    pub res: i64,
    pub res2: i64,
}

/// struct iocb (little-endian layout: aio_key before aio_rw_flags).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Iocb {
    pub aio_data: u64,
    pub aio_key: u32,
    pub aio_rw_flags: i32,
    pub aio_lio_opcode: u16,
    pub aio_reqprio: i16,
    pub aio_fildes: u32,
    pub aio_buf: u64,
    pub aio_nbytes: u64,
    pub aio_offset: i64,
    pub aio_reserved2: u64,
    pub aio_flags: u32,
    pub aio_resfd: u32,
}

/// IOCB_CMD_PREAD.
pub const IOCB_CMD_PREAD: u16 = 0;

pod!(
    AioRingHeader, IoEvent, Iocb,
    UserDesc, StackT, KSigaction, Flock, SockFprog, Sigevent, Timeval, Itimerval, Timespec, Itimerspec, CapUserHeader, CapUserData,
    CapSet, Rlimit64, PrctlMmMap, CloneArgs, RseqConfiguration, PeekSiginfoArgs, EpollEvent, FOwnerEx
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::size_of;

    #[test]
    fn sizes_match_the_kernel() {
        assert_eq!(size_of::<StackT>(), 24);
        assert_eq!(size_of::<UserDesc>(), 16);
        assert_eq!(size_of::<KSigaction>(), 32);
        assert_eq!(size_of::<Flock>(), 32);
        assert_eq!(size_of::<FOwnerEx>(), 8);
        assert_eq!(size_of::<SockFprog>(), 16);
        assert_eq!(size_of::<Sigevent>(), 64);
        assert_eq!(size_of::<Itimerval>(), 32);
        assert_eq!(size_of::<Itimerspec>(), 32);
        assert_eq!(size_of::<CapSet>(), 32);
        assert_eq!(size_of::<Rlimit64>(), 16);
        assert_eq!(size_of::<PrctlMmMap>(), 104);
        assert_eq!(size_of::<CloneArgs>(), 88);
        assert_eq!(size_of::<RseqConfiguration>(), 24);
        assert_eq!(size_of::<PeekSiginfoArgs>(), 16);
        assert_eq!(size_of::<EpollEvent>(), 12);
        assert_eq!(size_of::<AioRingHeader>(), 32);
        assert_eq!(size_of::<IoEvent>(), 32);
        assert_eq!(size_of::<Iocb>(), 64);
        assert_eq!(size_of::<libc::epoll_event>(), size_of::<EpollEvent>());
        assert_eq!(size_of::<libc::rlimit64>(), size_of::<Rlimit64>());
        assert_eq!(size_of::<libc::itimerspec>(), size_of::<Itimerspec>());
        assert_eq!(size_of::<libc::itimerval>(), size_of::<Itimerval>());
        assert_eq!(size_of::<libc::siginfo_t>(), size_of::<Siginfo>());
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
        let e = EpollEvent::new(5, 0x1122_3344_5566_7788);
        assert_eq!((e.events(), e.data()), (5, 0x1122_3344_5566_7788));
        let ev = libc::epoll_event { events: 5, u64: 0x1122_3344_5566_7788 };
        // SAFETY: epoll_event is 12 initialised bytes (packed, no padding).
        let raw = unsafe { std::slice::from_raw_parts(&ev as *const libc::epoll_event as *const u8, 12) };
        assert_eq!(as_bytes(&e), raw);
        assert_eq!(Timeval::from_us(3_000_007).to_us(), 3_000_007);
        assert_eq!(Timespec::from_ns(5_000_000_009).to_ns(), 5_000_000_009);
    }
}

/// struct sched_attr (sched_setattr/sched_getattr), the version with utilization clamps
/// (SCHED_ATTR_SIZE_VER1, 56 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
    pub sched_util_min: u32,
    pub sched_util_max: u32,
}

pub const SCHED_DEADLINE: i32 = 6;
pub const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;
pub const SCHED_FLAG_RECLAIM: u64 = 0x02;
pub const SCHED_FLAG_DL_OVERRUN: u64 = 0x04;
