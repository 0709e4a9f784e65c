//! Carrying out a restore here: checks, prepare, fork, build every process, go.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Instant;

use stasis_sys::sys::{self, child};
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::{files, ipc, ns, procfs};

use super::build::Builder;
use super::plan::{LiveHost, RestorePlan};
use super::prepare::{fill_shmem, prepare, Plan};
use stasis_image::Manifest;
use super::spawn::*;
use super::*;

pub(super) fn restore_here(opts: &RestoreOptions, ready: Option<&OwnedFd>) -> Result<u8> {
    let t0 = Instant::now();
    let m = stasis_image::read_manifest(&opts.dir)?;
    validate(&m)?;
    let inherit = crate::external::check_restore(&m, &opts.inherit_fds)?;
    crate::netlock::check_restore(opts.network_lock, &m)?;
    check_shell_job(opts, &m)?;
    let pid = m.process.pid;
    // -- checks that need no process --------------------------------------------------
    let maps = map_pages(opts, &m)?;
    let shards: Vec<&[u8]> = maps.iter().map(|m| m.as_slice()).collect();
    stasis_image::verify_pages(&opts.dir, &m.index, &shards, 2)?;
    check_files(opts, &m)?;
    if !opts.tcp_close {
        crate::fdkinds::inet::warn_gone_peers(&m);
    }
    check_ids_free(&m)?;
    crate::mem::check_huge_pool(&m)?;
    let layout = Layout::new(&m)?;
    // -- plan, open everything ------------------------------------------------------
    sys::raise_nofile_limit();
    // Orphans of a failed restore come back to us to be reaped.
    let _ = sys::set_child_subreaper();
    let rp = RestorePlan::build(&m, &LiveHost::default(), opts.detach)?;
    // POSIX shared memory objects whose files are missing, from the image (removed
    // again if the restore fails), before anything opens or maps them
    let shm_files = crate::shmfile::recreate(&m, &shards)?;
    // POSIX message queues prepare makes (removed again if the restore fails)
    let mqueues = crate::fdkinds::mqueue::Created::new();
    // cgroups first: a strict restore refuses before anything exists, and files opened
    // inside cgroupfs need theirs. Dropped last, so the cgroups a failed restore created
    // are removed once its processes are gone.
    let mut cgroups = crate::cgroup::prepare(&m, opts.cgroups)?;
    // restored connections get the bytes from an urgent byte on as packets from the
    // peer before the processes run (fdkinds::inet::tcp): through the image's lock
    // (and the handshakes of clients waiting in a listener's accept queue,
    // fdkinds::inet::waiting)
    if !opts.tcp_close && (crate::fdkinds::inet::tcp::any_from_peer_data(&m) || crate::fdkinds::inet::waiting::any(&m)) {
        crate::netlock::let_marked_through(opts.network_lock, &m);
    }
    let (mut plan, shm_regions) = prepare(&m, rp, layout.tramp, &inherit, opts.tcp_close, &cgroups, &shards)?;
    fill_shmem(&m, &plan, &shards)?;
    reserve_premap(&m, &mut plan, &layout);
    // -- fork, and wait until every process reported its carried fds ---------------------
    let (mut ch, ctl_r) = fork_tree(&m, &plan, &shards)?;
    let tmp_by_pid = wait_reports(&m, &plan, &mut ch, &ctl_r)?;
    let live = tmp_by_pid.len();
    // a shell job's foreground group takes the terminal before anything of it runs
    let fg = opts.shell_job.then(|| crate::tty::Foreground::set(&m));
    info!(pid, processes = live, ms = t0.elapsed().as_millis() as u64, "processes created");
    // unix socket queues whose messages carry their senders' credentials: the senders
    // exist now
    files::requeue_late(&m, &mut plan.late)?;
    // control groups, before any thread exists (threads inherit their creator's)
    cgroups.join(&m.processes)?;
    // Every process holds its own FIFO descriptions now: a FIFO must not stay open here
    // (a reader would never see EOF).
    plan.fifo_keep.clear();
    // SysV objects, now that the new IPC namespaces exist (before any shmat)
    let mut sysv = ipc::restore(&m, &shards)?;
    // -- drive them: every process up to its registers, then all registers, then go ----
    let mut ch = drive(&m, &plan, ch, &tmp_by_pid, &shards, &layout, &mut sysv)?;
    sysv.keep();
    cgroups.keep();
    shm_files.keep();
    mqueues.keep();
    info!(pid, ms = t0.elapsed().as_millis() as u64, "restored");
    // Every connection is back and out of repair mode: let their packets through. A
    // failure before this point left the lock, so the image can be restored again.
    if let Err(e) = crate::netlock::unlock_image(opts.network_lock, &m) {
        warn!("{e}; the restored connections stay blocked until `stasis network-unlock {}`", opts.dir.display());
    }
    // connections that had urgent data or the peer's FIN (CLOSE_WAIT, LAST_ACK,
    // CLOSING): those again, now that packets flow
    if let Err(e) = crate::fdkinds::inet::send_from_peer() {
        warn!(pid, "a restored connection did not get again the urgent data or FIN it had received: {e}");
    }
    if let Some(pf) = &opts.pidfile {
        if let Err(e) = std::fs::write(pf, format!("{pid}\n")) {
            warn!("writing pidfile {}: {e}", pf.display());
        }
    }
    ch.released = true;
    if let Some(fg) = fg {
        fg.keep();
    }
    if let Some(w) = ready {
        // --pid-ns init: outlive the outer stasis, then tell it. In the other order the
        // outer one may read the report and exit (--detach) before the death signal is
        // cleared, and the kernel kills this init and with it the whole namespace.
        let _ = sys::clear_pdeathsig();
        send_report(w.as_raw_fd(), &[b"O".as_slice(), &pid.to_le_bytes()].concat());
    }
    if opts.detach {
        return Ok(0);
    }
    // Nothing of the image stays with us while we wait: our own mapping of its shared
    // memory would make us an outside holder of it (a dump of the restored tree would
    // refuse it), and the pages files' mappings are no longer needed.
    drop(plan);
    drop(shm_regions);
    drop(shards);
    drop(maps);
    let st = if opts.shell_job { crate::tty::wait_foreground_job(pid, &m) } else { sys::waitpid(pid, libc::__WALL) }
        .map_err(|e| step_err(pid, "waiting for the restored process", e))?;
    Ok(if libc::WIFEXITED(st) { libc::WEXITSTATUS(st) as u8 } else { 128 + libc::WTERMSIG(st) as u8 })
}

/// An image of a shell job (its terminal was outside the tree) needs `--shell-job`, and
/// `--shell-job` needs stdin to be the restorer's controlling terminal.
fn check_shell_job(opts: &RestoreOptions, m: &Manifest) -> Result<()> {
    let ext = m.objects.iter().filter_map(|o| o.tty()).find(|t| t.external);
    if let Some(t) = ext.filter(|_| !opts.shell_job) {
        return Err(Error::RestoreRefused(format!(
            "the image is a shell job (dumped with --shell-job; its terminal {} was outside the tree): restore it with --shell-job, from a terminal",
            t.path
        )));
    }
    if opts.shell_job {
        crate::tty::shell_terminal().map_err(|e| Error::RestoreRefused(format!("--shell-job: {e}")))?;
    }
    Ok(())
}

/// The content of a pages file: the file mapped read-only, or a compressed one's
/// decompressed into memory.
enum Pages {
    Mapped(sys::Mapping),
    Loaded(Vec<u8>),
}

impl Pages {
    fn as_slice(&self) -> &[u8] {
        match self {
            Pages::Mapped(m) => m.as_slice(),
            Pages::Loaded(v) => v,
        }
    }
}

/// The pages files' contents (compressed ones: `stasis_image::compress`).
fn map_pages(opts: &RestoreOptions, m: &Manifest) -> Result<Vec<Pages>> {
    let compressed = m.required_features.iter().any(|f| f == stasis_image::FEATURE_PAGES_LZ4);
    let mut maps = Vec::new();
    for (k, sh) in m.end.shards.iter().enumerate() {
        let path = opts.dir.join(stasis_image::pages_file_name(k as u32));
        if compressed {
            maps.push(Pages::Loaded(stasis_image::compress::load(&path, sh.size, sh.stored_size)?));
            continue;
        }
        let f = File::open(&path).map_err(crate::error::path_err(path.display().to_string()))?;
        maps.push(Pages::Mapped(sys::Mapping::map_file(&f, sh.size as usize, false).map_err(crate::error::path_err(path.display().to_string()))?));
    }
    Ok(maps)
}

/// The files that mappings and fds need are still the ones dumped (size, mtime, content
/// hash of mapped executables).
fn check_files(opts: &RestoreOptions, m: &Manifest) -> Result<()> {
    // Each mapped file once, however many VMAs and processes map it (hashing the same
    // executable for every VMA of every process of a tree costs seconds); each opened
    // path once, however many fds and processes hold it. Every file that stops the
    // restore is named in one refusal (not one per attempt), every warning said once.
    let mut checked = std::collections::HashSet::new();
    let mut paths = std::collections::HashSet::new();
    let mut refused: Vec<String> = Vec::new();
    // said only if nothing stops the restore
    let mut warnings: Vec<String> = Vec::new();
    // a refusal joins the others; any other error ends the check at once
    fn refuse_file(refused: &mut Vec<String>, e: Error) -> Result<()> {
        match e {
            Error::RestoreRefused(why) => {
                refused.push(why);
                Ok(())
            }
            other => Err(other),
        }
    }
    // POSIX shared memory objects restore makes from the image: their fds open them then
    let made: std::collections::HashSet<&str> =
        m.objects.iter().filter_map(|o| o.mapped_file()).filter(|f| crate::shmfile::missing(f)).map(|f| f.path.as_str()).collect();
    for q in m.processes.iter().filter(|q| !q.zombie) {
        let mm = q.mm.clone().ok_or_else(|| refuse("image has no memory layout record"))?;
        if checked.insert(mm.exe_object) {
            if let Some(exe) = m.object(mm.exe_object).and_then(|o| o.mapped_file()) {
                if let Some(id) = &exe.identity {
                    if let Err(e) = files::check_identity(&exe.path, id, &format!("pid {}: executable", q.pid)) {
                        refuse_file(&mut refused, e)?;
                    }
                }
            }
        }
        for v in &q.vmas {
            if v.object_id != 0 && checked.insert(v.object_id) {
                if let Some(mf) = m.object(v.object_id).and_then(|o| o.mapped_file()).filter(|f| !crate::shmfile::missing(f)) {
                    if let Some(id) = &mf.identity {
                        let what = format!("pid {}: file mapped at {:#x}", q.pid, v.start);
                        match files::check_identity(&mf.path, id, &what) {
                            Err(Error::RestoreRefused(why)) => match changed_mapping(opts, m, v.object_id, mf, why) {
                                Ok(said) => warnings.push(said),
                                Err(e) => refuse_file(&mut refused, e)?,
                            },
                            other => other?,
                        }
                    }
                }
            }
        }
        for fd in &q.fds {
            if let Some(f) = m.object(fd.object_id).and_then(|o| o.file()) {
                // a cgroupfs file (memory.events, cgroup.procs...) is a kernel interface,
                // not content: reopened by path in its cgroup, which may be a new one; an
                // O_PATH fd reads nothing of its file: its kind is checked when opened
                if f.ghost_id == 0 && !f.in_proc && !crate::cgroup::in_cgroupfs(&f.path) && !crate::fdkinds::opath::is_opath(f.flags) && !made.contains(f.path.as_str()) {
                    if !paths.insert(f.path.as_str()) {
                        continue;
                    }
                    // the path names another kind of file now: never "changed" (no
                    // --allow-changed-files), always refused
                    if let Some(why) = files::other_type(&f.path, f.mode) {
                        refused.push(format!("pid {}: file of fd {}: {why}", q.pid, fd.fd));
                        continue;
                    }
                    // gone: an fd is opened again by its path, so no option can help
                    if std::fs::symlink_metadata(&f.path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
                        refused.push(format!(
                            "pid {}: file of fd {} {} no longer exists: the fd is opened again by its path, so no option \
                             restores it; put the file back (one the program removed after a --leave-running dump: dump again)",
                            q.pid, fd.fd, f.path
                        ));
                        continue;
                    }
                    if let Some(id) = &f.identity {
                        let r = files::check_identity(&f.path, id, &format!("pid {}: file of fd {}", q.pid, fd.fd));
                        match r {
                            Err(Error::RestoreRefused(why)) if opts.allow_changed_files => {
                                warnings.push(format!("{why} (restoring anyway: --allow-changed-files)"))
                            }
                            Err(Error::RestoreRefused(why)) => {
                                refused.push(format!("{why}; if that is expected (a log it kept writing), restore with --allow-changed-files"))
                            }
                            other => other?,
                        }
                    }
                }
            }
        }
    }
    match refused.len() {
        0 => {
            for w in warnings {
                warn!("{w}");
            }
            Ok(())
        }
        1 => Err(refuse(refused.remove(0))),
        n => Err(refuse(format!("{n} files stop the restore: {}", refused.join(" — and: ")))),
    }
}

/// A mapped file (object `id`, at `path`) changed since the dump (`why`). Mapped
/// private anywhere: refused — the pages the process never wrote are not in the image
/// and would come from the new content. Mapped shared everywhere (a JVM's hsperfdata,
/// a /dev/shm segment, sqlite's -shm, which another process, e.g. the original after a
/// --leave-running dump, kept writing): its content is the file's by nature, so
/// `--allow-changed-files` maps it as it is now (refused without it, naming the option);
/// still refused if the file became too short for a mapping (it would SIGBUS). Ok: the
/// warning to give if the restore goes on.
fn changed_mapping(opts: &RestoreOptions, m: &Manifest, id: u32, mf: &stasis_image::model::MappedFileObj, why: String) -> Result<String> {
    let path = mf.path.as_str();
    let vmas = || m.processes.iter().filter(|p| !p.zombie).flat_map(|p| p.vmas.iter().map(move |v| (p.pid, v))).filter(|(_, v)| v.object_id == id);
    if let Some((pid, v)) = vmas().find(|(_, v)| !v.shared) {
        return Err(refuse(format!(
            "{why}; pid {pid} maps it private at {:#x}, whose pages it never wrote are not in the image and would \
             come from the new content: put the file back as it was, or dump again",
            v.start
        )));
    }
    let Ok(md) = std::fs::metadata(path) else {
        // nothing to map, whatever the options: the content lives in the file only
        return Err(refuse(format!(
            "{why}; it is mapped shared, so its content is the file's and the image does not hold it: put \
             the file back as it was (a program may remove such a file when it exits or cleans up — a JVM \
             its hsperfdata, sqlite its -shm when the last connection closes: restore from a dump whose \
             original was killed, before anything else opens it)"
        )));
    };
    if !opts.allow_changed_files && mf.saved.is_some() {
        return Err(refuse(format!(
            "{why}; it is a POSIX shared memory object mapped shared, and the image holds its content at the \
             dump: remove the file (nothing else may use it) to have it made again with that content, or restore \
             with --allow-changed-files to map it as it is now"
        )));
    }
    if !opts.allow_changed_files {
        return Err(refuse(format!(
            "{why}; it is mapped shared, so its content is the file's: if it was written since the dump on \
             purpose (the original kept running), restore with --allow-changed-files to map it as it is now"
        )));
    }
    let len = md.len();
    let page = 4096u64;
    if let Some((pid, v)) = vmas().find(|(_, v)| v.pgoff.saturating_add(v.end - v.start) > len.div_ceil(page) * page) {
        return Err(refuse(format!(
            "{why}; it is now {len} bytes, too short for the mapping of pid {pid} at {:#x} (it would fault with SIGBUS)",
            v.start
        )));
    }
    Ok(format!("{why} (mapped shared: restoring it as it is now, --allow-changed-files)"))
}

/// How long a restore waits for dying processes to free the ids it needs.
const DYING_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Every pid and tid of the image is free. An id held by a task whose exit has begun
/// (the original, just killed by the dump, still tearing down — an inotify group waits
/// for an RCU grace period — or a zombie its parent reaps a moment later) is waited
/// for, up to DYING_GRACE in all: `stasis dump` does not wait for its SIGKILL to finish,
/// so a restore started right after it would otherwise meet its own original.
fn check_ids_free(m: &Manifest) -> Result<()> {
    let deadline = Instant::now() + DYING_GRACE;
    for q in &m.processes {
        let ids: Vec<i32> = match q.zombie || q.leader_exited {
            true => std::iter::once(q.pid).chain(q.threads.iter().map(|t| t.tid)).collect(),
            false => q.threads.iter().map(|t| t.tid).collect(),
        };
        for id in ids {
            let mut said = false;
            while let Some(h) = holder(id) {
                let dying = procfs::task_exit_state(id, id).is_some_and(|(_, exiting)| exiting);
                if dying && Instant::now() < deadline {
                    if !std::mem::replace(&mut said, true) {
                        debug!(id, "waiting for a dying process to free the id: {h}");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                let what = if id == q.pid { "pid" } else { "thread id" };
                let still = if dying { format!(" (still exiting, or a zombie not reaped, after {} s)", DYING_GRACE.as_secs()) } else { String::new() };
                return Err(refuse(format!("{what} {id} is in use by {h}{still}")));
            }
        }
    }
    Ok(())
}

/// Where the restorer's own vDSO is, and the trampoline + vDSO staging area: a hole free
/// in both our layout and every process's of the image.
pub(super) struct Layout {
    pub(super) self_vdso: Vec<(String, u64, u64)>,
    pub(super) tramp: u64,
    pub(super) stage: u64,
}

impl Layout {
    fn new(m: &Manifest) -> Result<Layout> {
        let p = &m.process;
        let self_maps = procfs::maps_self().map_err(|e| refuse(format!("reading /proc/self/maps: {e}")))?;
        let ours = vdso_family(&self_maps);
        // Each process's own vDSO: a child that exec'd another program has it elsewhere.
        let shape = |v: &[(String, u64, u64)]| -> Vec<(String, u64, i64)> {
            let base = v.first().map(|x| x.1).unwrap_or(0);
            v.iter().map(|(n, s, e)| (n.clone(), e - s, *s as i64 - base as i64)).collect()
        };
        for q in m.processes.iter().filter(|q| !q.zombie && !q.shares_vm) {
            if shape(&ours) != shape(&image_vdso(q)) {
                return Err(refuse(format!(
                    "pid {}: the vDSO layout of this kernel differs from the image's (kernel {} at dump time); restore on the same kernel",
                    q.pid, p.kernel
                )));
            }
        }
        let vspan = ours.last().map(|x| x.2).unwrap_or(0) - ours.first().map(|x| x.1).unwrap_or(0);
        let mut used: Vec<(u64, u64)> = self_maps.iter().map(|m| (m.start, m.end)).collect();
        used.extend(m.processes.iter().flat_map(|q| q.vmas.iter().map(|v| (v.start, v.end))));
        let tramp = find_hole(&mut used, TRAMP_LEN + vspan).ok_or_else(|| refuse("no address range free in both layouts"))?;
        let stage = tramp + TRAMP_LEN;
        debug!(tramp = format_args!("{tramp:#x}"), "trampoline");
        Ok(Layout { self_vdso: ours, tramp, stage })
    }
}

/// Reserves the premap area (`plan::Premap`) in a range free in our layout and every
/// process's, above the trampoline's. Without one, nothing is built before forking (the
/// restore works, the children's pages are just not shared with their parents').
fn reserve_premap(m: &Manifest, plan: &mut Plan, layout: &Layout) {
    let len = plan.rp.premap_len;
    if len == 0 {
        return;
    }
    let mut used: Vec<(u64, u64)> = procfs::maps_self().unwrap_or_default().iter().map(|x| (x.start, x.end)).collect();
    used.extend(m.processes.iter().flat_map(|q| q.vmas.iter().map(|v| (v.start, v.end))));
    let vspan = layout.self_vdso.last().map(|x| x.2).unwrap_or(0) - layout.self_vdso.first().map(|x| x.1).unwrap_or(0);
    used.push((layout.tramp, layout.stage + vspan));
    let got = find_hole(&mut used, len).ok_or_else(|| "no free address range".to_string()).and_then(|a| {
        sys::Reservation::at(a, len).map_err(|e| format!("reserving {len} bytes at {a:#x}: {e}"))
    });
    match got {
        Ok(r) => {
            debug!(addr = format_args!("{:#x}", r.addr()), len, "premap area");
            plan.premap = Some(r);
        }
        Err(why) => {
            warn!("private memory shared copy-on-write between processes will not be shared after the restore: {why}");
            for pp in &mut plan.rp.procs {
                pp.premaps.clear();
            }
        }
    }
}

/// Forks the root (through an intermediate parent with --detach or when the root's
/// session must be recreated), which forks the rest of the tree. Returns the handle that
/// kills everything on failure and the read end of the control pipe.
fn fork_tree(m: &Manifest, plan: &Plan, shards: &[&[u8]]) -> Result<(Child, OwnedFd)> {
    let pid = m.process.pid;
    let (ctl_r, ctl_w) = sys::pipe2(libc::O_CLOEXEC).map_err(|e| step_err(pid, "creating control pipe", e))?;
    let me = sys::getpid();
    let live: Vec<i32> = m.processes.iter().filter(|q| !q.zombie).map(|q| q.pid).collect();
    // what a failure kills: the processes and the group helpers (children of them)
    let kill_list: Vec<i32> = live
        .iter()
        .copied()
        .chain(plan.rp.procs.iter().flat_map(|p| [p.group_helper, p.session_helper]).filter(|g| *g != 0))
        .collect();
    // The root's own time namespace: ours for children from now on (the root, or the
    // intermediate parent that forks it, is created in it).
    if let Some(off) = ns::root_time_offsets(&m.processes) {
        if child::new_time_ns(&off) < 0 {
            return Err(step_err(pid, "creating the root's time namespace (unshare CLONE_NEWTIME, clock offsets)", std::io::Error::last_os_error()));
        }
    }
    let sh = plan.rp.session_helper;
    let ch = if plan.rp.middle {
        let (mid_r, mid_w) = sys::pipe2(libc::O_CLOEXEC).map_err(|e| step_err(pid, "creating control pipe", e))?;
        let set_tid: &[i32] = if sh != 0 { &[sh] } else { &[] };
        let mpid = sys::clone_fork(set_tid, 0, libc::SIGCHLD).map_err(|e| {
            if sh != 0 {
                step_err(pid, &format!("recreating session {sh} (its leader had exited): clone3 with pid {sh}"), e)
            } else {
                step_err(pid, "fork", e)
            }
        })?;
        if mpid == 0 {
            // intermediate parent: lead the root's session if its leader is gone, create
            // the process, then wait for our orders.
            drop(mid_w);
            let my = sys::getpid();
            if sh != 0 && child::setsid() < 0 {
                child_fail(b"setsid (recreating the session of an exited leader)", pid, ctl_w.as_raw_fd());
            }
            let c = match sys::clone_fork(&plan.rp.procs[0].set_tid, plan.rp.procs[0].clone_flags, libc::SIGCHLD) {
                Ok(0) => child_main(plan, shards, ctl_w.as_raw_fd(), my),
                Ok(c) => c,
                Err(e) => {
                    let mut msg = vec![2u8];
                    msg.extend_from_slice(&pid.to_le_bytes());
                    msg.extend_from_slice(&e.raw_os_error().unwrap_or(0).to_le_bytes());
                    send_report(ctl_w.as_raw_fd(), &msg);
                    child::exit(1)
                }
            };
            let mut b = [0u8; 1];
            let n = sys::read_fd(mid_r.as_fd(), &mut b).unwrap_or(0);
            if n == 0 || b[0] == b'k' {
                let _ = sys::kill(c, libc::SIGKILL);
                let _ = sys::waitpid(c, libc::__WALL);
            }
            child::exit(0)
        }
        drop(mid_r);
        Child { pid, pids: kill_list.clone(), middle: Some((mid_w, mpid)), traced: Vec::new(), released: false }
    } else {
        match sys::clone_fork(&plan.rp.procs[0].set_tid, plan.rp.procs[0].clone_flags, libc::SIGCHLD) {
            Ok(0) => child_main(plan, shards, ctl_w.as_raw_fd(), me),
            Ok(c) => Child { pid: c, pids: kill_list.clone(), middle: None, traced: Vec::new(), released: false },
            Err(e) => return Err(pid_taken_or(pid, e)),
        }
    };
    drop(ctl_w);
    Ok((ch, ctl_r))
}

/// Every live process's report: its carried fds' numbers (index = carry slot), by pid.
/// How long the restorer waits for the next report of the new processes.
const REPORT_QUIET: std::time::Duration = std::time::Duration::from_secs(20);

fn wait_reports(m: &Manifest, plan: &Plan, ch: &mut Child, ctl_r: &OwnedFd) -> Result<HashMap<i32, Vec<i32>>> {
    let pid = m.process.pid;
    let live = m.processes.iter().filter(|q| !q.zombie).count();
    let mut tmp_by_pid: HashMap<i32, Vec<i32>> = HashMap::new();
    let mut reader = ReportReader::default();
    while tmp_by_pid.len() < live {
        // A new process killed before it reported (its siblings still hold the pipe)
        // would make us wait for ever: no report for REPORT_QUIET is a failure.
        let Some(buf) = reader.next_within(ctl_r, REPORT_QUIET) else {
            let missing: Vec<String> =
                m.processes.iter().filter(|q| !q.zombie && !tmp_by_pid.contains_key(&q.pid)).map(|q| q.pid.to_string()).collect();
            return Err(Error::RestoreStep {
                pid,
                step: "creating the processes".into(),
                why: format!("no report from the new processes {} within {} s", missing.join(", "), REPORT_QUIET.as_secs()),
            });
        };
        let n = buf.len();
        if n == 0 {
            if tmp_by_pid.is_empty() && ch.middle.is_some() {
                ch.released = true; // nothing to kill if the root never existed
                if let Some((w, mpid)) = ch.middle.take() {
                    drop(w);
                    let _ = sys::waitpid(mpid, 0);
                }
            }
            return Err(Error::RestoreStep { pid, step: "creating the processes".into(), why: "a new process died during setup".into() });
        }
        if n < 9 {
            return Err(Error::RestoreStep { pid, step: "creating the processes".into(), why: "garbled report from a new process".into() });
        }
        let who = i32::from_le_bytes(buf[1..5].try_into().unwrap());
        match buf[0] {
            0 => {}
            2 => {
                ch.released = true;
                if let Some((w, mpid)) = ch.middle.take() {
                    drop(w);
                    let _ = sys::waitpid(mpid, 0);
                }
                let e = i32::from_le_bytes(buf[5..9].try_into().unwrap());
                return Err(pid_taken_or(who, std::io::Error::from_raw_os_error(e)));
            }
            _ => {
                let e = i32::from_le_bytes(buf[5..9].try_into().unwrap());
                let what = String::from_utf8_lossy(&buf[9..n]).to_string();
                let why = std::io::Error::from_raw_os_error(e).to_string();
                return Err(Error::RestoreStep { pid, step: format!("{what} (pid {who})"), why });
            }
        }
        let words: Vec<i32> = buf[5..n].chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap())).collect();
        if words.len() != plan.carry.len() + 1 {
            return Err(Error::RestoreStep { pid, step: "creating the processes".into(), why: format!("short report from pid {who}") });
        }
        // words[0] is the child's control fd (closed with the other carried fds)
        tmp_by_pid.insert(who, words[1..].to_vec());
    }
    Ok(tmp_by_pid)
}

/// Builds every process, concurrently, by a few tracer threads (a ptrace tracee belongs
/// to the thread that seized it, so each thread keeps its processes to the end; the
/// plan's units keep processes sharing an fd table or address space together), then,
/// once all are built, marks destroyed SysV segments, reaps the helpers and sets every
/// process's registers. On failure everything is killed (dropping `ch`).
fn drive(
    m: &Manifest,
    plan: &Plan,
    ch: Child,
    tmp_by_pid: &HashMap<i32, Vec<i32>>,
    shards: &[&[u8]],
    layout: &Layout,
    sysv: &mut ipc::Restored,
) -> Result<Child> {
    let pid = m.process.pid;
    let (tramp, stage, ours) = (layout.tramp, layout.stage, &layout.self_vdso);
    // epoll items, per process (an instance shared by fork is filled once)
    let mut epoll_done = Vec::new();
    let epoll_adds: Vec<Vec<crate::fdkinds::epoll::Add>> =
        m.processes.iter().map(|q| crate::fdkinds::epoll::adds(m, q, &mut epoll_done)).collect();
    let units = plan.rp.units.clone();
    let nworkers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4).min(units.len());
    let mut lists: Vec<Vec<usize>> = vec![Vec::new(); nworkers];
    for (k, u) in units.into_iter().enumerate() {
        lists[k % nworkers].extend(u);
    }
    let chm = std::sync::Mutex::new(ch);
    let failed: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    let sysvm = std::sync::Mutex::new(sysv);
    let barrier = std::sync::Barrier::new(nworkers);
    let fail = |e: Error| {
        failed.lock().unwrap().get_or_insert(e);
    };
    let ok = || failed.lock().unwrap().is_none();
    std::thread::scope(|s| {
        for (w, list) in lists.iter().enumerate() {
            let (chm, barrier, tmp_by_pid) = (&chm, &barrier, &tmp_by_pid);
            let (epoll_adds, shards) = (&epoll_adds, &shards);
            let (fail, ok, sysvm) = (&fail, &ok, &sysvm);
            s.spawn(move || {
                let mut mine = Vec::new();
                for &i in list {
                    if !ok() {
                        break;
                    }
                    let q = &m.processes[i];
                    let mut b = Builder {
                        m,
                        p: q,
                        pp: &plan.rp.procs[i],
                        epoll: &epoll_adds[i],
                        pid: q.pid,
                        plan,
                        tmp_fds: tmp_by_pid.get(&q.pid).cloned().unwrap_or_default(),
                        shards,
                        tramp,
                        stage,
                        self_vdso: ours,
                        threads: Vec::new(),
                    };
                    match b.run(chm) {
                        Ok(()) => {
                            mine.push(b);
                        }
                        Err(e) => fail(e),
                    }
                }
                barrier.wait();
                // every segment is attached again: mark the destroyed ones; every memfd
                // is mapped: its last seals
                if w == 0 && ok() {
                    if let Err(e) = sysvm.lock().unwrap().finish(pid) {
                        fail(e);
                    }
                    for (fd, seals, name) in &plan.late_seals {
                        if let Err(e) = sys::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, *seals as i64) {
                            let why = format!("sealing memfd {name} ({seals:#x}) once it is mapped: {e}");
                            fail(Error::RestoreStep { pid, step: "memfd seals".into(), why });
                        }
                    }
                }
                barrier.wait();
                // Every member joined its group: the helpers that held dead leaders' groups go.
                for b in mine.iter_mut().filter(|_| ok()) {
                    if let Err(e) = b.reap_helpers(chm) {
                        fail(e);
                    }
                }
                barrier.wait();
                // Every process is built: main threads that had exited exit again
                // (ProcPlan::exit_steps), before any finish step of any process.
                for b in mine.iter_mut().filter(|_| ok()) {
                    if let Err(e) = b.exit_leader_again(chm) {
                        fail(e);
                    }
                }
                barrier.wait();
                // Stopped processes go first: detached, they enter their group stop,
                // whose report their parents (still held) may have to take again.
                for b in mine.iter_mut().filter(|b| ok() && b.stopped()) {
                    if let Err(e) = b.finish(chm) {
                        fail(e);
                    }
                }
                barrier.wait();
                for b in mine.iter_mut().filter(|b| ok() && !b.stopped()) {
                    if let Err(e) = b.take_collected_stops().and_then(|_| b.finish(chm)) {
                        fail(e);
                    }
                }
                // Leaving this thread detaches what it still traces (PTRACE_O_EXITKILL
                // kills those on failure); on success everything is detached already.
            });
        }
    });
    let ch = chm.into_inner().unwrap();
    if let Some(e) = failed.into_inner().unwrap() {
        drop(ch); // kills and reaps
        return Err(e);
    }
    Ok(ch)
}
