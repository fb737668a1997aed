//! Lockstep execution: the one place that steps the model and a backend and compares them.
//!
//! Every op goes to the model and then, unless the model skips it, to the backend; the two
//! outcomes are compared op by op, and page state is compared where [`policy`] says. What
//! the loop sees goes out as [`Event`]s to an [`Observer`]: replay prints them, the C
//! reproducer takes its expectations from them, bench and the scenario checks count them.

pub mod policy;

use gmemfuzz_backends::model::{Effect, MmioExits, Model, Prediction, RaceError, World};
use gmemfuzz_backends::op::PAGE_SIZE;
use gmemfuzz_backends::Group;
use gmemfuzz_backends::{Backend, HarnessError, Observation, Op, Outcome, Probe, Verdict};

use crate::oracle::{Context, Divergence};
use crate::program::Program;
use crate::stats::Stats;
use crate::timing::Stopwatch;
pub use policy::CompareAt;

/// What the loop saw, in program order.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// Op `index` ran: the model predicted `expected`, the backend did `actual` (the
    /// model's skip, unsent, where the model skipped it).
    Op { index: usize, op: &'a Op, expected: &'a Outcome, actual: &'a Outcome },
    /// State was compared after op `index`: each probe with the model's answer (`None`:
    /// either is fine) and the backend's.
    State { index: usize, at: CompareAt, probes: &'a [Probe], expected: &'a [Option<Observation>], actual: &'a [Option<Observation>] },
    /// The program stopped at this divergence (it is also the run's `Err`).
    Diverged(&'a Divergence),
}

/// Reads the runner's events.
pub trait Observer {
    fn event(&mut self, event: &Event<'_>);
}

/// No observer: what fuzzing uses.
impl Observer for () {
    fn event(&mut self, _: &Event<'_>) {}
}

impl<F: FnMut(&Event<'_>)> Observer for F {
    fn event(&mut self, event: &Event<'_>) {
        self(event)
    }
}

/// What one program did on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The backend's outcome of every op that ran (in order).
    pub outcomes: Vec<Outcome>,
    /// A divergence at this op matched a known kernel bug (see `known`); the program
    /// stopped there.
    pub known_bug: Option<(usize, &'static str)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Divergence(Box<Divergence>),
    #[error("gmemfuzz HARNESS ERROR (not a kernel finding): {0}")]
    Harness(#[from] HarnessError),
}

pub struct Runner<B: Backend> {
    /// The model's state; after a concurrent group, the first of the states some order of
    /// its members leaves (the others are in `worlds`).
    pub model: Model,
    /// The MMIO exits the model told in this program (`Effect::MmioExit`), for the known-bug
    /// filter.
    mmio_exits: MmioExits,
    /// The other states a group may have left, each still consistent with everything the
    /// backend showed since: later outcomes and probes drop the ones they contradict, and
    /// the model is swapped for one that admits what the backend did. Empty without groups.
    worlds: Vec<World>,
    pub backend: B,
    pub stats: Stats,
    /// Compare page state after invalidating ops (and at `Check` and the end regardless).
    pub check_after_invalidation: bool,
    /// Let divergences that match a known kernel bug pass (counted, not reported). Off by
    /// default; fuzzing sessions turn it on, replay and minimization leave it off.
    pub filter_known: bool,
    /// Check the model's own invariants after every op (a broken one is a harness bug).
    pub check_model_invariants: bool,
    /// Release what a program made (files, slots, attributes: the backend's reset) at the
    /// end of its run, not at the start of the next: what the kernel does on the release
    /// (the platform's invalidate hook, a splat there) then falls within this program's run,
    /// where a caller reading the kernel log after `run` looks for it. Off by default: a
    /// simulated backend reports its invariants after `run`, and its reset clears them.
    pub release_after_run: bool,
}

impl<B: Backend> Runner<B> {
    pub fn new(backend: B) -> Runner<B> {
        let model = Model::new(backend.profile().clone());
        Runner {
            model,
            mmio_exits: MmioExits::default(),
            worlds: Vec::new(),
            backend,
            stats: Stats::default(),
            check_after_invalidation: true,
            filter_known: false,
            check_model_invariants: false,
            release_after_run: false,
        }
    }

    /// Runs a program from a clean state on both sides.
    pub fn run(&mut self, program: &Program) -> Result<Trace, RunError> {
        self.run_with(program, &mut ())
    }

    /// As `run`, telling `observer` everything the loop sees.
    pub fn run_with(&mut self, program: &Program, observer: &mut impl Observer) -> Result<Trace, RunError> {
        let mut trace = Trace { outcomes: Vec::with_capacity(program.ops.len()), known_bug: None };
        self.stats.programs += 1;
        let (clock, groups) = (Stopwatch::start(), self.stats.races.groups);
        let mut steps = self.steps(program, &mut trace, observer);
        if self.release_after_run {
            let t = Stopwatch::start();
            let released = self.backend.reset().map_err(RunError::Harness).and_then(|()| self.platform_after_release(program));
            self.stats.time.reset += t.secs();
            if let (Ok(()), Err(e)) = (&steps, released) {
                steps = Err(e);
            }
        }
        if self.stats.races.groups > groups {
            // A program where a group ran: counted apart, for racing programs/s.
            self.stats.time.racing_programs += 1;
            self.stats.time.racing_seconds += clock.secs();
        }
        match steps {
            Ok(()) => Ok(trace),
            Err(RunError::Divergence(d)) => {
                let known = if self.filter_known { crate::known::classify(&d, &self.model, &self.mmio_exits) } else { None };
                match known {
                    Some(bug) => {
                        self.stats.known += 1;
                        trace.known_bug = Some((d.op_index, bug.name));
                        Ok(trace)
                    }
                    None => {
                        self.stats.divergences += 1;
                        observer.event(&Event::Diverged(&d));
                        Err(RunError::Divergence(d))
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    fn steps(&mut self, program: &Program, trace: &mut Trace, observer: &mut impl Observer) -> Result<(), RunError> {
        let t = Stopwatch::start();
        self.model.reset()?;
        self.mmio_exits = MmioExits::default();
        self.worlds.clear();
        self.stats.time.model += t.secs();
        let t = Stopwatch::start();
        self.backend.reset()?;
        self.stats.time.reset += t.secs();
        self.stats.reach.huge.baseline(self.backend.mmu_pages());
        let mut compared_last = false;
        for (index, op) in program.ops.iter().enumerate() {
            self.model.set_op_index(index);
            for w in &mut self.worlds {
                w.model.set_op_index(index);
            }
            if let Op::Group(group) = op {
                match self.group(index, op, group, observer)? {
                    Some(actual) => {
                        compared_last = policy::compare_after(op, &actual, self.check_after_invalidation);
                        trace.outcomes.push(actual);
                        if compared_last {
                            self.compare_state(index, op, CompareAt::AfterOp, observer)?;
                        }
                        continue;
                    }
                    // No verdict on the group: the program ends here.
                    None => return Ok(()),
                }
            }
            let reach = self.stats.reach.before(op, &self.model);
            let t = Stopwatch::start();
            let predicted = self.model.predict(op);
            self.mmio_exits.extend(&predicted.effects);
            if self.check_model_invariants {
                self.model.check_invariants().map_err(|e| HarnessError::Bug(format!("model invariant broken after op #{index}: {e}")))?;
            }
            self.stats.time.model += t.secs();
            // A skip is decided by the program alone; the backend is not asked.
            let actual = match &predicted.outcome {
                Outcome::Skipped(reason) => Outcome::Skipped(*reason),
                _ => {
                    let t = Stopwatch::start();
                    let actual = self.backend.apply(op)?;
                    self.stats.time.add_op(op.kind(), t.elapsed());
                    actual
                }
            };
            self.stats.count(op, &actual);
            self.stats.reach.after(reach, &actual, self.backend.mmu_pages());
            // Parts the model cannot predict match anything; they are counted.
            self.stats.skipped_unknown += u64::from(predicted.outcome.admits(&actual).unknown());
            let Prediction { outcome: expected, effects } = match self.worlds.is_empty() {
                true => predicted,
                false => self.follow_worlds(index, op, predicted, &actual).map_err(RunError::Divergence)?,
            };
            observer.event(&Event::Op { index, op, expected: &expected, actual: &actual });
            if let Some(d) = self.context(&self.model, &self.mmio_exits, &effects, index, op).compare_outcome(&expected, &actual) {
                return Err(RunError::Divergence(Box::new(d)));
            }
            compared_last = policy::compare_after(op, &actual, self.check_after_invalidation);
            trace.outcomes.push(actual);
            if compared_last {
                self.compare_state(index, op, CompareAt::AfterOp, observer)?;
            }
        }
        if let Some(last) = program.ops.last() {
            if policy::compare_at_end(compared_last) {
                self.compare_state(program.ops.len() - 1, last, CompareAt::End, observer)?;
            }
        }
        Ok(())
    }

    /// After `release_after_run` released everything the program made: the platform's
    /// reverse map of the VM must be empty, since every file's release reclaims its pages
    /// (`platform.rs`); an entry left is this program's, not the next one's. Only the map
    /// is asked, and no event tells of it: a reproducer ends its program without the release.
    fn platform_after_release(&mut self, program: &Program) -> Result<(), RunError> {
        let Some(last) = program.ops.last() else { return Ok(()) };
        if !self.backend.profile().platform_map {
            return Ok(());
        }
        let actual = self.backend.observe(&[Probe::PlatformMap])?.remove(0);
        let expected = Some(Observation::PlatformMap(Vec::new()));
        if gmemfuzz_backends::admits_observation(&expected, &actual).agrees() {
            return Ok(());
        }
        let index = program.ops.len() - 1;
        let ctx = Context {
            model: &self.model,
            mmio_exits: &self.mmio_exits,
            effects: &[],
            op_index: index,
            op: last,
            backend: self.backend.name(),
        };
        let d = ctx
            .compare_probe(&Probe::PlatformMap, CompareAt::End, &expected, &actual)
            .ok_or_else(|| HarnessError::Bug(format!("the oracle finds no difference in the reverse map after release: {actual:?}")))?;
        Err(RunError::Divergence(Box::new(d)))
    }

    /// Asks both sides every probe the model proposes and compares the answers.
    fn compare_state(&mut self, index: usize, op: &Op, at: CompareAt, observer: &mut impl Observer) -> Result<(), RunError> {
        let t = Stopwatch::start();
        let probes = self.model.probes();
        if probes.is_empty() {
            self.stats.time.model += t.secs();
            return Ok(());
        }
        let (mut expected, told) = self.model.observe_told(&probes);
        self.mmio_exits.extend(&told);
        self.stats.time.model += t.secs();
        let t = Stopwatch::start();
        let actual = self.backend.observe(&probes)?;
        self.stats.time.compare += t.secs();
        if !self.worlds.is_empty() {
            expected = self.observe_worlds(&probes, expected, &actual)?;
        }
        self.stats.probes += probes.len() as u64;
        for a in &actual {
            if let Some(Observation::PlatformMap(gfns)) = a {
                self.stats.platform_maps += 1;
                self.stats.platform_most_gfns = self.stats.platform_most_gfns.max(gfns.len() as u64);
            }
        }
        observer.event(&Event::State { index, at, probes: &probes, expected: &expected, actual: &actual });
        let ctx =
            Context { model: &self.model, mmio_exits: &self.mmio_exits, effects: &[], op_index: index, op, backend: self.backend.name() };
        for ((probe, e), a) in probes.iter().zip(&expected).zip(&actual) {
            // One comparison decides (digests are computed once); the oracle only explains.
            match gmemfuzz_backends::admits_observation(e, a) {
                Verdict::Agrees { unknown } => self.stats.skipped_unknown += u64::from(unknown),
                Verdict::Differs => {
                    let d = ctx.compare_probe(probe, at, e, a).ok_or_else(|| {
                        HarnessError::Bug(format!("the oracle finds no difference in {probe:?}: model {e:?}, backend {a:?}"))
                    })?;
                    return Err(RunError::Divergence(Box::new(d)));
                }
            }
        }
        Ok(())
    }
}

/// Records in `exits` every GFN a guest member of `group` touched: KVM may keep an MMIO
/// SPTE there that no exit showed (`MmioExits::may_keep_mmio_spte`).
fn note_raced_gfns(exits: &mut MmioExits, group: &Group) {
    for m in &group.members {
        if let Op::Guest { accesses } = &m.op {
            for a in accesses {
                for gfn in a.gpa / PAGE_SIZE..=(a.gpa + a.width.bytes() - 1) / PAGE_SIZE {
                    exits.insert_raced(gfn);
                }
            }
        }
    }
}

impl<B: Backend> Runner<B> {
    /// Runs a concurrent group on the backend and asks the model which orders of its
    /// members explain what the backend did (`Model::race`, from every state the model may
    /// be in). The backend's outcome, or `None` where the search gave no verdict.
    fn group(&mut self, index: usize, op: &Op, group: &Group, observer: &mut impl Observer) -> Result<Option<Outcome>, RunError> {
        let t = Stopwatch::start();
        let actual = self.backend.apply(op)?;
        self.stats.time.add_op(op.kind(), t.elapsed());
        self.stats.count(op, &actual);
        self.stats.reach.huge.sample(self.backend.mmu_pages());
        let t = Stopwatch::start();
        let mut finals: Vec<World> = Vec::new();
        let mut mismatch = None;
        let primary = std::iter::once((&self.model, &self.mmio_exits));
        for (world, exits) in primary.chain(self.worlds.iter().map(|w| (&w.model, &w.mmio_exits))) {
            let (result, size) = world.race_sized(exits, group, &actual);
            self.stats.races.searched(size);
            match result {
                Ok(ends) => finals.extend(ends),
                Err(RaceError::Mismatch(m)) => {
                    // A known bug is matched in a state the contradicted step ran in (what
                    // the members did before it included), or else in the state before the group.
                    let mut states = m.states.0.iter().map(|w| (&w.model, &w.mmio_exits)).chain(std::iter::once((world, exits)));
                    if let Some((d, (at, at_exits))) =
                        states.find_map(|s| self.known_in(s.0, s.1, &[], |ctx| Some(ctx.race_mismatch(&m)), index, op).map(|d| (d, s)))
                    {
                        self.stats.time.model += t.secs();
                        (self.model, self.mmio_exits) = (at.clone(), at_exits.clone());
                        return Err(RunError::Divergence(d));
                    }
                    mismatch.get_or_insert(m);
                }
                Err(RaceError::TooLarge) => {
                    self.stats.races.inconclusive += 1;
                    self.stats.time.model += t.secs();
                    return Ok(None);
                }
                Err(RaceError::Shape(why)) => return Err(HarnessError::Bug(format!("group at op #{index}: {why}")).into()),
            }
        }
        self.stats.time.model += t.secs();
        let mut seen = std::collections::HashSet::new();
        finals.retain(|w| seen.insert(w.fingerprint()));
        self.stats.races.record(group, &actual, finals.len());
        if finals.is_empty() {
            let m = mismatch.expect("no end state without a mismatch");
            let d = self.context(&self.model, &self.mmio_exits, &[], index, op).race_mismatch(&m);
            observer.event(&Event::Op { index, op, expected: &Outcome::Unknown, actual: &actual });
            return Err(RunError::Divergence(Box::new(d)));
        }
        for w in &mut finals {
            note_raced_gfns(&mut w.mmio_exits, group);
        }
        let first = finals.remove(0);
        (self.model, self.mmio_exits) = (first.model, first.mmio_exits);
        self.worlds = finals;
        // The model admits what the backend did (some order explains it).
        observer.event(&Event::Op { index, op, expected: &actual, actual: &actual });
        Ok(Some(actual))
    }

    /// After a group: applies `op` to every other state the model may be in, keeps those
    /// whose prediction admits `actual`, and makes the model one that admits it where it
    /// does not. Returns the model's prediction (`expected`, or the adopted state's), or the
    /// divergence of a state dropped for what a known kernel bug does (`known_in`).
    fn follow_worlds(&mut self, index: usize, op: &Op, expected: Prediction, actual: &Outcome) -> Result<Prediction, Box<Divergence>> {
        let diverged = |ctx: &Context| ctx.compare_outcome(&expected.outcome, actual);
        if let Some(d) = self.known_in(&self.model, &self.mmio_exits, &expected.effects, diverged, index, op) {
            return Err(d);
        }
        let mut kept = Vec::with_capacity(self.worlds.len());
        let mut adopted = None;
        for mut w in std::mem::take(&mut self.worlds) {
            // The primary skipped the op: every state skips it (skips follow the program),
            // and the others did not run it either.
            let predicted = match &expected.outcome {
                Outcome::Skipped(_) => Prediction { outcome: expected.outcome.clone(), effects: Vec::new() },
                _ => {
                    let predicted = w.model.predict(op);
                    w.mmio_exits.extend(&predicted.effects);
                    predicted
                }
            };
            if predicted.outcome.admits(actual).agrees() {
                if adopted.is_none() {
                    adopted = Some(predicted);
                }
                kept.push(w);
            } else if let Some(d) =
                self.known_in(&w.model, &w.mmio_exits, &predicted.effects, |ctx| ctx.compare_outcome(&predicted.outcome, actual), index, op)
            {
                (self.model, self.mmio_exits) = (w.model, w.mmio_exits);
                return Err(d);
            }
        }
        if expected.outcome.admits(actual).agrees() {
            self.worlds = kept;
            return Ok(expected);
        }
        Ok(match adopted {
            Some(predicted) => {
                let first = kept.remove(0);
                (self.model, self.mmio_exits) = (first.model, first.mmio_exits);
                self.worlds = kept;
                predicted
            }
            // No state admits it: the divergence is reported from the model.
            None => expected,
        })
    }

    /// While fuzzing (`filter_known`), the divergence `diverged` finds from `world` (an op's
    /// outcome, a group's search), if it is a known kernel bug; it is only built then. After
    /// a group, a state that only such a bug explains may be the true one (the lane on 7.2: a
    /// GFN made private by a group, read through a stale MMIO SPTE, looked shared, and the
    /// shared state was kept until a later fault showed the private one), so the program ends
    /// there as that bug's hit, as it does where the model's own state shows the bug.
    fn known_in(
        &self,
        world: &Model,
        exits: &MmioExits,
        effects: &[Effect],
        diverged: impl FnOnce(&Context) -> Option<Divergence>,
        index: usize,
        op: &Op,
    ) -> Option<Box<Divergence>> {
        if !self.filter_known {
            return None;
        }
        let d = diverged(&self.context(world, exits, effects, index, op))?;
        crate::known::classify(&d, world, exits).map(|_| Box::new(d))
    }

    /// The oracle's view of op `index` from one state the model may be in, with what the
    /// model told the op did there.
    fn context<'a>(
        &'a self,
        model: &'a Model,
        mmio_exits: &'a MmioExits,
        effects: &'a [Effect],
        op_index: usize,
        op: &'a Op,
    ) -> Context<'a> {
        Context { model, mmio_exits, effects, op_index, op, backend: self.backend.name() }
    }

    /// After a group: asks every other state the model may be in the same probes, keeps
    /// those that admit every answer, and makes the model one that does where it does not.
    /// Where none does (a divergence), the model becomes the state that differs on the
    /// fewest probes, so that the divergence shown is the one no state explains: a state
    /// that differs only where a known kernel bug shows (a guest probe through a stale MMIO
    /// SPTE) is the kernel's state, and another that also differs on what that state
    /// explains (a page a racing fault left) would hide the bug behind a false lead.
    /// Returns the model's answers (the adopted state's, if it changed).
    fn observe_worlds(
        &mut self,
        probes: &[Probe],
        expected: Vec<Option<Observation>>,
        actual: &[Option<Observation>],
    ) -> Result<Vec<Option<Observation>>, HarnessError> {
        let misfits = |answers: &[Option<Observation>]| {
            answers.iter().zip(actual).filter(|(e, a)| !gmemfuzz_backends::admits_observation(e, a).agrees()).count()
        };
        let mut answered = Vec::with_capacity(self.worlds.len());
        for mut w in std::mem::take(&mut self.worlds) {
            let (answers, told) = w.model.observe_told(probes);
            w.mmio_exits.extend(&told);
            answered.push((misfits(&answers), w, answers));
        }
        let adopted = closest_world(misfits(&expected), answered.iter().map(|(n, ..)| *n)).map(|i| answered.remove(i));
        self.worlds = answered.into_iter().filter(|(n, ..)| *n == 0).map(|(_, w, _)| w).collect();
        Ok(match adopted {
            Some((_, closest, answers)) => {
                (self.model, self.mmio_exits) = (closest.model, closest.mmio_exits);
                answers
            }
            None => expected,
        })
    }
}

/// Which of the other states to adopt, given how many probes the model's own state
/// (`own`) and each other state differ on: none while the model's fits; else the first that
/// fits, or the first of those that differ on fewest probes where that is fewer than the
/// model's.
fn closest_world(own: usize, others: impl Iterator<Item = usize>) -> Option<usize> {
    if own == 0 {
        return None;
    }
    let (best, fewest) = others.enumerate().min_by_key(|&(i, n)| (n, i))?;
    (fewest < own).then_some(best)
}

/// Runs `program` on a reused backend and on a freshly made one and compares what the
/// backend did: a difference means reset left state behind (a harness bug).
pub fn check_reset<B: Backend>(reused: &mut Runner<B>, fresh: B, program: &Program) -> Result<(), HarnessError> {
    let a = reused.run(program);
    same_on_fresh(&a, &mut Runner::new(fresh), program)
}

/// Runs `program` on `fresh` and requires what `reused` (the same program on a reused
/// backend) did: the same trace, or a divergence of the same kind at the same op with the
/// same observation. A difference means reset left state behind (a harness bug).
pub fn same_on_fresh<B: Backend>(reused: &Result<Trace, RunError>, fresh: &mut Runner<B>, program: &Program) -> Result<(), HarnessError> {
    let b = fresh.run(program);
    // From the first concurrent group on, what a program shows depends on timing: only what
    // came before it must be the same (a divergence after it was reported by the run).
    let timed = program.ops.iter().position(|op| matches!(op, Op::Group(_))).unwrap_or(usize::MAX);
    let same = match (reused, &b) {
        (Ok(a), Ok(b)) if timed == usize::MAX => a == b,
        (Ok(a), Ok(b)) => a.outcomes.iter().take(timed).eq(b.outcomes.iter().take(timed)) && a.known_bug == b.known_bug,
        (Err(RunError::Divergence(a)), Err(RunError::Divergence(b))) => {
            (a.kind == b.kind && a.op_index == b.op_index && a.actual == b.actual) || (a.op_index >= timed && b.op_index >= timed)
        }
        (Ok(_), Err(RunError::Divergence(d))) | (Err(RunError::Divergence(d)), Ok(_)) => d.op_index >= timed,
        _ => false,
    };
    if same {
        return Ok(());
    }
    let describe = |r: &Result<Trace, RunError>| match r {
        Ok(t) => format!("{t:?}"),
        Err(e) => e.to_string(),
    };
    Err(HarnessError::Bug(format!("reset left state behind: reused VM gave\n{}\nfresh VM gave\n{}", describe(reused), describe(&b))))
}

#[cfg(test)]
mod tests {
    use gmemfuzz_backends::group::Member;
    use gmemfuzz_backends::model::MmioExits;
    use gmemfuzz_backends::op::{Access, AccessKind, GmemId, Op, Width};
    use gmemfuzz_backends::Group;

    use super::closest_world;

    /// Every page a guest member's access touches counts as raced (one that crosses a page
    /// touches two); other members' pages do not.
    #[test]
    fn a_groups_guest_accesses_mark_their_gfns_raced() {
        let read = |gpa, width| Access { gpa, width, kind: AccessKind::Read };
        let guest = Op::Guest { accesses: vec![read(0x113000, Width::W8), read(0x114ffe, Width::W4)] };
        let punch = Op::Punch { gmem: GmemId(0), offset: 0x200000, len: 0x1000 };
        let group = Group { members: vec![Member { op: guest, repeat: 2 }, Member { op: punch, repeat: 1 }] };
        let mut exits = MmioExits::default();
        super::note_raced_gfns(&mut exits, &group);
        assert_eq!(exits.raced().collect::<Vec<_>>(), vec![0x113, 0x114, 0x115]);
        assert!(exits.may_keep_mmio_spte(0x115) && !exits.contains(0x115), "raced, not exited");
        assert!(!exits.may_keep_mmio_spte(0x200));
    }

    #[test]
    fn the_closest_state_is_adopted_only_where_it_explains_more() {
        assert_eq!(closest_world(0, [0, 1].into_iter()), None, "the model's own state fits");
        assert_eq!(closest_world(2, [3, 0, 0].into_iter()), Some(1), "the first that fits");
        assert_eq!(closest_world(2, [2, 1, 1].into_iter()), Some(1), "none fits: the first that differs least");
        assert_eq!(closest_world(1, [1, 2].into_iter()), None, "none differs less than the model's own");
        assert_eq!(closest_world(1, std::iter::empty()), None);
    }
}
