//! Multicast memberships of UDP/raw sockets. The kernel has no call listing a socket's
//! groups, but getsockopt(MCAST_MSFILTER) answers for one (interface, group): the
//! socket's source filter if it joined it, EADDRNOTAVAIL if not. The candidates are the
//! groups some socket of the namespace joined on some interface (/proc/net/igmp and
//! igmp6 of the socket's network namespace, read by the thread that runs in it).
//! Restore joins them again (MCAST_JOIN_GROUP, or MCAST_JOIN_SOURCE_GROUP for each
//! source of an include-mode filter) and blocks the sources of an exclude-mode one.
//!
//! IPv4 groups joined by an IPv6 socket (level SOL_IP on a dual-stack socket) are not
//! looked for.

use std::os::fd::BorrowedFd;

use stasis_image::model::McastGroup;
use stasis_sys::sys;

const MCAST_JOIN_GROUP: i32 = 42;
const MCAST_BLOCK_SOURCE: i32 = 43;
const MCAST_JOIN_SOURCE_GROUP: i32 = 46;
const MCAST_MSFILTER: i32 = 48;
const MCAST_INCLUDE: u32 = 1;
/// Sources of one filter read back (the kernel's default limit is 10).
pub const MAX_SOURCES: usize = 256;
/// Memberships of one socket (the kernel's default limit is 20 for IPv4).
pub const MAX_GROUPS: usize = 1024;
/// sizeof(struct sockaddr_storage); struct group_filter: interface (4, padded to 8),
/// group (128), fmode (4), numsrc (4), sources (128 each).
const SS: usize = 128;
const GF_HEAD: usize = 8 + SS + 8;

fn level(family: i32) -> i32 {
    if family == libc::AF_INET { libc::IPPROTO_IP } else { libc::IPPROTO_IPV6 }
}

fn addr_len(family: i32) -> usize {
    if family == libc::AF_INET { 4 } else { 16 }
}

/// A sockaddr_storage holding address `a` (4 or 16 bytes) of `family`, port 0.
fn storage(family: i32, a: &[u8]) -> [u8; SS] {
    let mut s = [0u8; SS];
    s[0..2].copy_from_slice(&(family as u16).to_ne_bytes());
    if family == libc::AF_INET {
        s[4..8].copy_from_slice(a);
    } else {
        s[8..24].copy_from_slice(a);
    }
    s
}

fn addr_of(family: i32, s: &[u8]) -> Vec<u8> {
    if family == libc::AF_INET { s[4..8].to_vec() } else { s[8..24].to_vec() }
}

/// (ifindex, group) pairs joined by any socket of this thread's network namespace.
fn candidates(family: i32) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    if family == libc::AF_INET {
        // "IDX\tDEV : COUNT QUERIER" then "\t\t\t\tGROUP USERS TIMER\t\tREPORTER" lines;
        // GROUP is the __be32 printed as a host-order hex number.
        let text = std::fs::read_to_string("/proc/thread-self/net/igmp").unwrap_or_default();
        let mut idx = None;
        for line in text.lines().skip(1) {
            if !line.starts_with('\t') {
                idx = line.split_whitespace().next().and_then(|i| i.parse::<u32>().ok());
            } else if let (Some(i), Some(g)) = (idx, line.split_whitespace().next()) {
                if let Ok(v) = u32::from_str_radix(g, 16) {
                    out.push((i, v.to_ne_bytes().to_vec()));
                }
            }
        }
    } else {
        // "IDX DEV GROUP(32 hex digits, network order) USERS FLAGS TIMER"
        let text = std::fs::read_to_string("/proc/thread-self/net/igmp6").unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 3 || f[2].len() != 32 {
                continue;
            }
            let (Ok(i), Ok(g)) = (f[0].parse::<u32>(), (0..16).map(|k| u8::from_str_radix(&f[2][2 * k..2 * k + 2], 16)).collect::<Result<Vec<u8>, _>>())
            else {
                continue;
            };
            out.push((i, g));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The memberships of `fd` (a socket of `family`). Err names what could not be read.
pub fn dump(fd: BorrowedFd<'_>, family: i32) -> Result<Vec<McastGroup>, String> {
    let mut out = Vec::new();
    for (ifindex, group) in candidates(family) {
        let mut buf = vec![0u8; GF_HEAD + MAX_SOURCES * SS];
        buf[0..4].copy_from_slice(&ifindex.to_ne_bytes());
        buf[8..8 + SS].copy_from_slice(&storage(family, &group));
        buf[GF_HEAD - 4..GF_HEAD].copy_from_slice(&(MAX_SOURCES as u32).to_ne_bytes());
        match sys::getsockopt_inout(fd, level(family), MCAST_MSFILTER, &mut buf) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => continue, // not a multicast address
            Err(e) => return Err(format!("MCAST_MSFILTER of group {group:02x?} on interface {ifindex}: {e}")),
        }
        let u = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().unwrap());
        let (fmode, n) = (u(GF_HEAD - 8), u(GF_HEAD - 4) as usize);
        if n > MAX_SOURCES {
            return Err(format!("a source filter of {n} addresses (up to {MAX_SOURCES} are read)"));
        }
        let sources = (0..n).map(|k| addr_of(family, &buf[GF_HEAD + k * SS..GF_HEAD + (k + 1) * SS])).collect();
        tracing::debug!(ifindex, ?group, fmode, sources = n, "multicast membership saved");
        out.push(McastGroup { ifindex, group, include: fmode == MCAST_INCLUDE, sources });
    }
    Ok(out)
}

/// Validation: addresses of the socket's family, multicast groups, bounded counts.
pub fn check(groups: &[McastGroup], family: i32) -> Result<(), String> {
    if groups.len() > MAX_GROUPS {
        return Err(format!("{} multicast memberships", groups.len()));
    }
    let n = addr_len(family);
    for g in groups {
        let multicast = if family == libc::AF_INET { g.group.first().is_some_and(|b| (224..=239).contains(b)) } else { g.group.first() == Some(&0xff) };
        if g.group.len() != n || !multicast {
            return Err(format!("multicast group {:02x?} is not an IPv{} multicast address", g.group, if n == 4 { 4 } else { 6 }));
        }
        if g.sources.len() > MAX_SOURCES || g.sources.iter().any(|s| s.len() != n) || (g.include && g.sources.is_empty()) {
            return Err(format!("multicast group {:02x?}: malformed source filter", g.group));
        }
    }
    Ok(())
}

/// Restore: joins every group again with its source filter.
pub fn restore(fd: BorrowedFd<'_>, family: i32, groups: &[McastGroup]) -> Result<(), String> {
    for g in groups {
        let gs = storage(family, &g.group);
        let req = |source: Option<&[u8]>| {
            let mut b = vec![0u8; 8 + SS];
            b[0..4].copy_from_slice(&g.ifindex.to_ne_bytes());
            b[8..8 + SS].copy_from_slice(&gs);
            if let Some(s) = source {
                b.extend_from_slice(&storage(family, s));
            }
            b
        };
        let what = |e: std::io::Error| format!("joining multicast group {:02x?} on interface {} again: {e}", g.group, g.ifindex);
        if g.include {
            for s in &g.sources {
                sys::setsockopt_bytes(fd, level(family), MCAST_JOIN_SOURCE_GROUP, &req(Some(s))).map_err(what)?;
            }
        } else {
            sys::setsockopt_bytes(fd, level(family), MCAST_JOIN_GROUP, &req(None)).map_err(what)?;
            for s in &g.sources {
                sys::setsockopt_bytes(fd, level(family), MCAST_BLOCK_SOURCE, &req(Some(s))).map_err(what)?;
            }
        }
    }
    Ok(())
}
