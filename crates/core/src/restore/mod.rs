//! `stasis restore`: image → checks → new process with the original PID → address space,
//! threads, registers and the rest → run.
//!
//! 1. Everything that can be checked without creating a process is checked first: the
//!    manifest's records and every page run's CRC, the files that mappings and fds
//!    need (size, mtime, content hash of mapped executables), that the PID and TIDs are
//!    free, that this kernel's vDSO has the image's layout.
//! 2. The restorer opens all files, pipes (refilled) and shared-memory objects (filled)
//!    itself, then forks the new process with clone3(set_tid = original PID). The child,
//!    a copy of stasis, moves those fds to their original numbers, sets umask, cwd,
//!    root and comm, maps a one-page `syscall` trampoline at a hole that both layouts
//!    leave free, reports its fd numbers and parks in pause().
//! 3. The restorer seizes it and drives it with injected syscalls (stasis_sys::remote):
//!    moves the vDSO to its old address, unmaps everything else, maps the saved VMAs,
//!    fills them with process_vm_writev straight from a mapping of pages.img (two
//!    threads), sets mm fields with PR_SET_MM_MAP, creates the threads with clone3
//!    (set_tid), restores per-thread and per-process state, unmaps the trampoline, sets
//!    registers and detaches.
//!
//! Any failure kills and reaps the new process and names the step.

mod build;
mod execute;
pub mod plan;
mod prepare;
mod spawn;
pub mod validate;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;

use execute::restore_here;
use spawn::send_report;
pub use validate::validate;

use stasis_image::model::*;
use stasis_sys::sys::{self, child};
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::procfs;

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub dir: PathBuf,
    /// Restore inside a new PID namespace (with a private mount namespace and its own
    /// /proc) whose init is a stasis process: the tree gets its original pids there even
    /// if they are taken outside.
    pub pid_ns: bool,
    pub detach: bool,
    pub pidfile: Option<PathBuf>,
    /// Restore even if files the process had open (not mapped) changed since the dump,
    /// e.g. a log it kept appending to after a --leave-running dump.
    pub allow_changed_files: bool,
    /// `--inherit-fd FD:RES`: the restorer's fd FD provides external resource RES.
    pub inherit_fds: Vec<String>,
    /// `--network-lock`: remove the image's network lock once the restore succeeded
    /// (`Nftables`), or leave it alone (`Skip`).
    pub network_lock: crate::netlock::Mode,
    /// `--tcp-close`: TCP connections come back closed (fdkinds::inet::open).
    pub tcp_close: bool,
    /// `--shell-job`: the image's outside terminal (crate::tty) is this restorer's
    /// (stdin, its controlling terminal); required for such an image.
    pub shell_job: bool,
    /// `--cgroups`: what is done with the image's cgroups (crate::cgroup::Mode).
    pub cgroups: crate::cgroup::Mode,
}

use crate::PAGE;
/// Trampoline: the `syscall` instruction, then a data area for syscall arguments
/// (auxv, seccomp filters, groups...).
const TRAMP_LEN: u64 = 16 * PAGE;
const DATA: u64 = 64;
const TASK_SIZE: u64 = 0x7fff_ffff_f000;
const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const CLONE_THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

fn refuse(why: impl Into<String>) -> Error {
    Error::RestoreRefused(why.into())
}

/// Who holds `id` (a PID or TID), if anyone.
fn holder(id: i32) -> Option<String> {
    let st = procfs::status(id).ok()?;
    let tgid: i32 = procfs::status_field(&st, "Tgid").and_then(|v| v.parse().ok()).unwrap_or(id);
    let name = procfs::status_field(&procfs::status(tgid).unwrap_or_default(), "Name").unwrap_or("?").to_string();
    let state = procfs::status_field(&st, "State").unwrap_or("").to_string();
    Some(if tgid == id {
        format!("process '{name}' (pid {id}, state {state})")
    } else {
        format!("a thread of process '{name}' (pid {tgid})")
    })
}

/// A process's `[vvar]`/`[vvar_vclock]`/`[vdso]` VMAs in the image, lowest first.
fn image_vdso(p: &Process) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = p
        .vmas
        .iter()
        .filter(|v| matches!(VmaKind::try_from(v.kind), Ok(VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock)))
        .map(|v| (v.name.clone(), v.start, v.end))
        .collect();
    v.sort_by_key(|x| x.1);
    v
}

fn vdso_family(maps: &[procfs::MapEntry]) -> Vec<(String, u64, u64)> {
    maps.iter()
        .filter(|m| matches!(m.path.as_str(), "[vvar]" | "[vvar_vclock]" | "[vdso]"))
        .map(|m| (m.path.clone(), m.start, m.end))
        .collect()
}

/// Lowest gap of `len` bytes (plus a page of margin on each side) above 4 GiB that no
/// range in `used` touches.
fn find_hole(used: &mut Vec<(u64, u64)>, len: u64) -> Option<u64> {
    used.sort();
    let mut cur = 0x1_0000_0000u64;
    for &(s, e) in used.iter() {
        if e <= cur {
            continue;
        }
        if s > cur && s - cur >= len + 2 * PAGE {
            return Some(cur + PAGE);
        }
        cur = cur.max(e);
    }
    if TASK_SIZE > cur && TASK_SIZE - cur >= len + 2 * PAGE {
        return Some(cur + PAGE);
    }
    None
}

/// The restore plan of the image in `dir` (validated first), as `stasis inspect --plan`
/// prints it. Nothing is created; the host is only asked whether pids and sessions are
/// taken.
pub fn plan_of(dir: &std::path::Path, detach: bool) -> Result<plan::RestorePlan> {
    let m = stasis_image::read_manifest(dir)?;
    validate(&m)?;
    plan::RestorePlan::build(&m, &plan::LiveHost::default(), detach)
}

pub fn restore(opts: &RestoreOptions) -> Result<u8> {
    if opts.pid_ns {
        return restore_in_pidns(opts);
    }
    restore_here(opts, None)
}

/// `--pid-ns`: a child in new PID + mount namespaces becomes pid 1 there, mounts its own
/// /proc, and runs the whole restore inside (so every pid of the image is free), then
/// stays as the namespace's init: it reaps orphans and exits with the root's status once
/// no process is left. Reports "O" + root pid (or "E" + the error) over a pipe.
fn restore_in_pidns(opts: &RestoreOptions) -> Result<u8> {
    let m = stasis_image::read_manifest(&opts.dir)?;
    validate(&m)?;
    crate::external::check_restore(&m, &opts.inherit_fds)?;
    let root = m.process.pid;
    drop(m);
    let (r, w) = sys::pipe2(libc::O_CLOEXEC).map_err(|e| step_err(root, "creating control pipe", e))?;
    let init = sys::clone_fork(&[], (libc::CLONE_NEWPID | libc::CLONE_NEWNS) as u64, libc::SIGCHLD)
        .map_err(|e| step_err(root, "creating the PID namespace (clone3 CLONE_NEWPID|CLONE_NEWNS)", e))?;
    if init == 0 {
        drop(r);
        child::set_pdeathsig_kill();
        let code = pidns_init(opts, &w);
        child::exit(code)
    }
    drop(w);
    let msg = ReportReader::default().next(&r);
    drop(r);
    match msg.first() {
        Some(b'O') => {
            let inner_root = msg.get(1..5).map(|b| i32::from_le_bytes(b.try_into().unwrap())).unwrap_or(root);
            // The root's pid as seen from here: the child of the init whose second
            // NSpid level is the image's pid.
            let host = procfs::read(init, &format!("task/{init}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|x| x.parse::<i32>().ok())
                .find(|c| crate::ns::ns_pids(*c, *c).get(1) == Some(&inner_root));
            info!(pid = root, host_pid = host.unwrap_or(0), init, "restored in a new PID namespace");
            if let Some(pf) = &opts.pidfile {
                if let Err(e) = std::fs::write(pf, format!("{}\n", host.unwrap_or(init))) {
                    warn!("writing pidfile {}: {e}", pf.display());
                }
            }
            if opts.detach {
                return Ok(0);
            }
            let st = sys::waitpid(init, 0).map_err(|e| step_err(root, "waiting for the PID namespace's init", e))?;
            Ok(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) as u8 } else { 128 + libc::WTERMSIG(st) as u8 })
        }
        Some(b'E') => {
            let _ = sys::waitpid(init, 0);
            Err(Error::Relayed(String::from_utf8_lossy(&msg[1..]).to_string()))
        }
        _ => {
            let _ = sys::kill(init, libc::SIGKILL);
            let _ = sys::waitpid(init, 0);
            Err(Error::RestoreStep { pid: root, step: "restoring in a new PID namespace".into(), why: "its init died".into() })
        }
    }
}

/// Pid 1 of the `--pid-ns` namespace: own /proc, restore, then reap until empty.
fn pidns_init(opts: &RestoreOptions, w: &OwnedFd) -> i32 {
    let fail = |why: String| {
        send_report(w.as_raw_fd(), &[b"E".as_slice(), why.as_bytes()].concat());
        1
    };
    if child::mount(None, c"/", None, (libc::MS_REC | libc::MS_PRIVATE) as u64) < 0 {
        return fail(format!("restore refused: making the new mount namespace private: {}", std::io::Error::last_os_error()));
    }
    let fl = (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC) as u64;
    if child::mount(Some(c"proc"), c"/proc", Some(c"proc"), fl) < 0 {
        return fail(format!("restore refused: mounting /proc in the new PID namespace: {}", std::io::Error::last_os_error()));
    }
    let inner = RestoreOptions { pid_ns: false, detach: false, pidfile: None, ..opts.clone() };
    match restore_here(&inner, Some(w)) {
        Ok(code) => {
            // Orphans of the tree come to us (pid 1): reap until nobody is left.
            while sys::waitpid(-1, libc::__WALL).is_ok() {}
            code as i32
        }
        Err(e) => fail(e.to_string()),
    }
}

/// Reads length-framed reports from the control pipe.
#[derive(Default)]
struct ReportReader {
    pending: Vec<u8>,
}

impl ReportReader {
    /// `next`, giving up (None) when nothing arrives for `quiet`.
    fn next_within(&mut self, r: &OwnedFd, quiet: std::time::Duration) -> Option<Vec<u8>> {
        if self.complete().is_some() || sys::readable_within(r.as_fd(), quiet.as_millis() as i32).unwrap_or(true) {
            Some(self.next(r))
        } else {
            None
        }
    }

    /// The length of the report read in full at the start of `pending`, if there is one.
    fn complete(&self) -> Option<usize> {
        let len = u32::from_le_bytes(self.pending.get(..4)?.try_into().ok()?) as usize;
        (self.pending.len() >= 4 + len).then_some(len)
    }

    /// The next report's payload; empty when the pipe is closed (every writer gone).
    fn next(&mut self, r: &OwnedFd) -> Vec<u8> {
        let mut chunk = vec![0u8; 1 << 16];
        loop {
            if let Some(len) = self.complete() {
                let msg = self.pending[4..4 + len].to_vec();
                self.pending.drain(..4 + len);
                return msg;
            }
            match sys::read_fd(r.as_fd(), &mut chunk) {
                Ok(0) => return Vec::new(),
                Ok(k) => self.pending.extend_from_slice(&chunk[..k]),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(_) => return Vec::new(),
            }
        }
    }
}

fn pid_taken_or(pid: i32, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EEXIST) {
        return refuse(format!(
            "pid {pid} is in use{}",
            holder(pid).map(|h| format!(" by {h}")).unwrap_or_default()
        ));
    }
    step_err(pid, "clone3 with the original pid", e)
}

fn step_err(pid: i32, step: &str, e: std::io::Error) -> Error {
    Error::RestoreStep { pid, step: step.into(), why: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::ReportReader;
    use stasis_sys::sys;
    use std::time::{Duration, Instant};

    /// A writer that never reports (a new process killed before its report, its
    /// siblings holding the pipe) is a timeout, not a wait for ever; a report that is
    /// there is read at once, also when two arrived in one read.
    #[test]
    fn reports_are_awaited_within_a_bound() {
        let (r, w) = sys::pipe2(libc::O_CLOEXEC).unwrap();
        let mut rd = ReportReader::default();
        let t0 = Instant::now();
        assert!(rd.next_within(&r, Duration::from_millis(200)).is_none());
        assert!(t0.elapsed() >= Duration::from_millis(150));
        let frame = |b: &[u8]| [&(b.len() as u32).to_le_bytes()[..], b].concat();
        sys::write_fd(std::os::fd::AsFd::as_fd(&w), &[frame(b"one"), frame(b"two")].concat()).unwrap();
        assert_eq!(rd.next_within(&r, Duration::from_millis(200)).unwrap(), b"one");
        assert_eq!(rd.next_within(&r, Duration::from_millis(200)).unwrap(), b"two");
        drop(w);
        assert_eq!(rd.next_within(&r, Duration::from_millis(200)).unwrap(), b"");
    }
}
