//! The repro subcommands of the `gmemfuzz` binary. Each returns the process exit status:
//! 0 clean / done, 1 divergence, 2 harness or usage error.

use std::path::{Path, PathBuf};

use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::{Backend, HarnessError, Profile};

use super::replay::Report;
use super::shrink::{minimize as shrink, Signature};
use super::text::{print_with, Expectation};
use super::{c, load, load_document, observed};
use crate::config::{open_kvm, OpenError};
use crate::program::Program;
use crate::report::{Record, Sink};
use crate::runner::{RunError, Runner};

pub const OK: i32 = 0;
pub const DIVERGED: i32 = 1;
pub const ERROR: i32 = 2;

/// The default regression directory: `corpus/regressions` at the workspace root.
pub fn regressions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("corpus").join("regressions")
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("gmemfuzz: {msg}");
    ERROR
}

fn kvm(vm_type: u64) -> Result<KvmBackend, i32> {
    open_kvm(vm_type).map_err(|e| match e {
        OpenError::Config(e) => fail(format!("configuration error: {e}")),
        OpenError::Backend(HarnessError::Unavailable(why)) => {
            fail(format!("real KVM is not available here ({why}); this command needs /dev/kvm"))
        }
        OpenError::Backend(e) => fail(format!("gmemfuzz HARNESS ERROR opening KVM: {e}")),
    })
}

fn read(path: &Path) -> Result<Program, i32> {
    load(path).map_err(|e| fail(format!("{e:#}")))
}

pub fn show(path: &Path) -> i32 {
    match load_document(path) {
        Ok(d) => {
            print!("{}", print_with(&d.program, d.expect));
            OK
        }
        Err(e) => fail(format!("{e:#}")),
    }
}

pub fn replay(path: &Path, vm_type: u64, sink: &Sink) -> i32 {
    let doc = match load_document(path) {
        Ok(d) => d,
        Err(e) => return fail(format!("{e:#}")),
    };
    let mut runner = match kvm(vm_type) {
        Ok(b) => Runner::new(b),
        Err(code) => return code,
    };
    println!("gmemfuzz replay of {} ({} ops) on {}", path.display(), doc.program.ops.len(), runner.backend.profile().summary());
    let report = match Report::run(&mut runner, &doc.program) {
        Ok(r) => r,
        Err(e) => return fail(format!("gmemfuzz HARNESS ERROR (not a kernel finding): {e}")),
    };
    print!("{}", report.render("kvm"));
    let seen = observed(&report.verdict);
    if let (Some(recorded), Some(seen)) = (doc.expect, seen) {
        let verdict = if recorded == seen { "matches" } else { "DIFFERS FROM" };
        println!("this run {verdict} the recorded expectation ({recorded})");
    }
    let record =
        Record::Replay { file: path.display().to_string(), recorded: doc.expect.map(|e| e.to_string()), seen: seen.map(|e| e.to_string()) };
    if let Err(e) = sink.put(&record) {
        return fail(format!("writing the JSON result: {e:#}"));
    }
    if report.diverged() {
        DIVERGED
    } else {
        OK
    }
}

/// Minimizes on a reused backend, then confirms on a brand-new one.
fn minimized(program: &Program, vm_type: u64) -> Result<(Program, Expectation), i32> {
    let mut runner = Runner::new(kvm(vm_type)?);
    let m = shrink(&mut runner, program).map_err(fail)?;
    let mut fresh = Runner::new(kvm(vm_type)?);
    match fresh.run(&m.program) {
        Err(RunError::Divergence(d)) if Signature::of(&d) == Signature::of(&m.divergence) => {
            eprintln!(
                "minimized {} ops to {} ({} removed) in {} runs; confirmed on a new VM:\n{d}",
                program.ops.len(),
                m.program.ops.len(),
                program.ops.len() - m.program.ops.len(),
                m.runs
            );
            Ok((m.program, Expectation::Divergence { kind: d.kind, op: d.op_index }))
        }
        other => Err(fail(format!(
            "the minimized program did not diverge the same way on a new VM (flaky?): {}",
            other.map(|_| "clean".to_string()).unwrap_or_else(|e| e.to_string())
        ))),
    }
}

pub fn minimize(path: &Path, out: Option<&Path>, vm_type: u64) -> i32 {
    let program = match read(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (small, expect) = match minimized(&program, vm_type) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let text = print_with(&small, Some(expect));
    match out {
        Some(out) => match std::fs::write(out, &text) {
            Ok(()) => {
                eprintln!("wrote {}", out.display());
                OK
            }
            Err(e) => fail(format!("writing {}: {e}", out.display())),
        },
        None => {
            print!("{text}");
            OK
        }
    }
}

pub fn c_repro(path: &Path, out: Option<&Path>, vm_type: u64) -> i32 {
    let program = match read(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (profile, note) = match open_kvm(vm_type) {
        Ok(b) => (b.profile().clone(), String::new()),
        Err(OpenError::Config(e)) => return fail(format!("configuration error: {e}")),
        Err(OpenError::Backend(e)) => {
            let p = if vm_type == 1 { Profile::sw_protected_6_12() } else { Profile::host_6_18() };
            eprintln!("gmemfuzz: real KVM is not available here ({e}); expectations use the assumed profile {}", p.summary());
            (p, format!("expectations computed for an assumed profile: real KVM was not available ({e})"))
        }
    };
    let source = match c::emit(&program, &profile, &note) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match out {
        Some(out) => match std::fs::write(out, &source) {
            Ok(()) => {
                eprintln!("wrote {} (build: gcc -static -O2 -Wall -o repro {})", out.display(), out.display());
                OK
            }
            Err(e) => fail(format!("writing {}: {e}", out.display())),
        },
        None => {
            print!("{source}");
            OK
        }
    }
}

pub fn add_regression(path: &Path, name: &str, minimize_first: bool, vm_type: u64, dir: Option<&Path>) -> i32 {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return fail(format!("--name `{name}`: use letters, digits, `-` and `_` only"));
    }
    let program = match read(path) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let (program, expect) = if minimize_first {
        match minimized(&program, vm_type) {
            Ok(r) => r,
            Err(code) => return code,
        }
    } else {
        let mut runner = match kvm(vm_type) {
            Ok(b) => Runner::new(b),
            Err(code) => return code,
        };
        let result = runner.run(&program);
        match observed(&result) {
            Some(e) => (program, e),
            None => return fail(result.err().map(|e| e.to_string()).unwrap_or_default()),
        }
    };
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(regressions_dir);
    let file = dir.join(format!("{name}.txt"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, print_with(&program, Some(expect)))) {
        return fail(format!("writing {}: {e}", file.display()));
    }
    println!("wrote {} ({} ops, expect: {expect})", file.display(), program.ops.len());
    OK
}
