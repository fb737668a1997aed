//! Scenarios taken from the kernel's own tests (tools/testing/selftests/kvm/guest_memfd_test.c,
//! set_memory_region_test.c) and from the probes in shared/design/platform-facts.md, each
//! with the outcome every op must have on a kernel of a given `Profile`: where kernels
//! differ (the guest_memfd flags a VM type accepts, guest_memfd-only slots, an errno), the
//! expected outcome follows from a probed profile field and the kernel code it cites, never
//! from a version string; a scenario that needs what a kernel lacks is not made for it.
//!
//! `Scenario::check` runs one in lockstep and asserts every outcome on both sides: the
//! harness tests run it with the model as the backend (for each assumed profile) and with
//! real KVM (for the probed one), `gmemfuzz scenarios` in the lane. Tests that build the
//! seed corpus use them as well.

use gmemfuzz_backends::op::{
    layout, Access, AccessKind, FdArg, GmemId, Op, Width, GUEST_MEMFD_FLAG_INIT_SHARED as INIT_SHARED, GUEST_MEMFD_FLAG_MMAP as MMAP,
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, PAGE_SIZE,
};
use gmemfuzz_backends::outcome::{AccessResult, Errno, Outcome};
use gmemfuzz_backends::Profile;

use crate::program::Program;
use crate::runner::{Event, Runner};
use gmemfuzz_backends::Backend;

pub struct Scenario {
    pub name: &'static str,
    /// The profile the expectations are for (its VM type included: 0 on the host kernel,
    /// 1 = KVM_X86_SW_PROTECTED_VM in the test-kernel lane).
    pub profile: Profile,
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

/// The profiles scenarios are written out for where no kernel is probed: the host's 6.18
/// (VM type 0), and the lane's 6.12 and 7.2 (VM type 1).
pub fn assumed_profiles() -> Vec<Profile> {
    vec![Profile::host_6_18(), Profile::sw_protected_6_12(), Profile::sw_protected_7_2()]
}

/// Every scenario for every assumed profile (a name recurs once per profile it is made for).
pub fn all() -> Vec<Scenario> {
    assumed_profiles().iter().flat_map(for_profile).collect()
}

/// The scenarios for a kernel of `profile` (its VM type), with the outcomes it must give.
pub fn for_profile(profile: &Profile) -> Vec<Scenario> {
    match profile.vm_type {
        0 => host(profile),
        _ => private_conversions(profile),
    }
}

/// KVM_CREATE_GUEST_MEMFD's outcome for `flags`: kvm_gmem_create(), `if (flags &
/// ~kvm_gmem_get_supported_flags(kvm)) return -EINVAL;` (6.12: `valid_flags = 0`); the
/// profile carries KVM_CAP_GUEST_MEMFD_FLAGS.
fn created(p: &Profile, flags: u64) -> Outcome {
    if flags & !p.gmem_flags != 0 {
        err(Errno::EINVAL)
    } else {
        OK
    }
}

/// Private/shared conversions on a software-protected VM (VM type 1: Linux 6.12 and 7.2),
/// after tools/testing/selftests/kvm/x86/private_mem_conversions_test.c and the fault path
/// (kvm_mmu_page_fault: the GFN's PRIVATE attribute makes the fault private); on a kernel
/// that maps such files and makes guest_memfd-only slots (7.2), those too.
pub fn private_conversions(p: &Profile) -> Vec<Scenario> {
    const PRIVATE: u64 = KVM_MEMORY_ATTRIBUTE_PRIVATE;
    let private = |gpa, pages: u64| Op::SetAttributes { gpa, size: pages * P, attributes: PRIVATE };
    let shared = |gpa, pages: u64| Op::SetAttributes { gpa, size: pages * P, attributes: 0 };
    let fault = |gpa: u64| AccessResult::MemoryFault { gpa, size: P, flags: gmemfuzz_backends::op::KVM_MEMORY_EXIT_FLAG_PRIVATE };
    let mut all = vec![
        Scenario {
            profile: p.clone(),
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
            profile: p.clone(),
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
            profile: p.clone(),
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
            profile: p.clone(),
            name: "attribute_argument_checks",
            source: "kvm_vm_ioctl_set_mem_attributes() (6.12, 7.2); kvm_gmem_create(): flags beyond KVM_CAP_GUEST_MEMFD_FLAGS (none on 6.12, MMAP on 7.2)",
            steps: vec![
                (create(1, MMAP), created(p, MMAP)),
                (create(1, 0), OK),
                (Op::Map { gmem: G1 }, err(Errno::ENODEV)),
                (Op::SetAttributes { gpa: GPA, size: P, attributes: 1 }, err(Errno::EINVAL)),
                (Op::SetAttributes { gpa: GPA, size: 0, attributes: PRIVATE }, err(Errno::EINVAL)),
                (Op::SetAttributes { gpa: GPA + 1, size: P, attributes: PRIVATE }, err(Errno::EINVAL)),
                (Op::SetAttributes { gpa: !(P - 1), size: 2 * P, attributes: PRIVATE }, err(Errno::EINVAL)),
                (Op::SetAttributes { gpa: GPA, size: P, attributes: PRIVATE }, OK),
            ],
        },
    ];
    if p.gmem_flags & MMAP != 0 && p.gmem_only_slots {
        all.push(gmem_only_slot_on_private_vm(p));
    }
    all.extend(mempolicy(p));
    all
}

/// A file made with GUEST_MEMFD_FLAG_MMAP on a VM with private memory (7.2): mapped, but
/// the host cannot touch it, and bound, it makes a guest_memfd-only slot where shared and
/// private GFNs alike are the file's pages. Made for profiles that offer MMAP on this VM
/// type and make such slots.
fn gmem_only_slot_on_private_vm(p: &Profile) -> Scenario {
    const PRIVATE: u64 = KVM_MEMORY_ATTRIBUTE_PRIVATE;
    Scenario {
        profile: p.clone(),
        name: "gmem_only_slot_on_private_vm",
        source: "7.2: kvm_gmem_get_supported_flags(), kvm_gmem_fault_user_mapping(), kvm_gmem_bind() KVM_MEMSLOT_GMEM_ONLY, \
                 __kvm_mmu_faultin_pfn() `if (fault->is_private || kvm_memslot_is_gmem_only(fault->slot))`",
        steps: vec![
            // x86 kvm_arch_supports_gmem_init_shared(): `return !kvm_arch_has_private_mem(kvm);`
            (create(2, MMAP | INIT_SHARED), created(p, MMAP | INIT_SHARED)),
            (create(2, MMAP), OK),
            (Op::Map { gmem: G1 }, OK),
            // kvm_gmem_fault_user_mapping(): `if (!(GMEM_I(inode)->flags &
            // GUEST_MEMFD_FLAG_INIT_SHARED)) return VM_FAULT_SIGBUS;`
            (Op::HostRead { gmem: G1, offset: 0, width: Width::W8 }, Outcome::Sigbus),
            (bind(SLOT, G1, GPA, 2, 0), OK),
            // Shared GFNs fault to the file: kvm_gmem_get_pfn() clears a new page.
            (
                guest(vec![read(GPA + 8, Width::W8), write(GPA + 8, Width::W8, 0x5eed), write(GPA + P, Width::W4, 0x2)]),
                results(vec![Read(0), Wrote, Wrote]),
            ),
            // Private is the same page of the same file: the content stays.
            (Op::SetAttributes { gpa: GPA, size: P, attributes: PRIVATE }, OK),
            (guest(vec![read(GPA + 8, Width::W8)]), results(vec![Read(0x5eed)])),
            (Op::SetAttributes { gpa: GPA, size: P, attributes: 0 }, OK),
            (guest(vec![read(GPA + 8, Width::W8)]), results(vec![Read(0x5eed)])),
            // A punch-hole frees the shared page the guest sees (the slot has no other memory).
            (Op::Punch { gmem: G1, offset: P, len: P }, OK),
            (guest(vec![read(GPA + P, Width::W4), read(GPA + 8, Width::W8)]), results(vec![Read(0), Read(0x5eed)])),
            // The same file range again: kvm_gmem_bind()'s errno for a bound range.
            (bind(SLOT + 1, G1, GPA + 16 * P, 1, 1), err(p.bound_range_errno)),
            (Op::Check, OK),
            // The mapping keeps the file alive after close; then it is released and
            // kvm_gmem_get_pfn() fails (`if (!file) return -EFAULT;`): a shared memory fault.
            (Op::CloseGmem { gmem: G1 }, OK),
            (guest(vec![read(GPA + 8, Width::W8)]), results(vec![Read(0x5eed)])),
            (Op::Unmap { gmem: G1 }, OK),
            (guest(vec![read(GPA + 8, Width::W8)]), results(vec![AccessResult::MemoryFault { gpa: GPA, size: P, flags: 0 }])),
        ],
    }
}

/// The host kernel's scenarios (VM type 0), for a kernel whose default VM offers
/// guest_memfd with MMAP and INIT_SHARED (6.18, 7.2); none for one that does not.
pub fn host(p: &Profile) -> Vec<Scenario> {
    if p.gmem_flags & (MMAP | INIT_SHARED) != MMAP | INIT_SHARED {
        return Vec::new();
    }
    // The memory attributes scenario is for a kernel without the ioctl.
    let attributes_ioctl = p.attributes_ioctl;
    let released_read = if p.gmem_only_slots { AccessResult::MemoryFault { gpa: GPA, size: P, flags: 0 } } else { Mmio };
    let mut all = vec![
        Scenario {
            profile: p.clone(),
            name: "invalid_sizes",
            source: "guest_memfd_test.c test_create_guest_memfd_invalid_sizes",
            steps: vec![
                (Op::CreateGmem { size: 0, flags: 0 }, err(Errno::EINVAL)),
                (Op::CreateGmem { size: P - 1, flags: 0 }, err(Errno::EINVAL)),
                (Op::CreateGmem { size: P + 1, flags: MMAP }, err(Errno::EINVAL)),
                (Op::CreateGmem { size: 0u64.wrapping_sub(P), flags: 0 }, err(Errno::EINVAL)),
                (Op::CreateGmem { size: 1 << 62, flags: 0 }, OK),
                // The size is fixed at creation: do_sys_ftruncate() refuses a negative length,
                // kvm_gmem_setattr() every other (`return -EINVAL;`).
                (Op::Truncate { gmem: GmemId(4), size: 1 << 62 }, err(Errno::EINVAL)),
                (Op::Truncate { gmem: GmemId(4), size: 0 }, err(Errno::EINVAL)),
                (Op::Truncate { gmem: GmemId(4), size: u64::MAX }, err(Errno::EINVAL)),
                (Op::CloseGmem { gmem: GmemId(4) }, OK),
                (Op::Truncate { gmem: GmemId(4), size: 0 }, Outcome::Skipped(gmemfuzz_backends::SkipReason::FdClosed)),
            ],
        },
        Scenario {
            profile: p.clone(),
            name: "invalid_flags",
            source: "guest_memfd_test.c test_create_guest_memfd_invalid (flags beyond KVM_CAP_GUEST_MEMFD_FLAGS)",
            steps: vec![
                (create(1, 1 << 2), created(p, 1 << 2)),
                (create(1, 1 << 63), created(p, 1 << 63)),
                (create(1, INIT_SHARED), created(p, INIT_SHARED)),
                (create(1, MMAP | INIT_SHARED), created(p, MMAP | INIT_SHARED)),
            ],
        },
        Scenario {
            profile: p.clone(),
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
            profile: p.clone(),
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
            profile: p.clone(),
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
            profile: p.clone(),
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
            profile: p.clone(),
            name: "binding_rules",
            source: "guest_memfd_test.c test_create_guest_memfd_multiple / set_memory_region_test.c test_add_private_memory_region",
            steps: vec![
                (create(4, MMAP | INIT_SHARED), OK),
                (bind(SLOT, G0, GPA, 2, 0), OK),
                // The same file range again, elsewhere in guest memory: the probed errno
                // (6.12 and this host: EINVAL; 7.2: EEXIST).
                (bind(SLOT + 1, G0, GPA + 8 * P, 2, 1), err(p.bound_range_errno)),
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
            profile: p.clone(),
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
            profile: p.clone(),
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
                // Released. Where the slot faults through userspace_addr, that is gone
                // too: an MMIO exit (probe on 6.18). A guest_memfd-only slot faults to the
                // file: kvm_gmem_get_pfn(), `if (!file) return -EFAULT;`, a memory fault.
                (guest(vec![read(GPA + 8, Width::W8)]), results(vec![released_read])),
                (Op::Unbind { slot: SLOT }, OK),
            ],
        },
        Scenario {
            profile: p.clone(),
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
            profile: p.clone(),
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
            profile: p.clone(),
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
    ];
    if !attributes_ioctl {
        all.push(Scenario {
            profile: p.clone(),
            name: "memory_attributes_unsupported",
            source: "6.18 without CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES: kvm_arch_vm_ioctl() -ENOTTY (probe)",
            steps: vec![
                (create(1, MMAP | INIT_SHARED), OK),
                (bind(SLOT, G0, GPA, 1, 0), OK),
                (Op::SetAttributes { gpa: GPA, size: P, attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE }, err(Errno::ENOTTY)),
                (Op::SetAttributes { gpa: GPA, size: P, attributes: 0 }, err(Errno::ENOTTY)),
            ],
        });
    }
    all.extend(mempolicy(p));
    all
}

/// NUMA policies through a guest_memfd mapping (mm/mempolicy.c's checks, and where the
/// policy lives: the file on 7.2, kvm_gmem_set_policy(); the mapping only on 6.18), for
/// a kernel that maps guest_memfd and lets this task use node 0.
fn mempolicy(p: &Profile) -> Option<Scenario> {
    use gmemfuzz_backends::abi::mempolicy::{self as mpol, policy_value};
    use gmemfuzz_backends::SkipReason;
    if p.gmem_flags & MMAP == 0 || p.numa.nodes & 1 == 0 {
        return None;
    }
    let mbind = |offset: u64, len: u64, mode: u32, nodes: u64, flags: u32| Op::Mbind { gmem: G0, offset, len, mode, nodes, flags };
    let get = |offset: u64| Op::GetMempolicy { gmem: G0, offset };
    let policy = |mode: u32, nodes: u64| Outcome::Value(policy_value(mode, nodes));
    let einval = err(Errno::EINVAL);
    // A node this task may not use: mpol_set_nodemask() leaves no node (EINVAL).
    let outside = !p.numa.nodes & p.numa.nodes.wrapping_add(1);
    let kept = |mode: u32, nodes: u64| if p.numa.file_policy { policy(mode, nodes) } else { policy(mpol::DEFAULT, 0) };
    Some(Scenario {
        profile: p.clone(),
        name: "mempolicy",
        source: "mm/mempolicy.c kernel_mbind(), do_mbind(), mpol_new(), do_get_mempolicy(); 7.2 guest_memfd.c kvm_gmem_set_policy()",
        steps: vec![
            (create(4, MMAP), OK),
            (Op::Map { gmem: G0 }, OK),
            (mbind(0, 2 * P, mpol::BIND, 1, 0), OK),
            (get(P + 5), policy(mpol::BIND, 1)),
            (get(2 * P), policy(mpol::DEFAULT, 0)),
            // `if (start & ~PAGE_MASK) return -EINVAL;`
            (mbind(1, P, mpol::BIND, 1, 0), einval.clone()),
            // sanitize_mpol_flags(): a mode past MPOL_MAX, static with relative nodes, NUMA
            // balancing with a mode other than bind or preferred-many.
            (mbind(0, P, mpol::MAX, 1, 0), einval.clone()),
            (mbind(0, P, mpol::BIND | mpol::F_STATIC_NODES | mpol::F_RELATIVE_NODES, 1, 0), einval.clone()),
            (mbind(0, P, mpol::INTERLEAVE | mpol::F_NUMA_BALANCING, 1, 0), einval.clone()),
            // mpol_new(): default takes no nodes, local none, bind some.
            (mbind(0, P, mpol::DEFAULT, 1, 0), einval.clone()),
            (mbind(0, P, mpol::LOCAL, 1, 0), einval.clone()),
            (mbind(0, P, mpol::BIND, 0, 0), einval.clone()),
            (mbind(0, P, mpol::BIND, outside, 0), einval.clone()),
            // `if (flags & ~(unsigned long)MPOL_MF_VALID) return -EINVAL;`
            (mbind(0, P, mpol::BIND, 1, 1 << 3), einval),
            (mbind(0, P, mpol::BIND, 1, mpol::MF_MOVE_ALL), if p.numa.move_all { OK } else { err(Errno::EPERM) }),
            // PAGE_ALIGN(len) of 0 and of the last page's worth: `if (end == start) return 0;`
            (mbind(0, 0, mpol::BIND, 1, 0), OK),
            (mbind(0, u64::MAX, mpol::BIND, 0, 0), OK),
            // Preferred without nodes is local; static nodes are shown as given.
            (mbind(P, P, mpol::PREFERRED, 0, 0), OK),
            (get(P), policy(mpol::LOCAL, 0)),
            (mbind(3 * P, P, mpol::BIND | mpol::F_STATIC_NODES, 0x8001, 0), OK),
            (get(3 * P), policy(mpol::BIND | mpol::F_STATIC_NODES, 0x8001)),
            // A new mapping: the file's policies (7.2) or none.
            (Op::Unmap { gmem: G0 }, OK),
            (Op::Map { gmem: G0 }, OK),
            (get(0), kept(mpol::BIND, 1)),
            (get(P), kept(mpol::LOCAL, 0)),
            // The new VMA has no policy, and neither has a default one: mbind_range() sees
            // them equal and leaves the file's alone.
            (mbind(0, 4 * P, mpol::DEFAULT, 0, 0), OK),
            (get(0), kept(mpol::BIND, 1)),
            // A VMA of its own for page 2, then a default policy for it: the VMA merges with
            // its default neighbours, and set_policy clears the file's policy of the merged
            // VMA, all four pages.
            (mbind(2 * P, P, mpol::BIND, 1, 0), OK),
            (get(2 * P), policy(mpol::BIND, 1)),
            (get(P), kept(mpol::LOCAL, 0)),
            (mbind(2 * P, P, mpol::DEFAULT, 0, 0), OK),
            (get(0), policy(mpol::DEFAULT, 0)),
            (get(3 * P), policy(mpol::DEFAULT, 0)),
            // Once the VMA has one, a default one removes the file's too.
            (mbind(0, 4 * P, mpol::INTERLEAVE, 1, 0), OK),
            (get(2 * P), policy(mpol::INTERLEAVE, 1)),
            (mbind(0, 4 * P, mpol::DEFAULT, 0, 0), OK),
            (get(0), policy(mpol::DEFAULT, 0)),
            // Past the mapping: not sent (the range would reach other memory).
            (mbind(3 * P, 2 * P, mpol::BIND, 1, 0), Outcome::Skipped(SkipReason::OutOfRange)),
            (get(4 * P), Outcome::Skipped(SkipReason::OutOfRange)),
        ],
    })
}
