//! Argument values: mostly the valid value for the object an op names, sometimes one at a
//! bound the kernel checks on these paths (cloud-hypervisor `disk_engine` `OpOffset::{..,
//! Wild}` style). Each enum is drawn once and resolved against the valid value.
//!
//! The bounds, from the 6.12 source (virt/kvm/kvm_main.c, virt/kvm/guest_memfd.c, fs/open.c):
//! - page alignment: `PAGE_ALIGNED(size)` (kvm_gmem_create), `mem->memory_size & (PAGE_SIZE - 1)`,
//!   `mem->guest_phys_addr & (PAGE_SIZE - 1)`, `mem->guest_memfd_offset & (PAGE_SIZE - 1)`
//!   (__kvm_set_memory_region), `!PAGE_ALIGNED(offset) || !PAGE_ALIGNED(len)` (kvm_gmem_fallocate);
//! - the loff_t sign: `size <= 0` (kvm_gmem_create), `offset < 0 || len <= 0` and
//!   `check_add_overflow(offset, len, &sum)` (vfs_fallocate), `offset < 0` (kvm_gmem_bind, 6.18);
//! - the u64 wrap: `mem->guest_phys_addr + mem->memory_size < mem->guest_phys_addr`,
//!   `mem->guest_memfd_offset + mem->memory_size < mem->guest_memfd_offset`,
//!   `attrs->address + attrs->size < attrs->address` (kvm_vm_ioctl_set_mem_attributes);
//! - the object's end: `offset + size > i_size_read(inode)` (kvm_gmem_bind, kvm_gmem_allocate);
//! - counts: `(mem->memory_size >> PAGE_SHIFT) > KVM_MEM_MAX_NR_PAGES`,
//!   `(u16)mem->slot >= KVM_USER_MEM_SLOTS`, `as_id >= kvm_arch_nr_memslot_as_ids(kvm)`.

use arbitrary::{Result, Unstructured};
use gmemfuzz_backends::op::{layout, PAGE_SIZE};

pub const HUGE_2M: u64 = 2 << 20;
pub const HUGE_1G: u64 = 1 << 30;
/// Pages in a 2 MiB and a 1 GiB hugepage.
pub const PAGES_2M: u64 = HUGE_2M / PAGE_SIZE;
pub const PAGES_1G: u64 = HUGE_1G / PAGE_SIZE;

/// KVM_MEM_MAX_NR_PAGES (include/linux/kvm_host.h): `((1UL << 31) - 1)`.
const KVM_MEM_MAX_NR_PAGES: u64 = (1 << 31) - 1;
/// x86 KVM_USER_MEM_SLOTS (arch/x86/include/asm/kvm_host.h): 32764.
pub const KVM_USER_MEM_SLOTS: u32 = 32764;
/// x86 KVM_MAX_NR_ADDRESS_SPACES (arch/x86/include/asm/kvm_host.h): 2 (SMM).
const KVM_MAX_NR_ADDRESS_SPACES: u32 = 2;
/// i64::MAX rounded down to a page: the largest valid loff_t size.
const LOFF_MAX_PAGE: u64 = i64::MAX as u64 & !(PAGE_SIZE - 1);

/// Fixed byte values on either side of the bounds above.
const EDGE_BYTES: [u64; 12] = [
    0,
    1,
    PAGE_SIZE - 1,
    1 << 32,
    KVM_MEM_MAX_NR_PAGES * PAGE_SIZE,
    (KVM_MEM_MAX_NR_PAGES + 1) * PAGE_SIZE,
    LOFF_MAX_PAGE,
    i64::MAX as u64,
    1 << 63,
    (1 << 63) + PAGE_SIZE,
    PAGE_SIZE.wrapping_neg(),
    u64::MAX,
];

/// One wild value in this many draws.
const WILD_ODDS: u8 = 16;

/// A byte quantity (size, length, offset) next to a partner it is added to by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bytes {
    /// The valid value (whole pages inside the object).
    Valid,
    /// Off the page grid by a sub-page amount.
    Unaligned,
    /// One page past what the object holds.
    PastEnd,
    /// Makes `partner + value` wrap 2^64 (to one page).
    Wrap,
    /// Makes `partner + value` exactly 2^63: negative as loff_t, fine as u64.
    SignWrap,
    /// Makes `partner + value` the largest page-aligned loff_t: just inside.
    BelowSignWrap,
    Edge(u64),
}

impl Bytes {
    pub fn draw(u: &mut Unstructured) -> Result<Bytes> {
        if u.ratio(WILD_ODDS - 1, WILD_ODDS)? {
            return Ok(Bytes::Valid);
        }
        Ok(match u.int_in_range(0..=6u8)? {
            0 => Bytes::Unaligned,
            1 => Bytes::PastEnd,
            2 => Bytes::Wrap,
            3 => Bytes::SignWrap,
            4 => Bytes::BelowSignWrap,
            _ => Bytes::Edge(*u.choose(&EDGE_BYTES)?),
        })
    }

    pub fn resolve(self, valid: u64, partner: u64) -> u64 {
        match self {
            Bytes::Valid => valid,
            Bytes::Unaligned => valid.wrapping_add(0x10),
            Bytes::PastEnd => valid.wrapping_add(PAGE_SIZE),
            Bytes::Wrap => partner.wrapping_neg().wrapping_add(PAGE_SIZE),
            Bytes::SignWrap => (1u64 << 63).wrapping_sub(partner),
            Bytes::BelowSignWrap => LOFF_MAX_PAGE.wrapping_sub(partner),
            Bytes::Edge(v) => v,
        }
    }

    /// Draws and resolves in one go.
    pub fn pick(u: &mut Unstructured, valid: u64, partner: u64) -> Result<u64> {
        Ok(Self::draw(u)?.resolve(valid, partner))
    }
}

/// A memslot's guest-physical address, next to the slot's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gpa {
    Valid,
    Unaligned,
    /// The slot ends exactly at the guest's 4 GiB limit (the last address the model predicts).
    EndsAt4G,
    /// The slot starts at 4 GiB: above what the guest can reach.
    At4G,
    /// `gpa + size` wraps 2^64.
    Wrap,
    /// The harness's own code slot: overlaps (EEXIST).
    Harness,
    Edge(u64),
}

impl Gpa {
    pub fn draw(u: &mut Unstructured) -> Result<Gpa> {
        if u.ratio(WILD_ODDS - 1, WILD_ODDS)? {
            return Ok(Gpa::Valid);
        }
        // Slots above the guest's 4 GiB are rarer: the model stops predicting there (for
        // now), and each such program is one the runner stops comparing.
        Ok(match u.int_in_range(0..=15u8)? {
            0..=3 => Gpa::Unaligned,
            4..=7 => Gpa::EndsAt4G,
            8..=10 => Gpa::Wrap,
            11 => Gpa::Harness,
            12..=14 => Gpa::Edge(*u.choose(&[0, PAGE_SIZE.wrapping_neg()])?),
            _ if u.ratio(1u8, 3)? => Gpa::At4G,
            _ => Gpa::Edge(*u.choose(&[0, 1 << 63, LOFF_MAX_PAGE])?),
        })
    }

    pub fn resolve(self, valid: u64, size: u64) -> u64 {
        match self {
            Gpa::Valid => valid,
            Gpa::Unaligned => valid + PAGE_SIZE / 2,
            Gpa::EndsAt4G => layout::GUEST_ADDRESS_LIMIT.saturating_sub(size) & !(PAGE_SIZE - 1),
            Gpa::At4G => layout::GUEST_ADDRESS_LIMIT,
            Gpa::Wrap => size.wrapping_neg().wrapping_add(PAGE_SIZE),
            Gpa::Harness => layout::CODE_GPA,
            Gpa::Edge(v) => v,
        }
    }

    pub fn pick(u: &mut Unstructured, valid: u64, size: u64) -> Result<u64> {
        Ok(Self::draw(u)?.resolve(valid, size))
    }
}

/// A memslot id: mostly one of the program's, sometimes at the id and address-space bounds
/// (`slot >> 16` is the address space, `(u16)slot` the id).
pub fn slot_id(u: &mut Unstructured) -> Result<u32> {
    if u.ratio(WILD_ODDS - 1, WILD_ODDS)? {
        return Ok(layout::FIRST_PROGRAM_SLOT + u.int_in_range(0..=layout::PROGRAM_SLOTS - 1)?);
    }
    Ok(*u.choose(&[
        // The highest valid id, and the first invalid one.
        KVM_USER_MEM_SLOTS - 1,
        KVM_USER_MEM_SLOTS,
        u16::MAX as u32,
        // Address space 1 (SMM, where the kernel has it) and the first one x86 never has.
        (1 << 16) | layout::FIRST_PROGRAM_SLOT,
        (KVM_MAX_NR_ADDRESS_SPACES << 16) | layout::FIRST_PROGRAM_SLOT,
        u32::MAX,
    ])?)
}

/// A guest_memfd size in pages: mostly a few pages, sometimes 2 MiB (one or two
/// hugepages) or 1 GiB (sparse: only what programs touch is allocated).
pub fn file_pages(u: &mut Unstructured) -> Result<u64> {
    Ok(match u.int_in_range(0..=31u8)? {
        0..=2 => PAGES_2M,
        3 => 2 * PAGES_2M,
        4 => PAGES_1G,
        _ => u.int_in_range(1..=8u64)?,
    })
}

/// A 2 MiB-aligned GPA for a range of `pages` pages, below 3 GiB (the top GiB holds the
/// x86 MMIO holes and the kernel's private slots: APIC access page, TSS, identity map).
pub fn huge_gpa(u: &mut Unstructured, pages: u64) -> Result<u64> {
    if pages >= PAGES_1G {
        return Ok(*u.choose(&[HUGE_1G, 2 * HUGE_1G])?);
    }
    let last = (3 * HUGE_1G - pages * PAGE_SIZE) / HUGE_2M;
    Ok(u.int_in_range(1..=last)? * HUGE_2M)
}
