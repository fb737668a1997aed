//! The op-kind mix of a night: what the fuzzing processes of one target executed, summed
//! from the counters each one keeps in `GMEMFUZZ_STATS_DIR` (`fuzz::stats_file`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpMix {
    /// Fuzzing processes whose counters were read (fork mode starts one per job).
    pub processes: usize,
    pub programs: u64,
    /// Programs that hit a known kernel bug (filtered in the target: counted, not a finding).
    pub known_bug_programs: u64,
    /// Op kind -> (ran, of which failed with an errno, skipped by the runner).
    pub ops: BTreeMap<String, OpCount>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCount {
    pub ran: u64,
    pub errors: u64,
    pub skipped: u64,
}

impl OpMix {
    /// Sums the `*.json` counter files under `dir` (none there: an empty mix).
    pub fn read(dir: &Path) -> OpMix {
        let mut mix = OpMix::default();
        let Ok(entries) = std::fs::read_dir(dir) else { return mix };
        for path in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(v) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()) {
                    mix.add(&v);
                }
            }
        }
        mix
    }

    /// Adds one process's counters (`fuzz::stats_file::to_json`).
    fn add(&mut self, v: &serde_json::Value) {
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        self.processes += 1;
        self.programs += n(&v["programs"]);
        self.known_bug_programs += n(&v["known"]);
        for (kind, c) in v["ops"].as_object().into_iter().flatten() {
            let e = self.ops.entry(kind.clone()).or_default();
            e.ran += n(&c[0]);
            e.errors += n(&c[1]);
            e.skipped += n(&c[2]);
        }
    }

    pub fn ops_ran(&self) -> u64 {
        self.ops.values().map(|c| c.ran).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;
    use gmemfuzz_backends::{Op, Outcome};

    #[test]
    fn the_counters_of_every_process_are_summed() {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-opmix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut stats = Stats { programs: 2, known: 1, ..Stats::default() };
        stats.count(&Op::DestroyVm, &Outcome::Ok);
        stats.count(&Op::DestroyVm, &Outcome::Err(gmemfuzz_backends::Errno::EINVAL));
        let json = crate::fuzz::stats_file::to_json(&stats).to_string();
        std::fs::write(dir.join("model-1.json"), &json).unwrap();
        std::fs::write(dir.join("model-2.json"), &json).unwrap();
        std::fs::write(dir.join("model-3.tmp"), "half").unwrap();
        let mix = OpMix::read(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!((mix.processes, mix.programs, mix.known_bug_programs), (2, 4, 2));
        assert_eq!(mix.ops["destroy_vm"], OpCount { ran: 4, errors: 2, skipped: 0 });
        assert_eq!(mix.ops_ran(), 4);
    }
}
