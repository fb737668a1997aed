//! The reference model: what the kernel must do, op by op, in plain safe Rust.
//!
//! Every rule names the kernel code it follows (Linux 6.18 for the host lane, 6.12 and 7.2
//! for the software-protected lane; where they differ, a probed `Profile` field says which
//! applies, never a version string) or the probe that established it
//! (shared/design/platform-facts.md). Where the kernel may legitimately do either, the
//! model says so in its prediction, as narrowly as it can: `Outcome::Unknown` for an op,
//! `AccessResult::Unknown` for one guest access, `None` for one probe. It never gives up on
//! a whole program.

mod attributes;
mod cache;
mod commute;
mod effect;
mod fault;
mod files;
mod gmem;
mod memo;
mod mempolicy;
mod memslot;
mod page;
mod platform;
mod poison;
mod race;
mod view;

use std::collections::BTreeMap;

pub use attributes::AttributeRanges;
pub use cache::PageCache;
pub use effect::{Effect, MmioExits, Prediction};
pub use fault::Route;
pub use gmem::MAX_ALLOCATE_PAGES;
pub use memslot::MAX_ATTRIBUTE_PAGES;
pub use page::{Dropped, History, Page, PageBytes, PageEvent, PageKey};
pub use race::{AccessMismatch, MismatchStates, RaceError, RaceMismatch, SearchSize, StepResult, World, MAX_NODES, MISMATCH_STATES};
pub use view::{reachable, MAX_RESIDENCY_PAGES};

use crate::backend::{Backend, HarnessError};
use crate::op::{GmemId, Op, PAGE_SIZE};
use crate::outcome::{Observation, Outcome, Probe};
use crate::profile::Profile;
use files::Files;

/// A guest_memfd file as the model sees it.
#[derive(Clone)]
pub struct GmemFile {
    pub size: u64,
    pub flags: u64,
    pub fd_open: bool,
    pub mapped: bool,
    /// How many times the file was mapped: a slot made over one mapping does not see the next.
    pub map_generation: u32,
    /// The last reference (fd, mapping) is gone: kvm_gmem_release ran.
    pub released: bool,
    /// The page cache: pages that exist, by file page index, and which are prepared:
    /// cleared and marked uptodate by a fault (kvm_gmem_mark_prepared /
    /// kvm_gmem_prepare_folio). fallocate() allocates folios without preparing them, and
    /// mincore() counts only uptodate folios (mincore_page: `folio_test_uptodate`), so
    /// residency shows the prepared ones.
    pub pages: PageCache,
    /// NUMA policies set through the current mapping (its VMAs'), by file page.
    pub map_policy: mempolicy::Policies,
    /// NUMA policies the file keeps (the inode's shared policy), where
    /// `Numa::file_policy`; they outlive the mapping they were set through.
    pub file_policy: mempolicy::Policies,
    /// The GFN the software platform's reverse map assigns each page to (`platform.rs`).
    pub assigned: platform::Assignments,
    /// Pages madvise(MADV_HWPOISON) poisoned, and what they leave behind (`poison.rs`).
    pub poison: poison::Poison,
    /// `race::file_fingerprint`, once asked; `Files` clears it whenever the file changes.
    fingerprint: memo::Memo,
}

impl GmemFile {
    pub fn npages(&self) -> u64 {
        self.size / PAGE_SIZE
    }

    /// Whether the state probes ask for the file's residency: through its mapping, or,
    /// unmapped, through a mapping made for the probe while its fd is open (mmap() succeeds
    /// exactly where `Op::Map` would), so that a page an unmapped file kept shows at once.
    pub fn residency_probed(&self) -> bool {
        self.mapped
            || (self.fd_open && self.flags & crate::op::GUEST_MEMFD_FLAG_MMAP != 0 && self.size <= crate::op::layout::MAX_MAPPED_BYTES)
    }
}

/// A guest_memfd binding of a memslot.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub gmem: GmemId,
    /// First file page bound (guest_memfd_offset / PAGE_SIZE).
    pub pgoff: u64,
    /// kvm_gmem_release cleared slot->gmem.file: faults on the slot fail.
    pub file_gone: bool,
}

/// What userspace_addr points at. The backend uses the file's own mapping when, at bind
/// time, the file is mapped and the slot's range lies inside it; otherwise fresh anonymous
/// memory (see `Op::Bind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shared {
    Anon,
    /// Page `pgoff` of the file's mapping number `generation` (a later mapping is
    /// elsewhere: an unmapped range stays reserved, never reused, until reset).
    GmemMap {
        gmem: GmemId,
        pgoff: u64,
        generation: u32,
    },
}

#[derive(Clone)]
pub struct Slot {
    pub base_gfn: u64,
    pub npages: u64,
    pub flags: u32,
    pub binding: Option<Binding>,
    /// The slot faults to guest_memfd even for shared GFNs (KVM_MEMSLOT_GMEM_ONLY, where
    /// `Profile::gmem_only_slots`: 7.2).
    pub gmem_only: bool,
    pub shared: Shared,
    /// The anonymous memory behind userspace_addr (`Shared::Anon`), by slot page index;
    /// shared between clones of the model until one of them changes it.
    pub anon: std::sync::Arc<BTreeMap<u64, Page>>,
}

impl Slot {
    pub fn contains(&self, gfn: u64) -> bool {
        gfn >= self.base_gfn && gfn - self.base_gfn < self.npages
    }
}

/// The address space of a memslot id: `as_id = mem->slot >> 16;` (kvm_set_memory_region()).
/// x86 has a second one only for SMM (kvm_arch_nr_memslot_as_ids(): `kvm_arch_has_private_mem(kvm)
/// ? 1 : 2` with CONFIG_KVM_SMM), which the harness's vCPU never enters: the guest sees
/// address space 0 alone (kvm_arch_vcpu_memslots_id(): `HF_SMM_MASK ? 1 : 0`).
pub fn address_space(slot: u32) -> u32 {
    slot >> 16
}

#[derive(Clone)]
pub struct Model {
    /// Shared by every clone (the race search makes one per state it tries).
    profile: std::sync::Arc<Profile>,
    /// Index of the op being applied, for history.
    op_index: usize,
    vm_alive: bool,
    gmems: Files,
    /// Shared between clones until one of them changes a slot.
    slots: std::sync::Arc<BTreeMap<u32, Slot>>,
    /// The slots' part of `fingerprint`, once asked; `slots_mut` clears it (slots change
    /// seldom, and a slot's anonymous pages are many hashes).
    slots_print: memo::Memo,
    /// Memory attributes by GFN range; absent = 0 (shared).
    attributes: AttributeRanges,
    history: History,
    /// What the op being applied did so far (`predict` hands it out; empty between ops).
    told: Vec<Effect>,
}

impl Model {
    pub fn new(profile: Profile) -> Model {
        Model::with_profile(std::sync::Arc::new(profile))
    }

    fn with_profile(profile: std::sync::Arc<Profile>) -> Model {
        Model {
            profile,
            op_index: 0,
            vm_alive: true,
            gmems: Files::default(),
            slots: Default::default(),
            slots_print: Default::default(),
            attributes: AttributeRanges::default(),
            history: History::default(),
            told: Vec::new(),
        }
    }

    /// Set the index the next op will be recorded under in page histories.
    pub fn set_op_index(&mut self, index: usize) {
        self.op_index = index;
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn gmem(&self, id: GmemId) -> Option<&GmemFile> {
        self.gmems.get(id)
    }

    /// How many creates reached the kernel, made or not (the next `GmemId`).
    pub fn gmem_count(&self) -> usize {
        self.gmems.creates()
    }

    pub fn slots(&self) -> &BTreeMap<u32, Slot> {
        &self.slots
    }

    /// The slots, to change (unshared first).
    fn slots_mut(&mut self) -> &mut BTreeMap<u32, Slot> {
        self.slots_print = Default::default();
        std::sync::Arc::make_mut(&mut self.slots)
    }

    pub fn vm_alive(&self) -> bool {
        self.vm_alive
    }

    /// The slot of address space 0 (the one the vCPU sees) that holds `gfn`.
    pub fn guest_slot(&self, gfn: u64) -> Option<(u32, &Slot)> {
        self.slots.iter().find(|(id, s)| address_space(**id) == 0 && s.contains(gfn)).map(|(id, s)| (*id, s))
    }

    /// Whether `gfn` has KVM_MEMORY_ATTRIBUTE_PRIVATE.
    pub fn is_private_gfn(&self, gfn: u64) -> bool {
        self.attributes.get(gfn) & crate::op::KVM_MEMORY_ATTRIBUTE_PRIVATE != 0
    }

    /// The questions about state worth asking now: everything observable without
    /// changing what the program will see later, plus the guest's view of every page of
    /// every guest_memfd-backed slot (a guest read faults pages in on both sides alike).
    pub fn probes(&self) -> Vec<Probe> {
        view::probes(self)
    }

    /// The page a probe looks at, for explaining a mismatch.
    pub fn probe_page(&self, probe: &Probe) -> Option<PageKey> {
        view::probe_page(self, probe)
    }

    /// The model's own consistency rules; a broken one is a model bug.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, g) in self.gmems.iter() {
            if g.released && (g.fd_open || g.mapped || !g.pages.is_empty()) {
                return Err(format!("{i}: released yet referenced or holding pages"));
            }
            if let Some((p, _)) = g.pages.iter().find(|(p, _)| *p >= g.npages()) {
                return Err(format!("{i}: page {p} beyond the file size {:#x}", g.size));
            }
        }
        let slots: Vec<(&u32, &Slot)> = self.slots.iter().collect();
        for (k, (id, s)) in slots.iter().enumerate() {
            for (other, o) in &slots[k + 1..] {
                let same_space = address_space(**id) == address_space(**other);
                if same_space && s.base_gfn < o.base_gfn + o.npages && o.base_gfn < s.base_gfn + s.npages {
                    return Err(format!("slots {id} and {other} overlap"));
                }
                if let (Some(a), Some(b)) = (s.binding, o.binding) {
                    let live = !a.file_gone && !b.file_gone;
                    if live && a.gmem == b.gmem && a.pgoff < b.pgoff + o.npages && b.pgoff < a.pgoff + s.npages {
                        return Err(format!("slots {id} and {other} bind overlapping ranges of {}", a.gmem));
                    }
                }
            }
            if let Some(b) = s.binding {
                let Some(file) = self.gmems.get(b.gmem) else {
                    return Err(format!("slot {id} bound to a file that does not exist"));
                };
                if file.released != b.file_gone {
                    return Err(format!("slot {id}: binding and file disagree on release"));
                }
            }
        }
        Ok(())
    }

    /// A description of the model's state, with the program's MMIO exits, for reports.
    pub fn describe(&self, mmio_exits: &MmioExits) -> String {
        let mut s = String::new();
        for (i, g) in self.gmems.iter() {
            s += &format!(
                "  {i}: size {:#x} flags {:#x} fd {} mapped {} released {} pages {:?}\n",
                g.size,
                g.flags,
                if g.fd_open { "open" } else { "closed" },
                g.mapped,
                g.released,
                g.pages.iter().map(|(i, _)| i).collect::<Vec<_>>()
            );
        }
        for (id, slot) in self.slots.iter() {
            s += &format!(
                "  slot {id}: gpa {:#x} pages {} flags {:#x} gmem_only {} binding {:?}\n",
                slot.base_gfn * PAGE_SIZE,
                slot.npages,
                slot.flags,
                slot.gmem_only,
                slot.binding
            );
        }
        if !self.attributes.is_empty() {
            let ranges: Vec<String> = self.attributes.iter().map(|(s, e, a)| format!("gfn {s:#x}..{e:#x}: {a:#x}")).collect();
            s += &format!("  attributes: {}\n", ranges.join(", "));
        }
        // What the known stale-MMIO-SPTE bug needs (harness::known).
        let list = |gfns: &mut dyn Iterator<Item = u64>| gfns.map(|g| format!("{g:#x}")).collect::<Vec<_>>().join(", ");
        if mmio_exits.iter().next().is_some() {
            s += &format!("  gfns that exited as MMIO: {}\n", list(&mut mmio_exits.iter()));
        }
        if mmio_exits.raced().next().is_some() {
            s += &format!("  gfns racing guest accesses touched: {}\n", list(&mut mmio_exits.raced()));
        }
        s += &format!("  vm alive: {}\n", self.vm_alive);
        s
    }
}

impl Backend for Model {
    fn name(&self) -> &str {
        "model"
    }

    fn profile(&self) -> &Profile {
        &self.profile
    }

    fn reset(&mut self) -> Result<(), HarnessError> {
        *self = Model::with_profile(self.profile.clone());
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<Outcome, HarnessError> {
        Ok(self.predict(op).outcome)
    }

    fn observe(&mut self, probes: &[Probe]) -> Result<Vec<Option<Observation>>, HarnessError> {
        Ok(self.observe_told(probes).0)
    }
}

impl Model {
    /// One op: its outcome and what it did (`Effect`), as values.
    pub fn predict(&mut self, op: &Op) -> Prediction {
        self.told.clear();
        let outcome = self.apply_one(op);
        Prediction { outcome, effects: std::mem::take(&mut self.told) }
    }

    /// The answers to `probes`, and what asking did: a guest probe of a GFN without a
    /// memslot exits as MMIO, as a guest access does.
    pub fn observe_told(&mut self, probes: &[Probe]) -> (Vec<Option<Observation>>, Vec<Effect>) {
        self.told.clear();
        let answers = probes.iter().map(|p| view::observe(self, p)).collect();
        (answers, std::mem::take(&mut self.told))
    }

    /// Records what the op being applied did.
    fn tell(&mut self, effect: Effect) {
        self.told.push(effect);
    }

    /// One op (the model never fails as a harness does). Each rule file answers for the ops
    /// it holds the rules of (`file_op`, `slot_op`, `policy_op`, `guest_op`), so a new op's
    /// dispatch sits beside its rule; `every_op_kind_has_a_rule` checks none is missing.
    fn apply_one(&mut self, op: &Op) -> Outcome {
        match op {
            Op::Check => Outcome::Ok,
            Op::Group(group) => self.group_in_order(group),
            _ => self
                .file_op(op)
                .or_else(|| self.slot_op(op))
                .or_else(|| self.policy_op(op))
                .or_else(|| self.guest_op(op))
                .unwrap_or_else(|| panic!("the model has no rule for {:?}", op.kind())),
        }
    }
}

#[cfg(test)]
mod poison_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod effect_tests;
