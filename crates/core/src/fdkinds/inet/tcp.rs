//! Established TCP connections: saved and recreated with TCP_REPAIR (sequence numbers,
//! queued bytes both ways, MSS, window scaling, SACK, timestamps, window), and the TCP
//! states by name. What TCP_REPAIR cannot queue — the peer's FIN, the received bytes
//! from an urgent byte on — is sent again as segments from the peer (`from_peer`).
//! The send side's urgent pointer (snd_up) is in no interface the dump can read: lost.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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

/// MSG_PEEK of the receive queue from `off` bytes past its start (the program's
/// SO_PEEK_OFF, which TCP has since Linux 6.10, is set to `off` for the peek and put
/// back). A peek stops at the urgent mark when it reaches it after a first byte; one
/// starting at the mark goes past it (skipping the urgent byte unless SO_OOBINLINE).
fn peek_recv_queue(fd: std::os::fd::BorrowedFd<'_>, off: usize, buf: &mut [u8]) -> std::io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    let old = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF).unwrap_or(-1);
    let off = i32::try_from(off).map_err(|_| std::io::Error::other("receive queue over 2 GiB"))?;
    if old > 0 || off > 0 {
        sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, off)?;
    }
    let r = sys::recv(fd, buf, libc::MSG_PEEK | libc::MSG_DONTWAIT);
    if old >= 0 || off > 0 {
        sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old)?;
    }
    r
}

fn seq_of(fd: std::os::fd::BorrowedFd<'_>, q: i32) -> std::io::Result<u32> {
    sys::setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR_QUEUE, q)?;
    Ok(sys::getsockopt_int(fd, libc::IPPROTO_TCP, TCP_QUEUE_SEQ)? as u32)
}

/// The urgent byte of a receive queue: its offset, and whether the program already read
/// it with recv(MSG_OOB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Urgent {
    pub at: usize,
    pub read: bool,
}

/// The unread bytes, the sequence number of the first, and the urgent byte among them.
/// `unread` reads the kernel's own count (inet_diag: rcv_nxt - copied_seq). The kernel
/// keeps an urgent byte in the receive queue (normal reads skip it unless SO_OOBINLINE),
/// and a peek stops at its mark: a peek shorter than `unread`, or SIOCATMARK at the
/// start, finds the mark; the bytes from it on are peeked from there (SO_PEEK_OFF), the
/// byte itself with recv(MSG_OOB | MSG_PEEK) — EINVAL: it was read already. An urgent
/// pointer beyond the received bytes (the byte not arrived) is not saved: the peer sends
/// it again with the byte. Bytes that arrive meanwhile (the peer runs on) move rcv_nxt:
/// read again.
fn recv_queue(fd: std::os::fd::BorrowedFd<'_>, unread: &dyn Fn() -> std::io::Result<u32>, fin: u32) -> std::io::Result<(u32, Vec<u8>, Option<Urgent>)> {
    for _ in 0..10 {
        let seq = seq_of(fd, TCP_RECV_QUEUE)?;
        // (a FIN received counts one in rcv_nxt and in inet_diag's count, no byte; once
        // the program has read the EOF it no longer counts: reading it again after the
        // restore gives the same EOF)
        let total = unread()?.saturating_sub(fin) as usize;
        if total > MAX_QUEUE {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{total} unread bytes (more than {MAX_QUEUE})")));
        }
        let atmark = sys::atmark(fd)?;
        let mut data = vec![0u8; total];
        let n = peek_recv_queue(fd, 0, &mut data)?;
        let mut urgent = None;
        let at = if atmark { 0 } else { n };
        if (n < total || atmark) && at < total {
            let inline = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_OOBINLINE)? != 0;
            let skip = usize::from(!inline);
            let got = peek_recv_queue(fd, at, &mut data[at + skip..])?;
            if at + skip + got != total {
                continue;
            }
            let mut read = false;
            if !inline {
                let mut b = [0u8; 1];
                match sys::recv(fd, &mut b, libc::MSG_OOB | libc::MSG_PEEK | libc::MSG_DONTWAIT) {
                    Ok(1) => data[at] = b[0],
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (read, data[at]) = (true, 0),
                    Ok(_) => return Err(std::io::Error::other("recv(MSG_OOB) returned no byte")),
                    Err(e) => return Err(std::io::Error::other(format!("the urgent byte at the mark: recv(MSG_OOB): {e}"))),
                }
            }
            urgent = Some(Urgent { at, read });
        } else {
            data.truncate(n);
        }
        if seq_of(fd, TCP_RECV_QUEUE)? != seq || unread()?.saturating_sub(fin) as usize != total {
            continue;
        }
        // rcv_nxt is the sequence number after the queued bytes; restore queues them
        // again, which advances it: save the start.
        return Ok((seq.wrapping_sub(data.len() as u32).wrapping_sub(fin), data, urgent));
    }
    Err(std::io::Error::other("the receive queue kept changing while it was read"))
}

/// The largest queue saved or restored (validation refuses more).
pub const MAX_QUEUE: usize = 1 << 30;

/// Err of kind InvalidData: the connection cannot be saved; its text says why.
/// `unread`: the kernel's count of unread bytes (inet_diag). `fin_sent`: the
/// connection was shut down for writing (its FIN follows the send queue);
/// `fin_received`: the peer's FIN follows the receive queue (CLOSE_WAIT).
pub fn dump(dup: &OwnedFd, unread: &dyn Fn() -> std::io::Result<u32>, fin_sent: bool, fin_received: bool) -> std::io::Result<TcpConn> {
    let fd = dup.as_fd();
    // repair mode with a snapshot of the options it changes (SO_REUSEADDR): put back
    // when the process runs on (crate::tcp_repair::release)
    crate::tcp_repair::enter_for_dump(fd)?;
    let mut c = TcpConn::default();
    let urgent;
    (c.recv_seq, c.recv_queue, urgent) = recv_queue(fd, unread, u32::from(fin_received))?;
    if let Some(u) = urgent {
        (c.urgent, c.urgent_at, c.urgent_read) = (true, u.at as u32, u.read);
    }
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
    // no handshake in repair mode
    sys::sock_addr_op(fd, &o.peer, true).map_err(|e| match e.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => std::io::Error::new(
            e.kind(),
            format!(
                "{e}: this connection still exists on the host (the original's socket after a --leave-running dump, \
                 closing with bytes its peer has not taken?): restore once it has ended, or with --tcp-close to have it back closed"
            ),
        ),
        _ => e,
    })?;
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
    // the receive queue up to an urgent byte; the rest comes as a segment from the
    // peer with the urgent pointer (`from_peer`)
    let repaired = &c.recv_queue[..repaired_len(c)];
    let buffers = Buffers::make_room(fd, repaired.len(), c.send_queue.len())?;
    for (q, data) in [(TCP_RECV_QUEUE, repaired), (TCP_SEND_QUEUE, &c.send_queue[..])] {
        sys::setsockopt_int(fd, tcp, TCP_REPAIR_QUEUE, q)?;
        let mut off = 0;
        while off < data.len() {
            // never blocking: a queue the buffer cannot take is an error, not a hang
            off += sys::send(fd, &data[off..], libc::MSG_DONTWAIT)?;
        }
    }
    buffers.put_back(fd)?;
    if c.window.len() == 5 {
        let mut win = c.window.clone();
        // rcv_wup may not be past rcv_nxt: a FIN received was counted in it, and is not
        // in the restored receive queue, nor are the bytes from an urgent byte on (they
        // come again after repair mode). The window grows by as much: its right edge,
        // up to which the peer's bytes are taken, stays where it was.
        let rcv_nxt = c.recv_seq.wrapping_add(repaired.len() as u32);
        let past = win[4].wrapping_sub(rcv_nxt) as i32;
        if past > 0 {
            (win[3], win[4]) = (win[3].saturating_add(past as u32), rcv_nxt);
        }
        let w: Vec<u8> = win.iter().flat_map(|v| v.to_le_bytes()).collect();
        sys::setsockopt_bytes(fd, tcp, TCP_REPAIR_WINDOW, &w)?;
    }
    if o.shutdown & 2 != 0 && o.tcp_state != u32::from(LAST_ACK) {
        // Still in repair mode with the send queue selected: the FIN is queued after the
        // data and counted as sent, not transmitted (FIN_WAIT1; the peer's ACK of its
        // retransmission makes it FIN_WAIT2). LAST_ACK sends its FIN only after the
        // peer's came again (`send_from_peer`): in the other order the connection would
        // become CLOSING and end in TIME_WAIT, holding the port.
        sys::shutdown(fd, libc::SHUT_WR)?;
    }
    Ok(())
}

/// A new socket's buffer sizes and their lock, as they were before `make_room` raised
/// them to take the saved queues.
struct Buffers {
    /// (SO_RCVBUFFORCE or SO_SNDBUFFORCE, the buffer's value before), for each one raised.
    raised: Vec<(i32, i32)>,
    lock: Option<i32>,
}

impl Buffers {
    /// A queue written in repair mode is charged to the socket's buffer like any data:
    /// the send queue waits for room (a fresh socket's few KB; the original's had grown
    /// by autotuning, e.g. nginx's 3 MB of a download), the receive queue fails. Each
    /// buffer smaller than twice its queue (the kernel counts packets' overhead, and
    /// doubles what is set) is raised to that, with the FORCE option (root may exceed
    /// the sysctl maxima).
    fn make_room(fd: BorrowedFd<'_>, recv: usize, send: usize) -> std::io::Result<Buffers> {
        use super::options::{SO_BUF_LOCK, SO_RCVBUFFORCE, SO_SNDBUFFORCE};
        let mut b = Buffers { raised: Vec::new(), lock: None };
        for (opt, force, len) in [(libc::SO_RCVBUF, SO_RCVBUFFORCE, recv), (libc::SO_SNDBUF, SO_SNDBUFFORCE, send)] {
            let need = len.saturating_mul(2).saturating_add(65536).min(i32::MAX as usize / 2) as i32;
            let now = sys::getsockopt_int(fd, libc::SOL_SOCKET, opt)?;
            if len == 0 || now >= need {
                continue;
            }
            if b.lock.is_none() {
                b.lock = sys::getsockopt_int(fd, libc::SOL_SOCKET, SO_BUF_LOCK).ok();
            }
            sys::setsockopt_int(fd, libc::SOL_SOCKET, force, need / 2)?;
            b.raised.push((force, now));
        }
        Ok(b)
    }

    /// The sizes and lock as before `make_room` (the saved options, set after the
    /// queues, then give the connection the original's): a smaller buffer than the
    /// queue it holds only makes writes wait, as on the original.
    fn put_back(self, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        use super::options::SO_BUF_LOCK;
        for &(force, was) in &self.raised {
            sys::setsockopt_int(fd, libc::SOL_SOCKET, force, was / 2)?;
        }
        if let Some(lock) = self.lock {
            sys::setsockopt_int(fd, libc::SOL_SOCKET, SO_BUF_LOCK, lock)?;
        }
        Ok(())
    }
}

/// How many bytes of the receive queue TCP_REPAIR queues: those before an urgent byte
/// (the kernel takes an urgent pointer only at or after rcv_nxt), else all.
fn repaired_len(c: &TcpConn) -> usize {
    if c.urgent {
        (c.urgent_at as usize).min(c.recv_queue.len())
    } else {
        c.recv_queue.len()
    }
}

/// A socket restored in repair mode, switched to normal operation once every socket of
/// the image exists (so no probe reaches a peer that is not back yet).
pub struct ToEnable {
    pub sock: OwnedFd,
    /// InetObj.shutdown bits: 1 = shut down for reading again (SHUT_RD).
    pub shutdown: u32,
    /// Its saved SO_REUSEADDR (leaving repair mode clears it).
    pub reuse: Option<Vec<u8>>,
    /// What the peer had sent that TCP_REPAIR cannot queue (`FromPeer`).
    pub from_peer: Option<FromPeer>,
}

/// What a restored connection had received that TCP_REPAIR cannot queue, to send it
/// again as packets from the peer once packets flow: the bytes from an urgent byte on
/// (the first segment with the urgent pointer) and the peer's FIN. A raw socket of the
/// socket's network namespace, where to send, and the TCP state the connection was in.
pub struct FromPeer {
    raw: OwnedFd,
    to: Vec<u8>,
    /// segments carrying the receive queue from its urgent byte on, and their bytes
    data: Vec<Vec<u8>>,
    data_len: usize,
    /// the program had read the urgent byte (recv(MSG_OOB)): read it again here
    urgent_read: bool,
    /// the peer's FIN (`fin_segment`)
    fin: Option<Vec<u8>>,
    state: u8,
}

static TO_ENABLE: Mutex<Vec<ToEnable>> = Mutex::new(Vec::new());

/// Restore side: `t.sock` leaves repair mode in `finish_restore`.
pub fn enable_later(t: ToEnable) {
    TO_ENABLE.lock().unwrap_or_else(|e| e.into_inner()).push(t);
}

fn state_of(fd: std::os::fd::BorrowedFd<'_>) -> u8 {
    sys::getsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 8).ok().and_then(|i| i.first().copied()).unwrap_or(0)
}

/// tcpi_bytes_received: every byte the connection took in sequence (rcv_nxt's moves).
fn bytes_received(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<u64> {
    let info = sys::getsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_INFO, 136)?;
    let b = info.get(128..136).ok_or_else(|| std::io::Error::other("tcp_info without tcpi_bytes_received"))?;
    Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

/// Restore side, after every socket was created: leave repair mode, then shut down what
/// the process had shut down. The bytes from an urgent byte on come next, before any
/// process runs (`deliver_data`; the image's network lock lets them through, see
/// `netlock::let_marked_through`; the socket has no owner yet, so no second SIGURG);
/// the peer's FIN, and anything not taken yet, later (`send_from_peer`, once the lock is
/// gone), and with them the shutdown for reading.
pub fn finish_restore() -> std::io::Result<()> {
    let mut later = Vec::new();
    for t in std::mem::take(&mut *TO_ENABLE.lock().unwrap_or_else(|e| e.into_inner())) {
        let s = t.sock.as_fd();
        sys::setsockopt_int(s, libc::IPPROTO_TCP, TCP_REPAIR, 0)?;
        if let Some(v) = t.reuse {
            sys::setsockopt_bytes(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, &v)?;
        }
        if let Some(p) = t.from_peer {
            later.push((t.sock, p, t.shutdown));
        } else if t.shutdown & 1 != 0 {
            sys::shutdown(s, libc::SHUT_RD)?;
        }
    }
    // every connection out of repair mode: the bytes from the urgent ones on
    for (sock, mut p, shutdown) in later {
        let s = sock.as_fd();
        if !p.data.is_empty() && deliver_data(s, &p, 40)? {
            p.data.clear();
        }
        if p.data.is_empty() && p.fin.is_none() {
            if shutdown & 1 != 0 {
                sys::shutdown(s, libc::SHUT_RD)?;
            }
            continue;
        }
        PENDING.lock().unwrap_or_else(|e| e.into_inner()).push((sock, p, shutdown));
    }
    Ok(())
}

/// Restore side: whether a connection of image `m` gets bytes as packets from the peer
/// (urgent data in its receive queue).
pub fn any_from_peer_data(m: &stasis_image::Manifest) -> bool {
    m.objects.iter().any(|o| matches!(&o.kind, Some(stasis_image::model::Kind::Inet(i)) if i.tcp.as_ref().is_some_and(|c| c.urgent)))
}

/// Sends `p.data` (the bytes from the urgent one on) to `s` and polls every 5 ms, up to
/// `tries` times, until the kernel took them all (tcpi_bytes_received); then reads an
/// urgent byte the program had read. Ok(false): not taken (dropped: the network lock;
/// a packet dropped on its way out fails with EPERM). Sent twice, they are taken once:
/// a segment before rcv_nxt is a duplicate, its urgent pointer ignored (tcp_check_urg).
fn deliver_data(s: std::os::fd::BorrowedFd<'_>, p: &FromPeer, tries: u32) -> std::io::Result<bool> {
    let want = bytes_received(s)? + p.data_len as u64;
    for seg in &p.data {
        match sys::sendto(p.raw.as_fd(), seg, &p.to) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Ok(false),
            r => r?,
        };
    }
    if !wait_for(tries, &|| Ok(bytes_received(s)? >= want))? {
        return Ok(false);
    }
    if p.urgent_read {
        let mut b = [0u8; 1];
        sys::recv(s, &mut b, libc::MSG_OOB | libc::MSG_DONTWAIT)?;
    }
    Ok(true)
}

/// Restored connections (our copy) with what the peer had sent to send again, and
/// their shutdown bits.
static PENDING: Mutex<Vec<(OwnedFd, FromPeer, u32)>> = Mutex::new(Vec::new());

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

/// Polls `done` every 5 ms, up to `tries` times: whether it came true.
fn wait_for(tries: u32, done: &dyn Fn() -> std::io::Result<bool>) -> std::io::Result<bool> {
    for _ in 0..tries {
        if done()? {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    done()
}

fn not_taken(s: std::os::fd::BorrowedFd<'_>, what: &str) -> std::io::Error {
    std::io::Error::other(format!("{what}: sent again, not taken (TCP state {})", state_name(state_of(s))))
}

/// End of a restore, packets flowing again (network lock removed): each restored
/// connection gets what it had not taken yet, as packets from the peer on a raw socket
/// of its namespace, each waited for (1 s) until the kernel took it: the bytes from an
/// urgent byte on if the lock kept them out before (the kernel sets the urgent mark and
/// byte, and signals SIGURG to the socket's owner, which is set by now: the program may
/// see a second SIGURG for the same byte), then the peer's FIN, after which a LAST_ACK
/// connection sends its own (shutdown for writing). A connection shut down for reading
/// is shut down again last.
pub fn send_from_peer() -> std::io::Result<()> {
    for (sock, p, shutdown) in std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner())) {
        let s = sock.as_fd();
        if !p.data.is_empty() && !deliver_data(s, &p, 200)? {
            return Err(not_taken(s, "the bytes from the urgent one on"));
        }
        if let Some(fin) = &p.fin {
            sys::sendto(p.raw.as_fd(), fin, &p.to)?;
            if !wait_for(200, &|| Ok(fin_taken(p.state, state_of(s))))? {
                return Err(not_taken(s, "the peer's FIN"));
            }
            if p.state == LAST_ACK {
                sys::shutdown(s, libc::SHUT_WR)?;
            }
        } else if shutdown & 1 != 0 {
            sys::shutdown(s, libc::SHUT_RD)?;
        }
    }
    Ok(())
}

/// Largest payload of one segment from the peer (an IP packet holds at most 64 KiB).
const SEGMENT: usize = 60000;

/// The kernel's reading of an urgent pointer: net.ipv4.tcp_stdurg of the current
/// network namespace (1: RFC 1122, it points at the urgent byte; 0, the default: BSD,
/// it points after it).
fn stdurg() -> bool {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_stdurg").map(|v| v.trim() == "1").unwrap_or(false)
}

/// Restore side, in the socket's network namespace: what connection `c` (TCP state
/// `state`) had received that TCP_REPAIR cannot queue, with the raw socket to send it
/// on; None if nothing.
pub fn from_peer(o: &InetObj, c: &TcpConn, state: u8) -> std::io::Result<Option<FromPeer>> {
    let fin = matches!(state, CLOSE_WAIT | LAST_ACK | CLOSING);
    let start = repaired_len(c);
    if !fin && start == c.recv_queue.len() {
        return Ok(None);
    }
    let (v4, family, to) = peer_route(o);
    let mut data = Vec::new();
    let urg_ptr = if stdurg() { 0 } else { 1 };
    for (i, chunk) in c.recv_queue[start..].chunks(SEGMENT).enumerate() {
        let seq = c.recv_seq.wrapping_add((start + i * SEGMENT) as u32);
        // the first carries the urgent byte first: URG|ACK|PSH, else ACK|PSH
        let (flags, urg) = if i == 0 { (0x38, urg_ptr) } else { (0x18, 0) };
        data.push(peer_segment(o, c, v4, seq, flags, urg, chunk));
    }
    let seq = c.recv_seq.wrapping_add(c.recv_queue.len() as u32);
    let fin = fin.then(|| peer_segment(o, c, v4, seq, 0x11, 0, &[])); // FIN|ACK
    let raw = sys::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW).map_err(|e| std::io::Error::other(format!("raw socket for the peer's packets: {e}")))?;
    // marked: the image's network lock lets them through (netlock::let_marked_through)
    sys::setsockopt_int(raw.as_fd(), libc::SOL_SOCKET, libc::SO_MARK, crate::netlock::FROM_PEER_MARK as i32)?;
    let data_len = c.recv_queue.len() - start;
    Ok(Some(FromPeer { raw, to, data, data_len, urgent_read: c.urgent && c.urgent_read, fin, state }))
}

/// Packets from the peer to us: IPv4 (an IPv6 socket talking to a v4-mapped peer
/// exchanges IPv4 packets) or IPv6, the family of the raw socket to send them on, and
/// where to send them.
fn peer_route(o: &InetObj) -> (bool, i32, Vec<u8>) {
    let v4 = o.family == libc::AF_INET || (super::rawpkt::mapped(&o.peer) && super::rawpkt::mapped(&o.local));
    let family = if v4 { libc::AF_INET } else { libc::AF_INET6 };
    let mut to = Vec::new();
    to.extend_from_slice(&(family as u16).to_ne_bytes());
    to.extend_from_slice(&[0, 0]); // port
    if v4 {
        to.extend_from_slice(addr_of(o, &o.local, true));
        to.resize(16, 0);
    } else {
        to.extend_from_slice(&[0; 4]);
        to.extend_from_slice(addr_of(o, &o.local, false));
        to.extend_from_slice(&o.local[24..28]); // scope id
    }
    (v4, family, to)
}

/// The IP address bytes of sockaddr `a` of socket `o` (`v4`: the IPv4 address, also of
/// a v4-mapped IPv6 one).
fn addr_of<'a>(o: &InetObj, a: &'a [u8], v4: bool) -> &'a [u8] {
    if o.family == libc::AF_INET {
        &a[4..8]
    } else if v4 {
        &a[20..24]
    } else {
        &a[8..24]
    }
}

/// A segment from the peer to us as an IP packet with its IPv4 (`v4`) or IPv6 header
/// (sent on an IPPROTO_RAW socket, which includes its own header and may name any
/// source): sequence number `seq`, TCP `flags`, urgent pointer `urg`, bytes `payload`.
/// Acknowledgment: the start of the restored send queue (snd_una, a duplicate ACK);
/// window: the peer's last one. No options (without a timestamp option the segment
/// skips the PAWS check).
fn peer_segment(o: &InetObj, c: &TcpConn, v4: bool, seq: u32, flags: u8, urg: u16, payload: &[u8]) -> Vec<u8> {
    let wnd = c.window.get(1).map(|w| (w >> c.snd_wscale.min(14)).min(65535)).unwrap_or(65535) as u16;
    let mut tcp = Vec::with_capacity(20 + payload.len());
    tcp.extend_from_slice(&o.peer[2..4]); // source port: the peer's
    tcp.extend_from_slice(&o.local[2..4]);
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&c.send_seq.to_be_bytes());
    tcp.extend_from_slice(&[5 << 4, flags]); // data offset 5 words
    tcp.extend_from_slice(&wnd.to_be_bytes());
    tcp.extend_from_slice(&[0, 0]); // checksum
    tcp.extend_from_slice(&urg.to_be_bytes());
    tcp.extend_from_slice(payload);
    super::rawpkt::ip_packet(v4, libc::IPPROTO_TCP as u8, addr_of(o, &o.peer, v4), addr_of(o, &o.local, v4), tcp, 16)
}
