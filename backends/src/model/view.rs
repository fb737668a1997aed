//! What the guest and the host see: guest accesses, and the probes the runner compares.

use super::fault::Route;
use super::{Effect, Model, PageEvent, PageKey, Shared};
use crate::abi::limits::MAX_ALLOCATE_PAGES;
use crate::op::{layout, Access, AccessKind, GmemId, Op, PAGE_SIZE};
use crate::outcome::{AccessResult, Errno, Observation, Outcome, PageContent, Probe, SkipReason};

/// Where a guest access to one GFN ends up in the model.
enum Target {
    Page(PageKey),
    Mmio,
    Fault {
        gpa: u64,
        flags: u64,
    },
    /// A shared guest_memfd page whose folio is poisoned (`poison.rs`): kvm_gmem_error_folio()
    /// zapped KVM's shared mappings of it (the filter of a file with INIT_SHARED, the only
    /// kind madvise() can poison, is KVM_FILTER_SHARED), so the access faults, and
    /// kvm_gmem_get_pfn() refuses the folio with -EHWPOISON; kvm_mmu_faultin_pfn_gmem():
    /// `kvm_mmu_prepare_memory_fault_exit(vcpu, fault); return r;`: KVM_RUN fails with
    /// EHWPOISON and KVM_EXIT_MEMORY_FAULT, which the harness reads as a memory fault.
    Poisoned {
        gpa: u64,
    },
    /// A poisoned page the model cannot follow: a private one (its SPTE is outside that
    /// filter and may survive) or one reached through the file's mapping (hva_to_pfn() meets
    /// the poison and kvm_send_hwpoison_signal() sends the vCPU thread SIGBUS). Neither
    /// happens where madvise() can poison (7.2: INIT_SHARED only without private memory, and
    /// MMAP files bind guest_memfd-only slots).
    Unknown,
}

/// Whether the vCPU can make this access at all: inside 4 GiB, inside one page, and away
/// from the harness's code and mailbox.
pub fn reachable(access: &Access) -> bool {
    let w = access.width.bytes();
    let end = access.gpa.saturating_add(w);
    let harness = layout::CODE_GPA..layout::MAILBOX_GPA + layout::MAILBOX_SIZE;
    end <= layout::GUEST_ADDRESS_LIMIT
        && access.gpa / PAGE_SIZE == (end - 1) / PAGE_SIZE
        && access.gpa % w == 0
        && !(harness.contains(&access.gpa) || harness.contains(&(end - 1)))
}

impl Model {
    /// Resolves a guest access to a GFN along its route (`fault.rs`), making the page it
    /// reaches.
    fn resolve(&mut self, gfn: u64, write: bool) -> Target {
        match self.route(gfn, write, self.is_private_gfn(gfn)) {
            Route::Fault { gpa, flags } => Target::Fault { gpa, flags },
            Route::Mmio { no_slot } => {
                if no_slot {
                    self.tell(Effect::MmioExit { gfn });
                }
                Target::Mmio
            }
            Route::Gmem { gmem, index, private } if self.gmems[gmem].poison.folio(index) => match private {
                false => Target::Poisoned { gpa: gfn * PAGE_SIZE },
                true => Target::Unknown,
            },
            Route::Mapping { gmem, index, .. } if self.gmems[gmem].poison.refuses_host(index) => Target::Unknown,
            Route::Gmem { gmem, index, private } => {
                self.ensure_page(gmem, index, "guest fault", true);
                self.guest_dirtied(gmem, index);
                if private {
                    self.assign(gmem, index, gfn);
                }
                Target::Page(PageKey::Gmem { gmem: gmem.0, index })
            }
            Route::Mapping { gmem, index, .. } => {
                self.ensure_page(gmem, index, "guest fault", true);
                self.guest_dirtied(gmem, index);
                Target::Page(PageKey::Gmem { gmem: gmem.0, index })
            }
            Route::Anon { slot: id, index, .. } if self.slots[&id].anon.contains_key(&index) => {
                Target::Page(PageKey::Anon { slot: id, index })
            }
            Route::Anon { slot: id, index, .. } => {
                let slot = self.slots_mut().get_mut(&id).expect("routed there");
                if let std::collections::btree_map::Entry::Vacant(e) = std::sync::Arc::make_mut(&mut slot.anon).entry(index) {
                    e.insert(super::Page::zero());
                    self.history.record(self.op_index, PageKey::Anon { slot: id, index }, PageEvent::Populated { by: "guest fault" });
                }
                Target::Page(PageKey::Anon { slot: id, index })
            }
        }
    }

    fn page(&self, key: PageKey) -> &super::Page {
        match key {
            PageKey::Gmem { gmem, index } => self.gmems[GmemId(gmem)].pages.get(index),
            PageKey::Anon { slot, index } => self.slots.get(&slot).and_then(|s| s.anon.get(&index)),
        }
        .expect("resolve() made the page")
    }

    fn page_mut(&mut self, key: PageKey) -> &mut super::Page {
        match key {
            PageKey::Gmem { gmem, index } => self.gmems[GmemId(gmem)].pages.get_mut(index),
            PageKey::Anon { slot, index } => {
                self.slots_mut().get_mut(&slot).and_then(|s| std::sync::Arc::make_mut(&mut s.anon).get_mut(&index))
            }
        }
        .expect("resolve() made the page")
    }

    /// A guest fault on a guest_memfd page may leave its folio dirty (`Poison::dirty`), a
    /// read as much as a write: kvm_mmu_finish_page_fault() ->
    /// `kvm_release_faultin_page(vcpu->kvm, fault->refcounted_page, r == RET_PF_RETRY,
    /// fault->map_writable)` -> kvm_release_page_dirty() -> kvm_set_page_dirty(), whenever
    /// KVM could map the page writable. Whether this access faulted (an SPTE may be there
    /// already) the model does not see: perhaps.
    fn guest_dirtied(&mut self, gmem: GmemId, index: u64) {
        if self.gmems[gmem].poison.dirty(index).is_none() {
            self.gmems[gmem].poison.written(index, false);
        }
    }

    pub(super) fn guest(&mut self, accesses: &[Access]) -> Outcome {
        if !self.vm_alive {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        if accesses.is_empty() || accesses.len() > layout::MAX_ACCESSES || !accesses.iter().all(reachable) {
            return Outcome::Skipped(SkipReason::UnreachableGpa);
        }
        let mut results = Vec::with_capacity(accesses.len());
        let mut stopped = false;
        for access in accesses {
            if stopped {
                results.push(AccessResult::NotRun);
                continue;
            }
            let result = self.access(access, results.len());
            // KVM_RUN fails on a fault; the harness does not re-enter the vCPU for this op.
            stopped = matches!(result, AccessResult::MemoryFault { .. });
            results.push(result);
        }
        Outcome::Guest(results)
    }

    /// One guest access, alone: what `guest` answers for it, without the vector (the race
    /// search takes one access per step). The caller's group was checked to reach it.
    pub(super) fn guest_one(&mut self, access: &Access) -> AccessResult {
        assert!(self.vm_alive && reachable(access), "one guest access the group was checked to reach");
        self.access(access, 0)
    }

    /// Access number `index` of a guest op, the VM alive and the access reachable.
    fn access(&mut self, access: &Access, index: usize) -> AccessResult {
        let write = matches!(access.kind, AccessKind::Write(_));
        let target = self.resolve(access.gpa / PAGE_SIZE, write);
        let offset = access.gpa % PAGE_SIZE;
        let w = access.width.bytes();
        let result = match target {
            Target::Mmio => AccessResult::Mmio,
            Target::Fault { gpa, flags } => AccessResult::MemoryFault { gpa, size: PAGE_SIZE, flags },
            Target::Poisoned { gpa } => AccessResult::MemoryFault { gpa, size: PAGE_SIZE, flags: 0 },
            Target::Unknown => AccessResult::Unknown,
            Target::Page(key) => {
                let op_index = self.op_index;
                match access.kind {
                    AccessKind::Read => AccessResult::Read(self.page(key).load(offset, w)),
                    AccessKind::Write(v) => {
                        let new = access.width.truncate(v);
                        let old = self.page(key).load(offset, w);
                        // A store of what the page holds changes nothing but the history, and
                        // leaves the page shared (the race search's states repeat a member's
                        // store again and again; unsharing copies the file's structures).
                        if old != new {
                            self.page_mut(key).store(offset, w, new);
                        }
                        let event = PageEvent::Written { by: "guest", offset: offset as u16, width: w as u8, old, new };
                        self.history.record(op_index, key, event);
                        AccessResult::Wrote
                    }
                }
            }
        };
        if let Target::Page(page) = target {
            self.tell(Effect::Touched { access: index, page, offset });
        }
        result
    }
}

impl Model {
    /// The ops the vCPU performs: `None` for the rest.
    pub(super) fn guest_op(&mut self, op: &Op) -> Option<Outcome> {
        Some(match *op {
            Op::Guest { ref accesses } => self.guest(accesses),
            Op::PreFault { gpa, size } => self.pre_fault(gpa, size),
            _ => return None,
        })
    }

    /// KVM_PRE_FAULT_MEMORY on vCPU 0 (virt/kvm/kvm_main.c kvm_vcpu_pre_fault_memory(), 7.2):
    /// `if (!PAGE_ALIGNED(range->gpa) || !PAGE_ALIGNED(range->size) || range->gpa +
    /// range->size <= range->gpa) return -EINVAL;` (a size of 0 too), then page by page
    /// kvm_arch_vcpu_pre_fault_memory(): a fault with `error_code = PFERR_GUEST_FINAL_MASK`,
    /// PFERR_PRIVATE_ACCESS where the GFN is private, through kvm_mmu_do_page_fault(), the
    /// path of a guest load (no write bit): the same route and the same page made as a load
    /// would (`resolve`), without the load. RET_PF_EMULATE (no memslot: an MMIO SPTE is kept,
    /// as for a load's MMIO exit) is -ENOENT; a memory-fault exit (kvm_mmu_faultin_pfn()) is
    /// -EFAULT. The loop stops at the first error; `return full_size == range->size ? r :
    /// 0;`, and the range left is copied back: the outcome is that size, or the errno.
    /// Mappings are 4 KiB: guest_memfd folios are order 0 and the harness's memory is never
    /// aligned for a huge page.
    pub(super) fn pre_fault(&mut self, gpa: u64, size: u64) -> Outcome {
        if !self.vm_alive {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        let valid = gpa % PAGE_SIZE == 0 && size % PAGE_SIZE == 0 && gpa.checked_add(size).is_some_and(|end| end > gpa);
        match (self.profile.pre_fault_errno, valid) {
            // The arguments are checked before kvm_tdp_page_prefault() refuses.
            (Some(Errno::EOPNOTSUPP), false) | (None, false) => return Outcome::Err(Errno::EINVAL),
            (Some(errno), _) => return Outcome::Err(errno),
            (None, true) => {}
        }
        if size / PAGE_SIZE > MAX_ALLOCATE_PAGES {
            return Outcome::Skipped(SkipReason::TooLarge);
        }
        let mut left = size;
        while left > 0 {
            let gfn = (gpa + (size - left)) / PAGE_SIZE;
            let stop = match self.resolve(gfn, false) {
                Target::Page(_) => None,
                Target::Fault { .. } => Some(Outcome::Err(Errno::EFAULT)),
                // kvm_tdp_page_prefault(): `if (r < 0) return r;`, the -EHWPOISON above.
                Target::Poisoned { .. } => Some(Outcome::Err(Errno::EHWPOISON)),
                Target::Unknown => Some(Outcome::Unknown),
                // No memslot: RET_PF_EMULATE. A shared fault through userspace_addr that fails
                // leaves a load as KVM_EXIT_MMIO (probe); for a pre-fault the model does not
                // know whether that is RET_PF_EMULATE or kvm_handle_error_pfn()'s -EFAULT.
                Target::Mmio => Some(if self.guest_slot(gfn).is_none() { Outcome::Err(Errno::ENOENT) } else { Outcome::Unknown }),
            };
            if let Some(error) = stop {
                return if left == size { error } else { Outcome::Value(left) };
            }
            left -= PAGE_SIZE;
        }
        Outcome::Value(0)
    }
}

/// The most pages a round of probes looks at through the guest.
pub const MAX_GUEST_PROBES: usize = 64;
/// The most pages of one file whose residency is compared.
pub const MAX_RESIDENCY_PAGES: u64 = 256;

pub(super) fn probes(model: &Model) -> Vec<Probe> {
    let mut probes = Vec::new();
    for (gmem, file) in model.gmems.iter() {
        // mincore() on a mapping reports the page cache (mincore_page()), without faulting.
        if file.residency_probed() {
            probes.push(Probe::Residency { gmem });
        }
        if !file.mapped {
            continue;
        }
        if file.flags & crate::op::GUEST_MEMFD_FLAG_INIT_SHARED != 0 {
            // Resident pages only: reading a hole would allocate it.
            probes.extend(file.pages.prepared().map(|page| Probe::HostPage { gmem, page }));
        }
    }
    for (&slot, s) in model.slots.iter() {
        if !s.gmem_only && s.shared == Shared::Anon {
            probes.extend((0..s.npages.min(MAX_GUEST_PROBES as u64)).map(|page| Probe::AnonPage { slot, page }));
        }
    }
    if model.vm_alive {
        // First: the guest probes fault pages in, which assigns them, and would hide an entry
        // the op left behind for a page they fault in again (its PFN reused).
        if model.profile.platform_map {
            probes.insert(0, Probe::PlatformMap);
        }
        probes.extend(guest_probes(model));
    }
    probes
}

/// The guest's view of slot pages: a missed invalidation shows here. Each page the guest
/// reads costs a fault on a fresh page (tens of microseconds here), so a round looks at the
/// pages with a history first (written, populated, dropped, or read by an earlier round:
/// where stale content can be), then at up to `FRESH_PER_SLOT` others of each slot, so that
/// large slots do not crowd out the rest and coverage still grows round by round.
fn guest_probes(model: &Model) -> Vec<Probe> {
    let (mut known, mut fresh) = (Vec::new(), Vec::new());
    for (_, s) in model.slots.iter().filter(|(id, _)| super::address_space(**id) == 0) {
        // The guest runs in 32-bit mode: pages of a slot beyond 4 GiB are seen through
        // the host side only.
        let reachable_end = (s.base_gfn + s.npages).min(layout::GUEST_ADDRESS_LIMIT / PAGE_SIZE);
        let mut fresh_here = 0;
        for gfn in (s.base_gfn..reachable_end).take(MAX_GUEST_SCAN) {
            let gpa = gfn * PAGE_SIZE;
            match probe_page(model, &Probe::GuestPage { gpa, sample: [0; 4] }) {
                Some(key) if model.history.has_events(&key) => known.push(Probe::GuestPage { gpa, sample: sample_for(model, key) }),
                key if fresh_here < FRESH_PER_SLOT => {
                    fresh_here += 1;
                    let sample = key.map_or([0, 511, 256, 128], |key| sample_for(model, key));
                    fresh.push(Probe::GuestPage { gpa, sample });
                }
                _ => {}
            }
        }
    }
    known.into_iter().chain(fresh).take(MAX_GUEST_PROBES).collect()
}

/// Pages of one slot a round looks at beyond those with a history.
const FRESH_PER_SLOT: usize = 4;
/// How far into a slot a round looks for pages with a history.
const MAX_GUEST_SCAN: usize = 256;

/// The qwords a guest digest of `key` samples: the first, then the ones written last
/// (before and after the page was last dropped), then fixed spread-out ones.
fn sample_for(model: &Model, key: PageKey) -> crate::outcome::Sample {
    let mut sample = vec![0u16];
    for (_, event) in model.history.events(&key).iter().rev() {
        if let PageEvent::Written { offset, .. } = event {
            let q = offset / 8;
            if !sample.contains(&q) {
                sample.push(q);
            }
        }
        if sample.len() == 4 {
            break;
        }
    }
    for q in [511, 256, 128] {
        if sample.len() < 4 && !sample.contains(&q) {
            sample.push(q);
        }
    }
    [sample[0], sample[1], sample[2], sample[3]]
}

pub(super) fn probe_page(model: &Model, probe: &Probe) -> Option<PageKey> {
    match *probe {
        Probe::Residency { .. } | Probe::PlatformMap => None,
        Probe::HostPage { gmem, page } => Some(PageKey::Gmem { gmem: gmem.0, index: page }),
        Probe::AnonPage { slot, page } => Some(PageKey::Anon { slot, index: page }),
        Probe::GuestPage { gpa, .. } => {
            let gfn = gpa / PAGE_SIZE;
            let (id, slot) = model.guest_slot(gfn)?;
            let index = gfn - slot.base_gfn;
            match (slot.binding, slot.shared) {
                (Some(b), _) if slot.gmem_only || model.is_private_gfn(gfn) => {
                    Some(PageKey::Gmem { gmem: b.gmem.0, index: b.pgoff + index })
                }
                (_, Shared::GmemMap { gmem, pgoff, .. }) => Some(PageKey::Gmem { gmem: gmem.0, index: pgoff + index }),
                (_, Shared::Anon) => Some(PageKey::Anon { slot: id, index }),
            }
        }
    }
}

pub(super) fn observe(model: &mut Model, probe: &Probe) -> Option<Observation> {
    let zero = || Observation::Content(PageContent::Bytes(super::Page::zero().shared_bytes()));
    let content = |page: &super::Page| Observation::Content(PageContent::Bytes(page.shared_bytes()));
    match *probe {
        Probe::Residency { gmem } => {
            let file = model.gmem(gmem)?;
            if !file.residency_probed() {
                return Some(Observation::Absent);
            }
            let n = file.npages().min(MAX_RESIDENCY_PAGES);
            // The probe's own mapping (unmapped file) has no hwpoison entries.
            let pte = |i| file.mapped && file.poison.pte(i);
            Some(Observation::Residency((0..n).map(|i| file.pages.is_prepared(i) || pte(i)).collect()))
        }
        Probe::HostPage { gmem, page } => {
            let file = model.gmem(gmem)?;
            if !file.mapped || page >= file.npages() {
                return Some(Observation::Absent);
            }
            if file.flags & crate::op::GUEST_MEMFD_FLAG_INIT_SHARED == 0 || file.poison.refuses_host(page) {
                return Some(Observation::Sigbus);
            }
            // The primary state's probes read resident pages only; after a concurrent group
            // another possible state may have a hole there, which the read allocates and
            // prepares, as the host fault does (kvm_gmem_fault_user_mapping():
            // kvm_gmem_get_folio(), then `clear_highpage(...); folio_mark_uptodate(folio);`).
            if !file.pages.is_prepared(page) {
                return Some(content(model.populate(gmem, page, "host probe", true)));
            }
            Some(file.pages.get(page).map_or_else(zero, content))
        }
        Probe::AnonPage { slot, page } => {
            let s = model.slots.get(&slot)?;
            if page >= s.npages {
                return Some(Observation::Absent);
            }
            Some(s.anon.get(&page).map_or_else(zero, content))
        }
        Probe::PlatformMap => Some(if model.vm_alive { model.platform_map() } else { Observation::Absent }),
        Probe::GuestPage { gpa, sample } => {
            if !model.vm_alive {
                return Some(Observation::Absent);
            }
            match model.resolve(gpa / PAGE_SIZE, false) {
                Target::Mmio => Some(Observation::GuestExit(AccessResult::Mmio)),
                Target::Fault { gpa, flags } => Some(Observation::GuestExit(AccessResult::MemoryFault { gpa, size: PAGE_SIZE, flags })),
                Target::Poisoned { gpa } => Some(Observation::GuestExit(AccessResult::MemoryFault { gpa, size: PAGE_SIZE, flags: 0 })),
                Target::Unknown => None,
                Target::Page(key) => {
                    Some(Observation::Content(PageContent::Digest(crate::outcome::sample_digest(&model.page(key).shared_bytes(), sample))))
                }
            }
        }
    }
}
