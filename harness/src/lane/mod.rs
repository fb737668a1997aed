//! The test-kernel lane: a kernel with software-protected VMs (Debian's Linux 7.2 by default,
//! 6.12, or the user's own tree), booted under QEMU/TCG with the `gmemfuzz` binary inside, so
//! that private/shared conversion runs on real KVM.
//!
//! The scripts in `harness/lane/` do the machine work (build and cache the kernel, pack an
//! initramfs, boot and collect `/out` over 9p); this module drives them, reads what comes
//! back, and turns kernel splats on the console into findings of their own kind. A splat or
//! a dead guest ends that boot only: the lane reboots and goes on until its time is up.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gmemfuzz_backends::OpKind;

use crate::kcov::KcovMode;
use crate::kernel::script;
use crate::report::{self, Record};
use crate::repro::text;

mod accel;
mod console;
mod coverage;
mod test_binaries;
mod watch;

pub use crate::kernel::{
    cached_kernels, image_version, kernel, kernel_is_cached, Detectors, KernelChoice, LaneKernel, DEFAULT_SERIES, SERIES,
};
pub use crate::splat::{scan as scan_console, Splat};
pub use accel::Accel;
pub use console::boot_seconds;
pub use test_binaries::{run_test_binaries, test_name, TestBinariesEnd, TESTS_WHERE};

/// What `gmemfuzz lane` is asked: its flags, parsed by clap (the doc comments are their help).
#[derive(clap::Args, Debug)]
pub struct LaneOptions {
    /// Boot this bzImage instead of a lane build (e.g. a kvm/next build); its .config,
    /// when beside it, is checked for what the lane needs.
    #[arg(long, conflicts_with_all = ["kernel_version", "kernel_src"])]
    pub kernel: Option<PathBuf>,
    /// Build and boot Debian's source of this series (7.2, 7.3-rc7 or 6.12).
    #[arg(long, default_value = DEFAULT_SERIES, conflicts_with = "kernel_src")]
    pub kernel_version: String,
    /// Build and boot this kernel tree: configured with the lane's fragment and built in a
    /// directory of the lane's own (the tree stays untouched), incrementally.
    #[arg(long, value_name = "DIR")]
    pub kernel_src: Option<PathBuf>,
    /// Total fuzzing time in seconds.
    #[arg(long, default_value_t = 600)]
    pub seconds: u64,
    /// Findings, console logs and corpus go here.
    #[arg(long, default_value = "lane-out")]
    pub out: PathBuf,
    /// Run only the conversion scenarios.
    #[arg(long)]
    pub scenarios_only: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fault injection inside the lane: the KVM backend silently skips this op kind
    /// (default: GMEMFUZZ_SKIP_OP), to show the lane catches a kernel that does.
    // The fuzzing and repro boots run with it: a finding made with it replays with it.
    #[arg(long, value_parser = crate::config::parse_op_kind)]
    pub skip_op: Option<OpKind>,
    /// Fuzz with this cargo-fuzz diff_kvm binary (libFuzzer) instead of seeded programs,
    /// e.g. fuzz/target/x86_64-unknown-linux-gnu/release/diff_kvm; the corpus comes back
    /// in OUT/corpus.
    // Its corpus is seeded from corpus/diff_kvm and corpus/lane, and each finding's program
    // comes back as text (VM type 1 recorded) beside its artifact in the boot's findings/.
    #[arg(long)]
    pub libfuzzer: Option<PathBuf>,
    /// With --libfuzzer: the corpus the boots start from and merge back into (default
    /// OUT/corpus; seeded from corpus/diff_kvm and corpus/lane where it holds no file).
    #[arg(long, value_name = "DIR", requires = "libfuzzer")]
    pub corpus: Option<PathBuf>,
    /// With --libfuzzer: copy each boot's crash artifacts and their text programs here.
    #[arg(long, value_name = "DIR", requires = "libfuzzer")]
    pub artifacts: Option<PathBuf>,
    /// vCPUs of the QEMU guest. More than one makes multi-threaded TCG race with the
    /// kernel's int3-based text patching ("Oops: int3" in the guest, seen here).
    #[arg(long, default_value_t = 1)]
    pub smp: u32,
    /// QEMUs fuzzing at once, each with its own seeds (default: one per host core).
    #[arg(long)]
    pub jobs: Option<u32>,
    /// Kernel coverage in the fuzzing boots: guide (keep and mutate the programs that
    /// reach new KVM code; the corpus comes back in OUT/kcov-corpus), collect (count
    /// only), or off. Every mode but off leaves the PCs and edges reached in
    /// OUT/kcov-pcs.txt.
    #[arg(long, value_enum, default_value_t = KcovMode::Guide)]
    pub kcov: KcovMode,
    /// The kernel code KCOV counts (`gmemfuzz coverage --ranges` writes such a file);
    /// by default the KVM functions of the lane's build of the kernel.
    #[arg(long, value_name = "FILE")]
    pub kcov_ranges: Option<PathBuf>,
    /// Build the kernel with KASAN (harness/lane/kernel-kasan.config): a use-after-free
    /// or out-of-bounds access a race causes is a splat, reported with its program.
    #[arg(long)]
    pub kasan: bool,
    /// Build the kernel with lockdep (harness/lane/kernel-lockdep.config).
    #[arg(long)]
    pub lockdep: bool,
    /// Build the kernel with the SNP-like software platform (harness/lane/patches/sw-rmp-*.patch,
    /// kernel-sw-rmp.config; Linux 7.2 and 7.3): a reverse map that guest_memfd's platform hooks
    /// keep for software-protected VMs, WARNing (a splat, reported with its program) where a hook
    /// call is missing or misplaced; the map is in /sys/kernel/debug/kvm_sw_rmp, and each VM's
    /// part, which the oracle compares with the model after every invalidating op, in its
    /// debugfs directory
    #[arg(long)]
    pub sw_rmp: bool,
    /// The lane's own test of the software platform: the fuzzing and repro boots inject
    /// this platform-hook bug into guest_memfd (`kvm_sw_rmp_bug=` on the kernel's command
    /// line; the check boot runs without it), which fuzzing should find as a WARN.
    #[arg(long, value_enum, value_name = "BUG")]
    pub sw_rmp_bug: Option<crate::kernel::HookBug>,
    /// Instead of fuzzing: boot once and replay this program (a finding) --repeat times,
    /// every try, and say how many reproduced what it records (a divergence, or the
    /// kernel splat it expects).
    #[arg(long, value_name = "FILE", conflicts_with = "minimize")]
    pub replay: Option<PathBuf>,
    /// Instead of fuzzing: boot once and minimize this program (a finding); the result
    /// is written to OUT/minimized.txt.
    #[arg(long, value_name = "FILE")]
    pub minimize: Option<PathBuf>,
    /// Tries of --replay.
    #[arg(long, default_value_t = REPLAY_TRIES, requires = "replay")]
    pub repeat: u32,
    /// Append the session's summary (boots, scenarios, lane regressions, divergences,
    /// kernel splats) to FILE as a JSON line (`gmemfuzz nightly` reads it).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// The tries of `--replay` unless told: `gmemfuzz replay`'s for a program with a group
/// (`repro::cli::RACE_TRIES`, a layer above the lane; tests/lane.rs holds the two equal).
pub const REPLAY_TRIES: u32 = 100;

impl LaneOptions {
    /// The kernel to boot (`--kernel`, `--kernel-src`, `--kernel-version`).
    pub fn kernel_choice(&self) -> KernelChoice {
        KernelChoice::from_flags(self.kernel.clone(), self.kernel_src.clone(), self.kernel_version.clone())
    }

    /// The bug detectors to build into it (`--kasan`, `--lockdep`).
    pub fn detectors(&self) -> Detectors {
        Detectors { kasan: self.kasan, lockdep: self.lockdep, sw_rmp: self.sw_rmp }
    }

    /// Instead of fuzzing: the one program a boot replays or minimizes.
    pub fn repro(&self) -> Option<Repro> {
        match (&self.replay, &self.minimize) {
            (Some(program), _) => Some(Repro::Replay { program: program.clone(), repeat: self.repeat }),
            (None, Some(program)) => Some(Repro::Minimize { program: program.clone() }),
            (None, None) => None,
        }
    }

    /// QEMUs at once: `--jobs`, or one per host core.
    fn jobs(&self) -> u32 {
        self.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32)).max(1)
    }
}

/// What a lane session saw.
#[derive(Debug, Default)]
pub struct LaneReport {
    pub boots: u32,
    pub divergences: u32,
    pub splats: Vec<Splat>,
    /// The last stats line each boot printed.
    pub stats: Vec<String>,
    pub scenarios_passed: bool,
    /// Lane regressions (corpus/lane/*.txt) whose replay matched / did not match the
    /// expectation they record.
    pub regressions_matched: u32,
    pub regressions_differed: Vec<String>,
    /// Programs run and seconds spent fuzzing, over all boots.
    pub programs: u64,
    pub fuzz_seconds: f64,
    /// (programs, fuzzing seconds) of each QEMU.
    pub per_qemu: Vec<(u64, f64)>,
    /// How long the check boot took to reach /init.
    pub check_boot_seconds: Option<f64>,
    /// With `--replay`: the tries that reproduced, of those made.
    pub replay: Option<(u32, u32)>,
}

impl LaneReport {
    /// The session's summary as a result record (`gmemfuzz lane --json FILE`; nightly reads it).
    pub fn record(&self) -> Record {
        Record::Lane {
            boots: self.boots,
            scenarios_passed: self.scenarios_passed,
            regressions_matched: self.regressions_matched,
            regressions_differed: self.regressions_differed.clone(),
            divergences: self.divergences,
            splats: self.splats.iter().map(|s| s.kind.to_string()).collect(),
            programs: self.programs,
            fuzz_seconds: self.fuzz_seconds,
        }
    }

    /// Whether the session saw something: failed scenarios, a lane regression that differed,
    /// a divergence or a kernel splat.
    pub fn found(&self) -> bool {
        !self.scenarios_passed || !self.regressions_differed.is_empty() || self.divergences > 0 || !self.splats.is_empty()
    }

    /// Adds what another boot saw.
    pub fn absorb(&mut self, other: LaneReport) {
        self.boots += other.boots;
        self.divergences += other.divergences;
        self.splats.extend(other.splats);
        self.stats.extend(other.stats);
        self.scenarios_passed |= other.scenarios_passed;
        self.regressions_matched += other.regressions_matched;
        self.regressions_differed.extend(other.regressions_differed);
        self.programs += other.programs;
        self.replay = self.replay.or(other.replay);
        self.fuzz_seconds += other.fuzz_seconds;
        if self.per_qemu.len() < other.per_qemu.len() {
            self.per_qemu.resize(other.per_qemu.len(), (0, 0.0));
        }
        for (mine, theirs) in self.per_qemu.iter_mut().zip(other.per_qemu) {
            mine.0 += theirs.0;
            mine.1 += theirs.1;
        }
    }
}

/// The lane's regression programs.
fn lane_corpus() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/lane");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "txt")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// The lane regressions whose expectation holds on a kernel of this version (`# kernels:`).
/// Each must record its VM type: `replay` of a file without one takes VM type 0, where the
/// lane's private-memory regressions run clean whatever the kernel does.
pub fn regressions_for(version: &str) -> Result<Vec<PathBuf>> {
    let mut pinned = Vec::new();
    for file in lane_corpus() {
        let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let doc = text::parse_document(&text).map_err(|e| anyhow::anyhow!("{}:{e}", file.display()))?;
        if doc.vm_type.is_none() {
            bail!("{}: a lane regression records no VM type: add a `# vm-type:` line", file.display());
        }
        if doc.pins_kernel(version) {
            pinned.push(file);
        }
    }
    Ok(pinned)
}

/// Packs a gmemfuzz binary and the lane corpus (at /lane/) into an initramfs.
pub fn initramfs(gmemfuzz: &Path, work: &Path, libfuzzer: Option<&Path>, kcov_ranges: Option<&Path>) -> Result<PathBuf> {
    // Uncompressed: make-initramfs.sh says why.
    let cpio = work.join("initramfs.cpio");
    let mut extras: Vec<String> =
        lane_corpus().iter().map(|p| format!("{}:/lane/{}", p.display(), p.file_name().expect("a file").to_string_lossy())).collect();
    if let Some(ranges) = kcov_ranges {
        extras.push(format!("{}:{}", ranges.display(), coverage::GUEST_RANGES));
    }
    if let Some(target) = libfuzzer {
        extras.push(format!("{}:/bin/diff_kvm", target.display()));
    }
    let status = script("make-initramfs.sh").arg(gmemfuzz).arg(&cpio).args(&extras).status().context("running make-initramfs.sh")?;
    if !status.success() {
        bail!("make-initramfs.sh failed");
    }
    Ok(cpio)
}

/// Copies the files of `from` into `to` (made if missing), keeping what `to` has.
fn copy_files(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?.flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_file() && !target.exists() {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// The guest command that fuzzes both VM types for `left` seconds with `run(vm_type,
/// seconds)`, the two joined by `then` (`&&` or `;`): VM type 1 (private memory) is what only
/// the lane has; the kernel's default VM type gets a quarter of the time, since its
/// guest_memfd differs between kernels too (mmap, INIT_SHARED). Kernels where the default VM
/// type has no guest_memfd (6.12) fuzz VM type 1 only, all the time: `run --programs 0` opens
/// KVM and stops, or says why it cannot.
fn both_vm_types(left: u64, then: &str, run: impl Fn(u64, u64) -> String) -> String {
    let plain = left / 4;
    if plain < 10 {
        return run(1, left);
    }
    format!(
        "if /bin/gmemfuzz run --vm-type 0 --programs 0 >/dev/null 2>&1; then {} {then} {}; else echo '{NO_TYPE0}'; {}; fi",
        run(0, plain),
        run(1, left - plain),
        run(1, left)
    )
}

/// The fault injection the guest's commands are prefixed with (`GMEMFUZZ_SKIP_OP=K `), if any.
fn injection(opts: &LaneOptions) -> String {
    opts.skip_op.map(|k| format!("{}={} ", crate::config::SKIP_OP, k.name())).unwrap_or_default()
}

/// The libFuzzer corpus of a `--libfuzzer` lane (made if missing).
fn libfuzzer_corpus(opts: &LaneOptions) -> PathBuf {
    opts.corpus.clone().unwrap_or_else(|| opts.out.join("corpus"))
}

/// Whether `dir` holds a file.
fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_file())))
}

/// The text programs the diff_kvm target saved beside its crash artifacts (`fuzz::artifact`):
/// they record VM type 1, so `gmemfuzz replay` runs them as they ran.
fn saved_programs(findings: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(findings)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "txt")).collect())
        .unwrap_or_default();
    found.sort();
    found
}

/// How one boot ended.
pub struct BootEnd {
    /// The guest command's exit status (boot.sh's; -1 when the boot was stopped).
    pub status: i32,
    pub console: String,
    /// Why the lane stopped the boot before its command finished, if it did.
    pub stopped: Option<watch::Stopped>,
    pub seconds: f64,
}

/// The accelerator the boots of `kernel` use: what the host offers (probed once) and whether
/// the kernel's KVM can use it (`accel::choose_for`), said once per kernel.
fn accelerator(kernel: &LaneKernel) -> Accel {
    static HOST: std::sync::OnceLock<Result<accel::Nested, String>> = std::sync::OnceLock::new();
    static SAID: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let host = HOST.get_or_init(accel::host);
    let config = crate::kernel::config_of(&kernel.image).map(|(_, config)| config);
    let (accel, why) = accel::choose_for(host, config.as_deref());
    let mut said = SAID.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !said.contains(&kernel.image) {
        eprintln!("gmemfuzz lane: QEMU accelerator for Linux {}: {why}", kernel.version);
        said.push(kernel.image.clone());
    }
    accel
}

/// One boot running `cmd` inside, watched (see `watch`): stopped soon after a fatal splat
/// (unless `stop_at_fatal` is false), a silent console, or `timeout` seconds.
pub fn boot(kernel: &LaneKernel, initrd: &Path, out: &Path, cmd: &str, timeout: u64, smp: u32, stop_at_fatal: bool) -> Result<BootEnd> {
    boot_sharing(kernel, initrd, out, cmd, timeout, smp, stop_at_fatal, None)
}

/// `boot`, offering `share` to the guest too (9p tag "share", for `cmd` to mount).
#[allow(clippy::too_many_arguments)]
fn boot_sharing(
    kernel: &LaneKernel,
    initrd: &Path,
    out: &Path,
    cmd: &str,
    timeout: u64,
    smp: u32,
    stop_at_fatal: bool,
    share: Option<&Path>,
) -> Result<BootEnd> {
    use std::os::unix::process::CommandExt;
    std::fs::create_dir_all(out)?;
    let started = Instant::now();
    let mut boot = script("boot.sh");
    boot.args(["--kernel", &kernel.image.display().to_string(), "--initrd", &initrd.display().to_string()])
        .args(["--out", &out.display().to_string(), "--timeout", &(timeout + 30).to_string(), "--smp", &smp.to_string()])
        .args(["--accel", accelerator(kernel).name()])
        .args(["--append", &kernel.boot_args()])
        .args(["--cmd", cmd, "--quiet"]);
    if let Some(dir) = share {
        boot.arg("--share").arg(dir);
    }
    let mut child = boot.process_group(0).spawn().context("running boot.sh")?;
    let console_log = out.join("console.log");
    let deadline = started + std::time::Duration::from_secs(timeout);
    let after_fatal = stop_at_fatal.then_some(watch::AFTER_FATAL);
    let stopped = watch::watch(&mut child, &console_log, deadline, after_fatal).context("watching the boot")?;
    let status = match stopped {
        Some(_) => -1,
        None => child.wait()?.code().unwrap_or(-1),
    };
    let console = std::fs::read_to_string(&console_log).unwrap_or_default();
    Ok(BootEnd { status, console, stopped, seconds: started.elapsed().as_secs_f64() })
}

/// The splat a stopped boot is reported as: a silent console is a hang, a finding of its own
/// kind; the other stops were caused by a splat already on the console.
fn stop_finding(end: &BootEnd) -> Option<Splat> {
    match end.stopped {
        Some(watch::Stopped::Silent(quiet)) => {
            let tail: Vec<&str> = end.console.lines().rev().take(30).collect();
            let excerpt = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
            Some(Splat {
                kind: crate::splat::HANG,
                excerpt: format!("no console output for {} s; the console ended:\n{excerpt}", quiet.as_secs()),
            })
        }
        _ => None,
    }
}

/// What a fuzzing boot prints when the kernel's default VM type has no guest_memfd.
const NO_TYPE0: &str = "gmemfuzz-lane: VM type 0 has no guest_memfd on this kernel: fuzzing VM type 1 only";

/// What the check boot prints when the kernel has no /dev/kvm.
const NO_KVM: &str = "gmemfuzz-lane: no /dev/kvm";

/// The check boot's limit: boot time under TCG is ~10-70 s, its work about as much.
const BOOT_SLACK: u64 = 300;

/// What a fuzzing boot may take beyond its fuzzing time (booting, collecting, shutting down):
/// a run ends within `--seconds` plus about one boot.
const BOOT_ALLOWANCE: u64 = 90;

/// The program a repro boot is given, and the one a minimize boot writes, in its shared
/// directory.
const REPLAYED: &str = "replayed.txt";
const MINIMIZED: &str = "minimized.txt";

/// The results file each boot's gmemfuzz writes into its shared directory (`/out`).
const RESULTS: &str = "results.jsonl";

/// What the check boot's results say: scenarios, then one replay per lane regression.
pub fn read_check(records: &[Record], report: &mut LaneReport) {
    let scenarios: Vec<_> = records
        .iter()
        .filter_map(|r| match r {
            Record::Scenario { name, passed, why } => Some((name, passed, why)),
            _ => None,
        })
        .collect();
    report.scenarios_passed = !scenarios.is_empty() && scenarios.iter().all(|(_, passed, _)| **passed);
    for (name, passed, why) in scenarios {
        match why {
            Some(why) if !passed => eprintln!("  FAIL {why}"),
            _ => eprintln!("  PASS {name}"),
        }
    }
    for r in records {
        if let Record::Replay { file, recorded, seen, .. } = r {
            let matched = recorded.is_some() && recorded == seen;
            eprintln!(
                "  regression {file}: recorded {}, this run {}",
                recorded.as_deref().unwrap_or("(nothing)"),
                seen.as_deref().unwrap_or("(harness error)")
            );
            if matched {
                report.regressions_matched += 1;
            } else {
                report.regressions_differed.push(file.clone());
            }
        }
    }
}

/// One boot that runs the conversion scenarios and replays the lane regressions that name
/// this kernel's series.
pub fn check(kernel: &LaneKernel, initrd: &Path, out: &Path, smp: u32, report: &mut LaneReport) -> Result<()> {
    let _ = std::fs::remove_file(out.join(RESULTS));
    let json = format!("--json /out/{RESULTS}");
    let regressions = regressions_for(&kernel.version)?;
    let files: Vec<String> = regressions.iter().map(|p| format!("/lane/{}", p.file_name().expect("a file").to_string_lossy())).collect();
    // Each file records its VM type (`# vm-type:`), as `lane --replay` needs it to.
    let replays: String = files.iter().map(|f| format!("/bin/gmemfuzz replay {f} {json}; ")).collect();
    // The marker is printed in two pieces: init echoes the command line itself.
    let (half, rest) = NO_KVM.split_at(8);
    let cmd = format!("[ -c /dev/kvm ] || echo '{half}''{rest}'; /bin/gmemfuzz scenarios --vm-type 1 {json}; {replays}true");
    let end = boot(kernel, initrd, out, &cmd, BOOT_SLACK, smp, true)?;
    let (status, console) = (end.status, &end.console);
    report.boots += 1;
    report.check_boot_seconds = boot_seconds(console);
    report.splats.extend(stop_finding(&end));
    eprintln!(
        "gmemfuzz lane: Linux {}: scenarios and the {} lane regressions naming it (boot exit {status}):",
        kernel.version,
        regressions.len()
    );
    if console.lines().any(|l| l.starts_with(NO_KVM)) {
        bail!(
            "Linux {} booted without /dev/kvm: it lacks CONFIG_KVM or CONFIG_KVM_AMD (console: {})",
            kernel.version,
            out.join("console.log").display()
        );
    }
    if !out.join(RESULTS).exists() {
        if let Some(splat) = scan_console(console).first() {
            bail!("Linux {} did not get to run the lane's tools: {} on the console:\n{}", kernel.version, splat.kind, splat.excerpt);
        }
        bail!(
            "Linux {} wrote no results to /out: it may lack the 9p share (CONFIG_NET_9P_VIRTIO, CONFIG_9P_FS) or the initramfs (CONFIG_BLK_DEV_INITRD); console: {}",
            kernel.version,
            out.join("console.log").display()
        );
    }
    read_check(&report::read(&out.join(RESULTS))?, report);
    let expected = regressions.len();
    let replayed = report.regressions_matched as usize + report.regressions_differed.len();
    if replayed < expected {
        eprintln!("gmemfuzz lane: {expected} lane regressions, but the boot reported {replayed}");
        report.regressions_differed.push(format!("{} of {expected} lane regressions did not report", expected - replayed));
    }
    report.splats.extend(unknown_splats(console, out));
    Ok(())
}

/// The splats on a check or fuzzing boot's console that are not known kernel bugs
/// (`known::KNOWN_SPLATS`, a lane regression may expect one); the known ones are named.
fn unknown_splats(console: &str, dir: &Path) -> Vec<Splat> {
    let mut unknown = Vec::new();
    for splat in scan_console(console) {
        match crate::known::classify_splat(&splat) {
            Some(bug) => eprintln!("gmemfuzz lane: known kernel splat {} ({}), console in {}", bug.name, bug.reference, dir.display()),
            None => unknown.push(splat),
        }
    }
    unknown
}

/// What a fuzzing boot's results say.
pub fn read_fuzz(records: &[Record], report: &mut LaneReport) -> Option<String> {
    let mut stats = None;
    for r in records {
        match r {
            Record::Divergence { kind, op_index, op, program, .. } => {
                report.divergences += 1;
                eprintln!("gmemfuzz lane: DIVERGENCE {kind} at op #{op_index} ({op}):\n{program}");
            }
            Record::Taint { before, after, program, report } => {
                eprintln!("gmemfuzz lane: kernel taint {before:#x} -> {after:#x} while this ran:\n{program}{report}");
            }
            Record::Stats { line, .. } => {
                report.stats.push(line.clone());
                stats = Some(line.clone());
            }
            Record::Throughput { programs, ops, seconds, breakdown } => {
                report.programs += programs;
                report.fuzz_seconds += seconds;
                report.stats.push(format!(
                    "throughput: {programs} programs of {ops} ops in {seconds:.1} s: {:.1} programs/s",
                    *programs as f64 / seconds
                ));
                report.stats.push(format!("inside the guest: {}", breakdown.show(*seconds, *programs)));
                report.stats.extend(breakdown.show_racing(*seconds, *programs));
            }
            r @ Record::Coverage { .. } => {
                let line = r.coverage_line().expect("a coverage record");
                eprintln!("gmemfuzz lane: {line}");
                report.stats.push(line);
            }
            Record::Scenario { .. } | Record::Replay { .. } | Record::Lane { .. } => {}
        }
    }
    stats
}

/// Runs the lane: scenarios and regressions once, then fuzzing boots until time is up.
pub fn run(opts: &LaneOptions) -> Result<LaneReport> {
    let kernel = kernel(&opts.kernel_choice(), opts.detectors())?;
    eprintln!("gmemfuzz lane: booting Linux {} ({}; bug detectors: {})", kernel.version, kernel.image.display(), kernel.detectors.names());
    std::fs::create_dir_all(&opts.out)?;
    let work = opts.out.join("work");
    std::fs::create_dir_all(&work)?;
    let mut me = std::env::current_exe().context("finding the gmemfuzz binary")?;
    if me.file_name().is_none_or(|n| n != "gmemfuzz") {
        // The guest runs /bin/gmemfuzz, and the initramfs names a binary by its file name.
        let copy = work.join("gmemfuzz");
        std::fs::copy(&me, &copy).with_context(|| format!("copying {} to {}", me.display(), copy.display()))?;
        me = copy;
    }
    let kcov_ranges = match (opts.kcov, &opts.kcov_ranges) {
        (KcovMode::Off, _) => None,
        (_, Some(file)) => {
            crate::kcov::ranges::Ranges::read(file)?;
            Some(file.clone())
        }
        (_, None) => coverage::ranges_for(&kernel, &work),
    };
    let initrd = initramfs(&me, &work, opts.libfuzzer.as_deref(), kcov_ranges.as_deref())?;
    let mut report = LaneReport::default();
    // As with --skip-op, the check boot runs the kernel as it is and the others inject.
    let injected = match opts.sw_rmp_bug {
        Some(bug) => kernel.injecting(bug)?,
        None => kernel.clone(),
    };
    if let Some(what) = &opts.repro() {
        repro_boot(opts, &injected, &initrd, what, &mut report)?;
        return Ok(report);
    }
    check(&kernel, &initrd, &opts.out.join("boot-check"), opts.smp, &mut report)?;
    if opts.scenarios_only {
        return Ok(report);
    }
    let kernel = injected;

    let start = Instant::now();
    let jobs = opts.jobs();
    let booting = report.check_boot_seconds.unwrap_or(60.0);
    let shared = std::sync::Mutex::new(report);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..jobs)
            .map(|job| {
                let (kernel, initrd, shared) = (&kernel, &initrd, &shared);
                scope.spawn(move || -> Result<()> {
                    let mut seed = opts.seed + u64::from(job);
                    while start.elapsed().as_secs() < opts.seconds {
                        let left = opts.seconds - start.elapsed().as_secs();
                        let (boot, clean) = fuzz_boot(opts, kernel, initrd, job, seed, left, booting)?;
                        shared.lock().expect("a worker panicked").absorb(boot);
                        seed += u64::from(jobs);
                        if clean {
                            break;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a lane worker panicked")?;
        }
        Ok(())
    })?;
    let mut report = shared.into_inner().expect("a worker panicked");
    if opts.kcov != KcovMode::Off && opts.libfuzzer.is_none() {
        report.stats.extend(coverage::merge_pcs(&opts.out, &kernel)?);
    }
    for (job, (programs, seconds)) in report.per_qemu.iter().enumerate() {
        if *seconds > 0.0 {
            eprintln!(
                "gmemfuzz lane: QEMU {job}: {programs} programs in {seconds:.0} s of fuzzing: {:.1} programs/s",
                *programs as f64 / seconds
            );
        }
    }
    Ok(report)
}

/// What a boot does with one program (`--replay`, `--minimize`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repro {
    /// Replay it this many times, every try (`replay --keep-going`), and say how many
    /// reproduced what it records: a race's divergence, or the splat it expects, which the
    /// guest reads from its kernel log.
    Replay { program: PathBuf, repeat: u32 },
    /// Minimize it (`gmemfuzz minimize`: a candidate with a group kept if it reproduces
    /// within `shrink::RACE_TRIES` runs); the result comes back as OUT/minimized.txt.
    Minimize { program: PathBuf },
}

impl Repro {
    fn program(&self) -> &Path {
        match self {
            Repro::Replay { program, .. } | Repro::Minimize { program } => program,
        }
    }
}

/// One boot that does `what` with its program. The boot is not stopped at a fatal splat:
/// KASAN reports and goes on, and each try counts.
fn repro_boot(opts: &LaneOptions, kernel: &LaneKernel, initrd: &Path, what: &Repro, report: &mut LaneReport) -> Result<()> {
    let dir = opts.out.join("repro");
    std::fs::create_dir_all(&dir)?;
    for stale in [RESULTS, MINIMIZED] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    let name = what.program().display();
    let text = std::fs::read_to_string(what.program()).with_context(|| format!("reading {name}"))?;
    text::parse_document(&text).map_err(|e| anyhow::anyhow!("{name}:{e}"))?;
    std::fs::write(dir.join(REPLAYED), text)?;
    let inject = injection(opts);
    // Each run is a program of a few seconds at most under TCG (more with KASAN).
    let (cmd, timeout) = match what {
        Repro::Replay { repeat, .. } => (
            format!("{inject}/bin/gmemfuzz replay /out/{REPLAYED} --repeat {repeat} --keep-going --json /out/{RESULTS}"),
            BOOT_SLACK + 10 * u64::from(*repeat),
        ),
        Repro::Minimize { .. } => (format!("{inject}/bin/gmemfuzz minimize /out/{REPLAYED} -o /out/{MINIMIZED}"), BOOT_SLACK + 1800),
    };
    let end = boot(kernel, initrd, &dir, &cmd, timeout, opts.smp, false)?;
    report.boots += 1;
    report.splats.extend(stop_finding(&end));
    let splats = scan_console(&end.console);
    eprintln!(
        "gmemfuzz lane: boot exit {} after {:.0} s, {} kernel splats on the console (console in {})",
        end.status,
        end.seconds,
        splats.len(),
        dir.display()
    );
    if let Some(first) = splats.first() {
        eprintln!("gmemfuzz lane: the first:\n{}", first.excerpt);
    }
    report.splats.extend(splats);
    match what {
        Repro::Replay { .. } => {
            let records = report::read(&dir.join(RESULTS))?;
            let Some(Record::Replay { recorded, seen, tries, hits, .. }) = records.iter().find(|r| matches!(r, Record::Replay { .. }))
            else {
                bail!("the replay boot reported no result (console in {})", dir.join("console.log").display());
            };
            let line = format!(
                "replay of {name} on Linux {}: reproduced {} {hits} of {tries} tries (last seen: {})",
                kernel.version,
                recorded.as_deref().unwrap_or("a divergence"),
                seen.as_deref().unwrap_or("a harness error")
            );
            eprintln!("gmemfuzz lane: {line}");
            report.stats.push(line);
            report.replay = Some((*hits, *tries));
        }
        Repro::Minimize { .. } => {
            let minimized = std::fs::read_to_string(dir.join(MINIMIZED))
                .with_context(|| format!("the minimize boot wrote no program (console in {})", dir.join("console.log").display()))?;
            let out = opts.out.join(MINIMIZED);
            std::fs::write(&out, &minimized)?;
            eprintln!("gmemfuzz lane: minimized {name} on Linux {} into {}:\n{minimized}", kernel.version, out.display());
            report.stats.push(format!("minimized {name} into {}", out.display()));
        }
    }
    Ok(())
}

/// One fuzzing boot of QEMU `job`; returns what it saw and whether its command ran to its end.
fn fuzz_boot(
    opts: &LaneOptions,
    kernel: &LaneKernel,
    initrd: &Path,
    job: u32,
    seed: u64,
    left: u64,
    booting: f64,
) -> Result<(LaneReport, bool)> {
    let mut report = LaneReport::default();
    // The guest fuzzes for what is left once it has booted (as long as the check boot took
    // to reach /init), so that it finishes, and writes its stats, before the boot's deadline.
    let boot_deadline = left + BOOT_ALLOWANCE;
    let left = left.saturating_sub(booting.ceil() as u64).max(10);
    let dir = opts.out.join(format!("boot-{seed}"));
    let cmd = match opts.libfuzzer {
        None => seeded_command(opts, &dir, seed, left)?,
        Some(_) => libfuzzer_command(opts, &dir, seed, left)?,
    };
    let end = boot(kernel, initrd, &dir, &cmd, boot_deadline, opts.smp, true)?;
    report.boots += 1;
    if let Some(stop) = &end.stopped {
        eprintln!("gmemfuzz lane: boot with seed {seed} stopped after {:.0} s: {stop:?}", end.seconds);
    }
    report.splats.extend(stop_finding(&end));
    let stats = match opts.libfuzzer {
        None => {
            coverage::collect(opts.kcov, &opts.out, &dir)?;
            read_fuzz(&report::read(&dir.join(RESULTS))?, &mut report)
        }
        Some(_) => {
            collect_libfuzzer(opts, &dir)?;
            report.divergences += crashes(&dir.join("findings"));
            None
        }
    };
    say_boot(job, seed, &dir, &end, stats, &mut report);
    // Programs and fuzzing seconds, by QEMU.
    report.per_qemu = vec![(0, 0.0); job as usize + 1];
    report.per_qemu[job as usize] = (report.programs, report.fuzz_seconds);
    Ok((report, end.status == 0))
}

/// The guest command of a seeded fuzzing boot: `gmemfuzz run` on both VM types, its results
/// in the boot's /out (kernel coverage as `opts.kcov` asks, readied in `dir`).
fn seeded_command(opts: &LaneOptions, dir: &Path, seed: u64, left: u64) -> Result<String> {
    let inject = injection(opts);
    let kcov = coverage::guest_args(opts.kcov, &opts.out, dir)?;
    let run = |vm_type: u64, seconds: u64| {
        format!(
            "{inject}/bin/gmemfuzz run --vm-type {vm_type} --seed {seed} --programs 1000000000 --seconds {seconds} --findings /out/findings --taint-check --json /out/{RESULTS}{}",
            kcov(vm_type)
        )
    };
    // A divergence of VM type 0 ends the boot (the lane reboots on new seeds).
    Ok(both_vm_types(left, "&&", run))
}

/// The guest command of a libFuzzer boot: the diff_kvm target on both VM types, its corpus
/// and findings in `dir`.
fn libfuzzer_command(opts: &LaneOptions, dir: &Path, seed: u64, left: u64) -> Result<String> {
    // The corpus (seeded with the text programs of corpus/diff_kvm and the lane's
    // regressions, which the target reads as programs) goes into the boot's
    // shared directory and comes back out of it after the boot.
    let corpus = libfuzzer_corpus(opts);
    if !has_files(&corpus) {
        let stored = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
        copy_files(&stored.join("diff_kvm"), &corpus)?;
        copy_files(&stored.join("lane"), &corpus)?;
    }
    copy_files(&corpus, &dir.join("corpus"))?;
    std::fs::create_dir_all(dir.join("findings"))?;
    let inject = injection(opts);
    let run = |vm_type: u64, seconds: u64| {
        format!("{inject}GMEMFUZZ_VM_TYPE={vm_type} /bin/diff_kvm /out/corpus -max_total_time={seconds} -seed={seed} -artifact_prefix=/out/findings/ -print_final_stats=1")
    };
    // A crash of VM type 0 (libFuzzer stops at its first) leaves VM type 1 its time.
    Ok(both_vm_types(left, ";", run))
}

/// After a libFuzzer boot: its corpus merged back, its artifacts copied where asked, and each
/// finding's text program named with the command that replays it in the lane.
fn collect_libfuzzer(opts: &LaneOptions, dir: &Path) -> Result<()> {
    copy_files(&dir.join("corpus"), &libfuzzer_corpus(opts))?;
    if let Some(artifacts) = &opts.artifacts {
        copy_files(&dir.join("findings"), artifacts)?;
    }
    let kept = opts.artifacts.as_deref().unwrap_or(dir);
    for program in saved_programs(&dir.join("findings")) {
        let name = program.file_name().expect("a file").to_string_lossy().into_owned();
        let at = if opts.artifacts.is_some() { kept.join(&name) } else { program.clone() };
        eprintln!(
            "gmemfuzz lane: finding saved as text (its VM type recorded): {}; replay it in the lane: {}gmemfuzz lane --replay {0}",
            at.display(),
            injection(opts)
        );
    }
    Ok(())
}

/// The crash inputs libFuzzer saved in `findings` (each with its text program beside it).
fn crashes(findings: &Path) -> u32 {
    std::fs::read_dir(findings)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("crash-") && !e.file_name().to_string_lossy().ends_with(".txt"))
                .count()
        })
        .unwrap_or(0) as u32
}

/// Says how a fuzzing boot ended (its exit, its last stats line, its time under QEMU and its
/// kernel splats) and adds its time line and splats to `report`.
fn say_boot(job: u32, seed: u64, dir: &Path, end: &BootEnd, stats: Option<String>, report: &mut LaneReport) {
    let status = end.status;
    match stats {
        Some(stats) => eprintln!("gmemfuzz lane: QEMU {job}, boot with seed {seed}: exit {status}: {stats}"),
        None => eprintln!("gmemfuzz lane: QEMU {job}, boot with seed {seed}: exit {status} (console in {})", dir.display()),
    }
    let booting = boot_seconds(&end.console).map_or("?".to_string(), |s| format!("{s:.1}"));
    let line = format!("QEMU {job}, boot with seed {seed}: {:.1} s under QEMU, of which {booting} s booting to /init", end.seconds);
    eprintln!("gmemfuzz lane: {line}");
    report.stats.push(line);
    let splats = unknown_splats(&end.console, dir);
    for s in &splats {
        eprintln!("gmemfuzz lane: KERNEL SPLAT ({}), console in {}:\n{}", s.kind, dir.display(), s.excerpt);
    }
    report.splats.extend(splats);
}
