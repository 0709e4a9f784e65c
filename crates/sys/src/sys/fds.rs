//! Anonymous-inode fds, sockets and sock_diag, fds of other processes.

use super::*;

pub(super) fn owned(fd: i64) -> OwnedFd {
    // SAFETY: callers pass an fd the kernel just returned to us, which nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// eventfd2(2): a new eventfd with counter `count` (EFD_* flags).
pub fn eventfd2(count: u32, flags: i32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    c(unsafe { libc::syscall(libc::SYS_eventfd2, count, flags) }).map(owned)
}

/// timerfd_create(2) (TFD_* flags).
pub fn timerfd_create(clockid: i32, flags: i32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    c(unsafe { libc::timerfd_create(clockid, flags) } as libc::c_long).map(owned)
}

fn timespec_of(ns: u64) -> libc::timespec {
    libc::timespec { tv_sec: (ns / 1_000_000_000) as libc::time_t, tv_nsec: (ns % 1_000_000_000) as libc::c_long }
}

fn ns_of(t: &libc::timespec) -> u64 {
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// timerfd_settime(2): `value_ns` (relative, or absolute with TFD_TIMER_ABSTIME in
/// `flags`; 0 disarms) and `interval_ns`.
pub fn timerfd_settime(fd: BorrowedFd<'_>, flags: i32, interval_ns: u64, value_ns: u64) -> Result<()> {
    let new = libc::itimerspec { it_interval: timespec_of(interval_ns), it_value: timespec_of(value_ns) };
    // SAFETY: `new` is a valid itimerspec; the old-value pointer may be null.
    c(unsafe { libc::timerfd_settime(fd.as_raw_fd(), flags, &new, std::ptr::null_mut()) } as libc::c_long).map(drop)
}

/// timerfd_gettime(2): (interval, remaining time) in ns. For a periodic timer whose
/// expiry is unread, the kernel re-arms it and adds the overruns to its tick count (a
/// later read returns the same total).
pub fn timerfd_gettime(fd: BorrowedFd<'_>) -> Result<(u64, u64)> {
    let z = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let mut cur = libc::itimerspec { it_interval: z, it_value: z };
    // SAFETY: `cur` is a valid out pointer.
    c(unsafe { libc::timerfd_gettime(fd.as_raw_fd(), &mut cur) } as libc::c_long)?;
    Ok((ns_of(&cur.it_interval), ns_of(&cur.it_value)))
}

/// TFD_IOC_SET_TICKS (Linux 3.17+, CONFIG_CHECKPOINT_RESTORE): sets the number of
/// expirations a read returns; `ticks` must not be 0.
pub fn timerfd_set_ticks(fd: BorrowedFd<'_>, ticks: u64) -> Result<()> {
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400; // _IOW('T', 0, u64)
    // SAFETY: the ioctl reads one u64 from the pointer, which points to `ticks`.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), TFD_IOC_SET_TICKS, &ticks as *const u64) } as libc::c_long).map(drop)
}

/// signalfd4(2) creating a new signalfd for the signals in `mask` (bit n-1 = signal n).
pub fn signalfd4(mask: u64, flags: i32) -> Result<OwnedFd> {
    // SAFETY: the kernel reads an 8-byte sigset from the pointer, which points to `mask`.
    c(unsafe { libc::syscall(libc::SYS_signalfd4, -1, &mask as *const u64, 8usize, flags) }).map(owned)
}

/// epoll_create1(2).
pub fn epoll_create1(flags: i32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with an integer argument.
    c(unsafe { libc::epoll_create1(flags) } as libc::c_long).map(owned)
}

/// kcmp(KCMP_EPOLL_TFD): whether fd `fd` of `pid` is the file registered in the epoll
/// instance `epfd` of `pid` under fd number `tfd` (the `toff`-th such item). Errors:
/// EBADF when `pid` has no fd `fd`, ENOENT when there is no such item.
pub fn kcmp_epoll_tfd(pid: i32, fd: i32, epfd: i32, tfd: i32, toff: u32) -> Result<bool> {
    const KCMP_EPOLL_TFD: i32 = 7;
    let slot: [u32; 3] = [epfd as u32, tfd as u32, toff]; // struct kcmp_epoll_slot
    // SAFETY: the kernel reads a 12-byte struct kcmp_epoll_slot from the pointer, which
    // points to `slot`.
    let r = c(unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_EPOLL_TFD, fd, slot.as_ptr()) })?;
    Ok(r == 0)
}

/// inotify_init1(2).
pub fn inotify_init1(flags: i32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with an integer argument.
    c(unsafe { libc::inotify_init1(flags) } as libc::c_long).map(owned)
}

/// inotify_add_watch(2): the watch descriptor.
pub fn inotify_add_watch(fd: BorrowedFd<'_>, path: &std::ffi::CStr, mask: u32) -> Result<i32> {
    // SAFETY: path is a valid C string.
    c(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } as libc::c_long).map(|w| w as i32)
}

/// inotify_rm_watch(2).
pub fn inotify_rm_watch(fd: BorrowedFd<'_>, wd: i32) -> Result<()> {
    // SAFETY: plain syscall with integer arguments.
    c(unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), wd) } as libc::c_long).map(drop)
}

/// open_by_handle_at(2) with a file handle of `handle_type` and bytes `handle` on the
/// filesystem that `mount_fd` is on. Needs CAP_DAC_READ_SEARCH.
pub fn open_by_handle_at(mount_fd: BorrowedFd<'_>, handle_type: i32, handle: &[u8], flags: i32) -> Result<OwnedFd> {
    // struct file_handle: u32 handle_bytes, i32 handle_type, then the bytes.
    let mut buf = vec![0u8; 8 + handle.len()];
    buf[0..4].copy_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf[4..8].copy_from_slice(&handle_type.to_ne_bytes());
    buf[8..].copy_from_slice(handle);
    // SAFETY: buf holds a complete struct file_handle of handle_bytes = handle.len(); the
    // kernel only reads it.
    c(unsafe { libc::syscall(libc::SYS_open_by_handle_at, mount_fd.as_raw_fd(), buf.as_mut_ptr(), flags) }).map(owned)
}

/// clock_gettime(2) of `clockid`, in ns.
pub fn clock_gettime(clockid: i32) -> Result<u64> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid out pointer.
    c(unsafe { libc::clock_gettime(clockid, &mut t) } as libc::c_long)?;
    Ok(ns_of(&t))
}

/// A close-on-exec duplicate of fd number `fd` of this process, whoever owns it (e.g.
/// an fd the user named on the command line: `--inherit-fd`). The new fd is ours; the
/// original is only read (an fd number that is not open gives EBADF).
pub fn dup_raw(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC takes an integer and creates a new fd nobody else owns.
    let d = c(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) } as libc::c_long)?;
    Ok(owned(d))
}

/// One unix socket as NETLINK_SOCK_DIAG reports it.
#[derive(Debug, Clone, Default)]
pub struct UnixDiag {
    pub ino: u32,
    pub typ: u8,
    pub state: u8,
    pub peer: u32,
    /// Bound name (abstract names start with a NUL byte); empty if unbound.
    pub name: Vec<u8>,
    /// sk_shutdown bits: 1 = receive side shut down, 2 = send side.
    pub shutdown: u8,
    /// Bytes (stream) or packets queued for reading; for listeners, pending connections.
    pub rqueue: u32,
    /// For listeners: the backlog.
    pub wqueue: u32,
    /// For listeners: the sockets of the connections waiting to be accepted, oldest
    /// first (UNIX_DIAG_ICONS).
    pub icons: Vec<u32>,
    /// Bound to a path: the inode and device (kernel encoding: major << 20 | minor) of
    /// the socket file bind created (UNIX_DIAG_VFS), whether or not it still has a name.
    pub vfs: Option<(u32, u32)>,
}

/// Every unix socket of the host (NETLINK_SOCK_DIAG dump with name, peer, queue and
/// shutdown), keyed by nothing: the caller indexes by inode.
pub fn unix_diag() -> Result<Vec<UnixDiag>> {
    // struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
    let mut req = [0u8; 24];
    req[0] = libc::AF_UNIX as u8;
    req[4..8].copy_from_slice(&u32::MAX.to_le_bytes()); // all states
    req[12..16].copy_from_slice(&(0x1u32 | 0x2 | 0x4 | 0x8 | 0x10).to_le_bytes()); // NAME | VFS | PEER | ICONS | RQLEN
    let mut out = Vec::new();
    for m in sock_diag_dump(&req)? {
        if m.len() < 16 {
            continue;
        }
        let mut d = UnixDiag { typ: m[1], state: m[2], ino: u32::from_le_bytes(m[4..8].try_into().unwrap()), ..Default::default() };
        for (aty, data) in rtattrs(&m[16..]) {
            match aty {
                0 => d.name = data.to_vec(),
                2 if data.len() >= 4 => d.peer = u32::from_le_bytes(data[0..4].try_into().unwrap()),
                4 if data.len() >= 8 => {
                    d.rqueue = u32::from_le_bytes(data[0..4].try_into().unwrap());
                    d.wqueue = u32::from_le_bytes(data[4..8].try_into().unwrap());
                }
                6 if !data.is_empty() => d.shutdown = data[0],
                1 if data.len() >= 8 => {
                    d.vfs = Some((u32::from_le_bytes(data[0..4].try_into().unwrap()), u32::from_le_bytes(data[4..8].try_into().unwrap())))
                }
                3 => d.icons = data.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect(),
                _ => {}
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// A TCP or UDP socket as NETLINK_SOCK_DIAG (inet) reports it.
#[derive(Debug, Clone, Default)]
pub struct InetDiag {
    pub ino: u32,
    pub state: u8,
    /// For a listener: connections waiting in the accept queue; else bytes to read.
    pub rqueue: u32,
    /// For a listener: its backlog; else bytes not yet acknowledged/sent.
    pub wqueue: u32,
    /// sk_shutdown (INET_DIAG_SHUTDOWN): 1 = no more receives, 2 = no more sends.
    pub shutdown: u8,
    /// The remote port and address (16 bytes; IPv4: the first 4), also while connecting
    /// (getpeername fails in SYN_SENT).
    pub dport: u16,
    pub dst: [u8; 16],
    /// The local port and address.
    pub sport: u16,
    pub src: [u8; 16],
    /// The kernel's socket cookie (unique for the boot).
    pub cookie: u64,
    /// TCP MD5 signature keys are set (INET_DIAG_MD5SIG; listed for CAP_NET_ADMIN).
    pub md5: bool,
    /// An upper layer protocol is attached (INET_DIAG_ULP_INFO: kernel TLS...).
    pub ulp: bool,
    /// tcp_info's tcpi_last_data_sent (INET_DIAG_INFO): milliseconds since the socket
    /// last sent data, or since it was made if it never did (a connection waiting to
    /// be accepted: its age, in scheduler ticks).
    pub last_data_sent: u32,
}

/// Every TCP (protocol 6) or UDP (17) socket of `family` (AF_INET / AF_INET6).
pub fn inet_diag(family: i32, protocol: u8) -> Result<Vec<InetDiag>> {
    // struct inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48)
    let mut req = [0u8; 56];
    req[0] = family as u8;
    req[1] = protocol;
    // idiag_ext: INET_DIAG_INFO, which also brings the TCP aux attributes (MD5 keys,
    // ULP) for CAP_NET_ADMIN
    req[2] = 1 << (2 - 1);
    req[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut out = Vec::new();
    for m in sock_diag_dump(&req)? {
        // struct inet_diag_msg: family, state, timer, retrans, id (48), expires, rqueue, wqueue, uid, inode
        if m.len() < 72 {
            continue;
        }
        let u = |o: usize| u32::from_le_bytes(m[o..o + 4].try_into().unwrap());
        let attrs = rtattrs(&m[72..]);
        let shutdown = attrs.iter().find(|(t, _)| *t == 8).and_then(|(_, v)| v.first().copied()).unwrap_or(0);
        let (md5, ulp) = (attrs.iter().any(|(t, _)| *t == 18), attrs.iter().any(|(t, _)| *t == 19));
        let dport = u16::from_be_bytes([m[6], m[7]]);
        let dst: [u8; 16] = m[24..40].try_into().unwrap();
        let sport = u16::from_be_bytes([m[4], m[5]]);
        let src: [u8; 16] = m[8..24].try_into().unwrap();
        let cookie = u64::from(u(44)) | (u64::from(u(48)) << 32);
        // struct tcp_info: 8 bytes of u8 fields, 9 u32, then tcpi_last_data_sent
        let last_data_sent = attrs.iter().find(|(t, _)| *t == 2).and_then(|(_, v)| v.get(44..48)).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()));
        out.push(InetDiag { state: m[1], rqueue: u(56), wqueue: u(60), ino: u(68), shutdown, dport, dst, sport, src, cookie, md5, ulp, last_data_sent });
    }
    Ok(out)
}

pub(super) fn rtattrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let alen = u16::from_le_bytes(b[0..2].try_into().unwrap()) as usize;
        let aty = u16::from_le_bytes(b[2..4].try_into().unwrap());
        if alen < 4 || alen > b.len() {
            break;
        }
        out.push((aty, &b[4..alen]));
        let step = ((alen + 3) & !3).min(b.len());
        b = &b[step..];
    }
    out
}

/// Sends one SOCK_DIAG_BY_FAMILY dump request (`req` = the family's request struct)
/// and returns the payload of every answer message.
pub(super) fn sock_diag_dump(req: &[u8]) -> Result<Vec<Vec<u8>>> {
    sock_diag_exchange(20, 0x300, req) // SOCK_DIAG_BY_FAMILY, NLM_F_DUMP
}

/// Sends one sock_diag request of message type `ty` that answers with an
/// acknowledgment only (NLM_F_ACK): Ok if the kernel acknowledged it without error.
pub(super) fn sock_diag_request(ty: u16, req: &[u8]) -> Result<()> {
    sock_diag_exchange(ty, 0x4, req).map(drop) // NLM_F_ACK
}

/// One NETLINK_SOCK_DIAG request of type `ty` with NLM_F_REQUEST and `flags`: the
/// payload of every answer message until NLMSG_DONE or the acknowledgment (an
/// NLMSG_ERROR of 0).
fn sock_diag_exchange(ty: u16, flags: u16, req: &[u8]) -> Result<Vec<Vec<u8>>> {
    // SAFETY: plain socket(2); NETLINK_SOCK_DIAG = 4.
    let s = c(unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 4) } as libc::c_long)?;
    let sock = owned(s as i64);
    let fd = std::os::fd::AsFd::as_fd(&sock);
    let mut msg = Vec::with_capacity(16 + req.len());
    msg.extend_from_slice(&((16 + req.len()) as u32).to_le_bytes());
    msg.extend_from_slice(&ty.to_le_bytes());
    msg.extend_from_slice(&(0x1u16 | flags).to_le_bytes()); // NLM_F_REQUEST
    msg.extend_from_slice(&1u32.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes());
    msg.extend_from_slice(req);
    if write_fd(fd, &msg)? != msg.len() {
        return Err(Error::other("short netlink write"));
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = read_fd(fd, &mut buf)?;
        if n == 0 {
            return Err(Error::other("netlink socket closed"));
        }
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_le_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_le_bytes(buf[off + 4..off + 6].try_into().unwrap());
            if len < 16 || off + len > n {
                return Err(Error::other("malformed netlink message"));
            }
            match ty {
                3 => return Ok(out), // NLMSG_DONE
                2 => {
                    let e = i32::from_le_bytes(buf[off + 16..off + 20].try_into().unwrap_or([0; 4]));
                    if e == 0 {
                        return Ok(out); // the acknowledgment
                    }
                    return Err(Error::from_raw_os_error(-e));
                }
                _ => out.push(buf[off + 16..off + len].to_vec()),
            }
            off += (len + 3) & !3;
        }
    }
}

/// getsockname / getpeername: the raw sockaddr bytes (empty if not connected).
pub fn sock_name(fd: BorrowedFd<'_>, peer: bool) -> Result<Vec<u8>> {
    let mut buf = [0u8; 128];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf/len describe a valid writable sockaddr buffer.
    let r = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), buf.as_mut_ptr().cast(), &mut len)
        }
    };
    if r < 0 {
        let e = Error::last_os_error();
        if peer && e.raw_os_error() == Some(libc::ENOTCONN) {
            return Ok(Vec::new());
        }
        return Err(e);
    }
    Ok(buf[..(len as usize).min(buf.len())].to_vec())
}

pub fn socket(domain: i32, ty: i32, proto: i32) -> Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let s = c(unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) } as libc::c_long)?;
    Ok(owned(s as i64))
}

/// bind (connect=false) or connect (true) to a raw sockaddr.
pub fn sock_addr_op(fd: BorrowedFd<'_>, addr: &[u8], connect: bool) -> Result<()> {
    // SAFETY: addr is a valid buffer of addr.len() bytes holding a sockaddr.
    let r = unsafe {
        if connect {
            libc::connect(fd.as_raw_fd(), addr.as_ptr().cast(), addr.len() as libc::socklen_t)
        } else {
            libc::bind(fd.as_raw_fd(), addr.as_ptr().cast(), addr.len() as libc::socklen_t)
        }
    };
    c(r as libc::c_long).map(drop)
}

pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> Result<()> {
    // SAFETY: plain syscall.
    c(unsafe { libc::listen(fd.as_raw_fd(), backlog) } as libc::c_long).map(drop)
}

/// Bytes waiting to be read (FIONREAD / SIOCINQ).
pub fn inq(fd: BorrowedFd<'_>) -> Result<i32> {
    let mut v: i32 = 0;
    // SAFETY: FIONREAD writes one int.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut v) } as libc::c_long)?;
    Ok(v)
}

/// Credentials a unix socket message carries (SCM_CREDENTIALS), in the reader's pid and
/// user namespaces: pid 0 (and the overflow uid/gid) when the sender attached none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// One control message a recvmsg returned: level, type and payload bytes.
pub struct Cmsg {
    pub level: i32,
    pub ty: i32,
    pub data: Vec<u8>,
}

impl Cmsg {
    /// The `i`-th 4-byte word of the payload (ints, or fields of a kernel struct of them).
    pub fn word(&self, i: usize) -> Option<[u8; 4]> {
        self.data.get(i * 4..i * 4 + 4).and_then(|b| b.try_into().ok())
    }
}

/// recvmsg(2) of one message into `buf` with up to `ctl_len` bytes of control data:
/// (byte count — a datagram's full length with MSG_TRUNC —, the sender's address bytes,
/// msg_flags, the control messages in order).
pub fn recvmsg_ctl(fd: BorrowedFd<'_>, buf: &mut [u8], ctl_len: usize, flags: i32) -> Result<(usize, Vec<u8>, i32, Vec<Cmsg>)> {
    let mut name = [0u8; 128];
    let mut ctl = vec![0u64; ctl_len.div_ceil(8)]; // aligned for cmsghdr
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: an all-zero msghdr is valid; its pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = name.as_mut_ptr().cast();
    msg.msg_namelen = name.len() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.as_mut_ptr().cast();
    msg.msg_controllen = ctl.len() * 8;
    // SAFETY: msg points to live buffers (name, buf, ctl) for the duration of the call.
    let n = c(unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) } as libc::c_long)?;
    let mut out = Vec::new();
    // SAFETY: msg's control buffer holds msg_controllen bytes the kernel wrote.
    let mut cm = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cm.is_null() {
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR only return headers inside the buffer.
        let (level, ty, len) = unsafe { ((*cm).cmsg_level, (*cm).cmsg_type, (*cm).cmsg_len) };
        // SAFETY: CMSG_LEN is arithmetic on a constant.
        let payload = len.saturating_sub(unsafe { libc::CMSG_LEN(0) } as usize);
        // SAFETY: the header's payload: `payload` bytes inside the buffer the kernel wrote.
        let data = unsafe { std::slice::from_raw_parts(libc::CMSG_DATA(cm), payload) }.to_vec();
        out.push(Cmsg { level, ty, data });
        // SAFETY: cm is a header of msg's buffer.
        cm = unsafe { libc::CMSG_NXTHDR(&msg, cm) };
    }
    let nl = (msg.msg_namelen as usize).min(name.len());
    Ok((n as usize, name[..nl].to_vec(), msg.msg_flags, out))
}

/// File descriptors received in one recvmsg's control data (SCM_RIGHTS), now ours, and
/// the credentials (SCM_CREDENTIALS) if the socket reports them. Err(ENOTSUP) when it
/// held any other kind of ancillary data (those fds are closed).
fn take_ancillary(cmsgs: &[Cmsg]) -> Result<(Vec<OwnedFd>, Option<Creds>)> {
    let mut out = Vec::new();
    let mut creds = None;
    let mut other = false;
    for m in cmsgs {
        if m.level == libc::SOL_SOCKET && m.ty == libc::SCM_RIGHTS {
            out.extend((0..m.data.len() / 4).filter_map(|i| m.word(i)).map(|w| owned(i64::from(i32::from_ne_bytes(w)))));
        } else if m.level == libc::SOL_SOCKET && m.ty == libc::SCM_CREDENTIALS {
            // struct ucred: pid, uid, gid
            if let (Some(p), Some(u), Some(g)) = (m.word(0), m.word(1), m.word(2)) {
                creds = Some(Creds { pid: i32::from_ne_bytes(p), uid: u32::from_ne_bytes(u), gid: u32::from_ne_bytes(g) });
            }
        } else {
            other = true;
        }
    }
    if other {
        return Err(Error::from_raw_os_error(libc::ENOTSUP));
    }
    Ok((out, creds))
}

/// What one peek returned: byte count, sender address, fds installed in our table
/// (close-on-exec), credentials (with SO_PASSCRED on).
type Peeked = (usize, Vec<u8>, Vec<OwnedFd>, Option<Creds>);

/// One recvmsg(MSG_PEEK | MSG_DONTWAIT) into `buf` with room for 1000 passed fds. None
/// when nothing is queued.
fn peek_once(fd: BorrowedFd<'_>, buf: &mut [u8], extra: i32) -> Result<Option<Peeked>> {
    let (n, name, flags, cmsgs) = match recvmsg_ctl(fd, buf, 4096, libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC | extra) {
        Ok(r) => r,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
        Err(e) => return Err(e),
    };
    let (fds, creds) = take_ancillary(&cmsgs)?;
    if flags & libc::MSG_CTRUNC != 0 {
        return Err(Error::from_raw_os_error(libc::EMSGSIZE));
    }
    // a sender without a name shows as the bare family (2 bytes)
    let sender = if name.len() > 2 { name } else { Vec::new() };
    Ok(Some((n, sender, fds, creds)))
}

/// A piece of a unix socket's queue as one peek returns it: bytes, the file
/// descriptors in flight with them (installed in our table, close-on-exec), and their
/// writer's credentials (with SO_PASSCRED on: a read never joins two writers' bytes).
#[derive(Debug, Default)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    pub creds: Option<Creds>,
}

/// Everything queued for reading on a stream socket, without consuming it (MSG_PEEK with
/// SO_PEEK_OFF, put back afterwards), in chunks that end where file descriptors travel
/// (the kernel stops a read after a message that carries some). Err(ENOTSUP) for other
/// ancillary data (the caller turns SO_PASSCRED / SO_PASSSEC off around this).
pub fn peek_stream_chunks(fd: BorrowedFd<'_>) -> Result<Vec<Chunk>> {
    let old = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut out: Vec<Chunk> = Vec::new();
    // Room for the whole queue: a peek that fills its buffer goes on to the next
    // message and returns its fds with none of its bytes.
    let queued = inq(fd)?.max(0) as usize;
    if queued > 256 << 20 {
        setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
        return Err(Error::from_raw_os_error(libc::EMSGSIZE));
    }
    let mut buf = vec![0u8; queued + 1];
    let push = |out: &mut Vec<Chunk>, data: &[u8], fds: Vec<OwnedFd>, creds: Option<Creds>| match out.last_mut() {
        // bytes without fds after bytes without fds, from the same writer: one chunk
        Some(last) if last.fds.is_empty() && fds.is_empty() && last.creds == creds => last.data.extend_from_slice(data),
        _ => out.push(Chunk { data: data.to_vec(), fds, creds }),
    };
    let r = loop {
        match peek_once(fd, &mut buf, 0) {
            Ok(None) | Ok(Some((0, ..))) => break Ok(()),
            Ok(Some((n, _, fds, creds))) if fds.is_empty() => {
                push(&mut out, &buf[..n], fds, creds);
            }
            Ok(Some((n, _, fds, creds))) => {
                // A read stops after the message that carries fds, but may have begun
                // with bytes sent without any, and where that message starts cannot be
                // seen (a peek returns the fds of the next message that has some even
                // when it copies none of its bytes): the fds go with the last byte, so
                // a read that reaches them gets them, never one that stops before.
                push(&mut out, &buf[..n - 1], Vec::new(), creds);
                push(&mut out, &buf[n - 1..n], fds, creds);
            }
            Err(e) => break Err(e),
        }
    };
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    r.map(|_| out)
}

pub fn socketpair(ty: i32) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    c(unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } as libc::c_long)?;
    Ok((owned(fds[0] as i64), owned(fds[1] as i64)))
}

pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> Result<()> {
    // SAFETY: plain syscall on an fd we hold.
    c(unsafe { libc::shutdown(fd.as_raw_fd(), how) } as libc::c_long).map(drop)
}

pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, opt: i32, v: i32) -> Result<()> {
    // SAFETY: v is a valid int option value.
    c(unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, (&v as *const i32).cast(), 4) } as libc::c_long).map(drop)
}

pub fn getsockopt_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut l = len as libc::socklen_t;
    // SAFETY: buf/l describe a valid writable buffer.
    c(unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, buf.as_mut_ptr().cast(), &mut l) } as libc::c_long)?;
    buf.truncate(l as usize);
    Ok(buf)
}

pub fn setsockopt_bytes(fd: BorrowedFd<'_>, level: i32, opt: i32, v: &[u8]) -> Result<()> {
    // SAFETY: v is a valid buffer of v.len() bytes.
    c(unsafe { libc::setsockopt(fd.as_raw_fd(), level, opt, v.as_ptr().cast(), v.len() as libc::socklen_t) } as libc::c_long)
        .map(drop)
}

/// Whether the next byte to read is at the urgent mark (SIOCATMARK, sockatmark(3)).
pub fn atmark(fd: BorrowedFd<'_>) -> Result<bool> {
    const SIOCATMARK: libc::Ioctl = 0x8905; // linux/sockios.h
    let mut v: i32 = 0;
    // SAFETY: SIOCATMARK writes one int.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), SIOCATMARK, &mut v) } as libc::c_long)?;
    Ok(v != 0)
}

/// Bytes in the send queue (SIOCOUTQ).
pub fn outq(fd: BorrowedFd<'_>) -> Result<i32> {
    let mut v: i32 = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int.
    c(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut v) } as libc::c_long)?;
    Ok(v)
}

/// recv(2) with flags into buf; returns the byte count.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], flags: i32) -> Result<usize> {
    // SAFETY: buf is a valid writable buffer.
    c(unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) } as libc::c_long).map(|n| n as usize)
}

/// send(2) with flags; returns the byte count.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: i32) -> Result<usize> {
    // SAFETY: buf is a valid readable buffer.
    c(unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) } as libc::c_long).map(|n| n as usize)
}

/// One datagram (or seqpacket record) queued on a socket, with its sender's address
/// (raw sockaddr bytes; empty when the sender had none) and the file descriptors in
/// flight with it (installed in our table, close-on-exec).
#[derive(Debug, Default)]
pub struct Queued {
    pub data: Vec<u8>,
    pub sender: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    /// With SO_PASSCRED on.
    pub creds: Option<Creds>,
}

/// Every datagram queued for reading on `fd`, oldest first, without consuming any:
/// MSG_PEEK with SO_PEEK_OFF moving past each one (an empty one included: the kernel
/// marks it peeked), SO_PEEK_OFF put back as it was. Errors: EMSGSIZE for a datagram
/// larger than `max_one` bytes or a queue over `max_total`; ENOTSUP for ancillary data
/// other than file descriptors and credentials (the caller turns SO_PASSSEC off around
/// this, and SO_PASSCRED on to see credentials).
pub fn peek_datagrams(fd: BorrowedFd<'_>, max_one: usize, max_total: usize) -> Result<Vec<Queued>> {
    let old = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF)?;
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut buf = vec![0u8; max_one];
    let r = loop {
        let (n, sender, fds, creds) = match peek_once(fd, &mut buf, libc::MSG_TRUNC) {
            Ok(None) => break Ok(()),
            Ok(Some(p)) => p,
            Err(e) => break Err(e),
        };
        total = total.saturating_add(n);
        if n > buf.len() || total > max_total || out.len() >= 1 << 20 {
            break Err(Error::from_raw_os_error(libc::EMSGSIZE));
        }
        out.push(Queued { data: buf[..n].to_vec(), sender, fds, creds });
    };
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    r.map(|_| out)
}

/// sendmsg(2) of `buf` with `fds` as SCM_RIGHTS (none: a plain send), to the raw
/// sockaddr `to` (empty: the connected peer), not waiting.
pub fn sendmsg_fds(fd: BorrowedFd<'_>, buf: &[u8], fds: &[BorrowedFd<'_>], to: &[u8]) -> Result<usize> {
    sendmsg_creds(fd, buf, fds, None, to)
}

/// sendmsg_fds with credentials `creds` as SCM_CREDENTIALS too (a pid, uid and gid other
/// than the caller's need CAP_SYS_ADMIN, CAP_SETUID, CAP_SETGID; the pid must exist).
pub fn sendmsg_creds(fd: BorrowedFd<'_>, buf: &[u8], fds: &[BorrowedFd<'_>], creds: Option<Creds>, to: &[u8]) -> Result<usize> {
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let payload = std::mem::size_of_val(raw.as_slice()) as u32;
    let cred_len = std::mem::size_of::<libc::ucred>() as u32;
    // SAFETY: CMSG_SPACE is arithmetic.
    let rights_space = if raw.is_empty() { 0 } else { (unsafe { libc::CMSG_SPACE(payload) }) as usize };
    // SAFETY: as above.
    let cred_space = if creds.is_none() { 0 } else { (unsafe { libc::CMSG_SPACE(cred_len) }) as usize };
    let space = rights_space + cred_space;
    let mut ctl = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: an all-zero msghdr is valid; its pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if !to.is_empty() {
        msg.msg_name = to.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = to.len() as libc::socklen_t;
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if space > 0 {
        msg.msg_control = ctl.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer has room for the headers with their payloads
        // (CMSG_SPACE each, zeroed); CMSG_FIRSTHDR returns its start and CMSG_NXTHDR
        // the next header inside it.
        unsafe {
            let mut cm = libc::CMSG_FIRSTHDR(&msg);
            if !raw.is_empty() {
                (*cm).cmsg_level = libc::SOL_SOCKET;
                (*cm).cmsg_type = libc::SCM_RIGHTS;
                (*cm).cmsg_len = libc::CMSG_LEN(payload) as usize;
                std::ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(cm) as *mut i32, raw.len());
                cm = libc::CMSG_NXTHDR(&msg, cm);
            }
            if let Some(c) = creds {
                (*cm).cmsg_level = libc::SOL_SOCKET;
                (*cm).cmsg_type = libc::SCM_CREDENTIALS;
                (*cm).cmsg_len = libc::CMSG_LEN(cred_len) as usize;
                let u = libc::ucred { pid: c.pid, uid: c.uid, gid: c.gid };
                (libc::CMSG_DATA(cm) as *mut libc::ucred).write_unaligned(u);
            }
        }
    }
    // SAFETY: msg points to live buffers (buf, to, ctl) for the call; the kernel only
    // reads them.
    c(unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) } as libc::c_long).map(|n| n as usize)
}

/// accept4(2) with SOCK_CLOEXEC.
pub fn accept(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    // SAFETY: no address buffer (NULL, NULL).
    let s = c(unsafe { libc::accept4(fd.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) } as libc::c_long)?;
    Ok(owned(s as i64))
}

/// fanotify_init(2).
pub fn fanotify_init(flags: u32, event_f_flags: u32) -> Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = c(unsafe { libc::syscall(libc::SYS_fanotify_init, flags, event_f_flags) })?;
    // SAFETY: the kernel returned a new fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// fanotify_mark(2) on `path` (relative paths from the cwd).
pub fn fanotify_mark(fd: BorrowedFd<'_>, flags: u32, mask: u64, path: &std::ffi::CStr) -> Result<()> {
    // SAFETY: path is a valid C string; the other arguments are integers.
    c(unsafe { libc::syscall(libc::SYS_fanotify_mark, fd.as_raw_fd(), flags, mask, libc::AT_FDCWD, path.as_ptr()) }).map(drop)
}
