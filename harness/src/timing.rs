//! Where a session's time goes, phase by phase, as the runner sees it: resetting the
//! backend between programs (a fresh VM for software-protected VMs), the model, each op kind
//! on the kernel, and state comparison on the kernel. `gmemfuzz run` prints it, the lane
//! reads it from the guest's results.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gmemfuzz_backends::OpKind;
use serde::{Deserialize, Serialize};

/// Seconds spent per phase of the lockstep loop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// Backend reset between programs (VM, vCPU, slots and files of the last program).
    pub reset: f64,
    /// The model: applying ops, choosing probes, answering them.
    pub model: f64,
    /// The kernel's side of each op, by op kind name.
    pub ops: BTreeMap<String, f64>,
    /// The kernel's side of state comparison (probes, guest digests).
    pub compare: f64,
    /// The backend's reset by part (`Backend::reset_phases`), where it times them.
    #[serde(default)]
    pub reset_parts: BTreeMap<String, f64>,
    /// How many times the backend's costly reset parts ran (`Backend::reset_counts`).
    #[serde(default)]
    pub reset_counts: BTreeMap<String, u64>,
    /// Programs in which a concurrent group ran, and the seconds they took in the loop.
    #[serde(default)]
    pub racing_programs: u64,
    #[serde(default)]
    pub racing_seconds: f64,
    /// KCOV bookkeeping around the loop: reading traces, edges, comparison reruns.
    #[serde(default)]
    pub kcov: f64,
}

impl Breakdown {
    pub fn in_loop(&self) -> f64 {
        self.reset + self.model + self.compare + self.kcov + self.ops.values().sum::<f64>()
    }

    pub fn add_op(&mut self, kind: OpKind, spent: Duration) {
        *self.ops.entry(kind.name().to_string()).or_default() += spent.as_secs_f64();
    }

    /// Racing programs/s beside sequential ones, each over the time its programs took (the
    /// rest of the session's time is shared out by program count), or `None` without groups.
    pub fn racing_rates(&self, wall: f64, programs: u64) -> Option<(f64, f64)> {
        if self.racing_programs == 0 || programs == 0 {
            return None;
        }
        let sequential = programs.saturating_sub(self.racing_programs);
        // What each program costs outside `Runner::run_with` (generation, KCOV, the fuzzer).
        let overhead = (wall - (self.in_loop() - self.kcov)).max(0.0) / programs as f64;
        let racing_time = self.racing_seconds + overhead * self.racing_programs as f64;
        let sequential_time = (wall - racing_time).max(f64::MIN_POSITIVE);
        Some((self.racing_programs as f64 / racing_time.max(f64::MIN_POSITIVE), sequential as f64 / sequential_time))
    }

    /// The racing and sequential figures as a line, where groups ran.
    pub fn show_racing(&self, wall: f64, programs: u64) -> Option<String> {
        let (racing, sequential) = self.racing_rates(wall, programs)?;
        Some(format!(
            "racing programs (a concurrent group ran) {} at {racing:.1} programs/s, sequential {} at {sequential:.1} programs/s",
            self.racing_programs,
            programs - self.racing_programs
        ))
    }

    /// The breakdown over a session of `wall` seconds and `programs` programs: the rest of
    /// the time (generating programs, the fuzzer around the loop) is shown as `other`.
    pub fn show(&self, wall: f64, programs: u64) -> String {
        let share = |s: f64| if wall > 0.0 { 100.0 * s / wall } else { 0.0 };
        let per_program = |s: f64| if programs > 0 { 1e3 * s / programs as f64 } else { 0.0 };
        let mut ops: Vec<(&String, &f64)> = self.ops.iter().collect();
        ops.sort_by(|a, b| b.1.total_cmp(a.1));
        let op_total: f64 = self.ops.values().sum();
        let top: Vec<String> = ops.iter().take(5).map(|(k, s)| format!("{k} {:.0}%", share(**s))).collect();
        let parts: Vec<String> =
            self.reset_parts.iter().filter(|(_, s)| **s > 0.0).map(|(k, s)| format!("{k} {:.2}", per_program(*s))).collect();
        let counts: Vec<String> = self.reset_counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let counts = if counts.is_empty() { String::new() } else { format!(" [{}]", counts.join(", ")) };
        let reset_parts = if parts.is_empty() { String::new() } else { format!("; {}{counts}", parts.join(", ")) };
        let kcov =
            if self.kcov > 0.0 { format!(", kcov {:.0}% ({:.2} ms)", share(self.kcov), per_program(self.kcov)) } else { String::new() };
        format!(
            "time per program {:.2} ms: reset {:.0}% ({:.2} ms{reset_parts}), kernel ops {:.0}% ({:.2} ms; {}), compare {:.0}% ({:.2} ms), model {:.0}%{kcov}, other {:.0}%",
            per_program(wall),
            share(self.reset),
            per_program(self.reset),
            share(op_total),
            per_program(op_total),
            top.join(", "),
            share(self.compare),
            per_program(self.compare),
            share(self.model),
            share((wall - self.in_loop()).max(0.0)),
        )
    }
}

/// Times one phase: `let t = Stopwatch::start(); ...; breakdown.reset += t.secs();`
pub struct Stopwatch(Instant);

impl Stopwatch {
    pub fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }

    pub fn secs(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn racing_and_sequential_rates_split_the_time() {
        // 100 programs in 10 s, all of it in the loop; 10 racing programs took 4 s of it.
        let b = Breakdown { reset: 10.0, racing_programs: 10, racing_seconds: 4.0, ..Breakdown::default() };
        let (racing, sequential) = b.racing_rates(10.0, 100).unwrap();
        assert!((racing - 2.5).abs() < 1e-9 && (sequential - 15.0).abs() < 1e-9, "{racing} {sequential}");
        assert_eq!(Breakdown::default().racing_rates(10.0, 100), None);
    }

    #[test]
    fn shares_add_up_with_other() {
        let mut b = Breakdown { reset: 2.0, model: 0.5, compare: 1.0, ..Breakdown::default() };
        b.add_op(OpKind::Guest, Duration::from_secs(4));
        b.add_op(OpKind::Punch, Duration::from_millis(500));
        let shown = b.show(10.0, 100);
        assert!(
            shown.starts_with("time per program 100.00 ms: reset 20% (20.00 ms), kernel ops 45% (45.00 ms; guest 40%, punch 5%)"),
            "{shown}"
        );
        assert!(shown.ends_with("compare 10% (10.00 ms), model 5%, other 20%"), "{shown}");
    }
}
