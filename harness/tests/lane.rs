//! The test-kernel lane: boots every cached lane kernel (Linux 7.2, 6.12, a user's tree)
//! under QEMU/TCG and, inside each, runs the private/shared conversion scenarios and replays
//! the corpus/lane/*.txt files that name its series (`# kernels:`) on a software-protected
//! VM, in lockstep with the model.
//!
//! It runs on the kernels harness/lane/build-kernel.sh has cached, or builds the default one
//! when GMEMFUZZ_LANE=1 asks (30 to 60 minutes on two cores); with none cached it skips
//! loudly. GMEMFUZZ_LANE=0 skips it always.

use std::path::PathBuf;

use gmemfuzz::lane;

mod common;

fn cached_kernels() -> Vec<lane::LaneKernel> {
    let want = std::env::var("GMEMFUZZ_LANE").ok();
    if want.as_deref() == Some("0") {
        eprintln!("SKIPPED lane: GMEMFUZZ_LANE=0");
        return Vec::new();
    }
    let mut kernels = lane::cached_kernels();
    if kernels.is_empty() && want.as_deref() != Some("1") {
        eprintln!("SKIPPED lane: no lane kernel is built here; run harness/lane/build-kernel.sh or set GMEMFUZZ_LANE=1");
        return Vec::new();
    }
    if std::process::Command::new("qemu-system-x86_64").arg("--version").output().is_err() && want.as_deref() != Some("1") {
        eprintln!("SKIPPED lane: qemu-system-x86_64 is not installed (GMEMFUZZ_LANE=1 installs it)");
        return Vec::new();
    }
    if kernels.is_empty() {
        match lane::kernel(&lane::KernelChoice::default(), lane::Detectors::default()) {
            Ok(k) => kernels.push(k),
            Err(e) => panic!("the lane kernel could not be built: {e:#}"),
        }
    }
    kernels
}

#[test]
fn conversion_scenarios_and_lane_regressions_pass_on_every_cached_lane_kernel() {
    let kernels = cached_kernels();
    if kernels.is_empty() {
        return;
    }
    let gmemfuzz = PathBuf::from(env!("CARGO_BIN_EXE_gmemfuzz"));
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lane-test");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let initrd = lane::initramfs(&gmemfuzz, &base, None, None).unwrap();
    for (i, kernel) in kernels.iter().enumerate() {
        eprintln!("lane test: Linux {} ({})", kernel.version, kernel.image.display());
        let out = base.join(format!("boot-{i}-{}", kernel.version));
        let mut report = lane::LaneReport::default();
        lane::check(kernel, &initrd, &out, 1, &mut report).unwrap();
        let console = out.join("console.log");
        let on = format!("Linux {}; console: {}", kernel.version, console.display());
        assert!(report.scenarios_passed, "the conversion scenarios failed inside the lane on {on}");
        assert!(report.regressions_differed.is_empty(), "lane regressions differ on {on}: {:?}", report.regressions_differed);
        let pinned = lane::regressions_for(&kernel.version).unwrap().len() as u32;
        assert_eq!(report.regressions_matched, pinned, "every lane regression naming {on} replayed");
        assert!(report.splats.is_empty(), "kernel splats on Linux {}: {:?}", kernel.version, report.splats);
        guided_run_reaches_kvm_code(kernel, &initrd, &base.join(format!("kcov-{i}-{}", kernel.version)));
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kvm-tests-ran.log");
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
            use std::io::Write;
            let _ = f.write_all(format!("lane: Linux {}\n", kernel.version).as_bytes());
        }
    }
}

/// A short KCOV-guided run inside the lane kernel: it traces kernel PCs, keeps the inputs
/// that reached new edges (written to its corpus) and leaves a PCs file.
fn guided_run_reaches_kvm_code(kernel: &lane::LaneKernel, initrd: &std::path::Path, out: &std::path::Path) {
    let cmd = "/bin/gmemfuzz run --vm-type 1 --seconds 15 --programs 1000000 --kcov guide --kcov-pcs /out/pcs.txt --corpus /out/corpus --json /out/results.jsonl";
    let end = lane::boot(kernel, initrd, out, cmd, 300, 1, true).unwrap();
    let on = format!("Linux {}; console: {}", kernel.version, out.join("console.log").display());
    assert_eq!(end.status, 0, "guided run failed on {on}");
    let records = gmemfuzz::report::read(&out.join("results.jsonl")).unwrap();
    let coverage = records.iter().find_map(|r| match r {
        gmemfuzz::report::Record::Coverage { mode, edges, pcs, corpus, .. } => Some((mode.clone(), *edges, *pcs, *corpus)),
        _ => None,
    });
    let (mode, edges, pcs, corpus) = coverage.unwrap_or_else(|| panic!("no coverage record on {on}"));
    assert_eq!(mode, "guide");
    assert!(edges > 1000 && pcs > 1000, "{edges} edges, {pcs} PCs on {on}");
    let kept = std::fs::read_dir(out.join("corpus")).unwrap().count() as u64;
    assert!(corpus > 0 && kept == corpus, "{corpus} inputs kept, {kept} in the corpus directory on {on}");
    let file = std::fs::read_to_string(out.join("pcs.txt")).unwrap();
    let listed = gmemfuzz::coverage::parse_pcs(&file).unwrap();
    assert_eq!((listed.pcs.len() as u64, listed.edges.len() as u64), (pcs, edges), "the PCs file lists every PC and edge on {on}");
    eprintln!("lane test: guided run on Linux {}: {edges} edges, {pcs} PCs, {corpus} inputs kept", kernel.version);
}

/// The lane reads what `gmemfuzz scenarios`, `replay` and `run` write with `--json`: the
/// same binary on the host kernel (VM type 0) gives the records the lane's readers take.
#[test]
fn lane_reads_the_tools_json_results() {
    if common::kvm_or_skip("lane_reads_the_tools_json_results").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("lane-json");
    std::fs::create_dir_all(&dir).unwrap();
    let results = dir.join("results.jsonl");
    let _ = std::fs::remove_file(&results);
    let gmemfuzz = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gmemfuzz")).args(args).arg("--json").arg(&results).output().unwrap();
        out.status.code()
    };
    assert_eq!(gmemfuzz(&["scenarios", "--vm-type", "0"]), Some(0));
    let regressions = gmemfuzz::repro::cli::regressions_dir();
    assert_eq!(gmemfuzz(&["replay", regressions.join("punch_then_read_zero.txt").to_str().unwrap()]), Some(0));
    // A file recorded as clean that diverges here: the expectation says clean, the run disagrees.
    let wrong = dir.join("wrong.txt");
    std::fs::write(&wrong, "gmemfuzz-program v1\n# expect: divergence stale-read at op 1\ncreate_gmem size=0x1000 flags=0x0\ncheck\n")
        .unwrap();
    assert_eq!(gmemfuzz(&["replay", wrong.to_str().unwrap()]), Some(0));

    let records = gmemfuzz::report::read(&results).unwrap();
    let mut report = lane::LaneReport::default();
    lane::read_check(&records, &mut report);
    assert!(report.scenarios_passed, "{records:?}");
    assert_eq!(report.regressions_matched, 1, "{records:?}");
    assert_eq!(report.regressions_differed, vec![wrong.display().to_string()], "{records:?}");

    let _ = std::fs::remove_file(&results);
    assert_eq!(gmemfuzz(&["run", "--programs", "20", "--seed", "3"]), Some(0));
    let records = gmemfuzz::report::read(&results).unwrap();
    let mut report = lane::LaneReport::default();
    let stats = lane::read_fuzz(&records, &mut report).expect("a stats record");
    assert!(stats.starts_with("vm type 0: programs 20 divergences 0"), "{stats}");
    assert_eq!(report.divergences, 0);
    assert!(report.stats.iter().any(|l| l.starts_with("throughput: 20 programs")), "{:?}", report.stats);
}
