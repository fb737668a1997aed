//! Kernel splats: the lines by which the kernel says it found something wrong (a WARN, a
//! KASAN report, lockdep, an oops). The lane reads them from a boot's console; inside the
//! guest, `run` and `replay` read them from the kernel log as programs run (`KernelLog`), so
//! that a splat is a finding with the program that caused it, and a race's splat can be
//! counted try by try.

use std::fs::File;
use std::io::{ErrorKind, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::OpenOptionsExt as _;

/// Kernel log lines that mean the kernel itself found something wrong, and the kind each
/// is reported as.
const SPLATS: [(&str, &str); 9] = [
    ("WARNING: ", "WARN"),
    ("KASAN: ", "KASAN"),
    ("BUG: ", "BUG"),
    ("UBSAN: ", "UBSAN"),
    ("possible circular locking dependency", "lockdep"),
    ("possible recursive locking", "lockdep"),
    ("rcu: INFO: rcu_sched self-detected stall", "RCU stall"),
    ("Oops: ", "Oops"),
    ("Kernel panic", "panic"),
];

/// The kind a console that stopped talking is reported as (see `lane::watch`).
pub const HANG: &str = "hang";

/// A kernel splat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splat {
    pub kind: &'static str,
    /// The line and the ones after it, up to the end of the report.
    pub excerpt: String,
}

impl Splat {
    /// The report's first line, without its timestamp.
    pub fn headline(&self) -> &str {
        let first = self.excerpt.lines().next().unwrap_or_default();
        match first.trim_start().strip_prefix('[').and_then(|rest| rest.split_once(']')) {
            Some((_, line)) => line.trim_start(),
            None => first,
        }
    }
}

/// The kind a name stands for (`KASAN`, `lockdep`, `hang`, ...), as an expectation line
/// writes it.
pub fn kind_named(name: &str) -> Option<&'static str> {
    SPLATS.iter().map(|(_, kind)| *kind).chain([HANG]).find(|kind| *kind == name)
}

/// Finds kernel splats in a console or kernel log.
pub fn scan(log: &str) -> Vec<Splat> {
    let lines: Vec<&str> = log.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some((_, kind)) = SPLATS.iter().find(|(pat, _)| line.contains(pat)) {
            let end = (i + 40).min(lines.len());
            let excerpt = lines[i..end].iter().take_while(|l| !l.contains("---[ end trace")).copied().collect::<Vec<_>>().join("\n");
            found.push(Splat { kind, excerpt });
        }
    }
    found
}

/// The kernel log from where it stood when opened: `/dev/kmsg`, read without blocking.
pub struct KernelLog {
    kmsg: File,
}

impl KernelLog {
    pub const PATH: &'static str = "/dev/kmsg";

    /// Opens the log at its end, so that only what is logged from now on is read.
    pub fn open() -> std::io::Result<KernelLog> {
        let mut kmsg = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(Self::PATH)?;
        kmsg.seek(SeekFrom::End(0))?;
        Ok(KernelLog { kmsg })
    }

    /// What was logged since the last call, as console lines (`[seconds] message`).
    pub fn read_new(&mut self) -> String {
        let mut text = String::new();
        // One read returns one record (devkmsg_read); a record is at most about 1 KiB.
        let mut record = [0u8; 8192];
        loop {
            match self.kmsg.read(&mut record) {
                Ok(0) => break,
                Ok(n) => text.push_str(&console_line(&String::from_utf8_lossy(&record[..n]))),
                // Records overwritten before they were read: the next read gives the oldest left.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        text
    }

    /// The splats logged since the last call.
    pub fn new_splats(&mut self) -> Vec<Splat> {
        scan(&self.read_new())
    }
}

/// A `/dev/kmsg` record (`prio,seq,usecs,flags;message` then ` KEY=value` lines) as the
/// console shows it.
fn console_line(record: &str) -> String {
    let Some((head, message)) = record.split_once(';') else { return String::new() };
    let usecs: u64 = head.split(',').nth(2).and_then(|u| u.parse().ok()).unwrap_or(0);
    let message = message.lines().next().unwrap_or_default();
    format!("[{:5}.{:06}] {message}\n", usecs / 1_000_000, usecs % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warn_and_kasan_reports_are_splats() {
        let console = "\
[   10.1] ok
[   12.0] ------------[ cut here ]------------
[   12.0] WARNING: CPU: 0 PID: 61 at arch/x86/kvm/mmu/mmu.c:7000 kvm_mmu_zap+0x10/0x20
[   12.0] Modules linked in:
[   12.1] ---[ end trace 0000000000000000 ]---
[   13.0] BUG: KASAN: use-after-free in kvm_gmem_release+0x1/0x2
";
        let splats = scan(console);
        assert_eq!(splats.iter().map(|s| s.kind).collect::<Vec<_>>(), vec!["WARN", "KASAN"]);
        assert!(splats[0].excerpt.contains("Modules linked in"), "the excerpt runs to the end of the report");
        assert!(!splats[0].excerpt.contains("end trace"));
        assert_eq!(splats[1].headline(), "BUG: KASAN: use-after-free in kvm_gmem_release+0x1/0x2");
    }

    #[test]
    fn a_clean_console_has_no_splat() {
        assert!(scan("[ 1.0] Linux version 6.12\nPASS conversion_round_trip (9 steps)\n").is_empty());
    }

    #[test]
    fn kmsg_records_read_as_console_lines() {
        let record = "3,1042,13000123,-;BUG: KASAN: slab-use-after-free in kvm_gmem_release+0x3a/0x2c0\n SUBSYSTEM=kvm\n";
        assert_eq!(console_line(record), "[   13.000123] BUG: KASAN: slab-use-after-free in kvm_gmem_release+0x3a/0x2c0\n");
        assert_eq!(scan(&console_line(record))[0].kind, "KASAN");
        assert_eq!(console_line("no separator"), "");
    }

    #[test]
    fn the_kernel_log_gives_what_was_logged_after_it_was_opened() {
        let mut log = match KernelLog::open() {
            Ok(log) => log,
            Err(e) => {
                eprintln!("SKIPPED: {} cannot be opened here ({e}); the kernel log reader is not tested", KernelLog::PATH);
                return;
            }
        };
        let marker = format!("gmemfuzz kernel log test {}", std::process::id());
        // Writing to /dev/kmsg logs a line (printk from userspace); needs root, as reading does.
        if let Err(e) = std::fs::OpenOptions::new().write(true).open(KernelLog::PATH).and_then(|mut f| {
            use std::io::Write as _;
            // With its newline, or the record stays open for a continuation and is not read.
            f.write_all(format!("{marker}\n").as_bytes())
        }) {
            eprintln!("SKIPPED: cannot write to {} ({e})", KernelLog::PATH);
            return;
        }
        let text = log.read_new();
        assert!(text.lines().any(|l| l.starts_with('[') && l.ends_with(&marker)), "{text}");
        assert!(!log.read_new().contains(&marker), "each line is read once");
    }

    #[test]
    fn kinds_are_named_as_expectations_write_them() {
        assert_eq!(kind_named("KASAN"), Some("KASAN"));
        assert_eq!(kind_named("RCU stall"), Some("RCU stall"));
        assert_eq!(kind_named("hang"), Some(HANG));
        assert_eq!(kind_named("kasan"), None);
    }
}
