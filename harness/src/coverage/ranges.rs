//! The vmlinux address ranges of KVM's functions: what the lane's in-guest KCOV filter keeps.
//!
//! File format (`gmemfuzz coverage --ranges FILE`): `#` comment lines, then one function a
//! line, sorted by start, `0xSTART 0xEND name file`, half-open [START, END), lowercase hex,
//! `file` the source relative to the kernel tree.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::kbuild::Build;
use super::placement::{place, Vmlinux};
use crate::lane::LaneKernel;

/// The tree directories whose objects are KVM's.
pub const KVM_DIRS: [&str; 2] = ["arch/x86/kvm", "virt/kvm"];

/// One function's code in vmlinux.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FunctionRange {
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    pub name: String,
    /// Its source, relative to the kernel tree.
    pub file: PathBuf,
}

/// Every function of every object under arch/x86/kvm/ and virt/kvm/ of the kernel's build,
/// sorted by address. Fails with a clear message when the kernel has no build directory
/// (a bzImage built elsewhere): the caller then filters nothing.
pub fn kvm_ranges(kernel: &LaneKernel) -> Result<Vec<FunctionRange>> {
    let build = Build::of(kernel)?;
    let vm = Vmlinux::read(&build.vmlinux)?;
    ranges_of(&build, &vm)
}

pub(crate) fn ranges_of(build: &Build, vm: &Vmlinux) -> Result<Vec<FunctionRange>> {
    let objects = build.objects_under(&KVM_DIRS)?;
    if objects.is_empty() {
        bail!("{}: no KVM objects under {}", build.dir.display(), KVM_DIRS.join(", "));
    }
    let mut ranges = Vec::new();
    for obj in &objects {
        let bytes = std::fs::read(&obj.object).with_context(|| format!("reading {}", obj.object.display()))?;
        let placed = place(&bytes, vm).with_context(|| format!("placing {}", obj.object.display()))?;
        ranges.extend(
            placed
                .functions
                .into_iter()
                .filter_map(|f| Some(FunctionRange { start: f.addr?, end: f.addr? + f.size, name: f.name, file: obj.source.clone() })),
        );
    }
    ranges.sort();
    ranges.dedup();
    Ok(ranges)
}

/// The ranges in the file format, with a header naming the kernel.
pub fn format_ranges(ranges: &[FunctionRange], kernel: &Path) -> String {
    let mut out = format!(
        "# gmemfuzz coverage --ranges: functions of arch/x86/kvm/ and virt/kvm/ in {}\n# {} functions; half-open [start, end), sorted\n# start end name file\n",
        kernel.display(),
        ranges.len()
    );
    for r in ranges {
        out.push_str(&format!("{:#x} {:#x} {} {}\n", r.start, r.end, r.name, r.file.display()));
    }
    out
}

/// Reads the file format back.
pub fn parse_ranges(text: &str) -> Result<Vec<FunctionRange>> {
    let hex = |s: &str, n: usize| {
        s.strip_prefix("0x").and_then(|h| u64::from_str_radix(h, 16).ok()).with_context(|| format!("line {n}: {s:?} is not a 0x address"))
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [start, end, name, file] = f.as_slice() else { bail!("line {}: want `0xSTART 0xEND name file`", i + 1) };
        out.push(FunctionRange { start: hex(start, i + 1)?, end: hex(end, i + 1)?, name: name.to_string(), file: PathBuf::from(file) });
    }
    Ok(out)
}
