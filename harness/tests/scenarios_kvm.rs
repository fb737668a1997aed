//! The same scenarios on real KVM, in lockstep with the model: no divergence, and every
//! outcome is the one the kernel's own tests expect.

mod common;

use gmemfuzz::{scenarios, Runner};

fn check(name: &str) {
    let Some(backend) = common::kvm_or_skip(name) else { return };
    let profile = gmemfuzz_backends::Backend::profile(&backend).clone();
    let Some(scenario) = scenarios::for_profile(&profile).into_iter().find(|s| s.name == name) else {
        eprintln!("SKIPPED {name}: not made for this kernel's profile ({})", profile.summary());
        return;
    };
    let mut runner = Runner::new(backend);
    runner.check_model_invariants = true;
    scenario.check(&mut runner).unwrap_or_else(|e| panic!("{e}"));
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
    mempolicy,
);

/// Reusing one VM across programs must leave nothing behind: each seeded program gives the
/// same trace on the reused VM as on a fresh one.
#[test]
fn reset_leaves_no_state_behind() {
    let Some(backend) = common::kvm_or_skip("reset_leaves_no_state_behind") else { return };
    let mut reused = Runner::new(backend);
    for program in gmemfuzz::Program::seeded(11, 16, &gmemfuzz_backends::Profile::host_6_18()).take(40) {
        let fresh = gmemfuzz_backends::kvm::KvmBackend::new(0).unwrap();
        gmemfuzz::runner::check_reset(&mut reused, fresh, &program).unwrap_or_else(|e| panic!("{e}\nprogram: {:?}", program.ops));
    }
}

/// Seeded random programs run clean: the model predicts this kernel.
#[test]
fn seeded_programs_run_clean() {
    let Some(backend) = common::kvm_or_skip("seeded_programs_run_clean") else { return };
    let mut runner = Runner::new(backend);
    // Programs that hit a kernel bug already found (`known`) end there, counted.
    runner.filter_known = true;
    for (i, program) in gmemfuzz::Program::seeded(5, 16, &gmemfuzz_backends::Profile::host_6_18()).take(300).enumerate() {
        runner.run(&program).unwrap_or_else(|e| panic!("program #{i}: {e}\nprogram: {:?}", program.ops));
    }
    assert!(runner.stats.unreached().len() <= 1, "op kinds that never reached KVM: {:?}", runner.stats.unreached());
}
