//! `gmemfuzz bench`: programs per second through the runner, the loop fuzzing uses.

use std::time::Instant;

use anyhow::Result;
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Profile};

use crate::{Program, Runner};

/// Runs every program of `set` once on `runner`; (seconds, divergences).
fn time<B: Backend>(runner: &mut Runner<B>, set: &[Program]) -> (f64, usize) {
    let start = Instant::now();
    let divergences = set.iter().filter(|p| runner.run(p).is_err()).count();
    (start.elapsed().as_secs_f64(), divergences)
}

pub fn bench(ops: usize, count: u64, seed: u64) -> Result<()> {
    let set: Vec<Program> = Program::seeded(seed, ops, &Profile::host_6_18()).take(count as usize).collect();
    let total_ops = (count as usize * ops) as f64;
    // The model on both sides of the loop: twice the model's share of a differential run,
    // state answers included.
    let mut runner = Runner::new(Model::new(Profile::host_6_18()));
    let (secs, _) = time(&mut runner, &set);
    println!(
        "model vs model: {:.0} ops/s ({:.0} programs/s of {ops} ops; the model runs twice per op, state answers included)",
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
                let (secs, divergences) = time(&mut runner, &set);
                let mode = if check_after_invalidation {
                    "state compared after every invalidating op"
                } else {
                    "state compared at check and at the end"
                };
                println!(
                    "model + KVM:  {:.0} programs/s of {ops} ops ({:.0} ops/s; {divergences} divergences; {mode})",
                    count as f64 / secs,
                    total_ops / secs
                );
            }
        }
    }
    Ok(())
}
