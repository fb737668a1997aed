//! The set-valued oracle: what a race allows, and that it refuses the rest.

use std::collections::BTreeSet;

use super::*;
use crate::backend::Backend;
use crate::group::Member;
use crate::model::Page;
use crate::op::{FdArg, GmemId, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_GUEST_MEMFD};
use crate::profile::Profile;

const G0: GmemId = GmemId(0);
const GPA: u64 = 0x10_0000;
const OLD: u64 = 0x1122_3344_5566_7788;

/// A mapped, bound file whose first qword holds `OLD`.
fn setup() -> Model {
    let mut m = Model::new(Profile::host_6_18());
    let ops = [
        Op::CreateGmem { size: 4 * PAGE_SIZE, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED },
        Op::Map { gmem: G0 },
        Op::Bind { slot: 2, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(G0), gpa: GPA, size: 4 * PAGE_SIZE, offset: 0 },
        Op::HostWrite { gmem: G0, offset: 0, width: Width::W8, value: OLD },
    ];
    for op in ops {
        let out = m.apply(&op).expect("the model never fails");
        assert!(matches!(out, Outcome::Ok), "{op:?}: {out}");
    }
    m
}

fn read8(gpa: u64) -> Op {
    Op::Guest { accesses: vec![Access { gpa, width: Width::W8, kind: AccessKind::Read }] }
}

fn punch_page0() -> Op {
    Op::Punch { gmem: G0, offset: 0, len: PAGE_SIZE }
}

fn group(members: Vec<(Op, u8)>) -> Group {
    Group { members: members.into_iter().map(|(op, repeat)| Member { op, repeat }).collect() }
}

fn reads(values: &[u64]) -> Vec<Outcome> {
    values.iter().map(|v| Outcome::Guest(vec![AccessResult::Read(*v)])).collect()
}

#[test]
fn a_read_racing_a_punch_sees_the_value_before_or_zero_and_once_zero_stays_zero() {
    let m = setup();
    let g = group(vec![(read8(GPA), 3), (punch_page0(), 1)]);
    for seen in [[OLD, OLD, OLD], [OLD, 0, 0], [0, 0, 0], [OLD, OLD, 0]] {
        let actual = Outcome::Group(vec![reads(&seen), vec![Outcome::Ok]]);
        let ends = m.race(&g, &actual).unwrap_or_else(|e| panic!("{seen:x?} must be allowed: {e:?}"));
        // The page is a hole at the end, or, where a read saw zero, a page faulted in during
        // the punch that its second pass did or did not remove (truncate_inode_pages_range()).
        let resident: BTreeSet<bool> = ends.iter().map(|e| e.gmem(G0).unwrap().pages.is_prepared(0)).collect();
        let want = if seen.contains(&0) { BTreeSet::from([false, true]) } else { BTreeSet::from([false]) };
        assert_eq!(resident, want, "{seen:x?}");
    }
    // After the punch, the old value cannot come back: a stale read.
    let stale = Outcome::Group(vec![reads(&[0, OLD, OLD]), vec![Outcome::Ok]]);
    let Err(RaceError::Mismatch(m)) = m.race(&g, &stale) else { panic!("a stale read must be refused") };
    assert_eq!((m.member, m.repetition, m.access), (0, 1, Some(0)));
    assert_eq!(m.allowed, vec![StepResult::Access(AccessResult::Read(0))], "after seeing zero, only zero");
}

#[test]
fn a_value_neither_before_nor_after_is_flagged_with_the_allowed_set() {
    let m = setup();
    let g = group(vec![(read8(GPA), 1), (punch_page0(), 1)]);
    let broken = Outcome::Group(vec![reads(&[0xdead]), vec![Outcome::Ok]]);
    let Err(RaceError::Mismatch(mm)) = m.race(&g, &broken) else { panic!("0xdead is no value of any order") };
    let allowed = &mm.allowed;
    let expected = [StepResult::Access(AccessResult::Read(0)), StepResult::Access(AccessResult::Read(OLD))];
    // The high half's step reports the whole access: old, zero, or old low half with zero high
    // half (the punch between the guest's two 4-byte loads).
    assert!(expected.iter().all(|e| allowed.contains(e)), "allowed {allowed:?}");
    assert!(allowed.contains(&StepResult::Access(AccessResult::Read(OLD & 0xffff_ffff))), "the torn read is allowed: {allowed:?}");
    assert_eq!(mm.actual, StepResult::Access(AccessResult::Read(0xdead)));
    // Shown in the order of their text, whatever order the search met them in.
    let shown: Vec<String> = allowed.iter().map(StepResult::to_string).collect();
    assert!(shown.is_sorted(), "{shown:?}");
    assert!(!mm.actual.is_exit() && !allowed.iter().any(StepResult::is_exit), "reads are no exits");
}

#[test]
fn an_eight_byte_read_tears_only_low_half_first() {
    let m = setup();
    let g = group(vec![(read8(GPA), 1), (punch_page0(), 1)]);
    let low_old = Outcome::Group(vec![reads(&[OLD & 0xffff_ffff]), vec![Outcome::Ok]]);
    assert!(m.race(&g, &low_old).is_ok(), "low half before the punch, high half after");
    let high_old = Outcome::Group(vec![reads(&[OLD & !0xffff_ffff]), vec![Outcome::Ok]]);
    assert!(m.race(&g, &high_old).is_err(), "the guest loads the low half first");
}

#[test]
fn a_write_racing_a_punch_leaves_two_possible_pages() {
    let m = setup();
    let write = Op::Guest { accesses: vec![Access { gpa: GPA + 8, width: Width::W4, kind: AccessKind::Write(7) }] };
    let g = group(vec![(write, 1), (punch_page0(), 1)]);
    let actual = Outcome::Group(vec![vec![Outcome::Guest(vec![AccessResult::Wrote])], vec![Outcome::Ok]]);
    let ends = m.race(&g, &actual).expect("both orders allowed");
    assert_eq!(ends.len(), 2, "written then punched (zero page), or punched then written (7 at 8)");
    let contents: BTreeSet<u64> = ends.iter().map(|e| e.gmem(G0).unwrap().pages.get(0).map_or(0, |p| p.load(8, 4))).collect();
    assert_eq!(contents, BTreeSet::from([0, 7]));
}

#[test]
fn deleting_the_slot_makes_a_racing_access_an_mmio_exit_or_not() {
    let m = setup();
    let g = group(vec![(read8(GPA), 2), (Op::Unbind { slot: 2 }, 1)]);
    let mmio = Outcome::Guest(vec![AccessResult::Mmio]);
    let ok = Outcome::Group(vec![vec![reads(&[OLD])[0].clone(), mmio.clone()], vec![Outcome::Ok]]);
    assert!(m.race(&g, &ok).is_ok());
    let back = Outcome::Group(vec![vec![mmio, reads(&[OLD])[0].clone()], vec![Outcome::Ok]]);
    assert!(m.race(&g, &back).is_err(), "a deleted slot does not come back");
}

#[test]
fn host_accesses_see_a_split_punch_page_by_page() {
    let mut m = setup();
    m.apply(&Op::HostWrite { gmem: G0, offset: PAGE_SIZE, width: Width::W8, value: 5 }).unwrap();
    let two_pages = Op::Punch { gmem: G0, offset: 0, len: 2 * PAGE_SIZE };
    let g = group(vec![
        (Op::HostRead { gmem: G0, offset: 0, width: Width::W8 }, 1),
        (Op::HostRead { gmem: G0, offset: PAGE_SIZE, width: Width::W8 }, 1),
        (two_pages, 1),
    ]);
    // Page 0 already truncated, page 1 not yet: allowed for the host.
    let actual = Outcome::Group(vec![vec![Outcome::Value(0)], vec![Outcome::Value(5)], vec![Outcome::Ok]]);
    assert!(m.race(&g, &actual).is_ok());
    let wrong = Outcome::Group(vec![vec![Outcome::Value(9)], vec![Outcome::Value(5)], vec![Outcome::Ok]]);
    assert!(m.race(&g, &wrong).is_err());
}

#[test]
fn the_order_apply_takes_is_one_the_search_finds() {
    let m = setup();
    let g = group(vec![(read8(GPA), 4), (punch_page0(), 2), (Op::HostWrite { gmem: G0, offset: 0, width: Width::W8, value: 3 }, 2)]);
    let mut in_order = m.clone();
    let actual = in_order.apply(&Op::Group(g.clone())).unwrap();
    let ends = m.race(&g, &actual).expect("the in-order run is an order");
    assert!(ends.iter().any(|e| e.fingerprint() == in_order.fingerprint()));
}

#[test]
fn an_invalid_group_is_skipped_alike() {
    let mut m = setup();
    let g = group(vec![(punch_page0(), 1)]);
    assert_eq!(m.apply(&Op::Group(g.clone())).unwrap(), Outcome::Skipped(SkipReason::InvalidGroup));
    assert!(m.race(&g, &Outcome::Skipped(SkipReason::InvalidGroup)).is_ok());
    assert!(m.race(&g, &Outcome::Group(vec![vec![Outcome::Ok]])).is_err());
}

#[test]
fn a_page_hash_follows_its_content_not_the_order_of_stores() {
    let (mut a, mut b) = (Page::zero(), Page::zero());
    a.store(8, 8, 5);
    a.store(12, 2, 0xbeef);
    b.store(12, 2, 0xbeef);
    b.store(8, 4, 5);
    assert_eq!(a.shared_bytes()[..], b.shared_bytes()[..]);
    assert_eq!(a.content_hash(), b.content_hash());
    b.store(4090, 2, 1);
    assert_ne!(a.content_hash(), b.content_hash());
    b.store(4090, 2, 0);
    assert_eq!(a.content_hash(), b.content_hash(), "back to the same content");
}

/// VM type 1 (6.12 software-protected): a guest read of a GFN racing its conversion to
/// private sees the shared (anonymous) page or the private guest_memfd page, nothing else,
/// and never the shared value again once it saw the private one.
#[test]
fn a_read_racing_a_conversion_to_private_sees_either_side() {
    let mut m = Model::new(Profile::sw_protected_6_12());
    let ops = [
        Op::CreateGmem { size: PAGE_SIZE, flags: 0 },
        Op::Bind { slot: 2, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(G0), gpa: GPA, size: PAGE_SIZE, offset: 0 },
        Op::Guest { accesses: vec![Access { gpa: GPA, width: Width::W4, kind: AccessKind::Write(0x5a) }] },
    ];
    for op in ops {
        let out = m.apply(&op).unwrap();
        assert!(matches!(out, Outcome::Ok | Outcome::Guest(_)), "{op:?}: {out}");
    }
    let read = Op::Guest { accesses: vec![Access { gpa: GPA, width: Width::W4, kind: AccessKind::Read }] };
    let convert = Op::SetAttributes { gpa: GPA, size: PAGE_SIZE, attributes: crate::op::KVM_MEMORY_ATTRIBUTE_PRIVATE };
    let g = group(vec![(read, 2), (convert, 1)]);
    let r4 = |v| Outcome::Guest(vec![AccessResult::Read(v)]);
    for seen in [[0x5a, 0x5a], [0x5a, 0], [0, 0]] {
        let actual = Outcome::Group(vec![seen.iter().map(|v| r4(*v)).collect(), vec![Outcome::Ok]]);
        let ends = m.race(&g, &actual).unwrap_or_else(|e| panic!("{seen:x?}: {e:?}"));
        assert!(ends.iter().all(|e| e.is_private_gfn(GPA / PAGE_SIZE)));
    }
    let back = Outcome::Group(vec![vec![r4(0), r4(0x5a)], vec![Outcome::Ok]]);
    assert!(matches!(m.race(&g, &back), Err(RaceError::Mismatch(_))), "shared again after private: refused");
}

/// A guest fault that read the GFN's attributes before a racing conversion and checked them
/// after it exits with KVM_EXIT_MEMORY_FAULT in the first view (seen in the lane on 7.2: a
/// write to a shared GFN racing its conversion to private exited with flags 0). Only where
/// a member converts that GFN, and only in the view before the conversion.
#[test]
fn a_fault_straddling_a_conversion_exits_with_the_view_before_it() {
    let mut m = Model::new(Profile::sw_protected_6_12());
    let ops = [
        Op::CreateGmem { size: 2 * PAGE_SIZE, flags: 0 },
        Op::Bind { slot: 2, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(G0), gpa: GPA, size: 2 * PAGE_SIZE, offset: 0 },
    ];
    for op in ops {
        assert_eq!(m.apply(&op).unwrap(), Outcome::Ok, "{op:?}");
    }
    let write = |gpa| Op::Guest { accesses: vec![Access { gpa, width: Width::W4, kind: AccessKind::Write(0x5a) }] };
    let convert = Op::SetAttributes { gpa: GPA, size: PAGE_SIZE, attributes: crate::op::KVM_MEMORY_ATTRIBUTE_PRIVATE };
    let fault = |gpa, flags| Outcome::Guest(vec![AccessResult::MemoryFault { gpa, size: PAGE_SIZE, flags }]);
    let shared_view = Outcome::Group(vec![vec![fault(GPA, 0)], vec![Outcome::Ok]]);
    let g = group(vec![(write(GPA + 0x18), 1), (convert.clone(), 1)]);
    let ends = m.race(&g, &shared_view).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(ends.iter().all(|e| e.is_private_gfn(GPA / PAGE_SIZE)), "the conversion happened");
    // Not where the conversion failed, nor on a GFN it does not convert.
    let failed = Outcome::Group(vec![vec![fault(GPA, 0)], vec![Outcome::Err(crate::outcome::Errno(22))]]);
    assert!(m.race(&g, &failed).is_err());
    let other_page = group(vec![(write(GPA + PAGE_SIZE), 1), (convert, 1)]);
    assert!(matches!(
        m.race(&other_page, &Outcome::Group(vec![vec![fault(GPA + PAGE_SIZE, 0)], vec![Outcome::Ok]])),
        Err(RaceError::Mismatch(_))
    ));
}

/// A guest fault through guest_memfd takes its page before it finds that an unbind raced
/// it: the access exits (here a private fault with no slot), and the page may stay (seen in
/// the lane on 7.2, a gmem-only slot's write exiting as MMIO).
#[test]
fn a_fault_abandoned_to_a_racing_unbind_may_leave_its_page() {
    let mut m = Model::new(Profile::sw_protected_6_12());
    let ops = [
        Op::CreateGmem { size: PAGE_SIZE, flags: 0 },
        Op::Bind { slot: 2, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(G0), gpa: GPA, size: PAGE_SIZE, offset: 0 },
        Op::SetAttributes { gpa: GPA, size: PAGE_SIZE, attributes: crate::op::KVM_MEMORY_ATTRIBUTE_PRIVATE },
    ];
    for op in ops {
        assert_eq!(m.apply(&op).unwrap(), Outcome::Ok, "{op:?}");
    }
    let write = Op::Guest { accesses: vec![Access { gpa: GPA, width: Width::W4, kind: AccessKind::Write(0x5a) }] };
    let g = group(vec![(write, 1), (Op::Unbind { slot: 2 }, 1)]);
    let fault = AccessResult::MemoryFault { gpa: GPA, size: PAGE_SIZE, flags: crate::op::KVM_MEMORY_EXIT_FLAG_PRIVATE };
    let exited = Outcome::Group(vec![vec![Outcome::Guest(vec![fault])], vec![Outcome::Ok]]);
    let ends = m.race(&g, &exited).unwrap_or_else(|e| panic!("{e:?}"));
    let resident: BTreeSet<bool> = ends.iter().map(|e| e.gmem(G0).unwrap().pages.is_prepared(0)).collect();
    assert_eq!(resident, BTreeSet::from([false, true]), "the page was taken or not");
    // Without an invalidating member nothing is added: the access alone decides.
    let alone = group(vec![
        (Op::Guest { accesses: vec![Access { gpa: GPA, width: Width::W4, kind: AccessKind::Read }] }, 1),
        (Op::Guest { accesses: vec![Access { gpa: GPA + 8, width: Width::W4, kind: AccessKind::Read }] }, 1),
    ]);
    let reads = Outcome::Group(vec![vec![Outcome::Guest(vec![AccessResult::Read(0)])], vec![Outcome::Guest(vec![AccessResult::Read(0)])]]);
    let ends = m.race(&alone, &reads).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(ends.iter().all(|e| e.gmem(G0).unwrap().pages.is_prepared(0)), "both reads faulted the page in");
    assert_eq!(ends.len(), 1);
}

/// What follows a group is predicted exactly where every order ends alike: a guest member
/// reading a shared page while another converts the rest of its 2 MiB (the race of
/// 9129633d568e) ends in one state; a read racing a punch of its page does not (a racing
/// fault may leave the page in the file), nor a guest member whose page the group converts.
#[test]
fn groups_whose_orders_all_end_alike_are_order_independent() {
    let mut m = Model::new(Profile::sw_protected_7_2());
    let huge = 0x4000_0000;
    let bind = Op::Bind { slot: 3, flags: 0, fd: FdArg::Gmem(G0), gpa: huge, size: 2 << 20, offset: 0 };
    assert_eq!(m.apply(&bind).expect("the model never fails"), Outcome::Ok);
    let rest = |gpa: u64| Op::SetAttributes { gpa, size: huge + (2 << 20) - gpa, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE };
    assert!(m.order_independent(&group(vec![(read8(huge + 0x18), 8), (rest(huge + PAGE_SIZE), 2)])));
    assert!(!m.order_independent(&group(vec![(read8(huge + PAGE_SIZE), 8), (rest(huge + PAGE_SIZE), 1)])), "the guest's page converts");
    let s = setup();
    assert!(!s.order_independent(&group(vec![(read8(GPA), 3), (punch_page0(), 1)])), "a read racing a punch");
    let write = Op::HostWrite { gmem: G0, offset: 0, width: Width::W8, value: 1 };
    assert!(!s.order_independent(&group(vec![(write, 2), (punch_page0(), 1)])), "a write racing a punch");
    assert!(s.order_independent(&group(vec![(read8(GPA + PAGE_SIZE), 2), (read8(GPA), 2)])), "two readers");
}
