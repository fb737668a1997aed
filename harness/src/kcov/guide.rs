//! Coverage-guided generation for `gmemfuzz run --kcov guide`: the generator's input bytes
//! of every program that reached new kernel edges are kept and mutated (libFuzzer's loop,
//! with KCOV as its coverage), and the operands the kernel compared while running them
//! become values that mutations write into the bytes (libFuzzer's dictionary, syzkaller's
//! hints).
//!
//! Inputs have the fixed length of `Program::seeded`'s (16 + 96 bytes an op), so a program
//! decoded from one has the session's op count, as unguided programs do.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rustc_hash::FxHashSet;

use super::ranges::Ranges;
use super::signal::Signal;
use super::Comparison;

/// Values kept from comparisons; past this, a new one replaces a random one.
const DICTIONARY_MAX: usize = 4096;
/// One input in this many is fresh random bytes, not a mutation: fresh programs are what
/// finds breadth (a 10-minute lane run sees a few thousand programs), mutations depth.
const FRESH_EVERY: u32 = 2;

pub struct Guide {
    rng: StdRng,
    len: usize,
    corpus: Vec<Vec<u8>>,
    dictionary: Vec<u64>,
    in_dictionary: FxHashSet<u64>,
    pub signal: Signal,
}

impl Guide {
    pub fn new(seed: u64, ops: usize, ranges: Ranges) -> Guide {
        Guide {
            rng: StdRng::seed_from_u64(seed),
            len: crate::Program::seeded_input_len(ops),
            corpus: Vec::new(),
            dictionary: Vec::new(),
            in_dictionary: FxHashSet::default(),
            signal: Signal::new(ranges),
        }
    }

    pub fn corpus(&self) -> &[Vec<u8>] {
        &self.corpus
    }

    /// An input of this session's length made from stored bytes (a previous boot's corpus):
    /// cut or padded with zeros, as the generator reads an exhausted input.
    pub fn fit(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.resize(self.len, 0);
        bytes
    }

    pub fn dictionary_len(&self) -> usize {
        self.dictionary.len()
    }

    /// Fresh random bytes.
    pub fn fresh(&mut self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.len];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }

    /// The next input to run: a mutation of a kept one, or now and then a fresh one.
    pub fn next_input(&mut self) -> Vec<u8> {
        if self.corpus.is_empty() || self.rng.random_ratio(1, FRESH_EVERY) {
            return self.fresh();
        }
        let mut bytes = self.corpus[self.rng.random_range(0..self.corpus.len())].clone();
        bytes.resize(self.len, 0);
        for _ in 0..self.rng.random_range(1..=4) {
            self.mutate(&mut bytes);
        }
        bytes
    }

    fn mutate(&mut self, bytes: &mut [u8]) {
        let len = bytes.len();
        let at = self.rng.random_range(0..len);
        match self.rng.random_range(0..6) {
            0 => bytes[at] ^= 1 << self.rng.random_range(0..8),
            1 => bytes[at] = self.rng.random(),
            2 | 3 if !self.dictionary.is_empty() => {
                // A value the kernel compared against, at one of its widths, maybe off by one.
                let mut value = self.dictionary[self.rng.random_range(0..self.dictionary.len())];
                value = value.wrapping_add([0, 1, u64::MAX][self.rng.random_range(0..3)]);
                let width = [1, 2, 4, 8][self.rng.random_range(0..4)].min(len - at);
                bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
            4 if self.corpus.len() > 1 => {
                // Crossover: the same stretch of another kept input (inputs are read in order,
                // so a stretch at the same place is roughly the same ops).
                let other = &self.corpus[self.rng.random_range(0..self.corpus.len())];
                let end = (at + self.rng.random_range(1..=192)).min(len).min(other.len());
                if at < end {
                    bytes[at..end].copy_from_slice(&other[at..end]);
                }
            }
            _ => {
                // About one op's worth of new bytes.
                let end = (at + 96).min(len);
                self.rng.fill_bytes(&mut bytes[at..end]);
            }
        }
    }

    /// Adds a program's trace; keeps `input` if it reached a new edge. Returns the new edges.
    pub fn add(&mut self, input: &[u8], trace: impl IntoIterator<Item = u64>) -> u64 {
        let new = self.signal.add(trace);
        if new > 0 {
            self.corpus.push(input.to_vec());
        }
        new
    }

    /// Keeps the operands of the kernel's comparisons in the code that counts, other than
    /// values every input has already (0, 1, -1) and kernel pointers (no op argument is one).
    pub fn add_comparisons(&mut self, comparisons: &[Comparison]) -> usize {
        let before = self.dictionary.len();
        for c in comparisons.iter().filter(|c| self.signal.ranges().contains(c.pc)) {
            for value in c.args {
                let kernel_pointer = value >> 48 == 0xffff && value != u64::MAX;
                if value <= 1 || value == u64::MAX || kernel_pointer || !self.in_dictionary.insert(value) {
                    continue;
                }
                if self.dictionary.len() < DICTIONARY_MAX {
                    self.dictionary.push(value);
                } else {
                    let i = self.rng.random_range(0..DICTIONARY_MAX);
                    self.in_dictionary.remove(&self.dictionary[i]);
                    self.dictionary[i] = value;
                }
            }
        }
        self.dictionary.len().saturating_sub(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_inputs_that_reach_new_edges_and_mutates_them() {
        let mut g = Guide::new(1, 16, Ranges::all());
        let a = g.next_input();
        assert_eq!(a.len(), crate::Program::seeded_input_len(16));
        assert!(g.add(&a, [1, 2, 3]) > 0);
        assert_eq!(g.add(&a, [1, 2, 3]), 0);
        assert_eq!(g.corpus().len(), 1);
        // With one kept input, about half the next inputs are mutations of it (close to it),
        // the rest fresh (about as far from it as random bytes are).
        let close = (0..256)
            .filter(|_| {
                let b = g.next_input();
                assert_eq!(b.len(), a.len());
                a.iter().zip(&b).filter(|(x, y)| x != y).count() <= 4 * 192
            })
            .count();
        assert!((96..=160).contains(&close), "{close} of 256 were mutations");
    }

    #[test]
    fn comparisons_in_range_become_dictionary_values() {
        let mut g = Guide::new(1, 16, Ranges::from_spans(vec![(0x1000, 0x2000)]));
        let cmp = |pc, a, b| Comparison { pc, args: [a, b], size: 8, constant: true };
        let added = g.add_comparisons(&[
            cmp(0x1000, 0x1234_5678, 1),
            cmp(0x3000, 0x777, 0x888),
            cmp(0x1004, 0x1234_5678, 0x42),
            cmp(0x1008, 0xffff_8880_0000_1000, 0x43),
        ]);
        assert_eq!(added, 3, "0x12345678 once, 0x42, 0x43; 1, the kernel pointer and the PC outside are not kept");
        // Mutations now write those values into inputs.
        let fresh = g.fresh();
        assert!(g.add(&fresh, [0x1000]) > 0);
        let seen = (0..2000).any(|_| g.next_input().windows(4).any(|w| w == 0x1234_5678u32.to_le_bytes()));
        assert!(seen);
    }
}
