//! `stasis check`: try every kernel feature stasis uses and say which ones work here.
//!
//! Each probe makes the real call (see `stasis_sys::probe`); nothing is inferred from the
//! kernel version. Exit status 0 means every required feature works.

use std::process::ExitCode;

use stasis_sys::probe::{self, Need};

pub fn run() -> anyhow::Result<ExitCode> {
    println!(
        "stasis check: trying each kernel feature stasis uses (real calls, not version checks)"
    );
    println!();
    println!(
        "  kernel     {} ({})",
        probe::kernel_release(),
        std::env::consts::ARCH
    );
    println!("  page size  {} bytes", probe::page_size());
    let missing_caps = probe::missing_capabilities();
    if missing_caps.is_empty() {
        println!("  caps       all that stasis uses are effective");
    } else {
        println!("  caps       not effective: {}", missing_caps.join(", "));
    }
    println!();

    let probes = probe::all();
    let width = probes.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut required = (0, 0); // (ok, total)
    let mut optional = (0, 0);
    let mut missing_required = Vec::new();
    let mut missing_optional = Vec::new();
    for p in &probes {
        let outcome = p.run();
        let verdict = match &outcome {
            Ok(detail) if detail.is_empty() => "ok".to_string(),
            Ok(detail) => format!("ok ({detail})"),
            Err(why) => format!("missing: {why}"),
        };
        println!("  {:<width$}  {:<8}  {verdict}", p.name, p.need);
        let tally = match p.need {
            Need::Required => &mut required,
            Need::Optional => &mut optional,
        };
        tally.1 += 1;
        if outcome.is_ok() {
            tally.0 += 1;
        } else if p.need == Need::Required {
            missing_required.push(p.name);
        } else {
            missing_optional.push(p.name);
        }
    }

    // The probes reap their own children; anything reaped here would be a bug in a probe.
    for (pid, how) in probe::reap_exited_children() {
        tracing::warn!("a probe left child {pid} behind; it {how}");
    }

    println!();
    print!(
        "summary: {}/{} required features work",
        required.0, required.1
    );
    print!(", {}/{} optional", optional.0, optional.1);
    if missing_optional.is_empty() {
        println!(".");
    } else {
        println!(" (missing: {}).", missing_optional.join(", "));
    }
    if missing_required.is_empty() {
        println!("stasis can checkpoint and restore processes on this machine.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "stasis cannot work here: required feature{} missing: {}.",
            if missing_required.len() == 1 { "" } else { "s" },
            missing_required.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}
