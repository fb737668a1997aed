//! A simulated KVM with TDX-style and SNP-style platform layers, and injectable bugs.
//!
//! `SimBackend` splits the kernel in two. The *control* side (memslots, bindings, file
//! flags, references, and the result or errno of every call) is decided by an embedded
//! reference [`Model`]: the simulation never re-implements argument validation. The
//! *memory* side is the simulation's own and independent of the model's pages:
//!
//! * a page allocator: PFN -> content, allocated or freed (freed pages keep their content);
//! * guest_memfd files as page index -> PFN, bound to memslots (the model's bindings);
//! * per-GFN attributes, updated by successful KVM_SET_MEMORY_ATTRIBUTES;
//! * a stage-2 mapping cache GFN -> PFN, filled by guest faults and emptied by zaps; guest
//!   accesses that hit it never look at slots, attributes or files again, so a missed
//!   invalidation makes the guest read a freed or stale PFN;
//! * a [`Platform`] called on the fault and invalidation paths.
//!
//! Broken platform invariants are findings, not harness errors: the first one is kept and
//! returned by [`SimBackend::invariant_violation`] (the fuzz glue panics with
//! "gmemfuzz PLATFORM INVARIANT").
//!
//! # The two platform designs
//!
//! | | TDX-like | SNP-like |
//! |---|---|---|
//! | private state | Secure-EPT (GFN -> PFN) | RMP entry per PFN (private/shared) |
//! | needs from the kernel | S-EPT removal hooked where stage-2 entries are removed, with a reason flag on the unmap path (set-memory-attributes: keep, re-accept, content gone; punch-hole/release: reclaim and free) | a guest_memfd invalidate hook on PFN ranges, called before pages are freed; no GFN or memslot needed |
//! | cleanup runs on | every zap of a private GFN | every free of a guest_memfd page |
//! | invariants | never free a PFN still in the S-EPT; S-EPT == private stage-2 entries; no removal twice; pages removed for freeing are freed | never free a PFN whose RMP entry is private; private stage-2 entries are RMP-private; no invalidate twice |
//!
//! Common invariants: no stage-2 entry points to a freed PFN; each entry's private bit is
//! the GFN's attribute (conversion zaps exactly what it must); no entry outside a memslot.
//!
//! The program that tells the designs apart: make a private page of a bound file, touch
//! it, delete the slot, then punch the page. TDX removed the S-EPT entry at slot deletion
//! and never sees the punch (no GFN maps the page any more); SNP must still return the RMP
//! entry to shared at the punch, which only a PFN-range hook in guest_memfd can do. The
//! same table, with the injected bugs, is in `backends/src/sim/README.md`.

mod bug;
mod guest;
mod invalidate;
mod mem;
mod platform;
#[cfg(test)]
mod tests;
mod violation;

use std::collections::{BTreeMap, BTreeSet};

pub use bug::{InjectedBug, HUGE_PAGES};
pub use mem::{S2Entry, Stage2};
pub use platform::{Platform, Reason, SnpLike, TdxLike};
pub use violation::{Broken, Violation};

use crate::backend::{Backend, HarnessError};
use crate::model::{Effect, Model, Prediction};
use crate::op::Op;
use crate::outcome::{Observation, Outcome, Probe};
use crate::profile::Profile;
use invalidate::Filter;

/// A guest_memfd file's pages on the memory side.
#[derive(Default)]
struct SimFile {
    /// File page index -> PFN.
    pages: BTreeMap<u64, u64>,
    /// Pages cleared and marked uptodate by a fault (what mincore shows).
    prepared: BTreeSet<u64>,
}

pub struct SimBackend {
    name: String,
    model: Model,
    platform: Box<dyn Platform>,
    bug: Option<InjectedBug>,
    pfns: mem::Pfns,
    files: Vec<SimFile>,
    /// (slot id, slot page) -> PFN of the anonymous memory behind the shared side.
    anon: BTreeMap<(u32, u64), u64>,
    attributes: BTreeMap<u64, u64>,
    s2: Stage2,
    op_index: usize,
    violation: Option<Broken>,
}

impl SimBackend {
    pub fn new(profile: Profile, platform: Box<dyn Platform>, bug: Option<InjectedBug>) -> SimBackend {
        let name = match bug {
            Some(b) => format!("sim-{}+{}", platform.name(), b.name()),
            None => format!("sim-{}", platform.name()),
        };
        SimBackend {
            name,
            model: Model::new(profile),
            platform,
            bug,
            pfns: Default::default(),
            files: Vec::new(),
            anon: BTreeMap::new(),
            attributes: BTreeMap::new(),
            s2: Stage2::new(),
            op_index: 0,
            violation: None,
        }
    }

    pub fn tdx(profile: Profile, bug: Option<InjectedBug>) -> SimBackend {
        SimBackend::new(profile, Box::new(TdxLike::default()), bug)
    }

    pub fn snp(profile: Profile, bug: Option<InjectedBug>) -> SimBackend {
        SimBackend::new(profile, Box::new(SnpLike::default()), bug)
    }

    /// The first platform invariant broken since the last reset, if any.
    pub fn invariant_violation(&self) -> Option<Broken> {
        self.violation.clone()
    }

    /// The stage-2 mapping cache, for tests and reports.
    pub fn stage2(&self) -> &Stage2 {
        &self.s2
    }

    fn violate(&mut self, violation: Violation) {
        if self.violation.is_none() {
            self.violation = Some(Broken { op_index: self.op_index, platform: self.name.clone(), violation });
        }
    }

    /// The invariants every platform relies on, then the platform's own.
    fn check_invariants(&mut self) {
        let alive = self.model.vm_alive();
        let mut broken = None;
        for (gfn, e) in &self.s2 {
            if self.pfns.is_free(e.pfn) {
                broken = Some(Violation::MapsFreedPfn { gfn: *gfn, pfn: e.pfn });
            } else if e.private != self.is_private(*gfn) {
                broken = Some(Violation::WrongPrivacy { gfn: *gfn, private: e.private });
            } else if !alive || !self.model.slots().values().any(|s| s.contains(*gfn)) {
                broken = Some(Violation::OutsideMemslots { gfn: *gfn });
            }
            if broken.is_some() {
                break;
            }
        }
        if let Some(b) = broken.or_else(|| self.platform.check(&self.s2).err()) {
            self.violate(b);
        }
    }

    /// What the memory side does for what the model says an op did.
    fn follow(&mut self, effect: Effect) {
        match effect {
            Effect::SlotDeleted { slot, base_gfn, npages } => self.delete_slot(slot, base_gfn, npages),
            Effect::SlotChanged { base_gfn, npages, .. } => self.zap(base_gfn, base_gfn + npages, Reason::MemslotDelete, Filter::All),
            Effect::AttributesSet { first, end, attributes } => self.set_attributes(first, end, attributes),
            Effect::Punched { gmem, first, end } => self.punch(gmem, first, end),
            Effect::Allocated { gmem, first, end } => self.allocate(gmem, first, end),
            Effect::MappingGone { gmem } => self.zap_host_mappings(gmem, 0, u64::MAX),
            Effect::FileReleased { gmem } => self.release(gmem),
            Effect::VmDestroyed => {
                self.zap(0, u64::MAX, Reason::VmDestroy, Filter::All);
                self.free_anon(|_| true);
            }
            Effect::MmioExit { .. } | Effect::Touched { .. } => {}
        }
    }

    /// The memory side of an op the model predicted: what it did (`follow`), then the data
    /// path of accesses, from the sim's own pages.
    fn effects(&mut self, op: &Op, prediction: Prediction) -> Outcome {
        let Prediction { outcome, effects } = prediction;
        // Every create that reached the kernel takes an id (see `GmemId`), made or not.
        if matches!(op, Op::CreateGmem { .. }) && !matches!(outcome, Outcome::Skipped(_)) {
            self.files.push(SimFile::default());
        }
        for effect in effects {
            self.follow(effect);
        }
        match op {
            Op::Guest { accesses } if matches!(outcome, Outcome::Guest(_)) => self.guest(accesses),
            Op::HostRead { gmem, offset, width } if matches!(outcome, Outcome::Value(_)) => self.host_access(*gmem, *offset, *width, None),
            Op::HostWrite { gmem, offset, width, value } if outcome == Outcome::Ok => {
                self.host_access(*gmem, *offset, *width, Some(*value))
            }
            _ => outcome,
        }
    }
}

impl Backend for SimBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn profile(&self) -> &Profile {
        self.model.profile()
    }

    fn reset(&mut self) -> Result<(), HarnessError> {
        self.model.reset()?;
        self.platform.reset();
        self.pfns = Default::default();
        self.files.clear();
        self.anon.clear();
        self.attributes.clear();
        self.s2.clear();
        self.op_index = 0;
        self.violation = None;
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<Outcome, HarnessError> {
        if let Op::Group(group) = op {
            // One order of the members (what the model's `apply` does with a group).
            if group.check().is_err() {
                return Ok(Outcome::Skipped(crate::outcome::SkipReason::InvalidGroup));
            }
            let mut out = Vec::with_capacity(group.members.len());
            for m in &group.members {
                out.push((0..m.repeat).map(|_| self.apply(&m.op)).collect::<Result<Vec<_>, _>>()?);
            }
            return Ok(Outcome::Group(out));
        }
        self.model.set_op_index(self.op_index);
        let prediction = self.model.predict(op);
        let outcome = self.effects(op, prediction);
        self.check_invariants();
        self.op_index += 1;
        Ok(outcome)
    }

    fn observe(&mut self, probes: &[Probe]) -> Result<Vec<Option<Observation>>, HarnessError> {
        Ok(probes.iter().map(|p| self.observe_one(p)).collect())
    }
}
