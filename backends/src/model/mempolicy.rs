//! NUMA policies set through a guest_memfd's mapping: mbind() and get_mempolicy()
//! (mm/mempolicy.c of 7.2; the 6.18 host answers the same calls alike, probed in
//! `kvm::profile::probe_numa` and the `mempolicy` scenario). What differs between kernels is
//! where a policy lives (`Numa::file_policy`): in the mapping's VMAs only, or also in the
//! file (7.2's kvm_gmem_set_policy()), where a new mapping sees it.

use rangemap::RangeMap;

use super::{GmemFile, Model};
use crate::abi::mempolicy::{self as mpol, policy_value};
use crate::op::{GmemId, Op, PAGE_SIZE};
use crate::outcome::{Errno, Outcome};
use crate::profile::Numa;

/// A policy as mpol_equal() tells them apart: mode, mode flags, the nodes it allocates
/// from (none for MPOL_LOCAL) and, with MPOL_F_STATIC_NODES or MPOL_F_RELATIVE_NODES, the
/// nodes as the caller gave them (`w.user_nodemask`; 0 otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    mode: u32,
    flags: u32,
    nodes: u64,
    user_nodes: u64,
}

/// The policy of a page, where one is set (absent: none, MPOL_DEFAULT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyAt {
    Set(Policy),
    /// An mbind() whose result the model could not tell may or may not have set it.
    Unknown,
}

/// Policies by file page.
pub type Policies = RangeMap<u64, PolicyAt>;

/// An mbind() the kernel takes: the policy it sets (`None`: MPOL_DEFAULT, which removes
/// one) and whether the model can tell that it succeeds.
struct Accepted {
    policy: Option<Policy>,
    /// Whether the call surely succeeds; not where a page on a node outside `nodes` may be
    /// mapped and MPOL_MF_STRICT asks for it to be reported (then 0 or EIO).
    succeeds: bool,
    /// Whether the policy is set even where the result is not known.
    applied_anyway: bool,
}

/// mpol_relative_nodemask(): node i of `user` is the (i mod n)-th of the n `allowed` ones.
fn relative(user: u64, allowed: u64) -> u64 {
    let allowed_nodes: Vec<u32> = (0..64).filter(|b| allowed & (1 << b) != 0).collect();
    if allowed_nodes.is_empty() {
        return 0;
    }
    (0..64).filter(|b| user & (1 << b) != 0).fold(0, |acc, b| acc | 1 << allowed_nodes[b as usize % allowed_nodes.len()])
}

/// kernel_mbind() and do_mbind() up to the page walk, for a range inside one mapping:
/// the policy to set, or the errno.
fn accept(numa: Numa, offset: u64, aligned_len: u64, mode: u32, user: u64, flags: u32) -> Result<Option<Option<Policy>>, Errno> {
    // sanitize_mpol_flags(): `*flags = *mode & MPOL_MODE_FLAGS; *mode &= ~MPOL_MODE_FLAGS;
    // if ((unsigned int)(*mode) >= MPOL_MAX) return -EINVAL;`, static and relative
    // together refused, NUMA balancing only with MPOL_BIND or MPOL_PREFERRED_MANY.
    let mode_flags = mode & mpol::MODE_FLAGS;
    let base = mode & !mpol::MODE_FLAGS;
    let static_or_relative = mode_flags & (mpol::F_STATIC_NODES | mpol::F_RELATIVE_NODES) != 0;
    if base >= mpol::MAX
        || mode_flags & (mpol::F_STATIC_NODES | mpol::F_RELATIVE_NODES) == mpol::F_STATIC_NODES | mpol::F_RELATIVE_NODES
        || (mode_flags & mpol::F_NUMA_BALANCING != 0 && base != mpol::BIND && base != mpol::PREFERRED_MANY)
    {
        return Err(Errno::EINVAL);
    }
    // do_mbind(): `if (flags & ~(unsigned long)MPOL_MF_VALID) return -EINVAL;`, MOVE_ALL
    // needs CAP_SYS_NICE, `if (start & ~PAGE_MASK) return -EINVAL;` (the mapping starts on a
    // page), and an empty range after PAGE_ALIGN(len) does nothing: `if (end == start)
    // return 0;`.
    if flags & !mpol::MF_VALID != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & mpol::MF_MOVE_ALL != 0 && !numa.move_all {
        return Err(Errno::EPERM);
    }
    if offset % PAGE_SIZE != 0 {
        return Err(Errno::EINVAL);
    }
    if aligned_len == 0 {
        return Ok(None);
    }
    // mpol_new(): MPOL_DEFAULT takes no nodes and sets none; MPOL_PREFERRED without nodes is
    // MPOL_LOCAL (but not with static or relative nodes); MPOL_LOCAL takes none; the rest
    // need some.
    let mut base = base;
    match base {
        mpol::DEFAULT if user != 0 => return Err(Errno::EINVAL),
        mpol::DEFAULT => return Ok(Some(None)),
        mpol::PREFERRED if user == 0 && static_or_relative => return Err(Errno::EINVAL),
        mpol::PREFERRED if user == 0 => base = mpol::LOCAL,
        mpol::LOCAL if user != 0 || static_or_relative => return Err(Errno::EINVAL),
        mpol::LOCAL => {}
        _ if user == 0 => return Err(Errno::EINVAL),
        _ => {}
    }
    if base == mpol::LOCAL {
        return Ok(Some(Some(Policy { mode: base, flags: mode_flags, nodes: 0, user_nodes: 0 })));
    }
    // mpol_set_nodemask(): the nodes given within those allowed (relative ones mapped onto
    // them), which must leave some (mpol_new_nodemask(), mpol_new_preferred(): the first
    // only); the caller's own mask kept with static or relative nodes.
    let nodes = if mode_flags & mpol::F_RELATIVE_NODES != 0 { relative(user, numa.nodes) } else { user & numa.nodes };
    if nodes == 0 {
        return Err(Errno::EINVAL);
    }
    let nodes = if base == mpol::PREFERRED { nodes & nodes.wrapping_neg() } else { nodes };
    Ok(Some(Some(Policy { mode: base, flags: mode_flags, nodes, user_nodes: if static_or_relative { user } else { 0 } })))
}

/// `at` where the kernel may or may not have replaced `before` with it.
fn maybe(before: Option<PolicyAt>, at: Option<PolicyAt>) -> Option<PolicyAt> {
    if before == at {
        at
    } else {
        Some(PolicyAt::Unknown)
    }
}

fn set(policies: &mut Policies, pages: std::ops::Range<u64>, at: Option<PolicyAt>) {
    match at {
        Some(at) => policies.insert(pages, at),
        None => policies.remove(pages),
    }
}

/// The page ranges in `pages`, each with its policy in `policies` (`None`: none).
fn spans(policies: &Policies, pages: std::ops::Range<u64>) -> Vec<(std::ops::Range<u64>, Option<PolicyAt>)> {
    if pages.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<_> = policies
        .overlapping(&pages)
        .map(|(r, at)| (r.start.max(pages.start)..r.end.min(pages.end), Some(*at)))
        .chain(policies.gaps(&pages).map(|r| (r, None)))
        .collect();
    out.sort_by_key(|(r, _)| r.start);
    out
}

/// The VMA a VMA at `span` becomes when its policy is set to `new`: it and the runs of
/// pages on either side whose VMA policy is `new` (equal neighbouring VMAs merge, and VMAs
/// of one mapping are the runs of equal policy), each part with whether it is surely in
/// it (past a page whose policy is unknown, maybe).
fn merged_vma(map: &Policies, span: std::ops::Range<u64>, npages: u64, new: Option<PolicyAt>) -> Vec<(std::ops::Range<u64>, bool)> {
    let mut out = vec![(span.clone(), true)];
    for side in [spans(map, 0..span.start).into_iter().rev().collect::<Vec<_>>(), spans(map, span.end..npages)] {
        let mut surely = true;
        for (part, at) in side {
            if at == Some(PolicyAt::Unknown) {
                surely = false;
            } else if at != new {
                break;
            }
            out.push((part, surely));
        }
    }
    out
}

impl Model {
    /// The NUMA policy ops on a mapping: `None` for the rest.
    pub(super) fn policy_op(&mut self, op: &Op) -> Option<Outcome> {
        Some(match *op {
            Op::Mbind { gmem, offset, len, mode, nodes, flags } => self.mbind(gmem, offset, len, mode, nodes, flags),
            Op::GetMempolicy { gmem, offset } => self.get_mempolicy(gmem, offset),
            _ => return None,
        })
    }

    pub(super) fn mbind(&mut self, gmem: GmemId, offset: u64, len: u64, mode: u32, user: u64, flags: u32) -> Outcome {
        let aligned = mpol::aligned_len(len);
        let file = match self.mapped_range(gmem, offset, aligned) {
            Ok(f) => f,
            Err(why) => return Outcome::Skipped(why),
        };
        let numa = self.profile.numa;
        if numa.nodes == 0 {
            // mbind() is a cond_syscall without CONFIG_NUMA.
            return Outcome::Err(Errno::ENOSYS);
        }
        let policy = match accept(numa, offset, aligned, mode, user, flags) {
            Err(errno) => return Outcome::Err(errno),
            Ok(None) => return Outcome::Ok,
            Ok(Some(policy)) => policy,
        };
        let pages = offset / PAGE_SIZE..(offset + aligned) / PAGE_SIZE;
        let accepted = Accepted {
            policy,
            succeeds: !self.may_misplace(file, &pages, mode, user, flags),
            applied_anyway: flags & (mpol::MF_MOVE | mpol::MF_MOVE_ALL) != 0,
        };
        self.apply_policy(gmem, pages, &accepted);
        if accepted.succeeds {
            Outcome::Ok
        } else {
            Outcome::Unknown
        }
    }

    /// Whether queue_pages_range() may find a page it must report under MPOL_MF_STRICT
    /// (kept for MPOL_DEFAULT: `flags &= ~MPOL_MF_STRICT`): a page mapped in the range on a
    /// node outside the nodes given (`queue_folio_required()`, with MPOL_MF_INVERT). Every
    /// page is on an allowed node, so none can be where all of those are given; otherwise
    /// any page of the file in the range may be mapped, and the model does not track
    /// which are (then do_mbind() gives -EIO, after setting the policy only when moving).
    fn may_misplace(&self, file: &GmemFile, pages: &std::ops::Range<u64>, mode: u32, user: u64, flags: u32) -> bool {
        flags & mpol::MF_STRICT != 0
            && mode & !mpol::MODE_FLAGS != mpol::DEFAULT
            && self.profile.numa.nodes & !user != 0
            && !file.pages.indices_in(pages.start, pages.end).is_empty()
    }

    /// mbind_range() over the range's VMAs: where a VMA's policy equals the new one,
    /// nothing (`if (mpol_equal(vma->vm_policy, new_pol)) return 0;`); elsewhere
    /// vma_modify_policy() splits it to the range or merges it with a neighbour whose
    /// policy is the new one (vma_merge_existing_range(): `mpol_equal(vmg->policy,
    /// vma_policy(vma))`), and vma_replace_policy() sets the policy of the VMA that comes
    /// out, calling the file's set_policy over all of it (7.2: kvm_gmem_set_policy() ->
    /// mpol_set_shared_policy(), `sp_alloc(vma->vm_pgoff, vma->vm_pgoff + sz, pol)`). So a
    /// merged neighbour's pages get the file policy too: after a new mapping (no VMA
    /// policy) a default policy over part of it clears the file's policy of the whole
    /// run of VMA-default pages around that part, not only the part.
    fn apply_policy(&mut self, gmem: GmemId, pages: std::ops::Range<u64>, accepted: &Accepted) {
        let file_policy = self.profile.numa.file_policy;
        let new = accepted.policy.map(PolicyAt::Set);
        let sure = accepted.succeeds || accepted.applied_anyway;
        let file = &mut self.gmems[gmem];
        let npages = file.npages();
        let before = spans(&file.map_policy, pages.clone());
        for (span, in_map) in &before {
            set(&mut file.map_policy, span.clone(), if sure { new } else { maybe(*in_map, new) });
        }
        if !file_policy {
            return;
        }
        for (span, in_map) in before.into_iter().filter(|(_, in_map)| *in_map != new) {
            // Whether this VMA's policy surely changed (and so set_policy ran).
            let changed = sure && in_map != Some(PolicyAt::Unknown);
            for (part, merged_surely) in merged_vma(&file.map_policy, span, npages, new) {
                for (p, in_file) in spans(&file.file_policy, part) {
                    set(&mut file.file_policy, p, if changed && merged_surely { new } else { maybe(in_file, new) });
                }
            }
        }
    }

    /// do_get_mempolicy() with MPOL_F_ADDR: the VMA's policy at the address, or the file's
    /// where it has get_policy (7.2: kvm_gmem_get_policy(), NULL where none is set); none
    /// reads as MPOL_DEFAULT with no nodes. The mode carries its user-visible flags; the
    /// nodes are the caller's own with static or relative nodes, none for MPOL_LOCAL.
    pub(super) fn get_mempolicy(&self, gmem: GmemId, offset: u64) -> Outcome {
        let file = match self.mapped_range(gmem, offset, 1) {
            Ok(f) => f,
            Err(why) => return Outcome::Skipped(why),
        };
        if self.profile.numa.nodes == 0 {
            return Outcome::Err(Errno::ENOSYS);
        }
        let policies = if self.profile.numa.file_policy { &file.file_policy } else { &file.map_policy };
        match policies.get(&(offset / PAGE_SIZE)) {
            None => Outcome::Value(policy_value(mpol::DEFAULT, 0)),
            Some(PolicyAt::Unknown) => Outcome::Unknown,
            Some(PolicyAt::Set(p)) => {
                let nodes = match p {
                    _ if p.flags & (mpol::F_STATIC_NODES | mpol::F_RELATIVE_NODES) != 0 => p.user_nodes,
                    _ if p.mode == mpol::LOCAL => 0,
                    _ => p.nodes,
                };
                Outcome::Value(policy_value(p.mode | p.flags, nodes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_nodes_fold_onto_the_allowed_ones() {
        assert_eq!(relative(0b110, 0b1), 0b1);
        assert_eq!(relative(0b1, 0b1010), 0b10);
        assert_eq!(relative(0b10, 0b1010), 0b1000);
        assert_eq!(relative(0b100, 0b1010), 0b10, "node 2 of 2 allowed wraps to the first");
    }
}
