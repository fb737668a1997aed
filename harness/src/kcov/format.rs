//! The KCOV file formats: what the guest's `gmemfuzz run --kcov` writes and the coverage
//! report reads (PCs files), and what says which PCs count (ranges files).
//!
//! PCs files: the unique kernel PCs and edges one lane boot reached. A line holds a PC, one
//! hex address (`0xffffffff81234567`), or an edge, two: the previous PC of the trace and the
//! PC (`0xffffffff81234500 0xffffffff81234567`; `0x0` before a trace's first). `#` comments
//! and blank lines are allowed; files from before edges were written hold PCs only. Several
//! files merge by union.
//!
//! Ranges files (`gmemfuzz coverage --ranges FILE`): `#` comment lines, then one function a
//! line, sorted by start, `0xSTART 0xEND name file`, half-open [START, END), lowercase hex,
//! `file` the source relative to the kernel tree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// What PCs files list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reached {
    pub pcs: BTreeSet<u64>,
    /// (previous PC, PC).
    pub edges: BTreeSet<(u64, u64)>,
}

impl Reached {
    pub fn extend(&mut self, other: Reached) {
        self.pcs.extend(other.pcs);
        self.edges.extend(other.edges);
    }
}

/// A PCs file: `#` lines for `header`, then one `0x` PC a line, then one edge a line.
pub fn format_pcs(header: &[String], pcs: impl IntoIterator<Item = u64>, edges: impl IntoIterator<Item = (u64, u64)>) -> String {
    let mut out: String = header.iter().map(|h| format!("# {h}\n")).collect();
    for pc in pcs {
        out.push_str(&format!("{pc:#x}\n"));
    }
    for (prev, pc) in edges {
        out.push_str(&format!("{prev:#x} {pc:#x}\n"));
    }
    out
}

/// The PCs and edges one file lists.
pub fn parse_pcs(text: &str) -> Result<Reached> {
    let mut reached = Reached::default();
    for (n, raw) in text.lines().enumerate() {
        let address = |word: &str| {
            let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) else {
                bail!("line {}: {raw:?}: {word:?} is not a 0x-prefixed hex address", n + 1);
            };
            u64::from_str_radix(hex, 16).with_context(|| format!("line {}: {raw:?}: {word:?} is not a hex address", n + 1))
        };
        let words: Vec<&str> = raw.split('#').next().unwrap_or("").split_whitespace().collect();
        match words[..] {
            [] => {}
            [pc] => {
                reached.pcs.insert(address(pc)?);
            }
            [prev, pc] => {
                reached.edges.insert((address(prev)?, address(pc)?));
            }
            _ => bail!("line {}: {raw:?} is neither a PC nor an edge (one or two addresses)", n + 1),
        }
    }
    Ok(reached)
}

/// The union of what every file lists.
pub fn read_pcs_files<P: AsRef<Path>>(files: &[P]) -> Result<Reached> {
    let mut all = Reached::default();
    for file in files {
        let file = file.as_ref();
        let text = std::fs::read_to_string(file).with_context(|| format!("reading PCs file {}", file.display()))?;
        all.extend(parse_pcs(&text).with_context(|| format!("PCs file {}", file.display()))?);
    }
    Ok(all)
}

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

/// Reads the ranges file format back.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_back_and_a_bad_line_is_named() {
        let ranges = vec![
            FunctionRange {
                start: 0xffffffff81000000,
                end: 0xffffffff81000040,
                name: "kvm_gmem_punch".into(),
                file: "virt/kvm/guest_memfd.c".into(),
            },
            FunctionRange {
                start: 0xffffffff81000040,
                end: 0xffffffff81000100,
                name: "kvm_vm_ioctl".into(),
                file: "virt/kvm/kvm_main.c".into(),
            },
        ];
        let text = format_ranges(&ranges, Path::new("/k/bzImage"));
        assert!(text.starts_with("# gmemfuzz coverage --ranges: functions of arch/x86/kvm/ and virt/kvm/ in /k/bzImage\n"), "{text}");
        assert!(text.ends_with("0xffffffff81000040 0xffffffff81000100 kvm_vm_ioctl virt/kvm/kvm_main.c\n"), "{text}");
        assert_eq!(parse_ranges(&text).unwrap(), ranges);
        let err = parse_ranges("# h\n0x1 0x2 f\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn comments_blanks_and_case_are_accepted() {
        let text = "# boot 1, vm type 1\n0xffffffff81234567\n\n  0XFFFFFFFF8100000A  # trailing\n0xffffffff81234567\n";
        let read = parse_pcs(text).unwrap();
        assert_eq!(read.pcs, [0xffffffff81234567, 0xffffffff8100000a].into());
        assert!(read.edges.is_empty(), "a file of PCs only has no edges");
    }

    #[test]
    fn pcs_and_edges_mix_and_read_back() {
        let text = "# 2 PCs, 2 edges\n0x10\n0x20\n0x0 0x10\n 0x10\t0X20 # an edge\n0x30\n";
        let read = parse_pcs(text).unwrap();
        assert_eq!(read.pcs, [0x10, 0x20, 0x30].into());
        assert_eq!(read.edges, [(0, 0x10), (0x10, 0x20)].into());
        let again = format_pcs(&["h".into()], read.pcs.iter().copied(), read.edges.iter().copied());
        assert_eq!(again, "# h\n0x10\n0x20\n0x30\n0x0 0x10\n0x10 0x20\n");
        assert_eq!(parse_pcs(&again).unwrap(), read);
    }

    #[test]
    fn a_bad_line_is_named() {
        for (text, line) in [
            ("0x10\nffffffff81000000\n", "line 2"),
            ("0xzz\n", "line 1"),
            ("0x10\n\n0x1 0x2 0x3\n", "line 3"),
            ("0x1 0xzz\n", "line 1"),
            ("0x1 2\n", "line 1"),
        ] {
            let err = parse_pcs(text).unwrap_err().to_string();
            assert!(err.contains(line), "{text:?}: {err}");
        }
    }

    #[test]
    fn files_merge_by_union() {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-pcs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a.pcs"), dir.join("b.pcs"));
        std::fs::write(&a, "0x3\n0x1\n0x1 0x3\n").unwrap();
        std::fs::write(&b, "# other boot\n0x2\n0x3\n0x1 0x3\n0x3 0x2\n").unwrap();
        let merged = read_pcs_files(&[&a, &b]).unwrap();
        assert_eq!(merged.pcs, [1, 2, 3].into());
        assert_eq!(merged.edges, [(1, 3), (3, 2)].into());
        std::fs::write(&b, "").unwrap();
        assert_eq!(read_pcs_files(&[&b]).unwrap(), Reached::default());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
