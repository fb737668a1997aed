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

/// The kernel a bench's programs are made for and the model follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchProfile {
    /// The host lane's profile (VM type 0, Linux 6.18): what `bench` has always measured.
    Host,
    /// Software-protected VMs on Linux 7.2 (the lane's VM type 1): private memory and
    /// conversions, so groups race set_attributes too.
    Lane,
}

impl BenchProfile {
    fn profile(self) -> Profile {
        match self {
            BenchProfile::Host => Profile::host_6_18(),
            BenchProfile::Lane => Profile::sw_protected_7_2(),
        }
    }
}

/// This thread's CPU time, in seconds.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec the call writes; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    // Linux has had the clock since 2.6.12; a failure leaves zero, as if no time passed.
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// `bench --distribution`: how long each of `count` seeded programs that hold a group takes
/// in the model (the race search's cost is per program, so its tail is what stalls a fuzzer).
pub fn distribution(ops: usize, count: u64, seed: u64, profile: BenchProfile) -> Result<()> {
    let profile = profile.profile();
    let has_group = |p: &Program| p.ops.iter().any(|op| matches!(op, gmemfuzz_backends::Op::Group(_)));
    let mut runner = Runner::new(Model::new(profile.clone()));
    // (wall seconds, this thread's CPU seconds, seeded index) of each program.
    let mut times: Vec<(f64, f64, u64)> = Vec::with_capacity(count as usize);
    let mut slowest_program: Option<(f64, Program)> = None;
    let (mut tried, mut groups, mut inconclusive) = (0u64, 0u64, 0u64);
    for program in Program::seeded(seed, ops, &profile) {
        if times.len() as u64 == count {
            break;
        }
        tried += 1;
        if !has_group(&program) {
            continue;
        }
        let before = runner.stats.races.clone();
        let (start, cpu) = (Instant::now(), thread_cpu_secs());
        let _ = runner.run(&program);
        let (secs, cpu) = (start.elapsed().as_secs_f64(), thread_cpu_secs() - cpu);
        times.push((secs, cpu, tried - 1));
        if slowest_program.as_ref().is_none_or(|(s, _)| cpu > *s) {
            slowest_program = Some((cpu, program));
        }
        groups += runner.stats.races.groups - before.groups;
        inconclusive += runner.stats.races.inconclusive - before.inconclusive;
    }
    if times.is_empty() {
        bail!("no seeded program of {ops} ops holds a group");
    }
    println!(
        "model vs model, {} programs with a group ({ops} ops, seed {seed}, {tried} drawn; {groups} groups ran, {inconclusive} searches gave up):",
        times.len()
    );
    // Wall time counts what the thread waited for a core on a shared machine; its CPU time
    // is what the program cost.
    for (what, pick) in [("wall time", 0), ("CPU time", 1)] {
        let time = |t: &(f64, f64, u64)| if pick == 0 { t.0 } else { t.1 };
        times.sort_by(|a, b| time(a).total_cmp(&time(b)));
        let at = |q: f64| time(&times[((times.len() - 1) as f64 * q).round() as usize]) * 1e3;
        let slowest = &times[times.len() - 1];
        println!(
            "  {what}: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, p99.9 {:.2} ms, max {:.2} ms (seeded program #{}); {:.1} s in all",
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999),
            time(slowest) * 1e3,
            slowest.2,
            times.iter().map(time).sum::<f64>(),
        );
    }
    println!("  {}", runner.stats.races);
    if let Some((_, program)) = slowest_program {
        println!("  the slowest program in CPU time:");
        for line in crate::repro::text::print(&program).lines() {
            println!("    {line}");
        }
    }
    Ok(())
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
