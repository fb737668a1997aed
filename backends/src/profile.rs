//! What the kernel under test offers, probed once per backend, so that the model predicts
//! what *this* kernel must do (a capability it lacks is an error to predict, not a skip).

use crate::outcome::Errno;

/// KVM's answers to KVM_CHECK_EXTENSION and the VM type in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Kernel release (`uname -r`), for reports.
    pub kernel: String,
    /// The VM type passed to KVM_CREATE_VM (0 = default, 1 = KVM_X86_SW_PROTECTED_VM).
    pub vm_type: u64,
    /// KVM_CAP_GUEST_MEMFD.
    pub guest_memfd: bool,
    /// KVM_CAP_GUEST_MEMFD_FLAGS (244): the creation flags this VM accepts. Kernels without
    /// the capability (6.12) accept no flags.
    pub gmem_flags: u64,
    /// Whether KVM_SET_MEMORY_ATTRIBUTES exists at all (CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES);
    /// without it the ioctl falls through to kvm_arch_vm_ioctl and fails with ENOTTY.
    pub attributes_ioctl: bool,
    /// KVM_CAP_MEMORY_ATTRIBUTES on the VM fd: the attributes this VM supports.
    pub attributes: u64,
    /// Whether binding a file made with GUEST_MEMFD_FLAG_MMAP makes a "guest_memfd only"
    /// slot (KVM_MEMSLOT_GMEM_ONLY): shared guest faults go to the file too, not to
    /// userspace_addr. Probed (`KvmBackend::probe_gmem_only`): a guest write through such a
    /// slot either lands in the slot's anonymous memory or not.
    pub gmem_only_slots: bool,
    /// The errno of kvm_gmem_bind() for a file range another slot already binds: EINVAL on
    /// 6.12 (`goto err` with `r = -EINVAL`), EEXIST on 7.2 (`r = -EEXIST;`). Probed
    /// (`KvmBackend::probe_bound_range_errno`).
    pub bound_range_errno: Errno,
    /// Whether that check comes after the architecture's memslot checks (x86: a slot past
    /// `max_gfn` is EINVAL) rather than before them. 6.12.118 checks the file in
    /// kvm_gmem_prepare_memory_region() before kvm_set_memslot() and the bound range in
    /// kvm_gmem_commit_memory_region(), after kvm_prepare_memory_region(); 7.2 and 7.3 do both
    /// in kvm_gmem_bind(), before kvm_set_memslot(). Probed
    /// (`KvmBackend::probe_bound_range_late`).
    pub bound_range_late: bool,
    /// KVM_CAP_MULTI_ADDRESS_SPACE on the VM fd: memslot address spaces (0 reads as 1).
    pub address_spaces: u32,
    /// FALLOC_FL_WRITE_ZEROES (0x80) is in vfs_fallocate's FALLOC_FL_MODE_MASK (6.17+).
    /// Probed (kvm::profile::probe_falloc_write_zeroes).
    pub falloc_write_zeroes: bool,
    /// kvm_mmu_max_gfn() (arch/x86/kvm/mmu.h): the highest GFN a memslot may cover,
    /// `(1ULL << (max_gpa_bits - PAGE_SHIFT)) - 1` with `max_gpa_bits = tdp_enabled ?
    /// kvm_host.maxphyaddr : 52`. Host dependent, so probed (kvm::profile::probe_max_gfn).
    pub max_gfn: u64,
    /// What mbind()/get_mempolicy() do on a guest_memfd mapping (mm/mempolicy.c).
    pub numa: Numa,
    /// KVM_PRE_FAULT_MEMORY: `None` where it maps memory, else the errno every call gets
    /// (EOPNOTSUPP without two-dimensional paging, kvm_tdp_page_prefault(); ENOTTY or
    /// EINVAL where the ioctl is unknown). Probed (`KvmBackend::probe_pre_fault`).
    pub pre_fault_errno: Option<Errno>,
    /// The kernel keeps the SNP-like software platform's reverse map
    /// (CONFIG_KVM_SW_PROTECTED_RMP, harness/lane/patches/sw-rmp-*.patch) and lists this
    /// VM's part of it in its debugfs directory (`sw_rmp`). Probed: the file exists.
    pub platform_map: bool,
    /// madvise(MADV_HWPOISON): `None` where it reaches memory_failure(), else the errno every
    /// call with a range gets: EINVAL without CONFIG_MEMORY_FAILURE (madvise_behavior_valid()
    /// knows MADV_HWPOISON only `#ifdef CONFIG_MEMORY_FAILURE`; even an empty range), EPERM
    /// without CAP_SYS_ADMIN (madvise_inject_error(): `if (!capable(CAP_SYS_ADMIN)) return
    /// -EPERM;`, after check_input_range()). Probed (kvm::profile::probe_hwpoison).
    pub hwpoison_errno: Option<Errno>,
}

/// The NUMA side of the kernel and this task, for `Op::Mbind` and `Op::GetMempolicy`.
/// Probed (kvm::profile::probe_numa).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Numa {
    /// The memory nodes this task may use (get_mempolicy(MPOL_F_MEMS_ALLOWED): the
    /// cpuset's mems_allowed, which mpol_set_nodemask() intersects with N_MEMORY), nodes 0
    /// to 63; empty where the kernel has no CONFIG_NUMA and both calls fail with ENOSYS.
    pub nodes: u64,
    /// Whether the file keeps the policies set through its mappings (7.2: the mapping's
    /// vm_ops have kvm_gmem_set_policy() and kvm_gmem_get_policy(), over the inode's
    /// `shared_policy`), so a new mapping sees them; 6.18 keeps them in the mapping's
    /// VMAs only, and a new mapping starts with none.
    pub file_policy: bool,
    /// Whether MPOL_MF_MOVE_ALL is allowed (do_mbind(): `if ((flags & MPOL_MF_MOVE_ALL) &&
    /// !capable(CAP_SYS_NICE)) return -EPERM;`).
    pub move_all: bool,
}

impl Numa {
    /// One memory node, policies in the mapping only, as root: this project's 6.18 host
    /// (probed) and a lane guest booted without NUMA options.
    pub const ONE_NODE: Numa = Numa { nodes: 1, file_policy: false, move_all: true };
}

/// kvm_mmu_max_gfn() for a host MAXPHYADDR of `bits`.
pub const fn max_gfn_for_bits(bits: u32) -> u64 {
    (1 << (bits - 12)) - 1
}

impl Profile {
    /// The profile assumed for a VM type when no kernel can be probed: the host kernel
    /// (6.18) for type 0, the software-protected VM of the lane's default kernel (7.2) for
    /// type 1.
    pub fn assumed(vm_type: u64) -> Profile {
        if vm_type == 1 {
            Profile::sw_protected_7_2()
        } else {
            Profile::host_6_18()
        }
    }

    /// The host kernel of this project's machines, as measured (shared/design/platform-facts.md
    /// and the probes in kvm::profile: guest faults go through userspace_addr there).
    pub fn host_6_18() -> Profile {
        Profile {
            kernel: "6.18 (assumed)".into(),
            vm_type: 0,
            guest_memfd: true,
            gmem_flags: crate::op::GUEST_MEMFD_FLAG_MMAP | crate::op::GUEST_MEMFD_FLAG_INIT_SHARED,
            attributes_ioctl: false,
            attributes: 0,
            gmem_only_slots: false,
            // Probed on this project's 6.18 host (platform-facts: "a second binding of an
            // overlapping file range -> EINVAL").
            bound_range_errno: Errno::EINVAL,
            bound_range_late: false,
            address_spaces: 1,
            falloc_write_zeroes: true,
            // Probed on this project's 6.18 host (kvm_pvm, no TDP: 52 bits).
            max_gfn: max_gfn_for_bits(52),
            // Probed on this project's 6.18 host: node 0 only; a policy set through one
            // mapping is gone from a new mapping of the same file.
            numa: Numa::ONE_NODE,
            // kvm_pvm uses shadow paging: kvm_tdp_page_prefault() `if
            // (vcpu->arch.mmu->page_fault != kvm_tdp_page_fault) return -EOPNOTSUPP;`.
            pre_fault_errno: Some(Errno::EOPNOTSUPP),
            platform_map: false,
            // Not assumed: poisoned pages are never given back to the kernel, so only a
            // kernel that was probed (and is thrown away after the run) gets the advice.
            hwpoison_errno: Some(Errno::EINVAL),
        }
    }

    /// Linux 6.12 with KVM_SW_PROTECTED_VM, VM type 1 (the QEMU lane).
    pub fn sw_protected_6_12() -> Profile {
        Profile {
            kernel: "6.12 (assumed)".into(),
            vm_type: 1,
            guest_memfd: true,
            gmem_flags: 0,
            attributes_ioctl: true,
            attributes: crate::op::KVM_MEMORY_ATTRIBUTE_PRIVATE,
            gmem_only_slots: false,
            // 6.12 kvm_gmem_bind(): `int r = -EINVAL;` ... `xa_find(...)) {
            // filemap_invalidate_unlock(inode->i_mapping); goto err; }`
            bound_range_errno: Errno::EINVAL,
            // 6.12.0's kvm_gmem_bind(); Debian's 6.12.118 checks it late (probed there).
            bound_range_late: false,
            address_spaces: 1,
            falloc_write_zeroes: false,
            // QEMU/TCG `-cpu max` without phys-bits: TCG_PHYS_ADDR_BITS, 40; NPT is enabled.
            max_gfn: max_gfn_for_bits(40),
            // 6.12 guest_memfd has no mmap: no mapping to set a policy on.
            numa: Numa::ONE_NODE,
            // QEMU's NPT: KVM uses the TDP MMU (kvm_tdp_page_fault), so pre-faulting works.
            pre_fault_errno: None,
            // Only a kernel built with the lane's software platform has one (probed).
            platform_map: false,
            // Not assumed (see host_6_18).
            hwpoison_errno: Some(Errno::EINVAL),
        }
    }

    /// Linux 7.2 with KVM_SW_PROTECTED_VM, VM type 1 (the QEMU lane's default kernel), as its
    /// code reads; the lane probes the real values.
    pub fn sw_protected_7_2() -> Profile {
        Profile {
            kernel: "7.2 (assumed)".into(),
            // include/linux/kvm_host.h kvm_gmem_get_supported_flags(): `u64 flags =
            // GUEST_MEMFD_FLAG_MMAP; if (!kvm || kvm_arch_supports_gmem_init_shared(kvm))
            // flags |= GUEST_MEMFD_FLAG_INIT_SHARED;` and arch/x86/kvm/x86.c
            // kvm_arch_supports_gmem_init_shared(): `return !kvm_arch_has_private_mem(kvm);`
            gmem_flags: crate::op::GUEST_MEMFD_FLAG_MMAP,
            // virt/kvm/guest_memfd.c kvm_gmem_bind(): `if (kvm_gmem_supports_mmap(inode))
            // slot->flags |= KVM_MEMSLOT_GMEM_ONLY;`
            gmem_only_slots: true,
            // kvm_gmem_bind(): `xa_find(&f->bindings, &start, end - 1, XA_PRESENT)) { r = -EEXIST;`
            bound_range_errno: Errno::EEXIST,
            // vfs_fallocate(): FALLOC_FL_MODE_MASK includes FALLOC_FL_WRITE_ZEROES.
            falloc_write_zeroes: true,
            // virt/kvm/guest_memfd.c kvm_gmem_vm_ops: `.get_policy = kvm_gmem_get_policy,
            // .set_policy = kvm_gmem_set_policy,` (CONFIG_NUMA, which the lane has).
            numa: Numa { file_policy: true, ..Numa::ONE_NODE },
            ..Profile::sw_protected_6_12()
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "kernel {} vm_type {} guest_memfd {} gmem_flags {:#x} attributes_ioctl {} attributes {:#x} gmem_only_slots {} bound_range_errno {} bound_range_late {} address_spaces {} falloc_write_zeroes {} max_gfn {:#x} numa_nodes {:#x} file_policy {} move_all {} pre_fault {} platform_map {} hwpoison {}",
            self.kernel,
            self.vm_type,
            self.guest_memfd,
            self.gmem_flags,
            self.attributes_ioctl,
            self.attributes,
            self.gmem_only_slots,
            self.bound_range_errno,
            self.bound_range_late,
            self.address_spaces,
            self.falloc_write_zeroes,
            self.max_gfn,
            self.numa.nodes,
            self.numa.file_policy,
            self.numa.move_all,
            self.pre_fault_errno.map_or("ok".to_string(), |e| e.to_string()),
            self.platform_map,
            self.hwpoison_errno.map_or("ok".to_string(), |e| e.to_string())
        )
    }
}
