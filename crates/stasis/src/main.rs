//! `stasis` command line: dump, restore, network-unlock, inspect, check, demo, bench.

mod bench;
mod check;
mod demo;
mod inspect;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "stasis", version, about = "Checkpoint and restore running Linux processes")]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace). STASIS_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Freeze a process (all its threads), write its image to DIR, then kill it.
    Dump {
        /// PID of the process to checkpoint.
        #[arg(short = 't', long = "tree")]
        pid: i32,
        /// Image directory (created if missing; must not hold another image).
        #[arg(short = 'D', long = "images-dir")]
        dir: PathBuf,
        /// Let the process run on after the dump instead of killing it.
        #[arg(long)]
        leave_running: bool,
        /// Record RES, a resource shared with a process outside the tree, as external
        /// instead of refusing the dump (repeatable). RES is `pipe:[INODE]` for a pipe,
        /// `shm:[INODE]` for shared memory (MAP_SHARED anonymous memory, a memfd, a
        /// deleted or /dev/shm file) or `unix:[INODE]` for a unix stream/seqpacket
        /// socket connected to a process outside the tree; brackets are optional. The
        /// refusal names it. Pipes on fds 0-2 need no mark.
        #[arg(long = "external", value_name = "RES")]
        external: Vec<String>,
        /// Save listening sockets without the connections waiting to be accepted that
        /// cannot be recreated (TCP and unix: those from outside the tree, and those of
        /// the tree whose client already sent bytes; TCP: also when the listener's
        /// waiting connections cannot be told from another listener's of its port)
        /// instead of refusing the dump. After a killing dump the kernel resets them
        /// and their clients see the connection reset (and may retry); a client of the
        /// tree comes back as one whose server closed; with --leave-running the live
        /// process keeps them.
        #[arg(long)]
        skip_in_flight: bool,
        /// How the tree's TCP connections are held back from before they are read until
        /// the restore: `nftables` drops their packets (both ways, exactly those
        /// connections) in a table `inet stasis-PID-NONCE`; a --leave-running or failed
        /// dump removes it at its end, a killing dump leaves it to the restore.
        #[arg(long, value_enum, default_value = "nftables")]
        network_lock: NetLock,
        /// The tree is a job of an interactive shell: its session and controlling
        /// terminal are the shell's, outside the tree. The terminal is recorded as
        /// external (nothing of it saved) and `restore --shell-job` gives the tree the
        /// restorer's terminal instead. Without it such a dump is refused.
        #[arg(long)]
        shell_job: bool,
        /// Write the pages files LZ4-compressed (block by block; page runs keep their
        /// checksums). Smaller images for memory that compresses, at some dump speed;
        /// restore decompresses each pages file into memory once.
        #[arg(long)]
        compress: bool,
    },
    /// Recreate the process stored in DIR with its original PID and thread IDs.
    Restore {
        #[arg(short = 'D', long = "images-dir")]
        dir: PathBuf,
        /// Return as soon as the process runs; it is re-parented like a daemon.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Write the restored PID to FILE.
        #[arg(long)]
        pidfile: Option<PathBuf>,
        /// Restore even if files the process had open, or mapped shared, changed since
        /// the dump, e.g. a log it kept writing, or a JVM's hsperfdata / a /dev/shm
        /// segment the original kept writing after a --leave-running dump (a shared
        /// mapping then shows the file as it is now). A changed file mapped private is
        /// refused all the same (its unwritten pages are not in the image).
        #[arg(long)]
        allow_changed_files: bool,
        /// Restore inside a new PID namespace (with its own /proc) whose init is a stasis
        /// process, so that the original PIDs are free even if taken here. The pidfile
        /// gets the root's pid as seen from outside.
        #[arg(long)]
        pid_ns: bool,
        /// Provide external resource RES (marked with `dump --external`) from this
        /// restorer's fd FD (repeatable), e.g. `5:pipe:[12345]`, `7:shm:[678]` or
        /// `8:unix:[910]`. A pipe without it takes the restorer's fd of its own number;
        /// shared memory must have one (a memfd or a file opened O_RDWR, mapped shared by
        /// the restored process), and so must a unix socket (a connected unix socket of
        /// the same type, which takes the place of the old connection).
        #[arg(long = "inherit-fd", value_name = "FD:RES")]
        inherit_fd: Vec<String>,
        /// `nftables`: once every process is restored, remove the network lock the dump
        /// left (a failed restore leaves it, so the image can be tried again); `skip`:
        /// leave it.
        #[arg(long, value_enum, default_value = "nftables")]
        network_lock: NetLock,
        /// Bring established TCP connections (and connections being established) back
        /// closed, e.g. to start many copies of one image: each such socket is bound to
        /// its old local address if that is free, never connected and shut down both
        /// ways (read returns 0, write fails with EPIPE, poll reports POLLHUP,
        /// getpeername ENOTCONN). Listeners and UDP sockets are restored as usual.
        #[arg(long)]
        tcp_close: bool,
        /// Restore a `dump --shell-job` image: the tree joins this restorer's session
        /// and takes its terminal (stdin, which must be stasis's controlling terminal)
        /// where it had the shell's, and its foreground group becomes the terminal's.
        #[arg(long)]
        shell_job: bool,
        /// What to do with the image's control groups. `create`: join the cgroups that
        /// exist as they are (a saved setting that differs is a warning), create missing
        /// ones with their saved settings, mode and owners (removed again if the restore
        /// fails); `strict`: the same, but an existing cgroup whose settings differ, or a
        /// hierarchy not mounted here, refuses the restore; `join`: only join existing
        /// cgroups, refuse if one is missing; `ignore`: leave the processes in this
        /// restorer's cgroups.
        #[arg(long, value_enum, default_value = "create")]
        cgroups: Cgroups,
    },
    /// Remove the network lock a dump left for the image in DIR (an image that will not
    /// be restored): its connections' packets flow again, and their peers see the
    /// connections reset.
    NetworkUnlock {
        /// The image directory (or give it with -D, as to dump and restore).
        #[arg(required_unless_present = "images_dir", conflicts_with = "images_dir")]
        dir: Option<PathBuf>,
        #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
        images_dir: Option<PathBuf>,
    },
    /// Show what an image holds.
    Inspect {
        dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Show the restore plan instead (text): validates the image and works out,
        /// without creating anything, what restore would do for each process (pids,
        /// clone flags, sessions and helpers, namespaces, fds by carry slot, vDSO, steps).
        #[arg(long, conflicts_with = "json")]
        plan: bool,
        /// With --plan: plan a `restore --detach`.
        #[arg(long, requires = "plan")]
        detach: bool,
    },
    /// Probe the kernel features stasis needs.
    Check,
    /// Start a counter, dump it, restore it, and watch it carry on.
    Demo,
    /// Measure dump/restore throughput and write BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Internal: workload programs used by demo and bench.
    #[command(hide = true, name = "__workload")]
    Workload { args: Vec<String> },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum NetLock {
    Nftables,
    Skip,
}

impl From<NetLock> for stasis_core::netlock::Mode {
    fn from(n: NetLock) -> Self {
        match n {
            NetLock::Nftables => Self::Nftables,
            NetLock::Skip => Self::Skip,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Cgroups {
    Create,
    Strict,
    Join,
    Ignore,
}

impl From<Cgroups> for stasis_core::cgroup::Mode {
    fn from(c: Cgroups) -> Self {
        match c {
            Cgroups::Create => Self::Create,
            Cgroups::Strict => Self::Strict,
            Cgroups::Join => Self::Join,
            Cgroups::Ignore => Self::Ignore,
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("STASIS_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colours on a terminal only: a log file or a pipe gets plain text
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    progress::install();
    if matches!(cli.cmd, Cmd::Inspect { .. }) {
        // its output only goes to stdout: `stasis inspect DIR | head` ends quietly
        stasis_sys::sys::default_sigpipe();
    }
    let res: anyhow::Result<ExitCode> = match cli.cmd {
        Cmd::Dump { pid, dir, leave_running, external, skip_in_flight, network_lock, shell_job, compress } => {
            // A dump holds the process frozen with our registers in it: finish (or roll
            // back) before honouring Ctrl-C. The signal stays pending and ends us after.
            stasis_sys::sys::defer_termination_signals();
            let network_lock = network_lock.into();
            stasis_core::dump::dump(&stasis_core::dump::DumpOptions {
                pid,
                dir,
                leave_running,
                external,
                skip_in_flight,
                network_lock,
                shell_job,
                compress,
            })
                .map(|_| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }
        Cmd::Restore { dir, detach, pidfile, allow_changed_files, pid_ns, inherit_fd, network_lock, tcp_close, shell_job, cgroups } => {
            stasis_core::restore::restore(&stasis_core::restore::RestoreOptions {
                dir,
                detach,
                pidfile,
                allow_changed_files,
                pid_ns,
                inherit_fds: inherit_fd,
                network_lock: network_lock.into(),
                tcp_close,
                shell_job,
                cgroups: cgroups.into(),
            })
            .map(ExitCode::from)
            .map_err(anyhow::Error::from)
        }
        Cmd::NetworkUnlock { dir, images_dir } => stasis_core::netlock::network_unlock(&dir.or(images_dir).unwrap_or_default())
            .map(|msg| {
                println!("{msg}");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
        Cmd::Inspect { dir, plan: true, detach, .. } => stasis_core::restore::plan_of(&dir, detach)
            .map(|p| {
                print!("{p}");
                ExitCode::SUCCESS
            })
            .map_err(anyhow::Error::from),
        Cmd::Inspect { dir, json, .. } => inspect::run(&dir, json).map(|_| ExitCode::SUCCESS),
        Cmd::Check => check::run(),
        Cmd::Demo => demo::run().map(|_| ExitCode::SUCCESS),
        Cmd::Bench(args) => bench::run(&args).map(|_| ExitCode::SUCCESS),
        Cmd::Workload { args } => demo::workload(&args),
    };
    match res {
        Ok(c) => c,
        Err(e) => {
            let line = one_line(e.chain().map(|c| c.to_string()));
            eprintln!("stasis: error: {line}");
            ExitCode::from(1)
        }
    }
}

/// One line from an error chain (outermost first): each cause is appended after ": "
/// unless its text is already in what was written (thiserror messages often embed their
/// source, `{path}: {source}`), and line breaks become "; ".
fn one_line(chain: impl IntoIterator<Item = String>) -> String {
    let mut line = String::new();
    for text in chain {
        let text = text.trim().replace('\n', "; ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let enoent = "No such file or directory (os error 2)";
        let outer = format!("/x/manifest.img: {enoent}");
        assert_eq!(one_line(s(&[&outer, &outer, enoent])), outer);
        assert_eq!(one_line(s(&["reading image", enoent])), format!("reading image: {enoent}"));
        assert_eq!(one_line(s(&["a\nb"])), "a; b");
    }
}
