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

mod memory;
mod plumbing;
mod process;

use memory::*;
use plumbing::*;
use process::*;

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

