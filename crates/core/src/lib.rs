//! stasis engine: freeze → collect → dump → image → restore. See docs/ARCHITECTURE.md.

/// The page size stasis works in (x86_64's base page; huge pages are multiples).
pub const PAGE: u64 = 4096;

pub mod aio;
pub mod cgroup;
pub mod cpu;
pub mod dump;
pub mod error;
pub mod external;
pub mod fdkinds;
pub mod fown;
pub mod files;
pub mod freeze;
pub mod ipc;
pub mod ldt;
pub mod mem;
pub mod netlock;
pub mod numa;
pub mod ns;
pub mod objects;
pub mod parasite;
pub mod procfs;
pub mod progress;
pub mod restore;
pub mod shmfile;
pub mod task;
pub mod tcp_repair;
pub mod tty;

pub use error::{Error, Result};
