//! Every injected bug of the simulated platforms is found by seeded generation within a
//! bound, and the bug-free simulation runs clean.

use arbitrary::Unstructured;
use gmemfuzz::fuzz::sim::{profiles, run_sim, sim_backend};
use gmemfuzz::{Program, RunError, Runner};
use gmemfuzz_backends::sim::InjectedBug;
use gmemfuzz_backends::Profile;
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

const SEED: u64 = 0x5eed_6d65_6d66;
/// Most executions a bug may take to be found.
const BOUND: usize = 20_000;
const CLEAN_PROGRAMS: usize = 5_000;

/// The next generated program: 8 to 32 ops from seeded bytes.
fn next_program(rng: &mut StdRng) -> Program {
    let len = rng.random_range(8..=32);
    let mut bytes = vec![0u8; 64 * len];
    rng.fill_bytes(&mut bytes);
    // Every run below is on the 6.12 software-protected profile: generate for it. Without
    // concurrent groups: a simulation runs a group's members one after another, so groups
    // add only the model's search of their orders here (and the bound is calibrated on
    // programs without them; the swarm does not draw groups, so these are the same programs).
    let mut weights = gmemfuzz::gen::OpWeights::for_profile(&Profile::sw_protected_6_12());
    weights.set(gmemfuzz_backends::OpKind::Group, 0);
    Program::generate_with(&mut Unstructured::new(&bytes), len, &Profile::sw_protected_6_12(), weights)
        .expect("generation never fails on enough bytes")
}

/// Executions until the bug shows (divergence or invariant), or None within the bound.
fn executions_until_found(platform: &str, profile: Profile, bug: InjectedBug) -> Option<(usize, String)> {
    let mut runner = Runner::new(sim_backend(platform, profile, Some(bug)));
    let mut rng = StdRng::seed_from_u64(SEED);
    for n in 1..=BOUND {
        if let Err(finding) = run_sim(&mut runner, &next_program(&mut rng)) {
            let first = finding.to_string().lines().next().unwrap_or_default().to_string();
            return Some((n, first));
        }
    }
    None
}

/// Executions until the runner alone (model vs simulation, invariants ignored) diverges:
/// how many bugs the data path shows without the platform checks.
fn executions_until_divergence(platform: &str, profile: Profile, bug: InjectedBug) -> Option<(usize, &'static str)> {
    let mut runner = Runner::new(sim_backend(platform, profile, Some(bug)));
    let mut rng = StdRng::seed_from_u64(SEED);
    (1..=BOUND).find_map(|n| match runner.run(&next_program(&mut rng)) {
        Err(RunError::Divergence(d)) => Some((n, d.kind.slug())),
        _ => None,
    })
}

#[test]
fn every_injected_bug_is_found() {
    let mut missed = Vec::new();
    for bug in InjectedBug::ALL {
        // Every bug sits on a path both designs use.
        for platform in ["tdx", "snp"] {
            match executions_until_found(platform, Profile::sw_protected_6_12(), bug) {
                Some((n, how)) => {
                    let data = match executions_until_divergence(platform, Profile::sw_protected_6_12(), bug) {
                        Some((d, kind)) => format!("{d:>5}, {kind}"),
                        None => "never".to_string(),
                    };
                    println!("{:<26} {platform}: found after {n:>5} executions (divergence alone: {data}): {how}", bug.name());
                }
                None => {
                    println!("{:<26} {platform}: NOT found in {BOUND} executions", bug.name());
                    missed.push((bug, platform));
                }
            }
        }
    }
    assert!(missed.is_empty(), "bugs not found within {BOUND} executions: {missed:?}");
}

#[test]
fn bug_free_simulation_runs_clean() {
    for profile in profiles() {
        for platform in ["tdx", "snp"] {
            let mut runner = Runner::new(sim_backend(platform, profile.clone(), None));
            let mut rng = StdRng::seed_from_u64(SEED ^ 1);
            for n in 0..CLEAN_PROGRAMS {
                let program = next_program(&mut rng);
                if let Err(finding) = run_sim(&mut runner, &program) {
                    panic!("bug-free {platform} on {} diverged on program {n}:\n{finding}\nprogram: {:?}", profile.kernel, program.ops);
                }
            }
            println!("clean: {platform} on {}: {CLEAN_PROGRAMS} programs, {}", profile.kernel, runner.stats);
        }
    }
}

#[test]
fn diff_sim_accepts_random_inputs() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 2);
    let mut kept = 0;
    for _ in 0..500 {
        let mut bytes = vec![0u8; 512];
        rng.fill_bytes(&mut bytes);
        kept += matches!(gmemfuzz::fuzz::diff_sim(&bytes), libfuzzer_sys::Corpus::Keep) as usize;
    }
    assert!(kept > 0, "diff_sim rejected every input");
}
