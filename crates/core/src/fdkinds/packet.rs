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
//! Receive rings (PACKET_RX_RING, TPACKET_V1 and V2): there is no getsockopt for the
//! ring's request; packet_diag's PACKET_DIAG_RX_RING has it (block size and count,
//! frame size and count). The dump maps the ring read-only in stasis itself and keeps
//! the frames the kernel had handed to the program (TP_STATUS_USER) and it had not
//! given back, header and packet bytes. The frame the kernel fills next (its ring head)
//! is kernel state nothing reads back: it is the frame after the one filled last, found
//! by the frames' timestamps (tp_sec/tp_nsec, tp_usec for V1; a frame keeps them after
//! the program gave it back); a ring never filled starts at frame 0. The process's
//! mappings of the ring are VMAs of kind PACKET_RING (`mem.rs`), mapped again through
//! the socket at restore.
//!
//! Refused: transmit rings (PACKET_TX_RING: the kernel's send position is not readable
//! and frames waiting to be sent would go out on a network), TPACKET_V3 receive rings
//! (block-based: the kernel's current block, its fill offset and retire timer are not
//! readable), a fanout group steered by a BPF program (PACKET_FANOUT_CBPF/EBPF), an eBPF
//! socket filter, a membership with a hardware address longer than 8 bytes.
//!
//! Packets queued for reading are not kept: a packet socket is a tap on traffic that the
//! kernel already drops whenever its receive buffer is full (counted in
//! PACKET_STATISTICS), so its readers handle loss; `--leave-running` leaves them queued.
//! Likewise packets that reach a ring after the dump read it are not in the image. The
//! statistics counters start again from zero (the frames restore sends to move a ring's
//! position are not counted: reading PACKET_STATISTICS resets them).
//!
//! Restore (`open`, in the restorer, inside the socket's network namespace): socket
//! with protocol 0 (receiving nothing yet), options, then the ring: PACKET_RX_RING with
//! the same request, mapped in the restorer; the kernel starts a new ring at frame 0,
//! so to make it fill the saved head next the restorer has the socket receive `head`
//! frames first: bound to `lo` for the local experimental ethertype 0x88B5, it gets
//! them from a second packet socket over `lo` (only in a network namespace the restore
//! created and while no packet socket there is bound yet: no other socket sees them;
//! refused in the host's namespace, whose `lo` other programs tap), then it is unbound
//! again, every frame's header is cleared and the saved frames are written back.
//! Memberships, SOL_SOCKET options and the filter (with its lock) follow. Binding to
//! the interface (found again by index and name in the restored namespace, else the
//! restore fails) and protocol and joining the fanout group come last (`start`), once
//! every fd object is open.

use std::os::fd::{AsFd, OwnedFd};

use stasis_image::model::{Kind, Object, PacketFanout, PacketFrame, PacketMclist, PacketObj, PacketRing};
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

const PACKET_RX_RING: i32 = 5;
const PACKET_STATISTICS: i32 = 6;
/// tp_status bits: the frame is the program's (filled, not given back).
const TP_STATUS_USER: u64 = 1;
/// The ring's size (block size x count) an image may hold: 1 GiB.
pub const MAX_RING_BYTES: u64 = 1 << 30;
/// Frames per ring an image may hold (moving a restored ring's position sends up to
/// this many frames).
pub const MAX_RING_FRAMES: u32 = 1 << 20;
/// The frames' bytes kept per ring: 64 MiB (a dump refuses more).
pub const MAX_RING_SAVED: u64 = 64 << 20;
/// Ethertype of the frames restore sends a ring itself to move its head (IEEE 802
/// "local experimental" 1).
const ETH_P_RING_POS: u16 = 0x88B5;

/// Ethertype a ring socket listens for between moving its head and `start` (IEEE 802
/// "local experimental" 2: nothing sends it).
const ETH_P_PARKED: u16 = 0x88B6;

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
    if d.tx_ring.is_some() {
        return Err(refuse(
            "with an mmap'ed transmit ring (PACKET_TX_RING: the kernel's send position is not readable; not supported)".into(),
        ));
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
    if let Some(r) = &d.rx_ring {
        p.rx_ring = Some(dump_ring(s, p.version, r).map_err(|e| match e {
            RingErr::Refuse(why) => refuse(why),
            RingErr::Sys(what, err) => sys_err(&what, err),
        })?);
    }
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

enum RingErr {
    Refuse(String),
    Sys(String, std::io::Error),
}

/// Byte offset of frame `i` in a ring (frames do not cross blocks).
pub fn frame_offset(r: &PacketRing, i: u32) -> u64 {
    let per_block = r.block_size / r.frame_size;
    u64::from(i / per_block) * u64::from(r.block_size) + u64::from(i % per_block) * u64::from(r.frame_size)
}

/// The ring of socket `s` (its request from packet_diag): the frames the program holds
/// and the kernel's next frame, read through a read-only mapping of our own.
fn dump_ring(s: std::os::fd::BorrowedFd<'_>, version: u32, d: &netsock::PacketDiagRing) -> std::result::Result<PacketRing, RingErr> {
    let refuse = |why: String| Err(RingErr::Refuse(why));
    if version > 1 {
        return refuse("with a TPACKET_V3 receive ring (PACKET_RX_RING: its block state is not readable; not supported)".into());
    }
    let r = PacketRing {
        block_size: d.pdr_block_size,
        block_nr: d.pdr_block_nr,
        frame_size: d.pdr_frame_size,
        frame_nr: d.pdr_frame_nr,
        ..Default::default()
    };
    if let Err(why) = check_ring(&r) {
        return refuse(format!("with a receive ring stasis does not take: {why}"));
    }
    let len = u64::from(r.block_size) * u64::from(r.block_nr);
    let map = netsock::RingMap::map(s, len as usize, false).map_err(|e| RingErr::Sys("mapping its receive ring".into(), e))?;
    let mut hdr = [0u8; netsock::TPACKET_HDR_LEN];
    let (mut saved, mut latest, mut frames) = (0u64, None::<(u32, u32, u32)>, Vec::new());
    for i in 0..r.frame_nr {
        let off = frame_offset(&r, i) as usize;
        map.read(off, &mut hdr);
        let Some(h) = netsock::tpacket_hdr(version, &hdr) else { continue };
        if (h.sec, h.nsec) != (0, 0) && latest.is_none_or(|(s, n, _)| (h.sec, h.nsec) >= (s, n)) {
            latest = Some((h.sec, h.nsec, i));
        }
        if h.status & TP_STATUS_USER == 0 {
            continue;
        }
        let n = h.end.clamp(netsock::TPACKET_HDR_LEN as u64, u64::from(r.frame_size));
        saved += n;
        if saved > MAX_RING_SAVED {
            return refuse(format!("with more than {MAX_RING_SAVED} bytes of frames not yet consumed in its receive ring"));
        }
        let mut data = vec![0u8; n as usize];
        map.read(off, &mut data);
        frames.push(PacketFrame { index: i, data });
    }
    let head = latest.map(|(_, _, i)| (i + 1) % r.frame_nr).unwrap_or(0);
    tracing::debug!(frames = frames.len(), head, "packet ring saved");
    Ok(PacketRing { head, frames, ..r })
}

/// The bounds a ring's request must keep (the kernel's own checks, for the ones we
/// rely on, and our size limit).
pub fn check_ring(r: &PacketRing) -> std::result::Result<(), String> {
    let size = u64::from(r.block_size) * u64::from(r.block_nr);
    let ok = r.block_size > 0
        && r.block_size.is_multiple_of(4096)
        && r.frame_size as usize >= netsock::TPACKET_HDR_LEN
        && r.frame_size.is_multiple_of(16)
        && r.frame_size <= r.block_size
        && r.block_nr > 0
        && u64::from(r.block_size / r.frame_size.max(1)) * u64::from(r.block_nr) == u64::from(r.frame_nr)
        && size <= MAX_RING_BYTES
        && r.frame_nr <= MAX_RING_FRAMES;
    if !ok {
        return Err(ring_req(r));
    }
    Ok(())
}

/// Interface `idx` must be named `name` in the restorer's (the socket's) namespace.
fn check_if(s: &OwnedFd, idx: i32, name: &str) -> std::result::Result<(), String> {
    match netsock::ifindex_of(s.as_fd(), name) {
        Ok(i) if i == idx => Ok(()),
        Ok(i) => Err(format!("interface {name} has index {i} now, not {idx}")),
        Err(e) => Err(format!("interface {name} (index {idx}) is gone: {e}")),
    }
}

/// Restore side: the recreated socket (in the restorer, inside its network namespace),
/// not bound yet: `start` binds it once every fd object is open. `own_ns`: the socket's
/// namespace is one the restore created (its ring's head may be moved there).
pub fn open(p: &PacketObj, own_ns: bool) -> std::result::Result<OwnedFd, String> {
    // Protocol 0: not receiving anything until bound (socket() with a protocol would start
    // it on every interface). SO_PROTOCOL reads 0 for packet sockets either way.
    let s = sys::socket(libc::AF_PACKET, p.sock_type, 0).map_err(|e| format!("socket: {e}"))?;
    if p.ifindex != 0 {
        check_if(&s, p.ifindex, &p.ifname)?;
    }
    // the options first: PACKET_VERSION, RESERVE and VNET_HDR_SZ cannot change once
    // there is a ring
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
    if let Some(r) = &p.rx_ring {
        if r.head != 0 && p.protocol == 0 {
            return Err(format!("its receive ring's next frame is {} but it receives no protocol: a socket that received cannot be made to receive none again", r.head));
        }
        restore_ring(&s, p.version, r, own_ns)?;
    }
    for m in &p.mclist {
        check_if(&s, m.ifindex, &m.ifname)?;
        let mut mr = netsock::PacketMreq { mr_ifindex: m.ifindex, mr_type: m.mr_type as u16, mr_alen: m.addr.len() as u16, mr_address: [0; 8] };
        mr.mr_address[..m.addr.len()].copy_from_slice(&m.addr);
        for _ in 0..m.count {
            netsock::packet_add_membership(s.as_fd(), &mr).map_err(|e| format!("PACKET_ADD_MEMBERSHIP (type {}) on {}: {e}", m.mr_type, m.ifname))?;
        }
    }
    // Unbound, it has received nothing; the filter is in place before it is bound.
    let drain = || {
        let mut buf = [0u8; 1];
        while sys::recv(s.as_fd(), &mut buf, libc::MSG_DONTWAIT | libc::MSG_TRUNC).is_ok() {}
    };
    super::sockopt::restore(&s, p.sock.as_ref().unwrap_or(&Default::default()), drain)?;
    super::apply_nonblock(&s, p.flags)?;
    Ok(s)
}

/// Binds the socket made by `open` to its interface and protocol and joins its fanout
/// group (in its network namespace, after every socket there was opened).
pub fn start(p: &PacketObj, s: &OwnedFd) -> std::result::Result<(), String> {
    if p.ifindex != 0 {
        check_if(s, p.ifindex, &p.ifname)?;
    }
    if p.ifindex != 0 || p.protocol != 0 {
        netsock::packet_bind(s.as_fd(), p.ifindex, p.protocol as u16)
            .map_err(|e| format!("binding to interface {} (index {}): {e}", p.ifname, p.ifindex))?;
    }
    if let Some(f) = &p.fanout {
        let v = f.id | (f.mode << 16) | (f.flags << 24);
        sys::setsockopt_int(s.as_fd(), SOL_PACKET, PACKET_FANOUT, v as i32).map_err(|e| format!("joining fanout group {} (mode {}): {e}", f.id, f.mode))?;
    }
    Ok(())
}

/// Sets up the receive ring again on the unbound socket `s`, moves the kernel's head to
/// the saved one and writes the saved frames back.
fn restore_ring(s: &OwnedFd, version: u32, r: &PacketRing, own_ns: bool) -> std::result::Result<(), String> {
    let req = netsock::TpacketReq3 { tp_block_size: r.block_size, tp_block_nr: r.block_nr, tp_frame_size: r.frame_size, tp_frame_nr: r.frame_nr, ..Default::default() };
    netsock::packet_set_ring(s.as_fd(), PACKET_RX_RING, &req).map_err(|e| format!("PACKET_RX_RING ({}): {e}", ring_req(r)))?;
    let len = u64::from(r.block_size) * u64::from(r.block_nr);
    let map = netsock::RingMap::map(s.as_fd(), len as usize, true).map_err(|e| format!("mapping the receive ring: {e}"))?;
    if r.head != 0 {
        if !own_ns {
            return Err(format!(
                "its receive ring's next frame is {}: moving a new ring there takes frames sent over lo, done only in a network namespace the restore creates (this socket is in the host's)",
                r.head
            ));
        }
        move_head(s, &map, r).map_err(|why| format!("moving the receive ring to frame {}: {why}", r.head))?;
    }
    let zero = [0u8; netsock::TPACKET_HDR_LEN];
    let mut saved = r.frames.iter().peekable();
    for i in 0..r.frame_nr {
        let off = frame_offset(r, i) as usize;
        let ok = match saved.next_if(|f| f.index == i) {
            Some(f) => map.write(off, &f.data),
            None => map.write(off, &zero),
        };
        if !ok {
            return Err(format!("frame {i} lies outside the ring"));
        }
    }
    tracing::debug!(version, head = r.head, frames = r.frames.len(), "packet ring restored");
    Ok(())
}

/// Makes the kernel fill frames 0..head of the fresh ring of `s` (bound to `lo` for
/// ETH_P_RING_POS meanwhile), so that it fills frame `head` next; unbinds it again.
fn move_head(s: &OwnedFd, map: &netsock::RingMap, r: &PacketRing) -> std::result::Result<(), String> {
    let lo = netsock::ifindex_of(s.as_fd(), "lo").map_err(|e| format!("no lo interface: {e}"))?;
    let proto = ETH_P_RING_POS.to_be();
    netsock::packet_bind(s.as_fd(), lo, proto).map_err(|e| format!("binding to lo: {e}"))?;
    let sent = (|| {
        let tx = sys::socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0).map_err(|e| format!("socket: {e}"))?;
        for _ in 0..r.head {
            netsock::packet_sendto(tx.as_fd(), lo, proto, 6, b"stasis: ring position").map_err(|e| format!("sending over lo: {e}"))?;
        }
        let last = frame_offset(r, r.head - 1) as usize;
        let t0 = std::time::Instant::now();
        // 2 s, and 1 s more per 100000 frames
        let limit = std::time::Duration::from_secs(2 + u64::from(r.head) / 100_000);
        while map.status(last).unwrap_or(0) & TP_STATUS_USER as u32 == 0 {
            if t0.elapsed() > limit {
                return Err(format!("the frames sent over lo did not all arrive within {} s", limit.as_secs()));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        Ok(())
    })();
    // parked until `start` binds it: on lo for an ethertype nothing sends (a bind
    // cannot go back to protocol 0: 0 keeps the current one)
    netsock::packet_bind(s.as_fd(), lo, ETH_P_PARKED.to_be()).map_err(|e| format!("binding to lo again: {e}"))?;
    sent?;
    for i in 0..r.head {
        if map.status(frame_offset(r, i) as usize).unwrap_or(0) & TP_STATUS_USER as u32 == 0 {
            return Err(format!("frame {i} was not filled"));
        }
    }
    // reading PACKET_STATISTICS resets them: the frames sent here are not counted
    sys::getsockopt_bytes(s.as_fd(), SOL_PACKET, PACKET_STATISTICS, 12).map_err(|e| format!("PACKET_STATISTICS: {e}"))?;
    Ok(())
}

fn ring_req(r: &PacketRing) -> String {
    format!("{} blocks of {} bytes, {} frames of {}", r.block_nr, r.block_size, r.frame_nr, r.frame_size)
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
    if let Some(r) = &p.rx_ring {
        s += &format!(", receive ring of {}, next frame {}, {} frames not consumed", ring_req(r), r.head, r.frames.len());
    }
    let names = ["version", "reserve", "timestamp", "vnet_hdr_sz", "auxdata", "origdev", "loss", "tx_has_off", "qdisc_bypass", "ignore_outgoing"];
    for (name, v) in names.into_iter().zip(int_opts(p)) {
        if v != 0 {
            s += &format!(", {name} {v}");
        }
    }
    s + &super::sockopt::describe(p.sock.as_ref().unwrap_or(&Default::default()))
}
