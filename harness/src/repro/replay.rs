//! Replaying a program op by op, showing what the model predicted and what the backend did.
//!
//! One run of the runner, the loop the fuzzer uses: the trace is its events, the verdict its
//! result, so the two cannot disagree.

use std::fmt::Write as _;

use gmemfuzz_backends::{Backend, HarnessError, Outcome};

use crate::oracle::Subject;
use crate::program::Program;
use crate::runner::{CompareAt, Event, RunError, Runner, Trace};

use super::text::op_line;

/// One op of a step-by-step replay.
#[derive(Clone, Debug)]
pub struct Step {
    pub line: String,
    /// The model's prediction.
    pub model: Outcome,
    /// What the backend did (the model's skip where it skipped the op: nothing was sent).
    pub backend: Outcome,
    /// State probes made after the op (and, for the last op, at the end of the program).
    pub probes: usize,
}

/// Collects the runner's events into steps.
#[derive(Default)]
struct Steps {
    steps: Vec<Step>,
    end_probes: usize,
}

impl Steps {
    fn event(&mut self, event: &Event<'_>) {
        match *event {
            Event::Op { op, expected, actual, .. } => {
                self.steps.push(Step { line: op_line(op), model: expected.clone(), backend: actual.clone(), probes: 0 })
            }
            Event::State { at: CompareAt::AfterOp, probes, .. } => {
                if let Some(step) = self.steps.last_mut() {
                    step.probes += probes.len();
                }
            }
            Event::State { at: CompareAt::End, probes, .. } => self.end_probes += probes.len(),
            Event::Diverged(_) => {}
        }
    }
}

/// The verdict and the trace, as `gmemfuzz replay` prints them.
pub struct Report {
    pub verdict: Result<Trace, RunError>,
    pub steps: Vec<Step>,
    /// Probes of the end-of-program state comparison (0: none was made).
    pub end_probes: usize,
}

impl Report {
    pub fn run<B: Backend>(runner: &mut Runner<B>, program: &Program) -> Result<Report, HarnessError> {
        let mut steps = Steps::default();
        let verdict = runner.run_with(program, &mut |e: &Event<'_>| steps.event(e));
        if let Err(RunError::Harness(e)) = verdict {
            return Err(e);
        }
        Ok(Report { verdict, steps: steps.steps, end_probes: steps.end_probes })
    }

    pub fn diverged(&self) -> bool {
        matches!(self.verdict, Err(RunError::Divergence(_)))
    }

    pub fn render(&self, backend: &str) -> String {
        let diverged = match &self.verdict {
            Err(RunError::Divergence(d)) => Some(d),
            _ => None,
        };
        let mut s = String::new();
        for (i, step) in self.steps.iter().enumerate() {
            let mark = if diverged.is_some_and(|d| d.op_index == i && !self.at_end()) { ">>>" } else { "   " };
            let _ = writeln!(s, "{mark} #{i:<3} {}", step.line);
            let model = &step.model;
            let actual = match &step.backend {
                Outcome::Skipped(_) => "(not sent: skipped as the model says)".to_string(),
                a => a.to_string(),
            };
            let _ = writeln!(s, "         model: {model}");
            let _ = writeln!(s, "         {:<6} {actual}", format!("{backend}:"));
            if step.probes > 0 {
                let _ = writeln!(s, "         state compared after the op ({} probes)", step.probes);
            }
            if let Some(d) = diverged.filter(|d| d.op_index == i && !self.at_end() && matches!(d.subject, Subject::Probe { .. })) {
                let _ = writeln!(s, "         state differs after the op: {}: model {}, {} {}", d.subject, d.expected, d.backend, d.actual);
            }
        }
        if self.end_probes > 0 || self.at_end() {
            let mark = if self.at_end() { ">>>" } else { "   " };
            let _ = writeln!(s, "{mark} end  state compared at the end of the program ({} probes)", self.end_probes);
        }
        match &self.verdict {
            Ok(_) => {
                let _ = writeln!(s, "CLEAN: the model and {backend} agree on all {} ops", self.steps.len());
            }
            Err(e) => {
                let _ = writeln!(s, "{e}");
            }
        }
        s
    }

    /// Whether the divergence is the end-of-program comparison's.
    fn at_end(&self) -> bool {
        matches!(&self.verdict, Err(RunError::Divergence(d)) if d.at_end())
    }
}
