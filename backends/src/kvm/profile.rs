//! Probing what the running kernel offers (KVM_CHECK_EXTENSION and one harmless call).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use kvm_bindings::{kvm_create_guest_memfd, kvm_memory_attributes, kvm_userspace_memory_region};
use kvm_ioctls::{Cap, VmFd};

use crate::abi::{mempolicy, KVM_CAP_GUEST_MEMFD_FLAGS};
use crate::backend::HarnessError;
use crate::op::{GUEST_MEMFD_FLAG_MMAP, PAGE_SIZE};
use crate::outcome::Errno;
use crate::profile::{Numa, Profile};

/// The kernel release, as `uname -r` prints it.
pub fn kernel_release() -> String {
    match nix::sys::utsname::uname() {
        Ok(uts) => uts.release().to_string_lossy().into_owned(),
        Err(_) => "unknown".into(),
    }
}

pub fn probe_profile(vm: &VmFd, vm_type: u64) -> Result<Profile, HarnessError> {
    let cap = |c: Cap| vm.check_extension_int(c).max(0) as u64;
    // Raw numbers only where kvm-ioctls 0.25 has no `Cap` variant.
    let raw_cap = |c: u32| vm.check_extension_raw(c.into()).max(0) as u64;
    if !vm.check_extension(Cap::GuestMemfd) {
        return Err(HarnessError::Unavailable(super::host::no_guest_memfd(&kernel_release(), vm_type)));
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
        // Replaced by behavioural probes in KvmBackend::new.
        gmem_only_slots: gmem_flags & GUEST_MEMFD_FLAG_MMAP != 0,
        bound_range_errno: Errno::EINVAL,
        // Replaced by probe_bound_range_late in KvmBackend::new.
        bound_range_late: false,
        address_spaces: raw_cap(kvm_bindings::KVM_CAP_MULTI_ADDRESS_SPACE) as u32,
        falloc_write_zeroes: probe_falloc_write_zeroes(vm)?,
        // Replaced by probe_max_gfn in KvmBackend::new.
        max_gfn: crate::profile::max_gfn_for_bits(52),
        // Replaced by KvmBackend::probe_numa.
        numa: probe_numa_task(),
        // Replaced by probe_pre_fault in KvmBackend::new.
        pre_fault_errno: None,
        // Replaced in KvmBackend::new: whether the VM's debugfs directory lists its map.
        platform_map: false,
        hwpoison_errno: probe_hwpoison(),
    })
}

/// What madvise(MADV_HWPOISON) answers here (`Profile::hwpoison_errno`), asked without
/// poisoning anything: an empty range passes check_input_range() (`if (error || !len_in)
/// return error;`, after madvise_behavior_valid(), which refuses the advice without
/// CONFIG_MEMORY_FAILURE), and the capability madvise_inject_error() checks is read from
/// the task's effective set.
pub fn probe_hwpoison() -> Option<Errno> {
    // SAFETY: an empty range at a page-aligned address advises no memory.
    let rc = unsafe { libc::madvise(PAGE_SIZE as usize as *mut libc::c_void, 0, libc::MADV_HWPOISON) };
    if rc != 0 {
        return Some(Errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL)));
    }
    (!effective_capability(21)).then_some(Errno::EPERM)
}

/// Whether capability `bit` (21: CAP_SYS_ADMIN) is in this task's effective set
/// (/proc/self/status `CapEff:`, hexadecimal).
fn effective_capability(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    eff.is_some_and(|caps| caps & (1 << bit) != 0)
}

/// The task's side of NUMA: the nodes it may use (get_mempolicy(MPOL_F_MEMS_ALLOWED):
/// `*nmask = cpuset_current_mems_allowed;`; ENOSYS without CONFIG_NUMA: no nodes) and
/// whether MPOL_MF_MOVE_ALL is allowed, asked with an mbind() that changes nothing
/// (do_mbind() checks `capable(CAP_SYS_NICE)` before `if (end == start) return 0;`).
/// Whether the file keeps policies needs a file: `KvmBackend::probe_numa`.
pub fn probe_numa_task() -> Numa {
    let mut nodes = 0u64;
    // SAFETY: the kernel writes one u64 of node mask (MAXNODE) to `nodes`; no mode is asked for.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            std::ptr::null_mut::<libc::c_int>(),
            &mut nodes as *mut u64,
            mempolicy::MAXNODE,
            0usize,
            mempolicy::F_MEMS_ALLOWED,
        )
    };
    if rc != 0 {
        return Numa { nodes: 0, file_policy: false, move_all: false };
    }
    // SAFETY: an empty range with no node mask: the kernel reads no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            0usize,
            0usize,
            mempolicy::DEFAULT as libc::c_ulong,
            std::ptr::null::<u64>(),
            0usize,
            mempolicy::MF_MOVE_ALL,
        )
    };
    Numa { nodes, file_policy: false, move_all: rc == 0 }
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

/// Whether vfs_fallocate() knows FALLOC_FL_WRITE_ZEROES (fs/open.c, 6.17+): its mode check
/// `if (mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE)) return -EOPNOTSUPP;` refuses
/// the bit where FALLOC_FL_MODE_MASK lacks it; where it has it, `case
/// FALLOC_FL_WRITE_ZEROES:` passes without KEEP_SIZE and the range that wraps fails later,
/// `if (check_add_overflow(offset, len, &sum)) return -EFBIG;`, before the file's own
/// ->fallocate. Asked of a fresh one-page guest_memfd (flags 0), closed again.
fn probe_falloc_write_zeroes(vm: &VmFd) -> Result<bool, HarnessError> {
    let args = kvm_create_guest_memfd { size: PAGE_SIZE, flags: 0, ..Default::default() };
    let raw = vm.create_guest_memfd(args).map_err(|e| HarnessError::Bug(format!("write-zeroes probe: KVM_CREATE_GUEST_MEMFD: {e}")))?;
    // SAFETY: KVM_CREATE_GUEST_MEMFD returned a new fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let offset = i64::MAX & !(PAGE_SIZE as i64 - 1);
    // SAFETY: fd is the guest_memfd made above; fallocate takes no pointers.
    let rc = unsafe { libc::fallocate(fd.as_raw_fd(), crate::abi::falloc::WRITE_ZEROES, offset, 2 * PAGE_SIZE as i64) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    match (rc, errno) {
        (-1, libc::EFBIG) => Ok(true),
        (-1, libc::EOPNOTSUPP) => Ok(false),
        _ => Err(HarnessError::Bug(format!("write-zeroes probe: fallocate gave {rc} (errno {errno})"))),
    }
}
