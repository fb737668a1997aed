//! The model alone: deterministic, panic-free, invariants kept.
#![no_main]

use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus { gmemfuzz::fuzz::model_only(data) });
