//! Which kernel the lane boots and the coverage report reads: a recipe `build-kernel.sh`
//! builds and caches (Debian's 7.2, 7.3-rc7 or 6.12, or the user's own tree), or a bzImage the user
//! gives, checked for what the lane needs. The lab's bottom: the lane and `coverage` stand on
//! it, and it runs the scripts of `harness/lane/` for them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The directory of the lane's scripts (`harness/lane/`).
fn lane_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lane")
}

/// `bash harness/lane/NAME`: the kernel recipe here, the initramfs and the boot in the lane.
pub fn script(name: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(lane_dir().join(name));
    c
}

/// The kernel series the lane builds when nothing else is asked.
pub const DEFAULT_SERIES: &str = "7.2";

/// The kernel series `build-kernel.sh` has a recipe for (Debian's `linux-source-<series>`).
pub const SERIES: [&str; 3] = ["7.2", "7.3", "6.12"];

/// What the user asked the lane to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelChoice {
    /// Debian's source of this series, built by the lane (`--kernel-version`).
    Series(String),
    /// The user's kernel tree, built out of tree by the lane (`--kernel-src`).
    Tree(PathBuf),
    /// A bzImage built elsewhere (`--kernel`).
    Image(PathBuf),
}

impl KernelChoice {
    /// The choice the command-line flags make (`--kernel`, `--kernel-src`, `--kernel-version`,
    /// in that precedence; clap keeps them exclusive).
    pub fn from_flags(image: Option<PathBuf>, tree: Option<PathBuf>, series: String) -> KernelChoice {
        match (image, tree) {
            (Some(image), _) => KernelChoice::Image(image),
            (None, Some(tree)) => KernelChoice::Tree(tree),
            (None, None) => KernelChoice::Series(series),
        }
    }
}

impl Default for KernelChoice {
    fn default() -> Self {
        KernelChoice::Series(DEFAULT_SERIES.to_string())
    }
}

/// The kernel's own bug detectors the lane builds in on request (`--kasan`, `--lockdep`:
/// the fragments `kernel-kasan.config` and `kernel-lockdep.config`), each a crash oracle
/// for races: a use-after-free or a lock-order inversion the guest may never see. And the
/// SNP-like software platform (`--sw-rmp`: `patches/sw-rmp-SERIES.patch` and
/// `kernel-sw-rmp.config`): a reverse map kept by guest_memfd's platform hooks for
/// software-protected VMs, which WARNs where a hook call is missing or misplaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Detectors {
    pub kasan: bool,
    pub lockdep: bool,
    pub sw_rmp: bool,
}

impl Detectors {
    /// Each detector, its build switch for `build-kernel.sh`, the option it turns on and
    /// the `lane` flag that asks for it.
    fn each(self) -> [(bool, &'static str, &'static str, &'static str, &'static str); 3] {
        [
            (self.kasan, "KASAN", "GMEMFUZZ_KASAN", "CONFIG_KASAN", "--kasan"),
            (self.lockdep, "lockdep", "GMEMFUZZ_LOCKDEP", "CONFIG_PROVE_LOCKING", "--lockdep"),
            (self.sw_rmp, "software RMP", "GMEMFUZZ_SW_RMP", "CONFIG_KVM_SW_PROTECTED_RMP", "--sw-rmp"),
        ]
    }

    /// The detectors a .config turns on.
    pub fn of_config(config: &str) -> Detectors {
        let on = |opt: &str| config.lines().any(|l| l == format!("{opt}=y"));
        Detectors { kasan: on("CONFIG_KASAN"), lockdep: on("CONFIG_PROVE_LOCKING"), sw_rmp: on("CONFIG_KVM_SW_PROTECTED_RMP") }
    }

    /// "KASAN, lockdep", or "none".
    pub fn names(self) -> String {
        let on: Vec<&str> = self.each().iter().filter(|d| d.0).map(|d| d.1).collect();
        if on.is_empty() {
            "none".to_string()
        } else {
            on.join(", ")
        }
    }

    /// Kernel parameters the boot needs for them: every KASAN report, not the first alone
    /// (a race replayed 100 times is counted try by try); and 4-level paging under KASAN:
    /// with QEMU's `-cpu max` (LA57) half the boots of the 7.2 KASAN kernel here reported
    /// "KASAN: wild-memory-access" in interrupt handlers at 0.006 s, during the boot CPU's
    /// identify_cpu(), which clears its feature words (LA57 among them) and sets 48 virtual
    /// address bits while it re-reads them (arch/x86/kernel/cpu/common.c);
    /// the addresses were of the 5-level direct map (0xff11...).
    pub fn boot_args(self) -> &'static str {
        if self.kasan {
            "kasan_multi_shot no5lvl"
        } else {
            ""
        }
    }
}

/// A platform-hook bug that a kernel with the software platform injects into guest_memfd
/// when booted with `kvm_sw_rmp_bug=NAME` (`lane --sw-rmp-bug`): for the lane's own tests,
/// to show that fuzzing finds a kernel that drops or misplaces a hook call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HookBug {
    /// A punched folio is freed without the invalidate hook.
    SkipOnPunch,
    /// The invalidate hook is called for a punched range before its SPTEs are zapped.
    EarlyOnPunch,
    /// The folios freed when a file's last reference goes skip the invalidate hook.
    SkipOnRelease,
}

impl HookBug {
    /// The kernel parameter that injects it.
    pub fn boot_arg(self) -> String {
        let name = clap::ValueEnum::to_possible_value(&self).expect("no variant is skipped");
        format!("kvm_sw_rmp_bug={}", name.get_name())
    }
}

/// Where a kernel with the software platform (`--sw-rmp`) lists its reverse map: a first
/// line of counters ("# assigned N prepares N shared_prepares N reclaims N violations N"),
/// then one line per assigned PFN.
pub const SW_RMP_MAP: &str = "/sys/kernel/debug/kvm_sw_rmp";

/// The software platform's counters, on a kernel that has it.
pub fn sw_rmp_counters() -> Option<String> {
    let text = std::fs::read_to_string(SW_RMP_MAP).ok()?;
    Some(text.lines().next()?.trim_start_matches("# ").to_string())
}

/// A bootable lane kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaneKernel {
    pub image: PathBuf,
    /// The version string of its setup header (`7.2.13`).
    pub version: String,
    /// The bug detectors its .config (when one is found beside it) turns on.
    pub detectors: Detectors,
    /// The hook bug its boots inject (a kernel with the software platform only).
    pub hook_bug: Option<HookBug>,
}

impl LaneKernel {
    pub fn at(image: &Path) -> Result<LaneKernel> {
        let detectors = config_of(image).map(|(_, config)| Detectors::of_config(&config)).unwrap_or_default();
        Ok(LaneKernel { image: image.to_path_buf(), version: image_version(image)?, detectors, hook_bug: None })
    }

    /// This kernel booted with `bug` injected; refused where it lacks the software platform,
    /// which is where the bug lives.
    pub fn injecting(&self, bug: HookBug) -> Result<LaneKernel> {
        if !self.detectors.sw_rmp {
            anyhow::bail!(
                "--sw-rmp-bug needs a kernel with the software platform (--sw-rmp); {} has no CONFIG_KVM_SW_PROTECTED_RMP",
                self.image.display()
            );
        }
        Ok(LaneKernel { hook_bug: Some(bug), ..self.clone() })
    }

    /// Kernel parameters every boot of it takes.
    pub fn boot_args(&self) -> String {
        let bug = self.hook_bug.map(HookBug::boot_arg);
        [Some(self.detectors.boot_args().to_string()), bug].into_iter().flatten().filter(|a| !a.is_empty()).collect::<Vec<_>>().join(" ")
    }
}

/// The kernel release a bzImage carries: the x86 boot protocol's setup header holds at
/// 0x20e the offset (less 0x200) of a NUL-terminated "6.12.117 (user@host) #1 …" string
/// (Documentation/arch/x86/boot.rst, `kernel_version`).
pub fn image_version(image: &Path) -> Result<String> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let not_bzimage = || anyhow::anyhow!("{} is not a bzImage (no x86 boot setup header)", image.display());
    if bytes.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
        return Err(not_bzimage());
    }
    let at = u16::from_le_bytes([bytes[0x20e], bytes[0x20f]]) as usize + 0x200;
    let text = bytes.get(at..).ok_or_else(not_bzimage)?;
    let end = text.iter().position(|&b| b == 0 || b == b' ').ok_or_else(not_bzimage)?;
    let version = std::str::from_utf8(&text[..end]).map_err(|_| not_bzimage())?;
    if version.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(not_bzimage());
    }
    Ok(version.to_string())
}

fn recipe(choice: &KernelChoice, detectors: Detectors) -> Result<Command> {
    let mut c = script("build-kernel.sh");
    for (on, _, switch, _, _) in detectors.each() {
        if on {
            c.env(switch, "1");
        }
    }
    match choice {
        KernelChoice::Series(series) => {
            if !SERIES.contains(&series.as_str()) {
                bail!(
                    "--kernel-version {series}: the lane has recipes for {} (or give --kernel-src DIR / --kernel bzImage)",
                    SERIES.join(", ")
                );
            }
            c.env("GMEMFUZZ_KERNEL_VERSION", series);
        }
        KernelChoice::Tree(dir) => {
            c.env("GMEMFUZZ_KERNEL_SRC", dir);
        }
        KernelChoice::Image(_) => unreachable!("a bzImage is not built"),
    }
    Ok(c)
}

/// Whether the kernel of the default recipe is built already (nothing is installed or
/// built to find out).
pub fn kernel_is_cached() -> bool {
    recipe(&KernelChoice::default(), Detectors::default())
        .map(|mut c| c.env("GMEMFUZZ_LANE_CACHED_ONLY", "1").output().is_ok_and(|o| o.status.success()))
        .unwrap_or(false)
}

/// Every lane kernel the cache holds that a Debian recipe built (the kernels lane regressions
/// can name; builds of a user's tree are the user's own).
pub fn cached_kernels() -> Vec<LaneKernel> {
    let Ok(out) = script("build-kernel.sh").env("GMEMFUZZ_LANE_LIST", "1").output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| LaneKernel::at(Path::new(l)).ok()).collect()
}

/// Builds (or finds cached) the kernel asked for, with the detectors asked for, or checks
/// the one given.
pub fn kernel(choice: &KernelChoice, detectors: Detectors) -> Result<LaneKernel> {
    if let KernelChoice::Image(image) = choice {
        if !image.is_file() {
            bail!("--kernel {}: no such file", image.display());
        }
        let kernel = LaneKernel::at(image).with_context(|| format!("--kernel {}", image.display()))?;
        check_config(image)?;
        for (asked, name, _, option, flag) in detectors.each() {
            if asked && !kernel.detectors.each().iter().any(|d| d.0 && d.1 == name) {
                bail!("{flag} asks for {option}=y, which the .config beside --kernel {} does not set (or is not there to read); give a bzImage built with it, or --kernel-src/--kernel-version to have the lane build one", image.display());
            }
        }
        return Ok(kernel);
    }
    let mut build = recipe(choice, detectors)?;
    let what = match choice {
        KernelChoice::Series(s) => format!("Debian's Linux {s}"),
        KernelChoice::Tree(d) => format!("the kernel tree {} (out of tree, incrementally)", d.display()),
        KernelChoice::Image(_) => unreachable!(),
    };
    eprintln!("gmemfuzz lane: finding {what} in the cache or the seeds (GMEMFUZZ_LANE_SEED), or building it");
    // Its progress (and a build's estimate) goes straight to the user's terminal.
    let out = build.stderr(std::process::Stdio::inherit()).output().context("running harness/lane/build-kernel.sh")?;
    if !out.status.success() {
        bail!("harness/lane/build-kernel.sh failed (its messages are above)");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let image = stdout.lines().last().map(PathBuf::from).context("build-kernel.sh printed no path")?;
    LaneKernel::at(&image)
}

/// The options the lane cannot run without, and what each gives it.
const NEEDED: [(&str, &str); 9] = [
    ("CONFIG_KVM", "/dev/kvm"),
    ("CONFIG_KVM_AMD", "KVM on QEMU's SVM (-cpu max under TCG)"),
    ("CONFIG_KVM_SW_PROTECTED_VM", "VM type 1, private memory"),
    ("CONFIG_BLK_DEV_INITRD", "booting the initramfs"),
    ("CONFIG_DEVTMPFS", "/dev"),
    ("CONFIG_SERIAL_8250_CONSOLE", "the console log"),
    ("CONFIG_VIRTIO_PCI", "the /out share"),
    ("CONFIG_NET_9P_VIRTIO", "the /out share"),
    ("CONFIG_9P_FS", "the /out share"),
];

/// Checks a bzImage's .config (beside it, as the lane's cache keeps it, or at the top of
/// the build directory it sits in) for what the lane needs. Without a .config to read it
/// says so and lets the boot tell.
fn check_config(image: &Path) -> Result<()> {
    let Some((path, config)) = config_of(image) else {
        eprintln!(
            "gmemfuzz lane: no .config beside {} to check; the boot will show whether it has what the lane needs (harness/lane/kernel.config)",
            image.display()
        );
        return Ok(());
    };
    let missing = missing_options(&config);
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|(opt, why)| format!("{opt} ({why})")).collect();
        bail!(
            "{} lacks what the lane needs, by {}: {}; build it with harness/lane/kernel.config merged (or use --kernel-src)",
            image.display(),
            path.display(),
            list.join(", ")
        );
    }
    for opt in ["CONFIG_KCOV", "CONFIG_KVM_PROVE_MMU"] {
        if !config.lines().any(|l| l == format!("{opt}=y")) {
            eprintln!("gmemfuzz lane: note: {} has no {opt}", image.display());
        }
    }
    Ok(())
}

/// A bzImage's .config, and where it was read: beside it, as the lane's cache keeps it, or
/// at the top of the build directory it sits in (`arch/x86/boot/bzImage`).
pub fn config_of(image: &Path) -> Option<(PathBuf, String)> {
    let candidates = [image.with_file_name("config"), image.with_file_name(".config")]
        .into_iter()
        .chain(image.ancestors().nth(4).map(|build| build.join(".config")));
    candidates.filter_map(|p| std::fs::read_to_string(&p).ok().map(|c| (p, c))).next()
}

/// The needed options a .config does not set.
pub fn missing_options(config: &str) -> Vec<(&'static str, &'static str)> {
    NEEDED.iter().copied().filter(|(opt, _)| !config.lines().any(|l| l == format!("{opt}=y"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detectors_are_read_from_the_config() {
        let config = "CONFIG_KVM=y\nCONFIG_KASAN=y\nCONFIG_KASAN_GENERIC=y\n# CONFIG_PROVE_LOCKING is not set\n";
        let d = Detectors::of_config(config);
        assert_eq!(d, Detectors { kasan: true, lockdep: false, sw_rmp: false });
        assert_eq!((d.names().as_str(), d.boot_args()), ("KASAN", "kasan_multi_shot no5lvl"));
        let both = Detectors::of_config("CONFIG_KASAN=y\nCONFIG_PROVE_LOCKING=y\n");
        assert_eq!(both.names(), "KASAN, lockdep");
        let platform = Detectors::of_config("CONFIG_KVM_SW_PROTECTED_VM=y\nCONFIG_KVM_SW_PROTECTED_RMP=y\n");
        assert_eq!((platform.names().as_str(), platform.boot_args()), ("software RMP", ""));
        assert_eq!((Detectors::default().names().as_str(), Detectors::default().boot_args()), ("none", ""));
    }

    #[test]
    fn an_injected_hook_bug_is_a_boot_argument_of_a_kernel_with_the_software_platform() {
        let plain = LaneKernel { image: "bzImage".into(), version: "7.2.13".into(), detectors: Detectors::default(), hook_bug: None };
        let err = plain.injecting(HookBug::SkipOnPunch).unwrap_err().to_string();
        assert!(err.contains("--sw-rmp-bug needs a kernel with the software platform"), "{err}");
        let platform = LaneKernel { detectors: Detectors { kasan: true, lockdep: false, sw_rmp: true }, ..plain };
        assert_eq!(platform.boot_args(), "kasan_multi_shot no5lvl");
        let bugged = platform.injecting(HookBug::EarlyOnPunch).unwrap();
        assert_eq!(bugged.boot_args(), "kasan_multi_shot no5lvl kvm_sw_rmp_bug=early-on-punch");
        assert_eq!(HookBug::SkipOnRelease.boot_arg(), "kvm_sw_rmp_bug=skip-on-release");
    }

    #[test]
    fn a_config_without_sw_protected_vms_is_refused_by_name() {
        let full: String = NEEDED.iter().map(|(o, _)| format!("{o}=y\n")).collect();
        assert!(missing_options(&full).is_empty());
        let without = full.replace("CONFIG_KVM_SW_PROTECTED_VM=y\n", "# CONFIG_KVM_SW_PROTECTED_VM is not set\n");
        assert_eq!(missing_options(&without), vec![("CONFIG_KVM_SW_PROTECTED_VM", "VM type 1, private memory")]);
    }

    #[test]
    fn setup_header_gives_the_release() {
        let dir = std::env::temp_dir().join(format!("gmemfuzz-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let image = dir.join("bzImage");
        let mut bytes = vec![0u8; 0x400];
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        bytes[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        let release = b"7.2.13 (root@vm) #1 SMP";
        bytes[0x300..0x300 + release.len()].copy_from_slice(release);
        std::fs::write(&image, &bytes).unwrap();
        assert_eq!(image_version(&image).unwrap(), "7.2.13");
        std::fs::write(&image, b"not a kernel").unwrap();
        assert!(image_version(&image).unwrap_err().to_string().contains("not a bzImage"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
