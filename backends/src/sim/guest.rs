//! The data path: guest accesses through the stage-2 cache, host accesses, and the
//! answers to the runner's probes, all from the simulation's own pages.

use super::mem::S2Entry;
use super::SimBackend;
use crate::model::Route;
use crate::op::{Access, AccessKind, GmemId, Width, GUEST_MEMFD_FLAG_INIT_SHARED, KVM_MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE};
use crate::outcome::{sample_digest, AccessResult, Observation, Outcome, PageContent, Probe};

/// Where a guest access ends up.
enum Target {
    Pfn(u64),
    Mmio,
    Fault { gpa: u64, flags: u64 },
}

/// The residency probe looks at this many pages at most (as the model does).
const MAX_RESIDENCY_PAGES: u64 = crate::model::MAX_RESIDENCY_PAGES;

impl SimBackend {
    pub(super) fn is_private(&self, gfn: u64) -> bool {
        self.attributes.get(&gfn).is_some_and(|a| a & KVM_MEMORY_ATTRIBUTE_PRIVATE != 0)
    }

    /// The PFN behind a file page, allocating it on first use; a fault also prepares it.
    fn file_page(&mut self, gmem: GmemId, index: u64, prepare: bool) -> u64 {
        let file = &mut self.files[gmem.0 as usize];
        if prepare {
            file.prepared.insert(index);
        }
        *file.pages.entry(index).or_insert_with(|| self.pfns.alloc())
    }

    pub(super) fn allocate(&mut self, gmem: GmemId, first: u64, end: u64) {
        for index in first..end {
            self.file_page(gmem, index, false);
        }
    }

    /// A guest access to `gfn`: a stage-2 hit uses the cached PFN as is; a miss follows the
    /// fault's route (`Model::route`, with the sim's own attributes) and fills the cache.
    fn target(&mut self, gfn: u64, write: bool) -> Target {
        if let Some(e) = self.s2.get(&gfn) {
            if !write || e.writable {
                return Target::Pfn(e.pfn);
            }
        }
        let (pfn, entry) = match self.model.route(gfn, write, self.is_private(gfn)) {
            Route::Mmio { .. } => return Target::Mmio,
            Route::Fault { gpa, flags } => return Target::Fault { gpa, flags },
            Route::Gmem { gmem, index, private } => {
                let pfn = self.file_page(gmem, index, true);
                if private {
                    match self.platform.map_private(gfn, pfn) {
                        Ok(true) => *self.pfns.page_mut(pfn) = crate::model::Page::zero(),
                        Ok(false) => {}
                        Err(e) => self.violate(e),
                    }
                }
                (pfn, S2Entry { pfn, private, writable: true })
            }
            Route::Mapping { gmem, index, readonly } => {
                let pfn = self.file_page(gmem, index, true);
                (pfn, S2Entry { pfn, private: false, writable: !readonly })
            }
            Route::Anon { slot, index, readonly } => {
                let pfn = *self.anon.entry((slot, index)).or_insert_with(|| self.pfns.alloc());
                (pfn, S2Entry { pfn, private: false, writable: !readonly })
            }
        };
        self.s2.insert(gfn, entry);
        Target::Pfn(pfn)
    }

    pub(super) fn guest(&mut self, accesses: &[Access]) -> Outcome {
        let mut results = Vec::with_capacity(accesses.len());
        let mut stopped = false;
        for access in accesses {
            if stopped {
                results.push(AccessResult::NotRun);
                continue;
            }
            let (offset, w) = (access.gpa % PAGE_SIZE, access.width.bytes());
            let write = matches!(access.kind, AccessKind::Write(_));
            results.push(match self.target(access.gpa / PAGE_SIZE, write) {
                Target::Mmio => AccessResult::Mmio,
                Target::Fault { gpa, flags } => {
                    stopped = true;
                    AccessResult::MemoryFault { gpa, size: PAGE_SIZE, flags }
                }
                Target::Pfn(pfn) => match access.kind {
                    AccessKind::Read => AccessResult::Read(self.pfns.page(pfn).load(offset, w)),
                    AccessKind::Write(v) => {
                        self.pfns.page_mut(pfn).store(offset, w, access.width.truncate(v));
                        AccessResult::Wrote
                    }
                },
            });
        }
        Outcome::Guest(results)
    }

    /// A host load or store through the file's mapping, once the model said it faults in.
    pub(super) fn host_access(&mut self, gmem: GmemId, offset: u64, width: Width, store: Option<u64>) -> Outcome {
        let pfn = self.file_page(gmem, offset / PAGE_SIZE, true);
        let (in_page, w) = (offset % PAGE_SIZE, width.bytes());
        match store {
            None => Outcome::Value(self.pfns.page(pfn).load(in_page, w)),
            Some(v) => {
                self.pfns.page_mut(pfn).store(in_page, w, width.truncate(v));
                Outcome::Ok
            }
        }
    }

    fn content(&self, pfn: Option<u64>) -> Observation {
        let bytes = match pfn {
            Some(pfn) => self.pfns.page(pfn).shared_bytes(),
            None => std::sync::Arc::new([0u8; PAGE_SIZE as usize]),
        };
        Observation::Content(PageContent::Bytes(bytes))
    }

    pub(super) fn observe_one(&mut self, probe: &Probe) -> Option<Observation> {
        match *probe {
            // The simulated platforms keep their own state, checked by invariants; their
            // profile has no kernel reverse map, so the runner never asks.
            Probe::PlatformMap => None,
            Probe::Residency { gmem } => {
                let file = self.model.gmem(gmem)?;
                if !file.residency_probed() {
                    return Some(Observation::Absent);
                }
                let n = (file.size / PAGE_SIZE).min(MAX_RESIDENCY_PAGES);
                let prepared = &self.files[gmem.0 as usize].prepared;
                Some(Observation::Residency((0..n).map(|i| prepared.contains(&i)).collect()))
            }
            Probe::HostPage { gmem, page } => {
                let file = self.model.gmem(gmem)?;
                if !file.mapped || page >= file.size / PAGE_SIZE {
                    return Some(Observation::Absent);
                }
                if file.flags & GUEST_MEMFD_FLAG_INIT_SHARED == 0 {
                    return Some(Observation::Sigbus);
                }
                Some(self.content(self.files[gmem.0 as usize].pages.get(&page).copied()))
            }
            Probe::AnonPage { slot, page } => {
                let s = self.model.slots().get(&slot)?;
                if page >= s.npages {
                    return Some(Observation::Absent);
                }
                Some(self.content(self.anon.get(&(slot, page)).copied()))
            }
            Probe::GuestPage { gpa, sample } => {
                if !self.model.vm_alive() {
                    return Some(Observation::Absent);
                }
                Some(match self.target(gpa / PAGE_SIZE, false) {
                    Target::Mmio => Observation::GuestExit(AccessResult::Mmio),
                    Target::Fault { gpa, flags } => Observation::GuestExit(AccessResult::MemoryFault { gpa, size: PAGE_SIZE, flags }),
                    Target::Pfn(pfn) => match self.content(Some(pfn)) {
                        Observation::Content(c) => match c {
                            PageContent::Bytes(b) => Observation::Content(PageContent::Digest(sample_digest(&b, sample))),
                            digest => Observation::Content(digest),
                        },
                        other => other,
                    },
                })
            }
        }
    }
}
