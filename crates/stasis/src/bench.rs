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

// ---------------------------------------------------------------------------
// Workload: `stasis __workload bench-fill SIZE_BYTES STATUS_DIR`
// ---------------------------------------------------------------------------

/// Entry point of the hidden workload. Accepts its arguments with or without
/// the leading `bench-fill` word.
pub fn workload_fill(args: &[String]) -> Result<ExitCode> {
    let args = match args.first().map(String::as_str) {
        Some("bench-fill") => &args[1..],
        _ => args,
    };
    let [size, dir] = args else {
        bail!("usage: stasis __workload bench-fill SIZE_BYTES STATUS_DIR");
    };
    let size: usize = size
        .parse()
        .with_context(|| format!("bench-fill: bad size {size:?}"))?;
    if size == 0 || !size.is_multiple_of(PAGE) {
        bail!("bench-fill: size {size} must be a non-zero multiple of {PAGE}");
    }
    let dir = PathBuf::from(dir);
    detach_from_caller();

    let mut region = AnonBuf::new(size).context("bench-fill: mmap")?;
    fill(region.as_mut_words());
    write_atomic(
        &dir.join(READY_FILE),
        &format!(
            "READY addr=0x{:x} size={} pid={}\n",
            region.addr(),
            size,
            std::process::id()
        ),
    )?;

    let go = dir.join(GO_FILE);
    while !go.exists() {
        nap(POLL);
    }

    std::hint::black_box(region.addr());
    let verdict = verify(region.as_words());
    write_atomic(&dir.join(RESULT_FILE), &format!("{verdict}\n"))?;
    Ok(if verdict == "PASS" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// New session (no controlling terminal, sid/pgid inside the dumped tree) and
/// no descriptors beyond stdin/stdout/stderr, so the workload holds nothing
/// stasis cannot dump.
fn detach_from_caller() {
    // Failure (already a group leader) is harmless here.
    sys::child::setsid();
    // Closes descriptors >= 3; nothing in this process owns one yet (std opens
    // none before main), so no live Rust handle is invalidated.
    sys::child::close_range(3, u32::MAX);
}

fn fill(words: &mut [u64]) {
    fill_salted(words, 0)
}

/// Word i holds `(i * 8) ^ PATTERN ^ salt`.
fn fill_salted(words: &mut [u64], salt: u64) {
    for (i, w) in words.iter_mut().enumerate() {
        *w = ((i * 8) as u64) ^ PATTERN ^ salt;
    }
}

fn verify(words: &[u64]) -> String {
    verify_salted(words, 0)
}

/// "PASS" or "FAIL first_bad_offset=0x.. expected=0x.. got=0x.. bad_words=N".
fn verify_salted(words: &[u64], salt: u64) -> String {
    const WPP: usize = PAGE / 8;
    let mut first: Option<(usize, u64)> = None;
    let mut bad = 0u64;
    for (p, page) in words.chunks(WPP).enumerate() {
        let base = p * WPP;
        let diff = page.iter().enumerate().fold(0u64, |acc, (j, &w)| {
            acc | (w ^ (((base + j) * 8) as u64 ^ PATTERN ^ salt))
        });
        if diff == 0 {
            continue;
        }
        for (j, &w) in page.iter().enumerate() {
            let want = ((base + j) * 8) as u64 ^ PATTERN ^ salt;
            if w != want {
                bad += 1;
                first.get_or_insert(((base + j) * 8, w));
            }
        }
    }
    match first {
        None => "PASS".to_string(),
        Some((off, got)) => format!(
            "FAIL first_bad_offset=0x{off:x} expected=0x{:016x} got=0x{got:016x} bad_words={bad}",
            off as u64 ^ PATTERN ^ salt
        ),
    }
}

/// Sleep with nanosleep; an interruption (EINTR, e.g. across a checkpoint)
/// just ends the nap early, the caller polls again.
fn nap(d: Duration) {
    let _ = sys::nanosleep(d);
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    // Per process: the processes of a tree write their files in one directory at once.
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Tree workload: `stasis __workload bench-tree N SIZE_BYTES STATUS_DIR`
// ---------------------------------------------------------------------------

/// Salt of process `idx` of a tree: each process's memory differs from the others'.
fn salt(idx: usize) -> u64 {
    (idx as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The root forks N-1 children; every process (root included) maps SIZE bytes, fills
/// them with its own pattern, writes `ready.IDX` and polls for `go`. Then each verifies
/// its memory and writes `result.IDX`; the root also reaps every child (each must exit
/// 0) and exits 0 only if the whole tree passed.
pub fn workload_tree(args: &[String]) -> Result<ExitCode> {
    let [n, size, dir] = args else {
        bail!("usage: stasis __workload bench-tree PROCESSES SIZE_BYTES STATUS_DIR");
    };
    let n: usize = n.parse().with_context(|| format!("bench-tree: bad process count {n:?}"))?;
    let size: usize = size.parse().with_context(|| format!("bench-tree: bad size {size:?}"))?;
    if n == 0 || size == 0 || !size.is_multiple_of(PAGE) {
        bail!("bench-tree: {n} processes of {size} bytes: need at least one process and a non-zero multiple of {PAGE} bytes");
    }
    let dir = PathBuf::from(dir);
    detach_from_caller();
    let mut kids = Vec::new();
    let mut idx = 0;
    for i in 1..n {
        match sys::fork().context("bench-tree: fork")? {
            0 => {
                idx = i;
                kids.clear();
                break;
            }
            pid => kids.push(pid),
        }
    }
    let mut region = AnonBuf::new(size).context("bench-tree: mmap")?;
    fill_salted(region.as_mut_words(), salt(idx));
    write_atomic(
        &dir.join(format!("{READY_FILE}.{idx}")),
        &format!("READY addr=0x{:x} size={size} pid={}\n", region.addr(), std::process::id()),
    )?;
    let go = dir.join(GO_FILE);
    while !go.exists() {
        nap(POLL);
    }
    std::hint::black_box(region.addr());
    let mut verdict = verify_salted(region.as_words(), salt(idx));
    for k in kids {
        match sys::waitpid(k, 0) {
            Ok(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {}
            Ok(st) if verdict == "PASS" => verdict = format!("FAIL child {k}: wait status {st:#x}"),
            Err(e) if verdict == "PASS" => verdict = format!("FAIL child {k}: waitpid: {e}"),
            _ => {}
        }
    }
    write_atomic(&dir.join(format!("{RESULT_FILE}.{idx}")), &format!("{verdict}\n"))?;
    Ok(if verdict == "PASS" { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

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

// ---------------------------------------------------------------------------
// Tree bench driver
// ---------------------------------------------------------------------------

/// A tree to benchmark: `procs` processes (the root and procs-1 children), each with
/// `size` bytes of touched memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeShape {
    procs: usize,
    size: u64,
}

impl TreeShape {
    fn total(&self) -> u64 {
        self.procs as u64 * self.size
    }
    fn label(&self) -> String {
        format!("{} × {}", self.procs, size_label(self.size))
    }
    fn arg(&self) -> String {
        format!("{}x{}", self.procs, size_arg(self.size))
    }
}

/// "100x1M" (100 processes of 1 MiB each), "8x512M".
fn parse_tree(s: &str) -> Result<TreeShape, String> {
    let (n, size) = s.trim().split_once(['x', 'X']).ok_or_else(|| format!("bad tree {s:?} (expected e.g. 100x1M or 8x512M)"))?;
    let procs: usize = n.parse().map_err(|_| format!("bad process count in {s:?}"))?;
    if !(1..=1000).contains(&procs) {
        return Err(format!("tree {s:?}: 1 to 1000 processes"));
    }
    Ok(TreeShape { procs, size: parse_size(size)? })
}

struct TreeRun {
    readv: f64,
    write: f64,
    touch: f64,
    cr: CrRun,
}

/// Kills (SIGKILL) and reaps, on drop, every listed process and every descendant of
/// one that still runs bench-tree (a tree that failed half-way may not have reported
/// all its pids).
struct TreeGuard(Vec<i32>);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        let mut todo = self.0.clone();
        while let Some(p) = todo.pop() {
            for t in fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten() {
                let kids = fs::read_to_string(t.path().join("children")).unwrap_or_default();
                for k in kids.split_whitespace().filter_map(|k| k.parse::<i32>().ok()) {
                    if !self.0.contains(&k) {
                        self.0.push(k);
                        todo.push(k);
                    }
                }
            }
        }
        for &p in &self.0 {
            let cmdline = fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            if cmdline.split(|&b| b == 0).any(|a| a == b"bench-tree") {
                let _ = sys::kill(p, libc::SIGKILL);
            }
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) && self.0.iter().any(|p| Path::new(&format!("/proc/{p}")).exists()) {
            while let Ok(Some(_)) = sys::try_waitpid(-1, libc::WNOHANG) {}
            std::thread::sleep(POLL);
        }
    }
}

/// Every `ready.IDX` of the tree: (pid, region address) per process.
fn wait_tree_ready(wl: &mut Workload, status: &Path, n: usize, timeout: Duration) -> Result<Vec<(i32, usize)>> {
    let deadline = Instant::now() + timeout;
    let mut out = vec![None; n];
    loop {
        for (i, slot) in out.iter_mut().enumerate() {
            if slot.is_some() {
                continue;
            }
            if let Ok(text) = fs::read_to_string(status.join(format!("{READY_FILE}.{i}"))) {
                let field = |k: &str| text.split_whitespace().find_map(|w| w.strip_prefix(k)).map(str::to_string);
                let addr = field("addr=0x").and_then(|h| usize::from_str_radix(&h, 16).ok());
                let pid = field("pid=").and_then(|p| p.parse::<i32>().ok());
                match (pid, addr) {
                    (Some(p), Some(a)) => *slot = Some((p, a)),
                    _ => bail!("process {i} of the tree wrote a bad ready line {text:?}"),
                }
            }
        }
        if out.iter().all(Option::is_some) {
            return Ok(out.into_iter().flatten().collect());
        }
        if let Some(st) = wl.child.try_wait()? {
            wl.done = true;
            bail!("tree root {} before the tree was ready{}", describe(st), log_tail(&status.join(LOG_FILE)));
        }
        if Instant::now() >= deadline {
            let n_ready = out.iter().flatten().count();
            bail!("tree not ready after {} s ({n_ready} of {n} processes)", timeout.as_secs());
        }
        std::thread::sleep(POLL);
    }
}

fn one_tree_run(exe: &Path, work: &Path, shape: TreeShape, r: u32) -> Result<TreeRun> {
    let run_dir = work.join(format!("tree-{}-run{r}", shape.arg()));
    fs::create_dir(&run_dir).with_context(|| format!("create {}", run_dir.display()))?;
    let run_dir = RemoveOnDrop(run_dir);
    let status = run_dir.0.join("status");
    let img = run_dir.0.join("img");
    fs::create_dir(&status)?;
    let total = shape.total();
    let timeout = ready_timeout(total);

    let args = ["bench-tree".to_string(), shape.procs.to_string(), shape.size.to_string()];
    let mut wl = Workload::start_with(exe, &status, &args)?;
    let pid = wl.pid();
    let mut guard = TreeGuard(vec![pid]);
    let tree = wait_tree_ready(&mut wl, &status, shape.procs, timeout)?;
    guard.0 = tree.iter().map(|t| t.0).collect();

    // Limits on the same byte count: every process's region read in turn, one write
    // and one first touch of the total.
    let mut readv_t = Duration::ZERO;
    for &(p, addr) in &tree {
        readv_t += measure_readv_salted(p, addr, shape.size as usize, salt(tree.iter().position(|t| t.0 == p).unwrap_or(0)))?;
    }
    let readv = gbps(total, readv_t);
    quiesce();
    let write = gbps(total, measure_seq_write(&run_dir.0, total as usize)?);
    let touch = gbps(total, measure_first_touch(total as usize)?);
    eprintln!("bench:   limits: process_vm_readv {readv:.2} GB/s, seq write {write:.2} GB/s, first touch {touch:.2} GB/s");

    quiesce();
    let (dump_s, frozen_s, frozen_is_wall, engine_dump_s, pages_bytes) = timed_dump(exe, &run_dir.0, &img, pid)?;
    let orig = wl
        .wait_exit(Duration::from_secs(10))
        .with_context(|| format!("the dumped tree root (pid {pid}) did not exit after the dump"))?;
    if orig.signal() != Some(libc::SIGKILL) {
        bail!("the dumped tree root (pid {pid}) {}, expected killed by SIGKILL", describe(orig));
    }
    // The killed children were re-parented to us: reap them so restore gets their pids.
    let t = Instant::now();
    while tree.iter().any(|(p, _)| Path::new(&format!("/proc/{p}")).exists()) {
        while let Ok(Some(_)) = sys::try_waitpid(-1, libc::WNOHANG) {}
        if t.elapsed() > Duration::from_secs(10) {
            bail!("processes of the dumped tree still exist 10 s after the dump");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    eprintln!("bench:   dump {dump_s:.3} s, frozen {frozen_s:.3} s");

    let (restore_s, rpid) = timed_restore(exe, &run_dir.0, &img)?;
    let mut restored = Restored { pid: rpid, reaped: false };
    if rpid != pid {
        bail!("restore put the tree root at pid {rpid}, not {pid}");
    }
    fs::write(status.join(GO_FILE), "go\n").context("create go file")?;
    let st = restored
        .wait_exit(timeout)
        .with_context(|| format!("restored tree root (pid {pid}){}", log_tail(&status.join(LOG_FILE))))?;
    for i in 0..shape.procs {
        let v = fs::read_to_string(status.join(format!("{RESULT_FILE}.{i}"))).unwrap_or_default();
        if v.trim() != "PASS" {
            bail!("restored tree: process {i} (pid {}) reported {:?}", tree[i].0, v.trim());
        }
    }
    if let Some(st) = st {
        if !st.success() {
            bail!("restored tree root reported PASS but {}", describe(st));
        }
    }
    eprintln!("bench:   restore {restore_s:.3} s, restored tree verified PASS");
    Ok(TreeRun {
        readv,
        write,
        touch,
        cr: CrRun { dump_s, frozen_s, frozen_is_wall, engine_dump_s, pages_bytes, restore_s },
    })
}

/// Create `go`, wait for the workload's verdict, require PASS and exit 0.
fn go_and_check(
    status: &Path,
    size: u64,
    mut wait_exit: impl FnMut(Duration) -> Result<Option<ExitStatus>>,
) -> Result<()> {
    fs::write(status.join(GO_FILE), "go\n").context("create go file")?;
    let result = status.join(RESULT_FILE);
    let deadline = Instant::now() + ready_timeout(size);
    // The workload writes the result with a rename, then exits; wait for the
    // exit and read the result after it.
    let st = wait_exit(deadline.saturating_duration_since(Instant::now()))
        .context("no verdict from the workload: it did not finish verifying its memory in time")?;
    let verdict = match fs::read_to_string(&result) {
        Ok(v) => v.trim().to_string(),
        Err(_) => bail!(
            "workload {} without writing a verdict",
            st.map(describe).unwrap_or_else(|| "exited".into())
        ),
    };
    if verdict != "PASS" {
        bail!("memory verification failed: {verdict}");
    }
    if let Some(st) = st {
        if !st.success() {
            bail!("workload reported PASS but {}", describe(st));
        }
    }
    Ok(())
}

fn ready_timeout(size: u64) -> Duration {
    Duration::from_secs(30 + 15 * size.div_ceil(GIB))
}

/// The bench-fill workload as a direct child; killed and reaped on drop.
struct Workload {
    child: Child,
    status: PathBuf,
    done: bool,
}

impl Workload {
    fn start(exe: &Path, status: &Path, size: u64) -> Result<Workload> {
        Workload::start_with(exe, status, &["bench-fill".to_string(), size.to_string()])
    }

    /// `stasis __workload ARGS... STATUS_DIR`.
    fn start_with(exe: &Path, status: &Path, args: &[String]) -> Result<Workload> {
        let log = status.join(LOG_FILE);
        let child = Command::new(exe)
            .arg("__workload")
            .args(args)
            .arg(status)
            .current_dir(status)
            .stdin(Stdio::null())
            .stdout(log_file(&log)?)
            .stderr(log_file(&log)?)
            .spawn()
            .with_context(|| format!("start the {} workload", args[0]))?;
        Ok(Workload {
            child,
            status: status.to_path_buf(),
            done: false,
        })
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait for READY; returns the region's address.
    fn wait_ready(&mut self, timeout: Duration) -> Result<usize> {
        let ready = self.status.join(READY_FILE);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = fs::read_to_string(&ready) {
                let addr = text
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr=0x"))
                    .and_then(|h| usize::from_str_radix(h, 16).ok())
                    .ok_or_else(|| anyhow!("workload wrote a bad ready line {text:?}"))?;
                return Ok(addr);
            }
            if let Some(st) = self.child.try_wait()? {
                self.done = true;
                bail!(
                    "workload {} before it was ready{}",
                    describe(st),
                    log_tail(&self.status.join(LOG_FILE))
                );
            }
            if Instant::now() >= deadline {
                bail!("workload not ready after {} s", timeout.as_secs());
            }
            std::thread::sleep(POLL);
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                self.done = true;
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!(
                    "pid {} still running after {} s",
                    self.pid(),
                    timeout.as_secs()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The restored workload: our child only through the subreaper; killed and
/// reaped on drop.
struct Restored {
    pid: i32,
    reaped: bool,
}

impl Restored {
    /// Some(status) when we reaped it; None when it was not our child and has
    /// gone away (status unknown).
    fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            match sys::try_waitpid(self.pid, 0) {
                Ok(Some((r, st))) if r == self.pid => {
                    self.reaped = true;
                    return Ok(Some(ExitStatus::from_raw(st)));
                }
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    if !Path::new(&format!("/proc/{}", self.pid)).exists() {
                        self.reaped = true;
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e).context(format!("waitpid({})", self.pid)),
            }
            if Instant::now() >= deadline {
                bail!(
                    "pid {} still running after {} s",
                    self.pid,
                    timeout.as_secs()
                );
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        // Only ever kill our workload, whatever pid the pidfile named.
        let cmdline = fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        let ours = cmdline.split(|&b| b == 0).any(|a| a == b"bench-fill" || a == b"bench-tree");
        if !self.reaped && ours {
            // The pid is not reaped yet and runs bench-fill, so it names the
            // restored workload.
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = self.wait_exit(Duration::from_secs(5));
        }
    }
}

/// Reap whatever else got re-parented to us. Only called when no `Child` or
/// `Restored` is outstanding.
fn reap_strays() {
    while let Ok(Some((pid, _))) = sys::try_waitpid(-1, 0) {
        tracing::debug!(pid, "reaped stray child");
    }
}

/// Flush dirty data so earlier writes (a previous run, the seq write file)
/// do not compete with the next measurement for the disk.
fn quiesce() {
    sys::sync();
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("bench: warning: could not remove {}: {e}", self.0.display());
            }
        }
    }
}

fn log_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

/// The last lines of a log, formatted to append to an error ("" if empty).
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(15)..];
    format!("; its output:\n  {}", tail.join("\n  "))
}

fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended with {st}"),
    }
}

// ---------------------------------------------------------------------------
// Machine limits
// ---------------------------------------------------------------------------

/// process_vm_readv of [addr, addr+len) of `pid` into a reused page-aligned
/// 64 MiB buffer; spot-checks the first word of each chunk.
fn measure_readv(pid: i32, addr: usize, len: usize) -> Result<Duration> {
    measure_readv_salted(pid, addr, len, 0)
}

fn measure_readv_salted(pid: i32, addr: usize, len: usize, salt: u64) -> Result<Duration> {
    let mut buf = AnonBuf::new(READV_CHUNK.min(len)).context("mmap readv buffer")?;
    buf.as_mut_slice().fill(1); // fault the buffer in before timing
    let t0 = Instant::now();
    let mut off = 0usize;
    while off < len {
        let n = (len - off).min(buf.len());
        let got = sys::vm_readv_into(pid, &mut [&mut buf.as_mut_slice()[..n]], &[((addr + off) as u64, n)])
        .with_context(|| format!("process_vm_readv(pid {pid}, 0x{:x})", addr + off))?;
        if got == 0 {
            bail!(
                "process_vm_readv(pid {pid}) read nothing at 0x{:x}",
                addr + off
            );
        }
        let want = off as u64 ^ PATTERN ^ salt;
        if buf.as_words()[0] != want {
            bail!(
                "process_vm_readv read 0x{:x} at offset 0x{off:x}, expected 0x{want:x}",
                buf.as_words()[0]
            );
        }
        off += got;
    }
    Ok(t0.elapsed())
}

/// Buffered 8 MiB writes of `len` bytes to a new file in `dir`, no fsync;
/// the file is deleted afterwards.
fn measure_seq_write(dir: &Path, len: usize) -> Result<Duration> {
    let path = dir.join("seqwrite.tmp");
    let buf: Vec<u8> = (0..WRITE_CHUNK).map(|i| (i as u8) | 1).collect();
    let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let t0 = Instant::now();
    let mut left = len;
    while left > 0 {
        let n = left.min(WRITE_CHUNK);
        f.write_all(&buf[..n])
            .with_context(|| format!("write {}", path.display()))?;
        left -= n;
    }
    let el = t0.elapsed();
    drop(f);
    fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    Ok(el)
}

/// mmap `len` bytes of fresh anonymous memory and write one byte per page.
fn measure_first_touch(len: usize) -> Result<Duration> {
    let t0 = Instant::now();
    let mut m = AnonBuf::new(len).context("mmap first-touch region")?;
    let b = m.as_mut_slice();
    for i in (0..len).step_by(PAGE) {
        b[i] = 1;
    }
    std::hint::black_box(&mut *b);
    let el = t0.elapsed();
    drop(m);
    Ok(el)
}

// ---------------------------------------------------------------------------
// Machine description
// ---------------------------------------------------------------------------

struct Machine {
    cpu: String,
    cores: usize,
    mem_total: Option<u64>,
    mem_available: Option<u64>,
    kernel: String,
    thp: String,
    fs: String,
    date: String,
}

impl Machine {
    fn probe(dir: &Path) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let cores = if cores > 0 {
            cores
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        };
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem = |key: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        };
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let thp = fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .find(|w| w.starts_with('['))
                    .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            cores,
            mem_total: mem("MemTotal:"),
            mem_available: mem("MemAvailable:"),
            kernel,
            thp,
            fs: mount_of(dir),
            date: utc_now(),
        }
    }
}

/// "ext4 on /dev/vda" for the mount holding `dir`.
fn mount_of(dir: &Path) -> String {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, mnt, _)| dir.starts_with(mnt))
        .max_by_key(|(_, mnt, _)| mnt.len())
        .map(|(src, _, fstype)| format!("{fstype} on {src}"))
        .unwrap_or_else(|| "unknown filesystem".into())
}

fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------
// Sizes, numbers, report
// ---------------------------------------------------------------------------

/// "256M", "1G", "4G", "512K", "2T", "4096", also "1GiB"/"1GB" (all binary).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?} (expected e.g. 256M, 1G, 4G)"))?;
    let unit = unit.to_ascii_uppercase();
    let unit = unit.trim_end_matches("IB").trim_end_matches('B');
    let mult: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("bad size unit in {s:?} (use K, M, G or T)")),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))?;
    if bytes == 0 || !bytes.is_multiple_of(PAGE as u64) {
        return Err(format!("size {s:?} must be a non-zero multiple of 4 KiB"));
    }
    Ok(bytes)
}

fn size_label(b: u64) -> String {
    if b.is_multiple_of(GIB) {
        format!("{} GiB", b / GIB)
    } else if b.is_multiple_of(MIB) {
        format!("{} MiB", b / MIB)
    } else if b.is_multiple_of(1024) {
        format!("{} KiB", b / 1024)
    } else {
        format!("{b} B")
    }
}

fn size_arg(b: u64) -> String {
    if b.is_multiple_of(GIB) {
        format!("{}G", b / GIB)
    } else if b.is_multiple_of(MIB) {
        format!("{}M", b / MIB)
    } else if b.is_multiple_of(1024) {
        format!("{}K", b / 1024)
    } else {
        b.to_string()
    }
}

fn gbps(bytes: u64, t: impl Into<Secs>) -> f64 {
    bytes as f64 / 1e9 / t.into().0
}

struct Secs(f64);
impl From<Duration> for Secs {
    fn from(d: Duration) -> Secs {
        Secs(d.as_secs_f64())
    }
}
impl From<f64> for Secs {
    fn from(s: f64) -> Secs {
        Secs(s)
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn run_summary(size: u64, r: &Run) -> String {
    match &r.cr {
        None => "workload verified PASS (no dump/restore: --limits-only)".into(),
        Some(c) => format!(
            "restore {:.3} s ({:.2} GB/s), restored workload verified PASS",
            c.restore_s,
            gbps(size, c.restore_s)
        ),
    }
}

/// A markdown table; `numeric` right-aligns every column but the first.
fn md_table(header: &[String], rows: &[Vec<String>], numeric: bool) -> String {
    let mut s = format!("| {} |\n", header.join(" | "));
    s.push('|');
    for i in 0..header.len() {
        s += if i > 0 && numeric { "---:|" } else { "---|" };
    }
    s.push('\n');
    for r in rows {
        s += &format!("| {} |\n", r.join(" | "));
    }
    s
}

/// One metric row: a cell per run plus the median; "–" where absent.
fn metric_row(name: &str, vals: &[Option<f64>], decimals: usize, mark: &[bool]) -> Vec<String> {
    let mut row = vec![name.to_string()];
    for (i, v) in vals.iter().enumerate() {
        let star = if mark.get(i).copied().unwrap_or(false) {
            "*"
        } else {
            ""
        };
        row.push(
            v.map(|x| format!("{x:.decimals$}{star}"))
                .unwrap_or_else(|| "–".into()),
        );
    }
    let any_star = mark.iter().any(|&m| m);
    row.push(
        median(vals.iter().flatten().copied().collect())
            .map(|x| format!("{x:.decimals$}{}", if any_star { "*" } else { "" }))
            .unwrap_or_else(|| "–".into()),
    );
    row
}

/// Returns (whole report, the result tables printed to stdout).
fn render(
    args: &BenchArgs,
    m: &Machine,
    results: &[(u64, Vec<Run>)],
    trees: &[(TreeShape, Vec<TreeRun>)],
) -> (String, String) {
    let n = args.runs;
    let sizes = args
        .sizes
        .iter()
        .map(|&b| size_arg(b))
        .collect::<Vec<_>>()
        .join(",");
    let tree_arg = if args.no_trees || args.limits_only {
        " --no-trees".to_string()
    } else {
        format!(
            " --trees {}{}",
            args.trees.iter().map(TreeShape::arg).collect::<Vec<_>>().join(","),
            if args.tree_only { " --tree-only" } else { "" }
        )
    };
    let sizes_arg = if args.tree_only { String::new() } else { format!(" --sizes {sizes}") };
    let mut intro = String::new();
    intro += "# stasis benchmarks\n\n";
    intro += &format!(
        "Generated by `stasis bench{sizes_arg} --runs {n}{}{tree_arg}` on {}, in one run of the \
         command: every section below comes from it. Every cell is one run; the last column is \
         the median of {n} run(s).\n\n",
        if args.limits_only {
            " --limits-only"
        } else {
            ""
        },
        m.date
    );
    intro += "How it is measured:\n\n\
- **Workload**: `stasis __workload bench-fill SIZE DIR` maps SIZE bytes of anonymous memory and \
fills each 8-byte word with `offset ^ 0x5a5a5a5a5a5a5a5a` (no zero pages), then polls for a `go` \
file every 10 ms. stdin is /dev/null, stdout/stderr a regular file.\n\
- **dump s**: wall time of `stasis dump -t PID -D IMG`, from spawn to exit (the process is killed \
at the end of the dump). **frozen s**: time the process was stopped, `frozen_us` from \
`IMG/stats.json`.\n\
- **restore s**: wall time of `stasis restore -D IMG -d --pidfile F` until it returns with the \
process running. **The image is in page cache**: nothing is dropped between dump and restore. The \
restored process is then told to go, verifies every word of its memory and must report PASS.\n\
- **GB/s** = workload bytes / 1e9 / seconds (sizes are binary: 1 GiB = 1.074 GB).\n\
- **Machine limits**, measured in the same run on the same byte count, before the dump: \
*process_vm_readv* of the workload's memory into a reused page-aligned 64 MiB buffer; \
*seq write*: buffered 8 MiB `write(2)`s to a new file in the image directory's filesystem, \
no fsync, then deleted; *first touch*: mmap fresh anonymous memory and write one byte per 4 KiB \
page.\n\
- **dump ratio** = dump GB/s / min(process_vm_readv, seq write); **restore ratio** = restore GB/s / \
first touch; both against the limits of the same run.\n\n";

    let mut mach = String::from("## Machine\n\n");
    let mem = m
        .mem_total
        .map(|b| format!("{:.1} GiB", b as f64 / GIB as f64))
        .unwrap_or("unknown".into());
    mach += &md_table(
        &["".into(), "".into()],
        &[
            vec!["CPU".into(), m.cpu.clone()],
            vec!["cores".into(), m.cores.to_string()],
            vec!["memory".into(), mem],
            vec!["kernel".into(), m.kernel.clone()],
            vec!["transparent hugepages".into(), m.thp.clone()],
            vec!["image filesystem".into(), m.fs.clone()],
            vec!["date".into(), m.date.clone()],
        ],
        false,
    );
    mach += "\n";

    let mut tables = String::new();
    if args.tree_only {
        tables += &render_trees(trees);
        return (format!("{intro}{mach}{tables}"), tables);
    }
    // Target.
    tables += "## Target\n\n";
    tables += &format!("{TARGET_LINE}\n\n");
    let at_target = results.iter().find(|(s, _)| *s == TARGET_SIZE);
    let verdict = match at_target {
        _ if args.limits_only => "Not evaluated: dump/restore not run (--limits-only).".to_string(),
        None => "Not evaluated: 4 GiB is not among --sizes.".to_string(),
        Some((size, runs)) => {
            let d = median(
                runs.iter()
                    .filter_map(|r| r.cr.as_ref())
                    .map(|c| gbps(*size, c.dump_s))
                    .collect(),
            );
            let r = median(
                runs.iter()
                    .filter_map(|r| r.cr.as_ref())
                    .map(|c| gbps(*size, c.restore_s))
                    .collect(),
            );
            match (d, r) {
                (Some(d), Some(r)) => {
                    let met = d >= TARGET_GBPS && r >= TARGET_GBPS;
                    format!(
                        "**{}** at 4 GiB (medians): dump {d:.2} GB/s, restore {r:.2} GB/s.",
                        if met { "Met" } else { "Not met" }
                    )
                }
                _ => "Not evaluated: no dump/restore results.".to_string(),
            }
        }
    };
    tables += &format!("{verdict}\n\n");

    let mut any_wall = false;
    if !args.limits_only {
        for (size, runs) in results {
            let size = *size;
            let crs: Vec<&CrRun> = runs.iter().filter_map(|r| r.cr.as_ref()).collect();
            let mut header = vec![size_label(size)];
            header.extend((1..=runs.len()).map(|i| format!("run {i}")));
            header.push("median".into());
            let col = |f: &dyn Fn(&Run, &CrRun) -> Option<f64>| -> Vec<Option<f64>> {
                runs.iter()
                    .map(|r| r.cr.as_ref().and_then(|c| f(r, c)))
                    .collect()
            };
            let walls: Vec<bool> = crs.iter().map(|c| c.frozen_is_wall).collect();
            any_wall |= walls.iter().any(|&w| w);
            let rows = vec![
                metric_row("dump s", &col(&|_, c| Some(c.dump_s)), 3, &[]),
                metric_row(
                    "dump GB/s",
                    &col(&|_, c| Some(gbps(size, c.dump_s))),
                    2,
                    &[],
                ),
                metric_row("frozen s", &col(&|_, c| Some(c.frozen_s)), 3, &walls),
                metric_row("restore s", &col(&|_, c| Some(c.restore_s)), 3, &[]),
                metric_row(
                    "restore GB/s",
                    &col(&|_, c| Some(gbps(size, c.restore_s))),
                    2,
                    &[],
                ),
                metric_row(
                    "dump / min(readv, seq write)",
                    &col(&|r, c| Some(gbps(size, c.dump_s) / r.readv.min(r.write))),
                    2,
                    &[],
                ),
                metric_row(
                    "restore / first touch",
                    &col(&|r, c| Some(gbps(size, c.restore_s) / r.touch)),
                    2,
                    &[],
                ),
                metric_row(
                    "engine dump s (stats.json)",
                    &col(&|_, c| c.engine_dump_s),
                    3,
                    &[],
                ),
                metric_row(
                    "image pages GiB (stats.json)",
                    &col(&|_, c| c.pages_bytes.map(|b| b as f64 / GIB as f64)),
                    3,
                    &[],
                ),
            ];
            tables += &format!("## {}\n\n", size_label(size));
            tables += &md_table(&header, &rows, true);
            tables += "\n";
        }
        if any_wall {
            tables += "\\* `stats.json` was absent from the image: frozen time is the dump's wall \
                       time (an upper bound).\n\n";
        }
    }

    tables += &format!("## Machine limits (GB/s, median of {n} run(s))\n\n");
    let header: Vec<String> = [
        "size",
        "process_vm_readv",
        "seq write",
        "min(readv, write)",
        "first touch",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(size, runs)| {
            let f = |g: &dyn Fn(&Run) -> f64| {
                median(runs.iter().map(g).collect())
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or("–".into())
            };
            vec![
                size_label(*size),
                f(&|r| r.readv),
                f(&|r| r.write),
                f(&|r| r.readv.min(r.write)),
                f(&|r| r.touch),
            ]
        })
        .collect();
    tables += &md_table(&header, &rows, true);
    if m.fs.starts_with("tmpfs") {
        tables +=
            "\nWarning: the image directory is on tmpfs; seq write and restore figures do not \
                   involve a disk.\n";
    }
    if !trees.is_empty() {
        tables += "\n";
        tables += &render_trees(trees);
    }

    (format!("{intro}{mach}{tables}"), tables)
}

/// The process-tree section: a summary of medians, then one table per tree.
fn render_trees(trees: &[(TreeShape, Vec<TreeRun>)]) -> String {
    let mut t = String::from("## Process trees\n\n");
    t += "- **Workload**: `stasis __workload bench-tree N SIZE DIR`: the root forks N-1 children \
(all children of the root); then every process maps SIZE bytes of anonymous memory, fills it with \
its own pattern (`offset ^ 0x5a5a5a5a5a5a5a5a ^ salt(process)`, no zero pages) and polls for a \
`go` file every 10 ms. Besides SIZE, each process holds its share of the stasis binary's own \
memory (counted in *image pages*).\n\
- **dump s** / **restore s**: wall time of `stasis dump -t ROOT -D IMG` (the whole tree is frozen, \
dumped, killed) and of `stasis restore -D IMG -d --pidfile F` (returns with every process \
running); image in page cache. Between the two, the killed processes are reaped so their pids are \
free. After the restore every process verifies every word of its memory and the root reaps each \
child; all must report PASS. **per process** = the time / N.\n\
- **Machine limits** of the same run on the tree's total touched memory: *process_vm_readv* of \
every process's region in turn, *seq write* and *first touch* of the total, as above.\n\n";
    let med = |runs: &[TreeRun], f: &dyn Fn(&TreeRun) -> f64| median(runs.iter().map(f).collect());
    let fmt = |v: Option<f64>, d: usize| v.map(|x| format!("{x:.d$}")).unwrap_or_else(|| "–".into());
    let header: Vec<String> = [
        "tree (medians)",
        "processes",
        "memory each",
        "dump s",
        "restore s",
        "dump ms / process",
        "restore ms / process",
        "image pages MiB",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = trees
        .iter()
        .map(|(shape, runs)| {
            let n = shape.procs as f64;
            vec![
                shape.label(),
                shape.procs.to_string(),
                size_label(shape.size),
                fmt(med(runs, &|r| r.cr.dump_s), 3),
                fmt(med(runs, &|r| r.cr.restore_s), 3),
                fmt(med(runs, &|r| r.cr.dump_s * 1e3 / n), 2),
                fmt(med(runs, &|r| r.cr.restore_s * 1e3 / n), 2),
                fmt(median(runs.iter().filter_map(|r| r.cr.pages_bytes).map(|b| b as f64 / MIB as f64).collect()), 1),
            ]
        })
        .collect();
    t += &md_table(&header, &rows, true);
    t += "\n";
    for (shape, runs) in trees {
        let total = shape.total();
        let n = shape.procs as f64;
        let col = |f: &dyn Fn(&TreeRun) -> Option<f64>| -> Vec<Option<f64>> { runs.iter().map(f).collect() };
        let walls: Vec<bool> = runs.iter().map(|r| r.cr.frozen_is_wall).collect();
        let mut header = vec![format!("tree {}", shape.label())];
        header.extend((1..=runs.len()).map(|i| format!("run {i}")));
        header.push("median".into());
        let rows = vec![
            metric_row("dump s", &col(&|r| Some(r.cr.dump_s)), 3, &[]),
            metric_row("frozen s", &col(&|r| Some(r.cr.frozen_s)), 3, &walls),
            metric_row("restore s", &col(&|r| Some(r.cr.restore_s)), 3, &[]),
            metric_row("dump ms / process", &col(&|r| Some(r.cr.dump_s * 1e3 / n)), 2, &[]),
            metric_row("restore ms / process", &col(&|r| Some(r.cr.restore_s * 1e3 / n)), 2, &[]),
            metric_row("dump GB/s (touched memory)", &col(&|r| Some(gbps(total, r.cr.dump_s))), 2, &[]),
            metric_row("restore GB/s (touched memory)", &col(&|r| Some(gbps(total, r.cr.restore_s))), 2, &[]),
            metric_row(
                "dump / min(readv, seq write)",
                &col(&|r| Some(gbps(total, r.cr.dump_s) / r.readv.min(r.write))),
                2,
                &[],
            ),
            metric_row("restore / first touch", &col(&|r| Some(gbps(total, r.cr.restore_s) / r.touch)), 2, &[]),
            metric_row("image pages MiB (stats.json)", &col(&|r| r.cr.pages_bytes.map(|b| b as f64 / MIB as f64)), 1, &[]),
        ];
        let procs = if shape.procs == 1 { "1 process".to_string() } else { format!("{} processes", shape.procs) };
        t += &format!("### {procs} × {}\n\n", size_label(shape.size));
        t += &md_table(&header, &rows, true);
        t += "\n";
    }
    t += "Throughput ratios of trees of small processes say little: there the per-process work \
(freezing, parasite, fds, forking, injected syscalls) dominates, not the memory copy.\n";
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("8192"), Ok(8192));
        assert!(parse_size("1000").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("G").is_err());
        assert_eq!(size_label(256 << 20), "256 MiB");
        assert_eq!(size_arg(4 << 30), "4G");
    }

    #[test]
    fn tree_shapes() {
        assert_eq!(parse_tree("8x512M"), Ok(TreeShape { procs: 8, size: 512 << 20 }));
        assert_eq!(parse_tree("100x1M").map(|t| t.total()), Ok(100 << 20));
        assert_eq!(parse_tree("1X4K").map(|t| t.arg()), Ok("1x4K".to_string()));
        assert!(parse_tree("8").is_err());
        assert!(parse_tree("0x1M").is_err());
        assert!(parse_tree("8x1000").is_err());
    }

    #[test]
    fn salted_pattern() {
        let mut m = AnonBuf::new(16 * PAGE).unwrap();
        fill_salted(m.as_mut_words(), salt(3));
        assert_eq!(verify_salted(m.as_words(), salt(3)), "PASS");
        assert!(verify_salted(m.as_words(), salt(4)).starts_with("FAIL first_bad_offset=0x0 "));
    }

    #[test]
    fn pattern_roundtrip() {
        let mut m = AnonBuf::new(64 * PAGE).unwrap();
        fill(m.as_mut_words());
        assert!(m.as_words().iter().all(|&w| w != 0));
        assert_eq!(verify(m.as_words()), "PASS");
        m.as_mut_words()[1000] = 0;
        m.as_mut_words()[3000] ^= 1;
        let v = verify(m.as_words());
        assert!(v.starts_with("FAIL first_bad_offset=0x1f40 "), "{v}");
        assert!(v.ends_with("bad_words=2"), "{v}");
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
