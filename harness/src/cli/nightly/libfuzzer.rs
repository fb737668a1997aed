//! Driving one cargo-fuzz target binary: a fork-mode run over N jobs, then a merge of what it
//! found into the persistent corpus. libFuzzer does the fuzzing; this only starts it, watches
//! its log for progress and reads its figures back.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// Where `cargo fuzz build -O` puts the target binaries, under the repository root.
pub fn default_bin_dir(root: &Path) -> PathBuf {
    root.join("fuzz/target/x86_64-unknown-linux-gnu/release")
}

/// Builds the fuzz targets (`cargo fuzz build -O` in `root/fuzz`).
pub fn build(root: &Path) -> Result<()> {
    println!("nightly: building the fuzz targets (cargo fuzz build -O)");
    let status = Command::new("cargo")
        .args(["fuzz", "build", "-O"])
        .current_dir(root.join("fuzz"))
        // cargo-fuzz passes -Zsanitizer flags; RUSTC_BOOTSTRAP lets the stable toolchain take them.
        .env("RUSTC_BOOTSTRAP", "1")
        .status()
        .context("running `cargo fuzz build -O` (is cargo-fuzz installed? `cargo install cargo-fuzz`)")?;
    if !status.success() {
        bail!("`cargo fuzz build -O` failed ({status})");
    }
    Ok(())
}

/// The exit status fork mode ends with when a job crashed (the crashes are findings, not a
/// failure of the run).
const CRASHED: i32 = 77;

/// What one fork-mode run did, read from libFuzzer's log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Inputs executed (the `#N:` of libFuzzer's last status line).
    pub execs: u64,
    /// Crashes libFuzzer counted (`oom/timeout/crash: a/b/c`).
    pub crashes: u64,
}

/// The figures of the last status line of a fork-mode log
/// (`#2571: cov: 4298 ft: 11649 corp: 215 exec/s: 237 oom/timeout/crash: 0/0/1 time: 11s ...`).
pub fn progress(log: &str) -> Progress {
    let Some(line) = log.lines().rev().find(|l| l.starts_with('#') && l.contains(": cov: ")) else {
        return Progress::default();
    };
    let execs = line[1..].split(':').next().and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    let crashes = line
        .split("oom/timeout/crash: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| t.rsplit('/').next())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Progress { execs, crashes }
}

/// One target's run: where its binary, corpus and artifacts are.
pub struct Job<'a> {
    pub target: &'a str,
    pub bin: &'a Path,
    /// The persistent corpus (grows night to night).
    pub corpus: &'a Path,
    /// OUT/<target>/: artifacts (`crash-<sha1>` and the target's `.txt` beside), logs.
    pub out: &'a Path,
    pub jobs: usize,
    /// Where the fuzzing processes keep their counters (`GMEMFUZZ_STATS_DIR`).
    pub stats: &'a Path,
}

impl Job<'_> {
    /// Fuzzes for `seconds` in fork mode; new inputs go to `out/new-corpus`. Every `every`,
    /// `on_tick` gets the seconds left and the figures so far.
    pub fn fuzz(&self, seconds: u64, every: Duration, mut on_tick: impl FnMut(u64, Progress)) -> Result<Progress> {
        let fresh = self.out.join("new-corpus");
        std::fs::create_dir_all(&fresh)?;
        let log_path = self.out.join("fuzz.log");
        let log = std::fs::File::create(&log_path)?;
        std::fs::create_dir_all(self.stats)?;
        let mut child = Command::new(self.bin)
            .env(crate::fuzz::stats_file::ENV, self.stats)
            .arg(format!("-fork={}", self.jobs))
            .arg("-ignore_crashes=1")
            .arg(format!("-error_exitcode={CRASHED}"))
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", self.out.display()))
            .arg("-print_final_stats=1")
            .arg(&fresh)
            .arg(self.corpus)
            .current_dir(self.out)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let start = Instant::now();
        let mut last_tick = start;
        // libFuzzer stops by itself; past this something hangs.
        let hard_stop = Duration::from_secs(seconds + 120);
        let status = loop {
            std::thread::sleep(Duration::from_millis(200));
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > hard_stop {
                child.kill()?;
                bail!("{} ran {}s past its -max_total_time; killed (log {})", self.target, hard_stop.as_secs(), log_path.display());
            }
            if last_tick.elapsed() >= every {
                last_tick = Instant::now();
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                on_tick(seconds.saturating_sub(start.elapsed().as_secs()), progress(&text));
            }
        };
        let text = std::fs::read_to_string(&log_path)?;
        // Fork mode with -ignore_crashes ends with -error_exitcode when some job crashed.
        if !status.success() && status.code() != Some(CRASHED) {
            bail!("{} exited with {status} in fork mode (log {})", self.target, log_path.display());
        }
        Ok(progress(&text))
    }

    /// Merges `out/new-corpus` into the persistent corpus: only inputs that add coverage go in.
    pub fn merge(&self) -> Result<()> {
        let log_path = self.out.join("merge.log");
        let log = std::fs::File::create(&log_path)?;
        let status = Command::new(self.bin)
            // The merge's executions are not fuzzing: not in the op-kind mix.
            .env_remove(crate::fuzz::stats_file::ENV)
            .arg("-merge=1")
            .arg(format!("-artifact_prefix={}/", self.out.display()))
            .arg(self.corpus)
            .arg(self.out.join("new-corpus"))
            .current_dir(self.out)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .with_context(|| format!("starting {} -merge=1", self.bin.display()))?;
        if !status.success() {
            bail!("{} -merge=1 failed ({status}; log {})", self.target, log_path.display());
        }
        Ok(())
    }
}

/// Files in a corpus directory.
pub fn corpus_size(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()).filter(|e| e.path().is_file()).count()).unwrap_or(0)
}

/// Copies the repository's seeds into the corpus where a file of that name is missing;
/// gives how many it copied.
pub fn seed(corpus: &Path, seeds: &Path) -> Result<usize> {
    std::fs::create_dir_all(corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let mut copied = 0;
    let Ok(entries) = std::fs::read_dir(seeds) else { return Ok(0) };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name() else { continue };
        let dest = corpus.join(name);
        if path.is_file() && !dest.exists() {
            std::fs::copy(&path, &dest)?;
            copied += 1;
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_status_line_gives_execs_and_crashes() {
        let log = "INFO: -fork=1: 12 seed inputs\n\
                   #413: cov: 3405 ft: 6188 corp: 12 exec/s: 206 oom/timeout/crash: 0/0/0 time: 4s job: 1 dft_time: 0\n\
                   gmemfuzz diff_kvm stats: programs 10\n\
                   #2571: cov: 4298 ft: 11649 corp: 215 exec/s: 237 oom/timeout/crash: 0/1/3 time: 11s job: 3 dft_time: 0\n\
                   INFO: fuzzed for 12 seconds, wrapping up soon\n";
        assert_eq!(progress(log), Progress { execs: 2571, crashes: 3 });
        assert_eq!(progress("nothing yet"), Progress::default());
    }
}
