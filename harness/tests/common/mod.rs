//! Shared by the integration tests: opening real KVM or skipping loudly.

use gmemfuzz_backends::kvm::KvmBackend;

/// Real KVM, or `None` after saying loudly why this test does not run here. Every test
/// that does run records its name, so CI can say how many KVM tests executed.
pub fn kvm_or_skip(test: &str) -> Option<KvmBackend> {
    match KvmBackend::new(0) {
        Ok(backend) => {
            use std::io::Write;
            let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kvm-tests-ran.log");
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
                let _ = writeln!(f, "{test}");
            }
            Some(backend)
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: real KVM is not available here: {e}");
            None
        }
    }
}
