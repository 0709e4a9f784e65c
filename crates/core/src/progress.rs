//! Progress of long page copies, reported to whoever drew the bar: the engine only says
//! how far it is; the command line (or any other front end) decides whether and how to
//! show it (`set_reporter`). With no reporter, nothing is shown.

use std::sync::OnceLock;

/// A front end's progress display for one long operation.
pub trait Bar: Send + Sync {
    fn set(&self, done: u64);
    fn inc(&self, n: u64);
    fn finish(&self);
}

/// Makes a `Bar` for an operation `what` of `total` bytes (None: not worth showing).
pub trait Reporter: Send + Sync {
    fn begin(&self, what: &str, total: u64) -> Option<Box<dyn Bar>>;
}

static REPORTER: OnceLock<Box<dyn Reporter>> = OnceLock::new();

/// Installs the process-wide reporter (once; later calls are ignored).
pub fn set_reporter(r: Box<dyn Reporter>) {
    let _ = REPORTER.set(r);
}

/// One operation's progress, shown through the reporter if there is one.
pub struct Progress(Option<Box<dyn Bar>>);

impl Progress {
    pub fn new(total: u64, what: &str) -> Progress {
        Progress(REPORTER.get().and_then(|r| r.begin(what, total)))
    }
    pub fn set(&self, n: u64) {
        if let Some(p) = &self.0 {
            p.set(n);
        }
    }
    pub fn inc(&self, n: u64) {
        if let Some(p) = &self.0 {
            p.inc(n);
        }
    }
    pub fn finish(&self) {
        if let Some(p) = &self.0 {
            p.finish();
        }
    }
}
