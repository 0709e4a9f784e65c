//! Objects whose name was removed while they stay open ("ghosts"): deleted regular
//! files of any size (sparse ones keep their holes), FIFOs with their bytes,
//! directories (an open fd, the working directory), memory device nodes, memfds that
//! are executed. Every value is checked inside the restored workload (ghosts.c).

mod common;
use common::*;

fn roundtrip_ghosts(modes: &[&str]) -> Workload {
    let w = roundtrip("ghosts", modes);
    for name in ["sparse.bin", "fifo", "gone-dir", "gone-cwd", "null-copy", "zero-copy"] {
        assert!(!w.work.join(name).exists(), "restore left {name} linked in the work dir\n{}", w.report());
    }
    w
}

/// A deleted 10 GiB sparse file with 1 MiB of data: holes (SEEK_HOLE/SEEK_DATA,
/// st_blocks), content, size, offset, mode 0640, owner 1234:5678, atime/mtime.
#[test]
fn deleted_sparse_file() {
    let _t = serial();
    let mut w = Workload::start("ghosts", &["sparse"]);
    w.dump();
    let pages = pages_bytes(&w);
    assert!(pages < 64 << 20, "the image stores {pages} bytes of pages for 1 MiB of data (holes stored?)\n{}", w.report());
    w.restore();
    w.go_and_pass();
}

/// The same after a --leave-running dump: the live process is unharmed (its times,
/// offsets and content are checked by itself).
#[test]
fn deleted_sparse_file_leave_running() {
    let _t = serial();
    let mut w = Workload::start("ghosts", &["sparse", "memfd"]);
    w.dump_leave_running();
    w.go_and_pass();
}

/// A named FIFO whose path was removed: its 1000 buffered bytes, three descriptions
/// (O_RDWR, O_RDONLY|O_NONBLOCK, O_WRONLY) on one FIFO, mode, nlink 0.
#[test]
fn removed_fifo() {
    let _t = serial();
    roundtrip_ghosts(&["fifo"]);
}

/// A removed directory held by an fd (mode, times, nlink 0, nothing can be created in
/// it) and a removed working directory.
#[test]
fn removed_directory_and_cwd() {
    let _t = serial();
    roundtrip_ghosts(&["dir"]);
}

/// mknod'ed copies of /dev/null and /dev/zero, unlinked: device numbers, mode, access
/// mode and behaviour.
#[test]
fn removed_device_nodes() {
    let _t = serial();
    roundtrip_ghosts(&["dev"]);
}

/// A sealed memfd holding a copy of /bin/false is still executable (fexecve exits 1)
/// with its seals; an MFD_NOEXEC_SEAL memfd keeps F_SEAL_EXEC and mode.
#[test]
fn memfd_exec_and_seals() {
    let _t = serial();
    roundtrip_ghosts(&["memfd"]);
}

/// Everything at once, in one process.
#[test]
fn all_ghosts_together() {
    let _t = serial();
    roundtrip_ghosts(&["all"]);
}

/// A second open description of each pipe end, opened through /proc/self/fd/N: four
/// fds on one pipe, each description with its own flags, the queued bytes in order.
#[test]
fn pipe_ends_reopened_through_proc() {
    let _t = serial();
    roundtrip("proc_files", &["pipe2"]);
}

/// The same after a --leave-running dump: the live process is unharmed.
#[test]
fn pipe_ends_reopened_through_proc_leave_running() {
    let _t = serial();
    let mut w = Workload::start("proc_files", &["pipe2"]);
    w.dump_leave_running();
    w.go_and_pass();
}

/// A dump that must refuse: one error line naming the pid, the fd and `needles`; the
/// process keeps running untouched and passes its own checks.
fn refused_then_untouched(mode: &str, needles: &[&str]) {
    skip_if_direct!();
    let mut w = Workload::start("proc_files", &[mode]);
    let fd = w.info("held");
    let r = w.try_dump(&[]);
    let pid = w.pid.to_string();
    let fd = format!("fd {fd}");
    let mut all = vec![pid.as_str(), fd.as_str()];
    all.extend_from_slice(needles);
    let rep = w.report();
    assert_clean_error(&r, &all, &rep);
    w.assert_running_untouched();
    w.go_and_pass();
}

/// /proc/1/status held open: a /proc file of a process outside the tree is refused at
/// dump, the process untouched.
#[test]
fn proc_file_of_a_process_outside_the_tree_refused() {
    let _t = serial();
    refused_then_untouched("procinit", &["/proc/1/status", "not in the dumped tree"]);
}

/// /proc/self/status (offset 5, dup'ed to fd 40) and a child's /proc/CHILD/status: after
/// restore they are the restored processes' own files (same inode as a fresh open; the
/// child's names the restored parent), offset, shared description and FD_CLOEXEC kept;
/// killing and --leave-running dumps.
#[test]
fn proc_files_of_tree_processes() {
    let _t = serial();
    let mut w = Workload::start("proc_files", &["procself"]);
    let child: i32 = w.info("child").parse().unwrap();
    dump_and_restore_tree(&mut w, &[child]);
    w.go_and_pass();
    let mut w = Workload::start("proc_files", &["procself"]);
    w.dump_leave_running();
    w.go_and_pass();
}

/// A file whose open name was removed while another name in another directory still
/// links it: refused (that name is unknown; a copy would split the file), the process
/// untouched.
#[test]
fn removed_name_of_hard_linked_file_refused() {
    let _t = serial();
    refused_then_untouched("hardlink", &["still linked elsewhere", "first"]);
}

/// The same with the other name in the same directory: the fd comes back on that name's
/// inode (offset kept, a write through it shows under the other name, the removed name
/// stays removed); killing and --leave-running dumps.
#[test]
fn removed_name_of_hard_linked_file_reopened_through_its_other_name() {
    let _t = serial();
    roundtrip("proc_files", &["hardlink2"]);
    let mut w = Workload::start("proc_files", &["hardlink2"]);
    w.dump_leave_running();
    w.go_and_pass();
}

/// A restore that must be refused: one error line naming `needles`, quickly, and no
/// process left.
fn restore_refused(w: &mut Workload, needles: &[&str]) {
    let r = w.try_restore(&[]);
    let rep = w.report();
    assert_clean_error(&r, needles, &rep);
    assert!(r.elapsed < std::time::Duration::from_secs(5), "refusal took {:.2?}\n{rep}", r.elapsed);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let strays = reap_strays(false);
    assert!(strays.is_empty(), "a refused restore left processes behind: {strays:?}\n{rep}");
    assert!(!pid_exists(w.pid), "pid {} exists after a refused restore\n{rep}", w.pid);
}

/// A file reopened by path whose name now holds a directory, then a FIFO: refused
/// naming both types (the FIFO never makes the open wait); once the same file is back
/// (content and mtime), it is the one reopened, at its offset.
#[test]
fn path_reused_by_another_kind_of_file() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("proc_files", &["byname"]);
    let named = w.work.join("named");
    let mtime = std::fs::metadata(&named).unwrap().modified().unwrap();
    w.dump();
    std::fs::remove_file(&named).unwrap();
    std::fs::create_dir(&named).unwrap();
    restore_refused(&mut w, &["named", "is a directory now", "was a regular file"]);
    std::fs::remove_dir(&named).unwrap();
    let c = std::ffi::CString::new(named.to_str().unwrap()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    restore_refused(&mut w, &["named", "is a FIFO now", "was a regular file"]);
    std::fs::remove_file(&named).unwrap();
    std::fs::write(&named, "abc").unwrap();
    std::fs::File::options().write(true).open(&named).unwrap().set_modified(mtime).unwrap();
    w.restore();
    w.go_and_pass();
}

/// Real programs: CPython's tempfile.TemporaryFile (O_TMPFILE, sparse) and SQLite's
/// deleted temporary database (a temp table of 20000 rows spilled to it) during an
/// open write transaction (its journal on disk). The script checks content, offset,
/// hole, rows, then commits. Both the killing and the --leave-running dump.
#[test]
fn python_tempfile_and_sqlite_temp_db() {
    let _t = serial();
    let script = std::path::Path::new(WORKLOADS).join("real_ghosts.py");
    for leave_running in [true, false] {
        let mut w = Workload::new("py-ghosts");
        w.spawn(&python3(), &[script.clone().into_os_string(), w.work.clone().into_os_string()]);
        w.wait_ready();
        assert_eq!(w.info("ghosts"), "2", "the script should hold two deleted files\n{}", w.report());
        if leave_running {
            w.dump_leave_running();
        } else {
            w.checkpoint_restore();
        }
        w.go_and_pass();
        let left: Vec<_> = std::fs::read_dir(&w.work)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("etilqs") || n.starts_with('#'))
            .collect();
        assert!(left.is_empty(), "temporary files got names: {left:?}\n{}", w.report());
    }
}

/// A process whose executable was removed while it runs (a binary replaced by an
/// upgrade): the file comes back nameless, with its content; /proc/PID/exe is it (same
/// bytes, a removed file of the same directory), nothing is left at its path, and the
/// process runs on. Killing and --leave-running dumps.
fn deleted_executable(leave_running: bool) {
    let _t = serial();
    let mut w = Workload::new(if leave_running { "deleted-exe-lr" } else { "deleted-exe" });
    let copy = w.work.join("basic-copy");
    std::fs::copy(workload_bin("basic"), &copy).unwrap();
    let bytes = std::fs::read(&copy).unwrap();
    w.spawn(&copy, &[w.work.clone().into_os_string()]);
    w.wait_ready();
    std::fs::remove_file(&copy).unwrap();
    if leave_running {
        w.dump_leave_running();
        w.kill_original();
    } else {
        w.dump();
    }
    w.restore();
    if !direct() {
        let exe = format!("/proc/{}/exe", w.pid);
        // nameless as ghosts are (O_TMPFILE in the same directory: "DIR/#INODE (deleted)")
        let link = std::fs::read_link(&exe).unwrap().to_string_lossy().into_owned();
        let dir = format!("{}/", w.work.display());
        assert!(link.starts_with(&dir) && link.ends_with(" (deleted)"), "exe link {link}\n{}", w.report());
        assert!(std::fs::read(&exe).unwrap() == bytes, "the restored executable's content differs\n{}", w.report());
        assert!(!copy.exists(), "restore left the executable at {}", copy.display());
    }
    w.go_and_pass();
}

#[test]
fn deleted_executable_killing() {
    deleted_executable(false);
}

#[test]
fn deleted_executable_leave_running() {
    skip_if_direct!();
    deleted_executable(true);
}

/// A root directory removed after the chroot into it (ghost_root.c), held by a process
/// and a forked child: restored as a removed, empty directory with its mode and owner,
/// the host's files out of sight, the working directory inside it; /proc/PID/root of
/// both says " (deleted)" and no "jail" is left in the work dir. Both the killing and
/// the --leave-running dump.
#[test]
fn removed_root_directory() {
    let _t = serial();
    for leave_running in [false, true] {
        let mut w = Workload::start("ghost_root", &["child"]);
        let kid: i32 = w.info("child").parse().unwrap();
        if leave_running {
            w.dump_leave_running();
        } else if !direct() {
            dump_and_restore_tree(&mut w, &[kid]);
        }
        for pid in [w.pid, kid] {
            let root = std::fs::read_link(format!("/proc/{pid}/root")).unwrap();
            let root = root.to_string_lossy();
            assert!(root.ends_with(" (deleted)"), "pid {pid}: root is {root}, not a removed directory\n{}", w.report());
        }
        assert!(!w.work.join("jail").exists(), "a jail directory is linked in the work dir\n{}", w.report());
        w.go_and_pass();
    }
}

/// A removed root directory with the working directory outside it (chroot without
/// chdir): both come back, the working directory still the work dir.
#[test]
fn removed_root_directory_cwd_outside() {
    let _t = serial();
    let mut w = Workload::start("ghost_root", &["outside"]);
    w.checkpoint_restore();
    w.go_and_pass();
}

/// A memfd sealed with F_SEAL_FUTURE_WRITE (and F_SEAL_SEAL) while mapped shared and
/// writable: restore maps it before sealing (sealed first, the mapping was refused and
/// the restore failed), so the old mapping still writes it and new writes are refused;
/// in both modes.
#[test]
fn memfd_future_write_sealed_while_mapped() {
    let _t = serial();
    roundtrip("memfd_future_write", &[]);
    leave_running_then_restore("memfd_future_write", &["result"], &[]);
}
