//! The model alone: deterministic, panic-free, invariants kept.
#![no_main]

use gmemfuzz::fuzz::{model_only, Verdict};
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    match model_only(data) {
        Verdict::Keep => Corpus::Keep,
        Verdict::Reject => Corpus::Reject,
    }
});
