//! The set-valued oracle for concurrent groups: which outcomes some order of the members'
//! steps allows, and the states the group may leave behind.
//!
//! Each member is cut into atomic steps, and the model searches the interleavings of the
//! members' steps for those that explain what the backend did: every step's prediction
//! must admit the backend's result for it. What the search finds is a set of end states
//! (deduplicated); the runner carries on with all of them and drops the ones a later
//! outcome or probe contradicts. A page whose content depends on the order is thereby
//! "unknown" exactly as far as the kernel may legitimately differ: its possible contents
//! are the ones some order gives, nothing else.
//!
//! Why these steps are atomic (7.2 and 6.12 virt/kvm, the same in 6.18):
//! - A guest access is one instruction, except an 8-byte one, which the guest makes as two
//!   4-byte halves (`kvm::guest`): two steps. Aligned 4-byte accesses are atomic on x86.
//! - Every invalidation the guest can see is bracketed by the MMU notifier protocol: punch
//!   and allocate (kvm_gmem_punch_hole(): `kvm_gmem_invalidate_begin(f, start, end);
//!   truncate_inode_pages_range(...); kvm_gmem_invalidate_end(f, start, end);`), release on
//!   close (kvm_gmem_release(): the same begin/end around `kvm_gmem_unbind_...`/clearing
//!   `slot->gmem.file`), memslot deletion (kvm_set_memslot(): an invalid slot is installed
//!   first, and kvm_faultin_pfn() answers `RET_PF_RETRY` for `KVM_MEMSLOT_INVALID`), munmap
//!   of a slot's hva (mmu_notifier invalidate_range_start/end over the whole range) and
//!   attribute changes (kvm_vm_set_mem_attributes(): `kvm_handle_gfn_range(kvm,
//!   &pre_set_range)` ... `&post_set_range`, both inside mmu_invalidate_begin/end). SPTEs of
//!   the whole range are zapped at begin, and a guest fault that overlaps an invalidation
//!   in progress retries (kvm_mmu_faultin_pfn(): `mmu_invalidate_retry_gfn_unsafe()`, and
//!   `is_page_fault_stale()` before installing), so to the guest the op happens at one
//!   instant: it sees the state before or the state after.
//! - The host mapping takes no invalidate lock (7.2 kvm_gmem_fault_user_mapping() calls
//!   kvm_gmem_get_folio() and nothing else), and truncation unmaps and drops one folio at a
//!   time (truncate_inode_pages_range()), each under the folio lock that the fault also
//!   takes. So to a host access a punch is atomic per page only: where a host member names
//!   the punched file, a punch (and an allocate, alike) is split into one step per page, in
//!   ascending order, which also allows orders the guest cannot see (a wider set, never a
//!   narrower one).
//! - A guest fault on a software-protected VM reads the GFN's attributes twice, so a fault
//!   that straddles a conversion of its GFN may also exit with KVM_EXIT_MEMORY_FAULT in the
//!   first read's view (`Search::straddles_conversion`; seen in the lane on 7.2).
//! - A host access is one aligned instruction (`kvm::hostmem`; `Group::check` refuses an
//!   unaligned one).
//!
//! The search leaves out orders that cannot differ (partial-order reduction): from each
//! state it tries only the next steps of a persistent set of members, the smallest set that
//! holds every member with a step left that conflicts (`commute`: their footprints meet)
//! with the next step of a member in it; where one member's next step commutes with every
//! step the others have left, it takes that step alone; and a state does not retake a
//! commuting step that an earlier sibling took (sleep sets, `Search::search`). Where nothing
//! explains the backend's answer, every order is searched again to say what each step
//! allowed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use super::commute::Footprint;
use super::{MmioExits, Model, Shared};
use crate::group::{Group, MAX_MEMBERS};
use crate::op::{Access, AccessKind, Op, Width, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEMORY_EXIT_FLAG_PRIVATE, PAGE_SIZE};
use crate::outcome::{AccessResult, Outcome, SkipReason};

/// Most search nodes one group may take; past it the search gives up (`RaceError::TooLarge`).
/// `Group::check` keeps generated groups far below it.
pub const MAX_NODES: usize = 200_000;

/// Which part of a guest access a step makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Whole,
    /// The low 4 bytes of an 8-byte access.
    Low,
    /// The high 4 bytes; the access's result is the two halves together.
    High,
}

impl Part {
    /// What the access shows once this part gave `res`: the whole result, or nothing yet
    /// where a low half ran without a fault (it waits in `low` for the high half).
    fn result(self, low: &mut Option<AccessResult>, res: AccessResult) -> Option<AccessResult> {
        match self {
            Part::Whole => Some(res),
            Part::Low => {
                *low = Some(res);
                matches!(res, AccessResult::MemoryFault { .. }).then_some(res)
            }
            Part::High => Some(combine(low.take().expect("the low half ran first"), res)),
        }
    }
}

/// One atomic step of a member.
#[derive(Clone, Debug)]
enum Step {
    /// An op whose outcome is repetition `rep`'s.
    Whole { rep: usize, op: Op },
    /// One page of a split punch or allocate; the last one carries the repetition's outcome.
    Page { rep: usize, op: Op, last: bool },
    /// Access `index` of repetition `rep` of a guest member, or half of it.
    Access { rep: usize, index: usize, access: Access, part: Part },
}

impl Step {
    fn rep(&self) -> usize {
        match self {
            Step::Whole { rep, .. } | Step::Page { rep, .. } | Step::Access { rep, .. } => *rep,
        }
    }

    /// What the step may read or change, from the state before the group (`commute`).
    fn footprint(&self, before: &Model) -> Footprint {
        match self {
            Step::Whole { op, .. } | Step::Page { op, .. } => before.op_footprint(op),
            Step::Access { access, .. } => before.access_footprint(access),
        }
    }
}

/// How large a search was: what `Races` statistics report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchSize {
    /// Nodes (distinct positions and states) the search visited.
    pub nodes: usize,
    /// Whether it left orders out because their steps commute (partial-order reduction).
    pub cut: bool,
}

/// Which orders a search tries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Orders {
    /// One order of steps that commute with everything the other members have left (the
    /// same end states, far fewer nodes); predictions are not kept.
    Reduced,
    /// Every order, keeping each step's predictions and the states where they failed: what
    /// a mismatch is explained from, and the reference the reduced search is tested against.
    Every,
}

/// Where the backend's answer contradicts every order the search tried.
#[derive(Clone, Debug)]
pub struct RaceMismatch {
    pub member: usize,
    pub repetition: usize,
    /// The access of a guest member, where the contradiction is one access's.
    pub access: Option<usize>,
    /// What some order allowed at that step (in the order of their `Display`).
    pub allowed: Vec<StepResult>,
    /// What the backend did there.
    pub actual: StepResult,
    /// Where the step is a guest access: its address, the results some order allowed and
    /// the backend's, as values (the known-bug filter matches them).
    pub access_at: Option<AccessMismatch>,
    /// States the model was in when that step ran and contradicted the backend (up to
    /// `MISMATCH_STATES`): what a known kernel bug's match looks at, since the state before
    /// the group lacks what the members did before the step (a GFN made private, an MMIO exit
    /// taken).
    pub states: MismatchStates,
}

/// What one step of a member showed, or what some order allowed there, as a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StepResult {
    /// A member's (or the whole group's) outcome.
    Outcome(Outcome),
    /// One access of a guest member.
    Access(AccessResult),
    /// A guest member's repetition answered with this many access results.
    Accesses(usize),
}

impl StepResult {
    /// Whether the step left the guest or the host as an exit: MMIO, a memory fault, SIGBUS.
    pub fn is_exit(&self) -> bool {
        match self {
            StepResult::Outcome(o) => o.is_exit(),
            StepResult::Access(a) => a.is_exit(),
            StepResult::Accesses(_) => false,
        }
    }
}

impl std::fmt::Display for StepResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepResult::Outcome(o) => write!(f, "{o}"),
            StepResult::Access(a) => write!(f, "{a}"),
            StepResult::Accesses(n) => write!(f, "{n} guest access results"),
        }
    }
}

/// The most states a mismatch keeps.
pub const MISMATCH_STATES: usize = 16;

/// States kept with a mismatch: context for the known-bug filter, not part of what the
/// mismatch is (so not compared, and shown as a count).
#[derive(Clone, Default)]
pub struct MismatchStates(pub Vec<World>);

/// A state the model may be in, with the MMIO exits it told on the way there: what a group's
/// search starts from and ends in, and what the runner carries from op to op.
#[derive(Clone)]
pub struct World {
    pub model: Model,
    pub mmio_exits: MmioExits,
}

impl World {
    /// `Model::fingerprint` with the MMIO exits: equal worlds have equal fingerprints.
    pub fn fingerprint(&self) -> u64 {
        print(&self.model, &self.mmio_exits)
    }
}

/// What identifies a state with its MMIO exits (`World::fingerprint`).
fn print(model: &Model, exits: &MmioExits) -> u64 {
    let fingerprint = model.fingerprint();
    if exits.is_empty() {
        return fingerprint;
    }
    let mut h = StateHasher::default();
    (fingerprint, exits).hash(&mut h);
    h.finish()
}

impl std::fmt::Debug for MismatchStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} model states", self.0.len())
    }
}

/// A guest access no order explains, as values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessMismatch {
    pub gpa: u64,
    pub allowed: Vec<AccessResult>,
    pub actual: AccessResult,
}

#[derive(Clone, Debug)]
pub enum RaceError {
    /// No order of the members' steps explains what the backend did.
    Mismatch(Box<RaceMismatch>),
    /// The search passed `MAX_NODES`: no verdict.
    TooLarge,
    /// The backend's answer does not have the group's shape (a harness bug).
    Shape(String),
}

/// The search's state: the model, each member's next step, and the low half of an 8-byte
/// access in progress (fixed arrays: the search makes one per state it tries, and a
/// `Group::check`ed group has at most `MAX_MEMBERS`).
#[derive(Clone)]
struct Node {
    model: Model,
    /// The MMIO exits of the program so far, the steps taken included.
    exits: MmioExits,
    pos: Positions,
    low: [Low; MAX_MEMBERS],
}

type Positions = [usize; MAX_MEMBERS];

/// The result of the low half of an 8-byte access whose high half is yet to run, as one word
/// (nodes are moved and keyed by the hundred thousand): 0 where none waits. A low half that
/// faulted ended its repetition, so what waits is a 4-byte load's value, a store, an MMIO
/// exit or an unknown result.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Low(u64);

impl Low {
    const READ: u64 = 1 << 32;
    const WROTE: u64 = 2 << 32;
    const MMIO: u64 = 3 << 32;
    const UNKNOWN: u64 = 4 << 32;

    fn of(result: Option<AccessResult>) -> Low {
        Low(match result {
            None => 0,
            Some(AccessResult::Read(v)) => Low::READ | u64::from(u32::try_from(v).expect("a 4-byte load")),
            Some(AccessResult::Wrote) => Low::WROTE,
            Some(AccessResult::Mmio) => Low::MMIO,
            Some(AccessResult::Unknown) => Low::UNKNOWN,
            Some(other) => unreachable!("a low half that waits for its high half answered {other}"),
        })
    }

    fn get(self) -> Option<AccessResult> {
        match self.0 & !0xffff_ffff {
            0 => None,
            Low::READ => Some(AccessResult::Read(self.0 & 0xffff_ffff)),
            Low::WROTE => Some(AccessResult::Wrote),
            Low::MMIO => Some(AccessResult::Mmio),
            _ => Some(AccessResult::Unknown),
        }
    }
}

/// What identifies a node: positions, halves in progress, the fingerprint of its model and
/// MMIO exits; hashed once, when made, as one word (`NodeKey::new`).
#[derive(PartialEq, Eq)]
struct NodeKey {
    hash: u64,
    print: u64,
    pos: [u32; MAX_MEMBERS],
    low: [Low; MAX_MEMBERS],
}

impl NodeKey {
    /// The hash only spreads keys over the map (keys compare whole), so each field is
    /// multiplied by its own odd constant and added to the fingerprint, already a hash.
    fn new(node: &Node, print: u64) -> NodeKey {
        const ODD: [u64; 2 * MAX_MEMBERS] = [
            0x9e37_79b9_7f4a_7c15,
            0xbf58_476d_1ce4_e5b9,
            0x94d0_49bb_1331_11eb,
            0xd6e8_feb8_6659_fd93,
            0xa076_1d64_78bd_642f,
            0xe703_7ed1_a0b4_28db,
            0x8ebc_6af0_9c88_c6e3,
            0x5899_65cc_7537_4cc3,
        ];
        let pos = node.pos.map(|p| u32::try_from(p).expect("a member's steps fit in u32"));
        let words = pos.iter().map(|&p| u64::from(p)).chain(node.low.iter().map(|l| l.0));
        let hash = words.zip(ODD).fold(print, |h, (word, odd)| h.wrapping_add(word.wrapping_mul(odd)));
        NodeKey { hash, print, pos, low: node.low }
    }
}

/// The word `NodeKey::new` made: the map hashes nothing else.
impl Hash for NodeKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A mismatch key: member, repetition, access.
type At = (usize, usize, Option<usize>);

impl Model {
    /// Why a member's op is not sent, from the state before the group (no effect).
    fn member_skip(&self, op: &Op) -> Option<SkipReason> {
        let mut scratch = self.clone();
        match scratch.apply_one(op) {
            Outcome::Skipped(r) => Some(r),
            _ => None,
        }
    }

    /// The group in one order: each member in turn, all its repetitions. What `apply` does
    /// with a group (one of the orders the race allows).
    pub(super) fn group_in_order(&mut self, group: &Group) -> Outcome {
        if group.check().is_err() {
            return Outcome::Skipped(SkipReason::InvalidGroup);
        }
        let skips: Vec<Option<SkipReason>> = group.members.iter().map(|m| self.member_skip(&m.op)).collect();
        let mut out = Vec::with_capacity(group.members.len());
        for (m, skip) in group.members.iter().zip(skips) {
            out.push((0..m.repeat).map(|_| skip.map_or_else(|| self.apply_one(&m.op), Outcome::Skipped)).collect());
        }
        Outcome::Group(out)
    }

    /// Whether a guest member accesses a shared GFN whose slot's memory is `gmem`'s mapping
    /// (not a guest_memfd-only slot, whose faults take the file's invalidation).
    fn guest_maps_through(&self, group: &Group, gmem: crate::op::GmemId) -> bool {
        group.members.iter().any(|m| match &m.op {
            Op::Guest { accesses } => accesses.iter().any(|a| {
                let gfn = a.gpa / PAGE_SIZE;
                self.guest_slot(gfn).is_some_and(|(_, s)| {
                    !s.gmem_only && !self.is_private_gfn(gfn) && matches!(s.shared, Shared::GmemMap { gmem: g, .. } if g == gmem)
                })
            }),
            _ => false,
        })
    }

    /// The steps of member `op`, `repeat` times, from this state (before the group).
    fn steps(&self, group: &Group, op: &Op, repeat: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        for rep in 0..repeat {
            match op {
                Op::Guest { accesses } => {
                    for (index, &a) in accesses.iter().enumerate() {
                        if a.width == Width::W8 {
                            let (lo, hi) = match a.kind {
                                AccessKind::Read => (AccessKind::Read, AccessKind::Read),
                                AccessKind::Write(v) => (AccessKind::Write(v & 0xffff_ffff), AccessKind::Write(v >> 32)),
                            };
                            let half = |gpa, kind| Access { gpa, width: Width::W4, kind };
                            steps.push(Step::Access { rep, index, access: half(a.gpa, lo), part: Part::Low });
                            steps.push(Step::Access { rep, index, access: half(a.gpa + 4, hi), part: Part::High });
                        } else {
                            steps.push(Step::Access { rep, index, access: a, part: Part::Whole });
                        }
                    }
                }
                Op::Punch { gmem, offset, len } | Op::Allocate { gmem, offset, len, .. } if self.splits(group, op) => {
                    let first = offset / PAGE_SIZE;
                    let pages = len / PAGE_SIZE;
                    // A punch removes each page, then goes over the range again for pages
                    // faulted in meanwhile (truncate_inode_pages_range(): `/* Otherwise
                    // restart to make sure all gone */`): an access through the mapping can
                    // read a page the same punch then removes.
                    let passes = if matches!(op, Op::Punch { .. }) { 2 } else { 1 };
                    for pass in 0..passes {
                        for p in first..first + pages {
                            let page = match *op {
                                Op::Allocate { mode, .. } => Op::Allocate { gmem: *gmem, mode, offset: p * PAGE_SIZE, len: PAGE_SIZE },
                                _ => Op::Punch { gmem: *gmem, offset: p * PAGE_SIZE, len: PAGE_SIZE },
                            };
                            steps.push(Step::Page { rep, op: page, last: pass + 1 == passes && p + 1 == first + pages });
                        }
                    }
                }
                _ => steps.push(Step::Whole { rep, op: op.clone() }),
            }
        }
        steps
    }

    /// Whether a punch or allocate is split per page: a member reaches its file through the
    /// file's mapping (a host access, or a guest access to a shared GFN whose slot's memory is
    /// that mapping: both fault through kvm_gmem_fault_user_mapping(), which takes no
    /// invalidate lock), and the op as a whole succeeds here on page-aligned bounds (where it
    /// fails, it fails before touching a page: kvm_gmem_fallocate() checks `mode`, alignment
    /// and bounds first).
    fn splits(&self, group: &Group, op: &Op) -> bool {
        let (Op::Punch { gmem, offset, len } | Op::Allocate { gmem, offset, len, .. }) = *op else { return false };
        let through_mapping = group.host_access_names(gmem) || self.guest_maps_through(group, gmem);
        if !through_mapping || offset % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 || len == 0 {
            return false;
        }
        let mut scratch = self.clone();
        scratch.apply_one(op) == Outcome::Ok
    }

    /// Searches the orders of the group's steps for those that explain `actual` (the
    /// backend's `Outcome::Group`), and returns the states they end in, deduplicated (with
    /// no MMIO exits before the group; `race_sized` takes them).
    pub fn race(&self, group: &Group, actual: &Outcome) -> Result<Vec<Model>, RaceError> {
        let ends = self.race_sized(&MmioExits::default(), group, actual).0?;
        let mut prints = HashSet::new();
        Ok(ends.into_iter().map(|w| w.model).filter(|m| prints.insert(m.fingerprint())).collect())
    }

    /// As `race`, from this state with the program's MMIO exits `exits`, with the size of the
    /// search; the end states carry the MMIO exits of the orders that reach them. Steps that
    /// commute with what every other member has left are taken in one order only; where no
    /// order explains `actual`, every order is searched again to say what each step allowed
    /// (mismatches are rare, and their report is then exactly the full search's).
    pub fn race_sized(&self, exits: &MmioExits, group: &Group, actual: &Outcome) -> (Result<Vec<World>, RaceError>, SearchSize) {
        let start = World { model: self.clone(), mmio_exits: exits.clone() };
        let (steps, actual) = match self.race_steps(group, actual) {
            Ok(Some(prepared)) => prepared,
            Ok(None) => return (Ok(vec![start]), SearchSize::default()),
            Err(e) => return (Err(e), SearchSize::default()),
        };
        let (reduced, size) = Search::new(self, &steps, actual, Orders::Reduced).run(&start);
        match reduced {
            Ok(finals) if finals.is_empty() => (Search::new(self, &steps, actual, Orders::Every).run(&start).0, size),
            Ok(finals) => (Ok(self.with_abandoned_faults(group, finals)), size),
            Err(e) => (Err(e), size),
        }
    }

    /// `race_sized` trying every order of the steps, commuting or not: the reference that the
    /// reduced search must agree with (tests run both side by side).
    pub fn race_every_order(&self, exits: &MmioExits, group: &Group, actual: &Outcome) -> Result<Vec<World>, RaceError> {
        let start = World { model: self.clone(), mmio_exits: exits.clone() };
        let (steps, actual) = match self.race_steps(group, actual) {
            Ok(Some(prepared)) => prepared,
            Ok(None) => return Ok(vec![start]),
            Err(e) => return Err(e),
        };
        let finals = Search::new(self, &steps, actual, Orders::Every).run(&start).0?;
        Ok(self.with_abandoned_faults(group, finals))
    }

    /// Whether every order of the group's steps, whatever each step does, ends in one state:
    /// what follows the group is then predicted exactly, as after a sequential op (the C
    /// reproducer keeps comparing). Not where a guest member's page is converted by another
    /// member (a fault straddling the conversion ends its repetition early,
    /// `straddles_conversion`, which only the backend's answer shows), nor where the search
    /// is too large.
    pub fn order_independent(&self, group: &Group) -> bool {
        let converted = |gpa: u64| {
            group.members.iter().any(|m| matches!(m.op, Op::SetAttributes { gpa: at, size, .. } if at <= gpa && gpa - at < size))
        };
        let guest_pages = group.members.iter().filter_map(|m| match &m.op {
            Op::Guest { accesses } => Some(accesses.iter().flat_map(|a| [a.gpa, a.gpa + a.width.bytes() - 1])),
            _ => None,
        });
        if guest_pages.flatten().any(|gpa| converted(gpa / PAGE_SIZE * PAGE_SIZE)) {
            return false;
        }
        // Any answer, shaped as a backend's: skipped members as the model skips them.
        let any: Vec<Vec<Outcome>> = group
            .members
            .iter()
            .map(|m| {
                let one = match (self.member_skip(&m.op), &m.op) {
                    (Some(reason), _) => Outcome::Skipped(reason),
                    (None, op @ Op::Guest { .. }) => Outcome::Guest(vec![AccessResult::Unknown; accesses_len(op)]),
                    (None, _) => Outcome::Unknown,
                };
                vec![one; m.repeat as usize]
            })
            .collect();
        let any = Outcome::Group(any);
        let Ok(Some((steps, actual))) = self.race_steps(group, &any) else { return false };
        let start = World { model: self.clone(), mmio_exits: MmioExits::default() };
        let mut search = Search::new(self, &steps, actual, Orders::Reduced);
        search.any_outcome = true;
        let Ok(finals) = search.run(&start).0 else { return false };
        let prints: HashSet<u64> = self.with_abandoned_faults(group, finals).iter().map(|w| w.model.fingerprint()).collect();
        prints.len() == 1
    }

    /// Each member's steps and the backend's outcomes for them, once the group's checks,
    /// shape and skips agree with `actual`; `None` where the group is refused as the
    /// backend refused it.
    #[allow(clippy::type_complexity)]
    fn race_steps<'a>(&self, group: &Group, actual: &'a Outcome) -> Result<Option<(Vec<Vec<Step>>, &'a [Vec<Outcome>])>, RaceError> {
        if group.check().is_err() {
            return match actual {
                Outcome::Skipped(SkipReason::InvalidGroup) => Ok(None),
                other => Err(RaceError::Mismatch(Box::new(RaceMismatch {
                    member: 0,
                    repetition: 0,
                    access: None,
                    allowed: vec![StepResult::Outcome(Outcome::Skipped(SkipReason::InvalidGroup))],
                    actual: StepResult::Outcome(other.clone()),
                    access_at: None,
                    states: MismatchStates::default(),
                }))),
            };
        }
        let Outcome::Group(actual) = actual else {
            return Err(RaceError::Shape(format!("a group answered {actual}")));
        };
        check_shape(group, actual)?;
        let mut steps = Vec::new();
        for (i, m) in group.members.iter().enumerate() {
            match self.member_skip(&m.op) {
                Some(reason) => {
                    if let Some(r) = actual[i].iter().position(|o| *o != Outcome::Skipped(reason)) {
                        return Err(RaceError::Mismatch(Box::new(RaceMismatch {
                            member: i,
                            repetition: r,
                            access: None,
                            allowed: vec![StepResult::Outcome(Outcome::Skipped(reason))],
                            actual: StepResult::Outcome(actual[i][r].clone()),
                            access_at: None,
                            states: MismatchStates::default(),
                        })));
                    }
                    steps.push(Vec::new());
                }
                None => {
                    if let (Op::Guest { accesses }, Some(r)) =
                        (&m.op, actual[i].iter().position(|o| !matches!(o, Outcome::Guest(v) if v.len() == accesses_len(&m.op))))
                    {
                        return Err(RaceError::Mismatch(Box::new(RaceMismatch {
                            member: i,
                            repetition: r,
                            access: None,
                            allowed: vec![StepResult::Accesses(accesses.len())],
                            actual: StepResult::Outcome(actual[i][r].clone()),
                            access_at: None,
                            states: MismatchStates::default(),
                        })));
                    }
                    if let Some(mismatch) = ran_after_a_fault(i, &actual[i]) {
                        return Err(RaceError::Mismatch(Box::new(mismatch)));
                    }
                    steps.push(self.steps(group, &m.op, m.repeat as usize));
                }
            }
        }
        Ok(Some((steps, actual)))
    }

    /// What the backend may answer for the group when its members' steps run in the order
    /// `pick` makes: at each step, `pick(n)` chooses which of the `n` members that have steps
    /// left moves next. Every such answer must be admitted by `race` (tests draw random
    /// orders to check that, and to compare the reduced search with the full one on answers
    /// other than the in-order one).
    pub fn group_in_an_order(&self, group: &Group, mut pick: impl FnMut(usize) -> usize) -> Outcome {
        if group.check().is_err() {
            return Outcome::Skipped(SkipReason::InvalidGroup);
        }
        let mut model = self.clone();
        let mut out: Vec<Vec<Outcome>> = Vec::new();
        let mut steps = Vec::new();
        for m in &group.members {
            let repeat = m.repeat as usize;
            match (self.member_skip(&m.op), &m.op) {
                (Some(reason), _) => {
                    out.push(vec![Outcome::Skipped(reason); repeat]);
                    steps.push(Vec::new());
                }
                (None, op) => {
                    out.push(vec![Outcome::Guest(vec![AccessResult::NotRun; accesses_len(op)]); repeat]);
                    steps.push(self.steps(group, op, repeat));
                }
            }
        }
        let next_rep = Search::next_reps(&steps);
        let (mut pos, mut low) = (vec![0; steps.len()], vec![None; steps.len()]);
        loop {
            let movable: Vec<usize> = (0..steps.len()).filter(|&m| pos[m] < steps[m].len()).collect();
            let Some(&m) = movable.get(pick(movable.len().max(1)) % movable.len().max(1)) else { break };
            match &steps[m][pos[m]] {
                Step::Whole { rep, op } => out[m][*rep] = model.apply_one(op),
                Step::Page { rep, op, last } => {
                    let o = model.apply_one(op);
                    if *last {
                        out[m][*rep] = o;
                    }
                }
                Step::Access { rep, index, access, part } => {
                    let result = part.result(&mut low[m], model.guest_one(access));
                    if let (Some(result), Outcome::Guest(results)) = (result, &mut out[m][*rep]) {
                        results[*index] = result;
                        if let AccessResult::MemoryFault { .. } = result {
                            low[m] = None;
                            pos[m] = next_rep[m][pos[m]];
                            continue;
                        }
                    }
                }
            }
            pos[m] += 1;
        }
        Outcome::Group(out)
    }

    /// The end states, each also with the pages racing guest faults may have taken without
    /// completing. A fault through guest_memfd allocates its page before KVM checks whether
    /// an invalidation raced it (7.2 kvm_mmu_faultin_pfn_gmem(): `r = kvm_gmem_get_pfn(...)`,
    /// which takes the folio and marks it uptodate; then `is_page_fault_stale()` retries, or
    /// the slot is gone and the retry exits as MMIO), so where a group also invalidates, the
    /// page of a racing guest access through guest_memfd (a private GFN, or a
    /// guest_memfd-only slot) may stay in the page cache whatever the access showed (seen in
    /// the lane on 7.2: a write racing an unbind exited as MMIO and its page stayed).
    fn with_abandoned_faults(&self, group: &Group, finals: Vec<World>) -> Vec<World> {
        /// More pages than this and the variants are not worth their number; a group's guest
        /// members touch a page or two.
        const MAX_PAGES: usize = 6;
        if !group.members.iter().any(|m| m.op.invalidates()) {
            return finals;
        }
        let converts = |gfn: u64| {
            group
                .members
                .iter()
                .any(|m| matches!(m.op, Op::SetAttributes { gpa, size, .. } if gpa <= gfn * PAGE_SIZE && gfn * PAGE_SIZE - gpa < size))
        };
        let pages_in = |model: &Model| -> Vec<(crate::op::GmemId, u64)> {
            let mut pages = Vec::new();
            for m in &group.members {
                let Op::Guest { accesses } = &m.op else { continue };
                for a in accesses {
                    let gfn = a.gpa / PAGE_SIZE;
                    let Some((_, slot)) = model.guest_slot(gfn) else { continue };
                    let Some(b) = slot.binding.filter(|b| !b.file_gone) else { continue };
                    let via_gmem = slot.gmem_only || self.is_private_gfn(gfn) || model.is_private_gfn(gfn) || converts(gfn);
                    let page = (b.gmem, b.pgoff + gfn - slot.base_gfn);
                    if via_gmem && model.gmem(b.gmem).is_some_and(|f| page.1 < f.npages()) && !pages.contains(&page) {
                        pages.push(page);
                    }
                }
            }
            pages
        };
        let mut out: Vec<World> = Vec::new();
        let mut prints = HashSet::new();
        let before = pages_in(self);
        for World { model: end, mmio_exits } in finals {
            let mut pages = before.clone();
            for p in pages_in(&end) {
                if !pages.contains(&p) {
                    pages.push(p);
                }
            }
            pages.retain(|&(g, i)| end.gmem(g).is_some_and(|f| !f.pages.is_prepared(i)));
            pages.truncate(MAX_PAGES);
            for subset in 0u32..1 << pages.len() {
                let mut variant = end.clone();
                for (bit, &(gmem, index)) in pages.iter().enumerate() {
                    if subset & (1 << bit) != 0 {
                        variant.populate(gmem, index, "a racing guest fault", true);
                    }
                }
                if prints.insert(print(&variant, &mmio_exits)) {
                    out.push(World { model: variant, mmio_exits: mmio_exits.clone() });
                }
            }
        }
        out
    }

    /// A hash of everything that decides what later ops and probes show (not the history,
    /// which only explains): equal states have equal fingerprints.
    pub fn fingerprint(&self) -> u64 {
        let mut h = StateHasher::default();
        self.vm_alive.hash(&mut h);
        self.gmems.creates().hash(&mut h);
        for (id, f) in self.gmems.iter() {
            (id, f.fingerprint()).hash(&mut h);
        }
        self.slots_print().hash(&mut h);
        for range in self.attributes.iter() {
            range.hash(&mut h);
        }
        h.finish()
    }
}

/// The hasher of `Model::fingerprint`: each word goes through splitmix64's finalizer with
/// the state so far, a bijection, so two inputs of one length that differ in one word never
/// collide; several times cheaper than SipHash, which the search paid once per node.
#[derive(Default)]
pub(super) struct StateHasher(u64);

impl Hasher for StateHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(v.into());
    }

    fn write_u16(&mut self, v: u16) {
        self.write_u64(v.into());
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(v.into());
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn write_u64(&mut self, v: u64) {
        let mut z = (self.0 ^ v).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Model {
    /// The slots' part of `fingerprint`, computed once per version of the slots.
    fn slots_print(&self) -> u64 {
        self.slots_print.get_or_init(|| {
            let mut sh = StateHasher::default();
            for (id, s) in self.slots.iter() {
                (id, s.base_gfn, s.npages, s.flags, s.gmem_only).hash(&mut sh);
                s.binding.map(|b| (b.gmem, b.pgoff, b.file_gone)).hash(&mut sh);
                match s.shared {
                    Shared::Anon => 0u8.hash(&mut sh),
                    Shared::GmemMap { gmem, pgoff, generation } => (1u8, gmem, pgoff, generation).hash(&mut sh),
                }
                for (index, page) in s.anon.iter() {
                    (index, page.content_hash()).hash(&mut sh);
                }
            }
            sh.finish()
        })
    }
}

impl super::GmemFile {
    /// The file's part of `Model::fingerprint`, computed once per version of the file (most
    /// steps of a search leave most files as they were).
    fn fingerprint(&self) -> u64 {
        self.fingerprint.get_or_init(|| {
            let mut h = StateHasher::default();
            (self.size, self.flags, self.fd_open, self.mapped, self.map_generation, self.released).hash(&mut h);
            self.pages.hash_into(&mut h);
            self.poison.hash(&mut h);
            for entry in self.assigned.iter() {
                entry.hash(&mut h);
            }
            h.finish()
        })
    }
}

fn accesses_len(op: &Op) -> usize {
    match op {
        Op::Guest { accesses } => accesses.len(),
        _ => 0,
    }
}

/// An access the backend says ran after a fault in the same repetition of guest member
/// `member`: no order allows it, since the fault ends KVM_RUN (what `advance` relies on).
fn ran_after_a_fault(member: usize, outcomes: &[Outcome]) -> Option<RaceMismatch> {
    outcomes.iter().enumerate().find_map(|(repetition, o)| {
        let Outcome::Guest(results) = o else { return None };
        let fault = results.iter().position(|r| matches!(r, AccessResult::MemoryFault { .. }))?;
        let ran = fault + 1 + results[fault + 1..].iter().position(|r| *r != AccessResult::NotRun)?;
        Some(RaceMismatch {
            member,
            repetition,
            access: Some(ran),
            allowed: vec![StepResult::Access(AccessResult::NotRun)],
            actual: StepResult::Access(results[ran]),
            access_at: None,
            states: MismatchStates::default(),
        })
    })
}

fn check_shape(group: &Group, actual: &[Vec<Outcome>]) -> Result<(), RaceError> {
    if actual.len() != group.members.len() {
        return Err(RaceError::Shape(format!("{} members answered for {}", actual.len(), group.members.len())));
    }
    for (i, (m, a)) in group.members.iter().zip(actual).enumerate() {
        if a.len() != m.repeat as usize {
            return Err(RaceError::Shape(format!("member {i}: {} outcomes for {} repetitions", a.len(), m.repeat)));
        }
    }
    Ok(())
}

/// The two halves of an 8-byte access as the backend reports the access: a fault ends it
/// (the later exit is the one recorded), an MMIO exit of either half makes it an MMIO access.
fn combine(low: AccessResult, high: AccessResult) -> AccessResult {
    match (low, high) {
        (f @ AccessResult::MemoryFault { .. }, _) | (_, f @ AccessResult::MemoryFault { .. }) => f,
        (AccessResult::Mmio, _) | (_, AccessResult::Mmio) => AccessResult::Mmio,
        (AccessResult::Read(lo), AccessResult::Read(hi)) => AccessResult::Read(lo | hi << 32),
        (AccessResult::Wrote, AccessResult::Wrote) => AccessResult::Wrote,
        (lo, _) => lo,
    }
}

struct Search<'a> {
    steps: &'a [Vec<Step>],
    actual: &'a [Vec<Outcome>],
    /// For each step, the position of the first step of the next repetition (where a fault
    /// ends a guest repetition).
    next_rep: Vec<Vec<usize>>,
    /// Each state reached, with the members it slept (`search`).
    seen: HashMap<NodeKey, u32, std::hash::BuildHasherDefault<StateHasher>>,
    finals: Vec<World>,
    final_prints: HashSet<u64, std::hash::BuildHasherDefault<StateHasher>>,
    /// Predictions met at each step, and the deepest step where none admitted the backend.
    predicted: BTreeMap<At, Vec<StepResult>>,
    /// The same for guest accesses, as values.
    predicted_accesses: BTreeMap<At, Vec<AccessResult>>,
    deepest: Option<(usize, At)>,
    /// The states in which the steps failed at the deepest depth, with where each failed.
    deepest_states: Vec<(At, World)>,
    nodes: usize,
    orders: Orders,
    /// Each step's footprint (`Orders::Reduced`).
    footprints: Vec<Vec<Footprint>>,
    /// For each member, step and other member: the last position of the other member whose
    /// step conflicts with that step (`None`: none does), found when first asked.
    last_conflict: Vec<Vec<Vec<Option<Option<usize>>>>>,
    /// Each member's first step's index among all the steps, and whether two steps (by
    /// those indices) conflict, found when first asked (sleep sets ask often).
    first_step: Vec<usize>,
    conflict: Vec<Option<bool>>,
    /// Whether a node took one member's step where others could have moved.
    cut: bool,
    /// The effects of the step being taken (`advance`), empty between steps.
    told: Vec<super::Effect>,
    /// Admit whatever each step does (`Model::order_independent`): `actual` only gives the
    /// shape.
    any_outcome: bool,
}

impl<'a> Search<'a> {
    /// For each step, the position of the first step of the next repetition.
    fn next_reps(steps: &[Vec<Step>]) -> Vec<Vec<usize>> {
        steps.iter().map(|s| (0..s.len()).map(|i| (i..s.len()).find(|&j| s[j].rep() != s[i].rep()).unwrap_or(s.len())).collect()).collect()
    }

    fn new(before: &Model, steps: &'a [Vec<Step>], actual: &'a [Vec<Outcome>], orders: Orders) -> Search<'a> {
        let next_rep = Search::next_reps(steps);
        let footprints: Vec<Vec<Footprint>> = match orders {
            Orders::Reduced => steps.iter().map(|m| m.iter().map(|s| s.footprint(before)).collect()).collect(),
            Orders::Every => Vec::new(),
        };
        let last_conflict = footprints.iter().map(|m| vec![vec![None; steps.len()]; m.len()]).collect();
        let first_step: Vec<usize> = footprints.iter().scan(0, |at, m| Some(std::mem::replace(at, *at + m.len()))).collect();
        let total: usize = footprints.iter().map(Vec::len).sum();
        Search {
            steps,
            actual,
            next_rep,
            orders,
            footprints,
            last_conflict,
            first_step,
            conflict: vec![None; total * total],
            cut: false,
            told: Vec::new(),
            any_outcome: false,
            seen: Default::default(),
            finals: Vec::new(),
            final_prints: Default::default(),
            predicted: BTreeMap::new(),
            predicted_accesses: BTreeMap::new(),
            deepest: None,
            deepest_states: Vec::new(),
            nodes: 0,
        }
    }

    /// The members whose next steps the search need try from `pos` (a persistent set,
    /// Godefroid's "Partial-Order Methods for the Verification of Concurrent Systems",
    /// LNCS 1032, ch. 4): the smallest set that holds, with each of its members, every other
    /// member that has a step left conflicting with that member's next step. Steps of the
    /// members left out commute with the next steps of those in it, so any order that takes
    /// some of them first ends as the order that takes the in-set step (the first in it
    /// that runs) first: every end state is still reached. A step that no prediction admits
    /// here can only be made admissible by a conflicting step, whose member is then in the
    /// set. As bits, in `movable` order; all of `movable` where nothing smaller holds.
    fn persistent_in(&mut self, pos: &Positions, movable: &[usize]) -> u32 {
        let all: u32 = (1 << movable.len()) - 1;
        let mut best = all;
        for seed in 0..movable.len() {
            let (mut set, mut grew): (u32, bool) = (1 << seed, true);
            while grew && set != all {
                grew = false;
                let members = set;
                for t in (0..movable.len()).filter(|&t| members & (1 << t) != 0) {
                    for j in (0..movable.len()).filter(|&j| members & (1 << j) == 0) {
                        let (mt, mj) = (movable[t], movable[j]);
                        if set & (1 << j) == 0 && self.last_conflict(mt, pos[mt], mj).is_some_and(|last| last >= pos[mj]) {
                            set |= 1 << j;
                            grew = true;
                        }
                    }
                }
            }
            if set.count_ones() < best.count_ones() {
                best = set;
                if set.count_ones() == 1 {
                    break;
                }
            }
        }
        best
    }

    /// The last position of member `j` whose step conflicts with step `s` of member `m`.
    fn last_conflict(&mut self, m: usize, s: usize, j: usize) -> Option<usize> {
        if let Some(known) = self.last_conflict[m][s][j] {
            return known;
        }
        let step = &self.footprints[m][s];
        let last = self.footprints[j].iter().rposition(|other| step.conflicts(other));
        self.last_conflict[m][s][j] = Some(last);
        last
    }

    fn run(mut self, start: &World) -> (Result<Vec<World>, RaceError>, SearchSize) {
        let result = self.search(start);
        (result, SearchSize { nodes: self.nodes, cut: self.cut })
    }

    /// The members whose next steps to try from a state first reached at `pos`, as bits by
    /// member: a persistent set where the search is reduced, every member with a step left
    /// otherwise.
    fn chosen(&mut self, pos: &Positions, movable: &[usize]) -> u32 {
        let in_movable = match self.orders {
            Orders::Reduced if movable.len() > 1 => self.persistent_in(pos, movable),
            _ => (1 << movable.len()) - 1,
        };
        self.cut |= in_movable.count_ones() < movable.len() as u32;
        movable.iter().enumerate().filter(|(i, _)| in_movable & (1 << i) != 0).fold(0, |bits, (_, &m)| bits | 1 << m)
    }

    /// Whether the next steps of members `a` and `b` at `pos` commute (reduced search only).
    fn independent(&mut self, pos: &Positions, a: usize, b: usize) -> bool {
        let total = self.first_step.last().map_or(0, |&f| f + self.footprints[self.footprints.len() - 1].len());
        let at = (self.first_step[a] + pos[a]) * total + self.first_step[b] + pos[b];
        if let Some(known) = self.conflict[at] {
            return !known;
        }
        let conflicts = self.footprints[a][pos[a]].conflicts(&self.footprints[b][pos[b]]);
        self.conflict[at] = Some(conflicts);
        !conflicts
    }

    /// Depth first over (positions, halves in progress, state), with sleep sets (Godefroid,
    /// ch. 5, stateful search): a child does not take the step of a member whose step an
    /// earlier sibling took (or its parent slept) and that commutes with the step that made
    /// the child, since that order's states are reached through the sibling. A state met
    /// again with a smaller sleep set takes the steps it slept before and not now. Only the
    /// reduced search sleeps; the full one tries every order of every step.
    fn search(&mut self, start: &World) -> Result<Vec<World>, RaceError> {
        let n = self.steps.len();
        let sleeps = self.orders == Orders::Reduced;
        let root =
            Node { model: start.model.clone(), exits: start.mmio_exits.clone(), pos: [0; MAX_MEMBERS], low: [Low::default(); MAX_MEMBERS] };
        let mut stack = vec![(root, 0u32)];
        while let Some((node, sleep)) = stack.pop() {
            let fingerprint = print(&node.model, &node.exits);
            let (mut explore, mut sleep) = match self.seen.entry(NodeKey::new(&node, fingerprint)) {
                std::collections::hash_map::Entry::Occupied(mut seen) => {
                    let slept = *seen.get();
                    if slept & !sleep == 0 {
                        continue;
                    }
                    seen.insert(slept & sleep);
                    (slept & !sleep, slept & sleep)
                }
                std::collections::hash_map::Entry::Vacant(first) => {
                    first.insert(sleep);
                    self.nodes += 1;
                    if self.nodes > MAX_NODES {
                        return Err(RaceError::TooLarge);
                    }
                    let mut movable = [0; MAX_MEMBERS];
                    let mut count = 0;
                    for m in (0..n).filter(|&m| node.pos[m] < self.steps[m].len()) {
                        movable[count] = m;
                        count += 1;
                    }
                    if count == 0 {
                        if self.final_prints.insert(fingerprint) {
                            self.finals.push(World { model: node.model, mmio_exits: node.exits });
                        }
                        continue;
                    }
                    (self.chosen(&node.pos, &movable[..count]) & !sleep, sleep)
                }
            };
            // Each child's sleep set, members in order: what the parent slept and the
            // siblings before took, less what conflicts with the child's step.
            let mut children = [(0usize, 0u32); MAX_MEMBERS];
            let mut count = 0;
            while explore != 0 {
                let m = explore.trailing_zeros() as usize;
                explore &= explore - 1;
                let asleep = if sleeps {
                    (0..n).filter(|&s| sleep & (1 << s) != 0 && self.independent(&node.pos, s, m)).fold(0, |bits, s| bits | 1 << s)
                } else {
                    0
                };
                children[count] = (m, asleep);
                count += 1;
                sleep |= 1 << m;
            }
            if count == 0 {
                // Every step of the persistent set sleeps: its orders are tried elsewhere.
                continue;
            }
            // In reverse, so the stack tries member 0's step first (the order
            // `group_in_order` takes comes out first); the last child takes the node itself.
            for &(m, asleep) in children[1..count].iter().rev() {
                if let Some(child) = self.advance(node.clone(), m) {
                    stack.push((child, asleep));
                }
            }
            let (m, asleep) = children[0];
            if let Some(child) = self.advance(node, m) {
                stack.push((child, asleep));
            }
        }
        // A reduced search keeps no predictions: its caller searches every order to say
        // what each step allowed.
        if self.finals.is_empty() && self.orders == Orders::Every {
            let (_, at) = self.deepest.expect("a search that ends nowhere failed somewhere");
            let (member, repetition, access) = at;
            let actual = match (access, &self.actual[member][repetition]) {
                (Some(i), Outcome::Guest(r)) => StepResult::Access(r[i]),
                (_, o) => StepResult::Outcome(o.clone()),
            };
            // Shown in the order of their text, as a report reads them.
            let mut allowed = self.predicted.remove(&at).unwrap_or_default();
            allowed.sort_by_cached_key(StepResult::to_string);
            let access_at = access.and_then(|i| {
                let Outcome::Guest(results) = &self.actual[member][repetition] else { return None };
                let gpa = self.steps[member].iter().find_map(|s| match s {
                    Step::Access { rep, index, access, .. } if *rep == repetition && *index == i => Some(access.gpa),
                    _ => None,
                })?;
                Some(AccessMismatch { gpa, allowed: self.predicted_accesses.remove(&at).unwrap_or_default(), actual: results[i] })
            });
            let states = std::mem::take(&mut self.deepest_states).into_iter().filter(|(a, _)| *a == at).map(|(_, m)| m).collect();
            return Err(RaceError::Mismatch(Box::new(RaceMismatch {
                member,
                repetition,
                access,
                allowed,
                actual,
                access_at,
                states: MismatchStates(states),
            })));
        }
        Ok(std::mem::take(&mut self.finals))
    }

    /// Whether `got` is the exit of a guest fault that straddled a private/shared conversion
    /// of its GFN: a member other than `m` has yet to run a set_attributes that succeeded and
    /// flips the GFN's privacy from what it is in `node` (the state before the step; only
    /// the others' positions are read). For software-protected VMs the
    /// fault reads the attributes twice, 7.2 mmu.c kvm_mmu_page_fault(): `vcpu->kvm->arch.vm_type
    /// == KVM_X86_SW_PROTECTED_VM && kvm_mem_is_private(vcpu->kvm, gpa_to_gfn(cr2_or_gpa)))
    /// error_code |= PFERR_PRIVATE_ACCESS;` and later kvm_mmu_faultin_pfn(): `if
    /// (fault->is_private != kvm_mem_is_private(kvm, fault->gfn)) {
    /// kvm_mmu_prepare_memory_fault_exit(vcpu, fault); return -EFAULT;` (6.12
    /// __kvm_faultin_pfn()/kvm_faultin_pfn() alike), which reports the first read's view:
    /// `KVM_MEMORY_EXIT_FLAG_PRIVATE` if the fault was private, the GFN's page, its size.
    fn straddles_conversion(&self, node: &Node, m: usize, access: &Access, got: AccessResult) -> bool {
        let gfn = access.gpa / PAGE_SIZE;
        let private = node.model.is_private_gfn(gfn);
        let flags = if private { KVM_MEMORY_EXIT_FLAG_PRIVATE } else { 0 };
        if got != (AccessResult::MemoryFault { gpa: gfn * PAGE_SIZE, size: PAGE_SIZE, flags }) {
            return false;
        }
        (0..self.steps.len()).filter(|&other| other != m).any(|other| {
            self.steps[other][node.pos[other]..].iter().any(|step| match step {
                Step::Whole { rep, op: Op::SetAttributes { gpa, size, attributes } } => {
                    let covers = *gpa <= gfn * PAGE_SIZE && gfn * PAGE_SIZE - gpa < *size;
                    let flips = (attributes & KVM_MEMORY_ATTRIBUTE_PRIVATE != 0) != private;
                    covers && flips && self.actual[other][*rep] == Outcome::Ok
                }
                _ => false,
            })
        })
    }

    /// Member `m` takes its next step from `node`: the child, or `None` where the step's
    /// prediction does not admit what the backend did.
    fn advance(&mut self, mut child: Node, m: usize) -> Option<Node> {
        // The step tells into a buffer the search keeps (a clone's is empty, and would
        // allocate on the first effect).
        child.model.told = std::mem::take(&mut self.told);
        let admitted = self.step(&mut child, m);
        // What the step did is in the child's state but for its MMIO exits, kept beside it.
        child.exits.extend(&child.model.told);
        self.told = std::mem::take(&mut child.model.told);
        self.told.clear();
        admitted.then_some(child)
    }

    /// `advance`, but for keeping what the step told: whether the step's prediction admits
    /// what the backend did.
    fn step(&mut self, child: &mut Node, m: usize) -> bool {
        let pos = child.pos[m];
        let depth: usize = child.pos.iter().sum();
        let (steps, actual) = (self.steps, self.actual);
        let step = &steps[m][pos];
        let rep = step.rep();
        let actual = &actual[m][rep];
        let explain = self.orders == Orders::Every;
        // The state the step ran in, kept where a failure is explained.
        let before = explain.then(|| World { model: child.model.clone(), mmio_exits: child.exits.clone() });
        let fail = |search: &mut Self, at: At, predicted: &dyn Fn() -> StepResult, admitted: bool| {
            if !explain {
                return admitted;
            }
            let predicted = predicted();
            let set = search.predicted.entry(at).or_default();
            if !set.contains(&predicted) {
                set.push(predicted);
            }
            if !admitted && search.deepest.is_none_or(|(d, _)| depth >= d) {
                if search.deepest.is_some_and(|(d, _)| depth > d) {
                    search.deepest_states.clear();
                }
                if search.deepest_states.len() < MISMATCH_STATES {
                    search.deepest_states.push((at, before.clone().expect("kept where explaining")));
                }
                search.deepest = Some((depth, at));
            }
            admitted
        };
        child.pos[m] = pos + 1;
        match step {
            Step::Whole { op, .. } => {
                let out = child.model.apply_one(op);
                let ok = self.any_outcome || out.admits(actual).agrees();
                if !fail(self, (m, rep, None), &|| StepResult::Outcome(out.clone()), ok) {
                    return false;
                }
            }
            Step::Page { op, last, .. } => {
                let out = child.model.apply_one(op);
                if *last {
                    let ok = self.any_outcome || out.admits(actual).agrees();
                    if !fail(self, (m, rep, None), &|| StepResult::Outcome(out.clone()), ok) {
                        return false;
                    }
                }
            }
            Step::Access { index, access, part, .. } => {
                let Outcome::Guest(results) = actual else { unreachable!("shape checked") };
                let got = results[*index];
                if self.straddles_conversion(child, m, access, got) {
                    // The fault began before a conversion another member makes and checked
                    // again after it: KVM_RUN failed with the first view, nothing changed.
                    child.low[m] = Low::default();
                    child.pos[m] = self.next_rep[m][pos];
                    return true;
                }
                let mut low = child.low[m].get();
                let result = part.result(&mut low, child.model.guest_one(access));
                // A fault ends the repetition (below): no high half follows.
                let faulted = matches!(result, Some(AccessResult::MemoryFault { .. }));
                child.low[m] = if faulted { Low::default() } else { Low::of(low) };
                if let Some(result) = result {
                    if explain {
                        let predicted = self.predicted_accesses.entry((m, rep, Some(*index))).or_default();
                        if !predicted.contains(&result) {
                            predicted.push(result);
                        }
                    }
                    let ok = self.any_outcome || result.admits(&got);
                    if !fail(self, (m, rep, Some(*index)), &|| StepResult::Access(result), ok) {
                        return false;
                    }
                    if let AccessResult::MemoryFault { .. } = result {
                        // KVM_RUN failed: the rest of this repetition did not run.
                        child.low[m] = Low::default();
                        child.pos[m] = self.next_rep[m][pos];
                    }
                }
            }
        }
        true
    }
}

#[cfg(test)]
#[path = "race_tests.rs"]
mod tests;
