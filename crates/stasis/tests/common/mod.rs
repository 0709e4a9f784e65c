//! Shared harness for the black-box `stasis` integration tests.
//!
//! # Protocol
//!
//! Workloads are small C programs in `tests/workloads/*.c` (plus two Python
//! scripts and Debian's `xz`).  The C ones are compiled on first use with
//! `cc -O1 -pthread -Wall -g` into `$CARGO_TARGET_TMPDIR/workloads/`
//! (content-hashed, so every test process of a run shares one build).
//!
//! Each test gets a fresh temp dir `stasis-test-NAME-XXXXXX/` holding
//! `work/` (the workload's WORKDIR, argv[1]), `img/` (the image dir),
//! `stdout.txt`/`stderr.txt` (the workload's stdout/stderr: regular files,
//! never a tty or pipe) and one `.out`/`.err` pair per stasis invocation.
//! stdin is `/dev/null`; every fd above 2 is closed in the child.
//!
//! 1. spawn the workload; it sets up its state, prints `INFO k=v` lines and
//!    `READY` (exactly once), then waits for `WORKDIR/go` (polling with a
//!    10 ms nanosleep) or blocks in the syscall under test;
//! 2. optionally wait until a task sits in a given syscall
//!    (`/proc/PID/task/TID/syscall`);
//! 3. `stasis dump -t PID -D img` must exit 0, and the original must die by
//!    SIGKILL; it is reaped at once so its PID is free again;
//! 4. `stasis restore -D img -d --pidfile F` must exit 0 and F must hold
//!    the original PID; the restored process is then a child of the test
//!    (the test process is a child subreaper);
//! 5. create `WORKDIR/go`; `waitpid` the restored PID (20 s by default,
//!    then SIGKILL and fail);
//! 6. the exit status must be 0, stdout must hold `READY` exactly once (a
//!    restart from scratch would print it again, a lost stdout offset would
//!    overwrite it), a `PASS` line and no `FAIL` line.
//!
//! Every check runs inside the workload after the restore.  With
//! `STASIS_TEST_DIRECT=1` steps 3 and 4 are skipped: this validates the
//! workloads themselves (all checks must hold without a checkpoint too).
//! `STASIS_TEST_KEEP=1` keeps the temp dirs for post-mortems.
//!
//! Cleanup: every process a test starts is killed and reaped by Drop guards
//! (also when the test panics); restored processes and anything stasis
//! leaves behind end up as children of the test (subreaper) and are killed
//! and reaped too.  A process-wide lock serialises tests so plain
//! `cargo test` (multi-threaded) also works; nextest runs each test in its
//! own process.
#![allow(dead_code)]

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const STASIS: &str = env!("CARGO_BIN_EXE_stasis");
pub const WORKLOADS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/workloads");
const BUILD_DIR: &str = env!("CARGO_TARGET_TMPDIR");

/// Time a stasis command may take before the test calls it hung.
pub const STASIS_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a workload has to finish after `go`.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Time a workload has to print READY.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// process-wide setup
// ---------------------------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());
/// Pids of children some live object is responsible for (not strays).
static OWNED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn own(pid: i32) {
    OWNED.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashSet::new).insert(pid);
}

fn disown(pid: i32) {
    if let Some(s) = OWNED.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        s.remove(&pid);
    }
}

fn owned(pid: i32) -> bool {
    OWNED.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|s| s.contains(&pid))
}

/// Held for the whole test: serialises tests within one process and, when
/// dropped, kills and reaps every stray child (anything re-parented to us).
pub struct TestGuard {
    _g: MutexGuard<'static, ()>,
}

impl Drop for TestGuard {
    fn drop(&mut self) {
        reap_strays(true);
    }
}

/// Call first in every test: `let _t = common::serial();`
pub fn serial() -> TestGuard {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: plain prctl.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER failed: {}", std::io::Error::last_os_error());
    reap_strays(true);
    TestGuard { _g: g }
}

pub fn direct() -> bool {
    std::env::var_os("STASIS_TEST_DIRECT").is_some_and(|v| v != "0" && !v.is_empty())
}

fn keep_tmp() -> bool {
    std::env::var_os("STASIS_TEST_KEEP").is_some_and(|v| v != "0" && !v.is_empty())
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

// ---------------------------------------------------------------------------
// /proc helpers
// ---------------------------------------------------------------------------

/// (state, ppid) from /proc/PID/stat.
pub fn stat_of(pid: i32) -> Option<(char, i32)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

pub fn comm_of(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn pid_exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Direct children of the test process (pid, state, comm).
pub fn my_children() -> Vec<(i32, char, String)> {
    let me = my_pid();
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if let Some((st, ppid)) = stat_of(pid) {
                if ppid == me {
                    v.push((pid, st, comm_of(pid)));
                }
            }
        }
    }
    v
}

/// Children nobody owns: leftovers of stasis or of a restore.
pub fn stray_children() -> Vec<(i32, char, String)> {
    my_children().into_iter().filter(|(p, _, _)| !owned(*p)).collect()
}

/// Kill (SIGKILL) and reap every child nobody owns.  Returns what it found.
pub fn reap_strays(verbose: bool) -> Vec<(i32, char, String)> {
    let strays = stray_children();
    for (pid, st, comm) in &strays {
        if verbose {
            eprintln!("harness: reaping stray child {pid} ({comm}, state {st})");
        }
        // SAFETY: pid is our unreaped child, so it cannot have been recycled.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
        let _ = waitpid_timeout(*pid, Duration::from_secs(10));
    }
    strays
}

/// Tasks of PID: (tid, state letter, TracerPid).
pub fn tasks_of(pid: i32) -> Vec<(i32, char, i32)> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(format!("/proc/{pid}/task")) {
        for e in rd.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
            let mut state = '?';
            let mut tracer = -1;
            for line in status.lines() {
                if let Some(r) = line.strip_prefix("State:") {
                    state = r.trim().chars().next().unwrap_or('?');
                } else if let Some(r) = line.strip_prefix("TracerPid:") {
                    tracer = r.trim().parse().unwrap_or(-1);
                }
            }
            v.push((tid, state, tracer));
        }
    }
    v.sort();
    v
}

/// The syscall number TID is blocked in, if any.
pub fn syscall_of(pid: i32, tid: i32) -> Option<i64> {
    let s = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------
// waiting
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Debug for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

fn decode(status: i32) -> Exit {
    if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    }
}

#[derive(Debug)]
pub enum WaitErr {
    Timeout,
    NotChild,
}

/// waitpid(pid) polling every 5 ms.
pub fn waitpid_timeout(pid: i32, timeout: Duration) -> Result<Exit, WaitErr> {
    let end = Instant::now() + timeout;
    loop {
        let mut st = 0;
        // SAFETY: plain waitpid on a specific pid.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG | libc::__WALL) };
        if r == pid {
            return Ok(decode(st));
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(WaitErr::NotChild);
        }
        if Instant::now() >= end {
            return Err(WaitErr::Timeout);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_child_timeout(child: &mut Child, timeout: Duration) -> Option<Exit> {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                return Some(match st.code() {
                    Some(c) => Exit::Code(c),
                    None => Exit::Signal(st.signal().unwrap_or(0)),
                })
            }
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = wait_child_timeout(child, Duration::from_secs(10));
}

/// Poll `f` every 10 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// temp dirs and building
// ---------------------------------------------------------------------------

pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let tmpl = std::env::temp_dir().join(format!("stasis-test-{label}-XXXXXX"));
        let mut buf = CString::new(tmpl.as_os_str().as_bytes()).unwrap().into_bytes_with_nul();
        // SAFETY: buf is a writable NUL-terminated template.
        let p = unsafe { libc::mkdtemp(buf.as_mut_ptr() as *mut libc::c_char) };
        assert!(!p.is_null(), "mkdtemp {}: {}", tmpl.display(), std::io::Error::last_os_error());
        buf.pop();
        TempDir { path: PathBuf::from(OsStr::from_bytes(&buf)) }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if keep_tmp() {
            eprintln!("harness: keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x100000001b3);
    }
}

const CFLAGS: &[&str] = &["-O1", "-pthread", "-Wall", "-g"];

/// Compile tests/workloads/NAME.c (cached by content hash) and return the binary.
pub fn workload_bin(name: &str) -> PathBuf {
    let src = Path::new(WORKLOADS).join(format!("{name}.c"));
    let mut h = 0xcbf29ce484222325u64;
    fnv(&mut h, &fs::read(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display())));
    fnv(&mut h, &fs::read(Path::new(WORKLOADS).join("common.h")).expect("read common.h"));
    for f in CFLAGS {
        fnv(&mut h, f.as_bytes());
    }
    // WORKLOADS_BUILD/NAME-HASH/NAME: the binary keeps its name (= comm).
    let dir = Path::new(BUILD_DIR).join("workloads").join(format!("{name}-{h:016x}"));
    fs::create_dir_all(&dir).expect("create workload build dir");
    let bin = dir.join(name);
    if bin.exists() {
        return bin;
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let out = Command::new("cc")
        .args(CFLAGS)
        .arg("-I")
        .arg(WORKLOADS)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .arg("-lrt")
        .stdin(Stdio::null())
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "compiling {} failed:\n{}{}",
        src.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &bin).expect("rename compiled workload");
    bin
}

/// A python3 interpreter from the distribution (not a pyenv shim).
pub fn python3() -> PathBuf {
    for p in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 not found");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// `cmd` gets exactly fds 0-2 and `fds` (target number, our fd); every other fd is
/// closed in the child.
pub fn give_fds(cmd: &mut Command, fds: &[(i32, i32)]) {
    let fds = fds.to_vec();
    // SAFETY: only async-signal-safe syscalls (dup2, close) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            for (i, (_, src)) in fds.iter().enumerate() {
                if libc::dup2(*src, 900 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, (dst, _)) in fds.iter().enumerate() {
                if libc::dup2(900 + i as i32, *dst) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for fd in 3..1024 {
                if !fds.iter().any(|(d, _)| *d == fd) {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
}

pub fn close_fds_above_2(cmd: &mut Command) {
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                for fd in 3..1024 {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// running stasis
// ---------------------------------------------------------------------------

pub struct Run {
    pub cmdline: String,
    pub status: Exit,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status == Exit::Code(0)
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}   -> {:?} after {:.2?}", self.cmdline, self.status, self.elapsed)?;
        if !self.stdout.is_empty() {
            writeln!(f, "  stdout: {}", indent(&self.stdout))?;
        }
        if !self.stderr.is_empty() {
            writeln!(f, "  stderr: {}", indent(&self.stderr))?;
        }
        Ok(())
    }
}

fn indent(s: &str) -> String {
    let s = if s.len() > 8000 {
        let cut = (0..=8000).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        format!("{}...[{} bytes cut]", &s[..cut], s.len() - cut)
    } else {
        s.to_string()
    };
    s.trim_end().replace('\n', "\n          ")
}

static RUN_SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Run `stasis ARGS` with stdout/stderr to files in `dir`; kill it after
/// `timeout` (and panic).
pub fn stasis_in(dir: &Path, args: &[&OsStr], timeout: Duration) -> Run {
    stasis_in_with_fds(dir, args, timeout, &[])
}

/// Like `stasis_in`, with `fds` (target fd number, our fd) handed to stasis; every
/// other fd above 2 is closed in the child.
pub fn stasis_in_with_fds(dir: &Path, args: &[&OsStr], timeout: Duration, fds: &[(i32, i32)]) -> Run {
    let n = RUN_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let label = args.first().map(|a| a.to_string_lossy().to_string()).unwrap_or_default();
    let outp = dir.join(format!("stasis-{n:02}-{label}.out"));
    let errp = dir.join(format!("stasis-{n:02}-{label}.err"));
    let cmdline = format!(
        "stasis {}",
        args.iter().map(|a| a.to_string_lossy().to_string()).collect::<Vec<_>>().join(" ")
    );
    let mut cmd = Command::new(STASIS);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(File::create(&outp).expect("create stasis stdout"))
        .stderr(File::create(&errp).expect("create stasis stderr"));
    if fds.is_empty() {
        close_fds_above_2(&mut cmd);
    } else {
        give_fds(&mut cmd, fds);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {STASIS}: {e}"));
    own(child.id() as i32);
    let status = wait_child_timeout(&mut child, timeout);
    let elapsed = start.elapsed();
    if status.is_none() {
        kill_child(&mut child);
    }
    disown(child.id() as i32);
    let run = Run {
        cmdline,
        status: status.unwrap_or(Exit::Signal(libc::SIGKILL)),
        stdout: String::from_utf8_lossy(&fs::read(&outp).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&errp).unwrap_or_default()).into_owned(),
        elapsed,
    };
    assert!(status.is_some(), "stasis hung for {timeout:?} and was killed:\n{run}");
    run
}

pub fn stasis(dir: &Path, args: &[&str]) -> Run {
    let a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    stasis_in(dir, &a, STASIS_TIMEOUT)
}

/// Assert the error contract: exit 1, exactly one stderr line starting
/// `stasis: error: `, no panic, mentioning every one of `needles`
/// (case-insensitive).
pub fn assert_clean_error(run: &Run, needles: &[&str], ctx: &dyn fmt::Display) {
    assert_eq!(run.status, Exit::Code(1), "expected exit code 1\n{run}\n{ctx}");
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "stasis panicked\n{run}\n{ctx}"
    );
    let lines: Vec<&str> = run.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "exit code 1 but no error line on stderr\n{run}\n{ctx}");
    assert_eq!(lines.len(), 1, "expected exactly one stderr line, got {}\n{run}\n{ctx}", lines.len());
    assert!(lines[0].starts_with("stasis: error: "), "stderr must start with 'stasis: error: '\n{run}\n{ctx}");
    let low = lines[0].to_lowercase();
    for n in needles {
        assert!(low.contains(&n.to_lowercase()), "error line should mention {n:?}\n{run}\n{ctx}");
    }
}

// ---------------------------------------------------------------------------
// the workload
// ---------------------------------------------------------------------------

pub struct Workload {
    pub name: String,
    pub tmp: TempDir,
    /// WORKDIR of the workload (argv[1] of the C workloads).
    pub work: PathBuf,
    /// Image directory.
    pub img: PathBuf,
    pub out: PathBuf,
    pub err: PathBuf,
    /// PID of the original (and, after restore, of the restored) process.
    pub pid: i32,
    child: Option<Child>,
    restored: Option<i32>,
    helpers: Vec<Child>,
    /// Every stasis invocation, for failure messages.
    pub runs: Vec<String>,
    /// Wall time between the end of the last restore and the exit.
    pub restored_at: Option<Instant>,
}

impl Workload {
    /// Temp dirs only; no process yet.
    pub fn new(name: &str) -> Workload {
        let tmp = TempDir::new(name);
        let work = tmp.path.join("work");
        let img = tmp.path.join("img");
        fs::create_dir(&work).expect("mkdir work");
        fs::create_dir(&img).expect("mkdir img");
        let out = tmp.path.join("stdout.txt");
        let err = tmp.path.join("stderr.txt");
        Workload {
            name: name.to_string(),
            work,
            img,
            out,
            err,
            tmp,
            pid: 0,
            child: None,
            restored: None,
            helpers: Vec::new(),
            runs: Vec::new(),
            restored_at: None,
        }
    }

    /// Compile tests/workloads/NAME.c, run it as `NAME WORKDIR ARGS...`,
    /// wait for READY.
    pub fn start(name: &str, args: &[&str]) -> Workload {
        let bin = workload_bin(name);
        let mut w = Workload::new(name);
        let mut a: Vec<OsString> = vec![w.work.clone().into_os_string()];
        a.extend(args.iter().map(OsString::from));
        w.spawn(&bin, &a);
        w.wait_ready();
        w
    }

    /// Spawn `program args` (stdin /dev/null, stdout/stderr to files, fds >2
    /// closed, cwd WORKDIR).
    pub fn spawn(&mut self, program: &Path, args: &[OsString]) {
        self.spawn_with_stdout(program, args, None)
    }

    pub fn spawn_with_stdout(&mut self, program: &Path, args: &[OsString], stdout: Option<&Path>) {
        assert!(self.child.is_none(), "already spawned");
        if let Some(p) = stdout {
            self.out = p.to_path_buf();
        }
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(File::create(&self.out).expect("create stdout file"))
            .stderr(File::create(&self.err).expect("create stderr file"));
        close_fds_above_2(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        self.pid = child.id() as i32;
        own(self.pid);
        self.child = Some(child);
    }

    /// Start a helper program (killed and reaped on drop).
    pub fn spawn_helper(&mut self, program: &Path, args: &[OsString], label: &str) -> i32 {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(File::create(self.tmp.path.join(format!("{label}.out"))).unwrap())
            .stderr(File::create(self.tmp.path.join(format!("{label}.err"))).unwrap());
        close_fds_above_2(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let pid = child.id() as i32;
        own(pid);
        self.helpers.push(child);
        pid
    }

    pub fn helper_output(&self, label: &str) -> String {
        fs::read_to_string(self.tmp.path.join(format!("{label}.out"))).unwrap_or_default()
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.out).unwrap_or_default()).into_owned()
    }

    /// stdout for humans: NULs made visible, binary output summarised.
    fn output_for_report(&self) -> String {
        let b = fs::read(&self.out).unwrap_or_default();
        let odd = b.iter().filter(|c| **c > 126 || (**c < 32 && **c != b'\n' && **c != b'\t' && **c != 0)).count();
        if odd > b.len() / 20 {
            return format!("<{} bytes of binary output>", b.len());
        }
        let s = String::from_utf8_lossy(&b).replace('\0', "\\0");
        if s.len() > 20000 {
            let cut = s.len() - 20000;
            let cut = (cut..s.len()).find(|i| s.is_char_boundary(*i)).unwrap_or(cut);
            format!("...[{cut} bytes cut]\n{}", &s[cut..])
        } else {
            s
        }
    }

    pub fn stderr_output(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.err).unwrap_or_default()).into_owned()
    }

    /// Everything useful for a failure message.
    pub fn report(&self) -> String {
        let mut s = format!("--- workload {} (pid {}) in {}\n", self.name, self.pid, self.tmp.path.display());
        s += &format!("--- stdout:\n{}\n", self.output_for_report());
        let err = self.stderr_output();
        if !err.is_empty() {
            s += &format!("--- stderr:\n{err}\n");
        }
        for r in &self.runs {
            s += r;
        }
        s
    }

    /// Values of `INFO key=value` lines.
    pub fn infos(&self, key: &str) -> Vec<String> {
        let pre = format!("INFO {key}=");
        self.output().lines().filter_map(|l| l.strip_prefix(&pre).map(str::to_string)).collect()
    }

    pub fn info(&self, key: &str) -> String {
        self.infos(key).into_iter().next().unwrap_or_else(|| panic!("no INFO {key}=\n{}", self.report()))
    }

    pub fn wait_ready(&mut self) {
        self.wait_for_line("READY", READY_TIMEOUT);
    }

    /// Wait until stdout has a line equal to `line`; fail early if the
    /// process dies.
    pub fn wait_for_line(&mut self, line: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            if self.output().lines().any(|l| l == line) {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    disown(self.pid);
                    panic!("workload exited ({st}) before printing {line:?}\n{}", self.report());
                }
            }
            assert!(Instant::now() < end, "no {line:?} from the workload within {timeout:?}\n{}", self.report());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait until task `tid` of the workload is blocked in one of `nrs`.
    pub fn wait_in_syscall(&self, tid: i32, nrs: &[i64]) {
        let ok = wait_until(Duration::from_secs(10), || {
            syscall_of(self.pid, tid).is_some_and(|n| nrs.contains(&n))
                && tasks_of(self.pid).iter().any(|t| t.0 == tid && (t.1 == 'S' || t.1 == 'D'))
        });
        assert!(
            ok,
            "task {tid} never blocked in syscall {nrs:?} (now: {:?})\n{}",
            fs::read_to_string(format!("/proc/{}/task/{tid}/syscall", self.pid)),
            self.report()
        );
    }

    /// Wait until every task of the workload is sleeping.
    pub fn wait_all_sleeping(&self) {
        let ok = wait_until(Duration::from_secs(10), || {
            let t = tasks_of(self.pid);
            !t.is_empty() && t.iter().all(|t| t.1 == 'S')
        });
        assert!(ok, "not all tasks asleep: {:?}\n{}", tasks_of(self.pid), self.report());
    }

    pub fn thread_count(&self) -> usize {
        tasks_of(self.pid).len()
    }

    // -- stasis ------------------------------------------------------------

    pub fn stasis(&mut self, args: &[&OsStr]) -> Run {
        self.stasis_timeout(args, STASIS_TIMEOUT)
    }

    pub fn stasis_timeout(&mut self, args: &[&OsStr], timeout: Duration) -> Run {
        let r = stasis_in(&self.tmp.path, args, timeout);
        self.runs.push(r.to_string());
        r
    }

    fn pid_s(&self) -> String {
        self.pid.to_string()
    }

    /// `stasis dump -t PID -D img EXTRA...` without assertions.
    pub fn try_dump(&mut self, extra: &[&str]) -> Run {
        let pid = self.pid_s();
        let img = self.img.clone();
        let mut a: Vec<&OsStr> = vec![OsStr::new("dump"), OsStr::new("-t"), OsStr::new(&pid), OsStr::new("-D")];
        a.push(img.as_os_str());
        a.extend(extra.iter().map(OsStr::new));
        self.stasis(&a)
    }

    /// Dump (must succeed) and reap the original, which stasis must have
    /// killed with SIGKILL.  No-op in direct mode.
    pub fn dump(&mut self) {
        if let Some(r) = self.dump_or_refusal() {
            panic!("dump failed ({:?})\n{}", r.status, self.report());
        }
    }

    /// Like dump(), but a failed dump is returned (and the original left
    /// alone) instead of failing the test.  None in direct mode.
    pub fn dump_or_refusal(&mut self) -> Option<Run> {
        self.dump_or_refusal_with(&[])
    }

    /// Killing dump with EXTRA options (must succeed); the original is reaped.
    pub fn dump_with(&mut self, extra: &[&str]) {
        if let Some(r) = self.dump_or_refusal_with(extra) {
            panic!("dump failed ({:?})\n{}", r.status, self.report());
        }
    }

    pub fn dump_or_refusal_with(&mut self, extra: &[&str]) -> Option<Run> {
        if direct() {
            return None;
        }
        let r = self.try_dump(extra);
        if !r.ok() {
            return Some(r);
        }
        let mut child = self.child.take().expect("dump: no original child to reap");
        let st = wait_child_timeout(&mut child, Duration::from_secs(10));
        if st.is_none() {
            kill_child(&mut child);
        }
        disown(self.pid);
        assert_eq!(
            st,
            Some(Exit::Signal(libc::SIGKILL)),
            "after a dump without --leave-running the original must be SIGKILLed\n{}",
            self.report()
        );
        assert!(!pid_exists(self.pid), "pid {} still exists after the dump", self.pid);
        // the tree's other processes were killed too: they come to us (the subreaper)
        // as zombies, whose pids a restore needs (live children of the test's own, e.g.
        // an outside peer it started, are left alone)
        let settled = wait_until(Duration::from_secs(10), || {
            let zombies: Vec<i32> = stray_children().into_iter().filter(|s| s.1 == 'Z').map(|s| s.0).collect();
            for z in &zombies {
                let _ = waitpid_timeout(*z, Duration::from_secs(1));
            }
            zombies.is_empty()
        });
        assert!(settled, "the dumped tree's zombies could not be reaped\n{}", self.report());
        None
    }

    /// Killing dump (must succeed) whose original the test, its parent, reaps only
    /// `delay` after the dump returned, while `during` runs: the dumped pid is still
    /// held (a zombie) when `during` starts. Returns what `during` returned; asserts the
    /// original died of SIGKILL.
    pub fn dump_reaping_late<T>(&mut self, delay: Duration, during: impl FnOnce(&mut Self) -> T) -> T {
        let r = self.try_dump(&[]);
        assert!(r.ok(), "dump failed\n{}", self.report());
        let mut child = self.child.take().expect("dump: no original child to reap");
        disown(self.pid);
        let reaper = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let st = wait_child_timeout(&mut child, Duration::from_secs(10));
            if st.is_none() {
                kill_child(&mut child);
            }
            st
        });
        let out = during(self);
        let st = reaper.join().expect("reaper thread");
        assert_eq!(st, Some(Exit::Signal(libc::SIGKILL)), "the original must have been SIGKILLed\n{}", self.report());
        out
    }

    /// Dump with --leave-running (must succeed); the process must still run,
    /// untraced and not stopped.
    pub fn dump_leave_running(&mut self) {
        if direct() {
            return;
        }
        let r = self.try_dump(&["--leave-running"]);
        assert!(r.ok(), "dump --leave-running failed\n{}", self.report());
        self.assert_running_untouched();
    }

    /// `dump --leave-running`; the original then passes its checks and exits; then the
    /// image is restored into a copy waiting for go (with --allow-changed-files: stdout
    /// grew by the original's verdict, the copy writes its own at its offset). False in
    /// direct mode (nothing was dumped).
    pub fn leave_running_then_restore(&mut self) -> bool {
        self.leave_running_then_restore_with(0, |_| {})
    }

    /// `leave_running_then_restore` of a workload whose original ends with status `code`;
    /// `after_dump` checks the original right after the dump.
    pub fn leave_running_then_restore_with(&mut self, code: i32, after_dump: impl FnOnce(&Self)) -> bool {
        self.dump_leave_running();
        if direct() {
            return false;
        }
        after_dump(self);
        self.go();
        let st = self.wait_exit(EXIT_TIMEOUT);
        let out = self.output();
        assert!(st == Exit::Code(code) && out.contains("PASS") && !out.contains("FAIL"), "original after the dump: {st:?}\n{}", self.report());
        std::fs::remove_file(self.work.join("go")).unwrap();
        self.restore_with(&["--allow-changed-files"]);
        true
    }

    /// The original is alive, no task is stopped or traced.
    pub fn assert_running_untouched(&mut self) {
        if let Some(c) = self.child.as_mut() {
            assert!(matches!(c.try_wait(), Ok(None)), "the workload died\n{}", self.report());
        }
        // A task may be caught for an instant in a transitional state after
        // a detach; insist on a clean state within a second.
        let ok = wait_until(Duration::from_secs(1), || {
            let t = tasks_of(self.pid);
            !t.is_empty() && t.iter().all(|(_, st, tr)| *st != 'T' && *st != 't' && *tr == 0)
        });
        assert!(ok, "workload left stopped or traced: {:?} (tid, state, tracer)\n{}", tasks_of(self.pid), self.report());
    }

    /// `stasis restore -D img EXTRA...` without assertions.
    pub fn try_restore(&mut self, extra: &[&str]) -> Run {
        let img = self.img.clone();
        self.try_restore_from(&img, extra)
    }

    pub fn try_restore_from(&mut self, img: &Path, extra: &[&str]) -> Run {
        self.try_restore_timeout(img, extra, STASIS_TIMEOUT)
    }

    pub fn try_restore_timeout(&mut self, img: &Path, extra: &[&str], timeout: Duration) -> Run {
        let mut a: Vec<&OsStr> = vec![OsStr::new("restore"), OsStr::new("-D"), img.as_os_str()];
        a.extend(extra.iter().map(OsStr::new));
        self.stasis_timeout(&a, timeout)
    }

    /// Detached restore (must succeed, pidfile must hold the original PID);
    /// afterwards the process is our child.  No-op in direct mode.
    pub fn restore(&mut self) {
        let img = self.img.clone();
        self.restore_from(&img);
    }

    pub fn restore_from(&mut self, img: &Path) {
        self.restore_from_with(img, &[]);
    }

    /// Detached restore with EXTRA options (e.g. `--allow-changed-files`).
    pub fn restore_with(&mut self, extra: &[&str]) {
        let img = self.img.clone();
        self.restore_from_with(&img, extra);
    }

    pub fn restore_from_with(&mut self, img: &Path, extra: &[&str]) {
        self.restore_from_with_fds(img, extra, &[]);
    }

    /// Detached restore with EXTRA options and `fds` (target fd number, our fd) handed
    /// to stasis, e.g. for `--inherit-fd`.
    pub fn restore_from_with_fds(&mut self, img: &Path, extra: &[&str], fds: &[(i32, i32)]) {
        if direct() {
            return;
        }
        assert!(self.child.is_none() && self.restored.is_none(), "restore: the previous process was not reaped");
        let pidfile = self.tmp.path.join("restored.pid");
        let _ = fs::remove_file(&pidfile);
        let pf = pidfile.to_string_lossy().to_string();
        let mut a = vec!["-d", "--pidfile", &pf];
        a.extend_from_slice(extra);
        let mut args: Vec<&OsStr> = vec![OsStr::new("restore"), OsStr::new("-D"), img.as_os_str()];
        args.extend(a.iter().map(OsStr::new));
        let r = stasis_in_with_fds(&self.tmp.path, &args, STASIS_TIMEOUT, fds);
        self.runs.push(r.to_string());
        // Whatever happened, a process with our pid is ours to clean up.
        if pid_exists(self.pid) {
            self.restored = Some(self.pid);
            own(self.pid);
        }
        assert!(r.ok(), "restore failed\n{}", self.report());
        // every warning said once (without timestamps)
        let said: Vec<&str> = r.stderr.lines().map(|l| l.split_once(' ').map_or(l, |x| x.1)).collect();
        let twice = said.iter().enumerate().find(|(i, l)| said[..*i].contains(l));
        assert!(twice.is_none(), "restore said a line twice: {:?}\n{}", twice.map(|x| x.1), self.report());
        let got = fs::read_to_string(&pidfile).unwrap_or_default();
        assert_eq!(got.trim(), self.pid.to_string(), "pidfile {pf} must hold the original pid\n{}", self.report());
        assert!(pid_exists(self.pid), "no process {} after a successful restore -d\n{}", self.pid, self.report());
        self.restored = Some(self.pid);
        own(self.pid);
        // After `restore -d` returns the process must be re-parented to us
        // (the nearest subreaper); give an exiting intermediate a moment.
        let me = my_pid();
        let ok = wait_until(Duration::from_secs(2), || stat_of(self.pid).is_some_and(|(_, pp)| pp == me));
        assert!(
            ok,
            "restored pid {} is not a child of the test (ppid {:?}); it should be re-parented to the subreaper\n{}",
            self.pid,
            stat_of(self.pid),
            self.report()
        );
        self.restored_at = Some(Instant::now());
    }

    /// dump + restore (nothing in direct mode).
    pub fn checkpoint_restore(&mut self) {
        self.dump();
        self.restore();
    }

    /// Restore in the foreground: stasis waits for the process and exits
    /// with its status.  Create `go` first if the workload waits for it.
    /// In direct mode: wait for the original instead.
    pub fn restore_foreground(&mut self, timeout: Duration) -> Exit {
        if direct() {
            return self.wait_exit(timeout);
        }
        assert!(self.child.is_none(), "restore_foreground: original not reaped");
        let img = self.img.clone();
        let a: Vec<&OsStr> = vec![OsStr::new("restore"), OsStr::new("-D"), img.as_os_str()];
        let n = RUN_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let outp = self.tmp.path.join(format!("stasis-{n:02}-restore-fg.out"));
        let errp = self.tmp.path.join(format!("stasis-{n:02}-restore-fg.err"));
        let mut cmd = Command::new(STASIS);
        cmd.args(&a)
            .stdin(Stdio::null())
            .stdout(File::create(&outp).unwrap())
            .stderr(File::create(&errp).unwrap());
        close_fds_above_2(&mut cmd);
        let start = Instant::now();
        let mut child = cmd.spawn().expect("spawn stasis restore");
        own(child.id() as i32);
        let st = wait_child_timeout(&mut child, timeout + Duration::from_secs(10));
        let run = Run {
            cmdline: format!("stasis restore -D {}", img.display()),
            status: st.unwrap_or(Exit::Signal(libc::SIGKILL)),
            stdout: fs::read_to_string(&outp).unwrap_or_default(),
            stderr: fs::read_to_string(&errp).unwrap_or_default(),
            elapsed: start.elapsed(),
        };
        self.runs.push(run.to_string());
        if st.is_none() {
            kill_child(&mut child);
            disown(child.id() as i32);
            panic!("foreground restore did not finish within {timeout:?}\n{}", self.report());
        }
        disown(child.id() as i32);
        run.status
    }

    pub fn go(&self) {
        File::create(self.work.join("go")).expect("create go file");
    }

    /// Write bytes into an existing work file in place (no truncation, so a
    /// MAP_SHARED mapping of it never sees a short file).
    pub fn poke(&self, file: &str, offset: u64, bytes: &[u8]) {
        let f = fs::OpenOptions::new().write(true).open(self.work.join(file)).expect("open for poke");
        f.write_all_at(bytes, offset).expect("poke");
    }

    /// Wait for the workload (restored one if any) to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Exit {
        if let Some(pid) = self.restored {
            match waitpid_timeout(pid, timeout) {
                Ok(st) => {
                    self.restored = None;
                    disown(pid);
                    st
                }
                Err(WaitErr::Timeout) => {
                    let tasks = tasks_of(pid);
                    let sys: Vec<String> = tasks
                        .iter()
                        .map(|t| {
                            format!(
                                "{}:{}",
                                t.0,
                                fs::read_to_string(format!("/proc/{pid}/task/{}/syscall", t.0))
                                    .unwrap_or_default()
                                    .trim()
                            )
                        })
                        .collect();
                    self.kill_restored();
                    panic!(
                        "restored workload did not exit within {timeout:?}; tasks {tasks:?}, syscalls {sys:?}\n{}",
                        self.report()
                    );
                }
                Err(WaitErr::NotChild) => {
                    panic!("restored pid {pid} is not our child (waitpid: ECHILD)\n{}", self.report());
                }
            }
        } else if let Some(mut c) = self.child.take() {
            let st = wait_child_timeout(&mut c, timeout);
            if st.is_none() {
                kill_child(&mut c);
                disown(self.pid);
                panic!("workload did not exit within {timeout:?}\n{}", self.report());
            }
            disown(self.pid);
            st.unwrap()
        } else {
            panic!("wait_exit: no process to wait for\n{}", self.report());
        }
    }

    /// go + wait + assert PASS.
    pub fn go_and_pass(&mut self) {
        self.go();
        let st = self.wait_exit(EXIT_TIMEOUT);
        self.assert_pass(st);
    }

    /// Exit 0, READY once, PASS, no FAIL.
    pub fn assert_pass(&self, st: Exit) {
        self.assert_pass_code(st, 0);
    }

    pub fn assert_pass_code(&self, st: Exit, code: i32) {
        let out = self.output();
        let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
        assert!(fails.is_empty(), "workload reported failures:\n  {}\n{}", fails.join("\n  "), self.report());
        let ready = out.lines().filter(|l| *l == "READY").count();
        assert_eq!(
            ready,
            1,
            "stdout must hold READY exactly once (0: stdout offset lost/overwritten; 2: restarted from scratch)\n{}",
            self.report()
        );
        assert!(out.lines().any(|l| l == "PASS"), "no PASS from the workload ({st:?})\n{}", self.report());
        assert!(!out.contains('\0'), "stdout has NUL bytes (offset restored past the end?)\n{}", self.report());
        assert_eq!(st, Exit::Code(code), "workload exit status\n{}", self.report());
    }

    /// Kill the restored process (if still ours) and reap it.
    pub fn kill_restored(&mut self) {
        if let Some(pid) = self.restored.take() {
            if stat_of(pid).is_some_and(|(_, pp)| pp == my_pid()) {
                // SAFETY: our unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = waitpid_timeout(pid, Duration::from_secs(10));
            }
            disown(pid);
        }
    }

    /// The restored process was reaped by the test itself.
    pub fn forget_restored(&mut self) {
        if let Some(pid) = self.restored.take() {
            disown(pid);
        }
    }

    /// The restored process dumped (killing) into the image directory, which must be
    /// empty or gone, and restored again.
    pub fn dump_restored_again(&mut self) {
        let r = self.try_dump(&[]);
        assert!(r.ok(), "dump of the restored process failed\n{}", self.report());
        self.kill_restored();
        let pid = self.pid;
        assert!(wait_until(Duration::from_secs(10), || !pid_exists(pid)), "the dumped restored process {pid} is still there\n{}", self.report());
        self.restore();
    }

    /// Kill and reap the original (e.g. after --leave-running).
    pub fn kill_original(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_child(&mut c);
            disown(self.pid);
        }
    }

    /// Is the original still running (not reaped, not exited)?
    pub fn original_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn kill_helpers(&mut self) {
        for mut h in self.helpers.drain(..) {
            kill_child(&mut h);
            disown(h.id() as i32);
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.kill_original();
        self.kill_restored();
        self.kill_helpers();
        // A restore may have left something re-parented to us.
        std::thread::sleep(Duration::from_millis(20));
        reap_strays(true);
        // A killing dump of TCP connections leaves a network lock (nftables) for the
        // restore; a test that failed before (or never) restoring must not leave it.
        if !direct() && self.img.join("manifest.img").exists() {
            let img = self.img.clone();
            let _ = stasis_in(&self.tmp.path, &[OsStr::new("network-unlock"), img.as_os_str()], STASIS_TIMEOUT);
        }
    }
}

// ---------------------------------------------------------------------------
// convenience
// ---------------------------------------------------------------------------

/// The standard flow: start NAME, dump, restore -d, go, wait, assert PASS.
pub fn roundtrip(name: &str, args: &[&str]) -> Workload {
    let mut w = Workload::start(name, args);
    w.checkpoint_restore();
    w.go_and_pass();
    w
}

/// `roundtrip`, then the same workload again through `leave_running_then_restore`
/// (the original passes after a --leave-running dump, then a restored copy does).
pub fn roundtrip_both_modes(name: &str, args: &[&str]) {
    roundtrip(name, args);
    let mut w = Workload::start(name, args);
    if w.leave_running_then_restore() {
        w.go_and_pass();
    }
}

/// Same, dumping only once task PID is blocked in one of `nrs`.
pub fn roundtrip_in_syscall(name: &str, args: &[&str], nrs: &[i64]) -> Workload {
    let mut w = Workload::start(name, args);
    let pid = w.pid;
    w.wait_in_syscall(pid, nrs);
    w.checkpoint_restore();
    w.go_and_pass();
    w
}

// ---------------------------------------------------------------------------
// process trees
// ---------------------------------------------------------------------------

/// A `--leave-running` dump of workload `name` started with `args` (which make it write
/// its verdict to WORKDIR/result, so stdout never changes after the dump): the original
/// keeps running and passes its checks; then the image restores (`restore` with
/// `restore_extra`) into a copy that waits for go, passes them too and left stdout alone.
pub fn leave_running_then_restore(name: &str, args: &[&str], restore_extra: &[&str]) -> Workload {
    let mut w = Workload::start(name, args);
    w.dump_leave_running();
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.contains("PASS"), "original after dump --leave-running: {st:?} result {res:?}\n{}", w.report());
    if direct() {
        return w;
    }
    fs::rename(w.work.join("result"), w.work.join("result.orig")).unwrap();
    fs::remove_file(w.work.join("go")).unwrap();
    w.restore_with(restore_extra);
    std::thread::sleep(Duration::from_millis(200));
    assert!(pid_exists(w.pid), "restored copy did not wait for go\n{}", w.report());
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    let res = fs::read_to_string(w.work.join("result")).unwrap_or_default();
    assert!(st == Exit::Code(0) && res.contains("PASS"), "restored copy: {st:?} result {res:?}\n{}", w.report());
    let ready = w.output().lines().filter(|l| *l == "READY").count();
    assert_eq!(ready, 1, "stdout must hold READY once\n{}", w.report());
    w
}

/// Dump (the tree dies), reap the killed descendants re-parented to us, restore, check
/// that every pid in `kids` exists again.
pub fn dump_and_restore_tree(w: &mut Workload, kids: &[i32]) {
    if direct() {
        return;
    }
    dump_and_reap_tree(w, kids);
    w.restore();
    for k in kids {
        assert!(pid_exists(*k), "process {k} of the tree was not restored\n{}", w.report());
    }
}

/// Dump (the tree dies) and reap the killed descendants re-parented to us, so that every
/// pid in `kids` is free again.
pub fn dump_and_reap_tree(w: &mut Workload, kids: &[i32]) {
    w.dump();
    reap_dumped(w, kids);
}

/// After a dump: reap the killed descendants re-parented to us until every pid in
/// `kids` is free again.
pub fn reap_dumped(w: &Workload, kids: &[i32]) {
    let gone = wait_until(Duration::from_secs(10), || {
        reap_strays(false);
        kids.iter().all(|k| !pid_exists(*k))
    });
    assert!(gone, "processes of the dumped tree still exist\n{}", w.report());
}

/// `stasis inspect --json` of the workload's image.
pub fn inspect_json(w: &mut Workload) -> serde_json::Value {
    let img = w.img.clone();
    let r = w.stasis(&[OsString::from("inspect").as_os_str(), img.as_os_str(), OsString::from("--json").as_os_str()]);
    assert!(r.ok(), "inspect failed\n{}", w.report());
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("inspect output is not JSON: {e}\n{}", w.report()))
}

/// Bytes buffered in each distinct pipe (or FIFO) object of the image, by object kind.
pub fn buffered_bytes(img: &serde_json::Value, kinds: &[&str]) -> Vec<u64> {
    let mut seen = std::collections::BTreeMap::new();
    for p in img["processes"].as_array().into_iter().flatten() {
        for f in p["fds"].as_array().into_iter().flatten() {
            if kinds.contains(&f["kind"].as_str().unwrap_or("")) {
                let key = f.get("pipe").or_else(|| f.get("fifo")).cloned().unwrap_or_default().to_string();
                seen.insert(key, f["buffered_bytes"].as_u64().unwrap_or(0));
            }
        }
    }
    seen.into_values().collect()
}

/// Bytes of the pages files of `w`'s image.
pub fn pages_bytes(w: &Workload) -> u64 {
    fs::read_dir(&w.img)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

pub fn info_pids(w: &Workload, keys: &[&str]) -> Vec<i32> {
    keys.iter().flat_map(|k| w.infos(k)).map(|v| v.parse().unwrap()).collect()
}

/// Copy an image dir (flat) to `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("mkdir copy");
    for e in fs::read_dir(src).expect("read image dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &dst.join(e.file_name()));
        } else {
            fs::copy(&p, dst.join(e.file_name())).expect("copy image file");
        }
    }
}

/// XOR one byte of a file.
pub fn flip_byte(path: &Path, offset: u64) {
    let f = fs::OpenOptions::new().read(true).write(true).open(path).expect("open for flip");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read byte");
    b[0] ^= 0xff;
    f.write_all_at(&b, offset).expect("write byte");
}

pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).len()
}

/// Write a file (create/truncate).
pub fn write_file(path: &Path, data: &[u8]) {
    let mut f = File::create(path).expect("create");
    f.write_all(data).expect("write");
}

/// Skip helper for tests that only make sense with stasis in the loop.
#[macro_export]
macro_rules! skip_if_direct {
    () => {
        if $crate::common::direct() {
            eprintln!("STASIS_TEST_DIRECT: test needs stasis, skipped");
            return;
        }
    };
}

/// A POSIX message queue name ("/NAME") a test made, unlinked (if still there) when
/// dropped.
pub struct MqName(pub String);

impl Drop for MqName {
    fn drop(&mut self) {
        if let Ok(n) = std::ffi::CString::new(self.0.as_str()) {
            // SAFETY: n is NUL-terminated; mq_unlink only reads it.
            unsafe { libc::mq_unlink(n.as_ptr()) };
        }
    }
}
