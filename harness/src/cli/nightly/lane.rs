//! The lane's share of a night: `gmemfuzz lane --seconds S --out OUT/lane --json
//! OUT/lane.jsonl` run as a subprocess of this same binary where a lane kernel is cached
//! (building one takes far longer than a night's budget), its summary record read back for
//! the report.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::report::{self, Record};

/// What the lane did tonight, from its summary record (`Record::Lane`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LaneRun {
    pub seconds: u64,
    pub boots: u64,
    pub scenarios_passed: bool,
    pub regressions_matched: u64,
    pub regressions_differed: u64,
    pub divergences: u64,
    pub splats: u64,
    /// `OUT/lane/`: findings, console logs; `OUT/lane.log`: what the lane printed.
    pub out: String,
    /// Set when the lane did not run or wrote no summary record: a harness problem.
    pub error: Option<String>,
}

impl LaneRun {
    /// Whether the lane saw something: a finding of the night.
    pub fn found(&self) -> bool {
        self.error.is_none() && (!self.scenarios_passed || self.regressions_differed > 0 || self.divergences > 0 || self.splats > 0)
    }
}

/// Runs the lane for `seconds` of fuzzing into `out/lane`.
pub fn run(seconds: u64, out: &Path) -> LaneRun {
    let start = Instant::now();
    let dir = out.join("lane");
    let (log, results) = (out.join("lane.log"), out.join("lane.jsonl"));
    let mut lane = match launch(seconds, &dir, &log, &results).and_then(|()| report::read(&results)) {
        Ok(records) => from_records(&records).unwrap_or_else(|| LaneRun {
            error: Some(format!("the lane wrote no summary record to {} (see {})", results.display(), log.display())),
            ..LaneRun::default()
        }),
        Err(e) => LaneRun { error: Some(format!("{e:#}")), ..LaneRun::default() },
    };
    lane.seconds = start.elapsed().as_secs();
    lane.out = dir.display().to_string();
    lane
}

/// Runs `gmemfuzz lane` with its results going to `results` and what it printed to `log`.
fn launch(seconds: u64, dir: &Path, log: &Path, results: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("finding this gmemfuzz binary")?;
    match std::fs::remove_file(results) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e).with_context(|| format!("removing {}", results.display())),
        _ => {}
    }
    let output = Command::new(exe)
        .args(["lane", "--seconds", &seconds.to_string(), "--out"])
        .arg(dir)
        .arg("--json")
        .arg(results)
        .stdin(Stdio::null())
        .output()
        .context("running gmemfuzz lane")?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    std::fs::write(log, &text).with_context(|| format!("writing {}", log.display()))?;
    // Its exit status says only whether it found something, which the record says too.
    Ok(())
}

/// The lane's summary record (the last, should there be several), read back.
fn from_records(records: &[Record]) -> Option<LaneRun> {
    records.iter().rev().find_map(|r| match r {
        Record::Lane { boots, scenarios_passed, regressions_matched, regressions_differed, divergences, splats, .. } => Some(LaneRun {
            boots: u64::from(*boots),
            scenarios_passed: *scenarios_passed,
            regressions_matched: u64::from(*regressions_matched),
            regressions_differed: regressions_differed.len() as u64,
            divergences: u64::from(*divergences),
            splats: splats.len() as u64,
            ..LaneRun::default()
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane_record(scenarios_passed: bool, differed: &[&str], divergences: u32, splats: &[&str]) -> Record {
        Record::Lane {
            boots: 3,
            scenarios_passed,
            regressions_matched: 4,
            regressions_differed: differed.iter().map(|s| s.to_string()).collect(),
            divergences,
            splats: splats.iter().map(|s| s.to_string()).collect(),
            programs: 1200,
            fuzz_seconds: 300.0,
        }
    }

    #[test]
    fn the_summary_record_gives_the_lanes_figures() {
        // As the lane writes it: JSON lines, read back through the results file.
        let dir = std::env::temp_dir().join(format!("gmemfuzz-nightly-lane-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lane.jsonl");
        let _ = std::fs::remove_file(&file);
        let sink = report::Sink::new(Some(&file));
        sink.put(&Record::Scenario { name: "s".into(), passed: true, why: None }).unwrap();
        sink.put(&lane_record(true, &["corpus/lane/a.txt"], 2, &["WARNING"])).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.lines().nth(1).unwrap().starts_with(r#"{"record":"lane","boots":3,"scenarios_passed":true,"#), "{text}");
        let lane = from_records(&report::read(&file).unwrap()).unwrap();
        assert_eq!(
            (lane.boots, lane.scenarios_passed, lane.regressions_matched, lane.regressions_differed, lane.divergences, lane.splats),
            (3, true, 4, 1, 2, 1)
        );
        assert!(lane.found());
        let _ = std::fs::remove_dir_all(&dir);

        assert!(!from_records(&[lane_record(true, &[], 0, &[])]).unwrap().found());
        let failed = from_records(&[lane_record(false, &[], 0, &[])]).unwrap();
        assert!(!failed.scenarios_passed && failed.found());
        assert_eq!(from_records(&[Record::Scenario { name: "s".into(), passed: true, why: None }]), None);
    }
}
