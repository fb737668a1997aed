//! What an op did, as every backend reports it, and what a backend can be asked to show of
//! its state.

use std::fmt;

use crate::abi::{fnv, PAGE_SIZE};

/// An errno value as the kernel returned it (positive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const ENOTTY: Errno = Errno(libc::ENOTTY);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    pub const ENXIO: Errno = Errno(libc::ENXIO);

    /// The errno's name (`EBADF`), from `abi::errno`; `None` for a value with none.
    pub fn name(self) -> Option<&'static str> {
        crate::abi::errno::name(self.0)
    }

    pub fn from_name(name: &str) -> Option<Errno> {
        crate::abi::errno::table().find(|&(_, n)| n == name).map(|(e, _)| Errno(e))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// Why an op was not sent to the kernel. Decided from the program alone, identically on
/// every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The op names a guest_memfd that was never created.
    NoSuchGmem,
    /// The guest_memfd's fd was closed.
    FdClosed,
    /// The guest_memfd has no host mapping (never mapped, unmapped, or too large to map).
    NotMapped,
    /// `Map` on a file that is mapped already.
    AlreadyMapped,
    /// `ModifySlot`/`Unbind` of a slot the program has not bound.
    NoSuchSlot,
    /// The op needs the VM, which `DestroyVm` closed.
    NoVm,
    /// The op uses a slot id that belongs to the harness.
    ReservedSlot,
    /// A guest access the vCPU cannot make (beyond 4 GiB, crossing a page, or into the
    /// harness's own slots).
    UnreachableGpa,
    /// A host access outside the file's mapping.
    OutOfRange,
    /// The op would make the host allocate or map more than the harness allows.
    TooLarge,
}

/// The result of one guest access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessResult {
    /// A load completed with this value.
    Read(u64),
    /// A store completed.
    Wrote,
    /// No memslot: the access left the guest as KVM_EXIT_MMIO (reads are given 0).
    Mmio,
    /// KVM_RUN failed with EFAULT and KVM_EXIT_MEMORY_FAULT.
    MemoryFault { gpa: u64, size: u64, flags: u64 },
    /// An earlier access of the same op ended the run.
    NotRun,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded.
    Ok,
    /// The call failed with this errno.
    Err(Errno),
    /// The op was not sent to the kernel.
    Skipped(SkipReason),
    /// What each guest access did.
    Guest(Vec<AccessResult>),
    /// A host load returned this value.
    Value(u64),
    /// A host access raised SIGBUS.
    Sigbus,
}

impl fmt::Display for AccessResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AccessResult::Read(v) => write!(f, "read {v:#x}"),
            AccessResult::Wrote => f.write_str("wrote"),
            AccessResult::Mmio => f.write_str("mmio-exit"),
            AccessResult::MemoryFault { gpa, size, flags } => {
                write!(f, "memory-fault(gpa={gpa:#x} size={size:#x} flags={flags:#x})")
            }
            AccessResult::NotRun => f.write_str("not-run"),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("ok"),
            Outcome::Err(e) => write!(f, "error {e}"),
            Outcome::Skipped(r) => write!(f, "skipped ({r:?})"),
            Outcome::Guest(results) => {
                f.write_str("[")?;
                for (i, r) in results.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{r}")?;
                }
                f.write_str("]")
            }
            Outcome::Value(v) => write!(f, "value {v:#x}"),
            Outcome::Sigbus => f.write_str("SIGBUS"),
        }
    }
}

/// A page's content as a backend can show it: whole bytes where the host can read them,
/// a digest where only the guest can (it hashes the page in one run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageContent {
    Bytes(Box<[u8; PAGE_SIZE as usize]>),
    Digest(u32),
}

impl PageContent {
    pub fn digest(&self) -> u32 {
        match self {
            PageContent::Bytes(b) => page_digest(b),
            PageContent::Digest(d) => *d,
        }
    }
}

/// FNV-1a over the page's little-endian dwords: the same function the guest computes
/// (see `kvm::guest_code`), so host and guest observations compare.
pub fn page_digest(page: &[u8; PAGE_SIZE as usize]) -> u32 {
    let mut h: u32 = fnv::OFFSET_BASIS;
    for chunk in page.chunks_exact(4) {
        let w = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        h = (h ^ w).wrapping_mul(fnv::PRIME);
    }
    h
}

/// Which qwords of a page a guest digest folds in: four qword indices (0..512). Guest
/// instructions are costly (on the host kernel here each one costs about a microsecond), so
/// the guest samples a page instead of hashing it whole: the model picks the qwords the
/// program wrote last, which is where a stale or wrong page differs.
pub type Sample = [u16; 4];

/// FNV-1a over the two dwords of each sampled qword, in order: what the guest computes
/// (see `kvm::guest`).
pub fn sample_digest(page: &[u8; PAGE_SIZE as usize], sample: Sample) -> u32 {
    let mut h: u32 = fnv::OFFSET_BASIS;
    for q in sample {
        let at = (q as usize % 512) * 8;
        for half in [at, at + 4] {
            let w = u32::from_le_bytes([page[half], page[half + 1], page[half + 2], page[half + 3]]);
            h = (h ^ w).wrapping_mul(fnv::PRIME);
        }
    }
    h
}

/// The digest of a page of zeros.
pub fn zero_page_digest() -> u32 {
    page_digest(&[0u8; PAGE_SIZE as usize])
}

/// A question about state that the runner asks both sides after invalidating ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Probe {
    /// Is each page of this guest_memfd in its page cache? (mincore on the host mapping)
    Residency { gmem: crate::op::GmemId },
    /// A guest_memfd page's content through the host mapping.
    HostPage { gmem: crate::op::GmemId, page: u64 },
    /// The content the guest sees at this GPA page (the vCPU digests the sampled qwords).
    GuestPage { gpa: u64, sample: Sample },
    /// The content of the anonymous memory behind a slot's shared side, page `page`.
    AnonPage { slot: u32, page: u64 },
}

impl Probe {
    /// The digest this probe compares for a page of `bytes`: the whole page for host
    /// probes, the sampled qwords for guest probes.
    pub fn digest_of(&self, bytes: &[u8; PAGE_SIZE as usize]) -> u32 {
        match *self {
            Probe::GuestPage { sample, .. } => sample_digest(bytes, sample),
            _ => page_digest(bytes),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    Residency(Vec<bool>),
    Content(PageContent),
    /// The guest could not read the page: the run ended in this way.
    GuestExit(AccessResult),
    /// The host access raised SIGBUS.
    Sigbus,
    /// Nothing to observe (the object is gone on this side).
    Absent,
}
