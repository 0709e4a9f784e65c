//! Network lock: between a dump and the restore, the packets of the dumped TCP
//! connections are dropped by nftables rules, so a peer sees neither a RST (the dumped
//! socket is gone) nor an acknowledgement of data the image does not hold (the kernel
//! still acks while the tree is frozen). The peer retransmits until the restored
//! socket answers.
//!
//! Dump: once the tree is frozen and before any connection is put in repair mode,
//! [`lock`] finds every TCP socket of the tree that has a peer, and for a killing dump
//! every listener (fds → socket inodes → `/proc/PID/net/tcp{,6}` of the process's
//! network namespace and of ours), and loads, in one `nft -f -` transaction per
//! namespace, a table `inet stasis-<root pid>-<nonce>` whose input and output chains
//! drop exactly those 4-tuples, both directions (not a client's whose server end waits
//! in the accept queue of a listener of the tree: restore makes that connection again
//! with a handshake, `fdkinds::inet::waiting`), and whose input chain drops SYNs (new
//! connections) to those listeners, so a client connecting while the tree is away
//! retries until the restored listener answers instead of being refused (a
//! namespace other than ours is entered with `nsenter --net=/proc/PID/ns/net`). A
//! failed or `--leave-running` dump removes the table once the sockets are out of
//! repair mode; a killing dump leaves it and records it in the image (root process's
//! `net_lock`, `net_lock_ns`).
//!
//! Restore removes the table after every process was restored (every connection back
//! and out of repair mode); a failed restore leaves it, so the image can be tried
//! again. `stasis network-unlock DIR` removes the lock of an image that will not be
//! restored. The name in an image is untrusted: only a name this module's dump of that
//! image's root would have made ([`check_table_name`]) is ever deleted, only in family
//! `inet`, and only in stasis's own network namespace (a tree's own namespace is never
//! joined by an image's say-so; its lock went away with it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use tracing::{info, warn};

use crate::error::{Error, Result};

/// `--network-lock`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// nftables rules (the default).
    #[default]
    Nftables,
    /// No lock at dump; restore leaves an image's lock alone.
    Skip,
}

/// One TCP connection: local and peer address and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conn {
    pub local: IpAddr,
    pub lport: u16,
    pub peer: IpAddr,
    pub pport: u16,
}

/// A TCP listener: new connections to it (SYNs) are held back during a killing dump,
/// so clients connecting meanwhile retry until the restored listener answers instead of
/// being refused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub local: IpAddr,
    pub lport: u16,
}

/// What a network namespace of the tree has to lock.
#[derive(Debug, Clone, Default)]
pub struct Sockets {
    pub conns: BTreeSet<Conn>,
    pub listeners: BTreeSet<Listener>,
}

/// The lock a dump made: its table, and per network namespace (0 = ours) the pid
/// through which it was entered.
#[derive(Debug, Clone)]
pub struct Lock {
    pub table: String,
    pub namespaces: Vec<(u64, i32)>,
    pub connections: usize,
}

const TABLE_PREFIX: &str = "stasis-";

/// The table a dump of the tree rooted at `root` uses: `stasis-<root>-<nonce>`, the
/// nonce (hex) from the clock and our pid, so two dumps of one pid never share a table.
fn table_name(root: i32) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let nonce = (t ^ ((std::process::id() as u64) << 40)) & 0xffff_ffff_ffff;
    format!("{TABLE_PREFIX}{root}-{nonce:x}")
}

/// A table name read from an image of the tree rooted at `root` must be one its dump
/// could have made: `stasis-<root>-` and 1 to 16 lowercase hex digits. Anything else
/// is refused (restore and unlock never delete another table).
pub fn check_table_name(root: i32, name: &str) -> std::result::Result<(), String> {
    let ok = name
        .strip_prefix(&format!("{TABLE_PREFIX}{root}-"))
        .is_some_and(|n| (1..=16).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    if ok {
        Ok(())
    } else {
        Err(format!("network lock table {name:?} is not one a dump of pid {root} makes (stasis-{root}-HEX)"))
    }
}

/// `nft`, looked up in PATH.
fn nft_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("nft")).find(|p| p.is_file())
}

fn missing_nft(pid: i32, what: &str) -> Error {
    Error::Refused {
        pid,
        why: format!("{what} needs the nft command (install the nftables package) or --network-lock skip"),
    }
}

fn ns_inode(path: &str) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| std::os::unix::fs::MetadataExt::ino(&m))
}

/// `/proc/.../net/tcp` address: hex of the address's 32-bit words in host order.
fn parse_addr(hex: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = hex.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let mut bytes = Vec::new();
    for i in (0..a.len()).step_by(8) {
        bytes.extend_from_slice(&u32::from_str_radix(a.get(i..i + 8)?, 16).ok()?.to_ne_bytes());
    }
    let ip = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some((ip, port))
}

/// A TCP socket of a `/proc/X/net` table: a connection or a listener.
#[derive(Debug, Clone)]
enum TcpSock {
    Conn(Conn),
    Listen(Listener),
}

/// TCP sockets with a peer, and listeners, of a `/proc/X/net` directory, by inode; and
/// the connections without an inode that may wait in an accept queue (ESTABLISHED or
/// CLOSE_WAIT: no process holds them yet).
fn tcp_table(net_dir: &str) -> (BTreeMap<u64, TcpSock>, BTreeSet<Conn>) {
    let mut out = BTreeMap::new();
    let mut unheld = BTreeSet::new();
    for f in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("{net_dir}/{f}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let c: Vec<&str> = line.split_whitespace().collect();
            let (Some(l), Some(r), Some(st), Some(ino)) = (c.get(1), c.get(2), c.get(3), c.get(9)) else { continue };
            let (Some((local, lport)), Some((peer, pport)), Ok(ino)) = (parse_addr(l), parse_addr(r), ino.parse::<u64>()) else {
                continue;
            };
            if ino == 0 && (*st == "01" || *st == "08") {
                unheld.insert(Conn { local, lport, peer, pport });
            }
            if ino == 0 || *st == "07" {
                continue; // CLOSE: nothing to hold back
            }
            if *st == "0A" {
                out.insert(ino, TcpSock::Listen(Listener { local, lport }));
            } else if pport != 0 {
                out.insert(ino, TcpSock::Conn(Conn { local, lport, peer, pport }));
            }
        }
    }
    (out, unheld)
}

/// Whether connection `c` of the tree is a client's waiting in the accept queue of one
/// of the tree's `listeners`: its other end is `unheld` (no process holds it before
/// the accept). Such a connection is not locked: both ends are the tree's, and restore
/// makes it again with a real handshake (`fdkinds::inet::waiting`), which the lock
/// would hold back.
fn waits_on_tree(c: &Conn, unheld: &BTreeSet<Conn>, listeners: &BTreeSet<Listener>) -> bool {
    let canon = |ip: &IpAddr| ip.to_canonical();
    let server_end = unheld.iter().any(|u| u.lport == c.pport && u.pport == c.lport && canon(&u.local) == canon(&c.peer) && canon(&u.peer) == canon(&c.local));
    server_end && listeners.iter().any(|l| l.lport == c.pport && (l.local.is_unspecified() || canon(&l.local) == canon(&c.peer)))
}

/// The TCP connections of the processes `pids`, per network namespace (0 = ours), with
/// a pid through which that namespace can be entered.
pub fn tree_connections(pids: &[i32]) -> BTreeMap<u64, (i32, Sockets)> {
    let ours = ns_inode("/proc/self/ns/net").unwrap_or(0);
    let mut tables: BTreeMap<u64, (BTreeMap<u64, TcpSock>, BTreeSet<Conn>)> = BTreeMap::new();
    let mut out: BTreeMap<u64, (i32, Sockets)> = BTreeMap::new();
    for &pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        let inodes: Vec<u64> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
            .collect();
        if inodes.is_empty() {
            continue;
        }
        let own = ns_inode(&format!("/proc/{pid}/ns/net")).unwrap_or(ours);
        // A socket lives in its process's namespace or (created before a setns) in ours.
        for (ns, dir) in [(own, format!("/proc/{pid}/net")), (ours, "/proc/self/net".to_string())] {
            let key = if ns == ours { 0 } else { ns };
            let table = tables.entry(key).or_insert_with(|| tcp_table(&dir));
            for ino in &inodes {
                let entry = || (pid, Sockets::default());
                match table.0.get(ino) {
                    Some(TcpSock::Conn(c)) => {
                        out.entry(key).or_insert_with(entry).1.conns.insert(c.clone());
                    }
                    Some(TcpSock::Listen(l)) => {
                        out.entry(key).or_insert_with(entry).1.listeners.insert(l.clone());
                    }
                    None => {}
                }
            }
        }
    }
    for (key, (_, socks)) in out.iter_mut() {
        if let Some((_, unheld)) = tables.get(key) {
            let listeners = socks.listeners.clone();
            socks.conns.retain(|c| !waits_on_tree(c, unheld, &listeners));
        }
    }
    out
}

/// An address as nft writes it, with its protocol keyword; an IPv4-mapped IPv6
/// address (a dual-stack socket talking IPv4) is the IPv4 address on the wire.
fn nft_addr(ip: &IpAddr) -> (&'static str, String) {
    match ip {
        IpAddr::V4(a) => ("ip", a.to_string()),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => ("ip", v4.to_string()),
            None => ("ip6", a.to_string()),
        },
    }
}

/// The nft script making `table` with rules dropping the connections of `socks` both
/// ways and new connections (SYN without ACK) to its listeners.
pub fn script(table: &str, socks: &Sockets) -> String {
    let mut rules = BTreeSet::new();
    for c in &socks.conns {
        let (fam, l) = nft_addr(&c.local);
        let (_, p) = nft_addr(&c.peer);
        rules.insert(format!("{fam} saddr {l} {fam} daddr {p} tcp sport {} tcp dport {} drop", c.lport, c.pport));
        rules.insert(format!("{fam} saddr {p} {fam} daddr {l} tcp sport {} tcp dport {} drop", c.pport, c.lport));
    }
    let mut syns = BTreeSet::new();
    for l in &socks.listeners {
        let to = if l.local.is_unspecified() {
            String::new() // any address (a dual-stack wildcard: both families)
        } else {
            let (fam, a) = nft_addr(&l.local);
            format!("{fam} daddr {a} ")
        };
        syns.insert(format!("{to}tcp dport {} tcp flags & (syn | ack) == syn drop", l.lport));
    }
    let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
    let input: String = rules.iter().chain(syns.iter()).map(|r| format!("    {r}\n")).collect();
    format!(
        "table inet {table} {{\n  chain input {{\n    type filter hook input priority -300; policy accept;\n{input}  }}\n  chain output {{\n    type filter hook output priority -300; policy accept;\n{body}  }}\n}}\n"
    )
}

/// Runs `nft -f -` with `input` (in the network namespace of `via`, when given).
fn run_nft(nft: &PathBuf, via: Option<i32>, input: &str) -> std::result::Result<(), String> {
    let mut cmd = match via {
        Some(pid) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{pid}/ns/net")).arg("--").arg(nft);
            c
        }
        None => Command::new(nft),
    };
    cmd.args(["-f", "-"]).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("running nft: {e}"))?;
    if let Some(mut w) = child.stdin.take() {
        w.write_all(input.as_bytes()).map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!("nft: {}", err.trim().replace('\n', "; ")))
    }
}

/// Dump side, with the tree frozen: locks every TCP connection of `pids` (`root` is the
/// tree's root) and, with `listeners` (a killing dump: the tree is away until the
/// restore), new connections to its listeners. None when there is nothing to lock or
/// the mode is `Skip`. Listeners alone do not need nft: without it they are not locked
/// (clients connecting meanwhile are refused, as before).
pub fn lock(mode: Mode, root: i32, pids: &[i32], listeners: bool) -> Result<Option<Lock>> {
    if mode == Mode::Skip {
        return Ok(None);
    }
    let mut conns = tree_connections(pids);
    if !listeners {
        conns.values_mut().for_each(|(_, s)| s.listeners.clear());
    }
    conns.retain(|_, (_, s)| !s.conns.is_empty() || !s.listeners.is_empty());
    let n: usize = conns.values().map(|(_, s)| s.conns.len()).sum();
    let nl: usize = conns.values().map(|(_, s)| s.listeners.len()).sum();
    if n + nl == 0 {
        return Ok(None);
    }
    let nft = match nft_binary() {
        Some(nft) => nft,
        None if n == 0 => {
            info!(listeners = nl, "nft not found: the tree's listeners are not locked");
            return Ok(None);
        }
        None => return Err(missing_nft(root, &format!("holding back the tree's {n} TCP connections during the dump"))),
    };
    let table = table_name(root);
    let mut done: Vec<(u64, i32)> = Vec::new();
    for (ns, (pid, set)) in &conns {
        let via = (*ns != 0).then_some(*pid);
        if let Err(why) = run_nft(&nft, via, &script(&table, set)) {
            let l = Lock { table: table.clone(), namespaces: done, connections: n };
            unlock(&l);
            return Err(Error::Refused { pid: *pid, why: format!("locking its TCP connections with nftables (table inet {table}): {why}") });
        }
        done.push((*ns, *pid));
    }
    info!(table, connections = n, listeners = nl, namespaces = done.len(), "network locked");
    Ok(Some(Lock { table, namespaces: done, connections: n }))
}

/// Removes a lock this process made (failed or `--leave-running` dump). Errors are
/// warnings: the dump's outcome stands, and the warning says what is left.
pub fn unlock(l: &Lock) {
    let Some(nft) = nft_binary() else { return };
    for (ns, pid) in &l.namespaces {
        let via = (*ns != 0).then_some(*pid);
        if let Err(e) = run_nft(&nft, via, &format!("delete table inet {}\n", l.table)) {
            warn!("the network lock (nftables table inet {}) could not be removed: {e}", l.table);
        }
    }
    info!(table = l.table, "network unlocked");
}

/// The lock an image records, if any: (table, whether it lives in stasis's namespace).
/// The table name was validated (`restore::validate`).
fn recorded(m: &stasis_image::Manifest) -> Option<(&str, bool)> {
    let p = &m.process;
    (!p.net_lock.is_empty()).then(|| (p.net_lock.as_str(), p.net_lock_ns.contains(&0)))
}

/// Restore side, before anything is created: an image with a lock needs nft (unless
/// `Skip`).
pub fn check_restore(mode: Mode, m: &stasis_image::Manifest) -> Result<()> {
    if mode == Mode::Nftables && recorded(m).is_some_and(|(_, here)| here) && nft_binary().is_none() {
        return Err(missing_nft(m.process.pid, "removing the image's network lock after the restore"));
    }
    Ok(())
}

/// Removes an image's lock from stasis's network namespace. Ok(false): no such table
/// (already removed, or made on another host). A lock in the tree's own namespace went
/// away with that namespace; nothing is done for it.
pub fn unlock_image(mode: Mode, m: &stasis_image::Manifest) -> Result<bool> {
    let root = m.process.pid;
    let Some((table, here)) = recorded(m) else { return Ok(false) };
    if mode == Mode::Skip || !here {
        return Ok(false);
    }
    check_table_name(root, table).map_err(Error::RestoreRefused)?;
    let nft = nft_binary().ok_or_else(|| missing_nft(root, "removing the image's network lock"))?;
    match run_nft(&nft, None, &format!("delete table inet {table}\n")) {
        Ok(()) => {
            info!(table, "network unlocked");
            Ok(true)
        }
        Err(e) if e.contains("No such file or directory") => Ok(false),
        Err(e) => Err(Error::Refused { pid: root, why: format!("removing the network lock (table inet {table}): {e}") }),
    }
}

/// The mark (SO_MARK) of the packets restore sends as from a peer (the bytes from an
/// urgent byte on, `fdkinds::inet::tcp`): the lock lets them through once
/// [`let_marked_through`] made an exception for them.
pub const FROM_PEER_MARK: u32 = 0x5354_4153;

/// Restore, before any connection is created: the image's lock (if it is in stasis's
/// namespace) gets, at the top of its input and output chains, a rule accepting packets
/// marked [`FROM_PEER_MARK`], so restore's packets from a peer arrive before the
/// processes run (every other packet of the connections stays dropped until the
/// unlock). Only a table whose name this module's dump of that image would have made is
/// touched; it goes away whole at the unlock (a failed restore leaves it, with the rule).
/// Returns whether marked packets pass (no lock here, or the rule was added); if not,
/// they wait for the unlock.
pub fn let_marked_through(mode: Mode, m: &stasis_image::Manifest) -> bool {
    let root = m.process.pid;
    let Some((table, here)) = recorded(m) else { return true };
    if !here {
        return true;
    }
    if mode == Mode::Skip || check_table_name(root, table).is_err() {
        return false;
    }
    let Some(nft) = nft_binary() else { return false };
    let rule = format!("meta mark {FROM_PEER_MARK:#x} accept");
    match run_nft(&nft, None, &format!("insert rule inet {table} input {rule}\ninsert rule inet {table} output {rule}\n")) {
        Ok(()) => true,
        Err(e) if e.contains("No such file or directory") => true,
        Err(e) => {
            warn!(table, "the network lock lets no packet from restore through: {e}; urgent data reaches restored connections after the unlock");
            false
        }
    }
}

/// `stasis network-unlock DIR`: the image is read and validated like a restore's, then
/// its lock (if any, in stasis's namespace) is removed. Returns what was done.
pub fn network_unlock(dir: &std::path::Path) -> Result<String> {
    let m = stasis_image::read_manifest(dir)?;
    crate::restore::validate(&m)?;
    let p = &m.process;
    if p.net_lock.is_empty() {
        return Ok(format!("{}: the image records no network lock", dir.display()));
    }
    if !p.net_lock_ns.contains(&0) {
        return Ok(format!(
            "{}: the network lock {} was in the tree's own network namespace; it went away with it",
            dir.display(),
            p.net_lock
        ));
    }
    Ok(if unlock_image(Mode::Nftables, &m)? {
        format!("removed network lock table inet {}", p.net_lock)
    } else {
        format!("no table inet {} here (already removed)", p.net_lock)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_from_images_are_checked() {
        let t = table_name(4242);
        assert!(check_table_name(4242, &t).is_ok(), "{t}");
        assert!(check_table_name(4243, &t).is_err());
        for bad in ["filter", "stasis-4242", "stasis-4242-", "stasis-4242-XYZ", "stasis-4242-1;x", "stasis-4242-12345678901234567", "nat"] {
            assert!(check_table_name(4242, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proc_net_tcp_addresses() {
        assert_eq!(parse_addr("0100007F:1F90"), Some((IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)));
        assert_eq!(parse_addr("00000000000000000000000001000000:0050"), Some((IpAddr::V6(Ipv6Addr::LOCALHOST), 80)));
        let mapped = parse_addr("0000000000000000FFFF00000100007F:0050").unwrap().0;
        assert_eq!(nft_addr(&mapped), ("ip", "127.0.0.1".to_string()));
    }

    #[test]
    fn clients_waiting_on_the_trees_listeners_are_not_locked() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let client = Conn { local: lo, lport: 40000, peer: lo, pport: 5000 };
        let server_end = Conn { local: lo, lport: 5000, peer: lo, pport: 40000 };
        let listeners: BTreeSet<Listener> = [Listener { local: lo, lport: 5000 }].into_iter().collect();
        let unheld: BTreeSet<Conn> = [server_end.clone()].into_iter().collect();
        assert!(waits_on_tree(&client, &unheld, &listeners));
        // a dual-stack listener sees the IPv4 client as v4-mapped
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        let unheld6: BTreeSet<Conn> = [Conn { local: mapped, lport: 5000, peer: mapped, pport: 40000 }].into_iter().collect();
        let wild6: BTreeSet<Listener> = [Listener { local: IpAddr::V6(Ipv6Addr::UNSPECIFIED), lport: 5000 }].into_iter().collect();
        assert!(waits_on_tree(&client, &unheld6, &wild6));
        // accepted already (held), or the listener is not the tree's
        assert!(!waits_on_tree(&client, &BTreeSet::new(), &listeners));
        assert!(!waits_on_tree(&client, &unheld, &BTreeSet::new()));
        assert!(!waits_on_tree(&Conn { pport: 5001, ..client }, &unheld, &listeners));
    }

    #[test]
    fn script_drops_both_directions() {
        let c = Conn { local: IpAddr::V4(Ipv4Addr::LOCALHOST), lport: 80, peer: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), pport: 5555 };
        let s = script("stasis-1-a", &Sockets { conns: [c].into_iter().collect(), ..Default::default() });
        assert!(s.contains("ip saddr 127.0.0.1 ip daddr 10.0.0.2 tcp sport 80 tcp dport 5555 drop"), "{s}");
        assert!(s.contains("ip saddr 10.0.0.2 ip daddr 127.0.0.1 tcp sport 5555 tcp dport 80 drop"), "{s}");
        assert_eq!(s.matches("drop").count(), 4, "{s}");
    }

    #[test]
    fn script_holds_back_new_connections_to_listeners() {
        let l = |local: IpAddr, lport| Listener { local, lport };
        let socks = Sockets {
            listeners: [l(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080), l(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 443)].into_iter().collect(),
            ..Default::default()
        };
        let s = script("stasis-1-a", &socks);
        assert!(s.contains("ip daddr 127.0.0.1 tcp dport 8080 tcp flags & (syn | ack) == syn drop"), "{s}");
        assert!(s.contains("    tcp dport 443 tcp flags & (syn | ack) == syn drop"), "{s}");
        // input only: the listener's own answers are not touched
        let output = &s[s.find("chain output").unwrap()..];
        assert!(!output.contains("syn"), "{s}");
    }
}
