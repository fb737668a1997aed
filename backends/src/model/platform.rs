//! The SNP-like software platform's reverse map (harness/lane/patches/sw-rmp-*.patch), as
//! the model predicts it: which GFN each guest_memfd page is assigned to. The kernel keeps
//! it by PFN, which userspace cannot see; the model keeps it by file page, and the probe
//! compares the GFNs (`Probe::PlatformMap`), one per assigned page.
//!
//! The rules, from the patch over 7.2's guest_memfd:
//! - kvm_gmem_get_pfn() calls kvm_gmem_prepare_folio() on every call, which calls
//!   kvm_arch_gmem_prepare(kvm, gfn, pfn, order); for a software-protected VM that is
//!   kvm_sw_rmp_prepare(), which (re)assigns the PFN to `gfn` unless the slot is
//!   guest_memfd-only (sw_rmp_tracks(): `slot && !kvm_memslot_is_gmem_only(slot)`; a slot is
//!   guest_memfd-only exactly when its file was made with GUEST_MEMFD_FLAG_MMAP,
//!   kvm_gmem_bind()). kvm_gmem_get_pfn() runs for every private fault (`Route::Gmem` with
//!   `private`): guest accesses, guest probes and KVM_PRE_FAULT_MEMORY alike.
//! - The entry goes when guest_memfd frees the folio: kvm_gmem_free_folio() calls
//!   kvm_arch_gmem_invalidate() (kvm_sw_rmp_invalidate()) as the folio leaves the page cache,
//!   on punch-hole and when the inode is evicted at release: wherever the model drops the page.
//! - Nothing else changes it: conversions, unbinding and zaps leave the assignment.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Model;
use crate::op::{GmemId, GUEST_MEMFD_FLAG_MMAP};
use crate::outcome::Observation;

/// The GFN each page of a file is assigned to, by file page index; shared between clones of
/// the model until one of them changes it.
pub type Assignments = Arc<BTreeMap<u64, u64>>;

impl Model {
    /// A private fault reached page `index` of `gmem` for `gfn` (kvm_gmem_get_pfn()).
    pub(super) fn assign(&mut self, gmem: GmemId, index: u64, gfn: u64) {
        let file = &self.gmems[gmem];
        // kvm_sw_rmp_prepare(): `if (!sw_rmp_tracks(kvm, gfn)) return 0;` where
        // sw_rmp_tracks() wants `kvm->arch.vm_type == KVM_X86_SW_PROTECTED_VM` and a slot
        // that is not guest_memfd-only.
        if self.profile.vm_type != 1 || file.flags & GUEST_MEMFD_FLAG_MMAP != 0 || file.assigned.get(&index) == Some(&gfn) {
            return;
        }
        Arc::make_mut(&mut self.gmems[gmem].assigned).insert(index, gfn);
    }

    /// Pages [first, end) of `gmem` leave the page cache: their entries are reclaimed.
    pub(super) fn reclaim(&mut self, gmem: GmemId, first: u64, end: u64) {
        if self.gmems[gmem].assigned.range(first..end).next().is_none() {
            return;
        }
        Arc::make_mut(&mut self.gmems[gmem].assigned).retain(|&index, _| !(first..end).contains(&index));
    }

    /// What the VM's reverse map lists: the GFN of every assigned page, ascending.
    pub(super) fn platform_map(&self) -> Observation {
        let mut gfns: Vec<u64> = self.gmems.iter().flat_map(|(_, f)| f.assigned.values().copied()).collect();
        gfns.sort_unstable();
        Observation::PlatformMap(gfns)
    }
}
