//! `GMEMFUZZ_STATS_DIR`: each fuzzing process keeps its counters (programs, known bugs, op
//! kinds run) in `<dir>/<target>-<pid>.json`, so that `gmemfuzz nightly` can sum what the
//! processes of a fork-mode run executed (libFuzzer deletes their logs). The file is
//! rewritten every second, before a finding aborts the process, and at exit (libFuzzer
//! ends a run with `exit`); what a process did in its last second before a crash that is
//! not a finding (a timeout, a signal) is lost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gmemfuzz_backends::OpKind;

use crate::stats::Stats;

const SAVE_EVERY: Duration = Duration::from_secs(1);

pub const ENV: &str = "GMEMFUZZ_STATS_DIR";

/// Where one process saves its stats; inert without `GMEMFUZZ_STATS_DIR`.
pub struct Saver {
    path: Option<PathBuf>,
    last: Instant,
}

impl Saver {
    /// `at_exit` saves the target's stats when the process exits (it must not block: it
    /// runs inside `exit`).
    pub fn new(target: &str, at_exit: extern "C" fn()) -> Saver {
        let path = std::env::var_os(ENV).map(|dir| PathBuf::from(dir).join(format!("{target}-{}.json", std::process::id())));
        if path.is_some() {
            // SAFETY: `at_exit` is a plain `extern "C" fn()` that lives for the whole
            // program; atexit only records it. A failed registration (non-zero) costs the
            // last second of counts, nothing else.
            unsafe { libc::atexit(at_exit) };
        }
        Saver { path, last: Instant::now() }
    }

    pub fn now_and_then(&mut self, stats: &Stats) {
        if self.last.elapsed() >= SAVE_EVERY {
            self.save(stats);
        }
    }

    /// Writes the file (through a rename, so a reader never sees half of it).
    pub fn save(&mut self, stats: &Stats) {
        self.last = Instant::now();
        let Some(path) = &self.path else { return };
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, to_json(stats).to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}

/// `{"programs": N, "divergences": N, "known": N, "ops": {"punch": [ran, errors, skipped], ...}}`.
pub fn to_json(stats: &Stats) -> serde_json::Value {
    let ops: serde_json::Map<String, serde_json::Value> = OpKind::ALL
        .into_iter()
        .map(|kind| {
            let (ran, skipped) = stats.ops.get(&kind).copied().unwrap_or_default();
            let errors = stats.errors.get(&kind).copied().unwrap_or_default();
            (kind.name().to_string(), serde_json::json!([ran, errors, skipped]))
        })
        .collect();
    serde_json::json!({
        "programs": stats.programs,
        "divergences": stats.divergences,
        "known": stats.known,
        "ops": ops,
    })
}
