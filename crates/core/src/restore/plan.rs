//! The restore plan: the whole restore as data, built from a validated manifest without
//! touching the host except through `Host` (read-only questions: is this pid or session
//! taken?). Per process: its pids at every level, how it is cloned (flags, exit signal,
//! before or after its parent's setsid), the namespaces it creates or joins, which fds
//! it places from which carry slot, which objects it maps, its vDSO address, the helpers
//! that hold exited leaders' groups and sessions, and the ordered steps that build it.
//! The executor (`execute.rs`, `spawn.rs`, `build/`) only carries it out;
//! `stasis inspect --plan DIR` prints it.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fmt;

use stasis_image::model::*;
use stasis_image::Manifest;
use stasis_sys::sys;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::ns;

use super::image_vdso;

/// What the plan needs to know about the host (read-only).
pub trait Host {
    /// Who holds this pid or tid now, if anyone.
    fn holder(&self, id: i32) -> Option<String>;
    /// Does a session with this id exist (some process is in it)?
    fn session_alive(&self, sid: i32) -> bool;
    /// Does a process group with this id exist?
    fn group_alive(&self, pgid: i32) -> bool;
    /// The restorer's session.
    fn sid(&self) -> i32;
}

/// The real host: /proc and kill(-pgid, 0).
#[derive(Default)]
pub struct LiveHost {
    sessions: std::cell::OnceCell<HashSet<i32>>,
}

impl Host for LiveHost {
    fn holder(&self, id: i32) -> Option<String> {
        super::holder(id)
    }

    fn session_alive(&self, sid: i32) -> bool {
        // Sessions have no direct probe: scan /proc once, and only if some process needs it.
        self.sessions
            .get_or_init(|| {
                std::fs::read_dir("/proc")
                    .map(|d| {
                        d.flatten()
                            .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
                            .filter_map(|p| crate::procfs::stat_fields(p).ok().map(|f| crate::procfs::stat_num(&f, 6) as i32))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .contains(&sid)
    }

    fn group_alive(&self, pgid: i32) -> bool {
        !matches!(sys::kill(-pgid, 0), Err(e) if e.raw_os_error() == Some(libc::ESRCH))
    }

    fn sid(&self) -> i32 {
        sys::getsid()
    }
}

/// Something the restorer opens and hands to the new processes; its index in
/// `RestorePlan::carry` is its carry slot (the child moves it above every target fd).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Carry {
    /// A new network namespace (by its dump-time inode), joined with setns.
    NetNs(u64),
    /// The open file description of an fd object.
    Fd(u32),
    /// A file opened for mapping (a VMA's file or the executable).
    Mapped(u32),
    /// A shared-memory object, created and filled by the restorer.
    Shmem(u32),
    /// A directory removed while it was a working directory (GhostObj id), recreated
    /// nameless: the process fchdir's into it.
    GhostDir(u32),
}

/// One step of building a process, in restore order. The build steps run for every
/// process as soon as it exists; `ReapHelpers` once every process is built; the finish
/// steps once every helper is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Seize, block every signal, drop the restorer's rseq registration.
    Seize,
    /// Move the vDSO to its address, unmap the restorer, map the VMAs.
    AddressSpace,
    /// io_setup, the ring moved to its address, its position and unreaped completions
    /// (`crate::aio`): once every other VMA is mapped.
    AioContexts,
    FillMemory,
    /// Protections, madvise flags, mlock.
    FinishVmas,
    /// PR_SET_MM_MAP (code/data/stack bounds, auxv, exe), THP.
    MmFields,
    CreateThreads,
    /// Robust list, rseq, tid address, timer slack, altstack, name, affinity, scheduling.
    ThreadState,
    /// Handlers, pending signals.
    Signals,
    Timers,
    /// Personality, subreaper, rlimits, oom_score_adj.
    Attrs,
    /// setpgid into a group it does not lead.
    JoinGroup,
    /// TIOCSPGRP: the foreground group of the terminal it took (`ProcPlan::foreground`).
    Foreground,
    /// Close the carried fds (the last process of a shared fd table).
    CloseCarried,
    /// pidfds and namespace fds of the tree, made from inside (`ProcPlan::late_fds`):
    /// every process exists, credentials are still the restorer's.
    LateFds,
    EpollItems,
    /// Re-take file locks (after the carried fds are closed and the epoll items added:
    /// both close fds, which drops POSIX locks).
    Locks,
    /// --detach / recreated session: hand the root over to its intermediate parent.
    HandOver,
    Seccomp,
    /// Parent-death signal, no_new_privs, groups, uids/gids, capabilities.
    Creds,
    Dumpable,
    /// Kill and reap the helpers holding exited leaders' groups/sessions (from inside).
    ReapHelpers,
    /// Arm the parent-death signal delayed because of a session helper.
    ArmPdeathsig,
    /// Compare group and session with the image (warning).
    CheckIds,
    /// Its files under /proc/PID of processes of the tree (`ProcPlan::proc_files`),
    /// opened from inside it: every process exists now, with its pid.
    ProcFiles,
    /// Owner, signal and O_ASYNC of the descriptions it sets (`ProcPlan::owner_fds`):
    /// every thread and process they may name exists now.
    FileOwners,
    UnmapTrampoline,
    Registers,
    /// Its main thread had exited (`Process::leader_exited`): it exits again, and
    /// everything after goes through a live thread.
    ExitLeader,
    /// SIGSTOP again (it was stopped).
    StopAgain,
    Detach,
}

/// An fd a process gets: `fd` ← carry slot `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdPlace {
    pub fd: i32,
    pub slot: usize,
    pub cloexec: bool,
}

/// What an fd made from inside its process refers to (`fdkinds::is_late`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LateWhat {
    /// pidfd_open(pid, flags), pid as the holder sees it.
    Pidfd { pid: i32, flags: u32 },
    /// The namespace of process `member` (as the holder sees it), by its
    /// PIDFD_GET_*_NAMESPACE `ioctl`.
    Ns { member: i32, ioctl: u64 },
}

/// An fd its process makes itself once every process of the tree exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LateFd {
    pub fd: i32,
    /// Its object: a second fd of the same one in the process is a dup of the first.
    pub object_id: u32,
    pub cloexec: bool,
    pub what: LateWhat,
}

/// One process of the tree to recreate.
#[derive(Clone, Debug)]
pub struct ProcPlan {
    pub pid: i32,
    /// clone3 set_tid: its pid at every PID namespace level, innermost first.
    pub set_tid: Vec<i32>,
    /// Extra clone3 flags (CLONE_NEWPID, CLONE_FILES, CLONE_FS, CLONE_VM, CLONE_SIGHAND).
    pub clone_flags: u64,
    pub exit_signal: i32,
    /// Unshares a new mount namespace (private propagation) before anything else.
    pub new_mnt: bool,
    /// Mounts a fresh procfs on /proc (after entering its PID namespace).
    pub mount_proc: bool,
    /// Mounts a fresh procfs on /proc before unsharing its own mount namespace.
    pub mount_proc_parent_ns: bool,
    /// Shares its parent's fd table (CLONE_FILES): the parent places the fds.
    pub shares_files: bool,
    /// Closes the carried fds and re-takes locks: false when a process built after it
    /// shares its fd table (that one does it, last).
    pub closes_table: bool,
    /// Shares its parent's address space (CLONE_VM): the parent builds the memory.
    pub shares_vm: bool,
    /// Unmaps the trampoline at the end: false when a process built after it shares its
    /// address space (that one does it, last).
    pub unmaps_tramp: bool,
    /// Its main thread had exited: recreated to hold the pid and build the process, it
    /// exits again (with SYS_exit) once the process is built (`Step::ExitLeader`).
    pub leader_exits: bool,
    /// Its parent-death signal is armed only in the finish steps (`Step::ArmPdeathsig`):
    /// before, a death would fire it that was not its parent's — a session helper's
    /// (`session_helper`), or its parent's recreated main thread exiting again (the
    /// kernel sends it when the parent thread exits, even to re-parent it to another
    /// thread of the same process).
    pub late_pdeathsig: bool,
    /// Has aio contexts (`Vma.aio`) to recreate.
    pub aio: bool,
    pub zombie: bool,
    pub exit_status: i32,
    pub assign: Vec<FdPlace>,
    /// Carry slot of its executable (live processes that do not share their parent's
    /// memory).
    pub exe_slot: Option<usize>,
    /// The image's executable is the same file as the restorer's (dev, inode): set by
    /// `prepare`, which opens it.
    pub exe_is_ours: bool,
    /// Where its `[vvar]`/`[vdso]` family starts (its own: an exec'd child has it elsewhere).
    pub vdso_base: Option<u64>,
    pub umask: u32,
    pub cwd: CString,
    /// Carry slot of its working directory when that was removed (fchdir instead of
    /// chdir to `cwd`).
    pub cwd_slot: Option<usize>,
    pub root: CString,
    /// Carry slot of its root directory when that was removed (chroot into it, not
    /// into `root`).
    pub root_slot: Option<usize>,
    pub comm: CString,
    pub pgid: i32,
    pub sid: i32,
    /// Its process group, whose leader had exited: it forks a helper with that pid which
    /// leads the group until every member joined, then is killed and reaped.
    pub group_helper: i32,
    /// Its session, whose leader had exited (it was re-parented to a subreaper of the
    /// tree): its parent forks a helper with that pid, which calls setsid() and forks
    /// it; the helper is killed once the tree is built, re-parenting it again.
    pub session_helper: i32,
    /// Indexes of its children in `RestorePlan::procs`.
    pub children: Vec<usize>,
    /// Forked by its parent before the parent calls setsid(): it stays in the session
    /// the parent was born in (it was forked before its parent led a session of its own).
    pub before_setsid: bool,
    /// Namespaces it unshares or joins (it is the first of the tree in them).
    pub ns: ns::NsPlan,
    /// Helpers it kills and reaps once the tree is built (its group's, its children's
    /// sessions').
    pub helpers: Vec<i32>,
    /// Build steps, in order (empty for a zombie).
    pub steps: Vec<Step>,
    /// Its fds whose description gets an owner record set (crate::fown), each
    /// description by the first process holding it.
    pub owner_fds: Vec<i32>,
    /// A session leader whose session had a terminal of the tree: the carry slot of a
    /// description of it, taken as controlling terminal (TIOCSCTTY) right after setsid.
    pub ctty_slot: Option<usize>,
    /// Then the terminal's foreground process group (image numbering), set once every
    /// group exists (`Step::Foreground`); None: its own group (TIOCSCTTY made it so).
    pub foreground: Option<i32>,
    /// Its fds of /proc/PID files (`FileObj.in_proc`, not carried): (fd, object id,
    /// FD_CLOEXEC), opened by `Step::ProcFiles`, once per object (dup'ed for its other
    /// fds of it).
    pub proc_files: Vec<(i32, u32, bool)>,
    /// pidfds and namespace fds of the tree it makes itself (none for a process sharing
    /// its parent's fd table: the parent makes them).
    pub late_fds: Vec<LateFd>,
    /// Pieces of its private memory built before it forks its children (see `Premap`).
    pub premaps: Vec<Premap>,
}

/// Bytes between two pieces of the premap area (they never merge into one VMA).
const PREMAP_GAP: u64 = 16 * 4096;
/// The premap area is at most this large (else pieces are left out: no sharing).
const PREMAP_MAX: u64 = 1 << 46;

/// A piece of one private VMA (anonymous or private file) that the process builds in
/// the premap area (`RestorePlan::premap_len`, a range free in every layout) before it
/// forks its children, so that the children inherit its pages copy-on-write, as the
/// original tree shared them since its forks. A child keeps an inherited piece where
/// the image shows it still shared pages with its parent there (the same stored bytes at
/// the same address): it only overwrites the pages that differ (`copy`) and discards the
/// ones it did not have (`discard`); a process whose children share pages with it maps
/// the rest of such a VMA fresh there (`inherited` false) and fills it whole. When the
/// process is built, each piece is moved (mremap) to `start` over the fresh mapping of
/// its VMA; its other pages are filled as usual.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Premap {
    /// Its final range, inside one VMA of the process.
    pub start: u64,
    pub end: u64,
    /// Its offset in the premap area.
    pub tmp: u64,
    /// Already there, inherited from the parent (else mapped fresh by the process).
    pub inherited: bool,
    /// Mapped-file object of a private file VMA (0: anonymous memory).
    pub object: u32,
    /// Carry slot of that file, and the byte offset in it of `start`.
    pub slot: Option<usize>,
    pub file_off: u64,
    pub growsdown: bool,
    /// Pages to write into it.
    pub copy: Vec<PageCopy>,
    /// (offset in the piece, bytes): the parent's pages this process did not have.
    pub discard: Vec<(u64, u64)>,
}

/// Bytes of a pages file to write at an offset of a premap piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCopy {
    pub off: u64,
    pub len: u64,
    pub shard: u32,
    pub file_offset: u64,
}

/// The whole restore, as data.
#[derive(Clone, Debug)]
pub struct RestorePlan {
    pub root: i32,
    /// What the restorer opens, in carry-slot order.
    pub carry: Vec<Carry>,
    /// What each carry slot is, for people (path, kind).
    pub labels: Vec<String>,
    /// Object id → carry slot, for mapped files and shared memory.
    pub map_slot: HashMap<u32, usize>,
    /// The tree, root first, parents before children (the image's order).
    pub procs: Vec<ProcPlan>,
    /// The root's session, when its leader had exited (and its pid is free): the
    /// intermediate parent takes that pid, calls setsid() and forks the root.
    pub session_helper: i32,
    /// The root is handed to an intermediate parent (--detach, or a recreated session).
    pub middle: bool,
    /// --detach: the root is handed over for good (to the restorer's nearest subreaper
    /// ancestor or init), not kept as the restorer's child.
    pub detach: bool,
    /// Processes built by one tracer thread, in order (a shared fd table or address
    /// space keeps its processes together: they share the carried fds / the trampoline).
    pub units: Vec<Vec<usize>>,
    /// The highest fd number any process needs.
    pub max_fd: i32,
    /// Size of the premap area (0: no process builds memory before forking).
    pub premap_len: u64,
}

fn plan_err(pid: i32, why: String) -> Error {
    Error::RestoreStep { pid, step: "planning".into(), why }
}

impl RestorePlan {
    /// The plan of a validated manifest (`validate` first: it relies on what validate
    /// guarantees, e.g. parents before children and referenced objects present).
    pub fn build(m: &Manifest, host: &dyn Host, detach: bool) -> Result<RestorePlan> {
        let root = m.process.pid;
        let mut carry = Vec::new();
        // New network namespaces first: their fds go to the processes that join them.
        let mut net_slot = HashMap::new();
        for p in m.processes.iter().filter(|p| !p.zombie && p.net_ns != 0) {
            if !net_slot.contains_key(&p.net_ns) {
                carry.push(Carry::NetNs(p.net_ns));
                net_slot.insert(p.net_ns, carry.len() - 1);
            }
        }
        let mut fd_slot: HashMap<u32, usize> = HashMap::new();
        let mut map_slot: HashMap<u32, usize> = HashMap::new();
        let mut dir_slot: HashMap<u32, usize> = HashMap::new();
        let mut procs = Vec::new();
        for (idx, p) in m.processes.iter().enumerate() {
            let mut assign = Vec::new();
            let mut proc_files = Vec::new();
            let mut late = Vec::new();
            for fd in &p.fds {
                if m.object(fd.object_id).and_then(|o| o.file()).is_some_and(|f| f.in_proc) {
                    proc_files.push((fd.fd, fd.object_id, fd.cloexec));
                    continue;
                }
                if let Some(what) = m.object(fd.object_id).filter(|o| crate::fdkinds::is_late(o)).map(|o| late_what(m, p, o)) {
                    let what = what.map_err(|why| plan_err(p.pid, format!("fd {}: {why}", fd.fd)))?;
                    if !p.shares_files {
                        late.push(LateFd { fd: fd.fd, object_id: fd.object_id, cloexec: fd.cloexec, what });
                    }
                    continue;
                }
                let slot = *fd_slot.entry(fd.object_id).or_insert_with(|| {
                    carry.push(Carry::Fd(fd.object_id));
                    carry.len() - 1
                });
                assign.push(FdPlace { fd: fd.fd, slot, cloexec: fd.cloexec });
            }
            let mut exe_slot = None;
            if !p.zombie && !p.shares_vm {
                let mm = p.mm.as_ref().ok_or_else(|| plan_err(p.pid, "no memory layout record".into()))?;
                let mut ids: Vec<u32> = p
                    .vmas
                    .iter()
                    .filter(|v| matches!(VmaKind::try_from(v.kind), Ok(VmaKind::FilePrivate | VmaKind::FileShared)))
                    .map(|v| v.object_id)
                    .collect();
                ids.push(mm.exe_object);
                ids.sort();
                ids.dedup();
                for id in ids {
                    if m.object(id).and_then(|o| o.mapped_file()).is_none() {
                        return Err(plan_err(p.pid, format!("mapped-file object {id} missing")));
                    }
                    map_slot.entry(id).or_insert_with(|| {
                        carry.push(Carry::Mapped(id));
                        carry.len() - 1
                    });
                }
                exe_slot = map_slot.get(&mm.exe_object).copied();
                // a packet ring is mapped through its socket, carried like an fd
                for v in p.vmas.iter().filter(|v| v.kind == VmaKind::PacketRing as i32) {
                    if m.object(v.object_id).and_then(|o| o.packet()).is_none() {
                        return Err(plan_err(p.pid, format!("packet socket object {} missing", v.object_id)));
                    }
                    let slot = *fd_slot.entry(v.object_id).or_insert_with(|| {
                        carry.push(Carry::Fd(v.object_id));
                        carry.len() - 1
                    });
                    map_slot.insert(v.object_id, slot);
                }
            }
            let mut pp = proc_plan(m, idx, assign, exe_slot, &net_slot)?;
            if p.ctty != 0 && !p.zombie {
                let slot = *fd_slot.entry(p.ctty).or_insert_with(|| {
                    carry.push(Carry::Fd(p.ctty));
                    carry.len() - 1
                });
                pp.ctty_slot = Some(slot);
                let fg = m.object(p.ctty).and_then(|o| o.tty_fd()).and_then(|d| m.object(d.tty_id)).and_then(|o| o.tty()).map(|t| t.fg_pgrp).unwrap_or(0);
                pp.foreground = (fg > 0 && fg != pp.pgid).then_some(fg);
            }
            pp.proc_files = proc_files;
            // removed working and root directories: one carried fd per directory
            let (cwd_ghost, root_ghost) = p.attrs.as_ref().map(|a| (a.cwd_ghost, a.root_ghost)).unwrap_or_default();
            let mut dir = |id: u32| {
                (id != 0 && !p.zombie).then(|| {
                    *dir_slot.entry(id).or_insert_with(|| {
                        carry.push(Carry::GhostDir(id));
                        carry.len() - 1
                    })
                })
            };
            pp.cwd_slot = dir(cwd_ghost);
            pp.root_slot = dir(root_ghost);
            pp.late_fds = if p.zombie { Vec::new() } else { late };
            procs.push(pp);
        }
        for (i, p) in m.processes.iter().enumerate().skip(1) {
            let parent = m
                .processes
                .iter()
                .position(|q| q.pid == p.ppid)
                .ok_or_else(|| plan_err(p.pid, format!("its parent {} is not in the image", p.ppid)))?;
            procs[parent].children.push(i);
            if p.shares_files && !p.zombie {
                // parents come first: the table's last process closes it
                procs[parent].closes_table = false;
            }
            if p.shares_vm && !p.zombie {
                procs[parent].unmaps_tramp = false;
            }
        }
        // Shared anonymous memory: created and filled by the restorer.
        for o in m.objects.iter().filter(|o| o.shmem().is_some()) {
            carry.push(Carry::Shmem(o.id));
            map_slot.insert(o.id, carry.len() - 1);
        }
        let session_helper = dead_leaders(m, &mut procs, host);
        born_sessions(&mut procs, host.sid());
        for i in 0..procs.len() {
            let helpers: Vec<i32> = procs[i]
                .children
                .iter()
                .map(|&c| procs[c].session_helper)
                .chain([procs[i].group_helper])
                .filter(|h| *h != 0)
                .collect();
            procs[i].helpers = helpers;
        }
        let mut owned = std::collections::HashSet::new();
        for (pp, p) in procs.iter_mut().zip(&m.processes).filter(|(_, p)| !p.zombie) {
            pp.owner_fds = crate::fown::fds_to_set(m, p, &mut owned);
        }
        let labels = carry.iter().map(|c| label(m, c)).collect();
        let middle = detach || session_helper != 0;
        let exits: std::collections::HashSet<i32> = procs.iter().filter(|pp| pp.leader_exits).map(|pp| pp.pid).collect();
        for (pp, p) in procs.iter_mut().zip(&m.processes) {
            pp.late_pdeathsig = pp.session_helper != 0 || exits.contains(&p.ppid);
        }
        for (i, pp) in procs.iter_mut().enumerate() {
            if !pp.zombie {
                pp.steps = steps(pp, i == 0 && middle);
            }
        }
        let max_fd = m.processes.iter().flat_map(|p| p.fds.iter()).map(|f| f.fd).max().unwrap_or(0);
        let units = units(m);
        let premap_len = premaps(m, &mut procs, &map_slot);
        Ok(RestorePlan { root, carry, labels, map_slot, procs, session_helper, middle, detach, units, max_fd, premap_len })
    }
}

impl ProcPlan {
    /// Its finish steps (once every process is built and every helper is gone).
    /// Once every process of the tree is built, before any finish step: a main thread
    /// that had exited exits again (its credentials are set: its zombie shows them).
    /// Not earlier: the exit fires the parent-death signal of the children it made —
    /// SIGKILL while they are being built — and re-parents them to a live thread; the
    /// finish steps go through a live thread.
    pub fn exit_steps(&self) -> Vec<Step> {
        if self.leader_exits {
            vec![Step::ExitLeader]
        } else {
            Vec::new()
        }
    }

    pub fn finish_steps(&self) -> Vec<Step> {
        let mut v = Vec::new();
        if self.late_pdeathsig {
            v.push(Step::ArmPdeathsig);
        }
        if self.set_tid.len() == 1 {
            v.push(Step::CheckIds);
        }
        if !self.proc_files.is_empty() {
            v.push(Step::ProcFiles);
        }
        if !self.owner_fds.is_empty() {
            v.push(Step::FileOwners);
        }
        if self.unmaps_tramp {
            v.push(Step::UnmapTrampoline);
        }
        v.extend([Step::Registers, Step::StopAgain, Step::Detach]);
        v
    }
}

/// A carry slot's object as people name it.
fn label(m: &Manifest, c: &Carry) -> String {
    let o = |id: &u32| m.object(*id);
    match c {
        Carry::NetNs(ino) => format!("new network namespace (was net:[{ino}])"),
        Carry::Mapped(id) => format!("{} (mapped, object {id})", o(id).and_then(|o| o.mapped_file()).map(|f| f.path.as_str()).unwrap_or("?")),
        Carry::GhostDir(id) => format!("removed working or root directory {} (object {id})", o(id).and_then(|o| o.ghost()).map(|g| g.path.as_str()).unwrap_or("?")),
        Carry::Shmem(id) => format!("shared memory of {} bytes (object {id})", o(id).and_then(|o| o.shmem()).map(|s| s.size).unwrap_or(0)),
        Carry::Fd(id) => {
            let what = match o(id).map(|o| &o.kind) {
                Some(Some(Kind::File(f))) => f.path.clone(),
                Some(Some(Kind::PipeEnd(_))) => "pipe end".into(),
                Some(Some(Kind::FifoFd(_))) => "named FIFO".into(),
                Some(Some(Kind::Unix(_))) => "unix socket".into(),
                Some(Some(Kind::Inet(_))) => "inet socket".into(),
                Some(Some(Kind::Netlink(_))) => "netlink socket".into(),
                Some(Some(Kind::Packet(_))) => "packet socket".into(),
                Some(Some(Kind::Eventfd(_))) => "eventfd".into(),
                Some(Some(Kind::Timerfd(_))) => "timerfd".into(),
                Some(Some(Kind::Signalfd(_))) => "signalfd".into(),
                Some(Some(Kind::Epoll(_))) => "epoll".into(),
                Some(Some(Kind::Inotify(_))) => "inotify".into(),
                Some(Some(Kind::TtyFd(t))) => match o(&t.tty_id).and_then(|o| o.tty()) {
                    Some(x) if x.external => format!("the restorer's terminal (was {})", x.path),
                    Some(x) if x.device => format!("{} opened again", x.path),
                    Some(x) => format!("{} of a new pty (was {})", if t.side == crate::tty::MASTER { "master" } else { "slave" }, x.path),
                    None => "terminal".into(),
                },
                Some(Some(Kind::Fanotify(_))) => "fanotify".into(),
                Some(Some(Kind::Mqueue(q))) => format!("POSIX message queue /{}", q.name),
                Some(Some(Kind::Pidfd(_))) => "pidfd of an exited process".into(),
                Some(Some(Kind::NsFd(n))) => format!("{} namespace of stasis", n.ns_type),
                // not fd objects (open_fd_objects refuses an fd referring to one)
                Some(Some(stasis_image::not_fd_kinds!()))
                | Some(None)
                | None => "fd object".into(),
            };
            format!("{what} (object {id})")
        }
    }
}

/// The plan of process `idx`, before the tree-wide passes (children, helpers, steps).
fn proc_plan(m: &Manifest, idx: usize, assign: Vec<FdPlace>, exe_slot: Option<usize>, net_slot: &HashMap<u64, usize>) -> Result<ProcPlan> {
    let p = &m.processes[idx];
    let cs = |what: &str, s: &str| CString::new(s).map_err(|_| plan_err(p.pid, format!("its {what} holds a NUL byte")));
    let attrs = p.attrs.clone().unwrap_or_default();
    let mut set_tid: Vec<i32> = if p.ns_pids.len() > 1 { p.ns_pids.clone() } else { vec![p.pid] };
    set_tid.reverse();
    let parent = if idx == 0 { None } else { m.processes.iter().find(|q| q.pid == p.ppid) };
    let parent_depth = parent.map(|q| q.ns_pids.len().max(1)).unwrap_or(1);
    let new_pidns = set_tid.len() > parent_depth;
    let parent_mnt = parent.map(|q| q.mnt_ns).unwrap_or(0);
    let flag = |on: bool, f: i32| if on { f as u64 } else { 0 };
    let vdso = image_vdso(p);
    Ok(ProcPlan {
        pid: p.pid,
        set_tid,
        clone_flags: flag(new_pidns, libc::CLONE_NEWPID)
            | flag(p.shares_files, libc::CLONE_FILES)
            | flag(p.shares_fs, libc::CLONE_FS)
            // (a zombie is forked to exit at once: it shares nothing)
            | flag(p.shares_vm && !p.zombie, libc::CLONE_VM)
            | flag(p.shares_vm && p.shares_sighand && !p.zombie, libc::CLONE_SIGHAND),
        shares_files: p.shares_files,
        closes_table: true,
        shares_vm: p.shares_vm && !p.zombie,
        unmaps_tramp: true,
        leader_exits: p.leader_exited && !p.zombie,
        late_pdeathsig: false,
        aio: p.vmas.iter().any(|v| v.aio.is_some()),
        // the root is re-parented (exit_signal becomes SIGCHLD anyway)
        exit_signal: match p.exit_signal {
            _ if idx == 0 => libc::SIGCHLD,
            0 => libc::SIGCHLD,
            -1 => 0,
            s => s,
        },
        new_mnt: !p.zombie && p.mnt_ns != 0 && p.mnt_ns != parent_mnt,
        mount_proc: p.mount_proc,
        mount_proc_parent_ns: p.mount_proc_parent_ns && !p.zombie,
        zombie: p.zombie,
        exit_status: p.exit_status,
        assign,
        exe_slot,
        exe_is_ours: false,
        vdso_base: if p.zombie || p.shares_vm { None } else { vdso.first().map(|x| x.1) },
        umask: attrs.umask,
        cwd: cs("working directory", if attrs.cwd.is_empty() { "/" } else { &attrs.cwd })?,
        cwd_slot: None,
        root_slot: None,
        root: cs("root directory", if attrs.root.is_empty() { "/" } else { &attrs.root })?,
        comm: cs("name", &p.comm)?,
        pgid: attrs.pgid,
        sid: attrs.sid,
        group_helper: 0,
        session_helper: 0,
        children: Vec::new(),
        before_setsid: false,
        ns: ns::plan(m, idx, net_slot).map_err(|why| plan_err(p.pid, why))?,
        helpers: Vec::new(),
        steps: Vec::new(),
        owner_fds: Vec::new(),
        ctty_slot: None,
        foreground: None,
        proc_files: Vec::new(),
        late_fds: Vec::new(),
        premaps: Vec::new(),
    })
}

/// What late fd object `o` of process `p` is made from, numbered as `p` sees it.
fn late_what(m: &Manifest, p: &Process, o: &Object) -> std::result::Result<LateWhat, String> {
    let inner = |pid: i32| crate::ns::inner_pid(&m.processes, p, pid);
    match &o.kind {
        Some(Kind::Pidfd(f)) => Ok(LateWhat::Pidfd { pid: inner(f.pid), flags: f.flags & crate::fdkinds::pidfd::OPEN_FLAGS }),
        Some(Kind::NsFd(n)) => {
            let ioctl = crate::fdkinds::nsfd::ioctl_of(n).ok_or_else(|| format!("namespace type {:?}", n.ns_type))?;
            Ok(LateWhat::Ns { member: inner(n.member), ioctl })
        }
        _ => Err(format!("object {} is not made inside the process", o.id)),
    }
}

/// A process's saved pages: (start, end, shard, file offset) of its runs, by address.
type Locs = Vec<(u64, u64, u32, u64)>;

fn locs(m: &Manifest) -> HashMap<i32, Locs> {
    let mut out: HashMap<i32, Locs> = HashMap::new();
    for r in m.index.runs.iter().filter(|r| r.object_id == 0 && r.pid != 0) {
        let end = r.addr.saturating_add(u64::from(r.count) * 4096);
        out.entry(r.pid).or_default().push((r.addr, end, r.shard, r.file_offset));
    }
    for v in out.values_mut() {
        v.sort_unstable();
    }
    out
}

/// Where the page at `a` is stored: (shard, file offset), if the process saved it.
fn stored_at(l: &Locs, a: u64) -> Option<(u32, u64)> {
    let k = l.partition_point(|r| r.0 <= a);
    let r = l.get(k.checked_sub(1)?)?;
    (a < r.1).then(|| (r.2, r.3.wrapping_add(a - r.0)))
}

/// How a process's pages in a range compare with its parent's at the same addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seg {
    /// The same stored bytes (shared copy-on-write at dump).
    Same,
    /// Its own bytes, stored at (shard, file offset).
    Copy(u32, u64),
    /// The parent had a page here, it had none.
    Discard,
    /// Neither had one.
    Nothing,
}

/// The range [lo, hi) cut where either process's runs begin or end, each piece compared.
fn segments(mine: &Locs, parent: &Locs, lo: u64, hi: u64) -> Vec<(u64, u64, Seg)> {
    let mut cuts = vec![lo, hi];
    for l in [mine, parent] {
        let k = l.partition_point(|r| r.1 <= lo);
        for r in l[k..].iter().take_while(|r| r.0 < hi) {
            cuts.extend([r.0, r.1].into_iter().filter(|&x| x > lo && x < hi));
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| {
            let seg = match (stored_at(mine, w[0]), stored_at(parent, w[0])) {
                (Some(x), Some(y)) if x == y => Seg::Same,
                (Some((sh, off)), _) => Seg::Copy(sh, off),
                (None, Some(_)) => Seg::Discard,
                (None, None) => Seg::Nothing,
            };
            (w[0], w[1], seg)
        })
        .collect()
}

/// The VMAs whose pages restore writes: private anonymous or private file mappings
/// with saved pages.
fn fillable(p: &Process) -> impl Iterator<Item = &Vma> {
    p.vmas.iter().filter(|v| fillable_vma(v))
}

fn fillable_vma(v: &Vma) -> bool {
    // (hugetlb memory is never built before the fork: the premap area has ordinary pages)
    !v.shared && v.pages_saved > 0 && v.huge_page_size == 0 && matches!(VmaKind::try_from(v.kind), Ok(VmaKind::Anon | VmaKind::FilePrivate))
}

fn growsdown(v: &Vma) -> bool {
    v.vm_flags.iter().any(|f| f == "gd")
}

/// Whether VMA `v` can take over (part of) a piece mapped as `s`: the same kind of
/// memory, and for a file the same file at the same offsets.
fn compatible(v: &Vma, s: &Premap) -> bool {
    let file = v.kind == VmaKind::FilePrivate as i32;
    let obj = if file { v.object_id } else { 0 };
    obj == s.object && growsdown(v) == s.growsdown && (!file || v.pgoff.wrapping_sub(v.start) == s.file_off.wrapping_sub(s.start))
}

/// The pieces of private memory each process builds before forking (`Premap`), parents
/// first; returns the size of the premap area.
fn premaps(m: &Manifest, procs: &mut [ProcPlan], map_slot: &HashMap<u32, usize>) -> u64 {
    let locs = locs(m);
    let none = Locs::new();
    let mut next = 0u64;
    let alive: Vec<bool> = procs.iter().map(|q| !q.zombie && !q.shares_vm).collect();
    let live = |k: usize| alive[k];
    let parents: Vec<Option<usize>> = (0..procs.len())
        .map(|i| {
            let q = if i == 0 { None } else { m.processes.iter().position(|q| q.pid == m.processes[i].ppid) };
            q.filter(|&q| q != i && live(q) && live(i))
        })
        .collect();
    for i in 0..procs.len() {
        if !live(i) {
            continue;
        }
        let p = &m.processes[i];
        let mine = locs.get(&p.pid).unwrap_or(&none);
        let kids: Vec<usize> = procs[i].children.iter().copied().filter(|&c| live(c) && parents[c] == Some(i)).collect();
        let mut pieces: Vec<Premap> = Vec::new();
        for v in fillable(p) {
            let file = v.kind == VmaKind::FilePrivate as i32;
            let slot = if file { map_slot.get(&v.object_id).copied() } else { None };
            if file && slot.is_none() {
                continue;
            }
            let piece = |lo: u64, hi: u64, tmp: u64, inherited: bool, segs: &[(u64, u64, Seg)]| Premap {
                start: lo,
                end: hi,
                tmp,
                inherited,
                object: if file { v.object_id } else { 0 },
                slot,
                file_off: v.pgoff.wrapping_add(lo - v.start),
                growsdown: growsdown(v),
                copy: segs.iter().fold(Vec::new(), |mut v: Vec<PageCopy>, &(a, b, s)| {
                    if let Seg::Copy(shard, file_offset) = s {
                        match v.last_mut() {
                            Some(c) if c.off + c.len == a - lo && c.shard == shard && c.file_offset.wrapping_add(c.len) == file_offset => {
                                c.len += b - a
                            }
                            _ => v.push(PageCopy { off: a - lo, len: b - a, shard, file_offset }),
                        }
                    }
                    v
                }),
                discard: segs.iter().filter(|x| x.2 == Seg::Discard).fold(Vec::new(), |mut v: Vec<(u64, u64)>, &(a, b, _)| {
                    match v.last_mut() {
                        Some(d) if d.0 + d.1 == a - lo => d.1 += b - a,
                        _ => v.push((a - lo, b - a)),
                    }
                    v
                }),
            };
            // inherited: where its parent built a piece it still shared pages in
            let mut covered: Vec<(u64, u64)> = Vec::new();
            if let Some(q) = parents[i] {
                let theirs = locs.get(&m.processes[q].pid).unwrap_or(&none);
                // (a parent's pieces are disjoint and sorted by address)
                let theirs_pm = &procs[q].premaps;
                let k = theirs_pm.partition_point(|s| s.end <= v.start);
                for s in theirs_pm[k..].iter().take_while(|s| s.start < v.end).filter(|s| compatible(v, s)) {
                    let (lo, hi) = (s.start.max(v.start), s.end.min(v.end));
                    let segs = segments(mine, theirs, lo, hi);
                    if segs.iter().any(|x| x.2 == Seg::Same) {
                        pieces.push(piece(lo, hi, s.tmp + (lo - s.start), true, &segs));
                        covered.push((lo, hi));
                    }
                }
            }
            if kids.is_empty() {
                continue;
            }
            // the rest of the VMA, fresh, where a child still shared pages with it
            covered.sort_unstable();
            let mut gaps = Vec::new();
            let mut at = v.start;
            for &(lo, hi) in &covered {
                if lo > at {
                    gaps.push((at, lo));
                }
                at = at.max(hi);
            }
            if at < v.end {
                gaps.push((at, v.end));
            }
            for (lo, hi) in gaps {
                let shared = kids.iter().any(|&c| {
                    let theirs = locs.get(&m.processes[c].pid).unwrap_or(&none);
                    let probe = piece(lo, hi, 0, false, &[]);
                    // (VMAs are sorted and disjoint: validate)
                    let vmas = &m.processes[c].vmas;
                    let k = vmas.partition_point(|w| w.end <= lo);
                    vmas[k..]
                        .iter()
                        .take_while(|w| w.start < hi)
                        .filter(|w| fillable_vma(w) && compatible(w, &probe))
                        .any(|w| segments(theirs, mine, lo.max(w.start), hi.min(w.end)).iter().any(|x| x.2 == Seg::Same))
                });
                let len = hi - lo;
                if !shared || next.saturating_add(len) > PREMAP_MAX {
                    continue;
                }
                pieces.push(piece(lo, hi, next, false, &segments(mine, &none, lo, hi)));
                next += len + PREMAP_GAP;
            }
        }
        if !pieces.is_empty() {
            debug!(pid = p.pid, pieces = pieces.len(), "private memory built before forking (shared copy-on-write with its children)");
        }
        pieces.sort_unstable_by_key(|x| x.start);
        procs[i].premaps = pieces;
    }
    next
}

/// The build steps of a live process.
fn steps(pp: &ProcPlan, hand_over: bool) -> Vec<Step> {
    use Step::*;
    let mut v = vec![Seize];
    if !pp.shares_vm {
        v.push(AddressSpace);
        if pp.aio {
            v.push(AioContexts);
        }
        v.extend([FillMemory, FinishVmas, MmFields]);
    }
    v.extend([CreateThreads, ThreadState, Signals, Timers, Attrs]);
    if pp.pgid > 0 && pp.pgid != pp.pid && pp.sid != pp.pid {
        v.push(JoinGroup);
    }
    if pp.foreground.is_some() {
        // before the carried fds are closed: it goes through its slot's
        v.push(Foreground);
    }
    if pp.closes_table {
        v.push(CloseCarried);
    }
    if !pp.late_fds.is_empty() {
        v.push(LateFds);
    }
    // epoll items of fd numbers closed since: added through a dup of the file put at
    // the number for the moment, then closed again, which would drop POSIX locks: the
    // locks come after
    v.push(EpollItems);
    if pp.closes_table {
        v.push(Locks);
    }
    if hand_over {
        v.push(HandOver);
    }
    v.extend([Seccomp, Creds, Dumpable]);
    if !pp.helpers.is_empty() {
        v.push(ReapHelpers);
    }
    v
}

/// Which processes one tracer thread builds, in order (a ptrace tracee belongs to the
/// thread that seized it). Processes sharing an fd table or an address space with their
/// parent stay with it, in tree order: the last one closes the carried fds the others
/// still map from, and they share the trampoline's data area.
fn units(m: &Manifest) -> Vec<Vec<usize>> {
    let mut units: Vec<Vec<usize>> = Vec::new();
    for (i, q) in m.processes.iter().enumerate() {
        if q.zombie {
            continue;
        }
        let parent = m.processes.iter().position(|x| x.pid == q.ppid);
        match parent.filter(|_| q.shares_files || q.shares_vm).and_then(|p| units.iter().position(|u| u.contains(&p))) {
            Some(u) => units[u].push(i),
            None => units.push(vec![i]),
        }
    }
    units
}

/// Sessions and process groups whose leader had exited before the dump: their ids must
/// exist again for the members to be in them. Helper processes take the leaders' pids:
/// returns the root's session to recreate (0: none) and marks, for each such group, the
/// first live member, which creates it (`ProcPlan::group_helper`).
fn dead_leaders(m: &Manifest, procs: &mut [ProcPlan], host: &dyn Host) -> i32 {
    let in_tree = |id: i32| m.processes.iter().any(|q| q.pid == id);
    // A group or session whose leader is gone can still exist (other members outside
    // the tree keep it, and its id stays allocated): then there is nothing to recreate.
    let our_sid = host.sid();
    let mut session = 0;
    let root = &procs[0];
    // A shell job (dump --shell-job): its session is the shell's, whose terminal the
    // restorer's replaces (restore --shell-job): it joins the restorer's session.
    let shell_job = m.objects.iter().filter_map(|o| o.tty()).any(|t| t.external && t.session == root.sid);
    if root.sid > 0 && root.sid != root.pid && root.sid != our_sid && !in_tree(root.sid) {
        if shell_job {
            debug!(pid = root.pid, sid = root.sid, "shell job: it joins the restorer's session and terminal");
        } else if host.session_alive(root.sid) {
            warn!(pid = root.pid, sid = root.sid, "its session still exists outside the tree (no joining it): it joins the restorer's session");
        } else {
            match host.holder(root.sid) {
                None if root.set_tid.len() == 1 => session = root.sid,
                None => warn!(pid = root.pid, sid = root.sid, "session not recreated (root in a new PID namespace)"),
                Some(h) => warn!(
                    pid = root.pid,
                    sid = root.sid,
                    "its session leader's pid is held by {h}; the process joins the restorer's session"
                ),
            }
        }
    }
    for i in 1..procs.len() {
        let (x, s) = (procs[i].pid, procs[i].sid);
        let psid = m.processes.iter().position(|q| q.pid == m.processes[i].ppid).map(|k| procs[k].sid).unwrap_or(0);
        if m.processes[i].zombie || s <= 0 || s == x || s == psid || in_tree(s) || procs[i].set_tid.len() != 1 {
            continue;
        }
        if host.session_alive(s) {
            warn!(pid = x, sid = s, "its session still exists outside the tree: it stays in its parent's session");
            continue;
        }
        match host.holder(s) {
            None => procs[i].session_helper = s,
            Some(h) => warn!(pid = x, sid = s, "its session leader's pid is held by {h}; it stays in its parent's session"),
        }
    }
    let mut done: Vec<i32> = Vec::new();
    for (i, p) in m.processes.iter().enumerate() {
        let pp = &procs[i];
        let g = pp.pgid;
        let recreated_session = g == pp.sid && (pp.session_helper == g || i == 0 && session == g);
        if p.zombie || g <= 0 || g == pp.pid || recreated_session || in_tree(g) || done.contains(&g) || pp.set_tid.len() != 1 {
            continue;
        }
        if let Some(h) = host.holder(g) {
            // a live group of another process: joined if it is in the same session
            debug!(pid = pp.pid, pgid = g, "process group led by {h}");
            continue;
        }
        if host.group_alive(g) {
            // its leader is gone but members outside the tree keep it: joined as it is
            debug!(pid = pp.pid, pgid = g, "process group without its leader still exists");
            continue;
        }
        done.push(g);
        procs[i].group_helper = g;
    }
    session
}

/// Which children a session leader forks before its own setsid().
///
/// Sessions are only inherited: a process is in session S because whoever forked it was
/// in S then. A child whose session is neither its parent's own nor recreated by a
/// helper was forked before its parent called setsid(), so it is forked again before
/// the parent's setsid(); it then needs the parent to have been born in that session,
/// and so on up the tree (bottom-up: `need` is the session a process must be born in).
/// `our_sid`: the restorer's session, which the root is born in.
fn born_sessions(procs: &mut [ProcPlan], our_sid: i32) {
    let mut need: Vec<Option<i32>> = vec![None; procs.len()];
    for i in (0..procs.len()).rev() {
        let p = &procs[i];
        if p.zombie || p.session_helper != 0 || p.sid <= 0 {
            continue;
        }
        if p.sid != p.pid {
            need[i] = Some(p.sid);
            continue;
        }
        let wanted: Vec<i32> = p.children.iter().filter_map(|&c| need[c]).filter(|&x| x != p.pid).collect();
        if let Some(other) = wanted.iter().find(|&&x| x != wanted[0]) {
            warn!(pid = p.pid, "its children were born in sessions {} and {other}: only the first is recreated", wanted[0]);
        }
        need[i] = wanted.first().copied();
    }
    for i in 0..procs.len() {
        if procs[i].sid != procs[i].pid {
            continue;
        }
        let born = if i == 0 { need[0].filter(|&x| x == our_sid) } else { need[i] };
        let pid = procs[i].pid;
        for c in procs[i].children.clone() {
            procs[c].before_setsid = need[c].is_some_and(|x| x != pid && Some(x) == born);
        }
    }
}

fn clone_flag_names(f: u64) -> String {
    let names = [
        (libc::CLONE_NEWPID, "NEWPID"),
        (libc::CLONE_FILES, "FILES"),
        (libc::CLONE_FS, "FS"),
        (libc::CLONE_VM, "VM"),
        (libc::CLONE_SIGHAND, "SIGHAND"),
    ];
    let v: Vec<&str> = names.iter().filter(|(b, _)| f & *b as u64 != 0).map(|(_, n)| *n).collect();
    if v.is_empty() {
        "-".into()
    } else {
        v.join("|")
    }
}

impl fmt::Display for RestorePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "restore plan: root {}, {} processes, {} carried objects", self.root, self.procs.len(), self.carry.len())?;
        if self.session_helper != 0 {
            writeln!(f, "  session {} is recreated by the root's intermediate parent (its leader had exited)", self.session_helper)?;
        }
        writeln!(f, "carry slots:")?;
        for (i, what) in self.labels.iter().enumerate() {
            writeln!(f, "  {i:>3}: {what}")?;
        }
        writeln!(f, "tracer threads: {:?}", self.units.iter().map(|u| u.iter().map(|&i| self.procs[i].pid).collect::<Vec<_>>()).collect::<Vec<_>>())?;
        for p in &self.procs {
            let kids: Vec<String> =
                p.children.iter().map(|&c| format!("{}{}", self.procs[c].pid, if self.procs[c].before_setsid { " (before setsid)" } else { "" })).collect();
            writeln!(f, "pid {} {:?}{}", p.pid, p.comm, if p.zombie { format!(" zombie, exit status {:#x}", p.exit_status) } else { String::new() })?;
            writeln!(f, "  clone: set_tid {:?}, flags {}, exit signal {}", p.set_tid, clone_flag_names(p.clone_flags), p.exit_signal)?;
            writeln!(
                f,
                "  session {}{}, group {}{}",
                p.sid,
                if p.sid == p.pid { " (leads it: setsid)" } else { "" },
                p.pgid,
                if p.pgid == p.pid && p.sid != p.pid { " (leads it: setpgid)" } else { "" }
            )?;
            if p.group_helper != 0 {
                writeln!(f, "  recreates group {} with a helper (its leader had exited)", p.group_helper)?;
            }
            if p.session_helper != 0 {
                writeln!(f, "  forked by a helper recreating session {} (its leader had exited)", p.session_helper)?;
            }
            if !kids.is_empty() {
                writeln!(f, "  forks: {}", kids.join(", "))?;
            }
            if p.zombie {
                continue;
            }
            let mut ns = Vec::new();
            if p.new_mnt {
                ns.push("new mount namespace".to_string());
            }
            if p.mount_proc || p.mount_proc_parent_ns {
                ns.push("mounts /proc".into());
            }
            if p.ns.unshare != 0 {
                ns.push(format!("unshares {:#x}", p.ns.unshare));
            }
            if let Some(s) = p.ns.net_slot {
                ns.push(format!("joins the network namespace of slot {s}"));
            }
            if p.ns.time_children.is_some() {
                ns.push("new time namespace for its children".into());
            }
            if !ns.is_empty() {
                writeln!(f, "  namespaces: {}", ns.join(", "))?;
            }
            if p.shares_files {
                writeln!(f, "  fds: shares its parent's table")?;
            } else if !p.assign.is_empty() {
                let fds: Vec<String> =
                    p.assign.iter().map(|a| format!("{}<-{}{}", a.fd, a.slot, if a.cloexec { "e" } else { "" })).collect();
                writeln!(f, "  fds (fd<-slot, e = close-on-exec): {}", fds.join(" "))?;
            }
            match p.vdso_base {
                Some(v) => writeln!(f, "  vDSO at {v:#x}, executable in slot {}", p.exe_slot.map(|s| s.to_string()).unwrap_or("-".into()))?,
                None => writeln!(f, "  memory: its parent's (CLONE_VM)")?,
            }
            if !p.premaps.is_empty() {
                let inh = p.premaps.iter().filter(|x| x.inherited).count();
                let kib: u64 = p.premaps.iter().map(|x| (x.end - x.start) / 1024).sum();
                writeln!(
                    f,
                    "  private memory built before forking (shared copy-on-write): {} pieces, {kib} KiB, {inh} inherited from its parent",
                    p.premaps.len()
                )?;
            }
            let st: Vec<String> = p.steps.iter().chain(p.finish_steps().iter()).map(|s| format!("{s:?}")).collect();
            writeln!(f, "  steps: {}", st.join(" → "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host where nothing is taken but the restorer's session 1.
    struct Empty;
    impl Host for Empty {
        fn holder(&self, _: i32) -> Option<String> {
            None
        }
        fn session_alive(&self, sid: i32) -> bool {
            sid == 1
        }
        fn group_alive(&self, _: i32) -> bool {
            false
        }
        fn sid(&self) -> i32 {
            1
        }
    }

    fn vma(start: u64, end: u64, kind: VmaKind, object_id: u32, name: &str) -> Vma {
        Vma { start, end, kind: kind as i32, object_id, name: name.into(), ..Default::default() }
    }

    fn proc(pid: i32, ppid: i32, pgid: i32, sid: i32, vdso: u64) -> Process {
        Process {
            pid,
            ppid,
            comm: format!("p{pid}"),
            threads: vec![Thread { tid: pid, ..Default::default() }],
            mm: Some(MmInfo { exe_object: 1, ..Default::default() }),
            attrs: Some(ProcAttrs { pgid, sid, cwd: "/".into(), ..Default::default() }),
            vmas: vec![
                vma(0x40_0000, 0x40_1000, VmaKind::FilePrivate, 1, "/bin/x"),
                vma(vdso, vdso + 0x4000, VmaKind::Vvar, 0, "[vvar]"),
                vma(vdso + 0x4000, vdso + 0x6000, VmaKind::Vdso, 0, "[vdso]"),
            ],
            ..Default::default()
        }
    }

    fn manifest(procs: Vec<Process>) -> Manifest {
        let mut m = Manifest::default();
        m.process = procs[0].clone();
        m.processes = procs;
        m.objects = vec![
            Object { id: 1, kind: Some(Kind::MappedFile(MappedFileObj { path: "/bin/x".into(), ..Default::default() })), ..Default::default() },
            Object { id: 2, kind: Some(Kind::File(FileObj { path: "/dev/null".into(), ..Default::default() })), ..Default::default() },
            Object { id: 3, kind: Some(Kind::Shmem(ShmemObj { size: 4096, ..Default::default() })), ..Default::default() },
        ];
        m
    }

    /// A packet ring VMA is mapped through its socket: the map slot of the socket's
    /// object is the socket's fd slot (one carry slot for both).
    #[test]
    fn packet_ring_mapped_through_its_socket() {
        let mut a = proc(10, 1, 10, 10, 0x7fff_0000_0000);
        a.fds = vec![Fd { fd: 4, object_id: 5, ..Default::default() }];
        a.vmas.insert(1, vma(0x7f00_0000_0000, 0x7f00_0000_4000, VmaKind::PacketRing, 5, "socket:[77]"));
        let mut m = manifest(vec![a]);
        m.objects.push(Object { id: 5, kind: Some(Kind::Packet(PacketObj::default())), ..Default::default() });
        let plan = RestorePlan::build(&m, &Empty, false).unwrap();
        assert_eq!(plan.carry[..2], [Carry::Fd(5), Carry::Mapped(1)]);
        assert_eq!(plan.map_slot.get(&5), Some(&0));
        // a ring VMA of an object that is no packet socket
        m.processes[0].vmas[1].object_id = 2;
        m.process = m.processes[0].clone();
        assert!(RestorePlan::build(&m, &Empty, false).is_err());
    }

    #[test]
    fn tree_plan() {
        // root 10 leads session and group; 11 its child in a group of its own, sharing
        // fd object 2 with the root; 12 a zombie; 13 a CLONE_VM child of 11.
        let mut a = proc(10, 1, 10, 10, 0x7fff_0000_0000);
        a.fds = vec![Fd { fd: 0, object_id: 2, ..Default::default() }];
        let mut b = proc(11, 10, 11, 10, 0x7ffe_0000_0000);
        b.fds = vec![Fd { fd: 5, object_id: 2, cloexec: true, ..Default::default() }];
        // 11 has an aio context
        let ring = Vma { start: 0x5000_0000, end: 0x5000_1000, shared: true, kind: VmaKind::AioRing as i32, aio: Some(AioRing { nr: 127, ..Default::default() }), ..Default::default() };
        b.vmas.insert(1, ring);
        let mut z = proc(12, 10, 10, 10, 0);
        z.zombie = true;
        z.exit_status = 7 << 8;
        z.vmas.clear();
        let mut c = proc(13, 11, 11, 10, 0);
        c.shares_vm = true;
        c.vmas.clear();
        let m = manifest(vec![a, b, z, c]);
        let plan = RestorePlan::build(&m, &Empty, false).unwrap();
        // one carry slot per object, however many fds share it
        assert_eq!(plan.carry, vec![Carry::Fd(2), Carry::Mapped(1), Carry::Shmem(3)]);
        assert_eq!(plan.procs[0].assign, vec![FdPlace { fd: 0, slot: 0, cloexec: false }]);
        assert_eq!(plan.procs[1].assign, vec![FdPlace { fd: 5, slot: 0, cloexec: true }]);
        // each process its own vDSO
        assert_eq!(plan.procs[0].vdso_base, Some(0x7fff_0000_0000));
        assert_eq!(plan.procs[1].vdso_base, Some(0x7ffe_0000_0000));
        assert_eq!(plan.procs[3].vdso_base, None);
        assert_eq!(plan.procs[0].children, vec![1, 2]);
        assert_eq!(plan.procs[1].children, vec![3]);
        // the CLONE_VM child: no memory steps, and its parent leaves the trampoline to it
        assert!(plan.procs[3].clone_flags & libc::CLONE_VM as u64 != 0);
        assert!(!plan.procs[3].steps.contains(&Step::AddressSpace));
        assert!(plan.procs[1].steps.contains(&Step::AddressSpace));
        // its aio context right after its VMAs, before their pages; none for the root
        assert_eq!(plan.procs[1].steps[1..4], [Step::AddressSpace, Step::AioContexts, Step::FillMemory]);
        assert!(!plan.procs[0].steps.contains(&Step::AioContexts));
        assert!(!plan.procs[1].unmaps_tramp);
        assert!(plan.procs[2].steps.is_empty()); // zombie
        assert_eq!(plan.procs[0].exit_signal, libc::SIGCHLD);
        // 11 leads its group, 13 joins it
        assert!(!plan.procs[1].steps.contains(&Step::JoinGroup));
        assert!(plan.procs[3].steps.contains(&Step::JoinGroup));
        // 11 and 13 share an address space: one tracer thread
        assert_eq!(plan.units, vec![vec![0], vec![1, 3]]);
        assert!(!plan.middle);
        let text = plan.to_string();
        assert!(text.contains("pid 12 \"p12\" zombie, exit status 0x700"), "{text}");
        assert!(text.contains("flags VM"), "{text}");
    }

    #[test]
    fn exited_leaders_get_helpers() {
        // root 20 in session 5 and group 6, both of exited leaders; its child 21 (it was
        // re-parented to 20) in session 7, whose leader had exited too.
        let a = proc(20, 1, 6, 5, 0x7fff_0000_0000);
        let b = proc(21, 20, 21, 7, 0x7fff_0000_0000);
        let m = manifest(vec![a, b]);
        let plan = RestorePlan::build(&m, &Empty, false).unwrap();
        assert_eq!(plan.session_helper, 5);
        assert!(plan.middle);
        assert_eq!(plan.procs[0].group_helper, 6);
        assert_eq!(plan.procs[1].session_helper, 7);
        assert_eq!(plan.procs[0].helpers, vec![7, 6]);
        assert!(plan.procs[0].steps.contains(&Step::HandOver));
        assert!(plan.procs[0].steps.contains(&Step::ReapHelpers));
        assert!(plan.procs[1].finish_steps().contains(&Step::ArmPdeathsig));
    }

    /// A process whose main thread had exited: its main thread exits again once every
    /// process is built (after their credentials and parent-death signals); its child's
    /// parent-death signal is armed in the finish steps, once that exit (which fires it)
    /// is over. Not for others.
    #[test]
    fn exited_main_thread_exits_again() {
        let mut a = proc(50, 1, 50, 50, 0x7fff_0000_0000);
        (a.leader_exited, a.threads) = (true, vec![Thread { tid: 51, ..Default::default() }]);
        let b = proc(52, 50, 50, 50, 0x7fff_0000_0000);
        let plan = RestorePlan::build(&manifest(vec![a, b]), &Empty, true).unwrap();
        let steps = &plan.procs[0].steps;
        assert_eq!(steps[steps.len() - 2..], [Step::Creds, Step::Dumpable]);
        assert!(!steps.contains(&Step::ExitLeader));
        assert_eq!(plan.procs[0].exit_steps(), [Step::ExitLeader]);
        assert!(!plan.procs[0].finish_steps().contains(&Step::ArmPdeathsig));
        assert!(plan.procs[1].exit_steps().is_empty());
        assert!(plan.procs[1].finish_steps().contains(&Step::ArmPdeathsig));
    }

    #[test]
    fn children_born_before_setsid() {
        // 30 (in the restorer's session 1) forks 31, then calls setsid; 31 stays in 1.
        let a = proc(30, 1, 30, 30, 0x7fff_0000_0000);
        let b = proc(31, 30, 1, 1, 0x7fff_0000_0000);
        let m = manifest(vec![a, b]);
        let plan = RestorePlan::build(&m, &Empty, true).unwrap();
        assert!(plan.procs[1].before_setsid);
        assert!(plan.middle);
    }

    #[test]
    fn cow_shared_memory_is_built_before_forking() {
        const P: u64 = 4096;
        let heap = 0x10_0000u64;
        let anon = |pages: u64| Vma { start: heap, end: heap + 8 * P, kind: VmaKind::Anon as i32, pages_saved: pages, ..Default::default() };
        let run = |pid: i32, addr: u64, count: u32, off: u64| PageRun { pid, addr, count, file_offset: off, shard: 0, ..Default::default() };
        // root 50: pages 0-3 stored at 4096..; child 51: page 0 and 3 the same bytes,
        // page 1 its own, page 2 absent (the root's must go); grandchild 52 shares page 3
        // with 51; sibling 53 shares nothing.
        let mut a = proc(50, 1, 50, 50, 0x7fff_0000_0000);
        a.vmas.insert(0, anon(4));
        let mut b = proc(51, 50, 50, 50, 0x7fff_0000_0000);
        b.vmas.insert(0, anon(3));
        let mut c = proc(52, 51, 50, 50, 0x7fff_0000_0000);
        c.vmas.insert(0, anon(1));
        let mut d = proc(53, 50, 50, 50, 0x7fff_0000_0000);
        d.vmas.insert(0, anon(1));
        let mut m = manifest(vec![a, b, c, d]);
        m.index.runs = vec![
            run(50, heap, 4, 4096),
            run(51, heap, 1, 4096),
            run(51, heap + P, 1, 9 * 4096),
            run(51, heap + 3 * P, 1, 4 * 4096),
            run(52, heap + 3 * P, 1, 4 * 4096),
            run(53, heap, 1, 20 * 4096),
        ];
        let plan = RestorePlan::build(&m, &Empty, false).unwrap();
        let root = &plan.procs[0].premaps;
        assert_eq!(root.len(), 1, "{root:?}");
        assert_eq!((root[0].start, root[0].end, root[0].tmp, root[0].inherited), (heap, heap + 8 * P, 0, false));
        assert_eq!(root[0].copy, vec![PageCopy { off: 0, len: 4 * P, shard: 0, file_offset: 4096 }]);
        let kid = &plan.procs[1].premaps;
        assert_eq!(kid.len(), 1, "{kid:?}");
        assert!(kid[0].inherited);
        assert_eq!((kid[0].start, kid[0].end, kid[0].tmp), (heap, heap + 8 * P, 0));
        assert_eq!(kid[0].copy, vec![PageCopy { off: P, len: P, shard: 0, file_offset: 9 * 4096 }]);
        assert_eq!(kid[0].discard, vec![(2 * P, P)]);
        // the grandchild keeps its parent's piece (page 3 shared), with nothing to change
        // but the pages 51 had and it had not
        let gk = &plan.procs[2].premaps;
        assert_eq!(gk.len(), 1, "{gk:?}");
        assert!(gk[0].inherited && gk[0].copy.is_empty());
        assert_eq!(gk[0].discard, vec![(0, 2 * P)]);
        // nothing shared: fresh mappings as usual
        assert!(plan.procs[3].premaps.is_empty());
        assert_eq!(plan.premap_len, 8 * P + PREMAP_GAP);
        // a different file offset or kind is not inherited
        let mut m2 = m.clone();
        m2.processes[1].vmas[0].vm_flags = vec!["gd".into()];
        let plan = RestorePlan::build(&m2, &Empty, false).unwrap();
        assert!(plan.procs[1].premaps.is_empty());
    }

    #[test]
    fn nul_in_a_name_is_an_error_not_a_panic() {
        let mut a = proc(40, 1, 40, 40, 0x7fff_0000_0000);
        a.comm = "a\0b".into();
        let m = manifest(vec![a]);
        assert!(RestorePlan::build(&m, &Empty, false).is_err());
    }
}
