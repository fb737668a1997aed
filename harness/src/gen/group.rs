//! Concurrent groups: members that race over the same pages, files and slots.
//!
//! A group is built around one target: a bound slot (its guest_memfd file, if any, and a
//! page of it) or, without slots, a mapped file. Members are a guest access loop on the
//! target page (always, so that something observes the race), then up to three more of:
//! another guest loop (another vCPU), an invalidation of the target (punch or allocate of its
//! file range, unbind of its slot, alone or beside the close of its file, close or munmap of
//! its file, set_attributes over it where the kernel has attributes, or over the rest of its
//! hugepage) and host accesses to the same file page.

use arbitrary::{Result, Unstructured};
use gmemfuzz_backends::group::{Group, Member};
use gmemfuzz_backends::op::{layout, Access, AccessKind, GmemId, Op, Width, PAGE_SIZE};

use super::values::HUGE_2M;
use super::{Generator, Slot};

/// Most positions (`Group::positions`) of a generated group: keeps the model's search of its
/// orders to about a millisecond.
const GENERATED_POSITIONS: u64 = 1_500;

/// Where the members of a group meet.
struct Target {
    /// A page of the target slot, in guest-physical terms (none without a slot).
    gpa: Option<u64>,
    slot: Option<u32>,
    /// The file and file page behind it.
    file: Option<(GmemId, u64)>,
    /// Whether `file` is the one the slot is bound to (not a mapped file picked beside a
    /// plain slot).
    bound: bool,
    /// The GPA of the 2 MiB page around `gpa`, where the slot covers all of it (a huge
    /// mapping may then hold the target).
    hugepage: Option<u64>,
}

impl Generator {
    pub(super) fn group(&mut self, u: &mut Unstructured) -> Result<Op> {
        let target = self.race_target(u)?;
        let mut members = vec![self.guest_loop(u, &target)?];
        // Over a hugepage, a conversion half the time: what races there is its mapping.
        if target.hugepage.is_some() && u.arbitrary()? {
            members.extend(self.attributes_member(u, &target)?);
        }
        let extra = u.int_in_range(1..=3usize)?;
        for _ in 0..extra {
            let member = match u.int_in_range(0..=9u8)? {
                0 | 1 => self.guest_loop(u, &target)?,
                2 | 3 => match target.file {
                    Some((gmem, page)) => {
                        let pages = u.int_in_range(1..=2u64)?;
                        Member { op: Op::Punch { gmem, offset: page * PAGE_SIZE, len: pages * PAGE_SIZE }, repeat: u.int_in_range(1..=3)? }
                    }
                    None => continue,
                },
                4 => match target.file {
                    Some((gmem, page)) => Member {
                        op: Op::Allocate { gmem, mode: 1, offset: page * PAGE_SIZE, len: PAGE_SIZE },
                        repeat: u.int_in_range(1..=3)?,
                    },
                    None => continue,
                },
                5 => match target.slot {
                    Some(slot) => {
                        // Half the time with the last close of the slot's file beside it: the
                        // file released while its memslot is deleted, kvm_gmem_release()
                        // against kvm_gmem_unbind() (the use-after-free ae431059e75d fixed).
                        let with_close = target.bound && u.arbitrary()?;
                        if let (true, Some((gmem, _))) = (with_close, target.file) {
                            members.push(Member { op: Op::CloseGmem { gmem }, repeat: 1 });
                        }
                        Member { op: Op::Unbind { slot }, repeat: 1 }
                    }
                    None => continue,
                },
                6 => match target.file {
                    Some((gmem, _)) if u.arbitrary()? => Member { op: Op::CloseGmem { gmem }, repeat: 1 },
                    Some((gmem, _)) => Member { op: Op::Unmap { gmem }, repeat: 1 },
                    None => continue,
                },
                7 => match self.attributes_member(u, &target)? {
                    Some(member) => member,
                    None => continue,
                },
                _ => match target.file {
                    Some((gmem, page)) => self.host_loop(u, gmem, page)?,
                    None => continue,
                },
            };
            members.push(member);
        }
        let mut group = Group { members };
        // Drop members until the group can run (a close or munmap of a file another member
        // names, too many steps) and its orders are cheap to search: the later ones first.
        while (group.check().is_err() || group.positions() > GENERATED_POSITIONS) && group.members.len() > 2 {
            group.members.pop();
        }
        if group.check().is_err() {
            return Ok(Op::Check);
        }
        Ok(Op::Group(group))
    }

    /// A bound slot and a page of it, mostly; else a mapped file's page.
    fn race_target(&self, u: &mut Unstructured) -> Result<Target> {
        if !self.slots.is_empty() && u.ratio(7u8, 8)? {
            // A huge slot half the time where there is one: few programs bind one, and what
            // races over a hugepage (its mapping, its mixed attributes) is there alone.
            let huge: Vec<&Slot> = self.slots.iter().filter(|s| s.covers_hugepage()).collect();
            let s = match huge.is_empty() || u.arbitrary()? {
                true => u.choose(&self.slots)?,
                false => *u.choose(&huge)?,
            };
            let index = u.int_in_range(0..=s.pages.min(4) - 1)?;
            let bound = s.binding.map(|(f, first)| (GmemId(f as u8), first + index));
            // A plain slot over a mapped file's pages is not what `binding` records; a file
            // for host accesses and invalidations then comes from the mapped ones.
            let file = match bound {
                Some(f) => Some(f),
                None if !self.mapped.is_empty() => Some((GmemId(*u.choose(&self.mapped)? as u8), 0)),
                None => None,
            };
            let hugepage = s.covers_hugepage().then_some(s.gfn * PAGE_SIZE);
            return Ok(Target { gpa: Some((s.gfn + index) * PAGE_SIZE), slot: Some(s.id), file, bound: bound.is_some(), hugepage });
        }
        let file = match self.mapped.is_empty() {
            true => Some((self.gmem(u)?, 0)),
            false => Some((GmemId(*u.choose(&self.mapped)? as u8), 0)),
        };
        Ok(Target { gpa: None, slot: None, file, bound: false, hugepage: None })
    }

    /// set_attributes over the target page or, on a hugepage, mostly over the rest of it;
    /// none where the kernel has no attributes or there is no target page.
    fn attributes_member(&self, u: &mut Unstructured, target: &Target) -> Result<Option<Member>> {
        let Some(gpa) = target.gpa.filter(|_| self.profile.attributes != 0) else { return Ok(None) };
        let attributes = *u.choose(&[0, self.profile.attributes])?;
        let (gpa, size) = match target.hugepage {
            Some(huge) if u.ratio(3u8, 4)? => rest_of_hugepage(u, huge, gpa)?,
            _ => (gpa, PAGE_SIZE),
        };
        Ok(Some(Member { op: Op::SetAttributes { gpa, size, attributes }, repeat: u.int_in_range(1..=2)? }))
    }

    /// A vCPU loop of one or two accesses on the target page (or anywhere in the window
    /// without one), repeated to widen the window.
    fn guest_loop(&self, u: &mut Unstructured, target: &Target) -> Result<Member> {
        let n = u.int_in_range(1..=2usize)?;
        let mut accesses = Vec::with_capacity(n);
        for _ in 0..n {
            let page = match target.gpa {
                Some(gpa) => gpa,
                None => layout::WINDOW_GPA + u.int_in_range(0..=layout::WINDOW_PAGES - 1)? * PAGE_SIZE,
            };
            let width = *u.choose(&Width::ALL)?;
            // A few offsets, so that members meet on the same bytes.
            let gpa = page + u.int_in_range(0..=3u64)? * 8;
            let kind = if u.ratio(2u8, 3)? { AccessKind::Read } else { AccessKind::Write(self.value(u, gpa)?) };
            accesses.push(Access { gpa, width, kind });
        }
        Ok(Member { op: Op::Guest { accesses }, repeat: u.int_in_range(1..=8)? })
    }

    /// Host loads or stores of the target file page, at the offsets guest loops use.
    fn host_loop(&self, u: &mut Unstructured, gmem: GmemId, page: u64) -> Result<Member> {
        let width = *u.choose(&Width::ALL)?;
        let offset = page * PAGE_SIZE + u.int_in_range(0..=3u64)? * 8;
        let op = match u.arbitrary()? {
            true => Op::HostRead { gmem, offset, width },
            false => Op::HostWrite { gmem, offset, width, value: self.value(u, offset)? },
        };
        Ok(Member { op, repeat: u.int_in_range(1..=8)? })
    }
}

/// The pages of the 2 MiB page at `huge` on one side of the target page `gpa`, all of them: a
/// conversion of part of a hugepage while a guest member faults the target, whose attributes
/// do not change. KVM must not map the target huge while the range is in flux
/// (kvm_arch_pre_set_memory_attributes() adds the hugepages at both ends of the range to the
/// invalidation, arch/x86/kvm/mmu/mmu.c; 9129633d568e), or the huge mapping covers GFNs that
/// just changed.
fn rest_of_hugepage(u: &mut Unstructured, huge: u64, gpa: u64) -> Result<(u64, u64)> {
    let (below, above) = (gpa - huge, huge + HUGE_2M - gpa - PAGE_SIZE);
    Ok(match below == 0 || (above != 0 && u.arbitrary()?) {
        true => (gpa + PAGE_SIZE, above),
        false => (huge, below),
    })
}
