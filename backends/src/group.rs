//! Concurrent groups: ops that run at the same time, each on its own thread, released
//! together by a barrier (`Op::Group`).
//!
//! A member is one op repeated `repeat` times on its thread: a guest access loop on a vCPU
//! of its own, an invalidating op (punch, allocate, unbind, close, munmap, set_attributes)
//! or a host access through a file's mapping. What a group may hold is decided from the
//! program alone (`Group::check`), so every backend refuses the same groups the same way
//! (`SkipReason::InvalidGroup`), and the model can search the orders of the members' steps
//! (`model::race`) in bounded time.

use crate::op::{layout, Op, OpKind, Race, PAGE_SIZE};

/// One member of a group: `op`, `repeat` times in a row on its own thread.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    pub op: Op,
    pub repeat: u8,
}

/// Members that run at the same time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Group {
    pub members: Vec<Member>,
}

/// Most members a group has.
pub const MAX_MEMBERS: usize = 4;
/// Most guest members (one vCPU each; the backend makes the extra vCPUs it needs).
pub const MAX_VCPUS: usize = 4;
/// Most repetitions of one member.
pub const MAX_REPEAT: u8 = 64;
/// Most atomic steps (see `model::race`) the members of a group take together: bounds the
/// model's search of their orders.
pub const MAX_STEPS: usize = 160;
/// Most positions (tuples of each member's next step) the members' steps can be at
/// together: the product over members of (steps + 1), which bounds the model's search for
/// each state the memory can be in.
pub const MAX_POSITIONS: u64 = 20_000;
/// Most pages a punch or allocate may span when a host access of the same file races it:
/// truncation is atomic per page only for the host (see `model::race`), so the model splits
/// such an op into one step per page.
pub const MAX_SPLIT_PAGES: u64 = 16;

impl Member {
    /// The kinds a member may be (the op table's `race`).
    pub fn allowed(kind: OpKind) -> bool {
        kind.spec().race != Race::No
    }

    /// Ops that remove the object they name: done once, the next repetition would be
    /// skipped (or refused differently), so they run once.
    fn removes_its_object(&self) -> bool {
        self.op.kind().spec().race == Race::Once
    }
}

impl Group {
    /// Whether the group may run, from the program alone: the reason it may not, if any.
    pub fn check(&self) -> Result<(), String> {
        let n = self.members.len();
        if !(2..=MAX_MEMBERS).contains(&n) {
            return Err(format!("a group has 2 to {MAX_MEMBERS} members, this one {n}"));
        }
        let guests = self.members.iter().filter(|m| matches!(m.op, Op::Guest { .. })).count();
        if guests > MAX_VCPUS {
            return Err(format!("at most {MAX_VCPUS} guest members (one vCPU each), found {guests}"));
        }
        for (i, m) in self.members.iter().enumerate() {
            if !Member::allowed(m.op.kind()) {
                return Err(format!("member {i}: `{}` cannot race", m.op.kind().name()));
            }
            if m.repeat == 0 || m.repeat > MAX_REPEAT {
                return Err(format!("member {i}: repeat {} is not in 1..={MAX_REPEAT}", m.repeat));
            }
            if m.removes_its_object() && m.repeat != 1 {
                return Err(format!("member {i}: `{}` runs once", m.op.kind().name()));
            }
            if let Op::Guest { accesses } = &m.op {
                if accesses.is_empty() || accesses.len() > layout::MAX_ACCESSES {
                    return Err(format!("member {i}: 1 to {} accesses", layout::MAX_ACCESSES));
                }
            }
            if let Op::HostRead { offset, width, .. } | Op::HostWrite { offset, width, .. } = m.op {
                // An unaligned access may cross a page, and the CPU makes it in parts.
                if offset % width.bytes() != 0 {
                    return Err(format!("member {i}: a racing host access is aligned to its width"));
                }
            }
            // An object one member removes is named by no other: which of them ran first
            // would decide whether the other is skipped, and the backend decides skips before
            // the barrier.
            let others = || self.members.iter().enumerate().filter(move |(j, _)| *j != i).map(|(_, o)| &o.op);
            match m.op {
                Op::CloseGmem { gmem } | Op::Unmap { gmem } if others().any(|o| o.gmem() == Some(gmem)) => {
                    return Err(format!("member {i}: {gmem} is closed or unmapped while another member names it"));
                }
                Op::Unbind { slot } if others().any(|o| matches!(o, Op::Unbind { slot: s } if *s == slot)) => {
                    return Err(format!("member {i}: slot {slot} is deleted by two members"));
                }
                // Sizes the model skips as too large, and attribute changes over the harness's
                // own pages, are skipped by the model alone (the backend would send them),
                // and whether attributes are uniform over a range depends on the order.
                Op::Allocate { len, .. } if len / PAGE_SIZE > crate::abi::limits::MAX_ALLOCATE_PAGES => {
                    return Err(format!(
                        "member {i}: an allocate of more than {} pages cannot race",
                        crate::abi::limits::MAX_ALLOCATE_PAGES
                    ));
                }
                Op::SetAttributes { gpa, size, .. }
                    if size / PAGE_SIZE > crate::abi::limits::MAX_ATTRIBUTE_PAGES
                        || gpa < layout::MAILBOX_GPA + layout::MAILBOX_SIZE && gpa.saturating_add(size) > layout::CODE_GPA =>
                {
                    return Err(format!(
                        "member {i}: set_attributes of more than {} pages, or over the harness's pages, cannot race",
                        crate::abi::limits::MAX_ATTRIBUTE_PAGES
                    ));
                }
                Op::Punch { gmem, len, .. } | Op::Allocate { gmem, len, .. } => {
                    let host = others().any(|o| matches!(o, Op::HostRead { gmem: g, .. } | Op::HostWrite { gmem: g, .. } if *g == gmem));
                    if host && len > MAX_SPLIT_PAGES * PAGE_SIZE {
                        return Err(format!("member {i}: at most {MAX_SPLIT_PAGES} pages race a host access of {gmem}"));
                    }
                }
                _ => {}
            }
        }
        let steps: usize = self.members.iter().map(|m| self.steps_of(m) * m.repeat as usize).sum();
        if steps > MAX_STEPS {
            return Err(format!("{steps} steps in all, at most {MAX_STEPS}"));
        }
        if self.positions() > MAX_POSITIONS {
            return Err(format!("{} positions of the members' steps, at most {MAX_POSITIONS}", self.positions()));
        }
        Ok(())
    }

    /// The product over members of (steps + 1): how many positions the search of orders
    /// may visit per memory state.
    pub fn positions(&self) -> u64 {
        self.members.iter().map(|m| (self.steps_of(m) * m.repeat as usize) as u64 + 1).product()
    }

    /// The most steps one repetition of `m` takes (see `model::race`): an access per guest
    /// access (two for an 8-byte one, made as two 4-byte halves by the guest), a page per
    /// page of a punch or allocate that a host member's file access races, else one.
    fn steps_of(&self, m: &Member) -> usize {
        match m.op {
            Op::Guest { ref accesses } => accesses.iter().map(|a| if a.width.bytes() == 8 { 2 } else { 1 }).sum(),
            Op::Punch { gmem, len, .. } | Op::Allocate { gmem, len, .. } if self.host_access_names(gmem) => {
                len.div_ceil(PAGE_SIZE).clamp(1, MAX_SPLIT_PAGES) as usize
            }
            _ => 1,
        }
    }

    /// Whether a host access member names `gmem` (a punch of it is then split per page).
    pub fn host_access_names(&self, gmem: crate::op::GmemId) -> bool {
        self.members.iter().any(|m| matches!(m.op, Op::HostRead { gmem: g, .. } | Op::HostWrite { gmem: g, .. } if g == gmem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{Access, AccessKind, GmemId, Width};

    fn read(gpa: u64) -> Op {
        Op::Guest { accesses: vec![Access { gpa, width: Width::W8, kind: AccessKind::Read }] }
    }

    #[test]
    fn checks_refuse_what_the_search_or_the_backend_cannot_run() {
        let punch = Op::Punch { gmem: GmemId(0), offset: 0, len: PAGE_SIZE };
        let ok = Group { members: vec![Member { op: read(0x10_0000), repeat: 8 }, Member { op: punch.clone(), repeat: 1 }] };
        assert_eq!(ok.check(), Ok(()));
        let one = Group { members: vec![Member { op: punch.clone(), repeat: 1 }] };
        assert!(one.check().is_err(), "one member races nothing");
        let close_twice =
            Group { members: vec![Member { op: Op::CloseGmem { gmem: GmemId(0) }, repeat: 2 }, Member { op: read(0x10_0000), repeat: 1 }] };
        assert!(close_twice.check().unwrap_err().contains("runs once"));
        let close_named =
            Group { members: vec![Member { op: Op::CloseGmem { gmem: GmemId(0) }, repeat: 1 }, Member { op: punch, repeat: 1 }] };
        assert!(close_named.check().unwrap_err().contains("another member names it"));
        let destroy = Group { members: vec![Member { op: Op::DestroyVm, repeat: 1 }, Member { op: read(0x10_0000), repeat: 1 }] };
        assert!(destroy.check().unwrap_err().contains("cannot race"));
        let long = Group { members: vec![Member { op: read(0x10_0000), repeat: 64 }, Member { op: read(0x10_0000), repeat: 64 }] };
        assert!(long.check().unwrap_err().contains("steps"));
    }
}
