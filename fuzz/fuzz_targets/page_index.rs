//! Page runs and pages-file sizes straight from the input bytes (no protobuf, no
//! checksums): run_range, verify_pages and stored_pages on arbitrary offsets, counts,
//! shard numbers and addresses, with two oracles: a run that run_range accepts lies inside
//! its pages file, past the header page, page-aligned; and verify_pages never panics,
//! whatever run_range said.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stasis_image::{page_size, run_range, stored_pages, verify_pages, PageIndex, PageRun, PAGES_HEADER_LEN};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, b) = self.0.split_first_chunk::<N>()?;
        self.0 = b;
        Some(*a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input(data);
    let Some(nshards) = inp.u8() else { return };
    // Pages files of 0..16 pages (plus the header page, or a bit less to test short files).
    let mut shards: Vec<Vec<u8>> = Vec::new();
    for _ in 0..nshards % 4 {
        let Some(p) = inp.u8() else { return };
        let len = (u64::from(p % 16) * page_size() + PAGES_HEADER_LEN).saturating_sub(u64::from(p / 64) * 1000);
        shards.push(vec![p; len as usize]);
    }
    let mut runs = Vec::new();
    while let (Some(off), Some(count), Some(shard), Some(addr), Some(crc)) = (inp.u64(), inp.u32(), inp.u8(), inp.u64(), inp.u32()) {
        // Mostly page-aligned, plausible values; sometimes the raw bits.
        let off = if off & 1 == 0 { off >> 1 & !0xfff } else { off };
        let count = if count & 1 == 0 { count >> 1 & 0xff } else { count };
        runs.push(PageRun { object_id: 0, addr, count, file_offset: off, crc, shard: u32::from(shard % 6), pid: 1 });
    }
    let sizes: Vec<u64> = shards.iter().map(|s| s.len() as u64).collect();
    for r in &runs {
        if let Ok((k, range)) = run_range(r, &sizes) {
            assert!(k < sizes.len() && k as u32 == r.shard);
            assert!(range.start == r.file_offset && range.start >= PAGES_HEADER_LEN && range.start % page_size() == 0);
            assert!(range.end - range.start == u64::from(r.count) * page_size() && range.end <= sizes[k]);
            assert!(r.addr.checked_add(range.end - range.start).is_some());
        }
    }
    let _ = stored_pages(&runs);
    let views: Vec<&[u8]> = shards.iter().map(|s| s.as_slice()).collect();
    let _ = verify_pages(std::path::Path::new("fuzz"), &PageIndex { runs }, &views, 1);
});
