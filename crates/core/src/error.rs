//! Errors of the engine. Every message names who (pid/tid), what (fd, VMA, step) and why.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// State stasis cannot dump yet; the process was left untouched.
    #[error("pid {pid}: {what}: not supported yet")]
    Unsupported { pid: i32, what: String },
    /// The process is in a state that makes a dump impossible.
    #[error("pid {pid}: {why}")]
    Refused { pid: i32, why: String },
    /// A resource is shared with a process outside the dumped tree (and was not marked
    /// external); the process was left untouched.
    #[error("pid {pid} ({comm}): {why}")]
    Shared { pid: i32, comm: String, why: String },
    /// A system call or procfs access failed.
    #[error("pid {pid}: {what}: {err}")]
    Sys { pid: i32, what: String, err: io::Error },
    /// An image that cannot be read. Its text already holds the cause, so the cause is
    /// not also exposed as `source()` (a chain printer would repeat it).
    #[error("{0}")]
    Image(stasis_image::ImageError),
    /// The image cannot be restored here (missing or changed file, PID taken...).
    #[error("restore refused: {0}")]
    RestoreRefused(String),
    /// A restore step failed; every process created so far was removed.
    #[error("restore of pid {pid} failed at step '{step}': {why}")]
    RestoreStep { pid: i32, step: String, why: String },
    /// An error reported by another stasis process (the --pid-ns init), verbatim.
    #[error("{0}")]
    Relayed(String),
    #[error("{path}: {err}")]
    Path { path: String, err: io::Error },
}

impl From<stasis_image::ImageError> for Error {
    fn from(e: stasis_image::ImageError) -> Error {
        Error::Image(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds pid + description context to io errors.
pub trait Ctx<T> {
    fn ctx(self, pid: i32, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, pid: i32, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|err| Error::Sys { pid, what: what(), err })
    }
}

pub(crate) fn path_err(path: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |err| Error::Path { path, err }
}
