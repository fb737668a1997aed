//! The gmemfuzz command-line tool.

use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use arbitrary::Unstructured;
use clap::{Parser, Subcommand};
use gmemfuzz::{Program, RunError, Runner};
use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Profile};
use rand::{RngCore, SeedableRng};

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
        /// Ops per program.
        #[arg(long, default_value_t = 16)]
        ops: usize,
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

fn programs(seed: u64, count: u64, ops: usize) -> Vec<Program> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut bytes = vec![0u8; ops * 64];
    (0..count)
        .map(|_| {
            rng.fill_bytes(&mut bytes);
            Program::generate(&mut Unstructured::new(&bytes), ops).expect("enough bytes for every op")
        })
        .collect()
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
        Command::Run { seed, programs: count, ops, vm_type } => {
            let mut runner = Runner::new(kvm(vm_type)?);
            eprintln!("gmemfuzz: {}", runner.backend.profile().summary());
            for (i, program) in programs(seed, count, ops).iter().enumerate() {
                match runner.run(program) {
                    Ok(_) => {}
                    Err(RunError::Divergence(d)) => {
                        eprintln!("{d}");
                        eprintln!("  program (seed {seed}, #{i}):");
                        for (k, op) in program.ops.iter().enumerate() {
                            eprintln!("    #{k}: {op:?}");
                        }
                        bail!("divergence in program #{i}");
                    }
                    Err(e) => bail!("{e}"),
                }
            }
            println!("{}", runner.stats);
        }
        Command::Bench { ops, programs: count, seed } => {
            let set = programs(seed, count, ops);
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
            println!("model alone:  {:.0} ops/s ({:.0} programs/s of {ops} ops, with its state answers)", total_ops / secs, count as f64 / secs);
            match KvmBackend::from_env(0) {
                Err(e) => println!("model + KVM:  not measured: {e}"),
                Ok(backend) => {
                    let mut runner = Runner::new(backend);
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
                        let mode = if check_after_invalidation { "state compared after every invalidating op" } else { "state compared at check and at the end" };
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
