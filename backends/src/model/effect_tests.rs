//! What the model tells an op did (`Model::predict`): the effects the sim follows and the
//! known-bug filter matches, each only where the op did it.

use super::*;
use crate::op::{layout, Access, AccessKind, FdArg, Width, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_READONLY};
use crate::outcome::{AccessResult, Errno};

const P: u64 = PAGE_SIZE;
const SLOT: u32 = layout::FIRST_PROGRAM_SLOT;
const GPA: u64 = layout::WINDOW_GPA;
const G0: GmemId = GmemId(0);

fn told(model: &mut Model, op: Op) -> (Outcome, Vec<Effect>) {
    let Prediction { outcome, effects } = model.predict(&op);
    model.check_invariants().unwrap();
    (outcome, effects)
}

fn read(gpa: u64) -> Op {
    Op::Guest { accesses: vec![Access { gpa, width: Width::W4, kind: AccessKind::Read }] }
}

fn plain_slot(slot: u32, gpa: u64, size: u64, flags: u32) -> Op {
    Op::Bind { slot, flags, fd: FdArg::Invalid, gpa, size, offset: 0 }
}

#[test]
fn a_punch_tells_the_range_it_freed_and_a_refused_one_nothing() {
    let mut m = Model::new(Profile::host_6_18());
    assert_eq!(told(&mut m, Op::CreateGmem { size: 4 * P, flags: 0 }).1, vec![]);
    let allocate = Op::Allocate { gmem: G0, mode: crate::abi::falloc::KEEP_SIZE, offset: 0, len: 4 * P };
    assert_eq!(told(&mut m, allocate), (Outcome::Ok, vec![Effect::Allocated { gmem: G0, first: 0, end: 4 }]));
    let punch = Op::Punch { gmem: G0, offset: P, len: 2 * P };
    assert_eq!(told(&mut m, punch), (Outcome::Ok, vec![Effect::Punched { gmem: G0, first: 1, end: 3 }]));
    assert!(!m.gmem(G0).unwrap().pages.contains(1) && m.gmem(G0).unwrap().pages.contains(3));
    // Unaligned: refused before any page is touched.
    assert_eq!(told(&mut m, Op::Punch { gmem: G0, offset: 8, len: P }), (Outcome::Err(Errno::EINVAL), vec![]));
}

#[test]
fn an_unbind_tells_the_slot_it_deleted_and_a_move_the_range_it_left() {
    let mut m = Model::new(Profile::host_6_18());
    assert_eq!(told(&mut m, plain_slot(SLOT, GPA, 2 * P, 0)), (Outcome::Ok, vec![]));
    let moved = Op::ModifySlot { slot: SLOT, gpa: GPA + 16 * P, flags: 0 };
    let was = Effect::SlotChanged { slot: SLOT, base_gfn: GPA / P, npages: 2 };
    assert_eq!(told(&mut m, moved), (Outcome::Ok, vec![was]));
    // Nothing to change: nothing told.
    assert_eq!(told(&mut m, Op::ModifySlot { slot: SLOT, gpa: GPA + 16 * P, flags: 0 }), (Outcome::Ok, vec![]));
    let gone = Effect::SlotDeleted { slot: SLOT, base_gfn: GPA / P + 16, npages: 2 };
    assert_eq!(told(&mut m, Op::Unbind { slot: SLOT }), (Outcome::Ok, vec![gone]));
    assert_eq!(told(&mut m, plain_slot(SLOT, GPA, 0, 0)), (Outcome::Err(Errno::EINVAL), vec![]), "no slot left to delete");
    // A bind of size 0 deletes as an unbind does.
    told(&mut m, plain_slot(SLOT + 1, GPA, P, 0));
    let gone = Effect::SlotDeleted { slot: SLOT + 1, base_gfn: GPA / P, npages: 1 };
    assert_eq!(told(&mut m, plain_slot(SLOT + 1, GPA, 0, 0)), (Outcome::Ok, vec![gone]));
}

#[test]
fn the_last_reference_going_tells_the_release() {
    let mut m = Model::new(Profile::host_6_18());
    told(&mut m, Op::CreateGmem { size: P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED });
    told(&mut m, Op::Map { gmem: G0 });
    // The mapping still holds the file.
    assert_eq!(told(&mut m, Op::CloseGmem { gmem: G0 }), (Outcome::Ok, vec![]));
    let (outcome, effects) = told(&mut m, Op::Unmap { gmem: G0 });
    assert_eq!((outcome, effects), (Outcome::Ok, vec![Effect::MappingGone { gmem: G0 }, Effect::FileReleased { gmem: G0 }]));
    assert_eq!(told(&mut m, Op::DestroyVm), (Outcome::Ok, vec![Effect::VmDestroyed]));
}

#[test]
fn only_an_access_without_a_memslot_tells_an_mmio_exit() {
    let mut m = Model::new(Profile::host_6_18());
    let gfn = GPA / P;
    assert_eq!(told(&mut m, read(GPA)), (Outcome::Guest(vec![AccessResult::Mmio]), vec![Effect::MmioExit { gfn }]));
    // A read-only slot: a store exits as MMIO too, but a memslot holds the GFN.
    told(&mut m, plain_slot(SLOT, GPA, P, KVM_MEM_READONLY));
    let write = Op::Guest { accesses: vec![Access { gpa: GPA, width: Width::W4, kind: AccessKind::Write(1) }] };
    assert_eq!(told(&mut m, write), (Outcome::Guest(vec![AccessResult::Mmio]), vec![]));
    let touched = Effect::Touched { access: 0, page: PageKey::Anon { slot: SLOT, index: 0 }, offset: 8 };
    assert_eq!(told(&mut m, read(GPA + 8)), (Outcome::Guest(vec![AccessResult::Read(0)]), vec![touched]));
}

/// The vCPU's accesses find their memslot in address space 0 only (`Model::route`), even
/// where address space 1 has one at the GFN.
#[test]
fn a_slot_of_address_space_1_routes_no_guest_access() {
    let mut m = Model::new(Profile { address_spaces: 2, ..Profile::host_6_18() });
    told(&mut m, plain_slot((1 << 16) | SLOT, GPA, P, 0));
    assert_eq!(m.route(GPA / P, false, false), Route::Mmio { no_slot: true });
    told(&mut m, plain_slot(SLOT, GPA, P, 0));
    assert_eq!(m.route(GPA / P, true, false), Route::Anon { slot: SLOT, index: 0, readonly: false });
}
