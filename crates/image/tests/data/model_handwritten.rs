//! Record payloads. Hand-written prost messages: protobuf's wire format lets a newer
//! reader skip fields it does not know and an older reader ignore new ones, and tags are
//! never reused. Add fields with new tags; never change a tag's type.

use prost::Message;

/// Record type 1: everything about one process except page contents and shared objects.
#[derive(Clone, PartialEq, Message)]
pub struct Process {
    #[prost(int32, tag = "1")]
    pub pid: i32,
    #[prost(string, tag = "2")]
    pub comm: String,
    #[prost(message, repeated, tag = "3")]
    pub threads: Vec<Thread>,
    #[prost(message, repeated, tag = "4")]
    pub vmas: Vec<Vma>,
    #[prost(message, optional, tag = "5")]
    pub mm: Option<MmInfo>,
    #[prost(message, repeated, tag = "6")]
    pub fds: Vec<Fd>,
    #[prost(message, repeated, tag = "7")]
    pub sigactions: Vec<SigAction>,
    #[prost(message, optional, tag = "8")]
    pub creds: Option<Creds>,
    #[prost(message, optional, tag = "9")]
    pub attrs: Option<ProcAttrs>,
    /// Process-wide pending signals, in queue order.
    #[prost(message, repeated, tag = "10")]
    pub shared_pending: Vec<SigInfo>,
    #[prost(message, repeated, tag = "11")]
    pub itimers: Vec<ITimer>,
    #[prost(message, repeated, tag = "12")]
    pub posix_timers: Vec<PosixTimer>,
    #[prost(message, repeated, tag = "13")]
    pub rlimits: Vec<Rlimit>,
    /// Wall-clock time of the dump (ns since the epoch), for information.
    #[prost(uint64, tag = "14")]
    pub dumped_at_ns: u64,
    /// Kernel release the image was taken on (`uname -r`).
    #[prost(string, tag = "15")]
    pub kernel: String,
    /// File locks held by the process (flock, POSIX record locks, OFD locks).
    #[prost(message, repeated, tag = "16")]
    pub locks: Vec<FileLock>,
    /// Parent's pid (0 for the root of the dumped tree).
    #[prost(int32, tag = "17")]
    pub ppid: i32,
    /// A child that had exited and was not reaped yet: only pid, ppid, comm, session,
    /// group and its wait status are meaningful.
    #[prost(bool, tag = "18")]
    pub zombie: bool,
    /// For a zombie: the raw wait status (exit code << 8, or the killing signal).
    #[prost(int32, tag = "19")]
    pub exit_status: i32,
    /// UTS namespace: object id of a `UtsNsObj`; 0 = the namespace of stasis itself.
    #[prost(uint32, tag = "20")]
    pub uts_ns: u32,
    /// IPC namespace: object id of an `IpcNsObj`; 0 = the namespace of stasis itself.
    #[prost(uint32, tag = "21")]
    pub ipc_ns: u32,
    /// The pid in every PID namespace level from the dumper's (= `pid`) down to the
    /// process's own (`NSpid` of /proc/PID/status). Empty or one entry: the dumper's
    /// namespace. A process one level deeper than its parent (or than the dumper, for
    /// the root) is the init (pid 1) of a new PID namespace.
    #[prost(int32, repeated, tag = "40")]
    pub ns_pids: Vec<i32>,
    /// Signal the process sends its parent when it exits (clone's exit_signal): 0 means
    /// SIGCHLD (the default), -1 none.
    #[prost(int32, tag = "41")]
    pub exit_signal: i32,
    /// Mount namespace identity (ns inode); 0 = the dumper's. A process whose value
    /// differs from its parent's creates a new mount namespace (private propagation).
    #[prost(uint64, tag = "42")]
    pub mnt_ns: u64,
    /// Mounts a fresh procfs on /proc (it is the init of the PID namespace that the
    /// /proc of its mount namespace shows).
    #[prost(bool, tag = "43")]
    pub mount_proc: bool,
    /// Shares its fd table with its parent (clone CLONE_FILES without CLONE_THREAD).
    #[prost(bool, tag = "44")]
    pub shares_files: bool,
    /// Shares cwd, root and umask with its parent (clone CLONE_FS).
    #[prost(bool, tag = "45")]
    pub shares_fs: bool,
    /// Shares its parent's address space (clone CLONE_VM without CLONE_THREAD): it has
    /// no VMAs of its own in the image; its parent's are its memory.
    #[prost(bool, tag = "46")]
    pub shares_vm: bool,
    /// Shares its parent's signal handlers (clone CLONE_SIGHAND, with CLONE_VM).
    #[prost(bool, tag = "47")]
    pub shares_sighand: bool,
    /// Network namespace identity (ns inode); 0 = the dumper's. Only namespaces holding
    /// nothing but the loopback interface, and no sockets, are carried.
    #[prost(uint64, tag = "48")]
    pub net_ns: u64,
    /// In its own network namespace: the loopback interface was up.
    #[prost(bool, tag = "49")]
    pub lo_up: bool,
    /// Time namespace identity (ns inode); 0 = the dumper's.
    #[prost(uint64, tag = "50")]
    pub time_ns: u64,
    /// Time namespace its children are created in (`time_for_children`); 0 = the dumper's.
    #[prost(uint64, tag = "51")]
    pub time_children_ns: u64,
    /// Clock offsets of `time_children_ns` (/proc/PID/timens_offsets): monotonic seconds,
    /// nanoseconds, boottime seconds, nanoseconds.
    #[prost(int64, repeated, tag = "52")]
    pub time_offsets: Vec<i64>,
    /// Control groups: the lines of /proc/PID/cgroup (`ID:CONTROLLERS:PATH`).
    #[prost(string, repeated, tag = "53")]
    pub cgroups: Vec<String>,
    /// Cgroup namespace identity (ns inode); 0 = the dumper's. Its root is the cgroups
    /// of the first process of the tree in it (checked at dump).
    #[prost(uint64, tag = "54")]
    pub cgroup_ns: u64,
    /// Mounts a fresh procfs on /proc in its parent's mount namespace before it creates
    /// its own (it is the init of the PID namespace that the /proc of the parent's
    /// mount namespace shows, and it moved to a new mount namespace afterwards).
    #[prost(bool, tag = "55")]
    pub mount_proc_parent_ns: bool,
}

/// A file lock to take again after the fds are back.
#[derive(Clone, PartialEq, Message)]
pub struct FileLock {
    /// "flock", "posix" or "ofd".
    #[prost(string, tag = "1")]
    pub kind: String,
    /// An fd (in the restored process) through which to take it.
    #[prost(int32, tag = "2")]
    pub fd: i32,
    #[prost(bool, tag = "3")]
    pub write: bool,
    #[prost(uint64, tag = "4")]
    pub start: u64,
    /// Length in bytes; 0 = to the end of the file.
    #[prost(uint64, tag = "5")]
    pub len: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Thread {
    #[prost(int32, tag = "1")]
    pub tid: i32,
    #[prost(string, tag = "2")]
    pub comm: String,
    /// `struct user_regs_struct` as 27 u64 words, in kernel order.
    #[prost(uint64, repeated, tag = "3")]
    pub regs: Vec<u64>,
    /// NT_X86_XSTATE regset bytes (XSAVE layout).
    #[prost(bytes = "vec", tag = "4")]
    pub xstate: Vec<u8>,
    #[prost(uint64, tag = "5")]
    pub sigmask: u64,
    #[prost(uint64, tag = "6")]
    pub robust_list: u64,
    #[prost(uint64, tag = "7")]
    pub robust_list_len: u64,
    #[prost(uint64, tag = "8")]
    pub clear_child_tid: u64,
    #[prost(uint64, tag = "9")]
    pub rseq_addr: u64,
    #[prost(uint32, tag = "10")]
    pub rseq_len: u32,
    #[prost(uint32, tag = "11")]
    pub rseq_sig: u32,
    #[prost(uint64, tag = "12")]
    pub altstack_sp: u64,
    #[prost(uint64, tag = "13")]
    pub altstack_size: u64,
    #[prost(int32, tag = "14")]
    pub altstack_flags: i32,
    #[prost(int32, tag = "15")]
    pub sched_policy: i32,
    #[prost(int32, tag = "16")]
    pub sched_priority: i32,
    #[prost(int32, tag = "17")]
    pub nice: i32,
    /// CPU affinity bitmap (bytes of a cpu_set_t, trimmed).
    #[prost(bytes = "vec", tag = "18")]
    pub affinity: Vec<u8>,
    #[prost(message, repeated, tag = "19")]
    pub pending: Vec<SigInfo>,
    #[prost(int32, tag = "20")]
    pub pdeathsig: i32,
    #[prost(bool, tag = "21")]
    pub no_new_privs: bool,
    /// Syscall the thread was stopped in (orig_rax), -1 if none; informational.
    #[prost(int64, tag = "22")]
    pub in_syscall: i64,
    /// prctl(PR_GET_TIMERSLACK), nanoseconds.
    #[prost(uint64, tag = "23")]
    pub timerslack_ns: u64,
    /// Seccomp mode: 0 off, 1 strict, 2 filter.
    #[prost(int32, tag = "24")]
    pub seccomp_mode: i32,
    /// Seccomp filters, oldest first, raw `struct sock_filter` arrays.
    #[prost(bytes = "vec", repeated, tag = "25")]
    pub seccomp_filters: Vec<Vec<u8>>,
    /// The tid in every PID namespace level, the dumper's first (see Process::ns_pids).
    #[prost(int32, repeated, tag = "40")]
    pub ns_tids: Vec<i32>,
}

/// One VMA, as /proc/PID/maps and smaps describe it.
#[derive(Clone, PartialEq, Message)]
pub struct Vma {
    #[prost(uint64, tag = "1")]
    pub start: u64,
    #[prost(uint64, tag = "2")]
    pub end: u64,
    /// PROT_* bits.
    #[prost(uint32, tag = "3")]
    pub prot: u32,
    #[prost(bool, tag = "4")]
    pub shared: bool,
    #[prost(uint64, tag = "5")]
    pub pgoff: u64,
    #[prost(enumeration = "VmaKind", tag = "6")]
    pub kind: i32,
    /// Object id of the backing file or shared-memory object (0 = none).
    #[prost(uint32, tag = "7")]
    pub object_id: u32,
    /// Name as shown in maps ("[heap]", "/usr/lib/...", "/dev/zero (deleted)").
    #[prost(string, tag = "8")]
    pub name: String,
    /// smaps VmFlags mnemonics that restore must reproduce (gd, dc, wf, hg, nh, dd, mg, lo...).
    #[prost(string, repeated, tag = "9")]
    pub vm_flags: Vec<String>,
    /// Pages of this VMA that the page index holds (some possibly stored for another
    /// process of the tree, shared copy-on-write at dump).
    #[prost(uint64, tag = "10")]
    pub pages_saved: u64,
    /// SysvShm: shmat(2) flags of the attachment (SHM_RDONLY).
    #[prost(uint32, tag = "11")]
    pub shm_flags: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum VmaKind {
    Unknown = 0,
    /// Private anonymous memory (heap, stack, mmap).
    Anon = 1,
    /// Private mapping of a file; only pages that differ from the file are saved.
    FilePrivate = 2,
    /// Shared mapping of a file; contents live in the file.
    FileShared = 3,
    /// Shared anonymous memory (shmem object), contents saved by object offset.
    ShmemAnon = 4,
    Vdso = 5,
    Vvar = 6,
    VvarVclock = 7,
    Vsyscall = 8,
    /// An attachment of a SysV shared memory segment (`SysvShmObj`; the VMA's pgoff is
    /// the offset in the segment). Contents are saved once per segment.
    SysvShm = 9,
}

#[derive(Clone, PartialEq, Message)]
pub struct MmInfo {
    #[prost(uint64, tag = "1")]
    pub start_code: u64,
    #[prost(uint64, tag = "2")]
    pub end_code: u64,
    #[prost(uint64, tag = "3")]
    pub start_data: u64,
    #[prost(uint64, tag = "4")]
    pub end_data: u64,
    #[prost(uint64, tag = "5")]
    pub start_brk: u64,
    #[prost(uint64, tag = "6")]
    pub brk: u64,
    #[prost(uint64, tag = "7")]
    pub start_stack: u64,
    #[prost(uint64, tag = "8")]
    pub arg_start: u64,
    #[prost(uint64, tag = "9")]
    pub arg_end: u64,
    #[prost(uint64, tag = "10")]
    pub env_start: u64,
    #[prost(uint64, tag = "11")]
    pub env_end: u64,
    /// Raw /proc/PID/auxv words.
    #[prost(uint64, repeated, tag = "12")]
    pub auxv: Vec<u64>,
    /// Object id of /proc/PID/exe.
    #[prost(uint32, tag = "13")]
    pub exe_object: u32,
    #[prost(bool, tag = "14")]
    pub thp_disabled: bool,
}

/// One file descriptor: a number, its FD_CLOEXEC flag and the open file description
/// (object) it refers to. Several fds may share one object (dup).
#[derive(Clone, PartialEq, Message)]
pub struct Fd {
    #[prost(int32, tag = "1")]
    pub fd: i32,
    #[prost(uint32, tag = "2")]
    pub object_id: u32,
    #[prost(bool, tag = "3")]
    pub cloexec: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct SigAction {
    #[prost(int32, tag = "1")]
    pub signo: i32,
    #[prost(uint64, tag = "2")]
    pub handler: u64,
    #[prost(uint64, tag = "3")]
    pub flags: u64,
    #[prost(uint64, tag = "4")]
    pub restorer: u64,
    #[prost(uint64, tag = "5")]
    pub mask: u64,
}

/// A queued signal: its raw 128-byte siginfo.
#[derive(Clone, PartialEq, Message)]
pub struct SigInfo {
    #[prost(int32, tag = "1")]
    pub signo: i32,
    #[prost(bytes = "vec", tag = "2")]
    pub raw: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ITimer {
    /// ITIMER_REAL = 0, VIRTUAL = 1, PROF = 2.
    #[prost(int32, tag = "1")]
    pub which: i32,
    #[prost(uint64, tag = "2")]
    pub interval_us: u64,
    #[prost(uint64, tag = "3")]
    pub value_us: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct PosixTimer {
    #[prost(int32, tag = "1")]
    pub id: i32,
    #[prost(int32, tag = "2")]
    pub clock: i32,
    #[prost(int32, tag = "3")]
    pub signo: i32,
    /// SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD_ID...
    #[prost(int32, tag = "4")]
    pub notify: i32,
    #[prost(int32, tag = "5")]
    pub notify_tid: i32,
    #[prost(uint64, tag = "6")]
    pub sigval: u64,
    #[prost(uint64, tag = "7")]
    pub interval_ns: u64,
    #[prost(uint64, tag = "8")]
    pub value_ns: u64,
    #[prost(int32, tag = "9")]
    pub overrun: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct Rlimit {
    #[prost(int32, tag = "1")]
    pub resource: i32,
    #[prost(uint64, tag = "2")]
    pub cur: u64,
    #[prost(uint64, tag = "3")]
    pub max: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Creds {
    #[prost(uint32, repeated, tag = "1")]
    pub uids: Vec<u32>,
    #[prost(uint32, repeated, tag = "2")]
    pub gids: Vec<u32>,
    #[prost(uint32, repeated, tag = "3")]
    pub groups: Vec<u32>,
    #[prost(uint64, tag = "4")]
    pub cap_inh: u64,
    #[prost(uint64, tag = "5")]
    pub cap_prm: u64,
    #[prost(uint64, tag = "6")]
    pub cap_eff: u64,
    #[prost(uint64, tag = "7")]
    pub cap_bnd: u64,
    #[prost(uint64, tag = "8")]
    pub cap_amb: u64,
    #[prost(uint32, tag = "9")]
    pub securebits: u32,
}

#[derive(Clone, PartialEq, Message)]
pub struct ProcAttrs {
    #[prost(uint32, tag = "1")]
    pub umask: u32,
    #[prost(string, tag = "2")]
    pub cwd: String,
    #[prost(string, tag = "3")]
    pub root: String,
    #[prost(uint32, tag = "4")]
    pub personality: u32,
    #[prost(int32, tag = "5")]
    pub oom_score_adj: i32,
    #[prost(int32, tag = "6")]
    pub dumpable: i32,
    #[prost(bool, tag = "7")]
    pub child_subreaper: bool,
    /// Stopped by a stop signal (group stop) when dumped: restore leaves it stopped.
    #[prost(bool, tag = "8")]
    pub stopped: bool,
    #[prost(int32, tag = "9")]
    pub pgid: i32,
    #[prost(int32, tag = "10")]
    pub sid: i32,
}

/// Record type 2: one shared object, written once and referenced by id.
#[derive(Clone, PartialEq, Message)]
pub struct Object {
    #[prost(uint32, tag = "1")]
    pub id: u32,
    #[prost(message, optional, tag = "2")]
    pub file: Option<FileObj>,
    #[prost(message, optional, tag = "3")]
    pub pipe: Option<PipeObj>,
    #[prost(message, optional, tag = "4")]
    pub pipe_end: Option<PipeEndObj>,
    #[prost(message, optional, tag = "5")]
    pub shmem: Option<ShmemObj>,
    #[prost(message, optional, tag = "6")]
    pub mapped_file: Option<MappedFileObj>,
    #[prost(message, optional, tag = "7")]
    pub eventfd: Option<EventfdObj>,
    #[prost(message, optional, tag = "8")]
    pub timerfd: Option<TimerfdObj>,
    #[prost(message, optional, tag = "9")]
    pub signalfd: Option<SignalfdObj>,
    #[prost(message, optional, tag = "10")]
    pub epoll: Option<EpollObj>,
    #[prost(message, optional, tag = "11")]
    pub inotify: Option<InotifyObj>,
    #[prost(message, optional, tag = "20")]
    pub ghost: Option<GhostObj>,
    #[prost(message, optional, tag = "21")]
    pub unix: Option<UnixObj>,
    #[prost(message, optional, tag = "22")]
    pub inet: Option<InetObj>,
    #[prost(message, optional, tag = "23")]
    pub uts_ns: Option<UtsNsObj>,
    #[prost(message, optional, tag = "24")]
    pub ipc_ns: Option<IpcNsObj>,
    #[prost(message, optional, tag = "25")]
    pub sysv_shm: Option<SysvShmObj>,
    #[prost(message, optional, tag = "26")]
    pub sysv_msg: Option<SysvMsgObj>,
    #[prost(message, optional, tag = "27")]
    pub sysv_sem: Option<SysvSemObj>,
    #[prost(message, optional, tag = "28")]
    pub fifo: Option<FifoObj>,
    #[prost(message, optional, tag = "29")]
    pub fifo_fd: Option<FifoFdObj>,
    /// A socket's network namespace (ns inode); 0 = the dumper's. Otherwise it is the
    /// network namespace of a process of the tree, and restore creates the socket there.
    #[prost(uint64, tag = "70")]
    pub net_ns: u64,
}

/// A UTS namespace other than stasis's: restore creates a new one (the first process
/// of the tree in it unshares) and sets the names.
#[derive(Clone, PartialEq, Message)]
pub struct UtsNsObj {
    /// Inode of /proc/PID/ns/uts at dump time (identity only).
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub hostname: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub domainname: Vec<u8>,
}

/// An IPC namespace other than stasis's: restore creates a new one and recreates every
/// SysV object of it (objects whose `ipc_ns` is this object's id) with the same ids.
#[derive(Clone, PartialEq, Message)]
pub struct IpcNsObj {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    /// The namespace's /proc/sys/kernel limits (msgmax, msgmnb, msgmni, sem, shmall,
    /// shmmax, shmmni, shm_rmid_forced): names and values as read.
    #[prost(message, repeated, tag = "2")]
    pub sysctls: Vec<Sysctl>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sysctl {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Identity and permissions common to SysV objects (struct ipc64_perm).
#[derive(Clone, PartialEq, Message)]
pub struct SysvPerm {
    /// Object id (shmid, msqid, semid); restore reproduces it.
    #[prost(int32, tag = "1")]
    pub id: i32,
    /// IPC key (0 = IPC_PRIVATE, also what a segment marked destroyed shows).
    #[prost(int32, tag = "2")]
    pub key: i32,
    #[prost(uint32, tag = "3")]
    pub uid: u32,
    #[prost(uint32, tag = "4")]
    pub gid: u32,
    /// Creator ids: informational (the kernel sets them from the creating task).
    #[prost(uint32, tag = "5")]
    pub cuid: u32,
    #[prost(uint32, tag = "6")]
    pub cgid: u32,
    /// Permission bits (0o777).
    #[prost(uint32, tag = "7")]
    pub mode: u32,
}

/// A SysV shared memory segment. Contents are page runs under this object's id, by
/// offset in the segment (pages that never existed are not saved).
#[derive(Clone, PartialEq, Message)]
pub struct SysvShmObj {
    /// `IpcNsObj` id; 0 = stasis's own namespace (only segments the tree attached).
    #[prost(uint32, tag = "1")]
    pub ipc_ns: u32,
    #[prost(message, optional, tag = "2")]
    pub perm: Option<SysvPerm>,
    #[prost(uint64, tag = "3")]
    pub size: u64,
    /// Marked for destruction (IPC_RMID while attached, SHM_DEST).
    #[prost(bool, tag = "4")]
    pub destroyed: bool,
    /// SHM_LOCK'ed.
    #[prost(bool, tag = "5")]
    pub locked: bool,
}

/// A SysV message queue and its messages, oldest first.
#[derive(Clone, PartialEq, Message)]
pub struct SysvMsgObj {
    #[prost(uint32, tag = "1")]
    pub ipc_ns: u32,
    #[prost(message, optional, tag = "2")]
    pub perm: Option<SysvPerm>,
    /// msg_qbytes: the queue's capacity in bytes.
    #[prost(uint64, tag = "3")]
    pub qbytes: u64,
    #[prost(message, repeated, tag = "4")]
    pub messages: Vec<SysvMsg>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SysvMsg {
    #[prost(int64, tag = "1")]
    pub mtype: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// A SysV semaphore set: its values (nsems = values.len()).
#[derive(Clone, PartialEq, Message)]
pub struct SysvSemObj {
    #[prost(uint32, tag = "1")]
    pub ipc_ns: u32,
    #[prost(message, optional, tag = "2")]
    pub perm: Option<SysvPerm>,
    #[prost(uint32, repeated, tag = "3")]
    pub values: Vec<u32>,
}

/// An eventfd: its counter and flags.
#[derive(Clone, PartialEq, Message)]
pub struct EventfdObj {
    #[prost(uint64, tag = "1")]
    pub count: u64,
    /// File status flags from fdinfo (O_NONBLOCK...), O_CLOEXEC removed.
    #[prost(uint32, tag = "2")]
    pub flags: u32,
    /// EFD_SEMAPHORE: a read takes 1 from the counter instead of all of it.
    #[prost(bool, tag = "3")]
    pub semaphore: bool,
}

/// A timerfd: clock, setting and expirations not read yet.
#[derive(Clone, PartialEq, Message)]
pub struct TimerfdObj {
    /// CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_BOOTTIME, or their _ALARM variants.
    #[prost(int32, tag = "1")]
    pub clockid: i32,
    /// File status flags (O_NONBLOCK...), O_CLOEXEC removed.
    #[prost(uint32, tag = "2")]
    pub flags: u32,
    #[prost(uint64, tag = "3")]
    pub interval_ns: u64,
    /// Next expiry: time remaining at dump, or with TFD_TIMER_ABSTIME in
    /// `settime_flags` the absolute time on `clockid`; 0 = disarmed.
    #[prost(uint64, tag = "4")]
    pub value_ns: u64,
    /// Expirations not read yet (what the next read(2) would return).
    #[prost(uint64, tag = "5")]
    pub ticks: u64,
    /// timerfd_settime flags: TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET.
    #[prost(uint32, tag = "6")]
    pub settime_flags: u32,
}

/// A signalfd: the signals it reads.
#[derive(Clone, PartialEq, Message)]
pub struct SignalfdObj {
    /// Bit n-1 = signal n.
    #[prost(uint64, tag = "1")]
    pub mask: u64,
    /// File status flags (O_NONBLOCK...), O_CLOEXEC removed.
    #[prost(uint32, tag = "2")]
    pub flags: u32,
}

/// An epoll instance and its interest list.
#[derive(Clone, PartialEq, Message)]
pub struct EpollObj {
    /// File status flags (O_NONBLOCK...), O_CLOEXEC removed.
    #[prost(uint32, tag = "1")]
    pub flags: u32,
    #[prost(message, repeated, tag = "2")]
    pub items: Vec<EpollItem>,
}

/// One registered file: restore adds it from inside the process with
/// epoll_ctl(EPOLL_CTL_ADD, tfd, {events, data}).
#[derive(Clone, PartialEq, Message)]
pub struct EpollItem {
    /// The fd number it was registered under (an fd of the process, same file).
    #[prost(int32, tag = "1")]
    pub tfd: i32,
    /// The events word as the kernel holds it (EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE,
    /// EPOLLWAKEUP kept; a fired one-shot item has only those bits left).
    #[prost(uint32, tag = "2")]
    pub events: u32,
    #[prost(uint64, tag = "3")]
    pub data: u64,
}

/// An inotify instance and its watches (queued events are not saved).
#[derive(Clone, PartialEq, Message)]
pub struct InotifyObj {
    /// File status flags (O_NONBLOCK...), O_CLOEXEC removed.
    #[prost(uint32, tag = "1")]
    pub flags: u32,
    #[prost(message, repeated, tag = "2")]
    pub watches: Vec<InotifyWatch>,
}

/// One inotify watch.
#[derive(Clone, PartialEq, Message)]
pub struct InotifyWatch {
    /// Watch descriptor; restore reproduces the number.
    #[prost(int32, tag = "1")]
    pub wd: i32,
    /// IN_* mask as inotify_add_watch takes it (IN_ONESHOT, IN_EXCL_UNLINK included).
    #[prost(uint32, tag = "2")]
    pub mask: u32,
    /// Path of the watched inode at dump time (found through its file handle).
    #[prost(string, tag = "3")]
    pub path: String,
    /// Device (st_dev) and inode of the watched inode: restore checks the path still
    /// leads to it.
    #[prost(uint64, tag = "4")]
    pub dev: u64,
    #[prost(uint64, tag = "5")]
    pub ino: u64,
}

/// An open file description of a path-named file (regular, directory, character device).
#[derive(Clone, PartialEq, Message)]
pub struct FileObj {
    #[prost(string, tag = "1")]
    pub path: String,
    /// open(2) flags from fdinfo, O_CLOEXEC removed.
    #[prost(uint32, tag = "2")]
    pub flags: u32,
    #[prost(uint64, tag = "3")]
    pub pos: u64,
    #[prost(message, optional, tag = "4")]
    pub identity: Option<FileIdentity>,
    /// Unlinked while open (its content is in the `ghost_id` object).
    #[prost(bool, tag = "5")]
    pub deleted: bool,
    // tag 6 (inline content) is retired: nameless inodes are GhostObj.
    /// S_IFMT bits of st_mode, and the permission bits.
    #[prost(uint32, tag = "7")]
    pub mode: u32,
    // tags 8 (memfd name) and 9 (same inode as) are retired: nameless inodes are GhostObj.
    /// Non-zero: this description is of a nameless inode (GhostObj id).
    #[prost(uint32, tag = "10")]
    pub ghost_id: u32,
}

/// One end of a connected pair of unix sockets whose both ends are in the process
/// (socketpair(2)). The pair is recreated when its first end is restored.
#[derive(Clone, PartialEq, Message)]
pub struct UnixObj {
    /// Socket inode at dump time, and its peer's (identify the two ends).
    #[prost(uint32, tag = "1")]
    pub ino: u32,
    #[prost(uint32, tag = "2")]
    pub peer_ino: u32,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    #[prost(int32, tag = "3")]
    pub sock_type: i32,
    /// File status flags (O_NONBLOCK).
    #[prost(uint32, tag = "4")]
    pub flags: u32,
    /// Bytes queued for reading on this end (stream sockets).
    #[prost(bytes = "vec", tag = "5")]
    pub queue: Vec<u8>,
    /// sk_shutdown of this end: 1 = receive side, 2 = send side.
    #[prost(uint32, tag = "6")]
    pub shutdown: u32,
    /// A bound socket (peer_ino 0): its name (a path, or NUL + abstract name).
    #[prost(bytes = "vec", tag = "7")]
    pub name: Vec<u8>,
    /// Listening, with this backlog.
    #[prost(bool, tag = "8")]
    pub listening: bool,
    #[prost(uint32, tag = "9")]
    pub backlog: u32,
}

/// A TCP or UDP socket that can be recreated from its addresses: a listener (empty
/// accept queue), a bound or unbound TCP socket, a bound and/or connected UDP socket
/// with nothing queued.
#[derive(Clone, PartialEq, Message)]
pub struct InetObj {
    #[prost(int32, tag = "1")]
    pub family: i32,
    #[prost(int32, tag = "2")]
    pub sock_type: i32,
    #[prost(int32, tag = "3")]
    pub protocol: i32,
    /// getsockname / getpeername, raw sockaddr bytes (peer empty if not connected).
    #[prost(bytes = "vec", tag = "4")]
    pub local: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub peer: Vec<u8>,
    #[prost(bool, tag = "6")]
    pub listening: bool,
    #[prost(uint32, tag = "7")]
    pub backlog: u32,
    #[prost(uint32, tag = "8")]
    pub flags: u32,
    /// Integer socket options: (level, option, value) triples, flattened.
    #[prost(int32, repeated, tag = "9")]
    pub options: Vec<i32>,
    /// An established TCP connection, saved with TCP_REPAIR.
    #[prost(message, optional, tag = "10")]
    pub tcp: Option<TcpConn>,
}

/// What TCP_REPAIR needs to recreate an established connection without a handshake.
#[derive(Clone, PartialEq, Message)]
pub struct TcpConn {
    #[prost(uint32, tag = "1")]
    pub send_seq: u32,
    #[prost(uint32, tag = "2")]
    pub recv_seq: u32,
    /// Bytes not yet acknowledged or not yet sent, and bytes received but not yet read.
    #[prost(bytes = "vec", tag = "3")]
    pub send_queue: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub recv_queue: Vec<u8>,
    #[prost(uint32, tag = "5")]
    pub mss: u32,
    /// tcp_info options bits: 1 timestamps, 2 SACK, 4 window scaling.
    #[prost(uint32, tag = "6")]
    pub options: u32,
    #[prost(uint32, tag = "7")]
    pub snd_wscale: u32,
    #[prost(uint32, tag = "8")]
    pub rcv_wscale: u32,
    #[prost(uint32, tag = "9")]
    pub timestamp: u32,
    /// struct tcp_repair_window: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup.
    #[prost(uint32, repeated, tag = "10")]
    pub window: Vec<u32>,
}

/// An inode with no name: a file deleted while open or mapped, or a memfd. Its content
/// is in the image; fds (`FileObj.ghost_id`) and mappings (`MappedFileObj.ghost_id`)
/// refer to it, so one inode open and mapped several times stays one inode.
#[derive(Clone, PartialEq, Message)]
pub struct GhostObj {
    /// The path it had (deleted file), without " (deleted)".
    #[prost(string, tag = "1")]
    pub path: String,
    /// Non-empty: a memfd of this name.
    #[prost(string, tag = "2")]
    pub memfd_name: String,
    #[prost(uint32, tag = "3")]
    pub mode: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub content: Vec<u8>,
    /// memfd seals (F_GET_SEALS).
    #[prost(uint32, tag = "5")]
    pub seals: u32,
    /// Non-empty: shared memory the user marked external at dump (`--external`), named
    /// as on the command line (`shm:[INODE]`). No content is stored: restore takes the
    /// inode from the fd handed over with `--inherit-fd FD:shm:[INODE]`.
    #[prost(string, tag = "60")]
    pub external: String,
    /// External only: its size at dump time (the inherited file must be as large).
    #[prost(uint64, tag = "61")]
    pub size: u64,
}

/// What a file looked like at dump time, to refuse restores onto a changed file.
#[derive(Clone, PartialEq, Message)]
pub struct FileIdentity {
    #[prost(uint64, tag = "1")]
    pub size: u64,
    #[prost(int64, tag = "2")]
    pub mtime_ns: i64,
    /// xxh3-64 of the whole content (mapped executables only; 0 = not computed).
    #[prost(uint64, tag = "3")]
    pub hash: u64,
    #[prost(uint64, tag = "4")]
    pub rdev: u64,
}

/// A file that mappings (or /proc/PID/exe) refer to.
#[derive(Clone, PartialEq, Message)]
pub struct MappedFileObj {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(message, optional, tag = "2")]
    pub identity: Option<FileIdentity>,
    /// Opened for writing (a shared writable mapping needs it).
    #[prost(bool, tag = "3")]
    pub writable: bool,
    /// Non-zero: a deleted file or memfd (GhostObj id) instead of a path.
    #[prost(uint32, tag = "4")]
    pub ghost_id: u32,
}

/// A pipe (one per pipe inode) and the bytes that were buffered in it.
#[derive(Clone, PartialEq, Message)]
pub struct PipeObj {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    #[prost(uint32, tag = "2")]
    pub capacity: u32,
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
    /// The read (write) end was closed by everyone: restore closes it again.
    #[prost(bool, tag = "4")]
    pub read_closed: bool,
    #[prost(bool, tag = "5")]
    pub write_closed: bool,
    /// Non-empty: the other end belonged to another process (described here); restore
    /// connects the fd to the restorer's fd given by `--inherit-fd FD:pipe:[INO]`, or
    /// else to the restorer's fd of the same number.
    #[prost(string, tag = "6")]
    pub external: String,
}

/// One open description of a pipe end.
#[derive(Clone, PartialEq, Message)]
pub struct PipeEndObj {
    #[prost(uint32, tag = "1")]
    pub pipe_id: u32,
    #[prost(bool, tag = "2")]
    pub write_end: bool,
    #[prost(uint32, tag = "3")]
    pub flags: u32,
}

/// A named FIFO (one per FIFO inode, shared by all its open descriptions): its path,
/// and the bytes that were buffered in it.
#[derive(Clone, PartialEq, Message)]
pub struct FifoObj {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint64, tag = "2")]
    pub dev: u64,
    #[prost(uint64, tag = "3")]
    pub ino: u64,
    #[prost(uint32, tag = "4")]
    pub capacity: u32,
    #[prost(bytes = "vec", tag = "5")]
    pub data: Vec<u8>,
    /// Non-empty: a process outside the dumped tree held the FIFO open (described
    /// here). Its bytes stay in the kernel with that process and are not saved.
    #[prost(string, tag = "6")]
    pub external: String,
}

/// One open description of a named FIFO: file status flags with the access mode
/// (O_RDONLY, O_WRONLY or O_RDWR), O_CLOEXEC removed.
#[derive(Clone, PartialEq, Message)]
pub struct FifoFdObj {
    #[prost(uint32, tag = "1")]
    pub fifo_id: u32,
    #[prost(uint32, tag = "2")]
    pub flags: u32,
}

/// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS): size; pages are stored under
/// this object's id by offset.
#[derive(Clone, PartialEq, Message)]
pub struct ShmemObj {
    #[prost(uint64, tag = "1")]
    pub ino: u64,
    #[prost(uint64, tag = "2")]
    pub size: u64,
}

/// Record type 3: where page contents are in pages.img.
#[derive(Clone, PartialEq, Message)]
pub struct PageIndex {
    #[prost(message, repeated, tag = "1")]
    pub runs: Vec<PageRun>,
}

/// `count` consecutive pages starting at `addr` of the address space (object_id 0) or at
/// byte offset `addr` of a shared-memory object, stored at `file_offset` of pages file
/// `shard`. Runs of different processes may point at the same bytes (private pages
/// shared copy-on-write at dump are stored once); each run's CRC covers its own range.
#[derive(Clone, PartialEq, Message)]
pub struct PageRun {
    #[prost(uint32, tag = "1")]
    pub object_id: u32,
    #[prost(uint64, tag = "2")]
    pub addr: u64,
    #[prost(uint32, tag = "3")]
    pub count: u32,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// CRC32C of the run's bytes.
    #[prost(uint32, tag = "5")]
    pub crc: u32,
    /// Which pages file holds it (0 = pages.img, k = pages.k.img).
    #[prost(uint32, tag = "6")]
    pub shard: u32,
    /// For object_id 0: the process whose address space this is.
    #[prost(int32, tag = "7")]
    pub pid: i32,
}

/// Record type 0x80000004 FEATURES: features of the format the image uses that a
/// reader must implement to read it correctly (see `KNOWN_FEATURES`). Written only when
/// the list is not empty, as the first record.
#[derive(Clone, PartialEq, Message)]
pub struct Features {
    #[prost(string, repeated, tag = "1")]
    pub required: Vec<String>,
}

/// Record type 0xFFFF: last record; its presence proves the manifest is complete.
#[derive(Clone, PartialEq, Message)]
pub struct End {
    #[prost(uint32, tag = "1")]
    pub records: u32,
    #[prost(uint64, tag = "2")]
    pub pages_file_size: u64,
    /// CRC32C of pages.img's header page.
    #[prost(uint32, tag = "3")]
    pub pages_header_crc: u32,
    /// Every pages file (shard 0 = pages.img first): exact size and header CRC.
    #[prost(message, repeated, tag = "4")]
    pub shards: Vec<Shard>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Shard {
    #[prost(uint64, tag = "1")]
    pub size: u64,
    #[prost(uint32, tag = "2")]
    pub header_crc: u32,
}
