//! Probes of process control: ptrace, registers, rseq, pidfd, kcmp, clone3, PR_SET_MM, vDSO.

use super::*;

// ---------------------------------------------------------------------------------------------
// The probes
// ---------------------------------------------------------------------------------------------

pub(super) fn probe_ptrace_seize() -> Outcome {
    let child = seized_child()?;
    Ok(format!("child {} stopped in PTRACE_EVENT_STOP", child.pid))
}

pub(super) fn probe_xstate() -> Outcome {
    let child = seized_child()?;
    let mut buf = vec![0u64; 8192]; // 64 KiB: more than any XSAVE area (AMX is ~11 KiB)
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len() * 8,
    };
    // SAFETY: `iov` describes `buf`, which outlives the call; the kernel writes at most
    // iov_len bytes there and updates iov_len.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GETREGSET,
            child.pid,
            NT_X86_XSTATE as *mut c_void,
            &mut iov as *mut libc::iovec as *mut c_void,
        )
    };
    sys(r, "PTRACE_GETREGSET NT_X86_XSTATE")?;
    if iov.iov_len < 576 {
        return Err(Missing::new(format!(
            "XSAVE area is only {} bytes",
            iov.iov_len
        )));
    }
    // For ptrace the first word of the FXSAVE area's software-reserved bytes (offset 464)
    // carries XCR0, the set of state components the kernel saves.
    let xfeatures = buf[464 / 8];
    Ok(format!("{} bytes, xfeatures {xfeatures:#x}", iov.iov_len))
}

pub(super) fn probe_rseq() -> Outcome {
    let child = seized_child()?;
    let mut conf = RseqConfiguration::default();
    // SAFETY: addr is the size of `conf` and data points at it; the kernel writes at most
    // that many bytes.
    let r = unsafe {
        libc::ptrace(
            PTRACE_GET_RSEQ_CONFIGURATION,
            child.pid,
            size_of::<RseqConfiguration>() as *mut c_void,
            &mut conf as *mut RseqConfiguration as *mut c_void,
        )
    };
    sys(r, "PTRACE_GET_RSEQ_CONFIGURATION")?;
    if conf.rseq_abi_pointer == 0 {
        Ok("works (the child has no rseq area registered)".into())
    } else {
        Ok(format!(
            "rseq area {:#x}, {} bytes, signature {:#010x}",
            conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature
        ))
    }
}

pub(super) fn probe_peeksiginfo() -> Outcome {
    // Block SIGUSR1 around the fork so the child inherits it blocked: the signal we queue
    // below stays pending whatever the child is doing.
    // SAFETY: sigemptyset/sigaddset fill a local set; pthread_sigmask changes only this
    // thread's mask, and we restore it right after the fork.
    let child = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let child = seized_child();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        child
    }?;
    // SAFETY: sends SIGUSR1 to our own (stopped, unreaped) child.
    let r = unsafe { libc::kill(child.pid, libc::SIGUSR1) };
    sys(r as c_long, "kill(SIGUSR1)")?;
    let mut args = PeekSiginfoArgs {
        off: 0,
        flags: PTRACE_PEEKSIGINFO_SHARED as u32,
        nr: 1,
    };
    let mut si = [0u8; 128]; // one siginfo_t
                             // SAFETY: addr points at the argument struct, data at room for `nr` (1) siginfo_t.
    let r = unsafe {
        libc::ptrace(
            PTRACE_PEEKSIGINFO,
            child.pid,
            &mut args as *mut PeekSiginfoArgs as *mut c_void,
            si.as_mut_ptr() as *mut c_void,
        )
    };
    let n = sys(r, "PTRACE_PEEKSIGINFO")?;
    let signo = i32::from_ne_bytes(si[0..4].try_into().expect("4 bytes"));
    if n != 1 || signo != libc::SIGUSR1 {
        return Err(Missing::new(format!(
            "queued SIGUSR1 but PTRACE_PEEKSIGINFO returned {n} entries (signal {signo})"
        )));
    }
    Ok("read back a queued SIGUSR1".into())
}

pub(super) fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub(super) fn probe_process_vm() -> Outcome {
    let len = 8192;
    let original = pattern(7, len);
    // The child gets a copy of `original` at the same address.
    // SAFETY: `idle` only calls pause().
    let child = unsafe { Child::fork(idle) }?;
    let addr = original.as_ptr() as u64;
    let errno_of = |e: std::io::Error| e.raw_os_error().unwrap_or(0);
    let read_remote = || {
        crate::sys::read_mem(child.pid, addr, len).map_err(|e| Missing::sys("process_vm_readv", errno_of(e)))
    };
    if read_remote()? != original {
        return Err(Missing::new(
            "process_vm_readv returned different bytes than the child holds",
        ));
    }
    let replacement = pattern(99, len);
    crate::sys::write_mem(child.pid, addr, &replacement)
        .map_err(|e| Missing::sys("process_vm_writev", errno_of(e)))?;
    if read_remote()? != replacement {
        return Err(Missing::new(
            "bytes written with process_vm_writev did not read back",
        ));
    }
    if original != pattern(7, len) {
        return Err(Missing::new("process_vm_writev changed our own memory"));
    }
    Ok(format!("{} KiB read, written and read back", len / 1024))
}

pub(super) fn probe_pagemap() -> Outcome {
    let mut m = anon(page_size())?;
    touch(&mut m, 0, 1);
    let e = pagemap_entry(getpid(), m.addr() as usize)?;
    if e & PM_PRESENT == 0 {
        return Err(Missing::new(format!(
            "a page just written is not present (entry {e:#x})"
        )));
    }
    if e & PM_PFN_MASK == 0 {
        return Err(Missing::new("PFNs read as zero (needs CAP_SYS_ADMIN)"));
    }
    Ok("present bit and PFN visible".into())
}

pub(super) fn probe_map_files() -> Outcome {
    let dir = format!("/proc/{}/map_files", getpid());
    let here = probe_map_files as *const () as usize as u64;
    let mut entries = 0;
    let mut ours = None;
    for ent in fs::read_dir(&dir).map_err(|e| io_missing(&format!("list {dir}"), &e))? {
        let ent = ent.map_err(|e| io_missing(&format!("list {dir}"), &e))?;
        entries += 1;
        let name = ent.file_name().to_string_lossy().into_owned();
        if let Some((a, b)) = name.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                if a <= here && here < b {
                    ours = Some(ent.path());
                }
            }
        }
    }
    let link =
        ours.ok_or_else(|| Missing::new(format!("no entry in {dir} covers our own code")))?;
    let target = fs::read_link(&link).map_err(|e| io_missing("readlink map_files entry", &e))?;
    let mut f = File::open(&link).map_err(|e| {
        let what = if e.raw_os_error() == Some(libc::EPERM) {
            "open a map_files entry (needs CAP_CHECKPOINT_RESTORE)"
        } else {
            "open a map_files entry"
        };
        io_missing(what, &e)
    })?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .map_err(|e| io_missing("read map_files entry", &e))?;
    if &magic != b"\x7fELF" {
        return Err(Missing::new(format!(
            "{} opened through map_files is not our ELF binary",
            target.display()
        )));
    }
    Ok(format!("{entries} entries; opened our own code mapping"))
}

pub(super) fn read_number(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Fork a child with PID `want` through clone3(set_tid); the child exits at once.
/// Returns the PID the kernel gave it.
pub(super) fn clone3_with_pid(want: pid_t) -> Result<pid_t, Missing> {
    let tids: [pid_t; 1] = [want];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tids.as_ptr() as u64,
        set_tid_size: 1,
        ..Default::default()
    };
    // SAFETY: clone3 without CLONE_VM behaves like fork: the child gets a copy of our memory,
    // and the only thing it does is _exit. `args` and `tids` are alive for the call.
    let r = unsafe {
        libc::syscall(
            SYS_CLONE3,
            &args as *const CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        // SAFETY: in the child: leave immediately, without running any Rust code.
        unsafe { libc::_exit(0) }
    }
    let pid = sys(r, "clone3")? as pid_t;
    let mut child = Child { pid, reaped: false };
    let code = child.exit_code(Duration::from_secs(2))?;
    if code != 0 {
        return Err(Missing::new(format!(
            "clone3 child exited with status {code}"
        )));
    }
    Ok(pid)
}

pub(super) fn probe_clone3_set_tid() -> Outcome {
    let pid_max = read_number("/proc/sys/kernel/pid_max")
        .unwrap_or(32768)
        .max(1000);
    let last = read_number("/proc/sys/kernel/ns_last_pid").unwrap_or(getpid() as i64);
    let span = pid_max - 300;
    let mut tried = 0;
    for attempt in 0..64i64 {
        let want = (300 + (last + 1000 + attempt * 7919 - 300).rem_euclid(span)) as pid_t;
        if Path::new(&format!("/proc/{want}")).exists() {
            continue; // in use (as a process or a thread)
        }
        tried += 1;
        match clone3_with_pid(want) {
            Ok(got) if got == want => return Ok(format!("child created with chosen PID {want}")),
            Ok(got) => {
                return Err(Missing::new(format!(
                    "asked clone3 for PID {want}, got {got}"
                )));
            }
            // Someone took the PID between our look and the call: pick another one.
            Err(Missing {
                errno: Some(libc::EEXIST),
                ..
            }) if tried < 8 => continue,
            Err(Missing {
                errno: Some(libc::EPERM),
                ..
            }) => {
                return Err(Missing::sys(
                    "clone3 with set_tid (needs CAP_CHECKPOINT_RESTORE)",
                    libc::EPERM,
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Err(Missing::new("found no free PID to try"))
}

pub(super) fn pidfd_open(pid: pid_t) -> Result<OwnedFd, Missing> {
    // SAFETY: pidfd_open takes a PID and flags and returns a new descriptor.
    let r = unsafe { libc::syscall(SYS_PIDFD_OPEN, pid, 0) };
    let fd = sys(r, "pidfd_open")?;
    // SAFETY: the kernel just created this descriptor for us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(super) fn probe_pidfd() -> Outcome {
    let exe = File::open("/proc/self/exe").map_err(|e| io_missing("open /proc/self/exe", &e))?;
    // SAFETY: `idle` only calls pause().
    let child = unsafe { Child::fork(idle) }?; // inherits the descriptor `exe`
    let pidfd = pidfd_open(child.pid)?;
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number in that process and flags, and
    // returns a new descriptor in ours.
    let r = unsafe { libc::syscall(SYS_PIDFD_GETFD, pidfd.as_raw_fd(), exe.as_raw_fd(), 0) };
    let fd = sys(r, "pidfd_getfd")?;
    // SAFETY: the kernel just installed this descriptor for us alone.
    let got = File::from(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
    if !same_file(&exe, &got)? {
        return Err(Missing::new("pidfd_getfd returned a different file"));
    }
    Ok(format!(
        "took descriptor {} out of child {}",
        exe.as_raw_fd(),
        child.pid
    ))
}

pub(super) fn kcmp_file(pid1: pid_t, pid2: pid_t, fd1: RawFd, fd2: RawFd) -> Result<c_long, Missing> {
    // SAFETY: kcmp only compares kernel objects named by (pid, fd) pairs.
    let r = unsafe {
        libc::syscall(
            SYS_KCMP,
            pid1,
            pid2,
            KCMP_FILE,
            fd1 as c_ulong,
            fd2 as c_ulong,
        )
    };
    sys(r, "kcmp(KCMP_FILE)")
}

pub(super) fn probe_kcmp() -> Outcome {
    let shared = File::open("/proc/self/exe").map_err(|e| io_missing("open /proc/self/exe", &e))?;
    // SAFETY: `idle` only calls pause().
    let child = unsafe { Child::fork(idle) }?; // shares `shared`'s open file description
    let other = File::open("/dev/null").map_err(|e| io_missing("open /dev/null", &e))?;
    let me = getpid();
    let same = kcmp_file(me, child.pid, shared.as_raw_fd(), shared.as_raw_fd())?;
    if same != 0 {
        return Err(Missing::new(format!(
            "kcmp says an inherited file differs (returned {same})"
        )));
    }
    let differ = kcmp_file(me, child.pid, other.as_raw_fd(), shared.as_raw_fd())?;
    if differ == 0 {
        return Err(Missing::new("kcmp says two different files are the same"));
    }
    Ok("told shared and distinct files apart across processes".into())
}

/// Our own memory layout as PR_SET_MM_MAP wants it (it is identical in a forked child).
pub(super) fn current_mm_map() -> Result<PrctlMmMap, Missing> {
    let stat = fs::read_to_string("/proc/self/stat")
        .map_err(|e| io_missing("read /proc/self/stat", &e))?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // `fields[0]` is field 3 (state) of proc(5).
    let field = |n: usize| fields.get(n - 3).copied().unwrap_or(0);
    // SAFETY: brk(0) changes nothing and returns the current program break.
    let brk = unsafe { libc::syscall(SYS_BRK, 0) } as u64;
    Ok(PrctlMmMap {
        start_code: field(26),
        end_code: field(27),
        start_stack: field(28),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        brk: brk.max(field(47)),
        arg_start: field(48),
        arg_end: field(49),
        env_start: field(50),
        env_end: field(51),
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX, // -1: leave /proc/PID/exe alone
    })
}

pub(super) fn probe_set_mm() -> Outcome {
    let mut size: c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one unsigned int to the address we pass.
    let r = unsafe {
        libc::prctl(
            PR_SET_MM,
            PR_SET_MM_MAP_SIZE,
            &mut size as *mut c_uint as c_ulong,
            0,
            0,
        )
    };
    sys(r as c_long, "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE)")?;
    if size as usize != size_of::<PrctlMmMap>() {
        return Err(Missing::new(format!(
            "kernel's struct prctl_mm_map is {size} bytes, stasis uses {}",
            size_of::<PrctlMmMap>()
        )));
    }
    // Now the call restore really makes: PR_SET_MM_MAP with the current layout, in a child.
    let map = current_mm_map()?;
    let body = move |out: &mut [i64; 1]| {
        // SAFETY: `map` is a live local of the size we pass; setting the layout to what it
        // already is changes nothing, and this child exits right after.
        let r = unsafe {
            libc::prctl(
                PR_SET_MM,
                PR_SET_MM_MAP,
                &map as *const PrctlMmMap as c_ulong,
                size_of::<PrctlMmMap>(),
                0,
            )
        };
        out[0] = if r < 0 { errno() as i64 } else { 0 };
    };
    // SAFETY: the body makes one prctl and stores into `out`.
    let [err] = unsafe { in_child::<1>(body) }?;
    if err != 0 {
        return Err(Missing::sys(
            "PR_SET_MM_MAP with the current layout (in a child)",
            err as i32,
        ));
    }
    Ok(format!(
        "map size {size}; PR_SET_MM_MAP accepted in a child"
    ))
}

pub(super) fn probe_tid_address() -> Outcome {
    let mut addr: u64 = 0;
    // SAFETY: PR_GET_TID_ADDRESS stores one pointer at the address we pass.
    let r = unsafe {
        libc::prctl(
            PR_GET_TID_ADDRESS,
            &mut addr as *mut u64 as c_ulong,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        let e = errno();
        let why = if e == libc::EINVAL {
            "prctl(PR_GET_TID_ADDRESS) (kernel without CONFIG_CHECKPOINT_RESTORE?)"
        } else {
            "prctl(PR_GET_TID_ADDRESS)"
        };
        return Err(Missing::sys(why, e));
    }
    Ok(format!("clear_child_tid = {addr:#x}"))
}

pub(super) fn probe_vdso() -> Outcome {
    let maps = fs::read_to_string("/proc/self/maps")
        .map_err(|e| io_missing("read /proc/self/maps", &e))?;
    let l = parse_vdso_layout(&maps);
    if l.vdso_size() == 0 {
        return Err(Missing::new("no [vdso] mapping in /proc/self/maps"));
    }
    let kib = |n: u64| n / 1024;
    let sizes = format!(
        "[vvar] {} KiB, [vvar_vclock] {} KiB, [vdso] {} KiB",
        kib(l.vvar_size()),
        kib(l.vvar_vclock_size()),
        kib(l.vdso_size())
    );
    // Restore must move these mappings to where the dumped process had them: try it in a
    // child (which must not use the vDSO afterwards; it only makes raw syscalls).
    let regions = [l.vvar, l.vvar_vclock, l.vdso];
    let lo = regions
        .iter()
        .filter(|r| r.1 > r.0)
        .map(|r| r.0)
        .min()
        .unwrap_or(0);
    let hi = regions.iter().map(|r| r.1).max().unwrap_or(0);
    let body = move |out: &mut [i64; 2]| {
        // SAFETY: reserve a hole (PROT_NONE) as large as the whole vDSO block; the child owns
        // its address space and exits right after.
        let hole = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                (hi - lo) as usize,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if hole == libc::MAP_FAILED {
            out[0] = -1;
            out[1] = errno() as i64;
            return;
        }
        for (i, r) in regions.iter().enumerate() {
            if r.1 <= r.0 {
                continue;
            }
            let len = (r.1 - r.0) as usize;
            let dst = hole as u64 + (r.0 - lo);
            // SAFETY: moves a special mapping of this child onto part of the hole it just
            // reserved (MREMAP_FIXED replaces the hole there); nothing in the child touches the
            // vDSO afterwards.
            let p = unsafe {
                libc::mremap(
                    r.0 as *mut c_void,
                    len,
                    len,
                    libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                    dst as *mut c_void,
                )
            };
            if p == libc::MAP_FAILED {
                out[0] = i as i64;
                out[1] = errno() as i64;
                return;
            }
        }
        out[0] = -2;
    };
    // SAFETY: the body makes raw mmap/mremap calls and stores into `out`.
    let [which, err] = unsafe { in_child::<2>(body) }?;
    if err != 0 {
        let what = match which {
            0 => "mremap of [vvar]",
            1 => "mremap of [vvar_vclock]",
            2 => "mremap of [vdso]",
            _ => "mmap of a hole for the vDSO",
        };
        return Err(Missing::sys(
            format!("{sizes}; {what} (in a child)"),
            err as i32,
        ));
    }
    Ok(format!("{sizes}; all movable with mremap"))
}

