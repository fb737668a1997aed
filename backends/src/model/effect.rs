//! What an op did to the kernel's state, as the model tells it (`Model::predict`): values a
//! backend with a memory side of its own (the sim) follows, instead of reading the model's
//! state before and after the op. In the order the op did them.

use crate::op::GmemId;
use crate::outcome::Outcome;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Effect {
    /// A memslot was deleted (KVM_SET_USER_MEMORY_REGION2 with size 0): GFNs
    /// [base_gfn, base_gfn + npages) are zapped (kvm_arch_flush_shadow_memslot()) and the
    /// harness frees the slot's anonymous memory.
    SlotDeleted { slot: u32, base_gfn: u64, npages: u64 },
    /// A memslot moved or changed its flags (KVM_MR_MOVE, KVM_MR_FLAGS_ONLY): its old GFNs
    /// [base_gfn, base_gfn + npages) are zapped.
    SlotChanged { slot: u32, base_gfn: u64, npages: u64 },
    /// KVM_SET_MEMORY_ATTRIBUTES succeeded: GFNs [first, end) have `attributes` now.
    AttributesSet { first: u64, end: u64, attributes: u64 },
    /// fallocate(PUNCH_HOLE) over file pages [first, end) (kvm_gmem_punch_hole()): the
    /// bindings over it are invalidated and the pages there (below the file's end) freed.
    Punched { gmem: GmemId, first: u64, end: u64 },
    /// fallocate() allocated file pages [first, end) (kvm_gmem_allocate()).
    Allocated { gmem: GmemId, first: u64, end: u64 },
    /// The file's host mapping went (munmap): the MMU notifier zaps what was mapped through it.
    MappingGone { gmem: GmemId },
    /// The file's last reference went: kvm_gmem_release() invalidated its bindings, and its
    /// pages were freed.
    FileReleased { gmem: GmemId },
    /// The VM fd was closed: everything mapped is zapped, the slots' memory freed.
    VmDestroyed,
    /// A guest access to a GFN that no memslot of the vCPU holds left as KVM_EXIT_MMIO: KVM
    /// may keep an MMIO SPTE for it (`harness::known`).
    MmioExit { gfn: u64 },
}

/// What the model predicts for one op: its outcome, and what it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    pub outcome: Outcome,
    pub effects: Vec<Effect>,
}
