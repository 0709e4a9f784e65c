//! `stasis dump`: freeze → collect → write pages → write manifest → kill or resume.
//!
//! The process is only touched through ptrace; every path out of this function (success
//! or error) either kills it (dump done, no --leave-running) or puts back its registers
//! and signal masks and unmaps the scratch page before detaching. On error no
//! manifest.img is written, so the directory never holds an image that looks complete.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use stasis_image::model::*;
use stasis_image::{rec, ManifestWriter, MANIFEST, PAGES};
use tracing::{info, warn};

use crate::error::{path_err, Ctx, Error, Result};
use crate::freeze::Frozen;
use crate::objects::ObjectTable;
use crate::parasite::Parasite;
use crate::{files, mem, procfs, task};

pub struct DumpOptions {
    pub pid: i32,
    pub dir: PathBuf,
    pub leave_running: bool,
}

#[derive(Debug, Default, Clone)]
pub struct DumpStats {
    pub freeze_us: u64,
    pub frozen_us: u64,
    pub dump_us: u64,
    pub pages_bytes: u64,
    pub pages: u64,
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
    if state.starts_with('Z') || state.starts_with('X') {
        return Err(Error::Refused { pid, why: "is a zombie (it has exited and waits to be reaped)".into() });
    }
    if let Some(t) = procfs::status_field(&st, "TracerPid").and_then(|v| v.parse::<i32>().ok()) {
        if t != 0 {
            let comm = procfs::read(t, "comm").unwrap_or_default();
            return Err(Error::Refused {
                pid,
                why: format!("is being traced by pid {t} ({}); detach that tracer first", comm.trim()),
            });
        }
    }
    let mut children = Vec::new();
    for tid in procfs::tids(pid).ctx(pid, || "listing threads".into())? {
        let c = procfs::read(pid, &format!("task/{tid}/children")).unwrap_or_default();
        children.extend(c.split_whitespace().map(str::to_string));
    }
    if !children.is_empty() {
        return Err(Error::Unsupported {
            pid,
            what: format!("it has child processes ({}); process trees", children.join(", ")),
        });
    }
    for ns in ["pid", "mnt", "net", "ipc", "uts", "user", "cgroup", "time"] {
        let theirs = procfs::readlink(&format!("/proc/{pid}/ns/{ns}")).ok();
        let ours = procfs::readlink(&format!("/proc/self/ns/{ns}")).ok();
        if theirs != ours {
            return Err(Error::Unsupported { pid, what: format!("it lives in another {ns} namespace") });
        }
    }
    Ok(())
}

fn prepare_dir(pid: i32, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(path_err(dir.display().to_string()))?;
    if dir.join(MANIFEST).exists() {
        return Err(Error::Refused {
            pid,
            why: format!("{} already holds an image; use an empty directory", dir.display()),
        });
    }
    Ok(())
}

fn cleanup_dir(dir: &Path) {
    for f in [PAGES, ".manifest.img.tmp", "stats.json"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    for k in 1..64 {
        let _ = std::fs::remove_file(dir.join(stasis_image::pages_file_name(k)));
    }
}

struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(total: u64, what: &str) -> Progress {
        if !std::io::stderr().is_terminal() || total < (64 << 20) {
            return Progress(None);
        }
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_message(what.to_string());
        Progress(Some(pb))
    }
    fn set(&self, n: u64) {
        if let Some(p) = &self.0 {
            p.set_position(n);
        }
    }
    fn finish(&self) {
        if let Some(p) = &self.0 {
            p.finish_and_clear();
        }
    }
}

/// Everything collected while the process is frozen (minus page contents).
fn collect_task_state(fz: &Frozen, vdso: (u64, u64)) -> Result<Process> {
    let pid = fz.pid;
    let par = Parasite::start(fz, vdso)?;
    let r = (|| -> Result<Process> {
        let threads = task::dump_threads(fz, &par)?;
        let sigactions = task::dump_sigactions(fz, &par)?;
        let itimers = task::dump_itimers(fz, &par)?;
        let posix_timers = task::dump_posix_timers(fz, &par)?;
        let creds = task::dump_creds(fz, &par)?;
        let attrs = task::dump_attrs(fz, &par)?;
        let brk = par.call(pid, libc::SYS_brk, &[0])?;
        let thp = par.call(pid, libc::SYS_prctl, &[libc::PR_GET_THP_DISABLE as u64, 0, 0, 0, 0])?;
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
        };
        Ok(Process {
            pid,
            comm: procfs::read(pid, "comm").unwrap_or_default().trim_end().to_string(),
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
        })
    })();
    let stopped = par.stop();
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

pub fn dump(opts: &DumpOptions) -> Result<DumpStats> {
    let pid = opts.pid;
    let t0 = Instant::now();
    precheck(pid)?;
    prepare_dir(pid, &opts.dir)?;
    let vdso = vdso_range(pid)?;
    let stopped = procfs::status(pid)
        .ok()
        .and_then(|st| procfs::status_field(&st, "State").map(|s| s.starts_with('T')))
        .unwrap_or(false);
    let fz = Frozen::seize(pid)?;
    let t_frozen = Instant::now();
    info!(pid, threads = fz.threads.len(), "frozen");
    let r = write_image(&fz, &opts.dir, vdso, stopped);
    let mut stats = match r {
        Ok(s) => s,
        Err(e) => {
            cleanup_dir(&opts.dir);
            crate::fdkinds::inet::release(true);
            if let Err(e2) = fz.resume() {
                warn!("resuming pid {pid} after a failed dump: {e2}");
            }
            return Err(e);
        }
    };
    if opts.leave_running {
        crate::fdkinds::inet::release(true);
        fz.resume()?;
    } else {
        fz.kill();
        // closed in repair mode after the process is gone: the peer sees nothing
        crate::fdkinds::inet::release(false);
    }
    let t_end = Instant::now();
    stats.freeze_us = (t_frozen - t0).as_micros() as u64;
    stats.frozen_us = (t_end - t_frozen).as_micros() as u64;
    stats.dump_us = (t_end - t0).as_micros() as u64;
    let json = format!(
        "{{\"pid\": {pid}, \"freeze_us\": {}, \"frozen_us\": {}, \"dump_us\": {}, \"pages\": {}, \"pages_bytes\": {}, \"leave_running\": {}}}\n",
        stats.freeze_us, stats.frozen_us, stats.dump_us, stats.pages, stats.pages_bytes, opts.leave_running
    );
    if let Err(e) = std::fs::write(opts.dir.join("stats.json"), json) {
        warn!("writing stats.json: {e}");
    }
    info!(pid, ms = stats.dump_us / 1000, bytes = stats.pages_bytes, "dump done");
    Ok(stats)
}

fn write_image(fz: &Frozen, dir: &Path, vdso: (u64, u64), stopped: bool) -> Result<DumpStats> {
    let pid = fz.pid;
    let mut process = collect_task_state(fz, vdso)?;
    if let Some(a) = process.attrs.as_mut() {
        a.stopped = stopped;
    }
    let mut objs = ObjectTable::default();
    let col = mem::collect(pid, &mut objs)?;
    (process.fds, process.locks) = files::dump_fds(pid, &mut objs)?;
    let exe_path = procfs::readlink(&format!("/proc/{pid}/exe")).ctx(pid, || "reading /proc/PID/exe".into())?;
    if exe_path.ends_with(" (deleted)") {
        return Err(Error::Unsupported { pid, what: format!("its executable {exe_path} was deleted") });
    }
    let exe_id = files::mapped_file(pid, &mut objs, &format!("/proc/{pid}/exe"), &exe_path, false, true)?;
    if let Some(mm) = process.mm.as_mut() {
        mm.exe_object = exe_id;
    }
    process.vmas = col.vmas.clone();
    process.dumped_at_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    process.kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();

    let total: u64 = col.jobs.iter().map(|j| j.count * 4096).sum();
    let pb = Progress::new(total, "dumping memory");
    let out = mem::write_pages(pid, dir, &col, &|n| pb.set(n))?;
    let (index, pstats) = (out.index, out.stats);
    pb.finish();

    let mut w = ManifestWriter::new();
    w.record(rec::PROCESS, &process);
    for o in &objs.objects {
        w.record(rec::OBJECT, o);
    }
    // Page index in records of at most 64k runs, so no record grows huge.
    for chunk in index.runs.chunks(65536) {
        w.record(rec::PAGE_INDEX, &PageIndex { runs: chunk.to_vec() });
    }
    w.finish(dir, &out.shards)?;
    Ok(DumpStats { pages: pstats.pages, pages_bytes: pstats.bytes, ..Default::default() })
}
