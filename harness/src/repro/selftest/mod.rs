//! A KVM selftest from a program (`gmemfuzz selftest`): one C file for
//! `tools/testing/selftests/kvm/x86/`, written with the selftests' own library
//! (`kvm_util.h`, `ucall_common.h`) as a person would post it with a fix.
//!
//! Its expectations are the runner's events, exactly as the C reproducer's ([`super::c`]):
//! each op's outcome as the model predicts it. The test does each op with the library's
//! calls, and asserts what the model expects (a library call that asserts success where the
//! model expects success; the errno, the exit reason and its fields otherwise). Guest
//! accesses run in the library's guest: each guest op is a guest function doing its loads
//! and stores, entered afresh; an MMIO exit or a memory fault the model expects is asserted
//! on the host, as `x86/private_mem_kvm_exits_test.c` does.
//!
//! The library keeps its own memory (memslot 0) from GPA 0, so the program's GPAs move up by
//! `GPA_BASE` (4 GiB, which keeps every alignment a program can ask for up to 4 GiB); the
//! guest maps each page it touches at a GVA equal to its GPA (`virt_map`).
//!
//! A concurrent group runs on threads as the C reproducer runs it and asserts nothing
//! ([`group`]); ops after it are made and asserted where every order of the group ends in
//! one state (`Model::order_independent`), and refused after the first group that may end
//! otherwise.
//!
//! What it does not do yet: the state the runner compares after invalidating ops (page
//! contents, residency) is not checked, and programs with ops outside [`KINDS`], with ops
//! after a group whose orders may end in different states, or with a guest access the model
//! cannot predict are refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use gmemfuzz_backends::op::{
    AccessKind, FdArg, Op, OpKind, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEMORY_ATTRIBUTE_PRIVATE,
    KVM_MEMORY_EXIT_FLAG_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, MADVICE, PAGE_SIZE,
};
use gmemfuzz_backends::{AccessResult, Outcome, Profile};

use super::c::{c_string, expectations, groups_with_one_end};
use super::text::{op_line, print};
use crate::program::Program;
use library::{ANON_MEM, EXPECT_ERRNO, EXPECT_FAULT, EXPECT_MMIO, EXPECT_SYNC, GUEST_HELPERS, INCLUDES, PROTECTED_SHAPE};

mod group;
mod library;

/// The op kinds a selftest is made for. Not (yet): destroy_vm (the library owns the VM's
/// fds), mbind and get_mempolicy (libnuma's headers, which the selftests do not assume).
pub const KINDS: &[OpKind] = &[
    OpKind::CreateGmem,
    OpKind::Map,
    OpKind::Bind,
    OpKind::Unbind,
    OpKind::ModifySlot,
    OpKind::SetAttributes,
    OpKind::Punch,
    OpKind::Allocate,
    OpKind::CloseGmem,
    OpKind::Unmap,
    OpKind::Truncate,
    OpKind::Madvise,
    OpKind::PreFault,
    OpKind::Guest,
    OpKind::HostRead,
    OpKind::HostWrite,
    OpKind::Check,
    OpKind::Group,
];

/// Where the program came from, for the test's comments.
pub struct Origin<'a> {
    /// The file, as the header names it.
    pub file: &'a str,
    /// Each op's line in the file, where known (one per op).
    pub lines: Option<Vec<usize>>,
    /// The test's name, where the file's does not suit (`nightly`'s `program.txt`).
    pub name: Option<&'a str>,
}

/// The line of each op in a text program: the lines that are neither the version header,
/// nor comments, nor blank. `None` where the count is not the program's (a group, an
/// artifact that was not text).
pub fn op_lines(text: &str, ops: usize) -> Option<Vec<usize>> {
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim();
            !l.is_empty() && !l.starts_with('#') && !l.starts_with("gmemfuzz-program")
        })
        .map(|(i, _)| i + 1)
        .collect();
    (lines.len() == ops).then_some(lines)
}

/// A C identifier for the test from a file name: `stale_mmio_spte_on_private_gfn.txt` gives
/// `stale_mmio_spte_on_private_gfn`.
pub fn test_name(file: &str) -> String {
    let stem = std::path::Path::new(file).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut name: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert_str(0, "program_");
    }
    name
}

/// What the generator knows of a file while it writes ops: its size, and whether the
/// model expects it mapped.
#[derive(Clone, Copy, Default)]
struct File {
    size: u64,
    mapped: bool,
}

/// `value` as an OR of the uapi's names for its bits, the rest in hex.
fn flags(value: u64, names: &[(&str, u64)]) -> String {
    let mut parts = Vec::new();
    let mut rest = value;
    for &(name, bit) in names {
        if rest & bit != 0 {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 || parts.is_empty() {
        parts.push(format!("{rest:#x}"));
    }
    parts.join(" | ")
}

const GMEM_FLAGS: &[(&str, u64)] =
    &[("GUEST_MEMFD_FLAG_MMAP", GUEST_MEMFD_FLAG_MMAP), ("GUEST_MEMFD_FLAG_INIT_SHARED", GUEST_MEMFD_FLAG_INIT_SHARED)];
const SLOT_FLAGS: &[(&str, u64)] = &[
    ("KVM_MEM_LOG_DIRTY_PAGES", KVM_MEM_LOG_DIRTY_PAGES as u64),
    ("KVM_MEM_READONLY", KVM_MEM_READONLY as u64),
    ("KVM_MEM_GUEST_MEMFD", KVM_MEM_GUEST_MEMFD as u64),
];
const ATTRIBUTES: &[(&str, u64)] = &[("KVM_MEMORY_ATTRIBUTE_PRIVATE", KVM_MEMORY_ATTRIBUTE_PRIVATE)];
const EXIT_FLAGS: &[(&str, u64)] = &[("KVM_MEMORY_EXIT_FLAG_PRIVATE", KVM_MEMORY_EXIT_FLAG_PRIVATE)];

fn gpa(x: u64) -> String {
    format!("GPA({x:#x})")
}

fn c_type(bytes: u64) -> &'static str {
    match bytes {
        1 => "u8",
        2 => "u16",
        4 => "u32",
        _ => "u64",
    }
}

/// The C errno for an expected outcome: 0 for success, the errno's name (`EINVAL`) for an
/// error; `None` for an outcome that is neither.
fn errno_of(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Ok => Some("0".into()),
        Outcome::Err(e) => Some(e.name().map_or_else(|| e.0.to_string(), str::to_string)),
        _ => None,
    }
}

/// The C call of an op that returns 0, or -1 with errno: what a test asserts where the model
/// expects an error, and what a group's member does. `None` for the other ops.
fn errno_call(op: &Op, files: &[File]) -> Option<String> {
    Some(match op {
        Op::Unbind { slot } => format!("__vm_set_user_memory_region2(vm, {slot}, 0, 0, 0, NULL, 0, 0)"),
        Op::SetAttributes { gpa: at, size, attributes } => format!(
            // Parenthesized: __vm_ioctl() is a macro, and the initializer's commas would
            // split its argument.
            "__vm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES,\n\t\t       &((struct kvm_memory_attributes){{\n\t\t\t\t.address = {},\n\t\t\t\t.size = {size:#x},\n\t\t\t\t.attributes = {},\n\t\t       }}))",
            gpa(*at),
            flags(*attributes, ATTRIBUTES)
        ),
        Op::Punch { gmem, offset, len } => format!("fallocate(g{}, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, {offset:#x}, {len:#x})", gmem.0),
        Op::Allocate { gmem, mode, offset, len } => {
            let mode = match *mode {
                0 => "0".to_string(),
                1 => "FALLOC_FL_KEEP_SIZE".to_string(),
                m => format!("{:#x}", m as u32),
            };
            format!("fallocate(g{}, {mode}, {offset:#x}, {len:#x})", gmem.0)
        }
        Op::CloseGmem { gmem } => format!("close(g{})", gmem.0),
        Op::Unmap { gmem } => format!("munmap(g{0}_mem, {1:#x})", gmem.0, files.get(gmem.0 as usize)?.size),
        Op::Truncate { gmem, size } => format!("ftruncate(g{}, {size:#x})", gmem.0),
        Op::Madvise { gmem, offset, len, advice } => {
            let name = MADVICE.iter().find(|(_, v)| *v == u64::from(*advice)).map_or(format!("{advice}"), |(n, _)| format!("MADV_{n}"));
            format!("madvise(g{}_mem + {offset:#x}, {len:#x}, {name})", gmem.0)
        }
        _ => return None,
    })
}

/// A KVM_SET_USER_MEMORY_REGION2 call (a bind, or a modify_slot of a bound slot): the
/// library's asserting call where the model expects success, else the raw one with the
/// model's errno asserted by `expect`.
fn region_call(
    args: &[String],
    plain_ok: bool,
    body: &mut String,
    expect: &mut impl FnMut(String, &mut String) -> Result<(), String>,
) -> Result<(), String> {
    if plain_ok {
        let _ = writeln!(body, "{}", call("vm_set_user_memory_region2", args));
        return Ok(());
    }
    let r = call("r = __vm_set_user_memory_region2", args);
    expect(r.trim_start_matches("\tr = ").trim_end_matches(';').to_string(), body)
}

/// Refuses what this generator does not make: one line naming the op.
pub fn check_scope(program: &Program, vm_type: u64) -> Result<(), String> {
    if vm_type > 1 {
        return Err(format!("VM type {vm_type}: `gmemfuzz selftest` makes tests for VM types 0 and 1 (KVM_X86_SW_PROTECTED_VM) only"));
    }
    for (i, op) in program.ops.iter().enumerate() {
        let members: Vec<&Op> = match op {
            Op::Group(group) => group.members.iter().map(|m| &m.op).collect(),
            op => vec![op],
        };
        for op in members {
            if !KINDS.contains(&op.kind()) {
                return Err(format!(
                    "op #{i} is `{}`: `gmemfuzz selftest` makes tests of {} only",
                    op.kind().name(),
                    KINDS.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Refuses an op after a group whose orders may end in different states (what a race
/// leaves is then a set of states, which one test run cannot assert).
fn check_after_groups(program: &Program, profile: &Profile) -> Result<(), String> {
    let one_end = groups_with_one_end(program, profile);
    let Some(g) = program.ops.iter().enumerate().position(|(i, op)| matches!(op, Op::Group(_)) && !one_end[i]) else { return Ok(()) };
    match program.ops.iter().enumerate().skip(g + 1).find(|(_, op)| !matches!(op, Op::Check)) {
        Some((i, _)) => {
            Err(format!("op #{i} follows a concurrent group whose orders may end in different states (op #{g}): a selftest ends there"))
        }
        None => Ok(()),
    }
}

/// The C source of the selftest. `profile` decides the model's expectations.
pub fn emit(program: &Program, profile: &Profile, origin: &Origin<'_>) -> Result<String, String> {
    check_scope(program, profile.vm_type)?;
    check_after_groups(program, profile)?;
    let (expected, _end) = expectations(program, profile)?;
    let name = test_name(origin.name.unwrap_or(origin.file));
    let label = |i: usize| {
        let op = match &program.ops[i] {
            Op::Group(g) => format!("a group of {}", g.members.iter().map(|m| op_line(&m.op)).collect::<Vec<_>>().join(" | ")),
            op => op_line(op),
        };
        match &origin.lines {
            Some(lines) => format!("op #{i} (line {}): {op}", lines[i]),
            None => format!("op #{i}: {op}"),
        }
    };

    let mut guest_fns = String::new();
    let mut body = String::new();
    let mut files: Vec<File> = Vec::new();
    // Each bound slot's size, memory and file, for a later modify_slot (which the KVM
    // backend sends with them, the new GPA and flags, and offset 0).
    let mut slots: BTreeMap<u32, [String; 3]> = BTreeMap::new();
    let modified: BTreeSet<u32> =
        program.ops.iter().filter_map(|op| if let Op::ModifySlot { slot, .. } = op { Some(*slot) } else { None }).collect();
    let mut pages = BTreeSet::new();
    let (mut uses_anon, mut uses_val, mut uses_r) = (false, false, false);
    let mut needs_attributes = false;
    let (mut needs_pre_fault, mut has_group, mut vcpus, mut group_fns) = (false, false, 0u32, String::new());
    let mut gmem_flags_needed = 0u64;

    for (i, op) in program.ops.iter().enumerate() {
        let what = label(i);
        let outcome = expected[i].outcome.clone().ok_or_else(|| format!("{what}: the model gave no outcome (a model bug)"))?;
        let _ = writeln!(body, "\n{}", comment(&what, 1));
        if let Outcome::Skipped(reason) = &outcome {
            let _ = writeln!(body, "\t/* not sent: every backend skips it ({reason:?}) */");
            if let Op::CreateGmem { size, .. } = op {
                files.push(File { size: *size, ..File::default() });
            }
            continue;
        }
        if outcome.has_unknown() && !matches!(op, Op::Check) {
            return Err(format!("{what}: the model cannot predict its outcome; a selftest needs every op predicted"));
        }
        let model = c_string(&outcome.to_string());
        // The op's name in failure messages: whole where it fits on a line with its call, else
        // its number and line (the comment above the call has the whole op).
        let what_c = match what.split_once(": ") {
            Some((short, _)) if what.len() > 64 => c_string(short),
            _ => c_string(&what),
        };
        let errno = errno_of(&outcome);
        let plain_ok = matches!(outcome, Outcome::Ok);
        // A call that returns -1 and sets errno: the model's errno asserted.
        let mut expect = |call: String, body: &mut String| -> Result<(), String> {
            let err = errno.clone().ok_or_else(|| format!("{what}: the model expects {outcome}, not a result or an error"))?;
            uses_r = true;
            let _ = writeln!(body, "\tr = {call};\n{}", self::call("expect_errno", &[what_c.clone(), model.clone(), "r".into(), err]));
            Ok(())
        };
        match op {
            Op::CreateGmem { size, flags: f } => {
                let g = files.len();
                files.push(File { size: *size, mapped: false });
                let fl = flags(*f, GMEM_FLAGS);
                if plain_ok {
                    gmem_flags_needed |= f;
                    let _ = writeln!(body, "{}", call(&format!("g{g} = vm_create_guest_memfd"), &create_args(*size, &fl)));
                } else {
                    let _ = writeln!(body, "{}", call(&format!("g{g} = __vm_create_guest_memfd"), &create_args(*size, &fl)));
                    let err = errno.clone().unwrap_or_default();
                    let _ = writeln!(body, "{}", call("expect_errno", &[what_c.clone(), model.clone(), format!("g{g}"), err]));
                }
            }
            Op::Map { gmem } => {
                let g = gmem.0 as usize;
                let size = files[g].size;
                let _ = writeln!(body, "\tg{g}_mem = mmap(NULL, {size:#x}, PROT_READ | PROT_WRITE, MAP_SHARED, g{g}, 0);");
                uses_r = true;
                let err = errno.clone().unwrap_or_default();
                let _ = writeln!(body, "\tr = g{g}_mem == MAP_FAILED ? -1 : 0;");
                let _ = writeln!(body, "{}", call("expect_errno", &[what_c.clone(), model.clone(), "r".into(), err]));
                files[g].mapped = plain_ok;
            }
            Op::Bind { slot, flags: f, fd, gpa: at, size, offset } => {
                let gmem_slot = f & KVM_MEM_GUEST_MEMFD != 0;
                let fd_expr = match fd {
                    FdArg::Gmem(g) if gmem_slot => format!("g{}", g.0),
                    FdArg::NotGmem => "vm->fd /* not a guest_memfd */".into(),
                    _ => "-1".into(),
                };
                // The shared side, as the KVM backend gives it: the file's own mapping
                // where the slot fits in it, else fresh anonymous memory.
                let mapped = match fd {
                    FdArg::Gmem(g) if gmem_slot => files.get(g.0 as usize).filter(|file| {
                        file.mapped && offset % PAGE_SIZE == 0 && offset.checked_add(*size).is_some_and(|end| end <= file.size)
                    }),
                    _ => None,
                };
                let hva = match (mapped, fd) {
                    (Some(_), FdArg::Gmem(g)) => format!("g{}_mem + {offset:#x}", g.0),
                    // Memory a later modify_slot passes again: kept in a variable.
                    _ if modified.contains(slot) => {
                        uses_anon = true;
                        let _ = writeln!(body, "	void *op{i}_mem = anon_mem({:#x});", size.max(&PAGE_SIZE));
                        format!("op{i}_mem")
                    }
                    _ => {
                        uses_anon = true;
                        format!("anon_mem({:#x})", size.max(&PAGE_SIZE))
                    }
                };
                if plain_ok {
                    slots.insert(*slot, [format!("{size:#x}"), hva.clone(), fd_expr.clone()]);
                }
                let args = [
                    "vm".to_string(),
                    slot.to_string(),
                    flags(u64::from(*f), SLOT_FLAGS),
                    gpa(*at),
                    format!("{size:#x}"),
                    hva,
                    fd_expr,
                    format!("{offset:#x}"),
                ];
                region_call(&args, plain_ok, &mut body, &mut expect)?;
            }
            Op::Unbind { slot } if plain_ok => {
                slots.remove(slot);
                let _ = writeln!(body, "\tvm_set_user_memory_region2(vm, {slot}, 0, 0, 0, NULL, 0, 0);");
            }
            Op::ModifySlot { slot, gpa: at, flags: f } => {
                let [size, hva, fd] = slots.get(slot).cloned().ok_or_else(|| format!("{what}: a slot this test did not bind"))?;
                let args = ["vm".to_string(), slot.to_string(), flags(u64::from(*f), SLOT_FLAGS), gpa(*at), size, hva, fd, "0x0".into()];
                region_call(&args, plain_ok, &mut body, &mut expect)?;
            }
            Op::SetAttributes { gpa: at, size, attributes } => {
                let attrs = flags(*attributes, ATTRIBUTES);
                if plain_ok && (*attributes == 0 || *attributes == KVM_MEMORY_ATTRIBUTE_PRIVATE) {
                    needs_attributes |= *attributes != 0;
                    let _ = writeln!(body, "\tvm_set_memory_attributes(vm, {}, {size:#x}, {attrs});", gpa(*at));
                } else {
                    expect(errno_call(op, &files).expect("an ioctl"), &mut body)?;
                }
            }
            Op::Unmap { gmem } => {
                expect(errno_call(op, &files).expect("munmap"), &mut body)?;
                files[gmem.0 as usize].mapped &= !plain_ok;
            }
            Op::PreFault { gpa: at, size } => {
                needs_pre_fault = true;
                uses_r = true;
                let _ = writeln!(body, "\trange = (struct kvm_pre_fault_memory){{ .gpa = {}, .size = {size:#x} }};", gpa(*at));
                let _ = writeln!(body, "\tr = __vcpu_ioctl(vcpu, KVM_PRE_FAULT_MEMORY, &range);");
                match outcome {
                    Outcome::Value(left) => {
                        let _ = writeln!(
                            body,
                            "\tTEST_ASSERT(!r && range.size == {left:#x}, \"%s: the model expects %s (the size left unmapped), KVM: %d, size 0x%llx left\",\n\t\t    {what_c}, {model}, r ? -errno : r, range.size);"
                        );
                    }
                    _ => {
                        let err = errno.clone().ok_or_else(|| format!("{what}: the model expects {outcome} for a pre-fault"))?;
                        let _ = writeln!(body, "{}", call("expect_errno", &[what_c.clone(), model.clone(), "r".into(), err]));
                    }
                }
            }
            Op::Group(group) => {
                let Outcome::Group(outcomes) = &outcome else {
                    return Err(format!("{what}: the model expects {outcome} for a group"));
                };
                let g = group::emit(i, group, outcomes, &files, &mut vcpus)?;
                group_fns.push_str(&g.functions);
                body.push_str(&g.body);
                pages.extend(g.pages);
                has_group = true;
            }
            Op::Unbind { .. }
            | Op::Punch { .. }
            | Op::Allocate { .. }
            | Op::CloseGmem { .. }
            | Op::Truncate { .. }
            | Op::Madvise { .. } => expect(errno_call(op, &files).expect("a call that sets errno"), &mut body)?,
            Op::Check => {
                let _ = writeln!(body, "\t/* gmemfuzz compares the whole state here; this test checks op results only */");
            }
            Op::HostRead { gmem, offset, width } => {
                let at = format!("*({} *)(g{}_mem + {offset:#x})", c_type(width.bytes()), gmem.0);
                match outcome {
                    Outcome::Value(v) => {
                        uses_val = true;
                        let _ = writeln!(body, "\tval = READ_ONCE({at});");
                        let _ = writeln!(
                            body,
                            "\tTEST_ASSERT(val == {v:#x}, \"%s: the model expects %s, the host read 0x%lx\", {what_c}, {model}, val);"
                        );
                    }
                    Outcome::Sigbus => {
                        let _ = writeln!(body, "\tTEST_EXPECT_SIGBUS(READ_ONCE({at}));");
                    }
                    other => return Err(format!("{what}: the model expects {other}, not a value or SIGBUS")),
                }
            }
            Op::HostWrite { gmem, offset, width, value } => {
                let store = format!("WRITE_ONCE(*({} *)(g{}_mem + {offset:#x}), {value:#x})", c_type(width.bytes()), gmem.0);
                match outcome {
                    Outcome::Ok => {
                        let _ = writeln!(body, "\t{store};");
                    }
                    Outcome::Sigbus => {
                        let _ = writeln!(body, "\tTEST_EXPECT_SIGBUS({store});");
                    }
                    other => return Err(format!("{what}: the model expects {other}, not ok or SIGBUS")),
                }
            }
            Op::Guest { accesses } => {
                let Outcome::Guest(results) = &outcome else {
                    return Err(format!("{what}: the model expects {outcome} for a guest op"));
                };
                let mut guest = format!("{}\nstatic void guest_op{i}(void)\n{{\n", comment(&what, 0));
                let mut host = call("guest_start", &["vcpu".into(), format!("guest_op{i}"), what_c.clone(), model.clone()]) + "\n";
                let mut reads_value = false;
                let mut faulted = false;
                for (a, result) in accesses.iter().zip(results) {
                    let width = a.width.bytes();
                    for page in a.gpa / PAGE_SIZE..=(a.gpa + width - 1) / PAGE_SIZE {
                        pages.insert(page);
                    }
                    let at = format!("*({} *){}", c_type(width), gpa(a.gpa));
                    let (access, write) = match a.kind {
                        AccessKind::Read => (format!("READ_ONCE({at})"), false),
                        AccessKind::Write(v) => (format!("WRITE_ONCE({at}, {:#x})", a.width.truncate(v)), true),
                    };
                    match (result, a.kind) {
                        (AccessResult::Read(v), AccessKind::Read) => {
                            reads_value = true;
                            let _ = writeln!(guest, "\tval = {access};");
                            let _ = writeln!(
                                guest,
                                "\t__GUEST_ASSERT(val == {v:#x},\n\t\t       \"op #{i}: the model expects a load of {v:#x}, the guest read 0x%lx\", val);"
                            );
                        }
                        (AccessResult::Wrote, AccessKind::Write(_)) => {
                            let _ = writeln!(guest, "\t{access};");
                        }
                        (AccessResult::Mmio, _) => {
                            let _ = writeln!(guest, "\t{}{access};\t/* the model: KVM_EXIT_MMIO */", if write { "" } else { "(void)" });
                            let _ = writeln!(host, "\texpect_mmio(vcpu, {}, {width}, {write});", gpa(a.gpa));
                        }
                        (AccessResult::MemoryFault { gpa: fault, size, flags: f }, _) => {
                            let _ =
                                writeln!(guest, "\t{}{access};\t/* the model: KVM_EXIT_MEMORY_FAULT */", if write { "" } else { "(void)" });
                            let _ = writeln!(host, "\texpect_memory_fault(vcpu, {}, {size:#x}, {});", gpa(*fault), flags(*f, EXIT_FLAGS));
                            faulted = true;
                        }
                        (AccessResult::NotRun, _) => {
                            let _ = writeln!(guest, "\t/* not run: the memory fault ended the op */");
                        }
                        (AccessResult::Unknown, _) => {
                            return Err(format!("{what}: the model cannot predict one of its accesses; a selftest needs each predicted"))
                        }
                        (r, _) => {
                            return Err(format!("{what}: the model expects {r} for a {} access", if write { "store" } else { "load" }))
                        }
                    }
                }
                if reads_value {
                    guest.insert_str(guest.find("{\n").expect("a body") + 2, "\tu64 val;\n\n");
                }
                let _ = writeln!(guest, "\tGUEST_SYNC({i});\n}}\n");
                if !faulted {
                    let _ = writeln!(host, "\texpect_sync(vcpu, {i});");
                }
                guest_fns.push_str(&guest);
                body.push_str(&host);
            }
            _ => unreachable!("check_scope refuses {op:?}"),
        }
    }

    let mut c = String::new();
    let w = &mut c;
    let _ = writeln!(w, "// SPDX-License-Identifier: GPL-2.0-only\n/*");
    let intro = format!(
        "{name}: made by `gmemfuzz selftest` from {} (VM type {}), gmemfuzz's reference model against KVM op by op. \
         Each op below cites its line in the program; each assertion is what the model expects, for: {}.",
        origin.file,
        profile.vm_type,
        profile.summary()
    );
    for line in wrap(&intro, 88) {
        let _ = writeln!(w, " * {line}");
    }
    let _ = writeln!(w, " *\n * The program:");
    for line in print(program).lines().filter(|l| !l.starts_with("gmemfuzz-program")) {
        let _ = writeln!(w, " *   {line}");
    }
    let _ = writeln!(w, " *");
    for line in wrap(NOTES, 88) {
        let _ = writeln!(w, " * {line}");
    }
    let _ = writeln!(w, " */");
    c.push_str(INCLUDES);
    let has_guest = !guest_fns.is_empty();
    if has_guest {
        c.push_str(GUEST_HELPERS);
        for (helper, used) in [
            (EXPECT_MMIO, body.contains("expect_mmio(")),
            (EXPECT_FAULT, body.contains("expect_memory_fault(")),
            (EXPECT_SYNC, body.contains("expect_sync(")),
        ] {
            if used {
                c.push_str(helper);
            }
        }
    }
    // Where an op expects an error (a pre-fault's `r` is asserted in place).
    if body.contains("expect_errno(") || group_fns.contains("expect_errno(") {
        c.push_str(EXPECT_ERRNO);
    }
    if uses_anon {
        c.push_str(ANON_MEM);
    }
    if has_group {
        c.push_str(group::RUN_GROUP);
    }
    // A file no later op names needs no variable.
    for g in 0..files.len() {
        let var = format!("g{g}");
        if uses(&body, &var) + uses(&group_fns, &var) <= 1 {
            if let Some(Op::CreateGmem { size, flags: f }) = program.ops.iter().filter(|op| matches!(op, Op::CreateGmem { .. })).nth(g) {
                let args = create_args(*size, &flags(*f, GMEM_FLAGS));
                body = body.replace(&call(&format!("{var} = vm_create_guest_memfd"), &args), &call("vm_create_guest_memfd", &args));
            }
        }
    }
    let shared = shared_variables(program, &body, &group_fns, files.len());
    if has_group {
        // The members' functions name the VM and the files: they live at file scope.
        c.push('\n');
        for line in &shared {
            let _ = writeln!(c, "static {line}");
        }
    }
    c.push('\n');
    c.push_str(&guest_fns);
    c.push_str(&group_fns);

    let _ = writeln!(c, "static void test_{name}(void)\n{{");
    let _ = writeln!(c, "\tstruct kvm_vcpu *vcpu;");
    if !has_group {
        for line in &shared {
            let _ = writeln!(c, "\t{line}");
        }
    }
    if needs_pre_fault {
        let _ = writeln!(c, "\tstruct kvm_pre_fault_memory range;");
    }
    if uses_r {
        let _ = writeln!(c, "\tint r;");
    }
    if uses_val {
        let _ = writeln!(c, "\tu64 val;");
    }
    c.push('\n');
    if profile.vm_type == 1 {
        let _ = writeln!(c, "\tvm = vm_create_shape_with_one_vcpu(protected_vm_shape, &vcpu, NULL);");
    } else {
        let _ = writeln!(c, "\tvm = vm_create_with_one_vcpu(&vcpu, NULL);");
    }
    if has_guest {
        let _ = writeln!(c, "\tvcpu_regs_get(vcpu, &first_regs);");
    }
    if !pages.is_empty() {
        let _ = writeln!(c, "\n\t/* The pages the guest touches, at GVA == GPA (no memory needed behind them). */");
        for (first, count) in runs(&pages) {
            let _ = writeln!(c, "\tvirt_map(vm, {0}, {0}, {count});", gpa(first * PAGE_SIZE));
        }
    }
    c.push_str(&body);
    let _ = writeln!(c, "\n\tkvm_vm_free(vm);\n}}\n");

    let _ = writeln!(c, "int main(int argc, char *argv[])\n{{");
    if profile.vm_type == 1 {
        let _ = writeln!(c, "\tTEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));");
    }
    if !files.is_empty() {
        let _ = writeln!(c, "\tTEST_REQUIRE(kvm_has_cap(KVM_CAP_GUEST_MEMFD));");
    }
    if gmem_flags_needed != 0 {
        for flag in flags(gmem_flags_needed, GMEM_FLAGS).split(" | ") {
            let _ = writeln!(c, "\tTEST_REQUIRE(kvm_check_cap(KVM_CAP_GUEST_MEMFD_FLAGS) & {flag});");
        }
    }
    if needs_attributes {
        let _ = writeln!(c, "\tTEST_REQUIRE(kvm_check_cap(KVM_CAP_MEMORY_ATTRIBUTES) & KVM_MEMORY_ATTRIBUTE_PRIVATE);");
    }
    if needs_pre_fault {
        let _ = writeln!(c, "\tTEST_REQUIRE(kvm_has_cap(KVM_CAP_PRE_FAULT_MEMORY));");
    }
    if !c.ends_with("{\n") {
        c.push('\n');
    }
    if has_group {
        let _ = writeln!(c, "\tfor (iteration = 0; iteration < ITERATIONS; iteration++)\n\t\ttest_{name}();");
        let _ = writeln!(c, "\tpr_info(\"%d iterations\\n\", ITERATIONS);\n\treturn 0;\n}}");
    } else {
        let _ = writeln!(c, "\ttest_{name}();\n\treturn 0;\n}}");
    }
    let includes = if has_group { "#include <pthread.h>\n#include <string.h>" } else { "#include <string.h>" };
    c = c.replacen("#include <string.h>", includes, 1);
    c = c.replace("@SHAPE@", if profile.vm_type == 1 { PROTECTED_SHAPE } else { "" });
    Ok(c)
}

/// The declarations of the VM, the files that ops name after their creation, and the files'
/// mappings: local to the test, or at file scope where a group's members name them.
fn shared_variables(program: &Program, body: &str, group_fns: &str, files: usize) -> Vec<String> {
    let mut lines = vec!["struct kvm_vm *vm;".to_string()];
    let names: Vec<String> = (0..files).map(|g| format!("g{g}")).filter(|var| uses(body, var) + uses(group_fns, var) > 1).collect();
    if !names.is_empty() {
        lines.push(format!("int {};", names.join(", ")));
    }
    // A mapping no op makes (its file's create failed, so every map was skipped) needs none.
    let maps: BTreeSet<String> = program
        .ops
        .iter()
        .filter_map(|op| if let Op::Map { gmem } = op { Some(format!("g{}_mem", gmem.0)) } else { None })
        .filter(|var| uses(body, var) + uses(group_fns, var) > 0)
        .map(|var| format!("*{var}"))
        .collect();
    if !maps.is_empty() {
        lines.push(format!("u8 {};", maps.into_iter().collect::<Vec<_>>().join(", ")));
    }
    lines
}

const NOTES: &str = "The library's memory (memslot 0) starts at GPA 0, so the program's GPAs are moved up by \
GPA_BASE; the guest maps each page it touches at a GVA equal to its GPA. Each guest op is a guest function, entered \
afresh; the exits the model expects are asserted on the host. Page contents and residency, which gmemfuzz also \
compares after invalidating ops, are not checked here.";

/// `text` in lines of at most `width` characters (a longer word stands alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

/// A C comment at `tabs` tabs of indentation: one line where it fits in 100 columns, else
/// the kernel's multi-line style, wrapped.
fn comment(text: &str, tabs: usize) -> String {
    let indent = "\t".repeat(tabs);
    if tabs * 8 + text.len() + 6 <= 100 {
        return format!("{indent}/* {text} */");
    }
    let mut s = format!("{indent}/*\n");
    for line in wrap(text, 100 - tabs * 8 - 3) {
        let _ = writeln!(s, "{indent} * {line}");
    }
    s + &format!("{indent} */")
}

/// The arguments of `vm_create_guest_memfd()`.
fn create_args(size: u64, flags: &str) -> [String; 3] {
    ["vm".into(), format!("{size:#x}"), flags.into()]
}

/// A call statement at one tab of indentation, its arguments wrapped at 100 columns and
/// aligned with the opening parenthesis (the kernel's style).
fn call(function: &str, args: &[String]) -> String {
    let open = 8 + function.len() + 1;
    let pad = format!("{}{}", "\t".repeat(open / 8), " ".repeat(open % 8));
    let mut s = format!("\t{function}(");
    let mut col = open;
    for (k, arg) in args.iter().enumerate() {
        let piece = if k + 1 == args.len() { format!("{arg});") } else { format!("{arg},") };
        if k > 0 && col + 1 + piece.len() > 100 {
            s.push('\n');
            s.push_str(&pad);
            col = open;
        } else if k > 0 {
            s.push(' ');
            col += 1;
        }
        s.push_str(&piece);
        col += piece.len();
    }
    s
}

/// How often `ident` appears in `code` as a whole identifier, outside comments (which quote
/// the program's lines: `fd=g0` names no variable).
fn uses(code: &str, ident: &str) -> usize {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut count = 0;
    for (i, piece) in code.split("/*").enumerate() {
        // Every piece but the first begins inside a comment, which ends at its first `*/`.
        let code = if i == 0 { piece } else { piece.split_once("*/").map_or("", |(_, after)| after) };
        count += code
            .match_indices(ident)
            .filter(|(at, _)| !word(code[..*at].chars().next_back()) && !word(code[at + ident.len()..].chars().next()))
            .count();
    }
    count
}

/// Consecutive page numbers as (first, count) runs.
fn runs(pages: &BTreeSet<u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in pages {
        match out.last_mut() {
            Some((first, count)) if *first + *count == p => *count += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repro::parse;

    const STALE_MMIO: &str = include_str!("../../../../corpus/lane/stale_mmio_spte_on_private_gfn.txt");

    fn selftest(text: &str, vm_type: u64, file: &str) -> Result<String, String> {
        let program = parse(text).expect("a program");
        let lines = op_lines(text, program.ops.len());
        emit(&program, &Profile::assumed(vm_type), &Origin { file, lines, name: None })
    }

    fn assert_has(c: &str, wanted: &[&str]) {
        for want in wanted {
            assert!(c.contains(want), "no `{want}` in:\n{c}");
        }
    }

    #[test]
    fn the_stale_mmio_program_becomes_a_selftest_with_the_models_expectations() {
        let c = selftest(STALE_MMIO, 1, "corpus/lane/stale_mmio_spte_on_private_gfn.txt").unwrap();
        assert_has(
            &c,
            &[
            "#include \"kvm_util.h\"",
            "#include \"ucall_common.h\"",
            "static void test_stale_mmio_spte_on_private_gfn(void)",
            "vm = vm_create_shape_with_one_vcpu(protected_vm_shape, &vcpu, NULL);",
            "virt_map(vm, GPA(0x104000), GPA(0x104000), 1);",
            "/* op #0 (line 17): create_gmem size=0x1000 flags=0x0 */",
            "g0 = vm_create_guest_memfd(vm, 0x1000, 0x0);",
            // The first access has no memslot: an MMIO exit, then the guest goes on.
            "\tguest_start(vcpu, guest_op1, \"op #1 (line 18): guest r4@0x104000\", \"[mmio-exit]\");\n\texpect_mmio(vcpu, GPA(0x104000), 4, false);\n\texpect_sync(vcpu, 1);",
            "vm_set_user_memory_region2(vm, 2, KVM_MEM_GUEST_MEMFD, GPA(0x104000), 0x1000,",
            "vm_set_memory_attributes(vm, GPA(0x104000), 0x1000, KVM_MEMORY_ATTRIBUTE_PRIVATE);",
            // The private page reads 0: asserted in the guest, and the guest must finish.
            "__GUEST_ASSERT(val == 0x0,",
            "guest_start(vcpu, guest_op4, \"op #4 (line 21): guest r4@0x104000\", \"[read 0x0]\");\n\texpect_sync(vcpu, 4);",
            "TEST_REQUIRE(kvm_check_cap(KVM_CAP_VM_TYPES) & BIT(KVM_X86_SW_PROTECTED_VM));",
            "TEST_REQUIRE(kvm_has_cap(KVM_CAP_GUEST_MEMFD));",
            "TEST_REQUIRE(kvm_check_cap(KVM_CAP_MEMORY_ATTRIBUTES) & KVM_MEMORY_ATTRIBUTE_PRIVATE);",
            "\"%s: the model expects %s, KVM: %s\"",
            ],
        );
        // Only the helpers it uses (the selftests build with -Wall).
        assert!(!c.contains("expect_memory_fault(") && !c.contains("expect_errno("), "{c}");
        for line in c.lines().filter(|l| !l.contains('"') && !l.contains("/*")) {
            assert!(line.replace('\t', "        ").len() <= 100, "a long line: {line}");
        }
    }

    #[test]
    fn errors_faults_and_host_accesses_are_asserted_as_the_model_expects() {
        let text = "gmemfuzz-program v2\n\
                    create_gmem size=0x1000 flags=0x0\n\
                    bind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x104000 size=0x1000 offset=0\n\
                    set_attributes gpa=0x104000 size=0x1000 attributes=PRIVATE\n\
                    unbind slot=2\n\
                    guest r4@0x104000 w8@0x105000=0x7\n\
                    bind slot=7 flags=GUEST_MEMFD fd=g0 gpa=0x100000 size=0x1000 offset=0x7ffffffffffff000\n\
                    create_gmem size=0x2000 flags=MMAP\n\
                    map g1\n\
                    host_read g1 offset=0x8 width=4\n\
                    check\n";
        let c = selftest(text, 1, "mix.txt").unwrap();
        assert_has(
            &c,
            &[
                "expect_memory_fault(vcpu, GPA(0x104000), 0x1000, KVM_MEMORY_EXIT_FLAG_PRIVATE);",
                "/* not run: the memory fault ended the op */",
                "r = __vm_set_user_memory_region2(vm, 7, KVM_MEM_GUEST_MEMFD, GPA(0x100000), 0x1000,",
                "\"error EINVAL\", r, EINVAL);",
                "g1 = vm_create_guest_memfd(vm, 0x2000, GUEST_MEMFD_FLAG_MMAP);",
                "g1_mem = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, g1, 0);",
                "TEST_EXPECT_SIGBUS(READ_ONCE(*(u32 *)(g1_mem + 0x8)));",
                "/* gmemfuzz compares the whole state here; this test checks op results only */",
            ],
        );
        // After a memory fault the guest is not asked to finish the op.
        assert!(!c.contains("expect_sync(vcpu, 4)"), "{c}");
    }

    #[test]
    fn other_op_kinds_and_ops_after_a_group_are_refused_in_one_line() {
        let e = selftest("gmemfuzz-program v2\ncreate_gmem size=0x1000 flags=0x0\ndestroy_vm\n", 1, "d.txt").unwrap_err();
        assert!(e.contains("op #1 is `destroy_vm`") && !e.contains('\n'), "{e}");
        let race = "gmemfuzz-program v3\ncreate_gmem size=0x2000 flags=MMAP\nbind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x100000 size=0x2000 offset=0x0\n\
                    set_attributes gpa=0x100000 size=0x2000 attributes=PRIVATE\ngroup\n  x2 guest w8@0x100000=0x5\n  punch g0 offset=0x0 len=0x1000\nend\n";
        let e = selftest(&format!("{race}punch g0 offset=0 len=0x1000\n"), 1, "g.txt").unwrap_err();
        assert!(
            e.contains("op #4 follows a concurrent group whose orders may end in different states (op #3)") && !e.contains('\n'),
            "{e}"
        );
        assert!(selftest(&format!("{race}check\n"), 1, "g.txt").is_ok(), "a check after a group compares nothing here");
        // A read of an unchanged page racing the conversion of the rest of its 2 MiB ends in
        // one state in any order: the private GFN's memory fault after it is asserted.
        let huge = include_str!("../../../../docs/findings/hugepage-vs-attribute-change.txt");
        let c = selftest(&format!("{huge}guest r1@0x69603000\n"), 1, "h.txt").unwrap();
        assert!(c.contains("expect_memory_fault(vcpu, ") && c.contains("KVM_MEMORY_EXIT_FLAG_PRIVATE"), "{c}");
        assert!(check_scope(&parse("gmemfuzz-program v2\ncheck\n").unwrap(), 5).unwrap_err().contains("VM type 5"));
    }

    #[test]
    fn a_group_becomes_threads_released_together_and_asserts_nothing() {
        let group = include_str!("../../../../docs/findings/gmem-release-vs-memslot-delete.txt");
        let c = selftest(group, 1, "docs/findings/gmem-release-vs-memslot-delete.txt").unwrap();
        assert_has(
            &c,
            &[
                "#include <pthread.h>",
                "static struct kvm_vm *vm;\nstatic int g0;\n",
                "static int group2_member0(void)\n{\n\treturn close(g0) ? -errno : 0;\n}",
                "return __vm_set_user_memory_region2(vm, 9, 0, 0, 0, NULL, 0, 0) ? -errno : 0;",
                "{ .fn = group2_member0, .repeat = 1, .op = \"close_gmem g0\" },",
                "run_group(m, 2);",
                "pthread_barrier_wait(&group_barrier);",
                "for (iteration = 0; iteration < ITERATIONS; iteration++)\n\t\ttest_gmem_release_vs_memslot_delete();",
            ],
        );
        // The test's function keeps only the vCPU: the VM and the file are at file scope.
        assert!(!c.contains("\tstruct kvm_vm *vm;"), "{c}");
        // A guest member on a vCPU of its own, its pages mapped; a host access member.
        let text = "gmemfuzz-program v2\n\
                    create_gmem size=0x2000 flags=MMAP|INIT_SHARED\n\
                    map g0\n\
                    bind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x104000 size=0x2000 offset=0\n\
                    group\n  x3 guest w4@0x104000=0x1\n  punch g0 offset=0 len=0x1000\n  x2 host_read g0 offset=0x1000 width=8\nend\n";
        let c = selftest(text, 0, "gm.txt").unwrap();
        assert_has(
            &c,
            &[
                "static void group3_member0(void)\n{\n\tWRITE_ONCE(*(u32 *)GPA(0x104000), 0x1);\n\tGUEST_SYNC(3);\n}",
                "\t\tm[0].vcpu = vm_vcpu_add(vm, 1, group3_member0);\n\t\tvcpu_regs_get(m[0].vcpu, &m[0].regs);",
                "{ .guest = true, .repeat = 3, .op = \"guest w4@0x104000=0x1\" },",
                "virt_map(vm, GPA(0x104000), GPA(0x104000), 1);",
                "(void)READ_ONCE(*(u64 *)(g0_mem + 0x1000));\n\treturn 0;",
                "static u8 *g0_mem;",
            ],
        );
    }

    #[test]
    fn modify_slot_passes_the_bound_memory_again_with_the_new_gpa_and_flags() {
        let c = selftest(include_str!("../../../../corpus/lane/recover_huge_pages_private_plain_slot.txt"), 1, "r.txt").unwrap();
        assert_has(
            &c,
            &[
                "\tvoid *op1_mem = anon_mem(0x200000);",
                "vm_set_user_memory_region2(vm, 6, KVM_MEM_LOG_DIRTY_PAGES, GPA(0x4ea00000), 0x200000,\n\t\t\t\t   op1_mem, -1, 0x0);",
                "vm_set_user_memory_region2(vm, 6, 0x0, GPA(0x4ea00000), 0x200000, op1_mem, -1, 0x0);",
            ],
        );
        // A slot the program never bound: every backend skips the op, and so does the test.
        let unbound = "gmemfuzz-program v2\ncreate_gmem size=0x1000 flags=0\nmodify_slot slot=3 gpa=0x100000 flags=0x0\n";
        let c = selftest(unbound, 1, "u.txt").unwrap();
        assert_has(&c, &["/* not sent: every backend skips it (NoSuchSlot) */"]);
    }

    #[test]
    fn unmap_truncate_madvise_and_pre_fault_are_asserted_as_the_model_expects() {
        let text = "gmemfuzz-program v2\n\
                    create_gmem size=0x2000 flags=MMAP|INIT_SHARED\n\
                    map g0\n\
                    madvise g0 offset=0 len=0x1000 advice=REMOVE\n\
                    truncate g0 size=0x4000\n\
                    unmap g0\n\
                    bind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x104000 size=0x2000 offset=0\n\
                    pre_fault gpa=0x104000 size=0x1000\n";
        let c = selftest(text, 0, "m.txt").unwrap();
        assert_has(
            &c,
            &[
                "r = madvise(g0_mem + 0x0, 0x1000, MADV_REMOVE);",
                "r = ftruncate(g0, 0x4000);",
                "r = munmap(g0_mem, 0x2000);",
                "range = (struct kvm_pre_fault_memory){ .gpa = GPA(0x104000), .size = 0x1000 };",
                "r = __vcpu_ioctl(vcpu, KVM_PRE_FAULT_MEMORY, &range);",
                "TEST_REQUIRE(kvm_has_cap(KVM_CAP_PRE_FAULT_MEMORY));",
            ],
        );
        assert!(c.contains("TEST_ASSERT(!r && range.size == 0x0,") || c.contains("r, E"), "pre-fault asserted: {c}");
    }

    #[test]
    fn names_lines_and_wrapping() {
        assert_eq!(test_name("corpus/lane/stale_mmio_spte_on_private_gfn.txt"), "stale_mmio_spte_on_private_gfn");
        assert_eq!(test_name("docs/findings/gmem-release-vs-memslot-delete.txt"), "gmem_release_vs_memslot_delete");
        assert_eq!(test_name("1.txt"), "program_1");
        assert_eq!(op_lines("gmemfuzz-program v2\n# c\n\ncheck\n  check\n", 2), Some(vec![4, 5]));
        assert_eq!(op_lines("gmemfuzz-program v2\ncheck\n", 2), None);
        let args: Vec<String> = (0..12).map(|i| format!("argument_{i}")).collect();
        let s = call("f", &args);
        assert!(s.lines().count() > 1 && s.lines().all(|l| l.replace('\t', "        ").len() <= 100), "{s}");
        assert!(s.lines().nth(1).unwrap().starts_with("\t  argument_"), "aligned with `(`: {s}");
        assert_eq!(runs(&[3, 4, 5, 9].into_iter().collect()), vec![(3, 3), (9, 1)]);
    }
}
