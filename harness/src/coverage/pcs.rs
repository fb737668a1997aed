//! PCs files: the unique kernel PCs one lane boot reached, one hex address a line
//! (`0xffffffff81234567`), `#` comments and blank lines allowed. Several files merge by union.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// A PCs file: `#` lines for `header`, then one `0x` PC a line.
pub fn format_pcs(header: &[String], pcs: impl IntoIterator<Item = u64>) -> String {
    let mut out: String = header.iter().map(|h| format!("# {h}\n")).collect();
    for pc in pcs {
        out.push_str(&format!("{pc:#x}\n"));
    }
    out
}

/// The PCs one file lists (in file order, duplicates kept).
pub fn parse_pcs(text: &str) -> Result<Vec<u64>> {
    let mut pcs = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some(hex) = line.strip_prefix("0x").or_else(|| line.strip_prefix("0X")) else {
            bail!("line {}: {raw:?} is not a 0x-prefixed hex address", n + 1);
        };
        let pc = u64::from_str_radix(hex, 16).with_context(|| format!("line {}: {raw:?} is not a hex address", n + 1))?;
        pcs.push(pc);
    }
    Ok(pcs)
}

/// The union of the PCs of every file.
pub fn read_pcs_files<P: AsRef<Path>>(files: &[P]) -> Result<BTreeSet<u64>> {
    let mut all = BTreeSet::new();
    for file in files {
        let file = file.as_ref();
        let text = std::fs::read_to_string(file).with_context(|| format!("reading PCs file {}", file.display()))?;
        all.extend(parse_pcs(&text).with_context(|| format!("PCs file {}", file.display()))?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blanks_and_case_are_accepted() {
        let text = "# boot 1, vm type 1\n0xffffffff81234567\n\n  0XFFFFFFFF8100000A  # trailing\n0xffffffff81234567\n";
        assert_eq!(parse_pcs(text).unwrap(), vec![0xffffffff81234567, 0xffffffff8100000a, 0xffffffff81234567]);
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = parse_pcs("0x10\nffffffff81000000\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse_pcs("0xzz\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn files_merge_by_union() {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-pcs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.pcs"), dir.join("b.pcs"));
        std::fs::write(&a, "0x3\n0x1\n").unwrap();
        std::fs::write(&b, "# other boot\n0x2\n0x3\n").unwrap();
        let merged: Vec<u64> = read_pcs_files(&[&a, &b]).unwrap().into_iter().collect();
        assert_eq!(merged, vec![1, 2, 3]);
        std::fs::write(&b, "").unwrap();
        assert_eq!(read_pcs_files(&[&b]).unwrap().len(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
