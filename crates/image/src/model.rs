//! Record payloads: the messages generated from `proto/stasis.proto` (module
//! `crate::schema`), plus helpers. protobuf's wire format lets a newer reader skip
//! fields it does not know and an older reader ignore new ones, and tags are never
//! reused. Add fields with new tags (in the .proto); never change a tag's type.
//!
//! An `Object`'s kind is the oneof `Object::kind` (`object::Kind`): match on it
//! (`match &o.kind { Some(Kind::File(f)) => .., .. }`) so that adding a kind makes the
//! compiler point at every dispatch. The per-kind accessors below (`o.file()`,
//! `o.file_mut()`) are for code that wants one kind only.

pub use crate::schema::object::Kind;
pub use crate::schema::*;

/// Per kind: `Object::$name()` / `Object::$name_mut()` accessors, `From<$ty> for
/// Object` (id 0, net_ns 0) and the name `Object::kind_name` returns.
/// A pattern matching every object kind that is not an open file description (pipes and
/// FIFOs as inodes, shared memory, mapped files, deleted-file inodes, namespaces, SysV
/// objects): what an fd can never refer to. One list, used by every exhaustive `match`
/// on `Object::kind` that sets these apart; a new kind that is not an fd goes here.
#[macro_export]
macro_rules! not_fd_kinds {
    () => {
        $crate::model::Kind::Pipe(_)
            | $crate::model::Kind::Shmem(_)
            | $crate::model::Kind::MappedFile(_)
            | $crate::model::Kind::Ghost(_)
            | $crate::model::Kind::UtsNs(_)
            | $crate::model::Kind::IpcNs(_)
            | $crate::model::Kind::SysvShm(_)
            | $crate::model::Kind::SysvMsg(_)
            | $crate::model::Kind::SysvSem(_)
            | $crate::model::Kind::Fifo(_)
            | $crate::model::Kind::Tty(_)
    };
}

macro_rules! object_kinds {
    ($($variant:ident: $ty:ident, $name:ident, $name_mut:ident;)*) => {
        impl Object {
            $(
                #[doc = concat!("The `", stringify!($ty), "` if this object is one.")]
                pub fn $name(&self) -> Option<&$ty> {
                    match &self.kind {
                        Some(Kind::$variant(x)) => Some(x),
                        _ => None,
                    }
                }

                #[doc = concat!("The `", stringify!($ty), "` if this object is one, mutably.")]
                pub fn $name_mut(&mut self) -> Option<&mut $ty> {
                    match &mut self.kind {
                        Some(Kind::$variant(x)) => Some(x),
                        _ => None,
                    }
                }
            )*

            /// The kind's name (the oneof field's name: "file", "pipe_end", ...), or
            /// "none" for an object without a kind (an image from a newer writer).
            pub fn kind_name(&self) -> &'static str {
                match &self.kind {
                    $(Some(Kind::$variant(_)) => stringify!($name),)*
                    None => "none",
                }
            }
        }

        $(
            impl From<$ty> for Object {
                fn from(x: $ty) -> Self {
                    Object { kind: Some(Kind::$variant(x)), ..Default::default() }
                }
            }

            impl From<$ty> for Kind {
                fn from(x: $ty) -> Self {
                    Kind::$variant(x)
                }
            }
        )*
    };
}

object_kinds! {
    File: FileObj, file, file_mut;
    Pipe: PipeObj, pipe, pipe_mut;
    PipeEnd: PipeEndObj, pipe_end, pipe_end_mut;
    Shmem: ShmemObj, shmem, shmem_mut;
    MappedFile: MappedFileObj, mapped_file, mapped_file_mut;
    Eventfd: EventfdObj, eventfd, eventfd_mut;
    Timerfd: TimerfdObj, timerfd, timerfd_mut;
    Signalfd: SignalfdObj, signalfd, signalfd_mut;
    Epoll: EpollObj, epoll, epoll_mut;
    Inotify: InotifyObj, inotify, inotify_mut;
    Ghost: GhostObj, ghost, ghost_mut;
    Unix: UnixObj, unix, unix_mut;
    Inet: InetObj, inet, inet_mut;
    UtsNs: UtsNsObj, uts_ns, uts_ns_mut;
    IpcNs: IpcNsObj, ipc_ns, ipc_ns_mut;
    SysvShm: SysvShmObj, sysv_shm, sysv_shm_mut;
    SysvMsg: SysvMsgObj, sysv_msg, sysv_msg_mut;
    SysvSem: SysvSemObj, sysv_sem, sysv_sem_mut;
    Fifo: FifoObj, fifo, fifo_mut;
    FifoFd: FifoFdObj, fifo_fd, fifo_fd_mut;
    Netlink: NetlinkObj, netlink, netlink_mut;
    Packet: PacketObj, packet, packet_mut;
    Tty: TtyObj, tty, tty_mut;
    TtyFd: TtyFdObj, tty_fd, tty_fd_mut;
    Pidfd: PidfdObj, pidfd, pidfd_mut;
    NsFd: NsFdObj, ns_fd, ns_fd_mut;
    Fanotify: FanotifyObj, fanotify, fanotify_mut;
    Mqueue: MqueueObj, mqueue, mqueue_mut;
}
