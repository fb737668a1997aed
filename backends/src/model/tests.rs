//! The model's rules where it used to give up on a whole program: slots up to the kernel's
//! address limit, host accesses across a page, large attribute ranges, many files.

use super::*;
use crate::op::{
    layout, Access, AccessKind, FdArg, Width, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEMORY_ATTRIBUTE_PRIVATE,
    KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_MEM_GUEST_MEMFD,
};
use crate::outcome::{AccessResult, Errno, SkipReason};
use crate::profile::max_gfn_for_bits;

const P: u64 = PAGE_SIZE;
const SLOT: u32 = layout::FIRST_PROGRAM_SLOT;

fn run(model: &mut Model, op: Op) -> Outcome {
    let outcome = model.apply(&op).unwrap();
    model.check_invariants().unwrap();
    outcome
}

fn plain_slot(slot: u32, gpa: u64, size: u64) -> Op {
    Op::Bind { slot, flags: 0, fd: FdArg::Invalid, gpa, size, offset: 0 }
}

fn gmem_slot(slot: u32, gpa: u64, size: u64) -> Op {
    Op::Bind { slot, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(GmemId(0)), gpa, size, offset: 0 }
}

fn read(gpa: u64) -> Op {
    Op::Guest { accesses: vec![Access { gpa, width: Width::W8, kind: AccessKind::Read }] }
}

/// A host with a 36-bit MAXPHYADDR and TDP: kvm_mmu_max_gfn() = 2^24 - 1.
fn small_host() -> Profile {
    Profile { max_gfn: max_gfn_for_bits(36), ..Profile::host_6_18() }
}

#[test]
fn a_slot_is_accepted_up_to_the_probed_max_gfn_and_refused_past_it() {
    let max = small_host().max_gfn;
    let mut model = Model::new(small_host());
    // Ends exactly at the last GFN: accepted; one page further: EINVAL.
    assert_eq!(run(&mut model, plain_slot(SLOT, (max - 1) * P, 2 * P)), Outcome::Ok);
    assert_eq!(run(&mut model, Op::Unbind { slot: SLOT }), Outcome::Ok);
    assert_eq!(run(&mut model, plain_slot(SLOT, max * P, 2 * P)), Outcome::Err(Errno::EINVAL));
    assert_eq!(run(&mut model, plain_slot(SLOT, (max + 1) * P, P)), Outcome::Err(Errno::EINVAL));
    assert_eq!(run(&mut model, plain_slot(SLOT, (max - 1) * P, 2 * P)), Outcome::Ok);
    // Overlap (EEXIST) is checked before the address limit.
    assert_eq!(run(&mut model, plain_slot(SLOT + 2, (max - 1) * P, 4 * P)), Outcome::Err(Errno::EEXIST));
    // A move past the limit is refused and leaves the slot where it was.
    assert_eq!(run(&mut model, Op::ModifySlot { slot: SLOT, gpa: max * P, flags: 0 }), Outcome::Err(Errno::EINVAL));
    assert_eq!(model.slots()[&SLOT].base_gfn, max - 1);
    assert_eq!(run(&mut model, Op::ModifySlot { slot: SLOT, gpa: (max - 3) * P, flags: 0 }), Outcome::Ok);
    // The same slot on the assumed 52-bit host is accepted.
    let mut wide = Model::new(Profile::host_6_18());
    assert_eq!(run(&mut wide, plain_slot(SLOT + 1, max * P, 2 * P)), Outcome::Ok);
}

#[test]
fn a_slot_beyond_4_gib_is_bound_and_probed_from_the_host_side_only() {
    let flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
    let mut model = Model::new(Profile::host_6_18());
    let high = 1u64 << 33;
    assert_eq!(run(&mut model, Op::CreateGmem { size: 2 * P, flags }), Outcome::Ok);
    assert_eq!(run(&mut model, gmem_slot(SLOT, high, 2 * P)), Outcome::Ok);
    assert_eq!(run(&mut model, plain_slot(SLOT + 1, layout::WINDOW_GPA, P)), Outcome::Ok);
    // The 32-bit guest cannot reach it; its anonymous side is still compared.
    assert_eq!(run(&mut model, read(high)), Outcome::Skipped(SkipReason::UnreachableGpa));
    let probes = model.probes();
    let guest: Vec<u64> = probes.iter().filter_map(|p| if let Probe::GuestPage { gpa, .. } = p { Some(*gpa) } else { None }).collect();
    assert_eq!(guest, vec![layout::WINDOW_GPA], "guest probes only below 4 GiB");
    assert!(probes.contains(&Probe::AnonPage { slot: SLOT, page: 1 }));
    // Its binding is live: a second slot over the same file range is refused.
    assert_eq!(run(&mut model, gmem_slot(SLOT + 2, high + 4 * P, P)), Outcome::Err(Errno::EINVAL));
}

#[test]
fn a_host_access_across_a_page_completes_on_both_pages() {
    let mut model = Model::new(Profile::host_6_18());
    let gmem = GmemId(0);
    assert_eq!(run(&mut model, Op::CreateGmem { size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED }), Outcome::Ok);
    assert_eq!(run(&mut model, Op::Map { gmem }), Outcome::Ok);
    let value = 0x1122_3344_5566_7788;
    assert_eq!(run(&mut model, Op::HostWrite { gmem, offset: P - 4, width: Width::W8, value }), Outcome::Ok);
    // Little-endian: the low half on the first page, the high half on the second.
    assert_eq!(run(&mut model, Op::HostRead { gmem, offset: P - 4, width: Width::W4 }), Outcome::Value(0x5566_7788));
    assert_eq!(run(&mut model, Op::HostRead { gmem, offset: P, width: Width::W4 }), Outcome::Value(0x1122_3344));
    assert_eq!(run(&mut model, Op::HostRead { gmem, offset: P - 2, width: Width::W4 }), Outcome::Value(0x3344_5566));
    assert_eq!(run(&mut model, Op::HostRead { gmem, offset: P - 4, width: Width::W8 }), Outcome::Value(value));
    // Both pages were faulted in: resident and compared.
    assert_eq!(model.observe(&[Probe::Residency { gmem }]).unwrap(), vec![Some(Observation::Residency(vec![true, true]))]);
    let history = model.history().events(&PageKey::Gmem { gmem: 0, index: 1 });
    assert!(matches!(history.last(), Some((_, PageEvent::Written { offset: 0, width: 4, new: 0x1122_3344, .. }))), "{history:?}");
}

#[test]
fn a_host_access_across_a_page_of_a_file_without_init_shared_is_sigbus_and_faults_nothing() {
    let mut model = Model::new(Profile::host_6_18());
    let gmem = GmemId(0);
    assert_eq!(run(&mut model, Op::CreateGmem { size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP }), Outcome::Ok);
    assert_eq!(run(&mut model, Op::Map { gmem }), Outcome::Ok);
    assert_eq!(run(&mut model, Op::HostWrite { gmem, offset: P - 1, width: Width::W2, value: 7 }), Outcome::Sigbus);
    assert_eq!(model.observe(&[Probe::Residency { gmem }]).unwrap(), vec![Some(Observation::Residency(vec![false, false]))]);
}

#[test]
fn an_attribute_range_of_2_pow_21_pages_is_modelled_and_guest_accesses_follow_it() {
    let mut model = Model::new(Profile::sw_protected_6_12());
    let window = layout::WINDOW_GPA;
    let big = (1u64 << 21) * P;
    assert_eq!(run(&mut model, Op::CreateGmem { size: 4 * P, flags: 0 }), Outcome::Ok);
    assert_eq!(run(&mut model, gmem_slot(SLOT, window, 4 * P)), Outcome::Ok);
    assert_eq!(run(&mut model, Op::SetAttributes { gpa: window, size: big, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }), Outcome::Ok);
    // Inside the slot: the guest_memfd page (zero). Past the slot, still in the range, no
    // memslot: the private memory-fault exit.
    assert_eq!(run(&mut model, read(window + 8)), Outcome::Guest(vec![AccessResult::Read(0)]));
    let past = window + 64 * P;
    let fault = AccessResult::MemoryFault { gpa: past, size: P, flags: KVM_MEMORY_EXIT_FLAG_PRIVATE };
    assert_eq!(run(&mut model, read(past)), Outcome::Guest(vec![fault]));
    // The last GFN of the range is private, the next one is not.
    assert!(model.is_private_gfn(window / P + (1 << 21) - 1));
    assert!(!model.is_private_gfn(window / P + (1 << 21)));
    // Making a middle page shared splits the range.
    assert_eq!(run(&mut model, Op::SetAttributes { gpa: past, size: P, attributes: 0 }), Outcome::Ok);
    assert_eq!(run(&mut model, read(past)), Outcome::Guest(vec![AccessResult::Mmio]));
    assert!(model.is_private_gfn(past / P + 1));
}

#[test]
fn a_huge_attribute_range_is_a_no_op_where_nothing_changes_and_too_large_otherwise() {
    let mut model = Model::new(Profile::sw_protected_6_12());
    let (base, huge) = (1u64 << 32, 1u64 << 63);
    // Nothing is private: "Nothing to do if the entire range as the desired attributes."
    assert_eq!(run(&mut model, Op::SetAttributes { gpa: base, size: huge, attributes: 0 }), Outcome::Ok);
    // Making 2^51 GFNs private would reserve an xarray entry for each: not sent.
    let private = KVM_MEMORY_ATTRIBUTE_PRIVATE;
    assert_eq!(run(&mut model, Op::SetAttributes { gpa: base, size: huge, attributes: private }), Outcome::Skipped(SkipReason::TooLarge));
    assert_eq!(run(&mut model, Op::SetAttributes { gpa: base << 8, size: P, attributes: private }), Outcome::Ok);
    assert_eq!(run(&mut model, Op::SetAttributes { gpa: base, size: huge, attributes: 0 }), Outcome::Skipped(SkipReason::TooLarge));
    assert!(model.is_private_gfn((base << 8) / P));
}

#[test]
fn attribute_ranges_split_merge_and_answer_uniformity() {
    let mut ranges = AttributeRanges::default();
    ranges.set(10, 20, 8);
    ranges.set(14, 16, 0);
    assert_eq!((ranges.get(13), ranges.get(14), ranges.get(15), ranges.get(16), ranges.get(20)), (8, 0, 0, 8, 0));
    assert!(ranges.uniform(10, 14, 8) && ranges.uniform(16, 20, 8) && ranges.uniform(14, 16, 0));
    assert!(!ranges.uniform(10, 20, 8) && !ranges.uniform(12, 18, 0) && !ranges.uniform(18, 21, 8));
    ranges.set(0, 100, 0);
    assert!(ranges.is_empty());
}

#[test]
fn files_past_the_256th_are_made_but_never_named() {
    let mut model = Model::new(Profile::host_6_18());
    for _ in 0..300 {
        assert_eq!(run(&mut model, Op::CreateGmem { size: P, flags: GUEST_MEMFD_FLAG_MMAP }), Outcome::Ok);
    }
    assert_eq!(model.gmem_count(), 300);
    assert_eq!(run(&mut model, Op::Map { gmem: GmemId(255) }), Outcome::Ok);
    // One residency probe per nameable file (g255 through its mapping, the others through a
    // mapping made for the probe: their fds are open); the unnameable files add none (and
    // none wraps to g0..).
    let each: Vec<Probe> = (0..=255u8).map(|g| Probe::Residency { gmem: GmemId(g) }).collect();
    assert_eq!(model.probes(), each);
}

/// With SMM's second address space (a VM without private memory on a kernel with
/// CONFIG_KVM_SMM), slots overlap only within one space and the guest sees space 0 alone.
#[test]
fn a_second_address_space_has_its_own_overlaps_and_is_not_the_guests() {
    let mut model = Model::new(Profile { address_spaces: 2, ..Profile::host_6_18() });
    let smm = (1 << 16) | SLOT;
    let gpa = layout::WINDOW_GPA;
    assert_eq!(run(&mut model, plain_slot(SLOT, gpa, 2 * P)), Outcome::Ok);
    // The same GPAs in address space 1: no overlap; the harness's code GPA too.
    assert_eq!(run(&mut model, plain_slot(smm, gpa, P)), Outcome::Ok);
    assert_eq!(run(&mut model, plain_slot(smm + 1, layout::CODE_GPA, P)), Outcome::Ok);
    assert_eq!(run(&mut model, plain_slot(smm + 2, gpa + P, P)), Outcome::Ok);
    assert_eq!(run(&mut model, plain_slot(smm + 3, gpa, P)), Outcome::Err(Errno::EEXIST));
    // The guest writes its own slot (space 0), not the SMM one.
    let write = Op::Guest { accesses: vec![Access { gpa, width: Width::W8, kind: AccessKind::Write(7) }] };
    assert_eq!(run(&mut model, write), Outcome::Guest(vec![AccessResult::Wrote]));
    assert!(model.slots()[&SLOT].anon.contains_key(&0) && model.slots()[&smm].anon.is_empty());
    // Address space 2 never exists on x86.
    assert_eq!(run(&mut model, plain_slot((2 << 16) | SLOT, gpa, P)), Outcome::Err(Errno::EINVAL));
}

/// 7.2 on VM type 1 (its code, `Profile::sw_protected_7_2`): a file with MMAP makes a
/// guest_memfd-only slot; a second binding of its range is EEXIST.
#[test]
fn on_7_2_an_mmap_file_makes_a_gmem_only_slot() {
    let mut model = Model::new(Profile::sw_protected_7_2());
    let gpa = layout::WINDOW_GPA;
    assert_eq!(
        run(&mut model, Op::CreateGmem { size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED }),
        Outcome::Err(Errno::EINVAL)
    );
    assert_eq!(run(&mut model, Op::CreateGmem { size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP }), Outcome::Ok);
    let bind = |slot, gpa| Op::Bind { slot, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(GmemId(1)), gpa, size: P, offset: 0 };
    assert_eq!(run(&mut model, bind(SLOT, gpa)), Outcome::Ok);
    assert!(model.slots()[&SLOT].gmem_only);
    assert_eq!(run(&mut model, bind(SLOT + 1, gpa + 16 * P)), Outcome::Err(Errno::EEXIST));
    let write = Op::Guest { accesses: vec![Access { gpa, width: Width::W8, kind: AccessKind::Write(9) }] };
    assert_eq!(run(&mut model, write), Outcome::Guest(vec![AccessResult::Wrote]));
    assert!(model.gmem(GmemId(1)).unwrap().pages.contains(0), "a shared write lands in the file");
}

/// Every op kind reaches a rule (`Model::apply_one` asks each rule file in turn), on each
/// assumed profile, with the VM alive and after it is gone.
#[test]
fn every_op_kind_has_a_rule() {
    for profile in [Profile::host_6_18(), Profile::sw_protected_6_12(), Profile::sw_protected_7_2()] {
        let mut model = Model::new(profile);
        for op in crate::op::one_of_each() {
            let _ = model.predict(&op);
        }
        let _ = model.predict(&Op::Check);
    }
}

/// The software platform's reverse map (`platform.rs`): a private fault assigns the page to
/// its GFN (again after a rebinding elsewhere), a guest probe's fault too; punch-hole and
/// release reclaim; shared accesses and files with MMAP (guest_memfd-only slots) never assign.
#[test]
fn the_platform_map_follows_private_faults_punches_and_releases() {
    let mut model = Model::new(Profile { platform_map: true, ..Profile::sw_protected_7_2() });
    let (gpa, gfn) = (layout::WINDOW_GPA, layout::WINDOW_GPA / P);
    let map = |m: &mut Model| m.observe(&[Probe::PlatformMap]).unwrap().remove(0);
    let gfns = |g: Vec<u64>| Some(Observation::PlatformMap(g));
    assert_eq!(run(&mut model, Op::CreateGmem { size: 4 * P, flags: 0 }), Outcome::Ok);
    assert_eq!(run(&mut model, gmem_slot(SLOT, gpa, 4 * P)), Outcome::Ok);
    // Shared: the fault goes through userspace_addr, not guest_memfd.
    assert_eq!(run(&mut model, read(gpa)), Outcome::Guest(vec![AccessResult::Read(0)]));
    assert_eq!(map(&mut model), gfns(vec![]));
    assert_eq!(run(&mut model, Op::SetAttributes { gpa, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }), Outcome::Ok);
    assert_eq!(run(&mut model, read(gpa + 2 * P)), Outcome::Guest(vec![AccessResult::Read(0)]));
    assert_eq!(run(&mut model, Op::PreFault { gpa, size: P }), Outcome::Value(0));
    assert_eq!(map(&mut model), gfns(vec![gfn, gfn + 2]));
    // Conversions and unbinding leave it; a fault at the page's new GFN assigns it there.
    assert_eq!(run(&mut model, Op::SetAttributes { gpa, size: 4 * P, attributes: 0 }), Outcome::Ok);
    assert_eq!(run(&mut model, Op::Unbind { slot: SLOT }), Outcome::Ok);
    assert_eq!(map(&mut model), gfns(vec![gfn, gfn + 2]));
    let moved = gpa + 0x10_0000;
    assert_eq!(run(&mut model, gmem_slot(SLOT, moved, 4 * P)), Outcome::Ok);
    assert_eq!(run(&mut model, Op::SetAttributes { gpa: moved, size: 4 * P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }), Outcome::Ok);
    assert_eq!(run(&mut model, read(moved + 2 * P)), Outcome::Guest(vec![AccessResult::Read(0)]));
    assert_eq!(map(&mut model), gfns(vec![gfn, moved / P + 2]));
    // The probes ask the map first; a guest probe then faults page 1 in, which the next
    // round shows.
    let probes = model.probes();
    assert_eq!(probes.first(), Some(&Probe::PlatformMap));
    let answers = model.observe(&probes).unwrap();
    assert_eq!(answers[0], gfns(vec![gfn, moved / P + 2]));
    assert!(matches!(map(&mut model), Some(Observation::PlatformMap(g)) if g.contains(&(moved / P + 1))));
    // Punch-hole reclaims page 0; release reclaims the rest.
    assert_eq!(run(&mut model, Op::Punch { gmem: GmemId(0), offset: 0, len: P }), Outcome::Ok);
    assert!(!matches!(map(&mut model), Some(Observation::PlatformMap(g)) if g.contains(&gfn)));
    assert_eq!(run(&mut model, Op::CloseGmem { gmem: GmemId(0) }), Outcome::Ok);
    assert_eq!(map(&mut model), gfns(vec![]));
    // A file with MMAP makes a guest_memfd-only slot, which the platform does not track.
    assert_eq!(run(&mut model, Op::CreateGmem { size: P, flags: GUEST_MEMFD_FLAG_MMAP }), Outcome::Ok);
    let g1 =
        Op::Bind { slot: SLOT + 1, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(GmemId(1)), gpa: moved + 0x10_0000, size: P, offset: 0 };
    assert_eq!(run(&mut model, g1), Outcome::Ok);
    assert_eq!(
        run(&mut model, Op::SetAttributes { gpa: moved + 0x10_0000, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }),
        Outcome::Ok
    );
    assert_eq!(run(&mut model, read(moved + 0x10_0000)), Outcome::Guest(vec![AccessResult::Read(0)]));
    assert_eq!(map(&mut model), gfns(vec![]));
    // Without a kernel map, the runner is never asked to compare one.
    assert!(!Model::new(Profile::sw_protected_7_2()).probes().contains(&Probe::PlatformMap));
}

/// Debian's 6.12.118 checks a guest_memfd binding's range after x86's memslot checks
/// (`Profile::bound_range_late`): a bound page bound again past `max_gfn` is EINVAL there,
/// the bound-range errno where the range is checked first (7.2). Found by the lane on
/// 6.12.118 (a divergence at `bind ... gpa=0x8000000000000000`).
#[test]
fn where_the_bound_range_is_checked_late_an_address_past_max_gfn_is_einval_first() {
    let (gpa, past) = (layout::WINDOW_GPA, 0x8000_0000_0000_0000);
    for (late, errno) in [(false, Errno::EEXIST), (true, Errno::EINVAL)] {
        let profile = Profile { bound_range_late: late, bound_range_errno: Errno::EEXIST, ..Profile::sw_protected_6_12() };
        let mut model = Model::new(profile);
        assert_eq!(run(&mut model, Op::CreateGmem { size: 2 * P, flags: 0 }), Outcome::Ok);
        assert_eq!(run(&mut model, gmem_slot(SLOT, gpa, P)), Outcome::Ok);
        assert_eq!(run(&mut model, gmem_slot(SLOT + 1, past, P)), Outcome::Err(errno), "late {late}");
        // Within max_gfn both orders give the bound-range errno; a free page binds.
        assert_eq!(run(&mut model, gmem_slot(SLOT + 1, gpa + 16 * P, P)), Outcome::Err(Errno::EEXIST));
        let free =
            Op::Bind { slot: SLOT + 1, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(GmemId(0)), gpa: gpa + 16 * P, size: P, offset: P };
        assert_eq!(run(&mut model, free), Outcome::Ok);
    }
}
