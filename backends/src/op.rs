//! The op vocabulary every backend speaks.
//!
//! Arguments are the raw values that reach the kernel (byte sizes, GPAs, slot ids, flag
//! words), so a program can express any call, including the malformed ones that exercise
//! the kernel's bound and alignment checks. Generators keep most values valid; the model
//! decides, rule by rule, what each value means.
//!
//! Objects are named by program-level ids: `GmemId(n)` is the file made by the n-th
//! `CreateGmem` of the program. An op naming a file that was never made (or whose fd is
//! closed, for ops that need the fd) is not sent to the kernel: every backend answers
//! `Outcome::Skipped` the same way, so the op costs nothing and compares equal.

use std::fmt;

pub const PAGE_SIZE: u64 = 4096;

/// guest_memfd creation flags (include/uapi/linux/kvm.h, 6.18).
pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
pub const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;

/// Memslot flags (include/uapi/linux/kvm.h).
pub const KVM_MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
pub const KVM_MEM_READONLY: u32 = 1 << 1;
pub const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;

/// KVM_MEMORY_ATTRIBUTE_PRIVATE (include/uapi/linux/kvm.h).
pub const KVM_MEMORY_ATTRIBUTE_PRIVATE: u64 = 1 << 3;

/// KVM_MEMORY_EXIT_FLAG_PRIVATE (include/uapi/linux/kvm.h).
pub const KVM_MEMORY_EXIT_FLAG_PRIVATE: u64 = 1 << 3;

/// The guest-physical window in which programs place their memslots. Below it sit the
/// harness's own slots (guest code and the mailbox); see `layout`.
pub mod layout {
    /// Memslot ids 0 and 1 belong to the harness (code, mailbox); programs use the rest.
    pub const HARNESS_SLOTS: u32 = 2;
    pub const CODE_SLOT: u32 = 0;
    pub const MAILBOX_SLOT: u32 = 1;
    /// Guest code: 64 KiB at 64 KiB.
    pub const CODE_GPA: u64 = 0x1_0000;
    pub const CODE_SIZE: u64 = 0x1_0000;
    /// Mailbox: 64 KiB at 128 KiB.
    pub const MAILBOX_GPA: u64 = 0x2_0000;
    pub const MAILBOX_SIZE: u64 = 0x1_0000;
    /// Program memslots are generated inside [WINDOW_GPA, WINDOW_GPA + WINDOW_PAGES pages).
    pub const WINDOW_GPA: u64 = 0x10_0000;
    pub const WINDOW_PAGES: u64 = 64;
    /// The first program slot id, and how many a generator uses.
    pub const FIRST_PROGRAM_SLOT: u32 = HARNESS_SLOTS;
    pub const PROGRAM_SLOTS: u32 = 8;
    /// The guest runs in 32-bit protected mode: it can address the first 4 GiB only.
    pub const GUEST_ADDRESS_LIMIT: u64 = 1 << 32;
    /// Most guest accesses a single `Op::Guest` may carry.
    pub const MAX_ACCESSES: usize = 16;
    /// Backends map a guest_memfd only up to this size; larger files are left unmapped.
    pub const MAX_MAPPED_BYTES: u64 = 1 << 30;
}

/// A program-level guest_memfd id: the n-th `CreateGmem` of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GmemId(pub u8);

impl fmt::Display for GmemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// The fd passed as `guest_memfd` in KVM_SET_USER_MEMORY_REGION2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FdArg {
    Gmem(GmemId),
    /// -1: reaches the `fget() == NULL` path (EBADF).
    Invalid,
    /// The VM's own fd: a live fd that is not a guest_memfd.
    NotGmem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Width {
    W1,
    W2,
    W4,
    W8,
}

impl Width {
    pub const ALL: [Width; 4] = [Width::W1, Width::W2, Width::W4, Width::W8];

    pub fn bytes(self) -> u64 {
        match self {
            Width::W1 => 1,
            Width::W2 => 2,
            Width::W4 => 4,
            Width::W8 => 8,
        }
    }

    pub fn from_bytes(n: u64) -> Option<Width> {
        Width::ALL.into_iter().find(|w| w.bytes() == n)
    }

    /// Truncates a value to this width.
    pub fn truncate(self, value: u64) -> u64 {
        match self {
            Width::W8 => value,
            w => value & ((1u64 << (8 * w.bytes())) - 1),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    Read,
    Write(u64),
}

/// One guest load or store, performed by a real vCPU instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    pub gpa: u64,
    pub width: Width,
    pub kind: AccessKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// KVM_CREATE_GUEST_MEMFD { size, flags }.
    CreateGmem { size: u64, flags: u64 },
    /// mmap(size of the file, PROT_READ|PROT_WRITE, MAP_SHARED) of the guest_memfd.
    Map { gmem: GmemId },
    /// KVM_SET_USER_MEMORY_REGION2 creating a slot. With KVM_MEM_GUEST_MEMFD the shared side
    /// (userspace_addr) is the file's own mapping where it has one, else fresh anonymous
    /// memory; without it the slot is an ordinary anonymous-memory slot.
    Bind { slot: u32, flags: u32, fd: FdArg, gpa: u64, size: u64, offset: u64 },
    /// KVM_SET_USER_MEMORY_REGION2 with memory_size 0: delete the slot.
    Unbind { slot: u32 },
    /// KVM_SET_USER_MEMORY_REGION2 on a slot this program bound, with its size and
    /// userspace_addr unchanged but a new GPA and/or flags: a move or a flags change.
    ModifySlot { slot: u32, gpa: u64, flags: u32 },
    /// KVM_SET_MEMORY_ATTRIBUTES { address, size, attributes, flags: 0 }.
    SetAttributes { gpa: u64, size: u64, attributes: u64 },
    /// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE).
    Punch { gmem: GmemId, offset: u64, len: u64 },
    /// fallocate with `mode` as given (FALLOC_FL_KEEP_SIZE = 1 is the valid allocate).
    Allocate { gmem: GmemId, mode: i32, offset: u64, len: u64 },
    /// close() of the guest_memfd fd.
    CloseGmem { gmem: GmemId },
    /// munmap() of the guest_memfd's host mapping.
    Unmap { gmem: GmemId },
    /// close() of the vCPU and VM fds; guest_memfd files keep the VM alive.
    DestroyVm,
    /// Loads and stores by the vCPU, all in one KVM_RUN.
    Guest { accesses: Vec<Access> },
    /// A load through the guest_memfd's host mapping at a byte offset into the file.
    HostRead { gmem: GmemId, offset: u64, width: Width },
    /// A store through the guest_memfd's host mapping.
    HostWrite { gmem: GmemId, offset: u64, width: Width, value: u64 },
    /// Compare the whole observable state of both sides.
    Check,
}

/// The kinds of op, for statistics and for "same divergence" during minimization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    CreateGmem,
    Map,
    Bind,
    Unbind,
    ModifySlot,
    SetAttributes,
    Punch,
    Allocate,
    CloseGmem,
    Unmap,
    DestroyVm,
    Guest,
    HostRead,
    HostWrite,
    Check,
}

impl OpKind {
    pub const ALL: [OpKind; 15] = [
        OpKind::CreateGmem,
        OpKind::Map,
        OpKind::Bind,
        OpKind::Unbind,
        OpKind::ModifySlot,
        OpKind::SetAttributes,
        OpKind::Punch,
        OpKind::Allocate,
        OpKind::CloseGmem,
        OpKind::Unmap,
        OpKind::DestroyVm,
        OpKind::Guest,
        OpKind::HostRead,
        OpKind::HostWrite,
        OpKind::Check,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::CreateGmem => "create_gmem",
            OpKind::Map => "map",
            OpKind::Bind => "bind",
            OpKind::Unbind => "unbind",
            OpKind::ModifySlot => "modify_slot",
            OpKind::SetAttributes => "set_attributes",
            OpKind::Punch => "punch",
            OpKind::Allocate => "allocate",
            OpKind::CloseGmem => "close_gmem",
            OpKind::Unmap => "unmap",
            OpKind::DestroyVm => "destroy_vm",
            OpKind::Guest => "guest",
            OpKind::HostRead => "host_read",
            OpKind::HostWrite => "host_write",
            OpKind::Check => "check",
        }
    }
}

impl Op {
    pub fn kind(&self) -> OpKind {
        match self {
            Op::CreateGmem { .. } => OpKind::CreateGmem,
            Op::Map { .. } => OpKind::Map,
            Op::Bind { .. } => OpKind::Bind,
            Op::Unbind { .. } => OpKind::Unbind,
            Op::ModifySlot { .. } => OpKind::ModifySlot,
            Op::SetAttributes { .. } => OpKind::SetAttributes,
            Op::Punch { .. } => OpKind::Punch,
            Op::Allocate { .. } => OpKind::Allocate,
            Op::CloseGmem { .. } => OpKind::CloseGmem,
            Op::Unmap { .. } => OpKind::Unmap,
            Op::DestroyVm => OpKind::DestroyVm,
            Op::Guest { .. } => OpKind::Guest,
            Op::HostRead { .. } => OpKind::HostRead,
            Op::HostWrite { .. } => OpKind::HostWrite,
            Op::Check => OpKind::Check,
        }
    }

    /// Ops after which the kernel must have invalidated something: the runner compares
    /// page state after each of them.
    pub fn invalidates(&self) -> bool {
        matches!(
            self,
            Op::Punch { .. }
                | Op::Allocate { .. }
                | Op::SetAttributes { .. }
                | Op::Unbind { .. }
                | Op::ModifySlot { .. }
                | Op::CloseGmem { .. }
                | Op::Unmap { .. }
                | Op::DestroyVm
        )
    }

    /// The guest_memfd this op names, if any.
    pub fn gmem(&self) -> Option<GmemId> {
        match *self {
            Op::Map { gmem }
            | Op::Punch { gmem, .. }
            | Op::Allocate { gmem, .. }
            | Op::CloseGmem { gmem }
            | Op::Unmap { gmem }
            | Op::HostRead { gmem, .. }
            | Op::HostWrite { gmem, .. } => Some(gmem),
            Op::Bind { fd: FdArg::Gmem(gmem), .. } => Some(gmem),
            _ => None,
        }
    }
}
