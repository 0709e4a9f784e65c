//! Native aio contexts (io_setup): context ids, unreaped completions and ring positions
//! survive a dump and restore, and the restored contexts take new requests.

mod common;
use common::*;

/// Two contexts (127 and 639 slots), one with its ring wrapped, one 602 completions in; 10 and 5 completions
/// not reaped at dump time. After restore (workloads/aio.c): same context ids, ring
/// head/tail as at dump, io_getevents returns exactly those completions (data, obj,
/// res, res2), 500 + 201 new requests complete with the right bytes, io_destroy works.
#[test]
fn aio_contexts_with_unreaped_completions() {
    let _t = serial();
    roundtrip("aio", &[]);
}

/// A --leave-running dump: the original still holds its completions and reaps them
/// itself (same checks); then the image restores into a copy that passes them too.
#[test]
fn aio_contexts_leave_running() {
    let _t = serial();
    // the original's new write grows out.bin after the dump
    leave_running_then_restore("aio", &["result"], &["--allow-changed-files"]);
}

/// A ring nearly full: 120 of context A's 127 slots hold unreaped completions, so the
/// restore must get almost every request slot of the new context; afterwards the
/// program reaps all 120 and 500 new requests still go through.
#[test]
fn aio_context_nearly_full() {
    let _t = serial();
    roundtrip("aio", &["full"]);
}

/// A forked child keeps the mapping of its parent's ring but has no context behind it
/// (the kernel does not copy contexts): the dump refuses it, naming the child and the
/// ring, and leaves the tree running (parent and child pass their checks).
#[test]
fn aio_ring_inherited_across_fork_is_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("aio", &["fork"]);
    let (kid, ring) = (w.info("kid"), w.info("ring"));
    let r = w.try_dump(&[]);
    assert_clean_error(&r, &[&format!("pid {kid}"), &format!("VMA {ring}-"), "no aio context of this process", "inherited across fork"], &w.report());
    w.assert_running_untouched();
    w.go_and_pass();
}

/// A tree: parent and child (forked before either made a context) each with two
/// contexts and unreaped completions; the child's rings may sit at the same addresses
/// as its parent's (separate address spaces); the child made one ring read-only and
/// the other inaccessible (mprotect; the dump reads it all the same), and they are
/// again. Both pass the checks after restore.
#[test]
fn aio_contexts_in_a_tree() {
    let _t = serial();
    let mut w = Workload::start("aio", &["tree"]);
    let kid: i32 = w.info("kid").parse().unwrap();
    dump_and_restore_tree(&mut w, &[kid]);
    w.go_and_pass();
}
