//! A broken platform invariant, as a value: what broke and where. It becomes text only
//! where it is shown (`Display`); the fuzz glue and the tests match on the variant.

use super::Reason;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("PFN {pfn:#x} freed twice")]
    DoubleFree { pfn: u64 },
    #[error("stage-2 maps GFN {gfn:#x} to freed PFN {pfn:#x}")]
    MapsFreedPfn { gfn: u64, pfn: u64 },
    #[error("stage-2 entry for GFN {gfn:#x} is {} but the attribute says otherwise", if *.private { "private" } else { "shared" })]
    WrongPrivacy { gfn: u64, private: bool },
    #[error("stage-2 entry for GFN {gfn:#x} outside every memslot")]
    OutsideMemslots { gfn: u64 },
    #[error("TDX: GFN {gfn:#x} added to the S-EPT while it maps PFN {old:#x}")]
    SeptRemapped { gfn: u64, old: u64 },
    #[error("TDX: S-EPT removal of GFN {gfn:#x} ({reason:?}) that is not in the S-EPT: cleanup ran twice")]
    SeptRemovedTwice { gfn: u64, reason: Reason },
    #[error("TDX: S-EPT maps GFN {gfn:#x} to PFN {mapped:#x}, KVM removed PFN {removed:#x}")]
    SeptWrongPfn { gfn: u64, mapped: u64, removed: u64 },
    #[error("TDX: PFN {pfn:#x} freed while the S-EPT still maps it at GFN {gfn:#x}")]
    SeptFreedWhileMapped { pfn: u64, gfn: u64 },
    #[error("TDX: S-EPT {sept:?} and KVM's private mappings {kvm:?} disagree")]
    SeptDisagrees { sept: Vec<(u64, u64)>, kvm: Vec<(u64, u64)> },
    #[error("TDX: PFN {pfn:#x} was removed from the S-EPT to be freed but was not freed")]
    SeptRemovedNotFreed { pfn: u64 },
    #[error("SNP: gmem invalidate of PFN {pfn:#x} ran twice")]
    RmpInvalidatedTwice { pfn: u64 },
    #[error("SNP: PFN {pfn:#x} freed while its RMP entry is private")]
    RmpFreedPrivate { pfn: u64 },
    #[error("SNP: private mapping GFN {gfn:#x} -> PFN {pfn:#x} whose RMP entry is shared")]
    RmpSharedMapping { gfn: u64, pfn: u64 },
}

/// The first violation of a run, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("after backend op #{op_index} (skipped ops not counted) on {platform}: {violation}")]
pub struct Broken {
    pub op_index: usize,
    pub platform: String,
    pub violation: Violation,
}
