//! A standalone C reproducer: one file, libc and the kernel's uapi headers only (with its
//! own definitions of what older headers lack), doing exactly what `KvmBackend` does for
//! each op and comparing what it sees with what the model predicted.
//!
//! Wherever the runner compares state (see `runner::policy`: after `check`, after
//! invalidating ops that took effect, and at the end of the program), it makes the same
//! probes the KVM backend answers (residency by mincore, page digests through the host
//! mapping, the slot's anonymous memory and the guest) and compares their answers with the
//! model's, where the model has one. Its expectations are the runner's own events.
//!
//! A concurrent group runs as the KVM backend runs it: each member on a thread, released
//! together by a barrier, guest members each on a vCPU of its own, and the program shows what
//! each repetition did. Which results a race allows is a set the model finds by searching
//! the members' orders (`replay` checks it), so the members' results are shown, not
//! compared. Where every order of a group ends in one state (`Model::order_independent`: a
//! race whose damage outlives it, such as a mapping installed while attributes change), what
//! follows is compared as after any op; from the first group that may end otherwise, the
//! program shows what it sees and compares nothing (a kernel crash or a KASAN report still
//! reproduces).

use std::fmt::Write as _;

use gmemfuzz_backends::abi::mailbox::MAX_COMMANDS;
use gmemfuzz_backends::kvm::guest;
use gmemfuzz_backends::model::{Model, MAX_RESIDENCY_PAGES};
use gmemfuzz_backends::op::{layout, AccessKind, ArgValue, FdArg, Format, Op};
use gmemfuzz_backends::{Group, Observation, Outcome, Probe, Profile};

use super::text::{op_line, print};
use crate::program::Program;
use crate::runner::{CompareAt, Event, Runner};

/// What the model predicts for one op: its outcome (`None` where the op did not run)
/// and, where the runner compares state after it, the probes and their answers.
#[derive(Clone, Default)]
pub(super) struct Expected {
    pub(super) outcome: Option<Outcome>,
    probes: ProbeAnswers,
}

/// Probes with the model's answers, in the words the C program prints.
pub(super) type ProbeAnswers = Vec<(Probe, Option<String>)>;

/// The expectations of every op and of the end-of-program comparison, read from the
/// runner's events with the model on both sides: the C program compares what the runner
/// would compare, where the runner would compare it.
pub(super) fn expectations(program: &Program, profile: &Profile) -> Result<(Vec<Expected>, ProbeAnswers), String> {
    let mut ops = vec![Expected::default(); program.ops.len()];
    let mut end = Vec::new();
    let answers = |probes: &[Probe], expected: &[Option<Observation>]| {
        probes.iter().copied().zip(expected.iter().map(|a| a.as_ref().map(observation_text))).collect::<Vec<_>>()
    };
    let mut runner = Runner::new(Model::new(profile.clone()));
    let run = runner.run_with(program, &mut |event: &Event<'_>| match *event {
        Event::Op { index, expected, .. } => ops[index].outcome = Some(expected.clone()),
        Event::State { index, at: CompareAt::AfterOp, probes, expected, .. } => ops[index].probes = answers(probes, expected),
        Event::State { at: CompareAt::End, probes, expected, .. } => end = answers(probes, expected),
        Event::Diverged(_) => {}
    });
    match run {
        Ok(_) => Ok((ops, end)),
        Err(e) => Err(format!("the model disagrees with itself (a model bug): {e}")),
    }
}

/// For each op, whether it is a group every order of which ends in one state, up to the
/// first group that may end in several (after it nothing is compared): the model's state
/// before each group is the program's prefix run on the model.
pub(super) fn groups_with_one_end(program: &Program, profile: &Profile) -> Vec<bool> {
    let mut one_end = vec![false; program.ops.len()];
    for (i, op) in program.ops.iter().enumerate() {
        let Op::Group(group) = op else { continue };
        let mut runner = Runner::new(Model::new(profile.clone()));
        if runner.run(&Program::new(program.ops[..i].to_vec())).is_err() || !runner.model.order_independent(group) {
            break;
        }
        one_end[i] = true;
    }
    one_end
}

/// An observation in the words the C program prints.
fn observation_text(o: &Observation) -> String {
    match o {
        Observation::Content(c) => format!("digest {:#010x}", c.digest()),
        Observation::Residency(r) => format!("resident [{}]", r.iter().map(|&b| if b { '1' } else { '0' }).collect::<String>()),
        Observation::GuestExit(e) => format!("guest exit: {e}"),
        Observation::Sigbus => "SIGBUS".into(),
        Observation::Absent => "absent".into(),
        Observation::PlatformMap(gfns) => {
            format!("platform [{}]", gfns.iter().map(|g| format!("{g:#x}")).collect::<Vec<_>>().join(" "))
        }
    }
}

fn opt_string(s: &Option<String>) -> String {
    s.as_deref().map_or("NULL /* either is fine */".into(), c_string)
}

/// The C statements making the state probes after op `i` (or at the end, after the last
/// op `i`), annotated.
fn probe_calls(i: usize, at: CompareAt, probes: &[(Probe, Option<String>)]) -> String {
    let mut s = String::new();
    let mut guest = Vec::new();
    for (probe, expected) in probes {
        let what = match at {
            CompareAt::AfterOp => c_string(&format!("{probe:?}")),
            CompareAt::End => c_string(&format!("{probe:?} (end of program)")),
        };
        let call = match *probe {
            Probe::Residency { gmem } => format!("probe_residency({} /* {gmem} */, {MAX_RESIDENCY_PAGES} /* most pages */);", gmem.0),
            Probe::HostPage { gmem, page } => format!("probe_host_page({} /* {gmem} */, {page} /* page */);", gmem.0),
            Probe::AnonPage { slot, page } => format!("probe_anon_page({slot} /* slot */, {page} /* page */);"),
            Probe::GuestPage { gpa, sample } => {
                let sample = gmemfuzz_backends::abi::pack_sample(sample);
                guest.push((gpa, what, opt_string(expected), sample));
                continue;
            }
            Probe::PlatformMap => {
                // Compared only where this kernel keeps the map.
                let expected = opt_string(expected);
                let _ = writeln!(s, "    {{ int here = probe_platform_map(); report_probe({i}, {what}, here ? {expected} : NULL); }}");
                continue;
            }
        };
        let _ = writeln!(s, "    {call} report_probe({i}, {what}, {});", opt_string(expected));
    }
    if !guest.is_empty() {
        let n = guest.len();
        let _ = writeln!(s, "    {{ /* guest page digests, one run */");
        let gpas: Vec<String> = guest.iter().map(|g| format!("{:#x}ULL", g.0)).collect();
        let whats: Vec<&str> = guest.iter().map(|g| g.1.as_str()).collect();
        let exps: Vec<&str> = guest.iter().map(|g| g.2.as_str()).collect();
        let _ = writeln!(s, "        static const uint64_t gpas[{n}] = {{ {} }};", gpas.join(", "));
        let samples: Vec<String> = guest.iter().map(|g| format!("{:#x}ULL", g.3)).collect();
        let _ =
            writeln!(s, "        static const uint64_t samples[{n}] = {{ {} }}; /* sampled qword indices, 4 x u16 */", samples.join(", "));
        let _ = writeln!(s, "        static const char *const what[{n}] = {{ {} }};", whats.join(", "));
        let _ = writeln!(s, "        static const char *const expected[{n}] = {{ {} }};", exps.join(", "));
        let _ = writeln!(s, "        probe_guest_pages({i}, {n}, gpas, samples, what, expected);\n    }}");
    }
    s
}

pub(super) fn c_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// The C source. `profile` decides the model's expectations; `note` goes into the header.
pub fn emit(program: &Program, profile: &Profile, note: &str) -> Result<String, String> {
    let code = guest::assemble().map_err(|e| format!("assembling the guest code: {e}"))?;
    if let Some(op) = program.ops.iter().find(|op| matches!(op, Op::Guest { accesses } if accesses.len() > MAX_COMMANDS)) {
        return Err(format!("a guest op with more accesses than one run can carry ({}): {}", MAX_COMMANDS, op_line(op)));
    }
    // The prelude keeps one entry per create (`gmems[MAX_GMEMS]`, as many as a `GmemId`
    // can name).
    let creates = program.ops.iter().filter(|op| matches!(op, Op::CreateGmem { .. })).count();
    if creates > u8::MAX as usize + 1 {
        return Err(format!("{creates} create_gmem ops: a C reproducer holds at most {}", u8::MAX as usize + 1));
    }
    let (expected, end) = expectations(program, profile)?;
    let one_end = groups_with_one_end(program, profile);
    let mut c = String::new();
    let w = &mut c;
    let _ = writeln!(w, "/*\n * gmemfuzz C reproducer (generated; see harness/src/repro/c.rs).");
    let _ = writeln!(w, " * Kernel release: {}", profile.kernel);
    let _ = writeln!(w, " * Profile: {}", profile.summary());
    let _ = writeln!(w, " * VM type: {}", profile.vm_type);
    if !note.is_empty() {
        let _ = writeln!(w, " * Note: {note}");
    }
    let _ = writeln!(w, " *\n * Build: gcc -static -O2 -Wall -o repro repro.c   Run as a user with access to /dev/kvm.");
    let _ = writeln!(w, " * Exit status: 1 when an observation differs from the model's expectation, 0 when all agree,");
    let _ = writeln!(w, " * 2 when setup fails.\n *\n * The program:");
    for line in print(program).lines() {
        let _ = writeln!(w, " *   {line}");
    }
    let _ = writeln!(w, " */");
    let mut array = format!(
        "/* The guest: a 32-bit command interpreter (gmemfuzz_backends::kvm::guest::assemble()), run at {:#x}. */\n",
        layout::CODE_GPA
    );
    let _ = write!(array, "static const unsigned char guest_code[{}] = {{", code.len());
    for (i, b) in code.iter().enumerate() {
        if i % 16 == 0 {
            array.push_str("\n    ");
        }
        let _ = write!(array, "0x{b:02x},");
    }
    array.push_str("\n};\n");
    c.push_str(&prelude().replace("@GUEST_CODE@", &array));
    // Concurrent groups: each member's op as a function its thread calls.
    for (i, op) in program.ops.iter().enumerate() {
        if let Op::Group(group) = op {
            for (j, m) in group.members.iter().enumerate() {
                let _ = writeln!(c, "\nstatic void group{i}_member{j}(void) /* {} */\n{{\n    {}\n}}", op_line(&m.op), op_call(&m.op));
            }
        }
    }
    c.push_str("\nint main(void)\n{\n");
    let _ = writeln!(c, "    setup({} /* KVM_CREATE_VM type */);", profile.vm_type);
    for (i, op) in program.ops.iter().enumerate() {
        let line = op_line(op);
        let _ = writeln!(c, "\n    /* op #{i}: {line} */");
        let exp = match &expected[i].outcome {
            Some(Outcome::Skipped(reason)) => {
                let _ = writeln!(c, "    skipped({i}, {}, {});", c_string(&line), c_string(&format!("{reason:?}")));
                continue;
            }
            Some(o) if !o.has_unknown() => c_string(&o.to_string()),
            _ => "NULL /* the model cannot predict this op: not compared */".to_string(),
        };
        if let (Op::Group(group), Some(Outcome::Group(outcomes))) = (op, &expected[i].outcome) {
            c.push_str(&group_call(i, group, outcomes, one_end[i]));
            c.push_str(&probe_calls(i, CompareAt::AfterOp, &expected[i].probes));
            continue;
        }
        let call = op_call(op);
        let _ = writeln!(c, "    {call}");
        let _ = writeln!(c, "    report({i}, {}, {exp});", c_string(&line));
        c.push_str(&probe_calls(i, CompareAt::AfterOp, &expected[i].probes));
    }
    if !end.is_empty() {
        let _ = writeln!(c, "\n    /* end of program: the runner compares the final state once more */");
        c.push_str(&probe_calls(program.ops.len() - 1, CompareAt::End, &end));
    }
    c.push_str("\n    printf(\"%s\\n\", failures ? \"DIVERGENCE REPRODUCED: the kernel differs from the model\" : \"all observations match the model\");\n");
    c.push_str("    return failures ? 1 : 0;\n}\n");
    Ok(c)
}

/// The members of group op #`index` on threads released together (`run_group` in the
/// prelude): guest members each on a vCPU of its own, numbered as the KVM backend numbers
/// them (the guest members that are sent, in order); members the model skips are not sent.
fn group_call(index: usize, group: &Group, outcomes: &[Vec<Outcome>], one_end: bool) -> String {
    let mut s = format!("    {{\n        static struct member m[{}] = {{\n", group.members.len());
    let mut vcpu = 0;
    for (j, (m, out)) in group.members.iter().zip(outcomes).enumerate() {
        let skip = match out.first() {
            Some(Outcome::Skipped(reason)) => c_string(&format!("{reason:?}")),
            _ => "NULL".into(),
        };
        let guest = matches!(m.op, Op::Guest { .. }) && skip == "NULL";
        let v = if guest { vcpu as i64 } else { -1 };
        vcpu += usize::from(guest);
        let _ = writeln!(
            s,
            "            {{ group{index}_member{j}, {} /* repeat */, {v} /* vCPU */, {}, {skip}, {{{{0}}}} }},",
            m.repeat,
            c_string(&op_line(&m.op))
        );
    }
    let one_end = if one_end { "1 /* every order ends in one state */" } else { "0 /* the order decides what follows */" };
    let _ = write!(s, "        }};\n        run_group({index}, m, {}, {one_end});\n    }}\n", group.members.len());
    s
}

fn fd_kind(fd: FdArg) -> String {
    match fd {
        FdArg::Gmem(g) => format!("FD_GMEM, {} /* {g} */", g.0),
        FdArg::Invalid => "FD_INVALID, 0 /* guest_memfd = -1 */".into(),
        FdArg::NotGmem => "FD_NOT_GMEM, 0 /* guest_memfd = the VM fd */".into(),
    }
}

/// The C statement performing one op: the op table's call template (`OpSpec::c`) with
/// each `{key}` replaced by that field's value, annotated.
fn op_call(op: &Op) -> String {
    let spec = op.kind().spec();
    debug_assert!(!spec.c.is_empty(), "{:?} has no call of its own", spec.kind);
    let mut call = spec.c.to_string();
    for (arg, value) in spec.args.iter().zip(op.args()) {
        // `{key}`, or `{key:label}` where the C side's name for it is another (the uapi's).
        for open in [format!("{{{}}}", arg.key), format!("{{{}:", arg.key)] {
            while let Some(at) = call.find(&open) {
                let end = at + call[at..].find('}').expect("a template's `{` is closed");
                let label = if open.ends_with('}') { arg.key } else { call[at + open.len()..end].trim() };
                let text = c_value(label, arg.format, &value);
                call.replace_range(at..=end, &text);
            }
        }
    }
    call + ";"
}

/// One argument of a C call, with its name as a comment.
fn c_value(key: &str, format: Format, value: &ArgValue) -> String {
    match *value {
        ArgValue::U64(v) => format!("{v:#x}ULL /* {key} */"),
        ArgValue::U32(v) if matches!(format, Format::Dec) => format!("{v} /* {key} */"),
        ArgValue::U32(v) => format!("{v:#x} /* {key} */"),
        ArgValue::I32(v) => format!("{:#x} /* {key} */", v as u32),
        ArgValue::File(g) => format!("{} /* {g} */", g.0),
        ArgValue::Fd(fd) => fd_kind(fd),
        ArgValue::Width(w) => format!("{} /* {key} */", w.bytes()),
        ArgValue::Accesses(ref accesses) => {
            let mut s = String::from("(const struct access[]){\n");
            for a in accesses {
                let (write, value) = match a.kind {
                    AccessKind::Read => (0, 0),
                    AccessKind::Write(v) => (1, v),
                };
                let what = if write == 1 { "store" } else { "load" };
                let _ = writeln!(
                    s,
                    "            {{ {:#x}ULL /* gpa */, {} /* width */, {write} /* {what} */, {value:#x}ULL /* value */ }},",
                    a.gpa,
                    a.width.bytes()
                );
            }
            if accesses.is_empty() {
                s.push_str("            { 0, 0, 0, 0 } /* unused */\n");
            }
            let _ = write!(s, "        }}, {}", accesses.len());
            s
        }
    }
}

/// Everything but the guest code and main(): `prelude.c` with the generated `#define`s
/// and errno table filled in.
fn prelude() -> String {
    let filled = PRELUDE_TEMPLATE.replace("@ABI_DEFINES@", &abi_defines()).replace("@ERRNO_CASES@", &errno_cases());
    debug_assert!(!filled.contains("@ABI_DEFINES@") && !filled.contains("@ERRNO_CASES@"));
    filled
}

const PRELUDE_TEMPLATE: &str = include_str!("prelude.c");

/// `#define NAME value` lines for every number and word the C shares with the Rust side
/// (syzkaller's csource style): the layout, the mailbox protocol, the uapi flags, the
/// digest, and the words of `Outcome`'s and the observations' `Display`.
fn abi_defines() -> String {
    use gmemfuzz_backends::abi::{self, command, cpu, falloc, fnv, mailbox, mempolicy};
    let mut d = Defines(String::new());
    let ull = |v: u64| format!("{v:#x}ULL");
    let uint = |v: u64| format!("{v:#x}u");

    d.comment("The harness layout (gmemfuzz_backends::abi::layout, abi::mailbox).");
    d.define("PAGE", ull(abi::PAGE_SIZE));
    d.define("CODE_SLOT", layout::CODE_SLOT.to_string());
    d.define("MAILBOX_SLOT", layout::MAILBOX_SLOT.to_string());
    d.define("CODE_GPA", ull(layout::CODE_GPA));
    d.define("CODE_SIZE", ull(layout::CODE_SIZE));
    d.define("MAILBOX_GPA", ull(layout::MAILBOX_GPA));
    d.define("MAILBOX_SIZE", ull(layout::MAILBOX_SIZE));
    d.define("STACK_TOP", ull(mailbox::STACK_TOP));
    d.define("MAX_MAPPED_BYTES", ull(layout::MAX_MAPPED_BYTES));
    d.define("MAX_RESIDENCY_PAGES", MAX_RESIDENCY_PAGES.to_string());
    d.comment("The mailbox: byte offsets (abi::mailbox).");
    d.define("MB_COUNT", mailbox::COUNT.to_string());
    d.define("MB_CURRENT", mailbox::CURRENT.to_string());
    d.define("MB_START", mailbox::START.to_string());
    d.define("MB_ABORT_FLAG", mailbox::ABORT_FLAG.to_string());
    d.define("MB_VCPU_STRIDE", mailbox::VCPU_STRIDE.to_string());
    d.define("CMD_HEADER", mailbox::CMD_HEADER.to_string());
    d.define("CMD_SIZE", mailbox::CMD_SIZE.to_string());
    d.define("CMD_CODE", mailbox::CMD_CODE.to_string());
    d.define("CMD_GPA", mailbox::CMD_GPA.to_string());
    d.define("CMD_VALUE", mailbox::CMD_VALUE.to_string());
    d.define("MAX_COMMANDS", mailbox::MAX_COMMANDS.to_string());
    d.comment("Guest interpreter command codes (abi::command).");
    d.define("CMD_READ", uint(command::READ.into()));
    d.define("CMD_WRITE", uint(command::WRITE.into()));
    d.define("CMD_DIGEST", uint(command::DIGEST.into()));
    d.define("CMD_W1", uint(command::W1.into()));
    d.define("CMD_W2", uint(command::W2.into()));
    d.define("CMD_W4", uint(command::W4.into()));
    d.define("CMD_W8", uint(command::W8.into()));
    d.comment("The vCPU's start state (abi::cpu).");
    d.define("CPU_CODE_SELECTOR", format!("{:#x}", cpu::CODE_SELECTOR));
    d.define("CPU_CODE_TYPE", format!("{:#x}", cpu::CODE_TYPE));
    d.define("CPU_DATA_SELECTOR", format!("{:#x}", cpu::DATA_SELECTOR));
    d.define("CPU_DATA_TYPE", format!("{:#x}", cpu::DATA_TYPE));
    d.define("CPU_RFLAGS", format!("{:#x}", cpu::RFLAGS));
    d.comment("FNV-1a, the page and sample digests (abi::fnv).");
    d.define("FNV_OFFSET_BASIS", uint(fnv::OFFSET_BASIS.into()));
    d.define("FNV_PRIME", uint(fnv::PRIME.into()));
    d.comment("uapi values, under our own names so they never clash with a header that has them (abi).");
    d.define("GF_KVM_EXIT_MEMORY_FAULT", abi::KVM_EXIT_MEMORY_FAULT.to_string());
    d.define("GF_KVM_MEM_GUEST_MEMFD", uint(abi::KVM_MEM_GUEST_MEMFD.into()));
    d.define("GF_GUEST_MEMFD_FLAG_MMAP", ull(abi::GUEST_MEMFD_FLAG_MMAP));
    d.define("GF_GUEST_MEMFD_FLAG_INIT_SHARED", ull(abi::GUEST_MEMFD_FLAG_INIT_SHARED));
    d.define("GF_KVM_MEMORY_ATTRIBUTE_PRIVATE", ull(abi::KVM_MEMORY_ATTRIBUTE_PRIVATE));
    d.define("GF_FALLOC_PUNCH", format!("{:#x} /* FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE */", falloc::PUNCH));
    d.define("GF_MPOL_MAXNODE", format!("{} /* a one-word node mask: the kernel reads maxnode - 1 bits */", mempolicy::MAXNODE));
    d.define("GF_MPOL_F_ADDR", uint(mempolicy::F_ADDR));
    d.define(
        "GF_MPOL_MODE_BITS",
        format!("{} /* get_mempolicy's value: the mode word below, the nodes above */", mempolicy::POLICY_MODE_BITS),
    );
    d.comment("The words gmemfuzz prints: Display of Outcome and AccessResult, and of the observations.");
    for (name, word) in words() {
        d.define(name, c_string(&word));
    }
    d.0
}

/// The generated block of `#define`s.
struct Defines(String);

impl Defines {
    fn comment(&mut self, text: &str) {
        let _ = writeln!(self.0, "\n/* {text} */");
    }

    fn define(&mut self, name: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "#define {name} {value}");
    }
}

/// Sentinels that stand for a C conversion in a rendered Rust string.
const SENTINEL_A: u64 = 0x5e4f_1001;
const SENTINEL_B: u64 = 0x5e4f_1002;
const SENTINEL_C: u64 = 0x5e4f_1003;
const SENTINEL_ERRNO: i32 = 9999;

/// `rendered` with each sentinel's text replaced by its C conversion: the C format string
/// of a Rust `Display`. Each sentinel must appear exactly once.
fn c_format(rendered: String, conversions: &[(String, &str)]) -> String {
    assert!(!rendered.contains('%'), "a literal % in {rendered:?}");
    let mut out = rendered;
    for (text, conversion) in conversions {
        assert_eq!(out.matches(text.as_str()).count(), 1, "{text} in {out:?}");
        out = out.replace(text.as_str(), conversion);
    }
    out
}

/// The C reproducer's words, each derived from the Rust `Display` it must equal.
fn words() -> Vec<(&'static str, String)> {
    use gmemfuzz_backends::{AccessResult, Errno, PageContent, SkipReason};
    let hex = |v: u64| format!("{v:#x}");
    let guest_two = Outcome::Guest(vec![AccessResult::Wrote, AccessResult::Wrote]).to_string();
    let wrote = AccessResult::Wrote.to_string();
    let (open, rest) = guest_two.split_once(&wrote).expect("Guest's Display lists its results");
    let (sep, close) = rest.split_once(&wrote).expect("two results");
    let resident = observation_text(&Observation::Residency(vec![true, false]));
    let (resident_open, resident_close) = resident.split_once("10").expect("residency lists its pages");
    let platform = observation_text(&Observation::PlatformMap(vec![0xa, 0xb]));
    let (platform_open, rest) = platform.split_once("0xa").expect("the map lists its GFNs");
    let (platform_sep, platform_close) = rest.split_once("0xb").expect("two GFNs");
    let mmio = AccessResult::Mmio.to_string();
    let guest_exit = observation_text(&Observation::GuestExit(AccessResult::Mmio));
    vec![
        ("WORD_OK", Outcome::Ok.to_string()),
        ("WORD_ERROR_NAMED", c_format(Outcome::Err(Errno(libc::EBADF)).to_string(), &[("EBADF".into(), "%s")])),
        ("WORD_ERROR_NUMBER", c_format(Outcome::Err(Errno(SENTINEL_ERRNO)).to_string(), &[(SENTINEL_ERRNO.to_string(), "%d")])),
        ("WORD_VALUE", c_format(Outcome::Value(SENTINEL_A).to_string(), &[(hex(SENTINEL_A), "0x%llx")])),
        ("WORD_SIGBUS", Outcome::Sigbus.to_string()),
        ("WORD_SKIPPED_NO_SUCH_GMEM", Outcome::Skipped(SkipReason::NoSuchGmem).to_string()),
        ("WORD_SKIPPED_NO_SUCH_SLOT", Outcome::Skipped(SkipReason::NoSuchSlot).to_string()),
        ("WORD_SKIPPED_NOT_MAPPED", Outcome::Skipped(SkipReason::NotMapped).to_string()),
        ("WORD_GUEST_OPEN", open.to_string()),
        ("WORD_GUEST_SEP", sep.to_string()),
        ("WORD_GUEST_CLOSE", close.to_string()),
        ("WORD_READ", c_format(AccessResult::Read(SENTINEL_A).to_string(), &[(hex(SENTINEL_A), "0x%llx")])),
        ("WORD_WROTE", wrote.clone()),
        ("WORD_MMIO", mmio.clone()),
        ("WORD_NOT_RUN", AccessResult::NotRun.to_string()),
        (
            "WORD_MEMORY_FAULT",
            c_format(
                AccessResult::MemoryFault { gpa: SENTINEL_A, size: SENTINEL_B, flags: SENTINEL_C }.to_string(),
                &[(hex(SENTINEL_A), "0x%llx"), (hex(SENTINEL_B), "0x%llx"), (hex(SENTINEL_C), "0x%llx")],
            ),
        ),
        (
            "OBS_DIGEST",
            c_format(
                observation_text(&Observation::Content(PageContent::Digest(SENTINEL_A as u32))),
                &[(format!("{SENTINEL_A:#010x}"), "0x%08x")],
            ),
        ),
        ("OBS_SIGBUS", observation_text(&Observation::Sigbus)),
        ("OBS_ABSENT", observation_text(&Observation::Absent)),
        ("OBS_RESIDENT_OPEN", resident_open.to_string()),
        ("OBS_RESIDENT_YES", "1".into()),
        ("OBS_RESIDENT_NO", "0".into()),
        ("OBS_RESIDENT_CLOSE", resident_close.to_string()),
        ("OBS_PLATFORM_OPEN", platform_open.to_string()),
        ("OBS_PLATFORM_SEP", platform_sep.to_string()),
        ("OBS_PLATFORM_GFN", "0x%llx".into()),
        ("OBS_PLATFORM_CLOSE", platform_close.to_string()),
        ("OBS_GUEST_EXIT", guest_exit.strip_suffix(&mmio).expect("a guest exit ends in the access result").to_string()),
    ]
}

/// The body of the C `errno_name` switch, from the table `Errno`'s `Display` uses.
fn errno_cases() -> String {
    gmemfuzz_backends::abi::errno::table().map(|(e, name)| format!("    case {e}: return \"{name}\";\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prelude_is_filled_in_completely() {
        let p = prelude();
        assert!(!p.replace("@GUEST_CODE@", "").contains('@'), "an unfilled placeholder");
        assert!(p.contains("#define CMD_DIGEST 0x20u") && p.contains("#define MB_ABORT_FLAG 12"), "{p}");
        assert!(p.contains("case 9: return \"EBADF\";"));
        assert!(p.contains("#define WORD_MEMORY_FAULT \"memory-fault(gpa=0x%llx size=0x%llx flags=0x%llx)\""), "{p}");
        assert!(p.contains("#define OBS_DIGEST \"digest 0x%08x\""), "{p}");
    }

    /// A group every order of which ends in one state keeps the program comparing (the
    /// stale huge mapping 9129633d568e fixed shows after it); one whose order decides stops it.
    #[test]
    fn groups_with_one_end_keep_comparing() {
        let program = |text: &str| crate::repro::parse(&format!("gmemfuzz-program v3\n{text}")).unwrap();
        let huge = program(
            "bind slot=8 flags=0x0 fd=g0 gpa=0x69600000 size=0x200000 offset=0x0\ngroup\n  x8 guest r1@0x69602018\n  \
             x2 set_attributes gpa=0x69603000 size=0x1fd000 attributes=PRIVATE\nend\n",
        );
        let c = emit(&huge, &Profile::sw_protected_7_2(), "").unwrap();
        assert!(c.contains("run_group(1, m, 2, 1 /* every order ends in one state */);"), "{c}");
        let punch = program(
            "create_gmem size=0x2000 flags=MMAP|INIT_SHARED\nmap g0\ngroup\n  x2 host_write g0 offset=0x0 width=8 value=0x1\n  \
             punch g0 offset=0x0 len=0x1000\nend\n",
        );
        let c = emit(&punch, &Profile::host_6_18(), "").unwrap();
        assert!(c.contains("run_group(2, m, 2, 0 /* the order decides what follows */);"), "{c}");
    }

    #[test]
    fn formats_render_like_rust() {
        // What the C's printf makes of the formats, for values where "%llx" and "{:#x}"
        // could differ (zero, all bits).
        use gmemfuzz_backends::AccessResult;
        let w: std::collections::HashMap<_, _> = words().into_iter().collect();
        assert_eq!(w["WORD_READ"].replace("%llx", "0"), AccessResult::Read(0).to_string());
        let fault = AccessResult::MemoryFault { gpa: u64::MAX, size: 0x1000, flags: 0 }.to_string();
        assert_eq!(
            w["WORD_MEMORY_FAULT"].replacen("%llx", "ffffffffffffffff", 1).replacen("%llx", "1000", 1).replacen("%llx", "0", 1),
            fault
        );
        assert_eq!(w["WORD_ERROR_NAMED"].replace("%s", "ENOTTY"), Outcome::Err(gmemfuzz_backends::Errno(libc::ENOTTY)).to_string());
    }
}
