//! Counters for a fuzzing session: which op kinds ran and how they ended.

use std::collections::BTreeMap;
use std::fmt;

use gmemfuzz_backends::{Op, OpKind, Outcome};

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
        let unreached = self.unreached();
        if !unreached.is_empty() {
            write!(f, " | unreached: {}", unreached.iter().map(|k| k.name()).collect::<Vec<_>>().join(","))?;
        }
        Ok(())
    }
}
