//! `gmemfuzz nightly`: one command for a nightly CI job. It splits a time budget over the
//! fuzz targets this machine can run, runs each with libFuzzer in fork mode, merges what it
//! found into a corpus that persists between nights, turns the crashes into deduplicated,
//! minimized findings, and writes `report.md`, `report.json` and `junit.xml`.
//!
//! Exit status: 0 no new finding, 1 new findings, 2 a harness or usage error.

mod findings;
mod libfuzzer;
mod write;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use gmemfuzz_backends::Backend;

pub use write::{Report, TargetRun};

pub const CLEAN: i32 = 0;
pub const FOUND: i32 = 1;
pub const ERROR: i32 = 2;

pub struct NightlyOptions {
    pub budget: u64,
    pub corpus: PathBuf,
    pub out: PathBuf,
    pub jobs: usize,
    /// The cargo-fuzz target binaries; default: the repository's, built when missing.
    pub fuzz_bin_dir: Option<PathBuf>,
    /// Only these targets (default: every one this machine can run).
    pub targets: Vec<String>,
}

/// The share of the budget spent fuzzing; the rest is for merging and minimizing.
const FUZZ_SHARE: f64 = 0.75;

/// The repository root (the workspace this binary was built from).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What runs tonight: the targets this machine can run with their weight in the budget,
/// those it cannot and why, and the kernel's profile.
struct Plan {
    run: Vec<(&'static str, u64)>,
    skipped: Vec<(String, String)>,
    kernel: String,
}

fn plan(wanted: &[String]) -> Plan {
    let mut run = Vec::new();
    let mut skipped = Vec::new();
    let kernel = match crate::config::open_kvm(0) {
        Ok(b) => {
            run.push(("diff_kvm", 2));
            b.profile().summary()
        }
        Err(e) => {
            skipped.push(("diff_kvm".to_string(), format!("no real KVM with guest_memfd here: {e}")));
            "no usable /dev/kvm".to_string()
        }
    };
    run.extend([("diff_sim", 1), ("model", 1)]);
    skipped.push(("lane".to_string(), "the Linux 6.12 QEMU lane is not part of nightly yet (run `gmemfuzz lane`)".to_string()));
    if !wanted.is_empty() {
        run.retain(|(t, _)| wanted.iter().any(|w| w == t));
    }
    Plan { run, skipped, kernel }
}

pub fn nightly(opts: &NightlyOptions) -> i32 {
    match run(opts) {
        Ok(report) if report.errors() > 0 => {
            eprintln!("gmemfuzz nightly: {} target(s) failed to run (see the report)", report.errors());
            ERROR
        }
        Ok(report) if report.new_findings() > 0 => FOUND,
        Ok(_) => CLEAN,
        Err(e) => {
            eprintln!("gmemfuzz nightly: {e:#}");
            ERROR
        }
    }
}

fn run(opts: &NightlyOptions) -> Result<Report> {
    let start = Instant::now();
    let root = repo_root();
    let bin_dir = opts.fuzz_bin_dir.clone().unwrap_or_else(|| libfuzzer::default_bin_dir(&root));
    let Plan { run: targets, skipped, kernel } = plan(&opts.targets);
    anyhow::ensure!(!targets.is_empty(), "no target to run (--target names none of diff_kvm, diff_sim, model?)");
    if targets.iter().any(|(t, _)| !bin_dir.join(t).is_file()) {
        anyhow::ensure!(opts.fuzz_bin_dir.is_none(), "{} lacks fuzz target binaries", bin_dir.display());
        libfuzzer::build(&root)?;
    }
    std::fs::create_dir_all(opts.out.join("findings")).with_context(|| format!("creating {}", opts.out.display()))?;
    let weights: u64 = targets.iter().map(|(_, w)| w).sum();
    let fuzz_total = opts.budget as f64 * FUZZ_SHARE;
    println!(
        "nightly: budget {} s over {} ({} jobs each); corpus {}, out {}",
        opts.budget,
        targets.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", "),
        opts.jobs,
        opts.corpus.display(),
        opts.out.display()
    );
    let mut runs = Vec::new();
    let mut findings_so_far = 0;
    for (target, weight) in &targets {
        let seconds = ((fuzz_total * *weight as f64 / weights as f64) as u64).max(5);
        let t = run_target(target, seconds, opts, &bin_dir, &root, start, &mut findings_so_far);
        runs.push(t);
    }
    let report = Report { budget_s: opts.budget, jobs: opts.jobs, kernel, targets: runs, skipped };
    std::fs::write(opts.out.join("report.md"), report.markdown())?;
    std::fs::write(opts.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    std::fs::write(opts.out.join("junit.xml"), report.junit())?;
    println!(
        "nightly: done in {:.0} s: {} new finding(s); {}",
        start.elapsed().as_secs_f64(),
        report.new_findings(),
        opts.out.join("report.md").display()
    );
    Ok(report)
}

fn run_target(
    target: &str,
    seconds: u64,
    opts: &NightlyOptions,
    bin_dir: &Path,
    root: &Path,
    start: Instant,
    findings_so_far: &mut usize,
) -> TargetRun {
    let mut t = TargetRun {
        target: target.to_string(),
        seconds: 0.0,
        jobs: opts.jobs,
        execs: 0,
        execs_per_s: 0.0,
        corpus_before: 0,
        corpus_after: 0,
        seeds_added: 0,
        crashes: 0,
        findings: Vec::new(),
        known_bugs: Vec::new(),
        error: None,
    };
    if let Err(e) = fuzz_target(&mut t, seconds, opts, bin_dir, root, start, findings_so_far) {
        eprintln!("nightly: {target}: HARNESS ERROR: {e:#}");
        t.error = Some(format!("{e:#}"));
    }
    t
}

#[allow(clippy::too_many_arguments)]
fn fuzz_target(
    t: &mut TargetRun,
    seconds: u64,
    opts: &NightlyOptions,
    bin_dir: &Path,
    root: &Path,
    start: Instant,
    findings_so_far: &mut usize,
) -> Result<()> {
    let target = t.target.clone();
    let corpus = opts.corpus.join(&target);
    let out = opts.out.join(&target);
    // Tonight's fresh inputs and crashes only; the persistent corpus is elsewhere.
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    t.seeds_added = libfuzzer::seed(&corpus, &root.join("corpus").join(&target))?;
    t.corpus_before = libfuzzer::corpus_size(&corpus);
    let bin = bin_dir.join(&target);
    let job = libfuzzer::Job { target: &target, bin: &bin, corpus: &corpus, out: &out, jobs: opts.jobs };
    println!("nightly: {target}: fuzzing {seconds} s from {} corpus inputs ({} seeds added)", t.corpus_before, t.seeds_added);
    let fuzz_start = Instant::now();
    let budget = Duration::from_secs(opts.budget);
    let progress = job.fuzz(seconds, Duration::from_secs(10), |left, p| {
        let elapsed = fuzz_start.elapsed().as_secs_f64().max(1.0);
        println!(
            "nightly: {target}: {left} s left in this target ({} s overall), {} execs, {:.0} execs/s, crashes so far {}, findings so far {}",
            budget.saturating_sub(start.elapsed()).as_secs(),
            p.execs,
            p.execs as f64 / elapsed,
            findings::crash_programs(&out).len(),
            findings_so_far
        );
    })?;
    t.seconds = fuzz_start.elapsed().as_secs_f64();
    t.execs = progress.execs;
    t.execs_per_s = progress.execs as f64 / t.seconds.max(1.0);
    job.merge()?;
    t.corpus_after = libfuzzer::corpus_size(&corpus);
    let crashes = findings::crash_programs(&out);
    t.crashes = crashes.len();
    println!(
        "nightly: {target}: {} execs ({:.0}/s), corpus {} -> {}, {} crash program(s)",
        t.execs, t.execs_per_s, t.corpus_before, t.corpus_after, t.crashes
    );
    let collected = findings::collect(&target, &crashes, &opts.out.join("findings"))?;
    for f in &collected.findings {
        println!("nightly: {target}: NEW FINDING {} ({} crash program(s)): {}", f.slug, f.crashes.len(), f.headline);
    }
    *findings_so_far += collected.findings.len();
    t.findings = collected.findings;
    t.known_bugs = collected.known.into_iter().collect();
    Ok(())
}
