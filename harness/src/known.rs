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

/// A kernel splat gmemfuzz has already found and written up, matched by value: the kind of
/// report, the function it names in its first line, and a function on its call trace.
/// The fuzzing loop counts it (`known`) and goes on; the lane does not report it again.
pub struct KnownSplat {
    pub name: &'static str,
    /// Where it is written up, with a reproducer.
    pub reference: &'static str,
    kind: &'static str,
    /// `at FUNCTION+` in the report's first line (the line number moves between kernels).
    at: &'static str,
    /// A function the call trace passes through.
    via: &'static str,
}

pub const KNOWN_SPLATS: &[KnownSplat] = &[
    // Linux 7.2.13 and 7.3-rc7: turning dirty logging off on a plain (non-guest_memfd) slot
    // whose 2 MiB range is private by attributes makes recover_huge_pages_range() ask
    // kvm_mmu_max_mapping_level() about a private GFN without a fault, which reaches
    // kvm_gmem_max_mapping_level()'s WARN_ONCE("Get pfn+order from guest_memfd").
    KnownSplat {
        name: "recover-huge-pages-private-plain-slot",
        reference: "docs/findings/recover-huge-pages-private-plain-slot.md",
        kind: "WARN",
        at: "at kvm_mmu_max_mapping_level+",
        via: "recover_huge_pages_range",
    },
];

/// The known splat this report is, if any.
pub fn classify_splat(splat: &crate::splat::Splat) -> Option<&'static KnownSplat> {
    KNOWN_SPLATS.iter().find(|k| splat.kind == k.kind && splat.headline().contains(k.at) && splat.excerpt.contains(k.via))
}

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

    /// The report as the 7.2.13 lane's console showed it (timestamps kept, registers cut).
    const RECOVER_WARN: &str = "\
[  454.454725] Get pfn+order from guest_memfd
[  454.455603] WARNING: arch/x86/kvm/mmu/mmu.c:3391 at kvm_mmu_max_mapping_level+0x1cf/0x4e0, CPU#0: gmemfuzz/51
[  454.466372] CPU: 0 UID: 0 PID: 51 Comm: gmemfuzz Not tainted 7.2.13 #1 PREEMPT(lazy)
[  454.470648] RIP: 0010:kvm_mmu_max_mapping_level+0x1cf/0x4e0
[  454.488706] Call Trace:
[  454.489963]  recover_huge_pages_range+0x344/0x480
[  454.491710]  kvm_tdp_mmu_recover_huge_pages+0x95/0xb0
[  454.492984]  kvm_mmu_recover_huge_pages+0x515/0x540
[  454.498961]  kvm_arch_commit_memory_region+0x315/0x350
[  454.528950]  </TASK>
[  454.529838] ---[ end trace 0000000000000000 ]---
";

    #[test]
    fn the_recover_huge_pages_warn_is_known_by_its_function_and_caller() {
        use super::classify_splat;
        let splats = crate::splat::scan(RECOVER_WARN);
        assert_eq!(splats.len(), 1, "{splats:?}");
        assert_eq!(classify_splat(&splats[0]).map(|k| k.name), Some("recover-huge-pages-private-plain-slot"));
        // The same WARN reached from a fault (not recovery), or another WARN in the
        // function, is not this bug.
        let from_fault = RECOVER_WARN.replace("recover_huge_pages_range", "kvm_tdp_page_fault");
        assert_eq!(classify_splat(&crate::splat::scan(&from_fault)[0]).map(|k| k.name), None);
        let elsewhere = RECOVER_WARN.replace("at kvm_mmu_max_mapping_level+", "at kvm_mmu_hugepage_adjust+");
        assert_eq!(classify_splat(&crate::splat::scan(&elsewhere)[0]).map(|k| k.name), None);
    }
}
