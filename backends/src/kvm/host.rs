//! What this host's KVM offers guest_memfd fuzzing, in one answer: no /dev/kvm, /dev/kvm
//! without guest_memfd, guest_memfd without memory attributes, and on which VM types. Every
//! command, test and CI step that needs real KVM reads this answer (`gmemfuzz host` prints
//! it), so a missing capability is named the same way everywhere.

use kvm_bindings::KVM_CAP_VM_TYPES;
use kvm_ioctls::{Cap, Kvm};

use super::profile::kernel_release;

/// What one VM type offers: KVM_CHECK_EXTENSION asked on a VM of that type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmTypeOffer {
    pub vm_type: u64,
    /// KVM_CAP_GUEST_MEMFD.
    pub guest_memfd: bool,
    /// KVM_CAP_MEMORY_ATTRIBUTES: the attributes KVM_SET_MEMORY_ATTRIBUTES takes (0: none).
    pub attributes: u64,
}

/// This host's KVM, as far as guest_memfd fuzzing cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKvm {
    /// /dev/kvm could not be opened (why).
    NoKvm(String),
    /// KVM is here: the kernel release and what each VM type it creates offers.
    Kvm { kernel: String, types: Vec<VmTypeOffer> },
}

impl HostKvm {
    /// Asks /dev/kvm: the VM types it lists (KVM_CAP_VM_TYPES, a mask; type 0 always), and on
    /// a VM of each, guest_memfd and memory attributes. A type whose VM cannot be made is
    /// left out.
    pub fn probe() -> HostKvm {
        let kvm = match Kvm::new() {
            Ok(kvm) => kvm,
            Err(e) => return HostKvm::NoKvm(format!("/dev/kvm: {e}")),
        };
        let mask = (kvm.check_extension_raw(KVM_CAP_VM_TYPES.into()).max(0) as u64) | 1;
        let types = (0..64u64)
            .filter(|t| mask & (1 << t) != 0)
            .filter_map(|vm_type| {
                let vm = kvm.create_vm_with_type(vm_type).ok()?;
                Some(VmTypeOffer {
                    vm_type,
                    guest_memfd: vm.check_extension(Cap::GuestMemfd),
                    attributes: vm.check_extension_int(Cap::MemoryAttributes).max(0) as u64,
                })
            })
            .collect();
        HostKvm::Kvm { kernel: kernel_release(), types }
    }

    /// The VM types with guest_memfd: what real KVM can fuzz here.
    pub fn fuzzable_types(&self) -> Vec<u64> {
        match self {
            HostKvm::NoKvm(_) => Vec::new(),
            HostKvm::Kvm { types, .. } => types.iter().filter(|t| t.guest_memfd).map(|t| t.vm_type).collect(),
        }
    }

    /// Why guest_memfd on `vm_type` cannot be fuzzed here (the capability missing), or `None`
    /// where it can.
    pub fn lacks(&self, vm_type: u64) -> Option<String> {
        match self {
            HostKvm::NoKvm(why) => Some(no_kvm(why)),
            HostKvm::Kvm { kernel, types } => match types.iter().find(|t| t.vm_type == vm_type) {
                None => Some(format!("kernel {kernel}: KVM offers no VM type {vm_type} (KVM_CAP_VM_TYPES)")),
                Some(t) if !t.guest_memfd => Some(no_guest_memfd(kernel, vm_type)),
                Some(_) => None,
            },
        }
    }

    /// One line: the kernel, then each VM type and what it offers.
    pub fn summary(&self) -> String {
        match self {
            HostKvm::NoKvm(why) => format!("host kernel {}: no usable KVM ({why})", kernel_release()),
            HostKvm::Kvm { kernel, types } => {
                let each: Vec<String> = types
                    .iter()
                    .map(|t| {
                        let gmem = if t.guest_memfd { "guest_memfd" } else { "no guest_memfd" };
                        let attrs = if t.attributes == 0 {
                            "no memory attributes".to_string()
                        } else {
                            format!("memory attributes {:#x}", t.attributes)
                        };
                        format!("VM type {}: {gmem}, {attrs}", t.vm_type)
                    })
                    .collect();
                format!("host kernel {kernel}: /dev/kvm; {}", each.join("; "))
            }
        }
    }
}

/// The line for a host whose /dev/kvm does not open.
pub(crate) fn no_kvm(why: &str) -> String {
    format!("no usable KVM ({why})")
}

/// The line for a VM type without guest_memfd.
pub(crate) fn no_guest_memfd(kernel: &str, vm_type: u64) -> String {
    format!("kernel {kernel}: KVM has no guest_memfd on VM type {vm_type} (KVM_CAP_GUEST_MEMFD = 0)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(vm_type: u64, guest_memfd: bool, attributes: u64) -> VmTypeOffer {
        VmTypeOffer { vm_type, guest_memfd, attributes }
    }

    #[test]
    fn a_host_without_guest_memfd_names_the_capability() {
        let host = HostKvm::Kvm { kernel: "6.18.44-fc-v1272".into(), types: vec![offer(0, false, 0)] };
        assert_eq!(host.fuzzable_types(), Vec::<u64>::new());
        let why = host.lacks(0).unwrap();
        assert!(why.contains("KVM_CAP_GUEST_MEMFD = 0") && why.contains("6.18.44-fc-v1272"), "{why}");
        assert!(host.lacks(1).unwrap().contains("no VM type 1"));
        assert_eq!(host.summary(), "host kernel 6.18.44-fc-v1272: /dev/kvm; VM type 0: no guest_memfd, no memory attributes");
    }

    #[test]
    fn each_vm_type_answers_for_itself() {
        let host = HostKvm::Kvm { kernel: "7.2.13".into(), types: vec![offer(0, true, 0), offer(1, true, 8)] };
        assert_eq!(host.fuzzable_types(), vec![0, 1]);
        assert_eq!((host.lacks(0), host.lacks(1)), (None, None));
        assert!(host.summary().ends_with("VM type 1: guest_memfd, memory attributes 0x8"), "{}", host.summary());
    }

    #[test]
    fn no_dev_kvm_lacks_everything() {
        let host = HostKvm::NoKvm("/dev/kvm: No such file or directory (os error 2)".into());
        assert!(host.fuzzable_types().is_empty());
        assert!(host.lacks(0).unwrap().starts_with("no usable KVM (/dev/kvm: No such file"), "{:?}", host.lacks(0));
    }
}
