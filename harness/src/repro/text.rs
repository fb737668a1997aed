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
//! or both (`MMAP|0x100`); an unknown name is an error. The ops, their keys and how each
//! value is written are the op table's (`gmemfuzz_backends::op`, one row an op): the file
//! an op works on is written bare right after its name (`punch g0 offset=0 len=0x1000`), a
//! bind's `fd=` takes `gN`, `invalid` (-1) or `not-gmem` (the VM fd), and a guest op's
//! accesses follow it bare: loads `r<width>@<gpa>`, stores `w<width>@<gpa>=<value>`.
//! A concurrent group (v3) is `group`, one member per line, `end`; a member line is
//! `[x<N>] <op line>` (N repetitions, default 1).
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
use gmemfuzz_backends::op::{parse_access, ArgSpec, ArgValue, Format, Op, OpKind};

pub use gmemfuzz_backends::op::parse_number;

use crate::oracle::DivergenceKind;
use crate::program::Program;

pub const HEADER: &str = "gmemfuzz-program";
pub const VERSION: u32 = Program::VERSION;

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

/// One op as its text line (no newline); a group as its lines. The fields come from the
/// op table (`gmemfuzz_backends::op`): positional ones (the file, a guest op's accesses)
/// bare, the rest as `key=value`, in the table's order.
pub fn op_line(op: &Op) -> String {
    if let Op::Group(group) = op {
        return group_lines(group);
    }
    let spec = op.kind().spec();
    let mut s = spec.kind.name().to_string();
    for (arg, value) in spec.args.iter().zip(op.args()) {
        let text = value.text(arg.format);
        if !arg.format.positional() {
            write!(s, " {}={text}", arg.key).expect("writing to a String");
        } else if !text.is_empty() {
            write!(s, " {text}").expect("writing to a String");
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

    /// One field's word, read as the table says.
    fn value(&self, w: Word, arg: &ArgSpec) -> Result<ArgValue, ParseError> {
        ArgValue::parse(w.text, arg.format, arg.ty).map_err(|bad| err(self.n, w.column + bad.offset, bad.message))
    }

    fn no_operands(&self) -> Result<(), ParseError> {
        match self.rest.first() {
            Some(w) => self.err(w.column, format!("`{}` takes no arguments, found `{}`", self.name.text, w.text)),
            None => Ok(()),
        }
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
    if kind == OpKind::Group {
        return l.err(name.column, format!("a group is written `{GROUP_OPEN}`, its members on the lines below, then `{GROUP_CLOSE}`"));
    }
    let spec = kind.spec();
    let mut values: Vec<Option<ArgValue>> = vec![None; spec.args.len()];
    // The file operand comes right after the op name.
    for (i, arg) in spec.args.iter().enumerate().filter(|(_, a)| matches!(a.format, Format::File)) {
        if l.rest.is_empty() {
            return l.err(l.end, format!("`{}` expected a guest_memfd `g<N>`", name.text));
        }
        let w = l.rest.remove(0);
        values[i] = Some(l.value(w, arg)?);
    }
    // A guest op's accesses take every word that is left.
    for (i, _) in spec.args.iter().enumerate().filter(|(_, a)| matches!(a.format, Format::Accesses)) {
        let accesses = l.rest.drain(..).map(|w| parse_access(w.text).map_err(|bad| err(n, w.column + bad.offset, bad.message)));
        values[i] = Some(ArgValue::Accesses(accesses.collect::<Result<_, _>>()?));
    }
    let keyed: Vec<(usize, &ArgSpec)> = spec.args.iter().enumerate().filter(|(_, a)| !a.format.positional()).collect();
    if keyed.is_empty() {
        l.no_operands()?;
    } else {
        let keys: Vec<&str> = keyed.iter().map(|(_, a)| a.key).collect();
        for (w, (i, arg)) in l.args(&keys)?.into_iter().zip(keyed) {
            values[i] = Some(l.value(w, arg)?);
        }
    }
    let op = Op::from_args(kind, values.into_iter().map(|v| v.expect("every field read above")).collect());
    Ok(op.expect("values of the table's own types"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::Unstructured;
    use gmemfuzz_backends::op::{FdArg, GmemId};
    use rand::{RngCore, SeedableRng};

    /// Format v1 named the N-th successful create `g<N>` (`v1::upgrade`).
    #[test]
    fn v1_names_count_successful_creates_only() {
        let v1 = parse(
            "gmemfuzz-program v1\ncreate_gmem size=0 flags=0\ncreate_gmem size=0x1000 flags=0\nmap g0\npunch g1 offset=0 len=0x1000\n",
        );
        let v2 = parse(
            "gmemfuzz-program v2\ncreate_gmem size=0 flags=0\ncreate_gmem size=0x1000 flags=0\nmap g1\npunch g3 offset=0 len=0x1000\n",
        );
        assert_eq!(v1.unwrap(), v2.unwrap());
    }

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
