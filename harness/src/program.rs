//! Programs and their generation from fuzzer bytes.
//!
//! The generator keeps a rough picture of what the program has made so far (files, their
//! sizes and mappings, bound slots) so that most ops name live objects with valid, small
//! arguments and reach deep states; now and then it draws a wild value to reach the
//! kernel's bound and alignment checks. The picture is optimistic (it assumes valid calls
//! succeed): the model, not the generator, decides what each op does.

use arbitrary::{Result, Unstructured};
use gmemfuzz_backends::op::{
    layout, Access, AccessKind, FdArg, GmemId, Op, OpKind, Width, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP,
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, PAGE_SIZE,
};

/// A program: ops run in order. `VERSION` names the op vocabulary, for stored programs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Program {
    pub ops: Vec<Op>,
}

impl Program {
    /// 2: `g<N>` names the N-th `create_gmem` op, failed or not (v1: the N-th successful one).
    pub const VERSION: u32 = 2;
    /// Most ops a generated program has.
    pub const MAX_OPS: usize = 48;

    pub fn new(ops: Vec<Op>) -> Program {
        Program { ops }
    }

    /// Decodes fuzzer bytes into a program; `None` when the bytes make nothing worth
    /// running (no op that reaches the kernel), so the fuzzer can drop the input.
    pub fn from_bytes(data: &[u8]) -> Option<Program> {
        Self::from_bytes_for(data, HOST_GMEM_FLAGS)
    }

    /// As `from_bytes`, for a kernel whose guest_memfd accepts `gmem_flags`
    /// (KVM_CAP_GUEST_MEMFD_FLAGS): valid flag sets are drawn from those.
    pub fn from_bytes_for(data: &[u8], gmem_flags: u64) -> Option<Program> {
        Self::from_bytes_with(data, gmem_flags, &OpRates::default())
    }

    /// As `from_bytes_for`, drawing op kinds at `rates`.
    pub fn from_bytes_with(data: &[u8], gmem_flags: u64, rates: &OpRates) -> Option<Program> {
        let mut u = Unstructured::new(data);
        let program = Generator::new(gmem_flags, rates.clone()).program(&mut u).ok()?;
        program.is_useful().then_some(program)
    }

    /// Generates a program of exactly `len` ops from `u` (for seeded generation).
    pub fn generate(u: &mut Unstructured, len: usize) -> Result<Program> {
        Self::generate_for(u, len, HOST_GMEM_FLAGS)
    }

    /// As `generate`, for a kernel whose guest_memfd accepts `gmem_flags`.
    pub fn generate_for(u: &mut Unstructured, len: usize, gmem_flags: u64) -> Result<Program> {
        let mut g = Generator::new(gmem_flags, OpRates::default());
        let ops = (0..len).map(|_| g.op(u)).collect::<Result<Vec<_>>>()?;
        Ok(Program { ops })
    }

    /// Programs of `len` ops each, generated one after another from a seeded RNG: the
    /// same seed gives the same programs (for `gmemfuzz run`, `bench` and tests).
    pub fn seeded(seed: u64, len: usize, gmem_flags: u64) -> impl Iterator<Item = Program> {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut bytes = vec![0u8; len * 64];
        std::iter::repeat_with(move || {
            rng.fill_bytes(&mut bytes);
            Self::generate_for(&mut Unstructured::new(&bytes), len, gmem_flags).expect("64 bytes per op are always enough")
        })
    }

    /// A program is worth running if it makes a file and does something more.
    pub fn is_useful(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::CreateGmem { .. })) && self.ops.len() >= 2
    }
}

/// The guest_memfd flags of the host kernel (6.18): what generation assumes by default.
pub const HOST_GMEM_FLAGS: u64 = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

/// How often the generator draws each op kind once a file exists: weights in the order
/// of `OpKind::ALL`, summing to at most 255. (A stand-in knob until the generator's
/// profile-driven rate table lands; the default is the historical ladder, out of 100.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRates(pub [u8; OpKind::ALL.len()]);

impl Default for OpRates {
    fn default() -> OpRates {
        OpRates([7, 6, 13, 5, 3, 4, 9, 5, 4, 3, 1, 20, 7, 8, 5])
    }
}

impl OpRates {
    /// The op kind a draw in `0..total` lands on.
    fn pick(&self, mut draw: u8) -> OpKind {
        for (kind, &weight) in OpKind::ALL.iter().zip(&self.0) {
            if draw < weight {
                return *kind;
            }
            draw -= weight;
        }
        OpKind::Check
    }

    fn total(&self) -> u8 {
        self.0.iter().fold(0u8, |a, &w| a.checked_add(w).expect("op rates sum to at most 255")).max(1)
    }
}

/// The generator's optimistic picture of the program so far.
#[derive(Default)]
struct Generator {
    /// The creation flags the kernel accepts.
    valid_flags: u64,
    rates: OpRates,
    /// Size in pages and flags of every file created with valid arguments.
    files: Vec<(u64, u64)>,
    /// Bound slots: (slot id, first GFN, pages).
    slots: Vec<(u32, u64, u64)>,
    /// Files that have been mapped (by index into `files`).
    mapped: Vec<usize>,
    /// An op to emit next (a map right after a mappable file is made).
    pending: Option<Op>,
    index: usize,
}

impl Generator {
    fn new(valid_flags: u64, rates: OpRates) -> Generator {
        Generator { valid_flags, rates, ..Default::default() }
    }

    fn program(&mut self, u: &mut Unstructured) -> Result<Program> {
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < Program::MAX_OPS {
            ops.push(self.op(u)?);
        }
        Ok(Program { ops })
    }

    /// One in `n`.
    fn rare(u: &mut Unstructured, n: u8) -> Result<bool> {
        Ok(u.int_in_range(0..=n - 1)? == 0)
    }

    fn op(&mut self, u: &mut Unstructured) -> Result<Op> {
        self.index += 1;
        if let Some(op) = self.pending.take() {
            return Ok(op);
        }
        if self.files.is_empty() && !Self::rare(u, 8)? {
            return self.create(u);
        }
        let total = self.rates.total();
        Ok(match self.rates.pick(u.int_in_range(0..=total - 1)?) {
            OpKind::CreateGmem => return self.create(u),
            OpKind::Map => {
                let gmem = self.gmem(u)?;
                self.mapped.push(gmem.0 as usize);
                Op::Map { gmem }
            }
            OpKind::Bind => return self.bind(u),
            OpKind::Unbind => Op::Unbind { slot: self.slot(u)? },
            OpKind::ModifySlot => self.modify(u)?,
            OpKind::SetAttributes => self.attributes(u)?,
            OpKind::Punch => {
                let (gmem, offset, len) = self.file_range(u)?;
                Op::Punch { gmem, offset, len }
            }
            OpKind::Allocate => {
                let (gmem, offset, len) = self.file_range(u)?;
                let mode = if Self::rare(u, 6)? { *u.choose(&[0, 2, 0x11])? } else { 1 };
                Op::Allocate { gmem, mode, offset, len }
            }
            OpKind::CloseGmem => Op::CloseGmem { gmem: self.gmem(u)? },
            OpKind::Unmap => Op::Unmap { gmem: self.gmem(u)? },
            OpKind::DestroyVm => Op::DestroyVm,
            OpKind::Guest => self.guest(u)?,
            OpKind::HostRead => {
                let (gmem, offset, width) = self.host_target(u)?;
                Op::HostRead { gmem, offset, width }
            }
            OpKind::HostWrite => {
                let (gmem, offset, width) = self.host_target(u)?;
                let value = self.value(u, offset)?;
                Op::HostWrite { gmem, offset, width, value }
            }
            OpKind::Check => Op::Check,
        })
    }

    fn create(&mut self, u: &mut Unstructured) -> Result<Op> {
        let valid = self.valid_flags;
        let mut flags = *u.choose(&[valid, valid, valid & GUEST_MEMFD_FLAG_MMAP, 0, valid & GUEST_MEMFD_FLAG_INIT_SHARED])?;
        if Self::rare(u, 16)? {
            flags |= 1 << u.int_in_range(2..=63)?;
        }
        let pages = u.int_in_range(1..=8u64)?;
        let size = if Self::rare(u, 16)? {
            *u.choose(&[0, PAGE_SIZE - 1, pages * PAGE_SIZE + 512, 1 << 63, !(PAGE_SIZE - 1)])?
        } else {
            pages * PAGE_SIZE
        };
        if flags & !valid == 0 && size == pages * PAGE_SIZE {
            self.files.push((pages, flags));
            // Most mappable files get mapped at once, so host accesses have somewhere to go.
            if flags & GUEST_MEMFD_FLAG_MMAP != 0 && !Self::rare(u, 4)? {
                let gmem = GmemId((self.files.len() - 1) as u8);
                self.mapped.push(gmem.0 as usize);
                self.pending = Some(Op::Map { gmem });
            }
        }
        Ok(Op::CreateGmem { size, flags })
    }

    fn gmem(&self, u: &mut Unstructured) -> Result<GmemId> {
        let n = self.files.len().max(1);
        Ok(GmemId(u.int_in_range(0..=n - 1)? as u8))
    }

    fn file_pages(&self, gmem: GmemId) -> u64 {
        self.files.get(gmem.0 as usize).map_or(4, |f| f.0)
    }

    fn slot(&self, u: &mut Unstructured) -> Result<u32> {
        if !self.slots.is_empty() && !Self::rare(u, 4)? {
            return Ok(u.choose(&self.slots)?.0);
        }
        Ok(layout::FIRST_PROGRAM_SLOT + u.int_in_range(0..=layout::PROGRAM_SLOTS - 1)?)
    }

    /// A byte quantity of `pages` pages, or now and then a wild one.
    fn bytes(u: &mut Unstructured, pages: u64) -> Result<u64> {
        if Self::rare(u, 16)? {
            return Ok(*u.choose(&[0, 1, PAGE_SIZE / 2, pages * PAGE_SIZE + 8, !(PAGE_SIZE - 1), 1 << 63])?);
        }
        Ok(pages * PAGE_SIZE)
    }

    fn bind(&mut self, u: &mut Unstructured) -> Result<Op> {
        let slot = if Self::rare(u, 24)? {
            *u.choose(&[32764, 32767, 65535, 3 << 16])?
        } else {
            layout::FIRST_PROGRAM_SLOT + u.int_in_range(0..=layout::PROGRAM_SLOTS - 1)?
        };
        let gmem = self.gmem(u)?;
        let file_pages = self.file_pages(gmem);
        let pages = u.int_in_range(1..=file_pages.min(4))?;
        let offset_pages = u.int_in_range(0..=file_pages - pages)?;
        let first_gfn = layout::WINDOW_GPA / PAGE_SIZE + u.int_in_range(0..=layout::WINDOW_PAGES - pages)?;
        let flags = if Self::rare(u, 10)? {
            *u.choose(&[
                0,
                KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES,
                KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY,
                KVM_MEM_READONLY,
                1 << 7,
            ])?
        } else {
            KVM_MEM_GUEST_MEMFD
        };
        let fd = match u.int_in_range(0..=31u8)? {
            0 => FdArg::Invalid,
            1 => FdArg::NotGmem,
            _ => FdArg::Gmem(gmem),
        };
        let gpa = if Self::rare(u, 16)? { first_gfn * PAGE_SIZE + 0x800 } else { first_gfn * PAGE_SIZE };
        let size = Self::bytes(u, pages)?;
        let offset = if Self::rare(u, 16)? { Self::bytes(u, offset_pages)? | 0x10 } else { offset_pages * PAGE_SIZE };
        if size == pages * PAGE_SIZE && !self.slots.iter().any(|s| s.0 == slot) {
            self.slots.push((slot, first_gfn, pages));
        }
        Ok(Op::Bind { slot, flags, fd, gpa, size, offset })
    }

    fn modify(&mut self, u: &mut Unstructured) -> Result<Op> {
        let slot = self.slot(u)?;
        let gpa = layout::WINDOW_GPA + u.int_in_range(0..=layout::WINDOW_PAGES - 1)? * PAGE_SIZE;
        // Guest_memfd slots keep the flag: the kernel must refuse moving or re-flagging them.
        // Dropping the flag from a bound slot is not generated (see the model).
        let flags = *u.choose(&[KVM_MEM_GUEST_MEMFD, KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES])?;
        Ok(Op::ModifySlot { slot, gpa, flags })
    }

    fn attributes(&mut self, u: &mut Unstructured) -> Result<Op> {
        let (gpa, pages) = match self.slots.is_empty() {
            false => {
                let &(_, gfn, pages) = u.choose(&self.slots)?;
                let first = u.int_in_range(0..=pages - 1)?;
                ((gfn + first) * PAGE_SIZE, u.int_in_range(1..=pages - first)?)
            }
            true => (layout::WINDOW_GPA, 1),
        };
        let size = Self::bytes(u, pages)?;
        let attributes = if Self::rare(u, 16)? { 1 << u.int_in_range(0..=63)? } else { *u.choose(&[0, KVM_MEMORY_ATTRIBUTE_PRIVATE])? };
        Ok(Op::SetAttributes { gpa, size, attributes })
    }

    fn file_range(&self, u: &mut Unstructured) -> Result<(GmemId, u64, u64)> {
        let gmem = self.gmem(u)?;
        let pages = self.file_pages(gmem);
        let first = u.int_in_range(0..=pages - 1)?;
        let len = u.int_in_range(1..=pages - first + 1)?;
        let offset = if Self::rare(u, 16)? { *u.choose(&[1, first * PAGE_SIZE + 8, 1 << 63, u64::MAX])? } else { first * PAGE_SIZE };
        Ok((gmem, offset, Self::bytes(u, len)?))
    }

    fn host_target(&self, u: &mut Unstructured) -> Result<(GmemId, u64, Width)> {
        let gmem = match self.mapped.is_empty() || Self::rare(u, 8)? {
            true => self.gmem(u)?,
            false => GmemId(*u.choose(&self.mapped)? as u8),
        };
        let width = *u.choose(&Width::ALL)?;
        let page = u.int_in_range(0..=self.file_pages(gmem) - 1)?;
        let offset = page * PAGE_SIZE + u.int_in_range(0..=(PAGE_SIZE / width.bytes()) - 1)? * width.bytes();
        Ok((gmem, offset, width))
    }

    /// A value that says where and when it was written, so a read from the wrong place
    /// or time shows.
    fn value(&self, u: &mut Unstructured, address: u64) -> Result<u64> {
        if Self::rare(u, 8)? {
            return u.arbitrary();
        }
        Ok(0xa5a5_0000_0000_0000 ^ (address << 12) ^ (self.index as u64) ^ 0x100)
    }

    fn guest(&mut self, u: &mut Unstructured) -> Result<Op> {
        let n = u.int_in_range(1..=4usize)?;
        let mut accesses = Vec::with_capacity(n);
        for _ in 0..n {
            let gfn = match (self.slots.is_empty(), Self::rare(u, 8)?) {
                (false, false) => {
                    let &(_, gfn, pages) = u.choose(&self.slots)?;
                    gfn + u.int_in_range(0..=pages - 1)?
                }
                _ => layout::WINDOW_GPA / PAGE_SIZE + u.int_in_range(0..=layout::WINDOW_PAGES - 1)?,
            };
            let width = *u.choose(&Width::ALL)?;
            let gpa = gfn * PAGE_SIZE + u.int_in_range(0..=(PAGE_SIZE / width.bytes()) - 1)? * width.bytes();
            let kind = if u.arbitrary()? { AccessKind::Read } else { AccessKind::Write(self.value(u, gpa)?) };
            accesses.push(Access { gpa, width, kind });
        }
        Ok(Op::Guest { accesses })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    #[test]
    fn generation_reaches_every_op_kind() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let mut bytes = vec![0u8; 512];
            rng.fill_bytes(&mut bytes);
            if let Some(p) = Program::from_bytes(&bytes) {
                seen.extend(p.ops.iter().map(Op::kind));
            }
        }
        let missing: Vec<_> = OpKind::ALL.iter().filter(|k| !seen.contains(k)).collect();
        assert!(missing.is_empty(), "op kinds never generated: {missing:?}");
    }

    #[test]
    fn empty_input_is_rejected() {
        assert_eq!(Program::from_bytes(&[]), None);
    }
}
