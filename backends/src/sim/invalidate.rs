//! The invalidation paths: stage-2 zaps (with the platform's unmap hook), guest_memfd
//! page frees (with the platform's invalidate hook), and what each op triggers.

use super::bug::{InjectedBug, HUGE_PAGES};
use super::platform::Reason;
use super::SimBackend;
use crate::model::Shared;
use crate::op::{GmemId, PAGE_SIZE};

/// Which stage-2 entries a zap removes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Filter {
    All,
    SharedOnly,
}

impl SimBackend {
    /// kvm_mmu_unmap_gfn_range() over [start, end): drops cached translations and tells
    /// the platform about private ones.
    pub(super) fn zap(&mut self, start: u64, end: u64, reason: Reason, filter: Filter) {
        if start >= end {
            return;
        }
        let victims: Vec<(u64, super::mem::S2Entry)> =
            self.s2.range(start..end).filter(|(_, e)| filter == Filter::All || !e.private).map(|(g, e)| (*g, *e)).collect();
        let forget = match self.bug {
            Some(InjectedBug::StaleMappingCache) if victims.len() >= 2 => victims.last().map(|v| v.0),
            _ => None,
        };
        let skip_hook = self.bug == Some(InjectedBug::HugeRangeSkipsCleanup) && end - start >= HUGE_PAGES;
        for (gfn, entry) in victims {
            if forget != Some(gfn) {
                self.s2.remove(&gfn);
            }
            if entry.private && !skip_hook {
                if let Err(e) = self.platform.unmap_private(gfn, entry.pfn, reason) {
                    self.violate(e);
                }
            }
        }
    }

    /// kvm_gmem_invalidate_begin(): zaps, for every binding of the file, the GFNs that map
    /// file pages [first, end).
    pub(super) fn invalidate_bindings(&mut self, gmem: GmemId, first: u64, end: u64, reason: Reason) {
        let ranges: Vec<(u64, u64)> = self
            .model
            .slots()
            .values()
            .filter_map(|s| {
                let b = s.binding.filter(|b| b.gmem == gmem)?;
                let (lo, hi) = (first.max(b.pgoff), end.min(b.pgoff + s.npages));
                (lo < hi).then(|| (s.base_gfn + lo - b.pgoff, s.base_gfn + hi - b.pgoff))
            })
            .collect();
        for (start, mut stop) in ranges {
            if self.bug == Some(InjectedBug::InvalidationOffByOne) {
                stop -= 1;
            }
            self.zap(start, stop, reason, Filter::All);
        }
    }

    /// The mmu notifier for the file's host mapping (truncation or munmap): zaps shared
    /// translations of slots whose userspace_addr is that mapping.
    pub(super) fn zap_host_mappings(&mut self, gmem: GmemId, first: u64, end: u64) {
        let ranges: Vec<(u64, u64)> = self
            .model
            .slots()
            .values()
            .filter_map(|s| match s.shared {
                Shared::GmemMap { gmem: g, pgoff, .. } if g == gmem => {
                    let (lo, hi) = (first.max(pgoff), end.min(pgoff + s.npages));
                    (lo < hi).then(|| (s.base_gfn + lo - pgoff, s.base_gfn + hi - pgoff))
                }
                _ => None,
            })
            .collect();
        for (start, stop) in ranges {
            self.zap(start, stop, Reason::HostUnmap, Filter::SharedOnly);
        }
    }

    /// Frees file pages [first, end): kvm_gmem_free_folio() -> kvm_arch_gmem_invalidate()
    /// over the PFNs, then the allocator.
    pub(super) fn free_file_pages(&mut self, gmem: GmemId, first: u64, end: u64) {
        let npages = self.model.gmem(gmem).map_or(0, |f| f.size / PAGE_SIZE);
        let end = end.min(npages);
        if first >= end {
            return;
        }
        let file = &mut self.files[gmem.0 as usize];
        let indices: Vec<u64> = file.pages.range(first..end).map(|(i, _)| *i).collect();
        let pfns: Vec<u64> = indices
            .iter()
            .map(|i| {
                file.prepared.remove(i);
                file.pages.remove(i).expect("listed above")
            })
            .collect();
        let skip_hook = self.bug == Some(InjectedBug::HugeRangeSkipsCleanup) && end - first >= HUGE_PAGES;
        if !pfns.is_empty() && !skip_hook {
            if let Err(e) = self.platform.gmem_invalidate(&pfns) {
                self.violate(e);
            }
        }
        for pfn in pfns {
            self.free_pfn(pfn);
        }
    }

    pub(super) fn free_pfn(&mut self, pfn: u64) {
        if let Err(e) = self.platform.before_free(pfn) {
            self.violate(e);
        }
        if let Err(e) = self.pfns.free(pfn) {
            self.violate(e);
        }
    }

    /// fallocate(PUNCH_HOLE): kvm_gmem_punch_hole().
    pub(super) fn punch(&mut self, gmem: GmemId, first: u64, end: u64) {
        if self.bug != Some(InjectedBug::PunchSkipsInvalidation) {
            self.invalidate_bindings(gmem, first, end, Reason::PunchHole);
        }
        // truncate_inode_pages_range() unmaps the pages from the host mapping first.
        self.zap_host_mappings(gmem, first, end);
        self.free_file_pages(gmem, first, end);
    }

    /// kvm_gmem_release() then eviction of the inode.
    pub(super) fn release(&mut self, gmem: GmemId) {
        if self.bug != Some(InjectedBug::ReleaseBeforeUnbind) {
            self.invalidate_bindings(gmem, 0, u64::MAX, Reason::Release);
        }
        self.free_file_pages(gmem, 0, u64::MAX);
    }

    /// Memslot deletion: kvm_arch_flush_shadow_memslot(), then the harness frees the
    /// slot's anonymous memory.
    pub(super) fn delete_slot(&mut self, slot: u32, base_gfn: u64, npages: u64) {
        self.zap(base_gfn, base_gfn + npages, Reason::MemslotDelete, Filter::All);
        self.free_anon(|s| s == slot);
    }

    pub(super) fn free_anon(&mut self, which: impl Fn(u32) -> bool) {
        let keys: Vec<(u32, u64)> = self.anon.keys().filter(|(s, _)| which(*s)).copied().collect();
        for key in keys {
            let pfn = self.anon.remove(&key).expect("listed above");
            self.free_pfn(pfn);
        }
    }

    /// KVM_SET_MEMORY_ATTRIBUTES: nothing happens when the range already has the
    /// attributes (kvm_range_has_memory_attributes); otherwise the whole range is zapped
    /// (kvm_arch_pre_set_memory_attributes -> kvm_mmu_unmap_gfn_range).
    pub(super) fn set_attributes(&mut self, start: u64, end: u64, attributes: u64) {
        // kvm_vm_set_mem_attributes(): nothing to do when the range has these attributes
        // already (the model lets a huge range through only when that is so for 0).
        let unchanged = match attributes {
            0 => self.attributes.range(start..end).next().is_none(),
            _ => (start..end).all(|g| self.attributes.get(&g).copied().unwrap_or(0) == attributes),
        };
        if unchanged {
            return;
        }
        let filter = if self.bug == Some(InjectedBug::ConversionSkipsPrivate) { Filter::SharedOnly } else { Filter::All };
        self.zap(start, end, Reason::SetAttributes, filter);
        for gfn in start..end {
            if attributes == 0 {
                self.attributes.remove(&gfn);
            } else {
                self.attributes.insert(gfn, attributes);
            }
        }
    }
}
