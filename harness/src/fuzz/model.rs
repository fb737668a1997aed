//! The `model` target: the model against a second copy of itself, which checks that the
//! model is deterministic, never panics, and keeps its own invariants after every op
//! (`Model::check_invariants`, through `Runner::check_model_invariants`).

use std::sync::Mutex;

use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::Profile;
use libfuzzer_sys::Corpus;

use super::{input, settle, Crash, Session};
use crate::runner::Runner;

static MODEL_SESSION: Mutex<Option<Session<Model>>> = Mutex::new(None);

/// The profile the model target runs under: the host kernel's.
fn profile() -> Profile {
    Profile::host_6_18()
}

/// Saves the stats at exit (`GMEMFUZZ_STATS_DIR`); skipped when the session is locked
/// (the process is exiting from inside the target).
extern "C" fn save_stats_at_exit() {
    if let Ok(mut guard) = MODEL_SESSION.try_lock() {
        if let Some(s) = guard.as_mut() {
            s.stats_file.save(&s.runner.stats);
        }
    }
}

/// The `model` target.
pub fn model_only(data: &[u8]) -> Corpus {
    let profile = profile();
    let Some(program) = input::decode(data, &profile) else {
        return Corpus::Reject;
    };
    let mut guard = MODEL_SESSION.lock().unwrap_or_else(|e| e.into_inner());
    let session = guard.get_or_insert_with(|| {
        let mut runner = Runner::new(Model::new(profile.clone()));
        runner.check_model_invariants = true;
        Session::new(runner, "model", save_stats_at_exit)
    });
    let crash = Crash { data, program: &program, profile: &profile };
    let result = session.runner.run(&program);
    if result.is_err() {
        // A finding aborts the process: keep its counts first.
        session.stats_file.save(&session.runner.stats);
    }
    let corpus = settle(result, crash);
    session.print_stats_now_and_then("model");
    corpus
}
