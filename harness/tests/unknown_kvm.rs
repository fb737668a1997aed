//! Where the model used to give up on a whole program it now predicts: checked against
//! real KVM (skipped loudly without /dev/kvm).

mod common;

use gmemfuzz::{Program, Runner};
use gmemfuzz_backends::op::{layout, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_GUEST_MEMFD, PAGE_SIZE as P};
use gmemfuzz_backends::{Access, AccessKind, Backend, FdArg, GmemId, Op, Outcome, Width};

fn run_clean(test: &str, ops: impl FnOnce(&gmemfuzz_backends::Profile) -> Vec<Op>) {
    let Some(backend) = common::kvm_or_skip(test) else { return };
    let program = Program { ops: ops(backend.profile()) };
    let mut runner = Runner::new(backend);
    let trace = runner.run(&program).unwrap_or_else(|e| panic!("{test}: {e}"));
    assert_eq!(trace.outcomes.len(), program.ops.len(), "{test}: every op ran");
    assert_eq!(runner.stats.skipped_unknown, 0, "{test}: every part predicted");
    assert!(runner.stats.probes > 0, "{test}: state was compared");
}

#[test]
fn slots_at_the_probed_address_limit() {
    run_clean("slots_at_the_probed_address_limit", |profile| {
        let max = profile.max_gfn;
        let slot = layout::FIRST_PROGRAM_SLOT;
        let gmem = GmemId(0);
        let bind = |slot, gpa, size| Op::Bind { slot, flags: 0, fd: FdArg::Invalid, gpa, size, offset: 0 };
        vec![
            Op::CreateGmem { size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED },
            Op::Map { gmem },
            bind(slot, (max - 1) * P, 2 * P),
            bind(slot + 1, max * P, 2 * P),
            bind(slot + 2, (max + 1) * P, P),
            Op::ModifySlot { slot, gpa: max * P, flags: 0 },
            Op::ModifySlot { slot, gpa: (max - 3) * P, flags: 0 },
            Op::Bind { slot: slot + 3, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(gmem), gpa: 1 << 33, size: 2 * P, offset: 0 },
            Op::HostWrite { gmem, offset: 8, width: Width::W8, value: 0x1234 },
            Op::Guest { accesses: vec![Access { gpa: 1 << 33, width: Width::W8, kind: AccessKind::Read }] },
            Op::Unbind { slot: slot + 3 },
            Op::Check,
        ]
    });
}

#[test]
fn host_accesses_across_a_page() {
    run_clean("host_accesses_across_a_page", |_| {
        let (shared, refused) = (GmemId(0), GmemId(1));
        let mut ops = vec![
            Op::CreateGmem { size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED },
            Op::Map { gmem: shared },
            Op::CreateGmem { size: 2 * P, flags: GUEST_MEMFD_FLAG_MMAP },
            Op::Map { gmem: refused },
        ];
        for (offset, width) in [(P - 4, Width::W8), (P - 1, Width::W2), (P - 2, Width::W4), (P - 7, Width::W8)] {
            for gmem in [shared, refused] {
                ops.push(Op::HostWrite { gmem, offset, width, value: 0x1122_3344_5566_7788 ^ offset });
                ops.push(Op::HostRead { gmem, offset: P - 8, width: Width::W8 });
                ops.push(Op::HostRead { gmem, offset: P, width: Width::W8 });
                ops.push(Op::HostRead { gmem, offset, width });
            }
        }
        ops.push(Op::Check);
        ops
    });
}

#[test]
fn files_past_the_256th() {
    run_clean("files_past_the_256th", |_| {
        let mut ops: Vec<Op> =
            (0..260).map(|_| Op::CreateGmem { size: P, flags: GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED }).collect();
        ops.push(Op::Map { gmem: GmemId(255) });
        ops.push(Op::HostWrite { gmem: GmemId(255), offset: 0, width: Width::W4, value: 9 });
        ops.push(Op::Check);
        ops
    });
}

#[test]
fn a_huge_attribute_range_that_changes_nothing_is_sent() {
    // Guard: the host kernel here has no KVM_SET_MEMORY_ATTRIBUTES, so the large attribute
    // ranges are covered by the model's unit tests and the lane only.
    let Some(mut backend) = common::kvm_or_skip("a_huge_attribute_range_that_changes_nothing_is_sent") else { return };
    let op = Op::SetAttributes { gpa: 1 << 32, size: 1 << 63, attributes: 0 };
    let expected = if backend.profile().attributes_ioctl { Outcome::Ok } else { Outcome::Err(gmemfuzz_backends::Errno::ENOTTY) };
    assert_eq!(backend.apply(&op).unwrap(), expected);
}
