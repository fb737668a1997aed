//! `gmemfuzz run --kcov` where the kernel has no KCOV (the host here): one line says so and
//! the run goes on, unguided, with every program still checked. (Guided runs with KCOV are
//! shown by the lane test, inside a kernel that has it.)

mod common;

#[test]
fn run_without_kcov_says_so_once_and_goes_on() {
    if common::kvm_or_skip("run_without_kcov_says_so_once_and_goes_on").is_none() {
        return;
    }
    if std::path::Path::new(gmemfuzz_backends::abi::kcov::PATH).exists() {
        eprintln!("SKIPPED run_without_kcov_says_so_once_and_goes_on: this kernel has KCOV");
        return;
    }
    let pcs = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-kcov-pcs.txt");
    let _ = std::fs::remove_file(&pcs);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gmemfuzz"))
        .args(["run", "--programs", "50", "--kcov", "guide", "--kcov-pcs"])
        .arg(&pcs)
        .output()
        .expect("running gmemfuzz");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("no KCOV here").count(), 1, "{stderr}");
    assert!(stdout.contains("programs 50 divergences 0"), "{stdout}");
    assert!(!pcs.exists(), "no coverage, no PCs file");
}
