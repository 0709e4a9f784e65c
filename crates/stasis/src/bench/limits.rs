//! The machine's own limits, measured in the same run, and its description.

use super::*;

// ---------------------------------------------------------------------------
// Machine limits
// ---------------------------------------------------------------------------

/// process_vm_readv of [addr, addr+len) of `pid` into a reused page-aligned
/// 64 MiB buffer; spot-checks the first word of each chunk.
pub(super) fn measure_readv(pid: i32, addr: usize, len: usize) -> Result<Duration> {
    measure_readv_salted(pid, addr, len, 0)
}

pub(super) fn measure_readv_salted(pid: i32, addr: usize, len: usize, salt: u64) -> Result<Duration> {
    let mut buf = AnonBuf::new(READV_CHUNK.min(len)).context("mmap readv buffer")?;
    buf.as_mut_slice().fill(1); // fault the buffer in before timing
    let t0 = Instant::now();
    let mut off = 0usize;
    while off < len {
        let n = (len - off).min(buf.len());
        let got = sys::vm_readv_into(pid, &mut [&mut buf.as_mut_slice()[..n]], &[((addr + off) as u64, n)])
        .with_context(|| format!("process_vm_readv(pid {pid}, 0x{:x})", addr + off))?;
        if got == 0 {
            bail!(
                "process_vm_readv(pid {pid}) read nothing at 0x{:x}",
                addr + off
            );
        }
        let want = off as u64 ^ PATTERN ^ salt;
        if buf.as_words()[0] != want {
            bail!(
                "process_vm_readv read 0x{:x} at offset 0x{off:x}, expected 0x{want:x}",
                buf.as_words()[0]
            );
        }
        off += got;
    }
    Ok(t0.elapsed())
}

/// Buffered 8 MiB writes of `len` bytes to a new file in `dir`, no fsync;
/// the file is deleted afterwards.
pub(super) fn measure_seq_write(dir: &Path, len: usize) -> Result<Duration> {
    let path = dir.join("seqwrite.tmp");
    let buf: Vec<u8> = (0..WRITE_CHUNK).map(|i| (i as u8) | 1).collect();
    let mut f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
    let t0 = Instant::now();
    let mut left = len;
    while left > 0 {
        let n = left.min(WRITE_CHUNK);
        f.write_all(&buf[..n])
            .with_context(|| format!("write {}", path.display()))?;
        left -= n;
    }
    let el = t0.elapsed();
    drop(f);
    fs::remove_file(&path).with_context(|| format!("remove {}", path.display()))?;
    Ok(el)
}

/// mmap `len` bytes of fresh anonymous memory and write one byte per page.
pub(super) fn measure_first_touch(len: usize) -> Result<Duration> {
    let t0 = Instant::now();
    let mut m = AnonBuf::new(len).context("mmap first-touch region")?;
    let b = m.as_mut_slice();
    for i in (0..len).step_by(PAGE) {
        b[i] = 1;
    }
    std::hint::black_box(&mut *b);
    let el = t0.elapsed();
    drop(m);
    Ok(el)
}

// ---------------------------------------------------------------------------
// Machine description
// ---------------------------------------------------------------------------

pub(super) struct Machine {
    pub(super) cpu: String,
    pub(super) cores: usize,
    pub(super) mem_total: Option<u64>,
    pub(super) mem_available: Option<u64>,
    pub(super) kernel: String,
    pub(super) thp: String,
    pub(super) fs: String,
    pub(super) date: String,
}

impl Machine {
    pub(super) fn probe(dir: &Path) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let cores = if cores > 0 {
            cores
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        };
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem = |key: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        };
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let thp = fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .find(|w| w.starts_with('['))
                    .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpu,
            cores,
            mem_total: mem("MemTotal:"),
            mem_available: mem("MemAvailable:"),
            kernel,
            thp,
            fs: mount_of(dir),
            date: utc_now(),
        }
    }
}

/// "ext4 on /dev/vda" for the mount holding `dir`.
pub(super) fn mount_of(dir: &Path) -> String {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, mnt, _)| dir.starts_with(mnt))
        .max_by_key(|(_, mnt, _)| mnt.len())
        .map(|(src, _, fstype)| format!("{fstype} on {src}"))
        .unwrap_or_else(|| "unknown filesystem".into())
}

pub(super) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

