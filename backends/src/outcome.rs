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
    pub const ENOSYS: Errno = Errno(libc::ENOSYS);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EHWPOISON: Errno = Errno(libc::EHWPOISON);

    /// The errno's name (`EBADF`), from `abi::errno`; `None` for a value with none.
    pub fn name(self) -> Option<&'static str> {
        crate::abi::errno::name(self.0)
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, strum::VariantArray)]
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
    /// A group that `Group::check` refuses.
    InvalidGroup,
    /// An argument value the kernel accepts but the model has no rule for (one the
    /// generator never draws: a madvise advice outside the modelled ones).
    Unmodeled,
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
    /// Only in predictions: the model cannot tell what this access does (what decides it
    /// is state the model does not see). Matches any result.
    Unknown,
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
    /// Only in predictions: the model cannot tell what the op does. Matches any outcome.
    /// Backends never answer it.
    Unknown,
    /// What each member of a group did, one outcome per repetition, by member.
    Group(Vec<Vec<Outcome>>),
}

/// How a prediction compares with what a backend did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every known part matched; `unknown` parts were not compared (the model could not
    /// predict them).
    Agrees { unknown: u32 },
    /// A part the model predicted differs.
    Differs,
}

impl Verdict {
    pub fn agrees(self) -> bool {
        matches!(self, Verdict::Agrees { .. })
    }

    /// How many parts were not compared.
    pub fn unknown(self) -> u32 {
        match self {
            Verdict::Agrees { unknown } => unknown,
            Verdict::Differs => 0,
        }
    }
}

impl AccessResult {
    /// Whether the access left the guest: an MMIO exit or a memory fault.
    pub fn is_exit(&self) -> bool {
        matches!(self, AccessResult::Mmio | AccessResult::MemoryFault { .. })
    }

    /// Whether this predicted access result admits `actual`; `Unknown` admits anything.
    pub fn admits(&self, actual: &AccessResult) -> bool {
        *self == AccessResult::Unknown || self == actual
    }
}

impl Outcome {
    /// Whether the op, or a part of it, ended in an exit: SIGBUS, or a guest access's MMIO
    /// exit or memory fault.
    pub fn is_exit(&self) -> bool {
        match self {
            Outcome::Sigbus => true,
            Outcome::Guest(results) => results.iter().any(AccessResult::is_exit),
            Outcome::Group(members) => members.iter().flatten().any(Outcome::is_exit),
            _ => false,
        }
    }

    /// Whether any part of this prediction is unknown (the whole op or one access).
    pub fn has_unknown(&self) -> bool {
        match self {
            Outcome::Unknown => true,
            Outcome::Guest(results) => results.contains(&AccessResult::Unknown),
            Outcome::Group(members) => members.iter().flatten().any(Outcome::has_unknown),
            _ => false,
        }
    }

    /// Compares this prediction with what a backend did: the one comparison of op results.
    /// An unknown op result, or an unknown guest access, matches anything and is counted.
    pub fn admits(&self, actual: &Outcome) -> Verdict {
        match (self, actual) {
            (Outcome::Unknown, _) => Verdict::Agrees { unknown: 1 },
            (Outcome::Guest(expected), Outcome::Guest(got)) if expected.len() == got.len() => {
                if expected.iter().zip(got).all(|(e, a)| e.admits(a)) {
                    let unknown = expected.iter().filter(|e| **e == AccessResult::Unknown).count() as u32;
                    Verdict::Agrees { unknown }
                } else {
                    Verdict::Differs
                }
            }
            (Outcome::Group(expected), Outcome::Group(got))
                if expected.len() == got.len() && expected.iter().zip(got).all(|(e, a)| e.len() == a.len()) =>
            {
                let mut unknown = 0;
                for (e, a) in expected.iter().flatten().zip(got.iter().flatten()) {
                    match e.admits(a) {
                        Verdict::Agrees { unknown: u } => unknown += u,
                        Verdict::Differs => return Verdict::Differs,
                    }
                }
                Verdict::Agrees { unknown }
            }
            _ if self == actual => Verdict::Agrees { unknown: 0 },
            _ => Verdict::Differs,
        }
    }
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
            AccessResult::Unknown => f.write_str("unknown"),
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
            Outcome::Unknown => f.write_str("unknown"),
            Outcome::Group(members) => {
                f.write_str("group {")?;
                for (i, outcomes) in members.iter().enumerate() {
                    write!(f, " member {i}: ")?;
                    write_runs(f, outcomes)?;
                    f.write_str(";")?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// Outcomes of repetitions, runs of equal ones counted: `ok x3, error EBADF`.
pub fn write_runs(f: &mut impl fmt::Write, outcomes: &[Outcome]) -> fmt::Result {
    let mut i = 0;
    while i < outcomes.len() {
        let n = outcomes[i..].iter().take_while(|o| **o == outcomes[i]).count();
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{}", outcomes[i])?;
        if n > 1 {
            write!(f, " x{n}")?;
        }
        i += n;
    }
    Ok(())
}

/// A page's content as a backend can show it: whole bytes where the host can read them
/// (shared with the model's page, which the model shows without a copy), a digest where
/// only the guest can (it hashes the page in one run).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageContent {
    Bytes(std::sync::Arc<[u8; PAGE_SIZE as usize]>),
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
    /// The platform's reverse map of the current VM, where the kernel keeps one
    /// (`Profile::platform_map`): the GFN each PFN is assigned to.
    PlatformMap,
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
    /// The GFNs the platform's reverse map assigns the VM's PFNs to, one per PFN, ascending.
    PlatformMap(Vec<u64>),
}

/// Compares the model's answer to one probe with a backend's. `None` (on either side) is
/// an answer not known: it matches anything and is counted. Content compares by digest, so
/// whole bytes from the host match a digest computed by the guest.
pub fn admits_observation(expected: &Option<Observation>, actual: &Option<Observation>) -> Verdict {
    match (expected, actual) {
        (None, _) | (_, None) => Verdict::Agrees { unknown: 1 },
        // Whole bytes on both sides compare whole (cheaper than two digests, and exact).
        (Some(Observation::Content(PageContent::Bytes(e))), Some(Observation::Content(PageContent::Bytes(a)))) => {
            if e == a {
                Verdict::Agrees { unknown: 0 }
            } else {
                Verdict::Differs
            }
        }
        (Some(Observation::Content(e)), Some(Observation::Content(a))) if e.digest() == a.digest() => Verdict::Agrees { unknown: 0 },
        (Some(e), Some(a)) if e == a => Verdict::Agrees { unknown: 0 },
        _ => Verdict::Differs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_access_admits_anything_but_the_known_ones_still_compare() {
        let predicted = Outcome::Guest(vec![AccessResult::Unknown, AccessResult::Read(1)]);
        assert_eq!(predicted.admits(&Outcome::Guest(vec![AccessResult::Mmio, AccessResult::Read(1)])), Verdict::Agrees { unknown: 1 });
        assert_eq!(predicted.admits(&Outcome::Guest(vec![AccessResult::Read(9), AccessResult::Read(2)])), Verdict::Differs);
        // A different number of accesses is a difference, unknowns or not.
        assert_eq!(predicted.admits(&Outcome::Guest(vec![AccessResult::Read(1)])), Verdict::Differs);
    }

    #[test]
    fn an_unknown_outcome_admits_anything_and_known_ones_compare_exactly() {
        assert_eq!(Outcome::Unknown.admits(&Outcome::Sigbus), Verdict::Agrees { unknown: 1 });
        assert_eq!(Outcome::Ok.admits(&Outcome::Ok), Verdict::Agrees { unknown: 0 });
        assert_eq!(Outcome::Ok.admits(&Outcome::Err(Errno::EINVAL)), Verdict::Differs);
        assert_eq!(Outcome::Value(3).admits(&Outcome::Value(4)), Verdict::Differs);
    }

    #[test]
    fn an_unknown_probe_answer_is_counted_and_content_compares_by_digest() {
        let zero = PageContent::Bytes(std::sync::Arc::new([0u8; PAGE_SIZE as usize]));
        let digest = PageContent::Digest(zero.digest());
        assert_eq!(admits_observation(&None, &Some(Observation::Sigbus)), Verdict::Agrees { unknown: 1 });
        assert_eq!(
            admits_observation(&Some(Observation::Content(zero.clone())), &Some(Observation::Content(digest))),
            Verdict::Agrees { unknown: 0 }
        );
        assert_eq!(admits_observation(&Some(Observation::Content(zero)), &Some(Observation::Sigbus)), Verdict::Differs);
    }
}
