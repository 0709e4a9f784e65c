//! Probes of memory tracking: userfaultfd write-protect, PAGEMAP_SCAN, soft-dirty, timer ids.

use super::*;

#[repr(C)]
#[derive(Default)]
pub(super) struct UffdioApi {
    pub(super) api: u64,
    pub(super) features: u64,
    pub(super) ioctls: u64,
}

#[repr(C)]
pub(super) struct UffdioRange {
    pub(super) start: u64,
    pub(super) len: u64,
}

#[repr(C)]
pub(super) struct UffdioRegister {
    pub(super) range: UffdioRange,
    pub(super) mode: u64,
    pub(super) ioctls: u64,
}

#[repr(C)]
pub(super) struct UffdioWriteprotect {
    pub(super) range: UffdioRange,
    pub(super) mode: u64,
}

pub(super) fn open_userfaultfd() -> Result<OwnedFd, Missing> {
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: userfaultfd takes flags and returns a new descriptor.
    let r = unsafe { libc::syscall(SYS_USERFAULTFD, flags) };
    let r = if r < 0 && errno() == libc::EPERM {
        // vm.unprivileged_userfaultfd=0 without CAP_SYS_PTRACE: user-mode-only faults suffice.
        // SAFETY: as above.
        unsafe { libc::syscall(SYS_USERFAULTFD, flags | UFFD_USER_MODE_ONLY) }
    } else {
        r
    };
    if r >= 0 {
        // SAFETY: the kernel just created this descriptor for us alone.
        return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
    }
    let first = errno();
    // Fall back to /dev/userfaultfd (Linux 6.1+).
    let dev = match OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/userfaultfd")
    {
        Ok(f) => f,
        Err(_) => return Err(Missing::sys("userfaultfd()", first)),
    };
    // SAFETY: USERFAULTFD_IOC_NEW takes the flags by value and returns a new descriptor.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), USERFAULTFD_IOC_NEW, flags) };
    let fd = sys(r as c_long, "ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)")?;
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(super) fn probe_uffd_wp_async() -> Outcome {
    let uffd = open_userfaultfd()?;
    let mut api = UffdioApi {
        api: UFFD_API,
        features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_PAGEFAULT_FLAG_WP,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API reads and writes one struct uffdio_api, which `api` is.
    let r = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
    if r < 0 {
        let e = errno();
        return Err(Missing::sys(
            "UFFDIO_API asking for WP_ASYNC (Linux 6.7+)",
            e,
        ));
    }
    if api.features & UFFD_FEATURE_WP_ASYNC == 0 {
        return Err(Missing::new(
            "UFFDIO_API did not grant UFFD_FEATURE_WP_ASYNC",
        ));
    }
    // Register anonymous memory for write-protect tracking and protect it. (We do not write to
    // it afterwards: if async mode were broken that write would block forever.)
    let mut m = anon(page_size())?;
    touch(&mut m, 0, 1);
    let range = || UffdioRange {
        start: m.addr(),
        len: page_size() as u64,
    };
    let mut reg = UffdioRegister {
        range: range(),
        mode: UFFDIO_REGISTER_MODE_WP,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_REGISTER reads and writes one struct uffdio_register covering our mapping.
    let r = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            UFFDIO_REGISTER,
            &mut reg as *mut UffdioRegister,
        )
    };
    sys(r as c_long, "UFFDIO_REGISTER (write-protect mode)")?;
    let mut wp = UffdioWriteprotect {
        range: range(),
        mode: UFFDIO_WRITEPROTECT_MODE_WP,
    };
    // SAFETY: UFFDIO_WRITEPROTECT reads one struct uffdio_writeprotect covering our mapping.
    let r = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            UFFDIO_WRITEPROTECT,
            &mut wp as *mut UffdioWriteprotect,
        )
    };
    sys(r as c_long, "UFFDIO_WRITEPROTECT")?;
    drop(uffd); // closing the descriptor unregisters the range before the mapping goes away
    drop(m);
    Ok("WP_ASYNC granted; registered and write-protected anonymous memory".into())
}

#[repr(C)]
#[derive(Default)]
pub(super) struct PmScanArg {
    pub(super) size: u64,
    pub(super) flags: u64,
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) walk_end: u64,
    pub(super) vec: u64,
    pub(super) vec_len: u64,
    pub(super) max_pages: u64,
    pub(super) category_inverted: u64,
    pub(super) category_mask: u64,
    pub(super) category_anyof_mask: u64,
    pub(super) return_mask: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub(super) struct PageRegion {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) categories: u64,
}

pub(super) fn probe_pagemap_scan() -> Outcome {
    let ps = page_size();
    let mut m = anon(4 * ps)?;
    touch(&mut m, 0, 1);
    touch(&mut m, 2, 1);
    let pagemap =
        File::open("/proc/self/pagemap").map_err(|e| io_missing("open /proc/self/pagemap", &e))?;
    let mut regions = [PageRegion::default(); 8];
    let mut arg = PmScanArg {
        size: size_of::<PmScanArg>() as u64,
        start: m.addr(),
        end: m.addr() + 4 * ps as u64,
        vec: regions.as_mut_ptr() as u64,
        vec_len: regions.len() as u64,
        category_mask: PAGE_IS_PRESENT,
        return_mask: PAGE_IS_PRESENT,
        ..Default::default()
    };
    // SAFETY: PAGEMAP_SCAN reads `arg` and writes at most vec_len page_region entries into
    // `regions`, both alive for the call.
    let r = unsafe {
        libc::ioctl(
            pagemap.as_raw_fd(),
            PAGEMAP_SCAN,
            &mut arg as *mut PmScanArg,
        )
    };
    if r < 0 {
        let e = errno();
        return Err(Missing::sys("ioctl(PAGEMAP_SCAN) (Linux 6.7+)", e));
    }
    let s = m.addr();
    let p = ps as u64;
    let want = [(s, s + p), (s + 2 * p, s + 3 * p)];
    let got: Vec<(u64, u64)> = regions[..r as usize]
        .iter()
        .map(|g| (g.start, g.end))
        .collect();
    if got != want {
        return Err(Missing::new(format!(
            "PAGEMAP_SCAN found {} regions, not the 2 pages we wrote",
            got.len()
        )));
    }
    Ok("found exactly the 2 pages written out of 4".into())
}

pub(super) fn probe_soft_dirty() -> Outcome {
    let mut m = anon(page_size())?;
    touch(&mut m, 0, 1);
    let first = pagemap_entry(getpid(), m.addr() as usize)?;
    fs::write("/proc/self/clear_refs", "4")
        .map_err(|e| io_missing("write 4 to /proc/self/clear_refs", &e))?;
    let cleared = pagemap_entry(getpid(), m.addr() as usize)?;
    touch(&mut m, 0, 2);
    let again = pagemap_entry(getpid(), m.addr() as usize)?;
    let bit = |e: u64| e & PM_SOFT_DIRTY != 0;
    if !bit(again) {
        return Err(Missing::new(
            "pagemap bit 55 stays clear after clear_refs 4 and a write (kernel without CONFIG_MEM_SOFT_DIRTY)",
        ));
    }
    if bit(cleared) {
        return Err(Missing::new("clear_refs 4 did not clear pagemap bit 55"));
    }
    let _ = first;
    Ok("bit 55 cleared by clear_refs 4 and set again by a write".into())
}

pub(super) fn probe_timer_restore_ids() -> Outcome {
    const WANT_ID: c_int = 42;
    let sev = Sigevent {
        notify: SIGEV_NONE,
        ..Default::default()
    };
    // In a child: the setting is per process and the timer must not outlive the probe.
    let body = move |out: &mut [i64; 3]| {
        // SAFETY: prctl with integer arguments only.
        let r = unsafe {
            libc::prctl(
                PR_TIMER_CREATE_RESTORE_IDS,
                PR_TIMER_CREATE_RESTORE_IDS_GET,
                0,
                0,
                0,
            )
        };
        if r < 0 {
            *out = [1, errno() as i64, 0];
            return;
        }
        // SAFETY: as above.
        let r = unsafe {
            libc::prctl(
                PR_TIMER_CREATE_RESTORE_IDS,
                PR_TIMER_CREATE_RESTORE_IDS_ON,
                0,
                0,
                0,
            )
        };
        if r < 0 {
            *out = [2, errno() as i64, 0];
            return;
        }
        let mut id: c_int = WANT_ID;
        // SAFETY: timer_create reads `sev` and reads/writes `id`, both live locals.
        let r = unsafe {
            libc::syscall(
                SYS_TIMER_CREATE,
                libc::CLOCK_MONOTONIC,
                &sev as *const Sigevent,
                &mut id as *mut c_int,
            )
        };
        if r < 0 {
            *out = [3, errno() as i64, 0];
            return;
        }
        // SAFETY: deletes the timer we just created.
        unsafe { libc::syscall(SYS_TIMER_DELETE, id) };
        *out = [0, 0, id as i64];
    };
    // SAFETY: the body makes raw prctl/timer syscalls and stores into `out`.
    let [step, err, got] = unsafe { in_child::<3>(body) }?;
    match step {
        0 if got == WANT_ID as i64 => Ok(format!("timer created with requested ID {WANT_ID}")),
        0 => Err(Missing::new(format!(
            "asked for timer ID {WANT_ID}, got {got}"
        ))),
        1 => Err(Missing::sys(
            "prctl(PR_TIMER_CREATE_RESTORE_IDS, GET) (Linux 6.17+)",
            err as i32,
        )),
        2 => Err(Missing::sys(
            "prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)",
            err as i32,
        )),
        _ => Err(Missing::sys("timer_create with a requested ID", err as i32)),
    }
}

pub(super) fn probe_namespaces() -> Outcome {
    const KINDS: [(&str, c_int); 8] = [
        ("mnt", libc::CLONE_NEWNS),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("time", CLONE_NEWTIME),
        ("user", libc::CLONE_NEWUSER),
    ];
    let body = |out: &mut [i64; 8]| {
        for (i, (_, flag)) in KINDS.iter().enumerate() {
            // SAFETY: unshare only moves this (single-threaded, short-lived) child into new
            // namespaces.
            let r = unsafe { libc::unshare(*flag) };
            out[i] = if r < 0 { errno() as i64 } else { 0 };
        }
    };
    // SAFETY: the body makes raw unshare calls and stores into `out`.
    let errs = unsafe { in_child::<8>(body) }?;
    let failed: Vec<(&str, i32)> = KINDS
        .iter()
        .zip(errs.iter())
        .filter(|(_, e)| **e != 0)
        .map(|((name, _), e)| (*name, *e as i32))
        .collect();
    if let Some(&(_, first)) = failed.first() {
        if failed.iter().all(|&(_, e)| e == first) {
            let names: Vec<&str> = failed.iter().map(|(n, _)| *n).collect();
            return Err(Missing::sys(
                format!("could not unshare {}", names.join(", ")),
                first,
            ));
        }
        let each: Vec<String> = failed
            .iter()
            .map(|&(n, e)| format!("{n} ({})", errno_name(e).unwrap_or("?")))
            .collect();
        return Err(Missing::new(format!(
            "could not unshare {}",
            each.join(", ")
        )));
    }
    let names: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
    Ok(names.join(" "))
}

pub(super) fn setsockopt_int(fd: RawFd, opt: c_int, val: c_int, what: &str) -> Result<(), Missing> {
    // SAFETY: passes a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            opt,
            &val as *const c_int as *const c_void,
            size_of::<c_int>() as u32,
        )
    };
    sys(r as c_long, what).map(|_| ())
}

pub(super) fn probe_tcp_repair() -> Outcome {
    // SAFETY: socket() returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    sys(fd as c_long, "socket(AF_INET, SOCK_STREAM)")?;
    // SAFETY: the descriptor was just created and is owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let fd = sock.as_raw_fd();
    setsockopt_int(
        fd,
        TCP_REPAIR,
        1,
        "setsockopt(TCP_REPAIR, 1) (needs CAP_NET_ADMIN)",
    )?;
    setsockopt_int(
        fd,
        TCP_REPAIR_QUEUE,
        TCP_SEND_QUEUE,
        "setsockopt(TCP_REPAIR_QUEUE)",
    )?;
    let seq: c_int = 0x1234_5678;
    setsockopt_int(fd, TCP_QUEUE_SEQ, seq, "setsockopt(TCP_QUEUE_SEQ)")?;
    let mut got: c_int = 0;
    let mut len = size_of::<c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `got`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            TCP_QUEUE_SEQ,
            &mut got as *mut c_int as *mut c_void,
            &mut len,
        )
    };
    sys(r as c_long, "getsockopt(TCP_QUEUE_SEQ)")?;
    if got != seq {
        return Err(Missing::new(format!(
            "set send sequence {seq:#x} but read back {got:#x}"
        )));
    }
    Ok("repair mode on, send-queue sequence set and read back".into())
}
