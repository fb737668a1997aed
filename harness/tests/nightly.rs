//! `gmemfuzz nightly` end to end on real KVM: a healthy night exits 0 and reports no new
//! finding; a night with an injected fault (`GMEMFUZZ_SKIP_OP=punch`) exits 1 with exactly
//! one finding (the punch divergences deduplicated), a minimized program and a C reproducer
//! that compiles. Needs the cargo-fuzz target binaries (`.ci/run` builds them); its diff_kvm
//! part needs real KVM with guest_memfd, the host's or the lane's (`lane::run_test_binaries`
//! runs this binary inside, where nights run diff_kvm alone), and skips loudly without.
//! A second night on the same corpus starts from the merged one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/target/x86_64-unknown-linux-gnu/release")
}

/// The fuzz binaries, or `None` after saying why this test does not run.
fn built(test: &str) -> Option<PathBuf> {
    let dir = bin_dir();
    if let Some(missing) = ["diff_kvm", "diff_sim", "model"].iter().find(|t| !dir.join(t).is_file()) {
        eprintln!("SKIPPED {test}: fuzz target {missing} is not built in {} (cd fuzz && cargo fuzz build -O)", dir.display());
        return None;
    }
    Some(dir)
}

/// The fuzz binaries where real KVM is here too, or `None` after saying why not.
fn ready(test: &str) -> Option<PathBuf> {
    let dir = built(test)?;
    common::kvm_or_skip(test)?;
    Some(dir)
}

/// The targets a healthy night runs here (`None`: it does not run; the first is the one
/// the second night runs): inside the lane only diff_kvm, the one that needs its KVM (the
/// others run on the host, and libFuzzer's start under ASan takes minutes under TCG: each
/// ran two minutes past a 5 s window there); on a host with real KVM all three; on a host
/// without, the two that need none.
fn night_targets(test: &str) -> Option<&'static [&'static str]> {
    if common::in_lane() {
        common::kvm_or_skip(test).map(|_| ["diff_kvm"].as_slice())
    } else if common::kvm_or_skip(test).is_some() {
        Some(&["diff_kvm", "diff_sim", "model"])
    } else {
        Some(&["diff_sim", "model"])
    }
}

fn nightly(bins: &Path, work: &Path, budget: u64, targets: &[&str], skip_op: Option<&str>) -> (i32, serde_json::Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gmemfuzz"));
    cmd.args(["nightly", "--budget", &budget.to_string(), "--jobs", "1", "--fuzz-bin-dir"])
        .arg(bins)
        .arg("--corpus")
        .arg(work.join("corpus"))
        .arg("--out")
        .arg(work.join("out"));
    for t in targets {
        cmd.args(["--target", t]);
    }
    cmd.env_remove("GMEMFUZZ_SKIP_OP");
    if let Some(op) = skip_op {
        cmd.env("GMEMFUZZ_SKIP_OP", op);
    }
    let output = cmd.output().expect("running gmemfuzz nightly");
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let json = std::fs::read_to_string(work.join("out/report.json")).expect("report.json");
    let md = std::fs::read_to_string(work.join("out/report.md")).expect("report.md");
    (output.status.code().unwrap_or(-1), serde_json::from_str(&json).unwrap(), md)
}

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nightly-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_healthy_night_finds_nothing_and_the_next_night_starts_from_the_merged_corpus() {
    let Some(bins) = built("nightly_healthy") else { return };
    let Some(tonight) = night_targets("nightly_healthy") else { return };
    let work = workdir("healthy");
    let (code, report, md) = nightly(&bins, &work, 60, tonight, None);
    assert_eq!(code, 0, "{md}");
    assert!(md.starts_with("# gmemfuzz nightly: no new finding"), "{md}");
    let targets = report["targets"].as_array().unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t["target"].as_str().unwrap()).collect();
    assert_eq!(names, tonight);
    for t in targets {
        assert!(t["execs"].as_u64().unwrap() > 0, "{t}");
        assert!(t["corpus_after"].as_u64() >= t["corpus_before"].as_u64(), "{t}");
        // The op-kind mix comes from the fuzzing processes themselves.
        let mix = &t["op_mix"];
        assert!(mix["processes"].as_u64().unwrap() > 0 && mix["programs"].as_u64().unwrap() > 0, "{t}");
        assert!(mix["ops"]["punch"]["ran"].as_u64().unwrap() > 0, "{t}");
    }
    assert!(md.contains("## Op-kind mix") && md.contains("## Known kernel bugs"), "{md}");
    let junit = std::fs::read_to_string(work.join("out/junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase ").count(), tonight.len());
    assert!(!junit.contains("<failure"), "{junit}");

    // The second night on the same corpus directory starts where the first one's merge ended.
    let after_first = targets[0]["corpus_after"].as_u64().unwrap();
    let (code, report, md) = nightly(&bins, &work, 10, &tonight[..1], None);
    assert_eq!(code, 0, "{md}");
    assert_eq!(report["targets"][0]["corpus_before"].as_u64().unwrap(), after_first);
    assert_eq!(report["targets"][0]["seeds_added"].as_u64().unwrap(), 0);
    // And its report says so: the summary row's "corpus before" column.
    let row = md.lines().find(|l| l.starts_with(&format!("| {} |", tonight[0]))).expect("the target's row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[5], after_first.to_string(), "{row}");
}

/// Compiles a C reproducer with the system's C compiler (skips loudly without one).
fn compiles(c: &Path) {
    match Command::new("cc").args(["-O2", "-Wall", "-Werror", "-o"]).arg(c.with_extension("bin")).arg(c).status() {
        Ok(s) => assert!(s.success(), "{} does not compile", c.display()),
        Err(e) => eprintln!("SKIPPED compiling {}: no cc here ({e})", c.display()),
    }
}

#[test]
fn an_injected_fault_gives_exactly_one_minimized_finding_with_a_c_reproducer() {
    let Some(bins) = ready("nightly_skip_punch") else { return };
    let work = workdir("skip-punch");
    // Inside the lane diff_kvm alone (see `night_targets`); the fault is in its backend.
    let only_kvm: &[&str] = if common::in_lane() { &["diff_kvm"] } else { &[] };
    let (code, report, md) = nightly(&bins, &work, 60, only_kvm, Some("punch"));
    assert_eq!(code, 1, "{md}");
    assert!(md.starts_with("# gmemfuzz nightly: **1 new finding**"), "{md}");
    let targets = report["targets"].as_array().unwrap();
    let findings: Vec<&serde_json::Value> = targets.iter().flat_map(|t| t["findings"].as_array().unwrap()).collect();
    // One fault, one finding, however many crashes and signatures showed it.
    assert_eq!(findings.len(), 1, "{md}");
    let f = findings[0];
    assert_eq!(f["signature"]["target"], "diff_kvm", "{f}");
    assert_eq!(f["signature"]["op"], "punch", "{f}");
    assert_eq!(targets[0]["crashes"].as_u64().unwrap() as usize, f["crashes"].as_array().unwrap().len());
    assert_eq!(f["minimized"], true, "{f}");
    if f["minimization_cut_short"] == false {
        // A punch that does nothing shows in at most: create, map, touch, punch (and a probe).
        assert!(f["program_ops"].as_u64().unwrap() <= 6, "{f}");
    }
    let dir = work.join("out/findings").join(f["slug"].as_str().unwrap());
    let program = std::fs::read_to_string(dir.join("program.txt")).unwrap();
    assert!(program.contains("punch") && program.contains("# expect: divergence"), "{program}");
    compiles(&dir.join("repro.c"));
    // A selftest beside it, or a note saying why not (it is built in a kernel tree, not here).
    match std::fs::read_to_string(dir.join("selftest.c")) {
        Ok(test) => assert!(test.contains("#include \"kvm_util.h\"") && test.contains("punch"), "{test}"),
        Err(_) => assert!(f["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("no selftest: ")), "{f}"),
    }
    for v in f["variants"].as_array().unwrap() {
        assert_eq!(v["signature"]["op"], "punch", "{v}");
        compiles(Path::new(v["c_repro"].as_str().unwrap()));
    }
    let junit = std::fs::read_to_string(work.join("out/junit.xml")).unwrap();
    assert_eq!(junit.matches("<failure ").count(), 1, "{junit}");
}

#[test]
fn relative_corpus_and_out_directories_work() {
    // The model target needs no KVM: this runs on the host, wherever the targets are built.
    if common::in_lane() {
        return;
    }
    let Some(bins) = built("nightly_relative_paths") else { return };
    let work = workdir("relative");
    // As the workflow runs it: paths relative to the working directory.
    let output = Command::new(env!("CARGO_BIN_EXE_gmemfuzz"))
        .args(["nightly", "--budget", "6", "--jobs", "1", "--target", "model", "--corpus", "corpus", "--out", "out", "--fuzz-bin-dir"])
        .arg(&bins)
        .current_dir(&work)
        .env("CI", "true")
        .output()
        .expect("running gmemfuzz nightly");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{log}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(work.join("out/report.json")).unwrap()).unwrap();
    assert!(report["targets"][0]["execs"].as_u64().unwrap() > 0, "{report}");
    assert!(report["targets"][0]["corpus_after"].as_u64().unwrap() > 0, "{report}");
}

/// Where the host's KVM lacks guest_memfd, the diff_kvm target stops before its first input
/// with the reason, and libFuzzer saves no crash artifact (nothing diverged).
#[test]
fn diff_kvm_stops_before_fuzzing_where_the_host_lacks_guest_memfd() {
    let Some(bins) = built("diff_kvm_without_guest_memfd") else { return };
    let host = gmemfuzz_backends::kvm::HostKvm::probe();
    let Some(why) = host.lacks(0) else {
        eprintln!("SKIPPED diff_kvm_stops_before_fuzzing_where_the_host_lacks_guest_memfd: this host's KVM has guest_memfd");
        return;
    };
    let work = workdir("no-guest-memfd");
    let (corpus, artifacts) = (work.join("corpus"), work.join("artifacts"));
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new(bins.join("diff_kvm"))
        .arg(&corpus)
        .arg("-runs=10")
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("diff_kvm cannot fuzz real KVM here") && stderr.contains(&why), "{stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("fuzz target exited"), "{stderr}");
    assert_eq!(std::fs::read_dir(&artifacts).unwrap().count(), 0, "no artifact: {stderr}");
}
