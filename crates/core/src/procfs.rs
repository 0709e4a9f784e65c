//! Parsers for /proc/PID files.

use std::io;

pub fn read(pid: i32, file: &str) -> io::Result<String> {
    std::fs::read_to_string(format!("{}/{file}", dir(pid)))
}

/// One VMA from /proc/PID/smaps.
#[derive(Debug, Clone, Default)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub shared: bool,
    pub pgoff: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    pub path: String,
    pub vm_flags: Vec<String>,
    /// smaps KernelPageSize in bytes (0 when not read: maps text).
    pub page_size: u64,
}

impl MapEntry {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn has_flag(&self, f: &str) -> bool {
        self.vm_flags.iter().any(|x| x == f)
    }
}

fn parse_map_line(line: &str) -> Option<MapEntry> {
    let mut it = line.splitn(6, ' ');
    let range = it.next()?;
    let perms = it.next()?;
    let off = it.next()?;
    let dev = it.next()?;
    let ino = it.next()?;
    let path = it.next().unwrap_or("").trim_start().to_string();
    let (s, e) = range.split_once('-')?;
    let (maj, min) = dev.split_once(':')?;
    let p = perms.as_bytes();
    let mut prot = 0;
    if p[0] == b'r' {
        prot |= libc::PROT_READ as u32;
    }
    if p[1] == b'w' {
        prot |= libc::PROT_WRITE as u32;
    }
    if p[2] == b'x' {
        prot |= libc::PROT_EXEC as u32;
    }
    Some(MapEntry {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        prot,
        shared: p[3] == b's',
        pgoff: u64::from_str_radix(off, 16).ok()?,
        dev_major: u32::from_str_radix(maj, 16).ok()?,
        dev_minor: u32::from_str_radix(min, 16).ok()?,
        inode: ino.parse().ok()?,
        path,
        vm_flags: Vec::new(),
        page_size: 0,
    })
}

/// Parses /proc/PID/smaps (maps lines plus VmFlags).
pub fn smaps(pid: i32) -> io::Result<Vec<MapEntry>> {
    parse_smaps(&read(pid, "smaps")?)
}

pub fn parse_smaps(text: &str) -> io::Result<Vec<MapEntry>> {
    let mut out: Vec<MapEntry> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            if let Some(last) = out.last_mut() {
                last.vm_flags = rest.split_whitespace().map(str::to_string).collect();
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("KernelPageSize:") {
            if let Some(last) = out.last_mut() {
                let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                last.page_size = kb * 1024;
            }
            continue;
        }
        let first = line.split(' ').next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            if let Some(e) = parse_map_line(line) {
                out.push(e);
                continue;
            }
        }
    }
    Ok(out)
}

/// Parses /proc/self/maps (no VmFlags).
pub fn maps_self() -> io::Result<Vec<MapEntry>> {
    Ok(parse_maps(&std::fs::read_to_string("/proc/self/maps")?))
}

/// Parses /proc/PID/maps style text (no VmFlags).
pub fn parse_maps(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(parse_map_line).collect()
}

/// "Key:\tvalue" lines of /proc/PID/status.
pub fn status(pid: i32) -> io::Result<Vec<(String, String)>> {
    status_of(pid, "status")
}

/// "Key:\tvalue" lines of /proc/PID/task/TID/status (per-thread: credentials, umask).
pub fn task_status(pid: i32, tid: i32) -> io::Result<Vec<(String, String)>> {
    status_of(pid, &format!("task/{tid}/status"))
}

fn status_of(pid: i32, file: &str) -> io::Result<Vec<(String, String)>> {
    Ok(read(pid, file)?
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.to_string(), v.trim().to_string())))
        .collect())
}

pub fn status_field<'a>(st: &'a [(String, String)], key: &str) -> Option<&'a str> {
    st.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Fields of /proc/PID/stat after the comm, 0-based from field 3 (state).
pub fn stat_fields(pid: i32) -> io::Result<Vec<String>> {
    fields_of(&read(pid, "stat")?)
}

/// Fields of /proc/PID/task/TID/stat (the task's own exit signal and exit code), as
/// `stat_fields`.
pub fn task_stat_fields(pid: i32, tid: i32) -> io::Result<Vec<String>> {
    fields_of(&read(pid, &format!("task/{tid}/stat"))?)
}

fn fields_of(s: &str) -> io::Result<Vec<String>> {
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    Ok(rest.split_whitespace().map(str::to_string).collect())
}

/// PF_EXITING in stat's flags (field 9): the task's exit has begun.
const PF_EXITING: u64 = 0x4;

/// Task `tid` of process `pid`: its state letter, and whether its exit has begun (state
/// Z or X, or PF_EXITING: ptrace refuses such a task, its /proc files empty out). None:
/// the task is gone.
pub fn task_exit_state(pid: i32, tid: i32) -> Option<(char, bool)> {
    let s = read(pid, &format!("task/{tid}/stat")).ok()?;
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    let state = f.first()?.chars().next()?;
    let flags: u64 = f.get(6).and_then(|v| v.parse().ok()).unwrap_or(0);
    Some((state, matches!(state, 'Z' | 'X') || flags & PF_EXITING != 0))
}

/// Polls (every millisecond) until task `tid` of `pid` shows `state` in its stat, for at
/// most `within`: whether it did.
pub fn wait_task_state(pid: i32, tid: i32, state: char, within: std::time::Duration) -> bool {
    let t0 = std::time::Instant::now();
    while task_exit_state(pid, tid).is_none_or(|(s, _)| s != state) {
        if t0.elapsed() > within {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}

/// stat field by its 1-based number in proc(5).
pub fn stat_num(fields: &[String], n: usize) -> u64 {
    fields.get(n - 3).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Whether the process group of `pid` is orphaned, as the kernel decides it
/// (will_become_orphaned_pgrp): no live member has a parent, other than init, in
/// another group of the same session. The kernel drops SIGTSTP, SIGTTIN and SIGTTOU
/// sent to such a group instead of stopping it.
pub fn pgrp_orphaned(pid: i32) -> bool {
    let Ok(f) = stat_fields(pid) else { return false };
    let (pgid, sid) = (stat_num(&f, 5), stat_num(&f, 6));
    let Ok(rd) = std::fs::read_dir("/proc") else { return false };
    for e in rd.flatten() {
        let Some(q) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(qf) = stat_fields(q) else { continue };
        if stat_num(&qf, 5) != pgid || qf.first().is_some_and(|s| s == "Z") {
            continue;
        }
        let ppid = stat_num(&qf, 4) as i32;
        if ppid <= 1 {
            continue;
        }
        if let Ok(pf) = stat_fields(ppid) {
            if stat_num(&pf, 5) != pgid && stat_num(&pf, 6) == sid {
                return false;
            }
        }
    }
    true
}

pub fn tids(pid: i32) -> io::Result<Vec<i32>> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("{}/task", dir(pid)))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    Ok(v)
}

#[derive(Debug, Clone, Default)]
pub struct FdInfo {
    pub pos: u64,
    pub flags: u32,
    pub mnt_id: u64,
}

pub fn fdinfo(pid: i32, fd: i32) -> io::Result<FdInfo> {
    let t = read(pid, &format!("fdinfo/{fd}"))?;
    let mut i = FdInfo::default();
    for l in t.lines() {
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            match k {
                "pos" => i.pos = v.parse().unwrap_or(0),
                "flags" => i.flags = u32::from_str_radix(v, 8).unwrap_or(0),
                "mnt_id" => i.mnt_id = v.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    Ok(i)
}

pub fn fds(pid: i32) -> io::Result<Vec<i32>> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("{}/fd", dir(pid)))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort();
    Ok(v)
}

/// One entry of /proc/PID/timers.
#[derive(Debug, Clone, Default)]
pub struct TimerEntry {
    pub id: i32,
    pub signo: i32,
    pub sigval: u64,
    pub notify: String,
    pub notify_tid: i32,
    /// "tid.N": SIGEV_THREAD_ID, the signal goes to thread N only.
    pub to_thread: bool,
    pub clock: i32,
}

pub fn timers(pid: i32) -> io::Result<Vec<TimerEntry>> {
    let t = read(pid, "timers").unwrap_or_default();
    let mut out: Vec<TimerEntry> = Vec::new();
    for l in t.lines() {
        let Some((k, v)) = l.split_once(':') else { continue };
        let v = v.trim();
        match k {
            "ID" => out.push(TimerEntry { id: v.parse().unwrap_or(0), ..Default::default() }),
            "signal" => {
                if let Some(e) = out.last_mut() {
                    let (s, val) = v.split_once('/').unwrap_or((v, "0"));
                    e.signo = s.parse().unwrap_or(0);
                    e.sigval = u64::from_str_radix(val, 16).unwrap_or(0);
                }
            }
            "notify" => {
                if let Some(e) = out.last_mut() {
                    let (kind, who) = v.split_once('/').unwrap_or((v, ""));
                    e.notify = kind.to_string();
                    e.to_thread = who.starts_with("tid.");
                    e.notify_tid = who.rsplit('.').next().and_then(|x| x.parse().ok()).unwrap_or(0);
                }
            }
            "ClockID" => {
                if let Some(e) = out.last_mut() {
                    e.clock = v.parse().unwrap_or(0);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

pub fn auxv(pid: i32) -> io::Result<Vec<u64>> {
    let b = std::fs::read(format!("{}/auxv", dir(pid)))?;
    Ok(b.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect())
}

pub fn readlink(path: &str) -> io::Result<String> {
    Ok(std::fs::read_link(path)?.to_string_lossy().into_owned())
}

/// Processes of the dump whose main thread has exited while other threads run (its
/// /proc/PID entries that need the process's memory, files, fs or namespaces are empty
/// or fail for the zombie leader): pid → a live (frozen) thread of the process, through
/// which their process-wide state is read (/proc/TID/..., kcmp, pidfd_getfd).
static VIA: std::sync::Mutex<std::collections::BTreeMap<i32, i32>> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The task through which process `pid`'s state is read: `pid` itself, or the live thread
/// registered for a process whose main thread has exited.
pub fn via(pid: i32) -> i32 {
    VIA.lock().map(|m| m.get(&pid).copied().unwrap_or(pid)).unwrap_or(pid)
}

/// Reads process `pid`'s state through its thread `tid` from now on (`None`: through
/// `pid` again).
pub fn set_via(pid: i32, tid: Option<i32>) {
    if let Ok(mut m) = VIA.lock() {
        match tid {
            Some(t) => m.insert(pid, t),
            None => m.remove(&pid),
        };
    }
}

/// /proc/PID of process `pid`, as `via` reads it (no trailing slash).
pub fn dir(pid: i32) -> String {
    format!("/proc/{}", via(pid))
}

/// A pidfd of process `pid` that reaches its fd table (pidfd_getfd): of the live thread
/// `via` names when its main thread has exited (PIDFD_THREAD, Linux 6.9+).
pub fn pidfd(pid: i32) -> io::Result<std::os::fd::OwnedFd> {
    match via(pid) {
        t if t == pid => stasis_sys::sys::pidfd_open(pid),
        t => stasis_sys::sys::pidfd_open_flags(t, libc::O_EXCL as u32),
    }
}

/// Forgets every process `set_via` named (the end of a dump).
pub fn clear_via() {
    if let Ok(mut m) = VIA.lock() {
        m.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_parse() {
        let t = "7f00-7f10 rw-p 00000000 00:00 0 \nSize: 4 kB\nKernelPageSize:        4 kB\nVmFlags: rd wr mr mw me ac dc\n\
                 7f10-7f20 r-xp 00001000 fd:01 1234                       /usr/lib/libc.so.6\nVmFlags: rd ex\n\
                 7ff0-7ff1 rw-s 00000000 00:01 99 /dev/zero (deleted)\n\
                 7fde38200000-7fde38600000 rw-s 00000000 00:11 2962664 /anon_hugepage (deleted)\nKernelPageSize:     2048 kB\nVmFlags: rd wr sh ht\n";
        let v = parse_smaps(t).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!((v[0].page_size, v[1].page_size, v[3].page_size), (4096, 0, 2 << 20));
        assert!(v[3].has_flag("ht"));
        assert_eq!(v[0].start, 0x7f00);
        assert!(v[0].has_flag("dc"));
        assert_eq!(v[1].path, "/usr/lib/libc.so.6");
        assert_eq!(v[1].pgoff, 0x1000);
        assert_eq!(v[1].prot, (libc::PROT_READ | libc::PROT_EXEC) as u32);
        assert!(v[2].shared);
        assert_eq!(v[2].path, "/dev/zero (deleted)");
        assert_eq!(v[2].inode, 99);
    }
}
