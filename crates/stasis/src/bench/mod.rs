//! `stasis bench`: dump/restore throughput of a memory-filled workload,
//! set against machine limits measured in the same run; writes BENCHMARKS.md.
//!
//! Per size and run:
//! 1. start `stasis __workload bench-fill SIZE STATUS_DIR` (anonymous memory
//!    filled with `offset ^ 0x5a5a..`, then it waits for a `go` file);
//! 2. measure the machine limits: process_vm_readv of the workload's memory,
//!    buffered sequential write of SIZE bytes next to the image, first touch
//!    of SIZE bytes of fresh anonymous memory;
//! 3. `stasis dump -t PID -D IMG` (wall time; `IMG/stats.json` for the frozen
//!    time), reap the killed original;
//! 4. `stasis restore -D IMG -d --pidfile F` (wall time, image in page cache),
//!    create `go`, require the restored workload to report PASS, reap it;
//! 5. remove the run's directory (image included).
//!
//! The bench is a child subreaper so every process it causes (the workload,
//! the restored workload, helpers of dump/restore) ends up reaped by it.

mod limits;
mod report;
mod tree;
mod workload;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use stasis_sys::sys::{self, AnonBuf};

const PAGE: usize = 4096;
/// Word at byte offset `o` of the workload's region holds `o ^ PATTERN`.
const PATTERN: u64 = 0x5a5a_5a5a_5a5a_5a5a;
const READV_CHUNK: usize = 64 << 20;
const WRITE_CHUNK: usize = 8 << 20;
const POLL: Duration = Duration::from_millis(10);
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const TARGET_SIZE: u64 = 4 * GIB;
const TARGET_GBPS: f64 = 1.5;
const TARGET_LINE: &str =
    "target: dump and restore each ≥ 1.5 GB/s at 4 GiB (CRIU 4.2 on this machine: ~1.1 GB/s)";

// Files in the workload's status directory.
const READY_FILE: &str = "ready";
const GO_FILE: &str = "go";
const RESULT_FILE: &str = "result";
const LOG_FILE: &str = "workload.log";

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Workload sizes, comma separated, binary units (256M = 256 MiB, 4G = 4 GiB).
    #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "256M,1G,4G")]
    sizes: Vec<u64>,
    /// Where to put work files and images; a fresh subdirectory is created
    /// there and removed at the end. Use a disk, not tmpfs. [default: /var/tmp]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Report file to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Runs per size; the report shows each run and the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Only measure the machine limits (the workload is still started and
    /// verified, but not dumped or restored).
    #[arg(long)]
    limits_only: bool,
    /// Process trees, comma separated, PROCESSESxSIZE: the root and PROCESSES-1
    /// children, each with SIZE bytes of touched memory.
    #[arg(long, value_delimiter = ',', value_parser = parse_tree, default_value = "1x1M,10x1M,100x1M,8x512M")]
    trees: Vec<TreeShape>,
    /// Only the process trees (no single-process sizes).
    #[arg(long, conflicts_with_all = ["no_trees", "limits_only"])]
    tree_only: bool,
    /// No process trees.
    #[arg(long)]
    no_trees: bool,
}

use limits::*;
use report::*;
pub use tree::TreeShape;
use tree::*;
pub use workload::{workload_fill, workload_tree};
use workload::*;

// ---------------------------------------------------------------------------
// Bench driver
// ---------------------------------------------------------------------------

/// Limits are GB/s; `cr` is None with --limits-only.
struct Run {
    readv: f64,
    write: f64,
    touch: f64,
    cr: Option<CrRun>,
}

struct CrRun {
    dump_s: f64,
    frozen_s: f64,
    /// stats.json was absent: frozen_s is the dump's wall time.
    frozen_is_wall: bool,
    engine_dump_s: Option<f64>,
    pages_bytes: Option<u64>,
    restore_s: f64,
}

#[derive(serde::Deserialize)]
struct DumpStats {
    frozen_us: u64,
    dump_us: u64,
    pages_bytes: u64,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    sys::set_child_subreaper().context("prctl(PR_SET_CHILD_SUBREAPER)")?;
    let sizes: &[u64] = if args.tree_only { &[] } else { &args.sizes };
    let trees: &[TreeShape] = if args.no_trees || args.limits_only { &[] } else { &args.trees };
    for &size in sizes {
        if size == 0 || !size.is_multiple_of(PAGE as u64) {
            bail!("size {size} is not a non-zero multiple of {PAGE} bytes");
        }
    }
    let exe = std::env::current_exe().context("locate the stasis binary")?;
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    fs::create_dir_all(&base).with_context(|| format!("create {}", base.display()))?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let work = base.join(format!("stasis-bench.{}.{}", std::process::id(), nanos));
    fs::create_dir(&work).with_context(|| format!("create {}", work.display()))?;
    let work = RemoveOnDrop(work.canonicalize().unwrap_or(work));

    let machine = Machine::probe(&work.0);
    if let Some(avail) = machine.mem_available {
        let max = sizes.iter().copied().chain(trees.iter().map(TreeShape::total)).max().unwrap_or(0);
        let need = 2 * max + GIB;
        if avail < need {
            bail!(
                "not enough memory for a {} workload: need about {} (workload + first-touch \
                 buffer or restored copy), MemAvailable is {}",
                size_label(max),
                size_label(need),
                size_label(avail)
            );
        }
    }
    eprintln!(
        "bench: work directory {} ({})",
        work.0.display(),
        machine.fs
    );

    let mut results: Vec<(u64, Vec<Run>)> = Vec::new();
    for &size in sizes {
        let mut runs = Vec::new();
        for r in 1..=args.runs {
            eprintln!("bench: {} run {r}/{}", size_label(size), args.runs);
            let res = one_run(&exe, &work.0, size, r, args.limits_only);
            reap_strays();
            let run = res.with_context(|| format!("{} run {r}", size_label(size)))?;
            eprintln!("bench:   {}", run_summary(size, &run));
            runs.push(run);
        }
        results.push((size, runs));
    }

    let mut tree_results: Vec<(TreeShape, Vec<TreeRun>)> = Vec::new();
    for &shape in trees {
        let mut runs = Vec::new();
        for r in 1..=args.runs {
            eprintln!("bench: tree of {} run {r}/{}", shape.label(), args.runs);
            let res = one_tree_run(&exe, &work.0, shape, r);
            reap_strays();
            runs.push(res.with_context(|| format!("tree of {} run {r}", shape.label()))?);
        }
        tree_results.push((shape, runs));
    }

    let (report, tables) = render(args, &machine, &results, &tree_results);
    print!("{tables}");
    fs::write(&args.out, report).with_context(|| format!("write {}", args.out.display()))?;
    eprintln!("bench: wrote {}", args.out.display());
    Ok(())
}

fn one_run(exe: &Path, work: &Path, size: u64, r: u32, limits_only: bool) -> Result<Run> {
    // Declared first, dropped last: processes are gone before the directory.
    let run_dir = work.join(format!("{}-run{r}", size_label(size).replace(' ', "")));
    fs::create_dir(&run_dir).with_context(|| format!("create {}", run_dir.display()))?;
    let run_dir = RemoveOnDrop(run_dir);
    let status = run_dir.0.join("status");
    let img = run_dir.0.join("img");
    fs::create_dir(&status)?;
    let len = size as usize;

    let mut wl = Workload::start(exe, &status, size)?;
    let addr = wl.wait_ready(ready_timeout(size))?;
    let pid = wl.pid();

    let readv = gbps(size, measure_readv(pid, addr, len)?);
    quiesce();
    let write = gbps(size, measure_seq_write(&run_dir.0, len)?);
    let touch = gbps(size, measure_first_touch(len)?);
    eprintln!(
        "bench:   limits: process_vm_readv {readv:.2} GB/s, seq write {write:.2} GB/s, \
         first touch {touch:.2} GB/s"
    );

    if limits_only {
        go_and_check(&status, size, |t| wl.wait_exit(t).map(Some))?;
        return Ok(Run {
            readv,
            write,
            touch,
            cr: None,
        });
    }

    // Dump.
    quiesce();
    let (dump_s, frozen_s, frozen_is_wall, engine_dump_s, pages_bytes) = timed_dump(exe, &run_dir.0, &img, pid)?;
    let orig = wl.wait_exit(Duration::from_secs(10)).with_context(|| {
        format!("the dumped workload (pid {pid}) did not exit after `stasis dump` returned")
    })?;
    if orig.signal() != Some(libc::SIGKILL) {
        bail!(
            "the dumped workload (pid {pid}) {}, expected killed by SIGKILL",
            describe(orig)
        );
    }
    eprintln!(
        "bench:   dump {dump_s:.3} s ({:.2} GB/s), frozen {frozen_s:.3} s{}",
        gbps(size, dump_s),
        if frozen_is_wall {
            " (no stats.json: wall time)"
        } else {
            ""
        }
    );

    // Restore; the image is still in page cache.
    let (restore_s, rpid) = timed_restore(exe, &run_dir.0, &img)?;
    let mut restored = Restored {
        pid: rpid,
        reaped: false,
    };
    go_and_check(&status, size, |t| restored.wait_exit(t)).with_context(|| {
        format!(
            "restored workload (pid {rpid}){}",
            log_tail(&status.join(LOG_FILE))
        )
    })?;

    Ok(Run {
        readv,
        write,
        touch,
        cr: Some(CrRun {
            dump_s,
            frozen_s,
            frozen_is_wall,
            engine_dump_s,
            pages_bytes,
            restore_s,
        }),
    })
}

/// `stasis dump -t PID -D IMG`, timed: (wall s, frozen s, frozen is the wall time,
/// engine dump s, image page bytes) from stats.json.
fn timed_dump(exe: &Path, run_dir: &Path, img: &Path, pid: i32) -> Result<(f64, f64, bool, Option<f64>, Option<u64>)> {
    let dump_log = run_dir.join("dump.log");
    let cmd = format!("stasis dump -t {pid} -D {}", img.display());
    let t0 = Instant::now();
    let st = Command::new(exe)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&img)
        .stdin(Stdio::null())
        .stdout(log_file(&dump_log)?)
        .stderr(log_file(&dump_log)?)
        .status()
        .with_context(|| format!("run `{cmd}`"))?;
    let dump_s = t0.elapsed().as_secs_f64();
    if !st.success() {
        bail!(
            "dump failed: `{cmd}` {} after {dump_s:.3} s{}",
            describe(st),
            log_tail(&dump_log)
        );
    }
    let (frozen_s, frozen_is_wall, engine_dump_s, pages_bytes) =
        match fs::read(img.join("stats.json")) {
            Ok(bytes) => {
                let s: DumpStats = serde_json::from_slice(&bytes)
                    .with_context(|| format!("parse {}", img.join("stats.json").display()))?;
                (
                    s.frozen_us as f64 / 1e6,
                    false,
                    Some(s.dump_us as f64 / 1e6),
                    Some(s.pages_bytes),
                )
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (dump_s, true, None, None),
            Err(e) => return Err(e).context("read stats.json"),
        };

    Ok((dump_s, frozen_s, frozen_is_wall, engine_dump_s, pages_bytes))
}

/// `stasis restore -D IMG -d --pidfile F`, timed: (wall s, restored pid).
fn timed_restore(exe: &Path, run_dir: &Path, img: &Path) -> Result<(f64, i32)> {
    let restore_log = run_dir.join("restore.log");
    let pidfile = run_dir.join("restored.pid");
    let cmd = format!(
        "stasis restore -D {} -d --pidfile {}",
        img.display(),
        pidfile.display()
    );
    let t0 = Instant::now();
    let st = Command::new(exe)
        .arg("restore")
        .arg("-D")
        .arg(&img)
        .arg("-d")
        .arg("--pidfile")
        .arg(&pidfile)
        .stdin(Stdio::null())
        .stdout(log_file(&restore_log)?)
        .stderr(log_file(&restore_log)?)
        .status()
        .with_context(|| format!("run `{cmd}`"))?;
    let restore_s = t0.elapsed().as_secs_f64();
    if !st.success() {
        bail!(
            "restore failed: `{cmd}` {} after {restore_s:.3} s{}",
            describe(st),
            log_tail(&restore_log)
        );
    }
    let text = fs::read_to_string(&pidfile)
        .with_context(|| format!("`{cmd}` succeeded but left no pidfile"))?;
    let rpid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("bad pidfile contents {text:?}"))?;
    Ok((restore_s, rpid))
}

