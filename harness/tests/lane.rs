//! The test-kernel lane: boots Linux 6.12 under QEMU/TCG and, inside it, runs the
//! private/shared conversion scenarios and replays corpus/lane/*.txt on a
//! software-protected VM, in lockstep with the model.
//!
//! It runs when the lane kernel is already built (harness/lane/build-kernel.sh caches it)
//! or when GMEMFUZZ_LANE=1 asks to build it (about ten minutes on two cores); otherwise it
//! skips loudly. GMEMFUZZ_LANE=0 skips it always.

use std::path::PathBuf;

use gmemfuzz::lane;

fn cached_kernel() -> Option<PathBuf> {
    let want = std::env::var("GMEMFUZZ_LANE").ok();
    if want.as_deref() == Some("0") {
        eprintln!("SKIPPED lane: GMEMFUZZ_LANE=0");
        return None;
    }
    if want.as_deref() != Some("1") && !lane::kernel_is_cached() {
        eprintln!("SKIPPED lane: the 6.12 lane kernel is not built here; run harness/lane/build-kernel.sh or set GMEMFUZZ_LANE=1");
        return None;
    }
    if std::process::Command::new("qemu-system-x86_64").arg("--version").output().is_err() && want.as_deref() != Some("1") {
        eprintln!("SKIPPED lane: qemu-system-x86_64 is not installed (GMEMFUZZ_LANE=1 installs it)");
        return None;
    }
    match lane::kernel(None) {
        Ok(k) => Some(k),
        Err(e) => panic!("the lane kernel could not be built: {e:#}"),
    }
}

#[test]
fn conversion_scenarios_and_lane_regressions_pass_inside_linux_6_12() {
    let Some(kernel) = cached_kernel() else { return };
    let gmemfuzz = PathBuf::from(env!("CARGO_BIN_EXE_gmemfuzz"));
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lane-test");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let initrd = lane::initramfs(&gmemfuzz, &out, None).unwrap();
    let mut report = lane::LaneReport::default();
    lane::check(&kernel, &initrd, &out.join("boot"), 1, &mut report).unwrap();
    let console = out.join("boot/console.log");
    assert!(report.scenarios_passed, "the conversion scenarios failed inside the lane; console: {}", console.display());
    assert!(
        report.regressions_differed.is_empty(),
        "lane regressions differ: {:?}; console: {}",
        report.regressions_differed,
        console.display()
    );
    let expected = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/lane")).unwrap().count() as u32;
    assert_eq!(report.regressions_matched, expected, "every lane regression replayed; console: {}", console.display());
    assert!(report.splats.is_empty(), "kernel splats: {:?}", report.splats);
    let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kvm-tests-ran.log");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
        use std::io::Write;
        let _ = writeln!(f, "lane: conversion_scenarios_and_lane_regressions_pass_inside_linux_6_12");
    }
}
