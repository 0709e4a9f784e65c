//! A process whose stdout is a pipe read by another process (a shell pipeline, a test
//! harness): dump leaves that pipe out of the image, and restore connects the process's
//! fd 1 to `stasis restore`'s own fd 1, which must be a pipe; the restored process
//! carries on writing its sequence there. Restoring with fd 1 on a regular file is
//! refused with a clear message and leaves no process behind.

use std::io::{BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

const PY: &str = "import time\ni = 0\nwhile True:\n    print(i, flush=True)\n    i += 1\n    time.sleep(0.02)\n";

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn close_inherited(cmd: &mut Command) {
    // SAFETY: close_range is async-signal-safe; it runs in the child before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
}

#[test]
fn stdout_pipe_to_another_process_is_inherited_on_restore() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let stasis = env!("CARGO_BIN_EXE_stasis");
    let dir = std::env::temp_dir().join(format!("stasis-extpipe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = Cleanup(dir.clone());
    let mut cmd = Command::new("python3");
    cmd.args(["-u", "-c", PY]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    close_inherited(&mut cmd);
    let mut child = cmd.spawn().expect("python3");
    let pid = child.id() as i32;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last: i64 = -1;
    for _ in 0..3 {
        last = lines.next().unwrap().unwrap().trim().parse().unwrap();
    }
    let out = Command::new(stasis).args(["dump", "-t", &pid.to_string(), "-D"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "dump failed: {}", String::from_utf8_lossy(&out.stderr));
    child.wait().unwrap();
    // The last number the original printed before it was frozen.
    if let Some(l) = lines.map(|l| l.unwrap()).filter_map(|l| l.trim().parse().ok()).last() {
        last = l;
    }

    // fd 1 a regular file: refused, nothing left behind.
    let f = std::fs::File::create(dir.join("out.txt")).unwrap();
    let bad = Command::new(stasis).args(["restore", "-d", "-D"]).arg(&dir).stdout(f).output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(!bad.status.success() && err.contains("fd 1") && err.contains("pipe"), "expected a refusal: {err}");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "refused restore left pid {pid}");

    // fd 1 a pipe: the restored process writes the next numbers into it.
    let (r, w) = pipe();
    let st = Command::new(stasis).args(["restore", "-d", "-D"]).arg(&dir).stdout(Stdio::from(w)).status().unwrap();
    assert!(st.success(), "restore failed");
    let mut rl = BufReader::new(std::fs::File::from(r)).lines();
    let next: i64 = rl.next().expect("restored process wrote nothing").unwrap().trim().parse().unwrap();
    let after: i64 = rl.next().unwrap().unwrap().trim().parse().unwrap();
    // SAFETY: plain kill/waitpid of the restored process, our child via the subreaper.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(next, last + 1, "the restored process did not continue the sequence");
    assert_eq!(after, next + 1);
}

/// Removes the test directory even when an assertion fails.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
