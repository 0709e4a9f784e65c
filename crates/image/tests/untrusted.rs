//! Hostile manifests: every one must be refused with an error (or accepted), never make
//! the reader panic, hang or allocate without bound. Inputs the fuzzer found are under
//! tests/data/ (see `fuzz_findings`).

use stasis_image::*;

const PAGE: u64 = 4096;

/// A well-formed manifest: one process, `runs`, and one pages file of `pages` pages.
fn manifest(runs: Vec<PageRun>, pages: u64) -> Vec<u8> {
    let mut w = ManifestWriter::new();
    w.record(rec::PROCESS, &Process { pid: 42, comm: "x".into(), ..Default::default() });
    w.record(rec::PAGE_INDEX, &PageIndex { runs });
    w.into_bytes(&[Shard { size: PAGES_HEADER_LEN + pages * PAGE, header_crc: 0, stored_size: 0 }])
}

fn run(file_offset: u64, count: u32, shard: u32) -> PageRun {
    PageRun { object_id: 0, addr: 0x10000, count, file_offset, crc: 0, shard, pid: 42 }
}

/// A record with the given type, declared length and payload, with a valid CRC of
/// (type, declared length, payload).
fn raw_record(ty: u32, declared_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&ty.to_le_bytes());
    h.extend_from_slice(&declared_len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&h), payload);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(payload);
    h
}

fn header() -> Vec<u8> {
    ManifestWriter::new().into_bytes(&[])[..HEADER_LEN].to_vec()
}

fn damaged(r: Result<Manifest, ImageError>) -> String {
    match r {
        Err(ImageError::Damaged { why, .. }) => why,
        Err(e) => panic!("expected a damaged-image error, got {e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn good_manifest_parses() {
    let m = parse_manifest(&manifest(vec![run(4096, 2, 0)], 2)).unwrap();
    assert_eq!(m.process.pid, 42);
    assert_eq!(m.index.runs.len(), 1);
}

/// The reported bug: offset + count * page wrapped around, the manifest was accepted
/// and verify_pages then sliced data[a..b] with a > b.
#[test]
fn wrapping_page_run_is_refused() {
    let r = run(u64::MAX - (PAGE - 1), 2, 0); // page-aligned; + 8192 wraps to 4096
    let why = damaged(parse_manifest(&manifest(vec![r], 2)));
    assert!(why.starts_with("page run 0 "), "{why}");
    assert!(why.contains("overflows"), "{why}");
    // verify_pages on an index that never went through the parser: an error, no panic.
    let shard = vec![0u8; (PAGES_HEADER_LEN + 2 * PAGE) as usize];
    let e = verify_pages(std::path::Path::new("x"), &PageIndex { runs: vec![r] }, &[&shard], 2).unwrap_err();
    assert!(e.to_string().contains("page run 0"), "{e}");
}

#[test]
fn run_past_its_shard_is_refused() {
    let why = damaged(parse_manifest(&manifest(vec![run(4096, 1, 0), run(8192, 2, 0)], 2)));
    assert!(why.starts_with("page run 1 "), "{why}");
    assert!(why.contains("past the end of pages.img"), "{why}");
    let shard = vec![0u8; (PAGES_HEADER_LEN + 2 * PAGE) as usize];
    let idx = PageIndex { runs: vec![run(8192, 2, 0)] };
    assert!(verify_pages(std::path::Path::new("x"), &idx, &[&shard], 1).is_err());
}

#[test]
fn run_with_huge_count_is_refused() {
    let why = damaged(parse_manifest(&manifest(vec![run(4096, u32::MAX, 0)], 2)));
    assert!(why.contains("page run 0"), "{why}");
}

#[test]
fn run_in_a_missing_shard_is_refused() {
    let why = damaged(parse_manifest(&manifest(vec![run(4096, 1, 1)], 2)));
    assert!(why.contains("shard 1 does not exist"), "{why}");
    let why = damaged(parse_manifest(&manifest(vec![run(4096, 1, u32::MAX)], 2)));
    assert!(why.contains("does not exist"), "{why}");
    let shard = vec![0u8; (PAGES_HEADER_LEN + 2 * PAGE) as usize];
    let idx = PageIndex { runs: vec![run(4096, 1, 3)] };
    assert!(verify_pages(std::path::Path::new("x"), &idx, &[&shard], 1).is_err());
}

#[test]
fn unaligned_or_header_runs_are_refused() {
    for r in [run(4096 + 1, 1, 0), run(0, 1, 0), PageRun { addr: 0x10001, ..run(4096, 1, 0) }, PageRun { addr: u64::MAX - (PAGE - 1), ..run(4096, 2, 0) }] {
        let why = damaged(parse_manifest(&manifest(vec![r], 2)));
        assert!(why.starts_with("page run 0 "), "{r:?}: {why}");
    }
}

#[test]
fn huge_declared_record_length_is_refused() {
    for len in [u32::MAX, u32::MAX - 11, 1 << 31, 100] {
        let mut b = header();
        b.extend(raw_record(rec::PROCESS, len, &[0x08, 0x2a]));
        let why = damaged(parse_manifest(&b));
        assert!(why.contains("runs past the end"), "{len}: {why}");
    }
    // a truncated record header
    let mut b = header();
    b.extend_from_slice(&[1, 0, 0, 0x80, 5]);
    assert!(damaged(parse_manifest(&b)).contains("truncated record header"));
}

/// A protobuf length inside a payload (a string of 2^62 bytes) with the record's CRC
/// correct: refused by the decoder, nothing of that size allocated.
#[test]
fn huge_declared_field_length_is_refused() {
    let mut payload = vec![0x12]; // field 2 (comm), length-delimited
    let mut v: u64 = 1 << 62;
    while v >= 0x80 {
        payload.push((v as u8) | 0x80);
        v >>= 7;
    }
    payload.push(v as u8);
    payload.extend_from_slice(b"abc");
    let mut b = header();
    b.extend(raw_record(rec::PROCESS, payload.len() as u32, &payload));
    assert!(damaged(parse_manifest(&b)).contains("record 0 (type 0x80000001)"));
}

#[test]
fn many_distinct_optional_records_parse_in_linear_time() {
    // 200k distinct unknown optional types (record_sizes was a linear search per
    // record: quadratic).
    let mut w = ManifestWriter::new();
    w.record(rec::PROCESS, &Process { pid: 1, ..Default::default() });
    for t in 0..200_000u32 {
        w.record(t + 1, &End::default());
    }
    let b = w.into_bytes(&[Shard { size: PAGES_HEADER_LEN, header_crc: 0, stored_size: 0 }]);
    let t0 = std::time::Instant::now();
    let m = parse_manifest(&b).unwrap();
    assert_eq!(m.record_sizes.len(), 200_002);
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn stored_pages_never_wraps() {
    let runs = vec![run(u64::MAX - (PAGE - 1), u32::MAX, 0), run(4096, 1, 0)];
    let _ = stored_pages(&runs);
}

/// manifest.img that is a FIFO or a directory: refused at once (a FIFO used to block
/// the reader until someone wrote into it).
#[test]
fn manifest_that_is_not_a_regular_file_is_refused() {
    let d = std::env::temp_dir().join(format!("stasis-image-untrusted-fifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let p = std::ffi::CString::new(d.join(MANIFEST).to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
    assert!(matches!(read_manifest(&d), Err(ImageError::NotImage { .. })));
    std::fs::remove_file(d.join(MANIFEST)).unwrap();
    std::fs::create_dir(d.join(MANIFEST)).unwrap();
    assert!(read_manifest(&d).is_err());
    std::fs::remove_dir_all(&d).unwrap();
}

/// Pages file that is a FIFO, with a manifest that would accept its size (0).
#[test]
fn pages_file_that_is_not_a_regular_file_is_refused() {
    let d = std::env::temp_dir().join(format!("stasis-image-untrusted-pfifo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let mut w = ManifestWriter::new();
    w.record(rec::PROCESS, &Process { pid: 1, ..Default::default() });
    w.finish(&d, &[Shard { size: 0, header_crc: 0, stored_size: 0 }]).unwrap();
    let p = std::ffi::CString::new(d.join(PAGES).to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(p.as_ptr(), 0o600) }, 0);
    assert!(matches!(read_manifest(&d), Err(ImageError::NotImage { .. })));
    std::fs::remove_dir_all(&d).unwrap();
}

/// Inputs found by the fuzzer (fuzz/, target `manifest`): each once made the reader
/// panic, hang or exhaust memory. The fuzz target's checks, run on each.
#[test]
fn fuzz_findings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "bin") {
            check_like_the_fuzzer(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    eprintln!("{n} fuzz findings replayed");
}

/// What fuzz/fuzz_targets/manifest.rs does with its input.
fn check_like_the_fuzzer(data: &[u8]) {
    let page_checks = |m: &Manifest| {
        let _ = stored_pages(&m.index.runs);
        let shards: Vec<Vec<u8>> = m.end.shards.iter().take(16).map(|s| vec![0u8; s.size.min(1 << 20) as usize]).collect();
        let shards: Vec<&[u8]> = shards.iter().map(|s| s.as_slice()).collect();
        let _ = verify_pages(std::path::Path::new("x"), &m.index, &shards, 1);
    };
    if let Ok(m) = parse_manifest(data) {
        page_checks(&m);
    }
    let mut sealed = data.to_vec();
    reseal_manifest(&mut sealed);
    if let Ok(m) = parse_manifest(&sealed) {
        page_checks(&m);
    }
}
