//! What the cargo-fuzz targets call: each target is a few lines of glue around these.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, HarnessError};

use crate::program::Program;
use crate::runner::{check_reset, RunError, Runner};
use crate::stats::Stats;

/// Whether the fuzzer should keep an input in its corpus.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Reject,
}

/// How often the targets print their stats line (stderr).
const STATS_EVERY: Duration = Duration::from_secs(10);

struct Session {
    runner: Runner<KvmBackend>,
    last_stats: Instant,
    verify_reset: bool,
}

static KVM_SESSION: Mutex<Option<Session>> = Mutex::new(None);

fn kvm_session() -> std::sync::MutexGuard<'static, Option<Session>> {
    let mut guard = KVM_SESSION.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        match KvmBackend::from_env(vm_type()) {
            Ok(backend) => {
                eprintln!("gmemfuzz: diff_kvm on {}", backend.profile().summary());
                let verify_reset = std::env::var_os("GMEMFUZZ_VERIFY_RESET").is_some();
                let mut runner = Runner::new(backend);
                runner.filter_known = true;
                *guard = Some(Session { runner, last_stats: Instant::now(), verify_reset });
            }
            Err(e) => {
                eprintln!("gmemfuzz: cannot fuzz real KVM here: {e}");
                eprintln!("gmemfuzz: diff_kvm needs a readable /dev/kvm with KVM_CAP_GUEST_MEMFD; the `model` target runs anywhere.");
                std::process::exit(2);
            }
        }
    }
    guard
}

/// The VM type to fuzz: GMEMFUZZ_VM_TYPE (0 by default; 1 = KVM_X86_SW_PROTECTED_VM).
pub fn vm_type() -> u64 {
    std::env::var("GMEMFUZZ_VM_TYPE").ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn maybe_print(stats: &Stats, last: &mut Instant, target: &str) {
    if last.elapsed() >= STATS_EVERY {
        eprintln!("gmemfuzz {target} stats: {stats}");
        *last = Instant::now();
    }
}

/// Handles a run's result the way a fuzz target must: a divergence or harness bug panics
/// (libFuzzer saves the input), a host resource problem skips the input.
fn settle(result: Result<crate::Trace, RunError>) -> Verdict {
    match result {
        Ok(_) => Verdict::Keep,
        Err(RunError::Divergence(d)) => panic!("{d}"),
        Err(RunError::Harness(HarnessError::Bug(msg))) => panic!("gmemfuzz HARNESS BUG (not a kernel finding): {msg}"),
        Err(RunError::Harness(e)) => {
            eprintln!("gmemfuzz: input skipped: {e}");
            Verdict::Reject
        }
    }
}

/// The `diff_kvm` target: the model against real KVM.
pub fn diff_kvm(data: &[u8]) -> Verdict {
    let mut guard = kvm_session();
    let session = guard.as_mut().expect("made above");
    let Some(program) = Program::from_bytes_for(data, session.runner.backend.profile()) else {
        return Verdict::Reject;
    };
    let verdict = if session.verify_reset {
        let fresh = KvmBackend::from_env(vm_type()).unwrap_or_else(|e| panic!("gmemfuzz HARNESS BUG: second VM: {e}"));
        if let Err(msg) = check_reset(&mut session.runner, fresh, &program) {
            panic!("{msg}");
        }
        Verdict::Keep
    } else {
        settle(session.runner.run(&program))
    };
    maybe_print(&session.runner.stats, &mut session.last_stats, "diff_kvm");
    verdict
}

struct ModelSession {
    runner: Runner<Model>,
    last_stats: Instant,
}

static MODEL_SESSION: Mutex<Option<ModelSession>> = Mutex::new(None);

/// The `model` target: the model against a second copy of itself, which checks that the
/// model is deterministic, never panics, and keeps its own invariants (`Model::check`).
pub fn model_only(data: &[u8]) -> Verdict {
    let Some(program) = Program::from_bytes(data) else {
        return Verdict::Reject;
    };
    let mut guard = MODEL_SESSION.lock().unwrap_or_else(|e| e.into_inner());
    let session = guard.get_or_insert_with(|| ModelSession {
        runner: Runner::new(Model::new(gmemfuzz_backends::Profile::host_6_18())),
        last_stats: Instant::now(),
    });
    let verdict = settle(session.runner.run(&program));
    if let Err(broken) = session.runner.model.check_invariants() {
        panic!("gmemfuzz MODEL BUG: invariant broken after {:?}: {broken}", program.ops);
    }
    maybe_print(&session.runner.stats, &mut session.last_stats, "model");
    verdict
}
