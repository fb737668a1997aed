//! guest_memfd files: creation, mapping, fallocate, references and release, host access.

use super::{Effect, GmemFile, Model, Page, PageEvent, PageKey};
use crate::op::{layout, GmemId, Op, Width, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, MADVICE, MADV_COLLAPSE, PAGE_SIZE};
use crate::outcome::{Errno, Outcome, SkipReason};
// Under the kernel's names, so the rules below read like the code they cite.
use crate::abi::falloc::{
    COLLAPSE_RANGE as FALLOC_FL_COLLAPSE_RANGE, INSERT_RANGE as FALLOC_FL_INSERT_RANGE, KEEP_SIZE as FALLOC_FL_KEEP_SIZE,
    MODE_MASK_6_12 as FALLOC_MODE_MASK, PUNCH_HOLE as FALLOC_FL_PUNCH_HOLE, UNSHARE_RANGE as FALLOC_FL_UNSHARE_RANGE,
    WRITE_ZEROES as FALLOC_FL_WRITE_ZEROES, ZERO_RANGE as FALLOC_FL_ZERO_RANGE,
};

pub use crate::abi::limits::MAX_ALLOCATE_PAGES;

impl Model {
    /// KVM_CREATE_GUEST_MEMFD. Every create that reaches the kernel takes the next
    /// `GmemId`, whether it makes a file or fails.
    pub(super) fn create_gmem(&mut self, size: u64, flags: u64) -> Outcome {
        if !self.vm_alive {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        let outcome = self.new_gmem(size, flags);
        if outcome != Outcome::Ok {
            self.gmems.push(None);
        }
        outcome
    }

    fn new_gmem(&mut self, size: u64, flags: u64) -> Outcome {
        // kvm_gmem_create(): `if (flags & ~kvm_gmem_get_supported_flags(kvm)) return -EINVAL;`
        // (6.18; 6.12: `valid_flags = 0`). The profile carries KVM_CAP_GUEST_MEMFD_FLAGS.
        if flags & !self.profile.gmem_flags != 0 {
            return Outcome::Err(Errno::EINVAL);
        }
        // kvm_gmem_create(): `if (size <= 0 || !PAGE_ALIGNED(size)) return -EINVAL;` (loff_t size)
        if (size as i64) <= 0 || size % PAGE_SIZE != 0 {
            return Outcome::Err(Errno::EINVAL);
        }
        // A file past the 256th is made like any other; no op can name it (`GmemId` is a
        // u8), so it only holds an fd.
        self.gmems.push(Some(GmemFile {
            size,
            flags,
            fd_open: true,
            mapped: false,
            map_generation: 0,
            released: false,
            pages: Default::default(),
            map_policy: Default::default(),
            file_policy: Default::default(),
            assigned: Default::default(),
            poison: Default::default(),
            fingerprint: Default::default(),
        }));
        Outcome::Ok
    }

    /// Finds a live file the op may use, or the reason every backend skips the op.
    pub(super) fn file(&self, gmem: GmemId, needs_fd: bool) -> Result<&GmemFile, SkipReason> {
        let file = self.gmems.get(gmem).ok_or(SkipReason::NoSuchGmem)?;
        if needs_fd && !file.fd_open {
            return Err(SkipReason::FdClosed);
        }
        Ok(file)
    }

    pub(super) fn map(&mut self, gmem: GmemId) -> Outcome {
        let file = match self.file(gmem, true) {
            Ok(f) => f,
            Err(why) => return Outcome::Skipped(why),
        };
        if file.mapped {
            return Outcome::Skipped(SkipReason::AlreadyMapped);
        }
        if file.size > layout::MAX_MAPPED_BYTES {
            return Outcome::Skipped(SkipReason::TooLarge);
        }
        // kvm_gmem_mmap(): `if (!kvm_gmem_supports_mmap(file_inode(file))) return -ENODEV;`
        // (6.18). 6.12 has no ->mmap: do_mmap() fails with ENODEV just the same.
        if file.flags & GUEST_MEMFD_FLAG_MMAP == 0 {
            return Outcome::Err(Errno::ENODEV);
        }
        let file = &mut self.gmems[gmem];
        file.mapped = true;
        file.map_generation += 1;
        // A new VMA: no policy of its own (vm_area_alloc()).
        file.map_policy = Default::default();
        Outcome::Ok
    }

    pub(super) fn fallocate(&mut self, gmem: GmemId, mode: i32, offset: u64, len: u64) -> Outcome {
        let file = match self.file(gmem, true) {
            Ok(f) => f,
            Err(why) => return Outcome::Skipped(why),
        };
        let (size, off, ln) = (file.size, offset as i64, len as i64);
        // vfs_fallocate() (fs/open.c): `if (offset < 0 || len <= 0) return -EINVAL;`
        if off < 0 || ln <= 0 {
            return Outcome::Err(Errno::EINVAL);
        }
        // vfs_fallocate(): `if (mode & ~(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE)) return -EOPNOTSUPP;`
        // then the switch on `mode & FALLOC_FL_MODE_MASK`: ALLOCATE (0), UNSHARE, ZERO pass;
        // PUNCH_HOLE needs KEEP_SIZE; COLLAPSE, INSERT (and WRITE_ZEROES, 6.17+) refuse it;
        // any combination of two modes is `default: return -EOPNOTSUPP;`.
        let mode_mask = FALLOC_MODE_MASK | if self.profile.falloc_write_zeroes { FALLOC_FL_WRITE_ZEROES } else { 0 };
        let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
        let vfs_ok = mode & !(mode_mask | FALLOC_FL_KEEP_SIZE) == 0
            && match mode & mode_mask {
                0 | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_ZERO_RANGE => true,
                FALLOC_FL_PUNCH_HOLE => keep,
                FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE | FALLOC_FL_WRITE_ZEROES => !keep,
                _ => false,
            };
        if !vfs_ok {
            return Outcome::Err(Errno::EOPNOTSUPP);
        }
        // vfs_fallocate(): `if (check_add_overflow(offset, len, &sum)) return -EFBIG;
        // if (sum > inode->i_sb->s_maxbytes) return -EFBIG;` (s_maxbytes = MAX_LFS_FILESIZE)
        if off.checked_add(ln).is_none() {
            return Outcome::Err(Errno::EFBIG);
        }
        // kvm_gmem_fallocate(): `if (!(mode & FALLOC_FL_KEEP_SIZE)) return -EOPNOTSUPP;`
        // `if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) return -EOPNOTSUPP;`
        if mode & FALLOC_FL_KEEP_SIZE == 0 || mode & !(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE) != 0 {
            return Outcome::Err(Errno::EOPNOTSUPP);
        }
        // kvm_gmem_fallocate(): `if (!PAGE_ALIGNED(offset) || !PAGE_ALIGNED(len)) return -EINVAL;`
        if offset % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
            return Outcome::Err(Errno::EINVAL);
        }
        let (first, end) = (offset / PAGE_SIZE, (offset + len) / PAGE_SIZE);
        if mode & FALLOC_FL_PUNCH_HOLE != 0 {
            // kvm_gmem_punch_hole(): invalidates every binding over the range, then
            // truncate_inode_pages_range(); no size check, so a hole past EOF is a no-op
            // returning 0 (probe: "punch past the end -> 0").
            self.drop_pages(gmem, first, end.min(size / PAGE_SIZE), "punch-hole");
            self.tell(Effect::Punched { gmem, first, end });
            return Outcome::Ok;
        }
        // kvm_gmem_allocate(): `if (offset + len > i_size_read(inode)) return -EINVAL;`
        if offset + len > size {
            return Outcome::Err(Errno::EINVAL);
        }
        if end - first > MAX_ALLOCATE_PAGES {
            return Outcome::Skipped(SkipReason::TooLarge);
        }
        // kvm_gmem_allocate(): kvm_gmem_get_folio() for every index; folios are not
        // cleared here but before first use (fault or get_pfn), so they read as zero.
        for index in first..end {
            self.ensure_page(gmem, index, "allocate", false);
        }
        self.tell(Effect::Allocated { gmem, first, end });
        Outcome::Ok
    }

    /// The ops on files, their fds and their mappings, and the VM's end: `None` for the rest.
    pub(super) fn file_op(&mut self, op: &Op) -> Option<Outcome> {
        Some(match *op {
            Op::CreateGmem { size, flags } => self.create_gmem(size, flags),
            Op::Map { gmem } => self.map(gmem),
            Op::Punch { gmem, offset, len } => self.fallocate(gmem, crate::abi::falloc::PUNCH, offset, len),
            Op::Allocate { gmem, mode, offset, len } => self.fallocate(gmem, mode, offset, len),
            Op::CloseGmem { gmem } => self.close_gmem(gmem),
            Op::Unmap { gmem } => self.unmap(gmem),
            Op::Truncate { gmem, .. } => self.truncate(gmem),
            Op::Madvise { gmem, offset, len, advice } => self.madvise(gmem, offset, len, advice),
            Op::HostRead { gmem, offset, width } => self.host_access(gmem, offset, width, None),
            Op::HostWrite { gmem, offset, width, value } => self.host_access(gmem, offset, width, Some(value)),
            Op::DestroyVm => self.destroy_vm(),
            _ => return None,
        })
    }

    /// Makes page `index` of a file exist (zero) if it does not; a fault (`prepare`) also
    /// marks it uptodate.
    pub(super) fn populate(&mut self, gmem: GmemId, index: u64, by: &'static str, prepare: bool) -> &mut Page {
        let key = PageKey::Gmem { gmem: gmem.0, index };
        if !self.gmems[gmem].pages.contains(index) {
            self.history.record(self.op_index, key, PageEvent::Populated { by });
        }
        self.gmems[gmem].pages.populate(index, prepare).1
    }

    /// `populate` where the page is missing, or a fault finds it not yet prepared; else
    /// nothing, and the file is left as it is: clones of the model share a file, with its
    /// part of the fingerprint, until one of them changes it (the race search clones the
    /// model once per state it tries, and most accesses find their page).
    pub(super) fn ensure_page(&mut self, gmem: GmemId, index: u64, by: &'static str, prepare: bool) {
        let pages = &self.gmems[gmem].pages;
        if !(pages.is_prepared(index) || (!prepare && pages.contains(index))) {
            self.populate(gmem, index, by, prepare);
        }
    }

    /// Drops pages [first, end) of a file from its page cache (a range without pages leaves
    /// the file untouched, as `ensure_page` does).
    pub(super) fn drop_pages(&mut self, gmem: GmemId, first: u64, end: u64, by: &'static str) {
        // Truncation takes a poisoned folio out like any other (truncate_inode_folio()); the
        // mapping's hwpoison entries stay (`poison.rs`).
        if self.gmems[gmem].poison.any_folio_in(first, end) {
            self.gmems[gmem].poison.truncated(first, end);
        }
        // One page (each step of a punch the race search splits) is looked up, not listed.
        if end == first + 1 {
            if self.gmems[gmem].pages.contains(first) {
                self.drop_page(gmem, first, by);
            }
            return;
        }
        if !self.gmems[gmem].pages.any_in(first, end) {
            return;
        }
        self.reclaim(gmem, first, end);
        for (index, page) in self.gmems[gmem].pages.remove_range(first, end) {
            self.history.record_drop(self.op_index, PageKey::Gmem { gmem: gmem.0, index }, by, &page);
        }
    }

    /// Drops page `index` of a file, which it holds.
    fn drop_page(&mut self, gmem: GmemId, index: u64, by: &'static str) {
        self.reclaim(gmem, index, index + 1);
        let page = self.gmems[gmem].pages.remove(index).expect("a page the file holds");
        self.history.record_drop(self.op_index, PageKey::Gmem { gmem: gmem.0, index }, by, &page);
    }

    pub(super) fn close_gmem(&mut self, gmem: GmemId) -> Outcome {
        if let Err(why) = self.file(gmem, true) {
            return Outcome::Skipped(why);
        }
        self.gmems[gmem].fd_open = false;
        self.release_if_unreferenced(gmem);
        Outcome::Ok
    }

    /// ftruncate(): the size of a guest_memfd is fixed when it is made. do_sys_ftruncate()
    /// and do_truncate() refuse a negative length with EINVAL, do_ftruncate() passes the
    /// file (a regular inode, `inode->i_mode |= S_IFREG` in __kvm_gmem_create(), opened
    /// O_RDWR), and notify_change() calls the inode's setattr, kvm_gmem_setattr() (6.12,
    /// 7.2): `return -EINVAL;`. Nothing changes.
    pub(super) fn truncate(&self, gmem: GmemId) -> Outcome {
        match self.file(gmem, true) {
            Err(why) => Outcome::Skipped(why),
            Ok(_) => Outcome::Err(Errno::EINVAL),
        }
    }

    /// madvise() on the file's mapping (mm/madvise.c, 7.2). The range, `len` page-aligned
    /// as check_input_range() aligns it, must lie inside the mapping (`mapped_range`), so no
    /// other memory is advised. Advices the kernel knows but the model has no rule for are
    /// not sent.
    pub(super) fn madvise(&mut self, gmem: GmemId, offset: u64, len: u64, advice: u32) -> Outcome {
        // check_input_range(): `len = PAGE_ALIGN(len_in)`, which wraps to 0 near the top.
        let aligned = crate::abi::page_align(len);
        let file = match self.mapped_range(gmem, offset, aligned) {
            Ok(f) => f,
            Err(why) => return Outcome::Skipped(why),
        };
        let modelled = MADVICE.iter().any(|&(_, v)| v == advice as u64);
        // madvise_behavior_valid(): every advice some configuration accepts; the rest
        // (5 to 7, 26 to 99, from 104) are EINVAL on every kernel.
        if !modelled && matches!(advice, 0..=4 | 8..=25 | 100..=103) {
            return Outcome::Skipped(SkipReason::Unmodeled);
        }
        // do_madvise(): `if (!madvise_behavior_valid(behavior)) return -EINVAL;`, then
        // check_input_range(): `if (!PAGE_ALIGNED(start)) return -EINVAL;` (the mapping is
        // page-aligned), `if (len_in && !len) return -EINVAL;`; `if (error || !len_in)
        // return error;`.
        let unbuilt = advice as i32 == libc::MADV_HWPOISON && self.profile.hwpoison_errno == Some(Errno::EINVAL);
        if !modelled || unbuilt || offset % PAGE_SIZE != 0 || (len != 0 && aligned == 0) {
            return Outcome::Err(Errno::EINVAL);
        }
        if len == 0 && advice as i32 == MADV_COLLAPSE {
            // madvise_behavior_valid() knows MADV_COLLAPSE only `#ifdef
            // CONFIG_TRANSPARENT_HUGEPAGE`: an empty range is 0 with THP and EINVAL without,
            // a configuration the profile does not record. Not sent.
            return Outcome::Skipped(SkipReason::Unmodeled);
        }
        if len == 0 {
            return Outcome::Ok;
        }
        let (first, end) = (offset / PAGE_SIZE, (offset + aligned) / PAGE_SIZE);
        let shared = file.flags & GUEST_MEMFD_FLAG_INIT_SHARED != 0;
        match advice as i32 {
            // madvise_remove(): the mapping is shared and writable (MAP_SHARED, PROT_WRITE,
            // an O_RDWR file), so vfs_fallocate(PUNCH_HOLE | KEEP_SIZE) on the range, through
            // the mapping's own reference to the file: kvm_gmem_punch_hole() as `punch`,
            // whether the fd is open or not.
            libc::MADV_REMOVE => {
                self.drop_pages(gmem, first, end, "madvise-remove");
                self.tell(Effect::Punched { gmem, first, end });
                Outcome::Ok
            }
            // madvise_populate(): faultin_page_range() faults each page in through
            // kvm_gmem_fault_user_mapping(): VM_FAULT_SIGBUS without INIT_SHARED (the first
            // page refuses, nothing is populated) is -EFAULT; otherwise each page is
            // allocated and cleared as a host access would.
            libc::MADV_POPULATE_READ | libc::MADV_POPULATE_WRITE if !shared => Outcome::Err(Errno::EFAULT),
            libc::MADV_POPULATE_READ | libc::MADV_POPULATE_WRITE if end - first > MAX_ALLOCATE_PAGES => {
                Outcome::Skipped(SkipReason::TooLarge)
            }
            libc::MADV_POPULATE_READ | libc::MADV_POPULATE_WRITE => {
                self.populate_range(gmem, first, end, advice as i32 == libc::MADV_POPULATE_WRITE)
            }
            // MADV_COLLAPSE, 7.2: without THP madvise_behavior_valid() refuses it (EINVAL);
            // with THP, madvise_collapse() (mm/khugepaged.c) asks collapse_possible() ->
            // __thp_vma_allowable_orders(TVA_FORCED_COLLAPSE) (mm/huge_memory.c), which for
            // this file VMA (not anonymous, DAX, special or shmem) ends in
            // vma_can_map_huge_file() -> file_thp_enabled(): false, since guest_memfd's
            // mapping has no PMD folio support (kvm_gmem's inode never sets large folios,
            // virt/kvm/guest_memfd.c), or earlier where no aligned 2 MiB fits the VMA
            // (thp_vma_suitable_order()): `return -EINVAL;`. Nothing changes.
            MADV_COLLAPSE => Outcome::Err(Errno::EINVAL),
            libc::MADV_HWPOISON => self.hwpoison(gmem, first, shared),
            // MADV_DONTNEED: zap_page_range_single() drops the host's page table entries
            // only; the pages stay in the file (mincore() still finds them, a host access
            // maps them again, KVM's shared-side mappings are zapped and fault back). It
            // zaps hwpoison entries too (`poison.rs`).
            _ => {
                if self.gmems[gmem].poison.any_pte_in(first, end) {
                    self.gmems[gmem].poison.zapped(first, end);
                }
                Outcome::Ok
            }
        }
    }

    /// madvise_populate(): faultin_page_range() faults each page in through
    /// kvm_gmem_fault_user_mapping(), allocated and cleared as a host access would, with
    /// `FOLL_TOUCH | FOLL_HWPOISON` (| FOLL_WRITE for POPULATE_WRITE, which marks the folio
    /// dirty). A page the poison refuses (`Poison::refuses_host`) stops it after the pages
    /// before it: `case -EHWPOISON: return -EHWPOISON;`.
    fn populate_range(&mut self, gmem: GmemId, first: u64, end: u64, write: bool) -> Outcome {
        let refused = (first..end).find(|&i| self.gmems[gmem].poison.refuses_host(i));
        for index in first..refused.unwrap_or(end) {
            self.ensure_page(gmem, index, "madvise-populate", true);
            if write {
                self.gmems[gmem].poison.written(index, true);
            }
        }
        self.tell(Effect::Allocated { gmem, first, end: refused.unwrap_or(end) });
        match refused {
            Some(_) => Outcome::Err(Errno::EHWPOISON),
            None => Outcome::Ok,
        }
    }

    /// MADV_HWPOISON (mm/madvise.c madvise_inject_error(), 7.2 and 7.3), on a range the
    /// checks above passed, `first` its first page. `if (!capable(CAP_SYS_ADMIN)) return
    /// -EPERM;`, then page by page get_user_pages_fast(start, 1, 0, &page) and
    /// memory_failure(pfn, MF_ACTION_REQUIRED | MF_COUNT_INCREASED | MF_SW_SIMULATED); the
    /// first error ends the loop, and every page of a guest_memfd ends it, so only `first`
    /// matters:
    /// - The GUP faults through kvm_gmem_fault_user_mapping(): VM_FAULT_SIGBUS without
    ///   INIT_SHARED, and VM_FAULT_HWPOISON on a poisoned page (`Poison::refuses_host`), are
    ///   both -EFAULT without FOLL_HWPOISON (vm_fault_to_errno()).
    /// - Otherwise the page is allocated and cleared as a host read would, and
    ///   memory_failure() poisons it (`poison.rs`): me_pagecache_clean() ->
    ///   truncate_error_folio() gets MF_DELAYED from kvm_gmem_error_folio(), which it takes
    ///   for a failure (`if (err != 0) pr_info("%#lx: Failed to punch page: %d\n", ...)`,
    ///   MF_FAILED; has_extra_refcount() fails it too, the page cache still holding it), so
    ///   action_result() returns -EBUSY: EBUSY. Before that, hwpoison_user_mappings() sends
    ///   the caller SIGBUS (kill_procs() -> kill_proc(): `force_sig_mceerr(BUS_MCEERR_AR,
    ///   ...)`) only `forcekill = folio_test_dirty(folio) || ...`: a dirty folio gives
    ///   SIGBUS (the harness reports that over the errno), a clean one EBUSY alone, one only
    ///   the guest wrote either (`Poison::dirty`).
    fn hwpoison(&mut self, gmem: GmemId, first: u64, shared: bool) -> Outcome {
        if let Some(errno) = self.profile.hwpoison_errno {
            return Outcome::Err(errno);
        }
        if !shared || self.gmems[gmem].poison.refuses_host(first) {
            return Outcome::Err(Errno::EFAULT);
        }
        self.ensure_page(gmem, first, "hwpoison fault", true);
        let dirty = self.gmems[gmem].poison.dirty(first);
        self.gmems[gmem].poison.poison(first);
        match dirty {
            Some(true) => Outcome::Sigbus,
            Some(false) => Outcome::Unknown,
            None => Outcome::Err(Errno::EBUSY),
        }
    }

    pub(super) fn unmap(&mut self, gmem: GmemId) -> Outcome {
        match self.file(gmem, false) {
            Err(why) => return Outcome::Skipped(why),
            Ok(f) if !f.mapped => return Outcome::Skipped(SkipReason::NotMapped),
            Ok(_) => {}
        }
        self.gmems[gmem].mapped = false;
        self.gmems[gmem].map_policy = Default::default();
        // munmap() zaps the hwpoison entries with the rest (`poison.rs`).
        self.gmems[gmem].poison.zapped(0, u64::MAX);
        self.tell(Effect::MappingGone { gmem });
        self.release_if_unreferenced(gmem);
        Outcome::Ok
    }

    /// The fd and the mapping are the file's only references: kvm_gmem_bind() drops its
    /// `fget()` reference on success ("The file pins KVM, not the other way 'round"). With
    /// both gone, kvm_gmem_release() clears `slot->gmem.file` of every binding and zaps
    /// them, and the inode (with its pages) is freed.
    fn release_if_unreferenced(&mut self, gmem: GmemId) {
        let file = &self.gmems[gmem];
        if file.fd_open || file.mapped || file.released {
            return;
        }
        self.gmems[gmem].released = true;
        self.tell(Effect::FileReleased { gmem });
        for slot in self.slots_mut().values_mut() {
            if let Some(binding) = slot.binding.as_mut().filter(|b| b.gmem == gmem) {
                binding.file_gone = true;
            }
        }
        self.drop_pages(gmem, 0, u64::MAX, "release");
    }

    pub(super) fn destroy_vm(&mut self) -> Outcome {
        if !self.vm_alive {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        // Closing the VM fd only drops a reference: every guest_memfd holds one
        // (__kvm_gmem_create: kvm_get_kvm), so files, their pages and mappings live on.
        // The slots live on inside that VM too, but nothing can reach them any more and the
        // harness frees their anonymous memory: the model forgets them.
        self.vm_alive = false;
        self.slots_mut().clear();
        self.tell(Effect::VmDestroyed);
        Outcome::Ok
    }

    /// The file `gmem` if an op on its mapping reaches the kernel at `offset..offset+len`:
    /// the range must lie inside the mapping, or the access would reach whatever the host
    /// placed next to it (the KVM backend's `mapped_range` decides alike).
    pub(super) fn mapped_range(&self, gmem: GmemId, offset: u64, len: u64) -> Result<&GmemFile, SkipReason> {
        let file = self.file(gmem, false)?;
        if !file.mapped {
            return Err(SkipReason::NotMapped);
        }
        if offset.checked_add(len).is_none_or(|end| end > file.size) {
            return Err(SkipReason::OutOfRange);
        }
        Ok(file)
    }

    pub(super) fn host_access(&mut self, gmem: GmemId, offset: u64, width: Width, store: Option<u64>) -> Outcome {
        let w = width.bytes();
        let file = match self.mapped_range(gmem, offset, w) {
            Ok(f) => f,
            Err(why) => return Outcome::Skipped(why),
        };
        // kvm_gmem_fault_user_mapping() (6.18): `if (!(GMEM_I(inode)->flags &
        // GUEST_MEMFD_FLAG_INIT_SHARED)) return VM_FAULT_SIGBUS;` — the check comes before
        // the folio lookup, so even a page the guest populated is refused.
        if file.flags & GUEST_MEMFD_FLAG_INIT_SHARED == 0 {
            return Outcome::Sigbus;
        }
        // Otherwise kvm_gmem_get_folio() allocates a missing page and clears it. An access
        // across a page boundary is one instruction over two pages: the CPU faults each in;
        // both pages answer alike (the check above is per file, and the range is inside the
        // file), so it completes on both, split little-endian at the boundary. (Probe, where
        // the second page refuses: the first is faulted in and nothing is written; see
        // kvm::hostmem's cross-page test. No guest_memfd page refuses alone.)
        // A page the poison refuses (`Poison::refuses_host`) raises SIGBUS
        // (VM_FAULT_HWPOISON), after the CPU faulted in the pages before it; nothing is
        // stored, as where a page refuses for INIT_SHARED's sake.
        let pages = offset / PAGE_SIZE..=(offset + w - 1) / PAGE_SIZE;
        if let Some(refused) = pages.clone().find(|&i| file.poison.refuses_host(i)) {
            for index in *pages.start()..refused {
                self.ensure_page(gmem, index, "host fault", true);
            }
            return Outcome::Sigbus;
        }
        let op_index = self.op_index;
        let store = store.map(|v| width.truncate(v));
        let (mut value, mut done) = (0u64, 0u64);
        while done < w {
            let at = offset + done;
            let (index, in_page) = (at / PAGE_SIZE, at % PAGE_SIZE);
            let len = (PAGE_SIZE - in_page).min(w - done);
            self.ensure_page(gmem, index, "host fault", true);
            match store {
                None => value |= self.gmems[gmem].pages.get(index).expect("made above").load(in_page, len) << (8 * done),
                Some(v) => {
                    let piece = (v >> (8 * done)) & (u64::MAX >> (64 - 8 * len));
                    let old = self.gmems[gmem].pages.get(index).expect("made above").load(in_page, len);
                    // As a guest store of what the page holds (`Model::access`): no change.
                    if old != piece {
                        self.gmems[gmem].pages.get_mut(index).expect("made above").store(in_page, len, piece);
                    }
                    if self.gmems[gmem].poison.dirty(index) != Some(true) {
                        self.gmems[gmem].poison.written(index, true);
                    }
                    let key = PageKey::Gmem { gmem: gmem.0, index };
                    let event = PageEvent::Written { by: "host", offset: in_page as u16, width: len as u8, old, new: piece };
                    self.history.record(op_index, key, event);
                }
            }
            done += len;
        }
        match store {
            None => Outcome::Value(value),
            Some(_) => Outcome::Ok,
        }
    }
}
