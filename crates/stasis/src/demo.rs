//! `stasis demo`: the first thing to run. Starts a small counter program, checkpoints it,
//! shows that it is gone, restores it, and shows it counting on from where it stopped.
//!
//! Also home of the hidden `stasis __workload NAME ...` programs that demo and bench run.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use stasis_sys::probe;

/// The counter's tick.
const TICK: Duration = Duration::from_millis(200);
/// How many counter lines to show before the dump and after the restore.
const SHOW_LINES: usize = 5;
/// The counter gives up on its own after this many ticks (two minutes), in case it is ever
/// left behind.
const COUNTER_MAX: u64 = 600;
/// Longest we wait for `stasis dump` or `stasis restore`.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

/// `stasis __workload NAME ARGS...`: run one of the built-in test programs.
pub fn workload(args: &[String]) -> Result<ExitCode> {
    match args.first().map(String::as_str) {
        Some("counter") => counter(&args[1..]),
        Some("bench-fill") => crate::bench::workload_fill(&args[1..]),
        Some("bench-tree") => crate::bench::workload_tree(&args[1..]),
        Some(other) => bail!("unknown workload {other:?} (known: counter, bench-fill, bench-tree)"),
        None => bail!("__workload needs a workload name (counter, bench-fill, bench-tree)"),
    }
}

/// `counter LOGFILE`: every 200 ms add one to a number held in memory and append
/// `counter N` to LOGFILE (kept open, in append mode). It never reads the file back, so after a
/// restore the next number can only come from the restored memory.
fn counter(args: &[String]) -> Result<ExitCode> {
    let path = args
        .first()
        .context("usage: stasis __workload counter LOGFILE")?;
    // Own session and process group: the process then depends on nothing outside itself,
    // which is what a checkpoint of a single process needs. (Fails harmlessly if we already
    // lead one.)
    let _ = probe::new_session();
    // Start from stdio only: descriptors leaked to us by whatever started us (a shell, an
    // IDE, a CI runner) would be part of the checkpoint, and may be things stasis cannot dump.
    probe::close_inherited_fds().context("close inherited descriptors")?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {path}"))?;
    let mut n: u64 = 0;
    while n < COUNTER_MAX {
        if std::os::unix::process::parent_id() == 1 {
            break; // orphaned: whoever started us is gone
        }
        n += 1;
        // One write(2) per line, so a reader never sees half a line.
        log.write_all(format!("counter {n}\n").as_bytes())?;
        std::thread::sleep(TICK);
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// The demo
// ---------------------------------------------------------------------------------------------

/// Everything the demo must undo, whichever way it ends.
struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    log: PathBuf,
    image: PathBuf,
    /// The original counter, while it is (or may be) alive and not yet reaped.
    counter: Option<std::process::Child>,
    /// PID of the restored counter, while it may be alive.
    restored: Option<i32>,
}

impl Demo {
    fn new() -> Result<Demo> {
        let exe = std::env::current_exe().context("find the stasis binary")?;
        let dir = std::env::temp_dir().join(format!("stasis-demo-{}", std::process::id()));
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("remove old {}", dir.display()))?;
        }
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Ok(Demo {
            exe,
            log: dir.join("counter.log"),
            image: dir.join("image"),
            dir,
            counter: None,
            restored: None,
        })
    }

    /// Run `stasis ARGS...` to completion, its output going to files in the demo directory.
    /// Returns whether it succeeded, its combined output, and how long it took.
    fn stasis(&self, name: &str, args: &[&str]) -> Result<(bool, String, Duration)> {
        let out_path = self.dir.join(format!("{name}.out"));
        let out = File::create(&out_path)?;
        let err = out.try_clone()?;
        let start = Instant::now();
        let mut child = Command::new(&self.exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start stasis {name}"))?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > COMMAND_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "stasis {name} did not finish within {} s",
                    COMMAND_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let took = start.elapsed();
        let mut output = String::new();
        File::open(&out_path)?.read_to_string(&mut output)?;
        let output = output.trim().to_string();
        if !status.success() && output.is_empty() {
            return Ok((false, format!("(no output; {status})"), took));
        }
        Ok((status.success(), output, took))
    }

    /// Stop the restored counter and reap it.
    fn stop_restored(&mut self, pid: i32) -> Result<()> {
        self.restored = None;
        if !is_our_child(pid) {
            // Not re-parented to us (restore chose otherwise): we cannot reap it, but we can
            // still make sure this very counter stops.
            if is_counter(pid, &self.log) {
                let _ = probe::send_signal(pid, libc::SIGKILL);
                wait_gone(pid, Duration::from_secs(2));
            }
            return Ok(());
        }
        let _ = probe::send_signal(pid, libc::SIGTERM);
        if probe::wait_child(pid, Duration::from_secs(2))?.is_none() {
            probe::send_signal(pid, libc::SIGKILL)?;
            probe::wait_child(pid, Duration::from_secs(2))?;
        }
        Ok(())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(mut c) = self.counter.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = self.restored.take() {
            let _ = self.stop_restored(pid);
        }
        // Anything still attached to us now was left over by a failed restore (our only
        // children are the counter, already handled, and finished stasis commands).
        for pid in our_children() {
            let _ = probe::send_signal(pid, libc::SIGKILL);
            let _ = probe::wait_child(pid, Duration::from_secs(2));
        }
        probe::reap_exited_children();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether `pid` is a child of ours (so that signalling and reaping it is safe).
fn is_our_child(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1));
    ppid.and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id())
}

/// Our live children (the demo is single-threaded, so the main thread has them all).
fn our_children() -> Vec<i32> {
    let me = std::process::id();
    fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether `pid` is the demo counter writing to `log`.
fn is_counter(pid: i32, log: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.len() >= 4
        && args[1] == b"__workload"
        && args[2] == b"counter"
        && args[3] == log.as_os_str().as_encoded_bytes()
}

fn wait_gone(pid: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Follows a growing log file.
struct Tail {
    file: File,
    pending: String,
    last: Option<u64>,
}

impl Tail {
    fn open(path: &Path) -> Result<Tail> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match File::open(path) {
                Ok(file) => {
                    return Ok(Tail {
                        file,
                        pending: String::new(),
                        last: None,
                    })
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("the counter never created {}", path.display()))
                }
            }
        }
    }

    /// Complete lines added since the last call.
    fn new_lines(&mut self) -> Result<Vec<String>> {
        let mut buf = String::new();
        self.file.read_to_string(&mut buf)?;
        self.pending.push_str(&buf);
        let mut lines = Vec::new();
        while let Some(i) = self.pending.find('\n') {
            let line: String = self.pending.drain(..=i).collect();
            let line = line.trim_end().to_string();
            if let Some(n) = line.strip_prefix("counter ").and_then(|n| n.parse().ok()) {
                self.last = Some(n);
            }
            lines.push(line);
        }
        Ok(lines)
    }

    /// Print the next `count` lines as they arrive; returns the first number printed.
    fn show(&mut self, count: usize, timeout: Duration) -> Result<Option<u64>> {
        let deadline = Instant::now() + timeout;
        let mut shown = 0;
        let mut first = None;
        while shown < count {
            for line in self.new_lines()? {
                if first.is_none() {
                    first = self.last;
                }
                println!("       {line}");
                shown += 1;
            }
            if shown >= count {
                break;
            }
            if Instant::now() >= deadline {
                if shown == 0 {
                    return Ok(None);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(first)
    }

    fn size(&self) -> Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("       {l}\n")).collect()
}

/// `stasis demo`.
pub fn run() -> Result<()> {
    println!("stasis demo: checkpoint a running program, then bring it back.");
    println!();

    // Orphans (like the restored counter, once `stasis restore -d` exits) come to us, so we
    // can reap them: PID 1 here does not.
    probe::set_child_subreaper().context("prctl(PR_SET_CHILD_SUBREAPER)")?;
    // Programs we start (the counter, stasis dump/restore) get stdio and nothing else of ours.
    probe::cloexec_inherited_fds().context("mark inherited descriptors close-on-exec")?;
    let mut demo = Demo::new()?;

    let (pid, mut tail) = start_counter(&mut demo)?;
    let last = dump_counter(&mut demo, pid, &mut tail)?;
    wait_still(&demo, pid, &tail, last)?;
    restore_counter(&mut demo, pid, &mut tail, last)?;
    let now_pid = pid;
    // 5. Stop it and clean up.
    demo.stop_restored(now_pid)?;
    println!("5. Stopped the counter and removed {}.", demo.dir.display());
    drop(demo);
    println!();

    print!(
        "{}",
        wrap(
            "What happened: `stasis dump` froze the counter with ptrace and wrote everything that \
         made it that particular running program into the image directory: its memory (where \
         the count lives), its CPU registers, its open log file and its signal state. Then it \
         killed it, and for a second the image was all that was left of it. `stasis restore` \
         created a new process with the very same PID, rebuilt its memory and open files from \
         the image, and let it go on from the exact instruction where it was frozen. The \
         counter never noticed: it did not re-read its log, the next number simply came back \
         with its memory. Try it on a program of your own with `stasis dump -t PID -D DIR` and \
         `stasis restore -D DIR` (run `stasis check` first to see whether this kernel has what \
         stasis needs).",
            88
        )
    );
    Ok(())
}


/// Step 1: start the counter and show its first lines.
fn start_counter(demo: &mut Demo) -> Result<(i32, Tail)> {
    let log_arg = demo.log.to_string_lossy().into_owned();
    let child = Command::new(&demo.exe)
        .args(["__workload", "counter", &log_arg])
        .current_dir(&demo.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start the counter")?;
    let pid = child.id() as i32;
    demo.counter = Some(child);
    println!("1. Started a small counter program as PID {pid}. Every 200 ms it adds one to a");
    println!(
        "   number it keeps in memory and appends it to {}:",
        demo.log.display()
    );
    let mut tail = Tail::open(&demo.log)?;
    if tail.show(SHOW_LINES, Duration::from_secs(3))?.is_none() {
        bail!(
            "the counter (PID {pid}) wrote nothing to {}",
            demo.log.display()
        );
    }
    println!();

    Ok((pid, tail))
}

/// Step 2: dump it (which kills it), reap it; the last number it wrote.
fn dump_counter(demo: &mut Demo, pid: i32, tail: &mut Tail) -> Result<u64> {
    let image_arg = demo.image.to_string_lossy().into_owned();
    let pid_arg = pid.to_string();
    println!("2. Checkpointing it:  stasis dump -t {pid} -D {image_arg}");
    let (ok, output, took) = demo.stasis("dump", &["dump", "-t", &pid_arg, "-D", &image_arg])?;
    if !ok {
        println!("   stasis dump failed:");
        print!("{}", indent(&output));
        bail!("the demo stopped because `stasis dump` failed");
    }
    if !output.is_empty() {
        print!("{}", indent(&output));
    }
    // The dump killed the counter: reap it so its PID is free again for the restore.
    let mut counter = demo.counter.take().expect("counter is running");
    let deadline = Instant::now() + Duration::from_secs(3);
    let ended = loop {
        if let Some(status) = counter.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if ended.is_none() {
        demo.counter = Some(counter);
        bail!("`stasis dump` succeeded but the counter (PID {pid}) is still running");
    }
    let image_size = dir_size(&demo.image);
    println!(
        "   Done in {} ms. The image holds {}; the counter process is gone.",
        took.as_millis(),
        human_size(image_size)
    );
    let _ = tail.new_lines()?; // anything written just before the freeze
    let last = tail.last.context("no counter line was written")?;
    println!();

    Ok(last)
}

/// Step 3: nothing moves while only the image exists.
fn wait_still(demo: &Demo, pid: i32, tail: &Tail, last: u64) -> Result<()> {
    print!("3. Waiting a second");
    std::io::stdout().flush()?;
    let size_before = tail.size()?;
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(250));
        print!(".");
        std::io::stdout().flush()?;
    }
    let size_after = tail.size()?;
    println!();
    if size_after != size_before {
        bail!(
            "{} grew after the dump: something is still writing to it",
            demo.log.display()
        );
    }
    let gone = !Path::new(&format!("/proc/{pid}")).exists();
    println!(
        "   Nothing moved: the log still ends at \"counter {last}\"{}.",
        if gone {
            format!(" and there is no PID {pid} any more")
        } else {
            String::new()
        }
    );
    println!();

    Ok(())
}

/// Step 4: restore it and check it goes on at the next number with its pid.
fn restore_counter(demo: &mut Demo, pid: i32, tail: &mut Tail, last: u64) -> Result<()> {
    let image_arg = demo.image.to_string_lossy().into_owned();
    let pidfile = demo.dir.join("restored.pid");
    let pidfile_arg = pidfile.to_string_lossy().into_owned();
    println!("4. Restoring it:  stasis restore -D {image_arg} -d --pidfile {pidfile_arg}");
    let (ok, output, took) = demo.stasis(
        "restore",
        &["restore", "-D", &image_arg, "-d", "--pidfile", &pidfile_arg],
    )?;
    let restored_pid = fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    // Whatever happened, a counter process under our PID or the reported one is ours to stop.
    for p in [Some(pid), restored_pid].into_iter().flatten() {
        if is_counter(p, &demo.log) {
            demo.restored = Some(p);
        }
    }
    if !ok {
        println!("   stasis restore failed:");
        print!("{}", indent(&output));
        bail!("the demo stopped because `stasis restore` failed");
    }
    if !output.is_empty() {
        print!("{}", indent(&output));
    }
    let now_pid = restored_pid.unwrap_or(pid);
    demo.restored = Some(now_pid);
    println!(
        "   Done in {} ms. PID {now_pid} is running again and writing to the same log:",
        took.as_millis()
    );
    let first = tail.show(SHOW_LINES, Duration::from_secs(3))?;
    let Some(first) = first else {
        bail!("the restored counter (PID {now_pid}) has not written anything");
    };
    println!();
    if now_pid != pid {
        bail!("the counter came back as PID {now_pid}, not {pid}");
    }
    if first != last + 1 {
        bail!("the restored counter went on at {first}, but it stopped at {last}: its memory was not restored intact");
    }
    println!("   It went on at {first}, right after {last}, as the same PID {pid}.");
    println!();

    Ok(())
}

/// Break `text` into lines of at most `width` columns (at spaces).
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}
