//! Safe wrappers for the plain syscalls stasis uses.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::{cvt, Error, Result};

fn c(r: libc::c_long) -> Result<i64> {
    cvt(r as i64)
}

/// Reads `len` bytes at `addr` of process `pid`.
pub fn read_mem(pid: i32, addr: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = vm_readv_into(pid, &mut [&mut buf[..]], &[(addr, len)])?;
    if n != len {
        return Err(Error::other(format!("short read of {len} bytes at {addr:#x} in pid {pid}: {n}")));
    }
    Ok(buf)
}

/// Writes `data` at `addr` of process `pid` (never our own memory: see `vm_writev`).
pub fn write_mem(pid: i32, addr: u64, data: &[u8]) -> Result<()> {
    let n = vm_writev(pid, &[(data.as_ptr(), data.len())], &[(addr, data.len())])?;
    if n != data.len() {
        return Err(Error::other(format!("short write of {} bytes at {addr:#x} in pid {pid}: {n}", data.len())));
    }
    Ok(())
}

/// process_vm_readv into raw buffers.
///
/// # Safety
/// Every `local` (pointer, length) must be writable memory the caller owns and that
/// nothing else borrows while the call runs. Safe callers: [`vm_readv_into`].
unsafe fn vm_readv(pid: i32, local: &mut [(*mut u8, usize)], remote: &[(u64, usize)]) -> Result<usize> {
    let l: Vec<libc::iovec> = local.iter().map(|&(p, n)| libc::iovec { iov_base: p.cast(), iov_len: n }).collect();
    let r: Vec<libc::iovec> =
        remote.iter().map(|&(a, n)| libc::iovec { iov_base: a as *mut libc::c_void, iov_len: n }).collect();
    // SAFETY: local iovecs point to caller-owned writable buffers of the stated lengths;
    // remote iovecs are only interpreted by the kernel in the other process.
    let n = unsafe { libc::process_vm_readv(pid, l.as_ptr(), l.len() as u64, r.as_ptr(), r.len() as u64, 0) };
    cvt(n as i64).map(|n| n as usize)
}

/// process_vm_readv of `remote` ranges of `pid` into the `local` buffers (in order).
pub fn vm_readv_into(pid: i32, local: &mut [&mut [u8]], remote: &[(u64, usize)]) -> Result<usize> {
    let mut l: Vec<(*mut u8, usize)> = local.iter_mut().map(|b| (b.as_mut_ptr(), b.len())).collect();
    // SAFETY: each pointer comes from a distinct &mut [u8] of that length, borrowed
    // mutably for the whole call.
    unsafe { vm_readv(pid, &mut l, remote) }
}

/// Refuses (EPERM) a process that shares our address space (ourselves, or a CLONE_VM
/// child): writing "its" memory would write ours behind Rust's back.
fn not_our_memory(pid: i32) -> Result<()> {
    const KCMP_VM: i32 = 1;
    let me = getpid();
    if pid == me || kcmp(me, pid, KCMP_VM, 0, 0)? == 0 {
        return Err(Error::from_raw_os_error(libc::EPERM));
    }
    Ok(())
}

/// process_vm_writev: local buffers (ptr,len) must be readable memory we own (the kernel
/// only reads them: a bad pointer is EFAULT). `pid` must not share our address space
/// (EPERM).
pub fn vm_writev(pid: i32, local: &[(*const u8, usize)], remote: &[(u64, usize)]) -> Result<usize> {
    not_our_memory(pid)?;
    let l: Vec<libc::iovec> =
        local.iter().map(|&(p, n)| libc::iovec { iov_base: p as *mut libc::c_void, iov_len: n }).collect();
    let r: Vec<libc::iovec> =
        remote.iter().map(|&(a, n)| libc::iovec { iov_base: a as *mut libc::c_void, iov_len: n }).collect();
    // SAFETY: local iovecs point to caller-owned readable buffers of the stated lengths.
    let n = unsafe { libc::process_vm_writev(pid, l.as_ptr(), l.len() as u64, r.as_ptr(), r.len() as u64, 0) };
    cvt(n as i64).map(|n| n as usize)
}

pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = c(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_open with flags (PIDFD_NONBLOCK = O_NONBLOCK, PIDFD_THREAD = O_EXCL).
pub fn pidfd_open_flags(pid: i32, flags: u32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = c(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) })?;
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A pidfd (opened with `flags`) of a process that has exited and been reaped: a child
/// forked for it, which waits for EOF on a pipe, is pidfd_open'ed, let go, and reaped.
/// Safe in a multi-threaded caller: the child only calls read(2) and _exit(2).
pub fn exited_pidfd(flags: u32) -> Result<OwnedFd> {
    let (r, w) = pipe2(libc::O_CLOEXEC)?;
    // SAFETY: the child runs only async-signal-safe calls (read, _exit) on memory it
    // owns (its copy of a local byte), so it never touches a lock another thread of
    // ours may have held at the fork.
    let child = c(unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) })? as i32;
    if child == 0 {
        let mut b = 0u8;
        // SAFETY: closes its copy of the write end (so the parent's drop is EOF), a
        // one-byte read into a local; then the child exits without unwinding.
        unsafe {
            libc::close(w.as_raw_fd());
            libc::read(r.as_raw_fd(), std::ptr::addr_of_mut!(b).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(r);
    let fd = pidfd_open_flags(child, flags);
    drop(w);
    let _ = waitpid(child, libc::__WALL);
    fd
}

/// Duplicates fd `target_fd` of the process behind `pidfd` into our fd table.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, target_fd: i32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = c(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target_fd, 0) })?;
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub const KCMP_FILE: i32 = 0;
/// kcmp type comparing two tasks' SysV semaphore undo lists (none = NULL).
pub const KCMP_SYSVSEM: i32 = 6;

/// kcmp: 0 if equal, 1/2 ordering otherwise.
pub fn kcmp(pid1: i32, pid2: i32, ty: i32, a: u64, b: u64) -> Result<i64> {
    // SAFETY: plain syscall with integer arguments.
    c(unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, ty, a, b) })
}

pub fn pipe2(flags: i32) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid 2-int array.
    c(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } as libc::c_long)?;
    // SAFETY: both fds are new and owned by us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// tee(2): duplicate up to len bytes from pipe `src` into pipe `dst` without consuming.
pub fn tee(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: usize, flags: u32) -> Result<usize> {
    // SAFETY: plain syscall on fds we hold.
    c(unsafe { libc::tee(src.as_raw_fd(), dst.as_raw_fd(), len, flags) } as libc::c_long).map(|n| n as usize)
}

/// fcntl with an integer argument; commands whose argument is a pointer (locks,
/// F_GETOWN_EX, read/write hints...) are refused with EINVAL: the kernel would read or
/// write memory at `arg`.
pub fn fcntl(fd: RawFd, cmd: i32, arg: i64) -> Result<i64> {
    const INT_CMDS: [i32; 17] = [
        libc::F_DUPFD,
        libc::F_DUPFD_CLOEXEC,
        libc::F_GETFD,
        libc::F_SETFD,
        libc::F_GETFL,
        libc::F_SETFL,
        libc::F_GETOWN,
        libc::F_SETOWN,
        crate::kabi::F_GETSIG,
        crate::kabi::F_SETSIG,
        libc::F_GETLEASE,
        libc::F_SETLEASE,
        libc::F_NOTIFY,
        libc::F_GETPIPE_SZ,
        libc::F_SETPIPE_SZ,
        libc::F_ADD_SEALS,
        libc::F_GET_SEALS,
    ];
    if !INT_CMDS.contains(&cmd) {
        return Err(Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: one of the commands above, whose argument is an integer.
    c(unsafe { libc::fcntl(fd, cmd, arg) } as libc::c_long)
}

/// fcntl(F_GETOWN_EX): the owner of an open file description (who gets SIGIO/SIGURG),
/// its pid numbered in the caller's PID namespace (0 if none or not visible there).
pub fn getown_ex(fd: BorrowedFd<'_>) -> Result<crate::kabi::FOwnerEx> {
    let mut o = crate::kabi::FOwnerEx::default();
    // SAFETY: F_GETOWN_EX writes one struct f_owner_ex to the pointer, which is valid.
    c(unsafe { libc::fcntl(fd.as_raw_fd(), crate::kabi::F_GETOWN_EX, &mut o as *mut crate::kabi::FOwnerEx) } as libc::c_long)?;
    Ok(o)
}

/// A close-on-exec duplicate of `fd` (F_DUPFD_CLOEXEC), numbered `min` or above.
pub fn dup_fd(fd: BorrowedFd<'_>, min: i32) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer.
    let d = c(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) } as libc::c_long)?;
    Ok(owned(d))
}

pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: buf is a valid writable buffer of buf.len() bytes.
    c(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } as libc::c_long).map(|n| n as usize)
}

pub fn write_fd(fd: BorrowedFd<'_>, buf: &[u8]) -> Result<usize> {
    // SAFETY: buf is a valid readable buffer of buf.len() bytes.
    c(unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) } as libc::c_long).map(|n| n as usize)
}

/// write(2) until all of `buf` is written.
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<()> {
    while !buf.is_empty() {
        let n = write_fd(fd, buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

pub fn lseek(fd: RawFd, off: i64, whence: i32) -> Result<i64> {
    // SAFETY: plain syscall.
    c(unsafe { libc::lseek(fd, off, whence) } as libc::c_long)
}

/// The filesystem type (statfs f_type, e.g. MQUEUE_MAGIC) of the file at `path`
/// (a /proc/PID/fd/N link is followed to the open file).
pub fn statfs_type(path: &std::ffi::CStr) -> Result<i64> {
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated; st is a valid out pointer.
    c(unsafe { libc::statfs(path.as_ptr(), &mut st) } as libc::c_long)?;
    Ok(st.f_type as i64)
}

/// statfs f_type of the POSIX message queue filesystem (mq_open).
pub const MQUEUE_MAGIC: i64 = 0x1980_0202;

pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, opt: i32) -> Result<i32> {
    let mut v: i32 = 0;
    let mut l = 4 as libc::socklen_t;
    // SAFETY: v and l are valid out pointers for an int option.
    c(unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, (&mut v as *mut i32).cast(), &mut l) } as libc::c_long)?;
    Ok(v)
}

pub fn get_robust_list(tid: i32) -> Result<(u64, u64)> {
    let mut head: u64 = 0;
    let mut len: usize = 0;
    // SAFETY: out pointers are valid.
    c(unsafe { libc::syscall(libc::SYS_get_robust_list, tid, &mut head as *mut u64, &mut len as *mut usize) })?;
    Ok((head, len as u64))
}

pub fn prlimit(pid: i32, res: i32, new: Option<(u64, u64)>) -> Result<(u64, u64)> {
    let n = new.map(|(a, b)| libc::rlimit64 { rlim_cur: a, rlim_max: b });
    let mut old = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    let np = n.as_ref().map_or(std::ptr::null(), |r| r as *const libc::rlimit64);
    // SAFETY: pointers are null or point to valid rlimit64 values.
    c(unsafe { libc::prlimit64(pid, res as libc::__rlimit_resource_t, np, &mut old) } as libc::c_long)?;
    Ok((old.rlim_cur, old.rlim_max))
}

pub fn sched_get(tid: i32) -> Result<(i32, i32)> {
    // SAFETY: plain syscall.
    let pol = c(unsafe { libc::sched_getscheduler(tid) } as libc::c_long)? as i32;
    let mut p = libc::sched_param { sched_priority: 0 };
    // SAFETY: p is a valid out pointer.
    c(unsafe { libc::sched_getparam(tid, &mut p) } as libc::c_long)?;
    Ok((pol, p.sched_priority))
}

pub fn sched_set(tid: i32, policy: i32, prio: i32) -> Result<()> {
    let p = libc::sched_param { sched_priority: prio };
    // SAFETY: p is a valid pointer.
    c(unsafe { libc::sched_setscheduler(tid, policy, &p) } as libc::c_long).map(drop)
}

/// sched_getattr(tid): policy, flags, nice, priority and SCHED_DEADLINE parameters.
pub fn sched_getattr(tid: i32) -> Result<crate::kabi::SchedAttr> {
    let mut a = crate::kabi::SchedAttr::default();
    let size = std::mem::size_of::<crate::kabi::SchedAttr>() as libc::c_long;
    // SAFETY: a is a valid out buffer of `size` bytes.
    c(unsafe { libc::syscall(libc::SYS_sched_getattr, tid as libc::c_long, &mut a as *mut crate::kabi::SchedAttr, size, 0 as libc::c_long) })?;
    Ok(a)
}

/// sched_setattr(tid, attr, 0).
pub fn sched_setattr(tid: i32, attr: &crate::kabi::SchedAttr) -> Result<()> {
    let mut a = *attr;
    a.size = std::mem::size_of::<crate::kabi::SchedAttr>() as u32;
    // SAFETY: a is a valid sched_attr of the size it states.
    c(unsafe { libc::syscall(libc::SYS_sched_setattr, tid as libc::c_long, &a as *const crate::kabi::SchedAttr, 0 as libc::c_long) }).map(drop)
}

pub fn get_affinity(tid: i32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 128];
    // SAFETY: buf is a valid out buffer of its length.
    let n = c(unsafe { libc::syscall(libc::SYS_sched_getaffinity, tid, buf.len(), buf.as_mut_ptr()) })?;
    buf.truncate(n as usize);
    Ok(buf)
}

pub fn set_affinity(tid: i32, mask: &[u8]) -> Result<()> {
    // SAFETY: mask is a valid buffer of its length.
    c(unsafe { libc::syscall(libc::SYS_sched_setaffinity, tid, mask.len(), mask.as_ptr()) }).map(drop)
}

pub fn get_nice(tid: i32) -> Result<i32> {
    // SAFETY: clear errno, call, check errno: getpriority can return -1 legitimately.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: plain syscall.
    let r = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as u32) };
    if r == -1 && Error::last_os_error().raw_os_error() != Some(0) {
        return Err(Error::last_os_error());
    }
    Ok(r)
}

pub fn set_nice(tid: i32, nice: i32) -> Result<()> {
    // SAFETY: plain syscall.
    c(unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as u32, nice) } as libc::c_long).map(drop)
}

const IOPRIO_WHO_PROCESS: libc::c_long = 1;

/// ioprio_get(IOPRIO_WHO_PROCESS, tid): the thread's I/O priority (class << 13 | data;
/// 0 = none set, it follows its nice value).
pub fn ioprio_get(tid: i32) -> Result<i32> {
    // SAFETY: plain syscall with integer arguments.
    c(unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, tid as libc::c_long) }).map(|v| v as i32)
}

/// ioprio_set(IOPRIO_WHO_PROCESS, tid, prio).
pub fn ioprio_set(tid: i32, prio: i32) -> Result<()> {
    // SAFETY: plain syscall with integer arguments.
    c(unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid as libc::c_long, prio as libc::c_long) }).map(drop)
}

pub fn kill(pid: i32, sig: i32) -> Result<()> {
    // SAFETY: plain syscall.
    c(unsafe { libc::kill(pid, sig) } as libc::c_long).map(drop)
}

pub fn tgkill(pid: i32, tid: i32, sig: i32) -> Result<()> {
    // SAFETY: plain syscall.
    c(unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, sig) }).map(drop)
}

pub fn set_child_subreaper() -> Result<()> {
    subreaper(true)
}

/// PR_SET_CHILD_SUBREAPER on (orphaned descendants come to us) or off.
pub fn subreaper(on: bool) -> Result<()> {
    // SAFETY: prctl with integer args.
    c(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, on as libc::c_ulong, 0, 0, 0) } as libc::c_long).map(drop)
}

pub fn getpid() -> i32 {
    // SAFETY: always succeeds.
    unsafe { libc::getpid() }
}

pub fn getpgrp() -> i32 {
    // SAFETY: always succeeds.
    unsafe { libc::getpgrp() }
}

pub fn memfd_create(name: &str, flags: u32) -> Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).map_err(Error::other)?;
    // SAFETY: cname is a valid C string.
    let fd = c(unsafe { libc::memfd_create(cname.as_ptr(), flags) } as libc::c_long)?;
    // SAFETY: new fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A read-only shared mapping of a whole file, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}
// SAFETY: the mapping is read-only and owned; sharing &[u8] views across threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn map_file(f: &std::fs::File, len: usize, populate: bool) -> Result<Mapping> {
        if len == 0 {
            return Ok(Mapping { ptr: std::ptr::NonNull::dangling().as_ptr(), len: 0 });
        }
        let flags = libc::MAP_SHARED | if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: new mapping chosen by the kernel; we own it until drop.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, flags, f.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        Ok(Mapping { ptr: p.cast(), len })
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is a live read-only mapping owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping our own mapping exactly once.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }
}

/// An anonymous page-aligned buffer (for process_vm_readv targets), unmapped on drop.
pub struct AnonBuf {
    ptr: *mut u8,
    len: usize,
}
// SAFETY: owned memory, accessed through &/&mut borrows only.
unsafe impl Send for AnonBuf {}

impl AnonBuf {
    pub fn new(len: usize) -> Result<AnonBuf> {
        // SAFETY: fresh private anonymous mapping owned by the returned value.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        Ok(AnonBuf { ptr: p.cast(), len })
    }
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    /// Start address of the buffer (page-aligned).
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: live mapping owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    /// The buffer as native-endian u64 words (a trailing partial word is left out).
    pub fn as_words(&self) -> &[u64] {
        // SAFETY: live mapping owned by self; mmap returns a page-aligned, hence u64-aligned,
        // pointer; len / 8 words lie inside the mapping; every bit pattern is a valid u64.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u64>(), self.len / 8) }
    }
    /// As [`as_words`](Self::as_words), mutably.
    pub fn as_mut_words(&mut self) -> &mut [u64] {
        // SAFETY: as in as_words; the mapping is writable and &mut self makes the borrow
        // exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<u64>(), self.len / 8) }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for AnonBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping exactly once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// clone3 arguments (kernel struct clone_args, v2 with set_tid and cgroup).
pub use crate::kabi::CloneArgs;

/// Waits (up to a second) until the calling process has exactly one thread: threads that
/// were joined may still be tearing down (a scoped thread counts as finished before its
/// TLS destructors and exit ran, and may hold the allocator's lock meanwhile). An error if
/// more remain, or if it cannot tell. No allocation (fine right after a fork).
pub fn ensure_single_threaded() -> Result<()> {
    let mut last = 0;
    for _ in 0..1000 {
        match thread_count()? {
            1 => return Ok(()),
            n => last = n,
        }
        let _ = nanosleep(std::time::Duration::from_millis(1));
    }
    Err(Error::other(format!("refusing to fork a process with {last} threads (its child would run our code with other threads' locks held)")))
}

/// num_threads of /proc/self/stat, read without allocating.
fn thread_count() -> Result<u64> {
    let mut buf = [0u8; 2048];
    // SAFETY: NUL-terminated literal path; the fd is ours and closed below; read writes at
    // most buf.len() bytes into the local buffer.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/stat".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(Error::last_os_error());
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n < 0 {
        return Err(Error::last_os_error());
    }
    let b = &buf[..n as usize];
    // fields after the command (which may hold spaces and parentheses): state is field 3,
    // num_threads field 20
    let rest = b.iter().rposition(|&c| c == b')').map(|p| &b[p + 1..]).unwrap_or(&[]);
    let threads = rest.split(|&c| c == b' ').filter(|f| !f.is_empty()).nth(17).and_then(|f| std::str::from_utf8(f).ok()?.parse::<u64>().ok());
    threads.ok_or_else(|| Error::other("cannot tell whether this process is single-threaded (/proc/self/stat)"))
}

/// clone flags that make the child share our memory, signal handlers or TLS: never for a
/// fork-like clone (the child would run on our stack and heap at the same time as we do).
const SHARING_FLAGS: u64 = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND | libc::CLONE_SETTLS) as u64;

/// Fork-like clone3 giving the child PID `pid` (in our PID namespace). Returns 0 in the
/// child, the child's PID in the parent. Checked like [`clone_fork`].
pub fn fork_with_pid(pid: i32) -> Result<i32> {
    clone_fork(&[pid], 0, libc::SIGCHLD)
}

/// fork() through clone3: `set_tid` gives the child's pid in each PID namespace level,
/// innermost first (empty: any pid); `flags` may add CLONE_NEWPID, CLONE_FILES...;
/// `exit_signal` is what the child sends its parent when it dies. The child continues
/// running the caller's code, so this checks what that needs: the caller is
/// single-threaded ([`ensure_single_threaded`]) and `flags` share no memory, signal
/// handlers or TLS (EINVAL otherwise).
pub fn clone_fork(set_tid: &[i32], flags: u64, exit_signal: i32) -> Result<i32> {
    if flags & SHARING_FLAGS != 0 {
        return Err(Error::from_raw_os_error(libc::EINVAL));
    }
    ensure_single_threaded()?;
    // SAFETY: checked just above: one thread, and a child with its own copy of our memory.
    unsafe { clone_fork_unchecked(set_tid, flags, exit_signal) }
}

/// [`clone_fork`] without its checks.
///
/// # Safety
/// The calling process must be single-threaded (the child runs the caller's code with
/// whatever locks other threads held), and `flags` must not contain CLONE_VM,
/// CLONE_THREAD, CLONE_SIGHAND or CLONE_SETTLS (the child would run on our stack and
/// memory concurrently with us).
pub unsafe fn clone_fork_unchecked(set_tid: &[i32], flags: u64, exit_signal: i32) -> Result<i32> {
    let args = CloneArgs {
        flags,
        exit_signal: exit_signal as u64,
        set_tid: if set_tid.is_empty() { 0 } else { set_tid.as_ptr() as u64 },
        set_tid_size: set_tid.len() as u64,
        ..Default::default()
    };
    // SAFETY: fork semantics (the caller passes no sharing flags and is single-threaded):
    // the child gets a copy of our address space and returns here with 0; the parent gets
    // the child's PID. set_tid points to a live array of set_tid_size pids.
    c(unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) })
        .map(|r| r as i32)
}

/// clone3 for a child that shares our address space (CLONE_VM, with CLONE_SIGHAND...):
/// it starts on a fresh stack of `stack_len` bytes and runs `f`, which should end in
/// exit or park (if it returns, the child exits with 127). Returns the child's pid in the
/// parent.
///
/// Checked here: the caller is single-threaded and `flags` holds CLONE_VM but not
/// CLONE_THREAD or CLONE_SETTLS (EINVAL). NOT checked, and left to the caller (this is
/// still a safe fn only because restore/spawn.rs, outside stasis-sys, calls it; see the
/// audit notes): `f` and everything it borrows must stay valid for as long as the child
/// runs them (the caller waits until the child parked or died before unwinding past
/// them), and the two never run Rust code at the same time (they share TLS: errno, the
/// allocator's thread caches).
pub fn clone_vm_with(set_tid: &[i32], flags: u64, exit_signal: i32, stack_len: usize, f: &(dyn Fn() + Sync)) -> Result<i32> {
    let vm = libc::CLONE_VM as u64;
    if flags & vm == 0 || flags & (libc::CLONE_THREAD | libc::CLONE_SETTLS) as u64 != 0 {
        return Err(Error::from_raw_os_error(libc::EINVAL));
    }
    ensure_single_threaded()?;
    // SAFETY: fresh private anonymous mapping, owned by the child from now on (leaked).
    let stack = unsafe {
        libc::mmap(std::ptr::null_mut(), stack_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    if stack == libc::MAP_FAILED {
        return Err(Error::last_os_error());
    }
    let args = CloneArgs {
        flags,
        exit_signal: exit_signal as u64,
        stack: stack as u64,
        stack_size: stack_len as u64,
        set_tid: if set_tid.is_empty() { 0 } else { set_tid.as_ptr() as u64 },
        set_tid_size: set_tid.len() as u64,
        ..Default::default()
    };
    // The closure reference, boxed so the child finds it at a stable heap address.
    let boxed: Box<&(dyn Fn() + Sync)> = Box::new(f);
    let arg = Box::into_raw(boxed) as usize;
    extern "C" fn entry(arg: usize) -> ! {
        // SAFETY: `arg` is the leaked Box<&dyn Fn() -> !> made above; the memory it and
        // the closure live in is shared with the parent, which never unwinds past them.
        let f: &(dyn Fn() + Sync) = unsafe { *(arg as *const &(dyn Fn() + Sync)) };
        f();
        child::exit(127)
    }
    let ret: i64;
    // SAFETY: clone3 with CLONE_VM and a stack: the child starts at the instruction after
    // `syscall` with rsp at the top of the new stack and every other register as ours; it
    // calls entry(arg) (r12/r13 survive the syscall) and never comes back (ud2 guards).
    // The parent falls through with the child's pid (or -errno) in rax.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "and rsp, -16",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") &args as *const CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") entry as *const () as usize,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    if ret < 0 {
        // SAFETY: the child does not exist; reclaim what it would have used.
        unsafe {
            drop(Box::from_raw(arg as *mut &(dyn Fn() + Sync)));
            libc::munmap(stack, stack_len);
        }
        return Err(Error::from_raw_os_error(-ret as i32));
    }
    Ok(ret as i32)
}

/// SIOCGIFFLAGS of interface `name` in the calling thread's network namespace.
/// The network namespace a socket belongs to (ioctl SIOCGSKNS), as a new fd.
pub fn sock_netns(sock: BorrowedFd<'_>) -> Result<OwnedFd> {
    const SIOCGSKNS: libc::c_ulong = 0x894C;
    // SAFETY: SIOCGSKNS takes no argument and returns a new fd we then own.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), SIOCGSKNS) };
    c(r as libc::c_long)?;
    // SAFETY: r is a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

pub fn if_flags(name: &str) -> Result<i16> {
    let s = socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)?;
    // SAFETY: zeroed ifreq, name copied with room for the NUL; ioctl fills ifr_flags.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in name.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
            ifr.ifr_name[i] = b as libc::c_char;
        }
        c(libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) as libc::c_long)?;
        Ok(ifr.ifr_ifru.ifru_flags)
    }
}

/// prctl(PR_SET_PDEATHSIG, 0).
pub fn clear_pdeathsig() -> Result<()> {
    // SAFETY: prctl with integer args.
    c(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) } as libc::c_long).map(drop)
}

/// Plain fork(), refused (with an error) unless the caller is single-threaded.
pub fn fork() -> Result<i32> {
    ensure_single_threaded()?;
    // SAFETY: checked just above: the child, a copy of our only thread, holds no lock
    // another thread held.
    c(unsafe { libc::fork() } as libc::c_long).map(|r| r as i32)
}

pub mod child;
mod fds;
mod mq;
pub mod netsock;
mod sockopt;
mod tty;

pub use fds::*;
pub use mq::*;
pub use sockopt::*;
pub use tty::*;
use fds::owned;

impl AnonBuf {
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: live writable mapping owned by self, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

pub fn open(path: &std::ffi::CStr, flags: i32, mode: u32) -> Result<OwnedFd> {
    // SAFETY: valid C string; mode passed as the variadic argument.
    let fd = c(unsafe { libc::open(path.as_ptr(), flags, mode) } as libc::c_long)?;
    // SAFETY: new fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Gives the nameless (O_TMPFILE) file `fd` the name `path` (linkat with AT_EMPTY_PATH);
/// fails with EEXIST if anything is there (nothing is replaced).
pub fn link_fd(fd: BorrowedFd, path: &std::ffi::CStr) -> Result<()> {
    // SAFETY: valid fd and C strings; the kernel reads them during the call only.
    c(unsafe { libc::linkat(fd.as_raw_fd(), c"".as_ptr(), libc::AT_FDCWD, path.as_ptr(), libc::AT_EMPTY_PATH) } as libc::c_long)?;
    Ok(())
}

/// Gives the nameless (O_TMPFILE) file `fd` the name `name` in directory `dir`
/// (linkat with AT_EMPTY_PATH); fails with EEXIST if anything is there (nothing is
/// replaced, no link followed).
pub fn link_fd_at(fd: BorrowedFd, dir: BorrowedFd, name: &std::ffi::CStr) -> Result<()> {
    // SAFETY: valid fds and C strings; the kernel reads them during the call only.
    c(unsafe { libc::linkat(fd.as_raw_fd(), c"".as_ptr(), dir.as_raw_fd(), name.as_ptr(), libc::AT_EMPTY_PATH) } as libc::c_long)?;
    Ok(())
}

/// Lets SIGPIPE end this process again (Rust's runtime ignores it): for a command
/// whose only output is stdout (`stasis inspect | head`), where a closed reader
/// should end it quietly, as it ends any other filter.
pub fn default_sigpipe() {
    // SAFETY: SIG_DFL is a valid disposition for SIGPIPE; no handler is installed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Renames `from` to `to` unless something is at `to` already (renameat2
/// RENAME_NOREPLACE: EEXIST then, nothing replaced).
pub fn rename_noreplace(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    let f = std::ffi::CString::new(from.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    let t = std::ffi::CString::new(to.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: NUL-terminated paths the kernel reads during the call only.
    c(unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) })?;
    Ok(())
}

/// statfs f_type of tmpfs (shmem).
pub const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Creates the node `name` (a FIFO or a character device: `mode` carries S_IFMT) in
/// directory `dir` (mknodat); never follows or replaces anything (EEXIST).
pub fn mknod_at(dir: BorrowedFd, name: &std::ffi::CStr, mode: u32, rdev: u64) -> Result<()> {
    // SAFETY: valid fd and C string; the kernel reads them during the call only.
    c(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) } as libc::c_long)?;
    Ok(())
}

/// Creates directory `name` in directory `dir` (mkdirat).
pub fn mkdir_at(dir: BorrowedFd, name: &std::ffi::CStr, mode: u32) -> Result<()> {
    // SAFETY: valid fd and C string; the kernel reads them during the call only.
    c(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) } as libc::c_long)?;
    Ok(())
}

/// Opens `name` relative to directory `dir` (openat).
pub fn open_at(dir: BorrowedFd, name: &std::ffi::CStr, flags: i32, mode: u32) -> Result<OwnedFd> {
    // SAFETY: valid fd and C string; the kernel reads them during the call only.
    let fd = c(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) } as libc::c_long)?;
    // SAFETY: new fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Removes `name` (a directory with AT_REMOVEDIR) from directory `dir` (unlinkat).
pub fn unlink_at(dir: BorrowedFd, name: &std::ffi::CStr, flags: i32) -> Result<()> {
    // SAFETY: valid fd and C string; the kernel reads them during the call only.
    c(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) } as libc::c_long)?;
    Ok(())
}

/// A MAP_SHARED|MAP_ANONYMOUS region in our own address space (a shmem object),
/// unmapped on drop.
pub struct SharedAnon {
    ptr: *mut u8,
    len: usize,
}

impl SharedAnon {
    pub fn new(len: usize) -> Result<SharedAnon> {
        SharedAnon::with_flags(len, 0)
    }
    /// With extra mmap flags (MAP_HUGETLB and a size: `huge_size_bits`; MAP_NORESERVE).
    pub fn with_flags(len: usize, extra: i32) -> Result<SharedAnon> {
        // SAFETY: fresh shared anonymous mapping owned by the returned value.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS | extra, -1, 0)
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        Ok(SharedAnon { ptr: p.cast(), len })
    }
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for SharedAnon {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping exactly once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// hugetlbfs's magic number (statfs f_type).
const HUGETLBFS_MAGIC: i64 = 0x958458f6;

/// The huge page size of the hugetlbfs file behind `fd` (statfs f_bsize), or None when
/// the file is not on hugetlbfs.
pub fn hugetlb_page_size(fd: BorrowedFd<'_>) -> Result<Option<u64>> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: st is a writable statfs buffer; fd is a live descriptor.
    c(unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) } as libc::c_long)?;
    // SAFETY: fstatfs succeeded and filled the struct (it was zeroed before anyway).
    let st = unsafe { st.assume_init() };
    Ok((st.f_type == HUGETLBFS_MAGIC).then_some(st.f_bsize as u64))
}

/// mmap flag bits asking for huge pages of `size` bytes (MAP_HUGETLB with log2(size) in
/// the MAP_HUGE_SHIFT field; MFD_HUGETLB and SHM_HUGETLB use the same encoding with their
/// own flag bit). `size` must be a power of two.
pub fn huge_size_bits(size: u64) -> i32 {
    (size.trailing_zeros() as i32) << libc::MAP_HUGE_SHIFT
}

/// A read-write shared mapping of the first `len` bytes of a file, unmapped on drop (to
/// fill files that have no write(2), such as hugetlbfs files).
pub struct FileMapMut {
    ptr: *mut u8,
    len: usize,
}

impl FileMapMut {
    pub fn new(f: BorrowedFd<'_>, len: usize) -> Result<FileMapMut> {
        if len == 0 {
            return Ok(FileMapMut { ptr: std::ptr::NonNull::dangling().as_ptr(), len: 0 });
        }
        // SAFETY: new mapping chosen by the kernel; we own it until drop.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, f.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        Ok(FileMapMut { ptr: p.cast(), len })
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr..ptr+len is a live writable mapping owned by self; &mut self makes
        // the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for FileMapMut {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping our own mapping exactly once.
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }
}

/// An address range reserved in the calling process (PROT_NONE, MAP_NORESERVE) where a
/// restore child builds private memory before it forks, so that its children inherit
/// the pages copy-on-write. Pieces are mapped over it (MAP_FIXED, only inside the range)
/// and written only through it; no Rust reference into the range is ever handed out,
/// so replacing or writing its pages cannot invalidate anything of ours. A forked child
/// inherits the range and what is mapped in it. Unmapped on drop.
pub struct Reservation {
    addr: u64,
    len: u64,
}

impl Reservation {
    /// Reserves exactly [addr, addr+len) (page-aligned): EEXIST if anything is mapped
    /// there (MAP_FIXED_NOREPLACE never replaces a mapping).
    pub fn at(addr: u64, len: u64) -> Result<Reservation> {
        if addr % 4096 != 0 || len == 0 || len % 4096 != 0 || addr.checked_add(len).is_none() {
            return Err(Error::from_raw_os_error(libc::EINVAL));
        }
        let fl = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED_NOREPLACE;
        // SAFETY: MAP_FIXED_NOREPLACE only creates a mapping where nothing is mapped;
        // the new mapping is owned by the returned value.
        let p = unsafe { libc::mmap(addr as *mut libc::c_void, len as usize, libc::PROT_NONE, fl, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        if p as u64 != addr {
            // SAFETY: unmapping the mapping just made (an old kernel without
            // MAP_FIXED_NOREPLACE treats it as a hint).
            unsafe { libc::munmap(p, len as usize) };
            return Err(Error::from_raw_os_error(libc::EEXIST));
        }
        Ok(Reservation { addr, len })
    }

    pub fn addr(&self) -> u64 {
        self.addr
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of [off, off+len) inside the range (EINVAL if it is not inside, or
    /// not page-aligned).
    fn inside(&self, off: u64, len: u64) -> Result<u64> {
        match off.checked_add(len) {
            Some(end) if end <= self.len && off % 4096 == 0 && len % 4096 == 0 && len > 0 => Ok(self.addr + off),
            _ => Err(Error::from_raw_os_error(libc::EINVAL)),
        }
    }

    /// Maps [off, off+len) of the range read-write and private: anonymous memory (`fd`
    /// < 0) or the file `fd` from byte `file_off`; `growsdown` adds MAP_GROWSDOWN.
    pub fn map_private(&self, off: u64, len: u64, fd: i32, file_off: u64, growsdown: bool) -> Result<()> {
        let a = self.inside(off, len)?;
        let mut fl = libc::MAP_PRIVATE | libc::MAP_FIXED;
        if fd < 0 {
            fl |= libc::MAP_ANONYMOUS;
        }
        if growsdown {
            fl |= libc::MAP_GROWSDOWN;
        }
        let (fd, file_off) = if fd < 0 { (-1, 0) } else { (fd, file_off as libc::off_t) };
        // SAFETY: MAP_FIXED only replaces pages inside our reservation, which nothing
        // references (see the type's documentation).
        let p = unsafe { libc::mmap(a as *mut libc::c_void, len as usize, libc::PROT_READ | libc::PROT_WRITE, fl, fd, file_off) };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        Ok(())
    }

    /// Copies each (offset, bytes) into the range, through process_vm_writev on
    /// ourselves: a piece that is not mapped writable fails with EFAULT instead of
    /// faulting. At most 1024 pieces per call to the kernel.
    pub fn write(&self, pieces: &[(u64, &[u8])]) -> Result<()> {
        for batch in pieces.chunks(1024) {
            let mut l = Vec::with_capacity(batch.len());
            let mut r = Vec::with_capacity(batch.len());
            let mut want = 0usize;
            for &(off, b) in batch {
                let a = match off.checked_add(b.len() as u64) {
                    Some(end) if end <= self.len => self.addr + off,
                    _ => return Err(Error::from_raw_os_error(libc::EINVAL)),
                };
                l.push(libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() });
                r.push(libc::iovec { iov_base: a as *mut libc::c_void, iov_len: b.len() });
                want += b.len();
            }
            // SAFETY: the local iovecs are borrowed slices (only read); the remote ones
            // lie inside our reservation, which nothing references; the kernel checks
            // that they are mapped and writable.
            let n = unsafe { libc::process_vm_writev(getpid(), l.as_ptr(), l.len() as u64, r.as_ptr(), r.len() as u64, 0) };
            let n = cvt(n as i64)? as usize;
            if n != want {
                return Err(Error::from_raw_os_error(libc::EFAULT));
            }
        }
        Ok(())
    }

    /// MADV_DONTNEED over [off, off+len): anonymous pages read as zeros again, private
    /// file pages as the file.
    pub fn discard(&self, off: u64, len: u64) -> Result<()> {
        let a = self.inside(off, len)?;
        // SAFETY: only pages inside our reservation change (see the type's documentation).
        cvt(unsafe { libc::madvise(a as *mut libc::c_void, len as usize, libc::MADV_DONTNEED) } as i64)?;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: unmapping our own range exactly once.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len as usize) };
    }
}

pub fn getsid() -> i32 {
    // SAFETY: getsid(0) on ourselves always succeeds.
    unsafe { libc::getsid(0) }
}

pub fn getppid() -> i32 {
    // SAFETY: always succeeds.
    unsafe { libc::getppid() }
}

/// Whether everything mapped in [addr, addr+len) of the calling process is an earlier
/// trampoline: anonymous private RWX mappings lying wholly inside the range.
fn only_trampolines_in(addr: u64, len: u64) -> bool {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return false };
    let end = addr.saturating_add(len);
    maps.lines().all(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let Some((s, e)) = f.first().and_then(|r| r.split_once('-')) else { return false };
        let (Ok(s), Ok(e)) = (u64::from_str_radix(s, 16), u64::from_str_radix(e, 16)) else { return false };
        if e <= addr || s >= end {
            return true; // elsewhere
        }
        s >= addr && e <= end && f.get(1) == Some(&"rwxp") && f.get(4) == Some(&"0") && f.len() == 5
    })
}

/// Maps `len` bytes at exactly `addr` (RWX, private anonymous) in the calling process
/// and writes `code` at its start. For a freshly forked restore child.
/// A trampoline inherited from a parent that shares (or shared, at fork) its address
/// space is replaced (EEXIST from MAP_FIXED_NOREPLACE), and only that: if anything else
/// of ours is mapped there (not an anonymous RWX mapping inside the range), EEXIST.
pub fn map_fixed_code(addr: u64, len: usize, code: &[u8]) -> Result<()> {
    if code.len() > len {
        return Err(Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the MAP_FIXED retry
    // only replaces earlier trampolines (checked just before it: nothing of ours that
    // Rust code could reference); we only write into the new mapping, which is
    // len >= code.len() bytes.
    unsafe {
        let prot = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        let fl = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        let mut p = libc::mmap(addr as *mut libc::c_void, len, prot, fl | libc::MAP_FIXED_NOREPLACE, -1, 0);
        if p == libc::MAP_FAILED && Error::last_os_error().raw_os_error() == Some(libc::EEXIST) {
            if !only_trampolines_in(addr, len as u64) {
                return Err(Error::from_raw_os_error(libc::EEXIST));
            }
            p = libc::mmap(addr as *mut libc::c_void, len, prot, fl | libc::MAP_FIXED, -1, 0);
        }
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        if p as u64 != addr {
            libc::munmap(p, len);
            return Err(Error::other("mapping landed elsewhere"));
        }
        std::ptr::copy_nonoverlapping(code.as_ptr(), p as *mut u8, code.len());
    }
    Ok(())
}

pub fn raise_nofile_limit() {
    if let Ok((_, max)) = prlimit(0, libc::RLIMIT_NOFILE as i32, None) {
        let _ = prlimit(0, libc::RLIMIT_NOFILE as i32, Some((max, max)));
    }
}

/// poll(2) for input on `fd` for at most `timeout_ms`: whether it is readable (or closed
/// by every writer) by then. EINTR counts as not yet.
pub fn readable_within(fd: BorrowedFd<'_>, timeout_ms: i32) -> Result<bool> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for the length of the call.
    match c(unsafe { libc::poll(&mut p, 1, timeout_ms) } as libc::c_long) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(false),
        Err(e) => Err(e),
    }
}

/// poll(2) of `fd` for `events`, without waiting: the events it reports now.
pub fn poll_revents(fd: BorrowedFd<'_>, events: i16) -> Result<i16> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // SAFETY: one valid pollfd for the length of the call.
    c(unsafe { libc::poll(&mut p, 1, 0) } as libc::c_long)?;
    Ok(p.revents)
}

pub fn waitpid(pid: i32, flags: i32) -> Result<i32> {
    let mut st = 0;
    loop {
        // SAFETY: st is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, flags) };
        if r >= 0 {
            return Ok(st);
        }
        let e = Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Non-blocking waitpid(pid, flags | WNOHANG) (pid -1: any child): Some((pid, status)) for a
/// child that changed state, None if none has yet. EINTR is returned, not retried.
pub fn try_waitpid(pid: i32, flags: i32) -> Result<Option<(i32, i32)>> {
    let mut st = 0;
    // SAFETY: st is a valid out pointer; WNOHANG never blocks.
    let r = c(unsafe { libc::waitpid(pid, &mut st, flags | libc::WNOHANG) } as libc::c_long)?;
    Ok((r > 0).then_some((r as i32, st)))
}

/// One nanosleep(2) of `d`, not resumed after a signal handler or an interruption: then it
/// returns Err(EINTR) early.
pub fn nanosleep(d: std::time::Duration) -> Result<()> {
    let ts = libc::timespec { tv_sec: d.as_secs() as libc::time_t, tv_nsec: d.subsec_nanos() as libc::c_long };
    // SAFETY: ts is a valid timespec; a null remainder pointer is allowed.
    c(unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) } as libc::c_long).map(drop)
}

/// sync(2): schedule writeback of all dirty data.
pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGQUIT in the calling thread (and threads it
/// creates later), so an interrupted dump still puts the process back before exiting.
pub fn defer_termination_signals() {
    // SAFETY: sigset operations on a local, zero-initialised set; sigprocmask with valid
    // pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod audit_tests {
    use super::*;

    #[test]
    fn refuses_what_it_cannot_do_soundly() {
        // the test harness runs tests on threads of their own: never single-threaded
        let e = ensure_single_threaded().unwrap_err();
        assert!(e.to_string().contains("threads"), "{e}");
        assert!(fork().is_err());
        assert_eq!(clone_fork(&[], libc::CLONE_VM as u64, libc::SIGCHLD).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        // pointer-taking fcntl commands
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(fcntl(f.as_raw_fd(), libc::F_GETLK, 0x1000).unwrap_err().raw_os_error(), Some(libc::EINVAL));
        assert!(fcntl(f.as_raw_fd(), libc::F_GETFD, 0).is_ok());
        // our own memory
        let b = [1u8; 8];
        assert_eq!(write_mem(getpid(), b.as_ptr() as u64, &[0u8; 8]).unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert_eq!(b, [1u8; 8]);
    }

    #[test]
    fn only_trampolines_are_replaced() {
        let m = AnonBuf::new(4096).unwrap(); // rw-p, not a trampoline
        assert!(!only_trampolines_in(m.addr(), 4096));
        assert!(map_fixed_code(m.addr(), 4096, &[0x0f, 0x05]).is_err());
        assert_eq!(m.as_slice()[0], 0);
    }
}
