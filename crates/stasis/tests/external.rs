//! Resources shared with a process outside the dumped tree (`dump --external`,
//! `restore --inherit-fd`).
//!
//! The workload (`ext_shared`) and an outside helper (`ext_helper`, not in the tree)
//! share a pipe pair or a MAP_SHARED memfd (or, in the third test, the workload's
//! parent shares MAP_SHARED|MAP_ANONYMOUS memory with it). Dump must refuse with one line naming both
//! processes and the resource, leaving the workload running; with `--external` it
//! dumps; restore refuses without the `--inherit-fd` an external shared-memory object
//! needs (no process left), and with it the restored workload talks to a new pipe pair
//! or memfd the test provides, both ways.
//!
//! These tests spawn their processes themselves (the harness closes every fd above 2),
//! and kill and reap all of them, the restored one included, on the way out.

mod common;

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Pids that are our children (spawned, or restored and re-parented to us): killed and
/// reaped on drop.
#[derive(Default)]
struct Procs(Vec<i32>);

impl Procs {
    fn forget(&mut self, pid: i32) {
        self.0.retain(|p| *p != pid);
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if stat_of(pid).is_some_and(|(_, pp)| pp == std::process::id() as i32) {
                // SAFETY: pid is our unreaped child, so it cannot have been recycled.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = waitpid_timeout(pid, Duration::from_secs(10));
            }
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn memfd(name: &str, size: u64) -> File {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: plain memfd_create with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just created and is owned here.
    let f = unsafe { File::from_raw_fd(fd) };
    f.set_len(size).expect("ftruncate memfd");
    f
}

fn ino(fd: RawFd) -> u64 {
    fs::metadata(format!("/proc/self/fd/{fd}")).expect("stat fd").ino()
}

/// Spawns `bin WORKDIR args...` (stdout/stderr to `label`.out/.err in `tmp`) with `fds`.
fn spawn(procs: &mut Procs, tmp: &Path, bin: &Path, args: &[&str], fds: &[(i32, RawFd)], label: &str) -> i32 {
    let mut cmd = Command::new(bin);
    cmd.arg(tmp.join("work"))
        .args(args)
        .current_dir(tmp.join("work"))
        .stdin(Stdio::null())
        .stdout(File::create(tmp.join(format!("{label}.out"))).unwrap())
        .stderr(File::create(tmp.join(format!("{label}.err"))).unwrap());
    give_fds(&mut cmd, fds);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let pid = child.id() as i32;
    procs.0.push(pid);
    pid
}

fn output(tmp: &Path, label: &str) -> String {
    fs::read_to_string(tmp.join(format!("{label}.out"))).unwrap_or_default()
}

fn wait_ready(tmp: &Path, label: &str, pid: i32) {
    let ok = wait_until(READY_TIMEOUT, || output(tmp, label).lines().any(|l| l == "READY") || !pid_exists(pid));
    assert!(
        ok && output(tmp, label).lines().any(|l| l == "READY"),
        "{label} (pid {pid}) never printed READY:\n{}{}",
        output(tmp, label),
        fs::read_to_string(tmp.join(format!("{label}.err"))).unwrap_or_default()
    );
}

static RESTORES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `stasis restore -D img -d --pidfile F EXTRA...` with `fds` handed to the restorer.
fn restore_with_fds(tmp: &Path, extra: &[&str], fds: &[(i32, RawFd)]) -> Run {
    let img = tmp.join("img");
    let pidfile = tmp.join("restored.pid");
    let _ = fs::remove_file(&pidfile);
    let mut args: Vec<OsString> = vec!["restore".into(), "-D".into(), img.into(), "-d".into(), "--pidfile".into(), pidfile.into()];
    args.extend(extra.iter().map(OsString::from));
    let n = RESTORES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (outp, errp) = (tmp.join(format!("restore-{n}.out")), tmp.join(format!("restore-{n}.err")));
    let mut cmd = Command::new(STASIS);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(File::create(&outp).unwrap())
        .stderr(File::create(&errp).unwrap());
    give_fds(&mut cmd, fds);
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn stasis restore");
    let pid = child.id() as i32;
    // -d: stasis returns once the process runs; a hang fails the test.
    let st = waitpid_timeout(pid, STASIS_TIMEOUT);
    if st.is_err() {
        // SAFETY: our unreaped child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = waitpid_timeout(pid, Duration::from_secs(10));
    }
    let run = Run {
        cmdline: format!("stasis {}", args.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>().join(" ")),
        status: *st.as_ref().unwrap_or(&Exit::Signal(libc::SIGKILL)),
        stdout: fs::read_to_string(&outp).unwrap_or_default(),
        stderr: fs::read_to_string(&errp).unwrap_or_default(),
        elapsed: start.elapsed(),
    };
    let done = st.is_ok();
    assert!(done, "stasis restore hung:\n{run}");
    run
}

fn dump(tmp: &Path, pid: i32, extra: &[&str]) -> Run {
    let img = tmp.join("img");
    let pid = pid.to_string();
    let mut a = vec!["dump", "-t", &pid, "-D", img.to_str().unwrap()];
    a.extend_from_slice(extra);
    stasis(tmp, &a)
}

/// Alive, not stopped, not traced: a refused dump leaves the process untouched.
fn assert_untouched(pid: i32, ctx: &str) {
    let ok = wait_until(Duration::from_secs(1), || {
        let t = tasks_of(pid);
        !t.is_empty() && t.iter().all(|(_, st, tr)| *st != 'T' && *st != 't' && *st != 'Z' && *tr == 0)
    });
    assert!(ok, "pid {pid} not left running untouched after a refused dump: {:?}\n{ctx}", tasks_of(pid));
}

/// After a successful dump: the original died by SIGKILL; reap it so its pid is free.
fn reap_dumped(procs: &mut Procs, pid: i32) {
    let st = waitpid_timeout(pid, Duration::from_secs(10));
    assert!(matches!(st, Ok(Exit::Signal(libc::SIGKILL))), "dumped pid {pid} ended with {st:?}, expected SIGKILL");
    procs.forget(pid);
}

/// After a successful `restore -d`: the pidfile holds `pid`, which is our child again.
fn adopt_restored(procs: &mut Procs, tmp: &Path, pid: i32, run: &Run) {
    if pid_exists(pid) {
        procs.0.push(pid);
    }
    assert!(run.ok(), "restore failed\n{run}");
    let got = fs::read_to_string(tmp.join("restored.pid")).unwrap_or_default();
    assert_eq!(got.trim(), pid.to_string(), "pidfile\n{run}");
    let me = std::process::id() as i32;
    assert!(
        wait_until(Duration::from_secs(2), || stat_of(pid).is_some_and(|(_, pp)| pp == me)),
        "restored pid {pid} is not re-parented to the test\n{run}"
    );
}

fn assert_pass(tmp: &Path, pid: i32, procs: &mut Procs) {
    let st = waitpid_timeout(pid, EXIT_TIMEOUT);
    procs.forget(pid);
    let out = output(tmp, "stdout");
    assert!(matches!(st, Ok(Exit::Code(0))), "restored workload ended with {st:?}:\n{out}");
    assert_eq!(out.lines().filter(|l| *l == "READY").count(), 1, "READY must appear once:\n{out}");
    assert!(out.lines().any(|l| l == "PASS") && !out.contains("FAIL"), "workload output:\n{out}");
}

#[test]
fn pipe_shared_with_outside_process_needs_external_and_inherit_fd() {
    skip_if_direct!();
    let _t = serial();
    let tmp = TempDir::new("external-pipe");
    let dir = tmp.path.clone();
    fs::create_dir(dir.join("work")).unwrap();
    let mut procs = Procs::default();
    // a: outside -> workload (its fd 5); b: workload (fd 6) -> outside
    let (a_r, a_w) = pipe();
    let (b_r, b_w) = pipe();
    let (ino_a, ino_b) = (ino(a_r.as_raw_fd()), ino(b_r.as_raw_fd()));
    let helper = spawn(&mut procs, &dir, &workload_bin("ext_helper"), &[], &[(3, a_w.as_raw_fd()), (4, b_r.as_raw_fd())], "helper");
    let wl = spawn(&mut procs, &dir, &workload_bin("ext_shared"), &["pipe"], &[(5, a_r.as_raw_fd()), (6, b_w.as_raw_fd())], "stdout");
    drop((a_r, a_w, b_r, b_w)); // only the helper and the workload hold them now
    wait_ready(&dir, "helper", helper);
    wait_ready(&dir, "stdout", wl);
    let ctx = format!("workload pid {wl}, helper pid {helper}, pipes {ino_a} and {ino_b}");

    // Not marked: refused, naming both processes, the fd and the pipe.
    let r = dump(&dir, wl, &[]);
    let pa = format!("pipe:[{ino_a}]");
    let pb = format!("pipe:[{ino_b}]");
    let wl_s = format!("pid {wl} (ext_shared)");
    let helper_s = format!("pid {helper} (ext_helper)");
    assert_clean_error(&r, &[&wl_s, &helper_s, "fd 5", &pa, &format!("--external {pa}")], &ctx);
    assert_untouched(wl, &ctx);
    assert!(!dir.join("img/manifest.img").exists(), "a refused dump left an image");
    // One of the two marked: the other is refused.
    let r = dump(&dir, wl, &["--external", &pa]);
    assert_clean_error(&r, &[&wl_s, &helper_s, "fd 6", &pb], &ctx);
    assert_untouched(wl, &ctx);
    // A malformed name is refused before anything is touched.
    let r = dump(&dir, wl, &["--external", "pipe:[x]"]);
    assert_clean_error(&r, &["--external", "pipe:[INODE]"], &ctx);
    assert_untouched(wl, &ctx);

    // Both marked (either spelling): dumped.
    let r = dump(&dir, wl, &["--external", &pa, "--external", &format!("pipe:{ino_b}")]);
    assert!(r.ok(), "dump with --external failed\n{r}\n{ctx}");
    reap_dumped(&mut procs, wl);

    // Without --inherit-fd the restorer's own fd 5 is used: there is none here.
    let r = restore_with_fds(&dir, &[], &[]);
    assert_clean_error(&r, &["fd 5", &pa, "--inherit-fd"], &ctx);
    assert!(!pid_exists(wl), "a refused restore left pid {wl}");
    // An --inherit-fd for a resource the image does not have external.
    let r = restore_with_fds(&dir, &["--inherit-fd", "0:pipe:[1]"], &[]);
    assert_clean_error(&r, &["pipe:[1]", &pa], &ctx);

    // New pipes from the test: c to the workload's fd 5, d from its fd 6.
    let (c_r, c_w) = pipe();
    let (d_r, d_w) = pipe();
    let ia = format!("7:{pa}");
    let ib = format!("8:{pb}");
    let r = restore_with_fds(&dir, &["--inherit-fd", &ia, "--inherit-fd", &ib], &[(7, c_r.as_raw_fd()), (8, d_w.as_raw_fd())]);
    adopt_restored(&mut procs, &dir, wl, &r);
    drop((c_r, d_w));
    let mut to = File::from(c_w);
    to.write_all(b"ping 42\n").unwrap();
    File::create(dir.join("work/go")).unwrap();
    // EOF (no line) if the workload dies without answering: its fd 6 is the only writer.
    let mut line = String::new();
    BufReader::new(File::from(d_r)).read_line(&mut line).unwrap();
    assert_eq!(line, "pong 42\n", "answer on the new pipe\n{}", output(&dir, "stdout"));
    assert_pass(&dir, wl, &mut procs);
}

#[test]
fn memfd_mapped_by_outside_process_needs_external_and_inherit_fd() {
    skip_if_direct!();
    let _t = serial();
    let tmp = TempDir::new("external-shm");
    let dir = tmp.path.clone();
    fs::create_dir(dir.join("work")).unwrap();
    let mut procs = Procs::default();
    let m1 = memfd("ext-shm", 4096);
    let ino1 = ino(m1.as_raw_fd());
    let helper = spawn(&mut procs, &dir, &workload_bin("ext_helper"), &["map"], &[(3, m1.as_raw_fd())], "helper");
    wait_ready(&dir, "helper", helper);
    let wl = spawn(&mut procs, &dir, &workload_bin("ext_shared"), &["shm"], &[(5, m1.as_raw_fd())], "stdout");
    wait_ready(&dir, "stdout", wl);
    drop(m1); // only the helper (fd + mapping) and the workload (mapping) hold it now
    let ctx = format!("workload pid {wl}, helper pid {helper}, memfd inode {ino1}");
    let name = format!("shm:[{ino1}]");

    let r = dump(&dir, wl, &[]);
    let wl_s = format!("pid {wl} (ext_shared)");
    let helper_s = format!("pid {helper} (ext_helper)");
    assert_clean_error(&r, &[&wl_s, &helper_s, "VMA 0x", &name, "/memfd:ext-shm", &format!("--external {name}")], &ctx);
    assert_untouched(wl, &ctx);

    let r = dump(&dir, wl, &["--external", &format!("shm:{ino1}")]);
    assert!(r.ok(), "dump with --external failed\n{r}\n{ctx}");
    reap_dumped(&mut procs, wl);

    // An external shared-memory object must be handed over.
    let r = restore_with_fds(&dir, &[], &[]);
    assert_clean_error(&r, &[&format!("pid {wl}"), &name, "--inherit-fd"], &ctx);
    assert!(!pid_exists(wl), "a refused restore left pid {wl}");
    // ... read-write, and at least as large as it was.
    let m2 = memfd("ext-shm-new", 4096);
    let ro = File::open(format!("/proc/self/fd/{}", m2.as_raw_fd())).unwrap();
    let arg = format!("7:{name}");
    let r = restore_with_fds(&dir, &["--inherit-fd", &arg], &[(7, ro.as_raw_fd())]);
    assert_clean_error(&r, &["fd 7", "O_RDWR"], &ctx);
    let small = memfd("ext-shm-small", 100);
    let r = restore_with_fds(&dir, &["--inherit-fd", &arg], &[(7, small.as_raw_fd())]);
    assert_clean_error(&r, &["fd 7", "100 bytes", "4096"], &ctx);
    assert!(!pid_exists(wl), "a refused restore left pid {wl}");

    // The test's memfd becomes the workload's shared memory: each sees the other's writes.
    m2.write_all_at(b"fresh\0", 0).unwrap();
    let r = restore_with_fds(&dir, &["--inherit-fd", &arg], &[(7, m2.as_raw_fd())]);
    adopt_restored(&mut procs, &dir, wl, &r);
    shared_with_test(&dir, wl, &m2, &mut procs);
}

/// After a restore with the test's memfd `m2` inherited as the workload's shared memory
/// ("fresh" written at 0 before): each side sees the other's writes, and the workload
/// passes.
fn shared_with_test(dir: &Path, pid: i32, m2: &File, procs: &mut Procs) {
    m2.write_all_at(b"from-test\0", 64).unwrap();
    File::create(dir.join("work/go")).unwrap();
    assert_pass(dir, pid, procs);
    let out = output(dir, "stdout");
    assert!(out.lines().any(|l| l == "INFO at0=fresh"), "the restored mapping is not the inherited memfd:\n{out}");
    let mut buf = [0u8; 14];
    m2.read_exact_at(&mut buf, 128).unwrap();
    assert_eq!(&buf, b"from-workload\0", "the workload's write did not reach the test's memfd");
}

#[test]
fn anonymous_shared_memory_shared_with_parent_outside_the_tree() {
    skip_if_direct!();
    let _t = serial();
    let tmp = TempDir::new("external-anon");
    let dir = tmp.path.clone();
    fs::create_dir(dir.join("work")).unwrap();
    let mut procs = Procs::default();
    // The parent maps MAP_SHARED|MAP_ANONYMOUS memory and forks the child we dump.
    let parent = spawn(&mut procs, &dir, &workload_bin("ext_shared"), &["anon"], &[], "stdout");
    wait_ready(&dir, "stdout", parent);
    // the child prints READY, the parent INFO child=: in either order
    let child_of = || output(&dir, "stdout").lines().find_map(|l| l.strip_prefix("INFO child=").and_then(|v| v.parse::<i32>().ok()));
    assert!(wait_until(Duration::from_secs(10), || child_of().is_some()), "no INFO child=");
    let child = child_of().unwrap();
    let maps = fs::read_to_string(format!("/proc/{child}/maps")).unwrap();
    let ino: u64 = maps
        .lines()
        .find(|l| l.ends_with("/dev/zero (deleted)"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no shared anonymous mapping in the child:\n{maps}"));
    let name = format!("shm:[{ino}]");
    let ctx = format!("parent {parent}, child {child}, {name}");

    let r = dump(&dir, child, &[]);
    assert_clean_error(&r, &[&format!("pid {child} (ext_shared)"), &format!("pid {parent} (ext_shared)"), &name, "/dev/zero"], &ctx);
    assert_untouched(child, &ctx);

    let r = dump(&dir, child, &["--external", &name]);
    assert!(r.ok(), "dump with --external failed\n{r}\n{ctx}");
    // the parent reaps it
    assert!(wait_until(Duration::from_secs(10), || !pid_exists(child)), "dumped child {child} still exists");

    let m2 = memfd("ext-anon-new", 4096);
    m2.write_all_at(b"fresh\0", 0).unwrap();
    let arg = format!("9:{name}");
    let r = restore_with_fds(&dir, &["--inherit-fd", &arg], &[(9, m2.as_raw_fd())]);
    adopt_restored(&mut procs, &dir, child, &r);
    shared_with_test(&dir, child, &m2, &mut procs);
}

/// Two unix stream sockets connected to sockets outside the tree: one refusal names
/// both, with the `--external` mark of each (before: one per dump attempt).
#[test]
fn unix_streams_to_outside_are_all_named_in_one_refusal() {
    skip_if_direct!();
    let _t = serial();
    let tmp = TempDir::new("external-unix2");
    let dir = tmp.path.clone();
    fs::create_dir(dir.join("work")).unwrap();
    let mut procs = Procs::default();
    let (_a, theirs_a) = std::os::unix::net::UnixStream::pair().unwrap();
    let (_b, theirs_b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (ia, ib) = (ino(theirs_a.as_raw_fd()), ino(theirs_b.as_raw_fd()));
    let wl = spawn(&mut procs, &dir, &workload_bin("ext_unix"), &[], &[(5, theirs_a.as_raw_fd()), (6, theirs_b.as_raw_fd())], "stdout");
    drop((theirs_a, theirs_b));
    wait_ready(&dir, "stdout", wl);
    let ctx = format!("workload pid {wl}, sockets {ia} {ib}");
    let r = dump(&dir, wl, &[]);
    assert_clean_error(&r, &["fd 5", "fd 6", "1 more", &format!("--external unix:[{ia}]"), &format!("--external unix:[{ib}]")], &ctx);
    assert_untouched(wl, &ctx);
}

/// A unix stream socket connected to a socket outside the tree (the test's: a client of
/// a local server). Dump refuses naming the workload, the holder and `--external
/// unix:[INO]`; with it the dump goes through; restore refuses without `--inherit-fd`,
/// refuses a fd that is not a unix stream socket, and with a connected socket from the
/// test the restored workload talks through it.
#[test]
fn unix_stream_to_outside_process_needs_external_and_inherit_fd() {
    skip_if_direct!();
    let _t = serial();
    let tmp = TempDir::new("external-unix");
    let dir = tmp.path.clone();
    fs::create_dir(dir.join("work")).unwrap();
    let mut procs = Procs::default();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let sock_ino = ino(theirs.as_raw_fd());
    let wl = spawn(&mut procs, &dir, &workload_bin("ext_unix"), &[], &[(5, theirs.as_raw_fd())], "stdout");
    drop(theirs);
    wait_ready(&dir, "stdout", wl);
    let res = format!("unix:[{sock_ino}]");
    let me = format!("pid {} ", std::process::id());
    let ctx = format!("workload pid {wl}, socket {sock_ino}");

    let r = dump(&dir, wl, &[]);
    assert_clean_error(&r, &[&format!("pid {wl} (ext_unix)"), "fd 5", &me, "outside the dumped tree", &format!("--external {res}")], &ctx);
    assert_untouched(wl, &ctx);
    let r = dump(&dir, wl, &["--external", &res]);
    assert!(r.ok(), "dump with --external {res} failed\n{r}\n{ctx}");
    reap_dumped(&mut procs, wl);

    let r = restore_with_fds(&dir, &[], &[]);
    assert_clean_error(&r, &[&res, "--inherit-fd"], &ctx);
    assert!(!pid_exists(wl), "a refused restore left pid {wl}");
    let (p_r, _p_w) = pipe();
    let bad = format!("7:{res}");
    let r = restore_with_fds(&dir, &["--inherit-fd", &bad], &[(7, p_r.as_raw_fd())]);
    assert_clean_error(&r, &[&res, "fd 7", "not a unix socket"], &ctx);
    assert!(!pid_exists(wl), "a refused restore left pid {wl}");

    let (mut ours2, given) = std::os::unix::net::UnixStream::pair().unwrap();
    let r = restore_with_fds(&dir, &["--inherit-fd", &bad], &[(7, given.as_raw_fd())]);
    adopt_restored(&mut procs, &dir, wl, &r);
    drop(given);
    drop(ours); // the old connection: the restored process no longer has it
    ours2.write_all(b"question").unwrap();
    File::create(dir.join("work/go")).unwrap();
    ours2.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut ours2, &mut buf).unwrap_or(0);
    assert_eq!(&buf[..n], b"answer:question", "the restored workload's answer\n{}", output(&dir, "stdout"));
    assert_pass(&dir, wl, &mut procs);
}
