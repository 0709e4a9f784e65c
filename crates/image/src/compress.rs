//! Compressed pages files (`dump --compress`, FEATURE `pages-lz4`).
//!
//! The content is the same as an uncompressed pages file's — the header page, then the
//! pages — and every page run's `file_offset` is an offset into it. The file holds the
//! header page as it is, then the rest as LZ4 blocks, each `[u32 LE content length][u32
//! LE stored length][stored bytes]`, in order: one per chunk the dump wrote. A block
//! whose content did not compress is stored as it is (stored length = content length).
//! Restore decompresses a whole file into memory once (`load`), and everything after
//! reads the content exactly as from an uncompressed file's mapping.
//!
//! An image is untrusted: `load` never allocates more than the manifest's size for the
//! content (which `read_manifest` bounds by the stored size), never writes past it, and
//! refuses a block that claims more, decompresses to another length, or runs past the
//! file.

use std::io::Write;
use std::path::Path;

use crate::{ImageError, PAGES_HEADER_LEN};

/// Largest content a block may hold (the dump writes at most 2 MiB per block).
pub const MAX_BLOCK: usize = 16 << 20;

/// Largest ratio of content to stored bytes `read_manifest` accepts (LZ4 compresses a
/// run of zeros about 250 times; blocks have an 8-byte header).
pub const MAX_RATIO: u64 = 256;

/// Writes `data` as one block to `out`; `scratch` is reused between calls. Returns the
/// bytes written.
pub fn write_block(out: &mut impl Write, data: &[u8], scratch: &mut Vec<u8>) -> std::io::Result<u64> {
    assert!(data.len() <= MAX_BLOCK, "a block of {} bytes", data.len());
    scratch.resize(lz4_flex::block::get_maximum_output_size(data.len()), 0);
    let n = lz4_flex::block::compress_into(data, scratch).map_err(std::io::Error::other)?;
    let stored: &[u8] = if n < data.len() { &scratch[..n] } else { data };
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    head[4..].copy_from_slice(&(stored.len() as u32).to_le_bytes());
    out.write_all(&head)?;
    out.write_all(stored)?;
    Ok(8 + stored.len() as u64)
}

/// One block of a compressed file: where its stored bytes are, and where its content
/// goes.
struct Block {
    at: usize,
    stored: usize,
    to: usize,
    len: usize,
}

/// The content of a compressed pages file (`bytes`, read from `path`), which must be
/// exactly `size` bytes once decompressed. Every block header is checked first (each
/// block inside the file, the contents filling `size` exactly); the blocks are then
/// decompressed on up to `threads` threads, each into its own part of the content.
pub fn decode(path: &Path, bytes: &[u8], size: u64) -> Result<Vec<u8>, ImageError> {
    decode_with(path, bytes, size, 4)
}

fn decode_with(path: &Path, bytes: &[u8], size: u64, threads: usize) -> Result<Vec<u8>, ImageError> {
    let damaged = |why: String| ImageError::Damaged { path: path.to_path_buf(), why };
    let size = usize::try_from(size).map_err(|_| damaged(format!("content of {size} bytes")))?;
    let hdr = PAGES_HEADER_LEN as usize;
    if bytes.len() < hdr || size < hdr {
        return Err(damaged("shorter than its header page".into()));
    }
    let mut blocks = Vec::new();
    let (mut at, mut to) = (hdr, hdr);
    while at < bytes.len() {
        let field = |k: usize| -> Result<usize, ImageError> {
            let b = bytes.get(at + k..at + k + 4).ok_or_else(|| damaged(format!("block header at byte {at} cut short")))?;
            Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        };
        let (len, stored) = (field(0)?, field(4)?);
        if bytes.len() - (at + 8) < stored {
            return Err(damaged(format!("block at byte {at}: {stored} bytes past the end of the file")));
        }
        if len > MAX_BLOCK || len > size - to || stored > len {
            return Err(damaged(format!("block at byte {at}: {len} bytes of content ({stored} stored), past the content's {size} bytes")));
        }
        blocks.push(Block { at: at + 8, stored, to, len });
        at += 8 + stored;
        to += len;
    }
    if to != size {
        return Err(damaged(format!("{to} bytes of content, the manifest says {size}")));
    }
    let mut out = vec![0u8; size];
    out[..hdr].copy_from_slice(&bytes[..hdr]);
    // the content past the header, cut at block boundaries into one part per thread
    let mut parts: Vec<(&[Block], &mut [u8])> = Vec::new();
    let mut rest: &mut [u8] = &mut out[hdr..];
    let mut left: &[Block] = &blocks;
    let per = blocks.len().div_ceil(threads.max(1)).max(1);
    while !left.is_empty() {
        let (mine, others) = left.split_at(per.min(left.len()));
        let bytes_of: usize = mine.iter().map(|b| b.len).sum();
        let (dst, tail) = std::mem::take(&mut rest).split_at_mut(bytes_of);
        parts.push((mine, dst));
        rest = tail;
        left = others;
    }
    let results: Vec<Result<(), ImageError>> = std::thread::scope(|s| {
        let workers: Vec<_> = parts
            .into_iter()
            .map(|(mine, dst)| {
                s.spawn(move || {
                    let base = mine.first().map_or(0, |b| b.to);
                    for b in mine {
                        let body = &bytes[b.at..b.at + b.stored];
                        let d = &mut dst[b.to - base..b.to - base + b.len];
                        if b.stored == b.len {
                            d.copy_from_slice(body);
                            continue;
                        }
                        let n = lz4_flex::block::decompress_into(body, d).map_err(|e| damaged(format!("block at byte {}: {e}", b.at - 8)))?;
                        if n != b.len {
                            return Err(damaged(format!("block at byte {}: {n} bytes once decompressed, its header says {}", b.at - 8, b.len)));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err(damaged("a decompressing thread panicked".into())))).collect()
    });
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    Ok(out)
}

/// Reads and decodes the compressed pages file `path` (`stored` bytes, checked by
/// `read_manifest`) into its content of `size` bytes.
pub fn load(path: &Path, size: u64, stored: u64) -> Result<Vec<u8>, ImageError> {
    let bytes = crate::read_regular_file(path, stored)?;
    decode(path, &bytes, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(blocks: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let mut f = vec![7u8; PAGES_HEADER_LEN as usize];
        let mut content = f.clone();
        let mut scratch = Vec::new();
        for b in blocks {
            write_block(&mut f, b, &mut scratch).unwrap();
            content.extend_from_slice(b);
        }
        (f, content)
    }

    #[test]
    fn blocks_round_trip() {
        let zeros = vec![0u8; 1 << 20];
        let noise: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let (f, content) = file(&[&zeros, &noise, b"tail"]);
        assert!(f.len() < content.len() / 4, "zeros compress");
        for threads in [1, 2, 3, 8] {
            assert_eq!(decode_with(Path::new("p"), &f, content.len() as u64, threads).unwrap(), content, "{threads} threads");
        }
    }

    #[test]
    fn damaged_files_are_refused_without_panic() {
        let (f, content) = file(&[&vec![1u8; 9000], b"abc"]);
        let n = content.len() as u64;
        assert!(decode(Path::new("p"), &f, n + 1).is_err(), "longer content than the blocks hold");
        assert!(decode(Path::new("p"), &f, n - 1).is_err(), "shorter");
        assert!(decode(Path::new("p"), &f[..f.len() - 1], n).is_err(), "cut short");
        for i in PAGES_HEADER_LEN as usize..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x5a;
            // never a panic; a changed literal may decode to other bytes (the runs' CRCs
            // catch that), anything else is refused
            let _ = decode(Path::new("p"), &g, n);
        }
        let mut g = f.clone();
        let at = PAGES_HEADER_LEN as usize;
        g[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(Path::new("p"), &g, n).is_err(), "a block claiming 4 GiB");
    }
}
