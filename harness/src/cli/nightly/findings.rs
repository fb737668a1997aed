//! From crash files to findings: every `crash-<sha1>.txt` a target saved is replayed on the
//! backend that target runs (the repo's `Runner`), grouped by the signature of the typed
//! `Divergence` it shows, and each group's first program is minimized
//! (`repro::shrink`, `repro::cli::minimized`) and written with its C reproducer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use gmemfuzz_backends::model::Model;
use gmemfuzz_backends::{Backend, Profile};
use serde::Serialize;

use crate::fuzz::sim::{profiles as sim_profiles, run_sim, sim_backend, SimFinding};
use crate::oracle::Divergence;
use crate::program::Program;
use crate::repro::shrink::{minimize_with, Signature as ShrinkSignature};
use crate::repro::text::{print_document, Document, Expectation};
use crate::repro::{c, cli as repro_cli, load_document};
use crate::runner::{RunError, Runner};

/// What a finding is, for deduplication: the divergence kind, the kind of op it happened
/// at and what was compared there. Findings that are not divergences (a broken platform or
/// model invariant, a harness bug, a crash that did not replay) are grouped by their kind.
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

    /// The directory name of its finding: `diff_kvm-stale-read-punch-probe-residency`.
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
        "model" => {
            let mut runner = Runner::new(Model::new(Profile::host_6_18()));
            runner.check_model_invariants = true;
            settle(runner.run(program).map(|_| None))
        }
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

/// The simulated backends a diff_sim program ran on: those of the profile it records (all
/// four when it records none that matches).
fn sim_runners(doc: &Document) -> Vec<Runner<gmemfuzz_backends::sim::SimBackend>> {
    let all = sim_profiles();
    let matching: Vec<Profile> = all.iter().filter(|p| doc.profile.as_deref() == Some(&p.summary())).cloned().collect();
    let chosen = if matching.is_empty() { all.to_vec() } else { matching };
    chosen.into_iter().flat_map(|p| ["tdx", "snp"].map(|platform| Runner::new(sim_backend(platform, p.clone(), None)))).collect()
}

/// One deduplicated finding, as the report shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
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
    /// The C reproducer's path (diff_kvm findings only: it runs on real KVM).
    pub c_repro: Option<PathBuf>,
    /// Why something is missing (no minimization, no C reproducer).
    pub notes: Vec<String>,
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

/// Replays, groups and minimizes the crash programs of `target`; writes each new finding
/// under `findings_dir/<slug>/`.
pub fn collect(target: &str, crashes: &[PathBuf], findings_dir: &Path) -> Result<Collected> {
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
    for (signature, (paths, doc, replayed)) in groups {
        let finding = write_finding(target, signature, paths, &doc, &replayed, findings_dir)?;
        collected.findings.push(finding);
    }
    Ok(collected)
}

fn write_finding(
    target: &str,
    signature: Signature,
    crashes: Vec<PathBuf>,
    doc: &Document,
    replayed: &Replayed,
    dir: &Path,
) -> Result<Finding> {
    let slug = signature.slug();
    let dir = dir.join(&slug);
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(&crashes[0], dir.join("original.txt"))?;
    let mut notes = Vec::new();
    let headline = match replayed {
        Replayed::Divergence(d) => d.to_string().lines().next().unwrap_or_default().to_string(),
        Replayed::Other(_, msg) => msg.lines().next().unwrap_or_default().to_string(),
        Replayed::Clean => "the saved program ran clean on replay (flaky, or it needs state of the fuzzing process)".into(),
        Replayed::Known(_) => unreachable!("known bugs are not findings"),
    };
    let minimized = match replayed {
        Replayed::Divergence(d) => minimize(target, doc, d).map_err(|why| notes.push(format!("not minimized: {why}"))).ok(),
        _ => {
            notes.push("not minimized: only divergences are minimized".into());
            None
        }
    };
    let (program, text, was_minimized) = match minimized {
        Some((program, text)) => (program, text, true),
        None => (doc.program.clone(), print_document(doc, &[]), false),
    };
    std::fs::write(dir.join("program.txt"), &text)?;
    let c_repro = if target == "diff_kvm" {
        let profile = crate::cli::kvm(doc.vm_type.unwrap_or(0))?.profile().clone();
        match c::emit(&program, &profile, "") {
            Ok(source) => {
                let path = dir.join("repro.c");
                std::fs::write(&path, source)?;
                Some(path)
            }
            Err(why) => {
                notes.push(format!("no C reproducer: {why}"));
                None
            }
        }
    } else {
        notes.push("no C reproducer: the C reproducer runs real KVM; this finding is the model's or the simulation's".into());
        None
    };
    Ok(Finding {
        signature,
        slug,
        crashes,
        headline,
        program_ops: program.ops.len(),
        program: text,
        minimized: was_minimized,
        c_repro,
        notes,
    })
}

/// The minimized program and its text (which records its expectation), or why not.
fn minimize(target: &str, doc: &Document, first: &Divergence) -> Result<(Program, String), String> {
    let text = match target {
        // Minimizes on real KVM and confirms on a new VM (what `gmemfuzz minimize` does).
        "diff_kvm" => repro_cli::minimized(&doc.program, doc.vm_type.unwrap_or(0))
            .map(|(text, _, _)| text)
            .map_err(|code| format!("exit {code}, see above"))?,
        "model" => {
            let mut runner = Runner::new(Model::new(Profile::host_6_18()));
            runner.check_model_invariants = true;
            let want = ShrinkSignature::of(first);
            let m = minimize_with(&doc.program, Box::new(first.clone()), |p| match runner.run(p) {
                Err(RunError::Divergence(d)) if ShrinkSignature::of(&d) == want => Some(d),
                _ => None,
            });
            let expect = Expectation::Divergence { kind: m.divergence.kind, op: m.divergence.op_index };
            print_document(&Document { expect: Some(expect), ..doc_like(doc, m.program) }, &[])
        }
        "diff_sim" => {
            let want = ShrinkSignature::of(first);
            let mut runners = sim_runners(doc);
            let m = minimize_with(&doc.program, Box::new(first.clone()), |p| {
                runners.iter_mut().find_map(|r| match run_sim(r, p) {
                    Err(SimFinding::Divergence(d)) if ShrinkSignature::of(&d) == want => Some(d),
                    _ => None,
                })
            });
            print_document(&doc_like(doc, m.program), &[])
        }
        other => return Err(format!("no minimization for target {other}")),
    };
    let program = crate::repro::parse_document(&text).map_err(|e| format!("the minimized program does not parse: {e}"))?.program;
    Ok((program, text))
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
}
