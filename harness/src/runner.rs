//! Lockstep execution: every op goes to the model and to the backend, and the two are
//! compared op by op, and on page state after every invalidating op.

use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, HarnessError, Op, Outcome};

use crate::oracle::{Context, Divergence};
use crate::program::Program;
use crate::stats::Stats;

/// What one program did on both sides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The backend's outcome of every op that ran (in order).
    pub outcomes: Vec<Outcome>,
    /// Set when the model stopped predicting (see `Model::lost_track`): the ops after
    /// this index were not compared.
    pub unknown_from: Option<(usize, String)>,
    /// A divergence at this op matched a known kernel bug (see `known`); the program
    /// stopped there.
    pub known_bug: Option<(usize, &'static str)>,
}

#[derive(Debug)]
pub enum RunError {
    Divergence(Box<Divergence>),
    Harness(HarnessError),
}

impl From<HarnessError> for RunError {
    fn from(e: HarnessError) -> Self {
        RunError::Harness(e)
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Divergence(d) => write!(f, "{d}"),
            RunError::Harness(e) => write!(f, "gmemfuzz HARNESS ERROR (not a kernel finding): {e}"),
        }
    }
}

pub struct Runner<B: Backend> {
    pub model: Model,
    pub backend: B,
    pub stats: Stats,
    /// Compare page state after invalidating ops (and at `Check` and the end regardless).
    pub check_after_invalidation: bool,
    /// Let divergences that match a known kernel bug pass (counted, not reported). Off by
    /// default; fuzzing sessions turn it on, replay and minimization leave it off.
    pub filter_known: bool,
}

impl<B: Backend> Runner<B> {
    pub fn new(backend: B) -> Runner<B> {
        let model = Model::new(backend.profile().clone());
        Runner { model, backend, stats: Stats::default(), check_after_invalidation: true, filter_known: false }
    }

    /// Runs a program from a clean state on both sides.
    pub fn run(&mut self, program: &Program) -> Result<Trace, RunError> {
        let mut trace = Trace { outcomes: Vec::with_capacity(program.ops.len()), unknown_from: None, known_bug: None };
        match self.run_into(program, &mut trace) {
            Err(RunError::Divergence(d)) if self.filter_known => match crate::known::classify(&d, &self.model) {
                Some(bug) => {
                    self.stats.divergences -= 1;
                    self.stats.known += 1;
                    trace.known_bug = Some((d.op_index, bug.name));
                    Ok(trace)
                }
                None => Err(RunError::Divergence(d)),
            },
            Err(e) => Err(e),
            Ok(()) => Ok(trace),
        }
    }

    fn run_into(&mut self, program: &Program, trace: &mut Trace) -> Result<(), RunError> {
        self.model.reset()?;
        self.backend.reset()?;
        self.stats.programs += 1;
        for (index, op) in program.ops.iter().enumerate() {
            self.model.set_op_index(index);
            let reach = self.stats.reach.before(op, &self.model);
            let expected = self.model.apply(op)?;
            if let Some(why) = self.model.lost_track() {
                self.stats.unknown += 1;
                trace.unknown_from = Some((index, why.to_string()));
                return Ok(());
            }
            // A skip is decided by the program alone; the backend is not asked.
            let actual = match &expected {
                Outcome::Skipped(reason) => Outcome::Skipped(*reason),
                _ => self.backend.apply(op)?,
            };
            self.stats.count(op, &actual);
            self.stats.reach.after(reach, &actual);
            let ctx = Context { model: &self.model, op_index: index, op, backend: self.backend.name() };
            if let Some(d) = ctx.compare_outcome(&expected, &actual) {
                self.stats.divergences += 1;
                return Err(RunError::Divergence(Box::new(d)));
            }
            trace.outcomes.push(actual);
            // An op that failed (and agreed on failing) changed nothing to compare; a kernel
            // that changed state anyway shows at the next successful one, `Check`, or the end.
            let took_effect = !matches!(expected, Outcome::Skipped(_) | Outcome::Err(_));
            let compare_state = matches!(op, Op::Check) || (self.check_after_invalidation && op.invalidates() && took_effect);
            if compare_state {
                self.compare_state(index, op)?;
            }
        }
        if let Some(last) = program.ops.last() {
            self.compare_state(program.ops.len() - 1, last)?;
        }
        Ok(())
    }

    /// Asks both sides every probe the model proposes and compares the answers.
    fn compare_state(&mut self, index: usize, op: &Op) -> Result<(), RunError> {
        let probes = self.model.probes();
        if probes.is_empty() {
            return Ok(());
        }
        let expected = self.model.observe(&probes)?;
        let actual = self.backend.observe(&probes)?;
        self.stats.probes += probes.len() as u64;
        let ctx = Context { model: &self.model, op_index: index, op, backend: self.backend.name() };
        for ((probe, e), a) in probes.iter().zip(&expected).zip(&actual) {
            if let Some(d) = ctx.compare_probe(probe, e, a) {
                self.stats.divergences += 1;
                return Err(RunError::Divergence(Box::new(d)));
            }
        }
        Ok(())
    }
}

/// Runs `program` on a reused backend and on a freshly made one and compares what the
/// backend did: a difference means reset left state behind (a harness bug).
pub fn check_reset<B: Backend>(reused: &mut Runner<B>, fresh: B, program: &Program) -> Result<(), String> {
    let mut fresh = Runner::new(fresh);
    let a = reused.run(program);
    let b = fresh.run(program);
    match (a, b) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Err(RunError::Divergence(a)), Err(RunError::Divergence(b))) if a.op_index == b.op_index && a.actual == b.actual => Ok(()),
        (a, b) => {
            Err(format!("gmemfuzz HARNESS BUG: reset left state behind: reused VM gave\n{}\nfresh VM gave\n{}", describe(&a), describe(&b)))
        }
    }
}

fn describe(r: &Result<Trace, RunError>) -> String {
    match r {
        Ok(t) => format!("{t:?}"),
        Err(e) => e.to_string(),
    }
}
