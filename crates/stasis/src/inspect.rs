//! `stasis inspect DIR [--json]`: what an image holds.

use std::path::Path;

use serde_json::{json, Value};
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
        VmaKind::Unknown => "unknown",
    }
}

fn prot(p: u32) -> String {
    let f = |b: i32, c: char| if p & b as u32 != 0 { c } else { '-' };
    format!("{}{}{}", f(libc::PROT_READ, 'r'), f(libc::PROT_WRITE, 'w'), f(libc::PROT_EXEC, 'x'))
}

/// The `--external` name of the shared memory a VMA maps ("" if none).
fn vma_external(m: &stasis_image::Manifest, v: &Vma) -> String {
    let ghost = m.object(v.object_id).and_then(|o| o.mapped_file.as_ref()).and_then(|f| m.object(f.ghost_id));
    ghost.and_then(|o| o.ghost.as_ref()).map(|g| g.external.clone()).unwrap_or_default()
}

fn object_desc(m: &stasis_image::Manifest, id: u32) -> Value {
    let Some(o) = m.object(id) else { return json!({"kind": "missing", "id": id}) };
    if let Some(f) = &o.file {
        let ghost = m.object(f.ghost_id).and_then(|o| o.ghost.as_ref());
        let kind = match ghost {
            Some(g) if !g.memfd_name.is_empty() => "memfd",
            Some(_) => "deleted-file",
            None => "file",
        };
        json!({"kind": kind, "id": id, "path": f.path, "flags": format!("{:#o}", f.flags), "pos": f.pos,
               "content_bytes": ghost.map(|g| g.content.len()).unwrap_or(0),
               "external": ghost.map(|g| g.external.clone()).unwrap_or_default()})
    } else if let Some(e) = &o.pipe_end {
        let p = m.object(e.pipe_id).and_then(|o| o.pipe.clone()).unwrap_or_default();
        json!({"kind": if e.write_end {"pipe-write"} else {"pipe-read"}, "id": id, "pipe": e.pipe_id,
               "buffered_bytes": p.data.len(), "capacity": p.capacity, "external": p.external})
    } else if let Some(ff) = &o.fifo_fd {
        let f = m.object(ff.fifo_id).and_then(|o| o.fifo.clone()).unwrap_or_default();
        let mode = match ff.flags & libc::O_ACCMODE as u32 {
            0 => "r",
            1 => "w",
            _ => "rw",
        };
        json!({"kind": "fifo", "id": id, "fifo": ff.fifo_id, "path": f.path, "mode": mode,
               "flags": format!("{:#o}", ff.flags), "buffered_bytes": f.data.len(), "capacity": f.capacity,
               "external": f.external})
    } else if let Some(u) = &o.unix {
        let ty = stasis_core::fdkinds::unix::type_name(u.sock_type);
        if u.peer_ino != 0 {
            json!({"kind": "unix-pair", "id": id, "type": ty, "inode": u.ino, "peer_inode": u.peer_ino,
                   "queued_bytes": u.queue.len(), "shutdown": u.shutdown, "net_ns": o.net_ns})
        } else {
            json!({"kind": "unix-bound", "id": id, "type": ty, "name": String::from_utf8_lossy(&u.name),
                   "listening": u.listening, "backlog": u.backlog, "net_ns": o.net_ns})
        }
    } else if let Some(i) = &o.inet {
        let proto = if i.protocol == libc::IPPROTO_TCP { "tcp" } else { "udp" };
        let port = |a: &[u8]| if a.len() >= 4 { u16::from_be_bytes([a[2], a[3]]) } else { 0 };
        let state = if i.listening { "listening" } else if i.tcp.is_some() { "established" } else { "idle" };
        json!({"kind": proto, "id": id, "family": if i.family == libc::AF_INET6 { 6 } else { 4 },
               "local_port": port(&i.local), "peer_port": port(&i.peer), "state": state,
               "queued_bytes": i.tcp.as_ref().map(|t| t.send_queue.len() + t.recv_queue.len()).unwrap_or(0),
               "net_ns": o.net_ns})
    } else if let Some((kind, what)) = stasis_core::fdkinds::describe(o) {
        json!({"kind": kind, "id": id, "state": what})
    } else {
        json!({"kind": "other", "id": id})
    }
}

/// UTS/IPC namespaces of the tree's own and the SysV objects the image holds.
fn ipc_json(m: &stasis_image::Manifest) -> Value {
    let ns_name = |id: u32| if id == 0 { "stasis's own".to_string() } else { format!("object {id}") };
    let perm = |p: &Option<SysvPerm>| {
        let p = p.clone().unwrap_or_default();
        json!({"id": p.id, "key": format!("{:#x}", p.key), "owner": format!("{}:{}", p.uid, p.gid), "mode": format!("{:o}", p.mode)})
    };
    let mut out = Vec::new();
    for o in &m.objects {
        let mut d = if let Some(u) = &o.uts_ns {
            json!({"kind": "uts-ns", "inode": u.ino, "hostname": String::from_utf8_lossy(&u.hostname), "domainname": String::from_utf8_lossy(&u.domainname)})
        } else if let Some(n) = &o.ipc_ns {
            json!({"kind": "ipc-ns", "inode": n.ino, "sysctls": n.sysctls.iter().map(|s| format!("{}={}", s.name, s.value)).collect::<Vec<_>>()})
        } else if let Some(s) = &o.sysv_shm {
            let pages: u64 = m.index.runs.iter().filter(|r| r.object_id == o.id).map(|r| r.count as u64).sum();
            json!({"kind": "sysv-shm", "ns": ns_name(s.ipc_ns), "perm": perm(&s.perm), "size": s.size, "pages_saved": pages,
                   "destroyed": s.destroyed, "locked": s.locked})
        } else if let Some(q) = &o.sysv_msg {
            json!({"kind": "sysv-msg", "ns": ns_name(q.ipc_ns), "perm": perm(&q.perm), "qbytes": q.qbytes, "messages": q.messages.len(),
                   "bytes": q.messages.iter().map(|x| x.data.len()).sum::<usize>()})
        } else if let Some(s) = &o.sysv_sem {
            json!({"kind": "sysv-sem", "ns": ns_name(s.ipc_ns), "perm": perm(&s.perm), "values": s.values})
        } else {
            continue;
        };
        d["object"] = json!(o.id);
        out.push(d);
    }
    Value::Array(out)
}

pub fn to_json(m: &stasis_image::Manifest, dir: &Path) -> Value {
    let p = &m.process;
    let threads: Vec<Value> = p
        .threads
        .iter()
        .map(|t| {
            json!({"tid": t.tid, "comm": t.comm, "sigmask": format!("{:#x}", t.sigmask),
                   "in_syscall": t.in_syscall, "pending_signals": t.pending.iter().map(|s| s.signo).collect::<Vec<_>>(),
                   "rseq": format!("{:#x}", t.rseq_addr), "xstate_bytes": t.xstate.len()})
        })
        .collect();
    let vmas: Vec<Value> = p
        .vmas
        .iter()
        .map(|v| {
            json!({"start": format!("{:#x}", v.start), "end": format!("{:#x}", v.end), "size": v.end - v.start,
                   "prot": prot(v.prot), "shared": v.shared, "kind": kind_name(v.kind), "name": v.name,
                   "pages_saved": v.pages_saved, "flags": v.vm_flags, "external": vma_external(m, v)})
        })
        .collect();
    let fds_of = |q: &Process| -> Vec<Value> {
        q.fds
            .iter()
            .map(|f| {
                let mut d = object_desc(m, f.object_id);
                d["fd"] = json!(f.fd);
                d["cloexec"] = json!(f.cloexec);
                d
            })
            .collect()
    };
    let fds = fds_of(p);
    let processes: Vec<Value> = m
        .processes
        .iter()
        .map(|q| {
            let a = q.attrs.clone().unwrap_or_default();
            let shares: Vec<&str> = [(q.shares_files, "files"), (q.shares_fs, "fs"), (q.shares_vm, "vm"), (q.shares_sighand, "sighand")]
                .iter()
                .filter(|x| x.0)
                .map(|x| x.1)
                .collect();
            json!({"pid": q.pid, "ppid": q.ppid, "comm": q.comm, "zombie": q.zombie, "exit_status": q.exit_status,
                   "pgid": a.pgid, "sid": a.sid, "ns_pids": q.ns_pids, "exit_signal": q.exit_signal,
                   "shares_with_parent": shares, "mount_proc": q.mount_proc,
                   "threads": q.threads.len(), "fds": fds_of(q)})
        })
        .collect();
    let size = |f: &str| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0);
    let c = p.creds.clone().unwrap_or_default();
    let a = p.attrs.clone().unwrap_or_default();
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
        "credentials": {"uids": c.uids, "gids": c.gids, "groups": c.groups,
            "cap_eff": format!("{:#x}", c.cap_eff), "cap_prm": format!("{:#x}", c.cap_prm),
            "cap_inh": format!("{:#x}", c.cap_inh), "cap_bnd": format!("{:#x}", c.cap_bnd),
            "cap_amb": format!("{:#x}", c.cap_amb), "securebits": c.securebits},
        "attributes": {"cwd": a.cwd, "root": a.root, "umask": format!("{:04o}", a.umask),
            "personality": format!("{:#x}", a.personality), "oom_score_adj": a.oom_score_adj, "dumpable": a.dumpable},
        "signal_handlers": p.sigactions.len(),
        "pending_signals": p.shared_pending.iter().map(|s| s.signo).collect::<Vec<_>>(),
        "itimers": p.itimers.len(),
        "posix_timers": p.posix_timers.len(),
        "objects": m.objects.len(),
        "namespaces": m.processes.iter().map(|q| json!({"pid": q.pid, "uts_ns": q.uts_ns, "ipc_ns": q.ipc_ns, "mnt_ns": q.mnt_ns, "pid_levels": q.ns_pids.len().max(1)})).collect::<Vec<_>>(),
        "sysv_ipc": ipc_json(m),
        "pages": {"runs": m.index.runs.len(), "pages": m.index.runs.iter().map(|r| r.count as u64).sum::<u64>(),
            "stored": stasis_image::stored_pages(&m.index.runs)},
        "sizes": {"manifest.img": size(stasis_image::MANIFEST),
            "pages": (0..m.end.shards.len() as u32).map(|k| json!({"file": stasis_image::pages_file_name(k), "bytes": size(&stasis_image::pages_file_name(k))})).collect::<Vec<_>>(),
            "records": m.record_sizes.iter().map(|(t, s)| json!({"type": format!("{t:#x}"), "bytes": s})).collect::<Vec<_>>()},
    })
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
    println!("process {} '{}' dumped on kernel {}", p.pid, p.comm, p.kernel);
    if m.processes.len() > 1 || p.ns_pids.len() > 1 {
        println!("tree: {} processes", m.processes.len());
        for q in &m.processes {
            let a = q.attrs.clone().unwrap_or_default();
            let mut extra = String::new();
            if q.zombie {
                extra += &format!(" zombie (wait status {:#x})", q.exit_status);
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
    println!("threads: {}", p.threads.len());
    for t in &p.threads {
        println!("  tid {:>7} {:<16} sigmask {:#018x} syscall {}", t.tid, t.comm, t.sigmask, t.in_syscall);
    }
    let saved: u64 = p.vmas.iter().map(|v| v.pages_saved).sum();
    println!("memory: {} VMAs, {} pages saved ({} KiB)", p.vmas.len(), saved, saved * 4);
    for v in &p.vmas {
        println!(
            "  {:#014x}-{:#014x} {} {} {:>12} {:>8} pages saved  {} {}{}",
            v.start,
            v.end,
            prot(v.prot),
            if v.shared { 's' } else { 'p' },
            kind_name(v.kind),
            v.pages_saved,
            v.name,
            v.vm_flags.join(","),
            match vma_external(&m, v) {
                e if e.is_empty() => String::new(),
                e => format!(" (external {e})"),
            }
        );
    }
    println!("fds: {}", p.fds.len());
    for f in j["fds"].as_array().into_iter().flatten() {
        println!("  {}", f);
    }
    println!("credentials: {}", j["credentials"]);
    println!("attributes: {}", j["attributes"]);
    println!(
        "signals: {} handlers, pending {:?}; itimers {}; POSIX timers {}",
        p.sigactions.len(),
        j["pending_signals"],
        p.itimers.len(),
        p.posix_timers.len()
    );
    for o in j["sysv_ipc"].as_array().into_iter().flatten() {
        println!("ipc: {o}");
    }
    println!(
        "page index: {} runs, {} pages restored, {} stored in the pages files",
        j["pages"]["runs"], j["pages"]["pages"], j["pages"]["stored"]
    );
    println!("sizes: {}", j["sizes"]);
    Ok(())
}
