//! The lane's share of a night: `gmemfuzz lane --seconds S --out OUT/lane` run as a
//! subprocess of this same binary where a lane kernel is cached (building one takes far
//! longer than a night's budget), its summary line read back for the report.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result};
use serde::Serialize;

/// What the lane did tonight, from its summary line (`lane: 3 boots, scenarios passed, lane
/// regressions 4 matched / 0 differed, 0 divergences, 0 kernel splats`).
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
    /// Set when the lane did not run or printed no summary: a harness problem.
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
    let mut lane = match launch(seconds, &dir, &out.join("lane.log")) {
        Ok(text) => parse(&text).unwrap_or_else(|| LaneRun {
            error: Some(format!("the lane printed no summary (see {})", out.join("lane.log").display())),
            ..LaneRun::default()
        }),
        Err(e) => LaneRun { error: Some(format!("{e:#}")), ..LaneRun::default() },
    };
    lane.seconds = start.elapsed().as_secs();
    lane.out = dir.display().to_string();
    lane
}

/// Starts `gmemfuzz lane` and gives what it printed (also kept in `log`).
fn launch(seconds: u64, dir: &Path, log: &Path) -> Result<String> {
    let exe = std::env::current_exe().context("finding this gmemfuzz binary")?;
    let output = Command::new(exe)
        .args(["lane", "--seconds", &seconds.to_string(), "--out"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .context("running gmemfuzz lane")?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    std::fs::write(log, &text).with_context(|| format!("writing {}", log.display()))?;
    // Its exit status says only whether it found something, which the summary says too.
    Ok(text)
}

/// The lane's summary line, read back.
fn parse(text: &str) -> Option<LaneRun> {
    let line = text.lines().rev().find(|l| l.starts_with("lane: ") && l.contains(" boots, "))?;
    let number_before = |word: &str| -> Option<u64> {
        let at = line.find(word)?;
        line[..at].split(|c: char| !c.is_ascii_digit()).rfind(|s| !s.is_empty())?.parse().ok()
    };
    Some(LaneRun {
        boots: number_before(" boots")?,
        scenarios_passed: line.contains("scenarios passed"),
        regressions_matched: number_before(" matched")?,
        regressions_differed: number_before(" differed")?,
        divergences: number_before(" divergences")?,
        splats: number_before(" kernel splats")?,
        ..LaneRun::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_gives_the_lanes_figures() {
        let text = "lane: booting\nlane: 3 boots, scenarios passed, lane regressions 4 matched / 1 differed, 2 divergences, 0 kernel splats\n  stats\n";
        let lane = parse(text).unwrap();
        assert_eq!(
            (lane.boots, lane.scenarios_passed, lane.regressions_matched, lane.regressions_differed, lane.divergences, lane.splats),
            (3, true, 4, 1, 2, 0)
        );
        assert!(lane.found());
        let clean =
            parse("lane: 1 boots, scenarios passed, lane regressions 4 matched / 0 differed, 0 divergences, 0 kernel splats").unwrap();
        assert!(!clean.found());
        assert!(
            !parse("lane: 1 boots, scenarios FAILED, lane regressions 0 matched / 0 differed, 0 divergences, 0 kernel splats")
                .unwrap()
                .scenarios_passed
        );
        assert_eq!(parse("error: no kernel"), None);
    }
}
