//! Replays every program in corpus/regressions and checks it shows what its `# expect:`
//! line records: on real KVM when /dev/kvm is usable, else on the model alone (loudly).

use std::path::PathBuf;

use gmemfuzz::config::{open_kvm, OpenError};
use gmemfuzz::repro::cli::regressions_dir;
use gmemfuzz::repro::{observed, parse_document, Expectation};
use gmemfuzz::{RunError, Runner};
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{HarnessError, Profile};

fn regression_files() -> Vec<PathBuf> {
    let dir = regressions_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    files
}

#[test]
fn regressions_show_what_they_record() {
    let files = regression_files();
    assert!(!files.is_empty(), "no regression programs in {}", regressions_dir().display());
    // A configuration that names nothing (GMEMFUZZ_SKIP_OP=bogus) fails the test: falling
    // back to the model would check nothing the injection was meant to show.
    let mut kvm = match open_kvm(0) {
        Ok(b) => Some(Runner::new(b)),
        Err(OpenError::Config(e)) => panic!("regressions: {e}"),
        Err(OpenError::Backend(HarnessError::Unavailable(e))) => {
            eprintln!("SKIPPED (partly) regressions on real KVM: {e}; replaying against the model only, expectations of divergences are NOT checked");
            None
        }
        Err(OpenError::Backend(e)) => panic!("regressions: opening real KVM: {e}"),
    };
    let mut model_only = Runner::new(Model::new(Profile::host_6_18()));
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        let doc = parse_document(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let expect = doc.expect.unwrap_or_else(|| panic!("{}: no `# expect:` line", file.display()));
        // This test replays on the host's VM type; programs of other VM types (the lane's)
        // live in corpus/lane.
        assert_eq!(doc.vm_type.unwrap_or(0), 0, "{}: records another VM type: it belongs in corpus/lane", file.display());
        let (result, on) = match kvm.as_mut() {
            Some(runner) => (runner.run(&doc.program), "kvm"),
            None => (model_only.run(&doc.program), "model"),
        };
        if let Err(RunError::Harness(e)) = &result {
            failures.push(format!("{}: harness error: {e}", file.display()));
            continue;
        }
        let seen = observed(&result).expect("not a harness error");
        let checked = on == "kvm" || expect == Expectation::Clean;
        if checked && seen != expect {
            let detail = result.err().map(|e| e.to_string()).unwrap_or_default();
            failures.push(format!("{}: expected {expect}, {on} showed {seen}\n{detail}", file.display()));
        } else {
            eprintln!("{}: {seen} on {on}", file.display());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The lane's regressions (corpus/lane) each record their VM type: the lane's check boot and
/// `lane --replay` replay them on it, and a file without one would replay on VM type 0,
/// clean whatever the kernel does (how the stale MMIO SPTE once looked fixed on 7.3-rc7).
#[test]
fn lane_regressions_record_their_vm_type() {
    for version in ["6.12.118", "7.2.13", "7.3.0-rc7"] {
        let pinned = gmemfuzz::lane::regressions_for(version).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!pinned.is_empty(), "no lane regression names Linux {version}");
    }
}
