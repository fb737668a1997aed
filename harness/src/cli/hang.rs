//! A watchdog for `gmemfuzz run`: a program still running after `HUNG_AFTER` is reported as
//! hung, with the program and the kernel stacks of this process's threads, while it still
//! hangs (the lane stops a boot whose console is silent for a minute; this speaks first).
//! A vCPU that never leaves KVM_RUN, an ioctl blocked on a lock: the stacks say which.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gmemfuzz_backends::Profile;

use crate::program::Program;

/// How long a program may run before it is reported (programs take milliseconds; under
/// TCG with KASAN, seconds at most).
pub const HUNG_AFTER: Duration = Duration::from_secs(30);

struct InFlight {
    since: Instant,
    index: usize,
    program: Program,
    reported: bool,
}

/// The program in flight, shared with the watchdog thread.
pub struct Watchdog {
    in_flight: Arc<Mutex<Option<InFlight>>>,
    findings: Option<PathBuf>,
    seed: u64,
}

impl Watchdog {
    /// Starts the watchdog thread: a program running `after` (`HUNG_AFTER`) is saved as
    /// `findings/hang-SEED-N.txt`.
    pub fn start(after: Duration, findings: Option<PathBuf>, seed: u64, profile: Profile) -> Watchdog {
        let in_flight: Arc<Mutex<Option<InFlight>>> = Arc::default();
        let watched = Arc::clone(&in_flight);
        let dir = findings.clone();
        std::thread::Builder::new()
            .name("gmemfuzz-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                let mut guard = watched.lock().unwrap_or_else(|e| e.into_inner());
                let Some(f) = guard.as_mut().filter(|f| !f.reported && f.since.elapsed() >= after) else { continue };
                f.reported = true;
                report(f, findings.as_ref(), seed, &profile);
            })
            .expect("spawning the watchdog thread");
        Watchdog { in_flight, findings: dir, seed }
    }

    /// Runs program `index` under watch.
    /// A program reported as hung that then finishes was slow, not hung (seen in the lane:
    /// `KVM_SET_MEMORY_ATTRIBUTES` over 2^22 GFNs and the reset undoing it, a `cond_resched()`
    /// per GFN under TCG): it says so, and its file becomes `slow-SEED-N.txt`.
    pub fn watch<T>(&self, index: usize, program: &Program, run: impl FnOnce() -> T) -> T {
        *self.lock() = Some(InFlight { since: Instant::now(), index, program: program.clone(), reported: false });
        let result = run();
        if let Some(f) = self.lock().take().filter(|f| f.reported) {
            let took = f.since.elapsed().as_secs_f64();
            eprintln!("gmemfuzz: program #{index} finished after {took:.1} s: slow, not hung");
            if let Some(dir) = &self.findings {
                let hang = finding(dir, "hang", self.seed, index);
                if let Ok(text) = std::fs::read_to_string(&hang) {
                    let slow = text.replacen("# found: hang: ", &format!("# found: slow ({took:.1} s in all): "), 1);
                    let _ = std::fs::write(finding(dir, "slow", self.seed, index), slow).and_then(|_| std::fs::remove_file(&hang));
                }
            }
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<InFlight>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn report(f: &InFlight, findings: Option<&PathBuf>, seed: u64, profile: &Profile) {
    let stacks = thread_stacks();
    let found = format!("hang: program #{} still running after {:.1} s", f.index, f.since.elapsed().as_secs_f64());
    eprintln!("gmemfuzz HANG: {found}; its threads in the kernel:\n{stacks}\n{}", crate::repro::text::print(&f.program));
    if let Some(dir) = findings {
        let path = finding(dir, "hang", seed, f.index);
        let saved = std::fs::create_dir_all(dir).and_then(|_| crate::fuzz::artifact::save(&path, &f.program, profile, &found));
        match saved {
            Ok(()) => eprintln!("gmemfuzz: wrote {}", path.display()),
            Err(e) => eprintln!("gmemfuzz: could not write {}: {e}", path.display()),
        }
    }
}

/// Where a `kind` (hang, slow) finding of program `index` goes.
fn finding(dir: &Path, kind: &str, seed: u64, index: usize) -> PathBuf {
    dir.join(format!("{kind}-{seed}-{index}.txt"))
}

/// Each thread of this process: its name, state, wait channel and kernel stack (`/proc`;
/// the stack needs root and CONFIG_STACKTRACE, else it is left out).
fn thread_stacks() -> String {
    let mut out = String::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return "(no /proc/self/task)".into() };
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        // stat: "tid (comm) S ...": the state follows the comm's closing parenthesis.
        let stat = read("stat");
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().next()).unwrap_or("?").to_string();
        out.push_str(&format!(
            "  thread {} ({}) state {state} wchan {}\n",
            task.file_name().to_string_lossy(),
            read("comm").trim(),
            read("wchan").trim()
        ));
        for line in read("stack").lines() {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_runs_too_long_is_saved_with_its_threads() {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-hang-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let program = crate::repro::parse("gmemfuzz-program v1\npunch g0 offset=0x0 len=0x1000\n").unwrap();
        let watchdog = Watchdog::start(Duration::from_millis(500), Some(dir.clone()), 7, Profile::host_6_18());
        watchdog.watch(3, &program, || std::thread::sleep(Duration::from_millis(100)));
        assert!(!dir.exists(), "a quick program is not reported");
        watchdog.watch(4, &program, || std::thread::sleep(Duration::from_millis(2500)));
        // Saved as hung while it ran; it finished, so it is kept as slow.
        assert!(!dir.join("hang-7-4.txt").exists());
        let saved = std::fs::read_to_string(dir.join("slow-7-4.txt")).expect("the slow program is saved");
        assert!(saved.contains("punch g0 offset=0x0 len=0x1000"), "{saved}");
        assert!(saved.contains("# found: slow ("), "{saved}");
        assert!(saved.contains("s in all): program #4 still running after"), "{saved}");
        let stacks = thread_stacks();
        assert!(stacks.contains("(gmemfuzz-watch") && stacks.contains(" state "), "{stacks}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
