//! The runner checks something: deliberately wrong answers are flagged, with the right kind.

mod common;

use gmemfuzz::oracle::DivergenceKind;
use gmemfuzz::{scenarios, RunError, Runner};
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, HarnessError, Observation, Op, OpKind, Outcome, Probe, Profile};

/// The model with one deliberate bug: ops of one kind report success but do nothing.
struct SkipsOps {
    inner: Model,
    skipped: OpKind,
}

impl Backend for SkipsOps {
    fn name(&self) -> &str {
        "buggy-model"
    }
    fn profile(&self) -> &Profile {
        self.inner.profile()
    }
    fn reset(&mut self) -> Result<(), HarnessError> {
        self.inner.reset()
    }
    fn apply(&mut self, op: &Op) -> Result<Outcome, HarnessError> {
        if op.kind() == self.skipped {
            return Ok(Outcome::Ok);
        }
        self.inner.apply(op)
    }
    fn observe(&mut self, probes: &[Probe]) -> Result<Vec<Option<Observation>>, HarnessError> {
        self.inner.observe(probes)
    }
}

fn divergence_kind<B: Backend>(backend: B, scenario: &str) -> DivergenceKind {
    let program = scenarios::all().into_iter().find(|s| s.name == scenario).unwrap().program();
    match Runner::new(backend).run(&program) {
        Err(RunError::Divergence(d)) => {
            eprintln!("{d}");
            d.kind
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
}

#[test]
fn skipped_punch_is_a_stale_read() {
    let buggy = SkipsOps { inner: Model::new(Profile::host_6_18()), skipped: OpKind::Punch };
    assert_eq!(divergence_kind(buggy, "punch_hole_then_read_zero"), DivergenceKind::StaleRead);
}

#[test]
fn skipped_unbind_is_flagged() {
    let buggy = SkipsOps { inner: Model::new(Profile::host_6_18()), skipped: OpKind::Unbind };
    // The guest still reaches memory through the slot that should be gone.
    assert_eq!(divergence_kind(buggy, "guest_memfd_slots_are_immutable"), DivergenceKind::UnexpectedExit);
}

#[test]
fn accepted_bad_flags_are_a_result_mismatch() {
    let buggy = SkipsOps { inner: Model::new(Profile::host_6_18()), skipped: OpKind::CreateGmem };
    assert_eq!(divergence_kind(buggy, "invalid_sizes"), DivergenceKind::ResultMismatch);
}

/// Real KVM standing in for a kernel that silently skips punch-hole: caught at once.
#[test]
fn kvm_that_skips_punch_hole_is_caught() {
    let Some(mut backend) = common::kvm_or_skip("kvm_that_skips_punch_hole_is_caught") else { return };
    backend.skip_silently(OpKind::Punch);
    assert_eq!(divergence_kind(backend, "punch_hole_then_read_zero"), DivergenceKind::StaleRead);
}
