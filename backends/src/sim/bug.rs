//! Bugs the simulation can inject, each after a real class of kernel bug.

/// Invalidation ranges of at least this many pages count as "hugepage sized" for
/// [`InjectedBug::HugeRangeSkipsCleanup`]. A real PMD is 512 pages; generated files have at
/// most 8 pages and slots at most 4, so the simulation uses 4 to let small programs reach it.
pub const HUGE_PAGES: u64 = 4;

/// One injectable bug. With none injected the simulation must agree with the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InjectedBug {
    /// fallocate(PUNCH_HOLE) frees the pages without `kvm_gmem_invalidate_begin()`: the
    /// bindings' stage-2 mappings survive the truncation (the class of bug the
    /// invalidate_begin/end bracket in kvm_gmem_punch_hole() exists to prevent).
    PunchSkipsInvalidation,
    /// kvm_gmem_release() assumes the memslots were already unbound and frees the file's
    /// pages without zapping the bindings (ordering bugs between file release and memslot
    /// deletion: "KVM: guest_memfd: ... release vs. unbind").
    ReleaseBeforeUnbind,
    /// KVM_SET_MEMORY_ATTRIBUTES zaps shared mappings only, so a private->shared conversion
    /// leaves the private mapping in place (attribute-filter bugs on the zap path).
    ConversionSkipsPrivate,
    /// The GFN range computed from a binding for a guest_memfd invalidation ends one page
    /// early (off-by-one in the pgoff -> GFN arithmetic of kvm_gmem_invalidate_begin()).
    InvalidationOffByOne,
    /// The platform cleanup hook (TDX S-EPT removal, SNP gmem invalidate) is skipped for
    /// ranges of [`HUGE_PAGES`] or more (hooks written for order-0 pages only).
    HugeRangeSkipsCleanup,
    /// The zap notifies the platform but forgets to drop the last entry of the stage-2
    /// mapping cache when it zaps two or more (a stale cached translation).
    StaleMappingCache,
}

impl InjectedBug {
    pub const ALL: [InjectedBug; 6] = [
        InjectedBug::PunchSkipsInvalidation,
        InjectedBug::ReleaseBeforeUnbind,
        InjectedBug::ConversionSkipsPrivate,
        InjectedBug::InvalidationOffByOne,
        InjectedBug::HugeRangeSkipsCleanup,
        InjectedBug::StaleMappingCache,
    ];

    pub fn name(self) -> &'static str {
        match self {
            InjectedBug::PunchSkipsInvalidation => "punch-skips-invalidation",
            InjectedBug::ReleaseBeforeUnbind => "release-before-unbind",
            InjectedBug::ConversionSkipsPrivate => "conversion-skips-private",
            InjectedBug::InvalidationOffByOne => "invalidation-off-by-one",
            InjectedBug::HugeRangeSkipsCleanup => "huge-range-skips-cleanup",
            InjectedBug::StaleMappingCache => "stale-mapping-cache",
        }
    }
}
