//! Socket options whose getsockopt/setsockopt do not take a plain byte buffer: the
//! classic BPF filter of a socket (SO_GET_FILTER counts in instructions, SO_ATTACH_FILTER
//! takes a `struct sock_fprog` holding a pointer).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::c;
use crate::Result;

/// SO_GET_FILTER / SO_ATTACH_FILTER (the same number).
const SO_ATTACH_FILTER: i32 = 26;
/// BPF_MAXINSNS: the kernel refuses longer classic programs.
pub const BPF_MAXINSNS: usize = 4096;
/// Bytes of one `struct sock_filter` (u16 code, u8 jt, u8 jf, u32 k).
pub const SOCK_FILTER_LEN: usize = 8;

/// The classic BPF program attached with SO_ATTACH_FILTER, as its raw `struct
/// sock_filter` array (empty if none; an eBPF program attached with SO_ATTACH_BPF has no
/// classic form and reads as empty too).
pub fn get_filter(fd: BorrowedFd<'_>) -> Result<Vec<u8>> {
    // optlen counts instructions, not bytes; 0 asks for the count only.
    let mut n: libc::socklen_t = 0;
    // SAFETY: with optlen 0 the kernel writes nothing through optval (NULL) and only
    // stores the instruction count in n.
    let count = c(unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_ATTACH_FILTER, std::ptr::null_mut(), &mut n) }
        as libc::c_long)?;
    let count = (n as usize).max(count as usize).min(BPF_MAXINSNS);
    if count == 0 {
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; count * SOCK_FILTER_LEN];
    let mut l = count as libc::socklen_t;
    // SAFETY: buf holds `count` instructions, which is what optlen announces.
    c(unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_ATTACH_FILTER, buf.as_mut_ptr().cast(), &mut l) }
        as libc::c_long)?;
    buf.truncate((l as usize).min(count) * SOCK_FILTER_LEN);
    Ok(buf)
}

/// SO_ATTACH_FILTER with the raw `struct sock_filter` array `insns` (a multiple of 8
/// bytes, at most BPF_MAXINSNS instructions; the kernel checks the program).
pub fn attach_filter(fd: BorrowedFd<'_>, insns: &[u8]) -> Result<()> {
    let n = insns.len() / SOCK_FILTER_LEN;
    if !insns.len().is_multiple_of(SOCK_FILTER_LEN) || n == 0 || n > BPF_MAXINSNS {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // The kernel reads the program through the pointer; keep an aligned copy.
    let prog: Vec<libc::sock_filter> = insns
        .chunks_exact(SOCK_FILTER_LEN)
        .map(|b| libc::sock_filter {
            code: u16::from_le_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect();
    let fprog = libc::sock_fprog { len: n as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: fprog points to `n` live instructions for the duration of the call; the
    // kernel copies them.
    c(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    } as libc::c_long)
    .map(drop)
}

/// getsockopt whose buffer carries input too (MCAST_MSFILTER): `buf` in, the answer
/// out; returns the length the kernel reports.
pub fn getsockopt_inout(fd: BorrowedFd<'_>, level: i32, opt: i32, buf: &mut [u8]) -> Result<usize> {
    let mut l = buf.len() as libc::socklen_t;
    // SAFETY: buf/l describe a valid readable and writable buffer.
    c(unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, buf.as_mut_ptr().cast(), &mut l) } as libc::c_long)?;
    Ok(l as usize)
}

/// sendto(2) of `buf` to the raw sockaddr `addr`; returns the byte count.
pub fn sendto(fd: BorrowedFd<'_>, buf: &[u8], addr: &[u8]) -> Result<usize> {
    // SAFETY: buf and addr are valid readable buffers of their lengths.
    c(unsafe { libc::sendto(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0, addr.as_ptr().cast(), addr.len() as libc::socklen_t) }
        as libc::c_long)
    .map(|n| n as usize)
}

/// recvfrom(2) with `flags` into buf: (length of the datagram, which MSG_TRUNC makes
/// the whole length even if buf is shorter; the sender's raw sockaddr).
pub fn recvfrom(fd: BorrowedFd<'_>, buf: &mut [u8], flags: i32) -> Result<(usize, Vec<u8>)> {
    let mut addr = [0u8; 128];
    let mut alen = addr.len() as libc::socklen_t;
    // SAFETY: buf, addr and alen describe valid writable buffers.
    let n = c(unsafe { libc::recvfrom(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags, addr.as_mut_ptr().cast(), &mut alen) }
        as libc::c_long)?;
    Ok((n as usize, addr[..(alen as usize).min(addr.len())].to_vec()))
}

/// One datagram read by recvmsg: byte count (the datagram's full length with MSG_TRUNC),
/// the sender's address, and the destination address the datagram was sent to (4 bytes
/// from IP_PKTINFO, 16 from IPV6_PKTINFO) when the socket has IP_PKTINFO /
/// IPV6_RECVPKTINFO set. Other ancillary data is ignored.
pub fn recv_with_dest(fd: BorrowedFd<'_>, buf: &mut [u8], flags: i32) -> Result<(usize, Vec<u8>, Option<Vec<u8>>)> {
    let (n, from, _, cmsgs) = super::recvmsg_ctl(fd, buf, 512, flags)?;
    let mut dest = None;
    for m in &cmsgs {
        if m.level == libc::IPPROTO_IP && m.ty == libc::IP_PKTINFO {
            // struct in_pktinfo: ifindex, spec_dst, addr
            dest = m.word(2).map(|a| a.to_vec());
        } else if m.level == libc::IPPROTO_IPV6 && m.ty == libc::IPV6_PKTINFO && m.data.len() >= 16 {
            // struct in6_pktinfo: addr (16 bytes), ifindex
            dest = Some(m.data[..16].to_vec());
        }
    }
    Ok((n, from, dest))
}

/// SO_PEERCRED: the pid, effective uid and gid the kernel recorded for a unix socket's
/// peer (the task that connected, made the pair, or called listen()).
pub fn peer_cred(fd: BorrowedFd<'_>) -> Result<super::Creds> {
    let mut u = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes at most `len` bytes (a struct ucred) to `u`.
    c(unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut u as *mut libc::ucred).cast(), &mut len) }
        as libc::c_long)?;
    Ok(super::Creds { pid: u.pid, uid: u.uid, gid: u.gid })
}

/// SECBIT_NO_SETUID_FIXUP: changing uids keeps the thread's capabilities.
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;

/// Runs `f` in a thread of its own whose effective uid and gid are `uid` and `gid`, so
/// that what the kernel records of its caller (a socket's peer credentials) names them.
/// Raw setresgid/setresuid change only the calling thread (glibc's change them all);
/// SECBIT_NO_SETUID_FIXUP (this thread's too) keeps its capabilities, so it may still
/// reach what the restorer may. The credentials end with the thread.
pub fn with_thread_eids<T: Send>(uid: u32, gid: u32, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            // SAFETY: prctl with integer arguments; it changes this thread's credentials.
            let bits = c(unsafe { libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0) } as libc::c_long)?;
            // SAFETY: as above.
            c(unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong | SECBIT_NO_SETUID_FIXUP, 0, 0, 0) } as libc::c_long)?;
            let keep = u32::MAX as libc::c_long; // -1: unchanged
            // SAFETY: raw setresgid with integer arguments: only this thread's ids change.
            c(unsafe { libc::syscall(libc::SYS_setresgid, keep, gid as libc::c_long, keep) })?;
            // SAFETY: as above, setresuid.
            c(unsafe { libc::syscall(libc::SYS_setresuid, keep, uid as libc::c_long, keep) })?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("credentials helper thread panicked")))
    })
}

/// The calling thread's effective uid.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() }
}

/// The calling thread's effective gid.
pub fn getegid() -> u32 {
    // SAFETY: getegid has no arguments and cannot fail.
    unsafe { libc::getegid() }
}

/// A call whose caller the kernel records as a unix socket's peer credentials
/// (SO_PEERCRED: pid, effective uid and gid), made by a stand-in process ([`as_peer`]).
#[derive(Clone, Copy, Debug)]
pub enum PeerCall<'a> {
    /// listen(2) with this backlog: clients connecting later get the caller.
    Listen(BorrowedFd<'a>, i32),
    /// connect(2) to this raw sockaddr: the accepted end gets the caller.
    Connect(BorrowedFd<'a>, &'a [u8]),
    /// socketpair(2) of this type (SOCK_CLOEXEC), its ends moved onto these two fds,
    /// which they replace: both ends get the caller.
    Socketpair(i32, BorrowedFd<'a>, BorrowedFd<'a>),
}

/// Makes `call` from a short-lived process whose pid is `who.pid` (in our PID
/// namespace, clone3 set_tid) and whose effective uid and gid are `who`'s, so that the
/// peer credentials the kernel records name that process — the one a restore is about to
/// recreate with that pid. The stand-in shares our fd table (CLONE_FILES), so `call`
/// works on our fds; it keeps our capabilities across the uid change
/// (SECBIT_NO_SETUID_FIXUP), makes the call, and exits; it is reaped before this returns,
/// so the pid is free again.
///
/// Outer Err: no stand-in could be made with that pid (EEXIST: the pid is in use, ours
/// included). Inner: the call's own result.
pub fn as_peer(who: super::Creds, call: PeerCall<'_>) -> Result<Result<()>> {
    let set_tid = [who.pid];
    let args = crate::kabi::CloneArgs {
        flags: libc::CLONE_FILES as u64,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    // SAFETY: a fork-like clone3 (no CLONE_VM, CLONE_THREAD, CLONE_SIGHAND or
    // CLONE_SETTLS): the child has its own copy of our memory. It may be forked from a
    // multi-threaded process (a restore makes some pairs from a helper thread), so the
    // child runs only `stand_in`, which makes raw system calls and touches no lock,
    // allocator or other shared state, and ends in _exit. set_tid points to a live array
    // of one pid.
    let child = c(unsafe { libc::syscall(libc::SYS_clone3, &args as *const crate::kabi::CloneArgs, std::mem::size_of_val(&args)) })?;
    if child == 0 {
        let code = stand_in(who, call);
        // SAFETY: _exit ends the stand-in without running anything of ours.
        unsafe { libc::_exit(code) }
    }
    let status = super::waitpid(child as i32, libc::__WALL)?;
    Ok(match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, errno) => Err(std::io::Error::from_raw_os_error(errno)),
        _ => Err(std::io::Error::other(format!("the stand-in process {} died (wait status {status:#x})", who.pid))),
    })
}

/// The stand-in's part of [`as_peer`]: raw calls only. Returns its exit code: 0, or
/// the errno of the call that failed (errno values fit in an exit code).
fn stand_in(who: super::Creds, call: PeerCall<'_>) -> i32 {
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY (all blocks below): raw system calls with integer arguments or pointers to
    // live locals and borrowed buffers; they change only this stand-in's credentials
    // (it is a process of its own) or act on fds of the table it shares with us.
    unsafe {
        if (who.uid, who.gid) != (libc::geteuid(), libc::getegid()) {
            let bits = libc::prctl(libc::PR_GET_SECUREBITS, 0, 0, 0, 0);
            if bits < 0 || libc::prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong | SECBIT_NO_SETUID_FIXUP, 0, 0, 0) < 0 {
                return errno();
            }
            let keep = u32::MAX as libc::c_long; // -1: unchanged
            if libc::syscall(libc::SYS_setresgid, keep, who.gid as libc::c_long, keep) < 0
                || libc::syscall(libc::SYS_setresuid, keep, who.uid as libc::c_long, keep) < 0
            {
                return errno();
            }
        }
        let r = match call {
            PeerCall::Listen(fd, backlog) => libc::listen(fd.as_raw_fd(), backlog),
            PeerCall::Connect(fd, addr) => libc::connect(fd.as_raw_fd(), addr.as_ptr().cast(), addr.len() as libc::socklen_t),
            PeerCall::Socketpair(ty, a, b) => {
                let mut fds = [0i32; 2];
                if libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) < 0 {
                    return errno();
                }
                let moved = libc::dup3(fds[0], a.as_raw_fd(), libc::O_CLOEXEC) >= 0 && libc::dup3(fds[1], b.as_raw_fd(), libc::O_CLOEXEC) >= 0;
                let e = errno();
                libc::close(fds[0]);
                libc::close(fds[1]);
                if moved {
                    0
                } else {
                    return e;
                }
            }
        };
        if r < 0 {
            errno()
        } else {
            0
        }
    }
}

/// socketpair(2) of type `ty` made as `who` ([`as_peer`]): both ends' peer credentials
/// name that process. Outer Err as for [`as_peer`].
pub fn socketpair_as(ty: i32, who: super::Creds) -> Result<Result<(OwnedFd, OwnedFd)>> {
    // two fds of ours for the stand-in's pair to replace
    let (a, b) = super::socketpair(ty)?;
    Ok(as_peer(who, PeerCall::Socketpair(ty, a.as_fd(), b.as_fd()))?.map(|_| (a, b)))
}
