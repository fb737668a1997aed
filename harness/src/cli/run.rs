//! `gmemfuzz run`: seeded random programs on the model and real KVM, without libFuzzer.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::Backend;

use crate::fuzz::artifact;
use crate::kcov::guide::Guide;
use crate::kcov::ranges::Ranges;
use crate::kcov::{Kcov, KcovError, KcovMode};
use crate::report::{Record, Sink};
use crate::repro::text;
use crate::splat::KernelLog;
use crate::timing::Stopwatch;
use crate::{Program, RunError, Runner, Trace};

/// What `gmemfuzz run` is asked: its flags, parsed by clap (the doc comments are their help).
#[derive(clap::Args, Debug)]
pub struct RunOptions {
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 1000)]
    pub programs: u64,
    /// Stop after this many seconds even if programs remain (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
    /// Write a diverging program here as a text program (divergence-SEED-N.txt).
    #[arg(long)]
    pub findings: Option<PathBuf>,
    /// After each program, read /proc/sys/kernel/tainted and the kernel log (/dev/kmsg): a
    /// new taint or splat (WARN, oops, KASAN, lockdep) is a kernel finding, saved as the
    /// program that ran, expecting the splat, with the kernel's report.
    #[arg(long)]
    pub taint_check: bool,
    /// Ops per program.
    #[arg(long, default_value_t = 16)]
    pub ops: usize,
    #[arg(long, default_value_t = 0)]
    pub vm_type: u64,
    /// Append results (divergences, taint, stats, throughput) to FILE as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also run each program on a VM made for it and require the same result (checks
    /// that reusing the VM between programs leaves nothing behind).
    // It shows that reusing a VM across programs leaves nothing behind that changes what a
    // program does.
    #[arg(long)]
    pub verify_reset: bool,
    /// Kernel coverage from KCOV (the lane's kernels have it; where the kernel has none,
    /// one line says so and the run goes on without).
    #[arg(long, value_enum, default_value_t = KcovMode::Off)]
    pub kcov: KcovMode,
    /// Count only PCs in these ranges (a file of `0xSTART 0xEND` lines, as
    /// `gmemfuzz coverage --ranges` writes); every kernel PC without.
    #[arg(long, value_name = "FILE")]
    pub kcov_ranges: Option<PathBuf>,
    /// Write the kernel PCs reached to FILE (for `gmemfuzz coverage`), every 30 s and at the end.
    #[arg(long, value_name = "FILE")]
    pub kcov_pcs: Option<PathBuf>,
    /// With --kcov guide: start from the inputs in DIR and write each input kept there.
    #[arg(long, value_name = "DIR")]
    pub corpus: Option<PathBuf>,
    /// Generate no concurrent groups (the sequential programs of before issue 12).
    #[arg(long)]
    pub no_groups: bool,
}

/// The most of a session's time comparison reruns may take: early on nearly every program
/// reaches something new, and a rerun costs a whole program.
const RERUN_SHARE: f64 = 0.05;

/// How often the PCs file is rewritten, so that a boot cut short still leaves one.
const PCS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// /proc/sys/kernel/tainted (0 where it cannot be read).
fn kernel_taint() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/tainted").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Writes a finding's text (`artifact::found_text`, `artifact::splat_text`) as
/// `findings/name`, when a findings directory was given.
fn save(findings: Option<&PathBuf>, name: &str, text: impl FnOnce() -> String) -> Result<()> {
    if let Some(dir) = findings {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        std::fs::write(&path, text()).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("gmemfuzz: wrote {}", path.display());
    }
    Ok(())
}

/// KCOV and what it steers, where the kernel has it.
struct Coverage {
    kcov: Kcov,
    guide: Guide,
    mode: KcovMode,
    /// Inputs of an earlier session's corpus, still to run.
    pending: Vec<Vec<u8>>,
    last_pcs: Instant,
    /// Programs run a second time to trace their comparisons, and the seconds they took.
    reruns: u64,
    rerun_seconds: f64,
}

impl Coverage {
    /// KCOV as `opts` asks, or `None` with one line saying why not.
    fn open(opts: &RunOptions) -> Result<Option<Coverage>> {
        if opts.kcov == KcovMode::Off {
            return Ok(None);
        }
        let kcov = match Kcov::open() {
            Ok(k) => k,
            Err(KcovError::Absent) => {
                eprintln!("gmemfuzz: {}: running without kernel coverage", KcovError::Absent);
                return Ok(None);
            }
            Err(e) => bail!("{e}"),
        };
        let ranges = match &opts.kcov_ranges {
            Some(path) => Ranges::read(path)?,
            None => Ranges::all(),
        };
        eprintln!(
            "gmemfuzz: kernel coverage ({}) from KCOV{}, counting {}",
            opts.kcov,
            if kcov.has_comparisons() { " with comparison operands" } else { "" },
            if ranges.is_all() { "every kernel PC".to_string() } else { format!("PCs in {} KiB of KVM code", ranges.size() / 1024) }
        );
        let guide = Guide::new(opts.seed, opts.ops, ranges);
        let mut pending = Vec::new();
        if let Some(dir) = &opts.corpus {
            std::fs::create_dir_all(dir)?;
            let mut files: Vec<_> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
            files.sort();
            for file in files {
                let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                if !text::looks_like_text(&bytes) {
                    pending.push(guide.fit(bytes));
                }
            }
            pending.reverse();
            eprintln!("gmemfuzz: {} inputs in {} to start from", pending.len(), dir.display());
        }
        Ok(Some(Coverage { kcov, guide, mode: opts.kcov, pending, last_pcs: Instant::now(), reruns: 0, rerun_seconds: 0.0 }))
    }

    /// The next guided input (`None` when coverage only watches the seeded programs).
    fn next_input(&mut self) -> Option<Vec<u8>> {
        (self.mode == KcovMode::Guide).then(|| self.pending.pop().unwrap_or_else(|| self.guide.next_input()))
    }

    fn write_pcs(&mut self, opts: &RunOptions) -> Result<()> {
        if let Some(path) = &opts.kcov_pcs {
            let header = format!("gmemfuzz run --kcov {} --vm-type {} --seed {}", opts.kcov, opts.vm_type, opts.seed);
            std::fs::write(path, self.guide.signal.pcs_file(&header)).with_context(|| format!("writing {}", path.display()))?;
        }
        self.last_pcs = Instant::now();
        Ok(())
    }

    fn record(&self, opts: &RunOptions) -> Record {
        let signal = &self.guide.signal;
        Record::Coverage {
            mode: opts.kcov.to_string(),
            vm_type: opts.vm_type,
            edges: signal.edges(),
            pcs: signal.pc_count(),
            traced: signal.traced(),
            corpus: self.guide.corpus_len() as u64,
            dictionary: self.guide.dictionary_len() as u64,
            reruns: self.reruns,
            sources: match self.mode {
                KcovMode::Guide => self.guide.sources(),
                _ => String::new(),
            },
        }
    }
}

/// A program's results: the run, and the comparison rerun where there was one (the same
/// program: a divergence there is one too).
type Results = Vec<Result<Trace, RunError>>;

/// `gmemfuzz run`: seeded (or, with `--kcov guide`, guided) programs on real KVM until
/// `--programs` or `--seconds` run out, a divergence or a kernel splat.
pub fn run(opts: &RunOptions, sink: &Sink) -> Result<()> {
    let mut session = Session::open(opts, sink)?;
    let profile = session.runner.backend.profile().clone();
    let weights = weights(opts, &profile);
    let mut seeded = Program::seeded_with(opts.seed, opts.ops, &profile, weights.clone());
    let mut last_stats = session.start;
    for i in 0..opts.programs as usize {
        if opts.seconds != 0 && session.start.elapsed().as_secs() >= opts.seconds {
            break;
        }
        let input = session.coverage.as_mut().and_then(Coverage::next_input);
        let program = match &input {
            Some(bytes) => Program::from_seeded_input(bytes, opts.ops, &profile, &weights),
            None => seeded.next().expect("seeded programs never end"),
        };
        let taint_before = if opts.taint_check { kernel_taint() } else { 0 };
        let results = session.run_program(i, &program, input.as_deref())?;
        if opts.verify_reset {
            session.verify_reset(i, &program, &results[0])?;
        }
        session.check_kernel(i, &program, taint_before)?;
        session.check_results(i, &program, results)?;
        if last_stats.elapsed().as_secs() >= 10 {
            session.say_stats();
            last_stats = Instant::now();
        }
    }
    session.finish()?;
    session.throughput()
}

/// The op rates of the session's programs: the profile's, without groups if asked.
fn weights(opts: &RunOptions, profile: &gmemfuzz_backends::Profile) -> crate::gen::OpWeights {
    let mut weights = crate::gen::OpWeights::for_profile(profile);
    if opts.no_groups {
        weights.set(gmemfuzz_backends::OpKind::Group, 0);
    }
    weights
}

/// One `gmemfuzz run` session: the runner on real KVM and what watches it.
struct Session<'a> {
    opts: &'a RunOptions,
    sink: &'a Sink,
    runner: Runner<KvmBackend>,
    coverage: Option<Coverage>,
    kernel_log: Option<KernelLog>,
    watchdog: super::hang::Watchdog,
    start: Instant,
}

impl<'a> Session<'a> {
    fn open(opts: &'a RunOptions, sink: &'a Sink) -> Result<Session<'a>> {
        let mut runner = Runner::new(super::kvm(opts.vm_type)?);
        runner.filter_known = true;
        // The kernel log is read after each program: its release must fall within it.
        runner.release_after_run = true;
        eprintln!("gmemfuzz: {}", runner.backend.profile().summary());
        let start = Instant::now();
        let coverage = Coverage::open(opts)?;
        let kernel_log = match opts.taint_check {
            false => None,
            true => KernelLog::open()
                .map_err(|e| eprintln!("gmemfuzz: {}: {e}: kernel splats are seen by taint alone, without their report", KernelLog::PATH))
                .ok(),
        };
        let profile = runner.backend.profile().clone();
        let watchdog = super::hang::Watchdog::start(super::hang::HUNG_AFTER, opts.findings.clone(), opts.seed, profile);
        Ok(Session { opts, sink, runner, coverage, kernel_log, watchdog, start })
    }

    /// Runs program `i` (from the guided `input`, if any) under the watchdog, traced by KCOV
    /// where it is on.
    fn run_program(&mut self, i: usize, program: &Program, input: Option<&[u8]>) -> Result<Results> {
        let Session { opts, runner, coverage, watchdog, start, .. } = self;
        let Some(c) = coverage else { return Ok(vec![watchdog.watch(i, program, || runner.run(program))]) };
        let mut results = Vec::with_capacity(2);
        let clock = Stopwatch::start();
        let (result, trace) = c.kcov.pcs(|| watchdog.watch(i, program, || runner.run(program)));
        let seconds = clock.secs();
        results.push(result);
        let t = Stopwatch::start();
        let new = match input {
            Some(bytes) => c.guide.add(bytes, trace, seconds),
            None => c.guide.signal.add(trace),
        };
        if new > 0 && c.mode == KcovMode::Guide {
            if let (Some(dir), Some(bytes)) = (&opts.corpus, input) {
                std::fs::write(dir.join(sha1_smol::Sha1::from(bytes).digest().to_string()), bytes)?;
            }
            // Once per kept input, what the kernel compared on its way: a second run,
            // so within a share of the session's time.
            if c.kcov.has_comparisons() && c.rerun_seconds < RERUN_SHARE * start.elapsed().as_secs_f64() {
                let rerun = Stopwatch::start();
                let (again, comparisons) = c.kcov.comparisons(|| watchdog.watch(i, program, || runner.run(program)))?;
                c.rerun_seconds += rerun.secs();
                c.guide.add_comparisons(&comparisons);
                // Counted as KCOV's time, not as another program.
                runner.stats.programs -= 1;
                c.reruns += 1;
                results.push(again);
            }
        }
        if c.last_pcs.elapsed() >= PCS_EVERY {
            c.write_pcs(opts)?;
        }
        runner.stats.time.kcov += t.secs();
        Ok(results)
    }

    /// `--verify-reset`: the program on a VM made for it must show what it showed on the
    /// reused one.
    fn verify_reset(&mut self, i: usize, program: &Program, result: &Result<Trace, RunError>) -> Result<()> {
        let mut fresh = Runner::new(super::kvm(self.opts.vm_type)?);
        fresh.filter_known = true;
        if let Err(e) = crate::runner::same_on_fresh(result, &mut fresh, program) {
            bail!(
                "gmemfuzz HARNESS ERROR: program #{i} ran differently on the reused VM and on a fresh one: {e}\n{}",
                text::print(program)
            );
        }
        self.runner.stats.verified_resets += 1;
        Ok(())
    }

    /// `--taint-check`: a new taint or kernel splat while program `i` ran ends the session
    /// with the program saved.
    fn check_kernel(&mut self, i: usize, program: &Program, taint_before: u64) -> Result<()> {
        let opts = self.opts;
        let taint_after = if opts.taint_check { kernel_taint() } else { 0 };
        let mut splats = self.kernel_log.as_mut().map(KernelLog::new_splats).unwrap_or_default();
        // A splat already written up is counted and fuzzing goes on (its taint with it).
        let before = splats.len();
        splats.retain(|s| crate::known::classify_splat(s).is_none());
        self.runner.stats.known += (before - splats.len()) as u64;
        if splats.is_empty() && (taint_after == taint_before || before > 0) {
            return Ok(());
        }
        let text = text::print(program);
        let name = format!("splat-{}-{i}.txt", opts.seed);
        let report = splats.iter().map(|s| s.excerpt.as_str()).collect::<Vec<_>>().join("\n");
        eprintln!("gmemfuzz KERNEL SPLAT: kernel taint went {taint_before:#x} -> {taint_after:#x} during program #{i}:\n{report}\n{text}");
        let profile = self.runner.backend.profile();
        save(opts.findings.as_ref(), &name, || match splats.first() {
            Some(splat) => artifact::splat_text(program, profile, splat),
            None => {
                artifact::found_text(program, profile, &format!("kernel taint went {taint_before:#x} -> {taint_after:#x} while this ran"))
            }
        })?;
        self.sink.put(&Record::Taint { before: taint_before, after: taint_after, program: text, report })?;
        self.finish()?;
        bail!("kernel splat during program #{i}");
    }

    /// A divergence in program `i`'s results ends the session with the program saved.
    fn check_results(&mut self, i: usize, program: &Program, results: Results) -> Result<()> {
        let opts = self.opts;
        for result in results {
            match result {
                Ok(_) => {}
                Err(RunError::Divergence(d)) => {
                    eprintln!("{d}");
                    let text = text::print(program);
                    eprintln!("  program (seed {}, #{i}):\n{text}", opts.seed);
                    let profile = self.runner.backend.profile();
                    save(opts.findings.as_ref(), &format!("divergence-{}-{i}.txt", opts.seed), || {
                        artifact::found_text(program, profile, &d.to_string())
                    })?;
                    self.sink.put(&Record::divergence(&d, program))?;
                    self.finish()?;
                    bail!("divergence in program #{i}");
                }
                Err(e) => bail!("{e}"),
            }
        }
        Ok(())
    }

    /// The stats every 10 s, on stderr.
    fn say_stats(&self) {
        eprintln!("gmemfuzz run stats: {}", self.runner.stats);
        if let Some(line) = self.coverage.as_ref().and_then(|c| c.record(self.opts).coverage_line()) {
            eprintln!("gmemfuzz run {line}");
        }
    }

    /// The session's counters (and coverage) at its end, printed and recorded.
    fn finish(&mut self) -> Result<()> {
        let (opts, runner) = (self.opts, &mut self.runner);
        runner.stats.time.reset_parts = runner.backend.reset_phases().into_iter().map(|(k, s)| (k.to_string(), s)).collect();
        runner.stats.time.reset_counts = runner.backend.reset_counts().into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        println!("{}", runner.stats);
        if let Some(counters) = crate::kernel::sw_rmp_counters() {
            println!("software RMP: {counters}");
        }
        self.sink.put(&Record::stats(&runner.stats, opts.vm_type))?;
        if let Some(c) = &mut self.coverage {
            c.write_pcs(opts)?;
            let record = c.record(opts);
            println!("{}", record.coverage_line().unwrap_or_default());
            self.sink.put(&record)?;
        }
        Ok(())
    }

    /// Programs per second over the session and where the time went, printed and recorded.
    fn throughput(&self) -> Result<()> {
        let stats = &self.runner.stats;
        let secs = self.start.elapsed().as_secs_f64();
        println!(
            "throughput: {} programs of {} ops in {secs:.1} s: {:.1} programs/s",
            stats.programs,
            self.opts.ops,
            stats.programs as f64 / secs
        );
        println!("{}", stats.time.show(secs, stats.programs));
        if let Some(line) = stats.time.show_racing(secs, stats.programs) {
            println!("{line}");
        }
        self.sink.put(&Record::Throughput { programs: stats.programs, ops: self.opts.ops, seconds: secs, breakdown: stats.time.clone() })
    }
}
