//! `stasis dump`: freeze → collect → write pages → write manifest → kill or resume.
//!
//! The process is only touched through ptrace; every path out of this function (success
//! or error) either kills it (dump done, no --leave-running) or puts back its registers
//! and signal masks and unmaps the scratch page before detaching. On error no
//! manifest.img is written, so the directory never holds an image that looks complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use stasis_image::model::*;
use stasis_image::{rec, ManifestWriter, MANIFEST, PAGES};
use tracing::{debug, info, warn};

use crate::error::{path_err, Ctx, Error, Result};
use crate::freeze::Frozen;
use crate::objects::ObjectTable;
use crate::parasite::Parasite;
use crate::{files, ipc, mem, ns, procfs, task};

pub struct DumpOptions {
    pub pid: i32,
    pub dir: PathBuf,
    pub leave_running: bool,
    /// Resources shared with processes outside the tree to record as external instead
    /// of refusing (`--external`: `pipe:[INO]`, `shm:[INO]`, `unix:[INO]`).
    pub external: Vec<String>,
    /// `--skip-in-flight`: a listener (TCP, or unix with connections from outside the
    /// tree) with connections waiting to be accepted is saved without them instead of
    /// refusing the dump.
    pub skip_in_flight: bool,
    /// `--network-lock`: hold the tree's TCP connections' packets back with nftables
    /// from before their sockets are read until the restore (`crate::netlock`).
    pub network_lock: crate::netlock::Mode,
    /// `--shell-job`: the controlling terminal of the root's session is outside the tree
    /// (a job of an interactive shell); it is recorded as external (crate::tty) and
    /// restore --shell-job hands the restorer's terminal over.
    pub shell_job: bool,
    /// `--compress`: the pages files are written LZ4-compressed (`stasis_image::compress`).
    pub compress: bool,
}

#[derive(Debug, Default, Clone)]
pub struct DumpStats {
    pub freeze_us: u64,
    pub frozen_us: u64,
    pub dump_us: u64,
    /// Pages stored in the pages files, and their bytes.
    pub pages_bytes: u64,
    pub pages: u64,
    /// Pages of processes restored from pages stored for another process of the tree
    /// (private pages they shared copy-on-write), not stored again.
    pub pages_shared: u64,
}

fn precheck(pid: i32) -> Result<()> {
    if pid <= 0 {
        return Err(Error::Refused { pid, why: "not a valid process id".into() });
    }
    let me = stasis_sys::sys::getpid();
    if pid == me {
        return Err(Error::Refused { pid, why: "stasis cannot dump itself".into() });
    }
    let st = match procfs::status(pid) {
        Ok(s) => s,
        Err(_) => return Err(Error::Refused { pid, why: "no such process".into() }),
    };
    let tgid: i32 = procfs::status_field(&st, "Tgid").and_then(|v| v.parse().ok()).unwrap_or(pid);
    if tgid != pid {
        return Err(Error::Refused { pid, why: format!("is a thread of process {tgid}; dump the process {tgid}") });
    }
    let state = procfs::status_field(&st, "State").unwrap_or("");
    if (state.starts_with('Z') || state.starts_with('X')) && !leader_exited(pid) {
        return Err(Error::Refused { pid, why: "is a zombie (it has exited and waits to be reaped)".into() });
    }
    Ok(())
}

/// A process whose main thread has exited (pthread_exit, SYS_exit) while other threads
/// run shows as a zombie (state Z) but is not one: it is dumped through a live thread.
fn leader_exited(pid: i32) -> bool {
    procfs::tids(pid).unwrap_or_default().into_iter().any(|t| t != pid)
}

/// Checks every process of the tree must pass (the root included).
fn check_member(pid: i32) -> Result<()> {
    let st = procfs::status(pid).map_err(|_| Error::Refused { pid, why: "exited while the tree was being frozen".into() })?;
    if let Some(t) = procfs::status_field(&st, "TracerPid").and_then(|v| v.parse::<i32>().ok()) {
        if t != 0 && t != stasis_sys::sys::getpid() {
            let comm = procfs::read(t, "comm").unwrap_or_default();
            return Err(Error::Refused {
                pid,
                why: format!("is being traced by pid {t} ({}); detach that tracer first", comm.trim()),
            });
        }
    }
    if procfs::status_field(&st, "State").is_some_and(|s| s.starts_with('Z')) {
        return Ok(()); // a zombie has no namespaces left to compare
    }
    crate::ns::check_kinds(pid)?;
    Ok(())
}

const KCMP_VM: i32 = 1;

/// The child a vfork parent is waiting for (it shares the parent's address space until
/// it execs or exits), if `pid` is such a parent right now.
pub(crate) fn vfork_child(pid: i32) -> Option<i32> {
    let state = procfs::status(pid).ok().and_then(|s| procfs::status_field(&s, "State").map(str::to_string)).unwrap_or_default();
    let nr: i64 = procfs::read(pid, "syscall").ok().and_then(|s| s.split(' ').next().and_then(|x| x.parse().ok())).unwrap_or(-1);
    if !state.starts_with('D') || ![libc::SYS_clone, libc::SYS_vfork, libc::SYS_clone3].contains(&nr) {
        return None;
    }
    task::children_of(pid).into_iter().find(|&c| stasis_sys::sys::kcmp(procfs::via(pid), procfs::via(c), KCMP_VM, 0, 0).ok() == Some(0))
}

/// How long a dump waits for a vfork in progress to end (the child usually execs within
/// milliseconds: posix_spawn, Python's subprocess).
const VFORK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits for a vfork in progress to end, and refuses the parent if it does not: the
/// parent waits for its child uninterruptibly (ptrace cannot stop it, so its registers
/// cannot be read) until the child execs or exits. A child sharing the address space
/// through clone(CLONE_VM) without CLONE_VFORK is fine (see `shared_tables`).
fn wait_for_vfork(pid: i32) -> Result<()> {
    let t0 = std::time::Instant::now();
    while let Some(c) = vfork_child(pid) {
        if t0.elapsed() > VFORK_WAIT {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "it is a vfork parent waiting for its child {c} (which shares its address space until it execs or exits; waited {} s); a vfork in progress",
                    VFORK_WAIT.as_secs()
                ),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Ok(())
}

/// Marks processes that share their fd table, fs struct or signal handlers with their
/// parent (clone CLONE_FILES / CLONE_FS / CLONE_SIGHAND; the address space, CLONE_VM, is
/// marked while collecting). Sharing with any other process of the tree is refused.
fn shared_tables(procs: &mut [Process]) -> Result<()> {
    const KCMP_FILES: i32 = 2;
    const KCMP_FS: i32 = 3;
    const KCMP_SIGHAND: i32 = 4;
    let same = |a: i32, b: i32, ty: i32| stasis_sys::sys::kcmp(procfs::via(a), procfs::via(b), ty, 0, 0).ok() == Some(0);
    let live: Vec<(i32, i32)> = procs.iter().filter(|p| !p.zombie).map(|p| (p.pid, p.ppid)).collect();
    for (i, &(pid, ppid)) in live.iter().enumerate() {
        for (ty, what) in [
            (KCMP_FILES, "fd table (CLONE_FILES)"),
            (KCMP_FS, "cwd/root/umask (CLONE_FS)"),
            (KCMP_VM, "address space (CLONE_VM)"),
            (KCMP_SIGHAND, "signal handlers (CLONE_SIGHAND)"),
        ] {
            for &(other, _) in &live[..i] {
                if other != ppid && same(pid, other, ty) && !(same(pid, ppid, ty) && same(other, ppid, ty)) {
                    return Err(Error::Unsupported {
                        pid,
                        what: format!("it shares its {what} with pid {other}, which is not its parent"),
                    });
                }
            }
            if i > 0 && live[..i].iter().any(|q| q.0 == ppid) && same(pid, ppid, ty) {
                let p = procs.iter_mut().find(|p| p.pid == pid).unwrap();
                match ty {
                    KCMP_FILES => p.shares_files = true,
                    KCMP_FS => p.shares_fs = true,
                    KCMP_SIGHAND => p.shares_sighand = true,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}


/// Creates the image directory if needed; returns whether it did (a failed dump then
/// removes it again, so a refusal leaves nothing behind).
fn prepare_dir(pid: i32, dir: &Path) -> Result<bool> {
    let existed = dir.exists();
    std::fs::create_dir_all(dir).map_err(path_err(dir.display().to_string()))?;
    if dir.join(MANIFEST).exists() {
        return Err(Error::Refused {
            pid,
            why: format!("{} already holds an image; use an empty directory", dir.display()),
        });
    }
    Ok(!existed)
}

fn cleanup_dir(dir: &Path) {
    for f in [PAGES, ".manifest.img.tmp", "stats.json"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    for k in 1..64 {
        let _ = std::fs::remove_file(dir.join(stasis_image::pages_file_name(k)));
    }
}

/// Everything collected while the process is frozen (minus page contents), and the
/// NUMA policies of its VMAs by start address (for the VMAs `mem::collect` makes).
fn collect_task_state(fz: &Frozen, vdso: (u64, u64)) -> Result<(Process, Vec<(u64, MemPolicy)>, Vec<i32>)> {
    let pid = fz.pid;
    let par = Parasite::start(fz, vdso)?;
    let r = (|| -> Result<(Process, Vec<(u64, MemPolicy)>, Vec<i32>)> {
        let creds = task::dump_creds(pid, &par, pid)?;
        let threads = task::dump_threads(fz, &par, &creds)?;
        let sigactions = task::dump_sigactions(fz, &par)?;
        let itimers = task::dump_itimers(fz, &par)?;
        let posix_timers = task::dump_posix_timers(fz, &par)?;
        let attrs = task::dump_attrs(fz, &par)?;
        let brk = par.call(pid, libc::SYS_brk, &[0])?;
        let thp = par.call(pid, libc::SYS_prctl, &[libc::PR_GET_THP_DISABLE as u64, 0, 0, 0, 0])?;
        let membarrier = task::membarrier_registrations(&par, pid)?;
        task::check_keyrings(fz, &par)?;
        // Linux 6.4+; EINVAL before: off
        let memory_merge = par.raw(pid, libc::SYS_prctl, &[task::PR_GET_MEMORY_MERGE, 0, 0, 0, 0])? == 1;
        let lock_future = crate::mem::lock_future(pid, par.scratch)?;
        let ldt = crate::ldt::dump(&par, pid)?;
        crate::aio::check_own(&par, pid)?;
        let sf = procfs::stat_fields(pid).ctx(pid, || "reading /proc/PID/stat".into())?;
        let mm = MmInfo {
            start_code: procfs::stat_num(&sf, 26),
            end_code: procfs::stat_num(&sf, 27),
            start_stack: procfs::stat_num(&sf, 28),
            start_data: procfs::stat_num(&sf, 45),
            end_data: procfs::stat_num(&sf, 46),
            start_brk: procfs::stat_num(&sf, 47),
            brk,
            arg_start: procfs::stat_num(&sf, 48),
            arg_end: procfs::stat_num(&sf, 49),
            env_start: procfs::stat_num(&sf, 50),
            env_end: procfs::stat_num(&sf, 51),
            auxv: procfs::auxv(pid).ctx(pid, || "reading /proc/PID/auxv".into())?,
            exe_object: 0,
            thp_disabled: thp == 1,
            membarrier,
            memory_merge,
            lock_future,
            ldt,
        };
        let vma_policies = crate::numa::dump_vmas(&par, pid)?;
        let not_cloexec = crate::tty::slaves_not_cloexec(pid, &par)?;
        let p = Process {
            pid,
            // the main thread's (the process's name, also when it has exited)
            comm: procfs::read(pid, &format!("task/{pid}/comm")).unwrap_or_default().trim_end().to_string(),
            threads,
            mm: Some(mm),
            sigactions,
            creds: Some(creds),
            attrs: Some(attrs),
            shared_pending: task::shared_pending(pid)?,
            itimers,
            posix_timers,
            rlimits: task::dump_rlimits(fz, &par)?,
            ..Default::default()
        };
        Ok((p, vma_policies, not_cloexec))
    })();
    let held = par.stop_held();
    let stopped = par.stop();
    if held || stopped.as_ref().is_ok_and(|h| *h) {
        fz.stop_held.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let p = r?;
    stopped?;
    Ok(p)
}

fn vdso_range(pid: i32) -> Result<(u64, u64)> {
    let t = procfs::read(pid, "maps").ctx(pid, || "reading /proc/PID/maps".into())?;
    for l in t.lines() {
        if l.ends_with("[vdso]") {
            let r = l.split(' ').next().unwrap_or("");
            if let Some((a, b)) = r.split_once('-') {
                if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                    return Ok((a, b));
                }
            }
        }
    }
    Err(Error::Unsupported { pid, what: "process without a [vdso] mapping".into() })
}

/// clone's exit_signal as the image stores it: 0 = SIGCHLD (the default), -1 = none.
fn exit_signal(sf: &[String]) -> i32 {
    match procfs::stat_num(sf, 38) as i32 {
        0 => -1,
        libc::SIGCHLD => 0,
        s => s,
    }
}

/// One process of the dumped tree.
enum Member {
    Live { fz: Frozen, vdso: (u64, u64), stopped: bool, ppid: i32 },
    Zombie { pid: i32, ppid: i32 },
}

impl Member {
    fn pid(&self) -> i32 {
        match self {
            Member::Live { fz, .. } => fz.pid,
            Member::Zombie { pid, .. } => *pid,
        }
    }
}

/// Puts every frozen process back (failed dump or --leave-running).
fn resume_all(members: Vec<Member>) -> Result<()> {
    crate::tcp_repair::release(true);
    let mut first = None;
    for m in members {
        if let Member::Live { fz, .. } = m {
            let pid = fz.pid;
            if let Err(e) = fz.resume() {
                warn!("resuming pid {pid}: {e}");
                first.get_or_insert(e);
            }
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

enum Settled {
    Zombie,
    Gone,
}

/// How long a task caught exiting may take to become a zombie (or disappear).
const EXIT_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// A process that could not be frozen because it is exiting (ptrace refuses a task whose
/// exit has begun; its main thread may vanish under PTRACE_INTERRUPT): waits, bounded,
/// until it is a zombie without threads or gone. None: it is not exiting (the error
/// that led here stands).
fn settle_exiting(pid: i32) -> Option<Settled> {
    let t0 = Instant::now();
    loop {
        let Some((state, exiting)) = procfs::task_exit_state(pid, pid) else { return Some(Settled::Gone) };
        match state {
            'X' => return Some(Settled::Gone),
            'Z' if procfs::tids(pid).map(|t| t.len() <= 1).unwrap_or(true) => return Some(Settled::Zombie),
            _ => {}
        }
        if !exiting || t0.elapsed() > EXIT_SETTLE {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Freezes the tree rooted at `root`, parents before their children (a frozen process
/// cannot fork, so its list of children is final once it is frozen).
fn freeze_tree(root: i32) -> Result<Vec<Member>> {
    let mut members: Vec<Member> = Vec::new();
    let mut todo = vec![(root, 0)];
    while let Some((pid, ppid)) = todo.pop() {
        let r = (|| -> Result<Option<Member>> {
            check_member(pid)?;
            let state = procfs::status(pid)
                .ok()
                .and_then(|st| procfs::status_field(&st, "State").map(|s| s.chars().next().unwrap_or('?')))
                .unwrap_or('?');
            // not a zombie to recreate if its other threads run (they would be lost)
            if state == 'Z' && pid != root && !leader_exited(pid) {
                return Ok(Some(Member::Zombie { pid, ppid }));
            }
            // Before seizing: a vfork parent waits uninterruptibly for its child and
            // would never stop.
            wait_for_vfork(pid)?;
            let fz = Frozen::seize(pid)?;
            if fz.leader_exited {
                // its memory, files, fs and namespaces through a live thread from now on
                procfs::set_via(pid, Some(fz.main().tid));
                debug!(pid, via = fz.main().tid, "main thread has exited: dumped through a live thread");
                crate::ns::check_kinds(pid)?;
            }
            // Read once frozen: a running process may exec (new vDSO) or exit meanwhile.
            let vdso = vdso_range(pid)?;
            // a group stop shows in the seize's first report (with its signal); state T
            // also covers one that began while we seized the threads
            let stopped = state == 'T' || fz.main().group_stop != 0;
            Ok(Some(Member::Live { fz, vdso, stopped, ppid }))
        })();
        // A child caught exiting (a shell loop's short-lived commands) cannot be
        // checked or seized: its parent is frozen, so it becomes a zombie we record,
        // or (SIGCHLD ignored: reaped by the kernel) it is simply gone.
        let r = match r {
            Err(e) if pid != root => match settle_exiting(pid) {
                Some(Settled::Zombie) => Ok(Some(Member::Zombie { pid, ppid })),
                Some(Settled::Gone) => Ok(None),
                None => Err(e),
            },
            r => r,
        };
        match r {
            Ok(None) => debug!(pid, "exited while the tree was being frozen"),
            Ok(Some(m)) => {
                if let Member::Live { .. } = m {
                    let kids = task::children_of(pid);
                    todo.extend(kids.into_iter().rev().map(|c| (c, pid)));
                }
                members.push(m);
            }
            Err(e) => {
                let _ = resume_all(members);
                return Err(e);
            }
        }
    }
    Ok(members)
}

pub fn dump(opts: &DumpOptions) -> Result<DumpStats> {
    // whatever way it ends, `procfs::via` forgets the processes of this dump
    struct ForgetVia;
    impl Drop for ForgetVia {
        fn drop(&mut self) {
            procfs::clear_via();
        }
    }
    let _forget = ForgetVia;
    let pid = opts.pid;
    let t0 = Instant::now();
    precheck(pid)?;
    let external = crate::external::parse_external(pid, &opts.external)?;
    let created = prepare_dir(pid, &opts.dir)?;
    let members = match freeze_tree(pid) {
        Ok(m) => m,
        Err(e) => {
            if created {
                let _ = std::fs::remove_dir(&opts.dir); // only if still empty
            }
            return Err(e);
        }
    };
    let t_frozen = Instant::now();
    info!(pid, processes = members.len(), "frozen");
    // Before any connection is read (TCP repair mode): from now on the peers' packets
    // neither reach nor leave the dumped sockets.
    let live: Vec<i32> = members.iter().filter(|m| matches!(m, Member::Live { .. })).map(|m| m.pid()).collect();
    let lock = match crate::netlock::lock(opts.network_lock, pid, &live, !opts.leave_running) {
        Ok(l) => l,
        Err(e) => {
            if created {
                let _ = std::fs::remove_dir(&opts.dir); // only if still empty
            }
            if let Err(e2) = resume_all(members) {
                warn!("resuming the tree of pid {pid} after a failed dump: {e2}");
            }
            return Err(e);
        }
    };
    // A --leave-running dump unlocks at its end: its image records no lock.
    let recorded = if opts.leave_running { None } else { lock.as_ref() };
    let r = write_image(&members, opts, external, recorded);
    let mut stats = match r {
        Ok(s) => s,
        Err(e) => {
            cleanup_dir(&opts.dir);
            if created {
                let _ = std::fs::remove_dir(&opts.dir); // only if nothing else is in it
            }
            // sockets out of repair mode (resume_all) before their packets flow again
            if let Err(e2) = resume_all(members) {
                warn!("resuming the tree of pid {pid} after a failed dump: {e2}");
            }
            if let Some(l) = &lock {
                crate::netlock::unlock(l);
            }
            return Err(e);
        }
    };
    if opts.leave_running {
        let r = resume_all(members);
        if let Some(l) = &lock {
            crate::netlock::unlock(l);
        }
        r?;
    } else {
        for m in members {
            if let Member::Live { fz, .. } = m {
                fz.kill();
            }
        }
        // closed in repair mode after the process is gone: the peer sees nothing
        crate::tcp_repair::release(false);
        if let Some(l) = &lock {
            info!(table = l.table, connections = l.connections, "network lock kept until the restore (or `stasis network-unlock`)");
        }
    }
    let t_end = Instant::now();
    stats.freeze_us = (t_frozen - t0).as_micros() as u64;
    stats.frozen_us = (t_end - t_frozen).as_micros() as u64;
    stats.dump_us = (t_end - t0).as_micros() as u64;
    let json = format!(
        "{{\"pid\": {pid}, \"freeze_us\": {}, \"frozen_us\": {}, \"dump_us\": {}, \"pages\": {}, \"pages_bytes\": {}, \"pages_shared\": {}, \"leave_running\": {}}}\n",
        stats.freeze_us, stats.frozen_us, stats.dump_us, stats.pages, stats.pages_bytes, stats.pages_shared, opts.leave_running
    );
    if let Err(e) = std::fs::write(opts.dir.join("stats.json"), json) {
        warn!("writing stats.json: {e}");
    }
    info!(pid, ms = stats.dump_us / 1000, bytes = stats.pages_bytes, "dump done");
    Ok(stats)
}

fn write_image(
    members: &[Member],
    opts: &DumpOptions,
    external: std::collections::BTreeSet<String>,
    lock: Option<&crate::netlock::Lock>,
) -> Result<DumpStats> {
    let dir: &Path = &opts.dir;
    let mut objs = ObjectTable::default();
    objs.external = external;
    let mut fd_state = files::FdState::new(members.iter().map(|m| m.pid()).collect());
    fd_state.skip_in_flight = opts.skip_in_flight;
    let mut procs = Vec::new();
    let mut cols = Vec::new();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    for m in members {
        let (fz, vdso, stopped, ppid) = match m {
            Member::Live { fz, vdso, stopped, ppid } => (fz, *vdso, *stopped, *ppid),
            Member::Zombie { pid, ppid } => {
                let pid = *pid;
                let sf = procfs::stat_fields(pid).ctx(pid, || "reading /proc/PID/stat".into())?;
                procs.push(Process {
                    pid,
                    ppid: *ppid,
                    zombie: true,
                    exit_status: procfs::stat_num(&sf, 52) as i32,
                    comm: procfs::read(pid, "comm").unwrap_or_default().trim_end().to_string(),
                    ns_pids: crate::ns::ns_pids(pid, pid),
                    exit_signal: exit_signal(&sf),
                    attrs: Some(stasis_image::model::ProcAttrs {
                        pgid: procfs::stat_num(&sf, 5) as i32,
                        sid: procfs::stat_num(&sf, 6) as i32,
                        ..Default::default()
                    }),
                    kernel: kernel.clone(),
                    ..Default::default()
                });
                continue;
            }
        };
        let pid = fz.pid;
        let (mut process, vma_policies, not_cloexec) = collect_task_state(fz, vdso)?;
        fd_state.not_cloexec.extend(not_cloexec.into_iter().map(|fd| (fz.pid, fd)));
        process.ppid = ppid;
        process.ns_pids = crate::ns::ns_pids(pid, pid);
        // the main thread's own (its exit signal and, if it has exited, its status)
        let sf = procfs::task_stat_fields(pid, pid).ctx(pid, || "reading /proc/PID/task/PID/stat".into())?;
        process.exit_signal = exit_signal(&sf);
        if fz.leader_exited {
            process.leader_exited = true;
            process.leader_exit_status = procfs::stat_num(&sf, 52) as i32;
        }
        if let Some(a) = process.attrs.as_mut() {
            a.stopped = stopped;
            // 0: SIGSTOP (a stop seen only in /proc's state)
            a.stop_signal = if stopped { fz.main().group_stop } else { 0 };
        }
        (process.uts_ns, process.ipc_ns) = ns::dump_ns(pid, &mut objs)?;
        (process.net_ns, process.lo_up) = ns::dump_net(pid)?;
        process.cgroups = crate::cgroup::dump(pid);
        crate::cgroup::check_threads(pid, &process.cgroups, &process.threads.iter().map(|t| t.tid).collect::<Vec<_>>())?;
        process.cgroup_ns = ns::dump_cgroup_ns(&procs, pid, ppid)?;
        (process.time_ns, process.time_children_ns, process.time_offsets) = ns::dump_time(pid)?;
        // A child sharing its parent's address space (CLONE_VM): the parent's VMAs and
        // pages are its memory; it records none of its own.
        let parent_live = members.iter().any(|m| matches!(m, Member::Live { fz, .. } if fz.pid == ppid));
        process.shares_vm = parent_live && stasis_sys::sys::kcmp(procfs::via(pid), procfs::via(ppid), KCMP_VM, 0, 0).ok() == Some(0);
        let mut col = if process.shares_vm { mem::MemCollect::empty() } else { mem::collect(pid, &mut objs, process.ipc_ns)? };
        fd_state.shared.append(&mut col.shared);
        (process.fds, process.locks) = files::dump_fds(pid, &mut objs, &mut fd_state)?;
        mem::link_rings(pid, &mut col.vmas, &process.fds, &objs)?;
        for (start, pol) in vma_policies {
            if let Some(v) = col.vmas.iter_mut().find(|v| v.start == start) {
                v.mempolicy = Some(pol);
            }
        }
        if let Some(a) = process.attrs.as_mut() {
            // removed (rmdir) while it was the working or root directory (chroot):
            // recreated nameless
            for (link, path, ghost, what) in [("cwd", &mut a.cwd, &mut a.cwd_ghost, "its working directory"), ("root", &mut a.root, &mut a.root_ghost, "its root directory")] {
                if !path.ends_with(" (deleted)") {
                    continue;
                }
                let via = format!("{}/{link}", crate::procfs::dir(pid));
                let same = std::fs::metadata(&via).ok().zip(std::fs::symlink_metadata(&*path).ok()).is_some_and(|(x, y)| {
                    use std::os::unix::fs::MetadataExt;
                    (x.dev(), x.ino()) == (y.dev(), y.ino())
                });
                if !same {
                    *ghost = files::ghost(pid, &mut objs, &via, path, what)?;
                    *path = path.trim_end_matches(" (deleted)").to_string();
                }
            }
        }
        let exe_path = procfs::readlink(&format!("{}/exe", crate::procfs::dir(pid))).ctx(pid, || "reading /proc/PID/exe".into())?;
        let exe_via = format!("{}/exe", crate::procfs::dir(pid));
        let exe_id = if exe_path.ends_with(" (deleted)") {
            // removed (a binary replaced by an upgrade): the same nameless file as the
            // VMAs that map it (mem::collect), recreated from the image
            let gid = files::ghost(pid, &mut objs, &exe_via, &exe_path, "its executable")?;
            files::mapped_ghost(&mut objs, gid, &exe_path, false)
        } else {
            files::mapped_file(pid, &mut objs, &exe_via, &exe_path, false, true)?
        };
        if let Some(mm) = process.mm.as_mut() {
            mm.exe_object = exe_id;
        }
        process.vmas = col.vmas.clone();
        process.dumped_at_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        process.kernel = kernel.clone();
        procs.push(process);
        cols.push(col);
    }
    crate::ns::collect(&mut procs)?;
    crate::ns::check_time(&procs)?;
    shared_tables(&mut procs)?;
    files::finish_fds(&mut fd_state, &mut objs)?;
    crate::tty::finish(&mut procs, &mut objs, &fd_state.ttys, opts.shell_job)?;
    crate::external::warn_unused(&objs);
    if let Some((pid, why)) = ns::check_tree(&procs) {
        return Err(Error::Unsupported { pid, what: why });
    }
    let mut col = mem::merge(cols);
    mem::share_cow(&mut col);
    let sysv = ipc::dump(&procs, &mut objs)?;
    mem::add_sysv(&mut col, sysv);
    // the cgroups of the tree, with their settings (the tree is frozen: none can move)
    let cgroup_dirs = crate::cgroup::dump_dirs(&procs);
    if let Some(root) = procs.first_mut() {
        root.cgroup_dirs = cgroup_dirs;
    }
    mem::add_ghost_files(&mut col, std::mem::take(&mut objs.ghost_files));
    let total: u64 = col.jobs.iter().filter(|j| j.stored()).map(|j| j.count * 4096).sum();
    let pb = crate::progress::Progress::new(total, "dumping memory");
    let out = mem::write_pages(dir, &col, opts.compress, &|n| pb.set(n))?;
    let (index, pstats) = (out.index, out.stats);
    pb.finish();

    // Signals sent while the dump ran are in the image too.
    for m in members {
        if let Member::Live { fz, .. } = m {
            if let Some(p) = procs.iter_mut().find(|p| p.pid == fz.pid) {
                task::refresh_pending(fz, p)?;
            }
        }
    }
    let mut features = Vec::new();
    if let Some(l) = lock {
        if let Some(root) = procs.first_mut() {
            root.net_lock = l.table.clone();
            root.net_lock_ns = l.namespaces.iter().map(|(ns, _)| *ns).collect();
        }
        features.push(stasis_image::FEATURE_NETWORK_LOCK);
    }
    if objs.objects.iter().any(|o| o.packet().is_some_and(|p| p.rx_ring.is_some())) {
        features.push(stasis_image::FEATURE_PACKET_RING);
    }
    if opts.compress {
        features.push(stasis_image::FEATURE_PAGES_LZ4);
    }
    let mut w = match features.is_empty() {
        true => ManifestWriter::new(),
        false => ManifestWriter::with_required_features(&features),
    };
    for p in &procs {
        w.record(rec::PROCESS, p);
    }
    for o in &objs.objects {
        w.record(rec::OBJECT, o);
    }
    // Page index in records of at most 64k runs, so no record grows huge.
    for chunk in index.runs.chunks(65536) {
        w.record(rec::PAGE_INDEX, &PageIndex { runs: chunk.to_vec() });
    }
    w.finish(dir, &out.shards)?;
    Ok(DumpStats { pages: pstats.pages, pages_bytes: pstats.bytes, pages_shared: pstats.shared, ..Default::default() })
}
