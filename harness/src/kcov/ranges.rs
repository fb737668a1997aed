//! Which kernel PCs count: the address ranges of the KVM code (arch/x86/kvm, virt/kvm) of the
//! kernel being fuzzed, so that the scheduler, interrupts and the page allocator do not make
//! every program look new. Without ranges every PC counts.
//!
//! File format: what `gmemfuzz coverage --ranges` writes (`format::format_ranges`).

use anyhow::{bail, Context, Result};

/// The most bytes between two functions that are merged into one span (x86 aligns
/// functions to 16 bytes, some to 64).
const PADDING: u64 = 64;

/// Bytes of code a bit of the lookup tables stands for.
const GRANULE: u64 = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges {
    /// Sorted, merged, half-open; empty = every PC counts.
    spans: Vec<(u64, u64)>,
    /// Per GRANULE bytes from the first span's start: wholly inside a span (`inside`), or
    /// partly (`edge`, looked up in `spans`). A trace is read under TCG, 10^5 PCs a
    /// program, nearly all outside KVM: one bit test rejects those.
    inside: Vec<u64>,
    edge: Vec<u64>,
}

impl Ranges {
    /// Every PC counts.
    pub fn all() -> Ranges {
        Ranges::default()
    }

    fn tables(spans: &[(u64, u64)]) -> (Vec<u64>, Vec<u64>) {
        let (Some(&(base, _)), Some(&(_, end))) = (spans.first(), spans.last()) else { return (Vec::new(), Vec::new()) };
        let granules = (end - base).div_ceil(GRANULE) as usize;
        let (mut inside, mut edge) = (vec![0u64; granules.div_ceil(64)], vec![0u64; granules.div_ceil(64)]);
        let set = |bits: &mut Vec<u64>, g: u64| bits[(g / 64) as usize] |= 1 << (g % 64);
        for &(a, b) in spans {
            let (first, last) = ((a - base) / GRANULE, (b - 1 - base) / GRANULE);
            for g in first..=last {
                let (ga, gb) = (base + g * GRANULE, base + (g + 1) * GRANULE);
                if a <= ga && gb <= b {
                    set(&mut inside, g);
                } else {
                    set(&mut edge, g);
                }
            }
        }
        (inside, edge)
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
        let (inside, edge) = Self::tables(&merged);
        Ranges { spans: merged, inside, edge }
    }

    /// Reads the ranges file format (`format::parse_ranges`).
    pub fn parse(text: &str) -> Result<Ranges> {
        let functions = super::format::parse_ranges(text)?;
        if functions.is_empty() {
            bail!("no ranges in the file");
        }
        Ok(Ranges::from_spans(functions.iter().map(|f| (f.start, f.end)).collect()))
    }

    pub fn read(path: &std::path::Path) -> Result<Ranges> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ranges::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn is_all(&self) -> bool {
        self.spans.is_empty()
    }

    #[inline]
    pub fn contains(&self, pc: u64) -> bool {
        let Some(&(base, _)) = self.spans.first() else { return true };
        let Some(g) = pc.checked_sub(base).map(|o| o / GRANULE) else { return false };
        let (word, bit) = ((g / 64) as usize, 1u64 << (g % 64));
        match self.inside.get(word) {
            None => return false,
            Some(w) if w & bit != 0 => return true,
            _ if self.edge[word] & bit == 0 => return false,
            _ => {}
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
        let r = Ranges::parse("# kvm\n0x1000 0x1010 f a.c\n0x1010 0x1020 g a.c\n0x1030 0x1038 h a.c\n0x2000 0x2008 i b.c\n").unwrap();
        assert_eq!(r.spans, vec![(0x1000, 0x1038), (0x2000, 0x2008)], "adjacent and padded functions merge");
        assert!(r.contains(0x1000) && r.contains(0x101f) && r.contains(0x2007));
        assert!(!r.contains(0xfff) && !r.contains(0x1038) && !r.contains(0x2008) && !r.contains(u64::MAX));
        for pc in 0xf00..0x2100 {
            let want = (0x1000..0x1038).contains(&pc) || (0x2000..0x2008).contains(&pc);
            assert_eq!(r.contains(pc), want, "{pc:#x}");
        }
        assert_eq!(r.size(), 0x40);
        assert_eq!(r.bounds(), Some((0x1000, 0x2008)));
    }

    #[test]
    fn every_pc_counts_without_ranges() {
        assert!(Ranges::all().contains(0) && Ranges::all().contains(u64::MAX));
    }

    #[test]
    fn bad_files_are_refused() {
        assert!(Ranges::parse("0x10\n").unwrap_err().to_string().contains("line 1"));
        assert!(Ranges::parse("zz 0x10 f a.c\n").is_err());
        assert!(Ranges::parse("# nothing\n").unwrap_err().to_string().contains("no ranges"));
    }
}
