//! manifest.img bytes (checksums recomputed) -> parse_manifest -> restore's semantic
//! checks (stasis_core::restore::validate::validate_with, against a fixed root restorer)
//! -> for an accepted image, the restore plan (RestorePlan::build against a fixed host,
//! with and without --detach) and its text. None of them may panic, hang or allocate
//! without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stasis_core::restore::plan::{Host as PlanHost, RestorePlan};
use stasis_core::restore::validate::{validate_with, Host};
use stasis_image::{parse_manifest, reseal_manifest};

/// A host where pids below 100 are taken, sessions 1 and 2 exist and groups below 50.
struct Fixed;

impl PlanHost for Fixed {
    fn holder(&self, id: i32) -> Option<String> {
        (id < 100).then(|| format!("process {id}"))
    }
    fn session_alive(&self, sid: i32) -> bool {
        sid == 1 || sid == 2
    }
    fn group_alive(&self, pgid: i32) -> bool {
        pgid < 50
    }
    fn sid(&self) -> i32 {
        1
    }
}

fuzz_target!(|data: &[u8]| {
    let mut sealed = data.to_vec();
    reseal_manifest(&mut sealed);
    if let Ok(m) = parse_manifest(&sealed) {
        if validate_with(&m, &Host::root(40)).is_ok() {
            for detach in [false, true] {
                if let Ok(plan) = RestorePlan::build(&m, &Fixed, detach) {
                    let _ = plan.to_string();
                    for p in &plan.procs {
                        let _ = p.finish_steps();
                    }
                }
            }
        }
    }
});
