//! What the cargo-fuzz targets call: each target (`fuzz/fuzz_targets/*.rs`) is one line of
//! glue around [`kvm::diff_kvm`], [`model::model_only`] or [`sim::diff_sim`].
//!
//! # A stored finding replays as the program it was
//!
//! A fuzz input is either a text program or generator bytes ([`input`]): input that starts
//! with the text header (`gmemfuzz-program v1`) is parsed as a program, anything else is
//! decoded by the generator under the profile of the kernel being fuzzed. We chose this
//! over a serialized program with a fix-up pass after mutation (wasmtime's `gc_ops`):
//!
//! - the text format already exists, is versioned, and is what people read, edit, minimize
//!   and store as regressions; a second serialization (postcard of `Op`) would tie stored
//!   inputs to the layout of `Op` in the backends crate, which changes with the op vocabulary;
//! - the generator stays the main way inputs are made (it keeps most ops valid and is being
//!   shaped by the probed profile), and libFuzzer's byte mutations on a text seed mostly
//!   give text that still parses (a number or flag changed), which is what a fix-up would do;
//! - seeds and regressions are text programs, so a change to the generator cannot change
//!   them (`tests/seed_corpus.rs` shows it under two sets of op rates).
//!
//! Raw generator bytes are still what libFuzzer saves as `crash-<sha1>`, and they re-decode
//! differently after a generator change or under another profile. So before a target panics
//! on a finding it writes the program that ran, as text with its `vm-type` and `profile`,
//! beside the artifact ([`artifact`]); `gmemfuzz show/replay/minimize/c-repro` read that
//! `.txt` when it is there, and otherwise decode the bytes with the profile of the given
//! VM type (`repro::load`).
//!
//! Environment: `GMEMFUZZ_VM_TYPE` (0 default, 1 = KVM_X86_SW_PROTECTED_VM),
//! `GMEMFUZZ_VERIFY_RESET`, `GMEMFUZZ_SKIP_OP` (read by the KVM backend),
//! `GMEMFUZZ_STATS_DIR` (each process keeps its counters there as JSON, [`stats_file`]).

pub mod artifact;
pub use crate::input;
pub mod kvm;
pub mod model;
pub mod sim;
pub mod stats_file;

pub use kvm::{diff_kvm, diff_kvm_init};
pub use model::model_only;
pub use sim::diff_sim;

use std::time::{Duration, Instant};

use gmemfuzz_backends::{Backend, HarnessError, Profile};
use libfuzzer_sys::Corpus;

use crate::program::Program;
use crate::runner::{RunError, Runner};
use crate::Trace;

/// How often the targets print their stats line (stderr).
const STATS_EVERY: Duration = Duration::from_secs(10);

/// One target's runner, kept across inputs, and when it last printed its stats and
/// saved them to `GMEMFUZZ_STATS_DIR`.
struct Session<B: Backend> {
    runner: Runner<B>,
    last_stats: Instant,
    stats_file: stats_file::Saver,
}

impl<B: Backend> Session<B> {
    fn new(runner: Runner<B>, target: &'static str, at_exit: extern "C" fn()) -> Session<B> {
        Session { runner, last_stats: Instant::now(), stats_file: stats_file::Saver::new(target, at_exit) }
    }

    fn print_stats_now_and_then(&mut self, target: &str) {
        if self.last_stats.elapsed() >= STATS_EVERY {
            eprintln!("gmemfuzz {target} stats: {}", self.runner.stats);
            self.last_stats = Instant::now();
        }
        self.stats_file.now_and_then(&self.runner.stats);
    }
}

/// An input that is about to crash the target: enough to save what ran beside libFuzzer's
/// artifact of it.
pub struct Crash<'a> {
    pub data: &'a [u8],
    pub program: &'a Program,
    pub profile: &'a Profile,
}

impl Crash<'_> {
    /// Saves the program as text beside the artifact (see [`artifact`]), then panics with
    /// `message` so that libFuzzer saves the input.
    pub fn report(&self, message: &str) -> ! {
        let path = artifact::text_path(std::env::args(), self.data);
        match artifact::save(&path, self.program, self.profile, message) {
            Ok(()) => eprintln!("gmemfuzz: the program that ran is in {} (gmemfuzz replay {0})", path.display()),
            Err(e) => eprintln!("gmemfuzz: could not write the program to {}: {e}", path.display()),
        }
        panic!("{message}");
    }
}

/// Handles a run's result the way a fuzz target must: a divergence or harness bug saves
/// the program and panics (libFuzzer saves the input), a host resource problem skips it.
fn settle(result: Result<Trace, RunError>, crash: Crash) -> Corpus {
    match result {
        Ok(_) => Corpus::Keep,
        Err(RunError::Divergence(d)) => crash.report(&d.to_string()),
        Err(RunError::Harness(HarnessError::Bug(msg))) => crash.report(&format!("gmemfuzz HARNESS BUG (not a kernel finding): {msg}")),
        Err(RunError::Harness(e)) => {
            eprintln!("gmemfuzz: input skipped: {e}");
            Corpus::Reject
        }
    }
}
