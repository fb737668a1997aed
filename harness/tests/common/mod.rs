//! Shared by the integration tests: opening real KVM or skipping loudly, and a model with
//! one deliberate bug.
#![allow(dead_code)] // each test crate uses part of this

use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, HarnessError, Observation, Op, OpKind, Outcome, Probe, Profile};

/// Real KVM, or `None` after saying loudly why this test does not run here. Every test
/// that does run records its name, so CI can say how many KVM tests executed.
pub fn kvm_or_skip(test: &str) -> Option<KvmBackend> {
    kvm_of_type_or_skip(test, 0)
}

/// As [`kvm_or_skip`], for a VM of `vm_type` (1: software-protected, which the lane's
/// kernels have and the host's does not).
pub fn kvm_of_type_or_skip(test: &str, vm_type: u64) -> Option<KvmBackend> {
    match KvmBackend::new(vm_type) {
        Ok(backend) => {
            // Inside the lane (`lane::run_test_binaries`) the line says where it ran.
            match std::env::var(gmemfuzz::lane::TESTS_WHERE) {
                Ok(place) => record_ran(&format!("in-lane {place}: {test}")),
                Err(_) => record_ran(test),
            }
            Some(backend)
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: real KVM (VM type {vm_type}): {e}");
            None
        }
    }
}

/// Whether this test binary runs inside the lane (`lane::run_test_binaries`).
pub fn in_lane() -> bool {
    std::env::var_os(gmemfuzz::lane::TESTS_WHERE).is_some()
}

/// Appends `line` to the log of the KVM tests that ran (`target/tmp/kvm-tests-ran.log`),
/// which `.ci/run` counts: a test's name where it ran on the host's KVM, `in-lane <kernel>:
/// <name>` where it ran inside the lane, `lane: <kernel>` for the lane's own test.
pub fn record_ran(line: &str) {
    use std::io::Write;
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(KVM_TESTS_LOG);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
        // One write of the whole line: tests run at once, and `writeln!` may write the
        // name and the newline apart, so two names could end on one line.
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

/// The log's file name under CARGO_TARGET_TMPDIR.
pub const KVM_TESTS_LOG: &str = "kvm-tests-ran.log";

/// The model with one deliberate bug: ops of one kind report success but do nothing.
pub struct SkipsOps {
    pub inner: Model,
    pub skipped: OpKind,
}

impl SkipsOps {
    /// The host-profile model that skips `skipped`.
    pub fn new(skipped: OpKind) -> SkipsOps {
        SkipsOps { inner: Model::new(Profile::host_6_18()), skipped }
    }
}

impl Backend for SkipsOps {
    fn name(&self) -> &str {
        "buggy-model"
    }
    fn profile(&self) -> &Profile {
        self.inner.profile()
    }
    fn reset(&mut self) -> Result<(), HarnessError> {
        self.inner.reset()
    }
    fn apply(&mut self, op: &Op) -> Result<Outcome, HarnessError> {
        if op.kind() == self.skipped {
            return Ok(Outcome::Ok);
        }
        match op {
            // A group's members in order, the skipped kind skipped there too, as the KVM
            // backend's fault injection does.
            Op::Group(group) if group.members.iter().any(|m| m.op.kind() == self.skipped) => {
                let mut out = Vec::new();
                for m in &group.members {
                    out.push((0..m.repeat).map(|_| self.apply(&m.op)).collect::<Result<Vec<_>, _>>()?);
                }
                Ok(Outcome::Group(out))
            }
            op => self.inner.apply(op),
        }
    }
    fn observe(&mut self, probes: &[Probe]) -> Result<Vec<Option<Observation>>, HarnessError> {
        self.inner.observe(probes)
    }
}
