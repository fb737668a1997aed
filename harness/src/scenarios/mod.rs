//! Scenarios taken from the kernel's own tests (tools/testing/selftests/kvm/guest_memfd_test.c,
//! set_memory_region_test.c, private_mem_conversions_test.c), from its code and from probes:
//! text programs in `corpus/scenarios/*.txt` whose every op says the outcome it must have on
//! a kernel of a given `Profile` (the format: `file`). Where kernels differ (the
//! guest_memfd flags a VM type accepts, guest_memfd-only slots, an errno), the expectation
//! follows from a probed profile field, never from a version string; a scenario that needs
//! what a kernel lacks says so in its header and is not made for it.
//!
//! The files are compiled in (`build.rs` lists the directory), so every copy of gmemfuzz,
//! the lane's too, has the same ones. `Scenario::check` runs one in lockstep and asserts
//! every outcome on both sides: `harness/tests/scenarios.rs` runs every file on the model
//! (for each assumed profile it is made for) and on the host's KVM where it has
//! guest_memfd; `gmemfuzz scenarios` runs them on a kernel's KVM, in the lane as well.

pub mod file;

use gmemfuzz_backends::outcome::Outcome;
use gmemfuzz_backends::{Backend, Op, Profile};

pub use file::ScenarioFile;

use crate::program::Program;
use crate::repro::text::op_line;
use crate::runner::{Event, Runner};

/// Where the scenario files are, from the workspace root.
pub const DIR: &str = "corpus/scenarios";

/// Every `corpus/scenarios/*.txt` as (name, text), by name: written by `build.rs`.
const FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/scenario_files.rs"));

/// A scenario made for one profile: its ops, each with the outcome it must have.
pub struct Scenario {
    /// The file's name without `.txt`.
    pub name: String,
    /// The file, for messages (`corpus/scenarios/NAME.txt`).
    pub path: String,
    /// The profile the expectations are for (its VM type included: 0 on the host kernel,
    /// 1 = KVM_X86_SW_PROTECTED_VM in the test-kernel lane).
    pub profile: Profile,
    /// Where the expectation comes from.
    pub source: String,
    pub steps: Vec<(Op, Outcome)>,
    /// The line of each step in the file.
    pub lines: Vec<usize>,
}

impl Scenario {
    pub fn program(&self) -> Program {
        Program::new(self.steps.iter().map(|(op, _)| op.clone()).collect())
    }

    /// Runs the scenario in lockstep on `runner` and checks that the model and the backend
    /// both gave every step its expected outcome: the one check the tests and `gmemfuzz
    /// scenarios` share. A failure names the file and line of the step.
    pub fn check<B: Backend>(&self, runner: &mut Runner<B>) -> Result<(), String> {
        let mut failure: Option<String> = None;
        let backend = runner.backend.name().to_string();
        let mut ran = 0;
        let run = runner.run_with(&self.program(), &mut |event: &Event<'_>| {
            let why = match *event {
                Event::Op { index, op, expected, actual } => {
                    ran += 1;
                    let want = &self.steps[index].1;
                    let at = format!("{}:{}: {} step {index} ({})", self.path, self.lines[index], self.name, op_line(op));
                    if expected.has_unknown() {
                        Some(format!("{at}: the model must predict every step, but said {expected}"))
                    } else if expected != want {
                        Some(format!("{at}: expected {want}, the model said {expected}"))
                    } else if actual != want {
                        Some(format!("{at}: expected {want}, {backend} did {actual}"))
                    } else {
                        None
                    }
                }
                _ => None,
            };
            if failure.is_none() {
                failure = why;
            }
        });
        if let Some(why) = failure {
            return Err(format!("{why} [{}]", self.source));
        }
        run.map_err(|e| format!("{}: {}: {e}", self.path, self.name))?;
        if ran != self.steps.len() {
            return Err(format!("{}: {}: {ran} of {} steps ran", self.path, self.name, self.steps.len()));
        }
        Ok(())
    }
}

/// Every scenario file, parsed; an error names the file and line.
pub fn files() -> Result<Vec<ScenarioFile>, String> {
    FILES
        .iter()
        .map(|(name, text)| {
            let path = format!("{DIR}/{name}.txt");
            ScenarioFile::parse(name, &path, text).map_err(|e| format!("{path}:{}:{}: {}", e.line, e.column, e.message))
        })
        .collect()
}

impl ScenarioFile {
    /// The scenario this file makes for `profile`, if it is made for it.
    pub fn for_profile(&self, profile: &Profile) -> Result<Option<Scenario>, String> {
        if !self.applies_to(profile) {
            return Ok(None);
        }
        let steps = self.steps_for(profile).map_err(|e| format!("{}:{}:{}: {}", self.path, e.line, e.column, e.message))?;
        Ok(Some(Scenario {
            name: self.name.clone(),
            path: self.path.clone(),
            profile: profile.clone(),
            source: self.source.clone(),
            steps,
            lines: self.steps.iter().map(|(line, _)| *line).collect(),
        }))
    }
}

/// The profiles scenarios are written out for where no kernel is probed: the host's 6.18
/// (VM type 0), and the lane's 6.12 and 7.2 (VM type 1).
pub fn assumed_profiles() -> Vec<Profile> {
    vec![Profile::host_6_18(), Profile::sw_protected_6_12(), Profile::sw_protected_7_2()]
}

/// Every scenario for every assumed profile (a name recurs once per profile it is made for).
pub fn all() -> Vec<Scenario> {
    assumed_profiles().iter().flat_map(for_profile).collect()
}

/// The scenarios for a kernel of `profile`, with the outcomes it must give. The files are
/// compiled in and `harness/tests/scenarios.rs` reads each: one that does not read panics
/// here, naming its file and line.
pub fn for_profile(profile: &Profile) -> Vec<Scenario> {
    let files = files().unwrap_or_else(|e| panic!("{e}"));
    files.iter().filter_map(|f| f.for_profile(profile).unwrap_or_else(|e| panic!("{e}"))).collect()
}
