//! Error lines of the command line: one line, each cause said once.

mod common;
use common::*;

/// `stasis ARGS` must fail with one error line that names `dir` and says "No such file
/// or directory" exactly once (an error chain printed after a message that already
/// embeds its cause says it two or three times).
fn assert_missing_dir_once(args: &[&str], dir: &str) {
    let tmp = TempDir::new("cli-errors");
    let run = stasis(&tmp.path, args);
    assert_clean_error(&run, &[dir, "no such file or directory"], &"");
    let line = run.stderr.trim_end();
    assert_eq!(line.matches("No such file or directory").count(), 1, "cause repeated\n{run}");
    assert_eq!(line.matches(dir).count(), 1, "path repeated\n{run}");
}

#[test]
fn restore_of_a_missing_image_dir_says_why_once() {
    let _t = serial();
    assert_missing_dir_once(&["restore", "-D", "/nonexistent-stasis-image"], "/nonexistent-stasis-image");
}

#[test]
fn inspect_of_a_missing_image_dir_says_why_once() {
    let _t = serial();
    assert_missing_dir_once(&["inspect", "/nonexistent-stasis-image"], "/nonexistent-stasis-image");
}
