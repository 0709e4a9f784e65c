//! Established TCP connections: saved and recreated with TCP_REPAIR (sequence numbers,
//! queued bytes both ways, MSS, window scaling, SACK, timestamps, window), and the TCP
//! states by name.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use stasis_image::model::{InetObj, TcpConn};
use stasis_sys::sys;

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const TCP_RECV_QUEUE: i32 = 1;
const TCP_SEND_QUEUE: i32 = 2;
/// Leave repair mode without sending a window probe (the connection never moved).
const TCP_REPAIR_OFF_NO_WP: i32 = -1;

pub const ESTABLISHED: u8 = 1;
pub const SYN_SENT: u8 = 2;
pub const FIN_WAIT1: u8 = 4;
pub const FIN_WAIT2: u8 = 5;
pub const TIME_WAIT: u8 = 6;
pub const CLOSE: u8 = 7;
pub const LISTEN: u8 = 10;

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

/// Our copies of the connections put in repair mode during this dump. Repair mode stays
/// on while the process is frozen; `release` turns it off if the process runs on, or
/// drops the copies after it was killed (a socket closed in repair mode goes away
/// silently: no FIN, no RST to the peer).
/// With each, its SO_REUSEADDR: leaving repair mode clears it (the kernel sets
/// SK_NO_REUSE), so it is set again.
static REPAIRED: Mutex<Vec<(OwnedFd, i32)>> = Mutex::new(Vec::new());

/// End of a dump: `resume` = the process runs on (leave-running or failed dump).
pub fn release(resume: bool) {
    let socks = std::mem::take(&mut *REPAIRED.lock().unwrap_or_else(|e| e.into_inner()));
    if resume {
        for (s, reuse) in &socks {
            let _ = sys::setsockopt_int(s.as_fd(), libc::IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP);
            if *reuse != 0 {
                let _ = sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, *reuse);
            }
        }
    }
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
fn recv_queue(fd: std::os::fd::BorrowedFd<'_>, unread: &dyn Fn() -> std::io::Result<u32>) -> std::io::Result<(u32, Vec<u8>)> {
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
        if total as usize != data.len() {
            return Err(urgent(format!("urgent data pending ({} of {total} unread bytes before the urgent mark)", data.len())));
        }
        // rcv_nxt is the sequence number after the queued bytes; restore queues them
        // again, which advances it: save the start.
        return Ok((seq.wrapping_sub(data.len() as u32), data));
    }
    Err(std::io::Error::other("the receive queue kept growing while it was read"))
}

/// Err of kind InvalidData: the connection cannot be saved (urgent data); its text says
/// why. `unread`: the kernel's count of unread bytes (inet_diag). `fin_sent`: the
/// connection was shut down for writing (its FIN follows the send queue).
pub fn dump(dup: &OwnedFd, unread: &dyn Fn() -> std::io::Result<u32>, fin_sent: bool) -> std::io::Result<TcpConn> {
    let fd = dup.as_fd();
    let reuse = sys::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR)?;
    let copy = dup.try_clone()?;
    sys::setsockopt_int(fd, libc::IPPROTO_TCP, TCP_REPAIR, 1)?;
    REPAIRED.lock().unwrap_or_else(|e| e.into_inner()).push((copy, reuse));
    let mut c = TcpConn::default();
    (c.recv_seq, c.recv_queue) = recv_queue(fd, unread)?;
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
        let w: Vec<u8> = c.window.iter().flat_map(|v| v.to_le_bytes()).collect();
        sys::setsockopt_bytes(fd, tcp, TCP_REPAIR_WINDOW, &w)?;
    }
    if o.shutdown & 2 != 0 {
        // Still in repair mode with the send queue selected: the FIN is queued after the
        // data and counted as sent, not transmitted (FIN_WAIT1; the peer's ACK of its
        // retransmission makes it FIN_WAIT2).
        sys::shutdown(fd, libc::SHUT_WR)?;
    }
    Ok(())
}

/// Sockets restored in repair mode, switched to normal operation once every socket of
/// the image exists (so no probe reaches a peer that is not back yet).
/// (socket, shutdown bits, SO_REUSEADDR value to set again)
type ToEnable = (OwnedFd, u32, Option<Vec<u8>>);
static TO_ENABLE: Mutex<Vec<ToEnable>> = Mutex::new(Vec::new());

/// Restore side: `s` leaves repair mode in `finish_restore`, then is shut down `how`
/// (InetObj.shutdown bits, 0 = not) and gets its saved SO_REUSEADDR `reuse` again
/// (leaving repair mode clears it).
pub fn enable_later(s: OwnedFd, shutdown: u32, reuse: Option<Vec<u8>>) {
    TO_ENABLE.lock().unwrap_or_else(|e| e.into_inner()).push((s, shutdown, reuse));
}

/// Restore side, after every socket was created: leave repair mode, then shut down what
/// the process had shut down.
pub fn finish_restore() -> std::io::Result<()> {
    for (s, shut, reuse) in std::mem::take(&mut *TO_ENABLE.lock().unwrap_or_else(|e| e.into_inner())) {
        sys::setsockopt_int(s.as_fd(), libc::IPPROTO_TCP, TCP_REPAIR, 0)?;
        if let Some(v) = reuse {
            sys::setsockopt_bytes(s.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, &v)?;
        }
        if shut & 1 != 0 {
            sys::shutdown(s.as_fd(), libc::SHUT_RD)?;
        }
    }
    Ok(())
}
