//! A standalone C reproducer: one file, libc and the kernel's uapi headers only (with its
//! own definitions of what older headers lack), doing exactly what `KvmBackend` does for
//! each op and comparing what it sees with what the model predicted.
//!
//! After every op where the runner compares state (invalidating ops and `check`), it makes
//! the same probes the KVM backend answers (residency by mincore, page digests through the
//! host mapping, the slot's anonymous memory and the guest) and compares their answers with
//! the model's, where the model has one.

use std::fmt::Write as _;

use gmemfuzz_backends::kvm::guest;
use gmemfuzz_backends::model::{Model, MAX_RESIDENCY_PAGES};
use gmemfuzz_backends::op::{layout, AccessKind, FdArg, Op};
use gmemfuzz_backends::{Backend, Observation, Outcome, Probe, Profile};

use super::text::{op_line, print};
use crate::program::Program;

/// What the model predicts for one op: its outcome (`None` where it could not be computed)
/// and, where the runner compares state after it, the probes and their answers.
struct Expected {
    outcome: Option<Outcome>,
    probes: Vec<(Probe, Option<String>)>,
}

fn expectations(program: &Program, profile: &Profile) -> Vec<Expected> {
    let mut model = Model::new(profile.clone());
    program
        .ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            model.set_op_index(i);
            let outcome = model.apply(op).ok();
            let mut probes = Vec::new();
            let compare_state = matches!(op, Op::Check) || op.invalidates();
            if compare_state && outcome.as_ref().is_some_and(|o| !matches!(o, Outcome::Skipped(_))) {
                let list = model.probes();
                if let Ok(answers) = model.observe(&list) {
                    probes = list.into_iter().zip(answers.iter().map(|a| a.as_ref().map(observation_text))).collect();
                }
            }
            Expected { outcome, probes }
        })
        .collect()
}

/// An observation in the words the C program prints.
fn observation_text(o: &Observation) -> String {
    match o {
        Observation::Content(c) => format!("digest {:#010x}", c.digest()),
        Observation::Residency(r) => format!("resident [{}]", r.iter().map(|&b| if b { '1' } else { '0' }).collect::<String>()),
        Observation::GuestExit(e) => format!("guest exit: {e}"),
        Observation::Sigbus => "SIGBUS".into(),
        Observation::Absent => "absent".into(),
    }
}

fn opt_string(s: &Option<String>) -> String {
    s.as_deref().map_or("NULL /* either is fine */".into(), c_string)
}

/// The C statements making the state probes after op `i`, annotated.
fn probe_calls(i: usize, probes: &[(Probe, Option<String>)]) -> String {
    let mut s = String::new();
    let mut guest = Vec::new();
    for (probe, expected) in probes {
        let what = c_string(&format!("{probe:?}"));
        let call = match *probe {
            Probe::Residency { gmem } => format!("probe_residency({} /* {gmem} */, {MAX_RESIDENCY_PAGES} /* most pages */);", gmem.0),
            Probe::HostPage { gmem, page } => format!("probe_host_page({} /* {gmem} */, {page} /* page */);", gmem.0),
            Probe::AnonPage { slot, page } => format!("probe_anon_page({slot} /* slot */, {page} /* page */);"),
            Probe::GuestPage { gpa, sample } => {
                let sample = sample.iter().rev().fold(0u64, |v, &q| (v << 16) | q as u64);
                guest.push((gpa, what, opt_string(expected), sample));
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

fn c_string(s: &str) -> String {
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
    if let Some(op) = program.ops.iter().find(|op| matches!(op, Op::Guest { accesses } if accesses.len() > guest::MAX_COMMANDS)) {
        return Err(format!("a guest op with more accesses than one run can carry ({}): {}", guest::MAX_COMMANDS, op_line(op)));
    }
    let expected = expectations(program, profile);
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
        let call = op_call(op);
        let _ = writeln!(c, "    {call}");
        let _ = writeln!(c, "    report({i}, {}, {exp});", c_string(&line));
        c.push_str(&probe_calls(i, &expected[i].probes));
    }
    c.push_str("\n    printf(\"%s\\n\", failures ? \"DIVERGENCE REPRODUCED: the kernel differs from the model\" : \"all observations match the model\");\n");
    c.push_str("    return failures ? 1 : 0;\n}\n");
    Ok(c)
}

fn fd_kind(fd: FdArg) -> String {
    match fd {
        FdArg::Gmem(g) => format!("FD_GMEM, {} /* {g} */", g.0),
        FdArg::Invalid => "FD_INVALID, 0 /* guest_memfd = -1 */".into(),
        FdArg::NotGmem => "FD_NOT_GMEM, 0 /* guest_memfd = the VM fd */".into(),
    }
}

/// The C statement performing one op, arguments annotated.
fn op_call(op: &Op) -> String {
    match op {
        Op::CreateGmem { size, flags } => format!("do_create_gmem({size:#x}ULL /* size */, {flags:#x}ULL /* flags */);"),
        Op::Map { gmem } => format!("do_map({} /* {gmem} */);", gmem.0),
        Op::Bind { slot, flags, fd, gpa, size, offset } => format!(
            "do_bind({slot} /* slot */, {flags:#x} /* flags */, {} , {gpa:#x}ULL /* guest_phys_addr */, {size:#x}ULL /* memory_size */, {offset:#x}ULL /* guest_memfd_offset */);",
            fd_kind(*fd)
        ),
        Op::Unbind { slot } => format!("do_unbind({slot} /* slot */);"),
        Op::ModifySlot { slot, gpa, flags } => format!("do_modify_slot({slot} /* slot */, {gpa:#x}ULL /* new guest_phys_addr */, {flags:#x} /* new flags */);"),
        Op::SetAttributes { gpa, size, attributes } => {
            format!("do_set_attributes({gpa:#x}ULL /* address */, {size:#x}ULL /* size */, {attributes:#x}ULL /* attributes */);")
        }
        Op::Punch { gmem, offset, len } => {
            format!("do_fallocate({} /* {gmem} */, 0x3 /* FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE */, {offset:#x}ULL /* offset */, {len:#x}ULL /* len */);", gmem.0)
        }
        Op::Allocate { gmem, mode, offset, len } => {
            format!("do_fallocate({} /* {gmem} */, {:#x} /* mode */, {offset:#x}ULL /* offset */, {len:#x}ULL /* len */);", gmem.0, *mode as u32)
        }
        Op::CloseGmem { gmem } => format!("do_close_gmem({} /* {gmem} */);", gmem.0),
        Op::Unmap { gmem } => format!("do_unmap({} /* {gmem} */);", gmem.0),
        Op::DestroyVm => "do_destroy_vm();".into(),
        Op::Guest { accesses } => {
            let mut s = format!("{{\n        static const struct access a[{}] = {{\n", accesses.len().max(1));
            for a in accesses {
                let (write, value) = match a.kind {
                    AccessKind::Read => (0, 0),
                    AccessKind::Write(v) => (1, v),
                };
                let _ = writeln!(
                    s,
                    "            {{ {:#x}ULL /* gpa */, {} /* width */, {write} /* {} */, {value:#x}ULL /* value */ }},",
                    a.gpa,
                    a.width.bytes(),
                    if write == 1 { "store" } else { "load" }
                );
            }
            if accesses.is_empty() {
                s.push_str("            { 0, 0, 0, 0 } /* unused */\n");
            }
            let _ = write!(s, "        }};\n        do_guest(a, {});\n    }}", accesses.len());
            s
        }
        Op::HostRead { gmem, offset, width } => {
            format!("do_host_access({} /* {gmem} */, {offset:#x}ULL /* offset */, {} /* width */, 0 /* load */, 0);", gmem.0, width.bytes())
        }
        Op::HostWrite { gmem, offset, width, value } => format!(
            "do_host_access({} /* {gmem} */, {offset:#x}ULL /* offset */, {} /* width */, 1 /* store */, {value:#x}ULL /* value */);",
            gmem.0,
            width.bytes()
        ),
        Op::Check => "set_obs(\"ok\"); /* check: the state probes follow */".into(),
    }
}

/// Everything but the guest code and main().
fn prelude() -> String {
    PRELUDE_TEMPLATE
        .replace("@CODE_GPA@", &format!("{:#x}", layout::CODE_GPA))
        .replace("@CODE_SIZE@", &format!("{:#x}", layout::CODE_SIZE))
        .replace("@MAILBOX_GPA@", &format!("{:#x}", layout::MAILBOX_GPA))
        .replace("@MAILBOX_SIZE@", &format!("{:#x}", layout::MAILBOX_SIZE))
        .replace("@CMD_HEADER@", &guest::CMD_HEADER.to_string())
        .replace("@CMD_SIZE@", &guest::CMD_SIZE.to_string())
        .replace("@STACK_TOP@", &format!("{:#x}", guest::STACK_TOP))
        .replace("@MAX_MAPPED@", &format!("{:#x}", layout::MAX_MAPPED_BYTES))
}

const PRELUDE_TEMPLATE: &str = include_str!("prelude.c");
