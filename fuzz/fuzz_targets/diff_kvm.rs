//! The model against real KVM on /dev/kvm, op by op.
#![no_main]

use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(init: gmemfuzz::fuzz::diff_kvm_init(), |data: &[u8]| -> Corpus { gmemfuzz::fuzz::diff_kvm(data) });
