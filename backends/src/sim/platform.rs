//! Platform layers: what a confidential-computing design does on the fault and
//! invalidation paths, and the invariants it needs KVM to keep.

use super::Violation;
use std::collections::{BTreeMap, BTreeSet};

use super::mem::Stage2;

/// Why KVM removes a private mapping: the TDX design needs this on the unmap path, because
/// the page is either kept (and must be accepted again) or about to be freed (reclaimed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// KVM_SET_MEMORY_ATTRIBUTES conversion.
    SetAttributes,
    /// fallocate(PUNCH_HOLE) on the guest_memfd.
    PunchHole,
    /// The guest_memfd's last reference went away (kvm_gmem_release).
    Release,
    /// Memslot deletion or move (kvm_arch_flush_shadow_memslot).
    MemslotDelete,
    /// VM teardown.
    VmDestroy,
    /// The host mapping backing a shared GFN went away (mmu notifier).
    HostUnmap,
}

impl Reason {
    /// The page is about to be freed: it leaves the platform for good.
    pub fn frees(self) -> bool {
        matches!(self, Reason::PunchHole | Reason::Release)
    }
}

/// Hooks KVM and guest_memfd call. Every `Err` is a broken platform invariant.
pub trait Platform: Send {
    fn name(&self) -> &'static str;
    fn reset(&mut self);
    /// A private fault maps `pfn` at `gfn`. Returns whether the page's content is lost
    /// (a TDX page that must be accepted again, see `TdxLike::zero_on_reaccept`).
    fn map_private(&mut self, gfn: u64, pfn: u64) -> Result<bool, Violation>;
    /// KVM zapped the private mapping `gfn -> pfn` (page-table entry removal).
    fn unmap_private(&mut self, gfn: u64, pfn: u64, reason: Reason) -> Result<(), Violation>;
    /// guest_memfd is about to free these PFNs (kvm_arch_gmem_invalidate).
    fn gmem_invalidate(&mut self, pfns: &[u64]) -> Result<(), Violation>;
    /// The allocator is about to free `pfn`.
    fn before_free(&mut self, pfn: u64) -> Result<(), Violation>;
    /// End-of-op consistency with KVM's stage-2 mappings.
    fn check(&self, s2: &Stage2) -> Result<(), Violation>;
}

/// TDX-like: private translations live in a Secure-EPT that only the TDX module edits.
/// Removal is driven by KVM's page-table zaps (no GFN, no removal) and carries a reason.
#[derive(Default)]
pub struct TdxLike {
    /// GFN -> PFN of every private page the TD can reach.
    sept: BTreeMap<u64, u64>,
    /// Pages removed for conversion or slot deletion: the guest must accept them again.
    pending_accept: BTreeSet<u64>,
    /// Pages removed because guest_memfd frees them: they must be freed within the op.
    reclaimed: BTreeSet<u64>,
    /// Real TDX zeroes a page the guest accepts again. The reference model follows
    /// software-protected VMs, where private content survives a conversion round trip,
    /// so this is off by default; on, the simulation diverges from the model there.
    pub zero_on_reaccept: bool,
}

impl TdxLike {
    /// A TDX layer that zeroes pages the guest accepts again (real TDX behaviour).
    pub fn zeroing_on_reaccept() -> TdxLike {
        TdxLike { zero_on_reaccept: true, ..TdxLike::default() }
    }
}

impl Platform for TdxLike {
    fn name(&self) -> &'static str {
        "tdx"
    }

    fn reset(&mut self) {
        *self = TdxLike { zero_on_reaccept: self.zero_on_reaccept, ..TdxLike::default() };
    }

    fn map_private(&mut self, gfn: u64, pfn: u64) -> Result<bool, Violation> {
        if let Some(old) = self.sept.insert(gfn, pfn) {
            return Err(Violation::SeptRemapped { gfn, old });
        }
        Ok(self.pending_accept.remove(&pfn) && self.zero_on_reaccept)
    }

    fn unmap_private(&mut self, gfn: u64, pfn: u64, reason: Reason) -> Result<(), Violation> {
        match self.sept.remove(&gfn) {
            None => return Err(Violation::SeptRemovedTwice { gfn, reason }),
            Some(p) if p != pfn => return Err(Violation::SeptWrongPfn { gfn, mapped: p, removed: pfn }),
            Some(_) => {}
        }
        if reason.frees() {
            self.reclaimed.insert(pfn);
        } else {
            self.pending_accept.insert(pfn);
        }
        Ok(())
    }

    fn gmem_invalidate(&mut self, _pfns: &[u64]) -> Result<(), Violation> {
        // TDX does not use the guest_memfd invalidate hook: it cleans up when KVM zaps.
        Ok(())
    }

    fn before_free(&mut self, pfn: u64) -> Result<(), Violation> {
        if let Some((gfn, _)) = self.sept.iter().find(|(_, p)| **p == pfn) {
            return Err(Violation::SeptFreedWhileMapped { pfn, gfn: *gfn });
        }
        self.reclaimed.remove(&pfn);
        self.pending_accept.remove(&pfn);
        Ok(())
    }

    fn check(&self, s2: &Stage2) -> Result<(), Violation> {
        let private: BTreeMap<u64, u64> = s2.iter().filter(|(_, e)| e.private).map(|(g, e)| (*g, e.pfn)).collect();
        if private != self.sept {
            return Err(Violation::SeptDisagrees { sept: self.sept.clone().into_iter().collect(), kvm: private.into_iter().collect() });
        }
        if let Some(pfn) = self.reclaimed.first() {
            return Err(Violation::SeptRemovedNotFreed { pfn: *pfn });
        }
        Ok(())
    }
}

/// SNP-like: each PFN has an RMP entry; a private fault assigns the page to the guest,
/// and guest_memfd's invalidate hook (over PFN ranges, no GFN or memslot needed) must
/// return it to shared before the page is freed. Zaps of the nested page table leave the
/// RMP alone.
#[derive(Default)]
pub struct SnpLike {
    /// PFNs whose RMP entry is guest-owned (private).
    rmp_private: BTreeSet<u64>,
    /// PFNs passed to the invalidate hook and not yet freed.
    invalidated: BTreeSet<u64>,
}

impl Platform for SnpLike {
    fn name(&self) -> &'static str {
        "snp"
    }

    fn reset(&mut self) {
        *self = SnpLike::default();
    }

    fn map_private(&mut self, _gfn: u64, pfn: u64) -> Result<bool, Violation> {
        // kvm_gmem_prepare_folio -> sev_gmem_prepare: rmp_make_private (once per page).
        self.rmp_private.insert(pfn);
        Ok(false)
    }

    fn unmap_private(&mut self, _gfn: u64, _pfn: u64, _reason: Reason) -> Result<(), Violation> {
        Ok(())
    }

    fn gmem_invalidate(&mut self, pfns: &[u64]) -> Result<(), Violation> {
        for &pfn in pfns {
            if !self.invalidated.insert(pfn) {
                return Err(Violation::RmpInvalidatedTwice { pfn });
            }
            // sev_gmem_invalidate: rmp_make_shared for private pages, skip shared ones.
            self.rmp_private.remove(&pfn);
        }
        Ok(())
    }

    fn before_free(&mut self, pfn: u64) -> Result<(), Violation> {
        if self.rmp_private.contains(&pfn) {
            return Err(Violation::RmpFreedPrivate { pfn });
        }
        self.invalidated.remove(&pfn);
        Ok(())
    }

    fn check(&self, s2: &Stage2) -> Result<(), Violation> {
        match s2.iter().find(|(_, e)| e.private && !self.rmp_private.contains(&e.pfn)) {
            Some((gfn, e)) => Err(Violation::RmpSharedMapping { gfn: *gfn, pfn: e.pfn }),
            None => Ok(()),
        }
    }
}
