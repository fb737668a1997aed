//! One home for the numbers that cross a boundary: the kernel's uapi values gmemfuzz
//! sends or reads (memslot, guest_memfd, attribute and fallocate flags, errno names), and
//! the harness's own protocol between the host and the guest interpreter (memory layout,
//! mailbox offsets, command codes, the digest).
//!
//! The KVM backend, the guest assembler, the model, the text format and the C reproducer
//! all read them from here; the C prelude gets them as generated `#define`s
//! (`harness::repro::c`), so no protocol value is written twice. Values copied from the
//! kernel's uapi headers are pinned to `kvm-bindings` / `libc` where those crates have them
//! (`pins` below): a wrong copy fails to compile.

/// The page size of every platform gmemfuzz runs on (x86-64).
pub const PAGE_SIZE: u64 = 4096;

/// The kernel's `PAGE_ALIGN(len)` on a length: rounded up to a page, wrapping to 0 for the
/// last page's worth of lengths (mbind() and madvise() then refuse or do nothing).
pub const fn page_align(len: u64) -> u64 {
    len.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// guest_memfd creation flags (include/uapi/linux/kvm.h, 6.18; not in kvm-bindings 0.14).
pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
pub const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;

/// Memslot flags (include/uapi/linux/kvm.h).
pub const KVM_MEM_LOG_DIRTY_PAGES: u32 = 1 << 0;
pub const KVM_MEM_READONLY: u32 = 1 << 1;
pub const KVM_MEM_GUEST_MEMFD: u32 = 1 << 2;

/// KVM_MEMORY_ATTRIBUTE_PRIVATE (include/uapi/linux/kvm.h).
pub const KVM_MEMORY_ATTRIBUTE_PRIVATE: u64 = 1 << 3;

/// KVM_MEMORY_EXIT_FLAG_PRIVATE: `kvm_run.memory_fault.flags` (include/uapi/linux/kvm.h).
pub const KVM_MEMORY_EXIT_FLAG_PRIVATE: u64 = 1 << 3;

/// `kvm_run.exit_reason` of a memory fault (include/uapi/linux/kvm.h, 6.8+).
pub const KVM_EXIT_MEMORY_FAULT: u32 = 39;

/// KVM_CAP_GUEST_MEMFD_FLAGS (include/uapi/linux/kvm.h, 6.18): the guest_memfd creation
/// flags the VM accepts. Neither kvm-ioctls 0.25's `Cap` nor kvm-bindings 0.14 has it.
pub const KVM_CAP_GUEST_MEMFD_FLAGS: u32 = 244;

/// The text format's names for the flag words above (`op::Format::Flags`).
pub mod names {
    use super::*;
    pub const GMEM_FLAGS: &[(&str, u64)] = &[("MMAP", GUEST_MEMFD_FLAG_MMAP), ("INIT_SHARED", GUEST_MEMFD_FLAG_INIT_SHARED)];
    pub const SLOT_FLAGS: &[(&str, u64)] = &[
        ("LOG_DIRTY_PAGES", KVM_MEM_LOG_DIRTY_PAGES as u64),
        ("READONLY", KVM_MEM_READONLY as u64),
        ("GUEST_MEMFD", KVM_MEM_GUEST_MEMFD as u64),
    ];
    pub const ATTRIBUTES: &[(&str, u64)] = &[("PRIVATE", KVM_MEMORY_ATTRIBUTE_PRIVATE)];
}

/// fallocate mode bits (include/uapi/linux/falloc.h). `i32` as fallocate(2) takes them.
pub mod falloc {
    pub const KEEP_SIZE: i32 = 0x01;
    pub const PUNCH_HOLE: i32 = 0x02;
    pub const COLLAPSE_RANGE: i32 = 0x08;
    pub const ZERO_RANGE: i32 = 0x10;
    pub const INSERT_RANGE: i32 = 0x20;
    pub const UNSHARE_RANGE: i32 = 0x40;
    /// 6.17+; not in libc 0.2.191.
    pub const WRITE_ZEROES: i32 = 0x80;
    /// FALLOC_FL_MODE_MASK without WRITE_ZEROES (include/linux/falloc.h, 6.12).
    pub const MODE_MASK_6_12: i32 = PUNCH_HOLE | COLLAPSE_RANGE | ZERO_RANGE | INSERT_RANGE | UNSHARE_RANGE;
    /// The mode `Op::Punch` sends: the only hole punch guest_memfd accepts.
    pub const PUNCH: i32 = PUNCH_HOLE | KEEP_SIZE;
    /// The text format's names for the mode bits (as flag words, `u64`).
    pub const NAMES: &[(&str, u64)] = &[
        ("KEEP_SIZE", KEEP_SIZE as u64),
        ("PUNCH_HOLE", PUNCH_HOLE as u64),
        ("COLLAPSE_RANGE", COLLAPSE_RANGE as u64),
        ("ZERO_RANGE", ZERO_RANGE as u64),
        ("INSERT_RANGE", INSERT_RANGE as u64),
        ("UNSHARE_RANGE", UNSHARE_RANGE as u64),
        ("WRITE_ZEROES", WRITE_ZEROES as u64),
    ];
}

/// NUMA memory policies (include/uapi/linux/mempolicy.h): mbind(2) and get_mempolicy(2)
/// on a guest_memfd's mapping. `u32` as the op carries them.
pub mod mempolicy {
    pub const DEFAULT: u32 = 0;
    pub const PREFERRED: u32 = 1;
    pub const BIND: u32 = 2;
    pub const INTERLEAVE: u32 = 3;
    pub const LOCAL: u32 = 4;
    pub const PREFERRED_MANY: u32 = 5;
    pub const WEIGHTED_INTERLEAVE: u32 = 6;
    /// MPOL_MAX (6.12 to 7.2): sanitize_mpol_flags() refuses modes from here on.
    pub const MAX: u32 = 7;
    pub const F_NUMA_BALANCING: u32 = 1 << 13;
    pub const F_RELATIVE_NODES: u32 = 1 << 14;
    pub const F_STATIC_NODES: u32 = 1 << 15;
    /// MPOL_MODE_FLAGS: the flags a mode word may carry.
    pub const MODE_FLAGS: u32 = F_STATIC_NODES | F_RELATIVE_NODES | F_NUMA_BALANCING;
    /// mbind() flags.
    pub const MF_STRICT: u32 = 1 << 0;
    pub const MF_MOVE: u32 = 1 << 1;
    pub const MF_MOVE_ALL: u32 = 1 << 2;
    /// MPOL_MF_VALID: do_mbind() refuses any other flag.
    pub const MF_VALID: u32 = MF_STRICT | MF_MOVE | MF_MOVE_ALL;
    /// get_mempolicy() flags.
    pub const F_ADDR: u64 = 1 << 1;
    pub const F_MEMS_ALLOWED: u64 = 1 << 2;
    /// The `maxnode` both calls pass with a one-word node mask: get_nodes() starts with
    /// `--maxnode`, so 65 reads all 64 bits of it.
    pub const MAXNODE: u64 = 65;
    /// The text format's names for a mode word: the modes (a value, not bits: printed by
    /// name, one of them) and the mode flags.
    pub const MODE_NAMES: &[(&str, u64)] = &[
        ("DEFAULT", DEFAULT as u64),
        ("PREFERRED", PREFERRED as u64),
        ("BIND", BIND as u64),
        ("INTERLEAVE", INTERLEAVE as u64),
        ("LOCAL", LOCAL as u64),
        ("PREFERRED_MANY", PREFERRED_MANY as u64),
        ("WEIGHTED_INTERLEAVE", WEIGHTED_INTERLEAVE as u64),
    ];
    pub const MODE_FLAG_NAMES: &[(&str, u64)] = &[
        ("NUMA_BALANCING", F_NUMA_BALANCING as u64),
        ("RELATIVE_NODES", F_RELATIVE_NODES as u64),
        ("STATIC_NODES", F_STATIC_NODES as u64),
    ];
    pub const MF_NAMES: &[(&str, u64)] = &[("STRICT", MF_STRICT as u64), ("MOVE", MF_MOVE as u64), ("MOVE_ALL", MF_MOVE_ALL as u64)];

    /// The length do_mbind() works on: `len = PAGE_ALIGN(len);`, which wraps to 0 for the
    /// last page's worth of lengths (then `if (end == start) return 0;`).
    pub const fn aligned_len(len: u64) -> u64 {
        super::page_align(len)
    }

    /// What `Op::GetMempolicy` reports, as one value: the mode word (mode and mode flags)
    /// in the low 16 bits, the node mask above it (its top 16 bits, nodes 48 to 63, are
    /// not shown). The C reproducer's `do_get_mempolicy` computes the same.
    pub const fn policy_value(mode: u32, nodes: u64) -> u64 {
        (mode as u64 & ((1 << POLICY_MODE_BITS) - 1)) | nodes << POLICY_MODE_BITS
    }

    /// The bits of `policy_value` below the node mask.
    pub const POLICY_MODE_BITS: u32 = 16;
}

/// The harness's own bounds on what one op may make the host do: larger ops are not sent
/// (`SkipReason::TooLarge`) and cannot race in a group (`group::Group::check`).
pub mod limits {
    /// The most pages one fallocate may allocate in a program: beyond it the op is skipped so
    /// that a wild length cannot make the host allocate gigabytes.
    pub const MAX_ALLOCATE_PAGES: u64 = 4096;
    /// The most GFNs one KVM_SET_MEMORY_ATTRIBUTES may change: kvm_vm_set_mem_attributes()
    /// reserves an xarray entry for every GFN of the range before changing any (`for (i =
    /// start; i < end; i++) { r = xa_reserve(&kvm->mem_attr_array, i, GFP_KERNEL_ACCOUNT);`),
    /// about 9 bytes each: 2^22 GFNs (16 GiB of guest memory) cost the host ~40 MB; a wild size
    /// like 2^63 bytes would allocate without bound, so such a call is not sent.
    pub const MAX_ATTRIBUTE_PAGES: u64 = 1 << 22;
}

/// The guest-physical window in which programs place their memslots. Below it sit the
/// harness's own slots (guest code and the mailbox).
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
    /// Memslot ids the KVM backend borrows while resetting a software-protected VM (one per
    /// run of nearby GFNs whose MMIO SPTEs it scrubs), and how many GFNs it scrubs before it
    /// makes a new VM instead. Programs never hold a slot then (reset deleted theirs first).
    pub const SCRUB_FIRST_SLOT: u32 = 0x100;
    pub const SCRUB_MAX_GFNS: usize = 32;
    /// The guest runs in 32-bit protected mode: it can address the first 4 GiB only.
    pub const GUEST_ADDRESS_LIMIT: u64 = 1 << 32;
    /// Most guest accesses a single `Op::Guest` may carry.
    pub const MAX_ACCESSES: usize = 16;
    /// Backends map a guest_memfd only up to this size; larger files are left unmapped.
    pub const MAX_MAPPED_BYTES: u64 = 1 << 30;
}

/// The vCPU's start state: 32-bit flat protected mode set up purely through the hidden
/// segment state (platform-facts), by the KVM backend and the C reproducer alike.
pub mod cpu {
    pub const CODE_SELECTOR: u16 = 0x8;
    /// Code segment type: execute/read, accessed.
    pub const CODE_TYPE: u8 = 0xb;
    pub const DATA_SELECTOR: u16 = 0x10;
    /// Data segment type: read/write, accessed.
    pub const DATA_TYPE: u8 = 0x3;
    /// RFLAGS at entry: only the always-one bit 1.
    pub const RFLAGS: u64 = 2;
}

/// The mailbox the host and the guest interpreter share (at `layout::MAILBOX_GPA`); see
/// `kvm::guest` for what the guest does with it. Offsets are bytes from its start.
pub mod mailbox {
    use super::layout;

    /// u32: number of commands posted.
    pub const COUNT: u64 = 0;
    /// u32: index of the command being executed (written by the guest before each).
    pub const CURRENT: u64 = 4;
    /// u32: index of the command to start at.
    pub const START: u64 = 8;
    /// u32: the host sets it during the MMIO exit of a digest, which then stops after its
    /// first load instead of taking one exit per load.
    pub const ABORT_FLAG: u64 = 12;
    /// The commands start here, `CMD_SIZE` bytes each.
    pub const CMD_HEADER: u64 = 16;
    pub const CMD_SIZE: u64 = 16;
    /// Within a command: u32 code, u32 gpa, u64 value (in for stores and the digest's
    /// sample, out for loads and digests).
    pub const CMD_CODE: u64 = 0;
    pub const CMD_GPA: u64 = 4;
    pub const CMD_VALUE: u64 = 8;
    /// Most commands one run can carry (the last page of the slot is the guest's stack).
    pub const MAX_COMMANDS: usize = ((layout::MAILBOX_SIZE - CMD_HEADER - 0x1000) / CMD_SIZE) as usize;
    /// The guest stack: the top of the mailbox slot.
    pub const STACK_TOP: u64 = layout::MAILBOX_GPA + layout::MAILBOX_SIZE;

    /// The extra vCPUs of concurrent groups (1, 2, 3) each have this many bytes of the
    /// mailbox slot, at `vcpu_offset`; vCPU 0 has the whole slot and uses its first window
    /// only while a group runs. The interpreter finds its window through EBP.
    pub const VCPU_STRIDE: u64 = 0x3000;
    /// Most commands an extra vCPU's window carries.
    pub const MAX_GROUP_COMMANDS: usize = ((VCPU_STRIDE - CMD_HEADER) / CMD_SIZE) as usize;

    /// Where vCPU `index`'s window starts in the mailbox slot.
    pub const fn vcpu_offset(index: usize) -> u64 {
        index as u64 * VCPU_STRIDE
    }

    /// The byte offset of command `i`'s field at `field`.
    pub const fn command(i: usize, field: u64) -> u64 {
        CMD_HEADER + i as u64 * CMD_SIZE + field
    }
}

/// Command codes of the guest interpreter.
pub mod command {
    /// A load: `READ | width code`.
    pub const READ: u32 = 0x00;
    /// A store: `WRITE | width code`.
    pub const WRITE: u32 = 0x10;
    /// Digest the sampled qwords of the page at gpa (`outcome::sample_digest`).
    pub const DIGEST: u32 = 0x20;
    /// Width codes of 1, 2, 4 and 8-byte accesses.
    pub const W1: u32 = 1;
    pub const W2: u32 = 2;
    pub const W4: u32 = 3;
    pub const W8: u32 = 4;
}

/// FNV-1a (32-bit) parameters: the page and sample digests, on the host, in the guest
/// interpreter and in the C reproducer.
pub mod fnv {
    pub const OFFSET_BASIS: u32 = 0x811c_9dc5;
    pub const PRIME: u32 = 0x0100_0193;
}

/// The sampled qword indices of a guest digest packed into the command's u64 value: four
/// u16, the first in the low bits (what the guest reads with `movzx word [value + 2*q]`).
pub fn pack_sample(sample: [u16; 4]) -> u64 {
    sample.iter().rev().fold(0u64, |v, &q| (v << 16) | q as u64)
}

/// Errno names as the kernel's headers spell them, from `nix` (one name per value: the
/// aliases EWOULDBLOCK, ENOTSUP, EDEADLOCK are not variants there).
pub mod errno {
    /// The largest errno value the tables cover (EHWPOISON = 133 on x86-64).
    pub const MAX: i32 = 133;

    /// The name of errno `e`, if it has one: `Debug` of nix's `Errno`, which is the
    /// variant name, rendered once per value.
    pub fn name(e: i32) -> Option<&'static str> {
        use std::sync::OnceLock;
        static NAMES: OnceLock<Vec<Option<String>>> = OnceLock::new();
        let names = NAMES.get_or_init(|| {
            (0..=MAX)
                .map(|e| match nix::errno::Errno::from_raw(e) {
                    nix::errno::Errno::UnknownErrno => None,
                    known => Some(format!("{known:?}")),
                })
                .collect()
        });
        names.get(usize::try_from(e).ok()?)?.as_deref()
    }

    /// Every named errno in 1..=MAX, in order: the C reproducer's table.
    pub fn table() -> impl Iterator<Item = (i32, &'static str)> {
        (1..=MAX).filter_map(|e| name(e).map(|n| (e, n)))
    }
}

/// Pins of the copied uapi values to kvm-bindings' and libc's copies of the headers.
#[cfg(target_os = "linux")]
mod pins {
    use super::*;
    const _: () = assert!(KVM_MEM_LOG_DIRTY_PAGES == kvm_bindings::KVM_MEM_LOG_DIRTY_PAGES);
    const _: () = assert!(KVM_MEM_READONLY == kvm_bindings::KVM_MEM_READONLY);
    const _: () = assert!(KVM_MEM_GUEST_MEMFD == kvm_bindings::KVM_MEM_GUEST_MEMFD);
    const _: () = assert!(KVM_MEMORY_ATTRIBUTE_PRIVATE == kvm_bindings::KVM_MEMORY_ATTRIBUTE_PRIVATE as u64);
    const _: () = assert!(KVM_MEMORY_EXIT_FLAG_PRIVATE == kvm_bindings::KVM_MEMORY_EXIT_FLAG_PRIVATE as u64);
    const _: () = assert!(KVM_EXIT_MEMORY_FAULT == kvm_bindings::KVM_EXIT_MEMORY_FAULT);
    const _: () = assert!(falloc::KEEP_SIZE == libc::FALLOC_FL_KEEP_SIZE);
    const _: () = assert!(falloc::PUNCH_HOLE == libc::FALLOC_FL_PUNCH_HOLE);
    const _: () = assert!(falloc::COLLAPSE_RANGE == libc::FALLOC_FL_COLLAPSE_RANGE);
    const _: () = assert!(falloc::ZERO_RANGE == libc::FALLOC_FL_ZERO_RANGE);
    const _: () = assert!(falloc::INSERT_RANGE == libc::FALLOC_FL_INSERT_RANGE);
    const _: () = assert!(falloc::UNSHARE_RANGE == libc::FALLOC_FL_UNSHARE_RANGE);
    const _: () = assert!(mempolicy::DEFAULT as i32 == libc::MPOL_DEFAULT);
    const _: () = assert!(mempolicy::PREFERRED as i32 == libc::MPOL_PREFERRED);
    const _: () = assert!(mempolicy::BIND as i32 == libc::MPOL_BIND);
    const _: () = assert!(mempolicy::INTERLEAVE as i32 == libc::MPOL_INTERLEAVE);
    const _: () = assert!(mempolicy::LOCAL as i32 == libc::MPOL_LOCAL);
    const _: () = assert!(mempolicy::F_NUMA_BALANCING as i32 == libc::MPOL_F_NUMA_BALANCING);
    const _: () = assert!(mempolicy::F_RELATIVE_NODES as i32 == libc::MPOL_F_RELATIVE_NODES);
    const _: () = assert!(mempolicy::F_STATIC_NODES as i32 == libc::MPOL_F_STATIC_NODES);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_come_from_the_kernel_headers() {
        assert_eq!(errno::name(libc::EBADF), Some("EBADF"));
        assert_eq!(errno::name(libc::EOPNOTSUPP), Some("EOPNOTSUPP"));
        assert_eq!(errno::name(libc::EAGAIN), Some("EAGAIN"));
        assert_eq!(errno::name(libc::EHWPOISON), Some("EHWPOISON"));
        assert_eq!(errno::name(0), None);
        assert_eq!(errno::name(4000), None);
        let table: Vec<_> = errno::table().collect();
        assert!(table.len() > 120, "{} named errnos", table.len());
        assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "one name per value");
    }

    #[test]
    fn sample_packs_low_first() {
        assert_eq!(pack_sample([1, 2, 3, 4]), 0x0004_0003_0002_0001);
    }

    #[test]
    fn commands_fit_the_mailbox() {
        assert!(mailbox::command(mailbox::MAX_COMMANDS, 0) <= layout::MAILBOX_SIZE - 0x1000);
    }
}

/// KCOV, the kernel's per-task coverage (include/uapi/linux/kcov.h; Documentation/dev-tools/kcov.rst).
pub mod kcov {
    /// debugfs file; absent where the kernel lacks CONFIG_KCOV (or debugfs is not mounted).
    pub const PATH: &str = "/sys/kernel/debug/kcov";
    /// `_IOR('c', 1, unsigned long)`: size the trace buffer, in u64 words.
    pub const INIT_TRACE: u64 = 0x8008_6301;
    /// `_IO('c', 100)`: start tracing the calling thread.
    pub const ENABLE: u64 = 0x6364;
    /// `_IO('c', 101)`.
    pub const DISABLE: u64 = 0x6365;
    /// `enum { KCOV_TRACE_PC = 0, KCOV_TRACE_CMP = 1 }`.
    pub const TRACE_PC: u64 = 0;
    pub const TRACE_CMP: u64 = 1;
    /// A comparison record is 4 words: type, arg1, arg2, ip (kcov.c `write_comp_data`).
    pub const CMP_RECORD_WORDS: usize = 4;
    /// Type bit: one operand is a compile-time constant (`KCOV_CMP_CONST`).
    pub const CMP_CONST: u64 = 1;
    /// Type bits 1-2: log2 of the operand size (`KCOV_CMP_SIZE(n)`).
    pub const CMP_SIZE_SHIFT: u64 = 1;
}
