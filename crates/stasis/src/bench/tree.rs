//! The tree bench driver and the process bookkeeping shared with the single-process one.

use super::*;

// ---------------------------------------------------------------------------
// Tree bench driver
// ---------------------------------------------------------------------------

/// A tree to benchmark: `procs` processes (the root and procs-1 children), each with
/// `size` bytes of touched memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeShape {
    pub procs: usize,
    pub size: u64,
}

impl TreeShape {
    pub(super) fn total(&self) -> u64 {
        self.procs as u64 * self.size
    }
    pub(super) fn label(&self) -> String {
        format!("{} × {}", self.procs, size_label(self.size))
    }
    pub(super) fn arg(&self) -> String {
        format!("{}x{}", self.procs, size_arg(self.size))
    }
}

/// "100x1M" (100 processes of 1 MiB each), "8x512M".
pub(super) fn parse_tree(s: &str) -> Result<TreeShape, String> {
    let (n, size) = s.trim().split_once(['x', 'X']).ok_or_else(|| format!("bad tree {s:?} (expected e.g. 100x1M or 8x512M)"))?;
    let procs: usize = n.parse().map_err(|_| format!("bad process count in {s:?}"))?;
    if !(1..=1000).contains(&procs) {
        return Err(format!("tree {s:?}: 1 to 1000 processes"));
    }
    Ok(TreeShape { procs, size: parse_size(size)? })
}

pub(super) struct TreeRun {
    pub(super) readv: f64,
    pub(super) write: f64,
    pub(super) touch: f64,
    pub(super) cr: CrRun,
}

/// Kills (SIGKILL) and reaps, on drop, every listed process and every descendant of
/// one that still runs bench-tree (a tree that failed half-way may not have reported
/// all its pids).
pub(super) struct TreeGuard(pub(super) Vec<i32>);

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
pub(super) fn wait_tree_ready(wl: &mut Workload, status: &Path, n: usize, timeout: Duration) -> Result<Vec<(i32, usize)>> {
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

pub(super) fn one_tree_run(exe: &Path, work: &Path, shape: TreeShape, r: u32) -> Result<TreeRun> {
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
pub(super) fn go_and_check(
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

pub(super) fn ready_timeout(size: u64) -> Duration {
    Duration::from_secs(30 + 15 * size.div_ceil(GIB))
}

/// The bench-fill workload as a direct child; killed and reaped on drop.
pub(super) struct Workload {
    pub(super) child: Child,
    pub(super) status: PathBuf,
    pub(super) done: bool,
}

impl Workload {
    pub(super) fn start(exe: &Path, status: &Path, size: u64) -> Result<Workload> {
        Workload::start_with(exe, status, &["bench-fill".to_string(), size.to_string()])
    }

    /// `stasis __workload ARGS... STATUS_DIR`.
    pub(super) fn start_with(exe: &Path, status: &Path, args: &[String]) -> Result<Workload> {
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

    pub(super) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait for READY; returns the region's address.
    pub(super) fn wait_ready(&mut self, timeout: Duration) -> Result<usize> {
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

    pub(super) fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
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
pub(super) struct Restored {
    pub(super) pid: i32,
    pub(super) reaped: bool,
}

impl Restored {
    /// Some(status) when we reaped it; None when it was not our child and has
    /// gone away (status unknown).
    pub(super) fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
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
pub(super) fn reap_strays() {
    while let Ok(Some((pid, _))) = sys::try_waitpid(-1, 0) {
        tracing::debug!(pid, "reaped stray child");
    }
}

/// Flush dirty data so earlier writes (a previous run, the seq write file)
/// do not compete with the next measurement for the disk.
pub(super) fn quiesce() {
    sys::sync();
}

pub(super) struct RemoveOnDrop(pub(super) PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("bench: warning: could not remove {}: {e}", self.0.display());
            }
        }
    }
}

pub(super) fn log_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))
}

/// The last lines of a log, formatted to append to an error ("" if empty).
pub(super) fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let tail = &lines[lines.len().saturating_sub(15)..];
    format!("; its output:\n  {}", tail.join("\n  "))
}

pub(super) fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("ended with {st}"),
    }
}

