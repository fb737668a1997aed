//! `gmemfuzz bench`: programs per second through the runner, the loop fuzzing uses.

use std::time::Instant;

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Profile};

use crate::{Program, Runner};

/// Runs every program of `set` once on `runner`; (seconds, divergences).
fn time<B: Backend>(runner: &mut Runner<B>, set: &[Program]) -> (f64, usize) {
    let start = Instant::now();
    let divergences = set.iter().filter(|p| runner.run(p).is_err()).count();
    (start.elapsed().as_secs_f64(), divergences)
}

/// The programs to time: the text programs of `dir`, or `count` seeded ones of `ops` ops.
fn programs(ops: usize, count: u64, seed: u64, dir: Option<&Path>) -> Result<Vec<Program>> {
    let Some(dir) = dir else {
        return Ok(Program::seeded(seed, ops, &Profile::host_6_18()).take(count as usize).collect());
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|x| x == "txt"));
    files.sort();
    if files.is_empty() {
        bail!("{} holds no text programs (*.txt)", dir.display());
    }
    files.iter().map(|f| crate::repro::load(f)).collect()
}

pub fn bench(ops: usize, count: u64, seed: u64, dir: Option<&Path>) -> Result<()> {
    let set = programs(ops, count, seed, dir)?;
    let count = set.len() as u64;
    let total_ops = set.iter().map(|p| p.ops.len()).sum::<usize>() as f64;
    let ops = total_ops / count as f64;
    // The model on both sides of the loop: twice the model's share of a differential run,
    // state answers included.
    let mut runner = Runner::new(Model::new(Profile::host_6_18()));
    let (secs, _) = time(&mut runner, &set);
    println!(
        "model vs model: {:.0} ops/s ({:.0} programs/s of {ops:.1} ops; the model runs twice per op, state answers included)",
        total_ops / secs,
        count as f64 / secs
    );
    match crate::config::open_kvm(0) {
        Err(e @ crate::config::OpenError::Config(_)) => anyhow::bail!("{e}"),
        Err(e) => println!("model + KVM:  not measured: {e}"),
        Ok(backend) => {
            let mut runner = Runner::new(backend);
            // Programs that hit a kernel bug already found (`known`) end there, counted.
            runner.filter_known = true;
            for check_after_invalidation in [true, false] {
                runner.check_after_invalidation = check_after_invalidation;
                runner.stats = Default::default();
                let (secs, divergences) = time(&mut runner, &set);
                let sent: u64 = runner.stats.ops.values().map(|(ran, _)| ran).sum();
                let mode = if check_after_invalidation {
                    "state compared after every invalidating op"
                } else {
                    "state compared at check and at the end"
                };
                println!(
                    "model + KVM:  {:.0} programs/s of {ops:.1} ops ({:.0} ops/s; {divergences} divergences; {mode}; per program: {:.1} ops sent, {:.1} state probes)",
                    count as f64 / secs,
                    total_ops / secs,
                    sent as f64 / count as f64,
                    runner.stats.probes as f64 / count as f64
                );
            }
        }
    }
    Ok(())
}
