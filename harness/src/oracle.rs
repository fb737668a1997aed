//! Comparison rules: when do the model's prediction and a backend's outcome disagree, and
//! what kind of bug does the disagreement look like.

use std::fmt;

use gmemfuzz_backends::model::{Model, PageEvent, PageKey};
use gmemfuzz_backends::op::{AccessKind, Op, PAGE_SIZE};
use gmemfuzz_backends::outcome::{AccessResult, Observation, Outcome, PageContent, Probe};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
}

impl DivergenceKind {
    pub fn name(self) -> &'static str {
        match self {
            DivergenceKind::ResultMismatch => "result mismatch",
            DivergenceKind::StaleRead => "stale read",
            DivergenceKind::LostWrite => "lost write",
            DivergenceKind::StateMismatch => "state mismatch",
            DivergenceKind::UnexpectedExit => "unexpected exit",
        }
    }
}

/// One disagreement, with everything a report needs.
#[derive(Clone, Debug)]
pub struct Divergence {
    pub kind: DivergenceKind,
    pub op_index: usize,
    pub op: Op,
    /// What was compared: the op's result, or a probe after it.
    pub subject: String,
    pub expected: String,
    pub actual: String,
    /// The model's history of the page involved, if one is.
    pub page_history: Vec<String>,
    pub backend: String,
    pub profile: String,
    pub model_state: String,
    /// The guest-physical address involved, for guest accesses and guest probes.
    pub gpa: Option<u64>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "gmemfuzz DIVERGENCE: {} at op #{} ({})", self.kind.name(), self.op_index, self.op.kind().name())?;
        writeln!(f, "  op:        {:?}", self.op)?;
        writeln!(f, "  compared:  {}", self.subject)?;
        writeln!(f, "  model:     {}", self.expected)?;
        writeln!(f, "  {:<10} {}", format!("{}:", self.backend), self.actual)?;
        if !self.page_history.is_empty() {
            writeln!(f, "  page history (model):")?;
            for line in &self.page_history {
                writeln!(f, "    {line}")?;
            }
        }
        writeln!(f, "  profile:   {}", self.profile)?;
        write!(f, "  model state after the op:\n{}", self.model_state)
    }
}

fn history_lines(model: &Model, key: Option<PageKey>) -> Vec<String> {
    let Some(key) = key else { return Vec::new() };
    let mut lines = vec![format!("{key}:")];
    for (index, event) in model.history().events(&key) {
        lines.push(match event {
            PageEvent::Populated { by } => format!("#{index}: populated (zero) by {by}"),
            PageEvent::Written { by, offset, width, old, new } => {
                format!("#{index}: {by} wrote {new:#x} ({width} bytes at {offset:#x}; was {old:#x})")
            }
            PageEvent::Dropped { by, digest } => format!("#{index}: dropped by {by} (content digest {digest:#010x})"),
        });
    }
    lines
}

/// What a value read at `offset` of a page says about the bug: the page's content before
/// it was last dropped (stale), or an overwritten value (lost write).
fn classify_read(model: &Model, key: Option<PageKey>, offset: u64, width: u64, got: u64) -> DivergenceKind {
    let Some(key) = key else { return DivergenceKind::ResultMismatch };
    if let Some((_, before)) = model.history().before_drop(&key) {
        let mut v = 0u64;
        for i in (0..width).rev() {
            v = (v << 8) | before[(offset + i) as usize] as u64;
        }
        if v == got && got != 0 {
            return DivergenceKind::StaleRead;
        }
    }
    let overwritten = model.history().events(&key).iter().any(|(_, e)| {
        matches!(e, PageEvent::Written { offset: o, width: w, old, .. } if *o as u64 == offset && *w as u64 == width && *old == got)
    });
    if overwritten {
        DivergenceKind::LostWrite
    } else {
        DivergenceKind::ResultMismatch
    }
}

pub struct Context<'a> {
    pub model: &'a Model,
    pub op_index: usize,
    pub op: &'a Op,
    pub backend: &'a str,
}

impl Context<'_> {
    fn divergence(&self, kind: DivergenceKind, subject: String, expected: String, actual: String, key: Option<PageKey>) -> Divergence {
        Divergence {
            kind,
            op_index: self.op_index,
            op: self.op.clone(),
            subject,
            expected,
            actual,
            page_history: history_lines(self.model, key),
            backend: self.backend.to_string(),
            profile: gmemfuzz_backends::Backend::profile(self.model).summary(),
            model_state: self.model.describe(),
            gpa: None,
        }
    }

    /// Compares an op's outcome. Guest accesses are compared one by one so the report
    /// names the access and its page.
    pub fn compare_outcome(&self, expected: &Outcome, actual: &Outcome) -> Option<Divergence> {
        if expected.admits(actual).agrees() {
            return None;
        }
        let subject = "result".to_string();
        let mismatch = |kind, key| Some(self.divergence(kind, subject.clone(), expected.to_string(), actual.to_string(), key));
        match (self.op, expected, actual) {
            (Op::Guest { accesses }, Outcome::Guest(exp), Outcome::Guest(act)) if exp.len() == act.len() => {
                let i = exp.iter().zip(act).position(|(e, a)| !e.admits(a)).expect("outcomes differ");
                let key = self.model.last_access_pages().get(i).copied().flatten();
                let access = &accesses[i];
                let kind = match (exp[i], act[i]) {
                    (AccessResult::Read(_), AccessResult::Read(got)) => {
                        classify_read(self.model, key.map(|k| k.0), access.gpa % PAGE_SIZE, access.width.bytes(), got)
                    }
                    _ => DivergenceKind::UnexpectedExit,
                };
                let what = match access.kind {
                    AccessKind::Read => "read",
                    AccessKind::Write(_) => "write",
                };
                let mut d = self.divergence(
                    kind,
                    format!("guest access {i} ({what} of {} bytes at gpa {:#x})", access.width.bytes(), access.gpa),
                    exp[i].to_string(),
                    act[i].to_string(),
                    key.map(|k| k.0),
                );
                d.gpa = Some(access.gpa);
                Some(d)
            }
            (Op::HostRead { gmem, offset, width }, Outcome::Value(_), Outcome::Value(got)) => {
                let key = PageKey::Gmem { gmem: gmem.0, index: offset / PAGE_SIZE };
                mismatch(classify_read(self.model, Some(key), offset % PAGE_SIZE, width.bytes(), *got), Some(key))
            }
            (_, _, Outcome::Sigbus) | (_, Outcome::Sigbus, _) => mismatch(DivergenceKind::UnexpectedExit, None),
            _ => mismatch(DivergenceKind::ResultMismatch, None),
        }
    }

    /// Compares the answers to one probe. `None` from the model means "either is fine".
    pub fn compare_probe(&self, probe: &Probe, expected: &Option<Observation>, actual: &Option<Observation>) -> Option<Divergence> {
        let mut d = self.probe_divergence(probe, expected, actual)?;
        if let Probe::GuestPage { gpa, .. } = probe {
            d.gpa = Some(*gpa);
        }
        Some(d)
    }

    fn probe_divergence(&self, probe: &Probe, expected: &Option<Observation>, actual: &Option<Observation>) -> Option<Divergence> {
        let expected = expected.as_ref()?;
        let actual = actual.as_ref()?;
        let subject = format!("{probe:?} after the op");
        let key = self.model.probe_page(probe);
        match (expected, actual) {
            (Observation::Content(e), Observation::Content(a)) => {
                if e.digest() == a.digest() {
                    return None;
                }
                let stale = key
                    .and_then(|k| self.model.history().before_drop(&k))
                    .is_some_and(|(_, before)| probe.digest_of(before) == a.digest() && probe.digest_of(before) != e.digest());
                let kind = if stale { DivergenceKind::StaleRead } else { DivergenceKind::StateMismatch };
                Some(self.divergence(kind, subject, show_content(e), show_content(a), key))
            }
            (e, a) if e == a => None,
            (Observation::Residency(exp), Observation::Residency(act)) => {
                // Pages still resident that this very op dropped: the op's invalidation was
                // missed, the same bug a stale read shows.
                let gmem = match probe {
                    Probe::Residency { gmem } => gmem.0,
                    _ => unreachable!("residency answers residency probes"),
                };
                let kept = (0..exp.len().min(act.len())).find(|&i| {
                    act[i]
                        && !exp[i]
                        && self
                            .model
                            .history()
                            .before_drop(&PageKey::Gmem { gmem, index: i as u64 })
                            .is_some_and(|(at, _)| at == self.op_index)
                });
                let kind = if kept.is_some() { DivergenceKind::StaleRead } else { DivergenceKind::StateMismatch };
                let key = kept.map(|i| PageKey::Gmem { gmem, index: i as u64 });
                Some(self.divergence(kind, subject, show_observation(expected), show_observation(actual), key))
            }
            _ => Some(self.divergence(DivergenceKind::UnexpectedExit, subject, show_observation(expected), show_observation(actual), key)),
        }
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
    }
}
