//! Unix sockets in every state, and signal-driven I/O (O_ASYNC, F_SETOWN_EX, F_SETSIG)
//! on any fd. Every check runs inside the restored workload.

mod common;
use common::*;

/// O_ASYNC with an owner that is the process, a thread, or the process group, with and
/// without F_SETSIG, on socket pairs and a pipe: read back with F_GETOWN_EX / F_GETSIG /
/// F_GETFL after restore, and each fd made readable raises its signal on the right
/// thread with the right si_fd; an fd with an owner but no O_ASYNC stays silent.
#[test]
fn signal_driven_io_owner_and_signal() {
    let _t = serial();
    roundtrip("fown", &[]);
}

/// The same after a --leave-running dump: the live process keeps its flags, owners and
/// signals (it is then killed, and the image restored and checked).
#[test]
fn signal_driven_io_after_leave_running_dump() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("fown", &[]);
    w.dump_leave_running();
    w.kill_original();
    w.restore();
    w.go_and_pass();
}

/// A pipe whose read end has O_ASYNC and an owner (F_SETOWN): flag and owner come back
/// and a write raises SIGIO.
#[test]
fn pipe_with_o_async() {
    let _t = serial();
    roundtrip("pipe_async", &[]);
}
