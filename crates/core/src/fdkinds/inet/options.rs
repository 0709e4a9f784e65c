//! The socket options of IP and unix sockets that stasis saves and restores: ONE table of
//! (level, option, value type, when to set it, which sockets it applies to), used by
//! the dump (read every applicable option, keep those that differ from a new socket of
//! the same kind), the restore (set them in the table's order, each in its phase) and
//! the image validation (only options of this table, values of the table's size).
//!
//! Options that are state rather than settings are left out: TCP_QUICKACK (flips by
//! itself), SO_INCOMING_CPU, TCP_MAXSEG and
//! TCP_WINDOW_CLAMP of a connection (the connection's own, part of its TCP_REPAIR state),
//! IP_OPTIONS, eBPF programs (SO_ATTACH_BPF has no readable form).

use std::os::fd::BorrowedFd;

use stasis_image::model::SockOpt;
use stasis_sys::sys;

const SOL_SOCKET: i32 = 1;
const SOL_IP: i32 = 0;
const SOL_TCP: i32 = 6;
const SOL_UDP: i32 = 17;
const SOL_IPV6: i32 = 41;
const SOL_ICMPV6: i32 = 58;
const SOL_UDPLITE: i32 = 136;
const SOL_RAW: i32 = 255;

pub const SO_RCVBUF: i32 = 8;
pub const SO_SNDBUF: i32 = 7;
pub(super) const SO_SNDBUFFORCE: i32 = 32;
pub(super) const SO_RCVBUFFORCE: i32 = 33;
const SO_ATTACH_FILTER: i32 = 26;
pub(super) const SO_BUF_LOCK: i32 = 72;
const SO_PRIORITY: i32 = 12;
const SO_PASSPIDFD: i32 = 76;
const SO_PASSRIGHTS: i32 = 83;
const IP_TOS: i32 = 1;

/// Options saved whenever another one is, because restoring that one changes them:
/// (option, saved if this one is). Setting a buffer size locks it (SO_BUF_LOCK says
/// whether it was); setting IP_TOS sets the priority from the TOS bits.
type OptId = (i32, i32);
const COMPANIONS: &[(OptId, &[OptId])] = &[
    ((SOL_SOCKET, SO_BUF_LOCK), &[(SOL_SOCKET, SO_RCVBUF), (SOL_SOCKET, SO_SNDBUF)]),
    ((SOL_SOCKET, SO_PRIORITY), &[(SOL_IP, IP_TOS)]),
];

/// What an option's value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    /// An int (4 bytes).
    Int,
    /// A struct of exactly this many bytes (SO_LINGER, timeouts, filters of ICMP).
    Bytes(usize),
    /// A NUL-padded name of at most this many bytes (device, congestion control).
    Name(usize),
    /// Bytes of any value, at most this many (IP_OPTIONS: as many as the kernel gives).
    Upto(usize),
    /// A classic BPF program (SO_ATTACH_FILTER / SO_GET_FILTER).
    Filter,
    /// SO_RCVBUF / SO_SNDBUF: the kernel doubles what is set; restored with the FORCE
    /// variant and half the value, so that getsockopt reads back the same.
    Buf,
}

/// When restore sets an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Right after socket(): before bind, listen or connect (address reuse, device,
    /// IPV6_V6ONLY, MSS and SYN options...).
    Early,
    /// Once the socket is bound, listening or connected (and its queues refilled).
    Late,
}

/// Which sockets an option applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum For {
    Any,
    /// IP sockets (IPv4 or IPv6): SOL_SOCKET options a unix socket keeps in fields of
    /// its own record (buffer sizes, SO_PEEK_OFF).
    Ip,
    /// Unix sockets (SO_PASSPIDFD, SO_PASSRIGHTS).
    Unix,
    V4,
    V6,
    /// Not TCP (multicast options: stream sockets refuse them, and an accepted
    /// connection reads back values taken from the SYN).
    V4Dgram,
    V6Dgram,
    Tcp,
    /// TCP, not connected (listeners, idle sockets, SYN_SENT).
    TcpUnconnected,
    /// UDP and UDP-Lite.
    Udp,
    UdpLite,
    /// Raw IPv4 sockets (IP_HDRINCL).
    RawV4,
    /// Raw ICMP (IPv4) sockets: ICMP_FILTER.
    RawIcmp,
    /// Raw ICMPv6 sockets: ICMP6_FILTER.
    RawIcmp6,
}

pub struct Opt {
    pub level: i32,
    pub name: i32,
    pub label: &'static str,
    pub val: Val,
    pub when: When,
    pub applies: For,
}

const fn o(level: i32, name: i32, label: &'static str, val: Val, when: When, applies: For) -> Opt {
    Opt { level, name, label, val, when, applies }
}

use For::*;
use Val::*;
use When::*;

/// Every option, in the order restore sets them (SO_LOCK_FILTER after the filter,
/// SO_BUF_LOCK after the buffer sizes it may unlock).
pub static TABLE: &[Opt] = &[
    o(SOL_SOCKET, 2, "SO_REUSEADDR", Int, Early, Any),
    o(SOL_SOCKET, 15, "SO_REUSEPORT", Int, Early, Any),
    o(SOL_SOCKET, 25, "SO_BINDTODEVICE", Name(16), Early, Any),
    o(SOL_SOCKET, 36, "SO_MARK", Int, Early, Any),
    // IP_TOS also sets the priority: the priority comes after it
    o(SOL_IP, 1, "IP_TOS", Int, Early, V4),
    o(SOL_SOCKET, 12, "SO_PRIORITY", Int, Early, Any),
    o(SOL_SOCKET, 9, "SO_KEEPALIVE", Int, Early, Any),
    o(SOL_SOCKET, 6, "SO_BROADCAST", Int, Early, Any),
    o(SOL_SOCKET, 5, "SO_DONTROUTE", Int, Early, Any),
    o(SOL_SOCKET, 10, "SO_OOBINLINE", Int, Early, Any),
    o(SOL_SOCKET, 11, "SO_NO_CHECK", Int, Early, Udp),
    o(SOL_SOCKET, 13, "SO_LINGER", Bytes(8), Early, Any),
    o(SOL_SOCKET, 18, "SO_RCVLOWAT", Int, Late, Any),
    // relative to the first unread byte: after the restored queue
    o(SOL_SOCKET, 42, "SO_PEEK_OFF", Int, Late, Ip),
    o(SOL_SOCKET, 20, "SO_RCVTIMEO", Bytes(16), Early, Any),
    o(SOL_SOCKET, 21, "SO_SNDTIMEO", Bytes(16), Early, Any),
    o(SOL_SOCKET, 29, "SO_TIMESTAMP", Int, Early, Any),
    o(SOL_SOCKET, 35, "SO_TIMESTAMPNS", Int, Early, Any),
    o(SOL_SOCKET, 37, "SO_TIMESTAMPING", Bytes(8), Early, Any),
    o(SOL_SOCKET, 40, "SO_RXQ_OVFL", Int, Early, Any),
    o(SOL_SOCKET, 45, "SO_SELECT_ERR_QUEUE", Int, Early, Any),
    o(SOL_SOCKET, 46, "SO_BUSY_POLL", Int, Early, Any),
    o(SOL_SOCKET, 60, "SO_ZEROCOPY", Int, Early, Any),
    o(SOL_SOCKET, 69, "SO_PREFER_BUSY_POLL", Int, Early, Any),
    o(SOL_SOCKET, 49, "SO_INCOMING_CPU", Int, Early, Any),
    o(SOL_SOCKET, 41, "SO_WIFI_STATUS", Int, Early, Any),
    o(SOL_SOCKET, 74, "SO_TXREHASH", Int, Early, Any),
    o(SOL_SOCKET, 75, "SO_RCVMARK", Int, Early, Any),
    // a u64 when asked with 8 bytes
    o(SOL_SOCKET, 47, "SO_MAX_PACING_RATE", Bytes(8), Early, Any),
    // struct sock_txtime: clock id, flags
    o(SOL_SOCKET, 61, "SO_TXTIME", Bytes(8), Early, Any),
    o(SOL_SOCKET, SO_PASSPIDFD, "SO_PASSPIDFD", Int, Early, Unix),
    // Linux 6.16+ (elsewhere getsockopt fails and nothing is saved)
    o(SOL_SOCKET, SO_PASSRIGHTS, "SO_PASSRIGHTS", Int, Early, Unix),
    o(SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", Buf, Late, Ip),
    o(SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", Buf, Late, Ip),
    o(SOL_SOCKET, SO_BUF_LOCK, "SO_BUF_LOCK", Int, Late, Any),
    o(SOL_SOCKET, SO_ATTACH_FILTER, "SO_ATTACH_FILTER", Filter, Late, Any),
    o(SOL_SOCKET, 44, "SO_LOCK_FILTER", Int, Late, Any),
    // IPv4
    o(SOL_IP, 15, "IP_FREEBIND", Int, Early, V4),
    o(SOL_IP, 19, "IP_TRANSPARENT", Int, Early, V4),
    o(SOL_IP, 24, "IP_BIND_ADDRESS_NO_PORT", Int, Early, V4),
    o(SOL_IP, 51, "IP_LOCAL_PORT_RANGE", Int, Early, V4),
    o(SOL_IP, 3, "IP_HDRINCL", Int, Early, RawV4),
    o(SOL_IP, 2, "IP_TTL", Int, Early, V4),
    o(SOL_IP, 21, "IP_MINTTL", Int, Early, V4),
    o(SOL_IP, 10, "IP_MTU_DISCOVER", Int, Early, V4),
    o(SOL_IP, 22, "IP_NODEFRAG", Int, Early, V4),
    o(SOL_IP, 8, "IP_PKTINFO", Int, Early, V4),
    o(SOL_IP, 11, "IP_RECVERR", Int, Early, V4),
    o(SOL_IP, 26, "IP_RECVERR_RFC4884", Int, Early, V4),
    o(SOL_IP, 12, "IP_RECVTTL", Int, Early, V4),
    o(SOL_IP, 13, "IP_RECVTOS", Int, Early, V4),
    o(SOL_IP, 6, "IP_RECVOPTS", Int, Early, V4),
    o(SOL_IP, 7, "IP_RETOPTS", Int, Early, V4),
    o(SOL_IP, 20, "IP_RECVORIGDSTADDR", Int, Early, V4),
    o(SOL_IP, 25, "IP_RECVFRAGSIZE", Int, Early, V4),
    o(SOL_IP, 18, "IP_PASSSEC", Int, Early, V4),
    o(SOL_IP, 50, "IP_UNICAST_IF", Int, Early, V4),
    // the IP options sent with every packet (at most 40 bytes)
    o(SOL_IP, 4, "IP_OPTIONS", Upto(40), Early, V4),
    o(SOL_IP, 23, "IP_CHECKSUM", Int, Early, V4),
    o(SOL_IP, 32, "IP_MULTICAST_IF", Bytes(4), Early, V4Dgram),
    o(SOL_IP, 33, "IP_MULTICAST_TTL", Int, Early, V4Dgram),
    o(SOL_IP, 34, "IP_MULTICAST_LOOP", Int, Early, V4Dgram),
    o(SOL_IP, 49, "IP_MULTICAST_ALL", Int, Early, V4Dgram),
    o(SOL_RAW, 1, "ICMP_FILTER", Bytes(4), Early, RawIcmp),
    // IPv6
    o(SOL_IPV6, 26, "IPV6_V6ONLY", Int, Early, V6),
    o(SOL_IPV6, 78, "IPV6_FREEBIND", Int, Early, V6),
    o(SOL_IPV6, 75, "IPV6_TRANSPARENT", Int, Early, V6),
    o(SOL_IPV6, 16, "IPV6_UNICAST_HOPS", Int, Early, V6),
    o(SOL_IPV6, 67, "IPV6_TCLASS", Int, Early, V6),
    o(SOL_IPV6, 23, "IPV6_MTU_DISCOVER", Int, Early, V6),
    o(SOL_IPV6, 62, "IPV6_DONTFRAG", Int, Early, V6),
    o(SOL_IPV6, 70, "IPV6_AUTOFLOWLABEL", Int, Early, V6),
    o(SOL_IPV6, 49, "IPV6_RECVPKTINFO", Int, Early, V6),
    o(SOL_IPV6, 51, "IPV6_RECVHOPLIMIT", Int, Early, V6),
    o(SOL_IPV6, 66, "IPV6_RECVTCLASS", Int, Early, V6),
    o(SOL_IPV6, 25, "IPV6_RECVERR", Int, Early, V6),
    o(SOL_IPV6, 60, "IPV6_RECVPATHMTU", Int, Early, V6),
    o(SOL_IPV6, 74, "IPV6_RECVORIGDSTADDR", Int, Early, V6),
    o(SOL_IPV6, 56, "IPV6_RECVRTHDR", Int, Early, V6),
    o(SOL_IPV6, 53, "IPV6_RECVHOPOPTS", Int, Early, V6),
    o(SOL_IPV6, 58, "IPV6_RECVDSTOPTS", Int, Early, V6),
    o(SOL_IPV6, 77, "IPV6_RECVFRAGSIZE", Int, Early, V6),
    o(SOL_IPV6, 11, "IPV6_FLOWINFO", Int, Early, V6),
    o(SOL_IPV6, 33, "IPV6_FLOWINFO_SEND", Int, Early, V6),
    o(SOL_IPV6, 73, "IPV6_MINHOPCOUNT", Int, Early, V6),
    o(SOL_IPV6, 72, "IPV6_ADDR_PREFERENCES", Int, Early, V6),
    o(SOL_IPV6, 76, "IPV6_UNICAST_IF", Int, Early, V6),
    o(SOL_IPV6, 17, "IPV6_MULTICAST_IF", Int, Early, V6Dgram),
    o(SOL_IPV6, 18, "IPV6_MULTICAST_HOPS", Int, Early, V6Dgram),
    o(SOL_IPV6, 19, "IPV6_MULTICAST_LOOP", Int, Early, V6Dgram),
    o(SOL_IPV6, 29, "IPV6_MULTICAST_ALL", Int, Early, V6Dgram),
    o(SOL_ICMPV6, 1, "ICMP6_FILTER", Bytes(32), Early, RawIcmp6),
    // TCP
    o(SOL_TCP, 2, "TCP_MAXSEG", Int, Early, TcpUnconnected),
    o(SOL_TCP, 10, "TCP_WINDOW_CLAMP", Int, Early, TcpUnconnected),
    o(SOL_TCP, 13, "TCP_CONGESTION", Name(16), Early, Tcp),
    o(SOL_TCP, 1, "TCP_NODELAY", Int, Early, Tcp),
    o(SOL_TCP, 4, "TCP_KEEPIDLE", Int, Early, Tcp),
    o(SOL_TCP, 5, "TCP_KEEPINTVL", Int, Early, Tcp),
    o(SOL_TCP, 6, "TCP_KEEPCNT", Int, Early, Tcp),
    o(SOL_TCP, 7, "TCP_SYNCNT", Int, Early, Tcp),
    o(SOL_TCP, 8, "TCP_LINGER2", Int, Early, Tcp),
    o(SOL_TCP, 9, "TCP_DEFER_ACCEPT", Int, Early, Tcp),
    o(SOL_TCP, 16, "TCP_THIN_LINEAR_TIMEOUTS", Int, Early, Tcp),
    o(SOL_TCP, 18, "TCP_USER_TIMEOUT", Int, Early, Tcp),
    o(SOL_TCP, 23, "TCP_FASTOPEN", Int, Early, TcpUnconnected),
    o(SOL_TCP, 30, "TCP_FASTOPEN_CONNECT", Int, Early, TcpUnconnected),
    o(SOL_TCP, 25, "TCP_NOTSENT_LOWAT", Int, Early, Tcp),
    o(SOL_TCP, 37, "TCP_TX_DELAY", Int, Early, Tcp),
    o(SOL_TCP, 27, "TCP_SAVE_SYN", Int, Early, Tcp),
    o(SOL_TCP, 36, "TCP_INQ", Int, Early, Tcp),
    // Linux 6.15+ (elsewhere getsockopt fails and nothing is saved)
    o(SOL_TCP, 45, "TCP_RTO_MIN_US", Int, Early, Tcp),
    o(SOL_TCP, 46, "TCP_DELACK_MAX_US", Int, Early, Tcp),
    o(SOL_TCP, 3, "TCP_CORK", Int, Late, Tcp),
    // UDP, UDP-Lite
    o(SOL_UDP, 1, "UDP_CORK", Int, Late, Udp),
    o(SOL_UDP, 103, "UDP_SEGMENT", Int, Early, Udp),
    o(SOL_UDP, 104, "UDP_GRO", Int, Early, Udp),
    o(SOL_UDP, 101, "UDP_NO_CHECK6_TX", Int, Early, Udp),
    o(SOL_UDP, 102, "UDP_NO_CHECK6_RX", Int, Early, Udp),
    o(SOL_UDPLITE, 10, "UDPLITE_SEND_CSCOV", Int, Early, UdpLite),
    o(SOL_UDPLITE, 11, "UDPLITE_RECV_CSCOV", Int, Early, UdpLite),
];

/// The kind of socket an option is asked about.
#[derive(Clone, Copy, Debug)]
pub struct SockKind {
    pub family: i32,
    pub ty: i32,
    pub protocol: i32,
    pub connected: bool,
}

impl For {
    fn matches(self, k: &SockKind) -> bool {
        let tcp = k.protocol == libc::IPPROTO_TCP;
        let raw = k.ty == libc::SOCK_RAW;
        match self {
            Any => true,
            Ip => k.family == libc::AF_INET || k.family == libc::AF_INET6,
            Unix => k.family == libc::AF_UNIX,
            V4 => k.family == libc::AF_INET,
            V6 => k.family == libc::AF_INET6,
            V4Dgram => k.family == libc::AF_INET && !tcp,
            V6Dgram => k.family == libc::AF_INET6 && !tcp,
            Tcp => tcp,
            TcpUnconnected => tcp && !k.connected,
            Udp => k.protocol == libc::IPPROTO_UDP || k.protocol == libc::IPPROTO_UDPLITE,
            UdpLite => k.protocol == libc::IPPROTO_UDPLITE,
            RawV4 => raw && k.family == libc::AF_INET,
            RawIcmp => raw && k.family == libc::AF_INET && k.protocol == libc::IPPROTO_ICMP,
            RawIcmp6 => raw && k.family == libc::AF_INET6 && k.protocol == libc::IPPROTO_ICMPV6,
        }
    }
}

/// The table entry of (level, name) for sockets of kind `k`.
pub fn find(level: i32, name: i32, k: &SockKind) -> Option<&'static Opt> {
    TABLE.iter().find(|o| o.level == level && o.name == name && o.applies.matches(k))
}

/// The entry's label, or "level L option N" for one not in the table.
pub fn label(level: i32, name: i32) -> String {
    match TABLE.iter().find(|o| o.level == level && o.name == name) {
        Some(o) => o.label.to_string(),
        None => format!("level {level} option {name}"),
    }
}

/// getsockopt of one table option: its value bytes, None if this socket has no such
/// option (ENOPROTOOPT, EOPNOTSUPP...).
fn read(fd: BorrowedFd<'_>, o: &Opt) -> Option<Vec<u8>> {
    let r = match o.val {
        Int | Buf => sys::getsockopt_bytes(fd, o.level, o.name, 4),
        Bytes(n) | Name(n) | Upto(n) => sys::getsockopt_bytes(fd, o.level, o.name, n),
        Filter => sys::get_filter(fd),
    };
    let mut v = r.ok()?;
    match o.val {
        Int | Buf if v.len() != 4 => {
            // IP_MULTICAST_TTL/LOOP... answer one byte when asked for fewer than an int.
            if v.len() > 4 {
                return None;
            }
            v.resize(4, 0);
        }
        Name(_) => {
            let end = v.iter().position(|b| *b == 0).unwrap_or(v.len());
            v.truncate(end);
        }
        _ => {}
    }
    Some(v)
}

/// Dump: the options of `fd` that differ from those of `fresh`, a socket just created
/// with the same family, type and protocol (in the same network namespace), and their
/// COMPANIONS.
pub fn dump(fd: BorrowedFd<'_>, fresh: BorrowedFd<'_>, k: &SockKind) -> Result<Vec<SockOpt>, String> {
    let mut out: Vec<SockOpt> = Vec::new();
    for o in TABLE.iter().filter(|o| o.applies.matches(k)) {
        if matches!(o.val, Filter) && sys::get_filter(fd).is_err_and(|e| e.raw_os_error() == Some(libc::EACCES)) {
            // SO_GET_FILTER refuses a filter that has no classic form
            return Err("with an eBPF program as its filter (SO_ATTACH_BPF: the kernel cannot give the program back)".into());
        }
        let Some(v) = read(fd, o) else { continue };
        if (o.level, o.name) == (SOL_TCP, libc::TCP_MAXSEG) && !settable_mss(&v) {
            // a socket closed after a connection answers that connection's MSS, which
            // setsockopt would refuse (EINVAL): not a setting of the program's
            continue;
        }
        let companion = COMPANIONS
            .iter()
            .filter(|(c, _)| *c == (o.level, o.name))
            .any(|(_, of)| out.iter().any(|s| of.contains(&(s.level, s.name))))
            // a unix socket's restore always sets its buffer sizes (UnixObj rcvbuf,
            // sndbuf), which locks them: the lock is always saved
            || ((o.level, o.name) == (SOL_SOCKET, SO_BUF_LOCK) && k.family == libc::AF_UNIX);
        let keep = companion || read(fresh, o).as_deref() != Some(v.as_slice());
        if keep {
            tracing::debug!(option = o.label, value = ?v, "socket option saved");
            out.push(SockOpt { level: o.level, name: o.name, value: v });
        }
    }
    Ok(out)
}

/// A TCP_MAXSEG value setsockopt takes (TCP_MIN_MSS..=MAX_TCP_WINDOW), or 0.
fn settable_mss(v: &[u8]) -> bool {
    let mss = v.try_into().map(i32::from_ne_bytes).unwrap_or(-1);
    mss == 0 || (88..=32767).contains(&mss)
}

/// Validation of one saved option for a socket of kind `k`: it is in the table and its
/// value has the table's size. Err = why not.
pub fn check(s: &SockOpt, k: &SockKind) -> std::result::Result<(), String> {
    let o = find(s.level, s.name, k).ok_or_else(|| format!("{}: not an option stasis restores on this socket", label(s.level, s.name)))?;
    let n = s.value.len();
    let ok = match o.val {
        Int | Buf => n == 4,
        Bytes(len) => n == len,
        Name(max) => n < max && !s.value.contains(&0),
        Upto(max) => n <= max,
        Filter => n > 0 && n.is_multiple_of(sys::SOCK_FILTER_LEN) && n / sys::SOCK_FILTER_LEN <= sys::BPF_MAXINSNS,
    };
    if !ok {
        return Err(format!("{}: value of {n} bytes", o.label));
    }
    Ok(())
}

/// Validation of a socket's saved options: each `check`ed, none twice, no more than the
/// table has.
pub fn check_all(opts: &[SockOpt], k: &SockKind) -> std::result::Result<(), String> {
    if opts.len() > TABLE.len() {
        return Err(format!("{} socket options", opts.len()));
    }
    for (i, s) in opts.iter().enumerate() {
        check(s, k)?;
        if opts[..i].iter().any(|t| t.level == s.level && t.name == s.name) {
            return Err(format!("{} saved twice", label(s.level, s.name)));
        }
    }
    Ok(())
}

/// Restore: sets the saved options of phase `when`, in table order.
pub fn apply(fd: BorrowedFd<'_>, opts: &[SockOpt], k: &SockKind, when: When) -> std::result::Result<(), String> {
    for o in TABLE.iter().filter(|o| o.when == when) {
        let Some(s) = opts.iter().find(|s| s.level == o.level && s.name == o.name) else { continue };
        if !o.applies.matches(k) {
            continue; // validate refuses it; never reached
        }
        let r = match o.val {
            Int | Bytes(_) | Name(_) | Upto(_) => sys::setsockopt_bytes(fd, o.level, o.name, &s.value),
            Filter => sys::attach_filter(fd, &s.value),
            Buf => {
                let v = i32::from_le_bytes(s.value.as_slice().try_into().map_err(|_| format!("{}: not an int", o.label))?);
                let force = if o.name == SO_RCVBUF { SO_RCVBUFFORCE } else { SO_SNDBUFFORCE };
                sys::setsockopt_int(fd, o.level, force, v / 2)
            }
        };
        r.map_err(|e| format!("setsockopt {}: {e}", o.label))?;
    }
    Ok(())
}

/// Old images (InetObj.options, retired): (level, option, int value) triples.
pub fn from_triples(t: &[i32]) -> Vec<SockOpt> {
    t.chunks_exact(3).map(|t| SockOpt { level: t[0], name: t[1], value: t[2].to_le_bytes().to_vec() }).collect()
}
