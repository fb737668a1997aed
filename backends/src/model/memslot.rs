//! Memslots (KVM_SET_USER_MEMORY_REGION2) and memory attributes (KVM_SET_MEMORY_ATTRIBUTES).

use super::{Binding, Effect, Model, PageKey, Shared, Slot};
use crate::op::{layout, FdArg, GmemId, Op, KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, PAGE_SIZE};
use crate::outcome::{Errno, Outcome, SkipReason};

/// x86 KVM_USER_MEM_SLOTS (arch/x86/include/asm/kvm_host.h): 32764.
const KVM_USER_MEM_SLOTS: u32 = 32764;
/// KVM_MEM_MAX_NR_PAGES (include/linux/kvm_host.h): ((1UL << 31) - 1).
const KVM_MEM_MAX_NR_PAGES: u64 = (1 << 31) - 1;
/// The most bytes of anonymous memory the harness puts behind one slot.
pub const MAX_SLOT_BYTES: u64 = layout::MAX_MAPPED_BYTES;
pub use crate::abi::limits::MAX_ATTRIBUTE_PAGES;

impl Model {
    /// The ops on memslots and memory attributes: `None` for the rest.
    pub(super) fn slot_op(&mut self, op: &Op) -> Option<Outcome> {
        Some(match *op {
            Op::Bind { slot, flags, fd, gpa, size, offset } => self.bind(slot, flags, fd, gpa, size, offset),
            Op::Unbind { slot } => self.unbind(slot),
            Op::ModifySlot { slot, gpa, flags } => self.modify_slot(slot, gpa, flags),
            Op::SetAttributes { gpa, size, attributes } => self.set_attributes(gpa, size, attributes),
            _ => return None,
        })
    }

    /// The checks of kvm_vm_ioctl_set_memory_region() and __kvm_set_memory_region() that
    /// come before the memslot lookup, in the kernel's order.
    fn region_precheck(&mut self, slot: u32, flags: u32, gpa: u64, size: u64, offset: u64) -> Result<(), Outcome> {
        // kvm_vm_ioctl_set_memory_region(): `if ((u16)mem->slot >= KVM_USER_MEM_SLOTS) return -EINVAL;`
        if (slot as u16) as u32 >= KVM_USER_MEM_SLOTS {
            return Err(Outcome::Err(Errno::EINVAL));
        }
        // check_memory_region_flags(): LOG_DIRTY_PAGES always; GUEST_MEMFD when the kernel has
        // guest_memfd for this VM (6.18: CONFIG_KVM_GUEST_MEMFD; 6.12: kvm_arch_has_private_mem,
        // i.e. VM type 1; either way what KVM_CAP_GUEST_MEMFD on the VM fd says), minus
        // LOG_DIRTY_PAGES for guest_memfd slots; READONLY only without GUEST_MEMFD
        // (kvm_arch_has_readonly_mem is true for both VM types used here).
        let mut valid = KVM_MEM_LOG_DIRTY_PAGES;
        if self.profile.guest_memfd {
            valid |= KVM_MEM_GUEST_MEMFD;
        }
        if flags & KVM_MEM_GUEST_MEMFD != 0 {
            valid &= !KVM_MEM_LOG_DIRTY_PAGES;
        } else {
            valid |= KVM_MEM_READONLY;
        }
        if flags & !valid != 0 {
            return Err(Outcome::Err(Errno::EINVAL));
        }
        // __kvm_set_memory_region(): size and GPA must be page aligned.
        if size % PAGE_SIZE != 0 || gpa % PAGE_SIZE != 0 {
            return Err(Outcome::Err(Errno::EINVAL));
        }
        // `if (mem->flags & KVM_MEM_GUEST_MEMFD && (mem->guest_memfd_offset & (PAGE_SIZE - 1) ||
        //      mem->guest_memfd_offset + mem->memory_size < mem->guest_memfd_offset)) return -EINVAL;`
        if flags & KVM_MEM_GUEST_MEMFD != 0 && (offset % PAGE_SIZE != 0 || offset.checked_add(size).is_none()) {
            return Err(Outcome::Err(Errno::EINVAL));
        }
        // `if (as_id >= kvm_arch_nr_memslot_as_ids(kvm) || id >= KVM_MEM_SLOTS_NUM)`: x86 has
        // two address spaces only with CONFIG_KVM_SMM, so address space 1 is not predicted.
        // The profile carries KVM_CAP_MULTI_ADDRESS_SPACE (1 without CONFIG_KVM_SMM, probe: 0).
        if slot >> 16 >= self.profile.address_spaces.max(1) {
            return Err(Outcome::Err(Errno::EINVAL));
        }
        // `if (mem->guest_phys_addr + mem->memory_size < mem->guest_phys_addr) return -EINVAL;`
        if gpa.checked_add(size).is_none() {
            return Err(Outcome::Err(Errno::EINVAL));
        }
        // `if ((mem->memory_size >> PAGE_SHIFT) > KVM_MEM_MAX_NR_PAGES) return -EINVAL;`
        if size / PAGE_SIZE > KVM_MEM_MAX_NR_PAGES {
            return Err(Outcome::Err(Errno::EINVAL));
        }
        Ok(())
    }

    /// x86 kvm_arch_prepare_memory_region(), for KVM_MR_CREATE and KVM_MR_MOVE, after the
    /// overlap check and kvm_gmem_bind(): `if ((new->base_gfn + new->npages - 1) >
    /// kvm_mmu_max_gfn()) return -EINVAL;` (the limit is probed: `Profile::max_gfn`).
    fn beyond_max_gfn(&self, base_gfn: u64, npages: u64) -> bool {
        base_gfn + npages - 1 > self.profile.max_gfn
    }

    pub(super) fn bind(&mut self, slot: u32, flags: u32, fd: FdArg, gpa: u64, size: u64, offset: u64) -> Outcome {
        if !self.vm_alive {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        if slot < layout::HARNESS_SLOTS {
            return Outcome::Skipped(SkipReason::ReservedSlot);
        }
        if size > MAX_SLOT_BYTES {
            return Outcome::Skipped(SkipReason::TooLarge);
        }
        // The harness never passes a closed fd number: it could name another file by now.
        if let FdArg::Gmem(id) = fd {
            if flags & KVM_MEM_GUEST_MEMFD != 0 {
                if let Err(why) = self.file(id, true) {
                    return Outcome::Skipped(why);
                }
            }
        }
        if let Err(outcome) = self.region_precheck(slot, flags, gpa, size, offset) {
            return outcome;
        }
        if size == 0 {
            return self.delete_slot(slot);
        }
        if self.slots.contains_key(&slot) {
            // "Modify an existing slot": `if (mem->flags & KVM_MEM_GUEST_MEMFD) return -EINVAL;`
            // then userspace_addr and npages must match the old slot; Bind always passes a
            // fresh userspace_addr, so a plain re-bind is refused as well.
            return Outcome::Err(Errno::EINVAL);
        }
        let base_gfn = gpa / PAGE_SIZE;
        let npages = size / PAGE_SIZE;
        // `if ((change == KVM_MR_CREATE || change == KVM_MR_MOVE) && kvm_check_memslot_overlap(...))
        //      return -EEXIST;` — the harness's own slots count too.
        if self.overlaps(slot, base_gfn, npages) {
            return Outcome::Err(Errno::EEXIST);
        }
        let mut new = Slot { base_gfn, npages, flags, binding: None, gmem_only: false, shared: Shared::Anon, anon: Default::default() };
        let late = self.profile.bound_range_late;
        if flags & KVM_MEM_GUEST_MEMFD != 0 {
            match self.gmem_bind_check(fd, offset, size, !late) {
                Ok(binding) => {
                    let file = &self.gmems[binding.gmem];
                    // 6.18 and 7.2 kvm_gmem_bind(): `if (kvm_gmem_supports_mmap(inode))
                    // slot->flags |= KVM_MEMSLOT_GMEM_ONLY;` on every VM type (probed:
                    // `Profile::gmem_only_slots`; this project's 6.18 host does not).
                    new.gmem_only = self.profile.gmem_only_slots && file.flags & crate::op::GUEST_MEMFD_FLAG_MMAP != 0;
                    // The shared side is the file's mapping where the slot fits in it.
                    if file.mapped && offset.checked_add(size).is_some_and(|end| end <= file.size) {
                        new.shared = Shared::GmemMap { gmem: binding.gmem, pgoff: binding.pgoff, generation: file.map_generation };
                    }
                    new.binding = Some(binding);
                }
                Err(errno) => return Outcome::Err(errno),
            }
        }
        if self.beyond_max_gfn(base_gfn, npages) {
            return Outcome::Err(Errno::EINVAL);
        }
        // `Profile::bound_range_late` (6.12.118): kvm_set_memslot() calls
        // kvm_gmem_commit_memory_region() after kvm_prepare_memory_region(): `if
        // (!xa_empty(&gmem->bindings) && xa_find(...)) { ...; return -EEXIST; }`.
        if let Some(binding) = new.binding.filter(|_| late) {
            if self.bound_range_taken(binding.gmem, offset, size) {
                return Outcome::Err(self.profile.bound_range_errno);
            }
        }
        self.slots_mut().insert(slot, new);
        Outcome::Ok
    }

    /// kvm_gmem_bind(): the file must be a guest_memfd of this VM, the range inside the file
    /// and (`bound`: where the kernel checks it here) not bound to another slot.
    fn gmem_bind_check(&self, fd: FdArg, offset: u64, size: u64, bound: bool) -> Result<Binding, Errno> {
        let gmem = match fd {
            // `file = fget(fd); if (!file) return -EBADF;`
            FdArg::Invalid => return Err(Errno::EBADF),
            // `if (file->f_op != &kvm_gmem_fops) goto err;` (r = -EINVAL)
            FdArg::NotGmem => return Err(Errno::EINVAL),
            FdArg::Gmem(id) => id,
        };
        let file = &self.gmems[gmem];
        // `if (offset < 0 || !PAGE_ALIGNED(offset) || offset + size > i_size_read(inode)) goto err;`
        if (offset as i64) < 0 || offset.checked_add(size).is_none_or(|end| end > file.size) {
            return Err(Errno::EINVAL);
        }
        // `if (!xa_empty(&gmem->bindings) && xa_find(&gmem->bindings, &start, end - 1, XA_PRESENT))`:
        // 6.12 `goto err` (r = -EINVAL; probe on 6.18: "a second binding of an overlapping
        // file range -> EINVAL"), 7.2 `r = -EEXIST;`. The profile carries the probed errno.
        if bound && self.bound_range_taken(gmem, offset, size) {
            return Err(self.profile.bound_range_errno);
        }
        Ok(Binding { gmem, pgoff: offset / PAGE_SIZE, file_gone: false })
    }

    /// Whether another slot binds a page of `gmem` in [offset, offset + size).
    fn bound_range_taken(&self, gmem: GmemId, offset: u64, size: u64) -> bool {
        let (start, end) = (offset / PAGE_SIZE, (offset + size) / PAGE_SIZE);
        let taken = self.slots.values().filter_map(|s| s.binding.map(|b| (b, s.npages)));
        taken.into_iter().any(|(b, npages)| b.gmem == gmem && !b.file_gone && b.pgoff < end && start < b.pgoff + npages)
    }

    /// kvm_check_memslot_overlap(slots, id, ...) over the memslots of `slot`'s address space
    /// (`slots = __kvm_memslots(kvm, as_id);`), the harness's own (address space 0) included.
    fn overlaps(&self, slot: u32, base_gfn: u64, npages: u64) -> bool {
        let as_id = super::address_space(slot);
        let harness = [
            (layout::CODE_GPA / PAGE_SIZE, layout::CODE_SIZE / PAGE_SIZE),
            (layout::MAILBOX_GPA / PAGE_SIZE, layout::MAILBOX_SIZE / PAGE_SIZE),
        ];
        let harness = harness.into_iter().filter(|_| as_id == 0);
        let program =
            self.slots.iter().filter(|(id, _)| **id != slot && super::address_space(**id) == as_id).map(|(_, s)| (s.base_gfn, s.npages));
        harness.chain(program).any(|(b, n)| b < base_gfn + npages && base_gfn < b + n)
    }

    pub(super) fn unbind(&mut self, slot: u32) -> Outcome {
        if !self.vm_alive {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        if slot < layout::HARNESS_SLOTS {
            return Outcome::Skipped(SkipReason::ReservedSlot);
        }
        if let Err(outcome) = self.region_precheck(slot, 0, 0, 0, 0) {
            return outcome;
        }
        self.delete_slot(slot)
    }

    /// `if (!mem->memory_size) { if (!old || !old->npages) return -EINVAL; ... KVM_MR_DELETE }`
    /// Deleting a guest_memfd slot unbinds it (kvm_gmem_unbind) but leaves the file's pages;
    /// the harness frees the slot's anonymous memory.
    fn delete_slot(&mut self, slot: u32) -> Outcome {
        let Some(old) = self.slots_mut().remove(&slot) else {
            return Outcome::Err(Errno::EINVAL);
        };
        self.tell(Effect::SlotDeleted { slot, base_gfn: old.base_gfn, npages: old.npages });
        for (index, page) in old.anon.iter() {
            self.history.record_drop(self.op_index, PageKey::Anon { slot, index: *index }, "unbind", page);
        }
        Outcome::Ok
    }

    pub(super) fn modify_slot(&mut self, slot: u32, gpa: u64, flags: u32) -> Outcome {
        if !self.vm_alive {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        let Some(old) = self.slots.get(&slot) else {
            return Outcome::Skipped(SkipReason::NoSuchSlot);
        };
        let (size, old_flags, old_gfn) = (old.npages * PAGE_SIZE, old.flags, old.base_gfn);
        if let Err(outcome) = self.region_precheck(slot, flags, gpa, size, 0) {
            return outcome;
        }
        // "Private memslots are immutable, they can only be deleted.":
        // `if (mem->flags & KVM_MEM_GUEST_MEMFD) return -EINVAL;` then
        // `if (... || ((mem->flags ^ old->flags) & (KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD)))
        //      return -EINVAL;` (commit 9935df5333aa, in 6.12.117 and 6.18.3+; measured on
        // 6.18.44: dropping the flag from a bound slot gives EINVAL). Size and
        // userspace_addr are passed unchanged.
        if flags & KVM_MEM_GUEST_MEMFD != 0 || (flags ^ old_flags) & (KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD) != 0 {
            return Outcome::Err(Errno::EINVAL);
        }
        let base_gfn = gpa / PAGE_SIZE;
        if base_gfn != old_gfn {
            // KVM_MR_MOVE: overlap check, then the slot moves with its memory.
            if self.overlaps(slot, base_gfn, size / PAGE_SIZE) {
                return Outcome::Err(Errno::EEXIST);
            }
            if self.beyond_max_gfn(base_gfn, size / PAGE_SIZE) {
                return Outcome::Err(Errno::EINVAL);
            }
        } else if flags == old_flags {
            // "Nothing to change."
            return Outcome::Ok;
        }
        let s = self.slots_mut().get_mut(&slot).expect("looked up above");
        s.base_gfn = base_gfn;
        s.flags = flags;
        self.tell(Effect::SlotChanged { slot, base_gfn: old_gfn, npages: size / PAGE_SIZE });
        Outcome::Ok
    }

    pub(super) fn set_attributes(&mut self, gpa: u64, size: u64, attributes: u64) -> Outcome {
        if !self.vm_alive {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        // Without CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES kvm_vm_ioctl() has no case for
        // KVM_SET_MEMORY_ATTRIBUTES and kvm_arch_vm_ioctl() returns -ENOTTY (probe on 6.18).
        if !self.profile.attributes_ioctl {
            return Outcome::Err(Errno::ENOTTY);
        }
        // kvm_vm_ioctl_set_mem_attributes() (6.12):
        // `if (attrs->attributes & ~kvm_supported_mem_attributes(kvm)) return -EINVAL;`
        if attributes & !self.profile.attributes != 0 {
            return Outcome::Err(Errno::EINVAL);
        }
        // `if (attrs->size == 0 || attrs->address + attrs->size < attrs->address) return -EINVAL;`
        let Some(end) = gpa.checked_add(size).filter(|_| size != 0) else {
            return Outcome::Err(Errno::EINVAL);
        };
        // `if (!PAGE_ALIGNED(attrs->address) || !PAGE_ALIGNED(attrs->size)) return -EINVAL;`
        if gpa % PAGE_SIZE != 0 || size % PAGE_SIZE != 0 {
            return Outcome::Err(Errno::EINVAL);
        }
        let (start, end) = (gpa / PAGE_SIZE, end / PAGE_SIZE);
        // The harness's code and mailbox must stay shared for the vCPU to run at all.
        let harness = layout::CODE_GPA / PAGE_SIZE..(layout::MAILBOX_GPA + layout::MAILBOX_SIZE) / PAGE_SIZE;
        if attributes != 0 && start < harness.end && harness.start < end {
            return Outcome::Skipped(SkipReason::UnreachableGpa);
        }
        // kvm_vm_set_mem_attributes(): "Nothing to do if the entire range as the desired
        // attributes." `if (kvm_range_has_memory_attributes(kvm, start, end, ~0, attributes))
        // goto out_unlock;` (r = 0), however large the range.
        if self.attributes.uniform(start, end, attributes) {
            self.tell(Effect::AttributesSet { first: start, end, attributes });
            return Outcome::Ok;
        }
        if end - start > MAX_ATTRIBUTE_PAGES {
            return Outcome::Skipped(SkipReason::TooLarge);
        }
        // Otherwise it reserves every entry, zaps mappings (kvm_pre_set_memory_attributes)
        // and stores the attributes for every GFN, memslot or not. Page contents (shared
        // anon, private gmem) survive (probe: private content survives a round trip).
        self.attributes.set(start, end, attributes);
        self.tell(Effect::AttributesSet { first: start, end, attributes });
        Outcome::Ok
    }
}
