//! Memory failure on a guest_memfd page, injected with madvise(MADV_HWPOISON): what the
//! kernel leaves behind (7.2.13 and 7.3-rc7 read alike), in two places that outlive each
//! other.
//!
//! - The folio: memory_failure() sets PG_hwpoison (`TestSetPageHWPoison(p)`) and calls
//!   truncate_error_folio() -> kvm_gmem_error_folio(), which zaps KVM's mappings of the page
//!   (kvm_gmem_invalidate_start()) but does not truncate it ("Do not truncate the range,
//!   what action is taken in response to the error is userspace's decision"). The folio
//!   stays in the page cache, with the reference madvise_inject_error()'s
//!   get_user_pages_fast() took (MF_COUNT_INCREASED; nothing puts it on this path), until a
//!   punch truncates it.
//! - The host mapping: hwpoison_user_mappings() -> unmap_poisoned_folio() replaces the
//!   page's PTE with a hwpoison entry (try_to_unmap_one(): `make_hwpoison_entry(subpage)`).
//!   Truncation leaves it (truncate_cleanup_folio() unmaps only a `folio_mapped()` folio, and
//!   the entry is no mapping of it); zap_nonpresent_ptes() drops it where
//!   `should_zap_cows(details)`: MADV_DONTNEED (zap_page_range_single(), no details) and
//!   munmap() (unmap_vmas(): `.even_cows = true`).

use std::collections::{BTreeMap, BTreeSet};

/// The poisoned pages of one file.
#[derive(Clone, Default, Debug, PartialEq, Eq, Hash)]
pub struct Poison {
    /// File pages whose folio is poisoned and still in the page cache.
    folios: BTreeSet<u64>,
    /// Pages of the file's current mapping whose PTE is a hwpoison entry.
    ptes: BTreeSet<u64>,
    /// Pages whose folio may carry PG_dirty, which nothing clears but truncation
    /// (kvm_gmem_aops: `.dirty_folio = noop_dirty_folio`, no writeback): `true` where a host
    /// store made it surely dirty (a write fault: do_shared_fault() ->
    /// fault_dirty_shared_page() -> folio_mark_dirty(); a store through a PTE already
    /// writable sets the PTE's dirty bit, which try_to_unmap_one() and zapping pass to the
    /// folio), `false` where only a guest access touched it (KVM marks the folio dirty when
    /// it faults the page in writable, which the model does not see: `Model::guest_dirtied`).
    dirty: BTreeMap<u64, bool>,
}

impl Poison {
    /// Whether nothing is poisoned or dirty (the tests ask; the model's own paths ask the
    /// ranged `any_folio_in` and `any_pte_in` before a change, so that an untouched file
    /// stays shared between clones of the model).
    #[cfg(test)]
    pub fn is_clear(&self) -> bool {
        self.folios.is_empty() && self.ptes.is_empty() && self.dirty.is_empty()
    }

    /// Whether a host access to page `index` through the mapping meets the poison: the
    /// hwpoison PTE (do_swap_page(): `VM_FAULT_HWPOISON`), or, with the PTE gone, the folio
    /// the fault finds again (kvm_gmem_fault_user_mapping() has no hwpoison check; __do_fault()
    /// does: `if (unlikely(PageHWPoison(vmf->page)))`, and mapping_evict_folio() keeps the
    /// folio, its count raised by the leaked reference: `VM_FAULT_HWPOISON`).
    pub fn refuses_host(&self, index: u64) -> bool {
        self.folios.contains(&index) || self.ptes.contains(&index)
    }

    /// Whether the folio of page `index` is poisoned: kvm_gmem_get_pfn() refuses it
    /// (`if (folio_test_hwpoison(folio)) { ... return ERR_PTR(-EHWPOISON); }`).
    pub fn folio(&self, index: u64) -> bool {
        self.folios.contains(&index)
    }

    /// Whether the mapping holds a hwpoison entry for page `index`: mincore() counts it
    /// resident (mincore_pte_range() -> mincore_swap(): `if (!softleaf_is_swap(entry))
    /// return !shmem;`, "hwpoison entries which are always uptodate").
    pub fn pte(&self, index: u64) -> bool {
        self.ptes.contains(&index)
    }

    /// Whether the folio of page `index` is dirty: `Some(true)` surely, `Some(false)`
    /// perhaps, `None` not.
    pub fn dirty(&self, index: u64) -> Option<bool> {
        self.dirty.get(&index).copied()
    }

    /// A store to page `index`: by the host (`surely` dirty) or by the guest (perhaps).
    pub fn written(&mut self, index: u64, surely: bool) {
        let d = self.dirty.entry(index).or_insert(surely);
        *d |= surely;
    }

    /// memory_failure() on page `index`: its folio and its PTE.
    pub fn poison(&mut self, index: u64) {
        self.folios.insert(index);
        self.ptes.insert(index);
    }

    /// Pages [first, end) truncated: their folios (poison and dirt with them) are gone.
    pub fn truncated(&mut self, first: u64, end: u64) {
        self.folios.retain(|i| !(first..end).contains(i));
        self.dirty.retain(|i, _| !(first..end).contains(i));
    }

    /// Whether truncating [first, end) changes anything (an empty or reversed range: no).
    pub fn any_folio_in(&self, first: u64, end: u64) -> bool {
        first < end && (self.folios.range(first..end).next().is_some() || self.dirty.range(first..end).next().is_some())
    }

    /// Whether zapping [first, end) changes anything (an empty or reversed range: no).
    pub fn any_pte_in(&self, first: u64, end: u64) -> bool {
        first < end && self.ptes.range(first..end).next().is_some()
    }

    /// The mapping's PTEs of [first, end) zapped (MADV_DONTNEED), or all of them (munmap).
    pub fn zapped(&mut self, first: u64, end: u64) {
        self.ptes.retain(|i| !(first..end).contains(i));
    }
}
