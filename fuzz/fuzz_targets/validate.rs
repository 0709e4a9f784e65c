//! manifest.img bytes (checksums recomputed) -> parse_manifest -> restore's semantic
//! checks (stasis_core::restore::validate::validate_with, against a fixed root restorer).
//! validate must refuse or accept, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stasis_core::restore::validate::{validate_with, Host};
use stasis_image::{parse_manifest, reseal_manifest};

fn host() -> Host {
    Host {
        uids: vec![0; 4],
        gids: vec![0; 4],
        groups: vec![],
        cap_eff: (1 << 41) - 1,
        cap_prm: (1 << 41) - 1,
        cap_inh: 0,
        cap_bnd: (1 << 41) - 1,
        cap_amb: 0,
        cap_last_cap: 40,
        nr_open: 1 << 20,
        max_map_count: 65530,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut sealed = data.to_vec();
    reseal_manifest(&mut sealed);
    if let Ok(m) = parse_manifest(&sealed) {
        let _ = validate_with(&m, &host());
    }
});
