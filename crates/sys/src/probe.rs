//! Kernel feature probes used by `stasis check`, plus a few small process-control helpers used
//! by `stasis demo` (they live here because stasis-sys is the only crate allowed `unsafe`).
//!
//! Every probe makes the real call stasis depends on; none of them reads a version number. A
//! probe that needs a second process forks a [`Child`] that only makes raw system calls; the
//! child is killed (if still alive) and reaped before the probe returns, and it dies with its
//! parent anyway (`PR_SET_PDEATHSIG`), so `stasis check` leaves neither processes nor zombies.
//!
//! The constants below are written out by hand (x86_64 values) because the build machine's
//! headers (glibc 2.36, Linux 6.1 UAPI) predate several of them.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::kabi::{CloneArgs, PeekSiginfoArgs, PrctlMmMap, RseqConfiguration, Sigevent};
use crate::sys::AnonBuf;
use libc::{c_int, c_long, c_uint, c_ulong, c_void, pid_t};

// ---------------------------------------------------------------------------------------------
// Constants (x86_64)
// ---------------------------------------------------------------------------------------------

const SYS_KCMP: c_long = 312;
const SYS_USERFAULTFD: c_long = 323;
const SYS_PIDFD_OPEN: c_long = 434;
const SYS_CLONE3: c_long = 435;
const SYS_PIDFD_GETFD: c_long = 438;
const SYS_TIMER_CREATE: c_long = 222;
const SYS_TIMER_DELETE: c_long = 226;
const SYS_BRK: c_long = 12;
const SYS_CLOSE_RANGE: c_long = 436;
const CLOSE_RANGE_CLOEXEC: c_uint = 1 << 2;

const PTRACE_SEIZE: c_uint = 0x4206;
const PTRACE_INTERRUPT: c_uint = 0x4207;
const PTRACE_GETREGSET: c_uint = 0x4204;
const PTRACE_PEEKSIGINFO: c_uint = 0x4209;
const PTRACE_GET_RSEQ_CONFIGURATION: c_uint = 0x420f;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
const PTRACE_EVENT_STOP: c_int = 128;
const NT_X86_XSTATE: usize = 0x202;

const KCMP_FILE: c_int = 0;

const PR_SET_PDEATHSIG: c_int = 1;
const PR_SET_MM: c_int = 35;
const PR_SET_MM_MAP: c_ulong = 14;
const PR_SET_MM_MAP_SIZE: c_ulong = 15;
const PR_SET_CHILD_SUBREAPER: c_int = 36;
const PR_GET_TID_ADDRESS: c_int = 40;
const PR_TIMER_CREATE_RESTORE_IDS: c_int = 77;
const PR_TIMER_CREATE_RESTORE_IDS_ON: c_ulong = 1;
const PR_TIMER_CREATE_RESTORE_IDS_GET: c_ulong = 2;

const UFFD_API: u64 = 0xAA;
const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFD_USER_MODE_ONLY: c_int = 1;
const UFFDIO_API: c_ulong = 0xC018_AA3F;
const UFFDIO_REGISTER: c_ulong = 0xC020_AA00;
const UFFDIO_WRITEPROTECT: c_ulong = 0xC018_AA06;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
const USERFAULTFD_IOC_NEW: c_ulong = 0xAA00;

const PAGEMAP_SCAN: c_ulong = 0xC060_6610;
const PAGE_IS_PRESENT: u64 = 1 << 3;

const PM_PFN_MASK: u64 = (1 << 55) - 1;
const PM_SOFT_DIRTY: u64 = 1 << 55;
const PM_PRESENT: u64 = 1 << 63;

const TCP_REPAIR: c_int = 19;
const TCP_REPAIR_QUEUE: c_int = 20;
const TCP_QUEUE_SEQ: c_int = 21;
const TCP_SEND_QUEUE: c_int = 2;

const CLONE_NEWTIME: c_int = 0x80;

const SIGEV_NONE: c_int = 1;

// ---------------------------------------------------------------------------------------------
// Public probe API
// ---------------------------------------------------------------------------------------------

/// Whether stasis can work without a feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Required,
    Optional,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Need::Required => "required",
            Need::Optional => "optional",
        })
    }
}

/// Why a feature is not usable: what failed and, when a system call said so, its errno.
#[derive(Debug, Clone)]
pub struct Missing {
    pub why: String,
    pub errno: Option<i32>,
}

impl Missing {
    fn new(why: impl Into<String>) -> Self {
        Missing {
            why: why.into(),
            errno: None,
        }
    }
    fn sys(why: impl Into<String>, errno: i32) -> Self {
        Missing {
            why: why.into(),
            errno: Some(errno),
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errno {
            Some(e) => write!(f, "{}: {}", self.why, describe_errno(e)),
            None => f.write_str(&self.why),
        }
    }
}

impl std::error::Error for Missing {}

/// `Ok(detail)` when the feature works (detail may be empty), `Err` when it does not.
pub type Outcome = Result<String, Missing>;

/// One kernel feature and the function that tries it.
pub struct Probe {
    pub name: &'static str,
    pub need: Need,
    run: fn() -> Outcome,
}

impl Probe {
    /// Try the feature for real. Never leaves a child process behind.
    pub fn run(&self) -> Outcome {
        (self.run)()
    }
}

/// Every probe, in the order `stasis check` prints them.
pub fn all() -> Vec<Probe> {
    use Need::*;
    let p = |name, need, run| Probe { name, need, run };
    vec![
        p(
            "ptrace SEIZE + INTERRUPT",
            Required,
            probe_ptrace_seize as fn() -> Outcome,
        ),
        p("ptrace GETREGSET NT_X86_XSTATE", Required, probe_xstate),
        p("ptrace GET_RSEQ_CONFIGURATION", Required, probe_rseq),
        p("ptrace PEEKSIGINFO", Required, probe_peeksiginfo),
        p("process_vm_readv/writev", Required, probe_process_vm),
        p("/proc/PID/pagemap with PFNs", Required, probe_pagemap),
        p("/proc/PID/map_files", Required, probe_map_files),
        p("clone3 with set_tid", Required, probe_clone3_set_tid),
        p("pidfd_open + pidfd_getfd", Required, probe_pidfd),
        p("kcmp KCMP_FILE", Required, probe_kcmp),
        p("prctl PR_SET_MM (MAP)", Required, probe_set_mm),
        p("prctl PR_GET_TID_ADDRESS", Required, probe_tid_address),
        p("vDSO layout", Required, probe_vdso),
        p("userfaultfd WP_ASYNC", Optional, probe_uffd_wp_async),
        p("PAGEMAP_SCAN ioctl", Optional, probe_pagemap_scan),
        p("soft-dirty tracking", Optional, probe_soft_dirty),
        p(
            "PR_TIMER_CREATE_RESTORE_IDS",
            Optional,
            probe_timer_restore_ids,
        ),
        p("namespaces (unshare)", Optional, probe_namespaces),
        p("TCP_REPAIR", Optional, probe_tcp_repair),
    ]
}

/// Kernel release, e.g. `6.18.44`.
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// The system page size in bytes.
pub fn page_size() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if r > 0 {
        r as usize
    } else {
        4096
    }
}

/// Capabilities stasis uses that the calling process does not have in its effective set.
pub fn missing_capabilities() -> Vec<&'static str> {
    const WANTED: [(u32, &str); 6] = [
        (12, "CAP_NET_ADMIN"),
        (19, "CAP_SYS_PTRACE"),
        (21, "CAP_SYS_ADMIN"),
        (24, "CAP_SYS_RESOURCE"),
        (40, "CAP_CHECKPOINT_RESTORE"),
        (7, "CAP_SETUID"),
    ];
    let eff = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    });
    match eff {
        Some(eff) => WANTED
            .iter()
            .filter(|(bit, _)| eff & (1u64 << bit) == 0)
            .map(|(_, n)| *n)
            .collect(),
        None => vec!["(could not read CapEff)"],
    }
}

/// The sizes in bytes of the `[vvar]`, `[vvar_vclock]` and `[vdso]` mappings of this process
/// (0 for one that is absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VdsoLayout {
    pub vvar: (u64, u64),
    pub vvar_vclock: (u64, u64),
    pub vdso: (u64, u64),
}

impl VdsoLayout {
    fn len(r: (u64, u64)) -> u64 {
        r.1 - r.0
    }
    pub fn vvar_size(&self) -> u64 {
        Self::len(self.vvar)
    }
    pub fn vvar_vclock_size(&self) -> u64 {
        Self::len(self.vvar_vclock)
    }
    pub fn vdso_size(&self) -> u64 {
        Self::len(self.vdso)
    }
}

/// Parse the special vDSO mappings out of a `/proc/PID/maps` text.
pub fn parse_vdso_layout(maps: &str) -> VdsoLayout {
    let mut out = VdsoLayout::default();
    for line in maps.lines() {
        let name = line.split_whitespace().nth(5).unwrap_or("");
        let slot = match name {
            "[vvar]" => &mut out.vvar,
            "[vvar_vclock]" => &mut out.vvar_vclock,
            "[vdso]" => &mut out.vdso,
            _ => continue,
        };
        let range = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = range.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                if b > a {
                    *slot = (a, b);
                }
            }
        }
    }
    out
}

/// `EPERM (Operation not permitted)` for 1, and so on.
pub fn describe_errno(e: i32) -> String {
    let text = io::Error::from_raw_os_error(e).to_string();
    let text = match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    match errno_name(e) {
        Some(name) => format!("{name} ({text})"),
        None => format!("errno {e} ({text})"),
    }
}

fn errno_name(e: i32) -> Option<&'static str> {
    use libc::*;
    Some(match e {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ESRCH => "ESRCH",
        EINTR => "EINTR",
        EIO => "EIO",
        ENXIO => "ENXIO",
        E2BIG => "E2BIG",
        EBADF => "EBADF",
        ECHILD => "ECHILD",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        ENODEV => "ENODEV",
        ENOTDIR => "ENOTDIR",
        EINVAL => "EINVAL",
        EMFILE => "EMFILE",
        ENOTTY => "ENOTTY",
        ENOSPC => "ENOSPC",
        EROFS => "EROFS",
        ERANGE => "ERANGE",
        ENOSYS => "ENOSYS",
        ENODATA => "ENODATA",
        EOPNOTSUPP => "EOPNOTSUPP",
        ENOPROTOOPT => "ENOPROTOOPT",
        EPROTONOSUPPORT => "EPROTONOSUPPORT",
        EAFNOSUPPORT => "EAFNOSUPPORT",
        EUSERS => "EUSERS",
        ETIMEDOUT => "ETIMEDOUT",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Plumbing: errno, forked children, pipes, anonymous mappings
// ---------------------------------------------------------------------------------------------

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Turn a raw `-1`-on-error return value into a `Missing` naming the call.
fn sys(r: c_long, what: &str) -> Result<c_long, Missing> {
    if r < 0 {
        Err(Missing::sys(what, errno()))
    } else {
        Ok(r)
    }
}

fn getpid() -> pid_t {
    std::process::id() as pid_t
}

fn describe_status(status: c_int) -> String {
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
struct Child {
    pid: pid_t,
    reaped: bool,
}

impl Child {
    /// Fork. The child runs `body` and exits with its return value.
    ///
    /// # Safety
    /// `body` must only make async-signal-safe calls (raw system calls; no allocation, no
    /// locks, no panics): the parent may have other threads (e.g. under `cargo test`),
    /// whose locks the child inherits held.
    unsafe fn fork(body: impl FnOnce() -> c_int) -> Result<Child, Missing> {
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
    fn exit_code(&mut self, timeout: Duration) -> Result<c_int, Missing> {
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
fn idle() -> c_int {
    loop {
        // SAFETY: pause() only blocks until a signal arrives.
        unsafe { libc::pause() };
    }
}

/// Fork an idle child, PTRACE_SEIZE it and stop it with PTRACE_INTERRUPT.
fn seized_child() -> Result<Child, Missing> {
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
fn pipe() -> Result<(OwnedFd, OwnedFd), Missing> {
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
unsafe fn in_child<const N: usize>(body: impl FnOnce(&mut [i64; N])) -> Result<[i64; N], Missing> {
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
fn anon(len: usize) -> Result<AnonBuf, Missing> {
    AnonBuf::new(len).map_err(|e| io_missing("mmap", &e))
}

/// Write one byte into page `page` of `m` (so that it is present and dirty).
fn touch(m: &mut AnonBuf, page: usize, value: u8) {
    let off = page * page_size();
    assert!(off < m.len());
    // SAFETY: `off` is inside the mapping, which is readable and writable and borrowed
    // mutably; volatile so the write is not elided before the kernel inspects the page.
    unsafe { std::ptr::write_volatile(m.as_mut_ptr().add(off), value) };
}

/// The 64-bit pagemap entry of `addr` in process `pid`.
fn pagemap_entry(pid: pid_t, addr: usize) -> Result<u64, Missing> {
    let path = format!("/proc/{pid}/pagemap");
    let f = File::open(&path).map_err(|e| io_missing(&format!("open {path}"), &e))?;
    let mut b = [0u8; 8];
    let off = (addr / page_size()) as u64 * 8;
    f.read_exact_at(&mut b, off)
        .map_err(|e| io_missing(&format!("read {path}"), &e))?;
    Ok(u64::from_ne_bytes(b))
}

fn io_missing(what: &str, e: &io::Error) -> Missing {
    match e.raw_os_error() {
        Some(n) => Missing::sys(what, n),
        None => Missing::new(format!("{what}: {e}")),
    }
}

fn same_file(a: &File, b: &File) -> Result<bool, Missing> {
    let ma = a.metadata().map_err(|e| io_missing("fstat", &e))?;
    let mb = b.metadata().map_err(|e| io_missing("fstat", &e))?;
    Ok(ma.dev() == mb.dev() && ma.ino() == mb.ino())
}

// ---------------------------------------------------------------------------------------------
// The probes
// ---------------------------------------------------------------------------------------------

fn probe_ptrace_seize() -> Outcome {
    let child = seized_child()?;
    Ok(format!("child {} stopped in PTRACE_EVENT_STOP", child.pid))
}

fn probe_xstate() -> Outcome {
    let child = seized_child()?;
    let mut buf = vec![0u64; 8192]; // 64 KiB: more than any XSAVE area (AMX is ~11 KiB)
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len() * 8,
    };
    // SAFETY: `iov` describes `buf`, which outlives the call; the kernel writes at most
    // iov_len bytes there and updates iov_len.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GETREGSET,
            child.pid,
            NT_X86_XSTATE as *mut c_void,
            &mut iov as *mut libc::iovec as *mut c_void,
        )
    };
    sys(r, "PTRACE_GETREGSET NT_X86_XSTATE")?;
    if iov.iov_len < 576 {
        return Err(Missing::new(format!(
            "XSAVE area is only {} bytes",
            iov.iov_len
        )));
    }
    // For ptrace the first word of the FXSAVE area's software-reserved bytes (offset 464)
    // carries XCR0, the set of state components the kernel saves.
    let xfeatures = buf[464 / 8];
    Ok(format!("{} bytes, xfeatures {xfeatures:#x}", iov.iov_len))
}

fn probe_rseq() -> Outcome {
    let child = seized_child()?;
    let mut conf = RseqConfiguration::default();
    // SAFETY: addr is the size of `conf` and data points at it; the kernel writes at most
    // that many bytes.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            child.pid,
            size_of::<RseqConfiguration>() as *mut c_void,
            &mut conf as *mut RseqConfiguration as *mut c_void,
        )
    };
    sys(r, "PTRACE_GET_RSEQ_CONFIGURATION")?;
    if conf.rseq_abi_pointer == 0 {
        Ok("works (the child has no rseq area registered)".into())
    } else {
        Ok(format!(
            "rseq area {:#x}, {} bytes, signature {:#010x}",
            conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature
        ))
    }
}

fn probe_peeksiginfo() -> Outcome {
    // Block SIGUSR1 around the fork so the child inherits it blocked: the signal we queue
    // below stays pending whatever the child is doing.
    // SAFETY: sigemptyset/sigaddset fill a local set; pthread_sigmask changes only this
    // thread's mask, and we restore it right after the fork.
    let child = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let child = seized_child();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        child
    }?;
    // SAFETY: sends SIGUSR1 to our own (stopped, unreaped) child.
    let r = unsafe { libc::kill(child.pid, libc::SIGUSR1) };
    sys(r as c_long, "kill(SIGUSR1)")?;
    let mut args = PeekSiginfoArgs {
        off: 0,
        flags: PTRACE_PEEKSIGINFO_SHARED as u32,
        nr: 1,
    };
    let mut si = [0u8; 128]; // one siginfo_t
                             // SAFETY: addr points at the argument struct, data at room for `nr` (1) siginfo_t.
    let r = unsafe {
        libc::ptrace(
            PTRACE_PEEKSIGINFO,
            child.pid,
            &mut args as *mut PeekSiginfoArgs as *mut c_void,
            si.as_mut_ptr() as *mut c_void,
        )
    };
    let n = sys(r, "PTRACE_PEEKSIGINFO")?;
    let signo = i32::from_ne_bytes(si[0..4].try_into().expect("4 bytes"));
    if n != 1 || signo != libc::SIGUSR1 {
        return Err(Missing::new(format!(
            "queued SIGUSR1 but PTRACE_PEEKSIGINFO returned {n} entries (signal {signo})"
        )));
    }
    Ok("read back a queued SIGUSR1".into())
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn probe_process_vm() -> Outcome {
    let len = 8192;
    let original = pattern(7, len);
    // The child gets a copy of `original` at the same address.
    // SAFETY: `idle` only calls pause().
    let child = unsafe { Child::fork(idle) }?;
    let addr = original.as_ptr() as u64;
    let errno_of = |e: std::io::Error| e.raw_os_error().unwrap_or(0);
    let read_remote = || {
        crate::sys::read_mem(child.pid, addr, len).map_err(|e| Missing::sys("process_vm_readv", errno_of(e)))
    };
    if read_remote()? != original {
        return Err(Missing::new(
            "process_vm_readv returned different bytes than the child holds",
        ));
    }
    let replacement = pattern(99, len);
    crate::sys::write_mem(child.pid, addr, &replacement)
        .map_err(|e| Missing::sys("process_vm_writev", errno_of(e)))?;
    if read_remote()? != replacement {
        return Err(Missing::new(
            "bytes written with process_vm_writev did not read back",
        ));
    }
    if original != pattern(7, len) {
        return Err(Missing::new("process_vm_writev changed our own memory"));
    }
    Ok(format!("{} KiB read, written and read back", len / 1024))
}

fn probe_pagemap() -> Outcome {
    let mut m = anon(page_size())?;
    touch(&mut m, 0, 1);
    let e = pagemap_entry(getpid(), m.addr() as usize)?;
    if e & PM_PRESENT == 0 {
        return Err(Missing::new(format!(
            "a page just written is not present (entry {e:#x})"
        )));
    }
    if e & PM_PFN_MASK == 0 {
        return Err(Missing::new("PFNs read as zero (needs CAP_SYS_ADMIN)"));
    }
    Ok("present bit and PFN visible".into())
}

fn probe_map_files() -> Outcome {
    let dir = format!("/proc/{}/map_files", getpid());
    let here = probe_map_files as *const () as usize as u64;
    let mut entries = 0;
    let mut ours = None;
    for ent in fs::read_dir(&dir).map_err(|e| io_missing(&format!("list {dir}"), &e))? {
        let ent = ent.map_err(|e| io_missing(&format!("list {dir}"), &e))?;
        entries += 1;
        let name = ent.file_name().to_string_lossy().into_owned();
        if let Some((a, b)) = name.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                if a <= here && here < b {
                    ours = Some(ent.path());
                }
            }
        }
    }
    let link =
        ours.ok_or_else(|| Missing::new(format!("no entry in {dir} covers our own code")))?;
    let target = fs::read_link(&link).map_err(|e| io_missing("readlink map_files entry", &e))?;
    let mut f = File::open(&link).map_err(|e| {
        let what = if e.raw_os_error() == Some(libc::EPERM) {
            "open a map_files entry (needs CAP_CHECKPOINT_RESTORE)"
        } else {
            "open a map_files entry"
        };
        io_missing(what, &e)
    })?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .map_err(|e| io_missing("read map_files entry", &e))?;
    if &magic != b"\x7fELF" {
        return Err(Missing::new(format!(
            "{} opened through map_files is not our ELF binary",
            target.display()
        )));
    }
    Ok(format!("{entries} entries; opened our own code mapping"))
}

fn read_number(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Fork a child with PID `want` through clone3(set_tid); the child exits at once.
/// Returns the PID the kernel gave it.
fn clone3_with_pid(want: pid_t) -> Result<pid_t, Missing> {
    let tids: [pid_t; 1] = [want];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy of our memory,
    // and the only thing it does is _exit. `args` and `tids` are alive for the call.
    let r = unsafe {
        libc::syscall(
            SYS_CLONE3,
            &args as *const CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        // SAFETY: in the child: leave immediately, without running any Rust code.
        unsafe { libc::_exit(0) }
    }
    let pid = sys(r, "clone3")? as pid_t;
    let mut child = Child { pid, reaped: false };
    let code = child.exit_code(Duration::from_secs(2))?;
    if code != 0 {
        return Err(Missing::new(format!(
            "clone3 child exited with status {code}"
        )));
    }
    Ok(pid)
}

fn probe_clone3_set_tid() -> Outcome {
    let pid_max = read_number("/proc/sys/kernel/pid_max")
        .unwrap_or(32768)
        .max(1000);
    let last = read_number("/proc/sys/kernel/ns_last_pid").unwrap_or(getpid() as i64);
    let span = pid_max - 300;
    let mut tried = 0;
    for attempt in 0..64i64 {
        let want = (300 + (last + 1000 + attempt * 7919 - 300).rem_euclid(span)) as pid_t;
        if Path::new(&format!("/proc/{want}")).exists() {
            continue; // in use (as a process or a thread)
        }
        tried += 1;
        match clone3_with_pid(want) {
            Ok(got) if got == want => return Ok(format!("child created with chosen PID {want}")),
            Ok(got) => {
                return Err(Missing::new(format!(
                    "asked clone3 for PID {want}, got {got}"
                )));
            }
            // Someone took the PID between our look and the call: pick another one.
            Err(Missing {
                errno: Some(libc::EEXIST),
                ..
            }) if tried < 8 => continue,
            Err(Missing {
                errno: Some(libc::EPERM),
                ..
            }) => {
                return Err(Missing::sys(
                    "clone3 with set_tid (needs CAP_CHECKPOINT_RESTORE)",
                    libc::EPERM,
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Err(Missing::new("found no free PID to try"))
}

fn pidfd_open(pid: pid_t) -> Result<OwnedFd, Missing> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor.
    let r = unsafe { libc::syscall(SYS_PIDFD_OPEN, pid, 0) };
    let fd = sys(r, "pidfd_open")?;
    // SAFETY: the kernel just created this descriptor for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn probe_pidfd() -> Outcome {
    let exe = File::open("/proc/self/exe").map_err(|e| io_missing("open /proc/self/exe", &e))?;
    // SAFETY: `idle` only calls pause().
    let child = unsafe { Child::fork(idle) }?; // inherits the descriptor `exe`
    let pidfd = pidfd_open(child.pid)?;
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number in that process and flags, and
    // returns a new descriptor in ours.
    let r = unsafe { libc::syscall(SYS_PIDFD_GETFD, pidfd.as_raw_fd(), exe.as_raw_fd(), 0) };
    let fd = sys(r, "pidfd_getfd")?;
    // SAFETY: the kernel just installed this descriptor for us alone.
    let got = File::from(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    if !same_file(&exe, &got)? {
        return Err(Missing::new("pidfd_getfd returned a different file"));
    }
    Ok(format!(
        "took descriptor {} out of child {}",
        exe.as_raw_fd(),
        child.pid
    ))
}

fn kcmp_file(pid1: pid_t, pid2: pid_t, fd1: RawFd, fd2: RawFd) -> Result<c_long, Missing> {
    // SAFETY: kcmp only compares kernel objects named by (pid, fd) pairs.
    let r = unsafe {
        libc::syscall(
            SYS_KCMP,
            pid1,
            pid2,
            KCMP_FILE,
            fd1 as c_ulong,
            fd2 as c_ulong,
        )
    };
    sys(r, "kcmp(KCMP_FILE)")
}

fn probe_kcmp() -> Outcome {
    let shared = File::open("/proc/self/exe").map_err(|e| io_missing("open /proc/self/exe", &e))?;
    // SAFETY: `idle` only calls pause().
    let child = unsafe { Child::fork(idle) }?; // shares `shared`'s open file description
    let other = File::open("/dev/null").map_err(|e| io_missing("open /dev/null", &e))?;
    let me = getpid();
    let same = kcmp_file(me, child.pid, shared.as_raw_fd(), shared.as_raw_fd())?;
    if same != 0 {
        return Err(Missing::new(format!(
            "kcmp says an inherited file differs (returned {same})"
        )));
    }
    let differ = kcmp_file(me, child.pid, other.as_raw_fd(), shared.as_raw_fd())?;
    if differ == 0 {
        return Err(Missing::new("kcmp says two different files are the same"));
    }
    Ok("told shared and distinct files apart across processes".into())
}

/// Our own memory layout as PR_SET_MM_MAP wants it (it is identical in a forked child).
fn current_mm_map() -> Result<PrctlMmMap, Missing> {
    let stat = fs::read_to_string("/proc/self/stat")
        .map_err(|e| io_missing("read /proc/self/stat", &e))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // `fields[0]` is field 3 (state) of proc(5).
    let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
    // SAFETY: brk(0) changes nothing and returns the current program break.
    let brk = unsafe { libc::syscall(SYS_BRK, 0) } as u64;
    Ok(PrctlMmMap {
        start_code: field(26),
        end_code: field(27),
        start_stack: field(28),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        brk: brk.max(field(47)),
        arg_start: field(48),
        arg_end: field(49),
        env_start: field(50),
        env_end: field(51),
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX, // -1: leave /proc/PID/exe alone
    })
}

fn probe_set_mm() -> Outcome {
    let mut size: c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one unsigned int to the address we pass.
    let r = unsafe {
        libc::prctl(
            PR_SET_MM,
            PR_SET_MM_MAP_SIZE,
            &mut size as *mut c_uint as c_ulong,
            0,
            0,
        )
    };
    sys(r as c_long, "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)")?;
    if size as usize != size_of::<PrctlMmMap>() {
        return Err(Missing::new(format!(
            "kernel's struct prctl_mm_map is {size} bytes, stasis uses {}",
            size_of::<PrctlMmMap>()
        )));
    }
    // Now the call restore really makes: PR_SET_MM_MAP with the current layout, in a child.
    let map = current_mm_map()?;
    let body = move |out: &mut [i64; 1]| {
        // SAFETY: `map` is a live local of the size we pass; setting the layout to what it
        // already is changes nothing, and this child exits right after.
        let r = unsafe {
            libc::prctl(
                PR_SET_MM,
                PR_SET_MM_MAP,
                &map as *const PrctlMmMap as c_ulong,
                size_of::<PrctlMmMap>(),
                0,
            )
        };
        out[0] = if r < 0 { errno() as i64 } else { 0 };
    };
    // SAFETY: the body makes one prctl and stores into `out`.
    let [err] = unsafe { in_child::<1>(body) }?;
    if err != 0 {
        return Err(Missing::sys(
            "PR_SET_MM_MAP with the current layout (in a child)",
            err as i32,
        ));
    }
    Ok(format!(
        "map size {size}; PR_SET_MM_MAP accepted in a child"
    ))
}

fn probe_tid_address() -> Outcome {
    let mut addr: u64 = 0;
    // SAFETY: PR_GET_TID_ADDRESS stores one pointer at the address we pass.
    let r = unsafe {
        libc::prctl(
            PR_GET_TID_ADDRESS,
            &mut addr as *mut u64 as c_ulong,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        let e = errno();
        let why = if e == libc::EINVAL {
            "prctl(PR_GET_TID_ADDRESS) (kernel without CONFIG_CHECKPOINT_RESTORE?)"
        } else {
            "prctl(PR_GET_TID_ADDRESS)"
        };
        return Err(Missing::sys(why, e));
    }
    Ok(format!("clear_child_tid = {addr:#x}"))
}

fn probe_vdso() -> Outcome {
    let maps = fs::read_to_string("/proc/self/maps")
        .map_err(|e| io_missing("read /proc/self/maps", &e))?;
    let l = parse_vdso_layout(&maps);
    if l.vdso_size() == 0 {
        return Err(Missing::new("no [vdso] mapping in /proc/self/maps"));
    }
    let kib = |n: u64| n / 1024;
    let sizes = format!(
        "[vvar] {} KiB, [vvar_vclock] {} KiB, [vdso] {} KiB",
        kib(l.vvar_size()),
        kib(l.vvar_vclock_size()),
        kib(l.vdso_size())
    );
    // Restore must move these mappings to where the dumped process had them: try it in a
    // child (which must not use the vDSO afterwards; it only makes raw syscalls).
    let regions = [l.vvar, l.vvar_vclock, l.vdso];
    let lo = regions
        .iter()
        .filter(|r| r.1 > r.0)
        .map(|r| r.0)
        .min()
        .unwrap_or(0);
    let hi = regions.iter().map(|r| r.1).max().unwrap_or(0);
    let body = move |out: &mut [i64; 2]| {
        // SAFETY: reserve a hole (PROT_NONE) as large as the whole vDSO block; the child owns
        // its address space and exits right after.
        let hole = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (hi - lo) as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if hole == libc::MAP_FAILED {
            out[0] = -1;
            out[1] = errno() as i64;
            return;
        }
        for (i, r) in regions.iter().enumerate() {
            if r.1 <= r.0 {
                continue;
            }
            let len = (r.1 - r.0) as usize;
            let dst = hole as u64 + (r.0 - lo);
            // SAFETY: moves a special mapping of this child onto part of the hole it just
            // reserved (MREMAP_FIXED replaces the hole there); nothing in the child touches the
            // vDSO afterwards.
            let p = unsafe {
                libc::mremap(
                    r.0 as *mut c_void,
                    len,
                    len,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    dst as *mut c_void,
                )
            };
            if p == libc::MAP_FAILED {
                out[0] = i as i64;
                out[1] = errno() as i64;
                return;
            }
        }
        out[0] = -2;
    };
    // SAFETY: the body makes raw mmap/mremap calls and stores into `out`.
    let [which, err] = unsafe { in_child::<2>(body) }?;
    if err != 0 {
        let what = match which {
            0 => "mremap of [vvar]",
            1 => "mremap of [vvar_vclock]",
            2 => "mremap of [vdso]",
            _ => "mmap of a hole for the vDSO",
        };
        return Err(Missing::sys(
            format!("{sizes}; {what} (in a child)"),
            err as i32,
        ));
    }
    Ok(format!("{sizes}; all movable with mremap"))
}

#[repr(C)]
#[derive(Default)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

fn open_userfaultfd() -> Result<OwnedFd, Missing> {
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: userfaultfd takes flags and returns a new descriptor.
    let r = unsafe { libc::syscall(SYS_USERFAULTFD, flags) };
    let r = if r < 0 && errno() == libc::EPERM {
        // vm.unprivileged_userfaultfd=0 without CAP_SYS_PTRACE: user-mode-only faults suffice.
        // SAFETY: as above.
        unsafe { libc::syscall(SYS_USERFAULTFD, flags | UFFD_USER_MODE_ONLY) }
    } else {
        r
    };
    if r >= 0 {
        // SAFETY: the kernel just created this descriptor for us alone.
        return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
    }
    let first = errno();
    // Fall back to /dev/userfaultfd (Linux 6.1+).
    let dev = match OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/userfaultfd")
    {
        Ok(f) => f,
        Err(_) => return Err(Missing::sys("userfaultfd()", first)),
    };
    // SAFETY: USERFAULTFD_IOC_NEW takes the flags by value and returns a new descriptor.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), USERFAULTFD_IOC_NEW, flags) };
    let fd = sys(r as c_long, "ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)")?;
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn probe_uffd_wp_async() -> Outcome {
    let uffd = open_userfaultfd()?;
    let mut api = UffdioApi {
        api: UFFD_API,
        features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_PAGEFAULT_FLAG_WP,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API reads and writes one struct uffdio_api, which `api` is.
    let r = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
    if r < 0 {
        let e = errno();
        return Err(Missing::sys(
            "UFFDIO_API asking for WP_ASYNC (Linux 6.7+)",
            e,
        ));
    }
    if api.features & UFFD_FEATURE_WP_ASYNC == 0 {
        return Err(Missing::new(
            "UFFDIO_API did not grant UFFD_FEATURE_WP_ASYNC",
        ));
    }
    // Register anonymous memory for write-protect tracking and protect it. (We do not write to
    // it afterwards: if async mode were broken that write would block forever.)
    let mut m = anon(page_size())?;
    touch(&mut m, 0, 1);
    let range = || UffdioRange {
        start: m.addr(),
        len: page_size() as u64,
    };
    let mut reg = UffdioRegister {
        range: range(),
        mode: UFFDIO_REGISTER_MODE_WP,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_REGISTER reads and writes one struct uffdio_register covering our mapping.
    let r = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            UFFDIO_REGISTER,
            &mut reg as *mut UffdioRegister,
        )
    };
    sys(r as c_long, "UFFDIO_REGISTER (write-protect mode)")?;
    let mut wp = UffdioWriteprotect {
        range: range(),
        mode: UFFDIO_WRITEPROTECT_MODE_WP,
    };
    // SAFETY: UFFDIO_WRITEPROTECT reads one struct uffdio_writeprotect covering our mapping.
    let r = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            UFFDIO_WRITEPROTECT,
            &mut wp as *mut UffdioWriteprotect,
        )
    };
    sys(r as c_long, "UFFDIO_WRITEPROTECT")?;
    drop(uffd); // closing the descriptor unregisters the range before the mapping goes away
    drop(m);
    Ok("WP_ASYNC granted; registered and write-protected anonymous memory".into())
}

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

fn probe_pagemap_scan() -> Outcome {
    let ps = page_size();
    let mut m = anon(4 * ps)?;
    touch(&mut m, 0, 1);
    touch(&mut m, 2, 1);
    let pagemap =
        File::open("/proc/self/pagemap").map_err(|e| io_missing("open /proc/self/pagemap", &e))?;
    let mut regions = [PageRegion::default(); 8];
    let mut arg = PmScanArg {
        size: size_of::<PmScanArg>() as u64,
        start: m.addr(),
        end: m.addr() + 4 * ps as u64,
        vec: regions.as_mut_ptr() as u64,
        vec_len: regions.len() as u64,
        category_mask: PAGE_IS_PRESENT,
        return_mask: PAGE_IS_PRESENT,
        ..Default::default()
    };
    // SAFETY: PAGEMAP_SCAN reads `arg` and writes at most vec_len page_region entries into
    // `regions`, both alive for the call.
    let r = unsafe {
        libc::ioctl(
            pagemap.as_raw_fd(),
            PAGEMAP_SCAN,
            &mut arg as *mut PmScanArg,
        )
    };
    if r < 0 {
        let e = errno();
        return Err(Missing::sys("ioctl(PAGEMAP_SCAN) (Linux 6.7+)", e));
    }
    let s = m.addr();
    let p = ps as u64;
    let want = [(s, s + p), (s + 2 * p, s + 3 * p)];
    let got: Vec<(u64, u64)> = regions[..r as usize]
        .iter()
        .map(|g| (g.start, g.end))
        .collect();
    if got != want {
        return Err(Missing::new(format!(
            "PAGEMAP_SCAN found {} regions, not the 2 pages we wrote",
            got.len()
        )));
    }
    Ok("found exactly the 2 pages written out of 4".into())
}

fn probe_soft_dirty() -> Outcome {
    let mut m = anon(page_size())?;
    touch(&mut m, 0, 1);
    let first = pagemap_entry(getpid(), m.addr() as usize)?;
    fs::write("/proc/self/clear_refs", "4")
        .map_err(|e| io_missing("write 4 to /proc/self/clear_refs", &e))?;
    let cleared = pagemap_entry(getpid(), m.addr() as usize)?;
    touch(&mut m, 0, 2);
    let again = pagemap_entry(getpid(), m.addr() as usize)?;
    let bit = |e: u64| e & PM_SOFT_DIRTY != 0;
    if !bit(again) {
        return Err(Missing::new(
            "pagemap bit 55 stays clear after clear_refs 4 and a write (kernel without CONFIG_MEM_SOFT_DIRTY)",
        ));
    }
    if bit(cleared) {
        return Err(Missing::new("clear_refs 4 did not clear pagemap bit 55"));
    }
    let _ = first;
    Ok("bit 55 cleared by clear_refs 4 and set again by a write".into())
}

fn probe_timer_restore_ids() -> Outcome {
    const WANT_ID: c_int = 42;
    let sev = Sigevent {
        notify: SIGEV_NONE,
        ..Default::default()
    };
    // In a child: the setting is per process and the timer must not outlive the probe.
    let body = move |out: &mut [i64; 3]| {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe {
            libc::prctl(
                PR_TIMER_CREATE_RESTORE_IDS,
                PR_TIMER_CREATE_RESTORE_IDS_GET,
                0,
                0,
                0,
            )
        };
        if r < 0 {
            *out = [1, errno() as i64, 0];
            return;
        }
        // SAFETY: as above.
        let r = unsafe {
            libc::prctl(
                PR_TIMER_CREATE_RESTORE_IDS,
                PR_TIMER_CREATE_RESTORE_IDS_ON,
                0,
                0,
                0,
            )
        };
        if r < 0 {
            *out = [2, errno() as i64, 0];
            return;
        }
        let mut id: c_int = WANT_ID;
        // SAFETY: timer_create reads `sev` and reads/writes `id`, both live locals.
        let r = unsafe {
            libc::syscall(
                SYS_TIMER_CREATE,
                libc::CLOCK_MONOTONIC,
                &sev as *const Sigevent,
                &mut id as *mut c_int,
            )
        };
        if r < 0 {
            *out = [3, errno() as i64, 0];
            return;
        }
        // SAFETY: deletes the timer we just created.
        unsafe { libc::syscall(SYS_TIMER_DELETE, id) };
        *out = [0, 0, id as i64];
    };
    // SAFETY: the body makes raw prctl/timer syscalls and stores into `out`.
    let [step, err, got] = unsafe { in_child::<3>(body) }?;
    match step {
        0 if got == WANT_ID as i64 => Ok(format!("timer created with requested ID {WANT_ID}")),
        0 => Err(Missing::new(format!(
            "asked for timer ID {WANT_ID}, got {got}"
        ))),
        1 => Err(Missing::sys(
            "prctl(PR_TIMER_CREATE_RESTORE_IDS, GET) (Linux 6.17+)",
            err as i32,
        )),
        2 => Err(Missing::sys(
            "prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)",
            err as i32,
        )),
        _ => Err(Missing::sys("timer_create with a requested ID", err as i32)),
    }
}

fn probe_namespaces() -> Outcome {
    const KINDS: [(&str, c_int); 8] = [
        ("mnt", libc::CLONE_NEWNS),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("time", CLONE_NEWTIME),
        ("user", libc::CLONE_NEWUSER),
    ];
    let body = |out: &mut [i64; 8]| {
        for (i, (_, flag)) in KINDS.iter().enumerate() {
            // SAFETY: unshare only moves this (single-threaded, short-lived) child into new
            // namespaces.
            let r = unsafe { libc::unshare(*flag) };
            out[i] = if r < 0 { errno() as i64 } else { 0 };
        }
    };
    // SAFETY: the body makes raw unshare calls and stores into `out`.
    let errs = unsafe { in_child::<8>(body) }?;
    let failed: Vec<(&str, i32)> = KINDS
        .iter()
        .zip(errs.iter())
        .filter(|(_, e)| **e != 0)
        .map(|((name, _), e)| (*name, *e as i32))
        .collect();
    if let Some(&(_, first)) = failed.first() {
        if failed.iter().all(|&(_, e)| e == first) {
            let names: Vec<&str> = failed.iter().map(|(n, _)| *n).collect();
            return Err(Missing::sys(
                format!("could not unshare {}", names.join(", ")),
                first,
            ));
        }
        let each: Vec<String> = failed
            .iter()
            .map(|&(n, e)| format!("{n} ({})", errno_name(e).unwrap_or("?")))
            .collect();
        return Err(Missing::new(format!(
            "could not unshare {}",
            each.join(", ")
        )));
    }
    let names: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
    Ok(names.join(" "))
}

fn setsockopt_int(fd: RawFd, opt: c_int, val: c_int, what: &str) -> Result<(), Missing> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            opt,
            &val as *const c_int as *const c_void,
            size_of::<c_int>() as u32,
        )
    };
    sys(r as c_long, what).map(|_| ())
}

fn probe_tcp_repair() -> Outcome {
    // SAFETY: socket() returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    sys(fd as c_long, "socket(AF_INET, SOCK_STREAM)")?;
    // SAFETY: the descriptor was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let fd = sock.as_raw_fd();
    setsockopt_int(
        fd,
        TCP_REPAIR,
        1,
        "setsockopt(TCP_REPAIR, 1) (needs CAP_NET_ADMIN)",
    )?;
    setsockopt_int(
        fd,
        TCP_REPAIR_QUEUE,
        TCP_SEND_QUEUE,
        "setsockopt(TCP_REPAIR_QUEUE)",
    )?;
    let seq: c_int = 0x1234_5678;
    setsockopt_int(fd, TCP_QUEUE_SEQ, seq, "setsockopt(TCP_QUEUE_SEQ)")?;
    let mut got: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `got`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            TCP_QUEUE_SEQ,
            &mut got as *mut c_int as *mut c_void,
            &mut len,
        )
    };
    sys(r as c_long, "getsockopt(TCP_QUEUE_SEQ)")?;
    if got != seq {
        return Err(Missing::new(format!(
            "set send sequence {seq:#x} but read back {got:#x}"
        )));
    }
    Ok("repair mode on, send-queue sequence set and read back".into())
}

// ---------------------------------------------------------------------------------------------
// Process helpers for `stasis demo`
// ---------------------------------------------------------------------------------------------

/// Make the calling process a child subreaper: orphaned descendants are re-parented to it
/// (instead of to PID 1), so it can reap them.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(PR_SET_CHILD_SUBREAPER, 1 as c_ulong, 0, 0, 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// setsid(): make the caller the leader of a new session and process group.
pub fn new_session() -> io::Result<i32> {
    // SAFETY: setsid takes no arguments.
    let r = unsafe { libc::setsid() };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Close every file descriptor above 2 that the caller inherited (close_range(3, ~0)).
/// Workloads call this first: stasis can only dump descriptors it understands, and shells,
/// IDEs and CI runners often leak pipes to their children.
pub fn close_inherited_fds() -> io::Result<()> {
    // SAFETY: close_range only closes descriptors; the caller owns none above 2 yet.
    let r = unsafe { libc::syscall(SYS_CLOSE_RANGE, 3 as c_uint, c_uint::MAX, 0 as c_uint) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Mark every descriptor above 2 close-on-exec, so programs we start inherit only stdio.
pub fn cloexec_inherited_fds() -> io::Result<()> {
    // SAFETY: only sets FD_CLOEXEC; no descriptor is closed or changes meaning for us.
    let r = unsafe {
        libc::syscall(
            SYS_CLOSE_RANGE,
            3 as c_uint,
            c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// kill(pid, sig). Only call it for a process you know is yours (e.g. an unreaped child).
pub fn send_signal(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL)); // never a group or "everyone"
    }
    // SAFETY: kill with a positive PID signals exactly that process.
    let r = unsafe { libc::kill(pid, sig) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// How a reaped child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaped {
    Exited(i32),
    Signaled(i32),
}

impl fmt::Display for Reaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reaped::Exited(c) => write!(f, "exited with status {c}"),
            Reaped::Signaled(s) => write!(f, "was killed by signal {s}"),
        }
    }
}

fn wait_once(pid: pid_t, flags: c_int) -> io::Result<Option<(pid_t, Reaped)>> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid writes the status into a local.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some((r, Reaped::Exited(libc::WEXITSTATUS(status)))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some((r, Reaped::Signaled(libc::WTERMSIG(status)))));
        }
        // A stop/continue report (only with WUNTRACED/WCONTINUED, which we do not pass): retry.
    }
}

/// Wait up to `timeout` for child `pid` to end and reap it. `Ok(None)`: still running.
/// Fails with ECHILD if `pid` is not our child.
pub fn wait_child(pid: i32, timeout: Duration) -> io::Result<Option<Reaped>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((_, how)) = wait_once(pid, libc::WNOHANG)? {
            return Ok(Some(how));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reap every child that has already ended (without waiting); returns who and how.
pub fn reap_exited_children() -> Vec<(i32, Reaped)> {
    let mut out = Vec::new();
    while let Ok(Some(r)) = wait_once(-1, libc::WNOHANG) {
        out.push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vdso_layout() {
        let maps = "\
7fd394c1a000-7fd394c1e000 r--p 00000000 00:00 0                          [vvar]
7fd394c1e000-7fd394c20000 r--p 00000000 00:00 0                          [vvar_vclock]
7fd394c20000-7fd394c22000 r-xp 00000000 00:00 0                          [vdso]
7ffc1000-7ffc2000 rw-p 00000000 00:00 0                          [stack]
";
        let l = parse_vdso_layout(maps);
        assert_eq!(l.vvar_size(), 16384);
        assert_eq!(l.vvar_vclock_size(), 8192);
        assert_eq!(l.vdso_size(), 8192);
        assert_eq!(parse_vdso_layout("").vdso_size(), 0);
    }

    #[test]
    fn names_errnos() {
        assert_eq!(
            describe_errno(libc::EPERM),
            "EPERM (Operation not permitted)"
        );
        assert!(describe_errno(4000).starts_with("errno 4000"));
        let m = Missing::sys("PTRACE_SEIZE", libc::ESRCH);
        assert_eq!(m.to_string(), "PTRACE_SEIZE: ESRCH (No such process)");
    }

    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(size_of::<CloneArgs>(), 88);
        assert_eq!(size_of::<PrctlMmMap>(), 104);
        assert_eq!(size_of::<PmScanArg>(), 96);
        assert_eq!(size_of::<PageRegion>(), 24);
        assert_eq!(size_of::<UffdioApi>(), 24);
        assert_eq!(size_of::<UffdioRegister>(), 32);
        assert_eq!(size_of::<UffdioWriteprotect>(), 24);
        assert_eq!(size_of::<RseqConfiguration>(), 24);
        assert_eq!(size_of::<PeekSiginfoArgs>(), 16);
        assert_eq!(size_of::<Sigevent>(), 64);
    }

    #[test]
    fn child_is_reaped_on_drop() {
        let pid = {
            // SAFETY: `idle` only calls pause().
            let c = unsafe { Child::fork(idle) }.expect("fork");
            c.pid
        };
        // The child is gone and reaped: waiting for it again says "not our child".
        let e = wait_child(pid, Duration::ZERO).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ECHILD));
    }
}
