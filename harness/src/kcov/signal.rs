//! Kernel coverage as the fuzzer counts it: the PCs reached inside the ranges that count,
//! and edges between consecutive ones (syzkaller's signal: `prev >> 1 ^ pc`, hashed into a
//! bitmap, so a new path through known code is new too).
//!
//! A trace holds 10^4 to 10^5 PCs a program and is read under TCG, so the work per PC is a
//! bounds check, a multiply and two bitmap tests; only a new edge costs more (a push).

use rustc_hash::FxHashSet;

use super::ranges::Ranges;

/// Bits of the edge bitmap (2 MiB): KVM's code has some 10^5 coverage points.
const EDGE_BITS: u32 = 24;

/// The distinct PCs reached: a bitmap over the ranges' bounds (one bit a byte of code), or
/// a hash set where every PC counts.
enum PcSet {
    Window { base: u64, bits: Vec<u64>, count: u64 },
    Any(FxHashSet<u64>),
}

impl PcSet {
    #[inline]
    fn insert(&mut self, pc: u64) {
        match self {
            PcSet::Window { base, bits, count } => {
                let i = (pc - *base) as usize;
                let (word, bit) = (i >> 6, 1u64 << (i & 63));
                if bits[word] & bit == 0 {
                    bits[word] |= bit;
                    *count += 1;
                }
            }
            PcSet::Any(set) => {
                set.insert(pc);
            }
        }
    }

    fn len(&self) -> u64 {
        match self {
            PcSet::Window { count, .. } => *count,
            PcSet::Any(set) => set.len() as u64,
        }
    }

    fn sorted(&self) -> Vec<u64> {
        match self {
            PcSet::Window { base, bits, .. } => bits
                .iter()
                .enumerate()
                .flat_map(|(w, &word)| (0..64).filter(move |b| word & (1 << b) != 0).map(move |b| base + (w * 64 + b) as u64))
                .collect(),
            PcSet::Any(set) => {
                let mut pcs: Vec<u64> = set.iter().copied().collect();
                pcs.sort_unstable();
                pcs
            }
        }
    }
}

/// Everything reached so far.
pub struct Signal {
    ranges: Ranges,
    /// The edge bitmap, one bit a hashed edge.
    edge_bits: Vec<u64>,
    /// Each edge as (previous PC, PC) the first time its bit was set (0: the trace's first),
    /// for the PCs file; as long as the bitmap's count of bits set.
    edges: Vec<(u64, u64)>,
    pcs: PcSet,
    /// PCs read from traces (in range or not), for the cost per program.
    traced: u64,
}

impl Signal {
    pub fn new(ranges: Ranges) -> Signal {
        let pcs = match ranges.bounds() {
            Some((base, end)) => PcSet::Window { base, bits: vec![0; ((end - base) as usize).div_ceil(64)], count: 0 },
            None => PcSet::Any(FxHashSet::default()),
        };
        Signal { ranges, edge_bits: vec![0; 1 << (EDGE_BITS - 6)], edges: Vec::new(), pcs, traced: 0 }
    }

    /// Adds a program's trace; returns how many edges it reached that nothing had before.
    pub fn add(&mut self, trace: impl IntoIterator<Item = u64>) -> u64 {
        // Fields split into locals: the loop runs under TCG, where every reload of a field
        // through `self` is an emulated memory access.
        let Signal { ranges, edge_bits, edges, pcs, traced } = self;
        let (ranges, edge_bits) = (&*ranges, &mut edge_bits[..]);
        let (mut new, mut seen, mut prev) = (0u64, 0u64, 0u64);
        for pc in trace {
            seen += 1;
            if !ranges.contains(pc) {
                continue;
            }
            let edge = Self::slot(prev >> 1 ^ pc);
            let (word, bit) = ((edge >> 6) as usize, 1u64 << (edge & 63));
            if edge_bits[word] & bit == 0 {
                edge_bits[word] |= bit;
                edges.push((prev, pc));
                new += 1;
            }
            if pc != prev {
                pcs.insert(pc);
            }
            prev = pc;
        }
        *traced += seen;
        new
    }

    #[inline]
    fn slot(x: u64) -> u64 {
        // Fibonacci hashing: the top EDGE_BITS bits of x times 2^64/phi.
        x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - EDGE_BITS)
    }

    pub fn edges(&self) -> u64 {
        self.edges.len() as u64
    }

    pub fn pc_count(&self) -> u64 {
        self.pcs.len()
    }

    /// PCs read from traces so far, counted or not.
    pub fn traced(&self) -> u64 {
        self.traced
    }

    /// The distinct PCs reached, sorted.
    pub fn pcs(&self) -> Vec<u64> {
        self.pcs.sorted()
    }

    /// The PCs and edges reached as a PCs file (`gmemfuzz coverage` reads it).
    pub fn pcs_file(&self, header: &str) -> String {
        let mut edges = self.edges.clone();
        edges.sort_unstable();
        let header = [header.to_string(), format!("{} PCs, {} edges", self.pcs.len(), edges.len())];
        super::format::format_pcs(&header, self.pcs(), edges)
    }

    pub fn ranges(&self) -> &Ranges {
        &self.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_new_edges_once_and_filters_by_range() {
        let mut s = Signal::new(Ranges::from_spans(vec![(0x1000, 0x2000)]));
        assert_eq!(s.add([0x1000, 0x1010, 0x5000, 0x1020]), 3);
        assert_eq!(s.add([0x1000, 0x1010, 0x1020]), 0, "the PC outside the ranges is not part of the path");
        assert_eq!(s.add([0x1010, 0x1000]), 2, "same PCs, new edges");
        assert_eq!(s.edges(), 5);
        assert_eq!(s.pcs(), vec![0x1000, 0x1010, 0x1020]);
        assert_eq!(s.pc_count(), 3);
        assert_eq!(s.traced(), 9);
    }

    #[test]
    fn each_new_edge_is_kept_once_as_its_pair_and_written() {
        let mut s = Signal::new(Ranges::from_spans(vec![(0x1000, 0x2000)]));
        s.add([0x1000, 0x1010, 0x5000, 0x1020]);
        s.add([0x1000, 0x1010, 0x1010]);
        let expected = [(0, 0x1000), (0x1000, 0x1010), (0x1010, 0x1020), (0x1010, 0x1010)];
        assert_eq!(s.edges, expected, "in the order first reached, the out-of-range PC skipped");
        let file = s.pcs_file("t");
        assert!(file.contains("# 3 PCs, 4 edges\n0x1000\n0x1010\n0x1020\n0x0 0x1000\n"), "{file}");
        let read = crate::kcov::format::parse_pcs(&file).unwrap();
        assert_eq!(read.pcs, [0x1000, 0x1010, 0x1020].into());
        assert_eq!(read.edges, expected.into());
    }

    #[test]
    fn every_pc_counts_without_ranges() {
        let mut s = Signal::new(Ranges::all());
        assert_eq!(s.add([u64::MAX - 1, 3, 3]), 3);
        assert_eq!(s.pcs(), vec![3, u64::MAX - 1]);
    }
}
