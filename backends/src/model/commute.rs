//! Which steps of a race commute: the parts of the model's state each step may read or
//! change (its footprint). Two steps of different members whose footprints do not meet give
//! the same state and the same results in either order, so the race search need not try
//! both (`race::Search`, partial-order reduction).
//!
//! A footprint is taken from the state before the group and holds for every state the
//! group can reach from it: no member makes a slot or a file (`Member::allowed` has no bind,
//! create or map), so the slots and files a step can reach only shrink. Each rule below
//! lists what the model's code for the op touches (`apply_one`); where in doubt a cell is
//! widened, never narrowed: a wider footprint only costs search, a narrower one would lose
//! orders.

use super::{Model, Shared};
use crate::op::{Access, AccessKind, GmemId, Op, PAGE_SIZE};

/// A part of the model's state, as ranges so that a slot's worth of GFNs is one cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cell {
    /// GFNs [start, end): their attributes and the slot that holds them. (The MMIO exits the
    /// search keeps beside a state, `MmioExits`, are only ever added to: insertions commute.)
    Gfns(u64, u64),
    /// A file's references (fd, mapping and its generation, release) and its bindings'
    /// `file_gone`, which release sets.
    File(GmemId),
    /// Whether pages [start, end) of a file are in its page cache (and prepared).
    FilePages(GmemId, u64, u64),
    /// Bytes [start, end) of a file, as file offsets.
    FileBytes(GmemId, u64, u64),
    /// Whether pages [start, end) of a slot's anonymous memory exist.
    AnonPages(u32, u64, u64),
    /// Bytes [start, end) of a slot's anonymous memory, as offsets into the slot.
    AnonBytes(u32, u64, u64),
    /// Everything: an op the rules below do not describe.
    All,
}

/// What a step does to a cell. Steps that only read a cell commute; so do steps that only
/// make the same pages exist (a fault or an allocate of a missing page makes it zero, of a
/// present one changes nothing: `populate`), and steps that only drop the same pages and
/// their bytes (a second drop finds nothing). Anything else that meets conflicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Read,
    Write,
    Populate,
    Remove,
}

impl Cell {
    fn meets(&self, other: &Cell) -> bool {
        let overlap = |a: u64, b: u64, c: u64, d: u64| a < d && c < b;
        match (*self, *other) {
            (Cell::All, _) | (_, Cell::All) => true,
            (Cell::Gfns(a, b), Cell::Gfns(c, d)) => overlap(a, b, c, d),
            (Cell::File(f), Cell::File(g)) => f == g,
            (Cell::FilePages(f, a, b), Cell::FilePages(g, c, d)) | (Cell::FileBytes(f, a, b), Cell::FileBytes(g, c, d)) => {
                f == g && overlap(a, b, c, d)
            }
            (Cell::AnonPages(s, a, b), Cell::AnonPages(t, c, d)) | (Cell::AnonBytes(s, a, b), Cell::AnonBytes(t, c, d)) => {
                s == t && overlap(a, b, c, d)
            }
            _ => false,
        }
    }
}

/// What a step may read and what it may change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Footprint {
    cells: Vec<(Cell, Mode)>,
}

impl Footprint {
    fn add(&mut self, cell: Cell, mode: Mode) {
        if !self.cells.contains(&(cell, mode)) {
            self.cells.push((cell, mode));
        }
    }

    /// Whether the order of the two steps may matter.
    pub(super) fn conflicts(&self, other: &Footprint) -> bool {
        let commute = |a: Mode, b: Mode| a == b && a != Mode::Write;
        self.cells.iter().any(|(c, m)| other.cells.iter().any(|(d, n)| c.meets(d) && !commute(*m, *n)))
    }

    /// The pages of file bytes [at, at + width) made to exist, and the bytes read or
    /// written.
    fn file_access(&mut self, gmem: GmemId, at: u64, width: u64, mode: Mode) {
        let (first, end) = pages(at, width);
        self.add(Cell::File(gmem), Mode::Read);
        self.add(Cell::FilePages(gmem, first, end), Mode::Populate);
        self.add(Cell::FileBytes(gmem, at, at.saturating_add(width)), mode);
    }

    /// Pages [first, end) of file `gmem` dropped, their bytes with them.
    fn file_drop(&mut self, gmem: GmemId, first: u64, end: u64) {
        self.add(Cell::FilePages(gmem, first, end), Mode::Remove);
        self.add(Cell::FileBytes(gmem, first.saturating_mul(PAGE_SIZE), end.saturating_mul(PAGE_SIZE)), Mode::Remove);
    }
}

/// Pages [first, end) of a byte range, saturating where the range overflows (the op then
/// fails before touching a page; the cell is only wider).
fn pages(offset: u64, len: u64) -> (u64, u64) {
    (offset / PAGE_SIZE, offset.saturating_add(len).div_ceil(PAGE_SIZE).max(offset / PAGE_SIZE + 1))
}

impl Model {
    /// A guest access (or half of one): the GFN's attributes and slot (view.rs resolve():
    /// `is_private`, `guest_slot`), the binding's file (`file_gone`) and page (`populate`,
    /// then load or store), the mapping's file (`mapped`, `map_generation`) and page, or
    /// the slot's anonymous page.
    pub(super) fn access_footprint(&self, access: &Access) -> Footprint {
        let mut f = Footprint::default();
        let gfn = access.gpa / PAGE_SIZE;
        let (offset, width) = (access.gpa % PAGE_SIZE, access.width.bytes());
        let mode = match access.kind {
            AccessKind::Read => Mode::Read,
            AccessKind::Write(_) => Mode::Write,
        };
        f.add(Cell::Gfns(gfn, gfn + 1), Mode::Read);
        if let Some((id, slot)) = self.guest_slot(gfn) {
            let index = gfn - slot.base_gfn;
            let at = index * PAGE_SIZE + offset;
            f.add(Cell::AnonPages(id, index, index + 1), Mode::Populate);
            f.add(Cell::AnonBytes(id, at, at + width), mode);
            if let Some(b) = slot.binding {
                f.file_access(b.gmem, (b.pgoff + index).saturating_mul(PAGE_SIZE) + offset, width, mode);
            }
            if let Shared::GmemMap { gmem, pgoff, .. } = slot.shared {
                f.file_access(gmem, (pgoff + index).saturating_mul(PAGE_SIZE) + offset, width, mode);
            }
        }
        f
    }

    /// A member's op (or one page of a split punch or allocate).
    pub(super) fn op_footprint(&self, op: &Op) -> Footprint {
        let mut f = Footprint::default();
        match *op {
            // gmem.rs fallocate(): the file's fd (`file(gmem, true)`), then pages of the range
            // dropped (`drop_pages`) or made to exist (`populate`).
            Op::Punch { gmem, offset, len } => {
                let (first, end) = pages(offset, len);
                f.add(Cell::File(gmem), Mode::Read);
                f.file_drop(gmem, first, end);
            }
            Op::Allocate { gmem, offset, len, .. } => {
                let (first, end) = pages(offset, len);
                f.add(Cell::File(gmem), Mode::Read);
                f.add(Cell::FilePages(gmem, first, end), Mode::Populate);
            }
            // gmem.rs host_access(): the mapping (`mapped_range`), then each page it spans is
            // made to exist and its bytes loaded or stored.
            Op::HostRead { gmem, offset, width } | Op::HostWrite { gmem, offset, width, .. } => {
                let mode = if matches!(op, Op::HostRead { .. }) { Mode::Read } else { Mode::Write };
                f.file_access(gmem, offset, width.bytes(), mode);
            }
            // memslot.rs delete_slot(): the slot goes (its GFNs' routing) with its anonymous
            // memory; a slot that is not there stays not there (no member binds).
            Op::Unbind { slot } => {
                if let Some(s) = self.slots.get(&slot) {
                    f.add(Cell::Gfns(s.base_gfn, s.base_gfn + s.npages), Mode::Write);
                    f.add(Cell::AnonPages(slot, 0, u64::MAX), Mode::Remove);
                    f.add(Cell::AnonBytes(slot, 0, u64::MAX), Mode::Remove);
                }
            }
            // gmem.rs close_gmem()/unmap(): the references, and release_if_unreferenced()
            // (every binding's `file_gone`, every page dropped).
            Op::CloseGmem { gmem } | Op::Unmap { gmem } => {
                f.add(Cell::File(gmem), Mode::Write);
                f.file_drop(gmem, 0, u64::MAX);
            }
            // memslot.rs set_attributes(): the attributes of the range (read for
            // `uniform`, then set), nothing else.
            Op::SetAttributes { gpa, size, .. } => {
                let (first, end) = pages(gpa, size);
                f.add(Cell::Gfns(first, end), Mode::Write);
            }
            _ => f.add(Cell::All, Mode::Write),
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_commute_where_their_cells_do_not_meet_or_only_read_populate_or_drop() {
        let g = GmemId(1);
        assert!(Cell::FilePages(g, 0, 2).meets(&Cell::FilePages(g, 1, 3)));
        assert!(!Cell::FilePages(g, 0, 2).meets(&Cell::FilePages(g, 2, 3)));
        assert!(!Cell::FilePages(g, 0, 2).meets(&Cell::FilePages(GmemId(2), 0, 2)));
        assert!(!Cell::File(g).meets(&Cell::FilePages(g, 0, u64::MAX)));
        assert!(Cell::All.meets(&Cell::AnonPages(3, 0, 1)));
        let one = |cell, mode| Footprint { cells: vec![(cell, mode)] };
        let (reader, closer) = (one(Cell::File(g), Mode::Read), one(Cell::File(g), Mode::Write));
        assert!(!reader.conflicts(&reader.clone()), "two reads commute");
        assert!(reader.conflicts(&closer) && closer.conflicts(&reader));
        let (fault, punch) = (one(Cell::FilePages(g, 0, 1), Mode::Populate), one(Cell::FilePages(g, 0, 1), Mode::Remove));
        assert!(!fault.conflicts(&fault.clone()) && !punch.conflicts(&punch.clone()), "populate twice, drop twice: the same");
        assert!(fault.conflicts(&punch), "a fault and a drop of one page do not commute");
        let write = |at| one(Cell::FileBytes(g, at, at + 4), Mode::Write);
        assert!(!write(0).conflicts(&write(4)) && write(0).conflicts(&write(2)), "stores commute where their bytes differ");
    }
}
