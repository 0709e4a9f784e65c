//! stasis-sys: the syscall / ptrace / procfs boundary. Every `unsafe` block of stasis lives
//! here, each with a `// SAFETY:` line. Everything exported is safe to call.

pub mod kabi;
pub mod probe;
pub mod ptrace;
pub mod remote;
pub mod sys;
pub mod sysv;

pub use std::io::{Error, Result};

/// Turns a -1/errno libc return into an io::Result.
pub(crate) fn cvt(r: i64) -> Result<i64> {
    if r < 0 {
        Err(Error::last_os_error())
    } else {
        Ok(r)
    }
}
