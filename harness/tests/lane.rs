//! The test-kernel lane: boots every cached lane kernel (Linux 7.2, 6.12, a user's tree)
//! under QEMU/TCG and, inside each, runs the private/shared conversion scenarios and replays
//! the corpus/lane/*.txt files that name its series (`# kernels:`) on a software-protected
//! VM, in lockstep with the model.
//!
//! It runs on the kernels harness/lane/build-kernel.sh has cached, or builds the default one
//! when GMEMFUZZ_LANE=1 asks (its lean configuration: 9-10 minutes on two quiet cores, 20
//! to 25 loaded; docs/lane-kernel.md); with none cached it skips
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
        common::record_ran(&format!("lane: Linux {}", kernel.version));
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
    let listed = gmemfuzz::kcov::format::parse_pcs(&file).unwrap();
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
    // A file recorded as clean that runs clean here.
    let clean = dir.join("clean.txt");
    std::fs::write(&clean, "gmemfuzz-program v1\n# expect: clean\ncreate_gmem size=0x1000 flags=0x0\ncheck\n").unwrap();
    assert_eq!(gmemfuzz(&["replay", clean.to_str().unwrap()]), Some(0));
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

/// `gmemfuzz lane --replay` tries a program as often as `gmemfuzz replay` tries one with a
/// group (the lane, below the command line, keeps its own copy of the number).
#[test]
fn lane_replays_as_often_as_replay_does() {
    assert_eq!(lane::REPLAY_TRIES, gmemfuzz::repro::cli::RACE_TRIES);
}

/// The integration test binaries that hold KVM tests (those calling `common::kvm_or_skip`;
/// `the_kvm_test_binaries_are_listed` checks the list against the sources). `lane` itself is
/// one: inside the guest its lane tests skip (no lane kernel there) and its KVM test runs.
const KVM_TEST_BINARIES: [&str; 9] =
    ["kcov", "lane", "nightly", "races_kvm", "repro", "scenarios", "seed_corpus", "self_test", "unknown_kvm"];

#[test]
fn the_kvm_test_binaries_are_listed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut calling: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter(|p| std::fs::read_to_string(p).unwrap().contains("common::kvm_or_skip("))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    calling.sort();
    assert_eq!(calling, KVM_TEST_BINARIES, "the test files calling common::kvm_or_skip");
}

/// The newest build of each KVM test binary beside this one (cargo's deps directory).
fn kvm_test_binaries() -> Vec<PathBuf> {
    let me = std::env::current_exe().unwrap();
    let deps = me.parent().unwrap();
    let entries: Vec<_> = std::fs::read_dir(deps).unwrap().filter_map(|e| e.ok()).collect();
    KVM_TEST_BINARIES
        .iter()
        .map(|name| {
            entries
                .iter()
                .filter(|e| e.path().extension().is_none() && lane::test_name(&e.path()) == *name && e.file_name() != *name)
                .filter(|e| {
                    e.metadata().is_ok_and(|m| m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
                })
                .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
                .map(|e| e.path())
                .unwrap_or_else(|| panic!("no built test binary {name} in {}", deps.display()))
        })
        .collect()
}

/// Where the host's KVM lacks guest_memfd, the KVM tests run inside the newest cached lane
/// kernel of the default series (its VM type 0 has guest_memfd, 6.12's has not), each
/// binary one test at a time: every binary must pass there, and KVM tests must have run (the
/// count, by binary, is printed; `.ci/run` requires at least 15).
#[test]
fn kvm_tests_pass_inside_the_lane_where_the_host_lacks_guest_memfd() {
    let host = gmemfuzz_backends::kvm::HostKvm::probe();
    if host.lacks(0).is_none() {
        eprintln!("SKIPPED kvm tests inside the lane: the host's KVM has guest_memfd, and they ran on it");
        return;
    }
    if std::env::var(lane::TESTS_WHERE).is_ok() {
        return; // this binary is running inside the lane already
    }
    let Some(kernel) =
        cached_kernels().into_iter().filter(|k| k.version.starts_with(lane::DEFAULT_SERIES)).max_by(|a, b| a.version.cmp(&b.version))
    else {
        eprintln!("SKIPPED kvm tests inside the lane: no Linux {} lane kernel is cached here", lane::DEFAULT_SERIES);
        return;
    };
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lane-kvm-tests");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    // The nightly test runs the cargo-fuzz binaries where they are built: the initramfs then
    // carries the libraries they need (libstdc++ among them).
    let fuzz_bin = manifest.join("../fuzz/target/x86_64-unknown-linux-gnu/release/diff_kvm");
    let initrd =
        lane::initramfs(&PathBuf::from(env!("CARGO_BIN_EXE_gmemfuzz")), &base, fuzz_bin.is_file().then_some(fuzz_bin.as_path()), None)
            .unwrap();
    let binaries = kvm_test_binaries();
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::KVM_TESTS_LOG);
    let before = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
    eprintln!("kvm tests inside the lane: Linux {} ({})", kernel.version, host.lacks(0).unwrap());
    let end = lane::run_test_binaries(&kernel, &initrd, &base.join("boot"), &manifest.join(".."), &manifest, &binaries, 1500).unwrap();
    let on = format!("Linux {}; console: {}", kernel.version, base.join("boot/console.log").display());
    let failures = end.failures();
    assert!(failures.is_empty(), "KVM tests failed inside the lane on {on}:\n{}", failures.join("\n\n"));
    let ran: Vec<String> = std::fs::read_to_string(&log).unwrap_or_default().lines().skip(before).map(str::to_string).collect();
    for name in KVM_TEST_BINARIES {
        let out = std::fs::read_to_string(base.join(format!("boot/{name}.log"))).unwrap_or_default();
        let here = out.lines().filter(|l| l.starts_with("test ") && l.ends_with(" ok")).count();
        eprintln!("kvm tests inside the lane: {name}: {here} passed");
    }
    eprintln!("kvm tests inside the lane: {} KVM tests ran on Linux {} in {:.0} s", ran.len(), kernel.version, end.boot.seconds);
    assert!(!ran.is_empty(), "no KVM test recorded running inside the lane on {on}");
}
