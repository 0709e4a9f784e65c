//! Process trees: a parent with children sharing pipes, shared memory and a file
//! description, a zombie child, a child leading its own process group.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn process_tree_with_pipes_shared_memory_and_zombie() {
    let _t = serial();
    let mut w = Workload::start("tree", &[]);
    let kids: Vec<i32> = ["a", "b", "c"].iter().map(|k| w.info(k).parse().unwrap()).collect();
    if direct() {
        w.go_and_pass();
        return;
    }
    w.dump();
    // The killed children were re-parented to us (subreaper): reap them so their pids
    // are free again.
    let gone = wait_until(Duration::from_secs(10), || {
        reap_strays(false);
        kids.iter().all(|k| !pid_exists(*k))
    });
    assert!(gone, "children of the dumped tree still exist\n{}", w.report());
    w.restore();
    for k in &kids {
        assert!(pid_exists(*k), "child {k} was not restored\n{}", w.report());
    }
    w.go_and_pass();
}
