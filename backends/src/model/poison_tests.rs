//! madvise(MADV_HWPOISON) on a guest_memfd mapping and what follows (`poison.rs`).

use super::*;
use crate::op::{layout, Access, AccessKind, FdArg, Width, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_GUEST_MEMFD};
use crate::outcome::{AccessResult, Errno};

const P: u64 = PAGE_SIZE;
const G: GmemId = GmemId(0);
const HWPOISON: u32 = libc::MADV_HWPOISON as u32;

fn run(model: &mut Model, op: Op) -> Outcome {
    let outcome = model.apply(&op).unwrap();
    model.check_invariants().unwrap();
    outcome
}

/// A kernel where MADV_HWPOISON reaches memory_failure() (7.2 type 0: INIT_SHARED, slots
/// guest_memfd-only), with a mapped two-page file of `flags`.
fn poisonable(flags: u64) -> Model {
    poisonable_on(flags, None)
}

fn poisonable_on(flags: u64, hwpoison_errno: Option<Errno>) -> Model {
    let profile = Profile { hwpoison_errno, gmem_only_slots: true, pre_fault_errno: None, ..Profile::host_6_18() };
    let mut model = Model::new(profile);
    assert_eq!(run(&mut model, Op::CreateGmem { size: 2 * P, flags }), Outcome::Ok);
    assert_eq!(run(&mut model, Op::Map { gmem: G }), Outcome::Ok);
    model
}

fn shared() -> Model {
    poisonable(GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED)
}

fn poison(model: &mut Model, offset: u64) -> Outcome {
    run(model, Op::Madvise { gmem: G, offset, len: P, advice: HWPOISON })
}

fn residency(model: &mut Model) -> Option<Observation> {
    model.observe(&[Probe::Residency { gmem: G }]).unwrap().remove(0)
}

#[test]
fn the_profile_decides_einval_eperm_or_memory_failure() {
    let flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
    let mut model = poisonable_on(flags, Some(Errno::EINVAL));
    // madvise_behavior_valid() comes before check_input_range(): even an empty range.
    assert_eq!(run(&mut model, Op::Madvise { gmem: G, offset: 0, len: 0, advice: HWPOISON }), Outcome::Err(Errno::EINVAL));
    let mut model = poisonable_on(flags, Some(Errno::EPERM));
    assert_eq!(run(&mut model, Op::Madvise { gmem: G, offset: 0, len: 0, advice: HWPOISON }), Outcome::Ok);
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EPERM));
    assert_eq!(residency(&mut model), Some(Observation::Residency(vec![false, false])));
}

#[test]
fn a_clean_page_is_ebusy_a_host_written_one_sigbus_and_a_poisoned_one_efault() {
    let mut model = shared();
    // The GUP faults the clean page in; memory_failure() fails it with EBUSY, no signal.
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EBUSY));
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EFAULT));
    assert_eq!(run(&mut model, Op::HostWrite { gmem: G, offset: P, width: Width::W1, value: 1 }), Outcome::Ok);
    assert_eq!(poison(&mut model, P), Outcome::Sigbus);
    assert_eq!(residency(&mut model), Some(Observation::Residency(vec![true, true])));
}

#[test]
fn a_file_without_init_shared_is_efault_and_nothing_is_poisoned() {
    let mut model = poisonable(GUEST_MEMFD_FLAG_MMAP);
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EFAULT));
    assert!(model.gmem(G).unwrap().poison.is_clear());
}

#[test]
fn host_accesses_and_probes_of_a_poisoned_page_are_sigbus() {
    let mut model = shared();
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EBUSY));
    assert_eq!(run(&mut model, Op::HostRead { gmem: G, offset: 8, width: Width::W8 }), Outcome::Sigbus);
    // Across the boundary onto the poisoned page: nothing stored on the first.
    let mut other = shared();
    assert_eq!(poison(&mut other, P), Outcome::Err(Errno::EBUSY));
    assert_eq!(run(&mut other, Op::HostWrite { gmem: G, offset: P - 4, width: Width::W8, value: !0 }), Outcome::Sigbus);
    assert_eq!(run(&mut other, Op::HostRead { gmem: G, offset: P - 4, width: Width::W4 }), Outcome::Value(0));
    assert_eq!(other.observe(&[Probe::HostPage { gmem: G, page: 1 }]).unwrap(), vec![Some(Observation::Sigbus)]);
    assert_eq!(
        run(&mut other, Op::Madvise { gmem: G, offset: 0, len: 2 * P, advice: libc::MADV_POPULATE_WRITE as u32 }),
        Outcome::Err(Errno::EHWPOISON)
    );
}

#[test]
fn a_punch_drops_the_folio_but_the_hwpoison_pte_stays_until_dontneed() {
    let mut model = shared();
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EBUSY));
    assert_eq!(run(&mut model, Op::Punch { gmem: G, offset: 0, len: P }), Outcome::Ok);
    // The hwpoison entry: still SIGBUS, and mincore() counts it.
    assert_eq!(residency(&mut model), Some(Observation::Residency(vec![true, false])));
    assert_eq!(run(&mut model, Op::HostRead { gmem: G, offset: 0, width: Width::W8 }), Outcome::Sigbus);
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EFAULT));
    let dontneed = Op::Madvise { gmem: G, offset: 0, len: P, advice: libc::MADV_DONTNEED as u32 };
    assert_eq!(run(&mut model, dontneed), Outcome::Ok);
    assert_eq!(residency(&mut model), Some(Observation::Residency(vec![false, false])));
    // A fresh page, clean: poisoning it again is EBUSY.
    assert_eq!(run(&mut model, Op::HostRead { gmem: G, offset: 0, width: Width::W8 }), Outcome::Value(0));
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EBUSY));
}

#[test]
fn a_new_mapping_still_meets_the_poisoned_folio() {
    let mut model = shared();
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EBUSY));
    assert_eq!(run(&mut model, Op::Unmap { gmem: G }), Outcome::Ok);
    assert_eq!(run(&mut model, Op::Map { gmem: G }), Outcome::Ok);
    assert_eq!(run(&mut model, Op::HostRead { gmem: G, offset: 0, width: Width::W8 }), Outcome::Sigbus);
}

#[test]
fn the_guest_faults_on_a_poisoned_page_with_ehwpoison_and_a_guest_write_leaves_sigbus_unknown() {
    let mut model = shared();
    let bind = Op::Bind {
        slot: layout::FIRST_PROGRAM_SLOT,
        flags: KVM_MEM_GUEST_MEMFD,
        fd: FdArg::Gmem(G),
        gpa: layout::WINDOW_GPA,
        size: 2 * P,
        offset: 0,
    };
    assert_eq!(run(&mut model, bind), Outcome::Ok);
    let write = Access { gpa: layout::WINDOW_GPA + P, width: Width::W8, kind: AccessKind::Write(3) };
    assert_eq!(run(&mut model, Op::Guest { accesses: vec![write] }), Outcome::Guest(vec![AccessResult::Wrote]));
    assert_eq!(poison(&mut model, P), Outcome::Unknown);
    assert_eq!(poison(&mut model, 0), Outcome::Err(Errno::EBUSY));
    let read = |gpa| Access { gpa, width: Width::W8, kind: AccessKind::Read };
    let fault = AccessResult::MemoryFault { gpa: layout::WINDOW_GPA, size: P, flags: 0 };
    assert_eq!(
        run(&mut model, Op::Guest { accesses: vec![read(layout::WINDOW_GPA), read(layout::WINDOW_GPA + P)] }),
        Outcome::Guest(vec![fault, AccessResult::NotRun])
    );
    assert_eq!(run(&mut model, Op::PreFault { gpa: layout::WINDOW_GPA, size: P }), Outcome::Err(Errno::EHWPOISON));
}
