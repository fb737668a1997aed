//! Which accelerator QEMU boots the lane with: KVM where the host's /dev/kvm can run the lane
//! kernel with nested virtualization, TCG otherwise, and a line that says which and why.
//!
//! Under `-accel kvm -cpu host` the guest sees the host's CPU: SVM on an AMD host whose
//! kvm_amd has `nested` on, VMX on an Intel host whose kvm_intel has it on. Every lane kernel
//! has KVM_AMD (TCG's `-cpu max` offers SVM only, so the lane needs it anyway); KVM_INTEL is in
//! the lean configuration only (`harness/lane/kernel-lean.config`: adding it to kernel.config
//! would change the key the seeds of full builds are found by), so an Intel host accelerates
//! only a kernel whose .config has it.
//! This machine's /dev/kvm is PVM (the kvm_pvm module): it runs only guests built for PVM,
//! and `-accel kvm` cannot boot the lane kernel (platform-facts: `-cpu host` aborts on MSR
//! 0x10a, `qemu64` hangs after SeaBIOS).

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// boot.sh's `--accel` value.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The nested virtualization a host's KVM offers a guest, and the option the guest kernel's
/// KVM needs to use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nested {
    /// kvm_amd with `nested` on: the guest's KVM runs on KVM_AMD.
    Svm,
    /// kvm_intel with `nested` on: the guest's KVM runs on KVM_INTEL.
    Vmx,
}

impl Nested {
    fn module(self) -> &'static str {
        match self {
            Nested::Svm => "kvm_amd",
            Nested::Vmx => "kvm_intel",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Nested::Svm => "SVM",
            Nested::Vmx => "VMX",
        }
    }

    /// The guest kernel's option for it.
    pub fn option(self) -> &'static str {
        match self {
            Nested::Svm => "CONFIG_KVM_AMD",
            Nested::Vmx => "CONFIG_KVM_INTEL",
        }
    }
}

/// A module parameter that is on ("Y" or "1").
fn param_on(sys: &Path, module: &str, param: &str) -> bool {
    std::fs::read_to_string(sys.join("module").join(module).join("parameters").join(param))
        .is_ok_and(|v| matches!(v.trim(), "Y" | "y" | "1"))
}

/// What the host whose sysfs is at `sys` offers a nested guest, or why TCG it is.
pub fn host_in(sys: &Path, dev_kvm: bool) -> Result<Nested, String> {
    let loaded = |m: &str| sys.join("module").join(m).exists();
    if !dev_kvm {
        return Err("TCG: the host has no usable /dev/kvm".into());
    }
    if loaded("kvm_pvm") {
        return Err("TCG: the host's /dev/kvm is PVM (kvm_pvm), which runs only PVM guests, not the lane kernel".into());
    }
    for nested in [Nested::Svm, Nested::Vmx] {
        let module = nested.module();
        if loaded(module) {
            return match param_on(sys, module, "nested") {
                true => Ok(nested),
                false => Err(format!("TCG: {module} has nested off (modprobe {module} nested=1 for KVM)")),
            };
        }
    }
    Err("TCG: no kvm_amd or kvm_intel module on the host".into())
}

/// The accelerator for a kernel whose .config is `config` (None where none was found beside
/// it) on a host that offers `host`, and why.
pub fn choose_for(host: &Result<Nested, String>, config: Option<&str>) -> (Accel, String) {
    let nested = match host {
        Ok(nested) => *nested,
        Err(why) => return (Accel::Tcg, why.clone()),
    };
    let (module, name, option) = (nested.module(), nested.name(), nested.option());
    match config.map(|c| c.lines().any(|l| l == format!("{option}=y"))) {
        Some(true) => (Accel::Kvm, format!("KVM: {module} with nested {name}")),
        Some(false) => (
            Accel::Tcg,
            format!("TCG: the host offers nested {name} ({module}) but this kernel has no {option} (GMEMFUZZ_LANE_CONFIG=lean builds one with it)"),
        ),
        None => (Accel::Tcg, format!("TCG: the host offers nested {name} ({module}) but no .config beside this kernel says it has {option}")),
    }
}

/// What this host offers a nested guest, or why TCG it is.
pub fn host() -> Result<Nested, String> {
    let dev_kvm = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    host_in(Path::new("/sys"), dev_kvm)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A /sys with these modules loaded (and their `nested` parameter), removed when dropped.
    struct FakeSys(std::path::PathBuf);

    impl std::ops::Deref for FakeSys {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sys(modules: &[(&str, Option<&str>)]) -> FakeSys {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = FakeSys(std::env::temp_dir().join(format!("gmemfuzz-accel-{}-{n}", std::process::id())));
        let _ = std::fs::remove_dir_all(&dir.0);
        for (m, nested) in modules {
            let params = dir.0.join("module").join(m).join("parameters");
            std::fs::create_dir_all(&params).unwrap();
            if let Some(v) = nested {
                std::fs::write(params.join("nested"), v).unwrap();
            }
        }
        dir
    }

    /// The .config of a lean lane kernel (both vendors) and of a full one (KVM_AMD alone).
    const LEAN: &str = "CONFIG_KVM=y\nCONFIG_KVM_INTEL=y\nCONFIG_KVM_AMD=y\n";
    const FULL: &str = "CONFIG_KVM=y\n# CONFIG_KVM_INTEL is not set\nCONFIG_KVM_AMD=y\n";

    #[test]
    fn kvm_on_amd_with_nested_svm() {
        let host = host_in(&sys(&[("kvm", None), ("kvm_amd", Some("1\n"))]), true);
        assert_eq!(host, Ok(Nested::Svm));
        assert_eq!(choose_for(&host, Some(FULL)), (Accel::Kvm, "KVM: kvm_amd with nested SVM".to_string()));
        assert_eq!(choose_for(&host, Some(LEAN)).0, Accel::Kvm);
        let (a, why) = choose_for(&host_in(&sys(&[("kvm", None), ("kvm_amd", Some("0\n")), ("x", None)]), true), Some(LEAN));
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("kvm_amd has nested off"), "{why}");
    }

    #[test]
    fn kvm_on_intel_with_nested_vmx_for_a_kernel_with_kvm_intel() {
        for on in ["Y\n", "1\n"] {
            let host = host_in(&sys(&[("kvm", None), ("kvm_intel", Some(on))]), true);
            assert_eq!(host, Ok(Nested::Vmx));
            assert_eq!(choose_for(&host, Some(LEAN)), (Accel::Kvm, "KVM: kvm_intel with nested VMX".to_string()));
            let (a, why) = choose_for(&host, Some(FULL));
            assert_eq!(a, Accel::Tcg);
            assert!(why.contains("no CONFIG_KVM_INTEL"), "{why}");
            let (a, why) = choose_for(&host, None);
            assert_eq!(a, Accel::Tcg);
            assert!(why.contains("no .config"), "{why}");
        }
        let (a, why) = choose_for(&host_in(&sys(&[("kvm", None), ("kvm_intel", Some("N\n"))]), true), Some(LEAN));
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("kvm_intel has nested off (modprobe kvm_intel nested=1"), "{why}");
        // A kvm_intel without the parameter file (nested not built in) is off too.
        assert!(host_in(&sys(&[("kvm_intel", None)]), true).is_err());
    }

    #[test]
    fn tcg_without_a_kvm_that_nests() {
        let (a, why) = choose_for(&host_in(&sys(&[("kvm", None), ("kvm_pvm", None)]), true), Some(LEAN));
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("PVM"), "{why}");
        assert!(choose_for(&host_in(&sys(&[("kvm_amd", Some("1"))]), false), Some(LEAN)).1.contains("no usable /dev/kvm"));
        assert!(host_in(&sys(&[("kvm", None)]), true).unwrap_err().contains("no kvm_amd or kvm_intel"));
    }

    #[test]
    fn this_host_says_which_and_why() {
        let (accel, why) = choose_for(&host(), Some(LEAN));
        assert!(why.starts_with(if accel == Accel::Kvm { "KVM" } else { "TCG" }), "{why}");
    }
}
