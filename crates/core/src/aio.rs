//! Linux native aio contexts (io_setup). A context's id is the address of its ring: a
//! shared mapping of an "[aio]" anon inode whose first page starts with a 32-byte header
//! (`AioRingHeader`: table index, slots, head, tail, magic...) followed by 32-byte
//! `io_event` slots; the kernel fills slot `tail` on each completion, userspace reaps
//! from `head` (io_getevents, or by advancing `head` itself).
//!
//! Dump: the ring's header and the completions between head and tail (written by the
//! kernel, not reaped yet), read from the frozen process's memory. Requests still in
//! flight are invisible from userspace (no procfs file shows them): the dump waits until
//! the ring's tail stops moving (bounded) and refuses a context whose tail keeps moving.
//!
//! Restore, inside the new process once its VMAs are mapped: io_setup with an argument
//! that gives a ring of the same size (the kernel sizes it from the argument and the
//! possible CPUs; checked), mremap of the ring to its old address (the kernel follows a
//! moved ring: the context id becomes the new address), then the kernel's own position
//! in the ring is brought to the image's: the kernel keeps the slot it fills next and
//! its count of free request slots to itself, so writing head/tail from userspace would
//! desynchronise them. Instead real requests that complete at once (reads of 0 bytes
//! from a memfd) move its tail: `head` of them reaped (by advancing `head`, as a
//! userspace reaper does), then one per unreaped completion of the image, left in the
//! ring, whose slots get the image's events (the ring is writable userspace memory).
//! The kernel's accounting is then that of a context with those completions unreaped.

use stasis_image::model::*;
use stasis_sys::kabi::{self, AioRingHeader, IoEvent, Iocb, AIO_RING_MAGIC, IOCB_CMD_PREAD};
use stasis_sys::remote::RemoteCalls;
use stasis_sys::sys;
use tracing::debug;

use crate::error::{Ctx, Error, Result};
use crate::parasite::Parasite;

use crate::PAGE;
/// Bytes of the ring header and of one event slot.
const SLOT: u64 = 32;
/// Largest ring the kernel makes: io_setup refuses more than 0x10000000 / 32 / 2
/// requested events (2^22 + 2 slots after its doubling, plus the header).
pub const MAX_RING_PAGES: u64 = 65_537;
/// How long the dump waits for a ring's tail to stop moving, and how often it looks.
const SETTLE_TOTAL_MS: u64 = 1000;
const SETTLE_STEP_MS: u64 = 10;
/// Requests submitted per io_submit at restore (their iocbs and pointers fit the
/// trampoline's scratch area).
const BATCH: usize = 512;
/// memfd_create flag, Linux 6.3 (newer than the system headers).
const MFD_NOEXEC_SEAL: u32 = 8;

/// Event slots of a ring of `size` bytes (one header-sized slot is the header).
pub fn ring_nr(size: u64) -> u64 {
    size / SLOT - 1
}

/// The smallest io_setup argument whose ring has `pages` pages. The kernel doubles
/// max(argument, 4 * possible CPUs), adds 2 slots and the header, and rounds up to
/// pages; with few CPUs, (pages - 1) * 64 - 1 is the first argument past the smaller
/// ring. A machine with many possible CPUs may still make a larger ring (checked).
pub fn setup_arg(pages: u64) -> u32 {
    if pages <= 1 {
        1
    } else {
        ((pages - 1) * 64 - 1).min(u32::MAX as u64) as u32
    }
}

/// The unreaped completions of a ring with `nr` slots: (tail - head) mod nr.
fn unreaped(nr: u32, head: u32, tail: u32) -> u32 {
    (tail + nr - head) % nr
}

/// A ring VMA's state is possible: the bounds restore relies on (checked before
/// anything is created; the overlap with other VMAs is checked with every VMA).
pub fn check(v: &Vma) -> std::result::Result<(), String> {
    let Some(a) = &v.aio else { return Err("has no ring state".into()) };
    let size = v.end.saturating_sub(v.start);
    let pages = size / PAGE;
    if pages == 0 || pages > MAX_RING_PAGES {
        return Err(format!("of {pages} pages (1 to {MAX_RING_PAGES})"));
    }
    if !v.shared || v.object_id != 0 || v.pgoff != 0 || v.pages_saved != 0 || !v.guards.is_empty() {
        return Err("is no plain shared mapping of its own (object, offset, saved pages or guards set)".into());
    }
    if v.prot & !((libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u32) != 0 {
        return Err(format!("has protection bits {:#x}", v.prot));
    }
    if a.nr as u64 != ring_nr(size) {
        return Err(format!("says {} slots, but a ring of {size} bytes has {}", a.nr, ring_nr(size)));
    }
    if a.head >= a.nr || a.tail >= a.nr {
        return Err(format!("head {} or tail {} is not below its {} slots", a.head, a.tail, a.nr));
    }
    let n = unreaped(a.nr, a.head, a.tail);
    if a.events.len() as u64 != n as u64 {
        return Err(format!("holds {} events, but head {} and tail {} leave {n} unreaped", a.events.len(), a.head, a.tail));
    }
    Ok(())
}

/// `len` bytes at `addr` of process `pid`, through /proc/PID/mem: a ring the program
/// made unreadable (mprotect) is read all the same.
fn read_at(pid: i32, addr: u64, len: usize) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut b = vec![0u8; len];
    std::fs::File::open(format!("{}/mem", crate::procfs::dir(pid)))?.read_exact_at(&mut b, addr)?;
    Ok(b)
}

fn header(pid: i32, start: u64) -> std::io::Result<AioRingHeader> {
    let b = read_at(pid, start, std::mem::size_of::<AioRingHeader>())?;
    kabi::from_bytes(&b).ok_or_else(|| std::io::Error::other("short read of the ring header"))
}

/// `count` events of the ring at `start` (`nr` slots) from slot `from` on, wrapping.
fn read_events(pid: i32, start: u64, nr: u32, from: u32, count: u32) -> std::io::Result<Vec<IoEvent>> {
    let mut out = Vec::with_capacity(count as usize);
    let (mut slot, mut left) = (from, count);
    while left > 0 {
        let k = left.min(nr - slot);
        let b = read_at(pid, start + SLOT + slot as u64 * SLOT, k as usize * SLOT as usize)?;
        out.extend(b.chunks_exact(SLOT as usize).filter_map(kabi::from_bytes::<IoEvent>));
        left -= k;
        slot = 0;
    }
    Ok(out)
}

/// Refuses a ring mapping that is no aio context of process `pid`: the kernel copies a
/// ring's VMA into a forked child (it is no VM_DONTCOPY mapping), where it still shows
/// the parent's ring but names no context of the child. Asked with a zero-event,
/// zero-timeout io_getevents injected through `par` (EINVAL: no context), which reaps
/// nothing; only for a readable ring whose head is inside it (else the kernel would
/// rewrite head modulo the slots; `dump_ring` refuses such a ring anyway).
pub fn check_own(par: &Parasite, pid: i32) -> Result<()> {
    let maps = crate::procfs::read(pid, "maps").ctx(pid, || "reading /proc/PID/maps".into())?;
    for m in crate::procfs::parse_smaps(&maps).ctx(pid, || "reading /proc/PID/maps".into())? {
        if !(m.shared && (m.path == "/[aio]" || m.path == "/[aio] (deleted)")) {
            continue;
        }
        // the kernel finds the context through the ring's header, read with the
        // process's rights: an unreadable ring (mprotect) answers EINVAL even for its own
        // context, and is taken as its own
        if m.prot & libc::PROT_READ as u32 == 0 {
            continue;
        }
        let h = header(pid, m.start).ctx(pid, || format!("reading the aio ring at {:#x}", m.start))?;
        if h.head >= h.nr || h.tail >= h.nr {
            continue;
        }
        if par.with(pid, "io_getevents", |r| r.io_getevents_none(m.start))? == -(libc::EINVAL as i64) {
            return Err(Error::Unsupported {
                pid,
                what: format!(
                    "VMA {:#x}-{:#x} is an aio ring but no aio context of this process (a mapping inherited across fork from the process that made the context)",
                    m.start, m.end
                ),
            });
        }
    }
    Ok(())
}

/// Reads the ring of the aio context at `start`..`end` of the frozen process `pid`.
pub fn dump_ring(pid: i32, start: u64, end: u64) -> Result<AioRing> {
    let what = || format!("aio context {start:#x} (the ring at {start:#x}-{end:#x})");
    let sys_err = |err| Error::Sys { pid, what: format!("reading {}", what()), err };
    let refuse = |why: String| Error::Refused { pid, why: format!("{}: {why}", what()) };
    let size = end - start;
    let mut h = header(pid, start).map_err(sys_err)?;
    if h.magic != AIO_RING_MAGIC || h.header_length != SLOT as u32 || h.nr as u64 != ring_nr(size) || h.head >= h.nr || h.tail >= h.nr {
        return Err(refuse(format!(
            "its header is not the kernel's (magic {:#x}, {} slots for {size} bytes, head {}, tail {}): the program overwrote it",
            h.magic, h.nr, h.head, h.tail
        )));
    }
    // Requests in flight cannot be seen, only their completions landing: wait until
    // the tail stays still.
    let mut waited = 0;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(SETTLE_STEP_MS));
        waited += SETTLE_STEP_MS;
        let again = header(pid, start).map_err(sys_err)?;
        if again.tail == h.tail && again.head == h.head {
            break;
        }
        h = again;
        if waited >= SETTLE_TOTAL_MS {
            return Err(refuse(format!(
                "requests are still completing {SETTLE_TOTAL_MS} ms after the freeze (the ring's tail keeps moving): requests in flight cannot be saved"
            )));
        }
    }
    if h.head >= h.nr || h.tail >= h.nr {
        return Err(refuse(format!("head {} or tail {} is not below its {} slots", h.head, h.tail, h.nr)));
    }
    let n = unreaped(h.nr, h.head, h.tail);
    let events = read_events(pid, start, h.nr, h.head, n).map_err(sys_err)?;
    debug!(pid, ctx = format_args!("{start:#x}"), nr = h.nr, head = h.head, tail = h.tail, unreaped = n, "aio ring");
    let events = events.into_iter().map(|e| AioEvent { data: e.data, obj: e.obj, res: e.res, res2: e.res2 }).collect();
    Ok(AioRing { nr: h.nr, head: h.head, tail: h.tail, events })
}

/// Recreates the aio context of ring VMA `v` (checked by `check`) in process `pid`,
/// whose thread `r` runs the calls; the ring's address must be free.
pub fn restore_ring(r: &impl RemoteCalls, pid: i32, v: &Vma) -> std::result::Result<(), String> {
    let a = v.aio.as_ref().ok_or("no ring state")?;
    let (start, size) = (v.start, v.end - v.start);
    let arg = setup_arg(size / PAGE);
    let ctx = r.io_setup(arg).map_err(|e| match e.raw_os_error() {
        Some(libc::EAGAIN) => format!("io_setup({arg}): {e} (the sum of every context's size would pass fs.aio-max-nr)"),
        _ => format!("io_setup({arg}): {e}"),
    })?;
    let h = header(pid, ctx).map_err(|e| format!("reading the new ring's header at {ctx:#x}: {e}"))?;
    if h.nr != a.nr {
        return Err(format!(
            "io_setup({arg}) made a ring of {} slots, the image's has {} ({size} bytes): this machine sizes rings differently (more possible CPUs)",
            h.nr, a.nr
        ));
    }
    if ctx != start {
        let flags = (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64;
        let got = r.call(libc::SYS_mremap, &[ctx, size, size, flags, start]).map_err(|e| format!("moving the new ring from {ctx:#x}: {e}"))?;
        if got != start {
            return Err(format!("the new ring moved to {got:#x}"));
        }
    }
    // MFD_NOEXEC_SEAL (Linux 6.3) where vm.memfd_noexec demands it; older kernels
    // refuse the flag
    let fd = match r.memfd_create("stasis-aio", libc::MFD_CLOEXEC | MFD_NOEXEC_SEAL) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => r.memfd_create("stasis-aio", libc::MFD_CLOEXEC),
        fd => fd,
    }
    .map_err(|e| format!("memfd_create: {e}"))?;
    let res = advance(r, pid, start, a, fd);
    let closed = r.call(libc::SYS_close, &[fd as u64]);
    res?;
    closed.map_err(|e| format!("closing the memfd: {e}"))?;
    // the image's completions into the slots the kernel just filled
    let n = a.events.len() as u32;
    let events: Vec<IoEvent> = a.events.iter().map(|e| IoEvent { data: e.data, obj: e.obj, res: e.res, res2: e.res2 }).collect();
    let mut done = 0u32;
    while done < n {
        let slot = (a.head + done) % a.nr;
        let k = (n - done).min(a.nr - slot);
        let bytes = kabi::slice_bytes(&events[done as usize..(done + k) as usize]);
        sys::write_mem(crate::procfs::via(pid), start + SLOT + slot as u64 * SLOT, bytes).map_err(|e| format!("writing events into slot {slot}: {e}"))?;
        done += k;
    }
    let h = header(pid, start).map_err(|e| format!("reading the ring's header: {e}"))?;
    if (h.head, h.tail) != (a.head, a.tail) {
        return Err(format!("the ring ended at head {} tail {}, the image's is at head {} tail {}", h.head, h.tail, a.head, a.tail));
    }
    debug!(pid, ctx = format_args!("{start:#x}"), nr = a.nr, head = a.head, tail = a.tail, unreaped = n, "aio context recreated");
    Ok(())
}

/// Moves the kernel's tail of the fresh ring at `start` (head = tail = 0) to the image's:
/// `head` completions reaped, then one left unreaped per event of the image.
fn advance(r: &impl RemoteCalls, pid: i32, start: u64, a: &AioRing, fd: i32) -> std::result::Result<(), String> {
    // nbytes 0: nothing is read, the request completes inside io_submit
    let buf = r.scratch().addr;
    let iocb = Iocb { aio_fildes: fd as u32, aio_lio_opcode: IOCB_CMD_PREAD, aio_buf: buf, ..Default::default() };
    let head_at = start + std::mem::offset_of!(AioRingHeader, head) as u64;
    let mut tail = 0u32;
    for (count, reap) in [(a.head, true), (a.events.len() as u32, false)] {
        let mut left = count;
        while left > 0 {
            let k = (left as usize).min(BATCH);
            let got = r.io_submit(start, &vec![iocb; k]).map_err(|e| format!("io_submit of {k} requests (at tail {tail}): {e}"))? as u32;
            if got == 0 {
                return Err(format!("io_submit took no request at tail {tail}"));
            }
            tail = (tail + got) % a.nr;
            left -= got;
            let h = header(pid, start).map_err(|e| format!("reading the ring's header: {e}"))?;
            if h.tail != tail {
                return Err(format!("the ring's tail is {} after {got} requests, not {tail}: they did not complete at once", h.tail));
            }
            if reap {
                // reaped as a userspace reaper does: head = tail
                sys::write_mem(crate::procfs::via(pid), head_at, kabi::as_bytes(&tail)).map_err(|e| format!("advancing the ring's head: {e}"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_arg_gives_the_ring_size() {
        // the kernel's sizing with `cpus` possible CPUs: slots of the ring it makes
        let kernel = |arg: u64, cpus: u64| {
            let ev = arg.max(cpus * 4) * 2 + 2;
            let pages = (SLOT + ev * SLOT).div_ceil(PAGE);
            (pages, ring_nr(pages * PAGE))
        };
        for pages in 1..300 {
            for cpus in [1, 2, 4, 8] {
                let (p, nr) = kernel(setup_arg(pages) as u64, cpus);
                assert_eq!((p, nr), (pages, pages * 128 - 1), "pages {pages} cpus {cpus}");
            }
        }
        // measured on this kernel: io_setup(63) and (126) make 2 pages, 255 slots
        assert_eq!((setup_arg(2), ring_nr(2 * PAGE)), (63, 255));
        assert_eq!(kernel(setup_arg(MAX_RING_PAGES) as u64, 2).0, MAX_RING_PAGES);
    }

    #[test]
    fn unreaped_wraps() {
        assert_eq!(unreaped(127, 5, 9), 4);
        assert_eq!(unreaped(127, 120, 3), 10);
        assert_eq!(unreaped(127, 7, 7), 0);
    }
}
