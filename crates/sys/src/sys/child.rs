//! Raw syscalls for a freshly forked child that must not touch libc state much.

pub fn exit(code: i32) -> ! {
    // SAFETY: terminates the calling process immediately.
    unsafe { libc::_exit(code) }
}
pub fn dup3(old: i32, new: i32, flags: i32) -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::dup3(old, new, flags) }
}
pub fn dup_above(old: i32, min: i32) -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::fcntl(old, libc::F_DUPFD_CLOEXEC, min) }
}
pub fn close(fd: i32) {
    // SAFETY: plain syscall.
    unsafe { libc::close(fd) };
}
pub fn close_range(first: u32, last: u32) -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) as i32 }
}
pub fn set_cloexec(fd: i32, on: bool) -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) }
}
pub fn umask(m: u32) {
    // SAFETY: plain syscall.
    unsafe { libc::umask(m) };
}
pub fn chdir(path: &std::ffi::CStr) -> i32 {
    // SAFETY: valid C string.
    unsafe { libc::chdir(path.as_ptr()) }
}
pub fn fchdir(fd: i32) -> i32 {
    // SAFETY: plain syscall on an fd number; a bad fd fails with EBADF.
    unsafe { libc::fchdir(fd) }
}
/// An O_PATH descriptor of the working directory (to come back to it after a chroot).
pub fn open_cwd() -> i32 {
    // SAFETY: valid C string; a new fd or -1.
    unsafe { libc::open(c".".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) }
}
pub fn chroot(path: &std::ffi::CStr) -> i32 {
    // SAFETY: valid C string.
    unsafe { libc::chroot(path.as_ptr()) }
}
pub fn set_name(name: &std::ffi::CStr) -> i32 {
    // SAFETY: valid C string; PR_SET_NAME copies at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) }
}
pub fn read(fd: i32, b: &mut [u8]) -> isize {
    // SAFETY: valid buffer.
    unsafe { libc::read(fd, b.as_mut_ptr().cast(), b.len()) }
}
pub fn write(fd: i32, b: &[u8]) -> isize {
    // SAFETY: valid buffer.
    unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) }
}
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
/// Sleep forever in pause(); the restorer takes over with ptrace.
pub fn park() -> ! {
    block_all_signals();
    loop {
        // SAFETY: plain syscall.
        unsafe { libc::pause() };
    }
}
/// Blocks every signal (SIGKILL/SIGSTOP cannot be): a parked process never returns
/// to user code, whose memory the restorer may be replacing.
pub fn block_all_signals() {
    // SAFETY: a full local sigset; plain syscall.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}
pub fn setsid() -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::setsid() }
}
/// TIOCSCTTY on `fd` (no stealing): the calling session leader gets it as its
/// controlling terminal.
pub fn set_ctty(fd: i32) -> i32 {
    // SAFETY: TIOCSCTTY takes an int by value.
    unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0 as libc::c_int) }
}
pub fn setpgid(pid: i32, pgid: i32) -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::setpgid(pid, pgid) }
}
/// Ends the calling process with a saved wait status: exit(code), or death by the
/// signal (default action forced, signal unblocked).
pub fn die_with_status(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: plain syscalls on our own process; the sigset is local.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
        }
    }
    exit(libc::WEXITSTATUS(status))
}
/// Brings the loopback interface of the calling process's network namespace up
/// (no allocation: for a freshly forked child). Returns -1 on failure.
pub fn loopback_up() -> i32 {
    // SAFETY: plain syscalls on a local ifreq and our own socket, closed before return.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return -1;
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as i16;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS, &mut ifr);
        }
        libc::close(s);
        r
    }
}
/// unshare(CLONE_NEWTIME) and set the new namespace's clock offsets (monotonic s,
/// ns, boottime s, ns) before any process enters it. No allocation. -1 on failure.
pub fn new_time_ns(off: &[i64; 4]) -> i32 {
    fn put(buf: &mut [u8], at: &mut usize, s: &[u8]) {
        for &b in s {
            if *at < buf.len() {
                buf[*at] = b;
                *at += 1;
            }
        }
    }
    fn num(buf: &mut [u8], at: &mut usize, v: i64) {
        let mut d = [0u8; 24];
        let mut n = v.unsigned_abs();
        let mut k = d.len();
        loop {
            k -= 1;
            d[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if v < 0 {
            put(buf, at, b"-");
        }
        put(buf, at, &d[k..]);
    }
    let mut buf = [0u8; 128];
    let mut at = 0;
    put(&mut buf, &mut at, b"monotonic ");
    num(&mut buf, &mut at, off[0]);
    put(&mut buf, &mut at, b" ");
    num(&mut buf, &mut at, off[1]);
    put(&mut buf, &mut at, b"\nboottime ");
    num(&mut buf, &mut at, off[2]);
    put(&mut buf, &mut at, b" ");
    num(&mut buf, &mut at, off[3]);
    put(&mut buf, &mut at, b"\n");
    // SAFETY: plain syscalls; the path is a NUL-terminated literal, buf is local.
    unsafe {
        if libc::unshare(libc::CLONE_NEWTIME) < 0 {
            return -1;
        }
        let fd = libc::open(c"/proc/self/timens_offsets".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return -1;
        }
        let r = libc::write(fd, buf.as_ptr().cast(), at);
        libc::close(fd);
        if r == at as isize { 0 } else { -1 }
    }
}
/// Writes `b` into the file at `path` (no allocation). -1 on failure.
pub fn write_file(path: &std::ffi::CStr, b: &[u8]) -> i32 {
    // SAFETY: valid C string and buffer; the fd is ours and closed here.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return -1;
        }
        let r = libc::write(fd, b.as_ptr().cast(), b.len());
        libc::close(fd);
        if r == b.len() as isize { 0 } else { -1 }
    }
}
pub fn unshare(flags: i32) -> i32 {
    // SAFETY: plain syscall.
    unsafe { libc::unshare(flags) }
}
/// mount(2); `src`/`fstype` may be None (NULL).
pub fn mount(src: Option<&std::ffi::CStr>, target: &std::ffi::CStr, fstype: Option<&std::ffi::CStr>, flags: u64) -> i32 {
    let p = |x: Option<&std::ffi::CStr>| x.map(|c| c.as_ptr()).unwrap_or(std::ptr::null());
    // SAFETY: valid C strings or NULL; no data argument.
    unsafe { libc::mount(p(src), target.as_ptr(), p(fstype), flags, std::ptr::null()) }
}
pub fn set_pdeathsig_kill() {
    // SAFETY: prctl with integer args.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
}
