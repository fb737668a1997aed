//! What an op did to the kernel's state, as the model tells it (`Model::predict`): values a
//! backend with a memory side of its own (the sim) follows, instead of reading the model's
//! state before and after the op. In the order the op did them.

use super::PageKey;
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
    /// Access `access` of a guest op reached `page` at `offset` (what a divergence of that
    /// access names, and reads the page's history of).
    Touched { access: usize, page: PageKey, offset: u64 },
}

/// What the model predicts for one op: its outcome, and what it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    pub outcome: Outcome,
    pub effects: Vec<Effect>,
}

/// The GFNs the model told exited as MMIO without a memslot (`Effect::MmioExit`) so far in a
/// program, in one of the states it may be in: KVM may keep an MMIO SPTE for each (what the
/// known-bug filter matches, `harness::known`). Kept beside the model's state by whoever
/// reads the effects: the runner for each state, the race search for each order.
/// Beside them, the GFNs a guest member of a group touched (`insert_raced`): there KVM may
/// keep an MMIO SPTE that no exit the harness saw shows (see `may_keep_mmio_spte`).
/// Both sets are shared between clones until one of them adds a GFN it lacks (the race
/// search clones them once per state it tries, and a GFN exits again and again).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MmioExits {
    exited: std::sync::Arc<Vec<u64>>,
    raced: std::sync::Arc<Vec<u64>>,
}

/// Inserts `gfn` into the sorted set `set` (unshared first, where it is new).
fn insert_sorted(set: &mut std::sync::Arc<Vec<u64>>, gfn: u64) {
    if let Err(at) = set.binary_search(&gfn) {
        std::sync::Arc::make_mut(set).insert(at, gfn);
    }
}

impl MmioExits {
    /// Whether the model told an MMIO exit of `gfn`.
    pub fn contains(&self, gfn: u64) -> bool {
        self.exited.binary_search(&gfn).is_ok()
    }

    pub fn insert(&mut self, gfn: u64) {
        insert_sorted(&mut self.exited, gfn);
    }

    /// Records that a guest access racing other members touched `gfn`.
    pub fn insert_raced(&mut self, gfn: u64) {
        insert_sorted(&mut self.raced, gfn);
    }

    /// Whether KVM may keep an MMIO SPTE for `gfn`: it exited as MMIO, or a racing guest
    /// access touched it. Seen in the lane on 7.2.13 (issue 21's group face): after a group
    /// of reads racing an unbind and a conversion of their GFN, every read answered a
    /// memory fault, yet the next sequential fault on the now private GFN came without
    /// PFERR_PRIVATE_ACCESS, which kvm_mmu_page_fault() omits only on the reserved-bit
    /// (MMIO SPTE) path; the SPTE is made without an exit the harness sees.
    pub fn may_keep_mmio_spte(&self, gfn: u64) -> bool {
        self.contains(gfn) || self.raced.binary_search(&gfn).is_ok()
    }

    /// The GFNs racing guest accesses touched.
    pub fn raced(&self) -> impl Iterator<Item = u64> + '_ {
        self.raced.iter().copied()
    }

    /// Adds the MMIO exits among `effects`.
    pub fn extend<'a>(&mut self, effects: impl IntoIterator<Item = &'a Effect>) {
        for effect in effects {
            if let Effect::MmioExit { gfn } = *effect {
                self.insert(gfn);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exited.is_empty() && self.raced.is_empty()
    }

    /// The GFNs that exited as MMIO.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.exited.iter().copied()
    }
}
