//! The program of a crashing input, saved as text beside libFuzzer's artifact of it.
//!
//! libFuzzer writes a crashing input to `<artifact_prefix>crash-<sha1 of the input>`
//! (`-artifact_prefix`, a plain string prefix: `cargo fuzz` passes `fuzz/artifacts/<target>/`;
//! without it the prefix is empty, so the artifact lands in the current directory), or to
//! `-exact_artifact_path` when that is given. The target writes the program it ran to the
//! same path plus `.txt`: a text program whose header records `vm-type` and `profile`, and
//! the finding's first line as a comment. The same happens when a target binary is run on
//! an artifact to reproduce it (libFuzzer writes no artifact then, the `.txt` is rewritten).

use std::path::{Path, PathBuf};

use gmemfuzz_backends::Profile;

use crate::program::Program;
use crate::repro::text::{print_document, Document};

/// The value of libFuzzer flag `-name=value` in `args` (the last one, as libFuzzer reads them).
fn flag(args: &[String], name: &str) -> Option<String> {
    let key = format!("-{name}=");
    args.iter().rev().find_map(|a| a.strip_prefix(&key).map(str::to_string))
}

/// libFuzzer's name for a crashing input: `crash-` and the SHA-1 of its bytes in hex.
pub fn crash_name(data: &[u8]) -> String {
    format!("crash-{}", sha1_smol::Sha1::from(data).digest())
}

/// Where the text program of a crashing input goes, given the process arguments.
pub fn text_path(args: impl IntoIterator<Item = String>, data: &[u8]) -> PathBuf {
    let args: Vec<String> = args.into_iter().collect();
    let artifact = match flag(&args, "exact_artifact_path") {
        Some(exact) => exact,
        None => flag(&args, "artifact_prefix").unwrap_or_default() + &crash_name(data),
    };
    PathBuf::from(artifact + ".txt")
}

/// Writes `program` as text to `path` (`found_text`).
pub fn save(path: &Path, program: &Program, profile: &Profile, finding: &str) -> std::io::Result<()> {
    std::fs::write(path, found_text(program, profile, finding))
}

/// `program` as text, recording the VM type and profile it ran on and the first line of
/// `finding`.
pub fn found_text(program: &Program, profile: &Profile, finding: &str) -> String {
    let doc = Document { vm_type: Some(profile.vm_type), profile: Some(profile.summary()), ..Document::new(program.clone()) };
    let first = finding.lines().find(|l| !l.trim().is_empty()).unwrap_or("(no message)");
    print_document(&doc, &[&format!("found: {first}")])
}

/// A program that made the kernel splat, as text: it records the VM type and profile it ran
/// on, expects the splat (`# expect: splat KASAN`), and carries the kernel's report as comments.
pub fn splat_text(program: &Program, profile: &Profile, splat: &crate::splat::Splat) -> String {
    let doc = Document {
        expect: Some(crate::repro::Expectation::Splat { kind: splat.kind }),
        vm_type: Some(profile.vm_type),
        profile: Some(profile.summary()),
        ..Document::new(program.clone())
    };
    let report: Vec<String> =
        std::iter::once("the kernel logged while this ran:".to_string()).chain(splat.excerpt.lines().map(|l| format!("  {l}"))).collect();
    let comments: Vec<&str> = report.iter().map(String::as_str).collect();
    print_document(&doc, &comments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::input;
    use crate::repro::load;
    use rand::{RngCore, SeedableRng};

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_splat_finding_expects_its_splat_and_carries_the_report() {
        let program = crate::repro::parse("gmemfuzz-program v3\ncreate_gmem size=0x1000 flags=0x0\nclose_gmem g0\n").unwrap();
        let splat =
            crate::splat::scan("[ 13.5] BUG: KASAN: slab-use-after-free in kvm_gmem_release+0x38f/0x410\n[ 13.5] Write of size 8\n")
                .remove(0);
        let text = splat_text(&program, &Profile::sw_protected_7_2(), &splat);
        let doc = crate::repro::parse_document(&text).unwrap();
        assert_eq!(doc.program, program);
        assert_eq!(doc.expect, Some(crate::repro::Expectation::Splat { kind: "KASAN" }));
        assert_eq!(doc.vm_type, Some(1));
        assert!(text.contains("# [ 13.5] BUG: KASAN: slab-use-after-free in kvm_gmem_release"), "{text}");
    }

    #[test]
    fn crash_names_are_libfuzzers() {
        // sha1("abc"), as `sha1sum` gives it.
        assert_eq!(crash_name(b"abc"), "crash-a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn the_text_goes_beside_the_artifact() {
        let d = b"abc";
        let name = "crash-a9993e364706816aba3e25717850c26c9cd0d89d.txt";
        let with = args(&["diff_kvm", "corpus", "-max_total_time=5", "-artifact_prefix=fuzz/artifacts/diff_kvm/"]);
        assert_eq!(text_path(with, d), PathBuf::from(format!("fuzz/artifacts/diff_kvm/{name}")));
        // Without the flag libFuzzer writes into the current directory.
        assert_eq!(text_path(args(&["diff_kvm", "corpus"]), d), PathBuf::from(name));
        // The prefix is a string prefix, not a directory; the last flag wins.
        let twice = args(&["x", "-artifact_prefix=a/", "-artifact_prefix=out/x-"]);
        assert_eq!(text_path(twice, d), PathBuf::from(format!("out/x-{name}")));
        let exact = args(&["x", "-artifact_prefix=a/", "-exact_artifact_path=/tmp/found"]);
        assert_eq!(text_path(exact, d), PathBuf::from("/tmp/found.txt"));
    }

    /// An input whose bytes decode to different programs on `a` and `b`.
    fn ambiguous_input(a: &Profile, b: &Profile) -> (Vec<u8>, Program) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        loop {
            let mut bytes = vec![0u8; 256];
            rng.fill_bytes(&mut bytes);
            if let Some(p) = input::decode(&bytes, a) {
                if input::decode(&bytes, b).as_ref() != Some(&p) {
                    return (bytes, p);
                }
            }
        }
    }

    #[test]
    fn an_artifact_saved_under_vm_type_1_loads_as_the_program_that_ran() {
        let ran_on = Profile::sw_protected_6_12();
        let (data, ran) = ambiguous_input(&ran_on, &Profile::host_6_18());
        let dir = std::env::temp_dir().join(format!("gmemfuzz-artifact-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let prefix = format!("{}/", dir.display());
        // What libFuzzer writes, and what the target writes through `Crash::report`.
        let artifact = PathBuf::from(format!("{prefix}{}", crash_name(&data)));
        std::fs::write(&artifact, &data).unwrap();
        let text = text_path(["diff_kvm".to_string(), format!("-artifact_prefix={prefix}")], &data);
        assert_eq!(text, PathBuf::from(format!("{}.txt", artifact.display())));
        save(&text, &ran, &ran_on, "gmemfuzz DIVERGENCE (stale read) at op 3\n  more detail").unwrap();
        let written = std::fs::read_to_string(&text).unwrap();
        assert!(written.contains("# vm-type: 1\n") && written.contains("# found: gmemfuzz DIVERGENCE (stale read) at op 3\n"), "{written}");

        // `show`, `replay` and the rest load the artifact as the program that ran, with the
        // VM type and profile it ran on, whatever VM type they would decode bytes for.
        let doc = load::load_document(&artifact, None).unwrap();
        assert_eq!(doc.program, ran);
        assert_eq!((doc.vm_type, doc.profile), (Some(1), Some(ran_on.summary())));

        // Without the text, the bytes decoded for the host's profile (what `load` did for
        // every artifact before) are another program; under the profile it ran on they are it.
        std::fs::remove_file(&text).unwrap();
        assert_ne!(load::decode(&data, &Profile::host_6_18()).unwrap().program, ran);
        assert_eq!(load::decode(&data, &ran_on).unwrap().program, ran);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
