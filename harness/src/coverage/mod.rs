//! `gmemfuzz coverage`: which of KVM's guest_memfd, memslot, attribute and MMU code the lane's
//! programs reached, from the kernel PCs and edges KCOV recorded in the guest ("PCs files"), as an HTML
//! report with source lines coloured; and the address ranges of KVM's functions, which the
//! lane's in-guest collection keeps.
//!
//! The lane kernel has no DWARF (CONFIG_DEBUG_INFO_NONE). Line numbers come from compiling a
//! report file's object again with `-g` from its kbuild command line, used only when its code is
//! byte for byte the code that was linked; its functions are found in vmlinux by symbol
//! (`placement`). Coverage points are exact: the calls of `__sanitizer_cov_trace_pc`.

mod debugobj;
mod html;
mod kbuild;
mod lines;
mod placement;
mod ranges;
mod report;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};

pub use kbuild::Build;
pub use ranges::{kvm_ranges, KVM_DIRS};
pub use report::{FileCoverage, FunctionCoverage, Totals, REPORT_FILES};

use crate::kcov::format::{format_ranges, read_pcs_files, Reached};
use crate::kernel::{KernelChoice, LaneKernel};

/// What `gmemfuzz coverage` was asked.
pub struct CoverageOptions {
    /// PCs files, merged.
    pub pcs: Vec<PathBuf>,
    /// Where index.html and the file pages go.
    pub out: PathBuf,
}

/// What a report found.
pub struct CoverageSummary {
    pub files: Vec<FileCoverage>,
    /// Unique PCs in the files given.
    pub pcs: usize,
    /// Unique edges in the files given.
    pub edges: usize,
    /// PCs that follow a call other than of `__sanitizer_cov_trace_pc` (where a function
    /// tail-called it, KCOV records its caller's return address).
    pub other_call_pcs: usize,
    /// PCs that follow no call in this kernel's vmlinux (another build's PCs?).
    pub foreign_pcs: usize,
}

/// The kernel's .config beside its image (the lane cache keeps it as `config`).
fn config_beside(image: &Path) -> Option<String> {
    [image.with_file_name("config"), image.with_file_name(".config")].iter().find_map(|p| std::fs::read_to_string(p).ok())
}

fn no_kcov(config: &str) -> bool {
    !config.lines().any(|l| l == "CONFIG_KCOV=y")
}

/// Writes the HTML report of the PCs files into `opts.out` and prints the summary table on
/// stderr. A kernel without KCOV is said so in one line, and `None` returned.
pub fn report(kernel: &LaneKernel, opts: &CoverageOptions) -> Result<Option<CoverageSummary>> {
    if config_beside(&kernel.image).is_some_and(|c| no_kcov(&c)) {
        eprintln!("gmemfuzz coverage: {} has no CONFIG_KCOV: no kernel coverage to report", kernel.image.display());
        return Ok(None);
    }
    let build = Build::of(kernel)?;
    if !build.has_kcov() {
        eprintln!("gmemfuzz coverage: {} has no CONFIG_KCOV: no kernel coverage to report", kernel.image.display());
        return Ok(None);
    }
    let reached = read_pcs_files(&opts.pcs)?;
    let pcs = &reached.pcs;
    if pcs.is_empty() {
        eprintln!("gmemfuzz coverage: the PCs files hold no PC (no KCOV in the guest?); the report shows nothing reached");
    }
    let vm = placement::Vmlinux::read(&build.vmlinux)?;
    if vm.trace_pc.is_none() {
        eprintln!("gmemfuzz coverage: {} has no {}: no kernel coverage to report", build.vmlinux.display(), placement::TRACE_PC);
        return Ok(None);
    }
    let not_points: Vec<u64> = pcs.iter().copied().filter(|&pc| !vm.is_trace_pc_return(pc)).collect();
    let foreign_pcs = not_points.iter().filter(|&&pc| !vm.follows_a_call(pc)).count();
    let other_call_pcs = not_points.len() - foreign_pcs;
    let objects = build.objects_under(&KVM_DIRS)?;
    let cache = debugobj::cache_dir(&build, &opts.out);
    let files = cover_files(&build, &vm, &objects, &reached, &cache)?;
    let pcs_files: Vec<String> = opts.pcs.iter().map(|p| p.display().to_string()).collect();
    let facts = vec![
        format!("Kernel {} ({}), build {}.", kernel.version, kernel.image.display(), build.dir.display()),
        format!("{} unique PCs and {} edges from {}.", pcs.len(), reached.edges.len(), pcs_files.join(", ")),
    ];
    html::write(&opts.out, &format!("gmemfuzz kernel coverage: Linux {}", kernel.version), &facts, &files)?;
    let summary = CoverageSummary { files, pcs: pcs.len(), edges: reached.edges.len(), other_call_pcs, foreign_pcs };
    print_summary(&summary, &opts.out);
    Ok(Some(summary))
}

/// Each report file's coverage, the files computed in parallel (each may compile).
fn cover_files(
    build: &Build,
    vm: &placement::Vmlinux,
    objects: &[kbuild::KbuildObject],
    reached: &Reached,
    cache: &Path,
) -> Result<Vec<FileCoverage>> {
    let work: Vec<_> = REPORT_FILES
        .iter()
        .filter_map(|f| match objects.iter().find(|o| o.source == Path::new(f.source)) {
            Some(o) => Some((f, o)),
            None => {
                eprintln!("gmemfuzz coverage: {} is not in this build; left out", f.source);
                None
            }
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<FileCoverage>>>> = Mutex::new((0..work.len()).map(|_| None).collect());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(work.len()).max(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((file, obj)) = work.get(i) else { break };
                let r = report::file_coverage(build, vm, obj, file, reached, cache).with_context(|| format!("coverage of {}", file.source));
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results.into_inner().unwrap().into_iter().map(|r| r.expect("every file was worked on")).collect()
}

fn fraction((r, t): (u32, u32)) -> String {
    if t == 0 {
        "-".into()
    } else {
        format!("{r}/{t} {:.0}%", 100.0 * r as f64 / t as f64)
    }
}

/// The summary table, on stderr.
fn print_summary(s: &CoverageSummary, out: &Path) {
    eprintln!(
        "gmemfuzz coverage: {} unique PCs, {} edges; {} return addresses of other calls (callers of tail-called points); {} follow no call in this vmlinux{}",
        s.pcs,
        s.edges,
        s.other_call_pcs,
        s.foreign_pcs,
        if s.foreign_pcs > 0 { " (PCs of another build?)" } else { "" }
    );
    eprintln!("{:<58} {:>14} {:>14} {:>16} {:>8} {:>6}", "file", "functions", "lines", "points", "edges", "inner");
    for f in &s.files {
        let row = |label: &str, t: Totals, lines: bool| {
            let l = if lines { fraction(t.lines) } else { "-".into() };
            eprintln!("{label:<58} {:>14} {:>14} {:>16} {:>8} {:>6}", fraction(t.functions), l, fraction(t.points), t.edges, t.inner_edges);
        };
        row(&f.source.to_string_lossy(), f.file_totals(), f.function_level.is_none());
        if let Some(label) = f.focus_label {
            row(&format!("  {label}"), f.totals(|x| x.focus), f.function_level.is_none());
        }
        if let Some(why) = &f.function_level {
            eprintln!("  (per function only: {why})");
        }
        for n in &f.notes {
            eprintln!("  note: {n}");
        }
    }
    eprintln!("report: {}", out.join("index.html").display());
}

/// `gmemfuzz coverage`: the report (`out`), or the ranges file (`ranges`).
pub fn cli(choice: &KernelChoice, pcs: &[PathBuf], out: Option<&Path>, ranges: Option<&Path>) -> Result<()> {
    let kernel = crate::kernel::kernel(choice, crate::kernel::Detectors::default())?;
    if let Some(file) = ranges {
        let list = kvm_ranges(&kernel)?;
        std::fs::write(file, format_ranges(&list, &kernel.image)).with_context(|| format!("writing {}", file.display()))?;
        eprintln!("gmemfuzz coverage: {} KVM functions of {} to {}", list.len(), kernel.image.display(), file.display());
        return Ok(());
    }
    let out = out.context("--out DIR is needed for a report")?;
    report(&kernel, &CoverageOptions { pcs: pcs.to_vec(), out: out.to_path_buf() })?;
    Ok(())
}

#[cfg(test)]
mod tests;
