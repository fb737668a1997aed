//! `gmemfuzz run`: seeded random programs on the model and real KVM, without libFuzzer.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use gmemfuzz_backends::{Backend, Profile};

use crate::report::{Record, Sink};
use crate::repro::text;
use crate::{Program, RunError, Runner};

pub struct RunOptions {
    pub seed: u64,
    pub programs: u64,
    /// Stop after this many seconds (0 = no limit).
    pub seconds: u64,
    /// Where diverging programs are written.
    pub findings: Option<PathBuf>,
    /// Read /proc/sys/kernel/tainted after each program.
    pub taint_check: bool,
    pub ops: usize,
    pub vm_type: u64,
    /// Also run every program on a VM made for it and require the same trace: shows that
    /// reusing a VM across programs leaves nothing behind that changes what a program does.
    pub verify_reset: bool,
    /// Generate no concurrent groups (for the sequential figure beside the racing one).
    pub no_groups: bool,
}

/// /proc/sys/kernel/tainted (0 where it cannot be read).
fn kernel_taint() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/tainted").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Saves `program` as `findings/name`, a text program recording the profile it ran on and
/// what it showed (when a findings directory was given).
fn save(findings: Option<&PathBuf>, name: &str, program: &Program, profile: &Profile, found: &str) -> Result<()> {
    if let Some(dir) = findings {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        crate::fuzz::artifact::save(&path, program, profile, found)?;
        eprintln!("gmemfuzz: wrote {}", path.display());
    }
    Ok(())
}

pub fn run(opts: &RunOptions, sink: &Sink) -> Result<()> {
    let mut runner = Runner::new(super::kvm(opts.vm_type)?);
    runner.filter_known = true;
    eprintln!("gmemfuzz: {}", runner.backend.profile().summary());
    let start = Instant::now();
    let mut last_stats = Instant::now();
    let profile = runner.backend.profile().clone();
    let mut weights = crate::gen::OpWeights::for_profile(&profile);
    if opts.no_groups {
        weights.set(gmemfuzz_backends::OpKind::Group, 0);
    }
    let finish = |runner: &Runner<_>| -> Result<()> {
        println!("{}", runner.stats);
        sink.put(&Record::stats(&runner.stats, opts.vm_type))
    };
    for (i, program) in Program::seeded_with(opts.seed, opts.ops, &profile, weights).take(opts.programs as usize).enumerate() {
        if opts.seconds != 0 && start.elapsed().as_secs() >= opts.seconds {
            break;
        }
        let taint_before = if opts.taint_check { kernel_taint() } else { 0 };
        let result = runner.run(&program);
        if opts.verify_reset {
            let mut fresh = Runner::new(super::kvm(opts.vm_type)?);
            fresh.filter_known = true;
            if let Err(e) = crate::runner::same_on_fresh(&result, &mut fresh, &program) {
                bail!(
                    "gmemfuzz HARNESS ERROR: program #{i} ran differently on the reused VM and on a fresh one: {e}\n{}",
                    text::print(&program)
                );
            }
            runner.stats.verified_resets += 1;
        }
        let taint_after = if opts.taint_check { kernel_taint() } else { 0 };
        if taint_after != taint_before {
            let text = text::print(&program);
            eprintln!("gmemfuzz KERNEL SPLAT: kernel taint went {taint_before:#x} -> {taint_after:#x} during program #{i}:\n{text}");
            let found = format!("kernel taint went {taint_before:#x} -> {taint_after:#x} while this ran");
            save(opts.findings.as_ref(), &format!("splat-{}-{i}.txt", opts.seed), &program, runner.backend.profile(), &found)?;
            sink.put(&Record::Taint { before: taint_before, after: taint_after, program: text })?;
            finish(&runner)?;
            bail!("kernel splat during program #{i}");
        }
        match result {
            Ok(_) => {}
            Err(RunError::Divergence(d)) => {
                eprintln!("{d}");
                let text = text::print(&program);
                eprintln!("  program (seed {}, #{i}):\n{text}", opts.seed);
                save(
                    opts.findings.as_ref(),
                    &format!("divergence-{}-{i}.txt", opts.seed),
                    &program,
                    runner.backend.profile(),
                    &d.to_string(),
                )?;
                sink.put(&Record::divergence(&d, &program))?;
                finish(&runner)?;
                bail!("divergence in program #{i}");
            }
            Err(e) => bail!("{e}"),
        }
        if last_stats.elapsed().as_secs() >= 10 {
            eprintln!("gmemfuzz run stats: {}", runner.stats);
            last_stats = Instant::now();
        }
    }
    finish(&runner)?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "throughput: {} programs of {} ops in {secs:.1} s: {:.1} programs/s",
        runner.stats.programs,
        opts.ops,
        runner.stats.programs as f64 / secs
    );
    println!("{}", runner.stats.time.show(secs, runner.stats.programs));
    sink.put(&Record::Throughput { programs: runner.stats.programs, ops: opts.ops, seconds: secs, breakdown: runner.stats.time.clone() })
}
