//! The night's report in three forms: `report.md` for a person, `report.json` for tools,
//! `junit.xml` for CI dashboards (one testcase per target, a failure per new finding).

use std::fmt::Write as _;

use serde::Serialize;

use super::findings::{Finding, Variant};
use super::lane::LaneRun;
use super::opmix::OpMix;

/// One target's part of the night.
#[derive(Clone, Debug, Serialize)]
pub struct TargetRun {
    pub target: String,
    /// Fuzzing seconds, as measured (fork mode, merge not included).
    pub seconds: f64,
    pub jobs: usize,
    pub execs: u64,
    pub execs_per_s: f64,
    /// Corpus files before the run (after the repository's seeds were added) and after the merge.
    pub corpus_before: usize,
    pub corpus_after: usize,
    pub seeds_added: usize,
    /// Crash programs the target saved (`crash-*.txt`).
    pub crashes: usize,
    /// What the fuzzing processes executed, op kind by op kind, and known bugs they hit.
    pub op_mix: OpMix,
    pub findings: Vec<Finding>,
    /// Known kernel bugs the crash replays matched (the targets filter them, so these are rare).
    pub known_bugs: Vec<(String, usize)>,
    /// Set when the run or the merge failed: a harness problem, not a finding.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub budget_s: u64,
    /// Wall-clock seconds the night took, all of it.
    pub took_s: f64,
    pub jobs: usize,
    pub kernel: String,
    pub targets: Vec<TargetRun>,
    /// The lane's share, where it ran.
    pub lane: Option<LaneRun>,
    /// Targets not run here, and why.
    pub skipped: Vec<(String, String)>,
}

impl Report {
    /// New findings: the targets' deduplicated ones, and the lane's when it found anything
    /// (its divergences and splats are in its own directory, counted as one).
    pub fn new_findings(&self) -> usize {
        self.targets.iter().map(|t| t.findings.len()).sum::<usize>() + self.lane.as_ref().is_some_and(LaneRun::found) as usize
    }

    pub fn errors(&self) -> usize {
        self.targets.iter().filter(|t| t.error.is_some()).count() + self.lane.as_ref().is_some_and(|l| l.error.is_some()) as usize
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let n = self.new_findings();
        let verdict = if n == 0 { "no new finding".to_string() } else { format!("**{n} new finding{}**", if n == 1 { "" } else { "s" }) };
        let _ = writeln!(md, "# gmemfuzz nightly: {verdict}\n");
        let _ = writeln!(md, "Budget {} s (took {:.0} s), {} jobs; host: {}.\n", self.budget_s, self.took_s, self.jobs, self.kernel);
        let _ = writeln!(md, "| target | seconds | execs | execs/s | corpus before | corpus after | crashes | new findings |");
        let _ = writeln!(md, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for t in &self.targets {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {} |",
                t.target,
                t.seconds,
                t.execs,
                t.execs_per_s,
                t.corpus_before,
                t.corpus_after,
                t.crashes,
                t.findings.len()
            );
        }
        if let Some(l) = &self.lane {
            self.lane_section(&mut md, l);
        }
        for (target, why) in &self.skipped {
            let _ = writeln!(md, "\nNot run: `{target}`: {why}");
        }
        for t in &self.targets {
            if let Some(e) = &t.error {
                let _ = writeln!(md, "\nHARNESS ERROR in `{}` (not a finding): {e}", t.target);
            }
            for (bug, count) in &t.known_bugs {
                let _ = writeln!(md, "\nKnown bug `{bug}` ({}): {count} crash program(s), counted, not a finding.", t.target);
            }
        }
        self.known_bugs(&mut md);
        self.op_mix(&mut md);
        for t in &self.targets {
            for f in &t.findings {
                let _ = writeln!(md, "\n## {}\n", f.slug);
                let _ = writeln!(md, "{}\n", f.headline);
                let _ = writeln!(
                    md,
                    "{} crash program(s) in {} variant(s); the smallest {} program ({} ops), `findings/{}/program.txt`{}:\n",
                    f.crashes.len(),
                    f.variants.len(),
                    if f.minimized { "minimized" } else { "NOT minimized" },
                    f.program_ops,
                    f.slug,
                    if f.c_repro.is_some() { format!(", C reproducer `findings/{}/repro.c`", f.slug) } else { String::new() }
                );
                let _ = writeln!(md, "```\n{}```", f.program);
                if f.selftest.is_some() {
                    let _ = writeln!(md, "\nKVM selftest: `findings/{}/selftest.c` (for tools/testing/selftests/kvm/x86/).", f.slug);
                }
                for note in &f.notes {
                    let _ = writeln!(md, "\n{note}");
                }
                // The first variant is the one shown above.
                for (i, v) in f.variants.iter().enumerate() {
                    variant(&mut md, &f.slug, v, i > 0);
                }
            }
        }
        md
    }

    fn lane_section(&self, md: &mut String, l: &LaneRun) {
        let _ = writeln!(md, "\n## Lane (a lane kernel under QEMU, VM type 1)\n");
        match &l.error {
            Some(e) => {
                let _ = writeln!(md, "HARNESS ERROR in the lane (not a finding): {e}");
            }
            None => {
                let _ = writeln!(
                    md,
                    "{} s, {} boots; scenarios {}; lane regressions {} matched, {} differed; **{} divergences, {} kernel splats**{}. Findings and console logs: `{}`.",
                    l.seconds,
                    l.boots,
                    if l.scenarios_passed { "passed" } else { "FAILED" },
                    l.regressions_matched,
                    l.regressions_differed,
                    l.divergences,
                    l.splats,
                    if l.found() { " (a new finding)" } else { "" },
                    l.out
                );
            }
        }
    }

    /// Known kernel bugs hit: counted inside the targets (filtered, they do not crash them)
    /// and among crash replays.
    fn known_bugs(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Known kernel bugs (counted, not findings)\n");
        for t in &self.targets {
            let replayed: usize = t.known_bugs.iter().map(|(_, n)| n).sum();
            let names = t.known_bugs.iter().map(|(bug, n)| format!("`{bug}` {n}")).collect::<Vec<_>>().join(", ");
            let _ = writeln!(
                md,
                "- {}: {} program(s) hit a known bug (`harness/src/known.rs`) while fuzzing; {} crash program(s) replayed as a known bug{}",
                t.target,
                t.op_mix.known_bug_programs,
                replayed,
                if names.is_empty() { String::new() } else { format!(" ({names})") }
            );
        }
    }

    /// The op-kind mix: how often each op kind ran in each target, and its share there.
    fn op_mix(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Op-kind mix (ops executed while fuzzing; errno failures in brackets)\n");
        let _ = writeln!(md, "| op kind | {} |", self.targets.iter().map(|t| t.target.as_str()).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(md, "| --- |{}", " ---: |".repeat(self.targets.len()));
        let mut kinds: Vec<&String> = self.targets.iter().flat_map(|t| t.op_mix.ops.keys()).collect();
        kinds.sort();
        kinds.dedup();
        for kind in kinds {
            let cells: Vec<String> = self
                .targets
                .iter()
                .map(|t| {
                    let c = t.op_mix.ops.get(kind).copied().unwrap_or_default();
                    let share = 100.0 * c.ran as f64 / t.op_mix.ops_ran().max(1) as f64;
                    format!("{} ({}) {share:.1}%", c.ran, c.errors)
                })
                .collect();
            let _ = writeln!(md, "| {kind} | {} |", cells.join(" | "));
        }
        let programs: Vec<String> =
            self.targets.iter().map(|t| format!("{} ({} processes)", t.op_mix.programs, t.op_mix.processes)).collect();
        let _ = writeln!(md, "| programs | {} |", programs.join(" | "));
        let _ = writeln!(
            md,
            "\nCounted by each fuzzing process (`GMEMFUZZ_STATS_DIR`); a process killed by a timeout or a signal loses its last second."
        );
    }

    pub fn junit(&self) -> String {
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        // A new finding is a failure; a target that did not run (harness error) is an error.
        let tests = self.targets.len() + self.lane.is_some() as usize;
        let counts = format!("tests=\"{tests}\" failures=\"{}\" errors=\"{}\"", self.new_findings(), self.errors());
        let _ = writeln!(xml, "<testsuites name=\"gmemfuzz nightly\" {counts}>");
        let _ = writeln!(xml, "  <testsuite name=\"gmemfuzz nightly\" {counts}>");
        for t in &self.targets {
            let _ = writeln!(xml, "    <testcase classname=\"nightly\" name=\"{}\" time=\"{:.1}\">", esc(&t.target), t.seconds);
            for f in &t.findings {
                let _ = writeln!(
                    xml,
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    esc(&f.headline),
                    esc(&f.slug),
                    esc(&f.program)
                );
            }
            if let Some(e) = &t.error {
                let _ = writeln!(xml, "      <error message=\"{}\" type=\"harness\"/>", esc(e));
            }
            let _ = writeln!(
                xml,
                "      <system-out>{}</system-out>",
                esc(&format!("{} execs, {:.0} execs/s, corpus {} -> {}", t.execs, t.execs_per_s, t.corpus_before, t.corpus_after))
            );
            let _ = writeln!(xml, "    </testcase>");
        }
        if let Some(l) = &self.lane {
            let _ = writeln!(xml, "    <testcase classname=\"nightly\" name=\"lane\" time=\"{}\">", l.seconds);
            if l.found() {
                let what = format!("{} divergences, {} kernel splats, scenarios passed: {}", l.divergences, l.splats, l.scenarios_passed);
                let _ = writeln!(xml, "      <failure message=\"{}\" type=\"lane\">{}</failure>", esc(&what), esc(&l.out));
            }
            if let Some(e) = &l.error {
                let _ = writeln!(xml, "      <error message=\"{}\" type=\"harness\"/>", esc(e));
            }
            let _ = writeln!(xml, "    </testcase>");
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }
}

/// One variant of a finding: its signature and files, and its program when asked.
fn variant(md: &mut String, finding: &str, v: &Variant, show_program: bool) {
    let state = match (v.minimized, v.minimization_cut_short) {
        (true, false) => "minimized",
        (true, true) => "minimization CUT SHORT at its time limit",
        (false, _) => "NOT minimized",
    };
    let _ = writeln!(
        md,
        "\n- variant `{}`: {} crash program(s), {state}, {} ops, `findings/{finding}/{}/`: {}",
        v.slug,
        v.crashes.len(),
        v.program_ops,
        v.slug,
        v.headline
    );
    if show_program {
        let _ = writeln!(md, "\n  ```\n{}  ```", v.program.lines().map(|l| format!("  {l}\n")).collect::<String>());
    }
}

/// Text as XML character data or an attribute value: markup escaped by quick-xml, and the
/// control characters XML 1.0 cannot carry at all replaced.
fn esc(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() && !matches!(c, '\t' | '\n' | '\r') { '?' } else { c }).collect();
    quick_xml::escape::escape(clean.as_str()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_that_did_not_run_is_a_junit_error_not_a_failure() {
        let run = |target: &str, error: Option<&str>| TargetRun {
            target: target.into(),
            seconds: 1.0,
            jobs: 1,
            execs: 10,
            execs_per_s: 10.0,
            corpus_before: 1,
            corpus_after: 2,
            seeds_added: 1,
            crashes: 0,
            op_mix: OpMix::default(),
            findings: Vec::new(),
            known_bugs: Vec::new(),
            error: error.map(str::to_string),
        };
        let report = Report {
            budget_s: 10,
            took_s: 11.0,
            jobs: 1,
            kernel: "k".into(),
            targets: vec![run("model", None), run("diff_sim", Some("exit <2>"))],
            lane: None,
            skipped: Vec::new(),
        };
        let xml = report.junit();
        assert!(xml.contains("<testsuites name=\"gmemfuzz nightly\" tests=\"2\" failures=\"0\" errors=\"1\">"), "{xml}");
        assert!(xml.contains("<error message=\"exit &lt;2&gt;\" type=\"harness\"/>"), "{xml}");
        assert!(report.markdown().contains("HARNESS ERROR in `diff_sim`"));
    }

    #[test]
    fn xml_text_is_escaped_and_control_characters_dropped() {
        assert_eq!(esc("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;?");
    }
}
