//! Which kernel PCs count: the address ranges of the KVM code (arch/x86/kvm, virt/kvm) of the
//! kernel being fuzzed, so that the scheduler, interrupts and the page allocator do not make
//! every program look new. Without ranges every PC counts.
//!
//! File format (what `gmemfuzz coverage --ranges` writes): one function per line,
//! `0xSTART 0xEND [name [file]]`, half-open, `#` starts a comment.

use anyhow::{bail, Context, Result};

/// The most bytes between two functions that are merged into one span (x86 aligns
/// functions to 16 bytes, some to 64).
const PADDING: u64 = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    /// Sorted, merged, half-open; empty = every PC counts.
    spans: Vec<(u64, u64)>,
}

impl Ranges {
    /// Every PC counts.
    pub fn all() -> Ranges {
        Ranges::default()
    }

    pub fn from_spans(mut spans: Vec<(u64, u64)>) -> Ranges {
        spans.retain(|(a, b)| a < b);
        spans.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
        for (a, b) in spans {
            match merged.last_mut() {
                // Functions a few bytes apart are apart by alignment padding only, where no
                // PC lies: one span makes the lookup of a PC a handful of compares.
                Some(last) if a <= last.1 + PADDING => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        Ranges { spans: merged }
    }

    pub fn parse(text: &str) -> Result<Ranges> {
        let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16);
        let mut spans = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(a), Some(b)) = (words.next(), words.next()) else {
                bail!("line {}: expected `0xSTART 0xEND`, got `{line}`", n + 1);
            };
            let (a, b) = (
                hex(a).with_context(|| format!("line {}: start `{a}`", n + 1))?,
                hex(b).with_context(|| format!("line {}: end `{b}`", n + 1))?,
            );
            if a >= b {
                bail!("line {}: empty range {a:#x}..{b:#x}", n + 1);
            }
            spans.push((a, b));
        }
        if spans.is_empty() {
            bail!("no ranges in the file");
        }
        Ok(Ranges::from_spans(spans))
    }

    pub fn read(path: &std::path::Path) -> Result<Ranges> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ranges::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn is_all(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn contains(&self, pc: u64) -> bool {
        if self.spans.is_empty() {
            return true;
        }
        // The last span starting at or below pc.
        match self.spans.partition_point(|&(a, _)| a <= pc) {
            0 => false,
            i => pc < self.spans[i - 1].1,
        }
    }

    /// The lowest and highest address of any span (`None` without ranges).
    pub fn bounds(&self) -> Option<(u64, u64)> {
        Some((self.spans.first()?.0, self.spans.last()?.1))
    }

    /// Bytes of code covered.
    pub fn size(&self) -> u64 {
        self.spans.iter().map(|(a, b)| b - a).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_merges_and_looks_up() {
        let r = Ranges::parse("# kvm\n0x1000 0x1010 f a.c\n0x1010 0x1020 g\n0x1030 0x1038 h\n0x2000 0x2008\n").unwrap();
        assert_eq!(r.spans, vec![(0x1000, 0x1038), (0x2000, 0x2008)], "adjacent and padded functions merge");
        assert!(r.contains(0x1000) && r.contains(0x101f) && r.contains(0x2007));
        assert!(!r.contains(0xfff) && !r.contains(0x1038) && !r.contains(0x2008) && !r.contains(u64::MAX));
        assert_eq!(r.size(), 0x40);
        assert_eq!(r.bounds(), Some((0x1000, 0x2008)));
    }

    #[test]
    fn every_pc_counts_without_ranges() {
        assert!(Ranges::all().contains(0) && Ranges::all().contains(u64::MAX));
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(Ranges::parse("0x10\n").unwrap_err().to_string().contains("line 1"));
        assert!(Ranges::parse("0x20 0x10\n").unwrap_err().to_string().contains("empty range"));
        assert!(Ranges::parse("zz 0x10\n").is_err());
        assert!(Ranges::parse("# nothing\n").is_err());
    }
}
