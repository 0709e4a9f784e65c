//! Typed ptrace requests on one thread (tid).

use crate::kabi::{PeekSiginfoArgs, RseqConfiguration, Siginfo, BPF_MAXINSNS};
use crate::{cvt, Error, Result};

pub type Regs = libc::user_regs_struct;
pub const NREGS: usize = std::mem::size_of::<Regs>() / 8;

pub const PTRACE_GET_RSEQ_CONFIGURATION: u32 = 0x420f;
pub const PTRACE_SECCOMP_GET_FILTER: u32 = 0x420c;
/// Seccomp filters of the tracee are not run while we trace it (CAP_SYS_ADMIN).
pub const PTRACE_O_SUSPEND_SECCOMP: u32 = 1 << 21;
pub const PTRACE_EVENT_STOP: i32 = 128;
const NT_X86_XSTATE: usize = 0x202;

#[derive(Debug, Clone, Copy, Default)]
pub struct RseqConf {
    pub addr: u64,
    pub len: u32,
    pub flags: u32,
    pub sig: u32,
}

/// One raw ptrace request.
///
/// # Safety
/// `addr` and `data` must be what request `r` expects: plain integers, or pointers to
/// live memory of at least the size the kernel reads or writes for that request.
unsafe fn req(r: libc::c_uint, tid: i32, addr: usize, data: usize) -> Result<i64> {
    // SAFETY: the caller passes addr/data valid for the request (see above).
    cvt(unsafe { libc::ptrace(r, tid, addr as *mut libc::c_void, data as *mut libc::c_void) })
}

pub fn seize(tid: i32, options: u32) -> Result<()> {
    // SAFETY: integer arguments only.
    unsafe { req(libc::PTRACE_SEIZE, tid, 0, options as usize) }.map(drop)
}
pub fn interrupt(tid: i32) -> Result<()> {
    // SAFETY: integer arguments only.
    unsafe { req(libc::PTRACE_INTERRUPT, tid, 0, 0) }.map(drop)
}
pub fn detach(tid: i32) -> Result<()> {
    // SAFETY: integer arguments only.
    unsafe { req(libc::PTRACE_DETACH, tid, 0, 0) }.map(drop)
}
pub fn cont(tid: i32, sig: i32) -> Result<()> {
    // SAFETY: integer arguments only.
    unsafe { req(libc::PTRACE_CONT, tid, 0, sig as usize) }.map(drop)
}
/// PTRACE_SYSCALL: resume until the next syscall entry or exit (a ptrace stop, not a
/// signal: unlike a single-step trap, nothing is sent to the thread).
pub fn syscall(tid: i32) -> Result<()> {
    // SAFETY: integer arguments only.
    unsafe { req(libc::PTRACE_SYSCALL, tid, 0, 0) }.map(drop)
}
pub fn singlestep(tid: i32) -> Result<()> {
    // SAFETY: integer arguments only.
    unsafe { req(libc::PTRACE_SINGLESTEP, tid, 0, 0) }.map(drop)
}

/// waitpid(tid, __WALL), retrying EINTR. Returns the raw status.
pub fn wait(tid: i32) -> Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if r >= 0 {
            return Ok(status);
        }
        let e = Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Non-blocking waitpid(tid, __WALL|WNOHANG): Some(status) if it changed state.
pub fn try_wait(tid: i32) -> Result<Option<i32>> {
    let mut status = 0;
    // SAFETY: status is a valid out pointer.
    let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
    if r < 0 {
        return Err(Error::last_os_error());
    }
    Ok(if r == 0 { None } else { Some(status) })
}

pub fn getregs(tid: i32) -> Result<Regs> {
    // SAFETY: user_regs_struct is plain old data; all-zero is a valid value.
    let mut r: Regs = unsafe { std::mem::zeroed() };
    // SAFETY: data points to a live user_regs_struct, which the kernel fills.
    unsafe { req(libc::PTRACE_GETREGS, tid, 0, &mut r as *mut Regs as usize) }?;
    Ok(r)
}
pub fn setregs(tid: i32, r: &Regs) -> Result<()> {
    // SAFETY: data points to a live user_regs_struct, which the kernel reads.
    unsafe { req(libc::PTRACE_SETREGS, tid, 0, r as *const Regs as usize) }.map(drop)
}

pub fn regs_to_words(r: &Regs) -> Vec<u64> {
    // SAFETY: Regs is repr(C) made of NREGS u64 fields (c_ulonglong), no padding.
    let w: &[u64; NREGS] = unsafe { &*(r as *const Regs as *const [u64; NREGS]) };
    w.to_vec()
}
pub fn words_to_regs(w: &[u64]) -> Option<Regs> {
    if w.len() != NREGS {
        return None;
    }
    // SAFETY: as above; all bit patterns are valid for u64 fields.
    let mut r: Regs = unsafe { std::mem::zeroed() };
    // SAFETY: r is NREGS u64s; we copy exactly NREGS words into it.
    unsafe { std::ptr::copy_nonoverlapping(w.as_ptr(), &mut r as *mut Regs as *mut u64, NREGS) };
    Some(r)
}

pub fn get_xstate(tid: i32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 16384];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: the iovec describes `buf`, alive for the call; the kernel writes at most iov_len bytes.
    unsafe { req(libc::PTRACE_GETREGSET, tid, NT_X86_XSTATE, &mut iov as *mut libc::iovec as usize) }?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}
pub fn set_xstate(tid: i32, data: &[u8]) -> Result<()> {
    let mut buf = data.to_vec();
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: the iovec describes `buf`, alive for the call; the kernel only reads it.
    unsafe { req(libc::PTRACE_SETREGSET, tid, NT_X86_XSTATE, &mut iov as *mut libc::iovec as usize) }.map(drop)
}

pub fn get_sigmask(tid: i32) -> Result<u64> {
    let mut m = 0u64;
    // SAFETY: addr is the size (8) of the u64 that data points to.
    unsafe { req(libc::PTRACE_GETSIGMASK, tid, 8, &mut m as *mut u64 as usize) }?;
    Ok(m)
}
pub fn set_sigmask(tid: i32, m: u64) -> Result<()> {
    // SAFETY: addr is the size (8) of the u64 that data points to.
    unsafe { req(libc::PTRACE_SETSIGMASK, tid, 8, &m as *const u64 as usize) }.map(drop)
}

pub fn get_rseq(tid: i32) -> Result<RseqConf> {
    let mut c = RseqConfiguration::default();
    let size = std::mem::size_of::<RseqConfiguration>();
    // SAFETY: addr is the size of the struct that data points to; the kernel writes at most that.
    unsafe { req(PTRACE_GET_RSEQ_CONFIGURATION, tid, size, &mut c as *mut RseqConfiguration as usize) }?;
    Ok(RseqConf { addr: c.rseq_abi_pointer, len: c.rseq_abi_size, flags: c.flags, sig: c.signature })
}

pub fn geteventmsg(tid: i32) -> Result<u64> {
    let mut m = 0u64;
    // SAFETY: data points to a live u64.
    unsafe { req(libc::PTRACE_GETEVENTMSG, tid, 0, &mut m as *mut u64 as usize) }?;
    Ok(m)
}

/// Queued signals of a thread (shared=false) or of its process (shared=true), raw
/// 128-byte siginfo each, without dequeuing them.
pub fn peek_siginfo(tid: i32, shared: bool) -> Result<Vec<Siginfo>> {
    let mut out = Vec::new();
    let mut buf: Vec<Siginfo> = vec![[0u8; 128]; 32];
    loop {
        let a = PeekSiginfoArgs { off: out.len() as u64, flags: if shared { 1 } else { 0 }, nr: buf.len() as i32 };
        // the kernel writes at most `nr` siginfos, which is buf.len()
        // SAFETY: addr points to the argument struct, data to room for its `nr` (buf.len()) siginfos.
        let n = unsafe { req(libc::PTRACE_PEEKSIGINFO, tid, &a as *const PeekSiginfoArgs as usize, buf.as_mut_ptr() as usize) }?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// Decoded wait status of a ptrace stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Stopped: (signal, ptrace event).
    Stopped(i32, i32),
    Exited(i32),
    Killed(i32),
}

pub fn decode(status: i32) -> Stop {
    if libc::WIFSTOPPED(status) {
        Stop::Stopped(libc::WSTOPSIG(status), (status >> 16) & 0xff)
    } else if libc::WIFEXITED(status) {
        Stop::Exited(libc::WEXITSTATUS(status))
    } else {
        Stop::Killed(libc::WTERMSIG(status))
    }
}

pub fn getsiginfo(tid: i32) -> Result<[u8; 128]> {
    let mut b = [0u8; 128];
    // SAFETY: data points to 128 bytes, the size of a siginfo_t.
    unsafe { req(libc::PTRACE_GETSIGINFO, tid, 0, b.as_mut_ptr() as usize) }?;
    Ok(b)
}

pub fn detach_with_signal(tid: i32, sig: i32) -> Result<()> {
    // SAFETY: integer arguments only.
    unsafe { req(libc::PTRACE_DETACH, tid, 0, sig as usize) }.map(drop)
}

/// The classic-BPF seccomp filters of a thread, oldest first, each as raw
/// `struct sock_filter` bytes (8 bytes per instruction).
pub fn seccomp_filters(tid: i32) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for index in 0.. {
        // The request has no length argument: the kernel copies the whole filter at
        // `index` as it is at that moment (a thread of the tracee may install one in
        // between, shifting the indexes), so the buffer is always as large as any filter
        // can be (BPF_MAXINSNS), never sized from an earlier count.
        let mut buf = vec![0u8; BPF_MAXINSNS * 8];
        // SAFETY: buf holds BPF_MAXINSNS instructions, more than any filter has.
        let n = match unsafe { req(PTRACE_SECCOMP_GET_FILTER, tid, index, buf.as_mut_ptr() as usize) } {
            Ok(n) => n as usize,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        };
        if n > BPF_MAXINSNS {
            return Err(Error::other(format!("seccomp filter {index} of thread {tid}: {n} instructions")));
        }
        buf.truncate(n * 8);
        out.push(buf);
    }
    out.reverse(); // index 0 is the most recently installed
    Ok(out)
}
