//! vCPUs: making one in the harness's start state, each one's part of the mailbox, and
//! running posted commands on one until HLT.
//!
//! Every vCPU runs the same interpreter (`guest`), which finds its mailbox through EBP: vCPU
//! 0 has the whole mailbox slot, as it always had; the extra vCPUs of concurrent groups
//! have `mailbox::VCPU_STRIDE` bytes each further on, which vCPU 0 uses only for long
//! command lists (state probes), never while a group runs.

use std::collections::BTreeSet;

use kvm_bindings::{kvm_regs, kvm_segment};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use super::hostmem::Mapping;
use super::resource;
use crate::abi::{self, command, layout, mailbox};
use crate::backend::HarnessError;
use crate::op::PAGE_SIZE;
use crate::outcome::AccessResult;

pub use crate::group::MAX_VCPUS;

/// Makes vCPU `id` in 32-bit flat protected mode with no descriptor tables in memory: the
/// hidden segment state is all the CPU uses (platform-facts: "set up purely through SREGS").
pub fn create(vm: &VmFd, id: u64) -> Result<VcpuFd, HarnessError> {
    let vcpu = vm.create_vcpu(id).map_err(|e| resource("KVM_CREATE_VCPU", e))?;
    let mut sregs = vcpu.get_sregs().map_err(|e| resource("KVM_GET_SREGS", e))?;
    let flat = |selector: u16, type_: u8| kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    sregs.cs = flat(abi::cpu::CODE_SELECTOR, abi::cpu::CODE_TYPE);
    for seg in [&mut sregs.ds, &mut sregs.es, &mut sregs.fs, &mut sregs.gs, &mut sregs.ss] {
        *seg = flat(abi::cpu::DATA_SELECTOR, abi::cpu::DATA_TYPE);
    }
    sregs.cr0 |= 1;
    vcpu.set_sregs(&sregs).map_err(|e| resource("KVM_SET_SREGS", e))?;
    Ok(vcpu)
}

/// One vCPU's part of the mailbox memory: its host address and its GPA.
#[derive(Clone, Copy)]
pub struct MailboxView {
    host: *mut u8,
    len: u64,
    gpa: u64,
}

// SAFETY: a view is a window on the backend's mailbox mapping, which outlives every thread
// a group starts (they are scoped); each vCPU's thread touches only its own window.
unsafe impl Send for MailboxView {}

impl MailboxView {
    /// vCPU `index`'s window of `mailbox` (the harness's mailbox mapping).
    pub fn of(mailbox: &Mapping, index: usize) -> MailboxView {
        assert!(index < MAX_VCPUS);
        let offset = mailbox::vcpu_offset(index);
        let len = if index == 0 { layout::MAILBOX_SIZE } else { mailbox::VCPU_STRIDE };
        assert!(offset + len <= mailbox.len() as u64);
        // SAFETY: offset is inside the mapping (asserted).
        let host = unsafe { mailbox.addr().add(offset as usize) };
        MailboxView { host, len, gpa: layout::MAILBOX_GPA + offset }
    }

    /// Most commands one run on this window can carry.
    pub fn max_commands(&self) -> usize {
        if self.gpa == layout::MAILBOX_GPA {
            mailbox::MAX_COMMANDS
        } else {
            mailbox::MAX_GROUP_COMMANDS
        }
    }

    /// Writes the low `bytes` bytes of `value` at `offset` of the window.
    pub fn write(&self, offset: u64, value: u64, bytes: usize) {
        assert!(bytes <= 8 && offset + bytes as u64 <= self.len);
        // SAFETY: in bounds (asserted) of the backend's private mapping; the vCPU that shares
        // this window is not running (only the thread that runs it calls this).
        unsafe { std::ptr::copy_nonoverlapping(value.to_le_bytes().as_ptr(), self.host.add(offset as usize), bytes) };
    }

    /// Reads `bytes` bytes at `offset` of the window, little-endian.
    pub fn read(&self, offset: u64, bytes: usize) -> u64 {
        assert!(bytes <= 8 && offset + bytes as u64 <= self.len);
        let mut b = [0u8; 8];
        // SAFETY: as for `write`.
        unsafe { std::ptr::copy_nonoverlapping(self.host.add(offset as usize), b.as_mut_ptr(), bytes) };
        u64::from_le_bytes(b)
    }
}

/// Posts commands to `mb` and runs `vcpu` until HLT. An MMIO exit is answered (reads get 0,
/// the GFN goes in `mmio_gfns`) and the run goes on; a memory-fault exit ends the command,
/// and the run either stops there (`stop_on_fault`) or resumes at the next command.
pub fn run_commands(
    vcpu: &mut VcpuFd,
    mb: MailboxView,
    commands: &[(u32, u64, u64)],
    stop_on_fault: bool,
    mmio_gfns: &mut BTreeSet<u64>,
) -> Result<Vec<Option<AccessResult>>, HarnessError> {
    if commands.len() > mb.max_commands() {
        return Err(HarnessError::Bug(format!("{} guest commands in one run", commands.len())));
    }
    for (i, &(code, gpa, value)) in commands.iter().enumerate() {
        mb.write(mailbox::command(i, mailbox::CMD_CODE), code as u64, 4);
        mb.write(mailbox::command(i, mailbox::CMD_GPA), gpa, 4);
        mb.write(mailbox::command(i, mailbox::CMD_VALUE), value, 8);
    }
    mb.write(mailbox::COUNT, commands.len() as u64, 4);
    let mut exits: Vec<Option<AccessResult>> = vec![None; commands.len()];
    let mut start = 0u64;
    'runs: loop {
        // Write the start index, then enter at the interpreter's entry point with EBP at
        // this vCPU's mailbox.
        mb.write(mailbox::START, start, 4);
        let regs = kvm_regs { rip: layout::CODE_GPA, rflags: abi::cpu::RFLAGS, rsp: mailbox::STACK_TOP, rbp: mb.gpa, ..Default::default() };
        vcpu.set_regs(&regs).map_err(|e| resource("KVM_SET_REGS", e))?;
        loop {
            let v = &mut *vcpu;
            let (exit, signals) = super::hostmem::catching_memory_failure(move || v.run());
            let current = mb.read(mailbox::CURRENT, 4) as usize;
            if signals > 0 {
                // kvm_send_hwpoison_signal(): a poisoned page behind userspace_addr, which
                // the model does not follow (model::view `Target::Unknown`); re-entering
                // would meet it again.
                return Err(HarnessError::Bug(format!("KVM sent SIGBUS (hwpoison) at command {current}")));
            }
            match exit {
                Ok(VcpuExit::Hlt) => break 'runs,
                Ok(VcpuExit::MmioRead(gpa, data)) => {
                    data.fill(0);
                    mmio_gfns.insert(gpa / PAGE_SIZE);
                    exits[current] = Some(AccessResult::Mmio);
                    if commands[current].0 == command::DIGEST {
                        mb.write(mailbox::ABORT_FLAG, 1, 4);
                    }
                }
                Ok(VcpuExit::MmioWrite(gpa, _)) => {
                    mmio_gfns.insert(gpa / PAGE_SIZE);
                    exits[current] = Some(AccessResult::Mmio);
                }
                Ok(VcpuExit::MemoryFault { flags, gpa, size }) => {
                    exits[current] = Some(AccessResult::MemoryFault { gpa, size, flags });
                    if stop_on_fault {
                        for e in &mut exits[current + 1..] {
                            *e = Some(AccessResult::NotRun);
                        }
                        break 'runs;
                    }
                    start = current as u64 + 1;
                    continue 'runs;
                }
                Ok(other) => return Err(HarnessError::Bug(format!("unexpected vCPU exit {other:?} at command {current}"))),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => return Err(HarnessError::Bug(format!("KVM_RUN failed at command {current}: {e}"))),
            }
        }
    }
    Ok(exits)
}

/// KVM_PRE_FAULT_MEMORY: `_IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)` (include/uapi/linux/kvm.h;
/// kvm-ioctls 0.25 has no call for it).
const KVM_PRE_FAULT_MEMORY: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<kvm_bindings::kvm_pre_fault_memory>() as libc::c_ulong) << 16) | (0xae << 8) | 0xd5;

/// KVM_PRE_FAULT_MEMORY of `[gpa, gpa + size)` on `vcpu`: the size left unmapped (where it
/// stopped at a page it could not map after mapping some), or the error where it mapped none.
pub fn pre_fault(vcpu: &VcpuFd, gpa: u64, size: u64) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut range = kvm_bindings::kvm_pre_fault_memory { gpa, size, ..Default::default() };
    // SAFETY: KVM_PRE_FAULT_MEMORY reads and writes back one kvm_pre_fault_memory, which
    // lives across the call; the vCPU fd is open.
    let call = || unsafe { libc::ioctl(vcpu.as_raw_fd(), KVM_PRE_FAULT_MEMORY, &mut range as *mut kvm_bindings::kvm_pre_fault_memory) };
    // A poisoned page behind userspace_addr makes KVM send SIGBUS (kvm_send_hwpoison_signal())
    // and retry until the signal is pending (-EINTR): recorded, not fatal.
    let (rc, signals) = super::hostmem::catching_memory_failure(call);
    if signals > 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EHWPOISON));
    }
    if rc == 0 {
        Ok(range.size)
    } else {
        Err(std::io::Error::last_os_error())
    }
}
