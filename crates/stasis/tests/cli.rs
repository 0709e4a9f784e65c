//! The rest of the command line: inspect, check, --leave-running,
//! foreground restore and its exit status.

mod common;
use common::*;

/// `inspect --json` parses and shows the pid, the 5 threads (with their
/// TIDs if entries are objects/numbers), VMAs and fds; inspecting does not
/// disturb the image (restore afterwards PASSes).
#[test]
fn inspect_json() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("threads", &[]);
    w.wait_all_sleeping();
    let mut tids: Vec<i64> = w.infos("tid").iter().map(|s| s.parse().unwrap()).collect();
    tids.push(w.pid as i64);
    tids.sort();
    w.dump();
    let img = w.img.clone();
    let r = w.stasis(&[std::ffi::OsStr::new("inspect"), img.as_os_str(), std::ffi::OsStr::new("--json")]);
    assert!(r.ok(), "inspect --json failed\n{}", w.report());
    let v: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("inspect --json output is not JSON: {e}\n{}", w.report()));
    assert_eq!(v["pid"].as_i64(), Some(w.pid as i64), "pid in inspect --json\n{}", w.report());
    let threads = v["threads"].as_array().unwrap_or_else(|| panic!("no threads array\n{}", w.report()));
    assert_eq!(threads.len(), 5, "thread count in inspect --json\n{}", w.report());
    let mut got: Vec<i64> = threads
        .iter()
        .filter_map(|t| t.as_i64().or_else(|| t["tid"].as_i64()).or_else(|| t["id"].as_i64()))
        .collect();
    if got.len() == 5 {
        got.sort();
        assert_eq!(got, tids, "TIDs in inspect --json\n{}", w.report());
    }
    let vmas = v["vmas"].as_array().unwrap_or_else(|| panic!("no vmas array\n{}", w.report()));
    assert!(vmas.len() >= 10, "only {} VMAs in inspect --json\n{}", vmas.len(), w.report());
    let fds = v["fds"].as_array().unwrap_or_else(|| panic!("no fds array\n{}", w.report()));
    // 0, 1, 2 and the pipe pair
    assert!(fds.len() >= 5, "only {} fds in inspect --json\n{}", fds.len(), w.report());
    let nums: Vec<i64> = fds.iter().filter_map(|f| f["fd"].as_i64()).collect();
    if !nums.is_empty() {
        for fd in [0, 1, 2] {
            assert!(nums.contains(&fd), "fd {fd} missing from inspect --json\n{}", w.report());
        }
    }
    w.restore();
    w.go_and_pass();
}

/// Plain `inspect` mentions the pid; inspecting a missing dir is a clean error.
#[test]
fn inspect_text_and_errors() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("basic", &[]);
    w.dump();
    let img = w.img.clone();
    let r = w.stasis(&[std::ffi::OsStr::new("inspect"), img.as_os_str()]);
    assert!(r.ok(), "inspect failed\n{}", w.report());
    assert!(r.stdout.contains(&w.pid.to_string()), "inspect output should mention the pid\n{}", w.report());
    // a reader that goes away (`stasis inspect DIR | head -1`) ends it quietly, as SIGPIPE
    // ends any filter: no panic message
    let mut c = std::process::Command::new(STASIS)
        .arg("inspect")
        .arg(&img)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    let out = c.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked") && std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(libc::SIGPIPE), "inspect into a closed pipe: {:?} {err}", out.status);
    let missing = w.tmp.path.join("no-such-image");
    let r = w.stasis(&[std::ffi::OsStr::new("inspect"), missing.as_os_str()]);
    let rep = w.report();
    assert_clean_error(&r, &[], &rep);
    w.restore();
    w.go_and_pass();
}

#[test]
fn check_passes() {
    let _t = serial();
    skip_if_direct!();
    let tmp = TempDir::new("check");
    let r = stasis(&tmp.path, &["check"]);
    assert!(r.ok(), "stasis check failed\n{r}");
    assert!(!r.stderr.contains("panicked"), "{r}");
}

/// --leave-running: the process keeps running and completes normally; then
/// the image restores into a second process that passes its checks too.
/// The verdicts go to WORKDIR/result so stdout never changes after the dump.
#[test]
fn leave_running_then_restore() {
    let _t = serial();
    common::leave_running_then_restore("basic", &["result"], &[]);
}

/// `stasis restore` started the moment a killing dump returns, its original not yet
/// reaped (its parent, the test, reaps it 700 ms later; a shell or a slow exit — an
/// inotify group's teardown — does the same): the restore waits for the dying holder of
/// the pid instead of refusing, and the restored process passes its checks.
#[test]
fn restore_right_after_dump_waits_for_the_dying_original() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("basic", &[]);
    let pid = w.pid;
    let held = w.dump_reaping_late(std::time::Duration::from_millis(700), |w| {
        let held = stat_of(pid).map(|s| s.0);
        w.restore();
        held
    });
    assert_eq!(held, Some('Z'), "the original should still be an unreaped zombie when the restore starts\n{}", w.report());
    w.go_and_pass();
}

/// Foreground restore (no -d): stasis waits and exits with the workload's
/// status (7 here, after the workload PASSed its checks).
#[test]
fn foreground_restore_exit_status() {
    let _t = serial();
    let mut w = Workload::start("basic", &["exit=7"]);
    w.dump();
    w.go();
    let st = w.restore_foreground(EXIT_TIMEOUT);
    w.assert_pass_code(st, 7);
}

/// Foreground restore of a multi-threaded workload, exit 0.
#[test]
fn foreground_restore_threads() {
    let _t = serial();
    let mut w = Workload::start("threads", &[]);
    w.wait_all_sleeping();
    w.dump();
    w.go();
    let st = w.restore_foreground(EXIT_TIMEOUT);
    w.assert_pass(st);
    assert!(reap_strays(false).is_empty(), "foreground restore left processes behind");
}

/// After `dump --leave-running` the process kept writing its stdout log: restore is
/// refused (the file changed) with a hint, and `--allow-changed-files` restores it; the
/// restored copy writes at its saved offset and passes its checks.
#[test]
fn leave_running_log_grew_allow_changed_files() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("basic", &[]);
    w.dump_leave_running();
    w.go();
    let st = w.wait_exit(EXIT_TIMEOUT);
    assert!(st == Exit::Code(0) && w.output().contains("PASS"), "original: {st:?}\n{}", w.report());
    std::fs::remove_file(w.work.join("go")).unwrap();
    let img = w.img.clone();
    let r = w.try_restore_from(&img, &["-d"]);
    let rep = w.report();
    assert_clean_error(&r, &["--allow-changed-files"], &rep);
    assert!(!pid_exists(w.pid), "refused restore left pid {}", w.pid);
    let r = w.try_restore_from(&img, &["-d", "--allow-changed-files"]);
    assert!(r.ok(), "restore --allow-changed-files failed\n{}", w.report());
    w.go();
    let st = waitpid_timeout(w.pid, EXIT_TIMEOUT).unwrap_or_else(|_| panic!("restored copy did not finish\n{}", w.report()));
    w.assert_pass(st);
}

/// `inspect --plan` prints the restore plan of a tree without creating anything: every
/// process with its pid, how it is cloned, whom it forks, the zombie's status, fds by
/// carry slot, its vDSO, and its ordered steps; the tree then restores as planned.
#[test]
fn inspect_plan_of_a_tree() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("tree", &[]);
    let kids: Vec<i32> = ["a", "b", "c"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    dump_and_reap_tree(&mut w, &kids);
    let img = w.img.clone();
    let r = w.stasis(&[std::ffi::OsStr::new("inspect"), img.as_os_str(), std::ffi::OsStr::new("--plan")]);
    assert!(r.ok(), "inspect --plan failed\n{}", w.report());
    let out = &r.stdout;
    assert!(out.starts_with(&format!("restore plan: root {}, 4 processes", w.pid)), "{out}");
    for k in &kids {
        assert!(out.contains(&format!("pid {k} ")), "plan lacks pid {k}:\n{out}");
    }
    assert!(out.contains(&format!("forks: {}, {}, {}", kids[0], kids[1], kids[2])), "{out}");
    assert!(out.contains("zombie, exit status 0x700"), "the zombie (exit 7) is not planned as one:\n{out}");
    assert!(out.contains("Seize → AddressSpace"), "{out}");
    assert!(out.contains("pipe end (object"), "{out}");
    // planning created nothing: every pid is still free
    for p in kids.iter().chain([&w.pid]) {
        assert!(!pid_exists(*p), "pid {p} exists after inspect --plan");
    }
    w.restore();
    w.go_and_pass();
}

/// A file mapped MAP_SHARED that the original kept writing after a --leave-running
/// dump (a JVM's hsperfdata, a /dev/shm segment): restore refuses naming
/// --allow-changed-files, and with it maps the file as it is now (the restored process
/// sees the original's last write and its own writes reach the file). A file mapped
/// MAP_PRIVATE that changed is refused even then (its unwritten pages are not in the
/// image), saying what the user can do.
#[test]
fn changed_mapped_files_shared_allowed_private_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::new("mapped-changed");
    let script = std::path::Path::new(WORKLOADS).join("mapped_changed.py");
    w.spawn(&python3(), &[script.into_os_string(), w.work.clone().into_os_string()]);
    w.wait_ready();
    w.dump_leave_running();
    std::fs::File::create(w.work.join("poke")).unwrap();
    w.wait_for_line("POKED", std::time::Duration::from_secs(10));
    w.kill_original();
    let img = w.img.clone();
    let r = w.try_restore_from(&img, &["-d"]);
    assert_clean_error(&r, &["shared.dat", "mapped shared", "--allow-changed-files"], &w.report());
    assert!(!pid_exists(w.pid), "a refused restore left pid {}", w.pid);
    // removed (a JVM removes its hsperfdata file when it exits): no option can help, and
    // the refusal does not offer one
    let shared = w.work.join("shared.dat");
    let aside = w.work.join("shared.aside");
    std::fs::rename(&shared, &aside).unwrap();
    let r = w.try_restore_from(&img, &["-d", "--allow-changed-files"]);
    assert_clean_error(&r, &["shared.dat", "missing", "put the file back"], &w.report());
    assert!(!r.stderr.contains("restore with --allow-changed-files"), "offers an option that cannot help: {}", r.stderr);
    assert!(!pid_exists(w.pid), "a refused restore left pid {}", w.pid);
    std::fs::rename(&aside, &shared).unwrap();
    // the private file changes too: refused even with the option
    let private = w.work.join("private.dat");
    let was = std::fs::metadata(&private).unwrap().modified().unwrap();
    let original = std::fs::read(&private).unwrap();
    let mut changed = original.clone();
    changed[100] = b'X';
    std::fs::write(&private, &changed).unwrap();
    let r = w.try_restore_from(&img, &["-d", "--allow-changed-files"]);
    assert_clean_error(&r, &["private.dat", "maps it private", "never wrote"], &w.report());
    assert!(!pid_exists(w.pid), "a refused restore left pid {}", w.pid);
    // put it back as it was (content and time): the shared one is taken as it is now
    std::fs::write(&private, &original).unwrap();
    std::fs::File::options().write(true).open(&private).unwrap().set_modified(was).unwrap();
    w.restore_from_with(&img, &["--allow-changed-files"]);
    w.go_and_pass();
}
