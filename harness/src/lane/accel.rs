//! Which accelerator QEMU boots the lane with: KVM where the host's /dev/kvm can run the lane
//! kernel with nested virtualization, TCG otherwise, and a line that says which and why.
//!
//! The lane kernel's KVM is KVM_AMD only (`harness/lane/kernel.config`), so a nested guest
//! needs an AMD host whose kvm_amd has `nested` on; `-cpu host` then passes SVM through.
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

/// A module parameter that is on ("Y" or "1").
fn param_on(sys: &Path, module: &str, param: &str) -> bool {
    std::fs::read_to_string(sys.join("module").join(module).join("parameters").join(param))
        .is_ok_and(|v| matches!(v.trim(), "Y" | "y" | "1"))
}

/// The accelerator for a host whose sysfs is at `sys`, and why.
pub fn choose_in(sys: &Path, dev_kvm: bool) -> (Accel, String) {
    let loaded = |m: &str| sys.join("module").join(m).exists();
    if !dev_kvm {
        return (Accel::Tcg, "TCG: the host has no usable /dev/kvm".into());
    }
    if loaded("kvm_pvm") {
        return (Accel::Tcg, "TCG: the host's /dev/kvm is PVM (kvm_pvm), which runs only PVM guests, not the lane kernel".into());
    }
    if loaded("kvm_amd") {
        return match param_on(sys, "kvm_amd", "nested") {
            true => (Accel::Kvm, "KVM: kvm_amd with nested SVM".into()),
            false => (Accel::Tcg, "TCG: kvm_amd has nested off (modprobe kvm_amd nested=1 for KVM)".into()),
        };
    }
    if loaded("kvm_intel") {
        return (Accel::Tcg, "TCG: the host is Intel (kvm_intel) and the lane kernel's KVM is KVM_AMD only".into());
    }
    (Accel::Tcg, "TCG: no kvm_amd or kvm_intel module on the host".into())
}

/// The accelerator for this host, and why.
pub fn choose() -> (Accel, String) {
    let dev_kvm = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    choose_in(Path::new("/sys"), dev_kvm)
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

    #[test]
    fn kvm_only_on_amd_with_nested() {
        assert_eq!(choose_in(&sys(&[("kvm", None), ("kvm_amd", Some("1\n"))]), true).0, Accel::Kvm);
        let (a, why) = choose_in(&sys(&[("kvm", None), ("kvm_amd", Some("0\n")), ("x", None)]), true);
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("nested off"), "{why}");
        let (a, why) = choose_in(&sys(&[("kvm_intel", Some("Y\n"))]), true);
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("KVM_AMD only"), "{why}");
        let (a, why) = choose_in(&sys(&[("kvm", None), ("kvm_pvm", None)]), true);
        assert_eq!(a, Accel::Tcg);
        assert!(why.contains("PVM"), "{why}");
        assert!(choose_in(&sys(&[("kvm_amd", Some("1"))]), false).1.contains("no usable /dev/kvm"));
    }

    #[test]
    fn this_host_says_which_and_why() {
        let (accel, why) = choose();
        assert!(why.starts_with(if accel == Accel::Kvm { "KVM" } else { "TCG" }), "{why}");
    }
}
