//! NUMA memory policies: a thread's (set_mempolicy) and a VMA's own (mbind). Nothing
//! outside the process shows a thread's policy, and /proc/PID/numa_maps shows a VMA's
//! only as text: both are read from inside with get_mempolicy (a VMA's only when
//! numa_maps says it has one of its own). Restore sets every thread's policy, MPOL_DEFAULT
//! too (a new thread would keep the restorer's), and mbinds the VMAs that had one.

use stasis_image::model::MemPolicy;
use stasis_sys::remote::{RemoteCalls, NUMA_MASK_WORDS};

use crate::error::{Ctx, Result};
use crate::parasite::Parasite;

/// MPOL_WEIGHTED_INTERLEAVE, the last mode (MPOL_DEFAULT = 0 is no policy).
const MPOL_MAX_MODE: u32 = 6;
const MPOL_LOCAL: u32 = 4;
/// MPOL_F_NUMA_BALANCING | MPOL_F_RELATIVE_NODES | MPOL_F_STATIC_NODES
const MODE_FLAGS: u32 = 1 << 13 | 1 << 14 | 1 << 15;
const STATIC_AND_RELATIVE: u32 = 1 << 14 | 1 << 15;

/// get_mempolicy's result as a policy (None: MPOL_DEFAULT).
fn policy(raw: i32, mut nodes: Vec<u64>) -> Option<MemPolicy> {
    let raw = raw as u32;
    let mode = raw & !MODE_FLAGS;
    while nodes.last() == Some(&0) {
        nodes.pop();
    }
    (mode != 0).then_some(MemPolicy { mode, flags: raw & MODE_FLAGS, nodes })
}

/// The mode argument of set_mempolicy / mbind for `p` (None: MPOL_DEFAULT).
pub fn raw_mode(p: Option<&MemPolicy>) -> (i32, &[u64]) {
    p.map_or((0, &[][..]), |p| ((p.mode | p.flags) as i32, &p.nodes[..]))
}

/// A kernel without NUMA support (no get_mempolicy, no numa_maps): every policy is
/// MPOL_DEFAULT there.
pub fn unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS) | Some(libc::ENOENT))
}

/// Thread `tid`'s policy.
pub fn dump_thread(par: &Parasite, tid: i32) -> Result<Option<MemPolicy>> {
    match par.thread(tid).get_mempolicy(None) {
        Ok((raw, nodes)) => Ok(policy(raw, nodes)),
        Err(e) if unsupported(&e) => Ok(None),
        Err(e) => Err(crate::error::Error::Sys { pid: par.pid, what: format!("get_mempolicy injected into thread {tid}"), err: e }),
    }
}

/// (start, policy) of every VMA with a policy of its own.
pub fn dump_vmas(par: &Parasite, pid: i32) -> Result<Vec<(u64, MemPolicy)>> {
    let text = match crate::procfs::read(pid, "numa_maps") {
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        r => r.ctx(pid, || "reading /proc/PID/numa_maps".into())?,
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        let (Some(start), Some(pol)) = (w.next(), w.next()) else { continue };
        let Ok(start) = u64::from_str_radix(start, 16) else { continue };
        if pol == "default" || start == par.scratch {
            continue;
        }
        let (raw, nodes) = par.with(pid, &format!("get_mempolicy of VMA {start:#x}"), |r| r.get_mempolicy(Some(start)))?;
        if let Some(p) = policy(raw, nodes) {
            out.push((start, p));
        }
    }
    Ok(out)
}

/// Why `p` is no policy set_mempolicy/mbind can make (None: it is).
pub fn invalid(p: &MemPolicy) -> Option<String> {
    if p.mode == 0 || p.mode > MPOL_MAX_MODE {
        Some(format!("NUMA policy mode {}", p.mode))
    } else if p.flags & !MODE_FLAGS != 0 || p.flags & STATIC_AND_RELATIVE == STATIC_AND_RELATIVE {
        Some(format!("NUMA policy flags {:#x}", p.flags))
    } else if p.nodes.len() > NUMA_MASK_WORDS {
        Some(format!("a NUMA node mask of {} words (at most {NUMA_MASK_WORDS})", p.nodes.len()))
    } else if p.mode != MPOL_LOCAL && p.mode != 1 && p.nodes.iter().all(|w| *w == 0) {
        Some(format!("NUMA policy mode {} without nodes", p.mode))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_from_get_mempolicy() {
        assert_eq!(policy(0, vec![0; 16]), None);
        let p = policy(2 | 1 << 15, vec![5, 0, 0]).unwrap();
        assert_eq!((p.mode, p.flags, p.nodes.clone()), (2, 1 << 15, vec![5]));
        assert_eq!(raw_mode(Some(&p)), (2 | 1 << 15, &[5u64][..]));
        assert_eq!(raw_mode(None).0, 0);
        assert_eq!(invalid(&p), None);
        assert!(invalid(&MemPolicy { mode: 7, ..p.clone() }).is_some());
        assert!(invalid(&MemPolicy { flags: STATIC_AND_RELATIVE, ..p.clone() }).is_some());
        assert!(invalid(&MemPolicy { nodes: vec![1; 17], ..p.clone() }).is_some());
        assert!(invalid(&MemPolicy { nodes: vec![], ..p.clone() }).is_some());
        // preferred with no node = local allocation
        assert_eq!(invalid(&MemPolicy { mode: 1, flags: 0, nodes: vec![] }), None);
    }
}
