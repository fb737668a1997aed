//! Replaying a program op by op, showing what the model predicted and what the backend did.
//!
//! The verdict comes from `Runner::run` (the same code the fuzzer uses). The per-op trace
//! comes from a second, step-by-step run that does what the runner does (model first, the
//! backend unless the model skipped, state probes after invalidating ops) and records
//! every outcome on the way.

use std::fmt::Write as _;

use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, HarnessError, Op, Outcome};

use crate::oracle::Context;
use crate::program::Program;
use crate::runner::{RunError, Runner, Trace};

use super::text::op_line;

/// One op of a step-by-step replay.
#[derive(Clone, Debug)]
pub struct Step {
    pub line: String,
    /// `None` once the model has lost track.
    pub model: Option<Outcome>,
    /// `None` when the op was not sent (the model skipped it).
    pub backend: Option<Outcome>,
    /// A state probe after the op disagreed: what it was.
    pub probe_mismatch: Option<String>,
}

/// Replays `program` from a reset `backend` op by op, up to the end or the first difference.
pub fn steps<B: Backend>(backend: &mut B, program: &Program) -> Result<Vec<Step>, HarnessError> {
    backend.reset()?;
    let mut model = Model::new(backend.profile().clone());
    let mut out = Vec::new();
    for (index, op) in program.ops.iter().enumerate() {
        model.set_op_index(index);
        let expected = model.apply(op)?;
        let tracked = true;
        let actual = match &expected {
            Outcome::Skipped(_) => None,
            _ => Some(backend.apply(op)?),
        };
        let mut step =
            Step { line: op_line(op), model: tracked.then_some(expected.clone()), backend: actual.clone(), probe_mismatch: None };
        let differs = tracked && actual.as_ref().is_some_and(|a| !expected.admits(a).agrees());
        let probe = tracked && !differs && !matches!(expected, Outcome::Skipped(_)) && (op.invalidates() || matches!(op, Op::Check));
        if probe {
            let probes = model.probes();
            if !probes.is_empty() {
                let e = model.observe(&probes)?;
                let a = backend.observe(&probes)?;
                let ctx = Context { model: &model, op_index: index, op, backend: backend.name() };
                step.probe_mismatch = probes
                    .iter()
                    .zip(&e)
                    .zip(&a)
                    .find_map(|((p, e), a)| ctx.compare_probe(p, e, a))
                    .map(|d| format!("{}: model {}, {} {}", d.subject, d.expected, d.backend, d.actual));
            }
        }
        let stop = differs || step.probe_mismatch.is_some();
        out.push(step);
        if stop {
            break;
        }
    }
    Ok(out)
}

/// The verdict and the trace, as `gmemfuzz replay` prints them.
pub struct Report {
    pub verdict: Result<Trace, RunError>,
    pub steps: Vec<Step>,
}

impl Report {
    pub fn run<B: Backend>(runner: &mut Runner<B>, program: &Program) -> Result<Report, HarnessError> {
        let verdict = runner.run(program);
        if let Err(RunError::Harness(e)) = verdict {
            return Err(e);
        }
        let steps = steps(&mut runner.backend, program)?;
        Ok(Report { verdict, steps })
    }

    pub fn diverged(&self) -> bool {
        matches!(self.verdict, Err(RunError::Divergence(_)))
    }

    pub fn render(&self, backend: &str) -> String {
        let diverging = match &self.verdict {
            Err(RunError::Divergence(d)) => Some(d.op_index),
            _ => None,
        };
        let mut s = String::new();
        for (i, step) in self.steps.iter().enumerate() {
            let mark = if Some(i) == diverging { ">>>" } else { "   " };
            let _ = writeln!(s, "{mark} #{i:<3} {}", step.line);
            let model = step.model.as_ref().map_or("(lost track: not predicted)".to_string(), |m| m.to_string());
            let actual = step.backend.as_ref().map_or("(not sent: skipped as the model says)".to_string(), |a| a.to_string());
            let _ = writeln!(s, "         model: {model}");
            let _ = writeln!(s, "         {:<6} {actual}", format!("{backend}:"));
            if let Some(p) = &step.probe_mismatch {
                let _ = writeln!(s, "         state differs after the op: {p}");
            }
        }
        match &self.verdict {
            Ok(_) => {
                let _ = writeln!(s, "CLEAN: the model and {backend} agree on all {} ops", self.steps.len());
            }
            Err(RunError::Divergence(d)) => {
                let _ = writeln!(s, "{d}");
                if self.steps.len() != d.op_index + 1 {
                    let _ = writeln!(
                        s,
                        "note: the step-by-step replay stopped at op #{} but the runner diverged at op #{}: the kernel is not deterministic here",
                        self.steps.len().saturating_sub(1),
                        d.op_index
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(s, "{e}");
            }
        }
        s
    }
}
