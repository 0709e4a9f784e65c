//! `stasis inspect DIR [--json]`: what an image holds.
//!
//! Text output is for people: signals, flags, clocks, capabilities, syscalls and
//! protections by name, unix addresses through `addr_display`, one section per process
//! of the tree (threads, memory, fds, credentials, attributes, signals, timers). The
//! JSON keeps the numbers (with `*_names` strings beside them) and gives each entry
//! of `processes` the same sections; its top-level `threads`, `vmas` and `fds` are the
//! root's.

use std::path::Path;

use serde_json::{json, Value};
use stasis_core::fdkinds::{open_flags, unix::addr_display};
use stasis_image::model::*;

fn kind_name(k: i32) -> &'static str {
    match VmaKind::try_from(k).unwrap_or(VmaKind::Unknown) {
        VmaKind::Anon => "anon",
        VmaKind::FilePrivate => "file-private",
        VmaKind::FileShared => "file-shared",
        VmaKind::ShmemAnon => "shmem",
        VmaKind::Vdso => "vdso",
        VmaKind::Vvar => "vvar",
        VmaKind::VvarVclock => "vvar_vclock",
        VmaKind::Vsyscall => "vsyscall",
        VmaKind::SysvShm => "sysv-shm",
        VmaKind::AioRing => "aio-ring",
        VmaKind::PacketRing => "packet-ring",
        VmaKind::Unknown => "unknown",
    }
}

fn prot(p: u32) -> String {
    let f = |b: i32, c: char| if p & b as u32 != 0 { c } else { '-' };
    format!("{}{}{}", f(libc::PROT_READ, 'r'), f(libc::PROT_WRITE, 'w'), f(libc::PROT_EXEC, 'x'))
}

/// maps-style protection: `r-xp`, `rw-s`.
fn prot4(v: &Vma) -> String {
    format!("{}{}", prot(v.prot), if v.shared { 's' } else { 'p' })
}

/// First real-time signal as glibc (and `kill -l`) numbers them: 32 and 33 are
/// glibc's own.
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

/// A signal by name: `SIGUSR1`, `SIGRTMIN+3`, `SIGRTMAX`; `SIG32` without one.
pub fn sig_name(s: i32) -> String {
    const STD: [&str; 31] = [
        "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV",
        "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN",
        "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];
    match s {
        1..=31 => STD[s as usize - 1].to_string(),
        SIGRTMIN => "SIGRTMIN".into(),
        SIGRTMAX => "SIGRTMAX".into(),
        35..=63 => format!("SIGRTMIN+{}", s - SIGRTMIN),
        // 32 and 33: glibc's internal signals (thread cancellation, setxid)
        _ => format!("SIG{s}"),
    }
}

fn sig_list(sigs: impl IntoIterator<Item = i32>) -> String {
    let v: Vec<String> = sigs.into_iter().map(sig_name).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A signal set (bit n-1 = signal n): the names, or `all but ...` when most are set.
fn sigset(mask: u64) -> String {
    let set: Vec<i32> = (1..=64).filter(|s| mask & (1u64 << (s - 1)) != 0).collect();
    if set.len() > 32 {
        // SIGKILL and SIGSTOP cannot be blocked: not worth naming as missing.
        let unset = (1..=64).filter(|s| mask & (1u64 << (s - 1)) == 0 && *s != libc::SIGKILL && *s != libc::SIGSTOP);
        let u: Vec<i32> = unset.collect();
        if u.is_empty() {
            "all".into()
        } else {
            format!("all but {}", sig_list(u))
        }
    } else {
        sig_list(set)
    }
}

fn clock_name(c: i32) -> String {
    match c {
        0 => "CLOCK_REALTIME",
        1 => "CLOCK_MONOTONIC",
        2 => "CLOCK_PROCESS_CPUTIME_ID",
        3 => "CLOCK_THREAD_CPUTIME_ID",
        4 => "CLOCK_MONOTONIC_RAW",
        5 => "CLOCK_REALTIME_COARSE",
        6 => "CLOCK_MONOTONIC_COARSE",
        7 => "CLOCK_BOOTTIME",
        8 => "CLOCK_REALTIME_ALARM",
        9 => "CLOCK_BOOTTIME_ALARM",
        11 => "CLOCK_TAI",
        _ => return format!("clock {c}"),
    }
    .into()
}

/// The syscall a thread was stopped in (x86_64 numbers; the common blocking ones).
fn syscall_name(nr: i64) -> String {
    let n = match nr {
        n if n < 0 => return "not in a syscall".into(),
        0 => "read",
        1 => "write",
        7 => "poll",
        17 => "pread64",
        19 => "readv",
        20 => "writev",
        23 => "select",
        24 => "sched_yield",
        34 => "pause",
        35 => "nanosleep",
        43 => "accept",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        61 => "wait4",
        72 => "fcntl",
        101 => "ptrace",
        128 => "rt_sigtimedwait",
        130 => "rt_sigsuspend",
        202 => "futex",
        219 => "restart_syscall",
        230 => "clock_nanosleep",
        232 => "epoll_wait",
        247 => "waitid",
        270 => "pselect6",
        271 => "ppoll",
        281 => "epoll_pwait",
        288 => "accept4",
        299 => "recvmmsg",
        441 => "epoll_pwait2",
        n => return format!("syscall {n}"),
    };
    format!("in {n}")
}

/// Capability sets: `none`, `all`, names, or `all but ...`.
fn caps(mask: u64) -> String {
    const NAMES: [&str; 41] = [
        "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
        "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
        "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
        "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
        "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
        "checkpoint_restore",
    ];
    let known = (1u64 << NAMES.len()) - 1;
    let name = |i: usize| NAMES.get(i).map(|s| s.to_string()).unwrap_or_else(|| format!("cap{i}"));
    let set: Vec<usize> = (0..64).filter(|i| mask & (1u64 << i) != 0).collect();
    if mask == 0 {
        "none".into()
    } else if mask & known == known {
        let extra: Vec<String> = set.into_iter().filter(|i| *i >= NAMES.len()).map(name).collect();
        if extra.is_empty() {
            "all".into()
        } else {
            format!("all, {}", extra.join(","))
        }
    } else if set.len() > NAMES.len() / 2 {
        let missing: Vec<String> = (0..NAMES.len()).filter(|i| mask & (1u64 << i) == 0).map(name).collect();
        format!("all but {}", missing.join(","))
    } else {
        set.into_iter().map(name).collect::<Vec<_>>().join(",")
    }
}

fn personality_name(p: u32) -> String {
    const FLAGS: &[(u32, &str)] = &[
        (0x0020000, "UNAME26"),
        (0x0040000, "ADDR_NO_RANDOMIZE"),
        (0x0080000, "FDPIC_FUNCPTRS"),
        (0x0100000, "MMAP_PAGE_ZERO"),
        (0x0200000, "ADDR_COMPAT_LAYOUT"),
        (0x0400000, "READ_IMPLIES_EXEC"),
        (0x0800000, "ADDR_LIMIT_32BIT"),
        (0x1000000, "SHORT_INODE"),
        (0x2000000, "WHOLE_SECONDS"),
        (0x4000000, "STICKY_TIMEOUTS"),
        (0x8000000, "ADDR_LIMIT_3GB"),
    ];
    let mut parts = vec![match p & 0xff {
        0 => "PER_LINUX".to_string(),
        d => format!("execution domain {d:#x}"),
    }];
    let mut rest = p & !0xff;
    for &(b, n) in FLAGS {
        if rest & b != 0 {
            parts.push(n.into());
            rest &= !b;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

/// A duration for people: `0`, `250ms`, `1.5s`, `3µs`.
fn dur_ns(ns: u64) -> String {
    if ns == 0 {
        "0".into()
    } else if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns >= 1_000_000_000 {
        format!("{:.3}s", ns as f64 / 1e9)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns >= 1_000_000 {
        format!("{:.3}ms", ns as f64 / 1e6)
    } else if ns.is_multiple_of(1000) {
        format!("{}µs", ns / 1000)
    } else {
        format!("{ns}ns")
    }
}

/// Next expiry and period: `disarmed`, `in 1s`, `in 1s every 500ms`.
fn timer_text(value_ns: u64, interval_ns: u64) -> String {
    match (value_ns, interval_ns) {
        (0, _) => "disarmed".into(),
        (v, 0) => format!("in {}", dur_ns(v)),
        (v, i) => format!("in {} every {}", dur_ns(v), dur_ns(i)),
    }
}

/// A size for people: `4K`, `132K`, `8M`, `1.5G`.
fn size_text(bytes: u64) -> String {
    const K: u64 = 1024;
    if bytes < K {
        format!("{bytes}B")
    } else if bytes < K * K || !bytes.is_multiple_of(K * K) && bytes < 10 * K * K {
        format!("{}K", bytes / K)
    } else if bytes < K * K * K {
        format!("{}M", bytes / (K * K))
    } else {
        format!("{:.1}G", bytes as f64 / (K * K * K) as f64)
    }
}

/// A wait status: `exited 7`, `killed by SIGKILL (core dumped)`.
fn wait_status(st: i32) -> String {
    if st & 0x7f == 0 {
        format!("exited {}", (st >> 8) & 0xff)
    } else {
        format!("killed by {}{}", sig_name(st & 0x7f), if st & 0x80 != 0 { " (core dumped)" } else { "" })
    }
}

/// A raw sockaddr (AF_INET / AF_INET6) as `127.0.0.1:80`, `[::1]:80` ("" if empty).
fn sockaddr_text(a: &[u8]) -> String {
    if a.len() < 4 {
        return String::new();
    }
    let family = u16::from_ne_bytes([a[0], a[1]]) as i32;
    let port = u16::from_be_bytes([a[2], a[3]]);
    if family == libc::AF_INET && a.len() >= 8 {
        format!("{}:{port}", std::net::Ipv4Addr::new(a[4], a[5], a[6], a[7]))
    } else if family == libc::AF_INET6 && a.len() >= 24 {
        let b: [u8; 16] = a[8..24].try_into().unwrap();
        format!("[{}]:{port}", std::net::Ipv6Addr::from(b))
    } else {
        format!("family {family} port {port}")
    }
}

/// The `--external` name of the shared memory a VMA maps ("" if none).
fn vma_external(m: &stasis_image::Manifest, v: &Vma) -> String {
    let ghost = m.object(v.object_id).and_then(|o| o.mapped_file()).and_then(|f| m.object(f.ghost_id));
    ghost.and_then(|o| o.ghost()).map(|g| g.external.clone()).unwrap_or_default()
}

/// File status flags of a description: number (octal, as before) and names.
fn flags_json(d: &mut Value, flags: u32) {
    d["flags"] = json!(format!("{:#o}", flags));
    d["flags_names"] = json!(open_flags(flags));
}

/// Flags of a socket, which has no access mode in the image: only the status flags
/// (`O_NONBLOCK`), "" when none.
fn sock_flags_json(d: &mut Value, flags: u32) {
    d["flags"] = json!(format!("{:#o}", flags));
    let rest = flags & !(libc::O_ACCMODE as u32);
    d["flags_names"] = json!(if rest == 0 { String::new() } else { open_flags(rest).trim_start_matches("O_RDONLY|").to_string() });
}

fn object_desc(m: &stasis_image::Manifest, id: u32) -> Value {
    let Some(o) = m.object(id) else { return json!({"kind": "missing", "id": id}) };
    // eventfd, timerfd, signalfd, epoll, inotify: fdkinds describes them
    let anon = |flags: u32, signals: Option<u64>| {
        let (kind, what) = stasis_core::fdkinds::describe(o).unwrap_or(("other", String::new()));
        let mut d = json!({"kind": kind, "id": id, "state": what});
        flags_json(&mut d, flags);
        if let Some(mask) = signals {
            d["signals"] = json!(sigset(mask));
        }
        d
    };
    let mut d = match &o.kind {
        Some(Kind::File(f)) => {
            let ghost = m.object(f.ghost_id).and_then(|o| o.ghost());
            let kind = match ghost {
                Some(g) if !g.memfd_name.is_empty() => "memfd",
                Some(g) if g.mode & libc::S_IFMT == libc::S_IFDIR => "deleted-directory",
                Some(g) if g.mode & libc::S_IFMT == libc::S_IFCHR => "deleted-device",
                Some(_) => "deleted-file",
                None => "file",
            };
            // a paged ghost's content: the bytes its page runs store (holes are not)
            let stored = |g: &stasis_image::model::GhostObj| match g.paged {
                true => m.index.runs.iter().filter(|r| r.object_id == f.ghost_id).map(|r| u64::from(r.count) * 4096).sum::<u64>().min(g.size),
                false => g.content.len() as u64,
            };
            let mut d = json!({"kind": kind, "id": id, "path": f.path, "pos": f.pos,
                   "size": ghost.map(|g| if g.paged { g.size } else { g.content.len() as u64 }).unwrap_or(0),
                   "content_bytes": ghost.map(stored).unwrap_or(0),
                   "external": ghost.map(|g| g.external.clone()).unwrap_or_default()});
            flags_json(&mut d, f.flags);
            d
        }
        Some(Kind::PipeEnd(e)) => {
            let p = m.object(e.pipe_id).and_then(|o| o.pipe().cloned()).unwrap_or_default();
            let mut d = json!({"kind": if e.write_end {"pipe-write"} else {"pipe-read"}, "id": id, "pipe": e.pipe_id,
                   "buffered_bytes": p.data.len(), "packets": p.packets, "capacity": p.capacity, "external": p.external});
            flags_json(&mut d, e.flags);
            d
        }
        Some(Kind::FifoFd(ff)) => {
            let f = m.object(ff.fifo_id).and_then(|o| o.fifo().cloned()).unwrap_or_default();
            let mode = match ff.flags & libc::O_ACCMODE as u32 {
                0 => "r",
                1 => "w",
                _ => "rw",
            };
            let mut d = json!({"kind": "fifo", "id": id, "fifo": ff.fifo_id, "path": f.path, "mode": mode,
                   "buffered_bytes": f.data.len(), "capacity": f.capacity, "external": f.external});
            flags_json(&mut d, ff.flags);
            d
        }
        Some(Kind::TtyFd(f)) => {
            let t = m.object(f.tty_id).and_then(|o| o.tty().cloned()).unwrap_or_default();
            let side = match f.side {
                stasis_core::tty::MASTER => "master",
                stasis_core::tty::SLAVE => "slave",
                _ => "/dev/tty",
            };
            let state = if t.external {
                format!("{side} of the terminal outside the tree {} (shell job)", t.path)
            } else {
                let mut st = format!("{side} of {} (pty object {}), {}x{}", t.path, f.tty_id, t.rows, t.cols);
                for (on, what) in [(t.lflag & libc::ICANON != 0, "canonical"), (t.lflag & libc::ECHO != 0, "echo"), (t.packet, "packet mode"), (t.locked, "locked"), (t.exclusive, "exclusive")] {
                    if on {
                        st += &format!(", {what}");
                    }
                }
                st += &format!(", {} bytes for the master, {} for the slave", t.master_data.len(), t.slave_data.len());
                if t.session != 0 {
                    st += &format!(", terminal of session {} (foreground group {})", t.session, t.fg_pgrp);
                }
                st
            };
            let mut d = json!({"kind": "tty", "id": id, "tty": f.tty_id, "side": side, "path": t.path, "external": t.external, "state": state,
                   "rows": t.rows, "cols": t.cols, "packet": t.packet, "locked": t.locked, "exclusive": t.exclusive,
                   "lflag": format!("{:#o}", t.lflag), "master_queued": t.master_data.len(), "slave_queued": t.slave_data.len(),
                   "session": t.session, "foreground": t.fg_pgrp});
            flags_json(&mut d, f.flags);
            d
        }
        Some(Kind::Unix(u)) => {
            let ty = stasis_core::fdkinds::unix::type_name(u.sock_type);
            let mut d = if u.peer_ino != 0 || u.peer_gone {
                json!({"kind": "unix-pair", "id": id, "type": ty, "inode": u.ino, "peer_inode": u.peer_ino,
                       "name": addr_display(&u.name), "peer_name": addr_display(&u.peer_name), "peer_gone": u.peer_gone,
                       "queued_bytes": u.queue.len(), "queued_messages": u.messages.len(), "shutdown": u.shutdown,
                       "external": u.external, "net_ns": o.net_ns})
            } else {
                json!({"kind": "unix-bound", "id": id, "type": ty, "name": addr_display(&u.name),
                       "listening": u.listening, "backlog": u.backlog, "queued_messages": u.messages.len(), "net_ns": o.net_ns})
            };
            d["in_flight"] = json!(u
                .in_flight
                .iter()
                .map(|f| json!({"start": f.start, "end": f.end, "objects": f.objects}))
                .chain(u.messages.iter().enumerate().filter(|(_, m)| !m.objects.is_empty()).map(|(i, m)| json!({"message": i, "objects": m.objects})))
                .collect::<Vec<_>>());
            let more: Vec<String> = u.sockopts.iter().map(|s| stasis_core::fdkinds::inet::options::label(s.level, s.name)).collect();
            d["options"] = json!({"passcred": u.passcred, "passsec": u.passsec, "peek_off": u.peek_off, "rcvbuf": u.rcvbuf, "sndbuf": u.sndbuf, "more": more});
            sock_flags_json(&mut d, u.flags);
            d
        }
        Some(Kind::Inet(i)) => {
            let proto = match (i.sock_type, i.protocol) {
                (libc::SOCK_RAW, _) => "raw",
                (_, libc::IPPROTO_TCP) => "tcp",
                (_, libc::IPPROTO_UDP) => "udp",
                (_, libc::IPPROTO_UDPLITE) => "udplite",
                _ => "ping",
            };
            let port = |a: &[u8]| if a.len() >= 4 { u16::from_be_bytes([a[2], a[3]]) } else { 0 };
            let state = if i.listening {
                "listening"
            } else if i.tcp.is_some() {
                "established"
            } else if i.tcp_state == 2 {
                "syn-sent"
            } else {
                "idle"
            };
            let options: Vec<String> = stasis_core::fdkinds::inet::saved_options(i)
                .iter()
                .map(|s| stasis_core::fdkinds::inet::options::label(s.level, s.name))
                .collect();
            let mut d = json!({"kind": proto, "id": id, "family": if i.family == libc::AF_INET6 { 6 } else { 4 },
                   "local_port": port(&i.local), "peer_port": port(&i.peer), "state": state,
                   "local": sockaddr_text(&i.local), "peer": sockaddr_text(&i.peer), "backlog": i.backlog,
                   "queued_bytes": i.tcp.as_ref().map(|t| t.send_queue.len() + t.recv_queue.len()).unwrap_or(0)
                       + i.queued.iter().map(|d| d.data.len()).sum::<usize>(),
                   "queued_datagrams": i.queued.len(),
                   "protocol": i.protocol, "options": options, "multicast_groups": i.mcast.len(), "shutdown": i.shutdown, "net_ns": o.net_ns});
            sock_flags_json(&mut d, i.flags);
            d
        }
        Some(Kind::Netlink(n)) => {
            let mut d = json!({"kind": "netlink", "id": id, "protocol": stasis_core::fdkinds::netlink::protocol_name(n.protocol),
                   "portid": n.portid, "groups": n.groups, "state": stasis_core::fdkinds::netlink::describe(n), "net_ns": o.net_ns});
            sock_flags_json(&mut d, n.flags);
            d
        }
        Some(Kind::Packet(p)) => {
            let mut d = json!({"kind": "packet", "id": id, "ifindex": p.ifindex, "ifname": p.ifname,
                   "fanout": p.fanout.as_ref().map(|f| f.id), "state": stasis_core::fdkinds::packet::describe(p), "net_ns": o.net_ns});
            if let Some(r) = &p.rx_ring {
                d["rx_ring"] = json!({"frame_nr": r.frame_nr, "head": r.head, "frames": r.frames.iter().map(|f| f.index).collect::<Vec<_>>()});
            }
            sock_flags_json(&mut d, p.flags);
            d
        }
        Some(Kind::Eventfd(e)) => anon(e.flags, None),
        Some(Kind::Timerfd(t)) => anon(t.flags, None),
        Some(Kind::Signalfd(sf)) => anon(sf.flags, Some(sf.mask)),
        Some(Kind::Epoll(e)) => anon(e.flags, None),
        Some(Kind::Inotify(i)) => anon(i.flags, None),
        Some(Kind::Pidfd(p)) => anon(p.flags, None),
        Some(Kind::NsFd(_)) => anon(0, None),
        Some(Kind::Fanotify(f)) => anon(f.flags, None),
        Some(Kind::Mqueue(q)) => {
            let mut d = anon(q.flags, None);
            d["name"] = json!(q.name);
            d["queued_messages"] = json!(q.messages.len());
            d
        }
        // not fd objects, or no kind this stasis knows
        Some(stasis_image::not_fd_kinds!())
        | None => json!({"kind": "other", "id": id}),
    };
    if let Some(own) = &o.owner {
        d["owner"] = json!({"o_async": own.o_async, "kind": own.kind, "pid": own.pid, "signal": own.signal});
    }
    d
}

/// One fd for people: `fd 3 file /tmp/x O_RDWR|O_APPEND pos 12 (cloexec)`.
fn fd_text(m: &stasis_image::Manifest, f: &Fd) -> String {
    let mut s = format!("fd {:>3} ", f.fd);
    let d = object_desc(m, f.object_id);
    let str_of = |k: &str| d[k].as_str().unwrap_or("").to_string();
    let flags = str_of("flags_names");
    let ext = |s: &mut String, e: &str| {
        if !e.is_empty() {
            *s += &format!(", external {e}");
        }
    };
    let o = m.object(f.object_id);
    match d["kind"].as_str().unwrap_or("other") {
        k @ ("file" | "memfd" | "deleted-file") => {
            s += &format!("{k} {} {flags} pos {}", str_of("path"), d["pos"]);
            if k != "file" {
                s += &format!(", {} bytes of content saved", d["content_bytes"]);
            }
            ext(&mut s, &str_of("external"));
        }
        k @ ("pipe-read" | "pipe-write") => {
            s += &format!("{k} (pipe object {}) {flags}, {} bytes buffered", d["pipe"], d["buffered_bytes"]);
            if let Some(n) = d["packets"].as_array().map(|p| p.len()).filter(|n| *n > 0) {
                s += &format!(" ({n} packets first)");
            }
            ext(&mut s, &str_of("external"));
        }
        "fifo" => {
            s += &format!("fifo {} {flags}, {} bytes buffered", str_of("path"), d["buffered_bytes"]);
            ext(&mut s, &str_of("external"));
        }
        "unix-pair" => {
            s += &format!("unix {} ", str_of("type"));
            if str_of("name") != "(unnamed)" {
                s += &format!("{} ", str_of("name"));
            }
            if d["peer_gone"] == true {
                s += &format!("connected, peer closed (inode {})", d["inode"]);
            } else {
                s += &format!("connected (inode {}, peer {}", d["inode"], d["peer_inode"]);
                if str_of("peer_name") != "(unnamed)" {
                    s += &format!(" {}", str_of("peer_name"));
                }
                s += ")";
            }
            ext(&mut s, &str_of("external"));
            if !flags.is_empty() {
                s += &format!(" {flags}");
            }
            let q = d["queued_bytes"].as_u64().unwrap_or(0);
            if q > 0 {
                s += &format!(", {q} bytes queued");
            }
            let n = d["queued_messages"].as_u64().unwrap_or(0);
            if n > 0 {
                s += &format!(", {n} messages queued");
            }
            in_flight_text(&mut s, &d);
            let sh = d["shutdown"].as_u64().unwrap_or(0);
            if sh != 0 {
                let what = match sh & 3 {
                    1 => "receive side",
                    2 => "send side",
                    _ => "both sides",
                };
                s += &format!(", shut down ({what})");
            }
        }
        "unix-bound" => {
            s += &format!("unix {} {}", str_of("type"), str_of("name"));
            if !flags.is_empty() {
                s += &format!(" {flags}");
            }
            if d["listening"] == true {
                s += &format!(", listening (backlog {})", d["backlog"]);
            }
            let n = d["queued_messages"].as_u64().unwrap_or(0);
            if n > 0 {
                s += &format!(", {n} messages queued");
            }
            in_flight_text(&mut s, &d);
        }
        k @ ("tcp" | "udp" | "udplite" | "ping" | "raw") => {
            s += &format!("{k} {}", str_of("local"));
            let peer = str_of("peer");
            if !peer.is_empty() {
                s += &format!(" -> {peer}");
            }
            s += &format!(" {}", str_of("state"));
            if !flags.is_empty() {
                s += &format!(" {flags}");
            }
            if d["listening"] == true || str_of("state") == "listening" {
                s += &format!(" (backlog {})", d["backlog"]);
            }
            let q = d["queued_bytes"].as_u64().unwrap_or(0);
            if q > 0 {
                s += &format!(", {q} bytes queued");
            }
            let opts: Vec<&str> = d["options"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect();
            if !opts.is_empty() {
                s += &format!(", options {}", opts.join(" "));
            }
        }
        k => {
            let state = match o {
                Some(Object { kind: Some(Kind::Signalfd(sf)), .. }) => format!("signals {}", sigset(sf.mask)),
                Some(Object { kind: Some(Kind::Timerfd(t)), .. }) => {
                    format!("{}, {}, {} unread ticks", clock_name(t.clockid), timer_text(t.value_ns, t.interval_ns), t.ticks)
                }
                _ => str_of("state"),
            };
            s += k;
            if !state.is_empty() {
                s += &format!(" {state}");
            }
            if !flags.is_empty() {
                s += &format!(" {flags}");
            }
        }
    }
    if let Some(own) = o.and_then(|o| o.owner.as_ref()) {
        s += &format!(", {}", owner_text(own));
    }
    if f.cloexec {
        s += " (cloexec)";
    }
    let ns = d["net_ns"].as_u64().unwrap_or(0);
    if ns != 0 {
        s += &format!(" [net ns {ns}]");
    }
    s
}

/// `, fds in flight: objects 12, 13 (bytes 3..6)` for a unix socket's queue.
fn in_flight_text(s: &mut String, d: &Value) {
    let Some(list) = d["in_flight"].as_array().filter(|l| !l.is_empty()) else { return };
    let parts: Vec<String> = list
        .iter()
        .map(|f| {
            let ids: Vec<String> = f["objects"].as_array().into_iter().flatten().map(|v| v.to_string()).collect();
            match f["message"].as_u64() {
                Some(i) => format!("objects {} (message {i})", ids.join(", ")),
                None => format!("objects {} (bytes {}..{})", ids.join(", "), f["start"], f["end"]),
            }
        })
        .collect();
    *s += &format!(", fds in flight: {}", parts.join("; "));
}

/// Signal-driven I/O of a description: `O_ASYNC, signals to process 12 (SIGRTMIN+2)`.
fn owner_text(o: &stasis_image::model::FileOwner) -> String {
    let mut parts = Vec::new();
    if o.o_async {
        parts.push("O_ASYNC".to_string());
    }
    if o.pid != 0 {
        let whom = match o.kind {
            stasis_core::fown::F_OWNER_TID => "thread",
            stasis_core::fown::F_OWNER_PGRP => "process group",
            _ => "process",
        };
        parts.push(format!("signals to {whom} {}", o.pid));
    }
    if o.signal != 0 {
        parts.push(format!("F_SETSIG {}", o.signal));
    }
    parts.join(", ")
}

/// UTS/IPC namespaces of the tree's own and the SysV objects the image holds.
fn ipc_json(m: &stasis_image::Manifest) -> Value {
    let ns_name = |id: u32| if id == 0 { "stasis's own".to_string() } else { format!("object {id}") };
    let perm = |p: &Option<SysvPerm>| {
        let p = p.unwrap_or_default();
        json!({"id": p.id, "key": format!("{:#x}", p.key), "owner": format!("{}:{}", p.uid, p.gid), "mode": format!("{:o}", p.mode)})
    };
    let mut out = Vec::new();
    for o in &m.objects {
        let mut d = if let Some(u) = o.uts_ns() {
            json!({"kind": "uts-ns", "inode": u.ino, "hostname": String::from_utf8_lossy(&u.hostname), "domainname": String::from_utf8_lossy(&u.domainname)})
        } else if let Some(n) = o.ipc_ns() {
            json!({"kind": "ipc-ns", "inode": n.ino, "sysctls": n.sysctls.iter().map(|s| format!("{}={}", s.name, s.value)).collect::<Vec<_>>()})
        } else if let Some(s) = o.sysv_shm() {
            let pages: u64 = m.index.runs.iter().filter(|r| r.object_id == o.id).map(|r| r.count as u64).sum();
            json!({"kind": "sysv-shm", "ns": ns_name(s.ipc_ns), "perm": perm(&s.perm), "size": s.size, "pages_saved": pages,
                   "destroyed": s.destroyed, "locked": s.locked})
        } else if let Some(q) = o.sysv_msg() {
            json!({"kind": "sysv-msg", "ns": ns_name(q.ipc_ns), "perm": perm(&q.perm), "qbytes": q.qbytes, "messages": q.messages.len(),
                   "bytes": q.messages.iter().map(|x| x.data.len()).sum::<usize>()})
        } else if let Some(s) = o.sysv_sem() {
            json!({"kind": "sysv-sem", "ns": ns_name(s.ipc_ns), "perm": perm(&s.perm), "values": s.values})
        } else {
            continue;
        };
        d["object"] = json!(o.id);
        out.push(d);
    }
    Value::Array(out)
}

/// One entry of `ipc_json` for people.
fn ipc_text(d: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(x) => x.clone(),
        v => v.to_string(),
    };
    let kind = s(&d["kind"]);
    let mut out = format!("{kind} (object {})", d["object"]);
    match kind.as_str() {
        "uts-ns" => out += &format!(" inode {}, hostname '{}', domainname '{}'", d["inode"], s(&d["hostname"]), s(&d["domainname"])),
        "ipc-ns" => {
            let v: Vec<String> = d["sysctls"].as_array().into_iter().flatten().map(s).collect();
            out += &format!(" inode {}, {}", d["inode"], if v.is_empty() { "default limits".into() } else { v.join(" ") });
        }
        _ => {
            let p = &d["perm"];
            out += &format!(" key {} id {} owner {} mode {} in namespace {}", s(&p["key"]), p["id"], s(&p["owner"]), s(&p["mode"]), s(&d["ns"]));
            match kind.as_str() {
                "sysv-shm" => {
                    out += &format!(", {} bytes, {} pages saved", d["size"], d["pages_saved"]);
                    if d["destroyed"] == true {
                        out += ", destroyed";
                    }
                    if d["locked"] == true {
                        out += ", locked";
                    }
                }
                "sysv-msg" => out += &format!(", {} messages ({} bytes), qbytes {}", d["messages"], d["bytes"], d["qbytes"]),
                "sysv-sem" => {
                    let v: Vec<String> = d["values"].as_array().into_iter().flatten().map(s).collect();
                    out += &format!(", values {}", v.join(" "));
                }
                _ => {}
            }
        }
    }
    out
}

fn thread_json(t: &Thread) -> Value {
    json!({"tid": t.tid, "comm": t.comm, "sigmask": format!("{:#x}", t.sigmask), "sigmask_names": sigset(t.sigmask),
           "in_syscall": t.in_syscall, "syscall": syscall_name(t.in_syscall),
           "pending_signals": t.pending.iter().map(|s| s.signo).collect::<Vec<_>>(),
           "pending_signal_names": sig_list(t.pending.iter().map(|s| s.signo)),
           "rseq": format!("{:#x}", t.rseq_addr), "xstate_bytes": t.xstate.len()})
}

fn vma_json(m: &stasis_image::Manifest, v: &Vma) -> Value {
    json!({"start": format!("{:#x}", v.start), "end": format!("{:#x}", v.end), "size": v.end - v.start,
           "prot": prot(v.prot), "perms": prot4(v), "shared": v.shared, "kind": kind_name(v.kind), "name": v.name,
           "pages_saved": v.pages_saved, "flags": v.vm_flags, "external": vma_external(m, v),
           // a POSIX shared memory object's content the image holds (bytes stored)
           "object_content_bytes": m.object(v.object_id).and_then(|o| o.mapped_file()).and_then(|f| f.saved.as_ref())
               .map(|g| m.index.runs.iter().filter(|r| r.object_id == v.object_id).map(|r| u64::from(r.count) * 4096).sum::<u64>().min(g.size)),
           "aio": v.aio.as_ref().map(|a| json!({"nr": a.nr, "head": a.head, "tail": a.tail, "unreaped": a.events.len()}))})
}

fn fds_json(m: &stasis_image::Manifest, q: &Process) -> Vec<Value> {
    q.fds
        .iter()
        .map(|f| {
            let mut d = object_desc(m, f.object_id);
            d["fd"] = json!(f.fd);
            d["cloexec"] = json!(f.cloexec);
            d
        })
        .collect()
}

fn creds_json(p: &Process) -> Value {
    let c = p.creds.clone().unwrap_or_default();
    json!({"uids": c.uids, "gids": c.gids, "groups": c.groups,
        "cap_eff": format!("{:#x}", c.cap_eff), "cap_prm": format!("{:#x}", c.cap_prm),
        "cap_inh": format!("{:#x}", c.cap_inh), "cap_bnd": format!("{:#x}", c.cap_bnd),
        "cap_amb": format!("{:#x}", c.cap_amb), "securebits": c.securebits})
}

fn attrs_json(p: &Process) -> Value {
    let a = p.attrs.clone().unwrap_or_default();
    json!({"cwd": a.cwd, "root": a.root, "umask": format!("{:04o}", a.umask),
        "personality": format!("{:#x}", a.personality), "personality_names": personality_name(a.personality),
        "oom_score_adj": a.oom_score_adj, "dumpable": a.dumpable})
}

/// Handlers other than SIG_DFL: (caught, ignored) signal numbers.
fn handlers(p: &Process) -> (Vec<i32>, Vec<i32>) {
    let caught = p.sigactions.iter().filter(|a| a.handler > 1).map(|a| a.signo).collect();
    let ignored = p.sigactions.iter().filter(|a| a.handler == 1).map(|a| a.signo).collect();
    (caught, ignored)
}

fn itimer_name(which: i32) -> String {
    match which {
        0 => "real".into(),
        1 => "virtual".into(),
        2 => "prof".into(),
        w => format!("itimer {w}"),
    }
}

fn posix_timer_text(t: &PosixTimer) -> String {
    let notify = match t.notify {
        0 => sig_name(t.signo),
        1 => "no notification".into(),
        4 => format!("{} to thread {}", sig_name(t.signo), t.notify_tid),
        n => format!("{} (notify {n})", sig_name(t.signo)),
    };
    let mut s = format!("#{} {} -> {notify}, {}", t.id, clock_name(t.clock), timer_text(t.value_ns, t.interval_ns));
    if t.overrun != 0 {
        s += &format!(", overrun {}", t.overrun);
    }
    s
}

fn signals_json(p: &Process) -> Value {
    let (caught, ignored) = handlers(p);
    json!({"handlers": p.sigactions.len(), "caught": sig_list(caught.iter().copied()), "ignored": sig_list(ignored.iter().copied()),
           "pending": p.shared_pending.iter().map(|s| s.signo).collect::<Vec<_>>(),
           "pending_names": sig_list(p.shared_pending.iter().map(|s| s.signo)),
           "itimers": p.itimers.iter().map(|t| json!({"which": itimer_name(t.which), "value_us": t.value_us, "interval_us": t.interval_us})).collect::<Vec<_>>(),
           "posix_timers": p.posix_timers.iter().map(posix_timer_text).collect::<Vec<_>>()})
}

/// The processes of the image (the root alone for an image without a tree list).
fn processes(m: &stasis_image::Manifest) -> Vec<&Process> {
    if m.processes.is_empty() {
        vec![&m.process]
    } else {
        m.processes.iter().collect()
    }
}

pub fn to_json(m: &stasis_image::Manifest, dir: &Path) -> Value {
    let p = &m.process;
    let threads: Vec<Value> = p.threads.iter().map(thread_json).collect();
    let vmas: Vec<Value> = p.vmas.iter().map(|v| vma_json(m, v)).collect();
    let fds = fds_json(m, p);
    let processes: Vec<Value> = processes(m)
        .into_iter()
        .map(|q| {
            let a = q.attrs.clone().unwrap_or_default();
            let shares: Vec<&str> = [(q.shares_files, "files"), (q.shares_fs, "fs"), (q.shares_vm, "vm"), (q.shares_sighand, "sighand")]
                .iter()
                .filter(|x| x.0)
                .map(|x| x.1)
                .collect();
            json!({"pid": q.pid, "ppid": q.ppid, "comm": q.comm, "zombie": q.zombie, "exit_status": q.exit_status,
                   "exit_status_text": if q.zombie { wait_status(q.exit_status) } else { String::new() },
                   "pgid": a.pgid, "sid": a.sid, "ns_pids": q.ns_pids, "exit_signal": q.exit_signal,
                   "shares_with_parent": shares, "mount_proc": q.mount_proc,
                   "leader_exited": q.leader_exited, "leader_exit_status": q.leader_exit_status,
                   "threads": q.threads.iter().map(thread_json).collect::<Vec<_>>(),
                   "vmas": q.vmas.iter().map(|v| vma_json(m, v)).collect::<Vec<_>>(),
                   "fds": fds_json(m, q),
                   "credentials": creds_json(q), "attributes": attrs_json(q), "signals": signals_json(q)})
        })
        .collect();
    let size = |f: &str| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
    json!({
        "format_version": m.version,
        "arch": "x86_64",
        "page_size": m.page_size,
        "pid": p.pid,
        "comm": p.comm,
        "kernel": p.kernel,
        "threads": threads,
        "vmas": vmas,
        "fds": fds,
        "processes": processes,
        "credentials": creds_json(p),
        "attributes": attrs_json(p),
        "signal_handlers": p.sigactions.len(),
        "pending_signals": p.shared_pending.iter().map(|s| s.signo).collect::<Vec<_>>(),
        "pending_signal_names": sig_list(p.shared_pending.iter().map(|s| s.signo)),
        "itimers": p.itimers.len(),
        "posix_timers": p.posix_timers.len(),
        "objects": m.objects.len(),
        "namespaces": m.processes.iter().map(|q| json!({"pid": q.pid, "uts_ns": q.uts_ns, "ipc_ns": q.ipc_ns, "mnt_ns": q.mnt_ns, "pid_levels": q.ns_pids.len().max(1)})).collect::<Vec<_>>(),
        "sysv_ipc": ipc_json(m),
        "cgroups": cgroups_json(m),
        "pages": {"runs": m.index.runs.len(), "pages": m.index.runs.iter().map(|r| r.count as u64).sum::<u64>(),
            "stored": stasis_image::stored_pages(&m.index.runs)},
        "sizes": {"manifest.img": size(stasis_image::MANIFEST),
            "pages": (0..m.end.shards.len() as u32).map(|k| json!({"file": stasis_image::pages_file_name(k), "bytes": size(&stasis_image::pages_file_name(k)),
                "content_bytes": m.end.shards[k as usize].size})).collect::<Vec<_>>(),
            "compressed": m.required_features.iter().any(|f| f == stasis_image::FEATURE_PAGES_LZ4),
            "records": m.record_sizes.iter().map(|(t, s)| json!({"type": format!("{t:#x}"), "name": record_name(*t), "bytes": s})).collect::<Vec<_>>()},
    })
}

fn record_name(t: u32) -> String {
    use stasis_image::rec;
    match t {
        rec::PROCESS => "process".into(),
        rec::OBJECT => "object".into(),
        rec::PAGE_INDEX => "page index".into(),
        rec::END => "end".into(),
        t => format!("record {t:#x}"),
    }
}

/// uids/gids (real, effective, saved, fs): one number when all agree.
fn ids_text(v: &[u32]) -> String {
    match v.first() {
        None => "?".into(),
        Some(f) if v.iter().all(|x| x == f) => f.to_string(),
        _ => v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("/"),
    }
}

/// One process's section of the text output.
fn print_process(m: &stasis_image::Manifest, q: &Process) {
    let whose = if q.ppid == 0 { "root".to_string() } else { format!("child of {}", q.ppid) };
    if q.zombie {
        println!("process {} '{}' ({whose}): zombie, {}", q.pid, q.comm, wait_status(q.exit_status));
        return;
    }
    println!("process {} '{}' ({whose})", q.pid, q.comm);
    if q.leader_exited {
        println!("  threads: {} (the main thread {} has exited: {})", q.threads.len(), q.pid, wait_status(q.leader_exit_status));
    } else {
        println!("  threads: {}", q.threads.len());
    }
    for t in &q.threads {
        let mut s = format!("    tid {:>7} {:<16} blocked {}", t.tid, t.comm, sigset(t.sigmask));
        if !t.pending.is_empty() {
            s += &format!("; pending {}", sig_list(t.pending.iter().map(|s| s.signo)));
        }
        s += &format!("; {}", syscall_name(t.in_syscall));
        println!("{s}");
    }
    if q.shares_vm && q.vmas.is_empty() {
        println!("  memory: its parent's address space");
    } else {
        let saved: u64 = q.vmas.iter().map(|v| v.pages_saved).sum();
        println!("  memory: {} VMAs, {} pages saved ({} KiB)", q.vmas.len(), saved, saved * m.page_size as u64 / 1024);
        for v in &q.vmas {
            let mut s = format!(
                "    {:#014x}-{:#014x} {} {:<12} {:>6} {:>7} saved",
                v.start,
                v.end,
                prot4(v),
                kind_name(v.kind),
                size_text(v.end - v.start),
                size_text(v.pages_saved * m.page_size as u64),
            );
            if !v.name.is_empty() {
                s += &format!("  {}", v.name);
            }
            if !v.vm_flags.is_empty() {
                s += &format!("  [{}]", v.vm_flags.join(" "));
            }
            let e = vma_external(m, v);
            if !e.is_empty() {
                s += &format!(" (external {e})");
            }
            if let Some(a) = &v.aio {
                s += &format!(" (aio context: {} slots, head {}, tail {}, {} unreaped)", a.nr, a.head, a.tail, a.events.len());
            }
            println!("{s}");
        }
    }
    if q.shares_files && q.fds.is_empty() {
        println!("  fds: its parent's table");
    } else {
        println!("  fds: {}", q.fds.len());
        for f in &q.fds {
            println!("    {}", fd_text(m, f));
        }
    }
    for l in &q.locks {
        let range = if l.start == 0 && l.len == 0 { "whole file".to_string() } else { format!("bytes {}+{}", l.start, l.len) };
        println!("  lock: {} {} on fd {} ({range})", l.kind, if l.write { "write" } else { "read" }, l.fd);
    }
    let c = q.creds.clone().unwrap_or_default();
    let mut cs = format!("  credentials: uid {} gid {}", ids_text(&c.uids), ids_text(&c.gids));
    if !c.groups.is_empty() {
        cs += &format!(" groups {}", c.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","));
    }
    cs += &format!(
        "; caps effective {}, permitted {}, inheritable {}, bounding {}, ambient {}",
        caps(c.cap_eff),
        caps(c.cap_prm),
        caps(c.cap_inh),
        caps(c.cap_bnd),
        caps(c.cap_amb)
    );
    if c.securebits != 0 {
        cs += &format!("; securebits {:#x}", c.securebits);
    }
    println!("{cs}");
    let a = q.attrs.clone().unwrap_or_default();
    println!(
        "  attributes: cwd {}, root {}, umask {:04o}, personality {}, oom_score_adj {}, {}",
        a.cwd,
        a.root,
        a.umask,
        personality_name(a.personality),
        a.oom_score_adj,
        if a.dumpable != 0 { "dumpable" } else { "not dumpable" }
    );
    let (caught, ignored) = handlers(q);
    let n = q.sigactions.len();
    let mut h = format!("{n} handler{}", if n == 1 { "" } else { "s" });
    if q.shares_sighand {
        h += " (its parent's)";
    }
    let mut parts = Vec::new();
    if !caught.is_empty() {
        parts.push(format!("caught {}", sig_list(caught)));
    }
    if !ignored.is_empty() {
        parts.push(format!("ignored {}", sig_list(ignored)));
    }
    if !parts.is_empty() {
        h += &format!(" ({})", parts.join("; "));
    }
    println!("  signals: {h}, pending {}", sig_list(q.shared_pending.iter().map(|s| s.signo)));
    if q.exit_signal != 0 && q.exit_signal != libc::SIGCHLD {
        println!(
            "  exit signal: {}",
            if q.exit_signal < 0 { "none".to_string() } else { sig_name(q.exit_signal) }
        );
    }
    let it: Vec<String> = q
        .itimers
        .iter()
        .map(|t| format!("{} {}", itimer_name(t.which), timer_text(t.value_us * 1000, t.interval_us * 1000)))
        .collect();
    let pt: Vec<String> = q.posix_timers.iter().map(posix_timer_text).collect();
    println!(
        "  timers: itimers {}; POSIX timers {}",
        if it.is_empty() { "none".into() } else { it.join(", ") },
        if pt.is_empty() { "none".into() } else { pt.join(", ") }
    );
}

pub fn run(dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let m = stasis_image::read_manifest(dir)?;
    let j = to_json(&m, dir);
    if as_json {
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    let p = &m.process;
    println!("image {} (format v{}, x86_64, page size {})", dir.display(), m.version, m.page_size);
    println!("dumped on kernel {}; root process {} '{}'", p.kernel, p.pid, p.comm);
    if !p.net_lock.is_empty() {
        let here = if p.net_lock_ns.contains(&0) { "" } else { " (in the tree's own network namespace)" };
        println!("network lock: nftables table inet {}{here}, removed by the restore or `stasis network-unlock`", p.net_lock);
    }
    let procs = processes(&m);
    if procs.len() > 1 || p.ns_pids.len() > 1 {
        println!("tree: {} processes", procs.len());
        for q in &procs {
            let a = q.attrs.clone().unwrap_or_default();
            let mut extra = String::new();
            if q.zombie {
                extra += &format!(" zombie ({})", wait_status(q.exit_status));
            }
            if q.ns_pids.len() > 1 {
                let v: Vec<String> = q.ns_pids.iter().map(|x| x.to_string()).collect();
                extra += &format!(" pid in namespaces {}", v.join("/"));
            }
            for (on, what) in [(q.shares_files, "fd table"), (q.shares_fs, "fs"), (q.shares_vm, "address space"), (q.shares_sighand, "handlers")] {
                if on {
                    extra += &format!(", shares its parent's {what}");
                }
            }
            println!("  pid {:>7} ppid {:>7} pgid {:>7} sid {:>7} {:<16}{extra}", q.pid, q.ppid, a.pgid, a.sid, q.comm);
        }
    }
    for q in &procs {
        print_process(&m, q);
    }
    for o in j["sysv_ipc"].as_array().into_iter().flatten() {
        println!("ipc: {}", ipc_text(o));
    }
    for c in &m.process.cgroup_dirs {
        let v: Vec<String> = c.settings.iter().map(|s| format!("{}={}", s.file, s.value.replace('\n', "; "))).collect();
        let key = if c.controllers.is_empty() { "v2" } else { &c.controllers };
        println!("cgroup {key}:{} mode {:o} owner {}:{}: {}", c.path, c.mode, c.uid, c.gid, if v.is_empty() { "-".into() } else { v.join(", ") });
    }
    println!(
        "page index: {} runs, {} pages restored, {} stored in the pages files",
        j["pages"]["runs"], j["pages"]["pages"], j["pages"]["stored"]
    );
    let mut sizes = vec![format!("manifest.img {}", j["sizes"]["manifest.img"])];
    for f in j["sizes"]["pages"].as_array().into_iter().flatten() {
        sizes.push(format!("{} {}", f["file"].as_str().unwrap_or(""), f["bytes"]));
    }
    let recs: Vec<String> = m.record_sizes.iter().map(|(t, s)| format!("{} {s}", record_name(*t))).collect();
    println!("sizes (bytes): {}; records: {}", sizes.join(", "), recs.join(", "));
    Ok(())
}

/// Each process's cgroups (/proc/PID/cgroup lines) and the saved cgroups with their
/// settings and owners.
fn cgroups_json(m: &stasis_image::Manifest) -> serde_json::Value {
    json!({
        "processes": m.processes.iter().map(|q| json!({"pid": q.pid, "lines": q.cgroups})).collect::<Vec<_>>(),
        "saved": m.process.cgroup_dirs.iter().map(|c| json!({
            "controllers": c.controllers, "path": c.path, "mode": c.mode, "uid": c.uid, "gid": c.gid,
            "settings": c.settings.iter().map(|s| json!({"file": s.file, "value": s.value})).collect::<Vec<_>>(),
            "file_owners": c.file_owners.iter().map(|o| json!({"file": o.file, "mode": o.mode, "uid": o.uid, "gid": o.gid})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_for_people() {
        assert_eq!(sig_name(10), "SIGUSR1");
        assert_eq!(sig_name(37), "SIGRTMIN+3");
        assert_eq!(sig_name(64), "SIGRTMAX");
        assert_eq!(sig_name(32), "SIG32");
        assert_eq!(sig_list([]), "none");
        assert_eq!(sigset((1 << 9) | (1 << 36)), "SIGUSR1, SIGRTMIN+3");
        assert_eq!(sigset(!0), "all");
        assert_eq!(sigset(!(1u64 << 9)), "all but SIGUSR1");
        assert_eq!(caps(0), "none");
        assert_eq!(caps((1 << 41) - 1), "all");
        assert_eq!(caps((1 << 21) | 1), "chown,sys_admin");
        assert_eq!(wait_status(7 << 8), "exited 7");
        assert_eq!(wait_status(9), "killed by SIGKILL");
        assert_eq!(dur_ns(1_500_000_000), "1.500s");
        assert_eq!(dur_ns(250_000_000), "250ms");
        assert_eq!(timer_text(1_000_000_000, 500_000_000), "in 1s every 500ms");
        assert_eq!(size_text(132 * 1024), "132K");
        assert_eq!(syscall_name(-1), "not in a syscall");
        assert_eq!(syscall_name(230), "in clock_nanosleep");
        let mut a = vec![0u8; 16];
        a[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        a[2..4].copy_from_slice(&8080u16.to_be_bytes());
        a[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(sockaddr_text(&a), "127.0.0.1:8080");
        let v = Vma { prot: (libc::PROT_READ | libc::PROT_EXEC) as u32, ..Default::default() };
        assert_eq!(prot4(&v), "r-xp");
    }
}
