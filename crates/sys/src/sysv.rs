//! SysV IPC (shared memory, message queues, semaphores), namespaces (setns, uname).
//!
//! Raw syscalls, so the structures are the kernel's 64-bit ones (x86_64 has no
//! IPC_64 flag to pass: the native shmctl/msgctl/semctl always use them).

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::{cvt, Error, Result};

fn c(r: libc::c_long) -> Result<i64> {
    cvt(r as i64)
}

/// Marked for destruction (IPC_RMID while attached); in `mode`.
pub const SHM_DEST: u32 = 0o1000;
/// Locked in memory (SHM_LOCK); in `mode`.
pub const SHM_LOCKED: u32 = 0o2000;
/// shmat flag: attach read-only.
pub const SHM_RDONLY: u32 = libc::SHM_RDONLY as u32;
/// msgrcv flag: copy the message at an index, leave it queued (CONFIG_CHECKPOINT_RESTORE).
pub const MSG_COPY: i32 = 0o40000;

#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
struct Ipc64Perm {
    key: i32,
    uid: u32,
    gid: u32,
    cuid: u32,
    cgid: u32,
    mode: u32,
    seq: u16,
    pad2: u16,
    unused1: u64,
    unused2: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Shmid64Ds {
    perm: Ipc64Perm,
    segsz: u64,
    atime: i64,
    dtime: i64,
    ctime: i64,
    cpid: i32,
    lpid: i32,
    nattch: u64,
    unused4: u64,
    unused5: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Msqid64Ds {
    perm: Ipc64Perm,
    stime: i64,
    rtime: i64,
    ctime: i64,
    cbytes: u64,
    qnum: u64,
    qbytes: u64,
    lspid: i32,
    lrpid: i32,
    unused4: u64,
    unused5: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Semid64Ds {
    perm: Ipc64Perm,
    otime: i64,
    unused1: u64,
    ctime: i64,
    unused2: u64,
    nsems: u64,
    unused3: u64,
    unused4: u64,
}

/// The common part of every SysV object's status.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits plus SHM_DEST / SHM_LOCKED for segments.
    pub mode: u32,
}

impl From<Ipc64Perm> for Perm {
    fn from(p: Ipc64Perm) -> Perm {
        Perm { key: p.key, uid: p.uid, gid: p.gid, cuid: p.cuid, cgid: p.cgid, mode: p.mode }
    }
}

#[derive(Default, Clone, Copy, Debug)]
pub struct ShmStat {
    pub perm: Perm,
    pub size: u64,
    pub nattch: u64,
}

#[derive(Default, Clone, Copy, Debug)]
pub struct MsgStat {
    pub perm: Perm,
    pub cbytes: u64,
    pub qnum: u64,
    pub qbytes: u64,
}

#[derive(Default, Clone, Copy, Debug)]
pub struct SemStat {
    pub perm: Perm,
    pub nsems: u64,
}

pub fn shm_stat(id: i32) -> Result<ShmStat> {
    let mut d = Shmid64Ds::default();
    // SAFETY: d is a writable shmid64_ds, the kernel's layout on x86_64.
    c(unsafe { libc::syscall(libc::SYS_shmctl, id, libc::IPC_STAT, &mut d as *mut Shmid64Ds) })?;
    Ok(ShmStat { perm: d.perm.into(), size: d.segsz, nattch: d.nattch })
}

pub fn msg_stat(id: i32) -> Result<MsgStat> {
    let mut d = Msqid64Ds::default();
    // SAFETY: d is a writable msqid64_ds, the kernel's layout on x86_64.
    c(unsafe { libc::syscall(libc::SYS_msgctl, id, libc::IPC_STAT, &mut d as *mut Msqid64Ds) })?;
    Ok(MsgStat { perm: d.perm.into(), cbytes: d.cbytes, qnum: d.qnum, qbytes: d.qbytes })
}

pub fn sem_stat(id: i32) -> Result<SemStat> {
    let mut d = Semid64Ds::default();
    // SAFETY: d is a writable semid64_ds; semctl's 4th argument is the union's pointer.
    c(unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::IPC_STAT, &mut d as *mut Semid64Ds) })?;
    Ok(SemStat { perm: d.perm.into(), nsems: d.nsems })
}

/// IPC_SET of a segment: owner and permission bits.
pub fn shm_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<()> {
    let mut d = Shmid64Ds::default();
    d.perm.uid = uid;
    d.perm.gid = gid;
    d.perm.mode = mode & 0o777;
    // SAFETY: d is a readable shmid64_ds.
    c(unsafe { libc::syscall(libc::SYS_shmctl, id, libc::IPC_SET, &mut d as *mut Shmid64Ds) }).map(drop)
}

/// IPC_SET of a message queue: owner, permission bits, maximum bytes.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> Result<()> {
    let mut d = Msqid64Ds::default();
    d.perm.uid = uid;
    d.perm.gid = gid;
    d.perm.mode = mode & 0o777;
    d.qbytes = qbytes;
    // SAFETY: d is a readable msqid64_ds.
    c(unsafe { libc::syscall(libc::SYS_msgctl, id, libc::IPC_SET, &mut d as *mut Msqid64Ds) }).map(drop)
}

/// IPC_SET of a semaphore set: owner and permission bits.
pub fn sem_set(id: i32, uid: u32, gid: u32, mode: u32) -> Result<()> {
    let mut d = Semid64Ds::default();
    d.perm.uid = uid;
    d.perm.gid = gid;
    d.perm.mode = mode & 0o777;
    // SAFETY: d is a readable semid64_ds.
    c(unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::IPC_SET, &mut d as *mut Semid64Ds) }).map(drop)
}

pub fn shm_get(key: i32, size: u64, flags: i32) -> Result<i32> {
    // SAFETY: plain syscall.
    c(unsafe { libc::syscall(libc::SYS_shmget, key, size, flags) }).map(|r| r as i32)
}

pub fn msg_get(key: i32, flags: i32) -> Result<i32> {
    // SAFETY: plain syscall.
    c(unsafe { libc::syscall(libc::SYS_msgget, key, flags) }).map(|r| r as i32)
}

pub fn sem_get(key: i32, nsems: i32, flags: i32) -> Result<i32> {
    // SAFETY: plain syscall.
    c(unsafe { libc::syscall(libc::SYS_semget, key, nsems, flags) }).map(|r| r as i32)
}

pub fn shm_rmid(id: i32) -> Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    c(unsafe { libc::syscall(libc::SYS_shmctl, id, libc::IPC_RMID, 0usize) }).map(drop)
}

pub fn msg_rmid(id: i32) -> Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    c(unsafe { libc::syscall(libc::SYS_msgctl, id, libc::IPC_RMID, 0usize) }).map(drop)
}

pub fn sem_rmid(id: i32) -> Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    c(unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::IPC_RMID, 0usize) }).map(drop)
}

/// SHM_LOCK: keep the segment's pages in memory.
pub fn shm_lock(id: i32) -> Result<()> {
    // SAFETY: SHM_LOCK takes no buffer.
    c(unsafe { libc::syscall(libc::SYS_shmctl, id, libc::SHM_LOCK, 0usize) }).map(drop)
}

/// Every semaphore value of a set (GETALL).
pub fn sem_getall(id: i32, nsems: usize) -> Result<Vec<u16>> {
    let mut v = vec![0u16; nsems.max(1)];
    // SAFETY: v holds nsems unsigned shorts, as GETALL writes.
    c(unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::GETALL, v.as_mut_ptr()) })?;
    v.truncate(nsems);
    Ok(v)
}

/// Sets every semaphore value of a set (SETALL).
pub fn sem_setall(id: i32, vals: &[u16]) -> Result<()> {
    let mut v = vals.to_vec();
    v.push(0);
    // SAFETY: v holds at least nsems unsigned shorts, read by SETALL.
    c(unsafe { libc::syscall(libc::SYS_semctl, id, 0, libc::SETALL, v.as_mut_ptr()) }).map(drop)
}

/// The message at `index` of a queue, left in the queue (MSG_COPY): (type, bytes).
/// `max` bounds the message size (the queue's byte count is enough).
pub fn msg_copy(id: i32, index: u64, max: usize) -> Result<(i64, Vec<u8>)> {
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: buf holds a long mtype and `max` bytes of text, as msgrcv writes.
    let n = c(unsafe {
        libc::syscall(libc::SYS_msgrcv, id, buf.as_mut_ptr(), max, index as i64, libc::IPC_NOWAIT | MSG_COPY)
    })? as usize;
    let ty = i64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    buf.drain(..8);
    buf.truncate(n);
    Ok((ty, buf))
}

/// Queues one message without blocking.
pub fn msg_send(id: i32, ty: i64, data: &[u8]) -> Result<()> {
    let mut buf = ty.to_le_bytes().to_vec();
    buf.extend_from_slice(data);
    // SAFETY: buf holds the long mtype followed by data.len() bytes.
    c(unsafe { libc::syscall(libc::SYS_msgsnd, id, buf.as_ptr(), data.len(), libc::IPC_NOWAIT) }).map(drop)
}

/// A SysV segment attached in our own address space; detached on drop.
pub struct ShmAttach {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the attachment is plain shared memory; readers/writers synchronise elsewhere.
unsafe impl Send for ShmAttach {}
// SAFETY: shared references only read.
unsafe impl Sync for ShmAttach {}

impl ShmAttach {
    /// Attaches segment `id` (`len` = its size rounded up to pages) anywhere.
    pub fn new(id: i32, len: usize, readonly: bool) -> Result<ShmAttach> {
        let flags = if readonly { libc::SHM_RDONLY } else { 0 };
        // SAFETY: the kernel picks a free address; the mapping is owned by the result.
        let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
        if p as isize == -1 {
            return Err(Error::last_os_error());
        }
        Ok(ShmAttach { ptr: p.cast(), len })
    }
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: live mapping of len bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    /// Only for attachments made without `readonly`.
    /// Where it is attached in our address space.
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: live writable mapping of len bytes owned by self, borrowed mutably.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
    /// Which pages of the segment exist (in memory or swap): mincore on a shared mapping
    /// looks at the segment's page cache, so nothing is faulted in.
    pub fn resident(&self) -> Result<Vec<bool>> {
        let n = self.len.div_ceil(4096);
        let mut v = vec![0u8; n];
        // SAFETY: v has one byte per page of our mapping.
        c(unsafe { libc::mincore(self.ptr.cast(), self.len, v.as_mut_ptr()) } as libc::c_long)?;
        Ok(v.into_iter().map(|b| b & 1 != 0).collect())
    }
}

impl Drop for ShmAttach {
    fn drop(&mut self) {
        // SAFETY: detaching our own attachment exactly once.
        unsafe { libc::shmdt(self.ptr.cast()) };
    }
}

/// Moves the calling thread into the namespace `fd` refers to (nstype CLONE_NEW*).
pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> Result<()> {
    // SAFETY: plain syscall on a valid fd.
    c(unsafe { libc::setns(fd.as_raw_fd(), nstype) } as libc::c_long).map(drop)
}

/// (nodename, domainname) of the calling thread's UTS namespace.
pub fn uname() -> Result<(Vec<u8>, Vec<u8>)> {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is writable.
    c(unsafe { libc::uname(&mut u) } as libc::c_long)?;
    let s = |a: &[libc::c_char]| a.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect::<Vec<u8>>();
    Ok((s(&u.nodename), s(&u.domainname)))
}

/// For a freshly forked restore child (raw syscalls, no allocation).
pub mod child {
    pub fn unshare(flags: i32) -> i32 {
        // SAFETY: plain syscall.
        unsafe { libc::unshare(flags) }
    }
    pub fn setns(fd: i32, nstype: i32) -> i32 {
        // SAFETY: plain syscall; a bad fd is an error return.
        unsafe { libc::setns(fd, nstype) }
    }
    pub fn sethostname(name: &[u8]) -> i32 {
        // SAFETY: valid buffer of name.len() bytes.
        unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }
    }
    pub fn setdomainname(name: &[u8]) -> i32 {
        // SAFETY: valid buffer of name.len() bytes.
        unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }
    }
}
