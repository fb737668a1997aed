//! Real KVM on /dev/kvm: one VM and one vCPU per backend, reused across programs.

pub mod guest;
pub mod host;
pub mod hostmem;
mod profile;
mod race;
mod stats;
mod vcpu;

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use kvm_bindings::{kvm_create_guest_memfd, kvm_memory_attributes, kvm_userspace_memory_region2};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use crate::abi::{self, command, mailbox, mempolicy};
use crate::backend::{Backend, HarnessError, MmuPages};
use crate::model::MAX_RESIDENCY_PAGES;
use crate::op::{layout, Access, AccessKind, FdArg, GmemId, Op, OpKind, Width, KVM_MEM_GUEST_MEMFD, PAGE_SIZE};
use crate::outcome::{AccessResult, Errno, Observation, Outcome, PageContent, Probe, SkipReason};
use crate::profile::{Numa, Profile};
use hostmem::{HostAccess, Mapping};
use vcpu::MailboxView;

pub use host::HostKvm;
pub use profile::{probe_max_gfn, probe_profile};

/// How to open the KVM backend (`KvmBackend::with_options`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvmOptions {
    /// KVM_CREATE_VM's type: 0 by default, 1 = KVM_X86_SW_PROTECTED_VM.
    pub vm_type: u64,
    /// Fault injection: ops of this kind are not performed but reported as successful, a
    /// stand-in for a kernel that silently skips them (see `KvmBackend::skip_silently`).
    pub skip_op: Option<OpKind>,
}

/// The VM, its vCPU 0, and the extra vCPUs concurrent groups asked for (made on demand,
/// `vcpu::MAX_VCPUS` at most).
struct Vm {
    // Field order is drop order: the vCPU fds go before the VM fd.
    vcpu: VcpuFd,
    extra: Vec<VcpuFd>,
    /// Its statistics, where the kernel has them; `serial` tells this VM from earlier ones.
    stats: Option<stats::VmStats>,
    serial: u64,
    /// The VM's part of the software platform's reverse map, where the kernel has one
    /// (`Profile::platform_map`).
    platform_map: Option<std::path::PathBuf>,
    fd: VmFd,
}

/// A guest_memfd as the backend holds it.
struct GmemHandle {
    fd: Option<OwnedFd>,
    map: Option<Mapping>,
    size: u64,
}

/// A program memslot as the backend made it.
struct SlotHandle {
    userspace_addr: u64,
    size: u64,
    /// The anonymous memory behind userspace_addr, when it is not the file's mapping.
    anon: Option<Mapping>,
    guest_memfd: u32,
}

pub struct KvmBackend {
    kvm: Kvm,
    profile: Profile,
    vm: Option<Vm>,
    code: Mapping,
    mailbox: Mapping,
    /// Indexed by `GmemId`: one entry per `CreateGmem` sent, `None` where it failed.
    gmems: Vec<Option<GmemHandle>>,
    slots: BTreeMap<u32, SlotHandle>,
    /// Address ranges of unmapped guest_memfd mappings, reserved until reset.
    retired: Vec<Mapping>,
    /// GPA ranges a program made non-shared; reset returns exactly these to shared (one
    /// call over all of guest memory would make KVM reserve an entry per GFN).
    attributed: Vec<(u64, u64)>,
    /// Ops of this kind are not performed but reported as successful: a stand-in for a
    /// kernel that silently skips an operation, to show the harness catches one.
    skipped: Option<OpKind>,
    /// GFNs whose guest access exited as MMIO since the VM was made or scrubbed: KVM may
    /// hold an MMIO SPTE for each, per-VM state that outlives the program (`reset_state`).
    mmio_gfns: BTreeSet<u64>,
    /// Seconds reset spent per part, over the backend's life (`Backend::reset_phases`).
    reset_time: ResetTime,
}

/// Most GFNs whose attributes reset returns to shared; past this it makes a new VM instead.
/// In the lane (TCG) a GFN costs some 7 µs (a 2^22-GFN range took 30 s) and a new VM some
/// 100 ms, so beyond 2^14 GFNs a new VM is cheaper.
const UNDO_ATTRIBUTES_MAX_GFNS: u64 = 1 << 14;

/// Where reset's time goes: deleting the program's slots, returning attributes to shared,
/// closing files and mappings, scrubbing MMIO SPTEs, making a new VM.
#[derive(Default, Clone, Copy, Debug)]
struct ResetTime {
    slots: f64,
    attributes: f64,
    files: f64,
    scrub: f64,
    new_vm: f64,
    /// How often the costly parts ran: scrubs (and the GFNs they read), new VMs.
    scrubs: u64,
    scrubbed_gfns: u64,
    new_vms: u64,
}

/// The most pages one scrub slot spans: its scratch memory is address space only
/// (MAP_NORESERVE) beyond the GFNs faulted, and a memslot change is what a scrub costs, so a
/// slot spans all the GFNs of a program where it can.
const SCRUB_SPAN: u64 = 1 << 18;

/// The runs of `gfns` (ascending) that one scrub slot each covers: GFNs less than
/// [`SCRUB_SPAN`] pages apart, never across the harness's own slots, as `(first, last)`.
fn scrub_runs(gfns: &[u64]) -> Vec<(u64, u64)> {
    let harness_end = (layout::MAILBOX_GPA + layout::MAILBOX_SIZE) / PAGE_SIZE;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &gfn in gfns {
        match runs.last_mut() {
            Some((first, last)) if gfn - *first < SCRUB_SPAN && (*first >= harness_end) == (gfn >= harness_end) => *last = gfn,
            _ => runs.push((gfn, gfn)),
        }
    }
    runs
}

fn errno(e: kvm_ioctls::Error) -> Outcome {
    Outcome::Err(Errno(e.errno()))
}

fn io_errno(e: std::io::Error) -> Outcome {
    Outcome::Err(Errno(e.raw_os_error().unwrap_or(0)))
}

fn resource(what: &str, e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Resource(format!("{what}: {e}"))
}

impl KvmBackend {
    /// Opens /dev/kvm and makes a VM of `vm_type`. A missing /dev/kvm or a kernel without
    /// guest_memfd is `HarnessError::Unavailable`: callers skip, they do not fail.
    pub fn new(vm_type: u64) -> Result<KvmBackend, HarnessError> {
        let kvm = Kvm::new().map_err(|e| HarnessError::Unavailable(host::no_kvm(&format!("/dev/kvm: {e}"))))?;
        let code = Mapping::anonymous(layout::CODE_SIZE as usize).map_err(|e| resource("code memory", e))?;
        let mailbox = Mapping::anonymous(layout::MAILBOX_SIZE as usize).map_err(|e| resource("mailbox memory", e))?;
        let program = guest::assemble().map_err(|e| HarnessError::Bug(format!("assembling guest code: {e}")))?;
        assert!(program.len() <= code.len());
        // SAFETY: `code` is a fresh private mapping of CODE_SIZE bytes; the program fits
        // (checked by the guest module's test and just above).
        unsafe { std::ptr::copy_nonoverlapping(program.as_ptr(), code.addr(), program.len()) };
        let vm = Self::create_vm(&kvm, vm_type, &code, &mailbox)?;
        let profile = Profile { platform_map: vm.platform_map.is_some(), ..probe_profile(&vm.fd, vm_type)? };
        let mut backend = KvmBackend {
            kvm,
            profile,
            vm: Some(vm),
            code,
            mailbox,
            gmems: Vec::new(),
            slots: BTreeMap::new(),
            retired: Vec::new(),
            attributed: Vec::new(),
            skipped: None,
            mmio_gfns: BTreeSet::new(),
            reset_time: ResetTime::default(),
        };
        backend.profile.gmem_only_slots = backend.probe_gmem_only()?;
        backend.reset_state()?;
        backend.profile.bound_range_errno = backend.probe_bound_range_errno()?;
        backend.reset_state()?;
        let page = Mapping::anonymous(PAGE_SIZE as usize).map_err(|e| resource("max-gfn probe memory", e))?;
        let vm = &backend.vm.as_ref().expect("made above").fd;
        backend.profile.max_gfn = profile::probe_max_gfn(vm, layout::FIRST_PROGRAM_SLOT + 1, page.addr() as u64)?;
        backend.reset_state()?;
        backend.profile.bound_range_late = backend.probe_bound_range_late()?;
        backend.reset_state()?;
        backend.profile.numa = backend.probe_numa()?;
        backend.reset_state()?;
        backend.profile.pre_fault_errno = backend.probe_pre_fault()?;
        Ok(backend)
    }

    /// Applies `ops` in order; each must succeed (a probe's setup).
    fn probe_setup(&mut self, what: &str, ops: &[Op]) -> Result<(), HarnessError> {
        for op in ops {
            let outcome = self.apply(op)?;
            if outcome != Outcome::Ok {
                return Err(HarnessError::Bug(format!("{what} probe: {op:?} gave {outcome}")));
            }
        }
        Ok(())
    }

    /// A one-page guest_memfd binding of `gmem` at `gpa`, file page `pgoff`.
    fn probe_bind(slot: u32, gmem: GmemId, gpa: u64, pgoff: u64) -> Op {
        Op::Bind { slot, flags: KVM_MEM_GUEST_MEMFD, fd: FdArg::Gmem(gmem), gpa, size: PAGE_SIZE, offset: pgoff * PAGE_SIZE }
    }

    /// Whether a slot bound to a file made with GUEST_MEMFD_FLAG_MMAP is "guest_memfd
    /// only" (KVM_MEMSLOT_GMEM_ONLY: 7.2 kvm_gmem_bind(), `if (kvm_gmem_supports_mmap(inode))
    /// slot->flags |= KVM_MEMSLOT_GMEM_ONLY;`, and the MMU's `if (fault->is_private ||
    /// kvm_memslot_is_gmem_only(fault->slot)) return kvm_mmu_faultin_pfn_gmem(vcpu, fault);`).
    /// Probed, not inferred from the flag: this project's 6.18 host has the flag but faults
    /// through userspace_addr. The file is never mapped, so the probe needs neither
    /// INIT_SHARED (which 7.2 refuses on VMs with private memory) nor a host fault: the
    /// guest writes a shared GFN of the slot and the slot's anonymous memory either holds
    /// the write (faults go through userspace_addr) or not (they go to the file).
    fn probe_gmem_only(&mut self) -> Result<bool, HarnessError> {
        if self.profile.gmem_flags & crate::op::GUEST_MEMFD_FLAG_MMAP == 0 {
            return Ok(false);
        }
        let (slot, gpa, marker) = (layout::FIRST_PROGRAM_SLOT, layout::WINDOW_GPA, 0x6d65_6d66_7a7a_7566u64);
        let ops = [Op::CreateGmem { size: PAGE_SIZE, flags: crate::op::GUEST_MEMFD_FLAG_MMAP }, Self::probe_bind(slot, GmemId(0), gpa, 0)];
        self.probe_setup("gmem-only", &ops)?;
        let write = Op::Guest { accesses: vec![Access { gpa, width: Width::W8, kind: AccessKind::Write(marker) }] };
        let outcome = self.apply(&write)?;
        if outcome != Outcome::Guest(vec![AccessResult::Wrote]) {
            return Err(HarnessError::Bug(format!("gmem-only probe: the guest's write gave {outcome}")));
        }
        match self.observe_host(&Probe::AnonPage { slot, page: 0 }) {
            Observation::Content(PageContent::Bytes(page)) => match u64::from_le_bytes(page[..8].try_into().expect("8 bytes")) {
                m if m == marker => Ok(false),
                0 => Ok(true),
                other => Err(HarnessError::Bug(format!("gmem-only probe: the slot's memory holds {other:#x}"))),
            },
            other => Err(HarnessError::Bug(format!("gmem-only probe: the slot's memory reads {other:?}"))),
        }
    }

    /// The NUMA side (`Numa`): to the task's side, which `probe_profile` asked
    /// (`profile::probe_numa_task`), whether the file keeps a policy set through a mapping:
    /// a one-page file mapped, bound to the first allowed node, unmapped and mapped again
    /// shows MPOL_BIND at the new mapping (7.2's kvm_gmem_get_policy()) or none (6.18: the
    /// policy went with the VMA).
    fn probe_numa(&mut self) -> Result<Numa, HarnessError> {
        let mut numa = self.profile.numa;
        if numa.nodes == 0 || self.profile.gmem_flags & crate::op::GUEST_MEMFD_FLAG_MMAP == 0 {
            return Ok(numa);
        }
        let (g, node) = (GmemId(0), numa.nodes & numa.nodes.wrapping_neg());
        let bind = Op::Mbind { gmem: g, offset: 0, len: PAGE_SIZE, mode: mempolicy::BIND, nodes: node, flags: 0 };
        let ops = [
            Op::CreateGmem { size: PAGE_SIZE, flags: crate::op::GUEST_MEMFD_FLAG_MMAP },
            Op::Map { gmem: g },
            bind,
            Op::Unmap { gmem: g },
            Op::Map { gmem: g },
        ];
        self.probe_setup("numa", &ops)?;
        numa.file_policy = match self.apply(&Op::GetMempolicy { gmem: g, offset: 0 })? {
            Outcome::Value(v) if v == mempolicy::policy_value(mempolicy::BIND, node) => true,
            Outcome::Value(v) if v == mempolicy::policy_value(mempolicy::DEFAULT, 0) => false,
            other => return Err(HarnessError::Bug(format!("numa probe: the new mapping's policy is {other}"))),
        };
        Ok(numa)
    }

    /// kvm_gmem_bind()'s errno for a file range that another slot binds already: EINVAL
    /// on 6.12 (`int r = -EINVAL;` and `goto err`), EEXIST on 7.2 (`r = -EEXIST;`).
    fn probe_bound_range_errno(&mut self) -> Result<Errno, HarnessError> {
        let (slot, gpa) = (layout::FIRST_PROGRAM_SLOT, layout::WINDOW_GPA);
        let ops = [Op::CreateGmem { size: 2 * PAGE_SIZE, flags: 0 }, Self::probe_bind(slot, GmemId(0), gpa, 0)];
        self.probe_setup("bound-range", &ops)?;
        // Page 0 again, elsewhere in guest memory, in another slot.
        match self.apply(&Self::probe_bind(slot + 1, GmemId(0), gpa + 16 * PAGE_SIZE, 0))? {
            Outcome::Err(errno) => Ok(errno),
            other => Err(HarnessError::Bug(format!("bound-range probe: a second binding of a bound page gave {other}"))),
        }
    }

    /// Whether the bound-range check comes after x86's memslot checks
    /// (`Profile::bound_range_late`): a second binding of a bound page, placed past
    /// `max_gfn`, fails with EINVAL (the address, checked first) or the bound-range errno.
    fn probe_bound_range_late(&mut self) -> Result<bool, HarnessError> {
        let (slot, gpa) = (layout::FIRST_PROGRAM_SLOT, layout::WINDOW_GPA);
        let ops = [Op::CreateGmem { size: PAGE_SIZE, flags: 0 }, Self::probe_bind(slot, GmemId(0), gpa, 0)];
        self.probe_setup("bound-range order", &ops)?;
        let past = (self.profile.max_gfn + 1) * PAGE_SIZE;
        match self.apply(&Self::probe_bind(slot + 1, GmemId(0), past, 0))? {
            Outcome::Err(Errno::EINVAL) => Ok(true),
            Outcome::Err(errno) if errno == self.profile.bound_range_errno => Ok(false),
            other => Err(HarnessError::Bug(format!("bound-range order probe: a bound page bound again past max_gfn gave {other}"))),
        }
    }

    fn create_vm(kvm: &Kvm, vm_type: u64, code: &Mapping, mailbox: &Mapping) -> Result<Vm, HarnessError> {
        let fd = kvm.create_vm_with_type(vm_type).map_err(|e| {
            // Name the capability the host lacks, where the probe finds one.
            HarnessError::Unavailable(HostKvm::probe().lacks(vm_type).unwrap_or_else(|| format!("KVM_CREATE_VM type {vm_type}: {e}")))
        })?;
        for (slot, gpa, mem) in [(layout::CODE_SLOT, layout::CODE_GPA, code), (layout::MAILBOX_SLOT, layout::MAILBOX_GPA, mailbox)] {
            let region = kvm_userspace_memory_region2 {
                slot,
                guest_phys_addr: gpa,
                memory_size: mem.len() as u64,
                userspace_addr: mem.addr() as u64,
                ..Default::default()
            };
            // SAFETY: the memory is owned by the backend and outlives every VM it makes.
            unsafe { fd.set_user_memory_region2(region) }.map_err(|e| resource("harness memslot", e))?;
        }
        let vcpu = vcpu::create(&fd, 0)?;
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let platform_map = Some(platform_map_path(&fd)).filter(|p| p.exists());
        Ok(Vm { vcpu, extra: Vec::new(), stats: stats::VmStats::open(&fd), serial, platform_map, fd })
    }

    /// `new`, then the options: what the harness's configuration (`gmemfuzz::config`,
    /// which reads GMEMFUZZ_SKIP_OP and the command line) asks of the backend. Every tool
    /// that opens KVM for fuzzing or replay goes through there, so a finding made with a
    /// fault injection replays with it.
    pub fn with_options(options: &KvmOptions) -> Result<KvmBackend, HarnessError> {
        let mut backend = KvmBackend::new(options.vm_type)?;
        if let Some(kind) = options.skip_op {
            backend.skip_silently(kind);
        }
        Ok(backend)
    }

    /// Makes this backend pretend to perform ops of `kind` (see `skipped`).
    pub fn skip_silently(&mut self, kind: OpKind) {
        self.skipped = Some(kind);
    }

    /// Posts commands to vCPU 0 and runs it until HLT (see `vcpu::run_commands`).
    fn run_commands(&mut self, commands: &[(u32, u64, u64)], stop_on_fault: bool) -> Result<Vec<Option<AccessResult>>, HarnessError> {
        let mb = self.mailbox_of(0);
        let Some(vm) = self.vm.as_mut() else {
            return Err(HarnessError::Bug("guest run without a VM".into()));
        };
        vcpu::run_commands(&mut vm.vcpu, mb, commands, stop_on_fault, &mut self.mmio_gfns)
    }

    /// vCPU `index`'s part of the mailbox memory.
    fn mailbox_of(&self, index: usize) -> MailboxView {
        MailboxView::of(&self.mailbox, index)
    }

    fn guest(&mut self, accesses: &[Access]) -> Result<Outcome, HarnessError> {
        if self.vm.is_none() {
            return Ok(Outcome::Skipped(SkipReason::NoVm));
        }
        let commands: Vec<_> = accesses
            .iter()
            .map(|a| match a.kind {
                AccessKind::Read => (guest::access_code(a.width, false), a.gpa, 0),
                AccessKind::Write(v) => (guest::access_code(a.width, true), a.gpa, v),
            })
            .collect();
        let exits = self.run_commands(&commands, true)?;
        let results = accesses
            .iter()
            .enumerate()
            .map(|(i, a)| match exits[i] {
                Some(exit) => exit,
                None => match a.kind {
                    AccessKind::Read => {
                        AccessResult::Read(a.width.truncate(self.mailbox_of(0).read(mailbox::command(i, mailbox::CMD_VALUE), 8)))
                    }
                    AccessKind::Write(_) => AccessResult::Wrote,
                },
            })
            .collect();
        Ok(Outcome::Guest(results))
    }

    fn gmem(&self, id: GmemId) -> Result<&GmemHandle, SkipReason> {
        self.gmems.get(id.0 as usize).and_then(Option::as_ref).ok_or(SkipReason::NoSuchGmem)
    }

    fn gmem_mut(&mut self, id: GmemId) -> Option<&mut GmemHandle> {
        self.gmems.get_mut(id.0 as usize).and_then(Option::as_mut)
    }

    fn gmem_fd(&self, id: GmemId) -> Result<libc::c_int, SkipReason> {
        self.gmem(id)?.fd.as_ref().map(|fd| fd.as_raw_fd()).ok_or(SkipReason::FdClosed)
    }

    /// KVM_SET_USER_MEMORY_REGION2 with the fields given; the rest zero.
    fn set_region(&self, region: kvm_userspace_memory_region2) -> Result<(), kvm_ioctls::Error> {
        let vm = self.vm.as_ref().expect("callers check the VM");
        // SAFETY: userspace_addr is memory this backend owns for as long as the slot
        // exists (or a guest_memfd mapping, which KVM does not use for guest faults);
        // KVM validates everything else and the test is what it answers.
        unsafe { vm.fd.set_user_memory_region2(region) }
    }

    /// Deletes a memslot (memory_size 0).
    fn delete_region(&self, slot: u32) -> Result<(), kvm_ioctls::Error> {
        self.set_region(kvm_userspace_memory_region2 { slot, ..Default::default() })
    }

    fn bind(&mut self, slot: u32, flags: u32, fd: FdArg, gpa: u64, size: u64, offset: u64) -> Result<Outcome, HarnessError> {
        if self.vm.is_none() {
            return Ok(Outcome::Skipped(SkipReason::NoVm));
        }
        if slot < layout::HARNESS_SLOTS {
            return Ok(Outcome::Skipped(SkipReason::ReservedSlot));
        }
        let gmem_slot = flags & KVM_MEM_GUEST_MEMFD != 0;
        let raw_fd: u32 = match fd {
            FdArg::Invalid => u32::MAX,
            FdArg::NotGmem => self.vm.as_ref().expect("checked").fd.as_raw_fd() as u32,
            FdArg::Gmem(id) if gmem_slot => match self.gmem_fd(id) {
                Ok(fd) => fd as u32,
                Err(why) => return Ok(Outcome::Skipped(why)),
            },
            FdArg::Gmem(_) => u32::MAX,
        };
        // The shared side: the file's own mapping where the slot fits in it, else fresh
        // anonymous memory.
        let file_map = match fd {
            FdArg::Gmem(id) if gmem_slot => self.gmem(id).ok().and_then(|g| g.map.as_ref()),
            _ => None,
        };
        let (uaddr, anon) = match file_map {
            Some(m) if offset % PAGE_SIZE == 0 && offset.checked_add(size).is_some_and(|e| e <= m.len() as u64) => {
                (m.addr() as u64 + offset, None)
            }
            _ => {
                let anon = Mapping::anonymous_for_gpa(size.max(PAGE_SIZE) as usize, gpa).map_err(|e| resource("slot memory", e))?;
                (anon.addr() as u64, Some(anon))
            }
        };
        let region = kvm_userspace_memory_region2 {
            slot,
            flags,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: uaddr,
            guest_memfd_offset: offset,
            guest_memfd: raw_fd,
            ..Default::default()
        };
        match self.set_region(region) {
            Err(e) => Ok(errno(e)),
            Ok(()) if size == 0 => {
                self.slots.remove(&slot);
                Ok(Outcome::Ok)
            }
            Ok(()) => {
                self.slots.insert(slot, SlotHandle { userspace_addr: uaddr, size, anon, guest_memfd: raw_fd });
                Ok(Outcome::Ok)
            }
        }
    }

    fn unbind(&mut self, slot: u32) -> Outcome {
        if self.vm.is_none() {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        if slot < layout::HARNESS_SLOTS {
            return Outcome::Skipped(SkipReason::ReservedSlot);
        }
        match self.delete_region(slot) {
            Err(e) => errno(e),
            Ok(()) => {
                self.slots.remove(&slot);
                Outcome::Ok
            }
        }
    }

    fn modify_slot(&mut self, slot: u32, gpa: u64, flags: u32) -> Outcome {
        if self.vm.is_none() {
            return Outcome::Skipped(SkipReason::NoVm);
        }
        let Some(s) = self.slots.get(&slot) else {
            return Outcome::Skipped(SkipReason::NoSuchSlot);
        };
        let region = kvm_userspace_memory_region2 {
            slot,
            flags,
            guest_phys_addr: gpa,
            memory_size: s.size,
            userspace_addr: s.userspace_addr,
            guest_memfd: s.guest_memfd,
            ..Default::default()
        };
        match self.set_region(region) {
            Err(e) => errno(e),
            Ok(()) => Outcome::Ok,
        }
    }

    fn fallocate(&mut self, gmem: GmemId, mode: i32, offset: u64, len: u64) -> Outcome {
        let fd = match self.gmem_fd(gmem) {
            Ok(fd) => fd,
            Err(why) => return Outcome::Skipped(why),
        };
        // SAFETY: fd is a guest_memfd this backend owns; fallocate takes no pointers.
        let rc = unsafe { libc::fallocate(fd, mode, offset as i64, len as i64) };
        if rc == 0 {
            Outcome::Ok
        } else {
            io_errno(std::io::Error::last_os_error())
        }
    }

    /// Where a host access of `width` bytes at `offset` of `gmem`'s mapping lands, or why it
    /// is not made (no such file, not mapped, past the mapping).
    fn host_addr(&self, gmem: GmemId, offset: u64, width: Width) -> Result<*mut u8, SkipReason> {
        self.mapped_range(gmem, offset, width.bytes())
    }

    /// Where `offset..offset+len` of `gmem`'s mapping starts, or why an op on that range is
    /// not made (no such file, not mapped, past the mapping: `Model::mapped_range`).
    fn mapped_range(&self, gmem: GmemId, offset: u64, len: u64) -> Result<*mut u8, SkipReason> {
        let map = self.gmem(gmem)?.map.as_ref().ok_or(SkipReason::NotMapped)?;
        if offset.checked_add(len).is_none_or(|end| end > map.len() as u64) {
            return Err(SkipReason::OutOfRange);
        }
        // SAFETY: offset..offset+len is inside the live mapping (checked above).
        Ok(unsafe { map.addr().add(offset as usize) })
    }

    /// mbind() on `gmem`'s mapping; the range (`len` page-aligned as the kernel aligns it)
    /// must lie inside the mapping, so no other memory's policy changes.
    fn mbind(&self, gmem: GmemId, offset: u64, len: u64, mode: u32, nodes: u64, flags: u32) -> Outcome {
        let addr = match self.mapped_range(gmem, offset, mempolicy::aligned_len(len)) {
            Ok(a) => a,
            Err(why) => return Outcome::Skipped(why),
        };
        let mask = nodes;
        // SAFETY: the range mbind() works on lies inside this backend's mapping of the file
        // (checked above); the kernel reads one u64 of node mask (MAXNODE) from `mask`.
        let rc = unsafe {
            libc::syscall(libc::SYS_mbind, addr, len, mode as libc::c_ulong, &mask as *const u64, mempolicy::MAXNODE, flags as libc::c_uint)
        };
        if rc == 0 {
            Outcome::Ok
        } else {
            io_errno(std::io::Error::last_os_error())
        }
    }

    /// get_mempolicy(MPOL_F_ADDR) at `offset` of `gmem`'s mapping.
    fn get_mempolicy(&self, gmem: GmemId, offset: u64) -> Outcome {
        let addr = match self.mapped_range(gmem, offset, 1) {
            Ok(a) => a,
            Err(why) => return Outcome::Skipped(why),
        };
        let (mut mode, mut nodes): (libc::c_int, u64) = (0, 0);
        // SAFETY: the kernel writes one int to `mode` and one u64 of node mask (MAXNODE) to
        // `nodes`, both live across the call; `addr` is only looked up.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_get_mempolicy,
                &mut mode as *mut libc::c_int,
                &mut nodes as *mut u64,
                mempolicy::MAXNODE,
                addr,
                mempolicy::F_ADDR,
            )
        };
        if rc == 0 {
            Outcome::Value(mempolicy::policy_value(mode as u32, nodes))
        } else {
            io_errno(std::io::Error::last_os_error())
        }
    }

    /// KVM_PRE_FAULT_MEMORY on vCPU 0: the size left unmapped (the range comes back), or
    /// the errno where no page was mapped. The page it stopped at may now hold an MMIO SPTE
    /// (no memslot there: -ENOENT), which `scrub_mmio_sptes` clears before the next program.
    fn pre_fault(&mut self, gpa: u64, size: u64) -> Outcome {
        let Some(vm) = self.vm.as_ref() else {
            return Outcome::Skipped(SkipReason::NoVm);
        };
        match vcpu::pre_fault(&vm.vcpu, gpa, size) {
            Ok(0) => Outcome::Value(0),
            Ok(left) => {
                // It stopped at a page it could not map: one without a memslot.
                self.mmio_gfns.insert((gpa + size - left) / PAGE_SIZE);
                Outcome::Value(left)
            }
            Err(error) => {
                if error.raw_os_error() == Some(libc::ENOENT) {
                    self.mmio_gfns.insert(gpa / PAGE_SIZE);
                }
                io_errno(error)
            }
        }
    }

    /// KVM_PRE_FAULT_MEMORY's answer on this kernel (`Profile::pre_fault_errno`): `None`
    /// where a pre-fault of the harness's own mailbox page (mapped, nothing to change)
    /// succeeds, else its errno.
    fn probe_pre_fault(&mut self) -> Result<Option<Errno>, HarnessError> {
        match self.pre_fault(layout::MAILBOX_GPA, PAGE_SIZE) {
            Outcome::Value(0) => Ok(None),
            Outcome::Err(errno) => Ok(Some(errno)),
            other => Err(HarnessError::Bug(format!("pre-fault probe: the mailbox page gave {other}"))),
        }
    }

    /// madvise() on `gmem`'s mapping; the range (`len` page-aligned as the kernel aligns
    /// it) must lie inside the mapping, so no other memory is advised.
    fn madvise(&self, gmem: GmemId, offset: u64, len: u64, advice: u32) -> Outcome {
        let aligned = crate::abi::page_align(len);
        let addr = match self.mapped_range(gmem, offset, aligned) {
            Ok(a) => a,
            Err(why) => return Outcome::Skipped(why),
        };
        // MADV_HWPOISON may end in SIGBUS to this thread (model::poison): that is the
        // outcome, whatever the call returned after it. The errno is read inside, before
        // anything else can change it.
        let (result, signals) = hostmem::catching_memory_failure(|| {
            // SAFETY: the range madvise() works on lies inside this backend's mapping of the
            // file (checked above), which nothing of Rust's borrows.
            match unsafe { libc::madvise(addr.cast(), len as usize, advice as libc::c_int) } {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
        match (signals, result) {
            (1.., _) => Outcome::Sigbus,
            (0, Ok(())) => Outcome::Ok,
            (0, Err(e)) => io_errno(e),
        }
    }

    fn host_access(&mut self, gmem: GmemId, offset: u64, width: Width, store: Option<u64>) -> Outcome {
        let addr = match self.host_addr(gmem, offset, width) {
            Ok(a) => a,
            Err(why) => return Outcome::Skipped(why),
        };
        // SAFETY: as above.
        let result = unsafe {
            match store {
                None => hostmem::load(addr, width),
                Some(v) => hostmem::store(addr, width, v),
            }
        };
        match (result, store) {
            (HostAccess::Sigbus, _) => Outcome::Sigbus,
            (HostAccess::Done(v), None) => Outcome::Value(v),
            (HostAccess::Done(_), Some(_)) => Outcome::Ok,
        }
    }

    fn observe_host(&self, probe: &Probe) -> Observation {
        match *probe {
            Probe::Residency { gmem } => {
                let Ok(g) = self.gmem(gmem) else { return Observation::Absent };
                // Unmapped with its fd open: a mapping for the probe alone (mmap() faults
                // nothing in; refused without GUEST_MEMFD_FLAG_MMAP, as the model says).
                let for_probe: Mapping;
                let map = match (&g.map, &g.fd) {
                    (Some(m), _) => m,
                    (None, Some(fd)) if g.size <= layout::MAX_MAPPED_BYTES => match Mapping::shared(fd.as_raw_fd(), g.size as usize) {
                        Ok(m) => {
                            for_probe = m;
                            &for_probe
                        }
                        Err(_) => return Observation::Absent,
                    },
                    (None, _) => return Observation::Absent,
                };
                let pages = (g.size / PAGE_SIZE).min(MAX_RESIDENCY_PAGES) as usize;
                map.residency(pages).map_or(Observation::Absent, Observation::Residency)
            }
            Probe::HostPage { gmem, page } => match self.gmem(gmem).ok().and_then(|g| g.map.as_ref()) {
                Some(m) if (page + 1) * PAGE_SIZE <= m.len() as u64 => {
                    m.read_page(page as usize).map_or(Observation::Sigbus, |b| Observation::Content(PageContent::Bytes(b.into())))
                }
                _ => Observation::Absent,
            },
            Probe::AnonPage { slot, page } => match self.slots.get(&slot).and_then(|s| s.anon.as_ref()) {
                Some(m) if (page + 1) * PAGE_SIZE <= m.len() as u64 => {
                    // Anonymous memory never faults with SIGBUS.
                    m.read_page(page as usize).map_or(Observation::Sigbus, |b| Observation::Content(PageContent::Bytes(b.into())))
                }
                _ => Observation::Absent,
            },
            Probe::GuestPage { .. } => unreachable!("guest probes are batched"),
            Probe::PlatformMap => unreachable!("the platform is read by observe_platform"),
        }
    }

    /// Replaces the MMIO SPTE of every GFN in `mmio_gfns` with an ordinary one and zaps that:
    /// a scratch slot over each run of GFNs (all shared, no program slot left) makes the SPTEs
    /// stale, a fault on each GFN installs a real mapping over its MMIO SPTE, and deleting the
    /// slots zaps those mappings (kvm_arch_flush_shadow_memslot() zaps only the slot's range
    /// for a software-protected VM, and kvm_tdp_mmu_unmap_gfn_range() skips SPTEs that are not
    /// present, MMIO ones among them: hence the faults). False when it could not (too many
    /// GFNs, a slot refused, a fault that did not map): make a new VM.
    ///
    /// The fault is KVM_PRE_FAULT_MEMORY where the kernel has it: kvm_tdp_map_page() maps
    /// the GFN through the ordinary fault path without entering the guest, and
    /// tdp_mmu_map_handle_target_level() replaces whatever non-present SPTE is there. Else a
    /// guest read: handle_mmio_page_fault() returns RET_PF_INVALID for a stale MMIO SPTE and
    /// the fault goes on the same way.
    fn scrub_mmio_sptes(&mut self) -> Result<bool, HarnessError> {
        let gfns: Vec<u64> = self.mmio_gfns.iter().copied().collect();
        let runs = scrub_runs(&gfns);
        if gfns.len() > layout::SCRUB_MAX_GFNS || runs.len() > layout::SCRUB_MAX_GFNS {
            return Ok(false);
        }
        self.reset_time.scrubs += 1;
        self.reset_time.scrubbed_gfns += gfns.len() as u64;
        let mut scratch = Vec::with_capacity(runs.len());
        let mut made = 0;
        for (i, (first, last)) in runs.iter().enumerate() {
            let len = (last - first + 1) * PAGE_SIZE;
            let memory = Mapping::anonymous(len as usize).map_err(|e| HarnessError::Resource(format!("scrub memory: {e}")))?;
            let region = kvm_userspace_memory_region2 {
                slot: layout::SCRUB_FIRST_SLOT + i as u32,
                guest_phys_addr: first * PAGE_SIZE,
                memory_size: len,
                userspace_addr: memory.addr() as u64,
                ..Default::default()
            };
            scratch.push(memory);
            if self.set_region(region).is_err() {
                break;
            }
            made += 1;
        }
        let mut clean = made == runs.len();
        if clean {
            self.mmio_gfns.clear();
            clean = if self.profile.pre_fault_errno.is_none() {
                let vm = self.vm.as_ref().expect("callers check the VM");
                gfns.iter().all(|gfn| vcpu::pre_fault(&vm.vcpu, gfn * PAGE_SIZE, PAGE_SIZE).is_ok_and(|left| left == 0))
            } else {
                let reads: Vec<_> = gfns.iter().map(|gfn| (guest::access_code(Width::W1, false), gfn * PAGE_SIZE, 0)).collect();
                let exits = self.run_commands(&reads, false)?;
                exits.iter().all(Option::is_none) && self.mmio_gfns.is_empty()
            };
        }
        for i in 0..made {
            self.delete_region(layout::SCRUB_FIRST_SLOT + i as u32)
                .map_err(|e| HarnessError::Bug(format!("reset: deleting scrub slot {i}: {e}")))?;
        }
        Ok(clean)
    }

    /// Deletes program slots, closes files and mappings, and makes a new VM if the old one
    /// was destroyed. Attributes go back to shared where the kernel has them.
    fn reset_state(&mut self) -> Result<(), HarnessError> {
        let mut t = Instant::now();
        let mut lap = |part: &mut f64| {
            *part += t.elapsed().as_secs_f64();
            t = Instant::now();
        };
        // kvm_vm_set_mem_attributes() stores every GFN of a range (xa_store() and
        // cond_resched() each), so returning a large range to shared costs more than a new VM,
        // which frees the attribute xarray node by node.
        let attributed_gfns: u64 = self.attributed.iter().map(|(_, size)| size / PAGE_SIZE).sum();
        if attributed_gfns > UNDO_ATTRIBUTES_MAX_GFNS {
            self.vm = None;
            self.attributed.clear();
        }
        if self.vm.is_some() {
            let slots: Vec<u32> = self.slots.keys().copied().collect();
            for slot in slots {
                self.delete_region(slot).map_err(|e| HarnessError::Bug(format!("reset: deleting slot {slot}: {e}")))?;
            }
        }
        lap(&mut self.reset_time.slots);
        if let Some(vm) = self.vm.as_ref() {
            for (address, size) in self.attributed.drain(..) {
                let shared = kvm_memory_attributes { address, size, attributes: 0, flags: 0 };
                vm.fd
                    .set_memory_attributes(shared)
                    .map_err(|e| HarnessError::Bug(format!("reset: attributes of {address:#x}+{size:#x}: {e}")))?;
            }
        }
        self.attributed.clear();
        lap(&mut self.reset_time.attributes);
        self.slots.clear();
        self.gmems.clear();
        self.retired.clear();
        lap(&mut self.reset_time.files);
        // Software-protected VMs keep one piece of per-VM state the model cannot see and
        // that changes outcomes: the MMIO SPTE of a GFN that exited as MMIO outlives the
        // program, and once stale (any memslot change) it turns a later private fault on that
        // GFN into a shared one (harness::known). Scrub those SPTEs, or make a new VM, so that
        // what a program shows depends on the program alone. Measured in the lane, a new VM
        // cost 170 ms of a 220 ms program. GMEMFUZZ_VERIFY_RESET / `run --verify-reset` check it.
        if self.profile.vm_type != 0 && !self.mmio_gfns.is_empty() && self.vm.is_some() && !self.scrub_mmio_sptes()? {
            self.vm = None;
        }
        lap(&mut self.reset_time.scrub);
        if self.vm.is_none() {
            self.vm = Some(Self::create_vm(&self.kvm, self.profile.vm_type, &self.code, &self.mailbox)?);
            self.mmio_gfns.clear();
            self.reset_time.new_vms += 1;
        }
        lap(&mut self.reset_time.new_vm);
        Ok(())
    }
}

impl Backend for KvmBackend {
    fn name(&self) -> &str {
        "kvm"
    }

    fn profile(&self) -> &Profile {
        &self.profile
    }

    fn reset(&mut self) -> Result<(), HarnessError> {
        self.reset_state()
    }

    fn mmu_pages(&self) -> Option<MmuPages> {
        let vm = self.vm.as_ref()?;
        let pages = vm.stats.as_ref()?.pages().ok()?;
        Some(MmuPages { vm: vm.serial, pages })
    }

    fn reset_phases(&self) -> Vec<(&'static str, f64)> {
        let r = self.reset_time;
        vec![("slots", r.slots), ("attributes", r.attributes), ("files", r.files), ("scrub", r.scrub), ("new VM", r.new_vm)]
    }

    fn reset_counts(&self) -> Vec<(&'static str, u64)> {
        let r = self.reset_time;
        vec![("scrubs", r.scrubs), ("GFNs scrubbed", r.scrubbed_gfns), ("new VMs", r.new_vms)]
    }

    fn apply(&mut self, op: &Op) -> Result<Outcome, HarnessError> {
        // A group is not pretended as a whole: its members are (see `race`).
        if self.skipped == Some(op.kind()) && !matches!(op, Op::Group(_)) {
            return Ok(Outcome::Ok);
        }
        Ok(match op {
            Op::CreateGmem { size, flags } => {
                let Some(vm) = self.vm.as_ref() else {
                    return Ok(Outcome::Skipped(SkipReason::NoVm));
                };
                let args = kvm_create_guest_memfd { size: *size, flags: *flags, ..Default::default() };
                // Every create takes the next id, made or not (see `GmemId`).
                match vm.fd.create_guest_memfd(args) {
                    Err(e) => {
                        self.gmems.push(None);
                        errno(e)
                    }
                    Ok(raw) => {
                        // SAFETY: KVM_CREATE_GUEST_MEMFD returned a new fd that nothing else owns.
                        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                        self.gmems.push(Some(GmemHandle { fd: Some(fd), map: None, size: *size }));
                        Outcome::Ok
                    }
                }
            }
            Op::Map { gmem } => {
                let fd = match self.gmem_fd(*gmem) {
                    Ok(fd) => fd,
                    Err(why) => return Ok(Outcome::Skipped(why)),
                };
                let handle = self.gmem(*gmem).expect("its fd was found above");
                if handle.map.is_some() {
                    return Ok(Outcome::Skipped(SkipReason::AlreadyMapped));
                }
                if handle.size > layout::MAX_MAPPED_BYTES {
                    return Ok(Outcome::Skipped(SkipReason::TooLarge));
                }
                match Mapping::shared(fd, handle.size as usize) {
                    Err(e) => io_errno(e),
                    Ok(m) => {
                        self.gmem_mut(*gmem).expect("found above").map = Some(m);
                        Outcome::Ok
                    }
                }
            }
            Op::Bind { slot, flags, fd, gpa, size, offset } => return self.bind(*slot, *flags, *fd, *gpa, *size, *offset),
            Op::Unbind { slot } => self.unbind(*slot),
            Op::ModifySlot { slot, gpa, flags } => self.modify_slot(*slot, *gpa, *flags),
            Op::SetAttributes { gpa, size, attributes } => {
                let Some(vm) = self.vm.as_ref() else {
                    return Ok(Outcome::Skipped(SkipReason::NoVm));
                };
                let attrs = kvm_memory_attributes { address: *gpa, size: *size, attributes: *attributes, flags: 0 };
                match vm.fd.set_memory_attributes(attrs) {
                    Err(e) => errno(e),
                    Ok(()) => {
                        if *attributes != 0 {
                            self.attributed.push((*gpa, *size));
                        }
                        Outcome::Ok
                    }
                }
            }
            Op::Punch { gmem, offset, len } => self.fallocate(*gmem, abi::falloc::PUNCH, *offset, *len),
            Op::Allocate { gmem, mode, offset, len } => self.fallocate(*gmem, *mode, *offset, *len),
            Op::CloseGmem { gmem } => match self.gmem_mut(*gmem).map(|g| g.fd.take()) {
                None => Outcome::Skipped(SkipReason::NoSuchGmem),
                Some(None) => Outcome::Skipped(SkipReason::FdClosed),
                Some(Some(fd)) => {
                    drop(fd);
                    Outcome::Ok
                }
            },
            Op::Unmap { gmem } => match self.gmem_mut(*gmem).map(|g| g.map.take()) {
                None => Outcome::Skipped(SkipReason::NoSuchGmem),
                Some(None) => Outcome::Skipped(SkipReason::NotMapped),
                Some(Some(m)) => match m.retire() {
                    Ok(reserved) => {
                        self.retired.push(reserved);
                        Outcome::Ok
                    }
                    Err(e) => return Err(resource("munmap", e)),
                },
            },
            Op::Truncate { gmem, size } => match self.gmem_fd(*gmem) {
                Err(why) => Outcome::Skipped(why),
                // SAFETY: fd is a guest_memfd this backend owns; ftruncate takes no pointers.
                Ok(fd) => match unsafe { libc::ftruncate(fd, *size as i64) } {
                    0 => Outcome::Ok,
                    _ => io_errno(std::io::Error::last_os_error()),
                },
            },
            Op::Mbind { gmem, offset, len, mode, nodes, flags } => self.mbind(*gmem, *offset, *len, *mode, *nodes, *flags),
            Op::GetMempolicy { gmem, offset } => self.get_mempolicy(*gmem, *offset),
            Op::Madvise { gmem, offset, len, advice } => self.madvise(*gmem, *offset, *len, *advice),
            Op::PreFault { gpa, size } => self.pre_fault(*gpa, *size),
            Op::DestroyVm => match self.vm.take() {
                None => Outcome::Skipped(SkipReason::NoVm),
                Some(vm) => {
                    drop(vm);
                    // The slots live on inside the VM that the files keep alive; their
                    // anonymous memory may go (KVM holds no reference to it).
                    self.slots.clear();
                    Outcome::Ok
                }
            },
            Op::Guest { accesses } => return self.guest(accesses),
            Op::HostRead { gmem, offset, width } => self.host_access(*gmem, *offset, *width, None),
            Op::HostWrite { gmem, offset, width, value } => self.host_access(*gmem, *offset, *width, Some(*value)),
            Op::Check => Outcome::Ok,
            Op::Group(group) => return self.group(group),
        })
    }

    fn observe(&mut self, probes: &[Probe]) -> Result<Vec<Option<Observation>>, HarnessError> {
        let mut answers: Vec<Option<Observation>> = probes
            .iter()
            .map(|p| match p {
                Probe::GuestPage { .. } => Ok(None),
                // Before the guest's reads, which fault pages in (and so assign them): the
                // model asks it first.
                Probe::PlatformMap => self.observe_platform().map(Some),
                host => Ok(Some(self.observe_host(host))),
            })
            .collect::<Result<_, HarnessError>>()?;
        self.observe_guest(probes, &mut answers)?;
        Ok(answers)
    }
}

impl KvmBackend {
    /// The guest probes of `probes`, in one run of vCPU 0, into `answers`.
    fn observe_guest(&mut self, probes: &[Probe], answers: &mut [Option<Observation>]) -> Result<(), HarnessError> {
        let guest: Vec<(usize, u64, u64)> = probes
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Probe::GuestPage { gpa, sample } => Some((i, *gpa, abi::pack_sample(*sample))),
                _ => None,
            })
            .collect();
        if guest.is_empty() {
            return Ok(());
        }
        if self.vm.is_none() {
            for (i, _, _) in guest {
                answers[i] = Some(Observation::Absent);
            }
            return Ok(());
        }
        let commands: Vec<_> = guest.iter().map(|&(_, gpa, sample)| (command::DIGEST, gpa & !(PAGE_SIZE - 1), sample)).collect();
        let exits = self.run_commands(&commands, false)?;
        for (k, &(i, _, _)) in guest.iter().enumerate() {
            answers[i] = Some(match exits[k] {
                Some(exit) => Observation::GuestExit(exit),
                None => {
                    let digest = self.mailbox_of(0).read(mailbox::command(k, mailbox::CMD_VALUE), 4) as u32;
                    Observation::Content(PageContent::Digest(digest))
                }
            });
        }
        Ok(())
    }

    /// The VM's reverse map (`Probe::PlatformMap`): its debugfs file lists "pfn gfn mapped"
    /// in hex, one line per assigned PFN.
    fn observe_platform(&self) -> Result<Observation, HarnessError> {
        let Some(path) = self.vm.as_ref().and_then(|vm| vm.platform_map.as_ref()) else { return Ok(Observation::Absent) };
        let text = std::fs::read_to_string(path).map_err(|e| resource(&format!("reading {}", path.display()), e))?;
        parse_platform_map(&text)
            .map(Observation::PlatformMap)
            .map_err(|line| HarnessError::Bug(format!("{}: a line that is not \"pfn gfn mapped\" in hex: {line:?}", path.display())))
    }
}

/// Where the kernel lists VM `fd`'s part of the software platform's reverse map: its debugfs
/// directory, named by kvm_create_vm_debugfs() `"%d-%s", task_pid_nr(current), fdname`
/// (the creating thread's id and the VM's fd), file `sw_rmp` (sw-rmp patch).
fn platform_map_path(fd: &VmFd) -> std::path::PathBuf {
    // SAFETY: gettid() takes nothing and cannot fail.
    let tid = unsafe { libc::gettid() };
    format!("/sys/kernel/debug/kvm/{tid}-{}/sw_rmp", fd.as_raw_fd()).into()
}

/// The GFNs of a reverse-map listing ("pfn gfn mapped" in hex, a line per PFN), ascending;
/// the first line that is not one, as the error.
fn parse_platform_map(text: &str) -> Result<Vec<u64>, String> {
    let mut gfns = text
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [pfn, gfn, mapped] if u64::from_str_radix(pfn, 16).is_ok() && mapped.parse::<i64>().is_ok() => {
                    u64::from_str_radix(gfn, 16).map_err(|_| line.to_string())
                }
                _ => Err(line.to_string()),
            }
        })
        .collect::<Result<Vec<u64>, String>>()?;
    gfns.sort_unstable();
    Ok(gfns)
}

#[cfg(test)]
mod platform_tests {
    use super::parse_platform_map;

    #[test]
    fn a_reverse_map_listing_gives_its_gfns_in_order_and_a_stray_line_is_named() {
        assert_eq!(parse_platform_map("1f3a0 113 1\n1f39f 110 0\n"), Ok(vec![0x110, 0x113]));
        assert_eq!(parse_platform_map(""), Ok(vec![]));
        assert_eq!(parse_platform_map("1f3a0 113 1\n# assigned 3\n"), Err("# assigned 3".to_string()));
        assert_eq!(parse_platform_map("1f3a0 zz 1\n"), Err("1f3a0 zz 1".to_string()));
    }
}
