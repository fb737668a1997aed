//! The `diff_sim` target: the model against the simulated platforms (TDX-like and
//! SNP-like, no bug injected), on the software-protected 6.12 profile (attributes, so
//! private/shared conversion runs) and on the 6.18 host profile.

use std::sync::Mutex;

use gmemfuzz_backends::sim::{Broken, InjectedBug, SimBackend};
use gmemfuzz_backends::{Backend, Profile};

use libfuzzer_sys::Corpus;

use super::stats_file::Saver;
use super::{input, Crash};
use crate::oracle::Divergence;
use crate::program::Program;
use crate::runner::{RunError, Runner};

/// The profiles the simulation runs under.
pub fn profiles() -> [Profile; 2] {
    [Profile::sw_protected_6_12(), Profile::host_6_18()]
}

/// One simulated backend per platform ("tdx", "snp").
pub fn sim_backend(platform: &str, profile: Profile, bug: Option<InjectedBug>) -> SimBackend {
    match platform {
        "tdx" => SimBackend::tdx(profile, bug),
        "snp" => SimBackend::snp(profile, bug),
        other => panic!("gmemfuzz HARNESS BUG: no simulated platform {other:?}"),
    }
}

/// A finding of one simulated run.
#[derive(Debug)]
pub enum SimFinding {
    /// The model and the simulation disagreed.
    Divergence(Box<Divergence>),
    /// A platform invariant broke.
    Invariant(Broken),
}

impl std::fmt::Display for SimFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimFinding::Divergence(d) => write!(f, "{d}"),
            SimFinding::Invariant(v) => write!(f, "gmemfuzz PLATFORM INVARIANT broken: {v}"),
        }
    }
}

/// Runs a program on a simulated backend; the invariant check comes after the run, so a
/// violation is found even when the runner stopped early or diverged later.
pub fn run_sim(runner: &mut Runner<SimBackend>, program: &Program) -> Result<(), SimFinding> {
    let result = runner.run(program);
    if let Some(v) = runner.backend.invariant_violation() {
        return Err(SimFinding::Invariant(v));
    }
    match result {
        Ok(_) => Ok(()),
        Err(RunError::Divergence(d)) => Err(SimFinding::Divergence(d)),
        Err(RunError::Harness(e)) => panic!("gmemfuzz HARNESS BUG (not a finding): the simulation failed: {e}"),
    }
}

/// The runners, one per profile and platform, and where the first one's stats are saved
/// (every program runs on it).
struct SimSession {
    runners: Vec<Runner<SimBackend>>,
    stats_file: Option<Saver>,
}

static SIM_SESSION: Mutex<SimSession> = Mutex::new(SimSession { runners: Vec::new(), stats_file: None });

/// Saves the stats at exit (`GMEMFUZZ_STATS_DIR`); skipped when the session is locked.
extern "C" fn save_stats_at_exit() {
    if let Ok(mut guard) = SIM_SESSION.try_lock() {
        let SimSession { runners, stats_file } = &mut *guard;
        if let (Some(saver), Some(first)) = (stats_file, runners.first()) {
            saver.save(&first.stats);
        }
    }
}

/// The `diff_sim` target: saves the program and panics on a divergence or a broken
/// platform invariant (the saved profile is that of the run that found it).
pub fn diff_sim(data: &[u8]) -> Corpus {
    // Generated for the profile with attributes, so that conversions run at full rate; the
    // program runs under every profile.
    let Some(program) = input::decode(data, &Profile::sw_protected_6_12()) else {
        return Corpus::Reject;
    };
    let mut guard = SIM_SESSION.lock().unwrap_or_else(|e| e.into_inner());
    let SimSession { runners, stats_file } = &mut *guard;
    if runners.is_empty() {
        for profile in profiles() {
            for platform in ["tdx", "snp"] {
                runners.push(Runner::new(sim_backend(platform, profile.clone(), None)));
            }
        }
    }
    let saver = stats_file.get_or_insert_with(|| Saver::new("diff_sim", save_stats_at_exit));
    for i in 0..runners.len() {
        if let Err(finding) = run_sim(&mut runners[i], &program) {
            // A finding aborts the process: keep its counts first.
            saver.save(&runners[0].stats);
            let profile = runners[i].backend.profile().clone();
            Crash { data, program: &program, profile: &profile }.report(&finding.to_string());
        }
    }
    saver.now_and_then(&runners[0].stats);
    Corpus::Keep
}
