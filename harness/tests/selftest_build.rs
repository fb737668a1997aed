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

/// The programs whose selftests must build: the lane's regressions, on VM type 1.
fn programs() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("corpus/lane"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

fn generate(path: &Path) -> String {
    let doc = load_document(path, Some(1)).unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let lines = op_lines(&text, doc.program.ops.len());
    let file = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    emit(&doc.program, &Profile::assumed(1), &Origin { file: &file, lines }).unwrap()
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
    for program in programs() {
        let name = program.file_stem().unwrap().to_string_lossy().into_owned();
        let source = out.join(format!("{name}.c"));
        std::fs::write(&source, generate(&program)).unwrap();
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
fn a_program_with_a_group_is_refused_in_one_line_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_gmemfuzz"))
        .arg("selftest")
        .arg(root().join("docs/findings/gmem-release-vs-memslot-delete.txt"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("concurrent group") && !stderr.contains("backtrace"), "{stderr}");
    assert!(out.stdout.is_empty());
}
