//! The op vocabulary every backend speaks.
//!
//! Arguments are the raw values that reach the kernel (byte sizes, GPAs, slot ids, flag
//! words), so a program can express any call, including the malformed ones that exercise
//! the kernel's bound and alignment checks. Generators keep most values valid; the model
//! decides, rule by rule, what each value means.
//!
//! Objects are named by program-level ids: `GmemId(n)` is the file made by the n-th
//! `CreateGmem` op of the program (counting from 0, and counting creates that fail: a
//! failed create's id names no file). Names depend on the program alone, so removing an op
//! renumbers without running anything (syzkaller's explicit resource references). An op
//! naming a file that was never made (or whose fd is closed, for ops that need the fd) is
//! not sent to the kernel: every backend answers `Outcome::Skipped` the same way, so the op
//! costs nothing and compares equal.

use std::fmt;

// The uapi flags and the harness layout live in `abi`; re-exported here, where the op
// vocabulary that carries them is defined.
pub use crate::abi::{
    layout, GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP, KVM_MEMORY_ATTRIBUTE_PRIVATE, KVM_MEMORY_EXIT_FLAG_PRIVATE,
    KVM_MEM_GUEST_MEMFD, KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, PAGE_SIZE,
};

/// A program-level guest_memfd id: the n-th `CreateGmem` op of the program, made or not.
/// (Creates skipped because the VM is gone take no id; every later create is skipped too.)
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
    /// ftruncate() of the guest_memfd fd to `size` bytes: a guest_memfd's size is fixed at
    /// creation, so the kernel refuses every one (kvm_gmem_setattr()).
    Truncate { gmem: GmemId, size: u64 },
    /// mbind(mapping + offset, len, mode, &nodes, `mempolicy::MAXNODE`, flags) on the
    /// guest_memfd's host mapping: a NUMA policy for a range of the file (7.x keeps it in
    /// the file, kvm_gmem_set_policy(); earlier kernels in the mapping only).
    Mbind { gmem: GmemId, offset: u64, len: u64, mode: u32, nodes: u64, flags: u32 },
    /// get_mempolicy(&mode, &nodes, `mempolicy::MAXNODE`, mapping + offset, MPOL_F_ADDR):
    /// the policy at one address of the mapping (`mempolicy::policy_value`).
    GetMempolicy { gmem: GmemId, offset: u64 },
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
    /// Members that run at the same time, each on its own thread (see `group`).
    Group(crate::group::Group),
}

/// The kinds of op, for statistics and for "same divergence" during minimization. The
/// snake_case names are the text format's op names (`create_gmem`, `modify_slot`, ...);
/// `FromStr` parses them.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::EnumCount,
    strum::EnumIter,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
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
    Truncate,
    Mbind,
    GetMempolicy,
    DestroyVm,
    Guest,
    HostRead,
    HostWrite,
    Check,
    Group,
}

impl OpKind {
    /// Every kind, in declaration order (strum's `VariantArray`, as an array).
    pub const ALL: [OpKind; <OpKind as strum::EnumCount>::COUNT] = {
        use strum::VariantArray as _;
        let mut all = [OpKind::Check; <OpKind as strum::EnumCount>::COUNT];
        let mut i = 0;
        while i < all.len() {
            all[i] = OpKind::VARIANTS[i];
            i += 1;
        }
        all
    };

    /// The op's name in the text format.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Every name, for messages that list the valid ones.
    pub fn names() -> Vec<&'static str> {
        OpKind::ALL.iter().map(|k| k.name()).collect()
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
            Op::Truncate { .. } => OpKind::Truncate,
            Op::Mbind { .. } => OpKind::Mbind,
            Op::GetMempolicy { .. } => OpKind::GetMempolicy,
            Op::DestroyVm => OpKind::DestroyVm,
            Op::Guest { .. } => OpKind::Guest,
            Op::HostRead { .. } => OpKind::HostRead,
            Op::HostWrite { .. } => OpKind::HostWrite,
            Op::Check => OpKind::Check,
            Op::Group(_) => OpKind::Group,
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
                | Op::Group(_)
        )
    }

    /// The guest_memfd this op names, if any.
    pub fn gmem(&self) -> Option<GmemId> {
        gmem_field!(self).copied()
    }

    /// The guest_memfd this op names, to rename it (minimization renumbers files).
    pub fn gmem_mut(&mut self) -> Option<&mut GmemId> {
        gmem_field!(self)
    }
}

/// The `GmemId` field of an op, by reference: the same arms serve `&Op` and `&mut Op`.
macro_rules! gmem_field {
    ($op:expr) => {
        match $op {
            Op::Map { gmem }
            | Op::Punch { gmem, .. }
            | Op::Allocate { gmem, .. }
            | Op::CloseGmem { gmem }
            | Op::Unmap { gmem }
            | Op::Truncate { gmem, .. }
            | Op::Mbind { gmem, .. }
            | Op::GetMempolicy { gmem, .. }
            | Op::HostRead { gmem, .. }
            | Op::HostWrite { gmem, .. }
            | Op::Bind { fd: FdArg::Gmem(gmem), .. } => Some(gmem),
            _ => None,
        }
    };
}
use gmem_field;

#[cfg(test)]
mod tests {
    use super::OpKind;

    #[test]
    fn op_kind_names_are_the_text_formats() {
        let names = OpKind::names();
        assert_eq!(
            names,
            [
                "create_gmem",
                "map",
                "bind",
                "unbind",
                "modify_slot",
                "set_attributes",
                "punch",
                "allocate",
                "close_gmem",
                "unmap",
                "truncate",
                "mbind",
                "get_mempolicy",
                "destroy_vm",
                "guest",
                "host_read",
                "host_write",
                "check",
                "group"
            ]
        );
        for kind in OpKind::ALL {
            assert_eq!(kind.name().parse::<OpKind>(), Ok(kind));
        }
        assert!("bogus".parse::<OpKind>().is_err());
        assert!("Punch".parse::<OpKind>().is_err(), "names are case-sensitive");
    }
}
