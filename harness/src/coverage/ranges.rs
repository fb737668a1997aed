//! The vmlinux address ranges of KVM's functions: what the lane's in-guest KCOV filter keeps.
//! Their file format is `kcov::format`'s.

use anyhow::{bail, Context, Result};

use super::kbuild::Build;
use super::placement::{place, Vmlinux};
use crate::kcov::format::FunctionRange;
use crate::kernel::LaneKernel;

/// The tree directories whose objects are KVM's.
pub const KVM_DIRS: [&str; 2] = ["arch/x86/kvm", "virt/kvm"];

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
