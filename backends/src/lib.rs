//! gmemfuzz backends: the op vocabulary, the reference model, and the engines that run ops.

pub mod abi;
pub mod backend;
pub mod group;
#[cfg(target_os = "linux")]
pub mod kvm;
pub mod model;
pub mod op;
pub mod outcome;
pub mod profile;
pub mod sim;

pub use backend::{Backend, HarnessError, MmuPages};
pub use group::{Group, Member};
pub use op::{Access, AccessKind, FdArg, GmemId, Op, OpKind, Width};
pub use outcome::{admits_observation, AccessResult, Errno, Observation, Outcome, PageContent, Probe, SkipReason, Verdict};
pub use profile::Profile;
