//! Program generation from fuzzer bytes.
//!
//! The generator keeps a rough picture of what the program has made so far (files, their
//! sizes and mappings, bound slots) so that most ops name live objects with valid arguments
//! and reach deep states; now and then an argument is drawn at a bound the kernel checks
//! (`values`). The picture is optimistic (it assumes valid calls succeed): the model, not
//! the generator, decides what each op does. Which op kinds a program uses and how often
//! come from `weights` (the swarm and the one table of rates, shaped by the profile).

mod group;
pub mod values;
pub mod weights;

#[cfg(test)]
mod tests;

use arbitrary::{Result, Unstructured};
use gmemfuzz_backends::op::{
    layout, Access, AccessKind, FdArg, GmemId, Op, Width, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEM_GUEST_MEMFD,
    KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, MADVICE, PAGE_SIZE,
};
use gmemfuzz_backends::{OpKind, Profile};

use values::{Bytes, Gpa, PAGES_2M};
pub use weights::{OpWeights, Swarm};

/// One madvise in this many is MADV_HWPOISON where the kernel takes it: madvise is about 3
/// in 115 of the ops drawn, so about one op in 300.
const HWPOISON_IN_MADVISE: u8 = 8;

/// A create of the program, by `GmemId` (index): what it asked for, and whether the
/// picture believes it made a file.
struct File {
    pages: u64,
    flags: u64,
    made: bool,
}

/// A slot the picture believes is bound.
struct Slot {
    id: u32,
    gfn: u64,
    pages: u64,
    flags: u32,
    /// (file index, first file page) of a guest_memfd slot.
    binding: Option<(usize, u64)>,
}

impl Slot {
    /// Whether the slot starts on a 2 MiB boundary and spans at least one 2 MiB page: KVM
    /// may then map its first 2 MiB huge.
    fn covers_hugepage(&self) -> bool {
        self.gfn % PAGES_2M == 0 && self.pages >= PAGES_2M
    }
}

/// What a `Bind` aims at.
enum Shape {
    /// A few pages in the window.
    Small,
    /// A 2 MiB or 1 GiB range at a GPA (and file offset) aligned to its size.
    Huge(u64),
    /// A range of a file another slot binds: beside that binding or over it.
    Beside(usize),
}

/// The generator's optimistic picture of the program so far.
pub struct Generator {
    profile: Profile,
    weights: OpWeights,
    swarm: Swarm,
    files: Vec<File>,
    slots: Vec<Slot>,
    /// Files that have been mapped (by index into `files`).
    mapped: Vec<usize>,
    /// An op to emit next (a map right after a mappable file is made).
    pending: Option<Op>,
    index: usize,
}

impl Generator {
    /// A generator for `profile`, with its rates (`OpWeights::for_profile`) and every op
    /// kind enabled until `draw_swarm`.
    pub fn new(profile: &Profile) -> Generator {
        Generator {
            profile: profile.clone(),
            weights: OpWeights::for_profile(profile),
            swarm: Swarm::all(),
            files: Vec::new(),
            slots: Vec::new(),
            mapped: Vec::new(),
            pending: None,
            index: 0,
        }
    }

    /// Replaces the rates (for tests and tuning).
    pub fn with_weights(mut self, weights: OpWeights) -> Generator {
        self.weights = weights;
        self
    }

    /// Decodes which op kinds this program uses (the first bytes of the input).
    pub fn draw_swarm(&mut self, u: &mut Unstructured) -> Result<()> {
        self.swarm = Swarm::draw(u)?;
        Ok(())
    }

    /// Ops until the input runs out or `max` are made.
    pub fn ops_until_empty(&mut self, u: &mut Unstructured, max: usize) -> Result<Vec<Op>> {
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < max {
            ops.push(self.op(u)?);
        }
        Ok(ops)
    }

    /// Exactly `len` ops.
    pub fn ops(&mut self, u: &mut Unstructured, len: usize) -> Result<Vec<Op>> {
        (0..len).map(|_| self.op(u)).collect()
    }

    pub fn op(&mut self, u: &mut Unstructured) -> Result<Op> {
        self.index += 1;
        if let Some(op) = self.pending.take() {
            return Ok(op);
        }
        if !self.files.iter().any(|f| f.made) && u.ratio(7u8, 8)? {
            return self.create(u);
        }
        let Some(kind) = self.weights.draw(u, &self.swarm)? else {
            return Ok(Op::Check);
        };
        Ok(match kind {
            OpKind::CreateGmem => self.create(u)?,
            OpKind::Map => {
                // Mostly a file that can be mapped; the others fail with ENODEV.
                let mappable: Vec<usize> =
                    (0..self.files.len()).filter(|&i| self.files[i].made && self.files[i].flags & GUEST_MEMFD_FLAG_MMAP != 0).collect();
                let gmem = match mappable.is_empty() || u.ratio(1u8, 6)? {
                    true => self.gmem(u)?,
                    false => GmemId(*u.choose(&mappable)? as u8),
                };
                self.mapped.push(gmem.0 as usize);
                Op::Map { gmem }
            }
            OpKind::Bind => self.bind(u)?,
            OpKind::Unbind => Op::Unbind { slot: self.slot(u)? },
            OpKind::ModifySlot => self.modify(u)?,
            OpKind::SetAttributes => self.attributes(u)?,
            OpKind::Punch => {
                let (gmem, offset, len) = self.file_range(u)?;
                Op::Punch { gmem, offset, len }
            }
            OpKind::Allocate => {
                let (gmem, offset, len) = self.file_range(u)?;
                let mode = if u.ratio(1u8, 6)? { *u.choose(&[0, 2, 0x11, 0x80, 0x81])? } else { 1 };
                Op::Allocate { gmem, mode, offset, len }
            }
            OpKind::CloseGmem => Op::CloseGmem { gmem: self.gmem(u)? },
            OpKind::Unmap => Op::Unmap { gmem: self.gmem(u)? },
            OpKind::Truncate => {
                // Any size, the file's own among them: the kernel refuses every one.
                let gmem = self.gmem(u)?;
                let times = u.int_in_range(0..=2u64)?;
                let size = Bytes::pick(u, self.file_pages(gmem) * PAGE_SIZE * times, 0)?;
                Op::Truncate { gmem, size }
            }
            OpKind::Mbind => self.mbind(u)?,
            OpKind::GetMempolicy => self.get_mempolicy(u)?,
            OpKind::PreFault => {
                let (gpa, size) = self.gpa_range(u)?;
                Op::PreFault { gpa, size }
            }
            OpKind::Madvise => {
                // Mostly the modelled advices; now and then one no kernel knows (EINVAL).
                let gmem = self.mapped_gmem(u)?;
                if self.profile.hwpoison_errno.is_none() && u.ratio(1u8, HWPOISON_IN_MADVISE)? {
                    return self.hwpoison(u, gmem);
                }
                let (offset, len) = self.range_in(u, gmem)?;
                let advice = match u.ratio(1u8, 16)? {
                    true => *u.choose(&[5, 26, 0x1000])?,
                    // MADV_HWPOISON only through `hwpoison`, at its own rate.
                    false => {
                        let plain: Vec<_> = MADVICE.iter().filter(|&&(_, v)| v != libc::MADV_HWPOISON as u64).collect();
                        u.choose(&plain)?.1 as u32
                    }
                };
                Op::Madvise { gmem, offset, len, advice }
            }
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
            OpKind::Group => self.group(u)?,
        })
    }

    fn create(&mut self, u: &mut Unstructured) -> Result<Op> {
        let valid = self.profile.gmem_flags;
        let mut flags = *u.choose(&[valid, valid, valid & GUEST_MEMFD_FLAG_MMAP, 0, valid & GUEST_MEMFD_FLAG_INIT_SHARED])?;
        if u.ratio(1u8, 16)? {
            flags |= 1 << u.int_in_range(0..=63)?;
        }
        let pages = values::file_pages(u)?;
        let size = Bytes::pick(u, pages * PAGE_SIZE, 0)?;
        // Every create takes the next id, made or not (see `GmemId`).
        let made = flags & !valid == 0 && size == pages * PAGE_SIZE;
        self.files.push(File { pages, flags, made });
        if made {
            // Most mappable files get mapped at once, so host accesses have somewhere to go.
            if flags & GUEST_MEMFD_FLAG_MMAP != 0 && u.ratio(3u8, 4)? {
                let gmem = GmemId((self.files.len() - 1) as u8);
                self.mapped.push(gmem.0 as usize);
                self.pending = Some(Op::Map { gmem });
            }
        }
        Ok(Op::CreateGmem { size, flags })
    }

    /// Mostly a file the picture believes was made; now and then any id, a failed
    /// create's or one past every create (the op is skipped: no such file).
    fn gmem(&self, u: &mut Unstructured) -> Result<GmemId> {
        let made: Vec<usize> = (0..self.files.len()).filter(|&i| self.files[i].made).collect();
        if made.is_empty() || u.ratio(1u8, 16)? {
            let n = self.files.len().max(1);
            return Ok(GmemId(u.int_in_range(0..=n - 1)? as u8));
        }
        Ok(GmemId(*u.choose(&made)? as u8))
    }

    fn file_pages(&self, gmem: GmemId) -> u64 {
        self.files.get(gmem.0 as usize).map_or(4, |f| f.pages)
    }

    /// A slot the program bound, mostly; else any id (`values::slot_id`).
    fn slot(&self, u: &mut Unstructured) -> Result<u32> {
        if !self.slots.is_empty() && u.ratio(3u8, 4)? {
            return Ok(u.choose(&self.slots)?.id);
        }
        values::slot_id(u)
    }

    /// Memslot flags for a new slot: mostly guest_memfd where the VM has it, else plain,
    /// dirty-logged or read-only; now and then a combination check_memory_region_flags()
    /// refuses or an unknown bit.
    fn slot_flags(&self, u: &mut Unstructured) -> Result<u32> {
        if u.ratio(1u8, 16)? {
            let unknown_bit = 1 << u.int_in_range(3..=31)?;
            return Ok(*u.choose(&[KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_GUEST_MEMFD | KVM_MEM_READONLY, unknown_bit])?);
        }
        let gmem = if self.profile.guest_memfd { 12 } else { 0 };
        Ok(match u.int_in_range(0..=gmem + 7)? {
            0..=2 => 0,
            3 | 4 => KVM_MEM_LOG_DIRTY_PAGES,
            5 | 6 => KVM_MEM_READONLY,
            7 => KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY,
            _ => KVM_MEM_GUEST_MEMFD,
        })
    }

    fn bind(&mut self, u: &mut Unstructured) -> Result<Op> {
        let slot = values::slot_id(u)?;
        let flags = self.slot_flags(u)?;
        let gmem_slot = flags & KVM_MEM_GUEST_MEMFD != 0;
        let bound: Vec<usize> = self.slots.iter().filter_map(|s| s.binding.map(|b| b.0)).collect();
        // Hugepage-sized slots are kept rare: every state comparison digests up to
        // MAX_GUEST_PROBES of their pages through the guest, which is what a program's
        // time goes to on this host (instruction emulation under PVM).
        let shape = match u.int_in_range(0..=31u8)? {
            0..=3 if gmem_slot && !bound.is_empty() => Shape::Beside(*u.choose(&bound)?),
            4..=6 => Shape::Huge(PAGES_2M),
            7 if u.ratio(1u8, 4)? => Shape::Huge(values::PAGES_1G),
            _ => Shape::Small,
        };
        let (gmem, pages, offset_pages, gfn) = self.place(u, shape, gmem_slot)?;
        let fd = match u.int_in_range(0..=31u8)? {
            0 => FdArg::Invalid,
            1 => FdArg::NotGmem,
            _ => FdArg::Gmem(gmem),
        };
        let valid = (gfn * PAGE_SIZE, pages * PAGE_SIZE, offset_pages * PAGE_SIZE);
        let gpa = Gpa::pick(u, valid.0, valid.1)?;
        let size = Bytes::pick(u, valid.1, gpa)?;
        let offset = Bytes::pick(u, valid.2, size)?;
        let taken = gmem_slot && self.binds_over(gmem.0 as usize, offset_pages, pages);
        let id_ok = slot >> 16 == 0 && slot & 0xffff < values::KVM_USER_MEM_SLOTS && !self.slots.iter().any(|s| s.id == slot);
        if (gpa, size, offset) == valid && id_ok && !taken {
            let binding = gmem_slot.then_some((gmem.0 as usize, offset_pages));
            self.slots.push(Slot { id: slot, gfn, pages, flags, binding });
        }
        Ok(Op::Bind { slot, flags, fd, gpa, size, offset })
    }

    /// Whether a slot in the picture binds file pages [first, first + pages), or the range
    /// ends past the file: kvm_gmem_bind() refuses either.
    fn binds_over(&self, file: usize, first: u64, pages: u64) -> bool {
        let past_end = self.files.get(file).is_none_or(|f| !f.made || first + pages > f.pages);
        past_end
            || self.slots.iter().any(|s| s.binding.is_some_and(|(f, start)| f == file && start < first + pages && first < start + s.pages))
    }

    /// The file, size, file offset and first GFN of a new slot of `shape` (in pages).
    fn place(&self, u: &mut Unstructured, shape: Shape, gmem_slot: bool) -> Result<(GmemId, u64, u64, u64)> {
        let window = |u: &mut Unstructured, pages: u64| -> Result<u64> {
            Ok(layout::WINDOW_GPA / PAGE_SIZE + u.int_in_range(0..=layout::WINDOW_PAGES - pages.min(layout::WINDOW_PAGES))?)
        };
        match shape {
            Shape::Huge(pages) => {
                // A guest_memfd slot needs a file that large; a plain one any file id.
                let big: Vec<usize> = (0..self.files.len()).filter(|&i| self.files[i].made && self.files[i].pages >= pages).collect();
                if !gmem_slot || !big.is_empty() {
                    let file = if gmem_slot { *u.choose(&big)? } else { self.gmem(u)?.0 as usize };
                    let file_pages = self.files.get(file).map_or(pages, |f| f.pages);
                    let offset = u.int_in_range(0..=(file_pages - pages.min(file_pages)) / pages)? * pages;
                    let gfn = values::huge_gpa(u, pages)? / PAGE_SIZE;
                    return Ok((GmemId(file as u8), pages, offset, gfn));
                }
            }
            Shape::Beside(file) => {
                let file_pages = self.files[file].pages;
                let pages = u.int_in_range(1..=file_pages.min(4))?;
                let others: Vec<&Slot> = self.slots.iter().filter(|s| s.binding.is_some_and(|b| b.0 == file)).collect();
                let other = u.choose(&others)?;
                let (start, end) = (other.binding.expect("filtered").1, other.binding.expect("filtered").1 + other.pages);
                // Over the other binding (the kernel must refuse), or just before or after it.
                let offset = match u.int_in_range(0..=2u8)? {
                    0 => u.int_in_range(start.saturating_sub(pages - 1)..=end - 1)?,
                    1 if start >= pages => start - pages,
                    _ => end.min(file_pages - pages),
                };
                return Ok((GmemId(file as u8), pages, offset, window(u, pages)?));
            }
            Shape::Small => {}
        }
        let gmem = self.gmem(u)?;
        let file_pages = self.file_pages(gmem);
        let pages = u.int_in_range(1..=file_pages.min(4))?;
        let offset = u.int_in_range(0..=file_pages - pages)?;
        Ok((gmem, pages, offset, window(u, pages)?))
    }

    /// KVM_SET_USER_MEMORY_REGION2 on a bound slot: a move (KVM_MR_MOVE), a flags change
    /// (KVM_MR_FLAGS_ONLY) adding or dropping one memslot flag, both, or nothing; on plain
    /// and guest_memfd slots alike (the kernel refuses every change to the latter).
    fn modify(&mut self, u: &mut Unstructured) -> Result<Op> {
        let picked = match self.slots.is_empty() || u.ratio(1u8, 8)? {
            true => None,
            false => Some(u.int_in_range(0..=self.slots.len() - 1)?),
        };
        let (slot, old_gfn, pages, old_flags) = match picked {
            Some(i) => (self.slots[i].id, self.slots[i].gfn, self.slots[i].pages, self.slots[i].flags),
            None => (values::slot_id(u)?, layout::WINDOW_GPA / PAGE_SIZE, 1, KVM_MEM_GUEST_MEMFD),
        };
        let toggle = *u.choose(&[
            0,
            0,
            KVM_MEM_LOG_DIRTY_PAGES,
            KVM_MEM_LOG_DIRTY_PAGES,
            KVM_MEM_READONLY,
            KVM_MEM_GUEST_MEMFD,
            KVM_MEM_GUEST_MEMFD,
        ])?;
        let mut flags = old_flags ^ toggle;
        if u.ratio(1u8, 16)? {
            flags |= 1 << u.int_in_range(3..=31)?;
        }
        let moves = toggle == 0 || u.ratio(1u8, 4)?;
        let gfn = match moves {
            false => old_gfn,
            true if pages >= PAGES_2M => values::huge_gpa(u, pages)? / PAGE_SIZE,
            true => layout::WINDOW_GPA / PAGE_SIZE + u.int_in_range(0..=layout::WINDOW_PAGES - pages.min(layout::WINDOW_PAGES))?,
        };
        let gpa = Gpa::pick(u, gfn * PAGE_SIZE, pages * PAGE_SIZE)?;
        // The picture follows changes the kernel takes: plain slots keeping READONLY.
        if let Some(i) = picked {
            let plain = old_flags & KVM_MEM_GUEST_MEMFD == 0;
            if plain && flags & !(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY) == 0 && toggle != KVM_MEM_READONLY && gpa == gfn * PAGE_SIZE {
                self.slots[i].gfn = gfn;
                self.slots[i].flags = flags;
            }
        }
        Ok(Op::ModifySlot { slot, gpa, flags })
    }

    /// A GPA range: pages of a slot, mostly; now and then past its end or outside every slot.
    fn gpa_range(&self, u: &mut Unstructured) -> Result<(u64, u64)> {
        let huge: Vec<&Slot> = self.slots.iter().filter(|s| s.covers_hugepage()).collect();
        if !huge.is_empty() && u.ratio(1u8, 2)? {
            // A whole 2 MiB of a huge slot (where there is one, half the time): a conversion
            // that makes the hugepage uniform again (hugepage_has_attrs(),
            // kvm_arch_post_set_memory_attributes() in arch/x86/kvm/mmu/mmu.c), or a
            // pre-fault that may map it huge; the other half mixes it.
            let s = u.choose(&huge)?;
            let first = u.int_in_range(0..=s.pages / PAGES_2M - 1)? * PAGES_2M;
            let gpa = (s.gfn + first) * PAGE_SIZE;
            return Ok((gpa, Bytes::pick(u, PAGES_2M * PAGE_SIZE, gpa)?));
        }
        let (gpa, pages) = match self.slots.is_empty() {
            false => {
                let s = u.choose(&self.slots)?;
                let first = u.int_in_range(0..=s.pages - 1)?;
                ((s.gfn + first) * PAGE_SIZE, u.int_in_range(1..=(s.pages - first).min(8))?)
            }
            true => (layout::WINDOW_GPA, 1),
        };
        Ok((gpa, Bytes::pick(u, pages * PAGE_SIZE, gpa)?))
    }

    fn attributes(&mut self, u: &mut Unstructured) -> Result<Op> {
        let (gpa, size) = self.gpa_range(u)?;
        let supported = self.profile.attributes;
        let attributes = if u.ratio(1u8, 16)? { 1 << u.int_in_range(0..=63)? } else { *u.choose(&[0, supported])? };
        Ok(Op::SetAttributes { gpa, size, attributes })
    }

    fn file_range(&self, u: &mut Unstructured) -> Result<(GmemId, u64, u64)> {
        let gmem = self.gmem(u)?;
        let (offset, len) = self.range_in(u, gmem)?;
        Ok((gmem, offset, len))
    }

    /// A byte range of `gmem`: mostly whole pages inside it, now and then at a bound.
    fn range_in(&self, u: &mut Unstructured, gmem: GmemId) -> Result<(u64, u64)> {
        let pages = self.file_pages(gmem);
        // Mostly a few pages; in a large file now and then a whole 2 MiB hugepage.
        let (first, len) = if pages >= PAGES_2M && u.ratio(1u8, 4)? {
            (u.int_in_range(0..=pages / PAGES_2M - 1)? * PAGES_2M, PAGES_2M)
        } else {
            let first = u.int_in_range(0..=pages - 1)?;
            (first, u.int_in_range(1..=(pages - first).min(8) + 1)?)
        };
        let offset = Bytes::pick(u, first * PAGE_SIZE, len * PAGE_SIZE)?;
        Ok((offset, Bytes::pick(u, len * PAGE_SIZE, offset)?))
    }

    /// madvise(MADV_HWPOISON) on one page of `gmem`'s mapping. Only where the kernel
    /// takes it (`Profile::hwpoison_errno`), at a low rate (`HWPOISON_IN_MADVISE`): a
    /// poisoned page is never given back to the kernel that runs the program.
    fn hwpoison(&self, u: &mut Unstructured, gmem: GmemId) -> Result<Op> {
        let offset = self.page_in(u, gmem)? * PAGE_SIZE;
        Ok(Op::Madvise { gmem, offset, len: PAGE_SIZE, advice: libc::MADV_HWPOISON as u32 })
    }

    /// Mostly a file the picture believes is mapped, for an op on its mapping.
    fn mapped_gmem(&self, u: &mut Unstructured) -> Result<GmemId> {
        match self.mapped.is_empty() || u.ratio(1u8, 8)? {
            true => self.gmem(u),
            false => Ok(GmemId(*u.choose(&self.mapped)? as u8)),
        }
    }

    /// A page of `gmem`: in a large file, mostly the first ones (where slots and other
    /// accesses go too).
    fn page_in(&self, u: &mut Unstructured, gmem: GmemId) -> Result<u64> {
        let pages = self.file_pages(gmem);
        let span = if pages > 16 && u.ratio(3u8, 4)? { 16 } else { pages.min(1 << 20) };
        u.int_in_range(0..=span - 1)
    }

    fn host_target(&self, u: &mut Unstructured) -> Result<(GmemId, u64, Width)> {
        let gmem = self.mapped_gmem(u)?;
        let width = *u.choose(&Width::ALL)?;
        let page = self.page_in(u, gmem)?;
        let offset = page * PAGE_SIZE + u.int_in_range(0..=(PAGE_SIZE / width.bytes()) - 1)? * width.bytes();
        Ok((gmem, offset, width))
    }

    /// An mbind() of a range of a mapping: mostly a valid mode with nodes and flags the
    /// kernel takes on one node, now and then what mm/mempolicy.c refuses (a mode past
    /// MPOL_MAX, clashing mode flags, nodes the task may not use, an unknown flag).
    fn mbind(&self, u: &mut Unstructured) -> Result<Op> {
        use gmemfuzz_backends::abi::mempolicy as mpol;
        let gmem = self.mapped_gmem(u)?;
        let (offset, len) = self.range_in(u, gmem)?;
        let mut mode = match u.ratio(1u8, 16)? {
            true => {
                let any: u32 = u.arbitrary()?;
                *u.choose(&[mpol::MAX, any])?
            }
            false => u.int_in_range(mpol::DEFAULT..=mpol::WEIGHTED_INTERLEAVE)?,
        };
        if u.ratio(1u8, 4)? {
            mode |= *u.choose(&[
                mpol::F_STATIC_NODES,
                mpol::F_RELATIVE_NODES,
                mpol::F_NUMA_BALANCING,
                mpol::F_STATIC_NODES | mpol::F_RELATIVE_NODES,
            ])?;
        }
        let nodes = match u.ratio(1u8, 16)? {
            true => u.arbitrary()?,
            false => *u.choose(&[1, 1, 1, 0, 0, 2, 3, 1 << 63])?,
        };
        let flags = *u.choose(&[
            0,
            0,
            0,
            mpol::MF_STRICT,
            mpol::MF_MOVE,
            mpol::MF_STRICT | mpol::MF_MOVE,
            mpol::MF_MOVE_ALL,
            mpol::MF_STRICT | mpol::MF_MOVE_ALL,
            1 << 3,
        ])?;
        Ok(Op::Mbind { gmem, offset, len, mode, nodes, flags })
    }

    /// get_mempolicy() at an address of a mapping (any byte of a page; now and then past it).
    fn get_mempolicy(&self, u: &mut Unstructured) -> Result<Op> {
        let gmem = self.mapped_gmem(u)?;
        let page = self.page_in(u, gmem)?;
        let byte = u.int_in_range(0..=PAGE_SIZE - 1)?;
        let offset = Bytes::pick(u, page * PAGE_SIZE + byte, 0)?;
        Ok(Op::GetMempolicy { gmem, offset })
    }

    /// A value that says where and when it was written, so a read from the wrong place
    /// or time shows.
    fn value(&self, u: &mut Unstructured, address: u64) -> Result<u64> {
        if u.ratio(1u8, 8)? {
            return u.arbitrary();
        }
        Ok(0xa5a5_0000_0000_0000 ^ (address << 12) ^ (self.index as u64) ^ 0x100)
    }

    fn guest(&mut self, u: &mut Unstructured) -> Result<Op> {
        let n = u.int_in_range(1..=4usize)?;
        let mut accesses = Vec::with_capacity(n);
        for _ in 0..n {
            let gfn = match (self.slots.is_empty(), u.ratio(1u8, 8)?) {
                (false, false) => {
                    // In a large slot mostly its first pages: the ones state comparisons digest.
                    let s = u.choose(&self.slots)?;
                    let span = if s.pages > 64 && u.ratio(3u8, 4)? { 64 } else { s.pages };
                    s.gfn + u.int_in_range(0..=span - 1)?
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
