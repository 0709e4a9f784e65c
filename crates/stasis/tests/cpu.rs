//! Register state: general purpose, AVX (ymm0-15), MXCSR, x87, FS base; the LDT.

mod common;
use common::*;

const SYS_NANOSLEEP: i64 = 35;

/// Dump while the task sits inside a raw `syscall` (nanosleep 2 s) issued
/// from asm with known patterns in every callee-visible register.
#[test]
fn registers_across_blocking_syscall() {
    let _t = serial();
    let mut w = Workload::start("regs", &["syscall"]);
    let pid = w.pid;
    w.wait_in_syscall(pid, &[SYS_NANOSLEEP]);
    w.checkpoint_restore();
    w.go_and_pass();
}

/// Dump while the task spins in user space with patterns in ALL general
/// registers (rax, rcx, r11 included), AVX, MXCSR and x87 state; the
/// harness releases it by writing a byte into a MAP_SHARED file it polls.
#[test]
fn registers_in_userspace_busy_loop() {
    let _t = serial();
    let mut w = Workload::start("regs", &["busy"]);
    // let it spin for a moment so the dump catches it in the loop
    std::thread::sleep(std::time::Duration::from_millis(300));
    let tasks = tasks_of(w.pid);
    assert!(tasks.iter().all(|t| t.1 == 'R'), "workload should be spinning: {tasks:?}\n{}", w.report());
    w.checkpoint_restore();
    w.poke("flag", 0, &[1]);
    let st = w.wait_exit(EXIT_TIMEOUT);
    w.assert_pass(st);
}

/// PKRU (protection keys, in xstate) of two threads with different values.
#[test]
fn pkru_per_thread() {
    let _t = serial();
    roundtrip("pkru", &[]);
}

/// A local descriptor table (modify_ldt: data, read-only code and not-present entries)
/// reads back the same after restore, and %gs, which held an LDT selector through the
/// dump, still reaches its segment; in both modes.
#[test]
fn ldt_entries_and_selector_in_gs() {
    let _t = serial();
    roundtrip("ldt", &[]);
    leave_running_then_restore("ldt", &["result"], &[]);
}
