//! The model against real KVM on /dev/kvm, op by op.
#![no_main]

use gmemfuzz::fuzz::{diff_kvm, Verdict};
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    match diff_kvm(data) {
        Verdict::Keep => Corpus::Keep,
        Verdict::Reject => Corpus::Reject,
    }
});
