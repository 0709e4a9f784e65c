//! Remote control of a ptrace-stopped thread: run one syscall in its context.
//!
//! The thread's registers are replaced by a syscall frame whose instruction pointer is a
//! `syscall` instruction (0f 05) in its address space; PTRACE_SYSCALL runs it to the
//! syscall's entry and then to its exit, where the thread stops before returning to user
//! mode, so nothing after the instruction is fetched (the page holding it may even be
//! unmapped by the syscall itself). Those are ptrace stops, not signals: a single step
//! would end in a SIGTRAP forced on the thread, which resets a blocked SIGTRAP's handler.
//! The caller saves and puts back the thread's real registers.
//!
//! [`RemoteCalls`] is the one interface for "run syscalls inside that process", shared by
//! dump (the parasite) and restore (the builder): the primitive `raw` plus a scratch area
//! in the tracee's memory, and typed calls on top that write their `kabi` struct into the
//! scratch area and read results back from it. The scratch area is bounded: a call whose
//! arguments do not fit fails before anything is written.

use crate::kabi::{self, Pod};
use crate::ptrace::{self, Regs, Stop};
use crate::{sys, Error, Result};

/// A data area in another process's memory (`len` bytes at `addr` of `pid`) that injected
/// syscalls use for their pointer arguments. Every access is bounds-checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scratch {
    pub pid: i32,
    pub addr: u64,
    pub len: u64,
}

impl Scratch {
    /// No area: every access fails.
    pub const NONE: Scratch = Scratch { pid: 0, addr: 0, len: 0 };

    /// Address of `len` bytes at offset `off`, or an error if they do not lie inside the area.
    pub fn at(&self, off: u64, len: usize) -> Result<u64> {
        match off.checked_add(len as u64) {
            Some(end) if end <= self.len => Ok(self.addr + off),
            _ => Err(Error::other(format!(
                "{len} bytes at offset {off} do not fit the {}-byte scratch area of pid {}",
                self.len, self.pid
            ))),
        }
    }

    /// Writes `b` at offset `off`; returns its address in the process.
    pub fn write(&self, off: u64, b: &[u8]) -> Result<u64> {
        let a = self.at(off, b.len())?;
        if !b.is_empty() {
            sys::write_mem(self.pid, a, b)?;
        }
        Ok(a)
    }

    pub fn read(&self, off: u64, len: usize) -> Result<Vec<u8>> {
        let a = self.at(off, len)?;
        if len == 0 {
            return Ok(Vec::new());
        }
        sys::read_mem(self.pid, a, len)
    }

    /// Writes a `Pod` value at offset `off`; returns its address.
    pub fn put<T: Pod>(&self, off: u64, v: &T) -> Result<u64> {
        self.write(off, kabi::as_bytes(v))
    }

    /// Writes a slice of `Pod` values at offset `off`; returns its address.
    pub fn put_slice<T: Pod>(&self, off: u64, v: &[T]) -> Result<u64> {
        self.write(off, kabi::slice_bytes(v))
    }

    /// Reads a `Pod` value at offset `off`.
    pub fn get<T: Pod>(&self, off: u64) -> Result<T> {
        let b = self.read(off, std::mem::size_of::<T>())?;
        kabi::from_bytes(&b).ok_or_else(|| Error::other("short scratch read"))
    }
}

/// A negative raw result (-errno) as an error.
fn check(r: i64) -> Result<u64> {
    if (-4095..0).contains(&r) {
        Err(Error::from_raw_os_error(-r as i32))
    } else {
        Ok(r as u64)
    }
}

/// Node mask size of the NUMA calls: 1024 nodes (the most a kernel can have), in words.
pub const NUMA_MASK_WORDS: usize = 16;
const NUMA_MAX_NODES: u64 = (NUMA_MASK_WORDS * 64) as u64;
const MPOL_F_ADDR: u64 = 2;

/// A full-size node mask from the first words of `nodes` (the rest zero).
fn numa_mask(nodes: &[u64]) -> [u64; NUMA_MASK_WORDS] {
    let mut m = [0u64; NUMA_MASK_WORDS];
    for (d, s) in m.iter_mut().zip(nodes) {
        *d = *s;
    }
    m
}

/// Offset of `size` bytes placed right after `off` bytes, 8-aligned.
fn after(off: usize) -> u64 {
    off.next_multiple_of(8) as u64
}

/// Runs syscalls in one thread of another (stopped, traced) process: `raw` and a scratch
/// area are all an implementor provides; the typed calls below are shared by dump and
/// restore. Results are the kernel's (negative errno as an io::Error).
pub trait RemoteCalls {
    /// Runs syscall `nr` with `args`; the raw result (negative errno on failure).
    fn raw(&self, nr: i64, args: &[u64]) -> Result<i64>;
    /// The data area the typed calls use for pointer arguments.
    fn scratch(&self) -> Scratch;

    /// Like `raw`, but a negative result becomes an io::Error with that errno.
    fn call(&self, nr: i64, args: &[u64]) -> Result<u64> {
        check(self.raw(nr, args)?)
    }

    /// prctl with integer arguments; the result.
    fn prctl(&self, op: i32, a2: u64, a3: u64, a4: u64, a5: u64) -> Result<u64> {
        self.call(libc::SYS_prctl, &[op as u64, a2, a3, a4, a5])
    }

    /// A prctl that stores an int through its second argument (PR_GET_PDEATHSIG,
    /// PR_GET_CHILD_SUBREAPER).
    fn prctl_get_int(&self, op: i32) -> Result<i32> {
        let s = self.scratch();
        let a = s.at(0, 4)?;
        self.call(libc::SYS_prctl, &[op as u64, a])?;
        s.get::<i32>(0)
    }

    /// PR_GET_TID_ADDRESS: the thread's clear_child_tid pointer.
    fn prctl_get_tid_address(&self) -> Result<u64> {
        let s = self.scratch();
        let a = s.at(0, 8)?;
        self.call(libc::SYS_prctl, &[libc::PR_GET_TID_ADDRESS as u64, a])?;
        s.get::<u64>(0)
    }

    /// PR_SET_NAME: at most 15 bytes of `name` (NUL-terminated here).
    fn prctl_set_name(&self, name: &[u8]) -> Result<()> {
        let mut b = name[..name.len().min(15)].to_vec();
        b.push(0);
        let a = self.scratch().write(0, &b)?;
        self.call(libc::SYS_prctl, &[libc::PR_SET_NAME as u64, a]).map(drop)
    }

    /// Writes `data` to the file at `path` (absolute, no NUL) from inside the process:
    /// openat(O_WRONLY), one write, close. For the process's own /proc files
    /// (/proc/self/loginuid accepts writes only from the process itself).
    fn write_file(&self, path: &str, data: &[u8]) -> Result<()> {
        if !path.starts_with('/') || path.contains('\0') {
            return Err(Error::from_raw_os_error(libc::EINVAL));
        }
        let s = self.scratch();
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        let pa = s.write(0, &p)?;
        let da = s.write(after(p.len()), data)?;
        let fd = self.call(libc::SYS_openat, &[libc::AT_FDCWD as u64, pa, (libc::O_WRONLY | libc::O_CLOEXEC) as u64, 0])?;
        let r = self.call(libc::SYS_write, &[fd, da, data.len() as u64]);
        let c = self.call(libc::SYS_close, &[fd]);
        match r? {
            n if n as usize == data.len() => c.map(drop),
            _ => Err(Error::from_raw_os_error(libc::EIO)),
        }
    }

    /// PR_SET_MM_MAP with `map` and the auxiliary vector `auxv` (placed after the struct;
    /// `map.auxv`/`auxv_size` are filled in here).
    fn prctl_set_mm_map(&self, map: &PrctlMmMap, auxv: &[u64]) -> Result<()> {
        const PR_SET_MM: u64 = 35;
        const PR_SET_MM_MAP: u64 = 14;
        let s = self.scratch();
        let size = std::mem::size_of::<PrctlMmMap>();
        let aux_off = after(size);
        let aux = s.put_slice(aux_off, auxv)?;
        let m = PrctlMmMap { auxv: aux, auxv_size: (auxv.len() * 8) as u32, ..*map };
        let a = s.put(0, &m)?;
        self.call(libc::SYS_prctl, &[PR_SET_MM, PR_SET_MM_MAP, a, size as u64, 0]).map(drop)
    }

    /// rt_sigaction(sig, NULL, &old): the current handler.
    fn sigaction_get(&self, sig: i32) -> Result<KSigaction> {
        let s = self.scratch();
        // the kernel writes all of it: nothing to clear first
        let a = s.at(0, std::mem::size_of::<KSigaction>())?;
        self.call(libc::SYS_rt_sigaction, &[sig as u64, 0, a, 8])?;
        s.get(0)
    }

    /// rt_sigaction(sig, &act, NULL).
    fn sigaction_set(&self, sig: i32, act: &KSigaction) -> Result<()> {
        let a = self.scratch().put(0, act)?;
        self.call(libc::SYS_rt_sigaction, &[sig as u64, a, 0, 8]).map(drop)
    }

    /// rt_sigaction(sig, &act, NULL) for each of `sigs`, with `act` written once.
    fn sigaction_set_all(&self, sigs: &[i32], act: &KSigaction) -> Result<()> {
        let a = self.scratch().put(0, act)?;
        for &sig in sigs {
            self.call(libc::SYS_rt_sigaction, &[sig as u64, a, 0, 8])?;
        }
        Ok(())
    }

    /// sigaltstack(NULL, &old).
    fn sigaltstack_get(&self) -> Result<StackT> {
        let s = self.scratch();
        // the kernel writes all of it: nothing to clear first
        let a = s.at(0, std::mem::size_of::<StackT>())?;
        self.call(libc::SYS_sigaltstack, &[0, a])?;
        s.get(0)
    }

    /// get_mempolicy(&mode, mask, NUMA_MAX_NODES, addr, addr ? MPOL_F_ADDR : 0): the
    /// calling thread's NUMA policy (mode with its flags) and node mask, or with `addr`
    /// the policy of the VMA holding it.
    fn get_mempolicy(&self, addr: Option<u64>) -> Result<(i32, Vec<u64>)> {
        let s = self.scratch();
        let mode = s.put(0, &0i32)?;
        let mask = s.put_slice(8, &[0u64; NUMA_MASK_WORDS])?;
        let (a, flags) = addr.map_or((0, 0), |a| (a, MPOL_F_ADDR));
        self.call(libc::SYS_get_mempolicy, &[mode, mask, NUMA_MAX_NODES, a, flags])?;
        let words = (0..NUMA_MASK_WORDS).map(|i| s.get::<u64>(8 + 8 * i as u64)).collect::<Result<Vec<u64>>>()?;
        Ok((s.get::<i32>(0)?, words))
    }

    /// set_mempolicy(mode, mask, NUMA_MAX_NODES) for the calling thread (mode with its
    /// flags; at most NUMA_MASK_WORDS words of mask).
    fn set_mempolicy(&self, mode: i32, nodes: &[u64]) -> Result<()> {
        let mask = numa_mask(nodes);
        let m = self.scratch().put_slice(0, &mask)?;
        self.call(libc::SYS_set_mempolicy, &[mode as u32 as u64, m, NUMA_MAX_NODES]).map(drop)
    }

    /// mbind(start, len, mode, mask, NUMA_MAX_NODES, 0).
    fn mbind(&self, start: u64, len: u64, mode: i32, nodes: &[u64]) -> Result<()> {
        let mask = numa_mask(nodes);
        let m = self.scratch().put_slice(0, &mask)?;
        self.call(libc::SYS_mbind, &[start, len, mode as u32 as u64, m, NUMA_MAX_NODES, 0]).map(drop)
    }

    /// waitid(P_PID, child, &info, WSTOPPED | WNOHANG [| WNOWAIT]): whether `child`'s
    /// stop is waiting to be reported to this process (its parent); with `consume`, the
    /// report is taken as a wait(WUNTRACED) takes it, else it is left (WNOWAIT).
    fn child_stop_pending(&self, child: i32, consume: bool) -> Result<bool> {
        const P_PID: u64 = 1;
        let s = self.scratch();
        let info = s.write(0, &[0u8; 128])?;
        // __WALL: also a child whose exit signal is not SIGCHLD
        let flags = libc::WSTOPPED | libc::WNOHANG | libc::__WALL | if consume { 0 } else { libc::WNOWAIT };
        match self.raw(libc::SYS_waitid, &[P_PID, child as u64, info, flags as u64, 0])? {
            0 => {}
            // not a child it can wait for (a thread's child with __WNOTHREAD semantics...)
            r if r == -(libc::ECHILD as i64) => return Ok(false),
            r => return Err(std::io::Error::from_raw_os_error((-r) as i32)),
        }
        // siginfo_t of SIGCHLD: si_pid at byte 16 (0 when nothing was waiting)
        Ok(s.get::<i32>(16)? == child)
    }

    /// rt_sigtimedwait for `sig` without waiting: takes one pending instance of it, if
    /// any (it must be blocked). Whether one was taken.
    fn take_pending_signal(&self, sig: i32) -> Result<bool> {
        let s = self.scratch();
        let set = s.put(0, &(1u64 << (sig - 1)))?;
        let ts = s.put(8, &[0i64, 0i64])?;
        match self.raw(libc::SYS_rt_sigtimedwait, &[set, 0, ts, 8])? {
            r if r == sig as i64 => Ok(true),
            r if r == -(libc::EAGAIN as i64) => Ok(false),
            r => Err(std::io::Error::from_raw_os_error((-r) as i32)),
        }
    }

    /// modify_ldt(0x11, &d): sets entry `d.entry_number` of the process's LDT.
    fn modify_ldt_write(&self, d: &UserDesc) -> Result<()> {
        let a = self.scratch().put(0, d)?;
        self.call(libc::SYS_modify_ldt, &[0x11, a, std::mem::size_of::<UserDesc>() as u64]).map(drop)
    }

    /// sigaltstack(&ss, NULL).
    fn sigaltstack_set(&self, ss: &StackT) -> Result<()> {
        let a = self.scratch().put(0, ss)?;
        self.call(libc::SYS_sigaltstack, &[a, 0]).map(drop)
    }

    /// rt_sigtimedwait(&mask, NULL, &{0, 0}): takes one pending signal of `mask` without
    /// waiting. The raw result: the signal, or -EAGAIN when none is pending.
    fn sigtimedwait_poll(&self, mask: u64) -> Result<i64> {
        let s = self.scratch();
        let m = s.put(0, &mask)?;
        let t = s.put(16, &Timespec::default())?;
        self.raw(libc::SYS_rt_sigtimedwait, &[m, 0, t, 8])
    }

    /// rt_sigqueueinfo(tgid, sig, info): queues a raw siginfo to the process.
    fn sigqueueinfo(&self, tgid: i32, sig: i32, info: &[u8]) -> Result<()> {
        let a = self.scratch().write(0, info)?;
        self.call(libc::SYS_rt_sigqueueinfo, &[tgid as u64, sig as u64, a]).map(drop)
    }

    /// rt_tgsigqueueinfo(tgid, tid, sig, info): queues a raw siginfo to one thread.
    fn tgsigqueueinfo(&self, tgid: i32, tid: i32, sig: i32, info: &[u8]) -> Result<()> {
        let a = self.scratch().write(0, info)?;
        self.call(libc::SYS_rt_tgsigqueueinfo, &[tgid as u64, tid as u64, sig as u64, a]).map(drop)
    }

    fn getitimer(&self, which: i32) -> Result<Itimerval> {
        let s = self.scratch();
        // the kernel writes all of it: nothing to clear first
        let a = s.at(0, std::mem::size_of::<Itimerval>())?;
        self.call(libc::SYS_getitimer, &[which as u64, a])?;
        s.get(0)
    }

    /// setitimer(which, &v, NULL).
    fn setitimer(&self, which: i32, v: &Itimerval) -> Result<()> {
        let a = self.scratch().put(0, v)?;
        self.call(libc::SYS_setitimer, &[which as u64, a, 0]).map(drop)
    }

    /// timer_create(clock, &ev, &id) with `id` preset (PR_TIMER_CREATE_RESTORE_IDS asks
    /// the kernel to use it); the id the kernel gave.
    fn timer_create(&self, clock: i32, ev: &Sigevent, id: i32) -> Result<i32> {
        let s = self.scratch();
        let size = std::mem::size_of::<Sigevent>();
        let e = s.put(0, ev)?;
        let i = s.put(after(size), &id)?;
        self.call(libc::SYS_timer_create, &[clock as u64, e, i])?;
        s.get(after(size))
    }

    /// timer_settime(id, flags, &v, NULL).
    fn timer_settime(&self, id: i32, flags: i32, v: &Itimerspec) -> Result<()> {
        let a = self.scratch().put(0, v)?;
        self.call(libc::SYS_timer_settime, &[id as u64, flags as u64, a, 0]).map(drop)
    }

    /// clock_gettime(clock) as the process sees it (its time namespace's offsets).
    fn clock_gettime(&self, clock: i32) -> Result<Timespec> {
        let s = self.scratch();
        let a = s.at(0, std::mem::size_of::<Timespec>())?;
        self.call(libc::SYS_clock_gettime, &[clock as u64, a])?;
        s.get(0)
    }

    fn timer_gettime(&self, id: i32) -> Result<Itimerspec> {
        let s = self.scratch();
        // the kernel writes all of it: nothing to clear first
        let a = s.at(0, std::mem::size_of::<Itimerspec>())?;
        self.call(libc::SYS_timer_gettime, &[id as u64, a])?;
        s.get(0)
    }

    /// prlimit64(0, res, NULL, &old): the calling process's limit.
    fn getrlimit(&self, res: i32) -> Result<Rlimit64> {
        let s = self.scratch();
        // the kernel writes all of it: nothing to clear first
        let a = s.at(0, std::mem::size_of::<Rlimit64>())?;
        self.call(libc::SYS_prlimit64, &[0, res as u64, 0, a])?;
        s.get(0)
    }

    /// fcntl(fd, cmd, &lock) for the lock commands (F_SETLK, F_OFD_SETLK, F_GETLK...);
    /// the lock as the kernel left it.
    fn fcntl_lock(&self, fd: i32, cmd: i32, lock: &Flock) -> Result<Flock> {
        let s = self.scratch();
        let a = s.put(0, lock)?;
        self.call(libc::SYS_fcntl, &[fd as u64, cmd as u64, a])?;
        s.get(0)
    }

    /// ioctl(fd, req, &v) for a request that reads one int (TIOCSPGRP...).
    fn ioctl_set_int(&self, fd: i32, req: u64, v: i32) -> Result<()> {
        let a = self.scratch().put(0, &v)?;
        self.call(libc::SYS_ioctl, &[fd as u64, req, a]).map(drop)
    }

    /// fcntl(fd, F_SETOWN_EX, &owner).
    fn fcntl_setown_ex(&self, fd: i32, owner: &crate::kabi::FOwnerEx) -> Result<()> {
        let a = self.scratch().put(0, owner)?;
        self.call(libc::SYS_fcntl, &[fd as u64, kabi::F_SETOWN_EX as u64, a]).map(drop)
    }

    /// capset(&header, data): header and the two data words back to back.
    fn capset(&self, c: &CapSet) -> Result<()> {
        let a = self.scratch().put(0, c)?;
        let data = a + std::mem::size_of::<CapUserHeader>() as u64;
        self.call(libc::SYS_capset, &[a, data]).map(drop)
    }

    /// setgroups(groups.len(), groups).
    fn setgroups(&self, groups: &[u32]) -> Result<()> {
        let a = self.scratch().put_slice(0, groups)?;
        self.call(libc::SYS_setgroups, &[groups.len() as u64, a]).map(drop)
    }

    /// seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog) with `filter` the raw
    /// `struct sock_filter` instructions (8 bytes each).
    fn seccomp_filter(&self, flags: u32, filter: &[u8]) -> Result<u64> {
        const SECCOMP_SET_MODE_FILTER: u64 = 1;
        if filter.len() % 8 != 0 || filter.len() / 8 > kabi::BPF_MAXINSNS {
            return Err(Error::from_raw_os_error(libc::EINVAL));
        }
        let s = self.scratch();
        let size = std::mem::size_of::<SockFprog>();
        let f = s.write(after(size), filter)?;
        let a = s.put(0, &SockFprog { len: (filter.len() / 8) as u16, filter: f, ..Default::default() })?;
        self.call(libc::SYS_seccomp, &[SECCOMP_SET_MODE_FILTER, flags as u64, a])
    }

    /// epoll_ctl(epfd, op, fd, &ev).
    fn epoll_ctl(&self, epfd: i32, op: i32, fd: i32, ev: &EpollEvent) -> Result<()> {
        let a = self.scratch().put(0, ev)?;
        self.call(libc::SYS_epoll_ctl, &[epfd as u64, op as u64, fd as u64, a]).map(drop)
    }

    /// epoll_wait(epfd, events, max, timeout_ms): the ready events.
    fn epoll_wait(&self, epfd: i32, max: usize, timeout_ms: i32) -> Result<Vec<EpollEvent>> {
        let s = self.scratch();
        let len = max * std::mem::size_of::<EpollEvent>();
        let a = s.at(0, len)?;
        let n = self.call(libc::SYS_epoll_wait, &[epfd as u64, a, max as u64, timeout_ms as u64])? as usize;
        (0..n.min(max)).map(|i| s.get((i * std::mem::size_of::<EpollEvent>()) as u64)).collect()
    }

    /// io_setup(nr_events, &ctx): the new aio context's id (its ring's address).
    fn io_setup(&self, nr_events: u32) -> Result<u64> {
        let s = self.scratch();
        let a = s.put(0, &0u64)?;
        self.call(libc::SYS_io_setup, &[nr_events as u64, a])?;
        s.get(0)
    }

    /// io_submit(ctx, iocbs.len(), pointers to `iocbs`): the number of requests the
    /// kernel took (it stops at the first it cannot take).
    fn io_submit(&self, ctx: u64, iocbs: &[Iocb]) -> Result<u64> {
        let s = self.scratch();
        let size = std::mem::size_of::<Iocb>() as u64;
        let ptrs_off = iocbs.len() as u64 * size;
        let base = s.at(0, iocbs.len() * size as usize)?;
        let ptrs: Vec<u64> = (0..iocbs.len() as u64).map(|i| base + i * size).collect();
        s.put_slice(0, iocbs)?;
        let p = s.put_slice(ptrs_off, &ptrs)?;
        self.call(libc::SYS_io_submit, &[ctx, iocbs.len() as u64, p])
    }

    /// io_getevents(ctx, 0, 0, NULL, &{0, 0}): asks for no event and does not wait, so
    /// it reaps nothing; the raw result (0, or -EINVAL when `ctx` is no aio context of
    /// the process).
    fn io_getevents_none(&self, ctx: u64) -> Result<i64> {
        let t = self.scratch().put(0, &Timespec::default())?;
        self.raw(libc::SYS_io_getevents, &[ctx, 0, 0, 0, t])
    }

    /// memfd_create(name, flags): a new fd.
    fn memfd_create(&self, name: &str, flags: u32) -> Result<i32> {
        if name.contains('\0') {
            return Err(Error::from_raw_os_error(libc::EINVAL));
        }
        let mut b = name.as_bytes().to_vec();
        b.push(0);
        let a = self.scratch().write(0, &b)?;
        self.call(libc::SYS_memfd_create, &[a, flags as u64]).map(|fd| fd as i32)
    }

    /// clone3(&args) creating a thread, with `set_tid` (placed after the struct; the
    /// args' set_tid/set_tid_size are filled in here). The raw result: the new tid as the
    /// process sees it, or -errno.
    fn clone3(&self, args: &CloneArgs, set_tid: &[i32]) -> Result<i64> {
        let s = self.scratch();
        let size = std::mem::size_of::<CloneArgs>();
        let t = if set_tid.is_empty() { 0 } else { s.put_slice(after(size), set_tid)? };
        let a = s.put(0, &CloneArgs { set_tid: t, set_tid_size: set_tid.len() as u64, ..*args })?;
        self.raw(libc::SYS_clone3, &[a, size as u64])
    }
}

use kabi::{CapSet, Iocb, CapUserHeader, CloneArgs, EpollEvent, Flock, Itimerspec, Itimerval, KSigaction, PrctlMmMap, Rlimit64, Sigevent, SockFprog, StackT, Timespec, UserDesc};

/// One thread of a traced process: injected syscalls run through the `syscall`
/// instruction at `insn`, pointer arguments in its scratch area.
pub struct Remote {
    pub tid: i32,
    /// Address of a `0f 05` instruction in the tracee.
    pub insn: u64,
    base: Regs,
    scratch: Scratch,
    /// A SIGSTOP (which no mask blocks) arrived while an injected syscall ran and was
    /// held back (stepping on with it would put the thread in a group stop): the caller
    /// must stop the process once it is done with it.
    stop_held: std::sync::atomic::AtomicBool,
}

impl Remote {
    /// Whether a SIGSTOP was held back while syscalls ran (see `stop_held`).
    pub fn stop_held(&self) -> bool {
        self.stop_held.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `base` supplies segment registers and flags for the injected frames (use the
    /// thread's own registers). No scratch area yet (`with_scratch`).
    pub fn new(tid: i32, insn: u64, base: Regs) -> Remote {
        Remote { tid, insn, base, scratch: Scratch::NONE, stop_held: Default::default() }
    }

    /// The data area typed calls use (in the thread's process).
    pub fn with_scratch(mut self, s: Scratch) -> Remote {
        self.scratch = s;
        self
    }

    pub fn set_insn(&mut self, insn: u64) {
        self.insn = insn;
    }

    /// Runs syscall `nr` with `args` in the tracee; returns the raw result (negative
    /// errno on failure, as the kernel returns it).
    fn raw_step(&self, nr: i64, args: &[u64]) -> Result<i64> {
        let mut r = self.base;
        r.rip = self.insn;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX; // not in a syscall: no restart fix-up on resume
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        r.rdi = a(0);
        r.rsi = a(1);
        r.rdx = a(2);
        r.r10 = a(3);
        r.r8 = a(4);
        r.r9 = a(5);
        r.eflags &= !0x100; // no single-step trap
        ptrace::setregs(self.tid, &r)?;
        // Run to the syscall's entry, then to its exit: ptrace stops, never a signal. (A
        // single step would end in a SIGTRAP the kernel forces on the thread, which
        // resets a blocked or ignored SIGTRAP to SIG_DFL and unblocks it: the process
        // would lose its SIGTRAP handler — every thread's signals are blocked while we
        // inject.) Every signal is blocked meanwhile, so a SIGTRAP stop is ours.
        ptrace::syscall(self.tid)?;
        let mut entered = false;
        loop {
            let st = ptrace::wait(self.tid)?;
            match ptrace::decode(st) {
                Stop::Stopped(libc::SIGTRAP, 0) if !entered => {
                    entered = true;
                    ptrace::syscall(self.tid)?;
                }
                Stop::Stopped(libc::SIGTRAP, 0) => break,
                // clone/fork events and interrupts during the syscall: go on.
                Stop::Stopped(libc::SIGTRAP, _) | Stop::Stopped(_, ptrace::PTRACE_EVENT_STOP) => {
                    ptrace::syscall(self.tid)?;
                }
                // signal-delivery-stop of a SIGSTOP sent from outside: held back (the
                // call goes on without it); the caller stops the process later
                Stop::Stopped(libc::SIGSTOP, 0) => {
                    self.stop_held.store(true, std::sync::atomic::Ordering::Relaxed);
                    ptrace::syscall(self.tid)?;
                }
                Stop::Stopped(sig, ev) => {
                    let rip = ptrace::getregs(self.tid).map(|r| r.rip).unwrap_or(0);
                    let (addr, code) = ptrace::getsiginfo(self.tid).map(|b| (u64::from_le_bytes(b[16..24].try_into().unwrap()), i32::from_le_bytes(b[8..12].try_into().unwrap()))).unwrap_or((0, 0));
                    return Err(Error::other(format!(
                        "tid {}: unexpected stop (signal {sig}, event {ev}, rip {rip:#x}, fault address {addr:#x}, si_code {code}) while running syscall {nr} at {:#x}",
                        self.tid, self.insn
                    )))
                }
                Stop::Exited(c) => {
                    return Err(Error::other(format!("tid {} exited ({c}) during syscall {nr}", self.tid)))
                }
                Stop::Killed(s) => {
                    return Err(Error::other(format!("tid {} killed by signal {s} during syscall {nr}", self.tid)))
                }
            }
        }
        let after = ptrace::getregs(self.tid)?;
        if after.rip != self.insn + 2 {
            return Err(Error::other(format!(
                "tid {}: injected syscall {nr} ended at rip {:#x}, expected {:#x}",
                self.tid,
                after.rip,
                self.insn + 2
            )));
        }
        Ok(after.rax as i64)
    }

    /// As [`RemoteCalls::raw`] (inherent, so callers need not import the trait).
    pub fn raw(&self, nr: i64, args: &[u64]) -> Result<i64> {
        self.raw_step(nr, args)
    }

    /// As [`RemoteCalls::call`].
    pub fn call(&self, nr: i64, args: &[u64]) -> Result<u64> {
        check(self.raw_step(nr, args)?)
    }
}

impl RemoteCalls for Remote {
    fn raw(&self, nr: i64, args: &[u64]) -> Result<i64> {
        self.raw_step(nr, args)
    }
    fn scratch(&self) -> Scratch {
        self.scratch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_bounded() {
        let s = Scratch { pid: 1, addr: 0x1000, len: 64 };
        assert_eq!(s.at(0, 64).unwrap(), 0x1000);
        assert_eq!(s.at(60, 4).unwrap(), 0x103c);
        assert!(s.at(60, 5).is_err());
        assert!(s.at(u64::MAX, 1).is_err());
        assert!(Scratch::NONE.at(0, 1).is_err());
        // an overflowing write fails before touching the process (pid 1 is not ours)
        assert!(s.write(32, &[0u8; 33]).is_err_and(|e| e.to_string().contains("scratch area")));
    }
}
