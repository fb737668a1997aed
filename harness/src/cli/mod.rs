//! The `gmemfuzz` subcommands that drive sessions: seeded runs, scenarios, bench. The
//! reproduction commands live in `repro::cli`.

mod bench;
mod hang;
pub mod nightly;
mod run;

pub use bench::{bench, distribution as bench_distribution, BenchProfile};
pub use run::{run, RunOptions};

use anyhow::{bail, Context as _, Result};
use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::Backend as _;

use crate::report::{Record, Sink};
use crate::Runner;

/// Exit status of `gmemfuzz host` where real KVM with guest_memfd is not here.
pub const HOST_LACKS: i32 = 3;

/// `gmemfuzz host`: this host's KVM in one line; 0 where `vm_type` (any, if `None`) has
/// guest_memfd, `HOST_LACKS` with the missing capability named where not.
pub fn host(vm_type: Option<u64>) -> i32 {
    let host = gmemfuzz_backends::kvm::HostKvm::probe();
    println!("{}", host.summary());
    let lacks = match vm_type {
        Some(t) => host.lacks(t),
        None if host.fuzzable_types().is_empty() => host.lacks(0),
        None => None,
    };
    match lacks {
        None => 0,
        Some(why) => {
            eprintln!("gmemfuzz: real KVM cannot be fuzzed on this host: {why}; the lane runs it in QEMU (`gmemfuzz lane`)");
            HOST_LACKS
        }
    }
}

/// Real KVM for `vm_type`, or an error saying why not.
pub fn kvm(vm_type: u64) -> Result<KvmBackend> {
    crate::config::open_kvm(vm_type).map_err(|e| anyhow::anyhow!("{e}")).context("opening real KVM")
}

/// Runs the scenarios (`corpus/scenarios/*.txt`, compiled in) made for `vm_type` and this
/// kernel's probed profile on real KVM, each on a fresh VM, with the outcomes that profile
/// calls for.
pub fn scenarios(vm_type: u64, sink: &Sink) -> Result<()> {
    let profile = kvm(vm_type)?.profile().clone();
    println!("scenarios for {}", profile.summary());
    let list = crate::scenarios::for_profile(&profile);
    let mut failed = 0;
    for scenario in &list {
        let mut runner = Runner::new(kvm(vm_type)?);
        runner.check_model_invariants = true;
        let verdict = scenario.check(&mut runner);
        match &verdict {
            Ok(()) => println!("PASS {} ({} steps)", scenario.name, scenario.steps.len()),
            Err(why) => {
                failed += 1;
                println!("FAIL {why}");
            }
        }
        sink.put(&Record::Scenario { name: scenario.name.to_string(), passed: verdict.is_ok(), why: verdict.err() })?;
    }
    println!("{} passed, {} failed", list.len() - failed, failed);
    if failed > 0 {
        bail!("{failed} scenarios failed");
    }
    Ok(())
}
