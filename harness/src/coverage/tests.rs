//! Tests on the lane's cached 7.2 build (skipped, loudly, where there is none: CI machines),
//! and on made-up kernels for the ways a kernel can lack what a report needs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::kbuild::Build;
use super::placement::{place, Vmlinux};
use super::*;
use crate::kcov::format::{format_pcs, format_ranges, parse_ranges, Reached};
use crate::kernel::LaneKernel;

/// The lane's cached build of Debian's 7.2 with its build directory, if this machine has one.
fn cached_72(test: &str) -> Option<(LaneKernel, Build)> {
    let kernel = crate::kernel::cached_kernels().into_iter().find(|k| k.version.starts_with("7.2"));
    let Some(kernel) = kernel else {
        eprintln!("SKIPPED {test}: no cached lane build of 7.2 (harness/lane/build-kernel.sh builds one)");
        return None;
    };
    match Build::of(&kernel) {
        Ok(build) => Some((kernel, build)),
        Err(e) => {
            eprintln!("SKIPPED {test}: the cached 7.2 kernel has no build directory: {e:#}");
            None
        }
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gmemfuzz-cov-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn guest_memfd(build: &Build) -> kbuild::KbuildObject {
    let objects = build.objects_under(&KVM_DIRS).unwrap();
    objects.into_iter().find(|o| o.source == Path::new("virt/kvm/guest_memfd.c")).expect("guest_memfd.o in the build")
}

/// `System.map`'s address of a symbol.
fn system_map(kernel: &LaneKernel, name: &str) -> u64 {
    let map = std::fs::read_to_string(kernel.image.with_file_name("System.map")).unwrap();
    let line = map.lines().find(|l| l.split_whitespace().nth(2) == Some(name)).unwrap();
    u64::from_str_radix(line.split_whitespace().next().unwrap(), 16).unwrap()
}

#[test]
fn points_and_ranges_agree_with_vmlinux() {
    let Some((kernel, build)) = cached_72("points_and_ranges_agree_with_vmlinux") else { return };
    let vm = Vmlinux::read(&build.vmlinux).unwrap();
    let obj = guest_memfd(&build);
    let placed = place(&std::fs::read(&obj.object).unwrap(), &vm).unwrap();
    // Every point kept is a call of __sanitizer_cov_trace_pc in vmlinux; none is unexplained.
    assert!(placed.points.len() > 100, "{} points", placed.points.len());
    assert!(placed.points.iter().all(|p| vm.is_trace_pc_return(p.pc)));
    assert!(!placed.notes.iter().any(|n| n.contains("no call of") || n.contains("ambiguous")), "{:?}", placed.notes);
    let get_pfn = placed.functions.iter().find(|f| f.name == "kvm_gmem_get_pfn").unwrap();
    assert_eq!(get_pfn.addr, Some(system_map(&kernel, "kvm_gmem_get_pfn")));

    let ranges = kvm_ranges(&kernel).unwrap();
    assert!(ranges.len() > 1000, "{} ranges", ranges.len());
    assert!(ranges.windows(2).all(|w| w[0].end <= w[1].start), "sorted, not overlapping");
    let r = ranges.iter().find(|r| r.name == "kvm_gmem_get_pfn").unwrap();
    assert_eq!((r.start, r.file.as_path()), (system_map(&kernel, "kvm_gmem_get_pfn"), Path::new("virt/kvm/guest_memfd.c")));
    for p in &placed.points {
        let call = p.pc - 5;
        let i = ranges.partition_point(|r| r.end <= call);
        assert!(ranges[i].start <= call && ranges[i].file == obj.source, "point {:#x} outside guest_memfd's ranges", p.pc);
    }
    // The file format reads back.
    let text = format_ranges(&ranges, &kernel.image);
    assert!(text.starts_with('#'));
    assert_eq!(parse_ranges(&text).unwrap(), ranges);
}

#[test]
fn report_marks_exactly_the_points_reached() {
    let Some((kernel, build)) = cached_72("report_marks_exactly_the_points_reached") else { return };
    let vm = Vmlinux::read(&build.vmlinux).unwrap();
    let placed = place(&std::fs::read(&guest_memfd(&build).object).unwrap(), &vm).unwrap();
    // Every point of three functions, as a lane boot would list them.
    let chosen_fns = ["kvm_gmem_bind", "kvm_gmem_unbind", "kvm_gmem_get_pfn"];
    let chosen: BTreeSet<u64> = placed
        .points
        .iter()
        .filter(|p| p.function.is_some_and(|i| chosen_fns.contains(&placed.functions[i].name.as_str())))
        .map(|p| p.pc)
        .collect();
    assert!(chosen.len() > 10);
    let dir = temp_dir("report");
    let pcs_file = dir.join("boot.pcs");
    // An edge into each point (from the one before), and one that ends at no point.
    let mut edges: Vec<(u64, u64)> = chosen.iter().scan(0, |prev, &pc| Some((std::mem::replace(prev, pc), pc))).collect();
    edges.push((*chosen.first().unwrap(), 1));
    let header = ["made-up boot: every point of kvm_gmem_{bind,unbind,get_pfn}".to_string()];
    std::fs::write(&pcs_file, format_pcs(&header, chosen.iter().copied(), edges.iter().copied())).unwrap();
    let out = dir.join("html");
    let summary = report(&kernel, &CoverageOptions { pcs: vec![pcs_file], out: out.clone() }).unwrap().expect("the lane kernel has KCOV");
    assert_eq!((summary.pcs, summary.edges), (chosen.len(), chosen.len() + 1));
    assert_eq!((summary.foreign_pcs, summary.other_call_pcs), (0, 0));
    let gmem = summary.files.iter().find(|f| f.source == Path::new("virt/kvm/guest_memfd.c")).unwrap();
    assert_eq!(gmem.function_level, None, "line numbers from the -g object");
    assert_eq!(gmem.reached_pcs, chosen);
    let t = gmem.file_totals();
    assert_eq!((t.points.0 as usize, t.edges as usize), (chosen.len(), chosen.len()));
    let source = gmem.text.as_deref().expect("the source text");
    for name in chosen_fns {
        let row = gmem.functions.iter().find(|f| f.name == name).unwrap();
        assert!(row.points > 0 && row.reached == row.points && row.edges == row.reached, "{row:?}");
        assert!(row.lines_reached > 0);
        // DWARF's line of the function is its definition's in the source.
        let def = source.lines().position(|l| !l.starts_with([' ', '\t', '*', '/']) && l.contains(&format!(" {name}("))).unwrap();
        assert_eq!(row.line, Some(def as u32 + 1), "{name}");
    }
    let reached_rows: u32 = gmem.functions.iter().map(|f| f.reached).sum();
    assert_eq!(reached_rows as usize, chosen.len());
    let reached: Vec<&str> = gmem.functions.iter().filter(|f| f.reached > 0).map(|f| f.name.as_str()).collect();
    eprintln!("functions reached (the three and what is inlined into them): {reached:?}");
    // Every function of the file is listed, kvm_gmem_fault_user_mapping unreached.
    let fault = gmem.functions.iter().find(|f| f.name == "kvm_gmem_fault_user_mapping").unwrap();
    assert!(fault.points > 0 && fault.reached == 0);
    let other = summary.files.iter().find(|f| f.source == Path::new("arch/x86/kvm/mmu/mmu.c")).unwrap();
    assert!(other.reached_pcs.is_empty() && other.file_totals().points.1 > 1000);

    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(index.contains("virt/kvm/guest_memfd.c") && index.contains("memslot, attribute and invalidation functions"));
    let page = std::fs::read_to_string(out.join("virt_kvm_guest_memfd.c.html")).unwrap();
    assert!(page.contains("class=\"hit\"") && page.contains("class=\"miss\""));
    assert!(page.contains("kvm_gmem_fault_user_mapping"));
    // Source text is escaped (`&lt;linux/...&gt;` includes).
    assert!(page.contains("#include &lt;linux/"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bzImage with nothing of a lane build around it.
fn lone_image(dir: &Path) -> LaneKernel {
    let image = dir.join("bzImage");
    let mut bytes = vec![0u8; 0x400];
    bytes[0x202..0x206].copy_from_slice(b"HdrS");
    bytes[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
    bytes[0x300..0x306].copy_from_slice(b"7.2.13");
    std::fs::write(&image, &bytes).unwrap();
    LaneKernel::at(&image).unwrap()
}

#[test]
fn a_kernel_built_elsewhere_has_no_ranges_and_says_why() {
    let dir = temp_dir("elsewhere");
    let kernel = lone_image(&dir);
    let err = kvm_ranges(&kernel).unwrap_err().to_string();
    assert!(err.contains("no kbuild output directory"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_kernel_without_kcov_gives_no_report() {
    let dir = temp_dir("nokcov");
    let kernel = lone_image(&dir);
    std::fs::write(dir.join("config"), "CONFIG_KVM=y\n# CONFIG_KCOV is not set\n").unwrap();
    let pcs = dir.join("boot.pcs");
    std::fs::write(&pcs, "0xffffffff81000005\n").unwrap();
    let out = dir.join("html");
    assert!(report(&kernel, &CoverageOptions { pcs: vec![pcs], out: out.clone() }).unwrap().is_none());
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_kvm_function_is_placed_but_overridden_weak_defaults() {
    let Some((kernel, build)) = cached_72("every_kvm_function_is_placed_but_overridden_weak_defaults") else { return };
    let vm = Vmlinux::read(&build.vmlinux).unwrap();
    let (mut placed_fns, mut weak) = (0, 0);
    for obj in build.objects_under(&KVM_DIRS).unwrap() {
        let placed = place(&std::fs::read(&obj.object).unwrap(), &vm).unwrap();
        for f in &placed.functions {
            match f.addr {
                Some(_) => placed_fns += 1,
                None => {
                    assert!(f.weak, "{}: {} not placed: {:?}", obj.source.display(), f.name, placed.notes);
                    weak += 1;
                }
            }
        }
        assert!(!placed.notes.iter().any(|n| n.contains("ambiguous") || n.contains("no call of")), "{:?}", placed.notes);
    }
    eprintln!("{placed_fns} KVM functions placed, {weak} overridden __weak defaults left out");
    assert!(weak < 30);
    assert_eq!(kvm_ranges(&kernel).unwrap().len(), placed_fns);
}

#[test]
fn a_debug_object_with_other_code_falls_back_to_functions() {
    let Some((_kernel, build)) = cached_72("a_debug_object_with_other_code_falls_back_to_functions") else { return };
    let vm = Vmlinux::read(&build.vmlinux).unwrap();
    let mut obj = guest_memfd(&build);
    let placed = place(&std::fs::read(&obj.object).unwrap(), &vm).unwrap();
    let chosen: BTreeSet<u64> =
        placed.points.iter().filter(|p| p.function.is_some_and(|i| placed.functions[i].name == "kvm_gmem_bind")).map(|p| p.pc).collect();
    // A "-g" compile with frame pointers is other code than the linked object's.
    obj.command = obj.command.replace(" -c ", " -fno-omit-frame-pointer -c ");
    let dir = temp_dir("fallback");
    let reached = Reached { pcs: chosen.clone(), ..Default::default() };
    let cov = report::file_coverage(&build, &vm, &obj, &REPORT_FILES[0], &reached, &dir).unwrap();
    let why = cov.function_level.as_deref().expect("per function only");
    assert!(why.contains("differs from the linked object"), "{why}");
    assert!(cov.lines.is_empty());
    let bind = cov.functions.iter().find(|f| f.name == "kvm_gmem_bind").unwrap();
    assert_eq!((bind.reached as usize, bind.points as usize), (chosen.len(), chosen.len()));
    assert_eq!(cov.file_totals().points.0 as usize, chosen.len());
    // Nothing of the failed compile is kept.
    let left: Vec<_> = walk(&dir);
    assert!(left.iter().all(|p| p.is_dir()), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}
