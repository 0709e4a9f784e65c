//! Netlink and packet sockets: their addresses (`sockaddr_nl`, `sockaddr_ll`),
//! memberships (`packet_mreq`), classic BPF filters (`sock_filter`), list-valued
//! getsockopts, and the sock_diag answers for both families (`netlink_diag`,
//! `packet_diag`). Every kernel struct is `#[repr(C)]` without implicit padding.

use super::*;
use crate::kabi::{as_bytes, from_bytes, Pod};

/// struct sockaddr_nl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockaddrNl {
    pub nl_family: u16,
    pub nl_pad: u16,
    pub nl_pid: u32,
    pub nl_groups: u32,
}

/// struct sockaddr_ll.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockaddrLl {
    pub sll_family: u16,
    /// Network byte order.
    pub sll_protocol: u16,
    pub sll_ifindex: i32,
    pub sll_hatype: u16,
    pub sll_pkttype: u8,
    pub sll_halen: u8,
    pub sll_addr: [u8; 8],
}

/// struct packet_mreq (PACKET_ADD_MEMBERSHIP).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMreq {
    pub mr_ifindex: i32,
    pub mr_type: u16,
    pub mr_alen: u16,
    pub mr_address: [u8; 8],
}

/// struct sock_filter: one classic BPF instruction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// struct sock_fprog (SO_ATTACH_FILTER). Not `Pod`: it holds a pointer.
#[repr(C)]
struct SockFprog {
    len: u16,
    _pad: [u16; 3],
    filter: *const SockFilter,
}

/// struct netlink_diag_req.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NetlinkDiagReq {
    sdiag_family: u8,
    sdiag_protocol: u8,
    pad: u16,
    ndiag_ino: u32,
    ndiag_show: u32,
    ndiag_cookie: [u32; 2],
}

/// struct netlink_diag_msg.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NetlinkDiagMsg {
    ndiag_family: u8,
    ndiag_type: u8,
    ndiag_protocol: u8,
    ndiag_state: u8,
    ndiag_portid: u32,
    ndiag_dst_portid: u32,
    ndiag_dst_group: u32,
    ndiag_ino: u32,
    ndiag_cookie: [u32; 2],
}

/// struct packet_diag_req.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PacketDiagReq {
    sdiag_family: u8,
    sdiag_protocol: u8,
    pad: u16,
    pdiag_ino: u32,
    pdiag_show: u32,
    pdiag_cookie: [u32; 2],
}

/// struct packet_diag_msg.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PacketDiagMsg {
    pdiag_family: u8,
    pdiag_type: u8,
    pdiag_num: u16,
    pdiag_ino: u32,
    pdiag_cookie: [u32; 2],
}

/// struct packet_diag_mclist.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketDiagMclist {
    pub pdmc_index: u32,
    pub pdmc_count: u32,
    pub pdmc_type: u16,
    pub pdmc_alen: u16,
    pub pdmc_addr: [u8; 32],
}

/// struct packet_diag_ring: a ring's request as packet_diag reports it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketDiagRing {
    pub pdr_block_size: u32,
    pub pdr_block_nr: u32,
    pub pdr_frame_size: u32,
    pub pdr_frame_nr: u32,
    pub pdr_retire_tmo: u32,
    pub pdr_sizeof_priv: u32,
    pub pdr_features: u32,
}

/// struct tpacket_req3 (PACKET_RX_RING; TPACKET_V1/V2 read only the first four
/// fields, struct tpacket_req).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpacketReq3 {
    pub tp_block_size: u32,
    pub tp_block_nr: u32,
    pub tp_frame_size: u32,
    pub tp_frame_nr: u32,
    pub tp_retire_blk_tov: u32,
    pub tp_sizeof_priv: u32,
    pub tp_feature_req_word: u32,
}

/// struct tpacket_hdr (TPACKET_V1 frame header, x86_64: tp_status is an unsigned long).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Tpacket1Hdr {
    tp_status: u64,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_sec: u32,
    tp_usec: u32,
    _pad: u32,
}

/// struct tpacket2_hdr (TPACKET_V2 frame header).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct Tpacket2Hdr {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_sec: u32,
    tp_nsec: u32,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
    tp_padding: [u8; 4],
}

/// What stasis reads of a ring frame's header (TPACKET_V1 or V2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameHdr {
    /// tp_status (TP_STATUS_KERNEL 0, TP_STATUS_USER bit 0, ...).
    pub status: u64,
    /// When the kernel filled the frame: tp_sec, and tp_usec (V1, scaled) or tp_nsec.
    pub sec: u32,
    pub nsec: u32,
    /// Where the packet's bytes end in the frame: max(tp_mac, tp_net) + tp_snaplen.
    pub end: u64,
}

/// Size of a ring frame's header (TPACKET_V1 and V2 both take 32 bytes).
pub const TPACKET_HDR_LEN: usize = 32;

/// The header at the start of `frame` for ring version `version` (0: TPACKET_V1,
/// 1: TPACKET_V2); None for another version or a frame too short.
pub fn tpacket_hdr(version: u32, frame: &[u8]) -> Option<FrameHdr> {
    let end = |mac: u16, net: u16, snap: u32| u64::from(mac.max(net)) + u64::from(snap);
    match version {
        0 => from_bytes::<Tpacket1Hdr>(frame).map(|h| FrameHdr {
            status: h.tp_status,
            sec: h.tp_sec,
            nsec: h.tp_usec.saturating_mul(1000),
            end: end(h.tp_mac, h.tp_net, h.tp_snaplen),
        }),
        1 => from_bytes::<Tpacket2Hdr>(frame).map(|h| FrameHdr {
            status: u64::from(h.tp_status),
            sec: h.tp_sec,
            nsec: h.tp_nsec,
            end: end(h.tp_mac, h.tp_net, h.tp_snaplen),
        }),
        _ => None,
    }
}

/// setsockopt PACKET_RX_RING (or PACKET_TX_RING) with `req`.
pub fn packet_set_ring(fd: BorrowedFd<'_>, opt: i32, req: &TpacketReq3) -> Result<()> {
    setsockopt_bytes(fd, libc::SOL_PACKET, opt, as_bytes(req))
}

/// sendto on a packet socket: `payload` to interface `ifindex` with `protocol` (network
/// byte order) and an all-zero hardware destination of `halen` bytes.
pub fn packet_sendto(fd: BorrowedFd<'_>, ifindex: i32, protocol: u16, halen: u8, payload: &[u8]) -> Result<usize> {
    let a = SockaddrLl { sll_family: libc::AF_PACKET as u16, sll_protocol: protocol, sll_ifindex: ifindex, sll_halen: halen, ..Default::default() };
    sendto(fd, payload, as_bytes(&a))
}

/// A shared mapping of a packet socket's rings in our own address space. The kernel
/// writes frames into it at any time, so it is only ever copied from and to (never
/// borrowed as a Rust slice). Unmapped on drop.
pub struct RingMap {
    ptr: *mut u8,
    len: usize,
}

impl RingMap {
    /// Maps the rings of packet socket `fd` (`len`: the size of all its rings, as
    /// mmap requires; offset 0), readable, and writable if `write`.
    pub fn map(fd: BorrowedFd<'_>, len: usize, write: bool) -> Result<RingMap> {
        if len == 0 {
            return Err(Error::from_raw_os_error(libc::EINVAL));
        }
        let prot = libc::PROT_READ | if write { libc::PROT_WRITE } else { 0 };
        // SAFETY: a new mapping the kernel places; we own it until drop.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        Ok(RingMap { ptr: p.cast(), len })
    }

    /// Copies `out.len()` bytes from offset `off` (false if out of bounds).
    pub fn read(&self, off: usize, out: &mut [u8]) -> bool {
        if off.checked_add(out.len()).is_none_or(|e| e > self.len) {
            return false;
        }
        // SAFETY: off..off+len is inside our live mapping (checked above); `out` is a
        // distinct Rust buffer; bytes of any value are valid u8.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(off), out.as_mut_ptr(), out.len()) };
        true
    }

    /// Copies `data` to offset `off` (false if out of bounds; the mapping must be
    /// writable).
    pub fn write(&self, off: usize, data: &[u8]) -> bool {
        if off.checked_add(data.len()).is_none_or(|e| e > self.len) {
            return false;
        }
        // SAFETY: off..off+len is inside our live mapping (checked above), mapped
        // writable by the caller's choice; no Rust reference into it exists.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(off), data.len()) };
        true
    }

    /// The first 32-bit word at `off` (a frame's tp_status; V1's is the low half of an
    /// unsigned long), read volatile: the kernel sets it when it hands the frame over.
    pub fn status(&self, off: usize) -> Option<u32> {
        if !off.is_multiple_of(4) || off.checked_add(4).is_none_or(|e| e > self.len) {
            return None;
        }
        // SAFETY: aligned, inside our live mapping (checked above); any u32 is valid.
        Some(unsafe { std::ptr::read_volatile(self.ptr.add(off).cast::<u32>()) })
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping exactly once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// struct inet_diag_sockid: ports and addresses in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockid {
    sport: [u8; 2],
    dport: [u8; 2],
    src: [u8; 16],
    dst: [u8; 16],
    ifindex: u32,
    cookie: [u32; 2],
}

/// struct inet_diag_req_v2.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReqV2 {
    sdiag_family: u8,
    sdiag_protocol: u8,
    idiag_ext: u8,
    pad: u8,
    idiag_states: u32,
    id: InetDiagSockid,
}

/// Destroys the TCP socket of `family` listed by inet_diag as `d` (SOCK_DESTROY: the
/// kernel's tcp_abort; a TIME_WAIT socket is removed from its port), in this thread's
/// network namespace. The kernel finds it by both ends and its cookie: a socket that has
/// gone, or another one on the same ends since, is not touched (ENOENT).
pub fn tcp_destroy(family: i32, d: &InetDiag) -> Result<()> {
    let req = InetDiagReqV2 {
        sdiag_family: family as u8,
        sdiag_protocol: libc::IPPROTO_TCP as u8,
        idiag_states: u32::MAX,
        id: InetDiagSockid {
            sport: d.sport.to_be_bytes(),
            dport: d.dport.to_be_bytes(),
            src: d.src,
            dst: d.dst,
            ifindex: 0,
            cookie: [d.cookie as u32, (d.cookie >> 32) as u32],
        },
        ..Default::default()
    };
    sock_diag_request(21, as_bytes(&req)) // SOCK_DESTROY
}

// SAFETY: #[repr(C)], every field a Pod primitive or array, no implicit padding (the
// sizes are checked below).
unsafe impl Pod for PacketDiagRing {}
// SAFETY: as above.
unsafe impl Pod for NlMsgHdr {}
// SAFETY: as above.
unsafe impl Pod for TpacketReq3 {}
// SAFETY: as above.
unsafe impl Pod for Tpacket1Hdr {}
// SAFETY: as above.
unsafe impl Pod for Tpacket2Hdr {}
// SAFETY: as above.
unsafe impl Pod for InetDiagSockid {}
// SAFETY: as above.
unsafe impl Pod for InetDiagReqV2 {}
// SAFETY: as above.
unsafe impl Pod for SockaddrNl {}
// SAFETY: as above.
unsafe impl Pod for SockaddrLl {}
// SAFETY: as above.
unsafe impl Pod for PacketMreq {}
// SAFETY: as above.
unsafe impl Pod for SockFilter {}
// SAFETY: as above.
unsafe impl Pod for NetlinkDiagReq {}
// SAFETY: as above.
unsafe impl Pod for NetlinkDiagMsg {}
// SAFETY: as above.
unsafe impl Pod for PacketDiagReq {}
// SAFETY: as above.
unsafe impl Pod for PacketDiagMsg {}
// SAFETY: as above.
unsafe impl Pod for PacketDiagMclist {}

const _: () = {
    assert!(std::mem::size_of::<PacketDiagRing>() == 28);
    assert!(std::mem::size_of::<NlMsgHdr>() == 16);
    assert!(std::mem::size_of::<TpacketReq3>() == 28);
    assert!(std::mem::size_of::<Tpacket1Hdr>() == TPACKET_HDR_LEN);
    assert!(std::mem::size_of::<Tpacket2Hdr>() == TPACKET_HDR_LEN);
    assert!(std::mem::size_of::<SockaddrNl>() == 12);
    assert!(std::mem::size_of::<SockaddrLl>() == 20);
    assert!(std::mem::size_of::<PacketMreq>() == 16);
    assert!(std::mem::size_of::<SockFilter>() == 8);
    assert!(std::mem::size_of::<SockFprog>() == 16);
    assert!(std::mem::size_of::<NetlinkDiagReq>() == 20);
    assert!(std::mem::size_of::<NetlinkDiagMsg>() == 28);
    assert!(std::mem::size_of::<PacketDiagReq>() == 20);
    assert!(std::mem::size_of::<PacketDiagMsg>() == 16);
    assert!(std::mem::size_of::<PacketDiagMclist>() == 44);
    assert!(std::mem::size_of::<InetDiagSockid>() == 48);
    assert!(std::mem::size_of::<InetDiagReqV2>() == 56);
};

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
pub const BPF_MAXINSNS: usize = 4096;

/// getsockname / getpeername of a socket as a `T` (zeroed if the kernel gave less).
fn name_as<T: Pod + Default>(fd: BorrowedFd<'_>, peer: bool) -> Result<T> {
    let raw = sock_name(fd, peer)?;
    let mut buf = raw;
    buf.resize(buf.len().max(std::mem::size_of::<T>()), 0);
    Ok(from_bytes(&buf).unwrap_or_default())
}

/// getsockname (or getpeername) of a netlink socket.
pub fn netlink_name(fd: BorrowedFd<'_>, peer: bool) -> Result<SockaddrNl> {
    name_as(fd, peer)
}

/// getsockname of a packet socket.
pub fn packet_name(fd: BorrowedFd<'_>) -> Result<SockaddrLl> {
    name_as(fd, false)
}

/// struct nlmsghdr.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NlMsgHdr {
    pub nlmsg_len: u32,
    pub nlmsg_type: u16,
    pub nlmsg_flags: u16,
    pub nlmsg_seq: u32,
    pub nlmsg_pid: u32,
}

/// The first message queued on netlink socket `fd`, without consuming it (MSG_PEEK).
pub struct NlQueued {
    /// The sender's port id (0: the kernel).
    pub sender: u32,
    /// The multicast group it was sent to (0: unicast), from NETLINK_PKTINFO.
    pub group: u32,
    pub hdr: NlMsgHdr,
    pub len: usize,
}

/// The first message queued on netlink socket `fd` (None if nothing is), peeked with
/// NETLINK_PKTINFO on for the peek and put back as it was.
pub fn netlink_peek_first(fd: BorrowedFd<'_>) -> Result<Option<NlQueued>> {
    const SOL_NETLINK: i32 = 270;
    const NETLINK_PKTINFO: i32 = 3;
    let old = getsockopt_int(fd, SOL_NETLINK, NETLINK_PKTINFO)?;
    setsockopt_int(fd, SOL_NETLINK, NETLINK_PKTINFO, 1)?;
    let mut buf = vec![0u8; 1 << 16];
    let r = recvmsg_ctl(fd, &mut buf, 64, libc::MSG_PEEK | libc::MSG_DONTWAIT);
    setsockopt_int(fd, SOL_NETLINK, NETLINK_PKTINFO, old)?;
    match r {
        Ok((n, from, _, cmsgs)) => {
            let group = cmsgs.iter().find(|c| c.level == SOL_NETLINK && c.ty == NETLINK_PKTINFO).and_then(|c| from_bytes::<u32>(&c.data)).unwrap_or(0);
            Ok(Some(NlQueued {
                sender: from_bytes::<SockaddrNl>(&from).unwrap_or_default().nl_pid,
                group,
                hdr: from_bytes::<NlMsgHdr>(&buf[..n.min(buf.len())]).unwrap_or_default(),
                len: n,
            }))
        }
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// bind (or connect) a netlink socket.
pub fn netlink_addr_op(fd: BorrowedFd<'_>, portid: u32, groups: u32, connect: bool) -> Result<()> {
    let a = SockaddrNl { nl_family: libc::AF_NETLINK as u16, nl_pad: 0, nl_pid: portid, nl_groups: groups };
    sock_addr_op(fd, as_bytes(&a), connect)
}

/// bind a packet socket to interface `ifindex` (0: every interface) and `protocol`
/// (network byte order).
pub fn packet_bind(fd: BorrowedFd<'_>, ifindex: i32, protocol: u16) -> Result<()> {
    let a = SockaddrLl { sll_family: libc::AF_PACKET as u16, sll_protocol: protocol, sll_ifindex: ifindex, ..Default::default() };
    sock_addr_op(fd, as_bytes(&a), false)
}

/// A list-valued getsockopt whose answer length says how much the kernel has
/// (NETLINK_LIST_MEMBERSHIPS: a bitmap of u32 words): the words, up to `max_bytes`.
/// Err(EMSGSIZE) if the kernel has more than that.
pub fn getsockopt_u32_words(fd: BorrowedFd<'_>, level: i32, opt: i32, max_bytes: usize) -> Result<Vec<u32>> {
    let mut len = 256usize;
    loop {
        let b = getsockopt_bytes_len(fd, level, opt, len)?;
        let (data, need) = b;
        if need <= len {
            return Ok(data[..need.min(data.len())].chunks_exact(4).map(|w| u32::from_ne_bytes(w.try_into().unwrap())).collect());
        }
        if need > max_bytes {
            return Err(Error::from_raw_os_error(libc::EMSGSIZE));
        }
        len = need;
    }
}

/// getsockopt into a `len`-byte buffer: (the buffer, the length the kernel answered).
fn getsockopt_bytes_len(fd: BorrowedFd<'_>, level: i32, opt: i32, len: usize) -> Result<(Vec<u8>, usize)> {
    let mut buf = vec![0u8; len];
    let mut l = len as libc::socklen_t;
    // SAFETY: buf/l describe a valid writable buffer of `len` bytes; the kernel writes at
    // most that many.
    c(unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, buf.as_mut_ptr().cast(), &mut l) } as libc::c_long)?;
    Ok((buf, l as usize))
}

/// The classic BPF filter attached to a socket (SO_GET_FILTER), empty if none.
/// EACCES: an eBPF filter (SO_ATTACH_BPF), which cannot be read back this way.
pub fn get_filter(fd: BorrowedFd<'_>) -> Result<Vec<SockFilter>> {
    // SO_GET_FILTER counts in instructions, not bytes: optlen 0 asks for the count.
    let mut n: libc::socklen_t = 0;
    // SAFETY: optlen 0: the kernel writes nothing to optval, only the count into n.
    c(unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, std::ptr::null_mut(), &mut n) }
        as libc::c_long)?;
    let count = n as usize;
    if count == 0 {
        return Ok(Vec::new());
    }
    if count > BPF_MAXINSNS {
        return Err(Error::from_raw_os_error(libc::E2BIG));
    }
    let mut prog = vec![SockFilter::default(); count];
    let mut l = count as libc::socklen_t;
    // SAFETY: prog holds `count` instructions; the kernel copies at most l = count of them
    // (it fails with EINVAL if the filter grew meanwhile).
    c(unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, prog.as_mut_ptr().cast(), &mut l) }
        as libc::c_long)?;
    prog.truncate(l as usize);
    Ok(prog)
}

/// SO_ATTACH_FILTER with a classic BPF program.
pub fn attach_filter(fd: BorrowedFd<'_>, prog: &[SockFilter]) -> Result<()> {
    if prog.is_empty() || prog.len() > BPF_MAXINSNS {
        return Err(Error::from_raw_os_error(libc::EINVAL));
    }
    let f = SockFprog { len: prog.len() as u16, _pad: [0; 3], filter: prog.as_ptr() };
    // SAFETY: `f` points at prog.len() valid instructions that outlive the call; the
    // kernel copies them.
    c(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&f as *const SockFprog).cast(),
            std::mem::size_of::<SockFprog>() as libc::socklen_t,
        )
    } as libc::c_long)
    .map(drop)
}

/// PACKET_ADD_MEMBERSHIP.
pub fn packet_add_membership(fd: BorrowedFd<'_>, m: &PacketMreq) -> Result<()> {
    setsockopt_bytes(fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, as_bytes(m))
}

/// The name of interface `ifindex` in the network namespace of socket `fd`
/// (SIOCGIFNAME, answered for the socket's namespace).
pub fn ifname_of(fd: BorrowedFd<'_>, ifindex: i32) -> Result<String> {
    // SAFETY: zeroed ifreq with the index set; SIOCGIFNAME writes the NUL-terminated name
    // into ifr_name.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_ifru.ifru_ifindex = ifindex;
        c(libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFNAME, &mut ifr) as libc::c_long)?;
        let name: Vec<u8> = ifr.ifr_name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        Ok(String::from_utf8_lossy(&name).into_owned())
    }
}

/// The index of interface `name` in the network namespace of socket `fd` (SIOCGIFINDEX).
pub fn ifindex_of(fd: BorrowedFd<'_>, name: &str) -> Result<i32> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: zeroed ifreq, name copied with room for the NUL; ioctl fills ifru_ifindex.
    unsafe {
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in name.bytes().enumerate() {
            ifr.ifr_name[i] = b as libc::c_char;
        }
        c(libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFINDEX, &mut ifr) as libc::c_long)?;
        Ok(ifr.ifr_ifru.ifru_ifindex)
    }
}

/// What netlink_diag says about one netlink socket.
#[derive(Clone, Debug, Default)]
pub struct NetlinkDiag {
    pub ino: u32,
    pub protocol: u8,
    pub portid: u32,
    /// NETLINK_DIAG_FLAGS (NDIAG_FLAG_*), if the kernel sent them.
    pub flags: Option<u32>,
}

/// NDIAG_FLAG_CB_RUNNING: a dump (NLM_F_DUMP request) is in progress.
pub const NDIAG_FLAG_CB_RUNNING: u32 = 1;

/// Every bound netlink socket of the calling thread's network namespace.
pub fn netlink_diag() -> Result<Vec<NetlinkDiag>> {
    const NDIAG_PROTO_ALL: u8 = 255;
    const NDIAG_SHOW_FLAGS: u32 = 8;
    const NETLINK_DIAG_FLAGS: u16 = 4;
    let req = NetlinkDiagReq {
        sdiag_family: libc::AF_NETLINK as u8,
        sdiag_protocol: NDIAG_PROTO_ALL,
        ndiag_show: NDIAG_SHOW_FLAGS,
        ..Default::default()
    };
    let mut out = Vec::new();
    for m in sock_diag_dump(as_bytes(&req))? {
        let Some(d) = from_bytes::<NetlinkDiagMsg>(&m) else { continue };
        let attrs = rtattrs(&m[std::mem::size_of::<NetlinkDiagMsg>()..]);
        let flags = attrs.iter().find(|(t, _)| *t == NETLINK_DIAG_FLAGS).and_then(|(_, v)| from_bytes::<u32>(v));
        out.push(NetlinkDiag { ino: d.ndiag_ino, protocol: d.ndiag_protocol, portid: d.ndiag_portid, flags });
    }
    Ok(out)
}

/// What packet_diag says about one packet socket.
#[derive(Clone, Debug, Default)]
pub struct PacketDiag {
    pub ino: u32,
    pub mclist: Vec<PacketDiagMclist>,
    /// PACKET_DIAG_FANOUT: id | mode << 16 | flags << 24.
    pub fanout: Option<u32>,
    /// PACKET_DIAG_RX_RING / PACKET_DIAG_TX_RING: the ring's request, if it has one.
    pub rx_ring: Option<PacketDiagRing>,
    pub tx_ring: Option<PacketDiagRing>,
}

/// Every packet socket of the calling thread's network namespace.
pub fn packet_diag() -> Result<Vec<PacketDiag>> {
    const SHOW_MCLIST: u32 = 2;
    const SHOW_RING_CFG: u32 = 4;
    const SHOW_FANOUT: u32 = 8;
    const DIAG_MCLIST: u16 = 1;
    const DIAG_RX_RING: u16 = 2;
    const DIAG_TX_RING: u16 = 3;
    const DIAG_FANOUT: u16 = 4;
    let req = PacketDiagReq {
        sdiag_family: libc::AF_PACKET as u8,
        pdiag_show: SHOW_MCLIST | SHOW_RING_CFG | SHOW_FANOUT,
        ..Default::default()
    };
    let mut out = Vec::new();
    for m in sock_diag_dump(as_bytes(&req))? {
        let Some(d) = from_bytes::<PacketDiagMsg>(&m) else { continue };
        let mut p = PacketDiag { ino: d.pdiag_ino, ..Default::default() };
        for (t, v) in rtattrs(&m[std::mem::size_of::<PacketDiagMsg>()..]) {
            match t {
                DIAG_MCLIST => {
                    let sz = std::mem::size_of::<PacketDiagMclist>();
                    p.mclist = v.chunks_exact(sz).filter_map(from_bytes).collect();
                }
                DIAG_RX_RING => p.rx_ring = from_bytes(v),
                DIAG_TX_RING => p.tx_ring = from_bytes(v),
                DIAG_FANOUT => p.fanout = from_bytes(v),
                _ => {}
            }
        }
        out.push(p);
    }
    Ok(out)
}
