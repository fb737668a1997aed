//! Test binaries run inside a lane kernel: where the host's KVM lacks guest_memfd, the KVM
//! tests (cargo's integration test binaries) run on the lane kernel's real KVM instead. The
//! repository is shared into the guest at its own path, so the paths cargo compiled into the
//! binaries (CARGO_MANIFEST_DIR, CARGO_TARGET_TMPDIR, CARGO_BIN_EXE_*) resolve there, and
//! what they write under target/tmp (the log of the KVM tests that ran) comes back.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{boot_sharing, BootEnd, LaneKernel};

/// The variable the in-guest tests find set to where they run ("Linux 7.2.13 in the lane"),
/// so that the KVM tests' log tells them from the host's.
pub const TESTS_WHERE: &str = "GMEMFUZZ_KVM_TESTS_WHERE";

/// The guest's script, in the boot's shared directory.
const SCRIPT: &str = "run-tests.sh";

/// What one boot of test binaries gave.
pub struct TestBinariesEnd {
    pub boot: BootEnd,
    /// Each binary's name and exit status (`None`: it did not finish).
    pub statuses: Vec<(String, Option<i32>)>,
    /// Where each binary's output is (`<name>.log`).
    pub out: PathBuf,
}

impl TestBinariesEnd {
    /// The binaries that did not pass, each with the end of its output.
    pub fn failures(&self) -> Vec<String> {
        self.statuses
            .iter()
            .filter(|(_, status)| *status != Some(0))
            .map(|(name, status)| {
                let log = std::fs::read_to_string(self.out.join(format!("{name}.log"))).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("{name}: exit {status:?}; its output ends:\n{}", tail.join("\n"))
            })
            .collect()
    }
}

/// The test binary's name without cargo's hash (`scenarios_kvm-0123abcd` is `scenarios_kvm`).
pub fn test_name(binary: &Path) -> String {
    let file = binary.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    match file.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_string(),
        _ => file,
    }
}

/// Boots `kernel` once and runs each of `binaries` (under `repo`, which is shared at its own
/// path) one test at a time, from `cwd` as cargo would.
pub fn run_test_binaries(
    kernel: &LaneKernel,
    initrd: &Path,
    out: &Path,
    repo: &Path,
    cwd: &Path,
    binaries: &[PathBuf],
    timeout: u64,
) -> Result<TestBinariesEnd> {
    std::fs::create_dir_all(out)?;
    let repo = repo.canonicalize().with_context(|| format!("{}", repo.display()))?;
    let mut cmd = format!(
        "mkdir -p '{r}' && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share '{r}' || exit 90; \
         export {TESTS_WHERE}='Linux {v} in the lane' RUST_BACKTRACE=0; cd '{c}' || exit 91\n\
         # A test may run for minutes under TCG without a line: the lane stops a silent boot.\n\
         while sleep 20; do echo \"gmemfuzz-lane-test: running $(cat /tmp/current 2>/dev/null)\"; done &\n",
        r = repo.display(),
        v = kernel.version,
        c = cwd.display()
    );
    for binary in binaries {
        let name = test_name(binary);
        cmd += &format!(
            "echo {name} > /tmp/current; echo 'gmemfuzz-lane-test: {name}'; '{b}' --test-threads=1 > /out/{name}.log 2>&1; echo \"{name} $?\" >> /out/statuses\n",
            b = binary.display()
        );
    }
    cmd += "sync; true\n";
    let _ = std::fs::remove_file(out.join("statuses"));
    // The kernel's command line holds 2 KiB: the script goes through /out.
    std::fs::write(out.join(SCRIPT), cmd)?;
    let boot = boot_sharing(kernel, initrd, out, &format!("sh /out/{SCRIPT}"), timeout, 1, true, Some(&repo))?;
    let written = std::fs::read_to_string(out.join("statuses")).unwrap_or_default();
    let statuses = binaries
        .iter()
        .map(|b| {
            let name = test_name(b);
            let status = written.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|s| s.trim().parse().ok());
            (name, status)
        })
        .collect();
    Ok(TestBinariesEnd { boot, statuses, out: out.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_binary_is_named_without_its_hash() {
        assert_eq!(test_name(Path::new("/t/release/deps/scenarios_kvm-0123456789abcdef")), "scenarios_kvm");
        assert_eq!(test_name(Path::new("/t/release/deps/self_test-fedcba9876543210")), "self_test");
        assert_eq!(test_name(Path::new("/t/release/deps/plain")), "plain");
        assert_eq!(test_name(Path::new("/t/release/deps/not-a-hash")), "not-a-hash");
    }
}
