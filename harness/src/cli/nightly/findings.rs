//! From crash files to findings: every `crash-<sha1>.txt` a target saved is replayed on the
//! backend that target runs (the repo's `Runner`), grouped by the signature of the typed
//! `Divergence` it shows, and each group's first program is minimized under a time limit
//! (`repro::shrink::minimize_with`) and written with its C reproducer.
//!
//! # What counts as one bug
//!
//! A divergence's signature is its kind, the kind of op it happened at and what was
//! compared there (`stale-read` at `punch` on `probe-residency`). One kernel fault shows
//! under several such signatures: a punch that silently does nothing gives a result
//! mismatch when the model expected EINVAL (`punch offset=0x8`) and a stale residency probe
//! when it expected the pages gone. Which one a crash shows depends on the program, not on
//! the fault. So a finding is the op kind where the kernel first departs from the model,
//! after minimization (the minimizer keeps kind and op, and may change the subject); each
//! signature under it is a variant with its own minimized program and C reproducer. Two
//! distinct bugs in the same op kind come out as one finding with two variants: both are
//! shown, none is hidden, and a maintainer reads them together in the same kernel function.
//! Findings that are not divergences (a broken platform or model invariant, a harness bug,
//! a crash that did not replay) are grouped by their kind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result};
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Profile};
use serde::Serialize;

use crate::fuzz::sim::{profiles as sim_profiles, run_sim, sim_backend, SimFinding};
use crate::oracle::Divergence;
use crate::program::Program;
use crate::repro::selftest::{self, op_lines, Origin};
use crate::repro::shrink::{minimize_with, Signature as ShrinkSignature};
use crate::repro::text::{print_document, Document, Expectation};
use crate::repro::{c, load_document};
use crate::runner::{RunError, Runner};

/// A crash's signature: the divergence kind, the kind of op it happened at and what was
/// compared there; for what is not a divergence, its kind alone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Signature {
    pub target: String,
    pub kind: String,
    pub op: String,
    pub subject: String,
}

impl Signature {
    fn of(target: &str, d: &Divergence) -> Signature {
        Signature { target: target.into(), kind: d.kind.slug().into(), op: d.op.kind().name().into(), subject: d.subject.slug().into() }
    }

    fn other(target: &str, kind: &str) -> Signature {
        Signature { target: target.into(), kind: kind.into(), op: "-".into(), subject: "-".into() }
    }

    /// The bug this signature is a variant of (see the module comment): a divergence at an
    /// op kind, or a non-divergence kind.
    pub fn bug(&self) -> Signature {
        if self.op == "-" {
            self.clone()
        } else {
            Signature { target: self.target.clone(), kind: "divergence".into(), op: self.op.clone(), subject: "-".into() }
        }
    }

    /// The directory name of its finding: `diff_kvm-divergence-punch`, or of a variant:
    /// `diff_kvm-stale-read-punch-probe-residency`.
    pub fn slug(&self) -> String {
        [&self.target, &self.kind, &self.op, &self.subject]
            .iter()
            .filter(|s| s.as_str() != "-")
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("-")
    }
}

/// What replaying a saved crash program showed.
enum Replayed {
    Divergence(Box<Divergence>),
    /// A finding that is not a divergence: its signature kind and message.
    Other(&'static str, String),
    /// A known kernel bug (counted, not a finding).
    Known(&'static str),
    /// The program ran clean: the crash did not reproduce.
    Clean,
}

fn replay(target: &str, doc: &Document) -> Result<Replayed> {
    let program = &doc.program;
    Ok(match target {
        "diff_kvm" => {
            let mut runner = Runner::new(crate::cli::kvm(doc.vm_type.unwrap_or(0))?);
            runner.filter_known = true;
            settle(runner.run(program).map(|t| t.known_bug))
        }
        "model" => settle(model_runner().run(program).map(|_| None)),
        "diff_sim" => {
            for mut runner in sim_runners(doc) {
                match run_sim(&mut runner, program) {
                    Ok(()) => {}
                    Err(SimFinding::Divergence(d)) => return Ok(Replayed::Divergence(d)),
                    Err(SimFinding::Invariant(v)) => return Ok(Replayed::Other("platform-invariant", v.to_string())),
                }
            }
            Replayed::Clean
        }
        other => anyhow::bail!("no replay for target {other}"),
    })
}

fn settle(result: Result<Option<(usize, &'static str)>, RunError>) -> Replayed {
    match result {
        Ok(Some((_, name))) => Replayed::Known(name),
        Ok(None) => Replayed::Clean,
        Err(RunError::Divergence(d)) => Replayed::Divergence(d),
        Err(RunError::Harness(e)) => Replayed::Other("harness-error", e.to_string()),
    }
}

/// The `model` target's runner: the model against itself, invariants checked.
fn model_runner() -> Runner<Model> {
    let mut runner = Runner::new(Model::new(Profile::host_6_18()));
    runner.check_model_invariants = true;
    runner
}

/// The simulated backends a diff_sim program ran on: those of the profile it records (all
/// four when it records none that matches).
fn sim_runners(doc: &Document) -> Vec<Runner<gmemfuzz_backends::sim::SimBackend>> {
    let all = sim_profiles();
    let matching: Vec<Profile> = all.iter().filter(|p| doc.profile.as_deref() == Some(&p.summary())).cloned().collect();
    let chosen = if matching.is_empty() { all.to_vec() } else { matching };
    chosen.into_iter().flat_map(|p| ["tdx", "snp"].map(|platform| Runner::new(sim_backend(platform, p.clone(), None)))).collect()
}

/// One signature of a finding, with its own minimized program.
#[derive(Clone, Debug, Serialize)]
pub struct Variant {
    /// After minimization (the subject may differ from the crashes' own).
    pub signature: Signature,
    pub slug: String,
    /// The crash programs that showed it.
    pub crashes: Vec<PathBuf>,
    /// The first line of what the replay showed.
    pub headline: String,
    /// The minimized program (text), or the first crash program when it could not be.
    pub program: String,
    pub program_ops: usize,
    pub minimized: bool,
    /// Minimization stopped at its time limit: the program diverges, but may not be minimal.
    pub minimization_cut_short: bool,
    /// The C reproducer's path (diff_kvm findings only: it runs on real KVM).
    pub c_repro: Option<PathBuf>,
    /// Why something is missing (no minimization, no C reproducer).
    pub notes: Vec<String>,
    /// The KVM selftest's path (`selftest.c` beside `repro.c`), where `gmemfuzz selftest`
    /// makes the program (else a note says why not).
    pub selftest: Option<PathBuf>,
    /// The C reproducer's source, until `write_finding` writes it.
    #[serde(skip)]
    c_source: Option<String>,
    /// The selftest's source, likewise.
    #[serde(skip)]
    selftest_source: Option<String>,
}

/// One deduplicated finding, as the report shows it: its smallest variant's program and
/// reproducer at the top, every variant below.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// `Signature::bug` of its variants.
    pub signature: Signature,
    pub slug: String,
    /// The crash programs of all its variants.
    pub crashes: Vec<PathBuf>,
    pub headline: String,
    pub program: String,
    pub program_ops: usize,
    pub minimized: bool,
    pub minimization_cut_short: bool,
    /// `findings/<slug>/repro.c`, the smallest variant's.
    pub c_repro: Option<PathBuf>,
    /// `findings/<slug>/selftest.c`, the smallest variant's.
    pub selftest: Option<PathBuf>,
    pub notes: Vec<String>,
    pub variants: Vec<Variant>,
}

/// What the crash files of one target came to.
#[derive(Default)]
pub struct Collected {
    pub findings: Vec<Finding>,
    /// Known kernel bugs the replays matched: name -> crash count.
    pub known: BTreeMap<String, usize>,
}

/// The `crash-*.txt` files under `dir`, sorted.
pub fn crash_programs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("crash-") && n.ends_with(".txt")))
        .collect();
    out.sort();
    out
}

/// Replays, groups and minimizes the crash programs of `target` (minimization shares the
/// time until `deadline`); writes each new finding under `findings_dir/<slug>/`.
pub fn collect(target: &str, crashes: &[PathBuf], findings_dir: &Path, deadline: Instant) -> Result<Collected> {
    let mut collected = Collected::default();
    let mut groups: BTreeMap<Signature, (Vec<PathBuf>, Document, Replayed)> = BTreeMap::new();
    for path in crashes {
        let doc = load_document(path, None).with_context(|| format!("reading {}", path.display()))?;
        let replayed = replay(target, &doc)?;
        let signature = match &replayed {
            Replayed::Known(name) => {
                *collected.known.entry(name.to_string()).or_default() += 1;
                continue;
            }
            Replayed::Divergence(d) => Signature::of(target, d),
            Replayed::Other(kind, _) => Signature::other(target, kind),
            Replayed::Clean => Signature::other(target, "not-reproduced"),
        };
        groups.entry(signature).or_insert_with(|| (Vec::new(), doc, replayed)).0.push(path.clone());
    }
    // Minimized first, then grouped: minimization may turn two signatures into one.
    let mut variants: BTreeMap<Signature, Variant> = BTreeMap::new();
    let count = groups.len();
    for (i, (signature, (paths, doc, replayed))) in groups.into_iter().enumerate() {
        // An equal share of what is left to each group still to minimize.
        let now = Instant::now();
        let share = deadline.saturating_duration_since(now) / (count - i) as u32;
        let v = variant(target, signature, paths, &doc, &replayed, now + share)?;
        match variants.get_mut(&v.signature) {
            Some(same) => {
                same.crashes.extend(v.crashes);
                if v.minimized && v.program_ops < same.program_ops {
                    let crashes = std::mem::take(&mut same.crashes);
                    *same = Variant { crashes, ..v };
                }
            }
            None => {
                variants.insert(v.signature.clone(), v);
            }
        }
    }
    let mut bugs: BTreeMap<Signature, Vec<Variant>> = BTreeMap::new();
    for (signature, v) in variants {
        bugs.entry(signature.bug()).or_default().push(v);
    }
    for (signature, variants) in bugs {
        collected.findings.push(write_finding(signature, variants, findings_dir)?);
    }
    Ok(collected)
}

/// Minimizes one signature's first crash program (until `deadline`) and makes its C
/// reproducer; the files are written by `write_finding`.
fn variant(
    target: &str,
    signature: Signature,
    crashes: Vec<PathBuf>,
    doc: &Document,
    replayed: &Replayed,
    deadline: Instant,
) -> Result<Variant> {
    let mut notes = Vec::new();
    let headline = match replayed {
        Replayed::Divergence(d) => d.to_string().lines().next().unwrap_or_default().to_string(),
        Replayed::Other(_, msg) => msg.lines().next().unwrap_or_default().to_string(),
        Replayed::Clean => "the saved program ran clean on replay (flaky, or it needs state of the fuzzing process)".into(),
        Replayed::Known(_) => unreachable!("known bugs are not findings"),
    };
    let shrunk = match replayed {
        Replayed::Divergence(d) => minimize(target, doc, d, deadline).map_err(|why| notes.push(format!("not minimized: {why}"))).ok(),
        _ => {
            notes.push("not minimized: only divergences are minimized".into());
            None
        }
    };
    let (signature, program, text, minimized, cut_short, headline) = match shrunk {
        Some(s) => (s.signature, s.program, s.text, true, s.cut_short, s.headline),
        None => (signature, doc.program.clone(), print_document(doc, &[]), false, false, headline),
    };
    if cut_short {
        notes.push(
            "minimization cut short at its time limit: the program diverges but may not be minimal (`gmemfuzz minimize` finishes it)"
                .into(),
        );
    }
    let (c_source, selftest_source) = if target == "diff_kvm" {
        let profile = crate::cli::kvm(doc.vm_type.unwrap_or(0))?.profile().clone();
        let c = c::emit(&program, &profile, "").map_err(|why| notes.push(format!("no C reproducer: {why}"))).ok();
        // A selftest beside it; where `gmemfuzz selftest` does not make the program, the
        // note says why and the night goes on.
        let slug = signature.slug();
        let origin = Origin { file: "program.txt", lines: op_lines(&text, program.ops.len()), name: Some(&slug) };
        let test = selftest::emit(&program, &profile, &origin).map_err(|why| notes.push(format!("no selftest: {why}"))).ok();
        (c, test)
    } else {
        notes.push("no C reproducer: the C reproducer runs real KVM; this finding is the model's or the simulation's".into());
        (None, None)
    };
    Ok(Variant {
        slug: signature.slug(),
        signature,
        crashes,
        headline,
        program_ops: program.ops.len(),
        program: text,
        minimized,
        minimization_cut_short: cut_short,
        c_repro: None,
        selftest: None,
        c_source,
        selftest_source,
        notes,
    })
}

/// Writes `dir/<slug>/`: the smallest variant's `program.txt`, `repro.c` and `selftest.c`,
/// and each variant's `original.txt`, `program.txt`, `repro.c` and `selftest.c` in
/// `<slug>/<variant slug>/`.
fn write_finding(signature: Signature, mut variants: Vec<Variant>, dir: &Path) -> Result<Finding> {
    let slug = signature.slug();
    let dir = dir.join(&slug);
    std::fs::create_dir_all(&dir)?;
    for v in &mut variants {
        let vdir = dir.join(&v.slug);
        std::fs::create_dir_all(&vdir)?;
        std::fs::copy(&v.crashes[0], vdir.join("original.txt"))?;
        std::fs::write(vdir.join("program.txt"), &v.program)?;
        if let Some(source) = v.c_source.take() {
            let path = vdir.join("repro.c");
            std::fs::write(&path, source)?;
            v.c_repro = Some(path);
        }
        if let Some(source) = v.selftest_source.take() {
            let path = vdir.join("selftest.c");
            std::fs::write(&path, source)?;
            v.selftest = Some(path);
        }
    }
    // Minimized before not, then the smallest.
    variants.sort_by_key(|v| (!v.minimized, v.program_ops));
    let first = &variants[0];
    std::fs::write(dir.join("program.txt"), &first.program)?;
    let c_repro = match &first.c_repro {
        Some(path) => {
            std::fs::copy(path, dir.join("repro.c"))?;
            Some(dir.join("repro.c"))
        }
        None => None,
    };
    let selftest = match &first.selftest {
        Some(path) => {
            std::fs::copy(path, dir.join("selftest.c"))?;
            Some(dir.join("selftest.c"))
        }
        None => None,
    };
    Ok(Finding {
        slug,
        signature,
        crashes: variants.iter().flat_map(|v| v.crashes.iter().cloned()).collect(),
        headline: first.headline.clone(),
        program: first.program.clone(),
        program_ops: first.program_ops,
        minimized: first.minimized,
        minimization_cut_short: variants.iter().any(|v| v.minimization_cut_short),
        c_repro,
        selftest,
        notes: first.notes.clone(),
        variants,
    })
}

/// A minimized program, its text (which records its expectation) and its signature.
struct Shrunk {
    program: Program,
    text: String,
    signature: Signature,
    cut_short: bool,
    /// The first line of the minimized program's divergence.
    headline: String,
}

/// Minimizes `doc`'s program, which diverged with `first`, keeping candidates that diverge
/// with the same kind at the same op kind; past `deadline` it keeps what it has.
fn minimize(target: &str, doc: &Document, first: &Divergence, deadline: Instant) -> Result<Shrunk, String> {
    let want = ShrinkSignature::of(first);
    let mut cut_short = false;
    let mut in_time = || {
        let ok = Instant::now() < deadline;
        cut_short |= !ok;
        ok
    };
    let (program, divergence, doc) = match target {
        // On a reused VM, then confirmed on a new one (what `gmemfuzz minimize` does).
        "diff_kvm" => {
            let vm_type = doc.vm_type.unwrap_or(0);
            let mut runner = Runner::new(crate::cli::kvm(vm_type).map_err(|e| format!("{e:#}"))?);
            let sequential = crate::repro::shrink::sequential(&mut runner, &doc.program, first);
            let (start, first) = match &sequential {
                Some((p, d)) => (p, &**d),
                None => (&doc.program, first),
            };
            let want = ShrinkSignature::of(first);
            let m = minimize_with(start, Box::new(first.clone()), |p| match in_time().then(|| runner.run(p))? {
                Err(RunError::Divergence(d)) if ShrinkSignature::of(&d) == want => Some(d),
                _ => None,
            });
            let mut fresh = Runner::new(crate::cli::kvm(vm_type).map_err(|e| format!("{e:#}"))?);
            let d = match fresh.run(&m.program) {
                Err(RunError::Divergence(d)) if ShrinkSignature::of(&d) == want => d,
                other => {
                    return Err(format!(
                        "the minimized program did not diverge the same way on a new VM (flaky?): {}",
                        other.map(|_| "clean".to_string()).unwrap_or_else(|e| e.to_string())
                    ))
                }
            };
            let profile = fresh.backend.profile();
            let doc = Document { vm_type: Some(profile.vm_type), profile: Some(profile.summary()), ..Document::new(m.program.clone()) };
            (m.program, d, doc)
        }
        "model" => {
            let mut runner = model_runner();
            let m = minimize_with(&doc.program, Box::new(first.clone()), |p| match in_time().then(|| runner.run(p))? {
                Err(RunError::Divergence(d)) if ShrinkSignature::of(&d) == want => Some(d),
                _ => None,
            });
            (m.program.clone(), m.divergence, doc_like(doc, m.program))
        }
        "diff_sim" => {
            let mut runners = sim_runners(doc);
            let m = minimize_with(&doc.program, Box::new(first.clone()), |p| {
                if !in_time() {
                    return None;
                }
                runners.iter_mut().find_map(|r| match run_sim(r, p) {
                    Err(SimFinding::Divergence(d)) if ShrinkSignature::of(&d) == want => Some(d),
                    _ => None,
                })
            });
            (m.program.clone(), m.divergence, doc_like(doc, m.program))
        }
        other => return Err(format!("no minimization for target {other}")),
    };
    let expect = Expectation::Divergence { kind: divergence.kind, op: divergence.op_index };
    let text = print_document(&Document { expect: Some(expect), ..doc }, &[]);
    let headline = divergence.to_string().lines().next().unwrap_or_default().to_string();
    Ok(Shrunk { program, text, signature: Signature::of(target, &divergence), cut_short, headline })
}

/// `program` recording what `doc` records of where it ran.
fn doc_like(doc: &Document, program: Program) -> Document {
    Document { vm_type: doc.vm_type, profile: doc.profile.clone(), ..Document::new(program) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_name_target_kind_op_and_subject() {
        let s = Signature { target: "diff_kvm".into(), kind: "stale-read".into(), op: "punch".into(), subject: "probe-host-page".into() };
        assert_eq!(s.slug(), "diff_kvm-stale-read-punch-probe-host-page");
        assert_eq!(Signature::other("model", "harness-error").slug(), "model-harness-error");
        let guest = crate::oracle::Subject::Probe {
            probe: gmemfuzz_backends::Probe::GuestPage { gpa: 0x100000, sample: [0; 4] },
            at: crate::runner::CompareAt::End,
        };
        assert_eq!(guest.slug(), "probe-guest-page");
    }

    #[test]
    fn divergences_at_one_op_kind_are_one_bug_other_kinds_stay_apart() {
        let sig = |kind: &str, subject: &str| Signature {
            target: "diff_kvm".into(),
            kind: kind.into(),
            op: "punch".into(),
            subject: subject.into(),
        };
        let stale = sig("stale-read", "probe-residency");
        let result = sig("result-mismatch", "result");
        assert_eq!(stale.bug(), result.bug());
        assert_eq!(stale.bug().slug(), "diff_kvm-divergence-punch");
        let bind = Signature { op: "bind".into(), ..result.clone() };
        assert_ne!(bind.bug(), result.bug());
        let harness = Signature::other("diff_kvm", "harness-error");
        assert_eq!(harness.bug(), harness);
        assert_ne!(harness.bug(), Signature::other("diff_kvm", "not-reproduced").bug());
    }

    #[test]
    fn a_finding_keeps_its_selftest_beside_the_c_reproducer() {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-finding-selftest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let crash = dir.join("crash-1.txt");
        std::fs::write(&crash, "gmemfuzz-program v2\ncheck\n").unwrap();
        let signature =
            Signature { target: "diff_kvm".into(), kind: "result-mismatch".into(), op: "punch".into(), subject: "result".into() };
        let variant = |ops, selftest: Option<&str>| Variant {
            signature: signature.clone(),
            slug: format!("{}-{ops}", signature.slug()),
            crashes: vec![crash.clone()],
            headline: "h".into(),
            program: "gmemfuzz-program v2\ncheck\n".into(),
            program_ops: ops,
            minimized: true,
            minimization_cut_short: false,
            c_repro: None,
            selftest: None,
            notes: if selftest.is_some() { vec![] } else { vec!["no selftest: op #0 is `destroy_vm`: ...".into()] },
            c_source: Some("/* repro */".into()),
            selftest_source: selftest.map(str::to_string),
        };
        let finding =
            write_finding(signature.clone(), vec![variant(3, Some("/* selftest */")), variant(5, None)], &dir.join("findings")).unwrap();
        let top = dir.join("findings").join(signature.slug());
        assert_eq!(finding.selftest.as_deref(), Some(top.join("selftest.c").as_path()));
        assert_eq!(std::fs::read_to_string(top.join("selftest.c")).unwrap(), "/* selftest */");
        assert!(top.join(&finding.variants[0].slug).join("selftest.c").exists());
        // The variant it refused has no selftest, and its note says why.
        assert!(finding.variants[1].selftest.is_none() && finding.variants[1].notes[0].starts_with("no selftest: "));
        assert!(!top.join(&finding.variants[1].slug).join("selftest.c").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
