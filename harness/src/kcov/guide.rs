//! Coverage-guided generation for `gmemfuzz run --kcov guide`: the generator's input bytes
//! of every program that reached new kernel edges are kept and mutated (libFuzzer's loop,
//! with KCOV as its coverage), and the operands the kernel compared while running them
//! become values that mutations write into the bytes (libFuzzer's dictionary, syzkaller's
//! hints).
//!
//! Inputs have `Program::from_seeded_input`'s layout, a swarm header and one chunk per op,
//! so mutations work on ops as syzkaller's do on calls: change one op, put a new one in,
//! take one out, swap two, or take ops from another kept input; every program still has the
//! session's op count, as unguided programs do.

use std::ops::Range;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rustc_hash::FxHashSet;

use super::ranges::Ranges;
use super::signal::Signal;
use super::Comparison;
use crate::Program;

/// Values kept from comparisons; past this, a new one replaces a random one.
const DICTIONARY_MAX: usize = 4096;
/// The least share of inputs either source gets, fresh bytes or mutations: neither is
/// starved on an unlucky stretch, so its yield keeps being measured.
const MIN_SHARE: f64 = 0.15;
/// How much of a source's yield each of its programs leaves of what came before: the
/// yield is that of its last few hundred programs, so the choice follows the plateau.
const YIELD_MEMORY: f64 = 0.995;

/// The mutations, each on whole op chunks except `Tweak`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::VariantArray)]
enum Mutation {
    /// A few bytes of one op: bit flips, random bytes, dictionary values (its arguments,
    /// mostly; now and then its kind).
    Tweak,
    /// One op made anew.
    Replace,
    /// A new op put in (the last one falls off the end).
    Insert,
    /// One op taken out (a new one comes in at the end).
    Remove,
    /// Two ops trade places.
    Swap,
    /// The ops from one on taken from another kept input (splice).
    Splice,
    /// One op of another kept input copied over one of this one.
    Borrow,
    /// A new swarm: which op kinds the program draws from.
    Swarm,
}

/// Where an input came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Random bytes: breadth.
    Fresh,
    /// A mutation of a kept input: depth near what reached new code.
    Mutated,
    /// An earlier session's kept input, run again (`Coverage::pending`).
    Corpus,
}

/// New edges a source found and the seconds its programs took, each program's share fading
/// by `YIELD_MEMORY` per later program of the same source; starts as one edge in one second.
struct Yield {
    edges: f64,
    seconds: f64,
}

impl Yield {
    fn new() -> Yield {
        Yield { edges: 1.0, seconds: 1.0 }
    }

    fn add(&mut self, edges: u64, seconds: f64) {
        self.edges = self.edges * YIELD_MEMORY + edges as f64;
        self.seconds = self.seconds * YIELD_MEMORY + seconds;
    }

    fn per_second(&self) -> f64 {
        self.edges / self.seconds.max(1e-9)
    }
}

/// What a source's programs did over the whole session, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub programs: u64,
    pub kept: u64,
    pub edges: u64,
}

/// An input the guide keeps, and how long its program took: parents are chosen for speed
/// (AFL's favoured inputs), since new edges come most often from slow programs (large
/// attribute ranges) whose mutations stay slow.
struct Kept {
    bytes: Vec<u8>,
    seconds: f64,
}

pub struct Guide {
    rng: StdRng,
    ops: usize,
    corpus: Vec<Kept>,
    /// Hashes of the corpus's inputs: each is kept once.
    kept: FxHashSet<u64>,
    dictionary: Vec<u64>,
    in_dictionary: FxHashSet<u64>,
    pub signal: Signal,
    /// The source of the input `next_input` gave last (`None`: one from elsewhere, an
    /// earlier session's corpus).
    last: Option<Source>,
    /// Recent new edges per second of fresh inputs and of mutations: the share of
    /// mutations follows them (a two-armed bandit, as AFL++'s MOpt schedules its mutators),
    /// so guiding spends its programs where new kernel code has lately come from.
    fresh_yield: Yield,
    mutated_yield: Yield,
    /// Fresh, mutated, corpus.
    tallies: [Tally; 3],
}

impl Guide {
    pub fn new(seed: u64, ops: usize, ranges: Ranges) -> Guide {
        Guide {
            rng: StdRng::seed_from_u64(seed),
            ops,
            corpus: Vec::new(),
            kept: FxHashSet::default(),
            dictionary: Vec::new(),
            in_dictionary: FxHashSet::default(),
            signal: Signal::new(ranges),
            last: None,
            fresh_yield: Yield::new(),
            mutated_yield: Yield::new(),
            tallies: [Tally::default(); 3],
        }
    }

    /// The share of inputs that are mutations now.
    pub fn mutation_share(&self) -> f64 {
        if self.corpus.is_empty() {
            return 0.0;
        }
        let (m, f) = (self.mutated_yield.per_second(), self.fresh_yield.per_second());
        (m / (m + f)).clamp(MIN_SHARE, 1.0 - MIN_SHARE)
    }

    /// What each source's programs did, and the share of mutations now, in words.
    pub fn sources(&self) -> String {
        let (fresh, mutated, corpus) = self.tallies();
        let part = |name: &str, t: Tally| format!("{name} {} (kept {}, {} new edges)", t.programs, t.kept, t.edges);
        format!(
            "inputs: {}, {}, {}; mutations' share now {:.0}%",
            part("fresh", fresh),
            part("mutated", mutated),
            part("from the corpus", corpus),
            100.0 * self.mutation_share()
        )
    }

    /// What fresh inputs, mutations and an earlier session's inputs did so far.
    pub fn tallies(&self) -> (Tally, Tally, Tally) {
        (self.tallies[0], self.tallies[1], self.tallies[2])
    }

    fn len(&self) -> usize {
        Program::seeded_input_len(self.ops)
    }

    /// The bytes of op `i`.
    fn chunk(i: usize) -> Range<usize> {
        let start = Program::SWARM_BYTES + i * Program::OP_BYTES;
        start..start + Program::OP_BYTES
    }

    /// How many inputs are kept.
    pub fn corpus_len(&self) -> usize {
        self.corpus.len()
    }

    /// An input of this session's length made from stored bytes (a previous boot's corpus):
    /// cut or padded with zeros, as the generator reads an exhausted input.
    pub fn fit(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        bytes.resize(self.len(), 0);
        bytes
    }

    pub fn dictionary_len(&self) -> usize {
        self.dictionary.len()
    }

    /// Fresh random bytes.
    pub fn fresh(&mut self) -> Vec<u8> {
        let mut bytes = vec![0u8; self.len()];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }

    /// The next input to run: a mutation of a kept one, or now and then a fresh one.
    pub fn next_input(&mut self) -> Vec<u8> {
        let share = self.mutation_share();
        if !self.rng.random_bool(share) {
            self.last = Some(Source::Fresh);
            return self.fresh();
        }
        self.last = Some(Source::Mutated);
        // The faster of two kept inputs (a tournament: fast ones mostly, slow ones still).
        let (a, b) = (self.rng.random_range(0..self.corpus.len()), self.rng.random_range(0..self.corpus.len()));
        let pick = if self.corpus[a].seconds <= self.corpus[b].seconds { a } else { b };
        let parent = self.fit(self.corpus[pick].bytes.clone());
        let mut bytes = parent.clone();
        let mut mutations: u32 = self.rng.random_range(1..=3);
        // A swap of equal ops or a splice from the input itself changes nothing: mutate on.
        while mutations > 0 || bytes == parent {
            use strum::VariantArray as _;
            let mutation = Mutation::VARIANTS[self.rng.random_range(0..Mutation::VARIANTS.len())];
            self.mutate(&mut bytes, mutation);
            mutations = mutations.saturating_sub(1);
        }
        bytes
    }

    fn mutate(&mut self, bytes: &mut [u8], mutation: Mutation) {
        let ops = self.ops;
        if ops == 0 {
            return;
        }
        let i = self.rng.random_range(0..ops);
        let op = Self::chunk(i);
        match mutation {
            Mutation::Tweak => {
                for _ in 0..self.rng.random_range(1..=3) {
                    self.tweak(&mut bytes[op.clone()]);
                }
            }
            Mutation::Replace => self.rng.fill_bytes(&mut bytes[op]),
            Mutation::Insert => {
                bytes.copy_within(op.start..Self::chunk(ops - 1).start, op.start + Program::OP_BYTES);
                self.rng.fill_bytes(&mut bytes[op]);
            }
            Mutation::Remove => {
                bytes.copy_within(op.end..Self::chunk(ops - 1).end, op.start);
                self.rng.fill_bytes(&mut bytes[Self::chunk(ops - 1)]);
            }
            Mutation::Swap => {
                let other = Self::chunk(self.rng.random_range(0..ops));
                let mine = bytes[op.clone()].to_vec();
                bytes.copy_within(other.clone(), op.start);
                bytes[other].copy_from_slice(&mine);
            }
            Mutation::Splice | Mutation::Borrow => {
                let donor = &self.corpus[self.rng.random_range(0..self.corpus.len())].bytes;
                let from = match mutation {
                    Mutation::Splice => op.start..bytes.len(),
                    _ => Self::chunk(self.rng.random_range(0..ops)),
                };
                let Some(taken) = donor.get(from) else { return };
                let n = taken.len().min(bytes.len() - op.start);
                bytes[op.start..op.start + n].copy_from_slice(&taken[..n]);
            }
            Mutation::Swarm => self.rng.fill_bytes(&mut bytes[..Program::SWARM_BYTES]),
        }
    }

    /// Changes a few bytes of one op's chunk.
    fn tweak(&mut self, chunk: &mut [u8]) {
        let len = chunk.len();
        let at = self.rng.random_range(0..len);
        match self.rng.random_range(0..4) {
            0 => chunk[at] ^= 1 << self.rng.random_range(0..8),
            1 => chunk[at] = self.rng.random(),
            _ if !self.dictionary.is_empty() => {
                // A value the kernel compared against, at one of its widths, maybe off by one.
                let mut value = self.dictionary[self.rng.random_range(0..self.dictionary.len())];
                value = value.wrapping_add([0, 1, u64::MAX][self.rng.random_range(0..3)]);
                let width = [1, 2, 4, 8][self.rng.random_range(0..4)].min(len - at);
                chunk[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
            _ => chunk[at] = self.rng.random(),
        }
    }

    /// Adds a program's trace; keeps `input` if it reached a new edge and is not kept
    /// already (a racing program may reach new edges on a second run of the same bytes).
    /// `seconds` is how long its program took. Returns the new edges.
    /// The input is the one `next_input` gave last, or one from an earlier session's corpus.
    pub fn add(&mut self, input: &[u8], trace: impl IntoIterator<Item = u64>, seconds: f64) -> u64 {
        let new = self.signal.add(trace);
        let kept = new > 0 && self.kept.insert(std::hash::BuildHasher::hash_one(&rustc_hash::FxBuildHasher, input));
        if kept {
            self.corpus.push(Kept { bytes: input.to_vec(), seconds });
        }
        let source = self.last.take().unwrap_or(Source::Corpus);
        match source {
            Source::Fresh => self.fresh_yield.add(new, seconds),
            Source::Mutated => self.mutated_yield.add(new, seconds),
            Source::Corpus => {}
        }
        let tally = &mut self.tallies[source as usize];
        tally.programs += 1;
        tally.kept += u64::from(kept);
        tally.edges += new;
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

    fn chunks(bytes: &[u8], ops: usize) -> Vec<&[u8]> {
        (0..ops).map(|i| &bytes[Guide::chunk(i)]).collect()
    }

    #[test]
    fn keeps_inputs_that_reach_new_edges_and_mutates_them() {
        let mut g = Guide::new(1, 16, Ranges::all());
        let a = g.fresh();
        assert_eq!(a.len(), crate::Program::seeded_input_len(16));
        assert!(g.add(&a, [1, 2, 3], 0.1) > 0);
        assert_eq!(g.add(&a, [1, 2, 3], 0.1), 0);
        assert_eq!(g.corpus_len(), 1);
        assert!(g.add(&a, [4], 0.1) > 0, "new edges from the same input (a race went another way)");
        assert_eq!(g.corpus_len(), 1, "the same input is kept once");
        // With one kept input, the next inputs are mutations of it (at most three of its ops
        // changed, the rest kept, maybe moved) or fresh (none of its ops), mutations at
        // the guide's share. (`a` came from elsewhere: it moves no yield.)
        let share = g.mutation_share();
        assert_eq!(share, 0.5, "no yield seen yet: half and half");
        let theirs = chunks(&a, 16);
        let mut mutations = 0;
        for _ in 0..256 {
            let b = g.next_input();
            assert_eq!(b.len(), a.len());
            assert_ne!(a, b, "a mutation changes its input");
            let kept = chunks(&b, 16).iter().filter(|c| theirs.contains(c)).count();
            assert!(kept >= 13 || kept == 0, "{kept} of 16 ops kept");
            assert_eq!(kept > 0, g.last == Some(Source::Mutated));
            mutations += usize::from(kept > 0);
        }
        assert!((96..=160).contains(&mutations), "{mutations} of 256 were mutations");
    }

    /// A stand-in kernel where one source finds new edges ten times as often: the guide
    /// shifts its inputs toward it, never below the floor for the other, and tallies both.
    #[test]
    fn the_share_of_mutations_follows_where_new_edges_come_from() {
        for mutations_pay in [true, false] {
            let mut g = Guide::new(5, 16, Ranges::all());
            let mut next_edge = 1u64;
            let seed = g.fresh();
            g.add(&seed, [0], 0.1);
            let mut shares = Vec::new();
            for round in 0..3000 {
                let input = g.next_input();
                let mutated = g.last == Some(Source::Mutated);
                let odds = if mutated == mutations_pay { 2 } else { 20 };
                let trace = if g.rng.random_ratio(1, odds) {
                    next_edge += 1;
                    vec![next_edge]
                } else {
                    vec![0]
                };
                g.add(&input, trace, 0.1);
                if round % 500 == 499 {
                    shares.push(g.mutation_share());
                }
            }
            let share = g.mutation_share();
            if mutations_pay {
                assert!(share > 0.8, "mutations pay, yet their share is {share:.2} ({shares:?})");
            } else {
                assert!(share < 0.2, "fresh inputs pay, yet mutations' share is {share:.2} ({shares:?})");
            }
            assert!((MIN_SHARE..=1.0 - MIN_SHARE).contains(&share));
            let (fresh, mutated, corpus) = g.tallies();
            assert_eq!((fresh.programs + mutated.programs, corpus.programs), (3000, 1));
            assert_eq!(fresh.edges + mutated.edges + corpus.edges, next_edge);
            assert!(fresh.programs.min(mutated.programs) >= 300, "{fresh:?} {mutated:?}");
        }
    }

    #[test]
    fn fast_inputs_are_mutated_more_often() {
        let mut g = Guide::new(3, 16, Ranges::all());
        let (fast, slow) = (g.fresh(), g.fresh());
        g.add(&fast, [1], 0.01);
        g.add(&slow, [2], 1.0);
        let (fast_ops, slow_ops) = (chunks(&fast, 16), chunks(&slow, 16));
        let (mut from_fast, mut mutations) = (0, 0);
        for _ in 0..2000 {
            let b = g.next_input();
            let near = |ops: &[&[u8]]| chunks(&b, 16).iter().filter(|c| ops.contains(c)).count();
            let (f, s) = (near(&fast_ops), near(&slow_ops));
            if f.max(s) >= 8 {
                mutations += 1;
                from_fast += usize::from(f > s);
            }
        }
        // A tournament of two picks the faster one three times in four.
        let share = from_fast as f64 / mutations as f64;
        assert!((0.65..0.85).contains(&share), "{from_fast} of {mutations} mutations came from the fast input");
    }

    #[test]
    fn mutations_work_on_whole_ops() {
        use strum::VariantArray as _;
        let ops = 8;
        let mut g = Guide::new(2, ops, Ranges::all());
        let donor = g.fresh();
        g.add(&donor, [1], 0.1);
        for &mutation in Mutation::VARIANTS {
            for _ in 0..50 {
                let a = g.fresh();
                let mut b = a.clone();
                g.mutate(&mut b, mutation);
                let (ca, cb) = (chunks(&a, ops), chunks(&b, ops));
                let same_header = a[..Program::SWARM_BYTES] == b[..Program::SWARM_BYTES];
                let differ: Vec<usize> = (0..ops).filter(|&i| ca[i] != cb[i]).collect();
                let ok = match mutation {
                    Mutation::Tweak | Mutation::Replace | Mutation::Borrow => same_header && differ.len() <= 1,
                    Mutation::Swarm => differ.is_empty(),
                    Mutation::Swap => same_header && differ.len() <= 2 && differ.iter().all(|&i| ca.contains(&cb[i])),
                    // The ops before the first changed one are kept; from there on they are
                    // the donor's, at their own places.
                    Mutation::Splice => {
                        let from = differ.first().copied().unwrap_or(ops);
                        same_header && (from..ops).all(|i| cb[i] == &donor[Guide::chunk(i)])
                    }
                    // Every op of `a` but one is still there, in order, shifted by one past the
                    // new one (insert) or the removed one (remove).
                    Mutation::Insert => {
                        (0..ops).any(|at| (0..at).all(|i| ca[i] == cb[i]) && (at..ops - 1).all(|i| ca[i] == cb[i + 1])) && same_header
                    }
                    Mutation::Remove => {
                        (0..ops).any(|at| (0..at).all(|i| ca[i] == cb[i]) && (at..ops - 1).all(|i| ca[i + 1] == cb[i])) && same_header
                    }
                };
                assert!(ok, "{mutation:?} changed ops {differ:?}");
            }
        }
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
        assert!(g.add(&fresh, [0x1000], 0.1) > 0);
        let seen = (0..2000).any(|_| g.next_input().windows(4).any(|w| w == 0x1234_5678u32.to_le_bytes()));
        assert!(seen);
    }
}
