//! The seed corpus of the fuzz targets (corpus/<target>/seed-NN.txt) and the stored
//! programs (corpus/regressions, corpus/lane): text programs, so that a change to the
//! generator cannot change them. Every seed parses, runs clean on real KVM (on the model
//! alone where KVM is absent), and together they use every op kind. With
//! GMEMFUZZ_WRITE_SEEDS=1 the test first (re)writes the seeds: programs generated from
//! seeded random bytes, kept as text only once they have run clean.

mod common;

use std::path::{Path, PathBuf};

use gmemfuzz::fuzz::input;
use gmemfuzz::gen::OpWeights;
use gmemfuzz::repro::text;
use gmemfuzz::{Program, Runner};
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Op, OpKind, Profile};
use rand::{RngCore, SeedableRng};

/// The targets that read corpus/<target> as seeds (fuzz/run.sh).
const TARGETS: [&str; 3] = ["diff_kvm", "model", "diff_sim"];

fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(name)
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(dir)).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

fn run_clean<B: Backend>(runner: &mut Runner<B>, program: &Program) -> Result<(), String> {
    runner.run(program).map(|_| ()).map_err(|e| e.to_string())
}

fn write_seeds<B: Backend>(runner: &mut Runner<B>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut kinds = std::collections::BTreeSet::new();
    let mut written = 0;
    for target in TARGETS {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for old in std::fs::read_dir(&dir).unwrap() {
            std::fs::remove_file(old.unwrap().path()).unwrap();
        }
    }
    // At least 16 seeds, and more until every op kind appears (bounded: the generator
    // reaches every kind within a few hundred inputs).
    for _ in 0..10_000 {
        if written >= 16 && kinds.len() == OpKind::ALL.len() {
            break;
        }
        let mut bytes = vec![0u8; 160];
        rng.fill_bytes(&mut bytes);
        let Some(program) = input::generated(&bytes, &Profile::host_6_18(), &OpWeights::for_profile(&Profile::host_6_18())) else {
            continue;
        };
        let new: Vec<OpKind> = program.ops.iter().map(Op::kind).filter(|k| !kinds.contains(k)).collect();
        if new.is_empty() && written >= 16 {
            continue;
        }
        run_clean(runner, &program).unwrap_or_else(|e| panic!("a seed candidate diverged: {e}"));
        kinds.extend(new);
        for target in TARGETS {
            std::fs::write(corpus_dir(target).join(format!("seed-{written:02}.txt")), text::print(&program)).unwrap();
        }
        written += 1;
    }
}

fn check_seeds<B: Backend>(runner: &mut Runner<B>) {
    if std::env::var_os("GMEMFUZZ_WRITE_SEEDS").is_some() {
        write_seeds(runner);
    }
    for target in TARGETS {
        let mut seen = std::collections::BTreeSet::new();
        let entries = files(target);
        assert!(entries.len() >= 16, "corpus/{target} has only {} seeds", entries.len());
        for path in entries {
            let bytes = std::fs::read(&path).unwrap();
            assert!(text::looks_like_text(&bytes), "{} is not a text program (seeds are text, see fuzz::input)", path.display());
            let program = input::decode(&bytes, runner.backend.profile()).unwrap_or_else(|| panic!("{} is not a program", path.display()));
            seen.extend(program.ops.iter().map(Op::kind));
            run_clean(runner, &program).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        let missing: Vec<_> = OpKind::ALL.iter().filter(|k| !seen.contains(k)).collect();
        assert!(missing.is_empty(), "corpus/{target} never uses {missing:?}");
    }
}

#[test]
fn seeds_decode_and_run_clean() {
    match common::kvm_or_skip("seeds_decode_and_run_clean") {
        Some(kvm) => check_seeds(&mut Runner::new(kvm)),
        None => {
            eprintln!("seeds_decode_and_run_clean: checking the seeds against the model alone");
            check_seeds(&mut Runner::new(Model::new(Profile::host_6_18())));
        }
    }
}

/// A generator change: the same op kinds, drawn at other rates.
fn other_rates(profile: &Profile) -> OpWeights {
    let mut rates = OpWeights::for_profile(profile);
    let (bind, guest) = (rates.get(OpKind::Bind), rates.get(OpKind::Guest));
    rates.set(OpKind::Bind, guest); // bind and guest trade places
    rates.set(OpKind::Guest, bind);
    rates.set(OpKind::Check, 6 * rates.get(OpKind::Check)); // and `check` is drawn six times as often
    rates
}

/// Every stored program decodes, as a fuzz input, to the same program whatever the
/// generator's op rates and the profile; raw generator bytes do not, so this would fail if
/// seeds or regressions were stored as generator input.
#[test]
fn stored_programs_do_not_depend_on_the_generator() {
    let profiles = [Profile::host_6_18(), Profile::sw_protected_6_12()];
    let mut stored = 0;
    for dir in TARGETS.into_iter().chain(["regressions", "lane"]) {
        for path in files(dir) {
            let bytes = std::fs::read(&path).unwrap();
            let expected = text::parse(std::str::from_utf8(&bytes).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for profile in &profiles {
                for rates in [&OpWeights::for_profile(profile), &other_rates(profile)] {
                    let decoded = input::decode_with(&bytes, profile, rates);
                    assert_eq!(decoded.as_ref(), Some(&expected), "{} under {rates:?} on {}", path.display(), profile.summary());
                }
            }
            stored += 1;
        }
    }
    assert!(stored >= 3 * 16 + 5, "only {stored} stored programs found");

    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let (mut raw, mut changed) = (0, 0);
    for _ in 0..200 {
        let mut bytes = vec![0u8; 160];
        rng.fill_bytes(&mut bytes);
        let host = &profiles[0];
        let (before, after) = (OpWeights::for_profile(host), other_rates(host));
        let old = input::decode_with(&bytes, host, &before);
        if old.is_some() {
            raw += 1;
            changed += (input::decode_with(&bytes, host, &after) != old) as usize;
        }
    }
    eprintln!("raw generator inputs: {changed} of {raw} decode to another program under the other op rates");
    assert!(raw > 100 && changed * 2 > raw, "the rate change should re-decode most raw inputs: {changed} of {raw}");
}
