//! Coverage of the report's files: which points, lines and functions the PCs reached, and
//! how many edges ended in each function.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::debugobj::debug_object;
use super::kbuild::{Build, KbuildObject};
use super::lines::map_points;
use super::placement::{place, Vmlinux};
use crate::kcov::format::Reached;

/// A file of the report, and the functions of it to pick out (by name) in the summary.
pub struct ReportFile {
    pub source: &'static str,
    /// A label and the name fragments of the functions it groups (none: the whole file).
    pub focus: Option<(&'static str, &'static [&'static str])>,
}

/// The files of the report: guest_memfd, the memslot and attribute paths of kvm_main.c, and
/// the x86 MMU with its private-fault paths.
pub const REPORT_FILES: [ReportFile; 4] = [
    ReportFile { source: "virt/kvm/guest_memfd.c", focus: None },
    ReportFile {
        source: "virt/kvm/kvm_main.c",
        focus: Some((
            "memslot, attribute and invalidation functions (by name)",
            &[
                "memslot",
                "memory_region",
                "mem_attr",
                "memory_attributes",
                "gfn_range",
                "gmem",
                "slots",
                "invalidate",
                "gfn_to",
                "guest_memfd",
            ],
        )),
    },
    ReportFile {
        source: "arch/x86/kvm/mmu/mmu.c",
        focus: Some((
            "fault, zap and attribute functions (by name)",
            &["private", "gmem", "attr", "faultin", "page_fault", "mapping_level", "lpage", "zap"],
        )),
    },
    ReportFile { source: "arch/x86/kvm/mmu/tdp_mmu.c", focus: None },
];

/// Counts of one function of a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionCoverage {
    pub name: String,
    /// Its line in the file (line-level reports).
    pub line: Option<u32>,
    pub points: u32,
    pub reached: u32,
    /// Instrumented lines of it, and those reached.
    pub lines: u32,
    pub lines_reached: u32,
    /// The distinct edges reached that end at one of its points.
    pub edges: u32,
    /// Those of them that also start at one of its points: branches inside the function.
    /// The others start wherever the trace was before (a caller, but also the last KVM PC
    /// of the previous syscall, or the code a preemption notifier interrupted), so they
    /// vary with what ran around the function, not with what of it ran.
    pub inner_edges: u32,
    /// In the file's focus group.
    pub focus: bool,
    /// Why it has no points, where known.
    pub remark: Option<&'static str>,
}

/// The coverage of one file.
#[derive(Debug, Default)]
pub struct FileCoverage {
    pub source: PathBuf,
    /// Why the file is reported per function only (no line numbers), if it is.
    pub function_level: Option<String>,
    /// Every function, in source order (line-level) or by name.
    pub functions: Vec<FunctionCoverage>,
    /// Instrumented line -> (points, reached).
    pub lines: BTreeMap<u32, (u32, u32)>,
    pub focus_label: Option<&'static str>,
    /// What could not be placed or mapped, one line each.
    pub notes: Vec<String>,
    /// The source text, where readable.
    pub text: Option<String>,
    /// The PCs of this file's points that were reached (for tests and the curious).
    pub reached_pcs: BTreeSet<u64>,
    /// Every point's PC.
    pub point_pcs: BTreeSet<u64>,
}

/// Totals: (reached, total), and the edges reached (of edges there is no total).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub functions: (u32, u32),
    pub points: (u32, u32),
    pub lines: (u32, u32),
    pub edges: u32,
    pub inner_edges: u32,
}

impl FileCoverage {
    /// Totals of the whole file.
    pub fn file_totals(&self) -> Totals {
        let mut t = self.totals(|_| true);
        // A line two functions share (a macro's) counts once.
        t.lines = (self.lines.values().filter(|(_, r)| *r > 0).count() as u32, self.lines.len() as u32);
        t
    }

    /// Totals of the functions that pass `keep`; functions without points count in neither.
    pub fn totals(&self, keep: impl Fn(&FunctionCoverage) -> bool) -> Totals {
        let mut t = Totals::default();
        for f in self.functions.iter().filter(|f| keep(f) && f.points > 0) {
            t.functions.1 += 1;
            t.functions.0 += u32::from(f.reached > 0);
            t.points.0 += f.reached;
            t.points.1 += f.points;
            t.lines.0 += f.lines_reached;
            t.lines.1 += f.lines;
            t.edges += f.edges;
            t.inner_edges += f.inner_edges;
        }
        t
    }
}

/// How many distinct edges end at the points of each function, and how many of those start
/// at one of its points too (its inner edges): `function_of` maps a point's PC to its
/// function. The PCs of an edge are points' PCs: KCOV records the return address of the
/// `__sanitizer_cov_trace_pc` call, as the point does.
fn edges_per_function<'a>(function_of: &BTreeMap<u64, &'a str>, edges: &BTreeSet<(u64, u64)>) -> BTreeMap<&'a str, (u32, u32)> {
    let mut counts: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for (from, to) in edges {
        if let Some(&function) = function_of.get(to) {
            let count = counts.entry(function).or_default();
            count.0 += 1;
            count.1 += u32::from(function_of.get(from) == Some(&function));
        }
    }
    counts
}

/// The base name of a gcc clone (`foo.isra.0`, `foo.cold`, `foo.constprop.0` -> `foo`).
fn base_name(symbol: &str) -> &str {
    symbol.split('.').next().unwrap_or(symbol)
}

/// A point's function of the file and its line there (none: per function only).
type FunctionLine = (String, Option<u32>);

/// Computes the coverage of one file of the build from the reached PCs and edges.
pub fn file_coverage(
    build: &Build,
    vm: &Vmlinux,
    obj: &KbuildObject,
    file: &ReportFile,
    reached: &Reached,
    cache: &Path,
) -> Result<FileCoverage> {
    let bytes = std::fs::read(&obj.object).with_context(|| format!("reading {}", obj.object.display()))?;
    let placed = place(&bytes, vm)?;
    let mut cov = FileCoverage {
        source: obj.source.clone(),
        focus_label: file.focus.map(|f| f.0),
        notes: placed.notes.clone(),
        text: std::fs::read_to_string(build.source.join(&obj.source)).ok(),
        ..Default::default()
    };
    if cov.text.is_none() {
        cov.notes.push(format!("source {} not readable", build.source.join(&obj.source).display()));
    }
    // Each point's function and line: from DWARF, else from the symbol it is in.
    let mapped = debug_object(build, obj, cache).and_then(|debug| {
        let dbytes = std::fs::read(&debug).with_context(|| format!("reading {}", debug.display()))?;
        let asked: Vec<(String, u64)> = placed.points.iter().map(|p| (p.section.clone(), p.offset)).collect();
        map_points(&dbytes, &obj.source, &asked)
    });
    let (per_point, mut defined): (Vec<FunctionLine>, BTreeMap<String, Option<u32>>) = match mapped {
        Ok(map) => {
            (map.points.into_iter().map(|p| (p.function, p.line)).collect(), map.functions.into_iter().map(|(n, l)| (n, Some(l))).collect())
        }
        Err(why) => {
            cov.function_level = Some(format!("{why:#}"));
            let of = |p: &super::placement::Point| {
                p.function.map_or_else(|| "?".to_string(), |i| base_name(&placed.functions[i].name).to_string())
            };
            (
                placed.points.iter().map(|p| (of(p), None)).collect(),
                placed.functions.iter().map(|f| (base_name(&f.name).to_string(), None)).collect(),
            )
        }
    };
    // Functions of the file with code but no DWARF name of their own are still listed.
    for (name, _) in &per_point {
        defined.entry(name.clone()).or_insert(None);
    }
    let mut rows: BTreeMap<String, FunctionCoverage> = BTreeMap::new();
    let mut fn_lines: BTreeMap<(String, u32), (u32, u32)> = BTreeMap::new();
    for (p, (function, line)) in placed.points.iter().zip(&per_point) {
        let hit = reached.pcs.contains(&p.pc);
        cov.point_pcs.insert(p.pc);
        if hit {
            cov.reached_pcs.insert(p.pc);
        }
        let row = rows.entry(function.clone()).or_default();
        row.points += 1;
        row.reached += u32::from(hit);
        if let Some(line) = line {
            let l = cov.lines.entry(*line).or_default();
            l.0 += 1;
            l.1 += u32::from(hit);
            let fl = fn_lines.entry((function.clone(), *line)).or_default();
            fl.0 += 1;
            fl.1 += u32::from(hit);
        }
    }
    for ((function, _), (_, hit)) in &fn_lines {
        let row = rows.entry(function.clone()).or_default();
        row.lines += 1;
        row.lines_reached += u32::from(*hit > 0);
    }
    let function_of: BTreeMap<u64, &str> = placed.points.iter().zip(&per_point).map(|(p, (f, _))| (p.pc, f.as_str())).collect();
    for (function, (edges, inner)) in edges_per_function(&function_of, &reached.edges) {
        let row = rows.get_mut(function).expect("a row for every point's function");
        (row.edges, row.inner_edges) = (edges, inner);
    }
    let focus = file.focus.map_or(&[][..], |f| f.1);
    let dead: BTreeSet<&str> = placed.functions.iter().filter(|f| f.weak && f.addr.is_none()).map(|f| base_name(&f.name)).collect();
    for (name, line) in defined {
        let mut row = rows.remove(&name).unwrap_or_default();
        row.focus = focus.iter().any(|frag| name.contains(frag));
        if row.points == 0 {
            row.remark = Some(if dead.contains(name.as_str()) {
                "a __weak default another file overrides: dead code in vmlinux"
            } else {
                "no coverage points (inlined without a block of its own, or unused)"
            });
        }
        if name.is_empty() {
            row.name = "(unnamed)".into();
            row.line = line;
            cov.functions.push(row);
            continue;
        }
        row.name = name;
        row.line = line;
        cov.functions.push(row);
    }
    cov.functions.sort_by(|a, b| (a.line.unwrap_or(u32::MAX), &a.name).cmp(&(b.line.unwrap_or(u32::MAX), &b.name)));
    Ok(cov)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_count_once_for_the_function_of_their_pc() {
        let function_of: BTreeMap<u64, &str> = [(0x10, "a"), (0x20, "a"), (0x30, "b")].into();
        // Three edges end at a's points (one of them from a's own), one at b's, one at no
        // point of the file.
        let edges = [(0, 0x10), (0x10, 0x20), (0x30, 0x20), (0x20, 0x30), (0x30, 0x99)].into();
        assert_eq!(edges_per_function(&function_of, &edges), [("a", (3, 1)), ("b", (1, 0))].into());
    }

    #[test]
    fn totals_sum_edges_of_the_functions_kept() {
        let f = |name: &str, points, edges, focus| FunctionCoverage {
            name: name.into(),
            points,
            reached: points.min(1),
            edges,
            focus,
            ..Default::default()
        };
        let cov = FileCoverage { functions: vec![f("a", 2, 5, true), f("b", 1, 2, false), f("c", 0, 0, true)], ..Default::default() };
        assert_eq!(cov.file_totals().edges, 7);
        assert_eq!(cov.totals(|x| x.focus).edges, 5);
    }
}
