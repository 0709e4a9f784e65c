//! Terminals: pty pairs inside the tree (termios, window size, packet mode, lock and
//! exclusive mode, data queued both ways, controlling terminal and foreground group of a
//! session, /dev/tty), and shell jobs (`--shell-job`).

mod common;
use common::*;
use std::time::Duration;

/// A pty pair of the tree with its state and both queues: everything is checked from
/// inside the restored processes (see workloads/tty_pty.c), after a killing dump.
#[test]
fn pty_pair_state_queues_and_session() {
    let _t = serial();
    let mut w = Workload::start("tty_pty", &[]);
    let kids = info_pids(&w, &["c", "g"]);
    dump_and_restore_tree(&mut w, &kids);
    if !direct() {
        let img = inspect_json(&mut w);
        let s = img.to_string();
        assert!(s.contains("\"master_queued\":6") && s.contains("\"slave_queued\":16"), "queues in the image\n{s}");
    }
    w.go_and_pass();
}

/// A process outside the tree holding the slave of a pty whose master the tree holds
/// (a daemon that left a tmux pane with its stdio): the dump warns, naming it (the
/// restored pair is a new terminal; that process keeps the old one), and goes on; the
/// restored tree passes its checks.
#[test]
fn pty_slave_held_outside_is_named() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("tty_pty", &[]);
    let kids = info_pids(&w, &["c", "g"]);
    let pts = w.info("pts");
    // (the slave is locked: no new open of it) a copy of C's slave fd
    let fd = std::fs::read_dir(format!("/proc/{}/fd", kids[0]))
        .unwrap()
        .flatten()
        .find(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy() == pts))
        .and_then(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .expect("C holds the slave");
    // SAFETY: plain syscalls; the fds they return are ours and wrapped at once.
    let slave = unsafe {
        use std::os::fd::FromRawFd;
        let pidfd = libc::syscall(libc::SYS_pidfd_open, kids[0], 0) as i32;
        assert!(pidfd >= 0, "pidfd_open");
        let pidfd = std::os::fd::OwnedFd::from_raw_fd(pidfd);
        let f = libc::syscall(libc::SYS_pidfd_getfd, std::os::fd::AsRawFd::as_raw_fd(&pidfd), fd, 0) as i32;
        assert!(f >= 0, "pidfd_getfd");
        std::fs::File::from_raw_fd(f)
    };
    let mut c = std::process::Command::new("sleep");
    c.arg("60").stdin(slave).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    close_fds_above_2(&mut c);
    let mut outside = c.spawn().unwrap();
    let r = w.try_dump(&[]);
    let _ = outside.kill();
    let _ = outside.wait();
    assert!(r.ok(), "dump failed\n{}", w.report());
    let want = format!("{pts}, a terminal whose master the dumped tree holds, is also held by pid {} (sleep)", outside.id());
    assert!(r.stderr.contains(&want) && r.stderr.matches(&want).count() == 1, "no warning (once) naming the outside holder: {}", r.stderr);
    w.kill_original(); // (killed by the dump: reaped)
    reap_dumped(&w, &kids);
    w.restore();
    w.go_and_pass();
}

/// --leave-running: the queues are read and put back, the live tree goes on and passes
/// the same checks; then the image restores and passes them too.
#[test]
fn pty_pair_leave_running_then_restore() {
    let _t = serial();
    let mut w = Workload::start("tty_pty", &[]);
    let kids = info_pids(&w, &["c", "g"]);
    w.dump_leave_running();
    w.go_and_pass();
    if direct() {
        return;
    }
    reap_dumped(&w, &kids);
    std::fs::remove_file(w.work.join("go")).unwrap();
    // stdout grew by the original's PASS: the restored copy writes it again at its offset
    w.restore_with(&["--allow-changed-files"]);
    for k in &kids {
        assert!(pid_exists(*k), "process {k} of the tree was not restored\n{}", w.report());
    }
    w.go_and_pass();
}

/// A new pty: its master (ours, non-blocking) and its slave's path.
fn pty() -> (std::fs::File, String) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on the fd posix_openpt returned, which we then own;
    // ptsname_r writes a NUL-terminated name into the buffer it is given.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK);
        assert!(m >= 0 && libc::grantpt(m) == 0 && libc::unlockpt(m) == 0, "posix_openpt");
        let mut buf = [0 as libc::c_char; 64];
        assert_eq!(libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()), 0);
        let name = std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
        (std::fs::File::from_raw_fd(m), name)
    }
}

/// Reads the master until what came holds `want` (or the timeout).
fn read_until(m: &mut std::fs::File, want: &str, timeout: Duration) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    wait_until(timeout, || {
        let mut b = [0u8; 256];
        if let Ok(n) = m.read(&mut b) {
            got.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&got).contains(want)
    });
    String::from_utf8_lossy(&got).into_owned()
}

/// `tty_job WORKDIR holder PTS CMD...` (a shell with PTS as its terminal running CMD
/// as its foreground job), stdout to `out`.
fn holder(w: &Workload, pts: &str, cmd: &[&std::ffi::OsStr], out: &std::path::Path) -> std::process::Child {
    let mut c = std::process::Command::new(workload_bin("tty_job"));
    c.arg(&w.work).arg("holder").arg(pts).args(cmd).current_dir(&w.work);
    c.stdin(std::process::Stdio::null()).stdout(std::fs::File::create(out).unwrap()).stderr(std::fs::File::create(&w.err).unwrap());
    close_fds_above_2(&mut c);
    c.spawn().expect("spawn the holder")
}

/// `tty_job`'s job run by its holder (a shell) on a new pty, ready: the workload (pid:
/// the job), the pty's master and slave path, the holder.
fn shell_job() -> (Workload, std::fs::File, String, std::process::Child) {
    let mut w = Workload::new("tty_job");
    let (m, pts) = pty();
    let bin = workload_bin("tty_job");
    let mut h = holder(&w, &pts, &[bin.as_os_str(), w.work.as_os_str(), "job".as_ref()], &w.out.clone());
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !w.output().lines().any(|l| l == "READY") {
        assert!(std::time::Instant::now() < end && matches!(h.try_wait(), Ok(None)), "the job did not get ready\n{}", w.report());
        std::thread::sleep(Duration::from_millis(5));
    }
    w.pid = w.info("job").parse().unwrap();
    (w, m, pts, h)
}

/// A job of a shell on one terminal, dumped with --shell-job (refused without it, the
/// job untouched; with --leave-running it runs on in the foreground), restored with --shell-job by `stasis restore` run as a job of another
/// shell on a second terminal: the job is in the foreground of the new terminal, has it
/// as controlling terminal and on its fds, and reads what is typed there.
#[test]
fn shell_job_takes_the_restorers_terminal() {
    let _t = serial();
    skip_if_direct!();
    let (mut w, _m1, pts1, mut h1) = shell_job();
    // without --shell-job: one line naming the pid and the flag; the job runs on
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&w.pid.to_string(), "fd 0", &pts1, "outside the dumped tree", "--shell-job"], &w.report());
    assert!(!r.stderr.contains("not supported"), "the refusal calls a supported case unsupported: {}", r.stderr);
    w.assert_running_untouched();
    // --leave-running: the job runs on, still the foreground group of its terminal
    let r = w.try_dump(&["--shell-job", "--leave-running"]);
    assert!(r.ok(), "dump --shell-job --leave-running failed\n{}", w.report());
    w.assert_running_untouched();
    let mut fg: i32 = 0;
    // SAFETY: TIOCGPGRP writes one int; on a master it reads the slave's.
    assert_eq!(unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&_m1), libc::TIOCGPGRP, &mut fg) }, 0);
    assert_eq!(fg, w.pid, "the foreground group of the job's terminal after --leave-running");
    std::fs::remove_dir_all(&w.img).unwrap();
    std::fs::create_dir(&w.img).unwrap();
    let r = w.try_dump(&["--shell-job"]);
    assert!(r.ok(), "dump --shell-job failed\n{}", w.report());
    let st = h1.wait().unwrap();
    assert_eq!(st.code(), Some(128 + libc::SIGKILL), "the job should have been killed by the dump\n{}", w.report());
    // restore: stasis is the foreground job of a shell on another terminal
    let (mut m2, pts2) = pty();
    let img = w.img.clone();
    let h2out = w.tmp.path.join("restore.out");
    let args: Vec<&std::ffi::OsStr> = vec![STASIS.as_ref(), "restore".as_ref(), "-D".as_ref(), img.as_os_str(), "--shell-job".as_ref()];
    let mut h2 = holder(&w, &pts2, &args, &h2out);
    w.go();
    assert!(wait_until(Duration::from_secs(10), || pid_exists(w.pid)), "the job was not restored\n{}", w.report());
    std::io::Write::write_all(&mut m2, b"hello-new\r").unwrap();
    let seen = read_until(&mut m2, "got:hello-new", Duration::from_secs(10));
    let st = wait_child(&mut h2, Duration::from_secs(20));
    let restore_out = std::fs::read_to_string(&h2out).unwrap_or_default();
    assert!(seen.contains("got:hello-new\r\n"), "the new terminal showed {seen:?}\n{restore_out}\n{}", w.report());
    assert_eq!(st, Some(0), "stasis restore --shell-job (the job's status)\n{restore_out}\n{}", w.report());
    let out = w.output();
    assert!(!out.contains("FAIL") && out.lines().any(|l| l == "PASS"), "job output:\n{out}\n{}", w.report());
}

/// `restore --shell-job` run in the foreground of a real interactive bash: ^Z stops the
/// restored job, and stasis with it, so bash gets its terminal back and reports the job
/// stopped; `fg` gives the job the terminal again: it reads the next line typed and
/// ends, and so does stasis (before, stasis stayed running and the terminal hung).
#[test]
fn shell_job_restore_stops_and_continues_with_its_shell() {
    let _t = serial();
    skip_if_direct!();
    let (mut w, _m1, _, mut h1) = shell_job();
    let r = w.try_dump(&["--shell-job"]);
    assert!(r.ok(), "dump --shell-job failed\n{}", w.report());
    let _ = h1.wait();
    // an interactive bash (job control on) with the second terminal as its own
    let (mut m2, pts2) = pty();
    let tty = || std::fs::OpenOptions::new().read(true).write(true).open(&pts2).unwrap();
    let mut c = std::process::Command::new("setsid");
    c.args(["-c", "bash", "--norc", "--noprofile", "-i"]).env_clear().env("PS1", "$ ").env("TERM", "dumb").env("PATH", "/usr/bin:/bin");
    c.stdin(tty()).stdout(tty()).stderr(tty()).current_dir(&w.work);
    close_fds_above_2(&mut c);
    let mut bash = c.spawn().expect("run bash");
    read_until(&mut m2, "$ ", Duration::from_secs(10));
    w.go();
    let cmd = format!("{STASIS} restore -D {} --shell-job\r", w.img.display());
    std::io::Write::write_all(&mut m2, cmd.as_bytes()).unwrap();
    assert!(wait_until(Duration::from_secs(10), || pid_exists(w.pid)), "the job was not restored\n{}", w.report());
    // the job runs (restored: it says so on the terminal) and blocks reading it: ^Z
    let seen = read_until(&mut m2, "reading", Duration::from_secs(10));
    assert!(seen.contains("reading"), "the restored job does not run: {seen:?}\n{}", w.report());
    assert!(wait_until(Duration::from_secs(10), || stat_state(w.pid) == Some('S')), "the restored job does not wait for input\n{}", w.report());
    std::io::Write::write_all(&mut m2, b"\x1a").unwrap();
    let seen = read_until(&mut m2, "Stopped", Duration::from_secs(10));
    assert!(seen.contains("Stopped"), "bash did not see its job stop: {seen:?}\n{}", w.report());
    assert_eq!(stat_state(w.pid), Some('T'), "the restored job after ^Z\n{}", w.report());
    std::io::Write::write_all(&mut m2, b"fg\r").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::io::Write::write_all(&mut m2, b"hello-new\r").unwrap();
    let seen = read_until(&mut m2, "got:hello-new", Duration::from_secs(10));
    assert!(seen.contains("got:hello-new"), "after fg the terminal showed {seen:?}\n{}", w.report());
    std::io::Write::write_all(&mut m2, b"echo status-$?\r").unwrap();
    let seen = read_until(&mut m2, "status-0", Duration::from_secs(10));
    assert!(seen.contains("status-0"), "stasis restore's status in bash: {seen:?}\n{}", w.report());
    std::io::Write::write_all(&mut m2, b"exit\r").unwrap();
    assert_eq!(wait_child(&mut bash, Duration::from_secs(10)), Some(0), "bash did not exit\n{}", w.report());
    let out = w.output();
    assert!(!out.contains("FAIL") && out.lines().any(|l| l == "PASS"), "job output:\n{out}\n{}", w.report());
}

/// The state letter of `pid` in /proc/PID/stat.
fn stat_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

/// A child's exit code (128+signal if killed) within `t`, else kill it and None.
fn wait_child(c: &mut std::process::Child, t: Duration) -> Option<i32> {
    let end = std::time::Instant::now() + t;
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return st.code().or(std::os::unix::process::ExitStatusExt::signal(&st).map(|s| 128 + s));
        }
        if std::time::Instant::now() > end {
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- real programs

/// `tmux -S SOCKET ARGS...` (no config, a known TERM), its stdout.
fn tmux(sock: &std::path::Path, args: &[&str]) -> String {
    let mut c = std::process::Command::new("tmux");
    c.arg("-S").arg(sock).arg("-f").arg("/dev/null").args(args).env("TERM", "screen").env_remove("TMUX");
    c.stdin(std::process::Stdio::null());
    close_fds_above_2(&mut c);
    let out = c.output().expect("run tmux (.ci/run installs it)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tmux server (a daemon: re-parented to the test, the subreaper) with one bash pane;
/// `X=kept` and `echo before-42` typed in it. Returns the socket path and the pane's
/// bash.
fn start_tmux(w: &mut Workload) -> (std::path::PathBuf, i32) {
    let sock = w.tmp.path.join("tmux.sock");
    let bash = "exec env -i TERM=screen PS1='$ ' HOME=/tmp /bin/bash --norc --noprofile -i";
    tmux(&sock, &["new-session", "-d", "-s", "t", "-x", "80", "-y", "24", bash]);
    let pid = tmux(&sock, &["display", "-p", "#{pid}"]).trim().parse::<i32>().unwrap_or_else(|_| panic!("no tmux server\n{}", w.report()));
    w.pid = pid;
    let pane: i32 = tmux(&sock, &["display", "-p", "-t", "t", "#{pane_pid}"]).trim().parse().unwrap();
    tmux(&sock, &["send-keys", "-t", "t", "X=kept; echo before-$((6*7))", "Enter"]);
    let ok = wait_until(Duration::from_secs(10), || tmux(&sock, &["capture-pane", "-p", "-t", "t"]).contains("before-42"));
    assert!(ok, "the pane did not run the command: {}", tmux(&sock, &["capture-pane", "-p", "-t", "t"]));
    (sock, pane)
}

/// Types `echo after-$X` into the pane: the restored bash, reading its new pty, answers
/// with the variable set before the dump; the typed state of before is still shown. Then
/// a program bash starts finds the terminal as its stdin and stdout (the slave is
/// inherited: not close-on-exec).
fn check_tmux(w: &Workload, sock: &std::path::Path) {
    let screen = tmux(sock, &["capture-pane", "-p", "-t", "t"]);
    assert!(screen.contains("before-42"), "the pane lost its content: {screen:?}\n{}", w.report());
    tmux(sock, &["send-keys", "-t", "t", "echo after-$X", "Enter"]);
    let ok = wait_until(Duration::from_secs(10), || tmux(sock, &["capture-pane", "-p", "-t", "t"]).contains("after-kept"));
    assert!(ok, "the pane did not answer new keys: {:?}\n{}", tmux(sock, &["capture-pane", "-p", "-t", "t"]), w.report());
    tmux(sock, &["send-keys", "-t", "t", "/bin/sh -c 'test -t 0 && test -t 1 && echo child-on-tty-$0' $X", "Enter"]);
    let ok = wait_until(Duration::from_secs(10), || tmux(sock, &["capture-pane", "-p", "-t", "t"]).contains("child-on-tty-kept"));
    assert!(ok, "a program started in the pane has no terminal: {:?}\n{}", tmux(sock, &["capture-pane", "-p", "-t", "t"]), w.report());
}

fn kill_tmux(w: &mut Workload, sock: &std::path::Path, pane: i32) {
    tmux(sock, &["kill-server"]);
    // a restored server is the workload's restored process; the original a stray child
    w.kill_restored();
    let _ = sys_kill(pane);
    reap_dumped(w, &[w.pid, pane]);
}

fn sys_kill(pid: i32) -> i32 {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid, libc::SIGKILL) }
}

/// tmux with a bash pane, killing dump: the restored server shows the pane as it was
/// (capture-pane) and its bash answers keys sent afterwards (send-keys), with the shell
/// variable it had.
#[test]
fn tmux_bash_pane_across_dump_and_restore() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("tmux");
    let (sock, pane) = start_tmux(&mut w);
    let r = w.try_dump(&[]);
    assert!(r.ok(), "dump of the tmux server failed\n{}", w.report());
    reap_dumped(&w, &[w.pid, pane]);
    w.restore();
    assert!(pid_exists(pane), "the pane's bash was not restored\n{}", w.report());
    check_tmux(&w, &sock);
    kill_tmux(&mut w, &sock, pane);
}

/// tmux dumped and restored twice (the second dump is of a restored server): the pane
/// still works, and programs started in it still get the terminal (a restored slave
/// used to carry O_CLOEXEC in its file flags, which the second dump took for
/// close-on-exec: the restored bash's children had no stdin/stdout).
#[test]
fn tmux_restored_twice() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("tmux");
    let (sock, pane) = start_tmux(&mut w);
    for round in 0..2 {
        let _ = std::fs::remove_dir_all(&w.img);
        let r = w.try_dump(&[]);
        assert!(r.ok(), "dump {round} of the tmux server failed\n{}", w.report());
        w.kill_restored();
        reap_dumped(&w, &[w.pid, pane]);
        w.restore();
        assert!(pid_exists(pane), "the pane's bash was not restored ({round})\n{}", w.report());
        // the restored slave's file flags carry no O_CLOEXEC (what fdinfo shows)
        let info = std::fs::read_to_string(format!("/proc/{pane}/fdinfo/0")).unwrap();
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).map(|f| u32::from_str_radix(f.trim(), 8).unwrap()).unwrap();
        assert_eq!(flags & libc::O_CLOEXEC as u32, 0, "fdinfo of the restored bash's stdin: {info}");
    }
    check_tmux(&w, &sock);
    kill_tmux(&mut w, &sock, pane);
}

/// tmux, --leave-running: the live server and its pane work on after the dump; once it
/// is killed, the image restores the state of the dump, which works too.
#[test]
fn tmux_leave_running_then_restore() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("tmux");
    let (sock, pane) = start_tmux(&mut w);
    let r = w.try_dump(&["--leave-running"]);
    assert!(r.ok(), "dump --leave-running of the tmux server failed\n{}", w.report());
    check_tmux(&w, &sock);
    kill_tmux(&mut w, &sock, pane);
    w.restore_with(&["--allow-changed-files"]);
    let screen = tmux(&sock, &["capture-pane", "-p", "-t", "t"]);
    assert!(!screen.contains("after-kept"), "the restored pane shows what the live one did after the dump: {screen:?}");
    check_tmux(&w, &sock);
    kill_tmux(&mut w, &sock, pane);
}

/// `script` (util-linux) running a shell loop on its pty, fed through a pipe from the
/// test on its stdin: a line typed before the dump is answered in the typescript, and one
/// typed after the restore (the pipe handed to `stasis restore` as its fd 0) is answered
/// by the restored shell through the restored pty.
#[test]
fn script_session_across_dump_and_restore() {
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("script");
    let ts = w.tmp.path.join("typescript");
    let mut p = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array with new fds, which we then own.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds from pipe2, owned once each.
    let (r, mut wr) = unsafe { (std::fs::File::from_raw_fd(p[0]), std::fs::File::from_raw_fd(p[1])) };
    let mut c = std::process::Command::new("script");
    c.args(["-q", "-f", "-c", "exec /bin/sh -c 'while read l; do echo got-$l; done'"]).arg(&ts).current_dir(&w.work);
    c.stdin(r.try_clone().unwrap()).stdout(std::fs::File::create(&w.out).unwrap()).stderr(std::fs::File::create(&w.err).unwrap());
    close_fds_above_2(&mut c);
    let mut child = c.spawn().expect("spawn script (util-linux)");
    w.pid = child.id() as i32;
    let typed = |wr: &mut std::fs::File, line: &str| wr.write_all(format!("{line}\n").as_bytes()).unwrap();
    let shows = |s: &str| std::fs::read_to_string(&ts).unwrap_or_default().contains(s);
    typed(&mut wr, "one");
    assert!(wait_until(Duration::from_secs(10), || shows("got-one")), "script did not answer\n{}", w.report());
    let sh: Vec<i32> = std::fs::read_to_string(format!("/proc/{}/task/{}/children", w.pid, w.pid)).unwrap().split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(sh.len(), 1, "script's shell");
    let r_dump = w.try_dump(&[]);
    assert!(r_dump.ok(), "dump of script failed\n{}", w.report());
    let st = wait_child(&mut child, Duration::from_secs(10));
    assert_eq!(st, Some(128 + libc::SIGKILL), "script should have been killed by the dump");
    reap_dumped(&w, &sh);
    let img = w.img.clone();
    w.restore_from_with_fds(&img, &[], &[(0, r.as_raw_fd())]);
    assert!(pid_exists(sh[0]), "script's shell was not restored\n{}", w.report());
    typed(&mut wr, "two");
    let ok = wait_until(Duration::from_secs(10), || shows("got-two"));
    assert!(ok, "the restored script did not answer: {:?}\n{}", std::fs::read_to_string(&ts).unwrap_or_default(), w.report());
    let text = std::fs::read_to_string(&ts).unwrap_or_default();
    assert_eq!(text.matches("got-one").count(), 1, "the answer of before the dump must appear once: {text:?}");
    drop(wr); // EOF: script and its shell end
    let _ = sys_kill(sh[0]);
    w.kill_restored();
    reap_dumped(&w, &sh);
}

/// A terminal device other than a pseudo-terminal (here /dev/console, else a serial
/// line or a virtual console), held as a plain fd (O_NOCTTY, non-blocking): opened again
/// by its path. Inside the restored process: the fd is that device (same device number),
/// its access mode and O_NONBLOCK are kept, and its settings read back as before the
/// dump (restore does not change a device's settings: they are the host's).
#[test]
fn console_and_serial_terminals_are_opened_again() {
    let _t = serial();
    let Some(dev) = ["/dev/console", "/dev/ttyS0", "/dev/tty1"].into_iter().find(|d| std::fs::OpenOptions::new().read(true).write(true).open(d).is_ok()) else {
        eprintln!("no console, serial line or virtual console to open: skipped");
        return;
    };
    let mut w = Workload::new("console");
    let code = format!(
        "import os,sys,time,termios\n\
         fd=os.open('{dev}', os.O_RDWR|os.O_NOCTTY|os.O_NONBLOCK)\n\
         st=os.fstat(fd).st_rdev; tio=termios.tcgetattr(fd)\n\
         print('READY', flush=True)\n\
         while not os.path.exists(sys.argv[1]+'/go'): time.sleep(0.01)\n\
         fails=[]\n\
         if os.fstat(fd).st_rdev != st: fails.append('device %x, was %x' % (os.fstat(fd).st_rdev, st))\n\
         import fcntl\n\
         fl=fcntl.fcntl(fd, fcntl.F_GETFL)\n\
         if fl & os.O_ACCMODE != os.O_RDWR or not fl & os.O_NONBLOCK: fails.append('flags %o' % fl)\n\
         if termios.tcgetattr(fd) != tio: fails.append('termios differ')\n\
         print(''.join('FAIL: %s\\n' % f for f in fails) or 'PASS', flush=True)\n"
    );
    w.spawn(&python3(), &["-c".into(), code.into(), w.work.clone().into_os_string()]);
    w.wait_ready();
    w.checkpoint_restore();
    w.go_and_pass();
}
