//! The gmemfuzz command-line tool.

use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use gmemfuzz::{Program, RunError, Runner};
use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Profile};

#[derive(Parser)]
#[command(name = "gmemfuzz", about = "Differential fuzzing of KVM guest_memfd against a reference model")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what the running kernel offers (the capability profile the model uses).
    Profile {
        /// VM type (0 = default, 1 = KVM_X86_SW_PROTECTED_VM).
        #[arg(long, default_value_t = 0)]
        vm_type: u64,
    },
    /// Run seeded random programs on the model and real KVM, without libFuzzer.
    Run {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 1000)]
        programs: u64,
        /// Stop after this many seconds even if programs remain (0 = no limit).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        /// Write a diverging program here as a text program (divergence-SEED-N.txt).
        #[arg(long)]
        findings: Option<std::path::PathBuf>,
        /// After each program, read /proc/sys/kernel/tainted: a new taint (WARN, oops,
        /// KASAN's bad-page taint) is a kernel finding, reported with the program that ran.
        #[arg(long)]
        taint_check: bool,
        /// Ops per program.
        #[arg(long, default_value_t = 16)]
        ops: usize,
        #[arg(long, default_value_t = 0)]
        vm_type: u64,
    },
    /// Boot the Linux 6.12 test kernel under QEMU (building it on first use) and run the
    /// conversion scenarios and differential fuzzing of VM type 1 inside.
    Lane {
        /// Boot this kernel instead of the lane's own build (e.g. a kvm/next bzImage).
        #[arg(long)]
        kernel: Option<std::path::PathBuf>,
        /// Total fuzzing time in seconds.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
        /// Findings, console logs and corpus go here.
        #[arg(long, default_value = "lane-out")]
        out: std::path::PathBuf,
        /// Run only the conversion scenarios.
        #[arg(long)]
        scenarios_only: bool,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fault injection inside the lane: the KVM backend silently skips this op kind
        /// (see GMEMFUZZ_SKIP_OP), to show the lane catches a kernel that does.
        #[arg(long)]
        skip_op: Option<String>,
        /// Fuzz with this cargo-fuzz diff_kvm binary (libFuzzer) instead of seeded programs,
        /// e.g. fuzz/target/x86_64-unknown-linux-gnu/release/diff_kvm; the corpus comes back
        /// in OUT/corpus.
        #[arg(long)]
        libfuzzer: Option<std::path::PathBuf>,
        /// vCPUs of the QEMU guest. More than one makes multi-threaded TCG race with the
        /// kernel's int3-based text patching ("Oops: int3" in the guest, seen here).
        #[arg(long, default_value_t = 1)]
        smp: u32,
    },
    /// Run the built-in scenarios for a VM type in lockstep on real KVM and check every
    /// outcome (the lane's conversion tests run this inside the test kernel).
    Scenarios {
        #[arg(long, default_value_t = 0)]
        vm_type: u64,
    },
    /// Measure execs/s: programs on the model alone and on model + real KVM.
    Bench {
        #[arg(long, default_value_t = 16)]
        ops: usize,
        #[arg(long, default_value_t = 2000)]
        programs: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Print a program (text file or libFuzzer artifact) in the text format.
    Show { file: std::path::PathBuf },
    /// Run a program on the model and real KVM, op by op; exit 1 on a divergence.
    Replay {
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 0)]
        vm_type: u64,
    },
    /// Shrink a diverging program to the smallest one with the same divergence.
    Minimize {
        file: std::path::PathBuf,
        #[arg(short, long)]
        out: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 0)]
        vm_type: u64,
    },
    /// Write a standalone C reproducer of a program.
    CRepro {
        file: std::path::PathBuf,
        #[arg(short, long)]
        out: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 0)]
        vm_type: u64,
    },
    /// Store a program with what it shows now in corpus/regressions/NAME.txt.
    AddRegression {
        file: std::path::PathBuf,
        #[arg(long)]
        name: String,
        /// Minimize the program first.
        #[arg(long)]
        minimize: bool,
        #[arg(long, default_value_t = 0)]
        vm_type: u64,
        /// Directory to write to (default: the workspace's corpus/regressions).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

/// /proc/sys/kernel/tainted (0 where it cannot be read).
fn kernel_taint() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/tainted").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

fn kvm(vm_type: u64) -> Result<KvmBackend> {
    KvmBackend::from_env(vm_type).map_err(|e| anyhow::anyhow!("{e}")).context("opening real KVM")
}

fn main() -> Result<()> {
    use gmemfuzz::repro::cli;
    let cli = Cli::parse();
    match cli.command {
        Command::Show { file } => std::process::exit(cli::show(&file)),
        Command::Replay { file, vm_type } => std::process::exit(cli::replay(&file, vm_type)),
        Command::Minimize { file, out, vm_type } => std::process::exit(cli::minimize(&file, out.as_deref(), vm_type)),
        Command::CRepro { file, out, vm_type } => std::process::exit(cli::c_repro(&file, out.as_deref(), vm_type)),
        Command::AddRegression { file, name, minimize, vm_type, dir } => {
            std::process::exit(cli::add_regression(&file, &name, minimize, vm_type, dir.as_deref()))
        }
        Command::Profile { vm_type } => {
            let backend = kvm(vm_type)?;
            println!("{}", backend.profile().summary());
        }
        Command::Lane { kernel, seconds, out, scenarios_only, seed, skip_op, libfuzzer, smp } => {
            let opts = gmemfuzz::lane::LaneOptions { kernel, seconds, out, scenarios_only, seed, skip_op, libfuzzer, smp };
            let report = gmemfuzz::lane::run(&opts)?;
            println!(
                "lane: {} boots, scenarios {}, lane regressions {} matched / {} differed, {} divergences, {} kernel splats",
                report.boots,
                if report.scenarios_passed { "passed" } else { "FAILED" },
                report.regressions_matched,
                report.regressions_differed.len(),
                report.divergences,
                report.splats.len()
            );
            for line in &report.stats {
                println!("  {line}");
            }
            if !report.scenarios_passed || !report.regressions_differed.is_empty() || report.divergences > 0 || !report.splats.is_empty() {
                bail!("the lane found something (see above and {})", opts.out.display());
            }
        }
        Command::Run { seed, programs: count, seconds, findings, taint_check, ops, vm_type } => {
            let mut runner = Runner::new(kvm(vm_type)?);
            runner.filter_known = true;
            eprintln!("gmemfuzz: {}", runner.backend.profile().summary());
            let start = Instant::now();
            let mut last_stats = Instant::now();
            let profile = runner.backend.profile().clone();
            for (i, program) in Program::seeded(seed, ops, &profile).take(count as usize).enumerate() {
                if seconds != 0 && start.elapsed().as_secs() >= seconds {
                    break;
                }
                let taint_before = if taint_check { kernel_taint() } else { 0 };
                let result = runner.run(&program);
                if taint_check && kernel_taint() != taint_before {
                    let text = gmemfuzz::repro::text::print(&program);
                    eprintln!(
                        "gmemfuzz KERNEL SPLAT: kernel taint went {taint_before:#x} -> {:#x} during program #{i}:\n{text}",
                        kernel_taint()
                    );
                    if let Some(dir) = &findings {
                        std::fs::create_dir_all(dir)?;
                        std::fs::write(
                            dir.join(format!("splat-{seed}-{i}.txt")),
                            format!("# kernel taint changed while this ran\n{text}"),
                        )?;
                    }
                    println!("{}", runner.stats);
                    bail!("kernel splat during program #{i}");
                }
                match result {
                    Ok(_) => {}
                    Err(RunError::Divergence(d)) => {
                        eprintln!("{d}");
                        let text = gmemfuzz::repro::text::print(&program);
                        eprintln!("  program (seed {seed}, #{i}):\n{text}");
                        if let Some(dir) = &findings {
                            std::fs::create_dir_all(dir)?;
                            let path = dir.join(format!("divergence-{seed}-{i}.txt"));
                            std::fs::write(&path, format!("# {}\n{text}", d.to_string().lines().next().unwrap_or("")))?;
                            eprintln!("gmemfuzz: wrote {}", path.display());
                        }
                        println!("{}", runner.stats);
                        bail!("divergence in program #{i}");
                    }
                    Err(e) => bail!("{e}"),
                }
                if last_stats.elapsed().as_secs() >= 10 {
                    eprintln!("gmemfuzz run stats: {}", runner.stats);
                    last_stats = Instant::now();
                }
            }
            println!("{}", runner.stats);
            let secs = start.elapsed().as_secs_f64();
            println!(
                "throughput: {} programs of {ops} ops in {secs:.1} s: {:.1} programs/s",
                runner.stats.programs,
                runner.stats.programs as f64 / secs
            );
        }
        Command::Scenarios { vm_type } => {
            let mut failed = 0;
            let list = gmemfuzz::scenarios::for_vm_type(vm_type);
            for scenario in &list {
                let mut runner = Runner::new(kvm(vm_type)?);
                let verdict = match runner.run(&scenario.program()) {
                    Err(e) => Err(e.to_string()),
                    Ok(trace) => scenario
                        .steps
                        .iter()
                        .zip(&trace.outcomes)
                        .enumerate()
                        .find(|(_, ((_, expected), got))| expected != *got)
                        .map_or(Ok(()), |(i, ((op, expected), got))| Err(format!("step {i} ({op:?}): expected {expected}, KVM did {got}"))),
                };
                match verdict {
                    Ok(()) => println!("PASS {} ({} steps)", scenario.name, scenario.steps.len()),
                    Err(why) => {
                        failed += 1;
                        println!("FAIL {}: {why}", scenario.name);
                    }
                }
            }
            println!("{} passed, {} failed", list.len() - failed, failed);
            if failed > 0 {
                bail!("{failed} scenarios failed");
            }
        }
        Command::Bench { ops, programs: count, seed } => {
            let set: Vec<Program> = Program::seeded(seed, ops, &Profile::host_6_18()).take(count as usize).collect();
            let total_ops = (count as usize * ops) as f64;
            // The model's share of a differential run: every op, plus its answers to the
            // probes after invalidating ops.
            let mut model = Model::new(Profile::host_6_18());
            let start = Instant::now();
            for p in &set {
                model.reset()?;
                for (i, op) in p.ops.iter().enumerate() {
                    model.set_op_index(i);
                    model.apply(op)?;
                    if op.invalidates() || matches!(op, gmemfuzz_backends::Op::Check) {
                        let probes = model.probes();
                        model.observe(&probes)?;
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "model alone:  {:.0} ops/s ({:.0} programs/s of {ops} ops, with its state answers)",
                total_ops / secs,
                count as f64 / secs
            );
            match KvmBackend::from_env(0) {
                Err(e) => println!("model + KVM:  not measured: {e}"),
                Ok(backend) => {
                    let mut runner = Runner::new(backend);
                    runner.filter_known = true;
                    for check_after_invalidation in [true, false] {
                        runner.check_after_invalidation = check_after_invalidation;
                        let start = Instant::now();
                        let mut divergences = 0;
                        for p in &set {
                            if runner.run(p).is_err() {
                                divergences += 1;
                            }
                        }
                        let secs = start.elapsed().as_secs_f64();
                        let mode = if check_after_invalidation {
                            "state compared after every invalidating op"
                        } else {
                            "state compared at check and at the end"
                        };
                        println!(
                            "model + KVM:  {:.0} programs/s of {ops} ops ({:.0} ops/s; {divergences} divergences; {mode})",
                            count as f64 / secs,
                            total_ops / secs
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
