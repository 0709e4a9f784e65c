//! A process with 320 MiB of non-zero anonymous memory: the dump is written as one pages
//! file per CPU (shards), restore reads them all, and the workload then verifies every
//! word of its memory. Also checks that `inspect --json` lists the shards.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn wait_file(p: &std::path::Path, secs: u64) -> String {
    let t = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(p) {
            if !s.is_empty() {
                return s;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(secs), "timed out waiting for {}", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn large_memory_sharded_pages() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let stasis = env!("CARGO_BIN_EXE_stasis");
    let dir = std::env::temp_dir().join(format!("stasis-large-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _cleanup = Cleanup(dir.clone());
    let status = dir.join("status");
    let img = dir.join("img");
    std::fs::create_dir_all(&status).unwrap();
    let size = 320u64 << 20;
    let mut child = Command::new(stasis)
        .args(["__workload", "bench-fill", &size.to_string()])
        .arg(&status)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let ready = wait_file(&status.join("ready"), 60);
    assert!(ready.contains("READY"), "{ready}");
    let out = Command::new(stasis).args(["dump", "-t", &pid.to_string(), "-D"]).arg(&img).output().unwrap();
    assert!(out.status.success(), "dump: {}", String::from_utf8_lossy(&out.stderr));
    child.wait().unwrap();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if cpus >= 2 {
        assert!(img.join("pages.1.img").exists(), "expected a second pages file with {cpus} CPUs");
    }
    let j = Command::new(stasis).args(["inspect", "--json"]).arg(&img).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    let files = v["sizes"]["pages"].as_array().unwrap();
    assert_eq!(files.len(), cpus.clamp(1, 4), "pages files in inspect: {files:?}");
    let saved: u64 = files.iter().map(|f| f["bytes"].as_u64().unwrap()).sum();
    assert!(saved >= size, "pages files hold {saved} bytes, less than the {size} bytes of memory");

    let out = Command::new(stasis).args(["restore", "-d", "-D"]).arg(&img).output().unwrap();
    assert!(out.status.success(), "restore: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(status.join("go"), b"").unwrap();
    let result = wait_file(&status.join("result"), 60);
    let mut st = 0;
    // SAFETY: waitpid on the restored process, our child through the subreaper.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(result.starts_with("PASS"), "workload after restore: {result}");
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "exit status {st:#x}");
}

/// Removes the test directory even when an assertion fails.
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
