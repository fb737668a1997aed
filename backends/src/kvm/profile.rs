//! Probing what the running kernel offers (KVM_CHECK_EXTENSION and one harmless call).

use kvm_bindings::{kvm_memory_attributes, kvm_userspace_memory_region};
use kvm_ioctls::{Cap, VmFd};

use crate::abi::KVM_CAP_GUEST_MEMFD_FLAGS;
use crate::backend::HarnessError;
use crate::op::GUEST_MEMFD_FLAG_MMAP;
use crate::profile::Profile;

/// The kernel release, as `uname -r` prints it.
pub fn kernel_release() -> String {
    match nix::sys::utsname::uname() {
        Ok(uts) => uts.release().to_string_lossy().into_owned(),
        Err(_) => "unknown".into(),
    }
}

/// Whether the running kernel's release is at least major.minor.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = kernel_release();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

pub fn probe_profile(vm: &VmFd, vm_type: u64) -> Result<Profile, HarnessError> {
    let cap = |c: Cap| vm.check_extension_int(c).max(0) as u64;
    // Raw numbers only where kvm-ioctls 0.25 has no `Cap` variant.
    let raw_cap = |c: u32| vm.check_extension_raw(c.into()).max(0) as u64;
    if !vm.check_extension(Cap::GuestMemfd) {
        return Err(HarnessError::Unavailable(format!("kernel {} has no KVM_CAP_GUEST_MEMFD for VM type {vm_type}", kernel_release())));
    }
    // KVM_SET_MEMORY_ATTRIBUTES with size 0 changes nothing: a kernel with the ioctl
    // answers EINVAL, one without it ENOTTY.
    let empty = kvm_memory_attributes { address: 0, size: 0, attributes: 0, flags: 0 };
    let attributes_ioctl = match vm.set_memory_attributes(empty) {
        Err(e) => e.errno() != libc::ENOTTY,
        Ok(()) => true,
    };
    let gmem_flags = raw_cap(KVM_CAP_GUEST_MEMFD_FLAGS);
    Ok(Profile {
        kernel: kernel_release(),
        vm_type,
        guest_memfd: true,
        gmem_flags,
        attributes_ioctl,
        attributes: cap(Cap::MemoryAttributes),
        // Replaced by a behavioural probe in KvmBackend::new.
        gmem_only_slots: gmem_flags & GUEST_MEMFD_FLAG_MMAP != 0,
        address_spaces: raw_cap(kvm_bindings::KVM_CAP_MULTI_ADDRESS_SPACE) as u32,
        falloc_write_zeroes: kernel_at_least(6, 17),
        // Replaced by probe_max_gfn in KvmBackend::new.
        max_gfn: crate::profile::max_gfn_for_bits(52),
    })
}

/// kvm_mmu_max_gfn(), found by bisection: kvm_arch_prepare_memory_region() refuses a new
/// slot with `if ((new->base_gfn + new->npages - 1) > kvm_mmu_max_gfn()) return -EINVAL;`,
/// so a one-page plain slot at `gfn` is accepted exactly when `gfn <= kvm_mmu_max_gfn()`.
/// Each accepted slot is deleted again. `slot` must be free and `uaddr` one page of
/// memory that outlives the call.
pub fn probe_max_gfn(vm: &VmFd, slot: u32, uaddr: u64) -> Result<u64, HarnessError> {
    let accepts = |gfn: u64| -> Result<bool, HarnessError> {
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gfn << 12,
            memory_size: crate::op::PAGE_SIZE,
            userspace_addr: uaddr,
        };
        // SAFETY: uaddr is a page of the caller's memory that outlives the slot, which is
        // deleted again before returning.
        match unsafe { vm.set_user_memory_region(region) } {
            Err(_) => Ok(false),
            Ok(()) => {
                let delete = kvm_userspace_memory_region { slot, ..Default::default() };
                // SAFETY: deleting the slot just made; no memory is handed to KVM.
                unsafe { vm.set_user_memory_region(delete) }
                    .map_err(|e| HarnessError::Bug(format!("deleting the max-gfn probe slot: {e}")))?;
                Ok(true)
            }
        }
    };
    // The page below 4 GiB must be accepted (the guest's own address space); the last GFN
    // of the 64-bit space never is (guest_phys_addr + memory_size wraps: EINVAL).
    let (mut good, mut bad) = (((1u64 << 32) >> 12) - 1, (1u64 << 52) - 1);
    if !accepts(good)? {
        return Err(HarnessError::Bug(format!("a one-page slot at GFN {good:#x} (below 4 GiB) was refused")));
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if accepts(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(good)
}
