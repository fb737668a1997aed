//! The simulation agrees with the model on hand-written programs, and the design-difference
//! program behaves as documented.

use super::*;
use crate::op::{AccessKind, FdArg, GmemId, Width, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, PAGE_SIZE};
use crate::outcome::AccessResult;
use crate::Access;

const GPA: u64 = crate::op::layout::WINDOW_GPA;

fn access(kind: AccessKind) -> Op {
    Op::Guest { accesses: vec![Access { gpa: GPA, width: Width::W8, kind }] }
}

/// The design-difference program of the module doc, up to (not including) the punch.
fn private_then_unbind() -> Vec<Op> {
    vec![
        Op::CreateGmem { size: PAGE_SIZE, flags: 0 },
        Op::Bind { slot: 2, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(GmemId(0)), gpa: GPA, size: PAGE_SIZE, offset: 0 },
        Op::SetAttributes { gpa: GPA, size: PAGE_SIZE, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE },
        access(AccessKind::Write(0x1234)),
        Op::Unbind { slot: 2 },
    ]
}

fn run(sim: &mut SimBackend, ops: &[Op]) -> Vec<Outcome> {
    let mut model = Model::new(sim.profile().clone());
    ops.iter()
        .map(|op| {
            let expected = model.apply(op).unwrap();
            let actual = sim.apply(op).unwrap();
            assert_eq!(expected, actual, "{op:?}");
            actual
        })
        .collect()
}

#[test]
fn sim_difference_program_is_clean_on_both_platforms() {
    for mut sim in [SimBackend::tdx(Profile::sw_protected_6_12(), None), SimBackend::snp(Profile::sw_protected_6_12(), None)] {
        let mut ops = private_then_unbind();
        ops.push(Op::Punch { gmem: GmemId(0), offset: 0, len: PAGE_SIZE });
        run(&mut sim, &ops);
        assert_eq!(sim.invariant_violation(), None);
        assert!(sim.stage2().is_empty());
    }
}

#[test]
fn sim_huge_skip_breaks_snp_at_release() {
    let mut sim = SimBackend::snp(Profile::sw_protected_6_12(), Some(InjectedBug::HugeRangeSkipsCleanup));
    let mut ops = private_then_unbind();
    ops[0] = Op::CreateGmem { size: HUGE_PAGES * PAGE_SIZE, flags: 0 };
    ops.push(Op::CloseGmem { gmem: GmemId(0) });
    run(&mut sim, &ops);
    let v = sim.invariant_violation().expect("RMP-private page freed");
    assert!(matches!(v.violation, crate::sim::Violation::RmpFreedPrivate { .. }), "{v}");
}

#[test]
fn sim_missed_punch_invalidation_reads_freed_page() {
    let mut sim = SimBackend::tdx(Profile::sw_protected_6_12(), Some(InjectedBug::PunchSkipsInvalidation));
    let mut ops = private_then_unbind();
    ops.pop();
    ops.push(Op::Punch { gmem: GmemId(0), offset: 0, len: PAGE_SIZE });
    run(&mut sim, &ops);
    assert!(sim.invariant_violation().is_some());
    let read = sim.apply(&access(AccessKind::Read)).unwrap();
    assert_eq!(read, Outcome::Guest(vec![AccessResult::Read(0x1234)]), "stale content of the freed PFN");
}

#[test]
fn sim_zero_on_reaccept_loses_private_content() {
    let tdx = TdxLike::zeroing_on_reaccept();
    let mut sim = SimBackend::new(Profile::sw_protected_6_12(), Box::new(tdx), None);
    let mut ops = private_then_unbind();
    ops.pop();
    for op in &ops {
        sim.apply(op).unwrap();
    }
    for attributes in [0, KVM_MEMORY_ATTRIBUTE_PRIVATE] {
        sim.apply(&Op::SetAttributes { gpa: GPA, size: PAGE_SIZE, attributes }).unwrap();
    }
    let read = sim.apply(&access(AccessKind::Read)).unwrap();
    assert_eq!(read, Outcome::Guest(vec![AccessResult::Read(0)]));
    assert_eq!(sim.invariant_violation(), None);
}

/// One fault routing (`Model::route`): with SMM's second address space, a slot there does
/// not serve the vCPU in the sim either (the sim used to look in every address space).
#[test]
fn sim_routes_guest_accesses_through_address_space_0_only() {
    let profile = Profile { address_spaces: 2, ..Profile::host_6_18() };
    let slot = crate::op::layout::FIRST_PROGRAM_SLOT;
    for mut sim in [SimBackend::tdx(profile.clone(), None), SimBackend::snp(profile.clone(), None)] {
        let ops = [
            Op::Bind { slot: (1 << 16) | slot, flags: 0, fd: FdArg::Invalid, gpa: GPA, size: PAGE_SIZE, offset: 0 },
            access(AccessKind::Write(0x55)),
            access(AccessKind::Read),
        ];
        let outcomes = run(&mut sim, &ops);
        assert_eq!(outcomes[2], Outcome::Guest(vec![AccessResult::Mmio]));
        assert!(sim.stage2().is_empty(), "nothing mapped for the guest");
        assert_eq!(sim.invariant_violation(), None);
    }
}
