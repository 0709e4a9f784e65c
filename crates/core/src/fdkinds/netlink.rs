//! Netlink sockets (AF_NETLINK, SOCK_RAW or SOCK_DGRAM, any protocol): the protocol, the
//! bound port id (getsockname), every multicast group joined (NETLINK_LIST_MEMBERSHIPS,
//! not only the 32 of nl_groups), the connected destination (getpeername), the
//! SOL_NETLINK flags and O_NONBLOCK, all read with getsockopt; SO_RCVBUF/SO_SNDBUF, a
//! classic BPF filter and other SOL_SOCKET options (`sockopt.rs`).
//!
//! Refused: a socket with messages queued for reading, and one with a dump in progress
//! (netlink_diag's NDIAG_FLAG_CB_RUNNING: the kernel's remaining answers live in the
//! socket). The queue is looked at with MSG_PEEK|MSG_DONTWAIT, which consumes nothing;
//! the refusal says what its first message is (a reply of the kernel, a multicast
//! notification and its group, a message of another socket). Why queued messages are
//! not saved, even multicast notifications (netlink is lossy: a reader handles ENOBUFS):
//! - netlink's recvmsg ignores SO_PEEK_OFF (EOPNOTSUPP) and MSG_PEEK always shows the
//!   first message, so the others cannot be read without consuming them, which a dump
//!   that fails or leaves the process running must not do;
//! - a message queued again by stasis would come from a port id of its own (userspace
//!   can only unicast or multicast as itself), not from the kernel (port id 0): careful
//!   listeners (systemd's sd-netlink among them) drop those, and multicasting would
//!   reach every other listener of the group;
//! - dropping them would have to be signalled as the kernel does (ENOBUFS on the next
//!   recv), but the kernel sets that error only when it finds the queue full, and the
//!   next recv (which returns it) would be needed to empty the queue again.
//!
//! Restore: socket, options, bind to the saved port id (an autobound one too: the process
//! may have told it to a peer; if it is taken now, the restore fails naming it), join
//! each group with NETLINK_ADD_MEMBERSHIP, connect to the saved destination.

use std::os::fd::{AsFd, OwnedFd};

use stasis_image::model::{Kind, NetlinkObj, Object};
use stasis_sys::sys::{self, netsock};

use crate::error::{Error, Result};

pub const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NETLINK_PKTINFO: i32 = 3;
const NETLINK_BROADCAST_ERROR: i32 = 4;
const NETLINK_NO_ENOBUFS: i32 = 5;
const NETLINK_LISTEN_ALL_NSID: i32 = 8;
pub const NETLINK_LIST_MEMBERSHIPS: i32 = 9;
const NETLINK_CAP_ACK: i32 = 10;
const NETLINK_EXT_ACK: i32 = 11;
const NETLINK_GET_STRICT_CHK: i32 = 12;

/// At most this many groups per socket in an image (the kernel's own families have
/// fewer than 64; generic netlink numbers its groups from a shared space).
pub const MAX_GROUPS: usize = 1024;
/// Largest group number kept (NETLINK_LIST_MEMBERSHIPS of 8 KiB).
pub const MAX_GROUP: u32 = 65536;

/// The netlink protocols of the kernel (include/uapi/linux/netlink.h), by number.
pub const PROTOCOLS: &[(i32, &str)] = &[
    (0, "NETLINK_ROUTE"),
    (2, "NETLINK_USERSOCK"),
    (4, "NETLINK_SOCK_DIAG"),
    (5, "NETLINK_NFLOG"),
    (6, "NETLINK_XFRM"),
    (7, "NETLINK_SELINUX"),
    (8, "NETLINK_ISCSI"),
    (9, "NETLINK_AUDIT"),
    (10, "NETLINK_FIB_LOOKUP"),
    (11, "NETLINK_CONNECTOR"),
    (12, "NETLINK_NETFILTER"),
    (13, "NETLINK_IP6_FW"),
    (14, "NETLINK_DNRTMSG"),
    (15, "NETLINK_KOBJECT_UEVENT"),
    (16, "NETLINK_GENERIC"),
    (18, "NETLINK_SCSITRANSPORT"),
    (19, "NETLINK_ECRYPTFS"),
    (20, "NETLINK_RDMA"),
    (21, "NETLINK_CRYPTO"),
    (22, "NETLINK_SMC"),
];

/// "NETLINK_ROUTE", or "protocol N".
pub fn protocol_name(p: i32) -> String {
    PROTOCOLS.iter().find(|(n, _)| *n == p).map(|(_, s)| s.to_string()).unwrap_or_else(|| format!("protocol {p}"))
}

/// The SOL_NETLINK flags kept, in the order of NetlinkObj's fields.
const FLAGS: [i32; 7] =
    [NETLINK_PKTINFO, NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS, NETLINK_LISTEN_ALL_NSID, NETLINK_CAP_ACK, NETLINK_EXT_ACK, NETLINK_GET_STRICT_CHK];

fn flag_fields(n: &mut NetlinkObj) -> [&mut bool; 7] {
    [&mut n.pktinfo, &mut n.broadcast_error, &mut n.no_enobufs, &mut n.listen_all_nsid, &mut n.cap_ack, &mut n.ext_ack, &mut n.get_strict_chk]
}

/// The group numbers (1-based) set in a NETLINK_LIST_MEMBERSHIPS bitmap.
pub fn groups_of(words: &[u32]) -> Vec<u32> {
    let mut v = Vec::new();
    for (i, w) in words.iter().enumerate() {
        for b in 0..32 {
            if w & (1 << b) != 0 {
                v.push(i as u32 * 32 + b + 1);
            }
        }
    }
    v
}

/// Dump side, run inside the socket's network namespace (netlink_diag answers per
/// namespace).
pub fn dump(pid: i32, fd: i32, ino: u64, flags: u32, dup: &OwnedFd) -> Result<Object> {
    let s = dup.as_fd();
    let proto = sys::getsockopt_int(s, libc::SOL_SOCKET, libc::SO_PROTOCOL).unwrap_or(-1);
    let what = format!("a netlink socket ({})", protocol_name(proto));
    let refuse = |why: String| Error::Unsupported { pid, what: format!("fd {fd} is {what} {why}") };
    let sys_err = |op: &str, err: std::io::Error| Error::Sys { pid, what: format!("{op} of fd {fd} ({what})"), err };
    if let Some(why) = super::unkept_flags(flags) {
        return Err(refuse(why));
    }
    let ty = sys::getsockopt_int(s, libc::SOL_SOCKET, libc::SO_TYPE).map_err(|e| sys_err("SO_TYPE", e))?;
    if ty != libc::SOCK_RAW && ty != libc::SOCK_DGRAM {
        return Err(refuse(format!("of socket type {ty}")));
    }
    // A dump in progress keeps its remaining answers in the socket (only a bound socket
    // can have one, and netlink_diag lists every bound socket).
    let diag = netsock::netlink_diag().map_err(|e| sys_err("NETLINK_SOCK_DIAG (netlink)", e))?;
    if let Some(d) = diag.iter().find(|d| u64::from(d.ino) == ino) {
        if d.flags.unwrap_or(0) & netsock::NDIAG_FLAG_CB_RUNNING != 0 {
            return Err(refuse(format!(
                "(port id {}) in the middle of a dump request: the kernel's remaining answers cannot be saved",
                d.portid
            )));
        }
    }
    if let Some(q) = netsock::netlink_peek_first(s).map_err(|e| sys_err("peeking at the receive queue", e))? {
        let (n, ty) = (q.len, q.hdr.nlmsg_type);
        let first = match (q.sender, q.group) {
            (0, 0) => format!("a reply of the kernel (message type {ty}, sequence {})", q.hdr.nlmsg_seq),
            (0, g) => format!("a notification of the kernel to multicast group {g} (message type {ty})"),
            (p, 0) => format!("a message from port id {p} (message type {ty})"),
            (p, g) => format!("a message from port id {p} to multicast group {g} (message type {ty})"),
        };
        return Err(refuse(format!(
            "with messages queued for reading (the first is {n} bytes, {first}): a netlink socket's queue cannot be read without \
             consuming it (MSG_PEEK shows only the first message, SO_PEEK_OFF is not supported), and a message stasis queued again \
             would come from a port id of its own, not from the kernel"
        )));
    }
    let local = netsock::netlink_name(s, false).map_err(|e| sys_err("getsockname", e))?;
    let peer = netsock::netlink_name(s, true).map_err(|e| sys_err("getpeername", e))?;
    let words = netsock::getsockopt_u32_words(s, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, (MAX_GROUP / 8) as usize)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EMSGSIZE) => refuse(format!("with multicast groups above {MAX_GROUP}")),
            _ => sys_err("NETLINK_LIST_MEMBERSHIPS", e),
        })?;
    let groups = groups_of(&words);
    if groups.len() > MAX_GROUPS {
        return Err(refuse(format!("in {} multicast groups (at most {MAX_GROUPS} are kept)", groups.len())));
    }
    let mut n = NetlinkObj {
        protocol: proto,
        sock_type: ty,
        portid: local.nl_pid,
        groups,
        dst_portid: peer.nl_pid,
        dst_group: peer.nl_groups,
        flags: flags & libc::O_NONBLOCK as u32,
        sock: Some(super::sockopt::dump(s).map_err(|e| match e {
            super::sockopt::DumpErr::Refuse(why) => refuse(why),
            super::sockopt::DumpErr::Sys(what, err) => sys_err(&what, err),
        })?),
        ..Default::default()
    };
    for (opt, field) in FLAGS.into_iter().zip(flag_fields(&mut n)) {
        *field = sys::getsockopt_int(s, SOL_NETLINK, opt).map_err(|e| sys_err(&format!("getsockopt(SOL_NETLINK, {opt})"), e))? != 0;
    }
    tracing::debug!(fd, protocol = proto, portid = n.portid, groups = ?n.groups, dst = n.dst_portid, "netlink socket saved");
    Ok(Object { kind: Some(Kind::Netlink(n)), ..Default::default() })
}

/// Restore side: the recreated socket (in the restorer, inside its network namespace).
pub fn open(n: &NetlinkObj) -> std::result::Result<OwnedFd, String> {
    let s = sys::socket(libc::AF_NETLINK, n.sock_type, n.protocol).map_err(|e| format!("socket: {e}"))?;
    let mut want = n.clone();
    for (opt, on) in FLAGS.into_iter().zip(flag_fields(&mut want)) {
        let now = sys::getsockopt_int(s.as_fd(), SOL_NETLINK, opt).map_err(|e| format!("getsockopt(SOL_NETLINK, {opt}): {e}"))? != 0;
        if now != *on {
            sys::setsockopt_int(s.as_fd(), SOL_NETLINK, opt, i32::from(*on)).map_err(|e| format!("setsockopt(SOL_NETLINK, {opt}): {e}"))?;
        }
    }
    super::sockopt::restore(&s, n.sock.as_ref().unwrap_or(&Default::default()), || {})?;
    if n.portid != 0 {
        netsock::netlink_addr_op(s.as_fd(), n.portid, 0, false).map_err(|e| match e.raw_os_error() {
            Some(libc::EADDRINUSE) => format!("port id {} is taken by another netlink socket in this network namespace", n.portid),
            _ => format!("binding port id {}: {e}", n.portid),
        })?;
    }
    for g in &n.groups {
        sys::setsockopt_int(s.as_fd(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, *g as i32).map_err(|e| format!("joining multicast group {g}: {e}"))?;
    }
    if n.dst_portid != 0 || n.dst_group != 0 {
        netsock::netlink_addr_op(s.as_fd(), n.dst_portid, n.dst_group, true)
            .map_err(|e| format!("connecting to port id {} group {}: {e}", n.dst_portid, n.dst_group))?;
    }
    super::apply_nonblock(&s, n.flags)?;
    Ok(s)
}

/// For `stasis inspect`: `NETLINK_ROUTE raw, port id 42, groups 1,33, pktinfo`.
pub fn describe(n: &NetlinkObj) -> String {
    let mut s = format!("{} {}", protocol_name(n.protocol), if n.sock_type == libc::SOCK_RAW { "raw" } else { "dgram" });
    s += &if n.portid != 0 { format!(", port id {}", n.portid) } else { ", unbound".into() };
    if !n.groups.is_empty() {
        s += &format!(", groups {}", n.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","));
    }
    if n.dst_portid != 0 || n.dst_group != 0 {
        s += &format!(", connected to port id {} groups {:#x}", n.dst_portid, n.dst_group);
    }
    let mut n2 = n.clone();
    let names = ["pktinfo", "broadcast_error", "no_enobufs", "listen_all_nsid", "cap_ack", "ext_ack", "get_strict_chk"];
    for (name, on) in names.into_iter().zip(flag_fields(&mut n2)) {
        if *on {
            s += &format!(", {name}");
        }
    }
    s + &super::sockopt::describe(n.sock.as_ref().unwrap_or(&Default::default()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_from_bitmap() {
        assert_eq!(super::groups_of(&[0b101, 0, 1]), vec![1, 3, 65]);
        assert!(super::groups_of(&[]).is_empty());
    }
}
