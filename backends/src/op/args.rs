//! An op's arguments as values: how each is written in the text format, read back, and
//! made simpler by the minimizer. The op table (`super::define_ops!`) gives every field a
//! `Format` and a `Shrink`; the text format, the C reproducer and the minimizer read the
//! fields through `Op::args` / `Op::from_args` and never match on op kinds.

use std::fmt::Write as _;

use super::{Access, AccessKind, FdArg, GmemId, Width};
use crate::abi::mempolicy::{MODE_FLAGS, MODE_FLAG_NAMES, MODE_NAMES};

/// Names of flag bits (or of values, for a mempolicy mode), as the text format writes them.
pub type Names = &'static [(&'static str, u64)];

/// How an argument is written.
#[derive(Clone, Copy, Debug)]
pub enum Format {
    /// A number in hex (`0x1000`); read as hex or decimal.
    Hex,
    /// A number in decimal (slot ids).
    Dec,
    /// Flag names joined with `|`, with a hex remainder for bits that have none.
    Flags(Names),
    /// A value by its name where it has one (`REMOVE`), else in hex.
    Named(Names),
    /// A mempolicy mode word: the mode by name, then its flags (`BIND|STATIC_NODES`).
    MpolMode,
    /// An access width in bytes: 1, 2, 4 or 8.
    Width,
    /// A bind's fd: `g<N>`, `invalid` (-1) or `not-gmem` (the VM fd).
    Fd,
    /// The file an op works on, `g<N>`, written right after the op's name without a key.
    File,
    /// A guest op's loads and stores, written after everything else without keys:
    /// `r8@0x100008 w4@0x101000=0x1`.
    Accesses,
}

impl Format {
    /// Whether the argument is written without `key=`.
    pub fn positional(self) -> bool {
        matches!(self, Format::File | Format::Accesses)
    }
}

/// How the minimizer makes an argument simpler (`harness::repro::shrink`), tried in this
/// order across an op's arguments, most aggressive first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shrink {
    /// Fewer accesses, then stores of 0 or 1.
    Accesses,
    /// A length: one page, where it is longer (never 0: that is another path).
    Len,
    /// An offset: 0 or one page, where smaller.
    Offset,
    /// A GPA: the start of the program's window where it is above it.
    Gpa,
    /// Each set bit cleared.
    Bits,
    /// A stored value: 0 or 1.
    Value,
    /// Left as it is.
    Keep,
}

/// One field of an op, as the table declares it.
#[derive(Clone, Copy, Debug)]
pub struct ArgSpec {
    /// The field's name: its `key=` in the text format and its place in a C call template.
    pub key: &'static str,
    pub format: Format,
    pub shrink: Shrink,
    /// The Rust type of the field, for reading it back.
    pub ty: ArgType,
}

/// The types op fields have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    U64,
    U32,
    I32,
    File,
    Fd,
    Width,
    Accesses,
}

/// One field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgValue {
    U64(u64),
    U32(u32),
    I32(i32),
    File(GmemId),
    Fd(FdArg),
    Width(Width),
    Accesses(Vec<Access>),
}

/// A field type of an op: what `define_ops!` converts to and from `ArgValue`.
pub trait IsArg: Sized {
    const TYPE: ArgType;
    fn into_value(self) -> ArgValue;
    fn from_value(value: ArgValue) -> Option<Self>;
    /// The file this field names, if it names one.
    fn file(&self) -> Option<GmemId> {
        None
    }
    /// The same, to rename it (minimization renumbers files).
    fn file_mut(&mut self) -> Option<&mut GmemId> {
        None
    }
}

macro_rules! is_arg {
    ($ty:ty, $variant:ident) => {
        impl IsArg for $ty {
            const TYPE: ArgType = ArgType::$variant;
            fn into_value(self) -> ArgValue {
                ArgValue::$variant(self)
            }
            fn from_value(value: ArgValue) -> Option<Self> {
                match value {
                    ArgValue::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
is_arg!(u64, U64);
is_arg!(u32, U32);
is_arg!(i32, I32);
is_arg!(Width, Width);
is_arg!(Vec<Access>, Accesses);

impl IsArg for GmemId {
    const TYPE: ArgType = ArgType::File;
    fn into_value(self) -> ArgValue {
        ArgValue::File(self)
    }
    fn from_value(value: ArgValue) -> Option<Self> {
        match value {
            ArgValue::File(g) => Some(g),
            _ => None,
        }
    }
    fn file(&self) -> Option<GmemId> {
        Some(*self)
    }
    fn file_mut(&mut self) -> Option<&mut GmemId> {
        Some(self)
    }
}

impl IsArg for FdArg {
    const TYPE: ArgType = ArgType::Fd;
    fn into_value(self) -> ArgValue {
        ArgValue::Fd(self)
    }
    fn from_value(value: ArgValue) -> Option<Self> {
        match value {
            ArgValue::Fd(fd) => Some(fd),
            _ => None,
        }
    }
    fn file(&self) -> Option<GmemId> {
        match self {
            FdArg::Gmem(g) => Some(*g),
            _ => None,
        }
    }
    fn file_mut(&mut self) -> Option<&mut GmemId> {
        match self {
            FdArg::Gmem(g) => Some(g),
            _ => None,
        }
    }
}

/// A value that could not be read: the column offset into the word where it went wrong,
/// and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadArg {
    pub offset: usize,
    pub message: String,
}

fn bad<T>(offset: usize, message: String) -> Result<T, BadArg> {
    Err(BadArg { offset, message })
}

impl ArgValue {
    /// The type of field this value is.
    pub fn ty(&self) -> ArgType {
        match self {
            ArgValue::U64(_) => ArgType::U64,
            ArgValue::U32(_) => ArgType::U32,
            ArgValue::I32(_) => ArgType::I32,
            ArgValue::File(_) => ArgType::File,
            ArgValue::Fd(_) => ArgType::Fd,
            ArgValue::Width(_) => ArgType::Width,
            ArgValue::Accesses(_) => ArgType::Accesses,
        }
    }

    /// The value as the text format writes it.
    pub fn text(&self, format: Format) -> String {
        match (self, format) {
            (ArgValue::U64(v), Format::Flags(names)) => flags_text(*v, names),
            (ArgValue::U32(v), Format::Flags(names)) => flags_text(*v as u64, names),
            (ArgValue::I32(v), Format::Flags(names)) => flags_text(*v as u32 as u64, names),
            (ArgValue::U32(v), Format::MpolMode) => mode_text(*v),
            (ArgValue::U32(v), Format::Named(names)) => {
                names.iter().find(|(_, n)| *n == *v as u64).map_or_else(|| num(*v as u64), |(n, _)| n.to_string())
            }
            (ArgValue::U32(v), Format::Dec) => v.to_string(),
            (ArgValue::U64(v), Format::Dec) => v.to_string(),
            (ArgValue::U64(v), _) => num(*v),
            (ArgValue::U32(v), _) => num(*v as u64),
            (ArgValue::I32(v), _) => num(*v as u32 as u64),
            (ArgValue::File(g), _) => g.to_string(),
            (ArgValue::Fd(fd), _) => match fd {
                FdArg::Gmem(g) => g.to_string(),
                FdArg::Invalid => "invalid".into(),
                FdArg::NotGmem => "not-gmem".into(),
            },
            (ArgValue::Width(w), _) => w.bytes().to_string(),
            (ArgValue::Accesses(accesses), _) => {
                let mut s = String::new();
                for a in accesses {
                    if !s.is_empty() {
                        s.push(' ');
                    }
                    match a.kind {
                        AccessKind::Read => write!(s, "r{}@{}", a.width.bytes(), num(a.gpa)),
                        AccessKind::Write(v) => write!(s, "w{}@{}={}", a.width.bytes(), num(a.gpa), num(v)),
                    }
                    .expect("writing to a String");
                }
                s
            }
        }
    }

    /// Reads one word of the text format as a field of type `ty` written in `format`
    /// (a guest op's accesses are read one word at a time: `parse_access`).
    pub fn parse(text: &str, format: Format, ty: ArgType) -> Result<ArgValue, BadArg> {
        let names = match format {
            Format::Flags(names) | Format::Named(names) => Some(names),
            Format::MpolMode => Some(MODE_WORD),
            _ => None,
        };
        match ty {
            ArgType::U64 => Ok(ArgValue::U64(match names {
                Some(names) => flags(text, names)?,
                None => number(text)?,
            })),
            ArgType::U32 => {
                let (v, what) = match names {
                    Some(names) => (flags(text, names)?, "a 32-bit flag word"),
                    None => (number(text)?, "a 32-bit number"),
                };
                u32::try_from(v).map(ArgValue::U32).or_else(|_| bad(0, format!("expected {what}, found `{text}`")))
            }
            ArgType::I32 => {
                let v = flags(text, names.unwrap_or(&[]))?;
                u32::try_from(v)
                    .map(|v| ArgValue::I32(v as i32))
                    .or_else(|_| bad(0, format!("expected a 32-bit flag word, found `{text}`")))
            }
            ArgType::Width => parse_number(text)
                .and_then(Width::from_bytes)
                .map(ArgValue::Width)
                .ok_or_else(|| BadArg { offset: 0, message: format!("expected a width of 1, 2, 4 or 8, found `{text}`") }),
            ArgType::File => parse_file(text)
                .map(ArgValue::File)
                .ok_or_else(|| BadArg { offset: 0, message: format!("expected a guest_memfd `g<N>` (N < 256), found `{text}`") }),
            ArgType::Fd => match text {
                "invalid" => Ok(ArgValue::Fd(FdArg::Invalid)),
                "not-gmem" => Ok(ArgValue::Fd(FdArg::NotGmem)),
                t => parse_file(t)
                    .map(|g| ArgValue::Fd(FdArg::Gmem(g)))
                    .ok_or_else(|| BadArg { offset: 0, message: format!("expected `g<N>`, `invalid` or `not-gmem`, found `{t}`") }),
            },
            ArgType::Accesses => parse_access(text).map(|a| ArgValue::Accesses(vec![a])),
        }
    }
}

/// `r8@0x100008` or `w4@0x101000=0xdeadbeef`.
pub fn parse_access(text: &str) -> Result<Access, BadArg> {
    let bad =
        || BadArg { offset: 0, message: format!("expected a guest access `r<width>@<gpa>` or `w<width>@<gpa>=<value>`, found `{text}`") };
    let (rw, rest) = text.split_at_checked(1).ok_or_else(bad)?;
    let (width, rest) = rest.split_once('@').ok_or_else(bad)?;
    let width = parse_number(width).and_then(Width::from_bytes).ok_or_else(bad)?;
    let (gpa, kind) = match (rw, rest.split_once('=')) {
        ("r", None) => (rest, AccessKind::Read),
        ("w", Some((gpa, v))) => (gpa, AccessKind::Write(parse_number(v).ok_or_else(bad)?)),
        _ => return Err(bad()),
    };
    Ok(Access { gpa: parse_number(gpa).ok_or_else(bad)?, width, kind })
}

/// `g<N>`.
pub fn parse_file(s: &str) -> Option<GmemId> {
    let n = s.strip_prefix('g')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().map(GmemId)
}

/// A number in hex (`0x…`) or decimal.
pub fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() => u64::from_str_radix(hex, 16).ok(),
        Some(_) => None,
        None if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        None => None,
    }
}

fn number(text: &str) -> Result<u64, BadArg> {
    parse_number(text).ok_or_else(|| BadArg { offset: 0, message: format!("expected a number (hex 0x… or decimal), found `{text}`") })
}

/// Flag names and numbers joined with `|`, ORed.
fn flags(text: &str, names: Names) -> Result<u64, BadArg> {
    let mut v = 0;
    let mut offset = 0;
    for part in text.split('|') {
        v |= match names.iter().find(|(n, _)| *n == part) {
            Some(&(_, bit)) => bit,
            None => match parse_number(part) {
                Some(n) => n,
                None => {
                    let known: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                    return bad(offset, format!("unknown flag `{part}`: expected one of {} or a number", known.join(", ")));
                }
            },
        };
        offset += part.len() + 1;
    }
    Ok(v)
}

fn num(v: u64) -> String {
    format!("{v:#x}")
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

/// A mempolicy mode word: the mode by name (a value, not a bit) and its flags by name,
/// `BIND|STATIC_NODES`; what has no name in hex.
fn mode_text(mode: u32) -> String {
    let base = (mode & !MODE_FLAGS) as u64;
    let name = MODE_NAMES.iter().find(|(_, v)| *v == base).map_or_else(|| num(base), |(n, _)| n.to_string());
    match (mode & MODE_FLAGS) as u64 {
        0 => name,
        flags => format!("{name}|{}", flags_text(flags, MODE_FLAG_NAMES)),
    }
}

/// The names a mode word is read with: the modes' and the flags' (`flags` ORs the parts,
/// so `BIND|STATIC_NODES` reads back as written).
const MODE_WORD: Names = {
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
