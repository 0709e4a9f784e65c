//! The workloads the bench dumps: one process filling memory, and a tree of them.

use super::*;

// ---------------------------------------------------------------------------
// Workload: `stasis __workload bench-fill SIZE_BYTES STATUS_DIR`
// ---------------------------------------------------------------------------

/// Entry point of the hidden workload. Accepts its arguments with or without
/// the leading `bench-fill` word.
pub fn workload_fill(args: &[String]) -> Result<ExitCode> {
    let args = match args.first().map(String::as_str) {
        Some("bench-fill") => &args[1..],
        _ => args,
    };
    let [size, dir] = args else {
        bail!("usage: stasis __workload bench-fill SIZE_BYTES STATUS_DIR");
    };
    let size: usize = size
        .parse()
        .with_context(|| format!("bench-fill: bad size {size:?}"))?;
    if size == 0 || !size.is_multiple_of(PAGE) {
        bail!("bench-fill: size {size} must be a non-zero multiple of {PAGE}");
    }
    let dir = PathBuf::from(dir);
    detach_from_caller();

    let mut region = AnonBuf::new(size).context("bench-fill: mmap")?;
    fill(region.as_mut_words());
    write_atomic(
        &dir.join(READY_FILE),
        &format!(
            "READY addr=0x{:x} size={} pid={}\n",
            region.addr(),
            size,
            std::process::id()
        ),
    )?;

    let go = dir.join(GO_FILE);
    while !go.exists() {
        nap(POLL);
    }

    std::hint::black_box(region.addr());
    let verdict = verify(region.as_words());
    write_atomic(&dir.join(RESULT_FILE), &format!("{verdict}\n"))?;
    Ok(if verdict == "PASS" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// New session (no controlling terminal, sid/pgid inside the dumped tree) and
/// no descriptors beyond stdin/stdout/stderr, so the workload holds nothing
/// stasis cannot dump.
pub(super) fn detach_from_caller() {
    // Failure (already a group leader) is harmless here.
    sys::child::setsid();
    // Closes descriptors >= 3; nothing in this process owns one yet (std opens
    // none before main), so no live Rust handle is invalidated.
    sys::child::close_range(3, u32::MAX);
}

pub(super) fn fill(words: &mut [u64]) {
    fill_salted(words, 0)
}

/// Word i holds `(i * 8) ^ PATTERN ^ salt`.
pub(super) fn fill_salted(words: &mut [u64], salt: u64) {
    for (i, w) in words.iter_mut().enumerate() {
        *w = ((i * 8) as u64) ^ PATTERN ^ salt;
    }
}

pub(super) fn verify(words: &[u64]) -> String {
    verify_salted(words, 0)
}

/// "PASS" or "FAIL first_bad_offset=0x.. expected=0x.. got=0x.. bad_words=N".
pub(super) fn verify_salted(words: &[u64], salt: u64) -> String {
    const WPP: usize = PAGE / 8;
    let mut first: Option<(usize, u64)> = None;
    let mut bad = 0u64;
    for (p, page) in words.chunks(WPP).enumerate() {
        let base = p * WPP;
        let diff = page.iter().enumerate().fold(0u64, |acc, (j, &w)| {
            acc | (w ^ (((base + j) * 8) as u64 ^ PATTERN ^ salt))
        });
        if diff == 0 {
            continue;
        }
        for (j, &w) in page.iter().enumerate() {
            let want = ((base + j) * 8) as u64 ^ PATTERN ^ salt;
            if w != want {
                bad += 1;
                first.get_or_insert(((base + j) * 8, w));
            }
        }
    }
    match first {
        None => "PASS".to_string(),
        Some((off, got)) => format!(
            "FAIL first_bad_offset=0x{off:x} expected=0x{:016x} got=0x{got:016x} bad_words={bad}",
            off as u64 ^ PATTERN ^ salt
        ),
    }
}

/// Sleep with nanosleep; an interruption (EINTR, e.g. across a checkpoint)
/// just ends the nap early, the caller polls again.
pub(super) fn nap(d: Duration) {
    let _ = sys::nanosleep(d);
}

pub(super) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    // Per process: the processes of a tree write their files in one directory at once.
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, text).with_context(|| format!("write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("rename to {}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Tree workload: `stasis __workload bench-tree N SIZE_BYTES STATUS_DIR`
// ---------------------------------------------------------------------------

/// Salt of process `idx` of a tree: each process's memory differs from the others'.
pub(super) fn salt(idx: usize) -> u64 {
    (idx as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The root forks N-1 children; every process (root included) maps SIZE bytes, fills
/// them with its own pattern, writes `ready.IDX` and polls for `go`. Then each verifies
/// its memory and writes `result.IDX`; the root also reaps every child (each must exit
/// 0) and exits 0 only if the whole tree passed.
pub fn workload_tree(args: &[String]) -> Result<ExitCode> {
    let [n, size, dir] = args else {
        bail!("usage: stasis __workload bench-tree PROCESSES SIZE_BYTES STATUS_DIR");
    };
    let n: usize = n.parse().with_context(|| format!("bench-tree: bad process count {n:?}"))?;
    let size: usize = size.parse().with_context(|| format!("bench-tree: bad size {size:?}"))?;
    if n == 0 || size == 0 || !size.is_multiple_of(PAGE) {
        bail!("bench-tree: {n} processes of {size} bytes: need at least one process and a non-zero multiple of {PAGE} bytes");
    }
    let dir = PathBuf::from(dir);
    detach_from_caller();
    let mut kids = Vec::new();
    let mut idx = 0;
    for i in 1..n {
        match sys::fork().context("bench-tree: fork")? {
            0 => {
                idx = i;
                kids.clear();
                break;
            }
            pid => kids.push(pid),
        }
    }
    let mut region = AnonBuf::new(size).context("bench-tree: mmap")?;
    fill_salted(region.as_mut_words(), salt(idx));
    write_atomic(
        &dir.join(format!("{READY_FILE}.{idx}")),
        &format!("READY addr=0x{:x} size={size} pid={}\n", region.addr(), std::process::id()),
    )?;
    let go = dir.join(GO_FILE);
    while !go.exists() {
        nap(POLL);
    }
    std::hint::black_box(region.addr());
    let mut verdict = verify_salted(region.as_words(), salt(idx));
    for k in kids {
        match sys::waitpid(k, 0) {
            Ok(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => {}
            Ok(st) if verdict == "PASS" => verdict = format!("FAIL child {k}: wait status {st:#x}"),
            Err(e) if verdict == "PASS" => verdict = format!("FAIL child {k}: waitpid: {e}"),
            _ => {}
        }
    }
    write_atomic(&dir.join(format!("{RESULT_FILE}.{idx}")), &format!("{verdict}\n"))?;
    Ok(if verdict == "PASS" { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

