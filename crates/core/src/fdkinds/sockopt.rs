//! SOL_SOCKET state that netlink and packet sockets share (`SockCommon`): SO_RCVBUF and
//! SO_SNDBUF, a classic BPF filter (SO_GET_FILTER) and SO_LOCK_FILTER, and the integer
//! options of `OPTIONS` (udev's netlink socket, for one, has SO_PASSCRED and a filter).
//! An eBPF filter (SO_ATTACH_BPF) cannot be read back: refused.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use stasis_image::model::{ClassicBpfInsn, SockCommon};
use stasis_sys::sys::{self, netsock};

const SO_LOCK_FILTER: i32 = 44;

/// The integer SOL_SOCKET options kept, and whether each is a flag (0 or 1).
pub const OPTIONS: &[(i32, &str, bool)] = &[
    (libc::SO_PRIORITY, "SO_PRIORITY", false),
    (libc::SO_PASSCRED, "SO_PASSCRED", true),
    (libc::SO_RCVLOWAT, "SO_RCVLOWAT", false),
    (29, "SO_TIMESTAMP_OLD", true),
    (libc::SO_PASSSEC, "SO_PASSSEC", true),
    (35, "SO_TIMESTAMPNS_OLD", true),
    (libc::SO_MARK, "SO_MARK", false),
    (libc::SO_RXQ_OVFL, "SO_RXQ_OVFL", true),
    (libc::SO_BUSY_POLL, "SO_BUSY_POLL", false),
    (63, "SO_TIMESTAMP_NEW", true),
    (64, "SO_TIMESTAMPNS_NEW", true),
];

pub fn option_name(opt: i32) -> Option<&'static str> {
    OPTIONS.iter().find(|(o, ..)| *o == opt).map(|(_, n, _)| *n)
}

/// Why the dump side could not save the state.
pub enum DumpErr {
    /// Not supported: the rest of a refusal line.
    Refuse(String),
    /// A syscall failed: (what, error).
    Sys(String, std::io::Error),
}

/// Dump side.
pub fn dump(s: BorrowedFd<'_>) -> Result<SockCommon, DumpErr> {
    let get = |opt: i32, name: &str| sys::getsockopt_int(s, libc::SOL_SOCKET, opt).map_err(|e| DumpErr::Sys(name.to_string(), e));
    let prog = netsock::get_filter(s).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) => DumpErr::Refuse("with an eBPF socket filter (SO_ATTACH_BPF: cannot be read back)".into()),
        _ => DumpErr::Sys("SO_GET_FILTER".into(), e),
    })?;
    let mut c = SockCommon {
        rcvbuf: get(libc::SO_RCVBUF, "SO_RCVBUF")? as u32,
        sndbuf: get(libc::SO_SNDBUF, "SO_SNDBUF")? as u32,
        filter: prog.iter().map(|i| ClassicBpfInsn { code: u32::from(i.code), jt: u32::from(i.jt), jf: u32::from(i.jf), k: i.k }).collect(),
        filter_locked: get(SO_LOCK_FILTER, "SO_LOCK_FILTER")? != 0,
        options: Vec::new(),
    };
    for &(opt, name, _) in OPTIONS {
        let v = match sys::getsockopt_int(s, libc::SOL_SOCKET, opt) {
            Ok(v) => v,
            // not an option of this family (SO_PASSCRED of a packet socket)
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT)) => 0,
            Err(e) => return Err(DumpErr::Sys(name.to_string(), e)),
        };
        if v != 0 {
            c.options.extend_from_slice(&[opt, v]);
        }
    }
    Ok(c)
}

/// Sets SO_RCVBUF or SO_SNDBUF (`opt`) so that it reads back as `saved` (the kernel
/// doubles what it is given). Plain setsockopt: capped by net.core.rmem_max/wmem_max like
/// any process's; a value above the cap (SO_RCVBUFFORCE) fails the restore rather than
/// come back smaller.
fn restore_buf(s: &OwnedFd, opt: i32, saved: u32) -> Result<(), String> {
    let name = if opt == libc::SO_RCVBUF { "SO_RCVBUF" } else { "SO_SNDBUF" };
    let now = sys::getsockopt_int(s.as_fd(), libc::SOL_SOCKET, opt).map_err(|e| format!("{name}: {e}"))?;
    if saved == 0 || now as u32 == saved {
        return Ok(());
    }
    sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, opt, (saved / 2) as i32).map_err(|e| format!("setting {name}: {e}"))?;
    let got = sys::getsockopt_int(s.as_fd(), libc::SOL_SOCKET, opt).map_err(|e| format!("{name}: {e}"))?;
    if got as u32 != saved {
        let max = if opt == libc::SO_RCVBUF { "rmem_max" } else { "wmem_max" };
        return Err(format!("{name} was {saved}, this host gives {got} (above net.core.{max}?)"));
    }
    Ok(())
}

/// Restore side: options, buffer sizes, the filter; then `drain` (what arrived before the
/// filter); then the filter lock (last: a locked filter cannot change).
pub fn restore(s: &OwnedFd, c: &SockCommon, drain: impl FnOnce()) -> Result<(), String> {
    for p in c.options.chunks_exact(2) {
        let (opt, v) = (p[0], p[1]);
        let name = option_name(opt).unwrap_or("?");
        let now = sys::getsockopt_int(s.as_fd(), libc::SOL_SOCKET, opt).map_err(|e| format!("{name}: {e}"))?;
        if now != v {
            sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, opt, v).map_err(|e| format!("setting {name} to {v}: {e}"))?;
        }
    }
    restore_buf(s, libc::SO_RCVBUF, c.rcvbuf)?;
    restore_buf(s, libc::SO_SNDBUF, c.sndbuf)?;
    if !c.filter.is_empty() {
        let prog: Vec<netsock::SockFilter> =
            c.filter.iter().map(|i| netsock::SockFilter { code: i.code as u16, jt: i.jt as u8, jf: i.jf as u8, k: i.k }).collect();
        netsock::attach_filter(s.as_fd(), &prog).map_err(|e| format!("SO_ATTACH_FILTER ({} instructions): {e}", prog.len()))?;
    }
    drain();
    if c.filter_locked {
        sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, SO_LOCK_FILTER, 1).map_err(|e| format!("SO_LOCK_FILTER: {e}"))?;
    }
    Ok(())
}

/// For `stasis inspect`: `, filter of 8 instructions (locked), SO_PASSCRED 1, rcvbuf N sndbuf M`.
pub fn describe(c: &SockCommon) -> String {
    let mut s = String::new();
    if !c.filter.is_empty() {
        s += &format!(", filter of {} instructions{}", c.filter.len(), if c.filter_locked { " (locked)" } else { "" });
    }
    for p in c.options.chunks_exact(2) {
        s += &format!(", {} {}", option_name(p[0]).unwrap_or("?"), p[1]);
    }
    s + &format!(", rcvbuf {} sndbuf {}", c.rcvbuf, c.sndbuf)
}
