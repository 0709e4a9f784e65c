//! stasis image format (see docs/FORMAT.md).
//!
//! An image is a directory with two files:
//! - `manifest.img`: a fixed header (magic, format version, architecture, page size) and
//!   a sequence of typed, length-delimited, CRC32C-checked records (protobuf payloads).
//! - `pages.img`: a 4 KiB header page, then page contents, page-aligned, in runs that the
//!   manifest's page index locates and checksums.

pub mod compress;
pub mod model;

/// The image schema compiled from `proto/stasis.proto` at build time (protox +
/// prost-build, no protoc). Same wire format as `model` (tests prove it); `model` is
/// the API the rest of stasis uses for now.
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod schema {
    include!(concat!(env!("OUT_DIR"), "/stasis.image.v1.rs"));

    /// The protobuf package of the schema.
    pub const PACKAGE: &str = "stasis.image.v1";
    /// `proto/stasis.proto`, as compiled into this crate.
    pub const PROTO: &str = include_str!("../proto/stasis.proto");
    /// The encoded `google.protobuf.FileDescriptorSet` of `proto/stasis.proto`.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/stasis.fds.bin"));
}

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

/// Format features this reader implements. An image whose FEATURES record requires
/// another one is refused (docs/FORMAT.md, "Versioning"): a feature names information
/// that a reader without it would misread.
/// - `network-lock`: the root process's `net_lock` names an nftables table holding the
///   dumped TCP connections' packets back; a restore that ignored it would leave them
///   blocked.
/// - `packet-ring`: a packet socket has a receive ring (`PacketObj.rx_ring`, VMAs of
///   kind `PACKET_RING`); a restore that ignored it would give the process a socket
///   without its ring.
/// - `pages-lz4`: the pages files are compressed (`compress`); a reader that ignored it
///   would take LZ4 blocks for pages.
pub const KNOWN_FEATURES: &[&str] = &[FEATURE_NETWORK_LOCK, FEATURE_PACKET_RING, FEATURE_PAGES_LZ4];

/// Format feature of images whose pages files are LZ4-compressed (`dump --compress`).
pub const FEATURE_PAGES_LZ4: &str = "pages-lz4";

/// Format feature of images that carry a network lock (`Process.net_lock`).
pub const FEATURE_NETWORK_LOCK: &str = "network-lock";

/// Format feature of images with a packet socket's receive ring (`PacketObj.rx_ring`).
pub const FEATURE_PACKET_RING: &str = "packet-ring";

/// Record types. Bit 31 set = critical: a reader that does not know it must refuse.
pub mod rec {
    pub const PROCESS: u32 = 0x8000_0001;
    pub const OBJECT: u32 = 0x8000_0002;
    pub const PAGE_INDEX: u32 = 0x8000_0003;
    /// `Features`: the format features the image requires (first record, when present).
    pub const FEATURES: u32 = 0x8000_0004;
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
    /// The format features the image requires (its FEATURES record; all known to this
    /// reader, or it would have been refused).
    pub required_features: Vec<String>,
    /// Object id -> position in `objects`, built by the parser (which refuses duplicate
    /// ids). After changing the ids or the order of `objects` of a parsed manifest,
    /// call `reindex_objects`.
    pub object_index: ObjectIndex,
}

/// Object id -> position in `Manifest::objects`.
#[derive(Clone, Debug, Default)]
pub struct ObjectIndex {
    pos: std::collections::HashMap<u32, usize>,
}

impl ObjectIndex {
    /// Indexes `objects`; on a duplicate id, returns it and the positions of its two
    /// objects.
    pub fn build(objects: &[Object]) -> Result<ObjectIndex, (u32, usize, usize)> {
        let mut pos = std::collections::HashMap::with_capacity(objects.len());
        for (i, o) in objects.iter().enumerate() {
            if let Some(first) = pos.insert(o.id, i) {
                return Err((o.id, first, i));
            }
        }
        Ok(ObjectIndex { pos })
    }

    pub fn len(&self) -> usize {
        self.pos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }

    /// Position of object `id`.
    pub fn get(&self, id: u32) -> Option<usize> {
        self.pos.get(&id).copied()
    }
}

impl Manifest {
    /// The object with this id: O(1) through `object_index` on a parsed manifest. A
    /// manifest built by hand (no index, or one that no longer covers `objects`) is
    /// searched linearly, so lookups stay right whoever built it.
    pub fn object(&self, id: u32) -> Option<&Object> {
        if self.object_index.len() == self.objects.len() {
            match self.object_index.get(id).and_then(|i| self.objects.get(i)) {
                Some(o) if o.id == id => return Some(o),
                None => return None,
                Some(_) => {} // stale index: search
            }
        }
        self.objects.iter().find(|o| o.id == id)
    }

    /// Rebuilds `object_index` from `objects`; refuses duplicate ids (the id, and the
    /// positions of its two objects).
    pub fn reindex_objects(&mut self) -> Result<(), (u32, usize, usize)> {
        self.object_index = ObjectIndex::build(&self.objects)?;
        Ok(())
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

    /// A writer whose image requires these format features: their FEATURES record comes
    /// first. With none, the same as `new` (no FEATURES record).
    pub fn with_required_features(features: &[&str]) -> Self {
        let mut w = Self::new();
        if !features.is_empty() {
            w.record(rec::FEATURES, &Features { required: features.iter().map(|f| f.to_string()).collect() });
        }
        w
    }

    pub fn record<M: Message>(&mut self, ty: u32, msg: &M) {
        let payload = msg.encode_to_vec();
        self.buf.extend_from_slice(&ty.to_le_bytes());
        self.buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&record_crc(ty, &payload).to_le_bytes());
        self.buf.extend_from_slice(&payload);
        self.records += 1;
    }

    /// Appends the END record and returns the whole manifest, as `finish` would write it.
    pub fn into_bytes(mut self, shards: &[Shard]) -> Vec<u8> {
        let first = shards.first().cloned().unwrap_or_default();
        let end = End {
            records: self.records,
            pages_file_size: first.size,
            pages_header_crc: first.header_crc,
            shards: shards.to_vec(),
        };
        self.record(rec::END, &end);
        self.buf
    }

    /// Appends the END record and writes the file. `shards`: size and header CRC of
    /// every pages file, pages.img first.
    pub fn finish(self, dir: &Path, shards: &[Shard]) -> Result<(), ImageError> {
        let buf = self.into_bytes(shards);
        let tmp = dir.join(".manifest.img.tmp");
        let path = dir.join(MANIFEST);
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&buf).map_err(io_err(&tmp))?;
        // No fsync: a manifest lost in a crash makes the image absent, a torn one fails
        // its checksums; either way it is never restored half-written.
        std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(())
    }
}

/// Largest manifest.img this stasis reads. A manifest is a few KiB per process plus
/// about 30 bytes per page run (at most 256 pages each): 1 GiB describes far more memory
/// than any machine holds, and the bound keeps a hostile (e.g. sparse) file from making
/// the reader allocate without limit.
pub const MAX_MANIFEST_LEN: u64 = 1 << 30;

fn le32_at(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Reads and fully validates manifest.img (header, every record's CRC, END record, and
/// the size and header of pages.img). Does not read page contents; see `verify_pages`.
pub fn read_manifest(dir: &Path) -> Result<Manifest, ImageError> {
    let path = dir.join(MANIFEST);
    let data = read_regular_file(&path, MAX_MANIFEST_LEN)?;
    let m = parse_records(&data, &path)?;
    let compressed = m.required_features.iter().any(|f| f == FEATURE_PAGES_LZ4);
    // Pages files: sizes and headers must match what the manifest recorded.
    for (k, sh) in m.end.shards.iter().enumerate() {
        let ppath = dir.join(pages_file_name(shard_number(k)));
        let mut f = open_regular_file(&ppath)?;
        let len = f.metadata().map_err(io_err(&ppath))?.len();
        let want = if compressed { sh.stored_size } else { sh.size };
        if len != want {
            return Err(ImageError::Damaged {
                path: ppath,
                why: format!("size is {} bytes, manifest expects {}", len, want),
            });
        }
        // compressed: the content it stands for is bounded by what LZ4 can do with it
        let most = want.saturating_sub(PAGES_HEADER_LEN).saturating_mul(compress::MAX_RATIO).saturating_add(PAGES_HEADER_LEN);
        if compressed && (want < PAGES_HEADER_LEN || sh.size > most) {
            return Err(ImageError::Damaged { path: ppath, why: format!("{want} bytes cannot hold {} bytes of pages compressed", sh.size) });
        }
        let mut hdr = vec![0u8; PAGES_HEADER_LEN as usize];
        f.read_exact(&mut hdr).map_err(io_err(&ppath))?;
        if hdr[..8] != PAGES_MAGIC || crc32c::crc32c(&hdr) != sh.header_crc {
            return Err(ImageError::Damaged { path: ppath, why: "header page checksum mismatch".into() });
        }
    }
    check_runs(&m, &path)?;
    Ok(m)
}

/// Parses and validates a manifest from its bytes, without touching the file system:
/// header, every record's CRC and payload, END record and record count, and every page
/// run against the pages file sizes that END records (`check_runs`). What it cannot
/// check is that the pages files exist with those sizes and headers; `read_manifest`
/// does. Never panics, and allocates at most a small multiple of `bytes.len()`.
/// Errors name the path `manifest.img`.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ImageError> {
    let path = Path::new(MANIFEST);
    let m = parse_records(bytes, path)?;
    check_runs(&m, path)?;
    Ok(m)
}

fn shard_number(k: usize) -> u32 {
    // END's shard list comes from a manifest of at most MAX_MANIFEST_LEN bytes, 2 bytes
    // per entry at least: far fewer than u32::MAX entries.
    u32::try_from(k).unwrap_or(u32::MAX)
}

/// Opens `path` for reading, refusing anything but a regular file: a FIFO or a device
/// (an image directory is untrusted) would block the reader or never end.
fn open_regular_file(path: &Path) -> Result<File, ImageError> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(io_err(path))?;
    let meta = f.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(ImageError::NotImage { path: path.to_path_buf(), why: "not a regular file".into() });
    }
    Ok(f)
}

/// The content of the regular file `path`, refused when it is longer than `max` bytes.
fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>, ImageError> {
    let f = open_regular_file(path)?;
    let len = f.metadata().map_err(io_err(path))?.len();
    let too_long = |len: u64| ImageError::Damaged {
        path: path.to_path_buf(),
        why: format!("{len} bytes, more than the {max} bytes this stasis reads"),
    };
    if len > max {
        return Err(too_long(len));
    }
    let mut data = Vec::with_capacity(len as usize);
    // One byte more than allowed: a file that grew past `max` meanwhile is refused too.
    f.take(max + 1).read_to_end(&mut data).map_err(io_err(path))?;
    if data.len() as u64 > max {
        return Err(too_long(data.len() as u64));
    }
    Ok(data)
}

/// Header, records, END: everything that needs only the manifest's bytes, except the
/// page runs (`check_runs`). Sets `m.end`.
fn parse_records(data: &[u8], path: &Path) -> Result<Manifest, ImageError> {
    let damaged = |why: String| ImageError::Damaged { path: path.to_path_buf(), why };
    if data.len() < HEADER_LEN || data[..8] != MANIFEST_MAGIC {
        return Err(ImageError::NotImage { path: path.to_path_buf(), why: "bad magic".into() });
    }
    let le32 = |off: usize| le32_at(data, off).unwrap_or(0); // header fields: in range (HEADER_LEN)
    if crc32c::crc32c(&data[..28]) != le32(28) {
        return Err(damaged("header checksum mismatch".into()));
    }
    let version = le32(8);
    let arch = le32(12);
    let psize = le32(16);
    if version != FORMAT_VERSION {
        return Err(ImageError::Incompatible {
            path: path.to_path_buf(),
            why: format!("format version {version}, this stasis reads version {FORMAT_VERSION}"),
        });
    }
    if arch != ARCH_X86_64 {
        return Err(ImageError::Incompatible {
            path: path.to_path_buf(),
            why: format!("image is for ELF machine {arch}, this host is x86_64 (62)"),
        });
    }
    if psize as u64 != page_size() {
        return Err(ImageError::Incompatible {
            path: path.to_path_buf(),
            why: format!("image page size {psize}, host page size {}", page_size()),
        });
    }
    let mut m = Manifest { arch, page_size: psize, version, ..Default::default() };
    let mut off = HEADER_LEN;
    let mut n = 0u32;
    let mut have_process = false;
    let mut end = None;
    // Position of each record type in m.record_sizes (first-seen order is kept).
    let mut size_slot: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    // Object id -> number of the record that defined it.
    let mut object_record: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    while off < data.len() {
        let (Some(ty), Some(len), Some(crc)) = (le32_at(data, off), le32_at(data, off + 4), le32_at(data, off + 8)) else {
            return Err(damaged(format!("truncated record header at byte {off}")));
        };
        let body_start = off + 12; // off + 8 + 4 <= data.len() above
        let Some(body) = usize::try_from(len).ok().and_then(|l| data.get(body_start..body_start.checked_add(l)?)) else {
            return Err(damaged(format!("record at byte {off} runs past the end of the file")));
        };
        let body_end = body_start + body.len();
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
            rec::OBJECT => {
                let o = Object::decode(body).map_err(dec)?;
                if let Some(first) = object_record.insert(o.id, n) {
                    return Err(damaged(format!("record {n}: object id {} is already defined by record {first}", o.id)));
                }
                m.object_index.pos.insert(o.id, m.objects.len());
                m.objects.push(o);
            }
            rec::FEATURES => {
                if n != 0 {
                    return Err(damaged(format!("record {n}: FEATURES record that is not the first record")));
                }
                let f = Features::decode(body).map_err(dec)?;
                if let Some(unknown) = f.required.iter().find(|f| !KNOWN_FEATURES.contains(&f.as_str())) {
                    return Err(ImageError::Incompatible {
                        path: path.to_path_buf(),
                        why: format!("image requires format feature {unknown:?}, unknown to this stasis (a newer stasis wrote it)"),
                    });
                }
                m.required_features = f.required;
            }
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
                if body_end != data.len() {
                    return Err(damaged("bytes after the END record".into()));
                }
            }
            t if t & rec::CRITICAL != 0 => {
                return Err(ImageError::Incompatible {
                    path: path.to_path_buf(),
                    why: format!("record type {t:#x} is required but unknown to this stasis"),
                });
            }
            _ => {} // optional record of a newer writer: skip
        }
        let bytes = u64::from(len) + 12;
        match size_slot.get(&ty) {
            Some(&i) => m.record_sizes[i].1 += bytes,
            None => {
                size_slot.insert(ty, m.record_sizes.len());
                m.record_sizes.push((ty, bytes));
            }
        }
        // Every record takes 12 bytes at least and data.len() <= usize::MAX: cannot wrap
        // for manifests below 48 GiB; refuse rather than wrap beyond.
        n = n.checked_add(1).ok_or_else(|| damaged("more than 2^32 records".into()))?;
        off = body_end;
    }
    let end = end.ok_or_else(|| damaged("no END record (truncated or incomplete image)".into()))?;
    if !have_process {
        return Err(damaged("no PROCESS record".into()));
    }
    if end.shards.is_empty() {
        return Err(damaged("END lists no pages file".into()));
    }
    m.end = end;
    Ok(m)
}

/// Rewrites the header's CRC and every record's CRC (as far as the record lengths lead)
/// to match their content, in place. For tests and fuzzing: it lets mutated manifests
/// reach the decoders instead of stopping at a checksum. A reader never calls it.
#[doc(hidden)]
pub fn reseal_manifest(data: &mut [u8]) {
    if data.len() < HEADER_LEN {
        return;
    }
    let crc = crc32c::crc32c(&data[..28]);
    data[28..32].copy_from_slice(&crc.to_le_bytes());
    let mut off = HEADER_LEN;
    while let (Some(ty), Some(len)) = (le32_at(data, off), le32_at(data, off + 4)) {
        let body_start = off + 12;
        let Some(body_end) = usize::try_from(len).ok().and_then(|l| body_start.checked_add(l)).filter(|&e| e <= data.len()) else {
            return;
        };
        let crc = record_crc(ty, &data[body_start..body_end]);
        data[off + 8..off + 12].copy_from_slice(&crc.to_le_bytes());
        off = body_end;
    }
}

/// Where a page run's bytes are: `[start, end)` of pages file `shard`, or why they are
/// not anywhere valid. `shard_sizes[k]` is the size of pages file k.
pub fn run_range(r: &PageRun, shard_sizes: &[u64]) -> Result<(usize, std::ops::Range<u64>), String> {
    let ps = page_size();
    let shard = usize::try_from(r.shard).ok().filter(|&k| k < shard_sizes.len()).ok_or_else(|| {
        format!("shard {} does not exist (the image has {} pages files)", r.shard, shard_sizes.len())
    })?;
    let size = shard_sizes[shard];
    if !r.file_offset.is_multiple_of(ps) {
        return Err(format!("file offset {} is not page-aligned", r.file_offset));
    }
    if r.file_offset < PAGES_HEADER_LEN {
        return Err(format!("file offset {} is inside the header page", r.file_offset));
    }
    let len = u64::from(r.count).checked_mul(ps).ok_or("length overflows")?;
    let end = r.file_offset.checked_add(len).ok_or_else(|| format!("file offset {} + {len} bytes overflows", r.file_offset))?;
    if end > size {
        return Err(format!("bytes {}..{end} lie past the end of {} ({size} bytes)", r.file_offset, pages_file_name(r.shard)));
    }
    if !r.addr.is_multiple_of(ps) {
        return Err("address is not page-aligned".into());
    }
    if r.addr.checked_add(len).is_none() {
        return Err(format!("address + {len} bytes overflows"));
    }
    Ok((shard, r.file_offset..end))
}

fn describe_run(i: usize, r: &PageRun) -> String {
    format!(
        "page run {i} (pid {}, object {}, address {:#x}, {} pages at file offset {} of shard {})",
        r.pid, r.object_id, r.addr, r.count, r.file_offset, r.shard
    )
}

/// Every page run lies inside its pages file (per the sizes END records), past the
/// header page, page-aligned, and neither its file range nor its address range wraps.
pub fn check_runs(m: &Manifest, path: &Path) -> Result<(), ImageError> {
    let sizes: Vec<u64> = m.end.shards.iter().map(|s| s.size).collect();
    for (i, r) in m.index.runs.iter().enumerate() {
        if let Err(why) = run_range(r, &sizes) {
            return Err(ImageError::Damaged { path: path.to_path_buf(), why: format!("{}: {why}", describe_run(i, r)) });
        }
    }
    Ok(())
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
    // Saturating: callers pass checked runs (`check_runs`), but nothing here may wrap.
    let mut r: Vec<(u32, u64, u64)> = runs
        .iter()
        .map(|r| (r.shard, r.file_offset, r.file_offset.saturating_add(u64::from(r.count).saturating_mul(page_size()))))
        .collect();
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
/// copy-on-write at dump) are checked once. A run outside its pages file is refused
/// like a wrong checksum (never indexed): the check holds even for runs that did not go
/// through `check_runs`. With `threads` = 1, no thread is started.
pub fn verify_pages(dir: &Path, index: &PageIndex, shards: &[&[u8]], threads: usize) -> Result<(), ImageError> {
    let mut once = std::collections::HashSet::new();
    let runs: Vec<(usize, &PageRun)> =
        index.runs.iter().enumerate().filter(|(_, r)| once.insert((r.shard, r.file_offset, r.count, r.crc))).collect();
    let sizes: Vec<u64> = shards.iter().map(|s| s.len() as u64).collect();
    // Why run i is bad, if it is.
    let check = |i: usize, r: &PageRun| -> Option<String> {
        let why = match run_range(r, &sizes) {
            Err(why) => why,
            Ok((k, range)) => {
                // In range of shards[k] (its length bounds range.end): the conversions
                // and the slice cannot fail.
                let bytes = usize::try_from(range.start)
                    .ok()
                    .zip(usize::try_from(range.end).ok())
                    .and_then(|(a, b)| shards.get(k)?.get(a..b));
                match bytes {
                    None => "outside its pages file".to_string(),
                    Some(b) if crc32c::crc32c(b) != r.crc => "pages fail their checksum".to_string(),
                    Some(_) => return None,
                }
            }
        };
        Some(format!("{}: {why}", describe_run(i, r)))
    };
    let damaged = |why| Err(ImageError::Damaged { path: dir.to_path_buf(), why });
    let threads = threads.max(1);
    if threads == 1 {
        return match runs.iter().find_map(|&(i, r)| check(i, r)) {
            Some(why) => damaged(why),
            None => Ok(()),
        };
    }
    let (runs, check) = (&runs, &check);
    let bad: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads {
            let bad = &bad;
            s.spawn(move || {
                if let Some(why) = runs.iter().skip(t).step_by(threads).find_map(|&(i, r)| check(i, r)) {
                    *bad.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                }
            });
        }
    });
    match bad.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(why) => damaged(why),
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
        w.finish(dir, &[Shard { size: pages.len() as u64, header_crc: hcrc, stored_size: 0 }]).unwrap();
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
        w.finish(&d, &[Shard { size: pages.len() as u64, header_crc: hcrc, stored_size: 0 }]).unwrap();
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

    fn minimal(w: &mut ManifestWriter) {
        w.record(rec::PROCESS, &Process { pid: 42, comm: "x".into(), ..Default::default() });
    }

    fn one_shard() -> [Shard; 1] {
        [Shard { size: PAGES_HEADER_LEN, header_crc: 0, stored_size: 0 }]
    }

    /// An image that requires a format feature this reader does not know is refused,
    /// naming the feature; one that requires none (every image so far) is read.
    #[test]
    fn unknown_required_feature_is_refused() {
        let mut w = ManifestWriter::with_required_features(&["sparse-threads"]);
        minimal(&mut w);
        match parse_manifest(&w.into_bytes(&one_shard())) {
            Err(e @ ImageError::Incompatible { .. }) => {
                let s = e.to_string();
                assert!(s.contains("requires format feature \"sparse-threads\""), "{s}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let mut w = ManifestWriter::with_required_features(&[]);
        minimal(&mut w);
        let bytes = w.into_bytes(&one_shard());
        let mut plain = ManifestWriter::new();
        minimal(&mut plain);
        assert_eq!(bytes, plain.into_bytes(&one_shard()), "no feature: no FEATURES record");
        assert!(parse_manifest(&bytes).unwrap().required_features.is_empty());
        // Only as the first record.
        let mut w = ManifestWriter::new();
        minimal(&mut w);
        w.record(rec::FEATURES, &Features::default());
        let why = parse_manifest(&w.into_bytes(&one_shard())).unwrap_err().to_string();
        assert!(why.contains("FEATURES record that is not the first"), "{why}");
    }

    #[test]
    fn duplicate_object_ids_are_refused() {
        let mut w = ManifestWriter::new();
        minimal(&mut w);
        w.record(rec::OBJECT, &Object { id: 1, kind: Some(Kind::Shmem(ShmemObj { ino: 1, size: 4096, ..Default::default() })), ..Default::default() });
        w.record(rec::OBJECT, &Object { id: 2, ..Default::default() });
        w.record(rec::OBJECT, &Object { id: 1, ..Default::default() });
        let why = parse_manifest(&w.into_bytes(&one_shard())).unwrap_err().to_string();
        assert!(why.contains("record 3: object id 1 is already defined by record 1"), "{why}");
    }

    #[test]
    fn object_lookup_by_id() {
        let mut w = ManifestWriter::new();
        minimal(&mut w);
        for id in [5, 3, 9] {
            w.record(rec::OBJECT, &Object { id, kind: Some(Kind::Shmem(ShmemObj { ino: id as u64, size: 4096, ..Default::default() })), ..Default::default() });
        }
        let mut m = parse_manifest(&w.into_bytes(&one_shard())).unwrap();
        assert_eq!(m.object_index.len(), 3);
        for id in [5, 3, 9] {
            assert_eq!(m.object(id).unwrap().shmem().unwrap().ino, id as u64);
        }
        assert!(m.object(0).is_none() && m.object(4).is_none());
        // Edited after parsing: a stale index is never trusted...
        m.objects.swap(0, 2);
        assert_eq!(m.object(5).unwrap().id, 5);
        m.objects.push(Object { id: 11, ..Default::default() });
        assert_eq!(m.object(11).unwrap().id, 11);
        // ...and reindexing makes lookups O(1) again, refusing duplicates.
        m.reindex_objects().unwrap();
        assert_eq!(m.object_index.get(11), Some(3));
        m.objects.push(Object { id: 3, ..Default::default() });
        assert_eq!(m.reindex_objects(), Err((3, 1, 4)));
        // Built by hand, without an index: found by search.
        let m = Manifest { objects: vec![Object { id: 2, ..Default::default() }], ..Default::default() };
        assert_eq!(m.object(2).unwrap().id, 2);
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
