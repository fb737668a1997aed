//! Every scenario file (`corpus/scenarios/*.txt`, compiled in: no list of them here) in
//! lockstep, each op's outcome checked against the one its line expects: on the model for
//! each assumed profile a file is made for, and on the host's real KVM (its probed profile)
//! where it has guest_memfd. The lane runs the same files (`gmemfuzz scenarios`, tests/lane.rs).
//! Every failure is reported, each with its file and line.

mod common;

use gmemfuzz::scenarios::{self, ScenarioFile};
use gmemfuzz::Runner;
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Profile};

fn files() -> Vec<ScenarioFile> {
    let files = scenarios::files().unwrap_or_else(|e| panic!("{e}"));
    assert!(!files.is_empty(), "no scenario files in {}", scenarios::DIR);
    files
}

/// The files compiled in are the ones in the directory (where the tree is at hand).
#[test]
fn the_compiled_in_files_are_the_directory() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(scenarios::DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("SKIPPED the_compiled_in_files_are_the_directory: no {}", dir.display());
        return;
    };
    let mut on_disk: Vec<String> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let compiled: Vec<String> = files().into_iter().map(|f| f.name).collect();
    assert_eq!(compiled, on_disk);
}

#[test]
fn every_scenario_on_the_model() {
    let mut failures = Vec::new();
    let mut passed = 0;
    for file in files() {
        let mut made = 0;
        for profile in scenarios::assumed_profiles() {
            let scenario = match file.for_profile(&profile) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    failures.push(e);
                    continue;
                }
            };
            made += 1;
            let mut runner = Runner::new(Model::new(profile.clone()));
            runner.check_model_invariants = true;
            match scenario.check(&mut runner) {
                Ok(()) => passed += 1,
                Err(e) => failures.push(format!("{e}\n    on {}", profile.summary())),
            }
        }
        if made == 0 {
            failures.push(format!("{}: made for no assumed profile", file.path));
        }
    }
    eprintln!("{passed} scenario runs passed on the model");
    assert!(failures.is_empty(), "{} scenario runs failed on the model:\n{}", failures.len(), failures.join("\n"));
}

/// Each scenario made for the host kernel's probed profile on a fresh VM. Each counts as a
/// KVM test that ran (`common::kvm_or_skip` records its name).
#[test]
fn every_scenario_on_kvm() {
    let Some(probe) = common::kvm_or_skip("every_scenario_on_kvm") else { return };
    let profile = probe.profile().clone();
    drop(probe);
    let mut failures = Vec::new();
    for file in files() {
        let scenario = match file.for_profile(&profile) {
            Ok(Some(s)) => s,
            Ok(None) => {
                eprintln!("SKIPPED scenario {}: not made for this kernel's profile ({})", file.name, profile.summary());
                continue;
            }
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let Some(backend) = common::kvm_or_skip(&format!("scenario {}", file.name)) else {
            failures.push(format!("{}: real KVM opened once, then not again", file.path));
            continue;
        };
        let mut runner = Runner::new(backend);
        runner.check_model_invariants = true;
        match scenario.check(&mut runner) {
            Ok(()) => eprintln!("PASS {} ({} steps)", file.name, scenario.steps.len()),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} scenarios failed on KVM ({}):\n{}", failures.len(), profile.summary(), failures.join("\n"));
}

/// Reusing one VM across programs must leave nothing behind: each seeded program gives the
/// same trace on the reused VM as on a fresh one.
#[test]
fn reset_leaves_no_state_behind() {
    let Some(backend) = common::kvm_or_skip("reset_leaves_no_state_behind") else { return };
    let mut reused = Runner::new(backend);
    for program in gmemfuzz::Program::seeded(11, 16, &Profile::host_6_18()).take(40) {
        let fresh = gmemfuzz_backends::kvm::KvmBackend::new(0).unwrap();
        gmemfuzz::runner::check_reset(&mut reused, fresh, &program).unwrap_or_else(|e| panic!("{e}\nprogram: {:?}", program.ops));
    }
}

/// A software-protected VM keeps the MMIO SPTE of a GFN a program's access found no memslot
/// for, and once stale it turns a later private fault on that GFN into a shared one (the
/// known stale MMIO SPTE bug): reset must scrub it, or the next program, which never touched
/// MMIO, diverges. Program A exits as MMIO at GFN 0x104; program B (the lane regression
/// `private_access_without_earlier_mmio.txt`) binds that GFN privately and reads it.
#[test]
fn reset_scrubs_the_mmio_sptes_a_program_left() {
    let Some(backend) = common::kvm_of_type_or_skip("reset_scrubs_the_mmio_sptes_a_program_left", 1) else { return };
    let parse = |text: &str| gmemfuzz::repro::text::parse(text).expect("a valid program");
    let mmio = parse("gmemfuzz-program v3\nguest r4@0x104000\n");
    let private = parse(include_str!("../../corpus/lane/private_access_without_earlier_mmio.txt"));
    let mut runner = Runner::new(backend);
    for round in 0..3 {
        let trace = runner.run(&mmio).unwrap_or_else(|e| panic!("round {round}, the MMIO access: {e}"));
        assert!(
            matches!(&trace.outcomes[0], gmemfuzz_backends::Outcome::Guest(r) if r[0] == gmemfuzz_backends::AccessResult::Mmio),
            "round {round}: the access without a memslot did not exit as MMIO: {:?}",
            trace.outcomes
        );
        runner.run(&private).unwrap_or_else(|e| panic!("round {round}, the private read after reset: {e}"));
    }
}

/// Seeded random programs run clean: the model predicts this kernel.
#[test]
fn seeded_programs_run_clean() {
    let Some(backend) = common::kvm_or_skip("seeded_programs_run_clean") else { return };
    let mut runner = Runner::new(backend);
    // Programs that hit a kernel bug already found (`known`) end there, counted.
    runner.filter_known = true;
    for (i, program) in gmemfuzz::Program::seeded(5, 16, &Profile::host_6_18()).take(300).enumerate() {
        runner.run(&program).unwrap_or_else(|e| panic!("program #{i}: {e}\nprogram: {:?}", program.ops));
    }
    assert!(runner.stats.unreached().len() <= 1, "op kinds that never reached KVM: {:?}", runner.stats.unreached());
}

#[test]
fn residency_follows_preparation() {
    use gmemfuzz_backends::op::{GmemId, Op, PAGE_SIZE};
    use gmemfuzz_backends::{Observation, Probe};
    let mut model = Model::new(Profile::host_6_18());
    let g = GmemId(0);
    for op in [
        Op::CreateGmem { size: 4 * PAGE_SIZE, flags: 3 },
        Op::Map { gmem: g },
        Op::Allocate { gmem: g, mode: 1, offset: 0, len: 2 * PAGE_SIZE },
        Op::HostRead { gmem: g, offset: PAGE_SIZE, width: gmemfuzz_backends::Width::W1 },
    ] {
        model.apply(&op).unwrap();
    }
    let seen = model.observe(&[Probe::Residency { gmem: g }]).unwrap();
    assert_eq!(
        seen,
        vec![Some(Observation::Residency(vec![false, true, false, false]))],
        "allocated pages are not uptodate; the faulted one is"
    );
}
