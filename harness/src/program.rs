//! Programs, and their generation from fuzzer bytes for a kernel's profile (see `gen`).

use arbitrary::{Result, Unstructured};
use gmemfuzz_backends::{Op, Profile};

use crate::gen::{Generator, OpWeights};

/// A program: ops run in order. `VERSION` names the op vocabulary, for stored programs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Program {
    pub ops: Vec<Op>,
}

impl Program {
    /// 2: `g<N>` names the N-th `create_gmem` op, failed or not (v1: the N-th successful one).
    /// 3: concurrent groups (`group` … `end`); v2 files read the same.
    pub const VERSION: u32 = 3;
    /// Most ops a generated program has.
    pub const MAX_OPS: usize = 48;
    /// Bytes of a seeded input that draw the swarm (`Swarm::draw` reads one a kind, at most
    /// 16 today): room for more kinds.
    pub const SWARM_BYTES: usize = 32;
    /// Bytes of a seeded input per op: the most one op reads is about 55 (a guest op or a
    /// group of four members), so no op runs out.
    pub const OP_BYTES: usize = 96;

    pub fn new(ops: Vec<Op>) -> Program {
        Program { ops }
    }

    /// Decodes fuzzer bytes into a program for the host kernel (`Profile::host_6_18`).
    pub fn from_bytes(data: &[u8]) -> Option<Program> {
        Self::from_bytes_for(data, &Profile::host_6_18())
    }

    /// Decodes fuzzer bytes into a program for a kernel with `profile`: `None` when the
    /// bytes make nothing worth running (no op that reaches the kernel), so the fuzzer can
    /// drop the input.
    pub fn from_bytes_for(data: &[u8], profile: &Profile) -> Option<Program> {
        Self::from_bytes_with(data, profile, OpWeights::for_profile(profile))
    }

    /// As `from_bytes_for`, drawing op kinds at `weights` instead of the profile's rates.
    pub fn from_bytes_with(data: &[u8], profile: &Profile, weights: OpWeights) -> Option<Program> {
        let mut u = Unstructured::new(data);
        let mut g = Generator::new(profile).with_weights(weights);
        g.draw_swarm(&mut u).ok()?;
        let program = Program { ops: g.ops_until_empty(&mut u, Program::MAX_OPS).ok()? };
        program.is_useful().then_some(program)
    }

    /// Generates a program of exactly `len` ops from `u` for the host kernel.
    pub fn generate(u: &mut Unstructured, len: usize) -> Result<Program> {
        Self::generate_for(u, len, &Profile::host_6_18())
    }

    /// As `generate`, for a kernel with `profile`.
    pub fn generate_for(u: &mut Unstructured, len: usize, profile: &Profile) -> Result<Program> {
        Self::generate_with(u, len, profile, OpWeights::for_profile(profile))
    }

    /// As `generate_for`, drawing op kinds at `weights`.
    pub fn generate_with(u: &mut Unstructured, len: usize, profile: &Profile, weights: OpWeights) -> Result<Program> {
        let mut g = Generator::new(profile).with_weights(weights);
        g.draw_swarm(u)?;
        Ok(Program { ops: g.ops(u, len)? })
    }

    /// Programs of `len` ops each, generated one after another from a seeded RNG: the
    /// same seed gives the same programs (for `gmemfuzz run`, `bench` and tests).
    pub fn seeded(seed: u64, len: usize, profile: &Profile) -> impl Iterator<Item = Program> {
        Self::seeded_with(seed, len, profile, OpWeights::for_profile(profile))
    }

    /// As `seeded`, drawing op kinds at `weights` (`gmemfuzz run --no-groups`: no groups).
    pub fn seeded_with(seed: u64, len: usize, profile: &Profile, weights: OpWeights) -> impl Iterator<Item = Program> {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut bytes = vec![0u8; Self::seeded_input_len(len)];
        let profile = profile.clone();
        std::iter::repeat_with(move || {
            rng.fill_bytes(&mut bytes);
            Self::from_seeded_input(&bytes, len, &profile, &weights)
        })
    }

    /// The generator bytes behind each of `seeded`'s programs of `len` ops.
    pub fn seeded_input_len(len: usize) -> usize {
        Self::SWARM_BYTES + len * Self::OP_BYTES
    }

    /// The program of exactly `len` ops that generator bytes make, drawing op kinds at
    /// `weights` (as `seeded_with` does).
    ///
    /// The bytes are a swarm header and then one chunk per op: op i is decoded from its own
    /// `OP_BYTES` alone (with the picture the ops before it left), so changing one chunk
    /// changes that op and leaves the others' choices as they were, and chunks moved or
    /// copied between inputs carry their ops with them (what guided mutation relies on).
    pub fn from_seeded_input(bytes: &[u8], len: usize, profile: &Profile, weights: &OpWeights) -> Program {
        let chunk = |from: usize, n: usize| bytes.get(from..).map_or(&[][..], |rest| &rest[..n.min(rest.len())]);
        let mut g = Generator::new(profile).with_weights(weights.clone());
        // Generation never fails: an exhausted chunk reads as zeros.
        g.draw_swarm(&mut Unstructured::new(chunk(0, Self::SWARM_BYTES))).expect("generation never fails");
        let ops = (0..len)
            .map(|i| g.op(&mut Unstructured::new(chunk(Self::SWARM_BYTES + i * Self::OP_BYTES, Self::OP_BYTES))))
            .collect::<Result<_>>()
            .expect("generation never fails");
        Program { ops }
    }

    /// A program is worth running if it makes a file and does something more.
    pub fn is_useful(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, Op::CreateGmem { .. })) && self.ops.len() >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_rejected() {
        assert_eq!(Program::from_bytes(&[]), None);
    }
}
