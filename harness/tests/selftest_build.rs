//! `gmemfuzz selftest`: the generated KVM selftests compile and link against the selftests'
//! library of a kernel tree, and programs it does not make are refused in one line.
//!
//! The build check needs a kernel tree whose KVM selftests library is built:
//! `GMEMFUZZ_SELFTEST_TREE` names its `tools/testing/selftests/kvm` (after `make headers`
//! at the top and `make -C tools/testing/selftests/kvm` of any x86 test, which builds
//! `lib/*.o`). Without it the check is skipped, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

use gmemfuzz::repro::load_document;
use gmemfuzz::repro::selftest::{emit, op_lines, Origin};
use gmemfuzz_backends::Profile;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The programs whose selftests must build, each with its VM type: the lane's regressions
/// and the findings' programs on VM type 1, the signed bind offset's on VM type 0.
fn programs() -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = ["corpus/lane", "docs/findings"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(root().join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .map(|p| (p, 1))
        .collect();
    files.sort();
    assert!(files.iter().any(|(p, _)| p.ends_with("gmem-release-vs-memslot-delete.txt")), "the group's finding");
    files.push((root().join("corpus/regressions/gmem_bind_offset_signed_overflow.txt"), 0));
    files
}

fn generate(path: &Path, vm_type: u64) -> String {
    let doc = load_document(path, Some(vm_type)).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let lines = op_lines(&text, doc.program.ops.len());
    let file = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    emit(&doc.program, &Profile::assumed(vm_type), &Origin { file: &file, lines, name: None }).unwrap()
}

#[test]
fn generated_selftests_build_against_the_kvm_selftests_library() {
    let Some(tree) = std::env::var_os("GMEMFUZZ_SELFTEST_TREE").map(PathBuf::from) else {
        eprintln!(
            "SKIPPED: GMEMFUZZ_SELFTEST_TREE is not set (a kernel tree's tools/testing/selftests/kvm with lib/*.o built); \
             the generated selftests were not compiled"
        );
        return;
    };
    let top = tree.join("../../../..");
    let objects: Vec<PathBuf> = ["lib", "lib/x86"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(tree.join(dir)).unwrap_or_else(|e| panic!("{}/{dir}: {e}", tree.display())))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "o"))
        .collect();
    assert!(
        objects.iter().any(|o| o.ends_with("kvm_util.o")),
        "{}: no lib/kvm_util.o: build the library first (make -C {} of any x86 test)",
        tree.display(),
        tree.display()
    );
    let out = std::env::temp_dir().join(format!("gmemfuzz-selftest-build-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    for (program, vm_type) in programs() {
        let name = program.file_stem().unwrap().to_string_lossy().into_owned();
        let source = out.join(format!("{name}.c"));
        std::fs::write(&source, generate(&program, vm_type)).unwrap();
        // The selftests' own flags (Makefile.kvm), warnings as errors.
        let status = Command::new("gcc")
            .args(["-D_GNU_SOURCE=", "-std=gnu99", "-Wall", "-Wstrict-prototypes", "-Wuninitialized", "-Werror", "-O2"])
            .args(["-fno-stack-protector", "-fno-PIE", "-no-pie", "-fno-strict-aliasing", "-march=x86-64-v2"])
            .arg(format!("-I{}", tree.join("include").display()))
            .arg(format!("-I{}", tree.join("include/x86").display()))
            .arg(format!("-I{}", tree.join("lib/x86").display()))
            .arg(format!("-I{}", tree.join("..").display()))
            .arg(format!("-I{}", top.join("tools/include").display()))
            .arg(format!("-I{}", top.join("tools/arch/x86/include").display()))
            .arg("-isystem")
            .arg(top.join("usr/include"))
            .arg("-o")
            .arg(out.join(&name))
            .arg(&source)
            .args(&objects)
            .args(["-ldl", "-pthread"])
            .status()
            .expect("running gcc");
        assert!(status.success(), "the selftest of {} does not build: {}", program.display(), source.display());
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn an_op_it_does_not_make_is_refused_in_one_line_with_exit_2() {
    let dir = std::env::temp_dir().join(format!("gmemfuzz-selftest-refuse-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("destroy.txt");
    std::fs::write(&program, "gmemfuzz-program v2\ncreate_gmem size=0x1000 flags=0x0\ndestroy_vm\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gmemfuzz")).arg("selftest").arg(&program).output().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("op #1 is `destroy_vm`") && !stderr.contains("backtrace"), "{stderr}");
    assert!(out.stdout.is_empty());
}
