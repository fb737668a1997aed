//! Watching a boot while it runs, so that a kernel that oopses or hangs costs seconds, not
//! the boot's whole timeout: the console is read every second; a fatal splat (the fuzzer is
//! dead or stuck behind it) or a console silent for too long (the tools print a stats line
//! every 10 s) ends the boot.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::splat::{scan as scan_console, Splat};

/// Splats after which the guest's command cannot be trusted to finish.
const FATAL: [&str; 4] = ["Oops", "BUG", "panic", "KASAN"];

/// How long the rest of a fatal report (and the command's exit) may take to show.
pub const AFTER_FATAL: Duration = Duration::from_secs(10);

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
/// the module says: `after_fatal` after a fatal splat (`AFTER_FATAL`; `None`: not at all, as
/// for a replay counting a race's KASAN reports, which goes on after each). Returns why it
/// was stopped, if it was.
pub fn watch(child: &mut Child, console: &Path, deadline: Instant, after_fatal: Option<Duration>) -> std::io::Result<Option<Stopped>> {
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
        let stop = match (after_fatal, &fatal_since) {
            (None, _) => None,
            (Some(_), None) => {
                fatal_since = first_fatal(&text).map(|kind| (Instant::now(), kind));
                None
            }
            (Some(wait), Some((at, kind))) => (at.elapsed() >= wait).then(|| Stopped::Splat(kind.clone())),
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

    /// Watches `sleep 600` writing `console` until `deadline` seconds, as a boot.
    fn watch_sleep(name: &str, console_text: &str, deadline: u64, after_fatal: Option<Duration>) -> (Option<Stopped>, Duration) {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-watch-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let console = dir.join("console.log");
        std::fs::write(&console, console_text).unwrap();
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep").arg("600").process_group(0).spawn().unwrap();
        let t = Instant::now();
        let stop = watch(&mut child, &console, Instant::now() + Duration::from_secs(deadline), after_fatal).unwrap();
        assert!(child.try_wait().unwrap().is_some(), "the boot's process group was killed");
        let _ = std::fs::remove_dir_all(&dir);
        (stop, t.elapsed())
    }

    #[test]
    fn a_silent_boot_is_stopped_at_its_deadline() {
        // A deadline shorter than SILENCE: the test stops it by deadline, and the child dies.
        let (stop, took) = watch_sleep("deadline", "gmemfuzz-init: running cmdline command: sleep\n", 2, Some(AFTER_FATAL));
        assert_eq!(stop, Some(Stopped::Deadline));
        assert!(took < Duration::from_secs(10));
    }

    #[test]
    fn a_fatal_splat_stops_the_boot_unless_told_not_to() {
        let console = "gmemfuzz-init: running cmdline command: x\n[ 9.0] BUG: KASAN: slab-use-after-free in kvm_gmem_release+0x1/0x2\n";
        let (stop, _) = watch_sleep("fatal", console, 4, Some(Duration::from_secs(1)));
        assert_eq!(stop, Some(Stopped::Splat("KASAN".to_string())));
        let (stop, took) = watch_sleep("fatal-replay", console, 4, None);
        assert_eq!(stop, Some(Stopped::Deadline), "a replay boot goes on after a KASAN report");
        assert!(took >= Duration::from_secs(4));
    }
}
