//! The x86 local descriptor table of a process (modify_ldt(2)): segments a program
//! (Wine, DOS emulators, some JITs) made for itself and loads into %ds/%es/%fs/%gs by
//! selector. It belongs to the address space; nothing in /proc shows it.
//!
//! Dump: modify_ldt(0) run inside the process, first into the scratch area to see if
//! there is a table at all (0 bytes: none), then the whole table (at most LDT_ENTRIES
//! descriptors) into a temporary mapping. The image keeps the raw 8-byte descriptors up
//! to the last one in use (0 = empty). Restore: each one in use is written back with
//! modify_ldt(0x11) from inside the new process, before any thread gets its registers
//! (a selector of the table in a segment register needs its entry).

use stasis_sys::kabi::UserDesc;
use stasis_sys::sys;

use crate::error::{Ctx, Result};
use crate::parasite::Parasite;

/// The most descriptors a table holds (LDT_ENTRIES).
pub const MAX_ENTRIES: usize = 8192;
const TABLE_BYTES: u64 = (MAX_ENTRIES * 8) as u64;

/// The raw descriptors of the process's table, up to the last one in use (empty: none).
pub fn dump(par: &Parasite, pid: i32) -> Result<Vec<u64>> {
    // reads as many bytes as asked for when a table exists (zeros past its end), else 0
    if par.call(pid, libc::SYS_modify_ldt, &[0, par.scratch, 8])? == 0 {
        return Ok(Vec::new());
    }
    let prot = (libc::PROT_READ | libc::PROT_WRITE) as u64;
    let flags = (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64;
    let area = par.call(pid, libc::SYS_mmap, &[0, TABLE_BYTES, prot, flags, u64::MAX, 0])?;
    let read = par
        .call(pid, libc::SYS_modify_ldt, &[0, area, TABLE_BYTES])
        .and_then(|n| sys::read_mem(pid, area, n.min(TABLE_BYTES) as usize).ctx(pid, || "reading the LDT copy".into()));
    par.call(pid, libc::SYS_munmap, &[area, TABLE_BYTES])?;
    let mut table: Vec<u64> = read?.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
    while table.last() == Some(&0) {
        table.pop();
    }
    tracing::debug!(pid, entries = table.len(), "LDT");
    Ok(table)
}

/// Why descriptor `raw` cannot be one modify_ldt made (None: it can). The kernel makes
/// only present-or-not code/data segments (S = 1) of privilege level 3; it checks the rest.
pub fn invalid(raw: u64) -> Option<&'static str> {
    let b = (raw >> 32) as u32;
    if raw == 0 {
        None
    } else if b & (1 << 12) == 0 {
        Some("a system descriptor")
    } else if (b >> 13) & 3 != 3 {
        Some("not of privilege level 3")
    } else {
        None
    }
}

/// The modify_ldt request that makes entry `index` the descriptor `raw`.
pub fn user_desc(index: usize, raw: u64) -> UserDesc {
    let (a, b) = (raw as u32, (raw >> 32) as u32);
    let bit = |n: u32| (b >> n) & 1;
    let kind = (b >> 8) & 0xf;
    let flags = bit(22) // seg_32bit (D)
        | ((kind >> 2) & 3) << 1 // contents
        | (((kind >> 1) & 1) ^ 1) << 3 // read_exec_only: not writable/readable
        | bit(23) << 4 // limit_in_pages (G)
        | (bit(15) ^ 1) << 5 // seg_not_present
        | bit(20) << 6 // useable (AVL)
        | bit(21) << 7; // lm (L)
    UserDesc {
        entry_number: index as u32,
        base_addr: (a >> 16) | (b & 0xff) << 16 | (b & 0xff00_0000),
        limit: (a & 0xffff) | (b & 0xf_0000),
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_decodes_to_its_request() {
        // what the kernel's fill_ldt makes of {base 0x12345678, limit 0xfffff, 32-bit,
        // data read-write, limit in pages, useable}: accessed bit set, S, DPL 3, present
        let raw: u64 = 0x12df_f334_5678_ffff;
        let d = user_desc(5, raw);
        assert_eq!((d.entry_number, d.base_addr, d.limit), (5, 0x1234_5678, 0xfffff));
        // seg_32bit | limit_in_pages | useable
        assert_eq!(d.flags, 1 | 1 << 4 | 1 << 6);
        assert_eq!(invalid(raw), None);
        // read-only, not present, code (contents 2)
        let ro = (raw & !(0xffu64 << 40)) | (0x79u64 << 40);
        assert_eq!(user_desc(0, ro).flags, 1 | 2 << 1 | 1 << 3 | 1 << 4 | 1 << 5 | 1 << 6);
        assert_eq!(invalid(raw & !(1 << 44)), Some("a system descriptor"));
        assert_eq!(invalid(raw & !(3 << 45)), Some("not of privilege level 3"));
    }
}
