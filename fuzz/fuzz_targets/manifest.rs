//! manifest.img bytes -> parse_manifest, twice: as given (header and record checksums
//! mostly stop it early), then with every checksum recomputed (`reseal_manifest`) so
//! that mutations reach the record decoders, the END checks and the page-run checks. An
//! accepted manifest also goes through the page-index functions (stored_pages,
//! verify_pages against zero-filled pages files of the sizes END records, capped at
//! 1 MiB each). Any panic, hang or unbounded allocation is a bug: a restore runs as root
//! on an untrusted image directory. Oracle: an accepted manifest written again by
//! ManifestWriter parses back to the same processes, objects, runs and shards.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stasis_image::{parse_manifest, rec, reseal_manifest, stored_pages, verify_pages, Manifest, ManifestWriter, PageIndex};

fn page_checks(m: &Manifest) {
    let _ = stored_pages(&m.index.runs);
    let shards: Vec<Vec<u8>> = m.end.shards.iter().take(16).map(|s| vec![0u8; s.size.min(1 << 20) as usize]).collect();
    let shards: Vec<&[u8]> = shards.iter().map(|s| s.as_slice()).collect();
    let _ = verify_pages(std::path::Path::new("fuzz"), &m.index, &shards, 1);
}

fn roundtrip(m: &Manifest) {
    let mut w = ManifestWriter::new();
    for p in &m.processes {
        w.record(rec::PROCESS, p);
    }
    for o in &m.objects {
        w.record(rec::OBJECT, o);
    }
    for chunk in m.index.runs.chunks(65536) {
        w.record(rec::PAGE_INDEX, &PageIndex { runs: chunk.to_vec() });
    }
    let again = parse_manifest(&w.into_bytes(&m.end.shards)).expect("a manifest written again from an accepted one is refused");
    assert!(again.processes == m.processes && again.process == m.process);
    assert!(again.objects == m.objects && again.index == m.index && again.end.shards == m.end.shards);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse_manifest(data) {
        page_checks(&m);
    }
    let mut sealed = data.to_vec();
    reseal_manifest(&mut sealed);
    if let Ok(m) = parse_manifest(&sealed) {
        page_checks(&m);
        roundtrip(&m);
    }
});
