//! Established TCP connections: saved and recreated with TCP_REPAIR (sequence numbers,
//! queued bytes both ways, MSS, window scaling, SACK, timestamps, window), and the TCP
//! states by name.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use stasis_image::model::{InetObj, TcpConn};
use stasis_sys::sys;

use crate::tcp_repair::TCP_REPAIR;

const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;

pub const ESTABLISHED: u8 = 1;
pub const SYN_SENT: u8 = 2;
pub const FIN_WAIT1: u8 = 4;
pub const FIN_WAIT2: u8 = 5;
pub const TIME_WAIT: u8 = 6;
pub const CLOSE: u8 = 7;
pub const CLOSE_WAIT: u8 = 8;
pub const LAST_ACK: u8 = 9;
pub const LISTEN: u8 = 10;
pub const CLOSING: u8 = 11;

/// The kernel's name of TCP state `s` (include/net/tcp_states.h).
pub fn state_name(s: u8) -> String {
    let n = match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        12 => "NEW_SYN_RECV",
        _ => return format!("state {s}"),
    };
    n.to_string()
}

/// MSG_PEEK of the whole receive queue from its start: a program's SO_PEEK_OFF (TCP has
/// one since Linux 6.10) is set to 0 for the peek and put back.
fn peek_recv_queue(fd: std::os::fd::BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<usize> {
    let old = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF).unwrap_or(-1);
    if old > 0 {
        sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)?;
    }
    let r = sys::recv(fd, buf, libc::MSG_PEEK | libc::MSG_DONTWAIT);
    if old >= 0 {
        sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    }
    r
}

fn seq_of(fd: std::os::fd::BorrowedFd<'_>, q: i32) -> std::io::Result<u32> {
    sys::setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, q)?;
    Ok(sys::getsockopt_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ)? as u32)
}

fn urgent(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why)
}

/// The unread bytes and the sequence number of the first. `unread` reads the kernel's
/// own count (inet_diag: rcv_nxt - copied_seq). FIONREAD and a peek both stop at an
/// urgent mark, so a queue holding urgent data reads shorter than `unread` says: refused
/// (TCP_REPAIR has no way to restore urgent data). Bytes that arrive meanwhile (the peer
/// runs on) move rcv_nxt: read again.
fn recv_queue(fd: std::os::fd::BorrowedFd<'_>, unread: &dyn Fn() -> std::io::Result<u32>, fin: u32) -> std::io::Result<(u32, Vec<u8>)> {
    for _ in 0..10 {
        let seq = seq_of(fd, TCP_RECV_QUEUE)?;
        let mut data = vec![0u8; sys::inq(fd)?.max(0) as usize];
        if !data.is_empty() {
            let n = peek_recv_queue(fd, &mut data)?;
            data.truncate(n);
        }
        let total = unread()?;
        if seq_of(fd, TCP_RECV_QUEUE)? != seq {
            continue;
        }
        // (a FIN received counts one in rcv_nxt and in inet_diag's count, no byte)
        let total = total.wrapping_sub(fin);
        if total as usize != data.len() {
            return Err(urgent(format!("urgent data pending ({} of {total} unread bytes before the urgent mark)", data.len())));
        }
        // rcv_nxt is the sequence number after the queued bytes; restore queues them
        // again, which advances it: save the start.
        return Ok((seq.wrapping_sub(data.len() as u32).wrapping_sub(fin), data));
    }
    Err(std::io::Error::other("the receive queue kept growing while it was read"))
}

/// Err of kind InvalidData: the connection cannot be saved (urgent data); its text says
/// why. `unread`: the kernel's count of unread bytes (inet_diag). `fin_sent`: the
/// connection was shut down for writing (its FIN follows the send queue);
/// `fin_received`: the peer's FIN follows the receive queue (CLOSE_WAIT).
pub fn dump(dup: &OwnedFd, unread: &dyn Fn() -> std::io::Result<u32>, fin_sent: bool, fin_received: bool) -> std::io::Result<TcpConn> {
    let fd = dup.as_fd();
    // repair mode with a snapshot of the options it changes (SO_REUSEADDR): put back
    // when the process runs on (crate::tcp_repair::release)
    crate::tcp_repair::enter_for_dump(fd)?;
    let mut c = TcpConn::default();
    (c.recv_seq, c.recv_queue) = recv_queue(fd, unread, u32::from(fin_received))?;
    // The send queue: write_seq is the sequence number after it. ACKs arriving meanwhile
    // only shorten it from the front: what is read ends at write_seq all the same.
    let seq = seq_of(fd, TCP_SEND_QUEUE)?;
    let mut data = vec![0u8; sys::outq(fd)?.max(0) as usize];
    if !data.is_empty() {
        let n = sys::recv(fd, &mut data, libc::MSG_PEEK | libc::MSG_DONTWAIT)?;
        data.truncate(n);
    }
    // write_seq counts the FIN (one sequence number, no byte): the data starts before.
    let fin = u32::from(fin_sent);
    (c.send_seq, c.send_queue) = (seq.wrapping_sub(data.len() as u32).wrapping_sub(fin), data);
    let info = sys::getsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 104)?;
    c.options = info.get(5).copied().unwrap_or(0) as u32;
    let ws = info.get(6).copied().unwrap_or(0);
    (c.snd_wscale, c.rcv_wscale) = ((ws & 0xf) as u32, (ws >> 4) as u32);
    c.mss = sys::getsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_MAXSEG)? as u32;
    c.timestamp = sys::getsockopt_int(fd, libc::IPPROTO_TCP, TCP_TIMESTAMP)? as u32;
    let w = sys::getsockopt_bytes(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, 20)?;
    c.window = w.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
    tracing::debug!(send_seq = c.send_seq, recv_seq = c.recv_seq, sendq = c.send_queue.len(), recvq = c.recv_queue.len(), mss = c.mss, options = c.options, "TCP connection saved");
    Ok(c)
}

pub fn restore(s: &OwnedFd, o: &InetObj, c: &TcpConn) -> std::io::Result<()> {
    let fd = s.as_fd();
    let tcp = libc::IPPROTO_TCP;
    sys::setsockopt_int(fd, tcp, TCP_REPAIR, 1)?;
    for (q, seq) in [(TCP_SEND_QUEUE, c.send_seq), (TCP_RECV_QUEUE, c.recv_seq)] {
        sys::setsockopt_int(fd, tcp, TCP_REPAIR_QUEUE, q)?;
        sys::setsockopt_int(fd, tcp, TCP_QUEUE_SEQ, seq as i32)?;
    }
    let local = super::bind_addr(fd, o);
    sys::sock_addr_op(fd, &local, false)?; // repair mode forces address reuse
    sys::sock_addr_op(fd, &o.peer, true)?; // no handshake in repair mode
    super::check_local(fd, o)?;
    let mut opts: Vec<u8> = Vec::new();
    let mut opt = |code: u32, val: u32| {
        opts.extend_from_slice(&code.to_le_bytes());
        opts.extend_from_slice(&val.to_le_bytes());
    };
    opt(2, c.mss); // TCPOPT_MAXSEG
    if c.options & 4 != 0 {
        opt(3, c.snd_wscale | (c.rcv_wscale << 16)); // TCPOPT_WINDOW
    }
    if c.options & 2 != 0 {
        opt(4, 0); // TCPOPT_SACK_PERM
    }
    if c.options & 1 != 0 {
        opt(8, 0); // TCPOPT_TIMESTAMP
    }
    sys::setsockopt_bytes(fd, tcp, TCP_REPAIR_OPTIONS, &opts)?;
    if c.options & 1 != 0 {
        sys::setsockopt_int(fd, tcp, TCP_TIMESTAMP, c.timestamp as i32)?;
    }
    for (q, data) in [(TCP_RECV_QUEUE, &c.recv_queue), (TCP_SEND_QUEUE, &c.send_queue)] {
        sys::setsockopt_int(fd, tcp, TCP_REPAIR_QUEUE, q)?;
        let mut off = 0;
        while off < data.len() {
            off += sys::send(fd, &data[off..], 0)?;
        }
    }
    if c.window.len() == 5 {
        let mut win = c.window.clone();
        // rcv_wup may not be past rcv_nxt: a FIN received was counted in it, and is not
        // in the restored receive queue (it comes again after repair mode)
        let rcv_nxt = c.recv_seq.wrapping_add(c.recv_queue.len() as u32);
        if (win[4].wrapping_sub(rcv_nxt) as i32) > 0 {
            win[4] = rcv_nxt;
        }
        let w: Vec<u8> = win.iter().flat_map(|v| v.to_le_bytes()).collect();
        sys::setsockopt_bytes(fd, tcp, TCP_REPAIR_WINDOW, &w)?;
    }
    if o.shutdown & 2 != 0 && o.tcp_state != u32::from(LAST_ACK) {
        // Still in repair mode with the send queue selected: the FIN is queued after the
        // data and counted as sent, not transmitted (FIN_WAIT1; the peer's ACK of its
        // retransmission makes it FIN_WAIT2). LAST_ACK sends its FIN only after the
        // peer's came again (`send_peer_fins`): in the other order the connection would
        // become CLOSING and end in TIME_WAIT, holding the port.
        sys::shutdown(fd, libc::SHUT_WR)?;
    }
    Ok(())
}

/// A socket restored in repair mode, switched to normal operation once every socket of
/// the image exists (so no probe reaches a peer that is not back yet).
pub struct ToEnable {
    pub sock: OwnedFd,
    /// InetObj.shutdown bits: 1 = shut down for reading again (SHUT_RD).
    pub shutdown: u32,
    /// Its saved SO_REUSEADDR (leaving repair mode clears it).
    pub reuse: Option<Vec<u8>>,
    /// CLOSE_WAIT, LAST_ACK, CLOSING: the peer's FIN to send again (`PeerFin`).
    pub fin: Option<PeerFin>,
}

/// The FIN a restored connection had received, to send it again once packets flow: a
/// raw socket of the socket's network namespace, the packet (`peer_fin`), where to send
/// it, and the TCP state the connection was in (CLOSE_WAIT, LAST_ACK or CLOSING).
pub struct PeerFin {
    pub raw: OwnedFd,
    pub packet: Vec<u8>,
    pub to: Vec<u8>,
    pub state: u8,
}

static TO_ENABLE: Mutex<Vec<ToEnable>> = Mutex::new(Vec::new());

/// Restore side: `t.sock` leaves repair mode in `finish_restore`.
pub fn enable_later(t: ToEnable) {
    TO_ENABLE.lock().unwrap_or_else(|e| e.into_inner()).push(t);
}

fn state_of(fd: std::os::fd::BorrowedFd<'_>) -> u8 {
    sys::getsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 8).ok().and_then(|i| i.first().copied()).unwrap_or(0)
}

/// Restore side, after every socket was created: leave repair mode, then shut down what
/// the process had shut down. A connection that had received the peer's FIN gets it
/// again later (`send_peer_fins`, once the network lock is gone: it would drop the
/// packet).
pub fn finish_restore() -> std::io::Result<()> {
    for t in std::mem::take(&mut *TO_ENABLE.lock().unwrap_or_else(|e| e.into_inner())) {
        let s = t.sock.as_fd();
        sys::setsockopt_int(s, libc::IPPROTO_TCP, TCP_REPAIR, 0)?;
        if let Some(v) = t.reuse {
            sys::setsockopt_bytes(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, &v)?;
        }
        if let Some(fin) = t.fin {
            PENDING_FINS.lock().unwrap_or_else(|e| e.into_inner()).push((t.sock, fin));
        } else if t.shutdown & 1 != 0 {
            sys::shutdown(s, libc::SHUT_RD)?;
        }
    }
    Ok(())
}

/// Restored connections (our copy) with the peer's FIN to send again.
static PENDING_FINS: Mutex<Vec<(OwnedFd, PeerFin)>> = Mutex::new(Vec::new());

/// Whether a connection restored without the peer's FIN (state `now`) has taken it:
/// the state it goes to from the one it was restored in.
fn fin_taken(saved: u8, now: u8) -> bool {
    match saved {
        // restored ESTABLISHED; LAST_ACK shuts down for writing once it is CLOSE_WAIT
        CLOSE_WAIT | LAST_ACK => now != ESTABLISHED,
        // restored FIN_WAIT1: CLOSING, or TIME_WAIT (shown as CLOSE on a socket with an
        // fd) if our FIN's retransmission was acknowledged first
        _ => now != FIN_WAIT1 && now != FIN_WAIT2,
    }
}

/// End of a restore, packets flowing again (network lock removed): each restored
/// connection that had received the peer's FIN gets it again, as a packet from the peer
/// on a raw socket of its namespace, and is waited for (1 s) until the kernel took it;
/// a LAST_ACK connection then sends its own FIN (shutdown for writing).
pub fn send_peer_fins() -> std::io::Result<()> {
    for (sock, f) in std::mem::take(&mut *PENDING_FINS.lock().unwrap_or_else(|e| e.into_inner())) {
        let s = sock.as_fd();
        sys::sendto(f.raw.as_fd(), &f.packet, &f.to)?;
        let mut n = 0;
        while !fin_taken(f.state, state_of(s)) {
            if n == 200 {
                return Err(std::io::Error::other(format!(
                    "the peer's FIN, sent again, was not taken (TCP state {})",
                    state_name(state_of(s))
                )));
            }
            n += 1;
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        if f.state == LAST_ACK {
            sys::shutdown(s, libc::SHUT_WR)?;
        }
    }
    Ok(())
}

/// The FIN the peer had sent (CLOSE_WAIT), as an IP packet from the peer to us with its
/// IPv4 or IPv6 header (sent on an IPPROTO_RAW socket, which includes its own header and
/// may name any source). Sequence number: right after the restored receive queue; acknowledgment: the start of the restored send queue (snd_una, a
/// duplicate ACK); window: the peer's last one. No options (without a timestamp option
/// the segment skips the PAWS check).
/// An IPv6 socket talking to a v4-mapped peer exchanges IPv4 packets: the FIN is one.
/// Returns (the packet, the family of the raw socket to send it on, where to send it).
pub fn peer_fin(o: &InetObj, c: &TcpConn) -> (Vec<u8>, i32, Vec<u8>) {
    let v4 = o.family == libc::AF_INET || (super::rawpkt::mapped(&o.peer) && super::rawpkt::mapped(&o.local));
    let (src, dst) = if o.family == libc::AF_INET {
        (&o.peer[4..8], &o.local[4..8])
    } else if v4 {
        (&o.peer[20..24], &o.local[20..24])
    } else {
        (&o.peer[8..24], &o.local[8..24])
    };
    let seq = c.recv_seq.wrapping_add(c.recv_queue.len() as u32);
    let wnd = c.window.get(1).map(|w| (w >> c.snd_wscale.min(14)).min(65535)).unwrap_or(65535) as u16;
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&o.peer[2..4]); // source port: the peer's
    tcp.extend_from_slice(&o.local[2..4]);
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&c.send_seq.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, 0x11]); // data offset 5 words; FIN|ACK
    tcp.extend_from_slice(&wnd.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let p = super::rawpkt::ip_packet(v4, libc::IPPROTO_TCP as u8, src, dst, tcp, 16);
    let family = if v4 { libc::AF_INET } else { libc::AF_INET6 };
    let mut to = Vec::new();
    to.extend_from_slice(&(family as u16).to_ne_bytes());
    to.extend_from_slice(&[0, 0]); // port
    if v4 {
        to.extend_from_slice(dst);
        to.resize(16, 0);
    } else {
        to.extend_from_slice(&[0; 4]);
        to.extend_from_slice(dst);
        to.extend_from_slice(&o.local[24..28]); // scope id
    }
    (p, family, to)
}
