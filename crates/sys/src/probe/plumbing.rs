//! Plumbing of the probes: errno, forked children, pipes, anonymous mappings.

use super::*;

// ---------------------------------------------------------------------------------------------
// Plumbing: errno, forked children, pipes, anonymous mappings
// ---------------------------------------------------------------------------------------------

pub(super) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Turn a raw `-1`-on-error return value into a `Missing` naming the call.
pub(super) fn sys(r: c_long, what: &str) -> Result<c_long, Missing> {
    if r < 0 {
        Err(Missing::sys(what, errno()))
    } else {
        Ok(r)
    }
}

pub(super) fn getpid() -> pid_t {
    std::process::id() as pid_t
}

pub(super) fn describe_status(status: c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else if libc::WIFSTOPPED(status) {
        format!(
            "stopped (signal {}, event {})",
            libc::WSTOPSIG(status),
            status >> 16
        )
    } else {
        format!("reported wait status {status:#x}")
    }
}

/// A forked child process. Dropping it kills it with SIGKILL (if it has not been reaped yet)
/// and reaps it, so no probe leaves a process or a zombie behind.
pub(super) struct Child {
    pub(super) pid: pid_t,
    pub(super) reaped: bool,
}

impl Child {
    /// Fork. The child runs `body` and exits with its return value.
    ///
    /// # Safety
    /// `body` must only make async-signal-safe calls (raw system calls; no allocation, no
    /// locks, no panics): the parent may have other threads (e.g. under `cargo test`),
    /// whose locks the child inherits held.
    pub(super) unsafe fn fork(body: impl FnOnce() -> c_int) -> Result<Child, Missing> {
        let parent = getpid();
        // SAFETY: fork() duplicates only the calling thread. The child below only makes
        // async-signal-safe calls (prctl, getppid, `body` under the caller's contract, _exit)
        // and leaves through _exit, which runs no destructors and no atexit handlers.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Missing::sys("fork", errno()));
        }
        if pid == 0 {
            // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid are plain system calls; if the parent
            // died between fork and prctl we leave at once.
            unsafe {
                libc::prctl(PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                if libc::getppid() != parent {
                    libc::_exit(127);
                }
            }
            let code = body();
            // SAFETY: _exit ends the child without unwinding or running destructors.
            unsafe { libc::_exit(code) }
        }
        Ok(Child { pid, reaped: false })
    }

    /// Wait (polling, bounded by `timeout`) for the next wait status of the child: a stop
    /// (for traced children) or its end.
    fn wait_event(&mut self, timeout: Duration) -> Result<c_int, Missing> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut status: c_int = 0;
            // SAFETY: waitpid writes the status into a local; WNOHANG makes it non-blocking.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG | libc::__WALL) };
            if r == self.pid {
                if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                    self.reaped = true;
                }
                return Ok(status);
            }
            if r < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                return Err(Missing::sys("waitpid on probe child", e));
            }
            if Instant::now() >= deadline {
                return Err(Missing::new(format!(
                    "probe child {} did not report within {} ms",
                    self.pid,
                    timeout.as_millis()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Wait for the child to exit and return its exit code (error if killed, stopped, late).
    pub(super) fn exit_code(&mut self, timeout: Duration) -> Result<c_int, Missing> {
        let status = self.wait_event(timeout)?;
        if libc::WIFEXITED(status) {
            Ok(libc::WEXITSTATUS(status))
        } else {
            Err(Missing::new(format!(
                "probe child {}",
                describe_status(status)
            )))
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: self.pid is our own unreaped child, so the PID cannot have been reused.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        loop {
            let mut status: c_int = 0;
            // SAFETY: blocking waitpid on our own child; the status goes into a local.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if r == self.pid && (libc::WIFEXITED(status) || libc::WIFSIGNALED(status)) {
                break;
            }
            if r < 0 && errno() != libc::EINTR {
                break; // ECHILD: nothing left to reap
            }
        }
        self.reaped = true;
    }
}

/// A child that does nothing until it is killed.
pub(super) fn idle() -> c_int {
    loop {
        // SAFETY: pause() only blocks until a signal arrives.
        unsafe { libc::pause() };
    }
}

/// Fork an idle child, PTRACE_SEIZE it and stop it with PTRACE_INTERRUPT.
pub(super) fn seized_child() -> Result<Child, Missing> {
    // SAFETY: `idle` only calls pause().
    let mut child = unsafe { Child::fork(idle) }?;
    // SAFETY: ptrace on our own child with null addr/data, as PTRACE_SEIZE expects.
    let r = unsafe {
        libc::ptrace(
            PTRACE_SEIZE,
            child.pid,
            std::ptr::null_mut::<c_void>(),
            std::ptr::null_mut::<c_void>(),
        )
    };
    sys(r, "PTRACE_SEIZE")?;
    // SAFETY: as above; PTRACE_INTERRUPT takes no arguments.
    let r = unsafe {
        libc::ptrace(
            PTRACE_INTERRUPT,
            child.pid,
            std::ptr::null_mut::<c_void>(),
            std::ptr::null_mut::<c_void>(),
        )
    };
    sys(r, "PTRACE_INTERRUPT")?;
    let status = child.wait_event(Duration::from_secs(2))?;
    if !libc::WIFSTOPPED(status) || status >> 16 != PTRACE_EVENT_STOP {
        return Err(Missing::new(format!(
            "after PTRACE_INTERRUPT the child {} instead of stopping in PTRACE_EVENT_STOP",
            describe_status(status)
        )));
    }
    Ok(child)
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub(super) fn pipe() -> Result<(OwnedFd, OwnedFd), Missing> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: pipe2 writes two descriptors into `fds`.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    sys(r as c_long, "pipe2")?;
    // SAFETY: both descriptors were just created by pipe2 and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Run `body` in a forked child and return the `N` numbers it fills in (sent over a pipe).
///
/// # Safety
/// `body` must follow the rules of [`Child::fork`] (async-signal-safe calls only).
pub(super) unsafe fn in_child<const N: usize>(body: impl FnOnce(&mut [i64; N])) -> Result<[i64; N], Missing> {
    let (rd, wr) = pipe()?;
    let wr_fd = wr.as_raw_fd();
    let run = move || {
        let mut out = [0i64; N];
        body(&mut out);
        let len = size_of::<[i64; N]>();
        // SAFETY: writes `len` bytes from the live local array `out` into the pipe.
        let n = unsafe { libc::write(wr_fd, out.as_ptr().cast(), len) };
        if n == len as isize {
            0
        } else {
            1
        }
    };
    // SAFETY: `run` writes into a local array and makes one write(2): async-signal-safe,
    // given the caller's `body` is.
    let mut child = unsafe { Child::fork(run) }?;
    drop(wr);
    let code = child.exit_code(Duration::from_secs(5))?;
    if code != 0 {
        return Err(Missing::new(format!(
            "probe child exited with status {code}"
        )));
    }
    let mut bytes = vec![0u8; size_of::<[i64; N]>()];
    File::from(rd)
        .read_exact(&mut bytes)
        .map_err(|e| Missing::new(format!("reading the probe child's report: {e}")))?;
    let mut out = [0i64; N];
    for (i, chunk) in bytes.chunks_exact(8).enumerate() {
        out[i] = i64::from_ne_bytes(chunk.try_into().expect("8-byte chunk"));
    }
    Ok(out)
}

/// An anonymous private read-write mapping of `len` bytes, unmapped on drop.
pub(super) fn anon(len: usize) -> Result<AnonBuf, Missing> {
    AnonBuf::new(len).map_err(|e| io_missing("mmap", &e))
}

/// Write one byte into page `page` of `m` (so that it is present and dirty).
pub(super) fn touch(m: &mut AnonBuf, page: usize, value: u8) {
    let off = page * page_size();
    assert!(off < m.len());
    // SAFETY: `off` is inside the mapping, which is readable and writable and borrowed
    // mutably; volatile so the write is not elided before the kernel inspects the page.
    unsafe { std::ptr::write_volatile(m.as_mut_ptr().add(off), value) };
}

/// The 64-bit pagemap entry of `addr` in process `pid`.
pub(super) fn pagemap_entry(pid: pid_t, addr: usize) -> Result<u64, Missing> {
    let path = format!("/proc/{pid}/pagemap");
    let f = File::open(&path).map_err(|e| io_missing(&format!("open {path}"), &e))?;
    let mut b = [0u8; 8];
    let off = (addr / page_size()) as u64 * 8;
    f.read_exact_at(&mut b, off)
        .map_err(|e| io_missing(&format!("read {path}"), &e))?;
    Ok(u64::from_ne_bytes(b))
}

pub(super) fn io_missing(what: &str, e: &io::Error) -> Missing {
    match e.raw_os_error() {
        Some(n) => Missing::sys(what, n),
        None => Missing::new(format!("{what}: {e}")),
    }
}

pub(super) fn same_file(a: &File, b: &File) -> Result<bool, Missing> {
    let ma = a.metadata().map_err(|e| io_missing("fstat", &e))?;
    let mb = b.metadata().map_err(|e| io_missing("fstat", &e))?;
    Ok(ma.dev() == mb.dev() && ma.ino() == mb.ino())
}

