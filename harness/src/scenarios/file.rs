//! A scenario file: a text program (`repro::text`) whose every op line ends with the
//! outcome it must have, and whose header says which kernels it is for.
//!
//! ```text
//! gmemfuzz-program v3
//! # source: guest_memfd_test.c test_create_guest_memfd_invalid; kvm_gmem_create()
//! # vm-type: 0
//! # requires: gmem_flags has MMAP|INIT_SHARED
//! create_gmem size=0x0 flags=0x0                      # => EINVAL
//! create_gmem size=0x1000 flags=0x4                   # => ok if gmem_flags has 0x4, else EINVAL
//! bind slot=3 flags=GUEST_MEMFD fd=g0 gpa=0x108000 size=0x2000 offset=0x1000  # => bound_range_errno
//! guest r8@0x100008 w4@0x100010=0x9e57                # => [read 0x0, wrote]
//! ```
//!
//! - `# source: …` says where the expectations come from (the kernel's selftest, the
//!   kernel code, a probe); several lines are joined.
//! - `# vm-type: N` (the text format's own line): the scenario is for VMs of that type only;
//!   without it, for every VM type.
//! - `# requires: CONDITION`: the scenario is only for kernels whose profile meets it;
//!   several lines must all hold. A kernel's profile is what was probed of it, never its
//!   version.
//! - Each op line ends with `# => OUTCOME`, or `# => OUTCOME if CONDITION, else OUTCOME`
//!   where kernels differ; anything after a further `#` is a comment.
//! - In op lines `$node_outside` stands for a node this task may not use: the lowest one
//!   the profile's `numa.nodes` lacks (as a node mask).
//!
//! A CONDITION is one or more terms joined by ` or `; a term is a profile field (`Field`)
//! with `not ` before it or not, and then nothing (the field is true, or not zero),
//! `has FLAGS` (all these bits are set; `MMAP`, `INIT_SHARED` or numbers, joined by `|`) or
//! `= N`.
//!
//! An OUTCOME is `ok`; an errno (`EINVAL`, or `error EINVAL` as `Outcome` shows it);
//! `SIGBUS`; `value N`; `policy MODE nodes=N` (get_mempolicy's value:
//! `abi::mempolicy::policy_value`, the mode word by the text format's names,
//! `BIND|STATIC_NODES`; `nodes=` may be left out for none); `skipped (Reason)`
//! (`SkipReason`); a guest op's accesses in brackets, as `Outcome` shows them: `[read 0x0,
//! wrote, mmio-exit, memory-fault(gpa=0x100000 size=0x1000 flags=0x8), not-run]`; or
//! `bound_range_errno`, the profile's errno of that name.

use std::fmt;

use gmemfuzz_backends::abi::mempolicy::{self, policy_value};
use gmemfuzz_backends::op::{GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP};
use gmemfuzz_backends::outcome::{AccessResult, Errno, Outcome};
use gmemfuzz_backends::{Op, Profile, SkipReason};

use crate::repro::text::{self, parse_number, ParseError};

/// One scenario file, parsed: what it says before it is made for a profile.
#[derive(Clone, Debug)]
pub struct ScenarioFile {
    /// The file's name without `.txt`.
    pub name: String,
    /// Where it is, for messages (`corpus/scenarios/NAME.txt`).
    pub path: String,
    pub text: &'static str,
    /// Its `# source:` lines.
    pub source: String,
    /// Its `# vm-type:` line.
    pub vm_type: Option<u64>,
    /// Its `# requires:` lines.
    pub requires: Vec<Condition>,
    /// Each op's line number and expected outcome, in order.
    pub steps: Vec<(usize, Expect)>,
}

/// A profile field a condition may test (`Profile`'s fields, the NUMA ones as `numa.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    VmType,
    GuestMemfd,
    GmemFlags,
    AttributesIoctl,
    Attributes,
    GmemOnlySlots,
    FallocWriteZeroes,
    NumaNodes,
    NumaFilePolicy,
    NumaMoveAll,
    /// Whether KVM_PRE_FAULT_MEMORY maps memory (`pre_fault_errno` is none).
    PreFault,
}

const FIELDS: &[(&str, Field)] = &[
    ("vm_type", Field::VmType),
    ("guest_memfd", Field::GuestMemfd),
    ("gmem_flags", Field::GmemFlags),
    ("attributes_ioctl", Field::AttributesIoctl),
    ("attributes", Field::Attributes),
    ("gmem_only_slots", Field::GmemOnlySlots),
    ("falloc_write_zeroes", Field::FallocWriteZeroes),
    ("numa.nodes", Field::NumaNodes),
    ("numa.file_policy", Field::NumaFilePolicy),
    ("numa.move_all", Field::NumaMoveAll),
    ("pre_fault", Field::PreFault),
];

impl Field {
    /// The field's value (a flag as 0 or 1).
    fn value(self, p: &Profile) -> u64 {
        match self {
            Field::VmType => p.vm_type,
            Field::GuestMemfd => p.guest_memfd as u64,
            Field::GmemFlags => p.gmem_flags,
            Field::AttributesIoctl => p.attributes_ioctl as u64,
            Field::Attributes => p.attributes,
            Field::GmemOnlySlots => p.gmem_only_slots as u64,
            Field::FallocWriteZeroes => p.falloc_write_zeroes as u64,
            Field::NumaNodes => p.numa.nodes,
            Field::NumaFilePolicy => p.numa.file_policy as u64,
            Field::NumaMoveAll => p.numa.move_all as u64,
            Field::PreFault => p.pre_fault_errno.is_none() as u64,
        }
    }

    fn name(self) -> &'static str {
        FIELDS.iter().find(|(_, f)| *f == self).expect("every field is named").0
    }
}

/// What a term asks of its field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Test {
    /// True, or not zero.
    Set,
    /// All these bits are set.
    Has(u64),
    Equals(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Term {
    pub negated: bool,
    pub field: Field,
    pub test: Test,
}

/// Terms of which one must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition(pub Vec<Term>);

impl Condition {
    pub fn holds(&self, p: &Profile) -> bool {
        self.0.iter().any(|t| {
            let v = t.field.value(p);
            let yes = match t.test {
                Test::Set => v != 0,
                Test::Has(bits) => v & bits == bits,
                Test::Equals(n) => v == n,
            };
            yes != t.negated
        })
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" or ")?;
            }
            if t.negated {
                f.write_str("not ")?;
            }
            f.write_str(t.field.name())?;
            match t.test {
                Test::Set => {}
                Test::Has(bits) => write!(f, " has {bits:#x}")?,
                Test::Equals(n) => write!(f, " = {n}")?,
            }
        }
        Ok(())
    }
}

/// An expected outcome as written: a value, or the profile's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    Outcome(Outcome),
    /// `bound_range_errno`: the profile's errno for binding a file range bound already.
    BoundRangeErrno,
}

impl Want {
    fn for_profile(&self, p: &Profile) -> Outcome {
        match self {
            Want::Outcome(o) => o.clone(),
            Want::BoundRangeErrno => Outcome::Err(p.bound_range_errno),
        }
    }
}

/// One op's expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    Always(Want),
    If { condition: Condition, then: Want, otherwise: Want },
}

impl Expect {
    pub fn for_profile(&self, p: &Profile) -> Outcome {
        match self {
            Expect::Always(w) => w.for_profile(p),
            Expect::If { condition, then, otherwise } => {
                if condition.holds(p) {
                    then.for_profile(p)
                } else {
                    otherwise.for_profile(p)
                }
            }
        }
    }
}

/// The placeholder for a node this task may not use, and its value for a profile.
const NODE_OUTSIDE: &str = "$node_outside";

fn node_outside(p: &Profile) -> u64 {
    !p.numa.nodes & p.numa.nodes.wrapping_add(1)
}

fn err(line: usize, column: usize, message: impl Into<String>) -> ParseError {
    ParseError { line, column, message: message.into() }
}

impl ScenarioFile {
    /// Reads the file `name` (its text `text`); `path` names it in messages.
    pub fn parse(name: &str, path: &str, text: &'static str) -> Result<ScenarioFile, ParseError> {
        let mut file = ScenarioFile {
            name: name.to_string(),
            path: path.to_string(),
            text,
            source: String::new(),
            vm_type: None,
            requires: Vec::new(),
            steps: Vec::new(),
        };
        for (i, raw) in text.lines().enumerate().skip(1) {
            let n = i + 1;
            let (code, comment) = match raw.find('#') {
                Some(at) => (raw[..at].trim(), Some((at + 2, raw[at + 1..].trim()))),
                None => (raw.trim(), None),
            };
            if code.is_empty() {
                let Some((column, c)) = comment else { continue };
                if let Some(rest) = c.strip_prefix("source:") {
                    if !file.source.is_empty() {
                        file.source.push(' ');
                    }
                    file.source.push_str(rest.trim());
                } else if let Some(rest) = c.strip_prefix("requires:") {
                    file.requires.push(parse_condition(rest).map_err(|m| err(n, column, m))?);
                } else if c.starts_with("=>") {
                    return Err(err(n, column, "an expected outcome stands on its op's line"));
                }
                continue;
            }
            if code == "group" || code == "end" {
                return Err(err(n, 1, "a scenario's ops are one a line: groups have no expected outcomes yet"));
            }
            let Some((column, expect)) = comment.and_then(|(column, c)| Some((column, c.strip_prefix("=>")?))) else {
                return Err(err(n, raw.len() + 1, "every op of a scenario ends with its expected outcome: `# => OUTCOME`"));
            };
            let expect = expect.split('#').next().expect("split gives one part");
            file.steps.push((n, parse_expect(expect).map_err(|m| err(n, column, m))?));
        }
        // The program itself, with any profile's numbers in the placeholders.
        let doc = text::parse_document(&text.replace(NODE_OUTSIDE, "0x0"))?;
        if doc.program.ops.len() != file.steps.len() {
            return Err(err(1, 1, format!("{} ops but {} expected outcomes", doc.program.ops.len(), file.steps.len())));
        }
        file.vm_type = doc.vm_type;
        if file.source.is_empty() {
            return Err(err(1, 1, "a scenario says where its expectations come from: `# source: …`"));
        }
        Ok(file)
    }

    /// Whether the file is made for a kernel of `profile`.
    pub fn applies_to(&self, profile: &Profile) -> bool {
        self.vm_type.is_none_or(|v| v == profile.vm_type) && self.requires.iter().all(|c| c.holds(profile))
    }

    /// The file's ops for `profile`, each with the outcome it must have there (the file
    /// must apply to it).
    pub fn steps_for(&self, profile: &Profile) -> Result<Vec<(Op, Outcome)>, ParseError> {
        let text = self.text.replace(NODE_OUTSIDE, &format!("{:#x}", node_outside(profile)));
        let ops = text::parse_document(&text)?.program.ops;
        Ok(ops.into_iter().zip(&self.steps).map(|(op, (_, expect))| (op, expect.for_profile(profile))).collect())
    }
}

/// The bits of a `has` test: names of guest_memfd flags or numbers, joined by `|`.
fn parse_bits(s: &str) -> Result<u64, String> {
    let mut bits = 0;
    for part in s.split('|').map(str::trim) {
        bits |= match part {
            "MMAP" => GUEST_MEMFD_FLAG_MMAP,
            "INIT_SHARED" => GUEST_MEMFD_FLAG_INIT_SHARED,
            _ => parse_number(part).ok_or_else(|| format!("`{part}` is neither MMAP, INIT_SHARED nor a number"))?,
        };
    }
    Ok(bits)
}

pub fn parse_condition(s: &str) -> Result<Condition, String> {
    let mut terms = Vec::new();
    for term in s.split(" or ").map(str::trim) {
        let (negated, term) = match term.strip_prefix("not ") {
            Some(rest) => (true, rest.trim()),
            None => (false, term),
        };
        let (name, test) = match term.split_once(' ') {
            None => (term, Test::Set),
            Some((name, rest)) => {
                let rest = rest.trim();
                let test = if let Some(bits) = rest.strip_prefix("has ") {
                    Test::Has(parse_bits(bits)?)
                } else if let Some(n) = rest.strip_prefix("= ") {
                    Test::Equals(parse_number(n.trim()).ok_or_else(|| format!("`{n}` is not a number"))?)
                } else {
                    return Err(format!("after `{name}`: expected nothing, `has FLAGS` or `= N`, found `{rest}`"));
                };
                (name, test)
            }
        };
        let field = FIELDS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).ok_or_else(|| {
            format!("`{name}` is not a profile field a scenario tests: {}", FIELDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
        })?;
        terms.push(Term { negated, field, test });
    }
    Ok(Condition(terms))
}

fn parse_expect(s: &str) -> Result<Expect, String> {
    let Some((then, rest)) = s.split_once(" if ") else {
        return Ok(Expect::Always(parse_want(s)?));
    };
    let (condition, otherwise) = rest.split_once(" else ").ok_or("`OUTCOME if CONDITION` needs `, else OUTCOME`")?;
    let condition = condition.trim().strip_suffix(',').unwrap_or(condition);
    Ok(Expect::If { condition: parse_condition(condition)?, then: parse_want(then)?, otherwise: parse_want(otherwise)? })
}

fn parse_want(s: &str) -> Result<Want, String> {
    match s.trim() {
        "bound_range_errno" => Ok(Want::BoundRangeErrno),
        s => parse_outcome(s).map(Want::Outcome),
    }
}

/// The reasons a scenario may expect an op to be skipped, by their `Debug` names.
const SKIP_REASONS: &[SkipReason] = <SkipReason as strum::VariantArray>::VARIANTS;

fn number(s: &str) -> Result<u64, String> {
    parse_number(s.trim()).ok_or_else(|| format!("`{s}` is not a number"))
}

fn errno(name: &str) -> Option<Errno> {
    (1..=gmemfuzz_backends::abi::errno::MAX).map(Errno).find(|e| e.name() == Some(name))
}

/// An outcome as `Outcome` shows it (errnos also bare, policies by name).
pub fn parse_outcome(s: &str) -> Result<Outcome, String> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or("a guest op's results end with `]`")?;
        let results = inner.split(',').map(parse_access).collect::<Result<_, _>>()?;
        return Ok(Outcome::Guest(results));
    }
    let (word, rest) = s.split_once(' ').map_or((s, ""), |(w, r)| (w, r.trim()));
    match (word, rest) {
        ("ok", "") => Ok(Outcome::Ok),
        ("SIGBUS", "") => Ok(Outcome::Sigbus),
        ("value", v) => Ok(Outcome::Value(number(v)?)),
        ("error", e) => errno(e).map(Outcome::Err).ok_or_else(|| format!("`{e}` is not an errno name")),
        ("skipped", why) => {
            let why = why.trim_start_matches('(').trim_end_matches(')');
            SKIP_REASONS
                .iter()
                .find(|r| format!("{r:?}") == why)
                .map(|r| Outcome::Skipped(*r))
                .ok_or_else(|| format!("`{why}` is not a reason an op is skipped (SkipReason)"))
        }
        ("policy", rest) => {
            let (mode, nodes) = match rest.split_once(" nodes=") {
                Some((mode, nodes)) => (mode, number(nodes)?),
                None => (rest, 0),
            };
            let mut word = 0;
            for part in mode.split('|').map(str::trim) {
                word |= mempolicy::MODE_NAMES
                    .iter()
                    .chain(mempolicy::MODE_FLAG_NAMES)
                    .find(|(n, _)| *n == part)
                    .map(|(_, v)| *v)
                    .ok_or_else(|| format!("`{part}` is not a policy mode or mode flag"))?;
            }
            Ok(Outcome::Value(policy_value(word as u32, nodes)))
        }
        (e, "") if e.starts_with('E') => errno(e).map(Outcome::Err).ok_or_else(|| format!("`{e}` is not an errno name")),
        _ => Err(format!(
            "expected an outcome (`ok`, an errno, `SIGBUS`, `value N`, `policy MODE nodes=N`, `skipped (Reason)`, `[…]`), found `{s}`"
        )),
    }
}

fn parse_access(s: &str) -> Result<AccessResult, String> {
    let s = s.trim();
    if let Some(v) = s.strip_prefix("read ") {
        return Ok(AccessResult::Read(number(v)?));
    }
    if let Some(fields) = s.strip_prefix("memory-fault(").and_then(|f| f.strip_suffix(')')) {
        let mut values = [None; 3];
        for part in fields.split_whitespace() {
            let (key, v) = part.split_once('=').ok_or_else(|| format!("`{part}`: expected key=value"))?;
            let slot =
                ["gpa", "size", "flags"].iter().position(|k| *k == key).ok_or_else(|| format!("`{key}`: expected gpa, size or flags"))?;
            values[slot] = Some(number(v)?);
        }
        let [Some(gpa), Some(size), Some(flags)] = values else { return Err(format!("`{s}` needs gpa=, size= and flags=")) };
        return Ok(AccessResult::MemoryFault { gpa, size, flags });
    }
    match s {
        "wrote" => Ok(AccessResult::Wrote),
        "mmio-exit" => Ok(AccessResult::Mmio),
        "not-run" => Ok(AccessResult::NotRun),
        _ => Err(format!("expected `read N`, `wrote`, `mmio-exit`, `memory-fault(gpa= size= flags=)` or `not-run`, found `{s}`")),
    }
}

/// An outcome as a scenario file writes it: as `Outcome` shows it, errnos bare.
pub fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Err(e) => e.to_string(),
        Outcome::Skipped(r) => format!("skipped ({r:?})"),
        o => o.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_read_back_as_they_are_written() {
        let outcomes = [
            Outcome::Ok,
            Outcome::Err(Errno::EINVAL),
            Outcome::Sigbus,
            Outcome::Value(0x5566_7788),
            Outcome::Skipped(SkipReason::FdClosed),
            Outcome::Guest(vec![
                AccessResult::Read(0),
                AccessResult::Wrote,
                AccessResult::Mmio,
                AccessResult::MemoryFault { gpa: 0x100000, size: 0x1000, flags: 8 },
                AccessResult::NotRun,
            ]),
        ];
        for o in outcomes {
            assert_eq!(parse_outcome(&outcome_text(&o)), Ok(o.clone()), "{}", outcome_text(&o));
            assert_eq!(parse_outcome(&o.to_string()), Ok(o.clone()), "as Outcome shows it: {o}");
        }
        let policy = parse_outcome("policy BIND|STATIC_NODES nodes=0x8001").unwrap();
        assert_eq!(policy, Outcome::Value(policy_value(mempolicy::BIND | mempolicy::F_STATIC_NODES, 0x8001)));
        assert_eq!(parse_outcome("policy LOCAL").unwrap(), Outcome::Value(policy_value(mempolicy::LOCAL, 0)));
        assert!(parse_outcome("EWHAT").is_err() && parse_outcome("unknown").is_err() && parse_outcome("[read]").is_err());
    }

    #[test]
    fn conditions_test_profile_fields() {
        let (host, lane) = (Profile::host_6_18(), Profile::sw_protected_7_2());
        let c = parse_condition("gmem_flags has MMAP|INIT_SHARED").unwrap();
        assert!(c.holds(&host) && !c.holds(&lane));
        let c = parse_condition("vm_type = 1 or gmem_flags has INIT_SHARED").unwrap();
        assert!(c.holds(&host) && c.holds(&lane) && !c.holds(&Profile { gmem_flags: 1, ..host.clone() }));
        let c = parse_condition("not gmem_only_slots").unwrap();
        assert!(c.holds(&host) && !c.holds(&lane));
        assert!(parse_condition("kernel = 7").is_err() && parse_condition("gmem_flags has BOGUS").is_err());
    }

    #[test]
    fn files_are_checked_line_by_line() {
        let ok =
            "gmemfuzz-program v3\n# source: here\ncreate_gmem size=0x1000 flags=0x4 # => ok if gmem_flags has 0x4, else EINVAL # note\n";
        let file = ScenarioFile::parse("t", "t.txt", ok).unwrap();
        let steps = file.steps_for(&Profile::host_6_18()).unwrap();
        assert_eq!(steps[0].1, Outcome::Err(Errno::EINVAL));
        let no_expectation = "gmemfuzz-program v3\n# source: here\ncheck\n";
        assert_eq!(ScenarioFile::parse("t", "t.txt", no_expectation).unwrap_err().line, 3);
        let bad_outcome = "gmemfuzz-program v3\n# source: here\n\ncheck # => EWHAT\n";
        assert_eq!(ScenarioFile::parse("t", "t.txt", bad_outcome).unwrap_err().line, 4);
        let no_source = "gmemfuzz-program v3\ncheck # => ok\n";
        assert!(ScenarioFile::parse("t", "t.txt", no_source).is_err());
    }
}
