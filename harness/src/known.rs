//! Kernel bugs gmemfuzz has already found and reported: a divergence that matches one is
//! counted (stats `known`) and ends the program quietly, so fuzzing goes on to new bugs.
//! `replay`, `minimize` and `c-repro` never filter: they show the divergence as it is.
//! The model is not bent to match: it keeps predicting what the kernel should do.

use gmemfuzz_backends::model::{MmioExits, Model};
use gmemfuzz_backends::op::{Op, KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_MEM_GUEST_MEMFD, PAGE_SIZE};
use gmemfuzz_backends::{AccessResult, Outcome};

use crate::oracle::{Divergence, DivergenceKind, Seen};

pub struct KnownBug {
    pub name: &'static str,
    /// Where it is written up, with a reproducer.
    pub reference: &'static str,
    /// Whether a divergence is the bug, from the state the model was in and the MMIO exits
    /// it told in the program so far (`Effect::MmioExit`).
    matches: fn(&Divergence, &Model, &MmioExits) -> bool,
}

/// Linux 6.12 (software-protected VMs, TDP MMU): a GFN that took an MMIO exit while it had no
/// memslot keeps its MMIO SPTE. After a guest_memfd slot is bound there (the SPTE's memslot
/// generation goes stale) and the GFN is made private (the attribute change zaps only
/// shadow-present SPTEs), the guest's access takes the reserved-bit path of
/// kvm_mmu_page_fault(), which never sets PFERR_PRIVATE_ACCESS; kvm_faultin_pfn() then sees
/// a shared fault on a private GFN and exits with KVM_EXIT_MEMORY_FAULT, flags 0. Where no
/// memslot was added (the SPTE's generation is current), handle_mmio_page_fault() emulates
/// the access: a private GFN without a memslot leaves as KVM_EXIT_MMIO instead of the
/// private memory-fault exit of kvm_handle_noslot_fault().
/// Matched where KVM may keep an MMIO SPTE for the GFN (`MmioExits::may_keep_mmio_spte`): the
/// model told an MMIO exit there, or a racing guest access touched it. By 7.2's
/// kvm_mmu_page_fault(), a sequential fault on a private GFN lacks PFERR_PRIVATE_ACCESS (and
/// is emulated) only on the reserved-bit path, i.e. through an MMIO SPTE: this bug, whichever
/// access made the SPTE.
fn stale_mmio_spte_on_private_gfn(d: &Divergence, model: &Model, mmio_exits: &MmioExits) -> bool {
    let Some(gpa) = d.gpa() else { return false };
    let gfn = gpa / PAGE_SIZE;
    let private_fault =
        |a: Option<AccessResult>| matches!(a, Some(AccessResult::MemoryFault { flags, .. }) if flags & KVM_MEMORY_EXIT_FLAG_PRIVATE != 0);
    let shared_fault = matches!(d.actual.access(), Some(AccessResult::MemoryFault { flags: 0, .. }));
    // A racing access: the model allows a set, of which a private fault (`Seen::OneOf`).
    let emulated = d.actual.access() == Some(AccessResult::Mmio) && d.expected.accesses().into_iter().any(|a| private_fault(Some(a)));
    d.kind == DivergenceKind::UnexpectedExit
        && (shared_fault || emulated)
        && model.is_private_gfn(gfn)
        && mmio_exits.may_keep_mmio_spte(gfn)
}

/// Linux 6.18: kvm_gmem_bind() checks `offset + size > i_size_read(inode)` in loff_t, so an
/// offset whose sum with the slot size passes LLONG_MAX wraps negative and the bind succeeds
/// past the end of the file (6.12 compares in u64 and refuses it).
fn gmem_bind_offset_signed_overflow(d: &Divergence, _: &Model, _: &MmioExits) -> bool {
    let Op::Bind { flags, size, offset, .. } = d.op else { return false };
    let wraps = (offset as i64) >= 0 && (offset as i64).checked_add(size as i64).is_none();
    d.kind == DivergenceKind::ResultMismatch && flags & KVM_MEM_GUEST_MEMFD != 0 && wraps && d.actual == Seen::Outcome(Outcome::Ok)
}

pub const KNOWN: &[KnownBug] = &[
    KnownBug {
        name: "stale-mmio-spte-on-private-gfn",
        reference: "corpus/lane/stale_mmio_spte_on_private_gfn.txt",
        matches: stale_mmio_spte_on_private_gfn,
    },
    KnownBug {
        name: "gmem-bind-offset-signed-overflow",
        reference: "docs/findings/gmem-bind-offset-signed-overflow.md",
        matches: gmem_bind_offset_signed_overflow,
    },
];

/// The known bug this divergence is, if any.
pub fn classify(d: &Divergence, model: &Model, mmio_exits: &MmioExits) -> Option<&'static KnownBug> {
    KNOWN.iter().find(|k| (k.matches)(d, model, mmio_exits))
}

#[cfg(test)]
mod tests {
    use gmemfuzz_backends::model::{MmioExits, Model, Prediction};
    use gmemfuzz_backends::op::{Access, AccessKind, Op, Width, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEMORY_EXIT_FLAG_PRIVATE};
    use gmemfuzz_backends::{AccessResult, Outcome, Profile};

    use crate::oracle::Context;

    /// The stale-MMIO-SPTE bug is matched on the MMIO exit the model told for the GFN (and
    /// the GFN being private now), not on any exit of another GFN.
    #[test]
    fn the_stale_mmio_spte_bug_is_matched_on_the_told_mmio_exit() {
        const GPA: u64 = 0x13c000;
        let read = Op::Guest { accesses: vec![Access { gpa: GPA, width: Width::W4, kind: AccessKind::Read }] };
        let mut model = Model::new(Profile::sw_protected_6_12());
        let mut exits = MmioExits::default();
        let Prediction { outcome, effects } = model.predict(&read);
        assert_eq!(outcome, Outcome::Guest(vec![AccessResult::Mmio]));
        exits.extend(&effects);
        assert!(exits.contains(GPA / 4096), "{effects:?}");
        let private = Op::SetAttributes { gpa: GPA, size: 0x1000, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE };
        assert_eq!(model.predict(&private).outcome, Outcome::Ok);
        let expected = model.predict(&read).outcome;
        let fault = |flags| AccessResult::MemoryFault { gpa: GPA, size: 0x1000, flags };
        assert_eq!(expected, Outcome::Guest(vec![fault(KVM_MEMORY_EXIT_FLAG_PRIVATE)]));
        let diverged = |exits: &MmioExits| {
            let ctx = Context { model: &model, mmio_exits: exits, effects: &[], op_index: 3, op: &read, backend: "test-double" };
            let d = ctx.compare_outcome(&expected, &Outcome::Guest(vec![fault(0)])).expect("a shared fault on a private GFN");
            super::classify(&d, &model, exits).map(|k| k.name)
        };
        assert_eq!(diverged(&exits), Some("stale-mmio-spte-on-private-gfn"));
        assert_eq!(diverged(&MmioExits::default()), None, "no MMIO exit told for the GFN: not the known bug");
        let mut elsewhere = MmioExits::default();
        elsewhere.insert(GPA / 4096 + 1);
        assert_eq!(diverged(&elsewhere), None);
        // A racing guest access of the GFN: KVM may have kept an MMIO SPTE no exit showed.
        let mut raced = MmioExits::default();
        raced.insert_raced(GPA / 4096);
        assert_eq!(diverged(&raced), Some("stale-mmio-spte-on-private-gfn"));
        let mut raced_elsewhere = MmioExits::default();
        raced_elsewhere.insert_raced(GPA / 4096 + 1);
        assert_eq!(diverged(&raced_elsewhere), None);
    }
}
