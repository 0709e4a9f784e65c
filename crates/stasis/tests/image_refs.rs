//! Crafted images (a real dump, one record edited, the manifest written again with
//! valid checksums) whose references or credentials point outside what the image's
//! own processes own: restore is refused before anything is created, with one error
//! line, and the host is untouched. The pristine image still restores.

mod common;
use common::*;
use std::fs;
use std::path::Path;
use std::time::Duration;

use stasis_image::{rec, Manifest, ManifestWriter, Process};

const QUICK: Duration = Duration::from_secs(5);

fn write_manifest(img: &Path, m: &Manifest) {
    let mut wr = ManifestWriter::new();
    for p in &m.processes {
        wr.record(rec::PROCESS, p);
    }
    for o in &m.objects {
        wr.record(rec::OBJECT, o);
    }
    wr.record(rec::PAGE_INDEX, &m.index);
    wr.finish(img, &m.end.shards).expect("writing the manifest");
}

fn with_root(m: &Manifest, f: impl FnOnce(&mut Process)) -> Manifest {
    let mut m = m.clone();
    f(&mut m.processes[0]);
    m.process = m.processes[0].clone();
    m
}

/// Restore of `img` refused quickly with one line naming `needles`; nothing left.
fn refused(w: &mut Workload, img: &Path, needles: &[&str], what: &str) {
    let r = w.try_restore_timeout(img, &["-d"], Duration::from_secs(30));
    let rep = w.report();
    assert_clean_error(&r, needles, &format!("[{what}]\n{rep}"));
    assert!(r.elapsed < QUICK, "{what}: refusal took {:.2?}", r.elapsed);
    assert!(!pid_exists(w.pid), "{what}: refused restore left pid {}", w.pid);
    let strays = reap_strays(false);
    assert!(strays.is_empty(), "{what}: refused restore left processes behind: {strays:?}");
}

/// A cgroup path with `..` would make restore create directories and write the pid
/// anywhere on the host (here: under /tmp): refused, naming the pid and the cgroup,
/// and nothing is created.
#[test]
fn cgroup_path_escaping_the_hierarchy_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("basic", &[]);
    w.dump();
    let img = w.img.clone();
    let orig = stasis_image::read_manifest(&img).expect("reading the image");
    let escape = format!("/tmp/stasis-cgroup-escape-{}", w.pid);
    let _ = fs::remove_dir_all(&escape);
    // enough `..` to reach / from any mount point (`..` of / is /)
    let up = "/..".repeat(12);
    for (key, path) in [("0::", format!("{up}{escape}")), ("0::", format!("/x{up}{escape}")), ("4:memory:", format!("/.{up}{escape}"))] {
        let line = format!("{key}{path}");
        let m = with_root(&orig, |p| {
            let ctl = key.splitn(3, ':').nth(1).unwrap_or("").to_string();
            p.cgroups.retain(|l| l.splitn(3, ':').nth(1) != Some(ctl.as_str()));
            p.cgroups.push(line.clone());
        });
        write_manifest(&img, &m);
        let pid = w.pid.to_string();
        refused(&mut w, &img, &[&pid, &line], &format!("cgroup {line}"));
        assert!(!Path::new(&escape).exists(), "{escape} was created by a refused restore (cgroup {line})");
    }
    write_manifest(&img, &orig);
    w.restore();
    w.go_and_pass();
}

/// A page run whose object is a mapped file (here a shared, writable one) would be
/// written into that file on disk before any process exists: refused, the file intact.
#[test]
fn page_run_into_a_mapped_file_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("mem_file", &[]);
    w.dump();
    let img = w.img.clone();
    let orig = stasis_image::read_manifest(&img).expect("reading the image");
    let shared = w.work.join("shared.bin");
    let before = fs::read(&shared).unwrap();
    let obj = orig
        .objects
        .iter()
        .find(|o| o.mapped_file().is_some_and(|f| f.path.ends_with("shared.bin")))
        .map(|o| o.id)
        .expect("no mapped-file object for shared.bin");
    let k = orig.index.runs.iter().position(|r| r.object_id == 0).expect("no private page run");
    let mut m = orig.clone();
    m.index.runs[k].object_id = obj;
    m.index.runs[k].addr = 0;
    write_manifest(&img, &m);
    w.go();
    refused(&mut w, &img, &["page run", "not shared memory"], "page run into shared.bin");
    assert!(fs::read(&shared).unwrap() == before, "shared.bin was written by a refused restore");
    // and a private run outside every VMA of its process
    let mut m = orig.clone();
    m.index.runs[k].addr = 0x1000;
    write_manifest(&img, &m);
    refused(&mut w, &img, &["page run", "not inside one VMA"], "page run outside the VMAs");
    fs::remove_file(w.work.join("go")).ok();
    write_manifest(&img, &orig);
    w.restore();
    w.go_and_pass();
}

/// Credentials the kernel cannot represent or restore cannot install are refused, not
/// skipped: capabilities beyond the last one, more supplementary groups than fit.
#[test]
fn impossible_credentials_refused() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("basic", &[]);
    w.dump();
    let img = w.img.clone();
    let orig = stasis_image::read_manifest(&img).expect("reading the image");
    let m = with_root(&orig, |p| p.creds.as_mut().unwrap().cap_bnd |= 1 << 63);
    write_manifest(&img, &m);
    refused(&mut w, &img, &["capabilities 63", "last capability"], "capability 63");
    let m = with_root(&orig, |p| p.creds.as_mut().unwrap().groups = (0..20000).collect());
    write_manifest(&img, &m);
    refused(&mut w, &img, &["20000 supplementary groups"], "20000 groups");
    write_manifest(&img, &orig);
    w.restore();
    w.go_and_pass();
}

fn status_hex(pid: i32, key: &str) -> u64 {
    let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let v = st.lines().find_map(|l| l.strip_prefix(&format!("{key}:"))).unwrap_or_else(|| panic!("no {key} in status"));
    u64::from_str_radix(v.trim(), 16).unwrap()
}

/// A root process whose capability sets were all reduced alike (effective = permitted =
/// bounding, without CAP_SYS_ADMIN, CAP_NET_RAW and CAP_CHOWN) gets exactly those back:
/// it does not keep the restorer's full permitted set.
#[test]
fn reduced_root_capabilities_restored_exactly() {
    let _t = serial();
    skip_if_direct!();
    let mut w = Workload::start("basic", &[]);
    w.dump();
    let img = w.img.clone();
    let orig = stasis_image::read_manifest(&img).expect("reading the image");
    let c0 = orig.process.creds.clone().unwrap();
    let drop = 1u64 << 21 | 1 << 13 | 1 << 0; // CAP_SYS_ADMIN, CAP_NET_RAW, CAP_CHOWN
    assert!(c0.cap_prm & drop == drop && c0.cap_bnd & drop == drop, "the test runs with these capabilities");
    let want = c0.cap_prm & !drop;
    let m = with_root(&orig, |p| {
        let c = p.creds.as_mut().unwrap();
        assert!(c.uids.iter().all(|u| *u == 0), "the test runs as root");
        (c.cap_eff, c.cap_prm, c.cap_bnd) = (want, want, want);
    });
    write_manifest(&img, &m);
    w.restore();
    for (k, v) in [("CapEff", want), ("CapPrm", want), ("CapBnd", want)] {
        let got = status_hex(w.pid, k);
        assert_eq!(got, v, "{k} of the restored process: {got:#x}, the image's {v:#x}\n{}", w.report());
    }
    w.go_and_pass();
}
