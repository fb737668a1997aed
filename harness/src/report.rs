//! Structured results: what `gmemfuzz run`, `replay`, `scenarios` and `lane` found, as JSON
//! lines (`--json FILE`). The lane reads these from the guest's shared directory, and nightly
//! the lane's, instead of the tools' human output.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::oracle::Divergence;
use crate::repro::text;
use crate::stats::Stats;

/// One result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "kebab-case")]
pub enum Record {
    /// A scenario ran; `why` says how it failed.
    Scenario { name: String, passed: bool, why: Option<String> },
    /// A stored program was replayed; `recorded` is its `# expect:` line, `seen` what this
    /// run showed (`None`: a harness error, no verdict).
    Replay {
        file: String,
        recorded: Option<String>,
        seen: Option<String>,
        /// Runs made, and how many of them reproduced what the file records (a race is
        /// run until it does, or each time with `--keep-going`).
        #[serde(default)]
        tries: u32,
        #[serde(default)]
        hits: u32,
    },
    /// A divergence the known-bug filter did not absorb.
    Divergence {
        kind: String,
        op_index: usize,
        op: String,
        subject: String,
        expected: String,
        actual: String,
        /// The program in the text format.
        program: String,
    },
    /// The kernel's taint changed, or it logged a splat, while `program` ran; `report` is
    /// what the kernel logged (empty where its log could not be read).
    Taint {
        before: u64,
        after: u64,
        program: String,
        #[serde(default)]
        report: String,
    },
    /// A session's counters at its end.
    Stats { programs: u64, divergences: u64, known: u64, skipped_unknown: u64, line: String },
    /// Kernel coverage over a session (`gmemfuzz run --kcov`): edges and PCs reached in the
    /// code that counts, guided inputs kept, comparison operands kept, comparison reruns.
    Coverage {
        mode: String,
        vm_type: u64,
        edges: u64,
        pcs: u64,
        /// PCs read from traces, counted or not.
        traced: u64,
        corpus: u64,
        dictionary: u64,
        reruns: u64,
        /// Where the guided inputs came from and what each source found (empty when only
        /// counting).
        #[serde(default)]
        sources: String,
    },
    /// A lane session's end (`gmemfuzz lane --json FILE`): what its summary line says.
    Lane {
        boots: u32,
        scenarios_passed: bool,
        regressions_matched: u32,
        /// The lane regressions whose replay did not show what they record.
        regressions_differed: Vec<String>,
        divergences: u32,
        /// The kind of each kernel splat seen on a console (`WARNING`, `KASAN`, ...).
        splats: Vec<String>,
        /// Programs run and seconds spent fuzzing, over all boots.
        programs: u64,
        fuzz_seconds: f64,
    },
    /// Programs per second over a whole session, and where the time went.
    Throughput {
        programs: u64,
        ops: usize,
        seconds: f64,
        #[serde(default)]
        breakdown: crate::timing::Breakdown,
    },
}

impl Record {
    pub fn divergence(d: &Divergence, program: &crate::Program) -> Record {
        Record::Divergence {
            kind: d.kind.slug().to_string(),
            op_index: d.op_index,
            op: text::op_line(&d.op),
            subject: d.subject.to_string(),
            expected: d.expected.to_string(),
            actual: d.actual.to_string(),
            program: text::print(program),
        }
    }

    /// A session's counters; `line` names the VM type they ran on.
    /// The line a coverage record is shown as.
    pub fn coverage_line(&self) -> Option<String> {
        match self {
            Record::Coverage { mode, vm_type, edges, pcs, traced, corpus, dictionary, reruns, sources } => Some(format!(
                "kernel coverage (vm type {vm_type}, {mode}): {edges} edges, {pcs} PCs ({traced} traced); {corpus} inputs kept, {dictionary} comparison operands, {reruns} comparison reruns{}{sources}",
                if sources.is_empty() { "" } else { "; " }
            )),
            _ => None,
        }
    }

    pub fn stats(stats: &Stats, vm_type: u64) -> Record {
        Record::Stats {
            programs: stats.programs,
            divergences: stats.divergences,
            known: stats.known,
            skipped_unknown: stats.skipped_unknown,
            line: format!("vm type {vm_type}: {stats}"),
        }
    }
}

/// Appends records to a JSON-lines file, if one was asked for.
#[derive(Default)]
pub struct Sink {
    path: Option<PathBuf>,
}

impl Sink {
    pub fn new(path: Option<&Path>) -> Sink {
        Sink { path: path.map(Path::to_path_buf) }
    }

    /// Writes one record (nothing without a file). A record that cannot be written is an
    /// error: a lane that loses its results must not look clean.
    pub fn put(&self, record: &Record) -> anyhow::Result<()> {
        let Some(path) = &self.path else { return Ok(()) };
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(line.as_bytes())?;
        Ok(())
    }
}

/// Every record in a JSON-lines file; a line that is not a record is an error naming it.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    use anyhow::Context as _;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{} line {}: not a gmemfuzz record", path.display(), i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_a_file() {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.jsonl");
        let _ = std::fs::remove_file(&path);
        let sink = Sink::new(Some(&path));
        let records = vec![
            Record::Scenario { name: "a".into(), passed: false, why: Some("step 1".into()) },
            Record::Replay { file: "x.txt".into(), recorded: Some("clean".into()), seen: None, tries: 1, hits: 0 },
            Record::Throughput { programs: 3, ops: 16, seconds: 1.5, breakdown: Default::default() },
        ];
        for r in &records {
            sink.put(r).unwrap();
        }
        assert_eq!(read(&path).unwrap(), records);
        std::fs::write(&path, "{\"record\":\"scenario\"}\n").unwrap();
        let e = format!("{:#}", read(&path).unwrap_err());
        assert!(e.contains("line 1: not a gmemfuzz record"), "{e}");
        assert_eq!(read(&dir.join("absent.jsonl")).unwrap(), vec![]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
