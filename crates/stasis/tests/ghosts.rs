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
    let pages: u64 = std::fs::read_dir(&w.img)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
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
