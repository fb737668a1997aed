//! What the lane reads off a boot's console besides its splats (`crate::splat`).

/// Seconds from the kernel's start to the initramfs' init: the boot's share of a lane boot.
/// Init's first `gmemfuzz-init:` line says its uptime (`up 4.21 s`); an initramfs made before
/// it did gives the last console timestamp before that line, which is early where the kernel
/// logs little at the console's level.
pub fn boot_seconds(console: &str) -> Option<f64> {
    let mut last = None;
    for line in console.lines() {
        if line.starts_with("gmemfuzz-init:") {
            let up = line.split(", up ").nth(1).and_then(|rest| rest.split(' ').next()).and_then(|t| t.parse::<f64>().ok());
            return up.or(last);
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
        let said = "[    1.5] last message\ngmemfuzz-init: kernel 7.2.13, /out share: 1, up 4.21 s\n";
        assert_eq!(boot_seconds(said), Some(4.21));
    }
}
