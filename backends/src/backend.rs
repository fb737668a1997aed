//! The one trait every engine implements: the model, real KVM, simulations.

use crate::op::Op;
use crate::outcome::{Observation, Outcome, Probe};
use crate::profile::Profile;

/// A failure of the harness or the host, not of the kernel under test: the program's
/// result means nothing and must not be reported as a divergence.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("not available here: {0}")]
    Unavailable(String),
    #[error("host resource problem: {0}")]
    Resource(String),
    #[error("harness bug: {0}")]
    Bug(String),
}

pub trait Backend {
    fn name(&self) -> &str;
    fn profile(&self) -> &Profile;
    /// Return to the state before any op: no program slots, files, mappings or attributes.
    fn reset(&mut self) -> Result<(), HarnessError>;
    /// Seconds `reset` spent so far, by part, where the backend times them.
    fn reset_phases(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    /// How many times reset's costly parts ran so far, where the backend counts them.
    fn reset_counts(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Perform one op.
    fn apply(&mut self, op: &Op) -> Result<Outcome, HarnessError>;
    /// Answer questions about state, one answer per probe, in order (a backend may batch
    /// them, e.g. all guest reads in one KVM_RUN). The model answers `None` where the
    /// kernel may legitimately show either.
    fn observe(&mut self, probes: &[Probe]) -> Result<Vec<Option<Observation>>, HarnessError>;
    /// The pages the kernel's MMU maps for the current VM now, by size, where the backend
    /// can read them (KVM's VM statistics); for the stats line, never compared.
    fn mmu_pages(&self) -> Option<MmuPages> {
        None
    }
}

/// A VM's MMU page counts at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmuPages {
    /// Which VM: a new one (its counters start at 0) has a new number.
    pub vm: u64,
    /// Mapped 4 KiB, 2 MiB and 1 GiB pages.
    pub pages: [u64; 3],
}
