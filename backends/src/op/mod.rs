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

mod args;
mod define;

pub use args::{parse_access, parse_file, parse_number, ArgSpec, ArgType, ArgValue, BadArg, Format, IsArg, Names, Shrink};
use define::define_ops;

use crate::abi::names;

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

/// The madvise() advices the model has rules for (`model::gmem::madvise`), by name; the
/// values are the uapi's (asm-generic/mman-common.h, pinned by libc).
pub const MADVICE: Names = &[
    ("DONTNEED", libc::MADV_DONTNEED as u64),
    ("REMOVE", libc::MADV_REMOVE as u64),
    ("POPULATE_READ", libc::MADV_POPULATE_READ as u64),
    ("POPULATE_WRITE", libc::MADV_POPULATE_WRITE as u64),
    // Not in the libc crate: include/uapi/asm-generic/mman-common.h, `#define MADV_COLLAPSE 25`.
    ("COLLAPSE", MADV_COLLAPSE as u64),
    // Memory failure injection (CONFIG_MEMORY_FAILURE, CAP_SYS_ADMIN; `Profile::hwpoison_errno`).
    ("HWPOISON", libc::MADV_HWPOISON as u64),
];

/// MADV_COLLAPSE (include/uapi/asm-generic/mman-common.h, 6.1 on).
pub const MADV_COLLAPSE: i32 = 25;

/// How an op may take part in a concurrent group (`crate::group`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Race {
    /// Never a member.
    No,
    /// A member, repeated as often as the group says.
    Many,
    /// A member that removes the object it names: done once, the next repetition would be
    /// skipped (or refused differently), so it runs once.
    Once,
}

/// What an op goes through to reach the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uses {
    /// The VM (its fd, a vCPU), or nothing of the kernel's.
    Vm,
    /// The guest_memfd's fd.
    Fd,
    /// The guest_memfd's host mapping.
    Mapping,
}

/// One row of the op table (`OpKind::spec`).
#[derive(Debug)]
pub struct OpSpec {
    pub kind: OpKind,
    /// The op's fields in order: text keys, formats, how they shrink.
    pub args: &'static [ArgSpec],
    /// Whether the kernel must have invalidated something after the op: the runner
    /// compares page state after each op that does.
    pub invalidates: bool,
    pub race: Race,
    pub uses: Uses,
    /// The generator's base rate (`harness::gen::weights`; the probed profile adjusts it).
    pub rate: u32,
    /// The C reproducer's call: `{key}` stands for that field's value, `{key:label}` for
    /// the same annotated with the C side's name for it.
    pub c: &'static str,
}

define_ops! {
    /// KVM_CREATE_GUEST_MEMFD { size, flags }.
    CreateGmem { size: u64 [Hex, Len], flags: u64 [Flags(names::GMEM_FLAGS), Bits] }
        => invalidates: false, race: No, uses: Vm, rate: 7, c: "do_create_gmem({size}, {flags})";
    /// mmap(size of the file, PROT_READ|PROT_WRITE, MAP_SHARED) of the guest_memfd.
    Map { gmem: GmemId [File] }
        => invalidates: false, race: No, uses: Fd, rate: 6, c: "do_map({gmem})";
    /// KVM_SET_USER_MEMORY_REGION2 creating a slot. With KVM_MEM_GUEST_MEMFD the shared side
    /// (userspace_addr) is the file's own mapping where it has one, else fresh anonymous
    /// memory; without it the slot is an ordinary anonymous-memory slot.
    Bind {
        slot: u32 [Dec],
        flags: u32 [Flags(names::SLOT_FLAGS), Bits],
        fd: FdArg [Fd],
        gpa: u64 [Hex, Gpa],
        size: u64 [Hex, Len],
        offset: u64 [Hex, Offset],
    } => invalidates: false, race: No, uses: Vm, rate: 13, c: "do_bind({slot}, {flags}, {fd}, {gpa:guest_phys_addr}, {size:memory_size}, {offset:guest_memfd_offset})";
    /// KVM_SET_USER_MEMORY_REGION2 with memory_size 0: delete the slot.
    Unbind { slot: u32 [Dec] }
        => invalidates: true, race: Once, uses: Vm, rate: 4, c: "do_unbind({slot})";
    /// KVM_SET_USER_MEMORY_REGION2 on a slot this program bound, with its size and
    /// userspace_addr unchanged but a new GPA and/or flags: a move or a flags change.
    ModifySlot { slot: u32 [Dec], gpa: u64 [Hex], flags: u32 [Flags(names::SLOT_FLAGS)] }
        => invalidates: true, race: No, uses: Vm, rate: 6, c: "do_modify_slot({slot}, {gpa:new guest_phys_addr}, {flags:new flags})";
    /// KVM_SET_MEMORY_ATTRIBUTES { address, size, attributes, flags: 0 }.
    SetAttributes { gpa: u64 [Hex], size: u64 [Hex, Len], attributes: u64 [Flags(names::ATTRIBUTES)] }
        => invalidates: true, race: Many, uses: Vm, rate: 4, c: "do_set_attributes({gpa:address}, {size}, {attributes})";
    /// fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE).
    Punch { gmem: GmemId [File], offset: u64 [Hex, Offset], len: u64 [Hex, Len] }
        => invalidates: true, race: Many, uses: Fd, rate: 8, c: "do_fallocate({gmem}, GF_FALLOC_PUNCH, {offset}, {len})";
    /// fallocate with `mode` as given (FALLOC_FL_KEEP_SIZE = 1 is the valid allocate).
    Allocate { gmem: GmemId [File], mode: i32 [Flags(crate::abi::falloc::NAMES)], offset: u64 [Hex, Offset], len: u64 [Hex, Len] }
        => invalidates: true, race: Many, uses: Fd, rate: 5, c: "do_fallocate({gmem}, {mode}, {offset}, {len})";
    /// close() of the guest_memfd fd.
    CloseGmem { gmem: GmemId [File] }
        => invalidates: true, race: Once, uses: Fd, rate: 4, c: "do_close_gmem({gmem})";
    /// munmap() of the guest_memfd's host mapping.
    Unmap { gmem: GmemId [File] }
        => invalidates: true, race: Once, uses: Mapping, rate: 3, c: "do_unmap({gmem})";
    /// ftruncate() of the guest_memfd fd to `size` bytes: a guest_memfd's size is fixed at
    /// creation, so the kernel refuses every one (kvm_gmem_setattr()). Rare: that it stays
    /// refused, and that the file is unchanged after, is all there is to check.
    Truncate { gmem: GmemId [File], size: u64 [Hex] }
        => invalidates: false, race: No, uses: Fd, rate: 1, c: "do_truncate({gmem}, {size:length})";
    /// mbind(mapping + offset, len, mode, &nodes, `mempolicy::MAXNODE`, flags) on the
    /// guest_memfd's host mapping: a NUMA policy for a range of the file (7.x keeps it in
    /// the file, kvm_gmem_set_policy(); earlier kernels in the mapping only). Rare: one NUMA
    /// node, so a policy changes what get_mempolicy reports and nothing else.
    Mbind {
        gmem: GmemId [File],
        offset: u64 [Hex, Offset],
        len: u64 [Hex, Len],
        mode: u32 [MpolMode],
        nodes: u64 [Hex],
        flags: u32 [Flags(crate::abi::mempolicy::MF_NAMES), Bits],
    } => invalidates: false, race: No, uses: Mapping, rate: 2, c: "do_mbind({gmem}, {offset:offset in the mapping}, {len}, {mode}, {nodes}, {flags})";
    /// get_mempolicy(&mode, &nodes, `mempolicy::MAXNODE`, mapping + offset, MPOL_F_ADDR):
    /// the policy at one address of the mapping (`mempolicy::policy_value`).
    GetMempolicy { gmem: GmemId [File], offset: u64 [Hex] }
        => invalidates: false, race: No, uses: Mapping, rate: 2, c: "do_get_mempolicy({gmem}, {offset:offset in the mapping})";
    /// madvise(mapping + offset, len, advice) on the guest_memfd's host mapping.
    Madvise { gmem: GmemId [File], offset: u64 [Hex, Offset], len: u64 [Hex, Len], advice: u32 [Named(MADVICE)] }
        => invalidates: true, race: No, uses: Mapping, rate: 3, c: "do_madvise({gmem}, {offset:offset in the mapping}, {len}, {advice})";
    /// KVM_PRE_FAULT_MEMORY { gpa, size } on vCPU 0: map the range into the TDP page tables
    /// ahead of the guest (6.11+). Its outcome is the size left unmapped (the ioctl copies the
    /// range back), or the errno where no page was mapped.
    PreFault { gpa: u64 [Hex, Gpa], size: u64 [Hex, Len] }
        => invalidates: false, race: No, uses: Vm, rate: 4, c: "do_pre_fault({gpa}, {size})";
    /// close() of the vCPU and VM fds; guest_memfd files keep the VM alive. Rare: it ends
    /// what the rest of the program can do.
    DestroyVm
        => invalidates: true, race: No, uses: Vm, rate: 1, c: "do_destroy_vm()";
    /// Loads and stores by the vCPU, all in one KVM_RUN.
    Guest { accesses: Vec<Access> [Accesses, Accesses] }
        => invalidates: false, race: Many, uses: Vm, rate: 20, c: "do_guest({accesses})";
    /// A load through the guest_memfd's host mapping at a byte offset into the file.
    HostRead { gmem: GmemId [File], offset: u64 [Hex], width: Width [Width] }
        => invalidates: false, race: Many, uses: Mapping, rate: 7, c: "do_host_access({gmem}, {offset}, {width}, 0 /* load */, 0)";
    /// A store through the guest_memfd's host mapping.
    HostWrite { gmem: GmemId [File], offset: u64 [Hex], width: Width [Width], value: u64 [Hex, Value] }
        => invalidates: false, race: Many, uses: Mapping, rate: 8, c: "do_host_access({gmem}, {offset}, {width}, 1 /* store */, {value})";
    /// Compare the whole observable state of both sides.
    Check
        => invalidates: false, race: No, uses: Vm, rate: 4, c: "set_obs(\"ok\") /* check: the state probes follow */";
    /// Members that run at the same time, each on its own thread (see `group`); written by
    /// the text format's own rules, emitted by the C reproducer's. A group's end compares
    /// state. A modest rate: each costs a few threads and the model's search of orders.
    Group(crate::group::Group)
        => invalidates: true, race: No, uses: Vm, rate: 3, c: "";
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

    /// The kind's row of the op table.
    pub fn spec(self) -> &'static OpSpec {
        &SPECS[self as usize]
    }
}

impl Op {
    /// Ops after which the kernel must have invalidated something: the runner compares
    /// page state after each of them.
    pub fn invalidates(&self) -> bool {
        self.kind().spec().invalidates
    }
}

/// One op of each kind (but a group) with every field set.
#[cfg(test)]
pub(crate) fn one_of_each() -> Vec<Op> {
    let g = GmemId(3);
    vec![
        Op::CreateGmem { size: 0x4000, flags: 3 },
        Op::Map { gmem: g },
        Op::Bind { slot: 9, flags: 4, fd: FdArg::Gmem(g), gpa: 0x100000, size: 0x2000, offset: 0x1000 },
        Op::Unbind { slot: 9 },
        Op::ModifySlot { slot: 9, gpa: 0x200000, flags: 1 },
        Op::SetAttributes { gpa: 0x100000, size: 0x1000, attributes: 8 },
        Op::Punch { gmem: g, offset: 0x1000, len: 0x2000 },
        Op::Allocate { gmem: g, mode: 1, offset: 0, len: 0x1000 },
        Op::CloseGmem { gmem: g },
        Op::Unmap { gmem: g },
        Op::Truncate { gmem: g, size: 0 },
        Op::Mbind { gmem: g, offset: 0, len: 0x1000, mode: 2, nodes: 1, flags: 1 },
        Op::GetMempolicy { gmem: g, offset: 0x8 },
        Op::Madvise { gmem: g, offset: 0x1000, len: 0x1000, advice: 9 },
        Op::PreFault { gpa: 0x100000, size: 0x2000 },
        Op::DestroyVm,
        Op::Guest { accesses: vec![Access { gpa: 0x100008, width: Width::W8, kind: AccessKind::Write(7) }] },
        Op::HostRead { gmem: g, offset: 8, width: Width::W4 },
        Op::HostWrite { gmem: g, offset: 8, width: Width::W2, value: 0xbeef },
        Op::Check,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_is_its_table_row_and_rebuilds_from_its_args() {
        let ops = one_of_each();
        assert_eq!(ops.len() + 1, OpKind::ALL.len(), "one of each kind but a group");
        for op in ops {
            let spec = op.kind().spec();
            assert_eq!(spec.kind, op.kind());
            let args = op.args();
            assert_eq!(args.len(), spec.args.len(), "{op:?}");
            for (arg, value) in spec.args.iter().zip(&args) {
                assert_eq!(arg.ty, value.ty(), "{op:?} {}", arg.key);
            }
            assert_eq!(Op::from_args(op.kind(), args.clone()).as_ref(), Some(&op));
            // A value of the wrong type, or one too many, builds nothing.
            let mut extra = args.clone();
            extra.push(ArgValue::U64(0));
            assert_eq!(Op::from_args(op.kind(), extra), None, "{op:?}");
            if let Some(first) = args.first() {
                let mut wrong = args.clone();
                wrong[0] = if matches!(first, ArgValue::Width(_)) { ArgValue::U64(0) } else { ArgValue::Width(Width::W1) };
                assert_eq!(Op::from_args(op.kind(), wrong), None, "{op:?}");
            }
            let named = spec.args.iter().filter(|a| matches!(a.ty, ArgType::File | ArgType::Fd)).count();
            assert_eq!(op.gmem().is_some(), named == 1, "{op:?}");
            // Every key appears once in the C call template.
            for arg in spec.args {
                let key = format!("{{{}", arg.key);
                assert_eq!(spec.c.matches(&key).count(), 1, "{:?}: `{key}` in {}", spec.kind, spec.c);
            }
        }
        assert_eq!(Op::from_args(OpKind::Group, vec![]), None, "a group is not made from arguments");
    }

    #[test]
    fn group_membership_and_invalidation_are_the_tables() {
        let members: Vec<OpKind> = OpKind::ALL.into_iter().filter(|k| k.spec().race != Race::No).collect();
        use OpKind::*;
        assert_eq!(members, [Unbind, SetAttributes, Punch, Allocate, CloseGmem, Unmap, Guest, HostRead, HostWrite]);
        let invalidating: Vec<OpKind> = OpKind::ALL.into_iter().filter(|k| k.spec().invalidates).collect();
        assert_eq!(invalidating, [Unbind, ModifySlot, SetAttributes, Punch, Allocate, CloseGmem, Unmap, Madvise, DestroyVm, Group]);
    }

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
                "madvise",
                "pre_fault",
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
