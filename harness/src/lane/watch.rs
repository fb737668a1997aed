//! Watching a boot while it runs, so that a kernel that oopses or hangs costs seconds, not
//! the boot's whole timeout: the console is read every second; a fatal splat (the fuzzer is
//! dead or stuck behind it) or a console silent for too long (the tools print a stats line
//! every 10 s) ends the boot.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use super::console::{scan_console, Splat};

/// Splats after which the guest's command cannot be trusted to finish.
const FATAL: [&str; 4] = ["Oops", "BUG", "panic", "KASAN"];

/// How long the rest of a fatal report (and the command's exit) may take to show.
const AFTER_FATAL: Duration = Duration::from_secs(10);

/// A console silent this long, once the guest's command runs, is a hang.
pub const SILENCE: Duration = Duration::from_secs(60);

/// Why a boot was stopped before its command finished.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// A fatal splat; the guest was given `AFTER_FATAL` to finish, and did not.
    Splat(String),
    /// Nothing on the console for this long.
    Silent(Duration),
    /// The boot's deadline passed.
    Deadline,
}

/// Waits for the boot `child` (its own process group) writing `console`; stops it early as
/// the module says. Returns why it was stopped, if it was.
pub fn watch(child: &mut Child, console: &Path, deadline: Instant) -> std::io::Result<Option<Stopped>> {
    let mut last_len = 0;
    let mut last_change = Instant::now();
    let mut fatal_since: Option<(Instant, String)> = None;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_secs(1));
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if text.len() != last_len {
            last_len = text.len();
            last_change = Instant::now();
        }
        let stop = if fatal_since.is_none() {
            fatal_since = first_fatal(&text).map(|kind| (Instant::now(), kind));
            None
        } else {
            fatal_since.as_ref().filter(|(at, _)| at.elapsed() >= AFTER_FATAL).map(|(_, kind)| Stopped::Splat(kind.clone()))
        };
        let running = text.contains("gmemfuzz-init: running");
        let stop = stop.or_else(|| (running && last_change.elapsed() >= SILENCE).then(|| Stopped::Silent(last_change.elapsed())));
        let stop = stop.or_else(|| (Instant::now() >= deadline).then_some(Stopped::Deadline));
        if let Some(stop) = stop {
            kill_group(child);
            return Ok(Some(stop));
        }
    }
}

fn first_fatal(console: &str) -> Option<String> {
    scan_console(console).into_iter().map(|Splat { kind, .. }| kind).find(|k| FATAL.iter().any(|f| k.contains(f))).map(str::to_string)
}

/// Ends the boot script and its QEMU (both in the child's process group).
fn kill_group(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(-(child.id() as i32));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oops_and_kasan_are_fatal_warn_is_not() {
        assert_eq!(first_fatal("[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n"), None);
        assert_eq!(first_fatal("[ 1.0] Oops: invalid opcode: 0000 [#1] SMP\n").as_deref(), Some("Oops"));
        assert_eq!(first_fatal("[ 1.0] BUG: KASAN: use-after-free in f+0x1/0x2\n").as_deref(), Some("KASAN"));
    }

    #[test]
    fn a_silent_boot_is_stopped_as_a_hang() {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let console = dir.join("console.log");
        std::fs::write(&console, "gmemfuzz-init: running cmdline command: sleep\n").unwrap();
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep").arg("600").process_group(0).spawn().unwrap();
        let t = Instant::now();
        // A deadline shorter than SILENCE: the test stops it by deadline, and the child dies.
        let stop = watch(&mut child, &console, Instant::now() + Duration::from_secs(2)).unwrap();
        assert_eq!(stop, Some(Stopped::Deadline));
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(child.try_wait().unwrap().is_some(), "the boot's process group was killed");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
