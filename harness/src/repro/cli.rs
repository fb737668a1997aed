//! The repro subcommands of the `gmemfuzz` binary. Each returns the process exit status:
//! 0 clean / done, 1 divergence (or, for `replay`, the kernel splat the file expects), 2
//! harness or usage error.

use std::path::{Path, PathBuf};

use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::{Backend, HarnessError, Profile};

use super::replay::Report;
use super::shrink::{diverged_as, minimize as shrink, minimize_by, run_tries, tries_for, Signature};
use super::text::{print_document, Document, Expectation};
use super::{c, load_document, observed, selftest};
use crate::config::{open_kvm, OpenError};
use crate::program::Program;
use crate::report::{Record, Sink};
use crate::runner::{RunError, Runner};
use crate::splat::{KernelLog, Splat};

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
            fail(format!("real KVM is not available here ({why}); the lane runs the program on real KVM in QEMU: `gmemfuzz lane --replay FILE` or `gmemfuzz lane --minimize FILE`"))
        }
        OpenError::Backend(e) => fail(format!("gmemfuzz HARNESS ERROR opening KVM: {e}")),
    })
}

/// Reads a program and the VM type to run it on: `--vm-type` when given, else the one
/// the file records, else 0. A `--vm-type` that contradicts the file is refused.
fn read(path: &Path, vm_type: Option<u64>) -> Result<(Document, u64), i32> {
    let doc = load_document(path, vm_type).map_err(|e| fail(format!("{e:#}")))?;
    match (vm_type, doc.vm_type) {
        (Some(given), Some(recorded)) if given != recorded => Err(fail(format!(
            "--vm-type {given} contradicts {}, which records `# vm-type: {recorded}` (the VM type it ran on); \
             leave out --vm-type to use {recorded}, or edit the file to run it on another VM type",
            path.display()
        ))),
        (given, recorded) => {
            let vm_type = given.or(recorded).unwrap_or(0);
            Ok((doc, vm_type))
        }
    }
}

/// A program as text that records the VM type and profile it ran on.
fn ran_on(program: Program, profile: &Profile, expect: Expectation) -> String {
    let doc = Document { expect: Some(expect), vm_type: Some(profile.vm_type), profile: Some(profile.summary()), ..Document::new(program) };
    print_document(&doc, &[])
}

pub fn show(path: &Path, vm_type: Option<u64>) -> i32 {
    match load_document(path, vm_type) {
        Ok(d) => {
            print!("{}", print_document(&d, &[]));
            OK
        }
        Err(e) => fail(format!("{e:#}")),
    }
}

/// How many times `replay` runs a program when `--repeat` is not given: once, or, for a
/// program with a concurrent group (whose outcome depends on timing), up to this many times.
pub const RACE_TRIES: u32 = 100;

/// Replays a program: once, or up to `repeat` times (default: once, `RACE_TRIES` for a
/// program with a group) until it reproduces what the file records (a divergence, or the
/// kernel splat it expects, read from the kernel log), or all of them with `keep_going`;
/// then says how often it reproduced.
pub fn replay(path: &Path, vm_type: Option<u64>, repeat: Option<u32>, keep_going: bool, sink: &Sink) -> i32 {
    let (doc, vm_type) = match read(path, vm_type) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // The kernel log is read only for a program that expects a splat: elsewhere (a
    // developer's machine) what else the kernel logs meanwhile is not this program's.
    let expected_splat = match doc.expect {
        Some(Expectation::Splat { kind }) => Some(kind),
        _ => None,
    };
    let mut kernel_log = match expected_splat.map(|_| KernelLog::open()) {
        None => None,
        Some(Ok(log)) => Some(log),
        Some(Err(e)) => {
            return fail(format!("{} expects a kernel splat, read from {}, which cannot be opened: {e}", path.display(), KernelLog::PATH))
        }
    };
    let mut runner = match kvm(vm_type) {
        Ok(b) => Runner::new(b),
        Err(code) => return code,
    };
    // A splat on the release of the program's files is this program's.
    runner.release_after_run = true;
    let has_group = doc.program.ops.iter().any(|op| matches!(op, gmemfuzz_backends::Op::Group(_)));
    let tries = repeat.unwrap_or(if has_group { RACE_TRIES } else { 1 }).max(1);
    println!("gmemfuzz replay of {} ({} ops) on {}", path.display(), doc.program.ops.len(), runner.backend.profile().summary());
    let (mut hits, mut ran) = (0u32, 0u32);
    let mut shown: Option<(Report, Option<Splat>, bool)> = None;
    while ran < tries {
        let report = match Report::run(&mut runner, &doc.program) {
            Ok(r) => r,
            Err(e) => return fail(format!("gmemfuzz HARNESS ERROR (not a kernel finding): {e}")),
        };
        ran += 1;
        let splat = kernel_log.as_mut().and_then(|log| log.new_splats().into_iter().find(|s| Some(s.kind) == expected_splat));
        let reproduced = reproduces(doc.expect, splat.is_some(), &report.verdict);
        hits += u32::from(reproduced);
        // Show the first run that reproduced, else the first that diverged, else the last.
        if shown.as_ref().is_none_or(|(r, _, hit)| !hit && (reproduced || !r.diverged())) {
            shown = Some((report, splat, reproduced));
        }
        if reproduced && !keep_going {
            break;
        }
    }
    let (report, splat, reproduced) = shown.expect("ran at least once");
    print!("{}", report.render("kvm"));
    if let Some(splat) = &splat {
        println!("the kernel logged during this run:\n{}", splat.excerpt);
    }
    let seen = match &splat {
        Some(s) => Some(Expectation::Splat { kind: s.kind }),
        None => observed(&report.verdict),
    };
    if let (Some(recorded), Some(seen)) = (doc.expect, seen) {
        let verdict = if recorded == seen { "matches" } else { "DIFFERS FROM" };
        println!("this run {verdict} the recorded expectation ({recorded})");
    }
    if tries > 1 {
        let what = doc.expect.map_or("a divergence".to_string(), |e| format!("the recorded expectation ({e})"));
        println!("reproduced {what} {hits} of {ran} tries{}", if ran < tries { " (stopped at the first)" } else { "" });
    }
    let record = Record::Replay {
        file: path.display().to_string(),
        recorded: doc.expect.map(|e| e.to_string()),
        seen: seen.map(|e| e.to_string()),
        tries: ran,
        hits,
    };
    if let Err(e) = sink.put(&record) {
        return fail(format!("writing the JSON result: {e:#}"));
    }
    if report.diverged() || (expected_splat.is_some() && reproduced) {
        DIVERGED
    } else {
        OK
    }
}

/// Whether a run shows what its program records: the expected splat (`logged_it`: the kernel
/// logged one of its kind), another recorded expectation (a clean run included: a lane
/// regression pinned as `expect: clean` on a kernel with the fix), or, where the file
/// records none, any divergence.
fn reproduces<T>(expect: Option<Expectation>, logged_it: bool, verdict: &Result<T, RunError>) -> bool {
    match expect {
        Some(Expectation::Splat { .. }) => logged_it,
        Some(e) => observed(verdict) == Some(e),
        None => matches!(verdict, Err(RunError::Divergence(_))),
    }
}

/// Minimizes on a reused backend, then confirms on a brand-new one; gives the program as
/// text recording its expectation, VM type and profile.
pub fn minimized(program: &Program, vm_type: u64) -> Result<(String, usize, Expectation), i32> {
    let mut runner = Runner::new(kvm(vm_type)?);
    let m = shrink(&mut runner, program).map_err(fail)?;
    let mut fresh = Runner::new(kvm(vm_type)?);
    // A race is confirmed if it shows within the tries minimization gave each candidate.
    let want = Signature::of(&m.divergence);
    match run_tries(&mut fresh, &m.program, |r| diverged_as(r, want)) {
        Err(RunError::Divergence(d)) if Signature::of(&d) == want => {
            eprintln!(
                "minimized {} ops to {} ({} removed) in {} runs; confirmed on a new VM:\n{d}",
                program.ops.len(),
                m.program.ops.len(),
                program.ops.len() - m.program.ops.len(),
                m.runs
            );
            let expect = Expectation::Divergence { kind: d.kind, op: d.op_index };
            let len = m.program.ops.len();
            Ok((ran_on(m.program, fresh.backend.profile(), expect), len, expect))
        }
        other => Err(fail(format!(
            "the minimized program did not diverge the same way on a new VM (flaky?): {}",
            other.map(|_| "clean".to_string()).unwrap_or_else(|e| e.to_string())
        ))),
    }
}

/// Minimizes a program that makes the kernel splat (`kind`, read from the kernel log): a
/// candidate is kept if it splats within `shrink::tries_for` runs; the result is confirmed
/// on a brand-new backend within as many.
fn minimized_splat(program: &Program, vm_type: u64, kind: &'static str) -> Result<String, i32> {
    let mut log = KernelLog::open().map_err(|e| fail(format!("minimizing a kernel splat reads {}: {e}", KernelLog::PATH)))?;
    let mut splat_in = |runner: &mut Runner<KvmBackend>, p: &Program| {
        (0..tries_for(p)).find_map(|_| {
            let _ = runner.run(p);
            log.new_splats().into_iter().find(|s| s.kind == kind)
        })
    };
    let mut runner = Runner::new(kvm(vm_type)?);
    runner.release_after_run = true;
    let Some(first) = splat_in(&mut runner, program) else {
        return Err(fail(format!("no {kind} splat in {} runs of the program: nothing to minimize", tries_for(program))));
    };
    let (best, _, runs) = minimize_by(program, None, first, |p| splat_in(&mut runner, p));
    let mut fresh = Runner::new(kvm(vm_type)?);
    fresh.release_after_run = true;
    let Some(splat) = splat_in(&mut fresh, &best) else {
        return Err(fail(format!("the minimized program made no {kind} splat in {} runs on a new VM (flaky?)", tries_for(&best))));
    };
    eprintln!("minimized {} ops to {} in {runs} runs; confirmed on a new VM:\n{}", program.ops.len(), best.ops.len(), splat.excerpt);
    Ok(crate::fuzz::artifact::splat_text(&best, fresh.backend.profile(), &splat))
}

pub fn minimize(path: &Path, out: Option<&Path>, vm_type: Option<u64>) -> i32 {
    let (doc, vm_type) = match read(path, vm_type) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let text = match doc.expect {
        Some(Expectation::Splat { kind }) => minimized_splat(&doc.program, vm_type, kind),
        _ => minimized(&doc.program, vm_type).map(|(text, _, _)| text),
    };
    let text = match text {
        Ok(text) => text,
        Err(code) => return code,
    };
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

/// The profile expectations are computed for: this machine's KVM where it opens, else the
/// assumed profile of the VM type (said on stderr and in `note`).
fn expectation_profile(vm_type: u64) -> Result<(Profile, String), i32> {
    match open_kvm(vm_type) {
        Ok(b) => Ok((b.profile().clone(), String::new())),
        Err(OpenError::Config(e)) => Err(fail(format!("configuration error: {e}"))),
        Err(OpenError::Backend(e)) => {
            let p = Profile::assumed(vm_type);
            eprintln!("gmemfuzz: real KVM is not available here ({e}); expectations use the assumed profile {}", p.summary());
            Ok((p, format!("expectations computed for an assumed profile: real KVM was not available ({e})")))
        }
    }
}

/// Writes `source` to `out` (saying how to build it) or to stdout.
fn write_source(source: &str, out: Option<&Path>, build: &str) -> i32 {
    match out {
        Some(out) => match std::fs::write(out, source) {
            Ok(()) => {
                eprintln!("wrote {} ({build})", out.display());
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

pub fn c_repro(path: &Path, out: Option<&Path>, vm_type: Option<u64>) -> i32 {
    let (Document { program, .. }, vm_type) = match read(path, vm_type) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (profile, note) = match expectation_profile(vm_type) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let source = match c::emit(&program, &profile, &note) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let build = out.map(|o| format!("build: gcc -static -O2 -Wall -o repro {}", o.display())).unwrap_or_default();
    write_source(&source, out, &build)
}

/// Writes a KVM selftest of the program ([`selftest`]); refuses (exit 2, one line) a program
/// with ops it does not make yet.
pub fn selftest(path: &Path, out: Option<&Path>, vm_type: Option<u64>) -> i32 {
    let (Document { program, .. }, vm_type) = match read(path, vm_type) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // Refuse before probing KVM: the scope does not depend on the profile.
    if let Err(e) = selftest::check_scope(&program, vm_type) {
        return fail(e);
    }
    let (profile, _note) = match expectation_profile(vm_type) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let lines = std::fs::read_to_string(path).ok().and_then(|text| selftest::op_lines(&text, program.ops.len()));
    // The file as the user would name it from here: relative where it lies below.
    let here = std::env::current_dir().ok();
    let file = here.as_deref().and_then(|d| path.strip_prefix(d).ok()).unwrap_or(path).display().to_string();
    let source = match selftest::emit(&program, &profile, &selftest::Origin { file: &file, lines, name: None }) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let build =
        "copy it to tools/testing/selftests/kvm/x86/, add it to TEST_GEN_PROGS_x86 in Makefile.kvm, make -C tools/testing/selftests/kvm";
    write_source(&source, out, build)
}

pub fn add_regression(path: &Path, name: &str, minimize_first: bool, vm_type: Option<u64>, dir: Option<&Path>) -> i32 {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return fail(format!("--name `{name}`: use letters, digits, `-` and `_` only"));
    }
    let (Document { program, .. }, vm_type) = match read(path, vm_type) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (text, len, expect) = if minimize_first {
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
            Some(e) => (ran_on(program.clone(), runner.backend.profile(), e), program.ops.len(), e),
            None => return fail(result.err().map(|e| e.to_string()).unwrap_or_default()),
        }
    };
    let dir = dir.map(Path::to_path_buf).unwrap_or_else(regressions_dir);
    let file = dir.join(format!("{name}.txt"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, text)) {
        return fail(format!("writing {}: {e}", file.display()));
    }
    println!("wrote {} ({len} ops, expect: {expect})", file.display());
    OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::DivergenceKind;

    fn file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("gmemfuzz-cli-{}-{name}.txt", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn diverged_at(op_index: usize) -> Result<(), RunError> {
        use crate::oracle::{Seen, Subject};
        use gmemfuzz_backends::Outcome;
        let op = super::super::text::parse_document("gmemfuzz-program v1\ncheck\n").unwrap().program.ops[0].clone();
        Err(RunError::Divergence(Box::new(crate::oracle::Divergence {
            kind: DivergenceKind::UnexpectedExit,
            op_index,
            op,
            subject: Subject::Result,
            expected: Seen::Outcome(Outcome::Ok),
            actual: Seen::Outcome(Outcome::Ok),
            page: None,
            backend: "kvm".into(),
            profile: String::new(),
            model_state: String::new(),
        })))
    }

    #[test]
    fn a_run_reproduces_what_the_file_records_a_clean_run_included() {
        let clean: Result<(), RunError> = Ok(());
        let at_3 = Some(Expectation::Divergence { kind: DivergenceKind::UnexpectedExit, op: 3 });
        // A lane regression pinned clean on a kernel with the fix: a clean run is a hit.
        assert!(reproduces(Some(Expectation::Clean), false, &clean));
        assert!(!reproduces(Some(Expectation::Clean), false, &diverged_at(3)));
        assert!(reproduces(at_3, false, &diverged_at(3)));
        assert!(!reproduces(at_3, false, &diverged_at(4)));
        assert!(!reproduces(at_3, false, &clean));
        // No expectation: any divergence.
        assert!(reproduces(None, false, &diverged_at(4)));
        assert!(!reproduces(None, false, &clean));
        let splat = Some(Expectation::Splat { kind: crate::splat::kind_named("KASAN").unwrap() });
        assert!(reproduces(splat, true, &clean) && !reproduces(splat, false, &diverged_at(1)));
    }

    #[test]
    fn the_vm_type_comes_from_the_file_unless_given_and_a_contradiction_is_refused() {
        let recorded = file("recorded", "gmemfuzz-program v1\n# vm-type: 1\ncreate_gmem size=0x1000 flags=0\ncheck\n");
        let plain = file("plain", "gmemfuzz-program v1\ncreate_gmem size=0x1000 flags=0\ncheck\n");
        assert_eq!(read(&recorded, None).map(|r| r.1), Ok(1));
        assert_eq!(read(&recorded, Some(1)).map(|r| r.1), Ok(1));
        assert_eq!(read(&recorded, Some(0)).map(|r| r.1), Err(ERROR));
        assert_eq!(read(&plain, None).map(|r| r.1), Ok(0));
        assert_eq!(read(&plain, Some(1)).map(|r| r.1), Ok(1));
        // The refusal comes before any VM is made: replay exits 2 even where KVM is here.
        assert_eq!(replay(&recorded, Some(0), None, false, &Sink::default()), ERROR);
        for f in [recorded, plain] {
            std::fs::remove_file(f).unwrap();
        }
    }
}
