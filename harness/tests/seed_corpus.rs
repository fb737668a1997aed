//! The seed corpus of the `diff_kvm` and `model` targets (corpus/<target>/): every seed
//! decodes to a useful program and runs clean on real KVM (on the model alone where KVM is
//! absent). With GMEMFUZZ_WRITE_SEEDS=1 the test first (re)writes the seeds: seeded random
//! inputs, kept only once they have run clean on real KVM.

mod common;

use std::path::{Path, PathBuf};

use gmemfuzz::{Program, Runner};
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Op, OpKind, Profile};
use rand::{RngCore, SeedableRng};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus").join(target)
}

fn run_clean<B: Backend>(runner: &mut Runner<B>, program: &Program) -> Result<(), String> {
    runner.run(program).map(|_| ()).map_err(|e| e.to_string())
}

fn write_seeds<B: Backend>(runner: &mut Runner<B>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut kinds = std::collections::BTreeSet::new();
    let mut written = 0;
    for target in ["diff_kvm", "model"] {
        std::fs::create_dir_all(corpus_dir(target)).unwrap();
    }
    // At least 16 seeds, and more until every op kind appears (bounded: the generator
    // reaches every kind within a few hundred inputs).
    for _ in 0..10_000 {
        if written >= 16 && kinds.len() == OpKind::ALL.len() {
            break;
        }
        let mut bytes = vec![0u8; 160];
        rng.fill_bytes(&mut bytes);
        let Some(program) = Program::from_bytes(&bytes) else { continue };
        let new: Vec<OpKind> = program.ops.iter().map(Op::kind).filter(|k| !kinds.contains(k)).collect();
        if new.is_empty() && written >= 16 {
            continue;
        }
        run_clean(runner, &program).unwrap_or_else(|e| panic!("a seed candidate diverged: {e}"));
        kinds.extend(new);
        for target in ["diff_kvm", "model"] {
            std::fs::write(corpus_dir(target).join(format!("seed-{written:02}")), &bytes).unwrap();
        }
        written += 1;
    }
}

fn check_seeds<B: Backend>(runner: &mut Runner<B>) {
    if std::env::var_os("GMEMFUZZ_WRITE_SEEDS").is_some() {
        write_seeds(runner);
    }
    for target in ["diff_kvm", "model"] {
        let mut seen = std::collections::BTreeSet::new();
        let entries: Vec<_> = std::fs::read_dir(corpus_dir(target)).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(entries.len() >= 16, "corpus/{target} has only {} seeds", entries.len());
        for path in entries {
            let bytes = std::fs::read(&path).unwrap();
            let program = Program::from_bytes(&bytes).unwrap_or_else(|| panic!("{} decodes to nothing", path.display()));
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
