//! Scenarios taken from the kernel's own tests (tools/testing/selftests/kvm/guest_memfd_test.c,
//! set_memory_region_test.c) and from the probes in shared/design/platform-facts.md, each
//! with the outcome every op must have on the host kernel's profile (VM type 0, guest_memfd
//! with MMAP and INIT_SHARED, no memory attributes).
//!
//! `Scenario::check` runs one in lockstep and asserts every outcome on both sides: the
//! harness tests run it with the model as the backend and with real KVM, `gmemfuzz
//! scenarios` in the lane. Tests that build the seed corpus use them as well.

use gmemfuzz_backends::op::{
    layout, Access, AccessKind, FdArg, GmemId, Op, Width, GUEST_MEMFD_FLAG_INIT_SHARED as INIT_SHARED, GUEST_MEMFD_FLAG_MMAP as MMAP,
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, PAGE_SIZE,
};
use gmemfuzz_backends::outcome::{AccessResult, Errno, Outcome};

use crate::program::Program;
use crate::runner::{Event, Runner};
use gmemfuzz_backends::Backend;

pub struct Scenario {
    pub name: &'static str,
    /// The VM type the expectations are for: 0 on the host kernel, 1
    /// (KVM_X86_SW_PROTECTED_VM, Linux 6.12) in the test-kernel lane.
    pub vm_type: u64,
    /// Where the expectation comes from.
    pub source: &'static str,
    pub steps: Vec<(Op, Outcome)>,
}

impl Scenario {
    pub fn program(&self) -> Program {
        Program::new(self.steps.iter().map(|(op, _)| op.clone()).collect())
    }

    /// Runs the scenario in lockstep on `runner` and checks that the model and the backend
    /// both gave every step its expected outcome: the one check the model tests, the KVM
    /// tests and `gmemfuzz scenarios` share.
    pub fn check<B: Backend>(&self, runner: &mut Runner<B>) -> Result<(), String> {
        let mut failure: Option<String> = None;
        let backend = runner.backend.name().to_string();
        let mut ran = 0;
        let run = runner.run_with(&self.program(), &mut |event: &Event<'_>| {
            let why = match *event {
                Event::Op { index, op, expected, actual } => {
                    ran += 1;
                    let want = &self.steps[index].1;
                    if expected.has_unknown() {
                        Some(format!("step {index} ({op:?}): the model must predict every step, but said {expected}"))
                    } else if expected != want {
                        Some(format!("step {index} ({op:?}): expected {want}, the model said {expected}"))
                    } else if actual != want {
                        Some(format!("step {index} ({op:?}): expected {want}, {backend} did {actual}"))
                    } else {
                        None
                    }
                }
                _ => None,
            };
            if failure.is_none() {
                failure = why;
            }
        });
        if let Some(why) = failure {
            return Err(format!("{}: {why} [{}]", self.name, self.source));
        }
        run.map_err(|e| format!("{}: {e}", self.name))?;
        if ran != self.steps.len() {
            return Err(format!("{}: {ran} of {} steps ran", self.name, self.steps.len()));
        }
        Ok(())
    }
}

const G0: GmemId = GmemId(0);
const G1: GmemId = GmemId(1);
const SLOT: u32 = layout::FIRST_PROGRAM_SLOT;
const GPA: u64 = layout::WINDOW_GPA;
const P: u64 = PAGE_SIZE;

fn create(pages: u64, flags: u64) -> Op {
    Op::CreateGmem { size: pages * P, flags }
}

fn bind(slot: u32, gmem: GmemId, gpa: u64, pages: u64, offset_pages: u64) -> Op {
    Op::Bind { slot, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(gmem), gpa, size: pages * P, offset: offset_pages * P }
}

fn read(gpa: u64, width: Width) -> Access {
    Access { gpa, width, kind: AccessKind::Read }
}

fn write(gpa: u64, width: Width, value: u64) -> Access {
    Access { gpa, width, kind: AccessKind::Write(value) }
}

fn guest(accesses: Vec<Access>) -> Op {
    Op::Guest { accesses }
}

fn err(e: Errno) -> Outcome {
    Outcome::Err(e)
}

fn results(r: Vec<AccessResult>) -> Outcome {
    Outcome::Guest(r)
}

use AccessResult::{Mmio, Read, Wrote};
use Outcome::Ok as OK;

/// Every scenario, whatever its VM type.
pub fn all() -> Vec<Scenario> {
    let mut all = host();
    all.extend(private_conversions());
    all
}

/// The scenarios for one VM type.
pub fn for_vm_type(vm_type: u64) -> Vec<Scenario> {
    all().into_iter().filter(|s| s.vm_type == vm_type).collect()
}

/// Private/shared conversions on a software-protected VM (Linux 6.12, VM type 1), after
/// tools/testing/selftests/kvm/x86/private_mem_conversions_test.c and the 6.12 fault path
/// (kvm_mmu_page_fault: the GFN's PRIVATE attribute makes the fault private).
pub fn private_conversions() -> Vec<Scenario> {
    const PRIVATE: u64 = KVM_MEMORY_ATTRIBUTE_PRIVATE;
    let private = |gpa, pages: u64| Op::SetAttributes { gpa, size: pages * P, attributes: PRIVATE };
    let shared = |gpa, pages: u64| Op::SetAttributes { gpa, size: pages * P, attributes: 0 };
    let fault = |gpa: u64| AccessResult::MemoryFault { gpa, size: P, flags: gmemfuzz_backends::op::KVM_MEMORY_EXIT_FLAG_PRIVATE };
    vec![
        Scenario {
            vm_type: 1,
            name: "conversion_round_trip",
            source: "private_mem_conversions_test.c guest_test_explicit_conversion; platform-facts lane 2",
            steps: vec![
                (create(4, 0), OK),
                (bind(SLOT, G0, GPA, 4, 0), OK),
                (guest(vec![write(GPA + 8, Width::W8, 0x5a5a_0001)]), results(vec![Wrote])),
                (private(GPA, 1), OK),
                // Private: the guest_memfd page, zero at first.
                (guest(vec![read(GPA + 8, Width::W8), write(GPA + 16, Width::W4, 0x9e57)]), results(vec![Read(0), Wrote])),
                (shared(GPA, 1), OK),
                // Shared again: the anonymous page with its old content.
                (guest(vec![read(GPA + 8, Width::W8), read(GPA + 16, Width::W4)]), results(vec![Read(0x5a5a_0001), Read(0)])),
                (private(GPA, 1), OK),
                // Private content survives the round trip.
                (guest(vec![read(GPA + 16, Width::W4)]), results(vec![Read(0x9e57)])),
                (Op::Check, OK),
            ],
        },
        Scenario {
            vm_type: 1,
            name: "punch_hole_zeroes_private_pages",
            source: "private_mem_conversions_test.c (PUNCH_HOLE between conversions); kvm_gmem_punch_hole()",
            steps: vec![
                (create(2, 0), OK),
                (bind(SLOT, G0, GPA, 2, 0), OK),
                (private(GPA, 2), OK),
                (guest(vec![write(GPA, Width::W8, 0x1111), write(GPA + P, Width::W8, 0x2222)]), results(vec![Wrote, Wrote])),
                (Op::Punch { gmem: G0, offset: 0, len: P }, OK),
                (guest(vec![read(GPA, Width::W8), read(GPA + P, Width::W8)]), results(vec![Read(0), Read(0x2222)])),
                (Op::Check, OK),
            ],
        },
        Scenario {
            vm_type: 1,
            name: "private_faults_exit_to_userspace",
            source: "kvm_faultin_pfn_private() / kvm_handle_noslot_fault(): KVM_EXIT_MEMORY_FAULT with KVM_MEMORY_EXIT_FLAG_PRIVATE",
            steps: vec![
                (create(1, 0), OK),
                // A private GFN with no memslot.
                (private(GPA + 32 * P, 1), OK),
                (
                    guest(vec![read(GPA + 32 * P, Width::W4), read(GPA, Width::W4)]),
                    results(vec![fault(GPA + 32 * P), AccessResult::NotRun]),
                ),
                // A private GFN in a slot without guest_memfd.
                (Op::Bind { slot: SLOT + 1, flags: 0, fd: FdArg::Invalid, gpa: GPA + 40 * P, size: P, offset: 0 }, OK),
                (private(GPA + 40 * P, 1), OK),
                (guest(vec![write(GPA + 40 * P, Width::W1, 1)]), results(vec![fault(GPA + 40 * P)])),
                // Released file: the binding is gone, private faults exit.
                (bind(SLOT, G0, GPA, 1, 0), OK),
                (private(GPA, 1), OK),
                (guest(vec![write(GPA, Width::W4, 7)]), results(vec![Wrote])),
                (Op::CloseGmem { gmem: G0 }, OK),
                (guest(vec![read(GPA, Width::W4)]), results(vec![fault(GPA)])),
                (shared(GPA, 1), OK),
                (guest(vec![read(GPA, Width::W4)]), results(vec![Read(0)])),
            ],
        },
        Scenario {
            vm_type: 1,
            name: "attribute_argument_checks",
            source: "kvm_vm_ioctl_set_mem_attributes() (6.12); guest_memfd flags must be 0 on 6.12",
            steps: vec![
                (create(1, MMAP), err(Errno::EINVAL)),
                (create(1, 0), OK),
                (Op::Map { gmem: G1 }, err(Errno::ENODEV)),
                (Op::SetAttributes { gpa: GPA, size: P, attributes: 1 }, err(Errno::EINVAL)),
                (Op::SetAttributes { gpa: GPA, size: 0, attributes: PRIVATE }, err(Errno::EINVAL)),
                (Op::SetAttributes { gpa: GPA + 1, size: P, attributes: PRIVATE }, err(Errno::EINVAL)),
                (Op::SetAttributes { gpa: !(P - 1), size: 2 * P, attributes: PRIVATE }, err(Errno::EINVAL)),
                (Op::SetAttributes { gpa: GPA, size: P, attributes: PRIVATE }, OK),
            ],
        },
    ]
}

/// The host kernel's scenarios (VM type 0).
pub fn host() -> Vec<Scenario> {
    vec![
        Scenario {
            vm_type: 0,
            name: "invalid_sizes",
            source: "guest_memfd_test.c test_create_guest_memfd_invalid_sizes",
            steps: vec![
                (Op::CreateGmem { size: 0, flags: 0 }, err(Errno::EINVAL)),
                (Op::CreateGmem { size: P - 1, flags: 0 }, err(Errno::EINVAL)),
                (Op::CreateGmem { size: P + 1, flags: MMAP }, err(Errno::EINVAL)),
                (Op::CreateGmem { size: 0u64.wrapping_sub(P), flags: 0 }, err(Errno::EINVAL)),
                (Op::CreateGmem { size: 1 << 62, flags: 0 }, OK),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "invalid_flags",
            source: "guest_memfd_test.c test_create_guest_memfd_invalid (flags beyond KVM_CAP_GUEST_MEMFD_FLAGS)",
            steps: vec![
                (create(1, 1 << 2), err(Errno::EINVAL)),
                (create(1, 1 << 63), err(Errno::EINVAL)),
                (create(1, INIT_SHARED), OK),
                (create(1, MMAP | INIT_SHARED), OK),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "mmap_needs_mmap_flag",
            source: "guest_memfd_test.c test_mmap_not_supported; kvm_gmem_mmap(): -ENODEV",
            steps: vec![
                (create(2, 0), OK),
                (Op::Map { gmem: G0 }, err(Errno::ENODEV)),
                (Op::HostRead { gmem: G0, offset: 0, width: Width::W8 }, Outcome::Skipped(gmemfuzz_backends::SkipReason::NotMapped)),
                (create(2, MMAP | INIT_SHARED), OK),
                (Op::Map { gmem: G1 }, OK),
                (Op::HostWrite { gmem: G1, offset: 8, width: Width::W8, value: 0x1122_3344_5566_7788 }, OK),
                (Op::HostRead { gmem: G1, offset: 8, width: Width::W4 }, Outcome::Value(0x5566_7788)),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "host_fault_without_init_shared_is_sigbus",
            source: "guest_memfd_test.c test_fault_private; kvm_gmem_fault_user_mapping()",
            steps: vec![
                (create(2, MMAP), OK),
                (Op::Map { gmem: G0 }, OK),
                (Op::HostRead { gmem: G0, offset: 0, width: Width::W1 }, Outcome::Sigbus),
                (Op::HostWrite { gmem: G0, offset: P, width: Width::W8, value: 1 }, Outcome::Sigbus),
                (Op::Check, OK),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "fallocate_rules",
            source: "guest_memfd_test.c test_fallocate and test_invalid_punch_hole; kvm_gmem_fallocate()",
            steps: vec![
                (create(4, MMAP | INIT_SHARED), OK),
                (Op::Allocate { gmem: G0, mode: 0, offset: 0, len: P }, err(Errno::EOPNOTSUPP)),
                (Op::Allocate { gmem: G0, mode: 2, offset: 0, len: P }, err(Errno::EOPNOTSUPP)),
                (Op::Allocate { gmem: G0, mode: 1, offset: 1, len: P }, err(Errno::EINVAL)),
                (Op::Allocate { gmem: G0, mode: 1, offset: 0, len: 0 }, err(Errno::EINVAL)),
                (Op::Allocate { gmem: G0, mode: 1, offset: 4 * P, len: P }, err(Errno::EINVAL)),
                (Op::Allocate { gmem: G0, mode: 1, offset: (1 << 63) - P, len: 2 * P }, err(Errno::EFBIG)),
                (Op::Punch { gmem: G0, offset: 4 * P, len: P }, OK),
                (Op::Punch { gmem: G0, offset: 0, len: P + 1 }, err(Errno::EINVAL)),
                (Op::Allocate { gmem: G0, mode: 1, offset: 0, len: 2 * P }, OK),
                (Op::Map { gmem: G0 }, OK),
                (Op::Check, OK),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "punch_hole_then_read_zero",
            source: "guest_memfd_test.c test_fallocate; platform-facts: after PUNCH_HOLE both the mmap and the guest read zeros",
            steps: vec![
                (create(4, MMAP | INIT_SHARED), OK),
                (Op::Map { gmem: G0 }, OK),
                (bind(SLOT, G0, GPA, 4, 0), OK),
                (Op::HostWrite { gmem: G0, offset: 0x10, width: Width::W8, value: 0xfeed_face_cafe_beef }, OK),
                (guest(vec![read(GPA + 0x10, Width::W8), write(GPA + P + 0x20, Width::W4, 0x1234_5678)]), results(vec![Read(0xfeed_face_cafe_beef), Wrote])),
                (Op::HostRead { gmem: G0, offset: P + 0x20, width: Width::W4 }, Outcome::Value(0x1234_5678)),
                (Op::Punch { gmem: G0, offset: 0, len: 2 * P }, OK),
                (guest(vec![read(GPA + 0x10, Width::W8), read(GPA + P + 0x20, Width::W4)]), results(vec![Read(0), Read(0)])),
                (Op::HostRead { gmem: G0, offset: 0x10, width: Width::W8 }, Outcome::Value(0)),
                (Op::Check, OK),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "binding_rules",
            source: "guest_memfd_test.c test_create_guest_memfd_multiple / set_memory_region_test.c test_add_private_memory_region",
            steps: vec![
                (create(4, MMAP | INIT_SHARED), OK),
                (bind(SLOT, G0, GPA, 2, 0), OK),
                // The same file range again, elsewhere in guest memory.
                (bind(SLOT + 1, G0, GPA + 8 * P, 2, 1), err(Errno::EINVAL)),
                // Beyond the end of the file.
                (bind(SLOT + 1, G0, GPA + 8 * P, 2, 3), err(Errno::EINVAL)),
                // Overlapping guest memory.
                (bind(SLOT + 1, G0, GPA + P, 1, 3), err(Errno::EEXIST)),
                (Op::Bind { slot: SLOT + 1, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Invalid, gpa: GPA + 8 * P, size: P, offset: 0 }, err(Errno::EBADF)),
                (Op::Bind { slot: SLOT + 1, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::NotGmem, gpa: GPA + 8 * P, size: P, offset: 0 }, err(Errno::EINVAL)),
                (Op::Bind { slot: SLOT + 1, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(G0), gpa: GPA + 8 * P + 1, size: P, offset: 2 * P }, err(Errno::EINVAL)),
                (Op::Bind { slot: 32764, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(G0), gpa: GPA + 8 * P, size: P, offset: 2 * P }, err(Errno::EINVAL)),
                (bind(SLOT + 1, G0, GPA + 8 * P, 2, 2), OK),
                (Op::Unbind { slot: SLOT + 5 }, err(Errno::EINVAL)),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "guest_memfd_slots_are_immutable",
            source: "kvm_set_memory_region(): \"Private memslots are immutable, they can only be deleted\" (+ commit 9935df5333aa)",
            steps: vec![
                (create(2, MMAP | INIT_SHARED), OK),
                (bind(SLOT, G0, GPA, 2, 0), OK),
                (Op::ModifySlot { slot: SLOT, gpa: GPA + 16 * P, flags: KVM_MEM_GUEST_MEMFD }, err(Errno::EINVAL)),
                (Op::ModifySlot { slot: SLOT, gpa: GPA, flags: 0 }, err(Errno::EINVAL)),
                (Op::ModifySlot { slot: SLOT, gpa: GPA, flags: KVM_MEM_GUEST_MEMFD }, err(Errno::EINVAL)),
                (Op::Unbind { slot: SLOT }, OK),
                (guest(vec![read(GPA, Width::W1)]), results(vec![Mmio])),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "release_needs_every_reference_gone",
            source: "kvm_gmem_bind(): the slot holds no file reference; platform-facts: closing the fd while the slot is bound keeps the memory alive",
            steps: vec![
                (create(2, MMAP | INIT_SHARED), OK),
                (Op::Map { gmem: G0 }, OK),
                (bind(SLOT, G0, GPA, 2, 0), OK),
                (guest(vec![write(GPA + 8, Width::W8, 0xabcd)]), results(vec![Wrote])),
                (Op::CloseGmem { gmem: G0 }, OK),
                // The mapping still holds the file: memory and guest view survive.
                (Op::HostRead { gmem: G0, offset: 8, width: Width::W8 }, Outcome::Value(0xabcd)),
                (guest(vec![read(GPA + 8, Width::W8)]), results(vec![Read(0xabcd)])),
                (Op::Punch { gmem: G0, offset: 0, len: P }, Outcome::Skipped(gmemfuzz_backends::SkipReason::FdClosed)),
                (Op::Unmap { gmem: G0 }, OK),
                // Released; the slot's userspace_addr is gone too: an MMIO exit (probe).
                (guest(vec![read(GPA + 8, Width::W8)]), results(vec![Mmio])),
                (Op::Unbind { slot: SLOT }, OK),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "no_mmap_flag_slot_uses_userspace_memory",
            source: "6.18 kvm_gmem_bind(): KVM_MEMSLOT_GMEM_ONLY only with GUEST_MEMFD_FLAG_MMAP; probe: this kernel faults through userspace_addr",
            steps: vec![
                (create(2, 0), OK),
                (bind(SLOT, G0, GPA, 2, 0), OK),
                (guest(vec![write(GPA, Width::W2, 0xbeef), read(GPA, Width::W2)]), results(vec![Wrote, Read(0xbeef)])),
                (Op::Punch { gmem: G0, offset: 0, len: 2 * P }, OK),
                // Anonymous memory behind the slot is not the file: the punch does not touch it.
                (guest(vec![read(GPA, Width::W2)]), results(vec![Read(0xbeef)])),
                (Op::CloseGmem { gmem: G0 }, OK),
                (guest(vec![read(GPA, Width::W2)]), results(vec![Read(0xbeef)])),
                (Op::Check, OK),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "destroy_vm_while_files_live",
            source: "__kvm_gmem_create(): kvm_get_kvm; platform-facts: the host mmap keeps working after the fd is closed and the slot deleted",
            steps: vec![
                (create(2, MMAP | INIT_SHARED), OK),
                (Op::Map { gmem: G0 }, OK),
                (bind(SLOT, G0, GPA, 2, 0), OK),
                (guest(vec![write(GPA + P, Width::W4, 0x600d)]), results(vec![Wrote])),
                (Op::DestroyVm, OK),
                (Op::HostRead { gmem: G0, offset: P, width: Width::W4 }, Outcome::Value(0x600d)),
                (Op::Punch { gmem: G0, offset: P, len: P }, OK),
                (Op::HostRead { gmem: G0, offset: P, width: Width::W4 }, Outcome::Value(0)),
                (guest(vec![read(GPA, Width::W4)]), Outcome::Skipped(gmemfuzz_backends::SkipReason::NoVm)),
                (Op::CloseGmem { gmem: G0 }, OK),
                (Op::Unmap { gmem: G0 }, OK),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "memory_attributes_unsupported",
            source: "6.18 without CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES: kvm_arch_vm_ioctl() -ENOTTY (probe)",
            steps: vec![
                (create(1, MMAP | INIT_SHARED), OK),
                (bind(SLOT, G0, GPA, 1, 0), OK),
                (Op::SetAttributes { gpa: GPA, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }, err(Errno::ENOTTY)),
                (Op::SetAttributes { gpa: GPA, size: P, attributes: 0 }, err(Errno::ENOTTY)),
            ],
        },
        Scenario {
            vm_type: 0,
            name: "residency_counts_prepared_pages",
            source: "mincore_page(): folio_test_uptodate; kvm_gmem_allocate() leaves folios not uptodate (probe)",
            steps: vec![
                (create(4, MMAP | INIT_SHARED), OK),
                (Op::Map { gmem: G0 }, OK),
                (Op::Allocate { gmem: G0, mode: 1, offset: 0, len: 2 * P }, OK),
                (Op::Check, OK),
                (Op::HostRead { gmem: G0, offset: P, width: Width::W1 }, Outcome::Value(0)),
                (Op::Check, OK),
                (Op::Punch { gmem: G0, offset: 0, len: 4 * P }, OK),
                (Op::Check, OK),
            ],
        },
    ]
}
