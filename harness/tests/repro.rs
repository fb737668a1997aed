//! The reproduction tools find and shrink a divergence, run odd programs, and produce a C
//! reproducer that builds and runs.

use std::path::Path;
use std::process::Command;

use gmemfuzz::repro::{c, parse, print, shrink};
use gmemfuzz::{Program, RunError, Runner};
use gmemfuzz_backends::kvm::KvmBackend;
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, OpKind, Outcome, Profile};

mod common;

use common::SkipsOps;

/// The model, except that punching a hole does nothing and reports success.
fn punch_ignored() -> SkipsOps {
    SkipsOps::new(OpKind::Punch)
}

const NOISY: &str = "gmemfuzz-program v1
create_gmem size=0x2000 flags=MMAP
create_gmem size=0x4000 flags=MMAP|INIT_SHARED
create_gmem size=0x1001 flags=MMAP
map g1
map g0
bind slot=3 flags=GUEST_MEMFD fd=g0 gpa=0x120000 size=0x2000 offset=0
bind slot=2 flags=GUEST_MEMFD fd=g1 gpa=0x100000 size=0x4000 offset=0
guest w8@0x120000=0x77 r4@0x100010
host_write g1 offset=0x0 width=8 value=0x1122334455667788
host_write g1 offset=0x2000 width=8 value=0x99
check
host_read g1 offset=0x2000 width=8
guest r8@0x100000 w2@0x103000=0xabcd
allocate g1 mode=KEEP_SIZE offset=0 len=0x1000
unbind slot=3
punch g1 offset=0 len=0x1000
host_read g1 offset=0x0 width=8
guest r8@0x100000
check
";

fn divergence<B: Backend>(runner: &mut Runner<B>, p: &Program) -> Box<gmemfuzz::oracle::Divergence> {
    match runner.run(p) {
        Err(RunError::Divergence(d)) => d,
        other => panic!("expected a divergence, got {other:?}"),
    }
}

#[test]
fn minimize_shrinks_a_divergence_and_keeps_it() {
    let program = parse(NOISY).unwrap();
    let mut runner = Runner::new(punch_ignored());
    let original = divergence(&mut runner, &program);
    assert_eq!(original.op.kind(), OpKind::Punch, "{original}");

    let m = shrink::minimize(&mut runner, &program).unwrap();
    eprintln!("minimized {} ops to {} in {} runs:\n{}", program.ops.len(), m.program.ops.len(), m.runs, print(&m.program));
    assert!(m.program.ops.len() < program.ops.len());
    assert!(m.program.ops.len() <= 4, "still long:\n{}", print(&m.program));

    // Confirmed on a brand-new backend: same kind, same op kind.
    let mut fresh = Runner::new(punch_ignored());
    let again = divergence(&mut fresh, &m.program);
    assert_eq!(again.kind, original.kind);
    assert_eq!(again.op.kind(), OpKind::Punch);
    // Replay marks the diverging op in its trace.
    let report = gmemfuzz::repro::replay::Report::run(&mut fresh, &m.program).unwrap();
    let rendered = report.render("punch-ignored");
    eprintln!("{rendered}");
    assert!(report.diverged());
    assert!(rendered.lines().any(|l| l.starts_with(">>>") && l.contains("punch")), "{rendered}");
    // And the real model agrees with itself on it: the divergence is the wrapper's doing.
    let mut honest = Runner::new(Model::new(Profile::host_6_18()));
    assert!(honest.run(&m.program).is_ok());
}

/// A group carrying the faulty op can leave the divergence to an op after it (here `check`,
/// in the CI run that had two findings for one skipped punch): the sequence departs at the
/// punch itself, and that is where the finding is filed.
#[test]
fn a_divergence_after_a_group_is_filed_where_its_sequence_departs() {
    let program = parse(
        "gmemfuzz-program v3
create_gmem size=0x1000 flags=MMAP|INIT_SHARED
map g0
host_write g0 offset=0x8ca width=2 value=0x1
group
  x8 guest r1@0x132008
  x3 host_write g0 offset=0x0 width=2 value=0x0
  host_read g0 offset=0x8 width=1
  punch g0 offset=0x0 len=0x1000
end
check
",
    )
    .unwrap();
    let mut runner = Runner::new(punch_ignored());
    let first = divergence(&mut runner, &program);
    assert_eq!(first.op.kind(), OpKind::Check, "{first}");
    let (sequence, d) = shrink::sequential(&mut runner, &program, &first).expect("the sequence diverges");
    assert_eq!(d.op.kind(), OpKind::Punch, "{d}");
    assert!(sequence.ops.iter().all(|op| op.kind() != OpKind::Group), "{}", print(&sequence));
    assert_eq!(sequence.ops.len(), 3 + 4 + 1);
    // A program without a group has no sequential form to try.
    assert!(shrink::sequential(&mut runner, &sequence, &d).is_none());
}

#[test]
fn minimize_refuses_a_clean_program() {
    let mut runner = Runner::new(Model::new(Profile::host_6_18()));
    let e = shrink::minimize(&mut runner, &parse(NOISY).unwrap()).err().expect("clean program");
    assert!(e.contains("does not diverge"), "{e}");
}

const MISSING_GMEM: &str = "gmemfuzz-program v1
create_gmem size=0x1000 flags=MMAP
punch g3 offset=0 len=0x1000
map g7
host_read g9 offset=0 width=8
bind slot=2 flags=GUEST_MEMFD fd=g4 gpa=0x100000 size=0x1000 offset=0
check
";

#[test]
fn ops_on_missing_files_are_skipped_not_errors() {
    let program = parse(MISSING_GMEM).unwrap();
    let mut model = Runner::new(Model::new(Profile::host_6_18()));
    let trace = model.run(&program).expect("runs clean on the model");
    assert!(matches!(trace.outcomes[1], Outcome::Skipped(_)), "{:?}", trace.outcomes);
    match KvmBackend::new(0) {
        Ok(b) => {
            let trace = Runner::new(b).run(&program).expect("runs clean on KVM");
            assert_eq!(trace.outcomes.len(), program.ops.len());
        }
        Err(e) => eprintln!("SKIPPED the KVM half of ops_on_missing_files_are_skipped_not_errors: {e}"),
    }
}

fn tool(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Builds the C reproducer of `program` with expectations from `profile` and runs it.
fn build_and_run(program: &Program, profile: &Profile, name: &str) -> std::process::Output {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-repro");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, c::emit(program, profile, "").unwrap()).unwrap();
    let cc = Command::new("gcc").args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o"]).arg(&exe).arg(&src).output().unwrap();
    let warnings = String::from_utf8_lossy(&cc.stderr);
    assert!(cc.status.success() && warnings.is_empty(), "gcc on {}:\n{warnings}", src.display());
    Command::new(&exe).output().unwrap()
}

#[test]
fn c_reproducer_builds_runs_and_agrees_on_a_clean_program() {
    if !tool("gcc") {
        eprintln!("SKIPPED c_reproducer_builds_runs_and_agrees_on_a_clean_program: gcc is not installed");
        return;
    }
    let profile = match KvmBackend::new(0) {
        Ok(b) => b.profile().clone(),
        Err(e) => {
            eprintln!("SKIPPED c_reproducer_builds_runs_and_agrees_on_a_clean_program: real KVM is not available: {e}");
            return;
        }
    };
    // Scenarios of the host kernel (corpus/scenarios): a punch read back, SIGBUS, binding errors.
    let scenarios = gmemfuzz::scenarios::for_profile(&profile);
    let scenario = |name: &str| scenarios.iter().find(|s| s.name == name).expect("made for the host kernel");
    for name in ["punch_hole_then_read_zero", "host_fault_without_init_shared_is_sigbus", "binding_rules"] {
        let program = scenario(name).program();
        let out = build_and_run(&program, &profile, name);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{name}:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("all observations match the model"), "{stdout}");
    }

    // Guest accesses and guest page digests that leave as MMIO exits (the file's mapping,
    // the slot's shared side, is gone): the one C run loop answers them, raising the abort
    // flag for digests, and prints AccessResult's words.
    let program = parse(MMIO_AFTER_UNMAP).unwrap();
    let out = build_and_run(&program, &profile, "mmio_after_unmap");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("kvm:   [mmio-exit, mmio-exit]") && stdout.contains("kvm guest exit: mmio-exit"), "{stdout}");

    // mbind() and get_mempolicy() on a mapping: the C reproducer calls them as the backend
    // does and prints the policy as the same value; with the expectation of a kernel whose
    // files keep policies (7.2), the policy the new mapping shows differs.
    let mempolicy = scenario("mempolicy").program();
    let out = build_and_run(&mempolicy, &profile, "mempolicy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    use gmemfuzz_backends::abi::mempolicy::{policy_value, BIND};
    let bound = format!("kvm:   value {:#x}", policy_value(BIND, 1));
    assert!(stdout.contains("all observations match the model") && stdout.contains(&bound), "{stdout}");
    let mut files_keep_policies = profile.clone();
    files_keep_policies.numa.file_policy = !profile.numa.file_policy;
    let out = build_and_run(&mempolicy, &files_keep_policies, "mempolicy_wrong_profile");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("<== DIFFERS"), "{stdout}");

    // With expectations for a kernel that has no guest_memfd flags, creating an MMAP file
    // "should" fail: the reproducer sees it succeed and exits 1.
    let mut wrong = profile.clone();
    wrong.gmem_flags = 0;
    let program = parse("gmemfuzz-program v1\ncreate_gmem size=0x1000 flags=MMAP\n").unwrap();
    let out = build_and_run(&program, &wrong, "wrong_profile");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("<== DIFFERS") && stdout.contains("DIVERGENCE REPRODUCED"), "{stdout}");
}

const MMIO_AFTER_UNMAP: &str = "gmemfuzz-program v1
create_gmem size=0x2000 flags=MMAP|INIT_SHARED
map g0
bind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x100000 size=0x2000 offset=0
guest w8@0x100008=0x1234
unmap g0
guest r8@0x100008 r4@0x101000
check
";

fn gmemfuzz(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gmemfuzz")).args(args).output().unwrap();
    (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn cli_gives_clear_errors_on_bad_input() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad-input");
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("empty", b"", "empty"),
        ("corrupt", &[0xff], "neither a text program"),
        ("truncated.txt", b"gmemfuzz-program v1\nbind slot=2 flags=GUEST_MEM", "line 2"),
        ("newer.txt", b"gmemfuzz-program v4\ncheck\n", "program format v4 is newer than this gmemfuzz (v3)"),
    ];
    for (name, bytes, message) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        for cmd in ["show", "replay", "minimize", "c-repro"] {
            let (code, out) = gmemfuzz(&[cmd, path.to_str().unwrap()]);
            assert_eq!(code, Some(2), "{cmd} {name}: {out}");
            assert!(out.contains(message) && !out.contains("panicked"), "{cmd} {name}: {out}");
        }
    }
    let path = dir.join("missing.txt");
    std::fs::write(&path, MISSING_GMEM).unwrap();
    let (code, out) = gmemfuzz(&["show", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out, print(&parse(MISSING_GMEM).unwrap()));
    if KvmBackend::new(0).is_ok() {
        let (code, out) = gmemfuzz(&["replay", path.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("CLEAN") && out.contains("not sent"), "{out}");
    } else {
        eprintln!("SKIPPED the replay half of cli_gives_clear_errors_on_bad_input: no real KVM");
    }
}

/// `gmemfuzz host` says in one line what the host's KVM offers, and its exit status follows
/// the probe: 0 where a VM type has guest_memfd (inside the lane), 3 naming what is missing
/// where none has (this project's hosts since 2026-12-06). A command that needs real KVM
/// says why it cannot run in one line, without a backtrace even with RUST_BACKTRACE=1.
#[test]
fn the_host_probe_names_what_is_missing_in_one_line() {
    let host = gmemfuzz_backends::kvm::HostKvm::probe();
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_gmemfuzz")).args(args).env("RUST_BACKTRACE", "1").output().unwrap();
    let out = run(&["host"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim_end(), host.summary(), "{stderr}");
    match host.lacks(0) {
        None => assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}"),
        Some(why) if host.fuzzable_types().is_empty() => {
            assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
            assert!(stderr.contains(&why) && stderr.lines().count() == 1, "{stderr}");
            let out = run(&["profile"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(stderr.starts_with("gmemfuzz: error: ") && stderr.contains(&why), "{stderr}");
            assert!(stderr.lines().count() == 1 && !stderr.contains("backtrace"), "{stderr}");
        }
        Some(_) => assert_eq!(out.status.code(), Some(0), "another VM type has guest_memfd: {stdout}{stderr}"),
    }
}

/// A program with concurrent groups: the C reproducer runs each group's members on threads
/// released by a barrier, guest members on vCPUs of their own, shows what each did, and
/// compares what came before the first group only (after it, the order decides).
const GROUPS: &str = "gmemfuzz-program v3
create_gmem size=0x4000 flags=MMAP|INIT_SHARED
map g0
bind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x100000 size=0x4000 offset=0x0
host_write g0 offset=0x0 width=8 value=0x1122334455667788
group
  x8 guest r8@0x100000
  x4 guest w4@0x101004=0x7 r4@0x101004
  punch g0 offset=0x0 len=0x2000
  x4 host_read g0 offset=0x1000 width=8
end
check
group
  x6 guest r8@0x101000
  unbind slot=2
end
";

#[test]
fn c_reproducer_runs_groups_on_threads() {
    if !tool("gcc") {
        eprintln!("SKIPPED c_reproducer_runs_groups_on_threads: gcc is not installed");
        return;
    }
    let Some(backend) = common::kvm_or_skip("c_reproducer_runs_groups_on_threads") else { return };
    let program = parse(GROUPS).unwrap();
    let out = build_and_run(&program, backend.profile(), "groups");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("#4   group: 4 members at the same time"), "{stdout}");
    assert!(stdout.contains("#6   group: 2 members at the same time"), "{stdout}");
    // Every repetition shows up, in runs: the eight reads of member 0 add up to eight.
    let member0: u32 = stdout
        .lines()
        .skip_while(|l| !l.contains("member 0: guest r8@0x100000"))
        .skip(1)
        .take_while(|l| l.contains("kvm: "))
        .map(|l| l.rsplit_once(" x").unwrap().1.parse::<u32>().unwrap())
        .sum();
    assert_eq!(member0, 8, "{stdout}");
    assert!(stdout.contains("all observations match the model"), "{stdout}");
}

#[test]
fn c_reproducer_agrees_with_the_kvm_backend_on_random_programs() {
    if !tool("gcc") {
        eprintln!("SKIPPED c_reproducer_agrees_with_the_kvm_backend_on_random_programs: gcc is not installed");
        return;
    }
    let mut runner = match KvmBackend::new(0) {
        Ok(b) => Runner::new(b),
        Err(e) => {
            eprintln!("SKIPPED c_reproducer_agrees_with_the_kvm_backend_on_random_programs: real KVM is not available: {e}");
            return;
        }
    };
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut bytes = vec![0u8; 24 * 64];
    let mut compared = 0;
    for n in 0..12 {
        rng.fill_bytes(&mut bytes);
        // The C reproducer refuses concurrent groups (`c_reproducer_refuses_a_group_clearly`):
        // programs without them (the swarm does not draw groups, so these are the programs
        // this test always ran).
        let mut weights = gmemfuzz::gen::OpWeights::for_profile(&Profile::host_6_18());
        weights.set(OpKind::Group, 0);
        let program = Program::generate_with(&mut arbitrary::Unstructured::new(&bytes), 24, &Profile::host_6_18(), weights).unwrap();
        if runner.run(&program).is_err() {
            continue;
        }
        let profile = runner.backend.profile().clone();
        let out = build_and_run(&program, &profile, &format!("random{n}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "program #{n}:\n{}\n{stdout}{}", print(&program), String::from_utf8_lossy(&out.stderr));
        compared += 1;
    }
    assert!(compared >= 6, "only {compared} random programs ran clean");
}

/// A guest store to a guest_memfd slot bound before its file (MMAP) was mapped: with
/// guest_memfd-only slots the store lands in the file; without them (this host) in the
/// anonymous memory behind userspace_addr. The file is mapped afterwards; no op invalidates
/// anything, so only the end-of-program state comparison looks at the file's page.
const END_ONLY: &str = "gmemfuzz-program v1
create_gmem size=0x1000 flags=MMAP|INIT_SHARED
bind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x100000 size=0x1000 offset=0
guest w8@0x100008=0x1122334455667788
map g0
";

/// A divergence that only the end-of-program comparison catches is reproduced by `replay`
/// (the runner's events) and by the compiled C reproducer. The "kernel bug" is a model whose
/// profile is wrong about guest_memfd-only slots: it claims them where the kernel has none
/// (6.18), denies them where it has them (7.2, in the lane).
#[test]
fn end_of_program_divergence_reproduces_in_replay_and_c() {
    let Some(backend) = common::kvm_or_skip("end_of_program_divergence_reproduces_in_replay_and_c") else { return };
    let program = parse(END_ONLY).unwrap();
    let mut wrong = backend.profile().clone();
    wrong.gmem_only_slots = !wrong.gmem_only_slots;

    // The honest model runs clean: the divergence below is the wrong profile's.
    let mut runner = Runner::new(backend);
    runner.run(&program).unwrap_or_else(|e| panic!("the real profile runs clean: {e}"));

    runner.model = Model::new(wrong.clone());
    let report = gmemfuzz::repro::replay::Report::run(&mut runner, &program).unwrap();
    let rendered = report.render("kvm");
    eprintln!("{rendered}");
    match &report.verdict {
        Err(RunError::Divergence(d)) => {
            assert!(d.at_end(), "only the end-of-program comparison may catch it: {d}");
            assert_eq!(d.op_index, program.ops.len() - 1, "{d}");
        }
        other => panic!("expected a divergence, got {other:?}"),
    }
    assert!(rendered.lines().any(|l| l.starts_with(">>> end")), "replay marks the end comparison:\n{rendered}");
    // Every op itself agreed.
    assert!(report.steps.iter().all(|s| s.model == s.backend), "{rendered}");

    if !tool("gcc") {
        eprintln!("SKIPPED the C half of end_of_program_divergence_reproduces_in_replay_and_c: gcc is not installed");
        return;
    }
    let out = build_and_run(&program, &wrong, "end_only");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let differs: Vec<&str> = stdout.lines().filter(|l| l.contains("<== DIFFERS")).collect();
    assert!(!differs.is_empty() && differs.iter().all(|l| l.contains("(end of program)")), "only end-of-program probes differ:\n{stdout}");
    assert!(stdout.contains("DIVERGENCE REPRODUCED"), "{stdout}");
}

#[test]
fn a_configuration_that_names_nothing_is_an_error_naming_the_valid_ops() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad-config");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("check.txt");
    std::fs::write(&path, "gmemfuzz-program v1\ncheck\n").unwrap();
    let valid = "valid names: create_gmem, map, bind, unbind, modify_slot, set_attributes, punch";
    // The environment: read before /dev/kvm is opened, so this holds with or without it.
    for cmd in ["replay", "c-repro"] {
        let out = Command::new(env!("CARGO_BIN_EXE_gmemfuzz"))
            .args([cmd, path.to_str().unwrap()])
            .env("GMEMFUZZ_SKIP_OP", "bogus")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {text}");
        assert!(text.contains("GMEMFUZZ_SKIP_OP: `bogus` names no op kind") && text.contains(valid), "{cmd}: {text}");
    }
    // The command line: clap rejects the value before the lane starts anything.
    let (code, out) = gmemfuzz(&["lane", "--skip-op", "bogus"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("`bogus` names no op kind") && out.contains(valid), "{out}");
}

/// Every op kind goes through the op table's C call template into a reproducer that
/// compiles warning-free (run only where KVM is: the tests above): no KVM needed.
#[test]
fn c_reproducer_of_every_op_kind_compiles() {
    if !tool("gcc") {
        eprintln!("SKIPPED c_reproducer_of_every_op_kind_compiles: gcc is not installed");
        return;
    }
    let text = "gmemfuzz-program v3
create_gmem size=0x4000 flags=MMAP
map g0
bind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x100000 size=0x4000 offset=0x0
modify_slot slot=2 gpa=0x104000 flags=0x0
set_attributes gpa=0x104000 size=0x1000 attributes=PRIVATE
punch g0 offset=0x0 len=0x1000
allocate g0 mode=KEEP_SIZE offset=0x0 len=0x1000
truncate g0 size=0x0
mbind g0 offset=0x0 len=0x1000 mode=BIND nodes=0x1 flags=STRICT
get_mempolicy g0 offset=0x0
madvise g0 offset=0x1000 len=0x1000 advice=REMOVE
pre_fault gpa=0x104000 size=0x2000
guest r8@0x104000 w4@0x105000=0x1
host_read g0 offset=0x8 width=8
host_write g0 offset=0x8 width=4 value=0x2
check
group
  x2 guest r8@0x104000
  punch g0 offset=0x1000 len=0x1000
end
unbind slot=2
unmap g0
close_gmem g0
destroy_vm
";
    let program = parse(text).unwrap();
    let mut kinds: Vec<OpKind> = program.ops.iter().map(|op| op.kind()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, OpKind::ALL, "the program has every kind");
    let src = Path::new(env!("CARGO_TARGET_TMPDIR")).join("c-repro-every-kind.c");
    std::fs::write(&src, c::emit(&program, &Profile::assumed(1), "").unwrap()).unwrap();
    let cc =
        Command::new("gcc").args(["-O0", "-Wall", "-Wextra", "-Werror", "-pthread", "-c", "-o", "/dev/null"]).arg(&src).output().unwrap();
    let warnings = String::from_utf8_lossy(&cc.stderr);
    assert!(cc.status.success() && warnings.is_empty(), "gcc on {}:\n{warnings}", src.display());
}
