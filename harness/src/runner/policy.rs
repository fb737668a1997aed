//! When the runner compares state: the one copy of the rule. The runner follows it, and so
//! does everything that reads the runner's events (replay, the C reproducer).

use gmemfuzz_backends::{Op, Outcome};

pub use crate::oracle::CompareAt;

/// Whether to compare state right after `op`, whose outcome (agreed by both sides) was
/// `outcome`: the backend's, since the model's may be unknown.
///
/// Always after `check`. After an op that must have invalidated something, when
/// `after_invalidation` is on, and only if it took effect: an op that failed (and agreed on
/// failing) or was skipped changed nothing, and a kernel that changed state anyway shows at
/// the next comparison, at the latest at the end of the program.
pub fn compare_after(op: &Op, outcome: &Outcome, after_invalidation: bool) -> bool {
    let took_effect = !matches!(outcome, Outcome::Skipped(_) | Outcome::Err(_));
    matches!(op, Op::Check) || (after_invalidation && op.invalidates() && took_effect)
}

/// Whether to compare state once more after the last op: always, unless the comparison right
/// after it already looked at this very state.
pub fn compare_at_end(compared_after_last: bool) -> bool {
    !compared_after_last
}
