//! The text format of a program: versioned, line-based, meant to be read and edited.
//!
//! ```text
//! gmemfuzz-program v1
//! # expect: clean
//! create_gmem size=0x4000 flags=MMAP|INIT_SHARED
//! map g0
//! bind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x100000 size=0x2000 offset=0
//! guest r8@0x100008 w4@0x101000=0xdeadbeef
//! host_write g0 offset=0x8 width=8 value=0x1
//! punch g0 offset=0 len=0x1000      # comments may end any line
//! check
//! ```
//!
//! The first line is the header `gmemfuzz-program v<N>`. Then one op per line: the op's
//! name, for ops on a file the file (`g<N>`: the file the N-th `create_gmem` op made,
//! counting from 0 and counting creates that failed too), then
//! `key=value` arguments in any order, each exactly once. `#` starts a comment; blank lines
//! are ignored. Numbers are hex (`0x…`) or decimal. Flag words are names joined with `|`
//! (`MMAP|INIT_SHARED`, `GUEST_MEMFD|READONLY`, `PRIVATE`, `KEEP_SIZE`) or raw numbers,
//! or both (`MMAP|0x100`); an unknown name is an error. Ops:
//!
//! | line | op |
//! |---|---|
//! | `create_gmem size= flags=` | KVM_CREATE_GUEST_MEMFD (flags: MMAP, INIT_SHARED) |
//! | `map gN` / `unmap gN` / `close_gmem gN` | mmap / munmap / close of the file |
//! | `bind slot= flags= fd= gpa= size= offset=` | KVM_SET_USER_MEMORY_REGION2; flags: LOG_DIRTY_PAGES, READONLY, GUEST_MEMFD; fd: `gN`, `invalid` (-1) or `not-gmem` (the VM fd) |
//! | `unbind slot=` | delete the slot |
//! | `modify_slot slot= gpa= flags=` | move / re-flag a slot |
//! | `set_attributes gpa= size= attributes=` | KVM_SET_MEMORY_ATTRIBUTES (PRIVATE) |
//! | `punch gN offset= len=` | fallocate(PUNCH_HOLE\|KEEP_SIZE) |
//! | `allocate gN mode= offset= len=` | fallocate(mode); mode: KEEP_SIZE, PUNCH_HOLE, COLLAPSE_RANGE, ZERO_RANGE, INSERT_RANGE, UNSHARE_RANGE, WRITE_ZEROES |
//! | `destroy_vm` | close the vCPU and VM fds |
//! | `guest r8@0x100008 w4@0x101000=0x1 …` | vCPU loads (`r<width>@<gpa>`) and stores (`w<width>@<gpa>=<value>`) |
//! | `host_read gN offset= width=` / `host_write gN offset= width= value=` | accesses through the file's mapping |
//! | `check` | compare all state |
//! | `group` … `end` | a concurrent group (v3): one member per line between them, `[x<N>] <op line>` (N repetitions, default 1) |
//!
//! A group's members run at the same time, each on its own thread (guest members each on
//! a vCPU of its own), released together; see `gmemfuzz_backends::group`:
//!
//! ```text
//! group
//!   x40 guest r8@0x100000
//!   punch g0 offset=0 len=0x1000
//! end
//! ```
//!
//! A comment line `# expect: clean`, `# expect: divergence <kind> at op <n>` (kind as
//! `stale-read`, `result-mismatch`, …) or `# expect: splat <kind>` (the kernel logged a
//! splat: `KASAN`, `lockdep`, `WARN`, … as `crate::splat` names them) records what running
//! the program showed; the regression test, `add-regression` and `run`'s findings write it.
//!
//! Two more optional comment lines record where a program ran (a fuzz target writes them
//! beside each crash; `minimize` and `add-regression` write them too):
//! `# vm-type: 1` (the KVM_CREATE_VM type; `replay` and the other commands use it when no
//! `--vm-type` is given, and refuse a `--vm-type` that contradicts it) and
//! `# profile: kernel … gmem_flags 0x0 …` (`Profile::summary` of the kernel it ran on, for
//! the reader). Files without them (all v1 files before these lines) load as before.
//!
//! A lane regression may also name the kernels its expectation pins, by major.minor:
//! `# kernels: 6.12 7.2`. The lane replays it only on kernels it names (a file without the
//! line pins none: it is replayed on every kernel).

use std::fmt::{self, Write as _};

use gmemfuzz_backends::group::{Group, Member};
use gmemfuzz_backends::op::{
    Access, AccessKind, FdArg, GmemId, Op, OpKind, Width, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP,
    KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY,
};

use crate::oracle::DivergenceKind;
use crate::program::Program;

pub const HEADER: &str = "gmemfuzz-program";
pub const VERSION: u32 = Program::VERSION;

type Names = &'static [(&'static str, u64)];
const GMEM_FLAGS: Names = &[("MMAP", GUEST_MEMFD_FLAG_MMAP), ("INIT_SHARED", GUEST_MEMFD_FLAG_INIT_SHARED)];
const SLOT_FLAGS: Names = &[
    ("LOG_DIRTY_PAGES", KVM_MEM_LOG_DIRTY_PAGES as u64),
    ("READONLY", KVM_MEM_READONLY as u64),
    ("GUEST_MEMFD", KVM_MEM_GUEST_MEMFD as u64),
];
const ATTRIBUTES: Names = &[("PRIVATE", KVM_MEMORY_ATTRIBUTE_PRIVATE)];
const FALLOC_MODES: Names = gmemfuzz_backends::abi::falloc::NAMES;
const MBIND_FLAGS: Names = gmemfuzz_backends::abi::mempolicy::MF_NAMES;

/// A mempolicy mode word: the mode by name (a value, not a bit) and its flags by name,
/// `BIND|STATIC_NODES`; what has no name in hex.
fn mode_text(mode: u32) -> String {
    use gmemfuzz_backends::abi::mempolicy::{MODE_FLAGS, MODE_FLAG_NAMES, MODE_NAMES};
    let base = (mode & !MODE_FLAGS) as u64;
    let name = MODE_NAMES.iter().find(|(_, v)| *v == base).map_or_else(|| num(base), |(n, _)| n.to_string());
    match (mode & MODE_FLAGS) as u64 {
        0 => name,
        flags => format!("{name}|{}", flags_text(flags, MODE_FLAG_NAMES)),
    }
}

/// The names a mode word is read with: the modes' and the flags' (`Line::flags` ORs the
/// parts, so `BIND|STATIC_NODES` reads back as written).
const MODE_WORD: Names = {
    use gmemfuzz_backends::abi::mempolicy::{MODE_FLAG_NAMES, MODE_NAMES};
    const N: usize = MODE_NAMES.len() + MODE_FLAG_NAMES.len();
    const ALL: [(&str, u64); N] = {
        let mut all = [("", 0); N];
        let mut i = 0;
        while i < N {
            all[i] = if i < MODE_NAMES.len() { MODE_NAMES[i] } else { MODE_FLAG_NAMES[i - MODE_NAMES.len()] };
            i += 1;
        }
        all
    };
    &ALL
};

/// What running a program is recorded to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    Clean,
    Divergence {
        kind: DivergenceKind,
        op: usize,
    },
    /// The kernel logs a splat of this kind (`crate::splat`) while the program runs.
    Splat {
        kind: &'static str,
    },
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Clean => f.write_str("clean"),
            Expectation::Divergence { kind, op } => write!(f, "divergence {} at op {op}", kind.slug()),
            Expectation::Splat { kind } => write!(f, "splat {kind}"),
        }
    }
}

impl Expectation {
    fn parse(s: &str) -> Option<Expectation> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["clean"] => Some(Expectation::Clean),
            ["divergence", kind, "at", "op", n] => {
                let kind: DivergenceKind = kind.parse().ok()?;
                Some(Expectation::Divergence { kind, op: n.parse().ok()? })
            }
            ["splat", kind @ ..] => Some(Expectation::Splat { kind: crate::splat::kind_named(&kind.join(" "))? }),
            _ => None,
        }
    }
}

/// A parse failure: where (1-based line and column) and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn flags_text(value: u64, names: Names) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut rest = value;
    for &(name, bit) in names {
        if rest & bit == bit && bit != 0 {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 || parts.is_empty() {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("|")
}

fn num(v: u64) -> String {
    format!("{v:#x}")
}

fn fd_text(fd: FdArg) -> String {
    match fd {
        FdArg::Gmem(g) => g.to_string(),
        FdArg::Invalid => "invalid".into(),
        FdArg::NotGmem => "not-gmem".into(),
    }
}

/// The `key=value` arguments of each op kind, in the order they are printed: the one table
/// `op_line` and `parse_op` both read. (Op names are `OpKind`'s; the file operand `gN` and a
/// guest op's accesses are positional.)
fn keys(kind: OpKind) -> &'static [&'static str] {
    match kind {
        OpKind::CreateGmem => &["size", "flags"],
        OpKind::Bind => &["slot", "flags", "fd", "gpa", "size", "offset"],
        OpKind::Unbind => &["slot"],
        OpKind::ModifySlot => &["slot", "gpa", "flags"],
        OpKind::SetAttributes => &["gpa", "size", "attributes"],
        OpKind::Punch => &["offset", "len"],
        OpKind::Allocate => &["mode", "offset", "len"],
        OpKind::HostRead => &["offset", "width"],
        OpKind::HostWrite => &["offset", "width", "value"],
        OpKind::Truncate => &["size"],
        OpKind::Mbind => &["offset", "len", "mode", "nodes", "flags"],
        OpKind::GetMempolicy => &["offset"],
        OpKind::Map | OpKind::CloseGmem | OpKind::Unmap | OpKind::DestroyVm | OpKind::Check | OpKind::Guest | OpKind::Group => &[],
    }
}

/// The line that opens a group, and the one that closes it; each member line between them
/// is `[x<repeat>] <op line>`.
const GROUP_OPEN: &str = "group";
const GROUP_CLOSE: &str = "end";

/// A group as its lines (no final newline): `group`, one indented line per member, `end`.
fn group_lines(group: &Group) -> String {
    let mut s = GROUP_OPEN.to_string();
    for m in &group.members {
        s.push_str("\n  ");
        if m.repeat != 1 {
            write!(s, "x{} ", m.repeat).expect("writing to a String");
        }
        s.push_str(&op_line(&m.op));
    }
    s.push('\n');
    s.push_str(GROUP_CLOSE);
    s
}

/// One op as its text line (no newline); a group as its lines.
pub fn op_line(op: &Op) -> String {
    if let Op::Group(group) = op {
        return group_lines(group);
    }
    let kind = op.kind();
    let values: Vec<String> = match *op {
        Op::CreateGmem { size, flags } => vec![num(size), flags_text(flags, GMEM_FLAGS)],
        Op::Map { .. } | Op::CloseGmem { .. } | Op::Unmap { .. } | Op::DestroyVm | Op::Check | Op::Guest { .. } | Op::Group(_) => vec![],
        Op::Bind { slot, flags, fd, gpa, size, offset } => {
            vec![slot.to_string(), flags_text(flags as u64, SLOT_FLAGS), fd_text(fd), num(gpa), num(size), num(offset)]
        }
        Op::Unbind { slot } => vec![slot.to_string()],
        Op::ModifySlot { slot, gpa, flags } => vec![slot.to_string(), num(gpa), flags_text(flags as u64, SLOT_FLAGS)],
        Op::SetAttributes { gpa, size, attributes } => vec![num(gpa), num(size), flags_text(attributes, ATTRIBUTES)],
        Op::Punch { offset, len, .. } => vec![num(offset), num(len)],
        Op::Truncate { size, .. } => vec![num(size)],
        Op::Mbind { offset, len, mode, nodes, flags, .. } => {
            vec![num(offset), num(len), mode_text(mode), num(nodes), flags_text(flags as u64, MBIND_FLAGS)]
        }
        Op::GetMempolicy { offset, .. } => vec![num(offset)],
        Op::Allocate { mode, offset, len, .. } => vec![flags_text(mode as u32 as u64, FALLOC_MODES), num(offset), num(len)],
        Op::HostRead { offset, width, .. } => vec![num(offset), width.bytes().to_string()],
        Op::HostWrite { offset, width, value, .. } => vec![num(offset), width.bytes().to_string(), num(value)],
    };
    let mut s = kind.name().to_string();
    if let Some(gmem) = op.gmem().filter(|_| !matches!(op, Op::Bind { .. })) {
        write!(s, " {gmem}").expect("writing to a String");
    }
    debug_assert_eq!(values.len(), keys(kind).len(), "{kind:?}");
    for (key, value) in keys(kind).iter().zip(&values) {
        write!(s, " {key}={value}").expect("writing to a String");
    }
    if let Op::Guest { ref accesses } = *op {
        for a in accesses {
            match a.kind {
                AccessKind::Read => write!(s, " r{}@{}", a.width.bytes(), num(a.gpa)),
                AccessKind::Write(v) => write!(s, " w{}@{}={}", a.width.bytes(), num(a.gpa), num(v)),
            }
            .expect("writing to a String");
        }
    }
    s
}

/// The program as text, with an expectation line if one is given.
pub fn print_with(program: &Program, expect: Option<Expectation>) -> String {
    print_document(&Document { expect, ..Document::new(program.clone()) }, &[])
}

/// A document as text: header, metadata lines, then `notes` as comment lines, then the ops.
pub fn print_document(doc: &Document, notes: &[&str]) -> String {
    let mut s = format!("{HEADER} v{VERSION}\n");
    if let Some(v) = doc.vm_type {
        writeln!(s, "# {VM_TYPE_KEY} {v}").expect("writing to a String");
    }
    if let Some(p) = &doc.profile {
        writeln!(s, "# {PROFILE_KEY} {}", one_line(p)).expect("writing to a String");
    }
    if !doc.kernels.is_empty() {
        writeln!(s, "# {KERNELS_KEY} {}", doc.kernels.join(" ")).expect("writing to a String");
    }
    if let Some(e) = doc.expect {
        writeln!(s, "# expect: {e}").expect("writing to a String");
    }
    for note in notes {
        writeln!(s, "# {}", one_line(note)).expect("writing to a String");
    }
    for op in &doc.program.ops {
        s.push_str(&op_line(op));
        s.push('\n');
    }
    s
}

/// A value for a comment line: one line, whatever it held.
fn one_line(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

/// Whether `bytes` are (the start of) a text program rather than fuzzer bytes: they start
/// with the header (a file cut short inside the header still counts, from 8 bytes on).
pub fn looks_like_text(bytes: &[u8]) -> bool {
    let head = HEADER.as_bytes();
    bytes.starts_with(head) || (bytes.len() >= 8 && head.starts_with(bytes))
}

pub fn print(program: &Program) -> String {
    print_with(program, None)
}

/// A parsed file: the program and what the file records about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub program: Program,
    pub expect: Option<Expectation>,
    /// The VM type the program ran on (`# vm-type:`), if recorded.
    pub vm_type: Option<u64>,
    /// The summary of the profile it ran on (`# profile:`), if recorded.
    pub profile: Option<String>,
    /// The kernels (major.minor, `# kernels:`) whose behaviour `expect` pins; empty: any.
    pub kernels: Vec<String>,
}

impl Document {
    /// A document that records nothing but the program.
    pub fn new(program: Program) -> Document {
        Document { program, expect: None, vm_type: None, profile: None, kernels: Vec::new() }
    }

    /// Whether this file's expectation holds for a kernel of this version (`7.2.13 …`).
    pub fn pins_kernel(&self, version: &str) -> bool {
        self.kernels.is_empty() || self.kernels.iter().any(|k| same_series(k, version))
    }
}

/// Whether `version` (`7.2.13`, `7.2.0-rc1+`) is of the series `series` (`7.2`).
pub fn same_series(series: &str, version: &str) -> bool {
    version.strip_prefix(series).is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
}

const VM_TYPE_KEY: &str = "vm-type:";
const PROFILE_KEY: &str = "profile:";
const KERNELS_KEY: &str = "kernels:";

pub fn parse(text: &str) -> Result<Program, ParseError> {
    parse_document(text).map(|d| d.program)
}

pub fn parse_document(text: &str) -> Result<Document, ParseError> {
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().ok_or_else(|| err(1, 1, format!("empty file: expected the header `{HEADER} v{VERSION}`")))?;
    let version = parse_header(first.trim_end())?;
    let mut doc = Document::new(Program::default());
    // A group being read: the line it opened on, and its members so far.
    let mut open: Option<(usize, Group)> = None;
    for (i, raw) in lines {
        let n = i + 1;
        let (code, comment) = match raw.find('#') {
            Some(at) => (&raw[..at], Some((at, &raw[at + 1..]))),
            None => (raw, None),
        };
        if let Some((at, c)) = comment {
            let c = c.trim_start();
            if let Some(rest) = c.strip_prefix("expect:") {
                let e = Expectation::parse(rest).ok_or_else(|| {
                    err(n, at + 1, "expected `# expect: clean`, `# expect: divergence <kind> at op <n>` or `# expect: splat <kind>`".into())
                })?;
                doc.expect = Some(e);
            } else if let Some(rest) = c.strip_prefix(VM_TYPE_KEY) {
                let v = parse_number(rest.trim()).ok_or_else(|| err(n, at + 1, format!("expected `# {VM_TYPE_KEY} <number>`")))?;
                if doc.vm_type.is_some_and(|old| old != v) {
                    return Err(err(n, at + 1, format!("a second, different `# {VM_TYPE_KEY}` line")));
                }
                doc.vm_type = Some(v);
            } else if let Some(rest) = c.strip_prefix(PROFILE_KEY) {
                doc.profile = Some(rest.trim().to_string());
            } else if let Some(rest) = c.strip_prefix(KERNELS_KEY) {
                for k in rest.split_whitespace() {
                    if !k.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit())) {
                        return Err(err(n, at + 1, format!("`# {KERNELS_KEY}` takes kernel series like `6.12 7.2`, found `{k}`")));
                    }
                    doc.kernels.push(k.to_string());
                }
            }
        }
        let trimmed = code.trim();
        if trimmed.is_empty() {
            continue;
        }
        match (&mut open, trimmed) {
            (None, GROUP_OPEN) => open = Some((n, Group::default())),
            (Some(_), GROUP_OPEN) => return Err(err(n, 1, "a group inside a group".into())),
            (Some((start, _)), GROUP_CLOSE) => {
                let start = *start;
                let (_, group) = open.take().expect("matched Some");
                group.check().map_err(|why| err(start, 1, format!("this group cannot run: {why}")))?;
                doc.program.ops.push(Op::Group(group));
            }
            (None, GROUP_CLOSE) => return Err(err(n, 1, format!("`{GROUP_CLOSE}` without a `{GROUP_OPEN}`"))),
            (Some((_, group)), _) => group.members.push(parse_member(n, code)?),
            (None, _) => doc.program.ops.push(parse_op(n, code)?),
        }
    }
    if let Some((start, _)) = open {
        return Err(err(start, 1, format!("this group has no `{GROUP_CLOSE}`")));
    }
    if version == 1 {
        doc.program = super::v1::upgrade(&doc.program, doc.vm_type);
    }
    Ok(doc)
}

fn err(line: usize, column: usize, message: String) -> ParseError {
    ParseError { line, column, message }
}

/// The format version the header names.
fn parse_header(line: &str) -> Result<u32, ParseError> {
    let expected = || err(1, 1, format!("expected the header `{HEADER} v{VERSION}`, found `{line}`"));
    let rest = line.strip_prefix(HEADER).ok_or_else(expected)?;
    let v = rest.trim().strip_prefix('v').and_then(|v| v.parse::<u32>().ok()).ok_or_else(expected)?;
    if v > VERSION {
        return Err(err(1, HEADER.len() + 2, format!("program format v{v} is newer than this gmemfuzz (v{VERSION})")));
    }
    if v == 0 {
        return Err(expected());
    }
    Ok(v)
}

/// A word of a line and its 1-based column.
#[derive(Clone, Copy)]
struct Word<'a> {
    text: &'a str,
    column: usize,
}

fn words(line: &str) -> Vec<Word<'_>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices().chain(std::iter::once((line.len(), ' '))) {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push(Word { text: &line[s..i], column: s + 1 });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

struct Line<'a> {
    n: usize,
    end: usize,
    name: Word<'a>,
    rest: Vec<Word<'a>>,
}

impl<'a> Line<'a> {
    fn err<T>(&self, column: usize, message: String) -> Result<T, ParseError> {
        Err(err(self.n, column, message))
    }

    /// The `gN` operand right after the op name.
    fn gmem(&mut self) -> Result<GmemId, ParseError> {
        if self.rest.is_empty() {
            return self.err(self.end, format!("`{}` expected a guest_memfd `g<N>`", self.name.text));
        }
        let w = self.rest.remove(0);
        parse_gmem(w.text).ok_or_else(|| err(self.n, w.column, format!("expected a guest_memfd `g<N>` (N < 256), found `{}`", w.text)))
    }

    /// The `key=value` arguments, exactly `keys`, in any order.
    fn args(&self, keys: &[&str]) -> Result<Vec<Word<'a>>, ParseError> {
        let mut found: Vec<Option<Word>> = vec![None; keys.len()];
        for w in &self.rest {
            let Some((k, v)) = w.text.split_once('=') else {
                return self.err(w.column, format!("expected `key=value` (one of {}), found `{}`", keys.join(", "), w.text));
            };
            let Some(i) = keys.iter().position(|&key| key == k) else {
                return self.err(w.column, format!("`{}` takes no argument `{k}`; expected {}", self.name.text, keys.join(", ")));
            };
            if found[i].is_some() {
                return self.err(w.column, format!("argument `{k}` given twice"));
            }
            found[i] = Some(Word { text: v, column: w.column + k.len() + 1 });
        }
        found
            .into_iter()
            .zip(keys)
            .map(|(f, k)| f.ok_or_else(|| err(self.n, self.end, format!("`{}` is missing argument `{k}=`", self.name.text))))
            .collect()
    }

    fn number(&self, w: Word) -> Result<u64, ParseError> {
        parse_number(w.text).ok_or_else(|| err(self.n, w.column, format!("expected a number (hex 0x… or decimal), found `{}`", w.text)))
    }

    fn number32(&self, w: Word) -> Result<u32, ParseError> {
        let v = self.number(w)?;
        u32::try_from(v).or_else(|_| self.err(w.column, format!("expected a 32-bit number, found `{}`", w.text)))
    }

    fn flags(&self, w: Word, names: Names) -> Result<u64, ParseError> {
        let mut v = 0;
        let mut column = w.column;
        for part in w.text.split('|') {
            v |= match names.iter().find(|(n, _)| *n == part) {
                Some(&(_, bit)) => bit,
                None => parse_number(part).ok_or_else(|| {
                    let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                    err(self.n, column, format!("unknown flag `{part}`: expected one of {} or a number", known.join(", ")))
                })?,
            };
            column += part.len() + 1;
        }
        Ok(v)
    }

    fn flags32(&self, w: Word, names: Names) -> Result<u32, ParseError> {
        let v = self.flags(w, names)?;
        u32::try_from(v).or_else(|_| self.err(w.column, format!("expected a 32-bit flag word, found `{}`", w.text)))
    }

    fn width(&self, w: Word) -> Result<Width, ParseError> {
        parse_number(w.text)
            .and_then(Width::from_bytes)
            .ok_or_else(|| err(self.n, w.column, format!("expected a width of 1, 2, 4 or 8, found `{}`", w.text)))
    }

    fn no_operands(&self) -> Result<(), ParseError> {
        match self.rest.first() {
            Some(w) => self.err(w.column, format!("`{}` takes no arguments, found `{}`", self.name.text, w.text)),
            None => Ok(()),
        }
    }
}

fn parse_gmem(s: &str) -> Option<GmemId> {
    let n = s.strip_prefix('g')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().map(GmemId)
}

pub fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        None => None,
    }
}

fn parse_op(n: usize, code: &str) -> Result<Op, ParseError> {
    let mut all = words(code);
    let name = all.remove(0);
    let end = code.trim_end().len() + 1;
    let mut l = Line { n, end, name, rest: all };
    let Ok(kind) = name.text.parse::<OpKind>() else {
        return l.err(name.column, format!("unknown op `{}`: expected one of {}", name.text, OpKind::names().join(", ")));
    };
    let gmem = match kind {
        OpKind::Map
        | OpKind::Unmap
        | OpKind::CloseGmem
        | OpKind::Truncate
        | OpKind::Mbind
        | OpKind::GetMempolicy
        | OpKind::Punch
        | OpKind::Allocate
        | OpKind::HostRead
        | OpKind::HostWrite => Some(l.gmem()?),
        _ => None,
    };
    let gmem = || gmem.expect("parsed above for this kind");
    if kind == OpKind::Guest {
        return Ok(Op::Guest { accesses: l.rest.iter().map(|w| parse_access(n, *w)).collect::<Result<_, _>>()? });
    }
    let a = if keys(kind).is_empty() {
        l.no_operands()?;
        Vec::new()
    } else {
        l.args(keys(kind))?
    };
    let op = match kind {
        OpKind::CreateGmem => Op::CreateGmem { size: l.number(a[0])?, flags: l.flags(a[1], GMEM_FLAGS)? },
        OpKind::Map => Op::Map { gmem: gmem() },
        OpKind::Unmap => Op::Unmap { gmem: gmem() },
        OpKind::CloseGmem => Op::CloseGmem { gmem: gmem() },
        OpKind::Truncate => Op::Truncate { gmem: gmem(), size: l.number(a[0])? },
        OpKind::Mbind => Op::Mbind {
            gmem: gmem(),
            offset: l.number(a[0])?,
            len: l.number(a[1])?,
            mode: l.flags32(a[2], MODE_WORD)?,
            nodes: l.number(a[3])?,
            flags: l.flags32(a[4], MBIND_FLAGS)?,
        },
        OpKind::GetMempolicy => Op::GetMempolicy { gmem: gmem(), offset: l.number(a[0])? },
        OpKind::Bind => {
            let fd = match a[2].text {
                "invalid" => FdArg::Invalid,
                "not-gmem" => FdArg::NotGmem,
                t => FdArg::Gmem(
                    parse_gmem(t).ok_or_else(|| err(n, a[2].column, format!("expected `g<N>`, `invalid` or `not-gmem`, found `{t}`")))?,
                ),
            };
            Op::Bind {
                slot: l.number32(a[0])?,
                flags: l.flags32(a[1], SLOT_FLAGS)?,
                fd,
                gpa: l.number(a[3])?,
                size: l.number(a[4])?,
                offset: l.number(a[5])?,
            }
        }
        OpKind::Unbind => Op::Unbind { slot: l.number32(a[0])? },
        OpKind::ModifySlot => Op::ModifySlot { slot: l.number32(a[0])?, gpa: l.number(a[1])?, flags: l.flags32(a[2], SLOT_FLAGS)? },
        OpKind::SetAttributes => Op::SetAttributes { gpa: l.number(a[0])?, size: l.number(a[1])?, attributes: l.flags(a[2], ATTRIBUTES)? },
        OpKind::Punch => Op::Punch { gmem: gmem(), offset: l.number(a[0])?, len: l.number(a[1])? },
        OpKind::Allocate => {
            let mode = l.flags32(a[0], FALLOC_MODES)? as i32;
            Op::Allocate { gmem: gmem(), mode, offset: l.number(a[1])?, len: l.number(a[2])? }
        }
        OpKind::DestroyVm => Op::DestroyVm,
        OpKind::Check => Op::Check,
        OpKind::HostRead => Op::HostRead { gmem: gmem(), offset: l.number(a[0])?, width: l.width(a[1])? },
        OpKind::HostWrite => Op::HostWrite { gmem: gmem(), offset: l.number(a[0])?, width: l.width(a[1])?, value: l.number(a[2])? },
        OpKind::Guest => unreachable!("returned above"),
        OpKind::Group => {
            return l.err(name.column, format!("a group is written `{GROUP_OPEN}`, its members on the lines below, then `{GROUP_CLOSE}`"))
        }
    };
    debug_assert_eq!(op.kind(), kind);
    Ok(op)
}

/// A member line of a group: `[x<repeat>] <op line>`.
fn parse_member(n: usize, code: &str) -> Result<Member, ParseError> {
    let start = code.len() - code.trim_start().len();
    let rest = &code[start..];
    let (repeat, op_code, column) = match rest.split_once(char::is_whitespace) {
        Some((first, after)) if first.starts_with('x') && first.len() > 1 && first[1..].bytes().all(|b| b.is_ascii_digit()) => {
            let repeat =
                first[1..].parse::<u8>().map_err(|_| err(n, start + 1, format!("a repeat `x<N>` takes N up to 255, found `{first}`")))?;
            (repeat, after, start + first.len() + 1)
        }
        _ => (1, rest, start),
    };
    // Columns in errors count from the line's start: pad the op's code back to where it was.
    let op = parse_op(n, &format!("{:column$}{op_code}", ""))?;
    Ok(Member { op, repeat })
}

/// `r8@0x100008` or `w4@0x101000=0xdeadbeef`.
fn parse_access(n: usize, w: Word) -> Result<Access, ParseError> {
    let bad = || err(n, w.column, format!("expected a guest access `r<width>@<gpa>` or `w<width>@<gpa>=<value>`, found `{}`", w.text));
    let (rw, rest) = w.text.split_at_checked(1).ok_or_else(bad)?;
    let (width, rest) = rest.split_once('@').ok_or_else(bad)?;
    let width = parse_number(width).and_then(Width::from_bytes).ok_or_else(bad)?;
    let (gpa, kind) = match (rw, rest.split_once('=')) {
        ("r", None) => (rest, AccessKind::Read),
        ("w", Some((gpa, v))) => (gpa, AccessKind::Write(parse_number(v).ok_or_else(bad)?)),
        _ => return Err(bad()),
    };
    Ok(Access { gpa: parse_number(gpa).ok_or_else(bad)?, width, kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::Unstructured;
    use rand::{RngCore, SeedableRng};

    #[test]
    fn round_trips_generated_programs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut bytes = vec![0u8; 40 * 64];
        for i in 0..500 {
            rng.fill_bytes(&mut bytes);
            let p = Program::generate(&mut Unstructured::new(&bytes), 1 + i % 40).expect("enough bytes");
            let text = print(&p);
            let back = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            assert_eq!(back, p, "{text}");
            assert_eq!(print(&back), text);
        }
    }

    #[test]
    fn reads_the_documented_syntax() {
        let text = "gmemfuzz-program v1\n\
            # a comment\n\
            \n\
            create_gmem size=0x4000 flags=MMAP|INIT_SHARED   # trailing comment\n\
            map g0\n\
            bind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x100000 size=0x2000 offset=0\n\
            bind offset=0 size=4096 gpa=1048576 fd=invalid flags=0x4 slot=3\n\
            guest r8@0x100008 w4@0x101000=0xdeadbeef\n\
            allocate g0 mode=0x1 offset=0 len=0x1000\n\
            set_attributes gpa=0x100000 size=0x1000 attributes=PRIVATE\n\
            host_write g0 offset=0x8 width=8 value=0x1\n\
            destroy_vm\n";
        let p = parse(text).unwrap();
        assert_eq!(p.ops.len(), 9);
        assert_eq!(p.ops[3], Op::Bind { slot: 3, flags: 4, fd: FdArg::Invalid, gpa: 0x10_0000, size: 4096, offset: 0 });
        assert_eq!(p.ops[5], Op::Allocate { gmem: GmemId(0), mode: 1, offset: 0, len: 0x1000 });
    }

    #[test]
    fn groups_read_print_and_round_trip_and_v2_files_still_read() {
        let text = "gmemfuzz-program v3\n\
            create_gmem size=0x2000 flags=MMAP|INIT_SHARED\n\
            group   # members run at the same time\n\
            \x20 x40 guest r8@0x100000\n\
            \x20 punch g0 offset=0 len=0x1000\n\
            \x20 x3 host_write g0 offset=0x8 width=8 value=0x5\n\
            end\n\
            check\n";
        let p = parse(text).unwrap();
        assert_eq!(p.ops.len(), 3);
        let Op::Group(g) = &p.ops[1] else { panic!("{:?}", p.ops[1]) };
        assert_eq!(g.members.iter().map(|m| m.repeat).collect::<Vec<_>>(), [40, 1, 3]);
        assert_eq!(g.members[1].op, Op::Punch { gmem: GmemId(0), offset: 0, len: 0x1000 });
        let printed = print(&p);
        assert!(printed.contains("group\n  x40 guest r8@0x100000\n  punch g0 offset=0x0 len=0x1000\n  x3 host_write"), "{printed}");
        assert_eq!(parse(&printed).unwrap(), p);
        // A v2 file (no groups) reads as before.
        let v2 = parse("gmemfuzz-program v2\ncreate_gmem size=0x1000 flags=0\ncheck\n").unwrap();
        assert_eq!(v2.ops, vec![Op::CreateGmem { size: 0x1000, flags: 0 }, Op::Check]);
    }

    #[test]
    fn malformed_groups_are_errors_with_their_line() {
        let bad = |body: &str| parse(&format!("gmemfuzz-program v3\n{body}")).unwrap_err();
        assert_eq!(bad("group\n  check\n").line, 2, "no `end`");
        assert!(bad("group\n  check\n").message.contains("no `end`"));
        assert!(bad("end\n").message.contains("without a `group`"));
        assert!(bad("group\ngroup\n").message.contains("inside a group"));
        let one = bad("group\n  punch g0 offset=0 len=0x1000\nend\n");
        assert!(one.message.contains("cannot run") && one.message.contains("2 to"), "{one}");
        let member = bad("group\n  x2 bogus\nend\n");
        assert_eq!((member.line, member.column), (3, 6), "{member}");
        assert!(bad("group\n  x999 check\nend\n").message.contains("up to 255"));
    }

    #[test]
    fn errors_name_line_column_and_what_was_expected() {
        let e = parse("gmemfuzz-program v1\ncreate_gmem size=0x1000 flags=MMAP|BOGUS\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 36), "{e}");
        assert!(e.message.contains("unknown flag `BOGUS`"), "{e}");
        let e = parse("gmemfuzz-program v1\npunch g0 offset=0\n").unwrap_err();
        assert!(e.to_string().contains("line 2") && e.message.contains("missing argument `len=`"), "{e}");
        let e = parse("gmemfuzz-program v1\nguest r3@0x1000\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 7), "{e}");
        let e = parse("gmemfuzz-program v1\nfrobnicate\n").unwrap_err();
        assert!(e.message.contains("unknown op `frobnicate`"), "{e}");
    }

    #[test]
    fn newer_version_is_refused_clearly() {
        let e = parse("gmemfuzz-program v4\ncheck\n").unwrap_err();
        assert_eq!(e.message, "program format v4 is newer than this gmemfuzz (v3)");
    }

    #[test]
    fn truncated_text_is_an_error_not_a_panic() {
        let full = "gmemfuzz-program v1\nbind slot=2 flags=GUEST_MEMFD fd=g0 gpa=0x100000 size=0x2000 offset=0\n";
        for cut in 0..full.len() {
            // Every prefix either parses or gives a located error.
            if let Err(e) = parse(&full[..cut]) {
                assert!(e.line >= 1 && e.column >= 1, "{e}");
            }
        }
        assert!(parse("").is_err());
        assert!(parse("gmemfuzz-program v1\nbind slot=2 flags=GUEST_MEM").is_err());
    }

    #[test]
    fn expectation_lines_round_trip() {
        let p = parse("gmemfuzz-program v1\ncheck\n").unwrap();
        for e in [
            Expectation::Clean,
            Expectation::Divergence { kind: DivergenceKind::StaleRead, op: 4 },
            Expectation::Splat { kind: "KASAN" },
            Expectation::Splat { kind: "RCU stall" },
        ] {
            let text = print_with(&p, Some(e));
            assert_eq!(parse_document(&text).unwrap(), Document { expect: Some(e), ..Document::new(p.clone()) });
        }
        assert!(parse_document("gmemfuzz-program v1\n# expect: maybe\n").is_err());
        assert!(parse_document("gmemfuzz-program v1\n# expect: splat kasan\n").is_err(), "kinds are named as the kernel log's");
    }

    #[test]
    fn metadata_lines_round_trip_and_are_optional() {
        let p = parse("gmemfuzz-program v1\ncreate_gmem size=0x1000 flags=0\ncheck\n").unwrap();
        let doc = Document {
            vm_type: Some(1),
            profile: Some("kernel 6.12 vm_type 1 gmem_flags 0x0".into()),
            expect: Some(Expectation::Clean),
            kernels: vec!["6.12".into(), "7.2".into()],
            ..Document::new(p.clone())
        };
        let text = print_document(&doc, &["found: gmemfuzz DIVERGENCE at op 1\nsecond line"]);
        assert!(text.contains("\n# vm-type: 1\n") && text.contains("# found: gmemfuzz DIVERGENCE at op 1 second line\n"), "{text}");
        assert_eq!(parse_document(&text).unwrap(), doc);
        // A v1 file from before the metadata lines loads with none recorded.
        let old = parse_document("gmemfuzz-program v1\n# expect: clean\ncreate_gmem size=0x1000 flags=0\ncheck\n").unwrap();
        assert_eq!(old, Document { expect: Some(Expectation::Clean), ..Document::new(p) });
        let e = parse_document("gmemfuzz-program v1\n# vm-type: one\ncheck\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(parse_document("gmemfuzz-program v1\n# vm-type: 1\n# vm-type: 0\ncheck\n").is_err());
    }

    #[test]
    fn kernels_line_pins_series_not_prefixes() {
        let doc = parse_document("gmemfuzz-program v2\n# kernels: 6.12 7.2\ncheck\n").unwrap();
        assert!(doc.pins_kernel("6.12.117") && doc.pins_kernel("7.2.13") && doc.pins_kernel("7.2.0-rc1+"));
        assert!(!doc.pins_kernel("6.1.100") && !doc.pins_kernel("7.20.1") && !doc.pins_kernel("6.18.44"));
        assert!(Document::new(doc.program.clone()).pins_kernel("6.18.44"), "no line: every kernel");
        let e = parse_document("gmemfuzz-program v2\n# kernels: 6.12 latest\ncheck\n").unwrap_err();
        assert!(e.message.contains("latest"), "{e}");
    }
}
