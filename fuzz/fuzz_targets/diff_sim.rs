//! The model against the simulated TDX-style and SNP-style platforms.
#![no_main]

use gmemfuzz::fuzz::Verdict;
use gmemfuzz::fuzz_sim::diff_sim;
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    match diff_sim(data) {
        Verdict::Keep => Corpus::Keep,
        Verdict::Reject => Corpus::Reject,
    }
});
