//! Packet sockets (AF_PACKET, SOCK_RAW or SOCK_DGRAM): the protocol and bound interface
//! (getsockname's sockaddr_ll; the interface's name is kept too), the PACKET_* options
//! getsockopt reads back (version, reserve, timestamp, vnet header size, auxdata,
//! origdev, loss, tx_has_off, qdisc bypass, ignore outgoing), the PACKET_ADD_MEMBERSHIP
//! list and the fanout group (packet_diag: PACKET_DIAG_MCLIST, and PACKET_DIAG_FANOUT
//! for membership: the getsockopt of PACKET_FANOUT reads 0 both for "no group" and for
//! group 0 in hash mode, but only it has the group's flags), O_NONBLOCK; SO_RCVBUF and
//! SO_SNDBUF, a classic BPF filter, SO_LOCK_FILTER and other SOL_SOCKET options
//! (`sockopt.rs`).
//!
//! Refused: mmap'ed rings (PACKET_RX_RING / PACKET_TX_RING: their frames live in the
//! process's memory and the kernel's ring position is not readable), a fanout group
//! steered by a BPF program (PACKET_FANOUT_CBPF/EBPF), an eBPF socket filter, a
//! membership with a hardware address longer than 8 bytes.
//!
//! Packets queued for reading are not kept: a packet socket is a tap on traffic that the
//! kernel already drops whenever its receive buffer is full (counted in
//! PACKET_STATISTICS), so its readers handle loss; `--leave-running` leaves them queued.
//! The statistics counters start again from zero.
//!
//! Restore: socket with protocol 0 (receiving nothing yet), bind to the interface (found
//! again by index and name in the restored namespace, else the restore fails) and
//! protocol, options, memberships (each as many times as it was added), fanout group,
//! filter, then drain what arrived before the filter, filter lock.

use std::os::fd::{AsFd, OwnedFd};

use stasis_image::model::{Kind, Object, PacketFanout, PacketMclist, PacketObj};
use stasis_sys::sys::{self, netsock};

use crate::error::{Error, Result};

const SOL_PACKET: i32 = 263;
const PACKET_AUXDATA: i32 = 8;
const PACKET_ORIGDEV: i32 = 9;
const PACKET_VERSION: i32 = 10;
const PACKET_RESERVE: i32 = 12;
const PACKET_LOSS: i32 = 14;
const PACKET_TIMESTAMP: i32 = 17;
const PACKET_FANOUT: i32 = 18;
const PACKET_TX_HAS_OFF: i32 = 19;
const PACKET_QDISC_BYPASS: i32 = 20;
const PACKET_IGNORE_OUTGOING: i32 = 23;
const PACKET_VNET_HDR_SZ: i32 = 24;

/// Fanout modes restore recreates (HASH, LB, CPU, ROLLOVER, RND, QM); 6 and 7 are
/// CBPF/EBPF (a program steers the group).
pub const FANOUT_MODES: u32 = 5;
/// Fanout flag bits (as getsockopt shows them, PACKET_FANOUT_FLAG_* >> 8) kept:
/// ROLLOVER, IGNORE_OUTGOING, DEFRAG. UNIQUEID (0x20) only asks the kernel to pick the id;
/// restore joins the id it picked.
pub const FANOUT_FLAGS: u32 = 0x10 | 0x40 | 0x80;
const FANOUT_FLAG_UNIQUEID: u32 = 0x20;
/// PACKET_MR_MULTICAST..PACKET_MR_UNICAST.
pub const MAX_MR_TYPE: u32 = 3;
/// At most this many memberships per socket in an image (the kernel has no limit but
/// memory; a real tap joins a handful).
pub const MAX_MCLIST: usize = 256;
/// Times one membership may have been added (its count) in an image.
pub const MAX_MC_COUNT: u32 = 1024;
/// SOF_TIMESTAMPING_* bits PACKET_TIMESTAMP takes (all defined flags).
pub const TIMESTAMP_MASK: u32 = (1 << 20) - 1;

/// The integer options kept: (option, name).
const INT_OPTS: [(i32, &str); 10] = [
    (PACKET_VERSION, "PACKET_VERSION"),
    (PACKET_RESERVE, "PACKET_RESERVE"),
    (PACKET_TIMESTAMP, "PACKET_TIMESTAMP"),
    (PACKET_VNET_HDR_SZ, "PACKET_VNET_HDR_SZ"),
    (PACKET_AUXDATA, "PACKET_AUXDATA"),
    (PACKET_ORIGDEV, "PACKET_ORIGDEV"),
    (PACKET_LOSS, "PACKET_LOSS"),
    (PACKET_TX_HAS_OFF, "PACKET_TX_HAS_OFF"),
    (PACKET_QDISC_BYPASS, "PACKET_QDISC_BYPASS"),
    (PACKET_IGNORE_OUTGOING, "PACKET_IGNORE_OUTGOING"),
];

fn int_opts(p: &PacketObj) -> [u32; 10] {
    let b = u32::from;
    [
        p.version,
        p.reserve,
        p.timestamp,
        p.vnet_hdr_sz,
        b(p.auxdata),
        b(p.origdev),
        b(p.loss),
        b(p.tx_has_off),
        b(p.qdisc_bypass),
        b(p.ignore_outgoing),
    ]
}

fn set_int_opts(p: &mut PacketObj, v: [u32; 10]) {
    [p.version, p.reserve, p.timestamp, p.vnet_hdr_sz] = [v[0], v[1], v[2], v[3]];
    [p.auxdata, p.origdev, p.loss, p.tx_has_off, p.qdisc_bypass, p.ignore_outgoing] = [v[4], v[5], v[6], v[7], v[8], v[9]].map(|x| x != 0);
}

/// Dump side, run inside the socket's network namespace (packet_diag and interface
/// names answer per namespace).
pub fn dump(pid: i32, fd: i32, ino: u64, flags: u32, dup: &OwnedFd) -> Result<Object> {
    let s = dup.as_fd();
    let what = "a packet socket";
    let refuse = |why: String| Error::Unsupported { pid, what: format!("fd {fd} is {what} {why}") };
    let sys_err = |op: &str, err: std::io::Error| Error::Sys { pid, what: format!("{op} of fd {fd} ({what})"), err };
    if let Some(why) = super::unkept_flags(flags) {
        return Err(refuse(why));
    }
    let ty = sys::getsockopt_int(s, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| sys_err("SO_TYPE", e))?;
    if ty != libc::SOCK_RAW && ty != libc::SOCK_DGRAM {
        return Err(refuse(format!("of socket type {ty} (SOCK_PACKET is obsolete)")));
    }
    let name = netsock::packet_name(s).map_err(|e| sys_err("getsockname", e))?;
    if name.sll_ifindex < 0 {
        return Err(refuse("bound to an interface that no longer exists".into()));
    }
    let ifname = |idx: i32| {
        netsock::ifname_of(s, idx).map_err(|e| sys_err(&format!("the name of interface {idx} (SIOCGIFNAME)"), e))
    };
    let diag = netsock::packet_diag().map_err(|e| sys_err("NETLINK_SOCK_DIAG (packet)", e))?;
    let d = diag.into_iter().find(|d| u64::from(d.ino) == ino).ok_or_else(|| refuse("(the kernel's packet socket table does not list it)".into()))?;
    if d.rx_ring || d.tx_ring {
        return Err(refuse(format!(
            "with an mmap'ed {} ring (PACKET_RX_RING/PACKET_TX_RING: not supported)",
            if d.rx_ring { "receive" } else { "transmit" }
        )));
    }
    let mut p = PacketObj {
        sock_type: ty,
        protocol: u32::from(name.sll_protocol),
        ifindex: name.sll_ifindex,
        ifname: if name.sll_ifindex != 0 { ifname(name.sll_ifindex)? } else { String::new() },
        flags: flags & libc::O_NONBLOCK as u32,
        ..Default::default()
    };
    let mut vals = [0u32; 10];
    for (v, (opt, oname)) in vals.iter_mut().zip(INT_OPTS) {
        *v = sys::getsockopt_int(s, SOL_PACKET, opt).map_err(|e| sys_err(oname, e))? as u32;
    }
    set_int_opts(&mut p, vals);
    if d.mclist.len() > MAX_MCLIST {
        return Err(refuse(format!("with {} PACKET_ADD_MEMBERSHIP entries (at most {MAX_MCLIST} are kept)", d.mclist.len())));
    }
    for m in &d.mclist {
        if m.pdmc_count > MAX_MC_COUNT {
            return Err(refuse(format!("with a membership added {} times (at most {MAX_MC_COUNT} are kept)", m.pdmc_count)));
        }
        if m.pdmc_alen > 8 {
            return Err(refuse(format!("with a membership of a {}-byte hardware address (at most 8 are kept)", m.pdmc_alen)));
        }
        p.mclist.push(PacketMclist {
            ifindex: m.pdmc_index as i32,
            ifname: ifname(m.pdmc_index as i32)?,
            mr_type: u32::from(m.pdmc_type),
            count: m.pdmc_count,
            addr: m.pdmc_addr[..m.pdmc_alen as usize].to_vec(),
        });
    }
    if d.fanout.is_some() {
        // packet_diag says whether it is in a group but leaves the flags out; getsockopt
        // has them (and reads 0 for no group as for group 0 in hash mode).
        let f = sys::getsockopt_int(s, SOL_PACKET, PACKET_FANOUT).map_err(|e| sys_err("PACKET_FANOUT", e))? as u32;
        let (id, mode, fl) = (f & 0xffff, (f >> 16) & 0xff, f >> 24);
        if mode > FANOUT_MODES {
            return Err(refuse(format!("in fanout group {id} of mode {mode} (a BPF program steers it: not supported)")));
        }
        p.fanout = Some(PacketFanout { id, mode, flags: fl & !FANOUT_FLAG_UNIQUEID });
    }
    p.sock = Some(super::sockopt::dump(s).map_err(|e| match e {
        super::sockopt::DumpErr::Refuse(why) => refuse(why),
        super::sockopt::DumpErr::Sys(what, err) => sys_err(&what, err),
    })?);
    let queued = sys::inq(s).unwrap_or(0);
    if queued > 0 {
        tracing::info!(pid, fd, "packet socket: the packets queued for reading are not saved (a tap's packets may be dropped)");
    }
    tracing::debug!(fd, ifindex = p.ifindex, protocol = p.protocol, fanout = ?p.fanout, mclist = p.mclist.len(), "packet socket saved");
    Ok(Object { kind: Some(Kind::Packet(p)), ..Default::default() })
}

/// Interface `idx` must be named `name` in the restorer's (the socket's) namespace.
fn check_if(s: &OwnedFd, idx: i32, name: &str) -> std::result::Result<(), String> {
    match netsock::ifindex_of(s.as_fd(), name) {
        Ok(i) if i == idx => Ok(()),
        Ok(i) => Err(format!("interface {name} has index {i} now, not {idx}")),
        Err(e) => Err(format!("interface {name} (index {idx}) is gone: {e}")),
    }
}

/// Restore side: the recreated socket (in the restorer, inside its network namespace).
pub fn open(p: &PacketObj) -> std::result::Result<OwnedFd, String> {
    // Protocol 0: not receiving anything until bound (socket() with a protocol would start
    // it on every interface). SO_PROTOCOL reads 0 for packet sockets either way.
    let s = sys::socket(libc::AF_PACKET, p.sock_type, 0).map_err(|e| format!("socket: {e}"))?;
    if p.ifindex != 0 {
        check_if(&s, p.ifindex, &p.ifname)?;
    }
    if p.ifindex != 0 || p.protocol != 0 {
        netsock::packet_bind(s.as_fd(), p.ifindex, p.protocol as u16)
            .map_err(|e| format!("binding to interface {} (index {}): {e}", p.ifname, p.ifindex))?;
    }
    let fresh = {
        let mut v = [0u32; 10];
        for (x, (opt, name)) in v.iter_mut().zip(INT_OPTS) {
            *x = sys::getsockopt_int(s.as_fd(), SOL_PACKET, opt).map_err(|e| format!("{name}: {e}"))? as u32;
        }
        v
    };
    for ((want, now), (opt, name)) in int_opts(p).into_iter().zip(fresh).zip(INT_OPTS) {
        if want != now {
            sys::setsockopt_int(s.as_fd(), SOL_PACKET, opt, want as i32).map_err(|e| format!("setting {name} to {want}: {e}"))?;
        }
    }
    for m in &p.mclist {
        check_if(&s, m.ifindex, &m.ifname)?;
        let mut mr = netsock::PacketMreq { mr_ifindex: m.ifindex, mr_type: m.mr_type as u16, mr_alen: m.addr.len() as u16, mr_address: [0; 8] };
        mr.mr_address[..m.addr.len()].copy_from_slice(&m.addr);
        for _ in 0..m.count {
            netsock::packet_add_membership(s.as_fd(), &mr).map_err(|e| format!("PACKET_ADD_MEMBERSHIP (type {}) on {}: {e}", m.mr_type, m.ifname))?;
        }
    }
    if let Some(f) = &p.fanout {
        let v = f.id | (f.mode << 16) | (f.flags << 24);
        sys::setsockopt_int(s.as_fd(), SOL_PACKET, PACKET_FANOUT, v as i32).map_err(|e| format!("joining fanout group {} (mode {}): {e}", f.id, f.mode))?;
    }
    // What arrived before now (from any interface before bind, unfiltered before the
    // filter) is dropped with the filter in place, before the lock.
    let drain = || {
        let mut buf = [0u8; 1];
        while sys::recv(s.as_fd(), &mut buf, libc::MSG_DONTWAIT | libc::MSG_TRUNC).is_ok() {}
    };
    super::sockopt::restore(&s, p.sock.as_ref().unwrap_or(&Default::default()), drain)?;
    super::apply_nonblock(&s, p.flags)?;
    Ok(s)
}

/// For `stasis inspect`: `raw, protocol 0x0003 on lo (index 1), fanout 7 mode 1, ...`.
pub fn describe(p: &PacketObj) -> String {
    let mut s = format!("{}, protocol {:#06x}", if p.sock_type == libc::SOCK_RAW { "raw" } else { "dgram" }, (p.protocol as u16).swap_bytes());
    s += &if p.ifindex != 0 { format!(" on {} (index {})", p.ifname, p.ifindex) } else { " on every interface".into() };
    if let Some(f) = &p.fanout {
        s += &format!(", fanout group {} mode {} flags {:#x}", f.id, f.mode, f.flags);
    }
    for m in &p.mclist {
        s += &format!(", membership type {} on {} x{}", m.mr_type, m.ifname, m.count);
    }
    let names = ["version", "reserve", "timestamp", "vnet_hdr_sz", "auxdata", "origdev", "loss", "tx_has_off", "qdisc_bypass", "ignore_outgoing"];
    for (name, v) in names.into_iter().zip(int_opts(p)) {
        if v != 0 {
            s += &format!(", {name} {v}");
        }
    }
    s + &super::sockopt::describe(p.sock.as_ref().unwrap_or(&Default::default()))
}
