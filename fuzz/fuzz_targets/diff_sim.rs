//! The model against the simulated TDX-style and SNP-style platforms.
#![no_main]

use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus { gmemfuzz::fuzz::diff_sim(data) });
