//! Kernel splats on the lane's console: findings of their own kind.

/// Console lines that mean the kernel itself found something wrong.
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

/// A kernel splat found on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splat {
    pub kind: &'static str,
    /// The console line and the ones after it, up to the end of the report.
    pub excerpt: String,
}

/// Finds kernel splats in a console log.
pub fn scan_console(console: &str) -> Vec<Splat> {
    let lines: Vec<&str> = console.lines().collect();
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

/// Seconds from the kernel's start to the initramfs' init (the last console timestamp
/// before init's first `gmemfuzz-init:` line): the boot's share of a lane boot.
pub fn boot_seconds(console: &str) -> Option<f64> {
    let mut last = None;
    for line in console.lines() {
        if line.starts_with("gmemfuzz-init:") {
            return last;
        }
        let stamp = line.find('[').and_then(|at| line[at + 1..].split(']').next()).and_then(|t| t.trim().parse::<f64>().ok());
        last = stamp.or(last);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_is_read_from_the_init_line() {
        let console = "c[2J[    0.0] Linux version 7.2.13\n[   27.512] regulatory.0: failed\ngmemfuzz-init: kernel 7.2.13\n[  40.0] x\n";
        assert_eq!(boot_seconds(console), Some(27.512));
        assert_eq!(boot_seconds("[ 1.0] no init line"), None);
    }

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
        let splats = scan_console(console);
        assert_eq!(splats.iter().map(|s| s.kind).collect::<Vec<_>>(), vec!["WARN", "KASAN"]);
        assert!(splats[0].excerpt.contains("Modules linked in"), "the excerpt runs to the end of the report");
        assert!(!splats[0].excerpt.contains("end trace"));
    }

    #[test]
    fn a_clean_console_has_no_splat() {
        assert!(scan_console("[ 1.0] Linux version 6.12\nPASS conversion_round_trip (9 steps)\n").is_empty());
    }
}
