//! Counters for a fuzzing session: which op kinds ran and how they ended.

use std::collections::BTreeMap;
use std::fmt;

use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::op::{FdArg, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, MADVICE, PAGE_SIZE};
use gmemfuzz_backends::outcome::AccessResult;
use gmemfuzz_backends::{MmuPages, Op, OpKind, Outcome};

#[derive(Default, Clone, Debug)]
pub struct Stats {
    pub programs: u64,
    pub divergences: u64,
    /// Comparisons not made because the model could not predict that part: an op's result,
    /// one guest access, or one probe answer (see `Verdict`).
    pub skipped_unknown: u64,
    /// Programs that hit a known kernel bug (see `known`).
    pub known: u64,
    pub probes: u64,
    /// Per op kind: (reached the kernel, skipped).
    pub ops: BTreeMap<OpKind, (u64, u64)>,
    /// Per op kind: how many failed with an errno.
    pub errors: BTreeMap<OpKind, u64>,
    /// How far the programs reached into the kernel's memslot checks.
    pub reach: Reach,
    /// Where the loop's time went.
    pub time: crate::timing::Breakdown,
    /// Programs also run on a fresh VM with the same result (`run --verify-reset`).
    pub verified_resets: u64,
    /// Concurrent groups: how many ran and what they reached.
    pub races: Races,
    /// The platform's reverse map: how many times it was compared, and the most GFNs it
    /// listed then (`Probe::PlatformMap`, kernels with the software platform).
    pub platform_maps: u64,
    pub platform_most_gfns: u64,
}

/// How far concurrent groups reach (issue 12): counted from each group, the backend's
/// outcome and the end states the model's search left.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Races {
    /// Groups the backend ran (not refused as invalid).
    pub groups: u64,
    /// ... with two or more guest members (vCPUs) running.
    pub multi_vcpu: u64,
    /// ... with a guest or host access and an invalidating op that both ran.
    pub access_vs_invalidation: u64,
    /// ... after which the model kept more than one possible state (the order mattered).
    pub order_dependent: u64,
    /// Groups whose orders the model could not search within its budget (the program
    /// ended there, with no verdict).
    pub inconclusive: u64,
    /// Searches that took one order of steps that commute instead of every order.
    pub searches_cut: u64,
    /// Nodes of the largest search (the budget is `model::MAX_NODES`).
    pub largest_search: u64,
}

impl Races {
    /// Counts one search of a group's orders.
    pub fn searched(&mut self, size: gmemfuzz_backends::model::SearchSize) {
        self.searches_cut += u64::from(size.cut);
        self.largest_search = self.largest_search.max(size.nodes as u64);
    }

    /// Counts a group the backend answered `actual`, that left `ends` possible states.
    pub fn record(&mut self, group: &gmemfuzz_backends::Group, actual: &Outcome, ends: usize) {
        let Outcome::Group(members) = actual else { return };
        self.groups += 1;
        let ran = |i: usize| members[i].iter().any(|o| !matches!(o, Outcome::Skipped(_)));
        let running: Vec<&Op> = group.members.iter().enumerate().filter(|(i, _)| ran(*i)).map(|(_, m)| &m.op).collect();
        let vcpus = running.iter().filter(|op| matches!(op, Op::Guest { .. })).count();
        self.multi_vcpu += u64::from(vcpus >= 2);
        let access = running.iter().any(|op| matches!(op, Op::Guest { .. } | Op::HostRead { .. } | Op::HostWrite { .. }));
        let invalidation = running.iter().any(|op| op.invalidates());
        self.access_vs_invalidation += u64::from(access && invalidation);
        self.order_dependent += u64::from(ends > 1);
    }
}

impl fmt::Display for Races {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "races groups={} multi-vcpu={} access-vs-invalidation={} order-dependent={} inconclusive={} searches-cut={} \
             largest-search={}",
            self.groups,
            self.multi_vcpu,
            self.access_vs_invalidation,
            self.order_dependent,
            self.inconclusive,
            self.searches_cut,
            self.largest_search
        )
    }
}

impl Stats {
    pub fn count(&mut self, op: &Op, outcome: &Outcome) {
        let entry = self.ops.entry(op.kind()).or_default();
        match outcome {
            Outcome::Skipped(_) => entry.1 += 1,
            Outcome::Err(_) => {
                entry.0 += 1;
                *self.errors.entry(op.kind()).or_default() += 1;
            }
            _ => entry.0 += 1,
        }
    }

    /// Op kinds that never reached the kernel.
    pub fn unreached(&self) -> Vec<OpKind> {
        OpKind::ALL.into_iter().filter(|k| self.ops.get(k).is_none_or(|c| c.0 == 0)).collect()
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "programs {} divergences {} known-bugs {} skipped-unknown {} probes {} | ops",
            self.programs, self.divergences, self.known, self.skipped_unknown, self.probes
        )?;
        for kind in OpKind::ALL {
            let (ran, skipped) = self.ops.get(&kind).copied().unwrap_or_default();
            let errors = self.errors.get(&kind).copied().unwrap_or_default();
            write!(f, " {}={}/{}e/{}s", kind.name(), ran, errors, skipped)?;
        }
        write!(f, " | {}", self.reach)?;
        if self.races != Races::default() {
            write!(f, " | {}", self.races)?;
        }
        if self.verified_resets > 0 {
            write!(f, " | same on a fresh VM: {}", self.verified_resets)?;
        }
        if self.platform_maps > 0 {
            write!(f, " | reverse map compared {} times (at most {} GFNs)", self.platform_maps, self.platform_most_gfns)?;
        }
        let unreached = self.unreached();
        if !unreached.is_empty() {
            write!(f, " | unreached: {}", unreached.iter().map(|k| k.name()).collect::<Vec<_>>().join(","))?;
        }
        Ok(())
    }
}

/// The memslot flags `Reach` follows, in display order.
const SLOT_FLAGS: [(u32, &str); 3] =
    [(KVM_MEM_LOG_DIRTY_PAGES, "dirty"), (KVM_MEM_READONLY, "readonly"), (KVM_MEM_GUEST_MEMFD, "guest_memfd")];

/// (tried, succeeded) counts.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tried {
    pub tried: u64,
    pub ok: u64,
}

impl Tried {
    fn note(&mut self, ok: bool) {
        self.tried += 1;
        self.ok += ok as u64;
    }
}

impl fmt::Display for Tried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}ok", self.tried, self.ok)
    }
}

/// How far programs reach into the kernel's memslot checks (issue 8, "generator reach"):
/// counted from each op, the model's state before it, and the outcome.
#[derive(Default, Clone, Debug)]
pub struct Reach {
    /// modify_slot on a slot that exists: a move (KVM_MR_MOVE), a flags-only change.
    pub moves: Tried,
    pub flags_only: Tried,
    /// modify_slot adding / dropping each memslot flag (`SLOT_FLAGS` order).
    pub flag_add: [Tried; 3],
    pub flag_drop: [Tried; 3],
    /// Binds whose GPA, size (and file offset) are 2 MiB / 1 GiB aligned.
    pub binds_2m: Tried,
    pub binds_1g: Tried,
    /// guest_memfd binds of a file another live slot binds already.
    pub second_bindings: Tried,
    /// Guest accesses to shared GFNs of guest_memfd-only slots (KVM_MEMSLOT_GMEM_ONLY: the
    /// file serves them); ok where the access read or wrote.
    pub gmem_only_accesses: Tried,
    /// madvise by advice (`MADVICE` order).
    pub madvise: [Tried; MADVICE.len()],
    /// Huge mappings, from the VM's MMU page counts around each op.
    pub huge: Huge,
}

/// Huge mappings the kernel's MMU made and dropped, read from KVM's VM statistics
/// (`Backend::mmu_pages`) after each op: the changes of `pages_2m` / `pages_1g`.
#[derive(Default, Clone, Debug)]
pub struct Huge {
    /// The last counts read (reset: a new baseline, not a change).
    last: Option<MmuPages>,
    /// 2 MiB and 1 GiB mappings installed (increases) and dropped (zapped or split).
    pub installed: [u64; 2],
    pub dropped: [u64; 2],
    /// Ops after which the VM held at least one huge mapping.
    pub ops_with_huge: u64,
    /// Successful modify_slots turning dirty logging off after which 4 KiB mappings were
    /// zapped: recover_huge_pages_range() (arch/x86/kvm/mmu/tdp_mmu.c) making room for
    /// huge ones; and those that found none to zap.
    pub recoveries: Tried,
}

impl Huge {
    /// Takes `now` as the counts to compare the next ones with (after a reset).
    pub fn baseline(&mut self, now: Option<MmuPages>) {
        self.last = now;
    }

    /// Counts the change from the last counts to `now`; the 4 KiB mappings zapped.
    pub fn sample(&mut self, now: Option<MmuPages>) -> u64 {
        let Some(now) = now else {
            self.last = None;
            return 0;
        };
        // A new VM starts with no mappings.
        let before = self.last.filter(|l| l.vm == now.vm).map_or([0; 3], |l| l.pages);
        for i in 0..2 {
            let (b, n) = (before[i + 1], now.pages[i + 1]);
            self.installed[i] += n.saturating_sub(b);
            self.dropped[i] += b.saturating_sub(n);
        }
        self.ops_with_huge += u64::from(now.pages[1] + now.pages[2] > 0);
        self.last = Some(now);
        before[0].saturating_sub(now.pages[0])
    }
}

impl fmt::Display for Huge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [i2, i1] = self.installed;
        let [d2, d1] = self.dropped;
        write!(f, "huge mappings: 2MiB +{i2} -{d2} 1GiB +{i1} -{d1} ops-with-huge {}", self.ops_with_huge)?;
        write!(f, " dirty-log-off recoveries zapping 4KiB {}", self.recoveries)
    }
}

/// What `Reach` needs of an op, taken before the model applies it.
#[derive(Default)]
pub struct ReachNote {
    modify: Option<(bool, u32, u32)>,
    bind_align: u64,
    second_binding: bool,
    /// Indices of the guest accesses that go to a guest_memfd-only slot as shared.
    gmem_only_accesses: Vec<usize>,
    madvise: Option<usize>,
}

impl Reach {
    /// Looks at `op` against the model's state before the model applies it.
    pub fn before(&self, op: &Op, model: &Model) -> ReachNote {
        let mut note = ReachNote::default();
        match *op {
            Op::ModifySlot { slot, gpa, flags } => {
                if let Some(old) = model.slots().get(&slot) {
                    note.modify = Some((gpa / PAGE_SIZE != old.base_gfn, old.flags, flags));
                }
            }
            Op::Bind { flags, fd, gpa, size, offset, .. } => {
                let gmem = flags & KVM_MEM_GUEST_MEMFD != 0;
                let align = gpa | size | if gmem { offset } else { 0 };
                note.bind_align = if size == 0 { 0 } else { 1 << align.trailing_zeros().min(63) };
                if let (true, FdArg::Gmem(id)) = (gmem, fd) {
                    note.second_binding = model.slots().values().any(|s| s.binding.is_some_and(|b| b.gmem == id && !b.file_gone));
                }
            }
            Op::Madvise { advice, .. } => note.madvise = MADVICE.iter().position(|&(_, v)| v == u64::from(advice)),
            Op::Guest { ref accesses } => {
                let gmem_only = |gfn: u64| model.guest_slot(gfn).is_some_and(|(_, s)| s.gmem_only);
                note.gmem_only_accesses = accesses
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| gmem_only(a.gpa / PAGE_SIZE) && !model.is_private_gfn(a.gpa / PAGE_SIZE))
                    .map(|(i, _)| i)
                    .collect();
            }
            _ => {}
        }
        note
    }

    /// Counts what `note` saw, now that the op ended with `actual` and the VM's MMU maps
    /// `pages` (where the backend tells).
    pub fn after(&mut self, note: ReachNote, actual: &Outcome, pages: Option<MmuPages>) {
        let ok = *actual == Outcome::Ok;
        if matches!(actual, Outcome::Skipped(_)) {
            return;
        }
        let zapped_4k = self.huge.sample(pages);
        if let Some(i) = note.madvise {
            self.madvise[i].note(ok);
        }
        if let Some((moved, old, new)) = note.modify {
            if ok && !moved && old & KVM_MEM_LOG_DIRTY_PAGES != 0 && new & KVM_MEM_LOG_DIRTY_PAGES == 0 {
                self.huge.recoveries.note(zapped_4k > 0);
            }
            if moved {
                self.moves.note(ok);
            } else if old != new {
                self.flags_only.note(ok);
            }
            for (i, (flag, _)) in SLOT_FLAGS.iter().enumerate() {
                match (old & flag != 0, new & flag != 0) {
                    (false, true) => self.flag_add[i].note(ok),
                    (true, false) => self.flag_drop[i].note(ok),
                    _ => {}
                }
            }
        }
        if note.bind_align >= 1 << 30 {
            self.binds_1g.note(ok);
        }
        if note.bind_align >= 2 << 20 {
            self.binds_2m.note(ok);
        }
        if note.second_binding {
            self.second_bindings.note(ok);
        }
        if let Outcome::Guest(results) = actual {
            for &i in &note.gmem_only_accesses {
                let done = matches!(results.get(i), Some(AccessResult::Read(_) | AccessResult::Wrote));
                self.gmem_only_accesses.note(done);
            }
        }
    }

    /// Successful modify_slots.
    pub fn modify_ok(&self) -> u64 {
        self.moves.ok + self.flags_only.ok
    }
}

impl fmt::Display for Reach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reach: modify_slot ok {} (move {} flags-only {})", self.modify_ok(), self.moves, self.flags_only)?;
        for (i, (_, name)) in SLOT_FLAGS.iter().enumerate() {
            write!(f, " {name} +{} -{}", self.flag_add[i], self.flag_drop[i])?;
        }
        write!(f, "; binds 2MiB-aligned {} 1GiB-aligned {} second-binding {}", self.binds_2m, self.binds_1g, self.second_bindings)?;
        write!(f, "; guest accesses via gmem-only slots {}", self.gmem_only_accesses)?;
        write!(f, "; madvise")?;
        for (i, (name, _)) in MADVICE.iter().enumerate() {
            write!(f, " {name} {}", self.madvise[i])?;
        }
        write!(f, "; {}", self.huge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(vm: u64, pages: [u64; 3]) -> Option<MmuPages> {
        Some(MmuPages { vm, pages })
    }

    #[test]
    fn huge_mappings_are_counted_from_changes_within_one_vm() {
        let mut h = Huge::default();
        // Mappings left from before the program are the baseline, not installs.
        h.baseline(at(1, [10, 2, 0]));
        assert_eq!(h.sample(at(1, [10, 5, 0])), 0);
        // A recovery zaps 4 KiB mappings; a split drops a 2 MiB one.
        assert_eq!(h.sample(at(1, [4, 4, 0])), 6);
        // A new VM starts from nothing; a backend without statistics resets the baseline.
        assert_eq!(h.sample(at(2, [1, 1, 1])), 0);
        assert_eq!(h.sample(None), 0);
        assert_eq!(h.sample(at(2, [1, 1, 1])), 0);
        assert_eq!((h.installed, h.dropped, h.ops_with_huge), ([3 + 1 + 1, 1 + 1], [1, 0], 4));
    }
}
