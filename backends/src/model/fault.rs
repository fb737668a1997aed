//! Where a guest access to one GFN goes: the x86 fault path, once. The model (`view.rs`)
//! follows the route into its pages; the sim (`sim/guest.rs`) into its PFNs and stage-2 cache.

use super::{Model, Shared};
use crate::op::{GmemId, GUEST_MEMFD_FLAG_INIT_SHARED, KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_MEM_READONLY, PAGE_SIZE};

/// The end of a guest fault's walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through guest_memfd (a private GFN, or a guest_memfd-only slot): page `index` of
    /// `gmem`, which the fault allocates and prepares (kvm_gmem_get_pfn()).
    Gmem { gmem: GmemId, index: u64, private: bool },
    /// Shared, through userspace_addr, which is the file's mapping: page `index` of `gmem`,
    /// faulted in and prepared by kvm_gmem_fault_user_mapping().
    Mapping { gmem: GmemId, index: u64, readonly: bool },
    /// Shared, through userspace_addr, which is anonymous memory: page `index` of `slot`.
    Anon { slot: u32, index: u64, readonly: bool },
    /// The access leaves as KVM_EXIT_MMIO; `no_slot`: no memslot of the vCPU holds the GFN
    /// (KVM may then keep an MMIO SPTE for it: `harness::known`).
    Mmio { no_slot: bool },
    /// KVM_RUN fails with KVM_EXIT_MEMORY_FAULT for the GFN's page.
    Fault { gpa: u64, flags: u64 },
}

impl Model {
    /// The route of a guest access to `gfn` (`write`: a store), with the GFN's privacy as the
    /// caller keeps it (the sim keeps its own attributes). The memslot is looked up in
    /// address space 0 only, as the vCPU does: the fault takes `fault->slot =
    /// kvm_vcpu_gfn_to_memslot(vcpu, fault->gfn)` (kvm_mmu_do_page_fault()), which searches
    /// `kvm_vcpu_memslots(vcpu)` = `__kvm_memslots(vcpu->kvm, kvm_arch_vcpu_memslots_id(vcpu))`,
    /// and the harness's vCPU never enters SMM (`address_space`).
    pub fn route(&self, gfn: u64, write: bool, private: bool) -> Route {
        let fault = Route::Fault { gpa: gfn * PAGE_SIZE, flags: if private { KVM_MEMORY_EXIT_FLAG_PRIVATE } else { 0 } };
        let Some((id, slot)) = self.guest_slot(gfn) else {
            // kvm_handle_noslot_fault() (6.12): `if (fault->is_private) {
            // kvm_mmu_prepare_memory_fault_exit(vcpu, fault); return -EFAULT; }`
            if private {
                return fault;
            }
            // No memslot: the access is emulated and leaves as KVM_EXIT_MMIO (probe).
            return Route::Mmio { no_slot: true };
        };
        let index = gfn - slot.base_gfn;
        // kvm_faultin_pfn(): private GFNs and (6.18, 7.2) guest_memfd-only slots fault through
        // kvm_mmu_faultin_pfn_gmem() (7.2 __kvm_mmu_faultin_pfn(): `if (fault->is_private ||
        // kvm_memslot_is_gmem_only(fault->slot)) return kvm_mmu_faultin_pfn_gmem(vcpu,
        // fault);`), shared GFNs alike: kvm_gmem_get_pfn() checks neither the attributes nor
        // INIT_SHARED. kvm_gmem_get_pfn() fails with -EFAULT when the file was
        // released (slot->gmem.file == NULL) and KVM reports KVM_EXIT_MEMORY_FAULT for the
        // page (kvm_mmu_prepare_memory_fault_exit: gpa = gfn << PAGE_SHIFT, size PAGE_SIZE).
        // A private GFN in a slot without guest_memfd exits alike (!kvm_slot_can_be_private).
        if private || slot.gmem_only {
            return match slot.binding.filter(|b| !b.file_gone) {
                Some(b) => Route::Gmem { gmem: b.gmem, index: b.pgoff + index, private },
                None => fault,
            };
        }
        // Shared GFN, ordinary fault through userspace_addr.
        let readonly = slot.flags & KVM_MEM_READONLY != 0;
        if write && readonly {
            return Route::Mmio { no_slot: false };
        }
        match slot.shared {
            Shared::GmemMap { gmem, pgoff, generation } => {
                // The hva is the file's mapping: KVM faults the page in through
                // kvm_gmem_fault_user_mapping(). Probe (6.18 + kvm_pvm): when that fails — the
                // mapping is gone, or the file lacks INIT_SHARED (SIGBUS) — the access leaves
                // as KVM_EXIT_MMIO.
                let file = &self.gmems[gmem];
                if !file.mapped || file.map_generation != generation || file.flags & GUEST_MEMFD_FLAG_INIT_SHARED == 0 {
                    return Route::Mmio { no_slot: false };
                }
                Route::Mapping { gmem, index: pgoff + index, readonly }
            }
            Shared::Anon => Route::Anon { slot: id, index, readonly },
        }
    }
}
