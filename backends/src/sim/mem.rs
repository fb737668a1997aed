//! The simulated memory: a page allocator (PFN -> content, allocated or freed) and the
//! stage-2 mapping cache (GFN -> PFN).

use super::Violation;
use std::collections::BTreeMap;

use crate::model::Page;

/// A physical page. A freed page keeps its last content (nothing scrubs it), so a
/// translation that still points at it reads what the page held when it was freed.
struct Frame {
    page: Page,
    allocated: bool,
}

/// PFNs are handed out in increasing order and never reused within a program, so a stale
/// translation always reads the freed page, never a new owner's data.
#[derive(Default)]
pub struct Pfns {
    frames: Vec<Frame>,
}

impl Pfns {
    pub fn alloc(&mut self) -> u64 {
        self.frames.push(Frame { page: Page::zero(), allocated: true });
        self.frames.len() as u64 - 1
    }

    pub fn free(&mut self, pfn: u64) -> Result<(), Violation> {
        let frame = &mut self.frames[pfn as usize];
        if !frame.allocated {
            return Err(Violation::DoubleFree { pfn });
        }
        frame.allocated = false;
        Ok(())
    }

    pub fn is_free(&self, pfn: u64) -> bool {
        !self.frames[pfn as usize].allocated
    }

    pub fn page(&self, pfn: u64) -> &Page {
        &self.frames[pfn as usize].page
    }

    pub fn page_mut(&mut self, pfn: u64) -> &mut Page {
        &mut self.frames[pfn as usize].page
    }
}

/// One cached translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Entry {
    pub pfn: u64,
    /// Installed by a private fault (TDX: also present in the Secure-EPT).
    pub private: bool,
    pub writable: bool,
}

/// The stage-2 (EPT/NPT) mapping cache: filled by guest faults, emptied by zaps. Guest
/// accesses that hit it never look at memslots, attributes or files again.
pub type Stage2 = BTreeMap<u64, S2Entry>;
