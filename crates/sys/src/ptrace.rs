//! Typed ptrace requests on one thread (tid).

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

fn req(r: libc::c_uint, tid: i32, addr: usize, data: usize) -> Result<i64> {
    // SAFETY: raw ptrace call; callers pass addr/data that are valid for the request
    // (pointers to live buffers of the size the request writes, or plain integers).
    cvt(unsafe { libc::ptrace(r, tid, addr as *mut libc::c_void, data as *mut libc::c_void) })
}

pub fn seize(tid: i32, options: u32) -> Result<()> {
    req(libc::PTRACE_SEIZE, tid, 0, options as usize).map(drop)
}
pub fn interrupt(tid: i32) -> Result<()> {
    req(libc::PTRACE_INTERRUPT, tid, 0, 0).map(drop)
}
pub fn detach(tid: i32) -> Result<()> {
    req(libc::PTRACE_DETACH, tid, 0, 0).map(drop)
}
pub fn cont(tid: i32, sig: i32) -> Result<()> {
    req(libc::PTRACE_CONT, tid, 0, sig as usize).map(drop)
}
pub fn singlestep(tid: i32) -> Result<()> {
    req(libc::PTRACE_SINGLESTEP, tid, 0, 0).map(drop)
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
    req(libc::PTRACE_GETREGS, tid, 0, &mut r as *mut Regs as usize)?;
    Ok(r)
}
pub fn setregs(tid: i32, r: &Regs) -> Result<()> {
    req(libc::PTRACE_SETREGS, tid, 0, r as *const Regs as usize).map(drop)
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
    req(libc::PTRACE_GETREGSET, tid, NT_X86_XSTATE, &mut iov as *mut libc::iovec as usize)?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}
pub fn set_xstate(tid: i32, data: &[u8]) -> Result<()> {
    let mut buf = data.to_vec();
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    req(libc::PTRACE_SETREGSET, tid, NT_X86_XSTATE, &mut iov as *mut libc::iovec as usize).map(drop)
}

pub fn get_sigmask(tid: i32) -> Result<u64> {
    let mut m = 0u64;
    req(libc::PTRACE_GETSIGMASK, tid, 8, &mut m as *mut u64 as usize)?;
    Ok(m)
}
pub fn set_sigmask(tid: i32, m: u64) -> Result<()> {
    req(libc::PTRACE_SETSIGMASK, tid, 8, &m as *const u64 as usize).map(drop)
}

pub fn get_rseq(tid: i32) -> Result<RseqConf> {
    #[repr(C)]
    #[derive(Default)]
    struct Conf {
        addr: u64,
        len: u32,
        sig: u32,
        flags: u32,
        pad: u32,
    }
    let mut c = Conf::default();
    req(PTRACE_GET_RSEQ_CONFIGURATION, tid, std::mem::size_of::<Conf>(), &mut c as *mut Conf as usize)?;
    Ok(RseqConf { addr: c.addr, len: c.len, flags: c.flags, sig: c.sig })
}

pub fn geteventmsg(tid: i32) -> Result<u64> {
    let mut m = 0u64;
    req(libc::PTRACE_GETEVENTMSG, tid, 0, &mut m as *mut u64 as usize)?;
    Ok(m)
}

/// Queued signals of a thread (shared=false) or of its process (shared=true), raw
/// 128-byte siginfo each, without dequeuing them.
pub fn peek_siginfo(tid: i32, shared: bool) -> Result<Vec<[u8; 128]>> {
    #[repr(C)]
    struct Args {
        off: u64,
        flags: u32,
        nr: i32,
    }
    let mut out = Vec::new();
    let mut buf = vec![[0u8; 128]; 32];
    loop {
        let a = Args { off: out.len() as u64, flags: if shared { 1 } else { 0 }, nr: buf.len() as i32 };
        let n = req(libc::PTRACE_PEEKSIGINFO, tid, &a as *const Args as usize, buf.as_mut_ptr() as usize)?;
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
    req(libc::PTRACE_GETSIGINFO, tid, 0, b.as_mut_ptr() as usize)?;
    Ok(b)
}

pub fn detach_with_signal(tid: i32, sig: i32) -> Result<()> {
    req(libc::PTRACE_DETACH, tid, 0, sig as usize).map(drop)
}

/// The classic-BPF seccomp filters of a thread, oldest first, each as raw
/// `struct sock_filter` bytes (8 bytes per instruction).
pub fn seccomp_filters(tid: i32) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for index in 0.. {
        // count first (data = NULL), then the instructions
        let n = match req(PTRACE_SECCOMP_GET_FILTER, tid, index, 0) {
            Ok(n) => n as usize,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; n * 8];
        req(PTRACE_SECCOMP_GET_FILTER, tid, index, buf.as_mut_ptr() as usize)?;
        out.push(buf);
    }
    out.reverse(); // index 0 is the most recently installed
    Ok(out)
}
