//! Loading a program from any file the tools are given: a text program or the raw bytes
//! of a libFuzzer artifact.
//!
//! An artifact is generator input: what it decodes to depends on the profile of the kernel
//! it ran on and on the generator's version. A fuzz target saves the program that ran
//! beside it as `<artifact>.txt` (see `fuzz::artifact`); that file, when present, is what
//! is loaded. Without it the bytes are decoded as the target did, with the profile of the
//! VM type given (probed when /dev/kvm is here, else the assumed one): right when the
//! generator and the kernel are those of the run that saved it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::{Backend, Profile};

use super::text::{self, looks_like_text, Document, HEADER};
use crate::gen::OpWeights;
use crate::input;
use crate::program::Program;

/// The profile fuzz inputs for `vm_type` decode under here: the probed one when a VM of
/// that type can be made (as the target does), else the assumed one.
fn decoding_profile(vm_type: u64) -> Profile {
    match KvmBackend::new(vm_type) {
        Ok(b) => b.profile().clone(),
        Err(e) => {
            let p = Profile::assumed(vm_type);
            eprintln!("gmemfuzz: no VM of type {vm_type} here ({e}); decoding for the assumed profile {}", p.summary());
            p
        }
    }
}

/// `<artifact>.txt`, the program a fuzz target saved beside its artifact.
fn text_beside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".txt");
    PathBuf::from(name)
}

/// Reads a program and what its file records. `vm_type` is the VM type raw fuzzer bytes
/// are decoded for when no text program is beside them (0 when `None`).
pub fn load_document(path: &Path, vm_type: Option<u64>) -> Result<Document> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if !bytes.is_empty() && !looks_like_text(&bytes) && after_leading_comments(&bytes).is_none() {
        let beside = text_beside(path);
        if beside.is_file() {
            eprintln!("gmemfuzz: reading {}, the program the fuzz target ran for this artifact", beside.display());
            return load_document(&beside, vm_type);
        }
        let vm_type = vm_type.unwrap_or(0);
        eprintln!(
            "gmemfuzz: {} is raw fuzzer input with no .txt beside it: decoding it for VM type {vm_type} with this generator \
             (right only if both match the run that saved it; give --vm-type for another VM type)",
            path.display()
        );
        return decode(&bytes, &decoding_profile(vm_type)).with_context(|| format!("loading {}", path.display()));
    }
    decode(&bytes, &Profile::host_6_18()).with_context(|| format!("loading {}", path.display()))
}

/// Reads a program (raw fuzzer bytes decode for VM type 0 unless a `.txt` is beside them).
pub fn load(path: &Path) -> Result<Program> {
    load_document(path, None).map(|d| d.program)
}

/// A text program after leading `#` lines: how `gmemfuzz run --findings` wrote its
/// findings before they recorded their profile (`# <finding>` above the header).
fn after_leading_comments(bytes: &[u8]) -> Option<&[u8]> {
    let mut rest = bytes;
    while rest.first() == Some(&b'#') {
        let end = rest.iter().position(|&b| b == b'\n')?;
        rest = &rest[end + 1..];
    }
    (rest.len() < bytes.len() && looks_like_text(rest)).then_some(rest)
}

/// Decodes file contents: a text program, or fuzzer bytes decoded under `profile`.
pub fn decode(bytes: &[u8], profile: &Profile) -> Result<Document> {
    if bytes.is_empty() {
        bail!("the file is empty: neither a text program nor a fuzzer artifact");
    }
    let bytes = after_leading_comments(bytes).unwrap_or(bytes);
    if looks_like_text(bytes) {
        let text = std::str::from_utf8(bytes).context("a text program that is not valid UTF-8")?;
        let doc = text::parse_document(text).context("not a valid text program")?;
        if doc.program.ops.is_empty() {
            bail!("the text program has no ops (truncated?)");
        }
        return Ok(doc);
    }
    match input::generated(bytes, profile, &OpWeights::for_profile(profile)) {
        Some(program) => Ok(Document::new(program)),
        None => bail!(
            "{} bytes that are neither a text program (no `{HEADER}` header) nor a fuzzer artifact that decodes to a program \
             (they make no op that reaches the kernel)",
            bytes.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gmemfuzz_backends::Op;

    fn decode(bytes: &[u8]) -> Result<Document> {
        super::decode(bytes, &Profile::host_6_18())
    }

    fn message(r: Result<Document>) -> String {
        format!("{:#}", r.expect_err("should fail"))
    }

    #[test]
    fn empty_file_is_a_clear_error() {
        assert!(message(decode(b"")).contains("empty"));
    }

    #[test]
    fn artifact_bytes_decode_as_the_fuzzer_does() {
        let bytes: Vec<u8> = (0..400u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let expected = Program::from_bytes(&bytes);
        match decode(&bytes) {
            Ok(d) => assert_eq!(Some(d.program), expected),
            Err(e) => assert!(expected.is_none(), "{e:#}"),
        }
    }

    #[test]
    fn corrupt_artifact_is_a_clear_error() {
        // Too few bytes to make a file and another op.
        let m = message(decode(&[0xff]));
        assert!(m.contains("neither a text program"), "{m}");
    }

    #[test]
    fn truncated_text_is_a_clear_error() {
        let m = message(decode(b"gmemfuzz-prog"));
        assert!(m.contains("expected the header"), "{m}");
        let m = message(decode(b"gmemfuzz-program v1\n"));
        assert!(m.contains("no ops"), "{m}");
        let m = message(decode(b"gmemfuzz-program v1\ncreate_gmem size=0x1000 fla"));
        assert!(m.contains("line 2"), "{m}");
    }

    #[test]
    fn newer_version_is_a_clear_error() {
        let m = message(decode(b"gmemfuzz-program v7\ncheck\n"));
        assert!(m.contains("program format v7 is newer than this gmemfuzz (v3)"), "{m}");
    }

    #[test]
    fn old_findings_with_a_comment_above_the_header_are_text() {
        let d = decode(b"# gmemfuzz DIVERGENCE: x\n# more\ngmemfuzz-program v1\ncreate_gmem size=0x1000 flags=0\ncheck\n").unwrap();
        assert_eq!(d.program.ops, vec![Op::CreateGmem { size: 0x1000, flags: 0 }, Op::Check]);
    }

    #[test]
    fn a_missing_gmem_is_a_valid_program() {
        let d = decode(b"gmemfuzz-program v1\npunch g5 offset=0 len=0x1000\n").unwrap();
        assert_eq!(d.program.ops.len(), 1);
        assert!(matches!(d.program.ops[0], Op::Punch { .. }));
    }
}
