//! `gmemfuzz nightly`: one command for a nightly CI job. It splits a time budget over the
//! fuzz targets this machine can run, runs each with libFuzzer in fork mode, merges what it
//! found into a corpus that persists between nights, turns the crashes into deduplicated,
//! minimized findings, and writes `report.md`, `report.json` and `junit.xml`.
//!
//! Exit status: 0 no new finding, 1 new findings, 2 a harness or usage error.

mod findings;
mod lane;
mod libfuzzer;
mod opmix;
mod progress;
mod write;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use gmemfuzz_backends::Backend;

use progress::Progress;

pub use write::{Report, TargetRun};

pub const CLEAN: i32 = 0;
pub const FOUND: i32 = 1;
pub const ERROR: i32 = 2;

/// What `gmemfuzz nightly` is asked: its flags, parsed by clap (the doc comments are their help).
#[derive(clap::Args, Debug)]
pub struct NightlyOptions {
    /// Total seconds: each target fuzzes 2/3 of its share, then merges and minimizes.
    #[arg(long)]
    pub budget: u64,
    /// The corpus that persists between nights (one directory per target).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Reports, findings, logs and tonight's artifacts.
    #[arg(long)]
    pub out: PathBuf,
    /// libFuzzer fork-mode jobs per target (default: every core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// The cargo-fuzz target binaries (default: the repository's fuzz/target, built if missing).
    #[arg(long)]
    pub fuzz_bin_dir: Option<PathBuf>,
    /// Run only this target (repeatable; default: all this machine can run).
    #[arg(long = "target")]
    pub targets: Vec<String>,
}

impl NightlyOptions {
    /// libFuzzer jobs per target: `--jobs`, or one per core.
    fn jobs(&self) -> usize {
        self.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// The share of the budget spent fuzzing; the rest is for merging and minimizing.
const FUZZ_SHARE: f64 = 2.0 / 3.0;

/// Minimization gets at least this long after fuzzing, even when a target ran late.
const MIN_MINIMIZE_S: u64 = 5;

/// The repository root (the workspace this binary was built from).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What runs tonight: the targets this machine can run with their weight in the budget,
/// the lane's weight where it runs, those it cannot and why, and the kernel's profile.
struct Plan {
    run: Vec<(&'static str, u64)>,
    lane: Option<u64>,
    skipped: Vec<(String, String)>,
    kernel: String,
}

/// The lane's weight in the budget (diff_kvm's).
const LANE_WEIGHT: u64 = 2;

/// Below this share of the budget the lane is not run: its boots alone take about a minute.
const LANE_MIN_S: u64 = 180;

fn plan(wanted: &[String], budget: u64) -> Plan {
    let wants = |t: &str| wanted.is_empty() || wanted.iter().any(|w| w == t);
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
    run.retain(|(t, _)| wants(t));
    let mut lane = None;
    if wants("lane") {
        let weights: u64 = run.iter().map(|(_, w)| w).sum::<u64>() + LANE_WEIGHT;
        let share = budget * LANE_WEIGHT / weights;
        if !crate::kernel::kernel_is_cached() {
            skipped
                .push(("lane".into(), "no lane kernel is cached here (`gmemfuzz lane` builds one; that takes longer than a night)".into()));
        } else if share < LANE_MIN_S {
            skipped.push(("lane".into(), format!("its share of this budget, {share} s, is under the {LANE_MIN_S} s a lane session needs")));
        } else {
            lane = Some(LANE_WEIGHT);
        }
    }
    Plan { run, lane, skipped, kernel }
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
    // Paths made absolute: the targets start in their own output directory.
    let absolute = |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
    let opts = &NightlyOptions {
        corpus: absolute(&opts.corpus)?,
        out: absolute(&opts.out)?,
        fuzz_bin_dir: opts.fuzz_bin_dir.as_deref().map(absolute).transpose()?,
        targets: opts.targets.clone(),
        jobs: Some(opts.jobs()),
        ..*opts
    };
    let bin_dir = opts.fuzz_bin_dir.clone().unwrap_or_else(|| libfuzzer::default_bin_dir(&root));
    let Plan { run: targets, lane: lane_weight, skipped, kernel } = plan(&opts.targets, opts.budget);
    anyhow::ensure!(
        !targets.is_empty() || lane_weight.is_some(),
        "no target to run (--target names none of diff_kvm, diff_sim, model, lane; or the lane cannot run here)"
    );
    if targets.iter().any(|(t, _)| !bin_dir.join(t).is_file()) {
        anyhow::ensure!(opts.fuzz_bin_dir.is_none(), "{} lacks fuzz target binaries", bin_dir.display());
        libfuzzer::build(&root)?;
    }
    std::fs::create_dir_all(opts.out.join("findings")).with_context(|| format!("creating {}", opts.out.display()))?;
    let weights: u64 = targets.iter().map(|(_, w)| w).sum::<u64>() + lane_weight.unwrap_or(0);
    let mut progress = Progress::new(opts.budget, start);
    progress.println(format!(
        "nightly: budget {} s over {} ({} jobs each); corpus {}, out {}",
        opts.budget,
        targets.iter().map(|(t, _)| *t).chain(lane_weight.map(|_| "lane")).collect::<Vec<_>>().join(", "),
        opts.jobs(),
        opts.corpus.display(),
        opts.out.display()
    ));
    let mut runs = Vec::new();
    let mut night = Night { findings: 0, progress: &mut progress };
    let mut window_end = start;
    for (target, weight) in &targets {
        let share = *weight as f64 / weights as f64;
        // This target's window of the budget: fuzzing, then merging and minimizing. Its
        // fuzzing time comes out of what is left of the window, so that a target that ran
        // over (fork mode waits for its last job) shortens the next one.
        window_end += Duration::from_secs_f64(opts.budget as f64 * share);
        let left = window_end.saturating_duration_since(Instant::now()).as_secs_f64();
        let seconds = ((left * FUZZ_SHARE) as u64).max(5);
        runs.push(run_target(target, seconds, window_end, opts, &bin_dir, &root, &mut night));
    }
    let lane = lane_weight.map(|w| {
        let left = (start + Duration::from_secs(opts.budget)).saturating_duration_since(Instant::now()).as_secs_f64();
        let seconds = ((left.min(opts.budget as f64 * w as f64 / weights as f64)) * FUZZ_SHARE) as u64;
        night
            .progress
            .println(format!("nightly: lane: fuzzing {seconds} s (gmemfuzz lane, its log in {})", opts.out.join("lane.log").display()));
        night.progress.update(format!("lane: {seconds} s of fuzzing in QEMU"));
        let lane = lane::run(seconds.max(1), &opts.out);
        night.progress.println(match &lane.error {
            Some(e) => format!("nightly: lane: HARNESS ERROR: {e}"),
            None => format!("nightly: lane: {} boots, {} divergences, {} kernel splats", lane.boots, lane.divergences, lane.splats),
        });
        lane
    });
    progress.finish();
    let report =
        Report { lane, budget_s: opts.budget, took_s: start.elapsed().as_secs_f64(), jobs: opts.jobs(), kernel, targets: runs, skipped };
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

/// What the targets of one night share: findings so far and the progress display.
struct Night<'a> {
    findings: usize,
    progress: &'a mut Progress,
}

fn run_target(
    target: &str,
    seconds: u64,
    deadline: Instant,
    opts: &NightlyOptions,
    bin_dir: &Path,
    root: &Path,
    night: &mut Night,
) -> TargetRun {
    let mut t = TargetRun {
        target: target.to_string(),
        seconds: 0.0,
        jobs: opts.jobs(),
        execs: 0,
        execs_per_s: 0.0,
        corpus_before: 0,
        corpus_after: 0,
        seeds_added: 0,
        crashes: 0,
        op_mix: Default::default(),
        findings: Vec::new(),
        known_bugs: Vec::new(),
        error: None,
    };
    if let Err(e) = fuzz_target(&mut t, seconds, deadline, opts, bin_dir, root, night) {
        night.progress.println(format!("nightly: {target}: HARNESS ERROR: {e:#}"));
        t.error = Some(format!("{e:#}"));
    }
    t
}

/// Fuzzes one target for `seconds`, merges its corpus, and turns its crashes into findings,
/// minimizing them until `deadline` (at least `MIN_MINIMIZE_S` after the merge).
fn fuzz_target(
    t: &mut TargetRun,
    seconds: u64,
    deadline: Instant,
    opts: &NightlyOptions,
    bin_dir: &Path,
    root: &Path,
    night: &mut Night,
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
    let stats = out.join("stats");
    let job = libfuzzer::Job { target: &target, bin: &bin, corpus: &corpus, out: &out, jobs: opts.jobs(), stats: &stats };
    night
        .progress
        .println(format!("nightly: {target}: fuzzing {seconds} s from {} corpus inputs ({} seeds added)", t.corpus_before, t.seeds_added));
    let fuzz_start = Instant::now();
    let findings_so_far = night.findings;
    let progress = job.fuzz(seconds, Duration::from_secs(1), |left, p| {
        let elapsed = fuzz_start.elapsed().as_secs_f64().max(1.0);
        night.progress.update(format!(
            "{target}: {left} s left in this target, {} execs, {:.0} execs/s, crashes {}, findings so far {}",
            p.execs,
            p.execs as f64 / elapsed,
            findings::crash_programs(&out).len(),
            findings_so_far
        ));
    })?;
    t.seconds = fuzz_start.elapsed().as_secs_f64();
    t.execs = progress.execs;
    t.execs_per_s = progress.execs as f64 / t.seconds.max(1.0);
    t.op_mix = opmix::OpMix::read(&stats);
    night.progress.update(format!("{target}: merging the corpus"));
    job.merge()?;
    t.corpus_after = libfuzzer::corpus_size(&corpus);
    let crashes = findings::crash_programs(&out);
    t.crashes = crashes.len();
    night.progress.println(format!(
        "nightly: {target}: {} execs ({:.0}/s), corpus {} -> {}, {} crash program(s)",
        t.execs, t.execs_per_s, t.corpus_before, t.corpus_after, t.crashes
    ));
    if !crashes.is_empty() {
        night.progress.update(format!("{target}: replaying and minimizing {} crash program(s)", crashes.len()));
    }
    let deadline = deadline.max(Instant::now() + Duration::from_secs(MIN_MINIMIZE_S));
    let collected = findings::collect(&target, &crashes, &opts.out.join("findings"), deadline)?;
    for f in &collected.findings {
        night.progress.println(format!(
            "nightly: {target}: NEW FINDING {} ({} crash program(s), {} variant(s)): {}",
            f.slug,
            f.crashes.len(),
            f.variants.len(),
            f.headline
        ));
    }
    night.findings += collected.findings.len();
    t.findings = collected.findings;
    t.known_bugs = collected.known.into_iter().collect();
    Ok(())
}
