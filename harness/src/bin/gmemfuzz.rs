//! The gmemfuzz command-line tool.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use gmemfuzz::report::Sink;
use gmemfuzz_backends::Backend;

#[derive(Parser)]
#[command(name = "gmemfuzz", about = "Differential fuzzing of KVM guest_memfd against a reference model")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Say in one line what this host's KVM offers guest_memfd fuzzing (/dev/kvm, guest_memfd
    /// and memory attributes per VM type). Exit 0 where real KVM with guest_memfd is here, 3
    /// where it is not (the lane then runs real KVM in QEMU: `gmemfuzz lane`).
    Host {
        /// Ask about this VM type only (default: any).
        #[arg(long)]
        vm_type: Option<u64>,
    },
    /// Print what the running kernel offers (the capability profile the model uses).
    Profile {
        /// VM type (0 = default, 1 = KVM_X86_SW_PROTECTED_VM).
        #[arg(long, default_value_t = 0)]
        vm_type: u64,
    },
    /// Run seeded random programs on the model and real KVM, without libFuzzer.
    Run(gmemfuzz::cli::RunOptions),
    /// Boot the lane's test kernel under QEMU (building it on first use: Debian's Linux 7.2
    /// unless told otherwise) and run the conversion scenarios and differential fuzzing of VM
    /// type 1 inside.
    Lane(gmemfuzz::lane::LaneOptions),
    /// Report the kernel code the lane's programs reached: PCs files (a hex PC or an edge, two
    /// PCs, a line, as the lane's KCOV collection writes them) mapped to guest_memfd.c,
    /// kvm_main.c and the x86 MMU, as OUT/index.html with source lines coloured; or, with
    /// --ranges, write the address ranges of KVM's functions (what the in-guest collection
    /// keeps).
    Coverage {
        /// The bzImage the PCs came from (a lane build: its build directory must be there).
        #[arg(long, conflicts_with_all = ["kernel_version", "kernel_src"])]
        kernel: Option<std::path::PathBuf>,
        /// The lane's build of Debian's source of this series (7.2, 7.3-rc7 or 6.12).
        #[arg(long, default_value = gmemfuzz::kernel::DEFAULT_SERIES, conflicts_with = "kernel_src")]
        kernel_version: String,
        /// The lane's build of this kernel tree.
        #[arg(long, value_name = "DIR")]
        kernel_src: Option<std::path::PathBuf>,
        /// PCs files to merge.
        #[arg(long, num_args = 1.., required_unless_present = "ranges")]
        pcs: Vec<PathBuf>,
        /// Directory for index.html and a page per file.
        #[arg(long, required_unless_present = "ranges")]
        out: Option<PathBuf>,
        /// Write the ranges of every function of arch/x86/kvm/ and virt/kvm/ to FILE instead.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["pcs", "out"])]
        ranges: Option<PathBuf>,
    },
    /// Run the scenarios (corpus/scenarios/*.txt, compiled in) made for this kernel's VM type
    /// and profile in lockstep on real KVM and check every outcome (the lane runs this
    /// inside the test kernel).
    Scenarios {
        #[arg(long, default_value_t = 0)]
        vm_type: u64,
        /// Append one JSON line per scenario to FILE.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
    /// Measure execs/s: programs on the model alone and on model + real KVM.
    Bench {
        #[arg(long, default_value_t = 16)]
        ops: usize,
        #[arg(long, default_value_t = 2000)]
        programs: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Run the text programs of DIR (sorted by name) instead of seeded ones: the same
        /// programs on two builds compare the harness, not the generator.
        #[arg(long, value_name = "DIR")]
        programs_dir: Option<PathBuf>,
        /// Time each of PROGRAMS seeded programs that hold a group in the model alone and
        /// print the distribution (percentiles, the slowest program's seeded index).
        #[arg(long, conflicts_with = "programs_dir")]
        distribution: bool,
        /// The kernel the programs are made for (with --distribution).
        #[arg(long, value_enum, default_value = "host", requires = "distribution")]
        profile: gmemfuzz::cli::BenchProfile,
    },
    /// The nightly CI job: fuzz every target this machine can run (libFuzzer fork mode) for
    /// a time budget, merge the corpus, minimize and deduplicate findings, write OUT/report.md,
    /// OUT/report.json and OUT/junit.xml. Exit 1 on a new finding, 2 on a harness error.
    Nightly(gmemfuzz::cli::nightly::NightlyOptions),
    /// Print a program (text file or libFuzzer artifact) in the text format.
    Show {
        file: std::path::PathBuf,
        /// The VM type a raw libFuzzer artifact with no `.txt` beside it ran on.
        #[arg(long)]
        vm_type: Option<u64>,
    },
    /// Run a program on the model and real KVM, op by op; exit 1 on a divergence.
    Replay {
        file: std::path::PathBuf,
        /// Default: the file's `# vm-type:` line, else 0.
        #[arg(long)]
        vm_type: Option<u64>,
        /// Append the verdict to FILE as a JSON line.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Run it up to N times, until it reproduces (a race depends on timing): a
        /// divergence, or the kernel splat the file expects (`# expect: splat KASAN`, read
        /// from /dev/kmsg); default 1, or 100 for a program with a concurrent group. Says how
        /// often it reproduced.
        #[arg(long, value_name = "N")]
        repeat: Option<u32>,
        /// With --repeat: run all N tries instead of stopping at the first divergence.
        #[arg(long)]
        keep_going: bool,
    },
    /// Shrink a diverging program to the smallest one with the same divergence.
    Minimize {
        file: std::path::PathBuf,
        #[arg(short, long)]
        out: Option<std::path::PathBuf>,
        /// Default: the file's `# vm-type:` line, else 0.
        #[arg(long)]
        vm_type: Option<u64>,
    },
    /// Write a standalone C reproducer of a program.
    CRepro {
        file: std::path::PathBuf,
        #[arg(short, long)]
        out: Option<std::path::PathBuf>,
        /// Default: the file's `# vm-type:` line, else 0.
        #[arg(long)]
        vm_type: Option<u64>,
    },
    /// Write a KVM selftest of a program (tools/testing/selftests/kvm/x86/, the selftests'
    /// library), asserting what the model expects op by op.
    Selftest {
        file: std::path::PathBuf,
        #[arg(short, long)]
        out: Option<std::path::PathBuf>,
        /// Default: the file's `# vm-type:` line, else 0.
        #[arg(long)]
        vm_type: Option<u64>,
    },
    /// Store a program with what it shows now in corpus/regressions/NAME.txt.
    AddRegression {
        file: std::path::PathBuf,
        #[arg(long)]
        name: String,
        /// Minimize the program first.
        #[arg(long)]
        minimize: bool,
        /// Default: the file's `# vm-type:` line, else 0.
        #[arg(long)]
        vm_type: Option<u64>,
        /// Directory to write to (default: the workspace's corpus/regressions).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

/// Errors the user causes or the host imposes are a line, never a backtrace, whatever
/// RUST_BACKTRACE says.
fn main() -> std::process::ExitCode {
    // Output piped into `head` ends quietly where the reader stops, as other command-line
    // tools do, not in a panic and a backtrace (Rust ignores SIGPIPE by default).
    // SAFETY: restoring a signal's default disposition at the start of main, before any
    // thread exists; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gmemfuzz: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Cli) -> Result<()> {
    use gmemfuzz::cli;
    use gmemfuzz::repro::cli as repro;
    match args.command {
        Command::Host { vm_type } => std::process::exit(cli::host(vm_type)),
        Command::Nightly(opts) => std::process::exit(cli::nightly::nightly(&opts)),
        Command::Show { file, vm_type } => std::process::exit(repro::show(&file, vm_type)),
        Command::Replay { file, vm_type, json, repeat, keep_going } => {
            std::process::exit(repro::replay(&file, vm_type, repeat, keep_going, &Sink::new(json.as_deref())))
        }
        Command::Minimize { file, out, vm_type } => std::process::exit(repro::minimize(&file, out.as_deref(), vm_type)),
        Command::CRepro { file, out, vm_type } => std::process::exit(repro::c_repro(&file, out.as_deref(), vm_type)),
        Command::Selftest { file, out, vm_type } => std::process::exit(repro::selftest(&file, out.as_deref(), vm_type)),
        Command::AddRegression { file, name, minimize, vm_type, dir } => {
            std::process::exit(repro::add_regression(&file, &name, minimize, vm_type, dir.as_deref()))
        }
        Command::Profile { vm_type } => {
            let backend = cli::kvm(vm_type)?;
            println!("{}", backend.profile().summary());
        }
        Command::Lane(mut opts) => {
            // As every tool that opens KVM, the lane takes GMEMFUZZ_SKIP_OP (--skip-op wins).
            opts.skip_op = opts.skip_op.or(gmemfuzz::config::Env::read()?.skip_op);
            let report = gmemfuzz::lane::run(&opts)?;
            Sink::new(opts.json.as_deref()).put(&report.record())?;
            print_lane(&opts, &report)?;
        }
        Command::Coverage { kernel, kernel_version, kernel_src, pcs, out, ranges } => {
            let choice = gmemfuzz::kernel::KernelChoice::from_flags(kernel, kernel_src, kernel_version);
            gmemfuzz::coverage::cli(&choice, &pcs, out.as_deref(), ranges.as_deref())?;
        }
        Command::Run(opts) => cli::run(&opts, &Sink::new(opts.json.as_deref()))?,
        Command::Scenarios { vm_type, json } => cli::scenarios(vm_type, &Sink::new(json.as_deref()))?,
        Command::Bench { ops, programs, seed, distribution: true, profile, .. } => {
            gmemfuzz::cli::bench_distribution(ops, programs, seed, profile)?
        }
        Command::Bench { ops, programs, seed, programs_dir, .. } => cli::bench(ops, programs, seed, programs_dir.as_deref())?,
    }
    Ok(())
}

/// What `gmemfuzz lane` prints at its end: a replay's or minimization's lines (a replay's
/// exit status says whether it reproduced, as `gmemfuzz replay`'s does), or the session's
/// summary line and stats, and an error where it found something.
fn print_lane(opts: &gmemfuzz::lane::LaneOptions, report: &gmemfuzz::lane::LaneReport) -> Result<()> {
    if opts.repro().is_some() {
        for line in &report.stats {
            println!("lane: {line}");
        }
        println!("lane: {} kernel splats on the console", report.splats.len());
        std::process::exit(match report.replay {
            Some((hits, _)) if hits > 0 => 1,
            _ => 0,
        });
    }
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
    let rates: Vec<f64> = report.per_qemu.iter().filter(|(_, s)| *s > 0.0).map(|(p, s)| *p as f64 / s).collect();
    if !rates.is_empty() {
        let each: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
        println!(
            "  lane throughput: {} programs; {:.1} programs/s in all ({} per QEMU)",
            report.programs,
            rates.iter().sum::<f64>(),
            each.join(" + ")
        );
    }
    if report.found() {
        bail!("the lane found something (see above and {})", opts.out.display());
    }
    Ok(())
}
