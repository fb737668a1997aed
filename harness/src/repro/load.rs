//! Loading a program from any file the tools are given: a text program or the raw bytes
//! of a libFuzzer artifact.

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use super::text::{self, Document, HEADER};
use crate::program::Program;

/// Whether `bytes` are (the start of) a text program rather than fuzzer bytes.
fn is_text(bytes: &[u8]) -> bool {
    let head = HEADER.as_bytes();
    // A file cut short inside the header is still a text file, not an artifact.
    bytes.starts_with(head) || (bytes.len() >= 8 && head.starts_with(bytes))
}

/// Reads a program and the expectation it records (artifacts record none).
pub fn load_document(path: &Path) -> Result<Document> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode(&bytes).with_context(|| format!("loading {}", path.display()))
}

pub fn load(path: &Path) -> Result<Program> {
    load_document(path).map(|d| d.program)
}

/// Decodes file contents (see `load`).
pub fn decode(bytes: &[u8]) -> Result<Document> {
    if bytes.is_empty() {
        bail!("the file is empty: neither a text program nor a fuzzer artifact");
    }
    if is_text(bytes) {
        let text = std::str::from_utf8(bytes).context("a text program that is not valid UTF-8")?;
        let doc = text::parse_document(text).context("not a valid text program")?;
        if doc.program.ops.is_empty() {
            bail!("the text program has no ops (truncated?)");
        }
        return Ok(doc);
    }
    match Program::from_bytes(bytes) {
        Some(program) => Ok(Document { program, expect: None }),
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
        assert!(m.contains("program format v7 is newer than this gmemfuzz (v1)"), "{m}");
    }

    #[test]
    fn a_missing_gmem_is_a_valid_program() {
        let d = decode(b"gmemfuzz-program v1\npunch g5 offset=0 len=0x1000\n").unwrap();
        assert_eq!(d.program.ops.len(), 1);
        assert!(matches!(d.program.ops[0], Op::Punch { .. }));
    }
}
