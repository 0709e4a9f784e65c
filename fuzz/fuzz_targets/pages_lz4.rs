//! A compressed pages file straight from the input (`stasis_image::compress::decode`):
//! arbitrary block headers and LZ4 bytes, and a claimed content size. Oracles: it never
//! panics, never returns content of another size than claimed, and a file made by
//! `write_block` from the input's tail decodes back to exactly that content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stasis_image::{compress, PAGES_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((size, rest)) = data.split_first_chunk::<4>() else { return };
    // content sizes up to 4 MiB past the header page
    let size = PAGES_HEADER_LEN + u64::from(u32::from_le_bytes(*size) % (4 << 20));
    let mut file = vec![0u8; PAGES_HEADER_LEN as usize];
    file.extend_from_slice(rest);
    if let Ok(content) = compress::decode(std::path::Path::new("fuzz"), &file, size) {
        assert_eq!(content.len() as u64, size);
    }
    // round trip of the input itself, in blocks of a size it chooses
    let block = 1 + rest.first().copied().unwrap_or(0) as usize * 97;
    let mut made = vec![0u8; PAGES_HEADER_LEN as usize];
    let mut scratch = Vec::new();
    for c in rest.chunks(block) {
        compress::write_block(&mut made, c, &mut scratch).unwrap();
    }
    let back = compress::decode(std::path::Path::new("fuzz"), &made, PAGES_HEADER_LEN + rest.len() as u64).expect("its own blocks");
    assert_eq!(&back[PAGES_HEADER_LEN as usize..], rest);
});
