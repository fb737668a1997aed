//! A divergence as values: what was compared, what each side showed, and the model's story
//! of the page involved. It becomes text only where it is shown (`Display`).

use std::fmt;

use gmemfuzz_backends::model::{PageEvent, PageKey, StepResult};
use gmemfuzz_backends::op::{Access, AccessKind, Op};
use gmemfuzz_backends::outcome::{AccessResult, Observation, Outcome, PageContent, Probe};

/// Where a state comparison sits in a program (the runner's `policy` decides when; a
/// divergence in a probe says where).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompareAt {
    /// Right after op `index`.
    AfterOp,
    /// After the last op: the final state, whatever the last op was.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::EnumIter, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "kebab-case")]
pub enum DivergenceKind {
    /// A call returned a different result or errno.
    ResultMismatch,
    /// A read returned what the page held before an invalidating op: a missed invalidation.
    StaleRead,
    /// A read returned what a location held before a write the model saw complete.
    LostWrite,
    /// Page residency or content differs without matching an older state.
    StateMismatch,
    /// An access exited (MMIO, memory fault, SIGBUS) where the other side did not, or
    /// differently.
    UnexpectedExit,
    /// The platform's reverse map lists other GFNs than the model assigned: a platform hook
    /// missed, misplaced or called for the wrong page.
    PlatformMismatch,
}

impl DivergenceKind {
    /// The kind's name in reports and expectation lines ("stale-read").
    pub fn slug(self) -> &'static str {
        self.into()
    }

    /// The kind in words ("stale read").
    pub fn name(self) -> String {
        self.slug().replace('-', " ")
    }
}

/// What was compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The op's result.
    Result,
    /// One access of a guest op.
    GuestAccess { index: usize, access: Access },
    /// A state probe after the op, or at the end of the program.
    Probe { probe: Probe, at: CompareAt },
    /// Repetition `repetition` of member `member` of a concurrent group (its access
    /// `access`, for a guest member): no order of the members allows what the backend did.
    /// `gpa`: the access's address, where the subject is a guest access.
    Race { member: usize, repetition: usize, access: Option<usize>, gpa: Option<u64> },
}

impl Subject {
    /// What was compared, as one word (for grouping findings): `result`, `guest-access`,
    /// or `probe-<kind>`.
    pub fn slug(&self) -> &'static str {
        match self {
            Subject::Result => "result",
            Subject::GuestAccess { .. } => "guest-access",
            Subject::Probe { probe: Probe::Residency { .. }, .. } => "probe-residency",
            Subject::Probe { probe: Probe::HostPage { .. }, .. } => "probe-host-page",
            Subject::Probe { probe: Probe::GuestPage { .. }, .. } => "probe-guest-page",
            Subject::Probe { probe: Probe::AnonPage { .. }, .. } => "probe-anon-page",
            Subject::Probe { probe: Probe::PlatformMap, .. } => "probe-platform-map",
            Subject::Race { .. } => "race",
        }
    }

    /// The guest-physical address involved, for guest accesses and guest probes.
    pub fn gpa(&self) -> Option<u64> {
        match self {
            Subject::GuestAccess { access, .. } => Some(access.gpa),
            Subject::Probe { probe: Probe::GuestPage { gpa, .. }, .. } => Some(*gpa),
            Subject::Race { gpa, .. } => *gpa,
            _ => None,
        }
    }
}

/// What one side showed for the subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Outcome(Outcome),
    Access(AccessResult),
    Observation(Observation),
    /// What some order of a group's members allows at one member's step.
    Allowed(Vec<StepResult>),
    /// The guest access results some order of a group's members allows.
    OneOf(Vec<AccessResult>),
    /// What a backend did at one member's step.
    Step(StepResult),
}

impl Seen {
    /// The access result this shows, whether an access's or a guest probe's exit.
    pub fn access(&self) -> Option<AccessResult> {
        match self {
            Seen::Access(a) | Seen::Observation(Observation::GuestExit(a)) => Some(*a),
            _ => None,
        }
    }

    /// The access results this shows or allows (several for a race).
    pub fn accesses(&self) -> Vec<AccessResult> {
        match self {
            Seen::OneOf(set) => set.clone(),
            other => other.access().into_iter().collect(),
        }
    }
}

/// One disagreement, with everything a report needs.
#[derive(Clone, Debug)]
pub struct Divergence {
    pub kind: DivergenceKind,
    pub op_index: usize,
    pub op: Op,
    pub subject: Subject,
    /// The model's side.
    pub expected: Seen,
    /// The backend's side.
    pub actual: Seen,
    /// The page involved, if one is, with the model's history of it (op index, event).
    pub page: Option<(PageKey, Vec<(usize, PageEvent)>)>,
    pub backend: String,
    pub profile: String,
    /// The model's state after the op, as `Model::describe` shows it.
    pub model_state: String,
}

impl Divergence {
    /// The guest-physical address involved, for guest accesses and guest probes.
    pub fn gpa(&self) -> Option<u64> {
        self.subject.gpa()
    }

    /// Whether the end-of-program state comparison found it.
    pub fn at_end(&self) -> bool {
        matches!(self.subject, Subject::Probe { at: CompareAt::End, .. })
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Result => f.write_str("result"),
            Subject::GuestAccess { index, access } => {
                let what = match access.kind {
                    AccessKind::Read => "read",
                    AccessKind::Write(_) => "write",
                };
                write!(f, "guest access {index} ({what} of {} bytes at gpa {:#x})", access.width.bytes(), access.gpa)
            }
            Subject::Probe { probe, at: CompareAt::AfterOp } => write!(f, "{probe:?} after the op"),
            Subject::Probe { probe, at: CompareAt::End } => write!(f, "{probe:?} at the end of the program"),
            Subject::Race { member, repetition, access, .. } => {
                write!(f, "group member {member}, repetition {repetition}")?;
                match access {
                    Some(i) => write!(f, ", access {i}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Outcome(o) => write!(f, "{o}"),
            Seen::Access(a) => write!(f, "{a}"),
            Seen::Observation(o) => f.write_str(&show_observation(o)),
            Seen::Step(s) => write!(f, "{s}"),
            Seen::Allowed(set) => one_of(f, set),
            Seen::OneOf(set) => one_of(f, set),
        }
    }
}

/// A set some order of a group's members allows, in words.
fn one_of(f: &mut fmt::Formatter<'_>, set: &[impl fmt::Display]) -> fmt::Result {
    let set: Vec<String> = set.iter().map(|a| a.to_string()).collect();
    write!(f, "one of {{{}}} (the results some order of the members allows)", set.join(" | "))
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "gmemfuzz DIVERGENCE: {} at op #{} ({})", self.kind.name(), self.op_index, self.op.kind().name())?;
        writeln!(f, "  op:        {:?}", self.op)?;
        writeln!(f, "  compared:  {}", self.subject)?;
        writeln!(f, "  model:     {}", self.expected)?;
        writeln!(f, "  {:<10} {}", format!("{}:", self.backend), self.actual)?;
        if let Some((key, events)) = &self.page {
            writeln!(f, "  page history (model):")?;
            writeln!(f, "    {key}:")?;
            for (index, event) in events {
                writeln!(f, "    #{index}: {}", show_event(event))?;
            }
        }
        writeln!(f, "  profile:   {}", self.profile)?;
        write!(f, "  model state after the op:\n{}", self.model_state)
    }
}

fn show_event(event: &PageEvent) -> String {
    match event {
        PageEvent::Populated { by } => format!("populated (zero) by {by}"),
        PageEvent::Written { by, offset, width, old, new } => format!("{by} wrote {new:#x} ({width} bytes at {offset:#x}; was {old:#x})"),
        PageEvent::Dropped { by, content } => format!("dropped by {by} (content digest {:#010x})", content.digest()),
    }
}

/// A page's content in a line: its digest and its first non-zero qwords.
pub fn show_content(c: &PageContent) -> String {
    match c {
        PageContent::Bytes(b) => {
            let nonzero: Vec<String> = b
                .chunks_exact(8)
                .enumerate()
                .filter(|(_, q)| q.iter().any(|&x| x != 0))
                .take(4)
                .map(|(i, q)| format!("{:#x}:{:#x}", i * 8, u64::from_le_bytes(q.try_into().expect("8 bytes"))))
                .collect();
            format!("digest {:#010x}, first non-zero qwords [{}]", c.digest(), nonzero.join(", "))
        }
        PageContent::Digest(d) => format!("digest {d:#010x} (computed by the guest)"),
    }
}

pub fn show_observation(o: &Observation) -> String {
    match o {
        Observation::Content(c) => show_content(c),
        Observation::Residency(r) => {
            format!("resident pages {:?}", r.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i).collect::<Vec<_>>())
        }
        Observation::GuestExit(e) => format!("guest exit: {e}"),
        Observation::Sigbus => "SIGBUS".into(),
        Observation::Absent => "absent".into(),
        Observation::PlatformMap(gfns) => format!("reverse map: {} PFNs assigned, to GFNs {}", gfns.len(), gfn_list(gfns)),
    }
}

/// GFNs in hex, as a list.
pub fn gfn_list(gfns: &[u64]) -> String {
    format!("[{}]", gfns.iter().map(|g| format!("{g:#x}")).collect::<Vec<_>>().join(", "))
}
