//! The model, scenario by scenario: every op's outcome as the kernel's own tests expect.

use gmemfuzz::scenarios;
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Profile};

/// Runs the scenario `name` on the model for every assumed profile it is made for.
fn check(name: &str) {
    let made: Vec<_> = scenarios::all().into_iter().filter(|s| s.name == name).collect();
    assert!(!made.is_empty(), "scenario {name} is made for no assumed profile");
    for scenario in made {
        let mut runner = gmemfuzz::Runner::new(Model::new(scenario.profile.clone()));
        runner.check_model_invariants = true;
        scenario.check(&mut runner).unwrap_or_else(|e| panic!("{} on {}", e, scenario.profile.summary()));
    }
}

macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => { $( #[test] fn $name() { check(stringify!($name)); } )* };
}

scenario_tests!(
    invalid_sizes,
    invalid_flags,
    mmap_needs_mmap_flag,
    host_fault_without_init_shared_is_sigbus,
    fallocate_rules,
    punch_hole_then_read_zero,
    binding_rules,
    guest_memfd_slots_are_immutable,
    release_needs_every_reference_gone,
    no_mmap_flag_slot_uses_userspace_memory,
    destroy_vm_while_files_live,
    memory_attributes_unsupported,
    residency_counts_prepared_pages,
    conversion_round_trip,
    punch_hole_zeroes_private_pages,
    private_faults_exit_to_userspace,
    attribute_argument_checks,
    gmem_only_slot_on_private_vm,
    mempolicy,
);

#[test]
fn every_scenario_has_a_test() {
    let tested = include_str!("scenarios_model.rs");
    for s in scenarios::all() {
        assert!(tested.contains(&format!("    {},", s.name)), "scenario {} has no test function", s.name);
    }
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
