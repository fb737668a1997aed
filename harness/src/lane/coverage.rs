//! Kernel coverage in the lane's fuzzing boots: what the guest's `gmemfuzz run --kcov` is
//! given (the KVM code ranges, the guided corpus of earlier boots) and what comes back (the
//! PCs and edges reached, the inputs kept), merged over boots and QEMUs.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{copy_files, LaneKernel};
use crate::kcov::format::{format_pcs, format_ranges, read_pcs_files, Reached};
use crate::kcov::KcovMode;

/// Where the initramfs holds the ranges of KVM code that count.
pub const GUEST_RANGES: &str = "/lane/kcov-ranges.txt";

/// The merged PCs file of a lane run, for `gmemfuzz coverage`.
pub const MERGED_PCS: &str = "kcov-pcs.txt";

/// The ranges file for `kernel`, written under `work`, or `None` (every PC counts) with a
/// line that says why.
pub fn ranges_for(kernel: &LaneKernel, work: &Path) -> Option<PathBuf> {
    let functions = match crate::coverage::kvm_ranges(kernel) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gmemfuzz lane: KCOV counts every kernel PC: {e:#}");
            return None;
        }
    };
    let file = work.join("kcov-ranges.txt");
    if let Err(e) = std::fs::write(&file, format_ranges(&functions, &kernel.image)) {
        eprintln!("gmemfuzz lane: KCOV counts every kernel PC: writing {}: {e}", file.display());
        return None;
    }
    eprintln!("gmemfuzz lane: KCOV counts PCs in the {} functions of arch/x86/kvm and virt/kvm", functions.len());
    Some(file)
}

fn corpus_dir(root: &Path, vm_type: u64) -> PathBuf {
    root.join(format!("kcov-corpus-{vm_type}"))
}

/// Readies the boot directory `dir` and returns the `gmemfuzz run` arguments for a VM type.
pub fn guest_args(mode: KcovMode, out: &Path, dir: &Path) -> Result<impl Fn(u64) -> String> {
    if mode == KcovMode::Guide {
        for vm_type in [0, 1] {
            let kept = corpus_dir(out, vm_type);
            std::fs::create_dir_all(&kept)?;
            copy_files(&kept, &corpus_dir(dir, vm_type))?;
        }
    }
    Ok(move |vm_type: u64| match mode {
        KcovMode::Off => String::new(),
        _ => {
            let corpus = match mode {
                KcovMode::Guide => format!(" --corpus /out/kcov-corpus-{vm_type}"),
                _ => String::new(),
            };
            format!(
                " --kcov {mode} --kcov-pcs /out/kcov-pcs-{vm_type}.txt{corpus} $([ -f {GUEST_RANGES} ] && echo --kcov-ranges {GUEST_RANGES})"
            )
        }
    })
}

/// Takes the inputs a boot kept into the run's corpus.
pub fn collect(mode: KcovMode, out: &Path, dir: &Path) -> Result<()> {
    if mode == KcovMode::Guide {
        for vm_type in [0, 1] {
            let kept = corpus_dir(dir, vm_type);
            if kept.is_dir() {
                copy_files(&kept, &corpus_dir(out, vm_type))?;
            }
        }
    }
    Ok(())
}

/// Merges every boot's PCs files into OUT/kcov-pcs.txt and, where the kernel's build is
/// here, writes the coverage report of them into OUT/coverage/ (its summary goes to stderr);
/// returns the lines to show.
pub fn merge_pcs(out: &Path, kernel: &LaneKernel) -> Result<Vec<String>> {
    let mut by_type = [Reached::default(), Reached::default()];
    for boot in std::fs::read_dir(out)?.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("boot-")) {
        for (vm_type, of_type) in by_type.iter_mut().enumerate() {
            let file = boot.path().join(format!("kcov-pcs-{vm_type}.txt"));
            if file.exists() {
                of_type.extend(read_pcs_files(&[&file])?);
            }
        }
    }
    let mut all = by_type[0].clone();
    all.extend(by_type[1].clone());
    if all.pcs.is_empty() {
        return Ok(vec!["kernel coverage: no PCs came back (a kernel without KCOV, or no fuzzing boot finished)".to_string()]);
    }
    let merged = out.join(MERGED_PCS);
    let header = ["gmemfuzz lane: kernel PCs and edges reached over all boots".to_string(), counts(&all)];
    std::fs::write(&merged, format_pcs(&header, all.pcs.iter().copied(), all.edges.iter().copied()))?;
    let opts = crate::coverage::CoverageOptions { pcs: vec![merged.clone()], out: out.join("coverage") };
    eprintln!("gmemfuzz lane: kernel coverage of this run, by file:");
    if let Err(e) = crate::coverage::report(kernel, &opts) {
        eprintln!("gmemfuzz lane: no coverage report: {e:#}");
    }
    Ok(vec![format!(
        "kernel coverage over all boots: {} (vm type 0: {}, vm type 1: {}) in {}",
        counts(&all),
        counts(&by_type[0]),
        counts(&by_type[1]),
        merged.display()
    )])
}

fn counts(reached: &Reached) -> String {
    format!("{} PCs, {} edges", reached.pcs.len(), reached.edges.len())
}
