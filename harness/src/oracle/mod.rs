//! Comparison rules: when do the model's prediction and a backend's outcome disagree, and
//! what kind of bug does the disagreement look like.

mod divergence;

pub use divergence::{show_content, show_observation, CompareAt, Divergence, DivergenceKind, Seen, Subject};

use gmemfuzz_backends::model::{Effect, MmioExits, Model, PageEvent, PageKey, RaceMismatch, StepResult};
use gmemfuzz_backends::op::{Op, PAGE_SIZE};
use gmemfuzz_backends::outcome::{AccessResult, Observation, Outcome, Probe};

/// The page and the model's history of it, for the report.
fn page_story(model: &Model, key: Option<PageKey>) -> Option<(PageKey, Vec<(usize, PageEvent)>)> {
    key.map(|k| (k, model.history().events(&k)))
}

/// What a value read at `offset` of a page says about the bug: the page's content before
/// it was last dropped (stale), or an overwritten value (lost write).
fn classify_read(model: &Model, key: Option<PageKey>, offset: u64, width: u64, got: u64) -> DivergenceKind {
    let Some(key) = key else { return DivergenceKind::ResultMismatch };
    if let Some((_, before)) = model.history().before_drop(&key) {
        let mut v = 0u64;
        for i in (0..width).rev() {
            v = (v << 8) | before[(offset + i) as usize] as u64;
        }
        if v == got && got != 0 {
            return DivergenceKind::StaleRead;
        }
    }
    let overwritten = model.history().events(&key).iter().any(|(_, e)| {
        matches!(e, PageEvent::Written { offset: o, width: w, old, .. } if *o as u64 == offset && *w as u64 == width && *old == got)
    });
    if overwritten {
        DivergenceKind::LostWrite
    } else {
        DivergenceKind::ResultMismatch
    }
}

pub struct Context<'a> {
    pub model: &'a Model,
    /// The MMIO exits the model told in this program, shown with its state.
    pub mmio_exits: &'a MmioExits,
    /// What the model told the op did (`Model::predict`): the pages its guest accesses touched.
    pub effects: &'a [Effect],
    pub op_index: usize,
    pub op: &'a Op,
    pub backend: &'a str,
}

impl Context<'_> {
    fn divergence(&self, kind: DivergenceKind, subject: Subject, expected: Seen, actual: Seen, key: Option<PageKey>) -> Divergence {
        Divergence {
            kind,
            op_index: self.op_index,
            op: self.op.clone(),
            subject,
            expected,
            actual,
            page: page_story(self.model, key),
            backend: self.backend.to_string(),
            profile: gmemfuzz_backends::Backend::profile(self.model).summary(),
            model_state: self.model.describe(self.mmio_exits),
        }
    }

    /// Compares an op's outcome. Guest accesses are compared one by one so the report
    /// names the access and its page.
    pub fn compare_outcome(&self, expected: &Outcome, actual: &Outcome) -> Option<Divergence> {
        if expected.admits(actual).agrees() {
            return None;
        }
        let mismatch =
            |kind, key| Some(self.divergence(kind, Subject::Result, Seen::Outcome(expected.clone()), Seen::Outcome(actual.clone()), key));
        match (self.op, expected, actual) {
            (Op::Guest { accesses }, Outcome::Guest(exp), Outcome::Guest(act)) if exp.len() == act.len() => {
                let i = exp.iter().zip(act).position(|(e, a)| !e.admits(a)).expect("outcomes differ");
                let key = self.effects.iter().find_map(|e| match *e {
                    Effect::Touched { access, page, .. } if access == i => Some(page),
                    _ => None,
                });
                let access = accesses[i];
                let kind = match (exp[i], act[i]) {
                    (AccessResult::Read(_), AccessResult::Read(got)) => {
                        classify_read(self.model, key, access.gpa % PAGE_SIZE, access.width.bytes(), got)
                    }
                    _ => DivergenceKind::UnexpectedExit,
                };
                let subject = Subject::GuestAccess { index: i, access };
                Some(self.divergence(kind, subject, Seen::Access(exp[i]), Seen::Access(act[i]), key))
            }
            (Op::HostRead { gmem, offset, width }, Outcome::Value(_), Outcome::Value(got)) => {
                let key = PageKey::Gmem { gmem: gmem.0, index: offset / PAGE_SIZE };
                mismatch(classify_read(self.model, Some(key), offset % PAGE_SIZE, width.bytes(), *got), Some(key))
            }
            (_, _, Outcome::Sigbus) | (_, Outcome::Sigbus, _) => mismatch(DivergenceKind::UnexpectedExit, None),
            _ => mismatch(DivergenceKind::ResultMismatch, None),
        }
    }

    /// A group whose backend answer no order of its members explains.
    pub fn race_mismatch(&self, m: &RaceMismatch) -> Divergence {
        let subject =
            Subject::Race { member: m.member, repetition: m.repetition, access: m.access, gpa: m.access_at.as_ref().map(|a| a.gpa) };
        let kind = if m.actual.is_exit() || m.allowed.iter().any(StepResult::is_exit) {
            DivergenceKind::UnexpectedExit
        } else {
            DivergenceKind::ResultMismatch
        };
        let (expected, actual) = match &m.access_at {
            Some(a) if !a.allowed.is_empty() => (Seen::OneOf(a.allowed.clone()), Seen::Access(a.actual)),
            _ => (Seen::Allowed(m.allowed.clone()), Seen::Step(m.actual.clone())),
        };
        self.divergence(kind, subject, expected, actual, None)
    }

    /// Compares the answers to one probe. `None` from the model means "either is fine".
    pub fn compare_probe(
        &self,
        probe: &Probe,
        at: CompareAt,
        expected: &Option<Observation>,
        actual: &Option<Observation>,
    ) -> Option<Divergence> {
        let expected = expected.as_ref()?;
        let actual = actual.as_ref()?;
        let key = self.model.probe_page(probe);
        let report = |kind, key| {
            Some(self.divergence(
                kind,
                Subject::Probe { probe: *probe, at },
                Seen::Observation(expected.clone()),
                Seen::Observation(actual.clone()),
                key,
            ))
        };
        match (expected, actual) {
            (Observation::Content(e), Observation::Content(a)) => {
                if e.digest() == a.digest() {
                    return None;
                }
                let stale = key
                    .and_then(|k| self.model.history().before_drop(&k))
                    .is_some_and(|(_, before)| probe.digest_of(&before) == a.digest() && probe.digest_of(&before) != e.digest());
                report(if stale { DivergenceKind::StaleRead } else { DivergenceKind::StateMismatch }, key)
            }
            (e, a) if e == a => None,
            (Observation::Residency(exp), Observation::Residency(act)) => {
                // Pages still resident that this very op dropped: the op's invalidation was
                // missed, the same bug a stale read shows.
                let Probe::Residency { gmem } = *probe else { unreachable!("residency answers residency probes") };
                let dropped_here = |i: usize| {
                    self.model
                        .history()
                        .before_drop(&PageKey::Gmem { gmem: gmem.0, index: i as u64 })
                        .is_some_and(|(at, _)| at == self.op_index)
                };
                let kept = (0..exp.len().min(act.len())).find(|&i| act[i] && !exp[i] && dropped_here(i));
                let kind = if kept.is_some() { DivergenceKind::StaleRead } else { DivergenceKind::StateMismatch };
                report(kind, kept.map(|i| PageKey::Gmem { gmem: gmem.0, index: i as u64 }))
            }
            (Observation::PlatformMap(_), Observation::PlatformMap(_)) => report(DivergenceKind::PlatformMismatch, key),
            _ => report(DivergenceKind::UnexpectedExit, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use gmemfuzz_backends::model::{MismatchStates, MmioExits, Model, RaceMismatch, StepResult};
    use gmemfuzz_backends::op::{GmemId, Op};
    use gmemfuzz_backends::outcome::{AccessResult, Errno, Outcome};
    use gmemfuzz_backends::Profile;

    use super::{Context, DivergenceKind, Seen};

    fn kind(allowed: Vec<StepResult>, actual: StepResult) -> (DivergenceKind, Seen, Seen) {
        let model = Model::new(Profile::host_6_18());
        let op = Op::CloseGmem { gmem: GmemId(0) };
        let ctx = Context { model: &model, mmio_exits: &MmioExits::default(), effects: &[], op_index: 2, op: &op, backend: "test-double" };
        let m =
            RaceMismatch { member: 1, repetition: 0, access: None, allowed, actual, access_at: None, states: MismatchStates::default() };
        let d = ctx.race_mismatch(&m);
        (d.kind, d.expected, d.actual)
    }

    /// A race is an unexpected exit where either side's step exited, by value: SIGBUS, an
    /// MMIO exit or a memory fault; an errno named EFAULT is none.
    #[test]
    fn a_race_is_classified_by_the_values_of_its_step() {
        use StepResult as S;
        let value = |v| S::Outcome(Outcome::Value(v));
        assert_eq!(kind(vec![value(0)], value(1)).0, DivergenceKind::ResultMismatch);
        assert_eq!(kind(vec![value(0)], S::Outcome(Outcome::Sigbus)).0, DivergenceKind::UnexpectedExit);
        assert_eq!(kind(vec![S::Outcome(Outcome::Sigbus)], value(0)).0, DivergenceKind::UnexpectedExit);
        let fault = AccessResult::MemoryFault { gpa: 0x1000, size: 0x1000, flags: 0 };
        assert_eq!(kind(vec![S::Access(AccessResult::Read(0))], S::Access(fault)).0, DivergenceKind::UnexpectedExit);
        let guest = |r| S::Outcome(Outcome::Guest(vec![AccessResult::Wrote, r]));
        assert_eq!(kind(vec![guest(AccessResult::Wrote)], guest(AccessResult::Mmio)).0, DivergenceKind::UnexpectedExit);
        let efault = S::Outcome(Outcome::Err(Errno::EFAULT));
        let (k, expected, actual) = kind(vec![S::Outcome(Outcome::Ok)], efault.clone());
        assert_eq!(k, DivergenceKind::ResultMismatch, "EFAULT is an errno, not an exit");
        assert_eq!((expected, actual), (Seen::Allowed(vec![S::Outcome(Outcome::Ok)]), Seen::Step(efault)));
        assert_eq!(kind(vec![S::Accesses(2)], S::Outcome(Outcome::Ok)).0, DivergenceKind::ResultMismatch);
    }

    /// A guest access's divergence names the page the model told the access touched
    /// (`Effect::Touched`), with its history: an overwritten value read back is a lost write.
    #[test]
    fn a_guest_access_divergence_names_the_page_the_model_told_it_touched() {
        use gmemfuzz_backends::model::{Effect, PageKey};
        use gmemfuzz_backends::op::{layout, Access, AccessKind, FdArg, Width};
        let slot = layout::FIRST_PROGRAM_SLOT;
        let gpa = layout::WINDOW_GPA;
        let mut model = Model::new(Profile::host_6_18());
        let access = |kind| Access { gpa: gpa + 8, width: Width::W4, kind };
        let bind = Op::Bind { slot, flags: 0, fd: FdArg::Invalid, gpa, size: 0x1000, offset: 0 };
        assert_eq!(model.predict(&bind).outcome, Outcome::Ok);
        model.predict(&Op::Guest { accesses: vec![access(AccessKind::Write(5))] });
        model.predict(&Op::Guest { accesses: vec![access(AccessKind::Write(6))] });
        let op = Op::Guest { accesses: vec![access(AccessKind::Read), access(AccessKind::Read)] };
        let predicted = model.predict(&op);
        let page = PageKey::Anon { slot, index: 0 };
        assert_eq!(predicted.effects, vec![0, 1].into_iter().map(|i| Effect::Touched { access: i, page, offset: 8 }).collect::<Vec<_>>());
        let actual = Outcome::Guest(vec![AccessResult::Read(6), AccessResult::Read(5)]);
        let exits = MmioExits::default();
        let diverged = |effects: &[Effect]| {
            let ctx = Context { model: &model, mmio_exits: &exits, effects, op_index: 4, op: &op, backend: "test-double" };
            ctx.compare_outcome(&predicted.outcome, &actual).expect("the second read differs")
        };
        let d = diverged(&predicted.effects);
        assert_eq!((d.kind, d.page.map(|p| p.0)), (DivergenceKind::LostWrite, Some(page)));
        let d = diverged(&[]);
        assert_eq!((d.kind, d.page.map(|p| p.0)), (DivergenceKind::ResultMismatch, None), "nothing told: no page to name");
    }
}
