//! stasis image format (see docs/FORMAT.md).
//!
//! An image is a directory with two files:
//! - `manifest.img`: a fixed header (magic, format version, architecture, page size) and
//!   a sequence of typed, length-delimited, CRC32C-checked records (protobuf payloads).
//! - `pages.img`: a 4 KiB header page, then page contents, page-aligned, in runs that the
//!   manifest's page index locates and checksums.

pub mod model;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;

pub use model::*;

pub const MANIFEST: &str = "manifest.img";
pub const PAGES: &str = "pages.img";
pub const MANIFEST_MAGIC: [u8; 8] = *b"STASISMF";
pub const PAGES_MAGIC: [u8; 8] = *b"STASISPG";
pub const FORMAT_VERSION: u32 = 1;
/// ELF e_machine of x86_64.
pub const ARCH_X86_64: u32 = 62;
pub const HEADER_LEN: usize = 32;
/// Size of the header page at the start of pages.img.
pub const PAGES_HEADER_LEN: u64 = 4096;

/// Record types. Bit 31 set = critical: a reader that does not know it must refuse.
pub mod rec {
    pub const PROCESS: u32 = 0x8000_0001;
    pub const OBJECT: u32 = 0x8000_0002;
    pub const PAGE_INDEX: u32 = 0x8000_0003;
    pub const END: u32 = 0x8000_FFFF;
    pub const CRITICAL: u32 = 0x8000_0000;
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a stasis image ({why})")]
    NotImage { path: PathBuf, why: String },
    #[error("{path}: damaged: {why}")]
    Damaged { path: PathBuf, why: String },
    #[error("{path}: {why}")]
    Incompatible { path: PathBuf, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io { path: path.to_path_buf(), source }
}

pub fn page_size() -> u64 {
    4096
}

/// The decoded metadata of an image.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    pub arch: u32,
    pub page_size: u32,
    pub version: u32,
    /// The root of the dumped tree (same as `processes[0]`).
    pub process: Process,
    /// Every process of the tree, parents before their children.
    pub processes: Vec<Process>,
    pub objects: Vec<Object>,
    pub index: PageIndex,
    pub end: End,
    /// Bytes per record type, for `inspect`.
    pub record_sizes: Vec<(u32, u64)>,
}

impl Manifest {
    pub fn object(&self, id: u32) -> Option<&Object> {
        self.objects.iter().find(|o| o.id == id)
    }
}

fn header_bytes(arch: u32, page_size: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(&MANIFEST_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&arch.to_le_bytes());
    h[16..20].copy_from_slice(&page_size.to_le_bytes());
    // 20..28 reserved (zero)
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A record's checksum covers its type, its length and its payload.
fn record_crc(ty: u32, payload: &[u8]) -> u32 {
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&ty.to_le_bytes());
    h[4..].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&h), payload)
}

/// Writes manifest.img atomically: into a temporary name, fsync'ed, then renamed, so a
/// directory never holds a manifest that looks complete but is not.
pub struct ManifestWriter {
    buf: Vec<u8>,
    records: u32,
}

impl Default for ManifestWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ManifestWriter {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(&header_bytes(ARCH_X86_64, page_size() as u32));
        ManifestWriter { buf, records: 0 }
    }

    pub fn record<M: Message>(&mut self, ty: u32, msg: &M) {
        let payload = msg.encode_to_vec();
        self.buf.extend_from_slice(&ty.to_le_bytes());
        self.buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&record_crc(ty, &payload).to_le_bytes());
        self.buf.extend_from_slice(&payload);
        self.records += 1;
    }

    /// Appends the END record and writes the file. `shards`: size and header CRC of
    /// every pages file, pages.img first.
    pub fn finish(mut self, dir: &Path, shards: &[Shard]) -> Result<(), ImageError> {
        let first = shards.first().cloned().unwrap_or_default();
        let end = End {
            records: self.records,
            pages_file_size: first.size,
            pages_header_crc: first.header_crc,
            shards: shards.to_vec(),
        };
        self.record(rec::END, &end);
        let tmp = dir.join(".manifest.img.tmp");
        let path = dir.join(MANIFEST);
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&self.buf).map_err(io_err(&tmp))?;
        // No fsync: a manifest lost in a crash makes the image absent, a torn one fails
        // its checksums; either way it is never restored half-written.
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(())
    }
}

/// Reads and fully validates manifest.img (header, every record's CRC, END record, and
/// the size and header of pages.img). Does not read page contents; see `verify_pages`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, ImageError> {
    let path = dir.join(MANIFEST);
    let data = std::fs::read(&path).map_err(io_err(&path))?;
    let damaged = |why: String| ImageError::Damaged { path: path.clone(), why };
    if data.len() < HEADER_LEN || data[..8] != MANIFEST_MAGIC {
        return Err(ImageError::NotImage { path: path.clone(), why: "bad magic".into() });
    }
    let le32 = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap());
    if crc32c::crc32c(&data[..28]) != le32(&data[28..32]) {
        return Err(damaged("header checksum mismatch".into()));
    }
    let version = le32(&data[8..12]);
    let arch = le32(&data[12..16]);
    let psize = le32(&data[16..20]);
    if version != FORMAT_VERSION {
        return Err(ImageError::Incompatible {
            path: path.clone(),
            why: format!("format version {version}, this stasis reads version {FORMAT_VERSION}"),
        });
    }
    if arch != ARCH_X86_64 {
        return Err(ImageError::Incompatible {
            path: path.clone(),
            why: format!("image is for ELF machine {arch}, this host is x86_64 (62)"),
        });
    }
    if psize as u64 != page_size() {
        return Err(ImageError::Incompatible {
            path: path.clone(),
            why: format!("image page size {psize}, host page size {}", page_size()),
        });
    }
    let mut m = Manifest { arch, page_size: psize, version, ..Default::default() };
    let mut off = HEADER_LEN;
    let mut n = 0u32;
    let mut have_process = false;
    let mut end = None;
    while off < data.len() {
        if data.len() - off < 12 {
            return Err(damaged(format!("truncated record header at byte {off}")));
        }
        let ty = le32(&data[off..off + 4]);
        let len = le32(&data[off + 4..off + 8]) as usize;
        let crc = le32(&data[off + 8..off + 12]);
        let body_start = off + 12;
        if data.len() - body_start < len {
            return Err(damaged(format!("record at byte {off} runs past the end of the file")));
        }
        let body = &data[body_start..body_start + len];
        if record_crc(ty, body) != crc {
            return Err(damaged(format!("record {n} (type {ty:#x}) at byte {off}: checksum mismatch")));
        }
        let dec = |e: prost::DecodeError| damaged(format!("record {n} (type {ty:#x}): {e}"));
        match ty {
            rec::PROCESS => {
                let p = Process::decode(body).map_err(dec)?;
                if !have_process {
                    m.process = p.clone();
                }
                m.processes.push(p);
                have_process = true;
            }
            rec::OBJECT => m.objects.push(Object::decode(body).map_err(dec)?),
            rec::PAGE_INDEX => {
                let idx = PageIndex::decode(body).map_err(dec)?;
                m.index.runs.extend(idx.runs);
            }
            rec::END => {
                let e = End::decode(body).map_err(dec)?;
                if e.records != n {
                    return Err(damaged(format!("END says {} records, found {n}", e.records)));
                }
                end = Some(e);
                if body_start + len != data.len() {
                    return Err(damaged("bytes after the END record".into()));
                }
            }
            t if t & rec::CRITICAL != 0 => {
                return Err(ImageError::Incompatible {
                    path: path.clone(),
                    why: format!("record type {t:#x} is required but unknown to this stasis"),
                });
            }
            _ => {} // optional record of a newer writer: skip
        }
        match m.record_sizes.iter_mut().find(|(t, _)| *t == ty) {
            Some((_, s)) => *s += len as u64 + 12,
            None => m.record_sizes.push((ty, len as u64 + 12)),
        }
        n += 1;
        off = body_start + len;
    }
    let end = end.ok_or_else(|| damaged("no END record (truncated or incomplete image)".into()))?;
    if !have_process {
        return Err(damaged("no PROCESS record".into()));
    }
    // Pages files: sizes and headers must match what the manifest recorded.
    if end.shards.is_empty() {
        return Err(damaged("END lists no pages file".into()));
    }
    for (k, sh) in end.shards.iter().enumerate() {
        let ppath = dir.join(pages_file_name(k as u32));
        let meta = std::fs::metadata(&ppath).map_err(io_err(&ppath))?;
        if meta.len() != sh.size {
            return Err(ImageError::Damaged {
                path: ppath,
                why: format!("size is {} bytes, manifest expects {}", meta.len(), sh.size),
            });
        }
        let mut hdr = vec![0u8; PAGES_HEADER_LEN as usize];
        File::open(&ppath).and_then(|mut f| f.read_exact(&mut hdr)).map_err(io_err(&ppath))?;
        if hdr[..8] != PAGES_MAGIC || crc32c::crc32c(&hdr) != sh.header_crc {
            return Err(ImageError::Damaged { path: ppath, why: "header page checksum mismatch".into() });
        }
    }
    for r in &m.index.runs {
        let endb = r.file_offset + r.count as u64 * page_size();
        let size = end.shards.get(r.shard as usize).map(|s| s.size).unwrap_or(0);
        if r.file_offset < PAGES_HEADER_LEN || endb > size || r.file_offset % page_size() != 0 {
            return Err(ImageError::Damaged {
                path: dir.join(MANIFEST),
                why: format!("page run at {:#x} points outside pages.img", r.addr),
            });
        }
    }
    m.end = end;
    Ok(m)
}

/// File name of pages shard `k`: pages.img, pages.1.img, pages.2.img...
pub fn pages_file_name(k: u32) -> String {
    if k == 0 {
        PAGES.to_string()
    } else {
        format!("pages.{k}.img")
    }
}

/// Builds the header page of a pages file.
pub fn pages_header(total_pages: u64, shard: u32, shards: u32) -> Vec<u8> {
    let mut h = vec![0u8; PAGES_HEADER_LEN as usize];
    h[..8].copy_from_slice(&PAGES_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(page_size() as u32).to_le_bytes());
    h[16..24].copy_from_slice(&total_pages.to_le_bytes());
    h[24..28].copy_from_slice(&shard.to_le_bytes());
    h[28..32].copy_from_slice(&shards.to_le_bytes());
    h
}

/// Number of distinct pages of the pages files that the runs cover. Runs of different
/// processes may cover the same pages (private pages shared copy-on-write at dump are
/// stored once), so this can be less than the sum of the runs' counts.
pub fn stored_pages(runs: &[PageRun]) -> u64 {
    let mut r: Vec<(u32, u64, u64)> = runs.iter().map(|r| (r.shard, r.file_offset, r.file_offset + r.count as u64 * page_size())).collect();
    r.sort_unstable();
    let mut bytes = 0u64;
    let mut cur: Option<(u32, u64, u64)> = None;
    for (s, a, b) in r {
        match cur {
            Some((cs, ca, cb)) if cs == s && a <= cb => cur = Some((cs, ca, cb.max(b))),
            _ => {
                if let Some((_, ca, cb)) = cur {
                    bytes += cb - ca;
                }
                cur = Some((s, a, b));
            }
        }
    }
    if let Some((_, ca, cb)) = cur {
        bytes += cb - ca;
    }
    bytes / page_size()
}

/// Checks every page run's CRC32C against the bytes of the pages files, in parallel.
/// `shards[k]` is the whole content of pages file k (e.g. a read-only mapping).
/// Runs of several processes over the same bytes with the same CRC (pages shared
/// copy-on-write at dump) are checked once.
pub fn verify_pages(dir: &Path, index: &PageIndex, shards: &[&[u8]], threads: usize) -> Result<(), ImageError> {
    let mut once = std::collections::HashSet::new();
    let runs: Vec<&PageRun> = index.runs.iter().filter(|r| once.insert((r.shard, r.file_offset, r.count, r.crc))).collect();
    let runs = &runs;
    let threads = threads.max(1);
    let bad: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads {
            let bad = &bad;
            s.spawn(move || {
                for r in runs.iter().skip(t).step_by(threads) {
                    let data: &[u8] = shards.get(r.shard as usize).copied().unwrap_or(&[]);
                    let a = r.file_offset as usize;
                    let b = a + r.count as usize * page_size() as usize;
                    if b > data.len() || crc32c::crc32c(&data[a..b]) != r.crc {
                        *bad.lock().unwrap() = Some(format!(
                            "pages at {:#x} (+{} pages, file offset {}) fail their checksum",
                            r.addr, r.count, r.file_offset
                        ));
                        return;
                    }
                }
            });
        }
    });
    match bad.into_inner().unwrap() {
        Some(why) => Err(ImageError::Damaged { path: dir.to_path_buf(), why }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("stasis-image-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_image(dir: &Path) {
        let page = vec![0xabu8; 4096];
        let mut pages = pages_header(1, 0, 1);
        let hcrc = crc32c::crc32c(&pages);
        pages.extend_from_slice(&page);
        std::fs::write(dir.join(PAGES), &pages).unwrap();
        let mut w = ManifestWriter::new();
        w.record(rec::PROCESS, &Process { pid: 42, comm: "x".into(), ..Default::default() });
        w.record(0x0000_0077, &End::default()); // unknown, optional: must be skipped
        w.record(
            rec::PAGE_INDEX,
            &PageIndex {
                runs: vec![PageRun { object_id: 0, addr: 0x1000, count: 1, file_offset: 4096, crc: crc32c::crc32c(&page), shard: 0, pid: 42 }],
            },
        );
        w.finish(dir, &[Shard { size: pages.len() as u64, header_crc: hcrc }]).unwrap();
    }

    #[test]
    fn roundtrip_and_skip_unknown_optional_record() {
        let d = tmpdir("rt");
        write_image(&d);
        let m = read_manifest(&d).unwrap();
        assert_eq!(m.process.pid, 42);
        assert_eq!(m.index.runs.len(), 1);
        let data = std::fs::read(d.join(PAGES)).unwrap();
        verify_pages(&d, &m.index, &[&data], 2).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn every_flipped_manifest_byte_is_refused() {
        let d = tmpdir("flip");
        write_image(&d);
        let orig = std::fs::read(d.join(MANIFEST)).unwrap();
        for i in 0..orig.len() {
            let mut bad = orig.clone();
            bad[i] ^= 0x40;
            std::fs::write(d.join(MANIFEST), &bad).unwrap();
            assert!(read_manifest(&d).is_err(), "flip at byte {i} accepted");
        }
        for len in 0..orig.len() {
            std::fs::write(d.join(MANIFEST), &orig[..len]).unwrap();
            assert!(read_manifest(&d).is_err(), "truncation to {len} accepted");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Runs of two processes over the same stored bytes (pages shared copy-on-write at
    /// dump): each verifies on its own, the stored pages are counted once, and a
    /// damaged shared page is refused through either run.
    #[test]
    fn runs_sharing_stored_pages() {
        let d = tmpdir("shared");
        let body: Vec<u8> = (0..3 * 4096).map(|i| (i / 4096 * 7 + i % 251) as u8).collect();
        let mut pages = pages_header(3, 0, 1);
        let hcrc = crc32c::crc32c(&pages);
        pages.extend_from_slice(&body);
        std::fs::write(d.join(PAGES), &pages).unwrap();
        let run = |pid, addr, count: u32, page: u64| PageRun {
            object_id: 0,
            addr,
            count,
            file_offset: 4096 + page * 4096,
            crc: crc32c::crc32c(&body[(page * 4096) as usize..((page + count as u64) * 4096) as usize]),
            shard: 0,
            pid,
        };
        let mut w = ManifestWriter::new();
        w.record(rec::PROCESS, &Process { pid: 1, ..Default::default() });
        w.record(rec::PROCESS, &Process { pid: 2, ppid: 1, ..Default::default() });
        // process 2 restores pages 1..3 of process 1's run (at another address)
        w.record(rec::PAGE_INDEX, &PageIndex { runs: vec![run(1, 0x10000, 3, 0), run(2, 0x20000, 2, 1)] });
        w.finish(&d, &[Shard { size: pages.len() as u64, header_crc: hcrc }]).unwrap();
        let m = read_manifest(&d).unwrap();
        assert_eq!(stored_pages(&m.index.runs), 3);
        assert_eq!(m.index.runs.iter().map(|r| r.count as u64).sum::<u64>(), 5);
        verify_pages(&d, &m.index, &[&pages], 2).unwrap();
        let mut bad = pages.clone();
        bad[4096 + 2 * 4096 + 9] ^= 1;
        assert!(verify_pages(&d, &m.index, &[&bad], 2).is_err());
        // only the second run covers page 2 wrongly: still refused
        let mut idx = m.index.clone();
        idx.runs[1].crc ^= 1;
        assert!(verify_pages(&d, &idx, &[&pages], 1).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damaged_pages_are_refused() {
        let d = tmpdir("pages");
        write_image(&d);
        let m = read_manifest(&d).unwrap();
        let mut data = std::fs::read(d.join(PAGES)).unwrap();
        data[4096 + 100] ^= 1;
        assert!(verify_pages(&d, &m.index, &[&data], 1).is_err());
        std::fs::write(d.join(PAGES), &data[..5000]).unwrap();
        assert!(read_manifest(&d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
