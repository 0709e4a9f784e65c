//! The engine's progress, as a bar on stderr when it is a terminal and the copy is large
//! enough to be worth watching.

use std::io::IsTerminal;

use stasis_core::progress::{Bar, Reporter};

struct Terminal;

struct IndicatifBar(indicatif::ProgressBar);

impl Bar for IndicatifBar {
    fn set(&self, done: u64) {
        self.0.set_position(done);
    }
    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Reporter for Terminal {
    fn begin(&self, what: &str, total: u64) -> Option<Box<dyn Bar>> {
        if total < (64 << 20) {
            return None;
        }
        let pb = indicatif::ProgressBar::new(total);
        pb.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb.set_message(what.to_string());
        Some(Box::new(IndicatifBar(pb)))
    }
}

/// Shows progress bars if stderr is a terminal.
pub fn install() {
    if std::io::stderr().is_terminal() {
        stasis_core::progress::set_reporter(Box::new(Terminal));
    }
}
